//! `POST /events` (admin, our pipelines): one event object or an array of up
//! to 100. Each item is validated and recorded on its own, all or nothing per
//! item; the answer lists each item's outcome.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::inbound::{parse_events_body, record_internal};
use shared::{App, Error};

use crate::auth::Auth;
use crate::body::RawBody;
use crate::error::{ApiError, ApiResult};

fn result_json(index: usize, r: &Result<shared::inbound::Outcome, Error>) -> Value {
    match r {
        Ok(o) => json!({"index": index, "status": o.status, "event_id": o.event_id}),
        Err(e) => {
            json!({"index": index, "status": "error", "error": crate::error::body_of(e)["error"]})
        }
    }
}

/// Single object → 200 `{"status","event_id"}` or the item's own error status.
/// Array → 200 `{"results":[..]}` when every item is recorded or a duplicate,
/// 207 when some item failed (the others are recorded all the same).
pub async fn create(
    State(app): State<Arc<App>>,
    auth: Auth,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.admin_only()?;
    let (single, items) = parse_events_body(&shared::money::payouts_as_written(
        &body.bytes,
        body.json()?,
    ))?;
    // A malformed item refuses the whole array (nothing of it is recorded):
    // the pipeline has a bug to fix, and the contract's schema says so. What
    // is refused for what is stored (an unknown partner, a payout above the
    // offer's maximum) is reported per item below.
    if !single {
        if let Some((i, e)) = items
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
        {
            let (field, message) = match e {
                Error::Invalid { field, .. } => {
                    (format!("[{i}].{field}"), format!("event {i}: {e}"))
                }
                other => (format!("[{i}]"), format!("event {i}: {other}")),
            };
            let code = match e {
                Error::Invalid { code, .. } => code,
                _ => "invalid_field",
            };
            return Err(Error::Invalid {
                field,
                code,
                message,
            }
            .into());
        }
    }
    let now = Utc::now();
    let mut results = Vec::with_capacity(items.len());
    // In order: a payout and its invalidation may arrive in one batch.
    for item in items {
        let r = match item {
            Ok(input) => record_internal(&app, input, now).await,
            Err(e) => Err(e),
        };
        shared::telemetry::conversion(r.as_ref().map(|o| o.status));
        if let Err(e) = &r {
            if !e.is_caller_fault() {
                tracing::error!(code = e.code(), error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "event not recorded");
            }
        }
        results.push(r);
    }
    if single {
        return match results.pop() {
            Some(Ok(o)) => Ok((
                StatusCode::OK,
                Json(json!({"status": o.status, "event_id": o.event_id})),
            )),
            Some(Err(e)) => Err(ApiError(e)),
            None => Err(Error::Internal(anyhow::anyhow!("no result for a single event")).into()),
        };
    }
    let all_ok = results.iter().all(Result::is_ok);
    let body = json!({"results": results.iter().enumerate().map(|(i, r)| result_json(i, r)).collect::<Vec<_>>()});
    Ok((
        if all_ok {
            StatusCode::OK
        } else {
            StatusCode::MULTI_STATUS
        },
        Json(body),
    ))
}
