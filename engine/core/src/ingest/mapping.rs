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

use crate::diag::{is_valid_name, parse_definition, yaml_key_position, Diagnostic};
use crate::ingest::canonical::{ColType, Entity};
use crate::ingest::stream::{DocShape, Layouts, RecordFormat};
use crate::ingest::transform::{apply, apply_with, Transform};

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
    /// `__metadata.type`): what a record type's `when` compares by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_field: Option<String>,
    /// Records that are not data (deleted markers, record types this source does
    /// not map): each condition with the reason reported. A skipped record is
    /// counted as skipped in the file's report, never quarantined or loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<SkipRule>,
    /// What a record that no record type takes becomes: `quarantine` (the
    /// default; reason `unknown_record_type`) or `skip` (counted as skipped, by
    /// its type). `skip` suits sources whose exports mix in object types nobody
    /// maps (Salesforce custom objects); a record with no type value at all is
    /// still quarantined.
    #[serde(default, skip_serializing_if = "Unmatched::is_default")]
    pub unmatched: Unmatched,
    /// Field names compare without case when the exact name is absent: Salesforce
    /// API names are case-insensitive and Data Loader exports them upper case
    /// (`ID`, `NAME`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_insensitive_fields: bool,
    /// One entry per record type; the first whose `when` matches takes the record.
    pub records: Vec<RecordSpec>,
}

/// See [`MappingSpec::unmatched`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    #[default]
    Quarantine,
    Skip,
}

impl Unmatched {
    fn is_default(&self) -> bool {
        *self == Unmatched::Quarantine
    }
}

/// A value written either alone or as a list.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

/// Records to leave out, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipRule {
    /// The condition (one, or a list of which any may match).
    pub when: OneOrMany<TypeMatch>,
    /// Shown in the report: `deleted in Stripe`, `a Task, not mapped`.
    pub reason: String,
}

/// File layout. Several kinds may be listed; each file's content tells which it
/// is (a file not starting with `{` or `[` is CSV; a first line that is a whole
/// JSON value followed by another is NDJSON; anything else is one JSON document).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    /// `json` (one document), `ndjson` (one record per line), `csv` (a header row,
    /// then one record per row; empty fields are null, `A.B` headers nest), or a
    /// list of them.
    pub kind: OneOrMany<FormatKind>,
    /// Dot path(s) of the record array in a JSON document (`records`,
    /// `d.results`); with a list, the first found in the file is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<OneOrMany<String>>,
    /// Dot path(s) of an object that is the file's one record, for single-object
    /// responses and webhooks (`.` for the document itself, `d` for OData v2,
    /// `order` for `{"order": {...}}`). Used when no `records` array is in the
    /// file; the first object found that a record type takes is the record, so
    /// an order that has a `customer` field is still an order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub single: Vec<String>,
    /// Longest NDJSON line accepted (bytes); longer lines are quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_line_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    Json,
    Ndjson,
    Csv,
}

/// A condition on one value of a record: by default the value at `type_field`.
/// Every test given must hold. Numbers and booleans compare as their text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeMatch {
    /// Dot path of the value tested, instead of `type_field` (`Id`, `object`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The value equals this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The value is one of these texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// The value starts with this text (Salesforce id prefixes: `001` Account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    /// The value ends with this text (SAP: `A_CustomerType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
    /// `true`: the value is present and not null; `false`: it is missing or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// One record type and the canonical row it becomes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// Record type name, for reports and quarantine.
    pub name: String,
    /// Which records this spec takes: one condition, or a list of which any may
    /// match (`[{equals: Account}, {path: Id, starts_with: "001"}]`). Omit when
    /// there is one type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<OneOrMany<TypeMatch>>,
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
    /// For a nested row delivered as a record of its own (Shopify GraphQL bulk
    /// JSONL: a line item on its own line with `__parentId`): the key of the
    /// record it belongs to, found anywhere in the file or loaded before. Only
    /// for `order_lines`, whose parent is an order; a line whose order is in
    /// neither place is quarantined (`missing_parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<FieldDef>,
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
    /// Dot path of the nested array or object in the record (`to_Item.results`,
    /// `line_items`, `customer`); with a list, the first present is used (OData v2
    /// `to_Item.results`, v4 `to_Item`).
    pub path: OneOrMany<String>,
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
    /// When the value at `path` is an object with this key, the nested rows were
    /// not delivered (OData `__deferred`: the navigation was not expanded). The
    /// record loads without them and the rows already stored stay as they are;
    /// the report counts such records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_expanded_key: Option<String>,
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
    Spec(Box<FieldSpec>),
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
                    .map(|s| FieldDef::Spec(Box::new(s)))
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
    /// The first of these paths whose value is present and not blank
    /// (`[LastModifiedDate, SystemModstamp]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_of: Option<Vec<String>>,
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
    /// When the value (after transforms) is null, this definition gives it
    /// instead: a derived value when the source did not export the field
    /// (`is_won` from `StageName` when `IsWon` was not selected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<FieldDef>>,
    /// What a value that is present but cannot be stored does: `quarantine` (the
    /// default) rejects the record; `keep` stores null in the column, keeps the
    /// source value in `attributes` and counts a warning for the column (an
    /// unknown country, an unparsable optional date). Required fields always
    /// quarantine.
    #[serde(default, skip_serializing_if = "OnInvalid::is_default")]
    pub on_invalid: OnInvalid,
}

/// What happens to a value that cannot be stored in its column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// The record is quarantined with the reason.
    #[default]
    Quarantine,
    /// The column is null, the source value stays in `attributes`, a warning is counted.
    Keep,
}

impl OnInvalid {
    fn is_default(&self) -> bool {
        *self == OnInvalid::Quarantine
    }
}

impl FieldDef {
    fn spec(&self) -> FieldSpec {
        match self {
            FieldDef::Path(p) => FieldSpec {
                path: Some(p.clone()),
                ..FieldSpec::default()
            },
            FieldDef::Spec(s) => (**s).clone(),
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
    /// Top-level keys the field reads: kept in `attributes` when its value is invalid.
    source_keys: Vec<String>,
    fallback: Option<Box<CompiledField>>,
}

/// A condition with its path split once.
#[derive(Debug)]
struct CompiledMatch {
    path: Option<Vec<String>>,
    test: TypeMatch,
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
    /// Alternatives; the first present is used.
    paths: Vec<Vec<String>>,
    /// For messages: the path found or the first one.
    label: String,
    min_items: usize,
    optional: bool,
    not_expanded_key: Option<String>,
    rows: CompiledRows,
}

#[derive(Debug)]
struct CompiledRecord {
    name: String,
    /// Any of these matches; empty matches every record.
    when: Vec<CompiledMatch>,
    rows: CompiledRows,
    children: Vec<CompiledChild>,
    /// The parent's key of a nested row delivered on its own.
    parent: Option<FieldSpec>,
}

/// A checked, ready-to-use mapping.
#[derive(Debug)]
pub struct Mapping {
    pub spec: MappingSpec,
    pub file: String,
    keys: GlobSet,
    records: Vec<CompiledRecord>,
    skips: Vec<(Vec<CompiledMatch>, String)>,
    type_path: Option<Vec<String>>,
}

/// A value that was present but could not be stored in its column, kept in
/// `attributes` instead (`on_invalid: keep`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldWarning {
    pub column: String,
    /// The reason code it would have been quarantined with (`invalid_value`, ...).
    pub reason: String,
    pub message: String,
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
    /// Values kept in `attributes` because their column could not hold them.
    pub warnings: Vec<FieldWarning>,
    /// Nested rows were not delivered (`not_expanded_key`): the stored ones stay.
    pub keep_children: bool,
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
    /// A `skip` rule matched: the record is counted and otherwise left out.
    Skipped { reason: String },
}

impl Mapping {
    /// True when this mapping owns the object key.
    pub fn matches_key(&self, key: &str) -> bool {
        self.keys.is_match(key)
    }

    /// The record layout for the streaming reader.
    pub fn record_format(&self) -> RecordFormat {
        let f = &self.spec.format;
        let kinds = f.kind.as_slice();
        let mut document = Vec::new();
        if kinds.contains(&FormatKind::Json) {
            for p in f.records.as_ref().map_or(&[][..], OneOrMany::as_slice) {
                document.push(DocShape::Array(split_path(p)));
            }
            // The document is handed over whole; `single_record` finds the record in it.
            if !f.single.is_empty() {
                document.push(DocShape::Object(Vec::new()));
            }
        }
        RecordFormat::Detect(Layouts {
            document,
            ndjson: kinds
                .contains(&FormatKind::Ndjson)
                .then(|| f.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES)),
            csv: kinds.contains(&FormatKind::Csv),
            fields: self.read_fields(),
        })
    }

    /// Top-level field names any record type, condition or skip rule reads.
    fn read_fields(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        let first = |p: &[String]| p.first().cloned();
        set.extend(self.type_path.as_deref().and_then(first));
        for r in &self.records {
            set.extend(r.rows.used_top_keys.iter().cloned());
            for f in &r.rows.fields {
                set.extend(f.source_keys.iter().cloned());
                for p in f.spec.path.iter().chain(f.spec.first_of.iter().flatten()) {
                    set.extend(
                        split_path(p)
                            .into_iter()
                            .next()
                            .filter(|k| !k.starts_with(['^', '#'])),
                    );
                }
            }
            set.extend(
                r.when
                    .iter()
                    .filter_map(|m| m.path.as_deref().and_then(first)),
            );
        }
        for (when, _) in &self.skips {
            set.extend(
                when.iter()
                    .filter_map(|m| m.path.as_deref().and_then(first)),
            );
        }
        set.into_iter().collect()
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

    /// Maps one item of a file: a record, or (`whole`) a single-object document,
    /// whose record is the first object at a `format.single` path that a record
    /// type (or a skip rule) takes. `Err` is a file-level error: a document that
    /// holds no record of this source fails as a whole.
    pub fn map_item(&self, value: &Value, whole: bool, position: u64) -> Result<Mapped, String> {
        if !whole {
            return Ok(self.map_record_at(value, Some(position)));
        }
        match self.single_record(value) {
            Some(record) => Ok(self.map_record_at(record, Some(position))),
            None => Err(format!(
                "the file is a single object, but no record type of mapping {} takes it (looked at {}); check that it was delivered under the right key",
                self.spec.source,
                self.spec
                    .format
                    .single
                    .iter()
                    .map(|p| if split_path(p).is_empty() { "the document itself".to_string() } else { format!("`{p}`") })
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The record of a single-object document (see [`Mapping::map_item`]).
    fn single_record<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        let ci = self.spec.case_insensitive_fields;
        let type_path = self.type_path.as_deref();
        let candidates: Vec<&Value> = self
            .spec
            .format
            .single
            .iter()
            .filter_map(|p| get_path(doc, &split_path(p), ci))
            .filter(|v| v.is_object())
            .collect();
        let taken = |v: &Value| {
            self.skips
                .iter()
                .any(|(when, _)| any_holds(when, v, type_path, ci))
                || self
                    .records
                    .iter()
                    .any(|r| r.when.is_empty() || any_holds(&r.when, v, type_path, ci))
        };
        candidates.iter().copied().find(|v| taken(v)).or_else(|| {
            // A typed object of a type nobody maps is skipped like any other record.
            (self.spec.unmatched == Unmatched::Skip)
                .then(|| {
                    candidates.iter().copied().find(|v| {
                        type_path
                            .and_then(|p| get_path(v, p, ci))
                            .is_some_and(|t| !t.is_null())
                    })
                })
                .flatten()
        })
    }

    /// True when a record type is a nested row delivered on its own (`parent`).
    pub fn has_detached_records(&self) -> bool {
        self.records.iter().any(|r| r.parent.is_some())
    }

    /// Maps one record.
    pub fn map_record(&self, record: &Value) -> Mapped {
        self.map_record_at(record, None)
    }

    /// Maps one record found at `position` in its file.
    pub fn map_record_at(&self, record: &Value, position: Option<u64>) -> Mapped {
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
        let type_path = self.type_path.as_deref();
        if let Some((_, reason)) = self
            .skips
            .iter()
            .find(|(when, _)| any_holds(when, record, type_path, self.spec.case_insensitive_fields))
        {
            return Mapped::Skipped {
                reason: reason.clone(),
            };
        }
        let spec = self.records.iter().find(|r| {
            r.when.is_empty()
                || any_holds(
                    &r.when,
                    record,
                    type_path,
                    self.spec.case_insensitive_fields,
                )
        });
        let Some(spec) = spec else {
            let ty = self
                .type_path
                .as_ref()
                .and_then(|p| get_path(record, p, self.spec.case_insensitive_fields))
                .cloned()
                .unwrap_or(Value::Null);
            if self.spec.unmatched == Unmatched::Skip && !ty.is_null() {
                return Mapped::Skipped {
                    reason: format!("record type {ty} is not mapped"),
                };
            }
            let names: Vec<&str> = self.records.iter().map(|r| r.name.as_str()).collect();
            let message = match (&self.spec.type_field, ty.is_null()) {
                (Some(field), true) => format!(
                    "the record has no `{field}` and matches no record type of mapping {} ({})",
                    self.spec.source,
                    names.join(", ")
                ),
                _ => format!(
                    "record type {ty} is not in mapping {} ({})",
                    self.spec.source,
                    names.join(", ")
                ),
            };
            return rejected(None, "unknown_record_type", message);
        };
        let name = Some(spec.name.clone());
        let ci = self.spec.case_insensitive_fields;
        let scope = Scope {
            obj,
            parent: None,
            index: None,
            position,
            ci,
        };
        let mut main = match map_rows(&spec.rows, scope, None) {
            Ok(r) => r,
            Err((reason, message)) => return rejected(name, reason, message),
        };
        if let Some(p) = &spec.parent {
            let raw = raw_value(p, scope);
            match apply_with(raw, &p.transforms, &|q| lookup(q, scope)) {
                Ok(Value::String(k)) if !k.trim().is_empty() => main.parent_key = Some(k),
                Ok(Value::Number(n)) => main.parent_key = Some(n.to_string()),
                Ok(_) => {
                    return rejected(
                        name,
                        "missing_key",
                        format!("the parent key ({}) is missing or blank", describe(p)),
                    )
                }
                Err(e) => return rejected(name, e.code, format!("parent key: {}", e.message)),
            }
        }
        let mut rows = vec![main];
        for child in &spec.children {
            if let Some(key) = &child.not_expanded_key {
                let deferred = child.paths.iter().any(|p| {
                    (1..=p.len()).any(|n| {
                        matches!(get_path(record, &p[..n], ci), Some(Value::Object(o)) if o.contains_key(key))
                    })
                });
                if deferred {
                    rows[0].keep_children = true;
                    continue;
                }
            }
            let found = child
                .paths
                .iter()
                .find_map(|p| get_path(record, p, ci).filter(|v| !v.is_null()));
            let items: Vec<&Map<String, Value>> = match found {
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
                                    format!("{}[{i}] is not an object", child.label),
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
                        format!("{} is neither an array nor an object", child.label),
                    )
                }
            };
            if items.len() < child.min_items {
                return rejected(
                    name,
                    "missing_required",
                    format!(
                        "{} has {} item(s); at least {} required",
                        child.label,
                        items.len(),
                        child.min_items
                    ),
                );
            }
            let parent_key = rows[0].source_id.clone();
            let mut seen = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let child_scope = Scope {
                    obj: item,
                    parent: Some(obj),
                    index: Some(i),
                    position,
                    ci,
                };
                match map_rows(&child.rows, child_scope, Some(&parent_key)) {
                    // The same key twice in one record: order lines must be distinct
                    // (a data error); reference rows such as products are kept once.
                    Ok(r) if !seen.insert(r.source_id.clone()) => {
                        if child.rows.entity == Entity::OrderLines {
                            return rejected(
                                name,
                                "invalid_value",
                                format!(
                                    "{}[{i}]: key {} appears twice in the record",
                                    child.label, r.source_id
                                ),
                            );
                        }
                    }
                    Ok(r) => rows.push(r),
                    Err(("missing_key", _)) if child.optional => {}
                    Err((reason, message)) => {
                        return rejected(name, reason, format!("{}[{i}]: {message}", child.label))
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

/// True when any of the conditions holds for the record.
fn any_holds(
    when: &[CompiledMatch],
    record: &Value,
    type_path: Option<&[String]>,
    ci: bool,
) -> bool {
    when.iter().any(|m| {
        let path = m.path.as_deref().or(type_path);
        let value = path.and_then(|p| get_path(record, p, ci));
        condition_holds(&m.test, value)
    })
}

fn condition_holds(t: &TypeMatch, value: Option<&Value>) -> bool {
    let present = value.is_some_and(|v| !v.is_null());
    if t.exists.is_some_and(|e| e != present) {
        return false;
    }
    let text = match value {
        Some(Value::String(s)) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Some(Value::Number(n)) => Some(n.to_string().into()),
        Some(Value::Bool(b)) => Some(b.to_string().into()),
        _ => None,
    };
    let tests_text = t.equals.is_some()
        || t.one_of.is_some()
        || t.starts_with.is_some()
        || t.ends_with.is_some();
    let Some(text) = text else {
        return !tests_text;
    };
    t.equals.as_deref().is_none_or(|e| e == text)
        && t.one_of
            .as_ref()
            .is_none_or(|l| l.iter().any(|e| *e == text))
        && t.starts_with.as_deref().is_none_or(|e| text.starts_with(e))
        && t.ends_with.as_deref().is_none_or(|e| text.ends_with(e))
}

/// Splits `a.b.c` into keys; an empty path is the empty list.
pub fn split_path(p: &str) -> Vec<String> {
    p.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn get_path<'a>(v: &'a Value, path: &[String], ci: bool) -> Option<&'a Value> {
    let mut cur = v;
    for k in path {
        cur = match cur {
            Value::Object(m) => object_get(m, k, ci)?,
            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

type Reject = (&'static str, String);

/// Where a field's paths are read: the object being mapped, its parent record
/// (nested rows), its 1-based position among its siblings, and whether object
/// keys compare without case.
#[derive(Clone, Copy)]
struct Scope<'a> {
    obj: &'a Map<String, Value>,
    parent: Option<&'a Map<String, Value>>,
    index: Option<usize>,
    /// The record's position in its file (`#position`).
    position: Option<u64>,
    ci: bool,
}

/// Reads a dot path; `^path` reads the parent record, `#index` is the 1-based
/// position of a nested row in its array, `#position` the record's position in
/// its file (its line in NDJSON).
fn lookup(path: &str, scope: Scope<'_>) -> Value {
    if path == "#index" {
        return scope.index.map_or(Value::Null, |i| Value::from(i + 1));
    }
    if path == "#position" {
        return scope.position.map_or(Value::Null, Value::from);
    }
    let (src, p) = match path.strip_prefix('^') {
        Some(rest) => (scope.parent, rest),
        None => (Some(scope.obj), path),
    };
    let Some(src) = src else { return Value::Null };
    let mut cur: Option<&Value> = None;
    for (i, key) in p.split('.').filter(|k| !k.is_empty()).enumerate() {
        let next = if i == 0 {
            object_get(src, key, scope.ci)
        } else {
            match cur {
                Some(Value::Object(m)) => object_get(m, key, scope.ci),
                Some(Value::Array(a)) => key.parse::<usize>().ok().and_then(|n| a.get(n)),
                _ => None,
            }
        };
        match next {
            Some(v) => cur = Some(v),
            None => return Value::Null,
        }
    }
    cur.cloned().unwrap_or(Value::Null)
}

/// A key of an object; with `ci`, a key that differs only in case also matches
/// (Data Loader exports Salesforce fields as `ID`, `NAME`).
fn object_get<'v>(m: &'v Map<String, Value>, key: &str, ci: bool) -> Option<&'v Value> {
    match m.get(key) {
        Some(v) => Some(v),
        None if ci => m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v),
        None => None,
    }
}

fn raw_value(spec: &FieldSpec, scope: Scope<'_>) -> Value {
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
            match lookup(p, scope) {
                Value::Null => return Value::Null,
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        return Value::String(out);
    }
    if let Some(paths) = &spec.first_of {
        return paths
            .iter()
            .map(|p| lookup(p, scope))
            .find(|v| match v {
                Value::Null => false,
                Value::String(s) => !s.trim().is_empty(),
                _ => true,
            })
            .unwrap_or(Value::Null);
    }
    match &spec.path {
        Some(p) => lookup(p, scope),
        None => Value::Null,
    }
}

fn describe(spec: &FieldSpec) -> String {
    spec.path
        .clone()
        .or_else(|| spec.template.clone())
        .or_else(|| {
            spec.first_of
                .as_ref()
                .map(|p| format!("first of {}", p.join(", ")))
        })
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

/// Evaluates one field: its text for the column (None is NULL), or a warning
/// when an invalid value is kept (`on_invalid: keep`), or the reason to quarantine.
fn eval_field(
    f: &CompiledField,
    scope: Scope<'_>,
) -> Result<(Option<String>, Option<FieldWarning>), Reject> {
    match eval_value(f, scope) {
        Ok(Some(text)) => Ok((Some(text), None)),
        Ok(None) if f.spec.required => Err((
            "missing_required",
            format!(
                "`{}` (from {}) is required but missing",
                f.column,
                describe(&f.spec)
            ),
        )),
        Ok(None) => Ok((f.default.map(str::to_string), None)),
        Err((reason, message)) if f.spec.on_invalid == OnInvalid::Keep && !f.spec.required => Ok((
            f.default.map(str::to_string),
            Some(FieldWarning {
                column: f.column.clone(),
                reason: reason.to_string(),
                message,
            }),
        )),
        Err(e) => Err(e),
    }
}

/// Evaluates, validates and types one field's value. Ok(None) is NULL (after
/// the fallback, if any).
fn eval_value(f: &CompiledField, scope: Scope<'_>) -> Result<Option<String>, Reject> {
    let spec = &f.spec;
    let column = f.column.as_str();
    let what = || format!("`{column}` (from {})", describe(spec));
    let raw = raw_value(spec, scope);
    let v = apply_with(raw, &spec.transforms, &|p| lookup(p, scope))
        .map_err(|e| (e.code, format!("{}: {}", what(), e.message)))?;
    if v.is_null() {
        return match &f.fallback {
            Some(fb) => eval_value(fb, scope),
            None => Ok(None),
        };
    }
    if spec.not_blank && v.as_str().is_some_and(|s| s.trim().is_empty()) {
        return Err(("blank", format!("{} must not be blank", what())));
    }
    let text = to_column_text(f.ty, &v).map_err(|(code, m)| (code, format!("{}: {m}", what())))?;
    if let Some(re) = &f.pattern {
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
    scope: Scope<'_>,
    parent_key: Option<&str>,
) -> Result<MappedRow, Reject> {
    let (obj, parent) = (scope.obj, scope.parent);
    let key = {
        let raw = raw_value(&rows.key, scope);
        let v = apply_with(raw, &rows.key.transforms, &|p| lookup(p, scope))
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
    let mut warnings = Vec::new();
    let mut kept: Vec<&String> = Vec::new();
    for f in &rows.fields {
        let (v, warning) = eval_field(f, scope)?;
        if let Some(w) = warning {
            kept.extend(f.source_keys.iter());
            warnings.push(w);
        }
        if rows.version_field.as_deref() == Some(f.column.as_str()) {
            version = v.clone();
        }
        values.push((f.column.clone(), v));
    }
    let in_set = |set: &BTreeSet<String>, k: &String| {
        set.contains(k) || (scope.ci && set.iter().any(|u| u.eq_ignore_ascii_case(k)))
    };
    let attributes: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| {
            (!in_set(&rows.used_top_keys, k) && !in_set(&rows.exclude, k))
                || kept.iter().any(|c| c.eq_ignore_ascii_case(k))
        })
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
        warnings,
        keep_children: false,
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

/// The top-level key a path consumes: only a whole top-level field is left out
/// of `attributes`; a path into an object (`Account.Name`, `default_address.city`)
/// leaves the object in `attributes` with its other fields.
fn top_key(path: &str) -> Option<String> {
    if path.starts_with('^') || path.starts_with('#') {
        return None;
    }
    let mut parts = split_path(path);
    if parts.len() == 1 {
        parts.pop()
    } else {
        None
    }
}

fn used_keys(spec: &FieldSpec, into: &mut BTreeSet<String>) {
    if let Some(p) = &spec.path {
        into.extend(top_key(p));
    }
    for p in spec.first_of.iter().flatten() {
        into.extend(top_key(p));
    }
    if let Some(fb) = &spec.fallback {
        used_keys(&fb.spec(), into);
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
    } else if spec.source == "companies" {
        d.push(
            Diagnostic::new(
                f,
                at(&["source"]),
                "source `companies` is reserved: mappings/companies.yaml holds the company rules",
            )
            .help("name the source system after the system itself (crm, erp, shop, ...)"),
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
    if !crate::is_semver(&spec.version) {
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
    let kinds = spec.format.kind.as_slice();
    if kinds.is_empty() {
        d.push(
            Diagnostic::new(f, at(&["format", "kind"]), "`kind` lists no format")
                .help("use json, ndjson, csv or a list of them"),
        );
    }
    let record_paths = spec
        .format
        .records
        .as_ref()
        .map_or(&[][..], OneOrMany::as_slice);
    if kinds.contains(&FormatKind::Json) && record_paths.is_empty() && spec.format.single.is_empty()
    {
        d.push(
            Diagnostic::new(
                f,
                at(&["format"]),
                "a json format needs `records:` (the dot path of the record array) or `single:` (the path of a one-record object)",
            )
            .help(
                "for example `records: records` (Salesforce) or `records: d.results` (SAP OData); `single: [\".\"]` when the document is the record",
            ),
        );
    }
    if record_paths.iter().any(|p| split_path(p).is_empty()) && record_paths.len() > 1 {
        d.push(Diagnostic::new(
            f,
            at(&["format", "records"]),
            "an empty records path (the document is the array) cannot be combined with other paths",
        ));
    }
    if !kinds.contains(&FormatKind::Json)
        && (!record_paths.is_empty() || !spec.format.single.is_empty())
    {
        d.push(Diagnostic::new(
            f,
            at(&["format"]),
            "`records` and `single` describe JSON documents, but `kind` does not list json",
        ));
    }
    let compile_when = |what: &str,
                        when: &[TypeMatch],
                        pos: (usize, usize),
                        d: &mut Vec<Diagnostic>|
     -> Vec<CompiledMatch> {
        when.iter()
            .map(|m| {
                let tests = m.equals.is_some() || m.one_of.is_some() || m.starts_with.is_some() || m.ends_with.is_some() || m.exists.is_some();
                if !tests {
                    d.push(Diagnostic::new(f, pos, format!("{what}: a condition tests nothing")).help("give equals, one_of, starts_with, ends_with or exists"));
                }
                if m.path.is_none() && spec.type_field.is_none() {
                    d.push(Diagnostic::new(f, pos, format!("{what}: a condition without `path` compares `type_field`, which is not set")).help("set `type_field` or give the condition a `path`"));
                }
                CompiledMatch { path: m.path.as_deref().map(split_path), test: m.clone() }
            })
            .collect()
    };
    let mut skips = Vec::new();
    for (i, rule) in spec.skip.iter().enumerate() {
        let pos = yaml_key_position(y, &["skip"]);
        let pos = (pos.0 + i, pos.1);
        if rule.reason.trim().is_empty() {
            d.push(Diagnostic::new(f, pos, "a skip rule needs a `reason`"));
        }
        skips.push((
            compile_when("skip", rule.when.as_slice(), pos, &mut d),
            rule.reason.clone(),
        ));
    }
    if spec.records.is_empty() {
        d.push(Diagnostic::new(
            f,
            at(&["records"]),
            "no record types declared",
        ));
    }
    if spec.records.len() > 1
        && spec.records[..spec.records.len() - 1]
            .iter()
            .any(|r| r.when.is_none())
    {
        d.push(
            Diagnostic::new(
                f,
                at(&["records"]),
                "several record types need `when` to tell them apart (only the last may go without)",
            )
            .help("for example `when: {equals: Account}` with `type_field: attributes.type`, or `when: {path: line_items, exists: true}`"),
        );
    }
    let mut compiled = Vec::new();
    for (i, r) in spec.records.iter().enumerate() {
        let line = record_line(y, i);
        match (r.entity, &r.parent) {
            (Entity::OrderLines, None) => d.push(
                Diagnostic::new(
                    f,
                    line,
                    format!(
                        "record `{}`: order_lines are a child of an order record, or need `parent` (the order's key)",
                        r.name
                    ),
                )
                .help("nest them under the order's `children`, or give `parent: {path: __parentId}` when lines come as records of their own"),
            ),
            (Entity::OrderLines, Some(_)) | (_, None) => {}
            (_, Some(_)) => d.push(Diagnostic::new(
                f,
                line,
                format!(
                    "record `{}`: `parent` is only for order_lines (their order's key)",
                    r.name
                ),
            )),
        }
        let rows = compile_rows(
            f,
            y,
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
            let paths: Vec<Vec<String>> = c.path.as_slice().iter().map(|p| split_path(p)).collect();
            for first in paths.iter().filter_map(|p| p.first()) {
                rows.used_top_keys.insert(first.clone());
            }
            // The child's fields come after its `path:` line.
            let child_line = c
                .path
                .as_slice()
                .first()
                .and_then(|p| line_after(y, line, &format!("path: {p}")))
                .unwrap_or(line);
            let crows = compile_rows(
                f,
                y,
                child_line,
                &format!("{}.{}", r.name, c.path.as_slice().join("|")),
                c.entity,
                &c.key,
                &c.fields,
                &c.version_field,
                &c.exclude_from_attributes,
                &mut d,
            );
            children.push(CompiledChild {
                label: c.path.as_slice().first().cloned().unwrap_or_default(),
                paths,
                min_items: c.min_items,
                optional: c.optional,
                not_expanded_key: c.not_expanded_key.clone(),
                rows: crows,
            });
        }
        let when = match &r.when {
            Some(w) => compile_when(&format!("record `{}`", r.name), w.as_slice(), line, &mut d),
            None => Vec::new(),
        };
        let parent = r.parent.as_ref().map(|p| {
            let spec = p.spec();
            rows.used_top_keys
                .extend(spec.path.as_deref().and_then(top_key));
            spec
        });
        compiled.push(CompiledRecord {
            name: r.name.clone(),
            when,
            parent,
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
            skips,
            type_path,
        }),
        d,
    )
}

/// Checks a set of mappings together: each source once, and no object key
/// claimed by two of them (a file must have one mapping; the glob order of a
/// folder listing is no rule). `texts` are the files' contents, for positions.
pub fn check_mapping_set(mappings: &[&Mapping], texts: &[&str]) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    for (i, a) in mappings.iter().enumerate() {
        let text = texts.get(i).copied().unwrap_or_default();
        let pos = yaml_key_position(text, &["keys"]);
        for b in &mappings[..i] {
            if a.spec.source == b.spec.source {
                d.push(Diagnostic::new(
                    &a.file,
                    yaml_key_position(text, &["source"]),
                    format!("source `{}` is also mapped by {}", a.spec.source, b.file),
                ));
            }
            let overlap = a
                .spec
                .keys
                .iter()
                .map(|g| (g, sample_key(g)))
                .find(|(_, k)| b.matches_key(k))
                .or_else(|| {
                    b.spec
                        .keys
                        .iter()
                        .map(|g| (g, sample_key(g)))
                        .find(|(_, k)| a.matches_key(k))
                });
            if let Some((glob, key)) = overlap {
                d.push(
                    Diagnostic::new(
                        &a.file,
                        pos,
                        format!(
                            "keys overlap with {} (`{}`): a file such as `{key}` would be claimed by both, through `{glob}`",
                            b.file, b.spec.source
                        ),
                    )
                    .help("give each source its own key prefix, such as `stripe-data/**`"),
                );
            }
        }
    }
    d
}

/// A key the glob matches: wildcards filled with `x`, alternatives by the first.
fn sample_key(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    out.push_str("x/x");
                } else {
                    out.push('x');
                }
            }
            '?' => out.push('x'),
            '[' => {
                let first = chars
                    .next()
                    .filter(|c| *c != '!' && *c != '^')
                    .unwrap_or('x');
                out.push(first);
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            '{' => {
                let mut alt = String::new();
                let mut taking = true;
                for c in chars.by_ref() {
                    match c {
                        '}' => break,
                        ',' => taking = false,
                        c if taking => alt.push(c),
                        _ => {}
                    }
                }
                out.push_str(&alt);
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
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

/// Checks one field definition (and its fallback) for a column.
fn compile_field(
    f: &str,
    line: (usize, usize),
    what: &str,
    column: &str,
    col: &crate::ingest::canonical::Column,
    spec: FieldSpec,
    d: &mut Vec<Diagnostic>,
) -> CompiledField {
    let sources = [
        spec.path.is_some(),
        spec.template.is_some(),
        spec.value.is_some(),
        spec.first_of.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources != 1 {
        d.push(Diagnostic::new(
            f,
            line,
            format!(
                "{what}: field `{column}` needs exactly one of path, template, first_of or value"
            ),
        ));
    }
    if spec.first_of.as_ref().is_some_and(Vec::is_empty) {
        d.push(Diagnostic::new(
            f,
            line,
            format!("{what}: `first_of` of `{column}` lists no paths"),
        ));
    }
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
    for t in &spec.transforms {
        if let Transform::Replace { pattern, .. } = t {
            if let Err(e) = crate::ingest::transform::cached_regex(pattern) {
                d.push(Diagnostic::new(
                    f,
                    line,
                    format!("{what}: the `replace` pattern of `{column}` does not compile: {e}"),
                ));
            }
        }
    }
    let mut source_keys = BTreeSet::new();
    if let Some(p) = &spec.path {
        source_keys.extend(top_key(p));
    }
    for p in spec.first_of.iter().flatten() {
        source_keys.extend(top_key(p));
    }
    let fallback = spec.fallback.as_ref().map(|fb| {
        let fb_spec = fb.spec();
        // The field's own `required` and `on_invalid` govern the value, whichever
        // definition gave it; on the fallback they would be silently ignored.
        if fb_spec.required || fb_spec.on_invalid != OnInvalid::Quarantine {
            d.push(Diagnostic::new(
                f,
                line,
                format!("{what}: the fallback of `{column}` cannot set `required` or `on_invalid`; set them on the field, they govern the value whichever definition gave it"),
            ));
        }
        Box::new(compile_field(f, line, what, column, col, fb_spec, d))
    });
    CompiledField {
        column: column.to_string(),
        ty: col.ty,
        default: col.default,
        spec,
        pattern,
        source_keys: source_keys.into_iter().collect(),
        fallback,
    }
}

/// The first line at or after `from` where `needle` starts a key (after
/// indentation, `{` or `,`): a field's own line inside its record.
fn line_after(text: &str, from: (usize, usize), needle: &str) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .skip(from.0.saturating_sub(1))
        .find_map(|(i, l)| {
            l.match_indices(needle).find_map(|(at, _)| {
                let before = l[..at].chars().next_back();
                before
                    .is_none_or(|c| c.is_whitespace() || c == '{' || c == ',' || c == '-')
                    .then(|| (i + 1, l[..at].chars().count() + 1))
            })
        })
}

#[allow(clippy::too_many_arguments)]
fn compile_rows(
    f: &str,
    y: &str,
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
    // Fields are looked for from the record's `fields:` on (the record's own
    // `name:` is not its `name` field).
    let fields_at = line_after(y, line, "fields:").unwrap_or(line);
    for (column, def) in fields {
        let field_line = line_after(y, fields_at, &format!("{column}:")).unwrap_or(line);
        let Some(col) = entity.column(column) else {
            let known: Vec<&str> = entity.columns().iter().map(|c| c.name).collect();
            d.push(
                Diagnostic::new(
                    f,
                    field_line,
                    format!("{what}: `{column}` is not a column of {}", entity.table()),
                )
                .help(format!(
                    "columns: {}; unmapped source fields go to attributes automatically",
                    known.join(", ")
                )),
            );
            continue;
        };
        let spec = def.spec();
        used_keys(&spec, &mut used);
        out.push(compile_field(f, field_line, what, column, col, spec, d));
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
