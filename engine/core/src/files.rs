//! Reading definition files from disk: the only file-system access of the core.

use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::packs::loader::PackSource;

/// Every `*.yaml` / `*.yml` file under `dir`, in subfolders too (hidden folders
/// and `node_modules` left out), sorted.
pub fn yaml_files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let f = e?.path();
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if f.is_dir() {
                if !name.starts_with('.') && name != "node_modules" {
                    stack.push(f);
                }
            } else if f.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(f);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Collects pack sources from files and folders. A folder contributes every
/// `*.yaml` in it and its subfolders (except pack tests, `*.test.yaml`, and
/// their data, `*.data.yaml`); a `.yaml` file contributes itself; the
/// `.sql` template is looked up beside each YAML file.
pub fn read_pack_sources(paths: &[PathBuf]) -> Result<Vec<PackSource>, Vec<Diagnostic>> {
    let mut yaml_files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            match yaml_files_under(p) {
                Ok(found) => yaml_files.extend(
                    found
                        .into_iter()
                        .filter(|f| !crate::packs::packtest::is_test_or_data_file(f)),
                ),
                Err(e) => errors.push(Diagnostic::new(
                    &p.display().to_string(),
                    (1, 1),
                    format!("cannot read folder: {e}"),
                )),
            }
        } else if crate::packs::packtest::is_test_or_data_file(p) {
            // Pack tests and their data are checked by `quarry check` and run by `quarry test`.
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            yaml_files.push(p.clone());
        } else if p.extension().is_some_and(|e| e == "sql") {
            yaml_files.push(p.with_extension("yaml"));
        } else {
            errors.push(
                Diagnostic::new(
                    &p.display().to_string(),
                    (1, 1),
                    "not a folder, .yaml or .sql file",
                )
                .help("pass the queries/ folder or individual queries/NAME.yaml files"),
            );
        }
    }
    yaml_files.dedup();
    let mut out = Vec::new();
    for y in yaml_files {
        let yaml_text = match std::fs::read_to_string(&y) {
            Ok(t) => t,
            Err(e) => {
                errors.push(Diagnostic::new(
                    &y.display().to_string(),
                    (1, 1),
                    format!("cannot read file: {e}"),
                ));
                continue;
            }
        };
        let sql = y.with_extension("sql");
        out.push(PackSource {
            yaml_file: display(&y),
            yaml_text,
            sql_file: display(&sql),
            sql_text: std::fs::read_to_string(&sql).ok(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Reads every `*.yaml` mapping in `dir` and checks it. All problems of all files
/// are returned together.
pub fn load_mappings(dir: &Path) -> Result<Vec<crate::ingest::mapping::Mapping>, Vec<Diagnostic>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            // The company rules live beside the mappings but are not one.
            .filter(|f| !is_company_rules(f))
            .collect(),
        Err(e) => {
            return Err(vec![Diagnostic::new(
                &display(dir),
                (1, 1),
                format!("cannot read the mappings folder: {e}"),
            )
            .help("pass --mappings DIR or run from the repository root")])
        }
    };
    files.sort();
    let mut out = Vec::new();
    let mut texts = Vec::new();
    let mut diags = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => {
                let (m, d) =
                    crate::ingest::mapping::check_mapping(&crate::ingest::mapping::MappingSource {
                        file: display(&f),
                        text: text.clone(),
                    });
                diags.extend(d);
                if let Some(m) = m {
                    out.push(m);
                    texts.push(text);
                }
            }
            Err(e) => diags.push(Diagnostic::new(
                &display(&f),
                (1, 1),
                format!("cannot read file: {e}"),
            )),
        }
    }
    let refs: Vec<&crate::ingest::mapping::Mapping> = out.iter().collect();
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    diags.extend(crate::ingest::mapping::check_mapping_set(&refs, &text_refs));
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Whether `path` is the company rules file (`companies.yaml`), which sits in
/// the mappings folder but is not a mapping.
pub fn is_company_rules(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == crate::companies::FILE_NAME)
}

/// Reads and checks `<dir>/companies.yaml`. `Ok(None)` when the folder has none.
pub fn load_company_rules(
    dir: &Path,
) -> Result<Option<crate::companies::CompanyRules>, Vec<Diagnostic>> {
    let f = dir.join(crate::companies::FILE_NAME);
    let text = match std::fs::read_to_string(&f) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(vec![Diagnostic::new(
                &display(&f),
                (1, 1),
                format!("cannot read file: {e}"),
            )])
        }
    };
    let (rules, d) = crate::companies::CompanyRules::check(&display(&f), &text);
    if d.iter().any(|d| !d.warning) {
        return Err(d);
    }
    Ok(rules)
}
