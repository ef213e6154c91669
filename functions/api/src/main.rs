//! API Gateway (HTTP API) lambda: logging, configuration and clients once per
//! cold start, then the shared router for every request.

use lambda_http::{run, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_lambda_logs();
    shared::telemetry::init_lambda("api");
    let config = shared::config::Config::from_env()?;
    config.require_admin_keys()?;
    let app = shared::App::new(config).await?;
    run(api::router(app)).await
}
