//! OpenAI and OpenAI-compatible upstreams (`openai/`, `openai_compatible/`, `hosted_vllm/`): the client's body
//! is forwarded with only `model` rewritten (and `stream_options.include_usage` added to streams).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tollgate_config::Deployment;
use tollgate_core::url::public_url;
use tollgate_core::wire::{Edit, JsonObject, json_string, splice};
use tollgate_core::{GatewayError, UpstreamFailure, Usage};

use crate::sse::{SseDecoder, SseError, SseEvent, encode};
use crate::stream::{ChunkStream, StreamOutcome};
use crate::translate::{self, Credentials, ParamPolicy, Sent, UpstreamBody};
use crate::{BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply};
use crate::{compat, upstream};

/// An adapter for one OpenAI-compatible deployment.
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    deployment: String,
    /// The upstream URL of each endpoint, parsed once.
    uris: EndpointUris,
    /// `base` without credentials or query string, for headers and `/health`.
    public_base: String,
    headers: HeaderMap,
    client: HttpClient,
    /// The OpenAI-compatible family member's quirks (`None` for OpenAI itself and generic servers).
    family: Option<&'static compat::Family>,
    policy: ParamPolicy,
}

impl OpenAiProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let env = ctx.env;
        let invalid = |message: String| BuildError::invalid(d, message);
        let family = compat::family(&d.provider);
        let name: &'static str = match (d.provider.as_str(), family) {
            ("openai", _) => "openai",
            ("custom_openai", _) => "custom_openai",
            (_, Some(f)) => f.name,
            _ => "openai_compatible",
        };
        let from_env = |vars: &[&str]| upstream::first_env(env, vars);
        let base = match (&d.api_base, name, family) {
            (Some(b), _, _) => b.clone(),
            (None, "openai", _) => from_env(&["OPENAI_API_BASE", "OPENAI_BASE_URL"])
                .unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
            (None, _, Some(f)) => match from_env(f.base_env).or(f.default_base.map(str::to_string))
            {
                Some(b) => b,
                None => {
                    return Err(invalid(format!(
                        "provider `{}` needs `api_base` (or {})",
                        f.name,
                        f.base_env.join(" / ")
                    )));
                }
            },
            (None, _, None) => {
                return Err(invalid(format!(
                    "provider `{}` needs `api_base`",
                    d.provider
                )));
            }
        };
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid(format!(
                "api_base `{base}` must start with http:// or https://"
            )));
        }
        let key = match (&d.api_key, family) {
            (Some(k), _) => Some(k.expose().to_string()),
            (None, _) if name == "openai" => env.get("OPENAI_API_KEY"),
            (None, Some(f)) => from_env(f.key_env),
            (None, None) => None,
        };
        let mut headers = upstream::default_headers();
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            let v = upstream::sensitive(&format!("Bearer {key}"), "api_key").map_err(invalid)?;
            headers.insert(AUTHORIZATION, v);
        }
        if let Some(org) = &d.organization {
            let v = HeaderValue::from_str(org)
                .map_err(|_| invalid("organization is not a valid header value".into()))?;
            headers.insert(HeaderName::from_static("openai-organization"), v);
        }
        upstream::insert_extra_headers(&mut headers, &d.extra_headers).map_err(invalid)?;
        let public_base = public_url(&base);
        let uris = EndpointUris::new(&base)
            .map_err(|e| invalid(format!("api_base `{public_base}` is not a valid URL: {e}")))?;
        if name == "openrouter" {
            // OpenRouter's optional app attribution headers (LiteLLM reads the same variables).
            for (var, header) in [("OR_SITE_URL", "http-referer"), ("OR_APP_NAME", "x-title")] {
                if let Some(v) = env.get(var).and_then(|v| HeaderValue::from_str(&v).ok()) {
                    headers.entry(HeaderName::from_static(header)).or_insert(v);
                }
            }
        }
        Ok(OpenAiProvider {
            inner: Arc::new(Inner {
                name,
                deployment: d.model_name.clone(),
                uris,
                public_base,
                headers,
                client: ctx.client.clone(),
                family,
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
            }),
        })
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn api_base(&self) -> &str {
        &self.inner.public_base
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => true,
            // The Responses API is OpenAI's own (and generic servers may have it).
            Endpoint::Responses => self.inner.family.is_none(),
            Endpoint::Rerank => self.inner.family.is_some_and(|f| f.rerank),
            Endpoint::Messages | Endpoint::CountTokens => false,
        }
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(call).await })
    }
}

/// `{api_base}{endpoint path}` for each endpoint, parsed once (a `Uri` clone is a reference-count bump).
struct EndpointUris([http::Uri; 5]);

impl EndpointUris {
    fn new(base: &str) -> Result<Self, http::uri::InvalidUri> {
        let uri = |e: Endpoint| format!("{base}{}", e.path()).parse::<http::Uri>();
        Ok(EndpointUris([
            uri(Endpoint::ChatCompletions)?,
            uri(Endpoint::Completions)?,
            uri(Endpoint::Embeddings)?,
            uri(Endpoint::Responses)?,
            uri(Endpoint::Rerank)?,
        ]))
    }

    /// `None` for endpoints an OpenAI-style server does not have (see `supports`).
    fn get(&self, e: Endpoint) -> Option<http::Uri> {
        let i = match e {
            Endpoint::ChatCompletions => 0,
            Endpoint::Completions => 1,
            Endpoint::Embeddings => 2,
            Endpoint::Responses => 3,
            Endpoint::Rerank => 4,
            Endpoint::Messages | Endpoint::CountTokens => return None,
        };
        Some(self.0[i].clone())
    }
}

/// Rewrite the client's body for the upstream: the model name, and (for streams) ask for usage.
pub fn rewrite_request(call: &Call) -> Result<Vec<u8>, GatewayError> {
    let obj =
        JsonObject::parse(&call.body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let mut edits = Vec::with_capacity(2);
    match obj.get("model") {
        Some(raw) => edits.push(Edit::replace(
            obj.span(raw),
            json_string(&call.upstream_model),
        )),
        None => {
            let mut field = b"\"model\":".to_vec();
            field.extend_from_slice(&json_string(&call.upstream_model));
            if !obj.is_empty() {
                field.push(b',');
            }
            edits.push(Edit::insert(obj.open_brace_end(), field));
        }
    }
    let wants_usage_injection = call.stream
        && matches!(
            call.endpoint,
            Endpoint::ChatCompletions | Endpoint::Completions
        );
    if wants_usage_injection && !call.client_wants_usage {
        match obj.get("stream_options") {
            None => edits.push(Edit::insert(
                obj.open_brace_end(),
                b"\"stream_options\":{\"include_usage\":true},".to_vec(),
            )),
            // An explicit `null` is replaced in place; inserting a second key would send a duplicate key.
            Some(raw) if raw.get() == "null" => {
                edits.push(Edit::replace(
                    obj.span(raw),
                    b"{\"include_usage\":true}".to_vec(),
                ));
            }
            Some(raw) => {
                let mut opts: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(raw.get()).map_err(|_| {
                        GatewayError::invalid_param(
                            "stream_options",
                            "stream_options must be an object",
                        )
                    })?;
                opts.insert("include_usage".into(), serde_json::Value::Bool(true));
                let bytes =
                    serde_json::to_vec(&opts).map_err(|e| GatewayError::Internal(e.to_string()))?;
                edits.push(Edit::replace(obj.span(raw), bytes));
            }
        }
    }
    Ok(splice(obj.source().as_bytes(), &mut edits))
}

/// The body with only `model` set to the upstream's name.
fn rewrite_model_only(call: &Call) -> Result<Vec<u8>, GatewayError> {
    let obj =
        JsonObject::parse(&call.body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    Ok(tollgate_core::wire::replace_model(
        &obj,
        &call.upstream_model,
    ))
}

/// Map a hyper client error to the gateway's error.
pub(crate) fn transport_error(
    deployment: &str,
    e: &hyper_util::client::legacy::Error,
) -> GatewayError {
    let mut cause = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        src = s.source();
    }
    GatewayError::UpstreamUnreachable {
        deployment: deployment.to_string(),
        cause,
    }
}

/// Turn an upstream error response into the gateway error, keeping the upstream's message, type and code.
pub fn upstream_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: ErrorObj,
    }
    #[derive(serde::Deserialize)]
    struct ErrorObj {
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        param: Option<serde_json::Value>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    }
    let as_text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let retry_after = translate::retry_after(headers);
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
            status: status.as_u16(),
            message: error
                .message
                .unwrap_or_else(|| format!("upstream returned {status}")),
            error_type: error.kind,
            param: as_text(error.param),
            code: as_text(error.code),
            retry_after,
        })),
        Err(_) => GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
            status: status.as_u16(),
            message: translate::error_text(body, "upstream", status),
            error_type: None,
            param: None,
            code: None,
            retry_after,
        })),
    }
}

impl Inner {
    async fn call(self: Arc<Self>, mut call: Call) -> Result<Reply, GatewayError> {
        let uri = self
            .uris
            .get(call.endpoint)
            .ok_or_else(|| upstream::not_served(self.name, call.endpoint))?;
        match self.family {
            Some(f) => {
                call.body =
                    self.policy
                        .apply_blocklist(&call.body, f.unsupported, f.renamed, f.name)?;
                if let Some(prefix) = f.model_prefix
                    && !call.upstream_model.starts_with(prefix)
                    && !call.upstream_model.contains('/')
                {
                    call.upstream_model = format!("{prefix}{}", call.upstream_model);
                }
            }
            None => {
                call.body = self
                    .policy
                    .apply_blocklist(&call.body, &[], &[], self.name)?
            }
        }
        let body = if call.endpoint == Endpoint::Rerank {
            rewrite_model_only(&call)?
        } else {
            rewrite_request(&call)?
        };
        let req = upstream::post(
            uri,
            body,
            &self.headers,
            &call.request_id,
            call.traceparent.as_ref(),
        )?;
        exchange(&self.client, req, &self.deployment, call, upstream_error).await
    }
}

/// Send an OpenAI-format request and read the answer (OpenAI, the compatible family and Azure): a stream
/// when one was asked for and the upstream answers with SSE, else the whole body (within the same deadline)
/// with `model` set to the requested name.
pub(crate) async fn exchange(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    deployment: &str,
    call: Call,
    parse_error: translate::ErrorParser,
) -> Result<Reply, GatewayError> {
    let deadline = tokio::time::Instant::now() + call.timeout;
    let sent = translate::send(
        client,
        req,
        deployment,
        call.timeout,
        call.stream,
        parse_error,
    )
    .await?;
    let bytes = match sent {
        Sent::Body(bytes) => bytes,
        Sent::Stream(resp, credentials) if is_sse(resp.headers()) => {
            return Ok(Reply::Stream(transform_stream(
                resp.into_body(),
                call,
                deployment.to_string(),
                credentials,
            )));
        }
        Sent::Stream(resp, _) => {
            tokio::time::timeout_at(deadline, translate::collect(resp.into_body(), deployment))
                .await
                .map_err(|_| GatewayError::UpstreamTimeout {
                    deployment: deployment.to_string(),
                    after: call.timeout,
                })??
        }
    };
    let (body, usage) = rewrite_response(&bytes, &call.requested_model)
        .map_err(|cause| translate::invalid_response(deployment, cause))?;
    Ok(Reply::Complete { body, usage })
}

fn is_sse(h: &HeaderMap) -> bool {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// Set `model` to what the client asked for and pick out `usage`, leaving the rest byte for byte.
pub fn rewrite_response(
    bytes: &[u8],
    requested_model: &str,
) -> Result<(Bytes, Option<Usage>), String> {
    let obj =
        JsonObject::parse(bytes).map_err(|e| format!("response is not a JSON object: {e}"))?;
    let usage = obj.get("usage").and_then(|u| Usage::from_json(u.get()));
    let body = match model_edit(&obj, requested_model, 0) {
        Some(edit) => Bytes::from(splice(bytes, &mut [edit])),
        None => Bytes::copy_from_slice(bytes),
    };
    Ok((body, usage))
}

/// What to do with one upstream SSE event on its way to the client.
pub(crate) struct EventRewriter {
    pub requested_model: String,
    /// The gateway added `include_usage`: drop the usage-only chunk and null other usage fields.
    pub strip_usage: bool,
    pub endpoint: Endpoint,
    /// The request's credentials, masked in error events (an upstream may repeat the key there as in its
    /// error answers).
    pub credentials: Credentials,
}

impl EventRewriter {
    /// Append the client's form of `ev` to `out`; record usage in `outcome`.
    pub fn rewrite(&self, ev: &SseEvent, outcome: &StreamOutcome, out: &mut Vec<u8>) {
        match self.masked_error(ev) {
            Some(masked) => self.rewrite_event(&masked, outcome, out),
            None => self.rewrite_event(ev, outcome, out),
        }
    }

    /// `ev` with the credentials masked, when it is an error event (`event: error`, or data with an `"error"`
    /// key anywhere: `{"error":{..}}`, the Responses API's `response.failed`) that repeats one. Other
    /// events are left alone: a short key (`none`, `test`) would garble ordinary content.
    fn masked_error(&self, ev: &SseEvent) -> Option<SseEvent> {
        if self.credentials.is_empty() {
            return None;
        }
        let is_error = ev.event.as_deref() == Some("error")
            || memchr::memmem::find(ev.data.as_bytes(), b"\"error\"").is_some();
        if !is_error {
            return None;
        }
        let data = self.credentials.mask_text(&ev.data)?;
        Some(SseEvent {
            event: ev.event.clone(),
            data,
            id: ev.id.clone(),
        })
    }

    fn rewrite_event(&self, ev: &SseEvent, outcome: &StreamOutcome, out: &mut Vec<u8>) {
        let data = ev.data.as_str();
        if data == "[DONE]" || !data.starts_with('{') {
            encode(ev.event.as_deref(), data.as_bytes(), out);
            return;
        }
        let Ok(obj) = JsonObject::parse_str(data) else {
            encode(ev.event.as_deref(), data.as_bytes(), out);
            return;
        };
        if self.endpoint == Endpoint::Responses {
            // Responses API: the model and usage sit inside `response` (usage in `response.completed`).
            let mut edits = Vec::new();
            if let Some(resp) = obj.get("response")
                && let Ok(inner) = JsonObject::parse_str(resp.get())
            {
                if let Some(u) = inner.get("usage").and_then(|u| Usage::from_json(u.get())) {
                    outcome.set_usage(u);
                }
                edits.extend(model_edit(
                    &inner,
                    &self.requested_model,
                    obj.span(resp).start,
                ));
            }
            encode_edited(ev, &mut edits, out);
            return;
        }
        let mut edits = Vec::with_capacity(2);
        if let Some(u) = obj.get("usage").filter(|u| u.get() != "null") {
            if let Some(usage) = Usage::from_json(u.get()) {
                outcome.set_usage(usage);
            }
            if self.strip_usage {
                let choices_empty = obj.get("choices").is_none_or(|c| {
                    c.get()
                        .trim_start_matches('[')
                        .trim_start()
                        .starts_with(']')
                });
                if choices_empty {
                    return;
                }
                edits.push(Edit::replace(obj.span(u), b"null".to_vec()));
            }
        }
        edits.extend(model_edit(&obj, &self.requested_model, 0));
        encode_edited(ev, &mut edits, out);
    }
}

/// The edit that sets `obj`'s top-level `model` to `requested` (none when absent or already equal).
/// `offset` is where `obj` starts within the text being edited.
fn model_edit(obj: &JsonObject<'_>, requested: &str, offset: usize) -> Option<Edit> {
    let raw = obj.get("model")?;
    if obj.get_str("model").ok().flatten().as_deref() == Some(requested) {
        return None;
    }
    let span = obj.span(raw);
    Some(Edit::replace(
        offset + span.start..offset + span.end,
        json_string(requested),
    ))
}

/// Encode `ev` with `edits` applied to its data.
fn encode_edited(ev: &SseEvent, edits: &mut [Edit], out: &mut Vec<u8>) {
    if edits.is_empty() {
        encode(ev.event.as_deref(), ev.data.as_bytes(), out);
    } else {
        encode(ev.event.as_deref(), &splice(ev.data.as_bytes(), edits), out);
    }
}

/// The SSE error event sent when a stream fails after it started.
pub fn sse_error_event(err: &GatewayError) -> Vec<u8> {
    let mut out = Vec::new();
    encode(None, &err.body_bytes(), &mut out);
    out
}

/// The upstream's SSE stream with each event rewritten ([`EventRewriter`]); a stall, a broken connection or an
/// event over [`crate::sse::MAX_SSE_EVENT`] ends it with an error event.
pub(crate) fn transform_stream<B: UpstreamBody>(
    body: B,
    call: Call,
    deployment: String,
    credentials: Credentials,
) -> ChunkStream {
    let outcome = Arc::new(StreamOutcome::default());
    let rewriter = EventRewriter {
        requested_model: call.requested_model,
        strip_usage: !call.client_wants_usage,
        endpoint: call.endpoint,
        credentials,
    };
    struct State<B> {
        body: B,
        decoder: SseDecoder,
        events: Vec<SseEvent>,
        rewriter: EventRewriter,
        outcome: Arc<StreamOutcome>,
        deployment: String,
        idle: Duration,
        done: bool,
    }
    impl<B> State<B> {
        /// Decoding failed: the events decoded before the failure, then the error event; the stream ends.
        fn undecodable(&mut self, e: &SseError, out: &mut Vec<u8>) {
            self.done = true;
            let err = translate::sse_failure(&self.deployment, e);
            self.outcome.set_failure(&err);
            for ev in self.events.drain(..) {
                self.rewriter.rewrite(&ev, &self.outcome, out);
            }
            if !out.is_empty() {
                self.outcome.add_chunk();
            }
            out.extend_from_slice(&sse_error_event(&err));
        }
    }
    let idle = call.timeout;
    let state = State {
        body,
        decoder: SseDecoder::new(),
        events: Vec::new(),
        rewriter,
        outcome: outcome.clone(),
        deployment,
        idle,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            // `idle` bounds every wait for upstream bytes, so a stream that stalls after its head ends with
            // an SSE timeout error instead of hanging (LiteLLM's clients apply the timeout to each read).
            let frame = match tokio::time::timeout(st.idle, st.body.frame()).await {
                Ok(f) => f,
                Err(_) => {
                    st.done = true;
                    let err = GatewayError::UpstreamTimeout {
                        deployment: st.deployment.clone(),
                        after: st.idle,
                    };
                    st.outcome.set_failure(&err);
                    out.extend_from_slice(&sse_error_event(&err));
                    return Some((Bytes::from(out), st));
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Err(e) = st.decoder.push(&data, &mut st.events) {
                        st.undecodable(&e, &mut out);
                        return Some((Bytes::from(out), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    let err = GatewayError::UpstreamUnreachable {
                        deployment: st.deployment.clone(),
                        cause: format!("stream interrupted: {e}"),
                    };
                    st.outcome.set_failure(&err);
                    for ev in st.events.drain(..) {
                        st.rewriter.rewrite(&ev, &st.outcome, &mut out);
                    }
                    out.extend_from_slice(&sse_error_event(&err));
                    return Some((Bytes::from(out), st));
                }
                None => {
                    st.done = true;
                    if let Err(e) = st.decoder.finish(&mut st.events) {
                        st.undecodable(&e, &mut out);
                        return Some((Bytes::from(out), st));
                    }
                    st.outcome.set_completed();
                }
            }
            for ev in st.events.drain(..) {
                st.rewriter.rewrite(&ev, &st.outcome, &mut out);
            }
            if !out.is_empty() {
                st.outcome.add_chunk();
                return Some((Bytes::from(out), st));
            }
        }
    });
    ChunkStream {
        body: stream.boxed(),
        outcome,
    }
}

/// Default request timeout when neither the deployment nor the settings give one (LiteLLM's is 600 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str, stream: bool, client_wants_usage: bool) -> Call {
        Call {
            endpoint: Endpoint::ChatCompletions,
            body: Bytes::copy_from_slice(body.as_bytes()),
            requested_model: "alias".into(),
            upstream_model: "gpt-4o".into(),
            stream,
            client_wants_usage,
            request_id: "r".into(),
            traceparent: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    #[test]
    fn request_rewrite_changes_only_model() {
        let out = rewrite_request(&call(
            r#"{"model":"alias","messages":[],"temperature":0.1}"#,
            false,
            false,
        ))
        .unwrap();
        assert_eq!(
            out,
            br#"{"model":"gpt-4o","messages":[],"temperature":0.1}"#
        );
    }

    #[test]
    fn stream_request_asks_for_usage() {
        let out =
            rewrite_request(&call(r#"{"model":"alias","stream":true}"#, true, false)).unwrap();
        assert_eq!(
            out,
            br#"{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true}"#
        );
        let out = rewrite_request(&call(
            r#"{"model":"alias","stream":true,"stream_options":{"include_usage":false}}"#,
            true,
            false,
        ))
        .unwrap();
        assert_eq!(
            out,
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#
        );
        let out = rewrite_request(&call(
            r#"{"model":"alias","stream":true,"stream_options":null}"#,
            true,
            false,
        ))
        .unwrap();
        assert_eq!(
            out,
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#
        );
        let body = r#"{"model":"alias","stream":true,"stream_options":{"include_usage":true}}"#;
        let out = rewrite_request(&call(body, true, true)).unwrap();
        assert_eq!(out, body.replace("alias", "gpt-4o").as_bytes());
    }

    #[test]
    fn response_rewrite_sets_requested_model_and_reads_usage() {
        let (b, u) = rewrite_response(
            br#"{"id":"x","model":"gpt-4o-2024","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            "alias",
        )
        .unwrap();
        assert_eq!(&b[..], br#"{"id":"x","model":"alias","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#);
        assert_eq!(u.unwrap().total_tokens, 7);
        assert!(rewrite_response(b"not json", "a").is_err());
    }

    #[test]
    fn usage_chunk_is_stripped_unless_asked_for() {
        let outcome = StreamOutcome::default();
        let usage_ev = SseEvent {
            data: r#"{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#.into(),
            ..Default::default()
        };
        let strip = EventRewriter {
            requested_model: "alias".into(),
            strip_usage: true,
            endpoint: Endpoint::ChatCompletions,
            credentials: Credentials::default(),
        };
        let mut out = vec![];
        strip.rewrite(&usage_ev, &outcome, &mut out);
        assert!(out.is_empty());
        assert_eq!(outcome.usage().unwrap().total_tokens, 3);
        let keep = EventRewriter {
            requested_model: "alias".into(),
            strip_usage: false,
            endpoint: Endpoint::ChatCompletions,
            credentials: Credentials::default(),
        };
        keep.rewrite(&usage_ev, &outcome, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"id\":\"c\",\"model\":\"alias\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n"
        );
    }

    #[test]
    fn responses_stream_events_report_the_requested_model() {
        let outcome = StreamOutcome::default();
        let ev = SseEvent {
            event: Some("response.completed".into()),
            data: r#"{"type":"response.completed","response":{"id":"r","model":"gpt-4o-2024","usage":{"input_tokens":2,"output_tokens":3,"total_tokens":5}}}"#.into(),
            ..Default::default()
        };
        let rw = EventRewriter {
            requested_model: "alias".into(),
            strip_usage: true,
            endpoint: Endpoint::Responses,
            credentials: Credentials::default(),
        };
        let mut out = vec![];
        rw.rewrite(&ev, &outcome, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("event: response.completed\n"), "{text}");
        assert!(
            text.contains(r#""model":"alias""#) && !text.contains("gpt-4o-2024"),
            "{text}"
        );
        assert_eq!(outcome.usage().unwrap().total_tokens, 5);
    }

    /// An upstream repeating the key in an error inside its stream (`data: {"error":..}`, the Responses
    /// API's `event: error`): the client gets it masked, as in error answers; other events are left alone.
    #[tokio::test]
    async fn stream_error_events_do_not_repeat_the_key() {
        use crate::translate::stream_tests::{body, credentials, text_of};
        let key = "sk-live-0123456789abcdef";
        let chunks = vec![
            br#"data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"}}]}"#.to_vec(),
            b"\n\n".to_vec(),
            format!(r#"data: {{"error":{{"message":"Incorrect API key provided: {key}","type":"invalid_request_error"}}}}"#).into_bytes(),
            format!("\n\nevent: error\ndata: {{\"type\":\"error\",\"message\":\"key {key} revoked\"}}\n\n").into_bytes(),
        ];
        let stream = transform_stream(
            body(chunks.clone()),
            call(r#"{"model":"alias"}"#, true, true),
            "dep".into(),
            credentials("authorization", &format!("Bearer {key}")),
        );
        let text = text_of(stream).await;
        assert!(!text.contains(key), "{text}");
        assert_eq!(text.matches("sk-...cdef").count(), 2, "{text}");
        assert!(
            text.contains(r#""content":"hi""#) && text.contains(r#""model":"alias""#),
            "{text}"
        );
        assert!(text.contains("event: error\n"), "{text}");
        // Without credentials (or when none is repeated) the events pass as they came.
        let stream = transform_stream(
            body(chunks),
            call(r#"{"model":"alias"}"#, true, true),
            "dep".into(),
            Credentials::default(),
        );
        assert_eq!(text_of(stream).await.matches(key).count(), 2);
        // A short key ("none", as local servers take) is masked in an error, not in content.
        let chunks = vec![
            br#"data: {"choices":[{"index":0,"delta":{"content":"none of them"}}]}"#.to_vec(),
            b"\n\ndata: {\"error\":{\"message\":\"bad key none\"}}\n\n".to_vec(),
        ];
        let stream = transform_stream(
            body(chunks),
            call(r#"{"model":"alias"}"#, true, true),
            "dep".into(),
            credentials("authorization", "Bearer none"),
        );
        let text = text_of(stream).await;
        assert!(
            text.contains("none of them") && text.contains("bad key ***"),
            "{text}"
        );
    }

    /// An upstream sending a line that never ends: the stream fails once the line passes the limit (with
    /// an error event, never `[DONE]`), after what came before it.
    #[tokio::test]
    async fn an_event_over_the_limit_ends_the_stream_with_an_error() {
        use crate::sse::MAX_SSE_EVENT;
        use crate::translate::stream_tests::{body, endless_line, text_of};
        let mut chunks = vec![
            br#"data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}"#.to_vec(),
            b"\n\n".to_vec(),
        ];
        chunks.extend(endless_line(MAX_SSE_EVENT + 16));
        let stream = transform_stream(
            body(chunks),
            call(r#"{"model":"alias"}"#, true, true),
            "dep".into(),
            Credentials::default(),
        );
        let outcome = stream.outcome.clone();
        let text = text_of(stream).await;
        assert!(
            text.contains(r#""content":"hi""#),
            "{}",
            &text[..200.min(text.len())]
        );
        assert!(!text.contains("[DONE]") && !text.contains("xxxx"));
        assert!(text.contains("upstream_invalid_response"), "{text}");
        let failure = outcome.failure().unwrap();
        assert!(
            matches!(failure, GatewayError::UpstreamInvalid { .. }),
            "{failure}"
        );
        assert!(!outcome.completed());
        assert_eq!(outcome.chunks(), 1);
    }

    #[test]
    fn upstream_errors_keep_message_type_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let e = upstream_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(e.retry_after().as_deref(), Some("7"));
        assert_eq!(e.public_message(), "Rate limit reached");
        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            b"plain text failure",
        );
        assert_eq!(e.public_message(), "plain text failure");
    }
}
