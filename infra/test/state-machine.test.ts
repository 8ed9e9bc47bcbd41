import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions';
import { STATES } from '../lib/jobs';
import { deployedDefinition } from './support/asl';
import { FakeJobs, JobsHandler, StepInput, invokeEndpoint } from './support/jobs';
import { synthesize } from './support/stack';

/**
 * The synthesized analytics-job state machine, run locally by
 * aws-local-stepfunctions: the definition is the one CloudFormation would
 * deploy, its Lambda tasks call a jobs handler (the in-memory FakeJobs here, the
 * real quarry-jobs when QUARRY_JOBS_INVOKE_URL is set) and its SNS tasks are
 * recorded instead of published.
 */

type EventLog = ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

const definition = deployedDefinition(synthesize().template);
const LAMBDA_TASKS = [STATES.initialise, STATES.execute, STATES.storeResult, STATES.complete, STATES.markFailed];

const JOB = {
  job_id: 'job-0001',
  operation: 'customer_analysis',
  parameters: { metric: 'lifetime_value', group_by: 'industry' },
};

interface Outcome {
  output?: any;
  error?: ExecutionError & { cause?: Error };
  events: EventLog[];
  published: Array<{ state: string; message: any; subject: string; topic: string }>;
}

async function run(jobs: JobsHandler, input: Record<string, unknown> = JOB): Promise<Outcome> {
  const published: Outcome['published'] = [];
  const publish = (state: string) => (params: any) => {
    published.push({ state, message: params.Message, subject: params.Subject, topic: params.TopicArn });
    return { MessageId: `message-${published.length}` };
  };
  const machine = new StateMachine(definition);
  const jobId = String(input.job_id);
  const execution = machine.run(input as any, {
    overrides: {
      taskResourceLocalHandlers: {
        ...Object.fromEntries(LAMBDA_TASKS.map((s) => [s, (i: any) => jobs(i as StepInput) as any])),
        [STATES.notifySuccess]: publish(STATES.notifySuccess),
        [STATES.notifyFailure]: publish(STATES.notifyFailure),
      },
      // Real retries wait 2 s, 4 s, ... with full jitter; here they do not wait.
      retryIntervalOverrides: Object.fromEntries(LAMBDA_TASKS.map((s) => [s, 0])),
    },
    context: {
      Execution: {
        // The API starts executions named after the job id.
        Id: `arn:aws:states:us-east-1:123456789012:execution:quarry-analytics-job:${jobId}`,
        Name: jobId,
        Input: input as any,
        StartTime: new Date().toISOString(),
      },
      // Step Functions fills $$.State per state (RetryCount counts a state's
      // retries); the local runner takes this fixed one, so Execute always
      // sees retry 0 here.
      State: { EnteredTime: new Date().toISOString(), RetryCount: 0 },
    },
  });
  const events: EventLog[] = [];
  const drained = (async () => {
    for await (const e of execution.eventLogs) events.push(e);
  })();
  const outcome: Outcome = { events, published };
  try {
    outcome.output = await execution.result;
  } catch (e) {
    outcome.error = e as Outcome['error'];
  }
  await drained;
  return outcome;
}

const retriesOf = (o: Outcome, state: string): number =>
  o.events.filter((e) => e.type === 'StateRetried' && 'state' in e && e.state.name === state).length;

describe('analytics job state machine, run locally', () => {
  test('success: initialise, execute, store result, complete, then a quarry.job.succeeded event', async () => {
    const jobs = new FakeJobs();
    const o = await run(jobs.handler);

    expect(o.error).toBeUndefined();
    expect(jobs.steps()).toEqual(['initialise', 'execute', 'store_result', 'complete']);
    expect(jobs.calls[0]).toEqual({
      step: 'initialise',
      job_id: 'job-0001',
      operation: 'customer_analysis',
      parameters: JOB.parameters,
      execution_id: 'arn:aws:states:us-east-1:123456789012:execution:quarry-analytics-job:job-0001',
    });
    // results travel as S3 keys from one step to the next
    expect(jobs.calls[2]).toMatchObject({ step: 'store_result', executed: { result_key: 'results/job-0001/rows.json' } });
    expect(jobs.calls[3]).toMatchObject({ step: 'complete', stored: { result_key: 'results/job-0001/rows.json' } });
    expect(jobs.rows.get('job-0001')!.status).toBe('SUCCEEDED');

    const execution = 'arn:aws:states:us-east-1:123456789012:execution:quarry-analytics-job:job-0001';
    expect(o.published).toEqual([
      {
        state: STATES.notifySuccess,
        topic: 'arn:aws:sns:us-east-1:123456789012:quarry-jobs',
        subject: 'Quarry job succeeded',
        message: {
          specversion: '1.0',
          id: `${execution}/succeeded`,
          type: 'quarry.job.succeeded',
          source: 'quarry/jobs',
          subject: 'job-0001',
          time: expect.any(String),
          datacontenttype: 'application/json',
          data: {
            job_id: 'job-0001',
            operation: 'customer_analysis',
            state: 'succeeded',
            result: { job_id: 'job-0001', result_key: 'results/job-0001/rows.json', row_count: 1200, inline: false },
            links: { status: '/analytics/jobs/job-0001', result: '/analytics/jobs/job-0001/result' },
          },
        },
      },
    ]);
    expect(o.output.completed).toEqual({ job_id: 'job-0001', status: 'SUCCEEDED' });
    expect(JSON.stringify(o.output).length).toBeLessThan(4096); // far below the 256 KB state limit
  });

  test('a transient failure of execute is retried, and the job then succeeds', async () => {
    const jobs = new FakeJobs().failNext('execute', 'Quarry.Transient', 1, 'connection reset');
    const o = await run(jobs.handler);

    expect(o.error).toBeUndefined();
    expect(jobs.steps()).toEqual(['initialise', 'execute', 'execute', 'store_result', 'complete']);
    expect(retriesOf(o, STATES.execute)).toBe(1);
    expect(o.published.map((p) => p.message.type)).toEqual(['quarry.job.succeeded']);
  });

  test('a permanent failure is not retried: the job is marked failed, a quarry.job.failed event goes out, the execution fails', async () => {
    const jobs = new FakeJobs().failNext('execute', 'Quarry.Permanent', 1, 'relation "canonical.nope" does not exist');
    const o = await run(jobs.handler);

    expect(jobs.steps()).toEqual(['initialise', 'execute', 'fail']);
    expect(retriesOf(o, STATES.execute)).toBe(0);
    expect(jobs.calls[2]).toEqual({
      step: 'fail',
      job_id: 'job-0001',
      error: { Error: 'Quarry.Permanent', Cause: 'relation "canonical.nope" does not exist' },
    });
    expect(jobs.rows.get('job-0001')!.status).toBe('FAILED');
    expect(o.published).toEqual([
      expect.objectContaining({
        state: STATES.notifyFailure,
        subject: 'Quarry job failed',
        message: expect.objectContaining({
          type: 'quarry.job.failed',
          subject: 'job-0001',
          data: {
            job_id: 'job-0001',
            operation: 'customer_analysis',
            state: 'failed',
            error: { Error: 'Quarry.Permanent', Cause: 'relation "canonical.nope" does not exist' },
            links: { status: '/analytics/jobs/job-0001', result: '/analytics/jobs/job-0001/result' },
          },
        }),
      }),
    ]);
    // The execution ends FAILED with the original error (it counts in ExecutionsFailed).
    expect(o.error).toBeInstanceOf(ExecutionError);
    expect(o.error!.cause!.name).toBe('Quarry.Permanent');
    const failed = o.events.find((e) => e.type === 'ExecutionFailed') as any;
    expect(failed.Error).toBe('Quarry.Permanent');
  });

  test('transient failures that outlast the retries end in the failure path', async () => {
    const jobs = new FakeJobs().failNext('execute', 'Quarry.Transient', 5, 'database unavailable');
    const o = await run(jobs.handler);

    expect(jobs.steps()).toEqual(['initialise', ...Array(5).fill('execute'), 'fail']);
    expect(retriesOf(o, STATES.execute)).toBe(4);
    expect(o.published.map((p) => [p.message.type, p.message.data.error.Error])).toEqual([['quarry.job.failed', 'Quarry.Transient']]);
    expect(o.error!.cause!.name).toBe('Quarry.Transient');
  });

  test('an error the handler does not name (e.g. a Lambda timeout) is caught, not retried', async () => {
    const jobs = new FakeJobs().failNext('store_result', 'Sandbox.Timedout', 1, 'Task timed out after 900.00 seconds');
    const o = await run(jobs.handler);

    expect(jobs.steps()).toEqual(['initialise', 'execute', 'store_result', 'fail']);
    expect(o.published.map((p) => p.message.type)).toEqual(['quarry.job.failed']);
    expect(o.error!.cause!.name).toBe('Sandbox.Timedout');
  });

  test('a throttled invoke (Lambda service error) is retried by its own retrier', async () => {
    const jobs = new FakeJobs().failNext('initialise', 'Lambda.TooManyRequestsException', 1, 'Rate exceeded');
    const o = await run(jobs.handler);

    expect(o.error).toBeUndefined();
    expect(jobs.steps()).toEqual(['initialise', 'initialise', 'execute', 'store_result', 'complete']);
    expect(retriesOf(o, STATES.initialise)).toBe(1);
  });

  test('if even the failure bookkeeping fails, the failure notification still goes out', async () => {
    const jobs = new FakeJobs()
      .failNext('complete', 'Quarry.Permanent', 1, 'job row changed underneath')
      .failNext('fail', 'Quarry.Permanent', 1, 'jobs table unavailable');
    const o = await run(jobs.handler);

    expect(jobs.steps()).toEqual(['initialise', 'execute', 'store_result', 'complete', 'fail']);
    expect(o.published.map((p) => [p.state, p.message.data.error.Error])).toEqual([[STATES.notifyFailure, 'Quarry.Permanent']]);
    expect(o.output).toBeUndefined();
    expect(o.error!.cause!.name).toBe('Quarry.Permanent');
  });
});

// The same definition against the real Rust functions: scripts/test.sh runs
// infra/scripts/state-machine-real.sh, which starts moto, a migrated database and
// scripts/lambda-invoke-bridge.py over the quarry-api and quarry-jobs bootstraps,
// and sets QUARRY_JOBS_INVOKE_URL, QUARRY_TEST_API_KEY and QUARRY_TEST_DB_URL.
const realHandlerUrl = process.env.QUARRY_JOBS_INVOKE_URL;
(realHandlerUrl ? describe : describe.skip)('with the real quarry-jobs and quarry-api functions', () => {
  const key = process.env.QUARRY_TEST_API_KEY ?? '';
  const jobsFn = realHandlerUrl ? invokeEndpoint(realHandlerUrl) : undefined;
  const apiFn = realHandlerUrl ? invokeEndpoint(realHandlerUrl, 'quarry-api') : undefined;

  /** One API Gateway (REST, stage prod) proxy request through quarry-api. */
  async function api(method: string, path: string, body?: unknown, as: string | null = key): Promise<{ status: number; json: any }> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json', Host: 'api.example' };
    if (as !== null) headers.Authorization = `Bearer ${as}`;
    const event = {
      resource: path,
      path,
      httpMethod: method,
      headers,
      multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      pathParameters: null,
      stageVariables: null,
      requestContext: {
        accountId: '123456789012', apiId: 'local', stage: 'prod', resourcePath: path, httpMethod: method,
        path: `/prod${path}`, requestId: `r-${Date.now()}`, identity: { sourceIp: '203.0.113.7' },
      },
      body: body === undefined ? null : JSON.stringify(body),
      isBase64Encoded: false,
    };
    // The bridge invokes any function; the jobs-step type does not describe this event.
    const res: any = await apiFn!(event as unknown as StepInput);
    return { status: res.statusCode, json: res.body ? JSON.parse(res.body) : null };
  }

  async function submit(operation: string, parameters: Record<string, unknown>): Promise<Record<string, unknown>> {
    const r = await api('POST', '/analytics/jobs', { operation, parameters });
    expect(r.status).toBe(202);
    return { job_id: r.json.job_id, operation, parameters };
  }

  const status = async (id: unknown) => (await api('GET', `/analytics/jobs/${id}`)).json;

  test('success: a job submitted through quarry-api runs through the real steps; its large result is stored', async () => {
    const job = await submit('many_rows', { rows: 1500 });
    const o = await run(jobsFn!, job);
    expect(o.error).toBeUndefined();
    expect(o.published.map((p) => p.message.type)).toEqual(['quarry.job.succeeded']);
    const s = await status(job.job_id);
    expect(s.state).toBe('succeeded');
    expect(s.attempts).toBe(1);
    expect(s.result).toMatchObject({ stored: true, row_count: 1500, format: 'json' });
  });

  test("a transient failure (the query's connection killed) is retried, and the job succeeds on attempt 2", async () => {
    const job = await submit('slow_job', { seconds: 2 });
    // Kill the job's query as soon as it shows up: quarry-jobs answers Quarry.Transient.
    const killer = exec(
      `for i in $(seq 1 100); do n=$(psql "$QUARRY_TEST_DB_URL" -Atc "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'quarry_reader' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"); [ "$n" -gt 0 ] && exit 0; sleep 0.1; done; exit 1`,
    );
    const o = await run(jobsFn!, job);
    expect(await killer).toBe(0);
    expect(o.error).toBeUndefined();
    expect(retriesOf(o, STATES.execute)).toBe(1);
    expect(o.published.map((p) => p.message.type)).toEqual(['quarry.job.succeeded']);
    // (On AWS the job's attempts would read 2: Execute gets $$.State.RetryCount,
    // which the local runner does not count.)
    expect((await status(job.job_id)).state).toBe('succeeded');
  });

  test('a permanent failure is not retried: the job is failed with its reason, an event goes out, the execution fails', async () => {
    const job = await submit('always_fails', { n: 1 });
    const o = await run(jobsFn!, job);
    expect(retriesOf(o, STATES.execute)).toBe(0);
    expect(o.published.map((p) => [p.state, p.message.type])).toEqual([[STATES.notifyFailure, 'quarry.job.failed']]);
    expect(o.error!.cause!.name).toBe('Quarry.Permanent');
    const s = await status(job.job_id);
    expect(s.state).toBe('failed');
    expect(s.error.code).toBe('internal');
    expect(s.error.message).toContain('22012');
  });

  // Day one on a new stack: scripts/add-caller.sh with AWS credentials alone.
  // `aws lambda invoke` reaches the real quarry-migrate (admin commands)
  // through the bridge; the API Gateway calls reach moto.
  describe('day one', () => {
    const script = path.join(__dirname, '..', 'scripts', 'add-caller.sh');
    const env = {
      ...process.env,
      AWS_ENDPOINT_URL_LAMBDA: realHandlerUrl,
      QUARRY_ADMIN_FUNCTION: 'quarry-migrate',
      QUARRY_USAGE_PLAN_ID: process.env.QUARRY_TEST_USAGE_PLAN_ID ?? '',
      QUARRY_REST_API_ID: process.env.QUARRY_TEST_REST_API_ID ?? '',
      QUARRY_API_URL: 'https://api.example/prod/',
    };
    const addCaller = (...args: string[]) => spawnSync('bash', [script, ...args], { env, encoding: 'utf8' });
    const aws = (...args: string[]) => {
      const r = spawnSync('aws', [...args, '--output', 'json'], { env, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout);
    };

    test('a caller added with AWS credentials alone gets a working Quarry key and a gateway key in the usage plan', async () => {
      const r = addCaller('--name', 'analyst-one', '--scope', 'read', '--scope', 'jobs');
      expect(r.status).toBe(0);
      const headers = /H=\(-H "x-api-key: ([A-Za-z0-9]+)" -H "Authorization: Bearer (qk_[0-9a-f]{12}_[A-Za-z0-9_-]+)"\)/.exec(r.stdout);
      expect(headers).not.toBeNull();
      const [, gatewayKey, quarryKey] = headers!;
      expect(r.stdout).toContain('API=https://api.example/prod');

      // The Quarry key works at the real API; without it the API says what to send.
      const catalog = await api('GET', '/operations', undefined, quarryKey);
      expect(catalog.status).toBe(200);
      expect(JSON.stringify(catalog.json)).toContain('customer_analysis');
      const anonymous = await api('GET', '/operations', undefined, null);
      expect(anonymous.status).toBe(401);

      // The gateway key is the caller's own, in the default plan.
      const keys = aws('apigateway', 'get-usage-plan-keys', '--usage-plan-id', env.QUARRY_USAGE_PLAN_ID);
      const mine = keys.items.filter((k: any) => k.name === 'analyst-one');
      expect(mine).toHaveLength(1);
      expect(mine[0].value).toBe(gatewayKey);
    });

    test('a caller with limits of their own gets a usage plan of their own', () => {
      const r = addCaller('--name', 'batch-robot', '--scope', 'read', '--rate', '2', '--burst', '4', '--quota', '1000');
      expect(r.status).toBe(0);
      const plans = aws('apigateway', 'get-usage-plans').items.filter((p: any) => p.name === 'batch-robot');
      expect(plans).toHaveLength(1);
      expect(plans[0].throttle).toEqual({ rateLimit: 2, burstLimit: 4 });
      expect(plans[0].quota).toMatchObject({ limit: 1000, period: 'MONTH' });
      const keys = aws('apigateway', 'get-usage-plan-keys', '--usage-plan-id', plans[0].id);
      expect(keys.items.map((k: any) => k.name)).toEqual(['batch-robot']);
    });

    test('mistakes are refused before anything is made, and the admin function names its own refusals', () => {
      const badScope = addCaller('--name', 'x', '--scope', 'write');
      expect(badScope.status).toBe(2);
      expect(badScope.stderr).toContain('--scope write is not one of read, jobs, admin');
      const noName = addCaller('--scope', 'read');
      expect(noName.status).toBe(2);
      expect(noName.stderr).toContain('--name NAME is required');
      // Through the AWS CLI, as an operator would revoke a key that is not there.
      const out = path.join(os.tmpdir(), `admin-${Date.now()}.json`);
      const request = `${out}.request`;
      fs.writeFileSync(request, JSON.stringify({ command: 'revoke-key', id: 'nope' }));
      const meta = aws('lambda', 'invoke', '--function-name', 'quarry-migrate', '--payload', `fileb://${request}`, out);
      expect(meta.FunctionError).toBeDefined();
      const refusal = JSON.parse(fs.readFileSync(out, 'utf8'));
      fs.rmSync(out, { force: true });
      fs.rmSync(request, { force: true });
      expect(refusal.errorType).toBe('Quarry.AdminCommandRefused');
      expect(refusal.errorMessage).toContain('no active key has id nope');
    });
  });
});

/** Runs a shell command; resolves to its exit code. */
function exec(command: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { stdio: 'ignore' });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}
