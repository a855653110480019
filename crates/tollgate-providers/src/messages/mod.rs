//! The Anthropic Messages API over any chat provider: `/v1/messages` requests become OpenAI chat requests,
//! and the answers (complete or streamed) become Messages API answers again; `/v1/messages/count_tokens` is
//! estimated locally.
//!
//! What is translated (Anthropic → OpenAI chat):
//! - `system` (a string or text blocks) → a first `system` message;
//! - user turns: text, `image` (base64 → a data URL, url → the URL), `document` (base64 → a `file` part, text →
//!   a text part), `tool_result` → `tool` messages placed before the rest of the turn (`is_error` prefixes
//!   the result with `Error: `; images in a result go into the turn's user message);
//! - assistant turns: text, `tool_use` → `tool_calls` (arguments = the input's JSON text), `thinking` /
//!   `redacted_thinking` → LiteLLM's `thinking_blocks` (only for upstreams that take them);
//! - `tools` → function tools (Anthropic's own tool types are a 400), `tool_choice` auto/any/tool/none →
//!   auto/required/{function}/none, `disable_parallel_tool_use` → `parallel_tool_calls: false`;
//! - `max_tokens`, `stop_sequences` → `stop`, `temperature`, `top_p`, `top_k`, `metadata.user_id` → `user`;
//! - `thinking`: passed on where the upstream understands it (translating providers, Claude models), else
//!   LiteLLM's `reasoning_effort` for the budget; `output_format` / `output_config.format` → `response_format`.
//!
//! Unknown top-level fields are a 400 naming the field; `model`, `messages` and `max_tokens` are required.

mod request;
mod response;
mod stream;

use std::sync::Arc;

use bytes::Bytes;
use tollgate_core::GatewayError;

use crate::{BoxFuture, Call, Endpoint, Provider, Reply};

use request::{Kind, Target};

/// Send an Anthropic-format `call` (`Endpoint::Messages` or `Endpoint::CountTokens`) through `provider`'s chat
/// endpoint, answering in the Messages API format. `Reply::Complete.usage` and the stream's outcome keep the
/// chat call's OpenAI-semantics usage.
pub fn call_via_chat(
    provider: Arc<dyn Provider>,
    call: Call,
) -> BoxFuture<Result<Reply, GatewayError>> {
    if call.endpoint == Endpoint::CountTokens {
        let result = count_tokens(&call.body);
        return Box::pin(async move { result });
    }
    let chat = match chat_call(provider.name(), &call) {
        Ok(c) => c,
        Err(e) => return Box::pin(async move { Err(e) }),
    };
    let model = call.requested_model;
    let fut = provider.call(chat);
    Box::pin(async move {
        match fut.await? {
            Reply::Complete { body, usage } => {
                let (msg, usage) = response::to_message(&body, usage, &model).map_err(|cause| {
                    GatewayError::UpstreamInvalid {
                        deployment: model.clone(),
                        cause,
                    }
                })?;
                if call.stream {
                    // The provider answered a stream request with a whole body: stream it in one piece.
                    let mut out = Vec::new();
                    stream::message_events(&msg, &mut out);
                    return Ok(Reply::Stream(stream::ready_stream(out, usage)));
                }
                let body =
                    serde_json::to_vec(&msg).map_err(|e| GatewayError::Internal(e.to_string()))?;
                Ok(Reply::Complete {
                    body: Bytes::from(body),
                    usage,
                })
            }
            Reply::Stream(s) => Ok(Reply::Stream(stream::translate_stream(s, &model))),
        }
    })
}

/// The chat-completions call for a Messages API `call`.
fn chat_call(provider: &str, call: &Call) -> Result<Call, GatewayError> {
    let req = request::parse(&call.body, Kind::Messages)?;
    let target = Target {
        model: &call.upstream_model,
        anthropic_extras: request::takes_anthropic_extras(provider, &call.upstream_model),
        stream: call.stream,
    };
    let body = request::to_chat(req, target)?;
    let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok(Call {
        endpoint: Endpoint::ChatCompletions,
        body: Bytes::from(body),
        requested_model: call.requested_model.clone(),
        upstream_model: call.upstream_model.clone(),
        stream: call.stream,
        // The bridge asks for the usage chunk itself, and needs it: it becomes `message_delta.usage`.
        client_wants_usage: true,
        request_id: call.request_id.clone(),
        traceparent: call.traceparent.clone(),
        timeout: call.timeout,
    })
}

/// `/v1/messages/count_tokens` for providers without the Messages API: `{"input_tokens": N}` where N is an
/// ESTIMATE, not the model's tokenizer count — `ceil(characters of all the prompt's text / 4)` (at least 1),
/// counting the system prompt, message text, tool inputs and results, thinking text, and tool names,
/// descriptions and input schemas (as JSON text); images are not counted. Native Anthropic deployments are
/// asked upstream and give the real count.
pub fn count_tokens(body: &[u8]) -> Result<Reply, GatewayError> {
    let req = request::parse(body, Kind::CountTokens)?;
    let chars = request::prompt_chars(&req) as u64;
    let tokens = chars.div_ceil(4).max(1);
    let body = serde_json::to_vec(&serde_json::json!({ "input_tokens": tokens }))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok(Reply::Complete {
        body: Bytes::from(body),
        usage: None,
    })
}

/// Entry points for the fuzz targets (feature `fuzzing`): the same functions the bridge runs, without I/O.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    use super::*;

    pub(crate) use super::stream::Translator;

    /// The chat-completions body the bridge sends to a `provider` deployment for a Messages API `call`.
    pub(crate) fn chat_body(provider: &str, call: &Call) -> Result<Bytes, GatewayError> {
        chat_call(provider, call).map(|c| c.body)
    }

    /// The translator of an OpenAI chat stream into Anthropic Messages events.
    pub(crate) fn stream() -> Translator {
        stream::Translator::new("fuzz-model")
    }
}

#[cfg(test)]
mod tests;
