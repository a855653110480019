//! Application state: one `Clone` handle of `Arc`s; the reloadable part (config, routing table) behind `ArcSwap`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tollgate_config::{Config, Env, Secret};
use tollgate_providers::{BuildError, HttpClient, Provider};
use tollgate_router::{Entry, Router};
use tollgate_store::Store;

/// A deployment's provider adapter with its response header values, built once per (re)load rather than
/// per request.
pub struct Upstream {
    pub provider: Arc<dyn Provider>,
    /// `x-litellm-model-id`
    pub model_id: Option<http::HeaderValue>,
    /// `x-litellm-model-api-base` (credentials and query already removed by the provider)
    pub api_base: Option<http::HeaderValue>,
}

impl Upstream {
    fn new(provider: Arc<dyn Provider>, id: &str) -> Self {
        let model_id = http::HeaderValue::from_str(id).ok();
        let api_base = http::HeaderValue::from_str(provider.api_base()).ok();
        Upstream {
            provider,
            model_id,
            api_base,
        }
    }
}

/// What a config (re)load produces: everything derived from the config file.
pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router<Upstream>,
    pub master_key: Option<Secret>,
    pub body_limit: usize,
    pub default_timeout: Duration,
}

impl Runtime {
    /// Build the routing table and one provider adapter per deployment.
    pub fn build(
        config: Arc<Config>,
        env: &Env,
        client: &HttpClient,
    ) -> Result<Runtime, Vec<BuildError>> {
        let mut entries = Vec::with_capacity(config.deployments.len());
        let mut errors = Vec::new();
        let env = config.layered_env(env);
        for d in &config.deployments {
            match tollgate_providers::build(d, &env, client) {
                Ok(p) => entries.push(Entry {
                    deployment: d.clone(),
                    target: Upstream::new(p, &d.id),
                }),
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
    pub client: HttpClient,
    pub store: Option<Store>,
    /// Background work; shutdown waits for it.
    pub tasks: TaskTracker,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    pub started: Instant,
    pub requests: AtomicU64,
    /// `--max_requests_before_restart`: after this many requests the gateway drains and exits 0.
    pub max_requests: Option<u64>,
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        client: HttpClient,
        store: Option<Store>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let max_requests = runtime.config.server.max_requests_before_restart;
        AppState(Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            client,
            store,
            tasks,
            shutdown,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            max_requests,
        }))
    }

    pub fn runtime(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.0.runtime.load()
    }

    pub fn shared(&self) -> &Shared {
        &self.0
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
