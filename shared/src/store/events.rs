//! Clicks, events and transactions: what came in.

use serde::Serialize;

use super::{keys, to_attrs, Item, PutCondition, Store};
use crate::error::{unavailable, Error, Result};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::{deliveries::delivery_item, Recorded, MAX_TRANSACTION_ITEMS};
use crate::domain::{Click, Event, Transaction};
use crate::lifecycle::Delivery;

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
