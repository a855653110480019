//! The OpenAI chat-completions wire types that translating providers read (the client's request) and write
//! (the response object and its `chat.completion.chunk` stream), shared so every provider speaks them alike.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_core::wire::json_string;
use tollgate_core::{GatewayError, Usage};

/// A client's `/chat/completions` body, as far as translating providers read it. Fields a provider does not
/// support are refused (or dropped) by [`crate::params`] before this is read.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ChatRequest {
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Anthropic/Gemini/Ollama `top_k` (not an OpenAI field; accepted as LiteLLM does).
    #[serde(default)]
    pub top_k: Option<u64>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// `"none"`, `"auto"`, `"required"` or `{"type":"function","function":{"name":...}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"type":"text"}`, `{"type":"json_object"}` or `{"type":"json_schema","json_schema":{...}}`.
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub user: Option<String>,
    /// `"low" | "medium" | "high"` (mapped to a thinking budget by providers that think).
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// Anthropic's `thinking: {"type":"enabled","budget_tokens":N}`, accepted as LiteLLM does.
    #[serde(default)]
    pub thinking: Option<Value>,
}

impl ChatRequest {
    /// Parse the client's body (already known to be a JSON object).
    pub fn parse(body: &[u8]) -> Result<ChatRequest, GatewayError> {
        let req: ChatRequest = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid(format!("the request body is not a valid chat request: {e}"))
        })?;
        if req.messages.is_empty() {
            return Err(GatewayError::invalid_param(
                "messages",
                "`messages` must be a non-empty list",
            ));
        }
        Ok(req)
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The stop sequences as a list (an empty list when none).
    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }

    /// The thinking budget asked for, from `thinking.budget_tokens` or `reasoning_effort`
    /// (LiteLLM's mapping: low 1024, medium 2048, high 4096).
    pub fn thinking_budget(&self) -> Option<u64> {
        if let Some(t) = &self.thinking {
            if t.get("type").and_then(Value::as_str) == Some("disabled") {
                return None;
            }
            return Some(
                t.get("budget_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(1024),
            );
        }
        match self.reasoning_effort.as_deref() {
            Some("low" | "minimal") => Some(1024),
            Some("medium") => Some(2048),
            Some("high") => Some(4096),
            _ => None,
        }
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// One chat message.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant`, `tool` (or the legacy `function`).
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Reasoning text of an earlier assistant turn (LiteLLM's field).
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// Anthropic thinking blocks of an earlier assistant turn (LiteLLM's field), sent back as they came.
    #[serde(default)]
    pub thinking_blocks: Option<Vec<Value>>,
}

impl Message {
    /// The message's text parts joined (images and other parts left out).
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(s)) => s.clone(),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    if let Part::Text { text, .. } = p {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(text);
                    }
                }
                out
            }
        }
    }

    /// The content as parts (a plain string is one text part).
    pub fn parts(&self) -> Vec<Part> {
        match &self.content {
            None => Vec::new(),
            Some(Content::Text(s)) if s.is_empty() => Vec::new(),
            Some(Content::Text(s)) => vec![Part::Text {
                text: s.clone(),
                cache_control: None,
            }],
            Some(Content::Parts(p)) => p.clone(),
        }
    }
}

/// `content`: a string or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
        /// Anthropic prompt caching marker, passed on by providers that cache.
        #[serde(default)]
        cache_control: Option<Value>,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    InputAudio {
        input_audio: Value,
    },
    File {
        file: Value,
    },
}

/// `image_url`: a string (LiteLLM accepts it) or `{"url", "detail"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    Url(String),
    Object {
        url: String,
        #[serde(default)]
        detail: Option<String>,
    },
}

impl ImageUrl {
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Url(u) | ImageUrl::Object { url: u, .. } => u,
        }
    }
}

/// An image as providers take it: inline base64 data or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Base64 { media_type: String, data: String },
    Url(String),
}

impl Image {
    /// `data:<media type>;base64,<data>` becomes inline data; `http(s)://` stays a URL; anything else is a 400.
    pub fn from_url(url: &str) -> Result<Image, GatewayError> {
        if let Some(rest) = url.strip_prefix("data:") {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                GatewayError::invalid_param("messages", "an image data URL has no `,`")
            })?;
            let media_type = meta
                .strip_suffix(";base64")
                .ok_or_else(|| {
                    GatewayError::invalid_param(
                        "messages",
                        "an image data URL must be base64 (`data:image/png;base64,...`)",
                    )
                })?
                .to_string();
            return Ok(Image::Base64 {
                media_type,
                data: data.to_string(),
            });
        }
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(Image::Url(url.to_string()));
        }
        Err(GatewayError::invalid_param(
            "messages",
            "`image_url.url` must be an http(s) URL or a base64 data URL",
        ))
    }
}

/// A tool call of an assistant message.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// JSON text, as OpenAI sends it.
    #[serde(default)]
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub function: FunctionDef,
    #[serde(default)]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON schema; `None` means no parameters.
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl FunctionDef {
    /// The parameters schema, `{"type":"object","properties":{}}` when none was given.
    pub fn schema(&self) -> Value {
        self.parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}))
    }
}

/// `tool_choice`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

impl ToolChoice {
    pub fn parse(v: &Value) -> Result<ToolChoice, GatewayError> {
        let bad = || {
            GatewayError::invalid_param(
                "tool_choice",
                "`tool_choice` must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
            )
        };
        match v {
            Value::String(s) => match s.as_str() {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" | "any" => Ok(ToolChoice::Required),
                _ => Err(bad()),
            },
            Value::Object(m) => m
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Function(n.to_string()))
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchema },
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchema {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// Why generation stopped, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// A complete assistant answer, written as an OpenAI `chat.completion` object.
#[derive(Debug, Clone, Default)]
pub struct ChatResponse {
    /// The upstream's id (a new one is made when empty).
    pub id: String,
    /// The model name the client asked for.
    pub model: String,
    pub content: Option<String>,
    pub reasoning: Option<String>,
    /// Provider thinking blocks (Anthropic), returned as LiteLLM's `thinking_blocks`.
    pub thinking_blocks: Vec<Value>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
}

impl ChatResponse {
    pub fn to_json(&self) -> Vec<u8> {
        let mut message = serde_json::Map::new();
        message.insert("role".into(), Value::from("assistant"));
        message.insert(
            "content".into(),
            self.content.clone().map(Value::from).unwrap_or(Value::Null),
        );
        if let Some(r) = &self.reasoning {
            message.insert("reasoning_content".into(), Value::from(r.clone()));
        }
        if !self.thinking_blocks.is_empty() {
            message.insert(
                "thinking_blocks".into(),
                Value::Array(self.thinking_blocks.clone()),
            );
        }
        if !self.tool_calls.is_empty() {
            message.insert(
                "tool_calls".into(),
                serde_json::to_value(
                    self.tool_calls
                        .iter()
                        .map(|t| ToolCall {
                            kind: Some("function".into()),
                            ..t.clone()
                        })
                        .collect::<Vec<_>>(),
                )
                .unwrap_or(Value::Null),
            );
        }
        let finish = self.finish_reason.unwrap_or(if self.tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
        let body = serde_json::json!({
            "id": if self.id.is_empty() { new_completion_id() } else { self.id.clone() },
            "object": "chat.completion",
            "created": unix_now(),
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "message": Value::Object(message),
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }],
            "usage": usage_json(&self.usage),
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// An OpenAI `usage` object, with `prompt_tokens_details` / `completion_tokens_details` and (when the
/// provider caches prompts) LiteLLM's `cache_creation_input_tokens` / `cache_read_input_tokens`.
pub fn usage_json(u: &Usage) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("prompt_tokens".into(), u.prompt_tokens.into());
    m.insert("completion_tokens".into(), u.completion_tokens.into());
    m.insert("total_tokens".into(), u.total_tokens.into());
    m.insert(
        "prompt_tokens_details".into(),
        serde_json::json!({"cached_tokens": u.cached_tokens}),
    );
    m.insert(
        "completion_tokens_details".into(),
        serde_json::json!({"reasoning_tokens": u.reasoning_tokens}),
    );
    if u.cached_tokens > 0 || u.cache_creation_tokens > 0 {
        m.insert("cache_read_input_tokens".into(), u.cached_tokens.into());
        m.insert(
            "cache_creation_input_tokens".into(),
            u.cache_creation_tokens.into(),
        );
    }
    Value::Object(m)
}

/// `chatcmpl-<uuid v7 simple>`.
pub fn new_completion_id() -> String {
    format!(
        "chatcmpl-{}",
        tollgate_core::ids::new_request_id().replace('-', "")
    )
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes an OpenAI `chat.completion.chunk` SSE stream piece by piece (role first, then deltas, then the
/// finish reason, the usage chunk when the client asked for it, and `[DONE]`).
///
/// Chunks are written as bytes directly (keys in the order `serde_json` would sort them), with the part
/// every chunk shares (`created`, `id`, `model`, ...) rendered once: no `serde_json::Value` per chunk.
#[derive(Debug)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    role_sent: bool,
    finished: bool,
    /// Tool calls seen so far (their `index` in the OpenAI stream).
    tool_calls: u32,
    /// `"created":N,"id":"..","model":"..","object":"chat.completion.chunk","system_fingerprint":null}`,
    /// rendered at the first chunk.
    tail: Vec<u8>,
}

impl ChunkWriter {
    /// `include_usage`: the client asked for `stream_options.include_usage`.
    pub fn new(model: &str, include_usage: bool) -> ChunkWriter {
        ChunkWriter {
            id: new_completion_id(),
            model: model.to_string(),
            created: unix_now(),
            include_usage,
            role_sent: false,
            finished: false,
            tool_calls: 0,
            tail: Vec::new(),
        }
    }

    /// Use the upstream's id for every chunk (call before the first chunk).
    pub fn set_id(&mut self, id: &str) {
        if !id.is_empty() {
            self.id = id.to_string();
            self.tail.clear();
        }
    }

    fn render_tail(&mut self) {
        if self.tail.is_empty() {
            let t = &mut self.tail;
            t.extend_from_slice(b"\"created\":");
            t.extend_from_slice(self.created.to_string().as_bytes());
            t.extend_from_slice(b",\"id\":");
            t.extend_from_slice(&json_string(&self.id));
            t.extend_from_slice(b",\"model\":");
            t.extend_from_slice(&json_string(&self.model));
            t.extend_from_slice(
                b",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null}",
            );
        }
    }

    /// One chunk whose delta has `fields` (`(key, raw JSON)`, any order; the role is added to the first).
    fn chunk(&mut self, fields: &[(&str, &[u8])], finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let mut fields: Vec<(&str, &[u8])> = fields.to_vec();
        if !self.role_sent {
            self.role_sent = true;
            fields.push(("role", b"\"assistant\""));
        }
        fields.sort_by_key(|(k, _)| *k);
        out.extend_from_slice(b"data: {\"choices\":[{\"delta\":{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(v);
        }
        out.extend_from_slice(b"},\"finish_reason\":");
        match finish {
            Some(f) => {
                out.push(b'"');
                out.extend_from_slice(f.as_str().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"index\":0,\"logprobs\":null}],");
        self.render_tail();
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(b"\n\n");
    }

    /// The `role: assistant` chunk (sent before anything else; a no-op once sent).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if !self.role_sent {
            self.chunk(&[("content", b"\"\"")], None, out);
        }
    }

    pub fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        self.chunk(&[("content", &json_string(text))], None, out);
    }

    pub fn reasoning(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        self.chunk(&[("reasoning_content", &json_string(text))], None, out);
    }

    /// A thinking block's signature or a redacted block (LiteLLM streams them as `thinking_blocks`).
    pub fn thinking_block(&mut self, block: Value, out: &mut Vec<u8>) {
        let raw = serde_json::to_vec(&[block]).unwrap_or_else(|_| b"[]".to_vec());
        self.chunk(&[("thinking_blocks", &raw)], None, out);
    }

    /// A new tool call; returns its OpenAI `index`.
    pub fn tool_call_start(&mut self, id: &str, name: &str, out: &mut Vec<u8>) -> u32 {
        let index = self.tool_calls;
        self.tool_calls += 1;
        let mut raw = b"[{\"function\":{\"arguments\":\"\",\"name\":".to_vec();
        raw.extend_from_slice(&json_string(name));
        raw.extend_from_slice(b"},\"id\":");
        raw.extend_from_slice(&json_string(id));
        raw.extend_from_slice(b",\"index\":");
        raw.extend_from_slice(index.to_string().as_bytes());
        raw.extend_from_slice(b",\"type\":\"function\"}]");
        self.chunk(&[("tool_calls", &raw)], None, out);
        index
    }

    /// More argument text for the tool call at `index`.
    pub fn tool_call_args(&mut self, index: u32, args: &str, out: &mut Vec<u8>) {
        if args.is_empty() {
            return;
        }
        let mut raw = b"[{\"function\":{\"arguments\":".to_vec();
        raw.extend_from_slice(&json_string(args));
        raw.extend_from_slice(b"},\"index\":");
        raw.extend_from_slice(index.to_string().as_bytes());
        raw.extend_from_slice(b"}]");
        self.chunk(&[("tool_calls", &raw)], None, out);
    }

    /// Whether any tool call was streamed.
    pub fn saw_tool_calls(&self) -> bool {
        self.tool_calls > 0
    }

    /// The chunk carrying the finish reason (once).
    pub fn finish(&mut self, reason: FinishReason, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.chunk(&[], Some(reason), out);
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The usage chunk (`choices: []`), only when the client asked for it.
    pub fn usage(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        if !self.include_usage {
            return;
        }
        let v = serde_json::json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage_json(usage),
        });
        push_data(&v, out);
    }

    /// `data: [DONE]`.
    pub fn done(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// `data: <json>\n\n`.
pub fn push_data(v: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// `event: <name>\ndata: <json>\n\n` (Anthropic-style named events).
pub fn push_event(name: &str, v: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    push_data(v, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_parts_tools_and_formats() {
        let r = ChatRequest::parse(
            br#"{"model":"m","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"42"}],
              "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
              "tool_choice":{"type":"function","function":{"name":"f"}},
              "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}},
              "stop":"END","max_tokens":10}"#,
        )
        .unwrap();
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[1].parts().len(), 2);
        let Part::ImageUrl { image_url } = &r.messages[1].parts()[1] else {
            panic!("image part expected")
        };
        assert_eq!(
            Image::from_url(image_url.url()).unwrap(),
            Image::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            }
        );
        assert_eq!(r.stop_sequences(), vec!["END".to_string()]);
        assert_eq!(
            ToolChoice::parse(r.tool_choice.as_ref().unwrap()).unwrap(),
            ToolChoice::Function("f".into())
        );
        assert!(matches!(
            r.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert_eq!(r.max_output_tokens(), Some(10));
    }

    #[test]
    fn empty_messages_and_bad_images_are_400s() {
        assert_eq!(
            ChatRequest::parse(br#"{"messages":[]}"#)
                .unwrap_err()
                .param(),
            Some("messages")
        );
        assert!(Image::from_url("ftp://x").is_err());
        assert!(Image::from_url("data:image/png,raw").is_err());
    }

    #[test]
    fn chunk_writer_sends_role_once_then_deltas_finish_usage_done() {
        let mut w = ChunkWriter::new("alias", true);
        let mut out = Vec::new();
        w.text("Hel", &mut out);
        w.text("lo", &mut out);
        let i = w.tool_call_start("call_1", "f", &mut out);
        w.tool_call_args(i, "{}", &mut out);
        w.finish(FinishReason::ToolCalls, &mut out);
        w.finish(FinishReason::Stop, &mut out);
        w.usage(
            &Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
                ..Usage::default()
            },
            &mut out,
        );
        w.done(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\"role\":\"assistant\"").count(), 1);
        assert_eq!(text.matches("finish_reason\":\"tool_calls\"").count(), 1);
        assert!(!text.contains("finish_reason\":\"stop\""));
        assert!(text.contains("\"total_tokens\":3"));
        assert!(text.ends_with("data: [DONE]\n\n"));
        let mut quiet = ChunkWriter::new("a", false);
        let mut out = Vec::new();
        quiet.usage(&Usage::default(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn response_json_has_openai_shape() {
        let r = ChatResponse {
            model: "alias".into(),
            content: Some("hi".into()),
            usage: Usage {
                prompt_tokens: 5,
                completion_tokens: 1,
                total_tokens: 6,
                cached_tokens: 2,
                ..Usage::default()
            },
            ..ChatResponse::default()
        };
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "alias");
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 2);
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }
}
