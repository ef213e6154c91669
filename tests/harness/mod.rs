//! Integration-test harness: every test gets its own table and queues,
//! created from template.yaml on the local stand-ins (`make test` starts them
//! and exports `AWS_ENDPOINT_URL_*`), the real router on 127.0.0.1:0, and
//! real HTTP receivers on 127.0.0.1.

pub mod browser;
pub mod capture;
pub mod faults;
pub mod receiver;
pub mod runner;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use deliver::Worker;
use postback_local::provision::{provision_with, Provisioned};
use serde_json::{json, Value};
use shared::config::Config;
use shared::App;

/// The admin key tests use.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// The single source of the table and queue definitions.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// One isolated copy of the system.
pub struct TestApp {
    pub app: Arc<App>,
    pub worker: Arc<Worker>,
    pub base: String,
    pub stack: Provisioned,
    pub http: reqwest::Client,
}

/// Options of a test stack.
#[derive(Clone)]
pub struct Options {
    pub allow_private_targets: bool,
    pub cache_seconds: u64,
    /// SDK attempt and operation timeouts in ms (the service's defaults if None).
    pub aws_timeouts_ms: Option<(u64, u64)>,
    /// DynamoDB and SQS endpoints to use instead of the stand-ins' (proxies).
    pub endpoints: Option<(String, String)>,
    /// Further environment of the service (`RETENTION_DAYS`, ...).
    pub env: Vec<(&'static str, String)>,
    /// Template parameters the stack is provisioned with, instead of their
    /// defaults (`sam deploy --parameter-overrides`).
    pub template_parameters: Vec<(&'static str, &'static str)>,
    /// A table as an earlier version left it: without the marker that says
    /// no transaction is stored in an item of its own (`layout.rs`), so
    /// both places are read and `COMPACT_ITEMS=false` begins them there.
    pub earlier_table: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_private_targets: true,
            cache_seconds: 30,
            aws_timeouts_ms: None,
            endpoints: None,
            env: Vec::new(),
            template_parameters: Vec::new(),
            earlier_table: false,
        }
    }
}

fn require_stand_ins() {
    if std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_err()
        && std::env::var("AWS_ENDPOINT_URL").is_err()
    {
        panic!("integration tests need the local stand-ins: run `make test` (it starts them and sets AWS_ENDPOINT_URL_*)");
    }
}

/// A fresh stack prefix.
pub fn unique_prefix() -> String {
    format!("t{}", &shared::ids::ClickId::random()[..12])
}

impl TestApp {
    /// A new isolated stack with default options.
    pub async fn start() -> TestApp {
        Self::start_with(Options::default()).await
    }

    /// A new isolated stack.
    pub async fn start_with(options: Options) -> TestApp {
        require_stand_ins();
        // The service's logs, shown by the test runner when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        let sdk = aws_config::load_from_env().await;
        let stack = provision_with(
            TEMPLATE,
            &options.template_parameters,
            &unique_prefix(),
            &aws_sdk_dynamodb::Client::new(&sdk),
            &aws_sdk_sqs::Client::new(&sdk),
            &aws_sdk_kms::Client::new(&sdk),
        )
        .await
        .expect("provisioning the test stack from template.yaml");
        if options.earlier_table {
            let table = stack.env.get("TABLE_NAME").expect("the stack's table");
            aws_sdk_dynamodb::Client::new(&sdk)
                .delete_item()
                .table_name(table)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S("META#LAYOUT".into()),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S("LAYOUT".into()),
                )
                .send()
                .await
                .expect("removing the layout marker");
        }
        Self::on_stack(stack, options, None).await
    }

    /// An app over an existing stack; `delivery_queue_url` overrides the queue (to simulate SQS failing).
    pub async fn on_stack(
        stack: Provisioned,
        options: Options,
        delivery_queue_url: Option<String>,
    ) -> TestApp {
        let mut env: BTreeMap<String, String> = stack.env.clone();
        env.insert("ADMIN_API_KEY".into(), ADMIN_KEY.into());
        env.insert(
            "ALLOW_PRIVATE_TARGETS".into(),
            options.allow_private_targets.to_string(),
        );
        env.insert(
            "CONFIG_CACHE_SECONDS".into(),
            options.cache_seconds.to_string(),
        );
        for (k, v) in &options.env {
            env.insert(k.to_string(), v.clone());
        }
        if let Some(url) = delivery_queue_url {
            env.insert("DELIVERY_QUEUE_URL".into(), url);
        }
        if let Some((attempt, operation)) = options.aws_timeouts_ms {
            env.insert("AWS_ATTEMPT_TIMEOUT_MS".into(), attempt.to_string());
            env.insert("AWS_OPERATION_TIMEOUT_MS".into(), operation.to_string());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration");
        let (ddb, sqs) = match &options.endpoints {
            Some((d, s)) => (Some(d.as_str()), Some(s.as_str())),
            None => (None, None),
        };
        let app = App::with_endpoints(config, ddb, sqs).await.expect("app");
        let worker = Arc::new(Worker::new(app.clone()).expect("worker"));
        let (addr, _server) = postback_local::serve(app.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("serve");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestApp {
            app,
            worker,
            base: format!("http://{addr}"),
            stack,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn queue_url(&self, logical_id: &str) -> String {
        self.stack.queue_urls[logical_id].clone()
    }

    /// POST JSON with the admin key; returns status and JSON body.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(ADMIN_KEY)
                .json(&body),
        )
        .await
    }

    /// GET with the admin key.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path)).bearer_auth(ADMIN_KEY))
            .await
    }

    /// Sends any request and returns status and JSON body (Null if none).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request to the router");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET /postback with query pairs.
    pub async fn postback(&self, pairs: &[(&str, &str)]) -> (u16, Value) {
        self.send(self.http.get(self.url("/postback")).query(pairs))
            .await
    }

    /// An offer, a partner with its key, and optionally an endpoint to `endpoint_url`.
    pub async fn seed(&self, offer: Value, endpoint: Option<Value>) -> Seed {
        let (s, o) = self.admin_post("/offers", offer).await;
        assert_eq!(s, 201, "offer: {o}");
        let (s, p) = self
            .admin_post("/partners", json!({"name": "Publisher"}))
            .await;
        assert_eq!(s, 201, "partner: {p}");
        let partner_id = p["id"].as_str().unwrap().to_string();
        let endpoint_id = match endpoint {
            Some(e) => {
                let (s, e) = self
                    .admin_post(&format!("/partners/{partner_id}/endpoints"), e)
                    .await;
                assert_eq!(s, 201, "endpoint: {e}");
                Some(e["id"].as_str().unwrap().to_string())
            }
            None => None,
        };
        Seed {
            offer_id: o["id"].as_str().unwrap().to_string(),
            partner_id,
            partner_key: p["api_key"].as_str().unwrap().to_string(),
            endpoint_id,
        }
    }

    /// A click through `POST /clicks`.
    pub async fn click(&self, seed: &Seed, attributes: Value) -> String {
        let (s, c) = self
            .admin_post("/clicks", json!({"offer_id": seed.offer_id, "partner_id": seed.partner_id, "attributes": attributes}))
            .await;
        assert_eq!(s, 201, "click: {c}");
        c["click_id"].as_str().unwrap().to_string()
    }

    /// Every message now visible on a queue, or in its delay, without
    /// consuming it (each is received, then made visible again).
    pub async fn peek(&self, logical_id: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let url = self.queue_url(logical_id);
        // Messages sent with a delay (a retry, a new event's if
        // `AHEAD_OF_WRITE_DELAY_SECONDS` is set): wait for those in their
        // delay, so that a look sees them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while delayed_on(&self.app, &url).await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sqs = self.app.queue.client();
        let mut all = Vec::new();
        for _ in 0..5 {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .message_attribute_names("All")
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            all.extend(msgs);
        }
        for m in &all {
            if let Some(h) = &m.receipt_handle {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
        all
    }

    /// An endpoint's item exactly as the table holds it (secrets as sealed).
    pub async fn raw_endpoint_item(
        &self,
        partner_id: &str,
        endpoint_id: &str,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        self.raw_item(
            &format!("PARTNER#{partner_id}"),
            &format!("ENDPOINT#{endpoint_id}"),
        )
        .await
        .expect("the endpoint's item")
    }

    /// A recorded event, by the id a response gave (`conversion_id`, `event_id`).
    pub async fn event(&self, id: &str) -> shared::domain::Event {
        self.app
            .store
            .get_event(&typed(id))
            .await
            .expect("reading an event")
            .expect("the event is stored")
    }

    /// The deliveries an event fanned out to, in its order.
    pub async fn deliveries_of(&self, event_id: &str) -> Vec<shared::lifecycle::Delivery> {
        let event = self.event(event_id).await;
        self.app
            .store
            .deliveries_of_event(&event)
            .await
            .expect("reading deliveries")
    }

    /// The queue messages of an event's deliveries, as its recording sent
    /// them: a delivery its event owes (created by its claim) says so.
    pub async fn messages_of(&self, event_id: &str) -> Vec<String> {
        let event = self.event(event_id).await;
        self.deliveries_of(event_id)
            .await
            .iter()
            .map(|d| {
                if event.owed.contains_key(&d.id) {
                    shared::fanout::owed_message(d)
                } else {
                    shared::fanout::message(d)
                }
            })
            .collect()
    }

    /// An item exactly as the table holds it, if there is one.
    pub async fn raw_item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.app
            .store
            .client()
            .get_item()
            .table_name(self.app.store.table())
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("reading an item")
            .item
    }

    /// Approximate number of messages on a queue (visible + in flight + delayed).
    pub async fn queue_depth(&self, logical_id: &str) -> i64 {
        depth_of(&self.app, &self.queue_url(logical_id)).await
    }

    /// Runs the local event-source mapping on a queue until `done` holds or `limit` passes.
    pub async fn pump_until<F, Fut>(&self, logical_id: &str, limit: Duration, mut done: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let url = self.queue_url(logical_id);
        let arn = self.stack.queue_arns[logical_id].clone();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done().await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let consumer = if logical_id.starts_with("Events") {
                postback_local::Consumer::PipelineEvents
            } else if logical_id == "SlowDeliveryQueue" {
                postback_local::Consumer::SlowDeliveries
            } else {
                postback_local::Consumer::Deliveries
            };
            let fast = postback_local::poll_once(&self.worker, consumer, &url, &arn, 1);
            if logical_id == "DeliveryQueue" {
                // Both lanes, as the deployed stack runs both functions.
                let (slow_url, slow_arn) = (
                    self.queue_url("SlowDeliveryQueue"),
                    self.stack.queue_arns["SlowDeliveryQueue"].clone(),
                );
                // No long poll here: the fast lane's bounds the loop.
                let slow = postback_local::poll_once(
                    &self.worker,
                    postback_local::Consumer::SlowDeliveries,
                    &slow_url,
                    &slow_arn,
                    0,
                );
                let _ = tokio::join!(fast, slow);
            } else {
                let _ = fast.await;
            }
        }
    }

    /// Runs the delivery queue's event-source mapping for `duration`.
    pub async fn pump_for(&self, logical_id: &str, duration: Duration) {
        self.pump_until(logical_id, duration, || async { false })
            .await;
    }
}

/// Approximate number of messages on the queue at `url` (visible + in flight + delayed).
pub async fn depth_of(app: &App, url: &str) -> i64 {
    counted(
        app,
        url,
        &[
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ],
    )
    .await
}

/// Messages on the queue at `url` still in their delay (a new event's, for
/// a second: the queue first).
pub async fn delayed_on(app: &App, url: &str) -> i64 {
    counted(
        app,
        url,
        &[QueueAttributeName::ApproximateNumberOfMessagesDelayed],
    )
    .await
}

/// Messages on the queue at `url` that a consumer can receive now or after
/// their delay (visible + delayed; not those in flight).
pub async fn waiting_on(app: &App, url: &str) -> i64 {
    counted(
        app,
        url,
        &[
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ],
    )
    .await
}

/// The sum of the queue's count attributes `which`.
async fn counted(app: &App, url: &str, which: &[QueueAttributeName]) -> i64 {
    let out = app
        .queue
        .client()
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(which.to_vec()))
        .send()
        .await
        .expect("queue attributes");
    out.attributes
        .unwrap_or_default()
        .values()
        .map(|v| v.parse::<i64>().unwrap_or(0))
        .sum()
}

/// What `TestApp::seed` created.
#[derive(Debug, Clone)]
pub struct Seed {
    pub offer_id: String,
    pub partner_id: String,
    pub partner_key: String,
    pub endpoint_id: Option<String>,
}

/// A plain offer body.
pub fn offer_body() -> Value {
    json!({"name": "Loans", "advertiser": "Acme, Inc.", "landing_url": "https://acme.example/lp?src=net",
           "default_payout": "10.00", "currency": "USD"})
}

/// AWS requests sent between two snapshots of `App::requests`, by operation.
/// An SQS batch of the given message bodies, as the Lambda trigger hands it over.
pub fn sqs_batch(
    bodies: impl IntoIterator<Item = String>,
) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    for (i, body) in bodies.into_iter().enumerate() {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(format!("m{i}"));
        m.body = Some(body);
        event.records.push(m);
    }
    event
}

pub fn request_diff(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// A typed id from text a test holds (an id read from an answer): panics
/// when it breaks the id's rule.
pub fn typed<T: shared::ids::TypedId>(raw: impl AsRef<str>) -> T {
    T::parse_as(T::FIELD, raw.as_ref()).unwrap_or_else(|e| panic!("{:?}: {e}", raw.as_ref()))
}
