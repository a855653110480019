//! LiteLLM config.yaml loading, validation and precedence (CLI > env > file).
//!
//! [`load`] reads a LiteLLM proxy `config.yaml` unchanged (anchors, aliases, `<<` merge keys,
//! `include:`, `environment_variables:`, `os.environ/NAME` values) into a typed [`Config`].
//!
//! Order of work: parse (with positions) → merge `include:` files → layer `environment_variables`
//! over the environment → check keys against LiteLLM's known settings → replace `os.environ/NAME`
//! values → typed conversion and validation → CLI > `TOLLGATE_X` > `X` > file precedence.
//!
//! Every problem is reported as `<file>:<line>:<col>: <key.path>: <message>`; all problems found
//! in one pass are returned together ([`ConfigError::Multiple`]).
//!
//! Settings read from the environment (each also as `TOLLGATE_<NAME>`, which wins; an empty value
//! counts as unset): `HOST`, `PORT`, `NUM_WORKERS`, `LITELLM_MASTER_KEY` (also
//! `TOLLGATE_MASTER_KEY`), `DATABASE_URL`, `KEEPALIVE_TIMEOUT` (seconds), `SSL_KEYFILE_PATH`,
//! `SSL_CERTFILE_PATH`, `MAX_REQUESTS_BEFORE_RESTART`; tollgate-only:
//! `TOLLGATE_HEADER_READ_TIMEOUT`, `TOLLGATE_GRACEFUL_SHUTDOWN_TIMEOUT` (seconds).
//!
//! tollgate-only file keys (LiteLLM ignores unknown `general_settings` keys):
//! `general_settings.tollgate_header_read_timeout`, `tollgate_graceful_shutdown_timeout` and
//! `tollgate_keepalive_timeout` (seconds).

mod build;
mod convert;
mod env;
mod error;
mod include;
mod jwt;
mod keys;
mod observability;
mod resolve;
mod routing;
mod routing_read;
mod secret;
mod security;
mod types;
mod yaml;

use std::path::{Path, PathBuf};

pub use build::split_model;
pub use env::Env;
pub use error::{ConfigError, Location};
pub use jwt::JwtSettings;
pub use observability::{
    Alerting, DEFAULT_MAX_SERIES, ObservabilitySettings, WEBHOOK_CALLBACK_NAMES, WebhookLogger,
};
pub use routing::{ClassPolicy, ErrorClass, FallbackMap, RoutingSettings, Strategy};
pub use secret::Secret;
pub use security::{
    CLIENT_SIDE_CREDENTIAL_FIELDS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_MESSAGES, SecuritySettings, normalize_origin,
};
pub use types::{
    AccountsSettings, Config, DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_HOST, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_REQUEST_BODY_BYTES, DEFAULT_PORT,
    Deployment, Mode, ModelInfo, Overrides, ServerSettings, TlsFiles,
};

/// The config file to use: `cli` (`--config`), else `TOLLGATE_CONFIG_FILE_PATH`, else
/// `CONFIG_FILE_PATH` (LiteLLM's variable); empty values count as unset.
#[must_use]
pub fn resolve_config_path(cli: Option<&Path>, env: &Env) -> Option<PathBuf> {
    if let Some(path) = cli {
        return Some(path.to_path_buf());
    }
    env.first_non_empty(&["TOLLGATE_CONFIG_FILE_PATH", "CONFIG_FILE_PATH"])
        .map(|(_, value)| PathBuf::from(value.trim()))
}

/// Loads and validates the configuration.
///
/// `path` is the config file (see [`resolve_config_path`]); `None` means no file: the result has
/// no deployments unless `overrides.model` is set.
///
/// # Errors
/// Any problem with the file, its includes, the environment settings or the overrides.
pub fn load(path: Option<&Path>, env: &Env, overrides: &Overrides) -> Result<Config, ConfigError> {
    let Some(path) = path else {
        let root = include::empty_root(Path::new("(no config file)"));
        return build::build(None, root, Vec::new(), env, overrides);
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path, env, overrides)
}

/// Loads configuration text as if read from `file_name` (which names it in messages; includes
/// are resolved relative to its folder).
///
/// # Errors
/// As [`load`].
pub fn load_str(
    text: &str,
    file_name: &Path,
    env: &Env,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let document = include::load_root(text, file_name)?;
    let config = build::build(
        Some(file_name.to_path_buf()),
        document.root,
        document.warnings,
        env,
        overrides,
    )?;
    for key in &config.unimplemented {
        tracing::debug!(key = %key, "config setting accepted but not implemented");
    }
    Ok(config)
}
