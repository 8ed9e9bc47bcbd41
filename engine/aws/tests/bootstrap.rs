//! The function binaries themselves, as Lambda runs them: each `bootstrap` is
//! started against a Lambda Runtime API served by the test (the documented
//! protocol: GET .../invocation/next, POST .../invocation/{id}/response), with
//! moto and PostgreSQL behind it. Checks the answer, the JSON log lines and the
//! CloudWatch Embedded Metric Format documents on stdout.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

#[derive(Clone)]
struct Rt {
    event: Arc<Mutex<Option<Value>>>,
    answers: mpsc::UnboundedSender<(String, Value)>,
}

async fn next(State(rt): State<Rt>) -> (HeaderMap, String) {
    let event = rt.event.lock().ok().and_then(|mut e| e.take());
    let Some(event) = event else {
        // One event per start: the second request waits until the process is killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_static("9999999999999"),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:quarry"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    (h, event.to_string())
}

async fn answer(
    State(rt): State<Rt>,
    Path((_id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = rt.answers.send((kind, v));
    "{}"
}

/// Runs `binary` for one `event`; returns (response kind, answer, stdout lines).
async fn invoke(binary: &str, env: &[(&str, String)], event: Value) -> (String, Value, Vec<Value>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rt = Rt {
        event: Arc::new(Mutex::new(Some(event))),
        answers: tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "quarry")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/quarry")
        .env("LAMBDA_TASK_ROOT", quarry_tests::repo_root())
        .env("QUARRY_DB_TLS", "disable")
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the bootstrap");
    let got = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the function answered within a minute")
        .expect("an answer");
    // Give the last log lines (metrics are flushed after the answer) a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.start_kill();
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out).await;
    }
    let _ = child.wait().await;
    server.abort();
    let lines = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|_| panic!("a stdout line that is not JSON: {l}"))
        })
        .collect();
    (got.0, got.1, lines)
}

/// The EMF documents among `lines` (those with `_aws.CloudWatchMetrics`).
fn emf(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["_aws"]["CloudWatchMetrics"].is_array())
        .collect()
}

fn metric<'a>(docs: &[&'a Value], name: &str) -> Option<&'a Value> {
    docs.iter().find_map(|d| {
        let declared = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["Name"] == json!(name)));
        declared.then(|| &d[name])
    })
}

#[tokio::test]
async fn the_ingest_and_api_bootstraps_answer_log_json_and_emit_emf_metrics() {
    let m = moto();
    let sdk = config(&m).await;
    let s3 = make_bucket(&sdk, "raw").await;
    let body = std::fs::read(
        quarry_tests::repo_root()
            .join("tests/fixtures/ingest/exports/crm-data/accounts-2024-06-01-00.json"),
    )
    .expect("export");
    let size = body.len();
    s3.client()
        .put_object()
        .bucket("raw")
        .key("crm-data/accounts.json")
        .body(body.into())
        .send()
        .await
        .expect("put");
    let db = quarry_tests::empty_db().await;
    let env = vec![
        ("AWS_ENDPOINT_URL", m.endpoint.clone()),
        (
            "QUARRY_WRITER_URL",
            quarry_db::writer_url(&db.url).expect("writer"),
        ),
        (
            "QUARRY_READER_URL",
            quarry_db::reader_url(&db.url).expect("reader"),
        ),
        ("QUARRY_RAW_BUCKET", "raw".to_string()),
    ];

    let event = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "raw"},
        "object": {"key": "crm-data/accounts.json", "size": size}}}]});
    let (kind, answer, lines) = invoke(env!("CARGO_BIN_EXE_quarry-ingest"), &env, event).await;
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(answer["files"][0]["status"], json!("loaded"), "{answer}");
    let records = answer["files"][0]["records_read"]
        .as_u64()
        .expect("records");
    assert!(
        lines.iter().any(
            |l| l["fields"]["message"] == json!("file ingested") && l["level"] == json!("INFO")
        ),
        "a JSON log line per file: {lines:?}"
    );
    let docs = emf(&lines);
    assert_eq!(
        metric(&docs, "quarry_ingest_records_total"),
        Some(&json!(records)),
        "{docs:?}"
    );
    assert!(metric(&docs, "quarry_ingest_records_per_second")
        .is_some_and(|v| v.as_f64().unwrap_or(0.0) > 0.0));
    let doc = docs
        .iter()
        .find(|d| !d["quarry_ingest_records_total"].is_null())
        .expect("doc");
    assert_eq!(doc["function"], json!("quarry-ingest"));
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        json!("Quarry")
    );

    // The API function: GET /health through an API Gateway event.
    let res_env = [
        env.clone(),
        vec![
            ("QUARRY_RESULTS_BUCKET", "results".to_string()),
            ("QUARRY_CACHE_TABLE", "cache".to_string()),
            ("QUARRY_JOBS_TABLE", "jobs".to_string()),
            (
                "QUARRY_STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:jobs".to_string(),
            ),
        ],
    ]
    .concat();
    let health = apigw_event("GET", "/health", None, None, None);
    let (kind, answer, lines) = invoke(env!("CARGO_BIN_EXE_quarry-api"), &res_env, health).await;
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(answer["statusCode"], json!(200), "{answer}");
    let docs = emf(&lines);
    assert!(
        metric(&docs, "quarry_http_requests_total").is_some(),
        "request metrics as EMF: {lines:?}"
    );

    // A function whose setup is wrong stops at init (Lambda reports
    // Runtime.ExitError) and says what is missing.
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_quarry-jobs"))
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("AWS_ENDPOINT_URL", &m.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env_remove("QUARRY_RESULTS_BUCKET")
            .output(),
    )
    .await
    .expect("exits")
    .expect("ran");
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("QUARRY_RESULTS_BUCKET"), "{said}");
}
