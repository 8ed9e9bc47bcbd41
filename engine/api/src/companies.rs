//! People decide about links, over HTTP: `GET /admin/links` lists links and
//! decided pairs (proposals first), `POST /admin/links/confirm|reject` and
//! `POST /admin/organizations/{id}/split` record a decision with the key's name
//! and re-cluster at once; `GET /companies/{id}` shows a company with its
//! members, links and the source of every golden value. Decisions need the
//! `admin` scope and the writer role (the local server holds it; the AWS API
//! function holds only the reader and answers 503 naming the CLI instead);
//! reading needs the reader only.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use quarry_core::packs::params::ParamError;
use quarry_db::companies::{self as co, Decision, DecisionError, LinkFilter};

use crate::auth::{Principal, Scope};
use crate::contract::{CompanyView, Decided, DecisionRequest, LinkPage, SplitRequest};
use crate::listing::{reader, ListQuery};
use crate::{ApiError, AppState};

/// Most pairs one list answers.
pub const MAX_LINKS: i64 = 1000;

/// `GET /admin/links?status=&rule=&organization=&company=&limit=`.
pub async fn list_links(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<LinkPage>, ApiError> {
    who.require(Scope::Admin, "reviewing links")?;
    let mut lq = ListQuery::new(&q, &["status", "rule", "organization", "company", "limit"]);
    let status = lq.text("status");
    if let Some(s) = &status {
        if !co::STATUSES.contains(&s.as_str()) {
            lq.errors.push(ParamError {
                parameter: "status".into(),
                message: format!("expected one of {}", co::STATUSES.join(", ")),
            });
        }
    }
    let rule = lq.text("rule");
    let organization = lq.int("organization", 1, i64::MAX);
    let company = lq.int("company", 1, i64::MAX);
    let limit = lq.int("limit", 1, MAX_LINKS).unwrap_or(100);
    lq.finish()?;
    let client = reader(&st).await?;
    let links = co::list(
        &client,
        &LinkFilter {
            status,
            rule,
            organization,
            company,
            limit,
        },
    )
    .await
    .map_err(ApiError::Internal)?;
    Ok(Json(LinkPage { links }))
}

/// `GET /companies/{id}`: a company, its members and links, and where each golden value came from.
pub async fn company(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CompanyView>, ApiError> {
    who.require(Scope::Read, "reading companies")?;
    let id: i64 = id.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::InvalidParameters(vec![ParamError {
            parameter: "id".into(),
            message: "a company id is a positive whole number (companies.id)".into(),
        }])
    })?;
    let client = reader(&st).await?;
    match co::show(&client, id).await.map_err(ApiError::Internal)? {
        Some(v) => Ok(Json(CompanyView(v))),
        None => Err(ApiError::NotFound(format!("no company {id}"))),
    }
}

/// `POST /admin/links/confirm`: the two organizations are one company.
pub async fn confirm(
    st: State<Arc<AppState>>,
    who: Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Decided>, ApiError> {
    decide(st, who, body, Decision::Confirm).await
}

/// `POST /admin/links/reject`: the two organizations are different companies.
pub async fn reject(
    st: State<Arc<AppState>>,
    who: Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Decided>, ApiError> {
    decide(st, who, body, Decision::Reject).await
}

async fn decide(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
    decision: Decision,
) -> Result<Json<Decided>, ApiError> {
    who.require(Scope::Admin, "deciding about links")?;
    let req: DecisionRequest = parse_body(&body)?;
    check_note(req.note.as_deref())?;
    let mut client = writer(&st).await?;
    let d = co::decide(
        &mut client,
        req.left_id,
        req.right_id,
        decision,
        &decided_by(&who),
        req.note.as_deref(),
    )
    .await
    .map_err(decision_error)?;
    Ok(Json(Decided::from(d)))
}

/// `POST /admin/organizations/{id}/split`: take an organization out of its company.
pub async fn split(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Decided>, ApiError> {
    who.require(Scope::Admin, "splitting companies")?;
    let id: i64 = id.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::InvalidParameters(vec![ParamError {
            parameter: "id".into(),
            message: "an organization id is a positive whole number (organizations.id)".into(),
        }])
    })?;
    let req: SplitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SplitRequest { note: None }
    } else {
        parse_body(&body)?
    };
    check_note(req.note.as_deref())?;
    let mut client = writer(&st).await?;
    let d = co::split(&mut client, id, &decided_by(&who), req.note.as_deref())
        .await
        .map_err(decision_error)?;
    Ok(Json(Decided::from(d)))
}

/// Longest note kept with a decision.
const MAX_NOTE: usize = 2000;

/// A note longer than [`MAX_NOTE`] characters is a 422 naming `note`.
fn check_note(note: Option<&str>) -> Result<(), ApiError> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE => {
            Err(ApiError::InvalidParameters(vec![ParamError {
                parameter: "note".into(),
                message: format!("longer than {MAX_NOTE} characters; keep the reason short"),
            }]))
        }
        _ => Ok(()),
    }
}

/// A JSON body with no duplicate keys, into `T`; problems are 400s saying what.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = quarry_core::strict_json::from_slice(body)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not a JSON object: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::MalformedBody(e.to_string()))
}

/// Who decided, as recorded: the key's name.
fn decided_by(who: &Principal) -> String {
    format!("api:{}", who.name)
}

async fn writer(st: &AppState) -> Result<deadpool_postgres::Object, ApiError> {
    let Some(pool) = &st.writer else {
        return Err(ApiError::Unavailable(
            "decisions about links need the writer role, which this server does not hold; run `quarry links confirm|reject|split` with the writer's credentials, or on AWS invoke the admin function ({\"command\": \"confirm-link\"|\"reject-link\"|\"split\", ...}: infra/README.md, Admin commands)".into(),
        ));
    };
    pool.get().await.map_err(|_| ApiError::DatabaseUnavailable)
}

fn decision_error(e: DecisionError) -> ApiError {
    match e {
        DecisionError::Invalid(m) => ApiError::InvalidParameters(vec![ParamError {
            parameter: "right_id".into(),
            message: m,
        }]),
        DecisionError::UnknownOrganization(id) => {
            ApiError::NotFound(format!("no organization {id}"))
        }
        DecisionError::Conflict(m) => ApiError::Conflict {
            detail: m,
            retry_after_secs: None,
        },
        DecisionError::Database(e) => ApiError::Internal(e),
    }
}
