//! `quarry check` end to end, through the real binary.
//!
//! Data-driven: every folder in tests/fixtures/broken holds one broken pack and
//! `expected.txt`, the exact output `quarry check --offline` must print. After an
//! intentional change, regenerate with `UPDATE_EXPECT=1 cargo test --test check`.

use std::process::Command;

use quarry_tests::{empty_db, quarry_bin, repo_root};

#[test]
fn broken_packs_fail_with_file_line_errors() {
    let root = repo_root().join("tests/fixtures/broken");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "expected the broken-pack fixtures");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        let out = Command::new(quarry_bin())
            .args(["check", "--offline", &name])
            .current_dir(&root)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run quarry check");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: quarry check must exit 1"
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            stdout.contains(&format!("{name}/")),
            "{name}: every error names its file:\n{stdout}"
        );
        let expected_path = case.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &stdout).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != stdout {
            failures.push(format!("--- {name}: expected\n{expected}--- got\n{stdout}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(re-run with UPDATE_EXPECT=1 if the change is intended)",
        failures.join("\n")
    );
}

#[test]
fn shipped_packs_pass_offline() {
    let out = Command::new(quarry_bin())
        .args(["check", "--offline", "queries"])
        .current_dir(repo_root())
        .output()
        .expect("run quarry check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quarry check queries/ failed:\n{stdout}"
    );
    assert!(stdout.contains("no problems"), "{stdout}");
}

#[tokio::test]
async fn shipped_packs_prepare_and_explain_against_the_schema() {
    let db = empty_db().await;
    let out = Command::new(quarry_bin())
        .args(["check", "queries"])
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run quarry check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quarry check with a database failed:\n{stdout}\n{stderr}"
    );
    let packs = std::fs::read_dir(repo_root().join("queries"))
        .expect("queries")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    assert!(
        stdout.contains(&format!(
            "of {packs} operation(s) explained against the database"
        )),
        "{stdout}"
    );
}

/// A pack test in YAML fails on a wrong expected value (naming the case's line,
/// the row and the column), passes once `--update` wrote the answer, and runs
/// against a scratch database that is dropped afterwards. The sum is beyond a
/// double's precision: `numeric` arrives exact, as a string.
#[tokio::test]
async fn pack_tests_fail_on_a_wrong_value_and_update_on_request() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-packtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let header = "# yaml-language-server: $schema=../../schemas/pack-tests.schema.json\n";
    std::fs::write(
        dir.join("ltv.test.yaml"),
        format!(
            "{header}operation: customer_analysis\ngiven:\n  organizations:\n    - {{source_system: erp, source_id: C1, kind: company, name: Acme}}\n  orders:\n    - {{source_system: erp, source_id: O1, organization_id: 1, total_amount: \"1234567890123456.78\"}}\n    - {{source_system: erp, source_id: O2, organization_id: 1, total_amount: \"0.44\"}}\ncases:\n  - name: one customer with two orders\n    expect:\n      rows:\n        - {{organization_id: 1, lifetime_value: \"1234567890123457.21\", order_count: 2}}\n"
        ),
    )
    .expect("write");
    let run = |args: &[&str]| db.quarry(args);
    let file = dir.join("ltv.test.yaml").display().to_string();
    let out = run(&["test", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ltv.test.yaml:10: customer_analysis: one customer with two orders"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "row 1: `lifetime_value` is \"1234567890123457.22\", expected \"1234567890123457.21\""
        ),
        "{stdout}"
    );
    let out = run(&["test", "--update", &file]);
    assert_eq!(out.status.code(), Some(1));
    let updated = std::fs::read_to_string(dir.join("ltv.test.yaml")).expect("read");
    // Exact: a double would have made it 1234567890123457.2.
    assert!(
        updated.contains("lifetime_value: '1234567890123457.22'"),
        "{updated}"
    );
    let out = run(&["test", &file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // No scratch database is left behind.
    let left = db
        .value("SELECT count(*) FROM pg_database WHERE datname LIKE 'quarry_packtest_%'")
        .await;
    assert_eq!(left, serde_json::json!(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_wrong_column_list_is_caught_with_a_database() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-check-{}", std::process::id()));
    let check = || {
        Command::new(quarry_bin())
            .args(["check", "cols.yaml"])
            .current_dir(&dir)
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run quarry check")
    };
    std::fs::create_dir_all(&dir).expect("tmp");
    std::fs::write(
        dir.join("cols.yaml"),
        "# yaml-language-server: $schema=x\nname: cols\nversion: 1.0.0\ntitle: t\ndescription: d\ncost: light\ntimeout_seconds: 5\ncache_ttl_seconds: 0\nmax_rows: 10\ncolumns:\n  - {name: total, type: integer}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("cols.sql"),
        "SELECT count(*) AS n\nFROM canonical.organizationz\n",
    )
    .expect("write");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("cols.sql:2:"),
        "points at the template line: {stdout}"
    );
    assert!(stdout.contains("42P01"), "names the SQL state: {stdout}");
    std::fs::write(
        dir.join("cols.sql"),
        "SELECT count(*) AS n FROM canonical.organizations\n",
    )
    .expect("write");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("declared columns [total] but the query returns [n]"),
        "{stdout}"
    );
    // Names right, type wrong: the column's own line and the block to paste.
    std::fs::write(
        dir.join("cols.sql"),
        "SELECT count(*) AS total FROM canonical.organizations\n",
    )
    .expect("write");
    let yaml = std::fs::read_to_string(dir.join("cols.yaml")).expect("read");
    std::fs::write(
        dir.join("cols.yaml"),
        yaml.replace("{name: total, type: integer}", "{name: total, type: text}"),
    )
    .expect("write");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "cols.yaml:11:6: error: column `total` is declared text but the query returns integer (int8)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("columns:\n  - {name: total, type: integer, description: \"\"}"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `quarry test` compares a mapping's output with the expected file beside its
/// input, names the first difference and fails; `--update` writes what it got.
#[test]
fn mapping_tests_fail_on_a_difference_and_update_on_request() {
    let dir = std::env::temp_dir().join(format!("quarry-maptest-{}", std::process::id()));
    let case = dir.join("stripe");
    std::fs::create_dir_all(&case).expect("tmp");
    let src = repo_root().join("mappings/tests/stripe/mixed-list.json");
    std::fs::copy(&src, case.join("mixed-list.json")).expect("copy input");
    let expected = std::fs::read_to_string(
        repo_root().join("mappings/tests/stripe/mixed-list.json.expected.json"),
    )
    .expect("expected file");
    // A reviewer's belief that the JPY charge is 50.00 (as if JPY had cents).
    let wrong = expected.replacen("\"5000.00\"", "\"50.00\"", 1);
    assert_ne!(wrong, expected);
    std::fs::write(case.join("mixed-list.json.expected.json"), &wrong).expect("write");
    let run = |args: &[&str]| {
        Command::new(quarry_bin())
            .args(args)
            .current_dir(repo_root())
            .output()
            .expect("run quarry test")
    };
    let out = run(&["test", &dir.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("expected \"50.00\", got \"5000.00\""),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
    let out = run(&["test", "--update", &dir.display().to_string()]);
    assert!(out.status.success());
    let out = run(&["test", &dir.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A folder with no case is an error, not a silent pass.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = run(&["test", &empty.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `quarry query ... | head`: a reader that goes away ends the program quietly.
#[tokio::test]
async fn a_closed_output_pipe_ends_quietly() {
    let db = quarry_tests::fixture_db().await;
    for format in ["json", "csv", "table"] {
        let mut child = Command::new(quarry_bin())
            .args(["query", "database_info", "-f", format])
            .current_dir(repo_root())
            .env("DATABASE_URL", &db.url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader is gone before anything was written.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `quarry check --against REV` reports what breaks callers at the current
/// file's line, and accepts the same change once the major version is raised.
#[test]
fn breaking_changes_are_caught_against_a_git_revision() {
    let dir = std::env::temp_dir().join(format!("quarry-breaking-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let q = dir.join("queries");
    std::fs::create_dir_all(&q).expect("tmp");
    for f in ["customer_analysis.yaml", "customer_analysis.sql"] {
        std::fs::copy(repo_root().join("queries").join(f), q.join(f)).expect("copy");
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "base"]);
    let yaml = q.join("customer_analysis.yaml");
    let text = std::fs::read_to_string(&yaml).expect("read");
    let narrowed = text.replace(
        "enum: [industry, country, tier, source_system, region]",
        "enum: [industry, country, tier, source_system]",
    );
    assert_ne!(narrowed, text);
    std::fs::write(&yaml, &narrowed).expect("write");
    let check = || {
        Command::new(quarry_bin())
            .args(["check", "--offline", "--against", "HEAD", "queries"])
            .current_dir(&dir)
            .output()
            .expect("run quarry check")
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "queries/customer_analysis.yaml:29:3: error: customer_analysis: parameter `group_by`: enum values removed: \"region\""
        ),
        "{stdout}"
    );
    assert!(stdout.contains("version: 2.0.0"), "{stdout}");
    // Announced with a new major version, the same change passes.
    let version = narrowed
        .lines()
        .find(|l| l.starts_with("version: "))
        .expect("version line")
        .to_string();
    std::fs::write(&yaml, narrowed.replace(&version, "version: 2.0.0")).expect("write");
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A removed operation is named as it is in the base revision.
    std::fs::remove_file(&yaml).expect("rm");
    std::fs::remove_file(q.join("customer_analysis.sql")).expect("rm");
    std::fs::write(q.join("keep.txt"), "").expect("write");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HEAD:queries/customer_analysis.yaml:1:1: error: operation `customer_analysis` (version 1.1.0) was removed"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a database, a `light` operation whose plan is over the cost budget is
/// an error naming the plan's features; a `heavy` one with a cheap plan is a
/// warning that does not fail the check.
#[tokio::test]
async fn declared_cost_is_compared_with_the_plan() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let pack = |name: &str, cost: &str, sql: &str| {
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            format!("# yaml-language-server: $schema=x\nname: {name}\nversion: 1.0.0\ntitle: t\ndescription: d\ncost: {cost}\ntimeout_seconds: 5\ncache_ttl_seconds: 0\nmax_rows: 10\ncolumns:\n  - {{name: n, type: integer}}\n"),
        )
        .expect("write");
        std::fs::write(dir.join(format!("{name}.sql")), sql).expect("write");
    };
    pack(
        "big_sort",
        "light",
        "SELECT g::int4 AS n FROM generate_series(1, 100000000) AS g ORDER BY g DESC\n",
    );
    pack("tiny", "heavy", "SELECT 1::int4 AS n\n");
    let out = Command::new(quarry_bin())
        .args(["check", "."])
        .current_dir(&dir)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run quarry check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("big_sort.yaml:6:1: error: declared light, but its plan is too expensive")
            && stdout.contains("a sort of ~100000000 rows"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "tiny.yaml:6:1: warning: declared heavy, but its most expensive plan is cheap"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(": 1 problem(s), 1 warning(s)"), "{stdout}");
    std::fs::remove_file(dir.join("big_sort.yaml")).expect("rm");
    std::fs::remove_file(dir.join("big_sort.sql")).expect("rm");
    let out = Command::new(quarry_bin())
        .args(["check", "."])
        .current_dir(&dir)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run quarry check");
    assert!(
        out.status.success(),
        "a warning alone passes: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
