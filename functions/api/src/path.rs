//! Ids in the path, typed: `Param<PartnerId>` is the route's `{pid}` checked
//! by the partner-id rule, and so on. A path that does not decode (not UTF-8)
//! or an id that breaks its rule is a 400 naming the id, answered before
//! any AWS call.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use shared::ids::{
    DeliveryId, EndpointId, EventId, KeyId, OfferId, PartnerId, RecoveryId, TypedId,
};
use shared::Error;

use crate::error::ApiError;

/// A typed id and the name of the path parameter that carries it.
pub trait PathId: TypedId {
    /// The parameter's name in the route (`pid` in `/partners/{pid}`).
    const PARAM: &'static str;
    /// Checks the raw (decoded) text by the id's rule, naming the id.
    fn parse_param(raw: &str) -> shared::Result<Self> {
        Self::parse_as(Self::FIELD, raw)
    }
}

macro_rules! path_id {
    ($t:ty, $param:literal) => {
        impl PathId for $t {
            const PARAM: &'static str = $param;
        }
    };
}

path_id!(PartnerId, "pid");
path_id!(EndpointId, "eid");
path_id!(KeyId, "kid");
path_id!(OfferId, "id");
path_id!(EventId, "id");
path_id!(DeliveryId, "id");
path_id!(RecoveryId, "rid");

/// The route's parameters, or the 400 of a path that does not decode.
pub async fn raw_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| {
            ApiError(Error::Invalid {
                field: "path".into(),
                code: "invalid_path",
                message: format!("the path does not decode: {}", e.body_text()),
            })
        })
}

/// One typed id of the path.
pub struct Param<T>(pub T);

impl<T: PathId, S: Send + Sync> FromRequestParts<S> for Param<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = raw_params(parts, state).await?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == T::PARAM)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a route without {{{}}}", T::PARAM)))?;
        Ok(Param(T::parse_param(raw)?))
    }
}
