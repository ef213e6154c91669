//! What makes a conversion the same as another, as pure functions.
//!
//! * **With a transaction id** (a postback's `transaction_id`, every pipeline
//!   event), the transaction is the identity. Its first event is a new
//!   conversion; a request identical to the transaction's current state (same
//!   event name, status and payout) is a duplicate; anything else is a change
//!   (pending → approved → rejected → approved: each fires). A pipeline event
//!   that names its `occurred_at` is also a duplicate of any remembered change
//!   with the same event, status and time, so an at-least-once queue handing
//!   an old message back late cannot pass for a reversal.
//! * **Time decides, not arrival.** A change whose `occurred_at` is older
//!   than the transaction's state is [`Identity::Late`]: kept, never fired,
//!   never moving the state back. Without `occurred_at`, arrival is the time.
//! * **One reversal per payout.** An invalidation of an invalidated
//!   transaction is a repeat, whatever it names.
//! * **Without one** (advertiser postbacks only), the offer's
//!   [`RepeatPolicy`] decides: every postback is a conversion except an
//!   identical one within the retry window (the default, for recurring
//!   purchases on one click), or one per click and event, or one per click.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

use crate::domain::{
    RepeatPolicy, SeenChange, Status, Transaction, INVALIDATION, MAX_SEEN_CHANGES,
};
use crate::ids::{self, EventId};

/// What one more request about a transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The transaction's first event.
    New,
    /// A change of a known transaction: its number (1 for the first change).
    Change(u32),
    /// A repeat of this recorded event.
    Duplicate(EventId),
    /// A change that happened before the transaction's current state (its
    /// `occurred_at` is older): kept in the history, it fires nothing and
    /// moves nothing.
    Late,
    /// The current state said again at a later `occurred_at`: fires nothing,
    /// but the state's time moves on (a change between the two times is
    /// then late).
    Restated,
}

/// Classifies a request of `event` / `status` (with the payout it names, and
/// the time it says it happened, if it says) against what is known.
pub fn classify(
    known: Option<&Transaction>,
    event: &str,
    status: Status,
    payout: Option<Decimal>,
    occurred_at: Option<DateTime<Utc>>,
) -> Identity {
    let Some(t) = known else {
        return Identity::New;
    };
    if let Some(at) = occurred_at {
        if let Some(seen) = t
            .seen
            .iter()
            .find(|s| s.event == event && s.status == status && s.occurred_at == at)
        {
            return Identity::Duplicate(seen.event_id.clone());
        }
    }
    // The current state: the change remembered as the transaction's last
    // event (older records: the last remembered, or the transaction itself).
    let current = t
        .seen
        .iter()
        .rev()
        .find(|s| s.event_id == t.last_event_id)
        .or(t.seen.last());
    let (cur_event, cur_status, cur_payout) = match current {
        Some(s) => (s.event.as_str(), s.status, s.payout),
        None => (t.event.as_str(), t.status, t.payout),
    };
    // One reversal per payout: an invalidation of an invalidated transaction
    // is a repeat, whatever status or amount it names. A new payout after it
    // is a change, and may be invalidated in its turn.
    if event == INVALIDATION && cur_event == INVALIDATION {
        return Identity::Duplicate(t.last_event_id.clone());
    }
    // Time decides, not arrival: a change older than the state is late.
    if occurred_at.is_some_and(|at| at < t.state_time()) {
        return Identity::Late;
    }
    let same_payout = payout.is_none_or(|p| p.abs() == cur_payout.abs());
    if cur_event == event && cur_status == status && same_payout {
        if occurred_at.is_some_and(|at| at > t.state_time()) {
            return Identity::Restated;
        }
        return Identity::Duplicate(t.last_event_id.clone());
    }
    Identity::Change(t.changes + 1)
}

/// The id of a transaction's event: its scope, id, change number, what
/// changed and the time it names (if it names one), so that two different
/// changes racing on the same number never share an id (the transaction's
/// version decides which one stands, and the loser decides again), while a
/// retry of the same change lands on the same id.
pub fn transaction_event_id(
    source: &str,
    transaction_key: &str,
    change: u32,
    event: &str,
    status: Status,
    occurred_at: Option<DateTime<Utc>>,
) -> EventId {
    let change = change.to_string();
    let mut parts = vec![source, transaction_key, &change, event, status.as_str()];
    let at = occurred_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    if let Some(at) = &at {
        parts.push(at);
    }
    EventId::derive(&parts)
}

/// Remembers a change on the transaction's new state, keeping the latest few.
pub fn remember(seen: &mut Vec<SeenChange>, change: SeenChange) {
    seen.push(change);
    if seen.len() > MAX_SEEN_CHANGES {
        seen.drain(..seen.len() - MAX_SEEN_CHANGES);
    }
}

/// What an advertiser postback without a transaction id is, by the offer's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostbackIdentity {
    /// Its id is derived from what the policy keys on: a repeat lands on it.
    Keyed(EventId),
    /// A new conversion unless an identical postback (this fingerprint) came
    /// within the retry window.
    Windowed {
        fingerprint: String,
        event_id: EventId,
    },
}

/// The parts of a postback that make it identical to another.
pub struct PostbackParts<'a> {
    pub click_id: &'a str,
    pub event: &'a str,
    pub status: Status,
    pub payout: Option<Decimal>,
    pub currency: Option<&'a str>,
    pub goal: Option<&'a str>,
    pub extra: &'a BTreeMap<String, serde_json::Value>,
}

/// The identity of a postback without a transaction id under `policy`
/// (`window_seconds`: the offer's retry window, for `every_postback`).
///
/// Under `every_postback` the window decides whether an identical postback
/// is a retry; the event id is the fingerprint's within a span of
/// `window_seconds` (its number since the epoch), so that a retry within the span
/// lands on the same event id, and its messages, sent ahead of its write,
/// name the same deliveries as the first's (harmless: the claim finds them
/// taken). Two conversions never share one: a second is new only once the
/// first's window has closed, `window_seconds` or more later, so in a later
/// span. A retry that falls in the next span has an event id never written,
/// and its messages are dropped as ahead of a write that never happened.
pub fn postback_identity(
    policy: RepeatPolicy,
    window_seconds: u32,
    p: &PostbackParts<'_>,
    now: DateTime<Utc>,
) -> PostbackIdentity {
    match policy {
        RepeatPolicy::PerClick => PostbackIdentity::Keyed(EventId::derive(&[
            "postback",
            p.click_id,
            "",
            "",
            p.status.as_str(),
        ])),
        // The id this policy always had: (click, event, no transaction, status).
        RepeatPolicy::PerEvent => PostbackIdentity::Keyed(EventId::derive(&[
            "postback",
            p.click_id,
            p.event,
            "",
            p.status.as_str(),
        ])),
        RepeatPolicy::EveryPostback => {
            let payout = p
                .payout
                .map(|d| d.normalize().to_string())
                .unwrap_or_default();
            let mut parts: Vec<&str> = vec![
                "postback-fingerprint",
                p.click_id,
                p.event,
                p.status.as_str(),
                &payout,
                p.currency.unwrap_or(""),
                p.goal.unwrap_or(""),
            ];
            let extra: Vec<(String, String)> = p
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            for (k, v) in &extra {
                parts.push(k);
                parts.push(v);
            }
            let fingerprint = ids::derived_id("fp", &parts);
            let span = i64::from(window_seconds.max(1)) * 1000;
            let (window, at) = (
                window_seconds.to_string(),
                now.timestamp_millis().div_euclid(span).to_string(),
            );
            PostbackIdentity::Windowed {
                event_id: EventId::derive(&[&fingerprint, "span", &window, &at]),
                fingerprint,
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

    fn txn(event: &str, status: Status, payout: i64) -> Transaction {
        Transaction {
            transaction_id: crate::ids::t("T"),
            partner_id: Some(crate::ids::t("p")),
            event: event.into(),
            status,
            payout: Decimal::new(payout, 2),
            currency: "USD".into(),
            click_id: None,
            lead_id: None,
            offer_id: None,
            goal: None,
            attributes: Default::default(),
            last_event_id: crate::ids::t("evt_last"),
            invalidated_at: None,
            updated_at: at(0),
            scope: None,
            changes: 0,
            version: 1,
            state_at: None,
            last_delivery: Default::default(),
            waiting_invalidation: None,
            placeholder: false,
            first_event: None,
            seen: vec![SeenChange {
                event: event.into(),
                status,
                occurred_at: at(0),
                payout: Decimal::new(payout, 2),
                event_id: crate::ids::t("evt_last"),
            }],
        }
    }

    #[test]
    fn status_changes_fire_in_every_direction_and_only_an_identical_repeat_is_a_duplicate() {
        let mut t = txn("sale", Status::Pending, 750);
        assert_eq!(
            classify(None, "sale", Status::Pending, None, None),
            Identity::New
        );
        assert_eq!(
            classify(Some(&t), "sale", Status::Pending, None, None),
            Identity::Duplicate(crate::ids::t("evt_last"))
        );
        assert_eq!(
            classify(
                Some(&t),
                "sale",
                Status::Pending,
                Some(Decimal::new(750, 2)),
                None
            ),
            Identity::Duplicate(crate::ids::t("evt_last"))
        );
        assert_eq!(
            classify(
                Some(&t),
                "sale",
                Status::Pending,
                Some(Decimal::new(900, 2)),
                None
            ),
            Identity::Change(1),
            "another payout is a change"
        );
        for (n, status) in [Status::Approved, Status::Rejected, Status::Approved]
            .into_iter()
            .enumerate()
        {
            let n = n as u32 + 1;
            assert_eq!(
                classify(Some(&t), "sale", status, None, None),
                Identity::Change(n)
            );
            t.changes = n;
            t.last_event_id = crate::ids::t(&format!("evt_{n}"));
            remember(
                &mut t.seen,
                SeenChange {
                    event: "sale".into(),
                    status,
                    occurred_at: at(i64::from(n)),
                    payout: t.payout,
                    event_id: t.last_event_id.clone(),
                },
            );
        }
        // rejected → approved was a reversal; approved again now is a repeat.
        assert_eq!(
            classify(Some(&t), "sale", Status::Approved, None, None),
            Identity::Duplicate(crate::ids::t("evt_3"))
        );
    }

    #[test]
    fn time_decides_an_older_change_is_late_and_the_state_said_again_later_is_restated() {
        // State: approved at 10.
        let mut t = txn("payout", Status::Approved, 5000);
        t.state_at = Some(at(10));
        // An older change, whatever it says, moves nothing.
        for status in [Status::Pending, Status::Rejected] {
            assert_eq!(
                classify(Some(&t), "payout", status, None, Some(at(5))),
                Identity::Late
            );
        }
        assert_eq!(
            classify(Some(&t), INVALIDATION, Status::Approved, None, Some(at(5))),
            Identity::Late,
            "an invalidation older than the state is late too"
        );
        // A newer one is a change; at the same time, arrival breaks the tie.
        assert_eq!(
            classify(Some(&t), "payout", Status::Rejected, None, Some(at(11))),
            Identity::Change(1)
        );
        assert_eq!(
            classify(Some(&t), "payout", Status::Rejected, None, Some(at(10))),
            Identity::Change(1)
        );
        // No time of its own: arrival is its time, never late.
        assert_eq!(
            classify(Some(&t), "payout", Status::Rejected, None, None),
            Identity::Change(1)
        );
        // The state said again later: its time moves, nothing fires.
        assert_eq!(
            classify(Some(&t), "payout", Status::Approved, None, Some(at(20))),
            Identity::Restated
        );
        assert_eq!(
            classify(Some(&t), "payout", Status::Approved, None, None),
            Identity::Duplicate(crate::ids::t("evt_last"))
        );
        // Older records without a state time: their last change's time.
        t.state_at = None;
        assert_eq!(t.state_time(), at(0));
    }

    #[test]
    fn one_reversal_per_payout_and_a_new_payout_may_be_reversed_again() {
        let mut t = txn("payout", Status::Approved, 5000);
        assert_eq!(
            classify(Some(&t), INVALIDATION, Status::Approved, None, None),
            Identity::Change(1),
            "the first invalidation reverses the payout"
        );
        t.changes = 1;
        t.last_event_id = crate::ids::t("evt_inv");
        remember(
            &mut t.seen,
            SeenChange {
                event: INVALIDATION.into(),
                status: Status::Approved,
                occurred_at: at(5),
                payout: Decimal::new(-5000, 2),
                event_id: crate::ids::t("evt_inv"),
            },
        );
        for (status, payout) in [
            (Status::Approved, None),
            (Status::Rejected, None),
            (Status::Pending, Some(Decimal::new(1000, 2))),
        ] {
            assert_eq!(
                classify(Some(&t), INVALIDATION, status, payout, None),
                Identity::Duplicate(crate::ids::t("evt_inv")),
                "an invalidation of an invalidated transaction is a repeat"
            );
        }
        // A new payout after the reversal is a change, and may be reversed.
        assert_eq!(
            classify(Some(&t), "payout", Status::Approved, None, None),
            Identity::Change(2)
        );
        t.changes = 2;
        remember(
            &mut t.seen,
            SeenChange {
                event: "payout".into(),
                status: Status::Approved,
                occurred_at: at(6),
                payout: Decimal::new(5000, 2),
                event_id: crate::ids::t("evt_again"),
            },
        );
        t.last_event_id = crate::ids::t("evt_again");
        assert_eq!(
            classify(Some(&t), INVALIDATION, Status::Approved, None, None),
            Identity::Change(3)
        );
    }

    #[test]
    fn an_old_queue_message_handed_back_late_is_recognised_by_its_time() {
        let mut t = txn("payout", Status::Pending, 100);
        remember(
            &mut t.seen,
            SeenChange {
                event: "payout".into(),
                status: Status::Approved,
                occurred_at: at(10),
                payout: t.payout,
                event_id: crate::ids::t("evt_approved"),
            },
        );
        t.changes = 1;
        t.last_event_id = crate::ids::t("evt_approved");
        assert_eq!(
            classify(Some(&t), "payout", Status::Pending, None, Some(at(0))),
            Identity::Duplicate(crate::ids::t("evt_last"))
        );
        assert_eq!(
            classify(Some(&t), "payout", Status::Pending, None, Some(at(20))),
            Identity::Change(2),
            "a new pending at a new time is a real change"
        );
    }

    #[test]
    fn racing_changes_of_the_same_number_get_different_ids() {
        let a = transaction_event_id("internal", "T", 2, "payout", Status::Approved, None);
        let b = transaction_event_id("internal", "T", 2, "payout", Status::Rejected, None);
        assert_ne!(a, b);
        assert_eq!(
            a,
            transaction_event_id("internal", "T", 2, "payout", Status::Approved, None)
        );
        // The same change at two times (one arriving late): two events, so
        // the one that loses the race decides again instead of passing for
        // a repeat of the other.
        let early =
            transaction_event_id("internal", "T", 1, "payout", Status::Approved, Some(at(1)));
        let later =
            transaction_event_id("internal", "T", 1, "payout", Status::Approved, Some(at(3)));
        assert_ne!(early, later);
        assert_eq!(
            later,
            transaction_event_id("internal", "T", 1, "payout", Status::Approved, Some(at(3)))
        );
    }

    #[test]
    fn a_transaction_remembers_only_its_latest_changes() {
        let mut seen = Vec::new();
        for i in 0..30 {
            remember(
                &mut seen,
                SeenChange {
                    event: "e".into(),
                    status: Status::Approved,
                    occurred_at: at(i),
                    payout: Decimal::ZERO,
                    event_id: crate::ids::t(&format!("evt_{i}")),
                },
            );
        }
        assert_eq!(seen.len(), MAX_SEEN_CHANGES);
        assert_eq!(seen.last().unwrap().event_id, "evt_29");
    }

    #[test]
    fn postbacks_without_a_transaction_follow_the_offers_policy() {
        let extra = BTreeMap::new();
        let parts = |event: &'static str, payout: i64| PostbackParts {
            click_id: "c",
            event,
            status: Status::Approved,
            payout: Some(Decimal::new(payout, 2)),
            currency: None,
            goal: None,
            extra: &extra,
        };
        let id = |policy, p: &PostbackParts<'_>, s| match postback_identity(policy, 60, p, at(s)) {
            PostbackIdentity::Keyed(id) => id.to_string(),
            PostbackIdentity::Windowed { fingerprint, .. } => fingerprint,
        };
        // every_postback: a repeat has the same fingerprint, another payout does not;
        // each gets its own event id (the window decides whether it is a duplicate).
        let p = parts("purchase", 4999);
        assert_eq!(
            id(RepeatPolicy::EveryPostback, &p, 0),
            id(RepeatPolicy::EveryPostback, &p, 9)
        );
        assert_ne!(
            id(RepeatPolicy::EveryPostback, &p, 0),
            id(RepeatPolicy::EveryPostback, &parts("purchase", 2500), 0)
        );
        // The event id: one per span of the window, so a retry within it
        // lands on the first's id, and a conversion after the window closed
        // (a span later at least) on a new one.
        let event_id =
            |window, s| match postback_identity(RepeatPolicy::EveryPostback, window, &p, at(s)) {
                PostbackIdentity::Windowed { event_id, .. } => event_id,
                other => panic!("{other:?}"),
            };
        // `at(0)` is 1_800_000_000 s: a multiple of 60, the start of a span.
        assert_eq!(event_id(60, 0), event_id(60, 59));
        assert_ne!(event_id(60, 59), event_id(60, 60));
        assert_ne!(
            event_id(60, 0),
            event_id(120, 0),
            "another window, another id"
        );
        for first in [0, 1, 30, 59] {
            // Whenever the first falls in its span, the next conversion
            // (its window closed: 60 s on or later) has another id.
            for later in [60, 61, 90, 119, 120, 600] {
                assert_ne!(event_id(60, first), event_id(60, first + later));
            }
        }
        // per_event: one per event name, whatever the payout; per_click: one per click.
        assert_eq!(
            id(RepeatPolicy::PerEvent, &p, 0),
            id(RepeatPolicy::PerEvent, &parts("purchase", 1), 5)
        );
        assert_ne!(
            id(RepeatPolicy::PerEvent, &p, 0),
            id(RepeatPolicy::PerEvent, &parts("signup", 1), 0)
        );
        assert_eq!(
            id(RepeatPolicy::PerClick, &p, 0),
            id(RepeatPolicy::PerClick, &parts("signup", 1), 0)
        );
    }
}
