//! A partner's postback subscriptions: `/partners/{pid}/endpoints[/{eid}]`.
//! Everything is validated when saved (a template that cannot render a valid
//! URL or JSON document is refused then, not discovered at delivery time).
//! Secrets (`secret`, `basic_auth.password`) are write-only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shared::domain::{BasicAuth, Endpoint, Method, Ordering, Status, DEFAULT_TIMEOUT_MS};
use shared::fields::name_field;
use shared::lifecycle::RetrySchedule;
use shared::outbox;
use shared::template::{SampleValues, Template};
use shared::{ids, App, Error};

use crate::auth::PartnerScope;
use crate::body::{http_url, Fields, RawBody};
use crate::error::{ApiError, ApiResult};

/// Most endpoints one partner may have (an event's deliveries must fit one DynamoDB transaction).
pub const MAX_ENDPOINTS_PER_PARTNER: usize = 50;
/// Bounds of one attempt's timeout.
pub const TIMEOUT_MS_RANGE: (u32, u32) = (100, 30_000);

const FIELDS: [&str; 19] = [
    "secret_headers",
    "rename",
    "omit_empty",
    "ordering",
    "name",
    "url",
    "method",
    "body",
    "headers",
    "basic_auth",
    "secret",
    "events",
    "statuses",
    "offers",
    "goals",
    "invalidations",
    "retry_schedule",
    "timeout_ms",
    "active",
];
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
];

/// The endpoint as the API shows it: secrets are reported as set, never shown.
pub fn view(e: &Endpoint) -> Value {
    json!({
        "id": e.id, "partner_id": e.partner_id, "name": e.name, "url": e.url, "method": e.method,
        "body": e.body, "headers": shown_headers(e),
        "basic_auth": e.basic_auth.as_ref().map(|b| match &b.token {
            Some(_) => json!({"token_set": true}),
            None => json!({"username": b.username, "password_set": true}),
        }),
        "secret_headers": e.secret_headers,
        "secret_set": e.secret.is_some(),
        "events": e.events, "statuses": e.statuses, "offers": e.offers, "goals": e.goals,
        "invalidations": e.invalidations, "rename": e.rename, "omit_empty": e.omit_empty,
        "ordering": e.ordering.as_str(),
        "retry_schedule": e.retry_schedule, "timeout_ms": e.timeout_ms,
        "active": e.active, "paused_reason": e.paused_reason, "paused_at": e.paused_at,
        "created_at": e.created_at, "updated_at": e.updated_at,
    })
}

/// Headers as shown: the values of secret headers are never sent back.
fn shown_headers(e: &Endpoint) -> Value {
    e.headers
        .iter()
        .map(|(k, v)| {
            let secret = e.secret_headers.iter().any(|h| h.eq_ignore_ascii_case(k));
            (k.clone(), if secret { Value::Null } else { json!(v) })
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

fn template(field: &str, text: &str) -> ApiResult<Template> {
    Template::parse(text).map_err(|e| {
        ApiError(Error::invalid(
            field,
            format!("`{field}` is not a valid template: {e}"),
        ))
    })
}

/// Builds an endpoint from a request body. On update, `previous` supplies the
/// id, creation time and the write-only secrets the body leaves out.
fn from_body(f: &Fields, partner_id: &str, previous: Option<&Endpoint>) -> ApiResult<Endpoint> {
    f.only(&FIELDS)?;
    let url = f.str("url", 2048)?;
    let url_template = template("url", &url)?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            Error::invalid("url", "`url` must not contain spaces or control characters").into(),
        );
    }
    if shared::template::macro_in_authority(&url) {
        return Err(Error::invalid(
            "url",
            "`url` may use macros only after the host (in the path or query)",
        )
        .into());
    }
    http_url(
        "url",
        &url_template.render_url(&SampleValues, &mut BTreeSet::new()),
    )?;

    let method = match f.opt_str("method")?.as_deref() {
        None | Some("GET") => Method::Get,
        Some("POST_FORM") => Method::PostForm,
        Some("POST_JSON") => Method::PostJson,
        Some(_) => {
            return Err(
                Error::invalid("method", "`method` must be GET, POST_FORM or POST_JSON").into(),
            )
        }
    };
    let body = f.opt_str("body")?.filter(|b| !b.is_empty());
    if let Some(text) = &body {
        if text.len() > 16 * 1024 {
            return Err(Error::invalid("body", "`body` is longer than 16 KiB").into());
        }
        let t = template("body", text)?;
        match method {
            Method::Get => {
                return Err(
                    Error::invalid("body", "`body` needs method POST_FORM or POST_JSON").into(),
                )
            }
            Method::PostJson => {
                let sample = t.render_json(&SampleValues, &mut BTreeSet::new());
                serde_json::from_str::<Value>(&sample).map_err(|e| {
                    ApiError(Error::invalid(
                        "body",
                        format!("`body` does not render to valid JSON: {e}"),
                    ))
                })?;
            }
            Method::PostForm => {}
        }
    }

    let secret_headers: Vec<String> = match f.opt_str_list("secret_headers")? {
        Some(list) => list,
        None => previous
            .map(|p| p.secret_headers.clone())
            .unwrap_or_default(),
    };
    // Write-only: a secret header's value left out (or null) keeps the stored one.
    let headers = match f.0.get("headers") {
        // A full replacement without headers keeps only the write-only ones.
        None => previous
            .map(|p| {
                p.headers
                    .iter()
                    .filter(|(k, _)| secret_headers.iter().any(|h| h.eq_ignore_ascii_case(k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        Some(Value::Object(m)) => {
            let mut kept = BTreeMap::new();
            for (name, value) in m {
                let secret = secret_headers.iter().any(|h| h.eq_ignore_ascii_case(name));
                match value {
                    Value::Null if secret => {
                        if let Some(v) = previous.and_then(|p| p.headers.get(name)) {
                            kept.insert(name.clone(), v.clone());
                        }
                    }
                    Value::String(v) => {
                        kept.insert(name.clone(), v.clone());
                    }
                    _ => {
                        return Err(Error::invalid(
                            format!("headers.{name}"),
                            format!("`headers.{name}` must be a string"),
                        )
                        .into())
                    }
                }
            }
            if let Some(p) = previous {
                for name in &secret_headers {
                    if let Some((k, v)) =
                        p.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))
                    {
                        kept.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            kept
        }
        Some(Value::Null) => BTreeMap::new(),
        Some(_) => return Err(Error::invalid("headers", "`headers` must be an object").into()),
    };
    for name in &secret_headers {
        if !headers.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            return Err(Error::invalid(
                "secret_headers",
                format!("`secret_headers` names `{name}`, which is not one of `headers`"),
            )
            .into());
        }
    }
    if headers.len() > 20 {
        return Err(Error::invalid("headers", "`headers` may hold at most 20 entries").into());
    }
    for (name, value) in &headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(Error::invalid(
                format!("headers.{name}"),
                format!("`{name}` is not a valid header name"),
            )
            .into());
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::invalid(
                format!("headers.{name}"),
                format!("`{name}` is set by the service"),
            )
            .into());
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("headers.{name}"),
                format!("`{name}` must not contain line breaks or control characters"),
            )
            .into());
        }
        template(&format!("headers.{name}"), value)?;
    }

    let basic_auth = match f.opt_object("basic_auth")? {
        None if f.has("basic_auth") => None,
        None => previous.and_then(|p| p.basic_auth.clone()),
        Some(b) if b.has("token") => {
            b.only(&["token"])?;
            let token = b.str("token", 1024)?;
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    "basic_auth.token",
                    "`basic_auth.token` must not contain spaces or control characters",
                )
                .into());
            }
            Some(BasicAuth {
                username: String::new(),
                password: String::new(),
                token: Some(token),
            })
        }
        Some(b) => {
            b.only(&["username", "password"])?;
            let username = b
                .str("username", 256)
                .map_err(|_| Error::missing("basic_auth.username"))?;
            if username.contains(':') {
                return Err(Error::invalid(
                    "basic_auth.username",
                    "`basic_auth.username` must not contain `:`",
                )
                .into());
            }
            let password = match b.opt_str("password")? {
                Some(p) => p,
                None => previous
                    .and_then(|p| p.basic_auth.as_ref())
                    .map(|a| a.password.clone())
                    .ok_or_else(|| Error::missing("basic_auth.password"))?,
            };
            Some(BasicAuth {
                username,
                password,
                token: None,
            })
        }
    };
    let secret = match f.opt_str("secret")? {
        Some(s) if !(16..=256).contains(&s.len()) => {
            return Err(Error::invalid("secret", "`secret` must be 16 to 256 characters").into())
        }
        Some(s) => Some(s),
        None if f.has("secret") => None,
        None => previous.and_then(|p| p.secret.clone()),
    };

    let events = f
        .opt_str_list("events")?
        .unwrap_or_else(|| vec!["*".into()]);
    if events.is_empty() {
        return Err(
            Error::invalid("events", "`events` must name at least one event, or `*`").into(),
        );
    }
    for e in &events {
        if e != "*" {
            name_field("events", e)?;
        }
    }
    let statuses = f
        .opt_str_list("statuses")?
        .unwrap_or_default()
        .iter()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Error::invalid(
                    "statuses",
                    "`statuses` may hold pending, approved and rejected",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let goals = f.opt_str_list("goals")?.unwrap_or_default();
    for g in &goals {
        name_field("goals", g)?;
    }

    let rename = f.opt_str_map("rename")?.unwrap_or_default();
    if rename.len() > 20 {
        return Err(Error::invalid("rename", "`rename` may hold at most 20 names").into());
    }
    for (from, to) in &rename {
        name_field("rename", from)?;
        if to.is_empty() || to.chars().count() > 64 || to.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("rename.{from}"),
                format!("`rename.{from}` must be 1 to 64 printable characters"),
            )
            .into());
        }
    }

    let retry_schedule = match f.0.get("retry_schedule") {
        None | Some(Value::Null) => RetrySchedule::default(),
        Some(v) => retry_schedule(v)?,
    };
    let now = Utc::now();
    let active = f.opt_bool("active")?.unwrap_or(true);
    // Still paused: keep when and why; newly paused: now; active: neither.
    let (paused_at, paused_reason) = match (active, previous) {
        (true, _) => (None, None),
        (false, Some(p)) if !p.active => (p.paused_at.or(Some(now)), p.paused_reason.clone()),
        (false, _) => (Some(now), None),
    };
    Ok(Endpoint {
        id: previous
            .map(|p| p.id.clone())
            .unwrap_or_else(|| ids::resource_id("ep")),
        partner_id: partner_id.to_string(),
        name: f.str("name", 200)?,
        url,
        method,
        body,
        headers,
        secret_headers,
        basic_auth,
        secret,
        events,
        statuses,
        offers: f.opt_str_list("offers")?.unwrap_or_default(),
        goals,
        invalidations: f.opt_bool("invalidations")?.unwrap_or(false),
        rename,
        omit_empty: f.opt_bool("omit_empty")?.unwrap_or(false),
        retry_schedule,
        timeout_ms: f
            .opt_u32("timeout_ms", TIMEOUT_MS_RANGE.0, TIMEOUT_MS_RANGE.1)?
            .unwrap_or(DEFAULT_TIMEOUT_MS),
        active,
        version: previous.map(|p| p.version + 1).unwrap_or(1),
        paused_reason,
        paused_at,
        // The worker's mark, not the partner's: an edit keeps it.
        slow_until: previous.and_then(|p| p.slow_until),
        ordering: match f.opt_str("ordering")? {
            None => previous.map(|p| p.ordering).unwrap_or_default(),
            Some(raw) => Ordering::parse(&raw).ok_or_else(|| {
                Error::invalid("ordering", "`ordering` must be `in_order` or `latest_only`")
            })?,
        },
        created_at: previous.map(|p| p.created_at).unwrap_or(now),
        updated_at: now,
    })
}

/// A retry schedule: a list of delays in seconds, within the lifecycle's limits.
pub fn retry_schedule(v: &Value) -> Result<RetrySchedule, ApiError> {
    let bad = |m: String| {
        ApiError(Error::invalid(
            "retry_schedule",
            format!("`retry_schedule` {m}"),
        ))
    };
    let items = v
        .as_array()
        .ok_or_else(|| bad("must be a list of delays in seconds".into()))?;
    let delays = items
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| bad("must hold whole numbers of seconds".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RetrySchedule::new(delays).map_err(bad)
}

/// `POST /partners/{pid}/endpoints` → 201 with the endpoint.
pub async fn create(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let endpoint = from_body(&body.object()?, &pid, None)?;
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

async fn load(app: &App, pid: &str, eid: &str) -> ApiResult<Endpoint> {
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
    Path((_, eid)): Path<(String, String)>,
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
    Path((_, eid)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let previous = load(&app, &pid, &eid).await?;
    let endpoint = from_body(&body.object()?, &pid, Some(&previous))?;
    save(&app, &previous, endpoint).await
}

/// `PATCH /partners/{pid}/endpoints/{eid}`: changes only the fields given;
/// every other field, write-only ones included, keeps its value. `null`
/// clears a field that may be empty (`body`, `secret`, `basic_auth`).
pub async fn patch(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Path((_, eid)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let previous = load(&app, &pid, &eid).await?;
    let changes = body.object()?;
    changes.only(&FIELDS)?;
    let mut merged = as_input(&previous);
    merged.extend(changes.0);
    let endpoint = from_body(&Fields(merged), &pid, Some(&previous))?;
    save(&app, &previous, endpoint).await
}

/// The endpoint as a request body that would recreate it (write-only values
/// left out: `from_body` keeps them from the stored endpoint).
fn as_input(e: &Endpoint) -> serde_json::Map<String, Value> {
    let headers: serde_json::Map<String, Value> = e
        .headers
        .iter()
        .map(|(k, v)| {
            let secret = e.secret_headers.iter().any(|h| h.eq_ignore_ascii_case(k));
            (k.clone(), if secret { Value::Null } else { json!(v) })
        })
        .collect();
    let mut m = json!({
        "name": e.name, "url": e.url, "method": e.method, "headers": headers,
        "secret_headers": e.secret_headers, "events": e.events, "statuses": e.statuses,
        "offers": e.offers, "goals": e.goals, "invalidations": e.invalidations,
        "rename": e.rename, "omit_empty": e.omit_empty, "ordering": e.ordering.as_str(), "retry_schedule": e.retry_schedule,
        "timeout_ms": e.timeout_ms, "active": e.active,
    });
    if let Some(body) = &e.body {
        m["body"] = json!(body);
    }
    match m {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
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
    Path((_, eid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    // Its parked deliveries are ended (cancelled) by the reconciler, which the
    // mark written with the deletion hands them to.
    if !app.delete_endpoint(&pid, &eid, Utc::now()).await? {
        return Err(Error::not_found("endpoint", &eid).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The body PartnerStack sends as a test event; ours for JSON endpoints without a template.
pub const TEST_JSON_BODY: &str = r#"{"event":"test","data":{"message":"Test event sent!"}}"#;

/// A sample event for the test route: every standard field set, no attributes
/// (so the answer shows which attribute macros would render empty).
fn test_event(partner_id: &str, now: chrono::DateTime<Utc>) -> shared::domain::Event {
    shared::domain::Event {
        id: format!("evt_test_{}", &ids::click_id()[..10]),
        source: shared::domain::Source::Internal,
        event: "test".into(),
        status: Status::Approved,
        transaction_id: Some(format!("test-{}", &ids::click_id()[..10])),
        partner_id: partner_id.to_string(),
        click_id: Some("test-click".into()),
        lead_id: Some("test-lead".into()),
        offer_id: Some("test-offer".into()),
        advertiser: Some("Test advertiser".into()),
        goal: Some("test".into()),
        payout: rust_decimal::Decimal::ZERO,
        currency: "USD".into(),
        occurred_at: now,
        recorded_at: now,
        deleted_at: None,
        attributes: Default::default(),
        delivery_ids: Vec::new(),
        sequence: 1,
        superseded: false,
    }
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
    Path((_, eid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut endpoint = load(&app, &pid, &eid).await?;
    if endpoint.method == Method::PostJson && endpoint.body.is_none() {
        endpoint.body = Some(TEST_JSON_BODY.to_string());
    }
    let now = Utc::now();
    let event = test_event(&pid, now);
    let delivery_id = format!("test_{}", &ids::click_id()[..16]);
    let request = shared::render::prepare(&endpoint, &event, &delivery_id, now.timestamp())
        .map_err(|e| Error::Conflict(format!("the endpoint's templates no longer render: {e}")))?;
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
    let mut take_id = |name: &str| -> ApiResult<Option<String>> {
        match fields.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(shared::fields::id_field(name, &v)?)),
            Some(_) => Err(Error::invalid(name, format!("`{name}` must be a string")).into()),
        }
    };
    let endpoint_id = take_id("endpoint_id")?;
    let event_id = take_id("event_id")?;
    fields.only(&FIELDS)?;
    let endpoint = match &endpoint_id {
        Some(eid) => {
            let previous = load(&app, &pid, eid).await?;
            let mut merged = as_input(&previous);
            merged.extend(fields.0);
            from_body(&Fields(merged), &pid, Some(&previous))?
        }
        None => {
            // A form being filled in: the name is not needed to render.
            if fields
                .0
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| n.trim().is_empty())
            {
                fields.0.insert("name".into(), json!("preview"));
            }
            from_body(&fields, &pid, None)?
        }
    };
    let now = Utc::now();
    let event = match &event_id {
        Some(id) => app
            .store
            .get_event(id)
            .await?
            .filter(|e| e.partner_id == pid)
            .ok_or_else(|| Error::not_found("event", id))?,
        None => test_event(&pid, now),
    };
    let request = shared::render::prepare(&endpoint, &event, "dlv_preview", now.timestamp())
        .map_err(|e| Error::invalid("url", e))?;
    let mut macros: Vec<String> = shared::template::standard_macros()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(m) => Fields(m),
            _ => unreachable!(),
        }
    }

    fn refused_field(v: Value) -> String {
        match from_body(&fields(v), "p", None) {
            Err(ApiError(Error::Invalid { field, .. })) => field,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_minimal_endpoint_gets_the_defaults() {
        let e = from_body(
            &fields(json!({"name": "n", "url": "https://p.example/pb?tx={transaction_id}"})),
            "p",
            None,
        )
        .unwrap();
        assert_eq!(e.method, Method::Get);
        assert_eq!(e.retry_schedule, RetrySchedule::default());
        assert_eq!(e.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(e.events, ["*"]);
        assert!(e.active && !e.invalidations);
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_field() {
        let base = json!({"name": "n", "url": "https://p.example/pb"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(refused_field(with("url", json!("ftp://x/"))), "url");
        assert_eq!(
            refused_field(with("url", json!("https://p.example/?a={payout"))),
            "url"
        );
        assert_eq!(refused_field(with("method", json!("PATCH"))), "method");
        assert_eq!(refused_field(with("body", json!("a={payout}"))), "body");
        let mut json_body = with("method", json!("POST_JSON"));
        json_body["body"] = json!("{\"a\": {payout}, ");
        assert_eq!(refused_field(json_body), "body");
        assert_eq!(
            refused_field(with("retry_schedule", json!([0, 43201]))),
            "retry_schedule"
        );
        assert_eq!(
            refused_field(with("retry_schedule", json!([]))),
            "retry_schedule"
        );
        assert_eq!(
            refused_field(with("retry_schedule", json!(vec![0; 21]))),
            "retry_schedule"
        );
        assert_eq!(
            refused_field(with("timeout_ms", json!(60_000))),
            "timeout_ms"
        );
        assert_eq!(refused_field(with("statuses", json!(["paid"]))), "statuses");
        assert_eq!(
            refused_field(with("headers", json!({"Host": "x"}))),
            "headers.Host"
        );
        assert_eq!(
            refused_field(with("url", json!("https://{sub1}.partner.example/pb"))),
            "url"
        );
        assert_eq!(
            refused_field(with("headers", json!({"X-A": "a\r\nX-B: b"}))),
            "headers.X-A"
        );
        assert_eq!(refused_field(with("secret", json!("short"))), "secret");
        assert_eq!(refused_field(with("colour", json!("red"))), "colour");
    }

    #[test]
    fn secrets_are_kept_when_an_update_leaves_them_out_and_never_shown() {
        let first = from_body(
            &fields(
                json!({"name": "n", "url": "https://p.example/", "secret": "0123456789abcdef0123",
                "basic_auth": {"username": "u", "password": "pw-123"}}),
            ),
            "p",
            None,
        )
        .unwrap();
        let second = from_body(&fields(json!({"name": "n2", "url": "https://p.example/", "basic_auth": {"username": "u2"}})), "p", Some(&first)).unwrap();
        assert_eq!(second.secret, first.secret);
        assert_eq!(second.basic_auth.as_ref().unwrap().password, "pw-123");
        let shown = view(&second).to_string();
        assert!(
            !shown.contains("0123456789abcdef0123") && !shown.contains("pw-123"),
            "{shown}"
        );
        let cleared = from_body(
            &fields(json!({"name": "n", "url": "https://p.example/", "secret": null})),
            "p",
            Some(&first),
        )
        .unwrap();
        assert_eq!(cleared.secret, None);
    }

    #[test]
    fn headers_are_a_string_map() {
        let e = from_body(&fields(json!({"name": "n", "url": "https://p.example/", "headers": {"X-Token": "t-{partner_id}"}})), "p", None).unwrap();
        assert_eq!(
            e.headers,
            BTreeMap::from([("X-Token".to_string(), "t-{partner_id}".to_string())])
        );
    }
}
