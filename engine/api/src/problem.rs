//! One error type for every failure, rendered as `application/problem+json`
//! (RFC 9457). Callers never see internal error text.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quarry_core::packs::params::ParamError;
use serde::Serialize;

/// An API error.
#[derive(Debug)]
pub enum ApiError {
    UnknownOperation {
        name: String,
        known: Vec<String>,
    },
    MalformedBody(String),
    InvalidParameters(Vec<ParamError>),
    QueryTooLong(usize),
    Forbidden(String),
    Timeout,
    DatabaseUnavailable,
    /// A database error caused by the caller's own SQL (custom_complex_query).
    Sql {
        sqlstate: String,
        message: String,
    },
    NotFound(String),
    /// No or an invalid credential (401).
    Unauthorized(String),
    /// Too many requests for this key (429).
    RateLimited {
        retry_after_secs: u64,
    },
    /// The resource exists but is not in a state that allows this (409).
    Conflict {
        detail: String,
        retry_after_secs: Option<u64>,
    },
    /// Caller SQL returned a column type results cannot carry (400).
    UnsupportedResult(String),
    /// The body is larger than the limit (413).
    PayloadTooLarge(usize),
    /// The request body did not arrive in time (408).
    BodyTimeout(u64),
    /// The answer passed the hard cap on its size (422): a caller-fixable
    /// condition (narrower parameters), never a partial answer.
    AnswerTooLarge {
        cap: u64,
        rows: u64,
    },
    /// The path exists but not with this method (405).
    MethodNotAllowed,
    /// `Accept` names no format the answer can take (406).
    NotAcceptable(String),
    /// A page cursor whose snapshot has expired (410).
    CursorExpired,
    /// A result link that is invalid or expired (403).
    LinkExpired,
    /// This runtime cannot do what was asked (503), and the message says where it can be done.
    Unavailable(String),
    /// Anything else: logged with the request id, shown as a generic 500.
    Internal(anyhow::Error),
}

/// An RFC 9457 problem document: every error the API answers.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// A relative URI naming the kind of problem (`/problems/invalid-parameters`, ...).
    #[serde(rename = "type")]
    kind: String,
    /// A short, stable summary of the kind.
    title: &'static str,
    /// The HTTP status code.
    status: u16,
    /// What went wrong here and what to do next.
    detail: String,
    /// This request (`urn:quarry:request:ID`, also in `X-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// One entry per invalid parameter (422).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ParamError>,
}

tokio::task_local! {
    /// The current request's id, so that every problem names its `instance`.
    pub static REQUEST_ID: String;
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use ApiError::*;
        match self {
            UnknownOperation { name, known } => (
                StatusCode::BAD_REQUEST,
                "unknown-operation",
                "Unknown operation",
                format!("there is no operation `{name}`; GET /operations lists them: {}", known.join(", ")),
            ),
            MalformedBody(m) => (StatusCode::BAD_REQUEST, "malformed-request", "Malformed request", m.clone()),
            InvalidParameters(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-parameters",
                "Invalid parameters",
                "one or more parameters are missing or invalid; see `errors`, and GET /operations/{name} for what each accepts".into(),
            ),
            QueryTooLong(n) => (
                StatusCode::URI_TOO_LONG,
                "query-too-long",
                "Query string too long",
                format!("the query string has more than {n} bytes; send parameters with POST /analytics instead"),
            ),
            Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", m.clone()),
            Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "query-timeout",
                "Query timed out",
                "the operation ran past its statement timeout; narrow the parameters or submit it as a job".into(),
            ),
            DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "Database unavailable",
                "the database cannot be reached right now; retry shortly".into(),
            ),
            Sql { sqlstate, message } => (
                StatusCode::BAD_REQUEST,
                "sql-error",
                "SQL error",
                format!("the database rejected the query: {message} (SQLSTATE {sqlstate})"),
            ),
            NotFound(m) => (StatusCode::NOT_FOUND, "not-found", "Not found", m.clone()),
            Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", m.clone()),
            RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!("this key has used its request rate; retry after {retry_after_secs} s"),
            ),
            Conflict { detail, .. } => (StatusCode::CONFLICT, "conflict", "Conflict", detail.clone()),
            UnsupportedResult(m) => (
                StatusCode::BAD_REQUEST,
                "unsupported-result-type",
                "Unsupported result type",
                m.clone(),
            ),
            PayloadTooLarge(n) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                format!("the request body has more than {n} bytes; send fewer or smaller parameters"),
            ),
            BodyTimeout(secs) => (
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body too slow",
                format!("the request body did not arrive within {secs} s (api.body_read_timeout_seconds); send it at once"),
            ),
            AnswerTooLarge { cap, rows } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "answer-too-large",
                "Answer too large",
                format!(
                    "the answer passed the limit of {cap} bytes (api.max_answer_bytes) after {rows} rows; \
                     ask for it in pages (?page_size=1000, then follow `next`), streamed as CSV or NDJSON \
                     (Accept: text/csv or application/x-ndjson), or as a job (POST /analytics/jobs); \
                     or narrow it with the operation's parameters"
                ),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this path does not accept that method; GET /openapi.json lists the methods of every path".into(),
            ),
            NotAcceptable(asked) => (
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                "Not acceptable",
                format!(
                    "an answer can be application/json, application/x-ndjson or text/csv; Accept asked for {}",
                    asked.chars().take(400).collect::<String>()
                ),
            ),
            CursorExpired => (
                StatusCode::GONE,
                "cursor-expired",
                "Cursor expired",
                "the snapshot behind this cursor has expired (api.page_ttl_seconds); ask for the first page again without `cursor`".into(),
            ),
            LinkExpired => (
                StatusCode::FORBIDDEN,
                "link-expired",
                "Link invalid or expired",
                "this result link is invalid or has expired; GET /analytics/jobs/{id}/result again for a fresh one".into(),
            ),
            Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable-here",
                "Not available on this server",
                m.clone(),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal error",
                "the server failed to answer; the error is logged with this request's id (x-request-id)".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
        let (status, slug, title, detail) = self.parts();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Conflict {
                retry_after_secs, ..
            } => *retry_after_secs,
            ApiError::DatabaseUnavailable => Some(2),
            _ => None,
        };
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let errors = match self {
            ApiError::InvalidParameters(e) => e,
            _ => Vec::new(),
        };
        let body = Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            instance: REQUEST_ID
                .try_with(|id| format!("urn:quarry:request:{id}"))
                .ok(),
            errors,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        if unauthorized {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"quarry\""),
            );
        }
        resp
    }
}

impl From<quarry_db::RunError> for ApiError {
    fn from(e: quarry_db::RunError) -> Self {
        use quarry_db::{QueryError, RunError};
        match e {
            RunError::Params(p) => ApiError::InvalidParameters(p),
            RunError::CustomSqlDisabled(name) => ApiError::Forbidden(format!(
                "operation `{name}` runs caller-supplied SQL and is disabled on this server"
            )),
            RunError::Render(m) => ApiError::Internal(anyhow::anyhow!("render: {m}")),
            RunError::Query(QueryError::Timeout(_)) => ApiError::Timeout,
            RunError::Query(QueryError::Unavailable(_)) => ApiError::DatabaseUnavailable,
            RunError::Query(QueryError::Sql {
                sqlstate, message, ..
            }) => ApiError::Sql { sqlstate, message },
            RunError::Query(e @ QueryError::UnsupportedType { .. }) => ApiError::Internal(e.into()),
            RunError::Query(QueryError::TooLarge { cap, rows }) => {
                ApiError::AnswerTooLarge { cap, rows }
            }
        }
    }
}
