//! An OpenAI `chat.completion.chunk` SSE stream turned into Anthropic's Messages stream events, chunk by chunk:
//! `message_start`, `ping`, one `content_block_start` / `content_block_delta`... / `content_block_stop` per
//! thinking, text or tool-use block, then `message_delta` (stop reason and usage) and `message_stop`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tollgate_core::{GatewayError, UpstreamFailure, Usage};

use super::response::{
    AnthropicUsage, Message, OutBlock, new_message_id, stop_reason, thinking_block, tool_use_id,
};
use crate::chat::push_event;
use crate::sse::{SseDecoder, SseError, SseEvent};
use crate::stream::{ChunkStream, StreamOutcome};

/// The block being streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call: its OpenAI `index` and id.
    Tool {
        index: u32,
        id: String,
    },
}

/// Decodes the chat chunk stream and writes the Anthropic events.
pub(crate) struct Translator {
    model: String,
    id: String,
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    started: bool,
    open: Option<(u32, Open)>,
    next_index: u32,
    /// OpenAI indexes of the tool calls started so far.
    tools_seen: Vec<u32>,
    finish: Option<String>,
    usage: Option<Usage>,
    /// `message_stop` (or an error event) was written: nothing more is.
    pub done: bool,
    /// An error event was written.
    pub failed: bool,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorObj>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    thinking_blocks: Option<Vec<Value>>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ErrorObj {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

impl Translator {
    pub fn new(model: &str) -> Translator {
        Translator {
            model: model.to_string(),
            id: new_message_id(),
            decoder: SseDecoder::new(),
            events: Vec::new(),
            started: false,
            open: None,
            next_index: 0,
            tools_seen: Vec::new(),
            finish: None,
            usage: None,
            done: false,
            failed: false,
        }
    }

    /// Take the next bytes of the chat stream (any split); append the Anthropic events to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>, outcome: &StreamOutcome) {
        let decoded = self.decoder.push(bytes, &mut self.events);
        self.drain(out, outcome);
        if let Err(e) = decoded {
            self.undecodable(&e, out, outcome);
        }
    }

    /// The chat stream ended: finish the message if it is not finished yet.
    pub fn end(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) {
        let decoded = self.decoder.finish(&mut self.events);
        self.drain(out, outcome);
        if let Err(e) = decoded {
            self.undecodable(&e, out, outcome);
        }
        if !self.done {
            self.finalize(out);
        }
    }

    /// The chat stream could not be decoded (an event over the decoder's limit): an error event, unless
    /// the message already ended; the stream ends there.
    fn undecodable(&mut self, e: &SseError, out: &mut Vec<u8>, outcome: &StreamOutcome) {
        if self.done {
            return;
        }
        let err = GatewayError::Internal(format!("decoding the chat stream: {e}"));
        outcome.set_failure(&err);
        write_error(&err, out);
        self.done = true;
        self.failed = true;
    }

    fn drain(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) {
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            if self.done {
                break;
            }
            self.event(ev, out, outcome);
        }
        self.events = events;
        self.events.clear();
    }

    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>, outcome: &StreamOutcome) {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.finalize(out);
            return;
        }
        let chunk: Chunk<'_> = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(target: "tollgate::messages", error = %e, "skipping a chat stream event that is not a chunk");
                return;
            }
        };
        if let Some(err) = chunk.error {
            self.error(err, out, outcome);
            return;
        }
        self.start(out);
        if let Some(choice) = chunk.choices.into_iter().next() {
            self.delta(choice.delta, out);
            if let Some(f) = choice.finish_reason {
                self.close(out);
                self.finish = Some(f);
            }
        }
        if let Some(u) = chunk.usage.and_then(|u| Usage::from_json(u.get())) {
            self.usage = Some(u);
        }
    }

    /// `message_start` and a `ping`, before the first block.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        push_event(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
            out,
        );
        push_event("ping", &json!({"type": "ping"}), out);
    }

    fn delta(&mut self, d: Delta, out: &mut Vec<u8>) {
        // Thinking first (it precedes the text of the same turn), then text, then tool calls.
        let reasoning = d
            .reasoning_content
            .or(d.reasoning)
            .filter(|r| !r.is_empty());
        let has_reasoning_text = reasoning.is_some();
        if let Some(r) = reasoning {
            self.ensure(
                Open::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            );
            self.block_delta(json!({"type": "thinking_delta", "thinking": r}), out);
        }
        for b in d.thinking_blocks.unwrap_or_default() {
            match thinking_block(&b) {
                Some(OutBlock::Thinking {
                    thinking,
                    signature,
                }) => {
                    // LiteLLM streams the text as `reasoning_content` and repeats it here: use it once.
                    if !has_reasoning_text && !thinking.is_empty() {
                        self.ensure(
                            Open::Thinking,
                            json!({"type": "thinking", "thinking": "", "signature": ""}),
                            out,
                        );
                        self.block_delta(
                            json!({"type": "thinking_delta", "thinking": thinking}),
                            out,
                        );
                    }
                    if !signature.is_empty() {
                        self.ensure(
                            Open::Thinking,
                            json!({"type": "thinking", "thinking": "", "signature": ""}),
                            out,
                        );
                        self.block_delta(
                            json!({"type": "signature_delta", "signature": signature}),
                            out,
                        );
                    }
                }
                Some(OutBlock::RedactedThinking { data }) => {
                    self.close(out);
                    self.open_block(
                        Open::Thinking,
                        json!({"type": "redacted_thinking", "data": data}),
                        out,
                    );
                    self.close(out);
                }
                _ => {}
            }
        }
        let text = d
            .content
            .filter(|t| !t.is_empty())
            .or(d.refusal.filter(|t| !t.is_empty()));
        if let Some(text) = text {
            self.ensure(Open::Text, json!({"type": "text", "text": ""}), out);
            self.block_delta(json!({"type": "text_delta", "text": text}), out);
        }
        for tc in d.tool_calls.unwrap_or_default() {
            self.tool_call(tc, out);
        }
    }

    fn tool_call(&mut self, tc: ToolCallDelta, out: &mut Vec<u8>) {
        let current = match &self.open {
            Some((_, Open::Tool { index, id })) => Some((*index, id.clone())),
            _ => None,
        };
        let index = tc.index.or(current.as_ref().map(|(i, _)| *i)).unwrap_or(0);
        let new_id = tc.id.filter(|id| !id.is_empty());
        let continues = match (&current, &new_id) {
            (Some((i, id)), Some(new)) => *i == index && id == new,
            (Some((i, _)), None) => *i == index,
            (None, _) => false,
        };
        let (name, args) = match tc.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if !continues {
            if new_id.is_none() && self.tools_seen.contains(&index) {
                // Arguments for a call whose block is already closed: Anthropic cannot reopen it.
                tracing::debug!(target: "tollgate::messages", index, "dropping arguments of a closed tool call");
                return;
            }
            self.close(out);
            self.tools_seen.push(index);
            let id = tool_use_id(new_id.as_deref().unwrap_or(""));
            let start = json!({"type": "tool_use", "id": id, "name": name.unwrap_or_default(), "input": {}});
            self.open_block(
                Open::Tool {
                    index,
                    id: new_id.unwrap_or(id),
                },
                start,
                out,
            );
        }
        if let Some(args) = args.filter(|a| !a.is_empty()) {
            self.block_delta(
                json!({"type": "input_json_delta", "partial_json": args}),
                out,
            );
        }
    }

    /// Make sure a block of `kind` is open (closing another kind first).
    fn ensure(&mut self, kind: Open, start: Value, out: &mut Vec<u8>) {
        if self.open.as_ref().is_some_and(|(_, k)| *k == kind) {
            return;
        }
        self.close(out);
        self.open_block(kind, start, out);
    }

    fn open_block(&mut self, kind: Open, start: Value, out: &mut Vec<u8>) {
        let index = self.next_index;
        self.next_index += 1;
        push_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
            out,
        );
        self.open = Some((index, kind));
    }

    fn block_delta(&mut self, delta: Value, out: &mut Vec<u8>) {
        let Some((index, _)) = &self.open else { return };
        push_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            out,
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            push_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
                out,
            );
        }
    }

    /// Close the open block, then `message_delta` (stop reason, usage) and `message_stop`.
    fn finalize(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        self.done = true;
        let reason = stop_reason(self.finish.as_deref(), !self.tools_seen.is_empty());
        let usage = self
            .usage
            .as_ref()
            .map(AnthropicUsage::from_openai)
            .unwrap_or_default();
        push_event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": usage,
            }),
            out,
        );
        push_event("message_stop", &json!({"type": "message_stop"}), out);
    }

    /// The chat stream's error event as Anthropic's `error` event; the stream ends there. The gateway's own
    /// failure (kept in `outcome`) gives the type; an upstream's in-band error is recorded as the failure.
    fn error(&mut self, err: ErrorObj, out: &mut Vec<u8>, outcome: &StreamOutcome) {
        let failure = outcome.failure().unwrap_or_else(|| {
            let e = upstream_stream_error(err);
            outcome.set_failure(&e);
            e
        });
        write_error(&failure, out);
        self.done = true;
        self.failed = true;
    }
}

/// `event: error` with Anthropic's error body.
fn write_error(err: &GatewayError, out: &mut Vec<u8>) {
    push_event(
        "error",
        &json!({
            "type": "error",
            "error": {"type": err.anthropic_error_type(), "message": err.public_message()},
        }),
        out,
    );
}

/// An error an upstream sent inside its stream (`data: {"error": {...}}`), with the status its type implies.
fn upstream_stream_error(err: ErrorObj) -> GatewayError {
    let code = match err.code {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let status = match (err.kind.as_deref(), code.as_deref()) {
        (_, Some("rate_limit_exceeded"))
        | (Some("rate_limit_error" | "requests" | "tokens"), _) => 429,
        (Some("invalid_request_error"), _) => 400,
        (Some("authentication_error"), _) => 401,
        (Some("permission_error"), _) => 403,
        (Some("not_found_error"), _) => 404,
        (Some("overloaded_error"), _) => 529,
        _ => 500,
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status,
        message: err
            .message
            .unwrap_or_else(|| "the upstream stream failed".to_string()),
        error_type: err.kind,
        param: None,
        code,
        retry_after: None,
    }))
}

/// Wrap the provider's chat chunk stream. The returned stream shares the inner one's outcome (usage, failure,
/// completion are what the inner stream saw). After `message_stop` the inner stream is still read to its end
/// (so it is recorded as completed) but nothing more is sent; after an error event the stream ends.
pub(crate) fn translate_stream(inner: ChunkStream, model: &str) -> ChunkStream {
    let outcome = inner.outcome.clone();
    struct State {
        inner: ChunkStream,
        t: Translator,
        ended: bool,
    }
    let state = State {
        inner,
        t: Translator::new(model),
        ended: false,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.ended || st.t.failed {
                return None;
            }
            let mut out = Vec::new();
            match st.inner.body.next().await {
                Some(bytes) => {
                    if !st.t.done {
                        st.t.feed(&bytes, &mut out, &st.inner.outcome);
                    }
                }
                None => {
                    st.ended = true;
                    if !st.t.done {
                        st.t.end(&mut out, &st.inner.outcome);
                    }
                }
            }
            if !out.is_empty() {
                return Some((Bytes::from(out), st));
            }
        }
    });
    ChunkStream {
        body: body.boxed(),
        outcome,
    }
}

/// A complete message sent as a stream (when the provider answered a stream request with a whole body): the
/// same events a streamed answer has, in one chunk.
pub(crate) fn message_events(msg: &Message<'_>, out: &mut Vec<u8>) {
    push_event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": msg.id,
                "type": "message",
                "role": "assistant",
                "model": msg.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": msg.usage.input_tokens,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": msg.usage.cache_creation_input_tokens,
                    "cache_read_input_tokens": msg.usage.cache_read_input_tokens,
                },
            },
        }),
        out,
    );
    push_event("ping", &json!({"type": "ping"}), out);
    for (index, block) in msg.content.iter().enumerate() {
        let (start, delta) = match block {
            OutBlock::Text { text } => (
                json!({"type": "text", "text": ""}),
                Some(json!({"type": "text_delta", "text": text})),
            ),
            OutBlock::Thinking {
                thinking,
                signature,
            } => {
                push_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                    out,
                );
                push_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "thinking_delta", "thinking": thinking}}),
                    out,
                );
                if !signature.is_empty() {
                    push_event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "signature_delta", "signature": signature}}),
                        out,
                    );
                }
                push_event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                    out,
                );
                continue;
            }
            OutBlock::RedactedThinking { data } => {
                (json!({"type": "redacted_thinking", "data": data}), None)
            }
            OutBlock::ToolUse { id, name, input } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                Some(json!({"type": "input_json_delta", "partial_json": input.to_string()})),
            ),
        };
        push_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
            out,
        );
        if let Some(delta) = delta {
            push_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                out,
            );
        }
        push_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
            out,
        );
    }
    push_event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": msg.stop_reason, "stop_sequence": null},
            "usage": msg.usage,
        }),
        out,
    );
    push_event("message_stop", &json!({"type": "message_stop"}), out);
}

/// A stream of one chunk, already complete, with `usage` in its outcome.
pub(crate) fn ready_stream(bytes: Vec<u8>, usage: Option<Usage>) -> ChunkStream {
    let outcome = Arc::new(StreamOutcome::default());
    if let Some(u) = usage {
        outcome.set_usage(u);
    }
    outcome.add_chunk();
    outcome.set_completed();
    ChunkStream {
        body: futures_util::stream::once(async move { Bytes::from(bytes) }).boxed(),
        outcome,
    }
}
