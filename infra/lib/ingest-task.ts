import * as fs from 'fs';
import { Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ingestTaskImageDir, keepPolicy, QuarryConfig } from './config';
import { Database } from './database';
import { QuarryFunction, QuarryWorkload } from './function';
import { acknowledge, acknowledgeFindings } from './nag';
import { Network } from './network';
import { Notifications } from './notifications';
import { Storage } from './storage';

export interface IngestTaskProps {
  readonly config: QuarryConfig;
  readonly network: Network;
  readonly storage: Storage;
  readonly database: Database;
  readonly notifications: Notifications;
  readonly environment: Record<string, string>;
  /** quarry-ingest: it starts the task and hears when one stops. */
  readonly ingest: QuarryFunction;
  /** Where stopped-task events go when quarry-ingest cannot take them. */
  readonly deadLetters: sqs.IQueue;
}

/** The container's name in the task definition (QUARRY_INGEST_TASK_CONTAINER). */
export const INGEST_CONTAINER = 'ingest';

/**
 * The ingest task (`ingestTask`): files over `ingestTaskOverBytes` are handed by
 * quarry-ingest to a Fargate task running the same bootstrap in task mode, with
 * no 15-minute limit. ARM64, 1 vCPU and 2 GiB (the loader streams: memory does
 * not grow with the file), read-only root filesystem, in the compute subnets
 * with its own security group (HTTPS to the endpoints, 5432 to the database or
 * the proxy), writer secret only. A task that stops comes back to quarry-ingest
 * as an "ECS Task State Change" event, which raises the alarm when the task did
 * not report itself.
 */
export class IngestTask extends Construct implements QuarryWorkload {
  readonly cluster: ecs.Cluster;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly securityGroup: ec2.SecurityGroup;
  readonly logGroup: logs.LogGroup;
  readonly stoppedRule: events.Rule;

  constructor(scope: Construct, id: string, props: IngestTaskProps) {
    super(scope, id);
    const { config, network, storage, database, notifications, ingest } = props;

    network.addIngestTaskEndpoints(Stack.of(this).region);
    this.cluster = new ecs.Cluster(this, 'Cluster', {
      clusterName: `${config.prefix}-ingest`,
      vpc: network.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    // Container Insights writes here; made first so it has the stack's retention.
    const insights = new logs.LogGroup(this, 'InsightsLogs', {
      logGroupName: `/aws/ecs/containerinsights/${config.prefix}-ingest/performance`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });
    this.cluster.node.addDependency(insights);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/quarry/${config.prefix}/ingest-task`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      family: `${config.prefix}-ingest`,
      cpu: 1024,
      memoryLimitMiB: 2048,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    this.container = this.taskDefinition.addContainer(INGEST_CONTAINER, {
      containerName: INGEST_CONTAINER,
      image: ecs.ContainerImage.fromAsset(ingestTaskImageDir(config, fs.existsSync), { platform: Platform.LINUX_ARM64 }),
      essential: true,
      readonlyRootFilesystem: true,
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'ingest', logGroup: this.logGroup }),
      environment: props.environment,
    });
    this.securityGroup = network.functionSecurityGroup(this, 'Sg', 'quarry-ingest task');

    database.connect(this, ['writer']);
    const exports = config.ingestPrefixes.map((p) => storage.rawBucket.arnForObjects(`${p}*`));
    this.allow('ReadRawExports', ['s3:GetObject', 's3:GetObjectVersion'], exports);
    notifications.allowPublish(this, notifications.alarmTopic, 'PublishSystemErrors');

    // quarry-ingest starts this task definition on this cluster, passing its roles.
    ingest.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'RunIngestTask',
        actions: ['ecs:RunTask'],
        resources: [this.taskDefinition.taskDefinitionArn],
        conditions: { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } },
      }),
    );
    ingest.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'PassIngestTaskRoles',
        actions: ['iam:PassRole'],
        resources: [this.taskDefinition.taskRole.roleArn, this.taskDefinition.obtainExecutionRole().roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    const computeSubnets = network.vpc.selectSubnets(network.computeSubnets).subnetIds;
    const settings: Record<string, string> = {
      QUARRY_INGEST_TASK_CLUSTER: this.cluster.clusterArn,
      QUARRY_INGEST_TASK_DEFINITION: this.taskDefinition.taskDefinitionArn,
      QUARRY_INGEST_TASK_CONTAINER: INGEST_CONTAINER,
      QUARRY_INGEST_TASK_SUBNETS: computeSubnets.join(','),
      QUARRY_INGEST_TASK_SECURITY_GROUPS: this.securityGroup.securityGroupId,
      QUARRY_INGEST_TASK_OVER_BYTES: String(config.ingestTaskOverBytes),
    };
    for (const [k, v] of Object.entries(settings)) ingest.addEnvironment(k, v);

    // A stopped ingest task goes back to quarry-ingest (alarm when unreported).
    this.stoppedRule = new events.Rule(this, 'Stopped', {
      description: 'Stopped quarry-ingest tasks to quarry-ingest (alarm when a task did not report itself)',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: {
          clusterArn: [this.cluster.clusterArn],
          lastStatus: ['STOPPED'],
          startedBy: ['quarry-ingest'],
        },
      },
      targets: [
        new targets.LambdaFunction(ingest.function, {
          retryAttempts: 4,
          maxEventAge: Duration.hours(6),
          deadLetterQueue: props.deadLetters,
        }),
      ],
    });

    acknowledgeFindings(
      this.taskDefinition.taskRole,
      'AwsSolutions-IAM5',
      'Resource',
      exports,
      'The same grant as quarry-ingest: object keys under a source prefix are chosen by whoever uploads the export; GetObject/GetObjectVersion on <raw bucket>/<prefix>* for the configured source prefixes only.',
    );
    acknowledgeFindings(
      this.taskDefinition.obtainExecutionRole(),
      'AwsSolutions-IAM5',
      'Resource',
      ['*'],
      "CDK's execution role for an image asset: ecr:GetAuthorizationToken has no resource-level permissions (the layer pulls are scoped to the asset repository in the same policy).",
    );
    acknowledge(
      this.taskDefinition,
      'AwsSolutions-ECS2',
      'The environment holds names, ARNs and settings only, the same as the Lambda functions; the database password is read from Secrets Manager at runtime by the task role.',
    );
  }

  /** Adds a statement to the task role's policy. */
  allow(sid: string, actions: string[], resources: string[]): void {
    this.taskDefinition.taskRole.addToPrincipalPolicy(new iam.PolicyStatement({ sid, actions, resources }));
  }

  addEnvironment(name: string, value: string): void {
    this.container.addEnvironment(name, value);
  }
}
