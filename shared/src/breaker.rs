//! A circuit breaker per endpoint, so that a partner that keeps timing out
//! cannot hold the worker pool: after `TRIP_AFTER` timeouts in a row its
//! deliveries wait (their messages hidden, no attempt made, the history
//! saying why) until one probe is let through; a probe that succeeds closes
//! the breaker, one that times out opens it again for twice as long.
//!
//! Only timeouts count: a partner that answers 500 quickly costs the pool
//! nothing, and its deliveries follow their own retry schedule.
//!
//! The state is per process (a warm Lambda instance or the local runner):
//! it costs no request, and each instance learns within `TRIP_AFTER`
//! timeouts. With N instances at most N probes run at once.

use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// Timeouts in a row that open the breaker.
pub const TRIP_AFTER: u32 = 3;
/// How long it first stays open; doubled each time a probe fails.
pub const FIRST_OPEN: Duration = Duration::seconds(30);
/// The longest it stays open.
pub const MAX_OPEN: Duration = Duration::minutes(10);

/// What the breaker says about an attempt to an endpoint now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Attempt as usual.
    Closed,
    /// Attempt: this one is the probe.
    Probe,
    /// Do not attempt before this time.
    Open(DateTime<Utc>),
}

/// How an attempt went, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The partner answered (any status).
    Answered,
    /// No answer within the timeout.
    TimedOut,
}

#[derive(Debug, Clone, Default)]
struct State {
    timeouts: u32,
    open_until: Option<DateTime<Utc>>,
    open_for: Option<Duration>,
    probing: bool,
}

/// The breakers of one process, by endpoint id.
#[derive(Debug, Default)]
pub struct Breakers {
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    /// Whether an attempt to `endpoint_id` may go ahead at `now`.
    pub fn gate(&self, endpoint_id: &str, now: DateTime<Utc>) -> Gate {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = states.get_mut(endpoint_id) else {
            return Gate::Closed;
        };
        match s.open_until {
            None => Gate::Closed,
            Some(until) if now < until || s.probing => {
                // While a probe is out, the others wait for its answer.
                Gate::Open(until.max(now + Duration::seconds(5)))
            }
            Some(_) => {
                s.probing = true;
                Gate::Probe
            }
        }
    }

    /// Records how an attempt to `endpoint_id` went.
    pub fn record(&self, endpoint_id: &str, health: Health, now: DateTime<Utc>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match health {
            Health::Answered => {
                states.remove(endpoint_id);
            }
            Health::TimedOut => {
                let s = states.entry(endpoint_id.to_string()).or_default();
                s.timeouts += 1;
                let reopen = s.probing || (s.open_until.is_none() && s.timeouts >= TRIP_AFTER);
                if reopen {
                    let open_for = s
                        .open_for
                        .map(|d| (d * 2).min(MAX_OPEN))
                        .unwrap_or(FIRST_OPEN);
                    s.open_for = Some(open_for);
                    s.open_until = Some(now + open_for);
                    s.probing = false;
                }
                // Bound memory: a process talks to few endpoints, but never grow without limit.
                if states.len() > 10_000 {
                    states.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn timeouts_in_a_row_open_the_breaker_and_an_answer_resets_the_count() {
        let b = Breakers::default();
        b.record("e", Health::TimedOut, at(0));
        b.record("e", Health::TimedOut, at(1));
        b.record("e", Health::Answered, at(2));
        b.record("e", Health::TimedOut, at(3));
        b.record("e", Health::TimedOut, at(4));
        assert_eq!(b.gate("e", at(5)), Gate::Closed);
        b.record("e", Health::TimedOut, at(5));
        assert_eq!(b.gate("e", at(6)), Gate::Open(at(35)));
        assert_eq!(b.gate("other", at(6)), Gate::Closed, "per endpoint");
    }

    #[test]
    fn one_probe_after_the_wait_closes_it_or_doubles_the_wait() {
        let b = Breakers::default();
        for s in 0..3 {
            b.record("e", Health::TimedOut, at(s));
        }
        assert_eq!(b.gate("e", at(40)), Gate::Probe);
        assert!(
            matches!(b.gate("e", at(40)), Gate::Open(_)),
            "one probe at a time"
        );
        b.record("e", Health::TimedOut, at(41));
        assert_eq!(
            b.gate("e", at(42)),
            Gate::Open(at(101)),
            "open twice as long"
        );
        assert_eq!(b.gate("e", at(101)), Gate::Probe);
        b.record("e", Health::Answered, at(102));
        assert_eq!(b.gate("e", at(103)), Gate::Closed);
    }

    #[test]
    fn the_wait_never_exceeds_ten_minutes() {
        let b = Breakers::default();
        let mut now = 0;
        for s in 0..3 {
            b.record("e", Health::TimedOut, at(s));
        }
        for _ in 0..10 {
            now += 700;
            assert_eq!(b.gate("e", at(now)), Gate::Probe);
            b.record("e", Health::TimedOut, at(now));
        }
        assert_eq!(b.gate("e", at(now + 1)), Gate::Open(at(now) + MAX_OPEN));
    }
}
