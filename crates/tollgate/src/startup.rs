//! The layered start-up: CLI -> config (+env) -> database check -> TLS -> bind -> serve -> drain on signal.
//! Every failure before the port is bound is reported on stderr and ends the process with a distinct code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tollgate_accounts::{Accounts, LedgerOptions, Settings};
use tollgate_config::{Config, ConfigError, Env};
use tollgate_providers::HttpClient;
use tollgate_server::{AppState, ListenerOptions, Runtime};
use tollgate_store::{PoolOptions, Store, StoreError};

use crate::cli::Cli;

/// Exit codes (sysexits.h where one fits).
pub mod exit {
    /// Invalid configuration (file, flags, environment, TLS files). EX_USAGE, as the issue asks for 64.
    pub const CONFIG: u8 = 64;
    /// A service the gateway needs (the database) is unreachable. EX_UNAVAILABLE.
    pub const UNAVAILABLE: u8 = 69;
    /// The port cannot be bound (taken, no permission). EX_OSERR.
    pub const BIND: u8 = 71;
    /// The database schema cannot be migrated or is not the version this build needs. EX_DATAERR.
    pub const SCHEMA: u8 = 65;
    /// Runtime could not be created, or a client command (--health/--test) failed.
    pub const FAILURE: u8 = 1;
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("tollgate: configuration error: {e}");
    ExitCode::from(e.exit_code() as u8)
}

pub fn run(cli: Cli) -> ExitCode {
    let env = Env::process();
    let path = tollgate_config::resolve_config_path(cli.config.as_deref(), &env);
    let overrides = cli.overrides();
    let loaded = tollgate_config::load(path.as_deref(), &env, &overrides);

    if cli.health || cli.test {
        let config = match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                if path.is_some() {
                    eprintln!(
                        "tollgate: warning: the config could not be loaded ({e}); using flags and environment only"
                    );
                }
                None
            }
        };
        return crate::client::run(&cli, config, &env);
    }
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    // Provider adapters are part of validation: a deployment tollgate cannot serve is a config error.
    let client = tollgate_providers::http_client();
    let config = Arc::new(config);
    let states = Arc::new(tollgate_router::StateRegistry::default());
    let runtime = match Runtime::build(config.clone(), &env, &client, &states) {
        Ok(r) => r,
        Err(errors) => {
            // The logger is not up yet: show the config's warnings here, since they often explain the
            // error (an unknown provider prefix comes with a "did you mean" warning).
            for w in &config.warnings {
                eprintln!("tollgate: warning: {w}");
            }
            for e in &errors {
                eprintln!("tollgate: configuration error: {e}");
            }
            return ExitCode::from(exit::CONFIG);
        }
    };
    // Metrics, traces, the webhook logger and alerts: a bad OTEL_* setting is a config error too.
    let observer = match tollgate_server::observe::Observer::from_config(&config, &env) {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("tollgate: configuration error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if cli.validate_config {
        say(&config.summary());
        return ExitCode::SUCCESS;
    }
    if matches!(cli.command, Some(crate::cli::Command::Migrate)) {
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(migrate_only(&config)),
            Err(e) => {
                eprintln!("tollgate: cannot start the async runtime: {e}");
                ExitCode::from(exit::FAILURE)
            }
        };
    }

    // Logging: flags win over the environment (RUST_LOG / LITELLM_LOG), which wins over the file; the
    // file's `environment_variables` count as environment.
    let env = config.layered_env(&env);
    let truthy = |v: String| matches!(v.as_str(), "true" | "True" | "TRUE" | "1");
    // An empty variable counts as unset, as for every other setting.
    let set = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());
    let json_logs = set("JSON_LOGS").map(truthy).unwrap_or(config.json_logs);
    let filter = if cli.debug || cli.detailed_debug {
        None
    } else {
        set("RUST_LOG").or_else(|| {
            set("LITELLM_LOG").and_then(|v| match v.to_ascii_uppercase().as_str() {
                "DEBUG" => Some(
                    "warn,tollgate=debug,tollgate_server=debug,tollgate_providers=debug,tollgate::request=debug".into(),
                ),
                "ERROR" => Some("error".into()),
                _ => None,
            })
        })
    };
    let _log_guard = crate::logging::init(cli.debug, cli.detailed_debug, json_logs, filter);

    let workers = config
        .server
        .num_workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    // One worker: a current-thread runtime (no work-stealing bookkeeping, no cross-thread wake-ups).
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    rt.block_on(serve(
        cli, config, runtime, states, client, workers, observer,
    ))
}

/// Print a line on stdout; a closed stdout (`| head`) is not an error worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

async fn serve(
    cli: Cli,
    config: Arc<Config>,
    runtime: Runtime,
    states: Arc<tollgate_router::StateRegistry>,
    client: HttpClient,
    workers: usize,
    observer: Arc<tollgate_server::observe::Observer>,
) -> ExitCode {
    // Warnings the operator must see once at start-up.
    if !config.unimplemented.is_empty() {
        tracing::warn!(
            settings = %config.unimplemented.join(", "),
            "these config settings are valid LiteLLM settings that tollgate does not implement yet; they are accepted and have no effect"
        );
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(j) = &config.jwt {
        tracing::info!(
            key_sets = %j.public_key_urls.join(", "),
            audience = %j.audiences.join(", "),
            issuer = j.issuer.as_deref().unwrap_or("-"),
            public_key_ttl_s = j.public_key_ttl.as_secs_f64(),
            "JWT auth on"
        );
        if j.audiences.is_empty() {
            tracing::warn!(
                "JWT auth is on without JWT_AUDIENCE: tokens issued for any audience by these key sets are accepted"
            );
        }
    }
    for c in &config.observability.unsupported_callbacks {
        tracing::warn!(callback = %c, "this LiteLLM callback is not supported by tollgate; ignored (supported: prometheus, otel, generic_api)");
    }
    if let Some(t) = &observer.tracer {
        tracing::info!(endpoint = %public_endpoint(&t.settings().endpoint), service = t.service_name(), "OpenTelemetry traces on (OTLP)");
    }
    if config.master_key.is_none() {
        tracing::warn!(
            "NO MASTER KEY IS SET: every route is open to anyone who can reach this port. Set general_settings.master_key or LITELLM_MASTER_KEY."
        );
    }

    // Database (the configured one, else the embedded SQLite file): reachable and migrated (or checked)
    // before we accept traffic; then the accounts view is loaded from it.
    let store = match open_database(&config, !config.accounts.skip_migrations).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Redis (shared rate limits) is optional at run time: a client is set up now, the connection is made
    // lazily, and while Redis does not answer each instance uses its own counters.
    let shared = match &config.accounts.redis_url {
        None => None,
        Some(url) => match tollgate_accounts::shared::SharedLimits::new(
            url.expose(),
            &config.accounts.redis_prefix,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("tollgate: configuration error: {e}");
                return ExitCode::from(exit::CONFIG);
            }
        },
    };
    let accounts = match Accounts::load(store.clone(), accounts_settings(&config)).await {
        Ok(a) => Arc::new(a.with_shared(shared)),
        Err(e) => {
            eprintln!("tollgate: database error: cannot load keys and budgets: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    tracing::info!(
        keys = accounts.keys.len(),
        users = accounts.users.len(),
        teams = accounts.teams.len(),
        "accounts loaded"
    );

    let tls = match &config.server.tls {
        None => None,
        Some(files) => match tollgate_server::listener::load_tls(&files.cert, &files.key) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("tollgate: TLS error: {e}");
                return ExitCode::from(exit::CONFIG);
            }
        },
    };

    if cli.skip_server_startup {
        tracing::info!("--skip_server_startup: start-up checks passed; not serving");
        store.close().await;
        return ExitCode::SUCCESS;
    }

    let addr = format!("{}:{}", config.server.host, config.server.port);
    // SO_REUSEADDR + SO_REUSEPORT: a new gateway can bind this port while this one drains.
    let listener = match tollgate_server::listener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "port {} is already in use on {} (tollgate never picks another port; free it or pass --port)",
                    config.server.port, config.server.host
                )
            } else {
                e.to_string()
            };
            eprintln!("tollgate: cannot listen on {addr}: {why}");
            return ExitCode::from(exit::BIND);
        }
    };
    let local: SocketAddr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tollgate: cannot read the bound address: {e}");
            return ExitCode::from(exit::BIND);
        }
    };

    // The metrics port, bound now so a taken port fails start-up like the main one.
    let metrics_listener = match config.observability.metrics_port {
        None => None,
        Some(port) => {
            let addr = format!("{}:{port}", config.server.host);
            match tollgate_server::listener::bind(&addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("tollgate: cannot listen on {addr} (--prometheus_metrics_port): {e}");
                    return ExitCode::from(exit::BIND);
                }
            }
        }
    };

    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    // Telemetry exporters stop last: after the ledger's final write (which is traced too).
    let exporters = TaskTracker::new();
    let exporters_stop = CancellationToken::new();
    {
        let (o, c, stop) = (observer.clone(), client.clone(), exporters_stop.clone());
        exporters.spawn(async move { o.run(c, stop).await });
        if observer.tracer.is_some() {
            let o = observer.clone();
            let _ = accounts
                .write_observer
                .set(Arc::new(move |rows, began| o.spend_written(rows, began)));
        }
    }
    // Background jobs (spend writer, accounts refresh, budget resets) have their own tracker and token:
    // they must outlive the request drain, so the last requests' spend is still written.
    let jobs = TaskTracker::new();
    let jobs_stop = CancellationToken::new();
    {
        let a = accounts.clone();
        let stop = jobs_stop.clone();
        jobs.spawn(async move { a.run_ledger(stop).await });
        let a = accounts.clone();
        let stop = jobs_stop.clone();
        jobs.spawn(async move { a.run_jobs(stop).await });
        if let Some(shared) = accounts.shared.clone() {
            let stop = jobs_stop.clone();
            jobs.spawn(async move { shared.run(stop).await });
            tracing::info!(prefix = %config.accounts.redis_prefix, "rate limits are shared through Redis");
        }
    }
    // Cooldowns, deployment usage and latency are shared through the same Redis connection as the rate limits.
    let router_sync = accounts.shared.as_ref().map(|shared| {
        let s = Arc::new(tollgate_router::sync::RouterSync::new(
            shared.connection(),
            &config.accounts.redis_prefix,
            states.clone(),
        ));
        let job = s.clone();
        let stop = jobs_stop.clone();
        jobs.spawn(async move { job.run(stop).await });
        s
    });
    let state = AppState::new(
        runtime,
        states,
        router_sync,
        client,
        accounts.clone(),
        tasks.clone(),
        shutdown.clone(),
        observer.clone(),
    );
    {
        // Background health checks (the job looks at `background_health_checks` each round).
        let (s, stop) = (state.clone(), jobs_stop.clone());
        jobs.spawn(async move { tollgate_server::health_checks::run(s, stop).await });
    }
    // Config reloads (SIGHUP, `POST /config/reload`) re-read the file the way `run` did.
    let state = state.with_reloader(tollgate_server::state::Reloader::new(
        tollgate_config::resolve_config_path(cli.config.as_deref(), &Env::process()),
        Env::process(),
        cli.overrides(),
        config.clone(),
    ));
    tasks.spawn(reload_on_sighup(state.clone(), shutdown.clone()));
    let mut metrics_addr = None;
    if let Some(l) = metrics_listener {
        metrics_addr = l.local_addr().ok();
        let app = tollgate_server::handlers::metrics::metrics_router(state.clone());
        let opts = ListenerOptions {
            keepalive_timeout: config.server.keepalive_timeout,
            header_read_timeout: config.server.header_read_timeout,
            max_header_bytes: config.server.max_header_bytes,
            tls: None,
        };
        tasks.spawn(tollgate_server::serve(
            l,
            app,
            opts,
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    let app = tollgate_server::build_router(state);
    let opts = ListenerOptions {
        keepalive_timeout: config.server.keepalive_timeout,
        header_read_timeout: config.server.header_read_timeout,
        max_header_bytes: config.server.max_header_bytes,
        tls: tls.clone(),
    };

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        address = %local, workers, deployments = config.deployments.len(),
        models = config.deployments.iter().map(|d| d.model_name.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
        "tollgate {} ready", env!("CARGO_PKG_VERSION")
    );
    // The one stdout line scripts and tests read the port from.
    say(&format!("tollgate listening on {scheme}://{local}"));
    if let Some(a) = metrics_addr {
        say(&format!("tollgate metrics on http://{a}/metrics"));
    }

    tasks.spawn(watch_signals(shutdown.clone()));
    tollgate_server::serve(listener, app, opts, shutdown.clone(), tasks.clone()).await;

    // Drain: in-flight requests and streams get the grace period to finish.
    let grace = config.server.graceful_shutdown_timeout;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: no longer accepting; draining in-flight requests"
    );
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    // Every request has been recorded: stop the jobs, then write what the ledger still holds (or journal
    // it, if the database is gone).
    jobs_stop.cancel();
    jobs.close();
    jobs.wait().await;
    accounts
        .close_ledger(std::time::Duration::from_secs(10))
        .await;
    store.close().await;
    exporters_stop.cancel();
    exporters.close();
    if tokio::time::timeout(std::time::Duration::from_secs(15), exporters.wait())
        .await
        .is_err()
    {
        tracing::warn!("telemetry exporters did not finish within 15 s; exiting");
    }
    tracing::info!("shutdown complete");
    ExitCode::SUCCESS
}

fn accounts_settings(config: &Config) -> Settings {
    let a = &config.accounts;
    Settings {
        refresh_interval: a.refresh_interval,
        ledger: LedgerOptions {
            interval: a.batch_write_interval,
            batch_size: a.batch_size,
            journal: a.journal_path.clone(),
            ..LedgerOptions::default()
        },
        allow_requests_on_db_unavailable: a.allow_requests_on_db_unavailable,
        reset_budgets: !a.disable_reset_budget,
    }
}

/// Connect to the database and migrate it (or check its schema). On failure: the message is printed and
/// the exit code returned.
async fn open_database(config: &Config, migrate: bool) -> Result<Store, ExitCode> {
    let url = config.effective_database_url();
    let opts = PoolOptions {
        max_connections: config.accounts.pool_limit,
        connect_timeout: config.accounts.connection_timeout,
    };
    let store = match Store::connect(&url, opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: database error: {e}");
            // A URL we cannot use is a configuration problem; a server we cannot reach is not.
            let code = if e.is_config_problem() {
                exit::CONFIG
            } else {
                exit::UNAVAILABLE
            };
            return Err(ExitCode::from(code));
        }
    };
    let checked = if migrate {
        store.migrate().await.map(|v| {
            tracing::info!(
                kind = store.kind(),
                schema_version = v,
                "database connected and migrated"
            );
        })
    } else {
        store.check_schema().await.map(|()| {
            tracing::info!(
                kind = store.kind(),
                "database connected; migrations skipped, schema is current"
            );
        })
    };
    match checked {
        Ok(()) => Ok(store),
        Err(e) => {
            eprintln!("tollgate: database error: {e}");
            let code = match e {
                StoreError::Migrate(_) | StoreError::SchemaVersion { .. } => exit::SCHEMA,
                _ => exit::UNAVAILABLE,
            };
            store.close().await;
            Err(ExitCode::from(code))
        }
    }
}

/// `tollgate migrate`: apply the migrations and exit.
async fn migrate_only(config: &Config) -> ExitCode {
    match open_database(config, true).await {
        Ok(store) => {
            say(&format!(
                "tollgate: {} database migrated to schema version {}",
                store.kind(),
                tollgate_store::migrate::latest_version()
            ));
            store.close().await;
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Reload the config on each SIGHUP until shutdown. The handler is installed when this is called (before the
/// port is announced), so an early SIGHUP cannot kill the process.
fn reload_on_sighup(
    state: AppState,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hup = match hup {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the SIGHUP handler; reload with POST /config/reload");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP received: reloading the config");
                        // The outcome (and why a bad file was rejected) is logged by `reload`.
                        let _ = tollgate_server::handlers::reload::reload(&state, "SIGHUP").await;
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (state, shutdown);
        }
    }
}

/// Cancel `shutdown` on SIGTERM or SIGINT (or when something else cancels it).
async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = shutdown.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = shutdown.cancelled() => return,
        }
    }
    shutdown.cancel();
}

/// An endpoint URL without user info, path or query (they may hold tokens), for a log line.
fn public_endpoint(url: &str) -> &str {
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    let end = url[rest_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_at + i);
    let host = &url[..end];
    match host[rest_at..].rfind('@') {
        Some(_) => &url[..rest_at],
        None => host,
    }
}
