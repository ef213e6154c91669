//! `GET /health`: 200 once the table and the delivery queue answer.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::App;

use crate::error::ApiResult;

/// Checks DynamoDB and SQS reachability.
pub async fn health(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    app.store.ping().await?;
    app.queue.ping(&app.config.delivery_queue_url).await?;
    Ok(Json(json!({"status": "ok"})))
}
