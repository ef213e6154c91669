//! Every HTTP route of the postback service, as one axum router. Lambda runs
//! it through `lambda_http`; the local runner serves the very same router on
//! 127.0.0.1.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use shared::App;

pub mod auth;
pub mod body;
pub mod error;
pub mod routes;

pub use error::ApiError;

/// Largest request body accepted; larger ones answer 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The router over shared state.
pub fn router(app: Arc<App>) -> Router {
    use routes::*;
    Router::new()
        .route("/health", get(health::health))
        .route("/click", get(clicks::redirect))
        .route("/clicks", post(clicks::create))
        .route("/postback", get(postback::get).post(postback::post))
        .route("/events", post(events::create))
        .route("/offers", post(offers::create))
        .route(
            "/offers/{id}",
            get(offers::read).put(offers::update).delete(offers::delete),
        )
        .route("/partners", post(partners::create))
        .route("/partners/{pid}", get(partners::read))
        .route(
            "/partners/{pid}/endpoints",
            post(endpoints::create).get(endpoints::list),
        )
        .route(
            "/partners/{pid}/endpoints/{eid}",
            get(endpoints::read)
                .put(endpoints::update)
                .delete(endpoints::delete),
        )
        .route(
            "/partners/{pid}/endpoints/{eid}/test",
            post(endpoints::test),
        )
        .route("/partners/{pid}/deliveries", get(deliveries::history))
        .route("/events/{id}/deliveries", get(deliveries::of_event))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}
