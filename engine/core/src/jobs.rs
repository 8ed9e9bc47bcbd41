//! The job state machine: what a job is, which moves between states are legal,
//! how long to wait before a retry, and the events a job publishes.
//!
//! ```text
//!            claim              success
//!  queued ───────────▶ running ─────────▶ succeeded
//!    ▲  │                │  │
//!    │  │ cancel/expire  │  │ permanent error, or attempts exhausted
//!    │  ▼                │  ▼
//!    │ failed ◀──────────┘ failed
//!    └── transient error, attempts left (next_attempt_at = now + backoff)
//! ```
//!
//! Stores (Postgres locally, DynamoDB on AWS) write a transition only if the job
//! is still in the state the writer read, so state never moves backwards and two
//! runners can never both run one attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a runner (first attempt or a retry after backoff).
    Queued,
    /// An attempt is executing.
    Running,
    /// Finished; the result is available.
    Succeeded,
    /// Finished without a result; `error` says why.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }

    /// True once the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }

    /// Whether `self → next` is a legal transition. `running → queued` is a retry;
    /// `queued → failed` is a job given up before it ran (for example on recovery).
    pub fn can_move_to(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Failed)
                | (Running, Queued)
                | (Running, Succeeded)
                | (Running, Failed)
        )
    }
}

/// The format a stored result is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultFormat {
    /// One JSON document: `{"columns": [...], "rows": [{...}, ...]}`.
    #[default]
    Json,
    /// One JSON object per line, one line per row.
    Ndjson,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl ResultFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ResultFormat::Json => "json",
            ResultFormat::Ndjson => "ndjson",
            ResultFormat::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Json => "application/json",
            ResultFormat::Ndjson => "application/x-ndjson",
            ResultFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn parse(s: &str) -> Option<ResultFormat> {
        Some(match s {
            "json" => ResultFormat::Json,
            "ndjson" => ResultFormat::Ndjson,
            "csv" => ResultFormat::Csv,
            _ => return None,
        })
    }
}

/// Why a job failed, as shown to its submitter. Never carries internal text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobError {
    /// Stable machine-readable code: `timeout`, `sql_error`, `database_unavailable`,
    /// `attempts_exhausted`, `interrupted`, `invalid_parameters`, `operation_removed`, `internal`.
    pub code: String,
    /// What went wrong and what to do next.
    pub message: String,
    /// Whether the failure was judged transient (worth retrying).
    pub transient: bool,
}

impl JobError {
    /// Codes of failures the submitter caused and can fix (parameters, their own
    /// SQL, an answer too large, a query too slow for its timeout); every other
    /// code is the system's (what an operator is alerted to).
    pub const CALLER_CODES: &'static [&'static str] = &[
        "invalid_parameters",
        "forbidden",
        "timeout",
        "sql_error",
        "answer_too_large",
        "operation_removed",
        "not_found",
    ];

    /// Whether the submitter caused this failure (see [`JobError::CALLER_CODES`]).
    pub fn caused_by_caller(&self) -> bool {
        !self.transient && Self::CALLER_CODES.contains(&self.code.as_str())
    }
}

/// Where a finished job's rows are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobResult {
    /// Small results travel with the job record.
    Inline { body: Value },
    /// Large results are an object in object storage.
    Stored {
        key: String,
        format: ResultFormat,
        rows: u64,
        bytes: u64,
        truncated: bool,
    },
}

/// One analytics job, as persisted by a job store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub operation: String,
    pub operation_version: String,
    /// The caller's parameters, as submitted (validated at submit time).
    pub parameters: Map<String, Value>,
    pub format: ResultFormat,
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A queued job does not start before this instant (retry backoff).
    pub next_attempt_at: DateTime<Utc>,
    /// A running job whose lease passed belongs to a runner that died.
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub error: Option<JobError>,
    pub result: Option<JobResult>,
    /// The API key (its id) that submitted the job; `None` for open access.
    pub owner: Option<String>,
    pub request_id: Option<String>,
}

impl Job {
    /// A new queued job.
    pub fn new(
        id: String,
        operation: String,
        operation_version: String,
        parameters: Map<String, Value>,
        format: ResultFormat,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Job {
        Job {
            id,
            operation,
            operation_version,
            parameters,
            format,
            state: JobState::Queued,
            attempts: 0,
            max_attempts: max_attempts.max(1),
            submitted_at: now,
            started_at: None,
            finished_at: None,
            next_attempt_at: now,
            lease_expires_at: None,
            error: None,
            result: None,
            owner: None,
            request_id: None,
        }
    }

    /// The job after a runner claims it: running, one more attempt, leased.
    pub fn claimed(&self, now: DateTime<Utc>, lease: Duration) -> Job {
        let mut j = self.clone();
        j.state = JobState::Running;
        j.attempts += 1;
        j.started_at.get_or_insert(now);
        j.lease_expires_at = Some(now + chrono_dur(lease));
        j
    }

    /// The job after an attempt succeeded.
    pub fn succeeded(&self, now: DateTime<Utc>, result: JobResult) -> Job {
        let mut j = self.clone();
        j.state = JobState::Succeeded;
        j.finished_at = Some(now);
        j.lease_expires_at = None;
        j.error = None;
        j.result = Some(result);
        j
    }

    /// The job after an attempt failed: queued again after `backoff` if the error is
    /// transient and attempts remain, failed otherwise.
    pub fn after_failure(&self, now: DateTime<Utc>, error: JobError, backoff: Duration) -> Job {
        let mut j = self.clone();
        j.lease_expires_at = None;
        if error.transient && j.attempts < j.max_attempts {
            j.state = JobState::Queued;
            j.next_attempt_at = now + chrono_dur(backoff);
            j.error = Some(error);
        } else {
            j.state = JobState::Failed;
            j.finished_at = Some(now);
            j.error = Some(if error.transient {
                JobError {
                    code: "attempts_exhausted".into(),
                    message: format!(
                        "gave up after {} attempts; the last one failed with: {}",
                        j.attempts, error.message
                    ),
                    transient: true,
                }
            } else {
                error
            });
        }
        j
    }

    /// The job given up now with `error`, whatever attempts remain (on AWS the
    /// state machine owns retries and calls this once it stops retrying).
    pub fn failed(&self, now: DateTime<Utc>, error: JobError) -> Job {
        let mut j = self.clone();
        j.lease_expires_at = None;
        j.state = JobState::Failed;
        j.finished_at = Some(now);
        j.error = Some(error);
        j
    }

    /// A running job whose runner vanished (its lease expired, or the server
    /// restarted): queued for another attempt if any remain, failed otherwise.
    pub fn recovered(&self, now: DateTime<Utc>) -> Job {
        self.after_failure(
            now,
            JobError {
                code: "interrupted".into(),
                message: format!(
                    "the server stopped while attempt {} of {} was running",
                    self.attempts, self.max_attempts
                ),
                transient: true,
            },
            Duration::ZERO,
        )
    }

    /// Whether a store may replace `self` by `next`: a legal state change (or the
    /// same state, for a lease renewal), never out of a finished state, and never
    /// fewer attempts. Every job store checks this before its conditional write.
    pub fn check_transition(&self, next: &Job) -> Result<(), String> {
        if self.state != next.state && !self.state.can_move_to(next.state) {
            return Err(format!(
                "job {}: {} → {} is not a legal transition",
                self.id,
                self.state.as_str(),
                next.state.as_str()
            ));
        }
        if self.state.is_terminal() || next.attempts < self.attempts {
            return Err(format!(
                "job {} is {} and can no longer change",
                self.id,
                self.state.as_str()
            ));
        }
        Ok(())
    }

    /// Milliseconds from the first start to the finish, when both are known.
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds())
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Retry policy: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt + 1`, after `attempt` (≥ 1) failed.
    /// `jitter` in `[0, 1)` picks a point in `[0, min(max, base·2^(attempt-1))]`
    /// ("full jitter"), so retries of many jobs spread out instead of colliding.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let cap = self
            .base
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max)
            .as_secs_f64();
        Duration::from_secs_f64(cap * jitter.clamp(0.0, 1.0))
    }
}

/// Kinds of event the notifier publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    #[serde(rename = "quarry.job.succeeded")]
    JobSucceeded,
    #[serde(rename = "quarry.job.failed")]
    JobFailed,
    #[serde(rename = "quarry.system.error")]
    SystemError,
}

/// A notification, in CloudEvents 1.0 JSON form. The same payload goes to the log,
/// to webhooks and to SNS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Always "1.0".
    pub specversion: String,
    /// Unique per event; receivers deduplicate on it (webhooks are retried).
    pub id: String,
    /// `quarry.job.succeeded`, `quarry.job.failed` or `quarry.system.error`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `quarry/jobs` or `quarry/system`.
    pub source: String,
    /// The job id, for job events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: Value,
}

impl Event {
    /// The event for a finished job.
    pub fn for_job(id: String, job: &Job, now: DateTime<Utc>) -> Event {
        let kind = if job.state == JobState::Succeeded {
            EventType::JobSucceeded
        } else {
            EventType::JobFailed
        };
        let (rows, stored) = match &job.result {
            Some(JobResult::Stored { rows, .. }) => (Some(*rows), true),
            Some(JobResult::Inline { body }) => {
                (body.get("row_count").and_then(Value::as_u64), false)
            }
            None => (None, false),
        };
        Event {
            specversion: "1.0".into(),
            id,
            kind,
            source: "quarry/jobs".into(),
            subject: Some(job.id.clone()),
            time: now,
            datacontenttype: "application/json".into(),
            data: serde_json::json!({
                "job_id": job.id,
                "operation": job.operation,
                "operation_version": job.operation_version,
                "state": job.state,
                "attempts": job.attempts,
                "submitted_at": job.submitted_at,
                "finished_at": job.finished_at,
                "duration_ms": job.duration_ms(),
                "row_count": rows,
                "result_stored": stored,
                "error": job.error,
                "links": { "status": format!("/analytics/jobs/{}", job.id), "result": format!("/analytics/jobs/{}/result", job.id) },
            }),
        }
    }

    /// A system error event (ingest failure, job store unreachable, ...).
    pub fn system_error(id: String, component: &str, message: &str, now: DateTime<Utc>) -> Event {
        Event {
            specversion: "1.0".into(),
            id,
            kind: EventType::SystemError,
            source: "quarry/system".into(),
            subject: None,
            time: now,
            datacontenttype: "application/json".into(),
            data: serde_json::json!({ "component": component, "message": message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::new(
            "j1".into(),
            "op".into(),
            "1.0.0".into(),
            Map::new(),
            ResultFormat::Json,
            3,
            Utc::now(),
        )
    }

    #[test]
    fn legal_transitions_only_move_forward() {
        use JobState::*;
        let all = [Queued, Running, Succeeded, Failed];
        for from in all {
            for to in all {
                let legal = from.can_move_to(to);
                if from.is_terminal() {
                    assert!(!legal, "{from:?} → {to:?} must be refused");
                }
                if to == Queued {
                    assert_eq!(legal, from == Running, "{from:?} → queued");
                }
            }
        }
        assert!(Queued.can_move_to(Running));
        assert!(Running.can_move_to(Succeeded));
        assert!(!Succeeded.can_move_to(Running));
    }

    #[test]
    fn transient_failures_retry_until_attempts_run_out() {
        let now = Utc::now();
        let transient = JobError {
            code: "database_unavailable".into(),
            message: "lost".into(),
            transient: true,
        };
        let mut j = job().claimed(now, Duration::from_secs(60));
        assert_eq!((j.state, j.attempts), (JobState::Running, 1));
        j = j.after_failure(now, transient.clone(), Duration::from_secs(2));
        assert_eq!(j.state, JobState::Queued);
        assert_eq!(j.next_attempt_at, now + chrono::Duration::seconds(2));
        j = j.claimed(now, Duration::from_secs(60)).after_failure(
            now,
            transient.clone(),
            Duration::ZERO,
        );
        assert_eq!(j.state, JobState::Queued);
        j = j
            .claimed(now, Duration::from_secs(60))
            .after_failure(now, transient, Duration::ZERO);
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.attempts, 3);
        assert_eq!(
            j.error.as_ref().map(|e| e.code.as_str()),
            Some("attempts_exhausted")
        );
    }

    #[test]
    fn permanent_failures_fail_at_once() {
        let now = Utc::now();
        let j = job().claimed(now, Duration::from_secs(60)).after_failure(
            now,
            JobError {
                code: "sql_error".into(),
                message: "bad".into(),
                transient: false,
            },
            Duration::from_secs(5),
        );
        assert_eq!((j.state, j.attempts), (JobState::Failed, 1));
        assert_eq!(j.error.map(|e| e.code), Some("sql_error".into()));
    }

    #[test]
    fn recovery_requeues_then_fails_with_a_reason() {
        let now = Utc::now();
        let mut j = job();
        j.max_attempts = 1;
        let j = j.claimed(now, Duration::from_secs(60)).recovered(now);
        assert_eq!(j.state, JobState::Failed);
        let msg = j.error.map(|e| e.message).unwrap_or_default();
        assert!(msg.contains("server stopped while attempt 1 of 1"), "{msg}");
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(10),
        };
        assert_eq!(b.delay(1, 0.999_999).as_millis(), 499);
        assert_eq!(b.delay(2, 0.5).as_millis(), 500);
        assert_eq!(b.delay(3, 0.5).as_millis(), 1000);
        assert_eq!(b.delay(40, 0.5), Duration::from_secs(5));
        assert_eq!(b.delay(2, 0.0), Duration::ZERO);
    }
}
