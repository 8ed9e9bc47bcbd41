//! `quarry-migrate`: the CloudFormation custom resource that migrates the
//! database on every deploy.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_aws::runtime::init_logging();
    let sdk = std::sync::Arc::new(quarry_aws::sdk_config().await);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let sdk = sdk.clone();
        async move { quarry_aws::runtime::migrate(&sdk, ev.payload).await }
    }))
    .await
}
