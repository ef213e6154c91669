//! Conversions in, against the local DynamoDB and SQS stand-ins.

use chrono::{Duration as ChronoDuration, Utc};
use integration_tests::receiver::Receiver;
use integration_tests::{offer_body, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use shared::domain::Click;
use shared::lifecycle::DeliveryStatus;
use std::time::Duration;

fn endpoint_to(url: &str) -> Value {
    json!({"name": "main", "url": url})
}

async fn delivery_messages(t: &TestApp) -> Vec<Value> {
    t.peek("DeliveryQueue")
        .await
        .into_iter()
        .map(|m| serde_json::from_str(m.body().unwrap_or("")).unwrap())
        .collect()
}

#[tokio::test]
async fn health_answers_ok_once_the_stores_are_reachable() {
    let t = TestApp::start().await;
    let (status, body) = t.send(t.http.get(t.url("/health"))).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn the_whole_flow_from_offer_and_partner_to_click_to_postback_queues_a_delivery() {
    let t = TestApp::start().await;
    let seed = t
        .seed(
            offer_body(),
            Some(endpoint_to("https://partner.example/pb?payout={payout}")),
        )
        .await;

    // The public click: 302 to the landing page with the click id; extra parameters are attributes.
    let resp = t
        .http
        .get(t.url(&format!(
            "/click?offer_id={}&partner_id={}&sub1=abc&sub2=x%20y",
            seed.offer_id, seed.partner_id
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("https://acme.example/lp?src=net&click_id="),
        "{location}"
    );
    let click_id = location.rsplit("click_id=").next().unwrap().to_string();
    assert_eq!(click_id.len(), 26);
    let click = t
        .app
        .store
        .get_click(&integration_tests::typed(&click_id))
        .await
        .unwrap()
        .expect("click stored");
    assert_eq!(click.attributes["sub1"], "abc");
    assert_eq!(click.attributes["sub2"], "x y");
    assert!(click.expires_at > Utc::now() + ChronoDuration::days(29));

    let (status, body) = t
        .postback(&[
            ("click_id", &click_id),
            ("event", "purchase"),
            ("payout", "49.99"),
            ("measurement", "1"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "recorded");
    let event_id = body["conversion_id"].as_str().unwrap();

    let event = t
        .app
        .store
        .get_event(&integration_tests::typed(event_id))
        .await
        .unwrap()
        .expect("event stored");
    assert_eq!(event.payout.to_string(), "49.99");
    assert_eq!(event.currency, "USD");
    assert_eq!(event.partner_id, seed.partner_id);
    assert_eq!(event.attributes["sub1"], "abc");
    assert_eq!(event.delivery_ids.len(), 1);

    // Owed by its event until its first attempt (created by its claim), and
    // listed as pending meanwhile.
    let delivery = t.deliveries_of(event_id).await.remove(0);
    assert!(event.owed.contains_key(&delivery.id));
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.endpoint_id, seed.endpoint_id.clone().unwrap());

    // Its message, sent just before the write (the queue first), says so.
    let messages = delivery_messages(&t).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["delivery_id"], delivery.id);
    assert_eq!(messages[0]["endpoint_id"], delivery.endpoint_id);
    assert_eq!(messages[0]["owed"], true);
}

#[tokio::test]
async fn a_retried_identical_postback_is_a_duplicate_and_sends_nothing_more() {
    let t = TestApp::start().await;
    let receiver = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(endpoint_to(&receiver.url("/pb?tx={transaction_id}"))),
        )
        .await;
    let click = t.click(&seed, json!({})).await;
    let pb = [
        ("click_id", click.as_str()),
        ("event", "sale"),
        ("payout", "5"),
        ("transaction_id", "T-1"),
    ];

    let (s1, first) = t.postback(&pb).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        receiver.count() == 1
    })
    .await;
    let (s2, second) = t.postback(&pb).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first["status"], "recorded");
    assert_eq!(second["status"], "duplicate");
    assert_eq!(first["conversion_id"], second["conversion_id"]);

    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(
        receiver.count(),
        1,
        "a duplicate must not send a second postback"
    );
}

#[tokio::test]
async fn concurrent_identical_postbacks_record_one_conversion_and_one_postback() {
    let t = TestApp::start().await;
    let receiver = Receiver::ok().await;
    let seed = t
        .seed(offer_body(), Some(endpoint_to(&receiver.url("/pb"))))
        .await;
    let click = t.click(&seed, json!({})).await;
    let pb = [
        ("click_id", click.as_str()),
        ("event", "sale"),
        ("payout", "5"),
        ("transaction_id", "T-9"),
    ];

    let answers = futures::future::join_all((0..8).map(|_| t.postback(&pb))).await;
    let recorded = answers
        .iter()
        .filter(|(s, b)| *s == 200 && b["status"] == "recorded")
        .count();
    let duplicates = answers
        .iter()
        .filter(|(s, b)| *s == 200 && b["status"] == "duplicate")
        .count();
    assert_eq!((recorded, duplicates), (1, 7), "{answers:?}");
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|(_, b)| b["conversion_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1);

    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        receiver.count() >= 1
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(receiver.count(), 1, "one conversion, one postback");
}

#[tokio::test]
async fn other_events_and_transactions_on_one_click_are_separate_conversions() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let click = t.click(&seed, json!({})).await;
    let mut ids = std::collections::BTreeSet::new();
    for (event, tx) in [("lead", ""), ("sale", ""), ("sale", "A"), ("sale", "B")] {
        let (s, b) = t
            .postback(&[
                ("click_id", &click),
                ("event", event),
                ("transaction_id", tx),
            ])
            .await;
        assert_eq!(
            (s, b["status"].as_str()),
            (200, Some("recorded")),
            "{event}/{tx}: {b}"
        );
        ids.insert(b["conversion_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn postbacks_are_accepted_as_form_and_json_bodies() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let click = t.click(&seed, json!({})).await;

    let (s, form) = t
        .send(t.http.post(t.url("/postback")).form(&[
            ("click_id", click.as_str()),
            ("event", "lead"),
            ("payout", "1.5"),
        ]))
        .await;
    assert_eq!(
        (s, form["status"].as_str()),
        (200, Some("recorded")),
        "{form}"
    );
    let (s, js) = t
        .send(t.http.post(t.url("/postback")).json(
            &json!({"click_id": click, "event": "sale", "payout": "12.25", "measurement": 1}),
        ))
        .await;
    assert_eq!((s, js["status"].as_str()), (200, Some("recorded")), "{js}");
    let event = t
        .app
        .store
        .get_event(&integration_tests::typed(
            js["conversion_id"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.payout.to_string(), "12.25");
}

#[tokio::test]
async fn bad_postbacks_get_clear_errors_naming_the_field() {
    let t = TestApp::start().await;
    let mut offer = offer_body();
    offer["security_token"] = json!("adv-token-123");
    let seed = t.seed(offer, None).await;
    let click = t.click(&seed, json!({})).await;
    let c = click.as_str();
    // Another advertiser's offer with its own token: that token must not open this offer.
    let mut other = offer_body();
    other["security_token"] = json!("other-offer-token-9");
    assert_eq!(t.admin_post("/offers", other).await.0, 201);

    // (query pairs, expected status, field the message must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("event", "x")], 400, "click_id"),
        (
            vec![
                ("click_id", c),
                ("event", "x"),
                ("security_token", "other-offer-token-9"),
            ],
            403,
            "security_token",
        ),
        (
            vec![("click_id", c), ("event", "x"), ("security_token", "")],
            401,
            "security_token",
        ),
        (
            vec![
                ("click_id", c),
                ("payout", "abc"),
                ("security_token", "adv-token-123"),
            ],
            400,
            "payout",
        ),
        (
            vec![
                ("click_id", c),
                ("payout", "1e3"),
                ("security_token", "adv-token-123"),
            ],
            400,
            "payout",
        ),
        (
            vec![
                ("click_id", c),
                ("payout", "1.23456"),
                ("security_token", "adv-token-123"),
            ],
            400,
            "payout",
        ),
        (
            vec![
                ("click_id", c),
                ("payout", "-1"),
                ("security_token", "adv-token-123"),
            ],
            400,
            "payout",
        ),
        (
            vec![
                ("click_id", c),
                ("measurement", "1"),
                ("payout", "1"),
                ("security_token", "adv-token-123"),
            ],
            422,
            "event",
        ),
        (vec![("click_id", "nope"), ("event", "x")], 404, "click"),
        (vec![("click_id", c), ("event", "x")], 401, "security_token"),
        (
            vec![
                ("click_id", c),
                ("event", "x"),
                ("security_token", "wrong-token"),
            ],
            403,
            "security_token",
        ),
    ];
    for (pairs, status, field) in cases {
        let (s, body) = t.postback(&pairs).await;
        assert_eq!(s, status, "{pairs:?}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{pairs:?}: message should name {field}: {body}"
        );
        assert!(body["error"]["code"].is_string());
    }
    // Nothing above was recorded.
    let (s, ok) = t
        .postback(&[
            ("click_id", c),
            ("event", "x"),
            ("security_token", "adv-token-123"),
        ])
        .await;
    assert_eq!((s, ok["status"].as_str()), (200, Some("recorded")));
}

#[tokio::test]
async fn a_click_past_its_attribution_window_answers_410() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let old = Click {
        click_id: shared::ids::ClickId::random(),
        offer_id: seed.offer_id.parse().unwrap(),
        partner_id: seed.partner_id.parse().unwrap(),
        attributes: Default::default(),
        created_at: Utc::now() - ChronoDuration::days(31),
        expires_at: Utc::now() - ChronoDuration::days(1),
    };
    t.app.store.put_click(&old).await.unwrap();
    let (s, body) = t.postback(&[("click_id", &old.click_id)]).await;
    assert_eq!(s, 410, "{body}");
    assert_eq!(body["error"]["code"], "click_expired");
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_with_json_errors() {
    let t = TestApp::start().await;
    let (s, body) = t
        .send(
            t.http
                .post(t.url("/offers"))
                .bearer_auth(ADMIN_KEY)
                .body("{not json"),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("malformed_body"))
    );
    let big = "x".repeat(70 * 1024);
    let (s, body) = t
        .send(
            t.http
                .post(t.url("/events"))
                .bearer_auth(ADMIN_KEY)
                .body(big),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let (s, body) = t.send(t.http.get(t.url("/no/such/route"))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("route_not_found"))
    );
    let (s, body) = t.send(t.http.delete(t.url("/postback"))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (s, body) = t
        .admin_post(
            "/offers",
            json!({"name": "x", "advertiser": "y", "landing_url": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("landing_url"),
        "{body}"
    );
}

#[tokio::test]
async fn admin_routes_need_the_admin_key_and_partners_see_only_their_own() {
    let t = TestApp::start().await;
    let a = t
        .seed(offer_body(), Some(endpoint_to("https://a.example/pb")))
        .await;
    let b = t
        .seed(offer_body(), Some(endpoint_to("https://b.example/pb")))
        .await;

    let (s, body) = t
        .send(t.http.post(t.url("/offers")).json(&offer_body()))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = t
        .send(
            t.http
                .post(t.url("/offers"))
                .bearer_auth("wrong-key-wrong-key")
                .json(&offer_body()),
        )
        .await;
    assert_eq!(s, 401);
    let forged = format!("pbk_{}_forgedsecret", a.partner_id);
    let (s, _) = t
        .send(
            t.http
                .get(t.url(&format!("/partners/{}", a.partner_id)))
                .bearer_auth(forged),
        )
        .await;
    assert_eq!(s, 401);
    for (method, path) in [
        ("POST", "/offers"),
        ("POST", "/partners"),
        ("POST", "/events"),
        ("POST", "/clicks"),
    ] {
        let req = t
            .http
            .request(method.parse().unwrap(), t.url(path))
            .bearer_auth(&a.partner_key)
            .json(&json!({}));
        let (s, _) = t.send(req).await;
        assert_eq!(s, 403, "{method} {path} with a partner key");
    }
    let (s, _) = t
        .send(
            t.http
                .get(t.url(&format!("/offers/{}", a.offer_id)))
                .bearer_auth(&a.partner_key),
        )
        .await;
    assert_eq!(s, 403);

    // Own resources: visible. Another partner's: 404, as if they did not exist.
    let own = format!(
        "/partners/{}/endpoints/{}",
        a.partner_id,
        a.endpoint_id.clone().unwrap()
    );
    let (s, _) = t
        .send(t.http.get(t.url(&own)).bearer_auth(&a.partner_key))
        .await;
    assert_eq!(s, 200);
    let (s, list) = t
        .send(
            t.http
                .get(t.url(&format!("/partners/{}/endpoints", a.partner_id)))
                .bearer_auth(&a.partner_key),
        )
        .await;
    assert_eq!((s, list["items"].as_array().map(Vec::len)), (200, Some(1)));
    let theirs = format!(
        "/partners/{}/endpoints/{}",
        b.partner_id,
        b.endpoint_id.clone().unwrap()
    );
    for path in [
        theirs.clone(),
        format!("/partners/{}", b.partner_id),
        format!("/partners/{}/endpoints", b.partner_id),
    ] {
        let (s, body) = t
            .send(t.http.get(t.url(&path)).bearer_auth(&a.partner_key))
            .await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    let (s, _) = t
        .send(t.http.delete(t.url(&theirs)).bearer_auth(&a.partner_key))
        .await;
    assert_eq!(s, 404);
    // The admin sees everything.
    let (s, _) = t.admin_get(&theirs).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn offers_can_be_read_updated_and_deleted_and_the_token_stays_write_only() {
    let t = TestApp::start().await;
    let mut body = offer_body();
    body["id"] = json!("offer-42");
    body["security_token"] = json!("first-token-1");
    let (s, created) = t.admin_post("/offers", body.clone()).await;
    assert_eq!(s, 201);
    assert_eq!(created["has_security_token"], true);
    assert!(!created.to_string().contains("first-token-1"));
    let (s, _) = t.admin_post("/offers", body.clone()).await;
    assert_eq!(s, 409, "creating an existing id conflicts");

    let mut update = offer_body();
    update["name"] = json!("Renamed");
    let (s, updated) = t
        .send(
            t.http
                .put(t.url("/offers/offer-42"))
                .bearer_auth(ADMIN_KEY)
                .json(&update),
        )
        .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(
        updated["has_security_token"], true,
        "an omitted token is kept"
    );

    let (s, read) = t.admin_get("/offers/offer-42").await;
    assert_eq!((s, read["name"].as_str()), (200, Some("Renamed")));
    let (s, _) = t
        .send(
            t.http
                .delete(t.url("/offers/offer-42"))
                .bearer_auth(ADMIN_KEY),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = t.admin_get("/offers/offer-42").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn an_advertiser_postback_costs_at_most_three_aws_requests() {
    let t = TestApp::start().await;
    let seed = t
        .seed(
            offer_body(),
            Some(endpoint_to("https://partner.example/pb")),
        )
        .await;
    let click = t.click(&seed, json!({})).await;
    // Warm the process cache of the offer and the endpoints, as a warm Lambda is.
    let (s, _) = t
        .postback(&[("click_id", &click), ("event", "warmup")])
        .await;
    assert_eq!(s, 200);

    let before = t.app.requests.snapshot();
    let (s, _) = t
        .postback(&[("click_id", &click), ("event", "sale"), ("payout", "3")])
        .await;
    assert_eq!(s, 200);
    let after = t.app.requests.snapshot();
    let diff = integration_tests::request_diff(&before, &after);
    let total: u64 = diff.values().sum();
    println!("AWS requests for one conversion: {diff:?}");
    assert_eq!(
        diff,
        [
            ("DynamoDB.GetItem", 1),
            ("DynamoDB.TransactWriteItems", 1),
            ("SQS.SendMessageBatch", 1)
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    );
    assert!(total <= 3);
}

#[tokio::test]
async fn a_conversion_whose_deliveries_could_not_be_queued_is_recorded_and_queued_by_the_reconciler(
) {
    let t = TestApp::start().await;
    let seed = t
        .seed(
            offer_body(),
            Some(endpoint_to("https://partner.example/pb")),
        )
        .await;
    let click = t.click(&seed, json!({})).await;
    let pb = [
        ("click_id", click.as_str()),
        ("event", "sale"),
        ("payout", "7"),
    ];

    // Same table, but a delivery queue that does not exist: the send fails after the write.
    let broken_url = format!("{}-missing", t.queue_url("DeliveryQueue"));
    let broken = TestApp::on_stack(t.stack.clone(), Default::default(), Some(broken_url)).await;
    let (s, body) = broken.postback(&pb).await;
    assert_eq!(
        (s, body["status"].as_str()),
        (200, Some("recorded")),
        "durably stored is recorded, whatever the queue did: {body}"
    );
    assert_eq!(t.queue_depth("DeliveryQueue").await, 0);

    // A retry is a duplicate and costs no extra reads; the reconciler queues the delivery.
    let (s, body) = t.postback(&pb).await;
    assert_eq!(
        (s, body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    // A delivery enters its partner's history with its first attempt (one
    // index write instead of two); one nobody attempted enters it when the
    // reconciler finds it overdue, so a stranded delivery is never hidden
    // from the partner for longer than that.
    let history = format!("/partners/{}/deliveries", seed.partner_id);
    let (s, page) = t.admin_get(&history).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["items"], json!([]), "not attempted yet: {page}");
    let done = shared::outbox::reconcile(&t.app, chrono::Utc::now() + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(done.requeued, 1);
    let (s, page) = t.admin_get(&history).await;
    assert_eq!(s, 200, "{page}");
    let rows = page["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "found overdue, so in the history: {page}");
    assert_eq!(rows[0]["status"], "pending", "{page}");
    // The retry's, sent ahead of its write (which then found the window
    // taken): within the window's span a retry has the first's event id,
    // so it names the same delivery, which the claim makes harmless; and
    // the reconciler's.
    let messages = delivery_messages(&t).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let event = t.event(body["conversion_id"].as_str().unwrap()).await;
    for m in &messages {
        assert_eq!(m["delivery_id"], event.delivery_ids[0], "{messages:?}");
    }
    assert_eq!(rows[0]["delivery_id"], messages[0]["delivery_id"]);
}

#[tokio::test]
async fn events_record_payouts_status_changes_and_invalidations_idempotently() {
    let t = TestApp::start().await;
    let mut endpoint =
        endpoint_to("https://partner.example/pb?amount={payout}&deleted={deleted_at}");
    endpoint["invalidations"] = json!(true);
    let seed = t.seed(offer_body(), Some(endpoint)).await;
    let payout = json!({"transaction_id": "LN-1", "event": "payout", "partner_id": seed.partner_id,
        "payout": "120.00", "currency": "USD", "status": "pending", "occurred_at": "2026-11-01T10:00:00Z",
        "attributes": {"user_id": "u-1", "payload": {"loan": "L9"}}});

    let (s, first) = t.admin_post("/events", payout.clone()).await;
    assert_eq!(
        (s, first["status"].as_str()),
        (200, Some("recorded")),
        "{first}"
    );
    let (s, again) = t.admin_post("/events", payout.clone()).await;
    assert_eq!((s, again["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(first["event_id"], again["event_id"]);

    // A status change of the known transaction is a new event that inherits the payout.
    let (s, approved) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "LN-1", "event": "payout", "status": "approved", "occurred_at": "2026-11-03T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (s, approved["status"].as_str()),
        (200, Some("recorded")),
        "{approved}"
    );
    let approved_event = t
        .app
        .store
        .get_event(&integration_tests::typed(
            approved["event_id"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approved_event.payout.to_string(), "120.00");
    assert_eq!(approved_event.partner_id, seed.partner_id);

    // The invalidation reverses it: negative payout, deleted_at, same transaction id.
    let (s, inv) = t
        .admin_post("/events", json!({"transaction_id": "LN-1", "event": "invalidation", "occurred_at": "2026-11-05T08:00:00Z"}))
        .await;
    assert_eq!(
        (s, inv["status"].as_str()),
        (200, Some("recorded")),
        "{inv}"
    );
    let inv_event = t
        .app
        .store
        .get_event(&integration_tests::typed(inv["event_id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inv_event.payout.to_string(), "-120.00");
    assert_eq!(inv_event.transaction_id.as_deref(), Some("LN-1"));
    assert_eq!(
        inv_event.deleted_at.unwrap().to_rfc3339(),
        "2026-11-05T08:00:00+00:00"
    );
    assert_eq!(inv_event.attributes["payload"]["loan"], "L9");
    assert_eq!(
        inv_event.delivery_ids.len(),
        1,
        "the endpoint opted in to invalidations"
    );

    // An invalidation of a transaction not seen yet waits for its payout.
    let (s, body) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "nope", "event": "invalidation"}),
        )
        .await;
    assert_eq!(
        (s, body["status"].as_str()),
        (200, Some("waiting")),
        "{body}"
    );
}

#[tokio::test]
async fn an_event_batch_reports_each_item_and_never_half_applies_one() {
    let t = TestApp::start().await;
    let seed = t
        .seed(
            offer_body(),
            Some(endpoint_to("https://partner.example/pb")),
        )
        .await;
    let batch = json!([
        {"transaction_id": "R-1", "event": "reward.created", "partner_id": seed.partner_id, "payout": "2.50"},
        {"transaction_id": "R-2", "event": "reward.created", "partner_id": seed.partner_id, "payout": "20000"},
        {"transaction_id": "R-3", "event": "reward.created", "partner_id": "no-such-partner", "payout": "1"},
        {"transaction_id": "R-1", "event": "reward.created", "partner_id": seed.partner_id, "payout": "2.50"}
    ]);
    let (s, body) = t.admin_post("/events", batch).await;
    assert_eq!(s, 207, "{body}");
    let statuses: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["recorded", "error", "error", "duplicate"]);
    assert_eq!(body["results"][1]["error"]["code"], "rule_violated");
    assert_eq!(body["results"][1]["error"]["field"], "payout");
    assert_eq!(body["results"][2]["error"]["code"], "partner_not_found");
    // The bad items left nothing behind: no transaction.
    assert!(t.app.store.get_transaction("R-2").await.unwrap().is_none());
    assert!(t.app.store.get_transaction("R-3").await.unwrap().is_none());
    // A malformed item refuses the whole array: nothing of it is recorded.
    let (s, refused) = t
        .admin_post(
            "/events",
            json!([
                {"transaction_id": "R-4", "event": "reward.created", "partner_id": seed.partner_id, "payout": "1"},
                {"transaction_id": "R-5", "event": "reward.created", "partner_id": seed.partner_id, "payout": "abc"}
            ]),
        )
        .await;
    assert_eq!(s, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "[1].payout");
    assert!(t.app.store.get_transaction("R-4").await.unwrap().is_none());
    // One delivery. The repeated item may queue its unsent delivery again (the
    // repair path); every message names that one delivery, which the worker
    // sends once.
    let event = t
        .app
        .store
        .get_event(&integration_tests::typed(
            body["results"][0]["event_id"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.delivery_ids.len(), 1);
    let messages = delivery_messages(&t).await;
    assert!(!messages.is_empty());
    assert!(
        messages
            .iter()
            .all(|m| m["delivery_id"] == event.delivery_ids[0].as_str()),
        "{messages:?}"
    );

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"transaction_id": format!("X{i}"), "event": "e"}))
        .collect();
    let (s, body) = t.admin_post("/events", Value::Array(too_many)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
}

#[tokio::test]
async fn operators_list_offers_partners_and_every_postback_of_an_offer_across_its_affiliates() {
    let t = TestApp::start().await;
    let a = t
        .seed(
            offer_body(),
            Some(json!({"name": "all offers", "url": "https://a.example/pb"})),
        )
        .await;
    let b = t.seed(offer_body(), None).await;
    let (s, e) = t
        .admin_post(&format!("/partners/{}/endpoints", b.partner_id), json!({"name": "only b", "url": "https://b.example/pb", "offers": [b.offer_id], "goals": ["deposit"], "statuses": ["approved"], "method": "POST_FORM"}))
        .await;
    assert_eq!(s, 201, "{e}");
    let (s, _) = t
        .admin_post(
            &format!("/partners/{}/endpoints", b.partner_id),
            json!({"name": "only a", "url": "https://b.example/a", "offers": [a.offer_id]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, offers) = t.admin_get("/offers?limit=1").await;
    assert_eq!(s, 200, "{offers}");
    assert_eq!(offers["items"].as_array().unwrap().len(), 1);
    assert_eq!(offers["items"][0]["id"], b.offer_id, "newest first");
    let cursor = offers["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = t
        .admin_get(&format!("/offers?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"][0]["id"], a.offer_id);
    let (_, partners) = t.admin_get("/partners").await;
    let text = partners.to_string();
    assert!(
        text.contains(&a.partner_id) && text.contains(&b.partner_id) && !text.contains("pbk_"),
        "{text}"
    );
    let (s, postbacks) = t
        .admin_get(&format!("/offers/{}/postbacks", b.offer_id))
        .await;
    assert_eq!(s, 200, "{postbacks}");
    let names: Vec<&str> = postbacks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["only b", "all offers"], "{postbacks}");
    assert_eq!(postbacks["items"][0]["affiliate"], b.partner_id);
    assert_eq!(postbacks["items"][0]["method"], "POST_FORM");
    let (s, _) = t
        .send(t.http.get(t.url("/offers")).bearer_auth(&a.partner_key))
        .await;
    assert_eq!(s, 403);
}
