//! Conversions in: the advertiser's S2S postback ([`postback`]) and our
//! pipelines' internal events ([`events`]). Parsing is pure and names the
//! field at fault ([`fields`]); recording writes the event (owing its
//! deliveries: each is created by its first claim) in one write, their queue
//! messages sent just before it ([`crate::outbox`], "the queue first").
//!
//! Idempotency: an event's id is derived from its idempotency key, so a retry
//! lands on the same item and answers `duplicate` (its messages, sent ahead,
//! name the same derived deliveries: the worker's claim finds them taken).
//! Once the transaction has committed the caller is told `recorded`; if the
//! queue refused the messages, the deliveries were stored with their
//! open-work entries, and the reconciler sends them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Event, Transaction};
use crate::error::Result;
use crate::ids::EventId;
use crate::store::{Recorded, Recording};
use crate::{fanout, outbox, App};

pub mod events;
pub mod identity;
pub mod postback;

pub use events::{parse_event, parse_events_body, record_internal, EventInput};
pub use postback::{parse_postback, parse_postback_values, record_postback, Postback};

pub use crate::fields::{
    MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES, MAX_ATTRIBUTE_DEPTH, MAX_ATTRIBUTE_LEN, MAX_NAME_LEN,
};

/// Most events in one `POST /events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;
/// Event name of a postback that names none.
pub const DEFAULT_EVENT: &str = "conversion";
/// Currency when neither the request nor the offer names one.
pub const DEFAULT_CURRENCY: &str = "USD";

/// How many times a request whose transaction changed under it is decided
/// again before it is answered 503 (the caller retries). Changes of one
/// transaction arriving together (a batch off the events queue) race; each
/// lost race waits a few random milliseconds, so they sort themselves out.
const MAX_RACES: usize = 8;

/// The pause after losing race `n` (0-based) on a transaction: up to
/// 10 ms × (n + 1), random, so that racers do not meet again.
async fn after_lost_race(n: usize) {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    let ms = (u64::from(b[0]) % 10 + 1) * (n as u64 + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// What a recorded (or repeated) event answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    /// `recorded`, `duplicate`, `superseded` (older than the transaction's
    /// state: kept in the history, fired nothing) or `waiting` (an
    /// invalidation stored until its payout arrives).
    pub status: &'static str,
    pub event_id: EventId,
}

impl Outcome {
    fn with(status: &'static str, event_id: EventId) -> Self {
        Outcome { status, event_id }
    }
    fn waiting(event_id: EventId) -> Self {
        Self::with("waiting", event_id)
    }
    fn superseded(event_id: EventId) -> Self {
        Self::with("superseded", event_id)
    }
    fn recorded(event_id: EventId) -> Self {
        Self::with("recorded", event_id)
    }
    fn duplicate(event_id: EventId) -> Self {
        Self::with("duplicate", event_id)
    }
}

/// What an event is written with, besides its deliveries.
#[derive(Default)]
pub(crate) struct With {
    /// The transaction's new state, and the version it was read at.
    pub transaction: Option<(Transaction, Option<u64>)>,
    /// An identical-postback window: fingerprint and closing time.
    pub window: Option<(String, DateTime<Utc>)>,
}

/// Fans `event` out, queues its deliveries' messages, and writes it (owing
/// its deliveries, or with them) and `with` in one transaction, or alone in
/// one conditional put. A queue failure is logged, not returned: the
/// deliveries are then written with their open-work entries, queued after
/// the write if the queue takes them, and the reconciler owns them.
pub(crate) async fn record(
    app: &App,
    mut event: Event,
    mut with: With,
    now: DateTime<Utc>,
) -> Result<Recorded> {
    // Permanent, so refused before any write: retrying could never help.
    let merged = serde_json::to_vec(&event.attributes).map_or(0, |b| b.len());
    if merged > 2 * MAX_ATTRIBUTES_BYTES {
        return Err(crate::Error::invalid(
            "attributes",
            format!(
                "`attributes`, with those of the click or transaction, exceed {} bytes",
                2 * MAX_ATTRIBUTES_BYTES
            ),
        ));
    }
    // A late change fires nothing.
    let deliveries = if event.superseded {
        Vec::new()
    } else {
        let endpoints = app.partner_endpoints(&event.partner_id).await?;
        let goals_apply = match &event.offer_id {
            Some(id) => app
                .offer(id)
                .await?
                .as_ref()
                .as_ref()
                .is_none_or(|o| o.goals_enabled),
            None => true,
        };
        let previous = with
            .transaction
            .as_ref()
            .map(|(t, _)| t.last_delivery.clone())
            .unwrap_or_default();
        fanout::plan(&event, &endpoints, goals_apply, &previous, now)
    };
    let mut deliveries = deliveries;
    if let Some((t, _)) = with.transaction.as_mut() {
        for d in deliveries.iter_mut() {
            // The earlier change's event: found by the delivery id it derives.
            d.after_event = d.after.as_ref().and_then(|after| {
                t.seen
                    .iter()
                    .map(|s| &s.event_id)
                    .find(|e| fanout::delivery_id(e, &d.endpoint_id) == *after)
                    .cloned()
            });
            // Each endpoint's next change of this transaction goes after these.
            t.last_delivery.insert(d.endpoint_id.clone(), d.id.clone());
        }
    }
    event.delivery_ids = deliveries.iter().map(|d| d.id.clone()).collect();
    // Created by their claims: the event owes its deliveries instead of
    // storing them, which takes an item out of the write's transaction (two
    // write units each). Only when the queue took their messages (else the
    // write stores them, with their open-work entries), and only for an
    // event that stays within one write unit with its claims (else each
    // claim would cost more than the transaction saves).
    event.owed = deliveries
        .iter()
        .map(|d| (d.id.clone(), d.owed()))
        .collect();
    let owing = !deliveries.is_empty()
        && app
            .store
            .owes_in_one_unit(&event, with.transaction.as_ref().map(|(t, _)| t))?;
    // The queue first: the messages go out before the write, so a delivery
    // the queue took needs no open-work entry (`outbox.rs`). Under a retry
    // window too: a retry within the window's span has the first's event id
    // (`identity::postback_identity`), so its messages name the first's
    // deliveries; one in the next span names deliveries never written, and
    // its messages are dropped as ahead of a write that never happened.
    let queued = outbox::enqueue_ahead(app, &deliveries, owing).await;
    let owed = queued && owing;
    if !owed {
        event.owed.clear();
    }
    let recorded = app
        .store
        .record_event(&Recording {
            event: &event,
            deliveries: if owed { &[] } else { &deliveries },
            transaction: with.transaction.as_ref().map(|(t, v)| (t, *v)),
            window: with.window.as_ref().map(|(f, at)| (f.as_str(), *at)),
            queued,
        })
        .await?;
    if recorded == Recorded::New && !queued {
        // Stored with their open-work entries: queued now if the queue
        // takes them, else by the reconciler.
        if let Err(e) = outbox::enqueue(app, &deliveries).await {
            tracing::warn!(event_id = %event.id, error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "deliveries stored but not queued; the reconciler will send them");
        }
    }
    tracing::info!(event_id = %event.id, event = %event.event, status = event.status.as_str(), deliveries = deliveries.len(), outcome = ?recorded, "event");
    Ok(recorded)
}

/// The error after `MAX_RACES` lost races on one transaction.
fn too_busy(transaction_id: &str) -> crate::Error {
    crate::Error::Unavailable(anyhow::anyhow!(
        "transaction {transaction_id} kept changing while being recorded"
    ))
}
