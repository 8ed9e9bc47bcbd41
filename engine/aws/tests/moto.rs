//! The AWS adapters against a real AWS API emulator: a moto server (PyPI
//! `moto[server]`, installed by the README's test command) on loopback. Every
//! call below is a real SDK call over HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use common::*;
use quarry_aws::{DynamoCache, DynamoJobStore, SfnStarter, SnsNotifier};
use quarry_core::jobs::{Event, Job, JobResult, ResultFormat};
use quarry_core::ports::{
    Cache, CachedValue, JobStore, Notifier, ObjectStore, PortError, WorkflowStarter,
};
use serde_json::json;

/// GET over plain HTTP/1.1 (what a caller holding a presigned link does).
fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn s3_objects_round_trip_and_presigned_links_download() {
    let m = moto();
    let cfg = config(&m).await;
    let store = make_bucket(&cfg, "results").await;
    let body = b"{\"rows\":[1,2,3]}".to_vec();
    store
        .put("results/j1.json", body.clone(), "application/json")
        .await
        .expect("put");
    assert_eq!(
        store.get("results/j1.json").await.expect("get"),
        Some(body.clone())
    );
    assert_eq!(
        store.get("results/none.json").await.expect("get missing"),
        None
    );
    let url = store
        .signed_url("results/j1.json", Duration::from_secs(60))
        .await
        .expect("presign");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let (status, got) = http_get(&url);
    assert_eq!(status, 200);
    assert!(got.contains("{\"rows\":[1,2,3]}"), "{got}");
}

/// A large result is written to S3 in parts as it is made: one PutObject
/// under a part, a multipart upload past it, complete only at `finish`; an
/// aborted upload leaves neither an object nor an open upload.
#[tokio::test]
async fn s3_objects_are_written_in_parts_and_an_aborted_one_leaves_nothing() {
    let m = moto();
    let cfg = config(&m).await;
    let store = make_bucket(&cfg, "results").await;
    // 20 MiB in 1 MiB chunks: two 8 MiB parts and a last one of 4 MiB.
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut w = store
        .writer("jobs/big.ndjson", "application/x-ndjson")
        .await
        .expect("writer");
    for _ in 0..20 {
        w.write(&chunk).await.expect("write");
    }
    assert_eq!(
        store.get("jobs/big.ndjson").await.expect("get"),
        None,
        "nothing is visible before finish"
    );
    assert_eq!(w.finish().await.expect("finish"), 20 << 20);
    let got = store
        .get("jobs/big.ndjson")
        .await
        .expect("get")
        .expect("the object");
    assert_eq!(got.len(), 20 << 20);
    assert!(got.chunks(1 << 20).all(|c| c == chunk.as_slice()));
    let head = store
        .client()
        .head_object()
        .bucket("results")
        .key("jobs/big.ndjson")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("application/x-ndjson"));
    assert!(
        head.e_tag().is_some_and(|t| t.contains("-3")),
        "a multipart object of 3 parts: {:?}",
        head.e_tag()
    );

    // Under a part: one PutObject.
    let mut w = store
        .writer("jobs/small.csv", "text/csv")
        .await
        .expect("writer");
    w.write(b"a,b\n1,2\n").await.expect("write");
    assert_eq!(w.finish().await.expect("finish"), 8);
    assert_eq!(
        store.get("jobs/small.csv").await.expect("get"),
        Some(b"a,b\n1,2\n".to_vec())
    );

    // Aborted after a part went up: no object, no upload left open.
    let mut w = store
        .writer("jobs/failed.ndjson", "application/x-ndjson")
        .await
        .expect("writer");
    for _ in 0..9 {
        w.write(&chunk).await.expect("write");
    }
    w.abort().await;
    assert_eq!(store.get("jobs/failed.ndjson").await.expect("get"), None);
    let open = store
        .client()
        .list_multipart_uploads()
        .bucket("results")
        .send()
        .await
        .expect("list uploads");
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}

#[tokio::test]
async fn the_dynamodb_cache_expires_entries_and_offloads_large_ones() {
    let m = moto();
    let cfg = config(&m).await;
    make_table(&cfg, "cache", "key").await;
    let objects = make_bucket(&cfg, "results").await;
    let cache = DynamoCache::new(&cfg, "cache", objects.clone());
    // Kept as the very bytes served, spacing and key order included.
    let v = CachedValue::Inline(bytes::Bytes::from_static(
        b"{\"rows\": [{\"n\": 1, \"a\": 2}]}",
    ));
    cache
        .put("k1", "op", &v, Duration::from_secs(60))
        .await
        .expect("put");
    assert_eq!(cache.get("k1").await.expect("get"), Some(v));
    assert_eq!(cache.get("nope").await.expect("get"), None);
    // TTL: DynamoDB deletes expired items lazily; the adapter ignores them at once.
    cache
        .put(
            "short",
            "op",
            &CachedValue::Inline(bytes::Bytes::from_static(b"1")),
            Duration::from_secs(1),
        )
        .await
        .expect("put");
    assert!(cache.get("short").await.expect("get").is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        cache.get("short").await.expect("get"),
        None,
        "expired entries are misses"
    );
    // A value over the item limit goes to S3; the item keeps a pointer.
    let big = json!({"rows": "x".repeat(500 * 1024)});
    cache
        .put(
            "big",
            "op",
            &CachedValue::Inline(bytes::Bytes::from(big.to_string())),
            Duration::from_secs(60),
        )
        .await
        .expect("put big");
    match cache.get("big").await.expect("get big") {
        Some(CachedValue::Pointer { object_key }) => {
            let bytes = objects
                .get(&object_key)
                .await
                .expect("object")
                .expect("exists");
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"),
                big
            );
        }
        other => panic!("expected a pointer, got {other:?}"),
    }
    // An item whose body is not JSON (not written by Quarry) is an error, which
    // the API takes for a miss, never bytes served as an answer.
    aws_sdk_dynamodb::Client::new(&cfg)
        .put_item()
        .table_name("cache")
        .item("key", AttributeValue::S("broken".into()))
        .item("operation", AttributeValue::S("op".into()))
        .item(
            "expires_at",
            AttributeValue::N((Utc::now().timestamp() + 60).to_string()),
        )
        .item("body", AttributeValue::S("{\"rows\": [".into()))
        .send()
        .await
        .expect("put a broken item");
    let broken = cache.get("broken").await;
    assert!(
        matches!(&broken, Err(PortError::Unavailable(m)) if m.contains("not JSON")),
        "{broken:?}"
    );
}

#[tokio::test]
async fn the_dynamodb_job_store_only_moves_forward() {
    let m = moto();
    let cfg = config(&m).await;
    make_table(&cfg, "jobs", "id").await;
    let store = DynamoJobStore::new(&cfg, "jobs", Duration::from_secs(7 * 86400));
    let now = Utc::now();
    let job = Job::new(
        "j-1".into(),
        "op".into(),
        "1.0.0".into(),
        serde_json::Map::new(),
        ResultFormat::Csv,
        3,
        now,
    );
    store.create(&job).await.expect("create");
    assert!(
        matches!(store.create(&job).await, Err(PortError::Conflict(_))),
        "ids are unique"
    );
    assert_eq!(store.get("j-1").await.expect("get"), Some(job.clone()));
    let running = job.claimed(now, Duration::from_secs(60));
    store
        .transition(&job, &running)
        .await
        .expect("queued → running");
    // A second runner that read the queued job loses the race.
    assert!(matches!(
        store.transition(&job, &running).await,
        Err(PortError::Conflict(_))
    ));
    let done = running.succeeded(
        now,
        JobResult::Inline {
            body: json!({"row_count": 0}),
        },
    );
    store
        .transition(&running, &done)
        .await
        .expect("running → succeeded");
    assert_eq!(
        store.get("j-1").await.expect("get").map(|j| j.state),
        Some(done.state)
    );
    // Backwards is refused, both by the rules and by the condition on the item.
    let mut back = done.clone();
    back.state = quarry_core::jobs::JobState::Running;
    assert!(matches!(
        store.transition(&done, &back).await,
        Err(PortError::Conflict(_))
    ));
    assert!(matches!(
        store.transition(&running, &back).await,
        Err(PortError::Conflict(_))
    ));
    assert_eq!(store.get("j-1").await.expect("get"), Some(done));
}

#[tokio::test]
async fn sns_events_reach_a_subscribed_queue() {
    let m = moto();
    let cfg = config(&m).await;
    let sns = aws_sdk_sns::Client::new(&cfg);
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let topic = sns
        .create_topic()
        .name("quarry-jobs")
        .send()
        .await
        .expect("topic");
    let topic_arn = topic.topic_arn().unwrap_or_default().to_string();
    let q = sqs
        .create_queue()
        .queue_name("events")
        .send()
        .await
        .expect("queue");
    let q_url = q.queue_url().unwrap_or_default().to_string();
    let q_arn = sqs
        .get_queue_attributes()
        .queue_url(&q_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attrs")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap_or_default();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&q_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    let notifier = SnsNotifier::new(&cfg, &topic_arn);
    let mut job = Job::new(
        "j-9".into(),
        "customer_analysis".into(),
        "1.0.0".into(),
        serde_json::Map::new(),
        ResultFormat::Json,
        3,
        Utc::now(),
    );
    job = job.claimed(Utc::now(), Duration::from_secs(5)).succeeded(
        Utc::now(),
        JobResult::Inline {
            body: json!({"row_count": 11}),
        },
    );
    let ev = Event::for_job("ev-1".into(), &job, Utc::now());
    notifier.publish(&ev).await.expect("publish");
    let got = sqs
        .receive_message()
        .queue_url(&q_url)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive");
    let body = got
        .messages()
        .first()
        .and_then(|m| m.body())
        .unwrap_or_default();
    let back: Event = serde_json::from_str(body).expect("the same CloudEvents payload");
    assert_eq!(back, ev);
}

#[tokio::test]
async fn a_job_starts_one_execution_however_often_it_is_started() {
    let m = moto();
    let cfg = config(&m).await;
    let sfn = aws_sdk_sfn::Client::new(&cfg);
    let definition = json!({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}});
    let sm = sfn
        .create_state_machine()
        .name("quarry-analytics-job")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/quarry-sfn")
        .send()
        .await
        .expect("state machine");
    let arn = sm.state_machine_arn().to_string();
    let starter = SfnStarter::new(&cfg, &arn);
    let job = Job::new(
        "6f1c0f7e-0000-4000-8000-000000000001".into(),
        "op".into(),
        "1.0.0".into(),
        serde_json::Map::new(),
        ResultFormat::Json,
        3,
        Utc::now(),
    );
    starter.start(&job).await.expect("start");
    starter
        .start(&job)
        .await
        .expect("a retried start is not an error");
    let list = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .expect("list");
    let names: Vec<&str> = list.executions().iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        vec![job.id.as_str()],
        "one execution, named after the job"
    );
}
