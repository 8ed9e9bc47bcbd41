//! Admin commands on AWS, for whoever holds AWS credentials and
//! `lambda:InvokeFunction` on `quarry-migrate` (the one function with the owner
//! and writer logins): the first API key of a new stack, key management, and
//! people's decisions about company links. The database sits in isolated
//! subnets, so these replace `quarry keys ...` and `quarry links ...` there:
//!
//! ```sh
//! echo '{"command": "create-key", "name": "alice", "scopes": ["read", "jobs"]}' > request.json
//! aws lambda invoke --function-name quarry-migrate --payload fileb://request.json out.json
//! ```
//!
//! An event with `command` is an admin command; an event with `RequestType` is
//! CloudFormation's (migrations on deploy). Every answer is JSON; a refused
//! command is a function error whose message says what to change.

use lambda_runtime::Diagnostic;
use quarry_db::companies::{self as co, Decision, DecisionError, LinkFilter};
use quarry_db::store::{self, Scope};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::Connector;

/// One admin command, as the invocation's JSON payload.
#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// `{"command": "create-key", "name": "...", "scopes": ["read", "jobs", "admin"], "rate_per_second": 5}`
    CreateKey {
        name: String,
        scopes: Vec<String>,
        #[serde(default)]
        rate_per_second: Option<u32>,
    },
    /// `{"command": "list-keys"}`: every key, never its secret.
    ListKeys {},
    /// `{"command": "revoke-key", "id": "..."}`
    RevokeKey { id: String },
    /// `{"command": "list-links", "status": "proposed", "limit": 50}`
    ListLinks {
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        organization: Option<i64>,
        #[serde(default)]
        limit: Option<i64>,
    },
    /// `{"command": "confirm-link", "left_id": 1, "right_id": 2, "by": "you@example.com", "note": "..."}`
    ConfirmLink {
        left_id: i64,
        right_id: i64,
        by: String,
        #[serde(default)]
        note: Option<String>,
    },
    /// `{"command": "reject-link", ...}`: as confirm-link.
    RejectLink {
        left_id: i64,
        right_id: i64,
        by: String,
        #[serde(default)]
        note: Option<String>,
    },
    /// `{"command": "split", "organization_id": 3, "by": "...", "note": "..."}`
    Split {
        organization_id: i64,
        by: String,
        #[serde(default)]
        note: Option<String>,
    },
}

/// The commands, for messages.
pub const COMMANDS: &str =
    "create-key, list-keys, revoke-key, list-links, confirm-link, reject-link, split";

/// The logins an admin command may use: the owner for keys (the migrations'
/// role), the writer for decisions (as `quarry links` uses it).
pub struct Logins {
    pub owner: Connector,
    pub writer: Connector,
}

fn refused(message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        error_type: "Quarry.AdminCommandRefused".into(),
        error_message: message.into(),
    }
}

fn failed(e: impl std::fmt::Display) -> Diagnostic {
    Diagnostic {
        error_type: "Quarry.AdminCommandFailed".into(),
        error_message: e.to_string(),
    }
}

/// Parses `event` as a [`Command`], with a message naming the commands when it
/// is not one.
pub fn parse(event: Value) -> Result<Command, Diagnostic> {
    serde_json::from_value(event).map_err(|e| {
        refused(format!(
            "not an admin command: {e}. Send {{\"command\": ...}} with one of {COMMANDS} \
             (infra/README.md, \"Admin commands\", shows each)"
        ))
    })
}

fn who(by: &str) -> Result<String, Diagnostic> {
    let by = by.trim();
    if by.is_empty() || by.len() > 200 {
        return Err(refused(
            "`by` names who decides (1 to 200 characters), e.g. \"by\": \"alice@example.com\"; it is kept with the decision",
        ));
    }
    Ok(format!("aws:{by}"))
}

async fn client(login: &Connector, role: &str) -> Result<tokio_postgres::Client, Diagnostic> {
    login
        .client()
        .await
        .map_err(|e| failed(format!("connecting as the {role}: {e:#}")))
}

fn decided(what: &str, d: &co::Decided) -> Value {
    json!({
        "decision": what,
        "pairs": d.pairs,
        "companies": d.companies.iter().map(|(org, company)| json!({"organization_id": org, "company_id": company})).collect::<Vec<_>>(),
    })
}

fn decision_error(e: DecisionError) -> Diagnostic {
    match e {
        DecisionError::Database(e) => failed(format!("{e:#}")),
        other => refused(other.to_string()),
    }
}

/// Runs one admin command.
pub async fn run(logins: &Logins, command: Command) -> Result<Value, Diagnostic> {
    match command {
        Command::CreateKey {
            name,
            scopes,
            rate_per_second,
        } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 200 {
                return Err(refused(
                    "`name` says who or what the key is for (1 to 200 characters)",
                ));
            }
            if scopes.is_empty() {
                return Err(refused(
                    "`scopes` is empty: give one or more of read, jobs, admin",
                ));
            }
            let mut parsed = Vec::new();
            for s in &scopes {
                parsed.push(Scope::parse(s).ok_or_else(|| {
                    refused(format!("scope `{s}` is not one of read, jobs, admin"))
                })?);
            }
            let c = client(&logins.owner, "owner").await?;
            let (id, key) = store::create_random_key(&c, &name, &parsed, rate_per_second)
                .await
                .map_err(|e| failed(format!("creating the key: {e:#}")))?;
            tracing::info!(id = %id, name = %name, scopes = ?scopes, "API key created by an admin invocation");
            Ok(json!({
                "id": id,
                "name": name,
                "scopes": scopes,
                "rate_per_second": rate_per_second,
                "key": key,
                "next": "store the key now, it is not shown again; send it as `Authorization: Bearer <key>` \
                         (with the gateway's usage-plan key in `x-api-key`)",
            }))
        }
        Command::ListKeys {} => {
            let c = client(&logins.owner, "owner").await?;
            let keys = store::list_keys(&c)
                .await
                .map_err(|e| failed(format!("listing keys: {e:#}")))?;
            Ok(json!({ "keys": keys }))
        }
        Command::RevokeKey { id } => {
            let c = client(&logins.owner, "owner").await?;
            let revoked = store::revoke_key(&c, &id)
                .await
                .map_err(|e| failed(format!("revoking key {id}: {e:#}")))?;
            if !revoked {
                return Err(refused(format!(
                    "no active key has id {id}; {{\"command\": \"list-keys\"}} shows them"
                )));
            }
            tracing::info!(id = %id, "API key revoked by an admin invocation");
            Ok(json!({ "revoked": id }))
        }
        Command::ListLinks {
            status,
            organization,
            limit,
        } => {
            if let Some(s) = &status {
                if !co::STATUSES.contains(&s.as_str()) {
                    return Err(refused(format!(
                        "status `{s}` is not one of {}",
                        co::STATUSES.join(", ")
                    )));
                }
            }
            let c = client(&logins.writer, "writer").await?;
            let rows = co::list(
                &c,
                &LinkFilter {
                    status,
                    rule: None,
                    organization,
                    company: None,
                    limit: limit.unwrap_or(100).clamp(1, 1000),
                },
            )
            .await
            .map_err(|e| failed(format!("listing links: {e:#}")))?;
            Ok(json!({ "links": rows }))
        }
        Command::ConfirmLink {
            left_id,
            right_id,
            by,
            note,
        } => decide(logins, left_id, right_id, Decision::Confirm, &by, note).await,
        Command::RejectLink {
            left_id,
            right_id,
            by,
            note,
        } => decide(logins, left_id, right_id, Decision::Reject, &by, note).await,
        Command::Split {
            organization_id,
            by,
            note,
        } => {
            let who = who(&by)?;
            let mut c = client(&logins.writer, "writer").await?;
            let d = co::split(&mut c, organization_id, &who, note.as_deref())
                .await
                .map_err(decision_error)?;
            Ok(decided("split", &d))
        }
    }
}

async fn decide(
    logins: &Logins,
    left: i64,
    right: i64,
    decision: Decision,
    by: &str,
    note: Option<String>,
) -> Result<Value, Diagnostic> {
    let who = who(by)?;
    let mut c = client(&logins.writer, "writer").await?;
    let d = co::decide(&mut c, left, right, decision, &who, note.as_deref())
        .await
        .map_err(decision_error)?;
    let what = match decision {
        Decision::Confirm => "confirmed",
        Decision::Reject => "rejected",
    };
    Ok(decided(what, &d))
}
