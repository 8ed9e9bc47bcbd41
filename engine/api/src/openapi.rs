//! `GET /openapi.json`: the OpenAPI 3.1 document, generated with aide's typed
//! OpenAPI model from the types the handlers send and receive (their JSON
//! Schemas by schemars, in `components`) and from the pack set currently
//! loaded: every operation gets its own paths (`GET`/`POST /analytics/NAME`)
//! with typed parameters (types, allowed values, defaults, bounds), an answer
//! whose rows follow the pack's declared columns, and every error response.
//!
//! aide rather than utoipa: our types already derive schemars' `JsonSchema`
//! (the pack schema in `schemas/` comes from the same derives), and aide's
//! model holds schemars schemas as they are, so the JSON Schema 2020-12 of a
//! pack's parameters goes into the document without being translated into a
//! second schema model.

use std::sync::Arc;

use aide::openapi::{
    Components, Header, HeaderStyle, Info, MediaType, OpenApi, Operation, Parameter, ParameterData,
    ParameterSchemaOrContent, PathItem, Paths, QueryStyle, ReferenceOr, RequestBody, Response,
    Responses, SchemaObject, SecurityRequirement, SecurityScheme, StatusCode, Tag,
};
use axum::extract::State;
use axum::Json;
use indexmap::IndexMap;
use quarry_core::jobs::Event;
use quarry_core::packs::pack::{ColumnType, ParamType};
use quarry_core::packs::params::{param_json_schema, params_json_schema};
use quarry_core::Pack;
use quarry_core::PackSet;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::call::AnalyticsRequest;
use crate::contract::{
    Answer, CompanyView, Decided, DecisionRequest, Health, JobStatus, LedgerPage, LinkPage,
    OperationDoc, OperationList, QuarantinePage, SplitRequest, StoredAnswer,
};
use crate::problem::Problem;
use crate::AppState;

pub async fn handler(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(document(&st.packs(), st.config.api.max_page_size))
}

const SCHEMAS: &str = "#/components/schemas/";

/// The document for `packs`.
pub fn document(packs: &PackSet, max_page_size: u64) -> Value {
    let mut b = Builder::new(max_page_size);
    b.static_paths(packs);
    for p in packs.all() {
        b.operation_paths(packs, p);
    }
    b.finish()
}

struct Builder {
    /// Schemas of what the server sends (serialize contract: a field that is
    /// sometimes skipped is not required).
    gen: SchemaGenerator,
    /// Schemas of what the server reads (deserialize contract: a field with a
    /// default is not required).
    gen_in: SchemaGenerator,
    max_page_size: u64,
    paths: IndexMap<String, ReferenceOr<PathItem>>,
    /// Schemas made from packs (not from Rust types).
    pack_schemas: IndexMap<String, Value>,
    /// One entry of `AnalyticsRequest`'s `oneOf` per callable operation.
    requests: Vec<Value>,
}

/// A schema as aide's model holds it.
fn schema_object(v: Value) -> SchemaObject {
    SchemaObject {
        json_schema: Schema::try_from(v).unwrap_or_default(),
        external_docs: None,
        example: None,
    }
}

fn reference(name: &str) -> SchemaObject {
    schema_object(json!({ "$ref": format!("{SCHEMAS}{name}") }))
}

fn media(schema: SchemaObject) -> MediaType {
    MediaType {
        schema: Some(schema),
        ..MediaType::default()
    }
}

fn header(description: &str, schema: Value) -> ReferenceOr<Header> {
    ReferenceOr::Item(Header {
        description: Some(description.into()),
        style: HeaderStyle::Simple,
        required: false,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(schema_object(schema)),
        example: None,
        examples: IndexMap::new(),
        extensions: IndexMap::new(),
    })
}

fn response(description: &str, content: &[(&str, SchemaObject)]) -> Response {
    Response {
        description: description.into(),
        content: content
            .iter()
            .map(|(ct, s)| ((*ct).to_string(), media(s.clone())))
            .collect(),
        ..Response::default()
    }
}

fn with_headers(mut r: Response, headers: &[(&str, &str, Value)]) -> Response {
    for (name, desc, schema) in headers {
        r.headers
            .insert((*name).to_string(), header(desc, schema.clone()));
    }
    r
}

fn problem(description: &str) -> Response {
    response(
        description,
        &[("application/problem+json", reference("Problem"))],
    )
}

/// Responses: the successes given, then the errors as problem documents, and
/// `default` for anything else.
fn responses(ok: Vec<(u16, Response)>, errors: &[(u16, &str)]) -> Responses {
    let mut out = IndexMap::new();
    for (code, r) in ok {
        out.insert(StatusCode::Code(code), ReferenceOr::Item(r));
    }
    for (code, desc) in errors {
        let mut r = problem(desc);
        if matches!(code, 429 | 503) {
            r = with_headers(
                r,
                &[(
                    "Retry-After",
                    "Seconds to wait before asking again",
                    json!({ "type": "string" }),
                )],
            );
        }
        out.insert(StatusCode::Code(*code), ReferenceOr::Item(r));
    }
    Responses {
        default: Some(ReferenceOr::Item(problem(
            "Any other error, as a problem document",
        ))),
        responses: out,
        extensions: IndexMap::new(),
    }
}

fn operation(id: &str, summary: &str, tag: &str, responses: Responses) -> Operation {
    Operation {
        operation_id: Some(id.into()),
        summary: Some(summary.into()),
        description: Some(summary.into()),
        tags: vec![tag.into()],
        responses: Some(responses),
        ..Operation::default()
    }
}

fn open_access() -> Vec<SecurityRequirement> {
    vec![SecurityRequirement::new()]
}

fn path_param(name: &str, description: &str) -> ReferenceOr<Parameter> {
    ReferenceOr::Item(Parameter::Path {
        parameter_data: ParameterData {
            name: name.into(),
            description: Some(description.into()),
            required: true,
            deprecated: None,
            format: ParameterSchemaOrContent::Schema(schema_object(json!({ "type": "string" }))),
            example: None,
            examples: IndexMap::new(),
            explode: None,
            extensions: IndexMap::new(),
        },
        style: aide::openapi::PathStyle::Simple,
    })
}

fn query_param(
    name: &str,
    description: &str,
    required: bool,
    schema: Value,
    style: QueryStyle,
    explode: Option<bool>,
) -> ReferenceOr<Parameter> {
    ReferenceOr::Item(Parameter::Query {
        parameter_data: ParameterData {
            name: name.into(),
            description: Some(description.into()),
            required,
            deprecated: None,
            format: ParameterSchemaOrContent::Schema(schema_object(schema)),
            example: None,
            examples: IndexMap::new(),
            explode,
            extensions: IndexMap::new(),
        },
        allow_reserved: false,
        style,
        allow_empty_value: None,
    })
}

const AUTH: &[(u16, &str)] = &[
    (401, "Missing or invalid API key"),
    (403, "The key lacks the scope this needs"),
    (429, "Rate limited; see Retry-After"),
];

/// The errors of running an operation.
const RUN_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Malformed request (a parameter given twice, a body that is not JSON), or an SQL error in caller SQL",
    ),
    (401, "Missing or invalid API key"),
    (
        403,
        "The key lacks the scope this needs, or custom SQL is disabled",
    ),
    (404, "No such operation"),
    (
        406,
        "Accept names none of application/json, application/x-ndjson, text/csv",
    ),
    (
        408,
        "The request body did not arrive within api.body_read_timeout_seconds",
    ),
    (
        410,
        "The snapshot behind `cursor` has expired; ask for the first page again",
    ),
    (413, "Body too large"),
    (414, "Query string too long"),
    (
        422,
        "Missing or invalid parameters (see `errors`), or the answer passed api.max_answer_bytes",
    ),
    (429, "Rate limited; see Retry-After"),
    (503, "Database unavailable"),
    (504, "The query ran past its timeout"),
];

/// The reserved query parameters of pagination, on every operation's paths.
fn paging_params(max_page_size: u64) -> Vec<ReferenceOr<Parameter>> {
    vec![
        query_param(
            "page_size",
            "Answer in pages of this many rows: every page comes from one snapshot of \
             the answer taken now, so later pages agree with the first whatever changes \
             in between. The answer has `page` and `next` (also `Link: rel=\"next\"`).",
            false,
            json!({ "type": "integer", "minimum": 1, "maximum": max_page_size }),
            QueryStyle::Form,
            None,
        ),
        query_param(
            "cursor",
            "The next page: the opaque value from the previous page's `next` (other \
             parameters are then ignored: the snapshot has them).",
            false,
            json!({ "type": "string", "maxLength": 200 }),
            QueryStyle::Form,
            None,
        ),
    ]
}

/// `Foo_bar@2` -> `FooBarV2`: a component name for an operation.
fn pascal(call: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in call.chars() {
        match c {
            '@' => {
                out.push('V');
                upper = false;
            }
            c if c.is_ascii_alphanumeric() => {
                if upper {
                    out.push(c.to_ascii_uppercase());
                } else {
                    out.push(c);
                }
                upper = false;
            }
            _ => upper = true,
        }
    }
    out
}

/// `customer_analysis@1` -> `customer_analysis_v1`: an operationId part.
fn snake(call: &str) -> String {
    call.replace('@', "_v")
}

/// The JSON Schema of one answer column, from its declared type. Every column
/// may be null; `number` columns are exact `numeric`s (a string when a double
/// cannot hold the value exactly).
fn column_schema(kind: ColumnType, description: &str) -> Value {
    let mut s = match kind {
        ColumnType::Text => json!({ "type": ["string", "null"] }),
        ColumnType::Integer => json!({ "type": ["integer", "null"] }),
        ColumnType::Number => json!({ "type": ["number", "string", "null"] }),
        ColumnType::Boolean => json!({ "type": ["boolean", "null"] }),
        ColumnType::Date => json!({ "type": ["string", "null"], "format": "date" }),
        ColumnType::Timestamp => json!({ "type": ["string", "null"], "format": "date-time" }),
        ColumnType::Json => json!({}),
    };
    if !description.is_empty() {
        s["description"] = json!(description);
    }
    s
}

impl Builder {
    fn new(max_page_size: u64) -> Builder {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = SCHEMAS.into();
            s.meta_schema = None;
        });
        Builder {
            gen: settings.clone().for_serialize().into_generator(),
            gen_in: settings.for_deserialize().into_generator(),
            max_page_size,
            paths: IndexMap::new(),
            pack_schemas: IndexMap::new(),
            requests: Vec::new(),
        }
    }

    /// A reference to `T`'s schema in `components` (generated from the type).
    fn typed<T: JsonSchema>(&mut self) -> SchemaObject {
        schema_object(self.gen.subschema_for::<T>().to_value())
    }

    /// A reference to the schema of `T` as a request body.
    fn typed_in<T: JsonSchema>(&mut self) -> SchemaObject {
        schema_object(self.gen_in.subschema_for::<T>().to_value())
    }

    fn json<T: JsonSchema>(&mut self, description: &str) -> Response {
        let s = self.typed::<T>();
        response(description, &[("application/json", s)])
    }

    fn put(&mut self, path: &str, f: impl FnOnce(&mut PathItem)) {
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| ReferenceOr::Item(PathItem::default()));
        if let ReferenceOr::Item(item) = entry {
            f(item);
        }
    }

    fn static_paths(&mut self, packs: &PackSet) {
        let health_ok = self.json::<Health>("Database reachable");
        let health_down = self.json::<Health>("Database unreachable");
        let mut health = operation(
            "health",
            "Liveness and database reachability",
            "service",
            responses(vec![(200, health_ok), (503, health_down)], &[]),
        );
        health.security = open_access();
        self.put("/health", |p| p.get = Some(health));

        let list = self.json::<OperationList>("Every operation, every version");
        self.put("/operations", |p| {
            p.get = Some(operation(
                "list_operations",
                "The operation catalog",
                "catalog",
                responses(vec![(200, list)], AUTH),
            ))
        });
        let one = self.json::<OperationDoc>("One operation");
        let mut get_one = operation(
            "get_operation",
            "One operation with its parameters",
            "catalog",
            responses(
                vec![(200, one)],
                &[AUTH, &[(404, "No such operation")]].concat(),
            ),
        );
        get_one.parameters = vec![path_param(
            "name",
            "The operation's name, or name@MAJOR for a major version",
        )];
        self.put("/operations/{name}", |p| p.get = Some(get_one));

        // The generic forms: any operation by name.
        let names = packs.call_names();
        let mut run_get = operation(
            "run_operation_get",
            "Run any operation (parameters in the query string)",
            "analytics",
            responses(self.answer_responses(None), RUN_ERRORS),
        );
        run_get.description = Some(
            "Prefer GET /analytics/NAME, whose parameters are typed. Here the operation is \
             named by `operation` and its parameters are further query parameters, by name."
                .into(),
        );
        run_get.parameters = vec![
            query_param(
                "operation",
                "The operation's name (name@MAJOR for a major version).",
                true,
                json!({ "type": "string", "enum": names }),
                QueryStyle::Form,
                None,
            ),
            query_param(
                "parameters",
                "The operation's parameters, each as its own query parameter (lists comma separated).",
                false,
                json!({ "type": "object", "additionalProperties": { "type": "string" } }),
                QueryStyle::Form,
                Some(true),
            ),
        ];
        let body = self.typed_in::<AnalyticsRequest>();
        let request_body = RequestBody {
            required: true,
            content: [("application/json".to_string(), media(body))].into(),
            ..RequestBody::default()
        };
        let mut run_post = operation(
            "run_operation",
            "Run any operation (parameters in a JSON body)",
            "analytics",
            responses(self.answer_responses(None), RUN_ERRORS),
        );
        // The synchronous form refuses `format` (Accept chooses): its own schema.
        run_post.request_body = Some(ReferenceOr::Item(RequestBody {
            required: true,
            content: [(
                "application/json".to_string(),
                media(reference("RunRequest")),
            )]
            .into(),
            ..RequestBody::default()
        }));
        self.put("/analytics", |p| {
            p.get = Some(run_get);
            p.post = Some(run_post);
        });

        let status = self.typed::<JobStatus>();
        let queued = with_headers(
            response("The job is queued", &[("application/json", status.clone())]),
            &[
                ("Location", "The job's status", json!({ "type": "string" })),
                (
                    "Retry-After",
                    "Seconds before polling",
                    json!({ "type": "string" }),
                ),
            ],
        );
        let mut submit = operation(
            "submit_job",
            "Run any operation as an asynchronous job",
            "jobs",
            responses(vec![(202, queued)], RUN_ERRORS),
        );
        submit.request_body = Some(ReferenceOr::Item(request_body));
        self.put("/analytics/jobs", |p| p.post = Some(submit));

        let job_errors: Vec<(u16, &str)> = [
            AUTH,
            &[
                (404, "No such job (or not yours)"),
                (409, "The job has not succeeded (yet)"),
                (503, "Job store unavailable"),
            ],
        ]
        .concat();
        let state = with_headers(
            response(
                "The job's state, timings, attempts, error and result link",
                &[("application/json", status)],
            ),
            &[(
                "Retry-After",
                "Seconds before polling again (while queued or running)",
                json!({ "type": "string" }),
            )],
        );
        let mut get_job = operation(
            "get_job",
            "A job's state",
            "jobs",
            responses(vec![(200, state)], &job_errors),
        );
        let job_id = path_param("id", "The job id returned by POST /analytics/jobs");
        get_job.parameters = vec![job_id.clone()];
        self.put("/analytics/jobs/{id}", |p| p.get = Some(get_job));

        let answer = self.typed::<Answer>();
        let inline = response(
            "A small result, inline: in the format Accept asks for, else the job's",
            &[
                ("application/json", answer),
                (
                    "application/x-ndjson",
                    schema_object(json!({ "type": "string" })),
                ),
                ("text/csv", schema_object(json!({ "type": "string" }))),
            ],
        );
        let moved = with_headers(
            response(
                "A large result: see the expiring signed link in Location",
                &[],
            ),
            &[(
                "Location",
                "The expiring signed link",
                json!({ "type": "string" }),
            )],
        );
        let mut result = operation(
            "get_job_result",
            "A job's result (inline, or a redirect to a signed link)",
            "jobs",
            responses(
                vec![(200, inline), (303, moved)],
                &[
                    &job_errors[..],
                    &[(
                        406,
                        "Accept names no format the result can have (a stored result has only the job's format)",
                    )],
                ]
                .concat(),
            ),
        );
        result.parameters = vec![job_id];
        self.put("/analytics/jobs/{id}/result", |p| p.get = Some(result));

        let metrics = response(
            "Prometheus text format",
            &[("text/plain", schema_object(json!({ "type": "string" })))],
        );
        self.put("/metrics", |p| {
            p.get = Some(operation(
                "metrics",
                "Prometheus metrics",
                "service",
                responses(vec![(200, metrics)], AUTH),
            ))
        });
        let filter = |name: &str, d: &str, schema: Value| {
            query_param(name, d, false, schema, QueryStyle::Form, None)
        };
        let paging = |p: &mut Vec<ReferenceOr<Parameter>>| {
            p.push(filter(
                "before",
                "Only entries with a smaller id: the next page (see `next`)",
                json!({ "type": "integer", "minimum": 1 }),
            ));
            p.push(filter(
                "limit",
                "Entries per page",
                json!({ "type": "integer", "minimum": 1, "maximum": quarry_db::ledger::MAX_LIMIT, "default": 50 }),
            ));
        };
        let list_errors = [
            AUTH,
            &[
                (422, "An unknown or invalid query parameter (see `errors`)"),
                (503, "Database unavailable"),
            ],
        ]
        .concat();
        let ledger = self.json::<LedgerPage>("Ledger files, newest first");
        let mut files = operation(
            "list_ingest_files",
            "The ingest ledger: each file with its outcome and counts",
            "ingest",
            responses(vec![(200, ledger)], &list_errors),
        );
        files.parameters = vec![
            filter(
                "source",
                "Only files of this source system",
                json!({ "type": "string" }),
            ),
            filter(
                "status",
                "Only files with this outcome",
                json!({ "type": "string", "enum": ["processing", "loaded", "failed"] }),
            ),
        ];
        paging(&mut files.parameters);
        self.put("/ingest/files", |p| p.get = Some(files));
        let quarantined = self.json::<QuarantinePage>("Quarantined records, newest first");
        let mut quarantine = operation(
            "list_quarantine",
            "Quarantined records with the reason each was set aside",
            "ingest",
            responses(vec![(200, quarantined)], &list_errors),
        );
        quarantine.parameters = vec![
            filter(
                "source",
                "Only records of this source system",
                json!({ "type": "string" }),
            ),
            filter(
                "reason",
                "Only records with this reason code",
                json!({ "type": "string" }),
            ),
            filter(
                "resolved",
                "Also records a replay has since loaded",
                json!({ "type": "boolean", "default": false }),
            ),
        ];
        paging(&mut quarantine.parameters);
        self.put("/ingest/quarantine", |p| p.get = Some(quarantine));

        // Companies across systems: reviewing links and deciding (admin).
        let link_page = self.json::<LinkPage>("Links and decided pairs, proposals first");
        let mut links = operation(
            "list_links",
            "Links between organizations of different systems, with rule, score, reason and status",
            "companies",
            responses(vec![(200, link_page)], &list_errors),
        );
        links.parameters = vec![
            filter(
                "status",
                "Only pairs with this status",
                json!({ "type": "string", "enum": quarry_db::companies::STATUSES }),
            ),
            filter(
                "rule",
                "Only links made by this rule (or `manual`)",
                json!({ "type": "string" }),
            ),
            filter(
                "organization",
                "Only pairs one side of which is this organization",
                json!({ "type": "integer", "minimum": 1 }),
            ),
            filter(
                "company",
                "Only pairs touching this company",
                json!({ "type": "integer", "minimum": 1 }),
            ),
            filter(
                "limit",
                "Most pairs",
                json!({ "type": "integer", "minimum": 1, "maximum": crate::companies::MAX_LINKS, "default": 100 }),
            ),
        ];
        self.put("/admin/links", |p| p.get = Some(links));
        let decision_errors: Vec<(u16, &str)> = [
            AUTH,
            &[
                (400, "The body is not a decision (see `detail`)"),
                (404, "No such organization"),
                (409, "Nothing to split: the organization is alone in its company"),
                (413, "The body is too large"),
                (415, "The body is not JSON"),
                (422, "An impossible decision (one organization twice) or a note over 2,000 characters"),
                (503, "Database unavailable, or this server does not hold the writer role (the detail names the CLI)"),
            ],
        ]
        .concat();
        let decision_body = self.typed_in::<DecisionRequest>();
        for (verb, summary) in [
            (
                "confirm",
                "The two organizations are one company, whatever the rules say",
            ),
            (
                "reject",
                "The two organizations are different companies; no rule links them again",
            ),
        ] {
            let decided = self.json::<Decided>("Recorded; the companies after it");
            let mut op = operation(
                &format!("{verb}_link"),
                summary,
                "companies",
                responses(vec![(200, decided)], &decision_errors),
            );
            op.request_body = Some(ReferenceOr::Item(RequestBody {
                required: true,
                content: [("application/json".to_string(), media(decision_body.clone()))].into(),
                ..RequestBody::default()
            }));
            self.put(&format!("/admin/links/{verb}"), |p| p.post = Some(op));
        }
        let split_body = self.typed_in::<SplitRequest>();
        let decided = self.json::<Decided>("Recorded; the companies after it");
        let mut split = operation(
            "split_organization",
            "Take an organization out of its company (rejects its pairs with the other members)",
            "companies",
            responses(vec![(200, decided)], &decision_errors),
        );
        split.parameters = vec![path_param("id", "organizations.id")];
        split.request_body = Some(ReferenceOr::Item(RequestBody {
            required: false,
            content: [("application/json".to_string(), media(split_body))].into(),
            ..RequestBody::default()
        }));
        self.put("/admin/organizations/{id}/split", |p| p.post = Some(split));
        let view = self.json::<CompanyView>("The company");
        let company_errors: Vec<(u16, &str)> = [
            AUTH,
            &[
                (404, "No such company"),
                (422, "The id is not a positive whole number"),
                (503, "Database unavailable"),
            ],
        ]
        .concat();
        let mut company = operation(
            "show_company",
            "A company: golden values with their sources, members in every system, links",
            "companies",
            responses(vec![(200, view)], &company_errors),
        );
        company.parameters = vec![path_param("id", "companies.id")];
        self.put("/companies/{id}", |p| p.get = Some(company));

        let doc = response(
            "This document",
            &[(
                "application/json",
                schema_object(json!({ "type": "object" })),
            )],
        );
        let mut openapi = operation(
            "openapi",
            "This document",
            "service",
            responses(vec![(200, doc)], &[]),
        );
        openapi.security = open_access();
        self.put("/openapi.json", |p| p.get = Some(openapi));
    }

    /// The successful answers of a call: 200 with `answer` (the generic
    /// `Answer` when None), 202 when it runs as a job, 303 to a stored answer,
    /// 304 for a matching ETag.
    fn answer_responses(&mut self, answer: Option<SchemaObject>) -> Vec<(u16, Response)> {
        let answer = match answer {
            Some(a) => a,
            None => self.typed::<Answer>(),
        };
        let text = schema_object(json!({ "type": "string" }));
        let ok = with_headers(
            response(
                "The operation's answer, in the format Accept asks for: JSON (the default), \
                 NDJSON (one row per line) or CSV (a header row, then one line per row)",
                &[
                    ("application/json", answer),
                    ("application/x-ndjson", text.clone()),
                    ("text/csv", text),
                ],
            ),
            &[
                (
                    "ETag",
                    "The answer's cache key, for If-None-Match",
                    json!({ "type": "string" }),
                ),
                (
                    "X-Cache",
                    "hit or miss",
                    json!({ "type": "string", "enum": ["hit", "miss"] }),
                ),
                (
                    "Link",
                    "With page_size or cursor, and a page follows: <URL>; rel=\"next\"",
                    json!({ "type": "string" }),
                ),
                (
                    "X-Total-Count",
                    "With page_size or cursor: rows in the whole answer",
                    json!({ "type": "string" }),
                ),
            ],
        );
        let status = self.typed::<JobStatus>();
        let job = with_headers(
            response(
                "A heavy operation runs as a job; poll the Location",
                &[("application/json", status)],
            ),
            &[
                ("Location", "The job's status", json!({ "type": "string" })),
                (
                    "Retry-After",
                    "Seconds before polling",
                    json!({ "type": "string" }),
                ),
            ],
        );
        let stored = self.typed::<StoredAnswer>();
        let moved = with_headers(
            response(
                "An answer larger than api.sync_answer_bytes: stored, and at the expiring signed link in Location",
                &[("application/json", stored)],
            ),
            &[(
                "Location",
                "The expiring signed link",
                json!({ "type": "string" }),
            )],
        );
        let same = response("Not modified (If-None-Match matched the ETag)", &[]);
        vec![(200, ok), (202, job), (303, moved), (304, same)]
    }

    /// `GET` and `POST /analytics/CALL` for one pack, typed by its declarations.
    fn operation_paths(&mut self, packs: &PackSet, p: &Arc<Pack>) {
        let latest = packs
            .packs
            .get(&p.spec.name)
            .is_some_and(|l| Arc::ptr_eq(l, p));
        let call = if latest {
            p.spec.name.clone()
        } else {
            p.versioned_name()
        };
        let type_name = pascal(&call);
        // The parameters object (the POST body, and each job's `parameters`).
        let params_name = format!("{type_name}Parameters");
        let mut params = params_json_schema(&p.spec);
        params["title"] = json!(params_name);
        self.pack_schemas.insert(params_name.clone(), params);
        // The rows, from the declared columns.
        let answer = if p.spec.columns.is_empty() {
            None
        } else {
            let row_name = format!("{type_name}Row");
            let props: Map<String, Value> = p
                .spec
                .columns
                .iter()
                .map(|c| (c.name.clone(), column_schema(c.kind, &c.description)))
                .collect();
            self.pack_schemas.insert(
                row_name.clone(),
                json!({
                    "title": row_name,
                    "description": format!("One row of {call}'s answer."),
                    "type": "object",
                    "properties": props,
                }),
            );
            let answer_name = format!("{type_name}Answer");
            let mut a = self.answer_schema();
            a["title"] = json!(answer_name);
            a["properties"]["rows"]["items"] = json!({ "$ref": format!("{SCHEMAS}{row_name}") });
            self.pack_schemas.insert(answer_name.clone(), a);
            Some(reference(&answer_name))
        };
        let description = format!(
            "{}\n\nVersion {}, {} (cost class; heavy operations answer 202 with a job), cache TTL {} s, at most {} rows.",
            p.spec.description.trim(),
            p.spec.version,
            match p.spec.cost {
                quarry_core::packs::pack::CostClass::Light => "light",
                quarry_core::packs::pack::CostClass::Heavy => "heavy",
            },
            p.spec.cache_ttl_seconds,
            p.spec.max_rows,
        );
        let deprecated = p.spec.deprecation.is_some();
        let mut get = operation(
            &format!("run_{}", snake(&call)),
            &p.spec.title,
            "operations",
            responses(self.answer_responses(answer.clone()), RUN_ERRORS),
        );
        get.description = Some(description.clone());
        get.deprecated = deprecated;
        get.parameters = p
            .spec
            .parameters
            .iter()
            .map(|(name, spec)| {
                let list = matches!(spec.kind, ParamType::StringList | ParamType::IntegerList);
                let mut schema = param_json_schema(spec);
                let description = schema
                    .as_object_mut()
                    .and_then(|o| o.remove("description"))
                    .and_then(|d| d.as_str().map(str::to_string))
                    .unwrap_or_default();
                query_param(
                    name,
                    &if list {
                        format!("{description} (comma separated)")
                    } else {
                        description
                    },
                    spec.default.is_none(),
                    schema,
                    QueryStyle::Form,
                    list.then_some(false),
                )
            })
            .collect();
        get.parameters.extend(paging_params(self.max_page_size));
        let mut post = operation(
            &format!("run_{}_post", snake(&call)),
            &p.spec.title,
            "operations",
            responses(self.answer_responses(answer), RUN_ERRORS),
        );
        post.description = Some(description);
        post.deprecated = deprecated;
        post.parameters = paging_params(self.max_page_size);
        post.request_body = Some(ReferenceOr::Item(RequestBody {
            description: Some("The parameters; omitted ones take their defaults.".into()),
            required: true,
            content: [(
                "application/json".to_string(),
                media(reference(&params_name)),
            )]
            .into(),
            ..RequestBody::default()
        }));
        self.put(&format!("/analytics/{call}"), |item| {
            item.get = Some(get);
            item.post = Some(post);
        });
        // This operation's form of the generic request body.
        let mut call_as = vec![call.clone()];
        if latest {
            call_as.push(p.versioned_name());
        }
        self.requests.push(json!({
            "type": "object",
            "title": format!("{type_name}Request"),
            "description": p.spec.title,
            "properties": {
                "operation": { "type": "string", "enum": call_as },
                "parameters": { "$ref": format!("{SCHEMAS}{params_name}") },
                "format": { "$ref": format!("{SCHEMAS}ResultFormat") },
            },
            "required": ["operation"],
            "additionalProperties": false,
        }));
    }

    /// The generic answer's schema, as generated from `Answer`.
    fn answer_schema(&mut self) -> Value {
        let _ = self.gen.subschema_for::<Answer>();
        self.gen
            .definitions()
            .get("Answer")
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn finish(mut self) -> Value {
        let event = self.typed::<Event>();
        let _ = self.typed::<Problem>();
        let _ = self.typed::<quarry_core::jobs::ResultFormat>();
        let mut schemas: IndexMap<String, SchemaObject> = self
            .gen_in
            .take_definitions(true)
            .into_iter()
            .chain(self.gen.take_definitions(true))
            .map(|(k, v)| (k, schema_object(v)))
            .collect();
        for (k, v) in std::mem::take(&mut self.pack_schemas) {
            schemas.insert(k, schema_object(v));
        }
        // The request body names its operation: one form per callable operation.
        if let Some(req) = schemas.get_mut("AnalyticsRequest") {
            let mut v = req.json_schema.clone().to_value();
            v["oneOf"] = Value::Array(std::mem::take(&mut self.requests));
            let run = run_request(&v);
            *req = schema_object(v);
            schemas.insert("RunRequest".into(), schema_object(run));
        }
        let mut webhook = operation(
            "job_event",
            "A job finished, or a system error happened (same payload on SNS on AWS)",
            "jobs",
            Responses {
                responses: [(
                    StatusCode::Code(200),
                    ReferenceOr::Item(response("Received", &[])),
                )]
                .into(),
                ..Responses::default()
            },
        );
        webhook.description = Some(
            "Sent to every configured webhook with Content-Type application/cloudevents+json; \
             X-Quarry-Signature carries sha256=HMAC of the body when a webhook secret is set. \
             Retried with backoff; deduplicate on `id`."
                .into(),
        );
        webhook.request_body = Some(ReferenceOr::Item(RequestBody {
            required: true,
            content: [("application/cloudevents+json".to_string(), media(event))].into(),
            ..RequestBody::default()
        }));
        let security_schemes: IndexMap<String, ReferenceOr<SecurityScheme>> = [
            (
                "bearer".to_string(),
                ReferenceOr::Item(SecurityScheme::Http {
                    scheme: "bearer".into(),
                    bearer_format: None,
                    description: Some(
                        "An API key qk_<id>_<secret> from `quarry keys create`".into(),
                    ),
                    extensions: IndexMap::new(),
                }),
            ),
            (
                "apiKey".to_string(),
                ReferenceOr::Item(SecurityScheme::ApiKey {
                    location: aide::openapi::ApiKeyLocation::Header,
                    name: "X-Api-Key".into(),
                    description: Some("The same key in a header of its own".into()),
                    extensions: IndexMap::new(),
                }),
            ),
        ]
        .into();
        let requirement =
            |name: &str| -> SecurityRequirement { [(name.to_string(), Vec::new())].into() };
        let tags = [
            (
                "operations",
                "Each operation with typed parameters and rows",
            ),
            ("analytics", "Any operation by name"),
            ("jobs", "Asynchronous runs and their results"),
            ("catalog", "What can be called"),
            ("ingest", "The ingest ledger and the quarantine"),
            (
                "companies",
                "One customer across systems: links, decisions, companies",
            ),
            ("service", "Health, metrics and this document"),
        ]
        .iter()
        .map(|(name, d)| Tag {
            name: (*name).into(),
            description: Some((*d).into()),
            ..Tag::default()
        })
        .collect();
        let api = OpenApi {
            openapi: "3.1.0".into(),
            info: Info {
                title: "Quarry API".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: Some(
                    "Declarative analytics operations over the canonical model. Errors are \
                     RFC 9457 problem documents. Light operations answer synchronously; heavy \
                     ones run as jobs. Without API keys (loopback only) no credentials are needed."
                        .into(),
                ),
                license: Some(aide::openapi::License {
                    name: "Apache-2.0".into(),
                    identifier: Some(env!("CARGO_PKG_LICENSE").into()),
                    ..aide::openapi::License::default()
                }),
                contact: Some(aide::openapi::Contact {
                    name: Some("The operators of this Quarry server".into()),
                    ..aide::openapi::Contact::default()
                }),
                ..Info::default()
            },
            servers: vec![aide::openapi::Server {
                url: "/".into(),
                description: Some("This server".into()),
                ..aide::openapi::Server::default()
            }],
            security: vec![
                requirement("bearer"),
                requirement("apiKey"),
                SecurityRequirement::new(),
            ],
            paths: Some(Paths {
                paths: std::mem::take(&mut self.paths),
                extensions: IndexMap::new(),
            }),
            webhooks: [(
                "job_event".to_string(),
                ReferenceOr::Item(PathItem {
                    post: Some(webhook),
                    ..PathItem::default()
                }),
            )]
            .into(),
            components: Some(Components {
                schemas,
                security_schemes,
                ..Components::default()
            }),
            tags,
            ..OpenApi::default()
        };
        let mut doc = serde_json::to_value(&api).unwrap_or(Value::Null);
        if let Some(schemas) = doc.pointer_mut("/components/schemas") {
            no_boolean_subschemas(schemas);
            consts_as_enums(schemas);
        }
        doc
    }
}

/// `true` as a subschema ("anything", what schemars gives a `serde_json::Value`)
/// becomes `{}`, which means the same: some generators (openapi-python-client)
/// accept only object schemas there.
fn no_boolean_subschemas(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                match k.as_str() {
                    "properties" | "$defs" | "patternProperties" => {
                        if let Value::Object(props) = child {
                            for p in props.values_mut() {
                                if *p == Value::Bool(true) {
                                    *p = json!({});
                                }
                            }
                        }
                    }
                    "items" if *child == Value::Bool(true) => *child = json!({}),
                    _ => {}
                }
                no_boolean_subschemas(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(no_boolean_subschemas),
        _ => {}
    }
}

/// `RunRequest`, the body of the synchronous `POST /analytics`: the job
/// request without `format` (there `Accept` chooses, and `format` is refused),
/// each form titled apart so generators make distinct types.
fn run_request(job_request: &Value) -> Value {
    let mut v = job_request.clone();
    if let Some(p) = v.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("format");
    }
    v["title"] = json!("RunRequest");
    v["description"] =
        json!("An operation and its parameters, answered at once (Accept chooses the format).");
    if let Some(forms) = v.get_mut("oneOf").and_then(Value::as_array_mut) {
        for f in forms {
            if let Some(p) = f.get_mut("properties").and_then(Value::as_object_mut) {
                p.remove("format");
            }
            if let Some(t) = f.get("title").and_then(Value::as_str) {
                f["title"] = json!(format!("{}Run", t));
            }
        }
    }
    v
}

/// A `oneOf` of documented constants (what schemars makes of an enum whose
/// variants have doc comments) becomes a plain `enum`, with each value's
/// description kept in the schema's own: generators (openapi-python-client,
/// openapi-typescript) turn a plain `enum` into a proper enum type.
fn consts_as_enums(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let consts: Option<Vec<(Value, Option<String>)>> =
                m.get("oneOf").and_then(Value::as_array).and_then(|alts| {
                    alts.iter()
                        .map(|a| {
                            let o = a.as_object()?;
                            let c = o.get("const")?.clone();
                            let extra = o
                                .keys()
                                .any(|k| !matches!(k.as_str(), "const" | "description" | "type"));
                            (!extra).then(|| {
                                (
                                    c,
                                    o.get("description")
                                        .and_then(Value::as_str)
                                        .map(str::to_string),
                                )
                            })
                        })
                        .collect()
                });
            if let Some(consts) = consts.filter(|c| !c.is_empty()) {
                m.remove("oneOf");
                let all_strings = consts.iter().all(|(c, _)| c.is_string());
                if all_strings {
                    m.insert("type".into(), json!("string"));
                }
                let notes: Vec<String> = consts
                    .iter()
                    .filter_map(|(c, d)| d.as_ref().map(|d| format!("- `{}`: {d}", text_of(c))))
                    .collect();
                m.insert(
                    "enum".into(),
                    Value::Array(consts.into_iter().map(|(c, _)| c).collect()),
                );
                if !notes.is_empty() {
                    let own = m
                        .get("description")
                        .and_then(Value::as_str)
                        .map(|d| format!("{d}\n\n"))
                        .unwrap_or_default();
                    m.insert(
                        "description".into(),
                        json!(format!("{own}{}", notes.join("\n"))),
                    );
                }
            }
            m.values_mut().for_each(consts_as_enums);
        }
        Value::Array(a) => a.iter_mut().for_each(consts_as_enums),
        _ => {}
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
