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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.is_server_error() {
            match &e {
                Error::Unavailable(cause) | Error::Internal(cause) => {
                    tracing::error!(
                        code = e.code(),
                        error = format!("{cause:#}"),
                        "request failed"
                    )
                }
                _ => tracing::error!(code = e.code(), "request failed"),
            }
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(e.body())).into_response()
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
