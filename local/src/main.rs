//! `postback-local [--provision]`: runs the API on 127.0.0.1:$PORT (default
//! 3000) and the SQS event-source mapping for the delivery and events queues.
//! With `--provision`, first creates the table and queues of template.yaml on
//! the local stand-ins and takes their names from it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use postback_local::Consumer;
use shared::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    shared::telemetry::init_metrics("local");
    let provision = std::env::args().any(|a| a == "--provision");
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
    let app = shared::App::new(config).await?;
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
    println!("\n  Postback service on http://{addr}  (health: curl http://{addr}/health)\n");
    tokio::select! {
        _ = server => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}
