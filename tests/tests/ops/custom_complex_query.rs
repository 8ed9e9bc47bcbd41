// Tests for the `custom_complex_query` operation: arbitrary SQL, but read-only,
// as the reader role, one statement, with timeout and row cap.

use quarry_tests::fixture_db;
use serde_json::json;

#[tokio::test]
async fn runs_a_read_only_query() {
    let db = fixture_db().await;
    let rows = db
        .run("custom_complex_query", json!({"query": "SELECT source_system, count(*) AS n FROM canonical.organizations GROUP BY 1 ORDER BY 1;"}))
        .await;
    // Fixture: 6 crm accounts, 3 erp customers, 2 shop buyers.
    assert_eq!(
        rows,
        vec![
            json!({"source_system": "crm", "n": 6})
                .as_object()
                .cloned()
                .unwrap(),
            json!({"source_system": "erp", "n": 3})
                .as_object()
                .cloned()
                .unwrap(),
            json!({"source_system": "shop", "n": 2})
                .as_object()
                .cloned()
                .unwrap(),
        ]
    );
}

#[tokio::test]
async fn unknown_table_names_the_problem_and_sqlstate() {
    let db = fixture_db().await;
    let err = db
        .run_err(
            "custom_complex_query",
            json!({"query": "SELECT * FROM non_existent_table"}),
        )
        .await;
    assert!(err.contains("42P01"), "{err}");
    assert!(err.contains("non_existent_table"), "{err}");
}

#[tokio::test]
async fn writes_and_second_statements_are_refused() {
    let db = fixture_db().await;
    for q in [
        "DELETE FROM canonical.organizations",
        "SELECT 1; DELETE FROM canonical.organizations",
        "SELECT 1) x; DELETE FROM canonical.organizations; SELECT * FROM (SELECT 1",
        "WITH d AS (DELETE FROM canonical.organizations RETURNING 1) SELECT * FROM d",
        "SELECT nextval('canonical.organizations_id_seq')",
    ] {
        let err = db
            .run_err("custom_complex_query", json!({"query": q}))
            .await;
        // Refused by the parser check where it is compiled in, else by the database.
        assert!(
            err.starts_with("SQL error")
                || (quarry_core::packs::sqlcheck::AVAILABLE
                    && err.starts_with("invalid parameters")),
            "{q}: {err}"
        );
    }
    let rows = db
        .run(
            "custom_complex_query",
            json!({"query": "SELECT count(*) AS n FROM canonical.organizations"}),
        )
        .await;
    assert_eq!(rows[0]["n"], json!(11), "nothing was deleted");
}

/// Custom SQL runs as the reader, which cannot act outside its own answer:
/// no terminating or cancelling other sessions (the server's LISTEN connection,
/// another caller's query), no advisory locks, no notifications to the servers'
/// data-version channel, no raising its own statement timeout.
#[tokio::test]
async fn the_reader_cannot_signal_lock_notify_or_reconfigure() {
    let db = fixture_db().await;
    for q in [
        "SELECT pg_terminate_backend(4242) AS done",
        "SELECT pg_cancel_backend(pg_backend_pid()) AS done",
        "SELECT pg_advisory_lock(42) AS done",
        "SELECT pg_try_advisory_xact_lock(42) AS done",
        "SELECT pg_notify('quarry_data_version', '999') AS done",
        "SELECT set_config('statement_timeout', '0', false) AS done",
        "SELECT count(*) AS done FROM pg_stat_get_activity(NULL)",
    ] {
        // The parser check names the function before the query is sent...
        let err = db
            .run_err("custom_complex_query", json!({"query": q}))
            .await;
        if quarry_core::packs::sqlcheck::AVAILABLE {
            assert!(err.contains("which caller SQL may not call"), "{q}: {err}");
        } else {
            assert!(err.contains("42501"), "{q}: {err}");
        }
        // ...and the database refuses it to the reader role all the same.
        let reader = quarry_db::connect_reader(&db.url).await.expect("reader");
        let err = reader
            .simple_query(q)
            .await
            .expect_err(q)
            .as_db_error()
            .map(|e| format!("{}: {}", e.code().code(), e.message()))
            .unwrap_or_default();
        assert!(
            err.contains("42501") && err.contains("permission denied for function"),
            "{q}: {err}"
        );
    }
    // Nor see the server's other sessions, of this database or any other.
    let err = db
        .run_err(
            "custom_complex_query",
            json!({"query": "SELECT datname, usename FROM pg_stat_activity"}),
        )
        .await;
    assert!(
        err.contains("permission denied for view pg_stat_activity"),
        "{err}"
    );
}

#[tokio::test]
async fn internal_schema_is_not_readable() {
    let db = fixture_db().await;
    let err = db
        .run_err(
            "custom_complex_query",
            json!({"query": "SELECT * FROM quarry.ingest_files"}),
        )
        .await;
    assert!(err.contains("42501"), "permission denied expected: {err}");
    // The reader may see the documented view instead.
    let rows = db
        .run(
            "custom_complex_query",
            json!({"query": "SELECT count(*) AS n FROM canonical.ingest_files"}),
        )
        .await;
    assert_eq!(rows[0]["n"], json!(3));
}

#[tokio::test]
async fn row_cap_and_timeout_apply() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "custom_complex_query",
            json!({"query": "SELECT g FROM generate_series(1, 20000) g"}),
        )
        .await;
    assert_eq!(rows.len(), 10_000, "max_rows of the pack caps the result");
    let opts = quarry_db::CallOptions {
        timeout: Some(std::time::Duration::from_millis(300)),
        allow_raw_sql: true,
        ..Default::default()
    };
    let err = db
        .try_run_with(
            "custom_complex_query",
            json!({"query": "SELECT pg_sleep(5)"}),
            opts,
        )
        .await
        .expect_err("must time out");
    assert!(err.contains("statement timeout"), "{err}");
}

#[tokio::test]
async fn disabled_unless_enabled() {
    let db = fixture_db().await;
    let err = db
        .try_run_with(
            "custom_complex_query",
            json!({"query": "SELECT 1"}),
            Default::default(),
        )
        .await
        .expect_err("disabled by default");
    assert!(err.contains("QUARRY_ALLOW_CUSTOM_SQL"), "{err}");
    let err = db
        .run_err("custom_complex_query", json!({"query": "  ;  "}))
        .await;
    assert!(err.contains("`query`") && err.contains("empty"), "{err}");
}
