//! The Anthropic Messages API over any chat provider: `/v1/messages` requests become OpenAI chat requests,
//! and the answers (complete or streamed) become Messages API answers again.

use std::sync::Arc;

use tollgate_core::GatewayError;

use crate::{BoxFuture, Call, Provider, Reply};

/// Send an Anthropic-format `call` through `provider`'s chat endpoint.
pub fn call_via_chat(
    _provider: Arc<dyn Provider>,
    _call: Call,
) -> BoxFuture<Result<Reply, GatewayError>> {
    Box::pin(async { Err(GatewayError::Internal("not built".into())) })
}
