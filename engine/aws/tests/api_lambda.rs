//! The API function given API Gateway proxy events (REST API, stage `prod`) for
//! the original walkthrough's requests, over the AWS ports on a moto server and a
//! real PostgreSQL.

mod common;

use std::time::Duration;

use common::*;
use quarry_aws::api;
use serde_json::{json, Value};

use common::apigw_event as event;

async fn body_json(resp: axum::response::Response) -> Value {
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_walkthrough_through_api_gateway_events() {
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    let m = moto();
    let sdk = config(&m).await;
    let res = api::Resources {
        results_bucket: "results".into(),
        cache_table: "cache".into(),
        jobs_table: "jobs".into(),
        ..Default::default()
    };
    make_bucket(&sdk, "results").await;
    make_table(&sdk, "cache", "key").await;
    make_table(&sdk, "jobs", "id").await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name("quarry-jobs")
        .send()
        .await
        .expect("topic");
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let sm = sfn
        .create_state_machine()
        .name("quarry-analytics-job")
        .definition(json!({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}).to_string())
        .role_arn("arn:aws:iam::123456789012:role/quarry-sfn")
        .send()
        .await
        .expect("state machine");
    let res = api::Resources {
        jobs_topic_arn: topic.topic_arn().unwrap_or_default().to_string(),
        state_machine_arn: sm.state_machine_arn().to_string(),
        ..res
    };

    let db = quarry_tests::fixture_db().await;
    let key = api_key(
        &db.url,
        "walkthrough",
        &[quarry_db::store::Scope::Read, quarry_db::store::Scope::Jobs],
        7,
    )
    .await;
    let packs =
        quarry_api::reload::load(&quarry_tests::repo_root().join("queries")).expect("packs");
    let reader = url_pool(&quarry_db::reader_url(&db.url).expect("reader"), 2);
    let st = api::state(
        quarry_api::Config::default(),
        packs,
        reader,
        api::ports(&sdk, &res, Duration::from_secs(86400)),
    );
    let router = quarry_api::router(st);
    let call = |ev: Value| {
        let router = router.clone();
        async move { api::handle(router, ev).await.expect("handled") }
    };

    // curl .../prod/health
    let r = call(event("GET", "/health", None, None, None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(r).await["database"], json!("reachable"));
    // Without the key: 401 (there is no open access on AWS).
    let r = call(event(
        "GET",
        "/analytics",
        Some(json!({"operation": "database_info"})),
        None,
        None,
    ))
    .await;
    assert_eq!(r.status(), 401);
    // curl ".../prod/analytics?operation=customer_analysis", twice: miss then hit.
    let q = Some(json!({"operation": "customer_analysis"}));
    let r = call(event("GET", "/analytics", q.clone(), None, Some(&key))).await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()
                .get("x-cache")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        ),
        (200, Some("miss".into()))
    );
    assert_eq!(body_json(r).await["row_count"], json!(11));
    let r = call(event("GET", "/analytics", q, None, Some(&key))).await;
    assert_eq!(
        r.headers().get("x-cache").and_then(|v| v.to_str().ok()),
        Some("hit")
    );
    // An invalid operation: problem+json.
    let r = call(event(
        "POST",
        "/analytics",
        None,
        Some(r#"{"operation": "invalid_operation"}"#),
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    // A job: 202, an execution named after it, its status from DynamoDB.
    let r = call(event(
        "POST",
        "/analytics/jobs",
        None,
        Some(r#"{ "operation": "multi_dimensional_analytics", "parameters": { "timeframe": "3 months" } }"#),
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 202);
    let job = body_json(r).await;
    let id = job["job_id"].as_str().unwrap_or_default().to_string();
    let execs = sfn
        .list_executions()
        .state_machine_arn(sm.state_machine_arn())
        .send()
        .await
        .expect("executions");
    assert!(
        execs.executions().iter().any(|e| e.name() == id),
        "one execution named {id}"
    );
    let r = call(event(
        "GET",
        &format!("/analytics/jobs/{id}"),
        None,
        None,
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 200);
    let status = body_json(r).await;
    assert_eq!(status["state"], json!("queued"));
    assert_eq!(status["parameters"]["timeframe"], json!("3 months"));
}

/// Runs the real AWS CLI against the moto server.
fn aws(m: &Moto, args: &[&str]) -> String {
    let out = std::process::Command::new("aws")
        .args(["--endpoint-url", &m.endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("the AWS CLI (pip install awscli; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The original walkthrough end to end: `aws s3 cp customer-data.json
/// s3://BUCKET/crm-data/` with the real AWS CLI, S3's notification (through an
/// SQS queue, as moto delivers it) handed to the ingest function, then the
/// analytics calls through the API function.
#[tokio::test]
async fn the_walkthrough_with_the_aws_cli() {
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    let m = moto();
    let sdk = config(&m).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name("quarry-ingest-events")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .unwrap_or_default()
        .to_string();
    aws(&m, &["s3", "mb", "s3://quarry-raw"]);
    aws(&m, &["s3", "mb", "s3://quarry-results"]);
    let notification = json!({"QueueConfigurations": [{
        "Id": "crm", "QueueArn": "arn:aws:sqs:us-east-1:123456789012:quarry-ingest-events",
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "crm-data/"}]}}
    }]});
    aws(
        &m,
        &[
            "s3api",
            "put-bucket-notification-configuration",
            "--bucket",
            "quarry-raw",
            "--notification-configuration",
            &notification.to_string(),
        ],
    );
    make_table(&sdk, "cache", "key").await;
    make_table(&sdk, "jobs", "id").await;
    let sm = aws_sdk_sfn::Client::new(&sdk)
        .create_state_machine()
        .name("quarry-analytics-job")
        .definition(json!({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}).to_string())
        .role_arn("arn:aws:iam::123456789012:role/quarry-sfn")
        .send()
        .await
        .expect("state machine");

    // aws s3 cp customer-data.json s3://quarry-raw/crm-data/
    let dir = std::env::temp_dir().join(format!("quarry-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("customer-data.json");
    std::fs::copy(
        quarry_tests::repo_root()
            .join("tests/fixtures/ingest/exports/crm-data/accounts-2024-06-01-00.json"),
        &file,
    )
    .expect("copy");
    let printed = aws(
        &m,
        &[
            "s3",
            "cp",
            &file.to_string_lossy(),
            "s3://quarry-raw/crm-data/",
        ],
    );
    assert!(printed.contains("upload:"), "{printed}");

    // The ingest function gets the notification S3 sent.
    let db = quarry_tests::empty_db().await;
    let ingest = quarry_aws::ingest::Ingest {
        s3: s3_store(&sdk, "quarry-raw"),
        writer: url_pool(&quarry_db::writer_url(&db.url).expect("writer"), 1),
        mappings: quarry_core::files::load_mappings(&quarry_tests::repo_root().join("mappings"))
            .expect("mappings")
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
        alarms: None,
        max_bytes: None,
        handoff: None,
    };
    let mut loaded = Vec::new();
    for _ in 0..20 {
        let msgs = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for msg in msgs.messages() {
            let event: Value =
                serde_json::from_str(msg.body().unwrap_or("{}")).expect("S3 event JSON");
            let out = ingest.handle(event).await.expect("ingested");
            loaded.extend(out["files"].as_array().cloned().unwrap_or_default());
        }
        if !loaded.is_empty() {
            break;
        }
    }
    assert_eq!(
        loaded.len(),
        1,
        "one file from the notification: {loaded:?}"
    );
    assert_eq!(loaded[0]["key"], json!("crm-data/customer-data.json"));
    assert_eq!(loaded[0]["status"], json!("loaded"));

    // The analytics calls through the API function.
    let key = api_key(
        &db.url,
        "walkthrough",
        &[quarry_db::store::Scope::Read, quarry_db::store::Scope::Jobs],
        3,
    )
    .await;
    let res = api::Resources {
        results_bucket: "quarry-results".into(),
        cache_table: "cache".into(),
        jobs_table: "jobs".into(),
        state_machine_arn: sm.state_machine_arn().to_string(),
        ..Default::default()
    };
    let reader = url_pool(&quarry_db::reader_url(&db.url).expect("reader"), 2);
    let router = quarry_api::router(api::state(
        quarry_api::Config::default(),
        quarry_api::reload::load(&quarry_tests::repo_root().join("queries")).expect("packs"),
        reader,
        api::ports(&sdk, &res, Duration::from_secs(86400)),
    ));
    let call = |ev: Value| {
        let router = router.clone();
        async move { api::handle(router, ev).await.expect("handled") }
    };
    let r = call(event("GET", "/health", None, None, None)).await;
    assert_eq!(r.status(), 200);
    let r = call(event(
        "GET",
        "/analytics",
        Some(json!({"operation": "customer_analysis"})),
        None,
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 200);
    let body = body_json(r).await;
    let organizations: i64 = quarry_db::connect(&db.url)
        .await
        .expect("owner")
        .query_one("SELECT count(*) FROM canonical.organizations", &[])
        .await
        .expect("count")
        .get(0);
    assert!(organizations > 0);
    assert!(
        body["row_count"].as_u64().unwrap_or(0) > 0,
        "the uploaded customers are analysed: {body}"
    );
    let r = call(event(
        "POST",
        "/analytics/jobs",
        None,
        Some(r#"{ "operation": "multi_dimensional_analytics", "parameters": { "timeframe": "3 months" } }"#),
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 202);
    let id = body_json(r).await["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let listed = aws(
        &m,
        &[
            "stepfunctions",
            "list-executions",
            "--state-machine-arn",
            sm.state_machine_arn(),
        ],
    );
    assert!(
        listed.contains(&id),
        "the job's execution, seen with the CLI: {listed}"
    );
    let r = call(event(
        "GET",
        &format!("/analytics/jobs/{id}"),
        None,
        None,
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 200);
    let r = call(event(
        "POST",
        "/analytics",
        None,
        Some(r#"{"operation": "invalid_operation"}"#),
        Some(&key),
    ))
    .await;
    assert_eq!(r.status(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}
