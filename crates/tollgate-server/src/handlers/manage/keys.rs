//! `/key/*`: generate, update, delete, info, list, regenerate, block and unblock virtual keys. The secret is
//! returned once, by generate and regenerate; only its hash is stored.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tollgate_accounts::model::{KeyDoc, TeamRole};
use tollgate_accounts::{Entry, duration, secret};
use tollgate_core::GatewayError;
use tollgate_store::{EntityKind, now_ms};

use super::{
    Caller, body_object, entry_json, forbidden, merge, opt_str, page_args, query_map, respond,
    store_error, str_list,
};
use crate::state::AppState;

/// Fields `/key/generate` and `/key/update` accept (besides `key`, `duration`, `spend`).
const FIELDS: &[&str] = &[
    "key_alias",
    "user_id",
    "team_id",
    "organization_id",
    "budget_id",
    "models",
    "aliases",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "model_max_budget",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "metadata",
    "tags",
    "blocked",
];
/// LiteLLM options accepted without effect here.
const IGNORED: &[&str] = &[
    "key",
    "duration",
    "spend",
    "send_invite_email",
    "config",
    "permissions",
    "guardrails",
    "key_type",
    "allowed_cache_controls",
    "new_key",
];

fn key_json(e: &Entry<KeyDoc>) -> Value {
    let mut v = entry_json(e);
    if let Value::Object(m) = &mut v {
        m.insert(
            "expires".into(),
            e.doc
                .expires
                .map(duration::rfc3339)
                .map_or(Value::Null, Value::from),
        );
        m.insert("token_id".into(), e.doc.token.clone().into());
    }
    v
}

/// Is the caller an admin of `team_id`?
fn team_admin(state: &AppState, c: &Caller, team_id: Option<&str>) -> bool {
    let (Some(t), Some(u)) = (team_id, c.user_id.as_deref()) else {
        return false;
    };
    state
        .accounts()
        .teams
        .get(t)
        .is_some_and(|t| t.doc.role_of(u) == Some(TeamRole::Admin))
}

/// May the caller change this key (update, delete, regenerate)?
fn may_manage(state: &AppState, c: &Caller, k: &KeyDoc) -> bool {
    c.role.is_admin()
        || (c.role.can_write_own() && c.is_user(k.user_id.as_deref()))
        || team_admin(state, c, k.team_id.as_deref())
}

/// May the caller read this key?
fn may_read(state: &AppState, c: &Caller, k: &KeyDoc) -> bool {
    c.role.is_admin_reader()
        || c.key_hash.as_deref() == Some(k.token.as_str())
        || c.is_user(k.user_id.as_deref())
        || team_admin(state, c, k.team_id.as_deref())
}

/// The key a request names (`key`: the secret or its hash), which must exist.
fn find(
    state: &AppState,
    key: Option<String>,
) -> Result<std::sync::Arc<Entry<KeyDoc>>, GatewayError> {
    let key = key.ok_or_else(|| GatewayError::invalid_param("key", "`key` is required"))?;
    state
        .accounts()
        .keys
        .get(&secret::hash(&key))
        .ok_or_else(|| {
            GatewayError::NotFound(format!("Key not found: {}", secret::display_name(&key)))
        })
}

fn expiry(patch: &Map<String, Value>) -> Result<Option<Option<i64>>, GatewayError> {
    match patch.get("duration") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(d)) => duration::parse(d)
            .map(|p| Some(Some(p.add_to(now_ms()))))
            .ok_or_else(|| {
                GatewayError::invalid_param(
                    "duration",
                    format!("`duration` {d:?} is not a duration like \"30s\", \"1h\", \"30d\""),
                )
            }),
        Some(_) => Err(GatewayError::invalid_param(
            "duration",
            "`duration` must be a string",
        )),
    }
}

/// `POST /key/generate`
pub async fn generate(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(generate_inner(&state, c, req).await)
}

async fn generate_inner(state: &AppState, c: Caller, req: Request) -> Result<Value, GatewayError> {
    let mut patch = body_object(req).await?;
    let team_id = opt_str(&patch, "team_id")?;
    if !c.role.is_admin() {
        let own_team = team_admin(state, &c, team_id.as_deref());
        if !c.role.can_write_own() && !own_team {
            return Err(forbidden(
                "generate keys",
                "proxy_admin, internal_user or a team admin",
            ));
        }
        let for_user = opt_str(&patch, "user_id")?;
        match (for_user, &c.user_id) {
            (Some(u), Some(own)) if &u == own => {}
            (None, Some(own)) => {
                patch.insert("user_id".into(), Value::String(own.clone()));
            }
            (Some(_), _) if !own_team => {
                return Err(forbidden("generate keys for other users", "proxy_admin"));
            }
            (None, None) if !own_team => {
                return Err(forbidden(
                    "generate keys without a user",
                    "proxy_admin or a team admin",
                ));
            }
            _ => {}
        }
    }
    if let Some(t) = &team_id {
        let Some(team) = state.accounts().teams.get(t) else {
            return Err(GatewayError::invalid_param(
                "team_id",
                format!("Team {t} does not exist"),
            ));
        };
        // A key in a team spends the team's budget: only its members (or an admin) may make one.
        let member = c
            .user_id
            .as_deref()
            .is_some_and(|u| team.doc.role_of(u).is_some());
        if !c.role.is_admin() && !member {
            return Err(forbidden(
                "generate keys for a team you are not a member of",
                "proxy_admin or a team member",
            ));
        }
    }
    let secret_key = match opt_str(&patch, "key")? {
        Some(k) if k.starts_with("sk-") && k.len() >= 8 => k,
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "key",
                "a custom `key` must start with `sk-` and be at least 8 characters",
            ));
        }
        None => secret::generate().map_err(GatewayError::Internal)?,
    };
    let mut doc: KeyDoc = merge(&KeyDoc::default(), &patch, FIELDS, IGNORED)?;
    doc.token = secret::hash_secret(&secret_key);
    doc.key_name = secret::display_name(&secret_key);
    doc.expires = expiry(&patch)?.flatten();
    doc.created_by = c
        .user_id
        .clone()
        .or_else(|| Some("master_key".into()).filter(|_| c.role.is_admin()));
    let row = state.accounts().create(&doc).await.map_err(store_error)?;
    let e = state
        .accounts()
        .keys
        .get(&row.id)
        .ok_or_else(|| GatewayError::Internal("created key not in memory".into()))?;
    let mut v = key_json(&e);
    if let Value::Object(m) = &mut v {
        m.insert("key".into(), Value::String(secret_key));
    }
    Ok(v)
}

/// `POST /key/update`
pub async fn update(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let patch = body_object(req).await?;
            let old = find(&state, opt_str(&patch, "key")?)?;
            if !may_manage(&state, &c, &old.doc) {
                return Err(forbidden(
                    "update this key",
                    "proxy_admin, the key's user or its team admin",
                ));
            }
            if !c.role.is_admin()
                && (patch.contains_key("user_id") || patch.contains_key("team_id"))
            {
                return Err(forbidden("move keys between users or teams", "proxy_admin"));
            }
            let mut doc: KeyDoc = merge(&old.doc, &patch, FIELDS, IGNORED)?;
            doc.token = old.doc.token.clone();
            doc.key_name = old.doc.key_name.clone();
            if let Some(exp) = expiry(&patch)? {
                doc.expires = exp;
            }
            doc.updated_by = c.user_id.clone();
            let a = state.accounts();
            if !a.update(&doc, &old).await.map_err(store_error)? {
                return Err(GatewayError::NotFound("Key not found".into()));
            }
            if let Some(spend) = patch.get("spend") {
                let spend = serde_json::from_value::<tollgate_core::Nanos>(spend.clone()).map_err(
                    |_| GatewayError::invalid_param("spend", "`spend` must be a number"),
                )?;
                if !c.role.is_admin() {
                    return Err(forbidden("set spend", "proxy_admin"));
                }
                a.set_spend(EntityKind::Key, &doc.token, spend)
                    .await
                    .map_err(store_error)?;
            }
            let e = a
                .keys
                .get(&doc.token)
                .ok_or_else(|| GatewayError::NotFound("Key not found".into()))?;
            Ok(key_json(&e))
        }
        .await,
    )
}

/// `POST /key/delete` with `keys` (secrets or hashes) and/or `key_aliases`.
pub async fn delete(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let body = body_object(req).await?;
            let a = state.accounts();
            let mut targets = Vec::new();
            for k in str_list(&body, "keys")?.unwrap_or_default() {
                let e = a.keys.get(&secret::hash(&k)).ok_or_else(|| {
                    GatewayError::NotFound(format!("Key not found: {}", secret::display_name(&k)))
                })?;
                targets.push(e);
            }
            for alias in str_list(&body, "key_aliases")?.unwrap_or_default() {
                let found: Vec<_> = a
                    .keys
                    .all()
                    .into_iter()
                    .filter(|e| e.doc.key_alias.as_deref() == Some(alias.as_str()))
                    .collect();
                if found.is_empty() {
                    return Err(GatewayError::NotFound(format!("No key with alias {alias}")));
                }
                targets.extend(found);
            }
            if targets.is_empty() {
                return Err(GatewayError::invalid_param(
                    "keys",
                    "give `keys` or `key_aliases` to delete",
                ));
            }
            if let Some(t) = targets.iter().find(|e| !may_manage(&state, &c, &e.doc)) {
                return Err(forbidden(
                    &format!("delete key {}", t.doc.key_name),
                    "proxy_admin, the key's user or its team admin",
                ));
            }
            let ids: Vec<String> = targets.iter().map(|e| e.doc.token.clone()).collect();
            let done = a.delete(EntityKind::Key, &ids).await.map_err(store_error)?;
            Ok(json!({ "deleted_keys": done }))
        }
        .await,
    )
}

/// `GET /key/info?key=...` (without `key`: the calling key).
pub async fn info(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    let q = query_map(&req);
    respond((|| {
        let key = match q.get("key").and_then(|v| v.as_str()) {
            Some(k) => k.to_string(),
            None => c
                .key_hash
                .clone()
                .ok_or_else(|| GatewayError::invalid_param("key", "`key` is required"))?,
        };
        let e = find(&state, Some(key.clone()))?;
        if !may_read(&state, &c, &e.doc) {
            return Err(forbidden(
                "read this key",
                "proxy_admin, proxy_admin_viewer or the key's user",
            ));
        }
        // `key` is the hash, also when the caller passed the key itself: `/key/generate` is the only answer
        // that shows a key.
        Ok(json!({ "key": secret::hash(&key), "info": key_json(&e) }))
    })())
}

/// `GET /key/list` (`user_id`, `team_id`, `key_alias`, `page`, `size`, `return_full_object`).
pub async fn list(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    let q = query_map(&req);
    respond((|| {
        let (page, size) = page_args(&q)?;
        let s = |k: &str| q.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let mut user = s("user_id");
        if !c.role.is_admin_reader() {
            match (&user, &c.user_id) {
                (Some(u), Some(own)) if u != own => {
                    return Err(forbidden(
                        "list other users' keys",
                        "proxy_admin or proxy_admin_viewer",
                    ));
                }
                (_, Some(own)) => user = Some(own.clone()),
                (_, None) => {
                    return Err(forbidden(
                        "list keys",
                        "proxy_admin, proxy_admin_viewer or a user",
                    ));
                }
            }
        }
        let (team, alias) = (s("team_id"), s("key_alias"));
        let full = s("return_full_object").is_some_and(|v| v == "true");
        let mut keys: Vec<_> = state
            .accounts()
            .keys
            .all()
            .into_iter()
            .filter(|e| user.is_none() || e.doc.user_id == user)
            .filter(|e| team.is_none() || e.doc.team_id == team)
            .filter(|e| alias.is_none() || e.doc.key_alias == alias)
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.doc.token).cmp(&(b.created_at, &b.doc.token)));
        let total = keys.len() as i64;
        let items: Vec<Value> = keys
            .iter()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .map(|e| {
                if full {
                    key_json(e)
                } else {
                    Value::String(e.doc.token.clone())
                }
            })
            .collect();
        Ok(json!({
            "keys": items,
            "total_count": total,
            "current_page": page,
            "total_pages": (total + size - 1) / size,
        }))
    })())
}

async fn regenerate_key(
    state: &AppState,
    c: Caller,
    key: Option<String>,
    patch: Map<String, Value>,
) -> Result<Value, GatewayError> {
    let old = find(state, key)?;
    if !may_manage(state, &c, &old.doc) {
        return Err(forbidden(
            "regenerate this key",
            "proxy_admin, the key's user or its team admin",
        ));
    }
    let secret_key = match opt_str(&patch, "new_key")? {
        Some(k) if k.starts_with("sk-") && k.len() >= 8 => k,
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "new_key",
                "`new_key` must start with `sk-` and be at least 8 characters",
            ));
        }
        None => secret::generate().map_err(GatewayError::Internal)?,
    };
    let mut doc: KeyDoc = merge(&old.doc, &patch, FIELDS, IGNORED)?;
    doc.token = secret::hash_secret(&secret_key);
    doc.key_name = secret::display_name(&secret_key);
    if let Some(exp) = expiry(&patch)? {
        doc.expires = exp;
    }
    let a = state.accounts();
    if !a.rekey(&old, &doc).await.map_err(store_error)? {
        return Err(GatewayError::NotFound("Key not found".into()));
    }
    let e = a
        .keys
        .get(&doc.token)
        .ok_or_else(|| GatewayError::Internal("regenerated key not in memory".into()))?;
    let mut v = key_json(&e);
    if let Value::Object(m) = &mut v {
        m.insert("key".into(), Value::String(secret_key));
    }
    Ok(v)
}

/// `POST /key/regenerate` with `key` (and optional `new_key` and fields to change).
pub async fn regenerate(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let patch = body_object(req).await?;
            let key = opt_str(&patch, "key")?;
            regenerate_key(&state, c, key, patch).await
        }
        .await,
    )
}

/// `POST /key/{key}/regenerate`
pub async fn regenerate_in_path(
    State(state): State<AppState>,
    Path(key): Path<String>,
    req: Request,
) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let patch = body_object(req).await?;
            regenerate_key(&state, c, Some(key), patch).await
        }
        .await,
    )
}

async fn set_blocked(state: AppState, req: Request, blocked: bool) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin(if blocked {
                "block keys"
            } else {
                "unblock keys"
            })?;
            let body = body_object(req).await?;
            let old = find(&state, opt_str(&body, "key")?)?;
            let mut doc = old.doc.clone();
            doc.blocked = blocked;
            let e = super::save(&state, &state.accounts().keys, &old, &doc, "Key").await?;
            Ok(key_json(&e))
        }
        .await,
    )
}

/// `POST /key/block` with `key`.
pub async fn block(State(state): State<AppState>, req: Request) -> Response {
    set_blocked(state, req, true).await
}

/// `POST /key/unblock` with `key`.
pub async fn unblock(State(state): State<AppState>, req: Request) -> Response {
    set_blocked(state, req, false).await
}
