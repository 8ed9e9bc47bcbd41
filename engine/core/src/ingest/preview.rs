//! What a mapping does with a file, without writing anything: each record's
//! canonical rows, warnings, quarantine reason or skip reason, and the file-level
//! verdict that ingest would reach. `quarry map preview` prints it and `quarry
//! test` compares it with the expected output stored beside an input file; the
//! loader applies the same file-level rules ([`Mapping::map_item`],
//! [`file_error_for_summary`]), so a preview that passes is a load that loads.
//!
//! ```
//! use quarry_core::ingest::mapping::{check_mapping, MappingSource};
//! use quarry_core::ingest::preview::preview;
//! let yaml = r#"# yaml-language-server: $schema=../schemas/mapping.schema.json
//! source: demo
//! version: 1.0.0
//! description: d
//! keys: ["demo/**"]
//! format: {kind: json, records: items}
//! records:
//!   - name: item
//!     entity: products
//!     key: sku
//!     fields:
//!       sku: sku
//!       name: {path: title, required: true}
//! "#;
//! let (m, d) = check_mapping(&MappingSource { file: "demo.yaml".into(), text: yaml.into() });
//! assert!(d.is_empty(), "{d:?}");
//! let p = preview(&br#"{"items":[{"sku":"A","title":"Apple"},{"sku":"B"}]}"#[..], &m.unwrap(), 10);
//! assert_eq!(p.summary.rows["products"], 1);
//! assert_eq!(p.summary.quarantined["missing_required"], 1);
//! ```

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ingest::mapping::{Mapped, MappedRow, Mapping};
use crate::ingest::stream::{stream_records, StreamItem, StreamSummary};

/// One record's fate.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Loads as these rows (the record's own row first).
    Rows {
        record_type: String,
        rows: Vec<PreviewRow>,
    },
    Quarantined {
        #[serde(skip_serializing_if = "Option::is_none")]
        record_type: Option<String>,
        reason: String,
        message: String,
    },
    Skipped {
        reason: String,
    },
}

/// A canonical row as a person reads it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PreviewRow {
    pub entity: String,
    pub source_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Mapped columns that have a value.
    pub values: BTreeMap<String, String>,
    /// The source fields kept in `attributes` (names only).
    pub attributes: Vec<String>,
    /// Columns whose value could not be stored and stays in `attributes`, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PreviewWarning>,
    /// Nested rows were not delivered; the stored ones would be kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keeps_stored_children: bool,
}

/// A value kept in `attributes` because its column could not hold it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PreviewWarning {
    pub column: String,
    pub reason: String,
    pub message: String,
}

/// One record and its outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PreviewRecord {
    pub position: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Counts over the whole file.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PreviewSummary {
    pub records: u64,
    /// Rows by entity table.
    pub rows: BTreeMap<String, u64>,
    pub quarantined: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    /// Warnings by `entity.column`.
    pub warnings: BTreeMap<String, u64>,
    pub children_not_delivered: u64,
    /// Why the whole file would fail (then nothing of it loads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_error: Option<String>,
}

/// The preview of a file: the first records in detail, and counts over all.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Preview {
    pub source: String,
    pub mapping_version: String,
    pub records: Vec<PreviewRecord>,
    pub summary: PreviewSummary,
}

/// Maps every record of `reader` with `mapping`; keeps the first `limit` records
/// in detail. Never fails: a file that ingest would reject has `file_error`.
pub fn preview<R: Read>(reader: R, mapping: &Mapping, limit: usize) -> Preview {
    let mut records = Vec::new();
    let mut summary = PreviewSummary::default();
    let mut on_item = |item: StreamItem| -> Result<(), String> {
        summary.records += 1;
        let (position, outcome) = match item {
            StreamItem::BadRecord {
                position, error, ..
            } => (
                position,
                Outcome::Quarantined {
                    record_type: None,
                    reason: "invalid_json".into(),
                    message: error,
                },
            ),
            StreamItem::Record {
                position,
                value,
                whole,
            } => (
                position,
                outcome_of(mapping.map_item(&value, whole, position)?),
            ),
        };
        match &outcome {
            Outcome::Rows { rows, .. } => {
                for r in rows {
                    *summary.rows.entry(r.entity.clone()).or_default() += 1;
                    for w in &r.warnings {
                        *summary
                            .warnings
                            .entry(format!("{}.{}", r.entity, w.column))
                            .or_default() += 1;
                    }
                    if r.keeps_stored_children {
                        summary.children_not_delivered += 1;
                    }
                }
            }
            Outcome::Quarantined { reason, .. } => {
                *summary.quarantined.entry(reason.clone()).or_default() += 1
            }
            Outcome::Skipped { reason } => *summary.skipped.entry(reason.clone()).or_default() += 1,
        }
        if records.len() < limit {
            records.push(PreviewRecord { position, outcome });
        }
        Ok(())
    };
    match stream_records(reader, &mapping.record_format(), &mut on_item) {
        Ok(s) => summary.file_error = file_error_for_summary(&s),
        Err(e) => summary.file_error = Some(e.to_string()),
    }
    Preview {
        source: mapping.spec.source.clone(),
        mapping_version: mapping.spec.version.clone(),
        records,
        summary,
    }
}

fn outcome_of(mapped: Mapped) -> Outcome {
    match mapped {
        Mapped::Rows { record_type, rows } => Outcome::Rows {
            record_type,
            rows: rows.into_iter().map(preview_row).collect(),
        },
        Mapped::Rejected {
            record_type,
            reason,
            message,
        } => Outcome::Quarantined {
            record_type,
            reason,
            message,
        },
        Mapped::Skipped { reason } => Outcome::Skipped { reason },
    }
}

fn preview_row(r: MappedRow) -> PreviewRow {
    PreviewRow {
        entity: r.entity.table().to_string(),
        source_id: r.source_id,
        parent: r.parent_key,
        values: r
            .values
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        attributes: attribute_names(&r.attributes),
        warnings: r
            .warnings
            .into_iter()
            .map(|w| PreviewWarning {
                column: w.column,
                reason: w.reason,
                message: w.message,
            })
            .collect(),
        keeps_stored_children: r.keep_children,
    }
}

fn attribute_names(a: &Map<String, Value>) -> Vec<String> {
    a.keys().cloned().collect()
}

/// NDJSON of which no line is JSON is not NDJSON: the file fails as a whole.
pub fn file_error_for_summary(s: &StreamSummary) -> Option<String> {
    (s.records == 0 && s.bad_records > 0).then(|| {
        format!(
            "none of the file's {} line(s) is a JSON record: it is not NDJSON; check its format against the mapping's `format`",
            s.bad_records
        )
    })
}
