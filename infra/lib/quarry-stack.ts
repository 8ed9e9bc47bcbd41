import { Aspects, CfnOutput, Stack, StackProps, Tags } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { Api, STAGE_NAME } from './api';
import { CheckovAcknowledgements } from './checkov';
import { QuarryConfig } from './config';
import { DATABASE_NAME, Database } from './database';
import { Ingest } from './ingest';
import { Jobs } from './jobs';
import { Migrations } from './migrations';
import { Monitoring } from './monitoring';
import { acknowledgeFindings } from './nag';
import { Network } from './network';
import { Notifications } from './notifications';
import { DeletionProtection } from './protection';
import { retainServiceLogs } from './service-logs';
import { Storage } from './storage';

export interface QuarryStackProps extends StackProps {
  readonly config: QuarryConfig;
}

/**
 * Quarry on AWS: one stack, composed of one construct per concern. The
 * environment every function gets is built here (names and endpoints only);
 * permissions are added per function by the construct that owns the resource.
 */
export class QuarryStack extends Stack {
  readonly network: Network;
  readonly notifications: Notifications;
  readonly storage: Storage;
  readonly database: Database;
  readonly migrations: Migrations;
  readonly ingest: Ingest;
  readonly jobs: Jobs;
  readonly api: Api;
  readonly monitoring: Monitoring;
  readonly protection?: DeletionProtection;
  private readonly azs: string[];

  constructor(scope: Construct, id: string, props: QuarryStackProps) {
    super(scope, id, {
      ...props,
      env: { account: props.config.account, region: props.config.region },
      description: 'Quarry: JSON exports to PostgreSQL, analytics over REST (serverless)',
    });
    const { config } = props;
    this.azs = config.availabilityZones;
    Tags.of(this).add('project', 'quarry');
    Tags.of(this).add('quarry:prefix', config.prefix);
    // checkov's findings that are decisions, each with its reason (lib/checkov.ts).
    Aspects.of(this).add(new CheckovAcknowledgements());

    this.network = new Network(this, 'Network', { config });
    this.notifications = new Notifications(this, 'Notifications', { config });
    this.storage = new Storage(this, 'Storage', { config });
    this.network.restrictGatewayEndpoints(
      [this.storage.rawBucket, this.storage.resultsBucket],
      [this.storage.cacheTable, this.storage.jobsTable],
      this.account,
    );
    this.database = new Database(this, 'Database', { config, network: this.network });

    // The same names for every function; secrets (per role) and the state
    // machine ARN (api only) are added where they are granted.
    const environment: Record<string, string> = {
      QUARRY_DB_HOST: this.database.instance.dbInstanceEndpointAddress,
      QUARRY_DB_PORT: this.database.instance.dbInstanceEndpointPort,
      QUARRY_DB_NAME: DATABASE_NAME,
      QUARRY_RAW_BUCKET: this.storage.rawBucket.bucketName,
      QUARRY_RESULTS_BUCKET: this.storage.resultsBucket.bucketName,
      QUARRY_CACHE_TABLE: this.storage.cacheTable.tableName,
      QUARRY_JOBS_TABLE: this.storage.jobsTable.tableName,
      QUARRY_JOBS_TOPIC_ARN: this.notifications.jobsTopic.topicArn,
      QUARRY_ALARM_TOPIC_ARN: this.notifications.alarmTopic.topicArn,
      RUST_LOG: config.rustLog,
    };
    const shared = { config, network: this.network, database: this.database, environment };

    this.migrations = new Migrations(this, 'Migrations', shared);
    this.database.rotationsAfter(this.migrations.resource);
    this.ingest = new Ingest(this, 'Ingest', { ...shared, storage: this.storage, notifications: this.notifications });
    this.jobs = new Jobs(this, 'Jobs', { ...shared, storage: this.storage, notifications: this.notifications });
    this.api = new Api(this, 'Api', {
      ...shared,
      storage: this.storage,
      notifications: this.notifications,
      jobs: this.jobs,
    });

    // New function code runs only against a migrated schema: every function
    // that reads or writes the database is created or updated after the
    // migrations resource (which runs the migrations on every code change).
    for (const fn of [this.ingest.fn, this.jobs.fn, this.api.fn]) fn.function.node.addDependency(this.migrations.resource);
    if (!config.dev) {
      this.protection = new DeletionProtection(this, 'DeletionProtection', {
        config,
        instance: this.database.instance,
        jobsTable: this.storage.jobsTable,
        after: this.migrations.resource,
      });
    }

    this.monitoring = new Monitoring(this, 'Monitoring', {
      config,
      alarmTopic: this.notifications.alarmTopic,
      functions: [this.api.fn, this.ingest.fn, this.jobs.fn, this.migrations.fn],
      stateMachine: this.jobs.stateMachine,
      ingestFailureQueue: this.ingest.failureQueue,
      database: this.database.instance,
      restApi: this.api.restApi,
    });

    const out = (id: string, value: string, description: string): void => {
      new CfnOutput(this, id, { value, description });
    };
    out('ApiUrl', this.api.restApi.url, `Base URL of the REST API (stage ${STAGE_NAME})`);
    out('RestApiId', this.api.restApi.restApiId, 'The REST API (per-caller usage plans attach to its prod stage)');
    out('UsagePlanId', this.api.usagePlan.usagePlanId, 'Default per-key limits; infra/scripts/add-caller.sh adds caller keys to it');
    out('AdminFunctionName', this.migrations.fn.functionName, 'Admin commands: aws lambda invoke --function-name <name> --payload {"command": ...}');
    out('RawBucketName', this.storage.rawBucket.bucketName, 'Upload exports under crm-data/, erp-data/, shop-data/, stripe-data/');
    out('ResultsBucketName', this.storage.resultsBucket.bucketName, 'Job results (objects expire)');
    out('StateMachineArn', this.jobs.stateMachine.stateMachineArn, 'Analytics job state machine');
    out('IngestFailureQueueUrl', this.ingest.failureQueue.queueUrl, 'Upload events that failed ingest');
    out('DatabaseEndpoint', this.database.instance.dbInstanceEndpointAddress, 'PostgreSQL (reachable from the VPC only)');
    out('JobsTopicArn', this.notifications.jobsTopic.topicArn, 'Job notifications');
    out('AlarmTopicArn', this.notifications.alarmTopic.topicArn, 'Alarms');
    out('DashboardName', this.monitoring.dashboard.dashboardName, 'CloudWatch dashboard');

    this.suppressCdkInternals();
    // Last: it looks for every function CDK added on the way.
    retainServiceLogs(this, config, this.database.rotationFunctionNames, this.database.rotations);
  }

  /**
   * The zones come from context (`<region>a`, `<region>b` by default) instead of a
   * lookup, so synth needs no credentials and no network.
   */
  override get availabilityZones(): string[] {
    return this.azs;
  }

  /**
   * Findings on functions and roles that CDK itself adds to the stack (not ours
   * to shape), each with the reason it is acceptable here.
   */
  private suppressCdkInternals(): void {
    // S3 bucket notifications are written by a CDK singleton function at deploy time.
    const notifications = this.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
    if (notifications) {
      acknowledgeFindings(
        notifications,
        'AwsSolutions-IAM4',
        'Policy',
        [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaBasicExecutionRole').managedPolicyArn],
        'CDK singleton that writes the raw bucket notification configuration during deploys; AWSLambdaBasicExecutionRole lets it write its own logs only.',
      );
    }
  }
}
