//! `GET|POST /postback`: the advertiser's S2S conversion. 200 only once the
//! conversion is durably written and its deliveries queued; anything else
//! makes the advertiser retry, and the retry is answered `duplicate`.

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::inbound::{parse_postback_values, record_postback};
use shared::{App, Error};

use crate::body::{query_pairs, RawBody};
use crate::error::{ApiError, ApiResult};

async fn handle(app: &App, pairs: Vec<(String, Value)>) -> ApiResult<Json<Value>> {
    let recorded = match parse_postback_values(pairs) {
        Ok(postback) => record_postback(app, postback, Utc::now()).await,
        Err(e) => Err(e),
    };
    shared::telemetry::conversion(recorded.as_ref().map(|o| o.status));
    let outcome = recorded?;
    Ok(Json(
        json!({"status": outcome.status, "conversion_id": outcome.event_id}),
    ))
}

/// `GET /postback?click_id=..&event=..&payout=..`.
pub async fn get(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    handle(&app, text_pairs(query.as_deref())?).await
}

/// `POST /postback` with a form or JSON body (query parameters also count;
/// the body's value wins when both name a field).
pub async fn post(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let mut pairs = body_pairs(&body)?;
    pairs.extend(text_pairs(query.as_deref())?);
    handle(&app, pairs).await
}

/// Query parameters as pairs of JSON strings.
fn text_pairs(query: Option<&str>) -> Result<Vec<(String, Value)>, ApiError> {
    Ok(query_pairs(query)?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

/// The body's fields as pairs: JSON objects of scalars, or a form.
fn body_pairs(body: &RawBody) -> Result<Vec<(String, Value)>, ApiError> {
    let looks_json = body.content_type.contains("json")
        || (body.content_type.is_empty()
            && body.bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'));
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    if !looks_json {
        let text = std::str::from_utf8(&body.bytes)
            .map_err(|_| ApiError(Error::MalformedBody("the form body is not UTF-8".into())))?;
        return text_pairs(Some(text));
    }
    let Value::Object(map) = shared::money::payouts_as_written(&body.bytes, body.json()?) else {
        return Err(Error::MalformedBody("the JSON body must be an object".into()).into());
    };
    // Extra parameters keep their JSON types; the known ones are checked by the parser.
    Ok(map.into_iter().collect())
}
