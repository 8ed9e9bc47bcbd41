//! The ingest function (`quarry-ingest`): S3 ObjectCreated events, each record
//! one uploaded export. The object is streamed from S3 into the same loader as
//! `quarry ingest` (no scratch disk: its size is bounded only by the
//! invocation's time); the ingest ledger makes a repeated delivery a no-op. A
//! file that cannot finish before the invocation ends fails cleanly, with
//! nothing kept and a message saying to split it, a little before Lambda would
//! stop the process. With `QUARRY_INGEST_TASK_*` set (the stack's `ingestTask`),
//! objects over a size are handed to an ECS task instead (`handoff`), which
//! runs this same code with no time limit.
//!
//! The same function applies a fixed mapping to the files already delivered:
//! `{"backfill": {"source": "stripe", "since": "2024-06-01", "bucket": "..."}}`,
//! sent with `aws lambda invoke`, re-reads them from the raw bucket (see
//! `quarry_db::backfill`); a file whose object now holds other content is
//! reported, not loaded. Run it again to continue when it runs out of time.
//!
//! A record that did not load (a bad file, an unreachable database, a file
//! another invocation is still loading) makes the invocation fail, so Lambda
//! retries the event and, when the retries are spent, sends it with the error to
//! the dead-letter destination. Records that did load are duplicates on the
//! retry and cost nothing.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use deadpool_postgres::Pool;
use lambda_runtime::Diagnostic;
use quarry_core::ingest::mapping::Mapping;
use quarry_core::jobs::Event;
use quarry_core::ports::Notifier;
use quarry_db::ingest::{ingest_with, FileReport, FileStatus, IngestOptions, Opener};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::handoff::{self, IngestTask, StoppedTask};
use crate::S3Store;

/// Time kept back from the invocation's deadline: enough to roll the load back,
/// mark the file failed in the ledger and report it before Lambda stops the
/// process.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// Everything the handler needs, built once per container.
pub struct Ingest {
    pub s3: S3Store,
    pub writer: Pool,
    pub mappings: Vec<Arc<Mapping>>,
    /// System errors (failed files) go here: the alarm topic on AWS.
    pub alarms: Option<Arc<dyn Notifier>>,
    /// Refuse objects larger than this (`QUARRY_INGEST_MAX_BYTES`); none by
    /// default, as nothing is written to disk.
    pub max_bytes: Option<u64>,
    /// Where files over its size go (an ECS task), if anywhere.
    pub handoff: Option<IngestTask>,
}

/// The parts of an S3 event notification the function reads (S3's documented
/// structure; the other fields, whose formats vary between S3 and emulators,
/// are ignored).
#[derive(Debug, Deserialize)]
struct S3Event {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Debug, Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
}

/// `{"backfill": {...}}`: apply the current mapping of `source` to its files
/// already delivered, read back from the raw bucket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillRequest {
    source: String,
    /// Only files first delivered on or after this date (YYYY-MM-DD or RFC 3339).
    #[serde(default)]
    since: Option<String>,
    /// The raw bucket (default: QUARRY_RAW_BUCKET).
    #[serde(default)]
    bucket: Option<String>,
}

/// Delivered files read back from the raw bucket, streamed; an object whose
/// content is no longer the delivered one is refused.
struct S3Raw<'a> {
    s3: &'a S3Store,
    bucket: String,
}

#[async_trait::async_trait]
impl quarry_db::backfill::RawFiles for S3Raw<'_> {
    async fn open(&self, key: &str, sha256: &str) -> Result<Opener, String> {
        let bucket = &self.bucket;
        let open = self.s3.opener(bucket, key);
        let first = open.clone();
        let found = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut first()?, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("s3://{bucket}/{key}: {e}"))?;
        if found != sha256 {
            return Err(format!(
                "s3://{bucket}/{key} now holds other content (sha256 {found}, delivered {sha256}); the delivered file is gone unless the bucket keeps versions"
            ));
        }
        // Later reads are pinned to the content just checked.
        Ok(open)
    }
}

/// S3 event keys are URL-encoded, with `+` for a space.
pub fn decode_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

impl Ingest {
    /// Handles one S3 notification. `Ok` carries a report per record; `Err`
    /// names every record that did not load.
    pub async fn handle(&self, event: Value) -> Result<Value, Diagnostic> {
        self.handle_by(event, None).await
    }

    /// [`Ingest::handle`] within an invocation that ends at `deadline`
    /// (Lambda's): loads still running [`DEADLINE_MARGIN`] before it fail cleanly.
    pub async fn handle_by(
        &self,
        event: Value,
        deadline: Option<SystemTime>,
    ) -> Result<Value, Diagnostic> {
        let deadline = deadline.map(|d| {
            let left = d
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(DEADLINE_MARGIN)
                // Lambda's deadlines are at most 15 minutes away; a runtime that
                // gives a far one (a test's) gets a day.
                .min(Duration::from_secs(86_400));
            Instant::now() + left
        });
        // S3 sends a test event when a notification is configured: nothing to do.
        if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(json!({ "files": [] }));
        }
        if let Some(stopped) = handoff::stopped_task(&event) {
            return Ok(self.task_stopped(stopped).await);
        }
        if let Some(req) = event.get("backfill") {
            let req: BackfillRequest = serde_json::from_value(req.clone()).map_err(|e| Diagnostic {
                error_type: "Quarry.BadEvent".into(),
                error_message: format!("a backfill event is {{\"backfill\": {{\"source\": S, \"since\"?: DATE, \"bucket\"?: B}}}}: {e}"),
            })?;
            return self.backfill(req).await;
        }
        let event: S3Event = serde_json::from_value(event).map_err(|e| Diagnostic {
            error_type: "Quarry.BadEvent".into(),
            error_message: format!("not an S3 event notification: {e}"),
        })?;
        let mut reports = Vec::new();
        let mut problems = Vec::new();
        for record in event.records {
            let name = record.event_name;
            let bucket = record.s3.bucket.name;
            let key = decode_key(&record.s3.object.key);
            if !name.starts_with("ObjectCreated") {
                tracing::info!(event = %name, key = %key, "not an upload; skipped");
                continue;
            }
            let size = record.s3.object.size;
            let report = self.one(&bucket, &key, size, deadline, true).await;
            match report.status {
                FileStatus::Loaded
                | FileStatus::Duplicate
                | FileStatus::Skipped
                | FileStatus::HandedOff => {}
                FileStatus::InProgress => problems.push(format!(
                    "s3://{bucket}/{key} is being loaded by another invocation; retry later"
                )),
                FileStatus::Failed => problems.push(format!(
                    "s3://{bucket}/{key}: {}",
                    report.error.as_deref().unwrap_or("failed")
                )),
            }
            reports.push(report);
        }
        crate::emf::ingest(&reports);
        if problems.is_empty() {
            Ok(json!({ "files": reports }))
        } else {
            Err(Diagnostic {
                error_type: "Quarry.IngestFailed".into(),
                error_message: problems.join("; "),
            })
        }
    }

    /// Loads one object; never panics, always reports.
    async fn one(
        &self,
        bucket: &str,
        key: &str,
        size: Option<u64>,
        deadline: Option<Instant>,
        may_hand_off: bool,
    ) -> FileReport {
        let Some(mapping) = self.mappings.iter().find(|m| m.matches_key(key)).cloned() else {
            let mut r = FileReport::failed(key, "");
            r.error = Some(format!(
                "no mapping claims the key `{key}`; upload under a source's prefix (crm-data/, erp-data/, shop-data/) or add a mapping"
            ));
            self.alarm(&r).await;
            return r;
        };
        let source = mapping.spec.source.clone();
        if let (Some(n), Some(max)) = (size, self.max_bytes) {
            if n > max {
                let mut r = FileReport::failed(key, &source);
                r.bytes = n;
                r.error = Some(format!(
                    "the file is {n} bytes, over this function's limit of {max} (QUARRY_INGEST_MAX_BYTES); split the export"
                ));
                self.alarm(&r).await;
                return r;
            }
        }
        if let (true, Some(task), Some(n)) = (may_hand_off, &self.handoff, size) {
            if n > task.over_bytes {
                let mut r = FileReport::failed(key, &source);
                r.bytes = n;
                match task.start(bucket, key, n).await {
                    Ok(arn) => {
                        tracing::info!(key = %key, bytes = n, task = %arn, "file handed to an ingest task");
                        r.status = FileStatus::HandedOff;
                        r.handed_to = Some(arn);
                    }
                    Err(e) => {
                        tracing::error!(key = %key, error = %format!("{e:#}"), "could not start the ingest task");
                        r.error = Some(format!(
                            "the file is over {} bytes and goes to an ingest task, which could not be started; the event will be retried",
                            task.over_bytes
                        ));
                    }
                }
                return r;
            }
        }
        let report = self.load(bucket, key, mapping, &source, deadline).await;
        match report.status {
            FileStatus::Loaded | FileStatus::Duplicate => {
                tracing::info!(key = %key, source = %source, status = ?report.status, records = report.records_read,
                    inserted = report.inserted, updated = report.updated, quarantined = report.quarantined_total(),
                    elapsed_ms = report.elapsed_ms, "file ingested");
            }
            FileStatus::InProgress => {
                tracing::warn!(key = %key, "file is being loaded elsewhere")
            }
            FileStatus::Skipped => tracing::info!(key = %key, "no mapping claims the file"),
            FileStatus::HandedOff => {}
            FileStatus::Failed => {
                tracing::error!(key = %key, error = report.error.as_deref().unwrap_or(""), "file failed");
                self.alarm(&report).await;
            }
        }
        report
    }

    async fn load(
        &self,
        bucket: &str,
        key: &str,
        mapping: Arc<Mapping>,
        source: &str,
        deadline: Option<Instant>,
    ) -> FileReport {
        let failed = |msg: String| {
            let mut r = FileReport::failed(key, source);
            r.error = Some(msg);
            r
        };
        let mut client = match self.writer.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no database connection for ingest");
                return failed(
                    "the database could not be reached; the event will be retried".into(),
                );
            }
        };
        let open = self.s3.opener(bucket, key);
        let opts = IngestOptions {
            deadline,
            ..IngestOptions::default()
        };
        match ingest_with(&mut client, mapping, key, open, opts).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), key = %key, "database error during ingest");
                failed("the database failed during the load; nothing was kept and the event will be retried".into())
            }
        }
    }

    /// Applies the current mapping of a source to its delivered files.
    async fn backfill(&self, req: BackfillRequest) -> Result<Value, Diagnostic> {
        let bad = |msg: String| Diagnostic {
            error_type: "Quarry.BadEvent".into(),
            error_message: msg,
        };
        let Some(mapping) = self
            .mappings
            .iter()
            .find(|m| m.spec.source == req.source)
            .cloned()
        else {
            return Err(bad(format!("no mapping for source `{}`", req.source)));
        };
        let since = match req.since.as_deref() {
            None => None,
            Some(s) => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|_| {
                        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                    })
                    .map_err(|_| {
                        bad(format!(
                            "since {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"
                        ))
                    })?,
            ),
        };
        let bucket = req.bucket.unwrap_or_else(|| self.s3.bucket().to_string());
        if bucket.is_empty() {
            return Err(bad(
                "name the raw bucket (`bucket`) or set QUARRY_RAW_BUCKET".into(),
            ));
        }
        let raw = S3Raw {
            s3: &self.s3,
            bucket,
        };
        let mut client = self.writer.get().await.map_err(|e| {
            tracing::error!(error = %e, "no database connection for backfill");
            Diagnostic {
                error_type: "Quarry.Transient".into(),
                error_message: "the database could not be reached; invoke again".into(),
            }
        })?;
        let result = quarry_db::backfill::backfill(&mut client, mapping, since, &raw, &mut |f| {
            tracing::info!(key = %f.key, outcome = ?f.outcome, "backfill");
        })
        .await;
        match result {
            Ok(report) => Ok(json!({ "backfill": report })),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "backfill failed");
                Err(Diagnostic {
                    error_type: "Quarry.Transient".into(),
                    error_message: "the database failed during the backfill; files done so far are kept, invoke again to continue".into(),
                })
            }
        }
    }

    /// Task mode (`QUARRY_INGEST_OBJECT`, an ECS task): loads the one object with
    /// no deadline and returns the process's exit code ([`handoff::EXIT_LOADED`]
    /// and the others), after logging the report.
    pub async fn run_task(&self, object: &str) -> i32 {
        let Some((bucket, key)) = handoff::parse_object(object) else {
            tracing::error!(object, "{} must be s3://bucket/key", handoff::OBJECT_ENV);
            return handoff::EXIT_BAD_OBJECT;
        };
        let report = self.one(&bucket, &key, None, None, false).await;
        crate::emf::ingest(std::slice::from_ref(&report));
        match report.status {
            FileStatus::Loaded | FileStatus::Duplicate => handoff::EXIT_LOADED,
            FileStatus::InProgress => handoff::EXIT_IN_PROGRESS,
            // `one` marked the ledger and raised the alarm.
            FileStatus::Failed | FileStatus::Skipped | FileStatus::HandedOff => {
                handoff::EXIT_FAILED_REPORTED
            }
        }
    }

    /// An ingest task stopped: nothing to do when it reported itself (loaded,
    /// failed and alarmed, in progress elsewhere); otherwise (killed, never
    /// started, crashed) the alarm is raised here.
    async fn task_stopped(&self, t: StoppedTask) -> Value {
        if !t.unreported() {
            return json!({ "task": t.task_arn, "exit_code": t.exit_code, "alarm": false });
        }
        let object = t
            .object
            .as_deref()
            .unwrap_or("(an object the event does not name)");
        let exit = t
            .exit_code
            .map_or_else(|| "it never ran".to_string(), |c| format!("exit code {c}"));
        let message = format!(
            "{object} did not load: its ingest task {} stopped without finishing ({exit}: {}). Nothing from an unfinished load is kept; to try again, copy the object onto itself (aws s3 cp {object} {object} --metadata-directive REPLACE)",
            t.task_arn, t.reason
        );
        tracing::error!(task = %t.task_arn, object, exit_code = ?t.exit_code, reason = %t.reason, "ingest task stopped without finishing");
        let mut r = FileReport::failed(object, "");
        r.error = Some(message.clone());
        self.alarm(&r).await;
        json!({ "task": t.task_arn, "exit_code": t.exit_code, "alarm": true, "message": message })
    }

    async fn alarm(&self, r: &FileReport) {
        let Some(n) = &self.alarms else { return };
        let ev = Event::system_error(
            uuid::Uuid::new_v4().to_string(),
            "ingest",
            &format!(
                "{} did not load: {}",
                r.key,
                r.error.as_deref().unwrap_or("failed")
            ),
            Utc::now(),
        );
        if let Err(e) = n.publish(&ev).await {
            tracing::error!(error = %e, "could not publish the ingest failure");
        }
    }
}
