//! Everything that puts deliveries on the delivery queue: the fan-out of a
//! new event, a manual retry, the release of what waited on a paused
//! endpoint, and the reconciler that finds what nobody is looking after.
//!
//! Why a reconciler: a delivery is written to DynamoDB, then its message is
//! sent to SQS. Those are two systems; no request can make both happen or
//! neither. The queue may refuse, the process may die between the two, a
//! message may go to the dead-letter queue after a long store outage, or a
//! worker may die holding a claim. So every pending delivery also stands in a
//! sparse index by the time someone should have attempted it (its due time or
//! the end of a worker's lease, plus a grace period), and the reconciler, run
//! every minute by an EventBridge schedule (a timer in the local runner),
//! queues again whatever is past that time. It reads only that index, never
//! the table, and it cannot cause a second send: the worker's claim refuses a
//! delivery that is finished, leased or not yet due.

use chrono::{DateTime, Duration, Utc};

use crate::error::Result;
use crate::fanout::{message, DeliveryMessage};
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
    if done != Reconciled::default() {
        tracing::info!(
            requeued = done.requeued,
            released = done.released,
            endpoints_done = done.endpoints_done,
            recoveries_resumed = done.recoveries_resumed,
            "reconciled"
        );
    }
    Ok(done)
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
