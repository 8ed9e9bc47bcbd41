//! Pack tests as data: the model of `queries/tests/*.test.yaml` (canonical rows
//! given, parameters, expected rows or error) and the comparison of an answer
//! with what a case expects. Running a case needs a database and lives in
//! `quarry_db::packtest`; this module is pure so the rules are testable alone.
//!
//! A test file names one operation and holds its cases. Rows are given per table
//! (`organizations` means `canonical.organizations`; `quarry.ingest_files` names
//! another schema) with only the columns that matter: the runner fills every
//! other required column. A `.data.yaml` file holds rows several test files
//! share (`include:`).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diag::{parse_definition, word_position, Diagnostic};

/// File-name suffix of a pack test file.
pub const TEST_SUFFIX: &str = ".test.yaml";
/// File-name suffix of a file of shared given rows.
pub const DATA_SUFFIX: &str = ".data.yaml";
/// Absolute difference under which two numbers are equal, unless a case says otherwise.
pub const DEFAULT_TOLERANCE: f64 = 1e-9;

/// Rows per table, inserted in the order written.
pub type Given = IndexMap<String, Vec<Map<String, Value>>>;

/// A pack test file (`*.test.yaml`) or a shared data file (`*.data.yaml`, only
/// `include` and `given`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Quarry pack tests")]
pub struct PackTestFile {
    /// The operation under test (its `name:`). Absent in a `.data.yaml` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `.data.yaml` files, relative to this file, whose rows every case starts with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Rows every case of this file starts with (after the included ones), per
    /// table: `organizations` (schema `canonical`) or `quarry.ingest_files`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub given: Given,
    /// The cases, run one by one, each in its own rolled-back transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<TestCase>,
}

/// One call of the operation and what it must answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows, in a sentence (reported when it fails).
    pub name: String,
    /// How the expected values were worked out. Kept as data (not a YAML
    /// comment) so that `quarry test --update` keeps it when it rewrites the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters as a caller sends them in a JSON body.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// More rows for this case only, added after the file's.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub given: Given,
    pub expect: Expect,
}

/// What a case must answer: rows (all of them, or some), a row count, or an error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every row of the answer. A row lists only the columns it checks; the
    /// answer must have exactly as many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// Rows that must be in the answer (each matching a different row), in any order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<Vec<Map<String, Value>>>,
    /// Rows that must not be in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<Map<String, Value>>>,
    /// How many rows the answer has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Whether the answer is cut at the pack's `max_rows` (default: it must not be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// Whether `rows` must come in the written order (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ordered: bool,
    /// Numbers within this absolute difference are equal (default 1e-9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// The call must be refused or fail instead of answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExpectError>,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// An expected refusal: which parameter it names and text its message contains.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectError {
    /// The parameter the refusal names (a 422 for invalid parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Text the error message contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A loaded test file with its includes resolved.
#[derive(Debug, Clone)]
pub struct LoadedTests {
    pub file: String,
    pub text: String,
    pub spec: PackTestFile,
    /// Rows from the included files, then the file's own.
    pub given: Given,
}

impl LoadedTests {
    /// Line and column of a case, for messages (`file:line`).
    pub fn case_position(&self, case: &TestCase) -> (usize, usize) {
        word_position(&self.text, &case.name).unwrap_or((1, 1))
    }
}

/// True for a path that is a pack test file.
pub fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEST_SUFFIX))
}

/// True for files the pack loader must leave alone (tests and their data).
pub fn is_test_or_data_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEST_SUFFIX) || n.ends_with(DATA_SUFFIX))
}

/// Reads and checks one test file and its includes (pure parsing; whether the
/// operation and tables exist is checked where they are known).
pub fn load(path: &Path) -> Result<LoadedTests, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Diagnostic::new(&file, (1, 1), format!("cannot read: {e}"))])?;
    let mut d = Vec::new();
    let Some(spec) =
        parse_definition::<PackTestFile>(&file, &text, "pack test file", SCHEMA, &mut d)
    else {
        return Err(d);
    };
    let mut given = Given::new();
    let mut seen = vec![path.to_path_buf()];
    include_into(path, &text, &spec, &mut given, &mut seen, &mut d);
    merge(&mut given, &spec.given);
    let is_data = file.ends_with(DATA_SUFFIX);
    if is_data && (spec.operation.is_some() || !spec.cases.is_empty()) {
        d.push(
            Diagnostic::new(
                &file,
                (2, 1),
                "a .data.yaml file holds only `include` and `given`",
            )
            .help("put cases in a NAME.test.yaml file that includes this one"),
        );
    }
    if !is_data {
        if spec.operation.is_none() {
            d.push(
                Diagnostic::new(&file, (2, 1), "the test file names no `operation`")
                    .help("start it with `operation: NAME`, the name of the pack under test"),
            );
        }
        if spec.cases.is_empty() {
            d.push(
                Diagnostic::new(&file, (2, 1), "the test file has no `cases`")
                    .help("add at least one case with `name`, `params` and `expect`"),
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for c in &spec.cases {
        let at = word_position(&text, &c.name).unwrap_or((1, 1));
        if !names.insert(c.name.as_str()) {
            d.push(Diagnostic::new(
                &file,
                at,
                format!("case `{}` is named twice", c.name),
            ));
        }
        let e = &c.expect;
        let kinds = [
            e.rows.is_some(),
            e.contains.is_some() || e.excludes.is_some() || e.row_count.is_some(),
            e.error.is_some(),
        ];
        if e.error.is_some() && kinds.iter().filter(|k| **k).count() > 1 {
            d.push(
                Diagnostic::new(
                    &file,
                    at,
                    format!("case `{}` expects both an error and rows", c.name),
                )
                .help("a call either answers or fails: keep `error` or the row expectations"),
            );
        }
        if !kinds.iter().any(|k| *k) {
            d.push(Diagnostic::new(&file, at, format!("case `{}` expects nothing", c.name))
                .help("give `expect: rows:` (run `quarry test --update` to write the current answer for review), `contains`, `row_count` or `error`"));
        }
        if e.tolerance.is_some_and(|t| t.is_nan() || t < 0.0) {
            d.push(Diagnostic::new(&file, at, "tolerance must be 0 or more"));
        }
    }
    if d.is_empty() {
        Ok(LoadedTests {
            file,
            text,
            spec,
            given,
        })
    } else {
        Err(d)
    }
}

/// JSON Schema file of test and data files.
pub const SCHEMA: &str = "pack-tests.schema.json";

/// The JSON Schema of test and data files (`schemas/pack-tests.schema.json`).
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(PackTestFile)).unwrap_or_default()
}

fn include_into(
    path: &Path,
    text: &str,
    spec: &PackTestFile,
    given: &mut Given,
    seen: &mut Vec<PathBuf>,
    d: &mut Vec<Diagnostic>,
) {
    let file = path.display().to_string();
    for inc in &spec.include {
        let at = word_position(text, inc).unwrap_or((1, 1));
        let target = path.parent().unwrap_or(Path::new(".")).join(inc);
        if !inc.ends_with(DATA_SUFFIX) {
            d.push(
                Diagnostic::new(&file, at, format!("`{inc}` is not a {DATA_SUFFIX} file"))
                    .help("shared rows live in NAME.data.yaml files beside the tests"),
            );
            continue;
        }
        if seen.contains(&target) {
            d.push(Diagnostic::new(
                &file,
                at,
                format!("`{inc}` is included twice or includes itself"),
            ));
            continue;
        }
        seen.push(target.clone());
        let inc_file = target.display().to_string();
        let inc_text = match std::fs::read_to_string(&target) {
            Ok(t) => t,
            Err(e) => {
                d.push(
                    Diagnostic::new(&file, at, format!("cannot read `{inc}`: {e}"))
                        .help("include paths are relative to the file that includes them"),
                );
                continue;
            }
        };
        let Some(inc_spec) = parse_definition::<PackTestFile>(
            &inc_file,
            &inc_text,
            "pack test data file",
            SCHEMA,
            d,
        ) else {
            continue;
        };
        include_into(&target, &inc_text, &inc_spec, given, seen, d);
        merge(given, &inc_spec.given);
    }
}

/// Appends `more` rows to `given`, keeping the order tables first appear in.
pub fn merge(given: &mut Given, more: &Given) {
    for (table, rows) in more {
        given
            .entry(table.clone())
            .or_default()
            .extend(rows.iter().cloned());
    }
}

/// Every test file under `paths` (files and folders, recursively).
pub fn test_files_under(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    files_under(paths, is_test_file)
}

/// Every test and data file under `paths`, for `quarry check`.
pub fn test_and_data_files_under(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    files_under(paths, is_test_or_data_file)
}

fn files_under(paths: &[PathBuf], keep: fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(
                crate::files::yaml_files_under(p)?
                    .into_iter()
                    .filter(|f| keep(f)),
            );
        } else if keep(p) {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Compares an answer with what a case expects; each mismatch is one sentence.
pub fn compare(expect: &Expect, rows: &[Map<String, Value>]) -> Vec<String> {
    let tol = expect.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    let mut problems = Vec::new();
    if let Some(n) = expect.row_count {
        if rows.len() as u64 != n {
            problems.push(format!(
                "expected {n} row(s), the answer has {}",
                rows.len()
            ));
        }
    }
    if let Some(want) = &expect.rows {
        if want.len() != rows.len() {
            problems.push(format!(
                "expected {} row(s), the answer has {}",
                want.len(),
                rows.len()
            ));
        }
        if expect.ordered {
            for (i, (w, g)) in want.iter().zip(rows).enumerate() {
                if let Some(why) = row_mismatch(w, g, tol) {
                    problems.push(format!("row {}: {why}", i + 1));
                }
            }
        } else {
            problems.extend(unmatched(want, rows, tol, "expected row"));
        }
    }
    if let Some(want) = &expect.contains {
        problems.extend(unmatched(want, rows, tol, "expected row"));
    }
    if let Some(bad) = &expect.excludes {
        for (i, b) in bad.iter().enumerate() {
            if rows.iter().any(|r| row_mismatch(b, r, tol).is_none()) {
                problems.push(format!(
                    "excluded row {} is in the answer: {}",
                    i + 1,
                    Value::Object(b.clone())
                ));
            }
        }
    }
    problems
}

/// Expected rows not matched, each by a different answer row (greedy, in order).
fn unmatched(
    want: &[Map<String, Value>],
    rows: &[Map<String, Value>],
    tol: f64,
    what: &str,
) -> Vec<String> {
    let mut used = vec![false; rows.len()];
    let mut problems = Vec::new();
    for (i, w) in want.iter().enumerate() {
        let hit = rows
            .iter()
            .enumerate()
            .find(|(j, r)| !used[*j] && row_mismatch(w, r, tol).is_none());
        match hit {
            Some((j, _)) => used[j] = true,
            None => problems.push(format!(
                "{what} {} is not in the answer: {}",
                i + 1,
                Value::Object(w.clone())
            )),
        }
    }
    problems
}

/// Why `got` does not match `want` (only `want`'s columns are compared).
pub fn row_mismatch(
    want: &Map<String, Value>,
    got: &Map<String, Value>,
    tol: f64,
) -> Option<String> {
    let mut why = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => why.push(format!("no column `{k}` in the answer")),
            Some(g) if !values_equal(w, g, tol) => why.push(format!("`{k}` is {g}, expected {w}")),
            Some(_) => {}
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Equality with numbers compared within `tol` (exact decimals that arrive as
/// strings compare as numbers too), and lists and objects element by element.
pub fn values_equal(want: &Value, got: &Value, tol: f64) -> bool {
    match (want, got) {
        (Value::Number(_), _) | (_, Value::Number(_)) => match (number_of(want), number_of(got)) {
            (Some(w), Some(g)) => (w - g).abs() <= tol || w == g,
            _ => false,
        },
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| values_equal(a, b, tol))
        }
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, a)| g.get(k).is_some_and(|b| values_equal(a, b, tol)))
        }
        _ => want == got,
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        serde_json::from_value(v).unwrap()
    }

    fn expect(y: &str) -> Expect {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn ordered_rows_compare_only_the_listed_columns() {
        let got = rows(json!([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]));
        assert!(compare(&expect("rows: [{a: 1}, {a: 2}]"), &got).is_empty());
        let p = compare(&expect("rows: [{a: 2}, {a: 1}]"), &got);
        assert_eq!(
            p,
            ["row 1: `a` is 1, expected 2", "row 2: `a` is 2, expected 1"]
        );
        assert!(compare(&expect("{rows: [{a: 2}, {a: 1}], ordered: false}"), &got).is_empty());
        let p = compare(&expect("rows: [{a: 1}]"), &got);
        assert_eq!(p, ["expected 1 row(s), the answer has 2"]);
        let p = compare(&expect("rows: [{c: 1}, {a: 2}]"), &got);
        assert_eq!(p, ["row 1: no column `c` in the answer"]);
    }

    #[test]
    fn numbers_compare_within_the_tolerance_and_exact_decimals_as_numbers() {
        let got = rows(json!([{"v": 49.8601, "d": "12345678901234567.89", "n": null}]));
        assert!(compare(&expect("rows: [{v: 49.86, n: null}]"), &got).len() == 1);
        assert!(compare(&expect("{rows: [{v: 49.86}], tolerance: 0.001}"), &got).is_empty());
        assert!(compare(&expect("rows: [{d: \"12345678901234567.89\"}]"), &got).is_empty());
        assert_eq!(
            compare(&expect("rows: [{n: 0}]"), &got),
            ["row 1: `n` is null, expected 0"]
        );
    }

    #[test]
    fn contains_and_excludes_match_distinct_rows() {
        let got = rows(json!([{"a": 1}, {"a": 1}, {"a": 3}]));
        assert!(compare(&expect("contains: [{a: 1}, {a: 1}]"), &got).is_empty());
        assert_eq!(
            compare(&expect("contains: [{a: 3}, {a: 3}]"), &got),
            ["expected row 2 is not in the answer: {\"a\":3}"]
        );
        assert_eq!(
            compare(&expect("{excludes: [{a: 3}], row_count: 2}"), &got),
            [
                "expected 2 row(s), the answer has 3",
                "excluded row 1 is in the answer: {\"a\":3}"
            ]
        );
    }
}
