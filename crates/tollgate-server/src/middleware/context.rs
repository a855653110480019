//! Per-request context: the request id (propagated or a new UUIDv7), start time, CORS preflights and
//! headers (`cors`), the concurrency limit (`concurrency`), authentication (via `auth::check`), the id
//! headers on the response, and a log line for requests handlers do not record.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::HeaderName;
use tollgate_core::GatewayError;
use tollgate_core::ids::{new_request_id, sanitize_request_id};

use crate::error::ApiError;
use crate::state::AppState;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");

/// Inserted into request extensions by [`context`].
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: String,
    pub start: Instant,
    /// The start as wall-clock time (ms since the epoch), for spend logs.
    pub start_ms: i64,
    /// The request's trace, when tracing is on and sampled it.
    pub trace: Option<std::sync::Arc<crate::observe::RequestTrace>>,
}

/// Routes of the Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`, and the
/// `/anthropic/v1/...` alias), whose errors use Anthropic's body.
pub fn is_anthropic_route(path: &str) -> bool {
    let p = path.strip_prefix("/anthropic").unwrap_or(path);
    p == "/v1/messages" || p.starts_with("/v1/messages/")
}

/// Marker a handler puts in the response extensions when it records (and logs) the request itself.
#[derive(Debug, Clone, Copy)]
pub struct Recorded;

pub async fn context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(sanitize_request_id)
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let observer = state.observer();
    let trace = observer.start_trace(&path, req.headers());
    req.extensions_mut().insert(RequestContext {
        id: id.clone(),
        start,
        start_ms: tollgate_store::now_ms(),
        trace: trace.clone(),
    });
    // Health probes and the root do not count toward --max_requests_before_restart: an idle gateway
    // under a liveness probe must not restart itself.
    if !(path == "/" || path.starts_with("/health")) {
        state.count_request();
    }
    // CORS (only looked at when the request has an `Origin`): preflights are answered before auth.
    let cors = if req.headers().contains_key(http::header::ORIGIN) {
        crate::middleware::cors::inspect(&state.runtime().config.security, req.headers())
    } else {
        None
    };
    let preflight = cors
        .as_ref()
        .and_then(|c| c.preflight(&method, req.headers()));
    let is_preflight = preflight.is_some();
    // `--limit_concurrency`: a slot from here until the response body is done.
    let admitted = match (&preflight, &state.shared().limiter) {
        (None, Some(limiter)) => limiter
            .admit(&path)
            .map_err(|_| crate::middleware::concurrency::rejection(limiter.max())),
        _ => Ok(None),
    };
    let mut permit = None;
    let mut caller = None;
    // Authentication happens here, inside the request context, so rejections carry the request id and are
    // logged; one middleware instead of two keeps a boxed future and a service clone off every request.
    let mut resp = match (preflight, admitted) {
        (Some(r), _) | (None, Err(r)) => r,
        (None, Ok(p)) => {
            permit = p;
            let auth_start = trace.as_ref().map(|_| crate::observe::trace::now_nanos());
            let checked = crate::middleware::auth::check(&state, &path, req.headers()).await;
            if let (Some(t), Some(s)) = (&trace, auth_start) {
                crate::observe::trace_auth(t, s, &checked);
            }
            match checked {
                Ok(principal) => {
                    if crate::observe::is_llm_route(&path) {
                        caller = Some(principal.clone());
                    }
                    req.extensions_mut().insert(principal);
                    next.run(req).await
                }
                Err(e) => ApiError(e).into_response(),
            }
        }
    };
    // The Anthropic Messages API answers errors in Anthropic's shape (the SDK reads `error.type`).
    if is_anthropic_route(&path)
        && let Some(err) = resp.extensions().get::<GatewayError>()
    {
        *resp.body_mut() = axum::body::Body::from(err.anthropic_body_bytes());
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_CALL_ID, v.clone());
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    if let Some(c) = &cors
        && !is_preflight
    {
        c.decorate(&mut resp);
    }
    if resp.extensions().get::<Recorded>().is_none() {
        let status = resp.status().as_u16();
        crate::observe::unrecorded(
            &state,
            &path,
            &method,
            status,
            caller.as_ref(),
            trace.as_deref(),
        );
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        match resp.extensions().get::<GatewayError>() {
            Some(err) if status >= 500 => {
                tracing::warn!(target: "tollgate::request", request_id = %id, %method, path, status, latency_ms, error = %err, "request failed")
            }
            Some(err) => {
                tracing::info!(target: "tollgate::request", request_id = %id, %method, path, status, latency_ms, error = %err, "request rejected")
            }
            None => {
                tracing::debug!(target: "tollgate::request", request_id = %id, %method, path, status, latency_ms, "request")
            }
        }
    }
    match permit {
        Some(p) => crate::middleware::concurrency::hold(resp, p),
        None => resp,
    }
}
