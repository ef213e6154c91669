//! Any query string or form body: the postback parser answers a value or a field error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    if let Ok(p) = shared::inbound::parse_postback(pairs) {
        assert!(!p.click_id.is_empty());
        assert!(p.payout.is_none_or(|v| v.scale() <= 4 && !v.is_sign_negative()));
    }
});
