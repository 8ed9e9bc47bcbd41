//! Parameter validation and resolution: caller input (JSON or query-string text)
//! plus declared defaults become typed [`ParamValue`]s, or a list of problems that
//! each name the parameter.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use regex::Regex;
use serde::Serialize;
use serde_json::Value as Json;

use crate::packs::pack::{PackSpec, ParamSpec, ParamType};

/// Longest text accepted for a `string` parameter unless `max_length` says otherwise.
pub const DEFAULT_MAX_STRING: usize = 1000;
/// Longest text accepted for a `sql` parameter unless `max_length` says otherwise.
pub const DEFAULT_MAX_SQL: usize = 100_000;
/// Most items accepted in a list parameter unless `max_items` says otherwise.
pub const DEFAULT_MAX_ITEMS: usize = 100;

/// A validated, typed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    String(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    Date(NaiveDate),
    Timestamp(DateTime<FixedOffset>),
    /// Normalised `N unit` text, for example `3 months`.
    Interval(String),
    Identifier(String),
    StringList(Vec<String>),
    IntegerList(Vec<i64>),
    Sql(String),
}

impl ParamValue {
    /// The canonical JSON form: what the cache key hashes and what responses echo.
    pub fn to_json(&self) -> Json {
        match self {
            ParamValue::Null => Json::Null,
            ParamValue::String(s)
            | ParamValue::Interval(s)
            | ParamValue::Identifier(s)
            | ParamValue::Sql(s) => Json::String(s.clone()),
            ParamValue::Integer(i) => Json::from(*i),
            ParamValue::Number(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            ParamValue::Boolean(b) => Json::Bool(*b),
            ParamValue::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
            ParamValue::Timestamp(t) => Json::String(t.to_rfc3339()),
            ParamValue::StringList(v) => Json::from(v.clone()),
            ParamValue::IntegerList(v) => Json::from(v.clone()),
        }
    }
}

/// Resolved parameters, sorted by name (the canonical order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedParams(pub BTreeMap<String, ParamValue>);

impl ResolvedParams {
    /// Canonical JSON text: keys sorted, no whitespace. Stable across runs.
    pub fn canonical_json(&self) -> String {
        let map: serde_json::Map<String, Json> = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        // serde_json keeps insertion order (preserve_order); BTreeMap iteration is sorted.
        Json::Object(map).to_string()
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }
}

/// One problem with one parameter, for a caller to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ParamError {
    /// The parameter concerned.
    pub parameter: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter `{}`: {}", self.parameter, self.message)
    }
}

/// How caller input arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputStyle {
    /// JSON values (POST body): types must match, though numbers and booleans given
    /// as strings are accepted too.
    Json,
    /// Everything is text (query string, `--param k=v`): parsed by the declared type;
    /// lists are comma separated.
    Text,
}

/// Validates caller input against the pack's declared parameters and fills defaults.
/// Every problem is reported, not just the first.
pub fn resolve(
    spec: &PackSpec,
    input: &serde_json::Map<String, Json>,
    style: InputStyle,
) -> Result<ResolvedParams, Vec<ParamError>> {
    let mut errors = Vec::new();
    for name in input.keys() {
        if !spec.parameters.contains_key(name) {
            let known: Vec<&str> = spec.parameters.keys().map(String::as_str).collect();
            errors.push(ParamError {
                parameter: name.clone(),
                message: if known.is_empty() {
                    format!(
                        "unknown parameter; operation `{}` takes no parameters",
                        spec.name
                    )
                } else {
                    format!(
                        "unknown parameter; operation `{}` accepts: {}",
                        spec.name,
                        known.join(", ")
                    )
                },
            });
        }
    }
    let mut out = BTreeMap::new();
    for (name, p) in &spec.parameters {
        let given = input.get(name).filter(|v| !v.is_null());
        let value = match (given, &p.default) {
            (Some(v), _) => match coerce(p, v, style) {
                Ok(v) => v,
                Err(message) => {
                    errors.push(ParamError {
                        parameter: name.clone(),
                        message,
                    });
                    continue;
                }
            },
            (None, Some(d)) if d.is_null() => ParamValue::Null,
            (None, Some(d)) => match coerce(p, d, InputStyle::Json) {
                Ok(v) => v,
                Err(message) => {
                    errors.push(ParamError {
                        parameter: name.clone(),
                        message: format!("the declared default is invalid: {message}"),
                    });
                    continue;
                }
            },
            (None, None) => {
                errors.push(ParamError {
                    parameter: name.clone(),
                    message: format!("required {} parameter is missing", p.kind.as_str()),
                });
                continue;
            }
        };
        out.insert(name.clone(), value);
    }
    for c in &spec.constraints {
        if let (Some(a), Some(b)) = (out.get(&c.from), out.get(&c.to)) {
            if after(a, b) {
                let message = format!(
                    "`{}` ({}) is after `{}` ({}): give a `{}` on or before `{}`",
                    c.from,
                    shown(a),
                    c.to,
                    shown(b),
                    c.from,
                    c.to
                );
                for parameter in [&c.from, &c.to] {
                    errors.push(ParamError {
                        parameter: parameter.clone(),
                        message: message.clone(),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(ResolvedParams(out))
    } else {
        Err(errors)
    }
}

/// True when `a` comes after `b` (both of the same ordered kind).
fn after(a: &ParamValue, b: &ParamValue) -> bool {
    match (a, b) {
        (ParamValue::Date(x), ParamValue::Date(y)) => x > y,
        (ParamValue::Timestamp(x), ParamValue::Timestamp(y)) => x > y,
        (ParamValue::Integer(x), ParamValue::Integer(y)) => x > y,
        (ParamValue::Number(x), ParamValue::Number(y)) => x > y,
        _ => false,
    }
}

fn shown(v: &ParamValue) -> String {
    match v {
        ParamValue::Date(d) => d.to_string(),
        ParamValue::Timestamp(t) => t.to_rfc3339(),
        ParamValue::Integer(i) => i.to_string(),
        ParamValue::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Validates one value against its declaration.
pub fn coerce(p: &ParamSpec, v: &Json, style: InputStyle) -> Result<ParamValue, String> {
    let value = match p.kind {
        ParamType::String => ParamValue::String(text_of(v, "a string")?),
        ParamType::Sql => ParamValue::Sql(normalize_sql(&text_of(v, "an SQL text")?)?),
        ParamType::Identifier => ParamValue::Identifier(text_of(v, "a string")?),
        ParamType::Integer => ParamValue::Integer(integer_of(v)?),
        ParamType::Number => ParamValue::Number(number_of(v)?),
        ParamType::Boolean => ParamValue::Boolean(boolean_of(v)?),
        ParamType::Date => ParamValue::Date(date_of(&text_of(v, "a date YYYY-MM-DD")?)?),
        ParamType::Timestamp => {
            ParamValue::Timestamp(timestamp_of(&text_of(v, "an RFC 3339 timestamp")?)?)
        }
        ParamType::Interval => ParamValue::Interval(interval_of(&text_of(v, "an interval")?)?),
        ParamType::StringList => ParamValue::StringList(
            list_of(v, style)?
                .iter()
                .map(|item| text_of(item, "a string"))
                .collect::<Result<_, _>>()?,
        ),
        ParamType::IntegerList => ParamValue::IntegerList(
            list_of(v, style)?
                .iter()
                .map(integer_of)
                .collect::<Result<_, _>>()?,
        ),
    };
    check_constraints(p, &value)?;
    Ok(value)
}

fn check_constraints(p: &ParamSpec, value: &ParamValue) -> Result<(), String> {
    if let Some(allowed) = &p.allowed {
        let json = value.to_json();
        let ok = match &json {
            Json::Array(items) => items.iter().all(|i| allowed.contains(i)),
            other => allowed.contains(other),
        };
        if !ok {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return Err(format!(
                "{json} is not allowed; choose one of: {}",
                list.join(", ")
            ));
        }
    }
    let number = match value {
        ParamValue::Integer(i) => Some(*i as f64),
        ParamValue::Number(f) => Some(*f),
        _ => None,
    };
    if let Some(n) = number {
        if let Some(min) = p.minimum {
            if n < min {
                return Err(format!("{n} is below the minimum {min}"));
            }
        }
        if let Some(max) = p.maximum {
            if n > max {
                return Err(format!("{n} is above the maximum {max}"));
            }
        }
    }
    let texts: Vec<&str> = match value {
        ParamValue::String(s) | ParamValue::Sql(s) => vec![s.as_str()],
        ParamValue::StringList(v) => v.iter().map(String::as_str).collect(),
        _ => vec![],
    };
    let max_len = p.max_length.unwrap_or(if p.kind == ParamType::Sql {
        DEFAULT_MAX_SQL
    } else {
        DEFAULT_MAX_STRING
    });
    for t in &texts {
        if t.chars().count() > max_len {
            return Err(format!("longer than {max_len} characters"));
        }
        if t.contains('\0') {
            return Err("contains a NUL character".into());
        }
    }
    if let Some(pattern) = &p.pattern {
        let re = p
            .compiled_pattern
            .get_or_init(|| anchored(pattern).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| format!("the declared pattern is invalid: {e}"))?;
        for t in &texts {
            if !re.is_match(t) {
                return Err(format!("{t:?} does not match the pattern {pattern}"));
            }
        }
    }
    let items = match value {
        ParamValue::StringList(v) => v.len(),
        ParamValue::IntegerList(v) => v.len(),
        _ => 0,
    };
    let max_items = p.max_items.unwrap_or(DEFAULT_MAX_ITEMS);
    if items > max_items {
        return Err(format!(
            "has {items} items; at most {max_items} are allowed"
        ));
    }
    Ok(())
}

/// Trims caller SQL and drops trailing semicolons; refuses an empty statement.
fn normalize_sql(s: &str) -> Result<String, String> {
    let t = s
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if t.is_empty() {
        return Err("the SQL text is empty; give one SELECT statement".into());
    }
    crate::packs::sqlcheck::caller_sql(t)?;
    Ok(t.to_string())
}

/// Compiles a declared pattern so that it must match the whole value.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

fn text_of(v: &Json, what: &str) -> Result<String, String> {
    match v {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        Json::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("expected {what}, got {}", kind_name(v))),
    }
}

fn integer_of(v: &Json) -> Result<i64, String> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected a whole number, got {n}")),
        Json::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("expected a whole number, got {s:?}")),
        _ => Err(format!("expected a whole number, got {}", kind_name(v))),
    }
}

fn number_of(v: &Json) -> Result<f64, String> {
    let n = match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(format!("expected a number, got {}", short(v))),
    }
}

fn boolean_of(v: &Json) -> Result<bool, String> {
    match v {
        Json::Bool(b) => Ok(*b),
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("expected true or false, got {s:?}")),
        },
        _ => Err(format!("expected true or false, got {}", kind_name(v))),
    }
}

fn date_of(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("expected a date like 2024-06-30, got {s:?}"))
}

fn timestamp_of(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let t = s.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(t) {
        return Ok(ts);
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(midnight) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&midnight).fixed_offset());
        }
    }
    Err(format!(
        "expected a timestamp like 2024-06-30T12:00:00Z (or a date), got {s:?}"
    ))
}

/// Accepts `N unit` with unit one of hour(s), day(s), week(s), month(s), year(s).
fn interval_of(s: &str) -> Result<String, String> {
    let lowered = s.trim().to_ascii_lowercase();
    // Accept "3months" as well as "3 months".
    let spaced = match lowered.find(|c: char| !c.is_ascii_digit()) {
        Some(i) if i > 0 && !lowered[i..].starts_with(char::is_whitespace) => {
            format!("{} {}", &lowered[..i], &lowered[i..])
        }
        _ => lowered.clone(),
    };
    let mut parts = spaced.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "expected an interval like \"3 months\" or \"90 days\", got {s:?}"
        ));
    };
    let n: u32 = n
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| format!("expected a count from 1 to 10000 in the interval, got {s:?}"))?;
    let unit = unit.trim_end_matches('s');
    if !["hour", "day", "week", "month", "year"].contains(&unit) {
        return Err(format!(
            "interval unit must be hours, days, weeks, months or years, got {s:?}"
        ));
    }
    Ok(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
}

fn list_of(v: &Json, style: InputStyle) -> Result<Vec<Json>, String> {
    match v {
        Json::Array(items) => Ok(items.clone()),
        Json::String(s) if style == InputStyle::Text || s.contains(',') => Ok(s
            .split(',')
            .map(|p| Json::String(p.trim().to_string()))
            .filter(|p| p.as_str() != Some(""))
            .collect()),
        Json::String(_) | Json::Number(_) => Ok(vec![v.clone()]),
        _ => Err(format!("expected a list, got {}", kind_name(v))),
    }
}

fn kind_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// The JSON Schema of one parameter, as the operations catalog shows it.
pub fn param_json_schema(p: &ParamSpec) -> Json {
    let mut m = serde_json::Map::new();
    let (ty, format) = match p.kind {
        ParamType::String | ParamType::Identifier | ParamType::Sql => ("string", None),
        ParamType::Integer => ("integer", None),
        ParamType::Number => ("number", None),
        ParamType::Boolean => ("boolean", None),
        ParamType::Date => ("string", Some("date")),
        ParamType::Timestamp => ("string", Some("date-time")),
        ParamType::Interval => ("string", None),
        ParamType::StringList | ParamType::IntegerList => ("array", None),
    };
    m.insert("type".into(), Json::from(ty));
    if let Some(f) = format {
        m.insert("format".into(), Json::from(f));
    }
    m.insert("description".into(), Json::from(p.description.clone()));
    match p.kind {
        ParamType::StringList => {
            m.insert("items".into(), serde_json::json!({"type": "string"}));
        }
        ParamType::IntegerList => {
            m.insert("items".into(), serde_json::json!({"type": "integer"}));
        }
        ParamType::Interval => {
            m.insert(
                "pattern".into(),
                Json::from(r"^\s*\d+\s+(hour|day|week|month|year)s?\s*$"),
            );
        }
        _ => {}
    }
    // `default: null` declares an optional parameter without a value: the
    // schema says nothing (a null default would contradict the type).
    if let Some(d) = p.default.as_ref().filter(|d| !d.is_null()) {
        m.insert("default".into(), d.clone());
    }
    if let Some(a) = &p.allowed {
        if matches!(p.kind, ParamType::StringList | ParamType::IntegerList) {
            if let Some(Json::Object(items)) = m.get_mut("items") {
                items.insert("enum".into(), Json::from(a.clone()));
            }
        } else {
            m.insert("enum".into(), Json::from(a.clone()));
        }
    }
    if let Some(v) = p.minimum {
        m.insert("minimum".into(), Json::from(v));
    }
    if let Some(v) = p.maximum {
        m.insert("maximum".into(), Json::from(v));
    }
    if let Some(v) = &p.pattern {
        m.insert("pattern".into(), Json::from(format!("^(?:{v})$")));
    }
    if let Some(ex) = &p.example {
        m.insert("examples".into(), Json::from(vec![ex.clone()]));
    }
    Json::Object(m)
}

/// JSON Schema of an operation's whole parameter object.
pub fn params_json_schema(spec: &PackSpec) -> Json {
    let props: serde_json::Map<String, Json> = spec
        .parameters
        .iter()
        .map(|(k, p)| (k.clone(), param_json_schema(p)))
        .collect();
    let required: Vec<&String> = spec
        .parameters
        .iter()
        .filter(|(_, p)| p.default.is_none())
        .map(|(k, _)| k)
        .collect();
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "properties": props,
        "required": required,
    })
}
