//! OpenAI chat completions to and from the Bedrock Converse API: the request body, the response object and
//! the ConverseStream events (decoded from the event stream) turned into OpenAI chunks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tollgate_core::{GatewayError, Usage};

use super::eventstream::{Decoder, Message as Frame};
use super::{Family, exception_error};
use crate::chat::{
    ChatRequest, ChatResponse, ChunkWriter, FinishReason, FunctionCall, Image, Message, Part,
    ResponseFormat, ToolCall, ToolChoice,
};
use crate::stream::StreamOutcome;
use crate::translate::{StreamTranslator, invalid_response};

/// The forced tool that carries JSON-mode answers (LiteLLM's `RESPONSE_FORMAT_TOOL_NAME`).
pub const JSON_TOOL: &str = "json_tool_call";

/// OpenAI params the Converse translation reads (the rest are refused, or dropped with `drop_params`).
pub const SUPPORTED_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "thinking",
    "reasoning_effort",
];

/// Output tokens added to a thinking budget when the request gives no `max_tokens` (Anthropic needs
/// `max_tokens` above the budget; LiteLLM adds its default the same way).
const THINKING_HEADROOM: u64 = 4096;

/// A translated request: the Converse body and whether the answer's JSON-mode tool call is the content.
#[derive(Debug)]
pub struct Translated {
    pub body: Vec<u8>,
    pub json_mode: bool,
}

/// Deployment-level Converse fields sent with every request (`litellm_params.guardrailConfig` /
/// `performanceConfig`).
#[derive(Debug, Default, Clone)]
pub struct Fixed {
    pub guardrail_config: Option<Value>,
    pub performance_config: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    messages: Vec<Msg>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    additional_model_request_fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guardrail_config: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    performance_config: Option<&'a Value>,
}

#[derive(Serialize)]
struct Msg {
    role: &'static str,
    content: Vec<Block>,
}

/// A Converse content block (a union: exactly one member is set).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
enum Block {
    Text(String),
    Image(ImageBlock),
    ToolUse(ToolUse),
    ToolResult(ToolResult),
    ReasoningContent(Value),
    CachePoint(CachePoint),
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct ImageBlock {
    format: &'static str,
    source: ImageSource,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct ImageSource {
    bytes: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    input: Value,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ToolResult {
    tool_use_id: String,
    content: Vec<ToolResultContent>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
enum ToolResultContent {
    Text(String),
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

const CACHE_POINT: Block = Block::CachePoint(CachePoint { kind: "default" });

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
}

impl InferenceConfig {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    tools: Vec<ToolEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolEntry {
    tool_spec: ToolSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: InputSchema,
}

#[derive(Serialize)]
struct InputSchema {
    json: Value,
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param("messages", message)
}

/// `image/png` etc. to Converse's image format.
fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

/// The content blocks of a user (or system) message.
fn user_blocks(m: &Message, allow_images: bool, out: &mut Vec<Block>) -> Result<(), GatewayError> {
    for part in m.parts() {
        match part {
            Part::Text {
                text,
                cache_control,
            } => {
                if !text.is_empty() {
                    out.push(Block::Text(text));
                }
                if cache_control.is_some() {
                    out.push(CACHE_POINT);
                }
            }
            Part::ImageUrl { image_url } if allow_images => match Image::from_url(image_url.url())?
            {
                Image::Base64 { media_type, data } => {
                    let format = image_format(&media_type).ok_or_else(|| {
                        bad(format!(
                            "Bedrock takes png, jpeg, gif or webp images, not `{media_type}`"
                        ))
                    })?;
                    out.push(Block::Image(ImageBlock {
                        format,
                        source: ImageSource { bytes: data },
                    }));
                }
                Image::Url(_) => {
                    return Err(bad(
                        "Bedrock needs inline images: send the image as a base64 data URL \
                         (`data:image/png;base64,...`), not an http(s) URL",
                    ));
                }
            },
            Part::ImageUrl { .. } => {
                return Err(bad(format!(
                    "Bedrock does not take images in `{}` messages",
                    m.role
                )));
            }
            Part::InputAudio { .. } | Part::File { .. } => {
                return Err(bad(
                    "Bedrock (Converse) supports text and image content parts only",
                ));
            }
        }
    }
    Ok(())
}

/// An earlier assistant turn: thinking blocks (signed), text, tool calls.
fn assistant_blocks(m: &Message, out: &mut Vec<Block>) -> Result<(), GatewayError> {
    for tb in m.thinking_blocks.iter().flatten() {
        match tb.get("type").and_then(Value::as_str) {
            Some("thinking") => {
                let mut text = Map::new();
                text.insert(
                    "text".into(),
                    tb.get("thinking").cloned().unwrap_or(Value::from("")),
                );
                if let Some(sig) = tb.get("signature").filter(|s| s.is_string()) {
                    text.insert("signature".into(), sig.clone());
                }
                out.push(Block::ReasoningContent(
                    json!({ "reasoningText": Value::Object(text) }),
                ));
            }
            Some("redacted_thinking") => {
                if let Some(data) = tb.get("data").filter(|d| d.is_string()) {
                    out.push(Block::ReasoningContent(json!({ "redactedContent": data })));
                }
            }
            _ => {}
        }
    }
    for part in m.parts() {
        match part {
            Part::Text { text, .. } if !text.is_empty() => out.push(Block::Text(text)),
            Part::Text { .. } => {}
            _ => return Err(bad("assistant messages may only contain text for Bedrock")),
        }
    }
    for call in m.tool_calls.iter().flatten() {
        let input = if call.function.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(&call.function.arguments).map_err(|e| {
                bad(format!(
                    "the arguments of tool call `{}` are not valid JSON: {e}",
                    call.id
                ))
            })?
        };
        out.push(Block::ToolUse(ToolUse {
            tool_use_id: call.id.clone(),
            name: call.function.name.clone(),
            input,
        }));
    }
    Ok(())
}

/// System blocks and the alternating user/assistant messages of a chat.
fn messages(req: &ChatRequest) -> Result<(Vec<Block>, Vec<Msg>, bool), GatewayError> {
    let mut system = Vec::new();
    let mut out: Vec<Msg> = Vec::with_capacity(req.messages.len());
    let mut tool_blocks = false;
    for m in &req.messages {
        let mut blocks = Vec::new();
        let role = match m.role.as_str() {
            "system" | "developer" => {
                user_blocks(m, false, &mut system)?;
                continue;
            }
            "user" => {
                user_blocks(m, true, &mut blocks)?;
                "user"
            }
            "assistant" => {
                assistant_blocks(m, &mut blocks)?;
                "assistant"
            }
            "tool" | "function" => {
                let id = m
                    .tool_call_id
                    .clone()
                    .ok_or_else(|| bad("a `tool` message needs the `tool_call_id` it answers"))?;
                blocks.push(Block::ToolResult(ToolResult {
                    tool_use_id: id,
                    content: vec![ToolResultContent::Text(m.text())],
                }));
                "user"
            }
            other => return Err(bad(format!("unknown message role `{other}`"))),
        };
        tool_blocks |= blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse(_) | Block::ToolResult(_)));
        if blocks.is_empty() {
            continue;
        }
        // Converse needs user and assistant turns to alternate: merge neighbours of one role.
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(Msg {
                role,
                content: blocks,
            }),
        }
    }
    if out.is_empty() {
        return Err(bad(
            "Bedrock needs at least one user or assistant message with content",
        ));
    }
    Ok((system, out, tool_blocks))
}

/// The Anthropic-style thinking object a request asks for (`thinking`, else `reasoning_effort`).
fn thinking_object(req: &ChatRequest) -> Option<Value> {
    match &req.thinking {
        Some(Value::Object(m)) if m.get("type").and_then(Value::as_str) == Some("disabled") => None,
        Some(Value::Object(m)) => Some(Value::Object(m.clone())),
        _ => req
            .thinking_budget()
            .map(|b| json!({ "type": "enabled", "budget_tokens": b })),
    }
}

/// Translate an OpenAI chat request for `family`. `drop` is the deployment's `drop_params`: a value the
/// model family cannot take is then dropped instead of refused.
pub fn to_converse(
    req: &ChatRequest,
    family: Family,
    drop: bool,
    fixed: &Fixed,
) -> Result<Translated, GatewayError> {
    let (system, messages, has_tool_blocks) = messages(req)?;
    let mut additional = Map::new();
    let mut inference = InferenceConfig {
        max_tokens: req.max_output_tokens(),
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req
            .stop_sequences()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
    };
    let unsupported = |param: &str, what: &str| GatewayError::InvalidRequest {
        message: format!(
            "bedrock does not support `{param}` for this model ({what}). To drop it, set \
             `litellm_settings: drop_params: true`"
        ),
        param: Some(param.to_string()),
        code: Some("unsupported_parameter".into()),
    };
    if let Some(k) = req.top_k {
        match family {
            Family::Anthropic => {
                additional.insert("top_k".into(), k.into());
            }
            Family::Nova | Family::Nova2 => {
                additional.insert("inferenceConfig".into(), json!({ "topK": k }));
            }
            _ if drop => {}
            _ => {
                return Err(unsupported(
                    "top_k",
                    "only Anthropic Claude and Amazon Nova models take it",
                ));
            }
        }
    }
    let mut thinking = false;
    if let Some(obj) = thinking_object(req) {
        match family {
            Family::Anthropic => {
                if let Some(budget) = obj.get("budget_tokens").and_then(Value::as_u64)
                    && inference.max_tokens.is_none()
                {
                    inference.max_tokens = Some(budget + THINKING_HEADROOM);
                }
                additional.insert("thinking".into(), obj);
                thinking = true;
            }
            Family::Nova2 => {
                let effort = match (req.reasoning_effort.as_deref(), req.thinking_budget()) {
                    (Some("minimal" | "low"), _) => "low",
                    (Some("medium"), _) => "medium",
                    (Some("high"), _) => "high",
                    (_, Some(b)) if b <= 1024 => "low",
                    (_, Some(b)) if b <= 2048 => "medium",
                    _ => "high",
                };
                additional.insert(
                    "reasoningConfig".into(),
                    json!({ "type": "enabled", "maxReasoningEffort": effort }),
                );
                thinking = true;
            }
            _ if drop => {}
            _ => {
                let param = if req.thinking.is_some() {
                    "thinking"
                } else {
                    "reasoning_effort"
                };
                return Err(unsupported(
                    param,
                    "reasoning is supported for Anthropic Claude and Amazon Nova 2 models",
                ));
            }
        }
    }

    // Tools, and JSON mode as a forced tool (LiteLLM's approach).
    let choice = req
        .tool_choice
        .as_ref()
        .map(ToolChoice::parse)
        .transpose()?;
    let mut tools: Vec<ToolEntry> = Vec::new();
    if choice != Some(ToolChoice::None) || has_tool_blocks {
        for t in req.tools.iter().flatten() {
            if t.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(GatewayError::invalid_param(
                    "tools",
                    "Bedrock supports `function` tools only",
                ));
            }
            tools.push(ToolEntry {
                tool_spec: ToolSpec {
                    name: t.function.name.clone(),
                    description: t.function.description.clone(),
                    input_schema: InputSchema {
                        json: t.function.schema(),
                    },
                },
            });
        }
    }
    let mut tool_choice = match &choice {
        _ if tools.is_empty() => None,
        Some(ToolChoice::Auto) => Some(json!({ "auto": {} })),
        Some(ToolChoice::Required) => Some(json!({ "any": {} })),
        Some(ToolChoice::Function(name)) => Some(json!({ "tool": { "name": name } })),
        Some(ToolChoice::None) | None => None,
    };
    let json_schema = match &req.response_format {
        Some(ResponseFormat::JsonObject) => Some(None),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(json_schema.schema.clone()),
        Some(ResponseFormat::Text) | None => None,
    };
    let json_mode = json_schema.is_some();
    if let Some(schema) = json_schema {
        let schema = schema.unwrap_or_else(
            || json!({ "type": "object", "additionalProperties": true, "properties": {} }),
        );
        tools.push(ToolEntry {
            tool_spec: ToolSpec {
                name: JSON_TOOL.into(),
                description: None,
                input_schema: InputSchema { json: schema },
            },
        });
        // A forced tool is not allowed together with extended thinking.
        tool_choice = if thinking {
            None
        } else {
            Some(json!({ "tool": { "name": JSON_TOOL } }))
        };
    }
    if has_tool_blocks && tools.is_empty() {
        return Err(GatewayError::invalid_param(
            "tools",
            "Bedrock needs `tools` when the messages contain tool calls or tool results",
        ));
    }
    let tool_config = (!tools.is_empty()).then_some(ToolConfig { tools, tool_choice });
    let body = Body {
        messages,
        system,
        inference_config: inference,
        tool_config,
        additional_model_request_fields: additional,
        guardrail_config: fixed.guardrail_config.as_ref(),
        performance_config: fixed.performance_config.as_ref(),
    };
    let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok(Translated { body, json_mode })
}

/// Converse's `stopReason` in OpenAI's words.
pub fn finish_reason(stop: &str) -> FinishReason {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Converse `usage` (TokenUsage).
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

impl TokenUsage {
    /// OpenAI usage: prompt tokens include the cache reads and writes (as LiteLLM counts them).
    pub fn to_usage(self) -> Usage {
        let prompt =
            self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens;
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt + self.output_tokens,
            cached_tokens: self.cache_read_input_tokens,
            reasoning_tokens: 0,
            cache_creation_tokens: self.cache_write_input_tokens,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    #[serde(default)]
    output: Option<Output>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    message: Option<OutMessage>,
}

#[derive(Deserialize)]
struct OutMessage {
    #[serde(default)]
    content: Vec<OutBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<OutToolUse>,
    #[serde(default)]
    reasoning_content: Option<OutReasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutToolUse {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutReasoning {
    #[serde(default)]
    reasoning_text: Option<ReasoningText>,
    #[serde(default)]
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
struct ReasoningText {
    #[serde(default)]
    text: String,
    #[serde(default)]
    signature: Option<String>,
}

/// Tool input as OpenAI `arguments` text.
fn arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_string(),
        v => v.to_string(),
    }
}

/// A Converse response body as an OpenAI `chat.completion` (the body and its usage).
pub fn from_converse(
    bytes: &[u8],
    model: &str,
    json_mode: bool,
    deployment: &str,
) -> Result<(Vec<u8>, Usage), GatewayError> {
    let r: ConverseResponse = serde_json::from_slice(bytes)
        .map_err(|e| invalid_response(deployment, format!("not a Converse response: {e}")))?;
    let usage = r
        .usage
        .ok_or_else(|| invalid_response(deployment, "the Converse response has no `usage`"))?
        .to_usage();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in r
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .unwrap_or_default()
    {
        if let Some(t) = block.text {
            text.push_str(&t);
        }
        if let Some(rc) = block.reasoning_content {
            if let Some(rt) = rc.reasoning_text {
                reasoning.push_str(&rt.text);
                let mut tb = json!({ "type": "thinking", "thinking": rt.text });
                if let Some(sig) = rt.signature {
                    tb["signature"] = Value::from(sig);
                }
                thinking_blocks.push(tb);
            }
            if let Some(data) = rc.redacted_content {
                thinking_blocks.push(json!({ "type": "redacted_thinking", "data": data }));
            }
        }
        if let Some(tu) = block.tool_use {
            tool_calls.push(ToolCall {
                id: tu.tool_use_id,
                kind: Some("function".into()),
                function: FunctionCall {
                    name: tu.name,
                    arguments: arguments(&tu.input),
                },
            });
        }
    }
    let mut finish = r.stop_reason.as_deref().map(finish_reason);
    if json_mode
        && let [only] = tool_calls.as_slice()
        && only.function.name == JSON_TOOL
    {
        text = only.function.arguments.clone();
        tool_calls.clear();
        if finish == Some(FinishReason::ToolCalls) {
            finish = Some(FinishReason::Stop);
        }
    }
    let resp = ChatResponse {
        id: String::new(),
        model: model.to_string(),
        content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        thinking_blocks,
        tool_calls,
        finish_reason: finish,
        usage,
    };
    Ok((resp.to_json(), usage))
}

/// ConverseStream events (in the binary event stream) to OpenAI chunks.
pub struct StreamState {
    decoder: Decoder,
    writer: ChunkWriter,
    json_mode: bool,
    deployment: String,
    /// Tool-use content blocks seen: (contentBlockIndex, OpenAI tool call index, or `None` for the JSON-mode
    /// tool whose input is streamed as content).
    tools: Vec<(u64, Option<u32>)>,
    stopped: bool,
    usage: Option<Usage>,
}

impl StreamState {
    pub fn new(model: &str, include_usage: bool, json_mode: bool, deployment: &str) -> StreamState {
        StreamState {
            decoder: Decoder::new(),
            writer: ChunkWriter::new(model, include_usage),
            json_mode,
            deployment: deployment.to_string(),
            tools: Vec::new(),
            stopped: false,
            usage: None,
        }
    }

    fn event(
        &mut self,
        frame: &Frame,
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        match frame.header(":message-type") {
            Some("event") => {}
            Some("exception") => {
                let kind = frame
                    .header(":exception-type")
                    .unwrap_or("internalServerException");
                return Err(exception_error(kind, &frame.payload));
            }
            Some("error") => {
                let code = frame.header(":error-code").unwrap_or("InternalError");
                let message = frame.header(":error-message").unwrap_or("stream error");
                return Err(super::failure(500, Some(code), message.to_string(), None));
            }
            _ => return Ok(()),
        }
        let payload: Value = serde_json::from_slice(&frame.payload).map_err(|e| {
            invalid_response(
                &self.deployment,
                format!("a ConverseStream event is not JSON: {e}"),
            )
        })?;
        let index = payload
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match frame.header(":event-type") {
            Some("messageStart") => self.writer.start(out),
            Some("contentBlockStart") => {
                if let Some(tu) = payload.pointer("/start/toolUse") {
                    let id = tu.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                    let name = tu.get("name").and_then(Value::as_str).unwrap_or("");
                    let openai = if self.json_mode && name == JSON_TOOL {
                        self.writer.start(out);
                        None
                    } else {
                        Some(self.writer.tool_call_start(id, name, out))
                    };
                    self.tools.push((index, openai));
                }
            }
            Some("contentBlockDelta") => {
                let Some(delta) = payload.get("delta") else {
                    return Ok(());
                };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    self.writer.text(t, out);
                }
                if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
                    match self.tools.iter().find(|(i, _)| *i == index) {
                        Some((_, Some(openai))) => self.writer.tool_call_args(*openai, input, out),
                        Some((_, None)) => self.writer.text(input, out),
                        None => {
                            return Err(invalid_response(
                                &self.deployment,
                                "a toolUse delta came before its contentBlockStart",
                            ));
                        }
                    }
                }
                if let Some(rc) = delta.get("reasoningContent") {
                    if let Some(t) = rc.get("text").and_then(Value::as_str) {
                        self.writer.reasoning(t, out);
                    }
                    if let Some(sig) = rc.get("signature").and_then(Value::as_str) {
                        self.writer.thinking_block(
                            json!({ "type": "thinking", "thinking": "", "signature": sig }),
                            out,
                        );
                    }
                    if let Some(data) = rc.get("redactedContent").and_then(Value::as_str) {
                        self.writer.thinking_block(
                            json!({ "type": "redacted_thinking", "data": data }),
                            out,
                        );
                    }
                }
            }
            Some("messageStop") => {
                let stop = payload
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                let mut reason = finish_reason(stop);
                if self.json_mode
                    && reason == FinishReason::ToolCalls
                    && !self.writer.saw_tool_calls()
                {
                    reason = FinishReason::Stop;
                }
                self.writer.start(out);
                self.writer.finish(reason, out);
                self.stopped = true;
            }
            Some("metadata") => {
                if let Some(u) = payload.get("usage") {
                    let u: TokenUsage = serde_json::from_value(u.clone()).map_err(|e| {
                        invalid_response(&self.deployment, format!("bad metadata usage: {e}"))
                    })?;
                    let usage = u.to_usage();
                    outcome.set_usage(usage);
                    self.usage = Some(usage);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl StreamTranslator for StreamState {
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        self.decoder.push(bytes);
        loop {
            let frame = self
                .decoder
                .next_message()
                .map_err(|e| invalid_response(&self.deployment, e.to_string()))?;
            let Some(frame) = frame else {
                return Ok(());
            };
            self.event(&frame, out, outcome)?;
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>, _outcome: &StreamOutcome) -> Result<(), GatewayError> {
        self.decoder
            .finish()
            .map_err(|e| invalid_response(&self.deployment, e.to_string()))?;
        if !self.stopped {
            return Err(invalid_response(
                &self.deployment,
                "the ConverseStream ended before its messageStop event",
            ));
        }
        let usage = self.usage.ok_or_else(|| {
            invalid_response(
                &self.deployment,
                "the ConverseStream ended before its metadata event",
            )
        })?;
        self.writer.usage(&usage, out);
        self.writer.done(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::eventstream::{encode, event};
    use super::*;

    fn translate(body: &str, family: Family) -> Result<Value, GatewayError> {
        let req = ChatRequest::parse(body.as_bytes())?;
        let t = to_converse(&req, family, false, &Fixed::default())?;
        Ok(serde_json::from_slice(&t.body).unwrap())
    }

    #[test]
    fn full_request_translation() {
        let v = translate(
            r#"{"model":"m","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                {"role":"user","content":"and say hi"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"42"},
                {"role":"tool","tool_call_id":"c2","content":"43"}],
              "tools":[{"type":"function","function":{"name":"f","description":"does f","parameters":{"type":"object"}}}],
              "tool_choice":"required","stop":["END",""],"max_tokens":10,"temperature":0.5,"top_p":0.9,"top_k":3}"#,
            Family::Anthropic,
        )
        .unwrap();
        insta::assert_json_snapshot!(v, @r#"
        {
          "additionalModelRequestFields": {
            "top_k": 3
          },
          "inferenceConfig": {
            "maxTokens": 10,
            "stopSequences": [
              "END"
            ],
            "temperature": 0.5,
            "topP": 0.9
          },
          "messages": [
            {
              "content": [
                {
                  "text": "what is this"
                },
                {
                  "image": {
                    "format": "png",
                    "source": {
                      "bytes": "AAAA"
                    }
                  }
                },
                {
                  "text": "and say hi"
                }
              ],
              "role": "user"
            },
            {
              "content": [
                {
                  "toolUse": {
                    "input": {
                      "a": 1
                    },
                    "name": "f",
                    "toolUseId": "c1"
                  }
                }
              ],
              "role": "assistant"
            },
            {
              "content": [
                {
                  "toolResult": {
                    "content": [
                      {
                        "text": "42"
                      }
                    ],
                    "toolUseId": "c1"
                  }
                },
                {
                  "toolResult": {
                    "content": [
                      {
                        "text": "43"
                      }
                    ],
                    "toolUseId": "c2"
                  }
                }
              ],
              "role": "user"
            }
          ],
          "system": [
            {
              "text": "be brief"
            }
          ],
          "toolConfig": {
            "toolChoice": {
              "any": {}
            },
            "tools": [
              {
                "toolSpec": {
                  "description": "does f",
                  "inputSchema": {
                    "json": {
                      "type": "object"
                    }
                  },
                  "name": "f"
                }
              }
            ]
          }
        }
        "#);
    }

    #[test]
    fn json_mode_thinking_and_tool_choice_forms() {
        let v = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
            Family::Anthropic,
        )
        .unwrap();
        assert_eq!(v["toolConfig"]["tools"][0]["toolSpec"]["name"], JSON_TOOL);
        assert_eq!(
            v["toolConfig"]["toolChoice"],
            json!({"tool": {"name": JSON_TOOL}})
        );
        let v = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"medium"}"#,
            Family::Anthropic,
        )
        .unwrap();
        assert_eq!(
            v["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(v["inferenceConfig"]["maxTokens"], 2048 + THINKING_HEADROOM);
        let v = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"}"#,
            Family::Nova2,
        )
        .unwrap();
        assert_eq!(
            v["additionalModelRequestFields"]["reasoningConfig"],
            json!({"type": "enabled", "maxReasoningEffort": "high"})
        );
        let e = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled","budget_tokens":2000}}"#,
            Family::Other,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("thinking"));
        let v = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}}}"#,
            Family::Other,
        )
        .unwrap();
        assert_eq!(
            v["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert_eq!(
            v["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            json!({"type": "object", "properties": {}})
        );
        let v = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}"#,
            Family::Other,
        )
        .unwrap();
        assert!(v.get("toolConfig").is_none());
        let v = translate(
            r#"{"messages":[{"role":"user","content":"hi"}],"top_k":4}"#,
            Family::Nova,
        )
        .unwrap();
        assert_eq!(
            v["additionalModelRequestFields"]["inferenceConfig"]["topK"],
            4
        );
        assert_eq!(
            translate(
                r#"{"messages":[{"role":"user","content":"hi"}],"top_k":4}"#,
                Family::Other
            )
            .unwrap_err()
            .param(),
            Some("top_k")
        );
    }

    #[test]
    fn http_images_and_missing_tools_are_400s() {
        let e = translate(
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
            Family::Anthropic,
        )
        .unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.to_string().contains("inline images"), "{e}");
        let e = translate(
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AA"}}]}]}"#,
            Family::Anthropic,
        )
        .unwrap_err();
        assert!(e.to_string().contains("image/bmp"), "{e}");
        let e = translate(
            r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}]}"#,
            Family::Anthropic,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("tools"));
    }

    #[test]
    fn thinking_blocks_and_cache_points_go_back_upstream() {
        let v = translate(
            r#"{"messages":[
                {"role":"system","content":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}]},
                {"role":"user","content":"q"},
                {"role":"assistant","content":"a","thinking_blocks":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"redacted_thinking","data":"xyz"}]},
                {"role":"user","content":"again"}]}"#,
            Family::Anthropic,
        )
        .unwrap();
        assert_eq!(
            v["system"],
            json!([{"text": "sys"}, {"cachePoint": {"type": "default"}}])
        );
        assert_eq!(
            v["messages"][1]["content"],
            json!([
                {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                {"reasoningContent": {"redactedContent": "xyz"}},
                {"text": "a"}
            ])
        );
    }

    #[test]
    fn response_translation() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[
            {"reasoningContent":{"reasoningText":{"text":"thinking...","signature":"s1"}}},
            {"text":"Hello"},
            {"toolUse":{"toolUseId":"tooluse_1","name":"f","input":{"a":1}}}]}},
            "stopReason":"tool_use",
            "usage":{"inputTokens":10,"outputTokens":5,"totalTokens":15,"cacheReadInputTokens":4,"cacheWriteInputTokens":2},
            "metrics":{"latencyMs":12}}"#;
        let (out, usage) = from_converse(body, "alias", false, "d").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "alias");
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], "Hello");
        assert_eq!(msg["reasoning_content"], "thinking...");
        assert_eq!(msg["thinking_blocks"][0]["signature"], "s1");
        assert_eq!(msg["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(msg["tool_calls"][0]["function"]["arguments"], r#"{"a":1}"#);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(usage.prompt_tokens, 16);
        assert_eq!(usage.cached_tokens, 4);
        assert_eq!(usage.cache_creation_tokens, 2);
        assert_eq!(usage.total_tokens, 21);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

        let json_answer = br#"{"output":{"message":{"role":"assistant","content":[
            {"toolUse":{"toolUseId":"t","name":"json_tool_call","input":{"text":"hi"}}}]}},
            "stopReason":"tool_use","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#;
        let (out, _) = from_converse(json_answer, "alias", true, "d").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], r#"{"text":"hi"}"#);
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");

        for (stop, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            let body = format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"x"}}]}}}},"stopReason":"{stop}","usage":{{"inputTokens":1,"outputTokens":1,"totalTokens":2}}}}"#
            );
            let (out, _) = from_converse(body.as_bytes(), "a", false, "d").unwrap();
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["choices"][0]["finish_reason"], want, "{stop}");
        }
        assert!(from_converse(b"{}", "a", false, "d").is_err());
        assert!(from_converse(b"nope", "a", false, "d").is_err());
    }

    fn upstream_stream() -> Vec<u8> {
        let mut w = Vec::new();
        w.extend(event("messageStart", r#"{"role":"assistant"}"#));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}"#,
        ));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"sig"}}}"#,
        ));
        w.extend(event("contentBlockStop", r#"{"contentBlockIndex":0}"#));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"Hel"},"p":"abcd"}"#,
        ));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"lo"}}"#,
        ));
        w.extend(event("contentBlockStop", r#"{"contentBlockIndex":1}"#));
        w.extend(event(
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tu1","name":"f"}}}"#,
        ));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"a\":"}}}"#,
        ));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"1}"}}}"#,
        ));
        w.extend(event("contentBlockStop", r#"{"contentBlockIndex":2}"#));
        w.extend(event("messageStop", r#"{"stopReason":"tool_use"}"#));
        w.extend(event(
            "metadata",
            r#"{"usage":{"inputTokens":7,"outputTokens":3,"totalTokens":10,"cacheReadInputTokens":2},"metrics":{"latencyMs":5}}"#,
        ));
        w
    }

    fn run(chunks: &[&[u8]], json_mode: bool) -> (Result<String, GatewayError>, StreamOutcome) {
        let mut t = StreamState::new("alias", true, json_mode, "dep");
        let outcome = StreamOutcome::default();
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = t.feed(c, &mut out, &outcome) {
                return (Err(e), outcome);
            }
        }
        let r = t
            .finish(&mut out, &outcome)
            .map(|()| String::from_utf8(out).unwrap());
        (r, outcome)
    }

    /// The OpenAI deltas of a translated stream, with the random ids and timestamps left out.
    fn deltas(sse: &str) -> Vec<Value> {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| {
                if d == "[DONE]" {
                    return Value::from("[DONE]");
                }
                let v: Value = serde_json::from_str(d).unwrap();
                match v["choices"].get(0) {
                    Some(c) => json!({"delta": c["delta"], "finish": c["finish_reason"]}),
                    None => json!({"usage": v["usage"]}),
                }
            })
            .collect()
    }

    #[test]
    fn stream_translation_is_the_same_across_every_split() {
        let wire = upstream_stream();
        let (whole, outcome) = run(&[&wire], false);
        let whole = whole.unwrap();
        let d = deltas(&whole);
        insta::assert_json_snapshot!(d, @r#"
        [
          {
            "delta": {
              "content": "",
              "role": "assistant"
            },
            "finish": null
          },
          {
            "delta": {
              "reasoning_content": "hmm"
            },
            "finish": null
          },
          {
            "delta": {
              "thinking_blocks": [
                {
                  "signature": "sig",
                  "thinking": "",
                  "type": "thinking"
                }
              ]
            },
            "finish": null
          },
          {
            "delta": {
              "content": "Hel"
            },
            "finish": null
          },
          {
            "delta": {
              "content": "lo"
            },
            "finish": null
          },
          {
            "delta": {
              "tool_calls": [
                {
                  "function": {
                    "arguments": "",
                    "name": "f"
                  },
                  "id": "tu1",
                  "index": 0,
                  "type": "function"
                }
              ]
            },
            "finish": null
          },
          {
            "delta": {
              "tool_calls": [
                {
                  "function": {
                    "arguments": "{\"a\":"
                  },
                  "index": 0
                }
              ]
            },
            "finish": null
          },
          {
            "delta": {
              "tool_calls": [
                {
                  "function": {
                    "arguments": "1}"
                  },
                  "index": 0
                }
              ]
            },
            "finish": null
          },
          {
            "delta": {},
            "finish": "tool_calls"
          },
          {
            "usage": {
              "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 2,
              "completion_tokens": 3,
              "completion_tokens_details": {
                "reasoning_tokens": 0
              },
              "prompt_tokens": 9,
              "prompt_tokens_details": {
                "cached_tokens": 2
              },
              "total_tokens": 12
            }
          },
          "[DONE]"
        ]
        "#);
        assert_eq!(outcome.usage().unwrap().prompt_tokens, 9);
        for split in 0..=wire.len() {
            let (a, b) = wire.split_at(split);
            let (r, _) = run(&[a, b], false);
            assert_eq!(deltas(&r.unwrap()), d, "split at {split}");
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..100 {
            let mut chunks = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let (a, b) = rest.split_at(rng.usize(1..=rest.len().min(23)));
                chunks.push(a);
                rest = b;
            }
            assert_eq!(deltas(&run(&chunks, false).0.unwrap()), d);
        }
    }

    #[test]
    fn json_mode_stream_turns_the_tool_input_into_content() {
        let mut w = Vec::new();
        w.extend(event("messageStart", r#"{"role":"assistant"}"#));
        w.extend(event(
            "contentBlockStart",
            r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t","name":"json_tool_call"}}}"#,
        ));
        w.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"text\":\"hi\"}"}}}"#,
        ));
        w.extend(event("messageStop", r#"{"stopReason":"tool_use"}"#));
        w.extend(event(
            "metadata",
            r#"{"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#,
        ));
        let out = run(&[&w], true).0.unwrap();
        assert!(out.contains(r#""content":"{\"text\":\"hi\"}""#), "{out}");
        assert!(out.contains(r#""finish_reason":"stop""#), "{out}");
        assert!(!out.contains("tool_calls"), "{out}");
    }

    /// An exception event repeating the API key (sent as a Bearer token): masked in the error event.
    #[tokio::test]
    async fn exception_events_do_not_repeat_the_key() {
        let key = "ABSKQmVkcm9ja0FQSUtleS0wMTIz";
        let exception = encode(
            &[
                (":exception-type", "accessDeniedException"),
                (":message-type", "exception"),
            ],
            format!(r#"{{"message":"The API key {key} is not authorized"}}"#).as_bytes(),
        );
        crate::translate::stream_tests::key_is_masked(
            StreamState::new("alias", false, false, "dep"),
            vec![event("messageStart", r#"{"role":"assistant"}"#), exception],
            "authorization",
            &format!("Bearer {key}"),
            key,
        )
        .await;
    }

    #[test]
    fn exceptions_truncation_and_bad_crcs_end_the_stream_with_errors() {
        let mut w = event("messageStart", r#"{"role":"assistant"}"#);
        w.extend(encode(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        ));
        let e = run(&[&w], false).0.unwrap_err();
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.public_message().contains("Too many requests"));
        let v = encode(
            &[
                (":exception-type", "validationException"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Input is too long for requested model."}"#,
        );
        let e = run(&[&v], false).0.unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.code(), Some("context_length_exceeded"));
        let m = encode(
            &[
                (":exception-type", "modelStreamErrorException"),
                (":message-type", "exception"),
            ],
            br#"{"message":"boom","originalStatusCode":500}"#,
        );
        assert_eq!(run(&[&m], false).0.unwrap_err().status().as_u16(), 502);

        // No messageStop / no metadata.
        let wire = upstream_stream();
        let cut = event("messageStart", r#"{"role":"assistant"}"#);
        let e = run(&[&cut], false).0.unwrap_err();
        assert!(e.to_string().contains("messageStop"), "{e}");
        let mut no_meta = cut.clone();
        no_meta.extend(event("messageStop", r#"{"stopReason":"end_turn"}"#));
        let e = run(&[&no_meta], false).0.unwrap_err();
        assert!(e.to_string().contains("metadata"), "{e}");
        // Cut inside a frame.
        let e = run(&[&wire[..wire.len() - 5]], false).0.unwrap_err();
        assert!(e.to_string().contains("ended inside a message"), "{e}");
        // A corrupted byte.
        let mut bad = wire.clone();
        bad[40] ^= 0x20;
        let e = run(&[&bad], false).0.unwrap_err();
        assert!(e.to_string().contains("CRC"), "{e}");
    }
}
