//! Calling an operation, shared by the handlers that do it (`/analytics`, the
//! named routes, `/analytics/jobs`, the job runner and the paged answers): read and
//! parse the body, find the pack and check the caller may run it, run it as the
//! reader, and mark a deprecated version's answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use quarry_core::jobs::ResultFormat;
use quarry_core::packs::params::InputStyle;
use quarry_core::Pack;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

/// Body of `POST /analytics` and `POST /analytics/jobs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsRequest {
    /// The operation's name (see GET /operations).
    pub operation: String,
    /// The operation's parameters; omitted ones take their defaults.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Format of a stored job result (jobs only; default json).
    #[serde(default)]
    pub format: Option<ResultFormat>,
}

/// Why running an operation failed.
pub enum ExecError {
    /// No connection could be had.
    Pool,
    Run(quarry_db::RunError),
    /// The answer could not be encoded as JSON.
    Encode(serde_json::Error),
    /// Object storage refused a write (page snapshots).
    Store(String),
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Pool => ApiError::DatabaseUnavailable,
            ExecError::Run(e) => e.into(),
            ExecError::Encode(e) => {
                ApiError::Internal(anyhow::Error::new(e).context("encoding an answer"))
            }
            ExecError::Store(e) => {
                ApiError::Internal(anyhow::anyhow!("storing a page snapshot: {e}"))
            }
        }
    }
}

/// What [`execute`] knows of the reader pool's sessions: each connection's
/// settings as [`quarry_db::run_light`] left them (by pool object id), and the
/// operations whose last answer was cut by the row cap.
#[derive(Debug, Default)]
pub struct Sessions {
    settings: std::sync::Mutex<HashMap<deadpool_postgres::ObjectId, quarry_db::SessionState>>,
    cut: std::sync::Mutex<HashSet<String>>,
}

impl Sessions {
    /// The settings of `conn`'s session (default: unknown, set them).
    fn take(&self, conn: &deadpool_postgres::Object) -> quarry_db::SessionState {
        let id = object_id(conn);
        self.settings
            .lock()
            .map(|mut m| m.remove(&id).unwrap_or_default())
            .unwrap_or_default()
    }

    fn put(&self, conn: &deadpool_postgres::Object, state: quarry_db::SessionState) {
        if let Ok(mut m) = self.settings.lock() {
            // Ids of connections the pool dropped stay behind: keep the map
            // small (a forgotten entry only costs one SET).
            if m.len() >= 1024 {
                m.clear();
            }
            m.insert(object_id(conn), state);
        }
    }

    fn forget(&self, conn: &deadpool_postgres::Object) {
        if let Ok(mut m) = self.settings.lock() {
            m.remove(&object_id(conn));
        }
    }

    fn was_cut(&self, op: &str) -> bool {
        self.cut.lock().is_ok_and(|s| s.contains(op))
    }

    fn note_cut(&self, op: &str, cut: bool) {
        if let Ok(mut s) = self.cut.lock() {
            if cut {
                s.insert(op.to_string());
            } else {
                s.remove(op);
            }
        }
    }
}

/// Unique within the pool, never reused.
fn object_id(conn: &deadpool_postgres::Object) -> deadpool_postgres::ObjectId {
    deadpool_postgres::Object::id(conn)
}

/// The version an answer is keyed by, known before its query starts: from the
/// listener when it runs, else read on `reader`.
pub async fn data_version_before(
    st: &AppState,
    reader: &deadpool_postgres::Object,
) -> Result<i64, ExecError> {
    if let Some(v) = *st.data_version.borrow() {
        return Ok(v);
    }
    Ok(reader
        .query_one("SELECT version FROM canonical.data_version", &[])
        .await
        .map_err(|e| ExecError::Run(quarry_db::RunError::Query(e.into())))?
        .get(0))
}

/// Runs `pack` as the reader with `timeout` (never above the pack's own) and
/// returns the answer document's JSON bytes (as served and cached) and the
/// data version it was read at. The version is read before the query, so an
/// answer is never labelled newer than its data.
pub async fn execute(
    st: &AppState,
    pack: &Pack,
    input: &Map<String, Value>,
    style: InputStyle,
    timeout: Option<Duration>,
) -> Result<(Bytes, i64), ExecError> {
    // The light path (no transaction of its own) unless the configuration
    // asks for a transaction per call (behind a pooler that must not see
    // session settings) or this operation's answers pass the row cap: then
    // the cap goes into the SQL and the database stops there.
    let light = !pack.spec.raw_sql
        && st.config.api.session_settings
        && !st.sessions.was_cut(&pack.spec.name);
    let (resolved, q, limits) = quarry_db::ops::prepare(
        pack,
        input,
        style,
        quarry_db::CallOptions {
            allow_raw_sql: st.config.allow_custom_sql,
            timeout,
            max_bytes: Some(st.config.api.max_answer_bytes),
            cap_on_client: light,
            ..Default::default()
        },
    )
    .map_err(ExecError::Run)?;
    let mut reader = st.reader.get().await.map_err(|_| ExecError::Pool)?;
    let data_version = data_version_before(st, &reader).await?;
    let result = if pack.spec.raw_sql {
        let client: &mut tokio_postgres::Client = &mut reader;
        let r = quarry_db::run(client, &q, limits).await;
        // Caller SQL may have changed session settings: never hand the connection
        // on as it is. DISCARD ALL also drops prepared statements and resets the
        // session's settings, so forget both.
        reader.statement_cache.clear();
        st.sessions.forget(&reader);
        let client: &mut tokio_postgres::Client = &mut reader;
        if client.batch_execute("DISCARD ALL").await.is_err() {
            let _ = deadpool_postgres::Object::take(reader);
        }
        r
    } else {
        // Pack SQL comes from a bounded set of templates: cache its statements per
        // connection, so a hot operation is parsed and planned once, not per call.
        let stmt = reader
            .prepare_typed_cached(&q.sql, &quarry_db::bind_types(&q))
            .await
            .map_err(|e| ExecError::Run(quarry_db::RunError::Query(e.into())))?;
        if !light {
            let client: &mut tokio_postgres::Client = &mut reader;
            quarry_db::run_prepared(client, Some(stmt), &q, limits).await
        } else {
            let mut session = st.sessions.take(&reader);
            let r = quarry_db::run_light(&reader, &mut session, &stmt, &q, limits).await;
            st.sessions.put(&reader, session);
            r
        }
    };
    if let Ok(out) = &result {
        st.sessions.note_cut(&pack.spec.name, out.truncated);
    }
    let result = result
        .map(|out| (resolved, out))
        .map_err(quarry_db::RunError::from);
    let (resolved, out) = result.map_err(ExecError::Run)?;
    let answer = answer_doc(pack, &resolved, data_version, out);
    let body = serde_json::to_vec(&answer).map_err(ExecError::Encode)?;
    Ok((Bytes::from(body), data_version))
}

/// The answer document of `out` as a JSON value (a job's inline result).
pub fn answer_body(
    pack: &Pack,
    resolved: &quarry_core::packs::params::ResolvedParams,
    data_version: i64,
    out: quarry_db::QueryOutput,
) -> Result<Value, ExecError> {
    serde_json::to_value(answer_doc(pack, resolved, data_version, out)).map_err(ExecError::Encode)
}

/// The answer document of `out`, read at `data_version` with `resolved`
/// parameters (and the query's time recorded in the metrics). It takes the
/// rows as they are: serializing it writes them straight to the answer.
fn answer_doc(
    pack: &Pack,
    resolved: &quarry_core::packs::params::ResolvedParams,
    data_version: i64,
    out: quarry_db::QueryOutput,
) -> crate::contract::Answer {
    metrics::histogram!("quarry_query_seconds", "operation" => pack.spec.name.clone())
        .record(out.elapsed_ms as f64 / 1000.0);
    crate::contract::Answer {
        operation: pack.spec.name.clone(),
        version: pack.spec.version.clone(),
        parameters: resolved
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
        data_version,
        columns: answer_columns(&out.columns),
        row_count: out.rows.len() as u64,
        truncated: out.truncated,
        elapsed_ms: out.elapsed_ms,
        rows: crate::contract::AnswerRows::new(&out.columns, out.rows),
        page: None,
        next: None,
    }
}

/// The columns as an answer names them.
pub fn answer_columns(columns: &[quarry_db::OutColumn]) -> Vec<crate::contract::AnswerColumn> {
    columns
        .iter()
        .map(|c| crate::contract::AnswerColumn {
            name: c.name.clone(),
            pg_type: c.pg_type.clone(),
        })
        .collect()
}

/// The body, or the problem with it (over the size limit: 413).
pub fn body_bytes(st: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(st.config.api.max_body_bytes)
        } else if is_body_timeout(&e) {
            ApiError::BodyTimeout(st.config.api.body_read_timeout_seconds)
        } else {
            ApiError::MalformedBody(format!("the request body could not be read: {e}"))
        }
    })
}

/// Whether reading the body failed because `RequestBodyTimeoutLayer` gave up.
fn is_body_timeout(e: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Parses a JSON request body, naming what is wrong.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<AnalyticsRequest, ApiError> {
    check_json_type(headers)?;
    // Strict: a key given twice is refused, not silently the last one.
    quarry_core::strict_json::from_slice(body)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ApiError::MalformedBody(format!(
                "the body is not valid JSON of the form {{\"operation\": \"...\", \"parameters\": {{...}}}}: {e}"
            ))
        })
}

/// A body's Content-Type, when given, must be JSON.
pub fn check_json_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") && !mime.ends_with("+json") {
            return Err(ApiError::MalformedBody(format!(
                "the body must be JSON (Content-Type: application/json), not {mime}"
            )));
        }
    }
    Ok(())
}

/// Finds the pack and checks the caller may run it.
pub fn authorize(st: &AppState, who: &Principal, op: &str) -> Result<Arc<Pack>, ApiError> {
    let packs = st.packs();
    let pack = packs
        .get(op)
        .cloned()
        .ok_or_else(|| ApiError::UnknownOperation {
            name: op.chars().take(80).collect(),
            known: packs.names().iter().map(|s| s.to_string()).collect(),
        })?;
    if pack.spec.raw_sql {
        if !st.config.allow_custom_sql {
            return Err(quarry_db::RunError::CustomSqlDisabled(pack.spec.name.clone()).into());
        }
        who.require(
            Scope::Admin,
            &format!("operation `{op}` (caller-supplied SQL)"),
        )?;
    }
    Ok(pack)
}

/// A deprecated version's answers say so: `Deprecation` (RFC 9745, the day as
/// `@epoch-seconds`), `Sunset` (RFC 8594, an HTTP date) and `Link`s to the page
/// that tells callers how to move.
pub fn mark_deprecation(resp: &mut Response, pack: &Pack) {
    let Some(dep) = &pack.spec.deprecation else {
        return;
    };
    let h = resp.headers_mut();
    let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    if let Some(t) = midnight(dep.since) {
        if let Ok(v) = HeaderValue::from_str(&format!("@{}", t.timestamp())) {
            h.insert("deprecation", v);
        }
    }
    if let Some(t) = dep.sunset.and_then(midnight) {
        if let Ok(v) = HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
            h.insert("sunset", v);
        }
    }
    if let Some(link) = &dep.link {
        let rels: &[&str] = if dep.sunset.is_some() {
            &["deprecation", "sunset"]
        } else {
            &["deprecation"]
        };
        for rel in rels {
            if let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"{rel}\"")) {
                h.append(header::LINK, v);
            }
        }
    }
}
