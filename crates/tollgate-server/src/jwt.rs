//! JWT authentication (`general_settings.enable_jwt_auth`): fetching the key sets over the shared HTTP client, verifying a presented token, and mapping its claims onto users, teams, organizations and end users as LiteLLM's `litellm_jwtauth` fields say (route groups, roles, email domain, upserts).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tollgate_accounts::model::{TeamDoc, UserDoc};
use tollgate_accounts::{Accounts, JwtIdentity, Principal};
use tollgate_auth::{CacheOptions, Fetch, FetchFuture, JwksCache, JwtError, Validation, claim};
use tollgate_config::JwtSettings;
use tollgate_core::GatewayError;
use tollgate_providers::HttpClient;
use tollgate_store::StoreError;

/// The largest key set document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Fetches key sets with the gateway's HTTP client.
struct HttpFetch(HttpClient);

impl Fetch for HttpFetch {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let req = http::Request::get(url)
                .header(http::header::ACCEPT, "application/json")
                .body(Full::new(Bytes::new()))
                .map_err(|e| format!("bad key set URL: {e}"))?;
            let resp = self
                .0
                .request(req)
                .await
                .map_err(|e| format!("cannot fetch the key set: {e}"))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("the key set URL answered {status}"));
            }
            let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("cannot read the key set: {e}"))?;
            Ok(body.to_bytes().to_vec())
        })
    }
}

/// JWT verification and claim mapping, built from the config.
pub struct JwtAuth {
    settings: JwtSettings,
    cache: JwksCache,
    validation: Validation,
}

impl JwtAuth {
    pub fn new(settings: &JwtSettings, client: &HttpClient) -> JwtAuth {
        let cache = JwksCache::new(
            settings.public_key_urls.clone(),
            CacheOptions {
                ttl: settings.public_key_ttl,
                min_refresh_interval: settings.refresh_interval,
            },
            Arc::new(HttpFetch(client.clone())),
        );
        JwtAuth {
            settings: settings.clone(),
            cache,
            validation: Validation {
                audiences: settings.audiences.clone(),
                issuer: settings.issuer.clone(),
                leeway: settings.leeway,
            },
        }
    }

    /// Verify `token` and map it to a caller allowed on `path`.
    pub async fn authenticate(
        &self,
        accounts: &Accounts,
        token: &str,
        path: &str,
    ) -> Result<Principal, GatewayError> {
        let verified = self
            .cache
            .verify(token, &self.validation)
            .await
            .map_err(|e| match e {
                JwtError::KeysUnavailable(why) => {
                    tracing::warn!(target: "tollgate::auth", error = %why, "JWT key set unavailable");
                    GatewayError::Unavailable(
                        "Cannot verify JWTs right now: the identity provider's key set cannot be fetched."
                            .into(),
                    )
                }
                e => {
                    tracing::info!(target: "tollgate::auth", reason = e.code(), "JWT refused");
                    GatewayError::Unauthorized(format!("Authentication Error, invalid JWT: {e}"))
                }
            })?;
        let claims = &verified.claims;
        let s = &self.settings;
        let text = |field: &Option<String>| field.as_deref().and_then(|f| claim_text(claims, f));
        let mut id = JwtIdentity {
            subject: claim_text(claims, "sub"),
            admin: scopes(claims).any(|sc| sc == s.admin_jwt_scope),
            user_id: text(&s.user_id_jwt_field),
            email: text(&s.user_email_jwt_field),
            organization_id: text(&s.org_id_jwt_field),
            end_user_id: text(&s.end_user_id_jwt_field),
            ..JwtIdentity::default()
        };
        if id.admin {
            if !route_allowed(&s.admin_allowed_routes, path) {
                return Err(GatewayError::Forbidden(format!(
                    "Admin not allowed to access this route. Route={path}, Allowed Routes={:?}",
                    s.admin_allowed_routes
                )));
            }
            return Ok(Principal::Jwt(Arc::new(id)));
        }

        if let Some(domain) = &s.user_allowed_email_domain {
            let ok = id.email.as_deref().is_some_and(|e| {
                e.rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            });
            if !ok {
                return Err(GatewayError::Forbidden(format!(
                    "User email is not in the allowed domain {domain}"
                )));
            }
        }
        if let Some(field) = &s.user_roles_jwt_field {
            id.roles = claim_list(claims, field);
        }
        if let Some(allowed) = &s.user_allowed_roles
            && !id.roles.iter().any(|r| allowed.contains(r))
        {
            return Err(GatewayError::Forbidden(format!(
                "User roles {:?} are not in user_allowed_roles {allowed:?}",
                id.roles
            )));
        }

        // Teams: the single-team field, then the list, else the default.
        let mut named: Vec<String> = Vec::new();
        if let Some(t) = text(&s.team_id_jwt_field) {
            named.push(t);
        }
        if let Some(f) = &s.team_ids_jwt_field {
            for t in claim_list(claims, f) {
                if !named.contains(&t) {
                    named.push(t);
                }
            }
        }
        if named.is_empty()
            && let Some(t) = &s.team_id_default
        {
            named.push(t.clone());
        }
        for t in &named {
            match accounts.teams.get(t) {
                Some(team) if team.doc.blocked => {
                    return Err(GatewayError::Unauthorized(format!(
                        "Authentication Error - Team={t} is blocked. Unblock it with /team/unblock"
                    )));
                }
                Some(_) => id.team_ids.push(t.clone()),
                None if s.team_id_upsert => {
                    let doc = TeamDoc {
                        team_id: t.clone(),
                        ..TeamDoc::default()
                    };
                    upsert(accounts, &doc).await?;
                    id.team_ids.push(t.clone());
                }
                None => {}
            }
        }
        if !named.is_empty() && id.team_ids.is_empty() {
            return Err(GatewayError::Forbidden(format!(
                "Team doesn't exist in db. Team={}. Create the team with /team/new, or set litellm_jwtauth.team_id_upsert",
                named.join(", ")
            )));
        }
        if !id.team_ids.is_empty() && !route_allowed(&s.team_allowed_routes, path) {
            return Err(GatewayError::Forbidden(format!(
                "Team not allowed to access this route. Route={path}, Allowed Routes={:?}",
                s.team_allowed_routes
            )));
        }

        if let Some(u) = id.user_id.clone()
            && accounts.users.get(&u).is_none()
        {
            if !s.user_id_upsert {
                return Err(GatewayError::Forbidden(format!(
                    "User doesn't exist in db. user_id={u}. Create the user with /user/new, or set litellm_jwtauth.user_id_upsert"
                )));
            }
            let doc = UserDoc {
                user_id: u,
                user_email: id.email.clone(),
                organization_id: id.organization_id.clone(),
                ..UserDoc::default()
            };
            upsert(accounts, &doc).await?;
        }
        if let Some(o) = &id.organization_id
            && accounts.orgs.get(o).is_none()
        {
            return Err(GatewayError::Forbidden(format!(
                "Organization doesn't exist in db. organization_id={o}"
            )));
        }
        if id.user_id.is_none()
            && id.team_ids.is_empty()
            && id.organization_id.is_none()
            && id.end_user_id.is_none()
        {
            return Err(GatewayError::Unauthorized(
                "Authentication Error, the JWT names no user, team, organization or end user: set user_id_jwt_field, team_id_jwt_field, team_ids_jwt_field, team_id_default, org_id_jwt_field or end_user_id_jwt_field in litellm_jwtauth (or give the token the admin scope)".into(),
            ));
        }
        Ok(Principal::Jwt(Arc::new(id)))
    }
}

/// Create a user or team named by a token (`*_upsert`); another request or instance creating it first
/// is fine.
async fn upsert<D: tollgate_accounts::Doc>(
    accounts: &Accounts,
    doc: &D,
) -> Result<(), GatewayError> {
    match accounts.create(doc).await {
        Ok(_) => {
            tracing::info!(target: "tollgate::auth", kind = ?D::KIND, id = doc.id(), "created from a JWT");
            Ok(())
        }
        Err(StoreError::Conflict) => accounts
            .refetch(D::KIND, doc.id())
            .await
            .map_err(store_unavailable),
        Err(e) => Err(store_unavailable(e)),
    }
}

fn store_unavailable(e: StoreError) -> GatewayError {
    tracing::warn!(target: "tollgate::auth", error = %e, "cannot create an entity named by a JWT");
    GatewayError::Unavailable(
        "Cannot create the user or team this JWT names: the database is unavailable.".into(),
    )
}

/// A claim as text (strings, and numbers as written).
fn claim_text(claims: &serde_json::Map<String, serde_json::Value>, path: &str) -> Option<String> {
    match claim(claims, path)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A claim as a list: an array of strings, or one string (space separated words for `scope`-like claims).
fn claim_list(claims: &serde_json::Map<String, serde_json::Value>, path: &str) -> Vec<String> {
    match claim(claims, path) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The token's scopes: `scope` (space separated, RFC 8693) and `scp` (a list or string, as Azure AD and Okta).
fn scopes(claims: &serde_json::Map<String, serde_json::Value>) -> impl Iterator<Item = String> {
    let mut all = claim_list(claims, "scope");
    all.extend(claim_list(claims, "scp"));
    all.into_iter()
}

/// LiteLLM's route groups (`LiteLLMRoutes`) as far as tollgate serves them.
fn in_group(group: &str, path: &str) -> Option<bool> {
    let p = path.strip_prefix("/v1").unwrap_or(path);
    Some(match group {
        "openai_routes" | "llm_api_routes" => is_openai_route(path),
        "info_routes" => {
            matches!(
                path,
                "/key/info"
                    | "/key/list"
                    | "/team/info"
                    | "/team/list"
                    | "/user/info"
                    | "/organization/info"
                    | "/organization/list"
                    | "/model/info"
                    | "/v1/model/info"
                    | "/model_group/info"
                    | "/health"
            ) || p == "/models"
                || p.starts_with("/models/")
        }
        "management_routes" => {
            [
                "/key/",
                "/user/",
                "/team/",
                "/organization/",
                "/budget/",
                "/customer/",
                "/end_user/",
            ]
            .iter()
            .any(|pre| path.starts_with(pre))
                || path == "/config/reload"
        }
        "spend_tracking_routes" => {
            path.starts_with("/spend/") || path.starts_with("/global/spend/")
        }
        "global_spend_tracking_routes" => path.starts_with("/global/spend/"),
        _ => return None,
    })
}

/// The OpenAI-compatible (and Anthropic) inference routes.
pub fn is_openai_route(path: &str) -> bool {
    let p = path.strip_prefix("/anthropic").unwrap_or(path);
    if p == "/v1/messages" || p.starts_with("/v1/messages/") || p == "/v2/rerank" {
        return true;
    }
    let p = p.strip_prefix("/v1").unwrap_or(p);
    let in_path = p.starts_with("/engines/") || p.starts_with("/openai/deployments/");
    matches!(
        p,
        "/chat/completions" | "/completions" | "/embeddings" | "/responses" | "/models" | "/rerank"
    ) || p.starts_with("/models/")
        || in_path
            && (p.ends_with("/chat/completions")
                || p.ends_with("/completions")
                || p.ends_with("/embeddings"))
}

/// Whether `path` is in one of `allowed`: route group names, exact paths, or `prefix/*`.
pub fn route_allowed(allowed: &[String], path: &str) -> bool {
    allowed.iter().any(|a| match in_group(a, path) {
        Some(yes) => yes,
        None => match a.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => a.trim_start_matches('/') == path.trim_start_matches('/'),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn route_groups() {
        let team = v(&["openai_routes", "info_routes"]);
        for p in [
            "/chat/completions",
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/messages",
            "/anthropic/v1/messages/count_tokens",
            "/openai/deployments/gpt/chat/completions",
            "/v1/models",
            "/key/info",
            "/model/info",
        ] {
            assert!(route_allowed(&team, p), "{p}");
        }
        for p in [
            "/key/generate",
            "/team/new",
            "/config/reload",
            "/global/spend/report",
        ] {
            assert!(!route_allowed(&team, p), "{p}");
        }
        let admin = v(&["management_routes"]);
        assert!(route_allowed(&admin, "/key/generate"));
        assert!(!route_allowed(&admin, "/v1/chat/completions"));
        assert!(route_allowed(
            &v(&["/v1/chat/completions"]),
            "/v1/chat/completions"
        ));
        assert!(route_allowed(
            &v(&["v1/chat/completions"]),
            "/v1/chat/completions"
        ));
        assert!(!route_allowed(
            &v(&["/v1/chat/completions"]),
            "/v1/embeddings"
        ));
        assert!(route_allowed(&v(&["/spend/*"]), "/spend/logs"));
    }

    #[test]
    fn claims_as_text_and_lists() {
        let c: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
            serde_json::json!({"sub": "u1", "n": 7, "groups": ["a", "b"], "scope": "x litellm_proxy_admin",
                "scp": ["y"], "ra": {"client": {"roles": ["r1"]}}}),
        )
        .unwrap_or_default();
        assert_eq!(claim_text(&c, "sub").as_deref(), Some("u1"));
        assert_eq!(claim_text(&c, "n").as_deref(), Some("7"));
        assert_eq!(claim_list(&c, "groups"), ["a", "b"]);
        assert_eq!(claim_list(&c, "ra.client.roles"), ["r1"]);
        assert_eq!(
            scopes(&c).collect::<Vec<_>>(),
            ["x", "litellm_proxy_admin", "y"]
        );
    }
}
