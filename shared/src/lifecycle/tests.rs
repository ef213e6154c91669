//! The lifecycle's rules, in milliseconds and without stand-ins.

use super::*;
use crate::domain::{Event, Source, Status};
use rust_decimal::Decimal;

fn at(s: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
}

fn delivery() -> Delivery {
    let now = at(0);
    Delivery {
        id: crate::ids::t("dlv_1"),
        event_id: crate::ids::t("evt_1"),
        endpoint_id: crate::ids::t("ep_1"),
        partner_id: crate::ids::t("p"),
        status: DeliveryStatus::Pending,
        event: Event {
            id: crate::ids::t("evt_1"),
            source: Source::Postback,
            event: "sale".into(),
            status: Status::Approved,
            transaction_id: None,
            partner_id: crate::ids::t("p"),
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
            owed: Default::default(),
            sequence: 1,
            superseded: false,
        },
        attempts: vec![],
        round_start: 0,
        next_attempt_at: Some(now),
        parked: false,
        after: None,
        after_event: None,
        reason: None,
        recovery_id: None,
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
    assert_eq!(
        d.restart(at(101)),
        Err(AlreadyPending(crate::ids::t("dlv_1")))
    );
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

#[test]
fn a_recovered_round_names_its_recovery_on_its_first_attempt_only() {
    let schedule = RetrySchedule::new(vec![0, 1]).unwrap();
    let mut d = delivery();
    d.record(&answered(500), &schedule, at(0));
    d.record(&answered(500), &schedule, at(1));
    assert_eq!(d.status, DeliveryStatus::Failed);
    let rid: crate::ids::RecoveryId = crate::ids::t("rcv_1");
    d.recover(&rid, at(30), at(10)).unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.next_attempt_at, Some(at(30)), "due at its send slot");
    assert_eq!(d.trigger(), Trigger::Recovery);
    assert!(
        d.recover(&rid, at(30), at(10)).is_err(),
        "a pending delivery is not recovered"
    );
    d.record(&answered(500), &schedule, at(30));
    d.record(&answered(200), &schedule, at(31));
    let names: Vec<_> = d.attempts.iter().map(|a| a.recovery_id.clone()).collect();
    assert_eq!(names, vec![None, None, Some(rid.clone()), None]);
    assert!(d.attempts.iter().all(|a| !a.manual));
    // A manual retry afterwards is manual again, not the recovery's.
    d.restart(at(40)).unwrap();
    assert_eq!(d.trigger(), Trigger::Manual);
    d.record(&answered(200), &schedule, at(40));
    assert!(d.attempts[4].manual && d.attempts[4].recovery_id.is_none());
}
