//! Clicks: `GET /click` (public, 302 to the landing page) and `POST /clicks` (admin).

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use shared::domain::{Click, Offer};
use shared::fields::json_attributes;
use shared::ids::{ClickId, OfferId, PartnerId};
use shared::tracking::landing_url;
use shared::{App, Error};

use crate::auth::Auth;
use crate::body::{query_pairs, RawBody};
use crate::error::ApiResult;

/// Stores a new click for an existing offer and partner.
async fn mint(
    app: &App,
    offer_id: &OfferId,
    partner_id: &PartnerId,
    attributes: BTreeMap<String, Value>,
) -> ApiResult<(Click, Offer)> {
    let offer = app.offer(offer_id).await?;
    let offer = offer
        .as_ref()
        .clone()
        .ok_or_else(|| Error::not_found("offer", offer_id))?;
    if app.partner(partner_id).await?.is_none() {
        return Err(Error::not_found("partner", partner_id).into());
    }
    let now = Utc::now();
    let click = Click {
        click_id: ClickId::random(),
        offer_id: offer.id.clone(),
        partner_id: partner_id.clone(),
        attributes: json_attributes("attributes", attributes)?,
        created_at: now,
        expires_at: now + Duration::days(i64::from(offer.attribution_window_days)),
    };
    app.store.put_click(&click).await?;
    Ok((click, offer))
}

/// `GET /click?offer_id=&partner_id=&sub1=..`: every other parameter becomes an attribute.
pub async fn redirect(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let mut offer_id = None;
    let mut partner_id = None;
    let mut attributes = BTreeMap::new();
    for (k, v) in query_pairs(query.as_deref())? {
        match k.as_str() {
            "offer_id" => offer_id = offer_id.or(Some(v)),
            "partner_id" => partner_id = partner_id.or(Some(v)),
            _ => {
                attributes.entry(k).or_insert(Value::String(v));
            }
        }
    }
    let offer_id = OfferId::parse(&offer_id.ok_or_else(|| Error::missing("offer_id"))?)?;
    let partner_id = PartnerId::parse(&partner_id.ok_or_else(|| Error::missing("partner_id"))?)?;
    let (click, offer) = mint(&app, &offer_id, &partner_id, attributes).await?;
    let location = landing_url(&offer.landing_url, &click);
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response())
}

/// `POST /clicks` `{"offer_id","partner_id","attributes":{..}}` → 201 `{"click_id",..}`.
pub async fn create(
    State(app): State<Arc<App>>,
    auth: Auth,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.admin_only()?;
    let f = body.object()?;
    f.only(&["offer_id", "partner_id", "attributes"])?;
    let offer_id = f.id::<OfferId>("offer_id")?;
    let partner_id = f.id::<PartnerId>("partner_id")?;
    // Click values may be any JSON (MomentScience's `payload` of the offer's serving).
    let attributes: BTreeMap<String, Value> = match f.0.get("attributes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => {
            return Err(Error::invalid("attributes", "`attributes` must be an object").into())
        }
    };
    let (click, offer) = mint(&app, &offer_id, &partner_id, attributes).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "click_id": click.click_id,
            "offer_id": click.offer_id,
            "partner_id": click.partner_id,
            "expires_at": click.expires_at,
            "landing_url": landing_url(&offer.landing_url, &click),
        })),
    ))
}
