//! Health routes: liveness and readiness (no auth), and `GET /health`, which probes every deployment.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::join_all;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_config::{Deployment, Mode};
use tollgate_providers::{Call, Endpoint, Reply};

use crate::state::AppState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

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
        "success_callbacks": [],
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

/// The probe request for a deployment's mode.
fn probe_call(d: &Deployment, upstream_model: &str) -> Call {
    let (endpoint, body) = match d.model_info.mode {
        Some(Mode::Embedding) => (
            Endpoint::Embeddings,
            json!({"model": upstream_model, "input": "ping"}),
        ),
        Some(Mode::Completion) => (
            Endpoint::Completions,
            json!({"model": upstream_model, "prompt": "ping", "max_tokens": 1}),
        ),
        _ => (
            Endpoint::ChatCompletions,
            json!({"model": upstream_model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}),
        ),
    };
    Call {
        endpoint,
        body: Bytes::from(body.to_string()),
        requested_model: d.model_name.clone(),
        upstream_model: upstream_model.to_string(),
        stream: false,
        client_wants_usage: false,
        request_id: tollgate_core::ids::new_request_id(),
        timeout: d.timeout.unwrap_or(PROBE_TIMEOUT).min(PROBE_TIMEOUT),
    }
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

pub async fn health(State(state): State<AppState>, Query(q): Query<HealthQuery>) -> Response {
    let rt = state.runtime();
    let probes = rt
        .router
        .entries()
        .iter()
        .filter(|e| !e.deployment.model.contains('*') && !e.deployment.model_name.contains('*'))
        .filter(|e| {
            q.model
                .as_deref()
                .is_none_or(|m| m == e.deployment.model_name)
        })
        .map(|e| {
            let provider = e.target.provider.clone();
            let call = probe_call(&e.deployment, &e.deployment.model);
            let desc = describe(&e.deployment, provider.api_base());
            async move {
                match provider.call(call).await {
                    Ok(Reply::Complete { .. }) | Ok(Reply::Stream(_)) => (true, desc),
                    Err(err) => {
                        let mut d = desc;
                        d["error"] = json!(err.public_message());
                        (false, d)
                    }
                }
            }
        })
        .collect::<Vec<_>>();
    drop(rt);
    let results = join_all(probes).await;
    let (healthy, unhealthy): (Vec<_>, Vec<_>) = results.into_iter().partition(|(ok, _)| *ok);
    let healthy: Vec<Value> = healthy.into_iter().map(|(_, v)| v).collect();
    let unhealthy: Vec<Value> = unhealthy.into_iter().map(|(_, v)| v).collect();
    Json(json!({
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    }))
    .into_response()
}
