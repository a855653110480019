//! AWS Bedrock (`bedrock/`): chat through the Converse / ConverseStream API and embeddings through
//! InvokeModel (Titan, Cohere), signed with SigV4 (or a Bedrock API key), and Bedrock's errors.
//!
//! The deployment's model is a model id (`anthropic.claude-3-5-sonnet-20240620-v1:0`), an inference profile
//! (`us.anthropic...`), or an ARN; `converse/<model>` means the same (as does LiteLLM's `invoke/<model>`,
//! which is answered through Converse too). Credentials: `aws_access_key_id` / `aws_secret_access_key` /
//! `aws_session_token` / `aws_region_name` in `litellm_params`, else the `AWS_*` environment variables; or
//! `api_key` (env `AWS_BEARER_TOKEN_BEDROCK`), a Bedrock API key sent as `Authorization: Bearer`.

pub mod converse;
pub mod embed;
pub mod eventstream;
pub mod sigv4;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use tollgate_config::{Deployment, Secret};
use tollgate_core::url::public_url;
use tollgate_core::{GatewayError, UpstreamFailure};

use crate::chat::ChatRequest;
use crate::translate::{self, ParamPolicy, Sent, param_str, send, translated_stream};
use crate::{
    BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply, upstream,
};
use sigv4::Credentials;

/// The SigV4 service name of the Bedrock runtime.
pub const SERVICE: &str = "bedrock";

/// The model families whose request fields differ (thinking, `top_k`, embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Anthropic,
    /// Amazon Nova (v1).
    Nova,
    /// Amazon Nova 2 (reasoning through `reasoningConfig`).
    Nova2,
    TitanEmbed,
    CohereEmbed,
    Other,
}

/// Cross-region inference profile prefixes (`us.anthropic.claude...`).
const PROFILE_PREFIXES: &[&str] = &[
    "us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.",
];

/// The foundation model id inside a model id, inference profile id or ARN.
pub fn base_model(model_id: &str) -> &str {
    let id = if model_id.starts_with("arn:") {
        model_id.rsplit('/').next().unwrap_or(model_id)
    } else {
        model_id
    };
    PROFILE_PREFIXES
        .iter()
        .find_map(|p| id.strip_prefix(p))
        .unwrap_or(id)
}

impl Family {
    pub fn of(model_id: &str) -> Family {
        let base = base_model(model_id);
        if base.starts_with("anthropic.") {
            Family::Anthropic
        } else if base.starts_with("amazon.nova-2") {
            Family::Nova2
        } else if base.starts_with("amazon.nova") {
            Family::Nova
        } else if base.starts_with("amazon.titan-embed") {
            Family::TitanEmbed
        } else if base.starts_with("cohere.embed") {
            Family::CohereEmbed
        } else {
            Family::Other
        }
    }
}

/// The model id to put in the URL: the deployment's model without LiteLLM's route prefix.
pub fn model_id(upstream_model: &str) -> &str {
    upstream_model
        .strip_prefix("converse/")
        .or_else(|| upstream_model.strip_prefix("invoke/"))
        .unwrap_or(upstream_model)
}

/// `/model/{modelId}/{operation}`, the model id URI-encoded (`:` as `%3A`, an ARN's `/` as `%2F`).
pub fn model_path(model_id: &str, operation: &str) -> String {
    let mut p = String::with_capacity(model_id.len() + 32);
    p.push_str("/model/");
    sigv4::uri_encode(model_id, &mut p);
    p.push('/');
    p.push_str(operation);
    p
}

/// How requests are authenticated.
enum Auth {
    SigV4 { creds: Credentials, region: String },
    Bearer(HeaderValue),
}

/// An adapter for one Bedrock deployment.
pub struct BedrockProvider {
    inner: Arc<Inner>,
}

struct Inner {
    deployment: String,
    /// `scheme://authority` of the endpoint.
    origin: String,
    /// The endpoint's path prefix (usually empty), without a trailing `/`.
    base_path: String,
    public_base: String,
    /// The `Host` header (and the signed `host`): the authority without a default port.
    host: HeaderValue,
    auth: Auth,
    extra_headers: HeaderMap,
    client: HttpClient,
    policy: ParamPolicy,
    fixed: converse::Fixed,
}

impl std::fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.inner.auth {
            Auth::SigV4 { creds, region } => format!("sigv4 {creds:?} {region}"),
            Auth::Bearer(_) => "bearer [redacted]".to_string(),
        };
        f.debug_struct("BedrockProvider")
            .field("deployment", &self.inner.deployment)
            .field("api_base", &self.inner.public_base)
            .field("auth", &auth)
            .finish()
    }
}

/// litellm_params keys for credential sources this build does not implement.
const UNSUPPORTED_AUTH: &[&str] = &[
    "aws_role_name",
    "aws_profile_name",
    "aws_web_identity_token",
    "aws_session_name",
    "aws_sts_endpoint",
];

/// The region in `bedrock-runtime.{region}.amazonaws.com` or in a model ARN.
fn region_from(base: Option<&str>, model: &str) -> Option<String> {
    if let Some(host) = base
        .and_then(|b| b.split_once("://"))
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(rest))
        && let Some(rest) = ["bedrock-runtime.", "bedrock-runtime-fips."]
            .iter()
            .find_map(|label| host.find(label).map(|i| &host[i + label.len()..]))
        && let Some((region, _)) = rest.split_once('.')
    {
        return Some(region.to_string());
    }
    let arn = model_id(model);
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("bedrock"), Some(region)) if !region.is_empty() => {
            Some(region.to_string())
        }
        _ => None,
    }
}

impl BedrockProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::invalid(d, message);
        let env = |name: &str| ctx.env.get(name).filter(|v| !v.is_empty());
        let param = |key: &str| param_str(d, key).map(str::to_string);
        if let Some(key) = UNSUPPORTED_AUTH
            .iter()
            .find(|k| d.extra_params.contains_key(**k))
        {
            return Err(invalid(format!(
                "bedrock: `{key}` is not supported; give static credentials \
                 (`aws_access_key_id` / `aws_secret_access_key` [/ `aws_session_token`]) or a Bedrock API key"
            )));
        }
        let base_from_config = d
            .api_base
            .clone()
            .or_else(|| param("aws_bedrock_runtime_endpoint"))
            .or_else(|| env("AWS_BEDROCK_RUNTIME_ENDPOINT"));
        let region = param("aws_region_name")
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| env("AWS_REGION_NAME"))
            .or_else(|| region_from(base_from_config.as_deref(), &d.model));
        let need_region = || {
            invalid(
                "bedrock needs an AWS region: set `aws_region_name` in litellm_params \
                 (or AWS_REGION / AWS_DEFAULT_REGION)"
                    .to_string(),
            )
        };

        // Credentials: a Bedrock API key, else the deployment's access keys, else the environment's.
        let bearer = |key: &str| {
            let v = upstream::sensitive(&format!("Bearer {key}"), "bedrock: the API key")
                .map_err(invalid)?;
            Ok::<_, BuildError>(Auth::Bearer(v))
        };
        let keys = |id: Option<String>,
                    secret: Option<String>,
                    token: Option<String>,
                    from: &str| match (id, secret) {
            (Some(id), Some(secret)) => Ok(Some(Credentials {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: token.map(Secret::new),
            })),
            (Some(_), None) => Err(invalid(format!(
                "bedrock: {from} has an access key id but no secret access key"
            ))),
            (None, Some(_)) => Err(invalid(format!(
                "bedrock: {from} has a secret access key but no access key id"
            ))),
            (None, None) => Ok(None),
        };
        let api_key = d
            .api_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .filter(|k| !k.is_empty());
        let auth = if let Some(key) = api_key {
            bearer(&key)?
        } else if let Some(creds) = keys(
            param("aws_access_key_id"),
            param("aws_secret_access_key"),
            param("aws_session_token"),
            "litellm_params (`aws_access_key_id` / `aws_secret_access_key`)",
        )? {
            Auth::SigV4 {
                creds,
                region: region.clone().ok_or_else(need_region)?,
            }
        } else if let Some(key) = env("AWS_BEARER_TOKEN_BEDROCK") {
            bearer(&key)?
        } else if let Some(creds) = keys(
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY"),
            env("AWS_SESSION_TOKEN"),
            "the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
        )? {
            Auth::SigV4 {
                creds,
                region: region.clone().ok_or_else(need_region)?,
            }
        } else {
            return Err(invalid(
                "bedrock needs AWS credentials: set `aws_access_key_id` and `aws_secret_access_key` \
                 in litellm_params (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or a Bedrock API key \
                 (`api_key` or AWS_BEARER_TOKEN_BEDROCK)"
                    .to_string(),
            ));
        };

        let base = match base_from_config {
            Some(b) => b,
            None => format!(
                "https://bedrock-runtime.{}.amazonaws.com",
                region.as_deref().ok_or_else(need_region)?
            ),
        };
        let base = base.trim_end_matches('/').to_string();
        let public_base = public_url(&base);
        if base.contains(['?', '#']) {
            return Err(invalid(format!(
                "bedrock: api_base `{public_base}` must not have a query string"
            )));
        }
        let uri: http::Uri = base.parse().map_err(|e| {
            invalid(format!(
                "bedrock: api_base `{public_base}` is not a valid URL: {e}"
            ))
        })?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(invalid(format!(
                "bedrock: api_base `{public_base}` must be an absolute http(s) URL"
            )));
        };
        if !matches!(scheme, "http" | "https") {
            return Err(invalid(format!(
                "bedrock: api_base `{public_base}` must start with http:// or https://"
            )));
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(p) if p != default_port => format!("{}:{p}", authority.host()),
            _ => authority.host().to_string(),
        };
        let host = HeaderValue::from_str(&host)
            .map_err(|_| invalid(format!("bedrock: api_base `{public_base}` has a bad host")))?;
        let origin = format!("{scheme}://{}", authority.as_str());
        let base_path = uri.path().trim_end_matches('/').to_string();

        let mut extra_headers = HeaderMap::new();
        upstream::insert_extra_headers(&mut extra_headers, &d.extra_headers).map_err(invalid)?;
        let fixed = converse::Fixed {
            guardrail_config: d.extra_params.get("guardrailConfig").cloned(),
            performance_config: d.extra_params.get("performanceConfig").cloned(),
        };
        Ok(BedrockProvider {
            inner: Arc::new(Inner {
                deployment: d.model_name.clone(),
                origin,
                base_path,
                public_base,
                host,
                auth,
                extra_headers,
                client: ctx.client.clone(),
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
                fixed,
            }),
        })
    }
}

impl Provider for BedrockProvider {
    fn name(&self) -> &'static str {
        "bedrock"
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
                Endpoint::Embeddings => embed::call(&inner, call).await,
                e => Err(upstream::not_served("bedrock", e)),
            }
        })
    }
}

impl Inner {
    /// A signed POST of `body` to `path` (below the endpoint).
    fn request(
        &self,
        path: &str,
        body: Vec<u8>,
        accept: &'static str,
    ) -> Result<Request<Full<Bytes>>, GatewayError> {
        let full_path = format!("{}{path}", self.base_path);
        let uri = format!("{}{full_path}", self.origin);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| GatewayError::Internal(format!("building the Bedrock request: {e}")))?;
        let h = req.headers_mut();
        h.clone_from(&self.extra_headers);
        h.insert(HOST, self.host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        match &self.auth {
            Auth::Bearer(v) => {
                h.insert(AUTHORIZATION, v.clone());
            }
            Auth::SigV4 { creds, region } => {
                let amz_date = sigv4::amz_date_now();
                let payload_hash = sigv4::sha256_hex(&body);
                let host = self.host.to_str().unwrap_or_default();
                let token = creds.session_token.as_ref().map(Secret::expose);
                let mut signed: Vec<(&str, &str)> = vec![
                    ("host", host),
                    ("x-amz-content-sha256", &payload_hash),
                    ("x-amz-date", &amz_date),
                ];
                if let Some(t) = token {
                    signed.push(("x-amz-security-token", t));
                }
                let authorization = sigv4::authorization(
                    creds,
                    &sigv4::Request {
                        method: "POST",
                        path: &full_path,
                        query: "",
                        headers: &signed,
                        payload_hash: &payload_hash,
                        region,
                        service: SERVICE,
                        amz_date: &amz_date,
                    },
                );
                let value = |s: &str| {
                    HeaderValue::from_str(s).map_err(|_| {
                        GatewayError::Internal("a signed header is not a valid header value".into())
                    })
                };
                h.insert(HeaderName::from_static("x-amz-date"), value(&amz_date)?);
                h.insert(
                    HeaderName::from_static("x-amz-content-sha256"),
                    value(&payload_hash)?,
                );
                if let Some(t) = token {
                    let mut v = value(t)?;
                    v.set_sensitive(true);
                    h.insert(HeaderName::from_static("x-amz-security-token"), v);
                }
                let mut v = value(&authorization)?;
                v.set_sensitive(true);
                h.insert(AUTHORIZATION, v);
            }
        }
        *req.body_mut() = Full::new(Bytes::from(body));
        Ok(req)
    }

    async fn chat(self: Arc<Self>, call: Call) -> Result<Reply, GatewayError> {
        let model = model_id(&call.upstream_model);
        let t = chat_request(&self.policy, &call, &self.fixed)?;
        let (operation, accept) = if call.stream {
            ("converse-stream", "application/vnd.amazon.eventstream")
        } else {
            ("converse", "application/json")
        };
        let mut request = self.request(&model_path(model, operation), t.body, accept)?;
        // Not a signed header: adding it does not change the SigV4 signature.
        if let Some(tp) = &call.traceparent {
            request
                .headers_mut()
                .insert(HeaderName::from_static("traceparent"), tp.clone());
        }
        match send(
            &self.client,
            request,
            &self.deployment,
            call.timeout,
            call.stream,
            parse_error,
        )
        .await?
        {
            Sent::Stream(resp, credentials) => {
                let state = converse::StreamState::new(
                    &call.requested_model,
                    call.client_wants_usage,
                    t.json_mode,
                    &self.deployment,
                );
                Ok(Reply::Stream(translated_stream(
                    resp.into_body(),
                    state,
                    call.timeout,
                    self.deployment.clone(),
                    credentials,
                )))
            }
            Sent::Body(bytes) => {
                let (body, usage) = converse::from_converse(
                    &bytes,
                    &call.requested_model,
                    t.json_mode,
                    &self.deployment,
                )?;
                Ok(Reply::Complete {
                    body: Bytes::from(body),
                    usage: Some(usage),
                })
            }
        }
    }
}

/// Whether a Bedrock error message says the prompt does not fit the model.
fn is_context_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "input is too long",
        "too many input tokens",
        "prompt is too long",
        "maximum context length",
        "context window",
        "input token count exceeds",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Whether a Bedrock error message is a content-policy refusal.
fn is_content_policy_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "content filter",
        "content policy",
        "content filtering policy",
        "blocked by guardrail",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The client's chat body as a Converse body: params checked against `policy`, parsed, translated for the
/// model family of `call.upstream_model`.
pub(crate) fn chat_request(
    policy: &ParamPolicy,
    call: &Call,
    fixed: &converse::Fixed,
) -> Result<converse::Translated, GatewayError> {
    let body = policy.apply(&call.body, converse::SUPPORTED_PARAMS, "bedrock")?;
    let req = ChatRequest::parse(&body)?;
    let model = model_id(&call.upstream_model);
    converse::to_converse(&req, Family::of(model), policy.drop, fixed)
}

/// An upstream failure with Bedrock's error type and the codes the router reads.
pub(crate) fn failure(
    status: u16,
    error_type: Option<&str>,
    message: String,
    retry_after: Option<String>,
) -> GatewayError {
    let code = if is_context_error(&message) {
        Some("context_length_exceeded".to_string())
    } else if is_content_policy_error(&message) {
        Some("content_policy_violation".to_string())
    } else {
        None
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status,
        message,
        error_type: error_type.map(str::to_string),
        param: None,
        code,
        retry_after,
    }))
}

/// `{"message": ...}` (or `Message`) of a Bedrock error body.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["message", "Message"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .map(str::to_string)
}

/// A Bedrock error response: status kept, `error_type` from `x-amzn-errortype` (`ValidationException:...`)
/// or the body's `__type`, the message from the body.
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    let from_header = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty());
    let from_body = || {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let t = v.get("__type")?.as_str()?;
        Some(t.rsplit('#').next().unwrap_or(t).to_string())
    };
    let error_type = from_header.or_else(from_body);
    let message =
        error_message(body).unwrap_or_else(|| translate::error_text(body, "Bedrock", status));
    let retry_after = translate::retry_after(headers);
    failure(status.as_u16(), error_type.as_deref(), message, retry_after)
}

/// An exception message of an event stream (`:exception-type`, payload `{"message": ...}`).
pub(crate) fn exception_error(kind: &str, payload: &[u8]) -> GatewayError {
    let status = match kind {
        "throttlingException" => 429,
        "validationException" => 400,
        "accessDeniedException" => 403,
        "modelTimeoutException" => 408,
        "serviceUnavailableException" => 503,
        _ => 500,
    };
    let message = error_message(payload).unwrap_or_else(|| format!("Bedrock stream {kind}"));
    failure(status, Some(kind), message, None)
}

#[cfg(test)]
mod tests;
