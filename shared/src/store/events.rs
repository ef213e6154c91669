//! Clicks, events and transactions: what came in.

use serde::Serialize;

use super::{applied, from_attrs, is_condition_failure, keys, Item, PutCondition, Store};
use crate::error::{unavailable, Error, Result};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::{Recorded, MAX_TRANSACTION_ITEMS};
use crate::domain::{Click, Event, Owed, Transaction};
use crate::ids::{ClickId, DeliveryId, EventId};
use crate::lifecycle::Delivery;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

impl Store {
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
    pub async fn get_click(&self, id: &ClickId) -> Result<Option<Click>> {
        self.read_click(id, true).await
    }

    /// A click, read consistently or not (half the read units).
    pub async fn read_click(&self, id: &ClickId, consistent: bool) -> Result<Option<Click>> {
        let (pk, sk) = keys::click(id);
        self.get(pk, sk, consistent).await
    }

    // ---- events, transactions and deliveries

    /// Writes what one inbound request records in one all-or-nothing
    /// `TransactWriteItems`: the retry-window claim (if any), the event, its
    /// deliveries (unless it owes them), the transaction's new state; an
    /// event alone in one conditional `PutItem`. The event's id (or the
    /// window's fingerprint) is its idempotency key: if taken, nothing is
    /// written and the answer is `Duplicate`; if the transaction changed since
    /// it was read, `Raced` (read it again and decide again).
    pub async fn record_event(&self, r: &Recording<'_>) -> Result<Recorded> {
        let mut items = Vec::with_capacity(r.deliveries.len() + 3);
        if let Some((fingerprint, expires)) = r.window {
            items.push(self.window_put(fingerprint, &r.event.id, expires, r.event.recorded_at)?);
        }
        let (pk, sk) = keys::event(&r.event.id);
        let mut event = Item::new(pk, sk, r.event);
        event.ttl = self.expiry(r.event.recorded_at);
        if r.window.is_none() && r.deliveries.is_empty() && r.transaction.is_none() {
            // The event alone (no transaction id; its deliveries owed, or
            // none): one conditional `PutItem`, half a transaction's units.
            return Ok(if self.put(&event, PutCondition::Create).await? {
                Recorded::New
            } else {
                Recorded::Duplicate
            });
        }
        items.push(self.conditional_put(&event, "attribute_not_exists(pk)", None)?);
        for d in r.deliveries {
            items.push(self.conditional_put(
                &self.new_delivery_item(d, r.queued),
                "attribute_not_exists(pk)",
                None,
            )?);
        }
        if let Some((t, read_version)) = r.transaction {
            let (pk, sk) = keys::transaction(&t.key());
            let mut item = Item::new(pk, sk, t);
            item.ttl = self.expiry(t.updated_at);
            items.push(match read_version {
                None => self.conditional_put(&item, "attribute_not_exists(pk)", None)?,
                // Records written before versions existed stand at 0.
                Some(0) => self.conditional_put(
                    &item,
                    "attribute_not_exists(version) OR version = :v",
                    Some(0),
                )?,
                Some(v) => self.conditional_put(&item, "version = :v", Some(v))?,
            });
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
            Err(e) => match cancellation(&e) {
                Some(0) => Ok(Recorded::Duplicate),
                Some(_) => Ok(Recorded::Raced),
                None => Err(unavailable("recording an event")(e)),
            },
        }
    }

    /// Stores a transaction that only holds an invalidation waiting for its
    /// payout, until `expires` (DynamoDB's TTL): false if the transaction
    /// changed since it was read (`read_version`; `None`: there was none).
    pub async fn put_placeholder(
        &self,
        t: &Transaction,
        read_version: Option<u64>,
        expires: DateTime<Utc>,
    ) -> Result<bool> {
        let (pk, sk) = keys::transaction(&t.key());
        let mut item = Item::new(pk, sk, t);
        item.ttl = Some(expires.timestamp());
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&item)?));
        put = match read_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("storing a waiting invalidation")(e)),
        }
    }

    fn conditional_put<T: Serialize>(
        &self,
        item: &Item<T>,
        condition: &str,
        version: Option<u64>,
    ) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(item)?))
            .condition_expression(condition);
        if let Some(v) = version {
            put = put.expression_attribute_values(":v", AttributeValue::N(v.to_string()));
        }
        let put = put.build().map_err(|e| Error::Internal(e.into()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The claim of an identical-postback window: taken unless one is still open.
    fn window_put(
        &self,
        fingerprint: &str,
        event_id: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem> {
        #[derive(Serialize)]
        struct Window<'a> {
            event_id: &'a str,
            expires_ms: i64,
        }
        let (pk, sk) = keys::window(fingerprint);
        let mut item = Item::new(
            pk,
            sk,
            Window {
                event_id,
                expires_ms: expires.timestamp_millis(),
            },
        );
        // DynamoDB removes it some time after it closes; the condition, not the TTL, decides.
        item.ttl = Some(expires.timestamp() + 86_400);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&item)?))
            .condition_expression("attribute_not_exists(pk) OR expires_ms < :now")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(now.timestamp_millis().to_string()),
            )
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The event an open identical-postback window belongs to.
    pub async fn window_event(&self, fingerprint: &str) -> Result<Option<EventId>> {
        #[derive(serde::Deserialize)]
        struct Window {
            event_id: EventId,
        }
        let (pk, sk) = keys::window(fingerprint);
        Ok(self.get::<Window>(pk, sk, true).await?.map(|w| w.event_id))
    }

    /// The event, read consistently.
    pub async fn get_event(&self, id: &EventId) -> Result<Option<Event>> {
        let (pk, sk) = keys::event(id);
        self.get(pk, sk, true).await
    }

    /// The transaction, read consistently.
    pub async fn get_transaction(&self, id: &str) -> Result<Option<Transaction>> {
        self.read_transaction(id, true).await
    }

    /// The transaction, read consistently or not (half the read units: for
    /// a decision whose write is conditional on the version read).
    pub async fn read_transaction(
        &self,
        id: &str,
        consistent: bool,
    ) -> Result<Option<Transaction>> {
        let (pk, sk) = keys::transaction(id);
        self.get(pk, sk, consistent).await
    }

    /// Drops a transaction's waiting invalidation (one its payout refused),
    /// unless the transaction changed since `version`: false then.
    pub async fn drop_waiting_invalidation(&self, id: &str, version: u64) -> Result<bool> {
        let (pk, sk) = keys::transaction(id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(super::key(pk, sk.to_string())))
            .update_expression("REMOVE waiting_invalidation SET version = :next")
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .send()
            .await;
        applied(result, "dropping a waiting invalidation")
    }
}

/// What a first claim of a delivery its event owes found (`claim_owed`).
#[derive(Debug, Clone, PartialEq)]
pub enum OwedClaim {
    /// Claimed until the lease ends: the event as stored (what the request
    /// that won decided), and the delivery it owes.
    Claimed(Box<Event>, Box<Owed>),
    /// A worker claimed it first, at `claimed_at`, until `lease_until`: it
    /// may have stored the delivery since, or be sending it, or have died.
    Taken {
        claimed_at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    },
    /// The event is stored and does not owe it (its write stored the
    /// delivery, or stored the event without it).
    NotOwed,
    /// No such event (yet).
    NoEvent,
}

/// The attribute of an event that holds the first claim of a delivery it owes.
fn claim_attribute(delivery_id: &DeliveryId) -> String {
    format!("claim_{delivery_id}")
}

impl Store {
    /// Whether `event`, owing `owed` deliveries, stays within one write unit
    /// (1 KB) with a claim of each: a delivery created by its claim then
    /// costs one unit to claim, as a stored one does. Larger events store
    /// their deliveries with them.
    pub fn owes_in_one_unit(&self, event: &Event) -> Result<bool> {
        /// A claim: its name and a map of two epoch-ms numbers.
        const CLAIM_BYTES: usize = 64;
        let (pk, sk) = keys::event(&event.id);
        let mut item = Item::new(pk, sk, event);
        item.ttl = self.expiry(event.recorded_at);
        let size = crate::metrics::item_size(&self.to_attrs(&item)?);
        Ok(size + CLAIM_BYTES * event.owed.len() <= 1024)
    }

    /// The first claim of a delivery `event_id` owes, for `lease`: one
    /// conditional `UpdateItem` on the event, which holds the claim. It is
    /// the proof that the event's write happened (a message ahead of it, or
    /// of a write that never happened, claims nothing) and, as any claim,
    /// lets one worker only send. Returns the event as stored.
    pub async fn claim_owed(
        &self,
        event_id: &EventId,
        delivery_id: &DeliveryId,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<OwedClaim> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
        let result = self
            .claim_update(event_id, delivery_id, now, lease)
            .condition_expression("attribute_exists(owed.#d) AND attribute_not_exists(#claim)")
            .expression_attribute_names("#d", delivery_id.to_string())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(out) => {
                return Ok(match owed_of(out.attributes, delivery_id)? {
                    Some((event, owed)) => OwedClaim::Claimed(Box::new(event), Box::new(owed)),
                    None => OwedClaim::NotOwed,
                })
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                _ => return Err(unavailable("claiming a delivery its event owes")(e)),
            },
        };
        let (pk, sk) = keys::event(event_id);
        let Some(attrs) = self.old_or_read(old, pk, sk).await? else {
            return Ok(OwedClaim::NoEvent);
        };
        Ok(match claim_of(&attrs, delivery_id) {
            Some((claimed_at, lease_until)) => OwedClaim::Taken {
                claimed_at,
                lease_until,
            },
            None => OwedClaim::NotOwed,
        })
    }

    /// Takes over the first claim of a delivery `event_id` owes from a
    /// worker whose lease (`lease_until`) ended without the delivery being
    /// stored: the event and what it owes if this worker holds it now.
    pub async fn take_over_owed(
        &self,
        event_id: &EventId,
        delivery_id: &DeliveryId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<(Event, Owed)>> {
        let result = self
            .claim_update(event_id, delivery_id, now, lease)
            .condition_expression("#claim.l = :old AND :old < :now")
            .expression_attribute_values(
                ":old",
                AttributeValue::N(lease_until.timestamp_millis().to_string()),
            )
            .expression_attribute_values(
                ":now",
                AttributeValue::N(now.timestamp_millis().to_string()),
            )
            .send()
            .await;
        match result {
            Ok(out) => owed_of(out.attributes, delivery_id),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(unavailable("taking over a delivery's claim")(e)),
        }
    }

    /// The `UpdateItem` that sets the claim of `delivery_id` on the event
    /// `event_id` (`#claim`, `:claim`) for `lease` from `now`, returning the
    /// event as it then stands; the caller adds its condition.
    fn claim_update(
        &self,
        event_id: &EventId,
        delivery_id: &DeliveryId,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let (pk, sk) = keys::event(event_id);
        let now_ms = now.timestamp_millis();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(super::key(pk, sk)))
            .update_expression("SET #claim = :claim")
            .expression_attribute_names("#claim", claim_attribute(delivery_id))
            .expression_attribute_values(
                ":claim",
                claim_value(now_ms, now_ms + lease.as_millis() as i64),
            )
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
    }

    /// Whether the stored event `event_id` owes `delivery_id` (read consistently).
    pub async fn event_owes(&self, event_id: &EventId, delivery_id: &DeliveryId) -> Result<bool> {
        Ok(self
            .get_event(event_id)
            .await?
            .is_some_and(|e| e.owed.contains_key(delivery_id)))
    }
}

/// The event an update returned and what it owes of `delivery_id`, if it does.
fn owed_of(
    attributes: Option<super::Attrs>,
    delivery_id: &DeliveryId,
) -> Result<Option<(Event, Owed)>> {
    let attrs =
        attributes.ok_or_else(|| Error::Internal(anyhow::anyhow!("claim returned no item")))?;
    let event: Event = from_attrs(attrs)?;
    Ok(event
        .owed
        .get(delivery_id)
        .cloned()
        .map(|owed| (event, owed)))
}

/// A claim as an event holds it: when it was made (`c`) and until when (`l`), epoch ms.
fn claim_value(claimed_ms: i64, lease_ms: i64) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("c".to_string(), AttributeValue::N(claimed_ms.to_string())),
        ("l".to_string(), AttributeValue::N(lease_ms.to_string())),
    ]))
}

/// The first claim of `delivery_id` an event's attributes hold, if any.
fn claim_of(
    attrs: &super::Attrs,
    delivery_id: &DeliveryId,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let claim = attrs.get(&claim_attribute(delivery_id))?.as_m().ok()?;
    let ms = |k: &str| -> Option<i64> { claim.get(k)?.as_n().ok()?.parse().ok() };
    Some((super::millis(ms("c")?), super::millis(ms("l")?)))
}

/// The index of the first item whose condition failed, if the transaction was cancelled by one.
fn cancellation<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<usize> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .iter()
            .position(|r| r.code() == Some("ConditionalCheckFailed")),
        _ => None,
    }
}

/// What one inbound request writes.
pub struct Recording<'a> {
    pub event: &'a Event,
    pub deliveries: &'a [Delivery],
    /// The transaction's new state, and the version it was read at (`None`: it is new).
    pub transaction: Option<(&'a Transaction, Option<u64>)>,
    /// An identical-postback window: its fingerprint and when it closes.
    pub window: Option<(&'a str, DateTime<Utc>)>,
    /// The deliveries' messages were sent before this write (the queue
    /// first): they are stored without their open-work entries.
    pub queued: bool,
}
