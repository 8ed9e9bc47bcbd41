//! `quarry map preview` (what a mapping makes of one file, nothing written) and
//! `quarry test` (mapping tests as data: every `NAME.expected.json` beside an
//! input file `NAME` holds the preview that input must produce).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use quarry_core::ingest::mapping::Mapping;
use quarry_core::ingest::preview::{preview, Outcome, Preview};

use crate::ingest::{key_for, known_sources, load_mappings, mapping_named};

/// Suffix of an expected-output file; the input is the same path without it.
const EXPECTED_SUFFIX: &str = ".expected.json";

/// Records kept in detail by `quarry test` (the counts cover every record).
const TEST_DETAIL: usize = 10_000;

/// The mapping for a file: `--source`, else the mapping claiming its key, else the
/// source named by a folder on its path (`mappings/tests/crm/...`).
fn mapping_for(
    path: &Path,
    mappings: &[Arc<Mapping>],
    source: Option<&str>,
) -> Result<Arc<Mapping>> {
    if let Some(s) = source {
        return mapping_named(mappings, s);
    }
    let (key, claimed) = key_for(path, None, mappings);
    if claimed {
        if let Some(m) = mappings.iter().find(|m| m.matches_key(&key)) {
            return Ok(m.clone());
        }
    }
    for dir in path.ancestors().skip(1) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(m) = mappings.iter().find(|m| m.spec.source == name) {
            return Ok(m.clone());
        }
    }
    bail!(
        "no mapping claims `{key}` and no folder on its path names a source; pass --source ({})",
        known_sources(mappings)
    )
}

fn run_preview(path: &Path, mapping: &Mapping, limit: usize) -> Result<Preview> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(preview(file, mapping, limit))
}

/// `quarry test [PATHS]`: the mapping tests (`NAME.expected.json` beside an
/// input) and the pack tests (`*.test.yaml`, against a scratch database) found
/// under `paths`.
pub async fn test_command(
    database_url: &str,
    queries_dir: &Path,
    mappings_dir: &Path,
    paths: &[PathBuf],
    update: bool,
) -> Result<ExitCode> {
    let pack_files = quarry_core::packs::packtest::test_files_under(paths)
        .context("looking for pack tests (*.test.yaml)")?;
    let map_cases = cases(paths, update)?;
    if map_cases.is_empty() && pack_files.is_empty() {
        bail!(
            "no tests under {}: a mapping test is an input file with NAME{EXPECTED_SUFFIX} beside it (write one with --update), a pack test a NAME{} file",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            quarry_core::packs::packtest::TEST_SUFFIX
        );
    }
    let mapping = run_mapping_cases(mappings_dir, &map_cases, update)?;
    let mut packs_tally = crate::packtest::Tally::default();
    if !pack_files.is_empty() {
        let (tests, mut diags) = crate::packtest::load_all(&pack_files);
        let packs = crate::load_packs(queries_dir)?;
        diags.extend(crate::packtest::check_against(&tests, &packs));
        if !diags.is_empty() {
            for d in &diags {
                println!("{d}");
            }
            bail!(
                "{} problem(s) in the pack tests; nothing was run",
                diags.len()
            );
        }
        packs_tally = crate::packtest::run(database_url, &packs, &tests, update).await?;
    }
    let failed = mapping.failed + packs_tally.failed;
    println!(
        "{} passed, {failed} failed ({} mapping case(s), {} pack case(s))",
        mapping.passed + packs_tally.passed,
        map_cases.len(),
        packs_tally.passed + packs_tally.failed
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `quarry map preview FILE`.
pub fn preview_command(
    mappings_dir: &Path,
    file: &Path,
    source: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    let mappings = load_mappings(mappings_dir)?;
    let mapping = mapping_for(file, &mappings, source)?;
    let p = run_preview(file, &mapping, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print_preview(&p);
    }
    Ok(if p.summary.file_error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_preview(p: &Preview) {
    println!("mapping {} {}", p.source, p.mapping_version);
    for r in &p.records {
        match &r.outcome {
            Outcome::Rows { record_type, rows } => {
                println!("record {} ({record_type})", r.position);
                for row in rows {
                    let values: Vec<String> = row
                        .values
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect();
                    println!(
                        "  {} {}{}: {}",
                        row.entity,
                        row.source_id,
                        row.parent
                            .as_deref()
                            .map(|p| format!(" (in {p})"))
                            .unwrap_or_default(),
                        values.join(", ")
                    );
                    if !row.attributes.is_empty() {
                        println!("    attributes: {}", row.attributes.join(", "));
                    }
                    for w in &row.warnings {
                        println!(
                            "    warning {}: {}; the value is kept in attributes",
                            w.reason, w.message
                        );
                    }
                    if row.keeps_stored_children {
                        println!("    nested rows not delivered: the stored ones are kept");
                    }
                }
            }
            Outcome::Quarantined {
                reason, message, ..
            } => println!("record {}: QUARANTINED {reason}: {message}", r.position),
            Outcome::Skipped { reason } => println!("record {}: skipped: {reason}", r.position),
        }
    }
    let s = &p.summary;
    let counted = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if (p.records.len() as u64) < s.records {
        println!(
            "... {} more record(s) not shown (--limit)",
            s.records - p.records.len() as u64
        );
    }
    println!(
        "{} record(s): rows [{}], quarantined [{}], skipped [{}], warnings [{}], without nested rows {}",
        s.records,
        counted(&s.rows),
        counted(&s.quarantined),
        counted(&s.skipped),
        counted(&s.warnings),
        s.children_not_delivered
    );
    match &s.file_error {
        Some(e) => println!("the file would FAIL as a whole, loading nothing: {e}"),
        None => println!("nothing was written"),
    }
}

/// Inputs under `paths` that have an expected-output file beside them; with
/// `all`, every data file (JSON, NDJSON, CSV), so that `--update` can write new cases.
fn cases(paths: &[PathBuf], all: bool) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))? {
                stack.push(e?.path());
            }
        } else if let Some(name) = p.to_str().and_then(|s| s.strip_suffix(EXPECTED_SUFFIX)) {
            let input = PathBuf::from(name);
            if !input.is_file() {
                bail!(
                    "{} has no input file {} beside it",
                    p.display(),
                    input.display()
                );
            }
            out.push((input, p));
        } else if !p.exists() {
            bail!("{} does not exist", p.display());
        } else if all
            && p.extension()
                .is_some_and(|e| ["json", "ndjson", "jsonl", "csv"].iter().any(|d| e == *d))
        {
            let expected = PathBuf::from(format!("{}{EXPECTED_SUFFIX}", p.display()));
            out.push((p, expected));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Runs mapping test cases; `--update` rewrites the expected files from the
/// current output (review the diff before committing).
pub fn run_mapping_cases(
    mappings_dir: &Path,
    cases: &[(PathBuf, PathBuf)],
    update: bool,
) -> Result<crate::packtest::Tally> {
    if cases.is_empty() {
        return Ok(crate::packtest::Tally::default());
    }
    let mappings = load_mappings(mappings_dir)?;
    let mut failed = 0;
    for (input, expected_path) in cases {
        let mapping = mapping_for(input, &mappings, None)?;
        let actual = serde_json::to_value(run_preview(input, &mapping, TEST_DETAIL)?)?;
        let text = format!("{}\n", serde_json::to_string_pretty(&actual)?);
        if update {
            std::fs::write(expected_path, text)
                .with_context(|| format!("writing {}", expected_path.display()))?;
            println!("updated  {}", expected_path.display());
            continue;
        }
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(expected_path)
                .with_context(|| format!("reading {}", expected_path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", expected_path.display()))?;
        match first_difference(&expected, &actual, "") {
            None => println!("ok       {}", input.display()),
            Some(diff) => {
                failed += 1;
                println!("FAILED   {}\n         {diff}", input.display());
            }
        }
    }
    Ok(crate::packtest::Tally {
        passed: cases.len() - if update { 0 } else { failed },
        failed,
    })
}

/// The first place where two JSON values differ, as `path: expected X, got Y`.
fn first_difference(
    expected: &serde_json::Value,
    actual: &serde_json::Value,
    at: &str,
) -> Option<String> {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let path = format!("{at}.{k}");
                match a.get(k) {
                    Some(av) => {
                        if let Some(d) = first_difference(ev, av, &path) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}: expected {ev}, got nothing")),
                }
            }
            a.iter()
                .find(|(k, _)| !e.contains_key(*k))
                .map(|(k, v)| format!("{at}.{k}: not expected, got {v}"))
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                if let Some(d) = first_difference(ev, av, &format!("{at}[{i}]")) {
                    return Some(d);
                }
            }
            (e.len() != a.len())
                .then(|| format!("{at}: expected {} item(s), got {}", e.len(), a.len()))
        }
        _ => (expected != actual).then(|| format!("{at}: expected {expected}, got {actual}")),
    }
}
