//! The SQS lambdas and the reconciler: batch mechanics only. What happens
//! to one message is decided in the library ([`shared::delivery`] for the
//! delivery queue, [`shared::inbound::events::from_queue`] for the events
//! queue), which answers an [`Outcome`]; this crate turns it into SQS
//! actions: delete, hide (`ChangeMessageVisibility`), dead-letter, and the
//! `batchItemFailures` of the batch.
//!
//! * [`handle`] (binary `deliver`): the delivery queue, one message per delivery.
//! * [`handle_events`] (binary `events`): the events queue, our pipelines'
//!   events. Its own function, so a flood of pipeline events never takes the
//!   deliveries' concurrency.
//! * binary `reconcile`: [`shared::outbox::reconcile`] on a schedule.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;

use shared::backoff::{with_backoff, BRIEF_BACKOFF_MS};
use shared::delivery::{Deliverer, Lane};
use shared::lifecycle::outage_backoff_seconds;
use shared::queue::Outcome;
use shared::App;

/// Records of one batch processed at once (a batch holds at most 10).
pub const CONCURRENCY: usize = 10;

/// What to tell SQS about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: done, or moved to a dead-letter queue.
    Done,
    /// Keep it: SQS hands it back when its visibility timeout ends.
    Retry,
}

/// The worker's clients, built once per cold start.
pub struct Worker {
    pub app: Arc<App>,
    /// The delivery use-case of the fast lane, with its circuit breakers.
    pub deliverer: Deliverer,
    /// The same for the slow lane (the `deliver` function with
    /// `DELIVERY_LANE=slow`; the local runner serves both lanes).
    pub slow: Deliverer,
}

impl Worker {
    /// A worker over the app's clients (its HTTP client has the SSRF guard on
    /// unless configured off).
    pub fn new(app: Arc<App>) -> anyhow::Result<Self> {
        Ok(Worker {
            deliverer: Deliverer::new(app.clone(), Lane::Fast),
            slow: Deliverer::new(app.clone(), Lane::Slow),
            app,
        })
    }
}

/// Which queue a record came from, for the SQS actions its outcome needs.
#[derive(Clone, Copy)]
enum Source {
    Deliveries(Lane),
    Events,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Deliveries(_) => "delivery",
            Source::Events => "events",
        }
    }
    fn queue_url(self, app: &App) -> Option<&str> {
        match self {
            Source::Deliveries(Lane::Fast) => Some(app.config.delivery_queue_url.as_str()),
            Source::Deliveries(Lane::Slow) => app.config.slow_delivery_queue_url.as_deref(),
            Source::Events => app.config.events_queue_url.as_deref(),
        }
    }
    fn dlq_url(self, app: &App) -> Option<&String> {
        match self {
            // Both lanes share the delivery DLQ (and its alarm).
            Source::Deliveries(_) => app.config.delivery_dlq_url.as_ref(),
            Source::Events => app.config.events_dlq_url.as_ref(),
        }
    }
}

/// Handles one batch of the delivery queue (the fast lane).
pub async fn handle(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    handle_lane(worker, Lane::Fast, event).await
}

/// Handles one batch of `lane`'s delivery queue.
pub async fn handle_lane(worker: &Worker, lane: Lane, event: SqsEvent) -> SqsBatchResponse {
    let deliverer = match lane {
        Lane::Fast => &worker.deliverer,
        Lane::Slow => &worker.slow,
    };
    let response = handle_with(event, |record| async move {
        let outcome = deliverer.handle(record.body.as_deref().unwrap_or("")).await;
        act(&worker.app, Source::Deliveries(lane), &record, outcome).await
    })
    .await;
    shared::telemetry::flush_metrics();
    response
}

/// Handles one batch of the events queue.
pub async fn handle_events(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let response = handle_with(event, |record| async move {
        let outcome =
            shared::inbound::events::from_queue(&worker.app, record.body.as_deref().unwrap_or(""))
                .await;
        act(&worker.app, Source::Events, &record, outcome).await
    })
    .await;
    shared::telemetry::flush_metrics();
    response
}

/// Records run concurrently; the failed ones are reported so that only they
/// come back. A record whose processing panics is one failed record (logged
/// by the panic hook, counted in `Panics`), not a lost batch: the release
/// profile keeps `panic = "unwind"` for this.
async fn handle_with<'a, F, Fut>(event: SqsEvent, process: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Disposition> + 'a,
{
    use futures::FutureExt;
    let outcomes: Vec<(Option<String>, Disposition)> = futures::stream::iter(event.records)
        .map(|record| {
            let id = record.message_id.clone();
            let work = std::panic::AssertUnwindSafe(process(record)).catch_unwind();
            async move {
                let disposition = work.await.unwrap_or_else(|_| {
                    tracing::error!(message_id = ?id, "processing the record panicked; it will come back");
                    Disposition::Retry
                });
                (id, disposition)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, disposition) in outcomes {
        if disposition == Disposition::Retry {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The SQS actions of one record's outcome.
async fn act(app: &App, source: Source, record: &SqsMessage, outcome: Outcome) -> Disposition {
    match outcome {
        Outcome::Ack => Disposition::Done,
        Outcome::Keep => Disposition::Retry,
        Outcome::RetryIn(seconds) => retry_in(app, source, record, seconds).await,
        Outcome::RetryAfterOutage => {
            let received = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            retry_in(app, source, record, outage_backoff_seconds(received)).await
        }
        Outcome::DeadLetter(reason) => {
            let body = record.body.as_deref().unwrap_or("");
            dead_letter(app, source, body, &reason).await
        }
    }
}

async fn dead_letter(app: &App, source: Source, body: &str, reason: &str) -> Disposition {
    let queue = source.name();
    tracing::warn!(
        reason,
        queue,
        "moving an unprocessable message to the dead-letter queue"
    );
    shared::telemetry::dead_lettered(queue);
    let Some(url) = source.dlq_url(app) else {
        // No DLQ configured: let the queue's own redrive policy move it.
        return Disposition::Retry;
    };
    match app.queue.send_dead_letter(url, body, reason).await {
        Ok(()) => Disposition::Done,
        Err(e) => {
            tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "dead-letter queue unreachable");
            Disposition::Retry
        }
    }
}

/// Hides the message for `seconds` and keeps it. A short SQS outage is
/// ridden out with a few tries; after that the queue's own visibility timeout
/// (6 minutes) brings the message back: later than scheduled, never lost.
async fn retry_in(app: &App, source: Source, record: &SqsMessage, seconds: i32) -> Disposition {
    let (Some(receipt), Some(queue_url)) = (&record.receipt_handle, source.queue_url(app)) else {
        return Disposition::Retry;
    };
    let result = with_backoff(&BRIEF_BACKOFF_MS, || {
        app.queue
            .change_visibility(queue_url, receipt, seconds.max(1))
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(
            error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(),
            "could not change visibility; the queue default applies"
        );
    }
    Disposition::Retry
}

// ------------------------------------------------------------------ reconciler

/// The reconciler's handler: one run at the current time; the scheduled
/// event's payload is not read. Answers the run's counts.
pub async fn reconcile(app: &App) -> shared::Result<serde_json::Value> {
    let done = shared::outbox::reconcile(app, Utc::now()).await;
    if let Ok(done) = &done {
        shared::telemetry::overdue(done.requeued);
    }
    shared::telemetry::flush_metrics();
    let done = done?;
    Ok(serde_json::json!({
        "requeued": done.requeued, "released": done.released, "endpoints_done": done.endpoints_done,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = Some(id.to_string());
        r
    }

    #[tokio::test]
    async fn a_panicking_record_fails_alone_and_the_batch_goes_on() {
        let mut event = SqsEvent::default();
        event.records = vec![record("a"), record("boom"), record("c")];
        let response = handle_with(event, |r| async move {
            if r.message_id.as_deref() == Some("boom") {
                panic!("a bug in one record");
            }
            Disposition::Done
        })
        .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["boom"]);
    }
}
