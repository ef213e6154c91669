//! Clicks, events and transactions: what came in.

use serde::Serialize;

use super::{applied, from_attrs, is_condition_failure, keys, Attrs, Item, PutCondition, Store};
use crate::error::{unavailable, Error, Result};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

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
        // The transaction's first event holds it: one item for both.
        let first = r
            .transaction
            .filter(|(t, _)| t.first_event.as_ref() == Some(&r.event.id));
        let event = self.event_attrs(r.event, first.map(|(t, _)| t))?;
        // Its item may hold a placeholder (a waiting invalidation) it replaces.
        let expect = match first {
            Some((_, Some(v))) => Expect::Held(v),
            _ => Expect::Absent,
        };
        if r.window.is_none()
            && r.deliveries.is_empty()
            && (first.is_some() || r.transaction.is_none())
        {
            // The event alone (its deliveries owed, or none; its transaction,
            // if any, in its item): one conditional `PutItem`, half a
            // transaction's units.
            let (condition, names, values) = expect.parts();
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(event))
                .condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values);
            return Ok(match put.send().await {
                Ok(_) => Recorded::New,
                // A first change whose item is taken may be another first
                // change: deciding again tells a repeat from a change.
                Err(e) if is_condition_failure(&e) && first.is_some() => Recorded::Raced,
                Err(e) if is_condition_failure(&e) => Recorded::Duplicate,
                Err(e) => return Err(unavailable("recording an event")(e)),
            });
        }
        items.push(self.conditional_attrs_put(event, expect)?);
        for d in r.deliveries {
            items.push(self.conditional_put(&self.new_delivery_item(d, r.queued), Expect::Absent)?);
        }
        match (r.transaction, first) {
            (_, Some(_)) | (None, _) => {}
            (Some((t, read_version)), None) => items.push(self.transaction_write(t, read_version)?),
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
                // The window's item, or the event's without one; a first
                // event's item taken may be another first change: decided
                // again.
                Some(0) if first.is_none() => Ok(Recorded::Duplicate),
                Some(_) => Ok(Recorded::Raced),
                None => Err(unavailable("recording an event")(e)),
            },
        }
    }

    /// An event's item as this store writes it, holding `transaction` if it
    /// is the transaction's first event (`Transaction::first_event`).
    fn event_attrs(&self, event: &Event, transaction: Option<&Transaction>) -> Result<Attrs> {
        let (pk, sk) = keys::event(&event.id);
        let mut item = Item::new(pk, sk, event);
        item.ttl = self.expiry(event.recorded_at);
        let Some(t) = transaction else {
            return self.to_attrs(&item);
        };
        let mut attrs = serde_dynamo::to_item(&item)
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("serializing an item")))?;
        let mut held = long_attrs(t)?;
        if self.compact {
            // What the new transaction shares with its first event, once
            // (its last seen change, which is its state, first).
            super::compact::drop_seen_state(&mut held);
            super::compact::fold_into_first_event(&attrs, &mut held);
            super::compact::fold_last_deliveries(&attrs, &mut held);
            super::compact::encode(&mut attrs);
            super::compact::encode_transaction(&mut held);
        }
        attrs.insert(HOLDS.into(), AttributeValue::M(held));
        Ok(attrs)
    }

    /// A transaction as the map its first event's item holds.
    pub(super) fn transaction_value(&self, t: &Transaction) -> Result<AttributeValue> {
        let mut attrs = long_attrs(t)?;
        if self.compact {
            super::compact::encode_transaction(&mut attrs);
        }
        Ok(AttributeValue::M(attrs))
    }

    /// The write of a transaction's new state in its transaction: a put of
    /// its own item, or an update of the map its first event's item holds
    /// (which leaves the event, and the claims on it, as they are).
    fn transaction_write(
        &self,
        t: &Transaction,
        read_version: Option<u64>,
    ) -> Result<TransactWriteItem> {
        let Some(first) = &t.first_event else {
            let (pk, sk) = keys::transaction(&t.key());
            let mut item = Item::new(pk, sk, t);
            item.ttl = self.expiry(t.updated_at);
            let expect = read_version.map_or(Expect::Absent, Expect::Own);
            return self.conditional_put(&item, expect);
        };
        let (pk, sk) = keys::event(first);
        let held = self.held_update(t, read_version.unwrap_or(0), self.expiry(t.updated_at))?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(super::key(pk, sk)))
            .update_expression(held.expression)
            .condition_expression(HELD_VERSION_READ)
            .set_expression_attribute_names(Some(held.names))
            .set_expression_attribute_values(Some(held.values));
        let update = update.build().map_err(|e| Error::Internal(e.into()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The update of the transaction its first event's item holds to `t`,
    /// with the item's expiry (`ttl`), on the version read: by a later
    /// change (in its transaction) or a placeholder (alone).
    fn held_update(
        &self,
        t: &Transaction,
        read_version: u64,
        ttl: Option<i64>,
    ) -> Result<HeldUpdate> {
        let mut names = HashMap::from([("#t".to_string(), HOLDS.to_string())]);
        let mut values = HashMap::from([
            (":t".to_string(), self.transaction_value(t)?),
            (
                ":v".to_string(),
                AttributeValue::N(read_version.to_string()),
            ),
        ]);
        // Its first event lives as long as the transaction changes.
        let expression = match ttl {
            Some(ttl) => {
                names.insert("#ttl".into(), "ttl".into());
                values.insert(":ttl".into(), AttributeValue::N(ttl.to_string()));
                "SET #t = :t, #ttl = :ttl"
            }
            None => "SET #t = :t",
        };
        Ok(HeldUpdate {
            expression,
            names,
            values,
        })
    }

    /// Where a new transaction of `key` is stored: in its first event's item
    /// (`Transaction::first_event_id`), unless this store writes the long
    /// layout (`COMPACT_ITEMS=false`), which versions before read, on a
    /// table whose transactions are not being moved (`layout.rs`).
    pub async fn home_of_new(&self, key: &str) -> Result<Option<EventId>> {
        let first = self.compact
            || self.transaction_homes().await? != super::layout::TransactionHomes::Both;
        Ok(first.then(|| Transaction::first_event_id(key)))
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
        let ttl = AttributeValue::N(expires.timestamp().to_string());
        let result = match (&t.first_event, read_version) {
            // In its first event's item, which holds only it until the
            // event is written there.
            (Some(first), None) => {
                let (pk, sk) = keys::event(first);
                let mut attrs = super::key(pk, sk);
                attrs.insert(HOLDS.into(), self.transaction_value(t)?);
                attrs.insert("ttl".into(), ttl);
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(attrs))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.map_service_error(Into::into))
            }
            (Some(first), Some(v)) => {
                let (pk, sk) = keys::event(first);
                let held = self.held_update(t, v, Some(expires.timestamp()))?;
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(super::key(pk, sk)))
                    .update_expression(held.expression)
                    .condition_expression(HELD_VERSION_READ)
                    .set_expression_attribute_names(Some(held.names))
                    .set_expression_attribute_values(Some(held.values))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.map_service_error(Into::into))
            }
            (None, _) => {
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
                put.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.map_service_error(Into::into))
            }
        };
        applied::<(), aws_sdk_dynamodb::Error, _>(result, "storing a waiting invalidation")
    }

    fn conditional_put<T: Serialize>(
        &self,
        item: &Item<T>,
        expect: Expect,
    ) -> Result<TransactWriteItem> {
        self.conditional_attrs_put(self.to_attrs(item)?, expect)
    }

    fn conditional_attrs_put(&self, attrs: Attrs, expect: Expect) -> Result<TransactWriteItem> {
        let (condition, names, values) = expect.parts();
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
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
        match self.get_raw(pk, sk, true).await? {
            Some(attrs) => event_of(attrs),
            None => Ok(None),
        }
    }

    /// The transaction, read consistently.
    pub async fn get_transaction(&self, id: &str) -> Result<Option<Transaction>> {
        self.read_transaction(id, true).await
    }

    /// The transaction, read consistently or not (half the read units: for
    /// a decision whose write is conditional on the version read). Both the
    /// items it may be in are asked in one `BatchGetItem`: its first event's
    /// (`Transaction::first_event_id`) and its own (a transaction begun
    /// before events held theirs, or with `COMPACT_ITEMS=false`), unless
    /// the table holds none of the latter any more (`layout.rs`).
    pub async fn read_transaction(
        &self,
        id: &str,
        consistent: bool,
    ) -> Result<Option<Transaction>> {
        let first = Transaction::first_event_id(id);
        let (epk, esk) = keys::event(&first);
        let (tpk, tsk) = keys::transaction(id);
        let mut wanted = vec![super::key(epk, esk)];
        // Once none can be in an item of its own, only its first event's.
        if self.transaction_homes().await? != super::layout::TransactionHomes::Moved {
            wanted.push(super::key(tpk, tsk));
        }
        let mut own = None;
        for attrs in self.raw_items_of(&wanted, consistent).await? {
            match attrs
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some("TXN") => own = Some(from_attrs::<Transaction>(attrs)?),
                _ => {
                    if let Some(mut t) = held_transaction(&attrs)? {
                        t.first_event = Some(first);
                        return Ok(Some(t));
                    }
                }
            }
        }
        Ok(own)
    }

    /// Drops a transaction's waiting invalidation (one its payout refused),
    /// unless the transaction changed since it was read: false then.
    pub async fn drop_waiting_invalidation(&self, t: &Transaction) -> Result<bool> {
        let (key, prefix) = match &t.first_event {
            Some(first) => {
                let (pk, sk) = keys::event(first);
                (super::key(pk, sk), "#t.")
            }
            None => {
                let (pk, sk) = keys::transaction(&t.key());
                (super::key(pk, sk.to_string()), "")
            }
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(format!(
                "REMOVE {prefix}waiting_invalidation SET {prefix}version = :next"
            ))
            .condition_expression(format!("{prefix}version = :v"))
            .expression_attribute_values(":v", AttributeValue::N(t.version.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((t.version + 1).to_string()));
        if t.first_event.is_some() {
            update = update.expression_attribute_names("#t", HOLDS);
        }
        applied(update.send().await, "dropping a waiting invalidation")
    }
}

/// The attribute of a transaction's first event that holds the transaction.
const HOLDS: &str = "txn";

/// The condition of an update of a held transaction (`#t`: [`HOLDS`]).
const HELD_VERSION_READ: &str = "#t.version = :v";

/// What a put of an event, a delivery or a transaction requires of the item
/// it replaces: its condition, with the names and values it uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// None there yet.
    Absent,
    /// A first event's item that holds only its transaction, at this
    /// version (a placeholder the event replaces).
    Held(u64),
    /// A transaction's own item at this version. At 0, one written before
    /// versions existed, which must still be there: one moved into its
    /// first event's item meanwhile is not written again here.
    Own(u64),
}

impl Expect {
    fn parts(self) -> (&'static str, Option<HashMap<String, String>>, Option<Attrs>) {
        let version = |v: u64| {
            Some(Attrs::from([(
                ":v".into(),
                AttributeValue::N(v.to_string()),
            )]))
        };
        match self {
            Expect::Absent => ("attribute_not_exists(pk)", None, None),
            Expect::Held(v) => (
                HELD_VERSION_READ,
                Some(HashMap::from([("#t".into(), HOLDS.into())])),
                version(v),
            ),
            Expect::Own(0) => (
                "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :v)",
                None,
                version(0),
            ),
            Expect::Own(v) => ("version = :v", None, version(v)),
        }
    }
}

/// An update of the transaction a first event's item holds (`held_update`).
struct HeldUpdate {
    expression: &'static str,
    names: HashMap<String, String>,
    values: Attrs,
}

/// A transaction's attributes in the domain's names.
fn long_attrs(t: &Transaction) -> Result<Attrs> {
    serde_dynamo::to_item(t)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("serializing a transaction")))
}

/// The transaction an event's item holds, if it is its first event's.
fn held_transaction(attrs: &Attrs) -> Result<Option<Transaction>> {
    let Some(AttributeValue::M(held)) = attrs.get(HOLDS) else {
        return Ok(None);
    };
    let mut held = held.clone();
    let mut event = attrs.clone();
    event.remove(HOLDS);
    super::compact::decode(&mut event);
    super::compact::unfold_from_first_event(&event, &mut held);
    super::compact::unfold_last_deliveries(&event, &mut held);
    // Read as an item of its own kind (keys and layout).
    held.insert("pk".into(), AttributeValue::S(String::new()));
    held.insert("sk".into(), AttributeValue::S("TXN".into()));
    from_attrs(held).map(Some)
}

/// The event an event's item holds: none in the item of a transaction's
/// first event that only holds the transaction yet (a waiting invalidation).
fn event_of(mut attrs: Attrs) -> Result<Option<Event>> {
    attrs.remove(HOLDS);
    if attrs
        .keys()
        .all(|k| matches!(k.as_str(), "pk" | "sk" | "ttl"))
    {
        return Ok(None);
    }
    from_attrs(attrs).map(Some)
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
    pub fn owes_in_one_unit(
        &self,
        event: &Event,
        transaction: Option<&Transaction>,
    ) -> Result<bool> {
        /// A claim: its name and a map of two epoch-ms numbers.
        const CLAIM_BYTES: usize = 64;
        let first = transaction.filter(|t| t.first_event.as_ref() == Some(&event.id));
        let size = crate::metrics::item_size(&self.event_attrs(event, first)?);
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
    let Some(event) = event_of(attrs)? else {
        return Ok(None);
    };
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

#[cfg(test)]
mod expect_tests {
    use super::*;

    /// DynamoDB refuses a request whose condition names a placeholder it
    /// was not given, or that gives one its condition does not use.
    #[test]
    fn each_expectation_gives_exactly_the_names_and_values_its_condition_uses() {
        for expect in [
            Expect::Absent,
            Expect::Held(3),
            Expect::Own(0),
            Expect::Own(7),
        ] {
            let (condition, names, values) = expect.parts();
            let used: std::collections::BTreeSet<String> = condition
                .split(|c: char| !(c.is_alphanumeric() || c == '#' || c == ':' || c == '_'))
                .filter(|w| w.starts_with('#') || w.starts_with(':'))
                .map(str::to_string)
                .collect();
            let given: std::collections::BTreeSet<String> = names
                .unwrap_or_default()
                .into_keys()
                .chain(values.unwrap_or_default().into_keys())
                .collect();
            assert_eq!(used, given, "{expect:?}: {condition}");
        }
        let (_, _, values) = Expect::Held(3).parts();
        assert_eq!(
            values.unwrap().get(":v"),
            Some(&AttributeValue::N("3".into()))
        );
    }
}
