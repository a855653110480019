//! Observability of the server: Prometheus metrics (`metrics`), OpenTelemetry traces (`trace`), the
//! generic webhook logger (`callbacks`) and budget alerts (`alerts`), built once at start-up into an
//! [`Observer`]; their exporters run as background jobs that outlive the request drain.

pub mod alerts;
pub mod callbacks;
pub mod metrics;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio_util::sync::CancellationToken;
use tollgate_config::{Config, Env};
use tollgate_providers::HttpClient;
use tollgate_telemetry::trace::{ExporterSettings, SpanKind, Status, TraceParent, Tracer};
use tollgate_telemetry::transport::{Post, PostFuture, Transport};
use tollgate_telemetry::webhook::{BodyShape, Webhook, WebhookSettings};

pub use trace::RequestTrace;

/// Everything the server exports about itself.
pub struct Observer {
    /// Prometheus metrics (`callbacks: ["prometheus"]` or `--prometheus_metrics_port`); `None`: off.
    pub metrics: Option<metrics::GatewayMetrics>,
    /// OTLP traces (`callbacks: ["otel"]`).
    pub tracer: Option<Arc<Tracer>>,
    /// The generic webhook logger, with whether it takes successes and failures.
    pub logger: Option<(Arc<Webhook>, bool, bool)>,
    /// Budget alerts (`alerting: ["webhook"]`).
    pub alerts: Option<Arc<Webhook>>,
    /// Log request/response bodies, cut to this many bytes.
    pub payload_limit: Option<usize>,
    /// `turn_off_message_logging`: messages and responses stay out of the webhook log.
    pub redact_messages: bool,
    /// `enable_end_user_cost_tracking_prometheus_only`: the `end_user` metric label is filled.
    pub end_user_label: bool,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("tracing", &self.tracer.is_some())
            .field("logger", &self.logger.is_some())
            .field("alerts", &self.alerts.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the observer could not be built (reported before the port is bound).
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    #[error("OpenTelemetry: {0}")]
    Otel(String),
}

impl Observer {
    /// Metrics only: what tests and embedders get without a config.
    pub fn metrics_only() -> Observer {
        Observer {
            metrics: Some(metrics::GatewayMetrics::new(
                tollgate_config::DEFAULT_MAX_SERIES,
            )),
            tracer: None,
            logger: None,
            alerts: None,
            payload_limit: None,
            redact_messages: false,
            end_user_label: false,
        }
    }

    /// Build from the config; OpenTelemetry reads the standard `OTEL_*` variables from `env`.
    pub fn from_config(config: &Config, env: &Env) -> Result<Observer, ObserverError> {
        let o = &config.observability;
        let tracer = if o.otel {
            let env = config.layered_env(env);
            match ExporterSettings::from_env(|k| env.get(k)) {
                Ok(Some(s)) => Some(Arc::new(Tracer::new(s))),
                Ok(None) => None,
                Err(e) => return Err(ObserverError::Otel(e.to_string())),
            }
        } else {
            None
        };
        let logger = o.webhook.as_ref().map(|w| {
            let settings = WebhookSettings {
                headers: w
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect::<Vec<_>>()
                    .into(),
                batch_size: w.batch_size,
                flush_interval: w.flush_interval,
                body: BodyShape::Array,
                ..WebhookSettings::new(w.endpoint.expose())
            };
            (
                Webhook::new("generic_api", settings),
                w.on_success,
                w.on_failure,
            )
        });
        let alerts = o.alerting.as_ref().filter(|a| a.budget_alerts()).map(|a| {
            Webhook::new(
                "alerting",
                WebhookSettings {
                    batch_size: 1,
                    flush_interval: Duration::from_secs(1),
                    body: BodyShape::Single,
                    ..WebhookSettings::new(a.webhook_url.expose())
                },
            )
        });
        Ok(Observer {
            metrics: (o.prometheus_requested || o.metrics_port.is_some())
                .then(|| metrics::GatewayMetrics::new(o.max_series)),
            tracer,
            logger,
            alerts,
            payload_limit: o.log_payloads.then_some(o.payload_max_bytes),
            redact_messages: o.turn_off_message_logging,
            end_user_label: o.end_user_label,
        })
    }

    /// Run the exporters until `stop`, then deliver what they still hold. Run it on a tracker that is
    /// stopped after the spend ledger is closed (its last write is traced too).
    pub async fn run(self: Arc<Self>, client: HttpClient, stop: CancellationToken) {
        let transport: Arc<dyn Transport> = Arc::new(HttpTransport(client));
        let tracer = self
            .tracer
            .clone()
            .map(|t| t.run(transport.clone(), stop.clone()));
        let logger = self
            .logger
            .as_ref()
            .map(|(w, _, _)| w.clone().run(transport.clone(), stop.clone()));
        let alerts = self
            .alerts
            .clone()
            .map(|w| w.run(transport.clone(), stop.clone()));
        tokio::join!(
            async {
                if let Some(f) = tracer {
                    f.await;
                }
            },
            async {
                if let Some(f) = logger {
                    f.await;
                }
            },
            async {
                if let Some(f) = alerts {
                    f.await;
                }
            },
        );
    }

    /// The active callbacks, by LiteLLM's names (what `/health/readiness` lists).
    pub fn callback_names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.metrics.is_some() {
            out.push("prometheus");
        }
        if self.tracer.is_some() {
            out.push("otel");
        }
        if self.logger.is_some() {
            out.push("generic_api");
        }
        if self.alerts.is_some() {
            out.push("webhook_alerting");
        }
        out
    }

    /// A trace for a request, if tracing is on and the sampler keeps it.
    /// Probes and scrapes are not traced (a liveness probe every few seconds would drown the traces).
    pub fn start_trace(&self, path: &str, headers: &http::HeaderMap) -> Option<Arc<RequestTrace>> {
        let tracer = self.tracer.as_ref()?;
        if path.starts_with("/health") || path.starts_with("/metrics") || path == "/" {
            return None;
        }
        let incoming = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        // Decided before anything is allocated for the trace.
        let trace_id = incoming
            .as_ref()
            .map_or_else(tollgate_telemetry::trace::TraceId::random, |p| p.trace_id);
        if !tracer.sample(incoming.as_ref(), &trace_id) {
            return None;
        }
        Some(Arc::new(RequestTrace::start(
            trace_id,
            incoming.map(|p| p.parent_id),
            trace::now_nanos(),
        )))
    }

    /// Export a finished request's spans.
    pub fn export(&self, spans: Vec<tollgate_telemetry::trace::Span>) {
        if let Some(t) = &self.tracer {
            for s in spans {
                t.record(s);
            }
        }
    }

    /// The spans of a committed spend batch: one per traced row, a child of its request's root span.
    pub fn spend_written(&self, rows: &[tollgate_store::SpendRow], began: std::time::SystemTime) {
        let Some(t) = &self.tracer else { return };
        let (start, end) = (trace::unix_nanos(began), trace::now_nanos());
        for r in rows {
            let Some(tr) = &r.trace else { continue };
            let (trace_id, parent) = trace::from_row_ref(tr);
            t.record(tollgate_telemetry::trace::Span {
                trace_id,
                span_id: tollgate_telemetry::trace::SpanId::random(),
                parent: Some(parent),
                name: "db_write".into(),
                kind: SpanKind::Client,
                start_unix_nanos: start,
                end_unix_nanos: end.max(start),
                attributes: vec![
                    trace::attr("db.operation", "spend_batch_write"),
                    trace::attr("db.batch_size", rows.len() as i64),
                ],
                status: Status::Ok,
            });
        }
    }

    /// Refresh the gauges computed at scrape time and render the exposition text (`None`: metrics off).
    pub fn render_metrics(&self, state: &crate::state::AppState) -> Option<String> {
        let m = self.metrics.as_ref()?;
        let rt = state.runtime();
        let now = tollgate_store::now_ms();
        m.deployment_state.clear();
        m.remaining_requests.clear();
        m.remaining_tokens.clear();
        for e in rt.router.entries() {
            let d = &e.deployment;
            let l = &e.target.labels;
            let (api_base, provider, model) =
                (l.api_base.as_str(), l.provider, l.litellm_model.as_str());
            let labels = [model, d.id.as_str(), api_base, provider];
            // 2 = complete outage (cooling down or failing its health check), else 0 = healthy.
            let down = e.state.cooling_until(now).is_some()
                || e.state.health() == tollgate_router::Health::Unhealthy;
            let value = if down { 2.0 } else { 0.0 };
            m.deployment_state.set(&labels, value);
            let (requests, tokens) = e.state.usage(now);
            let rl = [
                d.model_name.as_str(),
                provider,
                api_base,
                model,
                metrics::NONE,
                metrics::NONE,
            ];
            if let Some(rpm) = e.target.limits.rpm {
                m.remaining_requests
                    .set(&rl, rpm.saturating_sub(requests) as f64);
            }
            if let Some(tpm) = e.target.limits.tpm {
                m.remaining_tokens
                    .set(&rl, tpm.saturating_sub(tokens) as f64);
            }
        }
        m.spend_rows_buffered
            .set(&[], state.accounts().ledger.buffered() as f64);
        if let Some(t) = &self.tracer {
            m.telemetry_dropped.set(&["otel"], t.dropped() as f64);
        }
        if let Some((w, _, _)) = &self.logger {
            m.telemetry_dropped
                .set(&["generic_api"], (w.dropped() + w.failed()) as f64);
        }
        if let Some(w) = &self.alerts {
            m.telemetry_dropped
                .set(&["alerting"], (w.dropped() + w.failed()) as f64);
        }
        Some(m.registry.render())
    }
}

/// [`Transport`] over the shared upstream client (rustls, pooled).
struct HttpTransport(HttpClient);

impl Transport for HttpTransport {
    fn post(&self, post: Post) -> PostFuture {
        let client = self.0.clone();
        Box::pin(async move {
            let mut req = http::Request::post(&*post.url)
                .header(http::header::CONTENT_TYPE, post.content_type)
                .header(
                    http::header::USER_AGENT,
                    concat!("tollgate/", env!("CARGO_PKG_VERSION")),
                );
            for (k, v) in post.headers.iter() {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req
                .body(Full::new(post.body))
                .map_err(|_| "invalid request (URL or header)".to_string())?;
            let exchange = async {
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                // Read (and drop) the answer so the connection goes back to the pool.
                let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_else(|_| Bytes::new());
                Ok(status)
            };
            match tokio::time::timeout(post.timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {:?}", post.timeout)),
            }
        })
    }
}

/// The root span's name (LiteLLM's proxy span).
pub const ROOT_SPAN: &str = "Received Proxy Server Request";
/// Each upstream attempt's span (LiteLLM's LLM call span).
pub const ATTEMPT_SPAN: &str = "litellm_request";

/// Routes whose requests go to an LLM (what the proxy request counters count).
pub fn is_llm_route(path: &str) -> bool {
    let p = path
        .strip_prefix("/v1")
        .or_else(|| path.strip_prefix("/anthropic/v1"))
        .or_else(|| path.strip_prefix("/v2"))
        .unwrap_or(path);
    matches!(
        p,
        "/chat/completions"
            | "/completions"
            | "/embeddings"
            | "/responses"
            | "/rerank"
            | "/messages"
    ) || p.starts_with("/engines/")
        || p.starts_with("/openai/deployments/")
        || p == "/messages/count_tokens"
}

/// The auth span of a traced request.
pub fn trace_auth<T>(
    t: &RequestTrace,
    start: u64,
    result: &Result<T, tollgate_core::GatewayError>,
) {
    let status = match result {
        Ok(_) => Status::Ok,
        Err(e) => Status::Error(e.error_type().to_string()),
    };
    t.child(
        "auth",
        SpanKind::Internal,
        start,
        trace::now_nanos(),
        Vec::new(),
        status,
    );
}

/// A request the handlers did not record (not an LLM call, or refused before any upstream was tried):
/// counted when it was for an LLM route, and its root span finished.
pub fn unrecorded(
    state: &crate::state::AppState,
    path: &str,
    method: &http::Method,
    status: u16,
    caller: Option<&tollgate_accounts::Principal>,
    trace: Option<&RequestTrace>,
) {
    let o = state.observer();
    if let Some(m) = &o.metrics
        && is_llm_route(path)
    {
        let team;
        let c = match caller {
            Some(p) => {
                team = p
                    .key()
                    .and_then(|k| k.team_id.as_deref())
                    .and_then(|t| state.accounts().teams.get(t));
                caller_of_principal(p, team.as_deref().map(|e| &e.doc))
            }
            None => metrics::Caller::NOBODY,
        };
        // The route as recorded requests name it (`/chat/completions` for `/v1/chat/completions` too).
        let route = match path.strip_prefix("/v1") {
            Some(p) if !p.starts_with("/messages") && is_llm_route(p) => p,
            _ => path,
        };
        m.refused(&c, metrics::NONE, route, status);
    }
    if let Some(t) = trace
        && let Some(spans) = t.finish(
            format!("{method} {path}").into(),
            trace::now_nanos(),
            vec![
                trace::attr("http.request.method", method.as_str()),
                trace::attr("url.path", path),
                trace::attr("http.response.status_code", i64::from(status)),
            ],
            if status >= 500 {
                Status::Error(status.to_string())
            } else {
                Status::Unset
            },
        )
    {
        o.export(spans);
    }
}

/// Metric labels of a caller known only by its principal (a request refused before admission).
fn caller_of_principal<'a>(
    p: &'a tollgate_accounts::Principal,
    team: Option<&'a tollgate_accounts::model::TeamDoc>,
) -> metrics::Caller<'a> {
    let mut c = metrics::Caller::NOBODY;
    if let Some(k) = p.key() {
        c.hashed_api_key = &k.token;
        c.api_key_alias = k.key_alias.as_deref().unwrap_or(metrics::NONE);
        c.team = k.team_id.as_deref().unwrap_or(metrics::NONE);
        c.user = k.user_id.as_deref().unwrap_or(metrics::NONE);
    } else if let Some(u) = p.user_id() {
        c.user = u;
    }
    if let Some(t) = team {
        c.team_alias = t.team_alias.as_deref().unwrap_or(metrics::NONE);
    }
    c
}

/// Metric labels of an admitted request's caller (as LiteLLM: `end_user` stays `None` unless
/// `enable_end_user_cost_tracking_prometheus_only`).
pub fn caller_of<'a>(
    b: &'a tollgate_accounts::Booking,
    end_user_label: bool,
) -> metrics::Caller<'a> {
    let or_none = |s: &'a Option<String>| s.as_deref().unwrap_or(metrics::NONE);
    metrics::Caller {
        end_user: if end_user_label {
            or_none(&b.end_user)
        } else {
            metrics::NONE
        },
        hashed_api_key: if b.api_key.is_empty() {
            metrics::NONE
        } else {
            &b.api_key
        },
        api_key_alias: or_none(&b.key_alias),
        team: or_none(&b.team_id),
        team_alias: or_none(&b.team_alias),
        user: or_none(&b.user_id),
    }
}

/// A recorded LLM request: metrics, budget gauges and alerts, the webhook log record, the trace.
/// `row` is the spend row, the booking and the admission's remaining rate limits, when the caller was admitted.
pub fn finished(
    state: &crate::state::AppState,
    r: &crate::record::RequestRecord,
    row: Option<(
        &tollgate_store::SpendRow,
        &tollgate_accounts::Booking,
        &tollgate_accounts::Remaining,
    )>,
    cost: tollgate_core::Nanos,
    statuses: &[tollgate_accounts::BudgetStatus],
) {
    let o = state.observer();
    if o.metrics.is_none() && o.logger.is_none() && o.alerts.is_none() && r.trace.is_none() {
        return;
    }
    let booking = row.map(|(_, b, _)| b);
    let caller = booking.map_or(metrics::Caller::NOBODY, |b| caller_of(b, o.end_user_label));
    let u = r.usage.unwrap_or_default();
    let (model_group, deployment_id) = match row {
        Some((s, _, _)) => (s.model_group.as_str(), s.deployment_id.as_str()),
        None => (r.model_group.as_str(), r.deployment_id.as_str()),
    };
    let deployment = r.labels.as_deref().map(|l| metrics::Deployment {
        model: &l.litellm_model,
        id: deployment_id,
        api_base: &l.api_base,
        provider: l.provider,
    });
    let llm_latency = deployment.map(|_| {
        if r.stream {
            r.total_latency.saturating_sub(r.upstream_offset)
        } else {
            r.upstream_latency
        }
    });
    let m = o.metrics.as_ref();
    if let Some(m) = m {
        m.request(&metrics::Finished {
            caller,
            requested_model: &r.requested_model,
            model_group,
            deployment,
            route: r.route,
            status: r.status,
            upstream_status: r.upstream_status,
            spend_nanos: u64::try_from(cost.0).unwrap_or(0),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            total_latency: r.total_latency,
            llm_latency,
            time_to_first_token: (r.stream && deployment.is_some()).then_some(r.upstream_latency),
        });
    }
    if let Some(m) = m
        && let Some((_, _, rem)) = row
        && caller.hashed_api_key != metrics::NONE
        && (rem.requests.is_some() || rem.tokens.is_some())
    {
        m.key_remaining(
            caller.hashed_api_key,
            caller.api_key_alias,
            model_group,
            rem.requests.map(|(left, _)| left),
            rem.tokens.map(|(left, _)| left),
        );
    }
    for s in statuses {
        if let Some(m) = m
            && let Some(max) = s.max_budget
        {
            m.budget(
                s.kind,
                &s.id,
                s.alias.as_deref().unwrap_or(metrics::NONE),
                max.0,
                s.spend.0,
            );
        }
        if let Some(w) = &o.alerts {
            for e in alerts::events(s) {
                tracing::warn!(target: "tollgate::alert", event = e.event, group = e.event_group, "{}", e.event_message);
                if let Ok(raw) = serde_json::value::to_raw_value(&e) {
                    w.push(raw);
                }
            }
        }
    }
    let success = r.status < 400;
    if let Some((w, on_success, on_failure)) = &o.logger
        && (if success { *on_success } else { *on_failure })
    {
        let messages = r
            .request_body
            .as_deref()
            .and_then(|b| callbacks::body_field(callbacks::messages_of(b), o.redact_messages));
        let response = r
            .response_body
            .as_deref()
            .and_then(|b| callbacks::body_field(b, o.redact_messages));
        let start = r.start_ms as f64 / 1000.0;
        let end = start + r.total_latency.as_secs_f64();
        // The booking still holds the tags the row carries as JSON text: no parsing back.
        let (model, tags, end_user, requester_metadata) = match row {
            Some((s, b, _)) => (
                s.model.as_str(),
                b.tags.as_slice(),
                s.end_user.as_deref().unwrap_or(""),
                serde_json::value::RawValue::from_string(s.metadata.clone()).ok(),
            ),
            None => (r.upstream_model.as_str(), &[][..], "", None),
        };
        let class = metrics::class_name(r.upstream_status.unwrap_or(r.status));
        let payload = callbacks::LoggingPayload {
            id: row.map_or(r.request_id.as_str(), |(s, _, _)| s.request_id.as_str()),
            trace_id: r.trace.as_ref().map(|t| t.trace_id.to_hex()),
            call_type: row.map_or("", |(s, _, _)| s.call_type.as_str()),
            stream: r.stream,
            status: if success { "success" } else { "failure" },
            response_cost: cost.0 as f64 / 1e9,
            custom_llm_provider: r.provider,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            start_time: start,
            end_time: end,
            completion_start_time: if r.stream {
                start + (r.upstream_offset + r.upstream_latency).as_secs_f64()
            } else {
                end
            },
            response_time: r.total_latency.as_secs_f64(),
            model,
            model_id: deployment_id,
            model_group,
            requested_model: &r.requested_model,
            api_base: r.labels.as_deref().map_or("", |l| l.api_base.as_str()),
            metadata: callbacks::Metadata {
                user_api_key_hash: booking
                    .map(|b| b.api_key.as_str())
                    .filter(|k| !k.is_empty()),
                user_api_key_alias: booking.and_then(|b| b.key_alias.as_deref()),
                user_api_key_team_id: booking.and_then(|b| b.team_id.as_deref()),
                user_api_key_team_alias: booking.and_then(|b| b.team_alias.as_deref()),
                user_api_key_org_id: booking.and_then(|b| b.organization_id.as_deref()),
                user_api_key_user_id: booking.and_then(|b| b.user_id.as_deref()),
                user_api_key_user_email: None,
                user_api_key_end_user_id: booking.and_then(|b| b.end_user.as_deref()),
                requester_metadata: requester_metadata.as_deref(),
            },
            request_tags: tags,
            end_user,
            cache_hit: false,
            messages: messages.as_deref(),
            response: response.as_deref(),
            error_str: r.error.as_deref(),
            error_information: r.error.as_deref().map(|m| callbacks::ErrorInformation {
                error_code: r.status.to_string(),
                error_class: class,
                llm_provider: r.provider,
                error_message: m,
            }),
        };
        if let Some(raw) = callbacks::to_raw(&payload) {
            w.push(raw);
        }
    }
    if let Some(t) = &r.trace {
        if let Some(mut span) = r.attempt_span.clone() {
            span.end_unix_nanos = trace::now_nanos().max(span.start_unix_nanos);
            t.push(span);
        }
        let mut attributes = vec![
            trace::attr("gen_ai.request.model", r.requested_model.as_str()),
            trace::attr("gen_ai.usage.input_tokens", u.prompt_tokens),
            trace::attr("gen_ai.usage.output_tokens", u.completion_tokens),
            trace::attr("gen_ai.usage.total_tokens", u.total_tokens),
            trace::attr(
                "llm.request.type",
                row.map_or("", |(s, _, _)| s.call_type.as_str()),
            ),
            trace::attr("llm.is_streaming", if r.stream { "True" } else { "False" }),
            trace::attr(
                "litellm.request_id",
                row.map_or(r.request_id.as_str(), |(s, _, _)| s.request_id.as_str()),
            ),
            trace::attr("litellm.model_group", model_group),
            trace::attr("litellm.deployment_id", deployment_id),
            trace::attr("litellm.response_cost", cost.0 as f64 / 1e9),
            trace::attr("http.response.status_code", i64::from(r.status)),
            trace::attr("gen_ai.request.stream", r.stream),
        ];
        if let Some(l) = r.labels.as_deref() {
            attributes.push(trace::attr("gen_ai.system", l.provider));
        }
        if let Some(b) = booking {
            if !b.api_key.is_empty() {
                attributes.push(trace::attr(
                    "metadata.user_api_key_hash",
                    b.api_key.as_str(),
                ));
            }
            for (k, v) in [
                ("metadata.user_api_key_alias", &b.key_alias),
                ("metadata.user_api_key_team_id", &b.team_id),
                ("metadata.user_api_key_user_id", &b.user_id),
                ("metadata.user_api_key_org_id", &b.organization_id),
                ("metadata.user_api_key_end_user_id", &b.end_user),
            ] {
                if let Some(v) = v {
                    attributes.push(trace::attr(k, v.as_str()));
                }
            }
        }
        let status = match &r.error {
            Some(e) => Status::Error(e.clone()),
            None => Status::Ok,
        };
        let end = t.start_nanos + r.total_latency.as_nanos().min(u128::from(u64::MAX)) as u64;
        if let Some(spans) = t.finish(ROOT_SPAN.into(), end, attributes, status) {
            o.export(spans);
        }
    }
}

/// Log a request or response body (payload logging on), cut to `limit` bytes on a character boundary.
pub fn log_payload(what: &'static str, request_id: &str, body: &[u8], limit: usize) {
    // Only the part that is logged is decoded (a multi-byte character cut at the end is dropped below).
    let text = String::from_utf8_lossy(&body[..body.len().min(limit + 4)]);
    let cut = if body.len() > limit {
        let mut end = limit.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… [{} bytes in all]", &text[..end], body.len())
    } else {
        text.into_owned()
    };
    tracing::info!(target: "tollgate::payload", request_id, what, bytes = body.len(), body = %cut, "payload");
}
