//! `quarry-ingest`: S3 ObjectCreated notifications of the raw bucket; with
//! `QUARRY_INGEST_OBJECT=s3://bucket/key`, the ECS task that loads one object
//! too large for an invocation.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_aws::runtime::init_logging();
    let metrics = quarry_aws::emf::init("quarry-ingest");
    let sdk = quarry_aws::sdk_config().await;
    let ingest = std::sync::Arc::new(quarry_aws::runtime::ingest(&sdk).await?);
    // Task mode: one object, no time limit (an ECS task the function started).
    if let Ok(object) = std::env::var(quarry_aws::handoff::OBJECT_ENV) {
        let code = ingest.run_task(&object).await;
        quarry_aws::emf::flush(metrics);
        std::process::exit(code);
    }
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let ingest = ingest.clone();
        async move {
            let deadline =
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ev.context.deadline);
            let out = ingest.handle_by(ev.payload, Some(deadline)).await;
            quarry_aws::emf::flush(metrics);
            out
        }
    }))
    .await
}
