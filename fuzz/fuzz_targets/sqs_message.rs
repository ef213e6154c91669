//! Any SQS message body: the delivery-message and event parsers never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<shared::fanout::DeliveryMessage>(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = shared::inbound::parse_event(&v);
    }
});
