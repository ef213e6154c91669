//! Operator lists (admin), newest first and paged: `GET /offers`,
//! `GET /partners`, and `GET /offers/{id}/postbacks`, every postback that
//! fires for an offer across its affiliates (the affiliate platform's
//! per-offer Postbacks tab).

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::domain::{Endpoint, Offer, Partner};
use shared::ids::OfferId;
use shared::store::Listing;
use shared::{App, Error};

use crate::auth::Auth;
use crate::body::query_pairs;
use crate::error::ApiResult;
use crate::path::Param;

/// Rows per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

fn paging(query: Option<&str>) -> Result<(usize, Option<String>), Error> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (k, v) in query_pairs(query)? {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        Error::invalid("limit", format!("`limit` must be 1 to {MAX_LIMIT}"))
                    })?
            }
            "cursor" => cursor = Some(v),
            other => {
                return Err(Error::invalid(
                    other,
                    format!("`{other}` is not a parameter of this list"),
                ))
            }
        }
    }
    Ok((limit, cursor))
}

/// `GET /offers?limit=&cursor=`.
pub async fn offers(
    State(app): State<Arc<App>>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let (limit, cursor) = paging(query.as_deref())?;
    let page = app
        .store
        .list::<Offer>(Listing::Offers, limit, cursor.as_deref(), None)
        .await?;
    let items: Vec<Value> = page.items.iter().map(super::offers::view).collect();
    Ok(Json(json!({"items": items, "next_cursor": page.next})))
}

/// `GET /partners?limit=&cursor=` (never their keys).
pub async fn partners(
    State(app): State<Arc<App>>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let (limit, cursor) = paging(query.as_deref())?;
    let page = app
        .store
        .list::<Partner>(Listing::Partners, limit, cursor.as_deref(), None)
        .await?;
    let items: Vec<Value> = page.items.iter().map(super::partners::view).collect();
    Ok(Json(json!({"items": items, "next_cursor": page.next})))
}

/// `GET /offers/{id}/postbacks?limit=&cursor=`: ID, affiliate, goal,
/// conversion status, URL, HTTP type, created, updated, for every endpoint
/// that fires for the offer (those naming it, and those for every offer).
pub async fn offer_postbacks(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<OfferId>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    if app.offer(&id).await?.is_none() {
        return Err(Error::not_found("offer", &id).into());
    }
    let (limit, cursor) = paging(query.as_deref())?;
    let page = app
        .store
        .list::<Endpoint>(Listing::Endpoints, limit, cursor.as_deref(), Some(&id))
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "affiliate": e.partner_id, "name": e.name, "goals": e.goals,
                "statuses": e.statuses, "url": e.url, "method": e.method, "active": e.active,
                "created_at": e.created_at, "updated_at": e.updated_at,
            })
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": page.next})))
}
