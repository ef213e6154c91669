//! Delivery-queue lambda, one per lane (`DELIVERY_LANE`: `fast`, the
//! delivery queue, or `slow`, the slow delivery queue): logging,
//! configuration and clients once per cold start, then the shared handler
//! for every batch.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_lambda_logs();
    shared::telemetry::init_lambda("deliver");
    let app = shared::App::worker_from_env().await?;
    let lane = app.config.delivery_lane;
    let worker = Arc::new(deliver::Worker::new(app)?);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move { Ok::<_, Error>(deliver::handle_lane(&worker, lane, event.payload).await) }
    }))
    .await
}
