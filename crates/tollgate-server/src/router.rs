//! The middleware stack, built in one function with its order explained.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use http::{Method, Uri};
use tollgate_core::GatewayError;

use crate::error::ApiError;
use crate::middleware::context;
use crate::routes::routes;
use crate::state::AppState;

/// The whole application.
///
/// One layer wraps the route table (one, not two: each `from_fn` layer costs a boxed future and a service
/// clone per request):
/// 1. `context`: request id and timing first, so even auth failures and 404s carry `x-request-id` and are
///    logged; then `auth::check` — every route except `UNAUTHENTICATED_ROUTES` needs the master key —
///    before any handler reads the body; then the id headers on the way out.
/// 2. The route table; unknown paths and wrong methods get OpenAI-shaped 404/405 bodies.
pub fn build_router(state: AppState) -> Router {
    routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), context::context))
        .with_state(state)
}

async fn not_found(uri: Uri) -> Response {
    ApiError(GatewayError::NotFound(format!(
        "Route {} not found",
        uri.path()
    )))
    .into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    ApiError(GatewayError::MethodNotAllowed(method.to_string())).into_response()
}
