//! Black-box tests of jobs: the whole life of a job over HTTP, a retry after a
//! real transient failure (the job's database connection is terminated), large
//! results stored and downloaded through signed links, a server killed
//! mid-job, and webhook notifications.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use quarry_tests::{admin_url, fixture_db, TestDb};
use serde_json::{json, Value};

fn job_id(r: &Reply) -> String {
    r.body["job_id"].as_str().unwrap_or_default().to_string()
}

/// Terminates the backend running the test pack's pg_sleep (a real lost connection).
async fn terminate_sleeping_backend(db: &TestDb) -> bool {
    let admin = quarry_db::connect(&admin_url()).await.expect("admin");
    let n: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = $1 AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .expect("terminate")
        .get(0);
    n > 0
}

#[tokio::test]
async fn the_walkthrough_job_commands_work() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{ "operation": "multi_dimensional_analytics", "parameters": { "timeframe": "3 months" } }"#,
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = job_id(&r);
    assert_eq!(
        r.header("location"),
        Some(format!("/analytics/jobs/{id}").as_str())
    );
    assert_eq!(r.body["state"], json!("queued"));
    let done = wait_job(&s, &id, &[]);
    assert_eq!(done["state"], json!("succeeded"), "{done:?}");
    assert_eq!(done["attempts"], json!(1));
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    assert_eq!(
        done["links"]["result"],
        json!(format!("/analytics/jobs/{id}/result"))
    );
    let res = get(&s, &format!("/analytics/jobs/{id}/result"));
    assert_eq!(res.status, 200);
    assert_eq!(res.body["operation"], json!("multi_dimensional_analytics"));
    assert_eq!(
        res.body["rows"].as_array().map(Vec::len),
        res.body["row_count"].as_u64().map(|n| n as usize)
    );

    // Any operation can be a job (the walkthrough's second job).
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{ "operation": "customer_analysis", "parameters": { "metric": "lifetime_value", "group_by": "industry" } }"#,
    );
    assert_eq!(r.status, 202);
    let done = wait_job(&s, &job_id(&r), &[]);
    assert_eq!(done["result"]["row_count"], json!(11));

    // Errors: unknown job, invalid parameters at submit, a result before it exists.
    let nf = get(&s, "/analytics/jobs/00000000-0000-4000-8000-000000000000");
    assert_eq!(
        (nf.status, nf.body["type"].clone()),
        (404, json!("/problems/not-found"))
    );
    assert_eq!(get(&s, "/analytics/jobs/not-a-uuid").status, 404);
    let bad = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "customer_analysis", "parameters": {"group_by": "bogus"}}"#,
    );
    assert_eq!(bad.status, 422);
    let q = queries_with_test_packs();
    drop(s);
    let (s, _data) = serve(&db, &["--queries", q.0.to_str().unwrap_or_default()]);
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "slow_job", "parameters": {"seconds": 2}}"#,
    );
    let early = get(&s, &format!("/analytics/jobs/{}/result", job_id(&r)));
    assert_eq!(early.status, 409, "{:?}", early.body);
    assert!(early.header("retry-after").is_some());
    let running = get(&s, &format!("/analytics/jobs/{}", job_id(&r)));
    assert!(
        running.header("retry-after").is_some(),
        "Retry-After while it runs"
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_a_permanent_one_is_not() {
    let db = fixture_db().await;
    let (s, _q, _data) = serve_test_packs(
        &db,
        &[
            ("QUARRY_JOBS__BACKOFF_BASE_MS", "100"),
            ("QUARRY_JOBS__POLL_INTERVAL_MS", "100"),
        ],
    );
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "slow_job", "parameters": {"seconds": 3}}"#,
    );
    let id = job_id(&r);
    wait_for("the attempt to run", Duration::from_secs(20), || {
        (get(&s, &format!("/analytics/jobs/{id}")).body["state"] == json!("running")).then_some(())
    });
    // Let the query start, then cut its connection.
    let mut cut = false;
    for _ in 0..40 {
        if terminate_sleeping_backend(&db).await {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cut, "the job's query was found and terminated");
    let done = wait_job(&s, &id, &[]);
    assert_eq!(done["state"], json!("succeeded"), "{done:?}");
    assert_eq!(
        done["attempts"],
        json!(2),
        "one retry after the lost connection"
    );
    assert_eq!(done["result"]["row_count"], json!(11));

    // A permanent failure (a query timeout here is an SQL-level cancel of a light
    // pack run as a job) fails at once, with its reason.
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "slow_light", "parameters": {"seconds": 3}}"#,
    );
    let done = wait_job(&s, &job_id(&r), &[]);
    assert_eq!(done["state"], json!("failed"));
    assert_eq!(done["attempts"], json!(1));
    assert_eq!(done["error"]["code"], json!("timeout"));
    assert_eq!(
        get(&s, &format!("/analytics/jobs/{}/result", job_id(&r))).status,
        409
    );
}

#[tokio::test]
async fn large_results_are_stored_and_served_through_expiring_signed_links() {
    let db = fixture_db().await;
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &[],
        &[
            ("QUARRY_JOBS__INLINE_MAX_ROWS", "5"),
            ("QUARRY_JOBS__LINK_TTL_SECONDS", "2"),
        ],
        &data.0,
    );
    for (format, check) in [
        ("csv", "organization_id"),
        ("ndjson", "{\"segment\""),
        ("json", "\"rows\""),
    ] {
        let r = post(
            &s,
            "/analytics/jobs",
            &format!(
                r#"{{"operation": "customer_analysis", "parameters": {{}}, "format": "{format}"}}"#
            ),
        );
        assert_eq!(r.status, 202, "{:?}", r.body);
        let done = wait_job(&s, &job_id(&r), &[]);
        assert_eq!(done["result"]["stored"], json!(true), "{done:?}");
        assert_eq!(done["result"]["row_count"], json!(11));
        let res = get(&s, &format!("/analytics/jobs/{}/result", job_id(&r)));
        assert_eq!(res.status, 303);
        let link = res.header("location").expect("signed link").to_string();
        assert!(link.contains("signature="), "{link}");
        let file = get(&s, &link);
        assert_eq!(file.status, 200, "{}", file.raw);
        assert!(
            file.raw.contains(check),
            "{format}: {}",
            &file.raw[..file.raw.len().min(200)]
        );
        match format {
            "csv" => assert_eq!(file.raw.lines().count(), 12, "header + 11 rows"),
            "ndjson" => assert_eq!(file.raw.lines().count(), 11),
            _ => assert_eq!(file.body["rows"].as_array().map(Vec::len), Some(11)),
        }
        // Tampering with the link is refused.
        let tampered = link.replace("signature=", "signature=00");
        assert_eq!(get(&s, &tampered).status, 403);
        if format == "json" {
            std::thread::sleep(Duration::from_millis(3100));
            let expired = get(&s, &link);
            assert_eq!(
                (expired.status, expired.body["type"].clone()),
                (403, json!("/problems/link-expired"))
            );
            // A fresh link works again.
            let again = get(&s, &format!("/analytics/jobs/{}/result", job_id(&r)));
            assert_eq!(
                get(&s, again.header("location").unwrap_or_default()).status,
                200
            );
        }
    }
}

#[tokio::test]
async fn a_server_killed_mid_job_resumes_it_after_restart() {
    let db = fixture_db().await;
    let q = queries_with_test_packs();
    let data = TempDir::new("data");
    let env = [
        ("QUARRY_JOBS__LEASE_SECONDS", "2"),
        ("QUARRY_JOBS__POLL_INTERVAL_MS", "200"),
    ];
    let qdir = q.0.to_str().unwrap_or_default().to_string();
    let s = serve_with(&db, &["--queries", &qdir], &env, &data.0);
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "slow_job", "parameters": {"seconds": 2}}"#,
    );
    let id = job_id(&r);
    wait_for("the attempt to run", Duration::from_secs(20), || {
        (get(&s, &format!("/analytics/jobs/{id}")).body["state"] == json!("running")).then_some(())
    });
    s.kill();
    let s = serve_with(&db, &["--queries", &qdir], &env, &data.0);
    let done = wait_job(&s, &id, &[]);
    assert_eq!(done["state"], json!("succeeded"), "{done:?}");
    assert_eq!(done["attempts"], json!(2), "resumed by a second attempt");

    // With no attempts left, the job fails with a reason instead of staying running.
    s.kill();
    let env1 = [
        ("QUARRY_JOBS__LEASE_SECONDS", "2"),
        ("QUARRY_JOBS__POLL_INTERVAL_MS", "200"),
        ("QUARRY_JOBS__MAX_ATTEMPTS", "1"),
    ];
    let s = serve_with(&db, &["--queries", &qdir], &env1, &data.0);
    let r = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "slow_job", "parameters": {"seconds": 3}}"#,
    );
    let id = job_id(&r);
    wait_for("the attempt to run", Duration::from_secs(20), || {
        (get(&s, &format!("/analytics/jobs/{id}")).body["state"] == json!("running")).then_some(())
    });
    s.kill();
    let s = serve_with(&db, &["--queries", &qdir], &env1, &data.0);
    let done = wait_job(&s, &id, &[]);
    assert_eq!(done["state"], json!("failed"));
    let msg = done["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("server stopped while attempt 1 of 1 was running"),
        "{msg}"
    );
}

/// A webhook receiver on loopback: answers 500 to the first request, 200 after,
/// and hands every body (with its signature header) to the test.
fn webhook_receiver() -> (String, mpsc::Receiver<(String, Option<String>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut sig = None;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-quarry-signature:") {
                    sig = line.split_once(':').map(|x| x.1.trim().to_string());
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let status = if first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if !first {
                let _ = tx.send((String::from_utf8_lossy(&body).to_string(), sig));
            }
            first = false;
        }
    });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn finished_jobs_notify_webhooks_with_retries_and_a_signature() {
    let db = fixture_db().await;
    let (url, rx) = webhook_receiver();
    let hooks = format!("[\"{url}\"]");
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &[],
        &[
            ("QUARRY_NOTIFY__WEBHOOKS", &hooks),
            ("QUARRY_NOTIFY__WEBHOOK_SECRET", "s3cret"),
        ],
        &data.0,
    );
    let r = post(&s, "/analytics/jobs", r#"{"operation": "simple_demo"}"#);
    let id = job_id(&r);
    wait_job(&s, &id, &[]);
    let (body, sig) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a webhook delivery after one failed attempt");
    let ev: Value = serde_json::from_str(&body).expect("event JSON");
    assert_eq!(ev["type"], json!("quarry.job.succeeded"));
    assert_eq!(ev["specversion"], json!("1.0"));
    assert_eq!(ev["subject"], json!(id));
    assert_eq!(ev["data"]["operation"], json!("simple_demo"));
    assert_eq!(ev["data"]["state"], json!("succeeded"));
    assert_eq!(
        sig,
        Some(quarry_api::notify::signature("s3cret", body.as_bytes()))
    );
}

#[tokio::test]
async fn a_failed_inbox_file_is_published_as_a_system_error() {
    let db = fixture_db().await;
    let (url, rx) = webhook_receiver();
    let hooks = format!("[\"{url}\"]");
    let data = TempDir::new("data");
    let inbox_root = TempDir::new("inbox");
    let inbox = inbox_root.0.join("inbox");
    std::fs::create_dir_all(inbox.join("crm-data")).expect("inbox");
    let s = serve_with(
        &db,
        &["--inbox", inbox.to_str().unwrap_or_default()],
        &[("QUARRY_NOTIFY__WEBHOOKS", &hooks)],
        &data.0,
    );
    // Not JSON at all: the whole file fails, and operations hear about it.
    std::fs::write(
        inbox.join("crm-data/accounts-broken.json"),
        "this is not json",
    )
    .expect("write");
    let (body, _) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a system error event");
    let ev: Value = serde_json::from_str(&body).expect("event JSON");
    assert_eq!(ev["type"], json!("quarry.system.error"));
    assert_eq!(ev["data"]["component"], json!("ingest"));
    assert!(
        ev["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("crm-data/accounts-broken.json"),
        "{ev}"
    );
    assert!(inbox_root
        .0
        .join("failed/crm-data/accounts-broken.json")
        .exists());
    drop(s);
}

/// A finished job wakes the runner: with one slot and a poll of a minute, five
/// queued one-second jobs all finish long before the next poll (before, each
/// waited for a poll tick once the first had taken the slot).
#[tokio::test]
async fn a_finished_job_wakes_the_runner_for_the_next_one() {
    let db = fixture_db().await;
    let (s, _q, _data) = serve_test_packs(
        &db,
        &[
            ("QUARRY_JOBS__CONCURRENCY", "1"),
            ("QUARRY_JOBS__POLL_INTERVAL_MS", "60000"),
        ],
    );
    let ids: Vec<String> = (0..5)
        .map(|_| {
            let r = post(
                &s,
                "/analytics/jobs",
                r#"{"operation": "slow_job", "parameters": {"seconds": 1}}"#,
            );
            assert_eq!(r.status, 202, "{:?}", r.body);
            job_id(&r)
        })
        .collect();
    // Well under the one-minute poll: only wake-ups can have started them.
    wait_for("all five jobs", Duration::from_secs(40), || {
        ids.iter()
            .all(|id| get(&s, &format!("/analytics/jobs/{id}")).body["state"] == json!("succeeded"))
            .then_some(())
    });
}

/// The local cache writes in batches (one statement for the entries queued
/// while the previous one ran): many concurrent puts, some for the same key,
/// all succeed, each key holds one of the values given for it, and every put
/// returns only once its entry is stored.
#[tokio::test]
async fn concurrent_cache_puts_are_batched_and_all_stored() {
    use quarry_core::ports::{Cache, CachedValue};
    let db = quarry_tests::empty_db().await;
    let writer =
        quarry_api::pool(&quarry_db::writer_url(&db.url).expect("writer url"), 4).expect("pool");
    let cache = std::sync::Arc::new(quarry_db::store::PgCache::new(writer));
    let ttl = Duration::from_secs(60);
    let puts = (0..200).map(|i| {
        let cache = cache.clone();
        // 150 distinct keys, then 50 puts on one key: batches hold duplicates.
        let key = if i < 150 {
            format!("k{i}")
        } else {
            "same".to_string()
        };
        async move {
            let v = CachedValue::Inline(bytes::Bytes::from(json!({ "i": i }).to_string()));
            cache
                .put(&key, "simple_demo", &v, ttl)
                .await
                .map(|_| (key, i))
        }
    });
    let done = futures_util::future::join_all(puts).await;
    for r in &done {
        assert!(r.is_ok(), "a put failed: {r:?}");
    }
    for i in [0, 77, 149] {
        match cache.get(&format!("k{i}")).await.expect("get") {
            Some(CachedValue::Inline(v)) => assert_eq!(v, json!({ "i": i }).to_string()),
            other => panic!("k{i}: {other:?}"),
        }
    }
    match cache.get("same").await.expect("get") {
        Some(CachedValue::Inline(v)) => {
            let v: serde_json::Value = serde_json::from_slice(&v).expect("json");
            let i = v["i"].as_i64().expect("i");
            assert!((150..200).contains(&i), "{v}");
        }
        other => panic!("same: {other:?}"),
    }
    // An entry comes back in the very bytes it was stored in (key order and
    // spacing too: they are the answer as first served), a pointer comes back
    // as a pointer, and bytes that are not JSON are refused, not stored.
    let served = bytes::Bytes::from_static(b"{\"operation\": \"x\",  \"b\":1, \"a\":[2]}");
    let put = |key: &'static str, v: CachedValue| {
        let cache = cache.clone();
        async move { cache.put(key, "simple_demo", &v, ttl).await }
    };
    put("bytes", CachedValue::Inline(served.clone()))
        .await
        .expect("put");
    assert_eq!(
        cache.get("bytes").await.expect("get"),
        Some(CachedValue::Inline(served))
    );
    let pointer = CachedValue::Pointer {
        object_key: "cache/abc.json".into(),
    };
    put("pointer", pointer.clone()).await.expect("put");
    assert_eq!(cache.get("pointer").await.expect("get"), Some(pointer));
    let refused = put(
        "broken",
        CachedValue::Inline(bytes::Bytes::from_static(b"{\"rows\": [")),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(cache.get("broken").await.expect("get"), None);
    let owner = db.client().await;
    let rows: i64 = owner
        .query_one("SELECT count(*) FROM quarry.cache", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 153, "150 keys, `same`, `bytes` and `pointer`");
}

/// A job's large result is written as its rows are read: past the cap on an
/// answer held in memory (api.max_answer_bytes), in each format, with the same
/// rows a synchronous call gives; a failure after several batches were
/// written leaves no object, not even a partial one.
#[tokio::test]
async fn large_job_results_are_written_as_read_and_a_failure_midway_leaves_nothing() {
    let db = fixture_db().await;
    let (s, _q, data) = serve_test_packs(
        &db,
        &[
            ("QUARRY_API__MAX_ANSWER_BYTES", "20000"),
            ("QUARRY_API__SYNC_ANSWER_BYTES", "20000"),
            ("QUARRY_JOBS__POLL_INTERVAL_MS", "100"),
        ],
    );
    let submit = |op: &str, params: &str, format: &str| {
        let r = post(
            &s,
            "/analytics/jobs",
            &format!(r#"{{"operation": "{op}", "parameters": {params}, "format": "{format}"}}"#),
        );
        assert_eq!(r.status, 202, "{:?}", r.body);
        job_id(&r)
    };
    let fetch = |id: &str| {
        let res = get(&s, &format!("/analytics/jobs/{id}/result"));
        assert_eq!(res.status, 303, "{}", res.raw);
        get(&s, res.header("location").expect("signed link"))
    };
    // 10,000 rows: about 250 KB as JSON, far past the 20,000-byte cap.
    for format in ["ndjson", "csv", "json"] {
        let id = submit("many_rows", r#"{"rows": 10000}"#, format);
        let done = wait_job(&s, &id, &[]);
        assert_eq!(done["state"], json!("succeeded"), "{format}: {done}");
        assert_eq!(done["result"]["row_count"], json!(10000), "{format}");
        let file = fetch(&id);
        assert_eq!(file.status, 200);
        let lines: Vec<&str> = file.raw.lines().collect();
        match format {
            "ndjson" => {
                assert_eq!(lines.len(), 10000);
                assert_eq!(lines[0], r#"{"n":1,"label":"row 1"}"#);
                assert_eq!(lines[9999], r#"{"n":10000,"label":"row 10000"}"#);
            }
            "csv" => {
                assert_eq!(lines.len(), 10001, "header + rows");
                assert_eq!(lines[0], "n,label");
                assert_eq!(lines[10000], "10000,row 10000");
            }
            _ => {
                let rows = file.body["rows"].as_array().expect("rows");
                assert_eq!(rows.len(), 10000);
                assert_eq!(rows[4999], json!({"n": 5000, "label": "row 5000"}));
                assert_eq!(file.body["row_count"], json!(10000));
                assert_eq!(file.body["truncated"], json!(false));
                assert_eq!(file.body["operation"], json!("many_rows"));
                assert_eq!(file.body["parameters"], json!({"rows": 10000}));
                assert_eq!(
                    file.body["columns"],
                    json!([{"name": "n", "pg_type": "int4"}, {"name": "label", "pg_type": "text"}])
                );
                assert!(file.body["data_version"].is_i64());
            }
        }
    }

    // Fails at row 7,000: three batches of 2,000 rows were already written.
    let id = submit(
        "fails_midway",
        r#"{"rows": 10000, "fail_at": 7000}"#,
        "ndjson",
    );
    let done = wait_job(&s, &id, &[]);
    assert_eq!(done["state"], json!("failed"), "{done}");
    let left: Vec<String> = std::fs::read_dir(data.0.join("results/jobs"))
        .expect("the results folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&id))
        .collect();
    assert!(
        left.is_empty(),
        "nothing of the failed job's result is left: {left:?}"
    );
    let res = get(&s, &format!("/analytics/jobs/{id}/result"));
    assert_ne!(res.status, 200);
}
