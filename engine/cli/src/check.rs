//! `quarry check`: offline checks from quarry-core, then (with a database) a
//! prepare + EXPLAIN of each operation as the reader role, comparing the columns
//! the database reports with the declared ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use quarry_core::diag::Diagnostic;
use quarry_core::packs::loader::check_pack;

pub async fn run(
    paths: &[PathBuf],
    database_url: Option<&str>,
    against: Option<&str>,
    budget: &quarry_core::packs::cost::CostBudget,
    json: bool,
) -> Result<ExitCode> {
    let mut diags = Vec::new();
    // A folder with nothing to check is a mistyped path, not a success.
    for p in paths.iter().filter(|p| p.is_dir()) {
        if quarry_core::files::yaml_files_under(p).is_ok_and(|f| f.is_empty()) {
            let shown = p.display().to_string();
            let shown = if shown.ends_with('/') {
                shown
            } else {
                format!("{shown}/")
            };
            diags.push(
                Diagnostic::new(
                    &shown,
                    (1, 1),
                    "no query packs or mappings here (no *.yaml in the folder or its subfolders)",
                )
                .help("check the path: CI passes the folders that hold the definitions, such as queries/ and mappings/"),
            );
        }
    }
    let sources = match quarry_core::files::read_pack_sources(paths) {
        Ok(s) => s,
        Err(d) => {
            diags.extend(d);
            Vec::new()
        }
    };
    let mut packs = Vec::new();
    // Mappings name their own schema on the first line; everything else is a pack.
    let (mapping_sources, sources): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| {
        s.yaml_text
            .lines()
            .next()
            .is_some_and(|l| l.contains("mapping.schema.json"))
    });
    // The company rules (`companies.yaml`) name theirs too.
    let (company_sources, sources): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| {
        s.yaml_text
            .lines()
            .next()
            .is_some_and(|l| l.contains(quarry_core::companies::SCHEMA))
    });
    for src in &company_sources {
        let (_, d) = quarry_core::companies::CompanyRules::check(&src.yaml_file, &src.yaml_text);
        diags.extend(d);
    }
    let mut mappings = Vec::new();
    let mut mapping_texts = Vec::new();
    for src in &mapping_sources {
        let (m, d) = quarry_core::ingest::mapping::check_mapping(
            &quarry_core::ingest::mapping::MappingSource {
                file: src.yaml_file.clone(),
                text: src.yaml_text.clone(),
            },
        );
        diags.extend(d);
        if let Some(m) = m {
            mappings.push(m);
            mapping_texts.push(src.yaml_text.as_str());
        }
    }
    let refs: Vec<&quarry_core::ingest::mapping::Mapping> = mappings.iter().collect();
    diags.extend(quarry_core::ingest::mapping::check_mapping_set(
        &refs,
        &mapping_texts,
    ));
    for src in &sources {
        let (pack, d) = check_pack(src);
        diags.extend(d);
        packs.extend(pack.map(std::sync::Arc::new));
    }
    // One operation in several files: only with different major versions.
    let (set, dup) = quarry_core::PackSet::from_packs(packs.clone());
    diags.extend(dup);
    // Pack tests and their data: parsed, their includes read, their operation
    // and parameters known.
    let test_files =
        quarry_core::packs::packtest::test_and_data_files_under(paths).unwrap_or_default();
    let (tests, test_diags) = crate::packtest::load_all(&test_files);
    diags.extend(test_diags);
    if !tests.is_empty() && !set.is_empty() {
        diags.extend(crate::packtest::check_against(&tests, &set));
    }
    let mut compared = None;
    if let Some(base) = against {
        match base_packs(base, paths) {
            Ok(base_set) => {
                compared = Some(base_set.len());
                let tmp = against_dir().display().to_string();
                for mut d in quarry_core::packs::breaking::breaking_changes(&base_set, &set) {
                    // What was removed is named as it is in the base revision.
                    if let Some(rest) = d.file.strip_prefix(&tmp) {
                        d.file = format!("{base}:{}", rest.trim_start_matches('/'));
                    }
                    diags.push(d);
                }
            }
            Err(e) => diags.push(
                Diagnostic::new(base, (1, 1), format!("cannot read the base packs: {e:#}")).help(
                    "pass a git revision (origin/main) or a folder holding the base queries/",
                ),
            ),
        }
    }
    let mut explained = 0;
    let mut explained_ops = 0;
    if let Some(url) = database_url {
        match quarry_db::connect_reader(url).await {
            Ok(mut reader) => {
                let refs: Vec<&quarry_core::Pack> = packs.iter().map(|p| p.as_ref()).collect();
                let report =
                    quarry_db::packcheck::check_packs(&mut reader, &refs, Some(budget)).await;
                explained = report.renderings;
                explained_ops = report.operations;
                diags.extend(report.diagnostics);
            }
            Err(e) => {
                eprintln!("warning: skipping the database checks: {e:#}");
            }
        }
    }
    let (warnings, errors): (Vec<Diagnostic>, Vec<Diagnostic>) =
        diags.into_iter().partition(|d| d.warning);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checked": sources.len(), "mappings": mapping_sources.len(), "company_rules": company_sources.len(), "tests": test_files.len(), "explained": explained, "explained_operations": explained_ops, "errors": errors, "warnings": warnings,
            }))?
        );
    } else {
        for d in errors.iter().chain(&warnings) {
            println!("{d}");
        }
        let db_note = if database_url.is_some() {
            format!(", {explained} rendering(s) of {explained_ops} operation(s) explained against the database")
        } else {
            ", offline".to_string()
        };
        let mut what = format!("{} operation(s)", sources.len());
        if !mapping_sources.is_empty() {
            what.push_str(&format!(", {} mapping(s)", mapping_sources.len()));
        }
        if !company_sources.is_empty() {
            what.push_str(", the company rules");
        }
        if !test_files.is_empty() {
            what.push_str(&format!(", {} pack test file(s)", test_files.len()));
        }
        if let (Some(n), Some(base)) = (compared, against) {
            what.push_str(&format!(", compared with {n} operation(s) of {base}"));
        }
        let noted = if warnings.is_empty() {
            String::new()
        } else {
            format!(", {} warning(s)", warnings.len())
        };
        if errors.is_empty() {
            println!("checked {what}{db_note}: no problems{noted}");
        } else {
            println!(
                "checked {what}{db_note}: {} problem(s){noted}",
                errors.len()
            );
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The packs of a base: a folder, or the pack folders among `paths` as they are
/// at a git revision (read with `git show`, nothing checked out). Packs of the
/// base that do not load are left out (they cannot have callers).
fn base_packs(base: &str, paths: &[PathBuf]) -> Result<quarry_core::PackSet> {
    use anyhow::Context;
    let dirs: Vec<PathBuf> = if std::path::Path::new(base).is_dir() {
        vec![PathBuf::from(base)]
    } else {
        let tmp = against_dir();
        let _ = std::fs::remove_dir_all(&tmp);
        let mut dirs = Vec::new();
        let top = String::from_utf8_lossy(
            &std::process::Command::new("git")
                .args(["rev-parse", "--show-prefix"])
                .output()
                .context("running git (is this a git checkout?)")?
                .stdout,
        )
        .trim()
        .to_string();
        for p in paths.iter().filter(|p| p.is_dir()) {
            let out = std::process::Command::new("git")
                .args(["ls-tree", "-r", "--name-only", "--full-name", base, "--"])
                .arg(p)
                .output()
                .context("running git (is this a git checkout?)")?;
            if !out.status.success() {
                anyhow::bail!(
                    "git does not know the revision `{base}`: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let root = tmp.join(p);
            for file in String::from_utf8_lossy(&out.stdout).lines() {
                if !(file.ends_with(".yaml") || file.ends_with(".sql")) {
                    continue;
                }
                let shown = std::process::Command::new("git")
                    .args(["show", &format!("{base}:{file}")])
                    .output()
                    .context("running git show")?;
                if !shown.status.success() {
                    continue;
                }
                // `file` is relative to the repository root, `p` to the current folder.
                let rel = file.strip_prefix(&top).unwrap_or(file);
                let target = tmp.join(rel);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, shown.stdout)?;
            }
            dirs.push(root);
        }
        dirs
    };
    let sources = quarry_core::files::read_pack_sources(&dirs).unwrap_or_default();
    let mut set = quarry_core::PackSet::default();
    for src in &sources {
        if let (Some(p), _) = check_pack(src) {
            set.packs
                .insert(p.spec.name.clone(), std::sync::Arc::new(p));
        }
    }
    Ok(set)
}

/// Where the base revision's packs are written for the comparison.
fn against_dir() -> PathBuf {
    std::env::temp_dir().join(format!("quarry-against-{}", std::process::id()))
}
