//! Partners: `POST /partners` (admin) → the API key, shown once;
//! `GET /partners/{id}`; and their keys: list, add (shown once), revoke.
//! Every key change is an audit line (`audit` field) naming who did it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::auth::{key_id, new_partner_key, Caller, MAX_PARTNER_KEYS};
use shared::domain::Partner;
use shared::ids::{KeyId, PartnerId};
use shared::{App, Error};

use crate::auth::{Auth, PartnerScope};
use crate::body::RawBody;
use crate::error::{ApiError, ApiResult};
use crate::path::Param;

/// A partner as the API shows it (never its keys).
pub fn view(p: &Partner) -> Value {
    json!({"id": p.id, "name": p.name, "created_at": p.created_at})
}

/// `POST /partners` → 201 `{"id","name","api_key"}`. The key is not stored, only its hash.
pub async fn create(
    State(app): State<Arc<App>>,
    auth: Auth,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.admin_only()?;
    let f = body.object()?;
    f.only(&["id", "name"])?;
    let id = f.id_or_new(PartnerId::random)?;
    let (api_key, hash) = new_partner_key(&id);
    let partner = Partner {
        id,
        name: f.str("name", 200)?,
        api_key_sha256: vec![hash],
        created_at: Utc::now(),
    };
    app.create_partner(&partner).await?;
    let mut out = view(&partner);
    out["api_key"] = Value::String(api_key);
    Ok((StatusCode::CREATED, Json(out)))
}

/// `GET /partners/{id}`: the admin, or the partner itself.
pub async fn read(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<PartnerId>,
) -> ApiResult<Json<Value>> {
    auth.require_partner(&id)?;
    let partner = app
        .store
        .get_partner(&id)
        .await?
        .ok_or_else(|| Error::not_found("partner", &id))?;
    Ok(Json(view(&partner)))
}

/// Who did it, for the audit line.
fn actor(caller: &Caller) -> &'static str {
    match caller {
        Caller::Admin => "admin",
        Caller::Partner(_) => "partner",
    }
}

/// The partner of a key route (read fresh: keys are never served from a cache here).
async fn fresh_partner(app: &App, id: &PartnerId) -> Result<Partner, ApiError> {
    app.store
        .get_partner(id)
        .await?
        .ok_or_else(|| Error::not_found("partner", id).into())
}

/// `GET /partners/{pid}/keys`: the ids of the partner's keys (never the keys).
pub async fn keys(State(app): State<Arc<App>>, scope: PartnerScope) -> ApiResult<Json<Value>> {
    let partner = fresh_partner(&app, &scope.partner_id).await?;
    let ids: Vec<Value> = partner
        .api_key_sha256
        .iter()
        .map(|h| json!({"id": key_id(h)}))
        .collect();
    Ok(Json(json!({"keys": ids, "max_keys": MAX_PARTNER_KEYS})))
}

/// `POST /partners/{pid}/keys` (the admin, or the partner itself) → 201
/// `{"id","api_key"}`, the key shown this once. The old keys keep working
/// until they are revoked, so clients can move over without a gap.
pub async fn add_key(
    State(app): State<Arc<App>>,
    scope: PartnerScope,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let partner = fresh_partner(&app, &scope.partner_id).await?;
    if partner.api_key_sha256.len() >= MAX_PARTNER_KEYS {
        return Err(Error::Conflict(format!(
            "partner `{}` already has {MAX_PARTNER_KEYS} keys: revoke one first",
            partner.id
        ))
        .into());
    }
    let (api_key, hash) = new_partner_key(&partner.id);
    let mut keys = partner.api_key_sha256.clone();
    keys.push(hash.clone());
    if !app
        .replace_partner_keys(&partner.id, &partner.api_key_sha256, &keys)
        .await?
    {
        return Err(
            Error::Conflict("the partner's keys changed meanwhile: try again".into()).into(),
        );
    }
    let id = key_id(&hash);
    tracing::info!(audit = "partner_key_added", partner_id = %partner.id, key_id = %id, by = actor(&scope.caller), "partner key added");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "api_key": api_key, "partner_id": partner.id})),
    ))
}

/// `DELETE /partners/{pid}/keys/{kid}` → 204. The key stops working at once
/// in this process and within `CONFIG_CACHE_SECONDS` everywhere. A partner
/// cannot revoke its last key (it would lock itself out); the admin can.
pub async fn revoke_key(
    State(app): State<Arc<App>>,
    scope: PartnerScope,
    Param(kid): Param<KeyId>,
) -> ApiResult<StatusCode> {
    let partner = fresh_partner(&app, &scope.partner_id).await?;
    let keys: Vec<String> = partner
        .api_key_sha256
        .iter()
        .filter(|h| key_id(h) != kid)
        .cloned()
        .collect();
    if keys.len() == partner.api_key_sha256.len() {
        return Err(Error::NotFound {
            code: "key_not_found",
            message: format!("key `{kid}` was not found"),
        }
        .into());
    }
    if keys.is_empty() && scope.caller != Caller::Admin {
        return Err(Error::Conflict(
            "this is the partner's last key: add a new one before revoking it".into(),
        )
        .into());
    }
    if !app
        .replace_partner_keys(&partner.id, &partner.api_key_sha256, &keys)
        .await?
    {
        return Err(
            Error::Conflict("the partner's keys changed meanwhile: try again".into()).into(),
        );
    }
    tracing::info!(audit = "partner_key_revoked", partner_id = %partner.id, key_id = %kid, by = actor(&scope.caller), remaining = keys.len(), "partner key revoked");
    Ok(StatusCode::NO_CONTENT)
}
