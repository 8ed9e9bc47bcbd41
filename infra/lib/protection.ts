import { Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, IDependable } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';
import { acknowledgeFindings } from './nag';

export interface DeletionProtectionProps {
  readonly config: QuarryConfig;
  readonly instance: rds.DatabaseInstance;
  readonly jobsTable: dynamodb.TableV2;
  /** Protection is switched on only once this (the migrations) has succeeded. */
  readonly after: IDependable;
}

/**
 * Deletion protection on the database and the jobs table, switched on by the
 * deploy once the migrations have succeeded, not in the resources' own
 * properties. A protected resource cannot be removed by CloudFormation, so if
 * it were protected from its creation, a first deploy that fails later (a
 * migration, a quota) could not roll back, and the retry would find the names
 * taken. Here a failed first deploy removes them (their policy is
 * `RetainExceptOnCreate`) and every later deploy finds them protected.
 *
 * Deleting the stack runs the onDelete calls, which switch protection off; the
 * resources themselves are retained (their removal policy), so the data stays.
 */
export class DeletionProtection extends Construct {
  readonly database: cr.AwsCustomResource;
  readonly table: cr.AwsCustomResource;

  constructor(scope: Construct, id: string, props: DeletionProtectionProps) {
    super(scope, id);
    const { config, instance, jobsTable } = props;

    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });

    // One resource per protected thing: on with the stack, off when it goes.
    const protect = (
      id: string,
      service: string,
      action: string,
      parameters: (enabled: boolean) => Record<string, unknown>,
      physicalId: string,
      permission: iam.PolicyStatement,
    ): cr.AwsCustomResource => {
      const call = (enabled: boolean): cr.AwsSdkCall => ({
        service,
        action,
        parameters: parameters(enabled),
        physicalResourceId: cr.PhysicalResourceId.of(physicalId),
      });
      return new cr.AwsCustomResource(this, id, {
        resourceType: 'Custom::QuarryDeletionProtection',
        onCreate: call(true),
        onUpdate: call(true),
        onDelete: call(false),
        policy: cr.AwsCustomResourcePolicy.fromStatements([permission]),
        installLatestAwsSdk: false,
        logGroup,
      });
    };
    this.database = protect(
      'Database',
      'RDS',
      'ModifyDBInstance',
      (enabled) => ({ DBInstanceIdentifier: instance.instanceIdentifier, DeletionProtection: enabled, ApplyImmediately: true }),
      `${config.prefix}-db-deletion-protection`,
      new iam.PolicyStatement({ actions: ['rds:ModifyDBInstance'], resources: [instance.instanceArn] }),
    );
    this.table = protect(
      'JobsTable',
      'DynamoDB',
      'UpdateTable',
      (enabled) => ({ TableName: jobsTable.tableName, DeletionProtectionEnabled: enabled }),
      `${config.prefix}-jobs-deletion-protection`,
      new iam.PolicyStatement({ actions: ['dynamodb:UpdateTable'], resources: [jobsTable.tableArn] }),
    );
    // One call at a time: after the migrations, the table after the database.
    this.database.node.addDependency(props.after);
    this.table.node.addDependency(this.database);

    // The CDK singleton function behind every AwsCustomResource of the stack.
    const singleton = Stack.of(this).node.tryFindChild('AWS679f53fac002430cb0da5b7982bd2287');
    if (singleton) {
      acknowledgeFindings(
        singleton,
        'AwsSolutions-IAM4',
        'Policy',
        [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaBasicExecutionRole').managedPolicyArn],
        'CDK singleton behind the deletion-protection calls; AWSLambdaBasicExecutionRole lets it write its own logs only, and each call adds a policy naming its one resource (rds:ModifyDBInstance on the instance, dynamodb:UpdateTable on the jobs table).',
      );
    }
  }
}
