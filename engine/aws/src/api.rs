//! The API function: the very router of `quarry serve`, over the AWS ports.
//! `lambda_http` turns API Gateway proxy events into HTTP requests; with
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` the stage prefix (`/prod`) is
//! dropped, so routes are the same as locally.

use std::sync::Arc;
use std::time::Duration;

use quarry_api::auth::{Auth, AuthMode};
use quarry_api::{AppState, Config, Ports, Router};
use quarry_core::PackSet;
use tower::ServiceExt;

use crate::{DynamoCache, DynamoJobStore, S3Store, SfnStarter, SnsNotifier};

/// Names of the AWS resources, from the environment the CDK app sets.
#[derive(Debug, Clone)]
pub struct Resources {
    pub results_bucket: String,
    pub cache_table: String,
    pub jobs_table: String,
    pub jobs_topic_arn: String,
    pub state_machine_arn: String,
}

impl Resources {
    /// Reads `QUARRY_RESULTS_BUCKET`, `QUARRY_CACHE_TABLE`, `QUARRY_JOBS_TABLE`,
    /// `QUARRY_JOBS_TOPIC_ARN` and `QUARRY_STATE_MACHINE_ARN`, naming any missing one.
    pub fn from_env() -> anyhow::Result<Resources> {
        let var = |k: &str| {
            std::env::var(k).map_err(|_| {
                anyhow::anyhow!("environment variable {k} is not set; the CDK stack sets it")
            })
        };
        Ok(Resources {
            results_bucket: var("QUARRY_RESULTS_BUCKET")?,
            cache_table: var("QUARRY_CACHE_TABLE")?,
            jobs_table: var("QUARRY_JOBS_TABLE")?,
            jobs_topic_arn: var("QUARRY_JOBS_TOPIC_ARN")?,
            state_machine_arn: var("QUARRY_STATE_MACHINE_ARN")?,
        })
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

/// The API's state on AWS: pools for the reader and writer URLs, the AWS ports,
/// keys from the key table (never open access), and the data version read per
/// request (a frozen Lambda cannot follow LISTEN).
pub async fn state(
    config: Config,
    packs: PackSet,
    reader_url: &str,
    writer_url: &str,
    ports: Ports,
) -> anyhow::Result<Arc<AppState>> {
    let reader = quarry_api::pool(reader_url, config.api.pool_size)?;
    let writer = quarry_api::pool(writer_url, 2)?;
    let auth = Auth::new(
        AuthMode::Keys { loopback: false },
        config.api.rate_limit_per_second,
        config.api.rate_limit_burst,
    );
    {
        let c = writer
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the database as the writer role: {e}"))?;
        auth.set_keys(quarry_db::store::active_keys(&c).await?);
    }
    let (_tx, rx) = tokio::sync::watch::channel(None);
    Ok(Arc::new(AppState::new(
        packs, reader, writer, ports, auth, config, rx,
    )))
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
