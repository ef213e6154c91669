//! Conversions in: the advertiser's S2S postback and our pipelines' internal
//! events. Parsing is pure and names the field at fault; recording writes the
//! event and its deliveries in one transaction, then queues the deliveries.
//!
//! Idempotency: an event's id is derived from its idempotency key, so a retry
//! lands on the same item and answers `duplicate`. A retry also repairs a
//! half-finished request: if the first try stored the event but could not
//! queue its deliveries (and answered 5xx), the retry queues what is still
//! waiting. No event is left recorded without its deliveries queued.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::auth::constant_time_eq;
use crate::domain::{Delivery, DeliveryStatus, Event, Source, Status, Transaction, INVALIDATION};
use crate::error::{Error, Result};
use crate::fanout;
use crate::ids;
use crate::money::{parse_currency, parse_payout};
use crate::store::Recorded;
use crate::App;

/// Longest id we accept from outside (click, transaction, lead, offer, partner ids).
pub const MAX_ID_LEN: usize = 128;
/// Longest event or goal name.
pub const MAX_NAME_LEN: usize = 64;
/// Most extra parameters / attributes stored with a click or event.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest attribute value.
pub const MAX_ATTRIBUTE_LEN: usize = 1024;
/// Most events in one `POST /events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;
/// Event name of a postback that names none.
pub const DEFAULT_EVENT: &str = "conversion";
/// Currency when neither the request nor the offer names one.
pub const DEFAULT_CURRENCY: &str = "USD";

/// What a recorded (or repeated) event answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    /// `recorded` or `duplicate`.
    pub status: &'static str,
    pub event_id: String,
}

impl Outcome {
    fn new(recorded: Recorded, event_id: String) -> Self {
        let status = match recorded {
            Recorded::New => "recorded",
            Recorded::Duplicate => "duplicate",
        };
        Outcome { status, event_id }
    }
}

/// Checks an identifier: not empty, not too long, no control characters.
pub fn id_field(field: &str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::invalid(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if s.chars().count() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("`{field}` is longer than {MAX_ID_LEN} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("`{field}` contains control characters"),
        ));
    }
    Ok(s.to_string())
}

/// Checks an event or goal name: 1-64 characters of letters, digits and `_ . : -`.
pub fn name_field(field: &str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("`{field}` must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err(Error::invalid(
            field,
            format!("`{field}` may hold only letters, digits and _ . : -"),
        ));
    }
    Ok(s.to_string())
}

fn status_field(field: &str, raw: &str) -> Result<Status> {
    Status::parse(raw).ok_or_else(|| {
        Error::invalid(
            field,
            format!("`{field}` must be pending, approved or rejected"),
        )
    })
}

fn attribute(field: &str, key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_NAME_LEN || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("`{field}` has a key that is empty, too long or not printable"),
        ));
    }
    if value.len() > MAX_ATTRIBUTE_LEN {
        return Err(Error::invalid(
            format!("{field}.{key}"),
            format!("`{field}.{key}` is longer than {MAX_ATTRIBUTE_LEN} bytes"),
        ));
    }
    Ok(())
}

/// String attributes (click sub ids, extra postback parameters), checked.
pub fn string_attributes(
    field: &str,
    pairs: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if pairs.len() > MAX_ATTRIBUTES {
        return Err(Error::invalid(
            field,
            format!("`{field}` has more than {MAX_ATTRIBUTES} entries"),
        ));
    }
    for (k, v) in &pairs {
        attribute(field, k, v)?;
    }
    Ok(pairs)
}

// ---------------------------------------------------------------- postback

/// Parameters of `/postback` that are not stored as attributes.
const POSTBACK_FIELDS: [&str; 9] = [
    "click_id",
    "event",
    "payout",
    "currency",
    "transaction_id",
    "measurement",
    "status",
    "security_token",
    "goal",
];

/// A parsed advertiser postback.
#[derive(Debug, Clone, PartialEq)]
pub struct Postback {
    pub click_id: String,
    pub event: String,
    pub payout: Option<Decimal>,
    pub currency: Option<String>,
    pub transaction_id: Option<String>,
    pub status: Status,
    pub goal: Option<String>,
    pub security_token: Option<String>,
    /// Every other parameter, stored as an attribute of the event.
    pub extra: BTreeMap<String, String>,
}

/// Parses postback parameters (query, form or JSON, already flattened to
/// pairs). The first value of a repeated parameter wins.
pub fn parse_postback(pairs: Vec<(String, String)>) -> Result<Postback> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        fields.entry(k).or_insert(v);
    }
    let mut take = |k: &str| fields.remove(k).filter(|v| !v.trim().is_empty());
    let click_id = id_field(
        "click_id",
        &take("click_id").ok_or_else(|| Error::missing("click_id"))?,
    )?;
    let measurement = match take("measurement").as_deref().map(str::trim) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => {
            return Err(Error::invalid(
                "measurement",
                "`measurement` must be 0 or 1",
            ))
        }
    };
    let event = take("event");
    let payout = take("payout");
    if measurement && (event.is_none() || payout.is_none()) {
        let field = if event.is_none() { "event" } else { "payout" };
        return Err(Error::Invalid {
            field: field.into(),
            code: "missing_field",
            message: "`event` and `payout` are required together when `measurement=1`".into(),
        });
    }
    let event = event
        .map(|e| name_field("event", &e))
        .transpose()?
        .unwrap_or_else(|| DEFAULT_EVENT.to_string());
    if event == INVALIDATION {
        return Err(Error::invalid(
            "event",
            "`event=invalidation` is reserved for our pipelines (POST /events)",
        ));
    }
    let payout = payout
        .map(|p| parse_payout("payout", &p, false))
        .transpose()?;
    let currency = take("currency")
        .map(|c| parse_currency("currency", &c))
        .transpose()?;
    let transaction_id = take("transaction_id")
        .map(|t| id_field("transaction_id", &t))
        .transpose()?;
    let status = take("status")
        .map(|s| status_field("status", &s))
        .transpose()?
        .unwrap_or(Status::Approved);
    let goal = take("goal").map(|g| name_field("goal", &g)).transpose()?;
    let security_token = take("security_token");
    fields.retain(|k, _| !POSTBACK_FIELDS.contains(&k.as_str()));
    let extra = string_attributes("parameters", fields)?;
    Ok(Postback {
        click_id,
        event,
        payout,
        currency,
        transaction_id,
        status,
        goal,
        security_token,
        extra,
    })
}

/// The idempotency key of a postback: click, event, transaction and status.
pub fn postback_event_id(p: &Postback) -> String {
    ids::derived_id(
        "evt",
        &[
            "postback",
            &p.click_id,
            &p.event,
            p.transaction_id.as_deref().unwrap_or(""),
            p.status.as_str(),
        ],
    )
}

/// Records an advertiser postback: one consistent read of the click, the
/// offer and the partner's endpoints from the process cache, one transaction,
/// one batched send.
pub async fn record_postback(app: &App, p: Postback, now: DateTime<Utc>) -> Result<Outcome> {
    let click = app
        .store
        .get_click(&p.click_id)
        .await?
        .ok_or_else(|| Error::not_found("click", &p.click_id))?;
    let offer = app.offer(&click.offer_id).await?;
    let offer = offer
        .as_ref()
        .as_ref()
        .ok_or_else(|| Error::not_found("offer", &click.offer_id))?;
    if let Some(expected) = &offer.security_token_sha256 {
        let given = p.security_token.as_deref().ok_or_else(|| {
            Error::Unauthorized("`security_token` is required for this offer".into())
        })?;
        if !constant_time_eq(&ids::sha256_hex(given), expected) {
            return Err(Error::Forbidden(
                "`security_token` is not valid for this offer".into(),
            ));
        }
    }
    if now >= click.expires_at {
        return Err(Error::Gone(format!(
            "click `{}` is past its attribution window (it ended {})",
            click.click_id,
            click.expires_at.to_rfc3339()
        )));
    }
    let mut attributes: BTreeMap<String, Value> = click
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    attributes.extend(
        p.extra
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    let event = Event {
        id: postback_event_id(&p),
        source: Source::Postback,
        event: p.event,
        status: p.status,
        transaction_id: p.transaction_id,
        partner_id: click.partner_id.clone(),
        click_id: Some(click.click_id.clone()),
        lead_id: None,
        offer_id: Some(offer.id.clone()),
        advertiser: Some(offer.advertiser.clone()),
        goal: p.goal,
        payout: p.payout.or(offer.default_payout).unwrap_or(Decimal::ZERO),
        currency: p.currency.unwrap_or_else(|| offer.currency.clone()),
        occurred_at: now,
        recorded_at: now,
        deleted_at: None,
        attributes,
        delivery_ids: Vec::new(),
    };
    record(app, event, None, now).await
}

// ---------------------------------------------------------------- internal events

/// A parsed internal event (`POST /events` item or events-queue message).
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub transaction_id: String,
    pub event: String,
    pub partner_id: Option<String>,
    pub click_id: Option<String>,
    pub lead_id: Option<String>,
    pub offer_id: Option<String>,
    pub goal: Option<String>,
    pub payout: Option<Decimal>,
    pub currency: Option<String>,
    pub status: Status,
    pub occurred_at: Option<DateTime<Utc>>,
    pub attributes: BTreeMap<String, Value>,
}

/// Known fields of an internal event; any other field is refused so that a
/// typo (`transacton_id`) is caught rather than silently ignored.
const EVENT_FIELDS: [&str; 12] = [
    "transaction_id",
    "event",
    "partner_id",
    "click_id",
    "lead_id",
    "offer_id",
    "goal",
    "payout",
    "currency",
    "status",
    "occurred_at",
    "attributes",
];

fn json_text(obj: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if field == "payout" => Ok(Some(n.to_string())),
        Some(_) => Err(Error::invalid(field, format!("`{field}` must be a string"))),
    }
}

/// Parses one internal event object.
pub fn parse_event(value: &Value) -> Result<EventInput> {
    let obj = value
        .as_object()
        .ok_or_else(|| Error::MalformedBody("each event must be a JSON object".into()))?;
    if let Some(unknown) = obj.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
        return Err(Error::invalid(
            unknown.as_str(),
            format!("`{unknown}` is not a field of an event"),
        ));
    }
    let id = |f: &str| json_text(obj, f)?.map(|v| id_field(f, &v)).transpose();
    let transaction_id = id("transaction_id")?.ok_or_else(|| Error::missing("transaction_id"))?;
    let event = name_field(
        "event",
        &json_text(obj, "event")?.ok_or_else(|| Error::missing("event"))?,
    )?;
    let is_invalidation = event == INVALIDATION;
    let payout = json_text(obj, "payout")?
        .map(|p| parse_payout("payout", &p, is_invalidation))
        .transpose()?;
    let occurred_at = json_text(obj, "occurred_at")?
        .map(|t| {
            DateTime::parse_from_rfc3339(t.trim())
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| {
                    Error::invalid(
                        "occurred_at",
                        "`occurred_at` must be an RFC 3339 time such as 2026-01-31T12:00:00Z",
                    )
                })
        })
        .transpose()?;
    let attributes = match obj.get("attributes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => {
            if m.len() > MAX_ATTRIBUTES {
                return Err(Error::invalid(
                    "attributes",
                    format!("`attributes` has more than {MAX_ATTRIBUTES} entries"),
                ));
            }
            for (k, v) in m {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                attribute("attributes", k, &text)?;
            }
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Some(_) => {
            return Err(Error::invalid(
                "attributes",
                "`attributes` must be an object",
            ))
        }
    };
    Ok(EventInput {
        transaction_id,
        event,
        partner_id: id("partner_id")?,
        click_id: id("click_id")?,
        lead_id: id("lead_id")?,
        offer_id: id("offer_id")?,
        goal: json_text(obj, "goal")?
            .map(|g| name_field("goal", &g))
            .transpose()?,
        payout,
        currency: json_text(obj, "currency")?
            .map(|c| parse_currency("currency", &c))
            .transpose()?,
        status: json_text(obj, "status")?
            .map(|s| status_field("status", &s))
            .transpose()?
            .unwrap_or(Status::Approved),
        occurred_at,
        attributes,
    })
}

/// A `POST /events` body: one object, or an array of 1 to 100. Each item is
/// parsed on its own, so one bad item does not refuse its neighbours.
pub fn parse_events_body(value: &Value) -> Result<(bool, Vec<Result<EventInput>>)> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Error::invalid("events", "the array of events is empty"));
            }
            if items.len() > MAX_EVENTS_PER_REQUEST {
                return Err(Error::invalid(
                    "events",
                    format!("at most {MAX_EVENTS_PER_REQUEST} events may be sent in one request"),
                ));
            }
            Ok((false, items.iter().map(parse_event).collect()))
        }
        Value::Object(_) => Ok((true, vec![parse_event(value)])),
        _ => Err(Error::MalformedBody(
            "the body must be an event object or an array of them".into(),
        )),
    }
}

/// The idempotency key of an internal event: transaction, event and status.
pub fn internal_event_id(input: &EventInput) -> String {
    ids::derived_id(
        "evt",
        &[
            "internal",
            &input.transaction_id,
            &input.event,
            input.status.as_str(),
        ],
    )
}

/// Records an internal event: a payout, an invalidation of an earlier one, a
/// status change of a known transaction, or any free event name.
pub async fn record_internal(app: &App, input: EventInput, now: DateTime<Utc>) -> Result<Outcome> {
    let known = app.store.get_transaction(&input.transaction_id).await?;
    let event_id = internal_event_id(&input);
    let is_invalidation = input.event == INVALIDATION;
    let occurred_at = input.occurred_at.unwrap_or(now);

    // What the event inherits from the transaction it continues.
    let base = match (&known, is_invalidation) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => {
            return Err(Error::not_found("transaction", &input.transaction_id));
        }
        (None, false) => None,
    };
    let partner_id = match (&input.partner_id, &base) {
        (Some(p), Some(t)) if p != &t.partner_id => {
            return Err(Error::invalid(
                "partner_id",
                format!(
                    "`partner_id` does not match transaction `{}`",
                    input.transaction_id
                ),
            ))
        }
        (_, Some(t)) => t.partner_id.clone(),
        (Some(p), None) => p.clone(),
        (None, None) => return Err(Error::missing("partner_id")),
    };
    if base.is_none() && app.partner(&partner_id).await?.is_none() {
        return Err(Error::not_found("partner", &partner_id));
    }
    let payout = if is_invalidation {
        let original = base.as_ref().map(|t| t.payout).unwrap_or_default();
        -input.payout.unwrap_or(original).abs()
    } else {
        input
            .payout
            .or(base.as_ref().map(|t| t.payout))
            .unwrap_or(Decimal::ZERO)
    };
    let pick = |own: &Option<String>, inherited: Option<&Option<String>>| {
        own.clone().or_else(|| inherited.cloned().flatten())
    };
    let mut attributes = base
        .as_ref()
        .map(|t| t.attributes.clone())
        .unwrap_or_default();
    attributes.extend(input.attributes.clone());
    let offer_id = pick(&input.offer_id, base.as_ref().map(|t| &t.offer_id));
    // The advertiser's name, for the partner's history (from the cached offer).
    let advertiser = match &offer_id {
        Some(id) => app
            .offer(id)
            .await?
            .as_ref()
            .as_ref()
            .map(|o| o.advertiser.clone()),
        None => None,
    };
    let event = Event {
        id: event_id.clone(),
        source: Source::Internal,
        event: input.event.clone(),
        status: input.status,
        transaction_id: Some(input.transaction_id.clone()),
        partner_id: partner_id.clone(),
        click_id: pick(&input.click_id, base.as_ref().map(|t| &t.click_id)),
        lead_id: pick(&input.lead_id, base.as_ref().map(|t| &t.lead_id)),
        offer_id,
        advertiser,
        goal: pick(&input.goal, base.as_ref().map(|t| &t.goal)),
        payout,
        currency: input
            .currency
            .clone()
            .or_else(|| base.as_ref().map(|t| t.currency.clone()))
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_string()),
        occurred_at,
        recorded_at: now,
        deleted_at: is_invalidation.then_some(occurred_at),
        attributes,
        delivery_ids: Vec::new(),
    };
    let transaction = Transaction {
        transaction_id: input.transaction_id.clone(),
        partner_id,
        event: if is_invalidation {
            base.as_ref()
                .map(|t| t.event.clone())
                .unwrap_or_else(|| event.event.clone())
        } else {
            event.event.clone()
        },
        status: event.status,
        payout: if is_invalidation {
            base.as_ref().map(|t| t.payout).unwrap_or_default()
        } else {
            event.payout
        },
        currency: event.currency.clone(),
        click_id: event.click_id.clone(),
        lead_id: event.lead_id.clone(),
        offer_id: event.offer_id.clone(),
        goal: event.goal.clone(),
        attributes: event.attributes.clone(),
        last_event_id: event_id,
        invalidated_at: if is_invalidation {
            Some(occurred_at)
        } else {
            base.as_ref().and_then(|t| t.invalidated_at)
        },
        updated_at: now,
    };
    record(app, event, Some(transaction), now).await
}

// ---------------------------------------------------------------- shared path

/// Fans `event` out, writes it with its deliveries, then queues them. On a
/// duplicate, queues whatever the first try left unqueued.
async fn record(
    app: &App,
    mut event: Event,
    transaction: Option<Transaction>,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let endpoints = app.partner_endpoints(&event.partner_id).await?;
    let deliveries = fanout::plan(&event, &endpoints, now);
    event.delivery_ids = deliveries.iter().map(|d| d.id.clone()).collect();
    let recorded = app
        .store
        .record_event(&event, &deliveries, transaction.as_ref())
        .await?;
    match recorded {
        Recorded::New => enqueue(app, &deliveries).await?,
        Recorded::Duplicate => requeue_unsent(app, &event.id).await?,
    }
    tracing::info!(event_id = %event.id, event = %event.event, deliveries = deliveries.len(), outcome = ?recorded, "event");
    Ok(Outcome::new(recorded, event.id))
}

/// Puts the deliveries on the delivery queue.
pub async fn enqueue(app: &App, deliveries: &[Delivery]) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let bodies: Vec<String> = deliveries.iter().map(fanout::message).collect();
    app.queue
        .send_all(&app.config.delivery_queue_url, &bodies)
        .await
}

/// Queues again every pending delivery of `endpoint` created since `since`
/// minus the longest schedule allowed (a delivery mid-schedule when the
/// endpoint was paused waits too). Reads the partner's GSI1 history, not the table.
pub async fn requeue_endpoint(
    app: &App,
    endpoint: &crate::domain::Endpoint,
    since: DateTime<Utc>,
) -> Result<usize> {
    let mut query = crate::store::DeliveryQuery {
        partner_id: endpoint.partner_id.clone(),
        from: Some(since - chrono::Duration::seconds(crate::domain::MAX_SCHEDULE_SECONDS as i64)),
        to: None,
        status: Some(DeliveryStatus::Pending),
        endpoint_id: Some(endpoint.id.clone()),
        limit: 500,
        start: None,
    };
    let mut queued = 0;
    loop {
        let page = app.store.query_deliveries(&query).await?;
        enqueue(app, &page.items).await?;
        queued += page.items.len();
        match page.next {
            Some(next) => query.start = Some(next),
            None => return Ok(queued),
        }
    }
}

/// On a repeated request: queue again every delivery of the stored event that
/// was never attempted. A message queued twice is harmless: the worker sends
/// a delivery at most once per due attempt and never after it succeeded.
async fn requeue_unsent(app: &App, event_id: &str) -> Result<()> {
    let Some(stored) = app.store.get_event(event_id).await? else {
        return Err(Error::Internal(anyhow::anyhow!(
            "event {event_id} reported existing but cannot be read"
        )));
    };
    if stored.delivery_ids.is_empty() {
        return Ok(());
    }
    let unsent: Vec<Delivery> = app
        .store
        .get_deliveries(&stored.delivery_ids)
        .await?
        .into_iter()
        .filter(|d| d.status == DeliveryStatus::Pending && d.attempts.is_empty())
        .collect();
    enqueue(app, &unsent).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(list: &[(&str, &str)]) -> Error {
        parse_postback(pairs(list)).expect_err("should be refused")
    }

    fn field_of(e: &Error) -> &str {
        match e {
            Error::Invalid { field, .. } => field,
            _ => panic!("not a field error: {e:?}"),
        }
    }

    #[test]
    fn a_full_postback_parses_and_keeps_extra_parameters() {
        let p = parse_postback(pairs(&[
            ("click_id", "abc123"),
            ("event", "purchase"),
            ("payout", "49.99"),
            ("measurement", "1"),
            ("currency", "eur"),
            ("transaction_id", "T-1"),
            ("order", "o#1"),
            ("security_token", "s3cret"),
        ]))
        .unwrap();
        assert_eq!(p.click_id, "abc123");
        assert_eq!(p.payout.unwrap().to_string(), "49.99");
        assert_eq!(p.currency.as_deref(), Some("EUR"));
        assert_eq!(p.status, Status::Approved);
        assert_eq!(p.extra.get("order").map(String::as_str), Some("o#1"));
        assert!(
            !p.extra.contains_key("security_token"),
            "the token must never become an attribute"
        );
    }

    #[test]
    fn a_bare_postback_defaults_its_event() {
        let p = parse_postback(pairs(&[("click_id", "abc")])).unwrap();
        assert_eq!(p.event, DEFAULT_EVENT);
        assert_eq!(p.payout, None);
    }

    #[test]
    fn click_id_is_required() {
        assert_eq!(field_of(&err(&[("event", "x")])), "click_id");
        assert_eq!(field_of(&err(&[("click_id", " ")])), "click_id");
    }

    #[test]
    fn measurement_requires_event_and_payout_together() {
        assert_eq!(
            field_of(&err(&[
                ("click_id", "a"),
                ("measurement", "1"),
                ("payout", "1")
            ])),
            "event"
        );
        assert_eq!(
            field_of(&err(&[
                ("click_id", "a"),
                ("measurement", "1"),
                ("event", "x")
            ])),
            "payout"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("measurement", "yes")])),
            "measurement"
        );
    }

    #[test]
    fn bad_payouts_are_refused_naming_the_field() {
        for bad in ["abc", "1e3", "1.23456", "-5"] {
            assert_eq!(
                field_of(&err(&[("click_id", "a"), ("payout", bad)])),
                "payout",
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_status_currency_event_and_ids_are_refused() {
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("status", "maybe")])),
            "status"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("currency", "dollars")])),
            "currency"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("event", "has space")])),
            "event"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("event", "invalidation")])),
            "event"
        );
        assert_eq!(
            field_of(&err(&[("click_id", &"x".repeat(129))])),
            "click_id"
        );
        assert_eq!(field_of(&err(&[("click_id", "a\u{0}b")])), "click_id");
    }

    #[test]
    fn too_many_extra_parameters_are_refused() {
        let mut list = pairs(&[("click_id", "a")]);
        for i in 0..=MAX_ATTRIBUTES {
            list.push((format!("p{i}"), "v".into()));
        }
        assert_eq!(field_of(&parse_postback(list).unwrap_err()), "parameters");
    }

    #[test]
    fn the_first_of_repeated_parameters_wins() {
        let p = parse_postback(pairs(&[("click_id", "a"), ("click_id", "b")])).unwrap();
        assert_eq!(p.click_id, "a");
    }

    #[test]
    fn postback_ids_differ_by_event_transaction_and_status_only() {
        let base = parse_postback(pairs(&[
            ("click_id", "a"),
            ("event", "sale"),
            ("payout", "1"),
        ]))
        .unwrap();
        let same = parse_postback(pairs(&[
            ("click_id", "a"),
            ("event", "sale"),
            ("payout", "2"),
        ]))
        .unwrap();
        let other_event = parse_postback(pairs(&[("click_id", "a"), ("event", "lead")])).unwrap();
        let other_tx = parse_postback(pairs(&[
            ("click_id", "a"),
            ("event", "sale"),
            ("transaction_id", "t2"),
        ]))
        .unwrap();
        assert_eq!(postback_event_id(&base), postback_event_id(&same));
        assert_ne!(postback_event_id(&base), postback_event_id(&other_event));
        assert_ne!(postback_event_id(&base), postback_event_id(&other_tx));
    }

    fn event_err(v: Value) -> Error {
        parse_event(&v).expect_err("should be refused")
    }

    #[test]
    fn an_internal_event_parses() {
        let e = parse_event(&json!({
            "transaction_id": "T1", "event": "payout", "partner_id": "prt_1", "payout": "12.50",
            "currency": "usd", "status": "pending", "occurred_at": "2026-01-31T12:00:00+01:00",
            "attributes": {"user_id": "u1", "n": 3}
        }))
        .unwrap();
        assert_eq!(e.payout.unwrap().to_string(), "12.50");
        assert_eq!(e.status, Status::Pending);
        assert_eq!(
            e.occurred_at.unwrap().to_rfc3339(),
            "2026-01-31T11:00:00+00:00"
        );
        assert_eq!(e.attributes["n"], json!(3));
    }

    #[test]
    fn internal_events_name_their_bad_fields() {
        let cases = [
            (json!({"event": "payout"}), "transaction_id"),
            (json!({"transaction_id": "t"}), "event"),
            (
                json!({"transaction_id": "t", "event": "payout", "payout": "abc"}),
                "payout",
            ),
            (
                json!({"transaction_id": "t", "event": "payout", "payout": "-1"}),
                "payout",
            ),
            (
                json!({"transaction_id": "t", "event": "payout", "occurred_at": "yesterday"}),
                "occurred_at",
            ),
            (
                json!({"transaction_id": "t", "event": "payout", "attributes": [1]}),
                "attributes",
            ),
            (
                json!({"transaction_id": "t", "event": "payout", "transacton_id": "x"}),
                "transacton_id",
            ),
            (
                json!({"transaction_id": 5, "event": "payout"}),
                "transaction_id",
            ),
        ];
        for (value, field) in cases {
            assert_eq!(field_of(&event_err(value.clone())), field, "{value}");
        }
    }

    #[test]
    fn invalidations_may_carry_a_negative_payout() {
        let e =
            parse_event(&json!({"transaction_id": "t", "event": "invalidation", "payout": "-5"}))
                .unwrap();
        assert_eq!(e.payout.unwrap().to_string(), "-5");
    }

    #[test]
    fn a_json_number_payout_keeps_its_decimal_text() {
        let e = parse_event(&json!({"transaction_id": "t", "event": "payout", "payout": 49.99}))
            .unwrap();
        assert_eq!(e.payout.unwrap().to_string(), "49.99");
    }

    #[test]
    fn event_batches_are_bounded_and_parsed_item_by_item() {
        let (single, items) =
            parse_events_body(&json!({"transaction_id": "t", "event": "x"})).unwrap();
        assert!(single);
        assert_eq!(items.len(), 1);
        let (_, items) =
            parse_events_body(&json!([{"transaction_id": "t", "event": "x"}, {"event": "x"}]))
                .unwrap();
        assert!(items[0].is_ok() && items[1].is_err());
        assert!(parse_events_body(&json!([])).is_err());
        let many: Vec<Value> = (0..101).map(|_| json!({})).collect();
        assert!(parse_events_body(&Value::Array(many)).is_err());
        assert!(parse_events_body(&json!("x")).is_err());
    }

    #[test]
    fn internal_ids_key_on_transaction_event_and_status() {
        let a =
            parse_event(&json!({"transaction_id": "t", "event": "payout", "status": "pending"}))
                .unwrap();
        let b =
            parse_event(&json!({"transaction_id": "t", "event": "payout", "status": "approved"}))
                .unwrap();
        let a2 = parse_event(
            &json!({"transaction_id": "t", "event": "payout", "status": "pending", "payout": "3"}),
        )
        .unwrap();
        assert_ne!(internal_event_id(&a), internal_event_id(&b));
        assert_eq!(internal_event_id(&a), internal_event_id(&a2));
    }
}
