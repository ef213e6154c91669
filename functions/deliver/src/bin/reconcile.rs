//! Reconciler lambda, run every minute by an EventBridge schedule: queues the
//! pending deliveries nobody is looking after and releases what waited on
//! re-activated or deleted endpoints (see `shared::outbox`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_lambda_logs();
    shared::telemetry::init_lambda("reconcile");
    let app = shared::App::worker_from_env().await?;
    run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let app = app.clone();
        async move { Ok::<_, Error>(deliver::reconcile(&app).await?) }
    }))
    .await
}
