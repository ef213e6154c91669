//! The local runner: the API router served on 127.0.0.1, an emulation of the
//! Lambda SQS event-source mapping (long-poll, hand the batch to the same
//! handler as an `SqsEvent`, delete what succeeded, leave the rest to the
//! visibility timeout the handler set), with several pollers per queue as
//! Lambda runs several batches at once, and the reconciler on a timer.

pub mod lambda_events;
pub mod provision;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

use deliver::Worker;
use shared::App;

/// Serves the API router on `addr` (use port 0 for any free port).
pub async fn serve(
    app: Arc<App>,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let router = api::router(app);
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((local, handle))
}

/// The ARN of a queue, as Lambda's event source reports it.
pub async fn queue_arn(app: &App, queue_url: &str) -> anyhow::Result<String> {
    let out = app
        .queue
        .client()
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?;
    out.attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow::anyhow!("queue {queue_url} has no ARN"))
}

fn to_record(m: aws_sdk_sqs::types::Message, arn: &str) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = m.message_id;
    r.receipt_handle = m.receipt_handle;
    r.body = m.body;
    r.md5_of_body = m.md5_of_body;
    r.attributes = m
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect::<HashMap<_, _>>();
    r.event_source = Some("aws:sqs".into());
    r.event_source_arn = Some(arn.to_string());
    r.aws_region = Some("us-east-1".into());
    r
}

/// Which function a queue feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// The delivery queue: `deliver::handle`.
    Deliveries,
    /// The slow delivery queue: `deliver::handle_lane(.., Lane::Slow, ..)`.
    SlowDeliveries,
    /// The events queue: `deliver::handle_events`.
    PipelineEvents,
}

/// One poll of `queue_url`: receive up to 10 messages, run the handler,
/// delete those it did not report as failed. Returns how many were received.
pub async fn poll_once(
    worker: &Worker,
    consumer: Consumer,
    queue_url: &str,
    arn: &str,
    wait_seconds: i32,
) -> anyhow::Result<usize> {
    poll_up_to(worker, consumer, queue_url, arn, wait_seconds, 10).await
}

/// [`poll_once`] with at most `batch` messages an invocation (the SQS
/// trigger's `BatchSize`).
pub async fn poll_up_to(
    worker: &Worker,
    consumer: Consumer,
    queue_url: &str,
    arn: &str,
    wait_seconds: i32,
    batch: usize,
) -> anyhow::Result<usize> {
    let messages = worker
        .app
        .queue
        .receive_up_to(queue_url, wait_seconds, batch)
        .await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let received = messages.len();
    let mut event = SqsEvent::default();
    event.records = messages.into_iter().map(|m| to_record(m, arn)).collect();
    let handles: HashMap<String, String> = event
        .records
        .iter()
        .filter_map(|r| Some((r.message_id.clone()?, r.receipt_handle.clone()?)))
        .collect();
    let response = match consumer {
        Consumer::Deliveries => deliver::handle(worker, event).await,
        Consumer::SlowDeliveries => {
            deliver::handle_lane(worker, shared::delivery::Lane::Slow, event).await
        }
        Consumer::PipelineEvents => deliver::handle_events(worker, event).await,
    };
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let done: Vec<String> = handles
        .iter()
        .filter(|(id, _)| !failed.contains(&id.as_str()))
        .map(|(_, h)| h.clone())
        .collect();
    // As the Lambda event-source mapping does, retry a failed delete; a message
    // left undeleted comes back after its visibility timeout and is acknowledged then.
    shared::backoff::with_backoff(&[250, 500, 1_000], || {
        worker.app.queue.delete_all(queue_url, &done)
    })
    .await?;
    Ok(received)
}

/// Lambda's SQS event-source mapping runs at least five batches at once;
/// so do the local pollers (`LOCAL_POLLERS`), so that one slow partner does
/// not hold up every other delivery.
pub const DEFAULT_POLLERS: usize = 5;

/// Polls `queue_url` forever with `pollers` concurrent pollers, as the Lambda
/// event-source mapping would.
pub fn spawn_event_source(
    worker: Arc<Worker>,
    consumer: Consumer,
    queue_url: String,
    pollers: usize,
) -> Vec<JoinHandle<()>> {
    (0..pollers.max(1))
        .map(|_| {
            let (worker, queue_url) = (worker.clone(), queue_url.clone());
            tokio::spawn(async move {
                let arn = loop {
                    match queue_arn(&worker.app, &queue_url).await {
                        Ok(arn) => break arn,
                        Err(e) => {
                            tracing::warn!(error = %e, queue = %queue_url, "queue not reachable yet");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                };
                loop {
                    if let Err(e) = poll_once(&worker, consumer, &queue_url, &arn, 1).await {
                        tracing::warn!(error = format!("{e:#}"), queue = %queue_url, "poll failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            })
        })
        .collect()
}

/// Runs the reconciler every `every`, as the EventBridge schedule does in AWS.
pub fn spawn_reconciler(app: Arc<App>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = deliver::reconcile(&app).await {
                tracing::warn!(
                    error = %e.detail(),
                    "reconciler run failed; the next one retries"
                );
            }
        }
    })
}
