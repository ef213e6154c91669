//! API Gateway (HTTP API) lambda: logging, configuration and clients once per
//! cold start, then the shared router for every request.

use lambda_http::{run, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = shared::App::from_env().await?;
    run(api::router(app)).await
}
