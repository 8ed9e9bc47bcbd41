//! # quarry-api
//!
//! The REST API as one axum [`Router`] and the local runtime around it. `quarry
//! serve` runs the router on a socket; the AWS runtime runs the same router inside
//! Lambda. The router talks to the outside only through the ports of
//! [`quarry_core::ports`] held in [`AppState`]: which implementations they are
//! (folder, Postgres, in-process runner, webhooks; or S3, DynamoDB, Step
//! Functions, SNS) is decided by whoever builds the state.

// The OpenAPI document is one large json! literal.
#![recursion_limit = "256"]

pub mod analytics;
pub mod auth;
pub mod call;
pub mod companies;
pub mod config;
pub mod contract;
pub mod jobs;
pub mod ledger;
pub mod listing;
pub mod local;
pub mod metrics_http;
pub mod notify;
pub mod openapi;
mod problem;
pub mod reload;
pub mod results;
pub mod storage;
pub mod stream;
pub mod ui;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use quarry_core::ports::{Cache, JobStore, Notifier, ObjectStore, WorkflowStarter};
use quarry_core::{Pack, PackSet};
use serde_json::Value;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use axum::Router;
pub use config::Config;
pub use problem::ApiError;

/// Limits of the HTTP server itself, before any handler runs.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Time a client has to send its request headers (slow-header clients are cut).
    pub header_read_timeout: Duration,
    /// Connections served at once; the next ones wait in the listen backlog.
    pub max_connections: usize,
}

impl ServeLimits {
    pub fn from_config(api: &config::ApiSettings) -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(api.header_read_timeout_seconds.max(1)),
            max_connections: api.max_connections.max(1),
        }
    }
}

/// Serves `router` on `listener` until Ctrl-C or SIGTERM, finishing requests in
/// flight. hyper's HTTP/1 connection with a timer, so that a client that trickles
/// its headers is cut after `header_read_timeout`; at most `max_connections`
/// connections at once. Each request carries the client's address (`ConnectInfo`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ServeLimits,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = router
            .clone()
            .map_request(move |mut req: axum::extract::Request| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(addr));
                req
            });
        let svc = hyper_util::service::TowerToHyperService::new(svc.map_request(
            |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
        ));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
}

/// The ports the state is built from.
pub struct Ports {
    pub cache: Arc<dyn Cache>,
    pub jobs: Arc<dyn JobStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub notifier: Arc<dyn Notifier>,
    pub starter: Arc<dyn WorkflowStarter>,
    /// Housekeeping of the stores, where they need it (the local ones do).
    pub sweeper: Option<Arc<dyn jobs::Sweeper>>,
}

/// Shared state of every handler.
pub struct AppState {
    /// The pack set; swapped whole on reload, so a request keeps the set it started with.
    pub packs: ArcSwap<PackSet>,
    pub reader: Pool,
    pub ports: Ports,
    pub auth: auth::Auth,
    pub config: Config,
    /// The data version as followed by LISTEN; `None` while unknown.
    pub data_version: watch::Receiver<Option<i64>>,
    /// In-process copy of recent cache entries, in front of the cache port.
    pub hot: results::HotCache,
    /// How the last pack reload went (shown by `/health`).
    pub reload_status: std::sync::Mutex<reload::ReloadStatus>,
    /// The data dictionary of the web catalog, read once.
    pub dictionary: tokio::sync::OnceCell<Vec<quarry_db::docs::TableDoc>>,
    /// What each pooled reader connection's session was last set to (see
    /// [`quarry_db::run_light`]), and which operations' answers were last cut
    /// by their row cap.
    pub sessions: call::Sessions,
    /// The writer role, for people's decisions about links (`POST /admin/links/...`);
    /// `None` where the runtime holds only the reader (the AWS API function).
    pub writer: Option<Pool>,
}

/// A connection pool for `url`.
pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
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
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

impl AppState {
    /// Assembles the state from its parts (each runtime picks the ports). A
    /// `data_version` receiver that stays `None` makes every request read the
    /// version from the database (right where no listener can run, as in Lambda).
    pub fn new(
        packs: PackSet,
        reader: Pool,
        ports: Ports,
        auth: auth::Auth,
        config: Config,
        data_version: watch::Receiver<Option<i64>>,
    ) -> AppState {
        AppState {
            packs: ArcSwap::from_pointee(packs),
            reader,
            ports,
            auth,
            config,
            data_version,
            hot: results::HotCache::new(64 << 20),
            reload_status: std::sync::Mutex::new(reload::ReloadStatus::initial()),
            dictionary: tokio::sync::OnceCell::new(),
            sessions: call::Sessions::default(),
            writer: None,
        }
    }

    pub fn packs(&self) -> Arc<PackSet> {
        self.packs.load_full()
    }

    /// The current data version: from the listener, else read from the database.
    pub async fn current_data_version(&self) -> Result<i64, ApiError> {
        if let Some(v) = *self.data_version.borrow() {
            return Ok(v);
        }
        let c = self
            .reader
            .get()
            .await
            .map_err(|_| ApiError::DatabaseUnavailable)?;
        Ok(
            c.query_one("SELECT version FROM canonical.data_version", &[])
                .await
                .map_err(|_| ApiError::DatabaseUnavailable)?
                .get(0),
        )
    }
}

/// The router with its layers.
pub fn router(state: Arc<AppState>) -> Router {
    // Install the metrics recorder before the first request records anything.
    let _ = metrics_http::handle();
    let cfg = &state.config.api;
    let cors = cors_layer(&cfg.cors_allowed_origins);
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/operations", get(operations))
        .route("/operations/{name}", get(operation))
        .route(
            "/analytics",
            get(analytics::analytics_get).post(analytics::analytics_post),
        )
        .route(
            "/analytics/{name}",
            get(analytics::named_get).post(analytics::named_post),
        )
        .route("/analytics/jobs", post(jobs::submit))
        .route("/analytics/jobs/{id}", get(jobs::status))
        .route("/analytics/jobs/{id}/result", get(jobs::result))
        .route("/results/{*key}", get(jobs::signed_object))
        .route("/ingest/files", get(ledger::files))
        .route("/admin/links", get(companies::list_links))
        .route("/admin/links/confirm", post(companies::confirm))
        .route("/admin/links/reject", post(companies::reject))
        .route("/admin/organizations/{id}/split", post(companies::split))
        .route("/companies/{id}", get(companies::company))
        .route("/ingest/quarantine", get(ledger::quarantine))
        .route("/openapi.json", get(openapi::handler))
        .route("/metrics", get(metrics_http::handler))
        .merge(ui::routes())
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; GET /openapi.json describes the API".into())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), auth::layer))
        .layer(from_fn(metrics_http::layer))
        .with_state(state.clone());
    if cfg.compress_answers {
        // gzip, br or zstd as the client's Accept-Encoding asks (answers are
        // text: JSON, CSV, NDJSON; a 9 MB answer shrinks to well under a tenth).
        r = r.layer(tower_http::compression::CompressionLayer::new());
    }
    let mut r = r.layer(DefaultBodyLimit::max(cfg.max_body_bytes)).layer(
        tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_secs(
            cfg.body_read_timeout_seconds,
        )),
    );
    if let Some(c) = cors {
        r = r.layer(c);
    }
    r.layer(from_fn(request_scope))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                header::HeaderName::from_static("x-api-key"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                header::LINK,
                header::HeaderName::from_static("x-cache"),
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("x-total-count"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Makes the request id available to problem responses (their `instance`).
async fn request_scope(req: Request, next: Next) -> Response {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or("")
        .to_string();
    problem::REQUEST_ID.scope(id, next.run(req)).await
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let db = match tokio::time::timeout(Duration::from_secs(3), st.reader.get()).await {
        Ok(Ok(c)) => c
            .query_one("SELECT version FROM canonical.data_version", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .ok(),
        _ => None,
    };
    let packs = st.packs();
    let body = contract::Health {
        status: if db.is_some() {
            contract::HealthStatus::Ok
        } else {
            contract::HealthStatus::Degraded
        },
        database: if db.is_some() {
            contract::DatabaseReach::Reachable
        } else {
            contract::DatabaseReach::Unreachable
        },
        data_version: db,
        operations: packs.len() as u64,
        reload: st.reload_status.lock().map(|r| r.clone()).ok(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let code = if db.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (code, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The catalog entry of one operation.
pub fn describe(p: &Pack) -> Value {
    serde_json::to_value(contract::OperationDoc::of(p)).unwrap_or(Value::Null)
}

async fn operations(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<auth::Principal>,
) -> Result<Json<contract::OperationList>, ApiError> {
    who.require(auth::Scope::Read, "listing operations")?;
    let packs = st.packs();
    Ok(Json(contract::OperationList {
        operations: packs.all().map(|p| contract::OperationDoc::of(p)).collect(),
    }))
}

async fn operation(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<auth::Principal>,
    Path(name): Path<String>,
) -> Result<Json<contract::OperationDoc>, ApiError> {
    who.require(auth::Scope::Read, "reading an operation")?;
    let packs = st.packs();
    packs
        .get(&name)
        .map(|p| Json(contract::OperationDoc::of(p)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "there is no operation `{}`; GET /operations lists them",
                name.chars().take(80).collect::<String>()
            ))
        })
}
