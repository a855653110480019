//! The route table: every path and its handler, in one place. Nothing else here.

use axum::Router;
use axum::routing::{get, post};

use crate::handlers::{health, models, openai};
use crate::state::AppState;

/// Routes served without credentials. Everything else goes through `middleware::auth`.
pub const UNAUTHENTICATED_ROUTES: &[&str] = &[
    "/health/liveliness",
    "/health/liveness",
    "/health/readiness",
    "/",
];

pub fn is_unauthenticated(path: &str) -> bool {
    UNAUTHENTICATED_ROUTES.contains(&path)
}

/// `path -> handler`.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/", get(health::root))
        .route("/health", get(health::health))
        .route("/health/liveliness", get(health::liveliness))
        .route("/health/liveness", get(health::liveliness))
        .route("/health/readiness", get(health::readiness));
    for prefix in ["", "/v1"] {
        r = r
            .route(
                &format!("{prefix}/chat/completions"),
                post(openai::chat_completions),
            )
            .route(&format!("{prefix}/completions"), post(openai::completions))
            .route(&format!("{prefix}/embeddings"), post(openai::embeddings))
            .route(&format!("{prefix}/responses"), post(openai::responses))
            .route(&format!("{prefix}/models"), get(models::list))
            .route(&format!("{prefix}/models/{{*id}}"), get(models::get))
            .route(
                &format!("{prefix}/engines/{{model}}/chat/completions"),
                post(openai::chat_completions_in_path),
            )
            .route(
                &format!("{prefix}/engines/{{model}}/completions"),
                post(openai::completions_in_path),
            )
            .route(
                &format!("{prefix}/engines/{{model}}/embeddings"),
                post(openai::embeddings_in_path),
            );
    }
    r.route(
        "/openai/deployments/{model}/chat/completions",
        post(openai::chat_completions_in_path),
    )
    .route(
        "/openai/deployments/{model}/completions",
        post(openai::completions_in_path),
    )
    .route(
        "/openai/deployments/{model}/embeddings",
        post(openai::embeddings_in_path),
    )
}
