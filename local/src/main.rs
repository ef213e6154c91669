//! `postback-local [--provision] [--write-env FILE] [--fill-events DIR]`: runs
//! the API on 127.0.0.1:$PORT (default 3000) and the SQS event-source mapping
//! for the delivery queue, the slow delivery queue and the events queue. With `--provision`, first creates the
//! table, queues and KMS key of template.yaml on the local stand-ins and takes
//! their names from it. `--write-env` writes the functions' environment as a
//! dotenv file (for `cargo lambda watch --env-file`); `--fill-events` seeds
//! a partner, endpoint, click and conversion, writes `events/*.json` with
//! live ids into DIR (for `cargo lambda invoke --data-file`) and exits.
//!
//! `postback-local --move-transactions`: moves the transactions of the table
//! `TABLE_NAME` (any DynamoDB the environment's credentials and
//! `AWS_ENDPOINT_URL` reach, an AWS stack's included) that were begun in
//! items of their own into their first events' items, marks the table so
//! that each transaction is read with one key instead of two, and exits
//! (see `shared/src/store/layout.rs`). It waits `MOVE_SETTLE_SECONDS`
//! (default 90) after marking the table, for every running process to stop
//! beginning transactions the old way. Run it once every process of an
//! earlier version has stopped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use postback_local::Consumer;
use shared::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    shared::telemetry::init_metrics("local");
    let args: Vec<String> = std::env::args().collect();
    let provision = args.iter().any(|a| a == "--provision");
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if args.iter().any(|a| a == "--move-transactions") {
        return move_transactions().await;
    }
    let write_env = value_of("--write-env");
    let fill_events = value_of("--fill-events");
    let mut resolved = std::collections::BTreeMap::new();
    if provision {
        let template_path =
            std::env::var("TEMPLATE_PATH").unwrap_or_else(|_| "template.yaml".into());
        let prefix = std::env::var("STACK_PREFIX").unwrap_or_else(|_| "postback-dev".into());
        let template = std::fs::read_to_string(&template_path)?;
        let sdk = aws_config::load_from_env().await;
        let stack = postback_local::provision::provision(
            &template,
            &prefix,
            &aws_sdk_dynamodb::Client::new(&sdk),
            &aws_sdk_sqs::Client::new(&sdk),
            &aws_sdk_kms::Client::new(&sdk),
        )
        .await?;
        tracing::info!(tables = ?stack.tables, queues = ?stack.queue_urls, "provisioned from {template_path}");
        resolved = stack.env;
    }
    // Locally, postbacks to receivers on this machine are the point.
    resolved
        .entry("ALLOW_PRIVATE_TARGETS".into())
        .or_insert_with(|| "true".into());
    let config =
        Config::from_lookup(|k| std::env::var(k).ok().or_else(|| resolved.get(k).cloned()))?;
    config.require_admin_keys()?;
    let admin_key = std::env::var("ADMIN_API_KEY").unwrap_or_default();
    if let Some(path) = &write_env {
        std::fs::write(
            path,
            postback_local::lambda_events::env_file(&resolved, &admin_key),
        )?;
        tracing::info!("wrote the functions' environment to {path}");
    }
    let app = shared::App::new(config).await?;
    if let Some(dir) = &fill_events {
        let receiver = std::env::var("FILL_RECEIVER_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:4000/pb".into());
        let key_file = std::path::Path::new(dir)
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("lambda-partner.key");
        let ids =
            postback_local::lambda_events::seed(&app, &admin_key, &receiver, &key_file).await?;
        let prefix = std::env::var("STACK_PREFIX").unwrap_or_else(|_| "postback-dev".into());
        let n = postback_local::lambda_events::fill_dir(
            std::path::Path::new("events"),
            std::path::Path::new(dir),
            &ids,
            &admin_key,
            &prefix,
        )?;
        println!("  {n} events with live ids in {dir} (partner lambda-partner, endpoint {}, click {}, conversion {})", ids.endpoint_id, ids.click_id, ids.event_id);
        return Ok(());
    }
    let worker = Arc::new(deliver::Worker::new(app.clone())?);

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let (addr, server) =
        postback_local::serve(app.clone(), SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let pollers: usize = std::env::var("LOCAL_POLLERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(postback_local::DEFAULT_POLLERS);
    let every = std::env::var("RECONCILE_SECONDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let mut tasks = postback_local::spawn_event_source(
        worker.clone(),
        Consumer::Deliveries,
        app.config.delivery_queue_url.clone(),
        pollers,
    );
    // The slow lane is its own function in AWS (its own MaximumConcurrency):
    // here its own pollers.
    if let Some(slow) = &app.config.slow_delivery_queue_url {
        tasks.extend(postback_local::spawn_event_source(
            worker.clone(),
            Consumer::SlowDeliveries,
            slow.clone(),
            pollers,
        ));
    }
    if let Some(events) = &app.config.events_queue_url {
        tasks.extend(postback_local::spawn_event_source(
            worker.clone(),
            Consumer::PipelineEvents,
            events.clone(),
            pollers,
        ));
    }
    tasks.push(postback_local::spawn_reconciler(
        app.clone(),
        std::time::Duration::from_secs(every),
    ));
    tracing::info!("postback service listening on http://{addr}");
    println!("\n  Postback service on http://{addr}  (health: curl http://{addr}/health)\n  Web console: http://{addr}/console\n");
    tokio::select! {
        _ = server => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// `--move-transactions`.
async fn move_transactions() -> anyhow::Result<()> {
    let table = std::env::var("TABLE_NAME")
        .map_err(|_| anyhow::anyhow!("TABLE_NAME names the table whose transactions to move"))?;
    let settle = match std::env::var("MOVE_SETTLE_SECONDS") {
        Ok(v) => std::time::Duration::from_secs(v.parse().map_err(|_| {
            anyhow::anyhow!("MOVE_SETTLE_SECONDS must be a whole number of seconds, not {v:?}")
        })?),
        Err(_) => shared::store::layout::RECHECK + std::time::Duration::from_secs(30),
    };
    let sdk = aws_config::load_from_env().await;
    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
    tracing::info!(table, settle_s = settle.as_secs(), "moving transactions");
    let report = store.move_transactions(settle).await?;
    println!(
        "{table}: {} items scanned, {} transactions moved into their first events' items, {} dropped (their first event's item held them already); every transaction is now read with one key",
        report.scanned, report.moved, report.dropped
    );
    Ok(())
}
