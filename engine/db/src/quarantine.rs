//! Quarantine: list, show, and replay after a mapping fix. A replay feeds the
//! open quarantined records of a source through the normal ingest path as one
//! NDJSON file; records that now load are marked resolved, the rest stay open.

use std::sync::Arc;

use anyhow::{Context, Result};
use quarry_core::ingest::mapping::Mapping;
use quarry_core::ingest::stream::RecordFormat;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::ingest::{ingest_with, FileReport, FileStatus, IngestOptions, Opener};

/// One quarantined record.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub source_system: String,
    pub object_key: String,
    pub position: i64,
    pub record_type: Option<String>,
    pub reason_code: String,
    pub message: String,
    pub mapping_version: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
    /// Only filled by [`show`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_record: Option<String>,
}

fn entry(r: &tokio_postgres::Row, with_raw: bool) -> Entry {
    Entry {
        id: r.get("id"),
        source_system: r.get("source_system"),
        object_key: r.get("object_key"),
        position: r.get("position"),
        record_type: r.get("record_type"),
        reason_code: r.get("reason_code"),
        message: r.get("message"),
        mapping_version: r.get("mapping_version"),
        created_at: r
            .get::<_, chrono::DateTime<chrono::Utc>>("created_at")
            .to_rfc3339(),
        resolved_at: r
            .get::<_, Option<chrono::DateTime<chrono::Utc>>>("resolved_at")
            .map(|t| t.to_rfc3339()),
        raw_record: if with_raw { r.get("raw_record") } else { None },
    }
}

/// Open (or all) quarantine entries, newest first, optionally by source and reason.
pub async fn list(
    client: &Client,
    source: Option<&str>,
    reason: Option<&str>,
    include_resolved: bool,
    limit: i64,
) -> Result<Vec<Entry>> {
    let rows = client
        .query(
            "SELECT * FROM quarry.quarantine
             WHERE ($1::text IS NULL OR source_system = $1) AND ($2::text IS NULL OR reason_code = $2)
               AND ($3 OR resolved_at IS NULL)
             ORDER BY id DESC LIMIT $4",
            &[&source, &reason, &include_resolved, &limit],
        )
        .await
        .context("listing the quarantine")?;
    Ok(rows.iter().map(|r| entry(r, false)).collect())
}

/// One entry with its raw record.
pub async fn show(client: &Client, id: i64) -> Result<Option<Entry>> {
    let row = client
        .query_opt("SELECT * FROM quarry.quarantine WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|r| entry(&r, true)))
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub source: String,
    pub replayed: u64,
    pub resolved: u64,
    pub still_quarantined: u64,
    pub load: Option<FileReport>,
}

/// Re-processes the open quarantined records of `mapping`'s source with the
/// mapping as it is now.
pub async fn replay(client: &mut Client, mapping: Arc<Mapping>) -> Result<ReplayReport> {
    let source = mapping.spec.source.clone();
    let rows = client
        .query(
            "SELECT id, raw_record FROM quarry.quarantine WHERE source_system = $1 AND resolved_at IS NULL ORDER BY id",
            &[&source],
        )
        .await?;
    let mut report = ReplayReport {
        source: source.clone(),
        replayed: rows.len() as u64,
        resolved: 0,
        still_quarantined: 0,
        load: None,
    };
    if rows.is_empty() {
        return Ok(report);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut text = String::new();
    for r in &rows {
        let raw: String = r.get(1);
        text.push_str(&raw.replace(['\n', '\r'], " "));
        text.push('\n');
    }
    // The key names the mapping content, so a replay after a fix is a new file
    // while replaying twice with the same mapping is a duplicate.
    let mapping_digest = hex::encode(Sha256::digest(
        serde_json::to_vec(&mapping.spec).unwrap_or_default(),
    ));
    let key = format!(
        "quarantine-replay/{source}/{}/{}-{}",
        &mapping_digest[..12],
        ids[0],
        ids[ids.len() - 1]
    );
    let bytes = Arc::new(text.into_bytes());
    let open: Opener = Arc::new(move || {
        Ok(Box::new(std::io::Cursor::new(bytes.as_ref().clone())) as Box<dyn std::io::Read + Send>)
    });
    let format = RecordFormat::Ndjson {
        max_line_bytes: usize::MAX / 2,
    };
    let opts = IngestOptions {
        format: Some(format),
        ..IngestOptions::default()
    };
    let load = ingest_with(client, mapping, &key, open, opts).await?;
    // Only a load that just happened tells which records failed again; a
    // duplicate (same mapping, same records as an earlier replay) resolves nothing.
    if load.status == FileStatus::Loaded {
        let file_id = load.ingest_file_id.unwrap_or_default();
        let tx = client.transaction().await?;
        // Lines that failed again: their new entries are copies of the open originals.
        let again: Vec<i64> = tx
            .query(
                "DELETE FROM quarry.quarantine WHERE ingest_file_id = $1 RETURNING position",
                &[&file_id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let still: Vec<i64> = again
            .iter()
            .filter_map(|line| ids.get((*line - 1) as usize).copied())
            .collect();
        let resolved = tx
            .execute(
                "UPDATE quarry.quarantine SET resolved_at = now() WHERE id = ANY($1) AND NOT (id = ANY($2)) AND resolved_at IS NULL",
                &[&ids, &still],
            )
            .await?;
        tx.commit().await?;
        report.resolved = resolved;
        report.still_quarantined = still.len() as u64;
    } else {
        report.still_quarantined = ids.len() as u64;
    }
    report.load = Some(load);
    Ok(report)
}

/// A value a column could not hold, kept in the row's attributes instead.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    pub id: i64,
    pub source_system: String,
    pub object_key: String,
    pub position: i64,
    pub entity: String,
    pub source_id: String,
    pub column_name: String,
    pub reason_code: String,
    pub message: String,
    pub created_at: String,
}

/// Field warnings, newest first, optionally by source and column.
pub async fn warnings(
    client: &Client,
    source: Option<&str>,
    column: Option<&str>,
    limit: i64,
) -> Result<Vec<Warning>> {
    let rows = client
        .query(
            "SELECT id, source_system, object_key, position, entity, source_id, column_name, reason_code, message, created_at
             FROM quarry.ingest_warnings
             WHERE ($1::text IS NULL OR source_system = $1) AND ($2::text IS NULL OR column_name = $2)
             ORDER BY id DESC LIMIT $3",
            &[&source, &column, &limit],
        )
        .await
        .context("reading field warnings")?;
    Ok(rows
        .iter()
        .map(|r| Warning {
            id: r.get("id"),
            source_system: r.get("source_system"),
            object_key: r.get("object_key"),
            position: r.get("position"),
            entity: r.get("entity"),
            source_id: r.get("source_id"),
            column_name: r.get("column_name"),
            reason_code: r.get("reason_code"),
            message: r.get("message"),
            created_at: r
                .get::<_, chrono::DateTime<chrono::Utc>>("created_at")
                .to_rfc3339(),
        })
        .collect())
}
