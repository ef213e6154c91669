//! No log line ever contains a secret: the whole life of an endpoint with a
//! signing secret, basic auth and a partner key, logged at debug level, then
//! the captured output searched for each secret (and its encodings).
//! Its own test binary, so that its capturing subscriber is the only one.

use base64::Engine;
use integration_tests::capture::Captured;
use integration_tests::receiver::{Receiver, Reply};
use integration_tests::{offer_body, TestApp, ADMIN_KEY};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn no_log_line_contains_a_secret() {
    let logs = Captured::text("debug");

    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(500), Reply::Status(200)]).await;
    let secret = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTQ4Mjk=";
    let password = "basic-pass-93817";
    let token = "advertiser-token-55821";
    let mut offer = offer_body();
    offer["security_token"] = json!(token);
    let seed = t
        .seed(
            offer,
            Some(json!({"name": "secret", "url": r.url("/pb?tx={transaction_id}"), "method": "POST_JSON",
                "secret": secret, "basic_auth": {"username": "acme", "password": password}, "retry_schedule": [0, 1]})),
        )
        .await;
    let eid = seed.endpoint_id.clone().unwrap();
    let click = t.click(&seed, json!({})).await;
    let (s, _) = t
        .postback(&[
            ("click_id", &click),
            ("event", "sale"),
            ("security_token", token),
        ])
        .await;
    assert_eq!(s, 200);
    let (s, _) = t
        .postback(&[
            ("click_id", &click),
            ("event", "sale"),
            ("security_token", "wrong-token-1"),
        ])
        .await;
    assert_eq!(s, 403);
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 2
    })
    .await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (s, _) = t
        .send(
            t.http
                .post(t.url(&format!("{path}/test")))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 200);
    let (s, shown) = t
        .send(t.http.get(t.url(&path)).bearer_auth(ADMIN_KEY))
        .await;
    assert_eq!(s, 200);
    let (s, _) = t
        .send(
            t.http
                .get(t.url(&format!("/partners/{}/deliveries", seed.partner_id)))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 200);

    let text = logs.output();
    assert!(
        text.contains("endpoint created") && text.contains("attempt failed"),
        "the capture saw the flow"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("acme:{password}"));
    for needle in [
        secret,
        "c2VjcmV0LXNpZ25pbmcta2V5LTQ4Mjk",
        password,
        basic.as_str(),
        token,
        ADMIN_KEY,
        seed.partner_key.as_str(),
    ] {
        assert!(
            !text.contains(needle),
            "a log line contains a secret ({needle})"
        );
        assert!(
            !shown.to_string().contains(needle) || needle == ADMIN_KEY,
            "GET shows a secret ({needle})"
        );
    }
}
