//! The route table: every path and its handler, in one place. Nothing else here.

use axum::Router;
use axum::routing::{get, post};

use crate::handlers::manage::{budgets, customers, keys, orgs, spend, teams, users};
use crate::handlers::{health, metrics, models, openai, reload};
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
        .route("/health/readiness", get(health::readiness))
        // Open unless `require_auth_for_metrics_endpoint` (decided in `auth::check`).
        .route("/metrics", get(metrics::metrics))
        .route("/metrics/", get(metrics::metrics));
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
    // Anthropic's Messages API (the Anthropic SDK's paths), also under LiteLLM's `/anthropic` prefix.
    for prefix in ["", "/anthropic"] {
        r = r
            .route(&format!("{prefix}/v1/messages"), post(openai::messages))
            .route(
                &format!("{prefix}/v1/messages/count_tokens"),
                post(openai::count_tokens),
            );
    }
    for path in ["/rerank", "/v1/rerank", "/v2/rerank"] {
        r = r.route(path, post(openai::rerank));
    }
    r = r
        .route("/model/info", get(models::info))
        .route("/v1/model/info", get(models::info))
        .route("/model_group/info", get(models::group_info));
    // The LiteLLM management API.
    r = r
        .route("/key/generate", post(keys::generate))
        .route("/key/update", post(keys::update))
        .route("/key/delete", post(keys::delete))
        .route("/key/info", get(keys::info))
        .route("/key/list", get(keys::list))
        .route("/key/regenerate", post(keys::regenerate))
        .route("/key/{key}/regenerate", post(keys::regenerate_in_path))
        .route("/key/block", post(keys::block))
        .route("/key/unblock", post(keys::unblock))
        .route("/user/new", post(users::new))
        .route("/user/info", get(users::info))
        .route("/user/update", post(users::update))
        .route("/user/delete", post(users::delete))
        .route("/user/list", get(users::list))
        .route("/team/new", post(teams::new))
        .route("/team/info", get(teams::info))
        .route("/team/update", post(teams::update))
        .route("/team/delete", post(teams::delete))
        .route("/team/list", get(teams::list))
        .route("/team/member_add", post(teams::member_add))
        .route("/team/member_delete", post(teams::member_delete))
        .route("/team/block", post(teams::block))
        .route("/team/unblock", post(teams::unblock))
        .route("/organization/new", post(orgs::new))
        .route("/organization/info", get(orgs::info))
        .route("/organization/list", get(orgs::list))
        .route(
            "/organization/update",
            axum::routing::patch(orgs::update).post(orgs::update),
        )
        .route(
            "/organization/delete",
            axum::routing::delete(orgs::delete).post(orgs::delete),
        )
        .route("/budget/new", post(budgets::new))
        .route("/budget/info", post(budgets::info).get(budgets::info))
        .route("/budget/list", get(budgets::list))
        .route("/budget/update", post(budgets::update))
        .route("/budget/delete", post(budgets::delete))
        .route("/spend/logs", get(spend::logs))
        .route("/global/spend/report", get(spend::global_report))
        .route("/global/spend/keys", get(spend::global_keys))
        .route("/global/spend/teams", get(spend::global_teams))
        .route("/global/spend/models", get(spend::global_models))
        // Re-read the config file (proxy admins).
        .route("/config/reload", post(reload::reload_config));
    for prefix in ["/customer", "/end_user"] {
        r = r
            .route(&format!("{prefix}/new"), post(customers::new))
            .route(&format!("{prefix}/info"), get(customers::info))
            .route(&format!("{prefix}/list"), get(customers::list))
            .route(&format!("{prefix}/update"), post(customers::update))
            .route(&format!("{prefix}/delete"), post(customers::delete))
            .route(&format!("{prefix}/block"), post(customers::block))
            .route(&format!("{prefix}/unblock"), post(customers::unblock));
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
