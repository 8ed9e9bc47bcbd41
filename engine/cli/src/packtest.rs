//! `quarry test`'s half for query packs: every `*.test.yaml` case run against a
//! scratch database (created, migrated, dropped), each case in a transaction
//! that is rolled back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use quarry_core::packs::packtest::{self, LoadedTests};
use quarry_core::PackSet;
use quarry_db::packtest::{run_case, Catalog};

/// Passed and failed cases.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

/// Loads every test file (all problems printed) without running anything.
pub fn load_all(files: &[PathBuf]) -> (Vec<LoadedTests>, Vec<quarry_core::Diagnostic>) {
    let mut loaded = Vec::new();
    let mut diags = Vec::new();
    for f in files {
        match packtest::load(f) {
            Ok(t) => loaded.push(t),
            Err(d) => diags.extend(d),
        }
    }
    (loaded, diags)
}

/// Problems of test files against the pack set: an unknown operation, invalid
/// parameters in a case.
pub fn check_against(tests: &[LoadedTests], packs: &PackSet) -> Vec<quarry_core::Diagnostic> {
    let mut d = Vec::new();
    for t in tests {
        let Some(op) = &t.spec.operation else {
            continue;
        };
        let Some(pack) = packs.get(op) else {
            let at = quarry_core::diag::yaml_key_position(&t.text, &["operation"]);
            d.push(
                quarry_core::Diagnostic::new(&t.file, at, format!("no operation `{op}`"))
                    .help(format!("operations: {}", packs.names().join(", "))),
            );
            continue;
        };
        // A case that expects a refusal may send what the operation does not know.
        for c in t.spec.cases.iter().filter(|c| c.expect.error.is_none()) {
            let (case_line, _) = t.case_position(c);
            for k in c.params.keys() {
                if !pack.spec.parameters.contains_key(k) {
                    // The key in this case's own params, not an earlier mention.
                    let key = format!("{k}:");
                    let at = t
                        .text
                        .lines()
                        .enumerate()
                        .skip(case_line.saturating_sub(1))
                        .find_map(|(i, l)| {
                            l.find(&key)
                                .map(|col| (i + 1, l[..col].chars().count() + 1))
                        })
                        .unwrap_or((case_line, 1));
                    d.push(
                        quarry_core::Diagnostic::new(
                            &t.file,
                            at,
                            format!("case `{}`: `{op}` has no parameter `{k}`", c.name),
                        )
                        .help(format!(
                            "parameters of {op}: {}",
                            pack.spec
                                .parameters
                                .keys()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
            }
        }
    }
    d
}

/// Runs every case of `tests`; with `update`, failing cases get the current
/// answer as their expected `rows` and the file is rewritten.
pub async fn run(
    database_url: &str,
    packs: &PackSet,
    tests: &[LoadedTests],
    update: bool,
) -> Result<Tally> {
    let scratch = Scratch::create(database_url).await?;
    let outcome = run_in(&scratch.url, packs, tests, update).await;
    scratch.drop().await;
    outcome
}

async fn run_in(url: &str, packs: &PackSet, tests: &[LoadedTests], update: bool) -> Result<Tally> {
    let mut client = quarry_db::connect(url).await?;
    quarry_db::migrate(&mut client)
        .await
        .context("migrating the scratch database")?;
    let catalog = Catalog::read(&client).await?;
    let mut tally = Tally::default();
    for t in tests {
        let Some(op) = &t.spec.operation else {
            continue;
        };
        let pack = packs
            .get(op)
            .with_context(|| format!("{}: no operation `{op}`", t.file))?;
        let mut rewritten = t.spec.clone();
        let mut changed = false;
        for (i, case) in t.spec.cases.iter().enumerate() {
            let r = run_case(&mut client, &catalog, pack, t, case).await?;
            let (line, _) = t.case_position(case);
            if r.problems.is_empty() {
                tally.passed += 1;
                println!("ok       {}:{line}: {op}: {}", t.file, case.name);
                continue;
            }
            tally.failed += 1;
            println!("FAILED   {}:{line}: {op}: {}", t.file, case.name);
            for p in r.problems.iter().take(12) {
                println!("         {p}");
            }
            if r.problems.len() > 12 {
                println!("         ... {} more", r.problems.len() - 12);
            }
            if update && case.expect.error.is_none() {
                if let Some(rows) = r.rows {
                    rewritten.cases[i].expect.rows = Some(rows);
                    changed = true;
                }
            }
        }
        if changed {
            write_tests(&t.file, &t.text, &rewritten)?;
            println!(
                "updated  {} (expected rows of the failing cases; review the diff)",
                t.file
            );
        }
    }
    Ok(tally)
}

/// Rewrites a test file, keeping its first (schema) line.
fn write_tests(file: &str, old: &str, spec: &packtest::PackTestFile) -> Result<()> {
    let header = old.lines().next().unwrap_or_default();
    let body = serde_yaml::to_string(spec).context("writing the test file as YAML")?;
    std::fs::write(Path::new(file), format!("{header}\n{body}"))
        .with_context(|| format!("writing {file}"))
}

/// A database made for one `quarry test` run and dropped after it.
struct Scratch {
    admin_url: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn create(database_url: &str) -> Result<Self> {
        let name = format!(
            "quarry_packtest_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        let mut u = url::Url::parse(database_url).context("DATABASE_URL is not a URL")?;
        // The configured database need not exist yet: the server's maintenance
        // database serves to create the scratch one.
        let admin_url = match quarry_db::connect(database_url).await {
            Ok(_) => database_url.to_string(),
            Err(_) => {
                u.set_path("/postgres");
                u.to_string()
            }
        };
        let admin = quarry_db::connect(&admin_url).await.context(
            "pack tests need a PostgreSQL server to make a scratch database on (set DATABASE_URL or --database-url)",
        )?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| {
                format!(
                    "creating the scratch database {name} (the role of DATABASE_URL needs CREATEDB)"
                )
            })?;
        u.set_path(&format!("/{name}"));
        Ok(Scratch {
            admin_url,
            name,
            url: u.to_string(),
        })
    }

    async fn drop(self) {
        match quarry_db::connect(&self.admin_url).await {
            Ok(c) => {
                if let Err(e) = c
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .await
                {
                    tracing::warn!(database = %self.name, error = %e, "could not drop the scratch database");
                }
            }
            Err(e) => {
                tracing::warn!(database = %self.name, error = %e, "could not drop the scratch database")
            }
        }
    }
}
