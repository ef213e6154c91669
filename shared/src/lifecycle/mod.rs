//! The delivery lifecycle, in one place and without I/O: the retry schedule
//! and its limits, what an attempt got back, and how a delivery moves between
//! `pending`, `delivered`, `failed` and `cancelled`.
//!
//! ```text
//!            ┌──── attempt failed, schedule has more ────┐
//!            ▼                                           │
//! created ─▶ pending ──attempt──▶ delivered              │
//!            │  ▲  └──attempt failed, schedule ends──▶ failed ──manual retry──▶ pending
//!            │  └── endpoint re-activated (unparked)
//!            ├── endpoint paused: parked (still pending, waits without attempts)
//!            └── endpoint deleted ──▶ cancelled
//! ```
//!
//! The worker (functions/deliver) only moves SQS messages around these
//! decisions; the reconciler ([`crate::outbox`]) uses [`Delivery::open`] to find
//! deliveries nobody is looking after.

use chrono::{DateTime, Duration as Span, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::domain::{Event, Owed};
use crate::ids::{DeliveryId, EndpointId, EventId, PartnerId, RecoveryId};
pub use crate::schedule::{RetrySchedule, MAX_VISIBILITY_SECONDS};

/// How long past its due time (or past a worker's lease) an open delivery
/// may go unattended before the reconciler queues it again. With the
/// reconciler running every minute, a stranded delivery is attempted within
/// two minutes of its due time.
pub const RECONCILE_GRACE: Span = Span::seconds(45);

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    /// Its endpoint was deleted before it could be delivered.
    Cancelled,
}

impl DeliveryStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }
    /// Parses `pending`, `delivered`, `failed` or `cancelled`.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw.trim())
    }
}

/// One try at sending a postback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub n: u32,
    pub at: DateTime<Utc>,
    pub ms: u64,
    /// HTTP status, when the partner answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Why the attempt failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    /// The start of the partner's answer, truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// When the next attempt is due, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// Whether the round was started by hand (`POST /deliveries/{id}/retry`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// The recovery that started this round, on the round's first attempt
    /// (`POST /partners/{pid}/endpoints/{eid}/recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<RecoveryId>,
}

/// One event × one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub partner_id: PartnerId,
    pub status: DeliveryStatus,
    /// The event as it was recorded. Not stored with the delivery (the
    /// event is its own item, written once): the store attaches it on every
    /// read, and the delivery's queue message carries a copy, so that the
    /// worker renders without another read.
    #[serde(skip_serializing)]
    pub event: Event,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Index in `attempts` where the current round began (a manual retry starts a new one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round_start: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Pending but held back without attempts while its endpoint is paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
    /// The delivery of the same transaction's earlier change to the same
    /// endpoint: this one is sent only once that one has ended (or, with
    /// `latest_only`, supersedes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<DeliveryId>,
    /// The event of `after`, when known: an earlier delivery not stored yet
    /// (created by its claim) is found owed by that event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_event: Option<EventId>,
    /// Why it waits or ended when the attempts do not say (paused, deleted endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The recovery that started the current round, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<RecoveryId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Why an attempt failed, as the attempt log spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptError {
    /// The partner answered with a non-2xx, non-3xx status.
    HttpStatus,
    /// A 3xx: redirects are not followed.
    Redirect,
    /// No answer (status line) within the endpoint's timeout.
    Timeout,
    /// The connection could not be opened (refused, reset, DNS, TLS).
    Connect,
    /// The address is private, loopback or link-local: refused, not retried.
    Blocked,
    /// The request could not be rendered or sent at all: not retried.
    Request,
    /// The endpoint's secrets could not be opened (a stored value that does
    /// not open): nothing was sent; retried, since the partner may set the
    /// secret again.
    Secret,
    /// A worker claimed the delivery and stopped before recording what
    /// happened: the request may or may not have reached the partner.
    Unknown,
}

impl AttemptError {
    /// The attempt log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptError::HttpStatus => "http_status",
            AttemptError::Redirect => "redirect",
            AttemptError::Timeout => "timeout",
            AttemptError::Connect => "connect",
            AttemptError::Blocked => "blocked",
            AttemptError::Request => "request",
            AttemptError::Secret => "secret",
            AttemptError::Unknown => "unknown",
        }
    }

    /// Whether trying again could help. A blocked address or a template that
    /// cannot render never will.
    pub fn is_retryable(self) -> bool {
        !matches!(self, AttemptError::Blocked | AttemptError::Request)
    }
}

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub status: Option<u16>,
    pub error: Option<AttemptError>,
    /// A readable reason for logs and the test route.
    pub detail: Option<String>,
    /// The partner's `Retry-After`, in seconds.
    pub retry_after: Option<u32>,
    /// The start of the answer.
    pub response: Option<String>,
    pub duration: Duration,
}

impl Sent {
    /// Any 2xx status is success, even if the body then stalled or broke off:
    /// the partner has accepted the postback.
    pub fn is_success(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// An attempt that never left: the request could not be prepared.
    pub fn unsendable(reason: String) -> Self {
        Sent {
            status: None,
            error: Some(AttemptError::Request),
            detail: Some(reason),
            retry_after: None,
            response: None,
            duration: Duration::ZERO,
        }
    }
}

/// Who started the current round of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The fan-out of a recorded event.
    Scheduled,
    /// `POST /deliveries/{id}/retry`.
    Manual,
    /// A recovery of the endpoint's missed deliveries.
    Recovery,
}

/// What the worker does with the delivery's message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delivered or failed: acknowledge the message.
    Finished,
    /// Keep the message hidden this many seconds, then attempt again.
    RetryIn(u32),
}

/// Where an open delivery waits, for the reconciler's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Delivered, failed or cancelled: nothing to look after.
    Closed,
    /// Pending: if nobody has attempted it by this time, queue it again.
    CheckAt(DateTime<Utc>),
    /// Pending on a paused endpoint: waits until the endpoint is re-activated.
    Parked,
}

/// A manual retry of a delivery whose round is still under way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery `{0}` is already pending")]
pub struct AlreadyPending(pub DeliveryId);

impl Delivery {
    /// What its event owes of this delivery when the event's write does not
    /// store it (created by its claim).
    pub fn owed(&self) -> Owed {
        Owed {
            endpoint_id: self.endpoint_id.clone(),
            due: self.next_attempt_at.filter(|t| *t > self.created_at),
            after: self.after.clone(),
            after_event: self.after_event.clone(),
        }
    }

    /// The delivery `id` its event owes, as its first claim creates it:
    /// pending, no attempt yet, created when the event was recorded.
    pub fn from_owed(id: DeliveryId, owed: &Owed, event: Event) -> Delivery {
        let at = event.recorded_at;
        let event = Event {
            delivery_ids: Vec::new(),
            owed: Default::default(),
            ..event
        };
        Delivery {
            id,
            event_id: event.id.clone(),
            endpoint_id: owed.endpoint_id.clone(),
            partner_id: event.partner_id.clone(),
            status: DeliveryStatus::Pending,
            event,
            attempts: Vec::new(),
            round_start: 0,
            next_attempt_at: Some(owed.due.unwrap_or(at)),
            parked: false,
            after: owed.after.clone(),
            after_event: owed.after_event.clone(),
            reason: None,
            recovery_id: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// Attempts made in the current round.
    pub fn made_in_round(&self) -> usize {
        self.attempts.len().saturating_sub(self.round_start)
    }

    /// Who started the current round.
    pub fn trigger(&self) -> Trigger {
        if self.recovery_id.is_some() {
            Trigger::Recovery
        } else if self.round_start > 0 {
            Trigger::Manual
        } else {
            Trigger::Scheduled
        }
    }

    /// Records one attempt made at `now` and decides what comes next.
    pub fn record(&mut self, sent: &Sent, schedule: &RetrySchedule, now: DateTime<Utc>) -> Step {
        let (manual, recovery_id) = self.first_of_round();
        let mut attempt = Attempt {
            n: self.attempts.len() as u32 + 1,
            at: now,
            ms: sent.duration.as_millis() as u64,
            code: sent.status,
            error: sent.error,
            response: sent.response.clone(),
            next_at: None,
            manual,
            recovery_id,
        };
        let made = self.made_in_round() + 1;
        let step = if sent.is_success() {
            Step::Finished
        } else {
            match sent
                .error
                .filter(|e| e.is_retryable())
                .and_then(|_| schedule.delay_after(made, sent.retry_after))
            {
                Some(secs) => Step::RetryIn(secs),
                None => Step::Finished,
            }
        };
        match step {
            Step::RetryIn(secs) => {
                let at = now + Span::seconds(i64::from(secs));
                attempt.next_at = Some(at);
                self.status = DeliveryStatus::Pending;
                self.next_attempt_at = Some(at);
            }
            Step::Finished => {
                self.status = if sent.is_success() {
                    DeliveryStatus::Delivered
                } else {
                    DeliveryStatus::Failed
                };
                self.next_attempt_at = None;
            }
        }
        self.attempts.push(attempt);
        self.parked = false;
        self.reason = None;
        self.updated_at = now;
        step
    }

    /// Records the attempt of a worker that claimed the delivery at
    /// `claimed_at` and stopped before recording its outcome (found at `now`
    /// by the next claim): it counts as an attempt, since the partner may have
    /// received it; the next send carries the same idempotency key.
    pub fn lost_attempt(&mut self, claimed_at: DateTime<Utc>, now: DateTime<Utc>) {
        let (manual, recovery_id) = self.first_of_round();
        self.attempts.push(Attempt {
            n: self.attempts.len() as u32 + 1,
            at: claimed_at,
            ms: 0,
            code: None,
            error: Some(AttemptError::Unknown),
            response: Some(format!(
                "outcome unknown: the worker that claimed this delivery at {} stopped before recording what happened; the partner may have received it",
                claimed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )),
            next_at: Some(now),
            manual,
            recovery_id,
        });
        self.updated_at = now;
    }

    /// What the next attempt records of who started its round: manual, or
    /// the recovery, on the round's first attempt only.
    fn first_of_round(&self) -> (bool, Option<RecoveryId>) {
        if self.made_in_round() > 0 {
            return (false, None);
        }
        match self.trigger() {
            Trigger::Manual => (true, None),
            Trigger::Recovery => (false, self.recovery_id.clone()),
            Trigger::Scheduled => (false, None),
        }
    }

    /// Starts a new round on a finished delivery; its first attempt is logged as manual.
    pub fn restart(&mut self, now: DateTime<Utc>) -> Result<(), AlreadyPending> {
        self.new_round(None, now, now)
    }

    /// Starts a new round for a recovery, its first attempt due at `due`
    /// (the recovery's rate spreads them); the attempt names the recovery.
    pub fn recover(
        &mut self,
        recovery: &RecoveryId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), AlreadyPending> {
        self.new_round(Some(recovery.clone()), due, now)
    }

    fn new_round(
        &mut self,
        recovery: Option<RecoveryId>,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), AlreadyPending> {
        if self.status == DeliveryStatus::Pending {
            return Err(AlreadyPending(self.id.clone()));
        }
        self.status = DeliveryStatus::Pending;
        self.round_start = self.attempts.len();
        self.next_attempt_at = Some(due);
        self.parked = false;
        self.reason = None;
        self.recovery_id = recovery;
        self.updated_at = now;
        Ok(())
    }

    /// Holds a pending delivery without attempting it (its endpoint is
    /// paused); re-activating the endpoint sends it.
    pub fn park(&mut self, reason: impl Into<String>, now: DateTime<Utc>) {
        self.parked = true;
        self.reason = Some(reason.into());
        self.updated_at = now;
    }

    /// Puts the next attempt off until `until` without making one (the
    /// endpoint's circuit breaker is open), saying why.
    pub fn hold(&mut self, reason: impl Into<String>, until: DateTime<Utc>, now: DateTime<Utc>) {
        self.next_attempt_at = Some(until);
        self.reason = Some(reason.into());
        self.updated_at = now;
    }

    /// Ends a pending delivery that can never be sent (its endpoint was deleted).
    pub fn cancel(&mut self, reason: impl Into<String>, now: DateTime<Utc>) {
        self.status = DeliveryStatus::Cancelled;
        self.next_attempt_at = None;
        self.parked = false;
        self.reason = Some(reason.into());
        self.updated_at = now;
    }

    /// Where the delivery waits, for the reconciler: `lease_until` is the end
    /// of a worker's claim, if one holds it.
    pub fn open(&self, lease_until: Option<DateTime<Utc>>) -> Open {
        if self.status != DeliveryStatus::Pending {
            return Open::Closed;
        }
        if self.parked {
            return Open::Parked;
        }
        let due = self.next_attempt_at.unwrap_or(self.created_at);
        Open::CheckAt(due.max(lease_until.unwrap_or(due)) + RECONCILE_GRACE)
    }
}

/// Seconds from `now` until `at`, as an SQS visibility timeout (1 s to 12 h).
pub fn visibility_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i32 {
    let ms = (at - now).num_milliseconds().max(0);
    ((ms + 999) / 1000).clamp(1, i64::from(MAX_VISIBILITY_SECONDS)) as i32
}

/// How long to hide a message after a store or queue outage, by how many
/// times SQS has handed it out: 10 s, doubling, at most 15 minutes. With the
/// events queue's `maxReceiveCount` of 30 an outage of about six hours is
/// ridden out before a message reaches its dead-letter queue.
pub fn outage_backoff_seconds(receive_count: u32) -> i32 {
    let exp = receive_count.saturating_sub(1).min(10);
    (10i64 << exp).min(900) as i32
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<u32> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.min(u64::from(u32::MAX)) as u32);
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.with_timezone(&Utc) - now).num_seconds();
    Some(secs.clamp(0, i64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests;
