//! `/spend/logs` and `/global/spend/report|keys|teams|models`: per-request spend logs and the spend reports built from the daily aggregates.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value};
use tollgate_accounts::{Accounts, duration, secret};
use tollgate_core::{GatewayError, Nanos};
use tollgate_store::spend::{DailySpend, day_of};
use tollgate_store::{EntityKind, SpendLogFilter, SpendRow, now_ms};

use super::{Caller, forbidden, opt_str, query_map, respond, store_error};
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;
/// Reports cover the last 30 days through today unless told otherwise (LiteLLM's `Last30d*` views).
const DEFAULT_DAYS: i64 = 30;
/// Bound on `limit`.
const MAX_LIMIT: usize = 10_000;

pub async fn logs(State(state): State<AppState>, req: Request) -> Response {
    respond(spend_logs(&state, req).await)
}

pub async fn global_report(State(state): State<AppState>, req: Request) -> Response {
    respond(report(&state, req).await)
}

pub async fn global_keys(State(state): State<AppState>, req: Request) -> Response {
    respond(top_keys(&state, req).await)
}

pub async fn global_teams(State(state): State<AppState>, req: Request) -> Response {
    respond(teams(&state, req).await)
}

pub async fn global_models(State(state): State<AppState>, req: Request) -> Response {
    respond(top_models(&state, req).await)
}

// ----------------------------------------------------------------------------------------------------
// Query arguments

fn usd(nanos: i64) -> Value {
    Value::from(Nanos(nanos).to_usd_f64())
}

/// A non-empty query string value.
fn q_str(q: &Map<String, Value>, field: &str) -> Result<Option<String>, GatewayError> {
    Ok(opt_str(q, field)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// A date or date-time; a `+` offset that arrived unencoded (decoded as a space) is accepted.
fn parse_when(s: &str) -> Option<i64> {
    duration::parse_time(s).or_else(|| {
        let (date, rest) = (s.get(..11)?, s.get(11..)?);
        duration::parse_time(&format!("{date}{}", rest.replace(' ', "+")))
    })
}

/// `start_date`/`end_date` as ms. An end is inclusive: a date-only end covers that whole day.
fn time_arg(q: &Map<String, Value>, field: &str, end: bool) -> Result<Option<i64>, GatewayError> {
    let Some(s) = q_str(q, field)? else {
        return Ok(None);
    };
    let t = parse_when(&s).ok_or_else(|| {
        GatewayError::invalid_param(
            field,
            format!("`{field}` {s:?} is not a date (YYYY-MM-DD) or an ISO 8601 date-time"),
        )
    })?;
    Ok(Some(match (end, s.len() == 10) {
        (false, _) => t,
        (true, true) => t.saturating_add(DAY_MS),
        (true, false) => t.saturating_add(1),
    }))
}

/// The inclusive day range of a report: `start_date`..`end_date`, by default the last 30 days through today.
fn day_range(q: &Map<String, Value>) -> Result<(String, String), GatewayError> {
    let end = time_arg(q, "end_date", false)?.unwrap_or_else(now_ms);
    let start = time_arg(q, "start_date", false)?.unwrap_or(end - DEFAULT_DAYS * DAY_MS);
    let (start, end) = (day_of(start), day_of(end));
    if start > end {
        return Err(GatewayError::invalid_param(
            "start_date",
            format!("`start_date` {start} is after `end_date` {end}"),
        ));
    }
    Ok((start, end))
}

fn limit_arg(
    q: &Map<String, Value>,
    default: Option<usize>,
) -> Result<Option<usize>, GatewayError> {
    match q_str(q, "limit")? {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .map(|n| Some(n.min(MAX_LIMIT)))
            .ok_or_else(|| {
                GatewayError::invalid_param("limit", "`limit` must be a positive integer")
            }),
    }
}

fn bool_arg(q: &Map<String, Value>, field: &str) -> Result<Option<bool>, GatewayError> {
    match q_str(q, field)?.map(|s| s.to_ascii_lowercase()).as_deref() {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be true or false"),
        )),
    }
}

// ----------------------------------------------------------------------------------------------------
// /spend/logs

/// A caller who may not read everything sees their own rows only: their user's, else their key's.
fn own_rows_only(
    caller: &Caller,
    accounts: &Accounts,
    f: &mut SpendLogFilter,
) -> Result<(), GatewayError> {
    let denied = || {
        forbidden(
            "view other users' or keys' spend logs",
            "proxy_admin or proxy_admin_viewer",
        )
    };
    match (&caller.user_id, &caller.key_hash) {
        (Some(user), _) => {
            if f.user_id.as_ref().is_some_and(|u| u != user) {
                return Err(denied());
            }
            if let Some(k) = &f.api_key {
                let own = caller.key_hash.as_ref() == Some(k)
                    || accounts
                        .keys
                        .get(k)
                        .is_some_and(|e| e.doc.user_id.as_ref() == Some(user));
                if !own {
                    return Err(denied());
                }
            }
            f.user_id = Some(user.clone());
        }
        (None, Some(hash)) => {
            if f.user_id.is_some() || f.api_key.as_ref().is_some_and(|k| k != hash) {
                return Err(denied());
            }
            f.api_key = Some(hash.clone());
        }
        (None, None) => return Err(denied()),
    }
    Ok(())
}

/// A stored JSON text as a value of the expected shape (`fallback` when unreadable).
fn parsed(text: &str, want_object: bool) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) if want_object => v,
        Ok(v @ Value::Array(_)) if !want_object => v,
        _ if want_object => Value::Object(Map::new()),
        _ => Value::Array(Vec::new()),
    }
}

/// One spend row as a LiteLLM `LiteLLM_SpendLogs` object.
fn log_json(r: &SpendRow) -> Value {
    let mut metadata = parsed(&r.metadata, true);
    if let (Value::Object(m), Some(alias)) = (&mut metadata, &r.key_alias) {
        m.entry("user_api_key_alias")
            .or_insert_with(|| Value::from(alias.as_str()));
    }
    let ok = (200..300).contains(&r.status);
    let opt = |v: &Option<String>| v.as_deref().map_or(Value::Null, Value::from);
    let mut m = Map::new();
    m.insert("request_id".into(), r.request_id.as_str().into());
    m.insert("call_type".into(), r.call_type.as_str().into());
    m.insert("api_key".into(), r.api_key.as_str().into());
    m.insert("spend".into(), usd(r.spend));
    m.insert("total_tokens".into(), r.total_tokens.into());
    m.insert("prompt_tokens".into(), r.prompt_tokens.into());
    m.insert("completion_tokens".into(), r.completion_tokens.into());
    m.insert("startTime".into(), duration::rfc3339(r.start_time).into());
    m.insert("endTime".into(), duration::rfc3339(r.end_time).into());
    m.insert("model".into(), r.model.as_str().into());
    m.insert("model_group".into(), r.model_group.as_str().into());
    m.insert("model_id".into(), r.deployment_id.as_str().into());
    m.insert("custom_llm_provider".into(), r.provider.as_str().into());
    // LiteLLM writes "" for a request without a user or end user.
    m.insert("user".into(), r.user_id.as_deref().unwrap_or("").into());
    m.insert(
        "end_user".into(),
        r.end_user.as_deref().unwrap_or("").into(),
    );
    m.insert("team_id".into(), opt(&r.team_id));
    m.insert("organization_id".into(), opt(&r.organization_id));
    m.insert("metadata".into(), metadata);
    m.insert("request_tags".into(), parsed(&r.tags, false));
    m.insert(
        "status".into(),
        if ok { "success" } else { "failure" }.into(),
    );
    m.insert("status_code".into(), r.status.into());
    m.insert("cache_hit".into(), false.into());
    m.insert("stream".into(), r.stream.into());
    Value::Object(m)
}

/// LiteLLM's `summarize=true` shape: per day, total spend, spend per key (as top-level fields), per user
/// and per model.
fn summarize_logs(rows: &[SpendRow]) -> Value {
    #[derive(Default)]
    struct Day<'a> {
        spend: i64,
        keys: BTreeMap<&'a str, i64>,
        users: BTreeMap<&'a str, i64>,
        models: BTreeMap<&'a str, i64>,
    }
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for r in rows {
        let d = days.entry(day_of(r.start_time)).or_default();
        d.spend = d.spend.saturating_add(r.spend);
        if !r.api_key.is_empty() {
            let k = d.keys.entry(&r.api_key).or_default();
            *k = k.saturating_add(r.spend);
        }
        if let Some(u) = r.user_id.as_deref() {
            let k = d.users.entry(u).or_default();
            *k = k.saturating_add(r.spend);
        }
        let k = d.models.entry(&r.model).or_default();
        *k = k.saturating_add(r.spend);
    }
    let amounts = |m: &BTreeMap<&str, i64>| {
        Value::Object(m.iter().map(|(k, v)| ((*k).to_string(), usd(*v))).collect())
    };
    let out = days
        .iter()
        .map(|(day, d)| {
            let mut m = Map::new();
            for (k, v) in &d.keys {
                m.insert((*k).to_string(), usd(*v));
            }
            m.insert("startTime".into(), day.as_str().into());
            m.insert("spend".into(), usd(d.spend));
            m.insert("users".into(), amounts(&d.users));
            m.insert("models".into(), amounts(&d.models));
            Value::Object(m)
        })
        .collect();
    Value::Array(out)
}

async fn spend_logs(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    let q = query_map(&req);
    let accounts = state.accounts();
    let mut f = SpendLogFilter {
        api_key: q_str(&q, "api_key")?.map(|k| secret::hash(&k)),
        user_id: q_str(&q, "user_id")?,
        team_id: q_str(&q, "team_id")?,
        request_id: q_str(&q, "request_id")?,
        start: time_arg(&q, "start_date", false)?,
        end: time_arg(&q, "end_date", true)?,
        limit: limit_arg(&q, None)?.map(|n| n as i64),
    };
    let summarize = bool_arg(&q, "summarize")?.unwrap_or(false);
    if !caller.role.is_admin_reader() {
        own_rows_only(&caller, accounts, &mut f)?;
    }
    // Rows still buffered in the ledger are written first, so a caller sees the request they just made.
    let _ = accounts.flush().await;
    let rows = accounts.store.spend_logs(&f).await.map_err(store_error)?;
    if summarize {
        return Ok(summarize_logs(&rows));
    }
    Ok(Value::Array(rows.iter().map(log_json).collect()))
}

// ----------------------------------------------------------------------------------------------------
// /global/spend/report

/// `group_by` of `/global/spend/report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupBy {
    Team,
    Customer,
    ApiKey,
    User,
    Model,
}

impl GroupBy {
    fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "team" => GroupBy::Team,
            "customer" | "end_user" => GroupBy::Customer,
            "api_key" => GroupBy::ApiKey,
            "user" => GroupBy::User,
            "model" => GroupBy::Model,
            _ => return None,
        })
    }

    /// The aggregates the report reads (per model: the aggregate over all traffic, split by model).
    fn kind(self) -> Option<EntityKind> {
        match self {
            GroupBy::Team => Some(EntityKind::Team),
            GroupBy::Customer => Some(EntityKind::EndUser),
            GroupBy::ApiKey => Some(EntityKind::Key),
            GroupBy::Model => None,
            GroupBy::User => Some(EntityKind::User),
        }
    }

    /// The day's list of groups.
    fn list_field(self) -> &'static str {
        match self {
            GroupBy::Team => "teams",
            GroupBy::Customer => "customers",
            GroupBy::ApiKey => "api_keys",
            GroupBy::User => "users",
            GroupBy::Model => "models",
        }
    }

    /// A group's name.
    fn name_field(self) -> &'static str {
        match self {
            GroupBy::Team => "team_name",
            GroupBy::Customer => "customer",
            GroupBy::ApiKey => "api_key",
            GroupBy::User => "user_id",
            GroupBy::Model => "model",
        }
    }
}

/// LiteLLM's `/global/spend/report` from daily aggregate rows of `by.kind()`:
/// `[{"group_by_day", "<groups>": [{"<name>", "total_spend", "metadata": [{"model", "spend", "total_tokens"}]}]}]`,
/// days ascending, groups and models by spend descending. `label` gives a group's display name (a team's
/// alias); teams also carry their `team_id`.
fn spend_report(rows: &[DailySpend], by: GroupBy, label: &dyn Fn(&str) -> Option<String>) -> Value {
    type Models<'a> = BTreeMap<&'a str, (i64, i64)>;
    let mut days: BTreeMap<&str, BTreeMap<&str, Models>> = BTreeMap::new();
    for r in rows {
        let group = match by {
            GroupBy::Model => r.model.as_str(),
            _ => r.entity_id.as_str(),
        };
        let a = days
            .entry(r.day.as_str())
            .or_default()
            .entry(group)
            .or_default()
            .entry(r.model.as_str())
            .or_default();
        a.0 = a.0.saturating_add(r.spend);
        a.1 =
            a.1.saturating_add(r.prompt_tokens.saturating_add(r.completion_tokens));
    }
    let mut out = Vec::with_capacity(days.len());
    for (day, groups) in days {
        let mut list: Vec<(i64, &str, Value)> = Vec::with_capacity(groups.len());
        for (group, models) in groups {
            let total = models.values().fold(0i64, |acc, a| acc.saturating_add(a.0));
            let mut models: Vec<(&str, (i64, i64))> = models.into_iter().collect();
            models.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
            let metadata = models
                .iter()
                .map(|(m, (spend, tokens))| {
                    let mut o = Map::new();
                    o.insert("model".into(), (*m).into());
                    o.insert("spend".into(), usd(*spend));
                    o.insert("total_tokens".into(), (*tokens).into());
                    Value::Object(o)
                })
                .collect();
            let mut o = Map::new();
            o.insert(
                by.name_field().into(),
                label(group).unwrap_or_else(|| group.to_string()).into(),
            );
            if by == GroupBy::Team {
                o.insert("team_id".into(), group.into());
            }
            o.insert("total_spend".into(), usd(total));
            o.insert("metadata".into(), Value::Array(metadata));
            list.push((total, group, Value::Object(o)));
        }
        list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let mut o = Map::new();
        o.insert("group_by_day".into(), day.into());
        o.insert(
            by.list_field().into(),
            Value::Array(list.into_iter().map(|g| g.2).collect()),
        );
        out.push(Value::Object(o));
    }
    Value::Array(out)
}

fn team_alias(accounts: &Accounts, id: &str) -> Option<String> {
    accounts
        .teams
        .get(id)
        .and_then(|t| t.doc.team_alias.clone())
}

/// Daily aggregates of one kind (`None`: over all traffic, master key included).
async fn daily(
    accounts: &Accounts,
    kind: Option<EntityKind>,
    (start, end): &(String, String),
) -> Result<Vec<DailySpend>, GatewayError> {
    // Rows still buffered in the ledger are written (and aggregated) first.
    let _ = accounts.flush().await;
    match kind {
        Some(kind) => accounts.store.daily_spend(kind, start, end).await,
        None => accounts.store.daily_spend_all(start, end).await,
    }
    .map_err(store_error)
}

async fn report(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("view global spend reports")?;
    let q = query_map(&req);
    let by = match q_str(&q, "group_by")? {
        None => GroupBy::Team,
        Some(g) => GroupBy::parse(&g).ok_or_else(|| {
            GatewayError::invalid_param(
                "group_by",
                format!("`group_by` {g:?} must be one of team, customer, api_key, user, model"),
            )
        })?,
    };
    let range = day_range(&q)?;
    let accounts = state.accounts();
    let rows = daily(accounts, by.kind(), &range).await?;
    let label = |id: &str| match by {
        GroupBy::Team => team_alias(accounts, id),
        _ => None,
    };
    Ok(spend_report(&rows, by, &label))
}

// ----------------------------------------------------------------------------------------------------
// /global/spend/keys|models|teams

/// Total spend per `key(row)`, highest first (ties by name).
fn totals<'a>(
    rows: &'a [DailySpend],
    key: impl Fn(&'a DailySpend) -> &'a str,
) -> Vec<(&'a str, i64)> {
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        let s = sums.entry(key(r)).or_default();
        *s = s.saturating_add(r.spend);
    }
    let mut out: Vec<(&str, i64)> = sums.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    out
}

async fn top_keys(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("view global spend per key")?;
    let q = query_map(&req);
    let limit = limit_arg(&q, Some(5))?.unwrap_or(5);
    let range = day_range(&q)?;
    let accounts = state.accounts();
    let rows = daily(accounts, Some(EntityKind::Key), &range).await?;
    let out = totals(&rows, |r| r.entity_id.as_str())
        .into_iter()
        .take(limit)
        .map(|(hash, spend)| {
            let key = accounts.keys.get(hash);
            let mut o = Map::new();
            o.insert("api_key".into(), hash.into());
            o.insert("total_spend".into(), usd(spend));
            o.insert(
                "key_alias".into(),
                key.as_ref()
                    .and_then(|k| k.doc.key_alias.clone())
                    .map_or(Value::Null, Value::from),
            );
            o.insert(
                "key_name".into(),
                key.as_ref()
                    .map_or(Value::Null, |k| Value::from(k.doc.key_name.as_str())),
            );
            Value::Object(o)
        })
        .collect();
    Ok(Value::Array(out))
}

async fn top_models(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("view global spend per model")?;
    let q = query_map(&req);
    let limit = limit_arg(&q, Some(5))?.unwrap_or(5);
    let range = day_range(&q)?;
    let accounts = state.accounts();
    let rows = daily(accounts, None, &range).await?;
    let out = totals(&rows, |r| r.model.as_str())
        .into_iter()
        .take(limit)
        .map(|(model, spend)| {
            let mut o = Map::new();
            o.insert("model".into(), model.into());
            o.insert("total_spend".into(), usd(spend));
            Value::Object(o)
        })
        .collect();
    Ok(Value::Array(out))
}

/// LiteLLM's `/global/spend/teams`: `daily_spend` (per day, spend per team name), `teams` (the names) and
/// `total_spend_per_team` (highest first). A team's name is its alias, else its id.
fn teams_report(rows: &[DailySpend], label: &dyn Fn(&str) -> Option<String>) -> Value {
    let name = |id: &str| label(id).unwrap_or_else(|| id.to_string());
    let mut days: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for r in rows {
        let s = days
            .entry(r.day.as_str())
            .or_default()
            .entry(name(&r.entity_id))
            .or_default();
        *s = s.saturating_add(r.spend);
    }
    let mut names: Vec<String> = days.values().flat_map(|d| d.keys().cloned()).collect();
    names.sort();
    names.dedup();
    let daily_spend = days
        .iter()
        .map(|(day, teams)| {
            let mut o = Map::new();
            o.insert("date".into(), (*day).into());
            for (team, spend) in teams {
                o.insert(team.clone(), usd(*spend));
            }
            Value::Object(o)
        })
        .collect();
    let per_team = totals(rows, |r| r.entity_id.as_str())
        .into_iter()
        .map(|(id, spend)| {
            let mut o = Map::new();
            o.insert("team_id".into(), id.into());
            o.insert(
                "team_alias".into(),
                label(id).map_or(Value::Null, Value::from),
            );
            o.insert("total_spend".into(), usd(spend));
            Value::Object(o)
        })
        .collect();
    let mut o = Map::new();
    o.insert("daily_spend".into(), Value::Array(daily_spend));
    o.insert(
        "teams".into(),
        Value::Array(names.into_iter().map(Value::from).collect()),
    );
    o.insert("total_spend_per_team".into(), Value::Array(per_team));
    Value::Object(o)
}

async fn teams(state: &AppState, req: Request) -> Result<Value, GatewayError> {
    let caller = Caller::of(state, &req);
    caller.require_admin_reader("view global spend per team")?;
    let q = query_map(&req);
    let range = day_range(&q)?;
    let accounts = state.accounts();
    let rows = daily(accounts, Some(EntityKind::Team), &range).await?;
    Ok(teams_report(&rows, &|id: &str| team_alias(accounts, id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(day: &str, id: &str, model: &str, spend: i64, tokens: i64) -> DailySpend {
        DailySpend {
            day: day.into(),
            entity_id: id.into(),
            model: model.into(),
            requests: 1,
            successes: 1,
            failures: 0,
            prompt_tokens: tokens,
            completion_tokens: 1,
            spend,
        }
    }

    fn q(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn report_groups_by_day_then_entity_then_model() {
        let rows = vec![
            row("2026-01-01", "t1", "gpt-4o", 1_000_000_000, 9),
            row("2026-01-01", "t1", "mini", 500_000_000, 4),
            row("2026-01-01", "t2", "mini", 2_000_000_000, 1),
            row("2026-01-02", "t1", "mini", 250_000_000, 2),
        ];
        let alias = |id: &str| (id == "t1").then(|| "Team One".to_string());
        let v = spend_report(&rows, GroupBy::Team, &alias);
        assert_eq!(
            v,
            json!([
                {"group_by_day": "2026-01-01", "teams": [
                    {"team_name": "t2", "team_id": "t2", "total_spend": 2.0,
                     "metadata": [{"model": "mini", "spend": 2.0, "total_tokens": 2}]},
                    {"team_name": "Team One", "team_id": "t1", "total_spend": 1.5,
                     "metadata": [{"model": "gpt-4o", "spend": 1.0, "total_tokens": 10},
                                  {"model": "mini", "spend": 0.5, "total_tokens": 5}]}
                ]},
                {"group_by_day": "2026-01-02", "teams": [
                    {"team_name": "Team One", "team_id": "t1", "total_spend": 0.25,
                     "metadata": [{"model": "mini", "spend": 0.25, "total_tokens": 3}]}
                ]}
            ])
        );
    }

    #[test]
    fn report_by_model_merges_entities() {
        let rows = vec![
            row("2026-01-01", "k1", "mini", 1, 1),
            row("2026-01-01", "k2", "mini", 2, 1),
            row("2026-01-01", "k2", "big", 10, 1),
        ];
        let v = spend_report(&rows, GroupBy::Model, &|_: &str| None);
        let models = &v[0]["models"];
        assert_eq!(models[0]["model"], "big");
        assert_eq!(models[1]["model"], "mini");
        assert_eq!(models[1]["total_spend"], json!(3e-9));
        assert_eq!(models[1]["metadata"][0]["total_tokens"], 4);
        let v = spend_report(&rows, GroupBy::Customer, &|_: &str| None);
        assert_eq!(v[0]["customers"][0]["customer"], "k2");
        assert!(v[0]["customers"][0].get("team_id").is_none());
        assert_eq!(spend_report(&[], GroupBy::User, &|_: &str| None), json!([]));
    }

    #[test]
    fn totals_sum_as_integers_and_sort() {
        let rows = vec![
            row("2026-01-01", "a", "m1", 100_000_000, 0),
            row("2026-01-02", "a", "m2", 200_000_000, 0),
            row("2026-01-01", "b", "m1", 300_000_000, 0),
            row("2026-01-01", "c", "m1", 50, 0),
        ];
        assert_eq!(
            totals(&rows, |r| r.entity_id.as_str()),
            vec![("a", 300_000_000), ("b", 300_000_000), ("c", 50)]
        );
        assert_eq!(totals(&rows, |r| r.model.as_str())[0], ("m1", 400_000_050));
        // 0.1 + 0.2 summed in nanos is exactly 0.3.
        assert_eq!(
            usd(totals(&rows, |r| r.entity_id.as_str())[0].1),
            json!(0.3)
        );
    }

    #[test]
    fn teams_report_uses_aliases_for_names() {
        let rows = vec![
            row("2026-01-01", "t1", "m", 1_000_000_000, 0),
            row("2026-01-01", "t2", "m", 3_000_000_000, 0),
            row("2026-01-02", "t1", "n", 1_000_000_000, 0),
        ];
        let alias = |id: &str| (id == "t1").then(|| "one".to_string());
        let v = teams_report(&rows, &alias);
        assert_eq!(
            v,
            json!({
                "daily_spend": [
                    {"date": "2026-01-01", "one": 1.0, "t2": 3.0},
                    {"date": "2026-01-02", "one": 1.0}
                ],
                "teams": ["one", "t2"],
                "total_spend_per_team": [
                    {"team_id": "t2", "team_alias": null, "total_spend": 3.0},
                    {"team_id": "t1", "team_alias": "one", "total_spend": 2.0}
                ]
            })
        );
    }

    #[test]
    fn dates_parse_and_end_dates_are_inclusive() {
        let day = duration::parse_time("2026-01-02").unwrap();
        let m = q(json!({"start_date": "2026-01-02", "end_date": "2026-01-02"}));
        assert_eq!(time_arg(&m, "start_date", false).unwrap(), Some(day));
        assert_eq!(time_arg(&m, "end_date", true).unwrap(), Some(day + DAY_MS));
        let m = q(json!({"end_date": "2026-01-02T10:00:00 01:00"}));
        assert_eq!(
            time_arg(&m, "end_date", true).unwrap(),
            Some(day + 9 * 3_600_000 + 1)
        );
        let e = time_arg(&q(json!({"start_date": "yesterday"})), "start_date", false).unwrap_err();
        assert!(e.to_string().contains("start_date"));
        assert!(
            time_arg(&q(json!({})), "start_date", false)
                .unwrap()
                .is_none()
        );
        assert!(
            day_range(&q(
                json!({"start_date": "2026-02-01", "end_date": "2026-01-01"})
            ))
            .is_err()
        );
        assert_eq!(
            day_range(&q(json!({"end_date": "2026-03-01"}))).unwrap(),
            ("2026-01-30".to_string(), "2026-03-01".to_string())
        );
    }

    #[test]
    fn limits_and_flags() {
        assert_eq!(limit_arg(&q(json!({})), Some(5)).unwrap(), Some(5));
        assert_eq!(
            limit_arg(&q(json!({"limit": "2"})), Some(5)).unwrap(),
            Some(2)
        );
        assert!(limit_arg(&q(json!({"limit": "0"})), None).is_err());
        assert!(limit_arg(&q(json!({"limit": "x"})), None).is_err());
        assert_eq!(
            bool_arg(&q(json!({"summarize": "False"})), "summarize").unwrap(),
            Some(false)
        );
        assert!(bool_arg(&q(json!({"summarize": "maybe"})), "summarize").is_err());
    }

    fn spend_row(
        id: &str,
        start: &str,
        key: &str,
        user: Option<&str>,
        spend: i64,
        status: i64,
    ) -> SpendRow {
        SpendRow {
            request_id: id.into(),
            api_key: key.into(),
            key_alias: Some("alias".into()),
            user_id: user.map(str::to_string),
            team_id: None,
            organization_id: None,
            end_user: None,
            model_group: "group".into(),
            model: "gpt-4o-2024".into(),
            deployment_id: "dep1".into(),
            provider: "openai".into(),
            call_type: "acompletion".into(),
            status,
            stream: false,
            prompt_tokens: 3,
            completion_tokens: 4,
            total_tokens: 7,
            cached_tokens: 0,
            reasoning_tokens: 0,
            spend,
            start_time: duration::parse_time(start).unwrap(),
            end_time: duration::parse_time(start).unwrap() + 1500,
            tags: r#"["a","b"]"#.into(),
            metadata: r#"{"x":1}"#.into(),
            trace: None,
        }
    }

    #[test]
    fn log_rows_have_litellm_fields() {
        let v = log_json(&spend_row(
            "r1",
            "2026-01-01T10:00:00Z",
            "h",
            None,
            1_500_000,
            200,
        ));
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["spend"], json!(0.0015));
        assert_eq!(v["startTime"], "2026-01-01T10:00:00.000Z");
        assert_eq!(v["endTime"], "2026-01-01T10:00:01.500Z");
        assert_eq!(v["model"], "gpt-4o-2024");
        assert_eq!(v["model_group"], "group");
        assert_eq!(v["model_id"], "dep1");
        assert_eq!(v["custom_llm_provider"], "openai");
        assert_eq!(v["user"], "");
        assert_eq!(v["team_id"], Value::Null);
        assert_eq!(v["request_tags"], json!(["a", "b"]));
        assert_eq!(
            v["metadata"],
            json!({"x": 1, "user_api_key_alias": "alias"})
        );
        assert_eq!(v["status"], "success");
        assert_eq!(v["cache_hit"], false);
        let mut bad = spend_row("r2", "2026-01-01", "h", Some("u"), 0, 429);
        bad.metadata = "not json".into();
        bad.tags = "{}".into();
        let v = log_json(&bad);
        assert_eq!(v["status"], "failure");
        assert_eq!(v["status_code"], 429);
        assert_eq!(v["user"], "u");
        assert_eq!(v["metadata"], json!({"user_api_key_alias": "alias"}));
        assert_eq!(v["request_tags"], json!([]));
    }

    #[test]
    fn summaries_group_by_day() {
        let rows = vec![
            spend_row(
                "1",
                "2026-01-01T01:00:00Z",
                "k1",
                Some("u1"),
                100_000_000,
                200,
            ),
            spend_row("2", "2026-01-01T02:00:00Z", "k1", None, 200_000_000, 200),
            spend_row(
                "3",
                "2026-01-03T02:00:00Z",
                "",
                Some("u2"),
                1_000_000_000,
                200,
            ),
        ];
        assert_eq!(
            summarize_logs(&rows),
            json!([
                {"startTime": "2026-01-01", "spend": 0.3, "k1": 0.3,
                 "users": {"u1": 0.1}, "models": {"gpt-4o-2024": 0.3}},
                {"startTime": "2026-01-03", "spend": 1.0,
                 "users": {"u2": 1.0}, "models": {"gpt-4o-2024": 1.0}}
            ])
        );
    }
}
