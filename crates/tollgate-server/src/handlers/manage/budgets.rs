//! `/budget/new|info|list|update|delete`: reusable budgets that end users, organizations and keys reference by `budget_id`.

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value};
use tollgate_accounts::model::{BudgetDoc, Limits};
use tollgate_accounts::{Accounts, Entry};
use tollgate_core::GatewayError;
use tollgate_store::{EntityKind, StoreError};

use super::{
    Caller, body_object, entry_json, merge, new_id, opt_str, query_map, respond, store_error,
    str_list,
};
use crate::state::AppState;

/// What `/budget/new` and `/budget/update` accept besides `budget_id`.
const FIELDS: &[&str] = &[
    "max_budget",
    "soft_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "model_max_budget",
];

pub async fn new(State(state): State<AppState>, req: Request) -> Response {
    respond(create(&state, req).await)
}

pub async fn info(State(state): State<AppState>, req: Request) -> Response {
    respond(show(&state, req).await)
}

pub async fn list(State(state): State<AppState>, req: Request) -> Response {
    respond(list_all(&state, &req))
}

pub async fn update(State(state): State<AppState>, req: Request) -> Response {
    respond(change(&state, req).await)
}

pub async fn delete(State(state): State<AppState>, req: Request) -> Response {
    respond(remove(&state, req).await)
}

/// 404 for an unknown budget.
fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound(format!("Budget with budget_id={id} does not exist"))
}

/// A referenced budget must exist (400 naming the field otherwise).
pub(super) fn check_budget_ref(
    accounts: &Accounts,
    budget_id: Option<&str>,
) -> Result<(), GatewayError> {
    match budget_id {
        Some(b) if accounts.budgets.get(b).is_none() => Err(GatewayError::invalid_param(
            "budget_id",
            format!("Budget with budget_id={b} does not exist. Create it with /budget/new first"),
        )),
        _ => Ok(()),
    }
}

/// LiteLLM's nested `litellm_budget_table` of an entity: the referenced budget with the entity's own limits
/// over it (what admission enforces), or the own limits alone; `null` when neither sets anything.
pub(super) fn budget_table(accounts: &Accounts, budget_id: Option<&str>, own: &Limits) -> Value {
    let budget = budget_id.and_then(|b| accounts.budgets.get(b));
    let base = budget.as_ref().map(|b| &b.doc.limits);
    let eff = Limits {
        max_budget: own.max_budget.or(base.and_then(|b| b.max_budget)),
        soft_budget: own.soft_budget.or(base.and_then(|b| b.soft_budget)),
        budget_duration: own
            .budget_duration
            .clone()
            .or_else(|| base.and_then(|b| b.budget_duration.clone())),
        rpm_limit: own.rpm_limit.or(base.and_then(|b| b.rpm_limit)),
        tpm_limit: own.tpm_limit.or(base.and_then(|b| b.tpm_limit)),
        max_parallel_requests: own
            .max_parallel_requests
            .or(base.and_then(|b| b.max_parallel_requests)),
    };
    if budget.is_none() && eff == Limits::default() {
        return Value::Null;
    }
    let mut v = serde_json::to_value(&eff).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for f in FIELDS.iter().filter(|f| **f != "model_max_budget") {
            m.entry(*f).or_insert(Value::Null);
        }
        m.insert(
            "budget_id".into(),
            budget
                .as_ref()
                .map_or(Value::Null, |b| b.doc.budget_id.clone().into()),
        );
        m.insert(
            "model_max_budget".into(),
            budget.as_ref().map_or(Value::Object(Map::new()), |b| {
                Value::Object(b.doc.model_max_budget.clone())
            }),
        );
    }
    v
}

/// `model_max_budget` values must be amounts (`0.5`) or `{"budget_limit": 0.5, ...}`.
fn check_model_max_budget(doc: &BudgetDoc) -> Result<(), GatewayError> {
    for model in doc.model_max_budget.keys() {
        if tollgate_accounts::model_budget(&doc.model_max_budget, model).is_none() {
            return Err(GatewayError::invalid_param(
                "model_max_budget",
                format!(
                    "`model_max_budget` entry for {model:?} must be an amount in USD or {{\"budget_limit\": <USD>, \"time_period\": \"1d\"}}"
                ),
            ));
        }
    }
    Ok(())
}

fn budget_json(e: &Entry<BudgetDoc>) -> Value {
    entry_json(e)
}

fn required_id(m: &Map<String, Value>, field: &str) -> Result<String, GatewayError> {
    match opt_str(m, field)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(GatewayError::invalid_param(
            field,
            format!("`{field}` is required"),
        )),
    }
}

async fn create(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("create budgets")?;
    let mut body = body_object(req).await?;
    let id = match opt_str(&body, "budget_id")? {
        Some(s) if !s.is_empty() => s,
        _ => new_id(),
    };
    body.remove("budget_id");
    let accounts = state.accounts();
    let base = BudgetDoc {
        budget_id: id.clone(),
        created_by: caller.user_id.clone(),
        ..BudgetDoc::default()
    };
    let doc = merge(&base, &body, FIELDS, &[])?;
    check_model_max_budget(&doc)?;
    accounts.create(&doc).await.map_err(|e| match e {
        StoreError::Conflict => GatewayError::invalid_param(
            "budget_id",
            format!("Budget with budget_id={id} already exists"),
        ),
        other => store_error(other),
    })?;
    let e = accounts
        .budgets
        .get(&id)
        .ok_or_else(|| GatewayError::Internal(format!("budget {id} vanished after create")))?;
    Ok(budget_json(&e))
}

/// The ids asked for: `budgets` (a list, or a comma-separated query value) and/or `budget_id`.
fn requested_ids(m: &Map<String, Value>, from_query: bool) -> Result<Vec<String>, GatewayError> {
    let mut ids: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim();
        if !s.is_empty() && !ids.iter().any(|i| i == s) {
            ids.push(s.to_string());
        }
    };
    for v in str_list(m, "budgets")?.unwrap_or_default() {
        if from_query {
            v.split(',').for_each(&mut push);
        } else {
            push(&v);
        }
    }
    if let Some(b) = opt_str(m, "budget_id")? {
        push(&b);
    }
    Ok(ids)
}

async fn show(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("view budgets")?;
    let query = query_map(&req);
    let body = body_object(req).await?;
    let mut ids = requested_ids(&query, true)?;
    for id in requested_ids(&body, false)? {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(GatewayError::invalid_param(
            "budgets",
            "Specify the budgets to show: `{\"budgets\": [\"<budget_id>\", ...]}`",
        ));
    }
    let accounts = state.accounts();
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        let e = accounts.budgets.get(id).ok_or_else(|| not_found(id))?;
        out.push(budget_json(&e));
    }
    Ok(Value::Array(out))
}

fn list_all(state: &AppState, req: &Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, req);
    caller.require_admin_reader("list budgets")?;
    let mut all = state.accounts().budgets.all();
    all.sort_by(|a, b| (a.created_at, &a.doc.budget_id).cmp(&(b.created_at, &b.doc.budget_id)));
    Ok(Value::Array(all.iter().map(|e| budget_json(e)).collect()))
}

async fn change(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("update budgets")?;
    let mut body = body_object(req).await?;
    let id = required_id(&body, "budget_id")?;
    body.remove("budget_id");
    let accounts = state.accounts();
    let old = accounts.budgets.get(&id).ok_or_else(|| not_found(&id))?;
    let doc = merge(&old.doc, &body, FIELDS, &[])?;
    check_model_max_budget(&doc)?;
    if !accounts.update(&doc, &old).await.map_err(store_error)? {
        return Err(not_found(&id));
    }
    let e = accounts.budgets.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(budget_json(&e))
}

async fn remove(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("delete budgets")?;
    let body = body_object(req).await?;
    if let Some(k) = body
        .keys()
        .find(|k| !["id", "budget_id"].contains(&k.as_str()))
    {
        return Err(GatewayError::invalid_param(
            k,
            format!("Unknown field `{k}`. Accepted fields: id, budget_id"),
        ));
    }
    let id = match opt_str(&body, "id")? {
        Some(s) if !s.is_empty() => s,
        _ => required_id(&body, "budget_id").map_err(|_| {
            GatewayError::invalid_param("id", "`id` (the budget_id to delete) is required")
        })?,
    };
    let accounts = state.accounts();
    let e = accounts.budgets.get(&id).ok_or_else(|| not_found(&id))?;
    let users: Vec<String> = accounts
        .end_users
        .all()
        .iter()
        .filter(|u| u.doc.budget_id.as_deref() == Some(id.as_str()))
        .map(|u| u.doc.user_id.clone())
        .collect();
    let orgs: Vec<String> = accounts
        .orgs
        .all()
        .iter()
        .filter(|o| o.doc.budget_id.as_deref() == Some(id.as_str()))
        .map(|o| o.doc.organization_id.clone())
        .collect();
    let keys: Vec<String> = accounts
        .keys
        .all()
        .iter()
        .filter(|k| k.doc.budget_id.as_deref() == Some(id.as_str()))
        .map(|k| {
            k.doc
                .key_alias
                .clone()
                .unwrap_or_else(|| k.doc.key_name.clone())
        })
        .collect();
    if !users.is_empty() || !orgs.is_empty() || !keys.is_empty() {
        let mut uses = Vec::new();
        if !users.is_empty() {
            uses.push(format!("end users [{}]", users.join(", ")));
        }
        if !orgs.is_empty() {
            uses.push(format!("organizations [{}]", orgs.join(", ")));
        }
        if !keys.is_empty() {
            uses.push(format!("keys [{}]", keys.join(", ")));
        }
        return Err(GatewayError::invalid_param(
            "id",
            format!(
                "Budget {id} is still in use by {}; move them to another budget first",
                uses.join(" and ")
            ),
        ));
    }
    let json = budget_json(&e);
    let done = accounts
        .delete(EntityKind::Budget, std::slice::from_ref(&id))
        .await
        .map_err(store_error)?;
    if done.is_empty() {
        return Err(not_found(&id));
    }
    Ok(json)
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
    fn budget_ids_from_query_and_body() {
        let q = obj(json!({"budgets": "a,b, ,a", "budget_id": "c"}));
        assert_eq!(requested_ids(&q, true).unwrap(), vec!["a", "b", "c"]);
        let b = obj(json!({"budgets": ["x,y", "z"]}));
        assert_eq!(requested_ids(&b, false).unwrap(), vec!["x,y", "z"]);
        assert!(requested_ids(&obj(json!({"budgets": 3})), false).is_err());
        assert!(requested_ids(&obj(json!({})), false).unwrap().is_empty());
    }

    #[test]
    fn model_max_budget_is_checked() {
        let good = BudgetDoc {
            budget_id: "b".into(),
            model_max_budget: obj(
                json!({"gpt-4o": 1.5, "m": {"budget_limit": 0.5, "time_period": "1d"}}),
            ),
            ..BudgetDoc::default()
        };
        assert!(check_model_max_budget(&good).is_ok());
        let bad = BudgetDoc {
            budget_id: "b".into(),
            model_max_budget: obj(json!({"gpt-4o": "lots"})),
            ..BudgetDoc::default()
        };
        assert!(check_model_max_budget(&bad).is_err());
    }
}
