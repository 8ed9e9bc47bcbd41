//! The Lambda handlers given the events AWS sends them (S3 notifications, Step
//! Functions task inputs, CloudFormation custom-resource calls), over the AWS
//! ports on a moto server and a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use quarry_aws::db::{Connector, Login, Target, Tls};
use quarry_aws::ingest::Ingest;
use quarry_aws::{api, runtime, steps};
use quarry_core::jobs::{Job, ResultFormat};
use serde_json::{json, Value};

/// An S3 ObjectCreated notification as S3 sends it (keys URL-encoded).
pub fn s3_event(bucket: &str, objects: &[(&str, u64)]) -> Value {
    let records: Vec<Value> = objects
        .iter()
        .map(|(key, size)| {
            json!({
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2026-11-27T12:00:00.000Z", "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "203.0.113.7"},
                "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
                "s3": {
                    "s3SchemaVersion": "1.0", "configurationId": "quarry-ingest",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
                    "object": {"key": key, "size": size, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}
                }
            })
        })
        .collect();
    json!({ "Records": records })
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn put(sdk: &aws_config::SdkConfig, bucket: &str, key: &str, body: Vec<u8>) -> u64 {
    let n = body.len() as u64;
    s3_store(sdk, bucket)
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .expect("PutObject");
    n
}

fn export(rel: &str) -> Vec<u8> {
    std::fs::read(
        quarry_tests::repo_root()
            .join("tests/fixtures/ingest/exports")
            .join(rel),
    )
    .expect("fixture export")
}

#[tokio::test]
async fn ingest_handler_loads_s3_uploads_once_and_fails_bad_files_loudly() {
    let m = moto();
    let sdk = config(&m).await;
    let s3 = make_bucket(&sdk, "raw").await;
    // System errors go to the alarm topic; an SQS subscription observes them.
    let (topic_arn, queue_url) = topic_with_queue(&sdk, "quarry-alarms", "alarms").await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let db = quarry_tests::empty_db().await;
    let owner = db.client().await;
    let mappings = quarry_core::files::load_mappings(&quarry_tests::repo_root().join("mappings"))
        .expect("mappings");
    let ingest = Ingest {
        s3: s3.clone(),
        writer: url_pool(&quarry_db::writer_url(&db.url).expect("writer url"), 2),
        mappings: mappings.into_iter().map(Arc::new).collect(),
        alarms: Some(Arc::new(quarry_aws::SnsNotifier::new(&sdk, &topic_arn))),
        max_bytes: None,
        handoff: None,
    };

    // Two uploads in one event, one key with spaces (URL-encoded in the event).
    let a = put(
        &sdk,
        "raw",
        "crm-data/accounts 2024-06-01.json",
        export("crm-data/accounts-2024-06-01-00.json"),
    )
    .await;
    let b = put(
        &sdk,
        "raw",
        "erp-data/customers-2024-06-01-00.json",
        export("erp-data/customers-2024-06-01-00.json"),
    )
    .await;
    let event = s3_event(
        "raw",
        &[
            ("crm-data/accounts+2024-06-01.json", a),
            ("erp-data/customers-2024-06-01-00.json", b),
        ],
    );
    let out = ingest.handle(event.clone()).await.expect("both files load");
    let statuses: Vec<&str> = out["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["status"].as_str())
        .collect();
    assert_eq!(statuses, ["loaded", "loaded"], "{out}");
    assert_eq!(
        out["files"][0]["key"],
        json!("crm-data/accounts 2024-06-01.json")
    );
    let orgs = count(&owner, "SELECT count(*) FROM canonical.organizations").await;
    assert!(orgs > 0, "organizations were loaded");
    let version = count(&owner, "SELECT version FROM canonical.data_version").await;

    // The same event again (S3 delivers at least once): nothing changes.
    let again = ingest
        .handle(event)
        .await
        .expect("a duplicate is not an error");
    let statuses: Vec<&str> = again["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["status"].as_str())
        .collect();
    assert_eq!(statuses, ["duplicate", "duplicate"], "{again}");
    assert_eq!(
        count(&owner, "SELECT count(*) FROM canonical.organizations").await,
        orgs
    );
    assert_eq!(
        count(&owner, "SELECT version FROM canonical.data_version").await,
        version
    );
    assert_eq!(
        count(&owner, "SELECT count(*) FROM quarry.ingest_files").await,
        2
    );

    // A truncated export: the invocation fails (Lambda retries, then dead-letters),
    // nothing of it is kept, and the failure is published as a system error.
    let t = put(
        &sdk,
        "raw",
        "crm-data/accounts-truncated.json",
        export("crm-data/accounts-truncated.json"),
    )
    .await;
    let err = ingest
        .handle(s3_event("raw", &[("crm-data/accounts-truncated.json", t)]))
        .await
        .expect_err("a bad file fails the invocation");
    assert_eq!(err.error_type, "Quarry.IngestFailed");
    assert!(
        err.error_message
            .contains("crm-data/accounts-truncated.json"),
        "{}",
        err.error_message
    );
    assert_eq!(
        count(&owner, "SELECT count(*) FROM canonical.organizations").await,
        orgs
    );
    let mut seen = None;
    for _ in 0..20 {
        let msgs = sqs
            .receive_message()
            .queue_url(&queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if let Some(body) = msgs.messages().first().and_then(|m| m.body()) {
            seen = Some(serde_json::from_str::<Value>(body).expect("event JSON"));
            break;
        }
    }
    let ev = seen.expect("a system error event on the alarm topic");
    assert_eq!(ev["type"], json!("quarry.system.error"));
    assert!(
        ev["data"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("accounts-truncated"),
        "{ev}"
    );

    // An object the event names but S3 does not have: an error naming it.
    let err = ingest
        .handle(s3_event("raw", &[("crm-data/never-uploaded.json", 10)]))
        .await
        .expect_err("a missing object fails");
    assert!(
        err.error_message.contains("never-uploaded"),
        "{}",
        err.error_message
    );
    // Not an S3 event at all.
    let err = ingest
        .handle(json!({"hello": 1}))
        .await
        .expect_err("not S3");
    assert_eq!(err.error_type, "Quarry.BadEvent");
}

/// `quarry-ingest` with a backfill event: the files delivered through the raw
/// bucket are read back and a fixed mapping version is applied to them; an
/// object overwritten since its delivery is reported, not loaded.
#[tokio::test]
async fn backfill_event_reapplies_a_fixed_mapping_from_the_raw_bucket() {
    let m = moto();
    let sdk = config(&m).await;
    let s3 = make_bucket(&sdk, "raw-backfill").await;
    let db = quarry_tests::empty_db().await;
    let owner = db.client().await;
    let shipped = quarry_core::files::load_mappings(&quarry_tests::repo_root().join("mappings"))
        .expect("mappings");
    let with_stripe =
        |edit: &dyn Fn(String) -> String| -> Vec<Arc<quarry_core::ingest::mapping::Mapping>> {
            let text =
                std::fs::read_to_string(quarry_tests::repo_root().join("mappings/stripe.yaml"))
                    .expect("stripe.yaml");
            let (m, d) = quarry_core::ingest::mapping::check_mapping(
                &quarry_core::ingest::mapping::MappingSource {
                    file: "stripe.yaml".into(),
                    text: edit(text),
                },
            );
            assert!(d.is_empty(), "{d:?}");
            let mut all: Vec<Arc<quarry_core::ingest::mapping::Mapping>> = shipped
                .iter()
                .filter(|m| m.spec.source != "stripe")
                .map(|m| {
                    Arc::new(
                        quarry_core::ingest::mapping::check_mapping(
                            &quarry_core::ingest::mapping::MappingSource {
                                file: m.file.clone(),
                                text: std::fs::read_to_string(&m.file).expect("mapping"),
                            },
                        )
                        .0
                        .expect("valid"),
                    )
                })
                .collect();
            all.push(Arc::new(m.expect("stripe mapping")));
            all
        };
    let handler = |mappings: Vec<Arc<quarry_core::ingest::mapping::Mapping>>| Ingest {
        s3: s3.clone(),
        writer: url_pool(&quarry_db::writer_url(&db.url).expect("writer url"), 2),
        mappings,
        alarms: None,
        max_bytes: None,
        handoff: None,
    };
    // Delivered under a mapping that forgot Stripe's minor units.
    let buggy = handler(with_stripe(&|t| {
        t.replace("version: 1.0.0", "version: 0.9.0")
            .replace("{minor_units: {currency: currency}}", "money")
    }));
    let real = |f: &str| {
        std::fs::read(
            quarry_tests::repo_root()
                .join("tests/fixtures/real/stripe-data")
                .join(f),
        )
        .expect("fixture")
    };
    let a = put(
        &sdk,
        "raw-backfill",
        "stripe-data/charge.json",
        real("stripe-java-charge.json"),
    )
    .await;
    let b = put(
        &sdk,
        "raw-backfill",
        "stripe-data/invoice.json",
        real("stripe-java-invoice-with-lines.json"),
    )
    .await;
    buggy
        .handle(s3_event(
            "raw-backfill",
            &[
                ("stripe-data/charge.json", a),
                ("stripe-data/invoice.json", b),
            ],
        ))
        .await
        .expect("loaded");
    let total = "SELECT (total_amount * 100)::bigint FROM canonical.orders WHERE source_id = 'ch_198c152iMoKf4jyWWYvyqjTX'";
    assert_eq!(count(&owner, total).await, 106_100);

    // The fixed mapping, applied by an operator's `aws lambda invoke`.
    let fixed = handler(with_stripe(&|t| t));
    let out = fixed
        .handle(json!({"backfill": {"source": "stripe", "bucket": "raw-backfill"}}))
        .await
        .expect("backfill");
    assert_eq!(out["backfill"]["rows_changed"], json!(2), "{out}");
    assert_eq!(count(&owner, total).await, 1061);
    assert_eq!(
        count(
            &owner,
            "SELECT version::bigint FROM canonical.orders WHERE source_id = 'ch_198c152iMoKf4jyWWYvyqjTX'"
        )
        .await,
        2
    );
    // Again: nothing to do.
    let again = fixed
        .handle(json!({"backfill": {"source": "stripe", "bucket": "raw-backfill"}}))
        .await
        .expect("backfill");
    assert_eq!(again["backfill"]["already_applied"], json!(2), "{again}");

    // An object overwritten since delivery is not the delivered file.
    put(
        &sdk,
        "raw-backfill",
        "stripe-data/charge.json",
        real("posthog-stripe-charges-list.json"),
    )
    .await;
    let newer = handler(with_stripe(&|t| {
        t.replace("version: 1.0.0", "version: 1.0.1")
    }));
    let out = newer
        .handle(json!({"backfill": {"source": "stripe", "bucket": "raw-backfill"}}))
        .await
        .expect("backfill");
    assert_eq!(out["backfill"]["raw_missing"], json!(1), "{out}");
    let files = out["backfill"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        files.iter().any(|f| f["looked_at"]
            .as_str()
            .is_some_and(|m| m.contains("now holds other content"))),
        "{out}"
    );
    let bad = fixed.handle(json!({"backfill": {"source": "nope"}})).await;
    assert!(bad.is_err());
}

struct JobsWorld {
    _m: Moto,
    sdk: aws_config::SdkConfig,
    state: Arc<quarry_api::AppState>,
    db: quarry_tests::TestDb,
}

async fn jobs_world() -> JobsWorld {
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    let m = moto();
    let sdk = config(&m).await;
    make_bucket(&sdk, "results").await;
    make_table(&sdk, "cache", "key").await;
    make_table(&sdk, "jobs", "id").await;
    let res = api::Resources {
        results_bucket: "results".into(),
        cache_table: "cache".into(),
        jobs_table: "jobs".into(),
        ..Default::default()
    };
    let db = quarry_tests::fixture_db().await;
    let root = quarry_tests::repo_root();
    let sources = quarry_core::files::read_pack_sources(&[
        root.join("queries"),
        root.join("tests/fixtures/packs"),
    ])
    .expect("pack sources");
    let packs = quarry_core::packs::loader::build_pack_set(&sources).expect("packs");
    let mut ports = api::ports(&sdk, &res, Duration::from_secs(86400));
    ports.notifier = Arc::new(runtime::PublishedByStateMachine);
    let state = api::state(
        quarry_api::Config::default(),
        packs,
        url_pool(&quarry_db::reader_url(&db.url).expect("reader url"), 2),
        ports,
    );
    JobsWorld {
        _m: m,
        sdk,
        state,
        db,
    }
}

async fn submit(w: &JobsWorld, operation: &str, params: Value) -> Job {
    let mut job = Job::new(
        uuid::Uuid::new_v4().to_string(),
        operation.into(),
        "1.0.0".into(),
        params.as_object().cloned().unwrap_or_default(),
        ResultFormat::Json,
        3,
        chrono::Utc::now(),
    );
    job.owner = None;
    w.state.ports.jobs.create(&job).await.expect("create job");
    job
}

async fn step(w: &JobsWorld, input: Value) -> Value {
    steps::dispatch(&w.state, input.clone())
        .await
        .unwrap_or_else(|e| panic!("step {input} failed: {} {}", e.error_type, e.error_message))
}

#[tokio::test]
async fn job_steps_in_state_machine_order_store_a_large_result_in_s3() {
    let w = jobs_world().await;
    let job = submit(&w, "many_rows", json!({"rows": 1500})).await;
    let id = job.id.clone();

    // Initialise → Execute → StoreResult → Complete, each with the input the
    // state machine builds (infra/lib/jobs.ts), outputs kept small.
    let init = step(&w, json!({"step": "initialise", "job_id": id, "operation": "many_rows",
        "parameters": {"rows": 1500}, "execution_id": format!("arn:aws:states:us-east-1:123456789012:execution:quarry-analytics-job:{id}")})).await;
    assert_eq!(init["attempt"], json!(1));
    // Initialise again (a Lambda retry): the same attempt, no new claim.
    let again = step(&w, json!({"step": "initialise", "job_id": id})).await;
    assert_eq!(again["attempt"], json!(1));
    let executed = step(&w, json!({"step": "execute", "job_id": id, "operation": "many_rows", "parameters": {"rows": 1500}, "retry": 0})).await;
    assert_eq!(executed["rows"], json!(1500));
    let stored = step(&w, json!({"step": "store_result", "job_id": id, "operation": "many_rows", "executed": executed})).await;
    assert_eq!(stored["kind"], json!("object"), "{stored}");
    assert_eq!(stored["result"]["rows"], json!(1500));
    let completed = step(
        &w,
        json!({"step": "complete", "job_id": id, "stored": stored}),
    )
    .await;
    assert_eq!(completed["type"], json!("quarry.job.succeeded"));
    for state_output in [&init, &executed, &stored, &completed] {
        assert!(
            state_output.to_string().len() < 16 * 1024,
            "state data stays small"
        );
    }
    // Complete again: the same event, no second transition.
    let twice = step(
        &w,
        json!({"step": "complete", "job_id": id, "stored": stored}),
    )
    .await;
    assert_eq!(twice["type"], json!("quarry.job.succeeded"));

    // Through the API: the job succeeded, and its result is a presigned S3 link.
    let owner = w.db.client().await;
    let (_, key) = quarry_db::store::create_key(
        &owner,
        "operator",
        // Admins see every job; the job was submitted by no key.
        &[
            quarry_db::store::Scope::Jobs,
            quarry_db::store::Scope::Admin,
        ],
        None,
        [9u8; 38],
    )
    .await
    .expect("key");
    let router = quarry_api::router(w.state.clone());
    let ev = |path: &str| apigw_event("GET", path, None, None, Some(&key));
    let r = api::handle(router.clone(), ev(&format!("/analytics/jobs/{id}")))
        .await
        .expect("status");
    assert_eq!(r.status(), 200);
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    let status: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status["state"], json!("succeeded"), "{status}");
    assert_eq!(status["attempts"], json!(1));
    let r = api::handle(router, ev(&format!("/analytics/jobs/{id}/result")))
        .await
        .expect("result");
    assert_eq!(r.status(), 303);
    let link = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    assert!(
        link.contains("X-Amz-Signature="),
        "a presigned link: {link}"
    );
    let got = reqwest::get(&link).await.expect("download");
    assert_eq!(got.status(), 200);
    let doc: Value = got.json().await.expect("result JSON");
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1500);
    assert_eq!(rows[1499]["n"], json!(1500));
    drop(w.sdk);
}

#[tokio::test]
async fn a_failing_job_is_marked_failed_with_the_steps_reason() {
    let w = jobs_world().await;
    // An operation that no longer exists: Execute fails permanently.
    let job = submit(&w, "retired_operation", json!({})).await;
    let id = job.id.clone();
    step(&w, json!({"step": "initialise", "job_id": id})).await;
    let err = steps::dispatch(&w.state, json!({"step": "execute", "job_id": id}))
        .await
        .expect_err("execute fails");
    assert_eq!(err.error_type, steps::PERMANENT);
    // The state machine's Catch hands MarkFailed the Lambda error as Cause.
    let cause = json!({"errorType": err.error_type, "errorMessage": err.error_message}).to_string();
    let failed = step(
        &w,
        json!({"step": "fail", "job_id": id, "error": {"Error": steps::PERMANENT, "Cause": cause}}),
    )
    .await;
    assert_eq!(failed["type"], json!("quarry.job.failed"));
    assert_eq!(
        failed["event"]["data"]["error"]["code"],
        json!("operation_removed")
    );
    let stored = w
        .state
        .ports
        .jobs
        .get(&id)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(stored.state.as_str(), "failed");

    // Transient failures retried by the state machine until it gave up.
    let job = submit(&w, "many_rows", json!({"rows": 5})).await;
    step(&w, json!({"step": "initialise", "job_id": job.id})).await;
    // Execute retried three times: the job counts the attempts.
    step(&w, json!({"step": "execute", "job_id": job.id, "retry": 3})).await;
    let cause = json!({"errorType": steps::TRANSIENT, "errorMessage":
        json!({"code": "database_unavailable", "message": "the database connection was lost", "transient": true}).to_string()}).to_string();
    let failed = step(&w, json!({"step": "fail", "job_id": job.id, "error": {"Error": steps::TRANSIENT, "Cause": cause}})).await;
    assert_eq!(
        failed["event"]["data"]["error"]["code"],
        json!("attempts_exhausted")
    );
    assert_eq!(failed["event"]["data"]["attempts"], json!(4));
    // A step of a finished job is refused as permanent, not retried.
    let err = steps::dispatch(&w.state, json!({"step": "execute", "job_id": job.id}))
        .await
        .expect_err("finished");
    assert_eq!(err.error_type, steps::PERMANENT);
    // A step the function does not know.
    let err = steps::dispatch(&w.state, json!({"step": "teleport", "job_id": job.id}))
        .await
        .expect_err("unknown step");
    assert!(
        err.error_message.contains("teleport") || err.error_message.contains("variant"),
        "{}",
        err.error_message
    );
}

#[tokio::test]
async fn migrate_custom_resource_migrates_a_new_database() {
    let name = format!(
        "quarry_m_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = quarry_db::connect(&quarry_tests::admin_url())
        .await
        .expect("admin");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create");
    let url = {
        let mut u = url::Url::parse(&quarry_tests::admin_url()).expect("url");
        u.set_path(&format!("/{name}"));
        u.to_string()
    };
    let owner = || Connector {
        login: Login::Url(url.clone()),
        target: Target::default(),
        tls: Tls::Disabled,
    };
    let create = json!({"RequestType": "Create", "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
        "ResponseURL": "https://cloudformation-custom-resource-response.example/", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/Quarry/1",
        "RequestId": "r1", "LogicalResourceId": "Migrations", "ResourceType": "Custom::QuarryMigrations",
        "ResourceProperties": {"Database": "quarry", "BundleSha256": "abc"}});
    let out = runtime::migrate_database(Some(owner()), &Default::default(), create.clone())
        .await
        .expect("migrated");
    assert_eq!(out["PhysicalResourceId"], json!("quarry-migrations"));
    assert!(out["Data"]["Applied"].as_u64().unwrap_or(0) >= 5, "{out}");
    let c = quarry_db::connect(&url).await.expect("connect");
    assert_eq!(
        count(&c, "SELECT count(*) FROM quarry.schema_migrations").await as u64,
        out["Data"]["Applied"].as_u64().unwrap_or(0)
    );
    // An Update (a redeploy) applies nothing new.
    let mut update = create.clone();
    update["RequestType"] = json!("Update");
    let out = runtime::migrate_database(Some(owner()), &Default::default(), update)
        .await
        .expect("update");
    assert_eq!(out["Data"]["Applied"], json!(0));
    // Delete leaves the database alone and needs no login.
    let mut delete = create.clone();
    delete["RequestType"] = json!("Delete");
    let out = runtime::migrate_database(None, &Default::default(), delete)
        .await
        .expect("delete");
    assert_eq!(out["PhysicalResourceId"], json!("quarry-migrations"));
    let mut bad = create;
    bad["RequestType"] = json!("Rename");
    let err = runtime::migrate_database(Some(owner()), &Default::default(), bad)
        .await
        .expect_err("bad");
    assert!(err.error_message.contains("Rename"));
    drop(c);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await;
}

#[tokio::test]
async fn admin_commands_mint_the_first_key_and_decide_links_without_the_cli() {
    let db = quarry_tests::fixture_db().await;
    let login = |url: String| Connector {
        login: Login::Url(url),
        target: Target::default(),
        tls: Tls::Disabled,
    };
    let logins = quarry_aws::admin::Logins {
        owner: login(db.url.clone()),
        writer: login(quarry_db::writer_url(&db.url).expect("writer url")),
    };
    let run = |event: Value| {
        let logins = &logins;
        async move {
            let command = quarry_aws::admin::parse(event)?;
            quarry_aws::admin::run(logins, command).await
        }
    };

    // The first key of a new stack: shown once, accepted by the API's check
    // (run as the reader, the API's role).
    let out = run(json!({"command": "create-key", "name": "first admin", "scopes": ["read", "jobs", "admin"]}))
        .await
        .expect("created");
    let key = out["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("qk_"), "{out}");
    let reader = quarry_db::connect(&quarry_db::reader_url(&db.url).expect("reader url"))
        .await
        .expect("reader");
    let checked = quarry_db::store::check_key(&reader, &key)
        .await
        .expect("check")
        .expect("the minted key is accepted");
    assert_eq!(checked.name, "first admin");
    assert_eq!(checked.scopes.len(), 3);

    let listed = run(json!({"command": "list-keys"})).await.expect("listed");
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{listed}");
    assert!(
        !listed.to_string().contains(&key[20..]),
        "a listing never shows secrets"
    );
    let id = out["id"].as_str().expect("id");
    run(json!({"command": "revoke-key", "id": id}))
        .await
        .expect("revoked");
    assert!(quarry_db::store::check_key(&reader, &key)
        .await
        .expect("check")
        .is_none());

    // Refusals name the problem.
    let refused = |e: lambda_runtime::Diagnostic, needle: &str| {
        assert_eq!(
            e.error_type, "Quarry.AdminCommandRefused",
            "{}",
            e.error_message
        );
        assert!(e.error_message.contains(needle), "{}", e.error_message);
    };
    refused(
        run(json!({"command": "revoke-key", "id": id}))
            .await
            .expect_err("twice"),
        "no active key",
    );
    refused(
        run(json!({"command": "create-key", "name": "x", "scopes": ["write"]}))
            .await
            .expect_err("scope"),
        "`write`",
    );
    refused(
        run(json!({"command": "create-key", "name": "x", "scopes": []}))
            .await
            .expect_err("none"),
        "read, jobs, admin",
    );
    refused(
        run(json!({"command": "drop-database"}))
            .await
            .expect_err("unknown"),
        "create-key, list-keys",
    );
    refused(
        run(json!({"command": "list-keys", "all": true}))
            .await
            .expect_err("extra field"),
        "all",
    );

    // A person's decision, with who made it kept.
    let orgs: Vec<i64> = db
        .client()
        .await
        .query(
            "SELECT id FROM canonical.organizations ORDER BY id LIMIT 2",
            &[],
        )
        .await
        .expect("orgs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    refused(
        run(json!({"command": "confirm-link", "left_id": orgs[0], "right_id": orgs[1], "by": " "}))
            .await
            .expect_err("by"),
        "`by`",
    );
    let out = run(json!({"command": "confirm-link", "left_id": orgs[0], "right_id": orgs[1], "by": "alice@example.com", "note": "same VAT id"}))
        .await
        .expect("confirmed");
    assert_eq!(out["decision"], json!("confirmed"));
    let companies: Vec<i64> = out["companies"]
        .as_array()
        .expect("companies")
        .iter()
        .map(|c| c["company_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(companies.len(), 2, "{out}");
    assert_eq!(
        companies[0], companies[1],
        "one company after the confirmation: {out}"
    );
    let links =
        run(json!({"command": "list-links", "organization": orgs[0], "status": "confirmed"}))
            .await
            .expect("links");
    assert_eq!(
        links["links"][0]["decided_by"],
        json!("aws:alice@example.com"),
        "{links}"
    );
    refused(
        run(json!({"command": "split", "organization_id": 999_999_999, "by": "alice"}))
            .await
            .expect_err("unknown org"),
        "999999999",
    );
    let out = run(json!({"command": "split", "organization_id": orgs[1], "by": "alice"}))
        .await
        .expect("split");
    assert_eq!(out["decision"], json!("split"));
}

async fn job_of(w: &JobsWorld, id: &str) -> Job {
    w.state.ports.jobs.get(id).await.expect("get").expect("job")
}

/// EventBridge's event for an execution of the jobs state machine that ended
/// (the shape of AWS's "Step Functions Execution Status Change").
fn execution_status_change(job_id: &str, status: &str) -> Value {
    let execution =
        format!("arn:aws:states:us-east-1:123456789012:execution:quarry-analytics-job:{job_id}");
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "account": "123456789012", "time": "2026-12-03T12:00:00Z", "region": "us-east-1",
        "resources": [execution],
        "detail": {
            "executionArn": execution,
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:quarry-analytics-job",
            "name": job_id, "status": status,
            "startDate": 1_764_763_200_000_i64, "stopDate": 1_764_766_800_000_i64,
            "input": json!({"job_id": job_id}).to_string(), "output": null,
            "error": if status == "FAILED" { json!("States.Runtime") } else { Value::Null },
            "cause": null
        }
    })
}

#[tokio::test]
async fn an_execution_that_ends_outside_its_own_steps_fails_its_job_and_says_so() {
    let w = jobs_world().await;
    let (topic, queue) = topic_with_queue(&w.sdk, "ended-jobs", "ended-jobs-q").await;
    let notifier = quarry_aws::SnsNotifier::new(&w.sdk, topic);
    let n: Option<&dyn quarry_core::ports::Notifier> = Some(&notifier);

    // A running job whose execution hit the workflow's time limit.
    let timed_out = submit(&w, "many_rows", json!({"rows": 5})).await;
    step(&w, json!({"step": "initialise", "job_id": timed_out.id})).await;
    let out = steps::handle(
        &w.state,
        n,
        execution_status_change(&timed_out.id, "TIMED_OUT"),
    )
    .await
    .expect("handled");
    assert_eq!(out["changed"], json!(true), "{out}");
    let job = job_of(&w, &timed_out.id).await;
    assert_eq!(job.state.as_str(), "failed");
    let error = job.error.as_ref().expect("a reason");
    assert_eq!(error.code, "timeout");
    assert!(error.message.contains("time limit"), "{}", error.message);

    // A queued job whose execution an operator stopped.
    let aborted = submit(&w, "many_rows", json!({"rows": 5})).await;
    steps::handle(&w.state, n, execution_status_change(&aborted.id, "ABORTED"))
        .await
        .expect("handled");
    let job = job_of(&w, &aborted.id).await;
    assert_eq!(job.error.as_ref().map(|e| e.code.as_str()), Some("aborted"));

    // Both failures were published as the jobs' own events.
    let sqs = aws_sdk_sqs::Client::new(&w.sdk);
    let mut types = Vec::new();
    for _ in 0..10 {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        for m in got.messages() {
            let ev: Value = serde_json::from_str(m.body().unwrap_or("{}")).expect("event JSON");
            types.push((
                ev["type"].as_str().unwrap_or("").to_string(),
                ev["data"]["job_id"].as_str().unwrap_or("").to_string(),
            ));
        }
        if types.len() >= 2 {
            break;
        }
    }
    types.sort();
    let mut expected = vec![
        ("quarry.job.failed".to_string(), timed_out.id.clone()),
        ("quarry.job.failed".to_string(), aborted.id.clone()),
    ];
    expected.sort();
    assert_eq!(types, expected);

    // A job that finished on its own (its FAILED execution ran MarkFailed, or
    // the event is delivered twice) is left as it is.
    let again = steps::handle(
        &w.state,
        n,
        execution_status_change(&timed_out.id, "FAILED"),
    )
    .await
    .expect("handled");
    assert_eq!(again["changed"], json!(false), "{again}");
    let job = job_of(&w, &timed_out.id).await;
    assert_eq!(job.error.as_ref().map(|e| e.code.as_str()), Some("timeout"));
    // An execution of no known job changes nothing and is no error.
    let unknown = steps::handle(
        &w.state,
        n,
        execution_status_change("no-such-job", "TIMED_OUT"),
    )
    .await
    .expect("handled");
    assert_eq!(unknown["changed"], json!(false));
    // The task states still reach their steps through the same entry point.
    let err = steps::handle(&w.state, n, json!({"step": "teleport", "job_id": "x"}))
        .await
        .expect_err("unknown step");
    assert_eq!(err.error_type, steps::PERMANENT);
}

#[test]
fn a_synchronous_query_on_lambda_ends_before_api_gateway_gives_up() {
    // The default (30 s) is above what API Gateway waits (29 s): the Lambda
    // runtime clamps it, and the engine's 2 s guard still fits.
    let config = runtime::config().expect("config");
    assert!(config.api.sync_timeout_seconds <= runtime::SYNC_BUDGET_SECONDS);
    assert!(quarry_api::Config::default().api.sync_timeout_seconds > runtime::SYNC_BUDGET_SECONDS);
}
