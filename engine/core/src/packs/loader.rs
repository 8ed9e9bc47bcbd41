//! Loading and checking query packs. [`check_pack`] is what `quarry check` runs on
//! every pack and what the server runs before it accepts a reload: it reports every
//! problem with file:line:column instead of stopping at the first.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::diag::{
    is_valid_name, parse_definition, template_var_position, word_position, yaml_key_position,
    Diagnostic,
};
use crate::packs::pack::{PackSpec, ParamType};
use crate::packs::params::{self, anchored, InputStyle, ResolvedParams};
use crate::packs::render::{is_plain_identifier, PackTemplate, RenderedQuery};

/// Query parameter names the API itself uses: no operation may declare them.
pub const RESERVED_PARAMETERS: &[&str] = &["page_size", "cursor", "operation"];

/// The first line every definition file carries, so editors validate it.
pub const SCHEMA_HEADER_PREFIX: &str = "# yaml-language-server: $schema=";
/// Most rows any pack may declare as its cap.
pub const MAX_ROWS_LIMIT: u64 = 1_000_000;

/// The text of one pack: its YAML and its SQL template, with the names to report.
#[derive(Debug, Clone)]
pub struct PackSource {
    pub yaml_file: String,
    pub yaml_text: String,
    pub sql_file: String,
    /// `None` when the `.sql` file does not exist.
    pub sql_text: Option<String>,
}

/// A loaded, checked pack.
#[derive(Debug)]
pub struct Pack {
    pub spec: PackSpec,
    pub yaml_file: String,
    /// The YAML as read (for positions in later checks).
    pub yaml_text: String,
    pub sql_file: String,
    pub sql_text: String,
    /// sha256 of the YAML and SQL content; part of the cache key.
    pub content_digest: String,
    pub template: PackTemplate,
}

impl Pack {
    /// Validates caller input (see [`params::resolve`]).
    pub fn resolve(
        &self,
        input: &serde_json::Map<String, serde_json::Value>,
        style: InputStyle,
    ) -> Result<ResolvedParams, Vec<params::ParamError>> {
        params::resolve(&self.spec, input, style)
    }

    /// Renders the template with resolved parameters.
    pub fn render(&self, params: &ResolvedParams) -> Result<RenderedQuery, String> {
        self.template
            .render(&self.spec, params)
            .map_err(|e| render_error_text(&self.sql_file, &e))
    }

    /// Parameters made of defaults and examples, for checks and EXPLAIN.
    pub fn sample_params(&self) -> Result<ResolvedParams, Vec<params::ParamError>> {
        let mut input = serde_json::Map::new();
        for (name, p) in &self.spec.parameters {
            if p.default.is_none() {
                if let Some(ex) = &p.example {
                    input.insert(name.clone(), ex.clone());
                }
            }
        }
        params::resolve(&self.spec, &input, InputStyle::Json)
    }
}

/// Most parameter combinations `quarry check` renders per pack; past it, each
/// value is tried once with the others at their defaults.
pub const MAX_BRANCHES: usize = 256;

/// One combination of parameter values that changes the template's structure.
#[derive(Debug, Clone)]
pub struct Branch {
    /// `level=segment, metric=order_count`, or `the defaults`.
    pub label: String,
    pub input: serde_json::Map<String, serde_json::Value>,
}

impl Pack {
    /// Every distinct combination of the values that can change what the template
    /// renders: each enum value, both booleans, optional parameters absent and
    /// present, required ones at their example (at most [`MAX_BRANCHES`]).
    pub fn branches(&self) -> Vec<Branch> {
        let mut axes: Vec<(&str, Vec<serde_json::Value>)> = Vec::new();
        for (name, p) in &self.spec.parameters {
            let mut values: Vec<serde_json::Value> = match (&p.allowed, p.kind) {
                (Some(vals), _) => vals.clone(),
                (None, ParamType::Boolean) => vec![true.into(), false.into()],
                _ => Vec::new(),
            };
            match &p.default {
                None => values.extend(p.example.clone()),
                Some(serde_json::Value::Null) => {
                    values.push(serde_json::Value::Null);
                    values.extend(p.example.clone().or_else(|| sample_value(p)));
                }
                Some(_) => {}
            }
            let mut distinct: Vec<serde_json::Value> = Vec::new();
            for v in values {
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            if !distinct.is_empty() {
                axes.push((name.as_str(), distinct));
            }
        }
        let total = axes
            .iter()
            .try_fold(1usize, |acc, (_, v)| acc.checked_mul(v.len()))
            .unwrap_or(usize::MAX);
        let mut combos: Vec<Vec<(&str, &serde_json::Value)>> = Vec::new();
        if total <= MAX_BRANCHES {
            combos.push(Vec::new());
            for (name, values) in &axes {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((*name, v));
                            c
                        })
                    })
                    .collect();
            }
        } else {
            combos.push(Vec::new());
            for (name, values) in &axes {
                for v in values {
                    combos.push(vec![(*name, v)]);
                }
            }
        }
        combos
            .into_iter()
            .map(|combo| {
                let mut input = serde_json::Map::new();
                let mut label = Vec::new();
                for (name, v) in combo {
                    let is_default = self
                        .spec
                        .parameters
                        .get(name)
                        .and_then(|p| p.default.as_ref())
                        == Some(v);
                    if !is_default {
                        label.push(format!("{name}={}", short(v)));
                    }
                    input.insert(name.to_string(), v.clone());
                }
                Branch {
                    label: if label.is_empty() {
                        "the defaults".to_string()
                    } else {
                        label.join(", ")
                    },
                    input,
                }
            })
            .collect()
    }
}

fn short(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value of the parameter's type for "present" when it declares no example.
fn sample_value(p: &crate::packs::pack::ParamSpec) -> Option<serde_json::Value> {
    let lo = p.minimum.unwrap_or(1.0);
    Some(match p.kind {
        ParamType::String => "x".into(),
        ParamType::Integer => serde_json::Value::from(lo.ceil() as i64),
        ParamType::Number => serde_json::Value::from(lo),
        ParamType::Date => "2024-01-01".into(),
        ParamType::Timestamp => "2024-01-01T00:00:00Z".into(),
        ParamType::Interval => "1 day".into(),
        ParamType::StringList => serde_json::json!(["x"]),
        ParamType::IntegerList => serde_json::json!([lo.ceil() as i64]),
        ParamType::Boolean | ParamType::Identifier | ParamType::Sql => return None,
    })
}

fn render_error_text(file: &str, e: &minijinja::Error) -> String {
    let line = e.line().unwrap_or(1);
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    format!("{file}:{line}: {detail}")
}

/// The set of packs a server or CLI serves, by name: the latest major version of
/// each operation, and older major versions still served beside it (called as
/// `name@MAJOR`).
#[derive(Debug, Default)]
pub struct PackSet {
    /// The latest version of each operation, by name.
    pub packs: IndexMap<String, Arc<Pack>>,
    /// Older major versions, by `name@MAJOR`.
    pub older: IndexMap<String, Arc<Pack>>,
}

/// The major version of a `MAJOR.MINOR.PATCH` version.
pub fn major_of(version: &str) -> Option<u64> {
    version.split('.').next()?.parse().ok()
}

impl Pack {
    /// The name that calls exactly this version: `name@MAJOR`.
    pub fn versioned_name(&self) -> String {
        match major_of(&self.spec.version) {
            Some(m) => format!("{}@{m}", self.spec.name),
            None => self.spec.name.clone(),
        }
    }
}

impl PackSet {
    /// `name` (the latest version) or `name@MAJOR` (that major version).
    pub fn get(&self, name: &str) -> Option<&Arc<Pack>> {
        if let Some(p) = self.packs.get(name) {
            return Some(p);
        }
        let (base, major) = name.split_once('@')?;
        let latest = self.packs.get(base)?;
        if major_of(&latest.spec.version)
            .map(|m| m.to_string())
            .as_deref()
            == Some(major)
        {
            return Some(latest);
        }
        self.older.get(name)
    }
    /// The operations' names (latest versions).
    pub fn names(&self) -> Vec<&str> {
        self.packs.keys().map(String::as_str).collect()
    }
    /// Every version served: each latest, then the older ones.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Pack>> {
        self.packs.values().chain(self.older.values())
    }
    /// The version a job was submitted to: the same major version (a newer
    /// minor or patch of it is fine), never another major.
    pub fn for_job(&self, name: &str, version: &str) -> Option<&Arc<Pack>> {
        match major_of(version) {
            Some(m) => self.get(&format!("{name}@{m}")),
            None => self.get(name),
        }
    }
    /// Every name a caller can use: `name`, and `name@MAJOR` for each version.
    pub fn call_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.packs.keys().cloned().collect();
        out.extend(self.all().map(|p| p.versioned_name()));
        out.sort();
        out.dedup();
        out
    }
    pub fn len(&self) -> usize {
        self.packs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }
}

// Compiled once per process, not once per pack (a cold start loads every pack).
static CALL_RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r#"\b(ident|sql)\(\s*["']([A-Za-z0-9_]+)["']\s*\)"#)
        .unwrap_or_else(|_| unreachable!())
});
static PRINT_RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\||-?\}\})")
        .unwrap_or_else(|_| unreachable!())
});

/// Checks every source and builds the set; all problems of all packs are returned,
/// and the set is only built when there are none. One operation may be defined
/// in several files only with different major versions.
pub fn build_pack_set(sources: &[PackSource]) -> Result<PackSet, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut packs = Vec::new();
    for src in sources {
        let (pack, mut d) = check_pack(src);
        diags.append(&mut d);
        packs.extend(pack.map(Arc::new));
    }
    let (set, mut d) = PackSet::from_packs(packs);
    diags.append(&mut d);
    if diags.is_empty() {
        Ok(set)
    } else {
        Err(diags)
    }
}

impl PackSet {
    /// Groups checked packs by name: the highest major version is the latest,
    /// the others are served as `name@MAJOR`; two files with the same name and
    /// major version are a problem.
    pub fn from_packs(packs: Vec<Arc<Pack>>) -> (PackSet, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut by_name: IndexMap<String, Vec<Arc<Pack>>> = IndexMap::new();
        for p in packs {
            by_name.entry(p.spec.name.clone()).or_default().push(p);
        }
        let mut set = PackSet::default();
        for (name, mut versions) in by_name {
            versions.sort_by_key(|p| std::cmp::Reverse(major_of(&p.spec.version)));
            for pair in versions.windows(2) {
                if major_of(&pair[0].spec.version) == major_of(&pair[1].spec.version) {
                    diags.push(
                        Diagnostic::new(
                            &pair[1].yaml_file,
                            yaml_key_position(&pair[1].yaml_text, &["version"]),
                            format!(
                                "operation `{name}` is defined twice with major version {} (also in {})",
                                major_of(&pair[1].spec.version).unwrap_or(0),
                                pair[0].yaml_file
                            ),
                        )
                        .help("serve versions side by side with different major versions, or remove one file"),
                    );
                }
            }
            let mut it = versions.into_iter();
            if let Some(latest) = it.next() {
                set.packs.insert(name.clone(), latest);
            }
            for p in it {
                set.older.insert(p.versioned_name(), p);
            }
        }
        set.packs.sort_keys();
        set.older.sort_keys();
        (set, diags)
    }
}

/// Checks one pack offline. Returns the pack when it has no problems.
pub fn check_pack(src: &PackSource) -> (Option<Pack>, Vec<Diagnostic>) {
    let yf = src.yaml_file.as_str();
    let y = src.yaml_text.as_str();
    let mut d = Vec::new();
    let Some(spec) =
        parse_definition::<PackSpec>(yf, y, "pack definition", "query-pack.schema.json", &mut d)
    else {
        return (None, d);
    };
    let at = |path: &[&str]| yaml_key_position(y, path);

    let stem = std::path::Path::new(yf)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if !is_valid_name(&spec.name) {
        d.push(
            Diagnostic::new(
                yf,
                at(&["name"]),
                format!("name `{}` is not valid", spec.name),
            )
            .help("use lower case letters, digits and underscores, starting with a letter"),
        );
    } else if spec.name != stem {
        d.push(
            Diagnostic::new(
                yf,
                at(&["name"]),
                format!(
                    "name `{}` does not match the file name `{stem}.yaml`",
                    spec.name
                ),
            )
            .help(format!(
                "rename the file to `{}.yaml` or set `name: {stem}`",
                spec.name
            )),
        );
    }
    let version_ok = crate::is_semver(&spec.version);
    if !version_ok {
        d.push(
            Diagnostic::new(
                yf,
                at(&["version"]),
                format!("version `{}` is not MAJOR.MINOR.PATCH", spec.version),
            )
            .help("write it as three numbers, for example `1.0.0`"),
        );
    }
    if !(1..=3600).contains(&spec.timeout_seconds) {
        d.push(Diagnostic::new(
            yf,
            at(&["timeout_seconds"]),
            "timeout_seconds must be from 1 to 3600",
        ));
    }
    if spec.max_rows == 0 || spec.max_rows > MAX_ROWS_LIMIT {
        d.push(Diagnostic::new(
            yf,
            at(&["max_rows"]),
            format!("max_rows must be from 1 to {MAX_ROWS_LIMIT}"),
        ));
    }
    if spec.work_mem_mb.is_some_and(|m| !(1..=256).contains(&m)) {
        d.push(Diagnostic::new(
            yf,
            at(&["work_mem_mb"]),
            "work_mem_mb must be from 1 to 256 (MiB per sort or hash of the query)",
        ));
    }
    if spec.columns.is_empty() && !spec.raw_sql {
        d.push(
            Diagnostic::new(yf, at(&["columns"]), "no result columns declared").help(
                "list the columns the query returns under `columns:` (name, type, description)",
            ),
        );
    }
    let mut seen = HashSet::new();
    for c in &spec.columns {
        if !seen.insert(c.name.as_str()) {
            d.push(Diagnostic::new(
                yf,
                word_position(y, &c.name).unwrap_or((1, 1)),
                format!("column `{}` is declared twice", c.name),
            ));
        }
    }

    let mut sql_params = 0;
    for (name, p) in &spec.parameters {
        let ppos = at(&["parameters", name]);
        if !is_valid_name(name) || crate::packs::render::TEMPLATE_GLOBALS.contains(&name.as_str()) {
            d.push(Diagnostic::new(yf, ppos, format!("parameter name `{name}` is not valid"))
                .help("use lower case letters, digits and underscores; `ident`, `sql`, `range` and `loop` are reserved"));
        } else if RESERVED_PARAMETERS.contains(&name.as_str()) {
            d.push(
                Diagnostic::new(yf, ppos, format!("parameter name `{name}` is reserved"))
                    .help("`page_size`, `cursor` and `operation` belong to the API (pagination, the operation's name); choose another name"),
            );
        }
        match p.kind {
            ParamType::Identifier => {
                let values = p.allowed.as_deref().unwrap_or_default();
                if values.is_empty() {
                    d.push(Diagnostic::new(yf, ppos, format!("identifier parameter `{name}` has no `enum`"))
                        .help("list the identifiers it may take: an identifier can only be one of its declared values"));
                }
                for v in values {
                    if !v.as_str().is_some_and(is_plain_identifier) {
                        d.push(Diagnostic::new(yf, at(&["parameters", name, "enum"]), format!("enum value {v} of identifier parameter `{name}` is not a plain identifier"))
                            .help("use letters, digits and underscores only (at most 63), starting with a letter or underscore"));
                    }
                }
            }
            ParamType::Sql => {
                sql_params += 1;
                if !spec.raw_sql {
                    d.push(Diagnostic::new(yf, ppos, format!("parameter `{name}` has type sql but the pack is not marked `raw_sql: true`"))
                        .help("caller-supplied SQL must be declared explicitly with `raw_sql: true`"));
                }
            }
            _ => {}
        }
        if (p.minimum.is_some() || p.maximum.is_some())
            && !matches!(p.kind, ParamType::Integer | ParamType::Number)
        {
            d.push(Diagnostic::new(
                yf,
                ppos,
                format!(
                    "minimum/maximum only apply to integer and number parameters, not {}",
                    p.kind.as_str()
                ),
            ));
        }
        if let (Some(lo), Some(hi)) = (p.minimum, p.maximum) {
            if lo > hi {
                d.push(Diagnostic::new(
                    yf,
                    at(&["parameters", name, "minimum"]),
                    format!("minimum {lo} is above maximum {hi}"),
                ));
            }
        }
        if let Some(pat) = &p.pattern {
            if let Err(e) = anchored(pat) {
                d.push(Diagnostic::new(
                    yf,
                    at(&["parameters", name, "pattern"]),
                    format!("pattern does not compile: {e}"),
                ));
            }
        }
        if let Some(values) = &p.allowed {
            let mut bare = p.clone();
            bare.allowed = None;
            for v in values {
                if let Err(e) = params::coerce(&bare, v, InputStyle::Json) {
                    d.push(Diagnostic::new(
                        yf,
                        at(&["parameters", name, "enum"]),
                        format!("enum value {v} is not a valid {}: {e}", p.kind.as_str()),
                    ));
                }
            }
        }
        for (key, v) in [("default", &p.default), ("example", &p.example)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_null()) {
                if let Err(e) = params::coerce(p, v, InputStyle::Json) {
                    d.push(
                        Diagnostic::new(
                            yf,
                            at(&["parameters", name, key]),
                            format!("{key} {v} is not valid for parameter `{name}`: {e}"),
                        )
                        .help(format!(
                            "give a {} value the parameter's own rules accept",
                            p.kind.as_str()
                        )),
                    );
                }
            }
        }
        if p.default.is_none() && p.example.is_none() {
            d.push(
                Diagnostic::new(
                    yf,
                    ppos,
                    format!("required parameter `{name}` has neither a default nor an example"),
                )
                .help("add `example:` so `quarry check` can render and EXPLAIN the template"),
            );
        }
    }
    for (i, c) in spec.constraints.iter().enumerate() {
        let pos = word_position(y, &format!("to: {}", c.to))
            .or_else(|| word_position(y, &format!("from: {}", c.from)))
            .unwrap_or_else(|| at(&["constraints"]));
        let kinds: Vec<Option<ParamType>> = [&c.from, &c.to]
            .iter()
            .map(|n| spec.parameters.get(*n).map(|p| p.kind))
            .collect();
        for (name, kind) in [&c.from, &c.to].iter().zip(&kinds) {
            if kind.is_none() {
                d.push(
                    Diagnostic::new(
                        yf,
                        pos,
                        format!("constraint {}: `{name}` is not a declared parameter", i + 1),
                    )
                    .help("a constraint relates two parameters declared under `parameters:`"),
                );
            }
        }
        if let [Some(a), Some(b)] = kinds[..] {
            let ordered = matches!(
                a,
                ParamType::Date | ParamType::Timestamp | ParamType::Integer | ParamType::Number
            );
            if a != b || !ordered || c.from == c.to {
                d.push(
                    Diagnostic::new(yf, pos, format!("constraint {}: `{}` ({}) and `{}` ({}) do not make a range", i + 1, c.from, a.as_str(), c.to, b.as_str()))
                        .help("from and to are two different parameters of the same type: date, timestamp, integer or number"),
                );
            }
        }
    }
    if let Some(dep) = &spec.deprecation {
        let pos = at(&["deprecation"]);
        if dep.sunset.is_some_and(|s| s < dep.since) {
            d.push(Diagnostic::new(
                yf,
                pos,
                "deprecation: the sunset is before the day it was deprecated",
            ));
        }
        if let Some(link) = &dep.link {
            if !(link.starts_with("https://") || link.starts_with("http://"))
                || link
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '>')
            {
                d.push(
                    Diagnostic::new(
                        yf,
                        pos,
                        format!("deprecation: link `{link}` is not a plain http(s) URL"),
                    )
                    .help("it is sent in a Link header: an absolute URL without spaces"),
                );
            }
        }
    }
    if spec.raw_sql && sql_params == 0 {
        d.push(Diagnostic::new(
            yf,
            at(&["raw_sql"]),
            "a raw_sql pack needs a parameter of type sql",
        ));
    }

    let Some(sql_text) = src.sql_text.clone() else {
        d.push(
            Diagnostic::new(
                yf,
                at(&["name"]),
                format!("the SQL template `{}` does not exist", src.sql_file),
            )
            .help(
                "each queries/NAME.yaml needs a minijinja SQL template queries/NAME.sql beside it",
            ),
        );
        return (None, d);
    };
    let sf = src.sql_file.as_str();
    let template = match PackTemplate::compile(&spec, sf, &sql_text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.line().unwrap_or(1);
            d.push(Diagnostic::new(sf, (line, 1), format!("template syntax error: {}", e.detail().unwrap_or("invalid syntax")))
                .help("see https://docs.rs/minijinja for the template syntax; macros, include and extends are not available"));
            return (None, d);
        }
    };

    // Parameters used but not declared, declared but not used.
    let referenced = template.referenced_variables();
    let call_re = &*CALL_RE;
    let mut called = BTreeSet::new();
    for (i, line) in sql_text.lines().enumerate() {
        for cap in call_re.captures_iter(line) {
            let (func, pname) = (&cap[1], &cap[2]);
            called.insert(pname.to_string());
            let col = cap.get(0).map(|m| m.start() + 1).unwrap_or(1);
            match spec.parameters.get(pname) {
                None => d.push(Diagnostic::new(sf, (i + 1, col), format!("{func}(\"{pname}\") names an undeclared parameter"))
                    .help(format!("declare `{pname}` under parameters in {yf}"))),
                Some(p) if func == "ident" && p.kind != ParamType::Identifier => d.push(
                    Diagnostic::new(sf, (i + 1, col), format!("ident(\"{pname}\") needs an identifier parameter, but `{pname}` is {}", p.kind.as_str()))
                        .help("declare it with `type: identifier` and an `enum` of allowed names, or bind it as a value with {{ name }}"),
                ),
                Some(p) if func == "sql" && p.kind != ParamType::Sql => d.push(
                    Diagnostic::new(sf, (i + 1, col), format!("sql(\"{pname}\") needs an sql parameter, but `{pname}` is {}", p.kind.as_str()))),
                _ => {}
            }
        }
    }
    // An identifier printed as a value binds its name as text: a constant.
    let print_re = &*PRINT_RE;
    for (i, line) in sql_text.lines().enumerate() {
        for cap in print_re.captures_iter(line) {
            let pname = &cap[1];
            if spec
                .parameters
                .get(pname)
                .is_some_and(|p| p.kind == ParamType::Identifier)
            {
                let col = cap
                    .get(0)
                    .map_or(1, |m| line[..m.start()].chars().count() + 1);
                d.push(
                    Diagnostic::new(sf, (i + 1, col), format!("identifier parameter `{pname}` is printed with {{{{ }}}}: its value is bound as text, not written as a column name"))
                        .help(format!("print it with {{{{ ident(\"{pname}\") }}}}")),
                );
            }
        }
    }
    let mut undeclared: Vec<&String> = referenced
        .iter()
        .filter(|v| !spec.parameters.contains_key(*v))
        .collect();
    undeclared.sort();
    for v in undeclared {
        d.push(
            Diagnostic::new(
                sf,
                template_var_position(&sql_text, v).unwrap_or((1, 1)),
                format!("`{v}` is used but not declared as a parameter"),
            )
            .help(format!(
                "declare `{v}` under parameters in {yf}, or fix the spelling"
            )),
        );
    }
    for name in spec.parameters.keys() {
        if !referenced.contains(name) && !called.contains(name) {
            d.push(
                Diagnostic::new(
                    yf,
                    at(&["parameters", name]),
                    format!("parameter `{name}` is declared but never used in {sf}"),
                )
                .help("use it in the template or remove it"),
            );
        }
    }

    let digest = {
        let mut h = Sha256::new();
        h.update(y.as_bytes());
        h.update([0u8]);
        h.update(sql_text.as_bytes());
        hex::encode(h.finalize())
    };
    let pack = Pack {
        spec,
        yaml_file: src.yaml_file.clone(),
        yaml_text: src.yaml_text.clone(),
        sql_file: src.sql_file.clone(),
        sql_text,
        content_digest: digest,
        template,
    };
    if d.is_empty() {
        // Render with defaults and examples: catches runtime template errors.
        match pack.sample_params() {
            Ok(p) => {
                if let Err(e) = pack.template.render(&pack.spec, &p) {
                    let line = e.line().unwrap_or(1);
                    d.push(Diagnostic::new(sf, (line, 1), format!("rendering with the defaults fails: {}", e.detail().unwrap_or("error")))
                        .help("every variable must be a declared parameter; print values with {{ name }} and identifiers with {{ ident(\"name\") }}"));
                }
            }
            Err(errs) => {
                for e in errs {
                    d.push(Diagnostic::new(
                        yf,
                        at(&["parameters", &e.parameter]),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    if d.is_empty() {
        check_branches_offline(&pack, &mut d);
    }
    if d.is_empty() {
        (Some(pack), d)
    } else {
        (None, d)
    }
}

/// A pack's branches rendered through the mapped template: the SQL of each
/// distinct rendering with its map back to the template.
pub struct BranchRender {
    pub label: String,
    pub query: RenderedQuery,
    pub map: crate::packs::render::SourceMap,
}

/// Renders every branch (see [`Pack::branches`]); the renderings that fail are
/// problems at their template line. Renderings with the same SQL are kept once.
pub fn render_branches(pack: &Pack) -> (Vec<BranchRender>, Vec<Diagnostic>) {
    let mut d = Vec::new();
    let mut out: Vec<BranchRender> = Vec::new();
    let mapped = match PackTemplate::compile_mapped(&pack.spec, &pack.sql_file, &pack.sql_text) {
        Ok(m) => m,
        Err(e) => {
            d.push(Diagnostic::new(
                &pack.sql_file,
                (e.line().unwrap_or(1), 1),
                format!(
                    "template syntax error: {}",
                    e.detail().unwrap_or("invalid syntax")
                ),
            ));
            return (out, d);
        }
    };
    let mut seen = HashSet::new();
    for b in pack.branches() {
        let Ok(params) = pack.resolve(&b.input, InputStyle::Json) else {
            continue; // not a combination a caller can send
        };
        match mapped.render(&pack.spec, &params) {
            Ok((query, map)) => {
                if seen.insert(query.sql.clone()) {
                    out.push(BranchRender {
                        label: b.label,
                        query,
                        map,
                    });
                }
            }
            Err(e) => {
                let line = e.line().unwrap_or(1);
                let msg = format!(
                    "rendering with {} fails: {}",
                    b.label,
                    e.detail().unwrap_or("error")
                );
                if !d
                    .iter()
                    .any(|x: &Diagnostic| x.line == line && x.message == msg)
                {
                    d.push(Diagnostic::new(&pack.sql_file, (line, 1), msg));
                }
            }
        }
    }
    (out, d)
}

/// The offline SQL checks of every branch (see [`crate::packs::sqlcheck`]), each problem
/// once, at its template line and column, naming the first branch it shows in.
fn check_branches_offline(pack: &Pack, d: &mut Vec<Diagnostic>) {
    let (renders, mut problems) = render_branches(pack);
    d.append(&mut problems);
    let mut seen = HashSet::new();
    for r in &renders {
        for issue in crate::packs::sqlcheck::analyze(&r.query.sql, r.query.binds.len()) {
            let pos = r.map.locate(issue.offset);
            if seen.insert((pos, issue.message.clone())) {
                let with = if r.label == "the defaults" {
                    String::new()
                } else {
                    format!(" (with {})", r.label)
                };
                d.push(
                    Diagnostic::new(&pack.sql_file, pos, format!("{}{with}", issue.message))
                        .help(issue.help),
                );
            }
        }
    }
}
