//! The five kinds of network our users come from (an affiliate platform,
//! a lead marketplace, reward apps and the like), reproduced end to end
//! through the API, one test per use case. Where a network documents the
//! partner's exact request, it is asserted byte for byte.

use integration_tests::receiver::Receiver;
use integration_tests::{offer_body, Seed, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use std::time::Duration;

async fn endpoint(t: &TestApp, seed: &Seed, body: Value) -> String {
    let (s, e) = t
        .admin_post(&format!("/partners/{}/endpoints", seed.partner_id), body)
        .await;
    assert_eq!(s, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

async fn event(t: &TestApp, body: Value) -> Value {
    let (s, b) = t.admin_post("/events", body).await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn received(
    t: &TestApp,
    r: &Receiver,
    n: usize,
) -> Vec<integration_tests::receiver::Captured> {
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        r.count() >= n
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_millis(300))
        .await;
    let mut got = r.requests();
    got.sort_by_key(|c| c.at);
    got
}

#[tokio::test]
async fn engine_channel_partners_get_payouts_and_opted_in_invalidations_in_their_own_field_names() {
    // Seed 000 (Engine by MoneyLion): GET with the partner's names, client tags
    // only when provided, and invalidations as `event=invalidated` with the
    // original positive payout; POST JSON the same way.
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    endpoint(&t, &seed, json!({
        "name": "engine-get",
        "url": r.url("/postback?payout={payout_original}&clientId={clientId}&campaignId={campaignId}&engineLeadUuid={lead_id}&event={event}"),
        "events": ["payout"], "invalidations": true, "omit_empty": true,
        "rename": {"payout": "converted", "invalidation": "invalidated"},
    })).await;
    endpoint(&t, &seed, json!({
        "name": "engine-post", "method": "POST_JSON", "url": r.url("/json"),
        "body": "{\"payout\": \"{payout_original}\", \"transactionId\": \"{transaction_id}\", \"engineLeadUuid\": \"{lead_id}\", \"clientId\": \"{clientId}\", \"campaignId\": \"{campaignId}\", \"event\": \"{event}\", \"deletedAt\": \"{deleted_at}\"}",
        "events": ["payout"], "invalidations": true, "omit_empty": true,
        "rename": {"payout": "converted", "invalidation": "invalidated"},
    })).await;
    event(&t, json!({"transaction_id": "eadc3ae3-f817-4762-a65a-e46f0b1732b4", "event": "payout",
        "partner_id": seed.partner_id, "lead_id": "e7f5b06a-25e9-11ee-be56-0242ac120002", "payout": "100.00",
        "occurred_at": "2026-11-19T08:00:00Z",
        "attributes": {"clientId": "abc123", "campaignId": "email"}})).await;
    let got = received(&t, &r, 2).await;
    let get = got.iter().find(|c| c.method == "GET").unwrap();
    assert_eq!(get.uri, "/postback?payout=100.00&clientId=abc123&campaignId=email&engineLeadUuid=e7f5b06a-25e9-11ee-be56-0242ac120002&event=converted");
    let post = got.iter().find(|c| c.method == "POST").unwrap();
    assert_eq!(
        post.body,
        r#"{"payout":"100.00","transactionId":"eadc3ae3-f817-4762-a65a-e46f0b1732b4","engineLeadUuid":"e7f5b06a-25e9-11ee-be56-0242ac120002","clientId":"abc123","campaignId":"email","event":"converted"}"#,
        "no deletedAt on a payout"
    );

    // The invalidation: same transaction, original payout, event=invalidated, deletedAt.
    event(
        &t,
        json!({"transaction_id": "eadc3ae3-f817-4762-a65a-e46f0b1732b4", "event": "invalidation",
        "occurred_at": "2026-11-20T08:00:00Z"}),
    )
    .await;
    let got = received(&t, &r, 4).await;
    let get = got.iter().filter(|c| c.method == "GET").nth(1).unwrap();
    assert_eq!(get.uri, "/postback?payout=100.00&clientId=abc123&campaignId=email&engineLeadUuid=e7f5b06a-25e9-11ee-be56-0242ac120002&event=invalidated");
    let post: Value = serde_json::from_str(
        &got.iter()
            .filter(|c| c.method == "POST")
            .nth(1)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(post["event"], "invalidated");
    assert_eq!(post["payout"], "100.00");
    assert_eq!(post["deletedAt"], "2026-11-20T08:00:00Z");

    // A lead posted without client tags: the tags are left out, not sent empty.
    event(
        &t,
        json!({"transaction_id": "T-no-tags", "event": "payout", "partner_id": seed.partner_id,
        "lead_id": "L-2", "payout": "0.50"}),
    )
    .await;
    let got = received(&t, &r, 6).await;
    assert!(
        got.iter()
            .any(|c| c.uri == "/postback?payout=0.50&engineLeadUuid=L-2&event=converted"),
        "{:?}",
        got.iter().map(|c| &c.uri).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn momentscience_publishers_get_their_macros_and_the_nested_payload_as_documented() {
    // Seed 001 (MomentScience, publishers): the GET macro URL and the POST JSON
    // body of the page, with `is_loyaltyboost` from the offer and the payload
    // the offer was served with.
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let mut offer = offer_body();
    offer["id"] = json!("1511");
    offer["advertiser"] = json!("momentscience");
    offer["attributes"] = json!({"is_loyaltyboost": "0"});
    let seed = t.seed(offer, None).await;
    endpoint(&t, &seed, json!({"name": "get", "url": r.url("/postbacks?payout={payout}&timestamp={timestamp}&offer_id={offer_id}&advertiser_name={advertiser_name}&is_loyaltyboost={is_loyaltyboost}&user_id={user_id}")})).await;
    endpoint(&t, &seed, json!({"name": "post", "method": "POST_JSON", "url": r.url("/json"),
        "body": "{ \"offer_id\": \"{offer_id}\", \"advertiser_name\": \"{advertiser_name}\", \"payout\": \"{payout}\", \"payload\": {payload}, \"timestamp\": \"{timestamp}\", \"is_loyaltyboost\": \"{is_loyaltyboost|0}\" }"})).await;
    event(
        &t,
        json!({"transaction_id": "ms-1", "event": "conversion", "partner_id": seed.partner_id,
        "offer_id": "1511", "payout": "2.10", "occurred_at": "2023-09-20T15:27:40.802Z",
        "attributes": {"payload": {"user_id": "3410444", "session_id": "a90310222"}}}),
    )
    .await;
    let got = received(&t, &r, 2).await;
    let get = got.iter().find(|c| c.method == "GET").unwrap();
    assert_eq!(get.uri, "/postbacks?payout=2.10&timestamp=2023-09-20T15%3A27%3A40.802Z&offer_id=1511&advertiser_name=momentscience&is_loyaltyboost=0&user_id=3410444");
    let q: std::collections::HashMap<String, String> = get.query().into_iter().collect();
    assert_eq!(
        q["timestamp"], "2023-09-20T15:27:40.802Z",
        "ISO 8601 UTC with milliseconds"
    );
    let post = got.iter().find(|c| c.method == "POST").unwrap();
    assert_eq!(
        post.body,
        r#"{ "offer_id": "1511", "advertiser_name": "momentscience", "payout": "2.10", "payload": {"user_id":"3410444","session_id":"a90310222"}, "timestamp": "2023-09-20T15:27:40.802Z", "is_loyaltyboost": "0" }"#
    );
}

#[tokio::test]
async fn an_affiliate_platforms_postbacks_fire_per_affiliate_goal_and_conversion_status() {
    // Seed 002: affiliate × goal × status (Pending, Done, Rejected), GET / POST
    // form with basic auth, params and headers; every status change checked;
    // the offer's goals switched off and on again.
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    endpoint(&t, &seed, json!({"name": "deposit-done", "method": "POST_FORM", "url": r.url("/form"),
        "goals": ["deposit"], "statuses": ["Done"], "rename": {"approved": "Done"},
        "body": "goal={goal}&status={status}&amount={payout}", "basic_auth": {"username": "aff", "password": "pw-9"},
        "headers": {"X-Offer": "{offer_id}"}})).await;
    endpoint(
        &t,
        &seed,
        json!({"name": "any-rejected", "url": r.url("/get?s={status}"), "statuses": ["rejected"]}),
    )
    .await;
    let click = t.click(&seed, json!({})).await;
    let pb = |status: &'static str| {
        vec![
            ("click_id", click.clone()),
            ("goal", "deposit".to_string()),
            ("transaction_id", "C-1".to_string()),
            ("payout", "3.00".to_string()),
            ("status", status.to_string()),
        ]
    };
    for status in ["Pending", "Done", "Rejected"] {
        let pairs = pb(status);
        let (s, b) = t.send(t.http.get(t.url("/postback")).query(&pairs)).await;
        assert_eq!(
            (s, b["status"].as_str()),
            (200, Some("recorded")),
            "{status}: {b}"
        );
    }
    let got = received(&t, &r, 2).await;
    let form = got.iter().find(|c| c.uri == "/form").unwrap();
    assert_eq!(form.body, "goal=deposit&status=Done&amount=3.00");
    assert_eq!(form.header("authorization"), Some("Basic YWZmOnB3LTk="));
    assert_eq!(form.header("x-offer"), Some(seed.offer_id.as_str()));
    assert!(got.iter().any(|c| c.uri == "/get?s=rejected"));
    assert_eq!(got.len(), 2, "pending matches neither");

    // Goals switched off: the goal condition is ignored; on again: it applies.
    let off = t
        .send(
            t.http
                .put(t.url(&format!("/offers/{}", seed.offer_id)))
                .bearer_auth(ADMIN_KEY)
                .json(&{
                    let mut o = offer_body();
                    o["goals_enabled"] = json!(false);
                    o
                }),
        )
        .await;
    assert_eq!(off.0, 200, "{}", off.1);
    let pairs = vec![
        ("click_id", click.clone()),
        ("goal", "signup".to_string()),
        ("transaction_id", "C-2".to_string()),
        ("status", "done".to_string()),
    ];
    t.send(t.http.get(t.url("/postback")).query(&pairs)).await;
    let got = received(&t, &r, 3).await;
    assert_eq!(
        got.iter().filter(|c| c.uri == "/form").count(),
        2,
        "the signup fired the deposit postback while goals are off"
    );
    let on = t
        .send(
            t.http
                .put(t.url(&format!("/offers/{}", seed.offer_id)))
                .bearer_auth(ADMIN_KEY)
                .json(&{
                    let mut o = offer_body();
                    o["goals_enabled"] = json!(true);
                    o
                }),
        )
        .await;
    assert_eq!(on.0, 200);
    let pairs = vec![
        ("click_id", click.clone()),
        ("goal", "signup".to_string()),
        ("transaction_id", "C-3".to_string()),
        ("status", "done".to_string()),
    ];
    t.send(t.http.get(t.url("/postback")).query(&pairs)).await;
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(
        r.requests().iter().filter(|c| c.uri == "/form").count(),
        2,
        "goal conditions restored"
    );
}

#[tokio::test]
async fn momentscience_advertisers_send_many_conversions_per_click_and_200_means_recorded() {
    // Seed 003: click_id on the landing URL, `measurement=1&event&payout`
    // required together, many conversions per click (purchase, signup, lead,
    // repeat purchases), 200 only once recorded, 30-day window.
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "pb", "url": r.url("/pb?e={event}&p={payout}")})),
        )
        .await;
    let (s, _) = t
        .send(t.http.get(t.url(&format!(
            "/click?offer_id={}&partner_id={}&affiliate_id=x",
            seed.offer_id, seed.partner_id
        ))))
        .await;
    assert_eq!(s, 302);
    let click = t.click(&seed, json!({})).await;
    let (s, b) = t
        .postback(&[
            ("click_id", &click),
            ("measurement", "1"),
            ("event", "purchase"),
        ])
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("rule_violated")),
        "measurement=1 needs event and payout together"
    );
    for (event, payout) in [
        ("purchase", "49.99"),
        ("signup", "5.00"),
        ("lead", "2.50"),
        ("purchase", "19.99"),
    ] {
        let (s, b) = t
            .postback(&[
                ("click_id", &click),
                ("measurement", "1"),
                ("event", event),
                ("payout", payout),
            ])
            .await;
        assert_eq!(
            (s, b["status"].as_str()),
            (200, Some("recorded")),
            "{event} {payout}: {b}"
        );
    }
    let got = received(&t, &r, 4).await;
    assert_eq!(got.len(), 4);
    let (_, shown) = t.admin_get(&format!("/offers/{}", seed.offer_id)).await;
    assert_eq!(shown["attribution_window_days"], 30);
}

#[tokio::test]
async fn partnerstack_partners_subscribe_to_event_types_and_get_typed_payloads() {
    // Seed 004: event-type subscriptions, the test event, CRUD, and a
    // `reward.created` body like the page's, numbers, booleans, null and
    // arrays keeping their JSON types.
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let eid = endpoint(&t, &seed, json!({"name": "rewards", "method": "POST_JSON", "url": r.url("/ps"),
        "events": ["reward.created", "reward.updated"], "body": "{\"event\": \"{event}\", \"data\": {data}}"})).await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (s, test) = t
        .send(
            t.http
                .post(t.url(&format!("{path}/test")))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!((s, test["success"].as_bool()), (200, Some(true)), "{test}");
    let data = json!({"key": "rwrd_GWCpiWvW3ZekLe", "description": "$5 for every sign-up.", "amount": 5000,
        "reward_status": "paid", "payment_status": "withdrawn", "payment_date": 1624390897988_u64,
        "source": "transaction", "partnership_key": "part_zOoTHejddCMxJl", "created_at": 1623684855940_u64,
        "updated_at": 1623684855940_u64, "company": {"key": "co_1IfoLwRHJjObNrdv", "name": "IdeaAI"},
        "customer": {"key": "cus_1IfoLwRHJjObNrdv", "sub_ids": ["youtube"]}});
    event(&t, json!({"transaction_id": "rwrd_GWCpiWvW3ZekLe", "event": "reward.created", "partner_id": seed.partner_id,
        "attributes": {"data": data}})).await;
    event(&t, json!({"transaction_id": "cus_1", "event": "customer.created", "partner_id": seed.partner_id})).await;
    let got = received(&t, &r, 2).await;
    let rewards: Vec<_> = got.iter().filter(|c| c.uri == "/ps").collect();
    assert_eq!(
        rewards.len(),
        2,
        "the test event and reward.created; customer.created is not subscribed"
    );
    let expected = format!("{{\"event\": \"reward.created\", \"data\": {data}}}");
    assert_eq!(
        rewards[1].body, expected,
        "the page's payload, keys in its order, types kept"
    );
    let body: Value = serde_json::from_str(&rewards[1].body).unwrap();
    assert_eq!(body["data"]["amount"], json!(5000));
    assert_eq!(body["data"]["customer"]["sub_ids"], json!(["youtube"]));

    // View, update, delete.
    let (s, shown) = t
        .send(t.http.get(t.url(&path)).bearer_auth(&seed.partner_key))
        .await;
    assert_eq!(
        (s, shown["events"].clone()),
        (200, json!(["reward.created", "reward.updated"]))
    );
    let (s, _) = t.send(t.http.put(t.url(&path)).bearer_auth(&seed.partner_key).json(&json!({"name": "rewards", "method": "POST_JSON", "url": r.url("/ps2"), "events": ["action.created"]}))).await;
    assert_eq!(s, 200);
    let (s, _) = t
        .send(t.http.delete(t.url(&path)).bearer_auth(&seed.partner_key))
        .await;
    assert_eq!(s, 204);
}
