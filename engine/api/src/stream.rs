//! Large answers without holding them in memory: rows read from the database
//! in batches ([`quarry_db::RowCursor`]) and either streamed to the client as
//! NDJSON or CSV, or written as the pages of a snapshot that a cursor walks
//! (`page_size`, then `cursor`), so page 2 comes from the same data as page 1
//! whatever is ingested between the two requests.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use quarry_core::jobs::ResultFormat;
use quarry_core::packs::params::InputStyle;
use quarry_core::Pack;
use quarry_db::{OutColumn, RowCursor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::call::ExecError;
use crate::contract::{Answer, AnswerColumn, AnswerRows, PageInfo};
use crate::results::{header_bytes, rows_bytes, RowRef};
use crate::{ApiError, AppState};

/// Rows fetched from the database per batch while streaming.
const BATCH: usize = 1000;

/// A reader connection, the data version, the rendered query and its limits.
struct Prepared {
    reader: deadpool_postgres::Object,
    data_version: i64,
    resolved: Map<String, Value>,
    query: quarry_core::packs::render::RenderedQuery,
    limits: quarry_db::QueryLimits,
}

async fn prepare(
    st: &AppState,
    pack: &Pack,
    input: &Map<String, Value>,
    style: InputStyle,
    timeout: Duration,
) -> Result<Prepared, ExecError> {
    let (resolved, query, limits) = quarry_db::ops::prepare(
        pack,
        input,
        style,
        quarry_db::CallOptions {
            allow_raw_sql: st.config.allow_custom_sql,
            timeout: Some(timeout),
            ..Default::default()
        },
    )
    .map_err(ExecError::Run)?;
    let reader = st.reader.get().await.map_err(|_| ExecError::Pool)?;
    let data_version = crate::call::data_version_before(st, &reader).await?;
    Ok(Prepared {
        reader,
        data_version,
        resolved: resolved
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
        query,
        limits,
    })
}

/// Caller SQL may have changed session settings: never hand such a connection on.
async fn release(mut reader: deadpool_postgres::Object, raw_sql: bool) {
    if raw_sql {
        reader.statement_cache.clear();
        let client: &mut tokio_postgres::Client = &mut reader;
        if client.batch_execute("DISCARD ALL").await.is_err() {
            let _ = deadpool_postgres::Object::take(reader);
        }
    }
}

fn run_error(e: quarry_db::QueryError) -> ExecError {
    ExecError::Run(quarry_db::RunError::Query(e))
}

/// `pack` streamed as NDJSON or CSV: the response starts once the first batch
/// is read (so a bad query or a timeout before any row is still a problem
/// document); an error after that ends the body early (the chunked body has no
/// final chunk, which clients report as an incomplete read).
pub async fn streamed(
    st: &Arc<AppState>,
    pack: Arc<Pack>,
    input: &Map<String, Value>,
    style: InputStyle,
    format: ResultFormat,
    timeout: Duration,
) -> Result<Response, ExecError> {
    let p = prepare(st, &pack, input, style, timeout).await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), ExecError>>();
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let raw_sql = pack.spec.raw_sql;
    let name = pack.spec.name.clone();
    tokio::spawn(async move {
        let Prepared {
            mut reader,
            query,
            limits,
            ..
        } = p;
        let mut ready = Some(ready_tx);
        let fail = |ready: &mut Option<tokio::sync::oneshot::Sender<Result<(), ExecError>>>,
                    e: ExecError| {
            if let Some(r) = ready.take() {
                let _ = r.send(Err(e));
                true
            } else {
                false
            }
        };
        {
            let stmt = if raw_sql {
                None
            } else {
                match reader
                    .prepare_typed_cached(&query.sql, &quarry_db::bind_types(&query))
                    .await
                {
                    Ok(s) => Some(s),
                    Err(e) => {
                        fail(&mut ready, run_error(e.into()));
                        return;
                    }
                }
            };
            let client: &mut tokio_postgres::Client = &mut reader;
            let tx = match client.build_transaction().read_only(true).start().await {
                Ok(tx) => tx,
                Err(e) => {
                    fail(&mut ready, run_error(e.into()));
                    return;
                }
            };
            let mut cursor: RowCursor<'_, '_> =
                match quarry_db::open_cursor(&tx, stmt, &query, limits).await {
                    Ok(c) => c,
                    Err(e) => {
                        fail(&mut ready, run_error(e));
                        return;
                    }
                };
            let mut pending = header_bytes(format, &cursor.columns);
            loop {
                match cursor.next_batch(BATCH).await {
                    Ok(Some(rows)) => {
                        pending.extend(rows_bytes(format, &cursor.columns, &rows));
                    }
                    Ok(None) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                        if !pending.is_empty() {
                            let _ = body_tx.send(Ok(Bytes::from(pending))).await;
                        }
                        break;
                    }
                    Err(e) => {
                        if !fail(&mut ready, run_error(e)) {
                            tracing::warn!(operation = %name, "a streamed answer failed after its first rows; the body ends early");
                            let _ = body_tx
                                .send(Err(std::io::Error::other("the answer failed midway")))
                                .await;
                        }
                        break;
                    }
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                let chunk = Bytes::from(std::mem::take(&mut pending));
                if body_tx.send(Ok(chunk)).await.is_err() {
                    // The client went away: stop reading (the transaction rolls back).
                    break;
                }
            }
            if cursor.truncated {
                tracing::info!(operation = %name, rows = cursor.rows_read(), "a streamed answer stopped at the row cap");
            }
        }
        release(reader, raw_sql).await;
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ExecError::Run(quarry_db::RunError::Render(
                "the streaming task ended before its first rows".into(),
            )))
        }
    }
    let mut body_rx = body_rx;
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        body_rx.poll_recv(cx)
    }));
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert("x-cache", HeaderValue::from_static("miss"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.append(header::VARY, HeaderValue::from_static("accept"));
    Ok(resp)
}

/// What a snapshot's `meta.json` says.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotMeta {
    operation: String,
    call: String,
    version: String,
    parameters: Map<String, Value>,
    data_version: i64,
    columns: Vec<OutColumn>,
    total_rows: u64,
    pages: u64,
    page_size: u64,
    truncated: bool,
    owner: Option<String>,
    raw_sql: bool,
    expires_at: DateTime<Utc>,
}

/// A cursor: the snapshot and the page it points at (opaque to callers).
fn cursor_of(snapshot: &str, page: u64) -> String {
    format!("{snapshot}.{page}")
}

fn parse_cursor(c: &str) -> Option<(String, u64)> {
    let (id, page) = c.split_once('.')?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    Some((id.simple().to_string(), page.parse().ok()?))
}

fn page_key(snapshot: &str, page: u64) -> String {
    format!("pages/{snapshot}/{page}.json")
}

fn meta_key(snapshot: &str) -> String {
    format!("pages/{snapshot}/meta.json")
}

/// The first page of `pack`'s answer: every page of the answer is written to
/// object storage first (one page in memory at a time), then page 0 is answered
/// with the cursor of page 1.
#[allow(clippy::too_many_arguments)]
pub async fn first_page(
    st: &Arc<AppState>,
    who: &Principal,
    pack: Arc<Pack>,
    call: &str,
    input: &Map<String, Value>,
    style: InputStyle,
    page_size: u64,
    format: ResultFormat,
    timeout: Duration,
) -> Result<Response, ApiError> {
    let p = prepare(st, &pack, input, style, timeout)
        .await
        .map_err(ApiError::from)?;
    let snapshot = uuid::Uuid::new_v4().simple().to_string();
    let Prepared {
        mut reader,
        data_version,
        resolved,
        query,
        limits,
    } = p;
    let raw_sql = pack.spec.raw_sql;
    let written = async {
        let stmt = if raw_sql {
            None
        } else {
            Some(
                reader
                    .prepare_typed_cached(&query.sql, &quarry_db::bind_types(&query))
                    .await
                    .map_err(|e| run_error(e.into()))?,
            )
        };
        let client: &mut tokio_postgres::Client = &mut reader;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| run_error(e.into()))?;
        let mut cursor = quarry_db::open_cursor(&tx, stmt, &query, limits)
            .await
            .map_err(run_error)?;
        let mut pages = 0u64;
        let mut first: Option<Vec<Vec<Value>>> = None;
        let size = usize::try_from(page_size).unwrap_or(usize::MAX);
        while let Some(rows) = cursor.next_batch(size).await.map_err(run_error)? {
            let objects: Vec<RowRef<'_>> =
                rows.iter().map(|r| RowRef(&cursor.columns, r)).collect();
            let bytes = serde_json::to_vec(&objects).map_err(ExecError::Encode)?;
            st.ports
                .objects
                .put(&page_key(&snapshot, pages), bytes, "application/json")
                .await
                .map_err(|e| ExecError::Store(e.to_string()))?;
            if first.is_none() {
                first = Some(rows);
            }
            pages += 1;
        }
        Ok::<_, ExecError>((
            cursor.columns.clone(),
            cursor.rows_read(),
            cursor.truncated,
            pages,
            first.unwrap_or_default(),
        ))
    }
    .await;
    release(reader, raw_sql).await;
    let (columns, total_rows, truncated, pages, first) = written.map_err(ApiError::from)?;
    let meta = SnapshotMeta {
        operation: pack.spec.name.clone(),
        call: call.to_string(),
        version: pack.spec.version.clone(),
        parameters: resolved,
        data_version,
        columns,
        total_rows,
        pages,
        page_size,
        truncated,
        owner: who.key_id.clone(),
        raw_sql,
        expires_at: Utc::now()
            + chrono::Duration::seconds(
                i64::try_from(st.config.api.page_ttl_seconds).unwrap_or(i64::MAX / 2),
            ),
    };
    let bytes = serde_json::to_vec(&meta).map_err(|e| ApiError::Internal(e.into()))?;
    st.ports
        .objects
        .put(&meta_key(&snapshot), bytes, "application/json")
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing a page snapshot: {e}")))?;
    metrics::counter!("quarry_page_snapshots_total").increment(1);
    respond(&meta, &snapshot, 0, first, format)
}

/// The page a cursor points at, from its snapshot.
pub async fn page(
    st: &Arc<AppState>,
    who: &Principal,
    call: &str,
    cursor: &str,
    format: ResultFormat,
) -> Result<Response, ApiError> {
    let gone = || {
        ApiError::NotFound(
            "this cursor is unknown or belongs to another key; start again without `cursor`".into(),
        )
    };
    let (snapshot, n) = parse_cursor(cursor).ok_or_else(gone)?;
    let meta: SnapshotMeta = match st.ports.objects.get(&meta_key(&snapshot)).await {
        Ok(Some(b)) => serde_json::from_slice(&b).map_err(|e| ApiError::Internal(e.into()))?,
        Ok(None) => return Err(gone()),
        Err(e) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "reading a page snapshot: {e}"
            )))
        }
    };
    if meta.owner != who.key_id || (meta.call != call && meta.operation != call) {
        return Err(gone());
    }
    if meta.raw_sql {
        who.require(crate::auth::Scope::Admin, "a page of caller-supplied SQL")?;
    }
    if meta.expires_at < Utc::now() {
        return Err(ApiError::CursorExpired);
    }
    if n >= meta.pages.max(1) {
        return Err(gone());
    }
    let rows: Vec<Map<String, Value>> = match st.ports.objects.get(&page_key(&snapshot, n)).await {
        Ok(Some(b)) => serde_json::from_slice(&b).map_err(|e| ApiError::Internal(e.into()))?,
        Ok(None) if meta.pages == 0 => Vec::new(),
        Ok(None) => return Err(ApiError::CursorExpired),
        Err(e) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "reading a page snapshot: {e}"
            )))
        }
    };
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .map(|mut o| {
            meta.columns
                .iter()
                .map(|c| o.remove(&c.name).unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    respond(&meta, &snapshot, n, rows, format)
}

fn respond(
    meta: &SnapshotMeta,
    snapshot: &str,
    n: u64,
    rows: Vec<Vec<Value>>,
    format: ResultFormat,
) -> Result<Response, ApiError> {
    let next = (n + 1 < meta.pages).then(|| {
        format!(
            "/analytics/{}?cursor={}",
            meta.call,
            cursor_of(snapshot, n + 1)
        )
    });
    let body = match format {
        ResultFormat::Json => {
            let answer = Answer {
                operation: meta.operation.clone(),
                version: meta.version.clone(),
                parameters: meta.parameters.clone(),
                data_version: meta.data_version,
                columns: meta
                    .columns
                    .iter()
                    .map(|c| AnswerColumn {
                        name: c.name.clone(),
                        pg_type: c.pg_type.clone(),
                    })
                    .collect(),
                row_count: rows.len() as u64,
                truncated: meta.truncated,
                elapsed_ms: 0,
                rows: AnswerRows::new(&meta.columns, rows),
                page: Some(PageInfo {
                    number: n,
                    size: meta.page_size,
                    total_rows: meta.total_rows,
                    total_pages: meta.pages,
                }),
                next: next.clone(),
            };
            serde_json::to_vec(&answer).map_err(|e| ApiError::Internal(e.into()))?
        }
        other => {
            let mut out = header_bytes(other, &meta.columns);
            out.extend(rows_bytes(other, &meta.columns, &rows));
            out
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // A page never changes: it may be cached as long as its snapshot lives.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    h.append(header::VARY, HeaderValue::from_static("accept"));
    if let Some(next) = next {
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            h.insert(header::LINK, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&meta.total_rows.to_string()) {
        h.insert("x-total-count", v);
    }
    Ok(resp)
}
