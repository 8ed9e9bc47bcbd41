import * as fs from 'fs';
import * as path from 'path';
import { RemovalPolicy } from 'aws-cdk-lib';
import { Node } from 'constructs';

/**
 * Every knob of the stack, read from CDK context (`cdk.json` or `-c key=value`),
 * then from the chosen profile (`-c profile=dev|prod`: `profiles/<name>.json`),
 * then the defaults below. Values given with `-c` arrive as strings, values in
 * JSON files keep their JSON type; the parsers below accept both. README.md
 * lists each key with its default and what each profile changes.
 */
export interface QuarryConfig {
  /** The profile the values came from (`default`, `dev` or `prod`). */
  readonly profile: string;
  /** AWS account and region the stack is pinned to (no lookups: synth works offline). */
  readonly account: string;
  readonly region: string;
  /** Availability zones of the VPC: `<region>a,<region>b` unless given. */
  readonly availabilityZones: string[];
  /** Prefix of every physical name (functions, tables, state machine, log groups). */
  readonly prefix: string;
  /** Folder holding `<function>/bootstrap.zip` from `scripts/build-lambdas.sh` (cargo lambda build --release --arm64 --output-format zip). */
  readonly lambdaDir: string;
  /** Dev stack: no deletion protection, resources destroyed with the stack. */
  readonly dev: boolean;
  /** E-mail address subscribed to the alarm topic (optional). */
  readonly alarmEmail?: string;
  /** E-mail address subscribed to the job notification topic (optional). */
  readonly jobsEmail?: string;
  /** Raw-bucket prefixes whose ObjectCreated events trigger ingest. */
  readonly ingestPrefixes: string[];
  /** Reserved concurrency of the ingest function; `undefined` = unreserved. */
  readonly ingestReservedConcurrency?: number;
  /**
   * An ECS Fargate task for files too large for one 15-minute invocation (the
   * same bootstrap in task mode); adds a cluster and the ECS, ECR and Logs
   * interface endpoints the task and the hand-off need.
   */
  readonly ingestTask: boolean;
  /** Files over this many bytes go to the ingest task (with `ingestTask`). */
  readonly ingestTaskOverBytes: number;
  readonly dbInstanceClass: string;
  /** PostgreSQL engine version (major.minor); minor upgrades are automatic. */
  readonly dbEngineVersion: string;
  readonly dbAllocatedStorageGiB: number;
  readonly dbMaxAllocatedStorageGiB: number;
  readonly dbBackupRetentionDays: number;
  readonly dbMultiAz: boolean;
  /** Performance Insights on the instance (7 days of history, the free tier). */
  readonly dbPerformanceInsights: boolean;
  /**
   * RDS Proxy between the writer/reader functions and the database: pooled
   * connections for many concurrent Lambda containers (the migrations connect
   * directly, as the owner).
   */
  readonly dbProxy: boolean;
  /** Alarm threshold on DatabaseConnections. */
  readonly dbConnectionsAlarm: number;
  readonly secretRotationDays: number;
  readonly rawInfrequentAccessDays: number;
  readonly rawGlacierDays: number;
  readonly resultsExpirationDays: number;
  readonly logRetentionDays: number;
  readonly corsAllowOrigins: string[];
  /** Per-key (usage plan) throttle. */
  readonly apiRateLimit: number;
  readonly apiBurstLimit: number;
  /** Stage-wide throttle: the ceiling for all callers together. */
  readonly apiStageRateLimit: number;
  readonly apiStageBurstLimit: number;
  readonly apiMonthlyQuota: number;
  readonly waf: boolean;
  /** The web ACL's requests logged (keys and tokens redacted) to `aws-waf-logs-<prefix>-api`. */
  readonly wafLogs: boolean;
  readonly wafRateLimitPer5Min: number;
  readonly rustLog: string;
  /** CloudWatch namespace of the functions' Embedded Metric Format metrics. */
  readonly metricsNamespace: string;
}

export const FUNCTIONS = ['api', 'ingest', 'jobs', 'migrate'] as const;
export type FunctionName = (typeof FUNCTIONS)[number];

/** The directory of this CDK app (cdk.json's folder); relative lambdaDir values start here. */
export const INFRA_DIR = path.resolve(__dirname, '..');

export const DEFAULTS = {
  account: '123456789012',
  region: 'us-east-1',
  prefix: 'quarry',
  lambdaDir: '../target/lambda',
  dev: false,
  ingestPrefixes: ['crm-data/', 'erp-data/', 'shop-data/', 'stripe-data/'],
  ingestReservedConcurrency: 5,
  ingestTask: false,
  ingestTaskOverBytes: 1024 * 1024 * 1024,
  dbInstanceClass: 't4g.micro',
  dbEngineVersion: '17.9',
  dbAllocatedStorageGiB: 20,
  dbMaxAllocatedStorageGiB: 100,
  dbBackupRetentionDays: 7,
  dbMultiAz: false,
  dbPerformanceInsights: false,
  dbProxy: false,
  dbConnectionsAlarm: 60,
  secretRotationDays: 30,
  rawInfrequentAccessDays: 30,
  rawGlacierDays: 180,
  resultsExpirationDays: 7,
  logRetentionDays: 30,
  corsAllowOrigins: ['*'],
  apiRateLimit: 20,
  apiBurstLimit: 40,
  apiStageRateLimit: 100,
  apiStageBurstLimit: 200,
  apiMonthlyQuota: 100000,
  waf: true,
  wafLogs: true,
  wafRateLimitPer5Min: 1000,
  rustLog: 'info',
  metricsNamespace: 'Quarry',
} as const;

type Raw = unknown;

function str(name: string, raw: Raw): string | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  if (typeof raw !== 'string') throw new Error(`context ${name}: expected a string, got ${JSON.stringify(raw)}`);
  return raw;
}

function bool(name: string, raw: Raw, dflt: boolean): boolean {
  if (raw === undefined || raw === null || raw === '') return dflt;
  if (typeof raw === 'boolean') return raw;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw new Error(`context ${name}: expected true or false, got ${JSON.stringify(raw)}`);
}

function int(name: string, raw: Raw, dflt: number, min: number, max: number): number {
  if (raw === undefined || raw === null || raw === '') return dflt;
  const n = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`context ${name}: expected an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** A JSON array, or a comma-separated string (what `-c key=a,b` gives). */
function list(name: string, raw: Raw, dflt: readonly string[]): string[] {
  if (raw === undefined || raw === null || raw === '') return [...dflt];
  let items: unknown[];
  if (Array.isArray(raw)) items = raw;
  else if (typeof raw === 'string' && raw.trim().startsWith('[')) items = JSON.parse(raw);
  else if (typeof raw === 'string') items = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  else throw new Error(`context ${name}: expected a list, got ${JSON.stringify(raw)}`);
  if (items.length === 0 || !items.every((i) => typeof i === 'string' && i.length > 0)) {
    throw new Error(`context ${name}: expected a non-empty list of strings, got ${JSON.stringify(raw)}`);
  }
  return items as string[];
}

/** The retention periods CloudWatch Logs accepts. */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

function retention(raw: Raw): number {
  const n = int('logRetentionDays', raw, DEFAULTS.logRetentionDays, 1, 3653);
  if (!LOG_RETENTION_DAYS.includes(n)) {
    throw new Error(`context logRetentionDays: CloudWatch Logs accepts ${LOG_RETENTION_DAYS.join(', ')}; got ${n}`);
  }
  return n;
}

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

function email(name: string, raw: Raw): string | undefined {
  const v = str(name, raw);
  if (v !== undefined && !EMAIL.test(v)) throw new Error(`context ${name}: not an e-mail address: ${v}`);
  return v;
}

/** The configuration profiles: `profiles/<name>.json` (`default` has no file). */
export const PROFILES = ['default', 'dev', 'prod'] as const;

/** The values a profile sets (`{}` for `default`). */
export function profileValues(name: string): Record<string, unknown> {
  if (!(PROFILES as readonly string[]).includes(name)) {
    throw new Error(`context profile: one of ${PROFILES.join(', ')}, got ${JSON.stringify(name)}`);
  }
  if (name === 'default') return {};
  const file = path.join(INFRA_DIR, 'profiles', `${name}.json`);
  const values = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  const known = new Set([...Object.keys(DEFAULTS), 'alarmEmail', 'jobsEmail', 'availabilityZones']);
  for (const key of Object.keys(values)) {
    if (key.startsWith('//')) continue;
    if (!known.has(key)) throw new Error(`${file}: ${key} is not a context key (README.md lists them)`);
  }
  return values;
}

/** Reads and validates the context of `node` (an App or any construct in it). */
export function loadConfig(node: Node): QuarryConfig {
  const profile = str('profile', node.tryGetContext('profile')) ?? 'default';
  const preset = profileValues(profile);
  // What was given (cdk.json, -c) wins over the profile, which wins over the defaults.
  const ctx = (key: string): Raw => {
    const given = node.tryGetContext(key);
    return given === undefined ? preset[key] : given;
  };

  const account = str('account', ctx('account')) ?? DEFAULTS.account;
  if (!/^\d{12}$/.test(account)) throw new Error(`context account: expected 12 digits, got ${account}`);
  const region = str('region', ctx('region')) ?? DEFAULTS.region;
  if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) throw new Error(`context region: not a region name: ${region}`);
  const prefix = str('prefix', ctx('prefix')) ?? DEFAULTS.prefix;
  if (!/^[a-z][a-z0-9-]{1,20}$/.test(prefix)) {
    throw new Error(`context prefix: lower-case letters, digits and '-', 2 to 21 characters: ${prefix}`);
  }

  const ingestPrefixes = list('ingestPrefixes', ctx('ingestPrefixes'), DEFAULTS.ingestPrefixes);
  for (const p of ingestPrefixes) {
    if (!/^[A-Za-z0-9._-]+\/$/.test(p)) throw new Error(`context ingestPrefixes: '${p}' must be one folder ending in '/'`);
  }

  const concurrencyRaw = ctx('ingestReservedConcurrency');
  const ingestReservedConcurrency =
    concurrencyRaw === 'off' || concurrencyRaw === 'none'
      ? undefined
      : int('ingestReservedConcurrency', concurrencyRaw, DEFAULTS.ingestReservedConcurrency, 1, 1000);

  const lambdaDir = path.resolve(INFRA_DIR, str('lambdaDir', ctx('lambdaDir')) ?? DEFAULTS.lambdaDir);

  const rawInfrequentAccessDays = int(
    'rawInfrequentAccessDays',
    ctx('rawInfrequentAccessDays'),
    DEFAULTS.rawInfrequentAccessDays,
    30,
    3650,
  );
  // S3 keeps an object 30 days in STANDARD_IA before a later transition.
  const rawGlacierDays = int('rawGlacierDays', ctx('rawGlacierDays'), DEFAULTS.rawGlacierDays, rawInfrequentAccessDays + 30, 3650);

  const dbEngineVersion = str('dbEngineVersion', ctx('dbEngineVersion')) ?? DEFAULTS.dbEngineVersion;
  if (!/^1[4-9]\.\d+$/.test(dbEngineVersion)) {
    throw new Error(`context dbEngineVersion: expected major.minor of PostgreSQL 14 or later, got ${dbEngineVersion}`);
  }

  const allocated = int('dbAllocatedStorageGiB', ctx('dbAllocatedStorageGiB'), DEFAULTS.dbAllocatedStorageGiB, 20, 65536);
  const maxAllocated = int(
    'dbMaxAllocatedStorageGiB',
    ctx('dbMaxAllocatedStorageGiB'),
    DEFAULTS.dbMaxAllocatedStorageGiB,
    allocated,
    65536,
  );

  return {
    profile,
    account,
    region,
    availabilityZones: list('availabilityZones', ctx('availabilityZones'), [`${region}a`, `${region}b`]),
    prefix,
    lambdaDir,
    dev: bool('dev', ctx('dev'), DEFAULTS.dev),
    alarmEmail: email('alarmEmail', ctx('alarmEmail')),
    jobsEmail: email('jobsEmail', ctx('jobsEmail')),
    ingestPrefixes,
    ingestReservedConcurrency,
    ingestTask: bool('ingestTask', ctx('ingestTask'), DEFAULTS.ingestTask),
    ingestTaskOverBytes: int('ingestTaskOverBytes', ctx('ingestTaskOverBytes'), DEFAULTS.ingestTaskOverBytes, 1, Number.MAX_SAFE_INTEGER),
    dbInstanceClass: str('dbInstanceClass', ctx('dbInstanceClass')) ?? DEFAULTS.dbInstanceClass,
    dbEngineVersion,
    dbAllocatedStorageGiB: allocated,
    dbMaxAllocatedStorageGiB: maxAllocated,
    dbBackupRetentionDays: int('dbBackupRetentionDays', ctx('dbBackupRetentionDays'), DEFAULTS.dbBackupRetentionDays, 1, 35),
    dbMultiAz: bool('dbMultiAz', ctx('dbMultiAz'), DEFAULTS.dbMultiAz),
    dbPerformanceInsights: bool('dbPerformanceInsights', ctx('dbPerformanceInsights'), DEFAULTS.dbPerformanceInsights),
    dbProxy: bool('dbProxy', ctx('dbProxy'), DEFAULTS.dbProxy),
    dbConnectionsAlarm: int('dbConnectionsAlarm', ctx('dbConnectionsAlarm'), DEFAULTS.dbConnectionsAlarm, 1, 100000),
    secretRotationDays: int('secretRotationDays', ctx('secretRotationDays'), DEFAULTS.secretRotationDays, 1, 365),
    rawInfrequentAccessDays,
    rawGlacierDays,
    resultsExpirationDays: int('resultsExpirationDays', ctx('resultsExpirationDays'), DEFAULTS.resultsExpirationDays, 1, 3650),
    logRetentionDays: retention(ctx('logRetentionDays')),
    corsAllowOrigins: list('corsAllowOrigins', ctx('corsAllowOrigins'), DEFAULTS.corsAllowOrigins),
    apiRateLimit: int('apiRateLimit', ctx('apiRateLimit'), DEFAULTS.apiRateLimit, 1, 10000),
    apiBurstLimit: int('apiBurstLimit', ctx('apiBurstLimit'), DEFAULTS.apiBurstLimit, 1, 5000),
    apiStageRateLimit: int('apiStageRateLimit', ctx('apiStageRateLimit'), DEFAULTS.apiStageRateLimit, 1, 10000),
    apiStageBurstLimit: int('apiStageBurstLimit', ctx('apiStageBurstLimit'), DEFAULTS.apiStageBurstLimit, 1, 5000),
    apiMonthlyQuota: int('apiMonthlyQuota', ctx('apiMonthlyQuota'), DEFAULTS.apiMonthlyQuota, 1, 1_000_000_000),
    waf: bool('waf', ctx('waf'), DEFAULTS.waf),
    wafLogs: bool('wafLogs', ctx('wafLogs'), DEFAULTS.wafLogs),
    wafRateLimitPer5Min: int('wafRateLimitPer5Min', ctx('wafRateLimitPer5Min'), DEFAULTS.wafRateLimitPer5Min, 10, 2_000_000_000),
    rustLog: str('rustLog', ctx('rustLog')) ?? DEFAULTS.rustLog,
    metricsNamespace: str('metricsNamespace', ctx('metricsNamespace')) ?? DEFAULTS.metricsNamespace,
  };
}

/** `<lambdaDir>/<function>/bootstrap.zip`, with a message saying how to build it when missing. */
export function lambdaZip(config: QuarryConfig, fn: FunctionName, exists: (p: string) => boolean): string {
  const zip = path.join(config.lambdaDir, `quarry-${fn}`, 'bootstrap.zip');
  if (!exists(zip)) {
    throw new Error(
      `missing Lambda bundle ${zip}: build the functions with ` +
        '`scripts/build-lambdas.sh` at the repository root, ' +
        'or pass -c lambdaDir=DIR (scripts/check.sh makes placeholder zips for an offline synth)',
    );
  }
  return zip;
}

/** The ingest task's image context `<lambdaDir>/quarry-ingest-task` (Dockerfile and the unpacked ingest bundle). */
export function ingestTaskImageDir(config: QuarryConfig, exists: (p: string) => boolean): string {
  const dir = path.join(config.lambdaDir, 'quarry-ingest-task');
  if (!exists(path.join(dir, 'Dockerfile'))) {
    throw new Error(
      `missing the ingest task's image context ${dir}: \`scripts/build-lambdas.sh\` writes it beside the zips ` +
        '(or leave -c ingestTask=false)',
    );
  }
  return dir;
}

/**
 * What happens to a stateful resource (data, logs) when the stack stops owning
 * it. Dev stacks destroy everything. Otherwise the resource is kept when the
 * stack is deleted or the resource replaced, but removed when the deploy that
 * created it fails (CloudFormation's `RetainExceptOnCreate`): a failed first
 * deploy leaves nothing behind whose name would block the retry.
 */
export function keepPolicy(config: QuarryConfig): RemovalPolicy {
  return config.dev ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE;
}
