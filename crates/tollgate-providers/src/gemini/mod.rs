//! Google AI Studio Gemini (`gemini/`): chat completions over `generateContent` /
//! `streamGenerateContent?alt=sse` and embeddings over `batchEmbedContents`, with Google's error shape mapped.
//!
//! - Base URL: `api_base`, else `GEMINI_API_BASE`, else `https://generativelanguage.googleapis.com`; the
//!   version segment is `api_version` if set, else `v1beta`, unless the base already ends in `/v1beta` or `/v1`.
//! - Key: `api_key`, else `GEMINI_API_KEY`, else `GOOGLE_API_KEY`, in the `x-goog-api-key` header (never in
//!   the URL). Without an `api_base` a key is required.
//! - `n` > 1 asks for that many candidates (`candidateCount`) and answers one choice per candidate; streams
//!   refuse it (the chunk writer speaks one choice).
//! - Embeddings report an estimated usage (Gemini returns no token counts; see [`embed`]).
//! - Errors: `{"error":{"code","message","status"}}` keeps the status and message, `status` becomes the
//!   error type; prompt-too-long messages get `code: context_length_exceeded`, safety blocks
//!   `content_policy_violation`, an invalid key (`API_KEY_INVALID`, which Google sends as a 400) a 401.

mod embed;
mod request;
mod response;

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::Value;
use tollgate_config::Deployment;
use tollgate_core::url::public_url;
use tollgate_core::wire::JsonObject;
use tollgate_core::{GatewayError, UpstreamFailure};

use crate::chat::ChatRequest;
use crate::translate::{self, ParamPolicy, Sent, invalid_response, send, translated_stream};
use crate::{
    BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply, upstream,
};

pub use request::{CHAT_PARAMS, clean_schema};

/// Google AI Studio's endpoint.
pub const DEFAULT_API_BASE: &str = "https://generativelanguage.googleapis.com";

pub struct GeminiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    deployment: String,
    /// `{base}/{version}`, where `/models/{model}:{method}` is appended.
    base: String,
    /// `base` without credentials or query, for headers and `/health`.
    public_base: String,
    headers: HeaderMap,
    client: HttpClient,
    policy: ParamPolicy,
    /// The deployment's `safety_settings` (LiteLLM's param), sent unless the request has its own.
    safety_settings: Option<Value>,
}

impl GeminiProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::invalid(d, message);
        let env = |name: &str| ctx.env.get(name).filter(|v| !v.trim().is_empty());
        let configured_base = d.api_base.clone().or_else(|| env("GEMINI_API_BASE"));
        let key = d
            .api_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .filter(|k| !k.is_empty())
            .or_else(|| env("GEMINI_API_KEY"))
            .or_else(|| env("GOOGLE_API_KEY"));
        if key.is_none() && configured_base.is_none() {
            return Err(invalid(
                "provider `gemini` needs `api_key` (or GEMINI_API_KEY / GOOGLE_API_KEY)".into(),
            ));
        }
        let base = configured_base.unwrap_or_else(|| DEFAULT_API_BASE.to_string());
        let base = base.trim_end_matches('/');
        upstream::require_http(base).map_err(invalid)?;
        let base = if base.ends_with("/v1beta") || base.ends_with("/v1") {
            base.to_string()
        } else {
            let version = d
                .api_version
                .as_deref()
                .filter(|v| !v.is_empty())
                .unwrap_or("v1beta");
            format!("{base}/{version}")
        };
        // Check the URL shape once, so a bad base is a config error rather than a failure per request.
        format!("{base}/models/m:generateContent")
            .parse::<http::Uri>()
            .map_err(|e| {
                invalid(format!(
                    "api_base `{}` is not a valid URL: {e}",
                    public_url(&base)
                ))
            })?;
        let mut headers = upstream::default_headers();
        if let Some(key) = key {
            let v = upstream::sensitive(&key, "api_key").map_err(invalid)?;
            headers.insert(HeaderName::from_static("x-goog-api-key"), v);
        }
        upstream::insert_extra_headers(&mut headers, &d.extra_headers).map_err(invalid)?;
        Ok(GeminiProvider {
            inner: Arc::new(Inner {
                deployment: d.model_name.clone(),
                public_base: public_url(&base),
                base,
                headers,
                client: ctx.client.clone(),
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
                safety_settings: d.extra_params.get("safety_settings").cloned(),
            }),
        })
    }
}

impl Provider for GeminiProvider {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn api_base(&self) -> &str {
        &self.inner.public_base
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings)
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            match call.endpoint {
                Endpoint::ChatCompletions => inner.chat(call).await,
                Endpoint::Embeddings => inner.embeddings(call).await,
                other => Err(upstream::not_served("gemini", other)),
            }
        })
    }
}

impl Inner {
    /// `{base}/models/{model}:{method}` (the model percent-encoded as one path segment).
    fn uri(&self, model: &str, method: &str) -> Result<http::Uri, GatewayError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!("{}/models/{}:{method}", self.base, encode_segment(model))
            .parse()
            .map_err(|e| {
                GatewayError::invalid_param(
                    "model",
                    format!("model `{model}` does not make a valid URL: {e}"),
                )
            })
    }

    fn request(
        &self,
        uri: http::Uri,
        body: Vec<u8>,
        request_id: &str,
        traceparent: Option<&http::HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, GatewayError> {
        upstream::post(uri, body, &self.headers, request_id, traceparent)
    }

    async fn chat(self: Arc<Self>, call: Call) -> Result<Reply, GatewayError> {
        let native = chat_request(&self.policy, &call, self.safety_settings.as_ref())?;
        let method = if call.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let req = self.request(
            self.uri(&call.upstream_model, method)?,
            native,
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
            Sent::Body(bytes) => {
                let (body, usage) = response::translate(&bytes, &call.requested_model)
                    .map_err(|cause| invalid_response(&self.deployment, cause))?;
                Ok(Reply::Complete {
                    body,
                    usage: Some(usage),
                })
            }
            Sent::Stream(resp, credentials) => {
                let translator = response::GeminiStream::new(
                    &call.requested_model,
                    call.client_wants_usage,
                    self.deployment.clone(),
                );
                Ok(Reply::Stream(translated_stream(
                    resp.into_body(),
                    translator,
                    call.timeout,
                    self.deployment.clone(),
                    credentials,
                )))
            }
        }
    }

    async fn embeddings(self: Arc<Self>, call: Call) -> Result<Reply, GatewayError> {
        let body = self
            .policy
            .apply(&call.body, embed::EMBEDDING_PARAMS, "gemini")?;
        let req = embed::Embeddings::parse(&body)?;
        let model = call
            .upstream_model
            .strip_prefix("models/")
            .unwrap_or(&call.upstream_model);
        let native = req.native_body(model)?;
        let http_req = self.request(
            self.uri(model, "batchEmbedContents")?,
            native,
            &call.request_id,
            call.traceparent.as_ref(),
        )?;
        match send(
            &self.client,
            http_req,
            &self.deployment,
            call.timeout,
            false,
            upstream_error,
        )
        .await?
        {
            Sent::Body(bytes) => {
                let (body, usage) = req
                    .translate(&bytes, &call.requested_model)
                    .map_err(|cause| invalid_response(&self.deployment, cause))?;
                Ok(Reply::Complete {
                    body,
                    usage: Some(usage),
                })
            }
            Sent::Stream(..) => Err(invalid_response(&self.deployment, "unexpected stream")),
        }
    }
}

/// The request's own `safety_settings` (must be a list).
/// The client's chat body as a `generateContent` body: params checked against `policy`, parsed, translated.
/// `default_safety` is the deployment's `safety_settings`, used unless the request has its own.
fn chat_request(
    policy: &ParamPolicy,
    call: &Call,
    default_safety: Option<&Value>,
) -> Result<Vec<u8>, GatewayError> {
    let body = policy.apply(&call.body, CHAT_PARAMS, "gemini")?;
    let chat = ChatRequest::parse(&body)?;
    if call.stream && chat.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_param(
            "n",
            "gemini streams one choice: `n` > 1 is only supported without `stream`",
        ));
    }
    let request_safety = safety_settings(&body)?;
    let safety = request_safety.as_ref().or(default_safety);
    let native = request::build(&chat, safety)?;
    serde_json::to_vec(&native).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Entry points for the fuzz targets (feature `fuzzing`): the same functions the adapter runs, without I/O.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    use super::*;
    use crate::translate::StreamTranslator;

    /// The `generateContent` body for a chat `call`, as [`Inner::chat`] sends it.
    pub(crate) fn chat_body(policy: &ParamPolicy, call: &Call) -> Result<Vec<u8>, GatewayError> {
        chat_request(policy, call, None)
    }

    /// The translator of a `streamGenerateContent?alt=sse` stream into OpenAI chat chunks.
    pub(crate) fn chat_stream(include_usage: bool) -> impl StreamTranslator {
        response::GeminiStream::new("fuzz-model", include_usage, "fuzz".into())
    }
}

fn safety_settings(body: &[u8]) -> Result<Option<Value>, GatewayError> {
    let obj = JsonObject::parse(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let Some(raw) = obj.get("safety_settings").filter(|r| r.get() != "null") else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v @ Value::Array(_)) => Ok(Some(v)),
        _ => Err(GatewayError::invalid_param(
            "safety_settings",
            "`safety_settings` must be a list of {category, threshold}",
        )),
    }
}

/// Percent-encode a path segment: unreserved characters and `@ = ,` stay as they are (legal in a path, and
/// the mock reads knobs from an `@k=v` suffix); `:` is encoded, since it separates the method.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b'=' | b',')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Turn Google's error response (`{"error":{"code","message","status","details"}}`, also as a one-element
/// array, as `streamGenerateContent` without `alt=sse` sends it) into the gateway error.
pub fn upstream_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Envelope {
        One { error: GoogleError },
        Many(Vec<Envelope>),
    }
    #[derive(Deserialize)]
    struct GoogleError {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        details: Vec<Value>,
    }
    let header_retry = translate::retry_after(headers);
    let mut parsed = serde_json::from_slice::<Envelope>(body).ok();
    while let Some(Envelope::Many(mut v)) = parsed {
        parsed = if v.is_empty() {
            None
        } else {
            Some(v.swap_remove(0))
        };
    }
    let Some(Envelope::One { error }) = parsed else {
        return GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
            status: status.as_u16(),
            message: translate::error_text(body, "upstream", status),
            error_type: None,
            param: None,
            code: None,
            retry_after: header_retry,
        }));
    };
    let detail = |kind: &str, field: &str| {
        error.details.iter().find_map(|d| {
            let t = d.get("@type").and_then(Value::as_str)?;
            if t.ends_with(kind) {
                d.get(field).and_then(Value::as_str).map(str::to_string)
            } else {
                None
            }
        })
    };
    let reason = detail("google.rpc.ErrorInfo", "reason");
    let retry_after = header_retry.or_else(|| {
        detail("google.rpc.RetryInfo", "retryDelay")
            .map(|d| d.trim_end_matches('s').to_string())
            .filter(|d| d.parse::<f64>().is_ok())
    });
    let message = error
        .message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("upstream returned {status}"));
    let lower = message.to_ascii_lowercase();
    let mut status = status.as_u16();
    let code = if lower.contains("exceeds the maximum number of tokens")
        || lower.contains("input token count")
    {
        Some("context_length_exceeded".to_string())
    } else if status == 400 && lower.contains("safety") && lower.contains("block") {
        Some("content_policy_violation".to_string())
    } else if reason.as_deref() == Some("API_KEY_INVALID") {
        status = 401;
        Some("invalid_api_key".to_string())
    } else {
        reason
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status,
        message,
        error_type: error.status,
        param: None,
        code,
        retry_after,
    }))
}

#[cfg(test)]
mod tests;
