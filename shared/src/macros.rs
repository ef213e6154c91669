//! What an event's macros render to when it is delivered to one endpoint:
//! the standard macros (`{transaction_id}`, `{payout_cents}`, ...), the
//! format macros, and the event's attributes. Templates themselves know
//! nothing of events (`crate::template`); this is where the two meet.

use rust_decimal::Decimal;
use serde_json::Value;

use crate::domain::Event;
use crate::template::Lookup;

/// Macro values of an event being delivered to one endpoint.
pub struct EventValues<'a> {
    pub event: &'a Event,
    pub delivery_id: &'a str,
    /// The endpoint's own words for event and status names (`invalidation` →
    /// `invalidated`, `approved` → `Done`).
    pub rename: &'a std::collections::BTreeMap<String, String>,
}

fn decimal(d: &Decimal) -> String {
    d.to_string()
}

fn text(s: impl Into<String>) -> Option<Value> {
    Some(Value::String(s.into()))
}

impl Lookup for EventValues<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        let e = self.event;
        let renamed = |word: &str| {
            self.rename
                .get(word)
                .cloned()
                .unwrap_or_else(|| word.to_string())
        };
        fn opt<T: AsRef<str>>(v: &Option<T>) -> Option<Value> {
            v.as_ref().map(|v| Value::String(v.as_ref().to_string()))
        }
        let standard = match name {
            "click_id" => Some(opt(&e.click_id)),
            "transaction_id" => Some(opt(&e.transaction_id)),
            "event_id" => Some(text(&e.id)),
            // The event's place among its transaction's changes.
            "sequence" => Some(Some(Value::from(e.sequence.max(1)))),
            "delivery_id" => Some(text(self.delivery_id)),
            "event" => Some(text(renamed(&e.event))),
            "status" => Some(text(renamed(e.status.as_str()))),
            // Signed: an invalidation's is negative.
            "payout" => Some(text(decimal(&e.payout))),
            // The amount as first paid, positive even on an invalidation.
            "payout_original" => Some(text(decimal(&e.payout.abs()))),
            "payout_cents" => Some(text((e.payout * Decimal::ONE_HUNDRED).round().to_string())),
            "payout_2dp" => Some(text(e.payout.round_dp(2).to_string())),
            "currency" => Some(text(&e.currency)),
            "offer_id" => Some(opt(&e.offer_id)),
            "advertiser" | "advertiser_name" => Some(opt(&e.advertiser)),
            "goal" => Some(opt(&e.goal)),
            "partner_id" | "affiliate_id" => Some(text(&e.partner_id)),
            "lead_id" => Some(opt(&e.lead_id)),
            // ISO 8601 UTC with milliseconds, as MomentScience documents it.
            "timestamp" => Some(text(
                e.occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )),
            "timestamp_epoch" => Some(text(e.occurred_at.timestamp().to_string())),
            "timestamp_ms" => Some(text(e.occurred_at.timestamp_millis().to_string())),
            "occurred_at" => Some(text(
                e.occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )),
            "deleted_at" => Some(
                e.deleted_at
                    .map(|d| Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
            ),
            _ => None,
        };
        if let Some(v) = standard {
            return v;
        }
        // Nested: `payload.user_id`, `customer.sub_ids`.
        let mut segments = name.split('.');
        let first = segments.next()?;
        if let Some(mut v) = e.attributes.get(first) {
            for s in segments {
                v = v.get(s)?;
            }
            return Some(v.clone());
        }
        if name.contains('.') {
            return None;
        }
        // Bare: `user_id` found inside an object attribute such as `payload`.
        e.attributes
            .values()
            .find_map(|v| v.as_object().and_then(|o| o.get(name)).cloned())
    }
}

/// Macros for templates only: aliases and formats of the standard fields
/// (a POST without a body template sends [`DEFAULT_BODY_FIELDS`]).
pub const FORMAT_MACROS: [&str; 7] = [
    "timestamp_epoch",
    "timestamp_ms",
    "payout_original",
    "payout_cents",
    "payout_2dp",
    "advertiser_name",
    "affiliate_id",
];

/// Every macro a template may use by name, besides the event's attributes.
pub fn standard_macros() -> impl Iterator<Item = &'static str> {
    DEFAULT_BODY_FIELDS.into_iter().chain(FORMAT_MACROS)
}

/// The standard fields: what a POST without a body template sends (each
/// that has a value).
pub const DEFAULT_BODY_FIELDS: [&str; 17] = [
    "click_id",
    "transaction_id",
    "event_id",
    "sequence",
    "delivery_id",
    "event",
    "status",
    "payout",
    "currency",
    "offer_id",
    "advertiser",
    "goal",
    "partner_id",
    "lead_id",
    "timestamp",
    "occurred_at",
    "deleted_at",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_macro_names_a_value_of_an_event() {
        let now = chrono::Utc::now();
        let event = Event {
            id: crate::ids::t("evt_1"),
            source: crate::domain::Source::Internal,
            event: "payout".into(),
            status: crate::domain::Status::Approved,
            transaction_id: Some(crate::ids::t("T")),
            partner_id: crate::ids::t("p"),
            click_id: Some(crate::ids::t("c")),
            lead_id: Some(crate::ids::t("l")),
            offer_id: Some(crate::ids::t("o")),
            advertiser: Some("a".into()),
            goal: Some("g".into()),
            payout: Decimal::new(1234, 2),
            currency: "USD".into(),
            occurred_at: now,
            recorded_at: now,
            deleted_at: Some(now),
            attributes: Default::default(),
            delivery_ids: vec![],
            owed: Default::default(),
            sequence: 1,
            superseded: false,
        };
        let rename = Default::default();
        let values = EventValues {
            event: &event,
            delivery_id: "dlv_1",
            rename: &rename,
        };
        for name in standard_macros() {
            assert!(values.lookup(name).is_some_and(|v| !v.is_null()), "{name}");
        }
        assert_eq!(
            values.lookup("payout_cents"),
            Some(Value::String("1234".into()))
        );
    }
}
