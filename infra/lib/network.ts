import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';
import { acknowledge } from './nag';

export interface NetworkProps {
  readonly config: QuarryConfig;
}

/**
 * The VPC: no internet gateway and no NAT. Two isolated subnet groups per AZ,
 * `database` (RDS) and `compute` (Lambdas and endpoint interfaces). AWS services
 * are reached through gateway endpoints (S3, DynamoDB) and interface endpoints
 * (Secrets Manager, SNS, Step Functions). Lambda's own logs and X-Ray segments
 * leave through the Lambda service, not the VPC, so no Logs endpoint is needed.
 *
 * Each function gets its own security group with no default egress: HTTPS to the
 * endpoints and, when it uses the database, 5432 to the database's group.
 */
export class Network extends Construct {
  readonly vpc: ec2.Vpc;
  readonly computeSubnets: ec2.SubnetSelection = { subnetGroupName: 'compute' };
  readonly databaseSubnets: ec2.SubnetSelection = { subnetGroupName: 'database' };
  readonly endpointSecurityGroup: ec2.SecurityGroup;
  readonly s3Endpoint: ec2.GatewayVpcEndpoint;
  readonly dynamoDbEndpoint: ec2.GatewayVpcEndpoint;
  readonly interfaceEndpoints: ec2.InterfaceVpcEndpoint[] = [];

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    const { config } = props;

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr('10.40.0.0/16'),
      // Explicit AZ names: no context lookup, so synth needs no account access.
      availabilityZones: config.availabilityZones,
      natGateways: 0,
      createInternetGateway: false,
      restrictDefaultSecurityGroup: true,
      subnetConfiguration: [
        { name: 'database', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
        { name: 'compute', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 22 },
      ],
    });

    acknowledge(
      this.vpc,
      'CloudFormation-Validate::W3010',
      'The AZ names come from context (default <region>a and <region>b) so that synth needs no account lookup; set -c availabilityZones=... for a region or account whose zones differ.',
    );

    const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });

    this.s3Endpoint = this.vpc.addGatewayEndpoint('S3', {
      service: ec2.GatewayVpcEndpointAwsService.S3,
      subnets: [this.computeSubnets],
    });
    this.dynamoDbEndpoint = this.vpc.addGatewayEndpoint('DynamoDb', {
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: [this.computeSubnets],
    });

    this.endpointSecurityGroup = new ec2.SecurityGroup(this, 'EndpointSg', {
      vpc: this.vpc,
      description: 'Interface endpoints: HTTPS from the Quarry functions and the rotation functions only',
      allowAllOutbound: false,
    });
    this.addInterfaceEndpoints([
      ['SecretsManager', ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
      ['Sns', ec2.InterfaceVpcEndpointAwsService.SNS],
      ['StepFunctions', ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS],
    ]);
  }

  /** Interface endpoints in the compute subnets, private DNS, HTTPS from the function groups only. */
  private addInterfaceEndpoints(services: Array<[string, ec2.InterfaceVpcEndpointAwsService]>): void {
    for (const [name, service] of services) {
      this.interfaceEndpoints.push(
        this.vpc.addInterfaceEndpoint(name, {
          service,
          subnets: this.computeSubnets,
          privateDnsEnabled: true,
          open: false,
          securityGroups: [this.endpointSecurityGroup],
        }),
      );
    }
  }

  /**
   * A security group for one function: no egress but HTTPS (to the endpoints;
   * the subnets have no route beyond the VPC and the gateway endpoints, whose
   * prefix lists would need an account lookup to name here).
   */
  functionSecurityGroup(scope: Construct, id: string, owner: string): ec2.SecurityGroup {
    const sg = new ec2.SecurityGroup(scope, id, {
      vpc: this.vpc,
      description: `${owner}: HTTPS to the VPC endpoints, PostgreSQL where granted`,
      allowAllOutbound: false,
    });
    sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to VPC endpoints (no route to the internet exists)');
    this.endpointSecurityGroup.addIngressRule(sg, ec2.Port.tcp(443), `HTTPS from ${owner}`);
    return sg;
  }

  /**
   * What the ingest ECS task needs without a route out (`ingestTask`): ECS (the
   * ingest function's RunTask), ECR's API and registry (the image), CloudWatch
   * Logs (the task's awslogs driver), and the S3 bucket ECR keeps image layers
   * in, through the S3 gateway endpoint.
   */
  addIngestTaskEndpoints(region: string): void {
    this.addInterfaceEndpoints([
      ['Ecs', ec2.InterfaceVpcEndpointAwsService.ECS],
      ['EcrApi', ec2.InterfaceVpcEndpointAwsService.ECR],
      ['EcrDocker', ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER],
      ['Logs', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS],
    ]);
    this.s3Endpoint.addToPolicy(
      new iam.PolicyStatement({
        sid: 'EcrImageLayers',
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:GetObject'],
        resources: [`arn:aws:s3:::prod-${region}-starport-layer-bucket/*`],
      }),
    );
  }

  /**
   * Endpoint policies: the gateway endpoints carry requests for this stack's
   * buckets and tables only, from principals of this account, so a function
   * cannot copy data to another account's bucket through them.
   */
  restrictGatewayEndpoints(buckets: s3.IBucket[], tables: dynamodb.ITable[], account: string): void {
    this.s3Endpoint.addToPolicy(
      new iam.PolicyStatement({
        sid: 'QuarryBucketsOnly',
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject', 's3:AbortMultipartUpload'],
        resources: buckets.map((b) => b.arnForObjects('*')),
        conditions: { StringEquals: { 'aws:PrincipalAccount': account } },
      }),
    );
    this.dynamoDbEndpoint.addToPolicy(
      new iam.PolicyStatement({
        sid: 'QuarryTablesOnly',
        principals: [new iam.AnyPrincipal()],
        actions: [
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
          'dynamodb:ConditionCheckItem',
        ],
        resources: tables.map((t) => t.tableArn),
        conditions: { StringEquals: { 'aws:PrincipalAccount': account } },
      }),
    );
  }
}
