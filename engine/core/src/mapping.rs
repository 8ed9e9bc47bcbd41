//! Ingest mappings: `mappings/<source>.yaml` says which object keys a source
//! system owns, how its files are laid out, and how each record type becomes
//! canonical rows. [`check_mapping`] validates a file with file:line diagnostics;
//! [`Mapping::map_record`] turns one JSON record into rows or a quarantine reason.

use std::collections::BTreeSet;

use globset::{Glob, GlobSet, GlobSetBuilder};
use indexmap::IndexMap;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::{ColType, Entity};
use crate::diag::{is_valid_name, parse_definition, yaml_key_position, Diagnostic};
use crate::stream::RecordFormat;
use crate::transform::{apply, Transform};

/// Longest NDJSON line accepted as one record, unless the mapping says otherwise.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// One source system's mapping.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Source system name, stored in every row's `source_system`. Must equal the file name.
    pub source: String,
    /// Mapping version `MAJOR.MINOR.PATCH`, recorded with every file and quarantined record.
    pub version: String,
    /// What the source is and what its files hold.
    pub description: String,
    /// Object keys (bucket paths) this source owns, as globs: `crm-data/**`.
    pub keys: Vec<String>,
    /// How records are laid out in a file.
    pub format: FormatSpec,
    /// JSON path of the field that tells record types apart (`attributes.type`,
    /// `__metadata.type`). Without it every record uses the single record spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_field: Option<String>,
    /// One entry per record type.
    pub records: Vec<RecordSpec>,
}

/// File layout.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    /// `json`: one document whose record array is at `records`; `ndjson`: one record per line.
    pub kind: FormatKind,
    /// Dot path of the record array in a `json` document (`records`, `d.results`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// Longest NDJSON line accepted (bytes); longer lines are quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_line_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    Json,
    Ndjson,
}

/// How a record type is recognised by the value at `type_field`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeMatch {
    /// The value equals this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The value ends with this text (SAP: `A_CustomerType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
}

/// One record type and the canonical row it becomes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// Record type name, for reports and quarantine.
    pub name: String,
    /// Which records this spec takes (by `type_field`); omit when there is one type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<TypeMatch>,
    /// Target table.
    pub entity: Entity,
    /// The source's key of the record, stored as `source_id`. A record without one is
    /// quarantined as `missing_key`.
    pub key: FieldDef,
    /// Canonical column that orders versions (a timestamp column, normally
    /// `source_updated_at`): a newer value updates the row, an older one is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_field: Option<String>,
    /// Canonical columns and where their values come from.
    pub fields: IndexMap<String, FieldDef>,
    /// Top-level fields that are not kept in `attributes` (everything unmapped is kept).
    #[serde(default)]
    pub exclude_from_attributes: Vec<String>,
    /// Nested records written in the same atomic unit (order lines, the buyer, products).
    /// If any child is invalid, the whole record is quarantined.
    #[serde(default)]
    pub children: Vec<ChildSpec>,
    /// For organizations: how the same company is recognised in other source
    /// systems after a load (`email_domain`, `vat_id`, `name`).
    #[serde(default)]
    pub link_by: Vec<LinkKey>,
}

/// A way to recognise one company across source systems.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LinkKey {
    /// Same domain of `email` (domains shared by many organizations are ignored).
    EmailDomain,
    /// Same `vat_id`.
    VatId,
    /// Equal names once case, punctuation and legal forms (GmbH, Inc., ...) are
    /// removed. Fuzzy matches are left to the entity_resolution operation.
    Name,
}

impl LinkKey {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKey::EmailDomain => "email_domain",
            LinkKey::VatId => "vat_id",
            LinkKey::Name => "name_similarity",
        }
    }
}

/// Rows nested in a record: an array (one row per element) or an object (one row).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildSpec {
    /// Dot path of the nested array or object in the record (`to_Item.results`, `line_items`, `customer`).
    pub path: String,
    pub entity: Entity,
    /// Key of the child row. Paths starting with `^` read the parent record (`^SalesOrder`).
    pub key: FieldDef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_field: Option<String>,
    pub fields: IndexMap<String, FieldDef>,
    #[serde(default)]
    pub exclude_from_attributes: Vec<String>,
    /// Fewest elements required (for example 1 order line); fewer quarantines the record.
    #[serde(default)]
    pub min_items: usize,
    /// An element without a key is skipped instead of quarantining the record
    /// (for example products from order lines that carry no SKU).
    #[serde(default)]
    pub optional: bool,
    /// For organizations: how the same company is recognised in other systems.
    #[serde(default)]
    pub link_by: Vec<LinkKey>,
}

/// Where a value comes from: a bare string is a path; the long form adds
/// transforms and validations.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FieldDef {
    Path(String),
    Spec(FieldSpec),
}

/// Hand-written so that a mistake inside the long form is reported as itself
/// (`unknown variant titlecase` at its line), not as "matched no variant".
impl<'de> Deserialize<'de> for FieldDef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FieldDef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a path string or a map with path/template/value, transforms and validations",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FieldDef, E> {
                Ok(FieldDef::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<FieldDef, A::Error> {
                FieldSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FieldDef::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

/// A value with transforms and validations.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Dot path in the record (`Name`, `customer.email`, `^SalesOrder` for the parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Concatenation: text with `{path}` placeholders, e.g. `"{SalesOrder}/{SalesOrderItem}"`.
    /// A placeholder whose value is missing makes the result null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A constant value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Steps applied in order (trim, lower, money, sap_date, {map: ...}, ...).
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Null or missing quarantines the record (`missing_required`).
    #[serde(default)]
    pub required: bool,
    /// An empty or all-space text quarantines the record (`blank`).
    #[serde(default)]
    pub not_blank: bool,
    /// The text must match this regular expression (`pattern_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Smallest allowed number (`out_of_range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest allowed number (`out_of_range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// The number must be greater than this (`out_of_range`), e.g. 0 for quantities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_minimum: Option<f64>,
}

impl FieldDef {
    fn spec(&self) -> FieldSpec {
        match self {
            FieldDef::Path(p) => FieldSpec {
                path: Some(p.clone()),
                ..FieldSpec::default()
            },
            FieldDef::Spec(s) => s.clone(),
        }
    }
}

/// The JSON Schema of a mapping file, for editors and CI.
pub fn mapping_json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(MappingSpec)).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Compiled mapping
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct CompiledField {
    column: String,
    ty: ColType,
    default: Option<&'static str>,
    spec: FieldSpec,
    pattern: Option<Regex>,
}

#[derive(Debug)]
struct CompiledRows {
    entity: Entity,
    key: FieldSpec,
    fields: Vec<CompiledField>,
    used_top_keys: BTreeSet<String>,
    exclude: BTreeSet<String>,
    version_field: Option<String>,
}

#[derive(Debug)]
struct CompiledChild {
    path: Vec<String>,
    min_items: usize,
    optional: bool,
    rows: CompiledRows,
}

#[derive(Debug)]
struct CompiledRecord {
    name: String,
    when: Option<TypeMatch>,
    rows: CompiledRows,
    children: Vec<CompiledChild>,
}

/// A checked, ready-to-use mapping.
#[derive(Debug)]
pub struct Mapping {
    pub spec: MappingSpec,
    pub file: String,
    keys: GlobSet,
    records: Vec<CompiledRecord>,
    type_path: Option<Vec<String>>,
}

/// One canonical row produced from a record.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRow {
    pub entity: Entity,
    /// True for the record's own row; false for nested rows.
    pub main: bool,
    pub source_id: String,
    /// The parent record's key (nested rows only).
    pub parent_key: Option<String>,
    /// (column, value as text) for every mapped column; None is NULL.
    pub values: Vec<(String, Option<String>)>,
    /// Unmapped fields of the source object.
    pub attributes: Map<String, Value>,
    /// Value of the version column, if the spec declares one (RFC 3339).
    pub version: Option<String>,
}

/// The outcome of mapping one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// The record and its nested rows, main row first.
    Rows {
        record_type: String,
        rows: Vec<MappedRow>,
    },
    /// The record is rejected: it goes to quarantine with this reason.
    Rejected {
        record_type: Option<String>,
        reason: String,
        message: String,
    },
}

impl Mapping {
    /// True when this mapping owns the object key.
    pub fn matches_key(&self, key: &str) -> bool {
        self.keys.is_match(key)
    }

    /// The record layout for the streaming reader.
    pub fn record_format(&self) -> RecordFormat {
        match self.spec.format.kind {
            FormatKind::Json => RecordFormat::JsonDocument {
                records_path: split_path(self.spec.format.records.as_deref().unwrap_or("")),
            },
            FormatKind::Ndjson => RecordFormat::Ndjson {
                max_line_bytes: self
                    .spec
                    .format
                    .max_line_bytes
                    .unwrap_or(DEFAULT_MAX_LINE_BYTES),
            },
        }
    }

    /// Entities this mapping writes, main and nested, in load order.
    pub fn entities(&self) -> Vec<Entity> {
        let mut set = BTreeSet::new();
        for r in &self.records {
            set.insert(r.rows.entity);
            for c in &r.children {
                set.insert(c.rows.entity);
            }
        }
        Entity::ALL
            .iter()
            .copied()
            .filter(|e| set.contains(e))
            .collect()
    }

    /// Columns this mapping fills for `entity`, in a stable order.
    pub fn columns(&self, entity: Entity) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        let mut add = |rows: &CompiledRows| {
            if rows.entity == entity {
                for f in &rows.fields {
                    if !cols.contains(&f.column) {
                        cols.push(f.column.clone());
                    }
                }
            }
        };
        for r in &self.records {
            add(&r.rows);
            for c in &r.children {
                add(&c.rows);
            }
        }
        cols.sort_by_key(|c| {
            entity
                .columns()
                .iter()
                .position(|k| k.name == c)
                .unwrap_or(usize::MAX)
        });
        cols
    }

    /// The version column of `entity`'s main rows, if any spec declares one.
    pub fn version_column(&self, entity: Entity) -> Option<String> {
        self.records
            .iter()
            .map(|r| &r.rows)
            .chain(
                self.records
                    .iter()
                    .flat_map(|r| r.children.iter().map(|c| &c.rows)),
            )
            .find(|r| r.entity == entity && r.version_field.is_some())
            .and_then(|r| r.version_field.clone())
    }

    /// The link keys declared for organizations anywhere in this mapping.
    pub fn link_keys(&self) -> Vec<LinkKey> {
        let mut keys: Vec<LinkKey> = self
            .spec
            .records
            .iter()
            .flat_map(|r| {
                r.link_by
                    .iter()
                    .chain(r.children.iter().flat_map(|c| c.link_by.iter()))
            })
            .copied()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Maps one record.
    pub fn map_record(&self, record: &Value) -> Mapped {
        let Some(obj) = record.as_object() else {
            return rejected(
                None,
                "invalid_value",
                "the record is not a JSON object".into(),
            );
        };
        if has_nul(record) {
            return rejected(
                None,
                "invalid_value",
                "the record contains a NUL character (\\u0000), which PostgreSQL cannot store"
                    .into(),
            );
        }
        let spec = match &self.type_path {
            None => self.records.first(),
            Some(path) => {
                let ty = get_path(record, path)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.records
                    .iter()
                    .find(|r| r.when.as_ref().is_none_or(|w| type_matches(w, ty)))
            }
        };
        let Some(spec) = spec else {
            let ty = self
                .type_path
                .as_ref()
                .and_then(|p| get_path(record, p))
                .cloned()
                .unwrap_or(Value::Null);
            return rejected(
                None,
                "unknown_record_type",
                format!("record type {ty} is not in mapping {}", self.spec.source),
            );
        };
        let name = Some(spec.name.clone());
        let main = match map_rows(&spec.rows, obj, None, None, None) {
            Ok(r) => r,
            Err((reason, message)) => return rejected(name, reason, message),
        };
        let mut rows = vec![main];
        for child in &spec.children {
            let items: Vec<&Map<String, Value>> = match get_path(record, &child.path) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => {
                    let mut v = Vec::new();
                    for (i, item) in a.iter().enumerate() {
                        match item.as_object() {
                            Some(o) => v.push(o),
                            None => {
                                return rejected(
                                    name,
                                    "invalid_value",
                                    format!("{}[{i}] is not an object", child.path.join(".")),
                                )
                            }
                        }
                    }
                    v
                }
                Some(Value::Object(o)) => vec![o],
                Some(_) => {
                    return rejected(
                        name,
                        "invalid_value",
                        format!("{} is neither an array nor an object", child.path.join(".")),
                    )
                }
            };
            if items.len() < child.min_items {
                return rejected(
                    name,
                    "missing_required",
                    format!(
                        "{} has {} item(s); at least {} required",
                        child.path.join("."),
                        items.len(),
                        child.min_items
                    ),
                );
            }
            let parent_key = rows[0].source_id.clone();
            let mut seen = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate() {
                match map_rows(&child.rows, item, Some(obj), Some(&parent_key), Some(i)) {
                    // The same key twice in one record: order lines must be distinct
                    // (a data error); reference rows such as products are kept once.
                    Ok(r) if !seen.insert(r.source_id.clone()) => {
                        if child.rows.entity == Entity::OrderLines {
                            return rejected(
                                name,
                                "invalid_value",
                                format!(
                                    "{}[{i}]: key {} appears twice in the record",
                                    child.path.join("."),
                                    r.source_id
                                ),
                            );
                        }
                    }
                    Ok(r) => rows.push(r),
                    Err(("missing_key", _)) if child.optional => {}
                    Err((reason, message)) => {
                        return rejected(
                            name,
                            reason,
                            format!("{}[{i}]: {message}", child.path.join(".")),
                        )
                    }
                }
            }
        }
        Mapped::Rows {
            record_type: spec.name.clone(),
            rows,
        }
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn rejected(record_type: Option<String>, reason: &str, message: String) -> Mapped {
    Mapped::Rejected {
        record_type,
        reason: reason.to_string(),
        message,
    }
}

fn type_matches(w: &TypeMatch, ty: &str) -> bool {
    w.equals.as_deref().is_none_or(|e| e == ty)
        && w.ends_with.as_deref().is_none_or(|e| ty.ends_with(e))
}

/// Splits `a.b.c` into keys; an empty path is the empty list.
pub fn split_path(p: &str) -> Vec<String> {
    p.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for k in path {
        cur = match cur {
            Value::Object(m) => m.get(k)?,
            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

type Reject = (&'static str, String);

/// Reads a dot path; `^path` reads the parent record, `#index` is the 1-based
/// position of a nested row in its array.
fn lookup(
    path: &str,
    obj: &Map<String, Value>,
    parent: Option<&Map<String, Value>>,
    index: Option<usize>,
) -> Value {
    if path == "#index" {
        return index.map_or(Value::Null, |i| Value::from(i + 1));
    }
    let (src, p) = match path.strip_prefix('^') {
        Some(rest) => (parent, rest),
        None => (Some(obj), path),
    };
    let Some(src) = src else { return Value::Null };
    let keys = split_path(p);
    let Some((first, rest)) = keys.split_first() else {
        return Value::Null;
    };
    src.get(first)
        .and_then(|v| get_path(v, rest))
        .cloned()
        .unwrap_or(Value::Null)
}

fn raw_value(
    spec: &FieldSpec,
    obj: &Map<String, Value>,
    parent: Option<&Map<String, Value>>,
    index: Option<usize>,
) -> Value {
    if let Some(v) = &spec.value {
        return v.clone();
    }
    if let Some(t) = &spec.template {
        let mut out = String::new();
        let mut rest = t.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let p = &rest[open + 1..open + close];
            match lookup(p, obj, parent, index) {
                Value::Null => return Value::Null,
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        return Value::String(out);
    }
    match &spec.path {
        Some(p) => lookup(p, obj, parent, index),
        None => Value::Null,
    }
}

fn describe(spec: &FieldSpec) -> String {
    spec.path
        .clone()
        .or_else(|| spec.template.clone())
        .unwrap_or_else(|| "constant".into())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Evaluates, validates and types one field. Ok(None) is NULL.
#[allow(clippy::too_many_arguments)]
fn eval_field(
    column: &str,
    ty: ColType,
    default: Option<&'static str>,
    spec: &FieldSpec,
    pattern: Option<&Regex>,
    obj: &Map<String, Value>,
    parent: Option<&Map<String, Value>>,
    index: Option<usize>,
) -> Result<Option<String>, Reject> {
    let what = || format!("`{column}` (from {})", describe(spec));
    let raw = raw_value(spec, obj, parent, index);
    let v =
        apply(raw, &spec.transforms).map_err(|e| (e.code, format!("{}: {}", what(), e.message)))?;
    if v.is_null() {
        if spec.required {
            return Err((
                "missing_required",
                format!("{} is required but missing", what()),
            ));
        }
        return Ok(default.map(str::to_string));
    }
    if spec.not_blank && v.as_str().is_some_and(|s| s.trim().is_empty()) {
        return Err(("blank", format!("{} must not be blank", what())));
    }
    let text = to_column_text(ty, &v).map_err(|(code, m)| (code, format!("{}: {m}", what())))?;
    if let Some(re) = pattern {
        if !re.is_match(&text) {
            return Err((
                "pattern_mismatch",
                format!("{}: {} does not match {}", what(), short(&v), re.as_str()),
            ));
        }
    }
    if spec.minimum.is_some() || spec.maximum.is_some() || spec.exclusive_minimum.is_some() {
        let n: f64 = text.parse().map_err(|_| {
            (
                "invalid_number",
                format!("{}: {} is not a number", what(), short(&v)),
            )
        })?;
        let below =
            spec.minimum.is_some_and(|m| n < m) || spec.exclusive_minimum.is_some_and(|m| n <= m);
        let above = spec.maximum.is_some_and(|m| n > m);
        if below || above {
            let mut bounds = Vec::new();
            if let Some(m) = spec.exclusive_minimum {
                bounds.push(format!("> {m}"));
            }
            if let Some(m) = spec.minimum {
                bounds.push(format!(">= {m}"));
            }
            if let Some(m) = spec.maximum {
                bounds.push(format!("<= {m}"));
            }
            return Err((
                "out_of_range",
                format!(
                    "{}: {text} is out of range (must be {})",
                    what(),
                    bounds.join(" and ")
                ),
            ));
        }
    }
    Ok(Some(text))
}

/// Renders a transformed JSON value as the text Postgres accepts for the column type.
fn to_column_text(ty: ColType, v: &Value) -> Result<String, Reject> {
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(match ty {
        ColType::Text => {
            let s = as_text(v);
            if s.contains('\0') {
                return Err((
                    "invalid_value",
                    "contains a NUL character, which PostgreSQL text cannot hold".into(),
                ));
            }
            s
        }
        ColType::Char(n) => {
            let s = as_text(v);
            if s.chars().count() != n {
                return Err((
                    "invalid_value",
                    format!("{} must be exactly {n} characters", short(v)),
                ));
            }
            s
        }
        ColType::Integer => {
            let n = match v {
                Value::Number(num) if num.is_i64() => num.as_i64(),
                _ => match apply(v.clone(), &[Transform::Integer]) {
                    Ok(Value::Number(num)) => num.as_i64(),
                    Ok(_) | Err(_) => {
                        return Err((
                            "invalid_number",
                            format!("{} is not a whole number", short(v)),
                        ))
                    }
                },
            };
            match n.and_then(|n| i32::try_from(n).ok()) {
                Some(n) => n.to_string(),
                None => {
                    return Err((
                        "out_of_range",
                        format!("{} does not fit a 32-bit integer", short(v)),
                    ))
                }
            }
        }
        ColType::Decimal { precision, scale } => {
            match apply(v.clone(), &[Transform::Decimal(scale)]) {
                Ok(Value::String(s)) => {
                    let int_digits = s
                        .trim_start_matches('-')
                        .split('.')
                        .next()
                        .unwrap_or("")
                        .trim_start_matches('0')
                        .len();
                    if int_digits > (precision - scale) as usize {
                        return Err((
                            "out_of_range",
                            format!(
                                "{} has more than {} digits before the decimal point",
                                short(v),
                                precision - scale
                            ),
                        ));
                    }
                    s
                }
                _ => return Err(("invalid_number", format!("{} is not a number", short(v)))),
            }
        }
        ColType::Boolean => match v {
            Value::Bool(b) => b.to_string(),
            _ => match apply(v.clone(), &[Transform::Boolean]) {
                Ok(Value::Bool(b)) => b.to_string(),
                _ => return Err(("invalid_value", format!("{} is not a boolean", short(v)))),
            },
        },
        ColType::Date => {
            let s = as_text(v);
            chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| {
                (
                    "invalid_date",
                    format!(
                        "{} is not a date (YYYY-MM-DD); add a date transform",
                        short(v)
                    ),
                )
            })?;
            s
        }
        ColType::Timestamp => {
            let s = as_text(v);
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|_| ("invalid_date", format!("{} is not a timestamp; add a timestamp transform (sap_date, salesforce_datetime, iso8601)", short(v))))?;
            s
        }
    })
}

fn map_rows(
    rows: &CompiledRows,
    obj: &Map<String, Value>,
    parent: Option<&Map<String, Value>>,
    parent_key: Option<&str>,
    index: Option<usize>,
) -> Result<MappedRow, Reject> {
    let key = {
        let raw = raw_value(&rows.key, obj, parent, index);
        let v = apply(raw, &rows.key.transforms)
            .map_err(|e| (e.code, format!("key: {}", e.message)))?;
        match v {
            Value::String(s) if !s.trim().is_empty() => s,
            Value::Number(n) => n.to_string(),
            _ => {
                return Err((
                    "missing_key",
                    format!("the key ({}) is missing or blank", describe(&rows.key)),
                ))
            }
        }
    };
    let mut values = Vec::with_capacity(rows.fields.len());
    let mut version = None;
    for f in &rows.fields {
        let v = eval_field(
            &f.column,
            f.ty,
            f.default,
            &f.spec,
            f.pattern.as_ref(),
            obj,
            parent,
            index,
        )?;
        if rows.version_field.as_deref() == Some(f.column.as_str()) {
            version = v.clone();
        }
        values.push((f.column.clone(), v));
    }
    let attributes: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !rows.used_top_keys.contains(*k) && !rows.exclude.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(MappedRow {
        entity: rows.entity,
        main: parent.is_none(),
        source_id: key,
        parent_key: parent_key.map(str::to_string),
        values,
        attributes,
        version,
    })
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

/// The text of one mapping file.
#[derive(Debug, Clone)]
pub struct MappingSource {
    pub file: String,
    pub text: String,
}

fn top_key(path: &str) -> Option<String> {
    if path.starts_with('^') || path.starts_with('#') {
        return None;
    }
    split_path(path).into_iter().next()
}

fn used_keys(spec: &FieldSpec, into: &mut BTreeSet<String>) {
    if let Some(p) = &spec.path {
        into.extend(top_key(p));
    }
    if let Some(t) = &spec.template {
        let mut rest = t.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            into.extend(top_key(&rest[open + 1..open + close]));
            rest = &rest[open + close + 1..];
        }
    }
}

/// Checks a mapping file; returns the compiled mapping when it has no problems.
pub fn check_mapping(src: &MappingSource) -> (Option<Mapping>, Vec<Diagnostic>) {
    let f = src.file.as_str();
    let y = src.text.as_str();
    let mut d = Vec::new();
    let Some(spec) =
        parse_definition::<MappingSpec>(f, y, "mapping", "mapping.schema.json", &mut d)
    else {
        return (None, d);
    };
    let at = |path: &[&str]| yaml_key_position(y, path);
    let stem = std::path::Path::new(f)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if !is_valid_name(&spec.source) {
        d.push(
            Diagnostic::new(
                f,
                at(&["source"]),
                format!("source `{}` is not valid", spec.source),
            )
            .help("use lower case letters, digits and underscores, starting with a letter"),
        );
    } else if spec.source != stem {
        d.push(Diagnostic::new(
            f,
            at(&["source"]),
            format!(
                "source `{}` does not match the file name `{stem}.yaml`",
                spec.source
            ),
        ));
    }
    if !Regex::new(r"^\d+\.\d+\.\d+$")
        .map(|r| r.is_match(&spec.version))
        .unwrap_or(false)
    {
        d.push(Diagnostic::new(
            f,
            at(&["version"]),
            format!("version `{}` is not MAJOR.MINOR.PATCH", spec.version),
        ));
    }
    let mut globs = GlobSetBuilder::new();
    if spec.keys.is_empty() {
        d.push(
            Diagnostic::new(f, at(&["keys"]), "no object keys declared")
                .help("add a glob such as `crm-data/**`"),
        );
    }
    for k in &spec.keys {
        match Glob::new(k) {
            Ok(g) => {
                globs.add(g);
            }
            Err(e) => d.push(Diagnostic::new(
                f,
                at(&["keys"]),
                format!("key pattern {k:?} is not a valid glob: {e}"),
            )),
        }
    }
    if spec.format.kind == FormatKind::Json
        && spec.format.records.as_deref().is_none_or(str::is_empty)
    {
        d.push(
            Diagnostic::new(
                f,
                at(&["format"]),
                "a json format needs `records:`, the dot path of the record array",
            )
            .help(
                "for example `records: records` (Salesforce) or `records: d.results` (SAP OData)",
            ),
        );
    }
    if spec.records.is_empty() {
        d.push(Diagnostic::new(
            f,
            at(&["records"]),
            "no record types declared",
        ));
    }
    if spec.records.len() > 1 && spec.type_field.is_none() {
        d.push(Diagnostic::new(
            f,
            at(&["records"]),
            "several record types need `type_field` to tell them apart",
        ));
    }
    let mut compiled = Vec::new();
    for (i, r) in spec.records.iter().enumerate() {
        let line = record_line(y, i);
        if r.entity == Entity::OrderLines {
            d.push(Diagnostic::new(
                f,
                line,
                format!(
                    "record `{}`: order_lines can only be a child of an order record",
                    r.name
                ),
            ));
        }
        let rows = compile_rows(
            f,
            line,
            &r.name,
            r.entity,
            &r.key,
            &r.fields,
            &r.version_field,
            &r.exclude_from_attributes,
            &mut d,
        );
        let mut children = Vec::new();
        let mut rows = rows;
        for c in &r.children {
            if c.entity == Entity::OrderLines && r.entity != Entity::Orders {
                d.push(Diagnostic::new(
                    f,
                    line,
                    format!(
                        "record `{}`: order_lines children need an orders record",
                        r.name
                    ),
                ));
            }
            let path = split_path(&c.path);
            if let Some(first) = path.first() {
                rows.used_top_keys.insert(first.clone());
            }
            let crows = compile_rows(
                f,
                line,
                &format!("{}.{}", r.name, c.path),
                c.entity,
                &c.key,
                &c.fields,
                &c.version_field,
                &c.exclude_from_attributes,
                &mut d,
            );
            children.push(CompiledChild {
                path,
                min_items: c.min_items,
                optional: c.optional,
                rows: crows,
            });
        }
        compiled.push(CompiledRecord {
            name: r.name.clone(),
            when: r.when.clone(),
            rows,
            children,
        });
    }
    let keys = match globs.build() {
        Ok(g) => g,
        Err(e) => {
            d.push(Diagnostic::new(
                f,
                at(&["keys"]),
                format!("key patterns do not compile: {e}"),
            ));
            GlobSet::empty()
        }
    };
    if !d.is_empty() {
        return (None, d);
    }
    let type_path = spec.type_field.as_deref().map(split_path);
    (
        Some(Mapping {
            spec,
            file: src.file.clone(),
            keys,
            records: compiled,
            type_path,
        }),
        d,
    )
}

/// The line of the i-th `- name:` entry under `records:`.
fn record_line(y: &str, i: usize) -> (usize, usize) {
    let start = yaml_key_position(y, &["records"]).0;
    y.lines()
        .enumerate()
        .skip(start)
        .filter(|(_, l)| l.trim_start().starts_with("- name:"))
        .filter(|(_, l)| l.len() - l.trim_start().len() <= 4)
        .nth(i)
        .map_or((start, 1), |(n, l)| {
            (n + 1, l.len() - l.trim_start().len() + 1)
        })
}

#[allow(clippy::too_many_arguments)]
fn compile_rows(
    f: &str,
    line: (usize, usize),
    what: &str,
    entity: Entity,
    key: &FieldDef,
    fields: &IndexMap<String, FieldDef>,
    version_field: &Option<String>,
    exclude: &[String],
    d: &mut Vec<Diagnostic>,
) -> CompiledRows {
    let mut used = BTreeSet::new();
    let key = key.spec();
    used_keys(&key, &mut used);
    let mut out = Vec::new();
    for (column, def) in fields {
        let spec = def.spec();
        let sources = [
            spec.path.is_some(),
            spec.template.is_some(),
            spec.value.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            d.push(Diagnostic::new(
                f,
                line,
                format!("{what}: field `{column}` needs exactly one of path, template or value"),
            ));
        }
        let Some(col) = entity.column(column) else {
            let known: Vec<&str> = entity.columns().iter().map(|c| c.name).collect();
            d.push(
                Diagnostic::new(
                    f,
                    line,
                    format!("{what}: `{column}` is not a column of {}", entity.table()),
                )
                .help(format!(
                    "columns: {}; unmapped source fields go to attributes automatically",
                    known.join(", ")
                )),
            );
            continue;
        };
        let pattern = match spec
            .pattern
            .as_deref()
            .map(|p| Regex::new(&format!("^(?:{p})$")))
        {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                d.push(Diagnostic::new(
                    f,
                    line,
                    format!("{what}: pattern of `{column}` does not compile: {e}"),
                ));
                None
            }
            None => None,
        };
        used_keys(&spec, &mut used);
        out.push(CompiledField {
            column: column.clone(),
            ty: col.ty,
            default: col.default,
            spec,
            pattern,
        });
    }
    for col in entity.columns().iter().filter(|c| c.required) {
        if !fields.contains_key(col.name) {
            d.push(Diagnostic::new(
                f,
                line,
                format!(
                    "{what}: required column `{}` of {} is not mapped",
                    col.name,
                    entity.table()
                ),
            ));
        }
    }
    if let Some(v) = version_field {
        match entity.column(v) {
            Some(c) if c.ty == ColType::Timestamp && fields.contains_key(v) => {}
            _ => d.push(
                Diagnostic::new(
                    f,
                    line,
                    format!("{what}: version_field `{v}` must be a mapped timestamp column"),
                )
                .help("use source_updated_at and map it from the source's change timestamp"),
            ),
        }
    }
    CompiledRows {
        entity,
        key,
        fields: out,
        used_top_keys: used,
        exclude: exclude.iter().cloned().collect(),
        version_field: version_field.clone(),
    }
}
