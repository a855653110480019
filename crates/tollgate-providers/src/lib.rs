//! Provider adapters: the `Provider` trait, the per-deployment registry, and one module per provider.
//! This is the only crate that calls LLM upstreams.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod chat;
pub mod client;
pub mod cohere;
pub mod compat;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod gemini;
pub mod messages;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod sse;
pub mod stream;
pub mod translate;
pub mod upstream;

#[cfg(test)]
mod test_support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tollgate_config::{Deployment, Env};
use tollgate_core::{GatewayError, Usage};

pub use client::{HttpClient, http_client};
pub use stream::{ChunkStream, StreamOutcome};

/// A boxed future, so `Provider` stays object-safe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The endpoints a provider may serve: the OpenAI ones, Anthropic's Messages API (`/v1/messages` and its
/// `count_tokens`) and Cohere-style rerank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic `POST /v1/messages`: the body and the answer are in the Messages API format.
    Messages,
    /// Anthropic `POST /v1/messages/count_tokens`: answers `{"input_tokens": N}`.
    CountTokens,
    /// Cohere-style `POST /v1/rerank`.
    Rerank,
}

impl Endpoint {
    /// The path below an OpenAI-style `api_base` (which ends in `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/messages",
            Endpoint::CountTokens => "/messages/count_tokens",
            Endpoint::Rerank => "/rerank",
        }
    }

    pub fn supports_stream(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Responses
                | Endpoint::Messages
        )
    }

    /// Whether errors on this endpoint are answered in Anthropic's format (`{"type":"error","error":{...}}`).
    pub fn anthropic_format(self) -> bool {
        matches!(self, Endpoint::Messages | Endpoint::CountTokens)
    }
}

/// One upstream call, as the server hands it to a provider. The body is the client's raw JSON object.
#[derive(Debug, Clone)]
pub struct Call {
    pub endpoint: Endpoint,
    /// The client's request body, unchanged.
    pub body: Bytes,
    /// The model name the client asked for; responses report this name.
    pub requested_model: String,
    /// The model name to send upstream (the deployment's, with a wildcard filled in).
    pub upstream_model: String,
    pub stream: bool,
    /// Whether the client itself asked for `stream_options.include_usage`.
    pub client_wants_usage: bool,
    pub request_id: String,
    /// W3C `traceparent` for the upstream (the attempt's span), when tracing samples this request.
    pub traceparent: Option<http::HeaderValue>,
    /// Overall deadline for a non-streaming call, or the time allowed until the response head of a stream.
    pub timeout: Duration,
}

/// What a provider answers.
pub enum Reply {
    /// A complete JSON body in the OpenAI format, `model` already set to the requested name.
    Complete { body: Bytes, usage: Option<Usage> },
    /// An SSE stream in the OpenAI format, forwarded chunk by chunk. `outcome` is filled as it passes.
    Stream(ChunkStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Complete { body, usage } => f
                .debug_struct("Complete")
                .field("body_len", &body.len())
                .field("usage", usage)
                .finish(),
            Reply::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A deployment's adapter to its upstream. One instance per deployment, built once at (re)load.
pub trait Provider: Send + Sync {
    /// The provider's name as in LiteLLM's `provider/model` prefix.
    fn name(&self) -> &'static str;
    /// The base URL requests go to, for the `x-litellm-model-api-base` header (never contains secrets).
    fn api_base(&self) -> &str;
    /// Whether `call` takes this endpoint natively. [`call`] bridges `Messages` / `CountTokens` over
    /// `ChatCompletions` for providers that do not.
    fn supports(&self, endpoint: Endpoint) -> bool;
    /// Send one call. Rewriting happens before the returned future, so it owns everything it needs.
    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>>;
}

/// Send `call` to `provider`: natively when it takes the endpoint, through the chat bridge for the Anthropic
/// Messages API, else a 400 naming the provider.
pub fn call(provider: &Arc<dyn Provider>, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
    if provider.supports(call.endpoint) {
        return provider.call(call);
    }
    match call.endpoint {
        Endpoint::Messages | Endpoint::CountTokens
            if provider.supports(Endpoint::ChatCompletions) =>
        {
            messages::call_via_chat(provider.clone(), call)
        }
        e => {
            let err = GatewayError::InvalidRequest {
                message: format!(
                    "provider `{}` does not support {} (model={})",
                    provider.name(),
                    e.path(),
                    call.requested_model
                ),
                param: Some("model".into()),
                code: Some("unsupported_endpoint".into()),
            };
            Box::pin(async move { Err(err) })
        }
    }
}

/// Why a deployment's adapter could not be built (reported at start-up with the deployment's name).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "deployment `{model_name}`: provider `{provider}` is not supported yet (supported: {supported})"
    )]
    Unsupported {
        model_name: String,
        provider: String,
        supported: String,
    },
    #[error("deployment `{model_name}`: {message}")]
    Invalid { model_name: String, message: String },
}

impl BuildError {
    /// `d`'s settings cannot make a working adapter; `message` says why.
    pub fn invalid(d: &Deployment, message: String) -> BuildError {
        BuildError::Invalid {
            model_name: d.model_name.clone(),
            message,
        }
    }
}

/// What building an adapter needs besides the deployment.
#[derive(Clone, Copy)]
pub struct BuildContext<'a> {
    pub env: &'a Env,
    pub client: &'a HttpClient,
    /// `litellm_settings.drop_params`.
    pub drop_params: bool,
}

/// The providers this build speaks, by LiteLLM prefix.
pub fn supported() -> Vec<&'static str> {
    let mut v = vec![
        "openai",
        "openai_compatible",
        "custom_openai",
        "azure",
        "anthropic",
        "gemini",
        "bedrock",
        "ollama",
        "ollama_chat",
        "cohere",
        "mock",
    ];
    v.extend(compat::FAMILY.iter().map(|f| f.name));
    v
}

/// Build the adapter for one deployment.
pub fn build(
    deployment: &Deployment,
    ctx: &BuildContext<'_>,
) -> Result<Arc<dyn Provider>, BuildError> {
    // `mock_response` on any deployment answers locally, as LiteLLM's `mock_response` does.
    if deployment.mock_response.is_some() {
        return Ok(Arc::new(mock::MockProvider::new(deployment)));
    }
    match deployment.provider.as_str() {
        "mock" => Ok(Arc::new(mock::MockProvider::new(deployment))),
        "openai" | "openai_compatible" | "custom_openai" => {
            Ok(Arc::new(openai::OpenAiProvider::new(deployment, ctx)?))
        }
        name if compat::family(name).is_some() => {
            Ok(Arc::new(openai::OpenAiProvider::new(deployment, ctx)?))
        }
        "azure" => Ok(Arc::new(azure::AzureProvider::new(deployment, ctx)?)),
        "anthropic" => Ok(Arc::new(anthropic::AnthropicProvider::new(
            deployment, ctx,
        )?)),
        "gemini" => Ok(Arc::new(gemini::GeminiProvider::new(deployment, ctx)?)),
        "bedrock" => Ok(Arc::new(bedrock::BedrockProvider::new(deployment, ctx)?)),
        "ollama" | "ollama_chat" => Ok(Arc::new(ollama::OllamaProvider::new(deployment, ctx)?)),
        "cohere" => Ok(Arc::new(cohere::CohereProvider::new(deployment, ctx)?)),
        other => Err(BuildError::Unsupported {
            model_name: deployment.model_name.clone(),
            provider: other.to_string(),
            supported: supported().join(", "),
        }),
    }
}
