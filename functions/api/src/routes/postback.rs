//! `GET|POST /postback`: the advertiser's S2S conversion. 200 only once the
//! conversion is durably written and its deliveries queued; anything else
//! makes the advertiser retry, and the retry is answered `duplicate`.

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::inbound::{parse_postback, record_postback};
use shared::{App, Error};

use crate::body::{query_pairs, RawBody};
use crate::error::{ApiError, ApiResult};

async fn handle(app: &App, pairs: Vec<(String, String)>) -> ApiResult<Json<Value>> {
    let postback = parse_postback(pairs)?;
    let outcome = record_postback(app, postback, Utc::now()).await?;
    Ok(Json(
        json!({"status": outcome.status, "conversion_id": outcome.event_id}),
    ))
}

/// `GET /postback?click_id=..&event=..&payout=..`.
pub async fn get(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    handle(&app, query_pairs(query.as_deref())).await
}

/// `POST /postback` with a form or JSON body (query parameters also count;
/// the body's value wins when both name a field).
pub async fn post(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let mut pairs = body_pairs(&body)?;
    pairs.extend(query_pairs(query.as_deref()));
    handle(&app, pairs).await
}

/// The body's fields as pairs: JSON objects of scalars, or a form.
fn body_pairs(body: &RawBody) -> Result<Vec<(String, String)>, ApiError> {
    let looks_json = body.content_type.contains("json")
        || (body.content_type.is_empty()
            && body.bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'));
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    if !looks_json {
        if std::str::from_utf8(&body.bytes).is_err() {
            return Err(Error::MalformedBody("the form body is not UTF-8".into()).into());
        }
        return Ok(form_urlencoded::parse(&body.bytes).into_owned().collect());
    }
    let Value::Object(map) = body.json()? else {
        return Err(Error::MalformedBody("the JSON body must be an object".into()).into());
    };
    map.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, if b { "1".into() } else { "0".into() })),
            _ => Err(ApiError(Error::invalid(
                k.as_str(),
                format!("`{k}` must be a string or a number"),
            ))),
        })
        .collect()
}
