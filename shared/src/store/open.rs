//! GSI2, the sparse index of open work that the reconciler reads: pending
//! deliveries by the time to check on them, parked deliveries by endpoint,
//! and the marks of endpoints whose parked deliveries are to be released.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::{applied, key, keys, sort_key_time, Attrs, Item, Store, GSI2};
use crate::error::{unavailable, Error, Result};
use crate::ids::{DeliveryId, EndpointId, PartnerId};
use crate::lifecycle::Delivery;
use crate::lifecycle::Open;

/// Partitions of the due index. Writes spread over them so that no single
/// index partition takes every delivery; the reconciler reads them all.
/// A delivery in it writes its entry at least twice (in, then out); one
/// queued first and delivered at its first try never enters it. Should
/// every delivery enter it (a partner or SQS outage), 10,000 deliveries a
/// second are 20,000 write units, and one partition key
/// takes at most 1,000 a second, so 20 is the floor and 32 leaves room
/// (docs/capacity.md). Raising it is safe: the reconciler reads every
/// shard up to it, old entries included.
pub const DUE_SHARDS: usize = 32;
const UNPARK: &str = "UNPARK";

fn shard_of(id: &str) -> usize {
    id.bytes()
        .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b.into()))
        % DUE_SHARDS
}

/// GSI2 keys of a delivery as it now stands; `None` once it is closed.
pub(super) fn gsi2_of(
    d: &Delivery,
    lease_until: Option<DateTime<Utc>>,
) -> Option<(String, String)> {
    match d.open(lease_until) {
        Open::Closed => None,
        Open::CheckAt(at) => Some(due_keys(&d.id, at)),
        Open::Parked => Some((
            format!("PARKED#{}", d.endpoint_id),
            format!("{}#{}", sort_key_time(&d.created_at), d.id),
        )),
    }
}

pub(super) fn due_keys(id: &str, at: DateTime<Utc>) -> (String, String) {
    (
        format!("DUE#{}", shard_of(id)),
        format!("{}#{id}", sort_key_time(&at)),
    )
}

/// An open delivery as the index holds it: enough to queue its message.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRef {
    pub delivery_id: DeliveryId,
    pub partner_id: PartnerId,
    pub endpoint_id: EndpointId,
    /// Its index sort key, the condition of a later touch.
    pub check_key: String,
}

/// An endpoint whose parked deliveries are to be released (re-activated) or
/// ended (deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct UnparkMark {
    pub partner_id: PartnerId,
    pub endpoint_id: EndpointId,
    /// When the mark was left; a newer mark is not removed by an older sweep.
    pub at: String,
}

fn s(attrs: &Attrs, name: &str) -> String {
    attrs
        .get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

impl Store {
    async fn query_gsi2(&self, pk: &str, upper: Option<String>, limit: i32) -> Result<Vec<Attrs>> {
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI2)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
            .limit(limit);
        req = match upper {
            Some(u) => req
                .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :upper")
                .expression_attribute_values(":upper", AttributeValue::S(u)),
            None => req.key_condition_expression("gsi2pk = :pk"),
        };
        let out = req.send().await.map_err(unavailable("reading open work"))?;
        Ok(out.items.unwrap_or_default())
    }

    /// Pending deliveries of one shard whose check time is at or before `now`, oldest first.
    pub async fn overdue(
        &self,
        shard: usize,
        now: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<OpenRef>> {
        let items = self
            .query_gsi2(
                &format!("DUE#{shard}"),
                Some(format!("{}~", sort_key_time(&now))),
                limit,
            )
            .await?;
        Ok(items.iter().filter_map(open_ref).collect())
    }

    /// Parked deliveries of an endpoint, oldest first.
    pub async fn parked(&self, endpoint_id: &EndpointId, limit: i32) -> Result<Vec<OpenRef>> {
        let items = self
            .query_gsi2(&format!("PARKED#{endpoint_id}"), None, limit)
            .await?;
        Ok(items.iter().filter_map(open_ref).collect())
    }

    /// Moves the index entry of an open delivery to `check_at`, unless it moved
    /// meanwhile (a worker claimed or recorded it): false then. A delivery
    /// nobody has attempted yet enters its partner's history here (its
    /// recording left it out until its first attempt).
    pub async fn touch_open(&self, open: &OpenRef, check_at: DateTime<Utc>) -> Result<bool> {
        let (pk, sk) = keys::delivery(&open.delivery_id);
        let (_, new_sk) = due_keys(&open.delivery_id, check_at);
        let history = keys::delivery_history(&open.partner_id, &open.delivery_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET gsi2sk = :new, gsi1pk = if_not_exists(gsi1pk, :history)")
            .condition_expression("gsi2sk = :old")
            .expression_attribute_values(":new", AttributeValue::S(new_sk))
            .expression_attribute_values(":history", AttributeValue::S(history))
            .expression_attribute_values(":old", AttributeValue::S(open.check_key.clone()))
            .send()
            .await;
        applied(result, "touching an open delivery")
    }

    /// Releases a parked delivery into the due index, checked at `check_at`;
    /// false if it is no longer parked on `endpoint_id`.
    pub async fn unpark(&self, open: &OpenRef, check_at: DateTime<Utc>) -> Result<bool> {
        let (pk, sk) = keys::delivery(&open.delivery_id);
        let (due_pk, due_sk) = due_keys(&open.delivery_id, check_at);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression("SET gsi2pk = :pk, gsi2sk = :sk, parked = :no REMOVE reason")
            .condition_expression("gsi2pk = :parked")
            .expression_attribute_values(":pk", AttributeValue::S(due_pk))
            .expression_attribute_values(":sk", AttributeValue::S(due_sk))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(
                ":parked",
                AttributeValue::S(format!("PARKED#{}", open.endpoint_id)),
            )
            .send()
            .await;
        applied(result, "releasing a parked delivery")
    }

    /// Endpoints whose parked deliveries wait to be released.
    pub async fn unpark_marks(&self, limit: i32) -> Result<Vec<UnparkMark>> {
        let items = self.query_gsi2(UNPARK, None, limit).await?;
        Ok(items
            .iter()
            .filter_map(|a| {
                Some(UnparkMark {
                    partner_id: typed(a, "partner_id")?,
                    endpoint_id: typed(a, "endpoint_id")?,
                    at: s(a, "gsi2sk"),
                })
            })
            .collect())
    }

    /// Removes a mark once its endpoint has nothing parked, unless a newer one replaced it.
    pub async fn remove_unpark_mark(&self, mark: &UnparkMark) -> Result<()> {
        let (pk, sk) = keys::unpark_mark(&mark.partner_id, &mark.endpoint_id);
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression("gsi2sk = :at")
            .expression_attribute_values(":at", AttributeValue::S(mark.at.clone()))
            .send()
            .await;
        applied(result, "removing an unpark mark").map(drop)
    }

    /// The write that leaves an unpark mark, for a transaction with the endpoint's own write.
    pub(super) fn unpark_mark_put(
        &self,
        partner_id: &PartnerId,
        endpoint_id: &EndpointId,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem> {
        #[derive(serde::Serialize)]
        struct Mark<'a> {
            partner_id: &'a str,
            endpoint_id: &'a str,
        }
        let (pk, sk) = keys::unpark_mark(partner_id, endpoint_id);
        let mut item = Item::new(
            pk,
            &sk,
            Mark {
                partner_id,
                endpoint_id,
            },
        );
        item.gsi2pk = Some(UNPARK.into());
        item.gsi2sk = Some(format!(
            "{}#{}",
            sort_key_time(&now),
            crate::ids::base32(&crate::ids::random_bytes(5))
        ));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&item)?))
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A conditional delete for a transaction.
    pub(super) fn transact_delete(
        &self,
        pk: String,
        sk: String,
        condition: &str,
    ) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression(condition)
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

/// An index entry's id attribute, typed; an entry that does not hold one is
/// skipped (and logged) rather than stopping the sweep over the others.
fn typed<T: std::str::FromStr<Err = Error>>(a: &Attrs, name: &str) -> Option<T> {
    let raw = s(a, name);
    raw.parse()
        .inspect_err(|e| tracing::warn!(attribute = name, value = %raw, error = %e, "skipping an index entry"))
        .ok()
}

fn open_ref(a: &Attrs) -> Option<OpenRef> {
    let pk = s(a, "pk");
    let id = pk.strip_prefix("DELIVERY#").unwrap_or(&pk);
    Some(OpenRef {
        delivery_id: id
            .parse()
            .inspect_err(|e| tracing::warn!(pk = %pk, error = %e, "skipping an index entry"))
            .ok()?,
        partner_id: typed(a, "partner_id")?,
        endpoint_id: typed(a, "endpoint_id")?,
        check_key: s(a, "gsi2sk"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_spread_over_every_due_shard() {
        let mut seen = [0usize; DUE_SHARDS];
        for i in 0..(100 * DUE_SHARDS) {
            seen[shard_of(&format!("dlv_{i}"))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
