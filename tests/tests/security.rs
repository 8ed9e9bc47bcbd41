//! Black-box tests of authentication, scopes, rate limiting and CORS against a
//! real server with keys made by `quarry keys create`, and of the limits every
//! query runs under on a shared connection.

mod common;

use std::time::Duration;

use common::*;
use quarry_tests::fixture_db;
use serde_json::json;

fn bearer(key: &str) -> String {
    format!("Bearer {}", key.trim())
}

#[tokio::test]
async fn keys_scopes_and_ownership() {
    let db = fixture_db().await;
    let read = quarry(
        &db,
        &["keys", "create", "--name", "analyst", "--scope", "read"],
    );
    let jobs = quarry(
        &db,
        &[
            "keys", "create", "--name", "batch", "--scope", "read", "--scope", "jobs",
        ],
    );
    let other = quarry(
        &db,
        &["keys", "create", "--name", "other", "--scope", "jobs"],
    );
    let admin = quarry(
        &db,
        &["keys", "create", "--name", "ops", "--scope", "admin"],
    );
    let list = quarry(&db, &["keys", "list", "--json"]);
    assert!(!list.contains(read.trim()), "secrets are never listed");
    let (read, jobs, other, admin) = (bearer(&read), bearer(&jobs), bearer(&other), bearer(&admin));
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &["--allow-custom-sql"],
        &[("QUARRY_AUTH__REFRESH_SECONDS", "1")],
        &data.0,
    );

    // No key, a wrong key: 401 with WWW-Authenticate. Health stays open.
    assert_eq!(get(&s, "/health").status, 200);
    let r = get(&s, "/analytics?operation=simple_demo");
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (401, json!("/problems/unauthorized"))
    );
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let forged =
        "Bearer qk_000000000000_0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(
        request(&s, "GET", "/operations", None, &[("Authorization", forged)]).status,
        401
    );

    // read: light operations, yes; jobs, no; heavy operation (a job), no.
    let h = [("Authorization", read.as_str())];
    assert_eq!(
        request(&s, "GET", "/analytics?operation=simple_demo", None, &h).status,
        200
    );
    let x = [("X-Api-Key", read.trim_start_matches("Bearer "))];
    assert_eq!(
        request(&s, "GET", "/operations", None, &x).status,
        200,
        "X-Api-Key works too"
    );
    let r = request(
        &s,
        "POST",
        "/analytics/jobs",
        Some(r#"{"operation": "simple_demo"}"#),
        &h,
    );
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (403, json!("/problems/forbidden"))
    );
    assert!(r.body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("`jobs` scope"));
    assert_eq!(
        request(
            &s,
            "GET",
            "/analytics?operation=multi_dimensional_analytics",
            None,
            &h
        )
        .status,
        403
    );
    // Custom SQL needs admin.
    let sql =
        r#"{"operation": "custom_complex_query", "parameters": {"query": "SELECT 1 AS one"}}"#;
    assert_eq!(request(&s, "POST", "/analytics", Some(sql), &h).status, 403);
    let a = [("Authorization", admin.as_str())];
    assert_eq!(request(&s, "POST", "/analytics", Some(sql), &a).status, 200);

    // Jobs are visible to their owner and admins only.
    let j = [("Authorization", jobs.as_str())];
    let r = request(
        &s,
        "POST",
        "/analytics/jobs",
        Some(r#"{"operation": "simple_demo"}"#),
        &j,
    );
    assert_eq!(r.status, 202);
    let id = r.body["job_id"].as_str().unwrap_or_default().to_string();
    let path = format!("/analytics/jobs/{id}");
    wait_job(&s, &id, &j);
    assert_eq!(
        request(&s, "GET", &path, None, &[("Authorization", other.as_str())]).status,
        404
    );
    assert_eq!(request(&s, "GET", &path, None, &a).status, 200);

    // Revocation takes effect within auth.refresh_seconds.
    let id_of = |b: &str| {
        b.trim_start_matches("Bearer qk_")
            .split('_')
            .next()
            .unwrap_or("")
            .to_string()
    };
    quarry(&db, &["keys", "revoke", &id_of(&read)]);
    wait_for("the revocation", Duration::from_secs(10), || {
        (request(&s, "GET", "/operations", None, &h).status == 401).then_some(())
    });
}

#[tokio::test]
async fn each_key_is_rate_limited_on_its_own() {
    let db = fixture_db().await;
    let slow = bearer(&quarry(
        &db,
        &[
            "keys", "create", "--name", "slow", "--scope", "read", "--rate", "2",
        ],
    ));
    let fast = bearer(&quarry(
        &db,
        &["keys", "create", "--name", "fast", "--scope", "read"],
    ));
    let (s, _data) = serve(&db, &[]);
    let h = [("Authorization", slow.as_str())];
    let mut limited = None;
    for _ in 0..12 {
        let r = request(&s, "GET", "/operations", None, &h);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 12 rapid requests at 2/s");
    assert_eq!(r.body["type"], json!("/problems/rate-limited"));
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&wait), "{wait}");
    // Another key is not affected.
    assert_eq!(
        request(
            &s,
            "GET",
            "/operations",
            None,
            &[("Authorization", fast.as_str())]
        )
        .status,
        200
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        request(&s, "GET", "/operations", None, &h).status,
        200,
        "the limit refills"
    );
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let db = fixture_db().await;
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &[],
        &[(
            "QUARRY_API__CORS_ALLOWED_ORIGINS",
            "[\"https://app.example\"]",
        )],
        &data.0,
    );
    let pre = request(
        &s,
        "OPTIONS",
        "/analytics",
        None,
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,authorization",
            ),
        ],
    );
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let r = request(
        &s,
        "GET",
        "/health",
        None,
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = request(
        &s,
        "GET",
        "/health",
        None,
        &[("Origin", "https://app.example")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn open_access_is_for_loopback_only() {
    let out = std::process::Command::new(quarry_tests::quarry_bin())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(quarry_tests::repo_root())
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen") && err.contains("quarry keys create"),
        "{err}"
    );
}

/// An address that keeps presenting invalid keys is slowed down: after a burst
/// of failures it gets 429 with Retry-After instead of 401, while a valid key
/// keeps working.
#[tokio::test]
async fn invalid_keys_count_against_the_callers_address() {
    let db = fixture_db().await;
    let good = bearer(&quarry(
        &db,
        &["keys", "create", "--name", "good", "--scope", "read"],
    ));
    let (s, _data) = serve(&db, &[]);
    let bad = [("Authorization", "Bearer qk_0000000000_notthesecret")];
    let statuses: Vec<u16> = (0..14)
        .map(|_| request(&s, "GET", "/operations", None, &bad).status)
        .collect();
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].contains(&429), "{statuses:?}");
    let r = request(&s, "GET", "/operations", None, &bad);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    let ok = request(
        &s,
        "GET",
        "/operations",
        None,
        &[("Authorization", good.as_str())],
    );
    assert_eq!(ok.status, 200, "a valid key is not held back");
}

fn fixture_pack(name: &str) -> quarry_core::Pack {
    let yaml = quarry_tests::repo_root().join(format!("tests/fixtures/packs/{name}.yaml"));
    let sources = quarry_core::files::read_pack_sources(&[yaml]).expect("pack source");
    quarry_core::packs::loader::check_pack(&sources[0])
        .0
        .expect("the fixture pack passes check")
}

/// The statement timeout is each query's own: a light operation run on the
/// connection a heavy one just used (as a pooled connection is reused) still
/// stops at its own short limit, and the heavy one after it gets its long one
/// back; nothing a query set outlives it on the connection.
#[tokio::test]
async fn a_light_operation_after_a_heavy_one_on_the_same_connection_gets_its_own_timeout() {
    use quarry_core::packs::params::InputStyle;
    let db = fixture_db().await;
    let mut reader = quarry_db::connect(&quarry_db::reader_url(&db.url).expect("reader url"))
        .await
        .expect("connect as the reader");
    let baseline: String = reader
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    let (heavy, light) = (fixture_pack("slow_job"), fixture_pack("slow_light"));
    let sleep = |seconds: f64| {
        json!({ "seconds": seconds })
            .as_object()
            .cloned()
            .unwrap_or_default()
    };

    // Heavy (60 s limit): sleeps 1.5 s and answers.
    quarry_db::execute_pack(
        &mut reader,
        &heavy,
        &sleep(1.5),
        InputStyle::Json,
        Default::default(),
    )
    .await
    .expect("the heavy operation finishes within its 60 s");
    // Light (1 s limit) on the same connection: stopped at 1 s, not 60.
    let started = std::time::Instant::now();
    let err = quarry_db::execute_pack(
        &mut reader,
        &light,
        &sleep(5.0),
        InputStyle::Json,
        Default::default(),
    )
    .await
    .expect_err("the light operation overruns its own limit");
    assert!(
        matches!(err, quarry_db::RunError::Query(quarry_db::QueryError::Timeout(d)) if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped by its own 1 s limit, not the sleep"
    );
    // Heavy again on the same connection: the light one's 1 s did not stay.
    quarry_db::execute_pack(
        &mut reader,
        &heavy,
        &sleep(1.5),
        InputStyle::Json,
        Default::default(),
    )
    .await
    .expect("the heavy operation has its 60 s again");
    // And the connection is back at the role's own setting, read-only still.
    let after: String = reader
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(after, baseline);
    let write = reader
        .batch_execute("UPDATE canonical.organizations SET name = name WHERE false")
        .await;
    assert!(
        write.is_err(),
        "the reader connection stays unable to write"
    );
}

fn max_rows(n: u64) -> quarry_db::CallOptions {
    quarry_db::CallOptions {
        max_rows: Some(n),
        ..Default::default()
    }
}

/// Runs `pack` the way the API runs a light operation: its prepared statement
/// on the session as `state` says it is, without a transaction of its own.
async fn run_light(
    reader: &quarry_db::Client,
    state: &mut quarry_db::SessionState,
    pack: &quarry_core::Pack,
    input: serde_json::Value,
    opts: quarry_db::CallOptions,
) -> Result<quarry_db::QueryOutput, quarry_db::QueryError> {
    let input = input.as_object().cloned().unwrap_or_default();
    let (_, q, limits) = quarry_db::ops::prepare(
        pack,
        &input,
        quarry_core::packs::params::InputStyle::Json,
        opts,
    )
    .expect("valid call");
    let stmt = reader
        .prepare_typed(&q.sql, &quarry_db::bind_types(&q))
        .await
        .expect("prepare");
    quarry_db::run_light(reader, state, &stmt, &q, limits).await
}

/// The light path sets the session's timeout only when it changes, so the
/// same guarantees must hold without a transaction per call: a light call
/// after a heavy one (either path) stops at its own limit, the session stays
/// read-only, and the row cap holds with the connection usable after it.
#[tokio::test]
async fn the_light_path_keeps_each_calls_timeout_read_only_and_row_cap() {
    use quarry_core::packs::params::InputStyle;
    let db = fixture_db().await;
    let mut reader = quarry_db::connect(&quarry_db::reader_url(&db.url).expect("reader url"))
        .await
        .expect("connect as the reader");
    let mut state = quarry_db::SessionState::default();
    let (heavy, light) = (fixture_pack("slow_job"), fixture_pack("slow_light"));
    let timed_out_at = |r: Result<quarry_db::QueryOutput, quarry_db::QueryError>, limit: u64| {
        assert!(
            matches!(&r, Err(quarry_db::QueryError::Timeout(d)) if *d == Duration::from_secs(limit)),
            "{r:?}"
        );
    };

    let plain = quarry_db::CallOptions::default();
    // Heavy through the light path (as a job runs), then light: 1 s, not 60.
    run_light(&reader, &mut state, &heavy, json!({"seconds": 1.5}), plain)
        .await
        .expect("the heavy operation finishes within its 60 s");
    let started = std::time::Instant::now();
    let r = run_light(&reader, &mut state, &light, json!({"seconds": 5}), plain).await;
    timed_out_at(r, 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "its own 1 s limit"
    );
    // Heavy again, on the light path: its 60 s is set back.
    run_light(&reader, &mut state, &heavy, json!({"seconds": 1.5}), plain)
        .await
        .expect("the heavy operation has its 60 s again");
    // A heavy one in a transaction (SET LOCAL) between two light ones: the
    // second light one sends no SET and still stops at 1 s.
    run_light(&reader, &mut state, &light, json!({"seconds": 0}), plain)
        .await
        .expect("a quick light call");
    quarry_db::execute_pack(
        &mut reader,
        &heavy,
        &json!({"seconds": 1.5})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        InputStyle::Json,
        Default::default(),
    )
    .await
    .expect("the heavy operation in its transaction has its 60 s");
    let r = run_light(&reader, &mut state, &light, json!({"seconds": 5}), plain).await;
    timed_out_at(r, 1);

    // None of these packs declares work_mem: the session has the server's own.
    let show = |what: &'static str| {
        let reader = &reader;
        async move {
            reader
                .query_one(&format!("SHOW {what}"), &[])
                .await
                .expect("show")
                .get::<_, String>(0)
        }
    };
    let server_default: String = {
        let fresh = quarry_db::connect(&quarry_db::reader_url(&db.url).expect("reader url"))
            .await
            .expect("connect");
        fresh
            .query_one("SHOW work_mem", &[])
            .await
            .expect("show")
            .get(0)
    };
    assert_eq!(show("work_mem").await, server_default);

    // Read-only without a transaction of our own.
    let ro: String = reader
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(ro, "on");
    assert!(
        reader
            .batch_execute("UPDATE canonical.organizations SET name = name WHERE false")
            .await
            .is_err(),
        "the session cannot write"
    );

    // The row cap: 10 of 5,000 rows, cut; the connection answers the next call
    // with its own rows, not the rest of the first.
    let rows = fixture_pack("many_rows");
    let out = run_light(
        &reader,
        &mut state,
        &rows,
        json!({"rows": 5000}),
        max_rows(10),
    )
    .await
    .expect("capped answer");
    assert_eq!(out.rows.len(), 10);
    assert!(out.truncated);
    assert_eq!(out.rows[9][0], json!(10));
    let out = run_light(&reader, &mut state, &rows, json!({"rows": 3}), max_rows(10))
        .await
        .expect("next answer");
    assert_eq!(out.rows.len(), 3);
    assert!(!out.truncated);
    assert_eq!(out.rows[0][0], json!(1));

    // With the cap in the statement (as `ops::prepare` writes it unless the
    // caller reads the cap itself) the database makes no rows past it.
    // 1,000 rows of 20 ms each, capped at 5: the answer comes with the
    // backend already idle, not still making the other 995 (20 s).
    let pid: i32 = reader
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let out = run_light(
        &reader,
        &mut state,
        &fixture_pack("slow_rows"),
        json!({"rows": 1000, "ms_per_row": 20}),
        max_rows(5),
    )
    .await
    .expect("capped answer");
    assert_eq!((out.rows.len(), out.truncated), (5, true));
    let admin = quarry_db::connect(&db.url).await.expect("connect as admin");
    let backend: String = admin
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .expect("the reader's backend")
        .get(0);
    assert_eq!(backend, "idle", "the database stopped at the cap");

    // A call with its own work_mem (a pack's `work_mem_mb`) sets it, with the
    // timeout unchanged; the next call without one sets the server's back.
    run_light(
        &reader,
        &mut state,
        &rows,
        json!({"rows": 3}),
        quarry_db::CallOptions {
            work_mem_mb: Some(32),
            ..Default::default()
        },
    )
    .await
    .expect("answer");
    assert_eq!(show("work_mem").await, "32MB");
    run_light(&reader, &mut state, &rows, json!({"rows": 3}), plain)
        .await
        .expect("answer");
    assert_eq!(show("work_mem").await, server_default);
}

/// Through the API: an operation's first answer runs on the light path (the
/// row cap read by the server, the rest left to the connection to discard);
/// once an answer was cut, the operation's next calls carry the cap in their
/// SQL, so the database stops at it; an answer within the cap sends the
/// operation back to the light path. Which path ran shows in the reader's
/// backend right after the answer: idle when the database stopped at the
/// cap, still making rows when it did not. (One reader connection, so every
/// call is on the backend the test watches.)
#[tokio::test]
async fn an_operation_cut_by_its_row_cap_gets_the_cap_in_its_sql() {
    let db = fixture_db().await;
    let (s, _q, _data) = serve_test_packs(&db, &[("QUARRY_API__POOL_SIZE", "1")]);
    let admin = db.client().await;
    let reader_states = || {
        let admin = &admin;
        async move {
            admin
                .query(
                    "SELECT state FROM pg_stat_activity
                      WHERE usename = 'quarry_reader' AND datname = current_database()",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .iter()
                .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    // The pool's one connection is the only reader backend that runs queries
    // (the data-version listener, also the reader, only waits).
    let busy = || async { reader_states().await.iter().any(|s| s == "active") };
    // slow_rows caps at 1,000 rows; 4,000 rows of 1 ms each would keep a
    // backend that is not stopped at the cap busy for 3 s or more after it.
    let call = |rows: u32, ms: u32| {
        let r = get(
            &s,
            &format!("/analytics/slow_rows?rows={rows}&ms_per_row={ms}"),
        );
        assert_eq!(r.status, 200, "{}", r.raw);
        (
            r.body["row_count"].as_u64().unwrap_or_default(),
            r.body["truncated"] == json!(true),
        )
    };
    let settle = || async {
        // The discarded rows finish in a few seconds; the backend goes idle.
        for _ in 0..200 {
            if !busy().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the reader never went idle: {:?}", reader_states().await);
    };

    // First call, light: cut by the server, the backend still busy after it.
    assert_eq!(call(4000, 1), (1000, true));
    assert!(
        busy().await,
        "the light path leaves the rest to the connection: {:?}",
        reader_states().await
    );
    settle().await;
    // It was cut: the next call has the cap in its SQL, and the database stops.
    assert_eq!(call(4000, 1), (1000, true));
    assert!(
        !busy().await,
        "with the cap in the SQL the database made no row past it: {:?}",
        reader_states().await
    );
    // An answer within the cap sends it back to the light path.
    assert_eq!(call(5, 0), (5, false));
    assert_eq!(call(4000, 1), (1000, true));
    assert!(busy().await, "light again: {:?}", reader_states().await);
    settle().await;
}
