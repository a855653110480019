//! What the gateway learns from each LLM request (model, deployment, usage, cost, timing, outcome), recorded
//! once when the response is complete — for a stream, when it ends or the client goes away: one log line,
//! the admission settled (estimate replaced by the cost), and a spend row handed to the ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tollgate_accounts::Admission;
use tollgate_core::pricing::ModelPrice;
use tollgate_core::{Nanos, Usage};
use tollgate_store::SpendRow;

use crate::state::AppState;

/// One finished LLM request.
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
    /// `start` as wall-clock ms.
    pub start_ms: i64,
    pub upstream_latency: Duration,
    pub total_latency: Duration,
    /// Set when the client disconnected before a stream ended.
    pub client_disconnected: bool,
    pub error: Option<String>,
    pub price: Option<Arc<ModelPrice>>,
    /// The hold on the caller's limits; settled here.
    pub admission: Option<Admission>,
    /// The deployment's live state: the request leaves its in-flight count and adds its tokens here.
    pub deployment_state: Option<Arc<tollgate_router::DeploymentState>>,
    /// The request's `metadata` object (raw JSON), if any.
    pub metadata: Option<String>,
    /// The deployment's moving average cost, updated with this request's.
    pub typical_cost: Arc<AtomicI64>,
    /// From the request's start to the answering attempt's start (routing, admission, earlier attempts).
    pub upstream_offset: Duration,
    /// The answering deployment's metric labels.
    pub labels: Option<Arc<crate::state::DeploymentLabels>>,
    /// The request's trace, if sampled.
    pub trace: Option<Arc<crate::observe::RequestTrace>>,
    /// A streamed answer's attempt span, ended when the stream ends.
    pub attempt_span: Option<tollgate_telemetry::trace::Span>,
    /// The request and (non-streamed) response bodies, kept only for the webhook logger.
    pub request_body: Option<bytes::Bytes>,
    pub response_body: Option<bytes::Bytes>,
    /// The last failed attempt's upstream status, when the upstream answered with an error.
    pub upstream_status: Option<u16>,
}

impl RequestRecord {
    /// The cost of what the usage says (zero without usage or a price).
    pub fn cost(&self) -> Nanos {
        match (&self.price, &self.usage) {
            (Some(p), Some(u)) => p.cost(u),
            _ => Nanos::ZERO,
        }
    }
}

/// LiteLLM's `call_type` for a route (what its spend logs and reports show).
fn call_type(route: &str) -> &str {
    match route {
        "/chat/completions" => "acompletion",
        "/completions" => "atext_completion",
        "/embeddings" => "aembedding",
        "/responses" => "aresponses",
        other => other,
    }
}

/// Record a finished request (the record's strings are moved out: it is not used afterwards). This runs
/// once per request on the hot path: keep it lean.
pub fn record(state: &AppState, r: &mut RequestRecord) -> Nanos {
    let u = r.usage.unwrap_or_default();
    let cost = r.cost();
    let booking = r.admission.as_ref().map(|a| &a.booking);
    let key_alias = booking.and_then(|b| b.key_alias.as_deref());
    let api_key = booking
        .map(|b| b.api_key.as_str())
        .filter(|k| !k.is_empty());
    let team_id = booking.and_then(|b| b.team_id.as_deref());
    let user_id = booking.and_then(|b| b.user_id.as_deref());
    let end_user = booking.and_then(|b| b.end_user.as_deref());
    tracing::info!(
        target: "tollgate::request",
        request_id = %r.request_id,
        key_alias,
        api_key_hash = api_key,
        team_id,
        user_id,
        end_user,
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
        cost_usd = %cost,
        latency_ms = r.total_latency.as_secs_f64() * 1000.0,
        upstream_ms = r.upstream_latency.as_secs_f64() * 1000.0,
        client_disconnected = r.client_disconnected,
        error = r.error.as_deref(),
        "request completed"
    );
    if cost.0 > 0 {
        // An exponential moving average (1/8 weight for the newest): races between requests only blur it.
        let seen = r.typical_cost.load(Ordering::Relaxed);
        let next = if seen == 0 {
            cost.0
        } else {
            seen - seen / 8 + cost.0 / 8
        };
        r.typical_cost.store(next, Ordering::Relaxed);
    }
    let now = tollgate_store::now_ms();
    if let Some(s) = r.deployment_state.take() {
        s.finish();
        s.add_tokens(u.total_tokens, now);
    }
    let Some(mut adm) = r.admission.take() else {
        crate::observe::finished(state, r, None, cost, &[]);
        return cost;
    };
    let b = &adm.booking;
    let tags = if b.tags.is_empty() {
        "[]".to_string()
    } else {
        serde_json::to_string(&b.tags).unwrap_or_else(|_| "[]".into())
    };
    // The record is finished after this: its strings move into the row instead of being copied.
    let row = SpendRow {
        request_id: std::mem::take(&mut r.request_id),
        api_key: b.api_key.clone(),
        key_alias: b.key_alias.clone(),
        user_id: b.user_id.clone(),
        team_id: b.team_id.clone(),
        organization_id: b.organization_id.clone(),
        end_user: b.end_user.clone(),
        model_group: std::mem::take(&mut r.model_group),
        model: std::mem::take(&mut r.upstream_model),
        deployment_id: std::mem::take(&mut r.deployment_id),
        provider: r.provider.to_string(),
        call_type: call_type(r.route).to_string(),
        status: r.status as i64,
        stream: r.stream,
        prompt_tokens: u.prompt_tokens as i64,
        completion_tokens: u.completion_tokens as i64,
        total_tokens: u.total_tokens as i64,
        cached_tokens: u.cached_tokens as i64,
        reasoning_tokens: u.reasoning_tokens as i64,
        spend: cost.0,
        start_time: r.start_ms,
        end_time: r.start_ms + r.total_latency.as_millis() as i64,
        tags,
        metadata: r.metadata.take().unwrap_or_else(|| "{}".into()),
        trace: r.trace.as_ref().map(|t| t.row_ref()),
    };
    let remaining = adm.remaining;
    let booking = std::mem::take(&mut adm.booking);
    let statuses = adm.settle(cost, u.total_tokens);
    crate::observe::finished(
        state,
        r,
        Some((&row, &booking, &remaining)),
        cost,
        &statuses,
    );
    state.accounts().record(row);
    cost
}
