//! Recoveries: the item that follows one recovery of an endpoint's missed
//! deliveries, the lock that lets one run per endpoint, the read of the
//! partner's history (GSI1, oldest first) that finds what to resend, and
//! the conditional write that starts a delivery's new round.

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, Select, TransactWriteItem};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use super::{
    applied, cancelled_by_condition, from_attrs, is_condition_failure, key, keys, sort_key_time,
    Attrs, Item, Store, GSI1, GSI2,
};
use crate::error::{unavailable, Error, Result};
use crate::ids::{EndpointId, PartnerId, RecoveryId};
use crate::lifecycle::{Delivery, DeliveryStatus};
use crate::recovery::Recovery;

/// The GSI2 partition of recoveries still queuing, by the time to look at
/// them again (the reconciler resumes one whose step never came).
const RECOVERING: &str = "RECOVERING";

/// The lock item: which recovery runs for an endpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct Lock {
    recovery_id: RecoveryId,
}

/// What to read of a partner's history for a recovery.
#[derive(Debug, Clone)]
pub struct RecoveryRead<'a> {
    pub partner_id: &'a PartnerId,
    pub endpoint_id: &'a EndpointId,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub statuses: &'a [DeliveryStatus],
    /// Also match the deliveries this recovery already restarted (a step
    /// interrupted after its writes, before its progress was saved).
    pub recovery_id: Option<&'a RecoveryId>,
}

impl RecoveryRead<'_> {
    /// The query of one shard of the partner's history (`gsi1pk`), from
    /// `lower` (a sort key: `since`, or a step's cursor) on.
    fn query(
        &self,
        store: &Store,
        gsi1pk: &str,
        lower: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut filter = String::from("endpoint_id = :endpoint AND (");
        let mut req = store
            .client
            .query()
            .table_name(&store.table)
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :pk AND gsi1sk BETWEEN :lower AND :upper")
            .expression_attribute_values(":pk", AttributeValue::S(gsi1pk.to_string()))
            .expression_attribute_values(":lower", AttributeValue::S(lower.to_string()))
            .expression_attribute_values(
                ":upper",
                AttributeValue::S(format!("{}~", sort_key_time(&self.until))),
            )
            .expression_attribute_values(
                ":endpoint",
                AttributeValue::S(self.endpoint_id.to_string()),
            )
            .expression_attribute_names("#status", "status")
            .scan_index_forward(true);
        let statuses: Vec<String> = (0..self.statuses.len()).map(|i| format!(":s{i}")).collect();
        filter.push_str(&format!("#status IN ({})", statuses.join(", ")));
        for (name, status) in statuses.iter().zip(self.statuses) {
            req = req.expression_attribute_values(name, AttributeValue::S(status.as_str().into()));
        }
        if let Some(rid) = self.recovery_id {
            filter.push_str(" OR recovery_id = :rid");
            req = req.expression_attribute_values(":rid", AttributeValue::S(rid.to_string()));
        }
        filter.push(')');
        req.filter_expression(filter)
    }
}

/// A page of what a recovery step found.
pub struct RecoveryPage {
    pub items: Vec<Delivery>,
    /// Where the next step reads on; `None`: the range is read to its end.
    pub next: Option<String>,
}

impl Store {
    /// A recovery as stored (consistent read).
    pub async fn get_recovery(
        &self,
        partner_id: &PartnerId,
        id: &RecoveryId,
    ) -> Result<Option<Recovery>> {
        let (pk, sk) = keys::recovery(partner_id, id);
        self.get(pk, sk, true).await
    }

    /// The recovery that holds the endpoint's lock, if any.
    pub async fn recovery_lock(
        &self,
        partner_id: &PartnerId,
        endpoint_id: &EndpointId,
    ) -> Result<Option<RecoveryId>> {
        let (pk, sk) = keys::recovery_lock(partner_id, endpoint_id);
        Ok(self.get::<Lock>(pk, sk, true).await?.map(|l| l.recovery_id))
    }

    /// Stores a new recovery and takes the endpoint's lock in one
    /// transaction. `replacing`: the finished recovery whose lock was left
    /// behind. False when another recovery holds the lock.
    pub async fn create_recovery(
        &self,
        r: &Recovery,
        replacing: Option<&RecoveryId>,
        check_at: DateTime<Utc>,
    ) -> Result<bool> {
        let (lpk, lsk) = keys::recovery_lock(&r.partner_id, &r.endpoint_id);
        let lock = Item::new(
            lpk,
            &lsk,
            Lock {
                recovery_id: r.id.clone(),
            },
        );
        let mut lock_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&lock)?));
        lock_put = match replacing {
            None => lock_put.condition_expression("attribute_not_exists(pk)"),
            Some(old) => lock_put
                .condition_expression("recovery_id = :old")
                .expression_attribute_values(":old", AttributeValue::S(old.to_string())),
        };
        let (pk, sk) = keys::recovery(&r.partner_id, &r.id);
        let mut item = Item::new(pk, &sk, r);
        item.gsi2pk = Some(RECOVERING.into());
        item.gsi2sk = Some(check_key(&check_at, &r.id));
        item.ttl = self.expiry(r.created_at);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&item)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(lock_put.build().map_err(|e| Error::Internal(e.into()))?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if cancelled_by_condition(&e) => Ok(false),
            Err(e) => Err(unavailable("starting a recovery")(e)),
        }
    }

    /// Removes the endpoint's lock if `id` still holds it.
    pub async fn release_recovery_lock(
        &self,
        partner_id: &PartnerId,
        endpoint_id: &EndpointId,
        id: &RecoveryId,
    ) -> Result<()> {
        let (pk, sk) = keys::recovery_lock(partner_id, endpoint_id);
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression("recovery_id = :id")
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .send()
            .await;
        applied(result, "releasing a recovery's lock").map(drop)
    }

    /// Claims step `step` of a recovery still queuing, for `lease`: one
    /// worker runs a step at a time. `None` when the step is not the
    /// current one, another worker holds it, or the recovery is done.
    pub async fn claim_recovery_step(
        &self,
        partner_id: &PartnerId,
        id: &RecoveryId,
        step: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<Recovery>> {
        let (pk, sk) = keys::recovery(partner_id, id);
        let now_ms = now.timestamp_millis();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET lease_ms = :lease")
            .condition_expression(
                "attribute_exists(pk) AND step = :step AND #state = :queuing \
                 AND (attribute_not_exists(lease_ms) OR lease_ms < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":step", AttributeValue::N(step.to_string()))
            .expression_attribute_values(":queuing", AttributeValue::S("queuing".into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(
                ":lease",
                AttributeValue::N((now_ms + lease.num_milliseconds()).to_string()),
            )
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(from_attrs).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(unavailable("claiming a recovery step")(e)),
        }
    }

    /// Gives up a step's lease (the step failed), so that its message,
    /// when it comes back, runs it again at once.
    pub async fn release_recovery_step(
        &self,
        partner_id: &PartnerId,
        id: &RecoveryId,
        step: u32,
    ) -> Result<()> {
        let (pk, sk) = keys::recovery(partner_id, id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("REMOVE lease_ms")
            .condition_expression("step = :step")
            .expression_attribute_values(":step", AttributeValue::N(step.to_string()))
            .send()
            .await;
        applied(result, "releasing a recovery step").map(drop)
    }

    /// Saves what step `r.step - 1` did (cursor, counts, next send slot,
    /// state) and releases its lease, unless the step moved meanwhile. Only
    /// the step's own fields are set: the workers' counters (`sent`,
    /// `delivered`, `failed`) are added beside them. `check_at`: when the
    /// reconciler should look again if the next step never comes (`None`:
    /// queuing is over, the recovery leaves the index).
    pub async fn save_recovery_step(
        &self,
        r: &Recovery,
        check_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let (pk, sk) = keys::recovery(&r.partner_id, &r.id);
        // Every attribute by a name placeholder: `cursor`, `state` and
        // others are DynamoDB reserved words.
        let mut set = vec![
            "#step = :step",
            "#state = :state",
            "#next_slot_ms = :slot",
            "#queued = :queued",
            "#skipped_later_change = :later",
            "#skipped_changed = :changed",
            "#updated_at = :now",
        ];
        let mut remove = vec!["#lease_ms"];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression("#step = :previous")
            .expression_attribute_values(":previous", AttributeValue::N((r.step - 1).to_string()))
            .expression_attribute_values(":step", AttributeValue::N(r.step.to_string()))
            .expression_attribute_values(":state", AttributeValue::S(r.state.as_str().into()))
            .expression_attribute_values(":slot", AttributeValue::N(r.next_slot_ms.to_string()))
            .expression_attribute_values(":queued", AttributeValue::N(r.queued.to_string()))
            .expression_attribute_values(
                ":later",
                AttributeValue::N(r.skipped_later_change.to_string()),
            )
            .expression_attribute_values(
                ":changed",
                AttributeValue::N(r.skipped_changed.to_string()),
            )
            .expression_attribute_values(
                ":now",
                AttributeValue::S(
                    r.updated_at
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ),
            );
        match &r.cursor {
            Some(c) => {
                set.push("#cursor = :cursor");
                req = req.expression_attribute_values(":cursor", AttributeValue::S(c.clone()));
            }
            None => remove.push("#cursor"),
        }
        if let Some(at) = r.queued_at {
            set.push("#queued_at = :queued_at");
            req = req.expression_attribute_values(
                ":queued_at",
                AttributeValue::S(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            );
        }
        match check_at {
            Some(at) => {
                set.push("#gsi2sk = :check");
                req = req.expression_attribute_values(
                    ":check",
                    AttributeValue::S(check_key(&at, &r.id)),
                );
            }
            None => {
                remove.push("#gsi2pk");
                remove.push("#gsi2sk");
            }
        }
        let names: Vec<&str> = set
            .iter()
            .map(|a| a.split(' ').next().unwrap_or_default())
            .chain(remove.iter().copied())
            .collect();
        for name in names {
            req = req.expression_attribute_names(name, &name[1..]);
        }
        let result = req
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .send()
            .await;
        applied(result, "saving a recovery step")
    }

    /// Adds one to a recovery's counter (`sent`, `delivered`, `failed`).
    pub async fn count_recovered(
        &self,
        partner_id: &PartnerId,
        id: &RecoveryId,
        counters: &[&str],
    ) -> Result<()> {
        if counters.is_empty() {
            return Ok(());
        }
        let (pk, sk) = keys::recovery(partner_id, id);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        let mut adds = Vec::new();
        for (i, c) in counters.iter().enumerate() {
            adds.push(format!("#c{i} :one"));
            req = req.expression_attribute_names(format!("#c{i}"), *c);
        }
        let result = req
            .update_expression(format!("ADD {}", adds.join(", ")))
            .send()
            .await;
        // Not applied: the recovery expired (retention), nothing to count on.
        applied(result, "counting a recovered delivery").map(drop)
    }

    /// Recoveries still queuing whose check time is at or before `now`:
    /// (partner, recovery, check key).
    pub async fn overdue_recoveries(
        &self,
        now: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<(PartnerId, RecoveryId, String)>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI2)
            .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :upper")
            .expression_attribute_values(":pk", AttributeValue::S(RECOVERING.into()))
            .expression_attribute_values(
                ":upper",
                AttributeValue::S(format!("{}~", sort_key_time(&now))),
            )
            .limit(limit)
            .send()
            .await
            .map_err(unavailable("reading recoveries to resume"))?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                let s = |n: &str| item.get(n).and_then(|v| v.as_s().ok()).cloned();
                let partner = s("pk")?.strip_prefix("PARTNER#")?.parse().ok()?;
                let id = s("sk")?.strip_prefix("RECOVERY#")?.parse().ok()?;
                Some((partner, id, s("gsi2sk")?))
            })
            .collect())
    }

    /// Moves a recovery's check time, unless it moved meanwhile.
    pub async fn touch_recovery(
        &self,
        partner_id: &PartnerId,
        id: &RecoveryId,
        old_check: &str,
        check_at: DateTime<Utc>,
    ) -> Result<bool> {
        let (pk, sk) = keys::recovery(partner_id, id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET gsi2sk = :new")
            .condition_expression("gsi2sk = :old")
            .expression_attribute_values(":new", AttributeValue::S(check_key(&check_at, id)))
            .expression_attribute_values(":old", AttributeValue::S(old_check.to_string()))
            .send()
            .await;
        applied(result, "touching a recovery")
    }

    /// How many deliveries match `read`, counting for at most `pages` index
    /// pages of each history shard; `(count, whether the whole range was counted)`.
    pub async fn count_recoverable(
        &self,
        read: &RecoveryRead<'_>,
        pages: usize,
    ) -> Result<(u64, bool)> {
        let lower = sort_key_time(&read.since);
        let counts = futures::future::join_all(
            keys::partner_history(read.partner_id)
                .into_iter()
                .map(|shard| self.count_shard(read, shard, &lower, pages)),
        )
        .await;
        let mut total = (0u64, true);
        for c in counts {
            let (n, whole) = c?;
            total = (total.0 + n, total.1 && whole);
        }
        Ok(total)
    }

    async fn count_shard(
        &self,
        read: &RecoveryRead<'_>,
        shard: String,
        lower: &str,
        pages: usize,
    ) -> Result<(u64, bool)> {
        let mut count = 0u64;
        let mut start: Option<Attrs> = None;
        for _ in 0..pages {
            let out = read
                .query(self, &shard, lower)
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable("counting deliveries to recover"))?;
            count += out.count.max(0) as u64;
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok((count, true)),
            }
        }
        Ok((count, false))
    }

    /// Up to `limit` deliveries matching `read`, oldest first over every
    /// shard of the history, from `cursor` (the last entry a step took),
    /// reading at most `pages` index pages a shard.
    pub async fn recoverable(
        &self,
        read: &RecoveryRead<'_>,
        cursor: Option<&str>,
        limit: usize,
        pages: usize,
    ) -> Result<RecoveryPage> {
        // A cursor is the key of the last entry taken; one saved before the
        // history was sharded is DynamoDB's own last key of one query, the
        // same thing. Its sort key is where the next step goes on.
        let after: Option<String> = match cursor {
            None => None,
            Some(raw) => {
                let key: HashMap<String, String> = serde_json::from_str(raw).map_err(|e| {
                    Error::Internal(anyhow::Error::new(e).context("a recovery's cursor"))
                })?;
                key.get("gsi1sk").cloned()
            }
        };
        let lower = after.clone().unwrap_or_else(|| sort_key_time(&read.since));
        let shards = keys::partner_history(read.partner_id).len();
        let found = self
            .history_entries(
                read.partner_id,
                false,
                after.as_deref(),
                limit,
                Some(pages.max(1) * shards),
                |gsi1pk| read.query(self, gsi1pk, &lower),
            )
            .await?;
        let items = self.deliveries_of(&found.entries, true).await?;
        if !found.more {
            return Ok(RecoveryPage { items, next: None });
        }
        let next = match found.entries.last() {
            Some(e) => serde_json::to_string(&super::deliveries::entry_key(e))
                .map_err(|e| Error::Internal(e.into()))?,
            // Nothing taken within the step's reads: the same place again.
            None => cursor.map(str::to_string).unwrap_or_else(|| "{}".into()),
        };
        Ok(RecoveryPage {
            items,
            next: Some(next),
        })
    }

    /// Writes a delivery's new round (see `Delivery::recover`) if it still
    /// stands as it was read (`status` and `updated_at`): a delivery sent,
    /// retried or recovered meanwhile is left alone. False then.
    pub async fn recover_delivery(
        &self,
        d: &Delivery,
        read_status: DeliveryStatus,
        read_updated_at: &DateTime<Utc>,
    ) -> Result<bool> {
        let item = self.delivery_item(d);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&item)?))
            .condition_expression(
                "attribute_exists(pk) AND #status = :read AND updated_at IN (:at, :atn)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":read", AttributeValue::S(read_status.as_str().into()))
            .expression_attribute_values(":at", updated_at_value(read_updated_at)?)
            .expression_attribute_values(":atn", updated_at_nanos(read_updated_at))
            .send()
            .await;
        applied(result, "starting a recovered delivery's round")
    }
}

/// `updated_at` exactly as a delivery's item in the long layout stores it.
fn updated_at_value(t: &DateTime<Utc>) -> Result<AttributeValue> {
    serde_dynamo::to_attribute_value(t)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("a time as stored")))
}

/// `updated_at` as the compact layout stores it (nanoseconds), or a number
/// no item holds if it has none.
fn updated_at_nanos(t: &DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(t.timestamp_nanos_opt().unwrap_or(i64::MIN).to_string())
}

fn check_key(at: &DateTime<Utc>, id: &RecoveryId) -> String {
    format!("{}#{id}", sort_key_time(at))
}
