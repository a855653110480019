//! `general_settings.enable_jwt_auth` and `litellm_jwtauth` (LiteLLM's `LiteLLM_JWTAuth` fields) into [`JwtSettings`], with the key set URLs, audience and issuer from the environment (`JWT_PUBLIC_KEY_URL`, `JWT_AUDIENCE`, `JWT_ISSUER`).

use std::time::Duration;

use crate::convert::{self, Diag};
use crate::env::Env;
use crate::error::KeyPath;
use crate::keys;
use crate::yaml::Node;

/// LiteLLM's default `admin_jwt_scope`.
pub const DEFAULT_ADMIN_SCOPE: &str = "litellm_proxy_admin";
/// LiteLLM's default `public_key_ttl` (seconds).
pub const DEFAULT_PUBLIC_KEY_TTL: Duration = Duration::from_secs(600);
/// Clock skew allowed on `exp`, `nbf` and `iat` (`litellm_jwtauth.tollgate_leeway_seconds`).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// At most one key set refresh for an unknown `kid` this often (`tollgate_jwks_refresh_interval`).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// JWT authentication, when `general_settings.enable_jwt_auth` is on.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// `JWT_PUBLIC_KEY_URL` (comma separated) or `litellm_jwtauth.tollgate_public_key_urls`: the JWKS
    /// endpoints whose keys are trusted.
    pub public_key_urls: Vec<String>,
    /// `JWT_AUDIENCE` (comma separated) or `litellm_jwtauth.audience`: one must be in the token's `aud`;
    /// empty = the audience is not checked (as LiteLLM without `JWT_AUDIENCE`).
    pub audiences: Vec<String>,
    /// `JWT_ISSUER` or `litellm_jwtauth.issuer`: the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// `public_key_ttl` (seconds); default 600.
    pub public_key_ttl: Duration,
    /// `tollgate_jwks_refresh_interval` (seconds): the rate limit on refreshes caused by an unknown `kid`.
    pub refresh_interval: Duration,
    /// `tollgate_leeway_seconds`: allowed clock skew; default 30 s.
    pub leeway: Duration,
    /// `admin_jwt_scope`: a token whose `scope` (space separated, or `scp` list) holds it is a proxy admin.
    pub admin_jwt_scope: String,
    /// `admin_allowed_routes`: route groups or paths an admin token may call.
    pub admin_allowed_routes: Vec<String>,
    /// `team_id_jwt_field`: the claim (dot path) naming the token's team.
    pub team_id_jwt_field: Option<String>,
    /// `team_ids_jwt_field`: a claim holding a list of teams; the request uses the first that may use the model.
    pub team_ids_jwt_field: Option<String>,
    /// `team_id_default`: the team of tokens that name none.
    pub team_id_default: Option<String>,
    /// `team_id_upsert`: create a team the token names that does not exist yet.
    pub team_id_upsert: bool,
    /// `team_allowed_routes`: what a token with a team may call; default `openai_routes`, `info_routes`.
    pub team_allowed_routes: Vec<String>,
    /// `user_id_jwt_field`
    pub user_id_jwt_field: Option<String>,
    /// `user_email_jwt_field`
    pub user_email_jwt_field: Option<String>,
    /// `user_allowed_email_domain`: the email claim must end in `@<domain>`.
    pub user_allowed_email_domain: Option<String>,
    /// `user_roles_jwt_field`: a claim holding the user's roles (list or space separated string).
    pub user_roles_jwt_field: Option<String>,
    /// `user_allowed_roles`: one of the token's roles must be listed.
    pub user_allowed_roles: Option<Vec<String>>,
    /// `user_id_upsert`: create the user on first sight (else an unknown user is refused).
    pub user_id_upsert: bool,
    /// `org_id_jwt_field`
    pub org_id_jwt_field: Option<String>,
    /// `end_user_id_jwt_field`
    pub end_user_id_jwt_field: Option<String>,
}

impl Default for JwtSettings {
    fn default() -> JwtSettings {
        JwtSettings {
            public_key_urls: Vec::new(),
            audiences: Vec::new(),
            issuer: None,
            public_key_ttl: DEFAULT_PUBLIC_KEY_TTL,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            leeway: DEFAULT_LEEWAY,
            admin_jwt_scope: DEFAULT_ADMIN_SCOPE.to_owned(),
            admin_allowed_routes: [
                "management_routes",
                "spend_tracking_routes",
                "global_spend_tracking_routes",
                "info_routes",
            ]
            .map(str::to_owned)
            .to_vec(),
            team_id_jwt_field: None,
            team_ids_jwt_field: None,
            team_id_default: None,
            team_id_upsert: false,
            team_allowed_routes: ["openai_routes", "info_routes"].map(str::to_owned).to_vec(),
            user_id_jwt_field: None,
            user_email_jwt_field: None,
            user_allowed_email_domain: None,
            user_roles_jwt_field: None,
            user_allowed_roles: None,
            user_id_upsert: false,
            org_id_jwt_field: None,
            end_user_id_jwt_field: None,
        }
    }
}

/// The `litellm_jwtauth` keys (LiteLLM's `LiteLLM_JWTAuth`), implemented or not.
const KEYS: &[(&str, bool)] = &[
    ("admin_jwt_scope", true),
    ("admin_allowed_routes", true),
    ("team_id_jwt_field", true),
    ("team_ids_jwt_field", true),
    ("team_id_default", true),
    ("team_id_upsert", true),
    ("team_allowed_routes", true),
    ("user_id_jwt_field", true),
    ("user_email_jwt_field", true),
    ("user_allowed_email_domain", true),
    ("user_roles_jwt_field", true),
    ("user_allowed_roles", true),
    ("user_id_upsert", true),
    ("org_id_jwt_field", true),
    ("end_user_id_jwt_field", true),
    ("public_key_ttl", true),
    ("audience", true),
    ("issuer", true),
    // Team model lists are always enforced for JWT callers.
    ("enforce_team_based_model_access", true),
    ("tollgate_leeway_seconds", true),
    ("tollgate_jwks_refresh_interval", true),
    ("tollgate_public_key_urls", true),
    // LiteLLM settings not implemented yet.
    ("public_allowed_routes", false),
    ("enforce_rbac", false),
    ("roles_jwt_field", false),
    ("role_mappings", false),
    ("jwt_litellm_role_map", false),
    ("object_id_jwt_field", false),
    ("scope_mappings", false),
    ("enforce_scope_based_access", false),
    ("custom_validate", false),
    ("issuers", false),
    ("sync_user_role_and_teams", false),
    ("team_alias_jwt_field", false),
    ("org_alias_jwt_field", false),
    ("upsert_sso_user_to_team", false),
    ("oidc_userinfo_enabled", false),
    ("oidc_userinfo_endpoint", false),
    ("oidc_userinfo_cache_ttl", false),
    ("virtual_key_claim_field", false),
    ("virtual_key_mapping_cache_ttl", false),
    ("routing_overrides", false),
    ("disable_audience_validation", false),
];

/// Comma separated list from the environment (`TOLLGATE_<NAME>` first), trimmed, empties dropped.
fn env_list(env: &Env, name: &str) -> Option<Vec<String>> {
    let value = env
        .get(&format!("TOLLGATE_{name}"))
        .or_else(|| env.get(name))?;
    let list: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!list.is_empty()).then_some(list)
}

/// Reads `enable_jwt_auth` (`enabled`) and the `litellm_jwtauth` mapping (`node`, if present).
/// `None` when JWT auth is off; settings under `litellm_jwtauth` are still checked for typos.
pub(crate) fn read(
    enabled: Option<(bool, &Node)>,
    node: Option<&Node>,
    env: &Env,
    diag: &mut Diag,
) -> Option<JwtSettings> {
    let path = KeyPath::root()
        .key("general_settings")
        .key("litellm_jwtauth");
    let mut s = JwtSettings::default();
    let mut file_urls = None;
    if let Some(node) = node
        && let Some(entries) = convert::mapping(node, &path, diag, "a mapping of JWT settings")
    {
        for e in entries {
            let p = path.key(&e.key);
            let v = &e.value;
            match KEYS.iter().find(|(k, _)| *k == e.key) {
                None => {
                    let hint = keys::did_you_mean(&e.key, KEYS.iter().map(|(k, _)| *k))
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_default();
                    diag.error(
                        Some(&e.key_loc),
                        &p,
                        format!("unknown key in litellm_jwtauth{hint}"),
                    );
                    continue;
                }
                Some((_, false)) => {
                    diag.unimplemented.insert(p.as_str().to_owned());
                    continue;
                }
                Some(_) => {}
            }
            let text = |diag: &mut Diag| convert::string(v, &p, diag).filter(|t| !t.is_empty());
            match e.key.as_str() {
                "admin_jwt_scope" => {
                    if let Some(t) = text(diag) {
                        s.admin_jwt_scope = t;
                    }
                }
                "admin_allowed_routes" => {
                    if let Some(l) = convert::string_list(v, &p, diag) {
                        s.admin_allowed_routes = l;
                    }
                }
                "team_allowed_routes" => {
                    if let Some(l) = convert::string_list(v, &p, diag) {
                        s.team_allowed_routes = l;
                    }
                }
                "team_id_jwt_field" => s.team_id_jwt_field = text(diag),
                "team_ids_jwt_field" => s.team_ids_jwt_field = text(diag),
                "team_id_default" => s.team_id_default = text(diag),
                "team_id_upsert" => {
                    s.team_id_upsert = convert::boolean(v, &p, diag).unwrap_or(false);
                }
                "user_id_jwt_field" => s.user_id_jwt_field = text(diag),
                "user_email_jwt_field" => s.user_email_jwt_field = text(diag),
                "user_allowed_email_domain" => {
                    s.user_allowed_email_domain =
                        text(diag).map(|d| d.trim_start_matches('@').to_ascii_lowercase());
                }
                "user_roles_jwt_field" => s.user_roles_jwt_field = text(diag),
                "user_allowed_roles" => s.user_allowed_roles = convert::string_list(v, &p, diag),
                "user_id_upsert" => {
                    s.user_id_upsert = convert::boolean(v, &p, diag).unwrap_or(false);
                }
                "org_id_jwt_field" => s.org_id_jwt_field = text(diag),
                "end_user_id_jwt_field" => s.end_user_id_jwt_field = text(diag),
                "public_key_ttl" => {
                    if let Some(d) = convert::seconds(v, &p, diag, false) {
                        s.public_key_ttl = d;
                    }
                }
                "tollgate_leeway_seconds" => {
                    if let Some(d) = convert::seconds(v, &p, diag, true) {
                        s.leeway = d;
                    }
                }
                "tollgate_jwks_refresh_interval" => {
                    if let Some(d) = convert::seconds(v, &p, diag, false) {
                        s.refresh_interval = d;
                    }
                }
                "audience" => {
                    if let Some(l) = convert::string_list(v, &p, diag) {
                        s.audiences = l;
                    }
                }
                "issuer" => s.issuer = text(diag),
                "tollgate_public_key_urls" => file_urls = convert::string_list(v, &p, diag),
                "enforce_team_based_model_access" => {
                    let _ = convert::boolean(v, &p, diag);
                }
                _ => {}
            }
        }
    }
    let (on, on_node) = enabled?;
    if !on {
        return None;
    }
    if let Some(l) = env_list(env, "JWT_AUDIENCE") {
        s.audiences = l;
    }
    if let Some(i) = env_list(env, "JWT_ISSUER").and_then(|l| l.into_iter().next()) {
        s.issuer = Some(i);
    }
    s.public_key_urls = env_list(env, "JWT_PUBLIC_KEY_URL")
        .or(file_urls)
        .unwrap_or_default();
    let enable_path = KeyPath::root()
        .key("general_settings")
        .key("enable_jwt_auth");
    if s.public_key_urls.is_empty() {
        diag.error(
            Some(&on_node.loc),
            &enable_path,
            "JWT auth is on but no key set is configured: set JWT_PUBLIC_KEY_URL to your identity provider's JWKS URL (comma separated for several)",
        );
    }
    for url in &s.public_key_urls {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            diag.error(
                Some(&on_node.loc),
                &enable_path,
                format!("JWT_PUBLIC_KEY_URL entry `{url}` is not an http(s) URL"),
            );
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::{Env, Overrides};

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<crate::Config, crate::ConfigError> {
        let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::load_str(
            yaml,
            std::path::Path::new("config.yaml"),
            &env,
            &Overrides::default(),
        )
    }

    #[test]
    fn reads_settings_and_env() {
        let c = load(
            "general_settings:\n  enable_jwt_auth: true\n  litellm_jwtauth:\n    user_id_jwt_field: sub\n    team_ids_jwt_field: groups\n    user_id_upsert: true\n    public_key_ttl: 60\n    user_allowed_roles: [basic_user]\n    enforce_rbac: true\n",
            &[
                ("JWT_PUBLIC_KEY_URL", "http://a/jwks, http://b/jwks"),
                ("JWT_AUDIENCE", "tollgate"),
            ],
        )
        .unwrap();
        let j = c.jwt.expect("jwt on");
        assert_eq!(j.public_key_urls, ["http://a/jwks", "http://b/jwks"]);
        assert_eq!(j.audiences, ["tollgate"]);
        assert_eq!(j.user_id_jwt_field.as_deref(), Some("sub"));
        assert_eq!(j.team_ids_jwt_field.as_deref(), Some("groups"));
        assert!(j.user_id_upsert);
        assert_eq!(j.public_key_ttl.as_secs(), 60);
        assert_eq!(j.user_allowed_roles, Some(vec!["basic_user".to_owned()]));
        assert_eq!(j.team_allowed_routes, ["openai_routes", "info_routes"]);
        assert!(
            c.unimplemented
                .iter()
                .any(|u| u == "general_settings.litellm_jwtauth.enforce_rbac")
        );
    }

    #[test]
    fn off_unless_enabled() {
        let c = load(
            "general_settings:\n  litellm_jwtauth:\n    user_id_jwt_field: sub\n",
            &[("JWT_PUBLIC_KEY_URL", "http://a/jwks")],
        )
        .unwrap();
        assert!(c.jwt.is_none());
        let c = load(
            "general_settings:\n  enable_jwt_auth: false\n",
            &[("JWT_PUBLIC_KEY_URL", "http://a/jwks")],
        )
        .unwrap();
        assert!(c.jwt.is_none());
    }

    #[test]
    fn typos_and_missing_urls_are_errors() {
        let e = load(
            "general_settings:\n  enable_jwt_auth: true\n  litellm_jwtauth:\n    user_id_jwt_feild: sub\n",
            &[("JWT_PUBLIC_KEY_URL", "http://a/jwks")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("config.yaml:4:"), "{e}");
        assert!(e.contains("user_id_jwt_field"), "{e}");
        let e = load("general_settings:\n  enable_jwt_auth: true\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("JWT_PUBLIC_KEY_URL"), "{e}");
        assert!(e.contains("config.yaml:2:"), "{e}");
    }
}
