//! One proxied request's way through the router: pick a deployment, call it, and on failure retry (other deployments first, with backoff), cool deployments down, and fall back to other model groups; then answer with what worked or with every attempt's cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use tollgate_accounts::Principal;
use tollgate_core::GatewayError;
use tollgate_providers::{Call, ChunkStream, Endpoint, Reply};
use tollgate_router::policy::{self, Failure, Kind};
use tollgate_router::{Entry, PickOptions, Unavailable};

use crate::error::ApiError;
use crate::handlers::openai::{
    PendingRecord, RecordingStream, RequestRouting, X_MODEL_API_BASE, X_MODEL_ID, X_OVERHEAD_MS,
    X_RESPONSE_COST, X_RESPONSE_DURATION_MS, access_groups_of, ms_header, rate_limit_headers,
};
use crate::middleware::context::{Recorded, RequestContext};
use crate::observe::trace;
use crate::record::{RequestRecord, record};
use crate::state::{AppState, Runtime, Upstream};
use tollgate_telemetry::trace::{Span, SpanId, SpanKind, Status as TraceStatus};

pub const X_ATTEMPTED_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
pub const X_ATTEMPTED_FALLBACKS: HeaderName =
    HeaderName::from_static("x-litellm-attempted-fallbacks");
pub const X_MAX_RETRIES: HeaderName = HeaderName::from_static("x-litellm-max-retries");

/// A checked request, ready to route.
pub(crate) struct Job {
    pub endpoint: Endpoint,
    pub ctx: RequestContext,
    pub principal: Principal,
    /// The body for the upstream (router-only fields already removed).
    pub body: Bytes,
    /// The model name the client sent.
    pub requested_model: String,
    /// The name to route (after the key's alias).
    pub target: String,
    pub stream: bool,
    pub client_wants_usage: bool,
    pub user: Option<String>,
    pub max_tokens: Option<u64>,
    pub metadata: Option<String>,
    pub tags: Vec<String>,
    pub routing: RequestRouting,
    /// Estimated prompt tokens, when `enable_pre_call_checks` is on.
    pub prompt_tokens: Option<u64>,
    /// Client-side credentials (already allowed): each attempt gets an adapter with them, and its
    /// failures do not cool the configured deployment down (the client's upstream is not the deployment's).
    pub credentials: Option<crate::client_credentials::ClientCredentials>,
}

/// What the loop keeps across attempts.
struct Progress {
    attempts: Vec<String>,
    last: Option<GatewayError>,
    first_kind: Option<Kind>,
    retries: u32,
    fallbacks: u32,
    max_retries: u32,
}

impl Progress {
    fn fail(&mut self, cause: String, err: GatewayError, kind: Kind) {
        self.attempts.push(cause);
        self.first_kind.get_or_insert(kind);
        self.last = Some(err);
    }

    /// `x-ratelimit-*` of the admission and the `x-litellm-attempted-*` / `x-litellm-max-retries` headers.
    fn response_headers(&self, remaining: &tollgate_accounts::Remaining) -> HeaderMap {
        let mut h = HeaderMap::new();
        rate_limit_headers(&mut h, remaining);
        h.insert(X_ATTEMPTED_RETRIES, HeaderValue::from(self.retries));
        h.insert(X_ATTEMPTED_FALLBACKS, HeaderValue::from(self.fallbacks));
        h.insert(X_MAX_RETRIES, HeaderValue::from(self.max_retries));
        h
    }

    /// The answer when nothing worked: the last error, with every attempt's cause when there were several.
    fn into_error(mut self) -> GatewayError {
        let last = self.last.take().unwrap_or_else(|| {
            GatewayError::Unavailable("no deployment could be tried".to_string())
        });
        if self.attempts.len() <= 1 {
            last
        } else {
            GatewayError::AllAttemptsFailed {
                last: Box::new(last),
                attempts: self.attempts,
            }
        }
    }
}

/// The context window a deployment accepts, if known: `model_info.max_input_tokens`, else
/// `model_info.max_tokens`, else the price table's.
fn context_window(e: &Entry<Upstream>) -> Option<u64> {
    let mi = &e.deployment.model_info;
    mi.max_input_tokens.or(mi.max_tokens).or_else(|| {
        e.target
            .price
            .as_ref()
            .and_then(|p| p.max_input_tokens.or(p.max_tokens))
    })
}

fn has_capacity(e: &Entry<Upstream>, now: i64) -> bool {
    e.state.has_capacity(&e.target.limits, now)
}

/// A retry number's wait, cut short when the client goes away (the future is dropped) or shutdown starts.
async fn wait(state: &AppState, d: Duration) {
    if d.is_zero() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = state.shared().shutdown.cancelled() => {}
    }
}

/// Route, call, retry and fall back; answer.
pub(crate) async fn run(state: AppState, rt: Arc<Runtime>, mut job: Job) -> Response {
    let settings = &rt.config.routing;
    let accounts = state.accounts();
    if let Some(limit) = state.observer().payload_limit {
        // A body with client-side credentials (allowed by config) is not logged: it holds a secret.
        if job.credentials.is_some() {
            crate::observe::log_payload(
                "request",
                &job.ctx.id,
                b"[withheld: carries client-side credentials]",
                limit,
            );
        } else {
            crate::observe::log_payload("request", &job.ctx.id, &job.body, limit);
        }
    }
    // The model group asked for, then (after it failed) its fallbacks.
    let mut groups: Vec<String> = vec![std::mem::take(&mut job.target)];
    let mut progress = Progress {
        attempts: Vec::new(),
        last: None,
        first_kind: None,
        retries: 0,
        fallbacks: 0,
        max_retries: job.routing.num_retries.unwrap_or(settings.num_retries),
    };
    let mut pending = PendingRecord(None);
    let mut admission_done = false;
    let mut remaining = tollgate_accounts::Remaining::default();
    let mut gi = 0;
    while gi < groups.len() {
        let name: &str = &groups[gi];
        let is_fallback = gi > 0;
        gi += 1;
        let Some(c) = rt.router.candidates(name) else {
            progress.fail(
                format!("model={name}: no such model group"),
                GatewayError::ModelNotFound {
                    requested: Some(name.to_string()),
                    available: Vec::new(),
                },
                Kind::BadRequest,
            );
            continue;
        };
        if is_fallback {
            if job.principal.has_model_limits() {
                let ag = access_groups_of(&rt, c.idx);
                if !accounts.may_use_model(&job.principal, c.group, &ag) {
                    progress.attempts.push(format!(
                        "fallback model={name}: this key is not allowed to use it"
                    ));
                    continue;
                }
            }
            progress.fallbacks += 1;
        }
        let mut tried: Vec<usize> = Vec::new();
        let mut group_retries = 0u32;
        loop {
            let routing_start = job.ctx.trace.as_ref().map(|_| trace::now_nanos());
            let now = tollgate_store::now_ms();
            let fits = |e: &Entry<Upstream>| {
                job.prompt_tokens
                    .is_none_or(|t| context_window(e).is_none_or(|w| t <= w))
            };
            let o = PickOptions {
                strategy: settings.strategy,
                now_ms: now,
                avoid: &tried,
            };
            let route = match rt.router.pick(c, &o, |e| fits(e) && has_capacity(e, now)) {
                Ok(r) => r,
                // This request's own failures made the rest unavailable: its last error stands.
                Err(_) if !tried.is_empty() => break,
                Err(why) => {
                    let (err, kind) = unavailable(&rt, c, why, &job, now, &fits);
                    progress.fail(format!("model={name}: {err}"), err, kind);
                    break;
                }
            };
            let d = &route.entry.deployment;
            let upstream = &route.entry.target;
            if gi == 1 && tried.is_empty() {
                progress.max_retries = job
                    .routing
                    .num_retries
                    .or(d.num_retries)
                    .unwrap_or(settings.num_retries);
            }
            // The caller's budgets and limits are checked once, at the first deployment picked.
            if !admission_done {
                admission_done = true;
                let mut tags = std::mem::take(&mut job.tags);
                if let Some(k) = job.principal.key() {
                    tags.extend(k.tags.iter().cloned());
                }
                let estimate = upstream.estimate(job.body.len(), job.max_tokens);
                let admission = match accounts
                    .admit(
                        &job.principal,
                        route.group,
                        job.user.as_deref(),
                        estimate,
                        tags,
                    )
                    .await
                {
                    Ok(a) => a,
                    Err(e) => return ApiError(e).into_response(),
                };
                remaining = admission.remaining;
                pending.0 = Some((
                    new_record(
                        &mut job,
                        upstream,
                        admission,
                        state.observer().logger.is_some(),
                    ),
                    state.clone(),
                ));
            }
            // The deployment's own rpm/tpm, counted now (a concurrent request may have filled it since the
            // pick): a full deployment is passed over like a failed one, without counting as a failure.
            let ds = route.entry.state.clone();
            if !ds.try_start(&upstream.limits, now) {
                tried.push(route.index);
                if progress.last.is_none() || tried.len() >= c.idx.len() {
                    progress.last = Some(capacity_error(c.group, now));
                }
                if tried.len() >= c.idx.len() {
                    progress.fail(
                        format!("model={name}: every deployment is at its rpm/tpm limit"),
                        capacity_error(c.group, now),
                        Kind::RateLimit,
                    );
                    break;
                }
                continue;
            }
            let timeout = attempt_timeout(&job, d, &rt);
            // Traced: the routing span ends here; the attempt's span id goes upstream in `traceparent`.
            let attempt_span = match (&job.ctx.trace, routing_start) {
                (Some(t), Some(rs)) => {
                    let now_n = trace::now_nanos();
                    t.child(
                        "router",
                        SpanKind::Internal,
                        rs,
                        now_n,
                        vec![
                            trace::attr("litellm.model_group", route.group),
                            trace::attr("litellm.deployment_id", d.id.as_str()),
                        ],
                        TraceStatus::Ok,
                    );
                    let id = SpanId::random();
                    Some((t.clone(), id, now_n))
                }
                _ => None,
            };
            let call = Call {
                endpoint: job.endpoint,
                body: job.body.clone(),
                requested_model: job.requested_model.clone(),
                upstream_model: route.upstream_model.to_string(),
                stream: job.stream,
                client_wants_usage: job.client_wants_usage,
                request_id: job.ctx.id.clone(),
                traceparent: attempt_span
                    .as_ref()
                    .and_then(|(t, id, _)| t.traceparent(*id)),
                timeout,
            };
            if let Some((rec, _)) = pending.0.as_mut() {
                rec.model_group.clear();
                rec.model_group.push_str(route.group);
                rec.deployment_id.clone_from(&d.id);
                rec.provider = upstream.provider.name();
                rec.upstream_model.clone_from(&call.upstream_model);
                rec.price = upstream.price.clone();
                rec.typical_cost = upstream.typical_cost.clone();
                rec.deployment_state = Some(ds.clone());
                rec.labels = Some(upstream.labels.clone());
                rec.error = None;
            }
            let upstream_start = Instant::now();
            let one_off = job
                .credentials
                .as_ref()
                .map(|c| c.provider_for(&state, &rt, d));
            let provider = match &one_off {
                None => Ok(&upstream.provider),
                Some(Ok(p)) => Ok(p),
                Some(Err(e)) => Err(e.clone()),
            };
            let result = match provider {
                Err(e) => Err(e),
                Ok(provider) => match tollgate_providers::call(provider, call).await {
                    Ok(Reply::Stream(s)) => {
                        // The time to the first chunk counts from the request, head included.
                        let left = timeout.saturating_sub(upstream_start.elapsed());
                        first_chunk(s, left, timeout, &d.id).await
                    }
                    other => other.map(|r| (r, None)),
                },
            };
            let upstream_latency = upstream_start.elapsed();
            // The upstream's own status when it answered with an error (LiteLLM's exception_status).
            let status = match &result {
                Ok(_) => 200,
                Err(GatewayError::UpstreamStatus(f)) => f.status,
                Err(e) => e.status().as_u16(),
            };
            let attempt_meta = attempt_span.map(|(t, id, start)| {
                let span =
                    attempt_span_of(&t, id, start, d, upstream, &route.upstream_model, &result);
                (t, span)
            });
            match result {
                Ok((reply, first)) => {
                    count_attempt(
                        &state,
                        &pending,
                        d,
                        upstream,
                        &job.requested_model,
                        200,
                        false,
                    );
                    if one_off.is_none() {
                        ds.record_success(
                            upstream_latency.as_secs_f64() * 1000.0,
                            0,
                            tollgate_store::now_ms(),
                        );
                    }
                    let mut headers = progress.response_headers(&remaining);
                    if let Some(v) = &upstream.model_id {
                        headers.insert(X_MODEL_ID, v.clone());
                    }
                    let api_base = match &one_off {
                        Some(Ok(p)) => HeaderValue::from_str(p.api_base()).ok(),
                        _ => upstream.api_base.clone(),
                    };
                    if let Some(v) = api_base {
                        headers.insert(X_MODEL_API_BASE, v);
                    }
                    let Some((mut rec, _)) = pending.0.take() else {
                        return ApiError(GatewayError::Internal("request record missing".into()))
                            .into_response();
                    };
                    rec.upstream_latency = upstream_latency;
                    rec.upstream_offset = upstream_start.saturating_duration_since(job.ctx.start);
                    // A stream's attempt span ends with the stream (in `record`).
                    if let Some((t, span)) = attempt_meta {
                        if job.stream {
                            rec.attempt_span = Some(span);
                        } else {
                            t.push(span);
                        }
                    }
                    return respond(&state, rec, reply, first, headers, &job.ctx);
                }
                Err(err) => {
                    if let Some((rec, _)) = pending.0.as_mut() {
                        rec.deployment_state = None;
                        rec.status = err.status().as_u16();
                        rec.error = Some(err.to_string());
                        rec.upstream_status = (status != rec.status).then_some(status);
                    }
                    if let Some((t, span)) = attempt_meta {
                        t.push(span);
                    }
                    let (f, cooled) = note_failure(
                        &state,
                        settings,
                        c,
                        &route,
                        &err,
                        timeout,
                        one_off.is_some(),
                    );
                    count_attempt(
                        &state,
                        &pending,
                        d,
                        upstream,
                        &job.requested_model,
                        status,
                        cooled,
                    );
                    progress.fail(
                        format!("model={name} deployment={}: {err}", d.id),
                        err,
                        f.kind,
                    );
                    tried.push(route.index);
                    let others_left = c.idx.iter().any(|i| !tried.contains(i));
                    let allowed = policy::retries_for(
                        settings,
                        c.group,
                        f.class,
                        progress.max_retries,
                        others_left,
                    );
                    if group_retries >= allowed {
                        break;
                    }
                    let same = c.idx.iter().all(|i| tried.contains(i));
                    if same
                        && f.retry_after
                            .is_some_and(|r| r > policy::MAX_RETRY_AFTER_WAIT)
                    {
                        break;
                    }
                    group_retries += 1;
                    progress.retries += 1;
                    wait(&state, policy::backoff(settings, group_retries, &f, same)).await;
                    if state.shared().shutdown.is_cancelled() {
                        break;
                    }
                }
            }
        }
        // The first group is used up: its fallbacks come next.
        let more = if gi == 1 {
            let kind = progress.first_kind.unwrap_or(Kind::Server);
            policy::fallbacks_for(settings, c.group, kind, job.routing.fallbacks.as_deref())
        } else {
            Vec::new()
        };
        groups.extend(more);
    }
    let headers = progress.response_headers(&remaining);
    let err = progress.into_error();
    let recorded = match pending.0.take() {
        Some((mut rec, _)) => {
            rec.status = err.status().as_u16();
            rec.error = Some(err.to_string());
            rec.total_latency = job.ctx.start.elapsed();
            record(&state, &mut rec);
            true
        }
        // Nothing was sent upstream: the request log middleware logs it.
        None => false,
    };
    let mut resp = ApiError(err).into_response();
    resp.headers_mut().extend(headers);
    if recorded {
        resp.extensions_mut().insert(Recorded);
    }
    resp
}

/// The spend record of a request, made at its admission; the deployment fields are set per attempt.
fn new_record(
    job: &mut Job,
    upstream: &Upstream,
    admission: tollgate_accounts::Admission,
    logs_bodies: bool,
) -> RequestRecord {
    RequestRecord {
        request_id: job.ctx.id.clone(),
        route: job.endpoint.path(),
        model_group: String::new(),
        requested_model: job.requested_model.clone(),
        deployment_id: String::new(),
        provider: upstream.provider.name(),
        upstream_model: String::new(),
        stream: job.stream,
        status: 200,
        usage: None,
        start: job.ctx.start,
        start_ms: job.ctx.start_ms,
        upstream_latency: Duration::ZERO,
        total_latency: Duration::ZERO,
        client_disconnected: false,
        error: None,
        price: None,
        typical_cost: upstream.typical_cost.clone(),
        admission: Some(admission),
        deployment_state: None,
        metadata: job.metadata.take(),
        upstream_offset: Duration::ZERO,
        labels: None,
        trace: job.ctx.trace.clone(),
        attempt_span: None,
        request_body: logs_bodies.then(|| job.body.clone()),
        response_body: None,
        upstream_status: None,
    }
}

/// One attempt's time limit: the request's `timeout`, else (streams) the deployment's or the router's
/// `stream_timeout`, else the deployment's `timeout`, else the default.
fn attempt_timeout(job: &Job, d: &tollgate_config::Deployment, rt: &Runtime) -> Duration {
    job.routing
        .timeout
        .or(if job.stream {
            d.stream_timeout
                .or(rt.config.routing.stream_timeout)
                .or(d.timeout)
        } else {
            d.timeout
        })
        .unwrap_or(rt.default_timeout)
}

/// A failed attempt's effect on its deployment: out of flight, a timeout teaches the latency average, and
/// the failure may start a cooldown (logged, and told to the other instances). An attempt that went to
/// the client's own upstream (`client_upstream`: client-side credentials) only leaves flight.
#[allow(clippy::too_many_arguments)]
fn note_failure(
    state: &AppState,
    settings: &tollgate_config::RoutingSettings,
    c: tollgate_router::Candidates<'_>,
    route: &tollgate_router::Route<'_, Upstream>,
    err: &GatewayError,
    timeout: Duration,
    client_upstream: bool,
) -> (Failure, bool) {
    let ds = &route.entry.state;
    let id = &route.entry.deployment.id;
    ds.finish();
    let now = tollgate_store::now_ms();
    let f = policy::classify(err);
    if client_upstream {
        return (f, false);
    }
    if f.kind == Kind::Timeout {
        ds.record_slow(timeout.as_secs_f64() * 1000.0, now);
    }
    let cooldown = policy::after_failure(settings, ds, &f, c.idx.len(), now);
    if let Some(until) = cooldown {
        tracing::warn!(
            deployment = %id,
            model_group = %c.group,
            cooldown_s = (until - now) as f64 / 1000.0,
            error = %err,
            "deployment cooling down"
        );
        if let Some(sync) = &state.shared().router_sync {
            sync.publish_cooldown(id, until);
        }
    }
    tracing::debug!(deployment = %id, error = %err, "attempt failed");
    (f, cooldown.is_some())
}

/// One attempt in the deployment metrics (`status`: 200, or the upstream's own error status).
fn count_attempt(
    state: &AppState,
    pending: &PendingRecord,
    d: &tollgate_config::Deployment,
    upstream: &Upstream,
    requested_model: &str,
    status: u16,
    cooled: bool,
) {
    let Some(m) = &state.observer().metrics else {
        return;
    };
    let caller = pending
        .0
        .as_ref()
        .and_then(|(rec, _)| rec.admission.as_ref())
        .map_or(crate::observe::metrics::Caller::NOBODY, |a| {
            crate::observe::caller_of(&a.booking, state.observer().end_user_label)
        });
    let labels = &upstream.labels;
    m.attempt(
        &crate::observe::metrics::Deployment {
            model: &labels.litellm_model,
            id: &d.id,
            api_base: &labels.api_base,
            provider: labels.provider,
        },
        requested_model,
        &caller,
        status,
        cooled,
    );
}

/// The span of one upstream attempt (ended now; a stream's is ended again when the stream ends).
fn attempt_span_of(
    t: &crate::observe::RequestTrace,
    id: SpanId,
    start: u64,
    d: &tollgate_config::Deployment,
    upstream: &Upstream,
    upstream_model: &str,
    result: &Result<(Reply, Option<Bytes>), GatewayError>,
) -> Span {
    let mut attributes = vec![
        trace::attr("gen_ai.system", upstream.labels.provider),
        trace::attr("gen_ai.request.model", upstream_model),
        trace::attr("litellm.deployment_id", d.id.as_str()),
        trace::attr("server.address", upstream.labels.api_base.as_str()),
    ];
    let status = match result {
        Ok(_) => TraceStatus::Ok,
        Err(e) => {
            attributes.push(trace::attr(
                "http.response.status_code",
                i64::from(e.status().as_u16()),
            ));
            TraceStatus::Error(e.to_string())
        }
    };
    Span {
        trace_id: t.trace_id,
        span_id: id,
        parent: Some(t.root),
        name: crate::observe::ATTEMPT_SPAN.into(),
        kind: SpanKind::Client,
        start_unix_nanos: start,
        end_unix_nanos: trace::now_nanos().max(start),
        attributes,
        status,
    }
}

fn capacity_error(group: &str, now: i64) -> GatewayError {
    GatewayError::RateLimited {
        message: format!(
            "No deployment of model={group} has capacity left: every deployment is at its rpm/tpm limit"
        ),
        retry_after: Some(Duration::from_millis(
            (60_000 - now.rem_euclid(60_000)).max(1) as u64,
        )),
    }
}

/// Why no deployment of a group could be picked, as the error clients see.
fn unavailable(
    rt: &Runtime,
    c: tollgate_router::Candidates<'_>,
    why: Unavailable,
    job: &Job,
    now: i64,
    fits: &impl Fn(&Entry<Upstream>) -> bool,
) -> (GatewayError, Kind) {
    let entries = rt.router.entries();
    if !c.idx.iter().any(|&i| fits(&entries[i])) {
        let largest = c
            .idx
            .iter()
            .filter_map(|&i| context_window(&entries[i]))
            .max()
            .unwrap_or(0);
        return (
            GatewayError::InvalidRequest {
                message: format!(
                    "The prompt (about {} tokens) is larger than the context window of every deployment of model={} (largest: {largest} tokens): context_length_exceeded",
                    job.prompt_tokens.unwrap_or(0),
                    c.group
                ),
                param: Some("messages".into()),
                code: Some("context_length_exceeded".into()),
            },
            Kind::ContextWindow,
        );
    }
    match why {
        Unavailable::CoolingDown { retry_after } => (
            GatewayError::RateLimited {
                message: format!(
                    "No deployments available for selected model, Try again in {} seconds. Passed model={}. Every deployment is cooling down after failures.",
                    retry_after.as_secs_f64().ceil() as u64,
                    c.group
                ),
                retry_after: Some(retry_after),
            },
            Kind::RateLimit,
        ),
        Unavailable::Refused => (capacity_error(c.group, now), Kind::RateLimit),
    }
}

/// Wait for a stream's first chunk (at most `limit`): a stream that fails before it is a failed attempt
/// (retried like any other); after it, the stream belongs to the client.
async fn first_chunk(
    mut s: ChunkStream,
    limit: Duration,
    timeout: Duration,
    deployment: &str,
) -> Result<(Reply, Option<Bytes>), GatewayError> {
    match tokio::time::timeout(limit, s.body.next()).await {
        Err(_) => Err(GatewayError::UpstreamTimeout {
            deployment: deployment.to_string(),
            after: timeout,
        }),
        Ok(first) => {
            if s.outcome.chunks() == 0
                && let Some(e) = s.outcome.failure()
            {
                return Err(e);
            }
            Ok((Reply::Stream(s), first))
        }
    }
}

/// The client's answer from a successful attempt (and the record: now for a complete body, at the end
/// for a stream).
fn respond(
    state: &AppState,
    mut rec: RequestRecord,
    reply: Reply,
    first: Option<Bytes>,
    mut headers: HeaderMap,
    ctx: &RequestContext,
) -> Response {
    let overhead = ctx.start.elapsed().saturating_sub(rec.upstream_latency);
    headers.insert(X_OVERHEAD_MS, ms_header(overhead));
    match reply {
        Reply::Complete { body, usage } => {
            rec.usage = usage;
            if rec.request_body.is_some() {
                rec.response_body = Some(body.clone());
            }
            if let Some(limit) = state.observer().payload_limit {
                crate::observe::log_payload("response", &ctx.id, &body, limit);
            }
            rec.status = 200;
            rec.total_latency = ctx.start.elapsed();
            headers.insert(X_RESPONSE_DURATION_MS, ms_header(rec.total_latency));
            let cost = record(state, &mut rec);
            if let Ok(v) = HeaderValue::from_str(&cost.to_string()) {
                headers.insert(X_RESPONSE_COST, v);
            }
            let mut resp = (StatusCode::OK, body).into_response();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp.headers_mut().extend(headers);
            resp.extensions_mut().insert(Recorded);
            resp
        }
        Reply::Stream(mut stream) => {
            rec.status = 200;
            if let Some(first) = first {
                let rest =
                    std::mem::replace(&mut stream.body, futures_util::stream::empty().boxed());
                stream.body = futures_util::stream::once(async move { first })
                    .chain(rest)
                    .boxed();
            }
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let body = Body::from_stream(RecordingStream {
                inner: stream,
                record: Some(rec),
                state: state.clone(),
            });
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().extend(headers);
            resp.extensions_mut().insert(Recorded);
            resp
        }
    }
}
