//! Application state: one `Clone` handle of `Arc`s; the reloadable part (config, routing table) behind `ArcSwap`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tollgate_accounts::Accounts;
use tollgate_config::{Config, Env, Secret};
use tollgate_core::pricing::{ModelPrice, PriceTable};
use tollgate_providers::{BuildError, HttpClient, Provider};
use tollgate_router::{Entry, Router, StateRegistry};

/// A deployment's provider adapter with its response header values, built once per (re)load rather than
/// per request.
pub struct Upstream {
    pub provider: Arc<dyn Provider>,
    /// `x-litellm-model-id`
    pub model_id: Option<http::HeaderValue>,
    /// `x-litellm-model-api-base` (credentials and query already removed by the provider)
    pub api_base: Option<http::HeaderValue>,
    /// Prices: the config's `model_info` prices over the price table's entry (`base_model`, else the
    /// upstream model). `None`: unknown model, cost 0 (logged once at start-up).
    pub price: Option<Arc<ModelPrice>>,
    /// The deployment's own `rpm`/`tpm` (counted in the entry's live state, shared through Redis).
    pub limits: tollgate_router::RateLimits,
    /// Moving average of this deployment's request cost (nano-dollars; 0 until the first priced
    /// request): the budget reservation of the next request.
    pub typical_cost: Arc<std::sync::atomic::AtomicI64>,
    /// The deployment as metric labels.
    pub labels: Arc<DeploymentLabels>,
}

/// A deployment's metric label values, built once per (re)load.
#[derive(Debug)]
pub struct DeploymentLabels {
    /// `provider/model` as configured (`litellm_model_name`).
    pub litellm_model: String,
    pub api_base: String,
    pub provider: &'static str,
}

impl Upstream {
    /// What to reserve against budgets for a request: the typical cost seen so far, else an upper-bound
    /// guess from the body size and the completion limit.
    pub fn estimate(&self, body_len: usize, max_tokens: Option<u64>) -> tollgate_core::Nanos {
        let seen = self.typical_cost.load(std::sync::atomic::Ordering::Relaxed);
        if seen > 0 {
            return tollgate_core::Nanos(seen);
        }
        self.price.as_ref().map_or(tollgate_core::Nanos::ZERO, |p| {
            p.cost(&tollgate_core::Usage {
                prompt_tokens: body_len as u64 / 4,
                completion_tokens: max_tokens.unwrap_or(256),
                ..tollgate_core::Usage::default()
            })
        })
    }
}

impl Upstream {
    fn new(provider: Arc<dyn Provider>, d: &tollgate_config::Deployment) -> Self {
        let model_id = http::HeaderValue::from_str(&d.id).ok();
        let api_base = http::HeaderValue::from_str(provider.api_base()).ok();
        let limits = tollgate_router::RateLimits {
            rpm: d.rpm,
            tpm: d.tpm,
        };
        let labels = Arc::new(DeploymentLabels {
            litellm_model: format!("{}/{}", d.provider, d.model),
            api_base: provider.api_base().to_string(),
            provider: provider.name(),
        });
        Upstream {
            provider,
            model_id,
            api_base,
            price: price_of(d).map(Arc::new),
            limits,
            typical_cost: Arc::default(),
            labels,
        }
    }
}

/// A deployment's prices: `model_info.input/output_cost_per_token` override the table's entry for
/// `model_info.base_model` (else the upstream model), as in LiteLLM.
pub fn price_of(d: &tollgate_config::Deployment) -> Option<ModelPrice> {
    let table = PriceTable::embedded();
    let looked_up = d
        .model_info
        .base_model
        .as_deref()
        .and_then(|b| {
            let (p, m) = b.split_once('/').unwrap_or((d.provider.as_str(), b));
            table.lookup(p, m).or_else(|| table.lookup(&d.provider, b))
        })
        .or_else(|| table.lookup(&d.provider, &d.model))
        .cloned();
    let (input, output) = (
        d.model_info.input_cost_per_token,
        d.model_info.output_cost_per_token,
    );
    match looked_up {
        Some(p) => Some(p.with_overrides(input, output)),
        None if input.is_some() || output.is_some() => Some(ModelPrice::from_prices(
            input.unwrap_or_default(),
            output.unwrap_or_default(),
        )),
        None => None,
    }
}

/// What a config (re)load produces: everything derived from the config file.
pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router<Upstream>,
    pub master_key: Option<Secret>,
    pub body_limit: usize,
    pub default_timeout: Duration,
    /// JWT verification (`enable_jwt_auth`); its key cache starts empty after a reload.
    pub jwt: Option<Arc<crate::jwt::JwtAuth>>,
}

impl Runtime {
    /// Build the routing table and one provider adapter per deployment.
    pub fn build(
        config: Arc<Config>,
        env: &Env,
        client: &HttpClient,
        states: &StateRegistry,
    ) -> Result<Runtime, Vec<BuildError>> {
        let mut entries = Vec::with_capacity(config.deployments.len());
        let mut errors = Vec::new();
        let env = config.layered_env(env);
        for d in &config.deployments {
            match tollgate_providers::build(
                d,
                &tollgate_providers::BuildContext {
                    env: &env,
                    client,
                    drop_params: config.drop_params,
                },
            ) {
                Ok(p) => {
                    let target = Upstream::new(p, d);
                    let cost_per_token = target.price.as_ref().map(|p| {
                        use rust_decimal::prelude::ToPrimitive;
                        (p.input_cost_per_token + p.output_cost_per_token)
                            .to_f64()
                            .unwrap_or(f64::MAX)
                    });
                    entries.push(Entry {
                        deployment: d.clone(),
                        target,
                        state: states.get_or_insert(&d.id),
                        cost_per_token,
                    });
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Runtime {
            router: Router::new(
                entries,
                config.model_group_alias.clone(),
                config.hidden_model_group_aliases.clone(),
            ),
            master_key: config.master_key.clone(),
            jwt: config
                .jwt
                .as_ref()
                .map(|j| Arc::new(crate::jwt::JwtAuth::new(j, client))),
            body_limit: config.server.max_request_body_bytes,
            default_timeout: config
                .request_timeout
                .unwrap_or(tollgate_providers::openai::DEFAULT_TIMEOUT),
            config,
        })
    }
}

/// Shared state of the running gateway.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    /// Live per-deployment state (cooldowns, latency, usage, health) by deployment id; kept across reloads.
    pub states: Arc<StateRegistry>,
    /// Router state shared with other instances through Redis (cooldowns, deployment usage, latency).
    pub router_sync: Option<Arc<tollgate_router::sync::RouterSync>>,
    pub client: HttpClient,
    /// Keys, users, teams, budgets, limits and the spend ledger (on the configured database).
    pub accounts: Arc<Accounts>,
    /// Background work; shutdown waits for it.
    pub tasks: TaskTracker,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    pub started: Instant,
    pub requests: AtomicU64,
    /// `--max_requests_before_restart`: after this many requests the gateway drains and exits 0.
    pub max_requests: Option<u64>,
    /// `--limit_concurrency`: requests in flight beyond it get a 503 (restart-only).
    pub limiter: Option<Arc<crate::middleware::concurrency::Limiter>>,
    /// How to re-read the config (SIGHUP, `POST /config/reload`); set once at start-up.
    pub reloader: std::sync::OnceLock<Arc<Reloader>>,
    /// Metrics, traces, the webhook logger and alerts.
    pub observer: Arc<crate::observe::Observer>,
}

/// What a config reload needs to rebuild the runtime exactly as start-up did: the config file path (as
/// resolved at start-up), the process environment and the CLI overrides (same precedence), and the lock
/// that serialises concurrent reloads. The reload itself is `handlers::reload::reload`.
pub struct Reloader {
    /// `None`: started without a config file (nothing to reload).
    pub path: Option<std::path::PathBuf>,
    pub env: Env,
    pub overrides: tollgate_config::Overrides,
    /// The config the process started with: its restart-only settings (listener, database, logging,
    /// workers) stay in force until a restart, whatever later reloads say.
    pub started_with: Arc<Config>,
    /// Held for the whole of a reload (read, validate, swap).
    pub lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        path: Option<std::path::PathBuf>,
        env: Env,
        overrides: tollgate_config::Overrides,
        started_with: Arc<Config>,
    ) -> Self {
        Reloader {
            path,
            env,
            overrides,
            started_with,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl AppState {
    // Each argument is one of the process-wide services the start-up layers built, in order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Runtime,
        states: Arc<StateRegistry>,
        router_sync: Option<Arc<tollgate_router::sync::RouterSync>>,
        client: HttpClient,
        accounts: Arc<Accounts>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        observer: Arc<crate::observe::Observer>,
    ) -> Self {
        let max_requests = runtime.config.server.max_requests_before_restart;
        let limiter = runtime
            .config
            .server
            .limit_concurrency
            .map(crate::middleware::concurrency::Limiter::new);
        AppState(Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            states,
            router_sync,
            client,
            accounts,
            tasks,
            shutdown,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            max_requests,
            limiter,
            reloader: std::sync::OnceLock::new(),
            observer,
        }))
    }

    /// Enable config reloads (SIGHUP, `POST /config/reload`) with how start-up read the config.
    pub fn with_reloader(self, reloader: Reloader) -> Self {
        let _ = self.0.reloader.set(Arc::new(reloader));
        self
    }

    /// How to reload the config; `None` when reloads were not set up.
    pub fn reloader(&self) -> Option<&Arc<Reloader>> {
        self.0.reloader.get()
    }

    pub fn runtime(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.0.runtime.load()
    }

    pub fn accounts(&self) -> &Accounts {
        &self.0.accounts
    }

    pub fn shared(&self) -> &Shared {
        &self.0
    }

    pub fn observer(&self) -> &crate::observe::Observer {
        &self.0.observer
    }

    /// Count a request; when `max_requests_before_restart` is reached, begin a graceful shutdown.
    pub fn count_request(&self) {
        let n = self.0.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(max) = self.0.max_requests
            && n == max
        {
            tracing::info!(
                requests = n,
                "max_requests_before_restart reached: draining and exiting"
            );
            self.0.shutdown.cancel();
        }
    }
}
