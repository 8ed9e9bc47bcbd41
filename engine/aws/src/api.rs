//! The API function: the very router of `quarry serve`, over the AWS ports.
//! `lambda_http` turns API Gateway proxy events into HTTP requests; with
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` the stage prefix (`/prod`) is
//! dropped, so routes are the same as locally.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use quarry_api::auth::{Auth, AuthMode};
use quarry_api::{AppState, Config, Ports, Router};
use quarry_core::PackSet;
use tower::ServiceExt;

use crate::{DynamoCache, DynamoJobStore, S3Store, SfnStarter, SnsNotifier};

/// Names of the AWS resources, from the environment the CDK app sets. Each
/// function gets the ones it uses; [`Resources::need`] names a missing one.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub results_bucket: String,
    pub cache_table: String,
    pub jobs_table: String,
    pub jobs_topic_arn: String,
    pub alarm_topic_arn: String,
    pub state_machine_arn: String,
}

impl Resources {
    /// Reads `QUARRY_RESULTS_BUCKET`, `QUARRY_CACHE_TABLE`, `QUARRY_JOBS_TABLE`,
    /// `QUARRY_JOBS_TOPIC_ARN`, `QUARRY_ALARM_TOPIC_ARN` and
    /// `QUARRY_STATE_MACHINE_ARN` (unset ones stay empty).
    pub fn from_env() -> Resources {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Resources {
            results_bucket: var("QUARRY_RESULTS_BUCKET"),
            cache_table: var("QUARRY_CACHE_TABLE"),
            jobs_table: var("QUARRY_JOBS_TABLE"),
            jobs_topic_arn: var("QUARRY_JOBS_TOPIC_ARN"),
            alarm_topic_arn: var("QUARRY_ALARM_TOPIC_ARN"),
            state_machine_arn: var("QUARRY_STATE_MACHINE_ARN"),
        }
    }

    /// Fails naming every variable of `names` that is empty.
    pub fn need(&self, names: &[&str]) -> anyhow::Result<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| {
                match *n {
                    "QUARRY_RESULTS_BUCKET" => &self.results_bucket,
                    "QUARRY_CACHE_TABLE" => &self.cache_table,
                    "QUARRY_JOBS_TABLE" => &self.jobs_table,
                    "QUARRY_JOBS_TOPIC_ARN" => &self.jobs_topic_arn,
                    "QUARRY_ALARM_TOPIC_ARN" => &self.alarm_topic_arn,
                    "QUARRY_STATE_MACHINE_ARN" => &self.state_machine_arn,
                    _ => return true,
                }
                .is_empty()
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "environment variables not set: {}; the CDK stack sets them",
                missing.join(", ")
            )
        }
    }
}

/// The AWS implementations of the ports.
pub fn ports(sdk: &aws_config::SdkConfig, r: &Resources, retention: Duration) -> Ports {
    let objects = S3Store::new(sdk, &r.results_bucket);
    Ports {
        cache: Arc::new(DynamoCache::new(sdk, &r.cache_table, objects.clone())),
        jobs: Arc::new(DynamoJobStore::new(sdk, &r.jobs_table, retention)),
        objects: Arc::new(objects),
        notifier: Arc::new(SnsNotifier::new(sdk, &r.jobs_topic_arn)),
        starter: Arc::new(SfnStarter::new(sdk, &r.state_machine_arn)),
        sweeper: None,
    }
}

/// The API's state on AWS: the reader pool, the AWS ports, keys checked in the
/// database one at a time (the reader cannot list them; never open access), and
/// the data version read per request (a frozen Lambda cannot follow LISTEN).
pub fn state(config: Config, packs: PackSet, reader: Pool, ports: Ports) -> Arc<AppState> {
    let auth = Auth::new(
        AuthMode::Checked,
        config.api.rate_limit_per_second,
        config.api.rate_limit_burst,
    );
    let (_tx, rx) = tokio::sync::watch::channel(None);
    Arc::new(AppState::new(packs, reader, ports, auth, config, rx))
}

/// One API Gateway proxy event (REST API or HTTP API, as JSON) through the router.
pub async fn handle(
    router: Router,
    event: serde_json::Value,
) -> anyhow::Result<axum::response::Response> {
    let req: lambda_http::request::LambdaRequest = serde_json::from_value(event)
        .map_err(|e| anyhow::anyhow!("not an API Gateway proxy event: {e}"))?;
    let req: lambda_http::Request = req.into();
    router
        .oneshot(req)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
