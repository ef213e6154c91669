//! Property tests: whatever the input, the parsers answer a value or a field
//! error (never a panic), and rendered templates stay a valid URL, form body
//! or JSON document whatever the values hold.

use proptest::prelude::*;
use serde_json::{json, Value};
use shared::inbound::{parse_event, parse_events_body, parse_postback};
use shared::money::parse_payout;
use shared::template::{Lookup, Template};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug)]
struct Values(HashMap<String, String>);

impl Lookup for Values {
    fn lookup(&self, name: &str) -> Option<serde_json::Value> {
        self.0.get(name).cloned().map(serde_json::Value::String)
    }
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[ -~]{0,40}",
        Just("&=#?/%\"'\\\r\n{}<>".to_string()),
        "\\PC{0,20}",
    ]
}

fn values() -> impl Strategy<Value = Values> {
    proptest::collection::hash_map("[a-z_]{1,8}", any_text(), 0..6).prop_map(|m| {
        let mut all: HashMap<String, String> = m;
        for k in ["a", "b", "payout"] {
            all.entry(k.to_string())
                .or_insert_with(|| "x&y=\"z\"#".into());
        }
        Values(all)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_postback_parser_never_panics(pairs in proptest::collection::vec((any_text(), any_text()), 0..12)) {
        let _ = parse_postback(pairs);
    }

    #[test]
    fn a_parsed_postback_keeps_only_sane_values(click in "[a-zA-Z0-9_-]{1,40}", payout in "[0-9]{1,6}(\\.[0-9]{1,4})?") {
        let p = parse_postback(vec![("click_id".into(), click.clone()), ("payout".into(), payout.clone())]).unwrap();
        prop_assert_eq!(p.click_id.as_str(), click.as_str());
        prop_assert_eq!(p.payout.unwrap(), payout.parse::<rust_decimal::Decimal>().unwrap());
    }

    #[test]
    fn the_payout_parser_never_panics_and_never_accepts_exponents(raw in any_text()) {
        if let Ok(v) = parse_payout("payout", &raw, true) {
            prop_assert!(!raw.contains(['e', 'E']));
            prop_assert!(v.scale() <= 4);
        }
    }

    #[test]
    fn the_event_parsers_never_panic(raw in any_text(), tx in any_text(), ev in any_text(), payout in any_text()) {
        let _ = serde_json::from_str::<Value>(&raw).map(|v| parse_events_body(&v));
        let _ = parse_event(&json!({"transaction_id": tx, "event": ev, "payout": payout, "attributes": {"k": raw}}));
    }

    #[test]
    fn the_delivery_message_parser_never_panics(raw in any_text()) {
        let _ = serde_json::from_str::<shared::fanout::DeliveryMessage>(&raw);
    }

    #[test]
    fn template_parsing_never_panics(raw in any_text()) {
        if let Ok(t) = Template::parse(&raw) {
            let _ = t.render_url(&Values(HashMap::new()), &mut BTreeSet::new());
        }
    }

    #[test]
    fn rendered_urls_always_parse_and_keep_each_value_whole(v in values()) {
        let t = Template::parse("https://partner.example/pb?a={a}&b={b}&p={payout}").unwrap();
        let url = url::Url::parse(&t.render_url(&v, &mut BTreeSet::new())).unwrap();
        let got: HashMap<String, String> = url.query_pairs().into_owned().collect();
        prop_assert_eq!(got.len(), 3);
        prop_assert_eq!(&got["a"], &v.0["a"]);
        prop_assert_eq!(&got["b"], &v.0["b"]);
    }

    #[test]
    fn rendered_forms_always_decode_to_the_values(v in values()) {
        let t = Template::parse("a={a}&b={b}").unwrap();
        let body = t.render_form(&v, &mut BTreeSet::new());
        let got: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(&got["a"], &v.0["a"]);
    }

    #[test]
    fn rendered_json_is_always_valid_json(v in values()) {
        let t = Template::parse(r#"{"a": "{a}", "b": {b}, "n": {payout}, "list": ["{a}", {b}], "missing": {zzz}}"#).unwrap();
        let body = t.render_json(&v, &mut BTreeSet::new());
        let parsed: Value = serde_json::from_str(&body).map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
        prop_assert_eq!(parsed["a"].as_str().unwrap(), v.0["a"].as_str());
    }

    #[test]
    fn rendered_headers_never_hold_a_line_break(v in values()) {
        let t = Template::parse("Bearer {a}{b}").unwrap();
        let h = t.render_header(&v, &mut BTreeSet::new());
        prop_assert!(!h.contains(['\r', '\n']));
    }
}
