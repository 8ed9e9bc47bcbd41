import { Stack, Validations } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
// The function cdk-nag itself uses to name IAM findings (Resource::<Logical.Arn>/...).
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference';

/**
 * Acknowledges (suppresses) one cdk-nag rule on a construct and everything
 * below it, with the reason a reviewer reads. cdk-nag v3 uses CDK's native
 * `Validations.of(...).acknowledge` mechanism.
 */
export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id, reason });
}

/**
 * Acknowledges individual findings of a rule that reports one finding per value
 * (IAM4 per managed policy, IAM5 per wildcard resource or action). `values` may
 * hold CDK tokens (ARNs of resources in the stack): they are rendered the way
 * cdk-nag renders them, so each acknowledgment names exactly one finding and a
 * new wildcard elsewhere is still reported.
 */
export function acknowledgeFindings(
  scope: IConstruct,
  rule: 'AwsSolutions-IAM4' | 'AwsSolutions-IAM5',
  kind: 'Resource' | 'Action' | 'Policy',
  values: string[],
  reason: string,
): void {
  const stack = Stack.of(scope);
  for (const value of values) {
    const rendered = flattenCfnReference(stack.resolve(value));
    acknowledge(scope, `${rule}[${kind}::${rendered}]`, reason);
  }
}
