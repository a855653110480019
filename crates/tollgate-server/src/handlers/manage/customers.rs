//! `/customer/*` (alias `/end_user/*`): end users, the `user` field of requests — create, show, list, update, delete, block and unblock.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value};
use tollgate_accounts::model::EndUserDoc;
use tollgate_accounts::{Accounts, Entry};
use tollgate_core::{GatewayError, Nanos};
use tollgate_store::{EntityKind, ListFilter, StoreError};

use super::budgets::{budget_table, check_budget_ref};
use super::{
    Caller, body_object, entry_json, merge, opt_str, query_map, respond, store_error, str_list,
};
use crate::state::AppState;

/// What `/customer/new` and `/customer/update` accept besides `user_id` and `spend`.
const FIELDS: &[&str] = &[
    "alias",
    "blocked",
    "max_budget",
    "budget_id",
    "allowed_model_region",
    "default_model",
    "metadata",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "budget_duration",
    "soft_budget",
];

pub async fn new(State(state): State<AppState>, req: Request) -> Response {
    respond(create(&state, req).await)
}

pub async fn info(State(state): State<AppState>, req: Request) -> Response {
    respond(show(&state, req).await)
}

pub async fn list(State(state): State<AppState>, req: Request) -> Response {
    respond(list_all(&state, req).await)
}

pub async fn update(State(state): State<AppState>, req: Request) -> Response {
    respond(change(&state, req).await)
}

pub async fn delete(State(state): State<AppState>, req: Request) -> Response {
    respond(remove(&state, req).await)
}

pub async fn block(State(state): State<AppState>, req: Request) -> Response {
    respond(set_blocked(&state, req, true).await)
}

pub async fn unblock(State(state): State<AppState>, req: Request) -> Response {
    respond(set_blocked(&state, req, false).await)
}

type EndUser = Arc<Entry<EndUserDoc>>;

fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound(format!("End User Id={id} does not exist in db"))
}

fn already_exists(id: &str) -> GatewayError {
    GatewayError::invalid_param(
        "user_id",
        format!("Customer already exists, passed user_id={id}. Please pass a new user_id."),
    )
}

/// The end user `id`: from memory, else from the database (the spend writer creates end users on their
/// first request, and another instance may have created one since the last refresh).
async fn lookup(accounts: &Accounts, id: &str) -> Result<Option<EndUser>, GatewayError> {
    if let Some(e) = accounts.end_users.get(id) {
        return Ok(Some(e));
    }
    // A first request's row may still be buffered in the ledger: write it, so the end user exists.
    let _ = accounts.flush().await;
    accounts
        .refetch(EntityKind::EndUser, id)
        .await
        .map_err(store_error)?;
    Ok(accounts.end_users.get(id))
}

/// The end user's document with its id filled in (rows the spend writer created have an empty body).
fn doc_of(id: &str, e: &Entry<EndUserDoc>) -> EndUserDoc {
    let mut d = e.doc.clone();
    if d.user_id.is_empty() {
        d.user_id = id.to_string();
    }
    d
}

/// The end user as API JSON, with `user_id` always set and LiteLLM's `litellm_budget_table`.
fn customer_json(accounts: &Accounts, id: &str, e: &Entry<EndUserDoc>) -> Value {
    let mut v = entry_json(e);
    if let Value::Object(m) = &mut v {
        m.insert("user_id".into(), Value::from(id));
        m.insert(
            "litellm_budget_table".into(),
            budget_table(accounts, e.doc.budget_id.as_deref(), &e.doc.limits),
        );
    }
    v
}

fn required_user_id(m: &Map<String, Value>) -> Result<String, GatewayError> {
    match opt_str(m, "user_id")? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(GatewayError::invalid_param(
            "user_id",
            "`user_id` (the end user id, as sent in the `user` field of requests) is required",
        )),
    }
}

/// `user_ids` of delete/block/unblock: required, deduplicated; no other field.
fn user_ids(m: &Map<String, Value>) -> Result<Vec<String>, GatewayError> {
    if let Some(k) = m.keys().find(|k| k.as_str() != "user_ids") {
        return Err(GatewayError::invalid_param(
            k,
            format!("Unknown field `{k}`. Accepted fields: user_ids"),
        ));
    }
    let mut ids = str_list(m, "user_ids")?.unwrap_or_default();
    let mut seen = HashSet::new();
    ids.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    if ids.is_empty() {
        return Err(GatewayError::invalid_param(
            "user_ids",
            "`user_ids` (a list of end user ids) is required",
        ));
    }
    Ok(ids)
}

/// `spend` (USD): the end user's initial or corrected spend.
fn spend_field(m: &mut Map<String, Value>) -> Result<Option<Nanos>, GatewayError> {
    match m.remove("spend") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value::<Nanos>(v)
            .ok()
            .filter(|n| *n >= Nanos::ZERO)
            .map(Some)
            .ok_or_else(|| {
                GatewayError::invalid_param("spend", "`spend` must be a non-negative amount in USD")
            }),
    }
}

/// A patch may link a budget or set an inline `max_budget`, not both (as in LiteLLM).
fn check_patch(patch: &Map<String, Value>) -> Result<(), GatewayError> {
    let given = |k: &str| patch.get(k).is_some_and(|v| !v.is_null());
    if given("budget_id") && given("max_budget") {
        return Err(GatewayError::invalid_param(
            "max_budget",
            "Pass either `budget_id` (an existing budget) or `max_budget`, not both",
        ));
    }
    Ok(())
}

fn validate(accounts: &Accounts, doc: &EndUserDoc) -> Result<(), GatewayError> {
    if let Some(r) = doc.allowed_model_region.as_deref()
        && !matches!(r, "eu" | "us")
    {
        return Err(GatewayError::invalid_param(
            "allowed_model_region",
            format!("`allowed_model_region` {r:?} must be \"eu\" or \"us\""),
        ));
    }
    check_budget_ref(accounts, doc.budget_id.as_deref())
}

async fn apply_spend(
    accounts: &Accounts,
    id: &str,
    spend: Option<Nanos>,
) -> Result<(), GatewayError> {
    if let Some(s) = spend {
        accounts
            .set_spend(EntityKind::EndUser, id, s)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// Replace an end user's document; 404 if it vanished meanwhile.
async fn replace(
    accounts: &Accounts,
    doc: &EndUserDoc,
    old: &Entry<EndUserDoc>,
) -> Result<(), GatewayError> {
    if !accounts.update(doc, old).await.map_err(store_error)? {
        return Err(not_found(&doc.user_id));
    }
    Ok(())
}

/// Create `doc`, or fill in the row the spend writer made for an end user who already sent requests.
async fn create_or_adopt(accounts: &Accounts, doc: &EndUserDoc) -> Result<(), GatewayError> {
    let id = doc.user_id.as_str();
    match accounts.create(doc).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict) => {
            accounts
                .refetch(EntityKind::EndUser, id)
                .await
                .map_err(store_error)?;
            match accounts.end_users.get(id) {
                Some(old) if old.doc.user_id.is_empty() => replace(accounts, doc, &old).await,
                _ => Err(already_exists(id)),
            }
        }
        Err(e) => Err(store_error(e)),
    }
}

async fn create(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("create customers")?;
    let mut body = body_object(req).await?;
    let id = required_user_id(&body)?;
    body.remove("user_id");
    let spend = spend_field(&mut body)?;
    check_patch(&body)?;
    let accounts = state.accounts();
    let base = EndUserDoc {
        user_id: id.clone(),
        ..EndUserDoc::default()
    };
    let doc = merge(&base, &body, FIELDS, &[])?;
    validate(accounts, &doc)?;
    // Spend still buffered in the ledger is written first, so it shows in the answer.
    let _ = accounts.flush().await;
    create_or_adopt(accounts, &doc).await?;
    apply_spend(accounts, &id, spend).await?;
    let e = accounts.end_users.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(customer_json(accounts, &id, &e))
}

async fn show(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("view customers")?;
    let q = query_map(&req);
    let id = match opt_str(&q, "end_user_id")?.or(opt_str(&q, "user_id")?) {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(GatewayError::invalid_param(
                "end_user_id",
                "`end_user_id` is required: /customer/info?end_user_id=<id>",
            ));
        }
    };
    let accounts = state.accounts();
    let e = lookup(accounts, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(customer_json(accounts, &id, &e))
}

async fn list_all(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("list customers")?;
    let accounts = state.accounts();
    // From the database: rows the spend writer created carry their id only there (their body is `{}`).
    let _ = accounts.flush().await;
    let rows = accounts
        .store
        .list(EntityKind::EndUser, &ListFilter::default())
        .await
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let e = match accounts.end_users.get(&row.id) {
            Some(e) => Some(e),
            None => accounts.end_users.apply(row),
        };
        if let Some(e) = e {
            out.push(customer_json(accounts, &row.id, &e));
        }
    }
    Ok(Value::Array(out))
}

async fn change(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("update customers")?;
    let mut body = body_object(req).await?;
    let id = required_user_id(&body)?;
    body.remove("user_id");
    let spend = spend_field(&mut body)?;
    check_patch(&body)?;
    let accounts = state.accounts();
    let old = lookup(accounts, &id).await?.ok_or_else(|| not_found(&id))?;
    let doc = merge(&doc_of(&id, &old), &body, FIELDS, &[])?;
    validate(accounts, &doc)?;
    if doc != old.doc {
        replace(accounts, &doc, &old).await?;
    }
    apply_spend(accounts, &id, spend).await?;
    let e = accounts.end_users.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(customer_json(accounts, &id, &e))
}

async fn remove(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("delete customers")?;
    let body = body_object(req).await?;
    let ids = user_ids(&body)?;
    let accounts = state.accounts();
    let mut missing = Vec::new();
    for id in &ids {
        if lookup(accounts, id).await?.is_none() {
            missing.push(id.as_str());
        }
    }
    if !missing.is_empty() {
        return Err(GatewayError::NotFound(format!(
            "End User Id(s)={} do not exist in db",
            missing.join(", ")
        )));
    }
    let done = accounts
        .delete(EntityKind::EndUser, &ids)
        .await
        .map_err(store_error)?;
    let mut out = Map::new();
    out.insert("deleted_customers".into(), Value::from(done.len()));
    out.insert(
        "message".into(),
        Value::from(format!(
            "Successfully deleted customers with ids: {:?}",
            done
        )),
    );
    Ok(Value::Object(out))
}

/// Block (creating unknown end users, so they are refused from their first request, as in LiteLLM) or
/// unblock (404 for unknown ones, checked before anything changes). Effective at once on this instance.
async fn set_blocked(state: &AppState, req: Request, blocked: bool) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin(if blocked {
        "block customers"
    } else {
        "unblock customers"
    })?;
    let body = body_object(req).await?;
    let ids = user_ids(&body)?;
    let accounts = state.accounts();
    let mut found = Vec::with_capacity(ids.len());
    for id in &ids {
        let e = lookup(accounts, id).await?;
        if e.is_none() && !blocked {
            return Err(not_found(id));
        }
        found.push((id, e));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (id, e) in found {
        match e {
            Some(old) => {
                let mut doc = doc_of(id, &old);
                doc.blocked = blocked;
                if doc != old.doc {
                    replace(accounts, &doc, &old).await?;
                }
            }
            None => {
                let doc = EndUserDoc {
                    user_id: id.clone(),
                    blocked,
                    ..EndUserDoc::default()
                };
                match accounts.create(&doc).await {
                    Ok(_) => {}
                    // Created meanwhile (a first request, another instance): block what is there now.
                    Err(StoreError::Conflict) => {
                        accounts
                            .refetch(EntityKind::EndUser, id)
                            .await
                            .map_err(store_error)?;
                        let old = accounts.end_users.get(id).ok_or_else(|| not_found(id))?;
                        let mut doc = doc_of(id, &old);
                        doc.blocked = blocked;
                        replace(accounts, &doc, &old).await?;
                    }
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
        let e = accounts.end_users.get(id).ok_or_else(|| not_found(id))?;
        out.push(customer_json(accounts, id, &e));
    }
    let mut m = Map::new();
    m.insert(
        if blocked {
            "blocked_users"
        } else {
            "unblocked_users"
        }
        .into(),
        Value::Array(out),
    );
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn budget_id_and_max_budget_exclude_each_other() {
        assert!(check_patch(&obj(json!({"budget_id": "b", "max_budget": 1.0}))).is_err());
        assert!(check_patch(&obj(json!({"budget_id": "b", "max_budget": null}))).is_ok());
        assert!(check_patch(&obj(json!({"max_budget": 1.0}))).is_ok());
    }

    #[test]
    fn user_ids_are_required_and_deduplicated() {
        assert_eq!(
            user_ids(&obj(json!({"user_ids": ["a", "b", "a", ""]}))).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(user_ids(&obj(json!({"user_ids": "a"}))).unwrap(), vec!["a"]);
        assert!(user_ids(&obj(json!({}))).is_err());
        assert!(user_ids(&obj(json!({"user_ids": []}))).is_err());
        assert!(user_ids(&obj(json!({"user_ids": ["a"], "x": 1}))).is_err());
    }

    #[test]
    fn spend_must_be_a_non_negative_amount() {
        let mut m = obj(json!({"spend": 1.25}));
        assert_eq!(spend_field(&mut m).unwrap(), Some(Nanos(1_250_000_000)));
        assert!(m.is_empty());
        assert!(spend_field(&mut obj(json!({"spend": -1}))).is_err());
        assert!(spend_field(&mut obj(json!({"spend": "x"}))).is_err());
        assert_eq!(spend_field(&mut obj(json!({}))).unwrap(), None);
    }
}
