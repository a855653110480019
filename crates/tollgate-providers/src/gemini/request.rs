//! OpenAI chat request -> Gemini `GenerateContentRequest`: messages to `contents` / `systemInstruction`, tools
//! to `functionDeclarations` (JSON schemas cleaned to Gemini's `Schema`), params to `generationConfig`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};
use tollgate_core::GatewayError;

use crate::chat::{
    ChatRequest, Content as ChatContent, Message, Part as ChatPart, ResponseFormat, ToolChoice,
};

/// The OpenAI chat params this provider translates (besides the gateway's own, see
/// [`crate::translate::GATEWAY_PARAMS`]). `parallel_tool_calls` is accepted and ignored: Gemini has no switch
/// for it. `safety_settings` is LiteLLM's Gemini param, sent as `safetySettings`.
pub const CHAT_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
    "thinking",
    "safety_settings",
];

/// Separates a tool call id from the Gemini thought signature carried in it (LiteLLM's convention), so the
/// signature goes back with the `functionCall` part on the next turn, as Gemini requires.
pub const THOUGHT_SIGNATURE_SEPARATOR: &str = "__thought__";

/// `GenerateContentRequest` (the model is in the URL).
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    pub contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_settings: Option<&'a Value>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub generation_config: GenerationConfig,
}

/// One turn: `role` `user` or `model` (none for the system instruction).
#[derive(Debug, Serialize)]
pub struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    pub parts: Vec<Part<'a>>,
}

/// A `Part`: exactly one of the data fields, plus a `thoughtSignature` on function calls that had one.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    pub mime_type: Cow<'a, str>,
    pub data: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData<'a> {
    pub mime_type: Cow<'a, str>,
    pub file_uri: &'a str,
}

#[derive(Debug, Serialize)]
pub struct FunctionCall<'a> {
    pub name: &'a str,
    pub args: Value,
}

#[derive(Debug, Serialize)]
pub struct FunctionResponse<'a> {
    pub name: &'a str,
    pub response: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool<'a> {
    pub function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Debug, Serialize)]
pub struct FunctionDeclaration<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// Left out for functions without parameters (Gemini refuses an object schema without properties).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig<'a> {
    pub function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig<'a> {
    /// `AUTO`, `ANY` or `NONE`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_schema.is_none()
            && self.thinking_config.is_none()
    }
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    pub thinking_budget: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
}

/// Translate a parsed chat request. `safety` is the `safety_settings` to send (the request's, else the
/// deployment's).
pub fn build<'a>(
    req: &'a ChatRequest,
    safety: Option<&'a Value>,
) -> Result<GenerateContentRequest<'a>, GatewayError> {
    let mut out = GenerateContentRequest {
        safety_settings: safety,
        ..GenerateContentRequest::default()
    };
    let mut system: Vec<Part<'a>> = Vec::new();
    // Tool call id -> function name, for the `functionResponse` of later tool messages.
    let mut names: HashMap<&'a str, &'a str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => text_parts(m, &mut system),
            "user" => {
                let mut parts = Vec::new();
                user_parts(m, &mut parts)?;
                push(&mut out.contents, "user", parts);
            }
            "assistant" => {
                let mut parts = Vec::new();
                text_parts(m, &mut parts);
                for call in m.tool_calls.iter().flatten() {
                    names.insert(call.id.as_str(), call.function.name.as_str());
                    let (_, signature) = split_thought_signature(&call.id);
                    parts.push(Part {
                        function_call: Some(FunctionCall {
                            name: &call.function.name,
                            args: arguments(&call.function.arguments, i)?,
                        }),
                        thought_signature: signature,
                        ..Part::default()
                    });
                }
                push(&mut out.contents, "model", parts);
            }
            "tool" | "function" => {
                let name = m
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| names.get(id).copied())
                    .or(m.name.as_deref())
                    .ok_or_else(|| {
                        GatewayError::invalid_param(
                            "messages",
                            format!(
                                "messages[{i}]: a tool message's `tool_call_id` must match a tool call of an earlier assistant message (Gemini needs the function's name)"
                            ),
                        )
                    })?;
                let text = m.text();
                let content = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
                let mut response = Map::new();
                response.insert("content".into(), content);
                push(
                    &mut out.contents,
                    "user",
                    vec![Part {
                        function_response: Some(FunctionResponse {
                            name,
                            response: Value::Object(response),
                        }),
                        ..Part::default()
                    }],
                );
            }
            other => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("messages[{i}]: unknown role `{other}`"),
                ));
            }
        }
    }
    if !system.is_empty() {
        if out.contents.is_empty() {
            // Gemini needs at least one turn: a system-only conversation is sent as the user's turn.
            out.contents.push(Content {
                role: Some("user"),
                parts: system,
            });
        } else {
            out.system_instruction = Some(Content {
                role: None,
                parts: system,
            });
        }
    }
    // One `$ref` inlining budget for all the request's schemas.
    let mut budget = InlineBudget::new();
    if let Some(tools) = &req.tools {
        let declarations: Vec<FunctionDeclaration<'a>> = tools
            .iter()
            .map(|t| FunctionDeclaration {
                name: &t.function.name,
                description: t.function.description.as_deref().filter(|d| !d.is_empty()),
                parameters: t
                    .function
                    .parameters
                    .as_ref()
                    .and_then(|p| function_parameters(p, &mut budget)),
            })
            .collect();
        if !declarations.is_empty() {
            out.tools.push(Tool {
                function_declarations: declarations,
            });
        }
    }
    if let Some(choice) = &req.tool_choice {
        let (mode, name) = match ToolChoice::parse(choice)? {
            ToolChoice::None => ("NONE", None),
            ToolChoice::Auto => ("AUTO", None),
            ToolChoice::Required => ("ANY", None),
            ToolChoice::Function(_) => {
                let name = choice
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str);
                ("ANY", name)
            }
        };
        out.tool_config = Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names: name.map(|n| [n]),
            },
        });
    }
    out.generation_config = generation_config(req, &mut budget);
    Ok(out)
}

fn generation_config(req: &ChatRequest, budget: &mut InlineBudget) -> GenerationConfig {
    let mut g = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        max_output_tokens: req.max_output_tokens(),
        stop_sequences: req.stop_sequences(),
        candidate_count: req.n.filter(|n| *n != 1),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        ..GenerationConfig::default()
    };
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => g.response_mime_type = Some("application/json"),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            g.response_mime_type = Some("application/json");
            g.response_schema = json_schema
                .schema
                .as_ref()
                .map(|s| clean_schema_within(s, budget));
        }
        Some(ResponseFormat::Text) | None => {}
    }
    let disabled = matches!(
        req.reasoning_effort.as_deref(),
        Some("none" | "disable" | "disabled")
    ) || req
        .thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) == Some("disabled"));
    g.thinking_config = if disabled {
        Some(ThinkingConfig {
            thinking_budget: 0,
            include_thoughts: None,
        })
    } else {
        req.thinking_budget().map(|b| ThinkingConfig {
            thinking_budget: b,
            include_thoughts: Some(true),
        })
    };
    g
}

/// Append `parts` as a turn of `role`, merged into the previous turn when it has the same role (parallel
/// function responses belong in one turn).
fn push<'a>(contents: &mut Vec<Content<'a>>, role: &'static str, parts: Vec<Part<'a>>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role),
            parts,
        }),
    }
}

/// The text parts of a message (other parts of system and assistant messages are not sent).
fn text_parts<'a>(m: &'a Message, out: &mut Vec<Part<'a>>) {
    match &m.content {
        Some(ChatContent::Text(t)) if !t.is_empty() => out.push(text(t)),
        None | Some(ChatContent::Text(_)) => {}
        Some(ChatContent::Parts(parts)) => {
            for p in parts {
                if let ChatPart::Text { text: t, .. } = p
                    && !t.is_empty()
                {
                    out.push(text(t));
                }
            }
        }
    }
}

fn text(t: &str) -> Part<'_> {
    Part {
        text: Some(t),
        ..Part::default()
    }
}

/// A user message's parts: text, images (inline data or file URIs), audio, files.
fn user_parts<'a>(m: &'a Message, out: &mut Vec<Part<'a>>) -> Result<(), GatewayError> {
    let parts = match &m.content {
        Some(ChatContent::Text(t)) if !t.is_empty() => {
            out.push(text(t));
            return Ok(());
        }
        None | Some(ChatContent::Text(_)) => return Ok(()),
        Some(ChatContent::Parts(parts)) => parts,
    };
    for p in parts {
        match p {
            ChatPart::Text { text: t, .. } if !t.is_empty() => out.push(text(t)),
            ChatPart::Text { .. } => {}
            ChatPart::ImageUrl { image_url } => out.push(media(image_url.url(), None)?),
            ChatPart::InputAudio { input_audio } => {
                let data = input_audio.get("data").and_then(Value::as_str);
                let format = input_audio.get("format").and_then(Value::as_str);
                let (Some(data), Some(format)) = (data, format) else {
                    return Err(GatewayError::invalid_param(
                        "messages",
                        "`input_audio` needs `data` (base64) and `format`",
                    ));
                };
                out.push(Part {
                    inline_data: Some(Blob {
                        mime_type: Cow::Owned(format!("audio/{format}")),
                        data,
                    }),
                    ..Part::default()
                });
            }
            ChatPart::File { file } => {
                let format = file.get("format").and_then(Value::as_str);
                let source = file
                    .get("file_data")
                    .or_else(|| file.get("file_id"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        GatewayError::invalid_param(
                            "messages",
                            "a `file` part needs `file_data` (a base64 data URL) or `file_id` (a file URI)",
                        )
                    })?;
                out.push(media(source, format)?);
            }
        }
    }
    Ok(())
}

/// A data URL as `inlineData`, anything else (an http(s) or Files API URI) as `fileData`.
fn media<'a>(url: &'a str, mime: Option<&'a str>) -> Result<Part<'a>, GatewayError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| GatewayError::invalid_param("messages", "a data URL has no `,`"))?;
        let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
            GatewayError::invalid_param(
                "messages",
                "a data URL must be base64 (`data:image/png;base64,...`)",
            )
        })?;
        return Ok(Part {
            inline_data: Some(Blob {
                mime_type: Cow::Borrowed(mime.unwrap_or(media_type)),
                data,
            }),
            ..Part::default()
        });
    }
    if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with("gs://")) {
        return Err(GatewayError::invalid_param(
            "messages",
            "an image or file URL must be an http(s) URL, a gs:// URI or a base64 data URL",
        ));
    }
    Ok(Part {
        file_data: Some(FileData {
            mime_type: Cow::Borrowed(mime.unwrap_or_else(|| mime_from_extension(url))),
            file_uri: url,
        }),
        ..Part::default()
    })
}

/// The media type of a URL by its extension (`image/jpeg` when unknown).
pub fn mime_from_extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.contains('/'))
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => "image/jpeg",
    }
}

/// A tool call's `arguments` (JSON text) as the `args` object.
fn arguments(text: &str, index: usize) -> Result<Value, GatewayError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(GatewayError::invalid_param(
            "messages",
            format!("messages[{index}]: tool call arguments must be a JSON object"),
        )),
    }
}

/// A tool call id and the thought signature it carries, if any.
pub fn split_thought_signature(id: &str) -> (&str, Option<&str>) {
    match id.split_once(THOUGHT_SIGNATURE_SEPARATOR) {
        Some((id, sig)) if !sig.is_empty() => (id, Some(sig)),
        _ => (id, None),
    }
}

/// A function's `parameters` for Gemini: cleaned, and left out when it declares no properties.
fn function_parameters(schema: &Value, budget: &mut InlineBudget) -> Option<Value> {
    let mut cleaned = clean_schema_within(schema, budget);
    let Value::Object(m) = &mut cleaned else {
        return None;
    };
    if m.get("properties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
    {
        return None;
    }
    m.entry("type").or_insert_with(|| Value::from("object"));
    Some(cleaned)
}

/// The fields of Gemini's `Schema` (an OpenAPI 3.0 subset); everything else is dropped.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// How deep `$ref`s are followed (recursive schemas end there as a plain object).
const MAX_SCHEMA_DEPTH: usize = 16;

/// How much `$ref` inlining may add to one request, in bytes of the inlined definitions' JSON. Definitions
/// that reference each other several times would otherwise grow exponentially until [`MAX_SCHEMA_DEPTH`] (a
/// 300-byte schema took gigabytes); once the budget is spent, `$ref`s become plain objects as at that depth.
const MAX_INLINED_BYTES: usize = 1 << 20;

/// What is left of [`MAX_INLINED_BYTES`] for one request.
#[derive(Debug)]
struct InlineBudget(usize);

impl InlineBudget {
    fn new() -> Self {
        InlineBudget(MAX_INLINED_BYTES)
    }

    /// Pay for inlining `def`; `false` (and nothing left for later `$ref`s) when it does not fit.
    fn take(&mut self, def: &Value) -> bool {
        /// Counts bytes written, failing once they pass `limit` (so a refused definition costs at most that).
        struct Counter {
            n: usize,
            limit: usize,
        }
        impl std::io::Write for Counter {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.n += b.len();
                if self.n > self.limit {
                    return Err(std::io::Error::other("over budget"));
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        if self.0 == 0 {
            return false;
        }
        let mut c = Counter {
            n: 0,
            limit: self.0,
        };
        if serde_json::to_writer(&mut c, def).is_ok() {
            self.0 -= c.n;
            true
        } else {
            self.0 = 0;
            false
        }
    }
}

/// A JSON schema as Gemini's `Schema` takes it, as LiteLLM cleans it: `$ref`s into `$defs`/`definitions`
/// inlined, `anyOf`/`type` lists with `null` turned into `nullable`, `const` into a one-value `enum`, and keys
/// Gemini rejects (`$schema`, `additionalProperties`, `strict`, `$defs`, ...) dropped; `required` keeps only
/// declared properties; string `format`s other than `enum`/`date-time` are dropped.
pub fn clean_schema(schema: &Value) -> Value {
    clean_schema_within(schema, &mut InlineBudget::new())
}

/// [`clean_schema`], inlining `$ref`s within what is left of `budget`.
fn clean_schema_within(schema: &Value, budget: &mut InlineBudget) -> Value {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions"));
    clean(schema, defs, 0, budget)
}

fn clean(v: &Value, defs: Option<&Value>, depth: usize, budget: &mut InlineBudget) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"));
        let target = name.and_then(|n| defs.and_then(|d| d.get(n)));
        let mut out = match target {
            Some(t) if depth < MAX_SCHEMA_DEPTH && budget.take(t) => {
                clean(t, defs, depth + 1, budget)
            }
            _ => Value::Object(Map::from_iter([("type".into(), Value::from("object"))])),
        };
        if let (Value::Object(o), Some(d)) = (&mut out, m.get("description")) {
            o.insert("description".into(), d.clone());
        }
        return out;
    }
    let mut out = Map::new();
    let mut nullable = false;
    for (k, val) in m {
        match k.as_str() {
            "properties" => {
                if let Value::Object(props) = val {
                    let props: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), clean(s, defs, depth, budget)))
                        .collect();
                    if !props.is_empty() {
                        out.insert(k.clone(), Value::Object(props));
                    }
                }
            }
            "items" => {
                let item = match val {
                    Value::Array(tuple) => {
                        tuple.first().cloned().unwrap_or(Value::Object(Map::new()))
                    }
                    other => other.clone(),
                };
                out.insert(k.clone(), clean(&item, defs, depth, budget));
            }
            "anyOf" | "oneOf" => {
                let Value::Array(variants) = val else {
                    continue;
                };
                let mut kept = Vec::new();
                for variant in variants {
                    if variant.get("type").and_then(Value::as_str) == Some("null") {
                        nullable = true;
                    } else {
                        kept.push(clean(variant, defs, depth, budget));
                    }
                }
                if kept.len() == 1 {
                    if let Some(Value::Object(only)) = kept.pop() {
                        for (ok, ov) in only {
                            out.entry(ok).or_insert(ov);
                        }
                    }
                } else if !kept.is_empty() {
                    out.insert("anyOf".into(), Value::Array(kept));
                }
            }
            "allOf" => {
                let Value::Array(all) = val else { continue };
                for part in all {
                    if let Value::Object(p) = clean(part, defs, depth, budget) {
                        for (pk, pv) in p {
                            merge_key(&mut out, pk, pv);
                        }
                    }
                }
            }
            "type" => match val {
                Value::Array(types) => {
                    let kept: Vec<&Value> = types
                        .iter()
                        .filter(|t| {
                            let null = t.as_str() == Some("null");
                            nullable |= null;
                            !null
                        })
                        .collect();
                    match kept.as_slice() {
                        [one] => {
                            out.insert("type".into(), (*one).clone());
                        }
                        [] => {}
                        many => {
                            let variants = many
                                .iter()
                                .map(|t| {
                                    Value::Object(Map::from_iter([("type".into(), (*t).clone())]))
                                })
                                .collect();
                            out.insert("anyOf".into(), Value::Array(variants));
                        }
                    }
                }
                Value::String(t) if t == "null" => nullable = true,
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), Value::Array(vec![val.clone()]));
            }
            key if SCHEMA_KEYS.contains(&key) => {
                out.entry(k.clone()).or_insert_with(|| val.clone());
            }
            _ => {}
        }
    }
    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    let is_string = out
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("string"));
    if is_string
        && out
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| f != "enum" && f != "date-time")
    {
        out.remove("format");
    }
    if let Some(Value::Array(required)) = out.get("required") {
        let props = out.get("properties").and_then(Value::as_object);
        let kept: Vec<Value> = required
            .iter()
            .filter(|r| {
                r.as_str()
                    .is_some_and(|n| props.is_some_and(|p| p.contains_key(n)))
            })
            .cloned()
            .collect();
        if kept.is_empty() {
            out.remove("required");
        } else {
            out.insert("required".into(), Value::Array(kept));
        }
    }
    Value::Object(out)
}

/// `allOf` merging: properties and required lists are unioned, other keys keep their first value.
fn merge_key(out: &mut Map<String, Value>, k: String, v: Value) {
    match (out.get_mut(&k), v) {
        (Some(Value::Object(have)), Value::Object(add)) if k == "properties" => {
            for (pk, pv) in add {
                have.entry(pk).or_insert(pv);
            }
        }
        (Some(Value::Array(have)), Value::Array(add)) if k == "required" => {
            for r in add {
                if !have.contains(&r) {
                    have.push(r);
                }
            }
        }
        (Some(_), _) => {}
        (None, v) => {
            out.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(body: Value) -> Value {
        let req = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        serde_json::to_value(build(&req, None).unwrap()).unwrap()
    }

    #[test]
    fn full_conversation_snapshot() {
        let v = translate(json!({
            "model": "g",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": "https://example.com/cat.webp?size=2"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/photo"}}
                ]},
                {"role": "assistant", "content": "Let me check the weather.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2__thought__c2lnbmF0dXJl", "type": "function", "function": {"name": "time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
                {"role": "tool", "tool_call_id": "call_2__thought__c2lnbmF0dXJl", "content": "noon"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "weather", "description": "Weather by city", "strict": true,
                  "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "properties": {"city": {"type": "string", "format": "uri"},
                                   "unit": {"anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "null"}]}},
                    "required": ["city", "ghost"], "additionalProperties": false}}},
                {"type": "function", "function": {"name": "time", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_completion_tokens": 100,
            "stop": ["END"], "n": 2, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.3,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": ["integer", "null"]}},
                           "additionalProperties": false}}},
            "reasoning_effort": "medium"
        }));
        insta::assert_json_snapshot!("gemini_request_full", v);
    }

    #[test]
    fn system_only_and_choices() {
        let v = translate(
            json!({"messages": [{"role": "system", "content": "hello"}], "tool_choice": "required"}),
        );
        assert_eq!(
            v["contents"],
            json!([{"role": "user", "parts": [{"text": "hello"}]}])
        );
        assert!(v.get("systemInstruction").is_none());
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        let v = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none",
            "thinking": {"type": "disabled"}, "response_format": {"type": "json_object"}}),
        );
        assert_eq!(v["toolConfig"]["functionCallingConfig"]["mode"], "NONE");
        assert_eq!(
            v["generationConfig"],
            json!({"responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 0}})
        );
        let v = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 5000}}),
        );
        assert_eq!(
            v["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 5000, "includeThoughts": true})
        );
        let v = translate(json!({"messages": [{"role": "user", "content": "x"}], "n": 1}));
        assert!(v.get("generationConfig").is_none());
    }

    /// Found with the `request_parse` fuzz target: definitions referencing each other several times grew
    /// exponentially (4 `$ref`s a level, 16 levels: this 300-byte body took over 2 GB before the budget).
    #[test]
    fn ref_inlining_is_bounded() {
        let body = br##"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"object","properties":{"p":{"$ref":"#/$defs/a"},"q":{"$ref":"#/$defs/a"},"r":{"$ref":"#/$defs/a"},"s":{"$ref":"#/$defs/a"}}}}}}}]}"##;
        let req = ChatRequest::parse(body).unwrap();
        let native = serde_json::to_vec(&build(&req, None).unwrap()).unwrap();
        assert!(
            native.len() < 2 * MAX_INLINED_BYTES,
            "{} bytes",
            native.len()
        );
        let v: Value = serde_json::from_slice(&native).unwrap();
        let params = &v["tools"][0]["functionDeclarations"][0]["parameters"];
        // Inlining still happens while the budget lasts...
        assert_eq!(
            params["properties"]["a"]["properties"]["p"]["type"],
            "object"
        );
        // ...and the budget is shared by the request's schemas: a second tool gets what the first left.
        let mut budget = InlineBudget::new();
        let whole: Value = serde_json::from_slice(body).unwrap();
        let schema = &whole["tools"][0]["function"]["parameters"];
        let _ = clean_schema_within(schema, &mut budget);
        assert_eq!(budget.0, 0);
        let small =
            json!({"properties": {"x": {"$ref": "#/$defs/d"}}, "$defs": {"d": {"type": "string"}}});
        assert_eq!(
            clean_schema_within(&small, &mut budget)["properties"]["x"],
            json!({"type": "object"})
        );
        assert_eq!(
            clean_schema(&small)["properties"]["x"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn bad_messages_are_400s() {
        let parse = |v: Value| {
            let req = ChatRequest::parse(v.to_string().as_bytes()).unwrap();
            build(&req, None).map(|_| ()).unwrap_err()
        };
        let e =
            parse(json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}));
        assert_eq!(e.param(), Some("messages"));
        let e = parse(
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1]"}}]}]}),
        );
        assert!(e.to_string().contains("JSON object"));
        let e = parse(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
        );
        assert_eq!(e.param(), Some("messages"));
        let e = parse(json!({"messages": [{"role": "wizard", "content": "x"}]}));
        assert!(e.to_string().contains("unknown role"));
    }

    #[test]
    fn schema_cleaning() {
        let s = clean_schema(&json!({
            "type": "object", "title": "T", "strict": true,
            "properties": {
                "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "kind": {"const": "a"},
                "when": {"type": "string", "format": "date-time"},
                "both": {"type": ["string", "number"]},
                "node": {"$ref": "#/definitions/Node", "description": "a node"},
                "mixed": {"allOf": [{"properties": {"x": {"type": "integer"}}, "required": ["x"]}, {"properties": {"y": {"type": "integer"}}}]}
            },
            "definitions": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/Node"}}}}
        }));
        assert_eq!(s["properties"]["kind"], json!({"enum": ["a"]}));
        assert_eq!(s["properties"]["when"]["format"], "date-time");
        assert_eq!(
            s["properties"]["both"],
            json!({"anyOf": [{"type": "string"}, {"type": "number"}]})
        );
        assert_eq!(s["properties"]["node"]["description"], "a node");
        assert_eq!(s["properties"]["mixed"]["required"], json!(["x"]));
        assert!(s["properties"]["mixed"]["properties"]["y"].is_object());
        assert!(s.get("strict").is_none() && s.get("definitions").is_none());
        // Recursion ends in a plain object.
        let mut depth = 0;
        let mut node = &s["properties"]["node"];
        while let Some(child) = node.get("properties").and_then(|p| p.get("child")) {
            node = child;
            depth += 1;
        }
        assert!(depth <= MAX_SCHEMA_DEPTH + 1, "{depth}");
    }

    #[test]
    fn mime_types_from_extensions() {
        assert_eq!(mime_from_extension("https://x/a.PNG"), "image/png");
        assert_eq!(
            mime_from_extension("https://x/a.pdf?sig=1"),
            "application/pdf"
        );
        assert_eq!(mime_from_extension("https://x.example/photo"), "image/jpeg");
        assert_eq!(
            split_thought_signature("call_1__thought__abc"),
            ("call_1", Some("abc"))
        );
        assert_eq!(split_thought_signature("call_1"), ("call_1", None));
    }
}
