//! Conversion identity and status changes (issue 10): recurring purchases on
//! one click, an advertiser's retries, status changes in every direction
//! through `/postback`, `/events` and the events queue, the payout kept.

use integration_tests::receiver::Receiver;
use integration_tests::{offer_body, Seed, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

async fn setup(t: &TestApp, offer: Value, r: &Receiver) -> (Seed, String) {
    let seed = t
        .seed(
            offer,
            Some(json!({"name": "pb", "url": r.url("/pb?event={event}&status={status}&payout={payout}&tx={transaction_id}")})),
        )
        .await;
    let click = t.click(&seed, json!({})).await;
    (seed, click)
}

async fn sent(t: &TestApp, r: &Receiver, n: usize) -> Vec<String> {
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        r.count() >= n
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_millis(500))
        .await;
    let mut got: Vec<(std::time::Instant, String)> =
        r.requests().into_iter().map(|c| (c.at, c.uri)).collect();
    got.sort();
    got.into_iter().map(|(_, u)| u).collect()
}

#[tokio::test]
async fn recurring_purchases_on_one_click_are_each_recorded_and_an_advertisers_retry_is_not() {
    // MomentScience's advertiser page: `click_id&event=purchase&payout=…`, no transaction id.
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (_, click) = setup(&t, offer_body(), &r).await;
    let purchase = |payout: &'static str| {
        vec![
            ("click_id", click.clone()),
            ("event", "purchase".to_string()),
            ("payout", payout.to_string()),
            ("measurement", "1".to_string()),
        ]
    };
    let send = |pairs: Vec<(&'static str, String)>| {
        let t = &t;
        async move { t.send(t.http.get(t.url("/postback")).query(&pairs)).await }
    };
    let (s1, first) = send(purchase("49.99")).await;
    let (s2, retry) = send(purchase("49.99")).await;
    let (s3, second) = send(purchase("25.00")).await;
    assert_eq!((s1, s2, s3), (200, 200, 200));
    assert_eq!(first["status"], "recorded");
    assert_eq!(
        retry["status"], "duplicate",
        "an identical postback within the window is a retry"
    );
    assert_eq!(retry["conversion_id"], first["conversion_id"]);
    assert_eq!(
        second["status"], "recorded",
        "another purchase is another conversion"
    );
    assert_ne!(second["conversion_id"], first["conversion_id"]);
    let got = sent(&t, &r, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().any(|u| u.contains("payout=49.99"))
            && got.iter().any(|u| u.contains("payout=25.00"))
    );
}

#[tokio::test]
async fn the_same_purchase_again_after_the_retry_window_is_a_new_conversion() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let mut offer = offer_body();
    offer["retry_window_seconds"] = json!(1);
    let (_, click) = setup(&t, offer, &r).await;
    let pb = [
        ("click_id", click.as_str()),
        ("event", "purchase"),
        ("payout", "9.99"),
    ];
    let (_, first) = t.postback(&pb).await;
    let (_, retry) = t.postback(&pb).await;
    assert_eq!(retry["status"], "duplicate");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, again) = t.postback(&pb).await;
    assert_eq!(again["status"], "recorded", "{again}");
    assert_ne!(again["conversion_id"], first["conversion_id"]);
}

#[tokio::test]
async fn an_offer_can_count_one_conversion_per_event_or_per_click() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    for (policy, second_purchase, signup) in [
        ("per_event", "duplicate", "recorded"),
        ("per_click", "duplicate", "duplicate"),
    ] {
        let mut offer = offer_body();
        offer["repeat_conversions"] = json!(policy);
        let (seed, click) = setup(&t, offer, &r).await;
        let (_, shown) = t.admin_get(&format!("/offers/{}", seed.offer_id)).await;
        assert_eq!(shown["repeat_conversions"], policy);
        let (_, a) = t
            .postback(&[
                ("click_id", &click),
                ("event", "purchase"),
                ("payout", "10"),
            ])
            .await;
        let (_, b) = t
            .postback(&[
                ("click_id", &click),
                ("event", "purchase"),
                ("payout", "20"),
            ])
            .await;
        let (_, c) = t
            .postback(&[("click_id", &click), ("event", "signup")])
            .await;
        assert_eq!(a["status"], "recorded");
        assert_eq!(b["status"], second_purchase, "{policy}");
        assert_eq!(c["status"], signup, "{policy}");
    }
    let (s, b) = t
        .admin_post("/offers", {
            let mut o = offer_body();
            o["repeat_conversions"] = json!("sometimes");
            o
        })
        .await;
    assert_eq!(
        (
            s,
            b["error"]["message"]
                .as_str()
                .map(|m| m.contains("repeat_conversions"))
        ),
        (400, Some(true))
    );
}

#[tokio::test]
async fn an_advertisers_status_changes_fire_in_every_direction_and_keep_the_payout() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (_, click) = setup(&t, offer_body(), &r).await;
    let pb = |status: &'static str, payout: Option<&'static str>| {
        let mut v = vec![
            ("click_id", click.clone()),
            ("event", "sale".to_string()),
            ("transaction_id", "ORD-1".to_string()),
            ("status", status.to_string()),
        ];
        if let Some(p) = payout {
            v.push(("payout", p.to_string()));
        }
        v
    };
    let mut answers = Vec::new();
    for (status, payout) in [
        ("pending", Some("7.50")),
        ("approved", None),
        ("approved", None),
        ("rejected", None),
        ("approved", None),
    ] {
        let pairs = pb(status, payout);
        let (s, b) = t.send(t.http.get(t.url("/postback")).query(&pairs)).await;
        assert_eq!(s, 200, "{b}");
        answers.push(b["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        answers,
        ["recorded", "recorded", "duplicate", "recorded", "recorded"]
    );
    let mut got = sent(&t, &r, 4).await;
    // Deliveries go out concurrently: compare what was sent, not the order.
    got.sort();
    let mut expected = [
        "/pb?event=sale&status=pending&payout=7.50&tx=ORD-1",
        "/pb?event=sale&status=approved&payout=7.50&tx=ORD-1",
        "/pb?event=sale&status=rejected&payout=7.50&tx=ORD-1",
        "/pb?event=sale&status=approved&payout=7.50&tx=ORD-1",
    ];
    expected.sort();
    assert_eq!(
        got, expected,
        "the reversal fires and the payout of the first postback is kept, not the offer's 10.00"
    );
}

#[tokio::test]
async fn pipeline_status_changes_fire_in_every_direction_and_a_late_queue_message_is_no_reversal() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let (seed, _) = setup(&t, offer_body(), &r).await;
    let event = |status: &str, at: &str| {
        json!({"transaction_id": "LN-9", "event": "payout", "partner_id": seed.partner_id,
               "payout": "120.00", "status": status, "occurred_at": at})
    };
    let steps = [
        ("pending", "2026-11-01T10:00:00Z", "recorded"),
        ("approved", "2026-11-02T10:00:00Z", "recorded"),
        ("rejected", "2026-11-03T10:00:00Z", "recorded"),
        ("approved", "2026-11-04T10:00:00Z", "recorded"),
        // The same event again (a pipeline retry): a duplicate.
        ("approved", "2026-11-04T10:00:00Z", "duplicate"),
    ];
    for (status, at, expected) in steps {
        let (s, b) = t.admin_post("/events", event(status, at)).await;
        assert_eq!(
            (s, b["status"].as_str()),
            (200, Some(expected)),
            "{status} {at}: {b}"
        );
    }
    // The events queue hands the first message back, days late: not a reversal.
    let sqs = t.app.queue.client();
    sqs.send_message()
        .queue_url(t.queue_url("EventsQueue"))
        .message_body(event("pending", "2026-11-01T10:00:00Z").to_string())
        .send()
        .await
        .unwrap();
    t.pump_until("EventsQueue", Duration::from_secs(10), || async {
        t.queue_depth("EventsQueue").await == 0
    })
    .await;
    let got = sent(&t, &r, 4).await;
    let mut statuses: Vec<&str> = got
        .iter()
        .map(|u| {
            u.split("status=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
        })
        .collect();
    // Deliveries go out concurrently: compare what was sent, not the order.
    statuses.sort();
    assert_eq!(
        statuses,
        ["approved", "approved", "pending", "rejected"],
        "{got:?}"
    );
}

#[tokio::test]
async fn click_values_and_json_postback_parameters_keep_their_json_types_to_the_partner() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(
                json!({"name": "json", "method": "POST_JSON", "url": r.url("/j"),
            "body": "{\"payload\": {payload}, \"tags\": {tags}, \"vip\": {vip}, \"n\": {n}}"}),
            ),
        )
        .await;
    let click = t
        .click(&seed, json!({"payload": {"user_id": "3410444", "session_id": "a90310222"}, "tags": ["a", "b"]}))
        .await;
    let (s, b) = t
        .send(
            t.http
                .post(t.url("/postback"))
                .json(&json!({"click_id": click, "event": "sale", "vip": true, "n": 3})),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    let (s, b) = t
        .send(
            t.http
                .post(t.url("/postback"))
                .json(&json!({"click_id": click, "event": ["not", "a", "name"]})),
        )
        .await;
    assert_eq!(
        (
            s,
            b["error"]["message"].as_str().map(|m| m.contains("event"))
        ),
        (400, Some(true))
    );
    let got = sent(&t, &r, 1).await;
    let body = &r.requests()[0].body;
    assert_eq!(
        body,
        r#"{"payload": {"user_id":"3410444","session_id":"a90310222"}, "tags": ["a","b"], "vip": true, "n": 3}"#,
        "{got:?}"
    );
}
