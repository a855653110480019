//! `GET /v1/models`, `GET /v1/models/{id}`, `GET /model/info` and `GET /model_group/info`: the model groups
//! and deployments this caller can use, with each deployment's provider, mode, context window and prices.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tollgate_accounts::Principal;
use tollgate_core::GatewayError;

use crate::error::ApiError;
use crate::handlers::openai::access_groups_of;
use crate::state::{AppState, Runtime};

/// An OpenAI model object; `owned_by` is the provider of the group's first deployment (`tollgate` for an
/// alias or wildcard with none).
fn model_object(rt: &Runtime, id: &str, created: u64) -> Value {
    let owner = rt
        .router
        .candidates(id)
        .and_then(|c| c.idx.first().copied())
        .map(|i| rt.router.entries()[i].target.provider.name())
        .unwrap_or("tollgate");
    json!({"id": id, "object": "model", "created": created, "owned_by": owner})
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
    if !p.has_model_limits() {
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
        .map(|m| model_object(&rt, m, created))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rt = state.runtime();
    if rt.router.knows(&id) && may_use(&state, &rt, &principal(&req), &id) {
        Json(model_object(&rt, &id, created(&state))).into_response()
    } else {
        ApiError(GatewayError::NotFound(format!(
            "The model `{id}` does not exist"
        )))
        .into_response()
    }
}

/// A price as a JSON number (for display; sums are never made from it).
fn price_json(d: Option<rust_decimal::Decimal>) -> Value {
    d.and_then(|d| d.normalize().to_string().parse::<serde_json::Number>().ok())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// `model_info` of one deployment as LiteLLM reports it: the config's `model_info` over the price table's.
fn deployment_info(e: &tollgate_router::Entry<crate::state::Upstream>) -> Value {
    let d = &e.deployment;
    let price = e.target.price.as_deref();
    let mi = &d.model_info;
    let mode = mi
        .mode
        .as_ref()
        .map(|m| m.as_str().to_string())
        .or_else(|| price.and_then(|p| p.mode.clone()))
        .or_else(|| {
            // Unknown to the config and the price table: what the provider serves.
            use tollgate_providers::Endpoint;
            let p = &e.target.provider;
            [
                (Endpoint::ChatCompletions, "chat"),
                (Endpoint::Embeddings, "embedding"),
                (Endpoint::Rerank, "rerank"),
            ]
            .into_iter()
            .find(|(ep, _)| p.supports(*ep))
            .map(|(_, m)| m.to_string())
        });
    let mut info = serde_json::Map::new();
    for (k, v) in &mi.extra {
        info.insert(k.clone(), v.clone());
    }
    let mut put = |k: &str, v: Value| {
        info.insert(k.to_string(), v);
    };
    put("id", json!(d.id));
    put("db_model", json!(false));
    put("key", json!(format!("{}/{}", d.provider, d.model)));
    put("litellm_provider", json!(e.target.provider.name()));
    put("mode", json!(mode));
    put(
        "max_tokens",
        json!(mi.max_tokens.or(price.and_then(|p| p.max_tokens))),
    );
    put(
        "max_input_tokens",
        json!(
            mi.max_input_tokens
                .or(price.and_then(|p| p.max_input_tokens))
        ),
    );
    put(
        "max_output_tokens",
        json!(
            mi.max_output_tokens
                .or(price.and_then(|p| p.max_output_tokens))
        ),
    );
    put(
        "input_cost_per_token",
        price_json(price.map(|p| p.input_cost_per_token)),
    );
    put(
        "output_cost_per_token",
        price_json(price.map(|p| p.output_cost_per_token)),
    );
    put(
        "cache_read_input_token_cost",
        price_json(price.and_then(|p| p.cache_read_input_token_cost)),
    );
    put(
        "cache_creation_input_token_cost",
        price_json(price.and_then(|p| p.cache_creation_input_token_cost)),
    );
    put(
        "output_cost_per_reasoning_token",
        price_json(price.and_then(|p| p.output_cost_per_reasoning_token)),
    );
    put("base_model", json!(mi.base_model));
    put("access_groups", json!(mi.access_groups));
    Value::Object(info)
}

/// The deployment's `litellm_params` without any secret: only the fields that say where requests go.
fn public_params(e: &tollgate_router::Entry<crate::state::Upstream>) -> Value {
    let d = &e.deployment;
    let mut p = serde_json::Map::new();
    p.insert("model".into(), json!(format!("{}/{}", d.provider, d.model)));
    p.insert("custom_llm_provider".into(), json!(d.provider));
    if !e.target.provider.api_base().is_empty() {
        p.insert("api_base".into(), json!(e.target.provider.api_base()));
    }
    if let Some(v) = &d.api_version {
        p.insert("api_version".into(), json!(v));
    }
    for (k, v) in [("rpm", d.rpm), ("tpm", d.tpm)] {
        if let Some(v) = v {
            p.insert(k.into(), json!(v));
        }
    }
    if let Some(w) = d.weight {
        p.insert("weight".into(), json!(w));
    }
    if let Some(t) = d.timeout {
        p.insert("timeout".into(), json!(t.as_secs_f64()));
    }
    for k in ["aws_region_name", "vertex_location", "input_type"] {
        if let Some(v) = d.extra_params.get(k).filter(|v| v.is_string()) {
            p.insert(k.into(), v.clone());
        }
    }
    Value::Object(p)
}

#[derive(serde::Deserialize)]
pub struct InfoQuery {
    litellm_model_id: Option<String>,
    model: Option<String>,
}

/// `GET /model/info` (also `/v1/model/info`): every deployment of the groups this caller may use;
/// `?litellm_model_id=` picks one deployment, `?model=` one group.
pub async fn info(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<InfoQuery>,
    req: Request,
) -> Response {
    let rt = state.runtime();
    let p = principal(&req);
    let mut data = Vec::new();
    for e in rt.router.entries() {
        let d = &e.deployment;
        if q.litellm_model_id.as_deref().is_some_and(|id| id != d.id)
            || q.model.as_deref().is_some_and(|m| m != d.model_name)
            || !may_use(&state, &rt, &p, &d.model_name)
        {
            continue;
        }
        data.push(json!({
            "model_name": d.model_name,
            "litellm_params": public_params(e),
            "model_info": deployment_info(e),
        }));
    }
    Json(json!({"data": data})).into_response()
}

#[derive(serde::Deserialize)]
pub struct GroupQuery {
    model_group: Option<String>,
}

/// `GET /model_group/info`: per model group, its providers, mode, the smallest context window of its
/// deployments, their prices (the first deployment's) and summed rpm/tpm.
pub async fn group_info(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<GroupQuery>,
    req: Request,
) -> Response {
    let rt = state.runtime();
    let p = principal(&req);
    let mut data = Vec::new();
    for name in visible(&state, &rt, &p) {
        if q.model_group.as_deref().is_some_and(|g| g != name) {
            continue;
        }
        let Some(c) = rt.router.candidates(&name) else {
            continue;
        };
        let entries: Vec<_> = c.idx.iter().map(|&i| &rt.router.entries()[i]).collect();
        let mut providers: Vec<&str> = entries.iter().map(|e| e.target.provider.name()).collect();
        providers.dedup();
        let infos: Vec<Value> = entries.iter().map(|e| deployment_info(e)).collect();
        let min = |k: &str| infos.iter().filter_map(|i| i[k].as_u64()).min();
        let sum = |f: fn(&tollgate_config::Deployment) -> Option<u64>| {
            let v: Vec<u64> = entries.iter().filter_map(|e| f(&e.deployment)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<u64>())
        };
        let first = infos.first().cloned().unwrap_or(Value::Null);
        data.push(json!({
            "model_group": name,
            "providers": providers,
            "mode": first["mode"],
            "max_input_tokens": min("max_input_tokens"),
            "max_output_tokens": min("max_output_tokens"),
            "input_cost_per_token": first["input_cost_per_token"],
            "output_cost_per_token": first["output_cost_per_token"],
            "rpm": sum(|d| d.rpm),
            "tpm": sum(|d| d.tpm),
        }));
    }
    Json(json!({"data": data})).into_response()
}
