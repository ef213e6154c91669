//! `Authorization: Bearer <key>`: the admin key from configuration, or a
//! partner key checked against the hashes stored with its partner.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::sync::Arc;

use shared::auth::{key_matches, partner_of_key, Caller};
use shared::ids::PartnerId;
use shared::{App, Error};

use crate::path::Param;

use crate::error::ApiError;

/// Longest bearer key looked at: partner keys are at most about 190
/// characters, and the admin key at most `shared::config::MAX_ADMIN_KEY_LEN`.
pub const MAX_KEY_LEN: usize = 256;

/// The authenticated caller of a request.
pub struct Auth(pub Caller);

impl Auth {
    /// Only the admin may call this route; a partner key answers 403.
    pub fn admin_only(&self) -> Result<(), ApiError> {
        match self.0 {
            Caller::Admin => Ok(()),
            Caller::Partner(_) => {
                Err(Error::Forbidden("this route needs the admin key".into()).into())
            }
        }
    }

    /// The caller must see `partner_id`; other partners' resources answer 404
    /// exactly as if they did not exist.
    pub fn require_partner(&self, partner_id: &str) -> Result<(), ApiError> {
        if self.0.can_see(partner_id) {
            Ok(())
        } else {
            Err(Error::not_found("partner", partner_id).into())
        }
    }
}

/// The partner of a route's `{pid}`: the caller may see it and it exists.
/// Another partner's id answers 404, exactly as a partner that does not exist.
pub struct PartnerScope {
    pub caller: Caller,
    pub partner_id: PartnerId,
}

impl FromRequestParts<Arc<App>> for PartnerScope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let Auth(caller) = Auth::from_request_parts(parts, app).await?;
        let Param(partner_id) = Param::<PartnerId>::from_request_parts(parts, app).await?;
        if !caller.can_see(&partner_id) || app.partner(&partner_id).await?.is_none() {
            return Err(Error::not_found("partner", &partner_id).into());
        }
        Ok(PartnerScope { caller, partner_id })
    }
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::Unauthorized("missing `Authorization: Bearer <key>` header".into())
            })?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("the `Authorization` header must be `Bearer <key>`".into())
            })?;
        // No key is this long: refused before any lookup (a DynamoDB key
        // over its limit would otherwise look like an outage).
        if key.len() > MAX_KEY_LEN {
            return Err(Error::Unauthorized("invalid API key".into()).into());
        }
        if app.admin_keys.matches(key).await {
            return Ok(Auth(Caller::Admin));
        }
        let invalid = || ApiError(Error::Unauthorized("invalid API key".into()));
        let partner_id = partner_of_key(key)
            .and_then(|p| PartnerId::parse(p).ok())
            .ok_or_else(invalid)?;
        let partner = app.partner(&partner_id).await?;
        match partner.as_ref() {
            Some(p) if key_matches(key, &p.api_key_sha256) => {
                Ok(Auth(Caller::Partner(p.id.clone())))
            }
            _ => Err(invalid()),
        }
    }
}
