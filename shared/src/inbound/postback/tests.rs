use super::*;
use crate::inbound::MAX_ATTRIBUTES;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err(list: &[(&str, &str)]) -> Error {
    parse_postback(pairs(list)).expect_err("should be refused")
}

fn field_of(e: &Error) -> &str {
    match e {
        Error::Invalid { field, .. } => field,
        _ => panic!("not a field error: {e:?}"),
    }
}

#[test]
fn a_full_postback_parses_and_keeps_extra_parameters() {
    let p = parse_postback(pairs(&[
        ("click_id", "abc123"),
        ("event", "purchase"),
        ("payout", "49.99"),
        ("measurement", "1"),
        ("currency", "eur"),
        ("transaction_id", "T-1"),
        ("order", "o#1"),
        ("security_token", "s3cret"),
    ]))
    .unwrap();
    assert_eq!(p.click_id, "abc123");
    assert_eq!(p.payout.unwrap().to_string(), "49.99");
    assert_eq!(p.currency.as_deref(), Some("EUR"));
    assert_eq!(p.status, Status::Approved);
    assert_eq!(p.extra.get("order").and_then(Value::as_str), Some("o#1"));
    assert!(
        !p.extra.contains_key("security_token"),
        "the token must never become an attribute"
    );
}

#[test]
fn a_bare_postback_defaults_its_event() {
    let p = parse_postback(pairs(&[("click_id", "abc")])).unwrap();
    assert_eq!(p.event, DEFAULT_EVENT);
    assert_eq!(p.payout, None);
}

#[test]
fn click_id_is_required() {
    assert_eq!(field_of(&err(&[("event", "x")])), "click_id");
    assert_eq!(field_of(&err(&[("click_id", " ")])), "click_id");
}

#[test]
fn measurement_requires_event_and_payout_together() {
    // A rule between fields: 422, naming the one missing.
    let rule_field = |e: Error| match e {
        Error::Rule { field, .. } => field,
        other => panic!("not a rule: {other:?}"),
    };
    assert_eq!(
        rule_field(err(&[
            ("click_id", "a"),
            ("measurement", "1"),
            ("payout", "1")
        ])),
        "event"
    );
    assert_eq!(
        rule_field(err(&[
            ("click_id", "a"),
            ("measurement", "1"),
            ("event", "x")
        ])),
        "payout"
    );
    assert_eq!(
        field_of(&err(&[("click_id", "a"), ("measurement", "yes")])),
        "measurement"
    );
}

#[test]
fn bad_payouts_are_refused_naming_the_field() {
    for bad in ["abc", "1e3", "1.23456", "-5"] {
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("payout", bad)])),
            "payout",
            "{bad}"
        );
    }
}

#[test]
fn bad_status_currency_event_and_ids_are_refused() {
    assert_eq!(
        field_of(&err(&[("click_id", "a"), ("status", "maybe")])),
        "status"
    );
    assert_eq!(
        field_of(&err(&[("click_id", "a"), ("currency", "dollars")])),
        "currency"
    );
    assert_eq!(
        field_of(&err(&[("click_id", "a"), ("event", "has space")])),
        "event"
    );
    assert_eq!(
        field_of(&err(&[("click_id", "a"), ("event", "invalidation")])),
        "event"
    );
    assert_eq!(
        field_of(&err(&[("click_id", &"x".repeat(129))])),
        "click_id"
    );
    assert_eq!(field_of(&err(&[("click_id", "a\u{0}b")])), "click_id");
}

#[test]
fn too_many_extra_parameters_are_refused() {
    let mut list = pairs(&[("click_id", "a")]);
    for i in 0..=MAX_ATTRIBUTES {
        list.push((format!("p{i}"), "v".into()));
    }
    assert_eq!(field_of(&parse_postback(list).unwrap_err()), "parameters");
}

#[test]
fn the_first_of_repeated_parameters_wins() {
    let p = parse_postback(pairs(&[("click_id", "a"), ("click_id", "b")])).unwrap();
    assert_eq!(p.click_id, "a");
}
