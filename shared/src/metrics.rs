//! Counts the AWS requests that actually go on the wire, by operation, with an
//! SDK interceptor. It is how we prove what a conversion costs (DynamoDB and
//! SQS bill per request) and it is cheap enough to stay on in production,
//! where the counts are logged per request at debug level.

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Requests sent, by `Service.Operation` (e.g. `DynamoDB.GetItem`, `SQS.SendMessageBatch`).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// A snapshot of the counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Total requests so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    fn add(&self, op: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default() += 1;
    }
}

/// The operation named by a JSON-protocol `X-Amz-Target` header:
/// `DynamoDB_20120810.GetItem` → `DynamoDB.GetItem`, `AmazonSQS.SendMessage` → `SQS.SendMessage`.
pub fn operation_of_target(target: &str) -> String {
    let (service, op) = target.split_once('.').unwrap_or(("unknown", target));
    let service = if service.starts_with("DynamoDB") {
        "DynamoDB"
    } else if service.contains("SQS") {
        "SQS"
    } else {
        service
    };
    format!("{service}.{op}")
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown.unknown");
        self.add(operation_of_target(target));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_service_and_operation() {
        assert_eq!(
            operation_of_target("DynamoDB_20120810.GetItem"),
            "DynamoDB.GetItem"
        );
        assert_eq!(
            operation_of_target("AmazonSQS.SendMessageBatch"),
            "SQS.SendMessageBatch"
        );
    }
}
