//! Building the typed `Config` from the merged document: key checks, `model_list` deployments, settings, and CLI > environment > file precedence with validation.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::convert::{self, Diag, found};
use crate::env::Env;
use crate::error::{ConfigError, KeyPath};
use crate::keys::{self, DEPRECATED, Section, Support};
use crate::resolve;
use crate::routing_read;
use crate::secret::Secret;
use crate::types::{Config, Deployment, Mode, ModelInfo, Overrides, ServerSettings, TlsFiles};
use crate::yaml::{Entry, Loc, Node, Value};

/// Keys of a `model_list` entry.
const DEPLOYMENT_KEYS: &[&str] = &["model_name", "litellm_params", "model_info"];

/// Builds the configuration from a merged document (`root` is the top-level mapping).
pub(crate) fn build(
    source: Option<PathBuf>,
    mut root: Node,
    warnings: Vec<String>,
    env: &Env,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut diag = Diag {
        warnings,
        ..Diag::default()
    };
    let (env, overlay) = resolve::environment_variables(&mut root, env, &mut diag);
    let soft = classify(&root, &mut diag);
    resolve::env_refs(&mut root, &env, &soft, &mut diag);

    let mut config = Config {
        source,
        environment_variables: overlay
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect(),
        ..Config::default()
    };
    let file = FileSettings::read(&root, &mut diag);
    config.jwt = read_jwt(&root, &env, &mut diag);
    let routing = routing_read::read(&root, &mut diag);
    let mut located = deployments(&root, &mut diag);
    if let Some(model) = &overrides.model {
        if let Some(d) = cli_deployment(model, overrides.api_base.as_deref(), &mut diag) {
            located.push(Located {
                deployment: d,
                entry: None,
                id: None,
            });
        }
    } else if overrides.api_base.is_some() {
        diag.warnings
            .push("--api_base is only used together with --model; ignored".to_owned());
    }
    assign_ids(&mut located, &mut diag);
    config.deployments = located.into_iter().map(|l| l.deployment).collect();
    config.drop_params = file.drop_params.unwrap_or(false);
    config.json_logs = file.json_logs.unwrap_or(false);
    config.request_timeout = file.router_timeout.or(file.request_timeout);
    server(&mut config, &file, &env, overrides, &mut diag);
    crate::security::read(&root, &env, overrides, &mut config, &mut diag);
    crate::observability::read(&root, &env, overrides, &mut config, &mut diag);
    config.model_group_alias = file.aliases;
    config.hidden_model_group_aliases = file.hidden_aliases;
    check_aliases(&config, &file.alias_locs, &mut diag);
    routing_read::check_groups(
        &routing.groups,
        &config.deployments,
        &config.model_group_alias,
        &mut diag,
    );
    config.routing = routing.settings;

    if let Some(error) = ConfigError::from_many(in_document_order(diag.errors)) {
        return Err(error);
    }
    config.raw = root.to_json();
    config.unimplemented = diag.unimplemented.into_iter().collect();
    config.warnings = diag.warnings;
    Ok(config)
}

/// `general_settings.enable_jwt_auth` and `litellm_jwtauth`.
fn read_jwt(root: &Node, env: &Env, diag: &mut Diag) -> Option<crate::jwt::JwtSettings> {
    let general = section(root, "general_settings");
    let path = KeyPath::root().key("general_settings");
    let enabled = general
        .iter()
        .find(|e| e.key == "enable_jwt_auth")
        .and_then(|e| {
            convert::boolean(&e.value, &path.key("enable_jwt_auth"), diag).map(|b| (b, &e.value))
        });
    let node = general
        .iter()
        .find(|e| e.key == "litellm_jwtauth")
        .map(|e| &e.value);
    crate::jwt::read(enabled, node, env, diag)
}

/// Problems with a position first, by file, line and column; then the others as found.
fn in_document_order(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by(|a, b| match (a.location(), b.location()) {
        (Some(x), Some(y)) => (&x.file, x.line, x.column).cmp(&(&y.file, y.line, y.column)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    errors
}

/// The entries of a top-level section, or nothing if it is absent or not a mapping (reported by
/// [`classify`]).
/// The entries of a top-level section (none when it is absent or not a mapping).
pub(crate) fn section<'a>(root: &'a Node, name: &str) -> &'a [Entry] {
    root.get(name)
        .and_then(|e| e.value.entries())
        .unwrap_or_default()
}

/// Checks top-level and settings keys against LiteLLM's lists: unknown keys are errors, known
/// unimplemented ones are recorded. Returns the unimplemented paths.
fn classify(root: &Node, diag: &mut Diag) -> Vec<String> {
    let mut soft = Vec::new();
    for entry in root.entries().unwrap_or_default() {
        let path = KeyPath::root().key(&entry.key);
        // `x-...` / `.…` top-level keys hold YAML anchors (the docker-compose convention); LiteLLM ignores
        // top-level keys it does not know, so these are accepted silently.
        if entry.key.starts_with("x-") || entry.key.starts_with('.') {
            continue;
        }
        match Section::Top.lookup(&entry.key) {
            None => diag.error(
                Some(&entry.key_loc),
                &path,
                keys::unknown_key_message(Section::Top, &entry.key),
            ),
            Some(Support::Unimplemented) => {
                diag.unimplemented.insert(path.as_str().to_owned());
                soft.push(path.as_str().to_owned());
            }
            Some(Support::Implemented) => {
                let nested = Section::NESTED.into_iter().find(|s| s.name() == entry.key);
                if let Some(nested) = nested {
                    classify_section(nested, &entry.value, &path, diag, &mut soft);
                }
            }
        }
    }
    soft
}

fn classify_section(
    section: Section,
    node: &Node,
    path: &KeyPath,
    diag: &mut Diag,
    soft: &mut Vec<String>,
) {
    let Some(entries) = convert::mapping(node, path, diag, "a mapping of settings") else {
        return;
    };
    for entry in entries {
        let key_path = path.key(&entry.key);
        match section.lookup(&entry.key) {
            None => diag.error(
                Some(&entry.key_loc),
                &key_path,
                keys::unknown_key_message(section, &entry.key),
            ),
            Some(Support::Unimplemented) => {
                diag.unimplemented.insert(key_path.as_str().to_owned());
                soft.push(key_path.as_str().to_owned());
            }
            Some(Support::Implemented) => {}
        }
        if let Some((_, note)) = DEPRECATED.iter().find(|(p, _)| *p == key_path.as_str()) {
            diag.warn(Some(&entry.key_loc), &key_path, note);
        }
    }
}

/// The implemented settings from `general_settings`, `litellm_settings` and `router_settings`.
#[derive(Default)]
struct FileSettings {
    master_key: Option<Secret>,
    database_url: Option<Secret>,
    max_request_body_bytes: Option<usize>,
    header_read_timeout: Option<Duration>,
    graceful_shutdown_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    sqlite_path: Option<String>,
    pool_limit: Option<u64>,
    connection_timeout: Option<Duration>,
    batch_write_interval: Option<Duration>,
    batch_size: Option<u64>,
    journal_path: Option<String>,
    refresh_interval: Option<Duration>,
    allow_requests_on_db_unavailable: Option<bool>,
    skip_migrations: Option<bool>,
    disable_reset_budget: Option<bool>,
    redis_url: Option<Secret>,
    redis_host: Option<String>,
    redis_port: Option<u64>,
    redis_password: Option<Secret>,
    redis_db: Option<u64>,
    redis_prefix: Option<String>,
    drop_params: Option<bool>,
    request_timeout: Option<Duration>,
    json_logs: Option<bool>,
    router_timeout: Option<Duration>,
    aliases: std::collections::BTreeMap<String, String>,
    hidden_aliases: BTreeSet<String>,
    alias_locs: HashMap<String, (Loc, KeyPath)>,
}

impl FileSettings {
    fn read(root: &Node, diag: &mut Diag) -> FileSettings {
        let mut s = FileSettings::default();
        let general = KeyPath::root().key("general_settings");
        for e in section(root, "general_settings") {
            let path = general.key(&e.key);
            let v = &e.value;
            match e.key.as_str() {
                "master_key" => s.master_key = non_empty_secret(v, &path, diag),
                "database_url" => s.database_url = non_empty_secret(v, &path, diag),
                "max_request_size_mb" => {
                    s.max_request_body_bytes = convert::non_negative(v, &path, diag)
                        .and_then(|mb| mebibytes(mb, v, &path, diag));
                }
                "tollgate_header_read_timeout" => {
                    s.header_read_timeout = convert::seconds(v, &path, diag, false);
                }
                "tollgate_graceful_shutdown_timeout" => {
                    s.graceful_shutdown_timeout = convert::seconds(v, &path, diag, true);
                }
                "tollgate_keepalive_timeout" => {
                    s.keepalive_timeout = convert::seconds(v, &path, diag, true);
                }
                "tollgate_database_path" => s.sqlite_path = convert::string(v, &path, diag),
                "tollgate_spend_journal_path" => s.journal_path = convert::string(v, &path, diag),
                "database_connection_pool_limit" => s.pool_limit = convert::whole(v, &path, diag),
                "database_connection_timeout" => {
                    s.connection_timeout = convert::seconds(v, &path, diag, false);
                }
                "proxy_batch_write_at" => {
                    s.batch_write_interval = convert::seconds(v, &path, diag, false);
                }
                "tollgate_spend_batch_size" => s.batch_size = convert::whole(v, &path, diag),
                "tollgate_accounts_refresh_interval" => {
                    s.refresh_interval = convert::seconds(v, &path, diag, false);
                }
                "allow_requests_on_db_unavailable" => {
                    s.allow_requests_on_db_unavailable = convert::boolean(v, &path, diag);
                }
                "disable_prisma_schema_update" => {
                    s.skip_migrations = convert::boolean(v, &path, diag)
                }
                "disable_reset_budget" => s.disable_reset_budget = convert::boolean(v, &path, diag),
                _ => {}
            }
        }
        let litellm = KeyPath::root().key("litellm_settings");
        for e in section(root, "litellm_settings") {
            let path = litellm.key(&e.key);
            let v = &e.value;
            match e.key.as_str() {
                "drop_params" => s.drop_params = convert::boolean(v, &path, diag),
                "json_logs" => s.json_logs = convert::boolean(v, &path, diag),
                "set_verbose" => {
                    let _ = convert::boolean(v, &path, diag);
                }
                "request_timeout" => s.request_timeout = convert::seconds(v, &path, diag, false),
                _ => {}
            }
        }
        let router = KeyPath::root().key("router_settings");
        for e in section(root, "router_settings") {
            let path = router.key(&e.key);
            match e.key.as_str() {
                "timeout" => s.router_timeout = convert::seconds(&e.value, &path, diag, false),
                "redis_url" => s.redis_url = non_empty_secret(&e.value, &path, diag),
                "redis_host" => s.redis_host = convert::string(&e.value, &path, diag),
                "redis_port" => s.redis_port = convert::whole(&e.value, &path, diag),
                "redis_password" => s.redis_password = non_empty_secret(&e.value, &path, diag),
                "redis_db" => s.redis_db = convert::whole(&e.value, &path, diag),
                "tollgate_redis_prefix" => s.redis_prefix = convert::string(&e.value, &path, diag),
                "model_group_alias" => s.read_aliases(&e.value, &path, diag),
                _ => {}
            }
        }
        s
    }

    /// `model_group_alias`: `alias: group` or `alias: {model: group, hidden: true}`.
    fn read_aliases(&mut self, node: &Node, path: &KeyPath, diag: &mut Diag) {
        let Some(entries) = convert::mapping(node, path, diag, "a mapping of alias: model group")
        else {
            return;
        };
        for e in entries {
            let alias_path = path.key(&e.key);
            let (target, hidden) = match &e.value.value {
                Value::Map(_) => {
                    let mut target = None;
                    let mut hidden = false;
                    for f in e.value.entries().unwrap_or_default() {
                        let field_path = alias_path.key(&f.key);
                        match f.key.as_str() {
                            "model" => target = convert::string(&f.value, &field_path, diag),
                            "hidden" => {
                                hidden =
                                    convert::boolean(&f.value, &field_path, diag).unwrap_or(false);
                            }
                            other => {
                                let hint = keys::did_you_mean(other, ["model", "hidden"])
                                    .map(|k| format!("; did you mean `{k}`?"))
                                    .unwrap_or_default();
                                diag.error(
                                    Some(&f.key_loc),
                                    &field_path,
                                    format!(
                                        "unknown key (an alias takes `model` and `hidden`){hint}"
                                    ),
                                );
                            }
                        }
                    }
                    if target.is_none() && e.value.get("model").is_none() {
                        diag.error(
                            Some(&e.value.loc),
                            &alias_path,
                            "missing required key `model`",
                        );
                    }
                    (target, hidden)
                }
                _ => (convert::string(&e.value, &alias_path, diag), false),
            };
            let Some(target) = target else { continue };
            if target.trim().is_empty() {
                diag.error(
                    Some(&e.value.loc),
                    &alias_path,
                    "the model group must not be empty",
                );
                continue;
            }
            if hidden {
                self.hidden_aliases.insert(e.key.clone());
            }
            self.alias_locs
                .insert(e.key.clone(), (e.value.loc.clone(), alias_path));
            self.aliases.insert(e.key.clone(), target);
        }
    }
}

fn non_empty_secret(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Secret> {
    let value = convert::string(node, path, diag)?;
    if value.trim().is_empty() {
        diag.error(Some(&node.loc), path, "must not be empty");
        return None;
    }
    Some(Secret::new(value))
}

fn mebibytes(mb: f64, node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<usize> {
    let bytes = (mb * 1024.0 * 1024.0).round();
    if bytes < 1.0 || bytes > usize::MAX as f64 {
        diag.error(
            Some(&node.loc),
            path,
            format!("must be a positive number of MiB, found {}", found(node)),
        );
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(bytes as usize)
}

/// A deployment with where its entry and its `model_info.id` are written.
struct Located {
    deployment: Deployment,
    entry: Option<Loc>,
    id: Option<Loc>,
}

/// `model_list` in order.
fn deployments(root: &Node, diag: &mut Diag) -> Vec<Located> {
    let path = KeyPath::root().key("model_list");
    let Some(entry) = root.get("model_list") else {
        return Vec::new();
    };
    let Some(items) = convert::sequence(
        &entry.value,
        &path,
        diag,
        "a list of deployments (`- model_name: ...`)",
    ) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            deployment(item, &path.index(i), diag).map(|deployment| Located {
                deployment,
                entry: Some(item.loc.clone()),
                id: item
                    .get("model_info")
                    .and_then(|e| e.value.get("id"))
                    .map(|e| e.value.loc.clone()),
            })
        })
        .collect()
}

fn deployment(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Deployment> {
    let Some(entries) = node.entries() else {
        diag.error(
            Some(&node.loc),
            path,
            format!(
                "expected a mapping with `model_name` and `litellm_params`, found {}",
                found(node)
            ),
        );
        return None;
    };
    for e in entries {
        if !DEPLOYMENT_KEYS.contains(&e.key.as_str()) {
            let hint = keys::did_you_mean(&e.key, DEPLOYMENT_KEYS.iter().copied())
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            diag.warn(
                Some(&e.key_loc),
                &path.key(&e.key),
                format!("unknown deployment key, ignored (a deployment has model_name, litellm_params and model_info){hint}"),
            );
        }
    }
    let model_name = match node.get("model_name") {
        None => {
            diag.error(Some(&node.loc), path, missing("model_name", entries));
            None
        }
        Some(e) => {
            let p = path.key("model_name");
            let name = convert::string(&e.value, &p, diag);
            match name {
                Some(n) if n.trim().is_empty() => {
                    diag.error(Some(&e.value.loc), &p, "must not be empty");
                    None
                }
                None if matches!(e.value.value, Value::Null) => {
                    diag.error(Some(&e.value.loc), &p, "must not be empty");
                    None
                }
                other => other,
            }
        }
    };
    let params_path = path.key("litellm_params");
    let params = match node.get("litellm_params") {
        None => {
            diag.error(Some(&node.loc), path, missing("litellm_params", entries));
            None
        }
        Some(e) => match &e.value.value {
            Value::Map(_) => Some(&e.value),
            Value::Poison => None,
            _ => {
                diag.error(
                    Some(&e.value.loc),
                    &params_path,
                    format!(
                        "expected a mapping (with at least `model`), found {}",
                        found(&e.value)
                    ),
                );
                None
            }
        },
    };
    let info_path = path.key("model_info");
    let model_info = match node.get("model_info") {
        None => ModelInfo::default(),
        Some(e) => model_info(&e.value, &info_path, diag),
    };
    // `model_info.health_check_timeout` (LiteLLM's documented place) wins over `litellm_params`';
    // it also stays in `model_info.extra`, as written.
    let info_health_timeout = node
        .get("model_info")
        .and_then(|e| e.value.get("health_check_timeout"))
        .and_then(|e| {
            convert::seconds(
                &e.value,
                &info_path.key("health_check_timeout"),
                diag,
                false,
            )
        });
    let params = params?;
    let mut d = litellm_params(params, &params_path, diag)?;
    d.model_name = model_name?;
    d.model_info = model_info;
    d.health_check_timeout = info_health_timeout.or(d.health_check_timeout);
    d.id = deployment_hash(&d.model_name, params);
    Some(d)
}

fn missing(key: &str, entries: &[Entry]) -> String {
    let near = entries
        .iter()
        .find(|e| keys::did_you_mean(&e.key, [key]).is_some() && e.key != key)
        .map(|e| format!(" (found `{}`; a typo?)", e.key))
        .unwrap_or_default();
    format!("missing required key `{key}`{near}")
}

/// `litellm_params` into a deployment (everything but `model_name`, `model_info`, `id`).
fn litellm_params(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Deployment> {
    let entries = node.entries().unwrap_or_default();
    let mut d = Deployment::default();
    let mut model: Option<(String, Loc, KeyPath)> = None;
    let mut custom_provider: Option<String> = None;
    let mut model_seen = false;
    for e in entries {
        let p = path.key(&e.key);
        let v = &e.value;
        match e.key.as_str() {
            "model" => {
                model_seen = true;
                match convert::string(v, &p, diag) {
                    Some(m) if !m.trim().is_empty() => model = Some((m, v.loc.clone(), p)),
                    Some(_) => diag.error(Some(&v.loc), &p, "must not be empty"),
                    None if matches!(v.value, Value::Null) => {
                        diag.error(Some(&v.loc), &p, "must not be empty");
                    }
                    None => {}
                }
            }
            "custom_llm_provider" => {
                custom_provider = convert::string(v, &p, diag).filter(|s| !s.trim().is_empty());
            }
            "api_base" => {
                d.api_base = convert::string(v, &p, diag).and_then(|url| match check_url(&url) {
                    Ok(()) => Some(url),
                    Err(why) => {
                        diag.error(Some(&v.loc), &p, format!("{why}, found {}", found(v)));
                        None
                    }
                });
            }
            "api_key" => {
                d.api_key = convert::string(v, &p, diag).map(Secret::new);
            }
            "api_version" => d.api_version = convert::string(v, &p, diag),
            "organization" => d.organization = convert::string(v, &p, diag),
            "rpm" => d.rpm = convert::whole(v, &p, diag),
            "tpm" => d.tpm = convert::whole(v, &p, diag),
            "weight" => d.weight = convert::non_negative(v, &p, diag),
            "timeout" => d.timeout = convert::seconds(v, &p, diag, false),
            "stream_timeout" => d.stream_timeout = convert::seconds(v, &p, diag, false),
            "max_retries" => d.max_retries = convert::whole_u32(v, &p, diag),
            "num_retries" => d.num_retries = convert::whole_u32(v, &p, diag),
            "health_check_timeout" => {
                d.health_check_timeout = convert::seconds(v, &p, diag, false);
            }
            "extra_headers" => d.extra_headers = headers(v, &p, diag),
            "mock_response" => d.mock_response = convert::string(v, &p, diag),
            other => {
                d.extra_params.insert(other.to_owned(), v.to_json());
            }
        }
    }
    let Some((model, loc, model_path)) = model else {
        if !model_seen {
            diag.error(Some(&node.loc), path, missing("model", entries));
        }
        return None;
    };
    let (provider, upstream) = match &custom_provider {
        Some(p) => {
            if !keys::is_known_provider(p) {
                warn_unknown_provider(p, &loc, &path.key("custom_llm_provider"), diag);
            }
            let rest = model
                .strip_prefix(p.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(&model);
            (p.clone(), rest.to_owned())
        }
        None => {
            let (provider, upstream) = split_model(&model);
            if model.contains('/') && !keys::is_known_provider(&provider) {
                warn_unknown_provider(&provider, &loc, &model_path, diag);
            }
            (provider, upstream)
        }
    };
    if upstream.trim().is_empty() {
        diag.error(
            Some(&loc),
            &model_path,
            format!("no model name after the provider `{provider}/`"),
        );
        return None;
    }
    d.provider = provider;
    d.model = upstream;
    Some(d)
}

fn warn_unknown_provider(provider: &str, loc: &Loc, path: &KeyPath, diag: &mut Diag) {
    let hint = keys::did_you_mean(provider, keys::PROVIDERS.iter().copied())
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    diag.warn(
        Some(loc),
        path,
        format!("`{provider}` is not a provider LiteLLM knows{hint}"),
    );
}

/// Splits `provider/model` at the first `/`; without a `/` the provider is `openai`.
///
/// `hosted_vllm/meta-llama/Llama-3-8B` is provider `hosted_vllm`, model `meta-llama/Llama-3-8B`;
/// `gpt-4o` is `openai`, `gpt-4o`; `openai/*` is `openai`, `*`.
#[must_use]
pub fn split_model(model: &str) -> (String, String) {
    match model.split_once('/') {
        Some((provider, rest)) => (provider.to_owned(), rest.to_owned()),
        None => ("openai".to_owned(), model.to_owned()),
    }
}

fn headers(node: &Node, path: &KeyPath, diag: &mut Diag) -> Vec<(String, String)> {
    match &node.value {
        Value::Null | Value::Poison => Vec::new(),
        Value::Map(entries) => entries
            .iter()
            .filter_map(|e| {
                convert::string(&e.value, &path.key(&e.key), diag).map(|v| (e.key.clone(), v))
            })
            .collect(),
        _ => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected a mapping of header: value, found {}", found(node)),
            );
            Vec::new()
        }
    }
}

/// An `http(s)://` URL with a host and no spaces (`api_base`, webhook and logger endpoints).
pub(crate) fn check_url(url: &str) -> Result<(), &'static str> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("expected an http:// or https:// URL")?;
    if url.trim().chars().any(char::is_whitespace) {
        return Err("a URL must not contain spaces");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("the URL has no host");
    }
    Ok(())
}

fn model_info(node: &Node, path: &KeyPath, diag: &mut Diag) -> ModelInfo {
    let mut info = ModelInfo::default();
    let Some(entries) = convert::mapping(node, path, diag, "a mapping") else {
        return info;
    };
    for e in entries {
        let p = path.key(&e.key);
        let v = &e.value;
        match e.key.as_str() {
            "id" => {
                info.id = convert::string(v, &p, diag).and_then(|id| {
                    if id.trim().is_empty() {
                        diag.error(Some(&v.loc), &p, "must not be empty");
                        None
                    } else {
                        Some(id)
                    }
                });
            }
            "mode" => info.mode = convert::string(v, &p, diag).map(|m| Mode::parse(&m)),
            "base_model" => info.base_model = convert::string(v, &p, diag),
            "input_cost_per_token" => info.input_cost_per_token = convert::decimal(v, &p, diag),
            "output_cost_per_token" => {
                info.output_cost_per_token = convert::decimal(v, &p, diag);
            }
            "max_tokens" => info.max_tokens = convert::whole(v, &p, diag),
            "max_input_tokens" => info.max_input_tokens = convert::whole(v, &p, diag),
            "max_output_tokens" => info.max_output_tokens = convert::whole(v, &p, diag),
            "access_groups" => {
                info.access_groups = convert::string_list(v, &p, diag).unwrap_or_default();
            }
            other => {
                info.extra.insert(other.to_owned(), v.to_json());
            }
        }
    }
    info
}

/// The generated deployment id: hex SHA-256 over `model_name` and the `litellm_params` as
/// written (keys sorted; `os.environ/NAME` values hashed as that text, not the secret).
fn deployment_hash(model_name: &str, params: &Node) -> String {
    let mut canonical = String::new();
    canonical_json(params, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(model_name.as_bytes());
    hasher.update([0]);
    hasher.update(canonical.as_bytes());
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn canonical_json(node: &Node, out: &mut String) {
    if let Some(var) = &node.env_var {
        let text = format!("{}{var}", resolve::ENV_PREFIX);
        out.push_str(&serde_json::Value::String(text).to_string());
        return;
    }
    match &node.value {
        Value::Map(entries) => {
            let mut sorted: Vec<&Entry> = entries.iter().collect();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            out.push('{');
            for (i, e) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(e.key.clone()).to_string());
                out.push(':');
                canonical_json(&e.value, out);
            }
            out.push('}');
        }
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        _ => out.push_str(&node.to_json().to_string()),
    }
}

/// The deployment for `--model` (and `--api_base`).
fn cli_deployment(model: &str, api_base: Option<&str>, diag: &mut Diag) -> Option<Deployment> {
    let path = KeyPath::root().key("--model");
    if model.trim().is_empty() {
        diag.error(None, &path, "must not be empty");
        return None;
    }
    let (provider, upstream) = split_model(model);
    if upstream.is_empty() {
        diag.error(
            None,
            &path,
            format!("no model name after the provider `{provider}/`"),
        );
        return None;
    }
    if let Some(base) = api_base
        && let Err(why) = check_url(base)
    {
        diag.error(
            None,
            &KeyPath::root().key("--api_base"),
            format!("{why}, found \"{base}\""),
        );
        return None;
    }
    let mut params = serde_json::Map::new();
    params.insert("model".into(), model.into());
    if let Some(base) = api_base {
        params.insert("api_base".into(), base.into());
    }
    let mut hasher = Sha256::new();
    hasher.update(model.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::Value::Object(params).to_string().as_bytes());
    Some(Deployment {
        id: hex(&hasher.finalize()),
        model_name: model.to_owned(),
        provider,
        model: upstream,
        api_base: api_base.map(str::to_owned),
        ..Deployment::default()
    })
}

/// Explicit ids (`model_info.id`) must be unique; generated ids of identical deployments get a
/// `-2`, `-3`, ... suffix (with a warning).
fn assign_ids(deployments: &mut [Located], diag: &mut Diag) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, located) in deployments.iter_mut().enumerate() {
        let path = KeyPath::root().key("model_list").index(i);
        let d = &mut located.deployment;
        match d.model_info.id.clone() {
            Some(id) => {
                if let Some(first) = seen.get(&id) {
                    diag.error(
                        located.id.as_ref(),
                        &path.key("model_info").key("id"),
                        format!(
                            "duplicate deployment id `{id}` (also used by model_list[{first}])"
                        ),
                    );
                } else {
                    seen.insert(id.clone(), i);
                }
                d.id = id;
            }
            None => {
                if let Some(first) = seen.get(&d.id).copied() {
                    diag.warn(
                        located.entry.as_ref(),
                        &path,
                        format!("same model_name and litellm_params as model_list[{first}]"),
                    );
                    let mut n = 2;
                    while seen.contains_key(&format!("{}-{n}", d.id)) {
                        n += 1;
                    }
                    d.id = format!("{}-{n}", d.id);
                }
                seen.insert(d.id.clone(), i);
            }
        }
    }
}

fn check_aliases(config: &Config, locs: &HashMap<String, (Loc, KeyPath)>, diag: &mut Diag) {
    let groups: BTreeSet<&str> = config
        .deployments
        .iter()
        .map(|d| d.model_name.as_str())
        .collect();
    let has_wildcard = groups.iter().any(|g| g.contains('*'));
    for (alias, target) in &config.model_group_alias {
        if !groups.contains(target.as_str())
            && !has_wildcard
            && let Some((loc, path)) = locs.get(alias)
        {
            diag.warn(
                Some(loc),
                path,
                format!("no deployment in model_list has model_name `{target}`"),
            );
        }
    }
}

/// A value from the first of several environment variables, parsed; errors name the variable.
fn from_env<T>(
    env: &Env,
    names: &[&str],
    diag: &mut Diag,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let (name, value) = env.first_non_empty(names)?;
    match parse(value.trim()) {
        Ok(v) => Some(v),
        Err(why) => {
            diag.errors.push(ConfigError::Env {
                variable: name,
                message: format!("invalid value \"{value}\": {why}"),
            });
            None
        }
    }
}

/// `TOLLGATE_<NAME>`, then `<NAME>`.
fn setting<T>(
    env: &Env,
    name: &str,
    diag: &mut Diag,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let prefixed = format!("TOLLGATE_{name}");
    from_env(env, &[prefixed.as_str(), name], diag, parse)
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| "expected a port number from 0 to 65535".to_owned())
}

fn parse_at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) | Err(_) => Err("expected a whole number of at least 1".to_owned()),
        Ok(n) => Ok(n),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| "expected a number of seconds".to_owned())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err("expected a non-negative number of seconds".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "too large".to_owned())
}

fn parse_positive_seconds(s: &str) -> Result<Duration, String> {
    match parse_seconds(s)? {
        d if d.is_zero() => Err("must be greater than 0".to_owned()),
        d => Ok(d),
    }
}

/// Server settings, master key and database URL: CLI > `TOLLGATE_X` > `X` > file > default.
fn server(config: &mut Config, file: &FileSettings, env: &Env, o: &Overrides, diag: &mut Diag) {
    let mut s = ServerSettings::default();
    s.host = o
        .host
        .clone()
        .or_else(|| setting(env, "HOST", diag, |v| Ok(v.to_owned())))
        .unwrap_or(s.host);
    if s.host.trim().is_empty() {
        diag.error(None, &KeyPath::root().key("--host"), "must not be empty");
    }
    // Kubernetes injects `TOLLGATE_PORT=tcp://10.0.0.1:4000` for a Service named `tollgate`: that is a
    // service link, not our setting, so it is skipped (with a warning) in favour of `PORT`.
    let service_link = env.get("TOLLGATE_PORT").is_some_and(|v| v.contains("://"));
    if service_link {
        diag.warn(
            None,
            &KeyPath::root().key("TOLLGATE_PORT"),
            "looks like a Kubernetes service link (tcp://...), not a port; ignored",
        );
    }
    s.port = o
        .port
        .or_else(|| {
            if service_link {
                from_env(env, &["PORT"], diag, parse_port)
            } else {
                setting(env, "PORT", diag, parse_port)
            }
        })
        .unwrap_or(s.port);
    s.num_workers = match o.num_workers {
        Some(0) => {
            diag.error(
                None,
                &KeyPath::root().key("--num_workers"),
                "must be at least 1",
            );
            None
        }
        Some(n) => Some(n),
        None => setting(env, "NUM_WORKERS", diag, |v| {
            parse_at_least_one(v)
                .and_then(|n| usize::try_from(n).map_err(|_| "too large".to_owned()))
        }),
    };
    s.keepalive_timeout = o
        .keepalive_timeout
        .or_else(|| setting(env, "KEEPALIVE_TIMEOUT", diag, parse_seconds))
        .or(file.keepalive_timeout)
        .unwrap_or(s.keepalive_timeout);
    s.header_read_timeout = from_env(
        env,
        &["TOLLGATE_HEADER_READ_TIMEOUT"],
        diag,
        parse_positive_seconds,
    )
    .or(file.header_read_timeout)
    .unwrap_or(s.header_read_timeout);
    s.graceful_shutdown_timeout = from_env(
        env,
        &["TOLLGATE_GRACEFUL_SHUTDOWN_TIMEOUT"],
        diag,
        parse_seconds,
    )
    .or(file.graceful_shutdown_timeout)
    .unwrap_or(s.graceful_shutdown_timeout);
    s.max_request_body_bytes = file
        .max_request_body_bytes
        .unwrap_or(s.max_request_body_bytes);
    s.max_requests_before_restart = match o.max_requests_before_restart {
        Some(0) => {
            diag.error(
                None,
                &KeyPath::root().key("--max_requests_before_restart"),
                "must be at least 1",
            );
            None
        }
        Some(n) => Some(n),
        None => setting(env, "MAX_REQUESTS_BEFORE_RESTART", diag, parse_at_least_one),
    };
    s.tls = tls(env, o, diag);
    config.server = s;

    config.master_key = o
        .master_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new)
        .or_else(|| {
            env.first_non_empty(&[
                "TOLLGATE_MASTER_KEY",
                "TOLLGATE_LITELLM_MASTER_KEY",
                "LITELLM_MASTER_KEY",
            ])
            .map(|(_, v)| Secret::new(v))
        })
        .or_else(|| file.master_key.clone());
    config.database_url = o
        .database_url
        .clone()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new)
        .or_else(|| {
            env.first_non_empty(&["TOLLGATE_DATABASE_URL", "DATABASE_URL"])
                .map(|(_, v)| Secret::new(v))
        })
        .or_else(|| file.database_url.clone());

    let mut a = crate::types::AccountsSettings::default();
    if let Some(p) = env
        .first_non_empty(&["TOLLGATE_DATABASE_PATH"])
        .map(|(_, v)| v)
        .or_else(|| file.sqlite_path.clone())
    {
        a.sqlite_path = PathBuf::from(p);
    }
    if let Some(p) = env
        .first_non_empty(&["TOLLGATE_SPEND_JOURNAL_PATH"])
        .map(|(_, v)| v)
        .or_else(|| file.journal_path.clone())
    {
        a.journal_path = PathBuf::from(p);
    }
    if let Some(n) = file.pool_limit {
        a.pool_limit = n.clamp(1, u32::MAX as u64) as u32;
    }
    if let Some(d) = file.connection_timeout.filter(|d| !d.is_zero()) {
        a.connection_timeout = d;
    }
    if let Some(d) = file.batch_write_interval.filter(|d| !d.is_zero()) {
        a.batch_write_interval = d;
    }
    if let Some(n) = file.batch_size {
        a.batch_size = n.max(1) as usize;
    }
    if let Some(d) = file.refresh_interval.filter(|d| !d.is_zero()) {
        a.refresh_interval = d;
    }
    if let Some(b) = file.allow_requests_on_db_unavailable {
        a.allow_requests_on_db_unavailable = b;
    }
    a.skip_migrations = o.skip_migrations || file.skip_migrations.unwrap_or(false);
    a.disable_reset_budget = file.disable_reset_budget.unwrap_or(false);
    a.redis_url = redis_url(env, file);
    if let Some(p) = file.redis_prefix.clone() {
        a.redis_prefix = p;
    }
    config.accounts = a;
}

/// Redis: `REDIS_URL`, else `router_settings.redis_url`, else a URL from host/port/password/db (the
/// environment's `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD` win over the file's, as in LiteLLM).
fn redis_url(env: &Env, file: &FileSettings) -> Option<Secret> {
    if let Some((_, v)) = env.first_non_empty(&["TOLLGATE_REDIS_URL", "REDIS_URL"]) {
        return Some(Secret::new(v));
    }
    if let Some(u) = &file.redis_url {
        return Some(u.clone());
    }
    let host = env
        .first_non_empty(&["REDIS_HOST"])
        .map(|(_, v)| v)
        .or_else(|| file.redis_host.clone())?;
    let port = env
        .first_non_empty(&["REDIS_PORT"])
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .or(file.redis_port)
        .unwrap_or(6379);
    let password = env
        .first_non_empty(&["REDIS_PASSWORD"])
        .map(|(_, v)| v)
        .or_else(|| file.redis_password.as_ref().map(|p| p.expose().to_owned()));
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let db = file.redis_db.map(|d| format!("/{d}")).unwrap_or_default();
    Some(Secret::new(format!("redis://{auth}{host}:{port}{db}")))
}

/// Where a TLS file setting came from, for messages.
struct Sourced {
    path: PathBuf,
    from: String,
}

fn tls(env: &Env, o: &Overrides, diag: &mut Diag) -> Option<TlsFiles> {
    let pick = |cli: &Option<PathBuf>, flag: &str, name: &str| -> Option<Sourced> {
        if let Some(p) = cli {
            return Some(Sourced {
                path: p.clone(),
                from: flag.to_owned(),
            });
        }
        let prefixed = format!("TOLLGATE_{name}");
        env.first_non_empty(&[prefixed.as_str(), name])
            .map(|(var, v)| Sourced {
                path: PathBuf::from(v.trim()),
                from: var,
            })
    };
    let key = pick(
        &o.ssl_keyfile_path,
        "--ssl_keyfile_path",
        "SSL_KEYFILE_PATH",
    );
    let cert = pick(
        &o.ssl_certfile_path,
        "--ssl_certfile_path",
        "SSL_CERTFILE_PATH",
    );
    match (key, cert) {
        (None, None) => None,
        (Some(key), Some(cert)) => {
            let mut ok = true;
            for f in [&key, &cert] {
                if !Path::new(&f.path).is_file() {
                    ok = false;
                    tls_error(
                        diag,
                        &f.from,
                        format!("`{}` is not a readable file", f.path.display()),
                    );
                }
            }
            ok.then_some(TlsFiles {
                cert: cert.path,
                key: key.path,
            })
        }
        (Some(only), None) => {
            tls_error(
                diag,
                &only.from,
                "TLS needs a certificate too (--ssl_certfile_path or SSL_CERTFILE_PATH); set both or neither".to_owned(),
            );
            None
        }
        (None, Some(only)) => {
            tls_error(
                diag,
                &only.from,
                "TLS needs a private key too (--ssl_keyfile_path or SSL_KEYFILE_PATH); set both or neither".to_owned(),
            );
            None
        }
    }
}

fn tls_error(diag: &mut Diag, from: &str, message: String) {
    if from.starts_with("--") {
        diag.error(None, &KeyPath::root().key(from), message);
    } else {
        diag.errors.push(ConfigError::Env {
            variable: from.to_owned(),
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_provider_prefix() {
        assert_eq!(split_model("gpt-4o"), ("openai".into(), "gpt-4o".into()));
        assert_eq!(split_model("openai/*"), ("openai".into(), "*".into()));
        assert_eq!(
            split_model("hosted_vllm/meta-llama/Llama-3-8B"),
            ("hosted_vllm".into(), "meta-llama/Llama-3-8B".into())
        );
        assert_eq!(split_model("*"), ("openai".into(), "*".into()));
    }

    #[test]
    fn urls() {
        assert!(check_url("https://api.openai.com/v1").is_ok());
        assert!(check_url("http://localhost:8000").is_ok());
        assert!(check_url("HTTP://127.0.0.1").is_ok());
        assert!(check_url("localhost:8000").is_err());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://a b").is_err());
    }
}
