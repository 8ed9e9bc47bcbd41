//! What each function builds once per container (outside its handler): logs,
//! metrics, SDK clients, database pools, definitions. The `bin/` entry points
//! are a few lines over these; tests call the same builders and handlers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use lambda_runtime::Diagnostic;
use quarry_api::{AppState, Config};
use quarry_core::jobs::Event;
use quarry_core::ports::{Notifier, PortResult, WorkflowStarter};
use serde_json::{json, Value};

use crate::api::{self, Resources};
use crate::db;
use crate::ingest::Ingest;
use crate::{S3Store, SnsNotifier};

/// JSON logs (one object per line, as CloudWatch Logs Insights reads them),
/// filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .try_init();
}

/// A definitions folder (`queries`, `mappings`): `QUARRY_<NAME>_DIR`, else the
/// copy the build put beside the bootstrap (`$LAMBDA_TASK_ROOT/<name>`), else
/// `./<name>`.
pub fn definitions_dir(name: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(format!("QUARRY_{}_DIR", name.to_ascii_uppercase())) {
        return PathBuf::from(d);
    }
    match std::env::var_os("LAMBDA_TASK_ROOT") {
        Some(root) => PathBuf::from(root).join(name),
        None => PathBuf::from(name),
    }
}

/// The most seconds a synchronous query may take on Lambda: with the engine's
/// 2 s guard the answer leaves before API Gateway's 29 s integration timeout.
pub const SYNC_BUDGET_SECONDS: u32 = 25;
const _: () = assert!(
    SYNC_BUDGET_SECONDS + 2 < 29,
    "the budget and its guard must end before API Gateway's 29 s"
);

/// The engine's configuration: defaults, then `QUARRY_CONFIG` (a TOML file in
/// the zip) if set, then `QUARRY_*` settings; definitions from the zip.
pub fn config() -> anyhow::Result<Config> {
    let file = std::env::var_os("QUARRY_CONFIG").map(PathBuf::from);
    let mut config = Config::load(file.as_deref())?;
    config.queries_dir = definitions_dir("queries");
    config.mappings_dir = definitions_dir("mappings");
    // API Gateway ends an integration at 29 s: a synchronous answer (the query
    // plus the engine's 2 s guard) must come before, as Quarry's own 504.
    config.api.sync_timeout_seconds = config.api.sync_timeout_seconds.min(SYNC_BUDGET_SECONDS);
    // lambda_http buffers a response whole (and API Gateway caps it at 6 MB):
    // NDJSON and CSV answers go the buffered way, large ones behind a 303 link.
    config.api.stream_answers = false;
    // API Gateway compresses (minimumCompressionSize in infra/lib/api.ts); a
    // body compressed here would reach clients base64-encoded.
    config.api.compress_answers = false;
    Ok(config)
}

fn packs(config: &Config) -> anyhow::Result<quarry_core::PackSet> {
    quarry_api::reload::load(&config.queries_dir).map_err(|d| {
        anyhow::anyhow!(
            "the query packs in {} have problems:\n{}",
            config.queries_dir.display(),
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Connects as `role` once, so a wrong secret, host or certificate fails the
/// cold start with its reason instead of every request.
async fn pool(
    sdk: &aws_config::SdkConfig,
    role: &str,
    size: usize,
) -> anyhow::Result<deadpool_postgres::Pool> {
    let connector = db::connector_from_env(sdk, role)?;
    connector.check().await?;
    db::pool(connector, size)
}

/// `quarry-api`: the router's state over the AWS ports and the reader role.
pub async fn api_state(sdk: &aws_config::SdkConfig) -> anyhow::Result<Arc<AppState>> {
    let r = Resources::from_env();
    r.need(&[
        "QUARRY_RESULTS_BUCKET",
        "QUARRY_CACHE_TABLE",
        "QUARRY_JOBS_TABLE",
        "QUARRY_STATE_MACHINE_ARN",
    ])?;
    let config = config()?;
    let packs = packs(&config)?;
    let reader = pool(sdk, "reader", config.api.pool_size.min(2)).await?;
    let retention = Duration::from_secs(config.jobs.retention_hours * 3600);
    let mut ports = api::ports(sdk, &r, retention);
    // The state machine publishes job events; the API publishes none.
    ports.notifier = Arc::new(PublishedByStateMachine);
    Ok(api::state(config, packs, reader, ports))
}

/// `quarry-jobs`: the same state, for the job steps (no starter: the state
/// machine is what runs them).
pub async fn jobs_state(sdk: &aws_config::SdkConfig) -> anyhow::Result<Arc<AppState>> {
    let r = Resources::from_env();
    r.need(&["QUARRY_RESULTS_BUCKET", "QUARRY_JOBS_TABLE"])?;
    let config = config()?;
    let packs = packs(&config)?;
    let reader = pool(sdk, "reader", 1).await?;
    let retention = Duration::from_secs(config.jobs.retention_hours * 3600);
    let mut ports = api::ports(sdk, &r, retention);
    ports.notifier = Arc::new(PublishedByStateMachine);
    ports.starter = Arc::new(NoStarter);
    ports.cache = Arc::new(NoCache);
    Ok(api::state(config, packs, reader, ports))
}

/// `quarry-ingest`: the raw bucket's reader, the writer pool, the mappings.
pub async fn ingest(sdk: &aws_config::SdkConfig) -> anyhow::Result<Ingest> {
    let r = Resources::from_env();
    let mappings_dir = definitions_dir("mappings");
    let mappings = quarry_core::files::load_mappings(&mappings_dir).map_err(|d| {
        anyhow::anyhow!(
            "the mappings in {} have problems:\n{}",
            mappings_dir.display(),
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    // The company rules shipped beside the mappings: registered at cold start, so
    // a deploy with changed rules recomputes links and companies once, before
    // the first file (the shipped rules when the bundle has no companies.yaml).
    let rules = match quarry_core::files::load_company_rules(&mappings_dir) {
        Ok(Some(r)) => r,
        Ok(None) => quarry_db::companies::builtin_rules()?,
        Err(d) => anyhow::bail!(
            "the company rules in {} have problems:\n{}",
            mappings_dir.display(),
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let max_bytes = match std::env::var("QUARRY_INGEST_MAX_BYTES") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().parse().with_context(|| {
            format!("QUARRY_INGEST_MAX_BYTES must be a number of bytes, not `{v}`")
        })?),
        _ => None,
    };
    let alarms: Option<Arc<dyn Notifier>> = if r.alarm_topic_arn.is_empty() {
        None
    } else {
        Some(Arc::new(SnsNotifier::new(sdk, &r.alarm_topic_arn)))
    };
    let writer = pool(sdk, "writer", 1).await?;
    {
        let mut client = writer
            .get()
            .await
            .context("connecting as the writer to register the company rules")?;
        let r = quarry_db::companies::register(&mut client, &rules, false).await?;
        if r.changed {
            tracing::info!(version = %rules.version, links = r.links, companies = r.companies,
                "company rules registered; links and companies recomputed");
        }
    }
    Ok(Ingest {
        // The raw bucket comes with each event; this store only downloads.
        s3: S3Store::new(sdk, std::env::var("QUARRY_RAW_BUCKET").unwrap_or_default()),
        writer,
        mappings: mappings.into_iter().map(Arc::new).collect(),
        alarms,
        max_bytes,
        handoff: crate::handoff::IngestTask::from_env(sdk)?,
    })
}

/// On AWS the state machine's notify states publish job events (the jobs
/// function returns the event for them); nothing to do here.
pub struct PublishedByStateMachine;

#[async_trait]
impl Notifier for PublishedByStateMachine {
    async fn publish(&self, event: &Event) -> PortResult<()> {
        tracing::debug!(id = %event.id, "job event left to the state machine");
        Ok(())
    }
}

/// The job steps do not fill the answer cache on AWS: the function's role has
/// no access to the cache table (least privilege; a heavy operation's answer is
/// fetched through its job, not the synchronous path).
struct NoCache;

#[async_trait]
impl quarry_core::ports::Cache for NoCache {
    async fn get(&self, _key: &str) -> PortResult<Option<quarry_core::ports::CachedValue>> {
        Ok(None)
    }
    async fn put(
        &self,
        _key: &str,
        _operation: &str,
        _value: &quarry_core::ports::CachedValue,
        _ttl: Duration,
    ) -> PortResult<()> {
        Ok(())
    }
}

/// The job steps never start executions.
struct NoStarter;

#[async_trait]
impl WorkflowStarter for NoStarter {
    async fn start(&self, job: &quarry_core::jobs::Job) -> PortResult<()> {
        Err(quarry_core::ports::PortError::Invalid(format!(
            "job {}: the job steps cannot start executions",
            job.id
        )))
    }
}

/// `quarry-migrate`, the CloudFormation custom resource (Provider framework's
/// onEvent): Create and Update apply the migrations as the owner, setting the
/// writer and reader passwords from their secrets; Delete changes nothing. An
/// event with `command` is an admin command ([`crate::admin`]), invoked by a
/// person with `aws lambda invoke`.
pub async fn migrate(sdk: &aws_config::SdkConfig, event: Value) -> Result<Value, Diagnostic> {
    let setup = async {
        let mut p = quarry_db::RolePasswords::default();
        for (role, slot) in [("WRITER", &mut p.writer), ("READER", &mut p.reader)] {
            if let Ok(arn) = std::env::var(format!("QUARRY_DB_SECRET_{role}_ARN")) {
                *slot = Some(db::SecretCredentials::new(sdk, arn).get().await?.password);
            }
        }
        anyhow::Ok((db::connector_from_env(sdk, "owner")?, p))
    };
    if event.get("command").is_some() {
        let command = crate::admin::parse(event)?;
        let logins = crate::admin::Logins {
            owner: db::connector_from_env(sdk, "owner").map_err(admin_setup_failed)?,
            writer: db::connector_from_env(sdk, "writer").map_err(admin_setup_failed)?,
        };
        return crate::admin::run(&logins, command).await;
    }
    match event.get("RequestType").and_then(Value::as_str) {
        // Deleting needs no database (and must work when it is gone).
        Some("Delete") => migrate_database(None, &Default::default(), event).await,
        _ => {
            let (owner, passwords) = setup.await.map_err(migration_failed)?;
            migrate_database(Some(owner), &passwords, event).await
        }
    }
}

fn admin_setup_failed(e: anyhow::Error) -> Diagnostic {
    Diagnostic {
        error_type: "Quarry.AdminCommandFailed".into(),
        error_message: format!("{e:#}"),
    }
}

/// How long the migrations keep trying to reach the database at deploy time:
/// `QUARRY_MIGRATE_CONNECT_SECONDS`, default 480 (the function may run 10 min).
fn connect_budget() -> Duration {
    std::env::var("QUARRY_MIGRATE_CONNECT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(480))
}

fn migration_failed(e: anyhow::Error) -> Diagnostic {
    Diagnostic {
        error_type: "Quarry.MigrationFailed".into(),
        error_message: format!("{e:#}"),
    }
}

/// The custom resource's work with the owner's login and the role passwords in
/// hand. An error fails (and rolls back) the deploy, with the reason in the
/// CloudFormation event.
pub async fn migrate_database(
    owner: Option<db::Connector>,
    passwords: &quarry_db::RolePasswords,
    event: Value,
) -> Result<Value, Diagnostic> {
    let kind = event
        .get("RequestType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        "Delete" => {
            tracing::info!("migrations resource deleted; the database is left as it is");
            return Ok(json!({ "PhysicalResourceId": "quarry-migrations" }));
        }
        "Create" | "Update" => {}
        other => {
            return Err(migration_failed(anyhow::anyhow!(
                "RequestType must be Create, Update or Delete, not `{other}`"
            )))
        }
    }
    let owner = owner.ok_or_else(|| migration_failed(anyhow::anyhow!("no owner login")))?;
    let mut client = owner
        .patient_client(connect_budget())
        .await
        .map_err(|e| migration_failed(e.context("connecting as the owner")))?;
    let report = quarry_db::migrate_with(&mut client, passwords)
        .await
        .map_err(migration_failed)?;
    tracing::info!(applied = ?report.applied, already = report.already, "migrations applied");
    Ok(json!({
        "PhysicalResourceId": "quarry-migrations",
        "Data": { "Applied": report.applied.len(), "AlreadyApplied": report.already },
    }))
}
