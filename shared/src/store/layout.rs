//! Where a table's transactions live, table-wide: one marker item, and the
//! move of transactions begun in items of their own into their first
//! events' items.
//!
//! A transaction begun by this version lives in the item of its first event
//! (`Transaction::first_event_id`). One begun before (or by a process with
//! `COMPACT_ITEMS=false`) lives in `TXN#<key>`. While a table may hold such
//! items, every read of a transaction asks both keys (one `BatchGetItem`,
//! two half units). The marker says when it cannot:
//!
//! * absent: a table an earlier version created, or one mid-upgrade. Both
//!   keys are read; a `COMPACT_ITEMS=false` process begins transactions in
//!   `TXN#` items.
//! * [`TransactionHomes::Moving`]: no process of this version begins a
//!   transaction in a `TXN#` item any more (whatever `COMPACT_ITEMS` says);
//!   some may remain, and both keys are still read.
//! * [`TransactionHomes::Moved`]: none remains. A transaction is read from
//!   its first event's item alone. Never undone.
//!
//! A table created by `--provision` is marked moved at once (it holds
//! nothing). An upgraded one is moved by [`Store::move_transactions`]
//! (`postback-local --move-transactions`), after every process of an
//! earlier version has stopped: it marks the table moving, waits until every
//! process has read that ([`RECHECK`] plus the longest request), moves each
//! `TXN#` item in a transaction conditional on the version it read (a change
//! meanwhile fails its own condition and is decided again from the moved
//! item), and marks the table moved when a full scan finds none left.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use chrono::Utc;
use futures::StreamExt;

use super::{from_attrs, is_condition_failure, key, Attrs, Store};
use crate::domain::Transaction;
use crate::error::{unavailable, Error, Result};

/// The marker's key.
const MARKER_PK: &str = "META#LAYOUT";
const MARKER_SK: &str = "LAYOUT";
/// The marker's attribute naming the state.
const STATE: &str = "transactions";

/// How long a process trusts a marker it read that is not [`TransactionHomes::Moved`].
pub const RECHECK: Duration = Duration::from_secs(60);

/// Where a table's transactions may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionHomes {
    /// In their first events' items or in their own (no marker).
    Both,
    /// As `Both`, but no new one is begun in an item of its own.
    Moving,
    /// In their first events' items only.
    Moved,
}

impl TransactionHomes {
    fn as_str(self) -> &'static str {
        match self {
            TransactionHomes::Both => "both",
            TransactionHomes::Moving => "moving",
            TransactionHomes::Moved => "moved",
        }
    }

    fn parse(attrs: &Attrs) -> Self {
        match attrs
            .get(STATE)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
        {
            Some("moved") => TransactionHomes::Moved,
            Some("moving") => TransactionHomes::Moving,
            _ => TransactionHomes::Both,
        }
    }
}

/// A process's last read of the marker (shared by the clones of a store).
#[derive(Clone, Default)]
pub(super) struct HomesCache(Arc<Mutex<Option<(TransactionHomes, Instant)>>>);

/// How many transactions [`Store::move_transactions`] moves at once.
const MOVES_AT_ONCE: usize = 16;

/// What became of one `TXN#` item.
enum MoveOutcome {
    Moved,
    /// Its first event's item held the transaction already.
    Dropped,
    /// Deleted meanwhile (by another run of the move).
    Gone,
}

/// What [`Store::move_transactions`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MoveReport {
    /// Items scanned.
    pub scanned: u64,
    /// Transactions moved into their first events' items.
    pub moved: u64,
    /// `TXN#` items dropped because the first event's item already held
    /// the transaction (which reads preferred).
    pub dropped: u64,
}

/// Marks a table just created (which holds nothing) as moved.
pub async fn mark_new_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
    put_marker(client, table, TransactionHomes::Moved).await
}

async fn put_marker(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    state: TransactionHomes,
) -> Result<()> {
    let mut item = key(MARKER_PK.into(), MARKER_SK);
    item.insert(STATE.into(), AttributeValue::S(state.as_str().into()));
    item.insert(
        "at".into(),
        AttributeValue::S(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        // Never back from moved.
        .condition_expression("attribute_not_exists(#s) OR #s <> :moved")
        .expression_attribute_names("#s", STATE)
        .expression_attribute_values(":moved", AttributeValue::S("moved".into()))
        .send()
        .await
        .map(|_| ())
        .or_else(|e| {
            if is_condition_failure(&e) {
                Ok(())
            } else {
                Err(unavailable("marking where transactions live")(e))
            }
        })
}

impl Store {
    /// Where this table's transactions may be: the marker, read at most
    /// once per [`RECHECK`] by each process (once for good when moved).
    pub async fn transaction_homes(&self) -> Result<TransactionHomes> {
        if let Ok(cached) = self.homes.0.lock() {
            if let Some((homes, at)) = *cached {
                if homes == TransactionHomes::Moved || at.elapsed() < RECHECK {
                    return Ok(homes);
                }
            }
        }
        let homes = self
            .get_raw(MARKER_PK.into(), MARKER_SK, true)
            .await?
            .map(|attrs| TransactionHomes::parse(&attrs))
            .unwrap_or(TransactionHomes::Both);
        if let Ok(mut cached) = self.homes.0.lock() {
            *cached = Some((homes, Instant::now()));
        }
        Ok(homes)
    }

    /// Moves every transaction stored in an item of its own into its first
    /// event's item, then marks the table moved (see the module's notes).
    /// `settle`: how long to wait after marking it moving, for every
    /// process to have read that ([`RECHECK`] and the longest request).
    pub async fn move_transactions(&self, settle: Duration) -> Result<MoveReport> {
        let mut report = MoveReport::default();
        if self.transaction_homes().await? == TransactionHomes::Moved {
            return Ok(report);
        }
        put_marker(&self.client, &self.table, TransactionHomes::Moving).await?;
        tokio::time::sleep(settle).await;
        loop {
            // Passes until one finds none: a change of a transaction being
            // moved never makes a new one, but a pass is cheap to repeat.
            let found = self.move_pass(&mut report).await?;
            if found == 0 {
                break;
            }
        }
        put_marker(&self.client, &self.table, TransactionHomes::Moved).await?;
        if let Ok(mut cached) = self.homes.0.lock() {
            *cached = Some((TransactionHomes::Moved, Instant::now()));
        }
        Ok(report)
    }

    /// One scan of the table, moving each `TXN#` item found: how many were.
    async fn move_pass(&self, report: &mut MoveReport) -> Result<u64> {
        let mut found = 0;
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :txn")
                .expression_attribute_values(":txn", AttributeValue::S("TXN".into()))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable("scanning for transactions to move"))?;
            report.scanned += u64::try_from(page.scanned_count()).unwrap_or(0);
            let items = page.items.unwrap_or_default();
            found += items.len() as u64;
            // A page's transactions are distinct items: moved side by side.
            let mut moves = futures::stream::iter(items.into_iter().map(|i| self.move_one(i)))
                .buffer_unordered(MOVES_AT_ONCE);
            while let Some(moved) = moves.next().await {
                match moved? {
                    MoveOutcome::Moved => report.moved += 1,
                    MoveOutcome::Dropped => report.dropped += 1,
                    MoveOutcome::Gone => {}
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found),
            }
        }
    }

    /// Moves one `TXN#` item (as read), reading it again while a change
    /// keeps overtaking the move.
    async fn move_one(&self, mut attrs: Attrs) -> Result<MoveOutcome> {
        let Some((pk, sk)) = attrs
            .get("pk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .map(|pk| (pk, "TXN"))
        else {
            return Ok(MoveOutcome::Gone);
        };
        let Some(txn_key) = pk.strip_prefix("TXN#").map(str::to_string) else {
            return Ok(MoveOutcome::Gone);
        };
        let first = Transaction::first_event_id(&txn_key);
        let (epk, esk) = super::keys::event(&first);
        for _ in 0..20 {
            // The version read, as its condition (none on records written
            // before versions existed).
            let (condition, version) = match attrs.get("version") {
                Some(v @ AttributeValue::N(_)) => ("version = :v", Some(v.clone())),
                _ => (
                    "attribute_exists(pk) AND attribute_not_exists(version)",
                    None,
                ),
            };
            let mut t: Transaction = from_attrs(attrs.clone())?;
            t.first_event = Some(first.clone());
            let mut holder = key(epk.clone(), esk);
            holder.insert("txn".into(), self.transaction_value(&t)?);
            if let Some(ttl) = attrs.get("ttl") {
                holder.insert("ttl".into(), ttl.clone());
            }
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(holder))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| Error::Internal(e.into()))?;
            let mut delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), sk)))
                .condition_expression(condition);
            if let Some(v) = &version {
                delete = delete.expression_attribute_values(":v", v.clone());
            }
            let delete = delete.build().map_err(|e| Error::Internal(e.into()))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().delete(delete.clone()).build())
                .send()
                .await;
            let reasons = match result {
                Ok(_) => return Ok(MoveOutcome::Moved),
                Err(e) => match cancellation_codes(&e) {
                    Some(codes) => codes,
                    None => return Err(unavailable("moving a transaction")(e)),
                },
            };
            let failed = |i: usize| {
                reasons
                    .get(i)
                    .is_some_and(|c| c == "ConditionalCheckFailed")
            };
            if failed(0) && !failed(1) {
                // Its first event's item holds it already (begun in both
                // places during an upgrade): reads prefer that one.
                let dropped = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(delete.key))
                    .condition_expression(delete.condition_expression.unwrap_or_default())
                    .set_expression_attribute_values(delete.expression_attribute_values)
                    .send()
                    .await;
                match dropped {
                    Ok(_) => return Ok(MoveOutcome::Dropped),
                    Err(e) if is_condition_failure(&e) => {}
                    Err(e) => return Err(unavailable("dropping a moved transaction")(e)),
                }
            }
            // Changed (or gone) since it was read: read it again.
            match self.get_raw(pk.clone(), sk, true).await? {
                Some(again) => attrs = again,
                None => return Ok(MoveOutcome::Gone),
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "transaction {txn_key} kept changing while it was moved: run the move again"
        )))
    }
}

/// The cancellation reasons of a `TransactWriteItems`, by item, if that is
/// how it failed.
fn cancellation_codes<R>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(c) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_string())
                .collect(),
        ),
        _ => None,
    }
}
