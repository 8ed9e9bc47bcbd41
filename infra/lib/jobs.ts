import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';
import { Database } from './database';
import { QuarryFunction } from './function';
import { acknowledge, acknowledgeFindings } from './nag';
import { Network } from './network';
import { Notifications } from './notifications';
import { Storage } from './storage';

export interface JobsProps {
  readonly config: QuarryConfig;
  readonly network: Network;
  readonly storage: Storage;
  readonly database: Database;
  readonly notifications: Notifications;
  readonly environment: Record<string, string>;
}

/** Error names the quarry-jobs handler raises (its Lambda errorType). */
export const TRANSIENT_ERROR = 'Quarry.Transient';
export const PERMANENT_ERROR = 'Quarry.Permanent';
/** The error an execution ends with when the job failed (after notifying). */
export const JOB_FAILED_ERROR = 'Quarry.JobFailed';

/**
 * Errors of the Lambda service itself (the invoke failed or was throttled; the
 * handler's own result was never produced). They are retried on every step, in a
 * retrier of their own; errors from the handler are retried only when it names
 * them transient.
 */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
];

/** State names (the local state-machine tests address task handlers by these). */
export const STATES = {
  initialise: 'Initialise',
  execute: 'Execute',
  storeResult: 'StoreResult',
  complete: 'Complete',
  notifySuccess: 'NotifySuccess',
  markFailed: 'MarkFailed',
  notifyFailure: 'NotifyFailure',
  jobFailed: 'JobFailed',
} as const;

/**
 * Analytics jobs: the quarry-jobs function (one dispatcher for every step) and a
 * Standard state machine:
 *
 *   Initialise -> Execute -> StoreResult -> Complete -> NotifySuccess
 *        \___________\___________\___________\__ Catch -> MarkFailed -> NotifyFailure -> JobFailed
 *
 * Each task sends `{"step": ..., "job_id": ...}` plus what that step needs, and
 * keeps the (small) answer at `$.<initialised|executed|stored|completed|failed>`;
 * results travel as S3 keys. `Quarry.Transient` is retried with exponential backoff
 * and full jitter; `Quarry.Permanent` and anything else is caught at once.
 * Logging (ALL, with execution data) and X-Ray tracing are on.
 */
export class Jobs extends Construct {
  readonly fn: QuarryFunction;
  readonly stateMachine: sfn.StateMachine;
  readonly stateMachineName: string;
  readonly logGroup: logs.LogGroup;
  readonly endedRule: events.Rule;
  readonly endedDeadLetters: sqs.Queue;

  constructor(scope: Construct, id: string, props: JobsProps) {
    super(scope, id);
    const { config, network, storage, database, notifications } = props;
    this.stateMachineName = `${config.prefix}-analytics-job`;

    this.fn = new QuarryFunction(this, 'Jobs', {
      config,
      network,
      name: 'jobs',
      description: 'Quarry analytics job steps (initialise, execute, store_result, complete, fail) and ended executions',
      memorySize: 1024,
      timeout: Duration.minutes(15),
      environment: props.environment,
    });
    database.connect(this.fn, ['reader']);
    this.fn.allow(
      'JobRows',
      ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:ConditionCheckItem'],
      [storage.jobsTable.tableArn],
    );
    const resultObjects = storage.resultsBucket.arnForObjects('*');
    this.fn.allow('ResultObjects', ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], [resultObjects]);
    acknowledgeFindings(
      this.fn.role,
      'AwsSolutions-IAM5',
      'Resource',
      [resultObjects],
      'Result objects are keyed by job id, known only at run time; the grant is Get/Put/AbortMultipartUpload on the objects of the results bucket only (a bucket of its own whose objects expire).',
    );
    notifications.allowPublish(this.fn, notifications.alarmTopic, 'PublishSystemErrors');

    const step = (
      stateName: string,
      stepName: string,
      payload: Record<string, unknown>,
      resultPath: string,
      comment: string,
    ): tasks.LambdaInvoke => {
      const task = new tasks.LambdaInvoke(this, stateName, {
        stateName,
        comment,
        lambdaFunction: this.fn.function,
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
        payload: sfn.TaskInput.fromObject({ step: stepName, job_id: sfn.JsonPath.stringAt('$.job_id'), ...payload }),
        resultPath,
      });
      task.addRetry({
        errors: [TRANSIENT_ERROR],
        interval: Duration.seconds(2),
        backoffRate: 2,
        maxAttempts: 4,
        maxDelay: Duration.seconds(60),
        jitterStrategy: sfn.JitterType.FULL,
      });
      task.addRetry({
        errors: LAMBDA_SERVICE_ERRORS,
        interval: Duration.seconds(2),
        backoffRate: 2,
        maxAttempts: 3,
        jitterStrategy: sfn.JitterType.FULL,
      });
      return task;
    };

    const operation = sfn.JsonPath.stringAt('$.operation');
    const parameters = sfn.JsonPath.objectAt('$.parameters');

    const initialise = step(
      STATES.initialise,
      'initialise',
      { operation, parameters, execution_id: sfn.JsonPath.stringAt('$$.Execution.Id') },
      '$.initialised',
      'Job row to RUNNING (conditional: state only moves forward)',
    );
    const execute = step(
      STATES.execute,
      'execute',
      // The retry count lets the job record count attempts as the execution does.
      { operation, parameters, retry: sfn.JsonPath.numberAt('$$.State.RetryCount') },
      '$.executed',
      'Run the operation as quarry_reader; rows go to S3, the answer is their key',
    );
    const storeResult = step(
      STATES.storeResult,
      'store_result',
      { operation, executed: sfn.JsonPath.objectAt('$.executed') },
      '$.stored',
      'Record where the result is (inline or S3 key) on the job row',
    );
    const complete = step(
      STATES.complete,
      'complete',
      { stored: sfn.JsonPath.objectAt('$.stored') },
      '$.completed',
      'Job row to SUCCEEDED',
    );
    const markFailed = step(
      STATES.markFailed,
      'fail',
      { error: sfn.JsonPath.objectAt('$.error') },
      '$.failed',
      'Job row to FAILED with the error',
    );

    // Notifications are CloudEvents 1.0 JSON with the envelope of the local
    // notifier's events (engine/core/src/jobs.rs, Event): type
    // quarry.job.succeeded / quarry.job.failed, source quarry/jobs, subject = job
    // id. `data` is what the state machine knows: job id, operation, state, the
    // stored result's location or the error, and the API links. The id is the
    // execution ARN plus the outcome, so a repeated publish can be deduplicated.
    const jobId = sfn.JsonPath.stringAt('$.job_id');
    const jobEvent = (outcome: 'succeeded' | 'failed', detail: Record<string, unknown>): sfn.TaskInput =>
      sfn.TaskInput.fromObject({
        specversion: '1.0',
        id: sfn.JsonPath.format(`{}/${outcome}`, sfn.JsonPath.executionId),
        type: `quarry.job.${outcome}`,
        source: 'quarry/jobs',
        subject: jobId,
        time: sfn.JsonPath.stringAt('$$.State.EnteredTime'),
        datacontenttype: 'application/json',
        data: {
          job_id: jobId,
          operation,
          state: outcome,
          ...detail,
          links: {
            status: sfn.JsonPath.format('/analytics/jobs/{}', jobId),
            result: sfn.JsonPath.format('/analytics/jobs/{}/result', jobId),
          },
        },
      });
    const notifySuccess = new tasks.SnsPublish(this, STATES.notifySuccess, {
      stateName: STATES.notifySuccess,
      topic: notifications.jobsTopic,
      subject: 'Quarry job succeeded',
      message: jobEvent('succeeded', { result: sfn.JsonPath.objectAt('$.stored') }),
      messageAttributes: { type: { value: 'quarry.job.succeeded' } },
      resultPath: sfn.JsonPath.DISCARD,
    });
    const notifyFailure = new tasks.SnsPublish(this, STATES.notifyFailure, {
      stateName: STATES.notifyFailure,
      topic: notifications.jobsTopic,
      subject: 'Quarry job failed',
      message: jobEvent('failed', { error: sfn.JsonPath.objectAt('$.error') }),
      messageAttributes: { type: { value: 'quarry.job.failed' } },
      resultPath: sfn.JsonPath.DISCARD,
    });
    const jobFailed = new sfn.Fail(this, STATES.jobFailed, {
      stateName: STATES.jobFailed,
      comment: 'The execution fails (and counts in ExecutionsFailed) with the original error',
      errorPath: '$.error.Error',
      causePath: '$.error.Cause',
    });

    // A publish that fails for a moment (throttling, KMS, the endpoint) is
    // tried again before the execution gives up on telling anyone.
    for (const notify of [notifySuccess, notifyFailure]) {
      notify.addRetry({
        errors: [sfn.Errors.ALL],
        interval: Duration.seconds(1),
        backoffRate: 2,
        maxAttempts: 4,
        maxDelay: Duration.seconds(20),
        jitterStrategy: sfn.JitterType.FULL,
      });
    }

    markFailed.next(notifyFailure).next(jobFailed);
    // If even the failure bookkeeping fails, the notification still goes out.
    markFailed.addCatch(notifyFailure, { errors: [sfn.Errors.ALL], resultPath: '$.fail_error' });
    for (const task of [initialise, execute, storeResult, complete]) {
      task.addCatch(markFailed, { errors: [sfn.Errors.ALL], resultPath: '$.error' });
    }

    const definition = sfn.Chain.start(initialise).next(execute).next(storeResult).next(complete).next(notifySuccess);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/aws/vendedlogs/states/${this.stateMachineName}`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: this.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      comment: 'Quarry analytics job: initialise, execute, store result, complete, notify',
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: Duration.hours(1),
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
    });
    // An execution that ends without its own last steps (the 1 h limit, an
    // operator's StopExecution, a failure no Catch reached) would leave its job
    // `running` forever: EventBridge hands the status change to quarry-jobs,
    // which marks the job failed and publishes its quarry.job.failed event.
    this.endedRule = new events.Rule(this, 'ExecutionEnded', {
      description: 'Quarry analytics job executions that ended: the job is marked failed unless it already finished',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: {
          stateMachineArn: [this.stateMachine.stateMachineArn],
          status: ['FAILED', 'TIMED_OUT', 'ABORTED'],
        },
      },
    });
    this.endedDeadLetters = new sqs.Queue(this, 'ExecutionEndedDeadLetters', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.endedRule.addTarget(
      new targets.LambdaFunction(this.fn.function, {
        retryAttempts: 8,
        maxEventAge: Duration.hours(6),
        deadLetterQueue: this.endedDeadLetters,
      }),
    );
    this.fn.asyncInvoked = true;
    notifications.allowPublish(this.fn, notifications.jobsTopic, 'PublishJobEvents');
    acknowledge(
      this.endedDeadLetters,
      'AwsSolutions-SQS3',
      'This queue is itself the dead-letter queue of the execution-ended rule target.',
    );

    // SNS publishes to the encrypted jobs topic need the key.
    notifications.key.grant(this.stateMachine.role, 'kms:GenerateDataKey', 'kms:Decrypt');

    acknowledgeFindings(
      this.stateMachine.role,
      'AwsSolutions-IAM5',
      'Resource',
      ['*'],
      'Resource * only where AWS requires it: X-Ray PutTraceSegments/PutTelemetryRecords/GetSamplingRules/GetSamplingTargets and the CloudWatch Logs vended-log delivery actions (logs:CreateLogDelivery, ...) have no resource-level permissions.',
    );
    acknowledgeFindings(
      this.stateMachine.role,
      'AwsSolutions-IAM5',
      'Resource',
      [`${this.fn.function.functionArn}:*`],
      'lambda:InvokeFunction on quarry-jobs and its versions/aliases (<arn>:*), as the CDK LambdaInvoke task grants it; no other function.',
    );
  }
}
