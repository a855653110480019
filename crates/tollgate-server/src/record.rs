//! What the gateway learns from each LLM request (model, deployment, usage, timing, outcome), recorded when
//! the response is complete — for a stream, when it ends or the client goes away.

use std::time::{Duration, Instant};

use tollgate_core::Usage;

/// One finished LLM request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: String,
    pub route: &'static str,
    pub model_group: String,
    pub requested_model: String,
    pub deployment_id: String,
    pub provider: &'static str,
    pub upstream_model: String,
    pub stream: bool,
    pub status: u16,
    pub usage: Option<Usage>,
    pub start: Instant,
    pub upstream_latency: Duration,
    pub total_latency: Duration,
    /// Set when the client disconnected before a stream ended.
    pub client_disconnected: bool,
    pub error: Option<String>,
}

/// Record a finished request. For now: one structured log line (the spend ledger builds on this).
/// This runs once per request on the hot path: keep the field list short.
pub fn record(r: &RequestRecord) {
    let u = r.usage.unwrap_or_default();
    tracing::info!(
        target: "tollgate::request",
        request_id = %r.request_id,
        route = r.route,
        model = %r.requested_model,
        model_group = %r.model_group,
        deployment = %r.deployment_id,
        provider = r.provider,
        stream = r.stream,
        status = r.status,
        prompt_tokens = u.prompt_tokens,
        completion_tokens = u.completion_tokens,
        total_tokens = u.total_tokens,
        cached_tokens = u.cached_tokens,
        reasoning_tokens = u.reasoning_tokens,
        usage_reported = r.usage.is_some(),
        latency_ms = r.total_latency.as_secs_f64() * 1000.0,
        upstream_ms = r.upstream_latency.as_secs_f64() * 1000.0,
        client_disconnected = r.client_disconnected,
        error = r.error.as_deref(),
        "request completed"
    );
}
