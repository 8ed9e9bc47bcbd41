//! `quarry-jobs`: the task states of the analytics-job state machine, and
//! EventBridge's news of executions that ended without them.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_aws::runtime::init_logging();
    let metrics = quarry_aws::emf::init("quarry-jobs");
    let sdk = quarry_aws::sdk_config().await;
    let state = quarry_aws::runtime::jobs_state(&sdk).await?;
    // Job events for executions that ended outside the state machine's own
    // notify states (EventBridge's execution status changes).
    let notifier = std::env::var("QUARRY_JOBS_TOPIC_ARN")
        .ok()
        .filter(|arn| !arn.is_empty())
        .map(|arn| std::sync::Arc::new(quarry_aws::SnsNotifier::new(&sdk, arn)));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let state = state.clone();
        let notifier = notifier.clone();
        async move {
            let n = notifier
                .as_deref()
                .map(|n| n as &dyn quarry_core::ports::Notifier);
            let out = quarry_aws::steps::handle(&state, n, ev.payload).await;
            quarry_aws::emf::flush(metrics);
            out
        }
    }))
    .await
}
