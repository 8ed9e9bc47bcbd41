#!/usr/bin/env node
import * as fs from 'fs';
import * as path from 'path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FUNCTIONS, loadConfig } from '../lib/config';
import { QuarryStack } from '../lib/quarry-stack';

const app = new App();
const config = loadConfig(app.node);

const missing = FUNCTIONS.map((fn) => path.join(config.lambdaDir, `quarry-${fn}`, 'bootstrap.zip')).filter((zip) => !fs.existsSync(zip));
if (missing.length > 0) {
  console.error(
    [
      `Missing Lambda bundles:`,
      ...missing.map((m) => `  ${m}`),
      `Build them at the repository root with: scripts/build-lambdas.sh`,
      `or synthesize against other bundles with -c lambdaDir=DIR (scripts/check.sh makes placeholders).`,
    ].join('\n'),
  );
  process.exit(1);
}

new QuarryStack(app, 'Quarry', {
  stackName: config.prefix === 'quarry' ? 'Quarry' : `Quarry-${config.prefix}`,
  config,
});

// cdk-nag AwsSolutions as a CDK policy-validation plugin: any finding that is
// not acknowledged (with a reason, next to the resource) fails `cdk synth`.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
