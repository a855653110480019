//! Anthropic Messages API answers turned into OpenAI chat answers: the complete `message` object, and the
//! named-event stream translated chunk by chunk (text, tool calls, thinking, usage).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::{GatewayError, Usage};

use super::request::JSON_TOOL_NAME;
use super::stream_failure;
use crate::chat::{ChatResponse, ChunkWriter, FinishReason, FunctionCall, ToolCall};
use crate::sse::{SseDecoder, SseEvent};
use crate::stream::StreamOutcome;
use crate::translate::{StreamTranslator, invalid_response, sse_failure};

/// Anthropic's `usage` (also the partial, cumulative usage of `message_start` / `message_delta` events).
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Take the counts `later` carries (stream events report cumulative counts).
    pub fn update(&mut self, later: &AnthropicUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// In OpenAI's terms: Anthropic's `input_tokens` excludes the cache reads and writes, OpenAI's
    /// `prompt_tokens` includes them.
    pub fn to_usage(self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_creation = self.cache_creation_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens.unwrap_or(0) + cache_read + cache_creation;
        let completion = self.output_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_tokens: cache_read,
            // Anthropic counts thinking inside `output_tokens` and does not report it separately.
            reasoning_tokens: 0,
            cache_creation_tokens: cache_creation,
        }
    }
}

/// Anthropic's `stop_reason` in OpenAI's words. In JSON mode the forced tool's answer is the content, so
/// `tool_use` means a normal stop.
pub(crate) fn finish_reason(stop_reason: Option<&str>, json_mode: bool) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") if json_mode => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn, and anything newer.
        _ => FinishReason::Stop,
    }
}

#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default)]
    id: String,
    content: Vec<ResponseBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Server tool blocks and anything newer: not part of an OpenAI answer.
    #[serde(other)]
    Other,
}

/// A complete Messages API answer as an OpenAI `chat.completion` reporting `requested_model`.
pub(crate) fn chat_response(
    bytes: &[u8],
    requested_model: &str,
    json_mode: bool,
) -> Result<(Bytes, Usage), String> {
    let m: MessageResponse = serde_json::from_slice(bytes)
        .map_err(|e| format!("the response is not a Messages API message: {e}"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = None;
    for block in m.content {
        match block {
            ResponseBlock::Text { text: t } => text.push_str(&t),
            ResponseBlock::Thinking {
                thinking,
                signature,
            } => {
                reasoning.push_str(&thinking);
                thinking_blocks.push(
                    json!({"type": "thinking", "thinking": thinking, "signature": signature}),
                );
            }
            ResponseBlock::RedactedThinking { data } => {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": data}));
            }
            ResponseBlock::ToolUse { id, name, input } => {
                if json_mode && name == JSON_TOOL_NAME {
                    json_answer = Some(input.to_string());
                } else {
                    tool_calls.push(ToolCall {
                        id,
                        kind: Some("function".into()),
                        function: FunctionCall {
                            name,
                            arguments: input.to_string(),
                        },
                    });
                }
            }
            ResponseBlock::Other => {}
        }
    }
    let usage = m.usage.to_usage();
    let content = match json_answer {
        Some(j) => Some(j),
        None if text.is_empty() && !tool_calls.is_empty() => None,
        None => Some(text),
    };
    let response = ChatResponse {
        id: m.id,
        model: requested_model.to_string(),
        content,
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        thinking_blocks,
        tool_calls,
        finish_reason: Some(finish_reason(m.stop_reason.as_deref(), json_mode)),
        usage,
    };
    Ok((Bytes::from(response.to_json()), usage))
}

/// One event of a Messages API stream (the `type` in its data; it matches the `event:` name).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: Delta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(other)]
    Other,
}

/// A `content_block_delta`'s `delta` (`text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`).
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Delta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// The `error` of an Anthropic error body or `error` event.
#[derive(Deserialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// What an open content block is, by its index.
enum BlockState {
    Text,
    /// A tool call, with its OpenAI index.
    Tool(u32),
    /// JSON mode's forced tool: its input is streamed as content.
    JsonTool,
    /// A thinking block and its text so far (sent whole with its signature).
    Thinking(String),
    Other,
}

/// Translates a Messages API stream into OpenAI `chat.completion.chunk`s.
pub(crate) struct ChatStream {
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    writer: ChunkWriter,
    json_mode: bool,
    blocks: Vec<(u64, BlockState)>,
    usage: AnthropicUsage,
    finish: Option<FinishReason>,
    stopped: bool,
    deployment: String,
}

impl ChatStream {
    pub fn new(
        requested_model: &str,
        include_usage: bool,
        json_mode: bool,
        deployment: String,
    ) -> Self {
        ChatStream {
            decoder: SseDecoder::new(),
            events: Vec::new(),
            writer: ChunkWriter::new(requested_model, include_usage),
            json_mode,
            blocks: Vec::new(),
            usage: AnthropicUsage::default(),
            finish: None,
            stopped: false,
            deployment,
        }
    }

    fn block(&mut self, index: u64) -> Option<&mut BlockState> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| s)
    }

    fn drain(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        let mut events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        for ev in events.drain(..) {
            if let Err(e) = self.event(&ev, out, outcome) {
                result = Err(e);
                break;
            }
        }
        events.clear();
        self.events = events;
        result
    }

    fn event(
        &mut self,
        ev: &SseEvent,
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        if self.stopped || ev.data.trim().is_empty() {
            return Ok(());
        }
        let parsed: StreamEvent = serde_json::from_str(&ev.data).map_err(|e| {
            invalid_response(
                &self.deployment,
                format!("an event of the stream is not valid: {e}"),
            )
        })?;
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.writer.set_id(&message.id);
                if let Some(u) = message.usage {
                    self.usage.update(&u);
                    outcome.set_usage(self.usage.to_usage());
                }
                self.writer.start(out);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let state = match content_block {
                    StartBlock::Text { text } => {
                        self.writer.text(&text, out);
                        BlockState::Text
                    }
                    StartBlock::ToolUse { name, .. }
                        if self.json_mode && name == JSON_TOOL_NAME =>
                    {
                        BlockState::JsonTool
                    }
                    StartBlock::ToolUse { id, name } => {
                        BlockState::Tool(self.writer.tool_call_start(&id, &name, out))
                    }
                    StartBlock::Thinking { thinking } => {
                        self.writer.reasoning(&thinking, out);
                        BlockState::Thinking(thinking)
                    }
                    StartBlock::RedactedThinking { data } => {
                        self.writer.thinking_block(
                            json!({"type": "redacted_thinking", "data": data}),
                            out,
                        );
                        BlockState::Other
                    }
                    StartBlock::Other => BlockState::Other,
                };
                self.blocks.retain(|(i, _)| *i != index);
                self.blocks.push((index, state));
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                Delta::Text { text } => self.writer.text(&text, out),
                Delta::InputJson { partial_json } => match self.block(index) {
                    Some(BlockState::Tool(i)) => {
                        let i = *i;
                        self.writer.tool_call_args(i, &partial_json, out);
                    }
                    Some(BlockState::JsonTool) => self.writer.text(&partial_json, out),
                    _ => {}
                },
                Delta::Thinking { thinking } => {
                    if let Some(BlockState::Thinking(so_far)) = self.block(index) {
                        so_far.push_str(&thinking);
                    }
                    self.writer.reasoning(&thinking, out);
                }
                Delta::Signature { signature } => {
                    let thinking = match self.block(index) {
                        Some(BlockState::Thinking(t)) => std::mem::take(t),
                        _ => String::new(),
                    };
                    self.writer.thinking_block(
                        json!({"type": "thinking", "thinking": thinking, "signature": signature}),
                        out,
                    );
                }
                Delta::Other => {}
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.update(&u);
                    outcome.set_usage(self.usage.to_usage());
                }
                if let Some(reason) = delta.stop_reason.as_deref() {
                    let f = finish_reason(Some(reason), self.json_mode);
                    self.finish = Some(f);
                    self.writer.finish(f, out);
                }
            }
            StreamEvent::MessageStop {} => {
                self.stopped = true;
                let usage = self.usage.to_usage();
                outcome.set_usage(usage);
                self.writer
                    .finish(self.finish.unwrap_or(FinishReason::Stop), out);
                self.writer.usage(&usage, out);
                self.writer.done(out);
            }
            StreamEvent::Error { error } => {
                return Err(stream_failure(&error.kind, &error.message));
            }
            StreamEvent::ContentBlockStop {} | StreamEvent::Ping {} | StreamEvent::Other => {}
        }
        Ok(())
    }
}

impl StreamTranslator for ChatStream {
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        let decoded = self.decoder.push(bytes, &mut self.events);
        self.drain(out, outcome)?;
        decoded.map_err(|e| sse_failure(&self.deployment, &e))
    }

    fn finish(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        let decoded = self.decoder.finish(&mut self.events);
        self.drain(out, outcome)?;
        decoded.map_err(|e| sse_failure(&self.deployment, &e))?;
        if !self.stopped {
            return Err(invalid_response(
                &self.deployment,
                "the stream ended before its message_stop event",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stream with a thinking block, text, a tool call, cache usage and the documented framing.
    pub(crate) const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-up\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"think.\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig==\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    /// Anthropic's `event: error` repeating the key: masked in the chat stream's error event.
    #[tokio::test]
    async fn stream_error_events_do_not_repeat_the_key() {
        let key = "sk-ant-api03-0123456789abcdef";
        let start = STREAM.split("event: content_block_start").next().unwrap();
        let error = format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key {key}\"}}}}\n\n"
        );
        crate::translate::stream_tests::key_is_masked(
            ChatStream::new("alias", false, false, "dep".into()),
            vec![start.as_bytes().to_vec(), error.into_bytes()],
            "x-api-key",
            key,
            key,
        )
        .await;
    }

    /// The data of each SSE event in `out`, parsed, without the `created` timestamps.
    pub(crate) fn chunks(out: &[u8]) -> Vec<Value> {
        let mut d = SseDecoder::new();
        let mut events = Vec::new();
        d.push(out, &mut events).unwrap();
        d.finish(&mut events).unwrap();
        events
            .into_iter()
            .map(|e| {
                if e.data == "[DONE]" {
                    return Value::from("[DONE]");
                }
                let mut v: Value = serde_json::from_str(&e.data).unwrap();
                if let Some(m) = v.as_object_mut() {
                    m.remove("created");
                }
                v
            })
            .collect()
    }

    fn run(
        pieces: &[&[u8]],
        json_mode: bool,
    ) -> (Result<(), GatewayError>, Vec<u8>, StreamOutcome) {
        let mut t = ChatStream::new("alias", true, json_mode, "d".into());
        let outcome = StreamOutcome::default();
        let mut out = Vec::new();
        for p in pieces {
            if let Err(e) = t.feed(p, &mut out, &outcome) {
                return (Err(e), out, outcome);
            }
        }
        let r = t.finish(&mut out, &outcome);
        (r, out, outcome)
    }

    fn deltas(chunks: &[Value]) -> Vec<Value> {
        chunks
            .iter()
            .filter_map(|c| {
                c.get("choices")
                    .and_then(|ch| ch.get(0))
                    .map(|c0| c0["delta"].clone())
            })
            .collect()
    }

    #[test]
    fn stream_translates_across_any_byte_split() {
        let wire = STREAM.as_bytes();
        let (r, whole, outcome) = run(&[wire], false);
        r.unwrap();
        let expected = chunks(&whole);
        for split in 1..wire.len() {
            let (a, b) = wire.split_at(split);
            let (r, out, _) = run(&[a, b], false);
            r.unwrap();
            assert_eq!(chunks(&out), expected, "split at {split}");
        }
        let three: Vec<&[u8]> = wire.chunks(7).collect();
        assert_eq!(chunks(&run(&three, false).1), expected);

        let d = deltas(&expected);
        assert_eq!(d[0], json!({"role": "assistant", "content": ""}));
        let text: String = d.iter().filter_map(|x| x["content"].as_str()).collect();
        assert_eq!(text, "Héllo there");
        let reasoning: String = d
            .iter()
            .filter_map(|x| x["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "Let me think.");
        assert!(d.contains(&json!({"thinking_blocks": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig=="}]})));
        assert!(d.contains(&json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})));
        let args: String = d
            .iter()
            .filter_map(|x| x["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, "{\"city\": \"Paris\"}");
        let finishes: Vec<&Value> = expected
            .iter()
            .filter_map(|c| c.get("choices").and_then(|ch| ch.get(0)))
            .map(|c0| &c0["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [&json!("tool_calls")]);
        assert!(
            expected
                .iter()
                .all(|c| c == "[DONE]" || (c["id"] == "msg_01" && c["model"] == "alias"))
        );
        let usage_chunk = &expected[expected.len() - 2];
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 18);
        assert_eq!(usage_chunk["usage"]["completion_tokens"], 42);
        assert_eq!(
            usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
            5
        );
        assert_eq!(expected.last().unwrap(), "[DONE]");
        assert_eq!(
            outcome.usage().unwrap(),
            Usage {
                prompt_tokens: 18,
                completion_tokens: 42,
                total_tokens: 60,
                cached_tokens: 5,
                reasoning_tokens: 0,
                cache_creation_tokens: 3,
            }
        );
    }

    #[test]
    fn stream_without_message_stop_or_with_an_error_event_fails() {
        let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
        let (r, out, outcome) = run(&[cut.as_bytes()], false);
        assert!(
            matches!(r, Err(GatewayError::UpstreamInvalid { .. })),
            "{r:?}"
        );
        assert!(!out.is_empty());
        // Usage from message_start is already known.
        assert_eq!(outcome.usage().unwrap().prompt_tokens, 18);

        let err = format!(
            "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n",
            &STREAM[..STREAM.find("event: content_block_start").unwrap()]
        );
        let (r, _, _) = run(&[err.as_bytes()], false);
        let e = r.unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (f.status, f.error_type.as_deref(), f.message.as_str()),
            (529, Some("overloaded_error"), "Overloaded")
        );
    }

    #[test]
    fn json_mode_streams_the_forced_tool_input_as_content() {
        let wire = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"json_tool_call\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":5}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (r, out, _) = run(&[wire.as_bytes()], true);
        r.unwrap();
        let c = chunks(&out);
        let d = deltas(&c);
        let text: String = d.iter().filter_map(|x| x["content"].as_str()).collect();
        assert_eq!(text, "{\"a\":1}");
        assert!(d.iter().all(|x| x.get("tool_calls").is_none()));
        assert!(c.iter().any(|x| x["choices"][0]["finish_reason"] == "stop"));
    }

    #[test]
    fn complete_response_translates_blocks_finish_and_usage() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-up",
            "content":[{"type":"thinking","thinking":"hmm","signature":"s1"},{"type":"redacted_thinking","data":"xx"},
                       {"type":"text","text":"Hi "},{"type":"text","text":"there","citations":[]},
                       {"type":"server_tool_use","id":"srv","name":"web_search","input":{}},
                       {"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":7,"cache_creation_input_tokens":2,"cache_read_input_tokens":4}}"#;
        let (b, usage) = chat_response(body, "alias", false).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "msg_1");
        assert_eq!(v["model"], "alias");
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], "Hi there");
        assert_eq!(msg["reasoning_content"], "hmm");
        assert_eq!(
            msg["thinking_blocks"],
            json!([{"type":"thinking","thinking":"hmm","signature":"s1"},{"type":"redacted_thinking","data":"xx"}])
        );
        assert_eq!(
            msg["tool_calls"],
            json!([{"id":"toolu_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}])
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (16, 7, 23)
        );
        assert_eq!(
            (
                usage.cached_tokens,
                usage.cache_creation_tokens,
                usage.reasoning_tokens
            ),
            (4, 2, 0)
        );
        assert_eq!(v["usage"]["cache_read_input_tokens"], 4);

        let json_body = br#"{"id":"msg_2","content":[{"type":"tool_use","id":"t","name":"json_tool_call","input":{"city":"Paris"}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"#;
        let (b, _) = chat_response(json_body, "alias", true).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "{\"city\":\"Paris\"}"
        );
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(chat_response(b"[]", "alias", false).is_err());
    }

    #[test]
    fn stop_reasons_map_to_openai_finish_reasons() {
        let cases = [
            (Some("end_turn"), "stop"),
            (Some("stop_sequence"), "stop"),
            (Some("pause_turn"), "stop"),
            (Some("max_tokens"), "length"),
            (Some("tool_use"), "tool_calls"),
            (Some("refusal"), "content_filter"),
            (None, "stop"),
        ];
        for (reason, want) in cases {
            assert_eq!(finish_reason(reason, false).as_str(), want, "{reason:?}");
        }
    }
}
