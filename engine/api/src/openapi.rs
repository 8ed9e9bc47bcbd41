//! `GET /openapi.json`: OpenAPI 3.1, built from the request types the handlers
//! parse (schemars), the pack set currently loaded (every operation's parameters
//! as JSON Schema) and the problem document every error uses.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use quarry_core::jobs::Event;
use quarry_core::params::params_json_schema;
use quarry_core::PackSet;
use serde_json::{json, Map, Value};

use crate::analytics::AnalyticsRequest;
use crate::AppState;

pub async fn handler(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(document(&st.packs()))
}

/// The JSON Schema of `T`, its nested definitions moved into `components` so
/// that every `$ref` resolves inside the OpenAPI document.
fn schema_of<T: schemars::JsonSchema>(components: &mut Map<String, Value>) -> Value {
    let mut v = schemars::schema_for!(T).to_value();
    let rewrite = |v: &Value| -> Value {
        let text = v.to_string().replace("#/$defs/", "#/components/schemas/");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        if let Some(Value::Object(defs)) = o.remove("$defs") {
            for (name, def) in defs {
                components.insert(name, rewrite(&def));
            }
        }
    }
    rewrite(&v)
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn with_errors(mut ok: Map<String, Value>, codes: &[(&str, &str)]) -> Value {
    for (code, desc) in codes {
        ok.insert((*code).into(), problem_response(desc));
    }
    ok.insert(
        "default".into(),
        problem_response("Any other error, as a problem document"),
    );
    Value::Object(ok)
}

const AUTH_ERRORS: &[(&str, &str)] = &[
    ("401", "Missing or invalid API key"),
    ("403", "The key lacks the scope this needs"),
    ("429", "Rate limited; see Retry-After"),
];

fn retry_after() -> Value {
    json!({ "description": "Seconds to wait before asking again", "schema": { "type": "string" } })
}

/// The document for `packs`.
pub fn document(packs: &PackSet) -> Value {
    let names: Vec<String> = packs.call_names();
    let per_op: Vec<Value> = packs
        .all()
        .map(|p| {
            // The latest version answers to its name and name@MAJOR; an older one to name@MAJOR.
            let latest = packs
                .packs
                .get(&p.spec.name)
                .is_some_and(|l| std::sync::Arc::ptr_eq(l, p));
            let call: Vec<String> = if latest {
                vec![p.spec.name.clone(), p.versioned_name()]
            } else {
                vec![p.versioned_name()]
            };
            json!({
                "type": "object",
                "title": p.versioned_name(),
                "description": p.spec.description,
                "deprecated": p.spec.deprecation.is_some(),
                "properties": {
                    "operation": { "enum": call },
                    "parameters": params_json_schema(&p.spec),
                    "format": { "$ref": "#/components/schemas/ResultFormat" },
                },
                "required": ["operation"],
                "additionalProperties": false,
            })
        })
        .collect();
    let mut components = Map::new();
    let mut request = schema_of::<AnalyticsRequest>(&mut components);
    let event = schema_of::<Event>(&mut components);
    request["oneOf"] = Value::Array(per_op);
    let auth = json!([{ "bearer": [] }, { "apiKey": [] }, {}]);
    let operation_param = json!({
        "name": "operation", "in": "query", "required": true,
        "description": "The operation's name. Its parameters are further query parameters, by name (see GET /operations/{name}).",
        "schema": { "type": "string", "enum": names },
    });
    let job_id = json!({
        "name": "id", "in": "path", "required": true,
        "description": "The job id returned by POST /analytics/jobs.",
        "schema": { "type": "string" },
    });
    let answer_ok = |desc: &str| {
        json!({
            "description": desc,
            "headers": {
                "ETag": { "schema": { "type": "string" } },
                "X-Cache": { "description": "hit or miss", "schema": { "type": "string", "enum": ["hit", "miss"] } },
            },
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Answer" } } },
        })
    };
    let accepted = json!({
        "description": "A heavy operation runs as a job; poll the Location",
        "headers": { "Location": { "schema": { "type": "string" } }, "Retry-After": retry_after() },
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobStatus" } } },
    });
    let analytics_errors: &[(&str, &str)] = &[
        (
            "400",
            "Unknown operation, malformed request, or an SQL error in caller SQL",
        ),
        ("401", "Missing or invalid API key"),
        (
            "403",
            "The key lacks the scope this needs, or custom SQL is disabled",
        ),
        ("408", "The request body did not arrive within api.body_read_timeout_seconds"),
        ("413", "Body too large"),
        ("414", "Query string too long"),
        (
            "422",
            "Missing or invalid parameters (see `errors`), or the answer passed api.max_answer_bytes",
        ),
        ("429", "Rate limited; see Retry-After"),
        ("503", "Database unavailable"),
        ("504", "The query ran past its timeout"),
    ];
    let mut get_ok = Map::new();
    get_ok.insert("200".into(), answer_ok("The operation's answer"));
    get_ok.insert("202".into(), accepted.clone());
    get_ok.insert(
        "303".into(),
        json!({
            "description": "An answer larger than api.sync_answer_bytes: stored, and at the expiring signed link in Location (the body says so)",
            "headers": { "Location": { "schema": { "type": "string" } } },
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["stored", "bytes", "result_url", "expires_in_seconds"],
                "properties": {
                    "stored": { "type": "boolean" },
                    "bytes": { "type": "integer", "minimum": 0 },
                    "result_url": { "type": "string" },
                    "expires_in_seconds": { "type": "integer", "minimum": 0 },
                    "detail": { "type": "string" }
                }
            } } },
        }),
    );
    get_ok.insert(
        "304".into(),
        json!({ "description": "Not modified (If-None-Match matched the ETag)" }),
    );
    let mut submit_ok = Map::new();
    submit_ok.insert(
        "202".into(),
        json!({
            "description": "The job is queued",
            "headers": { "Location": { "schema": { "type": "string" } }, "Retry-After": retry_after() },
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobStatus" } } },
        }),
    );
    let mut status_ok = Map::new();
    status_ok.insert(
        "200".into(),
        json!({
            "description": "The job's state, timings, attempts, error and result link",
            "headers": { "Retry-After": retry_after() },
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobStatus" } } },
        }),
    );
    let mut result_ok = Map::new();
    result_ok.insert(
        "200".into(),
        json!({
            "description": "A small result, inline, in the job's format",
            "content": {
                "application/json": { "schema": { "$ref": "#/components/schemas/Answer" } },
                "application/x-ndjson": { "schema": { "type": "string" } },
                "text/csv": { "schema": { "type": "string" } },
            },
        }),
    );
    result_ok.insert(
        "303".into(),
        json!({ "description": "A large result: see the expiring signed link in Location",
                "headers": { "Location": { "schema": { "type": "string" } } } }),
    );
    let job_errors: Vec<(&str, &str)> = AUTH_ERRORS
        .iter()
        .copied()
        .chain([
            ("404", "No such job (or not yours)"),
            ("409", "The job has not succeeded (yet)"),
            ("503", "Job store unavailable"),
        ])
        .collect();
    let mut ops_ok = Map::new();
    ops_ok.insert(
        "200".into(),
        json!({ "description": "Every operation", "content": { "application/json": { "schema": {
            "type": "object", "required": ["operations"],
            "properties": { "operations": { "type": "array", "items": { "$ref": "#/components/schemas/Operation" } } } } } } }),
    );
    let mut op_ok = Map::new();
    op_ok.insert(
        "200".into(),
        json!({ "description": "One operation", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Operation" } } } }),
    );
    let mut health_ok = Map::new();
    health_ok.insert(
        "200".into(),
        json!({ "description": "Database reachable", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } }),
    );
    health_ok.insert(
        "503".into(),
        json!({ "description": "Database unreachable", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } }),
    );
    let mut metrics_ok = Map::new();
    metrics_ok.insert(
        "200".into(),
        json!({ "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } }),
    );
    let mut openapi_ok = Map::new();
    openapi_ok.insert(
        "200".into(),
        json!({ "description": "This document", "content": { "application/json": { "schema": { "type": "object" } } } }),
    );
    let body = json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/AnalyticsRequest" } } },
    });
    let op_errors: Vec<(&str, &str)> = AUTH_ERRORS
        .iter()
        .copied()
        .chain([("404", "No such operation")])
        .collect();
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Quarry API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Declarative analytics operations over the canonical model. Errors are RFC 9457 problem documents. \
                Light operations answer synchronously; heavy ones run as jobs.",
        },
        "security": auth,
        "paths": {
            "/health": { "get": { "operationId": "health", "summary": "Liveness and database reachability", "security": [],
                "responses": with_errors(health_ok, &[]) } },
            "/operations": { "get": { "operationId": "listOperations", "summary": "The operation catalog",
                "responses": with_errors(ops_ok, AUTH_ERRORS) } },
            "/operations/{name}": { "get": { "operationId": "getOperation", "summary": "One operation with its parameters",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with_errors(op_ok, &op_errors) } },
            "/analytics": {
                "get": { "operationId": "runOperationGet", "summary": "Run an operation (parameters in the query string)",
                    "parameters": [operation_param],
                    "responses": with_errors(get_ok.clone(), analytics_errors) },
                "post": { "operationId": "runOperation", "summary": "Run an operation (parameters in a JSON body)",
                    "requestBody": body.clone(),
                    "responses": with_errors(get_ok, analytics_errors) },
            },
            "/analytics/jobs": { "post": { "operationId": "submitJob", "summary": "Run any operation as an asynchronous job",
                "requestBody": body,
                "responses": with_errors(submit_ok, analytics_errors) } },
            "/analytics/jobs/{id}": { "get": { "operationId": "getJob", "summary": "A job's state",
                "parameters": [job_id.clone()],
                "responses": with_errors(status_ok, &job_errors) } },
            "/analytics/jobs/{id}/result": { "get": { "operationId": "getJobResult", "summary": "A job's result (inline or a redirect to a signed link)",
                "parameters": [job_id],
                "responses": with_errors(result_ok, &job_errors) } },
            "/metrics": { "get": { "operationId": "metrics", "summary": "Prometheus metrics",
                "responses": with_errors(metrics_ok, AUTH_ERRORS) } },
            "/openapi.json": { "get": { "operationId": "openapi", "summary": "This document", "security": [],
                "responses": with_errors(openapi_ok, &[]) } },
        },
        "webhooks": {
            "jobEvent": { "post": {
                "summary": "A job finished, or a system error happened (same payload on SNS on AWS)",
                "description": "Sent to every configured webhook with Content-Type application/cloudevents+json; \
                    X-Quarry-Signature carries sha256=HMAC of the body when a webhook secret is set. Retried with backoff; deduplicate on `id`.",
                "requestBody": { "content": { "application/cloudevents+json": { "schema": { "$ref": "#/components/schemas/Event" } } } },
                "responses": { "200": { "description": "Received" } },
            } }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API key qk_<id>_<secret> from `quarry keys create`" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-Api-Key" },
            },
            "schemas": {
                "AnalyticsRequest": request,
                "ResultFormat": { "type": "string", "enum": ["json", "ndjson", "csv"] },
                "Event": event,
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": { "type": "string" },
                        "title": { "type": "string" },
                        "status": { "type": "integer" },
                        "detail": { "type": "string" },
                        "instance": { "type": "string" },
                        "errors": { "type": "array", "items": { "type": "object",
                            "required": ["parameter", "message"],
                            "properties": { "parameter": { "type": "string" }, "message": { "type": "string" } } } },
                    },
                },
                "Answer": {
                    "type": "object",
                    "required": ["operation", "version", "parameters", "data_version", "columns", "row_count", "truncated", "rows"],
                    "properties": {
                        "operation": { "type": "string" },
                        "version": { "type": "string" },
                        "parameters": { "type": "object" },
                        "data_version": { "type": "integer" },
                        "columns": { "type": "array", "items": { "type": "object", "required": ["name", "pg_type"],
                            "properties": { "name": { "type": "string" }, "pg_type": { "type": "string" } } } },
                        "row_count": { "type": "integer", "minimum": 0 },
                        "truncated": { "type": "boolean" },
                        "elapsed_ms": { "type": "integer" },
                        "rows": { "type": "array", "items": { "type": "object" } },
                    },
                },
                "JobStatus": {
                    "type": "object",
                    "required": ["job_id", "operation", "state", "attempts", "max_attempts", "submitted_at", "links"],
                    "properties": {
                        "job_id": { "type": "string" },
                        "operation": { "type": "string" },
                        "operation_version": { "type": "string" },
                        "parameters": { "type": "object" },
                        "state": { "type": "string", "enum": ["queued", "running", "succeeded", "failed"] },
                        "attempts": { "type": "integer" },
                        "max_attempts": { "type": "integer" },
                        "submitted_at": { "type": "string", "format": "date-time" },
                        "started_at": { "type": ["string", "null"], "format": "date-time" },
                        "finished_at": { "type": ["string", "null"], "format": "date-time" },
                        "duration_ms": { "type": ["integer", "null"] },
                        "next_attempt_at": { "type": ["string", "null"], "format": "date-time" },
                        "error": { "type": ["object", "null"], "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" }, "transient": { "type": "boolean" } } },
                        "result": { "type": ["object", "null"] },
                        "links": { "type": "object", "required": ["self"], "properties": {
                            "self": { "type": "string" }, "result": { "type": "string" } } },
                        "message": { "type": "string" },
                    },
                },
                "Operation": {
                    "type": "object",
                    "required": ["name", "version", "title", "description", "cost", "timeout_seconds", "cache_ttl_seconds", "max_rows", "parameters"],
                    "properties": {
                        "name": { "type": "string" },
                        "version": { "type": "string" },
                        "title": { "type": "string" },
                        "description": { "type": "string" },
                        "cost": { "type": "string", "enum": ["light", "heavy"] },
                        "timeout_seconds": { "type": "integer" },
                        "cache_ttl_seconds": { "type": "integer" },
                        "max_rows": { "type": "integer" },
                        "parameters": { "type": "object", "description": "JSON Schema of the parameters" },
                        "columns": { "type": ["array", "null"] },
                        "tags": { "type": ["array", "null"] },
                        "call_as": { "type": "string", "description": "name@MAJOR: calls exactly this version (without @, the latest is called)" },
                        "deprecation": {
                            "type": ["object", "null"],
                            "properties": {
                                "since": { "type": "string", "format": "date" },
                                "sunset": { "type": "string", "format": "date" },
                                "link": { "type": "string" },
                            },
                        },
                        "constraints": {
                            "type": "array",
                            "description": "Ranges between parameters: `from` must not be after `to` when both are given (else 422 naming both).",
                            "items": {
                                "type": "object",
                                "required": ["from", "to"],
                                "properties": { "from": { "type": "string" }, "to": { "type": "string" } },
                            },
                        },
                        "requires_scope": { "type": "string" },
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "database", "operations", "version"],
                    "properties": {
                        "status": { "type": "string", "enum": ["ok", "degraded"] },
                        "database": { "type": "string", "enum": ["reachable", "unreachable"] },
                        "data_version": { "type": ["integer", "null"] },
                        "operations": { "type": "integer" },
                        "reload": {
                            "description": "The last reload of the query packs: a rejected one leaves the previous packs serving.",
                            "type": "object",
                            "required": ["status", "problems"],
                            "properties": {
                                "status": { "type": "string", "enum": ["none", "applied", "rejected"] },
                                "at": { "type": "string", "format": "date-time" },
                                "problems": { "type": "integer", "minimum": 0 },
                                "first_problem": { "type": "string", "description": "file:line:column of the first problem; `quarry check` lists them all" },
                            },
                        },
                        "version": { "type": "string" },
                    },
                },
            },
        },
    });
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (k, v) in components {
            schemas.entry(k).or_insert(v);
        }
    }
    doc
}
