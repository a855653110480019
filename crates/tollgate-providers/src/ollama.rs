//! Ollama (`ollama/`, `ollama_chat/`) — being written; until then building a deployment of it fails with a clear error.

use tollgate_config::Deployment;
use tollgate_core::GatewayError;

use crate::{BoxFuture, BuildContext, BuildError, Call, Endpoint, Provider, Reply};

pub struct OllamaProvider;

impl OllamaProvider {
    pub fn new(d: &Deployment, _ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        Err(BuildError::Invalid {
            model_name: d.model_name.clone(),
            message: format!("provider `{}` is not built yet", d.provider),
        })
    }
}

impl Provider for OllamaProvider {
    fn name(&self) -> &'static str {
        "ollama"
    }
    fn api_base(&self) -> &str {
        ""
    }
    fn supports(&self, _endpoint: Endpoint) -> bool {
        false
    }
    fn call(&self, _call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        Box::pin(async { Err(GatewayError::Internal("not built".into())) })
    }
}
