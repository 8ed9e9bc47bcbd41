/**
 * The job-step side of the state machine, for local runs with
 * aws-local-stepfunctions. Every Lambda task state of the machine calls ONE
 * handler (quarry-jobs is one dispatcher keyed by `step`), so a test picks the
 * handler once:
 *
 * - `FakeJobs`: an in-memory stand-in with scripted failures (today's tests);
 * - `invokeEndpoint(url)`: the real Rust quarry-jobs, through anything that
 *   speaks the Lambda Invoke API (`cargo lambda watch`, the Lambda runtime
 *   interface emulator). Set QUARRY_JOBS_INVOKE_URL to use it.
 *
 * Both raise errors the way Step Functions sees a Lambda error: the error name is
 * the function's errorType (`Quarry.Transient`, `Quarry.Permanent`, ...).
 */

export type Step = 'initialise' | 'execute' | 'store_result' | 'complete' | 'fail';

export interface StepInput {
  step: Step;
  job_id: string;
  [field: string]: unknown;
}

export type JobsHandler = (input: StepInput) => Promise<unknown>;

/** An error as Step Functions sees a failed Lambda invocation: Error = errorType, Cause = errorMessage. */
export class LambdaError extends Error {
  constructor(errorType: string, errorMessage: string) {
    super(errorMessage);
    this.name = errorType;
  }
}

type Status = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED';
const ORDER: Status[] = ['QUEUED', 'RUNNING', 'SUCCEEDED'];

/**
 * In-memory quarry-jobs: job rows whose state only moves forward, results as S3
 * keys, and failures scripted per step (`failNext('execute', 'Quarry.Transient', 2)`
 * fails the next two execute calls).
 */
export class FakeJobs {
  readonly calls: StepInput[] = [];
  readonly rows = new Map<string, { status: Status; result_key?: string; error?: unknown }>();
  private readonly scripted = new Map<Step, Array<{ errorType: string; message: string }>>();

  failNext(step: Step, errorType: string, times = 1, message = `${step} failed (scripted)`): this {
    const queue = this.scripted.get(step) ?? [];
    for (let i = 0; i < times; i++) queue.push({ errorType, message });
    this.scripted.set(step, queue);
    return this;
  }

  readonly handler: JobsHandler = async (input) => {
    this.calls.push(structuredClone(input));
    const failure = this.scripted.get(input.step)?.shift();
    if (failure) throw new LambdaError(failure.errorType, failure.message);
    const id = input.job_id;
    switch (input.step) {
      case 'initialise':
        this.move(id, 'RUNNING');
        return { job_id: id, status: 'RUNNING' };
      case 'execute':
        return { job_id: id, result_key: `results/${id}/rows.json`, row_count: 1200 };
      case 'store_result': {
        const executed = input.executed as { result_key: string; row_count: number };
        this.rows.get(id)!.result_key = executed.result_key;
        return { job_id: id, result_key: executed.result_key, row_count: executed.row_count, inline: false };
      }
      case 'complete':
        this.move(id, 'SUCCEEDED');
        return { job_id: id, status: 'SUCCEEDED' };
      case 'fail': {
        const row = this.rows.get(id) ?? { status: 'QUEUED' as Status };
        row.status = 'FAILED';
        row.error = input.error;
        this.rows.set(id, row);
        return { job_id: id, status: 'FAILED' };
      }
      default:
        throw new LambdaError('Quarry.Permanent', `unknown step ${String((input as StepInput).step)}`);
    }
  };

  steps(): Step[] {
    return this.calls.map((c) => c.step);
  }

  private move(id: string, to: Status): void {
    const row = this.rows.get(id) ?? { status: 'QUEUED' as Status };
    if (row.status === 'FAILED' || ORDER.indexOf(to) < ORDER.indexOf(row.status)) {
      throw new LambdaError('Quarry.Permanent', `job ${id} cannot move from ${row.status} to ${to}`);
    }
    row.status = to;
    this.rows.set(id, row);
  }
}

/**
 * The real quarry-jobs behind a Lambda Invoke API endpoint, e.g.
 * `cargo lambda watch` (http://127.0.0.1:9000) with the function's environment.
 */
export function invokeEndpoint(baseUrl: string, functionName = 'quarry-jobs'): JobsHandler {
  const url = `${baseUrl.replace(/\/$/, '')}/2015-03-31/functions/${functionName}/invocations`;
  return async (input) => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
    const text = await res.text();
    const body = text ? JSON.parse(text) : null;
    const isError = res.headers.get('x-amz-function-error') !== null || (body && typeof body === 'object' && 'errorType' in body);
    if (isError) throw new LambdaError(body?.errorType ?? 'Unhandled', body?.errorMessage ?? text);
    if (!res.ok) throw new LambdaError('Lambda.ServiceException', `HTTP ${res.status}: ${text}`);
    return body;
  };
}
