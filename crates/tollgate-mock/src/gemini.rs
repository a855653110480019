//! The Google Gemini API (AI Studio) wire format: `generateContent`, `streamGenerateContent`, `countTokens`,
//! `embedContent` and `batchEmbedContents` on `/v1beta/models/{model}:{method}`, with Google's error shape.
//!
//! Paths: `/v1beta/models/{model}:{method}`, also `/v1/models/...` and `/models/...`. The `{model}` segment
//! is percent-decoded before knobs are read from its `@k=v,...` suffix (so `gemini-2.0-flash@status=429`
//! and `gemini-2.0-flash%40status%3D429` are the same). Only `POST` is served.
//!
//! | method | answer |
//! |---|---|
//! | `generateContent` | a `GenerateContentResponse`: `candidates[]` (`content.parts`, `finishReason`, `index`), `usageMetadata`, `modelVersion`, `responseId` |
//! | `streamGenerateContent?alt=sse` | `text/event-stream` of `data: <GenerateContentResponse>` events (`\r\n\r\n`-terminated, no `[DONE]`); the last one carries `finishReason` and the full `usageMetadata` |
//! | `streamGenerateContent` (no `alt=sse`) | the same objects as one streamed JSON array (`[{..}`, `,\r\n{..}`, ..., `]`), as Google answers without `alt=sse` |
//! | `countTokens` | `{"totalTokens": N}` for `contents` (or `generateContentRequest.contents`) |
//! | `embedContent` | `{"embedding": {"values": [...]}}` |
//! | `batchEmbedContents` | `{"embeddings": [{"values": [...]}, ...]}`; each request's `model` must be `models/{model}` of the URL |
//!
//! Requests are checked like Google does: unknown fields are a 400 (`Invalid JSON payload received. Unknown
//! name ...`), as are roles other than `user`/`model`, empty `contents` or `parts`, a part with two data
//! fields, JSON-schema keys Gemini's `Schema` does not have (e.g. `additionalProperties`, `$schema`) in
//! `functionDeclarations[].parameters` or `responseSchema`, a function whose `parameters` is an object without
//! properties, more than 5 `stopSequences`, and an unknown `functionCallingConfig.mode`.
//!
//! Behaviour (the wire-independent rules of the crate, in Gemini's words): the answer is knob `content`, else
//! `echo` (text of the last `user` turn), else the default sentence; `generationConfig.stopSequences` and
//! `maxOutputTokens` cut it (`finishReason` `STOP` / `MAX_TOKENS`); `responseMimeType: application/json`
//! answers `{"text": ...}`; knob `tool_call` with `functionDeclarations` (or `functionCallingConfig.mode:
//! ANY`, which picks `allowedFunctionNames[0]` or the first function) answers one `functionCall` part (args:
//! knob `content` if it is a JSON object, else `{"content": <text>}`, else `{}`) with `finishReason: STOP`;
//! mode `NONE` never calls. `candidateCount` > 1 answers that many identical candidates (non-streaming; a
//! stream carries candidate 0 only). Usage: `promptTokenCount` = the crate's prompt estimate over all text
//! parts (system instruction and function responses included), `candidatesTokenCount` = words of the answer
//! (≥ 1 for a call) times the candidates, `totalTokenCount` = prompt + candidates + thoughts. Knob
//! `cached_tokens=N` reports `cachedContentTokenCount: N` (part of `promptTokenCount`, which is raised to N
//! if smaller); `reasoning_tokens=N` reports `thoughtsTokenCount: N` and, when
//! `generationConfig.thinkingConfig.includeThoughts` is true, a `{"text": ..., "thought": true}` part first.
//! Knob `finish=content_filter` withholds the answer: `finishReason: SAFETY` with `safetyRatings`;
//! `finish=length` gives `MAX_TOKENS`.
//!
//! Failures use Google's body `{"error":{"code":N,"message":"...","status":"RESOURCE_EXHAUSTED"}}` (400
//! `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND`, 429
//! `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`); `retry_after` adds a
//! `google.rpc.RetryInfo` detail (`retryDelay: "Ns"`) besides the `Retry-After` header; another `error_code`
//! is given as a `google.rpc.ErrorInfo` detail's `reason`. `error_code=context_length_exceeded` answers 400
//! "The input token count (N) exceeds the maximum number of tokens allowed (1048576)." (N = 1048576 + the
//! prompt tokens). `error_code=content_policy_violation` (or `content_filter`) answers like Gemini blocks a
//! prompt: 200 with no candidates and `promptFeedback: {"blockReason": "SAFETY", "safetyRatings": [...]}`
//! (streams: one such event); with an explicit `status` knob it is instead an error of that status whose
//! message says the prompt was blocked for safety.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::MockBody;
use crate::knobs::{Finish, Knobs};
use crate::router::Req;
use crate::state::Shared;
use crate::text::{self, DEFAULT_CONTENT, Ending};
use crate::{embeddings, ids, respond};

/// The context window the `context_length_exceeded` error reports (Gemini 2.x's).
const CONTEXT_LIMIT: u64 = 1_048_576;
/// Largest `candidateCount` answered.
const MAX_CANDIDATES: u32 = 8;
/// The thinking text shown with `includeThoughts`.
const THOUGHT_TEXT: &str = "Thinking about how to answer this.";
/// Gemini's limit on `stopSequences`.
const MAX_STOP_SEQUENCES: usize = 5;

/// The fields Gemini's `Schema` object has (function parameters and `responseSchema`).
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

pub(crate) async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let rest = ["/v1beta", "/v1"]
        .iter()
        .find_map(|v| req.path.strip_prefix(v).filter(|p| p.starts_with('/')))
        .unwrap_or(req.path);
    let Some((raw_model, method)) = rest
        .strip_prefix("/models/")
        .and_then(|t| t.rsplit_once(':'))
    else {
        return not_found(req);
    };
    if req.method != Method::POST {
        return not_found(req);
    }
    let Some(model) = percent_decode(raw_model) else {
        return google_error(
            400,
            "Invalid resource name: the model segment is not valid percent-encoded UTF-8.",
            None,
        );
    };
    let alt_sse = req
        .query
        .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    match method {
        "generateContent" => generate(shared, req, &model, Mode::Complete).await,
        "streamGenerateContent" => {
            let mode = if alt_sse { Mode::Sse } else { Mode::JsonArray };
            generate(shared, req, &model, mode).await
        }
        "countTokens" => count_tokens(shared, req, &model).await,
        "embedContent" => embed(shared, req, &model, false).await,
        "batchEmbedContents" => embed(shared, req, &model, true).await,
        _ => not_found(req),
    }
}

fn not_found(req: &Req<'_>) -> Response<MockBody> {
    google_error(
        404,
        &format!("Method not found: {} {}", req.method, req.path),
        None,
    )
}

/// How a generate call answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Complete,
    Sse,
    JsonArray,
}

// ---------------------------------------------------------------------------------------------------------
// Request types (Google rejects unknown fields, so these do too).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct GenerateRequest<'a> {
    #[serde(borrow, default)]
    contents: Vec<Content<'a>>,
    #[serde(borrow, default, alias = "system_instruction")]
    system_instruction: Option<Content<'a>>,
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(default, alias = "tool_config")]
    tool_config: Option<ToolConfig>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
    #[serde(default, alias = "safety_settings")]
    safety_settings: Option<Vec<SafetySetting>>,
    #[serde(default, alias = "cached_content")]
    cached_content: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct Content<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parts: Vec<Part<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    inline_data: Option<Blob>,
    #[serde(default)]
    file_data: Option<FileData>,
    #[serde(default)]
    function_call: Option<FunctionCall>,
    #[serde(default)]
    function_response: Option<FunctionResponse>,
    #[serde(default)]
    executable_code: Option<Value>,
    #[serde(default)]
    code_execution_result: Option<Value>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    thought_signature: Option<String>,
    #[serde(default)]
    video_metadata: Option<Value>,
    #[serde(default)]
    part_metadata: Option<Value>,
}

impl Part<'_> {
    /// How many of the `data` oneof fields are set (Google wants exactly one).
    fn data_fields(&self) -> usize {
        [
            self.text.is_some(),
            self.inline_data.is_some(),
            self.file_data.is_some(),
            self.function_call.is_some(),
            self.function_response.is_some(),
            self.executable_code.is_some(),
            self.code_execution_result.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct Blob {
    mime_type: String,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct FileData {
    #[serde(default)]
    mime_type: Option<String>,
    file_uri: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct FunctionCall {
    name: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct FunctionResponse {
    name: String,
    response: Value,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct Tool {
    #[serde(default)]
    function_declarations: Option<Vec<FunctionDeclaration>>,
    #[serde(default)]
    google_search: Option<Value>,
    #[serde(default)]
    google_search_retrieval: Option<Value>,
    #[serde(default)]
    code_execution: Option<Value>,
    #[serde(default)]
    url_context: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct FunctionDeclaration {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    parameters_json_schema: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
    #[serde(default)]
    behavior: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct ToolConfig {
    #[serde(default)]
    function_calling_config: Option<FunctionCallingConfig>,
    #[serde(default)]
    retrieval_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct FunctionCallingConfig {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    allowed_function_names: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct GenerationConfig {
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    response_mime_type: Option<String>,
    #[serde(default)]
    response_schema: Option<Value>,
    #[serde(default)]
    response_json_schema: Option<Value>,
    #[serde(default)]
    response_modalities: Option<Vec<String>>,
    #[serde(default)]
    candidate_count: Option<u32>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    response_logprobs: Option<bool>,
    #[serde(default)]
    logprobs: Option<u32>,
    #[serde(default)]
    enable_enhanced_civic_answers: Option<bool>,
    #[serde(default)]
    speech_config: Option<Value>,
    #[serde(default)]
    thinking_config: Option<ThinkingConfig>,
    #[serde(default)]
    media_resolution: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct ThinkingConfig {
    #[serde(default)]
    include_thoughts: Option<bool>,
    #[serde(default)]
    thinking_budget: Option<i64>,
    #[serde(default)]
    thinking_level: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct SafetySetting {
    category: String,
    threshold: String,
    #[serde(default)]
    method: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// generateContent / streamGenerateContent

/// What the model answers with.
enum Answer<'a> {
    Text(Cow<'a, str>),
    Call {
        name: String,
        args: Value,
        words: u64,
    },
}

async fn generate(shared: &Shared, req: &Req<'_>, model: &str, mode: Mode) -> Response<MockBody> {
    let body: GenerateRequest<'_> = match serde_json::from_slice(req.body) {
        Ok(b) => b,
        Err(e) => return invalid_json(&e),
    };
    if let Err(msg) = validate(&body) {
        return google_error(400, &msg, None);
    }
    let knobs = match shared.knobs(req.headers, Some(model)) {
        Ok(k) => k,
        Err(msg) => return google_error(400, &msg, None),
    };
    let prompt_tokens = text::prompt_tokens(prompt_chars(&body));
    let blocked = match faults(shared, &knobs, model, prompt_tokens).await {
        Some(Fault::Respond(resp)) => return resp,
        Some(Fault::Blocked) => true,
        None => false,
    };
    let id = ids::new_id("");
    if blocked {
        let v = json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": safety_ratings()},
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
            "modelVersion": model,
            "responseId": id,
        });
        return answer_events(vec![v], mode, &knobs);
    }
    let config = body.generation_config.as_ref();
    let json_mode = config
        .and_then(|c| c.response_mime_type.as_deref())
        .is_some_and(|m| m == "application/json");
    let include_thoughts = config
        .and_then(|c| c.thinking_config.as_ref())
        .and_then(|t| t.include_thoughts)
        .unwrap_or(false);
    let candidates = config
        .and_then(|c| c.candidate_count)
        .unwrap_or(1)
        .clamp(1, MAX_CANDIDATES);
    let answer = answer(&body, &knobs);
    let (answer, ending) = match answer {
        Answer::Text(t) => {
            let stop = config
                .and_then(|c| c.stop_sequences.clone())
                .unwrap_or_default();
            let (shaped, ending) =
                text::shape_answer(&t, &stop, config.and_then(|c| c.max_output_tokens));
            let shaped = if json_mode {
                text::json_answer(&shaped)
            } else {
                shaped
            };
            (Answer::Text(Cow::Owned(shaped)), ending)
        }
        call => (call, Ending::Done),
    };
    let finish = match (knobs.finish, ending) {
        (Some(Finish::ContentFilter), _) => "SAFETY",
        (Some(Finish::Length), _) => "MAX_TOKENS",
        (Some(Finish::Stop), _) => "STOP",
        (None, Ending::MaxTokens) => "MAX_TOKENS",
        (None, _) => "STOP",
    };
    let withheld = finish == "SAFETY";
    let completion = if withheld {
        0
    } else {
        match &answer {
            Answer::Text(t) => text::word_count(t),
            Answer::Call { words, .. } => (*words).max(1),
        }
    };
    let thoughts = knobs.reasoning_tokens.unwrap_or(0);
    let cached = knobs.cached_tokens.unwrap_or(0);
    let streamed = mode != Mode::Complete;
    let n = if streamed { 1 } else { candidates };
    let usage = usage_json(prompt_tokens, completion * u64::from(n), thoughts, cached);
    let thought_part = (thoughts > 0 && include_thoughts && !withheld)
        .then(|| json!({"text": THOUGHT_TEXT, "thought": true}));
    let candidate = |index: u32, parts: Vec<Value>, finish: Option<&str>| {
        let mut c = serde_json::Map::new();
        if !parts.is_empty() {
            c.insert("content".into(), json!({"parts": parts, "role": "model"}));
        }
        if let Some(f) = finish {
            c.insert("finishReason".into(), Value::from(f));
            if f == "SAFETY" {
                c.insert("safetyRatings".into(), safety_ratings());
            }
        }
        c.insert("index".into(), Value::from(index));
        Value::Object(c)
    };
    let response = |cands: Vec<Value>, usage: Value| json!({"candidates": cands, "usageMetadata": usage, "modelVersion": model, "responseId": id});
    let answer_parts = || -> Vec<Value> {
        if withheld {
            return Vec::new();
        }
        let mut parts: Vec<Value> = thought_part.iter().cloned().collect();
        parts.push(match &answer {
            Answer::Text(t) => json!({"text": t}),
            Answer::Call { name, args, .. } => {
                json!({"functionCall": {"name": name, "args": args}})
            }
        });
        parts
    };
    if !streamed {
        if knobs.reset_after_chunks.is_some() {
            return respond::aborted_json();
        }
        let cands = (0..n)
            .map(|i| candidate(i, answer_parts(), Some(finish)))
            .collect();
        return respond::ok(response(cands, usage).to_string());
    }
    // Streams: a thinking event, then the text in `chunks` pieces (or one call event); the last event has
    // the finish reason and the full usage, earlier ones only the prompt count (as Gemini sends them).
    let partial = json!({"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"]});
    let mut events = Vec::new();
    match &answer {
        Answer::Text(t) if !withheld => {
            if let Some(p) = &thought_part {
                events.push(response(
                    vec![candidate(0, vec![p.clone()], None)],
                    partial.clone(),
                ));
            }
            let pieces = text::split_chunks(t, knobs.chunks.unwrap_or(3));
            let last = pieces.len().saturating_sub(1);
            for (i, piece) in pieces.iter().enumerate() {
                let parts = vec![json!({"text": piece})];
                if i == last {
                    events.push(response(
                        vec![candidate(0, parts, Some(finish))],
                        usage.clone(),
                    ));
                } else {
                    events.push(response(vec![candidate(0, parts, None)], partial.clone()));
                }
            }
        }
        _ => events.push(response(
            vec![candidate(0, answer_parts(), Some(finish))],
            usage,
        )),
    }
    answer_events(events, mode, &knobs)
}

/// A complete body of one object, an SSE stream or a streamed JSON array, per `mode`.
fn answer_events(events: Vec<Value>, mode: Mode, knobs: &Knobs) -> Response<MockBody> {
    match mode {
        Mode::Complete => {
            if knobs.reset_after_chunks.is_some() {
                return respond::aborted_json();
            }
            let v = events.into_iter().next().unwrap_or(Value::Null);
            respond::ok(v.to_string())
        }
        Mode::Sse => {
            let frames = events
                .iter()
                .map(|v| Bytes::from(format!("data: {v}\r\n\r\n")))
                .collect();
            respond::sse(frames, knobs.pacing())
        }
        Mode::JsonArray => {
            let last = events.len().saturating_sub(1);
            let frames = events
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let open = if i == 0 { "[" } else { ",\r\n" };
                    let close = if i == last { "]" } else { "" };
                    Bytes::from(format!("{open}{v}{close}"))
                })
                .collect();
            let mut resp = Response::new(MockBody::events(frames, knobs.pacing()));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

/// The tool call asked for (knob `tool_call`, or a forced `ANY` mode), else the text answer.
fn answer<'a>(body: &'a GenerateRequest<'a>, knobs: &'a Knobs) -> Answer<'a> {
    let declared: Vec<&str> = body
        .tools
        .iter()
        .flat_map(|t| t.function_declarations.iter().flatten())
        .map(|f| f.name.as_str())
        .collect();
    let calling = body
        .tool_config
        .as_ref()
        .and_then(|t| t.function_calling_config.as_ref());
    let mode = calling.and_then(|c| c.mode.as_deref()).unwrap_or("AUTO");
    let forced = calling
        .and_then(|c| c.allowed_function_names.as_ref())
        .and_then(|n| n.first())
        .map(String::as_str);
    if let Some(first) = declared.first()
        && !mode.eq_ignore_ascii_case("NONE")
    {
        let name = match knobs.tool_call.as_deref() {
            Some("") => Some(forced.unwrap_or(first)),
            Some(name) => Some(name),
            None if mode.eq_ignore_ascii_case("ANY") => Some(forced.unwrap_or(first)),
            None => None,
        };
        if let Some(name) = name {
            let raw = knobs.content.as_deref();
            let args = match raw.map(serde_json::from_str::<Value>) {
                Some(Ok(v @ Value::Object(_))) => v,
                Some(_) => json!({"content": raw}),
                None => json!({}),
            };
            return Answer::Call {
                name: name.to_owned(),
                args,
                words: text::word_count(raw.unwrap_or("{}")),
            };
        }
    }
    if knobs.echo {
        let last_user = body
            .contents
            .iter()
            .rev()
            .filter(|c| c.role.as_deref().is_none_or(|r| r == "user"))
            .find(|c| c.parts.iter().any(|p| p.text.is_some()));
        let text: String = last_user
            .map(|c| c.parts.iter().filter_map(|p| p.text.as_deref()).collect())
            .unwrap_or_default();
        return Answer::Text(Cow::Owned(text));
    }
    Answer::Text(Cow::Borrowed(
        knobs.content.as_deref().unwrap_or(DEFAULT_CONTENT),
    ))
}

/// Characters of all prompt text: system instruction, text parts, and function responses (their
/// `content` text, else the JSON of the response).
fn prompt_chars(body: &GenerateRequest<'_>) -> usize {
    body.system_instruction
        .iter()
        .chain(&body.contents)
        .flat_map(|c| &c.parts)
        .map(|p| {
            if let Some(t) = &p.text {
                return text::chars(t);
            }
            match &p.function_response {
                Some(r) => match r.response.get("content") {
                    Some(Value::String(s)) => text::chars(s),
                    Some(v) => text::chars(&v.to_string()),
                    None => text::chars(&r.response.to_string()),
                },
                None => 0,
            }
        })
        .sum()
}

/// Gemini's `usageMetadata` (zero counts left out, as Google's proto JSON does).
fn usage_json(prompt: u64, candidates: u64, thoughts: u64, cached: u64) -> Value {
    let prompt = prompt.max(cached);
    let mut m = serde_json::Map::new();
    m.insert("promptTokenCount".into(), prompt.into());
    if candidates > 0 {
        m.insert("candidatesTokenCount".into(), candidates.into());
    }
    m.insert(
        "totalTokenCount".into(),
        (prompt + candidates + thoughts).into(),
    );
    if cached > 0 {
        m.insert("cachedContentTokenCount".into(), cached.into());
    }
    if thoughts > 0 {
        m.insert("thoughtsTokenCount".into(), thoughts.into());
    }
    m.insert(
        "promptTokensDetails".into(),
        json!([{"modality": "TEXT", "tokenCount": prompt}]),
    );
    Value::Object(m)
}

fn safety_ratings() -> Value {
    json!([
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    ])
}

/// Google's checks of a request, with its wording.
fn validate(body: &GenerateRequest<'_>) -> Result<(), String> {
    if body.contents.is_empty() {
        return Err("* GenerateContentRequest.contents: contents is not specified\n".into());
    }
    for (i, c) in body.contents.iter().enumerate() {
        if let Some(role) = c.role.as_deref()
            && !matches!(role, "user" | "model" | "function" | "")
        {
            return Err(format!(
                "Please use a valid role: user, model. (got {role:?} at contents[{i}])"
            ));
        }
        if c.parts.is_empty() {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            ));
        }
    }
    let all = body.system_instruction.iter().chain(&body.contents);
    for (i, c) in all.enumerate() {
        for (j, p) in c.parts.iter().enumerate() {
            match p.data_fields() {
                1 => {}
                0 if p.thought_signature.is_some() || p.thought.is_some() => {}
                0 => {
                    return Err(format!(
                        "* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field\n"
                    ));
                }
                _ => {
                    return Err(format!(
                        "Invalid value at 'contents[{i}].parts[{j}]': oneof field 'data' is already set. Cannot set 'data'"
                    ));
                }
            }
            if let Some(b) = &p.inline_data {
                use base64::Engine;
                if b.mime_type.is_empty()
                    || base64::engine::general_purpose::STANDARD
                        .decode(&b.data)
                        .is_err()
                {
                    return Err(format!(
                        "Invalid value at 'contents[{i}].parts[{j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed"
                    ));
                }
            }
            if let Some(f) = &p.file_data
                && f.file_uri.is_empty()
            {
                return Err(format!(
                    "* GenerateContentRequest.contents[{i}].parts[{j}].file_data.file_uri: file_uri must not be empty\n"
                ));
            }
            if let Some(call) = &p.function_call
                && call.args.as_ref().is_some_and(|a| !a.is_object())
            {
                return Err(format!(
                    "Invalid value at 'contents[{i}].parts[{j}].function_call.args' (type.googleapis.com/google.protobuf.Struct), expected an object"
                ));
            }
            if let Some(r) = &p.function_response
                && !r.response.is_object()
            {
                return Err(format!(
                    "Invalid value at 'contents[{i}].parts[{j}].function_response.response' (type.googleapis.com/google.protobuf.Struct), expected an object"
                ));
            }
        }
    }
    for (i, t) in body.tools.iter().enumerate() {
        for (j, f) in t.function_declarations.iter().flatten().enumerate() {
            if f.name.is_empty() {
                return Err(format!(
                    "* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Name cannot be empty.\n"
                ));
            }
            if let Some(p) = &f.parameters {
                let at = format!("tools[{i}].function_declarations[{j}].parameters");
                check_schema(p, &at)?;
                let is_object = p
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("object"));
                let empty = p
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(serde_json::Map::is_empty);
                if is_object && empty {
                    return Err(format!(
                        "* GenerateContentRequest.{at}.properties: should be non-empty for OBJECT type\n"
                    ));
                }
            }
        }
    }
    if let Some(c) = body
        .tool_config
        .as_ref()
        .and_then(|t| t.function_calling_config.as_ref())
        && let Some(mode) = &c.mode
        && !["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(mode))
    {
        return Err(format!(
            "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\""
        ));
    }
    if let Some(g) = &body.generation_config {
        if let Some(s) = &g.response_schema {
            check_schema(s, "generation_config.response_schema")?;
        }
        if g.stop_sequences
            .as_ref()
            .is_some_and(|s| s.len() > MAX_STOP_SEQUENCES)
        {
            return Err(format!(
                "* GenerateContentRequest.generation_config.stop_sequences: at most {MAX_STOP_SEQUENCES} stop sequences are allowed\n"
            ));
        }
        if g.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(
                "* GenerateContentRequest.generation_config.temperature: temperature must be in [0.0, 2.0]\n"
                    .into(),
            );
        }
        if g.candidate_count == Some(0) {
            return Err(
                "* GenerateContentRequest.generation_config.candidate_count: must be positive\n"
                    .into(),
            );
        }
    }
    Ok(())
}

/// A `Schema` with only the fields Gemini's `Schema` has (recursively).
fn check_schema(v: &Value, at: &str) -> Result<(), String> {
    let Value::Object(m) = v else {
        return Err(format!(
            "Invalid JSON payload received. Expected an object at '{at}'."
        ));
    };
    for (k, val) in m {
        if !SCHEMA_KEYS.contains(&k.as_str()) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
            ));
        }
        match k.as_str() {
            "properties" => {
                for (name, s) in val.as_object().into_iter().flatten() {
                    check_schema(s, &format!("{at}.properties[{name}].value"))?;
                }
            }
            "items" => check_schema(val, &format!("{at}.items"))?,
            "anyOf" => {
                for (i, s) in val.as_array().into_iter().flatten().enumerate() {
                    check_schema(s, &format!("{at}.any_of[{i}]"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// countTokens

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CountRequest<'a> {
    #[serde(borrow, default)]
    contents: Vec<Content<'a>>,
    #[serde(borrow, default)]
    generate_content_request: Option<GenerateRequest<'a>>,
}

async fn count_tokens(shared: &Shared, req: &Req<'_>, model: &str) -> Response<MockBody> {
    let body: CountRequest<'_> = match serde_json::from_slice(req.body) {
        Ok(b) => b,
        Err(e) => return invalid_json(&e),
    };
    let knobs = match shared.knobs(req.headers, Some(model)) {
        Ok(k) => k,
        Err(msg) => return google_error(400, &msg, None),
    };
    let chars = match &body.generate_content_request {
        Some(g) => prompt_chars(g),
        None => body
            .contents
            .iter()
            .flat_map(|c| &c.parts)
            .filter_map(|p| p.text.as_deref())
            .map(text::chars)
            .sum(),
    };
    let tokens = text::prompt_tokens(chars);
    if let Some(Fault::Respond(resp)) = faults(shared, &knobs, model, tokens).await {
        return resp;
    }
    respond::ok(
        json!({"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]})
            .to_string(),
    )
}

// ---------------------------------------------------------------------------------------------------------
// embedContent / batchEmbedContents

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct EmbedRequest<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(borrow)]
    content: Content<'a>,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    output_dimensionality: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields Google accepts are declared so that unknown ones are refused
struct BatchEmbedRequest<'a> {
    #[serde(borrow, default)]
    requests: Vec<EmbedRequest<'a>>,
}

async fn embed(shared: &Shared, req: &Req<'_>, model: &str, batch: bool) -> Response<MockBody> {
    let requests = if batch {
        match serde_json::from_slice::<BatchEmbedRequest<'_>>(req.body) {
            Ok(b) => b.requests,
            Err(e) => return invalid_json(&e),
        }
    } else {
        match serde_json::from_slice::<EmbedRequest<'_>>(req.body) {
            Ok(r) => vec![r],
            Err(e) => return invalid_json(&e),
        }
    };
    if requests.is_empty() {
        return google_error(
            400,
            "* BatchEmbedContentsRequest.requests: at least one request is required\n",
            None,
        );
    }
    let expected = format!("models/{model}");
    for (i, r) in requests.iter().enumerate() {
        if batch && r.model.as_deref().is_some_and(|m| m != expected) {
            return google_error(
                400,
                &format!(
                    "* BatchEmbedContentsRequest.requests[{i}].model: model must match the batch request's model ({expected})\n"
                ),
                None,
            );
        }
        if r.content.parts.is_empty() {
            return google_error(
                400,
                &format!(
                    "* EmbedContentRequest.content[{i}].parts: contents.parts must not be empty.\n"
                ),
                None,
            );
        }
    }
    let knobs = match shared.knobs(req.headers, Some(model)) {
        Ok(k) => k,
        Err(msg) => return google_error(400, &msg, None),
    };
    let texts: Vec<String> = requests
        .iter()
        .map(|r| {
            r.content
                .parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect()
        })
        .collect();
    let tokens = texts
        .iter()
        .map(|t| text::prompt_tokens(text::chars(t)))
        .sum();
    match faults(shared, &knobs, model, tokens).await {
        Some(Fault::Respond(resp)) => return resp,
        Some(Fault::Blocked) => {
            return google_error(
                400,
                "The request was blocked: the input was flagged for safety reasons.",
                None,
            );
        }
        None => {}
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let mut vector = Vec::new();
    let mut values = |text: &str, dims: Option<usize>| {
        let dims = knobs
            .dims
            .or(dims.filter(|d| (1..=16_384).contains(d)))
            .unwrap_or(embeddings::DEFAULT_DIMS);
        embeddings::embed(text, dims, &mut vector);
        json!({"values": vector})
    };
    let body = if batch {
        let all: Vec<Value> = requests
            .iter()
            .zip(&texts)
            .map(|(r, t)| values(t, r.output_dimensionality))
            .collect();
        json!({"embeddings": all})
    } else {
        json!({"embedding": values(&texts[0], requests[0].output_dimensionality)})
    };
    respond::ok(body.to_string())
}

// ---------------------------------------------------------------------------------------------------------
// Failures, in Google's shape.

enum Fault {
    Respond(Response<MockBody>),
    /// `error_code=content_policy_violation` without a `status` knob: Gemini blocks the prompt (a 200).
    Blocked,
}

/// `hang`, `latency_ms` and the failure knobs (see `router::apply_faults`), answered in Google's words.
async fn faults(shared: &Shared, knobs: &Knobs, model: &str, prompt_tokens: u64) -> Option<Fault> {
    let status = crate::router::fault_status(shared, knobs, Some(model)).await?;
    let code = knobs.error_code.as_deref();
    let safety = matches!(code, Some("content_policy_violation" | "content_filter"));
    if safety && knobs.status.is_none() {
        return Some(Fault::Blocked);
    }
    let mut details = Vec::new();
    let message = match code {
        Some("context_length_exceeded") => format!(
            "The input token count ({}) exceeds the maximum number of tokens allowed ({CONTEXT_LIMIT}).",
            CONTEXT_LIMIT + prompt_tokens.max(1)
        ),
        _ if safety => {
            "The request was blocked: the prompt was flagged for safety reasons (tollgate-mock error_code knob)."
                .to_owned()
        }
        Some(code) => {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": code,
                "domain": "generativelanguage.googleapis.com",
            }));
            format!("{} [{code}] (tollgate-mock error_code knob).", status_message(status))
        }
        None => format!("{} (tollgate-mock status knob).", status_message(status)),
    };
    if let Some(secs) = knobs.retry_after {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{secs}s"),
        }));
    }
    let mut resp = google_error(status, &message, (!details.is_empty()).then_some(details));
    if let Some(secs) = knobs.retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    Some(Fault::Respond(resp))
}

/// Google's canonical status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s < 500 => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    }
}

/// The message of a status-knob failure, in Google's wording where it has one.
fn status_message(status: u16) -> Cow<'static, str> {
    Cow::Borrowed(match status {
        400 => "Request contains an invalid argument.",
        401 => "Request had invalid authentication credentials.",
        403 => "The caller does not have permission",
        404 => "Requested entity was not found.",
        429 => "Resource has been exhausted (e.g. check quota).",
        500 => {
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
        }
        503 => "The model is overloaded. Please try again later.",
        504 => "Deadline expired before operation could complete.",
        s => {
            return Cow::Owned(
                StatusCode::from_u16(s)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("Error")
                    .to_owned(),
            );
        }
    })
}

/// `{"error":{"code","message","status"[,"details"]}}` with that HTTP status.
fn google_error(status: u16, message: &str, details: Option<Vec<Value>>) -> Response<MockBody> {
    let mut error = json!({"code": status, "message": message, "status": status_name(status)});
    if let (Some(d), Value::Object(m)) = (details, &mut error) {
        m.insert("details".into(), Value::Array(d));
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond::json(code, json!({ "error": error }).to_string())
}

/// The 400 for a body Google's JSON parser refuses (unknown fields included).
fn invalid_json(e: &serde_json::Error) -> Response<MockBody> {
    google_error(400, &format!("Invalid JSON payload received. {e}"), None)
}

/// `%XX` decoding of a path segment; `None` when it is malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("m%40status%3D429").as_deref(),
            Some("m@status=429")
        );
        assert_eq!(percent_decode("plain-1.5").as_deref(), Some("plain-1.5"));
        assert_eq!(percent_decode("bad%4"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }

    fn parse(body: &str) -> Result<(), String> {
        let req: GenerateRequest<'_> = serde_json::from_str(body).map_err(|e| e.to_string())?;
        validate(&req)
    }

    #[test]
    fn requests_are_checked_like_google_does() {
        assert!(parse(r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#).is_ok());
        assert!(
            parse(r#"{"contents":[]}"#)
                .unwrap_err()
                .contains("contents is not specified")
        );
        assert!(
            parse(r#"{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}"#)
                .unwrap_err()
                .contains("valid role")
        );
        assert!(
            parse(r#"{"contents":[{"role":"user","parts":[{"text":"x"}]}],"temprature":1}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(parse(r#"{"contents":[{"parts":[{"text":"x","inlineData":{"mimeType":"a/b","data":"AAAA"}}]}]}"#)
            .unwrap_err()
            .contains("oneof"));
        let bad_schema = r#"{"contents":[{"parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}}]}]}"#;
        assert!(
            parse(bad_schema)
                .unwrap_err()
                .contains("Unknown name \"additionalProperties\"")
        );
        let empty_props = r#"{"contents":[{"parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{}}}]}]}"#;
        assert!(
            parse(empty_props)
                .unwrap_err()
                .contains("non-empty for OBJECT")
        );
    }

    #[test]
    fn usage_counts_thoughts_and_cache() {
        let u = usage_json(10, 4, 3, 2);
        assert_eq!(u["promptTokenCount"], 10);
        assert_eq!(u["totalTokenCount"], 17);
        assert_eq!(u["cachedContentTokenCount"], 2);
        assert_eq!(u["thoughtsTokenCount"], 3);
        let u = usage_json(1, 0, 0, 5);
        assert_eq!(u["promptTokenCount"], 5);
        assert!(u.get("candidatesTokenCount").is_none());
    }
}
