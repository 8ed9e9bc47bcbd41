//! `GET /ingest/files` and `GET /ingest/quarantine`: what the ingest did, file by
//! file, and the records it set aside with their reasons. Read with the reader
//! role through the views of schema `quarry_ops`; the `read` scope suffices (the
//! records are data the reader sees once loaded anyway). Newest first, paged by
//! id: `next` holds the query of the following page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use quarry_core::packs::params::ParamError;
use quarry_db::ledger::{self, FileFilter, QuarantineFilter, MAX_LIMIT};

use crate::auth::{Principal, Scope};
use crate::contract::{LedgerPage, QuarantinePage};
use crate::listing::{reader, ListQuery};
use crate::{ApiError, AppState};

const DEFAULT_LIMIT: i64 = 50;
const STATUSES: &[&str] = &["processing", "loaded", "failed"];

/// The page after this one, when this one is full (`ids` newest first).
fn next_page(
    path: &str,
    q: &HashMap<String, String>,
    ids: impl Iterator<Item = i64>,
    limit: i64,
) -> Option<String> {
    let ids: Vec<i64> = ids.collect();
    match ids.last() {
        Some(&last) if ids.len() as i64 == limit => Some(next_link(path, q, last)),
        _ => None,
    }
}

/// The query string of the page after the one ending at `last_id`.
fn next_link(path: &str, q: &HashMap<String, String>, last_id: i64) -> String {
    let mut pairs: Vec<(&str, String)> = q
        .iter()
        .filter(|(k, _)| k.as_str() != "before")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    pairs.sort();
    pairs.push(("before", last_id.to_string()));
    let qs = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{qs}")
}

/// `GET /ingest/files?source=&status=&before=&limit=`.
pub async fn files(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<LedgerPage>, ApiError> {
    who.require(Scope::Read, "reading the ingest ledger")?;
    let mut lq = ListQuery::new(&q, &["source", "status", "before", "limit"]);
    let source = lq.text("source");
    let status = lq.text("status");
    if let Some(s) = &status {
        if !STATUSES.contains(&s.as_str()) {
            lq.errors.push(ParamError {
                parameter: "status".into(),
                message: format!("expected one of {}", STATUSES.join(", ")),
            });
        }
    }
    let before = lq.int("before", 1, i64::MAX);
    let limit = lq.int("limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT);
    lq.finish()?;
    let client = reader(&st).await?;
    let files = ledger::files(
        &client,
        &FileFilter {
            source,
            status,
            before,
            limit,
        },
    )
    .await
    .map_err(ApiError::Internal)?;
    let next = next_page("/ingest/files", &q, files.iter().map(|f| f.id), limit);
    Ok(Json(LedgerPage { files, next }))
}

/// `GET /ingest/quarantine?source=&reason=&resolved=&before=&limit=`.
pub async fn quarantine(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<QuarantinePage>, ApiError> {
    who.require(Scope::Read, "reading the quarantine")?;
    let mut lq = ListQuery::new(&q, &["source", "reason", "resolved", "before", "limit"]);
    let source = lq.text("source");
    let reason = lq.text("reason");
    let include_resolved = lq.boolean("resolved");
    let before = lq.int("before", 1, i64::MAX);
    let limit = lq.int("limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT);
    lq.finish()?;
    let client = reader(&st).await?;
    let records = ledger::quarantine(
        &client,
        &QuarantineFilter {
            source,
            reason,
            include_resolved,
            before,
            limit,
        },
    )
    .await
    .map_err(ApiError::Internal)?;
    let next = next_page(
        "/ingest/quarantine",
        &q,
        records.iter().map(|r| r.id),
        limit,
    );
    Ok(Json(QuarantinePage { records, next }))
}
