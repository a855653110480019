//! Request-hardening settings: client-side credentials (`general_settings.allow_client_side_credentials`, `litellm_params.configurable_clientside_auth_params`), body limits (`tollgate_max_json_depth`, `tollgate_max_messages`), header size, `--limit_concurrency` and CORS (`allowed_origins`).

use crate::convert::{self, Diag, found};
use crate::env::Env;
use crate::error::{ConfigError, KeyPath};
use crate::types::{Config, Overrides};
use crate::yaml::{Node, Value};

/// Default deepest JSON nesting accepted in a request body (`general_settings.tollgate_max_json_depth`).
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;
/// Default largest `messages` (chat, Anthropic) / `input` (Responses) list (`general_settings.tollgate_max_messages`).
pub const DEFAULT_MAX_MESSAGES: usize = 10_000;
/// Default limit on the request head (`general_settings.tollgate_max_header_bytes`).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The smallest header limit hyper accepts for HTTP/1.1 (its minimum read buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;

/// Request body fields that carry upstream credentials or an upstream address. Refused unless
/// `allow_client_side_credentials` (or the deployment's `configurable_clientside_auth_params`) allows them.
pub const CLIENT_SIDE_CREDENTIAL_FIELDS: &[&str] = &[
    "api_key",
    "api_base",
    "base_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "vertex_credentials",
];

/// What the server checks on every request before it is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecuritySettings {
    /// `general_settings.allow_client_side_credentials`: honour `api_key` / `api_base` / ... in request
    /// bodies (they replace the deployment's for that call). Off: such requests get a 400.
    pub allow_client_side_credentials: bool,
    /// `general_settings.tollgate_max_json_depth`; default 64.
    pub max_json_depth: usize,
    /// `general_settings.tollgate_max_messages`; default 10 000.
    pub max_messages: usize,
    /// `general_settings.allowed_origins` / `TOLLGATE_ALLOWED_ORIGINS` (comma separated), normalised
    /// (lowercase, default port removed); `"*"` allows any origin. Empty: CORS is off.
    pub allowed_origins: Vec<String>,
}

impl Default for SecuritySettings {
    fn default() -> SecuritySettings {
        SecuritySettings {
            allow_client_side_credentials: false,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_messages: DEFAULT_MAX_MESSAGES,
            allowed_origins: Vec::new(),
        }
    }
}

impl SecuritySettings {
    /// Whether CORS headers are sent at all.
    #[must_use]
    pub fn cors_enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }

    /// Whether `"*"` is among the allowed origins.
    #[must_use]
    pub fn any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }

    /// Whether a request's `Origin` is allowed: exact scheme, host (case-insensitive) and port.
    #[must_use]
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.any_origin() {
            return true;
        }
        match normalize_origin(origin) {
            Some(o) => self.allowed_origins.contains(&o),
            None => false,
        }
    }
}

/// `scheme://host[:port]` lowercased, with the scheme's default port removed; `None` if `s` is not an
/// origin (a path, query, user info, or no host).
#[must_use]
pub fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim();
    let (scheme, rest) = s.split_once("://")?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p.parse().ok()?;
            let default = matches!((scheme.as_str(), n), ("http", 80) | ("https", 443));
            (!default).then_some(n)
        }
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Read the settings into `config.security` and the listener limits into `config.server` (call after the
/// server settings are built).
pub(crate) fn read(root: &Node, env: &Env, o: &Overrides, config: &mut Config, diag: &mut Diag) {
    let mut s = SecuritySettings::default();
    let general = KeyPath::root().key("general_settings");
    let entries = crate::build::section(root, "general_settings");
    let mut origins_from_file = None;
    for e in entries {
        let path = general.key(&e.key);
        let v = &e.value;
        match e.key.as_str() {
            "allow_client_side_credentials" => {
                if let Some(b) = convert::boolean(v, &path, diag) {
                    s.allow_client_side_credentials = b;
                }
            }
            "tollgate_max_json_depth" => {
                if let Some(n) = convert::at_least(v, &path, diag, 1) {
                    s.max_json_depth = n;
                }
            }
            "tollgate_max_messages" => {
                if let Some(n) = convert::at_least(v, &path, diag, 1) {
                    s.max_messages = n;
                }
            }
            "tollgate_max_header_bytes" => {
                if let Some(n) = convert::whole(v, &path, diag) {
                    match usize::try_from(n) {
                        Ok(n) if n >= MIN_MAX_HEADER_BYTES && n <= u32::MAX as usize => {
                            config.server.max_header_bytes = n;
                        }
                        _ => diag.error(
                            Some(&v.loc),
                            &path,
                            format!(
                                "must be between {MIN_MAX_HEADER_BYTES} and {} bytes, found {}",
                                u32::MAX,
                                found(v)
                            ),
                        ),
                    }
                }
            }
            "allowed_origins" => origins_from_file = origins(v, &path, diag),
            _ => {}
        }
    }
    match env.first_non_empty(&["TOLLGATE_ALLOWED_ORIGINS"]) {
        Some((name, value)) => {
            let mut list = Vec::new();
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match origin(item) {
                    Ok(o) => list.push(o),
                    Err(why) => diag.errors.push(ConfigError::Env {
                        variable: name.clone(),
                        message: format!("invalid origin \"{item}\": {why}"),
                    }),
                }
            }
            s.allowed_origins = list;
        }
        None => s.allowed_origins = origins_from_file.unwrap_or_default(),
    }
    config.server.limit_concurrency = match o.limit_concurrency {
        Some(0) => {
            diag.error(
                None,
                &KeyPath::root().key("--limit_concurrency"),
                "must be at least 1",
            );
            None
        }
        Some(n) => Some(n),
        None => limit_concurrency_env(env, diag),
    };
    check_clientside_params(root, diag);
    config.security = s;
}

/// `TOLLGATE_LIMIT_CONCURRENCY`, then `LIMIT_CONCURRENCY` (uvicorn's variable).
fn limit_concurrency_env(env: &Env, diag: &mut Diag) -> Option<usize> {
    let (name, value) =
        env.first_non_empty(&["TOLLGATE_LIMIT_CONCURRENCY", "LIMIT_CONCURRENCY"])?;
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            diag.errors.push(ConfigError::Env {
                variable: name,
                message: format!(
                    "invalid value \"{value}\": expected a whole number of at least 1"
                ),
            });
            None
        }
    }
}

fn origin(item: &str) -> Result<String, &'static str> {
    if item == "*" {
        return Ok("*".to_owned());
    }
    normalize_origin(item).ok_or("expected \"*\" or scheme://host[:port] without a path")
}

/// `allowed_origins`: a list of origins (or `"*"`).
fn origins(v: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Vec<String>> {
    let items = convert::string_list(v, path, diag)?;
    let nodes: Vec<&Node> = match &v.value {
        Value::Seq(nodes) => nodes.iter().collect(),
        _ => vec![v],
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match origin(item.trim()) {
            Ok(o) => out.push(o),
            Err(why) => {
                let node = nodes.get(i).copied().unwrap_or(v);
                let p = if matches!(v.value, Value::Seq(_)) {
                    path.index(i)
                } else {
                    path.clone()
                };
                diag.error(Some(&node.loc), &p, format!("{why}, found {}", found(node)));
            }
        }
    }
    Some(out)
}

/// `litellm_params.configurable_clientside_auth_params` of every deployment: a list of field names
/// (LiteLLM's `{field: regex}` entries are not supported: they are ignored with a warning, so the field
/// stays refused). The value stays in the deployment's `extra_params`; the server reads it there.
fn check_clientside_params(root: &Node, diag: &mut Diag) {
    let Some(list) = root.get("model_list") else {
        return;
    };
    let Value::Seq(items) = &list.value.value else {
        return;
    };
    let base = KeyPath::root().key("model_list");
    for (i, item) in items.iter().enumerate() {
        let Some(params) = item.get("litellm_params") else {
            continue;
        };
        let Some(e) = params.value.get("configurable_clientside_auth_params") else {
            continue;
        };
        let path = base
            .index(i)
            .key("litellm_params")
            .key("configurable_clientside_auth_params");
        let Some(entries) =
            convert::sequence(&e.value, &path, diag, "a list of request body field names")
        else {
            continue;
        };
        for (j, entry) in entries.iter().enumerate() {
            let p = path.index(j);
            match &entry.value {
                Value::Map(_) => diag.warn(
                    Some(&entry.loc),
                    &p,
                    "regex patterns are not supported; this entry is ignored (list the field name to allow any value)",
                ),
                _ => {
                    if let Some(name) = convert::string(entry, &p, diag)
                        && !CLIENT_SIDE_CREDENTIAL_FIELDS.contains(&name.as_str())
                    {
                        diag.error(
                            Some(&entry.loc),
                            &p,
                            format!(
                                "unknown field `{name}` (one of {})",
                                CLIENT_SIDE_CREDENTIAL_FIELDS.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            normalize_origin("https://App.Example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            normalize_origin("https://app.example.com:443").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            normalize_origin("http://localhost:3000").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(
            normalize_origin("http://[::1]").as_deref(),
            Some("http://[::1]")
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/x",
            "https://user@app.example.com",
            "https://",
            "https://app.example.com:99999",
            "https://app.example.com:x",
            "null",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn origin_matching_is_exact() {
        let s = SecuritySettings {
            allowed_origins: vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
            ],
            ..SecuritySettings::default()
        };
        assert!(s.cors_enabled() && !s.any_origin());
        assert!(s.allows_origin("https://app.example.com"));
        assert!(s.allows_origin("https://APP.example.com:443"));
        assert!(s.allows_origin("http://localhost:3000"));
        assert!(!s.allows_origin("http://app.example.com"));
        assert!(!s.allows_origin("https://app.example.com:8443"));
        assert!(!s.allows_origin("https://app.example.com.evil.test"));
        assert!(!s.allows_origin("http://localhost:3001"));
        assert!(!s.allows_origin("null"));
        let any = SecuritySettings {
            allowed_origins: vec!["*".into()],
            ..SecuritySettings::default()
        };
        assert!(any.any_origin() && any.allows_origin("https://whatever.test"));
        assert!(!SecuritySettings::default().cors_enabled());
    }

    fn load(text: &str, env: &[(&str, &str)], o: &Overrides) -> Result<Config, String> {
        let env = Env::from_map(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        crate::load_str(text, std::path::Path::new("config.yaml"), &env, o)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn settings_are_read_with_defaults() {
        let c = load("general_settings: {}\n", &[], &Overrides::default()).unwrap();
        assert_eq!(c.security, SecuritySettings::default());
        assert_eq!(c.server.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(c.server.limit_concurrency, None);
        let c = load(
            "general_settings:\n  allow_client_side_credentials: true\n  tollgate_max_json_depth: 10\n  tollgate_max_messages: 5\n  tollgate_max_header_bytes: 16384\n  allowed_origins: [\"https://App.example.com:443\", \"http://localhost:3000\"]\n",
            &[("LIMIT_CONCURRENCY", "7")],
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.security.allow_client_side_credentials);
        assert_eq!(c.security.max_json_depth, 10);
        assert_eq!(c.security.max_messages, 5);
        assert_eq!(c.server.max_header_bytes, 16384);
        assert_eq!(c.server.limit_concurrency, Some(7));
        assert_eq!(
            c.security.allowed_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert!(c.unimplemented.is_empty(), "{:?}", c.unimplemented);
        // The flag wins over the environment; the environment's origins over the file's.
        let o = Overrides {
            limit_concurrency: Some(3),
            ..Overrides::default()
        };
        let c = load(
            "general_settings:\n  allowed_origins: [\"https://a.test\"]\n",
            &[
                ("LIMIT_CONCURRENCY", "7"),
                ("TOLLGATE_ALLOWED_ORIGINS", "https://b.test, *"),
            ],
            &o,
        )
        .unwrap();
        assert_eq!(c.server.limit_concurrency, Some(3));
        assert_eq!(c.security.allowed_origins, ["https://b.test", "*"]);
    }

    #[test]
    fn wrong_values_are_errors_with_positions() {
        let e = load(
            "general_settings:\n  tollgate_max_json_depth: 0\n  tollgate_max_messages: many\n  allow_client_side_credentials: maybe\n  tollgate_max_header_bytes: 100\n  allowed_origins: [\"https://ok.test\", \"https://bad.test/path\"]\n",
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.contains("config.yaml:2:") && e.contains("tollgate_max_json_depth"),
            "{e}"
        );
        assert!(
            e.contains("config.yaml:3:") && e.contains("tollgate_max_messages"),
            "{e}"
        );
        assert!(
            e.contains("config.yaml:4:") && e.contains("allow_client_side_credentials"),
            "{e}"
        );
        assert!(
            e.contains("config.yaml:5:") && e.contains("between 8192"),
            "{e}"
        );
        assert!(
            e.contains("config.yaml:6:") && e.contains("allowed_origins[1]"),
            "{e}"
        );
        let e = load("{}\n", &[("LIMIT_CONCURRENCY", "0")], &Overrides::default()).unwrap_err();
        assert!(e.contains("LIMIT_CONCURRENCY"), "{e}");
        let e = load(
            "{}\n",
            &[("TOLLGATE_ALLOWED_ORIGINS", "nope")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.contains("TOLLGATE_ALLOWED_ORIGINS") && e.contains("nope"),
            "{e}"
        );
        let o = Overrides {
            limit_concurrency: Some(0),
            ..Overrides::default()
        };
        assert!(
            load("{}\n", &[], &o)
                .unwrap_err()
                .contains("--limit_concurrency")
        );
    }

    #[test]
    fn clientside_auth_params_are_checked() {
        let base = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      configurable_clientside_auth_params: ";
        let c = load(
            &format!("{base}[\"api_base\", \"api_key\"]\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.deployments[0].extra_params["configurable_clientside_auth_params"],
            serde_json::json!(["api_base", "api_key"])
        );
        let e = load(
            &format!("{base}[\"api_bsae\"]\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.contains("config.yaml:5:") && e.contains("api_bsae"),
            "{e}"
        );
        let e = load(&format!("{base}api_base\n"), &[], &Overrides::default()).unwrap_err();
        assert!(e.contains("expected a list"), "{e}");
        let c = load(
            &format!("{base}[{{api_base: \"^https://x$\"}}]\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("regex patterns are not supported")),
            "{:?}",
            c.warnings
        );
    }
}
