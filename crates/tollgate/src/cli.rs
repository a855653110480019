//! Command-line flags: the LiteLLM proxy's names (so existing scripts keep working), each also kebab-case.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};
use tollgate_config::Overrides;

/// tollgate: an OpenAI-compatible LLM gateway that runs your LiteLLM proxy config.yaml unchanged.
///
/// Precedence of settings: command-line flags > environment variables (TOLLGATE_X, then X) > config file.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    disable_version_flag = true,
    max_term_width = 110
)]
pub struct Cli {
    /// LiteLLM-style config.yaml to load [env: CONFIG_FILE_PATH]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 0.0.0.0] [env: HOST]
    #[arg(long)]
    pub host: Option<String>,

    /// Port to listen on; if it is taken tollgate exits with an error [default: 4000] [env: PORT]
    #[arg(long)]
    pub port: Option<u16>,

    /// Runtime worker threads [default: number of cores] [env: NUM_WORKERS]
    #[arg(long = "num_workers", visible_alias = "num-workers", value_name = "N")]
    pub num_workers: Option<usize>,

    /// TLS private key (PEM); with --ssl_certfile_path serves HTTPS (h2 and http/1.1 by ALPN) [env: SSL_KEYFILE_PATH]
    #[arg(
        long = "ssl_keyfile_path",
        visible_alias = "ssl-keyfile-path",
        value_name = "FILE"
    )]
    pub ssl_keyfile_path: Option<PathBuf>,

    /// TLS certificate chain (PEM) [env: SSL_CERTFILE_PATH]
    #[arg(
        long = "ssl_certfile_path",
        visible_alias = "ssl-certfile-path",
        value_name = "FILE"
    )]
    pub ssl_certfile_path: Option<PathBuf>,

    /// Close idle keep-alive connections after this many seconds [default: 90] [env: KEEPALIVE_TIMEOUT]
    #[arg(
        long = "keepalive_timeout",
        visible_alias = "keepalive-timeout",
        value_name = "SECONDS"
    )]
    pub keepalive_timeout: Option<u64>,

    /// After this many requests, stop accepting, drain in-flight requests and exit 0, so a supervisor can
    /// restart the process (LiteLLM's worker recycling) [env: MAX_REQUESTS_BEFORE_RESTART]
    #[arg(
        long = "max_requests_before_restart",
        visible_alias = "max-requests-before-restart",
        value_name = "N"
    )]
    pub max_requests_before_restart: Option<u64>,

    /// Answer requests beyond N in flight with 503 and `Retry-After: 1` (uvicorn's flag; health probes
    /// are exempt) [default: unlimited] [env: LIMIT_CONCURRENCY]
    #[arg(
        long = "limit_concurrency",
        visible_alias = "limit-concurrency",
        value_name = "N"
    )]
    pub limit_concurrency: Option<usize>,

    /// Also serve GET /metrics (Prometheus) on this port, without authentication, e.g. for a scraper on a
    /// private network [env: PROMETHEUS_METRICS_PORT]
    #[arg(
        long = "prometheus_metrics_port",
        visible_alias = "prometheus-metrics-port",
        value_name = "PORT"
    )]
    pub prometheus_metrics_port: Option<u16>,

    /// Debug logging for tollgate
    #[arg(long)]
    pub debug: bool,

    /// Trace logging for tollgate and debug logging for its libraries (secrets stay redacted)
    #[arg(long = "detailed_debug", visible_alias = "detailed-debug")]
    pub detailed_debug: bool,

    /// Print the version and exit
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    /// Ask a running gateway at host:port for GET /health, print it, exit 0 if every endpoint is healthy, else 1
    #[arg(long)]
    pub health: bool,

    /// Send a chat completion, a streaming chat completion and a completion to a running gateway and report
    #[arg(long)]
    pub test: bool,

    /// Load and validate the config, print a summary, exit 0 (valid) or 64 (invalid)
    #[arg(long = "validate_config", visible_alias = "validate-config")]
    pub validate_config: bool,

    /// Serve this one model without a config file, e.g. `openai/gpt-4o` or `hosted_vllm/llama3`
    #[arg(short = 'm', long = "model", value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,

    /// Upstream base URL for --model
    #[arg(long = "api_base", visible_alias = "api-base", value_name = "URL")]
    pub api_base: Option<String>,

    /// Do everything up to binding the port (config, database), then exit 0
    #[arg(long = "skip_server_startup", visible_alias = "skip-server-startup")]
    pub skip_server_startup: bool,

    /// Do not apply database migrations at start-up; check that the schema is current instead (as
    /// general_settings.disable_prisma_schema_update)
    #[arg(long = "skip-migrations", visible_alias = "skip_migrations")]
    pub skip_migrations: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations (config's database_url, else the embedded SQLite file) and exit
    Migrate,
}

impl Cli {
    /// The settings flags override in the config.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            host: self.host.clone(),
            port: self.port,
            num_workers: self.num_workers,
            keepalive_timeout: self.keepalive_timeout.map(std::time::Duration::from_secs),
            ssl_keyfile_path: self.ssl_keyfile_path.clone(),
            ssl_certfile_path: self.ssl_certfile_path.clone(),
            max_requests_before_restart: self.max_requests_before_restart,
            skip_migrations: self.skip_migrations,
            model: self.model.clone(),
            api_base: self.api_base.clone(),
            limit_concurrency: self.limit_concurrency,
            prometheus_metrics_port: self.prometheus_metrics_port,
            detailed_debug: self.detailed_debug,
            ..Overrides::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn litellm_and_kebab_spellings_parse() {
        let a = Cli::try_parse_from([
            "tollgate",
            "-c",
            "c.yaml",
            "--port",
            "8000",
            "--num_workers",
            "2",
            "--ssl_keyfile_path",
            "k.pem",
            "--detailed_debug",
            "--max_requests_before_restart",
            "10",
            "--api_base",
            "http://x",
            "--limit_concurrency",
            "5",
        ])
        .unwrap();
        let b = Cli::try_parse_from([
            "tollgate",
            "--config",
            "c.yaml",
            "--port",
            "8000",
            "--num-workers",
            "2",
            "--ssl-keyfile-path",
            "k.pem",
            "--detailed-debug",
            "--max-requests-before-restart",
            "10",
            "--api-base",
            "http://x",
            "--limit-concurrency",
            "5",
        ])
        .unwrap();
        assert_eq!(format!("{:?}", a), format!("{:?}", b));
        assert_eq!(a.port, Some(8000));
        assert_eq!(a.overrides().limit_concurrency, Some(5));
        assert_eq!(a.overrides().max_requests_before_restart, Some(10));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["tollgate", "--port", "99999"]).is_err());
        assert!(Cli::try_parse_from(["tollgate", "--num_workers", "many"]).is_err());
        assert!(Cli::try_parse_from(["tollgate", "--no-such-flag"]).is_err());
    }

    #[test]
    fn migrate_subcommand_and_skip_flag() {
        let c = Cli::try_parse_from(["tollgate", "--config", "c.yaml", "migrate"]).unwrap();
        assert!(matches!(c.command, Some(Command::Migrate)));
        let c = Cli::try_parse_from(["tollgate", "--skip-migrations"]).unwrap();
        assert!(c.skip_migrations && c.overrides().skip_migrations);
        assert!(c.command.is_none());
    }

    #[test]
    fn short_v_is_version() {
        let e = Cli::try_parse_from(["tollgate", "-v"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
