//! End to end on generated data: `quarry demo-data` writes exports of all three
//! sources with known defects and records what a correct load must produce;
//! `quarry ingest` must produce exactly that (per-file counts, quarantine reasons,
//! row counts, versions and money sums), and a second delivery must change nothing.

use std::process::Command;

use quarry_tests::{empty_db, quarry_bin, repo_root};
use serde_json::{json, Value};

#[tokio::test]
async fn generated_exports_load_exactly_as_recorded() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| {
        Command::new(quarry_bin())
            .args(args)
            .current_dir(repo_root())
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run quarry")
    };
    let dirs = dir.display().to_string();
    let out = run(&["demo-data", &dirs, "--scale", "3000", "--seed", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("json");

    let out = run(&["ingest", "--json", &dirs]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("reports");
    // expected.json and the companies' truth sit beside the exports; no mapping claims them.
    let (skipped, reports): (Vec<Value>, Vec<Value>) = all
        .into_iter()
        .partition(|r| r["status"] == json!("skipped"));
    assert_eq!(
        skipped.iter().map(|r| r["key"].clone()).collect::<Vec<_>>(),
        [json!("expected-companies.csv"), json!("expected.json")]
    );
    let files = expected["files"].as_array().expect("files");
    assert_eq!(reports.len(), files.len());
    for (got, want) in reports.iter().zip(files) {
        for field in [
            "key",
            "records_read",
            "inserted",
            "updated",
            "unchanged",
            "stale",
            "quarantined",
        ] {
            assert_eq!(got[field], want[field], "{}: {field}", want["key"]);
        }
        assert_eq!(got["status"], json!("loaded"));
    }
    let c = db.client().await;
    for (table, n) in expected["rows"].as_object().expect("rows") {
        let got: i64 = c
            .query_one(&format!("SELECT count(*) FROM canonical.{table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(json!(got), *n, "rows in {table}");
    }
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM canonical.organizations WHERE version = 2),
                    (SELECT sum(total_amount)::text FROM canonical.orders),
                    (SELECT sum(amount)::text FROM canonical.opportunities)",
            &[],
        )
        .await
        .expect("sums");
    assert_eq!(
        json!(row.get::<_, i64>(0)),
        expected["versioned_organizations"]
    );
    assert_eq!(
        json!(row.get::<_, String>(1)),
        expected["orders_total_amount"]
    );
    assert_eq!(
        json!(row.get::<_, String>(2)),
        expected["opportunities_amount"]
    );

    // The same delivery again: all duplicates, nothing new.
    let out = run(&["ingest", "--json", &dirs]);
    let again: Vec<Value> = serde_json::from_slice(&out.stdout).expect("reports");
    assert!(
        again
            .iter()
            .filter(|r| r["status"] != json!("skipped"))
            .all(|r| r["status"] == json!("duplicate")),
        "{again:?}"
    );
    let history: i64 = c
        .query_one("SELECT count(*) FROM canonical.entity_history", &[])
        .await
        .expect("h")
        .get(0);
    assert_eq!(json!(history), expected["versioned_organizations"]);
    let _ = std::fs::remove_dir_all(&dir);
}
