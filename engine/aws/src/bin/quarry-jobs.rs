//! `quarry-jobs`: the task states of the analytics-job state machine.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_aws::runtime::init_logging();
    let metrics = quarry_aws::emf::init("quarry-jobs");
    let sdk = quarry_aws::sdk_config().await;
    let state = quarry_aws::runtime::jobs_state(&sdk).await?;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let state = state.clone();
        async move {
            let out = quarry_aws::steps::dispatch(&state, ev.payload).await;
            quarry_aws::emf::flush(metrics);
            out
        }
    }))
    .await
}
