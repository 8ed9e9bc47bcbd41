import { CfnResource, Fn, Stack } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct, IConstruct } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';

/**
 * Log groups, with the stack's retention, for functions that AWS services or
 * CDK create and that would otherwise log to a group Lambda makes on first
 * use, kept forever:
 *
 * - every `AWS::Lambda::Function` of the template without its own log group
 *   (CDK's helpers: the S3 bucket-notifications handler, the VPC's
 *   default-security-group restriction): `/aws/lambda/<its generated name>`,
 *   created before any custom resource runs them;
 * - the hosted secret-rotation functions (made by the Secrets Manager
 *   transform at deploy time, named `<prefix>-rotate-db-<role>`).
 *
 * Call once, after every construct of the stack exists.
 */
export function retainServiceLogs(stack: Stack, config: QuarryConfig, rotationFunctionNames: string[], before: IConstruct[]): logs.LogGroup[] {
  const scope = new Construct(stack, 'ServiceLogs');
  const groups: logs.LogGroup[] = [];
  const group = (id: string, logGroupName: string): logs.LogGroup => {
    const g = new logs.LogGroup(scope, id, {
      logGroupName,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });
    groups.push(g);
    return g;
  };

  const helpers = stack.node
    .findAll()
    .filter((c): c is CfnResource => c instanceof CfnResource && c.cfnResourceType === 'AWS::Lambda::Function')
    .filter((fn) => {
      const logging = (fn as unknown as { loggingConfig?: { logGroup?: unknown } }).loggingConfig;
      return !logging?.logGroup;
    });
  for (const fn of helpers) {
    const id = fn.node.path.split('/').slice(1).join('').replace(/[^A-Za-z0-9]/g, '');
    const g = group(`Fn${id}`.slice(0, 200), Fn.join('', ['/aws/lambda/', fn.ref]));
    // Every custom resource the helper serves runs it: they wait for its group.
    for (const c of stack.node.findAll()) {
      if (c instanceof CfnResource && c.cfnResourceType.startsWith('Custom::')) c.node.addDependency(g);
    }
  }
  for (const name of rotationFunctionNames) group(`Rotation${name}`, `/aws/lambda/${name}`);
  for (const c of before) {
    for (const g of groups) c.node.addDependency(g);
  }
  return groups;
}
