//! The ingest ledger and the quarantine as the API shows them: read through the
//! views of schema `quarry_ops` (migration 0008), so the reader role the API
//! holds needs no right on schema `quarry`. Newest first, paged by id
//! (`before`), filtered by source, status or reason.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_postgres::Client;

/// Most rows one call returns.
pub const MAX_LIMIT: i64 = 500;

/// One file of the ingest ledger.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LedgerFile {
    pub id: i64,
    /// The source system the file was matched to.
    pub source_system: String,
    /// The file's key in the bucket (or its path under the landing folder).
    pub object_key: String,
    /// sha256 of the content: with source and key, the file's identity (a second
    /// delivery of the same identity loads nothing).
    pub content_sha256: String,
    pub size_bytes: i64,
    /// The mapping version it was (last) loaded with.
    pub mapping_version: Option<String>,
    /// `processing`, `loaded` or `failed` (a failed file loaded nothing).
    pub status: String,
    pub records_read: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    /// Records older than the row already held (kept in the history).
    pub stale: i64,
    pub quarantined: i64,
    /// Why the file failed, for a failed file.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One quarantined record.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QuarantinedRecord {
    pub id: i64,
    /// The ledger entry of the file it came from.
    pub ingest_file_id: Option<i64>,
    pub source_system: String,
    pub object_key: String,
    /// Its place in the file (0-based record number).
    pub position: i64,
    pub record_type: Option<String>,
    /// Machine-readable reason (`missing_required`, `invalid_json`, ...).
    pub reason_code: String,
    /// What is wrong with it, for people.
    pub message: String,
    /// The record as it arrived, cut at 4000 characters.
    pub raw_record: String,
    /// True when `raw_record` was cut (`quarry quarantine show ID` shows it whole).
    pub raw_truncated: bool,
    pub mapping_version: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When a replay loaded it; null while it is open.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which ledger rows to list.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub source: Option<String>,
    pub status: Option<String>,
    /// Only ids below this one (the next page).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Which quarantined records to list.
#[derive(Debug, Clone, Default)]
pub struct QuarantineFilter {
    pub source: Option<String>,
    pub reason: Option<String>,
    /// Also records a replay has since loaded.
    pub include_resolved: bool,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Ledger files, newest first.
pub async fn files(client: &Client, f: &FileFilter) -> Result<Vec<LedgerFile>> {
    let limit = f.limit.clamp(1, MAX_LIMIT);
    let rows = client
        .query(
            "SELECT * FROM quarry_ops.ingest_files
              WHERE ($1::text IS NULL OR source_system = $1) AND ($2::text IS NULL OR status = $2)
                AND ($3::bigint IS NULL OR id < $3)
              ORDER BY id DESC LIMIT $4",
            &[&f.source, &f.status, &f.before, &limit],
        )
        .await
        .context("listing the ingest ledger (quarry_ops.ingest_files)")?;
    Ok(rows
        .iter()
        .map(|r| LedgerFile {
            id: r.get("id"),
            source_system: r.get("source_system"),
            object_key: r.get("object_key"),
            content_sha256: r.get::<_, String>("content_sha256").trim_end().to_owned(),
            size_bytes: r.get("size_bytes"),
            mapping_version: r.get("mapping_version"),
            status: r.get("status"),
            records_read: r.get("records_read"),
            inserted: r.get("inserted"),
            updated: r.get("updated"),
            unchanged: r.get("unchanged"),
            stale: r.get("stale"),
            quarantined: r.get("quarantined"),
            error: r.get("error"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
        })
        .collect())
}

/// Quarantined records, newest first.
pub async fn quarantine(client: &Client, f: &QuarantineFilter) -> Result<Vec<QuarantinedRecord>> {
    let limit = f.limit.clamp(1, MAX_LIMIT);
    let rows = client
        .query(
            "SELECT * FROM quarry_ops.quarantine
              WHERE ($1::text IS NULL OR source_system = $1) AND ($2::text IS NULL OR reason_code = $2)
                AND ($3 OR resolved_at IS NULL) AND ($4::bigint IS NULL OR id < $4)
              ORDER BY id DESC LIMIT $5",
            &[&f.source, &f.reason, &f.include_resolved, &f.before, &limit],
        )
        .await
        .context("listing the quarantine (quarry_ops.quarantine)")?;
    Ok(rows
        .iter()
        .map(|r| QuarantinedRecord {
            id: r.get("id"),
            ingest_file_id: r.get("ingest_file_id"),
            source_system: r.get("source_system"),
            object_key: r.get("object_key"),
            position: r.get("position"),
            record_type: r.get("record_type"),
            reason_code: r.get("reason_code"),
            message: r.get("message"),
            raw_record: r.get("raw_record"),
            raw_truncated: r.get("raw_truncated"),
            mapping_version: r.get("mapping_version"),
            created_at: r.get("created_at"),
            resolved_at: r.get("resolved_at"),
        })
        .collect())
}
