//! The typed configuration (`Config`, `ServerSettings`, `Deployment`, `ModelInfo`, `Mode`, `Overrides`), its secret-safe `Debug`, and the `--validate_config` summary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use rust_decimal::Decimal;
use tollgate_core::url::public_url;

use crate::secret::Secret;

/// Settings given on the command line; they win over the environment and the file.
#[derive(Default, Clone)]
pub struct Overrides {
    /// `--host`
    pub host: Option<String>,
    /// `--port`
    pub port: Option<u16>,
    /// `--num_workers`
    pub num_workers: Option<usize>,
    /// Master key (never printed by `Debug`).
    pub master_key: Option<String>,
    /// Database URL (never printed by `Debug`).
    pub database_url: Option<String>,
    /// `--keepalive_timeout`
    pub keepalive_timeout: Option<Duration>,
    /// `--ssl_keyfile_path`
    pub ssl_keyfile_path: Option<PathBuf>,
    /// `--ssl_certfile_path`
    pub ssl_certfile_path: Option<PathBuf>,
    /// `--max_requests_before_restart`
    pub max_requests_before_restart: Option<u64>,
    /// `--skip-migrations`
    pub skip_migrations: bool,
    /// `--model`/`-m`: serve this one model (added to the file's `model_list`, if any).
    pub model: Option<String>,
    /// `--api_base` for `--model`.
    pub api_base: Option<String>,
    /// `--limit_concurrency`
    pub limit_concurrency: Option<usize>,
    /// `--prometheus_metrics_port`
    pub prometheus_metrics_port: Option<u16>,
    /// `--detailed_debug`: payload logging on (truncated).
    pub detailed_debug: bool,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("Overrides")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("num_workers", &self.num_workers)
            .field("master_key", &redact(&self.master_key))
            .field("database_url", &redact(&self.database_url))
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("ssl_keyfile_path", &self.ssl_keyfile_path)
            .field("ssl_certfile_path", &self.ssl_certfile_path)
            .field(
                "max_requests_before_restart",
                &self.max_requests_before_restart,
            )
            .field("skip_migrations", &self.skip_migrations)
            .field("model", &self.model)
            .field("api_base", &self.api_base)
            .field("limit_concurrency", &self.limit_concurrency)
            .field("prometheus_metrics_port", &self.prometheus_metrics_port)
            .field("detailed_debug", &self.detailed_debug)
            .finish()
    }
}

/// The validated configuration.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// The config file, as named (`None` when running without one).
    pub source: Option<PathBuf>,
    /// Listener and process settings.
    pub server: ServerSettings,
    /// `general_settings.master_key` / `LITELLM_MASTER_KEY` / `--master_key`.
    pub master_key: Option<Secret>,
    /// `general_settings.database_url` / `DATABASE_URL`.
    pub database_url: Option<Secret>,
    /// `model_list` in file order (included files' entries appended), then `--model`.
    pub deployments: Vec<Deployment>,
    /// `router_settings.model_group_alias`: alias -> model group.
    pub model_group_alias: BTreeMap<String, String>,
    /// Aliases written as `{model: ..., hidden: true}`: served, but not listed by `/v1/models`.
    pub hidden_model_group_aliases: BTreeSet<String>,
    /// Database, spend writer and key cache settings.
    pub accounts: AccountsSettings,
    /// `litellm_settings.drop_params`
    pub drop_params: bool,
    /// `router_settings.timeout`, else `litellm_settings.request_timeout`.
    pub request_timeout: Option<Duration>,
    /// Routing strategy, retries, fallbacks, cooldowns and health checks.
    pub routing: crate::routing::RoutingSettings,
    /// `litellm_settings.json_logs`
    pub json_logs: bool,
    /// JWT authentication (`general_settings.enable_jwt_auth` + `litellm_jwtauth`); `None` when off.
    pub jwt: Option<crate::jwt::JwtSettings>,
    /// Client-side credentials, body limits and CORS.
    pub security: crate::security::SecuritySettings,
    /// Metrics, traces, payload logging, callbacks and alerts.
    pub observability: crate::observability::ObservabilitySettings,
    /// The file's `environment_variables`, resolved (values may be secrets). Pass
    /// [`Config::layered_env`] to anything that reads the environment (provider key defaults).
    pub environment_variables: BTreeMap<String, Secret>,
    /// Dotted paths of valid LiteLLM settings that tollgate does not implement yet (sorted, deduped).
    pub unimplemented: Vec<String>,
    /// Other start-up warnings (deprecated keys, duplicate YAML keys, unknown providers, ...).
    pub warnings: Vec<String>,
    /// The merged, env-resolved document. Holds secrets: never log it.
    pub raw: serde_json::Value,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            source: None,
            server: ServerSettings::default(),
            master_key: None,
            database_url: None,
            deployments: Vec::new(),
            model_group_alias: BTreeMap::new(),
            hidden_model_group_aliases: BTreeSet::new(),
            accounts: AccountsSettings::default(),
            drop_params: false,
            request_timeout: None,
            routing: crate::routing::RoutingSettings::default(),
            json_logs: false,
            jwt: None,
            security: crate::security::SecuritySettings::default(),
            observability: crate::observability::ObservabilitySettings::default(),
            environment_variables: BTreeMap::new(),
            unimplemented: Vec::new(),
            warnings: Vec::new(),
            raw: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("server", &self.server)
            .field("master_key", &self.master_key)
            .field("database_url", &self.database_url)
            .field("deployments", &self.deployments)
            .field("model_group_alias", &self.model_group_alias)
            .field(
                "hidden_model_group_aliases",
                &self.hidden_model_group_aliases,
            )
            .field("accounts", &self.accounts)
            .field("drop_params", &self.drop_params)
            .field("request_timeout", &self.request_timeout)
            .field("routing", &self.routing)
            .field("json_logs", &self.json_logs)
            .field("jwt", &self.jwt)
            .field("security", &self.security)
            .field("environment_variables", &self.environment_variables)
            .field("unimplemented", &self.unimplemented)
            .field("warnings", &self.warnings)
            .field(
                "raw",
                &format_args!("[document not shown: it holds secrets]"),
            )
            .finish()
    }
}

/// Database, spend writer and key cache settings (`general_settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountsSettings {
    /// The embedded SQLite file used when no `database_url` is set: `general_settings.tollgate_database_path`
    /// / `TOLLGATE_DATABASE_PATH`; default `tollgate.db` in the working directory.
    pub sqlite_path: PathBuf,
    /// `database_connection_pool_limit`; default 10.
    pub pool_limit: u32,
    /// `database_connection_timeout` (seconds); default 5 s.
    pub connection_timeout: Duration,
    /// `proxy_batch_write_at` (seconds between spend writes); default 1 s.
    pub batch_write_interval: Duration,
    /// `tollgate_spend_batch_size`: rows that trigger a write early; default 50 (small writes keep the writer from holding the core for long: p99 at 1,000 req/s went from +4 ms to +0.5 ms on SQLite).
    pub batch_size: usize,
    /// `tollgate_spend_journal_path`; default `tollgate-spend.journal` in the working directory.
    pub journal_path: PathBuf,
    /// `tollgate_accounts_refresh_interval` (seconds): how often changes made by other instances are
    /// read; default 2 s.
    pub refresh_interval: Duration,
    /// `allow_requests_on_db_unavailable`; default true.
    pub allow_requests_on_db_unavailable: bool,
    /// `disable_prisma_schema_update` or `--skip-migrations`: check the schema version instead of
    /// migrating.
    pub skip_migrations: bool,
    /// `disable_reset_budget`: no budget resets by this instance.
    pub disable_reset_budget: bool,
    /// Redis for limits shared by all instances: `REDIS_URL` / `router_settings.redis_url`, else built from
    /// `redis_host` / `redis_port` / `redis_password` / `redis_db` (or `REDIS_HOST`, ... in the environment).
    pub redis_url: Option<Secret>,
    /// `router_settings.tollgate_redis_prefix`; default `tollgate:`.
    pub redis_prefix: String,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        AccountsSettings {
            sqlite_path: PathBuf::from("tollgate.db"),
            pool_limit: 10,
            connection_timeout: Duration::from_secs(5),
            batch_write_interval: Duration::from_secs(1),
            batch_size: 50,
            journal_path: PathBuf::from("tollgate-spend.journal"),
            refresh_interval: Duration::from_secs(2),
            allow_requests_on_db_unavailable: true,
            skip_migrations: false,
            disable_reset_budget: false,
            redis_url: None,
            redis_prefix: "tollgate:".to_owned(),
        }
    }
}

impl Config {
    /// The database to use: `database_url`, else the embedded SQLite file.
    #[must_use]
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.expose().to_owned(),
            None => format!("sqlite://{}", self.accounts.sqlite_path.display()),
        }
    }
}

/// Listener and process settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// `--host` / `HOST`; default `0.0.0.0`.
    pub host: String,
    /// `--port` / `PORT`; default 4000 (0 asks the OS for a free port).
    pub port: u16,
    /// `--num_workers` / `NUM_WORKERS`; `None` = number of cores.
    pub num_workers: Option<usize>,
    /// `--keepalive_timeout` / `KEEPALIVE_TIMEOUT` / `general_settings.tollgate_keepalive_timeout`; default 90 s.
    pub keepalive_timeout: Duration,
    /// `TOLLGATE_HEADER_READ_TIMEOUT` / `general_settings.tollgate_header_read_timeout`; default 10 s.
    pub header_read_timeout: Duration,
    /// `general_settings.max_request_size_mb` (MiB); default 32 MiB.
    pub max_request_body_bytes: usize,
    /// `TOLLGATE_GRACEFUL_SHUTDOWN_TIMEOUT` / `general_settings.tollgate_graceful_shutdown_timeout`; default 30 s.
    pub graceful_shutdown_timeout: Duration,
    /// Both TLS files, or `None` for plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `--max_requests_before_restart` / `MAX_REQUESTS_BEFORE_RESTART`.
    pub max_requests_before_restart: Option<u64>,
    /// `general_settings.tollgate_max_header_bytes`: the largest request head (HTTP/1.1: 431 beyond it;
    /// HTTP/2: the header list size); default 64 KiB.
    pub max_header_bytes: usize,
    /// `--limit_concurrency` / `LIMIT_CONCURRENCY`: requests in flight beyond this get a 503; `None` = unlimited.
    pub limit_concurrency: Option<usize>,
}

/// Default listen address.
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// Default port (LiteLLM's).
pub const DEFAULT_PORT: u16 = 4000;
/// Default keep-alive timeout.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default time allowed to read request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest request body.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default time in-flight requests get to finish on shutdown.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            num_workers: None,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            graceful_shutdown_timeout: DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT,
            tls: None,
            max_requests_before_restart: None,
            max_header_bytes: crate::security::DEFAULT_MAX_HEADER_BYTES,
            limit_concurrency: None,
        }
    }
}

/// PEM certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

/// One `model_list` entry (`Default`: every setting unset, empty names).
#[derive(Clone, PartialEq, Default)]
pub struct Deployment {
    /// `model_info.id`, else the hex SHA-256 of `model_name` and `litellm_params` as written
    /// (an `os.environ/NAME` value hashes as that text, so rotating a key keeps the id).
    pub id: String,
    /// The public model group; may be `*` or contain `*` (e.g. `openai/*`).
    pub model_name: String,
    /// `openai`, `azure`, `anthropic`, `hosted_vllm`, `mock`, ...; `openai` when `model` has no
    /// prefix; `litellm_params.custom_llm_provider` wins.
    pub provider: String,
    /// The upstream model name after `provider/` (may be `*`).
    pub model: String,
    /// `litellm_params.api_base` (an http/https URL).
    pub api_base: Option<String>,
    /// `litellm_params.api_key`
    pub api_key: Option<Secret>,
    /// `litellm_params.api_version`
    pub api_version: Option<String>,
    /// `litellm_params.organization`
    pub organization: Option<String>,
    /// `litellm_params.rpm`
    pub rpm: Option<u64>,
    /// `litellm_params.tpm`
    pub tpm: Option<u64>,
    /// `litellm_params.weight`
    pub weight: Option<f64>,
    /// `litellm_params.timeout`
    pub timeout: Option<Duration>,
    /// `litellm_params.stream_timeout`
    pub stream_timeout: Option<Duration>,
    /// `litellm_params.max_retries`
    pub max_retries: Option<u32>,
    /// `litellm_params.num_retries`: this deployment's retries (over the router's `num_retries`).
    pub num_retries: Option<u32>,
    /// `model_info.health_check_timeout` (else `litellm_params.health_check_timeout`), seconds: the
    /// background health probe's time limit for this deployment.
    pub health_check_timeout: Option<Duration>,
    /// `litellm_params.extra_headers`, in file order.
    pub extra_headers: Vec<(String, String)>,
    /// `litellm_params.mock_response`
    pub mock_response: Option<String>,
    /// Every other `litellm_params` key (e.g. `temperature`, `aws_region_name`), as given.
    pub extra_params: serde_json::Map<String, serde_json::Value>,
    /// `model_info`
    pub model_info: ModelInfo,
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .extra_headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_sensitive_name(name) {
                    "[redacted]"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("model_name", &self.model_name)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("api_base", &self.api_base.as_deref().map(public_url))
            .field("api_key", &self.api_key)
            .field("api_version", &self.api_version)
            .field("organization", &self.organization)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("weight", &self.weight)
            .field("timeout", &self.timeout)
            .field("stream_timeout", &self.stream_timeout)
            .field("max_retries", &self.max_retries)
            .field("num_retries", &self.num_retries)
            .field("health_check_timeout", &self.health_check_timeout)
            .field("extra_headers", &headers)
            .field("mock_response", &self.mock_response)
            .field("extra_params", &Redacted(&self.extra_params))
            .field("model_info", &self.model_info)
            .finish()
    }
}

/// `model_info` of a deployment.
#[derive(Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// `id`
    pub id: Option<String>,
    /// `mode`
    pub mode: Option<Mode>,
    /// `base_model`
    pub base_model: Option<String>,
    /// `input_cost_per_token` (USD)
    pub input_cost_per_token: Option<Decimal>,
    /// `output_cost_per_token` (USD)
    pub output_cost_per_token: Option<Decimal>,
    /// `max_tokens`
    pub max_tokens: Option<u64>,
    /// `max_input_tokens`
    pub max_input_tokens: Option<u64>,
    /// `max_output_tokens`
    pub max_output_tokens: Option<u64>,
    /// `access_groups`
    pub access_groups: Vec<String>,
    /// Every other key, as given.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelInfo")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("base_model", &self.base_model)
            .field("input_cost_per_token", &self.input_cost_per_token)
            .field("output_cost_per_token", &self.output_cost_per_token)
            .field("max_tokens", &self.max_tokens)
            .field("max_input_tokens", &self.max_input_tokens)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("access_groups", &self.access_groups)
            .field("extra", &Redacted(&self.extra))
            .finish()
    }
}

/// `model_info.mode`, named as LiteLLM names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `chat`
    Chat,
    /// `completion`
    Completion,
    /// `embedding`
    Embedding,
    /// `image_generation`
    ImageGeneration,
    /// `audio_transcription`
    AudioTranscription,
    /// `audio_speech`
    AudioSpeech,
    /// `rerank`
    Rerank,
    /// `responses`
    Responses,
    /// `moderation`
    Moderation,
    /// `batch`
    Batch,
    /// `realtime`
    Realtime,
    /// Any other LiteLLM mode (`image_edit`, `video_generation`, `ocr`, ...), as written.
    Other(String),
}

impl Mode {
    /// LiteLLM's name for the mode.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Mode::Chat => "chat",
            Mode::Completion => "completion",
            Mode::Embedding => "embedding",
            Mode::ImageGeneration => "image_generation",
            Mode::AudioTranscription => "audio_transcription",
            Mode::AudioSpeech => "audio_speech",
            Mode::Rerank => "rerank",
            Mode::Responses => "responses",
            Mode::Moderation => "moderation",
            Mode::Batch => "batch",
            Mode::Realtime => "realtime",
            Mode::Other(other) => other,
        }
    }

    /// Parses LiteLLM's name; unknown names become [`Mode::Other`].
    #[must_use]
    pub fn parse(name: &str) -> Mode {
        match name {
            "chat" => Mode::Chat,
            "completion" => Mode::Completion,
            "embedding" => Mode::Embedding,
            "image_generation" => Mode::ImageGeneration,
            "audio_transcription" => Mode::AudioTranscription,
            "audio_speech" => Mode::AudioSpeech,
            "rerank" => Mode::Rerank,
            "responses" => Mode::Responses,
            "moderation" => Mode::Moderation,
            "batch" => Mode::Batch,
            "realtime" => Mode::Realtime,
            other => Mode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Mode, D::Error> {
        let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Mode::parse(&name))
    }
}

/// Whether a parameter or header name suggests its value is a credential.
pub(crate) fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "credential",
        "auth",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// A JSON map printed with credential-looking string/object values replaced, at any depth.
struct Redacted<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = redact_map(self.0);
        write!(f, "{}", serde_json::Value::Object(shown))
    }
}

fn redact_map(
    map: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    map.iter()
        .map(|(k, v)| {
            let shown = match v {
                serde_json::Value::Number(_)
                | serde_json::Value::Bool(_)
                | serde_json::Value::Null => v.clone(),
                _ if is_sensitive_name(k) => serde_json::Value::String("[redacted]".to_owned()),
                other => redact_value(other),
            };
            (k.clone(), shown)
        })
        .collect()
}

fn redact_value(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(redact_map(map)),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(redact_value).collect())
        }
        other => other.clone(),
    }
}

/// A URL without user-info, query or fragment (they can carry credentials).
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{s}s")
    }
}

impl Config {
    /// `base` with this config's `environment_variables` layered over it, the way the config
    /// itself was resolved (the file's variables win over the process environment).
    #[must_use]
    pub fn layered_env(&self, base: &crate::env::Env) -> crate::env::Env {
        base.with_overlay(
            self.environment_variables
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned())),
        )
    }

    /// A human summary for `--validate_config`: models, providers, settings in effect and the
    /// unimplemented list. Never prints secret values.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let source = self
            .source
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string());
        let _ = writeln!(out, "config file: {source}");
        let s = &self.server;
        let workers = s
            .num_workers
            .map_or_else(|| "one per core".to_owned(), |n| n.to_string());
        let tls = s.tls.as_ref().map_or_else(
            || "off".to_owned(),
            |t| format!("cert {}, key {}", t.cert.display(), t.key.display()),
        );
        let _ = writeln!(
            out,
            "server: {}:{} (workers: {workers}; tls: {tls})",
            s.host, s.port
        );
        let restart = s
            .max_requests_before_restart
            .map_or_else(|| "never".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "  keepalive {}, header read timeout {}, graceful shutdown {}, max request body {} bytes, restart after requests: {restart}",
            secs(s.keepalive_timeout),
            secs(s.header_read_timeout),
            secs(s.graceful_shutdown_timeout),
            s.max_request_body_bytes
        );
        let set = |v: bool| if v { "set" } else { "not set" };
        let _ = writeln!(
            out,
            "master key: {}; database url: {}",
            set(self.master_key.is_some()),
            set(self.database_url.is_some())
        );
        let timeout = self
            .request_timeout
            .map_or_else(|| "default".to_owned(), secs);
        let _ = writeln!(
            out,
            "settings: drop_params={}, request_timeout={timeout}, json_logs={}",
            self.drop_params, self.json_logs
        );
        let groups: BTreeSet<&str> = self
            .deployments
            .iter()
            .map(|d| d.model_name.as_str())
            .collect();
        let providers: BTreeSet<&str> = self
            .deployments
            .iter()
            .map(|d| d.provider.as_str())
            .collect();
        let _ = writeln!(
            out,
            "models: {} deployment(s) in {} group(s); providers: {}",
            self.deployments.len(),
            groups.len(),
            if providers.is_empty() {
                "none".to_owned()
            } else {
                providers.into_iter().collect::<Vec<_>>().join(", ")
            }
        );
        for d in &self.deployments {
            let mut line = format!("  {} -> {}/{}", d.model_name, d.provider, d.model);
            if let Some(base) = &d.api_base {
                let _ = write!(line, " api_base={}", public_url(base));
            }
            if d.api_key.is_some() {
                line.push_str(" api_key=set");
            }
            if let Some(v) = &d.api_version {
                let _ = write!(line, " api_version={v}");
            }
            if let Some(v) = d.rpm {
                let _ = write!(line, " rpm={v}");
            }
            if let Some(v) = d.tpm {
                let _ = write!(line, " tpm={v}");
            }
            if let Some(v) = d.weight {
                let _ = write!(line, " weight={v}");
            }
            if let Some(v) = d.timeout {
                let _ = write!(line, " timeout={}", secs(v));
            }
            if let Some(mode) = &d.model_info.mode {
                let _ = write!(line, " mode={mode}");
            }
            if d.mock_response.is_some() {
                line.push_str(" mock_response=set");
            }
            // Generated ids are 64 hex digits: the first 12 identify them well enough.
            let shown_id: String = if d.id.len() >= 64 {
                d.id.chars().take(12).collect()
            } else {
                d.id.clone()
            };
            let _ = write!(line, " [id {shown_id}]");
            let _ = writeln!(out, "{line}");
        }
        if !self.model_group_alias.is_empty() {
            let _ = writeln!(out, "model group aliases:");
            for (alias, target) in &self.model_group_alias {
                let hidden = if self.hidden_model_group_aliases.contains(alias) {
                    " (hidden)"
                } else {
                    ""
                };
                let _ = writeln!(out, "  {alias} -> {target}{hidden}");
            }
        }
        if self.unimplemented.is_empty() {
            let _ = writeln!(out, "not implemented by tollgate (accepted, ignored): none");
        } else {
            let _ = writeln!(out, "not implemented by tollgate (accepted, ignored):");
            for key in &self.unimplemented {
                let _ = writeln!(out, "  {key}");
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "warnings:");
            for w in &self.warnings {
                let _ = writeln!(out, "  {w}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for name in [
            "chat",
            "completion",
            "embedding",
            "image_generation",
            "audio_transcription",
            "audio_speech",
            "rerank",
            "responses",
            "moderation",
            "batch",
            "realtime",
            "video_generation",
        ] {
            assert_eq!(Mode::parse(name).as_str(), name);
            let json = serde_json::to_string(&Mode::parse(name)).expect("serialize");
            assert_eq!(json, format!("\"{name}\""));
            let back: Mode = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, Mode::parse(name));
        }
        assert_eq!(Mode::parse("image_edit"), Mode::Other("image_edit".into()));
    }

    #[test]
    fn overrides_debug_hides_secrets() {
        let o = Overrides {
            master_key: Some("sk-master".into()),
            database_url: Some("postgres://u:pw@db/x".into()),
            ..Overrides::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("sk-master") && !shown.contains("pw@"),
            "{shown}"
        );
    }

    #[test]
    fn redaction_in_nested_json() {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"aws_secret_access_key": "AKIA-secret", "headers": {"Authorization": "Bearer abc"}, "max_tokens": 5, "region": "us-east-1"}"#,
        )
        .expect("json");
        let shown = format!("{:?}", Redacted(&map));
        assert!(
            !shown.contains("AKIA-secret") && !shown.contains("Bearer abc"),
            "{shown}"
        );
        assert!(
            shown.contains("us-east-1") && shown.contains('5'),
            "{shown}"
        );
    }
}
