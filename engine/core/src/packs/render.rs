//! Rendering a pack's SQL template into a statement with bind parameters.
//!
//! The invariant this module exists for: **no parameter text ever becomes SQL text**.
//! Every value printed with `{{ ... }}` goes through [`sql_formatter`], which appends
//! it to the bind list and writes `$n` instead. The only things written verbatim are
//! [`SqlFragment`]s, a private type created solely by `ident("param")` (which emits
//! one of the parameter's declared enum values as a quoted identifier) and by
//! `sql("param")` (only for `sql` parameters of `raw_sql` packs).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, NaiveDate};
use minijinja::value::{Object, ObjectRepr, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

use crate::packs::pack::{PackSpec, ParamType};
use crate::packs::params::{ParamValue, ResolvedParams};

/// Template evaluation budget: instructions a render may execute.
pub const TEMPLATE_FUEL: u64 = 200_000;
/// Maximum nesting depth of template constructs.
pub const TEMPLATE_RECURSION_LIMIT: usize = 32;
const BINDS_TEMP: &str = "quarry.binds";

/// Postgres types a bind parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Text,
    Int8,
    Float8,
    Bool,
    Date,
    Timestamptz,
    /// Sent as text and cast in SQL (`CAST($n AS interval)`).
    Interval,
    TextArray,
    Int8Array,
}

impl PgType {
    pub fn sql_name(self) -> &'static str {
        match self {
            PgType::Text => "text",
            PgType::Int8 => "int8",
            PgType::Float8 => "float8",
            PgType::Bool => "bool",
            PgType::Date => "date",
            PgType::Timestamptz => "timestamptz",
            PgType::Interval => "interval",
            PgType::TextArray => "text[]",
            PgType::Int8Array => "int8[]",
        }
    }
}

/// A bind parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum BindValue {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    Timestamp(DateTime<FixedOffset>),
    TextArray(Vec<String>),
    IntArray(Vec<i64>),
}

/// One `$n` parameter: its value and its Postgres type.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    pub value: BindValue,
    pub pg_type: PgType,
}

/// A rendered statement: SQL text with `$1..$n` placeholders and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedQuery {
    pub sql: String,
    pub binds: Vec<Bind>,
    /// `Some(n)`: the SQL itself returns at most `n` rows (see
    /// [`RenderedQuery::with_row_limit`]).
    pub row_limit: Option<u64>,
}

impl RenderedQuery {
    /// The statement with the row cap in the SQL: at most `max_rows + 1` rows
    /// (one more says the cap cut the answer), so the database stops at the
    /// cap however the rows are read. That lets the caller run it in one
    /// execution rather than a portal fetching a row count, which PostgreSQL
    /// never runs in parallel. The statement is a MATERIALIZED CTE, which
    /// PostgreSQL plans on its own, for all of its rows, exactly as it plans
    /// the bare statement, and reads only as far as the LIMIT asks; a plain
    /// subquery would be planned for the first rows, which turned
    /// relationship_analysis at 1M records from 3.5 s into a nested loop past
    /// its timeout. The CTE keeps the statement's ORDER BY. The limit is a
    /// number the engine computed, not a caller's text.
    pub fn with_row_limit(mut self, max_rows: u64) -> Self {
        let limit = max_rows.saturating_add(1).min(i64::MAX as u64);
        let body = self
            .sql
            .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        self.sql =
            format!("WITH answer AS MATERIALIZED (\n{body}\n) SELECT * FROM answer LIMIT {limit}");
        self.row_limit = Some(limit);
        self
    }
}

/// SQL text written verbatim. Private constructor: only `ident()` and `sql()` make one.
#[derive(Debug)]
struct SqlFragment(String);
impl Object for SqlFragment {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A typed scalar that has no native template type (date, timestamp, interval, typed null).
#[derive(Debug)]
struct TypedScalar(Bind);
impl Object for TypedScalar {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn is_true(self: &Arc<Self>) -> bool {
        self.0.value != BindValue::Null
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.value {
            BindValue::Date(d) => write!(f, "{d}"),
            BindValue::Timestamp(t) => f.write_str(&t.to_rfc3339()),
            BindValue::Text(t) => f.write_str(t),
            _ => f.write_str(""),
        }
    }
}

/// Caller-supplied SQL, refused by the formatter unless passed through `sql()`.
#[derive(Debug)]
struct SqlText(String);
impl Object for SqlText {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<sql parameter>")
    }
}

#[derive(Debug, Default)]
struct BindCollector(Mutex<Vec<Bind>>);
impl Object for BindCollector {}

/// The per-pack template environment: strict undefined, fuel and recursion limits,
/// no loader (no includes), and the binding formatter.
pub struct PackTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for PackTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackTemplate")
    }
}

/// Global names the environment defines for templates (not parameters).
pub const TEMPLATE_GLOBALS: &[&str] = &["ident", "sql", "range", "loop"];

impl PackTemplate {
    /// Compiles `source` (named `file_name` in errors) for the pack `spec`.
    pub fn compile(spec: &PackSpec, file_name: &str, source: &str) -> Result<Self, Error> {
        Self::compile_with(spec, file_name, source.to_string())
    }

    /// Compiles a copy of the template whose rendering says where each piece of
    /// SQL text came from (see [`MappedTemplate`]), for `quarry check`.
    pub fn compile_mapped(
        spec: &PackSpec,
        file_name: &str,
        source: &str,
    ) -> Result<MappedTemplate, Error> {
        let mut chunks = Vec::new();
        let mut marked = String::with_capacity(source.len() + 64);
        let mut copied = 0;
        let tokens = minijinja::machinery::tokenize(
            source,
            false,
            Default::default(),
            minijinja::machinery::WhitespaceConfig {
                keep_trailing_newline: true,
                ..Default::default()
            },
        );
        for tok in tokens {
            let (tok, span) = tok?;
            if let minijinja::machinery::Token::TemplateData(text) = tok {
                let start = span.start_offset as usize;
                if text.is_empty() || start < copied || !source.is_char_boundary(start) {
                    continue;
                }
                marked.push_str(&source[copied..start]);
                marked.push(MARK_OPEN);
                marked.push_str(&chunks.len().to_string());
                marked.push(MARK_CLOSE);
                chunks.push((start, text.len()));
                copied = start;
            }
        }
        marked.push_str(&source[copied..]);
        let template = Self::compile_with(spec, file_name, marked)?;
        Ok(MappedTemplate {
            template,
            chunks,
            source: source.to_string(),
        })
    }

    fn compile_with(spec: &PackSpec, file_name: &str, source: String) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_formatter(sql_formatter);
        env.set_keep_trailing_newline(true);

        let identifiers: Vec<(String, Vec<String>)> = spec
            .parameters
            .iter()
            .filter(|(_, p)| p.kind == ParamType::Identifier)
            .map(|(name, p)| {
                let allowed = p
                    .allowed
                    .iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                (name.clone(), allowed)
            })
            .collect();
        env.add_function(
            "ident",
            move |state: &State, name: &str| -> Result<Value, Error> {
                let Some((_, allowed)) = identifiers.iter().find(|(n, _)| n == name) else {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "ident(\"{name}\"): `{name}` is not a declared identifier parameter"
                        ),
                    ));
                };
                let value = state.lookup(name).unwrap_or_default();
                let text = value.as_str().unwrap_or_default();
                if !allowed.iter().any(|a| a == text) || !is_plain_identifier(text) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("ident(\"{name}\"): value is not one of the declared enum values"),
                    ));
                }
                Ok(Value::from_object(SqlFragment(quote_ident(text))))
            },
        );
        let sql_params: Vec<String> = if spec.raw_sql {
            spec.parameters
                .iter()
                .filter(|(_, p)| p.kind == ParamType::Sql)
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            Vec::new()
        };
        env.add_function("sql", move |state: &State, name: &str| -> Result<Value, Error> {
            if !sql_params.iter().any(|n| n == name) {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("sql(\"{name}\"): only `sql` parameters of a raw_sql pack can be printed as SQL"),
                ));
            }
            let value = state.lookup(name).unwrap_or_default();
            let Some(text) = value.downcast_object_ref::<SqlText>() else {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("sql(\"{name}\"): the parameter was reassigned in the template"),
                ));
            };
            Ok(Value::from_object(SqlFragment(text.0.clone())))
        });
        env.add_template_owned(file_name.to_string(), source)?;
        Ok(PackTemplate { env })
    }

    /// Names the template reads that it does not define itself.
    pub fn referenced_variables(&self) -> std::collections::HashSet<String> {
        self.env
            .templates()
            .next()
            .map(|(_, t)| t.undeclared_variables(false))
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !TEMPLATE_GLOBALS.contains(&v.as_str()))
            .collect()
    }

    /// Renders with resolved parameters. Errors carry the template line.
    pub fn render(&self, spec: &PackSpec, params: &ResolvedParams) -> Result<RenderedQuery, Error> {
        self.render_with(spec, params, true)
    }

    fn render_with(
        &self,
        spec: &PackSpec,
        params: &ResolvedParams,
        trim: bool,
    ) -> Result<RenderedQuery, Error> {
        let (_, tmpl) = self
            .env
            .templates()
            .next()
            .ok_or_else(|| Error::new(ErrorKind::TemplateNotFound, "no template"))?;
        let mut ctx = std::collections::BTreeMap::new();
        for (name, p) in &spec.parameters {
            let v = params.get(name).cloned().unwrap_or(ParamValue::Null);
            ctx.insert(name.clone(), context_value(p.kind, v));
        }
        let captured = tmpl.render_captured(Value::from(ctx))?;
        let binds = match captured.state().get_temp(BINDS_TEMP) {
            Some(v) => match v.downcast_object::<BindCollector>() {
                Some(c) => c.0.lock().map(|b| b.clone()).unwrap_or_default(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let out = captured.output();
        Ok(RenderedQuery {
            sql: if trim { out.trim() } else { out }.to_string(),
            binds,
            row_limit: None,
        })
    }
}

/// Opens and closes a chunk marker in a mapped rendering (private-use characters
/// no SQL text contains).
const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

/// A template compiled with a marker before each piece of literal text, so a
/// rendering can be traced back to the template: for `quarry check` to report
/// problems in the rendered SQL at the template's line and column.
#[derive(Debug)]
pub struct MappedTemplate {
    template: PackTemplate,
    /// Start offset and length in `source` of each piece of literal text.
    chunks: Vec<(usize, usize)>,
    source: String,
}

/// Where the text of one rendering came from.
#[derive(Debug, Clone)]
pub struct SourceMap {
    /// (offset in the untrimmed rendering, offset in the template, length) per
    /// piece of literal text, in output order.
    pieces: Vec<(usize, usize, usize)>,
    /// Bytes of leading whitespace the rendered SQL lost to its trim.
    lead: usize,
    source: String,
}

impl MappedTemplate {
    /// Renders like [`PackTemplate::render`] and returns the map of the result.
    pub fn render(
        &self,
        spec: &PackSpec,
        params: &ResolvedParams,
    ) -> Result<(RenderedQuery, SourceMap), Error> {
        let marked = self.template.render_with(spec, params, false)?;
        let mut sql = String::with_capacity(marked.sql.len());
        let mut pieces = Vec::new();
        let mut rest = marked.sql.as_str();
        while let Some(i) = rest.find(MARK_OPEN) {
            sql.push_str(&rest[..i]);
            let after = &rest[i + MARK_OPEN.len_utf8()..];
            let Some(j) = after.find(MARK_CLOSE) else {
                break;
            };
            if let Some(&(src, len)) = after[..j]
                .parse::<usize>()
                .ok()
                .and_then(|k| self.chunks.get(k))
            {
                pieces.push((sql.len(), src, len));
            }
            rest = &after[j + MARK_CLOSE.len_utf8()..];
        }
        sql.push_str(rest);
        // The same trim as `render`: offsets move by what leaves the front.
        let lead = sql.len() - sql.trim_start().len();
        let trimmed = sql.trim().to_string();
        Ok((
            RenderedQuery {
                sql: trimmed,
                binds: marked.binds,
                row_limit: None,
            },
            SourceMap {
                pieces,
                lead,
                source: self.source.clone(),
            },
        ))
    }
}

impl SourceMap {
    /// The template's 1-based line and column for a byte offset of the rendered
    /// SQL: inside literal text, the same character; inside printed output (a
    /// `$n` bind, an identifier), the `{{` that printed it.
    pub fn locate(&self, sql_offset: usize) -> (usize, usize) {
        let sql_offset = sql_offset + self.lead;
        let Some(&(out, src, len)) = self.pieces.iter().rev().find(|p| p.0 <= sql_offset) else {
            return self.first_print_after(0);
        };
        let within = sql_offset - out;
        if within < len {
            line_col(&self.source, src + within)
        } else {
            self.first_print_after(src + len)
        }
    }

    fn first_print_after(&self, from: usize) -> (usize, usize) {
        let at = self
            .source
            .get(from..)
            .and_then(|s| s.find("{{"))
            .map_or(from, |i| from + i);
        line_col(&self.source, at)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before, |i| &before[i + 1..])
        .chars()
        .count()
        + 1;
    (line, col)
}

fn context_value(kind: ParamType, v: ParamValue) -> Value {
    let typed = |value: BindValue, pg_type: PgType| {
        Value::from_object(TypedScalar(Bind { value, pg_type }))
    };
    match v {
        ParamValue::Null => typed(BindValue::Null, pg_type_of(kind)),
        ParamValue::String(s) | ParamValue::Identifier(s) => Value::from(s),
        ParamValue::Integer(i) => Value::from(i),
        ParamValue::Number(f) => Value::from(f),
        ParamValue::Boolean(b) => Value::from(b),
        ParamValue::Date(d) => typed(BindValue::Date(d), PgType::Date),
        ParamValue::Timestamp(t) => typed(BindValue::Timestamp(t), PgType::Timestamptz),
        ParamValue::Interval(s) => typed(BindValue::Text(s), PgType::Interval),
        ParamValue::StringList(v) => Value::from(v),
        ParamValue::IntegerList(v) => Value::from(v),
        ParamValue::Sql(s) => Value::from_object(SqlText(s)),
    }
}

fn pg_type_of(kind: ParamType) -> PgType {
    match kind {
        ParamType::String | ParamType::Identifier | ParamType::Sql => PgType::Text,
        ParamType::Integer => PgType::Int8,
        ParamType::Number => PgType::Float8,
        ParamType::Boolean => PgType::Bool,
        ParamType::Date => PgType::Date,
        ParamType::Timestamp => PgType::Timestamptz,
        ParamType::Interval => PgType::Interval,
        ParamType::StringList => PgType::TextArray,
        ParamType::IntegerList => PgType::Int8Array,
    }
}

/// The formatter: every printed value becomes a bind parameter.
fn sql_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if let Some(fragment) = value.downcast_object_ref::<SqlFragment>() {
        out.write_str(&fragment.0).map_err(write_err)?;
        return Ok(());
    }
    if value.downcast_object_ref::<SqlText>().is_some() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "an `sql` parameter can only be printed with {{ sql(\"name\") }}",
        ));
    }
    let bind = to_bind(value)?;
    let collector = state.get_or_set_temp_object(BINDS_TEMP, BindCollector::default);
    let n = {
        let mut binds = collector
            .0
            .lock()
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "bind list poisoned"))?;
        binds.push(bind.clone());
        binds.len()
    };
    let text = match bind.pg_type {
        PgType::Interval => format!("CAST(${n} AS interval)"),
        _ => format!("${n}"),
    };
    out.write_str(&text).map_err(write_err)
}

fn write_err(_: std::fmt::Error) -> Error {
    Error::new(ErrorKind::WriteFailure, "could not write rendered SQL")
}

fn to_bind(value: &Value) -> Result<Bind, Error> {
    if let Some(t) = value.downcast_object_ref::<TypedScalar>() {
        return Ok(t.0.clone());
    }
    let unsupported = |what: &str| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot bind {what} as an SQL parameter; print scalars or lists of scalars"),
        )
    };
    Ok(match value.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "undefined value printed",
            ))
        }
        ValueKind::None => Bind {
            value: BindValue::Null,
            pg_type: PgType::Text,
        },
        ValueKind::Bool => Bind {
            value: BindValue::Bool(value.is_true()),
            pg_type: PgType::Bool,
        },
        ValueKind::Number => {
            if let Ok(i) = i64::try_from(value.clone()) {
                Bind {
                    value: BindValue::Int(i),
                    pg_type: PgType::Int8,
                }
            } else {
                let f = f64::try_from(value.clone()).map_err(|_| unsupported("this number"))?;
                Bind {
                    value: BindValue::Float(f),
                    pg_type: PgType::Float8,
                }
            }
        }
        ValueKind::String => Bind {
            value: BindValue::Text(value.as_str().unwrap_or_default().to_string()),
            pg_type: PgType::Text,
        },
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items
                .iter()
                .all(|i| i.kind() == ValueKind::Number && i64::try_from(i.clone()).is_ok())
                && !items.is_empty()
            {
                let ints = items
                    .into_iter()
                    .filter_map(|i| i64::try_from(i).ok())
                    .collect();
                Bind {
                    value: BindValue::IntArray(ints),
                    pg_type: PgType::Int8Array,
                }
            } else if items.iter().all(|i| i.kind() == ValueKind::String) {
                let texts = items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_string())
                    .collect();
                Bind {
                    value: BindValue::TextArray(texts),
                    pg_type: PgType::TextArray,
                }
            } else {
                return Err(unsupported("a list of mixed values"));
            }
        }
        ValueKind::Map => return Err(unsupported("a map")),
        ValueKind::Bytes => return Err(unsupported("bytes")),
        _ => return Err(unsupported("this value")),
    })
}

/// True for names that are safe as identifiers: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes.
pub fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// Double-quotes an identifier (doubling embedded quotes).
pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use crate::packs::loader::{build_pack_set, render_branches, PackSource};
    use crate::packs::params::InputStyle;

    fn pack(sql: &str, params: &str) -> crate::PackSet {
        let yaml = format!(
            "# yaml-language-server: $schema=x\nname: p\nversion: 1.0.0\ntitle: t\ndescription: d\ncost: light\ntimeout_seconds: 5\ncache_ttl_seconds: 0\nmax_rows: 10\nparameters:\n{params}columns:\n  - {{name: n, type: text}}\n"
        );
        build_pack_set(&[PackSource {
            yaml_file: "p.yaml".into(),
            yaml_text: yaml,
            sql_file: "p.sql".into(),
            sql_text: Some(sql.into()),
        }])
        .unwrap()
    }

    /// The row limit wraps the statement whole: closing semicolons go, a
    /// line comment at the end does not swallow the limit, and the binds
    /// keep their numbers. (A comment after a closing `;` is refused by
    /// `check`: see `sqlcheck`.)
    #[test]
    fn the_row_limit_wraps_the_whole_statement() {
        let q = super::RenderedQuery {
            sql: "SELECT $1::int AS n ORDER BY 1 -- the end\n ; ;\n".into(),
            binds: Vec::new(),
            row_limit: None,
        }
        .with_row_limit(10);
        assert_eq!(
            q.sql,
            "WITH answer AS MATERIALIZED (\nSELECT $1::int AS n ORDER BY 1 -- the end\n) SELECT * FROM answer LIMIT 11"
        );
        assert_eq!(q.row_limit, Some(11));
        let q = super::RenderedQuery {
            sql: "SELECT 1;\n".into(),
            binds: Vec::new(),
            row_limit: None,
        }
        .with_row_limit(u64::MAX);
        assert!(q
            .sql
            .ends_with("SELECT 1\n) SELECT * FROM answer LIMIT 9223372036854775807"));
    }

    /// The mapped rendering is the real rendering (whitespace control included),
    /// and its map points at the template's characters and `{{`.
    #[test]
    fn a_mapped_rendering_is_the_real_one_and_maps_back() {
        let sql = "\n  SELECT n\n  FROM t\n{%- if flag %}\n  WHERE a = {{ x }}   \n{%- endif %}\n\n  ORDER BY n\n";
        let set = pack(
            sql,
            "  flag: {type: boolean, description: f, default: true}\n  x: {type: string, description: x, default: a}\n",
        );
        let p = set.get("p").unwrap();
        let (renders, problems) = render_branches(p);
        assert!(problems.is_empty());
        assert_eq!(renders.len(), 2);
        for r in &renders {
            let params = p
                .resolve(&serde_json::Map::new(), InputStyle::Json)
                .unwrap();
            if r.label == "the defaults" {
                assert_eq!(r.query.sql, p.render(&params).unwrap().sql);
            }
        }
        let r = &renders[0];
        assert_eq!(
            r.query.sql,
            "SELECT n\n  FROM t\n  WHERE a = $1\n\n  ORDER BY n"
        );
        // "FROM" is on template line 3, column 3; `$1` comes from the `{{` on line 5.
        let from = r.query.sql.find("FROM").unwrap();
        assert_eq!(r.map.locate(from), (3, 3));
        let bind = r.query.sql.find("$1").unwrap();
        assert_eq!(r.map.locate(bind), (5, 13));
        let order = r.query.sql.find("ORDER").unwrap();
        assert_eq!(r.map.locate(order), (8, 3));
    }
}
