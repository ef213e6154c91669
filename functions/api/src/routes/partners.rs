//! Partners: `POST /partners` (admin) → the API key, shown once; `GET /partners/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::auth::new_partner_key;
use shared::domain::Partner;
use shared::{App, Error};

use crate::auth::Auth;
use crate::body::RawBody;
use crate::error::ApiResult;

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
    let id = f.id_or_new("prt")?;
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
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_partner(&id)?;
    let partner = app
        .store
        .get_partner(&id)
        .await?
        .ok_or_else(|| Error::not_found("partner", &id))?;
    Ok(Json(view(&partner)))
}
