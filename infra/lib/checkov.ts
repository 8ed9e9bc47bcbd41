import { CfnResource, IAspect, Stack, Token } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import { IConstruct } from 'constructs';

/**
 * checkov's findings on the synthesized templates that are decisions, not
 * mistakes, each acknowledged on the resource it concerns with the reason a
 * reviewer reads (CloudFormation `Metadata.checkov.skip`, which checkov honours).
 * Every acknowledgment below is conditional on the resource still being what
 * the reason says: a log group given a KMS key, a function put in a VPC, a
 * wildcard write beyond the ENI and X-Ray actions are checked again. The infra
 * test command runs checkov 3 over the default, dev and prod templates and fails
 * on any finding not acknowledged here (`scripts/check.sh`).
 */
export function acknowledgeCheckov(resource: CfnResource, id: string, comment: string): void {
  const existing = (resource.getMetadata('checkov') as { skip?: { id: string; comment: string }[] }) ?? {};
  const skip = existing.skip ?? [];
  if (!skip.some((s) => s.id === id)) skip.push({ id, comment });
  resource.addMetadata('checkov', { skip });
}

/** Actions that accept no resource other than `*` (VPC network interfaces, X-Ray). */
const WILDCARD_ONLY_ACTIONS = new Set([
  'ec2:AssignPrivateIpAddresses',
  'ec2:CreateNetworkInterface',
  'ec2:DeleteNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:UnassignPrivateIpAddresses',
  'xray:PutTelemetryRecords',
  'xray:PutTraceSegments',
]);

const CDK_HELPER =
  "a CDK deploy-time helper (custom resource provider) that CloudFormation invokes synchronously a few times per deploy; it calls AWS APIs only and touches no Quarry data";

/** The stack-wide acknowledgments; added as an aspect by `QuarryStack`. */
export class CheckovAcknowledgements implements IAspect {
  visit(node: IConstruct): void {
    if (!(node instanceof CfnResource)) return;
    const stack = Stack.of(node);
    const ack = (id: string, comment: string) => acknowledgeCheckov(node, id, comment);

    if (node instanceof logs.CfnLogGroup && node.kmsKeyId === undefined) {
      ack(
        'CKV_AWS_158',
        'CloudWatch Logs encrypts every log group at rest with its own keys; Quarry logs hold no secrets and no request bodies (API keys and tokens are redacted, WAF logs drop the auth headers), so a customer key would add key policy upkeep for every service that writes here and protect nothing more.',
      );
    }

    if (node instanceof lambda.CfnFunction) {
      if (node.kmsKeyArn === undefined) {
        ack(
          'CKV_AWS_173',
          'The environment holds names, ARNs and settings only (database passwords are read from Secrets Manager at runtime); Lambda encrypts it at rest with an AWS-owned key.',
        );
      }
      if (node.deadLetterConfig === undefined) {
        ack(
          'CKV_AWS_116',
          'A dead-letter queue applies to asynchronous invocations only. quarry-api, quarry-jobs, quarry-migrate and the CDK helpers are invoked synchronously (API Gateway, Step Functions with retries and an EventBridge rule with its own DLQ, CloudFormation); quarry-ingest, the one asynchronous function, sends failed events to an SQS on-failure destination (alarmed), which checkov does not read.',
        );
      }
      if (node.reservedConcurrentExecutions === undefined) {
        ack(
          'CKV_AWS_115',
          'Concurrency is bounded upstream: API Gateway usage plans and stage throttles for quarry-api, the job state machine for quarry-jobs, CloudFormation for quarry-migrate and the CDK helpers. quarry-ingest, whose S3 events are not throttled upstream, has reserved concurrency. Reserving more would take capacity from the account pool without adding a limit.',
        );
      }
      if (node.vpcConfig === undefined) {
        ack('CKV_AWS_117', `Outside the VPC on purpose: ${CDK_HELPER}. Every Quarry function runs in the VPC's compute subnets.`);
      }
    } else if (node.cfnResourceType === 'AWS::Lambda::Function') {
      // CDK's own singleton providers are plain CfnResources (Quarry's functions are lambda.Function).
      for (const id of ['CKV_AWS_115', 'CKV_AWS_116', 'CKV_AWS_117', 'CKV_AWS_173']) {
        ack(id, `Not configurable on ${CDK_HELPER}.`);
      }
    }

    if (node instanceof iam.CfnPolicy) {
      const doc = stack.resolve(node.policyDocument) as { Statement?: { Effect: string; Action: string | string[]; Resource: string | string[] }[] };
      const wildcard = (doc.Statement ?? []).filter(
        (s) => s.Effect === 'Allow' && [s.Resource].flat().includes('*'),
      );
      if (wildcard.length > 0 && wildcard.every((s) => [s.Action].flat().every((a) => WILDCARD_ONLY_ACTIONS.has(a)))) {
        ack(
          'CKV_AWS_111',
          'The only writes on `*` are the VPC network-interface actions Lambda needs in a VPC and X-Ray trace segments; neither API accepts a narrower resource. Every other statement names its resources.',
        );
      }
    }

    if (node instanceof sqs.CfnQueue && node.sqsManagedSseEnabled === true) {
      ack(
        'CKV_AWS_27',
        'Encrypted at rest with SQS-managed keys (SSE-SQS); the queue holds failed event envelopes (object keys, job ids), and a customer key would have to be shared with Lambda and EventBridge as senders.',
      );
    }

    if (node instanceof secretsmanager.CfnSecret && node.kmsKeyId === undefined) {
      ack(
        'CKV_AWS_149',
        "Encrypted with the account's aws/secretsmanager key; who reads each secret is decided by IAM (each function may read only its own role's secret), and a customer key would have to be granted to the hosted rotation functions as well.",
      );
    }

    if (node instanceof dynamodb.CfnGlobalTable && node.node.path.includes('Cache')) {
      const pitr = stack.resolve(node.replicas) as { PointInTimeRecoverySpecification?: { PointInTimeRecoveryEnabled?: boolean } }[];
      if (!pitr.some((r) => r.PointInTimeRecoverySpecification?.PointInTimeRecoveryEnabled)) {
        ack(
          'CKV_AWS_165',
          'The result cache holds only entries recomputable from the database, each expiring by TTL; losing it costs one recomputation per entry. The jobs table has point-in-time recovery.',
        );
      }
    }

    if (node instanceof rds.CfnDBInstance) {
      if (node.enableIamDatabaseAuthentication !== true) {
        ack(
          'CKV_AWS_161',
          'Per-role passwords in Secrets Manager, rotated on a schedule; IAM authentication would be a second, unused way in (and RDS caps IAM-authenticated connections per second).',
        );
      }
      if (node.multiAz !== true) {
        ack(
          'CKV_AWS_157',
          'Single-AZ in the default and dev configurations to keep them cheap (automated backups give point-in-time restore); the prod profile (profiles/prod.json) is Multi-AZ.',
        );
      }
      if (node.monitoringInterval === undefined || Token.isUnresolved(node.monitoringInterval) || node.monitoringInterval === 0) {
        ack(
          'CKV_AWS_118',
          'Database health is watched through CloudWatch metrics and alarms (CPU, credits, memory, storage, connections) and, in the prod profile, Performance Insights; Enhanced Monitoring adds OS-level metrics at extra cost and an extra role.',
        );
      }
    }

    if (node.cfnResourceType === 'AWS::S3::Bucket') {
      if (node.node.path.includes('AccessLogs')) {
        ack('CKV_AWS_18', 'This is the access-log bucket itself: logging it would log its own log deliveries.');
        ack('CKV_AWS_21', 'Access logs are written once by the log delivery service and expire by lifecycle; versions would only keep deleted logs longer.');
      } else if (node.node.path.includes('Results')) {
        ack('CKV_AWS_21', "Job results are recomputable from the database and expire by lifecycle (the jobs' retention); versions would keep expired results readable.");
      }
    }

    if (node instanceof apigateway.CfnStage) {
      ack(
        'CKV_AWS_120',
        "Gateway caching would answer one caller with another caller's result (answers depend on the caller's key and scopes); Quarry caches results itself, per operation, parameters and data version.",
      );
    }

    if (node instanceof apigateway.CfnMethod && node.authorizationType === 'NONE' && node.apiKeyRequired !== true && node.httpMethod === 'GET') {
      ack(
        'CKV_AWS_59',
        'A public GET that serves no data: the health check, the OpenAPI document and the static pages of the web catalog (which ask for a key before any data call). Every data route requires an API Gateway key and a Quarry key; WAF rate-limits all routes.',
      );
    }
  }
}
