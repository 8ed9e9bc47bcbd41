//! The job steps of the analytics state machine, as one dispatcher
//! (`quarry-jobs`). Each task state sends `{"step": ..., "job_id": ...}`; the
//! steps are the local runner's (`claim`, `execute`, `store_result`, `finish`),
//! so both runtimes share every rule. Rows never travel through the state:
//! Execute stages them in the results bucket and hands on the key.
//!
//! Errors are [`Diagnostic`]s whose `error_type` is the Step Functions error
//! name: `Quarry.Transient` (retried by the state machine) or
//! `Quarry.Permanent`; the message is the job's [`JobError`] as JSON, so the
//! fail step records exactly what the submitter should read.

use std::sync::Arc;

use chrono::Utc;
use lambda_runtime::Diagnostic;
use quarry_api::jobs::{self as steps, Executed};
use quarry_api::AppState;
use quarry_core::jobs::{Event, Job, JobError, JobResult, JobState};
use quarry_core::ports::PortError;
use serde::Deserialize;
use serde_json::{json, Value};

pub const TRANSIENT: &str = "Quarry.Transient";
pub const PERMANENT: &str = "Quarry.Permanent";

/// One task state's input.
#[derive(Debug, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Initialise {
        job_id: String,
        #[serde(default)]
        execution_id: Option<String>,
    },
    Execute {
        job_id: String,
        /// `$$.State.RetryCount`: how many times the state machine retried Execute.
        #[serde(default)]
        retry: Option<u32>,
    },
    StoreResult {
        job_id: String,
        executed: Staged,
    },
    Complete {
        job_id: String,
        stored: Stored,
    },
    Fail {
        job_id: String,
        #[serde(default)]
        error: Option<SfnError>,
    },
}

/// Execute's output: where the rows wait.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Staged {
    pub staged_key: String,
    pub rows: u64,
    pub data_version: i64,
    /// A result too large to stage, already written in the job's format
    /// (`staged_key` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
}

/// StoreResult's output: a stored result, or the staged rows to keep inline.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stored {
    Inline { staged_key: String },
    Object { result: JobResult },
}

/// What Step Functions hands a Catch: the error name and its cause (for a
/// Lambda error, the function's error JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct SfnError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

fn diag(e: &JobError) -> Diagnostic {
    Diagnostic {
        error_type: if e.transient { TRANSIENT } else { PERMANENT }.into(),
        error_message: serde_json::to_string(e).unwrap_or_else(|_| e.message.clone()),
    }
}

fn port_error(what: &str, e: PortError) -> JobError {
    let transient = matches!(e, PortError::Unavailable(_) | PortError::Conflict(_));
    tracing::warn!(error = %e, "{what}");
    JobError {
        code: if transient {
            "storage_unavailable"
        } else {
            "internal"
        }
        .into(),
        message: format!("{what}; the job service will retry"),
        transient,
    }
}

fn permanent(code: &str, message: String) -> JobError {
    JobError {
        code: code.into(),
        message,
        transient: false,
    }
}

async fn load(st: &AppState, id: &str) -> Result<Job, JobError> {
    st.ports
        .jobs
        .get(id)
        .await
        .map_err(|e| port_error("the job record could not be read", e))?
        .ok_or_else(|| permanent("not_found", format!("job {id} does not exist")))
}

fn running(job: Job) -> Result<Job, JobError> {
    if job.state == JobState::Running {
        Ok(job)
    } else {
        Err(permanent(
            "invalid_state",
            format!(
                "job {} is {}, not running; the execution is out of step with the job",
                job.id,
                job.state.as_str()
            ),
        ))
    }
}

fn staged_key(job_id: &str) -> String {
    format!("jobs/{job_id}/staged.json")
}

/// EventBridge's `detail-type` for a Step Functions execution that changed status.
pub const EXECUTION_STATUS_CHANGE: &str = "Step Functions Execution Status Change";

/// What `quarry-jobs` receives: a task state's step, or EventBridge's news that
/// an execution ended ([`execution_ended`]); `notifier` publishes the job events
/// the state machine could not (its notify states never ran).
pub async fn handle(
    st: &Arc<AppState>,
    notifier: Option<&dyn quarry_core::ports::Notifier>,
    input: Value,
) -> Result<Value, Diagnostic> {
    if input.get("detail-type").and_then(Value::as_str) == Some(EXECUTION_STATUS_CHANGE) {
        return execution_ended(st, notifier, input).await;
    }
    dispatch(st, input).await
}

#[derive(Debug, Deserialize)]
struct StatusChange {
    detail: StatusDetail,
}

#[derive(Debug, Deserialize)]
struct StatusDetail {
    /// The execution's name: the job id (the API starts one execution per job).
    name: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// An execution ended without the state machine's own last steps: timed out
/// (the 1 h workflow limit), aborted by an operator, or failed where no Catch
/// reached (MarkFailed itself failing). A job still `queued` or `running` is
/// marked failed with a reason naming what happened, and its
/// `quarry.job.failed` event is published; a job already finished is left
/// alone (a FAILED execution whose MarkFailed ran, a delivery repeated).
pub async fn execution_ended(
    st: &Arc<AppState>,
    notifier: Option<&dyn quarry_core::ports::Notifier>,
    input: Value,
) -> Result<Value, Diagnostic> {
    let change: StatusChange = serde_json::from_value(input).map_err(|e| Diagnostic {
        error_type: PERMANENT.into(),
        error_message: format!("not a Step Functions execution status change: {e}"),
    })?;
    let d = change.detail;
    let reason = match d.status.as_str() {
        "TIMED_OUT" => permanent(
            "timeout",
            "the job's workflow ran past its time limit before finishing; narrow the parameters and submit it again".into(),
        ),
        "ABORTED" => permanent(
            "aborted",
            "the job's workflow was stopped by an operator before it finished; submit it again".into(),
        ),
        "FAILED" => permanent(
            "internal",
            format!(
                "the job workflow failed ({}) before it could record why; the operators' logs have details",
                d.error.as_deref().unwrap_or("no error name")
            ),
        ),
        other => {
            return Ok(json!({ "job_id": d.name, "status": other, "changed": false }));
        }
    };
    let job = match st.ports.jobs.get(&d.name).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            tracing::warn!(execution = %d.name, "an execution ended for no known job; nothing to mark");
            return Ok(json!({ "job_id": d.name, "status": d.status, "changed": false }));
        }
        Err(e) => return Err(diag(&port_error("the job record could not be read", e))),
    };
    if job.state.is_terminal() {
        return Ok(json!({ "job_id": job.id, "state": job.state.as_str(), "changed": false }));
    }
    let failed = job.failed(Utc::now(), reason);
    st.ports
        .jobs
        .transition(&job, &failed)
        .await
        .map_err(|e| diag(&port_error("the job's failure could not be recorded", e)))?;
    count_failure(&failed);
    tracing::warn!(job_id = %failed.id, status = %d.status, "job failed outside its workflow's own steps");
    let ev = Event::for_job(format!("{}/failed", failed.id), &failed, Utc::now());
    if let Some(n) = notifier {
        // The job's state is already right; a lost notification is logged, and
        // EventBridge retries the whole event (which then changes nothing).
        if let Err(e) = n.publish(&ev).await {
            tracing::error!(job_id = %failed.id, error = %e, "the job's failure event could not be published");
        }
    }
    Ok(json!({ "job_id": failed.id, "state": failed.state.as_str(), "changed": true }))
}

/// Counts a failed job; failures the submitter did not cause are counted apart
/// too (`quarry_job_system_failures_total`, what the operators' alarm watches).
fn count_failure(job: &Job) {
    metrics::counter!("quarry_jobs_total", "event" => "failed").increment(1);
    if !job.error.as_ref().is_some_and(JobError::caused_by_caller) {
        metrics::counter!("quarry_job_system_failures_total").increment(1);
    }
}

/// Runs one step. Every step can be repeated (a Lambda retry) without harm.
pub async fn dispatch(st: &Arc<AppState>, input: Value) -> Result<Value, Diagnostic> {
    let step: Step = serde_json::from_value(input).map_err(|e| Diagnostic {
        error_type: PERMANENT.into(),
        error_message: format!("not a job step this function knows: {e}"),
    })?;
    run(st, step).await.map_err(|e| diag(&e))
}

async fn run(st: &Arc<AppState>, step: Step) -> Result<Value, JobError> {
    match step {
        Step::Initialise {
            job_id,
            execution_id,
        } => {
            let job = load(st, &job_id).await?;
            let job = match job.state {
                JobState::Queued => match steps::claim(st, &job)
                    .await
                    .map_err(|e| port_error("the job could not be claimed", e))?
                {
                    Some(r) => r,
                    // Claimed by a concurrent retry of this step: go on with it.
                    None => running(load(st, &job_id).await?)?,
                },
                _ => running(job)?,
            };
            tracing::info!(job_id = %job.id, attempt = job.attempts, execution = execution_id.as_deref().unwrap_or(""), "job started");
            Ok(json!({ "job_id": job.id, "attempt": job.attempts }))
        }
        Step::Execute { job_id, retry } => {
            let mut job = running(load(st, &job_id).await?)?;
            // A retried Execute is another attempt: record it, so the job's
            // status shows what the execution history shows.
            if let Some(r) = retry {
                if r + 1 > job.attempts {
                    let mut next = job.clone();
                    next.attempts = r + 1;
                    st.ports
                        .jobs
                        .transition(&job, &next)
                        .await
                        .map_err(|e| port_error("the attempt could not be recorded", e))?;
                    job = next;
                }
            }
            let ex = steps::execute(st, &job).await?;
            if let Some(result @ JobResult::Stored { rows, .. }) = ex.stored {
                // Too large to stage: already written as the job's result.
                return Ok(serde_json::to_value(Staged {
                    staged_key: String::new(),
                    rows,
                    data_version: ex.data_version,
                    result: Some(result),
                })
                .unwrap_or(Value::Null));
            }
            let rows = ex
                .body
                .get("row_count")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let key = staged_key(&job.id);
            let doc = json!({ "body": ex.body, "data_version": ex.data_version });
            let bytes = serde_json::to_vec(&doc).map_err(|e| {
                permanent(
                    "internal",
                    format!("the result could not be serialized: {e}"),
                )
            })?;
            st.ports
                .objects
                .put(&key, bytes, "application/json")
                .await
                .map_err(|e| port_error("the rows could not be staged", e))?;
            Ok(serde_json::to_value(Staged {
                staged_key: key,
                rows,
                data_version: ex.data_version,
                result: None,
            })
            .unwrap_or(Value::Null))
        }
        Step::StoreResult { job_id, executed } => {
            let job = running(load(st, &job_id).await?)?;
            if let Some(result) = executed.result {
                return Ok(serde_json::to_value(Stored::Object { result }).unwrap_or(Value::Null));
            }
            let ex = read_staged(st, &executed.staged_key).await?;
            let result = steps::store_result(st, &job, ex).await?;
            let out = match result {
                JobResult::Inline { .. } => Stored::Inline {
                    staged_key: executed.staged_key,
                },
                stored @ JobResult::Stored { .. } => Stored::Object { result: stored },
            };
            Ok(serde_json::to_value(out).unwrap_or(Value::Null))
        }
        Step::Complete { job_id, stored } => {
            let job = load(st, &job_id).await?;
            if job.state == JobState::Succeeded {
                return Ok(event(&job, "succeeded"));
            }
            let job = running(job)?;
            let result = match stored {
                Stored::Object { result } => result,
                Stored::Inline { staged_key } => JobResult::Inline {
                    body: read_staged(st, &staged_key).await?.body,
                },
            };
            let done = steps::finish(st, &job, Ok(result))
                .await
                .map_err(|e| port_error("the job's success could not be recorded", e))?;
            Ok(event(&done, "succeeded"))
        }
        Step::Fail { job_id, error } => {
            let job = load(st, &job_id).await?;
            if job.state.is_terminal() {
                let outcome = if job.state == JobState::Succeeded {
                    "succeeded"
                } else {
                    "failed"
                };
                return Ok(event(&job, outcome));
            }
            let reason = error
                .map(|e| reason(&job, &e))
                .unwrap_or_else(|| permanent("internal", "the job failed without a reason".into()));
            let failed = job.failed(Utc::now(), reason);
            st.ports
                .jobs
                .transition(&job, &failed)
                .await
                .map_err(|e| port_error("the job's failure could not be recorded", e))?;
            count_failure(&failed);
            tracing::warn!(job_id = %failed.id, error = ?failed.error, "job failed");
            Ok(event(&failed, "failed"))
        }
    }
}

async fn read_staged(st: &AppState, key: &str) -> Result<Executed, JobError> {
    let bytes = st
        .ports
        .objects
        .get(key)
        .await
        .map_err(|e| port_error("the staged rows could not be read", e))?
        .ok_or_else(|| {
            permanent(
                "internal",
                format!("the staged rows {key} are gone; submit the job again"),
            )
        })?;
    let mut doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| permanent("internal", format!("the staged rows are not JSON: {e}")))?;
    Ok(Executed {
        body: doc.get_mut("body").map(Value::take).unwrap_or(Value::Null),
        data_version: doc.get("data_version").and_then(Value::as_i64).unwrap_or(0),
        stored: None,
    })
}

/// The submitter's reason from what the state machine caught: the step's own
/// [`JobError`] when a step failed, else the Step Functions error by name.
fn reason(job: &Job, e: &SfnError) -> JobError {
    // Step Functions' Cause for a Lambda error is the function's error JSON
    // (`{"errorType", "errorMessage", ...}`); local runners may hand over the
    // message itself. The message is the step's JobError as JSON.
    let cause = serde_json::from_str::<Value>(&e.cause).ok();
    let message = cause
        .as_ref()
        .and_then(|c| c.get("errorMessage").and_then(Value::as_str))
        .unwrap_or(&e.cause);
    let from_step = serde_json::from_str::<JobError>(message).ok();
    match from_step {
        Some(err) if err.transient => JobError {
            code: "attempts_exhausted".into(),
            message: format!(
                "gave up after {} attempts; the last one failed with: {}",
                job.attempts, err.message
            ),
            transient: true,
        },
        Some(err) => err,
        None if e.error == "States.Timeout" => permanent(
            "timeout",
            "the job ran past the workflow's time limit; narrow the parameters".into(),
        ),
        None => {
            tracing::error!(error = %e.error, cause = %e.cause, job_id = %job.id, "job failed in the workflow");
            permanent(
                "internal",
                format!(
                    "the job workflow failed ({}); the operators' logs have details",
                    e.error
                ),
            )
        }
    }
}

/// The job event the state machine publishes (the same envelope as locally).
fn event(job: &Job, outcome: &str) -> Value {
    let ev = Event::for_job(format!("{}/{outcome}", job.id), job, Utc::now());
    json!({
        "type": serde_json::to_value(ev.kind).unwrap_or(Value::Null),
        "message": serde_json::to_string(&ev).unwrap_or_default(),
        "event": ev,
    })
}
