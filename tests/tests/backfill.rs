//! `quarry backfill` end to end: a mapping author fixes a mapping (amounts in
//! minor units were stored as if they were major units), raises its version and
//! applies it to the files already delivered, from the raw copies kept at ingest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quarry_tests::{empty_db, quarry_bin, repo_root, TestDb};
use serde_json::{json, Value};

struct Env {
    db: TestDb,
    dir: PathBuf,
}

impl Env {
    fn quarry(&self, mappings: &Path, args: &[&str]) -> Output {
        Command::new(quarry_bin())
            .arg("--mappings")
            .arg(mappings)
            .args(args)
            .current_dir(repo_root())
            .env("DATABASE_URL", &self.db.url)
            .env("QUARRY_DATA_DIR", self.dir.join("data"))
            .env_remove("QUARRY_CONFIG")
            .env_remove("QUARRY_WRITER_URL")
            .output()
            .expect("run quarry")
    }

    async fn value(&self, sql: &str) -> Value {
        self.db.value(sql).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A copy of the shipped mappings with `stripe.yaml` edited by `edit`.
fn mappings_with(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("mkdir");
    for m in ["crm", "erp", "shop", "stripe"] {
        let text =
            std::fs::read_to_string(repo_root().join(format!("mappings/{m}.yaml"))).expect("read");
        let text = if m == "stripe" { edit(text) } else { text };
        std::fs::write(out.join(format!("{m}.yaml")), text).expect("write");
    }
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn a_fixed_mapping_is_applied_to_files_already_delivered() {
    let dir = std::env::temp_dir().join(format!("quarry-backfill-{}", std::process::id()));
    let env = Env {
        db: empty_db().await,
        dir: dir.clone(),
    };
    // The first version forgot that Stripe amounts are in cents.
    let buggy = mappings_with(&dir, "buggy", |t| {
        t.replace("version: 1.0.0", "version: 0.9.0")
            .replace("{minor_units: {currency: currency}}", "money")
    });
    let fixed = repo_root().join("mappings");
    let stripe = repo_root().join("tests/fixtures/real/stripe-data");
    let out = env.quarry(&buggy, &["ingest", "--json", &stripe.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let charge = "SELECT total_amount::text || ' v' || version FROM canonical.orders WHERE source_id = 'ch_198c152iMoKf4jyWWYvyqjTX'";
    assert_eq!(env.value(charge).await, json!("1061.00 v1"));

    // Delivering the same files again under the fixed mapping's version would
    // apply them; the author runs the backfill instead.
    let out = env.quarry(&fixed, &["backfill", "--source", "stripe", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = json_of(&out);
    assert_eq!(report["mapping_version"], json!("1.0.0"));
    assert_eq!(report["files"].as_array().map(Vec::len), Some(5));
    // Two charges and an invoice with its line changed; nothing was new.
    assert_eq!(
        (report["rows_changed"].clone(), report["rows_added"].clone()),
        (json!(3), json!(0)),
        "{report}"
    );
    assert_eq!(env.value(charge).await, json!("10.61 v2"));
    assert_eq!(
        env.value("SELECT string_agg(row_data->>'total_amount' || ' v' || version, ',') FROM canonical.entity_history WHERE source_id = 'ch_198c152iMoKf4jyWWYvyqjTX'").await,
        json!("1061.00 v1"),
        "the old version is in history"
    );
    assert_eq!(
        env.value("SELECT net_amount::text FROM canonical.order_lines WHERE source_id = 'in_8vzsBYq9vA4uHF/sub_8vzs5GcsrEzdnn'").await,
        json!("60.00")
    );

    // Again: every file is current, nothing changes.
    let out = env.quarry(&fixed, &["backfill", "--source", "stripe", "--json"]);
    let again = json_of(&out);
    assert_eq!(
        (
            again["already_applied"].clone(),
            again["rows_changed"].clone()
        ),
        (json!(5), json!(0))
    );
    assert_eq!(env.value(charge).await, json!("10.61 v2"));

    // A plain re-delivery under the same version is a duplicate.
    let out = env.quarry(&fixed, &["ingest", "--json", &stripe.display().to_string()]);
    let reports = json_of(&out);
    assert!(
        reports
            .as_array()
            .is_some_and(|r| r.iter().all(|f| f["status"] == json!("duplicate"))),
        "{reports}"
    );

    // Without the raw copies a backfill cannot apply a newer version, and says so.
    std::fs::remove_dir_all(dir.join("data/raw")).expect("rm raw");
    let newer = mappings_with(&dir, "newer", |t| {
        t.replace("version: 1.0.0", "version: 1.0.1")
    });
    let out = env.quarry(&newer, &["backfill", "--source", "stripe"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("MISSING") && text.contains("5 without a raw copy"),
        "{text}"
    );
}

#[tokio::test]
async fn each_changed_row_gets_one_new_version_whatever_the_file_order() {
    let dir = std::env::temp_dir().join(format!("quarry-backfill-order-{}", std::process::id()));
    let env = Env {
        db: empty_db().await,
        dir: dir.clone(),
    };
    // Two deliveries of the same charge (Stripe objects carry no change
    // timestamp, so the later delivery wins), the second with a new status.
    let files = dir.join("files/stripe-data");
    std::fs::create_dir_all(&files).expect("mkdir");
    let charge = |status: &str| {
        format!(
            r#"{{"id": "ch_1", "object": "charge", "amount": 2500, "currency": "eur", "created": 1717236000, "status": "{status}"}}"#
        )
    };
    std::fs::write(files.join("a.json"), charge("pending")).expect("write");
    std::fs::write(files.join("b.json"), charge("succeeded")).expect("write");
    let buggy = mappings_with(&dir, "buggy", |t| {
        t.replace("version: 1.0.0", "version: 0.9.0")
            .replace("{minor_units: {currency: currency}}", "money")
    });
    for f in ["a.json", "b.json"] {
        let out = env.quarry(&buggy, &["ingest", &files.join(f).display().to_string()]);
        assert!(out.status.success());
    }
    let row = "SELECT total_amount::text || ' ' || status || ' v' || version FROM canonical.orders WHERE source_id = 'ch_1'";
    assert_eq!(env.value(row).await, json!("2500.00 succeeded v2"));
    let out = env.quarry(
        &repo_root().join("mappings"),
        &["backfill", "--source", "stripe", "--json"],
    );
    let report = json_of(&out);
    assert_eq!(report["rows_changed"], json!(1), "{report}");
    // Not a.json's values first and b.json's after: one new version, the fixed b.json.
    assert_eq!(env.value(row).await, json!("25.00 succeeded v3"));
}
