//! `quarry check`: offline checks from quarry-core, then (with a database) a
//! prepare + EXPLAIN of each operation as the reader role, comparing the columns
//! the database reports with the declared ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use quarry_core::diag::Diagnostic;
use quarry_core::loader::check_pack;

pub async fn run(paths: &[PathBuf], database_url: Option<&str>, json: bool) -> Result<ExitCode> {
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
    let mut names = std::collections::HashMap::new();
    // Mappings name their own schema on the first line; everything else is a pack.
    let (mapping_sources, sources): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| {
        s.yaml_text
            .lines()
            .next()
            .is_some_and(|l| l.contains("mapping.schema.json"))
    });
    let mut mappings = Vec::new();
    let mut mapping_texts = Vec::new();
    for src in &mapping_sources {
        let (m, d) = quarry_core::mapping::check_mapping(&quarry_core::mapping::MappingSource {
            file: src.yaml_file.clone(),
            text: src.yaml_text.clone(),
        });
        diags.extend(d);
        if let Some(m) = m {
            mappings.push(m);
            mapping_texts.push(src.yaml_text.as_str());
        }
    }
    let refs: Vec<&quarry_core::mapping::Mapping> = mappings.iter().collect();
    diags.extend(quarry_core::mapping::check_mapping_set(
        &refs,
        &mapping_texts,
    ));
    for src in &sources {
        let (pack, d) = check_pack(src);
        diags.extend(d);
        if let Some(p) = pack {
            if let Some(first) = names.insert(p.spec.name.clone(), p.yaml_file.clone()) {
                diags.push(Diagnostic::new(
                    &p.yaml_file,
                    (2, 1),
                    format!("operation `{}` is also defined in {first}", p.spec.name),
                ));
            }
            packs.push(std::sync::Arc::new(p));
        }
    }
    // Pack tests and their data: parsed, their includes read, their operation
    // and parameters known.
    let test_files = quarry_core::packtest::test_and_data_files_under(paths).unwrap_or_default();
    let (tests, test_diags) = crate::packtest::load_all(&test_files);
    diags.extend(test_diags);
    if !tests.is_empty() {
        let set = quarry_core::PackSet {
            packs: packs
                .iter()
                .map(|p| (p.spec.name.clone(), p.clone()))
                .collect(),
        };
        if !set.is_empty() {
            diags.extend(crate::packtest::check_against(&tests, &set));
        }
    }
    let mut explained = 0;
    let mut explained_ops = 0;
    if let Some(url) = database_url {
        match quarry_db::connect_reader(url).await {
            Ok(mut reader) => {
                for p in &packs {
                    let yaml = src_text(&sources, &p.yaml_file);
                    let (renders, _) = quarry_core::loader::render_branches(p);
                    explained_ops += 1;
                    let mut reported = std::collections::HashSet::new();
                    for r in &renders {
                        match quarry_db::exec::explain(&mut reader, &r.query).await {
                            Ok(report) => {
                                explained += 1;
                                if p.spec.raw_sql {
                                    continue;
                                }
                                if let Some(d) = column_diag(p, &yaml, &report.columns, &r.label) {
                                    if reported.insert(without_branch(&d.message)) {
                                        diags.push(d);
                                    }
                                }
                            }
                            Err(e) => {
                                let d = sql_diag(p, r, &e);
                                let key = format!(
                                    "{}:{}:{}",
                                    d.line,
                                    d.column,
                                    without_branch(&d.message)
                                );
                                if reported.insert(key) {
                                    diags.push(d);
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("warning: skipping the database checks: {e:#}");
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checked": sources.len(), "mappings": mapping_sources.len(), "tests": test_files.len(), "explained": explained, "explained_operations": explained_ops, "errors": diags,
            }))?
        );
    } else {
        for d in &diags {
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
        if !test_files.is_empty() {
            what.push_str(&format!(", {} pack test file(s)", test_files.len()));
        }
        if diags.is_empty() {
            println!("checked {what}{db_note}: no problems");
        } else {
            println!("checked {what}{db_note}: {} problem(s)", diags.len());
        }
    }
    Ok(if diags.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn src_text(sources: &[quarry_core::PackSource], yaml_file: &str) -> String {
    sources
        .iter()
        .find(|s| s.yaml_file == yaml_file)
        .map(|s| s.yaml_text.clone())
        .unwrap_or_default()
}

/// A problem's text without the branch it was seen with (each problem is
/// reported once, with the first branch that shows it).
fn without_branch(message: &str) -> String {
    message
        .split(" (with ")
        .next()
        .unwrap_or(message)
        .to_string()
}

/// Declared columns against the ones the database reports, names and types;
/// the `columns:` block to paste when they differ.
fn column_diag(
    p: &quarry_core::Pack,
    yaml: &str,
    got: &[quarry_db::OutColumn],
    label: &str,
) -> Option<Diagnostic> {
    use quarry_core::pack::ColumnType;
    let declared = &p.spec.columns;
    let mut problems = Vec::new();
    let mut at = quarry_core::diag::yaml_key_position(yaml, &["columns"]);
    if got.len() != declared.len() || got.iter().zip(declared).any(|(g, d)| g.name != d.name) {
        problems.push(format!(
            "declared columns [{}] but the query returns [{}]",
            declared
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            got.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else {
        for (g, d) in got.iter().zip(declared) {
            let want = ColumnType::for_pg(&g.pg_type);
            if want != d.kind {
                if problems.is_empty() {
                    if let Some(pos) =
                        quarry_core::diag::word_position(yaml, &format!("name: {}", d.name))
                    {
                        at = pos;
                    }
                }
                problems.push(format!(
                    "column `{}` is declared {} but the query returns {} ({})",
                    d.name,
                    d.kind.as_str(),
                    want.as_str(),
                    g.pg_type
                ));
            }
        }
    }
    if problems.is_empty() {
        return None;
    }
    let with = if label == "the defaults" {
        String::new()
    } else {
        format!(" (with {label})")
    };
    let block: Vec<String> = got
        .iter()
        .map(|g| {
            let desc = declared
                .iter()
                .find(|d| d.name == g.name)
                .map(|d| d.description.as_str())
                .unwrap_or("TODO: what the column holds");
            format!(
                "  - {{name: {}, type: {}, description: {}}}",
                g.name,
                ColumnType::for_pg(&g.pg_type).as_str(),
                serde_json::to_string(desc).unwrap_or_default()
            )
        })
        .collect();
    Some(
        Diagnostic::new(
            &p.yaml_file,
            at,
            format!("{}{with}", problems.join("; ")),
        )
        .help(format!(
            "`columns:` must list what the SELECT returns, in order, with its type; this block does:\ncolumns:\n{}",
            block.join("\n")
        )),
    )
}

/// Maps a database error on a rendered branch back to the template through the
/// branch's source map: the character the database points at, at its template
/// line and column.
fn sql_diag(
    p: &quarry_core::Pack,
    r: &quarry_core::loader::BranchRender,
    e: &quarry_db::QueryError,
) -> Diagnostic {
    let (msg, position, hint) = match e {
        quarry_db::QueryError::Sql {
            sqlstate,
            message,
            position,
            hint,
            ..
        } => (
            format!("the database rejects the rendered SQL: {message} (SQLSTATE {sqlstate})"),
            *position,
            hint.clone(),
        ),
        other => (
            format!("the database could not check the query: {other}"),
            None,
            None,
        ),
    };
    let rendered = r.query.sql.as_str();
    let offset = position.map(|char_pos| {
        rendered
            .chars()
            .take(char_pos.saturating_sub(1) as usize)
            .map(char::len_utf8)
            .sum::<usize>()
    });
    let pos = offset.map_or((1, 1), |o| r.map.locate(o));
    let with = if r.label == "the defaults" {
        String::new()
    } else {
        format!(" (with {})", r.label)
    };
    let mut d = Diagnostic::new(&p.sql_file, pos, format!("{msg}{with}"));
    let mut help = String::new();
    if let Some(o) = offset {
        let o = o.min(rendered.len());
        let line_start = rendered[..o].rfind('\n').map_or(0, |i| i + 1);
        let line_end = rendered[o..].find('\n').map_or(rendered.len(), |i| o + i);
        help.push_str(&format!(
            "rendered SQL: {}",
            rendered[line_start..line_end].trim()
        ));
    }
    if let Some(h) = hint {
        if !help.is_empty() {
            help.push_str("; ");
        }
        help.push_str(&h);
    }
    if !help.is_empty() {
        d = d.help(help);
    }
    d
}
