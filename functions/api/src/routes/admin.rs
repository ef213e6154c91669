//! Operator routes (admin): the dead-letter queues, read and re-driven.
//!
//! A delivery message lands in its DLQ when it cannot be parsed (moved by the
//! worker, with a `reason`) or when SQS gave up on it after its receive limit
//! (a long store outage); a pipeline event when it is malformed or refers to
//! nothing we know. Re-driving puts the messages back on their source queue:
//! a delivery message can never cause a second send (the worker's claim
//! refuses a finished or leased delivery), an event is idempotent by its key.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::{App, Error};

use crate::auth::Auth;
use crate::body::query_pairs;
use crate::error::ApiResult;

/// Most messages one re-drive moves; call again for more.
pub const MAX_REDRIVE: usize = 500;

/// The (DLQ, source queue) named by `?queue=deliveries|events`.
fn queues(app: &App, query: Option<&str>) -> Result<(String, String, String), Error> {
    let name = query_pairs(query)?
        .into_iter()
        .find(|(k, _)| k == "queue")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "deliveries".into());
    let missing = |what: &str| Error::Conflict(format!("{what} is not configured"));
    match name.as_str() {
        "deliveries" => Ok((
            name.clone(),
            app.config
                .delivery_dlq_url
                .clone()
                .ok_or_else(|| missing("DELIVERY_DLQ_URL"))?,
            app.config.delivery_queue_url.clone(),
        )),
        "events" => Ok((
            name.clone(),
            app.config
                .events_dlq_url
                .clone()
                .ok_or_else(|| missing("EVENTS_DLQ_URL"))?,
            app.config
                .events_queue_url
                .clone()
                .ok_or_else(|| missing("EVENTS_QUEUE_URL"))?,
        )),
        _ => Err(Error::invalid(
            "queue",
            "`queue` must be deliveries or events",
        )),
    }
}

/// `GET /admin/dead-letters?queue=deliveries|events`: up to ten messages now
/// in the dead-letter queue, each with its body, its reason (when the worker
/// moved it) and how often it was received.
pub async fn list(
    State(app): State<Arc<App>>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let (name, dlq, _) = queues(&app, query.as_deref())?;
    let items: Vec<Value> = app
        .queue
        .peek(&dlq, 10)
        .await?
        .into_iter()
        .map(|m| {
            let attr = |k: &str| {
                m.attributes().and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::from(k))
                        .cloned()
                })
            };
            let body = m.body.clone().unwrap_or_default();
            json!({
                "message_id": m.message_id,
                "body": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)),
                "reason": m.message_attributes().and_then(|a| a.get("reason")).and_then(|v| v.string_value.clone())
                    .unwrap_or_else(|| "receive limit reached (the queue's redrive policy)".into()),
                "receive_count": attr("ApproximateReceiveCount").and_then(|c| c.parse::<u64>().ok()),
                "sent_at_ms": attr("SentTimestamp").and_then(|c| c.parse::<u64>().ok()),
            })
        })
        .collect();
    Ok(Json(json!({"queue": name, "items": items})))
}

/// `POST /admin/dead-letters/redrive?queue=deliveries|events`: moves up to
/// 500 messages back to their source queue; `{"queue","redriven"}`.
pub async fn redrive(
    State(app): State<Arc<App>>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let (name, dlq, source) = queues(&app, query.as_deref())?;
    let moved = app.queue.redrive(&dlq, &source, MAX_REDRIVE).await?;
    tracing::info!(queue = %name, moved, "dead letters re-driven");
    Ok(Json(json!({"queue": name, "redriven": moved})))
}
