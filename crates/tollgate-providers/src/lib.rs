//! Provider adapters: the `Provider` trait, the per-deployment registry, and one module per provider.
//! This is the only crate that calls LLM upstreams.

pub mod client;
pub mod mock;
pub mod openai;
pub mod sse;
pub mod stream;

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

/// The OpenAI-compatible endpoints a provider may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
}

impl Endpoint {
    /// The path below an OpenAI `api_base` (which ends in `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
        }
    }

    pub fn supports_stream(self) -> bool {
        !matches!(self, Endpoint::Embeddings)
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
    /// Send one call. Rewriting happens before the returned future, so it owns everything it needs.
    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>>;
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

/// The providers this build speaks, by LiteLLM prefix.
pub const SUPPORTED: &[&str] = &[
    "openai",
    "openai_compatible",
    "hosted_vllm",
    "custom_openai",
    "mock",
];

/// Build the adapter for one deployment.
pub fn build(
    deployment: &Deployment,
    env: &Env,
    client: &HttpClient,
) -> Result<Arc<dyn Provider>, BuildError> {
    // `mock_response` on any deployment answers locally, as LiteLLM's `mock_response` does.
    if deployment.mock_response.is_some() {
        return Ok(Arc::new(mock::MockProvider::new(deployment)));
    }
    match deployment.provider.as_str() {
        "mock" => Ok(Arc::new(mock::MockProvider::new(deployment))),
        "openai" | "openai_compatible" | "hosted_vllm" | "custom_openai" => Ok(Arc::new(
            openai::OpenAiProvider::new(deployment, env, client.clone())?,
        )),
        other => Err(BuildError::Unsupported {
            model_name: deployment.model_name.clone(),
            provider: other.to_string(),
            supported: SUPPORTED.join(", "),
        }),
    }
}
