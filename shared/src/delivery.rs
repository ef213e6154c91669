//! The delivery use-case: what the worker does with one delivery-queue
//! message. Read the endpoint as stored (never a cached copy), claim the
//! delivery, decide (cancel, park, hold, send), send, record; the answer is
//! an [`Outcome`] that the Lambda crate turns into SQS actions (delete, hide,
//! dead-letter). Nothing here knows about SQS batches.
//!
//! Order of one message:
//!
//! 1. the endpoint, read consistently from the table: a DELETE or a pause
//!    that has answered is seen by every worker at once, whatever the
//!    configuration caches of the API instances still hold;
//! 2. the claim (one conditional write): only one worker sends a due attempt;
//! 3. deleted → `cancelled`; paused → parked; breaker open → held;
//! 4. the endpoint's secrets are opened, for this endpoint only: a secret
//!    that does not open fails this endpoint's deliveries, nobody else's;
//! 5. send, record the attempt, decide what comes next.
//!
//! **Lanes.** A partner that hangs must not slow the others: an SQS batch
//! (one Lambda invocation) lasts as long as its slowest record, so a hung
//! send holds every record that waits behind it. Deliveries therefore run in
//! two lanes, each its own queue and function with its own concurrency. An
//! attempt left unanswered for [`SLOW_AFTER`] (or timed out sooner) marks its endpoint slow in the
//! table (`slow_until`, [`SLOW_FOR`] from then, renewed by every slow attempt),
//! so every instance sees it at its next read; the fast lane then moves that
//! endpoint's messages to the slow lane (one SQS send, no HTTP), and the
//! history says why they waited. The slow lane sends them with the
//! endpoint's own timeout, beside other slow partners only.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use crate::backoff::{with_backoff, BRIEF_BACKOFF_MS};
use crate::breaker::{Breakers, Gate, Health, TRIP_AFTER};
use crate::domain::{Endpoint, Ordering};
use crate::fanout::DeliveryMessage;
use crate::ids::DeliveryId;
use crate::lifecycle::{outage_backoff_seconds, visibility_until, AttemptError, Sent, Step};
use crate::lifecycle::{Delivery, DeliveryStatus, RetrySchedule};
use crate::outbox::AHEAD_OF_WRITE;
use crate::queue::Outcome;
use crate::render::prepare;
use crate::store::{Claim, Earlier, OwedClaim};
use crate::{App, Error};

/// Extra lease beyond the endpoint's timeout, to record the attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// An attempt left unanswered this long marks its endpoint slow.
pub const SLOW_AFTER: Duration = Duration::from_secs(1);
/// How long a slow mark keeps an endpoint in the slow lane; every attempt
/// that is slow again renews it.
pub const SLOW_FOR: chrono::Duration = chrono::Duration::minutes(5);

/// How long after an earlier change's next attempt a later one looks again.
const ORDER_SLACK: chrono::Duration = chrono::Duration::seconds(3);
/// The longest a later change waits before looking at the earlier one again.
const MAX_ORDER_WAIT: chrono::Duration = chrono::Duration::minutes(15);

/// What keeping a transaction's order says about a delivery.
enum Order {
    Go,
    Wait(String, DateTime<Utc>),
}

/// Which delivery queue a worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lane {
    /// The delivery queue: every delivery starts here.
    #[default]
    Fast,
    /// The slow delivery queue: endpoints marked slow.
    Slow,
}

/// The delivery worker of one process and lane: the app's clients and this
/// process's circuit breakers.
pub struct Deliverer {
    pub app: Arc<App>,
    pub breakers: Breakers,
    pub lane: Lane,
}

impl Deliverer {
    /// A worker of `lane` over the app's clients.
    pub fn new(app: Arc<App>, lane: Lane) -> Self {
        Deliverer {
            app,
            breakers: Breakers::default(),
            lane,
        }
    }

    /// Handles one delivery-queue message body: a delivery, or a step of a
    /// recovery (`crate::recovery`).
    pub async fn handle(&self, body: &str) -> Outcome {
        // Deliveries first (nearly every message); a step only if not one.
        let message: DeliveryMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                if let Ok(step) = serde_json::from_str::<crate::recovery::StepMessage>(body) {
                    let span = tracing::info_span!(
                        "recovery",
                        recovery_id = %step.recovery_id,
                        endpoint_id = %step.endpoint_id,
                        partner_id = %step.partner_id
                    );
                    return crate::recovery::run_step(&self.app, &step)
                        .instrument(span)
                        .await;
                }
                return Outcome::DeadLetter(format!("unparseable delivery message: {e}"));
            }
        };
        let span = tracing::info_span!(
            "delivery",
            delivery_id = %message.delivery_id,
            endpoint_id = %message.endpoint_id,
            partner_id = %message.partner_id
        );
        self.deliver(&message, body).instrument(span).await
    }

    async fn deliver(&self, m: &DeliveryMessage, body: &str) -> Outcome {
        let app = &self.app;
        // The endpoint as stored now, secrets still sealed: checked against
        // the table at claim time, never against a cache.
        let stored = match app
            .store
            .get_endpoint_sealed(&m.partner_id, &m.endpoint_id)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                log_aws(&e, "could not read the endpoint");
                return Outcome::RetryAfterOutage;
            }
        };
        let now = Utc::now();
        if let (Lane::Fast, Some(endpoint), Some(slow_lane)) =
            (self.lane, &stored, &app.config.slow_delivery_queue_url)
        {
            if let Some(until) = endpoint.slow_until.filter(|t| *t > now) {
                return self
                    .to_slow_lane(&m.delivery_id, body, slow_lane, until, now)
                    .await;
            }
        }
        let timeout = Duration::from_millis(u64::from(
            stored
                .as_ref()
                .map(|e| e.timeout_ms)
                .unwrap_or(crate::domain::DEFAULT_TIMEOUT_MS),
        ));
        // The event, before the claim: a message without it (the
        // reconciler's) reads it now, so that no read can fail between the
        // claim and the send (a claim never followed by its record reads as
        // an attempt of unknown outcome).
        let read_event;
        let event = match (&m.event, m.owed) {
            // Its claim returns the event as stored.
            (Some(e), true) => Some(e),
            // A stored delivery's message (its event past one write unit)
            // may carry the copy of a decision its request lost (a race on
            // the transaction decided again: another sequence, another
            // inherited payout): what goes out is the event as stored.
            (Some(copy), false) => {
                read_event = match app.store.get_event(&copy.id).await {
                    // Not stored yet: ahead of its write (the claim says so).
                    Ok(stored) => stored.or_else(|| Some(copy.clone())),
                    Err(e) => {
                        log_aws(&e, "could not read the delivery's event");
                        return Outcome::RetryAfterOutage;
                    }
                };
                read_event.as_ref()
            }
            (None, _) => {
                read_event = match app.store.get_delivery(&m.delivery_id).await {
                    Ok(d) => d.map(|d| d.event),
                    Err(e) => {
                        log_aws(&e, "could not read the delivery's event");
                        return Outcome::RetryAfterOutage;
                    }
                };
                read_event.as_ref()
            }
        };
        let claim = if m.owed {
            self.claim_owed(m, now, timeout + LEASE_MARGIN).await
        } else {
            app.store
                .claim_delivery(&m.delivery_id, now, timeout + LEASE_MARGIN, event)
                .await
        };
        let mut delivery = match claim {
            Ok(Claim::Claimed(d)) => *d,
            Ok(Claim::Finished(status)) => {
                tracing::info!(status = ?status, "already finished; acknowledged without sending");
                return Outcome::Ack;
            }
            Ok(Claim::Parked) => {
                tracing::info!("parked on a paused endpoint; re-activation queues it again");
                return Outcome::Ack;
            }
            Ok(Claim::Missing) => return self.missing(m, now).await,
            Ok(Claim::NotDue(at)) | Ok(Claim::Leased(at)) => {
                return Outcome::RetryIn(visibility_until(at, now));
            }
            Err(e) => {
                log_aws(&e, "could not claim the delivery");
                return Outcome::RetryAfterOutage;
            }
        };
        if let Some(due) = delivery
            .next_attempt_at
            .filter(|t| m.owed && delivery.attempts.is_empty() && *t > now)
        {
            // Created by this claim before its first wait ended: stored, and
            // attempted when due.
            return self
                .finish(delivery, Step::RetryIn(visibility_until(due, now) as u32))
                .await;
        }
        let Some(endpoint) = stored else {
            delivery.cancel("endpoint deleted", now);
            return self.finish_attempt(delivery, Step::Finished).await;
        };
        if !endpoint.active {
            return self.park(delivery, &endpoint, now).await;
        }
        if let Gate::Open(until) = self.breakers.gate(&endpoint.id, now) {
            // Held without an attempt, so a hung partner cannot hold the pool.
            delivery.hold(
                format!(
                    "held: the endpoint timed out {TRIP_AFTER} times in a row; next try after {}",
                    until.to_rfc3339()
                ),
                until,
                now,
            );
            let wait = visibility_until(until, now) as u32;
            return self.finish(delivery, Step::RetryIn(wait)).await;
        }
        if let Some(previous) = delivery.after.clone() {
            match self.keep_order(&endpoint, &delivery, &previous, now).await {
                Order::Go => {}
                Order::Wait(reason, until) => {
                    delivery.hold(reason, until, now);
                    let wait = visibility_until(until, now) as u32;
                    return self.finish(delivery, Step::RetryIn(wait)).await;
                }
            }
        }
        let schedule = endpoint.retry_schedule.clone();
        let endpoint = match app.store.open_endpoint(endpoint).await {
            Ok(e) => e,
            Err(e) => return self.unopenable(delivery, &e, &schedule, now).await,
        };
        let step = self.attempt(&endpoint, &mut delivery, now).await;
        self.finish_attempt(delivery, step).await
    }

    /// The claim of a delivery its event owes (created by its claim): the
    /// first is a lease on the event (`Store::claim_owed`), which also
    /// proves the event's write happened; once a worker has made it, the
    /// delivery is claimed as any stored one. A first claimer whose lease
    /// ended without storing the delivery stopped mid-attempt: the next
    /// worker takes its claim over and records an attempt of unknown
    /// outcome, as for a stored delivery.
    async fn claim_owed(
        &self,
        m: &DeliveryMessage,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> crate::Result<Claim> {
        let store = &self.app.store;
        let Some(event) = &m.event else {
            return store.claim_delivery(&m.delivery_id, now, lease, None).await;
        };
        match store
            .claim_owed(&event.id, &m.delivery_id, now, lease)
            .await?
        {
            OwedClaim::Claimed(event, owed) => Ok(Claim::Claimed(Box::new(Delivery::from_owed(
                m.delivery_id.clone(),
                &owed,
                *event,
            )))),
            OwedClaim::NoEvent => Ok(Claim::Missing),
            OwedClaim::NotOwed => {
                store
                    .claim_delivery(&m.delivery_id, now, lease, Some(event))
                    .await
            }
            OwedClaim::Taken {
                claimed_at,
                lease_until,
            } => match store
                .claim_delivery(&m.delivery_id, now, lease, Some(event))
                .await?
            {
                Claim::Missing if lease_until >= now => Ok(Claim::Leased(lease_until)),
                Claim::Missing => {
                    match store
                        .take_over_owed(&event.id, &m.delivery_id, lease_until, now, lease)
                        .await?
                    {
                        Some((event, owed)) => {
                            let mut d = Delivery::from_owed(m.delivery_id.clone(), &owed, event);
                            d.lost_attempt(claimed_at, now);
                            Ok(Claim::Claimed(Box::new(d)))
                        }
                        // Taken over (or stored) by another worker meanwhile.
                        None => Ok(Claim::Leased(now + chrono::Duration::seconds(1))),
                    }
                }
                other => Ok(other),
            },
        }
    }

    /// A message whose delivery is not stored. A new event's messages are
    /// sent just before the write that stores its deliveries (the queue
    /// first, `outbox.rs`), so a young one may be ahead of that write: it
    /// comes back later. It is dropped once its event is stored without it
    /// (the request lost a race and decided again) or once it is older than
    /// [`AHEAD_OF_WRITE`] (the write never happened: the request failed, or
    /// its process died). Any other message naming no delivery is dropped.
    async fn missing(&self, m: &DeliveryMessage, now: DateTime<Utc>) -> Outcome {
        let Some((event_id, age)) = m
            .event
            .as_ref()
            .map(|e| (&e.id, now - e.recorded_at))
            .filter(|(_, age)| *age < AHEAD_OF_WRITE)
        else {
            tracing::warn!("no such delivery; acknowledged");
            return Outcome::Ack;
        };
        match self.app.store.get_event(event_id).await {
            // Written since the claim looked: claim it now.
            Ok(Some(e)) if e.delivery_ids.contains(&m.delivery_id) => Outcome::RetryIn(1),
            Ok(Some(_)) => {
                tracing::info!(event_id = %event_id, "the event was stored without this delivery; acknowledged");
                Outcome::Ack
            }
            Ok(None) => {
                tracing::info!(event_id = %event_id, "ahead of its event's write; looked at again later");
                crate::telemetry::delivery("ahead_of_write");
                Outcome::RetryIn(age.num_seconds().clamp(1, 30) as i32)
            }
            Err(e) => {
                log_aws(&e, "could not read the event of a delivery not found");
                Outcome::RetryAfterOutage
            }
        }
    }

    /// Moves the message to the slow lane (no claim, no HTTP) and says why
    /// in the delivery's history.
    async fn to_slow_lane(
        &self,
        delivery_id: &DeliveryId,
        body: &str,
        slow_lane: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Outcome {
        if let Err(e) = self
            .app
            .queue
            .send_all(slow_lane, &[body.to_string()])
            .await
        {
            log_aws(&e, "could not move the delivery to the slow lane");
            return Outcome::RetryAfterOutage;
        }
        let reason = format!(
            "in the slow lane: the endpoint recently left an attempt unanswered for {} s or more; its deliveries wait apart from other partners' until {}",
            SLOW_AFTER.as_secs(),
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        if let Err(e) = self.app.store.note_waiting(delivery_id, &reason, now).await {
            log_aws(&e, "could not note why the delivery waits");
        }
        tracing::info!("endpoint marked slow; moved to the slow lane");
        crate::telemetry::delivery("slow_lane");
        Outcome::Ack
    }

    /// Marks the endpoint slow in the table (every instance reads it), unless
    /// a recent mark still holds.
    async fn mark_slow(&self, endpoint: &Endpoint) {
        if self.app.config.slow_delivery_queue_url.is_none() {
            return;
        }
        let now = Utc::now();
        if endpoint.slow_until.is_some_and(|t| t > now + SLOW_FOR / 2) {
            return;
        }
        match self
            .app
            .store
            .mark_slow(&endpoint.partner_id, &endpoint.id, now + SLOW_FOR)
            .await
        {
            Ok(_) => {
                tracing::warn!(endpoint_id = %endpoint.id, "no answer within {} s: the endpoint's deliveries go to the slow lane", SLOW_AFTER.as_secs())
            }
            Err(e) => log_aws(&e, "could not mark the endpoint slow"),
        }
    }

    /// Whether this change of a transaction may go to the endpoint now: the
    /// delivery of the transaction's earlier change to the same endpoint
    /// (`previous`) must have ended, or (`latest_only`) be superseded by this
    /// one. The partner never accepts an older state after a newer one.
    async fn keep_order(
        &self,
        endpoint: &Endpoint,
        delivery: &Delivery,
        previous: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Order {
        let earlier = match self.app.store.get_pending_delivery(previous).await {
            Ok(Earlier::Pending(p)) => *p,
            // Ended (delivered, failed, cancelled).
            Ok(Earlier::Ended) => return Order::Go,
            Ok(Earlier::NotStored) => return self.not_stored_yet(delivery, previous, now).await,
            Err(e) => {
                log_aws(&e, "could not read the earlier change's delivery");
                return Order::Wait(
                    "waiting: the earlier change's delivery could not be read".into(),
                    now + chrono::Duration::seconds(10),
                );
            }
        };
        let tx = delivery.event.transaction_id.as_deref().unwrap_or("");
        if endpoint.ordering == Ordering::LatestOnly {
            match self.app.store.supersede(&earlier, &delivery.id, now).await {
                Ok(true) => {
                    tracing::info!(superseded = %earlier.id, "an earlier change not yet delivered was superseded by this one");
                    crate::telemetry::delivery("superseded");
                    let mut ended = earlier.clone();
                    ended.status = DeliveryStatus::Cancelled;
                    crate::recovery::count_progress(&self.app, &ended, false).await;
                    return Order::Go;
                }
                Ok(false) => {} // being sent right now: wait for it
                Err(e) => log_aws(&e, "could not supersede the earlier change's delivery"),
            }
        }
        // After the earlier one's next attempt (or its current send), and
        // not too long: it may end sooner (a manual retry, a redrive).
        let due = earlier.next_attempt_at.unwrap_or(now).max(now);
        let until = (due + ORDER_SLACK).clamp(now + ORDER_SLACK, now + MAX_ORDER_WAIT);
        Order::Wait(
            format!(
                "waiting: the earlier change of transaction {tx} to this endpoint (delivery {}) has not ended; this one goes after it",
                earlier.id
            ),
            until,
        )
    }

    /// The earlier change's delivery is not stored: if its event owes it,
    /// it is not claimed yet (created by its claim) and this one waits for
    /// it; else it expired, or was never made.
    async fn not_stored_yet(
        &self,
        delivery: &Delivery,
        previous: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Order {
        let Some(event_id) = &delivery.after_event else {
            return Order::Go;
        };
        match self.app.store.event_owes(event_id, previous).await {
            Ok(false) => Order::Go,
            Ok(true) => {
                let tx = delivery.event.transaction_id.as_deref().unwrap_or("");
                Order::Wait(
                    format!(
                        "waiting: the earlier change of transaction {tx} to this endpoint (delivery {previous}) has not been attempted yet; this one goes after it"
                    ),
                    now + ORDER_SLACK,
                )
            }
            Err(e) => {
                log_aws(&e, "could not read the earlier change's event");
                Order::Wait(
                    "waiting: the earlier change's delivery could not be read".into(),
                    now + chrono::Duration::seconds(10),
                )
            }
        }
    }

    /// The endpoint is paused: hold the delivery, without attempts, until it
    /// is re-activated.
    async fn park(
        &self,
        mut delivery: Delivery,
        endpoint: &Endpoint,
        now: DateTime<Utc>,
    ) -> Outcome {
        let open = delivery.clone();
        let reason = endpoint
            .paused_reason
            .clone()
            .unwrap_or_else(|| "endpoint paused".into());
        delivery.park(reason, now);
        match self.app.store.park_delivery(&delivery, endpoint).await {
            Ok(true) => {
                tracing::info!("endpoint paused; delivery parked until it is re-activated");
                crate::telemetry::delivery("parked");
                Outcome::Ack
            }
            Ok(false) => {
                // The endpoint changed under us (re-activated, deleted): release and look again.
                tracing::info!("endpoint changed while parking; trying again");
                self.finish(open, Step::RetryIn(1)).await
            }
            Err(e) => {
                log_aws(&e, "could not park the delivery");
                Outcome::RetryAfterOutage
            }
        }
    }

    /// The endpoint's secrets could not be opened. KMS unreachable: the
    /// delivery waits (no attempt spent) and says why. A value that does not
    /// open (tampered, copied, malformed) will not open later either: the
    /// attempt is recorded as unsendable with the reason, so the schedule
    /// runs and the partner sees it in the history; only this endpoint's
    /// deliveries are touched.
    async fn unopenable(
        &self,
        mut delivery: Delivery,
        error: &Error,
        schedule: &RetrySchedule,
        now: DateTime<Utc>,
    ) -> Outcome {
        tracing::warn!(error = %error.detail(), aws_code = error.aws_code().unwrap_or_default(), "the endpoint's secrets could not be opened");
        if matches!(error, Error::Unavailable(_)) {
            let received = delivery.attempts.len() as u32 + 1;
            let wait = outage_backoff_seconds(received).max(10);
            let until = now + chrono::Duration::seconds(i64::from(wait));
            delivery.hold(
                format!(
                    "waiting: the endpoint's secrets could not be opened (key service unavailable); next try after {}",
                    until.to_rfc3339()
                ),
                until,
                now,
            );
            return self.finish(delivery, Step::RetryIn(wait as u32)).await;
        }
        let mut sent = Sent::unsendable(
            "the endpoint's secret could not be opened; set it again (PATCH the endpoint)".into(),
        );
        // Unlike other unsendable attempts this one is retried by the
        // schedule: the partner may set the secret again meanwhile.
        sent.error = Some(AttemptError::Secret);
        sent.response = sent.detail.clone();
        let step = delivery.record(&sent, schedule, now);
        delivery.reason = sent.detail.clone();
        self.finish_attempt(delivery, step).await
    }

    /// Makes one attempt and records it on the delivery; what comes next.
    pub async fn attempt(&self, endpoint: &Endpoint, d: &mut Delivery, now: DateTime<Utc>) -> Step {
        // The endpoint's templates were parsed when it was saved (and again
        // when it was read): rendering cannot fail.
        let request = prepare(endpoint, &d.event, &d.id, now.timestamp());
        let send = self.app.sender.send(
            &request,
            Duration::from_millis(u64::from(endpoint.timeout_ms)),
        );
        tokio::pin!(send);
        let sent = tokio::select! {
            sent = &mut send => sent,
            _ = tokio::time::sleep(SLOW_AFTER) => {
                // Unanswered so far: every instance learns it now,
                // not after the timeout, while this send goes on.
                let ((), sent) = tokio::join!(self.mark_slow(endpoint), &mut send);
                sent
            }
        };
        if sent.error == Some(AttemptError::Timeout) && sent.duration < SLOW_AFTER {
            // Timed out before the slow mark's second (a short timeout):
            // slow all the same.
            self.mark_slow(endpoint).await;
        }
        let step = d.record(&sent, &endpoint.retry_schedule, now);
        if sent.status.is_some() {
            crate::telemetry::attempt_latency(sent.duration);
        }
        let health = if sent.error == Some(AttemptError::Timeout) {
            Health::TimedOut
        } else {
            Health::Answered
        };
        self.breakers.record(&endpoint.id, health, Utc::now());
        if !sent.is_success() {
            tracing::info!(attempt = d.attempts.len(), error = ?sent.error, detail = ?sent.detail, status = ?sent.status, next = ?step, "attempt failed");
        }
        if sent.status == Some(410) {
            self.pause_gone(endpoint, now).await;
        }
        step
    }

    /// A 410 Gone means the partner removed this endpoint: pause it so nothing
    /// more is sent. The write is conditional on the version the worker read,
    /// so a change the partner made meanwhile (new URL, deletion) is never
    /// reverted; it touches only the pause fields (no secret is re-sealed).
    async fn pause_gone(&self, endpoint: &Endpoint, now: DateTime<Utc>) {
        let reason = format!("answered 410 Gone at {}", now.to_rfc3339());
        match self.app.pause_endpoint(endpoint, &reason, now).await {
            Ok(true) => {
                tracing::warn!(endpoint_id = %endpoint.id, "endpoint answered 410 Gone and was paused")
            }
            Ok(false) => {
                tracing::info!(endpoint_id = %endpoint.id, "endpoint answered 410 but was changed meanwhile; left as it is")
            }
            Err(e) => log_aws(&e, "could not pause the endpoint"),
        }
    }

    /// As [`Deliverer::finish`] after recording an attempt (or cancelling):
    /// a recovered delivery's progress is counted on its recovery once stored.
    async fn finish_attempt(&self, d: Delivery, step: Step) -> Outcome {
        let counted = d.recovery_id.is_some().then(|| d.clone());
        let outcome = self.finish(d, step).await;
        if let (Some(d), false) = (counted, outcome == Outcome::Keep) {
            let attempted = d.status != DeliveryStatus::Cancelled;
            crate::recovery::count_progress(&self.app, &d, attempted).await;
        }
        outcome
    }

    /// Stores the delivery (releasing the lease); with a delay, the message
    /// is hidden until the next attempt is due and kept, else acknowledged.
    async fn finish(&self, d: Delivery, step: Step) -> Outcome {
        let app = &self.app;
        // After a send, failing to record it risks a second send once the
        // lease ends: keep trying for a while (the SDK also retries each call).
        let stored = with_backoff(&BRIEF_BACKOFF_MS, || app.store.put_delivery(&d)).await;
        if let Err(e) = stored {
            log_aws(
                &e,
                "could not record the attempt; the message will come back",
            );
            return Outcome::Keep;
        }
        tracing::info!(status = ?d.status, attempts = d.attempts.len(), reason = ?d.reason, "delivery updated");
        crate::telemetry::delivery(match &step {
            Step::RetryIn(_) => "retrying",
            Step::Finished => d.status.as_str(),
        });
        match step {
            Step::RetryIn(secs) => Outcome::RetryIn(secs as i32),
            Step::Finished => Outcome::Ack,
        }
    }
}

fn log_aws(e: &Error, what: &str) {
    tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "{what}");
}
