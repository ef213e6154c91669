//! Offers, partners and their endpoints: the configuration the hot paths cache.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{from_attrs, keys, Attrs, Item, PutCondition, Store};
use crate::domain::{Endpoint, Offer, Partner};
use crate::error::{unavailable, Error, Result};
use crate::ids::{EndpointId, OfferId, PartnerId};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::cancelled_by_condition;

impl Store {
    // ---- offers

    /// Stores a new offer.
    pub(crate) async fn create_offer(&self, offer: &Offer) -> Result<()> {
        let (pk, sk) = keys::offer(&offer.id);
        let item = listed(
            Item::new(pk, sk, offer),
            Listing::Offers,
            &offer.created_at,
            &offer.id,
        );
        self.create(&item, "offer", &offer.id).await
    }

    /// Replaces an existing offer; `NotFound` if it is gone.
    pub(crate) async fn replace_offer(&self, offer: &Offer) -> Result<()> {
        let (pk, sk) = keys::offer(&offer.id);
        if self
            .put(
                &listed(
                    Item::new(pk, sk, offer),
                    Listing::Offers,
                    &offer.created_at,
                    &offer.id,
                ),
                PutCondition::Replace,
            )
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("offer", &offer.id))
        }
    }

    /// The offer, if it exists.
    pub async fn get_offer(&self, id: &OfferId) -> Result<Option<Offer>> {
        let (pk, sk) = keys::offer(id);
        self.get(pk, sk, true).await
    }

    /// Deletes an offer; false if there was none.
    pub(crate) async fn delete_offer(&self, id: &OfferId) -> Result<bool> {
        let (pk, sk) = keys::offer(id);
        self.delete(pk, sk).await
    }

    // ---- partners and endpoints

    /// Stores a new partner.
    pub(crate) async fn create_partner(&self, partner: &Partner) -> Result<()> {
        let (pk, sk) = keys::partner(&partner.id);
        let item = listed(
            Item::new(pk, sk, partner),
            Listing::Partners,
            &partner.created_at,
            &partner.id,
        );
        self.create(&item, "partner", &partner.id).await
    }

    /// Replaces a partner's key hashes if they are still `expected` (two
    /// admins adding keys at once cannot lose one): false if they changed or
    /// the partner is gone.
    pub(crate) async fn replace_partner_keys(
        &self,
        id: &PartnerId,
        expected: &[String],
        keys: &[String],
    ) -> Result<bool> {
        let (pk, sk) = keys::partner(id);
        let list = |hashes: &[String]| {
            AttributeValue::L(
                hashes
                    .iter()
                    .map(|h| AttributeValue::S(h.clone()))
                    .collect(),
            )
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.into()))
            .update_expression("SET api_key_sha256 = :keys")
            .condition_expression("attribute_exists(pk) AND api_key_sha256 = :expected")
            .expression_attribute_values(":keys", list(keys))
            .expression_attribute_values(":expected", list(expected))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("changing a partner's keys")(e)),
        }
    }

    /// The partner, if it exists.
    pub async fn get_partner(&self, id: &PartnerId) -> Result<Option<Partner>> {
        let (pk, sk) = keys::partner(id);
        self.get(pk, sk, true).await
    }

    /// Stores a new endpoint (version 1).
    pub(crate) async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let (pk, sk) = keys::endpoint(&endpoint.partner_id, &endpoint.id);
        let sealed = self.sealer.seal_endpoint(endpoint).await?;
        let item = listed(
            Item::new(pk, &sk, &sealed),
            Listing::Endpoints,
            &endpoint.created_at,
            &endpoint.id,
        );
        self.create(&item, "endpoint", &endpoint.id).await
    }

    /// Stores a new item; `Conflict` naming `what` if its id is taken.
    async fn create<T: serde::Serialize>(
        &self,
        item: &Item<T>,
        what: &str,
        id: &str,
    ) -> Result<()> {
        if self.put(item, PutCondition::Create).await? {
            Ok(())
        } else {
            Err(Error::Conflict(format!("{what} `{id}` already exists")))
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
        let condition = version_condition(read_version);
        let sealed = self.sealer.seal_endpoint(endpoint).await?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.to_attrs(&listed(
                Item::new(pk.clone(), &sk, &sealed),
                Listing::Endpoints,
                &endpoint.created_at,
                &endpoint.id,
            ))?))
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

    /// One endpoint of a partner, its secrets opened (the API's edits and
    /// test route; the worker opens only after its checks, see
    /// [`Store::get_endpoint_sealed`]).
    pub async fn get_endpoint(
        &self,
        partner_id: &PartnerId,
        id: &EndpointId,
    ) -> Result<Option<Endpoint>> {
        match self.get_endpoint_sealed(partner_id, id).await? {
            Some(e) => Ok(Some(self.sealer.open_endpoint(e).await?)),
            None => Ok(None),
        }
    }

    /// One endpoint of a partner as stored (consistent read): its secrets
    /// still sealed, so reading it never calls KMS.
    pub async fn get_endpoint_sealed(
        &self,
        partner_id: &PartnerId,
        id: &EndpointId,
    ) -> Result<Option<Endpoint>> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        self.get::<Endpoint>(pk, sk, true).await
    }

    /// Opens the secrets of an endpoint read sealed (KMS, once per data key).
    pub async fn open_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint> {
        self.sealer.open_endpoint(endpoint).await
    }

    /// Sends the endpoint's deliveries to the slow lane until `until` (every
    /// worker reads it with the endpoint). Touches neither the version nor any
    /// other field; false if the endpoint is gone.
    pub async fn mark_slow(
        &self,
        partner_id: &PartnerId,
        id: &EndpointId,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .update_expression("SET slow_until = :until")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(
                ":until",
                AttributeValue::N(until.timestamp_millis().to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("marking an endpoint slow")(e)),
        }
    }

    /// Pauses an endpoint if it still stands at `read_version`, touching
    /// only the pause fields and the version (the secrets are not re-sealed):
    /// false if it changed or is gone.
    pub(crate) async fn pause_endpoint(
        &self,
        partner_id: &PartnerId,
        id: &EndpointId,
        read_version: u64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (pk, sk) = keys::endpoint(partner_id, id);
        let at: AttributeValue = serde_dynamo::to_attribute_value(now)
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("a time")))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .update_expression(
                "SET active = :no, paused_reason = :reason, paused_at = :at, updated_at = :at, version = :next",
            )
            .condition_expression(version_condition(read_version))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":reason", AttributeValue::S(reason.to_string()))
            .expression_attribute_values(":at", at)
            .expression_attribute_values(":v", AttributeValue::N(read_version.to_string()))
            .expression_attribute_values(
                ":next",
                AttributeValue::N((read_version + 1).to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("pausing an endpoint")(e)),
        }
    }

    /// Deletes an endpoint and leaves the mark that has the reconciler end
    /// its parked deliveries (as `cancelled`); false if there was none.
    pub(crate) async fn delete_endpoint(
        &self,
        partner_id: &PartnerId,
        id: &EndpointId,
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

    /// Every endpoint of a partner (one query on the partner's partition), as
    /// stored: secrets still sealed. Fan-out needs only the filters and the
    /// API shows secrets only as set, so listing never calls KMS.
    pub async fn list_endpoints(&self, partner_id: &PartnerId) -> Result<Vec<Endpoint>> {
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

/// The condition of a write on an endpoint read at `read_version` (`:v`):
/// endpoints written before versions existed have none, and stand at 0.
fn version_condition(read_version: u64) -> &'static str {
    if read_version == 0 {
        "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :v)"
    } else {
        "attribute_exists(pk) AND version = :v"
    }
}

/// Puts an offer, partner or endpoint in its operator list (GSI1 under
/// `OFFERS`, `PARTNERS`, `ENDPOINTS`, newest first).
fn listed<T>(mut item: Item<T>, list: Listing, created_at: &DateTime<Utc>, id: &str) -> Item<T> {
    item.gsi1pk = Some(list.key().to_string());
    item.gsi1sk = Some(format!("{}#{id}", super::sort_key_time(created_at)));
    item
}

/// One of the operator lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Offers,
    Partners,
    Endpoints,
}

impl Listing {
    fn key(self) -> &'static str {
        match self {
            Listing::Offers => "OFFERS",
            Listing::Partners => "PARTNERS",
            Listing::Endpoints => "ENDPOINTS",
        }
    }
}

/// A page of an operator list, and where the next begins.
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl Store {
    /// A page of an operator list, newest first; `offer` keeps only the
    /// endpoints that fire for that offer (those naming it, or no offer).
    pub async fn list<T: serde::de::DeserializeOwned>(
        &self,
        listing: Listing,
        limit: usize,
        cursor: Option<&str>,
        offer: Option<&str>,
    ) -> Result<ListPage<T>> {
        use base64::Engine;
        let start: Option<Attrs> = match cursor {
            None => None,
            Some(raw) => {
                let bad =
                    || Error::invalid("cursor", "`cursor` is not a cursor this list returned");
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(raw.trim())
                    .map_err(|_| bad())?;
                let key: std::collections::HashMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|_| bad())?;
                if key.get("gsi1pk").map(String::as_str) != Some(listing.key()) || key.len() != 4 {
                    return Err(bad());
                }
                Some(
                    key.into_iter()
                        .map(|(k, v)| (k, AttributeValue::S(v)))
                        .collect(),
                )
            }
        };
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(super::GSI1)
            .key_condition_expression("gsi1pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(listing.key().into()))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 500) as i32)
            .set_exclusive_start_key(start);
        if let Some(o) = offer {
            req = req
                .filter_expression("size(offers) = :zero OR contains(offers, :offer)")
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":offer", AttributeValue::S(o.to_string()));
        }
        let out = req.send().await.map_err(unavailable("listing"))?;
        // The index holds keys (and `offers`, filtered on): the items are read from the table.
        let items = self
            .items_of::<T>(&out.items.unwrap_or_default(), false)
            .await?;
        let next = out.last_evaluated_key.filter(|k| !k.is_empty()).map(|k| {
            let map: std::collections::HashMap<String, String> = k
                .into_iter()
                .filter_map(|(n, v)| v.as_s().ok().map(|s| (n, s.clone())))
                .collect();
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&map).unwrap_or_default())
        });
        Ok(ListPage { items, next })
    }
}
