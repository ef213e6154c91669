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

use crate::domain::{Attempt, Delivery, DeliveryStatus};

/// The SQS limit on a message's visibility timeout: the longest single delay.
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;
/// Most attempts in a schedule; the delivery queue's `maxReceiveCount` (50) is above it.
pub const MAX_ATTEMPTS: usize = 20;
/// Longest a whole schedule may last: a day inside the delivery queue's
/// 14-day retention (template.yaml `MessageRetentionPeriod`).
pub const MAX_SCHEDULE_SECONDS: u64 = 13 * 86_400;
/// Longest delay a partner's `Retry-After` can ask for: one hour.
pub const MAX_RETRY_AFTER_SECONDS: u32 = 3_600;
/// The default schedule: attempts at 0 s, +60, +90, +120, +150, then `failed`.
pub const DEFAULT_RETRY_SCHEDULE: [u32; 5] = [0, 60, 90, 120, 150];
/// How long past its due time (or past a worker's lease) an open delivery
/// may go unattended before the reconciler queues it again. With the
/// reconciler running every minute, a stranded delivery is attempted within
/// two minutes of its due time.
pub const RECONCILE_GRACE: Span = Span::seconds(45);

/// The delays before each attempt of one round: `[0, 60, 90]` means attempt 1
/// at once, attempt 2 60 s after attempt 1, attempt 3 90 s after attempt 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RetrySchedule(Vec<u32>);

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule(DEFAULT_RETRY_SCHEDULE.to_vec())
    }
}

impl RetrySchedule {
    /// A schedule of 1 to 20 delays, each within the SQS visibility limit and
    /// the whole within the queue's retention. The error is a sentence.
    pub fn new(delays: Vec<u32>) -> Result<Self, String> {
        if delays.is_empty() || delays.len() > MAX_ATTEMPTS {
            return Err(format!("must hold 1 to {MAX_ATTEMPTS} delays"));
        }
        if delays.iter().any(|&d| d > MAX_VISIBILITY_SECONDS) {
            return Err(format!(
                "each delay must be 0 to {MAX_VISIBILITY_SECONDS} seconds"
            ));
        }
        if delays.iter().map(|&d| u64::from(d)).sum::<u64>() > MAX_SCHEDULE_SECONDS {
            return Err(format!("must fit in {MAX_SCHEDULE_SECONDS} seconds"));
        }
        Ok(RetrySchedule(delays))
    }

    /// The delays, in seconds.
    pub fn delays(&self) -> &[u32] {
        &self.0
    }

    /// Attempts in one round.
    pub fn attempts(&self) -> usize {
        self.0.len()
    }

    /// Delay in seconds before the attempt after attempt number `made` of the
    /// round (1-based), or `None` if that was the last. A `Retry-After` may
    /// lengthen the delay (up to an hour); nothing shortens it, so a 429 or a
    /// timeout never brings the next attempt forward.
    pub fn delay_after(&self, made: usize, retry_after: Option<u32>) -> Option<u32> {
        let base = *self.0.get(made)?;
        let asked = retry_after
            .map(|r| r.min(MAX_RETRY_AFTER_SECONDS))
            .unwrap_or(0);
        Some(base.max(asked).min(MAX_VISIBILITY_SECONDS))
    }
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
pub struct AlreadyPending(pub String);

impl Delivery {
    /// Attempts made in the current round.
    pub fn made_in_round(&self) -> usize {
        self.attempts.len().saturating_sub(self.round_start)
    }

    /// Who started the current round.
    pub fn trigger(&self) -> Trigger {
        if self.round_start > 0 {
            Trigger::Manual
        } else {
            Trigger::Scheduled
        }
    }

    /// Records one attempt made at `now` and decides what comes next.
    pub fn record(&mut self, sent: &Sent, schedule: &RetrySchedule, now: DateTime<Utc>) -> Step {
        let first_of_manual_round = self.trigger() == Trigger::Manual && self.made_in_round() == 0;
        let mut attempt = Attempt {
            n: self.attempts.len() as u32 + 1,
            at: now,
            ms: sent.duration.as_millis() as u64,
            code: sent.status,
            error: sent.error,
            response: sent.response.clone(),
            next_at: None,
            manual: first_of_manual_round,
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

    /// Starts a new round on a finished delivery; its first attempt is logged as manual.
    pub fn restart(&mut self, now: DateTime<Utc>) -> Result<(), AlreadyPending> {
        if self.status == DeliveryStatus::Pending {
            return Err(AlreadyPending(self.id.clone()));
        }
        self.status = DeliveryStatus::Pending;
        self.round_start = self.attempts.len();
        self.next_attempt_at = Some(now);
        self.parked = false;
        self.reason = None;
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
mod tests {
    use super::*;
    use crate::domain::{Event, Source, Status};
    use rust_decimal::Decimal;

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
    }

    fn delivery() -> Delivery {
        let now = at(0);
        Delivery {
            id: "dlv_1".into(),
            event_id: "evt_1".into(),
            endpoint_id: "ep_1".into(),
            partner_id: "p".into(),
            status: DeliveryStatus::Pending,
            event: Event {
                id: "evt_1".into(),
                source: Source::Postback,
                event: "sale".into(),
                status: Status::Approved,
                transaction_id: None,
                partner_id: "p".into(),
                click_id: None,
                lead_id: None,
                offer_id: None,
                advertiser: None,
                goal: None,
                payout: Decimal::ONE,
                currency: "USD".into(),
                occurred_at: now,
                recorded_at: now,
                deleted_at: None,
                attributes: Default::default(),
                delivery_ids: vec![],
            },
            attempts: vec![],
            round_start: 0,
            next_attempt_at: Some(now),
            parked: false,
            reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn answered(code: u16) -> Sent {
        Sent {
            status: Some(code),
            error: (!(200..300).contains(&code)).then_some(AttemptError::HttpStatus),
            detail: None,
            retry_after: None,
            response: None,
            duration: Duration::from_millis(12),
        }
    }

    fn failed(error: AttemptError) -> Sent {
        Sent {
            status: None,
            error: Some(error),
            ..answered(200)
        }
    }

    #[test]
    fn the_default_schedule_gives_five_attempts() {
        let s = RetrySchedule::default();
        let delays: Vec<_> = (1..=5).map(|n| s.delay_after(n, None)).collect();
        assert_eq!(delays, [Some(60), Some(90), Some(120), Some(150), None]);
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_nor_extends_the_round() {
        let s = RetrySchedule::default();
        assert_eq!(s.delay_after(1, Some(300)), Some(300));
        assert_eq!(s.delay_after(1, Some(5)), Some(60));
        assert_eq!(
            s.delay_after(1, Some(999_999)),
            Some(MAX_RETRY_AFTER_SECONDS)
        );
        assert_eq!(s.delay_after(5, Some(10)), None);
    }

    #[test]
    fn schedules_outside_the_queue_limits_are_refused() {
        assert!(RetrySchedule::new(vec![]).is_err());
        assert!(RetrySchedule::new(vec![0; MAX_ATTEMPTS + 1]).is_err());
        assert!(RetrySchedule::new(vec![0, MAX_VISIBILITY_SECONDS + 1]).is_err());
        assert!(RetrySchedule::new(vec![0, MAX_VISIBILITY_SECONDS]).is_ok());
        // The longest possible schedule stays inside the queue's retention.
        assert!(RetrySchedule::new(vec![MAX_VISIBILITY_SECONDS; MAX_ATTEMPTS]).is_ok());
    }

    #[test]
    fn a_failed_attempt_schedules_the_next_and_the_last_one_fails_the_delivery() {
        let s = RetrySchedule::new(vec![0, 60, 90]).unwrap();
        let mut d = delivery();
        assert_eq!(d.record(&answered(500), &s, at(0)), Step::RetryIn(60));
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.next_attempt_at, Some(at(60)));
        assert_eq!(d.attempts[0].next_at, Some(at(60)));
        assert_eq!(
            d.record(&failed(AttemptError::Timeout), &s, at(60)),
            Step::RetryIn(90)
        );
        assert_eq!(d.record(&answered(503), &s, at(150)), Step::Finished);
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.next_attempt_at, None);
        assert_eq!(
            d.attempts.iter().map(|a| a.n).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn any_2xx_delivers_and_a_blocked_or_unrenderable_attempt_is_not_retried() {
        let s = RetrySchedule::default();
        let mut d = delivery();
        assert_eq!(d.record(&answered(204), &s, at(0)), Step::Finished);
        assert_eq!(d.status, DeliveryStatus::Delivered);
        for error in [AttemptError::Blocked, AttemptError::Request] {
            let mut d = delivery();
            assert_eq!(d.record(&failed(error), &s, at(0)), Step::Finished);
            assert_eq!(d.status, DeliveryStatus::Failed);
        }
    }

    #[test]
    fn a_manual_retry_starts_a_new_round_whose_first_attempt_says_so() {
        let s = RetrySchedule::new(vec![0, 5]).unwrap();
        let mut d = delivery();
        d.record(&answered(500), &s, at(0));
        assert_eq!(d.record(&answered(500), &s, at(5)), Step::Finished);
        assert_eq!(d.restart(at(100)), Ok(()));
        assert_eq!(d.trigger(), Trigger::Manual);
        assert_eq!(d.restart(at(101)), Err(AlreadyPending("dlv_1".into())));
        assert_eq!(d.record(&answered(500), &s, at(100)), Step::RetryIn(5));
        assert!(d.attempts[2].manual && !d.attempts[0].manual);
        assert_eq!(d.record(&answered(200), &s, at(105)), Step::Finished);
        assert!(!d.attempts[3].manual);
        assert_eq!(d.status, DeliveryStatus::Delivered);
    }

    #[test]
    fn the_reconciler_looks_after_open_deliveries_only() {
        let s = RetrySchedule::default();
        let mut d = delivery();
        assert_eq!(d.open(None), Open::CheckAt(at(0) + RECONCILE_GRACE));
        // A worker's lease pushes the check past the lease.
        assert_eq!(
            d.open(Some(at(40))),
            Open::CheckAt(at(40) + RECONCILE_GRACE)
        );
        d.park("endpoint paused", at(1));
        assert_eq!(d.open(None), Open::Parked);
        d.record(&answered(500), &s, at(2));
        assert_eq!(d.open(None), Open::CheckAt(at(62) + RECONCILE_GRACE));
        assert_eq!(d.reason, None, "an attempt clears the parking reason");
        d.hold("circuit open", at(500), at(3));
        assert_eq!(d.open(None), Open::CheckAt(at(500) + RECONCILE_GRACE));
        assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Pending, 1));
        d.cancel("endpoint deleted", at(3));
        assert_eq!(
            (d.open(None), d.status),
            (Open::Closed, DeliveryStatus::Cancelled)
        );
    }

    #[test]
    fn outages_back_off_up_to_fifteen_minutes() {
        let delays: Vec<_> = [1, 2, 3, 7, 30].map(outage_backoff_seconds).to_vec();
        assert_eq!(delays, [10, 20, 40, 640, 900]);
    }

    #[test]
    fn visibility_is_rounded_up_and_kept_within_sqs_limits() {
        assert_eq!(visibility_until(at(0), at(10)), 1);
        assert_eq!(visibility_until(at(10) + Span::milliseconds(1), at(10)), 1);
        assert_eq!(visibility_until(at(70), at(10)), 60);
        assert_eq!(visibility_until(at(100_000), at(0)), 43_200);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = at(0);
        assert_eq!(parse_retry_after("120", now), Some(120));
        let later = (now + Span::seconds(120)).to_rfc2822();
        assert_eq!(parse_retry_after(&later, now), Some(120));
        let earlier = (now - Span::seconds(120)).to_rfc2822();
        assert_eq!(parse_retry_after(&earlier, now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
