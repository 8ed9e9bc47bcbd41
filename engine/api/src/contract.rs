//! The API's bodies as types. Handlers serialize these, and `openapi.rs`
//! generates the OpenAPI document's schemas from the same types (schemars,
//! through aide), so the contract cannot drift from what is sent.

use chrono::{DateTime, Utc};
use quarry_core::jobs::{Job, JobError, JobResult, JobState, ResultFormat};
use quarry_core::packs::pack::{ColumnSpec, CostClass, Deprecation, ParamConstraint};
use quarry_core::packs::params::params_json_schema;
use quarry_core::Pack;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An operation's answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Answer {
    /// The operation's name.
    pub operation: String,
    /// The version of the operation that answered.
    pub version: String,
    /// Every parameter as it was used (defaults filled in).
    pub parameters: Map<String, Value>,
    /// The data version the answer was read at (it moves with every committed ingest).
    pub data_version: i64,
    /// The columns, in order, with their PostgreSQL types.
    pub columns: Vec<AnswerColumn>,
    /// Rows in `rows`.
    pub row_count: u64,
    /// True when the operation's row cap (or `max_rows`) cut the answer short.
    pub truncated: bool,
    /// Time the query took.
    pub elapsed_ms: u64,
    /// The rows, one object per row, keyed by column name. Exact `numeric`
    /// values are JSON numbers when a double holds them exactly, else strings.
    #[schemars(with = "Vec<Map<String, Value>>")]
    pub rows: AnswerRows,
    /// Where this page is in the answer (when `page_size` or `cursor` was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<PageInfo>,
    /// The next page (also in `Link: <...>; rel="next"`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An answer's rows as the database gave them, serialized as one JSON object
/// per row keyed by column name straight from the values: no map is built per
/// row, so an answer is turned into its bytes once.
#[derive(Debug, Default)]
pub struct AnswerRows {
    /// Each distinct column name in order of first appearance, with the index
    /// of its last appearance: a JSON object keeps one value per key, and this
    /// is the one (and the place) a map of the row would have kept.
    keys: Vec<(String, usize)>,
    rows: Vec<Vec<Value>>,
}

impl AnswerRows {
    /// `rows` (values in `columns`' order) as an answer's rows.
    pub fn new(columns: &[quarry_db::OutColumn], rows: Vec<Vec<Value>>) -> Self {
        let mut keys: Vec<(String, usize)> = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            match keys.iter_mut().find(|(name, _)| *name == c.name) {
                Some(k) => k.1 = i,
                None => keys.push((c.name.clone(), i)),
            }
        }
        AnswerRows { keys, rows }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl Serialize for AnswerRows {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for row in &self.rows {
            seq.serialize_element(&RowObject {
                keys: &self.keys,
                row,
            })?;
        }
        seq.end()
    }
}

/// One row as a JSON object.
struct RowObject<'a> {
    keys: &'a [(String, usize)],
    row: &'a [Value],
}

impl Serialize for RowObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.keys.len()))?;
        for (name, i) in self.keys {
            map.serialize_entry(name, self.row.get(*i).unwrap_or(&Value::Null))?;
        }
        map.end()
    }
}

/// A page of a paged answer. Every page comes from one snapshot of the answer,
/// taken when the first page was asked for.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PageInfo {
    /// This page, from 0.
    pub number: u64,
    /// Rows per page (the last page may have fewer).
    pub size: u64,
    /// Rows in the whole answer.
    pub total_rows: u64,
    /// Pages in the whole answer.
    pub total_pages: u64,
}

/// One column of an answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AnswerColumn {
    pub name: String,
    /// The PostgreSQL type name (`numeric`, `text`, `timestamptz`, ...).
    pub pg_type: String,
}

/// The body of `303 See Other` for a synchronous answer too large to send inline.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StoredAnswer {
    /// Always true: the answer was stored.
    pub stored: bool,
    /// Its size in bytes.
    pub bytes: u64,
    /// The expiring signed link (also in `Location`).
    pub result_url: String,
    pub expires_in_seconds: u64,
    pub detail: String,
}

/// A job's state, as `POST /analytics/jobs` and `GET /analytics/jobs/{id}` answer it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobStatus {
    pub job_id: String,
    /// The operation (as called, `name` or `name@MAJOR`).
    pub operation: String,
    /// The version of the operation the job runs.
    pub operation_version: String,
    /// The parameters as submitted.
    pub parameters: Map<String, Value>,
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// For a queued job: not started before this instant (retry backoff).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<JobError>,
    pub result: Option<JobResultSummary>,
    pub links: JobLinks,
    /// Why the call became a job (a heavy operation called synchronously).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a succeeded job produced.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobResultSummary {
    /// True when the result is an object in storage (fetched by a signed link).
    pub stored: bool,
    pub format: ResultFormat,
    pub row_count: Option<u64>,
    /// Size of a stored result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    pub truncated: Option<bool>,
}

/// Where to look next.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobLinks {
    /// This job's status.
    #[serde(rename = "self")]
    pub this: String,
    /// The result, once the job succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl JobStatus {
    pub fn of(job: &Job) -> JobStatus {
        let result = job.result.as_ref().map(|r| match r {
            JobResult::Inline { body } => JobResultSummary {
                stored: false,
                format: job.format,
                row_count: body.get("row_count").and_then(Value::as_u64),
                bytes: None,
                truncated: body.get("truncated").and_then(Value::as_bool),
            },
            JobResult::Stored {
                format,
                rows,
                bytes,
                truncated,
                ..
            } => JobResultSummary {
                stored: true,
                format: *format,
                row_count: Some(*rows),
                bytes: Some(*bytes),
                truncated: Some(*truncated),
            },
        });
        JobStatus {
            job_id: job.id.clone(),
            operation: job.operation.clone(),
            operation_version: job.operation_version.clone(),
            parameters: job.parameters.clone(),
            state: job.state,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            submitted_at: job.submitted_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            duration_ms: job.duration_ms(),
            next_attempt_at: (job.state == JobState::Queued).then_some(job.next_attempt_at),
            error: job.error.clone(),
            result,
            links: JobLinks {
                this: format!("/analytics/jobs/{}", job.id),
                result: (job.state == JobState::Succeeded)
                    .then(|| format!("/analytics/jobs/{}/result", job.id)),
            },
            message: None,
        }
    }
}

/// The catalog: `GET /operations`, `quarry operations --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OperationList {
    pub operations: Vec<OperationDoc>,
}

/// One operation of the catalog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OperationDoc {
    pub name: String,
    pub version: String,
    pub title: String,
    pub description: String,
    pub cost: CostClass,
    pub timeout_seconds: u32,
    pub cache_ttl_seconds: u64,
    pub max_rows: u64,
    /// JSON Schema of the parameters: types, allowed values, defaults, bounds, descriptions.
    pub parameters: Map<String, Value>,
    /// The columns the answer has.
    pub columns: Vec<ColumnSpec>,
    pub tags: Vec<String>,
    /// Ranges between parameters: `from` must not be after `to` when both are given (else 422 naming both).
    pub constraints: Vec<ParamConstraint>,
    /// name@MAJOR: calls exactly this version (without @, the latest is called).
    pub call_as: String,
    pub deprecation: Option<Deprecation>,
    /// The key scope calling it needs: `read`, or `admin` for caller-supplied SQL.
    pub requires_scope: String,
}

impl OperationDoc {
    pub fn of(p: &Pack) -> OperationDoc {
        let parameters = match params_json_schema(&p.spec) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        OperationDoc {
            name: p.spec.name.clone(),
            version: p.spec.version.clone(),
            title: p.spec.title.clone(),
            description: p.spec.description.clone(),
            cost: p.spec.cost,
            timeout_seconds: p.spec.timeout_seconds,
            cache_ttl_seconds: p.spec.cache_ttl_seconds,
            max_rows: p.spec.max_rows,
            parameters,
            columns: p.spec.columns.clone(),
            tags: p.spec.tags.clone(),
            constraints: p.spec.constraints.clone(),
            call_as: p.versioned_name(),
            deprecation: p.spec.deprecation.clone(),
            requires_scope: if p.spec.raw_sql { "admin" } else { "read" }.into(),
        }
    }
}

/// `GET /health`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database cannot be reached.
    pub status: HealthStatus,
    pub database: DatabaseReach,
    /// The data version (moves with every committed ingest); null when unreachable.
    pub data_version: Option<i64>,
    /// Operations loaded (every version counted).
    pub operations: u64,
    /// The last reload of the query packs: a rejected one leaves the previous packs serving.
    pub reload: Option<crate::reload::ReloadStatus>,
    /// The server's version.
    pub version: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseReach {
    Reachable,
    Unreachable,
}

/// A page of the ingest ledger, newest file first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LedgerPage {
    pub files: Vec<quarry_db::ledger::LedgerFile>,
    /// The next (older) page, as a path with its query; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A page of quarantined records, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QuarantinePage {
    pub records: Vec<quarry_db::ledger::QuarantinedRecord>,
    /// The next (older) page, as a path with its query; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Links and decided pairs, proposals (waiting for review) first, best score first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LinkPage {
    pub links: Vec<quarry_db::companies::LinkRow>,
}

/// A decision about two organizations (`POST /admin/links/confirm` or `/reject`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// organizations.id of one side.
    #[schemars(range(min = 1))]
    pub left_id: i64,
    /// organizations.id of the other side.
    #[schemars(range(min = 1))]
    pub right_id: i64,
    /// Why, kept with the decision.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub note: Option<String>,
}

/// `POST /admin/organizations/{id}/split` (the body may be empty).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    /// Why, kept with the decisions.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub note: Option<String>,
}

/// What a decision changed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Decided {
    /// The pairs decided.
    pub pairs: Vec<DecidedPair>,
    /// The company of each organization involved, after the decision.
    pub companies: Vec<Membership>,
}

/// A pair of organizations (the smaller id first).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DecidedPair {
    pub left_id: i64,
    pub right_id: i64,
}

/// An organization and its company.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Membership {
    pub organization_id: i64,
    pub company_id: i64,
}

impl From<quarry_db::companies::Decided> for Decided {
    fn from(d: quarry_db::companies::Decided) -> Self {
        Decided {
            pairs: d
                .pairs
                .into_iter()
                .map(|(left_id, right_id)| DecidedPair { left_id, right_id })
                .collect(),
            companies: d
                .companies
                .into_iter()
                .map(|(organization_id, company_id)| Membership {
                    organization_id,
                    company_id,
                })
                .collect(),
        }
    }
}

/// A company: `company` (its golden row), `value_sources` (for each golden
/// value, the member it came from), `members` (its organizations in every
/// system) and `links` (between its members, and proposals and rejections
/// touching them).
#[derive(Debug, Serialize)]
pub struct CompanyView(pub serde_json::Value);

impl JsonSchema for CompanyView {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CompanyView".into()
    }

    fn json_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let links = gen.subschema_for::<Vec<quarry_db::companies::LinkRow>>();
        schemars::json_schema!({
            "type": "object",
            "description": "A company: its golden row, where each golden value came from, its members in every system, and the links touching them.",
            "required": ["company", "value_sources", "members", "links"],
            "properties": {
                "company": {"type": "object", "description": "The golden row (canonical.companies without value_sources)."},
                "value_sources": {"type": "object", "description": "Per golden field: organization_id, source_system and source_id of the member the value came from.",
                                  "additionalProperties": {"type": "object"}},
                "members": {"type": "array", "items": {"type": "object"}, "description": "The company's organizations, by source system and key."},
                "links": links
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(name: &str) -> quarry_db::OutColumn {
        quarry_db::OutColumn {
            name: name.into(),
            pg_type: "int4".into(),
        }
    }

    /// The rows serialize to the very bytes a map per row gave, duplicate
    /// column names included (one key, the last value, at the first place).
    #[test]
    fn answer_rows_write_what_a_map_per_row_wrote() {
        let columns = [col("b"), col("a"), col("b"), col("c")];
        let rows = vec![
            vec![json!(1), json!("x"), json!(3), json!(null)],
            vec![json!(4.5), json!({"k": [1]}), json!(true), json!("é\"")],
        ];
        let maps: Vec<Map<String, Value>> = rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.name.clone(), v.clone()))
                    .collect()
            })
            .collect();
        let direct = AnswerRows::new(&columns, rows);
        assert_eq!(direct.len(), 2);
        let bytes = serde_json::to_vec(&direct).expect("serialize");
        assert_eq!(bytes, serde_json::to_vec(&maps).expect("serialize"));
        assert_eq!(
            serde_json::to_value(&direct).expect("value"),
            json!([{"b": 3, "a": "x", "c": null}, {"b": true, "a": {"k": [1]}, "c": "é\""}])
        );
        assert_eq!(
            serde_json::to_vec(&AnswerRows::new(&columns, Vec::new())).expect("serialize"),
            b"[]"
        );
    }
}
