//! Any template with any values: if it parses, a URL template renders a URL
//! that still parses when its sample render did, and a JSON template that
//! renders valid JSON with sample values renders valid JSON with these values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::template::{Lookup, SampleValues, Template};
use std::collections::BTreeSet;

struct Fixed(String);
impl Lookup for Fixed {
    fn lookup(&self, _: &str) -> Option<String> {
        Some(self.0.clone())
    }
}

fuzz_target!(|input: (&str, &str)| {
    let (text, value) = input;
    let Ok(t) = Template::parse(text) else { return };
    let values = Fixed(value.to_string());
    let mut empty = BTreeSet::new();
    if url::Url::parse(&t.render_url(&SampleValues, &mut empty)).is_ok() {
        let rendered = t.render_url(&values, &mut empty);
        assert!(url::Url::parse(&rendered).is_ok(), "{rendered}");
    }
    if serde_json::from_str::<serde_json::Value>(&t.render_json(&SampleValues, &mut empty)).is_ok() {
        let rendered = t.render_json(&values, &mut empty);
        assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok(), "{rendered}");
    }
    assert!(!t.render_header(&values, &mut empty).contains(['\r', '\n']));
});
