//! The sample Lambda events of events/ run through the real handlers: each
//! API Gateway v2 event is parsed by lambda_http exactly as in Lambda and
//! answered by the router; each SQS event is handed to the deliver handler.

use aws_lambda_events::event::sqs::SqsEvent;
use integration_tests::receiver::Receiver;
use integration_tests::{TestApp, ADMIN_KEY};
use postback_local::lambda_events::{fill, Ids};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn invoke(t: &TestApp, event: &str, ids: &Ids) -> (u16, Value, Option<String>) {
    let request = lambda_http::request::from_str(&fill(event, ids, ADMIN_KEY, "postback-dev"))
        .expect("a valid API Gateway v2 event");
    let request = request.map(|b| axum::body::Body::from(b.to_vec()));
    let response = api::router(t.app.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        location,
    )
}

fn sqs_event(text: &str, ids: &Ids, queue_name: &str) -> SqsEvent {
    // The sample names the dev stack's queues (`postback-dev-<Queue>`); this
    // stack's are `<prefix>-<Queue>`.
    let prefix = queue_name.rsplit_once('-').map_or(queue_name, |(p, _)| p);
    let text = fill(text, ids, ADMIN_KEY, prefix);
    serde_json::from_str(&text).expect("a valid SQS event")
}

fn queue_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn every_sample_event_runs_through_the_real_handlers() {
    let t = TestApp::start().await;
    let mut ids = Ids {
        event_id: String::new(),
        partner_key: String::new(),
        endpoint_id: String::new(),
        click_id: String::new(),
        delivery_id: String::new(),
        recovery_id: String::new(),
    };
    macro_rules! http {
        ($file:literal, $status:expr) => {{
            let (status, body, location) =
                invoke(&t, include_str!(concat!("../events/", $file)), &ids).await;
            assert_eq!(status, $status, "{}: {body}", $file);
            (body, location)
        }};
    }

    http!("http-health.json", 200);
    http!("http-offers-create.json", 201);
    http!("http-offers-read.json", 200);
    http!("http-offers-update.json", 200);
    let (partner, _) = http!("http-partners-create.json", 201);
    ids.partner_key = partner["api_key"].as_str().unwrap().to_string();
    http!("http-partners-read.json", 200);
    let (endpoint, _) = http!("http-endpoints-create.json", 201);
    ids.endpoint_id = endpoint["id"].as_str().unwrap().to_string();
    http!("http-endpoints-list.json", 200);
    http!("http-endpoints-read.json", 200);
    http!("http-endpoints-update.json", 200);
    let (patched, _) = http!("http-endpoints-patch.json", 200);
    assert_eq!(patched["active"], false);
    assert_eq!(
        patched["name"], "main (v2)",
        "PATCH keeps what it does not name"
    );
    let (offers, _) = http!("http-offers-list.json", 200);
    assert_eq!(offers["items"][0]["id"], "lambda-offer");
    let (partners, _) = http!("http-partners-list.json", 200);
    assert_eq!(partners["items"][0]["id"], "lambda-partner");
    let (postbacks, _) = http!("http-offers-postbacks.json", 200);
    assert_eq!(postbacks["items"][0]["id"], ids.endpoint_id.as_str());
    let (_, location) = http!("http-click.json", 302);
    assert!(location.unwrap().contains("click_id="));
    let (click, _) = http!("http-clicks-create.json", 201);
    ids.click_id = click["click_id"].as_str().unwrap().to_string();
    let (recorded, _) = http!("http-postback-get.json", 200);
    assert_eq!(recorded["status"], "recorded");
    http!("http-postback-post-form.json", 200);
    http!("http-postback-post-json.json", 200);
    let (single, _) = http!("http-events-single.json", 200);
    assert_eq!(single["status"], "recorded");
    let (batch, _) = http!("http-events-batch.json", 200);
    assert!(
        batch["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "recorded"),
        "{batch}"
    );

    // Events queue: a pipeline event recorded by the events handler.
    let events_queue = queue_name(&t.queue_url("EventsQueue"));
    let response = deliver::handle_events(
        &t.worker,
        sqs_event(
            include_str!("../events/sqs-events-queue.json"),
            &ids,
            &events_queue,
        ),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(t
        .app
        .store
        .get_transaction("LN-6001")
        .await
        .unwrap()
        .is_some());

    // Delivery queue: the postback's delivery reaches a receiver on 127.0.0.1.
    let receiver = Receiver::ok().await;
    let (s, _) = t
        .send(
            t.http
                .put(t.url(&format!("/partners/lambda-partner/endpoints/{}", ids.endpoint_id)))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"name": "main", "url": receiver.url("/pb?payout={payout}&tx={transaction_id}")})),
        )
        .await;
    assert_eq!(s, 200);
    let event_id = recorded["conversion_id"].as_str().unwrap();
    ids.delivery_id = t.event(event_id).await.delivery_ids[0].to_string();
    ids.event_id = event_id.to_string();
    let delivery_queue = queue_name(&t.queue_url("DeliveryQueue"));
    // The fan-out's message carries the event: the worker renders from it.
    let response = deliver::handle(
        &t.worker,
        sqs_event(
            include_str!("../events/sqs-delivery-fanout.json"),
            &ids,
            &delivery_queue,
        ),
    )
    .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(receiver.requests()[0].uri, "/pb?payout=49.99&tx=T-1001");
    // The reconciler's message (no event) for the same delivery: it is
    // delivered already, so it is acknowledged and nothing goes out again.
    let response = deliver::handle(
        &t.worker,
        sqs_event(
            include_str!("../events/sqs-delivery.json"),
            &ids,
            &delivery_queue,
        ),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(receiver.count(), 1, "delivered once");
    // The same delivery handed to the slow lane's function (as a message the
    // fast lane moved there): acknowledged, never sent twice.
    let slow_queue = queue_name(&t.queue_url("SlowDeliveryQueue"));
    let response = deliver::handle_lane(
        &t.worker,
        shared::delivery::Lane::Slow,
        sqs_event(
            include_str!("../events/sqs-slow-delivery.json"),
            &ids,
            &slow_queue,
        ),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(receiver.count(), 1, "delivered once");

    // The partner's side: test route, history (JSON and CSV), support view, manual retry.
    let (test, _) = http!("http-endpoints-test.json", 200);
    assert_eq!(test["success"], true);
    assert_eq!(receiver.count(), 2);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let with_today = |text: &str| {
        text.replace("2026-11-01", "2000-01-01")
            .replace("2026-11-30", &today)
    };
    let (status, history, _) = invoke(
        &t,
        &with_today(include_str!("../events/http-deliveries-history.json")),
        &ids,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
    let (status, _, _) = invoke(
        &t,
        &with_today(include_str!("../events/http-deliveries-history-csv.json")),
        &ids,
    )
    .await;
    assert_eq!(status, 200);
    let (support, _) = http!("http-events-deliveries.json", 200);
    assert_eq!(support["items"][0]["status"], "delivered");
    let (retried, _) = http!("http-deliveries-retry.json", 202);
    assert_eq!(retried["status"], "pending");
    // Recover what the endpoint missed this month (nothing failed: none to resend).
    let (recovery, _) = http!("http-endpoints-recover.json", 202);
    assert_eq!(recovery["to_resend"], 0, "{recovery}");
    ids.recovery_id = recovery["recovery_id"].as_str().unwrap().to_string();
    let (progress, _) = http!("http-endpoints-recover-progress.json", 200);
    assert_eq!(progress["recovery_id"], recovery["recovery_id"]);

    // A malformed delivery message goes to the DLQ with its reason and is acknowledged.
    let response = deliver::handle(
        &t.worker,
        sqs_event(
            include_str!("../events/sqs-delivery-malformed.json"),
            &ids,
            &delivery_queue,
        ),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    let dead = t.peek("DeliveryDLQ").await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().unwrap()["reason"]
        .string_value()
        .unwrap()
        .to_string();
    assert!(reason.contains("unparseable delivery message"), "{reason}");

    // The operator reads the dead letter and re-drives it; the scheduled reconciler runs.
    let (dead, _) = http!("http-admin-dead-letters.json", 200);
    assert_eq!(dead["items"].as_array().unwrap().len(), 1, "{dead}");
    let (redriven, _) = http!("http-admin-redrive.json", 200);
    assert_eq!(redriven["redriven"], 1);
    let _schedule: Value =
        serde_json::from_str(include_str!("../events/scheduled-reconcile.json")).unwrap();
    let ran = deliver::reconcile(&t.app).await.unwrap();
    assert_eq!(ran["requeued"], 0, "nothing is overdue: {ran}");

    http!("http-endpoints-delete.json", 204);
    http!("http-offers-delete.json", 204);
}

/// The README's `cargo lambda` path, as far as it runs without cargo-lambda:
/// `postback-local --provision --write-env F --fill-events D` (what
/// `make lambda-events` runs) writes an environment the functions start
/// with and events with live ids that the real handlers answer.
#[tokio::test]
async fn the_local_runner_writes_an_env_file_and_events_with_live_ids() {
    let dir = std::env::temp_dir().join(format!(
        "lambda-events-{}",
        integration_tests::unique_prefix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let env_path = dir.join("lambda.env");
    let events_dir = dir.join("events");
    let prefix = integration_tests::unique_prefix();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(integration_tests::runner::binary("postback-local"))
        .args(["--provision", "--write-env"])
        .arg(&env_path)
        .arg("--fill-events")
        .arg(&events_dir)
        .current_dir(&root)
        .env("STACK_PREFIX", &prefix)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .output()
        .expect("postback-local runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The env file is what a function starts with: the API's config reads it.
    let env: std::collections::BTreeMap<String, String> = std::fs::read_to_string(&env_path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for key in [
        "TABLE_NAME",
        "DELIVERY_QUEUE_URL",
        "EVENTS_QUEUE_URL",
        "ADMIN_API_KEY",
        "SECRETS_KEY_ID",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ] {
        assert!(env.contains_key(key), "{key} missing from {env:?}");
    }
    let config = shared::config::Config::from_lookup(|k| env.get(k).cloned())
        .expect("the env file configures the API");
    config.require_admin_keys().unwrap();
    let app = shared::App::new(config).await.unwrap();

    // Every event is filled, and the real router answers them with the seeded ids.
    let mut files = 0;
    for entry in std::fs::read_dir(&events_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("__"), "a placeholder is left: {text}");
        files += 1;
    }
    assert_eq!(
        files,
        std::fs::read_dir(root.join("events")).unwrap().count()
    );
    for (file, expected) in [
        ("http-partners-read.json", 200),
        ("http-endpoints-read.json", 200),
        ("http-endpoints-list.json", 200),
        ("http-deliveries-history.json", 200),
        ("http-events-deliveries.json", 200),
        ("http-postback-get.json", 200),
        ("http-offers-read.json", 200),
    ] {
        let text = std::fs::read_to_string(events_dir.join(file)).unwrap();
        let request = lambda_http::request::from_str(&text).expect("a valid API Gateway v2 event");
        let request = request.map(|b| axum::body::Body::from(b.to_vec()));
        let response = api::router(app.clone()).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            status,
            expected,
            "{file}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn make_lambda_events_can_run_again_and_again_without_touching_what_it_did_not_make() {
    use postback_local::lambda_events::{seed, PARTNER};
    let t = TestApp::start().await;
    let dir = std::env::temp_dir().join(format!(
        "lambda-events-{}",
        integration_tests::unique_prefix()
    ));
    let key_file = dir.join("lambda-partner.key");
    let receiver = "http://127.0.0.1:4000/pb";
    let first = seed(&t.app, ADMIN_KEY, receiver, &key_file).await.unwrap();
    let second = seed(&t.app, ADMIN_KEY, receiver, &key_file).await.unwrap();
    let third = seed(&t.app, ADMIN_KEY, receiver, &key_file).await.unwrap();
    assert_eq!(
        first.partner_key, second.partner_key,
        "the kept key is reused"
    );
    assert_eq!(second.partner_key, third.partner_key);
    assert_eq!(
        first.endpoint_id, third.endpoint_id,
        "its endpoint is reused"
    );
    let (_, keys) = t.admin_get(&format!("/partners/{PARTNER}/keys")).await;
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        1,
        "no key added or revoked: {keys}"
    );
    let (_, endpoints) = t.admin_get(&format!("/partners/{PARTNER}/endpoints")).await;
    assert_eq!(
        endpoints["items"].as_array().unwrap().len(),
        1,
        "{endpoints}"
    );
    // Its key file lost: one key is added, the old one keeps working.
    std::fs::remove_file(&key_file).unwrap();
    let fourth = seed(&t.app, ADMIN_KEY, receiver, &key_file).await.unwrap();
    assert_ne!(fourth.partner_key, first.partner_key);
    for key in [&first.partner_key, &fourth.partner_key] {
        let (s, _) = t
            .send(
                t.http
                    .get(t.url(&format!("/partners/{PARTNER}")))
                    .bearer_auth(key),
            )
            .await;
        assert_eq!(s, 200, "both keys work");
    }
    let _ = std::fs::remove_dir_all(dir);
}
