import * as fs from 'fs';
import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { FunctionName, keepPolicy, lambdaZip, QuarryConfig } from './config';
import { acknowledgeFindings } from './nag';
import { Network } from './network';

export interface QuarryFunctionProps {
  readonly config: QuarryConfig;
  readonly network: Network;
  /** The binary is `quarry-<name>`, its zip `<lambdaDir>/quarry-<name>/bootstrap.zip`. */
  readonly name: FunctionName;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly environment: Record<string, string>;
  readonly reservedConcurrentExecutions?: number;
}

/**
 * One Rust function: provided.al2023 on arm64 from the cargo-lambda zip (never a
 * Docker build), in the compute subnets with its own security group, its own log
 * group, and its own role. The role starts with only what Lambda itself needs
 * (write to its own log group, manage its VPC interfaces, X-Ray); each construct
 * that hands the function a resource adds a statement naming that resource.
 */
/**
 * What runs Quarry code with a role and a security group: a Lambda function
 * (QuarryFunction) or the ingest ECS task. Grants and settings go through it.
 */
export interface QuarryWorkload {
  readonly securityGroup: ec2.ISecurityGroup;
  /** Adds a statement to the workload's own role policy. */
  allow(sid: string, actions: string[], resources: string[]): void;
  addEnvironment(name: string, value: string): void;
}

export class QuarryFunction extends Construct implements QuarryWorkload {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  readonly securityGroup: ec2.SecurityGroup;
  readonly logGroup: logs.LogGroup;
  readonly functionName: string;
  readonly timeout: Duration;
  readonly reservedConcurrency?: number;
  /** Invoked asynchronously (S3 events, EventBridge): its dropped events are watched. */
  asyncInvoked = false;

  constructor(scope: Construct, id: string, props: QuarryFunctionProps) {
    super(scope, id);
    const { config, network } = props;
    this.functionName = `${config.prefix}-${props.name}`;
    this.timeout = props.timeout;
    this.reservedConcurrency = props.reservedConcurrentExecutions;

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/aws/lambda/${this.functionName}`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${this.functionName}`,
    });
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'OwnLogGroup',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );
    // The statement of the AWS managed AWSLambdaVPCAccessExecutionRole, inline so
    // that nothing else comes with it. ec2:Describe* has no resource-level
    // permissions, and Lambda creates and deletes the interfaces of its
    // Hyperplane ENIs on the function's behalf with whatever ids it picks.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'VpcNetworkInterfaces',
        actions: [
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        resources: ['*'],
      }),
    );

    this.securityGroup = network.functionSecurityGroup(this, 'Sg', this.functionName);

    this.function = new lambda.Function(this, 'Function', {
      functionName: this.functionName,
      description: props.description,
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.ARM_64,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(lambdaZip(config, props.name, fs.existsSync)),
      memorySize: props.memorySize,
      timeout: props.timeout,
      role: this.role,
      logGroup: this.logGroup,
      // JSON: Lambda's own lines (START, REPORT, timeouts) as objects next to
      // the function's JSON lines, so Logs Insights queries both alike.
      loggingFormat: lambda.LoggingFormat.JSON,
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      tracing: lambda.Tracing.ACTIVE,
      vpc: network.vpc,
      vpcSubnets: network.computeSubnets,
      securityGroups: [this.securityGroup],
      environment: props.environment,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      recursiveLoop: lambda.RecursiveLoop.TERMINATE,
    });

    acknowledgeFindings(
      this.role,
      'AwsSolutions-IAM5',
      'Resource',
      ['*'],
      'Resource * only where AWS requires it: ec2:DescribeNetworkInterfaces/DescribeSubnets have no resource-level permissions and Lambda manages the VPC interfaces of the function under ids it picks (the statement of the AWS managed AWSLambdaVPCAccessExecutionRole, inline); X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.',
    );
  }

  /** Adds a statement to the function's own policy. */
  allow(sid: string, actions: string[], resources: string[]): void {
    this.role.addToPolicy(new iam.PolicyStatement({ sid, actions, resources }));
  }

  addEnvironment(name: string, value: string): void {
    this.function.addEnvironment(name, value);
  }
}
