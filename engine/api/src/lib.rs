//! # quarry-api
//!
//! The REST API as one axum [`Router`]: `quarry serve` runs it on a socket; the
//! AWS runtime will run the same router inside Lambda. Handlers are small; limits,
//! request ids and tracing are tower layers.

mod problem;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use quarry_core::params::{params_json_schema, InputStyle};
use quarry_core::{Pack, PackSet};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use axum::Router;
pub use problem::ApiError;

/// Serves `router` on `listener` until Ctrl-C or SIGTERM, finishing requests in flight.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => {
                            let _ = ctrl_c.await;
                            return;
                        }
                    };
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
        })
        .await?;
    Ok(())
}

/// Largest request body accepted (POST /analytics).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest query string accepted (GET /analytics).
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Owner URL; the reader and writer URLs are derived from it.
    pub database_url: String,
    /// Run `raw_sql` operations (custom_complex_query).
    pub allow_custom_sql: bool,
    /// Connections per pool.
    pub pool_size: usize,
}

/// Shared state of every handler.
pub struct AppState {
    pub packs: Arc<PackSet>,
    reader: Pool,
    writer: Pool,
    config: ApiConfig,
}

fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let cfg = tokio_postgres::Config::from_str(url)?;
    let mgr = Manager::from_config(
        cfg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

impl AppState {
    pub fn new(packs: PackSet, config: ApiConfig) -> anyhow::Result<Self> {
        let reader = pool(
            &quarry_db::reader_url(&config.database_url)?,
            config.pool_size,
        )?;
        let writer = pool(
            &quarry_db::writer_url(&config.database_url)?,
            config.pool_size.min(4),
        )?;
        Ok(AppState {
            packs: Arc::new(packs),
            reader,
            writer,
            config,
        })
    }
}

/// The router with its layers.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/operations", get(operations))
        .route("/operations/{name}", get(operation))
        .route("/analytics", get(analytics_get).post(analytics_post))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see GET /operations and GET /health".into())
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let db = match st.reader.get().await {
        Ok(c) => c
            .query_one("SELECT version FROM canonical.data_version", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .ok(),
        Err(_) => None,
    };
    let body = json!({
        "status": if db.is_some() { "ok" } else { "degraded" },
        "database": if db.is_some() { "reachable" } else { "unreachable" },
        "data_version": db,
        "operations": st.packs.len(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if db.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn describe(p: &Pack) -> Value {
    json!({
        "name": p.spec.name,
        "version": p.spec.version,
        "title": p.spec.title,
        "description": p.spec.description,
        "cost": p.spec.cost,
        "timeout_seconds": p.spec.timeout_seconds,
        "cache_ttl_seconds": p.spec.cache_ttl_seconds,
        "max_rows": p.spec.max_rows,
        "parameters": params_json_schema(&p.spec),
        "columns": p.spec.columns,
        "tags": p.spec.tags,
    })
}

async fn operations(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "operations": st.packs.packs.values().map(|p| describe(p)).collect::<Vec<_>>() }))
}

async fn operation(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    st.packs
        .get(&name)
        .map(|p| Json(describe(p)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "there is no operation `{name}`; GET /operations lists them"
            ))
        })
}

#[derive(Deserialize)]
struct AnalyticsBody {
    operation: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn analytics_get(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = q.unwrap_or_default();
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::QueryTooLong(MAX_QUERY_BYTES));
    }
    let mut op = None;
    let mut params = Map::new();
    for (k, v) in url_pairs(&q) {
        if k == "operation" {
            op = Some(v);
        } else {
            params.insert(k, Value::String(v));
        }
    }
    let op = op.ok_or_else(|| {
        ApiError::MalformedBody(
            "the `operation` query parameter is missing, e.g. /analytics?operation=database_info"
                .into(),
        )
    })?;
    run(&st, &headers, &op, &params, InputStyle::Text).await
}

async fn analytics_post(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let parsed: AnalyticsBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::MalformedBody(format!("the body is not valid JSON of the form {{\"operation\": \"...\", \"parameters\": {{...}}}}: {e}"))
    })?;
    let op = parsed
        .operation
        .ok_or_else(|| ApiError::MalformedBody("the body has no `operation`".into()))?;
    run(&st, &headers, &op, &parsed.parameters, InputStyle::Json).await
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Validates, answers from the cache or runs the operation, and caches the answer.
async fn run(
    st: &AppState,
    headers: &HeaderMap,
    op: &str,
    input: &Map<String, Value>,
    style: InputStyle,
) -> Result<Response, ApiError> {
    let pack = st.packs.get(op).ok_or_else(|| ApiError::UnknownOperation {
        name: op.chars().take(80).collect(),
        known: st.packs.names().iter().map(|s| s.to_string()).collect(),
    })?;
    if pack.spec.raw_sql && !st.config.allow_custom_sql {
        return Err(quarry_db::RunError::CustomSqlDisabled(pack.spec.name.clone()).into());
    }
    let params = pack
        .resolve(input, style)
        .map_err(ApiError::InvalidParameters)?;
    let mut reader = st
        .reader
        .get()
        .await
        .map_err(|_| ApiError::DatabaseUnavailable)?;
    let data_version: i64 = reader
        .query_one("SELECT version FROM canonical.data_version", &[])
        .await
        .map_err(|_| ApiError::DatabaseUnavailable)?
        .get(0);
    let key = quarry_core::cache::cache_key(pack, &params, Some(data_version));
    let etag = format!("\"{key}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
        && pack.spec.cache_ttl_seconds > 0
    {
        return Ok(cached_headers(
            StatusCode::NOT_MODIFIED.into_response(),
            &etag,
            pack,
            "hit",
        ));
    }
    let ttl = pack.spec.cache_ttl_seconds;
    if ttl > 0 {
        if let Ok(w) = st.writer.get().await {
            if let Ok(Some(row)) = w
                .query_opt(
                    "SELECT body FROM quarry.cache WHERE key = $1 AND expires_at > now()",
                    &[&key],
                )
                .await
            {
                let body: Value = row.get(0);
                return Ok(cached_headers(
                    Json(body).into_response(),
                    &etag,
                    pack,
                    "hit",
                ));
            }
        }
    }
    let client: &mut tokio_postgres::Client = &mut reader;
    let result = quarry_db::execute_pack(
        client,
        pack,
        input,
        style,
        quarry_db::CallOptions {
            allow_raw_sql: st.config.allow_custom_sql,
            ..Default::default()
        },
    )
    .await;
    if pack.spec.raw_sql {
        // Caller SQL may have changed session settings: never hand the connection on as it is.
        let _ = client.batch_execute("DISCARD ALL").await;
    }
    let (resolved, out) = match result {
        Ok(v) => v,
        Err(quarry_db::RunError::Query(quarry_db::QueryError::Sql {
            sqlstate, message, ..
        })) if !pack.spec.raw_sql => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "operation {} failed: {message} ({sqlstate})",
                pack.spec.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let body = json!({
        "operation": pack.spec.name,
        "version": pack.spec.version,
        "parameters": resolved.0.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<Map<String, Value>>(),
        "data_version": data_version,
        "columns": out.columns,
        "row_count": out.rows.len(),
        "truncated": out.truncated,
        "elapsed_ms": out.elapsed_ms,
        "rows": out.row_objects(),
    });
    if ttl > 0 {
        if let Ok(w) = st.writer.get().await {
            let stored = w
                .execute(
                    "INSERT INTO quarry.cache (key, operation, body, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                     ON CONFLICT (key) DO UPDATE SET body = EXCLUDED.body, expires_at = EXCLUDED.expires_at, created_at = now()",
                    &[&key, &pack.spec.name, &body, &(ttl as f64)],
                )
                .await;
            if let Err(e) = stored {
                tracing::warn!(error = %e, "could not store the result in the cache");
            }
        }
    }
    Ok(cached_headers(
        Json(body).into_response(),
        &etag,
        pack,
        "miss",
    ))
}

fn cached_headers(mut resp: Response, etag: &str, pack: &Pack, hit: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert("x-cache", HeaderValue::from_static(hit));
    if pack.spec.cache_ttl_seconds > 0 {
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) =
            HeaderValue::from_str(&format!("private, max-age={}", pack.spec.cache_ttl_seconds))
        {
            h.insert(header::CACHE_CONTROL, v);
        }
    } else {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
