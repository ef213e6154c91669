//! The SQS lambda. Two queues feed it:
//!
//! * the delivery queue: one message per delivery. Each is claimed (one
//!   conditional write), sent, and its attempt recorded (one write). On
//!   failure the message is hidden for the next delay of the endpoint's
//!   schedule with `ChangeMessageVisibility` and reported in
//!   `batchItemFailures`, so SQS hands it back when the next attempt is due.
//! * the events queue: our pipelines' events, one per message, recorded by
//!   the same code as `POST /events`.
//!
//! A message that cannot be parsed goes to its dead-letter queue with the
//! reason and is acknowledged; nothing is dropped silently.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use shared::domain::{Attempt, Delivery, DeliveryStatus, Endpoint};
use shared::fanout::DeliveryMessage;
use shared::render::prepare;
use shared::retry::{next_delay, with_backoff, BRIEF_BACKOFF_MS};
use shared::sender::{ErrorKind, Sent};
use shared::store::Claim;
use shared::{ingest, App};

/// Records of one batch processed at once (a batch holds at most 10).
pub const CONCURRENCY: usize = 10;
/// Extra lease beyond the endpoint's timeout, to record the attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Visibility after a store or queue outage, so the message comes back soon.
const TRANSIENT_RETRY_SECONDS: i32 = 10;

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
}

impl Worker {
    /// A worker over the app's clients (its HTTP client has the SSRF guard on
    /// unless configured off).
    pub fn new(app: Arc<App>) -> anyhow::Result<Self> {
        Ok(Worker { app })
    }
}

/// Handles one SQS batch: records run concurrently; the failed ones are
/// reported so that only they come back.
pub async fn handle(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let outcomes: Vec<(Option<String>, Disposition)> = futures::stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone();
            (id, process(worker, record).await)
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

fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or("")
}

/// Whether the record came from the events queue (else the delivery queue).
fn from_events_queue(app: &App, record: &SqsMessage) -> bool {
    match (&app.config.events_queue_url, &record.event_source_arn) {
        (Some(url), Some(arn)) => queue_name(url) == queue_name(arn),
        _ => false,
    }
}

async fn process(worker: &Worker, record: SqsMessage) -> Disposition {
    if from_events_queue(&worker.app, &record) {
        ingest_event(worker, &record).await
    } else {
        deliver(worker, &record).await
    }
}

async fn dead_letter(app: &App, dlq: Option<&String>, body: &str, reason: &str) -> Disposition {
    tracing::warn!(
        reason,
        "moving an unprocessable message to the dead-letter queue"
    );
    let Some(url) = dlq else {
        // No DLQ configured: let the queue's own redrive policy move it.
        return Disposition::Retry;
    };
    match app.queue.send_dead_letter(url, body, reason).await {
        Ok(()) => Disposition::Done,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "dead-letter queue unreachable");
            Disposition::Retry
        }
    }
}

/// Hides the message for `seconds` and keeps it. A short SQS outage is
/// ridden out with a few tries; after that the queue's own visibility timeout
/// (6 minutes) brings the message back: later than scheduled, never lost.
async fn retry_soon(app: &App, queue_url: &str, record: &SqsMessage, seconds: i32) -> Disposition {
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
            error = format!("{e:#}"),
            "could not change visibility; the queue default applies"
        );
    }
    Disposition::Retry
}

// ------------------------------------------------------------------ events

async fn ingest_event(worker: &Worker, record: &SqsMessage) -> Disposition {
    let app = &worker.app;
    let dlq = app.config.events_dlq_url.as_ref();
    let body = record.body.as_deref().unwrap_or("");
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return dead_letter(app, dlq, body, &format!("not JSON: {e}")).await,
    };
    let input = match ingest::parse_event(&value) {
        Ok(i) => i,
        Err(e) => return dead_letter(app, dlq, body, &format!("{}: {e}", e.code())).await,
    };
    let span = tracing::info_span!("pipeline_event", transaction_id = %input.transaction_id, event = %input.event);
    match ingest::record_internal(app, input, Utc::now())
        .instrument(span)
        .await
    {
        Ok(_) => Disposition::Done,
        Err(e) if e.is_server_error() => {
            tracing::error!(error = ?e, "pipeline event not recorded; SQS will redeliver");
            Disposition::Retry
        }
        Err(e) => dead_letter(app, dlq, body, &format!("{}: {e}", e.code())).await,
    }
}

// ------------------------------------------------------------------ deliveries

async fn deliver(worker: &Worker, record: &SqsMessage) -> Disposition {
    let app = &worker.app;
    let body = record.body.as_deref().unwrap_or("");
    let message: DeliveryMessage = match serde_json::from_str(body) {
        Ok(m) => m,
        Err(e) => {
            return dead_letter(
                app,
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
    deliver_message(worker, record, &message)
        .instrument(span)
        .await
}

/// The endpoint, re-read once if the cached list predates it.
async fn endpoint_of(app: &App, m: &DeliveryMessage) -> shared::Result<Option<Endpoint>> {
    let find = |list: &Vec<Endpoint>| list.iter().find(|e| e.id == m.endpoint_id).cloned();
    if let Some(e) = find(&*app.partner_endpoints(&m.partner_id).await?) {
        return Ok(Some(e));
    }
    app.endpoints.invalidate(&m.partner_id);
    Ok(find(&*app.partner_endpoints(&m.partner_id).await?))
}

fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i32 {
    let ms = (at - now).num_milliseconds().max(0);
    ((ms + 999) / 1000).clamp(1, 43_200) as i32
}

async fn deliver_message(worker: &Worker, record: &SqsMessage, m: &DeliveryMessage) -> Disposition {
    let app = &worker.app;
    let queue_url = app.config.delivery_queue_url.as_str();
    let endpoint = match endpoint_of(app, m).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = ?e, "endpoints unavailable");
            return retry_soon(app, queue_url, record, TRANSIENT_RETRY_SECONDS).await;
        }
    };
    let timeout = Duration::from_millis(u64::from(
        endpoint.as_ref().map(|e| e.timeout_ms).unwrap_or(10_000),
    ));
    let now = Utc::now();
    let delivery = match app
        .store
        .claim_delivery(&m.delivery_id, now, timeout + LEASE_MARGIN)
        .await
    {
        Ok(Claim::Claimed(d)) => d,
        Ok(Claim::Finished(d)) => {
            tracing::info!(status = ?d.status, "already finished; acknowledged without sending");
            return Disposition::Done;
        }
        Ok(Claim::Missing) => {
            tracing::warn!("no such delivery; acknowledged");
            return Disposition::Done;
        }
        Ok(Claim::NotDue(at)) | Ok(Claim::Leased(at)) => {
            return retry_soon(app, queue_url, record, seconds_until(at, now)).await;
        }
        Err(e) => {
            tracing::error!(error = ?e, "could not claim the delivery");
            return retry_soon(app, queue_url, record, TRANSIENT_RETRY_SECONDS).await;
        }
    };
    let Some(endpoint) = endpoint else {
        let mut d = delivery;
        d.status = DeliveryStatus::Failed;
        d.next_attempt_at = None;
        d.updated_at = now;
        return finish(app, record, d, None, "endpoint deleted").await;
    };
    if !endpoint.active {
        // Paused: keep it pending (this write releases the lease); re-activating the endpoint queues it again.
        tracing::info!("endpoint paused; delivery kept pending");
        return finish(app, record, delivery, None, "endpoint paused").await;
    }
    let (d, delay) = attempt(worker, &endpoint, delivery, now).await;
    finish(app, record, d, delay, "attempted").await
}

/// Makes one attempt and returns the delivery as it now stands, with the
/// delay before the next attempt if there is one.
pub async fn attempt(
    worker: &Worker,
    endpoint: &Endpoint,
    mut d: Delivery,
    now: DateTime<Utc>,
) -> (Delivery, Option<u32>) {
    let in_round = d.attempts.len().saturating_sub(d.round_start) + 1;
    let manual = d.round_start > 0 && d.attempts.len() == d.round_start;
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
        Err(reason) => Sent {
            status: None,
            error: Some(ErrorKind::Request),
            detail: Some(reason),
            retry_after: None,
            response: None,
            duration: Duration::ZERO,
        },
    };
    let mut record = Attempt {
        n: d.attempts.len() as u32 + 1,
        at: now,
        ms: sent.duration.as_millis() as u64,
        code: sent.status,
        error: sent.error.map(|k| k.as_str().to_string()),
        response: sent.response.clone(),
        next_at: None,
        manual,
    };
    let mut delay = None;
    if sent.is_success() {
        d.status = DeliveryStatus::Delivered;
        d.next_attempt_at = None;
    } else {
        let retryable = sent.error.is_some_and(ErrorKind::is_retryable);
        delay = if retryable {
            next_delay(&endpoint.retry_schedule, in_round, sent.retry_after)
        } else {
            None
        };
        match delay {
            Some(secs) => {
                let at = now + chrono::Duration::seconds(i64::from(secs));
                record.next_at = Some(at);
                d.next_attempt_at = Some(at);
                d.status = DeliveryStatus::Pending;
            }
            None => {
                d.status = DeliveryStatus::Failed;
                d.next_attempt_at = None;
            }
        }
        tracing::info!(attempt = record.n, error = ?sent.error, detail = ?sent.detail, status = ?sent.status, next_in = ?delay, "attempt failed");
    }
    if sent.status == Some(410) {
        pause_gone(worker, endpoint, now).await;
    }
    d.attempts.push(record);
    d.updated_at = now;
    (d, delay)
}

/// A 410 Gone means the partner removed this endpoint: pause it so nothing
/// more is sent; deliveries wait, pending, until it is re-activated.
async fn pause_gone(worker: &Worker, endpoint: &Endpoint, now: DateTime<Utc>) {
    let mut paused = endpoint.clone();
    paused.active = false;
    paused.paused_reason = Some(format!("answered 410 Gone at {}", now.to_rfc3339()));
    paused.paused_at = Some(now);
    paused.updated_at = now;
    match worker.app.store.put_endpoint(&paused).await {
        Ok(()) => {
            tracing::warn!(endpoint_id = %endpoint.id, "endpoint answered 410 Gone and was paused")
        }
        Err(e) => tracing::error!(error = ?e, "could not pause the endpoint"),
    }
    worker.app.endpoints.invalidate(&endpoint.partner_id);
}

/// Stores the delivery (releasing the lease); with a delay, hides the message
/// until the next attempt is due and keeps it, else acknowledges it.
async fn finish(
    app: &App,
    record: &SqsMessage,
    d: Delivery,
    delay: Option<u32>,
    what: &str,
) -> Disposition {
    // After a send, failing to record it risks a second send once the lease
    // ends: keep trying for a while (the SDK also retries each call).
    let stored = with_backoff(&BRIEF_BACKOFF_MS, || app.store.put_delivery(&d)).await;
    if let Err(e) = stored {
        tracing::error!(error = ?e, "could not record the attempt; the message will come back");
        return Disposition::Retry;
    }
    tracing::info!(status = ?d.status, attempts = d.attempts.len(), what, "delivery updated");
    match delay {
        Some(secs) => retry_soon(app, &app.config.delivery_queue_url, record, secs as i32).await,
        None => Disposition::Done,
    }
}
