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
      this.alarm(`${f.node.id}Errors`, {
        alarmName: name(`${f.functionName.slice(config.prefix.length + 1)}-errors`),
        alarmDescription: `${f.functionName} returned errors`,
        metric: f.function.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }),
        threshold: 1,
      });
      this.alarm(`${f.node.id}Throttles`, {
        alarmName: name(`${f.functionName.slice(config.prefix.length + 1)}-throttles`),
        alarmDescription: `${f.functionName} was throttled`,
        metric: f.function.metricThrottles({ period: FIVE_MINUTES, statistic: 'Sum' }),
        threshold: 1,
      });
    }

    this.alarm('JobsFailed', {
      alarmName: name('jobs-failed'),
      alarmDescription: 'Analytics job executions failed',
      metric: props.stateMachine.metricFailed({ period: FIVE_MINUTES, statistic: 'Sum' }),
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

    dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: `# Quarry (${config.prefix})\nIngest, API, analytics jobs and PostgreSQL. Alarms go to the alarm topic.`,
        width: 24,
        height: 2,
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
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 }),
    );
    return dashboard;
  }
}
