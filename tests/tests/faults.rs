//! Faults during ingest: the process killed in the middle of a large file, and
//! the database connection cut mid-load. After each, a re-run loads the file
//! exactly once: nothing lost, nothing duplicated, nothing half-written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quarry_tests::{empty_db, quarry_bin, repo_root, TestDb};

const ORDERS: u64 = 60_000;

/// A Shopify-style NDJSON export with `n` valid orders of two lines each.
fn big_export(dir: &Path, n: u64) -> PathBuf {
    let shop = dir.join("shop-data");
    std::fs::create_dir_all(&shop).expect("tmp");
    let path = shop.join("orders-big.ndjson");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for i in 0..n {
        writeln!(
            w,
            r##"{{"id": {id}, "name": "#{i}", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-02T00:00:00Z", "currency": "USD", "total_price": "37.00", "subtotal_price": "37.00", "total_tax": "0.00", "financial_status": "paid", "customer": {{"id": {c}, "email": "c{c}@mail.example", "first_name": "C", "last_name": "{c}"}}, "line_items": [{{"id": 1, "sku": "SKU-1", "title": "Widget", "quantity": 1, "price": "12.00", "total_discount": "0.00"}}, {{"id": 2, "sku": "SKU-2", "title": "Gadget", "quantity": 1, "price": "25.00", "total_discount": "0.00"}}]}}"##,
            id = 1_000_000 + i,
            c = i % 5000
        )
        .expect("write");
    }
    w.flush().expect("flush");
    path
}

fn start_ingest(db: &TestDb, file: &Path) -> Child {
    Command::new(quarry_bin())
        .args(["ingest", "--json", &file.display().to_string()])
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quarry ingest")
}

/// Waits until the ingest has started streaming rows into staging.
async fn wait_until_loading(db: &TestDb) {
    let c = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity a
                 WHERE a.datname = current_database() AND a.usename = 'quarry_writer' AND a.xact_start IS NOT NULL
                   AND a.query LIKE 'COPY stg%'",
                &[],
            )
            .await
            .expect("poll");
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the ingest never started loading"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn counts(db: &TestDb) -> (i64, i64, i64, String) {
    let c = db.client().await;
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM canonical.orders), (SELECT count(*) FROM canonical.order_lines),
                    (SELECT count(*) FROM canonical.organizations),
                    (SELECT string_agg(status, ',' ORDER BY id) FROM quarry.ingest_files)",
            &[],
        )
        .await
        .expect("counts");
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get::<_, Option<String>>(3).unwrap_or_default(),
    )
}

fn finish(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn killed_in_the_middle_then_run_again() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-kill-{}", std::process::id()));
    let file = big_export(&dir, ORDERS);
    let mut child = start_ingest(&db, &file);
    wait_until_loading(&db).await;
    child.kill().expect("kill");
    let _ = child.wait();
    // Nothing half-written: no canonical rows, the ledger still says processing.
    let (orders, lines, _, ledger) = counts(&db).await;
    assert_eq!((orders, lines, ledger.as_str()), (0, 0, "processing"));
    // Run again: the dead process's claim is taken over and the file loads once.
    let report = finish(start_ingest(&db, &file));
    assert_eq!(report[0]["status"], "loaded", "{report}");
    assert_eq!(report[0]["inserted"], ORDERS);
    let (orders, lines, orgs, ledger) = counts(&db).await;
    assert_eq!(
        (orders, lines, orgs, ledger.as_str()),
        (ORDERS as i64, 2 * ORDERS as i64, 5000, "loaded")
    );
    // And a third time: a duplicate.
    let report = finish(start_ingest(&db, &file));
    assert_eq!(report[0]["status"], "duplicate");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connection_cut_mid_load_then_run_again() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-cut-{}", std::process::id()));
    let file = big_export(&dir, ORDERS);
    let child = start_ingest(&db, &file);
    wait_until_loading(&db).await;
    let admin = db.client().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'quarry_writer'",
            &[],
        )
        .await
        .expect("terminate");
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success(), "a lost connection is a failed run");
    let (orders, lines, _, _) = counts(&db).await;
    assert_eq!((orders, lines), (0, 0), "nothing half-written");
    let report = finish(start_ingest(&db, &file));
    assert_eq!(report[0]["status"], "loaded", "{report}");
    let (orders, lines, orgs, ledger) = counts(&db).await;
    assert_eq!(
        (orders, lines, orgs, ledger.as_str()),
        (ORDERS as i64, 2 * ORDERS as i64, 5000, "loaded")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The final state is a function of the files, not of their order or of
/// concurrency (issue 13, defect 2): every file loaded one by one in reverse key
/// order, and all files loaded at once by concurrent processes, give the state
/// of one sorted run, by natural keys: rows with their versions, history placed
/// by source timestamp, links recomputed. Before, the reverse order left the
/// re-sent accounts at version 1 with no history, and concurrent runs lost links.
#[tokio::test]
async fn the_final_state_does_not_depend_on_file_order_or_concurrency() {
    use quarry_tests::faults::{compare, corpus_files, snapshot, versioned};
    let root = repo_root();
    let files = corpus_files(&[
        root.join("tests/fixtures/ingest/exports"),
        root.join("tests/fixtures/real"),
    ])
    .expect("corpus");
    let mappings = quarry_core::files::load_mappings(&root.join("mappings")).expect("mappings");
    let versioned = versioned(&mappings);
    let ingest = |db: &TestDb, files: &[PathBuf]| {
        Command::new(quarry_bin())
            .arg("ingest")
            .args(files)
            .current_dir(repo_root())
            .env("DATABASE_URL", &db.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn quarry ingest")
    };

    let sorted = empty_db().await;
    ingest(&sorted, &files).wait().expect("sorted run");
    let want = snapshot(&sorted.url).await.expect("snapshot");

    let reverse = empty_db().await;
    for f in files.iter().rev() {
        ingest(&reverse, std::slice::from_ref(f))
            .wait()
            .expect("reverse run");
    }
    let concurrent = empty_db().await;
    let children: Vec<Child> = files
        .iter()
        .map(|f| ingest(&concurrent, std::slice::from_ref(f)))
        .collect();
    for mut c in children {
        c.wait().expect("concurrent run");
    }
    for (what, db) in [("reverse order", &reverse), ("concurrent", &concurrent)] {
        // Which files failed and why, for the message when the states differ.
        let failed = db
            .value(
                "SELECT json_agg(json_build_object('key', object_key, 'error', error)) \
                 FROM quarry.ingest_files WHERE status = 'failed'",
            )
            .await;
        let got = snapshot(&db.url).await.expect("snapshot");
        let d = compare(&want, &got, &versioned);
        assert_eq!(
            (d.lost, d.duplicated, d.differing),
            (0, 0, 0),
            "{what}: {}\nfailed files: {failed}",
            d.examples.join("\n")
        );
    }
    // The re-sent accounts were the clearest case: two versions whatever the order.
    let c = reverse.client().await;
    let v: i32 = c
        .query_one(
            "SELECT version FROM canonical.organizations WHERE source_system = 'crm' AND source_id = '001FIX000000000001'",
            &[],
        )
        .await
        .expect("account")
        .get(0);
    assert_eq!(v, 2);
}
