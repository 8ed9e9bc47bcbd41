//! `quarry-api`: API Gateway (REST API, stage `prod`) in front of the very router
//! `quarry serve` runs, over the AWS ports.

use lambda_http::{service_fn, Error, Request};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_aws::runtime::init_logging();
    // Routes are the same as locally: the stage prefix (`/prod`) is not part of them.
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    let metrics = quarry_aws::emf::init("quarry-api");
    let sdk = quarry_aws::sdk_config().await;
    let state = quarry_aws::runtime::api_state(&sdk).await?;
    let router = quarry_api::router(state);
    lambda_http::run(service_fn(move |req: Request| {
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await;
            quarry_aws::emf::flush(metrics);
            resp
        }
    }))
    .await
}
