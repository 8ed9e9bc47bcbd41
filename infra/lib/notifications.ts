import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';
import { QuarryWorkload } from './function';

export interface NotificationsProps {
  readonly config: QuarryConfig;
}

/**
 * The two SNS topics: job notifications (published by the state machine's notify
 * states) and alarms (CloudWatch alarms, and system errors the functions report).
 * Both are encrypted with one customer-managed key (the AWS managed SNS key
 * cannot be used by CloudWatch alarms) and refuse non-TLS publishing.
 */
export class Notifications extends Construct {
  readonly key: kms.Key;
  readonly jobsTopic: sns.Topic;
  readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: NotificationsProps) {
    super(scope, id);
    const { config } = props;

    this.key = new kms.Key(this, 'Key', {
      description: `${config.prefix}: SNS topic encryption`,
      enableKeyRotation: true,
      removalPolicy: keepPolicy(config),
      pendingWindow: Duration.days(config.dev ? 7 : 30),
    });
    // CloudWatch alarms of this stack (named <prefix>-...) publish to the
    // encrypted alarm topic as the CloudWatch service principal: SNS needs the
    // key for them, and the topic policy must admit them. Both are scoped to
    // this account's alarms by name (confused-deputy conditions).
    const stack = Stack.of(this);
    const ourAlarms = {
      StringEquals: { 'aws:SourceAccount': stack.account },
      ArnLike: { 'aws:SourceArn': `arn:${stack.partition}:cloudwatch:${stack.region}:${stack.account}:alarm:${config.prefix}-*` },
    };
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: ourAlarms,
      }),
    );

    this.jobsTopic = new sns.Topic(this, 'JobsTopic', {
      topicName: `${config.prefix}-jobs`,
      displayName: 'Quarry analytics jobs',
      masterKey: this.key,
      enforceSSL: true,
    });
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', {
      topicName: `${config.prefix}-alarms`,
      displayName: 'Quarry alarms',
      masterKey: this.key,
      enforceSSL: true,
    });

    this.alarmTopic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.alarmTopic.topicArn],
        conditions: ourAlarms,
      }),
    );

    if (config.alarmEmail) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(config.alarmEmail));
    }
    if (config.jobsEmail) {
      this.jobsTopic.addSubscription(new subscriptions.EmailSubscription(config.jobsEmail));
    }
  }

  /** sns:Publish on one topic, and the key use SNS needs from the publisher. */
  allowPublish(fn: QuarryWorkload, topic: sns.ITopic, sid: string): void {
    fn.allow(sid, ['sns:Publish'], [topic.topicArn]);
    fn.allow(`${sid}Key`, ['kms:GenerateDataKey', 'kms:Decrypt'], [this.key.keyArn]);
  }
}
