//! Anthropic (`anthropic/`): OpenAI chat completions translated to the Messages API (`{base}/v1/messages`),
//! and the Messages API itself (`/v1/messages`, `/v1/messages/count_tokens`) passed through natively.

mod native;
mod request;
mod response;

#[cfg(test)]
mod mock_tests;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::Full;
use tollgate_config::Deployment;
use tollgate_core::url::public_url;
use tollgate_core::{GatewayError, UpstreamFailure};

use crate::chat::ChatRequest;
use crate::translate::{self, ParamPolicy, Sent, invalid_response, send, translated_stream};
use crate::{
    BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply, upstream,
};

pub use request::SUPPORTED_PARAMS;

/// The `anthropic-version` every request sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Where requests go when neither `api_base` nor `ANTHROPIC_API_BASE` / `ANTHROPIC_BASE_URL` says.
pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const ANTHROPIC_VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// An adapter for one Anthropic deployment.
pub struct AnthropicProvider {
    inner: Arc<Inner>,
}

struct Inner {
    deployment: String,
    messages_uri: Uri,
    count_tokens_uri: Uri,
    /// The base without credentials or query, for headers and `/health`.
    public_base: String,
    /// `x-api-key`, `anthropic-version`, `content-type`, the deployment's `extra_headers`.
    headers: HeaderMap,
    client: HttpClient,
    policy: ParamPolicy,
    /// `max_tokens` when the request gives none: `model_info.max_output_tokens`, else 4096.
    default_max_tokens: u64,
}

impl AnthropicProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::invalid(d, message);
        let from_env = |vars: &[&str]| upstream::first_env_nonblank(ctx.env, vars);
        let base = d
            .api_base
            .clone()
            .or_else(|| from_env(&["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"]))
            .unwrap_or_else(|| DEFAULT_API_BASE.to_string());
        let base = base.trim().trim_end_matches('/').to_string();
        upstream::require_http(&base).map_err(invalid)?;
        let public_base = public_url(&base);
        let (messages, count_tokens) = endpoint_urls(&base);
        let parse = |u: String| {
            u.parse::<Uri>()
                .map_err(|e| invalid(format!("api_base `{public_base}` is not a valid URL: {e}")))
        };
        let messages_uri = parse(messages)?;
        let count_tokens_uri = parse(count_tokens)?;

        let mut headers = upstream::default_headers();
        headers.insert(
            ANTHROPIC_VERSION_HEADER,
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        let key = match &d.api_key {
            Some(k) => Some(k.expose().to_string()),
            None => from_env(&["ANTHROPIC_API_KEY"]),
        };
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            let v = upstream::sensitive(key.trim(), "api_key").map_err(invalid)?;
            headers.insert(X_API_KEY, v);
        }
        upstream::insert_extra_headers(&mut headers, &d.extra_headers).map_err(invalid)?;
        Ok(AnthropicProvider {
            inner: Arc::new(Inner {
                deployment: d.model_name.clone(),
                messages_uri,
                count_tokens_uri,
                public_base,
                headers,
                client: ctx.client.clone(),
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
                default_max_tokens: d
                    .model_info
                    .max_output_tokens
                    .filter(|n| *n > 0)
                    .unwrap_or(request::DEFAULT_MAX_TOKENS),
            }),
        })
    }
}

/// `{base}/v1/messages` and `{base}/v1/messages/count_tokens`; a base already ending in `/v1` (or in
/// `/v1/messages`) is not doubled.
fn endpoint_urls(base: &str) -> (String, String) {
    let base = base.trim_end_matches('/');
    let base = base
        .strip_suffix("/messages")
        .filter(|b| b.ends_with("/v1"))
        .unwrap_or(base);
    let v1 = if base.ends_with("/v1") {
        base.to_string()
    } else {
        format!("{base}/v1")
    };
    (
        format!("{v1}/messages"),
        format!("{v1}/messages/count_tokens"),
    )
}

impl Provider for AnthropicProvider {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn api_base(&self) -> &str {
        &self.inner.public_base
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::CountTokens
        )
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(call).await })
    }
}

impl Inner {
    async fn call(self: Arc<Self>, call: Call) -> Result<Reply, GatewayError> {
        match call.endpoint {
            Endpoint::ChatCompletions => self.chat(call).await,
            Endpoint::Messages => {
                let uri = self.messages_uri.clone();
                self.native(call, uri).await
            }
            Endpoint::CountTokens => {
                let uri = self.count_tokens_uri.clone();
                self.native(call, uri).await
            }
            other => Err(GatewayError::InvalidRequest {
                message: format!(
                    "provider `anthropic` does not support {} (model={})",
                    other.path(),
                    call.requested_model
                ),
                param: Some("model".into()),
                code: Some("unsupported_endpoint".into()),
            }),
        }
    }

    /// OpenAI chat completions, translated both ways.
    async fn chat(&self, call: Call) -> Result<Reply, GatewayError> {
        let translated = chat_request(&self.policy, &call, self.default_max_tokens)?;
        let json_mode = translated.json_mode;
        let req = self.request(
            self.messages_uri.clone(),
            translated.body,
            translated.beta,
            &call.request_id,
            call.traceparent.as_ref(),
        )?;
        match send(
            &self.client,
            req,
            &self.deployment,
            call.timeout,
            call.stream,
            upstream_error,
        )
        .await?
        {
            Sent::Stream(resp, credentials) => {
                let t = response::ChatStream::new(
                    &call.requested_model,
                    call.client_wants_usage,
                    json_mode,
                    self.deployment.clone(),
                );
                Ok(Reply::Stream(translated_stream(
                    resp.into_body(),
                    t,
                    call.timeout,
                    self.deployment.clone(),
                    credentials,
                )))
            }
            Sent::Body(bytes) => {
                let (body, usage) =
                    response::chat_response(&bytes, &call.requested_model, json_mode)
                        .map_err(|cause| invalid_response(&self.deployment, cause))?;
                Ok(Reply::Complete {
                    body,
                    usage: Some(usage),
                })
            }
        }
    }

    /// The Messages API (or its token counting) as is: only `model` is rewritten.
    async fn native(&self, call: Call, uri: Uri) -> Result<Reply, GatewayError> {
        let body = native::rewrite_request(&call.body, &call.upstream_model)?;
        let req = self.request(uri, body, None, &call.request_id, call.traceparent.as_ref())?;
        let stream = call.stream && call.endpoint == Endpoint::Messages;
        match send(
            &self.client,
            req,
            &self.deployment,
            call.timeout,
            stream,
            upstream_error,
        )
        .await?
        {
            Sent::Stream(resp, credentials) => {
                let t =
                    native::PassThroughStream::new(call.requested_model, self.deployment.clone());
                Ok(Reply::Stream(translated_stream(
                    resp.into_body(),
                    t,
                    call.timeout,
                    self.deployment.clone(),
                    credentials,
                )))
            }
            Sent::Body(bytes) if call.endpoint == Endpoint::CountTokens => Ok(Reply::Complete {
                body: bytes,
                usage: None,
            }),
            Sent::Body(bytes) => {
                let (body, usage) = native::message_response(&bytes, &call.requested_model)
                    .map_err(|cause| invalid_response(&self.deployment, cause))?;
                Ok(Reply::Complete { body, usage })
            }
        }
    }

    /// A POST of `body` to `uri` with the deployment's headers (and `beta` added to `anthropic-beta`).
    fn request(
        &self,
        uri: Uri,
        body: Vec<u8>,
        beta: Option<&'static str>,
        request_id: &str,
        traceparent: Option<&http::HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, GatewayError> {
        let mut req = upstream::post(uri, body, &self.headers, request_id, traceparent)?;
        if let Some(beta) = beta {
            add_beta(req.headers_mut(), beta);
        }
        Ok(req)
    }
}

/// The client's chat body as a Messages API request: params checked against `policy`, parsed, translated.
fn chat_request(
    policy: &ParamPolicy,
    call: &Call,
    default_max_tokens: u64,
) -> Result<request::Translated, GatewayError> {
    let body = policy.apply(&call.body, SUPPORTED_PARAMS, "anthropic")?;
    let req = ChatRequest::parse(&body)?;
    request::translate(req, &call.upstream_model, call.stream, default_max_tokens)
}

/// Entry points for the fuzz targets (feature `fuzzing`): the same functions the adapter runs, without I/O.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    use super::*;
    use crate::translate::StreamTranslator;

    /// The Messages API body (and whether JSON mode is on) for a chat `call`, as [`Inner::chat`] sends it.
    pub(crate) fn chat_body(
        policy: &ParamPolicy,
        call: &Call,
        default_max_tokens: u64,
    ) -> Result<(Vec<u8>, bool), GatewayError> {
        chat_request(policy, call, default_max_tokens).map(|t| (t.body, t.json_mode))
    }

    /// The native Messages body with only `model` rewritten (the pass-through path).
    pub(crate) fn native_body(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
        native::rewrite_request(body, upstream_model)
    }

    /// The translator of an upstream Messages stream into OpenAI chat chunks.
    pub(crate) fn chat_stream(include_usage: bool, json_mode: bool) -> impl StreamTranslator {
        response::ChatStream::new("fuzz-model", include_usage, json_mode, "fuzz".into())
    }

    /// The translator of a native Messages stream passed through (only `model` rewritten).
    pub(crate) fn native_stream() -> impl StreamTranslator {
        native::PassThroughStream::new("fuzz-model".into(), "fuzz".into())
    }
}

/// Add `beta` to the comma-separated `anthropic-beta` header (kept once).
fn add_beta(headers: &mut HeaderMap, beta: &'static str) {
    let current = headers
        .get(&ANTHROPIC_BETA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let value = match current {
        Some(c) if c.split(',').any(|b| b.trim() == beta) => return,
        Some(c) if !c.trim().is_empty() => HeaderValue::from_str(&format!("{c},{beta}")).ok(),
        _ => Some(HeaderValue::from_static(beta)),
    };
    if let Some(v) = value {
        headers.insert(ANTHROPIC_BETA, v);
    }
}

/// The HTTP status Anthropic documents for an error type (used for errors inside a stream).
fn status_for_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The OpenAI-style code that makes an Anthropic error recognisable: a prompt over the context window, or
/// output blocked by the content filter.
fn code_for(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    if m.contains("prompt is too long") {
        Some("context_length_exceeded".into())
    } else if m.contains("content filtering policy") {
        Some("content_policy_violation".into())
    } else {
        None
    }
}

/// An `error` event in the middle of a stream (`{"type":"error","error":{"type","message"}}`).
pub(crate) fn stream_failure(kind: &str, message: &str) -> GatewayError {
    let kind = if kind.is_empty() { "api_error" } else { kind };
    let message = if message.is_empty() {
        format!("the upstream stream failed with {kind}")
    } else {
        message.to_string()
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status: status_for_type(kind),
        code: code_for(&message),
        message,
        error_type: Some(kind.to_string()),
        param: None,
        retry_after: None,
    }))
}

/// An Anthropic error response (`{"type":"error","error":{"type","message"}}`) as the gateway error, keeping
/// the status, type, message and `retry-after`.
pub fn upstream_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: response::ErrorBody,
    }
    let retry_after = translate::retry_after(headers);
    let (message, error_type) = match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => (error.message, Some(error.kind).filter(|k| !k.is_empty())),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            (text.trim().chars().take(500).collect(), None)
        }
    };
    let message = if message.is_empty() {
        format!("upstream returned {status}")
    } else {
        message
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status: status.as_u16(),
        code: code_for(&message),
        message,
        error_type,
        param: None,
        retry_after,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_config::{Env, Overrides, load_str};

    fn build(params: &str, env: &[(&str, &str)]) -> Result<AnthropicProvider, BuildError> {
        let yaml = format!(
            "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-up\n{params}"
        );
        let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cfg = load_str(
            &yaml,
            std::path::Path::new("t.yaml"),
            &env,
            &Overrides::default(),
        )
        .unwrap();
        let client = crate::http_client();
        let ctx = BuildContext {
            env: &env,
            client: &client,
            drop_params: false,
        };
        AnthropicProvider::new(&cfg.deployments[0], &ctx)
    }

    #[test]
    fn base_url_and_key_come_from_the_deployment_or_the_environment() {
        let p = build("", &[]).unwrap();
        assert_eq!(p.api_base(), DEFAULT_API_BASE);
        assert_eq!(
            p.inner.messages_uri,
            "https://api.anthropic.com/v1/messages"
        );
        assert!(p.inner.headers.get(X_API_KEY).is_none());
        assert_eq!(
            p.inner.headers.get(ANTHROPIC_VERSION_HEADER).unwrap(),
            ANTHROPIC_VERSION
        );
        assert_eq!(p.inner.default_max_tokens, request::DEFAULT_MAX_TOKENS);

        let env = [
            ("ANTHROPIC_BASE_URL", "http://env-host:9/"),
            ("ANTHROPIC_API_KEY", "sk-env"),
        ];
        let p = build("", &env).unwrap();
        assert_eq!(p.api_base(), "http://env-host:9");
        assert_eq!(
            p.inner.count_tokens_uri,
            "http://env-host:9/v1/messages/count_tokens"
        );
        assert_eq!(p.inner.headers.get(X_API_KEY).unwrap(), "sk-env");
        assert!(p.inner.headers.get(X_API_KEY).unwrap().is_sensitive());

        let p = build(
            "      api_base: http://u:pw@proxy/anthropic/v1\n      api_key: sk-own\n      extra_headers: { anthropic-beta: files-api-2025-04-14 }\n    model_info:\n      max_output_tokens: 1234\n",
            &env,
        )
        .unwrap();
        assert_eq!(p.api_base(), "http://proxy/anthropic/v1");
        assert_eq!(
            p.inner.messages_uri,
            "http://u:pw@proxy/anthropic/v1/messages"
        );
        assert_eq!(p.inner.headers.get(X_API_KEY).unwrap(), "sk-own");
        assert_eq!(
            p.inner.headers.get(&ANTHROPIC_BETA).unwrap(),
            "files-api-2025-04-14"
        );
        assert_eq!(p.inner.default_max_tokens, 1234);
        assert!(
            p.supports(Endpoint::ChatCompletions)
                && p.supports(Endpoint::Messages)
                && p.supports(Endpoint::CountTokens)
        );
        assert!(!p.supports(Endpoint::Embeddings) && !p.supports(Endpoint::Responses));

        // The config checks `api_base`; the environment's is checked here.
        assert!(build("", &[("ANTHROPIC_API_BASE", "ftp://nope")]).is_err());
    }

    #[test]
    fn urls_are_not_doubled() {
        let (m, c) = endpoint_urls("https://api.anthropic.com");
        assert_eq!(m, "https://api.anthropic.com/v1/messages");
        assert_eq!(c, "https://api.anthropic.com/v1/messages/count_tokens");
        assert_eq!(endpoint_urls("http://h:1/v1").0, "http://h:1/v1/messages");
        assert_eq!(endpoint_urls("http://h:1/v1/").0, "http://h:1/v1/messages");
        assert_eq!(
            endpoint_urls("http://h:1/v1/messages").1,
            "http://h:1/v1/messages/count_tokens"
        );
        assert_eq!(
            endpoint_urls("http://h/anthropic").0,
            "http://h/anthropic/v1/messages"
        );
    }

    #[test]
    fn errors_keep_status_type_message_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let e = upstream_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}"#,
        );
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(e.retry_after().as_deref(), Some("7"));
        assert_eq!(e.error_type(), "rate_limit_error");
        assert!(e.public_message().starts_with("Number of request tokens"));

        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
        );
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (400, Some("context_length_exceeded"))
        );
        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy"}}"#,
        );
        assert_eq!(e.code(), Some("content_policy_violation"));

        let e = upstream_error(
            StatusCode::from_u16(529).unwrap(),
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(e.status().as_u16(), 502);
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!()
        };
        assert_eq!(
            (f.status, f.error_type.as_deref()),
            (529, Some("overloaded_error"))
        );
        for (status, body) in [
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
        ] {
            let e = upstream_error(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                format!(r#"{{"type":"error","error":{{"type":"{body}","message":"m"}}}}"#)
                    .as_bytes(),
            );
            assert_eq!((e.status().as_u16(), e.error_type()), (status, body));
        }
        let e = upstream_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        );
        assert!(e.public_message().contains("<html>bad gateway</html>"));
        assert_eq!(
            stream_failure("rate_limit_error", "slow").status().as_u16(),
            429
        );
        assert_eq!(stream_failure("", "").status().as_u16(), 502);
    }

    #[test]
    fn beta_header_is_added_once() {
        let mut h = HeaderMap::new();
        add_beta(&mut h, "b1");
        add_beta(&mut h, "b1");
        assert_eq!(h.get(&ANTHROPIC_BETA).unwrap(), "b1");
        h.insert(ANTHROPIC_BETA, HeaderValue::from_static("other"));
        add_beta(&mut h, "b1");
        assert_eq!(h.get(&ANTHROPIC_BETA).unwrap(), "other,b1");
    }
}
