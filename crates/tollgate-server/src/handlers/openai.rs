//! The OpenAI-compatible proxy routes: chat completions, completions, embeddings, responses (and the Azure
//! `/openai/deployments/{model}/...` and `/engines/{model}/...` forms). Auth is done by middleware; here:
//! read the body, route, call the provider, answer (JSON or SSE) and record the request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use tollgate_accounts::Principal;
use tollgate_core::wire::JsonObject;
use tollgate_core::{GatewayError, Nanos};
use tollgate_providers::{Call, ChunkStream, Endpoint, Reply, StreamOutcome};

use crate::error::ApiError;
use crate::extract::read_body;
use crate::middleware::context::{Recorded, RequestContext};
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
    Ok(Parsed {
        model,
        stream,
        client_wants_usage,
        user,
        max_tokens,
        metadata,
        tags,
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
    let (group, _, idx) = candidates;
    // Only virtual keys have model lists (the master key and an open gateway may use everything).
    let allowed = match &principal {
        Principal::Key(_) => {
            let access_groups = access_groups_of(&rt, idx);
            accounts.may_use_model(&principal, group, &access_groups)
                || accounts.may_use_model(&principal, &parsed.model, &access_groups)
        }
        _ => true,
    };
    if !allowed {
        let allowed = principal
            .key()
            .map(|k| k.models.join(", "))
            .unwrap_or_default();
        return ApiError(GatewayError::Unauthorized(format!(
            "Authentication Error, key not allowed to access model. This key can only access models=[{allowed}]. Tried to access {}",
            parsed.model
        )))
        .into_response();
    }
    // A deployment with rpm/tpm capacity left (deployments without limits always have it).
    let now = tollgate_store::now_ms();
    let Some(route) = rt.router.pick_where(candidates, |e| {
        e.target
            .limits
            .as_ref()
            .is_none_or(|(l, c)| c.has_capacity(l, now))
    }) else {
        return ApiError(GatewayError::RateLimited {
            message: format!(
                "No deployment of model={group} has capacity left: every deployment is at its rpm/tpm limit"
            ),
            retry_after: Some(Duration::from_millis((60_000 - now.rem_euclid(60_000)).max(1) as u64)),
        })
        .into_response();
    };
    let d = &route.entry.deployment;
    let upstream = &route.entry.target;
    let estimate = upstream.estimate(bytes.len(), parsed.max_tokens);
    let mut tags = std::mem::take(&mut parsed.tags);
    if let Some(k) = principal.key() {
        tags.extend(k.tags.iter().cloned());
    }
    let admission = match accounts
        .admit(
            &principal,
            route.group,
            parsed.user.as_deref(),
            estimate,
            tags,
        )
        .await
    {
        Ok(a) => a,
        Err(e) => return ApiError(e).into_response(),
    };
    let deployment_limits = match &upstream.limits {
        None => None,
        Some((limits, counters)) => {
            let ask = tollgate_accounts::counters::Ask {
                limits,
                model_budget: None,
                model: route.group,
                estimate: Nanos::ZERO,
                now_ms: now,
            };
            if let Err(refusal) = counters.try_acquire(&ask) {
                // Taken by a concurrent request since the router looked.
                let retry_after = match refusal {
                    tollgate_accounts::Refusal::Rpm { retry_after, .. }
                    | tollgate_accounts::Refusal::Tpm { retry_after, .. } => Some(retry_after),
                    _ => None,
                };
                return ApiError(GatewayError::RateLimited {
                    message: format!(
                        "Deployment {} of model={group} is at its rpm/tpm limit",
                        d.id
                    ),
                    retry_after,
                })
                .into_response();
            }
            Some(counters.clone())
        }
    };
    let provider = upstream.provider.clone();
    let timeout = if parsed.stream {
        d.stream_timeout.or(d.timeout)
    } else {
        d.timeout
    }
    .unwrap_or(rt.default_timeout);
    let mut headers = HeaderMap::new();
    rate_limit_headers(&mut headers, &admission.remaining);
    let rec = RequestRecord {
        request_id: ctx.id.clone(),
        route: endpoint.path(),
        model_group: route.group.to_string(),
        requested_model: parsed.model.clone(),
        deployment_id: d.id.clone(),
        provider: provider.name(),
        upstream_model: route.upstream_model.to_string(),
        stream: parsed.stream,
        status: 200,
        usage: None,
        start: ctx.start,
        start_ms: ctx.start_ms,
        upstream_latency: Duration::ZERO,
        total_latency: Duration::ZERO,
        client_disconnected: false,
        error: None,
        price: upstream.price.clone(),
        typical_cost: upstream.typical_cost.clone(),
        admission: Some(admission),
        deployment_limits,
        metadata: parsed.metadata.take(),
    };
    let call = Call {
        endpoint,
        body: bytes,
        requested_model: parsed.model.clone(),
        upstream_model: rec.upstream_model.clone(),
        stream: parsed.stream,
        client_wants_usage: parsed.client_wants_usage,
        request_id: ctx.id.clone(),
        timeout,
    };
    if let Some(v) = &upstream.model_id {
        headers.insert(X_MODEL_ID, v.clone());
    }
    if let Some(v) = &upstream.api_base {
        headers.insert(X_MODEL_API_BASE, v.clone());
    }
    drop(rt);

    let upstream_start = Instant::now();
    // If the client goes away while the upstream is working, this future is dropped here: the guard then
    // records the request (once), as an abandoned stream is.
    let mut pending = PendingRecord(Some((rec, state.clone())));
    let result = provider.call(call).await;
    let Some((mut rec, _)) = pending.0.take() else {
        return ApiError(GatewayError::Internal(
            "request record already taken".into(),
        ))
        .into_response();
    };
    rec.upstream_latency = upstream_start.elapsed();
    let overhead = ctx.start.elapsed().saturating_sub(rec.upstream_latency);
    headers.insert(X_OVERHEAD_MS, ms_header(overhead));
    match result {
        Err(err) => {
            rec.status = err.status().as_u16();
            rec.error = Some(err.to_string());
            rec.total_latency = ctx.start.elapsed();
            record(&state, &mut rec);
            let mut resp = ApiError(err).into_response();
            resp.headers_mut().extend(headers);
            resp.extensions_mut().insert(Recorded);
            resp
        }
        Ok(Reply::Complete { body, usage }) => {
            rec.usage = usage;
            rec.total_latency = ctx.start.elapsed();
            headers.insert(X_RESPONSE_DURATION_MS, ms_header(rec.total_latency));
            let cost = record(&state, &mut rec);
            if let Ok(v) = HeaderValue::from_str(&cost.to_string()) {
                headers.insert(X_RESPONSE_COST, v);
            }
            let mut resp = (StatusCode::OK, body).into_response();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp.headers_mut().extend(headers);
            resp.extensions_mut().insert(Recorded);
            resp
        }
        Ok(Reply::Stream(stream)) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let body = Body::from_stream(RecordingStream {
                inner: stream,
                record: Some(rec),
                state,
            });
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().extend(headers);
            resp.extensions_mut().insert(Recorded);
            resp
        }
    }
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
fn rate_limit_headers(h: &mut HeaderMap, r: &tollgate_accounts::Remaining) {
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
struct PendingRecord(Option<(RequestRecord, AppState)>);

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

fn ms_header(d: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1000.0))
        .unwrap_or(HeaderValue::from_static("0"))
}

/// Forwards a provider's SSE stream chunk by chunk and records the request once, when the stream ends or
/// when the client goes away (the body is dropped) — so usage is never lost to a disconnect.
struct RecordingStream {
    inner: ChunkStream,
    record: Option<RequestRecord>,
    state: AppState,
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
