//! Deliveries: claims, attempts, parking, the partner's history (GSI1).

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use base64::Engine;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use super::open::gsi2_of;
use super::{
    from_attrs, is_condition_failure, key, keys, millis, sort_key_time, Attrs, Item, PutCondition,
    Store, GSI1,
};
use crate::domain::{Endpoint, Event};
use crate::error::{unavailable, Error, Result};
use crate::ids::{DeliveryId, EndpointId, EventId, PartnerId};
use crate::lifecycle::{Delivery, DeliveryStatus};

impl Store {
    /// One delivery, with its event.
    pub async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<Delivery>> {
        let (pk, sk) = keys::delivery(id);
        let Some(attrs) = self.get_raw(pk, sk, true).await? else {
            return Ok(None);
        };
        Ok(self.with_events(vec![attrs], None).await?.pop())
    }

    /// Whether a delivery is stored pending and not parked (read
    /// consistently, without its event): one whose message must not be
    /// lost. `None`: not stored (yet, if its event owes it).
    pub async fn is_pending_unparked(&self, id: &DeliveryId) -> Result<Option<bool>> {
        let (pk, sk) = keys::delivery(id);
        let Some(attrs) = self.get_raw(pk, sk, true).await? else {
            return Ok(None);
        };
        let status: StatusOnly = from_attrs(attrs)?;
        Ok(Some(
            status.status == DeliveryStatus::Pending && !status.parked,
        ))
    }

    /// Where a delivery stands, read consistently, with its event only if it
    /// is pending: what the ordering check needs of an earlier change.
    pub async fn get_pending_delivery(&self, id: &DeliveryId) -> Result<Earlier> {
        let (pk, sk) = keys::delivery(id);
        let Some(attrs) = self.get_raw(pk, sk, true).await? else {
            return Ok(Earlier::NotStored);
        };
        let status: StatusOnly = from_attrs(attrs.clone())?;
        if status.status != DeliveryStatus::Pending {
            return Ok(Earlier::Ended);
        }
        Ok(match self.with_events(vec![attrs], None).await?.pop() {
            Some(d) => Earlier::Pending(Box::new(d)),
            None => Earlier::Ended,
        })
    }

    /// Several deliveries by id (BatchGetItem, consistent), in the order
    /// asked, with their events.
    pub async fn get_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<Delivery>> {
        let keys: Vec<Attrs> = ids
            .iter()
            .map(|id| {
                let (pk, sk) = keys::delivery(id);
                key(pk, sk)
            })
            .collect();
        self.deliveries_of(&keys, true).await
    }

    /// Every delivery of `event`, in its order: those stored, and those it
    /// owes that no worker has claimed yet (created by their claims), as
    /// pending without attempts.
    pub async fn deliveries_of_event(&self, event: &Event) -> Result<Vec<Delivery>> {
        let stored = self.get_deliveries(&event.delivery_ids).await?;
        let mut by_id: HashMap<DeliveryId, Delivery> =
            stored.into_iter().map(|d| (d.id.clone(), d)).collect();
        Ok(event
            .delivery_ids
            .iter()
            .filter_map(|id| {
                by_id.remove(id).or_else(|| {
                    let owed = event.owed.get(id)?;
                    Some(Delivery::from_owed(id.clone(), owed, event.clone()))
                })
            })
            .collect())
    }

    /// The deliveries behind index `entries`, in their order, with their events.
    pub(super) async fn deliveries_of(
        &self,
        entries: &[Attrs],
        consistent: bool,
    ) -> Result<Vec<Delivery>> {
        let items = self.raw_items_of(entries, consistent).await?;
        self.with_events(items, None).await
    }

    /// Deliveries as stored, each given its event: a delivery stores only its
    /// `event_id` (the event is its own item, written once in the same
    /// transaction); those written before kept a copy, which stands. `known`
    /// is an event already at hand (the queue message's copy): not read again.
    /// Events never change once written, so an eventually consistent read is
    /// exact once it finds one; one not found yet (a read within moments of
    /// the write) is asked again consistently. A delivery whose event is gone
    /// (expired under the retention just before it) is left out.
    pub(super) async fn with_events(
        &self,
        items: Vec<Attrs>,
        known: Option<&Event>,
    ) -> Result<Vec<Delivery>> {
        let event_of = |a: &Attrs| -> Option<EventId> {
            if a.contains_key("event") {
                return None;
            }
            serde_dynamo::from_attribute_value(super::compact::field(a, "event_id")?.clone()).ok()
        };
        let mut events: HashMap<EventId, AttributeValue> = HashMap::new();
        if let Some(e) = known {
            events.insert(e.id.clone(), event_value(e)?);
        }
        let mut wanted: Vec<EventId> = items
            .iter()
            .filter_map(event_of)
            .filter(|id| !events.contains_key(id))
            .collect();
        wanted.sort();
        wanted.dedup();
        for consistent in [false, true] {
            let keys: Vec<Attrs> = wanted
                .iter()
                .filter(|id| !events.contains_key(*id))
                .map(|id| {
                    let (pk, sk) = keys::event(id);
                    key(pk, sk)
                })
                .collect();
            if keys.is_empty() {
                break;
            }
            for attrs in self.raw_items_of(&keys, consistent).await? {
                let event: Event = from_attrs(attrs)?;
                events.insert(event.id.clone(), event_value(&event)?);
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for mut attrs in items {
            if let Some(id) = event_of(&attrs) {
                match events.get(&id) {
                    Some(e) => {
                        attrs.insert("event".into(), e.clone());
                    }
                    None => {
                        tracing::warn!(event_id = %id, "a delivery's event is gone (expired); the delivery is left out");
                        continue;
                    }
                }
            }
            out.push(from_attrs(attrs)?);
        }
        Ok(out)
    }

    /// Claims a due, pending delivery for `lease` with one conditional
    /// `UpdateItem` that also returns it: two workers handed the same message
    /// (SQS is at-least-once) cannot both send, and a message that arrives
    /// before its delivery is due does not bring the attempt forward.
    /// `event` is the delivery's event if the caller has it (the queue
    /// message's copy): the claimed delivery is then complete without a read.
    pub async fn claim_delivery(
        &self,
        id: &DeliveryId,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        event: Option<&Event>,
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
            // The open-work index keeps its key (moving it would write the
            // index twice on every attempt): should the reconciler find the
            // delivery while a worker holds it, the message it queues meets
            // this lease and waits for its end. `claim_ms` is removed by the
            // write that records the attempt: one still there is a claim
            // whose outcome was never recorded.
            .update_expression(
                "SET lease_ms = :lease, \
                 prior_claim_ms = if_not_exists(claim_ms, :zero), claim_ms = :now",
            )
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .condition_expression(
                "attribute_exists(pk) AND #status = :pending \
                 AND (attribute_not_exists(parked) OR parked = :no) \
                 AND (attribute_not_exists(lease_ms) OR lease_ms < :now) \
                 AND (attribute_not_exists(due_ms) OR due_ms <= :now)",
            )
            .expression_attribute_values(":no", AttributeValue::Bool(false))
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
                let lost = attrs
                    .get("prior_claim_ms")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .filter(|ms| *ms > 0)
                    .map(millis);
                let Some(mut d) = self.with_events(vec![attrs], event).await?.pop() else {
                    return Ok(Claim::Missing);
                };
                if let Some(claimed_at) = lost {
                    // A worker claimed it and stopped before recording: it
                    // may have sent. On record as an attempt of unknown outcome.
                    d.lost_attempt(claimed_at, now);
                }
                return Ok(Claim::Claimed(Box::new(d)));
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                _ => return Err(unavailable("claiming a delivery")(e)),
            },
        };
        let (pk, sk) = keys::delivery(id);
        let Some(attrs) = self.old_or_read(old, pk, sk).await? else {
            return Ok(Claim::Missing);
        };
        let item: Item<StatusOnly> = super::item_from_attrs(attrs)?;
        Ok(match item.data.status {
            status @ (DeliveryStatus::Delivered
            | DeliveryStatus::Failed
            | DeliveryStatus::Cancelled) => Claim::Finished(status),
            DeliveryStatus::Pending if item.data.parked => Claim::Parked,
            DeliveryStatus::Pending => match (item.lease_ms, item.due_ms) {
                (Some(l), _) if l >= now_ms => Claim::Leased(millis(l)),
                (_, Some(d)) if d > now_ms => Claim::NotDue(millis(d)),
                // The condition failed but neither reason holds any more: it just changed.
                _ => Claim::Leased(now + chrono::Duration::seconds(1)),
            },
        })
    }

    /// Cancels `earlier` as superseded by the delivery `by`, if it is still
    /// pending and nobody holds it: false if a worker is sending it (or it
    /// ended meanwhile).
    pub async fn supersede(
        &self,
        earlier: &Delivery,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut d = earlier.clone();
        d.cancel(
            format!("superseded: a later change of the transaction (delivery {by}) replaced it before it was delivered"),
            now,
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&self.delivery_item(&d))?))
            .condition_expression(UNCLAIMED_PENDING)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(unclaimed_values(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("superseding a delivery")(e)),
        }
    }

    /// Says why a pending delivery waits (its message moved to the slow
    /// lane), without claiming it: only the reason changes, and only while it
    /// is pending and nobody holds it.
    pub async fn note_waiting(
        &self,
        id: &DeliveryId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (pk, sk) = keys::delivery(id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET reason = :reason")
            .condition_expression(UNCLAIMED_PENDING)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(unclaimed_values(now)))
            .expression_attribute_values(":reason", AttributeValue::S(reason.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(unavailable("noting why a delivery waits")(e)),
        }
    }

    /// A page of a partner's deliveries from GSI1 (never a table scan),
    /// newest first, within `from..=to`, filtered by status and endpoint.
    /// Filters apply after DynamoDB's own page limit, so the history's shards
    /// are read until `limit` items are found or the index ends.
    pub async fn query_deliveries(&self, q: &DeliveryQuery) -> Result<DeliveryPage> {
        // Key values cannot be empty: `0` sorts before every timestamp.
        let lower = q
            .from
            .map(|t| sort_key_time(&t))
            .unwrap_or_else(|| "0".into());
        // `~` sorts after every character used in the sort key.
        // By event time, the index (by delivery time) still bounds the read
        // from below, since a delivery is made after its event; the event's
        // own time is then filtered.
        let mut upper = match (q.by_event_time, q.to) {
            (false, Some(t)) => format!("{}~", sort_key_time(&t)),
            _ => "~".into(),
        };
        let mut filters = Vec::new();
        if q.by_event_time {
            // Deliveries stored before `event_at` existed have none: their
            // event's time is checked once the event is read.
            // Stored as text by the long layout, as nanoseconds by the
            // compact one: a bound of the other type matches nothing.
            filters.push(
                "(event_at BETWEEN :efrom AND :eto OR event_at BETWEEN :nfrom AND :nto \
                 OR attribute_not_exists(event_at))",
            );
        }
        if q.status.is_some() {
            filters.push("#status = :status");
        }
        if q.endpoint_id.is_some() {
            filters.push("endpoint_id = :endpoint");
        }
        // A cursor of another `from`/`to` lies outside this read's key range:
        // the caller's to fix, not an outage. Inside it, the page goes on
        // below the cursor's entry, in every shard.
        let after = q.start.as_ref().and_then(|k| k.0.get("gsi1sk")).cloned();
        if let Some(at) = &after {
            if at.as_str() < lower.as_str() || at.as_str() > upper.as_str() {
                return Err(Error::rule(
                    "cursor",
                    "`cursor` was returned for other `from`/`to` bounds: start again without it",
                ));
            }
            upper = at.clone();
        }
        let query = |gsi1pk: &str| {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :pk AND gsi1sk BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", AttributeValue::S(gsi1pk.to_string()))
                .expression_attribute_values(":lower", AttributeValue::S(lower.clone()))
                .expression_attribute_values(":upper", AttributeValue::S(upper.clone()))
                .scan_index_forward(false);
            if let Some(status) = q.status {
                req = req
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":status",
                        AttributeValue::S(status.as_str().into()),
                    );
            }
            if let Some(e) = &q.endpoint_id {
                req =
                    req.expression_attribute_values(":endpoint", AttributeValue::S(e.to_string()));
            }
            if q.by_event_time {
                let bound = |t: Option<DateTime<Utc>>, default: &str| {
                    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                        .unwrap_or_else(|| default.to_string())
                };
                let nanos = |t: Option<DateTime<Utc>>, default: i64| {
                    let n = t.and_then(|t| t.timestamp_nanos_opt()).unwrap_or(default);
                    AttributeValue::N(n.to_string())
                };
                req = req
                    .expression_attribute_values(":efrom", AttributeValue::S(bound(q.from, "0")))
                    .expression_attribute_values(":eto", AttributeValue::S(bound(q.to, "~")))
                    .expression_attribute_values(":nfrom", nanos(q.from, i64::MIN))
                    .expression_attribute_values(":nto", nanos(q.to, i64::MAX));
            }
            if !filters.is_empty() {
                req = req.filter_expression(filters.join(" AND "));
            }
            req
        };
        let read = self
            .history_entries(&q.partner_id, true, after.as_deref(), q.limit, None, query)
            .await?;
        // The index holds keys and the filtered attributes only: the page's
        // deliveries are read from the table once it is complete.
        let next = read
            .more
            .then(|| read.entries.last().map(|e| HistoryCursor(entry_key(e))))
            .flatten();
        let mut items = self.deliveries_of(&read.entries, false).await?;
        if q.by_event_time {
            let at = |d: &Delivery| d.event.occurred_at;
            items.retain(|d| q.from.is_none_or(|f| at(d) >= f) && q.to.is_none_or(|t| at(d) <= t));
        }
        Ok(DeliveryPage { items, next })
    }

    /// Up to `limit` entries of a partner's history (GSI1), merged over its
    /// shards in sort-key order (newest first, or oldest first), skipping the
    /// entry at `after` (a cursor's, which the caller's bounds include).
    /// Each shard is read in chunks as the merge needs them, in at most
    /// `max_queries` queries (`None`: until `limit` or the end). `query`
    /// builds one shard's query, its key and filters set.
    pub(super) async fn history_entries<F>(
        &self,
        partner_id: &PartnerId,
        newest_first: bool,
        after: Option<&str>,
        limit: usize,
        max_queries: Option<usize>,
        query: F,
    ) -> Result<HistoryEntries>
    where
        F: Fn(&str) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    {
        struct Shard {
            key: String,
            entries: std::collections::VecDeque<Attrs>,
            start: Option<Attrs>,
            done: bool,
            chunk: i32,
        }
        let keys = keys::partner_history(partner_id);
        // A shard's share of the page, and a little more: hashing spreads
        // deliveries evenly. A filtered chunk that finds nothing doubles.
        let first_chunk = (limit / keys.len().max(1) + 2).clamp(1, 1000) as i32;
        let mut shards: Vec<Shard> = keys
            .into_iter()
            .map(|key| Shard {
                key,
                entries: Default::default(),
                start: None,
                done: false,
                chunk: first_chunk,
            })
            .collect();
        fn sort_key(e: &Attrs) -> &str {
            e.get("gsi1sk")
                .and_then(|v| v.as_s().ok())
                .map_or("", String::as_str)
        }
        let mut entries = Vec::new();
        let mut queries = 0usize;
        while entries.len() < limit {
            // Every shard that has nothing at hand and more to read is read
            // (together), until each has a next entry or has ended.
            let empty: Vec<usize> = (0..shards.len())
                .filter(|&i| shards[i].entries.is_empty() && !shards[i].done)
                .collect();
            if !empty.is_empty() {
                if max_queries.is_some_and(|m| queries + empty.len() > m) {
                    return Ok(HistoryEntries {
                        entries,
                        more: true,
                    });
                }
                queries += empty.len();
                let pages = futures::future::join_all(empty.iter().map(|&i| {
                    query(&shards[i].key)
                        .limit(shards[i].chunk)
                        .set_exclusive_start_key(shards[i].start.clone())
                        .send()
                }))
                .await;
                for (i, page) in empty.into_iter().zip(pages) {
                    let page = page.map_err(unavailable("reading a partner's history"))?;
                    let shard = &mut shards[i];
                    let found: Vec<Attrs> = page
                        .items
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|e| Some(sort_key(e)) != after)
                        .collect();
                    if found.is_empty() {
                        shard.chunk = (shard.chunk * 2).min(1000);
                    }
                    shard.entries.extend(found);
                    shard.start = page.last_evaluated_key.filter(|k| !k.is_empty());
                    shard.done = shard.start.is_none();
                }
                continue;
            }
            // Every shard has its next entry at hand, or has ended: the next
            // entry of the whole history is the first of those.
            let heads = shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.entries.front().map(|e| (i, sort_key(e))));
            let next = if newest_first {
                heads.max_by(|a, b| a.1.cmp(b.1))
            } else {
                heads.min_by(|a, b| a.1.cmp(b.1))
            }
            .map(|(i, _)| i);
            let Some(entry) = next.and_then(|i| shards[i].entries.pop_front()) else {
                return Ok(HistoryEntries {
                    entries,
                    more: false,
                });
            };
            entries.push(entry);
        }
        let more = shards.iter().any(|s| !s.entries.is_empty() || !s.done);
        Ok(HistoryEntries { entries, more })
    }

    /// Holds a claimed delivery while its endpoint is paused, in one
    /// transaction with a check that the endpoint is still paused at this very
    /// version: a re-activation (or deletion) that raced the worker makes it
    /// fail, and the worker looks again instead of parking what nobody would
    /// release. False when the endpoint changed.
    pub async fn park_delivery(&self, delivery: &Delivery, endpoint: &Endpoint) -> Result<bool> {
        let (epk, esk) = keys::endpoint(&endpoint.partner_id, &endpoint.id);
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(epk, esk)))
            .condition_expression("attribute_exists(pk) AND active = :no AND version = :v")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":v", AttributeValue::N(endpoint.version.to_string()))
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&self.delivery_item(delivery))?))
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::cancelled_by_condition(&e) => Ok(false),
            Err(e) => Err(unavailable("parking a delivery")(e)),
        }
    }

    /// Starts a new round of attempts on a finished delivery. Fails with
    /// `Conflict` if it is pending (a round is already under way).
    pub async fn restart_delivery(&self, delivery: &Delivery) -> Result<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&self.delivery_item(delivery))?))
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
        self.put(&self.delivery_item(delivery), PutCondition::None)
            .await?;
        Ok(())
    }
}
/// A page of a partner's deliveries, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Where the next page starts, when more may follow.
    pub next: Option<HistoryCursor>,
}

/// Where a page of a partner's history continues: opaque to callers, bound
/// to the partner whose history it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryCursor(HashMap<String, String>);

impl HistoryCursor {
    /// The cursor as it travels in a URL.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&self.0).unwrap_or_default())
    }

    /// A cursor from a URL, if it is one this partner's history returned.
    pub fn decode(raw: &str, partner_id: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()?;
        let key: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
        let partner = PartnerId::parse(partner_id).ok()?;
        let keys_ok = ["pk", "sk", "gsi1pk", "gsi1sk"]
            .iter()
            .all(|k| key.contains_key(*k))
            && key.len() == 4;
        let own = key
            .get("gsi1pk")
            .is_some_and(|k| keys::is_partner_history(&partner, k));
        (keys_ok && own).then_some(HistoryCursor(key))
    }
}

/// Entries of a partner's history, in order, and whether more follow them.
pub(super) struct HistoryEntries {
    pub entries: Vec<Attrs>,
    pub more: bool,
}

/// An index entry's key (table and GSI1 keys), as a cursor holds it.
pub(super) fn entry_key(entry: &Attrs) -> HashMap<String, String> {
    ["pk", "sk", "gsi1pk", "gsi1sk"]
        .iter()
        .filter_map(|n| Some((n.to_string(), entry.get(*n)?.as_s().ok()?.clone())))
        .collect()
}

/// What to list of a partner's deliveries.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    pub partner_id: PartnerId,
    /// Whether `from`/`to` bound the event's own time rather than the delivery's.
    pub by_event_time: bool,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<EndpointId>,
    pub limit: usize,
    /// The `next` of the previous page.
    pub start: Option<HistoryCursor>,
}

/// A delivery's item as it now stands: no lease (writing it releases the
/// worker's claim), due time and open-work index keys derived from its state.
impl Store {
    /// A delivery as stored: keys, the history index, the open-work index,
    /// and its expiry under the retention.
    pub(super) fn delivery_item<'d>(&self, d: &'d Delivery) -> Item<&'d Delivery> {
        delivery_item(d, self.expiry(d.created_at))
    }

    /// A delivery as its event's recording creates it: a delivery about to
    /// be attempted enters the history index (its `gsi1pk`) with the write
    /// that records its first attempt, not here, so a delivery delivered at
    /// its first try writes its index entry once instead of twice. One
    /// nobody attempts in time gets its entry from the reconciler
    /// (`touch_open`); one created parked has it at once.
    ///
    /// `queued`: its message was sent before this write (the queue first,
    /// `outbox.rs`), so a pending delivery is stored without its open-work
    /// (GSI2) entry: the message, which SQS keeps until a worker
    /// acknowledges it, is what nobody may lose.
    pub(super) fn new_delivery_item<'d>(
        &self,
        d: &'d Delivery,
        queued: bool,
    ) -> Item<&'d Delivery> {
        let mut item = self.delivery_item(d);
        if d.status == DeliveryStatus::Pending && !d.parked {
            item.gsi1pk = None;
            if queued {
                item.gsi2pk = None;
                item.gsi2sk = None;
            }
        }
        item
    }
}

/// The condition of a write that must not touch a delivery a worker holds:
/// still pending, and no lease running (`#status` names `status`).
const UNCLAIMED_PENDING: &str =
    "#status = :pending AND (attribute_not_exists(lease_ms) OR lease_ms < :now)";

/// The values of [`UNCLAIMED_PENDING`] at `now`.
fn unclaimed_values(now: DateTime<Utc>) -> Attrs {
    HashMap::from([
        (
            ":pending".to_string(),
            AttributeValue::S(DeliveryStatus::Pending.as_str().into()),
        ),
        (
            ":now".to_string(),
            AttributeValue::N(now.timestamp_millis().to_string()),
        ),
    ])
}

fn delivery_item(d: &Delivery, ttl: Option<i64>) -> Item<&Delivery> {
    let (pk, sk) = keys::delivery(&d.id);
    let (gpk, gsk) = keys::delivery_gsi1(&d.partner_id, &d.created_at, &d.id);
    let mut item = Item::new(pk, sk, d);
    item.ttl = ttl;
    item.gsi1pk = Some(gpk);
    item.gsi1sk = Some(gsk);
    // The event's time beside its copy: the history index projects it.
    item.event_at = Some(
        d.event
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    );
    if d.status == DeliveryStatus::Pending {
        item.due_ms = Some(d.next_attempt_at.map(|t| t.timestamp_millis()).unwrap_or(0));
    }
    if let Some((pk2, sk2)) = gsi2_of(d, None) {
        item.gsi2pk = Some(pk2);
        item.gsi2sk = Some(sk2);
    }
    item
}
/// A delivery's status and parking, read without its event.
#[derive(serde::Deserialize)]
struct StatusOnly {
    status: DeliveryStatus,
    #[serde(default)]
    parked: bool,
}

/// An event as the attribute a delivery's item held before deliveries
/// stopped storing it.
fn event_value(event: &Event) -> Result<AttributeValue> {
    serde_dynamo::to_attribute_value(event)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("an event as an attribute")))
}

/// Where a transaction's earlier change to an endpoint stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Earlier {
    Pending(Box<Delivery>),
    /// Delivered, failed or cancelled (or its event expired).
    Ended,
    /// Not stored: owed by its event and not claimed yet, or expired.
    NotStored,
}

/// What a worker's claim on a delivery found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The worker now holds the delivery until its lease ends.
    Claimed(Box<Delivery>),
    /// Pending, but its next attempt is due later (a duplicate or early message).
    NotDue(DateTime<Utc>),
    /// Another worker holds it until this time.
    Leased(DateTime<Utc>),
    /// Delivered, failed or cancelled: nothing to send.
    Finished(DeliveryStatus),
    /// Held while its endpoint is paused; re-activation queues it again.
    Parked,
    /// No such delivery.
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_only_continue_their_own_partners_history() {
        let key: HashMap<String, String> = [
            ("pk", "DELIVERY#d"),
            ("sk", "DELIVERY"),
            ("gsi1pk", "PARTNER#p1"),
            ("gsi1sk", "t#d"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = HistoryCursor(key.clone()).encode();
        assert_eq!(HistoryCursor::decode(&c, "p1"), Some(HistoryCursor(key)));
        assert!(HistoryCursor::decode(&c, "p2").is_none());
        assert!(HistoryCursor::decode("garbage!", "p1").is_none());
    }
}
