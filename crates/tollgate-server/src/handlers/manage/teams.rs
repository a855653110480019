//! `/team/*`: teams, their members and member roles, budgets and limits; team blocks.

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tollgate_accounts::model::{Member, TeamDoc, TeamRole};
use tollgate_core::GatewayError;
use tollgate_store::EntityKind;

use super::{
    Caller, body_object, entry_json, forbidden, merge, new_id, opt_str, query_map, respond,
    store_error, str_list,
};
use crate::state::AppState;

const FIELDS: &[&str] = &[
    "team_alias",
    "organization_id",
    "members_with_roles",
    "models",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "model_aliases",
    "metadata",
    "blocked",
];
const IGNORED: &[&str] = &[
    "team_id",
    "admins",
    "members",
    "tags",
    "guardrails",
    "spend",
];

fn team_admin(c: &Caller, t: &TeamDoc) -> bool {
    c.role.is_admin()
        || c.user_id
            .as_deref()
            .is_some_and(|u| t.role_of(u) == Some(TeamRole::Admin))
}

fn find(
    state: &AppState,
    id: Option<String>,
) -> Result<std::sync::Arc<tollgate_accounts::Entry<TeamDoc>>, GatewayError> {
    let id = id.ok_or_else(|| GatewayError::invalid_param("team_id", "`team_id` is required"))?;
    state
        .accounts()
        .teams
        .get(&id)
        .ok_or_else(|| GatewayError::NotFound(format!("Team {id} not found")))
}

/// Add (or change the role of) a member; used by `/team/member_add` and `/user/new`'s `teams`.
pub async fn add_member(
    state: &AppState,
    team_id: &str,
    user_id: &str,
    email: Option<String>,
    role: TeamRole,
) -> Result<(), GatewayError> {
    let old = find(state, Some(team_id.to_string()))?;
    let mut doc = old.doc.clone();
    match doc
        .members_with_roles
        .iter_mut()
        .find(|m| m.user_id.as_deref() == Some(user_id))
    {
        Some(m) => m.role = role,
        None => doc.members_with_roles.push(Member {
            user_id: Some(user_id.to_string()),
            user_email: email,
            role,
        }),
    }
    if !state
        .accounts()
        .update(&doc, &old)
        .await
        .map_err(store_error)?
    {
        return Err(GatewayError::NotFound(format!("Team {team_id} not found")));
    }
    Ok(())
}

/// `POST /team/new`
pub async fn new(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin("create teams")?;
            let body = body_object(req).await?;
            let mut doc: TeamDoc = merge(&TeamDoc::default(), &body, FIELDS, IGNORED)?;
            doc.team_id = opt_str(&body, "team_id")?.unwrap_or_else(new_id);
            if let Some(o) = &doc.organization_id
                && state.accounts().orgs.get(o).is_none()
            {
                return Err(GatewayError::invalid_param(
                    "organization_id",
                    format!("Organization {o} does not exist"),
                ));
            }
            // LiteLLM's `admins` / `members` lists of user ids.
            for (field, role) in [("admins", TeamRole::Admin), ("members", TeamRole::User)] {
                for u in str_list(&body, field)?.unwrap_or_default() {
                    if !doc
                        .members_with_roles
                        .iter()
                        .any(|m| m.user_id.as_deref() == Some(u.as_str()))
                    {
                        doc.members_with_roles.push(Member {
                            user_id: Some(u),
                            user_email: None,
                            role,
                        });
                    }
                }
            }
            let a = state.accounts();
            a.create(&doc).await.map_err(store_error)?;
            let e = a
                .teams
                .get(&doc.team_id)
                .ok_or_else(|| GatewayError::Internal("created team not in memory".into()))?;
            Ok(entry_json(&e))
        }
        .await,
    )
}

/// `GET /team/info?team_id=...`
pub async fn info(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    let q = query_map(&req);
    respond((|| {
        let t = find(
            &state,
            q.get("team_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        )?;
        let member = c
            .user_id
            .as_deref()
            .is_some_and(|u| t.doc.role_of(u).is_some());
        if !c.role.is_admin_reader() && !member {
            return Err(forbidden(
                "read this team",
                "proxy_admin, proxy_admin_viewer or a team member",
            ));
        }
        let keys: Vec<Value> = state
            .accounts()
            .keys
            .all()
            .into_iter()
            .filter(|k| k.doc.team_id.as_deref() == Some(t.doc.team_id.as_str()))
            .map(|k| entry_json(&k))
            .collect();
        Ok(json!({ "team_id": t.doc.team_id, "team_info": entry_json(&t), "keys": keys }))
    })())
}

/// `POST /team/update` with `team_id` and the fields to change.
pub async fn update(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let body = body_object(req).await?;
            let old = find(&state, opt_str(&body, "team_id")?)?;
            if !team_admin(&c, &old.doc) {
                return Err(forbidden("update this team", "proxy_admin or a team admin"));
            }
            if !c.role.is_admin() {
                for admin_only in [
                    "max_budget",
                    "budget_duration",
                    "rpm_limit",
                    "tpm_limit",
                    "max_parallel_requests",
                    "models",
                    "organization_id",
                    "blocked",
                ] {
                    if body.contains_key(admin_only) {
                        return Err(forbidden(
                            &format!("change a team's {admin_only}"),
                            "proxy_admin",
                        ));
                    }
                }
            }
            let mut doc: TeamDoc = merge(&old.doc, &body, FIELDS, IGNORED)?;
            doc.team_id = old.doc.team_id.clone();
            let e = super::save(&state, &state.accounts().teams, &old, &doc, "Team").await?;
            Ok(entry_json(&e))
        }
        .await,
    )
}

/// `POST /team/delete` with `team_ids`. The teams' keys are deleted with them.
pub async fn delete(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin("delete teams")?;
            let body = body_object(req).await?;
            let ids = str_list(&body, "team_ids")?
                .ok_or_else(|| GatewayError::invalid_param("team_ids", "`team_ids` is required"))?;
            let a = state.accounts();
            if let Some(missing) = ids.iter().find(|t| a.teams.get(t).is_none()) {
                return Err(GatewayError::NotFound(format!("Team {missing} not found")));
            }
            let (done, keys) =
                super::delete_with_keys(&state, EntityKind::Team, &ids, |k| k.team_id.as_ref())
                    .await?;
            Ok(json!({ "deleted_teams": done, "deleted_keys": keys }))
        }
        .await,
    )
}

/// `GET /team/list` (`user_id`, `organization_id`): every team for admins, a user's own teams otherwise.
pub async fn list(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    let q = query_map(&req);
    respond((|| {
        let s = |k: &str| q.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let mut user = s("user_id");
        if !c.role.is_admin_reader() {
            match (&user, &c.user_id) {
                (Some(u), Some(own)) if u != own => {
                    return Err(forbidden(
                        "list other users' teams",
                        "proxy_admin or proxy_admin_viewer",
                    ));
                }
                (_, Some(own)) => user = Some(own.clone()),
                (_, None) => {
                    return Err(forbidden(
                        "list teams",
                        "proxy_admin, proxy_admin_viewer or a user",
                    ));
                }
            }
        }
        let org = s("organization_id");
        let mut teams = state.accounts().teams.all();
        teams.retain(|t| user.as_deref().is_none_or(|u| t.doc.role_of(u).is_some()));
        teams.retain(|t| org.is_none() || t.doc.organization_id == org);
        teams.sort_by(|a, b| (a.created_at, &a.doc.team_id).cmp(&(b.created_at, &b.doc.team_id)));
        Ok(Value::Array(teams.iter().map(|t| entry_json(t)).collect()))
    })())
}

fn members_of(body: &Map<String, Value>) -> Result<Vec<Member>, GatewayError> {
    let v = body
        .get("member")
        .ok_or_else(|| GatewayError::invalid_param("member", "`member` is required"))?;
    let list = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    list.into_iter()
        .map(|m| {
            serde_json::from_value::<Member>(m)
                .map_err(|e| GatewayError::invalid_param("member", format!("invalid member: {e}")))
        })
        .collect()
}

/// `POST /team/member_add` with `team_id` and `member` (`{user_id, user_email, role}` or a list).
pub async fn member_add(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let body = body_object(req).await?;
            let team = find(&state, opt_str(&body, "team_id")?)?;
            if !team_admin(&c, &team.doc) {
                return Err(forbidden("add team members", "proxy_admin or a team admin"));
            }
            let a = state.accounts();
            for m in members_of(&body)? {
                let user_id = match (m.user_id, &m.user_email) {
                    (Some(u), _) => u,
                    (None, Some(email)) => a
                        .users
                        .all()
                        .into_iter()
                        .find(|u| u.doc.user_email.as_deref() == Some(email.as_str()))
                        .map(|u| u.doc.user_id.clone())
                        .ok_or_else(|| {
                            GatewayError::invalid_param(
                                "member",
                                format!("no user with email {email}"),
                            )
                        })?,
                    (None, None) => {
                        return Err(GatewayError::invalid_param(
                            "member",
                            "a member needs `user_id` or `user_email`",
                        ));
                    }
                };
                if a.users.get(&user_id).is_none() {
                    return Err(GatewayError::invalid_param(
                        "member",
                        format!("User {user_id} does not exist"),
                    ));
                }
                add_member(&state, &team.doc.team_id, &user_id, m.user_email, m.role).await?;
            }
            let e = a
                .teams
                .get(&team.doc.team_id)
                .ok_or_else(|| GatewayError::NotFound("Team not found".into()))?;
            Ok(entry_json(&e))
        }
        .await,
    )
}

/// `POST /team/member_delete` with `team_id` and `user_id` or `user_email`.
pub async fn member_delete(State(state): State<AppState>, req: Request) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            let body = body_object(req).await?;
            let old = find(&state, opt_str(&body, "team_id")?)?;
            if !team_admin(&c, &old.doc) {
                return Err(forbidden(
                    "remove team members",
                    "proxy_admin or a team admin",
                ));
            }
            let (uid, email) = (opt_str(&body, "user_id")?, opt_str(&body, "user_email")?);
            if uid.is_none() && email.is_none() {
                return Err(GatewayError::invalid_param(
                    "user_id",
                    "give `user_id` or `user_email`",
                ));
            }
            let mut doc = old.doc.clone();
            let before = doc.members_with_roles.len();
            doc.members_with_roles.retain(|m| {
                !(uid.is_some() && m.user_id == uid || email.is_some() && m.user_email == email)
            });
            if doc.members_with_roles.len() == before {
                return Err(GatewayError::NotFound("No such member in this team".into()));
            }
            let e = super::save(&state, &state.accounts().teams, &old, &doc, "Team").await?;
            Ok(entry_json(&e))
        }
        .await,
    )
}

async fn set_blocked(state: AppState, req: Request, blocked: bool) -> Response {
    let c = Caller::of(&state, &req);
    respond(
        async {
            c.require_admin(if blocked {
                "block teams"
            } else {
                "unblock teams"
            })?;
            let body = body_object(req).await?;
            let old = find(&state, opt_str(&body, "team_id")?)?;
            let mut doc = old.doc.clone();
            doc.blocked = blocked;
            let e = super::save(&state, &state.accounts().teams, &old, &doc, "Team").await?;
            Ok(entry_json(&e))
        }
        .await,
    )
}

/// `POST /team/block` with `team_id`: every key of the team stops working at once.
pub async fn block(State(state): State<AppState>, req: Request) -> Response {
    set_blocked(state, req, true).await
}

/// `POST /team/unblock` with `team_id`.
pub async fn unblock(State(state): State<AppState>, req: Request) -> Response {
    set_blocked(state, req, false).await
}
