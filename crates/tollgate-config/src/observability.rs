//! Observability settings: the Prometheus endpoint (`callbacks: ["prometheus"]`, `--prometheus_metrics_port`,
//! `require_auth_for_metrics_endpoint`), OpenTelemetry (`callbacks: ["otel"]`), payload logging, the generic
//! webhook logger (`success_callback` / `failure_callback`) and budget alerts (`alerting: ["webhook"]`).

use std::time::Duration;

use crate::build::{check_url, section};
use crate::convert::{self, Diag};
use crate::env::Env;
use crate::error::{ConfigError, KeyPath};
use crate::secret::Secret;
use crate::types::{Config, Overrides};
use crate::yaml::Node;

/// Default cap on the label sets of one metric family (`general_settings.tollgate_metrics_max_series`).
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Default cap on each logged payload (`general_settings.tollgate_log_payload_max_bytes`).
pub const DEFAULT_PAYLOAD_MAX_BYTES: usize = 2048;

/// Names of the generic HTTP logger in `success_callback` / `failure_callback` / `callbacks`.
pub const WEBHOOK_CALLBACK_NAMES: &[&str] = &["generic_api", "generic", "webhook"];

/// Callback names tollgate acts on (anything else in a callbacks list is reported as unsupported).
const SUPPORTED: &[&str] = &["prometheus", "otel", "generic_api", "generic", "webhook"];

/// Where and how finished requests are posted (`GENERIC_LOGGER_ENDPOINT`, `GENERIC_LOGGER_HEADERS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookLogger {
    pub endpoint: Secret,
    /// `Key=Value` pairs; values may be secrets.
    pub headers: Vec<(String, Secret)>,
    /// Post successful requests (`success_callback` / `callbacks`).
    pub on_success: bool,
    /// Post failed requests (`failure_callback` / `callbacks`).
    pub on_failure: bool,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

/// Budget alerts (`general_settings.alerting: ["webhook"]` with `WEBHOOK_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerting {
    pub webhook_url: Secret,
    /// `alert_types`; empty = all. Budget alerts are sent when it is empty or holds `budget_alerts`.
    pub alert_types: Vec<String>,
}

impl Alerting {
    /// Whether budget alerts are wanted.
    #[must_use]
    pub fn budget_alerts(&self) -> bool {
        self.alert_types.is_empty() || self.alert_types.iter().any(|t| t == "budget_alerts")
    }
}

/// What the server exports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservabilitySettings {
    /// `"prometheus"` is in a callbacks list (`/metrics` is served either way; this only says it was asked for).
    pub prometheus_requested: bool,
    /// `--prometheus_metrics_port` / `PROMETHEUS_METRICS_PORT`: also serve `/metrics` there (no auth).
    pub metrics_port: Option<u16>,
    /// `general_settings.require_auth_for_metrics_endpoint` (LiteLLM's default: false).
    pub require_auth_for_metrics: bool,
    /// `general_settings.tollgate_metrics_max_series`.
    pub max_series: usize,
    /// `"otel"` is in a callbacks list: traces over OTLP, configured by the `OTEL_*` variables.
    pub otel: bool,
    /// Request and response bodies in the logs (`general_settings.tollgate_log_payloads`, or
    /// `--detailed_debug`), each cut to `payload_max_bytes`.
    pub log_payloads: bool,
    pub payload_max_bytes: usize,
    /// `litellm_settings.turn_off_message_logging`: messages and responses are left out of callbacks.
    pub turn_off_message_logging: bool,
    /// `litellm_settings.enable_end_user_cost_tracking_prometheus_only`: the `end_user` metric label holds
    /// the request's end user (else `None`, as in LiteLLM: clients choose that value, so it is unbounded).
    pub end_user_label: bool,
    pub webhook: Option<WebhookLogger>,
    pub alerting: Option<Alerting>,
    /// Callback names given but not supported (reported at start-up), with the list they were in.
    pub unsupported_callbacks: Vec<String>,
}

impl Default for ObservabilitySettings {
    fn default() -> ObservabilitySettings {
        ObservabilitySettings {
            prometheus_requested: false,
            metrics_port: None,
            require_auth_for_metrics: false,
            max_series: DEFAULT_MAX_SERIES,
            otel: false,
            log_payloads: false,
            payload_max_bytes: DEFAULT_PAYLOAD_MAX_BYTES,
            turn_off_message_logging: false,
            end_user_label: false,
            webhook: None,
            alerting: None,
            unsupported_callbacks: Vec::new(),
        }
    }
}

/// Read the settings into `config.observability`.
pub(crate) fn read(root: &Node, env: &Env, o: &Overrides, config: &mut Config, diag: &mut Diag) {
    let mut s = ObservabilitySettings::default();
    let general = KeyPath::root().key("general_settings");
    let mut alerting: Option<(Vec<String>, crate::yaml::Loc)> = None;
    let mut alert_types = Vec::new();
    for e in section(root, "general_settings") {
        let path = general.key(&e.key);
        let v = &e.value;
        match e.key.as_str() {
            "require_auth_for_metrics_endpoint" => {
                if let Some(b) = convert::boolean(v, &path, diag) {
                    s.require_auth_for_metrics = b;
                }
            }
            "tollgate_metrics_max_series" => {
                if let Some(n) = convert::at_least(v, &path, diag, 1) {
                    s.max_series = n;
                }
            }
            "tollgate_log_payloads" => {
                if let Some(b) = convert::boolean(v, &path, diag) {
                    s.log_payloads = b;
                }
            }
            "tollgate_log_payload_max_bytes" => {
                if let Some(n) = convert::at_least(v, &path, diag, 16) {
                    s.payload_max_bytes = n;
                }
            }
            "alerting" => {
                alerting = convert::string_list(v, &path, diag).map(|l| (l, v.loc.clone()))
            }
            "alert_types" => alert_types = convert::string_list(v, &path, diag).unwrap_or_default(),
            _ => {}
        }
    }
    let from_file = callback_settings(root, diag);
    let mut file_logger: Option<FileLogger> = None;
    let litellm = KeyPath::root().key("litellm_settings");
    let (mut success, mut failure) = (false, false);
    for e in section(root, "litellm_settings") {
        let path = litellm.key(&e.key);
        let v = &e.value;
        let (on_success, on_failure) = match e.key.as_str() {
            "callbacks" => (true, true),
            "success_callback" => (true, false),
            "failure_callback" => (false, true),
            "turn_off_message_logging" => {
                if let Some(b) = convert::boolean(v, &path, diag) {
                    s.turn_off_message_logging = b;
                }
                continue;
            }
            "enable_end_user_cost_tracking_prometheus_only" => {
                if let Some(b) = convert::boolean(v, &path, diag) {
                    s.end_user_label = b;
                }
                continue;
            }
            _ => continue,
        };
        let Some(names) = convert::string_list(v, &path, diag) else {
            continue;
        };
        for name in names {
            match name.as_str() {
                "prometheus" => s.prometheus_requested = true,
                "otel" => s.otel = true,
                n if WEBHOOK_CALLBACK_NAMES.contains(&n)
                    || from_file.iter().any(|(k, f)| k == n && f.generic_api) =>
                {
                    success |= on_success;
                    failure |= on_failure;
                    if let Some((_, f)) = from_file.iter().find(|(k, _)| k == n) {
                        if file_logger.as_ref().is_some_and(|seen| seen.name != f.name) {
                            diag.warn(
                                Some(&f.loc),
                                &KeyPath::root().key("callback_settings").key(&f.name),
                                "only one generic_api logger is supported; the first one named in the callbacks is used",
                            );
                        } else {
                            file_logger = Some(f.clone());
                        }
                    }
                }
                other => {
                    debug_assert!(!SUPPORTED.contains(&other));
                    let entry = format!("litellm_settings.{}: {other}", e.key);
                    if !s.unsupported_callbacks.contains(&entry) {
                        s.unsupported_callbacks.push(entry);
                    }
                }
            }
        }
    }
    if success || failure {
        s.webhook = webhook_logger(env, success, failure, file_logger.as_ref(), diag);
    }
    if let Some((channels, loc)) = alerting {
        for c in &channels {
            if c != "webhook" {
                diag.warn(
                    Some(&loc),
                    &general.key("alerting"),
                    format!(
                        "alerting channel \"{c}\" is not supported (only \"webhook\"); ignored"
                    ),
                );
            }
        }
        if channels.iter().any(|c| c == "webhook") {
            match env.first_non_empty(&["WEBHOOK_URL"]) {
                Some((name, url)) => {
                    if let Err(why) = check_url(&url) {
                        diag.errors.push(ConfigError::Env {
                            variable: name,
                            message: why.into(),
                        });
                    } else {
                        s.alerting = Some(Alerting {
                            webhook_url: Secret::new(url),
                            alert_types,
                        });
                    }
                }
                None => diag.error(
                    Some(&loc),
                    &general.key("alerting"),
                    "\"webhook\" alerting needs the WEBHOOK_URL environment variable",
                ),
            }
        }
    }
    if o.detailed_debug {
        s.log_payloads = true;
    }
    s.metrics_port = o.prometheus_metrics_port.or_else(|| {
        let (name, v) = env.first_non_empty(&["PROMETHEUS_METRICS_PORT"])?;
        match v.trim().parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                diag.errors.push(ConfigError::Env {
                    variable: name,
                    message: format!("invalid port \"{v}\""),
                });
                None
            }
        }
    });
    config.observability = s;
}

/// `GENERIC_LOGGER_ENDPOINT` (required), `GENERIC_LOGGER_HEADERS`, `GENERIC_LOGGER_BATCH_SIZE` (or
/// LiteLLM's `DEFAULT_BATCH_SIZE`), `GENERIC_LOGGER_FLUSH_INTERVAL` (or `DEFAULT_FLUSH_INTERVAL_SECONDS`).
fn webhook_logger(
    env: &Env,
    on_success: bool,
    on_failure: bool,
    file: Option<&FileLogger>,
    diag: &mut Diag,
) -> Option<WebhookLogger> {
    // `callback_settings.<name>.event_types` narrows what is posted.
    let (on_success, on_failure) = match file.and_then(|f| f.event_types.as_ref()) {
        Some(types) => (
            on_success && types.iter().any(|t| t == "llm_api_success"),
            on_failure && types.iter().any(|t| t == "llm_api_failure"),
        ),
        None => (on_success, on_failure),
    };
    let batch_size = number(
        env,
        &["GENERIC_LOGGER_BATCH_SIZE", "DEFAULT_BATCH_SIZE"],
        512,
        diag,
    )?;
    let flush = number(
        env,
        &[
            "GENERIC_LOGGER_FLUSH_INTERVAL",
            "DEFAULT_FLUSH_INTERVAL_SECONDS",
        ],
        5,
        diag,
    )?;
    if let Some(f) = file
        && let Some(endpoint) = &f.endpoint
    {
        let mut headers = f.headers.clone();
        let mut from_env = env_headers(env, diag)?;
        // The file's headers win over the environment's, as in LiteLLM.
        from_env.retain(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)));
        headers.extend(from_env);
        return Some(WebhookLogger {
            endpoint: endpoint.clone(),
            headers,
            on_success,
            on_failure,
            batch_size,
            flush_interval: Duration::from_secs(flush as u64),
        });
    }
    let Some((name, endpoint)) = env.first_non_empty(&["GENERIC_LOGGER_ENDPOINT"]) else {
        diag.errors.push(ConfigError::Env {
            variable: "GENERIC_LOGGER_ENDPOINT".into(),
            message: "the generic_api callback needs its endpoint URL".into(),
        });
        return None;
    };
    if let Err(why) = check_url(&endpoint) {
        diag.errors.push(ConfigError::Env {
            variable: name,
            message: why.into(),
        });
        return None;
    }
    let headers = env_headers(env, diag)?;
    Some(WebhookLogger {
        endpoint: Secret::new(endpoint.trim().to_string()),
        headers,
        on_success,
        on_failure,
        batch_size,
        flush_interval: Duration::from_secs(flush as u64),
    })
}

/// `GENERIC_LOGGER_HEADERS` (`Name=value,Name2=value2`); `None` after reporting a malformed pair.
fn env_headers(env: &Env, diag: &mut Diag) -> Option<Vec<(String, Secret)>> {
    let mut headers = Vec::new();
    if let Some((name, raw)) = env.first_non_empty(&["GENERIC_LOGGER_HEADERS"]) {
        for (i, pair) in raw
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
        {
            match pair.split_once('=') {
                Some((k, v)) if is_header_name(k.trim()) => {
                    headers.push((k.trim().to_string(), Secret::new(v.trim().to_string())));
                }
                _ => {
                    diag.errors.push(ConfigError::Env {
                        variable: name.clone(),
                        message: format!("pair {} is not `Header-Name=value`", i + 1),
                    });
                    return None;
                }
            }
        }
    }
    Some(headers)
}

/// A logger declared in the top-level `callback_settings` (LiteLLM's newer form).
#[derive(Debug, Clone)]
struct FileLogger {
    name: String,
    loc: crate::yaml::Loc,
    /// `callback_type: generic_api`, or the entry is named `generic_api`.
    generic_api: bool,
    endpoint: Option<Secret>,
    headers: Vec<(String, Secret)>,
    event_types: Option<Vec<String>>,
}

/// `callback_settings: {<name>: {callback_type, endpoint, headers, event_types, log_format}}`.
fn callback_settings(root: &Node, diag: &mut Diag) -> Vec<(String, FileLogger)> {
    let base = KeyPath::root().key("callback_settings");
    let mut out = Vec::new();
    for e in section(root, "callback_settings") {
        let path = base.key(&e.key);
        let Some(fields) = e.value.entries() else {
            diag.error(
                Some(&e.value.loc),
                &path,
                format!("must be a mapping, found {}", convert::found(&e.value)),
            );
            continue;
        };
        let mut f = FileLogger {
            name: e.key.clone(),
            loc: e.value.loc.clone(),
            generic_api: e.key == "generic_api",
            endpoint: None,
            headers: Vec::new(),
            event_types: None,
        };
        for field in fields {
            let p = path.key(&field.key);
            let v = &field.value;
            match field.key.as_str() {
                "callback_type" => {
                    if let Some(t) = convert::string(v, &p, diag) {
                        f.generic_api |= t == "generic_api";
                    }
                }
                "endpoint" => {
                    if let Some(u) = convert::string(v, &p, diag) {
                        if let Err(why) = check_url(&u) {
                            diag.error(Some(&v.loc), &p, why);
                        } else {
                            f.endpoint = Some(Secret::new(u.trim().to_string()));
                        }
                    }
                }
                "headers" => match v.entries() {
                    Some(hs) => {
                        for h in hs {
                            let hp = p.key(&h.key);
                            if !is_header_name(&h.key) {
                                diag.error(Some(&h.value.loc), &hp, "is not a valid header name");
                            } else if let Some(val) = convert::string(&h.value, &hp, diag) {
                                f.headers.push((h.key.clone(), Secret::new(val)));
                            }
                        }
                    }
                    None => diag.error(
                        Some(&v.loc),
                        &p,
                        format!(
                            "must be a mapping of header names to values, found {}",
                            convert::found(v)
                        ),
                    ),
                },
                "event_types" => f.event_types = convert::string_list(v, &p, diag),
                "log_format" => {
                    if let Some(fmt) = convert::string(v, &p, diag)
                        && fmt != "json_array"
                    {
                        diag.warn(
                            Some(&v.loc),
                            &p,
                            format!("log_format \"{fmt}\" is not supported; records are posted as a JSON array"),
                        );
                    }
                }
                other => diag.error(
                    Some(&v.loc),
                    &p,
                    format!(
                        "unknown key `{other}` (known: callback_type, endpoint, headers, event_types, log_format)"
                    ),
                ),
            }
        }
        out.push((e.key.clone(), f));
    }
    out
}

fn number(env: &Env, vars: &[&str], default: usize, diag: &mut Diag) -> Option<usize> {
    match env.first_non_empty(vars) {
        None => Some(default),
        Some((name, v)) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                diag.errors.push(ConfigError::Env {
                    variable: name,
                    message: format!(
                        "invalid value \"{v}\": expected a whole number of at least 1"
                    ),
                });
                None
            }
        },
    }
}

fn is_header_name(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
