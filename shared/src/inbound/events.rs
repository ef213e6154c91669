//! Our pipelines' events: `POST /events` and the events queue.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::identity::{classify, remember, transaction_event_id, Identity};
use super::{record, too_busy, Outcome, With, DEFAULT_CURRENCY, MAX_EVENTS_PER_REQUEST, MAX_RACES};
use crate::domain::{Event, SeenChange, Source, Status, Transaction, INVALIDATION};
use crate::error::{Error, Result};
use crate::fields::{json_attributes, name_field, status_field};
use crate::ids::{ClickId, EventId, LeadId, OfferId, PartnerId, TransactionId, TypedId};
use crate::money::{parse_currency, parse_payout};
use crate::store::Recorded;
use crate::App;

/// A parsed internal event (`POST /events` item or events-queue message).
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub transaction_id: TransactionId,
    pub event: String,
    pub partner_id: Option<PartnerId>,
    pub click_id: Option<ClickId>,
    pub lead_id: Option<LeadId>,
    pub offer_id: Option<OfferId>,
    pub goal: Option<String>,
    pub payout: Option<Decimal>,
    pub currency: Option<String>,
    pub status: Status,
    pub occurred_at: Option<DateTime<Utc>>,
    pub attributes: BTreeMap<String, Value>,
    /// An invalidation that arrived before its payout, now applied after it:
    /// it reverses that payout whatever the two times say (its own arrival
    /// time is older than the payout's when neither named one).
    pub after_its_payout: bool,
}

impl EventInput {
    /// The event as the object it came as (what [`parse_event`] reads back).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v));
            }
        };
        put("transaction_id", Some(self.transaction_id.to_string()));
        put("event", Some(self.event.clone()));
        put(
            "partner_id",
            self.partner_id.as_ref().map(|v| v.to_string()),
        );
        put("click_id", self.click_id.as_ref().map(|v| v.to_string()));
        put("lead_id", self.lead_id.as_ref().map(|v| v.to_string()));
        put("offer_id", self.offer_id.as_ref().map(|v| v.to_string()));
        put("goal", self.goal.clone());
        put("payout", self.payout.map(|p| p.to_string()));
        put("currency", self.currency.clone());
        put("status", Some(self.status.as_str().into()));
        put("occurred_at", self.occurred_at.map(|t| t.to_rfc3339()));
        if !self.attributes.is_empty() {
            m.insert(
                "attributes".into(),
                Value::Object(self.attributes.clone().into_iter().collect()),
            );
        }
        Value::Object(m)
    }
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
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(_)) if field == "payout" => Err(Error::invalid(
            field,
            "`payout` must be decimal text such as \"12.50\" or a whole number (a JSON number with a fraction is a float)",
        )),
        Some(_) => Err(Error::invalid(field, format!("`{field}` must be a string"))),
    }
}

/// The event's own value, else the one it inherits from its transaction.
fn pick<T: Clone>(own: &Option<T>, inherited: Option<&Option<T>>) -> Option<T> {
    own.clone().or_else(|| inherited.cloned().flatten())
}

/// An optional id field: absent, null or `""` is `None`, anything else
/// follows the id's rule.
fn optional_id<T: TypedId>(obj: &Map<String, Value>) -> Result<Option<T>> {
    json_text(obj, T::FIELD)?
        .map(|v| T::parse_as(T::FIELD, &v))
        .transpose()
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
    let transaction_id = json_text(obj, "transaction_id")?
        .ok_or_else(|| Error::missing("transaction_id"))
        .and_then(|t| TransactionId::parse(&t))?;
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
            DateTime::parse_from_rfc3339(&t)
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
        Some(Value::Object(m)) => json_attributes(
            "attributes",
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        )?,
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
        partner_id: optional_id::<PartnerId>(obj)?,
        click_id: optional_id::<ClickId>(obj)?,
        lead_id: optional_id::<LeadId>(obj)?,
        offer_id: optional_id::<OfferId>(obj)?,
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
        after_its_payout: false,
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

/// Records an internal event: a payout, an invalidation of an earlier one, a
/// status change of a known transaction, or any free event name.
pub async fn record_internal(app: &App, input: EventInput, now: DateTime<Utc>) -> Result<Outcome> {
    for n in 0..MAX_RACES {
        if let Some(outcome) = record_internal_once(app, &input, now).await? {
            return Ok(outcome);
        }
        super::after_lost_race(n).await;
    }
    Err(too_busy(&input.transaction_id))
}

/// One decision on the transaction as read now; `None` if it changed meanwhile.
async fn record_internal_once(
    app: &App,
    input: &EventInput,
    now: DateTime<Utc>,
) -> Result<Option<Outcome>> {
    let key = Transaction::key_of(None, &input.transaction_id);
    let stored = app.store.get_transaction(&key).await?;
    let is_invalidation = input.event == INVALIDATION;
    if let Some(t) = &stored {
        // A payout was recorded but the invalidation that waited for it was
        // not applied (the process stopped between the two): apply it first.
        if !t.placeholder && t.waiting_invalidation.is_some() && !is_invalidation {
            match apply_waiting_invalidation(app, t, now).await {
                Ok(()) => {}
                // Refused by the payout it waited for (say, an amount above
                // it): it can never apply, and must not hold the transaction.
                Err(e) if e.is_caller_fault() => {
                    tracing::warn!(transaction_id = %input.transaction_id, error = %e.detail(), "the invalidation that waited for this payout was refused by it; dropped");
                    app.store.drop_waiting_invalidation(t).await?;
                }
                Err(e) => return Err(e),
            }
            return Ok(None);
        }
    }
    // A placeholder holds only a waiting invalidation: no event yet. Past
    // its window it is forgotten (DynamoDB's TTL removes it too).
    let known = stored.clone().filter(|t| !t.placeholder);
    let waiting = stored
        .as_ref()
        .filter(|t| !t.placeholder || now - t.updated_at <= EARLY_INVALIDATION_WAIT)
        .and_then(|t| t.waiting_invalidation.clone());
    if known.is_none() && is_invalidation {
        return wait_for_payout(app, input, stored.as_ref(), waiting.as_deref(), now).await;
    }
    let classify_at = if input.after_its_payout {
        None
    } else {
        input.occurred_at
    };
    let change = match classify(
        known.as_ref(),
        &input.event,
        input.status,
        input.payout,
        classify_at,
    ) {
        Identity::Duplicate(id) => return Ok(Some(Outcome::duplicate(id))),
        identity @ (Identity::Late | Identity::Restated) => {
            let Some(t) = known else {
                return Err(Error::Internal(anyhow::anyhow!(
                    "a late change of no transaction"
                )));
            };
            return record_late(app, input, t, identity == Identity::Restated, now).await;
        }
        Identity::New => 0,
        Identity::Change(n) => n,
    };
    // Where the transaction is stored; a new one's first event holds it.
    let home = match &stored {
        Some(t) => t.first_event.clone(),
        None => app.store.home_of_new(&key).await?,
    };
    let event_id = match (&home, change) {
        (Some(first), 0) => first.clone(),
        _ => transaction_event_id(
            "internal",
            &key,
            change,
            &input.event,
            input.status,
            input.occurred_at,
        ),
    };
    let occurred_at = input.occurred_at.unwrap_or(now);
    // The state's time never goes back (an event without `occurred_at` is
    // the newest by arrival, whatever a pipeline's clock said before).
    let state_at = known
        .as_ref()
        .map_or(occurred_at, |t| occurred_at.max(t.state_time()));

    // What the event inherits from the transaction it continues.
    let base = known.clone();
    let partner_id = match (&input.partner_id, &base) {
        (Some(p), Some(t)) if Some(p) != t.partner_id.as_ref() => {
            return Err(Error::rule(
                "partner_id",
                format!(
                    "`partner_id` does not match transaction `{}`",
                    input.transaction_id
                ),
            ))
        }
        (_, Some(t)) => t.partner_id.clone().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "transaction `{}` is stored without a partner",
                input.transaction_id
            ))
        })?,
        (Some(p), None) => p.clone(),
        (None, None) => {
            return Err(Error::rule(
                "partner_id",
                format!(
                    "`partner_id` is required: transaction `{}` is not known yet",
                    input.transaction_id
                ),
            ))
        }
    };
    if base.is_none() && app.partner(&partner_id).await?.is_none() {
        return Err(Error::not_found("partner", &partner_id));
    }
    let payout = if is_invalidation {
        let original = base.as_ref().map(|t| t.payout).unwrap_or_default();
        let reversed = input.payout.unwrap_or(original).abs();
        if reversed > original.abs() {
            return Err(Error::rule(
                "payout",
                format!(
                    "`payout` of an invalidation cannot reverse more than was paid on transaction `{}` ({})",
                    input.transaction_id,
                    original.abs()
                ),
            ));
        }
        -reversed
    } else {
        input
            .payout
            .or(base.as_ref().map(|t| t.payout))
            .unwrap_or(Decimal::ZERO)
    };
    let offer_id = pick(&input.offer_id, base.as_ref().map(|t| &t.offer_id));
    // The advertiser's name and the offer's attributes (from the cached offer).
    let offer = match &offer_id {
        Some(id) => app.offer(id).await?.as_ref().clone(),
        None => None,
    };
    if !is_invalidation {
        crate::money::within_max("payout", payout, offer.as_ref().and_then(|o| o.max_payout))?;
    }
    let advertiser = offer.as_ref().map(|o| o.advertiser.clone());
    // The offer's attributes, under the transaction's, under this event's own.
    let mut attributes = offer.map(|o| o.attributes).unwrap_or_default();
    attributes.extend(
        base.as_ref()
            .map(|t| t.attributes.clone())
            .unwrap_or_default(),
    );
    attributes.extend(input.attributes.clone());
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
        owed: Default::default(),
        sequence: change + 1,
        superseded: false,
    };
    let transaction = Transaction {
        transaction_id: input.transaction_id.clone(),
        partner_id: Some(partner_id),
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
        last_event_id: event_id.clone(),
        invalidated_at: if is_invalidation {
            Some(occurred_at)
        } else {
            base.as_ref().and_then(|t| t.invalidated_at)
        },
        updated_at: now,
        scope: None,
        changes: change,
        version: stored.as_ref().map_or(1, |t| t.version + 1),
        seen: base.as_ref().map(|t| t.seen.clone()).unwrap_or_default(),
        state_at: Some(state_at),
        last_delivery: base
            .as_ref()
            .map(|t| t.last_delivery.clone())
            .unwrap_or_default(),
        // Carried until applied, right after this write; an invalidation
        // settles it (one reversal per payout).
        waiting_invalidation: if is_invalidation { None } else { waiting },
        placeholder: false,
        first_event: home,
    };
    let mut transaction = transaction;
    remember(
        &mut transaction.seen,
        SeenChange {
            event: input.event.clone(),
            status: input.status,
            occurred_at,
            payout: event.payout,
            event_id: event_id.clone(),
        },
    );
    let follow_up = transaction.clone();
    let with = With {
        transaction: Some((transaction, stored.as_ref().map(|t| t.version))),
        window: None,
    };
    Ok(match record(app, event, with, now).await? {
        Recorded::New => {
            if follow_up.waiting_invalidation.is_some() {
                // The payout an invalidation waited for: apply it now. If this
                // fails, the next event of the transaction applies it.
                if let Err(e) = apply_waiting_invalidation(app, &follow_up, now).await {
                    tracing::warn!(transaction_id = %input.transaction_id, error = %e.detail(), "the waiting invalidation will be applied with the next event");
                }
            }
            Some(Outcome::recorded(event_id))
        }
        Recorded::Duplicate => Some(Outcome::duplicate(event_id)),
        Recorded::Raced => None,
    })
}

/// How long an invalidation that arrived before its payout waits for it.
pub const EARLY_INVALIDATION_WAIT: chrono::Duration = chrono::Duration::days(7);

/// An invalidation of a transaction we have not seen yet (its payout is
/// late, or on its way through another path): kept on a placeholder of the
/// transaction for [`EARLY_INVALIDATION_WAIT`] and applied right after the
/// payout. A second one while it waits is a repeat.
async fn wait_for_payout(
    app: &App,
    input: &EventInput,
    stored: Option<&Transaction>,
    already_waiting: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Outcome>> {
    let key = Transaction::key_of(None, &input.transaction_id);
    let mut waiting = input.clone();
    waiting.occurred_at = Some(input.occurred_at.unwrap_or(now));
    // The id it will have once applied right after its payout.
    let will_be = transaction_event_id(
        "internal",
        &key,
        1,
        &input.event,
        input.status,
        waiting.occurred_at,
    );
    if let Some(first) = already_waiting {
        // One reversal per payout: the one already waiting stands.
        let first_at = serde_json::from_str::<Value>(first)
            .ok()
            .and_then(|v| parse_event(&v).ok())
            .and_then(|i| i.occurred_at);
        let id = transaction_event_id("internal", &key, 1, INVALIDATION, input.status, first_at);
        return Ok(Some(Outcome::duplicate(id)));
    }
    let placeholder = Transaction {
        transaction_id: input.transaction_id.clone(),
        partner_id: input.partner_id.clone(),
        event: INVALIDATION.into(),
        status: input.status,
        payout: Decimal::ZERO,
        currency: input
            .currency
            .clone()
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_string()),
        click_id: None,
        lead_id: None,
        offer_id: None,
        goal: None,
        attributes: BTreeMap::new(),
        // The event the invalidation will be once its payout arrives.
        last_event_id: will_be.clone(),
        invalidated_at: None,
        updated_at: now,
        scope: None,
        changes: 0,
        version: stored.map_or(1, |t| t.version + 1),
        seen: Vec::new(),
        state_at: None,
        last_delivery: BTreeMap::new(),
        waiting_invalidation: Some(waiting.to_json().to_string()),
        placeholder: true,
        first_event: match stored {
            Some(t) => t.first_event.clone(),
            None => app.store.home_of_new(&key).await?,
        },
    };
    if !app
        .store
        .put_placeholder(
            &placeholder,
            stored.map(|t| t.version),
            now + EARLY_INVALIDATION_WAIT,
        )
        .await?
    {
        return Ok(None);
    }
    tracing::info!(transaction_id = %input.transaction_id, "an invalidation arrived before its payout; it waits for it");
    Ok(Some(Outcome::waiting(will_be)))
}

/// Applies the invalidation that waited on `t` for its payout.
async fn apply_waiting_invalidation(app: &App, t: &Transaction, now: DateTime<Utc>) -> Result<()> {
    let Some(text) = &t.waiting_invalidation else {
        return Ok(());
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::Internal(anyhow::anyhow!("a stored waiting invalidation: {e}")))?;
    let mut input = parse_event(&value)?;
    input.after_its_payout = true;
    Box::pin(record_internal(app, input, now)).await.map(|_| ())
}

/// A change older than the transaction's state: kept in the history (an
/// event marked `superseded`, no deliveries) and remembered, so its repeats
/// are duplicates; the state does not move. With `restated`, the current
/// state said again later: the same, but the state's time moves to it (and
/// the answer is `duplicate`).
async fn record_late(
    app: &App,
    input: &EventInput,
    t: Transaction,
    restated: bool,
    now: DateTime<Utc>,
) -> Result<Option<Outcome>> {
    let occurred_at = input.occurred_at.unwrap_or(now);
    let key = t.key();
    let event_id = EventId::derive(&[
        "internal-late",
        &key,
        &input.event,
        input.status.as_str(),
        &occurred_at.to_rfc3339(),
    ]);
    let is_invalidation = input.event == INVALIDATION;
    let payout = match (is_invalidation, input.payout) {
        (true, p) => -p.unwrap_or(t.payout).abs(),
        (false, p) => p.unwrap_or(t.payout),
    };
    let mut attributes = t.attributes.clone();
    attributes.extend(input.attributes.clone());
    let event = Event {
        id: event_id.clone(),
        source: Source::Internal,
        event: input.event.clone(),
        status: input.status,
        transaction_id: Some(input.transaction_id.clone()),
        partner_id: t.partner_id.clone().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "transaction `{key}` is stored without a partner"
            ))
        })?,
        click_id: t.click_id.clone(),
        lead_id: t.lead_id.clone(),
        offer_id: t.offer_id.clone(),
        advertiser: None,
        goal: t.goal.clone(),
        payout,
        currency: input.currency.clone().unwrap_or_else(|| t.currency.clone()),
        occurred_at,
        recorded_at: now,
        deleted_at: is_invalidation.then_some(occurred_at),
        attributes,
        delivery_ids: Vec::new(),
        owed: Default::default(),
        sequence: 0,
        superseded: true,
    };
    let read = t.version;
    let mut next = t;
    next.version = read + 1;
    next.updated_at = now;
    if restated {
        next.state_at = Some(occurred_at);
    }
    remember(
        &mut next.seen,
        SeenChange {
            event: input.event.clone(),
            status: input.status,
            occurred_at,
            payout,
            event_id: event_id.clone(),
        },
    );
    tracing::info!(transaction_id = %input.transaction_id, "a change older than the transaction's state: kept, fires nothing");
    let with = With {
        transaction: Some((next, Some(read))),
        window: None,
    };
    Ok(match record(app, event, with, now).await? {
        Recorded::New if restated => Some(Outcome::duplicate(event_id)),
        Recorded::New => Some(Outcome::superseded(event_id)),
        Recorded::Duplicate => Some(Outcome::duplicate(event_id)),
        Recorded::Raced => None,
    })
}
/// The events-queue use-case: one message body, parsed and recorded by the
/// same code as `POST /events`. A body that can never be recorded goes to
/// the dead-letter queue with its reason; an outage keeps it for later.
pub async fn from_queue(app: &crate::App, body: &str) -> crate::queue::Outcome {
    use crate::queue::Outcome;
    use tracing::Instrument;
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => crate::money::payouts_as_written(body.as_bytes(), v),
        Err(e) => return Outcome::DeadLetter(format!("not JSON: {e}")),
    };
    let input = match parse_event(&value) {
        Ok(i) => i,
        Err(e) => {
            crate::telemetry::conversion(Err(&e));
            return Outcome::DeadLetter(format!("{}: {e}", e.code()));
        }
    };
    let span = tracing::info_span!("pipeline_event", transaction_id = %input.transaction_id, event = %input.event);
    let recorded = record_internal(app, input, chrono::Utc::now())
        .instrument(span)
        .await;
    crate::telemetry::conversion(recorded.as_ref().map(|o| o.status));
    match recorded {
        Ok(_) => Outcome::Ack,
        Err(e) if !e.is_caller_fault() => {
            tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "pipeline event not recorded; SQS will redeliver");
            Outcome::RetryAfterOutage
        }
        Err(e) => Outcome::DeadLetter(format!("{}: {e}", e.code())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: &Error) -> &str {
        match e {
            Error::Invalid { field, .. } => field,
            _ => panic!("not a field error: {e:?}"),
        }
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
    fn a_json_payout_is_text_or_a_whole_number_never_a_float() {
        let e = parse_event(&json!({"transaction_id": "t", "event": "payout", "payout": "49.99"}))
            .unwrap();
        assert_eq!(e.payout.unwrap().to_string(), "49.99");
        // As the route reads a body: whole numbers become their text first.
        let text = br#"{"transaction_id": "t", "event": "payout", "payout": 50}"#;
        let v = crate::money::payouts_as_written(text, serde_json::from_slice(text).unwrap());
        assert_eq!(parse_event(&v).unwrap().payout.unwrap().to_string(), "50");
        let text = br#"{"transaction_id": "t", "event": "payout", "payout": 49.99}"#;
        let v = crate::money::payouts_as_written(text, serde_json::from_slice(text).unwrap());
        let e = parse_event(&v).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field, .. } if field == "payout"),
            "{e:?}"
        );
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
}
