import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { QuarryConfig } from './config';
import { QuarryFunction } from './function';

export interface MonitoringProps {
  readonly config: QuarryConfig;
  readonly alarmTopic: sns.ITopic;
  readonly functions: QuarryFunction[];
  readonly stateMachine: sfn.StateMachine;
  readonly ingestFailureQueue: sqs.IQueue;
  readonly database: rds.DatabaseInstance;
  readonly restApi: apigw.RestApi;
}

const FIVE_MINUTES = Duration.minutes(5);

/** A Lambda metric that lambda.Function has no method for, per function, every 5 minutes. */
const lambdaMetric = (f: QuarryFunction, metricName: string, statistic: string): cloudwatch.Metric =>
  new cloudwatch.Metric({ namespace: 'AWS/Lambda', metricName, dimensionsMap: { FunctionName: f.functionName }, period: FIVE_MINUTES, statistic });

/**
 * Alarms to the alarm topic (state changes to ALARM and back to OK), and one
 * dashboard. Missing data is "not breaching": an idle pipeline is healthy.
 */
export class Monitoring extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;
  private readonly action: actions.SnsAction;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config } = props;
    this.action = new actions.SnsAction(props.alarmTopic);
    const name = (suffix: string): string => `${config.prefix}-${suffix}`;

    for (const f of props.functions) {
      const short = f.functionName.slice(config.prefix.length + 1);
      this.alarm(`${f.node.id}Errors`, {
        alarmName: name(`${short}-errors`),
        alarmDescription: `${f.functionName} returned errors`,
        metric: f.function.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }),
        threshold: 1,
      });
      const reserved = f.reservedConcurrency;
      if (reserved === undefined) {
        // Unreserved: a throttle means the account's concurrency ran out.
        this.alarm(`${f.node.id}Throttles`, {
          alarmName: name(`${short}-throttles`),
          alarmDescription: `${f.functionName} was throttled (the account's concurrency limit)`,
          metric: f.function.metricThrottles({ period: FIVE_MINUTES, statistic: 'Sum' }),
          threshold: 1,
        });
      } else {
        // Reserved: throttling at the reservation is the design (S3 retries its
        // events); what needs a person is the reservation full for 15 minutes.
        this.alarm(`${f.node.id}Saturated`, {
          alarmName: name(`${short}-saturated`),
          alarmDescription: `${f.functionName} ran at its reserved concurrency (${reserved}) for 15 minutes: uploads queue up; raise ingestReservedConcurrency or look for slow files`,
          metric: lambdaMetric(f, 'ConcurrentExecutions', 'Maximum'),
          threshold: reserved,
          evaluationPeriods: 3,
        });
      }
      // Close to the timeout: the next slower call fails.
      this.alarm(`${f.node.id}NearTimeout`, {
        alarmName: name(`${short}-near-timeout`),
        alarmDescription: `${f.functionName} took over 80% of its ${f.timeout.toSeconds()} s timeout (p99)`,
        metric: f.function.metricDuration({ period: FIVE_MINUTES, statistic: 'p99' }),
        threshold: Math.floor(f.timeout.toMilliseconds() * 0.8),
      });
    }
    // Events invoked asynchronously (S3 uploads, EventBridge) that Lambda gave up on.
    for (const f of props.functions.filter((fn) => fn.asyncInvoked)) {
      const short = f.functionName.slice(config.prefix.length + 1);
      this.alarm(`${f.node.id}AsyncDropped`, {
        alarmName: name(`${short}-async-events-dropped`),
        alarmDescription: `${f.functionName} dropped events it was invoked with asynchronously`,
        metric: lambdaMetric(f, 'AsyncEventsDropped', 'Sum'),
        threshold: 1,
      });
    }

    // Jobs that failed for the system's reasons, not the submitter's (their
    // parameters, their SQL, an answer too large): quarry-jobs counts them.
    this.alarm('JobsSystemFailures', {
      alarmName: name('jobs-system-failures'),
      alarmDescription: 'Analytics jobs failed for reasons the submitter did not cause (database, storage, internal errors, aborted)',
      metric: new cloudwatch.Metric({
        namespace: config.metricsNamespace,
        metricName: 'quarry_job_system_failures_total',
        dimensionsMap: { function: 'quarry-jobs' },
        period: FIVE_MINUTES,
        statistic: 'Sum',
      }),
      threshold: 1,
    });
    this.alarm('JobsTimedOut', {
      alarmName: name('jobs-timed-out'),
      alarmDescription: 'Analytics job executions timed out',
      metric: props.stateMachine.metricTimedOut({ period: FIVE_MINUTES, statistic: 'Sum' }),
      threshold: 1,
    });

    this.alarm('IngestFailures', {
      alarmName: name('ingest-failures'),
      alarmDescription: 'Upload events that failed ingest after retries wait in the failure queue',
      metric: props.ingestFailureQueue.metricApproximateNumberOfMessagesVisible({ period: FIVE_MINUTES, statistic: 'Maximum' }),
      threshold: 1,
    });

    this.alarm('DbCpu', {
      alarmName: name('db-cpu'),
      alarmDescription: 'PostgreSQL CPU above 80% for 15 minutes',
      metric: props.database.metricCPUUtilization({ period: FIVE_MINUTES, statistic: 'Average' }),
      threshold: 80,
      evaluationPeriods: 3,
    });
    this.alarm('DbStorage', {
      alarmName: name('db-free-storage'),
      alarmDescription: 'PostgreSQL free storage below 2 GiB',
      metric: props.database.metricFreeStorageSpace({ period: FIVE_MINUTES, statistic: 'Minimum' }),
      threshold: 2 * 1024 ** 3,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    });
    this.alarm('DbMemory', {
      alarmName: name('db-freeable-memory'),
      alarmDescription: 'PostgreSQL freeable memory below 64 MiB for 15 minutes',
      metric: props.database.metric('FreeableMemory', { period: FIVE_MINUTES, statistic: 'Minimum' }),
      threshold: 64 * 1024 ** 2,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    });
    if (config.dbInstanceClass.startsWith('t')) {
      this.alarm('DbCpuCredits', {
        alarmName: name('db-cpu-credits'),
        alarmDescription: 'PostgreSQL (burstable instance) has almost no CPU credits left: it will slow to its baseline',
        metric: props.database.metric('CPUCreditBalance', { period: FIVE_MINUTES, statistic: 'Minimum' }),
        threshold: 10,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      });
    }
    this.alarm('DbConnections', {
      alarmName: name('db-connections'),
      alarmDescription: `PostgreSQL connections above ${config.dbConnectionsAlarm}`,
      metric: props.database.metricDatabaseConnections({ period: FIVE_MINUTES, statistic: 'Maximum' }),
      threshold: config.dbConnectionsAlarm,
    });

    this.alarm('Api5xx', {
      alarmName: name('api-5xx'),
      alarmDescription: 'API answered 5xx at least 5 times in 5 minutes',
      metric: props.restApi.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' }),
      threshold: 5,
    });
    this.alarm('ApiLatency', {
      alarmName: name('api-latency-p95'),
      alarmDescription: 'API p95 latency above 5 s for 15 minutes',
      metric: props.restApi.metricLatency({ period: FIVE_MINUTES, statistic: 'p95' }),
      threshold: 5000,
      evaluationPeriods: 3,
    });

    this.dashboard = this.buildDashboard(props);
  }

  private alarm(
    id: string,
    p: {
      alarmName: string;
      alarmDescription: string;
      metric: cloudwatch.IMetric;
      threshold: number;
      evaluationPeriods?: number;
      comparisonOperator?: cloudwatch.ComparisonOperator;
    },
  ): void {
    const alarm = new cloudwatch.Alarm(this, id, {
      alarmName: p.alarmName,
      alarmDescription: p.alarmDescription,
      metric: p.metric,
      threshold: p.threshold,
      evaluationPeriods: p.evaluationPeriods ?? 1,
      comparisonOperator: p.comparisonOperator ?? cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
    this.alarms.push(alarm);
  }

  private buildDashboard(props: MonitoringProps): cloudwatch.Dashboard {
    const { config } = props;
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${config.prefix}-pipeline`,
      defaultInterval: Duration.hours(6),
    });
    const graph = (title: string, left: cloudwatch.IMetric[], right: cloudwatch.IMetric[] = []): cloudwatch.GraphWidget =>
      new cloudwatch.GraphWidget({ title, left, right, width: 8, height: 6 });
    const fns = props.functions.map((f) => f.function);

    // On call: what is red first, then what each alarm asks of you.
    const p = config.prefix;
    dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms (red first)', alarms: this.alarms, width: 12, height: 6, sortBy: cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP }),
      new cloudwatch.TextWidget({
        markdown: [
          `# Quarry (${p}): first steps`,
          `- **${p}-ingest-failures**: read a message of the failure queue (\`aws sqs receive-message\`), then \`aws logs tail /aws/lambda/${p}-ingest\`; re-upload the file once fixed (ingest is idempotent).`,
          `- **${p}-jobs-system-failures / -timed-out**: \`aws logs tail /aws/lambda/${p}-jobs\`; the job's own error says what the submitter sees.`,
          `- **-near-timeout / -saturated**: a function is at its limit; check the database panels below before raising memory or concurrency.`,
          `- **${p}-db-***: CPU, memory, credits, storage, connections of PostgreSQL (Performance Insights when on).`,
          `- **${p}-api-5xx / -latency**: \`aws logs tail /aws/lambda/${p}-api\` and the API panels.`,
          'Runbook: infra/README.md, "Operating it".',
        ].join('\n'),
        width: 12,
        height: 6,
      }),
    );
    dashboard.addWidgets(
      graph('Lambda invocations', fns.map((f) => f.metricInvocations({ period: FIVE_MINUTES }))),
      graph('Lambda errors and throttles', [
        ...fns.map((f) => f.metricErrors({ period: FIVE_MINUTES })),
        ...fns.map((f) => f.metricThrottles({ period: FIVE_MINUTES })),
      ]),
      graph('Lambda duration p95', fns.map((f) => f.metricDuration({ period: FIVE_MINUTES, statistic: 'p95' }))),
    );
    dashboard.addWidgets(
      graph(
        'API requests and errors',
        [props.restApi.metricCount({ period: FIVE_MINUTES })],
        [props.restApi.metricClientError({ period: FIVE_MINUTES }), props.restApi.metricServerError({ period: FIVE_MINUTES })],
      ),
      graph('API latency', [
        props.restApi.metricLatency({ period: FIVE_MINUTES, statistic: 'p50' }),
        props.restApi.metricLatency({ period: FIVE_MINUTES, statistic: 'p95' }),
        props.restApi.metricIntegrationLatency({ period: FIVE_MINUTES, statistic: 'p95' }),
      ]),
      graph('Analytics jobs', [
        props.stateMachine.metricStarted({ period: FIVE_MINUTES }),
        props.stateMachine.metricSucceeded({ period: FIVE_MINUTES }),
        props.stateMachine.metricFailed({ period: FIVE_MINUTES }),
        props.stateMachine.metricTimedOut({ period: FIVE_MINUTES }),
      ]),
    );
    dashboard.addWidgets(
      graph('PostgreSQL CPU and connections', [props.database.metricCPUUtilization({ period: FIVE_MINUTES })], [
        props.database.metricDatabaseConnections({ period: FIVE_MINUTES }),
      ]),
      graph('PostgreSQL free storage (bytes)', [props.database.metricFreeStorageSpace({ period: FIVE_MINUTES })]),
      graph('Ingest failure queue', [
        props.ingestFailureQueue.metricApproximateNumberOfMessagesVisible({ period: FIVE_MINUTES, statistic: 'Maximum' }),
      ]),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: `Quarry metrics (Embedded Metric Format, namespace ${config.metricsNamespace})`,
        width: 24,
        height: 6,
        left: [
          new cloudwatch.MathExpression({
            expression: `SEARCH('Namespace="${config.metricsNamespace}"', 'Sum', 300)`,
            label: '',
            usingMetrics: {},
            period: FIVE_MINUTES,
          }),
        ],
      }),
    );
    return dashboard;
  }
}
