//! `postback-bench --cpu-per-call`: how many AWS calls a conversion with its
//! delivery makes, and what one call costs this process in CPU: a DynamoDB
//! `GetItem` and an SQS `SendMessage` through the service's own clients,
//! then the same two requests sent by a bare HTTP client (no SDK, no
//! signature), to split the SDK's share from HTTP and the kernel's. Calls
//! are sequential, `CALLS` of each, on a warm client; the stand-ins are
//! other processes, so only the caller's CPU is counted.

use crate::{cost, process_cpu_ms, Report};
use integration_tests::TestApp;
use shared::ids::EventId;

const CALLS: usize = 1_000;

/// CPU of this process per call of `call`, in µs, over `CALLS` calls.
async fn per_call<F, Fut>(mut call: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Warm: connections, credentials, endpoint resolution.
    for i in 0..20 {
        call(i).await?;
    }
    let pid = std::process::id();
    let before = process_cpu_ms(pid);
    for i in 0..CALLS {
        call(i).await?;
    }
    Ok((process_cpu_ms(pid) - before) * 1000.0 / CALLS as f64)
}

/// The AWS calls the service makes per conversion with its delivery (one
/// endpoint, delivered first try, one message per invocation), by operation,
/// counted by its own clients' interceptor; the local runner's SQS pollers
/// stand in for the Lambda event-source mapping (`ReceiveMessage`,
/// `DeleteMessageBatch`), which in AWS are not the function's calls.
async fn calls_per_conversion(t: &TestApp, report: &mut Report) -> anyhow::Result<()> {
    const N: usize = 50;
    let (ok, click) = cost::one_endpoint(t).await;
    cost::convert(t, &click, "W", 1).await;
    cost::deliver_until(t, 1, || ok.count() >= 1).await;
    let before = t.app.requests.snapshot();
    cost::convert(t, &click, "C", N).await;
    cost::deliver_until(t, 1, || ok.count() > N).await;
    let after = t.app.requests.snapshot();
    let mut total = 0.0;
    let mut by_op = Vec::new();
    for (op, n) in &after {
        let n = (n - before.get(op).copied().unwrap_or(0)) as f64 / N as f64;
        if n > 0.0 {
            total += n;
            by_op.push(format!("{op} {n:.2}"));
        }
    }
    report.add(
        "AWS calls per conversion with its delivery",
        format!("{total:.2}"),
        &format!(
            "{N} conversions, one endpoint, delivered first try, one message per invocation, counted by the service's clients: {}",
            by_op.join(", ")
        ),
    );
    Ok(())
}

pub async fn cpu_per_call(report: &mut Report) -> anyhow::Result<()> {
    // One stack for both: the calls per conversion, then the calls alone.
    let t = TestApp::start().await;
    calls_per_conversion(&t, report).await?;
    let app = t.app.clone();
    let queue_url = app.config.delivery_queue_url.clone();
    let table = app.config.table_name.clone();

    let get = per_call(|_| {
        let app = app.clone();
        async move {
            app.store.get_event(&EventId::random("evt")).await?;
            Ok(())
        }
    })
    .await?;
    report.add(
        "CPU per DynamoDB GetItem through the service's client",
        format!("{get:.0} µs"),
        &format!("{CALLS} sequential consistent reads of a missing event (Store::get_event)"),
    );

    let send = per_call(|i| {
        let (app, queue_url) = (app.clone(), queue_url.clone());
        async move {
            app.queue
                .send(&queue_url, &format!("{{\"n\":{i}}}"), 0)
                .await?;
            Ok(())
        }
    })
    .await?;
    report.add(
        "CPU per SQS SendMessage through the service's client",
        format!("{send:.0} µs"),
        &format!("{CALLS} sequential sends of a 10-byte body (Queue::send)"),
    );

    // The same two requests without the SDK: bare reqwest POSTs of the JSON
    // protocol. The stand-ins check that a signature is present, not that it
    // is right.
    let http = reqwest::Client::new();
    let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")?;
    let raw = per_call(|_| {
        let body = serde_json::json!({
            "TableName": table,
            "Key": {"pk": {"S": format!("EVENT#{}", EventId::random("evt"))}, "sk": {"S": "EVENT"}},
            "ConsistentRead": true,
        });
        bare(
            &http,
            &dynamodb,
            "dynamodb",
            "DynamoDB_20120810.GetItem",
            body,
        )
    })
    .await?;
    report.add(
        "CPU per DynamoDB GetItem by a bare HTTP client",
        format!("{raw:.0} µs"),
        &format!("{CALLS} sequential POSTs of the same request by reqwest, no SDK, no signing"),
    );
    let sqs = std::env::var("AWS_ENDPOINT_URL_SQS")?;
    let raw_send = per_call(|i| {
        let body =
            serde_json::json!({"QueueUrl": queue_url, "MessageBody": format!("{{\"n\":{i}}}")});
        bare(&http, &sqs, "sqs", "AmazonSQS.SendMessage", body)
    })
    .await?;
    report.add(
        "CPU per SQS SendMessage by a bare HTTP client",
        format!("{raw_send:.0} µs"),
        &format!("{CALLS} sequential POSTs of the same request by reqwest, no SDK, no signing"),
    );
    Ok(())
}

/// One JSON-protocol request to a stand-in by a bare HTTP client, with a
/// well-formed but unchecked signature header.
async fn bare(
    http: &reqwest::Client,
    endpoint: &str,
    service: &str,
    target: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let r = http
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=local/20261127/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body.to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "{target}: {}", r.status());
    r.bytes().await?;
    Ok(())
}
