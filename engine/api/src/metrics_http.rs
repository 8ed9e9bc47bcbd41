//! Prometheus metrics: a process-wide recorder, a layer that counts and times
//! every request by route, and `GET /metrics`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process; later calls return the same handle.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0, 60.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            metrics::describe_counter!(
                "quarry_http_requests_total",
                "HTTP requests by route, method and status."
            );
            metrics::describe_histogram!(
                "quarry_http_request_duration_seconds",
                "HTTP request latency by route."
            );
            metrics::describe_counter!(
                "quarry_cache_requests_total",
                "Cache lookups by result (hit, miss, not_modified)."
            );
            metrics::describe_counter!(
                "quarry_jobs_total",
                "Job events: submitted, succeeded, failed, retried."
            );
            metrics::describe_histogram!(
                "quarry_query_seconds",
                "Database time of operations, by operation."
            );
            metrics::describe_counter!(
                "quarry_auth_failures_total",
                "Requests refused for missing or invalid credentials."
            );
            metrics::describe_counter!(
                "quarry_rate_limited_total",
                "Requests refused by the rate limiter."
            );
            Some(handle)
        })
        .as_ref()
}

/// Counts and times each request by its route template (never the raw path).
pub async fn layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("quarry_http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("quarry_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics` in the Prometheus text format (read scope).
pub async fn handler(
    State(_st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    who.require(Scope::Read, "reading metrics")?;
    let body = handle().map(|h| h.render()).unwrap_or_default();
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}
