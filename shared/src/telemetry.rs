//! Logs and metrics.
//!
//! Logs: in Lambda, `lambda_runtime`'s own subscriber (see [`init_lambda`]), so
//! the function's log-level and log-format settings (`AWS_LAMBDA_LOG_LEVEL`,
//! `AWS_LAMBDA_LOG_FORMAT`) apply; locally, readable text ([`init`]), level
//! from `RUST_LOG`, default `info`.
//!
//! Metrics: CloudWatch Embedded Metric Format lines on stdout, written by
//! `metrics_cloudwatch_embedded` behind the `metrics` facade. Lambda's log
//! agent turns them into metrics; no `PutMetricData` call, no extra latency.
//! Every metric here has at most one bounded dimension (an outcome, an error
//! code, a queue): never a click, an event or a delivery.

use metrics_cloudwatch_embedded::Collector;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

use crate::error::Error;

/// Installs the local (readable) subscriber once; later calls are no-ops.
/// `LOG_FORMAT=json` switches it to JSON lines.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// The functions' log subscriber in Lambda, with lambda_runtime's own
/// settings (level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else
/// `info`; JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON`, as the
/// template's `LoggingConfig` sets; no time, Lambda adds it; no target), but
/// each span's fields written **once** per line: the list of spans (the
/// runtime's, with Lambda's request id, then ours, with the delivery, event
/// or API Gateway request id), not the current span again beside it.
pub fn init_lambda_logs() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Lambda's levels, as tracing spells them (it has no FATAL).
    let level = match std::env::var("AWS_LAMBDA_LOG_LEVEL") {
        Ok(l) if l.eq_ignore_ascii_case("fatal") => "error".to_string(),
        Ok(l) => l.to_ascii_lowercase(),
        Err(_) => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    };
    init_logs_with(std::io::stdout, json, &level);
}

/// As [`init_lambda_logs`] with any writer and filter directives (a level,
/// or `RUST_LOG`'s syntax); `make bench` counts the bytes of these very lines.
pub fn init_logs_with<W>(writer: W, json: bool, directives: &str)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing::subscriber::set_global_default(logs_subscriber(writer, json, directives));
}

/// The subscriber of [`init_logs_with`], not installed.
pub fn logs_subscriber<W>(
    writer: W,
    json: bool,
    directives: &str,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let collector = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(EnvFilter::new(directives))
        .with_writer(writer);
    if json {
        Box::new(
            collector
                .json()
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        )
    } else {
        Box::new(collector.finish())
    }
}

/// In Lambda, after [`init_lambda_logs`]
/// (the runtime's own set-up, so the function's `LoggingConfig` applies): a
/// panic hook that logs the panic as an error line with its location, and
/// the metrics collector.
pub fn init_lambda(function: &'static str) {
    log_panics();
    init_metrics(function);
}

/// A panic is logged as one error line (message and location) before the
/// runtime turns it into a failed invocation, so it is never silent.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(panic = %message, location = %location, "panicked");
        metrics::counter!(metric::PANICS).increment(1);
        if std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_err() {
            default(info);
        }
    }));
}

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Names of the metrics, in the namespace `METRICS_NAMESPACE` (default
/// `PostbackService`; the template sets `Postback/<stack name>`).
pub mod metric {
    /// Conversions by `Outcome`: recorded, duplicate, refused, failed.
    pub const CONVERSIONS: &str = "Conversions";
    /// Refused conversions by `Reason` (the error code answered).
    pub const CONVERSIONS_REFUSED: &str = "ConversionsRefused";
    /// Deliveries by `Outcome` after an attempt or a decision: delivered,
    /// failed, retrying, held, parked, cancelled.
    pub const DELIVERIES: &str = "Deliveries";
    /// Time from request to answer of each attempt (milliseconds).
    pub const ATTEMPT_LATENCY: &str = "AttemptLatency";
    /// Open deliveries the reconciler found overdue and re-queued.
    pub const OVERDUE_DELIVERIES: &str = "OverdueDeliveries";
    /// Messages moved to a dead-letter queue by us, by `Queue`.
    pub const DEAD_LETTERED: &str = "DeadLettered";
    /// AWS calls refused for a configuration reason (IAM, missing table);
    /// the log line names the code.
    pub const CONFIGURATION_ERRORS: &str = crate::error::CONFIGURATION_ERRORS_METRIC;
    /// Panics caught by the runtime or a worker.
    pub const PANICS: &str = "Panics";
}

/// Installs the EMF collector once (later calls are no-ops) and declares
/// units. `function` is written as a property of every document.
pub fn init_metrics(function: &'static str) {
    if COLLECTOR.get().is_some() {
        return;
    }
    let namespace =
        std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "PostbackService".to_string());
    let Ok(collector) = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace)
        .init()
    else {
        // Another recorder is installed (a test's): keep it.
        return;
    };
    collector.set_property("function", function);
    let _ = COLLECTOR.set(collector);
    metrics::describe_histogram!(
        metric::ATTEMPT_LATENCY,
        metrics::Unit::Milliseconds,
        "time from request to answer of one attempt"
    );
    for (name, what) in [
        (metric::CONVERSIONS, "conversions by outcome"),
        (metric::CONVERSIONS_REFUSED, "refused conversions by reason"),
        (metric::DELIVERIES, "deliveries by outcome"),
        (metric::OVERDUE_DELIVERIES, "overdue deliveries re-queued"),
        (
            metric::DEAD_LETTERED,
            "messages moved to a dead-letter queue",
        ),
        (
            metric::CONFIGURATION_ERRORS,
            "AWS calls refused by configuration",
        ),
        (metric::PANICS, "panics"),
    ] {
        metrics::describe_counter!(name, metrics::Unit::Count, what);
    }
}

/// Writes what was counted since the last flush as EMF lines on stdout (one
/// per dimension set). Called at the end of every invocation, and by the
/// local runner after each request and batch; a no-op without a collector.
pub fn flush_metrics() {
    if let Some(collector) = COLLECTOR.get() {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        if let Err(e) = collector.flush(&mut lock) {
            tracing::warn!(error = %e, "metrics not written");
        }
    }
}

/// A conversion's outcome (`recorded`/`duplicate`), or the error it got:
/// the caller's fault counts as `refused` with its code as the reason; ours
/// as `failed`.
pub fn conversion(outcome: Result<&'static str, &Error>) {
    match outcome {
        Ok(status) => metrics::counter!(metric::CONVERSIONS, "Outcome" => status).increment(1),
        Err(e) if e.is_caller_fault() => {
            metrics::counter!(metric::CONVERSIONS, "Outcome" => "refused").increment(1);
            metrics::counter!(metric::CONVERSIONS_REFUSED, "Reason" => e.code()).increment(1);
        }
        Err(_) => metrics::counter!(metric::CONVERSIONS, "Outcome" => "failed").increment(1),
    }
}

/// A delivery reached `outcome` (delivered, failed, retrying, held, parked, cancelled).
pub fn delivery(outcome: &'static str) {
    metrics::counter!(metric::DELIVERIES, "Outcome" => outcome).increment(1);
}

/// One attempt's latency.
pub fn attempt_latency(elapsed: std::time::Duration) {
    metrics::histogram!(metric::ATTEMPT_LATENCY).record(elapsed.as_secs_f64() * 1000.0);
}

/// The reconciler found `n` overdue deliveries (0 is reported too, so the
/// alarm sees data every minute).
pub fn overdue(n: usize) {
    metrics::gauge!(metric::OVERDUE_DELIVERIES).set(n as f64);
}

/// A message moved to the dead-letter queue of `queue` (delivery, events).
pub fn dead_lettered(queue: &'static str) {
    metrics::counter!(metric::DEAD_LETTERED, "Queue" => queue).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_names_each_span_once_and_keeps_both_request_ids() {
        let lines = Lines::default();
        let out = lines.clone();
        let subscriber = logs_subscriber(move || out.clone(), true, "info");
        tracing::subscriber::with_default(subscriber, || {
            let lambda = tracing::info_span!("Lambda runtime invoke", requestId = "lambda-req-1");
            let _a = lambda.enter();
            let request = tracing::info_span!(
                "request",
                route = "/postback",
                api_request_id = "apigw-req-2"
            );
            let _b = request.enter();
            tracing::info!(status = 200, "answered");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert!(
            line.get("span").is_none(),
            "the current span is not repeated: {text}"
        );
        assert_eq!(line["spans"].as_array().unwrap().len(), 2, "{text}");
        assert_eq!(text.matches("lambda-req-1").count(), 1, "{text}");
        assert_eq!(text.matches("apigw-req-2").count(), 1, "{text}");
        assert_eq!(line["level"], "INFO");
        assert!(line.get("timestamp").is_none(), "Lambda adds the time");
    }
}
