//! `GET /metrics`: the Prometheus text exposition (LiteLLM's metric names), on the main port and, with
//! `--prometheus_metrics_port`, on its own port (see [`metrics_router`]).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;

use crate::state::AppState;

/// The exposition format's content type (what Python's prometheus_client sends).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.observer().render_metrics(&state) {
        Some(body) => ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], body).into_response(),
        None => crate::error::ApiError(tollgate_core::GatewayError::NotFound(
            "Metrics are off: add \"prometheus\" to litellm_settings.callbacks (or pass --prometheus_metrics_port)".into(),
        ))
        .into_response(),
    }
}

/// The app of `--prometheus_metrics_port`: `/metrics` only, without authentication (bind it to a private
/// network); anything else is a 404.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/", get(metrics))
        .with_state(state)
}
