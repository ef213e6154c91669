//! Postbacks out: rendering, signing, retries, redelivery, dead letters and
//! the SSRF guard, against the stand-ins and real receivers on 127.0.0.1.

use chrono::Utc;
use integration_tests::receiver::{Receiver, Reply};
use integration_tests::{offer_body, Options, Seed, TestApp};
use serde_json::{json, Value};
use shared::lifecycle::{Delivery, DeliveryStatus};
use std::time::{Duration, Instant};

/// Seeds an offer, a partner and one endpoint, and returns a click with sub ids.
async fn setup(t: &TestApp, endpoint: Value) -> (Seed, String) {
    let seed = t.seed(offer_body(), Some(endpoint)).await;
    let click = t
        .click(&seed, json!({"sub1": "a&b=c #d", "user_id": "u 1/é\"'"}))
        .await;
    (seed, click)
}

/// The delivery queue's messages for `ids` of the seed's endpoint, as one
/// SQS batch handed to the deliver function.
use integration_tests::sqs_batch;

async fn wait_finished(t: &TestApp, delivery_id: &str, limit: Duration) -> Delivery {
    let store = t.app.store.clone();
    let id = delivery_id.to_string();
    t.pump_until("DeliveryQueue", limit, || {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .get_delivery(&integration_tests::typed(&id))
                .await
                .unwrap()
                .is_some_and(|d| d.status != DeliveryStatus::Pending)
        }
    })
    .await;
    t.app
        .store
        .get_delivery(&integration_tests::typed(delivery_id))
        .await
        .unwrap()
        .unwrap()
}

/// The postback `convert` sends: a purchase of the click, with `extra`.
fn conversion<'a>(click: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("click_id", click),
        ("event", "purchase"),
        ("payout", "49.99"),
        ("measurement", "1"),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

async fn convert(t: &TestApp, click: &str, extra: &[(&str, &str)]) -> String {
    let (s, body) = t.postback(&conversion(click, extra)).await;
    assert_eq!(s, 200, "{body}");
    body["conversion_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_get_postback_renders_seed_001s_macro_url_with_every_value_encoded() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let url = r.url("/pb?payout={payout}&user_id={user_id}&offer_id={offer_id}&sub={sub1}&tx={transaction_id}&none={nothing}");
    let (seed, click) = setup(
        &t,
        json!({"name": "seed001", "url": url, "headers": {"X-Partner": "p-{partner_id}"}}),
    )
    .await;
    let event_id = convert(&t, &click, &[("transaction_id", "T#1 &x")]).await;
    let d = wait_finished(
        &t,
        &t.deliveries_of(&event_id).await[0].id,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(d.status, DeliveryStatus::Delivered);

    let req = &r.requests()[0];
    assert_eq!(req.method, "GET");
    let q: std::collections::BTreeMap<_, _> = req.query().into_iter().collect();
    assert_eq!(q["payout"], "49.99");
    assert_eq!(q["user_id"], "u 1/é\"'");
    assert_eq!(q["offer_id"], seed.offer_id);
    assert_eq!(q["sub"], "a&b=c #d");
    assert_eq!(q["tx"], "T#1 &x");
    assert_eq!(q["none"], "");
    assert_eq!(
        req.header("x-partner"),
        Some(format!("p-{}", seed.partner_id).as_str())
    );
    assert_eq!(req.header("idempotency-key"), Some(d.id.as_str()));
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].code, Some(200));
}

#[tokio::test]
async fn post_form_and_post_json_render_the_partners_own_body_with_basic_auth() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let form = json!({"name": "form", "url": r.url("/form"), "method": "POST_FORM",
        "body": "amount={payout}&cur={currency}&sub={sub1}", "basic_auth": {"username": "acme", "password": "s3cr3t!"}});
    let js = json!({"name": "json", "url": r.url("/json"), "method": "POST_JSON",
        "body": "{\"amount\": {payout}, \"user\": \"{user_id}\", \"tx\": \"{transaction_id}\", \"missing\": {nothing}}"});
    let plain = json!({"name": "plain", "url": r.url("/plain"), "method": "POST_JSON"});
    for e in [form, js, plain] {
        let (s, b) = t
            .admin_post(&format!("/partners/{}/endpoints", seed.partner_id), e)
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let click = t
        .click(
            &seed,
            json!({"sub1": "a&b=c", "user_id": "quote\" back\\slash \u{e9}"}),
        )
        .await;
    let event_id = convert(&t, &click, &[("transaction_id", "TX-9")]).await;
    for d in t.deliveries_of(&event_id).await {
        assert_eq!(
            wait_finished(&t, &d.id, Duration::from_secs(10))
                .await
                .status,
            DeliveryStatus::Delivered
        );
    }
    let by_path = |p: &str| r.requests().into_iter().find(|c| c.uri == p).unwrap();

    let f = by_path("/form");
    assert_eq!(f.method, "POST");
    assert_eq!(
        f.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let pairs: std::collections::BTreeMap<_, _> = form_urlencoded::parse(f.body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        (
            pairs["amount"].as_str(),
            pairs["cur"].as_str(),
            pairs["sub"].as_str()
        ),
        ("49.99", "USD", "a&b=c")
    );
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("acme:s3cr3t!")
    );
    assert_eq!(f.header("authorization"), Some(expected.as_str()));

    let j = by_path("/json");
    assert_eq!(j.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&j.body).expect("valid JSON whatever the values");
    assert_eq!(
        body,
        json!({"amount": 49.99, "user": "quote\" back\\slash \u{e9}", "tx": "TX-9", "missing": null})
    );

    let p: Value = serde_json::from_str(&by_path("/plain").body).unwrap();
    assert_eq!(p["payout"], "49.99");
    assert_eq!(p["transaction_id"], "TX-9");
    assert_eq!(p["attributes"]["sub1"], "a&b=c");
}

#[tokio::test]
async fn invalidations_render_in_each_of_seed_000s_three_styles() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let endpoints = [
        // (a) an event field: a separate invalidation-only endpoint with its own fixed parameter.
        json!({"name": "a", "url": r.url("/a?event=invalidated&tx={transaction_id}"), "events": ["invalidation"], "invalidations": true}),
        // (b) a negative payout under the same transaction id.
        json!({"name": "b", "url": r.url("/b?tx={transaction_id}&payout={payout}&event={event}"), "invalidations": true}),
        // (c) a deleted_at timestamp.
        json!({"name": "c", "url": r.url("/c?tx={transaction_id}&deleted_at={deleted_at}"), "invalidations": true}),
        // Not opted in: receives the payout only.
        json!({"name": "d", "url": r.url("/d?tx={transaction_id}&payout={payout}")}),
    ];
    for e in endpoints {
        assert_eq!(
            t.admin_post(&format!("/partners/{}/endpoints", seed.partner_id), e)
                .await
                .0,
            201
        );
    }
    let (s, _) = t
        .admin_post("/events", json!({"transaction_id": "LN-7", "event": "payout", "partner_id": seed.partner_id, "payout": "120.00", "occurred_at": "2026-11-01T00:00:00Z"}))
        .await;
    assert_eq!(s, 200);
    let (s, inv) = t
        .admin_post("/events", json!({"transaction_id": "LN-7", "event": "invalidation", "occurred_at": "2026-11-05T08:00:00Z"}))
        .await;
    assert_eq!(s, 200);
    for d in t.deliveries_of(inv["event_id"].as_str().unwrap()).await {
        wait_finished(&t, &d.id, Duration::from_secs(10)).await;
    }
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 6
    })
    .await;
    let mut got: Vec<String> = r.requests().into_iter().map(|c| c.uri).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "/a?event=invalidated&tx=LN-7",
            "/b?tx=LN-7&payout=-120.00&event=invalidation",
            "/b?tx=LN-7&payout=120.00&event=payout",
            "/c?tx=LN-7&deleted_at=",
            "/c?tx=LN-7&deleted_at=2026-11-05T08%3A00%3A00Z",
            "/d?tx=LN-7&payout=120.00",
        ]
    );
}

/// The Standard Webhooks check, written from the spec rather than from our signer.
fn verify_standard_webhook(secret: &str, id: &str, ts: &str, body: &str, header: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .any(|sig| sig.strip_prefix("v1,") == Some(expected.as_str()))
}

#[tokio::test]
async fn signed_postbacks_carry_standard_webhooks_headers_that_verify() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (_, click) = setup(
        &t,
        json!({"name": "signed", "url": r.url("/hook"), "method": "POST_JSON", "secret": secret}),
    )
    .await;
    let event_id = convert(&t, &click, &[]).await;
    let d = wait_finished(
        &t,
        &t.deliveries_of(&event_id).await[0].id,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    let req = &r.requests()[0];
    let (id, ts, sig) = (
        req.header("webhook-id").unwrap(),
        req.header("webhook-timestamp").unwrap(),
        req.header("webhook-signature").unwrap(),
    );
    assert_eq!(id, d.id);
    assert!((Utc::now().timestamp() - ts.parse::<i64>().unwrap()).abs() < 60);
    assert!(
        verify_standard_webhook(secret, id, ts, &req.body, sig),
        "signature {sig} does not verify"
    );
    assert!(
        !verify_standard_webhook(secret, id, ts, &format!("{} ", req.body), sig),
        "a changed body must not verify"
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_on_schedule_until_it_succeeds() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::Status(200),
    ])
    .await;
    let (_, click) = setup(
        &t,
        json!({"name": "flaky", "url": r.url("/pb"), "retry_schedule": [0, 2, 3]}),
    )
    .await;
    let event_id = convert(&t, &click, &[]).await;
    let d = wait_finished(
        &t,
        &t.deliveries_of(&event_id).await[0].id,
        Duration::from_secs(20),
    )
    .await;

    assert_eq!(d.status, DeliveryStatus::Delivered);
    let codes: Vec<_> = d.attempts.iter().map(|a| a.code).collect();
    assert_eq!(codes, [Some(500), Some(503), Some(200)]);
    let at: Vec<Instant> = r.requests().iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 3);
    let gap = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
    assert!(
        (gap(at[0], at[1]) - 2.0).abs() <= 1.0,
        "second attempt {}s after the first",
        gap(at[0], at[1])
    );
    assert!(
        (gap(at[1], at[2]) - 3.0).abs() <= 1.0,
        "third attempt {}s after the second",
        gap(at[1], at[2])
    );
    assert_eq!(d.attempts[0].error.map(|e| e.as_str()), Some("http_status"));
    assert!(d.attempts[0].next_at.is_some() && d.attempts[2].next_at.is_none());
}

#[tokio::test]
async fn a_receiver_that_always_fails_gets_exactly_its_attempts_then_the_delivery_fails() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(500)]).await;
    let (_, click) = setup(
        &t,
        json!({"name": "down", "url": r.url("/pb"), "retry_schedule": [0, 1, 1]}),
    )
    .await;
    let event_id = convert(&t, &click, &[]).await;
    let d = wait_finished(
        &t,
        &t.deliveries_of(&event_id).await[0].id,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts.len(), 3);
    t.pump_for("DeliveryQueue", Duration::from_secs(3)).await;
    assert_eq!(r.count(), 3, "no attempt after the schedule ends");
    assert_eq!(
        t.queue_depth("DeliveryQueue").await,
        0,
        "the message of a failed delivery is deleted"
    );
    assert_eq!(
        t.queue_depth("DeliveryDLQ").await,
        0,
        "the DLQ holds only poison messages"
    );
}

#[tokio::test]
async fn a_delivered_message_that_sqs_hands_back_is_not_sent_again() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (seed, click) = setup(&t, json!({"name": "once", "url": r.url("/pb")})).await;
    let event_id = convert(&t, &click, &[]).await;
    let d = wait_finished(
        &t,
        &t.deliveries_of(&event_id).await[0].id,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(d.status, DeliveryStatus::Delivered);

    // SQS at-least-once: the same message arrives again.
    let again =
        json!({"delivery_id": d.id, "partner_id": seed.partner_id, "endpoint_id": d.endpoint_id})
            .to_string();
    t.app
        .queue
        .send(&t.queue_url("DeliveryQueue"), &again, 0)
        .await
        .unwrap();
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(r.count(), 1);
    assert_eq!(
        t.queue_depth("DeliveryQueue").await,
        0,
        "acknowledged without sending"
    );
}

#[tokio::test]
async fn a_malformed_delivery_message_lands_in_the_dlq_with_its_reason() {
    let t = TestApp::start().await;
    t.app
        .queue
        .send(&t.queue_url("DeliveryQueue"), "not json at all", 0)
        .await
        .unwrap();
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(t.queue_depth("DeliveryQueue").await, 0);
    let dead = t.peek("DeliveryDLQ").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("not json at all"));
    assert!(dead[0].message_attributes().unwrap()["reason"]
        .string_value()
        .unwrap()
        .contains("unparseable"));
}

async fn first_attempt(t: &TestApp, endpoint: Value) -> (Delivery, shared::lifecycle::Attempt) {
    let (_, click) = setup(t, endpoint).await;
    let event_id = convert(t, &click, &[]).await;
    let id = t.deliveries_of(&event_id).await[0].id.clone();
    let store = t.app.store.clone();
    let found = t
        .pump_until("DeliveryQueue", Duration::from_secs(15), || {
            let store = store.clone();
            let id = id.clone();
            async move {
                store
                    .get_delivery(&id)
                    .await
                    .unwrap()
                    .is_some_and(|d| !d.attempts.is_empty())
            }
        })
        .await;
    assert!(found, "no attempt was made");
    let d = t.app.store.get_delivery(&id).await.unwrap().unwrap();
    let a = d.attempts[0].clone();
    (d, a)
}

fn delay_of(a: &shared::lifecycle::Attempt) -> i64 {
    (a.next_at.expect("a next attempt") - a.at).num_seconds()
}

#[tokio::test]
async fn each_kind_of_failure_is_recorded_with_its_error_and_next_delay() {
    let schedule = json!([0, 7, 7]);
    // 500
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(500)]).await;
    let (_, a) = first_attempt(
        &t,
        json!({"name": "e", "url": r.url("/x"), "retry_schedule": schedule}),
    )
    .await;
    assert_eq!(
        (a.code, a.error.map(|e| e.as_str()), delay_of(&a)),
        (Some(500), Some("http_status"), 7)
    );
    assert_eq!(a.response.as_deref(), Some("reply 1"));
    // 429 with Retry-After longer than the schedule: the longer delay wins.
    let r = Receiver::start(vec![Reply::StatusWithHeader(429, "retry-after", "30")]).await;
    let (_, a) = first_attempt(
        &t,
        json!({"name": "e", "url": r.url("/x"), "retry_schedule": schedule}),
    )
    .await;
    assert_eq!(
        (a.code, a.error.map(|e| e.as_str()), delay_of(&a)),
        (Some(429), Some("http_status"), 30)
    );
    // 429 with a shorter Retry-After never brings the attempt forward.
    let r = Receiver::start(vec![Reply::StatusWithHeader(429, "retry-after", "1")]).await;
    let (_, a) = first_attempt(
        &t,
        json!({"name": "e", "url": r.url("/x"), "retry_schedule": schedule}),
    )
    .await;
    assert_eq!(delay_of(&a), 7);
    // 301: not followed, a failed attempt.
    let r = Receiver::start(vec![Reply::StatusWithHeader(
        301,
        "location",
        "http://127.0.0.1:9/",
    )])
    .await;
    let (_, a) = first_attempt(
        &t,
        json!({"name": "e", "url": r.url("/x"), "retry_schedule": schedule}),
    )
    .await;
    assert_eq!(
        (a.code, a.error.map(|e| e.as_str()), delay_of(&a)),
        (Some(301), Some("redirect"), 7)
    );
    assert_eq!(r.count(), 1);
    // Timeout.
    let r = Receiver::start(vec![Reply::Delay(Duration::from_secs(3))]).await;
    let (_, a) = first_attempt(
        &t,
        json!({"name": "e", "url": r.url("/x"), "retry_schedule": schedule, "timeout_ms": 300}),
    )
    .await;
    assert_eq!(
        (a.code, a.error.map(|e| e.as_str()), delay_of(&a)),
        (None, Some("timeout"), 7)
    );
    assert!(
        a.ms < 2_000,
        "the attempt stopped at its timeout ({} ms)",
        a.ms
    );
    // Connection refused: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, a) = first_attempt(&t, json!({"name": "e", "url": format!("http://127.0.0.1:{closed}/x"), "retry_schedule": schedule})).await;
    assert_eq!(
        (a.code, a.error.map(|e| e.as_str()), delay_of(&a)),
        (None, Some("connect"), 7)
    );
}

#[tokio::test]
async fn private_loopback_and_metadata_targets_are_refused_when_the_guard_is_on() {
    let t = TestApp::start_with(Options {
        allow_private_targets: false,
        ..Default::default()
    })
    .await;
    let r = Receiver::ok().await;
    for url in [
        format!("http://127.0.0.1:{}/x", r.port),
        format!("http://[::1]:{}/x", r.port),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/x".to_string(),
        format!("http://localhost:{}/x", r.port),
    ] {
        let (d, a) = first_attempt(&t, json!({"name": "ssrf", "url": url})).await;
        assert_eq!(a.error.map(|e| e.as_str()), Some("blocked"), "{url}");
        assert_eq!(
            d.status,
            DeliveryStatus::Failed,
            "{url}: a refused target is not retried"
        );
        assert_eq!(d.attempts.len(), 1);
    }
    assert_eq!(r.count(), 0, "nothing reached the loopback receiver");
}

#[tokio::test]
async fn a_batch_is_sent_concurrently_and_a_successful_attempt_costs_three_dynamodb_requests() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Delay(Duration::from_millis(800))]).await;
    let (_, click) = setup(&t, json!({"name": "slow", "url": r.url("/pb")})).await;
    let mut messages = Vec::new();
    for i in 0..10 {
        let event_id = convert(&t, &click, &[("transaction_id", &format!("B{i}"))]).await;
        messages.extend(t.messages_of(&event_id).await);
    }
    let event = sqs_batch(messages);
    let before = t.app.requests.snapshot();
    let response = deliver::handle(&t.worker, event).await;
    let after = t.app.requests.snapshot();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.count(), 10);
    // All ten were in flight together: the last arrived before the first was answered.
    let at: Vec<Instant> = r.requests().iter().map(|c| c.at).collect();
    let spread = at
        .iter()
        .max()
        .unwrap()
        .duration_since(*at.iter().min().unwrap());
    assert!(
        spread < Duration::from_millis(800),
        "requests were not concurrent (spread {spread:?})"
    );
    let diff = integration_tests::request_diff(&before, &after);
    println!("AWS requests for 10 successful attempts: {diff:?}");
    assert_eq!(
        diff.get("DynamoDB.UpdateItem"),
        Some(&10),
        "one claim per attempt: {diff:?}"
    );
    assert_eq!(
        diff.get("DynamoDB.PutItem"),
        Some(&10),
        "one record per attempt: {diff:?}"
    );
    // The endpoint is read as stored for every attempt, never from a cache:
    // a DELETE or a pause holds at once in every worker.
    assert_eq!(
        diff.get("DynamoDB.GetItem"),
        Some(&10),
        "one endpoint read per attempt: {diff:?}"
    );
    assert_eq!(
        diff.values().sum::<u64>(),
        30,
        "nothing else, no SQS request on success: {diff:?}"
    );
}

/// What one conversion and its delivery write, metered as DynamoDB bills it
/// (`METER_CAPACITY`): the history index (GSI1) is written once, by the
/// write that records the attempt (never by the recording of the event, nor
/// by the claim); the open-work index (GSI2) never, as the delivery's
/// message was queued before it was stored (the queue first). A projection
/// of every attribute, a delivery indexed when it is created, a claim that
/// moves the due entry, or an open-work entry for a queued delivery, fails
/// this.
#[tokio::test]
async fn a_conversion_and_its_delivery_write_four_units_and_the_history_once() {
    let t = metered_app().await;
    let r = Receiver::ok().await;
    let (_, click) = setup(&t, json!({"name": "m", "url": r.url("/pb")})).await;
    // Warm the process cache of the offer and the endpoints, as a warm Lambda is.
    convert(&t, &click, &[("transaction_id", "W")]).await;

    // Metered around the conversion and around the delivery, not around
    // this test's own reads in between.
    let m0 = t.app.requests.metered();
    let event_id = convert(&t, &click, &[("transaction_id", "M1")]).await;
    let m1 = t.app.requests.metered();
    let event = sqs_batch(t.messages_of(&event_id).await);
    let m2 = t.app.requests.metered();
    let response = deliver::handle(&t.worker, event).await;
    let m3 = t.app.requests.metered();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.count(), 1);
    let get =
        |m: &shared::metrics::Metered, key: &str| m.write_units.get(key).copied().unwrap_or(0.0);
    let writes = |key: &str| get(&m1, key) - get(&m0, key) + get(&m3, key) - get(&m2, key);
    let reads = m1.reads() - m0.reads() + m3.reads() - m2.reads();
    let (gsi1, gsi2, table) = (
        writes(shared::store::GSI1),
        writes(shared::store::GSI2),
        writes("table"),
    );
    println!(
        "one conversion and its delivery: GSI1 {gsi1}, GSI2 {gsi2}, table {table}, reads {reads}"
    );
    assert_eq!(gsi1, 1.0, "GSI1: once, when its attempt is recorded");
    assert_eq!(
        gsi2, 0.0,
        "GSI2: a delivery queued first has no open-work entry"
    );
    // The ingest's one conditional write (the transaction's first event,
    // holding the transaction and owing its delivery, under 1 KB), the
    // first claim (a lease on that item, which creates nothing), the record
    // (which creates the delivery).
    assert_eq!(table, 3.0);
    // The click and the transaction's first event's item (eventually
    // consistent: half a unit each; a table created by this version holds
    // no transaction in an item of its own, so that key is not asked), and
    // the endpoint as stored (consistent) by the worker.
    assert_eq!(reads, 2.0);
}

/// A delivery stores its event's id, not a copy of the event (stored once,
/// as its own item). The fan-out's message carries the event, so the worker
/// renders without a read (the metered test above holds that); a message
/// without it (the reconciler's, or one queued before this layout) reads the
/// event; a delivery stored before this layout renders from its own copy.
#[tokio::test]
async fn a_delivery_stores_its_events_id_and_renders_the_event_however_it_was_queued() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (seed, click) = setup(
        &t,
        json!({"name": "e", "url": r.url("/pb?tx={transaction_id}&p={payout}")}),
    )
    .await;
    let reconciler_message = |d: &Delivery| {
        json!({"delivery_id": d.id, "partner_id": seed.partner_id, "endpoint_id": seed.endpoint_id})
            .to_string()
    };

    // An event over one write unit stores its deliveries with it (owed, each
    // claim would cost more than the transaction saves).
    let large = "x".repeat(900);
    let event_id = convert(&t, &click, &[("transaction_id", "S1"), ("sub9", &large)]).await;
    assert!(t.event(&event_id).await.owed.is_empty(), "stored, not owed");
    // Stored: the event's id beside the delivery, no copy of the event.
    let d = t.deliveries_of(&event_id).await.remove(0);
    let (pk, sk) = (format!("DELIVERY#{}", d.id), "DELIVERY");
    let item = t.raw_item(&pk, sk).await.expect("the delivery's item");
    assert!(
        !item.contains_key("event"),
        "no copy of the event: {item:?}"
    );
    // (`e`: its compact name, `store/compact.rs`.)
    assert_eq!(item.get("e"), Some(&AttributeValue::S(event_id.clone())));
    // Read back, the delivery has its event (from the event's item).
    assert_eq!(d.event.id.to_string(), event_id);
    assert_eq!(d.event.transaction_id.as_deref(), Some("S1"));

    // A message without the event: the worker reads it, and renders it.
    let response = deliver::handle(&t.worker, sqs_batch([reconciler_message(&d)])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.count(), 1);
    assert!(
        r.requests()[0].uri.ends_with("/pb?tx=S1&p=49.99"),
        "{}",
        r.requests()[0].uri
    );
    let sent = t.app.store.get_delivery(&d.id).await.unwrap().unwrap();
    assert_eq!(sent.status, DeliveryStatus::Delivered);
    let item = t.raw_item(&pk, sk).await.expect("the delivery's item");
    assert!(!item.contains_key("event"), "recording adds no copy either");

    // A delivery stored before this layout, with its own copy of the event
    // (here the only one left: the event's item is gone).
    let event_id = convert(&t, &click, &[("transaction_id", "S2"), ("sub9", &large)]).await;
    let d = t.deliveries_of(&event_id).await.remove(0);
    let (pk, sk) = (format!("DELIVERY#{}", d.id), "DELIVERY");
    let mut item = t.raw_item(&pk, sk).await.expect("the delivery's item");
    let copy: AttributeValue = serde_dynamo::to_attribute_value(&d.event).unwrap();
    item.insert("event".into(), copy);
    let (client, table) = (t.app.store.client(), t.app.store.table());
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    client
        .delete_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("EVENT#{event_id}")))
        .key("sk", AttributeValue::S("EVENT".into()))
        .send()
        .await
        .unwrap();
    let old = t
        .app
        .store
        .get_delivery(&d.id)
        .await
        .unwrap()
        .expect("read from its copy");
    assert_eq!(old.event.transaction_id.as_deref(), Some("S2"));
    let response = deliver::handle(&t.worker, sqs_batch([reconciler_message(&d)])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.count(), 2);
    assert!(r.requests()[1].uri.ends_with("/pb?tx=S2&p=49.99"));
}

#[tokio::test]
async fn pipeline_events_on_the_events_queue_are_recorded_and_fanned_out() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "e", "url": r.url("/pb?tx={transaction_id}&s={status}")})),
        )
        .await;
    let event = json!({"transaction_id": "Q-1", "event": "payout", "partner_id": seed.partner_id, "payout": "3.00", "status": "approved"});
    t.app
        .queue
        .send(&t.queue_url("EventsQueue"), &event.to_string(), 0)
        .await
        .unwrap();
    t.app
        .queue
        .send(&t.queue_url("EventsQueue"), "{\"event\": \"payout\"}", 0)
        .await
        .unwrap();
    t.pump_until("EventsQueue", Duration::from_secs(10), || async { true })
        .await;
    t.pump_for("EventsQueue", Duration::from_secs(2)).await;
    assert!(t.app.store.get_transaction("Q-1").await.unwrap().is_some());
    let dead = t.peek("EventsDLQ").await;
    assert_eq!(
        dead.len(),
        1,
        "the event without transaction_id is dead-lettered"
    );
    assert!(dead[0].message_attributes().unwrap()["reason"]
        .string_value()
        .unwrap()
        .contains("transaction_id"));
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() == 1
    })
    .await;
    assert_eq!(r.requests()[0].uri, "/pb?tx=Q-1&s=approved");
}

#[tokio::test]
async fn status_filters_route_each_status_to_its_own_endpoint() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    for (name, statuses) in [
        ("pending", json!(["pending"])),
        ("approved", json!(["approved"])),
        ("any", json!([])),
    ] {
        let e = json!({"name": name, "url": r.url(&format!("/{name}?s={{status}}")), "statuses": statuses});
        assert_eq!(
            t.admin_post(&format!("/partners/{}/endpoints", seed.partner_id), e)
                .await
                .0,
            201
        );
    }
    for status in ["pending", "approved"] {
        let (s, _) = t
            .admin_post("/events", json!({"transaction_id": "S-1", "event": "payout", "partner_id": seed.partner_id, "payout": "1", "status": status}))
            .await;
        assert_eq!(s, 200);
    }
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 4
    })
    .await;
    let mut got: Vec<String> = r.requests().into_iter().map(|c| c.uri).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "/any?s=approved",
            "/any?s=pending",
            "/approved?s=approved",
            "/pending?s=pending"
        ]
    );
}

/// Created by its claim: a conversion's event owes its delivery instead of
/// storing it; the first claim (a lease on the event) lets one worker send,
/// and the record of that attempt stores the delivery, in the history. The
/// same message again (SQS is at-least-once; a retried postback sends it
/// too) finds the delivery stored and finished, and sends nothing.
#[tokio::test]
async fn a_delivery_its_event_owes_is_stored_by_its_first_attempt_and_sent_once() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (_, click) = setup(&t, json!({"name": "o", "url": r.url("/pb")})).await;
    let event_id = convert(&t, &click, &[("transaction_id", "O1")]).await;
    let event = t.event(&event_id).await;
    let id = event.delivery_ids[0].clone();
    assert!(event.owed.contains_key(&id), "owed: {event:?}");
    let pk = format!("DELIVERY#{id}");
    assert!(
        t.raw_item(&pk, "DELIVERY").await.is_none(),
        "not stored yet"
    );
    let listed = t.deliveries_of(&event_id).await;
    assert_eq!(listed.len(), 1, "listed as pending all the same");
    assert_eq!(listed[0].status, DeliveryStatus::Pending);

    let messages = t.messages_of(&event_id).await;
    let response = deliver::handle(&t.worker, sqs_batch(messages.clone())).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.count(), 1);
    let item = t
        .raw_item(&pk, "DELIVERY")
        .await
        .expect("stored by its record");
    assert!(item.contains_key("gsi1pk"), "in the history: {item:?}");
    assert!(!item.contains_key("lease_ms"), "no lease left: {item:?}");
    let d = t.app.store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts.len(), 1);

    for _ in 0..2 {
        let response = deliver::handle(&t.worker, sqs_batch(messages.clone())).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let (s, _) = t
        .postback(&conversion(&click, &[("transaction_id", "O1")]))
        .await;
    assert_eq!(s, 200);
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(r.count(), 1, "sent once");
}

/// A conversion without a transaction id owes its delivery and has no
/// transaction to write: its event goes in alone, one conditional `PutItem`
/// (one unit, where a transaction bills two per item); a repeat of it is a
/// duplicate all the same, and the delivery goes out once.
#[tokio::test]
async fn a_conversion_without_a_transaction_writes_its_event_alone_in_one_unit() {
    let t = metered_app().await;
    let r = Receiver::ok().await;
    // Repeats recognised by their key (not by a window of identical
    // postbacks, which writes a window item and its deliveries).
    let mut offer = offer_body();
    offer["repeat_conversions"] = json!("per_event");
    let seed = t
        .seed(offer, Some(json!({"name": "n", "url": r.url("/pb")})))
        .await;
    let click = t.click(&seed, json!({})).await;
    convert(&t, &click, &[("transaction_id", "W")]).await; // warm the caches
    let m0 = t.app.requests.metered();
    let event_id = convert(&t, &click, &[]).await;
    let m1 = t.app.requests.metered();
    let units = m1.write_units.get("table").copied().unwrap_or(0.0)
        - m0.write_units.get("table").copied().unwrap_or(0.0);
    assert_eq!(units, 1.0, "the event alone");
    assert!(t.event(&event_id).await.transaction_id.is_none());
    repeat_is_a_duplicate_and_each_is_sent_once(&t, &r, &click, &[]).await;
}

/// Under the default retry window (a conversion without a transaction id
/// whose identical repeats within the window are retries), the write is the
/// window's item and the event owing its delivery: 4 units, no open-work
/// entry, the message sent first. A retry within the window lands on the
/// same event id, so its message names the same delivery: one postback goes
/// out.
#[tokio::test]
async fn a_conversion_under_the_retry_window_owes_its_delivery_and_a_retry_sends_nothing_more() {
    let t = metered_app().await;
    let r = Receiver::ok().await;
    let (_, click) = setup(&t, json!({"name": "w", "url": r.url("/pb")})).await;
    convert(&t, &click, &[("transaction_id", "W")]).await; // warm the caches
    let m0 = t.app.requests.metered();
    let event_id = convert(&t, &click, &[("sub2", "x")]).await;
    let m1 = t.app.requests.metered();
    let units = |key: &str| {
        m1.write_units.get(key).copied().unwrap_or(0.0)
            - m0.write_units.get(key).copied().unwrap_or(0.0)
    };
    assert_eq!(
        units("table"),
        4.0,
        "the window and the event, in one transaction"
    );
    assert_eq!(units(shared::store::GSI2), 0.0);
    let event = t.event(&event_id).await;
    assert!(event.owed.contains_key(&event.delivery_ids[0]), "{event:?}");
    repeat_is_a_duplicate_and_each_is_sent_once(&t, &r, &click, &[("sub2", "x")]).await;
}

/// A test app whose AWS requests report the capacity they consumed.
async fn metered_app() -> TestApp {
    TestApp::start_with(Options {
        env: vec![("METER_CAPACITY", "true".into())],
        ..Default::default()
    })
    .await
}

/// `convert`'s postback again (with `extra`): a duplicate; the warm-up's
/// conversion and the first go out once each.
async fn repeat_is_a_duplicate_and_each_is_sent_once(
    t: &TestApp,
    r: &Receiver,
    click: &str,
    extra: &[(&str, &str)],
) {
    let (s, b) = t.postback(&conversion(click, extra)).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")), "{b}");
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 2
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_secs(1)).await;
    assert_eq!(r.count(), 2, "the warm-up's and this one's, once each");
}

/// A stored delivery's message carries a copy of its event, which may be
/// that of a decision its request lost (a race on the transaction, decided
/// again with another sequence or another inherited payout, its messages
/// sent ahead each time): the worker sends the event as stored, never the
/// copy.
#[tokio::test]
async fn a_stored_deliverys_message_with_a_stale_copy_of_its_event_sends_the_event_as_stored() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (_, click) = setup(
        &t,
        json!({"name": "s", "url": r.url("/pb?p={payout}&seq={sequence}")}),
    )
    .await;
    let large = "x".repeat(900);
    let event_id = convert(&t, &click, &[("transaction_id", "ST1"), ("sub9", &large)]).await;
    assert!(t.event(&event_id).await.owed.is_empty(), "stored, not owed");
    let mut message: Value =
        serde_json::from_str(&t.messages_of(&event_id).await.remove(0)).unwrap();
    message["event"]["payout"] = json!("1.00");
    message["event"]["sequence"] = json!(7);
    let response = deliver::handle(&t.worker, sqs_batch([message.to_string()])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.count(), 1);
    let uri = r.requests()[0].uri.clone();
    assert!(uri.ends_with("/pb?p=49.99&seq=1"), "{uri}");
}

/// The compact layout (the default) and the long one (`COMPACT_ITEMS=false`,
/// the one versions before it read) are read alike by either: a transaction
/// begun by a process writing one layout and changed by a process writing
/// the other ends on the right state, each delivery is sent by the other
/// process's worker, and each event reads back the same from both.
#[tokio::test]
async fn items_written_in_the_long_or_the_compact_layout_are_read_alike_by_either() {
    // Mid-upgrade: a table an earlier version created, where the long
    // layout still begins transactions in items of their own.
    let compact = TestApp::start_with(Options {
        earlier_table: true,
        ..Default::default()
    })
    .await;
    let options = Options {
        env: vec![("COMPACT_ITEMS", "false".into())],
        ..Default::default()
    };
    let long = TestApp::on_stack(compact.stack.clone(), options, None).await;
    let r = Receiver::ok().await;
    let (_, click) = setup(
        &compact,
        json!({"name": "e", "url": r.url("/pb?tx={transaction_id}&s={status}&p={payout}&n={sequence}")}),
    )
    .await;
    let wait = Duration::from_secs(20);
    for (first, second, tx) in [(&long, &compact, "L1"), (&compact, &long, "C1")] {
        let pending = convert(
            first,
            &click,
            &[("transaction_id", tx), ("status", "pending")],
        )
        .await;
        let d = first.deliveries_of(&pending).await.remove(0);
        let d = wait_finished(second, d.id.as_str(), wait).await;
        assert_eq!(d.status, DeliveryStatus::Delivered);
        // A status change that names no payout keeps the transaction's,
        // read from the other layout's item.
        let (s, body) = second
            .postback(&[
                ("click_id", &click),
                ("event", "purchase"),
                ("status", "approved"),
                ("transaction_id", tx),
            ])
            .await;
        assert_eq!(s, 200, "{body}");
        let approved = body["conversion_id"].as_str().unwrap().to_string();
        let d = second.deliveries_of(&approved).await.remove(0);
        let d = wait_finished(first, d.id.as_str(), wait).await;
        assert_eq!(d.status, DeliveryStatus::Delivered);
        for id in [&pending, &approved] {
            assert_eq!(first.event(id).await, second.event(id).await);
        }
        // As written: the long layout names its attributes in full.
        let by_first = first.raw_item(&format!("EVENT#{pending}"), "EVENT").await;
        let by_second = second.raw_item(&format!("EVENT#{approved}"), "EVENT").await;
        let (by_first, by_second) = (by_first.expect("stored"), by_second.expect("stored"));
        let (long_item, compact_item) = if std::ptr::eq(first, &long) {
            (by_first, by_second)
        } else {
            (by_second, by_first)
        };
        assert!(
            long_item.contains_key("click_id") && long_item.contains_key("id"),
            "{long_item:?}"
        );
        assert!(
            compact_item.contains_key("cl") && !compact_item.contains_key("click_id"),
            "{compact_item:?}"
        );
        assert!(
            !compact_item.contains_key("id"),
            "its key holds it: {compact_item:?}"
        );
    }
    let sent: Vec<String> = r.requests().iter().map(|q| q.uri.clone()).collect();
    assert_eq!(sent.len(), 4, "{sent:?}");
    for tx in ["L1", "C1"] {
        assert!(
            sent.contains(&format!("/pb?tx={tx}&s=pending&p=49.99&n=1")),
            "{sent:?}"
        );
        assert!(
            sent.contains(&format!("/pb?tx={tx}&s=approved&p=49.99&n=2")),
            "{sent:?}"
        );
    }
}

/// Three workers (three processes, as Lambda runs several) handed the same
/// message of an owed delivery at the same moment, while the partner takes
/// its time: one claim wins, the partner gets one postback, and the
/// delivery stores one attempt. The messages the others kept send nothing
/// when they come back.
#[tokio::test]
async fn workers_racing_on_one_owed_message_send_it_once() {
    let t = TestApp::start().await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(TestApp::on_stack(t.stack.clone(), Options::default(), None).await);
    }
    let r = Receiver::start(vec![Reply::Delay(Duration::from_millis(300))]).await;
    let (_, click) = setup(&t, json!({"name": "o", "url": r.url("/pb")})).await;
    let event_id = convert(&t, &click, &[("transaction_id", "RACE1")]).await;
    let event = t.event(&event_id).await;
    let id = event.delivery_ids[0].clone();
    assert!(event.owed.contains_key(&id), "owed: {event:?}");
    let messages = t.messages_of(&event_id).await;
    let workers = [&t, &others[0], &others[1]];
    let responses = futures::future::join_all(
        workers
            .iter()
            .map(|w| deliver::handle(&w.worker, sqs_batch(messages.clone()))),
    )
    .await;
    assert_eq!(r.count(), 1, "one claim won: {responses:?}");
    let d = t.app.store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts.len(), 1, "{:?}", d.attempts);
    // The messages a loser kept come back: nothing more goes out.
    for w in workers {
        let response = deliver::handle(&w.worker, sqs_batch(messages.clone())).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "finished: acknowledged"
        );
    }
    assert_eq!(r.count(), 1, "sent once");
}
