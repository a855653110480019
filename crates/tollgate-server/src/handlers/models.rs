//! `GET /v1/models` and `GET /v1/models/{id}`: the model groups this caller can use.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tollgate_accounts::Principal;
use tollgate_core::GatewayError;

use crate::error::ApiError;
use crate::handlers::openai::access_groups_of;
use crate::state::{AppState, Runtime};

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

/// Whether the caller may use the model name `m`.
fn may_use(state: &AppState, rt: &Runtime, p: &Principal, m: &str) -> bool {
    if !matches!(p, Principal::Key(_)) {
        return true;
    }
    let groups = rt
        .router
        .candidates(m)
        .map(|c| access_groups_of(rt, c.idx))
        .unwrap_or_default();
    state.accounts().may_use_model(p, m, &groups)
}

/// The listed model names the caller may use.
pub fn visible(state: &AppState, rt: &Runtime, p: &Principal) -> Vec<String> {
    rt.router
        .model_names()
        .into_iter()
        .filter(|m| may_use(state, rt, p, m))
        .collect()
}

fn principal(req: &Request) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Open)
}

pub async fn list(State(state): State<AppState>, req: Request) -> Response {
    let created = created(&state);
    let rt = state.runtime();
    let data: Vec<Value> = visible(&state, &rt, &principal(&req))
        .iter()
        .map(|m| model_object(m, created))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rt = state.runtime();
    if rt.router.knows(&id) && may_use(&state, &rt, &principal(&req), &id) {
        Json(model_object(&id, created(&state))).into_response()
    } else {
        ApiError(GatewayError::NotFound(format!(
            "The model `{id}` does not exist"
        )))
        .into_response()
    }
}
