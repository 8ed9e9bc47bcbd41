//! The web catalog at `/`: server-rendered pages (minijinja, the engine's
//! template language) over the loaded packs and the database's own data
//! dictionary, with every asset compiled into the binary, so it works with no
//! internet. The pages themselves hold only what `/openapi.json` already tells
//! anyone (operations, parameters, columns) and the schema's comments, so they
//! are public; everything with data in it (answers, jobs, the ingest ledger, the
//! quarantine) is fetched by the page's script from the JSON API with the API key
//! the user entered, which the browser keeps in `sessionStorage` for the session.
//!
//! Assets: `ui/app.js` and `ui/app.css` are ours; `ui/vendor/` holds Redoc and
//! Chart.js exactly as published on npm (versions and digests in
//! `ui/vendor/SOURCES.md`, checked by `scripts/vendor-ui.sh --check`).

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Environment};
use quarry_core::packs::pack::{CostClass, ParamSpec, ParamType};
use quarry_core::Pack;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// One embedded asset.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/app.css"),
    },
    Asset {
        name: "redoc.standalone.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/vendor/redoc.standalone.js"),
    },
    Asset {
        name: "chart.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/vendor/chart.umd.min.js"),
    },
];

/// A digest over every asset: the `?v=` of asset links and their ETag, so a new
/// binary's pages never run with an old script from the browser cache.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for a in ASSETS {
        h.update(a.name.as_bytes());
        h.update(a.body);
    }
    hex::encode(&h.finalize()[..6])
});

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Names end in .html, so minijinja escapes every value for HTML.
    for (name, src) in [
        ("base.html", include_str!("../ui/templates/base.html")),
        ("catalog.html", include_str!("../ui/templates/catalog.html")),
        (
            "operation.html",
            include_str!("../ui/templates/operation.html"),
        ),
        ("ingest.html", include_str!("../ui/templates/ingest.html")),
        (
            "companies.html",
            include_str!("../ui/templates/companies.html"),
        ),
        ("schema.html", include_str!("../ui/templates/schema.html")),
        ("api.html", include_str!("../ui/templates/api.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            // The templates are compiled in; the unit test below renders each.
            tracing::error!(template = name, error = %e, "a web catalog template does not parse");
        }
    }
    env
});

/// The catalog's routes (public: see the module comment).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(catalog))
        .route("/ui", get(|| async { redirect("/") }))
        .route("/ui/operations/{name}", get(operation))
        .route("/ui/ingest", get(ingest))
        .route("/ui/companies", get(companies))
        .route("/ui/schema", get(schema))
        .route("/ui/api", get(api_reference))
        .route("/ui/assets/{file}", get(asset))
}

/// True for the paths this module serves (they need no key).
pub fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response()
}

/// A rendered page with the headers every page carries: a content security
/// policy allowing only this origin's scripts (Redoc and Chart.js need inline
/// styles, Redoc a worker from a blob), no framing, no sniffing.
fn page(template: &str, ctx: minijinja::Value) -> Response {
    let body = TEMPLATES.get_template(template).and_then(|t| t.render(ctx));
    match body {
        Ok(html) => {
            let mut r = Html(html).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                     img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; \
                     font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                ),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => {
            ApiError::Internal(anyhow::anyhow!("rendering {template}: {e:#}")).into_response()
        }
    }
}

fn base_ctx(page_name: &str) -> minijinja::Value {
    context! {
        page => page_name,
        version => env!("CARGO_PKG_VERSION"),
        asset_version => ASSET_VERSION.as_str(),
    }
}

#[derive(Serialize)]
struct ColumnView {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    description: String,
}

#[derive(Serialize)]
struct OpView {
    name: String,
    /// What to call it by (`name`, or `name@MAJOR` for an older major).
    call: String,
    version: String,
    title: String,
    description: String,
    cost: &'static str,
    cost_hint: &'static str,
    tags: Vec<String>,
    columns: Vec<ColumnView>,
    params: Vec<String>,
    deprecated: Option<String>,
}

impl OpView {
    fn of(p: &Pack, call: String) -> OpView {
        let (cost, cost_hint) = match p.spec.cost {
            CostClass::Light => ("light", "answers at once"),
            CostClass::Heavy => ("heavy", "runs as a job; the page follows it"),
        };
        OpView {
            name: p.spec.name.clone(),
            call,
            version: p.spec.version.clone(),
            title: p.spec.title.clone(),
            description: p.spec.description.trim().to_owned(),
            cost,
            cost_hint,
            tags: p.spec.tags.clone(),
            columns: p
                .spec
                .columns
                .iter()
                .map(|c| ColumnView {
                    name: c.name.clone(),
                    kind: c.kind.as_str(),
                    description: c.description.clone(),
                })
                .collect(),
            params: p.spec.parameters.keys().cloned().collect(),
            deprecated: p.spec.deprecation.as_ref().map(|d| {
                let mut s = format!("since {}", d.since);
                if let Some(sunset) = d.sunset {
                    s.push_str(&format!(", served until {sunset}"));
                }
                if let Some(link) = &d.link {
                    s.push_str(&format!("; see {link}"));
                }
                s
            }),
        }
    }
}

/// One form field, derived from a parameter's declaration.
#[derive(Serialize)]
struct FieldView {
    name: String,
    kind: &'static str,
    /// select, multiselect, number, date, text or textarea.
    input: &'static str,
    description: String,
    options: Vec<String>,
    /// The default as the input shows it ("" for none).
    default: String,
    default_list: Vec<String>,
    required: bool,
    min: Option<f64>,
    max: Option<f64>,
    step: Option<&'static str>,
    placeholder: Option<&'static str>,
    hint: Option<String>,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn field(name: &str, p: &ParamSpec) -> FieldView {
    let options: Vec<String> = p
        .allowed
        .as_ref()
        .map(|a| a.iter().map(text_of).collect())
        .unwrap_or_default();
    let default_list: Vec<String> = match &p.default {
        Some(Value::Array(items)) => items.iter().map(text_of).collect(),
        _ => Vec::new(),
    };
    let list = matches!(p.kind, ParamType::StringList | ParamType::IntegerList);
    let default = match &p.default {
        Some(Value::Array(_)) => default_list.join(", "),
        Some(v) => text_of(v),
        None => String::new(),
    };
    let (input, step, placeholder) = match p.kind {
        ParamType::Boolean => ("select", None, None),
        _ if list && !options.is_empty() => ("multiselect", None, None),
        _ if !options.is_empty() => ("select", None, None),
        ParamType::Integer => ("number", Some("1"), None),
        ParamType::Number => ("number", Some("any"), None),
        ParamType::Date => ("date", None, None),
        ParamType::Timestamp => ("text", None, Some("2024-01-31T00:00:00Z")),
        ParamType::Interval => ("text", None, Some("3 months")),
        ParamType::StringList => ("text", None, Some("a, b, c")),
        ParamType::IntegerList => ("text", None, Some("1, 2, 3")),
        ParamType::Sql => ("textarea", None, None),
        ParamType::String | ParamType::Identifier => ("text", None, None),
    };
    let options = if p.kind == ParamType::Boolean {
        vec!["true".into(), "false".into()]
    } else {
        options
    };
    let mut hints = Vec::new();
    if list && options.is_empty() {
        hints.push("comma-separated".to_owned());
    }
    if let Some(n) = p.max_items.filter(|_| list) {
        hints.push(format!("at most {n} items"));
    }
    if let Some(pattern) = &p.pattern {
        hints.push(format!("matches {pattern}"));
    }
    FieldView {
        name: name.to_owned(),
        kind: p.kind.as_str(),
        input,
        description: p.description.trim().to_owned(),
        options,
        default,
        default_list,
        required: p.default.is_none(),
        min: p.minimum,
        max: p.maximum,
        step,
        placeholder,
        hint: (!hints.is_empty()).then(|| hints.join(", ")),
    }
}

async fn catalog(State(st): State<Arc<AppState>>) -> Response {
    let packs = st.packs();
    let mut ops: Vec<OpView> = packs
        .names()
        .into_iter()
        .filter_map(|n| packs.get(n))
        .map(|p| OpView::of(p, p.spec.name.clone()))
        .collect();
    // Older majors still served, after the latest ones.
    ops.extend(
        packs
            .all()
            .filter(|p| {
                packs
                    .get(&p.spec.name)
                    .map(|l| l.spec.version != p.spec.version)
                    == Some(true)
            })
            .map(|p| OpView::of(p, p.versioned_name())),
    );
    page(
        "catalog.html",
        context! { operations => ops, ..base_ctx("catalog") },
    )
}

async fn operation(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let packs = st.packs();
    let Some(p) = packs.get(&name) else {
        return ApiError::NotFound(format!(
            "there is no operation `{}`; the catalog at / lists them",
            name.chars().take(80).collect::<String>()
        ))
        .into_response();
    };
    let call = if name.contains('@') {
        p.versioned_name()
    } else {
        p.spec.name.clone()
    };
    let fields: Vec<FieldView> = p
        .spec
        .parameters
        .iter()
        .map(|(n, spec)| field(n, spec))
        .collect();
    let columns: Vec<(String, &'static str)> = p
        .spec
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.kind.as_str()))
        .collect();
    // Inside <script type="application/json">: `<` escaped so no value can end the element.
    let columns_json = serde_json::to_string(&columns)
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c");
    let ctx = context! {
        op => OpView::of(p, call),
        fields => fields,
        columns_json => columns_json,
        max_page_size => st.config.api.max_page_size,
        ..base_ctx("operation")
    };
    page("operation.html", ctx)
}

async fn ingest() -> Response {
    page("ingest.html", base_ctx("ingest"))
}

async fn companies() -> Response {
    page("companies.html", base_ctx("companies"))
}

async fn api_reference() -> Response {
    page("api.html", base_ctx("api"))
}

/// The data dictionary, read from the database's comments once and kept (the
/// schema changes only with a migration, which a restart follows).
async fn schema(State(st): State<Arc<AppState>>) -> Response {
    let tables = st
        .dictionary
        .get_or_try_init(|| async {
            let client = st
                .reader
                .get()
                .await
                .map_err(|e| anyhow::anyhow!("no database connection: {e}"))?;
            quarry_db::docs::dictionary(&client).await
        })
        .await;
    let ctx = match tables {
        Ok(t) => context! { tables => t, ..base_ctx("schema") },
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not read the data dictionary");
            context! { tables => Vec::<()>::new(),
            error => "The database could not be reached to read the dictionary; GET /health tells more. Reload the page to try again.",
            ..base_ctx("schema") }
        }
    };
    page("schema.html", ctx)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == file) else {
        return ApiError::NotFound("no such asset".into()).into_response();
    };
    let etag = format!("\"{}-{}\"", ASSET_VERSION.as_str(), a.name);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut r = a.body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_every_asset_is_there() {
        for name in [
            "base.html",
            "catalog.html",
            "operation.html",
            "ingest.html",
            "companies.html",
            "schema.html",
            "api.html",
        ] {
            assert!(
                TEMPLATES.get_template(name).is_ok(),
                "{name} does not parse"
            );
        }
        for a in ASSETS {
            assert!(a.body.len() > 1000, "{} is suspiciously small", a.name);
        }
    }

    #[test]
    fn values_are_escaped_in_pages() {
        let html = TEMPLATES
            .get_template("schema.html")
            .and_then(|t| {
                t.render(context! { tables => vec![context! {
                    name => "t", kind => "table", comment => "<script>alert(1)</script>", columns => Vec::<()>::new()
                }], ..base_ctx("schema") })
            })
            .expect("renders");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"));
        assert!(!html.contains("<script>alert(1)"));
    }

    #[test]
    fn a_parameter_becomes_the_input_its_type_needs() {
        let spec: ParamSpec = serde_yaml::from_str(
            "{type: string_list, description: d, enum: [crm, erp, shop], default: [crm]}",
        )
        .expect("spec");
        let f = field("source_systems", &spec);
        assert_eq!((f.input, f.required), ("multiselect", false));
        assert_eq!(f.default_list, vec!["crm"]);
        let spec: ParamSpec = serde_yaml::from_str("{type: date, description: d}").expect("spec");
        let f = field("from", &spec);
        assert_eq!((f.input, f.required), ("date", true));
        let spec: ParamSpec = serde_yaml::from_str(
            "{type: integer, description: d, minimum: 1, maximum: 9, default: 3}",
        )
        .expect("spec");
        let f = field("n", &spec);
        assert_eq!(
            (f.input, f.min, f.max, f.default.as_str()),
            ("number", Some(1.0), Some(9.0), "3")
        );
    }
}
