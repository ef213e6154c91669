//! Everything that puts deliveries on the delivery queue: the fan-out of a
//! new event, a manual retry, the release of what waited on a paused
//! endpoint, and the reconciler that finds what nobody is looking after.
//!
//! The queue first: a new event's deliveries are queued *before* the write
//! that stores them, and a delivery whose message the queue took is stored
//! without an entry in the open-work index: its
//! message is what nobody may lose, and SQS keeps it until a worker
//! acknowledges it. A message ahead of a write that never happened (a
//! request that failed, lost a race or crashed) finds no delivery and is
//! dropped once its event is seen without it or it is
//! [`AHEAD_OF_WRITE`] old (`delivery.rs`). That saves the two index writes
//! (in, then out) of every delivery delivered as queued.
//!
//! Why a reconciler: when the queue refuses the fan-out, the deliveries are
//! stored with their open-work entry instead, and so is every delivery that
//! stays open after an attempt (a retry, a hold, a parked one) or is queued
//! again (a manual retry, a release, a recovery): a message may be lost
//! between a write and its send, a message may go to the dead-letter queue
//! after a long store outage, or a worker may die holding a claim. Such a
//! pending delivery stands in a sparse index by the time someone should have
//! attempted it (its due time or the end of a worker's lease, plus a grace
//! period), and the reconciler, run every minute by an EventBridge schedule
//! (a timer in the local runner), queues again whatever is past that time.
//! It reads only that index, never the table, and it cannot cause a second
//! send: the worker's claim refuses a delivery that is finished, leased or
//! not yet due. It also sends back to the delivery queue the messages of
//! pending deliveries that SQS dead-lettered on its receive limit (a store
//! outage outlasting their receives), since those may have no index entry.

use chrono::{DateTime, Duration, Utc};

use crate::error::Result;
use crate::fanout::{message, owed_message, DeliveryMessage};
use crate::ids::EndpointId;
use crate::lifecycle::Delivery;
use crate::lifecycle::RECONCILE_GRACE;
use crate::store::{OpenRef, DUE_SHARDS};
use crate::App;

/// After the reconciler queues a delivery, how long before it queues it
/// again if it is still not attempted (a backlog, or a message lost again).
pub const RECHECK_AFTER: Duration = Duration::minutes(5);
/// Index entries read per query.
const PAGE: i32 = 100;
/// Pages per shard (and parked pages per endpoint) in one run, so that a run
/// stays well inside the function's timeout; the next run continues.
const MAX_PAGES: usize = 20;

/// How long a new event's messages wait in the queue before a worker may
/// receive them. None: the write follows the send by milliseconds, and a
/// worker that is faster finds no delivery and looks again a second later
/// (`delivery.rs`). Measured (`make bench`, runs 10:00 and 09:43): with 0, end to end
/// p50 13 ms and p99 1,050 ms (the few messages ahead of their write); with
/// 1, p50 1,048 ms.
pub const AHEAD_OF_WRITE_DELAY_SECONDS: i32 = 0;
/// How long a message may be ahead of the write of its delivery: past this,
/// a message whose delivery is not stored is dropped (its write never
/// happened). A request's write follows its send by its own few races and
/// retries, seconds at most.
pub const AHEAD_OF_WRITE: Duration = Duration::minutes(5);
/// Dead letters looked at per reconciler run.
const DEAD_LETTER_PEEKS: usize = 5;

/// Queues a new event's deliveries before they are stored (the queue
/// first): true if the queue took every message, so that they can be stored
/// without their open-work entries; false (logged) if not, and the write
/// gives them their entries.
///
/// `owed`: the write will not store them, their event will owe them
/// (`Event::owed`): each message says so, and its first claim creates it.
pub async fn enqueue_ahead(app: &App, deliveries: &[Delivery], owed: bool) -> bool {
    if deliveries.is_empty() {
        return false;
    }
    let bodies: Vec<(String, i32)> = deliveries
        .iter()
        .map(|d| {
            let body = if owed { owed_message(d) } else { message(d) };
            (body, AHEAD_OF_WRITE_DELAY_SECONDS)
        })
        .collect();
    match app
        .queue
        .send_all_delayed(&app.config.delivery_queue_url, &bodies)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                event_id = %deliveries[0].event.id,
                error = %e.detail(),
                aws_code = e.aws_code().unwrap_or_default(),
                "deliveries not queued; stored with their open-work entries for the reconciler"
            );
            false
        }
    }
}

/// Puts the deliveries on the delivery queue.
pub async fn enqueue(app: &App, deliveries: &[Delivery]) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let bodies: Vec<String> = deliveries.iter().map(message).collect();
    app.queue
        .send_all(&app.config.delivery_queue_url, &bodies)
        .await
}

async fn enqueue_refs(app: &App, refs: &[OpenRef]) -> Result<()> {
    let bodies: Vec<String> = refs
        .iter()
        .map(|r| {
            DeliveryMessage {
                delivery_id: r.delivery_id.clone(),
                partner_id: r.partner_id.clone(),
                endpoint_id: r.endpoint_id.clone(),
                event: None,
                owed: false,
            }
            .body()
        })
        .collect();
    app.queue
        .send_all(&app.config.delivery_queue_url, &bodies)
        .await
}

/// What one reconciler run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Overdue deliveries queued again.
    pub requeued: usize,
    /// Parked deliveries released (endpoint re-activated or deleted) and queued.
    pub released: usize,
    /// Endpoints whose parked deliveries are all released now.
    pub endpoints_done: usize,
    /// Recoveries whose next step never came, queued again.
    pub recoveries_resumed: usize,
    /// Messages of pending deliveries that SQS dead-lettered on its receive
    /// limit, sent back to the delivery queue.
    pub dead_letters_requeued: usize,
}

/// One reconciler run at `now`: queue every overdue pending delivery, and
/// release the parked deliveries of re-activated or deleted endpoints.
pub async fn reconcile(app: &App, now: DateTime<Utc>) -> Result<Reconciled> {
    let mut done = Reconciled::default();
    for shard in 0..DUE_SHARDS {
        for _ in 0..MAX_PAGES {
            let overdue = app.store.overdue(shard, now, PAGE).await?;
            if overdue.is_empty() {
                break;
            }
            // Queue first, then move the index entry: a crash in between
            // queues it twice (harmless), never zero times.
            enqueue_refs(app, &overdue).await?;
            for open in &overdue {
                app.store.touch_open(open, now + RECHECK_AFTER).await?;
            }
            done.requeued += overdue.len();
            if overdue.len() < PAGE as usize {
                break;
            }
        }
    }
    for mark in app.store.unpark_marks(PAGE).await? {
        let (released, finished) = release_parked(app, &mark.endpoint_id, now, MAX_PAGES).await?;
        done.released += released;
        if finished {
            app.store.remove_unpark_mark(&mark).await?;
            done.endpoints_done += 1;
        }
    }
    done.recoveries_resumed = crate::recovery::resume_overdue(app, now).await?;
    done.dead_letters_requeued = requeue_dead_letters(app).await?;
    if done != Reconciled::default() {
        tracing::info!(
            dead_letters_requeued = done.dead_letters_requeued,
            requeued = done.requeued,
            released = done.released,
            endpoints_done = done.endpoints_done,
            recoveries_resumed = done.recoveries_resumed,
            "reconciled"
        );
    }
    Ok(done)
}

/// Sends back to the delivery queue the dead letters SQS moved there on its
/// receive limit (no `reason`: the worker never gave up on them, a store
/// outage outlasted their receives) whose delivery is still pending and not
/// parked: the queue first stores such a delivery without an open-work
/// entry, so its message is all there is. Each is sent before it is deleted
/// (a failure in between leaves two messages, which the claim makes
/// harmless). Dead letters with a reason (the worker's), those of finished
/// deliveries and those that are not delivery messages stay for the
/// operator (`GET /admin/dead-letters`).
async fn requeue_dead_letters(app: &App) -> Result<usize> {
    let Some(dlq) = app.config.delivery_dlq_url.as_deref() else {
        return Ok(0);
    };
    let mut requeued = 0;
    for _ in 0..DEAD_LETTER_PEEKS {
        let seen = app.queue.peek(dlq, 10).await?;
        if seen.is_empty() {
            break;
        }
        let (mut bodies, mut receipts) = (Vec::new(), Vec::new());
        for m in seen {
            if m.message_attributes()
                .is_some_and(|a| a.contains_key("reason"))
            {
                continue;
            }
            let (Some(body), Some(receipt)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<DeliveryMessage>(body) else {
                continue;
            };
            let pending = match app.store.is_pending_unparked(&message.delivery_id).await? {
                Some(pending) => pending,
                // Not stored: pending if its event owes it (created by its claim).
                None => match (&message.event, message.owed) {
                    (Some(e), true) => app.store.event_owes(&e.id, &message.delivery_id).await?,
                    _ => false,
                },
            };
            if !pending {
                continue;
            }
            tracing::info!(delivery_id = %message.delivery_id, "dead-lettered message of a pending delivery queued again");
            bodies.push(body.to_string());
            receipts.push(receipt.to_string());
        }
        // One batch each way, sent before deleted (as `Queue::redrive`).
        app.queue
            .send_all(&app.config.delivery_queue_url, &bodies)
            .await?;
        app.queue.delete_all(dlq, &receipts).await?;
        let moved = bodies.len();
        requeued += moved;
        if moved == 0 {
            break;
        }
    }
    Ok(requeued)
}

/// Releases up to `pages` pages of an endpoint's parked deliveries into the
/// due index and queues them; the worker then sends them (endpoint active),
/// cancels them (deleted) or parks them again (paused again). Returns how
/// many were released and whether none is left.
pub async fn release_parked(
    app: &App,
    endpoint_id: &EndpointId,
    now: DateTime<Utc>,
    pages: usize,
) -> Result<(usize, bool)> {
    let mut released = 0;
    for _ in 0..pages {
        let parked = app.store.parked(endpoint_id, PAGE).await?;
        if parked.is_empty() {
            return Ok((released, true));
        }
        let mut moved = Vec::with_capacity(parked.len());
        for open in parked {
            if app.store.unpark(&open, now + RECONCILE_GRACE).await? {
                moved.push(open);
            }
        }
        // Released but not queued (the queue failing now) is still in the due
        // index: the next reconciler run queues it.
        if let Err(e) = enqueue_refs(app, &moved).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "released deliveries not queued; the reconciler will"
            );
        }
        released += moved.len();
    }
    Ok((released, false))
}
