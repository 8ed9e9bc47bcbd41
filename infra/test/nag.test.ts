import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';
import { synthesize } from './support/stack';

/**
 * cdk-nag AwsSolutions over the stack, in the variants the context allows:
 * no finding may be left unacknowledged, every acknowledgment carries a reason,
 * and every acknowledgment still matches a finding (no stale suppressions).
 */

interface Finding {
  rule: string;
  path: string;
}

function findings(scope: IConstruct, honourAcknowledgments: boolean): Finding[] {
  const pack = new AwsSolutionsChecks(undefined, { verbose: true });
  if (!honourAcknowledgments) {
    // Test-only: see what the rules report with every acknowledgment ignored.
    (pack as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  }
  const report = pack.validateScope(scope);
  return report.violations.flatMap((v) => v.violatingResources.map((r) => ({ rule: v.ruleName, path: r.constructPath ?? '' })));
}

interface Ack {
  id: string;
  reason: string;
  path: string;
}

function acknowledgments(scope: IConstruct): Ack[] {
  const out: Ack[] = [];
  for (const c of scope.node.findAll()) {
    for (const entry of c.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [key, reason] of Object.entries(entry.data as Record<string, string>)) {
        const id = key.replace(/^annotation::/i, '');
        if (id.startsWith('AwsSolutions-')) out.push({ id, reason, path: c.node.path });
      }
    }
  }
  return out;
}

const variants: Array<[string, Record<string, unknown>]> = [
  ['default', {}],
  ['dev (-c dev=true -c waf=false)', { dev: true, waf: false }],
  ['production-like (-c dbMultiAz=true, e-mail subscriptions)', { dbMultiAz: true, alarmEmail: 'ops@example.com', jobsEmail: 'a@example.com' }],
];

describe.each(variants)('cdk-nag AwsSolutions, %s', (_name, context) => {
  const { stack } = synthesize(context);

  test('no unacknowledged error or warning', () => {
    expect(findings(stack, true)).toEqual([]);
  });

  test('every acknowledgment has a written reason', () => {
    const acks = acknowledgments(stack);
    expect(acks.length).toBeGreaterThan(0);
    for (const a of acks) expect(a.reason.length).toBeGreaterThan(40);
  });

  test('every acknowledgment matches a finding the rules report without it', () => {
    const raw = findings(stack, false);
    const stale = acknowledgments(stack).filter(
      (a) => !raw.some((f) => f.rule === a.id && (f.path === a.path || f.path.startsWith(`${a.path}/`))),
    );
    expect(stale).toEqual([]);
  });
});
