//! The OpenAI-compatible proxy routes: chat completions, completions, embeddings, responses (and the Azure
//! `/openai/deployments/{model}/...` and `/engines/{model}/...` forms). Auth is done by middleware; here:
//! read the body, route, call the provider, answer (JSON or SSE) and record the request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use tollgate_accounts::Principal;
use tollgate_core::GatewayError;
use tollgate_core::wire::JsonObject;
use tollgate_providers::{ChunkStream, Endpoint, StreamOutcome};

use crate::client_credentials::ClientCredentials;
use crate::dispatch::Job;
use crate::error::ApiError;
use crate::extract::read_body;
use crate::middleware::context::RequestContext;
use crate::record::{RequestRecord, record};
use crate::state::{AppState, Runtime};

pub const X_MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
pub const X_MODEL_API_BASE: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
pub const X_OVERHEAD_MS: HeaderName = HeaderName::from_static("x-litellm-overhead-duration-ms");
pub const X_RESPONSE_DURATION_MS: HeaderName =
    HeaderName::from_static("x-litellm-response-duration-ms");
pub const X_RESPONSE_COST: HeaderName = HeaderName::from_static("x-litellm-response-cost");

pub async fn chat_completions(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::ChatCompletions, None, req).await
}
pub async fn completions(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::Completions, None, req).await
}
pub async fn embeddings(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::Embeddings, None, req).await
}
pub async fn responses(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::Responses, None, req).await
}
/// Anthropic's `POST /v1/messages` (any provider: natively or through the chat bridge).
pub async fn messages(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::Messages, None, req).await
}
/// Anthropic's `POST /v1/messages/count_tokens`.
pub async fn count_tokens(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::CountTokens, None, req).await
}
/// Cohere-style `POST /v1/rerank`.
pub async fn rerank(State(s): State<AppState>, req: Request) -> Response {
    proxy(s, Endpoint::Rerank, None, req).await
}
pub async fn chat_completions_in_path(
    State(s): State<AppState>,
    Path(m): Path<String>,
    req: Request,
) -> Response {
    proxy(s, Endpoint::ChatCompletions, Some(m), req).await
}
pub async fn completions_in_path(
    State(s): State<AppState>,
    Path(m): Path<String>,
    req: Request,
) -> Response {
    proxy(s, Endpoint::Completions, Some(m), req).await
}
pub async fn embeddings_in_path(
    State(s): State<AppState>,
    Path(m): Path<String>,
    req: Request,
) -> Response {
    proxy(s, Endpoint::Embeddings, Some(m), req).await
}

/// What the request body says, checked.
struct Parsed {
    model: String,
    stream: bool,
    client_wants_usage: bool,
    /// The `user` field: the end user (LiteLLM "customer") budgets and spend are booked to.
    user: Option<String>,
    /// `max_tokens` / `max_completion_tokens` / `max_output_tokens`, for the budget estimate.
    max_tokens: Option<u64>,
    /// The `metadata` object as sent (kept for the spend log), and its `tags`.
    metadata: Option<String>,
    tags: Vec<String>,
    /// The router's per-request fields (LiteLLM's): `num_retries`, `fallbacks`, `timeout`.
    router: RequestRouting,
    /// `api_key` / `api_base` / ... in the body (refused unless allowed; see `client_credentials`).
    credentials: Option<ClientCredentials>,
}

/// Per-request router fields. They are removed from the body before it goes upstream.
#[derive(Debug, Default)]
pub(crate) struct RequestRouting {
    pub num_retries: Option<u32>,
    /// `fallbacks: ["a", "b"]` or LiteLLM's `[{"model": ["a", "b"]}]`; `disable_fallbacks: true` gives `Some([])`.
    pub fallbacks: Option<Vec<String>>,
    pub timeout: Option<Duration>,
    /// Whether any of the fields was present (the body then needs them removed).
    pub present: bool,
}

/// Body fields only the gateway reads (stripped before the upstream call).
const ROUTER_FIELDS: &[&str] = &[
    "num_retries",
    "fallbacks",
    "disable_fallbacks",
    "timeout",
    "context_window_fallbacks",
    "content_policy_fallbacks",
];

fn parse_routing(obj: &JsonObject<'_>, model: &str) -> Result<RequestRouting, GatewayError> {
    let mut r = RequestRouting::default();
    if !ROUTER_FIELDS.iter().any(|f| obj.contains(f)) {
        return Ok(r);
    }
    r.present = true;
    if let Some(raw) = obj.get("num_retries").filter(|v| v.get() != "null") {
        r.num_retries = Some(raw.get().parse::<u32>().map_err(|_| {
            GatewayError::invalid_param("num_retries", "`num_retries` must be a whole number")
        })?);
    }
    if let Some(raw) = obj.get("timeout").filter(|v| v.get() != "null") {
        let secs = raw
            .get()
            .trim_matches('"')
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                GatewayError::invalid_param(
                    "timeout",
                    "`timeout` must be a positive number of seconds",
                )
            })?;
        r.timeout = Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    if let Some(raw) = obj.get("fallbacks").filter(|v| v.get() != "null") {
        let bad = || {
            GatewayError::invalid_param(
                "fallbacks",
                "`fallbacks` must be a list of model names or of {\"model\": [\"fallback\", ...]} objects",
            )
        };
        let v: serde_json::Value = serde_json::from_str(raw.get()).map_err(|_| bad())?;
        let serde_json::Value::Array(items) = v else {
            return Err(bad());
        };
        let mut out = Vec::new();
        for item in items {
            match item {
                serde_json::Value::String(s) => out.push(s),
                serde_json::Value::Object(m) => {
                    // Only the entry for this request's model applies (LiteLLM's shape); `*` for any.
                    for (k, v) in m {
                        if k != model && k != "*" {
                            continue;
                        }
                        match v {
                            serde_json::Value::String(s) => out.push(s),
                            serde_json::Value::Array(list) => {
                                for x in list {
                                    out.push(x.as_str().ok_or_else(bad)?.to_owned());
                                }
                            }
                            _ => return Err(bad()),
                        }
                    }
                }
                _ => return Err(bad()),
            }
        }
        r.fallbacks = Some(out);
    }
    if obj
        .get("disable_fallbacks")
        .is_some_and(|v| v.get() == "true")
    {
        r.fallbacks = Some(Vec::new());
    }
    Ok(r)
}

/// The body without the router-only fields (only called when one is present).
fn strip_router_fields(body: &Bytes) -> Result<Bytes, GatewayError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    for f in ROUTER_FIELDS {
        v.remove(*f);
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Largest `metadata` kept in a spend row.
const MAX_METADATA_BYTES: usize = 8 * 1024;

fn parse_request(
    body: &[u8],
    endpoint: Endpoint,
    path_model: Option<String>,
) -> Result<Parsed, GatewayError> {
    let obj = JsonObject::parse(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let body_model = obj
        .get_str("model")
        .map_err(|_| GatewayError::invalid_param("model", "`model` must be a string"))?;
    let model = match (path_model, body_model) {
        (Some(p), _) => p,
        (None, Some(m)) if !m.is_empty() => m.into_owned(),
        (None, _) => {
            return Err(GatewayError::ModelNotFound {
                requested: None,
                available: Vec::new(),
            });
        }
    };
    let stream = obj
        .get_bool("stream")
        .map_err(|_| GatewayError::invalid_param("stream", "`stream` must be a boolean"))?
        .unwrap_or(false);
    if stream && !endpoint.supports_stream() {
        return Err(GatewayError::invalid_param(
            "stream",
            "streaming is not supported on this route",
        ));
    }
    let client_wants_usage = match obj.get("stream_options").filter(|r| r.get() != "null") {
        None => false,
        Some(raw) => {
            let opts = JsonObject::parse_str(raw.get()).map_err(|_| {
                GatewayError::invalid_param("stream_options", "`stream_options` must be an object")
            })?;
            opts.get_bool("include_usage")
                .map_err(|_| {
                    GatewayError::invalid_param(
                        "stream_options",
                        "`stream_options.include_usage` must be a boolean",
                    )
                })?
                .unwrap_or(false)
        }
    };
    let user = obj
        .get_str("user")
        .map_err(|_| GatewayError::invalid_param("user", "`user` must be a string"))?
        .filter(|u| !u.is_empty())
        .map(|u| u.into_owned());
    let max_tokens = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| obj.get(k).and_then(|r| r.get().parse::<u64>().ok()));
    let (metadata, tags) = match obj.get("metadata").filter(|r| r.get().starts_with('{')) {
        None => (None, Vec::new()),
        Some(raw) => {
            let tags = JsonObject::parse_str(raw.get())
                .ok()
                .and_then(|m| m.get("tags").map(|t| t.get().to_owned()))
                .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
                .unwrap_or_default();
            let kept = (raw.get().len() <= MAX_METADATA_BYTES).then(|| raw.get().to_owned());
            (kept, tags)
        }
    };
    let router = parse_routing(&obj, &model)?;
    let credentials = ClientCredentials::read(&obj)?;
    Ok(Parsed {
        model,
        stream,
        client_wants_usage,
        user,
        max_tokens,
        metadata,
        tags,
        router,
        credentials,
    })
}

async fn proxy(
    state: AppState,
    endpoint: Endpoint,
    path_model: Option<String>,
    req: Request,
) -> Response {
    let ctx = req
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| RequestContext {
            id: tollgate_core::ids::new_request_id(),
            start: Instant::now(),
            start_ms: tollgate_store::now_ms(),
            trace: None,
        });
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Open);
    let (parts, body) = req.into_parts();
    let rt = state.runtime();
    let bytes = match read_body(&parts.headers, body, rt.body_limit).await {
        Ok(b) => b,
        Err(e) => return ApiError(e).into_response(),
    };
    // Nesting depth and message count, in one pass over the bytes before anything parses them.
    let sec = &rt.config.security;
    if let Err(e) = crate::extract::limits::check(
        &bytes,
        sec.max_json_depth,
        crate::extract::limits::counted_field(endpoint),
        sec.max_messages,
    ) {
        return ApiError(e.into()).into_response();
    }
    let mut parsed = match parse_request(&bytes, endpoint, path_model) {
        Ok(p) => p,
        Err(GatewayError::ModelNotFound {
            requested: None, ..
        }) => {
            return ApiError(GatewayError::ModelNotFound {
                requested: None,
                available: visible_models(&state, &rt, &principal),
            })
            .into_response();
        }
        Err(e) => return ApiError(e).into_response(),
    };
    let accounts = state.accounts();
    // The key's (or its team's) alias for the model, then the router's names.
    let target = accounts
        .alias_for(&principal, &parsed.model)
        .unwrap_or_else(|| parsed.model.clone());
    let Some(candidates) = rt.router.candidates(&target) else {
        return ApiError(GatewayError::ModelNotFound {
            requested: Some(parsed.model),
            available: visible_models(&state, &rt, &principal),
        })
        .into_response();
    };
    // Virtual keys and non-admin JWTs have model lists (the master key and an open gateway may use
    // everything).
    let access_groups = access_groups_of(&rt, candidates.idx);
    let allowed = !principal.has_model_limits()
        || accounts.may_use_model(&principal, candidates.group, &access_groups)
        || accounts.may_use_model(&principal, &parsed.model, &access_groups);
    if !allowed {
        let message = match &principal {
            Principal::Jwt(j) if !j.team_ids.is_empty() => format!(
                "Authentication Error, no team in this JWT may access model={}. Teams={}",
                parsed.model,
                j.team_ids.join(", ")
            ),
            Principal::Jwt(j) => format!(
                "Authentication Error, user={} not allowed to access model={}",
                j.user_id.as_deref().unwrap_or("-"),
                parsed.model
            ),
            _ => format!(
                "Authentication Error, key not allowed to access model. This key can only access models=[{}]. Tried to access {}",
                principal
                    .key()
                    .map(|k| k.models.join(", "))
                    .unwrap_or_default(),
                parsed.model
            ),
        };
        return ApiError(GatewayError::Unauthorized(message)).into_response();
    }
    // Client-side credentials: refused (for every caller, the master key too) unless allowed.
    if let Some(c) = &parsed.credentials
        && let Err(e) = c.authorize(&rt, candidates.idx)
    {
        return ApiError(e).into_response();
    }
    // A JWT naming several teams is booked to the first that may use this model; its end user claim
    // names the end user.
    let principal = match principal {
        Principal::Jwt(j) => {
            let team = accounts
                .jwt_team_for(&j, candidates.group, &access_groups)
                .or_else(|| accounts.jwt_team_for(&j, &parsed.model, &access_groups));
            if let Some(e) = &j.end_user_id {
                parsed.user = Some(e.clone());
            }
            match team {
                Some(t) if j.team_ids.len() > 1 || j.team_ids.first() != Some(&t) => {
                    let mut narrowed = (*j).clone();
                    narrowed.team_ids = vec![t];
                    Principal::Jwt(std::sync::Arc::new(narrowed))
                }
                _ => Principal::Jwt(j),
            }
        }
        p => p,
    };
    let body = if parsed.router.present {
        match strip_router_fields(&bytes) {
            Ok(b) => b,
            Err(e) => return ApiError(e).into_response(),
        }
    } else {
        bytes
    };
    let body = match &parsed.credentials {
        Some(c) => match c.strip(&body) {
            Ok(b) => b,
            Err(e) => return ApiError(e).into_response(),
        },
        None => body,
    };
    if parsed.router.timeout.is_none() {
        parsed.router.timeout = header_timeout(&parts.headers);
    }
    if endpoint == Endpoint::CountTokens {
        return count_tokens_on(&state, &rt, candidates, body, parsed, ctx).await;
    }
    let prompt_tokens = rt
        .config
        .routing
        .enable_pre_call_checks
        .then(|| estimate_prompt_tokens(&body));
    let job = Job {
        endpoint,
        ctx,
        principal,
        body,
        requested_model: parsed.model,
        target,
        stream: parsed.stream,
        client_wants_usage: parsed.client_wants_usage,
        user: parsed.user,
        max_tokens: parsed.max_tokens,
        metadata: parsed.metadata,
        tags: parsed.tags,
        routing: parsed.router,
        prompt_tokens,
        credentials: parsed.credentials,
    };
    let rt = arc_swap::Guard::into_inner(rt);
    crate::dispatch::run(state, rt, job).await
}

/// Token counting is not an LLM call: one deployment of the group answers it (natively for Anthropic, an
/// estimate otherwise), with no budget admission, retries or spend record.
async fn count_tokens_on(
    state: &AppState,
    rt: &Runtime,
    c: tollgate_router::Candidates<'_>,
    body: Bytes,
    parsed: Parsed,
    ctx: RequestContext,
) -> Response {
    let Some(&first) = c.idx.first() else {
        return ApiError(GatewayError::Unavailable(format!(
            "model={} has no deployments",
            c.group
        )))
        .into_response();
    };
    // Prefer a deployment that counts natively.
    let i = c
        .idx
        .iter()
        .copied()
        .find(|&i| {
            rt.router.entries()[i]
                .target
                .provider
                .supports(Endpoint::CountTokens)
        })
        .unwrap_or(first);
    let route = rt.router.route_to(c, i);
    let d = &route.entry.deployment;
    // Client-side credentials (already allowed): an adapter for this call.
    let one_off = match parsed
        .credentials
        .as_ref()
        .map(|c| c.provider_for(state, rt, d))
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return ApiError(e).into_response(),
    };
    let provider = one_off.as_ref().unwrap_or(&route.entry.target.provider);
    let call = tollgate_providers::Call {
        endpoint: Endpoint::CountTokens,
        body,
        requested_model: parsed.model,
        upstream_model: route.upstream_model.to_string(),
        stream: false,
        client_wants_usage: false,
        request_id: ctx.id,
        traceparent: None,
        timeout: parsed
            .router
            .timeout
            .or(d.timeout)
            .unwrap_or(rt.default_timeout),
    };
    match tollgate_providers::call(provider, call).await {
        Ok(tollgate_providers::Reply::Complete { body, .. }) => {
            let mut resp = body.into_response();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Ok(tollgate_providers::Reply::Stream(_)) => ApiError(GatewayError::Internal(
            "count_tokens answered with a stream".into(),
        ))
        .into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// `x-litellm-timeout` (seconds): the request's timeout, as the `timeout` body field.
fn header_timeout(h: &HeaderMap) -> Option<Duration> {
    h.get("x-litellm-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// A cheap upper estimate of the prompt's tokens for the context-window pre-call check: the length of
/// the prompt fields (`messages`, `prompt`, `input`) over 4 (about 4 bytes a token for English text).
fn estimate_prompt_tokens(body: &[u8]) -> u64 {
    let Ok(obj) = JsonObject::parse(body) else {
        return 0;
    };
    ["messages", "prompt", "input"]
        .iter()
        .filter_map(|k| obj.get(k))
        .map(|r| r.get().len() as u64 / 4)
        .sum()
}

/// The model names this caller may use (for "model not found" messages).
fn visible_models(state: &AppState, rt: &Runtime, p: &Principal) -> Vec<String> {
    crate::handlers::models::visible(state, rt, p)
}

/// `model_info.access_groups` of a group's deployments.
pub(crate) fn access_groups_of(rt: &Runtime, idx: &[usize]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for &i in idx {
        if let Some(e) = rt.router.entries().get(i) {
            for g in &e.deployment.model_info.access_groups {
                if !out.contains(g) {
                    out.push(g.clone());
                }
            }
        }
    }
    out
}

/// `x-ratelimit-{limit,remaining}-{requests,tokens}` from the tightest limit that applied.
pub(crate) fn rate_limit_headers(h: &mut HeaderMap, r: &tollgate_accounts::Remaining) {
    let mut put = |name: &'static str, v: u64| {
        h.insert(HeaderName::from_static(name), HeaderValue::from(v));
    };
    if let Some((limit, left)) = r.requests {
        put("x-ratelimit-limit-requests", limit);
        put("x-ratelimit-remaining-requests", left);
    }
    if let Some((limit, left)) = r.tokens {
        put("x-ratelimit-limit-tokens", limit);
        put("x-ratelimit-remaining-tokens", left);
    }
}

/// Holds the record while the upstream call is pending; records it as abandoned if dropped still holding it.
pub(crate) struct PendingRecord(pub(crate) Option<(RequestRecord, AppState)>);

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if let Some((mut rec, state)) = self.0.take() {
            rec.total_latency = rec.start.elapsed();
            rec.client_disconnected = true;
            rec.status = 499;
            rec.error = Some("client disconnected before the upstream answered".into());
            record(&state, &mut rec);
        }
    }
}

pub(crate) fn ms_header(d: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1000.0))
        .unwrap_or(HeaderValue::from_static("0"))
}

/// Forwards a provider's SSE stream chunk by chunk and records the request once, when the stream ends or
/// when the client goes away (the body is dropped) — so usage is never lost to a disconnect.
pub(crate) struct RecordingStream {
    pub(crate) inner: ChunkStream,
    pub(crate) record: Option<RequestRecord>,
    pub(crate) state: AppState,
}

impl RecordingStream {
    fn finish(&mut self, outcome_done: bool) {
        if let Some(mut rec) = self.record.take() {
            let outcome: &StreamOutcome = &self.inner.outcome;
            rec.usage = outcome.usage();
            rec.total_latency = rec.start.elapsed();
            rec.client_disconnected = !outcome_done;
            if let Some(e) = outcome.error() {
                rec.error = Some(e);
                rec.status = outcome.error_status().unwrap_or(502);
            } else if !outcome_done {
                // The client went away before the end: nginx's "client closed request", as for a
                // disconnect before the head.
                rec.status = 499;
            }
            record(&self.state, &mut rec);
        }
    }
}

impl Stream for RecordingStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => {
                self.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_types() {
        let p = parse_request(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            Endpoint::ChatCompletions,
            None,
        )
        .unwrap();
        assert!(p.stream && p.client_wants_usage && p.model == "m");
        let e = parse_request(br#"{"model":1}"#, Endpoint::ChatCompletions, None)
            .err()
            .unwrap();
        assert_eq!(e.param(), Some("model"));
        let e = parse_request(
            br#"{"model":"m","stream":"yes"}"#,
            Endpoint::ChatCompletions,
            None,
        )
        .err()
        .unwrap();
        assert_eq!(e.param(), Some("stream"));
        let e = parse_request(
            br#"{"model":"m","stream":true}"#,
            Endpoint::Embeddings,
            None,
        )
        .err()
        .unwrap();
        assert_eq!(e.param(), Some("stream"));
        assert!(matches!(
            parse_request(b"{", Endpoint::ChatCompletions, None),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_request(b"{}", Endpoint::ChatCompletions, None),
            Err(GatewayError::ModelNotFound {
                requested: None,
                ..
            })
        ));
        let p = parse_request(b"{}", Endpoint::ChatCompletions, Some("dep".into())).unwrap();
        assert_eq!(p.model, "dep");
    }
}
