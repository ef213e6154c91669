//! Fan-out: one delivery per endpoint whose filters match an event, and the
//! message that carries each delivery on the delivery queue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Endpoint, Event};
use crate::ids::{DeliveryId, EndpointId, EventId, PartnerId};
use crate::lifecycle::{Delivery, DeliveryStatus};

/// Most deliveries one event may fan out to: event + transaction + deliveries
/// must fit one 100-item DynamoDB transaction.
pub const MAX_DELIVERIES_PER_EVENT: usize = 98;

/// The body of a delivery-queue message. Version 1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryMessage {
    pub delivery_id: DeliveryId,
    pub partner_id: PartnerId,
    pub endpoint_id: EndpointId,
    /// The delivery's event (immutable once recorded), so that the worker
    /// renders without reading it. Absent from the reconciler's messages and
    /// those queued before deliveries stopped storing a copy: the worker
    /// reads the event then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// Its event's write did not store the delivery: its event owes it
    /// (`Event::owed`), and its first claim creates it (`delivery.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owed: bool,
}

/// The id of the delivery of `event_id` to `endpoint_id`: derived, so that a
/// retried fan-out writes the same delivery rather than a second one.
pub fn delivery_id(event_id: &EventId, endpoint_id: &EndpointId) -> DeliveryId {
    DeliveryId::derive(&[event_id, endpoint_id])
}

/// The deliveries `event` fans out to among `endpoints`, in endpoint order
/// (goal conditions only when `goals_apply`). Paused endpoints are included:
/// the worker parks their deliveries until the endpoint is re-activated.
/// `previous` holds the transaction's latest delivery to each endpoint: the
/// new one to that endpoint goes after it.
pub fn plan(
    event: &Event,
    endpoints: &[Endpoint],
    goals_apply: bool,
    previous: &std::collections::BTreeMap<EndpointId, DeliveryId>,
    now: DateTime<Utc>,
) -> Vec<Delivery> {
    endpoints
        .iter()
        .filter(|e| e.matches(event, goals_apply))
        .take(MAX_DELIVERIES_PER_EVENT)
        .map(|endpoint| Delivery {
            id: delivery_id(&event.id, &endpoint.id),
            event_id: event.id.clone(),
            endpoint_id: endpoint.id.clone(),
            partner_id: endpoint.partner_id.clone(),
            status: DeliveryStatus::Pending,
            event: Event {
                delivery_ids: Vec::new(),
                ..event.clone()
            },
            attempts: Vec::new(),
            round_start: 0,
            // The schedule's first value is the wait before the first
            // attempt (0: at once); the worker holds an early message until then.
            next_attempt_at: Some(
                now + chrono::Duration::seconds(i64::from(
                    endpoint
                        .retry_schedule
                        .delays()
                        .first()
                        .copied()
                        .unwrap_or(0),
                )),
            ),
            // Never parked here, even for a paused endpoint: the endpoint list
            // may be a cached copy, and only the worker's check against the
            // stored endpoint may park a delivery.
            parked: false,
            after: previous.get(&endpoint.id).cloned(),
            after_event: None,
            reason: None,
            recovery_id: None,
            created_at: now,
            updated_at: now,
        })
        .collect()
}

impl DeliveryMessage {
    /// The message body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The queue message of a delivery.
pub fn message(d: &Delivery) -> String {
    DeliveryMessage {
        delivery_id: d.id.clone(),
        partner_id: d.partner_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        event: Some(d.event.clone()),
        owed: false,
    }
    .body()
}

/// The queue message of a delivery its event's write does not store: its
/// event owes it, and its first claim creates it.
pub fn owed_message(d: &Delivery) -> String {
    DeliveryMessage {
        delivery_id: d.id.clone(),
        partner_id: d.partner_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        event: Some(d.event.clone()),
        owed: true,
    }
    .body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Method, Source, Status};
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;

    fn event(name: &str, status: Status) -> Event {
        let now = Utc::now();
        Event {
            id: crate::ids::t("evt_1"),
            source: Source::Postback,
            event: name.into(),
            status,
            transaction_id: None,
            partner_id: crate::ids::t("p"),
            click_id: Some(crate::ids::t("c")),
            lead_id: None,
            offer_id: Some(crate::ids::t("off_1")),
            advertiser: None,
            goal: Some("signup".into()),
            payout: Decimal::new(1000, 2),
            currency: "USD".into(),
            occurred_at: now,
            recorded_at: now,
            deleted_at: None,
            attributes: BTreeMap::new(),
            delivery_ids: vec![],
            owed: Default::default(),
            sequence: 1,
            superseded: false,
        }
    }

    fn endpoint(id: &str) -> Endpoint {
        let now = Utc::now();
        Endpoint {
            id: crate::ids::t(id),
            partner_id: crate::ids::t("p"),
            name: id.into(),
            url: crate::template::Template::parse("https://example.com/pb").unwrap(),
            method: Method::Get,
            body: None,
            headers: BTreeMap::new(),
            secret_headers: vec![],
            basic_auth: None,
            secret: None,
            events: vec!["*".into()],
            statuses: vec![],
            offers: vec![],
            goals: vec![],
            invalidations: false,
            rename: Default::default(),
            omit_empty: false,
            retry_schedule: crate::lifecycle::RetrySchedule::new(vec![0, 60]).unwrap(),
            version: 1,
            timeout_ms: 1000,
            active: true,
            paused_reason: None,
            paused_at: None,
            slow_until: None,
            ordering: Default::default(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_first_value_of_a_schedule_is_the_wait_before_the_first_attempt() {
        let now = Utc::now();
        let mut held = endpoint("ep_held");
        held.retry_schedule = crate::schedule::RetrySchedule::new(vec![30, 60]).unwrap();
        let e = event("purchase", Status::Approved);
        let plan = plan(&e, &[endpoint("ep_now"), held], true, &BTreeMap::new(), now);
        assert_eq!(
            plan[0].next_attempt_at,
            Some(now),
            "the default [0, …]: at once"
        );
        assert_eq!(
            plan[1].next_attempt_at,
            Some(now + chrono::Duration::seconds(30))
        );
    }

    #[test]
    fn every_matching_endpoint_gets_one_delivery_with_a_stable_id() {
        let e = event("purchase", Status::Approved);
        let mut only_signup = endpoint("ep_b");
        only_signup.events = vec!["signup".into()];
        let plan1 = plan(
            &e,
            &[endpoint("ep_a"), only_signup, endpoint("ep_c")],
            true,
            &Default::default(),
            Utc::now(),
        );
        let ids: Vec<_> = plan1.iter().map(|d| d.endpoint_id.as_str()).collect();
        assert_eq!(ids, ["ep_a", "ep_c"]);
        assert_eq!(
            plan1[0].id,
            delivery_id(&crate::ids::t("evt_1"), &crate::ids::t("ep_a"))
        );
        assert_eq!(plan1[0].status, DeliveryStatus::Pending);
    }

    #[test]
    fn filters_on_status_offer_and_goal_apply() {
        let e = event("purchase", Status::Pending);
        let mut approved_only = endpoint("a");
        approved_only.statuses = vec![Status::Approved];
        let mut other_offer = endpoint("b");
        other_offer.offers = vec![crate::ids::t("off_2")];
        let mut other_goal = endpoint("c");
        other_goal.goals = vec!["deposit".into()];
        let mut same_goal = endpoint("d");
        same_goal.goals = vec!["signup".into()];
        let ids: Vec<_> = plan(
            &e,
            &[approved_only, other_offer, other_goal, same_goal],
            true,
            &Default::default(),
            Utc::now(),
        )
        .into_iter()
        .map(|d| d.endpoint_id)
        .collect();
        assert_eq!(ids, ["d"]);
    }

    #[test]
    fn goal_conditions_are_ignored_while_the_offers_goals_are_switched_off() {
        let e = event("purchase", Status::Approved);
        let mut other_goal = endpoint("c");
        other_goal.goals = vec!["deposit".into()];
        assert!(plan(
            &e,
            std::slice::from_ref(&other_goal),
            true,
            &Default::default(),
            Utc::now()
        )
        .is_empty());
        assert_eq!(
            plan(&e, &[other_goal], false, &Default::default(), Utc::now()).len(),
            1
        );
    }

    #[test]
    fn invalidations_are_opt_in() {
        let e = event("invalidation", Status::Approved);
        let mut opted_in = endpoint("in");
        opted_in.invalidations = true;
        let ids: Vec<_> = plan(
            &e,
            &[endpoint("out"), opted_in],
            true,
            &Default::default(),
            Utc::now(),
        )
        .into_iter()
        .map(|d| d.endpoint_id)
        .collect();
        assert_eq!(ids, ["in"]);
    }

    #[test]
    fn paused_endpoints_still_get_a_pending_delivery() {
        let mut paused = endpoint("p");
        paused.active = false;
        assert_eq!(
            plan(
                &event("x", Status::Approved),
                &[paused],
                true,
                &Default::default(),
                Utc::now()
            )
            .len(),
            1
        );
    }
}
