//! What a partner ends up believing about a transaction: one reversal per
//! payout, amounts that are money, ids that stay in their namespace. Each
//! test asserts what the partner's receiver accepted and what is stored.

use integration_tests::receiver::Receiver;
use integration_tests::{offer_body, Seed, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// A seed whose endpoint receives every event, invalidations included, with
/// the transaction id, payout and sequence in the query.
async fn seed_with_receiver(t: &TestApp) -> (Seed, Receiver) {
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "all", "invalidations": true,
                "url": r.url("/pb?tx={transaction_id}&event={event}&status={status}&payout={payout}")})),
        )
        .await;
    (seed, r)
}

/// What the receiver accepted, as (event, status, payout) in arrival order.
fn accepted(r: &Receiver) -> Vec<(String, String, String)> {
    r.requests()
        .iter()
        .map(|c| {
            let q: std::collections::HashMap<String, String> = c.query().into_iter().collect();
            (
                q.get("event").cloned().unwrap_or_default(),
                q.get("status").cloned().unwrap_or_default(),
                q.get("payout").cloned().unwrap_or_default(),
            )
        })
        .collect()
}

async fn deliver_all(t: &TestApp, r: &Receiver, n: usize) {
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        r.count() >= n
    })
    .await;
    // Anything more would arrive now.
    t.pump_for("DeliveryQueue", Duration::from_millis(1500))
        .await;
}

#[tokio::test]
async fn an_invalidation_repeated_is_one_reversal() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "R-1", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let first = json!({"transaction_id": "R-1", "event": "invalidation"});
    let (s, b) = t.admin_post("/events", first.clone()).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    let reversal = b["event_id"].clone();
    // The same body again, and with another status: repeats of the one reversal.
    for again in [
        first.clone(),
        json!({"transaction_id": "R-1", "event": "invalidation", "status": "rejected"}),
        json!({"transaction_id": "R-1", "event": "invalidation", "payout": "10.00"}),
    ] {
        let (s, b) = t.admin_post("/events", again).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")), "{b}");
        assert_eq!(b["event_id"], reversal);
    }
    deliver_all(&t, &r, 2).await;
    assert_eq!(
        accepted(&r),
        vec![
            ("payout".into(), "approved".into(), "50.00".into()),
            ("invalidation".into(), "approved".into(), "-50.00".into()),
        ],
        "one payout, one reversal"
    );
}

#[tokio::test]
async fn an_invalidation_cannot_reverse_more_than_was_paid() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    t.admin_post("/events", json!({"transaction_id": "R-2", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00"}))
        .await;
    let (s, b) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "R-2", "event": "invalidation", "payout": "-1000000000"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "payout", "{b}");
    // A partial reversal is fine.
    let (s, b) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "R-2", "event": "invalidation", "payout": "20.00"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    deliver_all(&t, &r, 2).await;
    assert_eq!(accepted(&r)[1].2, "-20.00");
}

#[tokio::test]
async fn a_pipeline_id_spelled_like_a_key_reaches_no_advertisers_transaction() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    let click = t.click(&seed, json!({})).await;
    let postback = [
        ("click_id", click.as_str()),
        ("transaction_id", "ADV-9"),
        ("payout", "30.00"),
    ];
    let (s, b) = t.postback(&postback).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    // Our pipeline names the advertiser's transaction by its internal key.
    let spelled = format!("OFFER#{}#ADV-9", seed.offer_id);
    let (s, b) = t
        .admin_post(
            "/events",
            json!({"transaction_id": spelled, "event": "invalidation"}),
        )
        .await;
    // Our own transaction of that id is unknown: the invalidation waits for
    // its payout, and the advertiser's transaction is untouched.
    assert_eq!((s, b["status"].as_str()), (200, Some("waiting")), "{b}");
    let advertisers = t
        .app
        .store
        .get_transaction(&shared::domain::Transaction::key_of(
            Some(&seed.offer_id.parse().unwrap()),
            &"ADV-9".parse().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(advertisers.invalidated_at, None);
    assert_eq!(advertisers.changes, 0);
    // The advertiser's retry is still a retry.
    let (s, b) = t.postback(&postback).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")), "{b}");
    deliver_all(&t, &r, 1).await;
    assert_eq!(accepted(&r).len(), 1, "{:?}", accepted(&r));
    assert_eq!(accepted(&r)[0].2, "30.00");
}

#[tokio::test]
async fn amounts_are_money_on_every_route() {
    let t = TestApp::start().await;
    let (seed, _r) = seed_with_receiver(&t).await;
    let click = t.click(&seed, json!({})).await;
    // As written in the body (a JSON value would print 1e3 as 1000.0).
    let bad: [(&str, &str); 6] = [
        ("a boolean", "true"),
        ("an exponent", "1e3"),
        ("a negative exponent", "5E-1"),
        ("over-precise", "12.345678"),
        ("a word", "\"NaN\""),
        ("infinite", "\"Infinity\""),
    ];
    for (what, payout) in &bad {
        // The advertiser's JSON postback.
        let body = format!(
            r#"{{"click_id": "{click}", "transaction_id": "M-{what}", "payout": {payout}}}"#
        );
        let (s, b) = t
            .send(
                t.http
                    .post(t.url("/postback"))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(s, 400, "postback with {what} payout: {b}");
        assert_eq!(b["error"]["field"], "payout", "{b}");
        // Our pipelines.
        let body = format!(
            r#"{{"transaction_id": "M-{what}", "event": "payout", "partner_id": "{}", "payout": {payout}}}"#,
            seed.partner_id
        );
        let (s, b) = t
            .send(
                t.http
                    .post(t.url("/events"))
                    .bearer_auth(integration_tests::ADMIN_KEY)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(s, 400, "event with {what} payout: {b}");
        assert_eq!(b["error"]["field"], "payout", "{b}");
    }
    // A JSON number with a fraction is a float to most JSON libraries:
    // refused, naming the field; a whole number is taken as written.
    let body =
        format!(r#"{{"click_id": "{click}", "transaction_id": "M-float", "payout": 12.50}}"#);
    let (s, b) = t
        .send(
            t.http
                .post(t.url("/postback"))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("payout")),
        "{b}"
    );
    let body = format!(r#"{{"click_id": "{click}", "transaction_id": "M-ok", "payout": 12}}"#);
    let (s, b) = t
        .send(
            t.http
                .post(t.url("/postback"))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let event = t
        .app
        .store
        .get_event(&integration_tests::typed(
            b["conversion_id"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.payout.to_string(), "12");
}

/// A delivery its event owes (created by its claim): the dead worker's
/// claim is the lease on the event, and nothing of the delivery is stored.
#[tokio::test]
async fn a_send_whose_worker_died_before_recording_is_on_record() {
    died_before_recording(false).await;
}

/// A delivery stored with its event (an event over one write unit).
#[tokio::test]
async fn a_send_whose_worker_died_before_recording_a_stored_delivery_is_on_record() {
    died_before_recording(true).await;
}

async fn died_before_recording(large: bool) {
    use shared::lifecycle::{AttemptError, Delivery, DeliveryStatus};
    use shared::store::{Claim, OwedClaim};
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "e", "url": r.url("/pb")})),
        )
        .await;
    let click = t.click(&seed, json!({})).await;
    let big = "x".repeat(900);
    let mut pairs = vec![("click_id", click.as_str()), ("transaction_id", "L-1")];
    if large {
        pairs.push(("sub9", big.as_str()));
    }
    let (s, b) = t.postback(&pairs).await;
    assert_eq!(s, 200, "{b}");
    let event = t
        .app
        .store
        .get_event(&integration_tests::typed(
            b["conversion_id"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let id = event.delivery_ids[0].clone();
    assert_eq!(event.owed.contains_key(&id), !large, "owed unless large");
    // A worker claims it, sends it, and dies before recording (its lease is
    // short here only so that the test need not wait out a real one).
    let (now, lease) = (chrono::Utc::now(), Duration::from_millis(400));
    let d = if large {
        let Claim::Claimed(d) = t
            .app
            .store
            .claim_delivery(&id, now, lease, None)
            .await
            .unwrap()
        else {
            panic!("the first claim succeeds")
        };
        *d
    } else {
        let OwedClaim::Claimed(e, owed) = t
            .app
            .store
            .claim_owed(&event.id, &id, now, lease)
            .await
            .unwrap()
        else {
            panic!("the first claim succeeds")
        };
        Delivery::from_owed(id.clone(), &owed, *e)
    };
    let endpoint = t
        .app
        .store
        .get_endpoint(
            &integration_tests::typed(&seed.partner_id),
            &integration_tests::typed(seed.endpoint_id.as_deref().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
    let request =
        shared::render::prepare(&endpoint, &d.event, &d.id, chrono::Utc::now().timestamp());
    assert!(t
        .app
        .sender
        .send(&request, Duration::from_secs(2))
        .await
        .is_success());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The queue hands the message to another worker.
    let store = t.app.store.clone();
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .get_delivery(&id)
                .await
                .unwrap()
                .is_some_and(|d| d.status == DeliveryStatus::Delivered)
        }
    })
    .await;
    let d = t.app.store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts.len(), 2, "{:#?}", d.attempts);
    assert_eq!(d.attempts[0].error, Some(AttemptError::Unknown));
    assert_eq!(d.attempts[1].code, Some(200));
    let keys: Vec<_> = r
        .requests()
        .iter()
        .map(|c| c.header("idempotency-key").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        keys,
        vec![id.clone(), id],
        "sent twice, with one idempotency key"
    );
}

/// What a scripted receiver accepted (answered 2xx), as (event, status,
/// payout) in arrival order; `script[i]` is the status of request `i` (the
/// last repeats).
fn accepted_with(r: &Receiver, script: &[u16]) -> Vec<(String, String, String)> {
    accepted(r)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            let code = script.get(*i).or(script.last()).copied().unwrap_or(200);
            (200..300).contains(&code)
        })
        .map(|(_, a)| a)
        .collect()
}

async fn scripted(t: &TestApp, script: &[u16]) -> (Seed, Receiver) {
    use integration_tests::receiver::Reply;
    let r = Receiver::start(script.iter().map(|c| Reply::Status(*c)).collect()).await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "all", "invalidations": true, "retry_schedule": [0, 2, 2],
                "url": r.url("/pb?tx={transaction_id}&event={event}&status={status}&payout={payout}&seq={sequence}")})),
        )
        .await;
    (seed, r)
}

#[tokio::test]
async fn a_retried_approval_never_lands_after_the_later_rejection() {
    let t = TestApp::start().await;
    // pending: 200; approved: 500, retried 2 s later; rejected meanwhile.
    let script = [200, 500, 200];
    let (seed, r) = scripted(&t, &script).await;
    let change = |status: &str| json!({"transaction_id": "O-1", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00", "status": status});
    t.admin_post("/events", change("pending")).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    t.admin_post("/events", change("approved")).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 2
    })
    .await;
    assert_eq!(r.count(), 2, "the approval's first attempt failed");
    let (s, b) = t.admin_post("/events", change("rejected")).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    deliver_all(&t, &r, 4).await;
    let got = accepted_with(&r, &script);
    let statuses: Vec<&str> = got.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["pending", "approved", "rejected"], "{got:?}");
    let tx = t.app.store.get_transaction("O-1").await.unwrap().unwrap();
    assert_eq!(tx.status, shared::domain::Status::Rejected);
    // Each carries its place in the transaction.
    let seqs: Vec<String> = r
        .requests()
        .iter()
        .filter_map(|c| {
            c.query()
                .into_iter()
                .find(|(k, _)| k == "seq")
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(seqs, ["1", "2", "2", "3"]);
}

#[tokio::test]
async fn a_retried_payout_never_lands_after_its_invalidation() {
    let t = TestApp::start().await;
    let script = [500, 200];
    let (seed, r) = scripted(&t, &script).await;
    t.admin_post("/events", json!({"transaction_id": "O-2", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00"}))
        .await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    let (s, b) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "O-2", "event": "invalidation"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    deliver_all(&t, &r, 3).await;
    assert_eq!(
        accepted_with(&r, &script),
        vec![
            ("payout".into(), "approved".into(), "50.00".into()),
            ("invalidation".into(), "approved".into(), "-50.00".into()),
        ],
        "the partner ends on the reversal"
    );
}

#[tokio::test]
async fn latest_only_supersedes_an_undelivered_earlier_change() {
    let t = TestApp::start().await;
    let script = [500, 200];
    let (seed, r) = scripted(&t, &script).await;
    let eid = seed.endpoint_id.clone().unwrap();
    let (s, b) = t
        .send(
            t.http
                .patch(t.url(&format!("/partners/{}/endpoints/{eid}", seed.partner_id)))
                .bearer_auth(integration_tests::ADMIN_KEY)
                .json(&json!({"ordering": "latest_only"})),
        )
        .await;
    assert_eq!(
        (s, b["ordering"].as_str()),
        (200, Some("latest_only")),
        "{b}"
    );
    let change = |status: &str| json!({"transaction_id": "O-3", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00", "status": status});
    let (_, first) = t.admin_post("/events", change("pending")).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    t.admin_post("/events", change("approved")).await;
    deliver_all(&t, &r, 2).await;
    let got = accepted_with(&r, &script);
    assert_eq!(got.len(), 1, "only the latest: {got:?}");
    assert_eq!(got[0].1, "approved");
    // The earlier one says why it ended.
    let event = t
        .app
        .store
        .get_event(&integration_tests::typed(
            first["event_id"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let d = t
        .app
        .store
        .get_delivery(&event.delivery_ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, shared::lifecycle::DeliveryStatus::Cancelled);
    assert!(
        d.reason.as_deref().unwrap_or("").starts_with("superseded"),
        "{:?}",
        d.reason
    );
}

#[tokio::test]
async fn an_invalidation_that_arrives_before_its_payout_waits_for_it() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    let events = t.queue_url("EventsQueue");
    let send = |body: Value| {
        let (app, events) = (t.app.clone(), events.clone());
        async move {
            app.queue
                .send_all(&events, &[body.to_string()])
                .await
                .unwrap()
        }
    };
    send(json!({"transaction_id": "E-1", "event": "invalidation", "occurred_at": "2026-11-02T00:00:00Z"})).await;
    t.pump_for("EventsQueue", Duration::from_millis(1500)).await;
    assert_eq!(t.queue_depth("EventsDLQ").await, 0, "not dead-lettered");
    send(json!({"transaction_id": "E-1", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00", "occurred_at": "2026-11-01T00:00:00Z"})).await;
    t.pump_for("EventsQueue", Duration::from_millis(1500)).await;
    deliver_all(&t, &r, 2).await;
    assert_eq!(
        accepted(&r),
        vec![
            ("payout".into(), "approved".into(), "50.00".into()),
            ("invalidation".into(), "approved".into(), "-50.00".into()),
        ]
    );
}

/// A deterministic shuffle (xorshift), so a failure can be replayed by seed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[tokio::test]
async fn shuffled_changes_over_the_events_queue_end_on_the_latest_state() {
    use integration_tests::faults::{Answer, FaultReceiver};
    let t = TestApp::start().await;
    // Every third request fails: retries interleave with later changes. Ten
    // attempts: with six, one delivery in about 700 met six failures in a
    // row and failed for good, and when that was a transaction's last change
    // the partner rightly never received it (a run of 2026-11-27 did).
    let r = FaultReceiver::start(|n| if n % 3 == 1 { Answer::Fail } else { Answer::Ok }).await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "all", "invalidations": true, "retry_schedule": [0, 1, 1, 1, 1, 1, 1, 1, 1, 1], "url": r.url("/pb")})),
        )
        .await;
    // 12 transactions, 4 changes each, with their times; the last is the truth.
    let mut messages = Vec::new();
    let mut truth = std::collections::BTreeMap::new();
    for n in 0..12 {
        let tx = format!("S-{n}");
        let last = if n % 2 == 0 {
            ("payout", "approved")
        } else {
            ("invalidation", "approved")
        };
        let changes = [
            ("payout", "pending"),
            ("payout", "approved"),
            ("payout", "rejected"),
            last,
        ];
        for (i, (event, status)) in changes.iter().enumerate() {
            messages.push(
                json!({"transaction_id": tx, "event": event, "status": status,
                "partner_id": seed.partner_id, "payout": "50.00",
                "occurred_at": format!("2026-11-01T00:00:0{i}Z")})
                .to_string(),
            );
        }
        truth.insert(tx, last);
    }
    let shuffle_seed = 0x9E37_79B9_7F4A_7C15_u64;
    println!("shuffle seed {shuffle_seed:#x}");
    shuffle(&mut messages, shuffle_seed);
    let events = t.queue_url("EventsQueue");
    t.app.queue.send_all(&events, &messages).await.unwrap();
    assert!(
        t.pump_until("EventsQueue", Duration::from_secs(60), || async {
            integration_tests::depth_of(&t.app, &events).await == 0
        })
        .await,
        "every message of the events queue recorded"
    );
    assert_eq!(t.queue_depth("EventsDLQ").await, 0);
    // Deliver until nothing is pending.
    let store = t.app.store.clone();
    let txs: Vec<String> = truth.keys().cloned().collect();
    let settled = t
        .pump_until("DeliveryQueue", Duration::from_secs(60), || {
            let (store, txs) = (store.clone(), txs.clone());
            async move {
                for tx in &txs {
                    let Some(t) = store.get_transaction(tx).await.unwrap() else {
                        return false;
                    };
                    for id in t.last_delivery.values() {
                        // Not stored yet: owed by its event, not attempted.
                        let Some(d) = store.get_delivery(id).await.unwrap() else {
                            return false;
                        };
                        if d.status == shared::lifecycle::DeliveryStatus::Pending {
                            return false;
                        }
                    }
                }
                true
            }
        })
        .await;
    assert!(settled, "every delivery ended");
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    // What the partner accepted, per transaction, in order.
    let mut accepted: std::collections::BTreeMap<String, Vec<shared::domain::Event>> =
        Default::default();
    for s in r.seen() {
        if !matches!(s.answer, Answer::Ok) {
            continue;
        }
        let d = t
            .app
            .store
            .get_delivery(&integration_tests::typed(&s.idempotency_key))
            .await
            .unwrap()
            .unwrap();
        let tx = d.event.transaction_id.clone().unwrap();
        accepted.entry(tx.to_string()).or_default().push(d.event);
    }
    let mut wrong = Vec::new();
    for (tx, (event, status)) in &truth {
        let stored = t.app.store.get_transaction(tx).await.unwrap().unwrap();
        let current = t
            .app
            .store
            .get_event(&stored.last_event_id)
            .await
            .unwrap()
            .unwrap();
        let got = accepted.get(tx).cloned().unwrap_or_default();
        let times: Vec<_> = got.iter().map(|e| e.occurred_at).collect();
        let in_order = times.windows(2).all(|w| w[0] < w[1]);
        let last = got.last().map(|e| (e.event.clone(), e.status.as_str()));
        if (current.event.as_str(), current.status.as_str()) != (*event, *status)
            || !in_order
            || last != Some((event.to_string(), status))
        {
            let mut last_deliveries = Vec::new();
            for id in stored.last_delivery.values() {
                if let Some(d) = t.app.store.get_delivery(id).await.unwrap() {
                    last_deliveries.push(format!(
                        "{} {:?} after {} attempts",
                        d.id,
                        d.status,
                        d.attempts.len()
                    ));
                }
            }
            wrong.push(format!(
                "{tx}: stored {} {} (its last delivery: {last_deliveries:?}), partner accepted {:?}",
                current.event,
                current.status.as_str(),
                got.iter()
                    .map(|e| format!(
                        "{} {} @{}",
                        e.event,
                        e.status.as_str(),
                        e.occurred_at.format("%S")
                    ))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 12 transactions ended wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn a_payout_above_the_offers_maximum_is_refused() {
    let t = TestApp::start().await;
    let (seed, _r) = seed_with_receiver(&t).await;
    let (_, offer) = t.admin_get(&format!("/offers/{}", seed.offer_id)).await;
    assert_eq!(
        offer["max_payout"], "10000",
        "the documented default: {offer}"
    );
    let click = t.click(&seed, json!({})).await;
    let (s, b) = t
        .postback(&[("click_id", click.as_str()), ("payout", "10000.01")])
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("payout")),
        "{b}"
    );
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "MX-1", "event": "payout", "partner_id": seed.partner_id, "payout": "20000"}))
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("payout")),
        "{b}"
    );
    // An offer that really pays more says so.
    let mut body = offer_body();
    body["max_payout"] = json!("50000");
    let (s, big) = t.admin_post("/offers", body).await;
    assert_eq!(s, 201, "{big}");
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "MX-2", "event": "payout", "partner_id": seed.partner_id, "offer_id": big["id"], "payout": "20000"}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    // A default payout above the maximum is refused when the offer is saved.
    let mut body = offer_body();
    body["default_payout"] = json!("20000");
    let (s, b) = t.admin_post("/offers", body).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("default_payout")),
        "{b}"
    );
}

#[tokio::test]
async fn an_invalidation_that_came_first_reverses_the_payout_that_follows_it() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    // Neither names a time: the invalidation arrived first, so its arrival
    // time is older than the payout's, and it must still reverse it.
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "EI-1", "event": "invalidation", "partner_id": seed.partner_id}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("waiting")), "{b}");
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "EI-1", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00"}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    // The transaction takes later changes (it is not stuck on the waiting one).
    let (s, b) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "EI-1", "event": "payout", "status": "approved"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    deliver_all(&t, &r, 2).await;
    let got = accepted(&r);
    assert_eq!(
        got[..2],
        [
            ("payout".into(), "approved".into(), "50.00".into()),
            ("invalidation".into(), "approved".into(), "-50.00".into())
        ],
        "{got:?}"
    );
    let tx = t.app.store.get_transaction("EI-1").await.unwrap().unwrap();
    assert!(tx.invalidated_at.is_some(), "{tx:?}");
    assert!(tx.waiting_invalidation.is_none(), "{tx:?}");
}

#[tokio::test]
async fn an_invalidation_its_payout_refuses_never_holds_the_transaction() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    // It waits for a payout it then turns out to exceed.
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "EI-2", "event": "invalidation", "partner_id": seed.partner_id, "payout": "80.00"}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("waiting")), "{b}");
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "EI-2", "event": "payout", "partner_id": seed.partner_id, "payout": "50.00"}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    let (s, b) = t
        .admin_post(
            "/events",
            json!({"transaction_id": "EI-2", "event": "payout", "status": "rejected"}),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
    deliver_all(&t, &r, 2).await;
    let got = accepted(&r);
    assert_eq!(
        got,
        [
            ("payout".into(), "approved".into(), "50.00".into()),
            ("payout".into(), "rejected".into(), "50.00".into())
        ],
        "no reversal of more than was paid: {got:?}"
    );
    let tx = t.app.store.get_transaction("EI-2").await.unwrap().unwrap();
    assert!(tx.waiting_invalidation.is_none(), "{tx:?}");
}

/// A transaction's later change waits for the delivery of its earlier
/// change to the same endpoint even while that one is not stored (owed by
/// its event, not claimed yet): a worker that meets the later change's
/// message first must not send it, or the partner would end on the earlier
/// state. Here the later message is handled first, on purpose.
#[tokio::test]
async fn a_later_change_waits_for_an_earlier_delivery_its_event_still_owes() {
    let t = TestApp::start().await;
    let (seed, r) = seed_with_receiver(&t).await;
    let mut ids = Vec::new();
    for status in ["pending", "approved"] {
        let (s, b) = t
            .admin_post("/events", json!({"transaction_id": "O-1", "event": "payout", "status": status, "partner_id": seed.partner_id, "payout": "5.00"}))
            .await;
        assert_eq!((s, b["status"].as_str()), (200, Some("recorded")), "{b}");
        ids.push(b["event_id"].as_str().unwrap().to_string());
    }
    let (first, second) = (t.event(&ids[0]).await, t.event(&ids[1]).await);
    let owed = second
        .owed
        .values()
        .next()
        .expect("the later change owes its delivery");
    assert_eq!(owed.after.as_ref(), first.delivery_ids.first());
    assert_eq!(owed.after_event.as_ref(), Some(&first.id));
    assert!(
        first.owed.contains_key(&first.delivery_ids[0]),
        "not stored"
    );

    let later = integration_tests::sqs_batch(t.messages_of(&ids[1]).await);
    let earlier = integration_tests::sqs_batch(t.messages_of(&ids[0]).await);
    deliver::handle(&t.worker, later.clone()).await;
    assert_eq!(r.count(), 0, "the later change waits for the earlier one");
    let held = t.deliveries_of(&ids[1]).await.remove(0);
    let reason = held.reason.clone().unwrap_or_default();
    assert!(reason.contains("has not been attempted yet"), "{reason}");

    deliver::handle(&t.worker, earlier).await;
    assert_eq!(r.count(), 1);
    // After the hold (a few seconds), the later change goes.
    let mut sent = 1;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        deliver::handle(&t.worker, later.clone()).await;
        sent = r.count();
        if sent == 2 {
            break;
        }
    }
    assert_eq!(sent, 2);
    let statuses: Vec<String> = r
        .requests()
        .iter()
        .map(|c| {
            c.uri
                .split("status=")
                .nth(1)
                .unwrap_or_default()
                .split('&')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(statuses, vec!["pending", "approved"]);
}

/// Different first changes of one transaction at the same moment, from three
/// processes (a pending, an approved and a rejected postback racing): all
/// land on the one item of the transaction's first event, whose conditional
/// write decides which is first, and the others are decided again as its
/// changes. One first event, each change recorded once with its own
/// sequence, the transaction held by its first event's item (no item of its
/// own), and the partner ends on the transaction's state.
#[tokio::test]
async fn different_first_changes_racing_record_one_first_event_and_the_rest_as_its_changes() {
    use shared::domain::Transaction;
    let t = TestApp::start().await;
    let mut apps = vec![];
    for _ in 0..2 {
        apps.push(TestApp::on_stack(t.stack.clone(), Default::default(), None).await);
    }
    let (seed, r) = seed_with_receiver(&t).await;
    let click = t.click(&seed, json!({})).await;
    let processes = [&t, &apps[0], &apps[1]];
    let rounds = 4;
    for round in 0..rounds {
        let tx = format!("FR-{round}");
        let answers = futures::future::join_all(
            ["pending", "approved", "rejected"]
                .iter()
                .zip(processes)
                .map(|(status, app)| {
                    let pairs = [
                        ("click_id", click.as_str()),
                        ("event", "sale"),
                        ("status", status),
                        ("payout", "5.00"),
                        ("transaction_id", tx.as_str()),
                    ];
                    async move { app.postback(&pairs).await }
                }),
        )
        .await;
        let mut ids = std::collections::BTreeSet::new();
        for (s, body) in &answers {
            assert_eq!(*s, 200, "{body}");
            ids.insert(body["conversion_id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids.len(), 3, "three changes: {answers:?}");
        let key = Transaction::key_of(
            Some(&integration_tests::typed(&seed.offer_id)),
            &integration_tests::typed(&tx),
        );
        let first = Transaction::first_event_id(&key);
        assert!(ids.contains(first.as_str()), "{ids:?} holds {first}");
        let mut sequences = Vec::new();
        for id in &ids {
            sequences.push(t.event(id).await.sequence);
        }
        sequences.sort();
        assert_eq!(sequences, [1, 2, 3]);
        let state = t.app.store.get_transaction(&key).await.unwrap().unwrap();
        assert_eq!(state.first_event.as_ref(), Some(&first));
        assert_eq!((state.changes, state.version), (2, 3));
        assert!(t.raw_item(&format!("TXN#{key}"), "TXN").await.is_none());
        let last = t.event(state.last_event_id.as_str()).await;
        assert_eq!((last.sequence, last.status), (3, state.status));
    }
    deliver_all(&t, &r, 3 * rounds).await;
    let accepted = accepted(&r);
    assert_eq!(accepted.len(), 3 * rounds, "{accepted:?}");
    // Each transaction's last postback is its state (in order per endpoint).
    for round in 0..rounds {
        let tx = format!("FR-{round}");
        let key = Transaction::key_of(
            Some(&integration_tests::typed(&seed.offer_id)),
            &integration_tests::typed(&tx),
        );
        let state = t.app.store.get_transaction(&key).await.unwrap().unwrap();
        let last_sent = r
            .requests()
            .iter()
            .rev()
            .find(|c| c.query().iter().any(|(k, v)| k == "tx" && *v == tx))
            .map(|c| {
                c.query()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>()
            })
            .expect("sent");
        assert_eq!(last_sent["status"], state.status.as_str(), "{tx}");
    }
}

/// A table an earlier version created holds transactions in items of their
/// own (`TXN#`). `postback-local --move-transactions` moves each into its
/// first event's item while their changes keep arriving, then marks the
/// table; a process started after reads each transaction with one key,
/// takes the next postback of each as its change (sequence 2 or 3, never a
/// new conversion), and the partner ends on every transaction's state.
#[tokio::test]
async fn transactions_in_items_of_their_own_are_moved_and_then_read_with_one_key() {
    use integration_tests::Options;
    use shared::domain::Transaction;
    use shared::store::layout::TransactionHomes;
    let (long, seed, r, click) = upgrading().await;
    let now = TestApp::on_stack(long.stack.clone(), Options::default(), None).await;
    let txs: Vec<String> = (0..6).map(|i| format!("MV-{i}")).collect();
    for tx in &txs {
        post(&long, &click, tx, "pending").await;
        assert!(
            long.raw_item(&format!("TXN#{}", key_of(&seed, tx)), "TXN")
                .await
                .is_some(),
            "begun in an item of its own"
        );
    }
    // The move, while half of them are approved by another process.
    let (report, _) = futures::future::join(
        now.app.store.move_transactions(Duration::ZERO),
        futures::future::join_all(txs[..3].iter().map(|tx| post(&now, &click, tx, "approved"))),
    )
    .await;
    let report = report.expect("moved");
    assert_eq!(report.moved + report.dropped, 6, "{report:?}");
    for tx in &txs {
        let key = key_of(&seed, tx);
        assert!(long.raw_item(&format!("TXN#{key}"), "TXN").await.is_none());
        let first = Transaction::first_event_id(&key);
        let holder = long.raw_item(&format!("EVENT#{first}"), "EVENT").await;
        assert!(holder.is_some_and(|h| h.contains_key("txn")), "moved: {tx}");
    }
    // A process started now reads the marker once, and one key each time.
    let after = TestApp::on_stack(long.stack.clone(), Options::default(), None).await;
    assert_eq!(
        after.app.store.transaction_homes().await.unwrap(),
        TransactionHomes::Moved
    );
    for (i, tx) in txs.iter().enumerate() {
        let (status, sequence) = if i < 3 {
            ("rejected", 3)
        } else {
            ("approved", 2)
        };
        let id = post(&after, &click, tx, status).await;
        assert_eq!(after.event(&id).await.sequence, sequence, "{tx}");
        let state = after
            .app
            .store
            .get_transaction(&key_of(&seed, tx))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (state.status.as_str(), state.changes),
            (status, sequence - 1)
        );
    }
    deliver_all(&after, &r, 6 + 3 + 6).await;
    for (i, tx) in txs.iter().enumerate() {
        let last = r
            .requests()
            .iter()
            .rev()
            .find(|c| c.query().iter().any(|(k, v)| k == "tx" && v == tx))
            .map(|c| {
                c.query()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>()
            })
            .expect("sent");
        let want = if i < 3 { "rejected" } else { "approved" };
        assert_eq!(last.get("status").map(String::as_str), Some(want), "{tx}");
    }
}

/// A sale postback of `status` for `tx`: its conversion id.
async fn post(app: &TestApp, click: &str, tx: &str, status: &str) -> String {
    let (s, body) = app
        .postback(&[
            ("click_id", click),
            ("event", "sale"),
            ("status", status),
            ("payout", "5.00"),
            ("transaction_id", tx),
        ])
        .await;
    assert_eq!(s, 200, "{body}");
    body["conversion_id"].as_str().unwrap().to_string()
}

/// `postback-local --move-transactions` as an operator runs it, on a table
/// an earlier version created: one transaction in an item of its own only
/// (moved), and one in both places, as two processes of an upgrade's canary
/// could leave it (the item of its own dropped: reads already preferred its
/// first event's). It prints what it did, exits 0, and the table is marked;
/// run again, it moves nothing.
#[tokio::test]
async fn the_move_command_moves_or_drops_each_transaction_and_marks_the_table() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use integration_tests::Options;
    use shared::domain::Transaction;
    use shared::store::layout::TransactionHomes;
    let (long, seed, _r, click) = upgrading().await;
    post(&long, &click, "CMD-1", "pending").await;
    post(&long, &click, "CMD-2", "pending").await;
    // CMD-2 in both places: its first event's item holds it too (approved
    // there, so which one stands is visible).
    let both = key_of(&seed, "CMD-2");
    let own = long
        .raw_item(&format!("TXN#{both}"), "TXN")
        .await
        .expect("in an item of its own");
    let mut held: std::collections::HashMap<String, AttributeValue> = own
        .into_iter()
        .filter(|(k, _)| k != "pk" && k != "sk")
        .collect();
    held.insert("status".into(), AttributeValue::S("approved".into()));
    let first = Transaction::first_event_id(&both);
    long.app
        .store
        .client()
        .put_item()
        .table_name(long.app.store.table())
        .item("pk", AttributeValue::S(format!("EVENT#{first}")))
        .item("sk", AttributeValue::S("EVENT".into()))
        .item("txn", AttributeValue::M(held))
        .send()
        .await
        .unwrap();

    let run = || {
        std::process::Command::new(integration_tests::runner::binary("postback-local"))
            .arg("--move-transactions")
            .env("TABLE_NAME", long.app.store.table())
            .env("MOVE_SETTLE_SECONDS", "0")
            .env("NO_COLOR", "1")
            .output()
            .expect("postback-local runs")
    };
    let out = run();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 transactions moved") && said.contains("1 dropped"),
        "{said}"
    );
    for tx in ["CMD-1", "CMD-2"] {
        let key = key_of(&seed, tx);
        assert!(long.raw_item(&format!("TXN#{key}"), "TXN").await.is_none());
    }
    let after = TestApp::on_stack(long.stack.clone(), Options::default(), None).await;
    assert_eq!(
        after.app.store.transaction_homes().await.unwrap(),
        TransactionHomes::Moved
    );
    let kept = after
        .app
        .store
        .get_transaction(&both)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.status.as_str(),
        "approved",
        "the first event's copy stands"
    );
    let moved = after
        .app
        .store
        .get_transaction(&key_of(&seed, "CMD-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.status.as_str(), "pending");
    // Again: nothing left to move.
    let again = run();
    let said = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(
        again.status.success() && said.contains("0 transactions moved"),
        "{said}"
    );
}

/// A change decided on a transaction stored before versions existed (its
/// item of its own has no `version`: read at 0), written after the move
/// took that item into its first event's: the write fails its condition
/// (decided again from the moved item) instead of writing the item of its
/// own back, where no read would look again.
#[tokio::test]
async fn a_change_read_before_the_move_of_a_versionless_transaction_is_decided_again() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shared::ids::EventId;
    use shared::store::{Recorded, Recording};
    let (long, seed, _r, click) = upgrading().await;
    let first_id = post(&long, &click, "V0", "pending").await;
    let key = key_of(&seed, "V0");
    // As written before versions existed.
    long.app
        .store
        .client()
        .update_item()
        .table_name(long.app.store.table())
        .key("pk", AttributeValue::S(format!("TXN#{key}")))
        .key("sk", AttributeValue::S("TXN".into()))
        .update_expression("REMOVE version")
        .send()
        .await
        .unwrap();
    // Read by a change (at version 0) ...
    let read = long.app.store.get_transaction(&key).await.unwrap().unwrap();
    assert_eq!((read.version, read.first_event.is_none()), (0, true));
    // ... the move happens ...
    long.app
        .store
        .move_transactions(Duration::ZERO)
        .await
        .expect("moved");
    // ... then the change is written on what it read.
    let mut event = long.event(&first_id).await;
    event.id = EventId::derive(&["test", "V0", "approved"]);
    event.sequence = 2;
    event.owed.clear();
    event.delivery_ids.clear();
    let mut changed = read.clone();
    changed.version = 1;
    changed.changes = 1;
    changed.last_event_id = event.id.clone();
    let recorded = long
        .app
        .store
        .record_event(&Recording {
            event: &event,
            deliveries: &[],
            transaction: Some((&changed, Some(0))),
            window: None,
            queued: true,
        })
        .await
        .unwrap();
    assert_eq!(recorded, Recorded::Raced);
    assert!(
        long.raw_item(&format!("TXN#{key}"), "TXN").await.is_none(),
        "the moved transaction's own item is not written back"
    );
    assert!(long.app.store.get_event(&event.id).await.unwrap().is_none());
}

/// The first deploy of an upgrade: a process writing the long layout
/// (`COMPACT_ITEMS=false`) on a table an earlier version created, a seed
/// whose endpoint receives every event, and a click of its partner.
async fn upgrading() -> (TestApp, Seed, Receiver, String) {
    let long = TestApp::start_with(integration_tests::Options {
        earlier_table: true,
        env: vec![("COMPACT_ITEMS", "false".into())],
        ..Default::default()
    })
    .await;
    let (seed, r) = seed_with_receiver(&long).await;
    let click = long.click(&seed, json!({})).await;
    (long, seed, r, click)
}

/// The store key of the seed's offer's transaction `tx`.
fn key_of(seed: &Seed, tx: &str) -> String {
    shared::domain::Transaction::key_of(
        Some(&integration_tests::typed(&seed.offer_id)),
        &integration_tests::typed(tx),
    )
}
