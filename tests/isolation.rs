//! One partner's trouble stays with that partner: a partner's own settings,
//! the key service, a deleted or paused endpoint seen through another
//! instance's cache. Real stand-ins, real receivers, real local runners.

use integration_tests::receiver::Receiver;
use integration_tests::runner::Runner;
use integration_tests::{offer_body, Options, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use shared::lifecycle::DeliveryStatus;
use std::time::Duration;

async fn create_endpoint(t: &TestApp, key: &str, pid: &str, body: Value) -> String {
    let (s, e) = t
        .send(
            t.http
                .post(t.url(&format!("/partners/{pid}/endpoints")))
                .bearer_auth(key)
                .json(&body),
        )
        .await;
    assert_eq!(s, 201, "endpoint: {e}");
    e["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_partners_secret_spelled_like_a_sealed_value_is_sealed_and_its_conversions_still_flow() {
    let t = TestApp::start().await;
    assert!(t.stack.env.contains_key("SECRETS_KEY_ID"), "sealing is on");
    let (signed, plain) = (Receiver::ok().await, Receiver::ok().await);
    let seed = t.seed(offer_body(), None).await;
    // The partner's own key is enough to set it.
    let secret = "enc:v1:AAAA:BBBBBBBBBBBBBBBB:CCCC";
    create_endpoint(
        &t,
        &seed.partner_key,
        &seed.partner_id,
        json!({"name": "looks-sealed", "url": signed.url("/pb"), "method": "POST_JSON", "secret": secret}),
    )
    .await;
    create_endpoint(
        &t,
        &seed.partner_key,
        &seed.partner_id,
        json!({"name": "other", "url": plain.url("/pb?tx={transaction_id}")}),
    )
    .await;
    let click = t.click(&seed, json!({})).await;
    let (s, body) = t
        .postback(&[("click_id", &click), ("transaction_id", "T-enc")])
        .await;
    assert_eq!(s, 200, "the conversion is recorded: {body}");
    assert_eq!(body["status"], "recorded");
    let (s, body) = t
        .send(t.http.post(t.url("/events")).bearer_auth(ADMIN_KEY).json(
            &json!({"event": "payout", "transaction_id": "P-enc", "partner_id": seed.partner_id, "payout": "3.00"}),
        ))
        .await;
    assert!(
        s == 200 || s == 207,
        "POST /events for the partner: {s} {body}"
    );
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        signed.count() >= 2 && plain.count() >= 2
    })
    .await;
    assert_eq!(
        plain.count(),
        2,
        "the partner's other endpoint is delivered"
    );
    assert_eq!(signed.count(), 2, "the endpoint itself is delivered");
    // Signed with exactly the value the partner sent.
    let req = &signed.requests()[0];
    let (id, ts) = (
        req.header("webhook-id").unwrap(),
        req.header("webhook-timestamp").unwrap(),
    );
    let expected = shared::render::sign(secret, id, ts.parse().unwrap(), &req.body);
    assert_eq!(req.header("webhook-signature"), Some(expected.as_str()));
}

#[tokio::test]
async fn with_kms_refusing_from_a_cold_start_conversions_are_recorded_and_only_the_signed_endpoint_waits(
) {
    let t = TestApp::start().await;
    let (signed, plain) = (Receiver::ok().await, Receiver::ok().await);
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "signed", "url": signed.url("/pb"), "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})),
        )
        .await;
    create_endpoint(
        &t,
        ADMIN_KEY,
        &seed.partner_id,
        json!({"name": "plain", "url": plain.url("/pb")}),
    )
    .await;
    let click = t.click(&seed, json!({})).await;

    // A second instance, cold, whose KMS refuses every connection (nextest
    // runs each test in its own process, so the variable is this test's).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::env::set_var("AWS_ENDPOINT_URL_KMS", format!("http://127.0.0.1:{closed}"));
    let cold = TestApp::on_stack(t.stack.clone(), Options::default(), None).await;
    let mut events = Vec::new();
    for i in 0..3 {
        let (s, body) = cold
            .postback(&[("click_id", &click), ("transaction_id", &format!("K{i}"))])
            .await;
        assert_eq!(s, 200, "ingest needs no KMS: {body}");
        events.push(body["conversion_id"].as_str().unwrap().to_string());
    }
    let (s, body) = cold
        .send(cold.http.post(cold.url("/events")).bearer_auth(ADMIN_KEY).json(
            &json!({"event": "payout", "transaction_id": "K-pipe", "partner_id": seed.partner_id, "payout": "2.00"}),
        ))
        .await;
    assert_eq!(s, 200, "POST /events needs no KMS: {body}");

    cold.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        plain.count() >= 4
    })
    .await;
    assert_eq!(
        plain.count(),
        4,
        "the endpoint without a secret is delivered"
    );
    assert_eq!(signed.count(), 0, "nothing goes out unsigned");
    let event = cold
        .app
        .store
        .get_event(&integration_tests::typed(&events[0]))
        .await
        .unwrap()
        .unwrap();
    let deliveries = cold.app.store.deliveries_of_event(&event).await.unwrap();
    let waiting = deliveries
        .iter()
        .find(|d| d.endpoint_id == seed.endpoint_id.clone().unwrap())
        .expect("the signed endpoint's delivery");
    assert_eq!(waiting.status, DeliveryStatus::Pending);
    assert!(
        waiting.attempts.is_empty(),
        "no attempt is spent on the outage"
    );
    assert!(
        waiting
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("secrets could not be opened")),
        "the history says why it waits: {:?}",
        waiting.reason
    );
}

/// Two local runners on one stack: the endpoint is deleted (or paused)
/// through one, while the other still has it in its 30 s configuration cache.
#[tokio::test]
async fn after_delete_or_pause_answers_no_instance_sends_to_the_endpoint_again() {
    let prefix = integration_tests::unique_prefix();
    let env = [("STACK_PREFIX", prefix.as_str())];
    let (a, b) = (Runner::start(&env).await, Runner::start(&env).await);
    let http = reqwest::Client::new();
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN_KEY);
    let json_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (s, offer) = json_of(
        admin(http.post(a.url("/offers")))
            .json(&offer_body())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{offer}");
    let (_, partner) = json_of(
        admin(http.post(a.url("/partners")))
            .json(&json!({"name": "P"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let pid = partner["id"].as_str().unwrap().to_string();
    let (deleted, paused) = (Receiver::ok().await, Receiver::ok().await);
    let mut eids = Vec::new();
    for r in [&deleted, &paused] {
        let (s, e) = json_of(
            admin(http.post(a.url(&format!("/partners/{pid}/endpoints"))))
                .json(&json!({"name": "e", "url": r.url("/pb?tx={transaction_id}")}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 201, "{e}");
        eids.push(e["id"].as_str().unwrap().to_string());
    }
    let (_, click) = json_of(
        admin(http.post(a.url("/clicks")))
            .json(&json!({"offer_id": offer["id"], "partner_id": pid}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let click = click["click_id"].as_str().unwrap().to_string();
    let convert = |tx: String| {
        let (http, url, click) = (http.clone(), b.url("/postback"), click.clone());
        async move {
            let r = http
                .get(url)
                .query(&[
                    ("click_id", click.as_str()),
                    ("transaction_id", tx.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()["conversion_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // B learns both endpoints (its cache now holds them for 30 s).
    convert("warm".into()).await;
    for _ in 0..100 {
        if deleted.count() >= 1 && paused.count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (deleted.count(), paused.count()),
        (1, 1),
        "both delivered once"
    );

    let r = admin(http.delete(a.url(&format!("/partners/{pid}/endpoints/{}", eids[0]))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = admin(http.patch(a.url(&format!("/partners/{pid}/endpoints/{}", eids[1]))))
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // B's stale cache still fans out to both: what it creates must never go out.
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(convert(format!("after{i}")).await);
    }
    let finished = |event_id: String| {
        let (http, url) = (
            http.clone(),
            a.url(&format!("/events/{event_id}/deliveries")),
        );
        async move {
            let (_, d) = json_of(admin(http.get(url)).send().await.unwrap()).await;
            d["items"].as_array().cloned().unwrap_or_default()
        }
    };
    let mut last = Vec::new();
    for _ in 0..150 {
        last = finished(events[9].clone()).await;
        let settled = last.len() == 2
            && last.iter().all(|d| {
                d["status"] == "cancelled" || (d["status"] == "pending" && d["parked"] == true)
            });
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Leave the pollers of both runners time to send anything they would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        deleted.count(),
        1,
        "no request to the deleted endpoint after the 204"
    );
    assert_eq!(
        paused.count(),
        1,
        "no request to the paused endpoint after the 200"
    );
    let by_endpoint = |eid: &str| {
        last.iter()
            .find(|d| d["endpoint_id"] == eid)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let gone = by_endpoint(&eids[0]);
    assert_eq!(gone["status"], "cancelled", "{last:?}");
    assert_eq!(gone["reason"], "endpoint deleted");
    let held = by_endpoint(&eids[1]);
    assert_eq!(held["status"], "pending", "{last:?}");
    assert_eq!(held["parked"], true, "{last:?}");
}

/// The median and 90th percentile of `samples`, in seconds.
fn median_p90(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.9))
}

/// The local runner with default settings; three partners whose servers
/// accept connections and never answer (10 s default timeout), one healthy.
#[tokio::test]
async fn three_hung_partners_do_not_slow_a_healthy_one() {
    use std::collections::HashMap;
    use std::time::Instant;
    let runner = Runner::start(&[]).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http
            .post(runner.url(path))
            .bearer_auth(ADMIN_KEY)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let offer = post("/offers", offer_body()).await;
    let healthy = Receiver::ok().await;
    let mut hung = Vec::new();
    for _ in 0..3 {
        hung.push(
            Receiver::start(vec![integration_tests::receiver::Reply::Delay(
                Duration::from_secs(120),
            )])
            .await,
        );
    }
    // One partner, endpoint (default settings) and click per receiver.
    let mut clicks = Vec::new();
    for r in std::iter::once(&healthy).chain(hung.iter()) {
        let partner = post("/partners", json!({"name": "P"})).await;
        let pid = partner["id"].as_str().unwrap();
        post(
            &format!("/partners/{pid}/endpoints"),
            json!({"name": "e", "url": r.url("/pb?tx={transaction_id}")}),
        )
        .await;
        let click = post(
            "/clicks",
            json!({"offer_id": offer["id"], "partner_id": pid}),
        )
        .await;
        clicks.push(click["click_id"].as_str().unwrap().to_string());
    }
    let sent_at = std::sync::Mutex::new(HashMap::<String, Instant>::new());
    let convert = |i: usize, tx: String| {
        let req = http.get(runner.url("/postback")).query(&[
            ("click_id", clicks[i].as_str()),
            ("transaction_id", tx.as_str()),
        ]);
        let sent_at = &sent_at;
        async move {
            sent_at.lock().unwrap().insert(tx, Instant::now());
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    let latencies = |prefix: &str, n: usize| {
        let sent = sent_at.lock().unwrap().clone();
        let got: Vec<f64> = healthy
            .requests()
            .iter()
            .filter_map(|c| {
                let tx = c.query().into_iter().find(|(k, _)| k == "tx")?.1;
                tx.starts_with(prefix)
                    .then(|| c.at.duration_since(sent[&tx]).as_secs_f64())
            })
            .collect();
        assert_eq!(got.len(), n, "every {prefix} conversion delivered once");
        got
    };
    let wait_for = |n: usize, limit: Duration| {
        let healthy = &healthy;
        async move {
            let deadline = Instant::now() + limit;
            while healthy.count() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Alone.
    for i in 0..30 {
        convert(0, format!("alone{i}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(30, Duration::from_secs(30)).await;
    let (alone_median, alone_p90) = median_p90(latencies("alone", 30));

    // The hung partners' first postbacks: nobody answers them.
    for i in 1..=3 {
        convert(i, format!("first{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while hung.iter().any(|r| r.count() == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        hung.iter().all(|r| r.count() == 1),
        "each hung partner got its first postback"
    );
    // From here on every instance knows them as slow (one second unanswered).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Beside them: 30 conversions each, interleaved.
    for i in 0..30 {
        for p in 0..4 {
            convert(p, format!("mixed{p}-{i}")).await;
        }
    }
    wait_for(60, Duration::from_secs(60)).await;
    let (median, p90) = median_p90(latencies("mixed0-", 30));
    println!(
        "healthy partner: alone median {alone_median:.3} s p90 {alone_p90:.3} s; beside three hung partners median {median:.3} s p90 {p90:.3} s"
    );
    assert!(p90 < 3.0, "p90 {p90:.3} s beside hung partners");
    assert!(
        median <= 2.0 * alone_median.max(0.05),
        "median {median:.3} s beside hung partners, {alone_median:.3} s alone"
    );
}
