//! `/organization/new|info|list|update|delete`: organizations, the groups of teams that share models and a budget.

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value};
use tollgate_accounts::model::OrgDoc;
use tollgate_accounts::{Accounts, Entry};
use tollgate_core::{GatewayError, Nanos};
use tollgate_store::{EntityKind, StoreError};

use super::budgets::{budget_table, check_budget_ref};
use super::{
    Caller, body_object, entry_json, merge, new_id, opt_str, query_map, respond, store_error,
    str_list,
};
use crate::state::AppState;

/// What `/organization/new` and `/organization/update` accept besides `organization_id`.
const FIELDS: &[&str] = &[
    "organization_alias",
    "models",
    "budget_id",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "metadata",
    "blocked",
];

pub async fn new(State(state): State<AppState>, req: Request) -> Response {
    respond(create(&state, req).await)
}

pub async fn info(State(state): State<AppState>, req: Request) -> Response {
    respond(show(&state, &req))
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

fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound(format!(
        "Organization with organization_id={id} does not exist"
    ))
}

/// The organization as API JSON: its fields, `litellm_budget_table` and the teams in it.
fn org_json(accounts: &Accounts, e: &Entry<OrgDoc>) -> Value {
    let mut v = entry_json(e);
    let mut teams = accounts
        .teams
        .all()
        .into_iter()
        .filter(|t| t.doc.organization_id.as_deref() == Some(e.doc.organization_id.as_str()))
        .collect::<Vec<_>>();
    teams.sort_by(|a, b| (a.created_at, &a.doc.team_id).cmp(&(b.created_at, &b.doc.team_id)));
    if let Value::Object(m) = &mut v {
        m.insert(
            "litellm_budget_table".into(),
            budget_table(accounts, e.doc.budget_id.as_deref(), &e.doc.limits),
        );
        m.insert(
            "teams".into(),
            Value::Array(teams.iter().map(|t| entry_json(t.as_ref())).collect()),
        );
    }
    v
}

fn validate(accounts: &Accounts, doc: &OrgDoc) -> Result<(), GatewayError> {
    if doc.organization_alias.as_deref().is_none_or(str::is_empty) {
        return Err(GatewayError::invalid_param(
            "organization_alias",
            "`organization_alias` is required",
        ));
    }
    check_budget_ref(accounts, doc.budget_id.as_deref())
}

/// `spend` (USD) as given to `/organization/update`.
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

async fn create(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("create organizations")?;
    let mut body = body_object(req).await?;
    let id = match opt_str(&body, "organization_id")? {
        Some(s) if !s.is_empty() => s,
        _ => new_id(),
    };
    body.remove("organization_id");
    let accounts = state.accounts();
    let base = OrgDoc {
        organization_id: id.clone(),
        ..OrgDoc::default()
    };
    let doc = merge(&base, &body, FIELDS, &[])?;
    validate(accounts, &doc)?;
    accounts.create(&doc).await.map_err(|e| match e {
        StoreError::Conflict => GatewayError::invalid_param(
            "organization_id",
            format!("Organization with organization_id={id} already exists"),
        ),
        other => store_error(other),
    })?;
    let e = accounts.orgs.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(org_json(accounts, &e))
}

fn show(state: &AppState, req: &Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, req);
    caller.require_admin_reader("view organizations")?;
    let q = query_map(req);
    let id = match opt_str(&q, "organization_id")? {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(GatewayError::invalid_param(
                "organization_id",
                "`organization_id` is required: /organization/info?organization_id=<id>",
            ));
        }
    };
    let accounts = state.accounts();
    let e = accounts.orgs.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(org_json(accounts, &e))
}

fn list_all(state: &AppState, req: &Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, req);
    caller.require_admin_reader("list organizations")?;
    let accounts = state.accounts();
    let mut all = accounts.orgs.all();
    all.sort_by(|a, b| {
        (a.created_at, &a.doc.organization_id).cmp(&(b.created_at, &b.doc.organization_id))
    });
    Ok(Value::Array(
        all.iter().map(|e| org_json(accounts, e)).collect(),
    ))
}

async fn change(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("update organizations")?;
    let mut body = body_object(req).await?;
    let id = match opt_str(&body, "organization_id")? {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(GatewayError::invalid_param(
                "organization_id",
                "`organization_id` is required",
            ));
        }
    };
    body.remove("organization_id");
    let spend = spend_field(&mut body)?;
    let accounts = state.accounts();
    let old = accounts.orgs.get(&id).ok_or_else(|| not_found(&id))?;
    let doc = merge(&old.doc, &body, FIELDS, &[])?;
    validate(accounts, &doc)?;
    if doc != old.doc && !accounts.update(&doc, &old).await.map_err(store_error)? {
        return Err(not_found(&id));
    }
    if let Some(s) = spend {
        accounts
            .set_spend(EntityKind::Organization, &id, s)
            .await
            .map_err(store_error)?;
    }
    let e = accounts.orgs.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(org_json(accounts, &e))
}

async fn remove(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin("delete organizations")?;
    let body = body_object(req).await?;
    if let Some(k) = body.keys().find(|k| k.as_str() != "organization_ids") {
        return Err(GatewayError::invalid_param(
            k,
            format!("Unknown field `{k}`. Accepted fields: organization_ids"),
        ));
    }
    let mut ids = str_list(&body, "organization_ids")?.unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    ids.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    if ids.is_empty() {
        return Err(GatewayError::invalid_param(
            "organization_ids",
            "`organization_ids` (a list of organization ids) is required",
        ));
    }
    let accounts = state.accounts();
    let mut rows = Vec::with_capacity(ids.len());
    for id in &ids {
        let e = accounts.orgs.get(id).ok_or_else(|| not_found(id))?;
        let teams: Vec<String> = accounts
            .teams
            .all()
            .iter()
            .filter(|t| t.doc.organization_id.as_deref() == Some(id.as_str()))
            .map(|t| t.doc.team_id.clone())
            .collect();
        if !teams.is_empty() {
            return Err(GatewayError::invalid_param(
                "organization_ids",
                format!(
                    "Organization {id} still has teams [{}]; delete them or move them to another organization first",
                    teams.join(", ")
                ),
            ));
        }
        rows.push((id.clone(), org_json(accounts, &e)));
    }
    let done = accounts
        .delete(EntityKind::Organization, &ids)
        .await
        .map_err(store_error)?;
    let deleted: Vec<Value> = rows
        .into_iter()
        .filter(|(id, _)| done.contains(id))
        .map(|(_, v)| v)
        .collect();
    let mut out = Map::new();
    out.insert("deleted_organizations".into(), Value::Array(deleted));
    Ok(Value::Object(out))
}
