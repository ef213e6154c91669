//! Compact items: the names and values an event, a transaction or a
//! delivery stores, shorter than the domain's.
//!
//! DynamoDB bills every byte of every attribute *name* in each item, in
//! storage, in point-in-time recovery and in write units. An event's names
//! were a third of its bytes, and several values repeat what the item
//! already holds (its id is in its key; an event recorded when it occurred
//! holds the same time twice; a transaction's last seen change is its
//! state; a delivery made when its event occurred, and attempted at its
//! last change, holds each of those times twice, and each attempt's
//! number is its place; a first change's count
//! and list of changes are 0 and empty). [`encode`] writes such an item
//! with short names and without those repeats; [`decode`] puts them back
//! before the domain type reads it, so everything above the store sees the
//! same values. A transaction its first event holds leaves out what that
//! event holds as well ([`fold_into_first_event`], [`fold_last_deliveries`]).
//!
//! What stays as it is: the keys, the names any expression, index
//! projection or raw read uses (`status`, `version`, `owed`, `claim_…`,
//! `lease_ms`, `due_ms`, `event_at`, `endpoint_id`, `partner_id` of a
//! delivery (GSI2 projects it), `parked`, `reason`, `recovery_id`,
//! `updated_at` of a delivery, `waiting_invalidation`, `ttl`), and the items
//! of every other kind. A delivery's `event_at` and `updated_at` are stored
//! as numbers under those names: the history's filter and a recovery's
//! condition take either type.
//!
//! [`decode`] reads items written either way: those written before this
//! layout (or with `COMPACT_ITEMS=false`) have only long names and every
//! value, and pass through unchanged. Each dropped value leaves a sign that
//! it was dropped (an absent id beside a key that holds it; an absent
//! `recorded_at`, which every event stores otherwise; the `sl` mark of a
//! transaction), so nothing is guessed.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::Attrs;

/// Long name, short name.
type Names = &'static [(&'static str, &'static str)];

const EVENT: Names = &[
    ("source", "so"),
    ("event", "ev"),
    ("status", "st"),
    ("transaction_id", "tx"),
    ("partner_id", "pa"),
    ("click_id", "cl"),
    ("lead_id", "ld"),
    ("offer_id", "of"),
    ("advertiser", "ad"),
    ("goal", "go"),
    ("payout", "po"),
    ("currency", "cu"),
    ("occurred_at", "oc"),
    ("recorded_at", "rc"),
    ("deleted_at", "de"),
    ("attributes", "at"),
    ("delivery_ids", "dl"),
    ("sequence", "sq"),
    ("superseded", "su"),
];

const TRANSACTION: Names = &[
    ("transaction_id", "tx"),
    ("partner_id", "pa"),
    ("event", "ev"),
    ("status", "st"),
    ("payout", "po"),
    ("currency", "cu"),
    ("click_id", "cl"),
    ("lead_id", "ld"),
    ("offer_id", "of"),
    ("goal", "go"),
    ("attributes", "at"),
    ("last_event_id", "la"),
    ("invalidated_at", "iv"),
    ("updated_at", "up"),
    ("scope", "sc"),
    ("changes", "ch"),
    ("seen", "se"),
    ("state_at", "sa"),
    ("last_delivery", "lv"),
    ("placeholder", "ph"),
];

/// The names of a transaction's seen change.
const SEEN: Names = &[
    ("event", "e"),
    ("status", "s"),
    ("occurred_at", "o"),
    ("payout", "p"),
    ("event_id", "i"),
];

const DELIVERY: Names = &[
    ("event_id", "e"),
    ("attempts", "a"),
    ("round_start", "rs"),
    ("next_attempt_at", "na"),
    ("after", "af"),
    ("after_event", "ae"),
    ("created_at", "ca"),
];

/// The names of a delivery's attempt.
const ATTEMPT: Names = &[
    ("code", "c"),
    ("error", "x"),
    ("response", "r"),
    ("next_at", "na"),
    ("manual", "m"),
    ("recovery_id", "ri"),
];

/// The times each kind stores, by long name: written as a number of
/// nanoseconds since the epoch (about 11 bytes) instead of RFC 3339 text
/// (30), when the text is exactly what the domain writes.
const EVENT_TIMES: &[&str] = &["occurred_at", "recorded_at", "deleted_at"];
const TRANSACTION_TIMES: &[&str] = &["updated_at", "state_at", "invalidated_at"];
/// A delivery's `event_at` and `updated_at` keep their names (the history
/// index projects the one, a recovery's condition reads the other) and are
/// numbers too.
const DELIVERY_TIMES: &[&str] = &["created_at", "next_attempt_at", "event_at", "updated_at"];
/// Times in the maps of a list: a seen change's, an attempt's.
const SEEN_TIMES: &[&str] = &["occurred_at"];
const ATTEMPT_TIMES: &[&str] = &["at", "next_at"];

/// A transaction whose last seen change is its state (`event`, `status`,
/// `payout`, `last_event_id`, at `state_at`) stores the others only.
const SEEN_LAST_IS_STATE: &str = "sl";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Event,
    Transaction,
    Delivery,
}

fn kind_of(attrs: &Attrs) -> Option<Kind> {
    match attrs.get("sk")?.as_s().ok()?.as_str() {
        "EVENT" => Some(Kind::Event),
        "TXN" => Some(Kind::Transaction),
        "DELIVERY" => Some(Kind::Delivery),
        _ => None,
    }
}

fn names(kind: Kind) -> Names {
    match kind {
        Kind::Event => EVENT,
        Kind::Transaction => TRANSACTION,
        Kind::Delivery => DELIVERY,
    }
}

/// The key prefix before the id, for the kinds whose id is their key.
fn id_prefix(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Event => Some("EVENT#"),
        Kind::Delivery => Some("DELIVERY#"),
        Kind::Transaction => None,
    }
}

fn times(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Event => EVENT_TIMES,
        Kind::Transaction => TRANSACTION_TIMES,
        Kind::Delivery => DELIVERY_TIMES,
    }
}

/// A time as the domain writes it (chrono's serde form).
fn time_text(t: &DateTime<Utc>) -> Option<String> {
    match serde_json::to_value(t).ok()? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// `names` of `attrs` holding a time: as numbers (`to_number`), or back to text.
fn convert_times(attrs: &mut Attrs, names: &[&str], to_number: bool) {
    for name in names {
        let converted = match attrs.get(*name) {
            Some(AttributeValue::S(text)) if to_number => DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                // Only what reads back as the same text.
                .filter(|t| time_text(t).as_deref() == Some(text.as_str()))
                .and_then(|t| t.timestamp_nanos_opt())
                .map(|n| AttributeValue::N(n.to_string())),
            Some(AttributeValue::N(n)) if !to_number => n
                .parse::<i64>()
                .ok()
                .map(DateTime::from_timestamp_nanos)
                .and_then(|t| time_text(&t))
                .map(AttributeValue::S),
            _ => None,
        };
        if let Some(v) = converted {
            attrs.insert(name.to_string(), v);
        }
    }
}

fn convert_times_each(attrs: &mut Attrs, list: &str, names: &[&str], to_number: bool) {
    if let Some(AttributeValue::L(items)) = attrs.get_mut(list) {
        for v in items {
            if let AttributeValue::M(m) = v {
                convert_times(m, names, to_number);
            }
        }
    }
}

fn rename(attrs: &mut Attrs, names: Names, to_short: bool) {
    for (long, short) in names {
        let (from, to) = if to_short {
            (*long, *short)
        } else {
            (*short, *long)
        };
        if attrs.contains_key(to) {
            continue;
        }
        if let Some(v) = attrs.remove(from) {
            attrs.insert(to.to_string(), v);
        }
    }
}

fn rename_each(list: &mut [AttributeValue], names: Names, to_short: bool) {
    for v in list {
        if let AttributeValue::M(m) = v {
            rename(m, names, to_short);
        }
    }
}

/// `attrs` (an item in the domain's names) in the compact layout; items of
/// other kinds are left as they are.
pub(super) fn encode(attrs: &mut Attrs) {
    let Some(kind) = kind_of(attrs) else { return };
    // The id its key holds.
    if let Some(prefix) = id_prefix(kind) {
        let pk = attrs.get("pk").and_then(|v| v.as_s().ok());
        let id = attrs.get("id").and_then(|v| v.as_s().ok());
        if let (Some(pk), Some(id)) = (pk, id) {
            if pk.strip_prefix(prefix) == Some(id.as_str()) {
                attrs.remove("id");
            }
        }
    }
    match kind {
        Kind::Event => {
            // Recorded when it occurred (every postback).
            if attrs.get("recorded_at").is_some()
                && attrs.get("recorded_at") == attrs.get("occurred_at")
            {
                attrs.remove("recorded_at");
            }
            // Its deliveries are those it owes.
            if attrs.get("delivery_ids").is_some()
                && attrs.get("delivery_ids") == owed_ids(attrs).as_ref()
            {
                attrs.remove("delivery_ids");
            }
        }
        Kind::Transaction => {
            drop_seen_state(attrs);
            // What a transaction without changes holds (its first), which
            // the domain reads as absent alike.
            if attrs.get("changes") == Some(&AttributeValue::N("0".into())) {
                attrs.remove("changes");
            }
            if matches!(attrs.get("seen"), Some(AttributeValue::L(l)) if l.is_empty()) {
                attrs.remove("seen");
            }
        }
        Kind::Delivery => {
            // Made when its event occurred (every postback's first delivery).
            if attrs.get("created_at").is_some() && attrs.get("created_at") == attrs.get("event_at")
            {
                attrs.remove("created_at");
            }
            // An attempt made at the delivery's last change (its last one);
            // each attempt's number, its place in the list.
            let updated = attrs.get("updated_at").cloned();
            if let Some(AttributeValue::L(attempts)) = attrs.get_mut("attempts") {
                for (i, a) in attempts.iter_mut().enumerate() {
                    if let AttributeValue::M(m) = a {
                        if updated.is_some() && m.get("at") == updated.as_ref() {
                            m.remove("at");
                        }
                        if m.get("n") == Some(&AttributeValue::N((i + 1).to_string())) {
                            m.remove("n");
                        }
                    }
                }
            }
        }
    }
    convert_times(attrs, times(kind), true);
    convert_times_each(attrs, "seen", SEEN_TIMES, true);
    convert_times_each(attrs, "attempts", ATTEMPT_TIMES, true);
    if let Some(AttributeValue::L(seen)) = attrs.get_mut("seen") {
        rename_each(seen, SEEN, true);
    }
    if let Some(AttributeValue::L(attempts)) = attrs.get_mut("attempts") {
        rename_each(attempts, ATTEMPT, true);
    }
    rename(attrs, names(kind), true);
}

/// Leaves out a transaction's (long names) last seen change if it is its
/// state, with the mark that says so.
pub(super) fn drop_seen_state(attrs: &mut Attrs) {
    if let Some(AttributeValue::L(seen)) = attrs.get("seen") {
        if seen.last().is_some() && seen.last() == state_as_seen(attrs).as_ref() {
            let mut rest = seen.clone();
            rest.pop();
            attrs.insert("seen".into(), AttributeValue::L(rest));
            attrs.insert(SEEN_LAST_IS_STATE.into(), AttributeValue::Bool(true));
        }
    }
}

/// A transaction as the map its first event's item holds (no keys of its own).
pub(super) fn encode_transaction(attrs: &mut Attrs) {
    attrs.insert("sk".into(), AttributeValue::S("TXN".into()));
    encode(attrs);
    attrs.remove("sk");
}

/// What a transaction holds that its first event holds too, when it is new:
/// (the transaction's name, the event's).
const SAME_AS_FIRST_EVENT: &[(&str, &str)] = &[
    ("transaction_id", "transaction_id"),
    ("partner_id", "partner_id"),
    ("event", "event"),
    ("status", "status"),
    ("payout", "payout"),
    ("currency", "currency"),
    ("click_id", "click_id"),
    ("lead_id", "lead_id"),
    ("offer_id", "offer_id"),
    ("goal", "goal"),
    ("attributes", "attributes"),
    ("last_event_id", "id"),
    ("updated_at", "recorded_at"),
    ("state_at", "occurred_at"),
    ("scope", "offer_id"),
];

/// The mark of a transaction that leaves out what its first event holds
/// (`SAME_AS_FIRST_EVENT`, every one of them equal, absent ones included).
const AS_FIRST_EVENT: &str = "fe";

/// Leaves out of `transaction` (long names) what its first event (`event`,
/// long names) holds, if it holds all of it: a new transaction, which is
/// its first change.
/// Its last seen change is its state (`drop_seen_state` ran), which the
/// mark says too.
pub(super) fn fold_into_first_event(event: &Attrs, transaction: &mut Attrs) {
    if transaction.contains_key(SEEN_LAST_IS_STATE)
        && SAME_AS_FIRST_EVENT
            .iter()
            .all(|(t, e)| transaction.get(*t) == event.get(*e))
    {
        for (t, _) in SAME_AS_FIRST_EVENT {
            transaction.remove(*t);
        }
        transaction.remove(SEEN_LAST_IS_STATE);
        transaction.insert(AS_FIRST_EVENT.into(), AttributeValue::Bool(true));
    }
}

/// Puts back into `transaction` (as stored) what its first event (`event`,
/// long names) holds, if it was left out.
pub(super) fn unfold_from_first_event(event: &Attrs, transaction: &mut Attrs) {
    if transaction.remove(AS_FIRST_EVENT).is_some() {
        for (t, e) in SAME_AS_FIRST_EVENT {
            if let Some(v) = event.get(*e) {
                transaction.insert(t.to_string(), v.clone());
            }
        }
        transaction.insert(SEEN_LAST_IS_STATE.into(), AttributeValue::Bool(true));
    }
}

/// The mark of a transaction whose latest delivery to each endpoint is what
/// its first event owes (a new transaction's, or one whose changes sent nothing).
const LAST_DELIVERIES_OWED: &str = "lo";

/// The endpoint → delivery map of what `event` (long names) owes, if no
/// endpoint is owed twice.
fn owed_by_endpoint(event: &Attrs) -> Option<AttributeValue> {
    let AttributeValue::M(owed) = event.get("owed")? else {
        return None;
    };
    let mut by_endpoint = Attrs::new();
    for (delivery, o) in owed {
        let endpoint = match o {
            AttributeValue::M(o) => o.get("endpoint_id")?.as_s().ok()?,
            _ => return None,
        };
        let before = by_endpoint.insert(endpoint.clone(), AttributeValue::S(delivery.clone()));
        if before.is_some() {
            return None;
        }
    }
    Some(AttributeValue::M(by_endpoint))
}

/// Leaves out of `transaction` (long names) its latest deliveries if they
/// are what its first event (`event`, long names) owes: the event's `owed`
/// is written once, with the event, and never changes.
pub(super) fn fold_last_deliveries(event: &Attrs, transaction: &mut Attrs) {
    let last = transaction.get("last_delivery");
    if last.is_some() && last == owed_by_endpoint(event).as_ref() {
        transaction.remove("last_delivery");
        transaction.insert(LAST_DELIVERIES_OWED.into(), AttributeValue::Bool(true));
    }
}

/// Puts back into `transaction` (as stored) its latest deliveries, if they
/// were left out as what its first event (`event`, long names) owes.
pub(super) fn unfold_last_deliveries(event: &Attrs, transaction: &mut Attrs) {
    if transaction.remove(LAST_DELIVERIES_OWED).is_some() {
        if let Some(last) = owed_by_endpoint(event) {
            transaction.insert("last_delivery".into(), last);
        }
    }
}

/// `attrs` as stored (either layout) in the domain's names.
pub(super) fn decode(attrs: &mut Attrs) {
    let Some(kind) = kind_of(attrs) else { return };
    rename(attrs, names(kind), false);
    if let Some(AttributeValue::L(seen)) = attrs.get_mut("seen") {
        rename_each(seen, SEEN, false);
    }
    if let Some(AttributeValue::L(attempts)) = attrs.get_mut("attempts") {
        rename_each(attempts, ATTEMPT, false);
    }
    convert_times(attrs, times(kind), false);
    convert_times_each(attrs, "seen", SEEN_TIMES, false);
    convert_times_each(attrs, "attempts", ATTEMPT_TIMES, false);
    if let Some(prefix) = id_prefix(kind) {
        if !attrs.contains_key("id") {
            let id = attrs
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix(prefix))
                .map(str::to_string);
            if let Some(id) = id {
                attrs.insert("id".into(), AttributeValue::S(id));
            }
        }
    }
    match kind {
        Kind::Event => {
            if !attrs.contains_key("recorded_at") {
                if let Some(at) = attrs.get("occurred_at").cloned() {
                    attrs.insert("recorded_at".into(), at);
                }
            }
            if !attrs.contains_key("delivery_ids") {
                if let Some(ids) = owed_ids(attrs) {
                    attrs.insert("delivery_ids".into(), ids);
                }
            }
        }
        Kind::Transaction => {
            if attrs.remove(SEEN_LAST_IS_STATE).is_some() {
                if let Some(last) = state_as_seen(attrs) {
                    match attrs.get_mut("seen") {
                        Some(AttributeValue::L(seen)) => seen.push(last),
                        _ => {
                            attrs.insert("seen".into(), AttributeValue::L(vec![last]));
                        }
                    }
                }
            }
            // Every version writes both (a first change's as 0 and none).
            attrs
                .entry("changes".into())
                .or_insert_with(|| AttributeValue::N("0".into()));
            attrs
                .entry("seen".into())
                .or_insert_with(|| AttributeValue::L(Vec::new()));
        }
        Kind::Delivery => {
            // Every version writes its creation and each attempt's time.
            if !attrs.contains_key("created_at") {
                if let Some(at) = attrs.get("event_at").cloned() {
                    attrs.insert("created_at".into(), at);
                }
            }
            let updated = attrs.get("updated_at").cloned();
            if let Some(AttributeValue::L(attempts)) = attrs.get_mut("attempts") {
                for (i, a) in attempts.iter_mut().enumerate() {
                    if let AttributeValue::M(m) = a {
                        if let Some(updated) = &updated {
                            m.entry("at".into()).or_insert_with(|| updated.clone());
                        }
                        m.entry("n".into())
                            .or_insert_with(|| AttributeValue::N((i + 1).to_string()));
                    }
                }
            }
        }
    }
}

/// One attribute of a stored item, by its domain name, in either layout.
pub(super) fn field<'a>(attrs: &'a Attrs, long: &str) -> Option<&'a AttributeValue> {
    attrs.get(long).or_else(|| {
        let kind = kind_of(attrs)?;
        let (_, short) = names(kind).iter().find(|(l, _)| *l == long)?;
        attrs.get(*short)
    })
}

/// The ids an event owes, in order: what its `delivery_ids` are when it
/// owes them all.
fn owed_ids(attrs: &Attrs) -> Option<AttributeValue> {
    let AttributeValue::M(owed) = attrs.get("owed")? else {
        return None;
    };
    let mut ids: Vec<&String> = owed.keys().collect();
    ids.sort();
    Some(AttributeValue::L(
        ids.into_iter()
            .map(|id| AttributeValue::S(id.clone()))
            .collect(),
    ))
}

/// A transaction's state as the seen change that made it (long names).
fn state_as_seen(attrs: &Attrs) -> Option<AttributeValue> {
    let mut m = Attrs::new();
    for (seen, state) in [
        ("event", "event"),
        ("status", "status"),
        ("occurred_at", "state_at"),
        ("payout", "payout"),
        ("event_id", "last_event_id"),
    ] {
        m.insert(seen.to_string(), attrs.get(state)?.clone());
    }
    Some(AttributeValue::M(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: i64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }
    fn item(pairs: &[(&str, AttributeValue)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    fn seen(event: &str, status: &str, at: &str, payout: &str, id: &str) -> AttributeValue {
        AttributeValue::M(item(&[
            ("event", s(event)),
            ("status", s(status)),
            ("occurred_at", s(at)),
            ("payout", s(payout)),
            ("event_id", s(id)),
        ]))
    }
    fn round_trip(original: &Attrs) -> Attrs {
        let mut stored = original.clone();
        encode(&mut stored);
        let mut read = stored.clone();
        decode(&mut read);
        assert_eq!(&read, original, "stored as {stored:?}");
        stored
    }
    const AT: &str = "2026-11-27T12:47:29.351849403Z";

    fn event() -> Attrs {
        let owed = AttributeValue::M(item(&[(
            "dlv_b",
            AttributeValue::M(item(&[("endpoint_id", s("ep_1"))])),
        )]));
        item(&[
            ("pk", s("EVENT#evt_a")),
            ("sk", s("EVENT")),
            ("id", s("evt_a")),
            ("event", s("sale")),
            ("status", s("approved")),
            ("payout", s("12.50")),
            ("occurred_at", s(AT)),
            ("recorded_at", s(AT)),
            ("delivery_ids", AttributeValue::L(vec![s("dlv_b")])),
            ("owed", owed),
            (
                "claim_dlv_b",
                AttributeValue::M(item(&[("c", n(1)), ("l", n(2))])),
            ),
            ("sequence", n(1)),
        ])
    }

    #[test]
    fn an_event_stores_short_names_and_no_repeats_and_reads_back_the_same() {
        let stored = round_trip(&event());
        let mut names: Vec<&str> = stored.keys().map(String::as_str).collect();
        names.sort();
        // No id (its key holds it), no recorded_at (= occurred_at), no
        // delivery ids (= what it owes); the claim and what it owes, which
        // conditions name, as they were.
        assert_eq!(
            names,
            [
                "claim_dlv_b",
                "ev",
                "oc",
                "owed",
                "pk",
                "po",
                "sk",
                "sq",
                "st"
            ]
        );
    }

    #[test]
    fn times_are_stored_as_numbers_unless_their_text_is_not_the_domains() {
        let stored = round_trip(&event());
        assert_eq!(stored.get("oc"), Some(&n(1_795_783_649_351_849_403)));
        let mut e = event();
        e.insert("occurred_at".into(), s("2026-11-27T12:47:29+00:00"));
        assert_eq!(
            round_trip(&e).get("oc"),
            Some(&s("2026-11-27T12:47:29+00:00"))
        );
        let mut d = item(&[
            ("pk", s("DELIVERY#dlv_b")),
            ("sk", s("DELIVERY")),
            ("id", s("dlv_b")),
            ("created_at", s(AT)),
            (
                "attempts",
                AttributeValue::L(vec![AttributeValue::M(item(&[("n", n(1)), ("at", s(AT))]))]),
            ),
        ]);
        let stored = round_trip(&d);
        assert_eq!(stored.get("ca"), Some(&n(1_795_783_649_351_849_403)));
        assert!(matches!(stored.get("a"), Some(AttributeValue::L(l))
            if matches!(&l[0], AttributeValue::M(m) if m.get("at") == Some(&n(1_795_783_649_351_849_403)))));
        d.insert("created_at".into(), s("2026-11-27T12:47:29Z"));
        assert_eq!(
            round_trip(&d).get("ca"),
            Some(&n(1_795_783_649_000_000_000))
        );
    }

    #[test]
    fn an_event_keeps_what_differs_from_what_it_would_repeat() {
        let mut e = event();
        e.insert("recorded_at".into(), s("2026-11-27T13:00:00Z"));
        e.insert(
            "delivery_ids".into(),
            AttributeValue::L(vec![s("dlv_c"), s("dlv_b")]),
        );
        let stored = round_trip(&e);
        assert_eq!(stored.get("rc"), Some(&n(1_795_784_400_000_000_000)));
        assert!(stored.contains_key("dl"));
        // An event that owes nothing keeps its delivery ids.
        let mut e = event();
        e.remove("owed");
        e.remove("claim_dlv_b");
        assert!(round_trip(&e).contains_key("dl"));
        // An id that is not its key's (never written so) is kept.
        let mut e = event();
        e.insert("id".into(), s("evt_other"));
        assert_eq!(round_trip(&e).get("id"), Some(&s("evt_other")));
    }

    #[test]
    fn a_transactions_last_seen_change_is_its_state_and_is_not_stored_twice() {
        let t = item(&[
            ("pk", s("TXN#OFFER#off_a#C0")),
            ("sk", s("TXN")),
            ("event", s("sale")),
            ("status", s("approved")),
            ("payout", s("12.50")),
            ("state_at", s(AT)),
            ("last_event_id", s("evt_2")),
            ("version", n(2)),
            ("changes", n(1)),
            (
                "seen",
                AttributeValue::L(vec![
                    seen("sale", "pending", "2026-11-27T12:00:00Z", "12.50", "evt_1"),
                    seen("sale", "approved", AT, "12.50", "evt_2"),
                ]),
            ),
        ]);
        let stored = round_trip(&t);
        assert_eq!(stored.get("sl"), Some(&AttributeValue::Bool(true)));
        let Some(AttributeValue::L(rest)) = stored.get("se") else {
            panic!("seen stored as {stored:?}")
        };
        assert_eq!(rest.len(), 1);
        assert!(matches!(&rest[0], AttributeValue::M(m) if m.contains_key("i") && m.len() == 5));
        assert_eq!(stored.get("version"), Some(&n(2)));
        // A last change that is not the state (a late one) stays.
        let mut late = t.clone();
        late.insert("state_at".into(), s("2026-11-27T14:00:00Z"));
        let stored = round_trip(&late);
        assert!(!stored.contains_key("sl"));
        assert!(matches!(stored.get("se"), Some(AttributeValue::L(l)) if l.len() == 2));
    }

    #[test]
    fn a_new_transaction_leaves_out_what_its_first_event_holds() {
        let event = item(&[
            ("id", s("evt_a")),
            ("event", s("sale")),
            ("status", s("approved")),
            ("payout", s("12.50")),
            ("occurred_at", s(AT)),
            ("recorded_at", s(AT)),
        ]);
        let new = item(&[
            ("event", s("sale")),
            ("status", s("approved")),
            ("payout", s("12.50")),
            ("last_event_id", s("evt_a")),
            ("updated_at", s(AT)),
            ("state_at", s(AT)),
            ("version", n(1)),
            // Its one change, its state.
            ("sl", AttributeValue::Bool(true)),
        ]);
        let mut folded = new.clone();
        fold_into_first_event(&event, &mut folded);
        assert_eq!(
            folded,
            item(&[("version", n(1)), ("fe", AttributeValue::Bool(true))])
        );
        unfold_from_first_event(&event, &mut folded);
        assert_eq!(folded, new);
        // Changed since (or anything it does not share): kept whole.
        let mut changed = new.clone();
        changed.insert("status".into(), s("rejected"));
        let mut kept = changed.clone();
        fold_into_first_event(&event, &mut kept);
        assert_eq!(kept, changed);
        unfold_from_first_event(&event, &mut kept);
        assert_eq!(kept, changed);
        // A field the event has and the transaction not: not the same.
        let mut goal = event.clone();
        goal.insert("goal".into(), s("g"));
        let mut kept = new.clone();
        fold_into_first_event(&goal, &mut kept);
        assert_eq!(kept, new);
        // A last seen change that is not its state: not a first change.
        let mut late = new.clone();
        late.remove("sl");
        let mut kept = late.clone();
        fold_into_first_event(&event, &mut kept);
        assert_eq!(kept, late);
    }

    #[test]
    fn a_delivery_keeps_the_names_its_conditions_and_indexes_use() {
        let d = item(&[
            ("pk", s("DELIVERY#dlv_b")),
            ("sk", s("DELIVERY")),
            ("id", s("dlv_b")),
            ("event_id", s("evt_a")),
            ("partner_id", s("prt_a")),
            ("endpoint_id", s("ep_1")),
            ("status", s("pending")),
            ("event_at", s(AT)),
            ("updated_at", s(AT)),
            ("created_at", s(AT)),
            ("attempts", AttributeValue::L(vec![])),
        ]);
        let stored = round_trip(&d);
        for kept in [
            "partner_id",
            "endpoint_id",
            "status",
            "event_at",
            "updated_at",
        ] {
            assert!(stored.contains_key(kept), "{kept}");
        }
        assert_eq!(field(&stored, "event_id"), Some(&s("evt_a")));
        assert!(!stored.contains_key("id"));
    }

    #[test]
    fn a_delivery_made_when_its_event_occurred_and_attempted_last_stores_each_time_once() {
        const LATER: &str = "2026-11-27T12:48:00.500Z";
        let attempt = |number: i64, at: &str, code: i64| {
            AttributeValue::M(item(&[
                ("n", n(number)),
                ("at", s(at)),
                ("ms", n(3)),
                ("code", n(code)),
                ("response", s("ok")),
            ]))
        };
        let d = item(&[
            ("pk", s("DELIVERY#dlv_b")),
            ("sk", s("DELIVERY")),
            ("id", s("dlv_b")),
            ("status", s("delivered")),
            ("event_at", s(AT)),
            ("created_at", s(AT)),
            ("updated_at", s(LATER)),
            (
                "attempts",
                AttributeValue::L(vec![attempt(1, AT, 500), attempt(2, LATER, 200)]),
            ),
        ]);
        let stored = round_trip(&d);
        // Created when its event occurred: one time, a number, under the
        // name the history index projects.
        assert!(!stored.contains_key("ca") && !stored.contains_key("created_at"));
        assert_eq!(stored.get("event_at"), Some(&n(1_795_783_649_351_849_403)));
        assert_eq!(
            stored.get("updated_at"),
            Some(&n(1_795_783_680_500_000_000))
        );
        let Some(AttributeValue::L(attempts)) = stored.get("a") else {
            panic!("attempts stored as {stored:?}")
        };
        // The last attempt's time is the delivery's; an earlier one's kept.
        let AttributeValue::M(first) = &attempts[0] else {
            panic!()
        };
        let AttributeValue::M(last) = &attempts[1] else {
            panic!()
        };
        assert_eq!(first.get("at"), Some(&n(1_795_783_649_351_849_403)));
        assert!(!last.contains_key("at"));
        // Numbered by their place: the first is 1 and the second 2.
        assert!(!first.contains_key("n") && !last.contains_key("n"));
        assert_eq!(last.get("c"), Some(&n(200)));
        assert_eq!(last.get("r"), Some(&s("ok")));
        // Created later than its event (a later endpoint, a recovery): both kept.
        let mut later = d.clone();
        later.insert("created_at".into(), s(LATER));
        let stored = round_trip(&later);
        assert!(stored.contains_key("ca"));
    }

    #[test]
    fn a_first_change_stores_no_count_nor_list_of_changes() {
        let t = item(&[
            ("pk", s("TXN#C0")),
            ("sk", s("TXN")),
            ("event", s("sale")),
            ("changes", n(0)),
            ("seen", AttributeValue::L(vec![])),
        ]);
        let stored = round_trip(&t);
        assert!(!stored.contains_key("ch") && !stored.contains_key("se"));
    }

    #[test]
    fn latest_deliveries_that_the_first_event_owes_are_not_stored_twice() {
        let event = event();
        let last = AttributeValue::M(item(&[("ep_1", s("dlv_b"))]));
        let t = item(&[("version", n(1)), ("last_delivery", last.clone())]);
        let mut folded = t.clone();
        fold_last_deliveries(&event, &mut folded);
        assert_eq!(
            folded,
            item(&[("version", n(1)), ("lo", AttributeValue::Bool(true))])
        );
        unfold_last_deliveries(&event, &mut folded);
        assert_eq!(folded, t);
        // A later change's delivery to the endpoint: kept.
        let other = AttributeValue::M(item(&[("ep_1", s("dlv_c"))]));
        let changed = item(&[("version", n(2)), ("last_delivery", other)]);
        let mut kept = changed.clone();
        fold_last_deliveries(&event, &mut kept);
        assert_eq!(kept, changed);
        // None at all (nothing owed, nothing sent): nothing to fold.
        let none = item(&[("version", n(1))]);
        let mut kept = none.clone();
        fold_last_deliveries(&event, &mut kept);
        assert_eq!(kept, none);
        // An event owing one endpoint twice is no map of endpoints.
        let mut twice = event.clone();
        let owed = AttributeValue::M(item(&[
            (
                "dlv_b",
                AttributeValue::M(item(&[("endpoint_id", s("ep_1"))])),
            ),
            (
                "dlv_c",
                AttributeValue::M(item(&[("endpoint_id", s("ep_1"))])),
            ),
        ]));
        twice.insert("owed".into(), owed);
        let mut kept = t.clone();
        fold_last_deliveries(&twice, &mut kept);
        assert_eq!(kept, t);
    }

    #[test]
    fn items_written_before_read_as_they_were_and_other_kinds_are_untouched() {
        // A long-named item (before this layout) decodes to itself.
        for original in [event(), {
            let mut t = event();
            t.insert("sk".into(), s("OFFER"));
            t
        }] {
            let mut read = original.clone();
            decode(&mut read);
            assert_eq!(read, original);
        }
        let mut offer = event();
        offer.insert("sk".into(), s("OFFER"));
        let mut stored = offer.clone();
        encode(&mut stored);
        assert_eq!(stored, offer);
    }

    mod any_item {
        use super::*;
        use proptest::prelude::*;

        /// Few values, so that repeats (the same time twice, the state
        /// as the last change) come up often.
        fn value() -> impl Strategy<Value = AttributeValue> {
            prop_oneof![
                Just(s("a")),
                Just(s("b")),
                Just(s(AT)),
                Just(s("2026-11-27T12:00:00Z")),
                // A time no version writes (kept as text).
                Just(s("2026-11-27T12:00:00+00:00")),
                Just(s("12.50")),
                Just(n(0)),
                Just(n(1)),
                Just(AttributeValue::Bool(true)),
                Just(AttributeValue::L(Vec::new())),
            ]
        }

        fn map_of(names: Vec<&'static str>) -> impl Strategy<Value = AttributeValue> {
            proptest::collection::vec((proptest::sample::select(names), value()), 0..6).prop_map(
                |kv| AttributeValue::M(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            )
        }

        fn ids() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec(
                proptest::sample::select(vec!["dlv_a", "dlv_b", "dlv_c"]),
                0..4,
            )
            .prop_map(|v| v.into_iter().map(str::to_string).collect())
        }

        fn text_times(m: &mut Attrs, names: &[&str]) {
            for name in names {
                if matches!(m.get(*name), Some(v) if v.as_s().is_err()) {
                    m.insert(name.to_string(), s(AT));
                }
            }
        }

        /// An item of `sk` as the domain writes it: any of its names (and
        /// of those kept), the fields it always writes, and ids, owed
        /// deliveries and seen changes that may or may not repeat others.
        fn item_of(sk: &'static str) -> impl Strategy<Value = Attrs> {
            let own: Vec<&'static str> = match sk {
                "EVENT" => EVENT.iter().map(|(l, _)| *l).collect(),
                "TXN" => TRANSACTION.iter().map(|(l, _)| *l).collect(),
                _ => DELIVERY.iter().map(|(l, _)| *l).collect(),
            };
            let kept = vec![
                "status",
                "version",
                "endpoint_id",
                "partner_id",
                "updated_at",
                "ttl",
                "reason",
            ];
            let names: Vec<&'static str> = own.into_iter().chain(kept).collect();
            (
                proptest::collection::vec((proptest::sample::select(names), value()), 0..12),
                any::<bool>(),
                ids(),
                ids(),
                proptest::collection::vec(
                    map_of(vec![
                        "event",
                        "status",
                        "occurred_at",
                        "payout",
                        "event_id",
                        "x",
                    ]),
                    0..3,
                ),
                any::<bool>(),
                proptest::collection::vec(
                    map_of(
                        ATTEMPT
                            .iter()
                            .map(|(l, _)| *l)
                            .chain(["at", "n", "ms"])
                            .collect(),
                    ),
                    0..3,
                ),
            )
                .prop_map(
                    move |(pairs, own_id, owed, listed, seen, state_is_last, attempts)| {
                        let mut m: Attrs =
                            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                        // Times are text in the domain's items.
                        let kind = kind_of(&item(&[("sk", s(sk))])).expect("a compact kind");
                        text_times(&mut m, times(kind));
                        m.insert("sk".into(), s(sk));
                        m.insert("pk".into(), s(&format!("{sk}#x_1")));
                        let id = if own_id { "x_1" } else { "x_2" };
                        match sk {
                            "EVENT" => {
                                m.insert("id".into(), s(id));
                                m.entry("recorded_at".into()).or_insert_with(|| s(AT));
                                if !owed.is_empty() {
                                    let owed: Attrs = owed
                                        .iter()
                                        .map(|d| (d.clone(), AttributeValue::M(Attrs::new())))
                                        .collect();
                                    m.insert("owed".into(), AttributeValue::M(owed));
                                }
                                m.insert(
                                    "delivery_ids".into(),
                                    AttributeValue::L(listed.iter().map(|d| s(d)).collect()),
                                );
                            }
                            "DELIVERY" => {
                                m.insert("id".into(), s(id));
                                m.entry("created_at".into()).or_insert_with(|| s(AT));
                                // Attempts: any of their names, always a time and a number.
                                let attempts = attempts
                                    .into_iter()
                                    .map(|a| match a {
                                        AttributeValue::M(mut a) => {
                                            a.entry("at".into()).or_insert_with(|| s(AT));
                                            a.entry("n".into()).or_insert_with(|| n(1));
                                            text_times(&mut a, ATTEMPT_TIMES);
                                            AttributeValue::M(a)
                                        }
                                        other => other,
                                    })
                                    .collect();
                                m.insert("attempts".into(), AttributeValue::L(attempts));
                            }
                            _ => {
                                let mut seen = seen;
                                for change in seen.iter_mut() {
                                    if let AttributeValue::M(c) = change {
                                        text_times(c, SEEN_TIMES);
                                    }
                                }
                                if state_is_last {
                                    if let Some(last) = state_as_seen(&m) {
                                        seen.push(last);
                                    }
                                }
                                m.insert("seen".into(), AttributeValue::L(seen));
                                m.entry("changes".into()).or_insert_with(|| n(0));
                            }
                        }
                        m
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn every_item_reads_back_as_it_was_written(
                item in prop_oneof![item_of("EVENT"), item_of("TXN"), item_of("DELIVERY")]
            ) {
                let mut stored = item.clone();
                encode(&mut stored);
                prop_assert!(crate::metrics::item_size(&stored) <= crate::metrics::item_size(&item));
                let mut read = stored.clone();
                decode(&mut read);
                prop_assert_eq!(&read, &item);
                // Read twice (an item decoded, then decoded again) is the same.
                let mut again = stored;
                decode(&mut again);
                decode(&mut again);
                let mut once = item.clone();
                decode(&mut once);
                prop_assert_eq!(again, once);
            }
        }
    }
}
