//! The LiteLLM management API (`/key/*`, `/user/*`, `/team/*`, `/organization/*`, `/budget/*`,
//! `/customer/*`, `/spend/*`, `/global/spend/*`): shared request parsing, authorization and JSON shaping.
//! Writes go to the database first, then to the in-memory view (`tollgate_accounts`).

pub mod budgets;
pub mod customers;
pub mod keys;
pub mod orgs;
pub mod spend;
pub mod teams;
pub mod users;

use axum::Json;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tollgate_accounts::model::Role;
use tollgate_accounts::{Accounts, Doc, Entry, Principal, duration};
use tollgate_core::GatewayError;
use tollgate_store::StoreError;

use crate::error::ApiError;
use crate::extract::read_body;
use crate::state::AppState;

/// Management bodies are small; this bounds what a bad client can make us buffer.
const BODY_LIMIT: usize = 1024 * 1024;

/// Who is calling a management route, with their proxy role.
pub struct Caller {
    pub principal: Principal,
    pub role: Role,
    /// The calling key's user, if any.
    pub user_id: Option<String>,
    /// The calling key's hash, if a virtual key.
    pub key_hash: Option<String>,
}

impl Caller {
    pub fn of(state: &AppState, req: &Request) -> Caller {
        let principal = req
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Open);
        Caller::from_principal(state.accounts(), principal)
    }

    pub fn from_principal(accounts: &Accounts, principal: Principal) -> Caller {
        let role = accounts.role(&principal);
        let (user_id, key_hash) = match &principal {
            Principal::Key(k) => (k.doc.user_id.clone(), Some(k.doc.token.clone())),
            Principal::Jwt(j) => (j.user_id.clone(), None),
            Principal::Master | Principal::Open => (None, None),
        };
        Caller {
            principal,
            role,
            user_id,
            key_hash,
        }
    }

    /// Proxy admins only (writes to everything).
    pub fn require_admin(&self, what: &str) -> Result<(), GatewayError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(forbidden(what, "proxy_admin"))
        }
    }

    /// Proxy admins and admin viewers (reads of everything).
    pub fn require_admin_reader(&self, what: &str) -> Result<(), GatewayError> {
        if self.role.is_admin_reader() {
            Ok(())
        } else {
            Err(forbidden(what, "proxy_admin or proxy_admin_viewer"))
        }
    }

    /// Is this caller `user_id`?
    pub fn is_user(&self, user_id: Option<&str>) -> bool {
        user_id.is_some() && self.user_id.as_deref() == user_id
    }
}

/// The 403 for a role that may not do `what`.
pub fn forbidden(what: &str, needs: &str) -> GatewayError {
    GatewayError::Forbidden(format!(
        "Only {needs} can {what}. Your role is not allowed to do this."
    ))
}

/// A database failure as the client sees it.
pub fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict => GatewayError::invalid("An object with this id already exists"),
        StoreError::Connect { .. } | StoreError::Unavailable(_) => {
            GatewayError::Unavailable("The database is unavailable; try again".into())
        }
        other => GatewayError::Internal(other.to_string()),
    }
}

/// Read a JSON object body (empty body = `{}`).
pub async fn body_object(req: Request) -> Result<Map<String, Value>, GatewayError> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(&parts.headers, body, BODY_LIMIT).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GatewayError::invalid(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(GatewayError::MalformedJson(e.to_string())),
    }
}

/// The query string as a map (`?key=...&team_id=...`).
pub fn query_map(req: &Request) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(q) = req.uri().query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(percent_decode(k), Value::String(percent_decode(v)));
        }
    }
    m
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A string field (`null`/absent = `None`); another type is a 400 naming the field.
pub fn opt_str(m: &Map<String, Value>, field: &str) -> Result<Option<String>, GatewayError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be a string"),
        )),
    }
}

/// A list of strings (a single string counts as a list of one).
pub fn str_list(m: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, GatewayError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                GatewayError::invalid_param(field, format!("`{field}` must be a list of strings"))
            }),
        Some(_) => Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be a list of strings"),
        )),
    }
}

/// Validate the fields every budgeted entity shares (durations parse, roles exist) before merging.
fn validate_common(patch: &Map<String, Value>) -> Result<(), GatewayError> {
    if let Some(d) = opt_str(patch, "budget_duration")?
        && duration::parse(&d).is_none()
    {
        return Err(GatewayError::invalid_param(
            "budget_duration",
            format!(
                "`budget_duration` {d:?} is not a duration like \"30s\", \"1h\", \"1d\", \"7d\", \"30d\" or \"1mo\""
            ),
        ));
    }
    if let Some(r) = opt_str(patch, "user_role")?
        && Role::parse(&r).is_none()
    {
        return Err(GatewayError::invalid_param(
            "user_role",
            format!(
                "`user_role` {r:?} is not one of proxy_admin, proxy_admin_viewer, internal_user, internal_user_viewer"
            ),
        ));
    }
    Ok(())
}

/// Apply the `patch` fields listed in `allowed` to `doc` and check the result's types: the one way every
/// create and update builds its document. Fields in `ignored` (LiteLLM options with no effect here, such as
/// `send_invite_email`) are skipped; any other field is a 400 that lists what is accepted.
pub fn merge<D: Serialize + DeserializeOwned>(
    doc: &D,
    patch: &Map<String, Value>,
    allowed: &[&str],
    ignored: &[&str],
) -> Result<D, GatewayError> {
    validate_common(patch)?;
    let mut base = match serde_json::to_value(doc) {
        Ok(Value::Object(m)) => m,
        _ => return Err(GatewayError::Internal("document is not an object".into())),
    };
    for (k, v) in patch {
        if allowed.contains(&k.as_str()) {
            if v.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), v.clone());
            }
        } else if !ignored.contains(&k.as_str()) {
            return Err(GatewayError::invalid_param(
                k,
                format!(
                    "Unknown field `{k}`. Accepted fields: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    serde_json::from_value(Value::Object(base))
        .map_err(|e| GatewayError::invalid(format!("Invalid field value: {e}")))
}

/// The document as API JSON: its fields, plus `spend`, `created_at`, `updated_at` and the next budget reset.
pub fn entry_json<D: Doc>(e: &Entry<D>) -> Value {
    let mut v = serde_json::to_value(&e.doc).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("spend".into(), Value::from(e.counters.spend().to_usd_f64()));
        m.insert("created_at".into(), duration::rfc3339(e.created_at).into());
        m.insert("updated_at".into(), duration::rfc3339(e.updated_at).into());
        m.insert(
            "budget_reset_at".into(),
            e.budget_reset_at
                .map(duration::rfc3339)
                .map_or(Value::Null, Value::from),
        );
    }
    v
}

/// A handler result as a response.
pub fn respond(r: Result<Value, GatewayError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// Save a changed document (database, then memory) and return its entry as it is now; 404 naming `what`
/// when it no longer exists.
pub async fn save<D: Doc>(
    state: &AppState,
    table: &tollgate_accounts::Table<D>,
    old: &Entry<D>,
    doc: &D,
    what: &str,
) -> Result<std::sync::Arc<Entry<D>>, GatewayError> {
    let gone = || GatewayError::NotFound(format!("{what} not found"));
    if !state
        .accounts()
        .update(doc, old)
        .await
        .map_err(store_error)?
    {
        return Err(gone());
    }
    table.get(doc.id()).ok_or_else(gone)
}

/// Delete entities of `kind` together with the keys that belong to them (`owner` names a key's owner
/// field): the keys first, so none outlives its owner. Returns the deleted ids and how many keys went.
pub async fn delete_with_keys(
    state: &AppState,
    kind: tollgate_store::EntityKind,
    ids: &[String],
    owner: fn(&tollgate_accounts::model::KeyDoc) -> Option<&String>,
) -> Result<(Vec<String>, usize), GatewayError> {
    let a = state.accounts();
    let keys: Vec<String> = a
        .keys
        .all()
        .into_iter()
        .filter(|k| owner(&k.doc).is_some_and(|o| ids.contains(o)))
        .map(|k| k.doc.token.clone())
        .collect();
    a.delete(tollgate_store::EntityKind::Key, &keys)
        .await
        .map_err(store_error)?;
    let done = a.delete(kind, ids).await.map_err(store_error)?;
    Ok((done, keys.len()))
}

/// A new id for an entity that was not given one (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Page arguments (`page` from 1, `size`/`page_size`) from a query map.
pub fn page_args(q: &Map<String, Value>) -> Result<(i64, i64), GatewayError> {
    let num = |k: &str| -> Result<Option<i64>, GatewayError> {
        match q.get(k).and_then(|v| v.as_str()) {
            None => Ok(None),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(Some)
                .ok_or_else(|| {
                    GatewayError::invalid_param(k, format!("`{k}` must be a positive integer"))
                }),
        }
    };
    let page = num("page")?.unwrap_or(1);
    let size = num("size")?.or(num("page_size")?).unwrap_or(100).min(1000);
    Ok((page, size))
}
