//! Router settings: routing strategy, retries, fallbacks, cooldowns, pre-call checks and background health checks (from `router_settings`, `litellm_settings` and `general_settings`).

use std::collections::BTreeMap;
use std::time::Duration;

/// How the router picks one deployment of a model group (`router_settings.routing_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Strategy {
    /// `simple-shuffle` (the default): random, weighted by `weight`, else `rpm`, else `tpm`.
    #[default]
    SimpleShuffle,
    /// `least-busy`: the fewest requests in flight.
    LeastBusy,
    /// `latency-based-routing`: the lowest recent latency (time to first token for streams).
    LatencyBased {
        /// `routing_strategy_args.ttl`: latency samples older than this are forgotten (default 1 h).
        ttl: Duration,
        /// `routing_strategy_args.lowest_latency_buffer`: pick at random among deployments within
        /// `(1 + buffer) x` the lowest latency (default 0: the lowest only).
        lowest_latency_buffer: f64,
    },
    /// `usage-based-routing` and `usage-based-routing-v2`: the lowest tokens used this minute among the
    /// deployments still under their rpm/tpm limits.
    UsageBased,
    /// `cost-based-routing`: the lowest price per token.
    CostBased,
}

/// The error classes LiteLLM's `retry_policy` and `allowed_fails_policy` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// `BadRequestError` (400, 404, 422 ...)
    BadRequest,
    /// `AuthenticationError` (401, 403)
    Authentication,
    /// `TimeoutError` (408, gateway timeout)
    Timeout,
    /// `RateLimitError` (429)
    RateLimit,
    /// `ContentPolicyViolationError`
    ContentPolicyViolation,
    /// `InternalServerError` (5xx, unreachable, invalid response)
    InternalServer,
}

/// Per error class counts: `retry_policy` (`BadRequestErrorRetries`, ...) or `allowed_fails_policy`
/// (`BadRequestErrorAllowedFails`, ...). A class not given falls back to the global setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassPolicy {
    pub counts: BTreeMap<ErrorClass, u32>,
}

impl ClassPolicy {
    pub fn get(&self, class: ErrorClass) -> Option<u32> {
        self.counts.get(&class).copied()
    }
}

/// `fallbacks: [{"group": ["other", ...]}, ...]` as a map in file order of the groups.
pub type FallbackMap = Vec<(String, Vec<String>)>;

/// Everything the router and its background health checks are told by the config.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSettings {
    /// `router_settings.routing_strategy` (+ `routing_strategy_args`).
    pub strategy: Strategy,
    /// Retries of a failed call within its model group: `router_settings.num_retries`, else
    /// `litellm_settings.num_retries`; LiteLLM's default is 2. A deployment's `litellm_params.num_retries`
    /// and the request's `num_retries` field override it.
    pub num_retries: u32,
    /// `router_settings.retry_after` (seconds): the least wait before a retry (default 0).
    pub retry_after: Duration,
    /// `router_settings.retry_policy`: retries per error class (instead of `num_retries`).
    pub retry_policy: ClassPolicy,
    /// `router_settings.model_group_retry_policy`: a retry policy per model group.
    pub model_group_retry_policy: BTreeMap<String, ClassPolicy>,
    /// Failures in one minute a deployment may have before it cools down: `router_settings.allowed_fails`,
    /// else `litellm_settings.allowed_fails`; default 3.
    pub allowed_fails: u32,
    /// `router_settings.allowed_fails_policy`: allowed fails per error class.
    pub allowed_fails_policy: ClassPolicy,
    /// `router_settings.cooldown_time` (seconds): how long a cooled-down deployment is skipped;
    /// default 5 s. (LiteLLM has no `litellm_settings.cooldown_time`.)
    pub cooldown_time: Duration,
    /// `router_settings.disable_cooldowns`: never cool a deployment down.
    pub disable_cooldowns: bool,
    /// `fallbacks` (router_settings, else litellm_settings): model group -> groups to try next. The
    /// group `*` applies to every group without its own entry.
    pub fallbacks: FallbackMap,
    /// `context_window_fallbacks`: used when the upstream says the prompt is too long.
    pub context_window_fallbacks: FallbackMap,
    /// `content_policy_fallbacks`: used when the upstream refuses on content policy.
    pub content_policy_fallbacks: FallbackMap,
    /// `default_fallbacks` (router_settings, else litellm_settings): groups tried for any model group
    /// without its own `fallbacks` entry.
    pub default_fallbacks: Vec<String>,
    /// `max_fallbacks` (router_settings, else litellm_settings): the most fallback groups one request
    /// tries (default 5).
    pub max_fallbacks: u32,
    /// `router_settings.enable_pre_call_checks` (or `enable_pre_call_check`): skip deployments whose context window (`model_info`
    /// `max_input_tokens`, else `max_tokens`, else the price table's) is smaller than the prompt.
    pub enable_pre_call_checks: bool,
    /// `router_settings.stream_timeout` (seconds): time allowed until a stream's first chunk, when the
    /// deployment gives none.
    pub stream_timeout: Option<Duration>,
    /// `general_settings.background_health_checks`: probe every deployment every
    /// `health_check_interval`.
    pub background_health_checks: bool,
    /// `general_settings.health_check_interval` (seconds; default 300).
    pub health_check_interval: Duration,
    /// `general_settings.health_check_concurrency`: the most background health probes running at
    /// once (at least 1; default 8).
    pub health_check_concurrency: usize,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            strategy: Strategy::SimpleShuffle,
            num_retries: 2,
            retry_after: Duration::ZERO,
            retry_policy: ClassPolicy::default(),
            model_group_retry_policy: BTreeMap::new(),
            allowed_fails: 3,
            allowed_fails_policy: ClassPolicy::default(),
            cooldown_time: Duration::from_secs(5),
            disable_cooldowns: false,
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            default_fallbacks: Vec::new(),
            max_fallbacks: 5,
            enable_pre_call_checks: false,
            stream_timeout: None,
            background_health_checks: false,
            health_check_interval: Duration::from_secs(300),
            health_check_concurrency: 8,
        }
    }
}
