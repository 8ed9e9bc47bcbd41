//! `GET/POST /analytics`: validate, answer from the cache, run light operations
//! at once, and turn heavy ones into jobs (202).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use quarry_core::jobs::ResultFormat;
use quarry_core::packs::pack::CostClass;
use quarry_core::packs::params::InputStyle;
use quarry_core::ports::CachedValue;
use quarry_core::Pack;
use serde_json::{Map, Value};

use crate::auth::{Principal, Scope};
use crate::call::{
    authorize, body_bytes, check_json_type, execute, mark_deprecation, parse_body, ExecError,
};
use crate::{jobs, ApiError, AppState};

pub async fn analytics_get(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = query_params(&st, q)?;
    let paging = Paging::take(&mut params)?;
    let op = match params.remove("operation") {
        Some(Value::String(op)) => op,
        _ => {
            return Err(ApiError::MalformedBody(
                "the `operation` query parameter is missing, e.g. /analytics?operation=database_info (or call GET /analytics/NAME)"
                    .into(),
            ))
        }
    };
    run(&st, &who, &headers, &op, &params, InputStyle::Text, paging).await
}

/// An operation named in the path must exist (404 otherwise: the resource is missing).
fn known(st: &AppState, op: &str) -> Result<(), ApiError> {
    let packs = st.packs();
    if packs.get(op).is_some() {
        return Ok(());
    }
    Err(ApiError::NotFound(format!(
        "there is no operation `{}`; GET /operations lists them: {}",
        op.chars().take(80).collect::<String>(),
        packs.names().join(", ")
    )))
}

/// The reserved query parameters of pagination: `page_size` asks for the
/// first page of a snapshot of the answer, `cursor` for a later page.
#[derive(Debug, Default)]
pub struct Paging {
    pub page_size: Option<u64>,
    pub cursor: Option<String>,
}

impl Paging {
    /// Takes `page_size` and `cursor` out of query parameters.
    fn take(params: &mut Map<String, Value>) -> Result<Paging, ApiError> {
        let page_size = match params.remove("page_size") {
            Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| {
                ApiError::InvalidParameters(vec![quarry_core::packs::params::ParamError {
                    parameter: "page_size".into(),
                    message: format!(
                        "`{}` is not a whole number of rows",
                        s.chars().take(40).collect::<String>()
                    ),
                }])
            })?),
            _ => None,
        };
        let cursor = match params.remove("cursor") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Paging { page_size, cursor })
    }

    /// From the query string of a POST (its body holds the parameters).
    fn from_query(st: &AppState, q: Option<String>) -> Result<Paging, ApiError> {
        let mut params = query_params(st, q)?;
        let paging = Paging::take(&mut params)?;
        if let Some(k) = params.keys().next() {
            return Err(ApiError::MalformedBody(format!(
                "the query parameter `{k}` is not accepted here: give parameters in the body; the query string takes only page_size and cursor"
            )));
        }
        Ok(paging)
    }
}

/// The query string as parameters (text values), refusing one given twice.
fn query_params(st: &AppState, q: Option<String>) -> Result<Map<String, Value>, ApiError> {
    let q = q.unwrap_or_default();
    let max = st.config.api.max_query_bytes;
    if q.len() > max {
        return Err(ApiError::QueryTooLong(max));
    }
    let mut params = Map::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if params
            .insert(k.to_string(), Value::String(v.into_owned()))
            .is_some()
        {
            return Err(ApiError::MalformedBody(format!(
                "the query parameter `{k}` is given twice; give it once"
            )));
        }
    }
    Ok(params)
}

/// `GET /analytics/NAME?PARAM=VALUE...`: one operation, every query parameter
/// one of its own (the typed form of `GET /analytics` in the OpenAPI document).
pub async fn named_get(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Path(op): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    known(&st, &op)?;
    let mut params = query_params(&st, q)?;
    let paging = Paging::take(&mut params)?;
    run(&st, &who, &headers, &op, &params, InputStyle::Text, paging).await
}

/// `POST /analytics/NAME` with the parameters as the JSON body (an object; an
/// empty body means every parameter at its default).
pub async fn named_post(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Path(op): Path<String>,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    known(&st, &op)?;
    let paging = Paging::from_query(&st, q)?;
    let body = body_bytes(&st, body)?;
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        check_json_type(&headers)?;
        match quarry_core::strict_json::from_slice(&body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ApiError::MalformedBody(
                    "the body must be a JSON object of the operation's parameters, e.g. {\"group_by\": \"industry\"}".into(),
                ))
            }
            Err(e) => {
                return Err(ApiError::MalformedBody(format!(
                    "the body is not valid JSON: {e}"
                )))
            }
        }
    };
    run(&st, &who, &headers, &op, &params, InputStyle::Json, paging).await
}

pub async fn analytics_post(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let paging = Paging::from_query(&st, q)?;
    let body = body_bytes(&st, body)?;
    let req = parse_body(&headers, &body)?;
    if req.format.is_some() {
        return Err(ApiError::MalformedBody(
            "`format` applies to jobs only; submit with POST /analytics/jobs".into(),
        ));
    }
    run(
        &st,
        &who,
        &headers,
        &req.operation,
        &req.parameters,
        InputStyle::Json,
        paging,
    )
    .await
}

/// Validates, answers from the cache, runs or submits the operation.
async fn run(
    st: &Arc<AppState>,
    who: &Principal,
    headers: &HeaderMap,
    op: &str,
    input: &Map<String, Value>,
    style: InputStyle,
    paging: Paging,
) -> Result<Response, ApiError> {
    who.require(Scope::Read, "running an operation")?;
    let pack = authorize(st, who, op)?;
    let format =
        crate::results::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
            .map_err(ApiError::NotAcceptable)?;
    if let Some(cursor) = &paging.cursor {
        let mut resp = crate::stream::page(st, who, op, cursor, format).await?;
        mark_deprecation(&mut resp, &pack);
        return Ok(resp);
    }
    let params = pack
        .resolve(input, style)
        .map_err(ApiError::InvalidParameters)?;
    let timeout = Duration::from_secs(u64::from(
        st.config
            .api
            .sync_timeout_seconds
            .min(pack.spec.timeout_seconds),
    ));
    if let Some(size) = paging.page_size {
        let max = st.config.api.max_page_size;
        if size == 0 || size > max {
            return Err(ApiError::InvalidParameters(vec![
                quarry_core::packs::params::ParamError {
                    parameter: "page_size".into(),
                    message: format!("{size} is outside 1..={max} (api.max_page_size)"),
                },
            ]));
        }
        if pack.spec.cost == CostClass::Heavy {
            return Err(ApiError::MalformedBody(format!(
                "operation `{op}` is heavy and runs as a job, whose result is fetched whole from GET /analytics/jobs/{{id}}/result; call it without page_size"
            )));
        }
        let mut resp = crate::stream::first_page(
            st,
            who,
            pack.clone(),
            op,
            input,
            style,
            size,
            format,
            timeout,
        )
        .await?;
        mark_deprecation(&mut resp, &pack);
        return Ok(resp);
    }
    let ttl = pack.spec.cache_ttl_seconds;
    if ttl > 0 {
        let version = st.current_data_version().await?;
        let k = quarry_core::packs::cache::cache_key(&pack, &params, Some(version));
        let etag = etag_of(&k, format);
        if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
        {
            metrics::counter!("quarry_cache_requests_total", "result" => "not_modified")
                .increment(1);
            return Ok(with_cache_headers(
                StatusCode::NOT_MODIFIED.into_response(),
                Some(&etag),
                &pack,
                "hit",
            ));
        }
        if let Some(body) = cached(st, &k).await {
            metrics::counter!("quarry_cache_requests_total", "result" => "hit").increment(1);
            let resp = answer(st, &k, body, format).await?;
            return Ok(with_cache_headers(resp, Some(&etag), &pack, "hit"));
        }
        metrics::counter!("quarry_cache_requests_total", "result" => "miss").increment(1);
    }
    if pack.spec.cost == CostClass::Heavy {
        who.require(
            Scope::Jobs,
            &format!("operation `{op}` is heavy and runs as a job, which"),
        )?;
        let job = jobs::submit_job(st, who, &pack, input, style, format).await?;
        let mut resp = jobs::accepted(&job, true);
        mark_deprecation(&mut resp, &pack);
        return Ok(resp);
    }
    if format != ResultFormat::Json && st.config.api.stream_answers {
        // Not in the cache: stream it from the database, a batch at a time.
        let mut resp = crate::stream::streamed(st, pack.clone(), input, style, format, timeout)
            .await
            .map_err(|e| sql_error_for(&pack, e))?;
        mark_deprecation(&mut resp, &pack);
        return Ok(resp);
    }
    let (bytes, version) = match tokio::time::timeout(
        timeout + Duration::from_secs(2),
        execute(st, &pack, input, style, Some(timeout)),
    )
    .await
    {
        Ok(r) => r.map_err(|e| sql_error_for(&pack, e))?,
        Err(_) => return Err(ApiError::Timeout),
    };
    // Key by the version the answer was read at (it may have moved since the lookup).
    let k = quarry_core::packs::cache::cache_key(&pack, &params, Some(version));
    let etag = if ttl > 0 {
        store(st, &k, &pack, bytes.clone());
        Some(etag_of(&k, format))
    } else {
        None
    };
    let resp = answer(st, &k, bytes, format).await?;
    Ok(with_cache_headers(resp, etag.as_deref(), &pack, "miss"))
}

/// The answer as the response: inline up to `api.sync_answer_bytes`, else
/// stored as an object (under its cache key: the same answer is one object)
/// and answered with `303 See Other` to a signed link, with a short JSON body
/// saying so. API Gateway and Lambda cannot return more than 6 MB.
async fn answer(
    st: &AppState,
    key: &str,
    bytes: Bytes,
    format: ResultFormat,
) -> Result<Response, ApiError> {
    // The answer is kept (cached) as JSON; other formats are made from it.
    let bytes = match format {
        ResultFormat::Json => bytes,
        other => {
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::Internal(anyhow::Error::new(e).context("reading an answer"))
            })?;
            Bytes::from(
                crate::results::render(&body, other)
                    .map_err(|e| ApiError::Internal(e.context("rendering an answer")))?,
            )
        }
    };
    if bytes.len() <= st.config.api.sync_answer_bytes {
        let mut r = bytes.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        return Ok(r);
    }
    let object_key = format!("answers/{key}.{}", format.extension());
    let size = bytes.len();
    let ttl = Duration::from_secs(st.config.jobs.link_ttl_seconds);
    // The same answer (same key: same data version) asked again within a link's
    // lifetime is not written again: the hot cache remembers it was stored.
    let memo = format!("stored:{object_key}");
    if st.hot.get(&memo).is_none() {
        st.ports
            .objects
            .put(&object_key, bytes.to_vec(), format.content_type())
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing a large answer: {e}")))?;
        st.hot.put(memo, Bytes::new(), ttl / 2);
    }
    let url = st
        .ports
        .objects
        .signed_url(&object_key, ttl)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing an answer link: {e}")))?;
    metrics::counter!("quarry_stored_answers_total").increment(1);
    let note = crate::contract::StoredAnswer {
        stored: true,
        bytes: size as u64,
        result_url: url.clone(),
        expires_in_seconds: ttl.as_secs(),
        detail: format!(
            "the answer has {size} bytes, more than api.sync_answer_bytes ({}); it is at result_url (follow the redirect)",
            st.config.api.sync_answer_bytes
        ),
    };
    let mut resp = (StatusCode::SEE_OTHER, axum::Json(note)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&url) {
        h.insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The ETag of an answer in `format` (formats differ in bytes, so in tags).
fn etag_of(key: &str, format: ResultFormat) -> String {
    match format {
        ResultFormat::Json => format!("\"{key}\""),
        other => format!("\"{key}.{}\"", other.extension()),
    }
}

/// A database error of a pack's own (non-raw) SQL is a server fault, not the caller's.
fn sql_error_for(pack: &Pack, e: ExecError) -> ApiError {
    match e {
        ExecError::Run(quarry_db::RunError::Query(quarry_db::QueryError::Sql {
            sqlstate,
            message,
            transient,
            ..
        })) if !pack.spec.raw_sql => {
            if transient {
                ApiError::DatabaseUnavailable
            } else {
                ApiError::Internal(anyhow::anyhow!(
                    "operation {} failed: {message} ({sqlstate})",
                    pack.spec.name
                ))
            }
        }
        ExecError::Run(quarry_db::RunError::Query(
            e @ quarry_db::QueryError::UnsupportedType { .. },
        )) if pack.spec.raw_sql => ApiError::UnsupportedResult(e.to_string()),
        other => other.into(),
    }
}

/// The answer under `key`: the hot copy, else the cache port (following a pointer
/// to object storage). Cache failures are logged and treated as misses.
async fn cached(st: &AppState, key: &str) -> Option<Bytes> {
    if let Some(b) = st.hot.get(key) {
        return Some(b);
    }
    let entry = match st.ports.cache.get(key).await {
        Ok(e) => e?,
        Err(e) => {
            tracing::warn!(error = %e, "cache read failed; answering from the database");
            return None;
        }
    };
    let bytes = match entry {
        CachedValue::Inline(b) => b,
        CachedValue::Pointer { object_key } => match st.ports.objects.get(&object_key).await {
            Ok(Some(b)) => Bytes::from(b),
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cached object unreadable; answering from the database");
                return None;
            }
        },
    };
    // The entry's remaining life is unknown here; keep the hot copy briefly.
    st.hot
        .put(key.to_string(), bytes.clone(), Duration::from_secs(5));
    Some(bytes)
}

/// Stores an answer's bytes: in memory at once, in the cache port in the
/// background (large answers as an object with a pointer).
pub fn store(st: &Arc<AppState>, key: &str, pack: &Pack, bytes: Bytes) {
    let ttl = Duration::from_secs(pack.spec.cache_ttl_seconds);
    st.hot.put(key.to_string(), bytes.clone(), ttl);
    let st = st.clone();
    let key = key.to_string();
    let op = pack.spec.name.clone();
    tokio::spawn(async move {
        let value = if bytes.len() > st.config.api.cache_inline_max_bytes {
            let object_key = format!("cache/{key}.json");
            if let Err(e) = st
                .ports
                .objects
                .put(&object_key, bytes.to_vec(), "application/json")
                .await
            {
                tracing::warn!(error = %e, "could not store a large cached answer");
                return;
            }
            CachedValue::Pointer { object_key }
        } else {
            CachedValue::Inline(bytes)
        };
        if let Err(e) = st.ports.cache.put(&key, &op, &value, ttl).await {
            tracing::warn!(error = %e, "could not store the answer in the cache");
        }
    });
}

fn with_cache_headers(
    mut resp: Response,
    etag: Option<&str>,
    pack: &Pack,
    hit: &'static str,
) -> Response {
    mark_deprecation(&mut resp, pack);
    let h = resp.headers_mut();
    h.insert("x-cache", HeaderValue::from_static(hit));
    // The same URL answers JSON, NDJSON or CSV by Accept.
    h.append(header::VARY, HeaderValue::from_static("accept"));
    match etag {
        Some(etag) if pack.spec.cache_ttl_seconds > 0 => {
            if let Ok(v) = HeaderValue::from_str(etag) {
                h.insert(header::ETAG, v);
            }
            if let Ok(v) =
                HeaderValue::from_str(&format!("private, max-age={}", pack.spec.cache_ttl_seconds))
            {
                h.insert(header::CACHE_CONTROL, v);
            }
        }
        _ => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    resp
}
