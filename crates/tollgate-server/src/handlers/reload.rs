//! Hot config reload: `POST /config/reload` (proxy admins) and SIGHUP (wired in the binary) re-read the config
//! file the process was started with — same path, same environment and CLI overrides — validate it fully
//! (parse + `Runtime::build`, which builds every provider adapter), and only then swap the runtime in one
//! `ArcSwap::store`. A bad file changes nothing: the errors are logged and returned. Requests in flight keep
//! the runtime they started with. Reloads are serialised by `Reloader::lock`.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tollgate_config::Config;
use tollgate_core::GatewayError;

use crate::error::ApiError;
use crate::handlers::manage::Caller;
use crate::state::{AppState, Runtime};

/// What a successful reload reports.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// Always `"reloaded"`.
    pub status: &'static str,
    /// Deployments in the new config.
    pub deployments: usize,
    /// The new config's model groups (sorted).
    pub model_groups: Vec<String>,
    /// Settings that changed in the file but only take effect after a restart (see `restart_only_changes`).
    pub restart_required: Vec<String>,
}

/// Why a reload did not happen. The running config is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// Started without a config file.
    NoConfigFile,
    /// The file does not load or a deployment cannot be served: one message per problem, formatted as
    /// the loader formats them (`<file>:<line>:<col>: <key.path>: <message>`).
    Invalid(Vec<String>),
    /// Internal failure (the validation task did not finish).
    Failed(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::NoConfigFile => f.write_str("no config file to reload"),
            ReloadError::Invalid(errors) => write!(
                f,
                "config reload failed; the running config is unchanged: {}",
                errors.join("; ")
            ),
            ReloadError::Failed(why) => write!(f, "config reload failed: {why}"),
        }
    }
}

impl From<ReloadError> for GatewayError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Failed(_) => GatewayError::Internal(e.to_string()),
            _ => GatewayError::invalid(e.to_string()),
        }
    }
}

/// `POST /config/reload`: proxy admins only (the master key or a `proxy_admin` user's key).
pub async fn reload_config(State(state): State<AppState>, req: Request) -> Response {
    if let Err(e) = Caller::of(&state, &req).require_admin("reload the config") {
        return ApiError(e).into_response();
    }
    match reload(&state, "api").await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => ApiError(e.into()).into_response(),
    }
}

/// Re-read, validate and swap in the config. `trigger` names the cause in the log (`"api"`, `"SIGHUP"`).
/// Logs the outcome either way.
pub async fn reload(state: &AppState, trigger: &'static str) -> Result<Reloaded, ReloadError> {
    let result = reload_inner(state).await;
    match &result {
        Ok(r) => {
            for setting in &r.restart_required {
                tracing::warn!(
                    setting = %setting,
                    trigger,
                    "config reload: this setting changed but only takes effect after a restart"
                );
            }
            tracing::info!(
                trigger,
                deployments = r.deployments,
                model_groups = r.model_groups.len(),
                "config reloaded"
            );
        }
        Err(ReloadError::Invalid(errors)) => {
            for e in errors {
                tracing::error!(trigger, "config reload rejected: {e}");
            }
            tracing::warn!(
                trigger,
                errors = errors.len(),
                "config reload failed; the running config is unchanged"
            );
        }
        Err(e) => tracing::warn!(trigger, "{e}"),
    }
    result
}

async fn reload_inner(state: &AppState) -> Result<Reloaded, ReloadError> {
    let Some(reloader) = state.reloader().cloned() else {
        return Err(ReloadError::NoConfigFile);
    };
    let Some(path) = reloader.path.clone() else {
        return Err(ReloadError::NoConfigFile);
    };
    let _serialised = reloader.lock.lock().await;
    let shared = state.shared();
    let client = shared.client.clone();
    let states = shared.states.clone();
    let r = reloader.clone();
    // Reading the file (and its includes) and building the adapters is blocking work.
    let built = shared
        .tasks
        .spawn_blocking(move || {
            let config = tollgate_config::load(Some(&path), &r.env, &r.overrides)
                .map_err(|e| e.to_string().lines().map(str::to_owned).collect::<Vec<_>>())?;
            let config = Arc::new(config);
            Runtime::build(config, &r.env, &client, &states)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect())
        })
        .await
        .map_err(|e| ReloadError::Failed(e.to_string()))?;
    let runtime = match built {
        Ok(rt) => rt,
        Err(errors) => {
            // A failed build may have registered states for deployments that never went live.
            let current = shared.runtime.load();
            retain_states(state, &current.config);
            return Err(ReloadError::Invalid(errors));
        }
    };
    let config = runtime.config.clone();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if !config.unimplemented.is_empty() {
        tracing::warn!(
            settings = %config.unimplemented.join(", "),
            "these config settings are valid LiteLLM settings that tollgate does not implement yet; they are accepted and have no effect"
        );
    }
    let restart_required = restart_only_changes(&reloader.started_with, &config);
    shared.runtime.store(Arc::new(runtime));
    retain_states(state, &config);
    Ok(Reloaded {
        status: "reloaded",
        deployments: config.deployments.len(),
        model_groups: config
            .deployments
            .iter()
            .map(|d| d.model_name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        restart_required,
    })
}

/// Drop the live state of deployments that are not in `config` (cooldowns, latency, usage of the rest
/// are kept by id).
fn retain_states(state: &AppState, config: &Config) {
    let ids: HashSet<&str> = config.deployments.iter().map(|d| d.id.as_str()).collect();
    state.shared().states.retain(&ids);
}

/// Settings read once at start-up (listener, process, database, spend writer, Redis, logging) that differ
/// between the config in force and `new`, by their config names. The master key, deployments, aliases,
/// routing, timeouts and the body limit are read from the runtime and change with a reload.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.server, &new.server);
    let (oa, na) = (&old.accounts, &new.accounts);
    let checks: [(&str, bool); 24] = [
        ("host", o.host != n.host),
        ("port", o.port != n.port),
        ("num_workers", o.num_workers != n.num_workers),
        (
            "keepalive_timeout",
            o.keepalive_timeout != n.keepalive_timeout,
        ),
        (
            "general_settings.tollgate_header_read_timeout",
            o.header_read_timeout != n.header_read_timeout,
        ),
        (
            "general_settings.tollgate_graceful_shutdown_timeout",
            o.graceful_shutdown_timeout != n.graceful_shutdown_timeout,
        ),
        (
            "TLS files (ssl_certfile_path / ssl_keyfile_path)",
            o.tls != n.tls,
        ),
        (
            "max_requests_before_restart",
            o.max_requests_before_restart != n.max_requests_before_restart,
        ),
        (
            "general_settings.tollgate_max_header_bytes",
            o.max_header_bytes != n.max_header_bytes,
        ),
        (
            "limit_concurrency",
            o.limit_concurrency != n.limit_concurrency,
        ),
        (
            "general_settings.database_url",
            old.database_url != new.database_url,
        ),
        (
            "general_settings.tollgate_database_path",
            oa.sqlite_path != na.sqlite_path,
        ),
        (
            "general_settings.database_connection_pool_limit",
            oa.pool_limit != na.pool_limit,
        ),
        (
            "general_settings.database_connection_timeout",
            oa.connection_timeout != na.connection_timeout,
        ),
        (
            "general_settings.proxy_batch_write_at",
            oa.batch_write_interval != na.batch_write_interval,
        ),
        (
            "general_settings.tollgate_spend_batch_size",
            oa.batch_size != na.batch_size,
        ),
        (
            "general_settings.tollgate_spend_journal_path",
            oa.journal_path != na.journal_path,
        ),
        (
            "general_settings.tollgate_accounts_refresh_interval",
            oa.refresh_interval != na.refresh_interval,
        ),
        (
            "general_settings.allow_requests_on_db_unavailable",
            oa.allow_requests_on_db_unavailable != na.allow_requests_on_db_unavailable,
        ),
        (
            "general_settings.disable_reset_budget",
            oa.disable_reset_budget != na.disable_reset_budget,
        ),
        (
            "Redis (redis_url / redis_host / redis_port / redis_password)",
            oa.redis_url != na.redis_url,
        ),
        (
            "router_settings.tollgate_redis_prefix",
            oa.redis_prefix != na.redis_prefix,
        ),
        ("litellm_settings.json_logs", old.json_logs != new.json_logs),
        (
            "callbacks, alerting, OpenTelemetry, payload logging and metrics settings",
            {
                let (mut o, mut n) = (old.observability.clone(), new.observability.clone());
                // Read per request from the runtime config: reloadable.
                o.require_auth_for_metrics = false;
                n.require_auth_for_metrics = false;
                o != n
            },
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named() {
        let old = Config::default();
        let mut new = Config::default();
        assert!(restart_only_changes(&old, &new).is_empty());
        new.server.port = 1;
        new.accounts.batch_size = 7;
        new.master_key = Some(tollgate_config::Secret::new("sk-new"));
        assert_eq!(
            restart_only_changes(&old, &new),
            ["port", "general_settings.tollgate_spend_batch_size"]
        );
    }

    #[test]
    fn listener_limits_are_restart_only() {
        let old = Config::default();
        let mut new = Config::default();
        new.server.limit_concurrency = Some(2);
        new.server.max_header_bytes = 16 * 1024;
        // Body limits, CORS and client-side credentials are read per request: they change with a reload.
        new.security.max_json_depth = 3;
        new.security.allowed_origins = vec!["*".into()];
        new.security.allow_client_side_credentials = true;
        assert_eq!(
            restart_only_changes(&old, &new),
            [
                "general_settings.tollgate_max_header_bytes",
                "limit_concurrency"
            ]
        );
    }

    #[test]
    fn errors_become_400s() {
        let e: GatewayError = ReloadError::NoConfigFile.into();
        assert_eq!(e.status().as_u16(), 400);
        let e: GatewayError = ReloadError::Invalid(vec!["c.yaml:3:1: x: bad".into()]).into();
        assert!(e.to_string().contains("c.yaml:3:1"), "{e}");
    }
}
