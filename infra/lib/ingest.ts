import { Duration } from 'aws-cdk-lib';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { QuarryConfig } from './config';
import { Database } from './database';
import { QuarryFunction } from './function';
import { IngestTask } from './ingest-task';
import { acknowledge, acknowledgeFindings } from './nag';
import { Network } from './network';
import { Notifications } from './notifications';
import { Storage } from './storage';

export interface IngestProps {
  readonly config: QuarryConfig;
  readonly network: Network;
  readonly storage: Storage;
  readonly database: Database;
  readonly notifications: Notifications;
  readonly environment: Record<string, string>;
}

/** Asynchronous invocation: attempts after the first before the event goes to the failure queue. */
export const INGEST_RETRY_ATTEMPTS = 2;

/**
 * quarry-ingest: S3 ObjectCreated events of the raw bucket, one notification per
 * source prefix. Reserved concurrency caps the database connections ingest can
 * open. Lambda retries a failed event twice (the ingest ledger makes a repeat
 * delivery a no-op) and then sends it, with the error, to an SQS on-failure
 * destination kept for 14 days.
 */
export class Ingest extends Construct {
  readonly fn: QuarryFunction;
  readonly failureQueue: sqs.Queue;
  /** The ECS task for files too large for one invocation (`ingestTask`). */
  readonly task?: IngestTask;

  constructor(scope: Construct, id: string, props: IngestProps) {
    super(scope, id);
    const { config, network, storage, database, notifications } = props;

    this.failureQueue = new sqs.Queue(this, 'FailureQueue', {
      queueName: `${config.prefix}-ingest-failures`,
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    acknowledge(
      this.failureQueue,
      'AwsSolutions-SQS3',
      'This queue is itself the on-failure destination of quarry-ingest; its depth is alarmed, and a dead-letter queue of a dead-letter queue would only hide failures further.',
    );

    this.fn = new QuarryFunction(this, 'Ingest', {
      config,
      network,
      name: 'ingest',
      description: 'Quarry ingest: S3 ObjectCreated on the raw bucket to PostgreSQL',
      memorySize: 1024,
      timeout: Duration.minutes(15),
      environment: props.environment,
      reservedConcurrentExecutions: config.ingestReservedConcurrency,
    });
    this.fn.function.configureAsyncInvoke({
      retryAttempts: INGEST_RETRY_ATTEMPTS,
      maxEventAge: Duration.hours(6),
      onFailure: new destinations.SqsDestination(this.failureQueue),
    });

    database.connect(this.fn, ['writer']);
    const exports = config.ingestPrefixes.map((p) => storage.rawBucket.arnForObjects(`${p}*`));
    this.fn.allow('ReadRawExports', ['s3:GetObject', 's3:GetObjectVersion'], exports);
    acknowledgeFindings(
      this.fn.role,
      'AwsSolutions-IAM5',
      'Resource',
      exports,
      'Object keys under a source prefix are chosen by whoever uploads the export; the grant is GetObject/GetObjectVersion on <raw bucket>/<prefix>* for the configured source prefixes only.',
    );
    notifications.allowPublish(this.fn, notifications.alarmTopic, 'PublishSystemErrors');

    if (config.ingestTask) {
      this.task = new IngestTask(this, 'Task', {
        config,
        network,
        storage,
        database,
        notifications,
        environment: props.environment,
        ingest: this.fn,
        deadLetters: this.failureQueue,
      });
    }

    for (const prefix of config.ingestPrefixes) {
      this.fn.asyncInvoked = true;
      storage.rawBucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.LambdaDestination(this.fn.function), {
        prefix,
      });
    }
  }
}
