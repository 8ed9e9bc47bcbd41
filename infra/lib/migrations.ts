import * as crypto from 'crypto';
import * as fs from 'fs';
import { CustomResource, Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { keepPolicy, lambdaZip, QuarryConfig } from './config';
import { DATABASE_NAME, Database } from './database';
import { QuarryFunction } from './function';
import { acknowledgeFindings } from './nag';
import { Network } from './network';

export interface MigrationsProps {
  readonly config: QuarryConfig;
  readonly network: Network;
  readonly database: Database;
  readonly environment: Record<string, string>;
}

/**
 * Migrations on deploy: a CloudFormation custom resource whose provider (the CDK
 * Provider framework) calls quarry-migrate with the framework's onEvent payload.
 * The resource's properties include the SHA-256 of the migrate bundle, so every
 * deploy that changes the code (and so, possibly, the embedded migrations) sends
 * an Update and migrations run again (they are idempotent and checksummed).
 *
 * quarry-migrate connects as quarry_owner (the master user). It also reads the
 * writer and reader secrets, because the migration creates those login roles and
 * sets their passwords to the secrets' current values (the single-user rotation
 * that follows can only log in as a role that exists with that password).
 */
export class Migrations extends Construct {
  readonly fn: QuarryFunction;
  readonly resource: CustomResource;

  constructor(scope: Construct, id: string, props: MigrationsProps) {
    super(scope, id);
    const { config, network, database } = props;

    this.fn = new QuarryFunction(this, 'Migrate', {
      config,
      network,
      name: 'migrate',
      description: 'Quarry migrations on deploy (CloudFormation custom resource) and admin commands (aws lambda invoke: keys, link decisions)',
      memorySize: 256,
      timeout: Duration.minutes(10),
      // Keeps trying to reach the database for 8 of its 10 minutes (a new
      // instance's DNS and rules can take a while to answer).
      environment: { ...props.environment, QUARRY_MIGRATE_CONNECT_SECONDS: '480' },
    });
    database.connect(this.fn, ['owner', 'writer', 'reader']);

    // The framework function runs outside the VPC (it only invokes quarry-migrate
    // and answers CloudFormation's presigned S3 URL); its role is written here so
    // it carries no managed policy.
    const providerLogs = new logs.LogGroup(this, 'ProviderLogs', {
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });
    const providerRole = new iam.Role(this, 'ProviderRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'CDK Provider framework onEvent function of the Quarry migrations',
    });
    providerRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'OwnLogGroup',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [providerLogs.logGroupArn],
      }),
    );
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: this.fn.function,
      frameworkOnEventRole: providerRole,
      logGroup: providerLogs,
    });

    const bundle = fs.readFileSync(lambdaZip(config, 'migrate', fs.existsSync));
    this.resource = new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::QuarryMigrations',
      properties: {
        Database: DATABASE_NAME,
        BundleSha256: crypto.createHash('sha256').update(bundle).digest('hex'),
      },
    });
    // Invoked during the deploy: the instance, its secret attachments, the
    // endpoints the function reaches and every security-group rule on the way
    // (5432 into the database's group, HTTPS into the endpoints', the function's
    // own egress: children of those three groups) must all exist first.
    this.resource.node.addDependency(database.instance, ...network.interfaceEndpoints);
    this.resource.node.addDependency(network.s3Endpoint, network.dynamoDbEndpoint);
    this.resource.node.addDependency(database.securityGroup, network.endpointSecurityGroup, this.fn.securityGroup);

    acknowledgeFindings(
      providerRole,
      'AwsSolutions-IAM5',
      'Resource',
      [`${this.fn.function.functionArn}:*`],
      'The Provider framework invokes quarry-migrate and its versions/aliases (<arn>:*), as CDK grants it; no other function.',
    );
  }
}
