//! The API function given API Gateway proxy events (REST API, stage `prod`) for
//! the original walkthrough's requests, over the AWS ports on a moto server and a
//! real PostgreSQL.

mod common;

use std::time::Duration;

use common::*;
use quarry_aws::api;
use serde_json::{json, Value};

fn event(
    method: &str,
    path: &str,
    query: Option<Value>,
    body: Option<&str>,
    key: Option<&str>,
) -> Value {
    let mut headers = json!({ "Host": "abc123.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json" });
    if let Some(k) = key {
        headers["Authorization"] = json!(format!("Bearer {k}"));
    }
    let multi: serde_json::Map<String, Value> = headers
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json!([v])))
        .collect();
    let mq = query.as_ref().and_then(Value::as_object).map(|q| {
        q.iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect::<serde_json::Map<_, _>>()
    });
    json!({
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": mq,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "stage": "prod",
            "resourcePath": path, "httpMethod": method, "path": format!("/prod{path}"),
            "requestId": uuid::Uuid::new_v4().to_string(),
            "identity": { "sourceIp": "203.0.113.7" }
        },
        "body": body,
        "isBase64Encoded": false
    })
}

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
        jobs_topic_arn: String::new(),
        state_machine_arn: String::new(),
    };
    s3_store(&sdk, "results")
        .client()
        .create_bucket()
        .bucket("results")
        .send()
        .await
        .expect("bucket");
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
    let owner = quarry_db::connect(&db.url).await.expect("owner");
    let (_, key) = quarry_db::store::create_key(
        &owner,
        "walkthrough",
        &[quarry_db::store::Scope::Read, quarry_db::store::Scope::Jobs],
        None,
        [7u8; 38],
    )
    .await
    .expect("key");
    let packs =
        quarry_api::reload::load(&quarry_tests::repo_root().join("queries")).expect("packs");
    let st = api::state(
        quarry_api::Config::default(),
        packs,
        &quarry_db::reader_url(&db.url).expect("reader"),
        &quarry_db::writer_url(&db.url).expect("writer"),
        api::ports(&sdk, &res, Duration::from_secs(86400)),
    )
    .await
    .expect("state");
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
