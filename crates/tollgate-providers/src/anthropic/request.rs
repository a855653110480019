//! An OpenAI chat request turned into an Anthropic Messages API request body (system prompt, alternating
//! turns of content blocks, tools, tool choice, thinking, and JSON mode as a forced tool).

use serde::Serialize;
use serde_json::Value;
use tollgate_core::GatewayError;

use crate::chat::{
    ChatRequest, Content, Image, Message, Part, ResponseFormat, ToolCall, ToolChoice,
};

/// The forced tool that carries a JSON-mode answer (LiteLLM's `RESPONSE_FORMAT_TOOL_NAME`).
pub(crate) const JSON_TOOL_NAME: &str = "json_tool_call";

/// `max_tokens` when neither the request nor `model_info.max_output_tokens` gives one (Anthropic requires it).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The beta a `cache_control` with a `ttl` (the 1-hour cache) needs.
pub(crate) const EXTENDED_CACHE_TTL_BETA: &str = "extended-cache-ttl-2025-04-11";

/// The OpenAI params this provider translates (everything else is refused, or dropped with `drop_params`).
pub const SUPPORTED_PARAMS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "thinking",
    "reasoning_effort",
    "metadata",
    "n",
];

/// A translated request: the body, and what reading the answer needs to know.
#[derive(Debug)]
pub(crate) struct Translated {
    pub body: Vec<u8>,
    /// JSON mode: the answer comes as the `json_tool_call` tool's input and goes back as `content`.
    pub json_mode: bool,
    /// The `anthropic-beta` value this request needs, if any.
    pub beta: Option<&'static str>,
}

/// `POST /v1/messages` body.
#[derive(Debug, Serialize)]
pub(crate) struct MessagesRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Turn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    pub max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<AnthropicTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<AnthropicToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
}

/// Top-level `system`: a string, or text blocks when some carry `cache_control`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum System {
    Text(String),
    Blocks(Vec<Block>),
}

/// One turn (`user` / `assistant`).
#[derive(Debug, Serialize)]
pub(crate) struct Turn {
    pub role: &'static str,
    pub content: Vec<Block>,
}

/// A content block: one we build, or one the client gave as is (thinking blocks sent back).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Block {
    Built(BuiltBlock),
    Raw(Value),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BuiltBlock {
    Text {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: ToolResultContent,
    },
}

/// An image or document source.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Source {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ToolResultContent {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Serialize)]
pub(crate) struct AnthropicTool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AnthropicToolChoice {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Metadata {
    pub user_id: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Thinking {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub budget_tokens: u64,
}

fn text_block(text: String, cache_control: Option<Value>) -> Block {
    Block::Built(BuiltBlock::Text {
        text,
        cache_control,
    })
}

/// Translate `req` for `model`. `default_max_tokens` applies when the request gives no limit.
pub(crate) fn translate(
    req: ChatRequest,
    model: &str,
    stream: bool,
    default_max_tokens: u64,
) -> Result<Translated, GatewayError> {
    if let Some(n) = req.n
        && n > 1
    {
        return Err(GatewayError::invalid_param(
            "n",
            format!(
                "anthropic does not support n > 1 (got n={n}): it returns one choice per request"
            ),
        ));
    }
    let mut uses_ttl = false;
    let max_output = req.max_output_tokens();
    let stop_sequences: Vec<String> = req
        .stop_sequences()
        .into_iter()
        // Anthropic refuses whitespace-only stop sequences.
        .filter(|s| !s.trim().is_empty())
        .collect();
    let thinking_budget = req.thinking_budget();
    let ChatRequest {
        messages,
        temperature,
        top_p,
        top_k,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        user,
        ..
    } = req;

    // Messages: system prompts out, the rest as alternating turns of blocks.
    let mut system: Vec<(String, Option<Value>)> = Vec::new();
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    let mut has_tool_blocks = false;
    for (i, m) in messages.into_iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => {
                for part in parts(m.content) {
                    match part {
                        Part::Text {
                            text,
                            cache_control,
                        } => {
                            uses_ttl |= has_ttl(cache_control.as_ref());
                            if !text.is_empty() {
                                system.push((text, cache_control));
                            }
                        }
                        _ => {
                            return Err(GatewayError::invalid_param(
                                "messages",
                                format!("messages[{i}]: a system message may only contain text"),
                            ));
                        }
                    }
                }
            }
            "user" => {
                let blocks = content_blocks(m.content, i, &mut uses_ttl)?;
                push_turn(&mut turns, "user", blocks);
            }
            "assistant" => {
                let blocks = assistant_blocks(m, i, &mut uses_ttl)?;
                has_tool_blocks |= blocks
                    .iter()
                    .any(|b| matches!(b, Block::Built(BuiltBlock::ToolUse { .. })));
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" | "function" => {
                let Some(id) = m.tool_call_id.filter(|id| !id.is_empty()) else {
                    return Err(GatewayError::invalid_param(
                        "messages",
                        format!("messages[{i}]: a tool message needs `tool_call_id`"),
                    ));
                };
                let content = match m.content {
                    None => ToolResultContent::Text(String::new()),
                    Some(Content::Text(s)) => ToolResultContent::Text(s),
                    Some(c @ Content::Parts(_)) => {
                        ToolResultContent::Blocks(content_blocks(Some(c), i, &mut uses_ttl)?)
                    }
                };
                has_tool_blocks = true;
                let block = Block::Built(BuiltBlock::ToolResult {
                    tool_use_id: id,
                    content,
                });
                push_turn(&mut turns, "user", vec![block]);
            }
            other => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("messages[{i}]: unknown role `{other}`"),
                ));
            }
        }
    }
    // A final assistant turn is a prefill, which Anthropic refuses to end in whitespace.
    if let Some(last) = turns.last_mut()
        && last.role == "assistant"
        && let Some(Block::Built(BuiltBlock::Text { text, .. })) = last.content.last_mut()
    {
        let trimmed = text.trim_end().len();
        text.truncate(trimmed);
        if text.is_empty() {
            last.content.pop();
        }
        if last.content.is_empty() {
            turns.pop();
        }
    }
    if turns.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "anthropic needs at least one user or assistant message besides the system prompt",
        ));
    }
    let system = if system.is_empty() {
        None
    } else if system.iter().any(|(_, cc)| cc.is_some()) {
        Some(System::Blocks(
            system
                .into_iter()
                .map(|(text, cc)| text_block(text, cc))
                .collect(),
        ))
    } else {
        let joined: Vec<String> = system.into_iter().map(|(t, _)| t).collect();
        Some(System::Text(joined.join("\n")))
    };

    // Tools and tool choice.
    let mut anthropic_tools: Vec<AnthropicTool> = Vec::new();
    for t in tools.unwrap_or_default() {
        if let Some(kind) = t.kind.as_deref()
            && kind != "function"
        {
            return Err(GatewayError::invalid_param(
                "tools",
                format!("anthropic only takes tools of type `function` (got `{kind}`)"),
            ));
        }
        uses_ttl |= has_ttl(t.cache_control.as_ref());
        let input_schema = t.function.schema();
        anthropic_tools.push(AnthropicTool {
            name: t.function.name,
            description: t.function.description.filter(|d| !d.is_empty()),
            input_schema,
            cache_control: t.cache_control,
        });
    }
    let mut choice = match tool_choice.as_ref().filter(|v| !v.is_null()) {
        Some(v) => Some(ToolChoice::parse(v)?),
        None => None,
    };
    let json_schema = match response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(serde_json::json!({"type": "object"})),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(
            json_schema
                .schema
                .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        ),
    };
    let json_mode = json_schema.is_some();
    if let Some(schema) = json_schema {
        anthropic_tools.push(AnthropicTool {
            name: JSON_TOOL_NAME.to_string(),
            description: Some("Respond with a JSON object.".to_string()),
            input_schema: schema,
            cache_control: None,
        });
        choice = Some(ToolChoice::Function(JSON_TOOL_NAME.to_string()));
    }
    if anthropic_tools.is_empty() && has_tool_blocks {
        // Anthropic refuses tool_use / tool_result blocks in a request without tools (LiteLLM's dummy tool).
        anthropic_tools.push(AnthropicTool {
            name: "dummy_tool".to_string(),
            description: Some("This is a dummy tool call".to_string()),
            input_schema: serde_json::json!({"type": "object", "properties": {}}),
            cache_control: None,
        });
    }
    let no_parallel = (parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = if anthropic_tools.is_empty() {
        None
    } else {
        match choice {
            None if no_parallel.is_some() => Some(AnthropicToolChoice {
                kind: "auto",
                name: None,
                disable_parallel_tool_use: no_parallel,
            }),
            None => None,
            Some(ToolChoice::None) => Some(AnthropicToolChoice {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            }),
            Some(ToolChoice::Auto) => Some(AnthropicToolChoice {
                kind: "auto",
                name: None,
                disable_parallel_tool_use: no_parallel,
            }),
            Some(ToolChoice::Required) => Some(AnthropicToolChoice {
                kind: "any",
                name: None,
                disable_parallel_tool_use: no_parallel,
            }),
            Some(ToolChoice::Function(name)) => Some(AnthropicToolChoice {
                kind: "tool",
                name: Some(name),
                disable_parallel_tool_use: no_parallel,
            }),
        }
    };

    // Limits and thinking: `max_tokens` counts the thinking budget, and must exceed it.
    let mut max_tokens = max_output.unwrap_or(default_max_tokens);
    let thinking = thinking_budget.map(|budget| {
        if max_tokens <= budget {
            max_tokens += budget;
        }
        Thinking {
            kind: "enabled",
            budget_tokens: budget,
        }
    });

    let body = MessagesRequest {
        model,
        messages: turns,
        system,
        max_tokens,
        stop_sequences,
        stream,
        temperature,
        top_p,
        top_k,
        tools: anthropic_tools,
        tool_choice,
        metadata: user
            .filter(|u| !u.is_empty())
            .map(|user_id| Metadata { user_id }),
        thinking,
    };
    let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok(Translated {
        body,
        json_mode,
        beta: uses_ttl.then_some(EXTENDED_CACHE_TTL_BETA),
    })
}

/// Append `blocks` as a `role` turn, merged into the previous turn when it has the same role (Anthropic wants
/// alternating roles). Empty turns are left out.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(Turn {
            role,
            content: blocks,
        }),
    }
}

/// The content as parts, without copying (a string is one text part).
fn parts(content: Option<Content>) -> Vec<Part> {
    match content {
        None => Vec::new(),
        Some(Content::Text(s)) if s.is_empty() => Vec::new(),
        Some(Content::Text(text)) => vec![Part::Text {
            text,
            cache_control: None,
        }],
        Some(Content::Parts(p)) => p,
    }
}

fn has_ttl(cache_control: Option<&Value>) -> bool {
    cache_control.is_some_and(|c| c.get("ttl").is_some())
}

/// User (or tool result) content as blocks: text (empty text left out: Anthropic refuses it), images and PDFs.
fn content_blocks(
    content: Option<Content>,
    i: usize,
    uses_ttl: &mut bool,
) -> Result<Vec<Block>, GatewayError> {
    let parts = parts(content);
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text {
                text,
                cache_control,
            } => {
                *uses_ttl |= has_ttl(cache_control.as_ref());
                if !text.is_empty() {
                    blocks.push(text_block(text, cache_control));
                }
            }
            Part::ImageUrl { image_url } => {
                let source = match Image::from_url(image_url.url())? {
                    Image::Base64 { media_type, data } => Source::Base64 { media_type, data },
                    Image::Url(url) => Source::Url { url },
                };
                blocks.push(Block::Built(BuiltBlock::Image { source }));
            }
            Part::File { file } => blocks.push(document_block(&file, i)?),
            Part::InputAudio { .. } => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("messages[{i}]: anthropic does not take audio input"),
                ));
            }
        }
    }
    Ok(blocks)
}

/// An OpenAI `file` part with inline `file_data` (a base64 data URL, e.g. a PDF) as a `document` block.
fn document_block(file: &Value, i: usize) -> Result<Block, GatewayError> {
    let data_url = file.get("file_data").and_then(Value::as_str).ok_or_else(|| {
        GatewayError::invalid_param(
            "messages",
            format!("messages[{i}]: anthropic takes `file` parts only with inline `file_data` (a base64 data URL)"),
        )
    })?;
    match Image::from_url(data_url)? {
        Image::Base64 { media_type, data } => Ok(Block::Built(BuiltBlock::Document {
            source: Source::Base64 { media_type, data },
        })),
        Image::Url(url) => Ok(Block::Built(BuiltBlock::Document {
            source: Source::Url { url },
        })),
    }
}

/// An assistant message: its thinking blocks as given (they must come first), text, then tool calls.
fn assistant_blocks(m: Message, i: usize, uses_ttl: &mut bool) -> Result<Vec<Block>, GatewayError> {
    let mut blocks: Vec<Block> = m
        .thinking_blocks
        .unwrap_or_default()
        .into_iter()
        .map(Block::Raw)
        .collect();
    for part in parts(m.content) {
        match part {
            Part::Text {
                text,
                cache_control,
            } => {
                *uses_ttl |= has_ttl(cache_control.as_ref());
                if !text.is_empty() {
                    blocks.push(text_block(text, cache_control));
                }
            }
            _ => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("messages[{i}]: an assistant message may only contain text"),
                ));
            }
        }
    }
    for call in m.tool_calls.unwrap_or_default() {
        blocks.push(tool_use_block(call, i)?);
    }
    Ok(blocks)
}

/// An OpenAI tool call as a `tool_use` block; its arguments must be a JSON object (empty text means `{}`).
fn tool_use_block(call: ToolCall, i: usize) -> Result<Block, GatewayError> {
    let args = call.function.arguments.trim();
    let input: Value = if args.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(args).map_err(|e| {
            GatewayError::invalid_param(
                "messages",
                format!(
                    "messages[{i}]: the arguments of tool call `{}` are not valid JSON: {e}",
                    call.id
                ),
            )
        })?
    };
    if !input.is_object() {
        return Err(GatewayError::invalid_param(
            "messages",
            format!(
                "messages[{i}]: the arguments of tool call `{}` must be a JSON object",
                call.id
            ),
        ));
    }
    Ok(Block::Built(BuiltBlock::ToolUse {
        id: call.id,
        name: call.function.name,
        input,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(body: &str) -> Result<Translated, GatewayError> {
        translate(
            ChatRequest::parse(body.as_bytes())?,
            "claude-up",
            false,
            DEFAULT_MAX_TOKENS,
        )
    }

    fn json(t: &Translated) -> Value {
        serde_json::from_slice(&t.body).unwrap()
    }

    #[test]
    fn rich_request_translates_to_the_messages_api() {
        let t = tr(r#"{
            "model": "alias",
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": "https://example.com/cat.jpg"}
                ]},
                {"role": "assistant", "content": "Let me look.",
                 "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig1"}],
                 "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "lookup", "arguments": ""}}
                 ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "nothing"}]},
                {"role": "user", "content": "And now?"},
                {"role": "user", "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up a thing",
                       "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
                       "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "parallel_tool_calls": false,
            "stop": ["END", "  "],
            "max_completion_tokens": 1000,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "user": "user-42",
            "reasoning_effort": "low"
        }"#)
        .unwrap();
        assert!(!t.json_mode);
        assert_eq!(t.beta, Some(EXTENDED_CACHE_TTL_BETA));
        insta::assert_json_snapshot!("anthropic_rich_request", json(&t));
    }

    #[test]
    fn defaults_system_string_and_thinking_budget() {
        let t = tr(r#"{"messages":[{"role":"system","content":"a"},{"role":"system","content":"b"},{"role":"user","content":"hi"}]}"#).unwrap();
        let v = json(&t);
        assert_eq!(v["system"], "a\nb");
        assert_eq!(v["max_tokens"], 4096);
        assert_eq!(
            v["messages"],
            serde_json::json!([{"role":"user","content":[{"type":"text","text":"hi"}]}])
        );
        assert!(v.get("thinking").is_none() && v.get("stream").is_none() && t.beta.is_none());
        // model_info.max_output_tokens as the default.
        let r = ChatRequest::parse(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let v: Value =
            serde_json::from_slice(&translate(r, "m", true, 8192).unwrap().body).unwrap();
        assert_eq!(
            (v["max_tokens"].as_u64(), v["stream"].as_bool()),
            (Some(8192), Some(true))
        );
        // max_tokens must exceed the budget: raised by it when it does not.
        let v = json(&tr(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":500,"thinking":{"type":"enabled","budget_tokens":2000}}"#).unwrap());
        assert_eq!(
            v["thinking"],
            serde_json::json!({"type":"enabled","budget_tokens":2000})
        );
        assert_eq!(v["max_tokens"], 2500);
        let v = json(
            &tr(r#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"}"#)
                .unwrap(),
        );
        assert_eq!(
            (
                v["thinking"]["budget_tokens"].as_u64(),
                v["max_tokens"].as_u64()
            ),
            (Some(4096), Some(8192))
        );
        let v = json(
            &tr(r#"{"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"disabled"}}"#)
                .unwrap(),
        );
        assert!(v.get("thinking").is_none());
    }

    #[test]
    fn json_mode_is_a_forced_tool() {
        let t = tr(r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#).unwrap();
        assert!(t.json_mode);
        let v = json(&t);
        assert_eq!(v["tools"][0]["name"], JSON_TOOL_NAME);
        assert_eq!(
            v["tools"][0]["input_schema"],
            serde_json::json!({"type":"object"})
        );
        assert_eq!(
            v["tool_choice"],
            serde_json::json!({"type":"tool","name":JSON_TOOL_NAME})
        );
        let schema =
            r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;
        let t = tr(&format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"response_format":{{"type":"json_schema","json_schema":{{"name":"x","schema":{schema}}}}}}}"#
        ))
        .unwrap();
        let v = json(&t);
        assert_eq!(
            v["tools"][0]["input_schema"],
            serde_json::from_str::<Value>(schema).unwrap()
        );
        let t = tr(
            r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"text"}}"#,
        )
        .unwrap();
        assert!(!t.json_mode && json(&t).get("tools").is_none());
    }

    #[test]
    fn tool_choice_forms() {
        let with = |choice: &str, parallel: &str| {
            let body = format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],"tools":[{{"type":"function","function":{{"name":"f"}}}}]{choice}{parallel}}}"#
            );
            json(&tr(&body).unwrap())["tool_choice"].clone()
        };
        assert_eq!(
            with(r#","tool_choice":"auto""#, ""),
            serde_json::json!({"type":"auto"})
        );
        assert_eq!(
            with(r#","tool_choice":"required""#, ""),
            serde_json::json!({"type":"any"})
        );
        assert_eq!(
            with(r#","tool_choice":"none""#, ""),
            serde_json::json!({"type":"none"})
        );
        assert_eq!(
            with(
                r#","tool_choice":{"type":"function","function":{"name":"f"}}"#,
                r#","parallel_tool_calls":false"#
            ),
            serde_json::json!({"type":"tool","name":"f","disable_parallel_tool_use":true})
        );
        assert_eq!(
            with("", r#","parallel_tool_calls":false"#),
            serde_json::json!({"type":"auto","disable_parallel_tool_use":true})
        );
        assert_eq!(with("", ""), Value::Null);
        // The default schema of a tool without parameters.
        let v = json(&tr(r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#).unwrap());
        assert_eq!(
            v["tools"][0],
            serde_json::json!({"name":"f","input_schema":{"type":"object","properties":{}}})
        );
    }

    #[test]
    fn tool_history_without_tools_gets_a_dummy_tool_and_turns_alternate() {
        let v = json(&tr(r#"{"messages":[
            {"role":"user","content":"a"},{"role":"user","content":"b"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"t1","content":"42"},
            {"role":"assistant","content":"The answer is "}]}"#).unwrap());
        let roles: Vec<&str> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
        assert_eq!(v["messages"][0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["messages"][2]["content"][0],
            serde_json::json!({"type":"tool_result","tool_use_id":"t1","content":"42"})
        );
        // The prefill loses its trailing whitespace.
        assert_eq!(v["messages"][3]["content"][0]["text"], "The answer is");
        assert_eq!(v["tools"][0]["name"], "dummy_tool");
    }

    #[test]
    fn bad_requests_are_400s() {
        let bad_args = tr(r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#).unwrap_err();
        assert_eq!(bad_args.status().as_u16(), 400);
        assert!(
            bad_args.to_string().contains("not valid JSON"),
            "{bad_args}"
        );
        let n = tr(r#"{"messages":[{"role":"user","content":"a"}],"n":2}"#).unwrap_err();
        assert_eq!(n.param(), Some("n"));
        assert!(tr(r#"{"messages":[{"role":"user","content":"a"}],"n":1}"#).is_ok());
        assert!(tr(r#"{"messages":[{"role":"tool","content":"a"}]}"#).is_err());
        assert!(
            tr(r#"{"messages":[{"role":"system","content":"only a system prompt"}]}"#).is_err()
        );
        assert!(tr(r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}"#).is_err());
        assert!(tr(r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}"#).is_err());
        assert!(tr(r#"{"messages":[{"role":"user","content":"a"}],"tools":[{"type":"code_interpreter","function":{"name":"f"}}]}"#).is_err());
    }

    #[test]
    fn pdf_file_parts_become_documents() {
        let v = json(&tr(r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0="}}]}]}"#).unwrap());
        assert_eq!(
            v["messages"][0]["content"][0],
            serde_json::json!({"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}})
        );
        assert!(tr(r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#).is_err());
    }
}
