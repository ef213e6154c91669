//! The DynamoDB adapter: one table, items mapped with `serde_dynamo`.
//!
//! | item        | pk                 | sk             |
//! |-------------|--------------------|----------------|
//! | offer       | `OFFER#<id>`       | `OFFER`        |
//! | partner     | `PARTNER#<id>`     | `PARTNER`      |
//! | endpoint    | `PARTNER#<id>`     | `ENDPOINT#<id>`|
//! | click       | `CLICK#<id>`       | `CLICK` (ttl)  |
//! | event       | `EVENT#<id>`       | `EVENT`        |
//! | transaction | `TXN#<id>`         | `TXN`          |
//! | delivery    | `DELIVERY#<id>`    | `DELIVERY`, GSI1 `PARTNER#<id>` / `<created_at>#<id>` |

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::domain::{
    Click, Delivery, DeliveryStatus, Endpoint, Event, Offer, Partner, Transaction,
};
use crate::error::{unavailable, Error, Result};

/// Name of the partner-and-time index of deliveries (template.yaml `GSI1`).
pub const GSI1: &str = "GSI1";
/// Most items in one `TransactWriteItems` (a DynamoDB limit).
pub const MAX_TRANSACTION_ITEMS: usize = 100;

type Attrs = HashMap<String, AttributeValue>;

/// A stored item: keys beside the domain value's own fields.
#[derive(Serialize, Deserialize)]
struct Item<T> {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    /// Deliveries: epoch ms when the next attempt is due (numeric, for conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_ms: Option<i64>,
    /// Deliveries: epoch ms until which a worker holds the delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_ms: Option<i64>,
    #[serde(flatten)]
    data: T,
}

impl<T> Item<T> {
    fn new(pk: String, sk: &str, data: T) -> Self {
        Item {
            pk,
            sk: sk.to_string(),
            ttl: None,
            gsi1pk: None,
            gsi1sk: None,
            due_ms: None,
            lease_ms: None,
            data,
        }
    }
}

/// Keys of each kind of item.
pub mod keys {
    pub fn offer(id: &str) -> (String, &'static str) {
        (format!("OFFER#{id}"), "OFFER")
    }
    pub fn partner(id: &str) -> (String, &'static str) {
        (format!("PARTNER#{id}"), "PARTNER")
    }
    pub fn endpoint(partner_id: &str, id: &str) -> (String, String) {
        (format!("PARTNER#{partner_id}"), format!("ENDPOINT#{id}"))
    }
    pub fn click(id: &str) -> (String, &'static str) {
        (format!("CLICK#{id}"), "CLICK")
    }
    pub fn event(id: &str) -> (String, &'static str) {
        (format!("EVENT#{id}"), "EVENT")
    }
    pub fn transaction(id: &str) -> (String, &'static str) {
        (format!("TXN#{id}"), "TXN")
    }
    pub fn delivery(id: &str) -> (String, &'static str) {
        (format!("DELIVERY#{id}"), "DELIVERY")
    }
    /// GSI1 keys of a delivery: by partner, then creation time.
    pub fn delivery_gsi1(
        partner_id: &str,
        created_at: &chrono::DateTime<chrono::Utc>,
        id: &str,
    ) -> (String, String) {
        (
            format!("PARTNER#{partner_id}"),
            format!("{}#{id}", super::sort_key_time(created_at)),
        )
    }
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event is new and now stored with its deliveries.
    New,
    /// The event was already stored (an idempotent retry); nothing was written.
    Duplicate,
}

fn to_attrs<T: Serialize>(item: &Item<T>) -> Result<Attrs> {
    serde_dynamo::to_item(item)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("serializing an item")))
}

fn from_attrs<T: DeserializeOwned>(attrs: Attrs) -> Result<T> {
    let item: Item<T> = serde_dynamo::from_item(attrs)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading a stored item")))?;
    Ok(item.data)
}

fn key(pk: String, sk: impl Into<String>) -> Attrs {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk)),
        ("sk".to_string(), AttributeValue::S(sk.into())),
    ])
}

fn is_condition_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// The DynamoDB table of the service.
#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    /// A store over `table`.
    pub fn new(client: Client, table: String) -> Self {
        Store { client, table }
    }

    /// The SDK client, for tests and provisioning.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Cheap reachability check for `/health`.
    pub async fn ping(&self) -> Result<()> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable("describing the table"))?;
        Ok(())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: impl Into<String>,
        consistent: bool,
    ) -> Result<Option<T>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(unavailable("reading an item"))?;
        out.item.map(from_attrs).transpose()
    }

    /// Writes `item`; with `create`, fails with `Conflict` if it exists; with `replace`, with `NotFound` if it does not.
    async fn put<T: Serialize>(&self, item: &Item<T>, condition: PutCondition) -> Result<bool> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(item)?));
        req = match condition {
            PutCondition::None => req,
            PutCondition::Create => req.condition_expression("attribute_not_exists(pk)"),
            PutCondition::Replace => req.condition_expression("attribute_exists(pk)"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("writing an item")(e)),
        }
    }

    async fn delete(&self, pk: String, sk: impl Into<String>) -> Result<bool> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("deleting an item")(e)),
        }
    }

    // ---- offers

    /// Stores a new offer.
    pub async fn create_offer(&self, offer: &Offer) -> Result<()> {
        let (pk, sk) = keys::offer(&offer.id);
        if self
            .put(&Item::new(pk, sk, offer), PutCondition::Create)
            .await?
        {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "offer `{}` already exists",
                offer.id
            )))
        }
    }

    /// Replaces an existing offer; `NotFound` if it is gone.
    pub async fn replace_offer(&self, offer: &Offer) -> Result<()> {
        let (pk, sk) = keys::offer(&offer.id);
        if self
            .put(&Item::new(pk, sk, offer), PutCondition::Replace)
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("offer", &offer.id))
        }
    }

    /// The offer, if it exists.
    pub async fn get_offer(&self, id: &str) -> Result<Option<Offer>> {
        let (pk, sk) = keys::offer(id);
        self.get(pk, sk, true).await
    }

    /// Deletes an offer; false if there was none.
    pub async fn delete_offer(&self, id: &str) -> Result<bool> {
        let (pk, sk) = keys::offer(id);
        self.delete(pk, sk).await
    }

    // ---- partners and endpoints

    /// Stores a new partner.
    pub async fn create_partner(&self, partner: &Partner) -> Result<()> {
        let (pk, sk) = keys::partner(&partner.id);
        if self
            .put(&Item::new(pk, sk, partner), PutCondition::Create)
            .await?
        {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "partner `{}` already exists",
                partner.id
            )))
        }
    }

    /// The partner, if it exists.
    pub async fn get_partner(&self, id: &str) -> Result<Option<Partner>> {
        let (pk, sk) = keys::partner(id);
        self.get(pk, sk, true).await
    }

    /// Writes an endpoint (new or replaced).
    pub async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let (pk, sk) = keys::endpoint(&endpoint.partner_id, &endpoint.id);
        self.put(&Item::new(pk, &sk, endpoint), PutCondition::None)
            .await?;
        Ok(())
    }

    /// One endpoint of a partner.
    pub async fn get_endpoint(&self, partner_id: &str, id: &str) -> Result<Option<Endpoint>> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        self.get(pk, sk, true).await
    }

    /// Deletes an endpoint; false if there was none.
    pub async fn delete_endpoint(&self, partner_id: &str, id: &str) -> Result<bool> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        self.delete(pk, sk).await
    }

    /// Every endpoint of a partner (one query on the partner's partition).
    pub async fn list_endpoints(&self, partner_id: &str) -> Result<Vec<Endpoint>> {
        let (pk, _) = keys::partner(partner_id);
        let mut out = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":prefix", AttributeValue::S("ENDPOINT#".into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable("listing endpoints"))?;
            for item in page.items.unwrap_or_default() {
                out.push(from_attrs(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a: &Endpoint, b: &Endpoint| {
            a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    // ---- clicks

    /// Stores a click; DynamoDB expires it at the end of its attribution window.
    pub async fn put_click(&self, click: &Click) -> Result<()> {
        let (pk, sk) = keys::click(&click.click_id);
        let mut item = Item::new(pk, sk, click);
        item.ttl = Some(click.expires_at.timestamp());
        if self.put(&item, PutCondition::Create).await? {
            Ok(())
        } else {
            Err(Error::Internal(anyhow::anyhow!("click id collision")))
        }
    }

    /// The click, read consistently (a postback may follow its click within a second).
    pub async fn get_click(&self, id: &str) -> Result<Option<Click>> {
        let (pk, sk) = keys::click(id);
        self.get(pk, sk, true).await
    }

    // ---- events, transactions and deliveries

    /// Writes an event with all its deliveries (and the transaction's new
    /// state) in one all-or-nothing `TransactWriteItems`. The event's id is
    /// its idempotency key: if it exists, nothing is written and the answer is
    /// `Duplicate`.
    pub async fn record_event(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        transaction: Option<&Transaction>,
    ) -> Result<Recorded> {
        let mut items = Vec::with_capacity(deliveries.len() + 2);
        let (pk, sk) = keys::event(&event.id);
        items.push(self.transact_put(&Item::new(pk, sk, event), true)?);
        for d in deliveries {
            items.push(self.transact_put(&delivery_item(d), true)?);
        }
        if let Some(t) = transaction {
            let (pk, sk) = keys::transaction(&t.transaction_id);
            items.push(self.transact_put(&Item::new(pk, sk, t), false)?);
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(Error::Internal(anyhow::anyhow!(
                "{} items exceed one transaction",
                items.len()
            )));
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Recorded::New),
            Err(e) if event_already_exists(&e) => Ok(Recorded::Duplicate),
            Err(e) => Err(unavailable("recording an event")(e)),
        }
    }

    fn transact_put<T: Serialize>(
        &self,
        item: &Item<T>,
        create: bool,
    ) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_attrs(item)?));
        if create {
            put = put.condition_expression("attribute_not_exists(pk)");
        }
        let put = put.build().map_err(|e| Error::Internal(e.into()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The event, read consistently.
    pub async fn get_event(&self, id: &str) -> Result<Option<Event>> {
        let (pk, sk) = keys::event(id);
        self.get(pk, sk, true).await
    }

    /// The transaction, read consistently.
    pub async fn get_transaction(&self, id: &str) -> Result<Option<Transaction>> {
        let (pk, sk) = keys::transaction(id);
        self.get(pk, sk, true).await
    }

    /// One delivery.
    pub async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let (pk, sk) = keys::delivery(id);
        self.get(pk, sk, true).await
    }

    /// Several deliveries by id (BatchGetItem, 100 keys a request), in no particular order.
    pub async fn get_deliveries(&self, ids: &[String]) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let keys: Vec<Attrs> = chunk
                .iter()
                .map(|id| {
                    let (pk, sk) = keys::delivery(id);
                    key(pk, sk)
                })
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| Error::Internal(e.into()))?,
            );
            // Unprocessed keys are retried; DynamoDB returns them under throttling.
            for _ in 0..8 {
                let Some(request) = pending.take() else { break };
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable("reading deliveries"))?;
                for item in resp
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    out.push(from_attrs(item)?);
                }
                pending = resp
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table));
            }
            if pending.is_some() {
                return Err(Error::Unavailable(anyhow::anyhow!(
                    "deliveries left unprocessed by BatchGetItem"
                )));
            }
        }
        Ok(out)
    }

    /// Claims a due, pending delivery for `lease` with one conditional
    /// `UpdateItem` that also returns it: two workers handed the same message
    /// (SQS is at-least-once) cannot both send, and a message that arrives
    /// before its delivery is due does not bring the attempt forward.
    pub async fn claim_delivery(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Claim> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let (pk, sk) = keys::delivery(id);
        let now_ms = now.timestamp_millis();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET lease_ms = :lease")
            .condition_expression(
                "attribute_exists(pk) AND #status = :pending \
                 AND (attribute_not_exists(lease_ms) OR lease_ms < :now) \
                 AND (attribute_not_exists(due_ms) OR due_ms <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(DeliveryStatus::Pending.as_str().into()),
            )
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(
                ":lease",
                AttributeValue::N((now_ms + lease.as_millis() as i64).to_string()),
            )
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(out) => {
                let attrs = out
                    .attributes
                    .ok_or_else(|| Error::Internal(anyhow::anyhow!("claim returned no item")))?;
                return Ok(Claim::Claimed(from_attrs(attrs)?));
            }
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                other => return Err(unavailable("claiming a delivery")(other)),
            },
        };
        // Some DynamoDB implementations do not return the old item: read it.
        let attrs = match old {
            Some(a) => a,
            None => {
                let (pk, sk) = keys::delivery(id);
                match self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key(pk, sk)))
                    .consistent_read(true)
                    .send()
                    .await
                {
                    Ok(out) => match out.item {
                        Some(item) => item,
                        None => return Ok(Claim::Missing),
                    },
                    Err(e) => return Err(unavailable("reading a delivery")(e)),
                }
            }
        };
        let item: Item<Delivery> = serde_dynamo::from_item(attrs).map_err(|e| {
            Error::Internal(anyhow::Error::new(e).context("reading a stored delivery"))
        })?;
        Ok(match item.data.status {
            DeliveryStatus::Delivered | DeliveryStatus::Failed => Claim::Finished(item.data),
            DeliveryStatus::Pending => match (item.lease_ms, item.due_ms) {
                (Some(l), _) if l >= now_ms => Claim::Leased(millis(l)),
                (_, Some(d)) if d > now_ms => Claim::NotDue(millis(d)),
                // The condition failed but neither reason holds any more: it just changed.
                _ => Claim::Leased(now + chrono::Duration::seconds(1)),
            },
        })
    }

    /// A page of a partner's deliveries from GSI1 (never a table scan),
    /// newest first, within `from..=to`, filtered by status and endpoint.
    /// Filters apply after DynamoDB's own page limit, so pages are read until
    /// `limit` items are found or the index ends.
    pub async fn query_deliveries(&self, q: &DeliveryQuery) -> Result<DeliveryPage> {
        let (gpk, _) = keys::delivery_gsi1(&q.partner_id, &Utc::now(), "");
        // Key values cannot be empty: `0` sorts before every timestamp.
        let lower = q
            .from
            .map(|t| sort_key_time(&t))
            .unwrap_or_else(|| "0".into());
        // `~` sorts after every character used in the sort key.
        let upper =
            q.to.map(|t| format!("{}~", sort_key_time(&t)))
                .unwrap_or_else(|| "~".into());
        let mut filters = Vec::new();
        if q.status.is_some() {
            filters.push("#status = :status");
        }
        if q.endpoint_id.is_some() {
            filters.push("endpoint_id = :endpoint");
        }
        let mut items = Vec::new();
        let mut start: Option<Attrs> = q.start.as_ref().map(|k| {
            k.iter()
                .map(|(n, v)| (n.clone(), AttributeValue::S(v.clone())))
                .collect()
        });
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :pk AND gsi1sk BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", AttributeValue::S(gpk.clone()))
                .expression_attribute_values(":lower", AttributeValue::S(lower.clone()))
                .expression_attribute_values(":upper", AttributeValue::S(upper.clone()))
                .scan_index_forward(false)
                .limit((q.limit - items.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take());
            if let Some(status) = q.status {
                req = req
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":status",
                        AttributeValue::S(status.as_str().into()),
                    );
            }
            if let Some(e) = &q.endpoint_id {
                req = req.expression_attribute_values(":endpoint", AttributeValue::S(e.clone()));
            }
            if !filters.is_empty() {
                req = req.filter_expression(filters.join(" AND "));
            }
            let out = req
                .send()
                .await
                .map_err(unavailable("querying deliveries"))?;
            for item in out.items.unwrap_or_default() {
                items.push(from_attrs::<Delivery>(item)?);
            }
            let last = out.last_evaluated_key.filter(|k| !k.is_empty());
            match last {
                Some(k) if items.len() < q.limit => start = Some(k),
                Some(k) => {
                    let next = k
                        .into_iter()
                        .filter_map(|(n, v)| v.as_s().ok().map(|s| (n, s.clone())))
                        .collect();
                    return Ok(DeliveryPage {
                        items,
                        next: Some(next),
                    });
                }
                None => return Ok(DeliveryPage { items, next: None }),
            }
        }
    }

    /// Starts a new round of attempts on a finished delivery. Fails with
    /// `Conflict` if it is pending (a round is already under way).
    pub async fn restart_delivery(&self, delivery: &Delivery) -> Result<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&delivery_item(delivery))?))
            .condition_expression("attribute_exists(pk) AND #status <> :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(DeliveryStatus::Pending.as_str().into()),
            );
        put = put.return_values(aws_sdk_dynamodb::types::ReturnValue::None);
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(Error::Conflict(format!(
                "delivery `{}` is already pending",
                delivery.id
            ))),
            Err(e) => Err(unavailable("restarting a delivery")(e)),
        }
    }

    /// Writes a delivery as it now stands (no condition: the caller holds its lease).
    pub async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        self.put(&delivery_item(delivery), PutCondition::None)
            .await?;
        Ok(())
    }
}

/// A page of a partner's deliveries, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// The GSI key after the last item, when more may follow.
    pub next: Option<HashMap<String, String>>,
}

/// What to list of a partner's deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub partner_id: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<String>,
    pub limit: usize,
    /// The `next` of the previous page.
    pub start: Option<HashMap<String, String>>,
}

enum PutCondition {
    None,
    Create,
    Replace,
}

fn delivery_item(d: &Delivery) -> Item<&Delivery> {
    let (pk, sk) = keys::delivery(&d.id);
    let (gpk, gsk) = keys::delivery_gsi1(&d.partner_id, &d.created_at, &d.id);
    let mut item = Item::new(pk, sk, d);
    item.gsi1pk = Some(gpk);
    item.gsi1sk = Some(gsk);
    if d.status == DeliveryStatus::Pending {
        item.due_ms = Some(d.next_attempt_at.map(|t| t.timestamp_millis()).unwrap_or(0));
    }
    item
}

/// What a worker's claim on a delivery found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The worker now holds the delivery until its lease ends.
    Claimed(Delivery),
    /// Pending, but its next attempt is due later (a duplicate or early message).
    NotDue(DateTime<Utc>),
    /// Another worker holds it until this time.
    Leased(DateTime<Utc>),
    /// Delivered or failed: nothing to send.
    Finished(Delivery),
    /// No such delivery.
    Missing,
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Whether a cancelled transaction failed because its first item, the event, exists.
fn event_already_exists<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .first()
            .and_then(|r| r.code())
            .is_some_and(|c| c == "ConditionalCheckFailed"),
        _ => false,
    }
}

/// A timestamp as stored in sort keys, for range conditions on GSI1.
pub fn sort_key_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
