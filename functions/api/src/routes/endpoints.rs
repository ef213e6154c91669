//! A partner's postback subscriptions: `/partners/{pid}/endpoints[/{eid}]`.
//! The rules of an endpoint's fields live in `shared::endpoint` (one parse,
//! one apply for POST, PUT, PATCH and the preview); this file is the HTTP
//! side. Secrets (`secret`, `basic_auth.password`, secret headers) are
//! write-only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::domain::{Endpoint, Method};
use shared::endpoint::{
    sample_event, view, EndpointInput, Mode, MAX_ENDPOINTS_PER_PARTNER, TEST_JSON_BODY,
};
use shared::ids::{DeliveryId, EndpointId, EventId, PartnerId};
use shared::{outbox, App, Error};

use crate::auth::PartnerScope;
use crate::body::RawBody;
use crate::error::ApiResult;
use crate::path::Param;

/// `POST /partners/{pid}/endpoints` → 201 with the endpoint.
pub async fn create(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let input = EndpointInput::parse(&body.object()?.0)?;
    let endpoint = input.apply(Mode::Create, &pid, None, Utc::now())?;
    if app.store.list_endpoints(&pid).await?.len() >= MAX_ENDPOINTS_PER_PARTNER {
        return Err(Error::Conflict(format!(
            "a partner may have at most {MAX_ENDPOINTS_PER_PARTNER} endpoints"
        ))
        .into());
    }
    app.create_endpoint(&endpoint).await?;
    tracing::info!(partner_id = %pid, endpoint_id = %endpoint.id, "endpoint created");
    Ok((StatusCode::CREATED, Json(view(&endpoint))))
}

/// `GET /partners/{pid}/endpoints` → `{"items":[..]}`.
pub async fn list(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = app
        .store
        .list_endpoints(&pid)
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(Json(json!({"items": items})))
}

async fn load(app: &App, pid: &PartnerId, eid: &EndpointId) -> ApiResult<Endpoint> {
    app.store
        .get_endpoint(pid, eid)
        .await?
        .ok_or_else(|| Error::not_found("endpoint", eid).into())
}

/// `GET /partners/{pid}/endpoints/{eid}`.
pub async fn read(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&load(&app, &pid, &eid).await?)))
}

/// `PUT /partners/{pid}/endpoints/{eid}`: replaces every field; omitted
/// write-only values (secret, password, token, secret headers) are kept.
pub async fn update(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    change(&app, &pid, &eid, body, Mode::Replace).await
}

/// `PATCH /partners/{pid}/endpoints/{eid}`: changes only the fields given;
/// every other field, write-only ones included, keeps its value. `null`
/// clears a field that may be empty (`body`, `secret`, `basic_auth`).
pub async fn patch(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    change(&app, &pid, &eid, body, Mode::Patch).await
}

/// PUT and PATCH: the input applied to the stored endpoint, then saved.
async fn change(
    app: &App,
    pid: &PartnerId,
    eid: &EndpointId,
    body: RawBody,
    mode: Mode,
) -> ApiResult<Json<Value>> {
    let input = EndpointInput::parse(&body.object()?.0)?;
    let previous = load(app, pid, eid).await?;
    let endpoint = input.apply(mode, pid, Some(&previous), Utc::now())?;
    save(app, &previous, endpoint).await
}

/// Writes a changed endpoint on the version it was read at, and sends what
/// waited if it was re-activated.
async fn save(app: &App, previous: &Endpoint, endpoint: Endpoint) -> ApiResult<Json<Value>> {
    let (pid, eid) = (&endpoint.partner_id, &endpoint.id);
    let reactivated = !previous.active && endpoint.active;
    let now = Utc::now();
    // Conditional on the version read: a concurrent change answers 409, never reverted.
    app.replace_endpoint(&endpoint, previous.version, reactivated, now)
        .await?;
    if reactivated {
        // What waited while it was paused goes out now: the first page here,
        // the rest (a partner with months of history) by the reconciler,
        // which the mark written with the endpoint hands it to.
        match outbox::release_parked(app, eid, now, 1).await {
            Ok((released, _)) => {
                tracing::info!(partner_id = %pid, endpoint_id = %eid, released, "endpoint re-activated")
            }
            Err(e) => {
                tracing::warn!(partner_id = %pid, endpoint_id = %eid, error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "endpoint re-activated; the reconciler will release what waited")
            }
        }
    }
    Ok(Json(view(&endpoint)))
}

/// `DELETE /partners/{pid}/endpoints/{eid}` → 204.
pub async fn delete(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
) -> ApiResult<StatusCode> {
    // Its parked deliveries are ended (cancelled) by the reconciler, which the
    // mark written with the deletion hands them to.
    if !app.delete_endpoint(&pid, &eid, Utc::now()).await? {
        return Err(Error::not_found("endpoint", &eid).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A prepared request as the test route and the preview show it: secrets masked.
fn shown_request(request: &shared::render::Prepared, endpoint: &Endpoint) -> Value {
    let headers: serde_json::Map<String, Value> = request
        .masked_headers(endpoint)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({"method": request.method, "url": request.url, "headers": headers, "body": request.body})
}

/// `POST /partners/{pid}/endpoints/{eid}/test`: sends a test event now and
/// answers with the exact request (secrets masked), the partner's answer and
/// the macros that rendered empty. Nothing is recorded as a delivery.
pub async fn test(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
) -> ApiResult<Json<Value>> {
    let mut endpoint = load(&app, &pid, &eid).await?;
    if endpoint.method == Method::PostJson && endpoint.body.is_none() {
        endpoint.body = Some(shared::template::Template::literal(TEST_JSON_BODY));
    }
    let now = Utc::now();
    let event = sample_event(&pid, now);
    let delivery_id = DeliveryId::random("test");
    let request = shared::render::prepare(&endpoint, &event, &delivery_id, now.timestamp());
    let sent = app
        .sender
        .send(
            &request,
            std::time::Duration::from_millis(u64::from(endpoint.timeout_ms)),
        )
        .await;
    tracing::info!(partner_id = %pid, endpoint_id = %eid, status = ?sent.status, error = ?sent.error, "test postback sent");
    Ok(Json(json!({
        "success": sent.is_success(),
        "request": shown_request(&request, &endpoint),
        "response": {
            "status": sent.status, "latency_ms": sent.duration.as_millis() as u64, "body": sent.response,
            "error": sent.error.map(|k| k.as_str()), "detail": sent.detail,
        },
        "empty_macros": request.empty_macros,
    })))
}

/// `POST /partners/{pid}/endpoints/preview`: renders an endpoint without
/// sending or storing anything. The body holds a new endpoint's fields, or
/// `endpoint_id` and the fields that would change (PATCH's rules), and
/// optionally `event_id`: a real event of this partner to render instead of
/// the sample. Answers the request with secrets masked, the macros available
/// (standard ones and the event's attributes) and those that rendered empty.
/// The console's live preview, and what a partner sees of a past delivery.
pub async fn preview(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let mut fields = body.object()?;
    let endpoint_id = fields.take_id::<EndpointId>("endpoint_id")?;
    let event_id = fields.take_id::<EventId>("event_id")?;
    let now = Utc::now();
    let mut input = EndpointInput::parse(&fields.0)?;
    let endpoint = match &endpoint_id {
        Some(eid) => {
            let previous = load(&app, &pid, eid).await?;
            input.apply(Mode::Patch, &pid, Some(&previous), now)?
        }
        None => {
            // A form being filled in: the name is not needed to render.
            if !matches!(&input.name, shared::endpoint::Given::Value(n) if !n.trim().is_empty()) {
                input.name = shared::endpoint::Given::Value("preview".into());
            }
            input.apply(Mode::Create, &pid, None, now)?
        }
    };
    let event = match &event_id {
        Some(id) => app
            .store
            .get_event(id)
            .await?
            .filter(|e| e.partner_id == pid)
            .ok_or_else(|| Error::not_found("event", id))?,
        None => sample_event(&pid, now),
    };
    let request = shared::render::prepare(&endpoint, &event, "dlv_preview", now.timestamp());
    let mut macros: Vec<String> = shared::macros::standard_macros()
        .map(str::to_string)
        .collect();
    macros.extend(event.attributes.keys().cloned());
    Ok(Json(json!({
        "request": shown_request(&request, &endpoint),
        "empty_macros": request.empty_macros,
        "macros": macros,
        "event_id": event_id,
    })))
}
