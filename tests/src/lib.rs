//! Test harness: fresh PostgreSQL databases, migrated by the product's own code,
//! and operations run through the product's own path ([`quarry_db::execute_pack`]).
//!
//! The server is `QUARRY_TEST_ADMIN_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each [`TestDb`] is a new database dropped when the value is dropped
//! (set `QUARRY_KEEP_TEST_DB=1` to keep it for inspection).

use std::path::{Path, PathBuf};

use quarry_core::packs::params::InputStyle;
use serde_json::{Map, Value};

/// Admin connection used to create and drop test databases.
pub fn admin_url() -> String {
    std::env::var("QUARRY_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `quarry` binary built by `cargo build` (the README's test command builds it first).
pub fn quarry_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/quarry
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("quarry");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p quarry-cli` first",
        bin.display()
    );
    bin
}

/// A fresh database on the test server.
pub struct TestDb {
    pub name: String,
    /// Owner (admin) URL of this database.
    pub url: String,
}

/// A fresh, migrated, empty database.
pub async fn empty_db() -> TestDb {
    let name = format!(
        "quarry_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let admin = quarry_db::connect(&admin_url())
        .await
        .expect("connect to the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let url = {
        let mut u = url::Url::parse(&admin_url()).expect("admin url");
        u.set_path(&format!("/{name}"));
        u.to_string()
    };
    let mut client = quarry_db::connect(&url)
        .await
        .expect("connect to test database");
    quarry_db::migrate(&mut client)
        .await
        .expect("migrate test database");
    TestDb { name, url }
}

/// A fresh database holding tests/fixtures/small.sql.
pub async fn fixture_db() -> TestDb {
    let db = empty_db().await;
    db.exec(include_str!("../fixtures/small.sql")).await;
    db
}

impl TestDb {
    /// Runs SQL as the owner.
    pub async fn exec(&self, sql: &str) {
        let c = quarry_db::connect(&self.url).await.expect("connect");
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("exec failed: {e:?}\n{sql}"));
    }

    /// An owner connection.
    pub async fn client(&self) -> tokio_postgres::Client {
        quarry_db::connect(&self.url).await.expect("connect")
    }

    /// The first column of the one row `sql` returns, as JSON (NULL as `Null`).
    pub async fn value(&self, sql: &str) -> Value {
        let c = self.client().await;
        let row = c
            .query_one(&format!("SELECT to_jsonb(x) FROM ({sql}) x"), &[])
            .await
            .unwrap_or_else(|e| panic!("{e:?}: {sql}"));
        let v: Value = row.get(0);
        v.as_object()
            .and_then(|o| o.values().next().cloned())
            .unwrap_or(Value::Null)
    }

    /// The real `quarry` binary with `args`, run from the repository root on this
    /// database (as its owner; the writer and reader logins derive from it).
    pub fn quarry(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(quarry_bin())
            .args(args)
            .current_dir(repo_root())
            .env("DATABASE_URL", &self.url)
            .env_remove("QUARRY_WRITER_URL")
            .output()
            .expect("run quarry")
    }

    /// Runs an operation from queries/ exactly as the product does; one JSON object per row.
    pub async fn run(&self, op: &str, params: Value) -> Vec<Map<String, Value>> {
        match self.try_run(op, params).await {
            Ok(rows) => rows,
            Err(e) => panic!("operation {op} failed: {e}"),
        }
    }

    /// Runs an operation that must fail; returns the error text.
    pub async fn run_err(&self, op: &str, params: Value) -> String {
        match self.try_run(op, params).await {
            Ok(rows) => panic!(
                "operation {op} should have failed but returned {} rows",
                rows.len()
            ),
            Err(e) => e,
        }
    }

    /// Runs an operation; Err holds the error text as a caller would see it.
    pub async fn try_run(
        &self,
        op: &str,
        params: Value,
    ) -> Result<Vec<Map<String, Value>>, String> {
        let opts = quarry_db::CallOptions {
            allow_raw_sql: true,
            ..Default::default()
        };
        self.try_run_with(op, params, opts).await
    }

    /// Like [`TestDb::try_run`] with explicit call options.
    pub async fn try_run_with(
        &self,
        op: &str,
        params: Value,
        opts: quarry_db::CallOptions,
    ) -> Result<Vec<Map<String, Value>>, String> {
        let pack = load_pack(op);
        let mut reader = quarry_db::connect_reader(&self.url)
            .await
            .expect("connect as reader");
        let input = params.as_object().cloned().unwrap_or_default();
        quarry_db::execute_pack(&mut reader, &pack, &input, InputStyle::Json, opts)
            .await
            .map(|(_, out)| out.row_objects())
            .map_err(|e| e.to_string())
    }
}

/// Loads and checks one pack from queries/ (only that pack, so one broken pack
/// does not fail the tests of the others).
pub fn load_pack(op: &str) -> quarry_core::Pack {
    let yaml = repo_root().join("queries").join(format!("{op}.yaml"));
    let sources =
        quarry_core::files::read_pack_sources(&[yaml]).unwrap_or_else(|d| panic!("{d:?}"));
    let (pack, diags) = quarry_core::packs::loader::check_pack(&sources[0]);
    match pack {
        Some(p) => p,
        None => panic!(
            "pack {op} does not pass quarry check:\n{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("QUARRY_KEEP_TEST_DB").is_some() {
            eprintln!("kept test database {}", self.name);
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(c) = quarry_db::connect(&admin_url()).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub mod faults;
