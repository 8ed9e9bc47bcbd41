import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, CfnElement, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { Template } from 'aws-cdk-lib/assertions';
import { INFRA_DIR, loadConfig } from '../../lib/config';
import { QuarryStack } from '../../lib/quarry-stack';
import { writePlaceholderZips } from '../../scripts/placeholder-zips';

/** cdk.json's context (feature flags and defaults), so tests synthesize what `cdk synth` does. */
const CDK_JSON_CONTEXT: Record<string, unknown> = JSON.parse(fs.readFileSync(path.join(INFRA_DIR, 'cdk.json'), 'utf8')).context;

let zips: string | undefined;
let outRoot: string | undefined;

function tempDir(prefix: string): string {
  if (!outRoot) {
    outRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'quarry-infra-test-'));
    const root = outRoot;
    process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  }
  return fs.mkdtempSync(path.join(outRoot, prefix));
}

/** Placeholder Lambda bundles in a temporary folder (once per test file). */
export function placeholderLambdaDir(): string {
  zips ??= writePlaceholderZips(tempDir('lambda-'));
  return zips;
}

export interface Synthesized {
  readonly app: App;
  readonly stack: QuarryStack;
  readonly template: Template;
}

/** The app's stack with cdk.json's context, placeholder bundles and `context` on top. */
export function synthesize(context: Record<string, unknown> = {}): Synthesized {
  const app = new App({
    context: { ...CDK_JSON_CONTEXT, lambdaDir: placeholderLambdaDir(), ...context },
    outdir: tempDir('cdk.out-'),
  });
  const stack = new QuarryStack(app, 'Quarry', { config: loadConfig(app.node) });
  return { app, stack, template: Template.fromStack(stack) };
}

/** Resources of one type as [logicalId, resource] pairs. */
export function resourcesOf(template: Template, type: string): Array<[string, { Properties: any; [k: string]: any }]> {
  return Object.entries(template.findResources(type)) as Array<[string, { Properties: any }]>;
}

/** The single resource of a type whose properties contain `props` (by JSON subset). */
export function logicalIdOf(template: Template, type: string, props: Record<string, unknown>): string {
  const ids = Object.keys(template.findResources(type, { Properties: props }));
  if (ids.length !== 1) throw new Error(`expected one ${type} matching ${JSON.stringify(props)}, found ${ids.length}`);
  return ids[0];
}

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
}

/** Every statement of the inline policies attached to a role. */
export function statementsOf(template: Template, stack: Stack, role: IConstruct): Statement[] {
  const roleId = stack.resolve((role.node.defaultChild as CfnElement).logicalId);
  const out: Statement[] = [];
  for (const [, policy] of resourcesOf(template, 'AWS::IAM::Policy')) {
    const roles = (policy.Properties.Roles ?? []) as Array<{ Ref: string }>;
    if (roles.some((r) => r.Ref === roleId)) out.push(...policy.Properties.PolicyDocument.Statement);
  }
  return out;
}

export const actionsOf = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
export const resourcesOfStatement = (s: Statement): unknown[] => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);

/** The logical id of a construct's CloudFormation resource. */
export function idOf(stack: Stack, construct: IConstruct): string {
  const child = (construct instanceof CfnElement ? construct : construct.node.defaultChild) as CfnElement;
  return stack.resolve(child.logicalId);
}
