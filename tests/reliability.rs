//! Trust with money (issue 9): every guarantee holds when the queue, the
//! store, the partner or the process fails at the worst moment, and when the
//! caller never retries. Each test reproduces one observed failure; each
//! prints its tally (sent / stored / delivered / stranded / doubled).

use chrono::Utc;
use integration_tests::faults::{host_port, Answer, FaultReceiver, Mode, Proxy};
use integration_tests::receiver::{Receiver, Reply};
use integration_tests::{offer_body, Options, Seed, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use shared::lifecycle::{Delivery, DeliveryStatus};
use shared::outbox;
use std::collections::BTreeMap;
use std::time::Duration;

async fn endpoint(t: &TestApp, seed: &Seed, body: Value) -> String {
    let (s, e) = t
        .admin_post(&format!("/partners/{}/endpoints", seed.partner_id), body)
        .await;
    assert_eq!(s, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

async fn deliveries_of(t: &TestApp, event_ids: &[impl AsRef<str>]) -> Vec<Delivery> {
    let mut all = Vec::new();
    for id in event_ids {
        let e = t
            .app
            .store
            .get_event(&integration_tests::typed(id.as_ref()))
            .await
            .unwrap()
            .expect("stored");
        all.extend(t.app.store.deliveries_of_event(&e).await.unwrap());
    }
    all
}

/// Runs the reconciler as the schedule would, `ahead` past now (as if that
/// much time had gone by), then the worker until every delivery of `events`
/// is finished or `limit` passes.
async fn reconcile_and_pump(
    t: &TestApp,
    events: &[impl AsRef<str>],
    ahead: chrono::Duration,
    limit: Duration,
) {
    let done = outbox::reconcile(&t.app, Utc::now() + ahead).await.unwrap();
    println!("reconciler: {done:?}");
    let store = t.app.store.clone();
    let ids: Vec<String> = events.iter().map(|e| e.as_ref().to_string()).collect();
    let app = t.app.clone();
    t.pump_until("DeliveryQueue", limit, || {
        let (store, ids, app) = (store.clone(), ids.clone(), app.clone());
        async move {
            let mut ds = Vec::new();
            for id in &ids {
                let e = store
                    .get_event(&integration_tests::typed(id))
                    .await
                    .unwrap()
                    .unwrap();
                ds.extend(app.store.deliveries_of_event(&e).await.unwrap());
            }
            ds.iter().all(|d| d.status != DeliveryStatus::Pending)
        }
    })
    .await;
}

/// Records a 1.00 payout event for the seed's partner; its id.
async fn payout(t: &TestApp, seed: &Seed, tx: &str) -> String {
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": tx, "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
        .await;
    assert_eq!(s, 200, "{b}");
    b["event_id"].as_str().unwrap().to_string()
}

fn tally(name: &str, sent: usize, stored: usize, ds: &[Delivery], r: &Receiver) {
    let keys: Vec<String> = r
        .requests()
        .iter()
        .map(|c| c.header("idempotency-key").unwrap_or("").to_string())
        .collect();
    let delivered = ds
        .iter()
        .filter(|d| d.status == DeliveryStatus::Delivered)
        .count();
    let stranded = ds
        .iter()
        .filter(|d| d.status == DeliveryStatus::Pending)
        .count();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &keys {
        *per_key.entry(k.as_str()).or_default() += 1;
    }
    let doubled = per_key.values().filter(|&&n| n > 1).count();
    println!("{name}: sent {sent} / stored {stored} / delivered {delivered} / stranded {stranded} / doubled {doubled}");
}

#[tokio::test]
async fn conversions_stored_while_sqs_refuses_are_answered_200_and_delivered_though_no_advertiser_retries(
) {
    let direct = TestApp::start().await;
    let sqs = Proxy::start(host_port(&std::env::var("AWS_ENDPOINT_URL_SQS").unwrap())).await;
    let options = Options {
        aws_timeouts_ms: Some((500, 1_500)),
        endpoints: Some((
            std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap(),
            sqs.url.clone(),
        )),
        ..Default::default()
    };
    let api = TestApp::on_stack(direct.stack.clone(), options, None).await;
    let r = Receiver::ok().await;
    let seed = direct
        .seed(
            offer_body(),
            Some(json!({"name": "pb", "url": r.url("/pb?tx={transaction_id}")})),
        )
        .await;
    let click = direct.click(&seed, json!({})).await;

    sqs.set(Mode::Refuse);
    let mut events = Vec::new();
    for i in 0..10 {
        // Each advertiser calls once and never again, whatever the answer.
        let (s, b) = api
            .postback(&[
                ("click_id", &click),
                ("event", "sale"),
                ("transaction_id", &format!("Q{i}")),
            ])
            .await;
        assert_eq!(
            s, 200,
            "a stored conversion is answered 200 whatever the queue does: {b}"
        );
        assert_eq!(b["status"], "recorded");
        events.push(b["conversion_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        direct.queue_depth("DeliveryQueue").await,
        0,
        "nothing reached the queue"
    );
    sqs.set(Mode::Pass);

    // Not yet overdue: the reconciler leaves them (they may still be in flight).
    let early = outbox::reconcile(&direct.app, Utc::now()).await.unwrap();
    assert_eq!(early.requeued, 0);
    reconcile_and_pump(
        &direct,
        &events,
        chrono::Duration::minutes(1),
        Duration::from_secs(20),
    )
    .await;
    let ds = deliveries_of(&direct, &events).await;
    tally("SQS refusing at ingest", 10, events.len(), &ds, &r);
    assert!(
        ds.iter().all(|d| d.status == DeliveryStatus::Delivered),
        "{ds:#?}"
    );
    assert_eq!(r.count(), 10, "each sent exactly once");
}

/// A stack with one partner whose endpoint posts to a healthy receiver.
async fn one_endpoint() -> (TestApp, Receiver, Seed) {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "pb", "url": r.url("/pb")})),
        )
        .await;
    (t, r, seed)
}

/// A 5.00 payout event of the seed's partner, recorded at `at`, before its
/// fan-out: what `record` writes, for tests that write it step by step.
fn payout_event(
    id: &str,
    tx: &str,
    seed: &Seed,
    at: chrono::DateTime<Utc>,
) -> shared::domain::Event {
    shared::domain::Event {
        id: id.parse().unwrap(),
        source: shared::domain::Source::Internal,
        event: "payout".into(),
        status: shared::domain::Status::Approved,
        transaction_id: Some(tx.parse().unwrap()),
        partner_id: seed.partner_id.parse().unwrap(),
        click_id: None,
        lead_id: None,
        offer_id: None,
        advertiser: None,
        goal: None,
        payout: rust_decimal::Decimal::new(500, 2),
        currency: "USD".into(),
        occurred_at: at,
        recorded_at: at,
        deleted_at: None,
        attributes: Default::default(),
        delivery_ids: vec![],
        owed: Default::default(),
        sequence: 1,
        superseded: false,
    }
}

/// The event and its deliveries as `record` plans them (ids derived).
async fn planned(
    t: &TestApp,
    id: &str,
    seed: &Seed,
    at: chrono::DateTime<Utc>,
) -> (shared::domain::Event, Vec<Delivery>) {
    let endpoints = t
        .app
        .store
        .list_endpoints(&integration_tests::typed(&seed.partner_id))
        .await
        .unwrap();
    let mut event = payout_event(id, &format!("T-{id}"), seed, at);
    let deliveries = shared::fanout::plan(&event, &endpoints, true, &Default::default(), at);
    event.delivery_ids = deliveries.iter().map(|d| d.id.clone()).collect();
    (event, deliveries)
}

/// Writes `event` as `record` does: with its deliveries, or (`owed`) owing
/// them (created by their claims).
async fn write(t: &TestApp, event: &shared::domain::Event, deliveries: &[Delivery], queued: bool) {
    write_as(t, event, deliveries, queued, false).await
}

async fn write_as(
    t: &TestApp,
    event: &shared::domain::Event,
    deliveries: &[Delivery],
    queued: bool,
    owed: bool,
) {
    let mut event = event.clone();
    if owed {
        event.owed = deliveries
            .iter()
            .map(|d| (d.id.clone(), d.owed()))
            .collect();
    }
    let recorded = t
        .app
        .store
        .record_event(&shared::store::Recording {
            event: &event,
            deliveries: if owed { &[] } else { deliveries },
            transaction: None,
            window: None,
            queued,
        })
        .await
        .unwrap();
    assert_eq!(recorded, shared::store::Recorded::New);
}

/// The queue first: a new event's messages are sent just before the write
/// that stores its deliveries, which then have no open-work entry. A worker
/// that meets a message ahead of that write (the write slow, or the message
/// early) must keep it until the write lands: had it dropped it, as it drops
/// a message naming no delivery, the delivery would be stored with neither a
/// message nor an entry for the reconciler, and never sent.
#[tokio::test]
async fn a_message_ahead_of_its_deliverys_write_waits_for_it_and_sends_once() {
    ahead_of_write(false).await
}

/// As above, for a delivery its event owes (created by its claim): its
/// first claim, a lease on the event, finds no event and comes back.
#[tokio::test]
async fn a_message_ahead_of_the_write_of_the_event_that_owes_it_waits_for_it_and_sends_once() {
    ahead_of_write(true).await
}

async fn ahead_of_write(owed: bool) {
    let (t, r, seed) = one_endpoint().await;
    let (event, deliveries) = planned(&t, "evt_ahead", &seed, Utc::now()).await;
    assert!(outbox::enqueue_ahead(&t.app, &deliveries, owed).await);
    // The worker meets the message (after its delay) before the write.
    t.pump_for("DeliveryQueue", Duration::from_secs(3)).await;
    assert_eq!(r.count(), 0);
    assert_eq!(t.queue_depth("DeliveryQueue").await, 1, "kept, not dropped");
    // The write lands late; nothing else queues the delivery.
    write_as(&t, &event, &deliveries, true, owed).await;
    let reconciled = outbox::reconcile(&t.app, Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(reconciled.requeued, 0, "no open-work entry: {reconciled:?}");
    t.pump_until("DeliveryQueue", Duration::from_secs(20), || async {
        r.count() >= 1
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_secs(1)).await;
    let ds = deliveries_of(&t, &[event.id.as_str()]).await;
    tally("message ahead of its write", 1, 1, &ds, &r);
    assert_eq!(ds[0].status, DeliveryStatus::Delivered);
    assert_eq!(r.count(), 1);
}

/// A message sent ahead of a write that never happened is dropped, and
/// nothing is sent: at once when its event is stored without its delivery
/// (the request lost a race and decided again), and once it is older than
/// `AHEAD_OF_WRITE` when its event was never stored (the request failed, or
/// its process died between the send and the write, and the caller never
/// retried). Neither leaves anything stored.
#[tokio::test]
async fn a_message_whose_write_never_happened_is_dropped_and_sends_nothing() {
    write_never_happened(false).await
}

/// As above, for messages that say their event owes their delivery: no
/// event, or an event that owes nothing, is no claim.
#[tokio::test]
async fn an_owed_message_whose_write_never_happened_is_dropped_and_sends_nothing() {
    write_never_happened(true).await
}

async fn write_never_happened(owed: bool) {
    let (t, r, seed) = one_endpoint().await;
    // Lost a race: the event is stored as decided again (superseded by
    // then, say), with none of these deliveries.
    let (mut event, deliveries) = planned(&t, "evt_raced", &seed, Utc::now()).await;
    assert!(outbox::enqueue_ahead(&t.app, &deliveries, owed).await);
    event.delivery_ids.clear();
    write(&t, &event, &[], true).await;
    // Died between the send and the write, long enough ago.
    let old = Utc::now() - outbox::AHEAD_OF_WRITE - chrono::Duration::seconds(1);
    let (lost, lost_deliveries) = planned(&t, "evt_lost", &seed, old).await;
    assert!(outbox::enqueue_ahead(&t.app, &lost_deliveries, owed).await);
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        t.queue_depth("DeliveryQueue").await == 0
    })
    .await;
    assert_eq!(t.queue_depth("DeliveryQueue").await, 0, "both dropped");
    assert_eq!(r.count(), 0);
    for d in deliveries.iter().chain(&lost_deliveries) {
        assert!(t.app.store.get_delivery(&d.id).await.unwrap().is_none());
    }
    assert!(t.app.store.get_event(&lost.id).await.unwrap().is_none());
}

/// The reconciler sends back to the delivery queue what SQS dead-lettered
/// on its receive limit when the delivery is still pending (queued first, it
/// has no open-work entry), and leaves the operator what is not: a dead
/// letter with the worker's reason, and one whose delivery went out since.
#[tokio::test]
async fn the_reconciler_requeues_only_dead_letters_of_pending_deliveries_without_a_reason() {
    let (t, r, seed) = one_endpoint().await;
    let (pending, pending_ds) = planned(&t, "evt_dlq_pending", &seed, Utc::now()).await;
    write(&t, &pending, &pending_ds, true).await;
    let delivered = vec![payout(&t, &seed, "DLQ-D").await];
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        r.count() >= 1
    })
    .await;
    let delivered_d = deliveries_of(&t, &delivered).await.remove(0);
    assert_eq!(delivered_d.status, DeliveryStatus::Delivered);
    let dlq = t.queue_url("DeliveryDLQ");
    let sqs = t.app.queue.client();
    for d in [&pending_ds[0], &delivered_d] {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(shared::fanout::message(d))
            .send()
            .await
            .unwrap();
    }
    t.app
        .queue
        .send_dead_letter(&dlq, &shared::fanout::message(&pending_ds[0]), "a reason")
        .await
        .unwrap();

    let done = outbox::reconcile(&t.app, Utc::now()).await.unwrap();
    assert_eq!(done.dead_letters_requeued, 1, "{done:?}");
    assert_eq!(
        t.queue_depth("DeliveryDLQ").await,
        2,
        "left for the operator"
    );
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        r.count() >= 2
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_secs(1)).await;
    let ds = deliveries_of(&t, &[pending.id.as_str()]).await;
    assert_eq!(ds[0].status, DeliveryStatus::Delivered);
    assert_eq!(r.count(), 2, "each delivery sent once");
}

#[tokio::test]
async fn a_conversion_stored_by_a_process_killed_before_queueing_is_delivered_by_the_reconciler() {
    let (t, r, seed) = one_endpoint().await;
    // The state a kill between the write and the send leaves: the event and
    // its deliveries committed, no message. Written through the store exactly
    // as `record` writes it, and the process "dies" before `enqueue`.
    let endpoints = t
        .app
        .store
        .list_endpoints(&integration_tests::typed(&seed.partner_id))
        .await
        .unwrap();
    let now = Utc::now();
    let mut events = Vec::new();
    for i in 0..10 {
        let mut event = payout_event(&format!("evt_killed_{i}"), &format!("K{i}"), &seed, now);
        let planned = shared::fanout::plan(&event, &endpoints, true, &Default::default(), now);
        event.delivery_ids = planned.iter().map(|d| d.id.clone()).collect();
        t.app
            .store
            .record_event(&shared::store::Recording {
                event: &event,
                deliveries: &planned,
                transaction: None,
                window: None,
                queued: false,
            })
            .await
            .unwrap();
        events.push(event.id);
    }
    assert_eq!(t.queue_depth("DeliveryQueue").await, 0);
    reconcile_and_pump(
        &t,
        &events,
        chrono::Duration::minutes(1),
        Duration::from_secs(20),
    )
    .await;
    let ds = deliveries_of(&t, &events).await;
    tally("killed between write and send", 10, 10, &ds, &r);
    assert!(ds.iter().all(|d| d.status == DeliveryStatus::Delivered));
    assert_eq!(r.count(), 10);
}

#[tokio::test]
async fn the_reconciler_never_resends_what_is_delivered_nor_what_a_worker_holds() {
    let (t, r, seed) = one_endpoint().await;
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "R1", "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let ev = vec![b["event_id"].as_str().unwrap().to_string()];
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    // Hours later, many runs: nothing open, nothing queued, nothing sent.
    for hours in [1, 5, 24] {
        let done = outbox::reconcile(&t.app, Utc::now() + chrono::Duration::hours(hours))
            .await
            .unwrap();
        assert_eq!(done, outbox::Reconciled::default());
    }
    assert_eq!(t.queue_depth("DeliveryQueue").await, 0);
    assert_eq!(
        deliveries_of(&t, &ev).await[0].status,
        DeliveryStatus::Delivered
    );
    assert_eq!(r.count(), 1);
}

#[tokio::test]
async fn a_manual_retry_during_an_sqs_outage_is_accepted_and_sent_after_it() {
    let direct = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(500), Reply::Status(200)]).await;
    let seed = direct
        .seed(
            offer_body(),
            Some(json!({"name": "pb", "url": r.url("/pb"), "retry_schedule": [0]})),
        )
        .await;
    let (_, b) = direct
        .admin_post("/events", json!({"transaction_id": "M1", "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
        .await;
    let ev = vec![b["event_id"].as_str().unwrap().to_string()];
    direct
        .pump_until("DeliveryQueue", Duration::from_secs(10), || async {
            r.count() >= 1
        })
        .await;
    let d = deliveries_of(&direct, &ev).await.remove(0);
    assert_eq!(d.status, DeliveryStatus::Failed);

    let broken = format!("{}-missing", direct.queue_url("DeliveryQueue"));
    let api = TestApp::on_stack(direct.stack.clone(), Default::default(), Some(broken)).await;
    let (s, body) = api
        .send(
            api.http
                .post(api.url(&format!("/deliveries/{}/retry", d.id)))
                .bearer_auth(ADMIN_KEY),
        )
        .await;
    assert_eq!(
        s, 202,
        "stored as a new round; the queue's failure is the reconciler's problem: {body}"
    );
    reconcile_and_pump(
        &direct,
        &ev,
        chrono::Duration::minutes(1),
        Duration::from_secs(15),
    )
    .await;
    let d = deliveries_of(&direct, &ev).await.remove(0);
    assert_eq!(d.status, DeliveryStatus::Delivered, "{d:#?}");
    assert!(d.attempts[1].manual);
}

#[tokio::test]
async fn a_delivery_whose_message_went_to_the_dlq_in_a_store_outage_is_sent_after_recovery() {
    let (t, r, seed) = one_endpoint().await;
    let ev = vec![payout(&t, &seed, "D1").await];
    // What a long DynamoDB outage leaves: every receive failed to claim, SQS
    // moved the message to the DLQ; the delivery is pending in the table,
    // and (queued first) has no open-work entry: the reconciler finds the
    // dead letter itself.
    let sqs = t.app.queue.client();
    let got = sqs
        .receive_message()
        .queue_url(t.queue_url("DeliveryQueue"))
        // Long enough for the fan-out's message, sent ahead of its write.
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let m = got.messages.unwrap().remove(0);
    sqs.send_message()
        .queue_url(t.queue_url("DeliveryDLQ"))
        .message_body(m.body.clone().unwrap())
        .send()
        .await
        .unwrap();
    sqs.delete_message()
        .queue_url(t.queue_url("DeliveryQueue"))
        .receipt_handle(m.receipt_handle.unwrap())
        .send()
        .await
        .unwrap();
    reconcile_and_pump(
        &t,
        &ev,
        chrono::Duration::minutes(1),
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        deliveries_of(&t, &ev).await[0].status,
        DeliveryStatus::Delivered
    );
    assert_eq!(r.count(), 1);
}

#[tokio::test]
async fn a_worker_with_a_stale_cache_sends_what_waited_once_the_endpoint_is_reactivated() {
    // Two processes, as in AWS: the API and a deliver worker with its own cache.
    let api = TestApp::start().await;
    let worker = TestApp::on_stack(
        api.stack.clone(),
        Options {
            cache_seconds: 300,
            ..Default::default()
        },
        None,
    )
    .await;
    let r = Receiver::ok().await;
    let seed = api.seed(offer_body(), None).await;
    let eid = endpoint(
        &api,
        &seed,
        json!({"name": "p", "url": r.url("/pb"), "active": false}),
    )
    .await;
    let mut events = Vec::new();
    for i in 0..5 {
        let (_, b) = api
            .admin_post("/events", json!({"transaction_id": format!("S{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
            .await;
        events.push(b["event_id"].as_str().unwrap().to_string());
    }
    // The worker parks them, and caches the endpoint as paused.
    worker
        .pump_for("DeliveryQueue", Duration::from_secs(2))
        .await;
    assert!(deliveries_of(&api, &events).await.iter().all(|d| d.parked));
    assert!(
        !worker
            .app
            .partner_endpoints(&integration_tests::typed(&seed.partner_id))
            .await
            .unwrap()[0]
            .active
    );

    // Re-activated through the API process; the worker's cache still says paused.
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (s, _) = api
        .send(
            api.http
                .put(api.url(&path))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"name": "p", "url": r.url("/pb"), "active": true})),
        )
        .await;
    assert_eq!(s, 200);
    worker
        .pump_until("DeliveryQueue", Duration::from_secs(15), || async {
            r.count() >= 5
        })
        .await;
    let ds = deliveries_of(&api, &events).await;
    tally("re-activation with a stale worker cache", 5, 5, &ds, &r);
    assert!(
        ds.iter().all(|d| d.status == DeliveryStatus::Delivered),
        "{ds:#?}"
    );
    assert_eq!(r.count(), 5);
}

#[tokio::test]
async fn reactivation_releases_more_than_a_page_of_waiting_deliveries_through_the_reconciler() {
    let t = TestApp::start().await;
    let r = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let eid = endpoint(
        &t,
        &seed,
        json!({"name": "p", "url": r.url("/pb"), "active": false}),
    )
    .await;
    let mut events = Vec::new();
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"transaction_id": format!("W{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
        .collect();
    let (s, b) = t.admin_post("/events", Value::Array(batch.clone())).await;
    assert_eq!(s, 200, "{b}");
    let more: Vec<Value> = (100..130)
        .map(|i| json!({"transaction_id": format!("W{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
        .collect();
    let (_, b2) = t.admin_post("/events", Value::Array(more)).await;
    for item in b["results"]
        .as_array()
        .unwrap()
        .iter()
        .chain(b2["results"].as_array().unwrap())
    {
        events.push(item["event_id"].as_str().unwrap().to_string());
    }
    assert_eq!(events.len(), 130);
    t.pump_until("DeliveryQueue", Duration::from_secs(30), || async {
        t.queue_depth("DeliveryQueue").await == 0
    })
    .await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    let (s, _) = t
        .send(
            t.http
                .put(t.url(&path))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"name": "p", "url": r.url("/pb"), "active": true})),
        )
        .await;
    assert_eq!(s, 200);
    // The PUT released one page; the rest waits for the reconciler's run.
    reconcile_and_pump(
        &t,
        &events,
        chrono::Duration::zero(),
        Duration::from_secs(40),
    )
    .await;
    let ds = deliveries_of(&t, &events).await;
    assert_eq!(
        ds.iter()
            .filter(|d| d.status == DeliveryStatus::Delivered)
            .count(),
        130
    );
    assert_eq!(r.count(), 130);
    assert!(
        t.app.store.unpark_marks(10).await.unwrap().is_empty(),
        "the mark is gone once all is released"
    );
}

/// How long the partner's server holds the attempt before its 410: long
/// enough for the partner's own change to land first, however loaded the
/// machine.
const IN_FLIGHT: Duration = Duration::from_secs(3);

/// Waits (bounded) until the receiver has the attempt, which it then holds.
async fn in_flight(r: &Receiver) {
    for _ in 0..250 {
        if r.count() >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_410_that_loses_the_race_to_a_partners_change_or_delete_reverts_nothing() {
    let t = TestApp::start().await;
    let gone = Receiver::start(vec![Reply::DelayThen(IN_FLIGHT, 410)]).await;
    let seed = t.seed(offer_body(), None).await;
    let eid = endpoint(&t, &seed, json!({"name": "old", "url": gone.url("/old")})).await;
    let path = format!("/partners/{}/endpoints/{eid}", seed.partner_id);
    t.admin_post("/events", json!({"transaction_id": "G1", "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"})).await;
    // While the attempt is in flight (the partner's server holds it), the
    // partner moves the endpoint.
    let change = async {
        in_flight(&gone).await;
        t.send(t.http.put(t.url(&path)).bearer_auth(ADMIN_KEY).json(&json!({"name": "new", "url": "https://partner.example/new", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})))
            .await
    };
    let ((s, _), _) = tokio::join!(
        change,
        t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
            gone.count() >= 1
        })
    );
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, shown) = t.admin_get(&path).await;
    assert_eq!(
        shown["url"], "https://partner.example/new",
        "the partner's change stands: {shown}"
    );
    assert_eq!(shown["active"], true);
    assert_eq!(shown["secret_set"], true);

    // And a delete during an in-flight 410 stays deleted.
    let gone2 = Receiver::start(vec![Reply::DelayThen(IN_FLIGHT, 410)]).await;
    let eid2 = endpoint(
        &t,
        &seed,
        json!({"name": "doomed", "url": gone2.url("/x"), "events": ["doomed"]}),
    )
    .await;
    let path2 = format!("/partners/{}/endpoints/{eid2}", seed.partner_id);
    t.admin_post("/events", json!({"transaction_id": "G2", "event": "doomed", "partner_id": seed.partner_id, "payout": "1.00"})).await;
    let delete = async {
        in_flight(&gone2).await;
        t.send(t.http.delete(t.url(&path2)).bearer_auth(ADMIN_KEY))
            .await
    };
    let ((s, _), _) = tokio::join!(
        delete,
        t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
            gone2.count() >= 1
        })
    );
    assert_eq!(s, 204);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (s, _) = t.admin_get(&path2).await;
    assert_eq!(s, 404, "a deleted endpoint does not come back");
}

#[tokio::test]
async fn deleting_an_endpoint_cancels_its_waiting_deliveries_and_says_why() {
    let t = TestApp::start().await;
    let r = Receiver::start(vec![Reply::Status(500)]).await;
    let seed = t.seed(offer_body(), None).await;
    let paused = endpoint(
        &t,
        &seed,
        json!({"name": "paused", "url": r.url("/p"), "active": false, "events": ["a"]}),
    )
    .await;
    let failing = endpoint(&t, &seed, json!({"name": "failing", "url": r.url("/f"), "events": ["b"], "retry_schedule": [0, 1, 1, 1]})).await;
    let (_, a) = t.admin_post("/events", json!({"transaction_id": "X1", "event": "a", "partner_id": seed.partner_id, "payout": "1.00"})).await;
    let (_, b) = t.admin_post("/events", json!({"transaction_id": "X2", "event": "b", "partner_id": seed.partner_id, "payout": "1.00"})).await;
    let events = vec![
        a["event_id"].as_str().unwrap().to_string(),
        b["event_id"].as_str().unwrap().to_string(),
    ];
    t.pump_until("DeliveryQueue", Duration::from_secs(5), || async {
        r.count() >= 1
    })
    .await;
    for eid in [&paused, &failing] {
        let (s, _) = t
            .send(
                t.http
                    .delete(t.url(&format!("/partners/{}/endpoints/{eid}", seed.partner_id)))
                    .bearer_auth(ADMIN_KEY),
            )
            .await;
        assert_eq!(s, 204);
    }
    reconcile_and_pump(
        &t,
        &events,
        chrono::Duration::zero(),
        Duration::from_secs(15),
    )
    .await;
    for d in deliveries_of(&t, &events).await {
        assert_eq!(d.status, DeliveryStatus::Cancelled, "{d:#?}");
        assert_eq!(d.reason.as_deref(), Some("endpoint deleted"));
    }
    let (_, history) = t
        .admin_get(&format!(
            "/partners/{}/deliveries?status=cancelled",
            seed.partner_id
        ))
        .await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2, "{history}");
    assert_eq!(history["items"][0]["reason"], "endpoint deleted");
}

#[tokio::test]
async fn a_partner_that_answers_200_and_stalls_the_body_is_delivered_once() {
    let t = TestApp::start().await;
    let r = FaultReceiver::start(|_| Answer::OkThenStall).await;
    let seed = t
        .seed(offer_body(), Some(json!({"name": "stall", "url": r.url("/pb"), "timeout_ms": 500, "retry_schedule": [0, 1, 1]})))
        .await;
    let mut events = Vec::new();
    for i in 0..3 {
        let (_, b) = t
            .admin_post("/events", json!({"transaction_id": format!("T{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
            .await;
        events.push(b["event_id"].as_str().unwrap().to_string());
    }
    reconcile_and_pump(
        &t,
        &events,
        chrono::Duration::zero(),
        Duration::from_secs(15),
    )
    .await;
    let ds = deliveries_of(&t, &events).await;
    assert!(
        ds.iter()
            .all(|d| d.status == DeliveryStatus::Delivered && d.attempts.len() == 1),
        "{ds:#?}"
    );
    assert_eq!(r.seen().len(), 3, "one send per delivery");
    let _ = seed;
}

#[tokio::test]
async fn permanent_problems_are_4xx_naming_the_field_on_every_route_never_503() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let long = "x".repeat(3000);
    for path in [
        format!("/partners/{long}/endpoints"),
        format!("/partners/{}/endpoints/{long}", seed.partner_id),
        format!("/events/{long}/deliveries"),
        format!("/offers/{long}"),
        format!("/partners/{long}/deliveries"),
    ] {
        let (s, b) = t.admin_get(&path).await;
        assert!((400..500).contains(&s), "{path}: {s} {b}");
        assert_ne!(b["error"]["code"], "unavailable");
    }
    let (s, b) = t
        .send(
            t.http
                .post(t.url(&format!("/deliveries/{long}/retry")))
                .bearer_auth(ADMIN_KEY),
        )
        .await;
    assert!((400..500).contains(&s), "{s} {b}");
    // An over-long key, valid or not: 401, before any AWS call.
    let before = t.app.requests.snapshot();
    let (s, b) = t
        .send(
            t.http
                .get(t.url("/offers/x"))
                .bearer_auth(format!("pbk_{long}_abc")),
        )
        .await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(
        t.app.requests.snapshot(),
        before,
        "refused before any AWS request"
    );
    // Attributes nested too deep, or too large to store: 400 naming the field.
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({"n": deep});
    }
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "N1", "event": "payout", "partner_id": seed.partner_id, "attributes": {"deep": deep}}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_field")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attributes"),
        "{b}"
    );
    let big: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("k{i}"), json!("v".repeat(1000))))
        .collect();
    let (s, b) = t
        .admin_post("/events", json!({"transaction_id": "N2", "event": "payout", "partner_id": seed.partner_id, "attributes": big}))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attributes"),
        "{b}"
    );
}

#[tokio::test]
async fn the_operator_reads_dead_letters_with_their_reason_and_a_redrive_never_sends_twice() {
    let (t, r, seed) = one_endpoint().await;
    let ev = vec![payout(&t, &seed, "L1").await];
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        r.count() >= 1
    })
    .await;
    let delivered = deliveries_of(&t, &ev).await.remove(0);
    assert_eq!(delivered.status, DeliveryStatus::Delivered);

    // One message SQS gave up on (its delivery went out since), one poison message.
    let sqs = t.app.queue.client();
    let body = json!({"delivery_id": delivered.id, "partner_id": seed.partner_id, "endpoint_id": delivered.endpoint_id});
    sqs.send_message()
        .queue_url(t.queue_url("DeliveryDLQ"))
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(t.queue_url("DeliveryQueue"))
        .message_body("{not json")
        .send()
        .await
        .unwrap();
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        t.queue_depth("DeliveryQueue").await == 0
    })
    .await;

    let (s, listed) = t.admin_get("/admin/dead-letters?queue=deliveries").await;
    assert_eq!(s, 200, "{listed}");
    let reasons: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 2, "{listed}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unparseable delivery message")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("receive limit")),
        "{reasons:?}"
    );
    let (s, _) = t
        .send(
            t.http
                .get(t.url("/admin/dead-letters"))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 403, "partners do not see the operator's queues");
    let (s, b) = t.admin_get("/admin/dead-letters?queue=nope").await;
    assert_eq!(
        (
            s,
            b["error"]["message"].as_str().map(|m| m.contains("queue"))
        ),
        (400, Some(true))
    );

    let (s, moved) = t
        .send(
            t.http
                .post(t.url("/admin/dead-letters/redrive?queue=deliveries"))
                .bearer_auth(ADMIN_KEY),
        )
        .await;
    assert_eq!((s, moved["redriven"].as_u64()), (200, Some(2)), "{moved}");
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        t.queue_depth("DeliveryQueue").await == 0
    })
    .await;
    assert_eq!(
        r.count(),
        1,
        "the re-driven message of a delivered delivery sends nothing"
    );
    assert_eq!(
        t.queue_depth("DeliveryDLQ").await,
        1,
        "the poison message is back in the DLQ, with its reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_partner_neither_holds_up_a_healthy_one_nor_eats_the_pool() {
    let t = TestApp::start().await;
    let healthy = Receiver::ok().await;
    let hung = FaultReceiver::start(|_| Answer::Hang).await;
    let seed = t.seed(offer_body(), None).await;
    endpoint(&t, &seed, json!({"name": "hung", "url": hung.url("/h"), "events": ["slow"], "timeout_ms": 1000, "retry_schedule": [0, 2, 2, 2, 2]})).await;
    endpoint(
        &t,
        &seed,
        json!({"name": "healthy", "url": healthy.url("/ok"), "events": ["fast"]}),
    )
    .await;
    // The local event-source mappings, as `make dev` runs them: five pollers
    // per lane.
    let mut pollers = postback_local::spawn_event_source(
        t.worker.clone(),
        postback_local::Consumer::Deliveries,
        t.queue_url("DeliveryQueue"),
        postback_local::DEFAULT_POLLERS,
    );
    pollers.extend(postback_local::spawn_event_source(
        t.worker.clone(),
        postback_local::Consumer::SlowDeliveries,
        t.queue_url("SlowDeliveryQueue"),
        postback_local::DEFAULT_POLLERS,
    ));
    let mut fast = Vec::new();
    let mut slow = Vec::new();
    for i in 0..20 {
        for (name, list) in [("slow", &mut slow), ("fast", &mut fast)] {
            let (s, b) = t
                .admin_post("/events", json!({"transaction_id": format!("{name}-{i}"), "event": name, "partner_id": seed.partner_id, "payout": "1.00"}))
                .await;
            assert_eq!(s, 200, "{b}");
            list.push(b["event_id"].as_str().unwrap().to_string());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ds = deliveries_of(&t, &fast).await;
        if ds.iter().all(|d| d.status == DeliveryStatus::Delivered)
            || tokio::time::Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the hung partner's retries come due (every 2 s) for a while.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for p in pollers {
        p.abort();
    }
    let ds = deliveries_of(&t, &fast).await;
    assert!(
        ds.iter().all(|d| d.status == DeliveryStatus::Delivered),
        "{ds:#?}"
    );
    let mut latency: Vec<i64> = ds
        .iter()
        .map(|d| (d.attempts[0].at - d.created_at).num_milliseconds() + d.attempts[0].ms as i64)
        .collect();
    latency.sort();
    println!(
        "healthy partner beside a hung one: p50 {} ms, max {} ms over {} deliveries; hung partner got {} requests",
        latency[latency.len() / 2],
        latency[latency.len() - 1],
        latency.len(),
        hung.seen().len()
    );
    // Without the breaker every slow delivery is retried every 2 s (about 60
    // requests in this window); with it, the endpoint is held after 3 timeouts.
    assert!(
        hung.seen().len() <= 25,
        "the hung endpoint kept eating the pool: {} requests",
        hung.seen().len()
    );
    let held = deliveries_of(&t, &slow).await;
    assert!(
        held.iter()
            .any(|d| d.reason.as_deref().is_some_and(|r| r.starts_with("held"))),
        "the history says why they wait: {held:#?}"
    );
}

/// The local runner's long poll outlives the client's attempt timeout: a
/// message sent while the poll waits is received by it, not handed to an
/// abandoned request and hidden for the queue's visibility timeout (6
/// minutes; the fault suite once waited for one such message in vain).
#[tokio::test]
async fn a_long_poll_longer_than_the_attempt_timeout_receives_what_arrives_meanwhile() {
    let direct = TestApp::start().await;
    let options = Options {
        aws_timeouts_ms: Some((500, 1_500)),
        ..Default::default()
    };
    let t = TestApp::on_stack(direct.stack.clone(), options, None).await;
    let url = t.queue_url("EventsQueue");
    let poll = t.app.queue.receive_up_to(&url, 2, 10);
    let send = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        direct
            .app
            .queue
            .send(&url, "arrived while the poll waited", 0)
            .await
    };
    let (received, sent) = tokio::join!(poll, send);
    sent.expect("sent");
    let received = received.expect("a poll of 2 s answers within its timeouts plus its wait");
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0].body.as_deref(),
        Some("arrived while the poll waited")
    );
}
