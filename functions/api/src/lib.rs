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
pub mod console;
pub mod error;
pub mod path;
pub mod routes;

pub use error::ApiError;

/// One span per request: method and route (the matched pattern, never the
/// query string, which can carry an advertiser's security token), then the
/// status and latency when it ends. Lambda's request id joins it when present.
async fn trace_request(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = matched
        .as_ref()
        .map(|m| m.as_str())
        .unwrap_or("(no route)")
        .to_string();
    use lambda_http::RequestExt;
    // Lambda's request id (the one in Lambda's own START/END/REPORT lines)
    // and API Gateway's (the one in the access log), so either finds the other.
    let request_id = request
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let api_request_id = match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => {
            c.request_id.clone().unwrap_or_default()
        }
        _ => String::new(),
    };
    let span = tracing::info_span!("request", method = %request.method(), route = %route, request_id = %request_id, api_request_id = %api_request_id);
    let started = std::time::Instant::now();
    async move {
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        shared::telemetry::flush_metrics();
        response
    }
    .instrument(span)
    .await
}

/// Every id in the path follows its type's rule before anything else runs
/// (authentication included): a path that does not decode, or an id that
/// breaks the rule, is a 400 naming it, never a 500 and never an AWS call
/// (DynamoDB refuses keys over 2 KB, which would otherwise look like an
/// outage). Handlers then take the ids typed ([`path::Param`]).
async fn checked_path_ids(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use path::PathId;
    use shared::ids::{EndpointId, KeyId, OfferId, PartnerId, RecoveryId};
    let (mut parts, body) = request.into_parts();
    let checked = match path::raw_params(&mut parts, &()).await {
        Err(e) => Err(e),
        Ok(params) => params
            .iter()
            .try_for_each(|(name, value)| {
                match name {
                    "pid" => PartnerId::parse_param(value).map(drop),
                    "eid" => EndpointId::parse_param(value).map(drop),
                    "kid" => KeyId::parse_param(value).map(drop),
                    "rid" => RecoveryId::parse_param(value).map(drop),
                    // Offers, events and deliveries share the resource-id rule.
                    _ => OfferId::parse_as("id", value).map(drop),
                }
            })
            .map_err(ApiError),
    };
    match checked {
        Err(e) => e.into_response(),
        Ok(()) => {
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
    }
}

/// Longest URI (path and query) the API reads; a longer one answers a JSON
/// 414 (`uri_too_long`). API Gateway's own limit is about 10 KB for the
/// whole request line and headers, and the local server (hyper) cuts at
/// 64 KiB with an empty 414 before any route runs.
pub const MAX_URI_BYTES: usize = 8 * 1024;

async fn bounded_uri(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        let body = serde_json::json!({"error": {"code": "uri_too_long", "message": format!("the path and query are {len} bytes; at most {MAX_URI_BYTES} are read")}});
        return (axum::http::StatusCode::URI_TOO_LONG, axum::Json(body)).into_response();
    }
    next.run(request).await
}

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
        .route("/offers", post(offers::create).get(lists::offers))
        .route("/offers/{id}/postbacks", get(lists::offer_postbacks))
        .route(
            "/offers/{id}",
            get(offers::read).put(offers::update).delete(offers::delete),
        )
        .route("/partners", post(partners::create).get(lists::partners))
        .route("/partners/{pid}", get(partners::read))
        .route(
            "/partners/{pid}/keys",
            get(partners::keys).post(partners::add_key),
        )
        .route(
            "/partners/{pid}/keys/{kid}",
            axum::routing::delete(partners::revoke_key),
        )
        .route(
            "/partners/{pid}/endpoints",
            post(endpoints::create).get(endpoints::list),
        )
        .route(
            "/partners/{pid}/endpoints/{eid}",
            get(endpoints::read)
                .put(endpoints::update)
                .patch(endpoints::patch)
                .delete(endpoints::delete),
        )
        .route(
            "/partners/{pid}/endpoints/{eid}/test",
            post(endpoints::test),
        )
        .route(
            "/partners/{pid}/endpoints/{eid}/recover",
            post(recoveries::start),
        )
        .route(
            "/partners/{pid}/endpoints/{eid}/recover/{rid}",
            get(recoveries::read),
        )
        .route(
            "/partners/{pid}/endpoints/preview",
            post(endpoints::preview),
        )
        .route("/", get(console::root))
        .route("/console", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/partners/{pid}/deliveries", get(deliveries::history))
        .route("/events/{id}/deliveries", get(deliveries::of_event))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/admin/dead-letters", get(admin::list))
        .route("/admin/dead-letters/redrive", post(admin::redrive))
        .route_layer(axum::middleware::from_fn(checked_path_ids))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(bounded_uri))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(app)
}
