//! The client's Messages API request (Anthropic's wire types, checked field by field) and its translation into
//! an OpenAI chat-completions body.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_core::GatewayError;
use tollgate_core::wire::JsonObject;

use crate::chat::{FunctionCall, ToolCall};
use crate::translate::GATEWAY_PARAMS;

/// Anthropic request fields that only Anthropic itself can serve (a 400 naming them when bridged).
const ANTHROPIC_ONLY: &[&str] = &["container", "mcp_servers", "context_management"];

/// The router's per-request fields (the server strips them before the call; accepted here all the same).
const ROUTER_FIELDS: &[&str] = &[
    "num_retries",
    "fallbacks",
    "disable_fallbacks",
    "timeout",
    "context_window_fallbacks",
    "content_policy_fallbacks",
];

/// A `/v1/messages` (or `/v1/messages/count_tokens`) body, as far as the bridge reads it.
#[derive(Debug, Default)]
pub(crate) struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    pub max_tokens: Option<u64>,
    pub system: Option<StrOr<Block>>,
    pub stop_sequences: Vec<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    /// `metadata.user_id`, else LiteLLM's `user`.
    pub user: Option<String>,
    pub tools: Vec<InTool>,
    pub tool_choice: Option<InToolChoice>,
    pub thinking: Option<Value>,
    /// `output_format`, else `output_config.format` (structured outputs).
    pub output_format: Option<Value>,
    /// `output_config.effort`.
    pub effort: Option<String>,
    /// Gateway fields passed on to the chat call (the `mock` provider reads `mock_response`; `drop_params`
    /// is the request's own drop policy).
    pub mock_response: Option<Value>,
    pub drop_params: Option<Value>,
}

/// One input message.
#[derive(Debug, Deserialize)]
pub(crate) struct InMessage {
    pub role: Role,
    pub content: StrOr<Block>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    User,
    Assistant,
}

/// A content block of a message (or of `system`, or of a tool result).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    Text {
        text: String,
        #[serde(default)]
        cache_control: Option<Value>,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
        #[serde(default)]
        title: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default = "empty_object")]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<StrOr<Block>>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Where an image's or a document's bytes are.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Source {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// Plain-text documents.
    Text {
        data: String,
    },
    /// Documents given as content blocks.
    Content {
        content: StrOr<Block>,
    },
    /// Anthropic's Files API.
    File {},
}

/// A tool definition.
#[derive(Debug, Deserialize)]
pub(crate) struct InTool {
    /// `custom` (or absent) for client tools; Anthropic's own tools have a versioned type
    /// (`web_search_20250305`, `bash_20250124`, ...).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub cache_control: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum InToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct OutputConfig {
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    effort: Option<String>,
}

/// A string, or a list of `T` (Anthropic's `content` and `system`). Hand-written so a bad block gets serde's
/// precise message instead of "did not match any variant".
#[derive(Debug)]
pub(crate) enum StrOr<T> {
    Str(String),
    List(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of content blocks")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOr::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOr::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(StrOr::List(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Which endpoint a body is for (they require different fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Messages,
    CountTokens,
}

/// Read one top-level field; a type error names the field, as Anthropic's errors do.
fn field<T: DeserializeOwned>(key: &str, raw: &str) -> Result<T, GatewayError> {
    serde_json::from_str(raw).map_err(|e| GatewayError::invalid_param(key, format!("{key}: {e}")))
}

fn required(key: &str) -> GatewayError {
    GatewayError::invalid_param(key, format!("{key}: Field required"))
}

/// Check and read a Messages API body. Unknown fields are a 400 naming the field ("Extra inputs are not
/// permitted", as Anthropic says); missing `model` / `messages` / `max_tokens` (the last for `/v1/messages`
/// only) are a 400 "`<field>`: Field required".
pub(crate) fn parse(body: &[u8], kind: Kind) -> Result<MessagesRequest, GatewayError> {
    let obj = JsonObject::parse(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let mut req = MessagesRequest::default();
    let (mut has_model, mut has_messages) = (false, false);
    for key in obj.keys() {
        let Some(raw) = obj.get(key) else { continue };
        let raw = raw.get();
        let null = raw == "null";
        match key {
            "model" if !null => {
                req.model = field(key, raw)?;
                has_model = true;
            }
            "messages" if !null => {
                req.messages = field(key, raw)?;
                has_messages = true;
            }
            "max_tokens" => req.max_tokens = field(key, raw)?,
            "system" => req.system = field(key, raw)?,
            "stop_sequences" => {
                req.stop_sequences = field::<Option<Vec<String>>>(key, raw)?.unwrap_or_default()
            }
            "temperature" => req.temperature = field(key, raw)?,
            "top_p" => req.top_p = field(key, raw)?,
            "top_k" => req.top_k = field(key, raw)?,
            "metadata" => {
                // Only `user_id` is Anthropic's; LiteLLM callers put `tags` etc. here (the server reads them).
                if let Some(m) = field::<Option<Metadata>>(key, raw)? {
                    req.user = m.user_id.or(req.user.take());
                }
            }
            "user" => {
                let u: Option<String> = field(key, raw)?;
                if req.user.is_none() {
                    req.user = u;
                }
            }
            "tools" => req.tools = field::<Option<Vec<InTool>>>(key, raw)?.unwrap_or_default(),
            "tool_choice" => req.tool_choice = field(key, raw)?,
            "thinking" => req.thinking = field::<Option<Value>>(key, raw)?,
            "output_format" => {
                if let Some(f) = field::<Option<Value>>(key, raw)? {
                    req.output_format = Some(f);
                }
            }
            "output_config" => {
                if let Some(c) = field::<Option<OutputConfig>>(key, raw)? {
                    req.effort = c.effort;
                    if req.output_format.is_none() {
                        req.output_format = c.format;
                    }
                }
            }
            // The gateway's own fields and what the bridge leaves to the chat call.
            "stream" => {
                field::<Option<bool>>(key, raw)?;
            }
            "service_tier" => {}
            "mock_response" => req.mock_response = field(key, raw)?,
            "drop_params" => req.drop_params = field(key, raw)?,
            k if ANTHROPIC_ONLY.contains(&k) => {
                if !null && kind == Kind::Messages {
                    return Err(GatewayError::invalid_param(
                        k,
                        format!(
                            "{k}: only Anthropic deployments take this field; this model's provider is reached through the chat completions API"
                        ),
                    ));
                }
            }
            k if GATEWAY_PARAMS.contains(&k) || ROUTER_FIELDS.contains(&k) => {}
            k => {
                return Err(GatewayError::invalid_param(
                    k,
                    format!("{k}: Extra inputs are not permitted"),
                ));
            }
        }
    }
    if !has_model {
        return Err(required("model"));
    }
    if !has_messages {
        return Err(required("messages"));
    }
    if kind == Kind::Messages && req.max_tokens.is_none() {
        return Err(required("max_tokens"));
    }
    if req.messages.is_empty() && kind == Kind::Messages {
        return Err(GatewayError::invalid_param(
            "messages",
            "messages: at least one message is required",
        ));
    }
    Ok(req)
}

/// The OpenAI chat-completions body sent to the deployment's provider.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    pub messages: Vec<OutMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<OutTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mock_response: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_params: Option<Value>,
}

/// One OpenAI chat message.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct OutMessage {
    pub role: &'static str,
    /// `null` for an assistant turn made only of tool calls.
    pub content: Option<OutContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// LiteLLM's field for Anthropic thinking blocks of earlier assistant turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<Value>>,
}

impl OutMessage {
    fn new(role: &'static str, content: OutContent) -> OutMessage {
        OutMessage {
            role,
            content: Some(content),
            tool_calls: None,
            tool_call_id: None,
            thinking_blocks: None,
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum OutContent {
    Text(String),
    Parts(Vec<OutPart>),
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutPart {
    Text {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ImageUrl {
        image_url: OutImageUrl,
    },
    File {
        file: OutFile,
    },
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct OutImageUrl {
    pub url: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct OutFile {
    pub filename: String,
    pub file_data: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutTool {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: OutFunction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutFunction {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parameters: Value,
}

/// What the bridge knows about where the chat request goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The model name sent upstream.
    pub model: &'a str,
    /// The upstream takes Anthropic's extras — `thinking`, thinking blocks, `cache_control` — because the
    /// provider translates to a native API that has them (Anthropic, Bedrock, Gemini, ...) or the model is a
    /// Claude behind an OpenAI-style endpoint (LiteLLM's rule). Otherwise thinking becomes `reasoning_effort`
    /// and the extras are left out (OpenAI refuses unknown message fields).
    pub anthropic_extras: bool,
    pub stream: bool,
}

/// Providers whose adapters read the chat request themselves and understand Anthropic's extras.
const TRANSLATING_PROVIDERS: &[&str] = &[
    "anthropic",
    "bedrock",
    "gemini",
    "vertex_ai",
    "ollama",
    "ollama_chat",
    "cohere",
    "mock",
];

/// Whether `provider` serving `model` takes Anthropic's extras (see [`Target::anthropic_extras`]).
pub(crate) fn takes_anthropic_extras(provider: &str, model: &str) -> bool {
    if TRANSLATING_PROVIDERS.contains(&provider) {
        return true;
    }
    let m = model.to_ascii_lowercase();
    m.contains("claude") || m.contains("anthropic")
}

/// `thinking.budget_tokens` as an OpenAI `reasoning_effort`, with LiteLLM's thresholds (1024 low, 2048 medium,
/// 4096 high).
fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        4096.. => "high",
        2048.. => "medium",
        1024.. => "low",
        _ => "minimal",
    }
}

/// Translate a checked Messages request into the chat body for `target`.
pub(crate) fn to_chat(
    req: MessagesRequest,
    target: Target<'_>,
) -> Result<ChatBody<'_>, GatewayError> {
    let extras = target.anthropic_extras;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    // An empty system prompt is no system message (as LiteLLM does).
    match req.system {
        None => {}
        Some(StrOr::Str(s)) if s.is_empty() => {}
        Some(StrOr::List(b)) if b.is_empty() => {}
        Some(system) => messages.push(system_message(system, extras)?),
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role {
            Role::User => user_turn(m.content, i, extras, &mut messages)?,
            Role::Assistant => messages.push(assistant_turn(m.content, i, extras)?),
        }
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    for (i, t) in req.tools.into_iter().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(GatewayError::invalid_param(
                "tools",
                format!(
                    "tools.{i}: `{kind}` is one of Anthropic's own tools; this model's provider only takes client tools ({{name, description, input_schema}})"
                ),
            ));
        }
        tools.push(OutTool {
            kind: "function",
            function: OutFunction {
                name: t.name,
                description: t.description,
                parameters: t
                    .input_schema
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            },
            cache_control: t.cache_control.filter(|_| extras),
        });
    }
    let (mut tool_choice, mut parallel_tool_calls) = (None, None);
    if !tools.is_empty()
        && let Some(choice) = req.tool_choice
    {
        let (choice, no_parallel) = match choice {
            InToolChoice::Auto {
                disable_parallel_tool_use,
            } => (Value::from("auto"), disable_parallel_tool_use),
            InToolChoice::Any {
                disable_parallel_tool_use,
            } => (Value::from("required"), disable_parallel_tool_use),
            InToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (
                serde_json::json!({"type": "function", "function": {"name": name}}),
                disable_parallel_tool_use,
            ),
            InToolChoice::None => (Value::from("none"), None),
        };
        tool_choice = Some(choice);
        if no_parallel == Some(true) {
            parallel_tool_calls = Some(false);
        }
    }
    let (mut thinking, mut reasoning_effort) = (None, None);
    if let Some(t) = req.thinking.filter(|t| !t.is_null()) {
        if extras {
            thinking = Some(t);
        } else {
            reasoning_effort = match t.get("type").and_then(Value::as_str) {
                Some("enabled") => Some(
                    effort_for_budget(t.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0))
                        .to_string(),
                ),
                Some("adaptive") => Some(req.effort.clone().unwrap_or_else(|| "medium".into())),
                _ => None,
            };
        }
    }
    let response_format = match req.output_format {
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_schema") => {
            let schema = f.get("schema").cloned().unwrap_or_else(empty_object);
            Some(serde_json::json!({
                "type": "json_schema",
                "json_schema": {"name": "structured_output", "schema": schema},
            }))
        }
        Some(f) if !f.is_null() => {
            return Err(GatewayError::invalid_param(
                "output_format",
                "output_format: only {\"type\": \"json_schema\", \"schema\": {...}} is supported",
            ));
        }
        _ => None,
    };
    Ok(ChatBody {
        model: target.model,
        messages,
        max_tokens: req.max_tokens,
        stop: req.stop_sequences,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        user: req.user,
        tools,
        tool_choice,
        parallel_tool_calls,
        thinking,
        reasoning_effort,
        response_format,
        stream: target.stream,
        stream_options: target
            .stream
            .then(|| serde_json::json!({"include_usage": true})),
        mock_response: req.mock_response,
        drop_params: req.drop_params,
    })
}

fn system_message(system: StrOr<Block>, extras: bool) -> Result<OutMessage, GatewayError> {
    let blocks = match system {
        StrOr::Str(s) => return Ok(OutMessage::new("system", OutContent::Text(s))),
        StrOr::List(blocks) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.into_iter().enumerate() {
        let Block::Text {
            text,
            cache_control,
        } = b
        else {
            return Err(GatewayError::invalid_param(
                "system",
                format!("system.{i}: only text blocks are allowed in `system`"),
            ));
        };
        parts.push((text, cache_control.filter(|_| extras)));
    }
    Ok(OutMessage::new("system", text_content(parts)))
}

/// Text blocks as a plain string (joined by newlines), or as parts when one keeps a `cache_control` marker.
fn text_content(parts: Vec<(String, Option<Value>)>) -> OutContent {
    if parts.iter().any(|(_, c)| c.is_some()) {
        return OutContent::Parts(
            parts
                .into_iter()
                .map(|(text, cache_control)| OutPart::Text {
                    text,
                    cache_control,
                })
                .collect(),
        );
    }
    let mut out = String::new();
    for (i, (text, _)) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&text);
    }
    OutContent::Text(out)
}

fn data_url(media_type: &str, data: &str) -> String {
    let mut s = String::with_capacity(media_type.len() + data.len() + 13);
    s.push_str("data:");
    s.push_str(media_type);
    s.push_str(";base64,");
    s.push_str(data);
    s
}

fn unsupported_block(at: &str, what: &str) -> GatewayError {
    GatewayError::invalid_param(
        "messages",
        format!("{at}: {what} cannot be sent to this model's provider"),
    )
}

/// An image or document block as a chat part; `at` names the block in errors.
fn media_part(block: Block, at: &str) -> Result<OutPart, GatewayError> {
    match block {
        Block::Image { source, .. } => match source {
            Source::Base64 { media_type, data } => Ok(OutPart::ImageUrl {
                image_url: OutImageUrl {
                    url: data_url(&media_type, &data),
                },
            }),
            Source::Url { url } => Ok(OutPart::ImageUrl {
                image_url: OutImageUrl { url },
            }),
            Source::File { .. } => Err(unsupported_block(at, "an image given by `file_id`")),
            Source::Text { .. } | Source::Content { .. } => Err(GatewayError::invalid_param(
                "messages",
                format!("{at}: an image source must be `base64` or `url`"),
            )),
        },
        Block::Document { source, title, .. } => match source {
            Source::Base64 { media_type, data } => Ok(OutPart::File {
                file: OutFile {
                    filename: title.unwrap_or_else(|| default_filename(&media_type)),
                    file_data: data_url(&media_type, &data),
                },
            }),
            Source::Text { data, .. } => Ok(OutPart::Text {
                text: data,
                cache_control: None,
            }),
            Source::Content { content } => Ok(OutPart::Text {
                text: plain_text(content),
                cache_control: None,
            }),
            Source::Url { .. } => Err(unsupported_block(at, "a document given by URL")),
            Source::File { .. } => Err(unsupported_block(at, "a document given by `file_id`")),
        },
        _ => Err(GatewayError::Internal(
            "media_part on a non-media block".into(),
        )),
    }
}

fn default_filename(media_type: &str) -> String {
    match media_type {
        "application/pdf" => "document.pdf".into(),
        "text/plain" => "document.txt".into(),
        _ => "document".into(),
    }
}

/// The text of a string-or-blocks value (non-text blocks left out).
fn plain_text(content: StrOr<Block>) -> String {
    match content {
        StrOr::Str(s) => s,
        StrOr::List(blocks) => {
            let mut out = String::new();
            for b in blocks {
                if let Block::Text { text, .. } = b {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&text);
                }
            }
            out
        }
    }
}

/// A user turn: its tool results become `tool` messages (first, so they follow the assistant's tool calls),
/// the rest one user message. Images inside tool results go into that user message (OpenAI's tool messages
/// carry text only).
fn user_turn(
    content: StrOr<Block>,
    i: usize,
    extras: bool,
    out: &mut Vec<OutMessage>,
) -> Result<(), GatewayError> {
    let blocks = match content {
        StrOr::Str(s) => {
            out.push(OutMessage::new("user", OutContent::Text(s)));
            return Ok(());
        }
        StrOr::List(blocks) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        match b {
            Block::Text {
                text,
                cache_control,
            } => parts.push(OutPart::Text {
                text,
                cache_control: cache_control.filter(|_| extras),
            }),
            b @ (Block::Image { .. } | Block::Document { .. }) => parts.push(media_part(b, &at)?),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut text = String::new();
                if is_error == Some(true) {
                    text.push_str("Error: ");
                }
                match content {
                    None => {}
                    Some(StrOr::Str(s)) => text.push_str(&s),
                    Some(StrOr::List(items)) => {
                        let mut first = true;
                        for (k, item) in items.into_iter().enumerate() {
                            match item {
                                Block::Text { text: t, .. } => {
                                    if !first {
                                        text.push('\n');
                                    }
                                    first = false;
                                    text.push_str(&t);
                                }
                                b @ (Block::Image { .. } | Block::Document { .. }) => {
                                    parts.push(media_part(b, &format!("{at}.content.{k}"))?)
                                }
                                _ => {
                                    return Err(GatewayError::invalid_param(
                                        "messages",
                                        format!(
                                            "{at}.content.{k}: a tool result holds text, image and document blocks only"
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                }
                out.push(OutMessage {
                    role: "tool",
                    content: Some(OutContent::Text(text)),
                    tool_calls: None,
                    tool_call_id: Some(tool_use_id),
                    thinking_blocks: None,
                });
            }
            Block::ToolUse { .. } | Block::Thinking { .. } | Block::RedactedThinking { .. } => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("{at}: tool_use and thinking blocks belong to assistant messages"),
                ));
            }
        }
    }
    if !parts.is_empty() {
        out.push(OutMessage::new("user", OutContent::Parts(parts)));
    }
    Ok(())
}

/// An assistant turn: text joined, tool uses as `tool_calls` (arguments = the input as JSON text), thinking
/// blocks as LiteLLM's `thinking_blocks` when the upstream takes them.
fn assistant_turn(
    content: StrOr<Block>,
    i: usize,
    extras: bool,
) -> Result<OutMessage, GatewayError> {
    let blocks = match content {
        StrOr::Str(s) => return Ok(OutMessage::new("assistant", OutContent::Text(s))),
        StrOr::List(blocks) => blocks,
    };
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    let mut thinking = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            Block::Text {
                text,
                cache_control,
            } => texts.push((text, cache_control.filter(|_| extras))),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: Some("function".into()),
                function: FunctionCall {
                    name,
                    arguments: serde_json::to_string(&input)
                        .map_err(|e| GatewayError::Internal(e.to_string()))?,
                },
            }),
            Block::Thinking {
                thinking: text,
                signature,
            } => thinking.push(serde_json::json!({
                "type": "thinking",
                "thinking": text,
                "signature": signature.unwrap_or_default(),
            })),
            Block::RedactedThinking { data } => {
                thinking.push(serde_json::json!({"type": "redacted_thinking", "data": data}))
            }
            _ => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!(
                        "messages.{i}.content.{j}: assistant messages hold text, tool_use and thinking blocks only"
                    ),
                ));
            }
        }
    }
    let content = if texts.is_empty() {
        (tool_calls.is_empty()).then(|| OutContent::Text(String::new()))
    } else {
        Some(text_content(texts))
    };
    Ok(OutMessage {
        role: "assistant",
        content,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        tool_call_id: None,
        thinking_blocks: (extras && !thinking.is_empty()).then_some(thinking),
    })
}

/// The characters of every text the prompt carries — system, message text, tool inputs and results, thinking,
/// tool names, descriptions and schemas — for the token estimate of `count_tokens`.
pub(crate) fn prompt_chars(req: &MessagesRequest) -> usize {
    fn blocks_chars(content: &StrOr<Block>) -> usize {
        match content {
            StrOr::Str(s) => s.chars().count(),
            StrOr::List(blocks) => blocks.iter().map(block_chars).sum(),
        }
    }
    fn block_chars(b: &Block) -> usize {
        match b {
            Block::Text { text, .. } => text.chars().count(),
            Block::ToolUse { name, input, .. } => name.chars().count() + json_chars(input),
            Block::ToolResult { content, .. } => content.as_ref().map_or(0, blocks_chars),
            Block::Thinking { thinking, .. } => thinking.chars().count(),
            Block::Document {
                source: Source::Text { data, .. },
                ..
            } => data.chars().count(),
            Block::Document {
                source: Source::Content { content },
                ..
            } => blocks_chars(content),
            Block::Image { .. } | Block::Document { .. } | Block::RedactedThinking { .. } => 0,
        }
    }
    fn json_chars(v: &Value) -> usize {
        serde_json::to_string(v).map_or(0, |s| s.chars().count())
    }
    let system = req.system.as_ref().map_or(0, blocks_chars);
    let messages: usize = req.messages.iter().map(|m| blocks_chars(&m.content)).sum();
    let tools: usize = req
        .tools
        .iter()
        .map(|t| {
            t.name.chars().count()
                + t.description.as_deref().map_or(0, |d| d.chars().count())
                + t.input_schema.as_ref().map_or(0, json_chars)
        })
        .sum();
    system + messages + tools
}
