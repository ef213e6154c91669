//! The one place where domain errors become HTTP answers:
//! `{"error":{"code","message"}}` with the contract's status. Server-side
//! causes are logged with their chain and answered with an opaque message.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use shared::Error;

/// A domain error on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status of the public contract.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Invalid { .. } | Error::MalformedBody(_) => StatusCode::BAD_REQUEST,
        Error::Rule { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Gone(_) => StatusCode::GONE,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `{"error":{"code","message"}}` body, with `field` when one field is
/// at fault; an internal error's cause never shows.
pub fn body_of(e: &Error) -> serde_json::Value {
    match e {
        Error::Invalid { field, .. } | Error::Rule { field, .. } => {
            serde_json::json!({"error": {"code": e.code(), "message": e.to_string(), "field": field}})
        }
        _ => serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}}),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if !e.is_caller_fault() {
            tracing::error!(
                code = e.code(),
                aws_code = e.aws_code().unwrap_or_default(),
                error = %e.detail(),
                "request failed"
            );
        }
        (status_of(&e), Json(body_of(&e))).into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// 404 for paths that are not routes.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError(Error::NotFound {
        code: "route_not_found",
        message: format!("no route for `{}`", uri.path()),
    })
}

/// 405 for a route called with a method it does not take.
pub async fn method_not_allowed() -> Response {
    let body = serde_json::json!({"error": {"code": "method_not_allowed", "message": "this route does not take that method"}});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_contract_statuses() {
        assert_eq!(status_of(&Error::missing("click_id")), 400);
        assert_eq!(status_of(&Error::Gone("x".into())), 410);
        assert_eq!(status_of(&Error::PayloadTooLarge(65536)), 413);
        assert_eq!(status_of(&Error::Unavailable(anyhow::anyhow!("down"))), 503);
        let e = Error::Internal(anyhow::anyhow!("table secret-table missing"));
        assert_eq!(body_of(&e)["error"]["message"], "internal error");
    }
}
