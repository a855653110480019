//! A complete OpenAI `chat.completion` turned into an Anthropic `message` object, and the Anthropic wire types
//! both the complete and the streamed answers use.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tollgate_core::Usage;

use crate::chat::ToolCall;

/// An Anthropic `message` object.
#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: Vec<OutBlock>,
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: AnthropicUsage,
}

/// A content block of an answer.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutBlock {
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// Anthropic's `usage`: `input_tokens` excludes the cache reads and writes, which are counted apart.
#[derive(Debug, Serialize, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AnthropicUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl AnthropicUsage {
    /// From OpenAI-semantics usage (prompt tokens include cached and cache-creation tokens).
    pub fn from_openai(u: &Usage) -> AnthropicUsage {
        AnthropicUsage {
            input_tokens: u
                .prompt_tokens
                .saturating_sub(u.cached_tokens)
                .saturating_sub(u.cache_creation_tokens),
            output_tokens: u.completion_tokens,
            cache_creation_input_tokens: u.cache_creation_tokens,
            cache_read_input_tokens: u.cached_tokens,
        }
    }
}

/// A new `msg_...` id.
pub(crate) fn new_message_id() -> String {
    format!(
        "msg_{}",
        tollgate_core::ids::new_request_id().replace('-', "")
    )
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`. OpenAI does not say which stop sequence
/// matched, so `stop` is always `end_turn`; a `stop` with tool calls (some OpenAI-compatible servers say
/// that) is `tool_use`.
pub(crate) fn stop_reason(finish: Option<&str>, saw_tool_calls: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if saw_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// A tool call id as Anthropic allows it (`^[a-zA-Z0-9_-]+$`); a new one when empty.
pub(crate) fn tool_use_id(id: &str) -> String {
    if id.is_empty() {
        return format!(
            "toolu_{}",
            tollgate_core::ids::new_request_id().replace('-', "")
        );
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Tool-call arguments (JSON text) as the `input` object; empty, invalid or non-object text gives `{}`
/// (as LiteLLM does).
pub(crate) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            if !arguments.trim().is_empty() {
                tracing::debug!(
                    target: "tollgate::messages",
                    "tool call arguments are not a JSON object; the tool_use input is empty"
                );
            }
            Value::Object(serde_json::Map::new())
        }
    }
}

/// LiteLLM's `thinking_blocks` entries as Anthropic blocks (`thinking` and `redacted_thinking`).
pub(crate) fn thinking_block(v: &Value) -> Option<OutBlock> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match v.get("type").and_then(Value::as_str) {
        Some("thinking") => Some(OutBlock::Thinking {
            thinking: s("thinking"),
            signature: s("signature"),
        }),
        Some("redacted_thinking") => Some(OutBlock::RedactedThinking { data: s("data") }),
        _ => None,
    }
}

/// The parts of an OpenAI `chat.completion` the translation reads.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletion<'a> {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, borrow)]
    pub usage: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub message: ChoiceMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ChoiceMessage {
    /// A string, or (some servers) a list of text parts.
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// OpenRouter's / vLLM's name for the reasoning text.
    #[serde(default)]
    pub reasoning: Option<String>,
    #[serde(default)]
    pub thinking_blocks: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub refusal: Option<String>,
}

fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// Translate a complete chat answer. `usage` is the provider's parsed usage (else the body's is read);
/// the answer reports `model`.
pub(crate) fn to_message<'m>(
    body: &[u8],
    usage: Option<Usage>,
    model: &'m str,
) -> Result<(Message<'m>, Option<Usage>), String> {
    let completion: ChatCompletion<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("the chat completion is not valid: {e}"))?;
    let usage = usage.or_else(|| completion.usage.and_then(|u| Usage::from_json(u.get())));
    let mut content = Vec::new();
    let mut finish = None;
    let mut saw_tools = false;
    if let Some(choice) = completion.choices.into_iter().next() {
        let m = choice.message;
        finish = choice.finish_reason;
        match m.thinking_blocks.filter(|b| !b.is_empty()) {
            Some(blocks) => content.extend(blocks.iter().filter_map(thinking_block)),
            None => {
                if let Some(r) = m
                    .reasoning_content
                    .or(m.reasoning)
                    .filter(|r| !r.is_empty())
                {
                    content.push(OutBlock::Thinking {
                        thinking: r,
                        signature: String::new(),
                    });
                }
            }
        }
        let text = m
            .content
            .as_ref()
            .and_then(content_text)
            .unwrap_or_default();
        let text = if text.is_empty() {
            m.refusal.unwrap_or_default()
        } else {
            text
        };
        if !text.is_empty() {
            content.push(OutBlock::Text { text });
        }
        for tc in m.tool_calls.unwrap_or_default() {
            saw_tools = true;
            content.push(OutBlock::ToolUse {
                id: tool_use_id(&tc.id),
                input: tool_input(&tc.function.arguments),
                name: tc.function.name,
            });
        }
    }
    if content.is_empty() {
        content.push(OutBlock::Text {
            text: String::new(),
        });
    }
    let id = if completion.id.starts_with("msg_") {
        completion.id
    } else {
        new_message_id()
    };
    let message = Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason: Some(stop_reason(finish.as_deref(), saw_tools)),
        stop_sequence: None,
        usage: usage
            .as_ref()
            .map(AnthropicUsage::from_openai)
            .unwrap_or_default(),
    };
    Ok((message, usage))
}
