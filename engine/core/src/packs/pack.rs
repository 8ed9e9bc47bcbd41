//! The query-pack model: `queries/<name>.yaml` beside `queries/<name>.sql`.
//!
//! These types are the single source of truth for the file format: serde loads
//! them, schemars derives `schemas/query-pack.schema.json` from them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One analytics operation: metadata, typed parameters, execution limits and the
/// columns it returns. The SQL lives in a minijinja template beside this file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    /// Operation name, used in `/analytics?operation=NAME`. Must equal the file name
    /// without `.yaml`; lower case letters, digits and underscores.
    pub name: String,
    /// Version of the operation, `MAJOR.MINOR.PATCH`. Part of every cache key, so bump
    /// it when the meaning of the result changes.
    pub version: String,
    /// A short human title.
    pub title: String,
    /// What the operation computes and how to read its result.
    pub description: String,
    /// Declared parameters, by name. Only these may be passed and only these may be
    /// used in the template.
    #[serde(default)]
    pub parameters: IndexMap<String, ParamSpec>,
    /// `light` operations answer synchronously; `heavy` ones run as asynchronous jobs.
    pub cost: CostClass,
    /// Statement timeout in seconds applied to the query (1 to 3600).
    pub timeout_seconds: u32,
    /// How long a result may be served from the cache, in seconds (0 disables caching).
    pub cache_ttl_seconds: u64,
    /// Row cap: at most this many rows are returned; more are reported as truncated.
    pub max_rows: u64,
    /// PostgreSQL's `work_mem` for this operation's query, in MiB (1 to 256):
    /// the memory each sort or hash may use before it spills to disk. Unset,
    /// the server's own (4 MiB unless tuned). Declare it where `EXPLAIN
    /// (ANALYZE)` shows sorts going to disk on large data, and measure: a
    /// larger value changes plans, and not always for the better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_mem_mb: Option<u32>,
    /// The columns the query returns, in order. Checked against the database by
    /// `quarry check` when a database is available. Leave empty only for `raw_sql` packs.
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    /// Marks the operation as running caller-supplied SQL (a parameter of type `sql`).
    /// Such an operation only runs when the deployment enables custom SQL, and only
    /// for callers with the admin scope.
    #[serde(default)]
    pub raw_sql: bool,
    /// Free-form tags for the catalog.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Rules between parameters, checked before the query runs (a call that
    /// breaks one is refused with 422 naming both parameters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ParamConstraint>,
    /// Marks this version as deprecated: its answers carry `Deprecation`,
    /// `Sunset` (RFC 8594) and `Link` headers, and the catalog says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation: Option<Deprecation>,
}

/// When a version was deprecated, when it stops being served, where to read more.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deprecation {
    /// The day it was deprecated (YYYY-MM-DD).
    pub since: chrono::NaiveDate,
    /// The day it stops being served (YYYY-MM-DD), when decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<chrono::NaiveDate>,
    /// An https:// page telling callers how to move to the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// `from` must not be after `to` when both are given: a date, timestamp,
/// integer or number range.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamConstraint {
    /// The parameter that starts the range.
    pub from: String,
    /// The parameter that ends it (equal is allowed).
    pub to: String,
}

/// Where an operation runs by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CostClass {
    /// Answers synchronously within the timeout.
    Light,
    /// Runs as an asynchronous job; a synchronous call returns 202 with a job.
    Heavy,
}

/// A declared parameter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The parameter's type; decides validation and the Postgres type it is bound as.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// What the parameter does.
    pub description: String,
    /// Value used when the caller gives none. A parameter without a default is
    /// required; `default: null` makes it optional with no value.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<serde_json::Value>,
    /// Allowed values. Required for `identifier` parameters.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// Smallest allowed value (integer and number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest allowed value (integer and number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Regular expression the whole value must match (string and list items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `pattern`, anchored and compiled once (on first use), so validating a
    /// request does not compile it again.
    #[serde(skip)]
    #[schemars(skip)]
    pub compiled_pattern: std::sync::OnceLock<Result<regex::Regex, String>>,
    /// Longest allowed string, in characters (string and sql; default 1000, sql 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Most items in a list parameter (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    /// An example value, used by `quarry check` to render required parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<serde_json::Value>,
}

/// Distinguishes `key: null` (Some(Null)) from an absent key (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Parameter types and the Postgres types they are bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Text, bound as `text`.
    String,
    /// 64-bit integer, bound as `int8`.
    Integer,
    /// Floating point number, bound as `float8`.
    Number,
    /// `true`/`false`, bound as `bool`.
    Boolean,
    /// Calendar date `YYYY-MM-DD`, bound as `date`.
    Date,
    /// RFC 3339 timestamp with offset (or a plain date for midnight UTC), bound as `timestamptz`.
    Timestamp,
    /// A duration such as `3 months`, `90 days`, `1 year`, bound as `interval`.
    Interval,
    /// A column or alias name chosen from `enum`; may only be printed with
    /// `{{ ident("param") }}`, which emits the quoted identifier.
    Identifier,
    /// List of texts, bound as `text[]` (use with `= ANY(...)`).
    StringList,
    /// List of integers, bound as `int8[]`.
    IntegerList,
    /// Caller-supplied SQL; only in `raw_sql` packs, printed with `{{ sql("param") }}`.
    Sql,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Date => "date",
            ParamType::Timestamp => "timestamp",
            ParamType::Interval => "interval",
            ParamType::Identifier => "identifier",
            ParamType::StringList => "string_list",
            ParamType::IntegerList => "integer_list",
            ParamType::Sql => "sql",
        }
    }
}

/// A result column.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name as the query returns it.
    pub name: String,
    /// Type for documentation and clients: text, integer, number, boolean, date,
    /// timestamp, json.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// What the column holds.
    #[serde(default)]
    pub description: String,
}

/// Result column types as clients see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Text,
    Integer,
    Number,
    Boolean,
    Date,
    Timestamp,
    Json,
}

impl ColumnType {
    /// The name written in a pack's `columns:`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Number => "number",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }

    /// The declared type for a PostgreSQL result type (its `pg_type` name).
    pub fn for_pg(pg: &str) -> ColumnType {
        match pg {
            "int2" | "int4" | "int8" | "oid" => ColumnType::Integer,
            "numeric" | "float4" | "float8" => ColumnType::Number,
            "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamptz" | "timestamp" => ColumnType::Timestamp,
            "json" | "jsonb" => ColumnType::Json,
            other if other.starts_with('_') => ColumnType::Json,
            _ => ColumnType::Text,
        }
    }
}

/// The JSON Schema of a pack file, for editors and CI.
pub fn pack_json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(PackSpec);
    serde_json::to_value(schema).unwrap_or_default()
}
