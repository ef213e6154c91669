//! Offers, partners and their endpoints: the configuration the hot paths cache.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{from_attrs, keys, to_attrs, Attrs, Item, PutCondition, Store};
use crate::domain::{Endpoint, Offer, Partner};
use crate::error::{unavailable, Error, Result};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::cancelled_by_condition;

impl Store {
    // ---- offers

    /// Stores a new offer.
    pub(crate) async fn create_offer(&self, offer: &Offer) -> Result<()> {
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
    pub(crate) async fn replace_offer(&self, offer: &Offer) -> Result<()> {
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
    pub(crate) async fn delete_offer(&self, id: &str) -> Result<bool> {
        let (pk, sk) = keys::offer(id);
        self.delete(pk, sk).await
    }

    // ---- partners and endpoints

    /// Stores a new partner.
    pub(crate) async fn create_partner(&self, partner: &Partner) -> Result<()> {
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

    /// Stores a new endpoint (version 1).
    pub(crate) async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let (pk, sk) = keys::endpoint(&endpoint.partner_id, &endpoint.id);
        if self
            .put(&Item::new(pk, &sk, endpoint), PutCondition::Create)
            .await?
        {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "endpoint `{}` already exists",
                endpoint.id
            )))
        }
    }

    /// Replaces an endpoint if it still stands at `read_version` (optimistic
    /// concurrency): `Conflict` if someone changed it since it was read,
    /// `NotFound` if it was deleted. With `release_parked`, leaves the mark
    /// that has the reconciler release its parked deliveries, in the same
    /// transaction. `endpoint.version` must be `read_version + 1`.
    pub(crate) async fn replace_endpoint(
        &self,
        endpoint: &Endpoint,
        read_version: u64,
        release_parked: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (pk, sk) = keys::endpoint(&endpoint.partner_id, &endpoint.id);
        // Endpoints written before versions existed have none: they stand at 0.
        let condition = if read_version == 0 {
            "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :v)"
        } else {
            "attribute_exists(pk) AND version = :v"
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&Item::new(pk.clone(), &sk, endpoint))?))
            .condition_expression(condition)
            .expression_attribute_values(":v", AttributeValue::N(read_version.to_string()))
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        if release_parked {
            items.push(self.unpark_mark_put(&endpoint.partner_id, &endpoint.id, now)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if cancelled_by_condition(&e) => {
                match self.get_endpoint(&endpoint.partner_id, &endpoint.id).await? {
                    None => Err(Error::not_found("endpoint", &endpoint.id)),
                    Some(_) => Err(Error::Conflict(format!(
                        "endpoint `{}` was changed by someone else since it was read; read it again and retry",
                        endpoint.id
                    ))),
                }
            }
            Err(e) => Err(unavailable("writing an endpoint")(e)),
        }
    }

    /// One endpoint of a partner.
    pub async fn get_endpoint(&self, partner_id: &str, id: &str) -> Result<Option<Endpoint>> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        self.get(pk, sk, true).await
    }

    /// Deletes an endpoint and leaves the mark that has the reconciler end
    /// its parked deliveries (as `cancelled`); false if there was none.
    pub(crate) async fn delete_endpoint(
        &self,
        partner_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        let items = vec![
            self.transact_delete(pk, sk, "attribute_exists(pk)")?,
            self.unpark_mark_put(partner_id, id, now)?,
        ];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if cancelled_by_condition(&e) => Ok(false),
            Err(e) => Err(unavailable("deleting an endpoint")(e)),
        }
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
}
