//! `quarry check`: offline checks from quarry-core, then (with a database) a
//! prepare + EXPLAIN of each operation as the reader role, comparing the columns
//! the database reports with the declared ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use quarry_core::diag::{word_position, Diagnostic};
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
            packs.push(p);
        }
    }
    let mut explained = 0;
    if let Some(url) = database_url {
        match quarry_db::connect_reader(url).await {
            Ok(mut reader) => {
                for p in &packs {
                    let rendered = match p.sample_params().map(|sp| p.render(&sp)) {
                        Ok(Ok(q)) => q,
                        _ => continue, // already reported offline
                    };
                    match quarry_db::exec::explain(&mut reader, &rendered).await {
                        Ok(report) => {
                            explained += 1;
                            let got: Vec<&str> =
                                report.columns.iter().map(|c| c.name.as_str()).collect();
                            let want: Vec<&str> =
                                p.spec.columns.iter().map(|c| c.name.as_str()).collect();
                            if !p.spec.raw_sql && got != want {
                                diags.push(
                                    Diagnostic::new(&p.yaml_file, quarry_core::diag::yaml_key_position(&src_text(&sources, &p.yaml_file), &["columns"]),
                                        format!("declared columns [{}] but the query returns [{}]", want.join(", "), got.join(", ")))
                                    .help("make `columns:` list exactly what the SELECT returns, in order"),
                                );
                            }
                        }
                        Err(e) => diags.push(sql_diag(p, &rendered.sql, &e)),
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
                "checked": sources.len(), "mappings": mapping_sources.len(), "explained": explained, "errors": diags,
            }))?
        );
    } else {
        for d in &diags {
            println!("{d}");
        }
        let db_note = if database_url.is_some() {
            format!(", {explained} explained against the database")
        } else {
            ", offline".to_string()
        };
        let what = if mapping_sources.is_empty() {
            format!("{} operation(s)", sources.len())
        } else {
            format!(
                "{} operation(s) and {} mapping(s)",
                sources.len(),
                mapping_sources.len()
            )
        };
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

/// Maps a database error on the rendered SQL back to the template: the rendered
/// line is reported with its text, and located in the template where it occurs.
fn sql_diag(p: &quarry_core::Pack, rendered: &str, e: &quarry_db::QueryError) -> Diagnostic {
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
    let mut pos = (1, 1);
    let mut snippet = None;
    if let Some(char_pos) = position {
        let offset: usize = rendered
            .chars()
            .take(char_pos.saturating_sub(1) as usize)
            .map(char::len_utf8)
            .sum();
        let line_start = rendered[..offset.min(rendered.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_end = rendered[line_start..]
            .find('\n')
            .map_or(rendered.len(), |i| line_start + i);
        let line = rendered[line_start..line_end].trim();
        // Find the same text in the template to point at the template line.
        let token: String = rendered[offset.min(rendered.len())..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        if !token.is_empty() {
            if let Some(tp) = word_position(&p.sql_text, &token) {
                pos = tp;
            }
        }
        snippet = Some(line.to_string());
    }
    let mut d = Diagnostic::new(&p.sql_file, pos, msg);
    let mut help = String::new();
    if let Some(s) = snippet {
        help.push_str(&format!("rendered SQL: {s}"));
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
