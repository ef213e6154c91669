//! Counts the AWS requests that actually go on the wire, by operation, with an
//! SDK interceptor. It is how we prove what a conversion costs (DynamoDB and
//! SQS bill per request) and it is cheap enough to stay on in production,
//! where the counts are logged per request at debug level.
//!
//! With `METER_CAPACITY` (`make bench`), it also **meters** what AWS bills:
//! every DynamoDB request asks for `ReturnConsumedCapacity: INDEXES`, and
//! the units the table and each index consumed are added up by operation.
//! A `TransactWriteItems` is counted by AWS's rules from its items instead
//! (DynamoDB Local reports a flat 2 units for any transaction): 2 write units
//! per started KB of each item written, plus 1 per started KB of each index
//! entry a `Put` writes. A `BatchGetItem` too (DynamoDB Local reports
//! nothing for the keys it does not find): each key asked for is billed as a
//! `GetItem` of it, half a unit per started 4 KB eventually consistent, one
//! consistently, and the minimum for a key with no item. SQS is billed per
//! 64 KiB chunk of each request's payload. Item sizes follow DynamoDB's
//! sizing rules ([`item_size`]).

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Requests sent, by `Service.Operation` (e.g. `DynamoDB.GetItem`, `SQS.SendMessageBatch`).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Billed units, when metering (`METER_CAPACITY`).
    metered: Option<Arc<Mutex<Metered>>>,
}

/// What AWS bills, metered request by request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metered {
    /// DynamoDB read units by `table` or index name.
    pub read_units: BTreeMap<String, f64>,
    /// DynamoDB write units by `table` or index name.
    pub write_units: BTreeMap<String, f64>,
    /// Write units by operation (table and indexes together).
    pub write_units_by_operation: BTreeMap<String, f64>,
    /// Read units by operation.
    pub read_units_by_operation: BTreeMap<String, f64>,
    /// SQS requests as billed: one per started 64 KiB of payload.
    pub sqs_billed_requests: f64,
    /// What DynamoDB itself reported for transactions (DynamoDB Local: a
    /// flat 2 per call), kept beside the units counted by AWS's rules.
    pub transaction_units_reported: f64,
}

impl Metered {
    pub fn reads(&self) -> f64 {
        self.read_units.values().sum()
    }
    pub fn writes(&self) -> f64 {
        self.write_units.values().sum()
    }
}

impl RequestCounter {
    /// A counter that also meters billed units (see the module).
    pub fn metering() -> Self {
        RequestCounter {
            counts: Arc::default(),
            metered: Some(Arc::default()),
        }
    }

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

    /// The billed units so far (all zero unless metering).
    pub fn metered(&self) -> Metered {
        self.metered
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    fn add(&self, op: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default() += 1;
    }

    fn meter(&self, f: impl FnOnce(&mut Metered)) {
        if let Some(m) = &self.metered {
            f(&mut m.lock().unwrap_or_else(|p| p.into_inner()));
        }
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

/// The size DynamoDB bills an attribute value by: strings and binaries by
/// their bytes, numbers about one byte per two significant digits plus one,
/// booleans and nulls one byte, lists and maps 3 bytes plus one per element
/// (and a map's key names).
pub fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|i| 1 + value_size(i)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

fn number_size(n: &str) -> usize {
    let digits: String = n
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .trim_start_matches('0')
        .trim_end_matches('0')
        .to_string();
    digits.len().max(1).div_ceil(2) + 1
}

/// An item's size by DynamoDB's rules: each attribute's name and value.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// A global secondary index as the table defines it (template.yaml).
#[derive(Debug, Clone, Copy)]
pub struct IndexShape {
    pub name: &'static str,
    pub keys: [&'static str; 2],
    /// `None`: every attribute (`ALL`); else the non-key attributes included.
    pub include: Option<&'static [&'static str]>,
}

/// The table's indexes, as template.yaml defines them.
pub const INDEXES: [IndexShape; 2] = [
    IndexShape {
        name: crate::store::GSI1,
        keys: ["gsi1pk", "gsi1sk"],
        include: Some(&["status", "endpoint_id", "event_at", "recovery_id", "offers"]),
    },
    IndexShape {
        name: crate::store::GSI2,
        keys: ["gsi2pk", "gsi2sk"],
        include: Some(&["partner_id", "endpoint_id"]),
    },
];

/// The size of `item`'s entry in `index`, or `None` if the item is not in
/// it (a sparse index: both key attributes must be present).
pub fn index_entry_size(
    item: &HashMap<String, AttributeValue>,
    index: &IndexShape,
) -> Option<usize> {
    if !index.keys.iter().all(|k| item.contains_key(*k)) {
        return None;
    }
    Some(match index.include {
        None => item_size(item),
        Some(extra) => item
            .iter()
            .filter(|(k, _)| {
                ["pk", "sk"].contains(&k.as_str())
                    || index.keys.contains(&k.as_str())
                    || extra.contains(&k.as_str())
            })
            .map(|(k, v)| k.len() + value_size(v))
            .sum(),
    })
}

/// Write units of one item written by AWS's rules: per started KB, doubled
/// in a transaction.
fn write_units(size: usize, transactional: bool) -> f64 {
    let units = size.max(1).div_ceil(1024) as f64;
    if transactional {
        2.0 * units
    } else {
        units
    }
}

/// The units a `TransactWriteItems` is billed, by `table` and index: each
/// item at 2 units per started KB; a `Put` also writes each index entry it
/// has (1 unit per started KB). An `Update`, `Delete` or `ConditionCheck`
/// names only a key: counted as one started KB (none of ours is larger).
pub fn transaction_units(
    input: &aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput,
) -> BTreeMap<String, f64> {
    let mut units: BTreeMap<String, f64> = BTreeMap::new();
    for item in input.transact_items() {
        if let Some(put) = item.put() {
            let attrs = put.item();
            *units.entry("table".into()).or_default() += write_units(item_size(attrs), true);
            for index in &INDEXES {
                if let Some(size) = index_entry_size(attrs, index) {
                    *units.entry(index.name.into()).or_default() += write_units(size, false);
                }
            }
        } else {
            *units.entry("table".into()).or_default() += 2.0;
        }
    }
    units
}

/// What a `BatchGetItem` asked for: per table, its keys and the units of
/// each started 4 KB (0.5 eventually consistent, 1 consistent).
#[derive(Debug, Clone)]
struct BatchKeys(Vec<(String, usize, f64)>);

impl aws_smithy_types::config_bag::Storable for BatchKeys {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

fn batch_keys(input: &aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput) -> BatchKeys {
    BatchKeys(
        input
            .request_items()
            .into_iter()
            .flatten()
            .map(|(table, k)| {
                let per_4kb = if k.consistent_read() == Some(true) {
                    1.0
                } else {
                    0.5
                };
                (table.clone(), k.keys().len(), per_4kb)
            })
            .collect(),
    )
}

/// The read units of a `BatchGetItem` by AWS's rules: each found item per
/// started 4 KB, each key without one the minimum.
fn batch_get_units(
    asked: &BatchKeys,
    output: &aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput,
) -> f64 {
    asked
        .0
        .iter()
        .map(|(table, keys, per_4kb)| {
            let found = output
                .responses()
                .and_then(|r| r.get(table))
                .map_or(&[][..], Vec::as_slice);
            let unprocessed = output
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .map_or(0, |k| k.keys().len());
            let items: f64 = found
                .iter()
                .map(|item| item_size(item).div_ceil(4096).max(1) as f64 * per_4kb)
                .sum();
            let missing = keys.saturating_sub(found.len() + unprocessed) as f64;
            items + missing * per_4kb
        })
        .sum()
}

/// Sets `ReturnConsumedCapacity: INDEXES` on a DynamoDB request; for a
/// transaction, counts its units by AWS's rules.
fn ask_for_capacity(input: &mut Input, counter: &RequestCounter) {
    use aws_sdk_dynamodb::operation as op;
    let indexes = Some(ReturnConsumedCapacity::Indexes);
    macro_rules! ask {
        ($($module:ident :: $input:ident),*) => {
            $(if let Some(i) = input.downcast_mut::<op::$module::$input>() {
                i.return_consumed_capacity = indexes.clone();
                return;
            })*
        };
    }
    if let Some(i) = input.downcast_mut::<op::transact_write_items::TransactWriteItemsInput>() {
        i.return_consumed_capacity = indexes;
        let units = transaction_units(i);
        counter.meter(|m| {
            let total: f64 = units.values().sum();
            *m.write_units_by_operation
                .entry("DynamoDB.TransactWriteItems".into())
                .or_default() += total;
            for (k, v) in units {
                *m.write_units.entry(k).or_default() += v;
            }
        });
        return;
    }
    ask!(
        get_item::GetItemInput,
        put_item::PutItemInput,
        update_item::UpdateItemInput,
        delete_item::DeleteItemInput,
        query::QueryInput,
        scan::ScanInput,
        batch_get_item::BatchGetItemInput,
        batch_write_item::BatchWriteItemInput,
        transact_get_items::TransactGetItemsInput
    );
}

/// Adds what DynamoDB reported consuming to the read or write side.
fn add_consumed(m: &mut Metered, operation: &str, write: bool, consumed: &[ConsumedCapacity]) {
    for c in consumed {
        let mut parts: Vec<(String, f64)> = Vec::new();
        match c.table() {
            Some(t) => parts.push(("table".into(), t.capacity_units().unwrap_or(0.0))),
            None => parts.push(("table".into(), c.capacity_units().unwrap_or(0.0))),
        }
        for (name, cap) in c.global_secondary_indexes().into_iter().flatten() {
            parts.push((name.clone(), cap.capacity_units().unwrap_or(0.0)));
        }
        for (name, units) in parts {
            let (by_name, by_op) = if write {
                (&mut m.write_units, &mut m.write_units_by_operation)
            } else {
                (&mut m.read_units, &mut m.read_units_by_operation)
            };
            *by_name.entry(name).or_default() += units;
            *by_op.entry(operation.to_string()).or_default() += units;
        }
    }
}

/// Records what a DynamoDB response says it consumed, or an SQS request's
/// billed chunks.
fn read_consumed(output: &Output, counter: &RequestCounter) {
    use aws_sdk_dynamodb::operation as op;
    counter.meter(|m| {
        macro_rules! one {
            ($module:ident :: $output:ident, $name:literal, $write:expr) => {
                if let Some(o) = output.downcast_ref::<op::$module::$output>() {
                    if let Some(c) = o.consumed_capacity() {
                        add_consumed(m, $name, $write, std::slice::from_ref(c));
                    }
                    return;
                }
            };
        }
        macro_rules! many {
            ($module:ident :: $output:ident, $name:literal, $write:expr) => {
                if let Some(o) = output.downcast_ref::<op::$module::$output>() {
                    add_consumed(m, $name, $write, o.consumed_capacity());
                    return;
                }
            };
        }
        one!(get_item::GetItemOutput, "DynamoDB.GetItem", false);
        one!(put_item::PutItemOutput, "DynamoDB.PutItem", true);
        one!(update_item::UpdateItemOutput, "DynamoDB.UpdateItem", true);
        one!(delete_item::DeleteItemOutput, "DynamoDB.DeleteItem", true);
        one!(query::QueryOutput, "DynamoDB.Query", false);
        one!(scan::ScanOutput, "DynamoDB.Scan", false);
        // A `BatchGetItem` is counted from what it asked (`batch_keys`).
        if output
            .downcast_ref::<op::batch_get_item::BatchGetItemOutput>()
            .is_some()
        {
            return;
        }
        many!(
            batch_write_item::BatchWriteItemOutput,
            "DynamoDB.BatchWriteItem",
            true
        );
        if let Some(o) = output.downcast_ref::<op::transact_write_items::TransactWriteItemsOutput>()
        {
            m.transaction_units_reported += o
                .consumed_capacity()
                .iter()
                .map(|c| c.capacity_units().unwrap_or(0.0))
                .sum::<f64>();
            return;
        }
        if let Some(o) =
            output.downcast_ref::<aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput>()
        {
            // An empty receive is the poller's fixed cost, not a conversion's.
            if !o.messages().is_empty() {
                let bytes: usize = o
                    .messages()
                    .iter()
                    .map(|x| x.body().map_or(0, str::len))
                    .sum();
                m.sqs_billed_requests += sqs_chunks(bytes);
            }
        }
    });
}

/// SQS bills each started 64 KiB of a request's payload as one request.
pub fn sqs_chunks(bytes: usize) -> f64 {
    bytes.max(1).div_ceil(64 * 1024) as f64
}

/// An SQS request's billed chunks, from what it sends (a receive is counted
/// from what it got).
fn sqs_request(input: &Input, counter: &RequestCounter) {
    use aws_sdk_sqs::operation as op;
    let bytes = if let Some(i) = input.downcast_ref::<op::send_message::SendMessageInput>() {
        Some(i.message_body().map_or(0, str::len))
    } else if let Some(i) = input.downcast_ref::<op::send_message_batch::SendMessageBatchInput>() {
        Some(
            i.entries()
                .iter()
                .map(|e| e.message_body().len())
                .sum::<usize>(),
        )
    } else if input
        .downcast_ref::<op::delete_message::DeleteMessageInput>()
        .is_some()
        || input
            .downcast_ref::<op::delete_message_batch::DeleteMessageBatchInput>()
            .is_some()
        || input
            .downcast_ref::<op::change_message_visibility::ChangeMessageVisibilityInput>()
            .is_some()
        || input
            .downcast_ref::<op::change_message_visibility_batch::ChangeMessageVisibilityBatchInput>(
            )
            .is_some()
        || input
            .downcast_ref::<op::get_queue_attributes::GetQueueAttributesInput>()
            .is_some()
    {
        Some(0)
    } else {
        // A receive is counted from what it got; DynamoDB is not SQS.
        None
    };
    if let Some(bytes) = bytes {
        counter.meter(|m| m.sqs_billed_requests += sqs_chunks(bytes));
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.metered.is_some() {
            let input = context.input_mut();
            if let Some(i) = input
                .downcast_ref::<aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput>()
            {
                cfg.interceptor_state().store_put(batch_keys(i));
            }
            ask_for_capacity(input, self);
            sqs_request(input, self);
        }
        Ok(())
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

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.metered.is_some() {
            if let Ok(output) = context.output_or_error() {
                read_consumed(output, self);
                let batch = output
                    .downcast_ref::<aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput>();
                if let (Some(o), Some(asked)) = (batch, cfg.load::<BatchKeys>()) {
                    let units = batch_get_units(asked, o);
                    self.meter(|m| {
                        *m.read_units.entry("table".into()).or_default() += units;
                        *m.read_units_by_operation
                            .entry("DynamoDB.BatchGetItem".into())
                            .or_default() += units;
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_sized_by_dynamodbs_rules() {
        let item: HashMap<String, AttributeValue> = [
            ("pk".to_string(), AttributeValue::S("DELIVERY#d1".into())),
            ("n".to_string(), AttributeValue::N("1234.5".into())),
            ("ok".to_string(), AttributeValue::Bool(true)),
            (
                "m".to_string(),
                AttributeValue::M([("a".to_string(), AttributeValue::S("xy".into()))].into()),
            ),
        ]
        .into();
        // pk 2+11, n 1+(5 digits: 3)+1, ok 2+1, m 1+(3+1+1+2)
        assert_eq!(item_size(&item), 13 + 5 + 3 + 8);
        assert_eq!(number_size("100"), 2, "trailing zeros are trimmed");
        assert_eq!(sqs_chunks(0), 1.0);
        assert_eq!(sqs_chunks(64 * 1024 + 1), 2.0);
    }

    #[test]
    fn a_transaction_bills_two_units_per_kb_of_each_item_and_its_index_entries() {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        let big = "x".repeat(1500);
        let put = |attrs: Vec<(&str, &str)>| {
            let item: HashMap<String, AttributeValue> = attrs
                .into_iter()
                .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
                .collect();
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name("t")
                        .set_item(Some(item))
                        .build()
                        .unwrap(),
                )
                .build()
        };
        let input =
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput::builder()
                .transact_items(put(vec![
                    ("pk", "EVENT#e"),
                    ("sk", "EVENT"),
                    ("data", &big),
                ]))
                .transact_items(put(vec![
                    ("pk", "DELIVERY#d"),
                    ("sk", "DELIVERY"),
                    ("gsi1pk", "PARTNER#p"),
                    ("gsi1sk", "t#d"),
                    ("gsi2pk", "DUE#1"),
                    ("gsi2sk", "t#d"),
                    ("partner_id", "p"),
                ]))
                .build()
                .unwrap();
        let units = transaction_units(&input);
        // The event: 1.5 KB, 2 started KB, doubled. The delivery: 1 KB doubled,
        // and one entry in each index.
        assert_eq!(units["table"], 4.0 + 2.0);
        assert_eq!(units[crate::store::GSI1], 1.0);
        assert_eq!(units[crate::store::GSI2], 1.0);
    }

    #[test]
    fn a_batch_get_bills_each_key_as_a_get_item_found_or_not() {
        use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
        let small: HashMap<String, AttributeValue> =
            HashMap::from([("pk".into(), AttributeValue::S("a".into()))]);
        let large: HashMap<String, AttributeValue> =
            HashMap::from([("pk".into(), AttributeValue::S("x".repeat(5_000)))]);
        let output = BatchGetItemOutput::builder()
            .responses("t", vec![small, large])
            .build();
        // Three keys, two found (one past 4 KB: two halves), one not.
        let eventually = BatchKeys(vec![("t".into(), 3, 0.5)]);
        assert_eq!(batch_get_units(&eventually, &output), 0.5 + 1.0 + 0.5);
        let consistently = BatchKeys(vec![("t".into(), 3, 1.0)]);
        assert_eq!(batch_get_units(&consistently, &output), 1.0 + 2.0 + 1.0);
        let none_found = BatchGetItemOutput::builder().build();
        assert_eq!(batch_get_units(&eventually, &none_found), 1.5);
    }

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
