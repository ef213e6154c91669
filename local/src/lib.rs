//! The local runner: the API router served on 127.0.0.1 and an emulation of
//! the Lambda SQS event-source mapping (long-poll, hand the batch to the same
//! deliver handler as an `SqsEvent`, delete what succeeded, leave the rest to
//! the visibility timeout the handler set).

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

/// One poll of `queue_url`: receive up to 10 messages, run the handler,
/// delete those it did not report as failed. Returns how many were received.
pub async fn poll_once(
    worker: &Worker,
    queue_url: &str,
    arn: &str,
    wait_seconds: i32,
) -> anyhow::Result<usize> {
    let messages = worker.app.queue.receive(queue_url, wait_seconds).await?;
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
    let response = deliver::handle(worker, event).await;
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
    shared::retry::with_backoff(&[250, 500, 1_000], || {
        worker.app.queue.delete_all(queue_url, &done)
    })
    .await?;
    Ok(received)
}

/// Polls `queue_url` forever, as the Lambda event-source mapping would.
pub fn spawn_event_source(worker: Arc<Worker>, queue_url: String) -> JoinHandle<()> {
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
            if let Err(e) = poll_once(&worker, &queue_url, &arn, 1).await {
                tracing::warn!(error = format!("{e:#}"), queue = %queue_url, "poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    })
}
