//! Jobs: submission and status handlers, the steps of one attempt (claim,
//! execute, store the result, finish), and the in-process runner that drives
//! them locally. On AWS, Step Functions drives the same steps.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use chrono::Utc;
use quarry_core::jobs::{Backoff, Event, Job, JobError, JobResult, JobState, ResultFormat};
use quarry_core::packs::params::InputStyle;
use quarry_core::ports::{PortError, PortResult, WorkflowStarter};
use quarry_core::Pack;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::auth::{Principal, Scope};
use crate::call::{self, ExecError};
use crate::{results, ApiError, AppState};

/// The local workflow starter: hands job ids to the in-process runner.
pub struct LocalStarter {
    tx: mpsc::UnboundedSender<String>,
}

/// A starter and the receiving end the runner takes.
pub fn local_starter() -> (LocalStarter, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (LocalStarter { tx }, rx)
}

#[async_trait::async_trait]
impl WorkflowStarter for LocalStarter {
    async fn start(&self, job: &Job) -> PortResult<()> {
        // Starting twice is harmless: the runner's claim is conditional.
        self.tx
            .send(job.id.clone())
            .map_err(|_| PortError::Unavailable("the job runner has stopped".into()))
    }
}

fn port_error(e: PortError) -> ApiError {
    match e {
        PortError::Unavailable(m) => {
            tracing::error!(error = %m, "job store unavailable");
            ApiError::DatabaseUnavailable
        }
        other => ApiError::Internal(anyhow::anyhow!("job store: {other}")),
    }
}

/// Validates and persists a job, then starts it.
pub async fn submit_job(
    st: &AppState,
    who: &Principal,
    pack: &Pack,
    input: &Map<String, Value>,
    style: InputStyle,
    format: ResultFormat,
) -> Result<Job, ApiError> {
    let resolved = pack
        .resolve(input, style)
        .map_err(ApiError::InvalidParameters)?;
    // Stored in canonical JSON form, so the job runs with exactly what was validated.
    let params: Map<String, Value> = resolved
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let mut job = Job::new(
        uuid::Uuid::new_v4().to_string(),
        pack.spec.name.clone(),
        pack.spec.version.clone(),
        params,
        format,
        st.config.jobs.max_attempts,
        Utc::now(),
    );
    job.owner = who.key_id.clone();
    job.request_id = crate::problem::REQUEST_ID.try_with(Clone::clone).ok();
    st.ports.jobs.create(&job).await.map_err(port_error)?;
    metrics::counter!("quarry_jobs_total", "event" => "submitted").increment(1);
    tracing::info!(job_id = %job.id, operation = %job.operation, "job submitted");
    if let Err(e) = st.ports.starter.start(&job).await {
        // The job is persisted and queued: a runner's poll (or recovery) picks it up.
        tracing::warn!(job_id = %job.id, error = %e, "could not start the job now; it stays queued");
    }
    Ok(job)
}

/// The status document of a job.
pub fn status_body(job: &Job) -> crate::contract::JobStatus {
    crate::contract::JobStatus::of(job)
}

/// 202 Accepted with `Location` and the job's status.
pub fn accepted(job: &Job, routed: bool) -> Response {
    let mut body = status_body(job);
    if routed {
        body.message = Some(format!(
            "operation `{}` is heavy, so it runs as a job; poll GET /analytics/jobs/{} until it succeeds",
            job.operation, job.id
        ));
    }
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/analytics/jobs/{}", job.id)) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /analytics/jobs`.
pub async fn submit(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(Scope::Jobs, "submitting a job")?;
    let body = call::body_bytes(&st, body)?;
    let req = call::parse_body(&headers, &body)?;
    let pack = call::authorize(&st, &who, &req.operation)?;
    let job = submit_job(
        &st,
        &who,
        &pack,
        &req.parameters,
        InputStyle::Json,
        req.format.unwrap_or_default(),
    )
    .await?;
    let mut resp = accepted(&job, false);
    call::mark_deprecation(&mut resp, &pack);
    Ok(resp)
}

/// Loads a job the caller may see (its owner, or an admin); 404 otherwise, so ids
/// of other keys' jobs are not confirmed.
async fn visible_job(st: &AppState, who: &Principal, id: &str) -> Result<Job, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "there is no job `{}`; job ids are returned by POST /analytics/jobs",
            id.chars().take(64).collect::<String>()
        ))
    };
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found());
    }
    let job = st
        .ports
        .jobs
        .get(id)
        .await
        .map_err(port_error)?
        .ok_or_else(not_found)?;
    if who.has(Scope::Admin) || job.owner == who.key_id {
        Ok(job)
    } else {
        Err(not_found())
    }
}

/// `GET /analytics/jobs/{id}`.
pub async fn status(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Scope::Jobs, "reading a job")?;
    let job = visible_job(&st, &who, &id).await?;
    let mut resp = Json(status_body(&job)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !job.state.is_terminal() {
        let wait = (job.next_attempt_at - Utc::now())
            .num_seconds()
            .clamp(1, 60);
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    Ok(resp)
}

/// `GET /analytics/jobs/{id}/result`: inline rows, or a redirect to a signed link.
pub async fn result(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Scope::Jobs, "reading a job's result")?;
    let job = visible_job(&st, &who, &id).await?;
    // The job's own format unless Accept names another one: an inline result is
    // rendered in any of them, a stored one exists in its own format only.
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = match accept {
        Some(a) if !results::accepts(a, job.format) => {
            results::negotiate(Some(a)).map_err(ApiError::NotAcceptable)?
        }
        _ => job.format,
    };
    match (&job.state, &job.result) {
        (JobState::Succeeded, Some(JobResult::Inline { body })) => {
            let bytes = results::render(body, format).map_err(ApiError::Internal)?;
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(format.content_type()) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(header::VARY, HeaderValue::from_static("accept"));
            Ok(resp)
        }
        (JobState::Succeeded, Some(JobResult::Stored { .. })) if format != job.format => {
            Err(ApiError::NotAcceptable(format!(
                "{} (this result is stored as {} only: ask with Accept: {}, or submit the job again with \"format\": \"{}\")",
                accept.unwrap_or("").chars().take(120).collect::<String>(),
                job.format.extension(),
                job.format.content_type(),
                format.extension()
            )))
        }
        (JobState::Succeeded, Some(JobResult::Stored { key, .. })) => {
            let ttl = Duration::from_secs(st.config.jobs.link_ttl_seconds);
            let url =
                st.ports.objects.signed_url(key, ttl).await.map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("signing a result link: {e}"))
                })?;
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&url) {
                h.insert(header::LOCATION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(resp)
        }
        (JobState::Failed, _) => Err(ApiError::Conflict {
            detail: format!(
                "job {} failed and has no result: {}",
                job.id,
                job.error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("no reason recorded")
            ),
            retry_after_secs: None,
        }),
        _ => Err(ApiError::Conflict {
            detail: format!(
                "job {} is {}; its result is available once it has succeeded",
                job.id,
                job.state.as_str()
            ),
            retry_after_secs: Some(1),
        }),
    }
}

#[derive(Deserialize)]
pub struct SignedQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

/// `GET /results/{key}?expires=..&signature=..`: objects of the local store.
pub async fn signed_object(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<SignedQuery>,
) -> Result<Response, ApiError> {
    let (Some(expires), Some(sig)) = (q.expires, q.signature.as_deref()) else {
        return Err(ApiError::LinkExpired);
    };
    if !st.ports.objects.verify_signed(&key, expires, sig) {
        return Err(ApiError::LinkExpired);
    }
    let gone = || {
        ApiError::NotFound(
            "the result has been deleted (results are kept for a limited time); submit the job again"
                .into(),
        )
    };
    let body = match st.ports.objects.local_file(&key) {
        // A file: streamed 64 KiB at a time, whatever its size.
        Some(path) => match tokio::fs::File::open(&path).await {
            Ok(file) => axum::body::Body::from_stream(futures_util::stream::try_unfold(
                file,
                |mut f| async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = f.read(&mut buf).await?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>((n > 0).then(|| (Bytes::from(buf), f)))
                },
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
            Err(e) => return Err(ApiError::Internal(anyhow::anyhow!("reading {key}: {e}"))),
        },
        None => axum::body::Body::from(
            st.ports
                .objects
                .get(&key)
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading {key}: {e}")))?
                .ok_or_else(gone)?,
        ),
    };
    let format = key
        .rsplit('.')
        .next()
        .and_then(ResultFormat::parse)
        .unwrap_or_default();
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(format.content_type()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let file = key.rsplit('/').next().unwrap_or("result");
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------
// The steps of one attempt. Step Functions calls them one by one on AWS; the
// local runner calls `run_attempt`, which chains them.

/// Step 1: claim a queued job (queued → running, attempts + 1, leased).
/// `Ok(None)` when someone else claimed it first or it is not due.
pub async fn claim(st: &AppState, job: &Job) -> PortResult<Option<Job>> {
    if job.state != JobState::Queued {
        return Ok(None);
    }
    let running = job.claimed(
        Utc::now(),
        Duration::from_secs(st.config.jobs.lease_seconds),
    );
    match st.ports.jobs.transition(job, &running).await {
        Ok(()) => Ok(Some(running)),
        Err(PortError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rows of an executed attempt, before they are stored.
pub struct Executed {
    pub body: Value,
    pub data_version: i64,
    /// The result, when it had more rows than a job keeps inline: written to
    /// object storage in the job's format as its rows were read, so memory
    /// held one batch of them (`body` is then `null`).
    pub stored: Option<JobResult>,
}

/// Rows read from the database per batch while a job's result is written.
const BATCH: usize = 2000;

/// Step 2: run the operation. Errors are classified transient or permanent.
pub async fn execute(st: &AppState, job: &Job) -> Result<Executed, JobError> {
    let packs = st.packs();
    let pack = packs
        .for_job(&job.operation, &job.operation_version)
        .cloned()
        .ok_or_else(|| JobError {
        code: "operation_removed".into(),
        message: format!(
            "operation `{}` (major version of {}) no longer exists on this server; submit a current operation",
            job.operation, job.operation_version
        ),
        transient: false,
    })?;
    if pack.spec.raw_sql {
        // Caller-supplied SQL: in its own transaction, the connection reset
        // after (its row cap is small enough to hold).
        return match call::execute(st, &pack, &job.parameters, InputStyle::Json, None).await {
            Ok((bytes, data_version)) => Ok(Executed {
                body: serde_json::from_slice(&bytes).map_err(|e| JobError {
                    code: "internal".into(),
                    message: format!("reading the answer back: {e}"),
                    transient: false,
                })?,
                data_version,
                stored: None,
            }),
            Err(e) => Err(classify(&pack, e)),
        };
    }
    execute_streaming(st, job, &pack)
        .await
        .map_err(|e| classify(&pack, e))
}

/// Runs `pack` through a cursor: a result of at most `jobs.inline_max_rows`
/// rows becomes the answer document as a synchronous call makes it; a larger
/// one is written batch by batch to `jobs/<id>.<format>` (no byte cap: the
/// row cap applies, as for a streamed answer). A failure midway leaves no
/// object behind.
async fn execute_streaming(st: &AppState, job: &Job, pack: &Pack) -> Result<Executed, ExecError> {
    let started = std::time::Instant::now();
    let (resolved, query, limits) = quarry_db::ops::prepare(
        pack,
        &job.parameters,
        InputStyle::Json,
        quarry_db::CallOptions {
            max_bytes: Some(st.config.api.max_answer_bytes),
            ..Default::default()
        },
    )
    .map_err(ExecError::Run)?;
    let query_error = |e: quarry_db::QueryError| ExecError::Run(quarry_db::RunError::Query(e));
    let mut reader = st.reader.get().await.map_err(|_| ExecError::Pool)?;
    let data_version = call::data_version_before(st, &reader).await?;
    let stmt = reader
        .prepare_typed_cached(&query.sql, &quarry_db::bind_types(&query))
        .await
        .map_err(|e| query_error(e.into()))?;
    let client: &mut tokio_postgres::Client = &mut reader;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| query_error(e.into()))?;
    let mut cursor = quarry_db::open_cursor(&tx, Some(stmt), &query, limits)
        .await
        .map_err(query_error)?;
    let inline = st.config.jobs.inline_max_rows;
    let mut head: Vec<Vec<Value>> = Vec::new();
    while head.len() as u64 <= inline {
        match cursor.next_batch(BATCH).await.map_err(query_error)? {
            Some(rows) => head.extend(rows),
            None => {
                let out = quarry_db::QueryOutput {
                    columns: cursor.columns.clone(),
                    rows: head,
                    truncated: cursor.truncated,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                };
                let body = call::answer_body(pack, &resolved, data_version, out)?;
                return Ok(Executed {
                    body,
                    data_version,
                    stored: None,
                });
            }
        }
    }
    let key = format!("jobs/{}.{}", job.id, job.format.extension());
    let mut w = st
        .ports
        .objects
        .writer(&key, job.format.content_type())
        .await
        .map_err(|e| ExecError::Store(e.to_string()))?;
    let columns = cursor.columns.clone();
    let written = async {
        let store = |e: PortError| ExecError::Store(e.to_string());
        match job.format {
            ResultFormat::Json => {
                let head_doc = JsonHead {
                    operation: &pack.spec.name,
                    version: &pack.spec.version,
                    parameters: resolved
                        .0
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_json()))
                        .collect(),
                    data_version,
                    columns: call::answer_columns(&columns),
                };
                let mut bytes = serde_json::to_vec(&head_doc).map_err(ExecError::Encode)?;
                bytes.pop(); // the closing brace: the rows and the counts follow
                bytes.extend_from_slice(b",\"rows\":[");
                w.write(&bytes).await.map_err(store)?;
            }
            other => w
                .write(&results::header_bytes(other, &columns))
                .await
                .map_err(store)?,
        }
        let mut first = true;
        let mut batch = Some(head);
        while let Some(rows) = batch {
            let bytes = match job.format {
                ResultFormat::Json => results::json_rows_bytes(&columns, &rows, first),
                other => results::rows_bytes(other, &columns, &rows),
            };
            first = false;
            w.write(&bytes).await.map_err(store)?;
            batch = cursor.next_batch(BATCH).await.map_err(query_error)?;
        }
        if job.format == ResultFormat::Json {
            let tail = format!(
                "],\"row_count\":{},\"truncated\":{},\"elapsed_ms\":{}}}",
                cursor.rows_read(),
                cursor.truncated,
                started.elapsed().as_millis()
            );
            w.write(tail.as_bytes()).await.map_err(store)?;
        }
        Ok::<_, ExecError>(())
    }
    .await;
    if let Err(e) = written {
        w.abort().await;
        return Err(e);
    }
    let bytes = w
        .finish()
        .await
        .map_err(|e| ExecError::Store(e.to_string()))?;
    metrics::histogram!("quarry_query_seconds", "operation" => pack.spec.name.clone())
        .record(started.elapsed().as_secs_f64());
    tracing::info!(job_id = %job.id, rows = cursor.rows_read(), bytes, "a large job result was written as it was read");
    Ok(Executed {
        body: Value::Null,
        data_version,
        stored: Some(JobResult::Stored {
            key,
            format: job.format,
            rows: cursor.rows_read(),
            bytes,
            truncated: cursor.truncated,
        }),
    })
}

/// The fields of a JSON answer before its rows, for a result written as it is read.
#[derive(serde::Serialize)]
struct JsonHead<'a> {
    operation: &'a str,
    version: &'a str,
    parameters: Map<String, Value>,
    data_version: i64,
    columns: Vec<crate::contract::AnswerColumn>,
}

fn classify(pack: &Pack, e: ExecError) -> JobError {
    use quarry_db::{QueryError, RunError};
    let (code, message, transient) = match e {
        ExecError::Pool => (
            "database_unavailable",
            "no database connection was available".to_string(),
            true,
        ),
        ExecError::Run(RunError::Params(p)) => (
            "invalid_parameters",
            format!(
                "the parameters are no longer valid for this operation: {}",
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            false,
        ),
        ExecError::Run(RunError::CustomSqlDisabled(n)) => (
            "forbidden",
            format!("operation `{n}` runs caller-supplied SQL and is disabled on this server"),
            false,
        ),
        ExecError::Run(RunError::Render(m)) => {
            tracing::error!(error = %m, operation = %pack.spec.name, "render failed in a job");
            (
                "internal",
                "the operation could not be prepared".to_string(),
                false,
            )
        }
        ExecError::Run(RunError::Query(QueryError::Timeout(d))) => (
            "timeout",
            format!(
                "the query ran past the operation's timeout of {} s; narrow the parameters",
                d.as_secs()
            ),
            false,
        ),
        ExecError::Run(RunError::Query(QueryError::Unavailable(e))) => {
            tracing::warn!(error = %e, "database connection lost during a job");
            (
                "database_unavailable",
                "the database connection was lost".to_string(),
                true,
            )
        }
        ExecError::Run(RunError::Query(QueryError::Sql {
            sqlstate,
            message,
            transient,
            ..
        })) => {
            if transient {
                (
                    "database_unavailable",
                    format!("a transient database error (SQLSTATE {sqlstate})"),
                    true,
                )
            } else if pack.spec.raw_sql {
                (
                    "sql_error",
                    format!("the database rejected the query: {message} (SQLSTATE {sqlstate})"),
                    false,
                )
            } else {
                tracing::error!(sqlstate = %sqlstate, error = %message, operation = %pack.spec.name, "operation SQL failed in a job");
                (
                    "internal",
                    format!("the operation failed in the database (SQLSTATE {sqlstate}); the server log has details"),
                    false,
                )
            }
        }
        ExecError::Run(RunError::Query(e @ QueryError::UnsupportedType { .. })) => {
            ("internal", e.to_string(), false)
        }
        ExecError::Store(e) => {
            tracing::error!(error = %e, operation = %pack.spec.name, "object storage refused a write");
            (
                "storage_unavailable",
                "the result could not be stored".to_string(),
                true,
            )
        }
        ExecError::Encode(e) => {
            tracing::error!(error = %e, operation = %pack.spec.name, "encoding a job's answer failed");
            (
                "internal",
                "the answer could not be encoded".to_string(),
                false,
            )
        }
        ExecError::Run(RunError::Query(QueryError::TooLarge { cap, rows })) => (
            "answer_too_large",
            format!(
                "the answer passed the limit of {cap} bytes (api.max_answer_bytes) after {rows} rows; narrow the parameters"
            ),
            false,
        ),
    };
    JobError {
        code: code.into(),
        message,
        transient,
    }
}

/// Step 3: keep the result — inline when small, else as an object in `format`.
pub async fn store_result(st: &AppState, job: &Job, ex: Executed) -> Result<JobResult, JobError> {
    if let Some(stored) = ex.stored {
        return Ok(stored);
    }
    let rows = ex
        .body
        .get("row_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let truncated = ex
        .body
        .get("truncated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // The answer's JSON, made once for both uses below: the cache's copy and
    // the size that decides whether the result is kept inline.
    let json = (rows <= st.config.jobs.inline_max_rows)
        .then(|| serde_json::to_vec(&ex.body).ok().map(Bytes::from))
        .flatten();
    // A cacheable operation's answer also fills the cache for synchronous calls.
    let packs = st.packs();
    if let (Some(pack), Some(b)) = (packs.for_job(&job.operation, &job.operation_version), &json) {
        if pack.spec.cache_ttl_seconds > 0 {
            if let Ok(params) = pack.resolve(&job.parameters, InputStyle::Json) {
                let key =
                    quarry_core::packs::cache::cache_key(pack, &params, Some(ex.data_version));
                let ttl = Duration::from_secs(pack.spec.cache_ttl_seconds);
                st.hot.put(key.clone(), b.clone(), ttl);
                let _ = st
                    .ports
                    .cache
                    .put(
                        &key,
                        &pack.spec.name,
                        &quarry_core::ports::CachedValue::Inline(b.clone()),
                        ttl,
                    )
                    .await;
            }
        }
    }
    let small = json
        .as_ref()
        .is_some_and(|b| b.len() <= st.config.jobs.inline_max_bytes);
    if small {
        return Ok(JobResult::Inline { body: ex.body });
    }
    let bytes = results::render(&ex.body, job.format).map_err(|e| {
        tracing::error!(error = %e, job_id = %job.id, "could not serialize a result");
        JobError {
            code: "internal".into(),
            message: "the result could not be serialized".into(),
            transient: false,
        }
    })?;
    let key = format!("jobs/{}.{}", job.id, job.format.extension());
    let len = bytes.len() as u64;
    st.ports
        .objects
        .put(&key, bytes, job.format.content_type())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, job_id = %job.id, "storing a result failed");
            JobError {
                code: "storage_unavailable".into(),
                message: "the result could not be stored".into(),
                transient: true,
            }
        })?;
    Ok(JobResult::Stored {
        key,
        format: job.format,
        rows,
        bytes: len,
        truncated,
    })
}

/// Step 4: record the outcome (succeeded, re-queued after backoff, or failed)
/// and notify when the job is finished.
pub async fn finish(
    st: &AppState,
    running: &Job,
    outcome: Result<JobResult, JobError>,
) -> PortResult<Job> {
    let now = Utc::now();
    let next = match outcome {
        Ok(r) => running.succeeded(now, r),
        Err(e) => {
            let b = Backoff {
                base: Duration::from_millis(st.config.jobs.backoff_base_ms),
                max: Duration::from_millis(st.config.jobs.backoff_max_ms),
            };
            running.after_failure(now, e, b.delay(running.attempts, rand::random::<f64>()))
        }
    };
    st.ports.jobs.transition(running, &next).await?;
    match next.state {
        JobState::Succeeded => {
            metrics::counter!("quarry_jobs_total", "event" => "succeeded").increment(1)
        }
        JobState::Failed => {
            metrics::counter!("quarry_jobs_total", "event" => "failed").increment(1)
        }
        _ => metrics::counter!("quarry_jobs_total", "event" => "retried").increment(1),
    }
    if next.state == JobState::Queued {
        tracing::warn!(job_id = %next.id, attempt = next.attempts, error = ?next.error, retry_at = %next.next_attempt_at, "job attempt failed; retrying");
    } else {
        tracing::info!(job_id = %next.id, state = next.state.as_str(), attempts = next.attempts, "job finished");
        notify_finished(st, &next).await;
    }
    Ok(next)
}

async fn notify_finished(st: &AppState, job: &Job) {
    let ev = Event::for_job(uuid::Uuid::new_v4().to_string(), job, Utc::now());
    if let Err(e) = st.ports.notifier.publish(&ev).await {
        tracing::error!(error = %e, job_id = %job.id, "could not publish the job event");
    }
}

/// One attempt, start to end, with the lease renewed while it runs.
pub async fn run_attempt(st: Arc<AppState>, job: Job) {
    let running = match claim(&st, &job).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job_id = %job.id, error = %e, "could not claim a job");
            return;
        }
    };
    tracing::info!(job_id = %running.id, attempt = running.attempts, operation = %running.operation, "job attempt started");
    let lease = Duration::from_secs(st.config.jobs.lease_seconds);
    let heartbeat = {
        let st = st.clone();
        let running = running.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let mut renewed = running.clone();
                renewed.lease_expires_at =
                    Some(Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default());
                if let Err(e) = st.ports.jobs.transition(&running, &renewed).await {
                    tracing::warn!(job_id = %running.id, error = %e, "could not renew the job's lease");
                }
            }
        })
    };
    let outcome = match execute(&st, &running).await {
        Ok(ex) => store_result(&st, &running, ex).await,
        Err(e) => Err(e),
    };
    heartbeat.abort();
    if let Err(e) = finish(&st, &running, outcome).await {
        tracing::error!(job_id = %running.id, error = %e, "could not record a job's outcome; recovery will retry it when its lease expires");
    }
}

/// Re-queues (or fails) jobs whose runner vanished.
pub async fn recover(st: &AppState) -> PortResult<usize> {
    let now = Utc::now();
    let mut n = 0;
    for job in st.ports.jobs.expired(now).await? {
        let next = job.recovered(now);
        match st.ports.jobs.transition(&job, &next).await {
            Ok(()) => {
                n += 1;
                tracing::warn!(job_id = %job.id, state = next.state.as_str(), "recovered an interrupted job");
                if next.state == JobState::Failed {
                    metrics::counter!("quarry_jobs_total", "event" => "failed").increment(1);
                    notify_finished(st, &next).await;
                }
            }
            Err(PortError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The in-process runner: runs due jobs with bounded concurrency, woken by
/// submissions, by each finished attempt (a freed slot takes the next queued
/// job at once: a backlog drains at the speed of the work, not of the poll) and
/// by a poll that also recovers interrupted jobs and picks up retries whose
/// back-off has passed.
pub async fn runner(st: Arc<AppState>, mut rx: mpsc::UnboundedReceiver<String>) {
    let permits = Arc::new(Semaphore::new(st.config.jobs.concurrency));
    let poll = Duration::from_millis(st.config.jobs.poll_interval_ms.max(50));
    let finished = Arc::new(tokio::sync::Notify::new());
    let mut last_sweep = std::time::Instant::now();
    let mut last_recovery: Option<std::time::Instant> = None;
    let mut store_down = false;
    loop {
        tokio::select! {
            r = rx.recv() => if r.is_none() { return },
            _ = finished.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
        // A burst of submissions is one look at the queue, not one per job.
        while rx.try_recv().is_ok() {}
        if last_recovery.is_none_or(|t| t.elapsed() >= poll) {
            last_recovery = Some(std::time::Instant::now());
            if let Err(e) = recover(&st).await {
                tracing::warn!(error = %e, "job recovery failed");
            }
        }
        let free = permits.available_permits();
        if free > 0 {
            match st.ports.jobs.due(Utc::now(), free as u32).await {
                Ok(due) => {
                    for job in due {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let st = st.clone();
                        let finished = finished.clone();
                        tokio::spawn(async move {
                            run_attempt(st, job).await;
                            drop(permit);
                            finished.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not list due jobs");
                    if !store_down {
                        // Once per outage, not once per poll.
                        store_down = true;
                        let ev = Event::system_error(
                            uuid::Uuid::new_v4().to_string(),
                            "job-runner",
                            "the job store is unreachable; jobs wait until it is back",
                            Utc::now(),
                        );
                        let _ = st.ports.notifier.publish(&ev).await;
                    }
                    continue;
                }
            }
            store_down = false;
        }
        if last_sweep.elapsed() > Duration::from_secs(600) {
            last_sweep = std::time::Instant::now();
            if let Some(sweeper) = &st.ports.sweeper {
                sweeper.sweep(&st).await;
            }
        }
    }
}

/// Housekeeping of the local stores (expired cache rows, old jobs and results).
#[async_trait::async_trait]
pub trait Sweeper: Send + Sync {
    async fn sweep(&self, st: &AppState);
}
