import { Template } from 'aws-cdk-lib/assertions';

/**
 * The state machine's Amazon States Language document as deployed, with its
 * CloudFormation references replaced by the ARNs they would take in the pinned
 * account and region (functions and topics by their physical names).
 */
export function deployedDefinition(template: Template, account = '123456789012', region = 'us-east-1'): any {
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: any }>;
  const machines = Object.values(resources).filter((r) => r.Type === 'AWS::StepFunctions::StateMachine');
  if (machines.length !== 1) throw new Error(`expected one state machine, found ${machines.length}`);

  const resolve = (ref: any): string => {
    if (ref.Ref === 'AWS::Partition') return 'aws';
    if (ref.Ref === 'AWS::Region') return region;
    if (ref.Ref === 'AWS::AccountId') return account;
    if (ref.Ref === 'AWS::URLSuffix') return 'amazonaws.com';
    const logicalId: string = ref.Ref ?? ref['Fn::GetAtt']?.[0];
    const target = resources[logicalId];
    if (!target) throw new Error(`unresolvable reference ${JSON.stringify(ref)}`);
    switch (target.Type) {
      case 'AWS::Lambda::Function':
        return `arn:aws:lambda:${region}:${account}:function:${target.Properties.FunctionName}`;
      case 'AWS::SNS::Topic':
        return `arn:aws:sns:${region}:${account}:${target.Properties.TopicName}`;
      default:
        throw new Error(`no fake ARN for ${target.Type} (${logicalId})`);
    }
  };

  const body = machines[0].Properties.DefinitionString;
  const text =
    typeof body === 'string' ? body : (body['Fn::Join'][1] as unknown[]).map((p) => (typeof p === 'string' ? p : resolve(p))).join('');
  return JSON.parse(text);
}
