#!/usr/bin/env node
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig } from '../lib/config';
import { QuarryStack } from '../lib/quarry-stack';

const app = new App();
const config = loadConfig(app.node);

new QuarryStack(app, 'Quarry', {
  stackName: config.prefix === 'quarry' ? 'Quarry' : `Quarry-${config.prefix}`,
  config,
});

// cdk-nag AwsSolutions as a CDK policy-validation plugin: any finding that is
// not acknowledged (with a reason, next to the resource) fails `cdk synth`.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
