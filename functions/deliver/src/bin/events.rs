//! Events-queue lambda: our pipelines' events, one per message, recorded as
//! `POST /events` records them.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_lambda_logs();
    shared::telemetry::init_lambda("events");
    let app = shared::App::worker_from_env().await?;
    let worker = Arc::new(deliver::Worker::new(app)?);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move { Ok::<_, Error>(deliver::handle_events(&worker, event.payload).await) }
    }))
    .await
}
