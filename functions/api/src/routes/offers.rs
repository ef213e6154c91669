//! Offers (admin): `POST /offers`, `GET|PUT|DELETE /offers/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::domain::{Offer, RepeatPolicy, DEFAULT_RETRY_WINDOW_SECONDS};
use shared::ids::OfferId;
use shared::inbound::DEFAULT_CURRENCY;
use shared::money::{parse_currency, parse_payout};
use shared::{ids, App, Error};

use crate::auth::Auth;
use crate::body::{http_url, Fields, RawBody};
use crate::error::ApiResult;
use crate::path::Param;

const FIELDS: [&str; 13] = [
    "goals_enabled",
    "attributes",
    "repeat_conversions",
    "retry_window_seconds",
    "id",
    "name",
    "advertiser",
    "landing_url",
    "default_payout",
    "max_payout",
    "currency",
    "security_token",
    "attribution_window_days",
];
/// Default attribution window when an offer names none.
pub const DEFAULT_WINDOW_DAYS: u32 = 30;

/// The offer as the API shows it: the security token is write-only.
pub fn view(o: &Offer) -> Value {
    json!({
        "id": o.id, "name": o.name, "advertiser": o.advertiser, "landing_url": o.landing_url,
        "default_payout": o.default_payout.map(|d| d.to_string()), "currency": o.currency,
        "max_payout": o.max_payout.unwrap_or_else(|| rust_decimal::Decimal::from(shared::money::DEFAULT_MAX_PAYOUT)).to_string(),
        "has_security_token": o.security_token_sha256.is_some(),
        "attribution_window_days": o.attribution_window_days,
        "repeat_conversions": o.repeat_conversions.as_str(), "retry_window_seconds": o.retry_window_seconds,
        "goals_enabled": o.goals_enabled, "attributes": o.attributes,
        "created_at": o.created_at, "updated_at": o.updated_at,
    })
}

/// Builds an offer from a request body; `previous` keeps the token when a PUT omits it.
fn from_body(f: &Fields, id: OfferId, previous: Option<&Offer>) -> ApiResult<Offer> {
    f.only(&FIELDS)?;
    let landing_url = f.str("landing_url", 2048)?;
    shared::tracking::check_landing(&landing_url)
        .map_err(|m| Error::invalid("landing_url", format!("`landing_url` {m}")))?;
    http_url("landing_url", &landing_url.replace(['{', '}'], ""))?;
    let now = Utc::now();
    let security_token_sha256 = match f.opt_str("security_token")? {
        Some(t) if !(8..=256).contains(&t.chars().count()) => {
            return Err(Error::invalid(
                "security_token",
                "`security_token` must be 8 to 256 characters",
            )
            .into())
        }
        Some(t) => Some(ids::sha256_hex(&t)),
        // Write-only: absent keeps the current token, an explicit null removes it.
        None if f.has("security_token") => None,
        None => previous.and_then(|p| p.security_token_sha256.clone()),
    };
    let max_payout = match f.opt_decimal_text("max_payout")? {
        Some(p) => {
            let max = parse_payout("max_payout", &p, false)?;
            if max.is_zero() {
                return Err(Error::invalid("max_payout", "`max_payout` must be above 0").into());
            }
            Some(max)
        }
        None if f.has("max_payout") => None,
        None => previous.and_then(|p| p.max_payout),
    };
    let default_payout = f
        .opt_decimal_text("default_payout")?
        .map(|p| parse_payout("default_payout", &p, false))
        .transpose()?;
    if let Some(d) = default_payout {
        shared::money::within_max("default_payout", d, max_payout)?;
    }
    Ok(Offer {
        id,
        name: f.str("name", 200)?,
        advertiser: f.str("advertiser", 200)?,
        landing_url,
        default_payout,
        max_payout,
        currency: f
            .opt_str("currency")?
            .map(|c| parse_currency("currency", &c))
            .transpose()?
            .unwrap_or_else(|| DEFAULT_CURRENCY.into()),
        security_token_sha256,
        attribution_window_days: f
            .opt_u32("attribution_window_days", 1, 365)?
            .unwrap_or(DEFAULT_WINDOW_DAYS),
        goals_enabled: f
            .opt_bool("goals_enabled")?
            .or(previous.map(|p| p.goals_enabled))
            .unwrap_or(true),
        attributes: match f.0.get("attributes") {
            None => previous.map(|p| p.attributes.clone()).unwrap_or_default(),
            Some(Value::Null) => Default::default(),
            Some(Value::Object(m)) => {
                let map: std::collections::BTreeMap<String, Value> =
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for k in map.keys() {
                    shared::fields::name_field("attributes", k)?;
                }
                shared::fields::json_attributes("attributes", map)?
            }
            Some(_) => {
                return Err(Error::invalid("attributes", "`attributes` must be an object").into())
            }
        },
        repeat_conversions: match f.opt_str("repeat_conversions")? {
            None => previous.map(|p| p.repeat_conversions).unwrap_or_default(),
            Some(raw) => RepeatPolicy::parse(&raw).ok_or_else(|| {
                Error::invalid(
                    "repeat_conversions",
                    "`repeat_conversions` must be every_postback, per_event or per_click",
                )
            })?,
        },
        // Up to a week (under a minute rarely covers an advertiser's retries;
        // longer merges genuine repeat purchases).
        retry_window_seconds: f
            .opt_u32("retry_window_seconds", 1, 7 * 86_400)?
            .or(previous.map(|p| p.retry_window_seconds))
            .unwrap_or(DEFAULT_RETRY_WINDOW_SECONDS),
        created_at: previous.map(|p| p.created_at).unwrap_or(now),
        updated_at: now,
    })
}

/// `POST /offers` → 201 with the offer.
pub async fn create(
    State(app): State<Arc<App>>,
    auth: Auth,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.admin_only()?;
    let f = body.object()?;
    let id = f.id_or_new(OfferId::random)?;
    let offer = from_body(&f, id, None)?;
    app.create_offer(&offer).await?;
    Ok((StatusCode::CREATED, Json(view(&offer))))
}

/// `GET /offers/{id}`.
pub async fn read(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<OfferId>,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let offer = app
        .store
        .get_offer(&id)
        .await?
        .ok_or_else(|| Error::not_found("offer", &id))?;
    Ok(Json(view(&offer)))
}

/// `PUT /offers/{id}`: replaces the offer; an omitted `security_token` is kept.
pub async fn update(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<OfferId>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let f = body.object()?;
    if f.opt_str("id")?.is_some_and(|given| id != given.as_str()) {
        return Err(Error::rule("id", "`id` cannot be changed: it is the one in the path").into());
    }
    let previous = app
        .store
        .get_offer(&id)
        .await?
        .ok_or_else(|| Error::not_found("offer", &id))?;
    let offer = from_body(&f, id, Some(&previous))?;
    app.replace_offer(&offer).await?;
    Ok(Json(view(&offer)))
}

/// `DELETE /offers/{id}` → 204. Its clicks then answer 404 at postback time.
pub async fn delete(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<OfferId>,
) -> ApiResult<StatusCode> {
    auth.admin_only()?;
    if !app.delete_offer(&id).await? {
        return Err(Error::not_found("offer", &id).into());
    }
    Ok(StatusCode::NO_CONTENT)
}
