//! Reconciler lambda, run every minute by an EventBridge schedule: queues the
//! pending deliveries nobody is looking after and releases what waited on
//! re-activated or deleted endpoints (see `shared::outbox`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = shared::App::from_env().await?;
    run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let app = app.clone();
        async move {
            let done = shared::outbox::reconcile(&app, chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::json!({
                "requeued": done.requeued, "released": done.released, "endpoints_done": done.endpoints_done,
            }))
        }
    }))
    .await
}
