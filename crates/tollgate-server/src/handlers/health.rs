//! Health routes: liveness and readiness (no auth), and `GET /health`: every deployment's health, probed
//! now or (with background health checks) as last checked; the probes are in [`crate::health_checks`].

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_accounts::duration::rfc3339;
use tollgate_config::Deployment;
use tollgate_router::{Entry, Health};

use crate::health_checks;
use crate::state::{AppState, Upstream};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn root() -> Response {
    Json(json!({"name": "tollgate", "version": VERSION, "docs": "https://github.com/tollgate"}))
        .into_response()
}

pub async fn liveliness() -> Response {
    Json(json!("I'm alive!")).into_response()
}

pub async fn readiness(State(state): State<AppState>) -> Response {
    let accounts = state.accounts();
    let (db, ok) = match accounts.store.ping().await {
        Ok(()) => ("connected", true),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database ping failed");
            ("disconnected", false)
        }
    };
    let shutting_down = state.shared().shutdown.is_cancelled();
    let status = if ok && !shutting_down {
        "healthy"
    } else {
        "unhealthy"
    };
    let code = if status == "healthy" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "db": db,
        "cache": null,
        "litellm_version": VERSION,
        "tollgate_version": VERSION,
        "success_callbacks": state.observer().callback_names(),
        "shutting_down": shutting_down,
        "db_kind": accounts.store.kind(),
        "spend_rows_buffered": accounts.ledger.buffered(),
    });
    (code, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct HealthQuery {
    pub model: Option<String>,
}

/// Public description of a deployment: never its key.
fn describe(d: &Deployment, api_base: &str) -> Value {
    json!({
        "model_name": d.model_name,
        "model": format!("{}/{}", d.provider, d.model),
        "model_id": d.id,
        "api_base": api_base,
    })
}

/// `GET /health` (LiteLLM's shape: `healthy_endpoints`, `unhealthy_endpoints` and their counts; each
/// endpoint with `last_checked_at`). With background health checks on, it answers from the states the
/// checks recorded, without probing; deployments not checked yet are in neither list. With `?model=`, or
/// with background checks off, it probes now (every deployment at once) and records the results, so
/// routing avoids the unhealthy ones.
pub async fn health(State(state): State<AppState>, Query(q): Query<HealthQuery>) -> Response {
    let rt = state.shared().runtime.load_full();
    let selected: Vec<_> = rt
        .router
        .entries()
        .iter()
        .filter(|e| health_checks::probeable(e))
        .filter(|e| {
            q.model
                .as_deref()
                .is_none_or(|m| m == e.deployment.model_name)
        })
        .collect();
    let results: Vec<(&Entry<Upstream>, Option<String>, i64)> =
        if rt.config.routing.background_health_checks && q.model.is_none() {
            selected
                .into_iter()
                .filter_map(|e| {
                    let (error, checked) = e.state.health_detail();
                    match e.state.health() {
                        Health::Unknown => None,
                        Health::Healthy => Some((e, None, checked)),
                        Health::Unhealthy => Some((
                            e,
                            Some(error.unwrap_or_else(|| "unhealthy".to_string())),
                            checked,
                        )),
                    }
                })
                .collect()
        } else {
            let n = selected.len();
            health_checks::check(selected, n)
                .await
                .into_iter()
                .map(|(e, outcome, checked)| (e, outcome.err(), checked))
                .collect()
        };
    let mut healthy = Vec::new();
    let mut unhealthy = Vec::new();
    for (e, error, checked) in results {
        let mut v = describe(&e.deployment, e.target.provider.api_base());
        if checked > 0 {
            v["last_checked_at"] = json!(rfc3339(checked));
        }
        match error {
            None => healthy.push(v),
            Some(error) => {
                v["error"] = json!(error);
                unhealthy.push(v);
            }
        }
    }
    Json(json!({
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    }))
    .into_response()
}
