//! The advertiser's S2S postback: `GET|POST /postback`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

use super::identity::{
    classify, postback_identity, remember, transaction_event_id, Identity, PostbackIdentity,
    PostbackParts,
};
use super::{record, too_busy, Outcome, With, DEFAULT_EVENT, MAX_RACES};
use crate::auth::constant_time_eq;
use crate::domain::{Click, Event, Offer, SeenChange, Source, Status, Transaction, INVALIDATION};
use crate::error::{Error, Result};
use crate::fields::{json_attributes, name_field, status_field};
use crate::ids::{self, ClickId, EventId, TransactionId};
use crate::money::{parse_currency, parse_payout};
use crate::store::Recorded;
use crate::App;

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
    pub click_id: ClickId,
    pub event: String,
    pub payout: Option<Decimal>,
    pub currency: Option<String>,
    pub transaction_id: Option<TransactionId>,
    pub status: Status,
    pub goal: Option<String>,
    pub security_token: Option<String>,
    /// Every other parameter, stored as an attribute of the event.
    pub extra: BTreeMap<String, Value>,
}

/// Parses postback parameters of a query or a form. The first value of a
/// repeated parameter wins.
pub fn parse_postback(pairs: Vec<(String, String)>) -> Result<Postback> {
    parse_postback_values(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// Parses postback parameters that may be JSON values (a JSON body): the
/// known fields must be text, numbers or booleans; every other parameter is
/// kept as the JSON value it is. The first value of a repeated parameter wins.
pub fn parse_postback_values(pairs: Vec<(String, Value)>) -> Result<Postback> {
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in pairs {
        if !v.is_null() {
            fields.entry(k).or_insert(v);
        }
    }
    for known in POSTBACK_FIELDS {
        if let Some(v) = fields.get(known) {
            if v.is_array() || v.is_object() {
                return Err(Error::invalid(
                    known,
                    format!("`{known}` must be a string or a number"),
                ));
            }
        }
    }
    // A JSON body's whole numbers arrive as text (`payouts_as_written`);
    // what is still a number has a fraction or an exponent: a float.
    if fields
        .get("payout")
        .is_some_and(|v| v.is_boolean() || v.is_number())
    {
        return Err(Error::invalid(
            "payout",
            "`payout` must be decimal text such as \"12.50\" or a whole number (a JSON number with a fraction is a float)",
        ));
    }
    let mut take = |k: &str| {
        fields
            .remove(k)
            .map(|v| match v {
                Value::String(s) => s,
                Value::Bool(b) => if b { "1" } else { "0" }.to_string(),
                other => other.to_string(),
            })
            // An unfilled macro (`&transaction_id=&`) is an absent parameter.
            .filter(|v| !v.is_empty())
    };
    let click_id = ClickId::parse(&take("click_id").ok_or_else(|| Error::missing("click_id"))?)?;
    let measurement = match take("measurement").as_deref() {
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
        return Err(Error::rule(
            field,
            "`event` and `payout` are required together when `measurement=1`",
        ));
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
        .map(|t| TransactionId::parse(&t))
        .transpose()?;
    let status = take("status")
        .map(|s| status_field("status", &s))
        .transpose()?
        .unwrap_or(Status::Approved);
    let goal = take("goal").map(|g| name_field("goal", &g)).transpose()?;
    let security_token = take("security_token");
    fields.retain(|k, _| !POSTBACK_FIELDS.contains(&k.as_str()));
    let extra = json_attributes("parameters", fields)?;
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

/// Records an advertiser postback: one read of the click (the offer and the
/// partner's endpoints come from the process cache), one of its transaction
/// if it names one, one write, one batched send.
pub async fn record_postback(app: &App, p: Postback, now: DateTime<Utc>) -> Result<Outcome> {
    // Clicks are written once, long before their conversions: an eventually
    // consistent read (half a unit) finds them, and one that does not (a
    // click written a moment ago) is asked again consistently.
    let click = match app.store.read_click(&p.click_id, false).await? {
        Some(c) => c,
        None => app
            .store
            .read_click(&p.click_id, true)
            .await?
            .ok_or_else(|| Error::not_found("click", &p.click_id))?,
    };
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
    if let Some(payout) = p.payout {
        crate::money::within_max("payout", payout, offer.max_payout)?;
    }
    if now >= click.expires_at {
        return Err(Error::Gone(format!(
            "click `{}` is past its attribution window (it ended {})",
            click.click_id,
            click.expires_at.to_rfc3339()
        )));
    }
    match p.transaction_id.clone() {
        Some(tx) => {
            for n in 0..MAX_RACES {
                // The first decision reads the transaction eventually
                // consistent (half a read unit); after a lost race, consistently.
                let fresh = n > 0;
                if let Some(outcome) =
                    record_transaction(app, &p, &tx, &click, offer, now, fresh).await?
                {
                    return Ok(outcome);
                }
                super::after_lost_race(n).await;
            }
            Err(too_busy(&tx))
        }
        None => record_untracked(app, &p, &click, offer, now).await,
    }
}

/// The event a postback records, before its identity is decided.
fn event_of(p: &Postback, click: &Click, offer: &Offer, id: EventId, now: DateTime<Utc>) -> Event {
    let mut attributes: BTreeMap<String, Value> = offer.attributes.clone();
    attributes.extend(click.attributes.clone());
    attributes.extend(p.extra.clone());
    Event {
        id,
        source: Source::Postback,
        event: p.event.clone(),
        status: p.status,
        transaction_id: p.transaction_id.clone(),
        partner_id: click.partner_id.clone(),
        click_id: Some(click.click_id.clone()),
        lead_id: None,
        offer_id: Some(offer.id.clone()),
        advertiser: Some(offer.advertiser.clone()),
        goal: p.goal.clone(),
        payout: p.payout.or(offer.default_payout).unwrap_or(Decimal::ZERO),
        currency: p.currency.clone().unwrap_or_else(|| offer.currency.clone()),
        occurred_at: now,
        recorded_at: now,
        deleted_at: None,
        attributes,
        delivery_ids: Vec::new(),
        owed: Default::default(),
        sequence: 1,
        superseded: false,
    }
}

/// A postback without a transaction id: the offer's repeat policy decides.
async fn record_untracked(
    app: &App,
    p: &Postback,
    click: &Click,
    offer: &Offer,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let parts = PostbackParts {
        click_id: &click.click_id,
        event: &p.event,
        status: p.status,
        payout: p.payout,
        currency: p.currency.as_deref(),
        goal: p.goal.as_deref(),
        extra: &p.extra,
    };
    let (event_id, with, fingerprint) = match postback_identity(
        offer.repeat_conversions,
        offer.retry_window_seconds,
        &parts,
        now,
    ) {
        PostbackIdentity::Keyed(id) => (id, With::default(), None),
        PostbackIdentity::Windowed {
            fingerprint,
            event_id,
        } => {
            let closes = now + chrono::Duration::seconds(i64::from(offer.retry_window_seconds));
            (
                event_id,
                With {
                    transaction: None,
                    window: Some((fingerprint.clone(), closes)),
                },
                Some(fingerprint),
            )
        }
    };
    let event = event_of(p, click, offer, event_id.clone(), now);
    match (record(app, event, with, now).await?, fingerprint) {
        (Recorded::Duplicate, Some(fp)) => {
            // The identical postback this one repeats: its window's event.
            let first = app.store.window_event(&fp).await?.ok_or_else(|| {
                Error::Unavailable(anyhow::anyhow!("retry window {fp} closed while being read"))
            })?;
            Ok(Outcome::duplicate(first))
        }
        (Recorded::Duplicate, None) => Ok(Outcome::duplicate(event_id)),
        (Recorded::New, _) => Ok(Outcome::recorded(event_id)),
        // No transaction was written, so none can have raced.
        (Recorded::Raced, _) => Err(Error::Internal(anyhow::anyhow!(
            "a postback without a transaction reported a race"
        ))),
    }
}

/// A postback with a transaction id: the transaction (scoped by offer) is the
/// identity; a status change keeps what the first event said unless this one
/// says otherwise (the payout above all). `None` if it changed meanwhile.
async fn record_transaction(
    app: &App,
    p: &Postback,
    tx: &TransactionId,
    click: &Click,
    offer: &Offer,
    now: DateTime<Utc>,
    consistent: bool,
) -> Result<Option<Outcome>> {
    let key = Transaction::key_of(Some(&offer.id), tx);
    // A read that is not consistent may be stale. A write decided on it is
    // safe: it is conditional on the version read, so a stale one loses the
    // race and is decided again (consistently). An answer that writes
    // nothing is not checked by a condition: it is only given on a
    // consistent read.
    let mut consistent = consistent;
    let mut known = app.store.read_transaction(&key, consistent).await?;
    let change = loop {
        let identity = classify(known.as_ref(), &p.event, p.status, p.payout, None);
        let writes = matches!(
            (&identity, &known),
            (Identity::New | Identity::Change(_), _) | (Identity::Late | Identity::Restated, None)
        );
        if !writes && !consistent {
            consistent = true;
            known = app.store.read_transaction(&key, true).await?;
            continue;
        }
        break match (identity, &known) {
            (Identity::Duplicate(id), _) => return Ok(Some(Outcome::duplicate(id))),
            // Without a time of its own a postback is never older than the
            // state; should it be (a clock step), it repeats the state.
            (Identity::Late | Identity::Restated, Some(t)) => {
                return Ok(Some(Outcome::duplicate(t.last_event_id.clone())));
            }
            (Identity::New | Identity::Late | Identity::Restated, _) => 0,
            (Identity::Change(n), _) => n,
        };
    };
    // Where the transaction is stored; a new one's first event holds it.
    let home = match &known {
        Some(t) => t.first_event.clone(),
        None => app.store.home_of_new(&key).await?,
    };
    let id = match (&home, change) {
        (Some(first), 0) => first.clone(),
        _ => transaction_event_id("postback", &key, change, &p.event, p.status, None),
    };
    let mut event = event_of(p, click, offer, id, now);
    event.sequence = change + 1;
    if let Some(t) = &known {
        // A status change that names no payout keeps the transaction's.
        event.payout = p.payout.unwrap_or(t.payout);
        event.currency = p.currency.clone().unwrap_or_else(|| t.currency.clone());
        event.goal = p.goal.clone().or_else(|| t.goal.clone());
        let mut attributes = t.attributes.clone();
        attributes.extend(event.attributes);
        event.attributes = attributes;
    }
    let mut seen = known.as_ref().map(|t| t.seen.clone()).unwrap_or_default();
    remember(
        &mut seen,
        SeenChange {
            event: event.event.clone(),
            status: event.status,
            occurred_at: now,
            payout: event.payout,
            event_id: event.id.clone(),
        },
    );
    let transaction = Transaction {
        transaction_id: tx.clone(),
        partner_id: Some(event.partner_id.clone()),
        event: event.event.clone(),
        status: event.status,
        payout: event.payout,
        currency: event.currency.clone(),
        click_id: event.click_id.clone(),
        lead_id: None,
        offer_id: event.offer_id.clone(),
        goal: event.goal.clone(),
        attributes: event.attributes.clone(),
        last_event_id: event.id.clone(),
        invalidated_at: None,
        updated_at: now,
        scope: Some(offer.id.clone()),
        changes: change,
        version: known.as_ref().map_or(1, |t| t.version + 1),
        seen,
        // Advertisers' postbacks carry no time of their own: arrival decides.
        state_at: Some(known.as_ref().map_or(now, |t| now.max(t.state_time()))),
        last_delivery: known
            .as_ref()
            .map(|t| t.last_delivery.clone())
            .unwrap_or_default(),
        waiting_invalidation: None,
        placeholder: false,
        first_event: home,
    };
    let event_id = event.id.clone();
    let with = With {
        transaction: Some((transaction, known.as_ref().map(|t| t.version))),
        window: None,
    };
    Ok(match record(app, event, with, now).await? {
        Recorded::New => Some(Outcome::recorded(event_id)),
        Recorded::Duplicate => Some(Outcome::duplicate(event_id)),
        Recorded::Raced => None,
    })
}

#[cfg(test)]
mod tests;
