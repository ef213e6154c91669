//! What an operator sees: an AWS refusal (AccessDenied from a stand-in)
//! logged with its code and cause, and the metrics the local runner writes
//! as CloudWatch Embedded Metric Format lines for a conversion and a delivery.

use integration_tests::capture::Captured;
use integration_tests::faults::{host_port, Mode, Proxy, DENIED_MESSAGE};
use integration_tests::receiver::Receiver;
use integration_tests::runner::Runner;
use integration_tests::{offer_body, Options, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_denied_is_logged_with_its_code_and_cause_and_nothing_is_lost() {
    let logs = Captured::json("info");

    let direct = TestApp::start().await;
    let ddb = Proxy::start(host_port(
        &std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap(),
    ))
    .await;
    let sqs = host_port(&std::env::var("AWS_ENDPOINT_URL_SQS").unwrap());
    let options = Options {
        endpoints: Some((ddb.url.clone(), format!("http://{sqs}"))),
        ..Default::default()
    };
    let t = TestApp::on_stack(direct.stack.clone(), options, None).await;
    let receiver = Receiver::ok().await;
    let seed = direct
        .seed(
            offer_body(),
            Some(json!({"name": "main", "url": receiver.url("/pb?tx={transaction_id}"), "retry_schedule": [0, 1]})),
        )
        .await;
    let click = direct.click(&seed, json!({})).await;

    // The API's role lost its DynamoDB grant: the advertiser gets an opaque
    // 500, the log gets the whole story.
    ddb.set(Mode::Deny);
    let (status, body) = t
        .postback(&[("click_id", &click), ("transaction_id", "T-denied")])
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    assert!(
        !body.to_string().contains("not authorized"),
        "the cause never reaches the caller: {body}"
    );
    let failed: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["fields"]["message"] == "request failed")
        .collect();
    let line = failed
        .first()
        .unwrap_or_else(|| panic!("no 'request failed' line in {}", logs.output()));
    assert_eq!(
        line["fields"]["aws_code"], "AccessDeniedException",
        "{line}"
    );
    let error = line["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("AccessDeniedException") && error.contains(DENIED_MESSAGE),
        "the IAM message is in the log line: {error}"
    );
    assert!(
        error.starts_with("internal error: "),
        "an IAM mistake does not read as an outage: {error}"
    );

    // A worker whose store is denied logs the same way and keeps the message;
    // once the grant is back the delivery goes out, once.
    ddb.set(Mode::Pass);
    let (status, _) = direct
        .postback(&[("click_id", &click), ("transaction_id", "T-kept")])
        .await;
    assert_eq!(status, 200);
    ddb.set(Mode::Deny);
    t.pump_for("DeliveryQueue", Duration::from_secs(2)).await;
    assert_eq!(receiver.count(), 0, "nothing is sent without a claim");
    let worker_line = logs
        .lines()
        .into_iter()
        .find(|l| {
            l["fields"]["aws_code"] == "AccessDeniedException"
                && l["fields"]["message"] != "request failed"
        })
        .unwrap_or_else(|| panic!("no worker line with the AWS code in {}", logs.output()));
    assert!(
        worker_line["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(DENIED_MESSAGE)),
        "{worker_line}"
    );
    ddb.set(Mode::Pass);
    let delivered = t
        .pump_until("DeliveryQueue", Duration::from_secs(30), || async {
            receiver.count() >= 1
        })
        .await;
    assert!(
        delivered,
        "the kept message is delivered once the grant is back; logs:\n{}",
        logs.output()
    );
    t.pump_for("DeliveryQueue", Duration::from_millis(1_500))
        .await;
    assert_eq!(receiver.count(), 1, "delivered exactly once");
}

/// The EMF documents among the runner's stdout lines, as (metric name,
/// dimensions, value) triples.
fn emf_metrics(stdout: &[String], namespace: &str) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for line in stdout {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(directives) = doc["_aws"]["CloudWatchMetrics"].as_array() else {
            continue;
        };
        assert!(
            doc["_aws"]["Timestamp"].as_u64().is_some(),
            "an EMF document has a Timestamp: {doc}"
        );
        for d in directives {
            if d["Namespace"] != namespace {
                continue;
            }
            let dims: Vec<String> = d["Dimensions"][0]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let dimensions: Value = dims
                .iter()
                .map(|k| (k.clone(), doc[k].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into();
            for m in d["Metrics"].as_array().into_iter().flatten() {
                let name = m["Name"].as_str().unwrap_or_default().to_string();
                out.push((name.clone(), dimensions.clone(), doc[&name].clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_local_runner_logs_emf_metrics_for_a_conversion_and_a_delivery() {
    let namespace = "PostbackTest";
    let runner = Runner::start(&[("METRICS_NAMESPACE", namespace)]).await;
    let receiver = Receiver::ok().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN_KEY);
    let post = |path: &str, body: Value| admin(http.post(runner.url(path))).json(&body).send();
    let offer = post("/offers", offer_body()).await.unwrap();
    assert_eq!(offer.status(), 201);
    let offer: Value = offer.json().await.unwrap();
    let offer_id = offer["id"].as_str().unwrap().to_string();
    assert_eq!(
        post("/partners", json!({"id": "p-emf", "name": "EMF"}))
            .await
            .unwrap()
            .status(),
        201
    );
    let created = post(
        "/partners/p-emf/endpoints",
        json!({"name": "main", "url": receiver.url("/pb?tx={transaction_id}")}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let click: Value = post(
        "/clicks",
        json!({"offer_id": offer_id, "partner_id": "p-emf"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let click_id = click["click_id"].as_str().unwrap().to_string();
    let answer: Value = http
        .get(runner.url(&format!(
            "/postback?click_id={click_id}&transaction_id=T-emf&payout=12.50"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "recorded", "{answer}");
    // A refused one, for its reason.
    let refused = http
        .get(runner.url("/postback?click_id=nope-not-a-click"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.count() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.count(), 1, "the runner delivered the postback");
    // The worker flushes at the end of its batch, just after the send; the
    // API after each answer; a thread reads them from the runner's stdout.
    // Wait until both are there (either missing still fails below).
    let mut metrics = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        metrics = emf_metrics(&runner.stdout(), namespace);
        let has = |name: &str| metrics.iter().any(|(n, _, _)| n == name);
        if has("Deliveries") && has("ConversionsRefused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let find = |name: &str, dims: Value| {
        metrics
            .iter()
            .find(|(n, d, _)| n == name && *d == dims)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} {dims} among {metrics:#?}"))
    };
    assert_eq!(
        find("Conversions", json!({"Outcome": "recorded"})),
        json!(1)
    );
    assert_eq!(find("Conversions", json!({"Outcome": "refused"})), json!(1));
    assert_eq!(
        find("ConversionsRefused", json!({"Reason": "click_not_found"})),
        json!(1)
    );
    assert_eq!(
        find("Deliveries", json!({"Outcome": "delivered"})),
        json!(1)
    );
    let latency = find("AttemptLatency", json!({}));
    let ms = latency
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("AttemptLatency is a list of values: {latency}"));
    assert!(ms > 0.0 && ms < 30_000.0, "{ms} ms");
    // Units are declared where they mean something.
    let text = runner.stdout().join("\n");
    assert!(
        text.contains(r#"{"Name":"AttemptLatency","Unit":"Milliseconds"}"#),
        "AttemptLatency carries its unit"
    );
}

#[tokio::test]
async fn the_admin_key_rotates_through_secrets_manager_without_a_deploy() {
    let direct = TestApp::start().await;
    let sdk = aws_config::load_from_env().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("{}-admin-keys", integration_tests::unique_prefix());
    let (old, new) = ("old-admin-key-0000000001", "new-admin-key-0000000002");
    secrets
        .create_secret()
        .name(&name)
        .secret_string(json!({"current": old}).to_string())
        .send()
        .await
        .expect("moto's Secrets Manager");
    let put = |value: Value| {
        let secrets = secrets.clone();
        let name = name.clone();
        async move {
            secrets
                .put_secret_value()
                .secret_id(name)
                .secret_string(value.to_string())
                .send()
                .await
                .expect("put the new value");
        }
    };
    let mut env = direct.stack.env.clone();
    env.insert("ADMIN_KEY_SECRET_ID".into(), name.clone());
    env.insert("ADMIN_KEY_REFRESH_SECONDS".into(), "1".into());
    let config = shared::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let app = shared::App::new(config)
        .await
        .expect("the cold start reads the secret");
    let (addr, _server) = postback_local::serve(app, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let status = |key: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{addr}/offers"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(old).await, 200);
    assert_eq!(status(new).await, 401);

    // Rotation starts: both keys are good while the clients move over.
    put(json!({"current": new, "previous": old})).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        status(new).await,
        200,
        "the new key works after one refresh"
    );
    assert_eq!(
        status(old).await,
        200,
        "the old key still works during the rotation"
    );

    // Rotation ends: the old key is refused.
    put(json!({"current": new})).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(status(new).await, 200);
    assert_eq!(
        status(old).await,
        401,
        "the old key is revoked without a deploy"
    );

    // A broken value keeps the keys in hand instead of locking everyone out.
    put(json!({"current": "short"})).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(status(new).await, 200);

    // A secret that cannot be read fails the cold start with the reason.
    let mut env = direct.stack.env.clone();
    env.insert("ADMIN_KEY_SECRET_ID".into(), format!("{name}-missing"));
    let config = shared::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let err = match shared::App::new(config).await {
        Ok(_) => panic!("a missing secret must fail the cold start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("ResourceNotFoundException") && err.contains("reading the admin key secret"),
        "{err}"
    );
}

#[tokio::test]
async fn events_transactions_and_deliveries_expire_after_the_retention_and_the_history_says_so() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let t = TestApp::start_with(Options {
        env: vec![("RETENTION_DAYS", "60".into())],
        ..Default::default()
    })
    .await;
    let receiver = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "main", "url": receiver.url("/pb")})),
        )
        .await;
    let click = t.click(&seed, json!({})).await;
    let before = chrono::Utc::now();
    let (s, answer) = t
        .postback(&[("click_id", &click), ("transaction_id", "T-ttl")])
        .await;
    assert_eq!(s, 200, "{answer}");
    let event_id = answer["conversion_id"].as_str().unwrap().to_string();
    // Its delivery is stored by the record of its attempt (created by its claim).
    t.pump_until(
        "DeliveryQueue",
        std::time::Duration::from_secs(20),
        || async { receiver.count() >= 1 },
    )
    .await;
    t.pump_for("DeliveryQueue", std::time::Duration::from_millis(300))
        .await;

    // Every item of the conversion carries its expiry, 60 days on.
    let items = t
        .app
        .store
        .client()
        .scan()
        .table_name(t.app.store.table())
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let sixty_days = 60 * 86_400;
    let mut kinds = std::collections::BTreeSet::new();
    for item in &items {
        let pk = match item.get("pk") {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => continue,
        };
        let kind = pk.split('#').next().unwrap_or_default().to_string();
        let ttl = match item.get("ttl") {
            Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
            _ => None,
        };
        // A transaction's first event holds it (its item's `txn`).
        if kind == "EVENT" && item.contains_key("txn") {
            kinds.insert("TXN (in its first event)".to_string());
        }
        match kind.as_str() {
            "EVENT" | "TXN" | "DELIVERY" => {
                let ttl = ttl.unwrap_or_else(|| panic!("{pk} has no ttl"));
                let expected = before.timestamp() + sixty_days;
                assert!(
                    (expected - 5..=expected + 60).contains(&ttl),
                    "{pk}: ttl {ttl}, expected about {expected}"
                );
                kinds.insert(kind);
            }
            "OFFER" | "PARTNER" | "ENDPOINT" => {
                assert_eq!(ttl, None, "configuration never expires: {pk}")
            }
            _ => {}
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec!["DELIVERY", "EVENT", "TXN (in its first event)"],
        "the event {event_id}, its transaction and its delivery all expire"
    );
    let (s, history) = t
        .send(
            t.http
                .get(t.url(&format!("/partners/{}/deliveries", seed.partner_id)))
                .bearer_auth(&seed.partner_key),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        history["retention_days"], 60,
        "the history says how far back it goes"
    );
}

#[tokio::test]
async fn endpoint_secrets_are_sealed_in_the_table_and_still_sign_and_authenticate() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let t = TestApp::start().await;
    assert!(
        t.stack.env.contains_key("SECRETS_KEY_ID"),
        "the template's SecretsKey was provisioned in the KMS stand-in"
    );
    let receiver = Receiver::ok().await;
    let secret = "whsec_sealed-signing-secret-7731";
    let password = "sealed-basic-password-5120";
    let api_key = "sealed-header-value-88213";
    let seed = t
        .seed(
            offer_body(),
            Some(
                json!({"name": "sealed", "url": receiver.url("/pb?tx={transaction_id}"),
                "secret": secret, "basic_auth": {"username": "acme", "password": password},
                "headers": {"X-Api-Key": api_key}, "secret_headers": ["X-Api-Key"]}),
            ),
        )
        .await;
    let eid = seed.endpoint_id.clone().unwrap();
    let stored = format!("{:?}", t.raw_endpoint_item(&seed.partner_id, &eid).await);
    for plain in [secret, password, api_key] {
        assert!(
            !stored.contains(plain),
            "{plain} is stored in clear: {stored}"
        );
    }
    assert!(
        stored.matches("enc:v1:").count() >= 3,
        "secret, password and header are sealed: {stored}"
    );

    // The worker opens them to sign and authenticate.
    let click = t.click(&seed, json!({})).await;
    let (s, _) = t
        .postback(&[("click_id", &click), ("transaction_id", "T-sealed")])
        .await;
    assert_eq!(s, 200);
    t.pump_until("DeliveryQueue", Duration::from_secs(10), || async {
        receiver.count() >= 1
    })
    .await;
    let got = receiver.requests();
    let req = got.first().expect("delivered");
    assert_eq!(req.header("x-api-key"), Some(api_key));
    let basic = req.header("authorization").unwrap_or_default().to_string();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim_start_matches("Basic "))
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&decoded),
        format!("acme:{password}")
    );
    assert!(
        req.header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,")),
        "signed with the opened secret: {:?}",
        req.header("webhook-signature")
    );

    // A sealed value copied onto another endpoint does not open there.
    let other = t
        .admin_post(
            &format!("/partners/{}/endpoints", seed.partner_id),
            json!({"name": "other", "url": receiver.url("/other"), "secret": "whsec_other-secret-0001"}),
        )
        .await;
    assert_eq!(other.0, 201, "{}", other.1);
    let other_id = other.1["id"].as_str().unwrap().to_string();
    let sealed_secret = t.raw_endpoint_item(&seed.partner_id, &eid).await["secret"].clone();
    t.app
        .store
        .client()
        .update_item()
        .table_name(t.app.store.table())
        .key(
            "pk",
            AttributeValue::S(format!("PARTNER#{}", seed.partner_id)),
        )
        .key("sk", AttributeValue::S(format!("ENDPOINT#{other_id}")))
        .update_expression("SET secret = :s")
        .expression_attribute_values(":s", sealed_secret)
        .send()
        .await
        .unwrap();
    let opened = t
        .app
        .store
        .get_endpoint(
            &integration_tests::typed(&seed.partner_id),
            &integration_tests::typed(&other_id),
        )
        .await;
    let err = opened.expect_err("a transplanted secret must not open");
    assert!(err.detail().contains("did not open"), "{}", err.detail());
}

#[tokio::test]
async fn every_api_log_line_carries_lambdas_and_api_gateways_request_ids() {
    use tower::ServiceExt;
    let logs = Captured::json("info");
    let t = TestApp::start().await;
    // As Lambda hands it over: API Gateway's event, and the runtime's context.
    let mut request =
        lambda_http::request::from_str(include_str!("../events/http-offers-create.json"))
            .expect("a valid API Gateway v2 event");
    let mut context = lambda_http::Context::default();
    context.request_id = "8f5c0e1a-lambda-request".into();
    request.extensions_mut().insert(context);
    let request = request.map(|b| axum::body::Body::from(b.to_vec()));
    let response = api::router(t.app.clone()).oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "the sample's admin key is make dev's, not the test's"
    );
    let lines: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["span"]["name"] == "request")
        .collect();
    assert!(!lines.is_empty(), "{}", logs.output());
    for line in &lines {
        assert_eq!(
            line["span"]["request_id"], "8f5c0e1a-lambda-request",
            "{line}"
        );
        assert_eq!(
            line["span"]["api_request_id"], "req-offers-create",
            "{line}"
        );
    }
}
