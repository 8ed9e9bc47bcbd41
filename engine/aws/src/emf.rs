//! CloudWatch metrics as Embedded Metric Format lines in the function's log.
//! The engine records through the `metrics` facade (the same calls that feed
//! `/metrics` locally); on Lambda `metrics_cloudwatch_embedded` is the recorder
//! and every invocation ends with a flush, one JSON document per metric set.
//!
//! What a dashboard gets, namespace `Quarry`, dimension `function`:
//! `quarry_ingest_records_total`, `quarry_ingest_records_per_second`,
//! `quarry_ingest_quarantined_total`, `quarry_ingest_files_total` (by status),
//! `quarry_query_seconds` (by operation), `quarry_cache_requests_total` (by
//! result: the hit ratio is hit / (hit + miss)), `quarry_jobs_total` (by event,
//! failures included), `quarry_job_system_failures_total` (failures the
//! submitter did not cause: the `jobs-system-failures` alarm), `quarry_http_requests_total` and
//! `quarry_http_request_duration_seconds` (by route and status).

use metrics_cloudwatch_embedded::Collector;
use quarry_db::ingest::{FileReport, FileStatus};

/// Installs the EMF recorder for `function`. `None` if a recorder is already
/// installed (tests install several runtimes in one process).
pub fn init(function: &str) -> Option<&'static Collector> {
    match metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace("Quarry")
        .with_dimension("function", function.to_string())
        .init()
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "CloudWatch metrics are off");
            None
        }
    }
}

/// Writes the invocation's metrics to stdout (CloudWatch Logs parses them).
pub fn flush(collector: Option<&'static Collector>) {
    if let Some(c) = collector {
        if let Err(e) = c.flush(std::io::stdout()) {
            tracing::warn!(error = %e, "could not write CloudWatch metrics");
        }
    }
}

/// Records an ingest invocation's files.
pub fn ingest(reports: &[FileReport]) {
    let mut records = 0u64;
    let mut ms = 0u64;
    for r in reports {
        let status = match r.status {
            FileStatus::Loaded => "loaded",
            FileStatus::Duplicate => "duplicate",
            FileStatus::InProgress => "in_progress",
            FileStatus::Failed => "failed",
            FileStatus::Skipped => "skipped",
            FileStatus::HandedOff => "handed_off",
        };
        metrics::counter!("quarry_ingest_files_total", "status" => status).increment(1);
        if r.status == FileStatus::Loaded {
            records += r.records_read;
            ms += r.elapsed_ms;
            metrics::counter!("quarry_ingest_quarantined_total").increment(r.quarantined_total());
        }
    }
    metrics::counter!("quarry_ingest_records_total").increment(records);
    if ms > 0 {
        metrics::gauge!("quarry_ingest_records_per_second")
            .set(records as f64 * 1000.0 / ms as f64);
    }
}
