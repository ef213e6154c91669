//! The partner's side: endpoints (pause, 410, secrets), the test route, the
//! history with its filters, cursor and CSV, support views, manual retry, and
//! who may see what.

use aws_sdk_dynamodb::types::ProjectionType;
use integration_tests::receiver::{Receiver, Reply};
use integration_tests::{offer_body, Seed, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use shared::lifecycle::DeliveryStatus;
use std::collections::BTreeSet;
use std::time::Duration;

async fn endpoint(t: &TestApp, seed: &Seed, body: Value) -> String {
    let (s, e) = t
        .admin_post(&format!("/partners/{}/endpoints", seed.partner_id), body)
        .await;
    assert_eq!(s, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

async fn put(t: &TestApp, path: &str, body: Value) -> (u16, Value) {
    t.send(t.http.put(t.url(path)).bearer_auth(ADMIN_KEY).json(&body))
        .await
}

async fn event(t: &TestApp, seed: &Seed, tx: &str, extra: Value) -> String {
    let mut body = json!({"transaction_id": tx, "event": "payout", "partner_id": seed.partner_id,
        "offer_id": seed.offer_id, "payout": "10.00"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (s, b) = t.admin_post("/events", body).await;
    assert_eq!(s, 200, "{b}");
    b["event_id"].as_str().unwrap().to_string()
}

/// Runs the worker until every delivery of these events is delivered: a
/// delivery enters its partner's history with its first attempt.
async fn deliver_all(t: &TestApp, event_ids: &[&str]) {
    let done = t
        .pump_until("DeliveryQueue", Duration::from_secs(30), || async move {
            for e in event_ids {
                let ds = t.deliveries_of(e).await;
                if ds.is_empty() || ds.iter().any(|d| d.status != DeliveryStatus::Delivered) {
                    return false;
                }
            }
            true
        })
        .await;
    assert!(done, "every delivery of {event_ids:?} delivered");
}

#[tokio::test]
async fn every_endpoint_of_a_partner_fires_for_the_events_its_filters_match() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    // Seed 002: each goal and status its own postback. Seed 004: event-type subscriptions.
    endpoint(
        &t,
        &seed,
        json!({"name": "signup", "url": r.url("/signup"), "goals": ["signup"]}),
    )
    .await;
    endpoint(&t, &seed, json!({"name": "deposit-approved", "url": r.url("/deposit-approved"), "goals": ["deposit"], "statuses": ["approved"]})).await;
    endpoint(
        &t,
        &seed,
        json!({"name": "rewards", "url": r.url("/rewards"), "events": ["reward.created"]}),
    )
    .await;
    event(&t, &seed, "G1", json!({"goal": "signup"})).await;
    event(
        &t,
        &seed,
        "G2",
        json!({"goal": "deposit", "status": "pending"}),
    )
    .await;
    event(
        &t,
        &seed,
        "G2",
        json!({"goal": "deposit", "status": "approved"}),
    )
    .await;
    event(&t, &seed, "R1", json!({"event": "reward.created"})).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 3
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_secs(1)).await;
    let got: BTreeSet<String> = r.requests().into_iter().map(|c| c.uri).collect();
    assert_eq!(
        got,
        ["/deposit-approved", "/rewards", "/signup"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(r.count(), 3);
}

#[tokio::test]
async fn a_paused_endpoint_keeps_what_it_would_have_received_and_gets_it_when_reactivated() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let eid = endpoint(
        &t,
        &seed,
        json!({"name": "p", "url": r.url("/pb?tx={transaction_id}"), "active": false}),
    )
    .await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (_, shown) = t.admin_get(&path).await;
    assert_eq!(shown["active"], false);
    assert!(shown["paused_at"].is_string());

    let e1 = event(&t, &seed, "P1", json!({})).await;
    let e2 = event(&t, &seed, "P2", json!({})).await;
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(r.count(), 0, "nothing is sent while paused");
    for id in [&e1, &e2] {
        assert_eq!(t.deliveries_of(id).await[0].status, DeliveryStatus::Pending);
    }

    let (s, shown) = put(
        &t,
        &path,
        json!({"name": "p", "url": r.url("/pb?tx={transaction_id}"), "active": true}),
    )
    .await;
    assert_eq!((s, shown["active"].as_bool()), (200, Some(true)));
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 2
    })
    .await;
    let got: BTreeSet<String> = r.requests().into_iter().map(|c| c.uri).collect();
    assert_eq!(
        got,
        ["/pb?tx=P1", "/pb?tx=P2"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[tokio::test]
async fn an_endpoint_that_answers_410_gone_is_paused_and_says_why() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(410)]).await;
    let seed = t.seed(offer_body(), None).await;
    let eid = endpoint(&t, &seed, json!({"name": "gone", "url": r.url("/pb")})).await;
    event(&t, &seed, "X1", json!({})).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (_, shown) = t.admin_get(&path).await;
    assert_eq!(shown["active"], false);
    assert!(
        shown["paused_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    let later = event(&t, &seed, "X2", json!({})).await;
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(r.count(), 1, "a paused endpoint is not called again");
    assert_eq!(
        t.deliveries_of(&later).await[0].status,
        DeliveryStatus::Pending
    );
}

#[tokio::test]
async fn the_test_route_sends_now_shows_the_masked_request_and_records_no_delivery() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(202)]).await;
    let seed = t.seed(offer_body(), None).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let eid = endpoint(&t, &seed, json!({"name": "json", "url": r.url("/hook?sub={sub1}&tx={transaction_id}"),
        "method": "POST_JSON", "secret": secret, "basic_auth": {"username": "acme", "password": "pw-very-secret"},
        "headers": {"X-Api-Key": "k-123"}})).await;
    let (s, out) = t
        .send(
            t.http
                .post(t.url(&format!(
                    "/partners/{}/endpoints/{eid}/test",
                    seed.partner_id
                )))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["success"], true);
    assert_eq!(out["response"]["status"], 202);
    assert_eq!(out["response"]["body"], "reply 1");
    assert!(out["response"]["latency_ms"].is_u64());
    assert_eq!(out["request"]["method"], "POST");
    assert!(out["request"]["url"]
        .as_str()
        .unwrap()
        .contains("&tx=test-"));
    assert_eq!(
        out["request"]["body"],
        r#"{"event":"test","data":{"message":"Test event sent!"}}"#
    );
    assert_eq!(out["request"]["headers"]["authorization"], "***");
    assert_eq!(out["request"]["headers"]["webhook-signature"], "***");
    assert_eq!(out["request"]["headers"]["X-Api-Key"], "k-123");
    assert_eq!(out["empty_macros"], json!(["sub1"]));
    let shown = out.to_string();
    assert!(!shown.contains("pw-very-secret") && !shown.contains(secret));
    // The partner got the very request shown.
    let got = &r.requests()[0];
    assert_eq!(got.body, out["request"]["body"].as_str().unwrap());
    assert!(got.header("webhook-signature").unwrap().starts_with("v1,"));
    // Not a delivery.
    let (_, history) = t
        .admin_get(&format!("/partners/{}/deliveries", seed.partner_id))
        .await;
    assert_eq!(history["items"], json!([]));
}

/// The rows of a history read page by page (`limit` a page, following
/// `next_cursor`, at most `max_pages` pages), each page answered 200.
async fn history_pages(t: &TestApp, base: &str, limit: usize, max_pages: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..max_pages {
        let url = match &cursor {
            Some(c) => format!("{base}?limit={limit}&cursor={c}"),
            None => format!("{base}?limit={limit}"),
        };
        let (s, page) = t.admin_get(&url).await;
        assert_eq!(s, 200, "{page}");
        rows.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    rows
}

#[tokio::test]
async fn the_history_is_newest_first_filtered_and_paged_with_an_opaque_cursor() {
    let t = TestApp::start().await;
    assert_eq!(gsi1_projection(&t).await, ProjectionType::Include);
    history_is_newest_first_filtered_and_paged(t).await;
}

/// What the live table's history index projects.
async fn gsi1_projection(t: &TestApp) -> ProjectionType {
    let table = t
        .app
        .store
        .client()
        .describe_table()
        .table_name(t.app.store.table())
        .send()
        .await
        .unwrap();
    table
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .find(|g| g.index_name() == Some(shared::store::GSI1))
        .and_then(|g| g.projection())
        .and_then(|p| p.projection_type())
        .unwrap()
        .clone()
}

/// A stack created before the history index's narrow projection keeps its
/// index as it was (`HistoryIndexProjection=all`, one deploy): the same
/// history reads the same from it.
#[tokio::test]
async fn a_history_index_that_projects_everything_reads_the_same_history() {
    let t = TestApp::start_with(integration_tests::Options {
        template_parameters: vec![("HistoryIndexProjection", "all")],
        ..Default::default()
    })
    .await;
    assert_eq!(gsi1_projection(&t).await, ProjectionType::All);
    history_is_newest_first_filtered_and_paged(t).await;
}

async fn history_is_newest_first_filtered_and_paged(t: TestApp) {
    let ok = Receiver::ok().await;
    let down = Receiver::start(vec![Reply::Status(500)]).await;
    let seed = t.seed(offer_body(), None).await;
    let good = endpoint(&t, &seed, json!({"name": "good", "url": ok.url("/pb")})).await;
    let bad = endpoint(
        &t,
        &seed,
        json!({"name": "bad", "url": down.url("/pb"), "retry_schedule": [0]}),
    )
    .await;
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(event(&t, &seed, &format!("H{i}"), json!({})).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        ok.count() >= 4 && down.count() >= 4
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_millis(1500))
        .await;
    let base = format!("/partners/{}/deliveries", seed.partner_id);

    let (s, all) = t
        .send(t.http.get(t.url(&base)).bearer_auth(&seed.partner_key))
        .await;
    assert_eq!(s, 200, "{all}");
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    let times: Vec<&str> = items.iter().map(|i| i["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let row = items
        .iter()
        .find(|i| i["endpoint_id"] == good.as_str())
        .unwrap();
    for field in [
        "time",
        "offer_id",
        "advertiser",
        "payout",
        "currency",
        "event",
        "status",
        "last_http_code",
        "attempts",
        "next_attempt_at",
    ] {
        assert!(row.get(field).is_some(), "row lacks {field}: {row}");
    }
    assert_eq!(
        (
            row["advertiser"].as_str(),
            row["payout"].as_str(),
            row["last_http_code"].as_u64()
        ),
        (Some("Acme, Inc."), Some("10.00"), Some(200))
    );

    let (_, failed) = t.admin_get(&format!("{base}?status=failed")).await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 4);
    assert!(failed["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["endpoint_id"] == bad.as_str() && i["last_http_code"] == 500));
    let (_, by_endpoint) = t
        .admin_get(&format!("{base}?endpoint_id={good}&status=delivered"))
        .await;
    assert_eq!(by_endpoint["items"].as_array().unwrap().len(), 4);
    let (_, future) = t.admin_get(&format!("{base}?from=2099-01-01")).await;
    assert_eq!(future["items"], json!([]));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (_, dated) = t
        .admin_get(&format!("{base}?from={today}&to={today}"))
        .await;
    assert_eq!(dated["items"].as_array().unwrap().len(), 8);

    // Pages of 3 cover everything once.
    let seen: Vec<String> = history_pages(&t, &base, 3, 10)
        .await
        .iter()
        .map(|row| row["delivery_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 8);

    let (s, body) = t.admin_get(&format!("{base}?cursor=bm9wZQ")).await;
    assert_eq!(
        (
            s,
            body["error"]["message"]
                .as_str()
                .map(|m| m.contains("cursor"))
        ),
        (400, Some(true))
    );
    let (s, _) = t.admin_get(&format!("{base}?status=lost")).await;
    assert_eq!(s, 400);

    // Served from the index: one Query per history shard, no Scan.
    let before = t.app.requests.snapshot();
    let _ = t.admin_get(&base).await;
    let after = t.app.requests.snapshot();
    assert_eq!(
        after.get("DynamoDB.Query").copied().unwrap_or(0)
            - before.get("DynamoDB.Query").copied().unwrap_or(0),
        u64::from(shared::store::HISTORY_SHARDS)
    );
    assert!(!after.contains_key("DynamoDB.Scan"));
}

/// One partner's history is written over several GSI1 keys (so that one
/// partner at peak is not capped by one index partition, nor holds back the
/// table's writes for everyone else), and read back as one history: every
/// delivery once, newest first across pages, and a recovery finds every
/// failed one, oldest first.
#[tokio::test]
async fn one_partners_history_spreads_over_its_shards_and_reads_back_as_one() {
    let t = TestApp::start().await;
    let down = Receiver::start(vec![Reply::Status(500)]).await;
    let seed = t.seed(offer_body(), None).await;
    let bad = endpoint(
        &t,
        &seed,
        json!({"name": "bad", "url": down.url("/pb"), "retry_schedule": [0]}),
    )
    .await;
    const N: usize = 24;
    let mut ids = Vec::new();
    for i in 0..N {
        let e = event(&t, &seed, &format!("S{i}"), json!({})).await;
        ids.extend(t.deliveries_of(&e).await.into_iter().map(|d| d.id));
    }
    t.pump_until("DeliveryQueue", Duration::from_secs(20), || async {
        down.count() >= N
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_millis(1000))
        .await;

    // Written over several of the partner's keys, and only its own.
    let partner: shared::ids::PartnerId = integration_tests::typed(&seed.partner_id);
    let own = shared::store::keys::partner_history(&partner);
    let mut used = BTreeSet::new();
    for id in &ids {
        let item = t
            .raw_item(&format!("DELIVERY#{id}"), "DELIVERY")
            .await
            .unwrap();
        let key = item["gsi1pk"].as_s().unwrap().clone();
        assert!(own.contains(&key), "{key} is not one of {own:?}");
        used.insert(key);
    }
    assert!(
        used.len() >= 4,
        "{N} deliveries over {} keys only",
        used.len()
    );
    assert_eq!(
        own[0],
        format!("PARTNER#{}", seed.partner_id),
        "shard 0 is the key before sharding"
    );

    // Read back as one history: pages of 5, newest first throughout, each once.
    let base = format!("/partners/{}/deliveries", seed.partner_id);
    let rows = history_pages(&t, &base, 5, N).await;
    let field = |name: &str| -> Vec<String> {
        rows.iter()
            .map(|row| row[name].as_str().unwrap().to_string())
            .collect()
    };
    let (seen, times) = (field("delivery_id"), field("time"));
    assert_eq!(seen.len(), N, "{seen:?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), N);
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let (_, failed) = t
        .admin_get(&format!("{base}?status=failed&limit=100"))
        .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), N);

    // A recovery counts and reads every shard: each failed delivery is sent once more.
    let path = format!("/partners/{}/endpoints/{bad}/recover", seed.partner_id);
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let recover = |body: Value| {
        t.send(
            t.http
                .post(t.url(&path))
                .bearer_auth(&seed.partner_key)
                .json(&body),
        )
    };
    let (s, body) = recover(json!({"since": since, "dry_run": true})).await;
    assert_eq!((s, &body["to_resend"]), (200, &json!(N)), "{body}");
    let (s, body) = recover(json!({"since": since})).await;
    assert_eq!(s, 202, "{body}");
    t.pump_until("DeliveryQueue", Duration::from_secs(30), || async {
        down.count() >= 2 * N
    })
    .await;
    assert_eq!(down.count(), 2 * N, "each failed delivery sent once more");
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    // A small RFC 4180 reader, independent of the writer.
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[tokio::test]
async fn the_csv_export_streams_every_page_with_a_header_and_quoted_fields() {
    let t = TestApp::start().await;
    let mut offer = offer_body();
    offer["advertiser"] = json!("Acme, \"Best\" Loans");
    let r = Receiver::ok().await;
    let seed = t
        .seed(offer, Some(json!({"name": "e", "url": r.url("/pb")})))
        .await;
    let mut events = Vec::new();
    for i in 0..7 {
        events.push(event(&t, &seed, &format!("C{i}"), json!({})).await);
    }
    deliver_all(&t, &events.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let resp = t
        .http
        .get(t.url(&format!("/partners/{}/deliveries?limit=2", seed.partner_id)))
        .header("accept", "text/csv")
        .bearer_auth(&seed.partner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let rows = parse_csv(&resp.text().await.unwrap());
    assert_eq!(rows.len(), 8, "a header and all 7 rows across 4 pages of 2");
    let header = &rows[0];
    assert_eq!(header[0], "time");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert!(
        rows[1..].iter().all(|r| r.len() == header.len()),
        "no column shifted"
    );
    assert!(rows[1..]
        .iter()
        .all(|r| r[col("advertiser")] == "Acme, \"Best\" Loans" && r[col("payout")] == "10.00"));
    let txs: BTreeSet<_> = rows[1..]
        .iter()
        .map(|r| r[col("transaction_id")].clone())
        .collect();
    assert_eq!(txs.len(), 7);

    let (s, _) = t
        .admin_get(&format!(
            "/partners/{}/deliveries?format=csv&status=pending",
            seed.partner_id
        ))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn support_sees_every_delivery_of_an_event_and_can_retry_a_failed_one_by_hand() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(500), Reply::Status(200)]).await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "e", "url": r.url("/pb"), "retry_schedule": [0]})),
        )
        .await;
    let event_id = event(&t, &seed, "M1", json!({})).await;
    let id = t.deliveries_of(&event_id).await[0].id.clone();
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_secs(1)).await;

    let (s, view) = t.admin_get(&format!("/events/{event_id}/deliveries")).await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["event"]["id"], event_id.as_str());
    assert_eq!(view["items"][0]["status"], "failed");
    assert_eq!(view["items"][0]["attempts"].as_array().unwrap().len(), 1);
    let (s, _) = t
        .send(
            t.http
                .get(t.url(&format!("/events/{event_id}/deliveries")))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 403, "support view is admin-only");

    let (s, retried) = t
        .send(
            t.http
                .post(t.url(&format!("/deliveries/{id}/retry")))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(
        (s, retried["status"].as_str()),
        (202, Some("pending")),
        "{retried}"
    );
    let (s, _) = t
        .send(
            t.http
                .post(t.url(&format!("/deliveries/{id}/retry")))
                .bearer_auth(ADMIN_KEY),
        )
        .await;
    assert_eq!(s, 409, "a delivery already pending cannot be retried again");
    let store = t.app.store.clone();
    let idc = id.clone();
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || {
        let (store, idc) = (store.clone(), idc.clone());
        async move {
            store.get_delivery(&idc).await.unwrap().unwrap().status == DeliveryStatus::Delivered
        }
    })
    .await;
    let d = t.app.store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts.len(), 2);
    assert!(
        !d.attempts[0].manual && d.attempts[1].manual,
        "the new round is recorded as manual"
    );
}

#[tokio::test]
async fn every_partner_route_answers_401_without_a_key_and_404_for_another_partners_data() {
    let t = TestApp::start().await;
    let a = t
        .seed(
            offer_body(),
            Some(json!({"name": "a", "url": "https://a.example/pb"})),
        )
        .await;
    let b = t
        .seed(
            offer_body(),
            Some(json!({"name": "b", "url": "https://b.example/pb"})),
        )
        .await;
    let b_event = event(&t, &b, "B1", json!({})).await;
    let b_delivery = t.deliveries_of(&b_event).await[0].id.clone();
    let (bp, be) = (b.partner_id.clone(), b.endpoint_id.clone().unwrap());
    let endpoint_body = json!({"name": "x", "url": "https://x.example/"});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/partners/{bp}"), None),
        ("GET", format!("/partners/{bp}/endpoints"), None),
        (
            "POST",
            format!("/partners/{bp}/endpoints"),
            Some(endpoint_body.clone()),
        ),
        ("GET", format!("/partners/{bp}/endpoints/{be}"), None),
        (
            "PUT",
            format!("/partners/{bp}/endpoints/{be}"),
            Some(endpoint_body.clone()),
        ),
        ("POST", format!("/partners/{bp}/endpoints/{be}/test"), None),
        ("GET", format!("/partners/{bp}/deliveries"), None),
        ("GET", format!("/partners/{bp}/deliveries?format=csv"), None),
        ("POST", format!("/deliveries/{b_delivery}/retry"), None),
        ("DELETE", format!("/partners/{bp}/endpoints/{be}"), None),
    ];
    for (method, path, body) in &routes {
        let req = |key: Option<&str>| {
            let mut r = t.http.request(method.parse().unwrap(), t.url(path));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            if let Some(b) = body {
                r = r.json(b);
            }
            r
        };
        assert_eq!(
            t.send(req(None)).await.0,
            401,
            "{method} {path} without a key"
        );
        assert_eq!(
            t.send(req(Some("not-a-real-key-at-all"))).await.0,
            401,
            "{method} {path} with a wrong key"
        );
        let (s, body) = t.send(req(Some(&a.partner_key))).await;
        assert_eq!(s, 404, "{method} {path} with another partner's key: {body}");
    }
    // The other partner's data is untouched, and its owner and the admin still see it.
    let (s, _) = t
        .send(
            t.http
                .get(t.url(&format!("/partners/{bp}/endpoints/{be}")))
                .bearer_auth(&b.partner_key),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = t.admin_get(&format!("/partners/{bp}/deliveries")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn patch_changes_only_what_it_names_and_write_only_credentials_are_never_shown() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let eid = endpoint(
        &t,
        &seed,
        json!({"name": "full", "url": r.url("/pb"), "method": "POST_JSON",
        "body": "{\"tx\": \"{transaction_id}\"}", "events": ["payout"], "retry_schedule": [0, 5],
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "basic_auth": {"token": "dG9rZW4tOTk="},
        "headers": {"X-Api-Key": "k-123-secret", "X-Plain": "p"}, "secret_headers": ["X-Api-Key"]}),
    )
    .await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (_, shown) = t.admin_get(&path).await;
    let text = shown.to_string();
    assert!(
        !text.contains("k-123-secret") && !text.contains("dG9rZW4tOTk="),
        "{text}"
    );
    assert_eq!(shown["headers"], json!({"X-Api-Key": null, "X-Plain": "p"}));
    assert_eq!(shown["basic_auth"], json!({"token_set": true}));

    // Pause by PATCH: nothing else changes (a PUT would have reset it all).
    let (s, paused) = t
        .send(
            t.http
                .patch(t.url(&path))
                .bearer_auth(&seed.partner_key)
                .json(&json!({"active": false})),
        )
        .await;
    assert_eq!(s, 200, "{paused}");
    for field in [
        "method",
        "body",
        "events",
        "retry_schedule",
        "secret_set",
        "basic_auth",
        "headers",
        "url",
    ] {
        assert_eq!(paused[field], shown[field], "{field} kept");
    }
    assert_eq!(paused["active"], false);
    let (s, resumed) = t
        .send(
            t.http
                .patch(t.url(&path))
                .bearer_auth(&seed.partner_key)
                .json(&json!({"active": true, "retry_schedule": [0]})),
        )
        .await;
    assert_eq!((s, resumed["retry_schedule"].clone()), (200, json!([0])));
    let (s, bad) = t
        .send(
            t.http
                .patch(t.url(&path))
                .bearer_auth(&seed.partner_key)
                .json(&json!({"colour": "red"})),
        )
        .await;
    assert_eq!(
        (
            s,
            bad["error"]["message"]
                .as_str()
                .map(|m| m.contains("colour"))
        ),
        (400, Some(true))
    );

    // The credentials still go out, and the test route masks them.
    let (s, test) = t
        .send(
            t.http
                .post(t.url(&format!("{path}/test")))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 200, "{test}");
    let sent = &r.requests()[0];
    assert_eq!(sent.header("x-api-key"), Some("k-123-secret"));
    assert_eq!(sent.header("authorization"), Some("Basic dG9rZW4tOTk="));
    assert!(sent.header("webhook-signature").is_some());
    let shown_test = test.to_string();
    assert!(
        !shown_test.contains("k-123-secret") && !shown_test.contains("dG9rZW4tOTk="),
        "{shown_test}"
    );
    assert_eq!(test["request"]["headers"]["X-Api-Key"], "***");
}

/// A partner with one endpoint that answers 200, and a conversion `tx`
/// whose event happened on 2020-01-01 (delivered today), delivered.
async fn an_old_event_delivered_today(t: &TestApp, tx: &str) -> (Receiver, Seed, String) {
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "pb", "url": r.url("/pb")})),
        )
        .await;
    let e = event(t, &seed, tx, json!({"occurred_at": "2020-01-01T12:00:00Z"})).await;
    deliver_all(t, &[&e]).await;
    (r, seed, e)
}

#[tokio::test]
async fn the_history_filters_by_the_events_own_time_as_well_as_the_deliverys() {
    let t = TestApp::start().await;
    let (_r, seed, _) = an_old_event_delivered_today(&t, "OLD").await;
    let new = event(&t, &seed, "NEW", json!({})).await;
    deliver_all(&t, &[&new]).await;
    let base = format!("/partners/{}/deliveries", seed.partner_id);
    let (s, by_event) = t
        .admin_get(&format!("{base}?time=event&from=2019-12-31&to=2020-01-02"))
        .await;
    assert_eq!(s, 200, "{by_event}");
    let items = by_event["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{by_event}");
    assert_eq!(items[0]["transaction_id"], "OLD");
    assert_eq!(items[0]["event_time"], "2020-01-01T12:00:00Z");
    let (_, by_delivery) = t
        .admin_get(&format!("{base}?from=2019-12-31&to=2020-01-02"))
        .await;
    assert!(
        by_delivery["items"].as_array().unwrap().is_empty(),
        "both were delivered today"
    );
    let (s, _) = t.admin_get(&format!("{base}?time=yesterday")).await;
    assert_eq!(s, 400);
}

/// A delivery stored before deliveries carried their event's time (the
/// history index filters on it) is still found by its event's time, and
/// still left out of a range its event is not in.
#[tokio::test]
async fn a_delivery_stored_before_event_at_existed_is_found_by_its_events_time() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let t = TestApp::start().await;
    let (_r, seed, e) = an_old_event_delivered_today(&t, "PRE").await;
    let d = t.deliveries_of(&e).await.remove(0);
    t.app
        .store
        .client()
        .update_item()
        .table_name(t.app.store.table())
        .key("pk", AttributeValue::S(format!("DELIVERY#{}", d.id)))
        .key("sk", AttributeValue::S("DELIVERY".into()))
        .update_expression("REMOVE event_at")
        .send()
        .await
        .unwrap();
    let item = t
        .raw_item(&format!("DELIVERY#{}", d.id), "DELIVERY")
        .await
        .unwrap();
    assert!(!item.contains_key("event_at"));
    let base = format!("/partners/{}/deliveries?time=event", seed.partner_id);
    let (s, inside) = t
        .admin_get(&format!("{base}&from=2019-12-31&to=2020-01-02"))
        .await;
    assert_eq!(s, 200, "{inside}");
    let ids: Vec<&str> = inside["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["delivery_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [d.id.as_str()]);
    let (_, outside) = t.admin_get(&format!("{base}&from=2021-01-01")).await;
    assert_eq!(outside["items"], json!([]), "{outside}");
}

#[tokio::test]
async fn a_partner_key_is_added_and_revoked_without_a_gap_and_only_by_who_may() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let other = t.seed(offer_body(), None).await;
    let pid = &seed.partner_id;
    let keys_path = format!("/partners/{pid}/keys");
    let as_key = |key: &str, req: reqwest::RequestBuilder| req.bearer_auth(key.to_string());
    let status_with = |key: String| {
        let t = &t;
        async move {
            t.send(
                t.http
                    .get(t.url(&format!("/partners/{pid}")))
                    .bearer_auth(key),
            )
            .await
            .0
        }
    };

    let (s, listed) = t
        .send(as_key(&seed.partner_key, t.http.get(t.url(&keys_path))))
        .await;
    assert_eq!(s, 200, "{listed}");
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    let first_id = listed["keys"][0]["id"].as_str().unwrap().to_string();
    assert!(first_id.starts_with("key_"), "{first_id}");
    assert!(
        !listed.to_string().contains(&seed.partner_key),
        "a key is never shown again"
    );

    // The partner adds a second key: both work while its clients move over.
    let (s, added) = t
        .send(as_key(&seed.partner_key, t.http.post(t.url(&keys_path))))
        .await;
    assert_eq!(s, 201, "{added}");
    let second = added["api_key"].as_str().unwrap().to_string();
    let second_id = added["id"].as_str().unwrap().to_string();
    assert_eq!(status_with(seed.partner_key.clone()).await, 200);
    assert_eq!(status_with(second.clone()).await, 200);

    // Another partner sees none of it.
    let (s, _) = t
        .send(as_key(&other.partner_key, t.http.get(t.url(&keys_path))))
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .send(as_key(
            &other.partner_key,
            t.http.delete(t.url(&format!("{keys_path}/{first_id}"))),
        ))
        .await;
    assert_eq!(s, 404);

    // The old key is revoked with the new one, and stops working.
    let (s, body) = t
        .send(as_key(
            &second,
            t.http.delete(t.url(&format!("{keys_path}/{first_id}"))),
        ))
        .await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(
        status_with(seed.partner_key.clone()).await,
        401,
        "a revoked key is refused"
    );
    assert_eq!(status_with(second.clone()).await, 200);
    let (s, body) = t
        .send(as_key(
            &second,
            t.http.delete(t.url(&format!("{keys_path}/{first_id}"))),
        ))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );

    // A partner cannot lock itself out; the admin can switch a partner off.
    let (s, body) = t
        .send(as_key(
            &second,
            t.http.delete(t.url(&format!("{keys_path}/{second_id}"))),
        ))
        .await;
    assert_eq!(s, 409, "{body}");
    for _ in 0..4 {
        let (s, _) = t
            .send(as_key(ADMIN_KEY, t.http.post(t.url(&keys_path))))
            .await;
        assert_eq!(s, 201);
    }
    let (s, body) = t
        .send(as_key(ADMIN_KEY, t.http.post(t.url(&keys_path))))
        .await;
    assert_eq!(s, 409, "at most 5 keys: {body}");
    let (s, listed) = t
        .send(as_key(ADMIN_KEY, t.http.get(t.url(&keys_path))))
        .await;
    assert_eq!(s, 200);
    for key in listed["keys"].as_array().unwrap() {
        let id = key["id"].as_str().unwrap();
        let (s, _) = t
            .send(as_key(
                ADMIN_KEY,
                t.http.delete(t.url(&format!("{keys_path}/{id}"))),
            ))
            .await;
        assert_eq!(s, 204);
    }
    assert_eq!(
        status_with(second).await,
        401,
        "no key works once the admin revoked them all"
    );
}

#[tokio::test]
async fn the_preview_renders_without_sending_and_never_another_partners_event() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "main", "url": r.url("/pb?tx={transaction_id}&s={sub1}")})),
        )
        .await;
    let other = t
        .seed(
            offer_body(),
            Some(json!({"name": "other", "url": r.url("/other?tx={transaction_id}")})),
        )
        .await;
    let click = t.click(&other, json!({"sub1": "theirs"})).await;
    let (s, b) = t
        .postback(&[("click_id", &click), ("transaction_id", "T-other")])
        .await;
    assert_eq!(s, 200);
    let their_event = b["conversion_id"].as_str().unwrap().to_string();
    let preview = |body: Value| {
        let t = &t;
        let path = format!("/partners/{}/endpoints/preview", seed.partner_id);
        let key = seed.partner_key.clone();
        async move {
            t.send(t.http.post(t.url(&path)).bearer_auth(key).json(&body))
                .await
        }
    };

    // A form being filled in: rendered with the sample, empty macros named.
    let (s, p) = preview(json!({"url": r.url("/new?c={click_id}&s={sub1}&p={payout}"), "secret": "whsec_preview-secret-1", "method": "POST_JSON"})).await;
    assert_eq!(s, 200, "{p}");
    assert!(
        p["request"]["url"]
            .as_str()
            .unwrap()
            .contains("/new?c=test-click"),
        "{p}"
    );
    assert!(
        p["empty_macros"]
            .as_array()
            .unwrap()
            .contains(&json!("sub1")),
        "{p}"
    );
    assert!(
        p["macros"].as_array().unwrap().contains(&json!("payout")),
        "{p}"
    );
    assert!(
        !p.to_string().contains("whsec_preview-secret-1"),
        "the secret is masked"
    );
    // A stored endpoint with a change, rendered with the partner's own event.
    let (s, p) = preview(
        json!({"endpoint_id": seed.endpoint_id, "url": r.url("/changed?tx={transaction_id}")}),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert!(
        p["request"]["url"]
            .as_str()
            .unwrap()
            .contains("/changed?tx=test-"),
        "{p}"
    );
    // Bad input names the field; another partner's event is not found.
    let (s, p) = preview(json!({"url": "ftp://nope"})).await;
    assert_eq!(s, 400, "{p}");
    assert!(
        p["error"]["message"].as_str().unwrap().contains("`url`"),
        "{p}"
    );
    let (s, p) = preview(json!({"endpoint_id": seed.endpoint_id, "event_id": their_event})).await;
    assert_eq!(s, 404, "{p}");
    assert!(!p.to_string().contains("theirs"));
    assert_eq!(r.count(), 0, "a preview sends nothing");
}
