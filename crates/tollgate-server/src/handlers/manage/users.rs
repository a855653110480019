//! `/user/*`: internal users (their role, models, budgets and limits). `/user/new` also creates a key for
//! the user, as LiteLLM does (`auto_create_key: false` skips it).

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};
use tollgate_accounts::model::{KeyDoc, UserDoc};
use tollgate_accounts::secret;
use tollgate_core::GatewayError;
use tollgate_store::EntityKind;

use super::{
    Caller, body_object, entry_json, forbidden, merge, new_id, opt_str, page_args, query_map,
    respond, store_error, str_list,
};
use crate::state::AppState;

const FIELDS: &[&str] = &[
    "user_email",
    "user_alias",
    "user_role",
    "organization_id",
    "models",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "metadata",
];
const IGNORED: &[&str] = &[
    "user_id",
    "auto_create_key",
    "send_invite_email",
    "teams",
    "key_alias",
    "duration",
    "spend",
    "aliases",
    "config",
    "permissions",
];

/// `POST /user/new`
pub async fn new(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin("create users")?;
            let body = body_object(req).await?;
            let mut doc: UserDoc = merge(&UserDoc::default(), &body, FIELDS, IGNORED)?;
            doc.user_id = opt_str(&body, "user_id")?.unwrap_or_else(new_id);
            let a = state.accounts();
            a.create(&doc).await.map_err(store_error)?;
            let user = a
                .users
                .get(&doc.user_id)
                .ok_or_else(|| GatewayError::Internal("created user not in memory".into()))?;
            let mut v = entry_json(&user);
            let auto_key = body
                .get("auto_create_key")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if auto_key {
                let sk = secret::generate().map_err(GatewayError::Internal)?;
                let key = KeyDoc {
                    token: secret::hash_secret(&sk),
                    key_name: secret::display_name(&sk),
                    key_alias: opt_str(&body, "key_alias")?,
                    user_id: Some(doc.user_id.clone()),
                    models: doc.models.clone(),
                    created_by: c.user_id.clone(),
                    ..KeyDoc::default()
                };
                a.create(&key).await.map_err(store_error)?;
                if let Value::Object(m) = &mut v {
                    m.insert("key".into(), Value::String(sk));
                    m.insert("token".into(), Value::String(key.token));
                }
            }
            // Team memberships given at creation.
            for team_id in str_list(&body, "teams")?.unwrap_or_default() {
                super::teams::add_member(&state, &team_id, &doc.user_id, None, Default::default())
                    .await?;
            }
            Ok(v)
        }
        .await,
    )
}

/// `GET /user/info?user_id=...` (without `user_id`: the caller's user).
pub async fn info(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    let q = query_map(&req);
    respond((|| {
        let id = match q.get("user_id").and_then(|v| v.as_str()) {
            Some(u) => u.to_string(),
            None => c
                .user_id
                .clone()
                .ok_or_else(|| GatewayError::invalid_param("user_id", "`user_id` is required"))?,
        };
        if !c.role.is_admin_reader() && !c.is_user(Some(&id)) {
            return Err(forbidden(
                "read other users",
                "proxy_admin or proxy_admin_viewer",
            ));
        }
        let a = state.accounts();
        let user = a
            .users
            .get(&id)
            .ok_or_else(|| GatewayError::NotFound(format!("User {id} not found")))?;
        let keys: Vec<Value> = a
            .keys
            .all()
            .into_iter()
            .filter(|k| k.doc.user_id.as_deref() == Some(id.as_str()))
            .map(|k| entry_json(&k))
            .collect();
        let teams: Vec<Value> = a
            .teams
            .all()
            .into_iter()
            .filter(|t| t.doc.role_of(&id).is_some())
            .map(|t| entry_json(&t))
            .collect();
        let mut info = entry_json(&user);
        if let Value::Object(m) = &mut info {
            let team_ids: Vec<Value> = teams
                .iter()
                .filter_map(|t| t.get("team_id").cloned())
                .collect();
            m.insert("teams".into(), Value::Array(team_ids));
        }
        Ok(json!({ "user_id": id, "user_info": info, "keys": keys, "teams": teams }))
    })())
}

/// `POST /user/update` with `user_id` and the fields to change.
pub async fn update(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin("update users")?;
            let body = body_object(req).await?;
            let id = opt_str(&body, "user_id")?
                .ok_or_else(|| GatewayError::invalid_param("user_id", "`user_id` is required"))?;
            let a = state.accounts();
            let old = a
                .users
                .get(&id)
                .ok_or_else(|| GatewayError::NotFound(format!("User {id} not found")))?;
            let mut doc: UserDoc = merge(&old.doc, &body, FIELDS, IGNORED)?;
            doc.user_id = id.clone();
            if !a.update(&doc, &old).await.map_err(store_error)? {
                return Err(GatewayError::NotFound(format!("User {id} not found")));
            }
            if let Some(spend) = body.get("spend") {
                let spend = serde_json::from_value::<tollgate_core::Nanos>(spend.clone()).map_err(
                    |_| GatewayError::invalid_param("spend", "`spend` must be a number"),
                )?;
                a.set_spend(EntityKind::User, &id, spend)
                    .await
                    .map_err(store_error)?;
            }
            let e = a
                .users
                .get(&id)
                .ok_or_else(|| GatewayError::NotFound(format!("User {id} not found")))?;
            Ok(entry_json(&e))
        }
        .await,
    )
}

/// `POST /user/delete` with `user_ids`. Their keys are deleted with them.
pub async fn delete(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin("delete users")?;
            let body = body_object(req).await?;
            let ids = str_list(&body, "user_ids")?
                .ok_or_else(|| GatewayError::invalid_param("user_ids", "`user_ids` is required"))?;
            let (done, keys) =
                super::delete_with_keys(&state, EntityKind::User, &ids, |k| k.user_id.as_ref())
                    .await?;
            Ok(json!({ "deleted_users": done, "deleted_keys": keys }))
        }
        .await,
    )
}

/// `GET /user/list` (`role`, `page`, `page_size`).
pub async fn list(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    let q = query_map(&req);
    respond((|| {
        c.require_admin_reader("list users")?;
        let (page, size) = page_args(&q)?;
        let role = q.get("role").and_then(|v| v.as_str());
        let mut users = state.accounts().users.all();
        users.retain(|u| role.is_none_or(|r| u.doc.user_role.as_str() == r));
        users.sort_by(|a, b| (a.created_at, &a.doc.user_id).cmp(&(b.created_at, &b.doc.user_id)));
        let total = users.len() as i64;
        let items: Vec<Value> = users
            .iter()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .map(|u| entry_json(u))
            .collect();
        Ok(json!({
            "users": items,
            "total": total,
            "page": page,
            "page_size": size,
            "total_pages": (total + size - 1) / size,
        }))
    })())
}
