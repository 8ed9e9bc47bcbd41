//! Backfill: after a mapping fix (a new mapping version), apply the current
//! mapping again to the files of a source that were already delivered.
//!
//! The files are read from their raw copies (kept at ingest, see
//! [`crate::ingest::IngestOptions::raw_dir`]; on AWS the raw bucket) in the order
//! they were first delivered. Each is loaded as a new ledger entry under the new
//! mapping version, rewriting only the rows whose current version that file
//! wrote ([`crate::ingest::IngestOptions::supersedes`]): each changed row gets
//! exactly one new version, with the old one in history, whatever the order of
//! the files. A file already applied with the current version is skipped, so a
//! backfill is idempotent and resumes where an interrupted one stopped.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use quarry_core::ingest::mapping::Mapping;
use serde::Serialize;
use tokio_postgres::Client;

use crate::ingest::{ingest_with, FileReport, FileStatus, IngestOptions, Opener};

/// What happened to one delivered file.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BackfillOutcome {
    /// Applied with the current mapping version before: nothing to do.
    AlreadyApplied,
    /// No raw copy of the file is kept; it cannot be applied again.
    RawMissing { looked_at: String },
    /// Applied again; the report says what changed.
    Applied { report: Box<FileReport> },
}

/// One delivered file and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillFile {
    pub key: String,
    pub sha256: String,
    #[serde(flatten)]
    pub outcome: BackfillOutcome,
}

/// The whole backfill.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BackfillReport {
    pub source: String,
    pub mapping_version: String,
    pub files: Vec<BackfillFile>,
    /// Rows that got a new version.
    pub rows_changed: u64,
    /// Rows the earlier mapping did not produce (records it quarantined, new entities).
    pub rows_added: u64,
    pub already_applied: u64,
    pub raw_missing: u64,
    pub failed: u64,
}

/// Where the raw copies of delivered files are: a folder locally
/// ([`RawFolder`]), the raw bucket on AWS.
#[async_trait::async_trait]
pub trait RawFiles: Send + Sync {
    /// An opener for the file delivered under `key` with this content, or why
    /// there is none (the place looked at).
    async fn open(&self, key: &str, sha256: &str) -> std::result::Result<Opener, String>;
}

/// Raw copies kept by ingest in `<dir>/<source>/<sha256>`.
pub struct RawFolder {
    pub dir: std::path::PathBuf,
    pub source: String,
}

#[async_trait::async_trait]
impl RawFiles for RawFolder {
    async fn open(&self, key: &str, sha256: &str) -> std::result::Result<Opener, String> {
        let path = crate::ingest::raw_path(&self.dir, &self.source, sha256);
        if path.is_file() {
            Ok(Arc::new(move || {
                Ok(Box::new(std::fs::File::open(&path)?) as Box<dyn std::io::Read + Send>)
            }))
        } else {
            Err(format!("{} (for {key})", path.display()))
        }
    }
}

/// Applies `mapping` again to every file of its source first delivered at or
/// after `since`, oldest first. `on_file` hears about each file as it is done.
pub async fn backfill(
    client: &mut Client,
    mapping: Arc<Mapping>,
    since: Option<DateTime<Utc>>,
    raw: &dyn RawFiles,
    on_file: &mut (dyn FnMut(&BackfillFile) + Send),
) -> Result<BackfillReport> {
    let source = mapping.spec.source.clone();
    let version = mapping.spec.version.clone();
    let files = client
        .query(
            "SELECT object_key, content_sha256::text, array_agg(id ORDER BY id) AS ids,
                    bool_or(mapping_version = $2 AND status = 'loaded') AS applied
             FROM quarry.ingest_files
             WHERE source_system = $1 AND object_key NOT LIKE 'quarantine-replay/%'
             GROUP BY object_key, content_sha256
             HAVING $3::timestamptz IS NULL OR min(started_at) >= $3
             ORDER BY min(id)",
            &[&source, &version, &since],
        )
        .await
        .context("listing the delivered files in the ledger")?;
    let mut report = BackfillReport {
        source: source.clone(),
        mapping_version: version,
        ..BackfillReport::default()
    };
    for row in files {
        let key: String = row.get(0);
        let sha256: String = row.get(1);
        let ids: Vec<i64> = row.get(2);
        let applied: bool = row.get(3);
        let outcome = if applied {
            report.already_applied += 1;
            BackfillOutcome::AlreadyApplied
        } else {
            match raw.open(&key, &sha256).await {
                Err(looked_at) => {
                    report.raw_missing += 1;
                    BackfillOutcome::RawMissing { looked_at }
                }
                Ok(open) => {
                    let opts = IngestOptions {
                        supersedes: Some(ids),
                        ..IngestOptions::default()
                    };
                    let r = ingest_with(client, mapping.clone(), &key, open, opts).await?;
                    match r.status {
                        FileStatus::Loaded => {
                            report.rows_changed += r.updated;
                            report.rows_added += r.inserted;
                        }
                        FileStatus::Duplicate => report.already_applied += 1,
                        FileStatus::Failed
                        | FileStatus::InProgress
                        | FileStatus::Skipped
                        | FileStatus::HandedOff => report.failed += 1,
                    }
                    BackfillOutcome::Applied {
                        report: Box::new(r),
                    }
                }
            }
        };
        let file = BackfillFile {
            key,
            sha256,
            outcome,
        };
        on_file(&file);
        report.files.push(file);
    }
    Ok(report)
}
