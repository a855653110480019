//! LiteLLM's Prometheus metrics: the families (LiteLLM's names and labels, so its Grafana dashboards work),
//! what each request and each attempt adds to them, and the gauges refreshed at scrape time.

use std::sync::Arc;
use std::time::Duration;

use tollgate_telemetry::metrics::{CounterFamily, GaugeFamily, HistogramFamily, Registry};

/// LiteLLM's `LATENCY_BUCKETS` (seconds; `+Inf` is implicit).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0, 180.0,
    240.0, 300.0,
];

/// What LiteLLM prints for a missing label value (Python's `str(None)`).
pub const NONE: &str = "None";

// Label sets, in LiteLLM's order.
const USER_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "model",
    "team",
    "team_alias",
    "user",
];
const TOKEN_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "model",
    "team",
    "team_alias",
    "user",
    "requested_model",
];
const PROXY_TOTAL_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "requested_model",
    "team",
    "team_alias",
    "user",
    "status_code",
    "route",
];
const PROXY_FAILED_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "requested_model",
    "team",
    "team_alias",
    "user",
    "exception_status",
    "exception_class",
    "route",
];
const LATENCY_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "requested_model",
    "team",
    "team_alias",
    "user",
    "model",
];
/// prometheus_client's default buckets (LiteLLM's per-output-token histogram sets none).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const OVERHEAD_LABELS: &[&str] = &[
    "model_group",
    "api_provider",
    "api_base",
    "litellm_model_name",
    "hashed_api_key",
    "api_key_alias",
];
const DEPLOYMENT_LABELS: &[&str] = &["litellm_model_name", "model_id", "api_base", "api_provider"];
const PER_TOKEN_LABELS: &[&str] = &[
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
];
const DEPLOYMENT_REQUEST_LABELS: &[&str] = &[
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "requested_model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
];
const DEPLOYMENT_FAILURE_LABELS: &[&str] = &[
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "requested_model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "exception_status",
    "exception_class",
];
const COOLDOWN_LABELS: &[&str] = &[
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "exception_status",
];
const REMAINING_DEPLOYMENT_LABELS: &[&str] = &[
    "model_group",
    "api_provider",
    "api_base",
    "litellm_model_name",
    "hashed_api_key",
    "api_key_alias",
];
const KEY_MODEL_LABELS: &[&str] = &["hashed_api_key", "api_key_alias", "model"];

/// Who made a request, as label values (`NONE` when absent).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub end_user: &'a str,
    pub hashed_api_key: &'a str,
    pub api_key_alias: &'a str,
    pub team: &'a str,
    pub team_alias: &'a str,
    pub user: &'a str,
}

impl Caller<'static> {
    pub const NOBODY: Caller<'static> = Caller {
        end_user: NONE,
        hashed_api_key: NONE,
        api_key_alias: NONE,
        team: NONE,
        team_alias: NONE,
        user: NONE,
    };
}

/// A deployment, as label values.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    /// `litellm_model_name`: the upstream model as configured (`openai/gpt-4o`).
    pub model: &'a str,
    /// `model_id`: the deployment id.
    pub id: &'a str,
    pub api_base: &'a str,
    pub provider: &'a str,
}

/// One finished LLM request.
#[derive(Debug)]
pub struct Finished<'a> {
    pub caller: Caller<'a>,
    pub requested_model: &'a str,
    pub model_group: &'a str,
    /// The deployment that answered last, if any was tried.
    pub deployment: Option<Deployment<'a>>,
    pub route: &'a str,
    /// What the client got.
    pub status: u16,
    /// The upstream's status when it answered with an error (names the exception class).
    pub upstream_status: Option<u16>,
    /// Spend in nano-dollars.
    pub spend_nanos: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub total_latency: Duration,
    /// Upstream time of the answering attempt (a stream: until its last chunk).
    pub llm_latency: Option<Duration>,
    /// Streams: the time to the first chunk.
    pub time_to_first_token: Option<Duration>,
}

/// The LiteLLM-compatible metric families, plus tollgate's own.
pub struct GatewayMetrics {
    pub registry: Registry,
    requests: Arc<CounterFamily>,
    proxy_total: Arc<CounterFamily>,
    proxy_failed: Arc<CounterFamily>,
    spend: Arc<CounterFamily>,
    total_tokens: Arc<CounterFamily>,
    input_tokens: Arc<CounterFamily>,
    output_tokens: Arc<CounterFamily>,
    total_latency: Arc<HistogramFamily>,
    llm_latency: Arc<HistogramFamily>,
    ttft: Arc<HistogramFamily>,
    overhead: Arc<HistogramFamily>,
    latency_per_output_token: Arc<HistogramFamily>,
    deployment_success: Arc<CounterFamily>,
    deployment_failure: Arc<CounterFamily>,
    deployment_total: Arc<CounterFamily>,
    deployment_cooled_down: Arc<CounterFamily>,
    pub(crate) deployment_state: Arc<GaugeFamily>,
    remaining_team_budget: Arc<GaugeFamily>,
    team_max_budget: Arc<GaugeFamily>,
    remaining_key_budget: Arc<GaugeFamily>,
    key_max_budget: Arc<GaugeFamily>,
    pub(crate) remaining_requests: Arc<GaugeFamily>,
    pub(crate) remaining_tokens: Arc<GaugeFamily>,
    remaining_key_requests: Arc<GaugeFamily>,
    remaining_key_tokens: Arc<GaugeFamily>,
    pub(crate) spend_rows_buffered: Arc<GaugeFamily>,
    pub(crate) telemetry_dropped: Arc<GaugeFamily>,
}

impl GatewayMetrics {
    pub fn new(max_series: usize) -> GatewayMetrics {
        let r = Registry::new(max_series);
        let h = |name, help, labels| r.histogram(name, help, labels, LATENCY_BUCKETS);
        GatewayMetrics {
            requests: r.counter(
                "litellm_requests_metric",
                "Total number of LLM calls to litellm - track total per API Key, team, user",
                USER_LABELS,
            ),
            proxy_total: r.counter(
                "litellm_proxy_total_requests_metric",
                "Total number of requests made to the proxy server - track number of client side requests",
                PROXY_TOTAL_LABELS,
            ),
            proxy_failed: r.counter(
                "litellm_proxy_failed_requests_metric",
                "Total number of failed responses from proxy - the client did not get a success response from litellm proxy",
                PROXY_FAILED_LABELS,
            ),
            spend: r.float_counter(
                "litellm_spend_metric",
                "Total spend on LLM requests",
                USER_LABELS,
                1e-9,
            ),
            total_tokens: r.counter(
                "litellm_total_tokens_metric",
                "Total number of input + output tokens from LLM requests",
                TOKEN_LABELS,
            ),
            input_tokens: r.counter(
                "litellm_input_tokens_metric",
                "Total number of input tokens from LLM requests",
                TOKEN_LABELS,
            ),
            output_tokens: r.counter(
                "litellm_output_tokens_metric",
                "Total number of output tokens from LLM requests",
                TOKEN_LABELS,
            ),
            total_latency: h(
                "litellm_request_total_latency_metric",
                "Total latency (seconds) for a request to LiteLLM",
                LATENCY_LABELS,
            ),
            llm_latency: h(
                "litellm_llm_api_latency_metric",
                "Total latency (seconds) for a models LLM API call",
                LATENCY_LABELS,
            ),
            ttft: h(
                "litellm_llm_api_time_to_first_token_metric",
                "Time to first token for a models LLM API call",
                LATENCY_LABELS,
            ),
            overhead: h(
                "litellm_overhead_latency_metric",
                "Latency overhead (seconds) added by LiteLLM processing",
                OVERHEAD_LABELS,
            ),
            latency_per_output_token: r.histogram(
                "litellm_deployment_latency_per_output_token",
                "LLM Deployment Analytics - Latency per output token",
                PER_TOKEN_LABELS,
                DEFAULT_BUCKETS,
            ),
            deployment_success: r.counter(
                "litellm_deployment_success_responses",
                "LLM Deployment Analytics - Total number of successful LLM API calls via litellm",
                DEPLOYMENT_REQUEST_LABELS,
            ),
            deployment_failure: r.counter(
                "litellm_deployment_failure_responses",
                "LLM Deployment Analytics - Total number of failed LLM API calls for a specific LLM deploymeny. exception_status is the status of the exception from the llm api",
                DEPLOYMENT_FAILURE_LABELS,
            ),
            deployment_total: r.counter(
                "litellm_deployment_total_requests",
                "LLM Deployment Analytics - Total number of LLM API calls via litellm - success + failure",
                DEPLOYMENT_REQUEST_LABELS,
            ),
            deployment_cooled_down: r.counter(
                "litellm_deployment_cooled_down",
                "LLM Deployment Analytics - Number of times a deployment has been cooled down by LiteLLM load balancing logic. exception_status is the status of the exception that caused the deployment to be cooled down",
                COOLDOWN_LABELS,
            ),
            deployment_state: r.gauge(
                "litellm_deployment_state",
                "LLM Deployment Analytics - The state of the deployment: 0 = healthy, 1 = partial outage, 2 = complete outage",
                DEPLOYMENT_LABELS,
            ),
            remaining_team_budget: r.gauge(
                "litellm_remaining_team_budget_metric",
                "Remaining budget for team",
                &["team", "team_alias"],
            ),
            team_max_budget: r.gauge(
                "litellm_team_max_budget_metric",
                "Maximum budget set for team",
                &["team", "team_alias"],
            ),
            remaining_key_budget: r.gauge(
                "litellm_remaining_api_key_budget_metric",
                "Remaining budget for api key",
                &["hashed_api_key", "api_key_alias"],
            ),
            key_max_budget: r.gauge(
                "litellm_api_key_max_budget_metric",
                "Maximum budget set for api key",
                &["hashed_api_key", "api_key_alias"],
            ),
            remaining_requests: r.gauge(
                "litellm_remaining_requests_metric",
                "LLM Deployment Analytics - remaining requests for model, from the deployment's rpm this minute",
                REMAINING_DEPLOYMENT_LABELS,
            ),
            remaining_tokens: r.gauge(
                "litellm_remaining_tokens_metric",
                "LLM Deployment Analytics - remaining tokens for model, from the deployment's tpm this minute",
                REMAINING_DEPLOYMENT_LABELS,
            ),
            remaining_key_requests: r.gauge(
                "litellm_remaining_api_key_requests_for_model",
                "Remaining Requests API Key can make for model (model based rpm limit on key)",
                KEY_MODEL_LABELS,
            ),
            remaining_key_tokens: r.gauge(
                "litellm_remaining_api_key_tokens_for_model",
                "Remaining Tokens API Key can make for model (model based tpm limit on key)",
                KEY_MODEL_LABELS,
            ),
            spend_rows_buffered: r.gauge(
                "tollgate_spend_rows_buffered",
                "Spend rows in memory waiting for the batch writer",
                &[],
            ),
            telemetry_dropped: r.gauge(
                "tollgate_telemetry_dropped",
                "Spans and webhook items dropped because their queue was full or delivery failed",
                &["exporter"],
            ),
            registry: r,
        }
    }

    /// A finished LLM request (success or failure).
    pub fn request(&self, f: &Finished<'_>) {
        let c = &f.caller;
        let model = f.deployment.map_or(f.model_group, |d| d.model);
        let status = status_str(f.status);
        let status: &str = &status;
        self.proxy_total.inc_by(
            &[
                c.end_user,
                c.hashed_api_key,
                c.api_key_alias,
                f.requested_model,
                c.team,
                c.team_alias,
                c.user,
                status,
                f.route,
            ],
            1,
        );
        if f.status >= 400 {
            self.proxy_failed.inc_by(
                &[
                    c.end_user,
                    c.hashed_api_key,
                    c.api_key_alias,
                    f.requested_model,
                    c.team,
                    c.team_alias,
                    c.user,
                    status,
                    &exception_class(
                        f.upstream_status.unwrap_or(f.status),
                        f.deployment.map(|d| d.provider),
                    ),
                    f.route,
                ],
                1,
            );
            return;
        }
        let user = [
            c.end_user,
            c.hashed_api_key,
            c.api_key_alias,
            model,
            c.team,
            c.team_alias,
            c.user,
        ];
        self.requests.inc_by(&user, 1);
        self.spend.inc_by(&user, f.spend_nanos);
        let tokens = [
            c.end_user,
            c.hashed_api_key,
            c.api_key_alias,
            model,
            c.team,
            c.team_alias,
            c.user,
            f.requested_model,
        ];
        self.total_tokens.inc_by(&tokens, f.total_tokens);
        self.input_tokens.inc_by(&tokens, f.prompt_tokens);
        self.output_tokens.inc_by(&tokens, f.completion_tokens);
        let latency = [
            c.end_user,
            c.hashed_api_key,
            c.api_key_alias,
            f.requested_model,
            c.team,
            c.team_alias,
            c.user,
            model,
        ];
        self.total_latency
            .observe(&latency, f.total_latency.as_secs_f64());
        if let Some(l) = f.llm_latency {
            self.llm_latency.observe(&latency, l.as_secs_f64());
            if let Some(d) = f.deployment {
                self.overhead.observe(
                    &[
                        f.model_group,
                        d.provider,
                        d.api_base,
                        d.model,
                        c.hashed_api_key,
                        c.api_key_alias,
                    ],
                    f.total_latency.saturating_sub(l).as_secs_f64(),
                );
                if f.completion_tokens > 0 {
                    self.latency_per_output_token.observe(
                        &[
                            d.model,
                            d.id,
                            d.api_base,
                            d.provider,
                            c.hashed_api_key,
                            c.api_key_alias,
                            c.team,
                            c.team_alias,
                        ],
                        f.time_to_first_token.unwrap_or(l).as_secs_f64()
                            / f.completion_tokens as f64,
                    );
                }
            }
        }
        if let Some(t) = f.time_to_first_token {
            self.ttft.observe(&latency, t.as_secs_f64());
        }
    }

    /// A request that was answered without reaching an upstream (refused by limits or validation). As in
    /// LiteLLM, a request refused for its key (401) is not counted: anyone could inflate the counters.
    pub fn refused(&self, c: &Caller<'_>, requested_model: &str, route: &str, status: u16) {
        if status == 401 {
            return;
        }
        let status_s = status_str(status);
        let status_s: &str = &status_s;
        self.proxy_total.inc_by(
            &[
                c.end_user,
                c.hashed_api_key,
                c.api_key_alias,
                requested_model,
                c.team,
                c.team_alias,
                c.user,
                status_s,
                route,
            ],
            1,
        );
        if status >= 400 {
            self.proxy_failed.inc_by(
                &[
                    c.end_user,
                    c.hashed_api_key,
                    c.api_key_alias,
                    requested_model,
                    c.team,
                    c.team_alias,
                    c.user,
                    status_s,
                    &exception_class(status, None),
                    route,
                ],
                1,
            );
        }
    }

    /// One upstream attempt's outcome (`status` 200 for a success).
    pub fn attempt(
        &self,
        d: &Deployment<'_>,
        requested_model: &str,
        c: &Caller<'_>,
        status: u16,
        cooled_down: bool,
    ) {
        let labels = deployment_request(d, requested_model, c);
        self.deployment_total.inc_by(&labels, 1);
        if status < 400 {
            self.deployment_success.inc_by(&labels, 1);
            return;
        }
        let status_s = status_str(status);
        let status_s: &str = &status_s;
        let [a, b, e, f, g, h, i, j, k] = labels;
        self.deployment_failure.inc_by(
            &[
                a,
                b,
                e,
                f,
                g,
                h,
                i,
                j,
                k,
                status_s,
                &exception_class(status, Some(d.provider)),
            ],
            1,
        );
        if cooled_down {
            self.deployment_cooled_down
                .inc_by(&[d.model, d.id, d.api_base, d.provider, status_s], 1);
        }
    }

    /// A budgeted key's or team's spend after a request.
    pub fn budget(&self, kind: &str, id: &str, alias: &str, max_nanos: i64, spend_nanos: i64) {
        let (remaining, max) = match kind {
            "key" => (&self.remaining_key_budget, &self.key_max_budget),
            "team" => (&self.remaining_team_budget, &self.team_max_budget),
            _ => return,
        };
        let labels = [id, alias];
        remaining.set(&labels, (max_nanos - spend_nanos) as f64 / 1e9);
        max.set(&labels, max_nanos as f64 / 1e9);
    }

    /// The key's own rpm/tpm remaining this minute (the `x-ratelimit-remaining-*` it was answered with).
    pub fn key_remaining(
        &self,
        hashed_api_key: &str,
        alias: &str,
        model: &str,
        requests: Option<u64>,
        tokens: Option<u64>,
    ) {
        let labels = [hashed_api_key, alias, model];
        if let Some(r) = requests {
            self.remaining_key_requests.set(&labels, r as f64);
        }
        if let Some(t) = tokens {
            self.remaining_key_tokens.set(&labels, t as f64);
        }
    }
}

fn deployment_request<'a>(
    d: &Deployment<'a>,
    requested_model: &'a str,
    c: &Caller<'a>,
) -> [&'a str; 9] {
    [
        d.model,
        d.id,
        d.api_base,
        d.provider,
        requested_model,
        c.hashed_api_key,
        c.api_key_alias,
        c.team,
        c.team_alias,
    ]
}

/// A status code as a label value, without allocating for the common ones.
fn status_str(status: u16) -> std::borrow::Cow<'static, str> {
    use std::borrow::Cow::Borrowed;
    match status {
        200 => Borrowed("200"),
        400 => Borrowed("400"),
        401 => Borrowed("401"),
        403 => Borrowed("403"),
        404 => Borrowed("404"),
        408 => Borrowed("408"),
        413 => Borrowed("413"),
        429 => Borrowed("429"),
        500 => Borrowed("500"),
        502 => Borrowed("502"),
        503 => Borrowed("503"),
        504 => Borrowed("504"),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// LiteLLM's `exception_class` label: the OpenAI SDK's exception class for a status, prefixed with the
/// provider when an upstream failed (`Openai.RateLimitError`).
pub fn exception_class(status: u16, provider: Option<&str>) -> std::borrow::Cow<'static, str> {
    let class = class_name(status);
    match provider {
        Some(p) if !p.is_empty() => {
            let mut chars = p.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or('_');
            std::borrow::Cow::Owned(format!("{first}{}.{class}", chars.as_str()))
        }
        _ => std::borrow::Cow::Borrowed(class),
    }
}

/// The OpenAI SDK's exception class for a status.
pub fn class_name(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 | 504 => "Timeout",
        429 => "RateLimitError",
        502 => "APIConnectionError",
        503 => "ServiceUnavailableError",
        s if s >= 500 => "InternalServerError",
        _ => "APIError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_classes_name_the_provider_like_litellm() {
        assert_eq!(
            exception_class(429, Some("openai")),
            "Openai.RateLimitError"
        );
        assert_eq!(
            exception_class(500, Some("azure")),
            "Azure.InternalServerError"
        );
        assert_eq!(exception_class(400, None), "BadRequestError");
        assert_eq!(exception_class(504, None), "Timeout");
        assert_eq!(status_str(200), "200");
        assert_eq!(status_str(418), "418");
    }

    #[test]
    fn a_request_adds_to_every_family_it_names() {
        let m = GatewayMetrics::new(100);
        let d = Deployment {
            model: "openai/gpt-4o",
            id: "dep-a",
            api_base: "http://up",
            provider: "openai",
        };
        m.request(&Finished {
            caller: Caller::NOBODY,
            requested_model: "gpt-4o",
            model_group: "gpt-4o",
            deployment: Some(d),
            route: "/chat/completions",
            status: 200,
            upstream_status: None,
            spend_nanos: 1_500_000_000,
            prompt_tokens: 10,
            completion_tokens: 4,
            total_tokens: 14,
            total_latency: Duration::from_millis(30),
            llm_latency: Some(Duration::from_millis(20)),
            time_to_first_token: None,
        });
        let text = m.registry.render();
        assert!(text.contains("litellm_spend_metric_total{api_key_alias=\"None\",end_user=\"None\",hashed_api_key=\"None\",model=\"openai/gpt-4o\",team=\"None\",team_alias=\"None\",user=\"None\"} 1.5"), "{text}");
        assert!(
            text.contains("litellm_output_tokens_metric_total{"),
            "{text}"
        );
        assert!(text.contains("litellm_overhead_latency_metric_count{api_base=\"http://up\",api_key_alias=\"None\",api_provider=\"openai\",hashed_api_key=\"None\",litellm_model_name=\"openai/gpt-4o\",model_group=\"gpt-4o\"} 1"), "{text}");
        // 4 output tokens in 20 ms: 5 ms each, in the 0.005 bucket.
        assert!(text.contains("litellm_deployment_latency_per_output_token_bucket{api_base=\"http://up\",api_key_alias=\"None\",api_provider=\"openai\",hashed_api_key=\"None\",le=\"0.005\",litellm_model_name=\"openai/gpt-4o\",model_id=\"dep-a\",team=\"None\",team_alias=\"None\"} 1"), "{text}");
        assert!(
            !text.contains("litellm_llm_api_time_to_first_token_metric_count"),
            "no stream, no TTFT: {text}"
        );
    }
}
