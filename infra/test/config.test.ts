import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { DEFAULTS, INFRA_DIR, lambdaZip, loadConfig, PROFILES, profileValues } from '../lib/config';

const config = (context: Record<string, unknown>) => loadConfig(new App({ context }).node);

describe('context', () => {
  test('defaults: pinned account and region, two AZs, the four shipped source prefixes, cargo lambda output folder', () => {
    const c = config({});
    expect(c.account).toBe('123456789012');
    expect(c.region).toBe('us-east-1');
    expect(c.availabilityZones).toEqual(['us-east-1a', 'us-east-1b']);
    expect(c.ingestPrefixes).toEqual(['crm-data/', 'erp-data/', 'shop-data/', 'stripe-data/']);
    expect(c.lambdaDir).toBe(path.resolve(INFRA_DIR, '../target/lambda'));
    expect(c.dev).toBe(false);
    expect(c.alarmEmail).toBeUndefined();
    expect(c.ingestReservedConcurrency).toBe(DEFAULTS.ingestReservedConcurrency);
  });

  test('values given with -c arrive as strings and are parsed', () => {
    const c = config({
      region: 'eu-west-1',
      dev: 'true',
      ingestPrefixes: 'crm-data/,pos-data/',
      ingestReservedConcurrency: '10',
      corsAllowOrigins: '["https://a.example","https://b.example"]',
      alarmEmail: 'ops@example.com',
      lambdaDir: '/tmp/bundles',
    });
    expect(c.availabilityZones).toEqual(['eu-west-1a', 'eu-west-1b']);
    expect(c.dev).toBe(true);
    expect(c.ingestPrefixes).toEqual(['crm-data/', 'pos-data/']);
    expect(c.ingestReservedConcurrency).toBe(10);
    expect(c.corsAllowOrigins).toEqual(['https://a.example', 'https://b.example']);
    expect(c.alarmEmail).toBe('ops@example.com');
    expect(c.lambdaDir).toBe('/tmp/bundles');
  });

  test('reserved concurrency can be turned off (accounts with a low concurrency limit)', () => {
    expect(config({ ingestReservedConcurrency: 'off' }).ingestReservedConcurrency).toBeUndefined();
  });

  test.each([
    [{ account: '1234' }, /account/],
    [{ dev: 'yes' }, /dev/],
    [{ alarmEmail: 'not-an-address' }, /alarmEmail/],
    [{ ingestPrefixes: 'crm-data' }, /ingestPrefixes/],
    [{ ingestReservedConcurrency: '0' }, /ingestReservedConcurrency/],
    [{ logRetentionDays: '10' }, /logRetentionDays/],
    [{ rawGlacierDays: '40' }, /rawGlacierDays/],
    [{ dbEngineVersion: '17' }, /dbEngineVersion/],
    [{ prefix: 'Quarry_Prod' }, /prefix/],
  ])('rejects %j', (context, message) => {
    expect(() => config(context)).toThrow(message);
  });

  test('a missing bundle names the build command and the way around it', () => {
    const c = config({ lambdaDir: '/nonexistent' });
    expect(() => lambdaZip(c, 'api', () => false)).toThrow(/scripts\/build-lambdas\.sh.*-c lambdaDir=/);
    expect(lambdaZip(c, 'ingest', () => true)).toBe('/nonexistent/quarry-ingest/bootstrap.zip');
  });
});

describe('profiles', () => {
  test('a profile fills what -c and cdk.json leave out; what is given wins', () => {
    expect(config({ profile: 'prod' }).dbMultiAz).toBe(true);
    expect(config({ profile: 'prod', dbMultiAz: 'false' }).dbMultiAz).toBe(false);
    expect(config({ profile: 'dev' }).prefix).toBe('dev');
    expect(config({ profile: 'dev', prefix: 'alice' }).prefix).toBe('alice');
    expect(config({ profile: 'dev' }).ingestReservedConcurrency).toBeUndefined();
    expect(config({}).profile).toBe('default');
  });

  test('an unknown profile names the ones there are', () => {
    expect(() => config({ profile: 'staging' })).toThrow(/one of default, dev, prod/);
  });

  test.each(PROFILES.filter((p) => p !== 'default'))('profiles/%s.json sets only known keys, each valid', (name) => {
    const values = profileValues(name);
    expect(Object.keys(values).length).toBeGreaterThan(1);
    // loadConfig validates every value it reads.
    expect(() => config({ profile: name })).not.toThrow();
  });
});
