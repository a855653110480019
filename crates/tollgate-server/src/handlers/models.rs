//! `GET /v1/models` and `GET /v1/models/{id}`: the model groups this caller can use.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tollgate_core::GatewayError;

use crate::error::ApiError;
use crate::state::AppState;

fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "tollgate"})
}

fn created(state: &AppState) -> u64 {
    let since_start = state.shared().started.elapsed();
    std::time::SystemTime::now()
        .checked_sub(since_start)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn list(State(state): State<AppState>) -> Response {
    let created = created(&state);
    let data: Vec<Value> = state
        .runtime()
        .router
        .model_names()
        .iter()
        .map(|m| model_object(m, created))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let rt = state.runtime();
    if rt.router.knows(&id) {
        Json(model_object(&id, created(&state))).into_response()
    } else {
        ApiError(GatewayError::NotFound(format!(
            "The model `{id}` does not exist"
        )))
        .into_response()
    }
}
