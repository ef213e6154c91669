//! Recover: a partner down for a while gets everything it missed back in
//! one call, once each, in order per transaction, at a bounded rate; a
//! second recovery sends nothing more; another partner cannot touch it;
//! a recovery whose step was lost is resumed by the reconciler.

use axum::http::{HeaderMap, StatusCode, Uri};
use integration_tests::{offer_body, Seed, TestApp};
use postback_local::Consumer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the partner's server got.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    key: String,
    tx: String,
    seq: u32,
    up: bool,
}

/// A partner's server that answers 500 while down and 200 once up.
struct Partner {
    port: u16,
    up: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Partner {
    async fn start() -> Partner {
        let up = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (u, h) = (up.clone(), hits.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (u, h) = (u.clone(), h.clone());
            async move {
                let q: HashMap<String, String> =
                    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let is_up = u.load(Ordering::SeqCst);
                h.lock().unwrap().push(Hit {
                    at: Instant::now(),
                    key: headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                    tx: q.get("tx").cloned().unwrap_or_default(),
                    seq: q.get("seq").and_then(|s| s.parse().ok()).unwrap_or(0),
                    up: is_up,
                });
                if is_up {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Partner { port, up, hits }
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/pb?tx={{transaction_id}}&status={{status}}&seq={{sequence}}",
            self.port
        )
    }

    fn accepted(&self) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.up)
            .cloned()
            .collect()
    }
}

/// Two worker instances, five pollers each on both delivery lanes, as two
/// Lambda event-source mappings would run them.
fn run_workers(t: &TestApp) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let worker = Arc::new(deliver::Worker::new(t.app.clone()).expect("worker"));
        for (consumer, queue) in [
            (Consumer::Deliveries, "DeliveryQueue"),
            (Consumer::SlowDeliveries, "SlowDeliveryQueue"),
        ] {
            tasks.extend(postback_local::spawn_event_source(
                worker.clone(),
                consumer,
                t.queue_url(queue),
                postback_local::DEFAULT_POLLERS,
            ));
        }
    }
    tasks
}

async fn partner_post(t: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    t.send(t.http.post(t.url(path)).bearer_auth(key).json(&body))
        .await
}

async fn partner_get(t: &TestApp, key: &str, path: &str) -> (u16, Value) {
    t.send(t.http.get(t.url(path)).bearer_auth(key)).await
}

/// The endpoint's deliveries by status, from the partner's history (every page).
async fn statuses(t: &TestApp, seed: &Seed) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/partners/{}/deliveries?limit=500", seed.partner_id);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, page) = t.admin_get(&path).await;
        assert_eq!(s, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            *out.entry(item["status"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

async fn wait_for<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done().await
}

/// Conversions failed while the partner is down (`RECOVER_CONVERSIONS`
/// measures a larger run); a quarter of them change status later.
fn conversions() -> usize {
    std::env::var("RECOVER_CONVERSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partner_down_for_a_while_gets_everything_back_once_in_order_and_at_the_rate() {
    let t = TestApp::start().await;
    let partner = Partner::start().await;
    let seed = t
        .seed(
            offer_body(),
            // One attempt each: everything sent while the server is down fails.
            Some(json!({"name": "down", "url": partner.url(), "retry_schedule": [0]})),
        )
        .await;
    let (_, other) = t
        .admin_post("/partners", json!({"name": "Another publisher"}))
        .await;
    let other_key = other["api_key"].as_str().unwrap().to_string();
    let other_id = other["id"].as_str().unwrap().to_string();
    let eid = seed.endpoint_id.clone().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let workers = run_workers(&t);

    // 200 conversions, 50 of them approved later: 250 postbacks, all while down.
    let (transactions, changed) = (conversions(), conversions() / 4);
    let change = |i: usize, status: &str| json!({"transaction_id": format!("RC-{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "12.50", "status": status});
    for chunk in (0..transactions).collect::<Vec<_>>().chunks(100) {
        let body: Vec<Value> = chunk.iter().map(|i| change(*i, "pending")).collect();
        let (s, b) = t.admin_post("/events", Value::Array(body)).await;
        assert!(s == 200 || s == 207, "{s} {b}");
    }
    for chunk in (0..changed).collect::<Vec<_>>().chunks(100) {
        let body: Vec<Value> = chunk.iter().map(|i| change(*i, "approved")).collect();
        let (s, b) = t.admin_post("/events", Value::Array(body)).await;
        assert!(s == 200 || s == 207, "{s} {b}");
    }
    let total = transactions + changed;
    assert!(
        wait_for(Duration::from_secs(120), || async {
            statuses(&t, &seed).await.get("failed") == Some(&total)
        })
        .await,
        "every postback failed while the partner was down: {:?}",
        statuses(&t, &seed).await
    );
    assert!(partner.accepted().is_empty());

    // The partner is back up. Another partner may neither recover nor read it.
    partner.up.store(true, Ordering::SeqCst);
    let path = format!("/partners/{}/endpoints/{eid}/recover", seed.partner_id);
    let ask = json!({"since": since.to_rfc3339()});
    let (s, b) = partner_post(&t, &other_key, &path, ask.clone()).await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = partner_post(
        &t,
        &other_key,
        &format!("/partners/{other_id}/endpoints/{eid}/recover"),
        ask.clone(),
    )
    .await;
    assert_eq!(s, 404, "{b}");

    // The count before confirming.
    let mut dry = ask.clone();
    dry["dry_run"] = json!(true);
    let (s, b) = partner_post(&t, &seed.partner_key, &path, dry).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["to_resend"], json!(total), "{b}");
    assert!(partner.accepted().is_empty(), "a dry run sends nothing");

    // Two recoveries asked at the same moment: one runs, the other is told which.
    let started = Instant::now();
    let (a, b) = tokio::join!(
        partner_post(&t, &seed.partner_key, &path, ask.clone()),
        partner_post(&t, &seed.partner_key, &path, ask.clone())
    );
    let mut answers = [a, b];
    answers.sort_by_key(|(s, _)| *s);
    let [(s1, running), (s2, refused)] = answers;
    assert_eq!((s1, s2), (202, 409), "{running} {refused}");
    let rid = running["recovery_id"].as_str().unwrap().to_string();
    assert_eq!(running["to_resend"], json!(total));
    assert_eq!(
        running["rate_per_second"],
        json!(shared::recovery::DEFAULT_RATE)
    );
    assert!(
        refused["error"]["message"].as_str().unwrap().contains(&rid),
        "{refused}"
    );
    let progress = format!("{path}/{rid}");
    let (s, b) = partner_get(&t, &other_key, &progress).await;
    assert_eq!(s, 404, "{b}");

    let finished = wait_for(Duration::from_secs(30 + total as u64 / 5), || async {
        let (_, p) = partner_get(&t, &seed.partner_key, &progress).await;
        p["state"] == "finished"
    })
    .await;
    let elapsed = started.elapsed();
    let (_, p) = partner_get(&t, &seed.partner_key, &progress).await;
    assert!(finished, "the recovery finished: {p}");
    println!("recovered {total} deliveries in {elapsed:?}: {p}");
    assert_eq!(p["queued"], json!(total), "{p}");
    assert_eq!(p["sent"], json!(total), "{p}");
    assert_eq!(p["delivered"], json!(total), "{p}");
    assert_eq!(p["failed"], json!(0), "{p}");
    assert_eq!(p["requested_by"], json!("partner"));

    // Once each, with the delivery's own idempotency key.
    let got = partner.accepted();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for h in &got {
        *per_key.entry(h.key.as_str()).or_default() += 1;
    }
    assert_eq!(got.len(), total, "every delivery once: {per_key:?}");
    assert_eq!(per_key.len(), total);
    assert!(per_key.values().all(|n| *n == 1));
    // In order per transaction: the pending change before the approval.
    let mut seqs: HashMap<&str, Vec<u32>> = HashMap::new();
    for h in &got {
        seqs.entry(h.tx.as_str()).or_default().push(h.seq);
    }
    for (tx, s) in &seqs {
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(s, &sorted, "{tx} arrived out of order: {s:?}");
    }
    // Within the rate: each resent delivery has its own send slot, 1/rate
    // after the previous one, and is never sent before it; so by any time t
    // after the call, at most rate x t + 1 have gone (deliveries whose slots
    // passed while the workers were busy may then go together, never ahead).
    let rate = f64::from(shared::recovery::DEFAULT_RATE);
    let mut times: Vec<Instant> = got.iter().map(|h| h.at).collect();
    times.sort();
    for (k, at) in times.iter().enumerate() {
        let after_call = at.duration_since(started).as_secs_f64();
        assert!(
            k as f64 <= rate * after_call,
            "resend {k} went {after_call:.2} s after the call: ahead of {rate}/s"
        );
    }
    // The history says which attempts came from the recovery.
    let history = statuses(&t, &seed).await;
    assert_eq!(history.get("delivered"), Some(&total), "{history:?}");
    let (_, page) = t
        .admin_get(&format!("/partners/{}/deliveries?limit=1", seed.partner_id))
        .await;
    let attempts = page["items"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[1]["recovery_id"], json!(rid), "{attempts:?}");
    assert!(attempts[0].get("recovery_id").is_none());

    // Recovering again sends nothing more: nothing is failed any more.
    let (s, again) = partner_post(&t, &seed.partner_key, &path, ask.clone()).await;
    assert_eq!(s, 202, "{again}");
    assert_eq!(again["to_resend"], json!(0));
    let again_path = format!("{path}/{}", again["recovery_id"].as_str().unwrap());
    assert!(
        wait_for(Duration::from_secs(30), || async {
            partner_get(&t, &seed.partner_key, &again_path).await.1["state"] == "finished"
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(partner.accepted().len(), total, "nothing sent twice");
    for w in workers {
        w.abort();
    }
}

#[tokio::test]
async fn a_recovery_never_puts_the_partner_back_on_an_older_state() {
    let t = TestApp::start().await;
    let partner = Partner::start().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "flaky", "url": partner.url(), "retry_schedule": [0]})),
        )
        .await;
    let eid = seed.endpoint_id.clone().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let change = |status: &str| json!({"transaction_id": "RC-OLD", "event": "payout", "partner_id": seed.partner_id, "payout": "12.50", "status": status});
    // The pending change fails while the partner is down; the approval, later, is accepted.
    t.admin_post("/events", change("pending")).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        statuses(&t, &seed).await.get("failed") == Some(&1)
    })
    .await;
    partner.up.store(true, Ordering::SeqCst);
    t.admin_post("/events", change("approved")).await;
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        partner.accepted().len() == 1
    })
    .await;
    let path = format!("/partners/{}/endpoints/{eid}/recover", seed.partner_id);
    let (s, r) = t
        .admin_post(&path, json!({"since": since.to_rfc3339()}))
        .await;
    assert_eq!((s, r["to_resend"].clone()), (202, json!(1)), "{r}");
    assert_eq!(r["requested_by"], json!("admin"));
    let progress = format!("{path}/{}", r["recovery_id"].as_str().unwrap());
    let done = t
        .pump_until("DeliveryQueue", Duration::from_secs(30), || async {
            t.admin_get(&progress).await.1["state"] == "finished"
        })
        .await;
    let (_, p) = t.admin_get(&progress).await;
    assert!(done, "{p}");
    assert_eq!(p["skipped"]["later_change"], json!(1), "{p}");
    assert_eq!(p["queued"], json!(0), "{p}");
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    let got: Vec<u32> = partner.accepted().iter().map(|h| h.seq).collect();
    assert_eq!(
        got,
        vec![2],
        "only the approval, never the older pending change"
    );
}

#[tokio::test]
async fn a_recovery_whose_step_was_lost_is_resumed_by_the_reconciler() {
    let direct = TestApp::start().await;
    let partner = Partner::start().await;
    let seed = direct
        .seed(
            offer_body(),
            Some(json!({"name": "down", "url": partner.url(), "retry_schedule": [0]})),
        )
        .await;
    let eid = seed.endpoint_id.clone().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    for i in 0..3 {
        direct
            .admin_post("/events", json!({"transaction_id": format!("RL-{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "1.00"}))
            .await;
    }
    direct
        .pump_until("DeliveryQueue", Duration::from_secs(15), || async {
            statuses(&direct, &seed).await.get("failed") == Some(&3)
        })
        .await;
    partner.up.store(true, Ordering::SeqCst);
    // An API instance whose queue refuses: the recovery is stored, its first step is not queued.
    let broken = TestApp::on_stack(
        direct.stack.clone(),
        Default::default(),
        Some(format!("{}-missing", direct.queue_url("DeliveryQueue"))),
    )
    .await;
    let path = format!("/partners/{}/endpoints/{eid}/recover", seed.partner_id);
    let (s, r) = broken
        .admin_post(&path, json!({"since": since.to_rfc3339()}))
        .await;
    assert_eq!(s, 202, "{r}");
    direct
        .pump_for("DeliveryQueue", Duration::from_secs(2))
        .await;
    assert!(
        partner.accepted().is_empty(),
        "nothing ran: the step was lost"
    );
    // The reconciler, once the step is overdue, queues it again.
    let later = chrono::Utc::now() + chrono::Duration::minutes(2);
    let run = shared::outbox::reconcile(&direct.app, later).await.unwrap();
    assert_eq!(run.recoveries_resumed, 1, "{run:?}");
    let progress = format!("{path}/{}", r["recovery_id"].as_str().unwrap());
    let done = direct
        .pump_until("DeliveryQueue", Duration::from_secs(30), || async {
            direct.admin_get(&progress).await.1["state"] == "finished"
        })
        .await;
    let (_, p) = direct.admin_get(&progress).await;
    assert!(done, "{p}");
    assert_eq!(partner.accepted().len(), 3, "{p}");
}
