//! The cost per conversion, **metered**: each scenario runs on its own stack
//! with `METER_CAPACITY` on, so every DynamoDB request reports the capacity
//! the table and each index consumed (transactions counted by AWS's rules
//! from their items: see `shared::metrics`), every SQS request its billed
//! 64 KiB chunks, and every log line the service writes is counted in bytes
//! as Lambda's JSON format writes it. Storage is a raw Scan of the table
//! after the scenario, sized by DynamoDB's rules (items and index entries,
//! 100 bytes of overhead each). Prices are us-east-1 list prices.

use integration_tests::receiver::{Receiver, Reply};
use integration_tests::{offer_body, TestApp};
use serde_json::json;
use shared::metrics::{index_entry_size, item_size, Metered, INDEXES};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// us-east-1 list prices (on-demand), November 2026.
const API_GATEWAY_PER_M: f64 = 1.00;
const LAMBDA_REQUEST_PER_M: f64 = 0.20;
const LAMBDA_ARM_GB_S: f64 = 0.000_013_333_4;
const LAMBDA_MEMORY_GB: f64 = 0.25;
const WRU_PER_M: f64 = 0.625;
const RRU_PER_M: f64 = 0.125;
const SQS_PER_M: f64 = 0.40;
const STORAGE_GB_MONTH: f64 = 0.25;
const PITR_GB_MONTH: f64 = 0.20;
const LOGS_INGEST_GB: f64 = 0.50;
/// The template's retention: what is stored is paid for this long.
const RETENTION_MONTHS: f64 = 400.0 / 30.44;

/// Conversions per scenario (the retried one: fewer, each waits for its retries).
const N: usize = 100;
const N_RETRIED: usize = 20;
/// The SQS trigger's `BatchSize` (template.yaml).
const BATCH: usize = 10;

/// Log bytes written while `COUNTING` is on (the bench's global subscriber).
pub static LOG_BYTES: AtomicU64 = AtomicU64::new(0);
pub static COUNTING: AtomicBool = AtomicBool::new(false);

/// CPU time this process has used so far, in ms (every thread, user and
/// system): `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// A writer that counts the bytes of each log line and drops them.
pub struct CountingWriter;

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if COUNTING.load(Ordering::Relaxed) {
            LOG_BYTES.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the functions' JSON subscriber, its lines counted. Call once, first.
pub fn count_logs() {
    // The functions' own subscriber with AWS_LAMBDA_LOG_FORMAT=JSON and the
    // template's INFO level (see `shared::telemetry::init_lambda_logs`).
    shared::telemetry::init_logs_with(|| CountingWriter, true, "info");
}

/// What one scenario consumed, per conversion.
struct Usage {
    name: &'static str,
    metered: Metered,
    api_calls: f64,
    api_ms: f64,
    deliver_invocations: f64,
    deliver_ms: f64,
    log_bytes: f64,
    /// CPU of the bench process: the service (API and worker) and the
    /// in-process load generator and partner receivers.
    cpu_ms: f64,
    /// Items and index entries.
    stored_bytes: f64,
    /// Items only: point-in-time recovery is billed on the table's data.
    table_bytes: f64,
    conversions: f64,
}

impl Usage {
    fn per(&self, x: f64) -> f64 {
        x / self.conversions
    }

    /// Storage and point-in-time recovery are the last two parts.
    fn dollars_per_m(&self) -> [(&'static str, f64); 8] {
        let m = &self.metered;
        let gb = 1024.0 * 1024.0 * 1024.0;
        [
            ("API Gateway", self.per(self.api_calls) * API_GATEWAY_PER_M),
            (
                "Lambda",
                self.per(self.api_calls + self.deliver_invocations) * LAMBDA_REQUEST_PER_M
                    + self.per(self.api_ms + self.deliver_ms) / 1000.0
                        * LAMBDA_MEMORY_GB
                        * LAMBDA_ARM_GB_S
                        * 1e6,
            ),
            ("DynamoDB writes", self.per(m.writes()) * WRU_PER_M),
            ("DynamoDB reads", self.per(m.reads()) * RRU_PER_M),
            ("SQS", self.per(m.sqs_billed_requests) * SQS_PER_M),
            (
                "storage (400 days)",
                self.per(self.stored_bytes) / gb * STORAGE_GB_MONTH * RETENTION_MONTHS * 1e6,
            ),
            (
                "PITR (400 days)",
                self.per(self.table_bytes) / gb * PITR_GB_MONTH * RETENTION_MONTHS * 1e6,
            ),
            ("logs", self.per(self.log_bytes) / gb * LOGS_INGEST_GB * 1e6),
        ]
    }
}

type Attrs = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// Every item of the table, as a raw Scan returns them.
pub(crate) async fn scan_all(t: &TestApp) -> anyhow::Result<Vec<Attrs>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = t
            .app
            .store
            .client()
            .scan()
            .table_name(t.app.store.table())
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

/// An item and its index entries as DynamoDB stores them, 100 bytes of
/// overhead each.
pub(crate) fn stored_size(item: &Attrs) -> usize {
    item_size(item)
        + 100
        + INDEXES
            .iter()
            .filter_map(|x| index_entry_size(item, x).map(|n| n + 100))
            .sum::<usize>()
}

/// Bytes the table stores now, items and index entries (DynamoDB's sizing
/// rules), from a raw Scan: (with index entries, items alone), and the
/// layout by kind of item.
async fn stored_bytes(t: &TestApp) -> anyhow::Result<((f64, f64), Vec<String>)> {
    let (mut total, mut table) = (0usize, 0usize);
    let mut kinds: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for item in scan_all(t).await? {
        let size = stored_size(&item);
        table += item_size(&item) + 100;
        total += size;
        let part = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .and_then(|v| v.split('#').next())
                .unwrap_or("?")
                .to_string()
        };
        let e = kinds
            .entry(format!("{}/{}", part("pk"), part("sk")))
            .or_default();
        e.0 += 1;
        e.1 += size;
    }
    let layout = kinds
        .into_iter()
        .map(|(k, (n, bytes))| format!("{k}: {n} items, {} B each", bytes / n.max(1)))
        .collect();
    Ok(((total as f64, table as f64), layout))
}

/// The first conversion's event, transaction and delivery as a raw Scan
/// returns them (every attribute, as stored), with each item's size.
async fn one_conversion(t: &TestApp) -> anyhow::Result<String> {
    let items = scan_all(t).await?;
    let s = |i: &Attrs, n: &str| {
        i.get(n)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    // Either name of an attribute (the compact layout's, or the long one).
    let either = |i: &Attrs, long: &str, short: &str| {
        let v = s(i, long);
        if v.is_empty() {
            s(i, short)
        } else {
            v
        }
    };
    // Transaction C0's first (and only) event, which holds the transaction,
    // or (the long layout) the transaction's own item and its last event;
    // and that event's delivery.
    let own = items
        .iter()
        .find(|i| s(i, "sk") == "TXN" && s(i, "pk").ends_with("#C0"));
    let event_id = match own {
        Some(txn) => either(txn, "last_event_id", "la"),
        None => items
            .iter()
            .find(|i| {
                s(i, "sk") == "EVENT"
                    && i.contains_key("txn")
                    && either(i, "transaction_id", "tx") == "C0"
            })
            .map(|i| s(i, "pk").trim_start_matches("EVENT#").to_string())
            .ok_or_else(|| anyhow::anyhow!("no transaction C0"))?,
    };
    let event_pk = format!("EVENT#{event_id}");
    let mut out = String::new();
    for item in items.iter().filter(|i| {
        s(i, "pk") == event_pk
            || own.is_some_and(|txn| std::ptr::eq(*i, txn))
            || (s(i, "sk") == "DELIVERY" && either(i, "event_id", "e") == event_id)
    }) {
        let json: serde_json::Value = serde_dynamo::from_item(item.clone())?;
        let mut line = format!(
            "{} ({} B; stored with DynamoDB's 100 B overhead and its index entries: {} B):\n",
            s(item, "pk").split('#').next().unwrap_or("?"),
            item_size(item),
            stored_size(item)
        );
        line.push_str(&serde_json::to_string_pretty(&json)?);
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

fn metered_diff(before: &Metered, after: &Metered) -> Metered {
    let diff = |a: &std::collections::BTreeMap<String, f64>,
                b: &std::collections::BTreeMap<String, f64>| {
        b.iter()
            .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
            .collect()
    };
    Metered {
        read_units: diff(&before.read_units, &after.read_units),
        write_units: diff(&before.write_units, &after.write_units),
        write_units_by_operation: diff(
            &before.write_units_by_operation,
            &after.write_units_by_operation,
        ),
        read_units_by_operation: diff(
            &before.read_units_by_operation,
            &after.read_units_by_operation,
        ),
        sqs_billed_requests: after.sqs_billed_requests - before.sqs_billed_requests,
        transaction_units_reported: after.transaction_units_reported
            - before.transaction_units_reported,
    }
}

pub(crate) async fn metered_app() -> TestApp {
    TestApp::start_with(integration_tests::Options {
        env: vec![("METER_CAPACITY", "true".into())],
        ..Default::default()
    })
    .await
}

/// A partner with one endpoint (a receiver that answers 200) and a click:
/// the set-up of the one-endpoint scenarios.
pub(crate) async fn one_endpoint(t: &TestApp) -> (Receiver, String) {
    let ok = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "one", "url": ok.url("/pb?tx={transaction_id}&p={payout}")})),
        )
        .await;
    let click = t.click(&seed, json!({"sub1": "a"})).await;
    (ok, click)
}

/// Delivers what is queued, up to `batch` messages per invocation (the SQS
/// trigger's batch size), timing each invocation.
pub(crate) async fn deliver_until(
    t: &TestApp,
    batch: usize,
    done: impl Fn() -> bool,
) -> (f64, f64) {
    let url = t.queue_url("DeliveryQueue");
    let arn = postback_local::queue_arn(&t.app, &url)
        .await
        .unwrap_or_default();
    let (mut invocations, mut ms) = (0.0, 0.0);
    let deadline = Instant::now() + Duration::from_secs(120);
    if batch > 1 {
        // Batched is a busy queue, or one read with a batching window: new
        // events' messages wait out their delay (the queue first) before a
        // batch is taken, as the event-source mapping's window would, so
        // that the batches are full. A sleep, not a look at the queue: the
        // meter would bill the look.
        let delay = shared::outbox::AHEAD_OF_WRITE_DELAY_SECONDS as u64;
        tokio::time::sleep(Duration::from_millis(delay * 1000 + 100)).await;
    }
    while !done() && Instant::now() < deadline {
        let t0 = Instant::now();
        let got = postback_local::poll_up_to(
            &t.worker,
            postback_local::Consumer::Deliveries,
            &url,
            &arn,
            1,
            batch,
        )
        .await
        .unwrap_or(0);
        if got > 0 {
            invocations += 1.0;
            ms += t0.elapsed().as_secs_f64() * 1000.0;
        }
    }
    (invocations, ms)
}

/// The scenario's usage from `before` on: metered units, logs, storage.
#[allow(clippy::too_many_arguments)]
async fn usage(
    t: &TestApp,
    name: &'static str,
    before: &Metered,
    api: (f64, f64),
    deliver: (f64, f64),
    logs_before: u64,
    cpu_before: f64,
    conversions: usize,
) -> anyhow::Result<(Usage, Vec<String>)> {
    let cpu = cpu_ms() - cpu_before;
    let metered = metered_diff(before, &t.app.requests.metered());
    let log_bytes = (LOG_BYTES.load(Ordering::Relaxed) - logs_before) as f64;
    let ((stored, table), layout) = stored_bytes(t).await?;
    Ok((
        Usage {
            name,
            metered,
            api_calls: api.0,
            api_ms: api.1,
            deliver_invocations: deliver.0,
            deliver_ms: deliver.1,
            log_bytes,
            cpu_ms: cpu,
            stored_bytes: stored,
            table_bytes: table,
            conversions: conversions as f64,
        },
        layout,
    ))
}

/// Conversions through `GET /postback`, timed; returns (calls, ms).
pub(crate) async fn convert(t: &TestApp, click: &str, prefix: &str, n: usize) -> (f64, f64) {
    let mut ms = 0.0;
    for i in 0..n {
        let t0 = Instant::now();
        let (s, _) = t
            .postback(&[
                ("click_id", click),
                ("event", "sale"),
                ("payout", "12.50"),
                ("transaction_id", &format!("{prefix}{i}")),
            ])
            .await;
        ms += t0.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(s, 200);
    }
    (n as f64, ms)
}

/// Runs every scenario; rows of the report and the table layout.
/// `service_cpu_ms`: the service's own CPU per 1,000 conversions plus
/// deliveries, measured on the local runner (see `service_cpu` in main.rs).
pub async fn scenarios(
    service_cpu_ms: f64,
) -> anyhow::Result<(Vec<(String, String, String)>, String)> {
    COUNTING.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut dump = String::new();

    // 1. One endpoint, delivered first try: one message per invocation (a
    // quiet queue), then batched (a busy one, or a batching window).
    for (batch, name) in [
        (
            1,
            "one endpoint, delivered first try, one message per invocation",
        ),
        (
            BATCH,
            "one endpoint, delivered first try, batched (up to 10 messages per invocation)",
        ),
    ] {
        let t = metered_app().await;
        let (ok, click) = one_endpoint(&t).await;
        // Warm functions: the offer and the endpoints are read once per
        // process (cached), and so is not this scenario's cost.
        convert(&t, &click, "W", 1).await;
        deliver_until(&t, batch, || ok.count() >= 1).await;
        let (stored_before, _) = stored_bytes(&t).await?;
        let (before, logs) = (t.app.requests.metered(), LOG_BYTES.load(Ordering::Relaxed));
        let cpu = cpu_ms();
        let api = convert(&t, &click, "C", N).await;
        let deliver = deliver_until(&t, batch, || ok.count() > N).await;
        let (mut u, layout) = usage(&t, name, &before, api, deliver, logs, cpu, N).await?;
        u.stored_bytes -= stored_before.0;
        u.table_bytes -= stored_before.1;
        if batch == 1 {
            dump.push_str(&format!("{}:\n  {}\n", u.name, layout.join("\n  ")));
            dump.push_str(&format!(
                "\nOne conversion's items, as a raw Scan returns them:\n{}\n",
                one_conversion(&t).await?
            ));
        }
        all.push(u);
    }
    // 2. Three endpoints.
    {
        let t = metered_app().await;
        let ok = Receiver::ok().await;
        let seed = t
            .seed(
                offer_body(),
                Some(json!({"name": "a", "url": ok.url("/a?tx={transaction_id}")})),
            )
            .await;
        for name in ["b", "c"] {
            t.admin_post(
                &format!("/partners/{}/endpoints", seed.partner_id),
                json!({"name": name, "url": ok.url(&format!("/{name}?tx={{transaction_id}}"))}),
            )
            .await;
        }
        let click = t.click(&seed, json!({})).await;
        let (stored_before, _) = stored_bytes(&t).await?;
        let (before, logs) = (t.app.requests.metered(), LOG_BYTES.load(Ordering::Relaxed));
        let cpu = cpu_ms();
        let api = convert(&t, &click, "T", N).await;
        let deliver = deliver_until(&t, BATCH, || ok.count() >= 3 * N).await;
        let (mut u, _) = usage(&t, "three endpoints", &before, api, deliver, logs, cpu, N).await?;
        u.stored_bytes -= stored_before.0;
        u.table_bytes -= stored_before.1;
        all.push(u);
    }
    // 3. A status change of a recorded transaction (pipeline events).
    {
        let t = metered_app().await;
        let ok = Receiver::ok().await;
        let seed = t
            .seed(
                offer_body(),
                Some(json!({"name": "s", "url": ok.url("/s?tx={transaction_id}&st={status}")})),
            )
            .await;
        for i in 0..N {
            t.admin_post("/events", json!({"transaction_id": format!("S{i}"), "event": "payout", "partner_id": seed.partner_id, "payout": "10.00", "status": "pending"}))
                .await;
        }
        deliver_until(&t, BATCH, || ok.count() >= N).await;
        let (stored_before, _) = stored_bytes(&t).await?;
        let (before, logs) = (t.app.requests.metered(), LOG_BYTES.load(Ordering::Relaxed));
        let cpu = cpu_ms();
        let mut ms = 0.0;
        for i in 0..N {
            let t0 = Instant::now();
            t.admin_post(
                "/events",
                json!({"transaction_id": format!("S{i}"), "event": "payout", "status": "approved"}),
            )
            .await;
            ms += t0.elapsed().as_secs_f64() * 1000.0;
        }
        let deliver = deliver_until(&t, BATCH, || ok.count() >= 2 * N).await;
        let (mut u, _) = usage(
            &t,
            "a status change",
            &before,
            (N as f64, ms),
            deliver,
            logs,
            cpu,
            N,
        )
        .await?;
        u.stored_bytes -= stored_before.0;
        u.table_bytes -= stored_before.1;
        all.push(u);
    }
    // 4. A delivery that fails twice, then succeeds.
    {
        let t = metered_app().await;
        let flaky = Receiver::start(
            (0..N_RETRIED)
                .flat_map(|_| [Reply::Status(500), Reply::Status(500), Reply::Status(200)])
                .collect(),
        )
        .await;
        let seed = t
            .seed(offer_body(), Some(json!({"name": "f", "url": flaky.url("/f?tx={transaction_id}"), "retry_schedule": [0, 1, 1]})))
            .await;
        let click = t.click(&seed, json!({})).await;
        let (stored_before, _) = stored_bytes(&t).await?;
        let (before, logs) = (t.app.requests.metered(), LOG_BYTES.load(Ordering::Relaxed));
        let cpu = cpu_ms();
        let mut api = (0.0, 0.0);
        let mut deliver = (0.0, 0.0);
        // One at a time, so that each delivery meets 500, 500, 200.
        for i in 0..N_RETRIED {
            let a = convert(&t, &click, &format!("F{i}-"), 1).await;
            let d = deliver_until(&t, BATCH, || flaky.count() >= 3 * (i + 1)).await;
            api = (api.0 + a.0, api.1 + a.1);
            deliver = (deliver.0 + d.0, deliver.1 + d.1);
        }
        let (mut u, _) = usage(
            &t,
            "fails twice, then delivered",
            &before,
            api,
            deliver,
            logs,
            cpu,
            N_RETRIED,
        )
        .await?;
        u.stored_bytes -= stored_before.0;
        u.table_bytes -= stored_before.1;
        all.push(u);
    }
    // 5. The partner reads: a history page (50 rows) and a CSV of N rows.
    let mut reads = Vec::new();
    {
        let t = metered_app().await;
        let ok = Receiver::ok().await;
        let seed = t
            .seed(
                offer_body(),
                Some(json!({"name": "h", "url": ok.url("/h?tx={transaction_id}")})),
            )
            .await;
        let click = t.click(&seed, json!({})).await;
        convert(&t, &click, "H", N).await;
        deliver_until(&t, BATCH, || ok.count() >= N).await;
        for (what, path, accept) in [
            (
                "a history page (50 rows)",
                format!("/partners/{}/deliveries?limit=50", seed.partner_id),
                "application/json",
            ),
            (
                "a CSV export (100 rows)",
                format!("/partners/{}/deliveries", seed.partner_id),
                "text/csv",
            ),
        ] {
            let before = t.app.requests.metered();
            let (s, _) = t
                .send(
                    t.http
                        .get(t.url(&path))
                        .bearer_auth(&seed.partner_key)
                        .header("accept", accept),
                )
                .await;
            assert_eq!(s, 200);
            let m = metered_diff(&before, &t.app.requests.metered());
            let dollars = API_GATEWAY_PER_M + m.reads() * RRU_PER_M + LAMBDA_REQUEST_PER_M;
            reads.push((what, m.reads(), dollars));
        }
    }
    COUNTING.store(false, Ordering::Relaxed);

    let mut rows = Vec::new();
    for u in &all {
        let parts = u.dollars_per_m();
        let total: f64 = parts.iter().map(|(_, d)| d).sum();
        // Requests alone: everything but storage and point-in-time recovery.
        let requests: f64 = parts
            .iter()
            .filter(|(k, _)| !k.starts_with("storage") && !k.starts_with("PITR"))
            .map(|(_, d)| d)
            .sum();
        let m = &u.metered;
        let indexes: Vec<String> = m
            .write_units
            .iter()
            .map(|(k, v)| format!("{k} {:.2}", u.per(*v)))
            .collect();
        rows.push((
            format!("Cost per 1M conversions, metered: {}", u.name),
            format!(
                "${requests:.2} in requests; ${total:.2} with 400 days of storage ({})",
                parts
                    .iter()
                    .map(|(k, d)| format!("{k} ${d:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "{:.0} conversions; per conversion {:.2} WRU ({}), {:.2} RRU, {:.2} SQS billed requests, {:.0} B stored ({:.0} B of items), {:.0} B of logs, {:.2} + {:.2} Lambda invocations ({:.1} + {:.1} ms), {:.0} ms of CPU per 1,000 conversions (bench process: service, load generator and receivers); DynamoDB Local reported {:.2} units for the transactions, counted {:.2} by AWS's rules",
                u.conversions,
                u.per(m.writes()),
                indexes.join(", "),
                u.per(m.reads()),
                u.per(m.sqs_billed_requests),
                u.per(u.stored_bytes),
                u.per(u.table_bytes),
                u.per(u.log_bytes),
                u.per(u.api_calls),
                u.per(u.deliver_invocations),
                u.per(u.api_ms),
                u.per(u.deliver_ms),
                u.per(u.cpu_ms) * 1000.0,
                u.per(m.transaction_units_reported),
                u.per(m.write_units_by_operation.get("DynamoDB.TransactWriteItems").copied().unwrap_or(0.0)),
            ),
        ));
    }
    // The targets, against the one-endpoint scenarios.
    if let [single, batched, ..] = &all[..] {
        let requests = |u: &Usage| -> f64 {
            u.dollars_per_m()
                .iter()
                .filter(|(k, _)| !k.starts_with("storage") && !k.starts_with("PITR"))
                .map(|(_, d)| d)
                .sum()
        };
        let verdict = |measured: f64, target: f64, unit: &str, digits: usize| {
            let show = |x: f64| match unit {
                "$" => format!("${x:.2}"),
                _ => format!("{x:.digits$}{unit}"),
            };
            if measured <= target {
                format!("{}: met", show(measured))
            } else {
                format!("{}: missed by {}", show(measured), show(measured - target))
            }
        };
        let (one, many) = (
            format!("the row \"{}\"", single.name),
            format!("the row \"{}\"", batched.name),
        );
        let cpu_row =
            "the row \"Service CPU per 1,000 conversions plus their deliveries\"".to_string();
        let targets = [
            (
                "≤ $6.00 per 1M conversions in requests, one message per invocation",
                verdict(requests(single), 6.0, "$", 2),
                one.clone(),
            ),
            (
                "≤ $5.00 per 1M conversions in requests, batched",
                verdict(requests(batched), 5.0, "$", 2),
                many,
            ),
            (
                "≤ 7 WRU per conversion",
                verdict(single.per(single.metered.writes()), 7.0, " WRU", 2),
                one.clone(),
            ),
            (
                "≤ 2 RRU per conversion",
                verdict(single.per(single.metered.reads()), 2.0, " RRU", 2),
                one.clone(),
            ),
            (
                "≤ 1.2 KB stored per conversion",
                verdict(single.per(single.stored_bytes), 1228.8, " B", 0),
                format!("{one}: items and index entries with DynamoDB's 100 B overhead each"),
            ),
            (
                "≤ 1 KB of logs per conversion",
                verdict(single.per(single.log_bytes), 1024.0, " B", 0),
                one,
            ),
            (
                "≤ 1,000 ms of CPU per 1,000 conversions plus deliveries",
                verdict(service_cpu_ms, 1000.0, " ms", 0),
                cpu_row,
            ),
        ];
        for (what, verdict, source) in targets {
            rows.push((format!("Target: {what}"), verdict, format!("from {source}")));
        }
    }
    for (what, rru, dollars) in reads {
        rows.push((
            format!("Cost per 1M reads, metered: {what}"),
            format!("${dollars:.2}"),
            format!("{rru:.1} RRU each, plus the API Gateway request and the Lambda invocation"),
        ));
    }
    Ok((rows, dump))
}
