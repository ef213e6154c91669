//! The SQS adapter: batched sends (10 a request, the SQS limit), visibility
//! changes for retries, and the receive/delete pair the local runner uses to
//! emulate the Lambda event-source mapping.

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use crate::error::{unavailable, Error, Result};

/// What a worker wants done with one queue message; the Lambda crate turns
/// it into SQS actions (the use-cases in the library never see SQS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: delete it.
    Ack,
    /// Hide it this many seconds, then it comes back.
    RetryIn(i32),
    /// A store or queue was unavailable: hide it for a back-off that grows
    /// with how often SQS has handed it out.
    RetryAfterOutage,
    /// Leave it as it is: the queue's own visibility timeout brings it back.
    Keep,
    /// It can never be processed: move it to the dead-letter queue with this
    /// reason.
    DeadLetter(String),
}

/// Most entries in one SQS batch request.
pub const MAX_BATCH: usize = 10;

/// SQS queues, by URL.
#[derive(Clone)]
pub struct Queue {
    client: Client,
}

impl Queue {
    /// A queue adapter over `client`.
    pub fn new(client: Client) -> Self {
        Queue { client }
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cheap reachability check for `/health`.
    pub async fn ping(&self, queue_url: &str) -> Result<()> {
        self.client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(unavailable("reading the delivery queue"))?;
        Ok(())
    }

    /// Sends every body, ten per `SendMessageBatch`; entries SQS reports as
    /// failed are retried once, then the call fails naming how many were left.
    pub async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<()> {
        let delayed: Vec<(String, i32)> = bodies.iter().map(|b| (b.clone(), 0)).collect();
        self.send_all_delayed(queue_url, &delayed).await
    }

    /// As [`Queue::send_all`], each body with its own delay in seconds (at
    /// most 900, the SQS limit).
    pub async fn send_all_delayed(&self, queue_url: &str, bodies: &[(String, i32)]) -> Result<()> {
        let requests = bodies
            .chunks(MAX_BATCH)
            .map(|chunk| self.send_chunk(queue_url, chunk));
        for result in futures::future::join_all(requests).await {
            result?;
        }
        Ok(())
    }

    async fn send_chunk(&self, queue_url: &str, chunk: &[(String, i32)]) -> Result<()> {
        let mut todo: Vec<usize> = (0..chunk.len()).collect();
        for _ in 0..2 {
            let entries = todo
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&chunk[i].0)
                        .delay_seconds(chunk[i].1.clamp(0, 900))
                        .build()
                        .map_err(|e| Error::Internal(e.into()))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable("sending to the delivery queue"))?;
            todo = out
                .failed
                .iter()
                .filter_map(|f| f.id.parse().ok())
                .collect();
            if todo.is_empty() {
                return Ok(());
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "SQS refused {} message(s) twice",
            todo.len()
        )))
    }

    /// Sends one message, optionally delayed (at most 900 s, the SQS limit).
    pub async fn send(&self, queue_url: &str, body: &str, delay_seconds: i32) -> Result<()> {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds.clamp(0, 900))
            .send()
            .await
            .map_err(unavailable("sending a message"))?;
        Ok(())
    }

    /// Moves a message that cannot be processed to a dead-letter queue, with
    /// the reason as the `reason` message attribute.
    pub async fn send_dead_letter(&self, queue_url: &str, body: &str, reason: &str) -> Result<()> {
        let reason: String = reason.chars().take(1000).collect();
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(if reason.is_empty() {
                "unknown".to_string()
            } else {
                reason
            })
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(if body.is_empty() { "(empty)" } else { body })
            .message_attributes("reason", attribute)
            .send()
            .await
            .map_err(unavailable("sending to a dead-letter queue"))?;
        Ok(())
    }

    /// Hides a received message for `seconds` more (at most 43,200, the SQS limit).
    pub async fn change_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds.clamp(0, 43_200))
            .send()
            .await
            .map_err(unavailable("changing a message's visibility"))?;
        Ok(())
    }

    /// Up to `max` (at most 10) messages now visible, with their `reason`
    /// attribute and receive count, left visible (visibility 0): a look, not a take.
    pub async fn peek(&self, queue_url: &str, max: i32) -> Result<Vec<Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH as i32))
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(unavailable("reading a dead-letter queue"))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Moves up to `max` messages from `from` to `to` (a dead-letter queue
    /// back to its source), each sent before it is deleted: a failure in
    /// between leaves a copy in both, never in neither. Returns how many moved.
    pub async fn redrive(&self, from: &str, to: &str, max: usize) -> Result<usize> {
        let mut moved = 0;
        while moved < max {
            let out = self
                .client
                .receive_message()
                .queue_url(from)
                .max_number_of_messages(MAX_BATCH as i32)
                .visibility_timeout(60)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(unavailable("reading a dead-letter queue"))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            let bodies: Vec<String> = messages.iter().filter_map(|m| m.body.clone()).collect();
            self.send_all(to, &bodies).await?;
            let handles: Vec<String> = messages
                .iter()
                .filter_map(|m| m.receipt_handle.clone())
                .collect();
            self.delete_all(from, &handles).await?;
            moved += messages.len();
        }
        Ok(moved)
    }

    /// Long-polls up to 10 messages with their attributes (the event-source mapping's receive).
    pub async fn receive(&self, queue_url: &str, wait_seconds: i32) -> Result<Vec<Message>> {
        self.receive_up_to(queue_url, wait_seconds, MAX_BATCH).await
    }

    /// Like [`Self::receive`], at most `max` messages (1 to 10).
    pub async fn receive_up_to(
        &self,
        queue_url: &str,
        wait_seconds: i32,
        max: usize,
    ) -> Result<Vec<Message>> {
        // A long poll waits `wait_seconds` before it answers an empty queue:
        // its timeouts are the client's plus that wait. Else the attempt
        // times out while SQS still holds the poll open, and a message that
        // arrives meanwhile is handed to a request nobody reads: hidden for
        // the queue's whole visibility timeout (6 minutes).
        let wait = std::time::Duration::from_secs(wait_seconds.max(0) as u64);
        let configured = self.client.config().timeout_config();
        let mut timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder();
        if let Some(t) = configured.and_then(|c| c.operation_attempt_timeout()) {
            timeouts = timeouts.operation_attempt_timeout(t + wait);
        }
        if let Some(t) = configured.and_then(|c| c.operation_timeout()) {
            timeouts = timeouts.operation_timeout(t + wait);
        }
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default().timeout_config(timeouts.build()),
            )
            .send()
            .await
            .map_err(unavailable("receiving messages"))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Deletes received messages by receipt handle, ten per request.
    pub async fn delete_all(&self, queue_url: &str, receipt_handles: &[String]) -> Result<()> {
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .map_err(|e| Error::Internal(e.into()))
                })
                .collect::<Result<Vec<_>>>()?;
            self.client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable("deleting messages"))?;
        }
        Ok(())
    }
}
