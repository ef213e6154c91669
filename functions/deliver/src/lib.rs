//! The SQS lambdas and the reconciler, over the shared library:
//!
//! * [`handle`] (binary `deliver`): the delivery queue, one message per
//!   delivery. Each is claimed (one conditional write), sent, and its attempt
//!   recorded (one write); the lifecycle ([`shared::lifecycle`]) decides what
//!   comes next, and a retry hides the message until the next attempt is due
//!   with `ChangeMessageVisibility` and reports it in `batchItemFailures`.
//! * [`handle_events`] (binary `events`): the events queue, our pipelines'
//!   events, recorded by the same code as `POST /events`. Its own function, so
//!   a flood of pipeline events never takes the deliveries' concurrency.
//! * binary `reconcile`: [`shared::outbox::reconcile`] on a schedule.
//!
//! A message that cannot be parsed goes to its dead-letter queue with the
//! reason and is acknowledged; nothing is dropped silently.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use shared::backoff::{with_backoff, BRIEF_BACKOFF_MS};
use shared::breaker::{Breakers, Gate, Health, TRIP_AFTER};
use shared::domain::Endpoint;
use shared::fanout::DeliveryMessage;
use shared::lifecycle::Delivery;
use shared::lifecycle::{outage_backoff_seconds, visibility_until, AttemptError, Sent, Step};
use shared::render::prepare;
use shared::store::Claim;
use shared::{inbound, App};

/// Records of one batch processed at once (a batch holds at most 10).
pub const CONCURRENCY: usize = 10;
/// Extra lease beyond the endpoint's timeout, to record the attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

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
    /// This process's circuit breakers, by endpoint.
    pub breakers: Breakers,
}

impl Worker {
    /// A worker over the app's clients (its HTTP client has the SSRF guard on
    /// unless configured off).
    pub fn new(app: Arc<App>) -> anyhow::Result<Self> {
        Ok(Worker {
            app,
            breakers: Breakers::default(),
        })
    }
}

/// Handles one batch of the delivery queue.
pub async fn handle(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let response = handle_with(event, |record| deliver(worker, record)).await;
    shared::telemetry::flush_metrics();
    response
}

/// Handles one batch of the events queue.
pub async fn handle_events(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let response = handle_with(event, |record| ingest_event(worker, record)).await;
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

async fn dead_letter(
    app: &App,
    queue: &'static str,
    dlq: Option<&String>,
    body: &str,
    reason: &str,
) -> Disposition {
    tracing::warn!(
        reason,
        queue,
        "moving an unprocessable message to the dead-letter queue"
    );
    shared::telemetry::dead_lettered(queue);
    let Some(url) = dlq else {
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
async fn retry_in(app: &App, queue_url: &str, record: &SqsMessage, seconds: i32) -> Disposition {
    let Some(receipt) = &record.receipt_handle else {
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

/// After a store or queue outage: back off by how often SQS has handed the
/// message out already, so that a long outage costs few receives.
async fn retry_after_outage(app: &App, queue_url: &str, record: &SqsMessage) -> Disposition {
    let received = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    retry_in(app, queue_url, record, outage_backoff_seconds(received)).await
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

// ------------------------------------------------------------------ events

async fn ingest_event(worker: &Worker, record: SqsMessage) -> Disposition {
    let app = &worker.app;
    let dlq = app.config.events_dlq_url.as_ref();
    let body = record.body.as_deref().unwrap_or("");
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return dead_letter(app, "events", dlq, body, &format!("not JSON: {e}")).await,
    };
    let input = match inbound::parse_event(&value) {
        Ok(i) => i,
        Err(e) => {
            shared::telemetry::conversion(Err(&e));
            return dead_letter(app, "events", dlq, body, &format!("{}: {e}", e.code())).await;
        }
    };
    let span = tracing::info_span!("pipeline_event", transaction_id = %input.transaction_id, event = %input.event);
    let recorded = inbound::record_internal(app, input, Utc::now())
        .instrument(span)
        .await;
    shared::telemetry::conversion(recorded.as_ref().map(|o| o.status));
    match recorded {
        Ok(_) => Disposition::Done,
        Err(e) if !e.is_caller_fault() => {
            tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "pipeline event not recorded; SQS will redeliver");
            match &app.config.events_queue_url {
                Some(url) => retry_after_outage(app, url, &record).await,
                None => Disposition::Retry,
            }
        }
        Err(e) => dead_letter(app, "events", dlq, body, &format!("{}: {e}", e.code())).await,
    }
}

// ------------------------------------------------------------------ deliveries

async fn deliver(worker: &Worker, record: SqsMessage) -> Disposition {
    let app = &worker.app;
    let body = record.body.as_deref().unwrap_or("");
    let message: DeliveryMessage = match serde_json::from_str(body) {
        Ok(m) => m,
        Err(e) => {
            return dead_letter(
                app,
                "delivery",
                app.config.delivery_dlq_url.as_ref(),
                body,
                &format!("unparseable delivery message: {e}"),
            )
            .await
        }
    };
    let span = tracing::info_span!(
        "delivery",
        delivery_id = %message.delivery_id,
        endpoint_id = %message.endpoint_id,
        partner_id = %message.partner_id
    );
    deliver_message(worker, &record, &message)
        .instrument(span)
        .await
}

/// The endpoint as the worker must act on it. The cached list serves the
/// common case (active and listed); anything else (missing, paused) is read
/// again from the store, so a stale cache can neither cancel nor hold back a
/// delivery whose endpoint is in fact active.
async fn endpoint_of(app: &App, m: &DeliveryMessage) -> shared::Result<Option<Endpoint>> {
    let cached = app
        .partner_endpoints(&m.partner_id)
        .await?
        .iter()
        .find(|e| e.id == m.endpoint_id)
        .cloned();
    match cached {
        Some(e) if e.active => Ok(Some(e)),
        _ => app.store.get_endpoint(&m.partner_id, &m.endpoint_id).await,
    }
}

async fn deliver_message(worker: &Worker, record: &SqsMessage, m: &DeliveryMessage) -> Disposition {
    let app = &worker.app;
    let queue_url = app.config.delivery_queue_url.as_str();
    let endpoint = match endpoint_of(app, m).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "endpoints unavailable");
            return retry_after_outage(app, queue_url, record).await;
        }
    };
    let timeout = Duration::from_millis(u64::from(
        endpoint.as_ref().map(|e| e.timeout_ms).unwrap_or(10_000),
    ));
    let now = Utc::now();
    let mut delivery = match app
        .store
        .claim_delivery(&m.delivery_id, now, timeout + LEASE_MARGIN)
        .await
    {
        Ok(Claim::Claimed(d)) => d,
        Ok(Claim::Finished(d)) => {
            tracing::info!(status = ?d.status, "already finished; acknowledged without sending");
            return Disposition::Done;
        }
        Ok(Claim::Parked) => {
            tracing::info!("parked on a paused endpoint; re-activation queues it again");
            return Disposition::Done;
        }
        Ok(Claim::Missing) => {
            tracing::warn!("no such delivery; acknowledged");
            return Disposition::Done;
        }
        Ok(Claim::NotDue(at)) | Ok(Claim::Leased(at)) => {
            return retry_in(app, queue_url, record, visibility_until(at, now)).await;
        }
        Err(e) => {
            tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "could not claim the delivery");
            return retry_after_outage(app, queue_url, record).await;
        }
    };
    let Some(endpoint) = endpoint else {
        delivery.cancel("endpoint deleted", now);
        return finish(app, record, delivery, Step::Finished).await;
    };
    if !endpoint.active {
        let open = delivery.clone();
        let reason = endpoint
            .paused_reason
            .clone()
            .unwrap_or_else(|| "endpoint paused".into());
        delivery.park(reason, now);
        return match app.store.park_delivery(&delivery, &endpoint).await {
            Ok(true) => {
                tracing::info!("endpoint paused; delivery parked until it is re-activated");
                shared::telemetry::delivery("parked");
                Disposition::Done
            }
            Ok(false) => {
                // The endpoint changed under us (re-activated, deleted): release and look again.
                tracing::info!("endpoint changed while parking; trying again");
                finish(app, record, open, Step::RetryIn(1)).await
            }
            Err(e) => {
                tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "could not park the delivery");
                retry_after_outage(app, queue_url, record).await
            }
        };
    }
    if let Gate::Open(until) = worker.breakers.gate(&endpoint.id, now) {
        // Held without an attempt, so a hung partner cannot hold the pool.
        delivery.hold(
            format!(
                "held: the endpoint timed out {TRIP_AFTER} times in a row; next try after {}",
                until.to_rfc3339()
            ),
            until,
            now,
        );
        let wait = visibility_until(until, now) as u32;
        return finish(app, record, delivery, Step::RetryIn(wait)).await;
    }
    let step = attempt(worker, &endpoint, &mut delivery, now).await;
    finish(app, record, delivery, step).await
}

/// Makes one attempt and records it on the delivery; what comes next.
pub async fn attempt(
    worker: &Worker,
    endpoint: &Endpoint,
    d: &mut Delivery,
    now: DateTime<Utc>,
) -> Step {
    let sent = match prepare(endpoint, &d.event, &d.id, now.timestamp()) {
        Ok(request) => {
            worker
                .app
                .sender
                .send(
                    &request,
                    Duration::from_millis(u64::from(endpoint.timeout_ms)),
                )
                .await
        }
        Err(reason) => Sent::unsendable(reason),
    };
    let step = d.record(&sent, &endpoint.retry_schedule, now);
    if sent.status.is_some() {
        shared::telemetry::attempt_latency(sent.duration);
    }
    let health = if sent.error == Some(AttemptError::Timeout) {
        Health::TimedOut
    } else {
        Health::Answered
    };
    worker.breakers.record(&endpoint.id, health, Utc::now());
    if !sent.is_success() {
        tracing::info!(attempt = d.attempts.len(), error = ?sent.error, detail = ?sent.detail, status = ?sent.status, next = ?step, "attempt failed");
    }
    if sent.status == Some(410) {
        pause_gone(worker, endpoint, now).await;
    }
    step
}

/// A 410 Gone means the partner removed this endpoint: pause it so nothing
/// more is sent. The write is conditional on the version the worker read, so
/// a change the partner made meanwhile (new URL, deletion) is never reverted.
async fn pause_gone(worker: &Worker, endpoint: &Endpoint, now: DateTime<Utc>) {
    let mut paused = endpoint.clone();
    paused.active = false;
    paused.paused_reason = Some(format!("answered 410 Gone at {}", now.to_rfc3339()));
    paused.paused_at = Some(now);
    paused.updated_at = now;
    paused.version = endpoint.version + 1;
    match worker
        .app
        .replace_endpoint(&paused, endpoint.version, false, now)
        .await
    {
        Ok(()) => {
            tracing::warn!(endpoint_id = %endpoint.id, "endpoint answered 410 Gone and was paused")
        }
        Err(e) if e.is_caller_fault() => {
            tracing::info!(endpoint_id = %endpoint.id, reason = %e, "endpoint answered 410 but was changed meanwhile; left as it is")
        }
        Err(e) => {
            tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "could not pause the endpoint")
        }
    }
}

/// Stores the delivery (releasing the lease); with a delay, hides the message
/// until the next attempt is due and keeps it, else acknowledges it.
async fn finish(app: &App, record: &SqsMessage, d: Delivery, step: Step) -> Disposition {
    // After a send, failing to record it risks a second send once the lease
    // ends: keep trying for a while (the SDK also retries each call).
    let stored = with_backoff(&BRIEF_BACKOFF_MS, || app.store.put_delivery(&d)).await;
    if let Err(e) = stored {
        tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "could not record the attempt; the message will come back");
        return Disposition::Retry;
    }
    tracing::info!(status = ?d.status, attempts = d.attempts.len(), reason = ?d.reason, "delivery updated");
    shared::telemetry::delivery(match &step {
        Step::RetryIn(_) => "retrying",
        Step::Finished => d.status.as_str(),
    });
    match step {
        Step::RetryIn(secs) => {
            retry_in(app, &app.config.delivery_queue_url, record, secs as i32).await
        }
        Step::Finished => Disposition::Done,
    }
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
