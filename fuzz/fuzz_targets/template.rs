//! Any template with any values: if it parses, a URL template renders a URL
//! that still parses when its sample render did, and a JSON template that
//! renders valid JSON with sample values renders valid JSON with these values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::template::{Lookup, SampleValues, Template};
use std::collections::BTreeSet;

struct Fixed(String);
impl Lookup for Fixed {
    fn lookup(&self, _: &str) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

fuzz_target!(|input: (&str, &str)| {
    let (text, value) = input;
    let Ok(t) = Template::parse(text) else { return };
    let values = Fixed(value.to_string());
    let mut empty = BTreeSet::new();
    // Endpoints refuse macros before the path; only such URL templates are checked.
    // The same rules as saving an endpoint: no spaces or control characters,
    // no macro before the path, and a sample render that is an http(s) URL with a host.
    let savable = !text.chars().any(|c| c.is_whitespace() || c.is_control())
        && !shared::template::macro_in_authority(text)
        && url::Url::parse(&t.render_url(&SampleValues, &mut empty))
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()));
    if savable {
        let rendered = t.render_url(&values, &mut empty);
        assert!(url::Url::parse(&rendered).is_ok(), "{rendered}");
    }
    if serde_json::from_str::<serde_json::Value>(&t.render_json(&SampleValues, &mut empty)).is_ok() {
        let rendered = t.render_json(&values, &mut empty);
        assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok(), "{rendered}");
    }
    assert!(!t.render_header(&values, &mut empty).contains(['\r', '\n']));
});
