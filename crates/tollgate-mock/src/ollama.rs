//! Ollama's native API (docs/api.md of the ollama repository): `POST /api/chat`, `POST /api/generate`,
//! `POST /api/embed`, the legacy `POST /api/embeddings` and `GET /api/tags`.
//!
//! - Chat and generate stream by default, as Ollama does: NDJSON (`application/x-ndjson`), one JSON object a
//!   line (`chunks` content pieces, each `{"model","created_at","message":{"role","content"},"done":false}`
//!   or `{"model","created_at","response","done":false}`), then a final object with `done: true`,
//!   `done_reason` and `total_duration`, `load_duration`, `prompt_eval_count`, `prompt_eval_duration`,
//!   `eval_count`, `eval_duration`. `"stream": false` answers one object.
//! - Tools (`tool_call` knob, chat only): `message.tool_calls: [{"function": {"name", "arguments": {...}}}]`
//!   (the knob `content` when it is a JSON object, else `{"value": content}`), `done_reason: "stop"`, in one
//!   stream line before the final one.
//! - `think` (true or a level) with the `reasoning_tokens` knob: a `thinking` text (`message.thinking` /
//!   `thinking`); reasoning tokens are counted in `eval_count` (Ollama has no separate field; neither has
//!   it one for cached prompt tokens, so `cached_tokens` is not reported).
//! - `format` (`"json"` or a schema) answers `text::json_answer`; `options.stop` and `options.num_predict`
//!   cut the answer (`done_reason` `"stop"` / `"length"`); the `finish` knob forces `done_reason`
//!   (`content_filter` is not an Ollama reason; the mock says `"content_filter"` for it).
//! - An empty `messages` (chat) or `prompt` (generate) only "loads" the model: one object with empty content
//!   (`done_reason: "load"` for chat).
//! - Errors are `{"error": "..."}` with the status: 404 `model "x" not found, try pulling it first`, 503
//!   `server busy, please try again.  maximum pending requests exceeded`; `error_code=context_length_exceeded`
//!   answers 400 `the input length exceeds the context length`; `error_code=content_policy_violation` a 400
//!   content-policy refusal (Ollama has none of its own). Unknown paths get Ollama's plain-text
//!   `404 page not found`.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::body::{MockBody, Pacing};
use crate::knobs::{Finish, Knobs, split_model};
use crate::router::Req;
use crate::state::Shared;
use crate::text::{self, DEFAULT_CONTENT, Ending};
use crate::{embeddings, json, respond};

const NDJSON: HeaderValue = HeaderValue::from_static("application/x-ndjson");

/// The thinking text of an answer when `think` is on and `reasoning_tokens` is set.
const THINKING: &str = "The user wants a short answer; I will give it.";

/// Models listed by `GET /api/tags`.
const TAGS: &[(&str, &str, &str)] = &[
    ("llama3.2:latest", "llama", "3.2B"),
    ("qwen3:latest", "qwen3", "8.2B"),
    ("llava:latest", "llama", "7B"),
    ("nomic-embed-text:latest", "nomic-bert", "137M"),
];

pub(crate) async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let path = crate::router::without_v1(req.path);
    match (req.method, path) {
        (&Method::POST, "/api/chat") => chat(shared, req.headers, req.body).await,
        (&Method::POST, "/api/generate") => generate(shared, req.headers, req.body).await,
        (&Method::POST, "/api/embed") => embed(shared, req.headers, req.body).await,
        (&Method::POST, "/api/embeddings") => {
            legacy_embeddings(shared, req.headers, req.body).await
        }
        (&Method::GET, "/api/tags") => tags(shared, req.headers).await,
        _ => {
            let mut resp = Response::new(MockBody::full("404 page not found"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    messages: Vec<Message<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow, default)]
    format: Option<&'a RawValue>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(borrow, default)]
    think: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow, default)]
    function: Option<ToolFunction<'a>>,
}

#[derive(Deserialize)]
struct ToolFunction<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct GenerateRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    system: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    format: Option<&'a RawValue>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(borrow, default)]
    think: Option<&'a RawValue>,
}

/// The `options` the mock reads (the others are accepted and ignored).
#[derive(Deserialize, Default)]
struct Options {
    #[serde(default)]
    stop: Option<StopList>,
    #[serde(default)]
    num_predict: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopList {
    One(String),
    Many(Vec<String>),
}

impl Options {
    fn stop(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(StopList::One(s)) => vec![s.clone()],
            Some(StopList::Many(v)) => v.clone(),
        }
    }

    /// `num_predict` when it is a limit (`-1` is infinite, `-2` fills the context).
    fn max_tokens(&self) -> Option<u64> {
        self.num_predict
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0)
    }
}

/// `format`: `"json"` or a JSON schema turn JSON mode on.
fn json_mode(format: Option<&RawValue>) -> bool {
    format.is_some_and(|f| f.get() == "\"json\"" || f.get().starts_with('{'))
}

/// `think`: `true` or a level (`"low"`, `"medium"`, `"high"`) turns thinking on.
fn thinking_on(think: Option<&RawValue>) -> bool {
    think.is_some_and(|t| t.get() == "true" || (t.get().starts_with('"') && t.get() != "\"\""))
}

/// Ollama's error body.
fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let mut out = String::with_capacity(16 + message.len());
    out.push_str("{\"error\":");
    json::str(&mut out, message);
    out.push('}');
    respond::json(status, out)
}

fn malformed(e: &serde_json::Error) -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, &e.to_string())
}

fn model_required() -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, "model is required")
}

// ---------------------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------------------

/// `hang`, `latency_ms` and the failure knobs, with Ollama's error bodies.
async fn faults(shared: &Shared, knobs: &Knobs, model: Option<&str>) -> Option<Response<MockBody>> {
    let status = crate::router::fault_status(shared, knobs, model).await?;
    Some(failure(
        status,
        knobs.retry_after,
        knobs.error_code.as_deref(),
        model.map_or("", |m| split_model(m).0),
    ))
}

/// The request's knobs once their faults are applied; `Err` is the answer to send instead (a bad knob or a
/// fault).
async fn knobs_after_faults(
    shared: &Shared,
    headers: &HeaderMap,
    model: Option<&str>,
) -> Result<Knobs, Response<MockBody>> {
    let knobs = shared
        .knobs(headers, model)
        .map_err(|msg| error(StatusCode::BAD_REQUEST, &msg))?;
    match faults(shared, &knobs, model).await {
        Some(resp) => Err(resp),
        None => Ok(knobs),
    }
}

/// The failure the knobs ask for, in Ollama's words.
fn failure(
    status: u16,
    retry_after: Option<u64>,
    error_code: Option<&str>,
    model: &str,
) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match error_code {
        Some("context_length_exceeded") => {
            "the input length exceeds the context length".to_string()
        }
        Some("content_policy_violation" | "content_filter") => {
            "the request was refused by the content policy (safety)".to_string()
        }
        Some(code) => format!(
            "{} [{code}] (tollgate-mock error_code knob)",
            status_message(status, model)
        ),
        None => format!(
            "{} (tollgate-mock status knob)",
            status_message(status, model)
        ),
    };
    let mut resp = error(status, &message);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn status_message(status: StatusCode, model: &str) -> String {
    match status.as_u16() {
        404 => format!("model \"{model}\" not found, try pulling it first"),
        401 => "unauthorized".to_string(),
        503 => "server busy, please try again.  maximum pending requests exceeded".to_string(),
        500 => "llama runner process has terminated".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Chat and generate
// ---------------------------------------------------------------------------------------------------------

/// Which endpoint answers (they name the text differently).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Generate,
}

/// What the model "says".
enum Said {
    Text(String),
    /// `arguments` is the raw text of a JSON object.
    ToolCall {
        name: String,
        arguments: String,
    },
}

struct Turn {
    said: Said,
    thinking: Option<&'static str>,
    done_reason: &'static str,
    prompt_tokens: u64,
    eval_count: u64,
}

/// What a request asks of the model, for [`turn`].
struct Ask<'a> {
    tools: Vec<&'a str>,
    /// Last user message / prompt (for `echo`).
    last_user: &'a str,
    prompt_chars: usize,
    json: bool,
    think: bool,
    options: Options,
}

fn turn(ask: &Ask<'_>, knobs: &Knobs) -> Turn {
    let reasoning = knobs.reasoning_tokens.unwrap_or(0);
    let prompt_tokens = text::prompt_tokens(ask.prompt_chars);
    let tool = knobs.tool_call.as_deref().and_then(|want| {
        let first = ask.tools.first()?;
        Some(if want.is_empty() { *first } else { want })
    });
    let (said, mut done_reason, completion) = match tool {
        Some(name) => {
            let content = knobs.content.as_deref().unwrap_or("{}");
            let is_object =
                serde_json::from_str::<&RawValue>(content).is_ok_and(|r| r.get().starts_with('{'));
            let arguments = if is_object {
                content.to_string()
            } else {
                serde_json::json!({ "value": content }).to_string()
            };
            let completion = text::word_count(&arguments).max(1);
            (
                Said::ToolCall {
                    name: name.to_string(),
                    arguments,
                },
                "stop",
                completion,
            )
        }
        None => {
            let base = match (&knobs.content, knobs.echo) {
                (Some(c), _) => c.as_str(),
                (None, true) => ask.last_user,
                (None, false) => DEFAULT_CONTENT,
            };
            let base = if ask.json {
                Cow::Owned(text::json_answer(base))
            } else {
                Cow::Borrowed(base)
            };
            let (text, ending) =
                text::shape_answer(&base, &ask.options.stop(), ask.options.max_tokens());
            let reason = match ending {
                Ending::MaxTokens => "length",
                Ending::Done | Ending::StopSequence(_) => "stop",
            };
            let completion = text::word_count(&text);
            (Said::Text(text), reason, completion)
        }
    };
    match knobs.finish {
        Some(Finish::Length) => done_reason = "length",
        Some(Finish::Stop) => done_reason = "stop",
        Some(Finish::ContentFilter) => done_reason = "content_filter",
        None => {}
    }
    Turn {
        said,
        thinking: (ask.think && reasoning > 0).then_some(THINKING),
        done_reason,
        prompt_tokens,
        eval_count: completion + reasoning,
    }
}

async fn chat(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response<MockBody> {
    let req: ChatRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return model_required();
    }
    let knobs = match knobs_after_faults(shared, headers, Some(&req.model)).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let stream = req.stream.unwrap_or(true);
    if req.messages.is_empty() {
        let mut out = String::new();
        head(&mut out, &req.model);
        out.push_str("\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"load\",\"done\":true}");
        return finish_single(out, stream, &knobs);
    }
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.as_deref())
        .unwrap_or("");
    let ask = Ask {
        tools: req
            .tools
            .iter()
            .flatten()
            .filter_map(|t| t.function.as_ref().map(|f| &*f.name))
            .collect(),
        last_user,
        prompt_chars: req
            .messages
            .iter()
            .map(|m| m.content.as_deref().map_or(0, text::chars))
            .sum(),
        json: json_mode(req.format),
        think: thinking_on(req.think),
        options: req.options.unwrap_or_default(),
    };
    let t = turn(&ask, &knobs);
    respond_turn(Api::Chat, &req.model, &t, stream, &knobs)
}

async fn generate(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response<MockBody> {
    let req: GenerateRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return model_required();
    }
    let knobs = match knobs_after_faults(shared, headers, Some(&req.model)).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let stream = req.stream.unwrap_or(true);
    let prompt = req.prompt.as_deref().unwrap_or("");
    if prompt.is_empty() {
        let mut out = String::new();
        head(&mut out, &req.model);
        out.push_str("\"response\":\"\",\"done\":true}");
        return finish_single(out, stream, &knobs);
    }
    let ask = Ask {
        tools: Vec::new(),
        last_user: prompt,
        prompt_chars: text::chars(prompt) + req.system.as_deref().map_or(0, text::chars),
        json: json_mode(req.format),
        think: thinking_on(req.think),
        options: req.options.unwrap_or_default(),
    };
    let t = turn(&ask, &knobs);
    respond_turn(Api::Generate, &req.model, &t, stream, &knobs)
}

/// One object, as a one-line stream or a JSON body.
fn finish_single(mut out: String, stream: bool, knobs: &Knobs) -> Response<MockBody> {
    if stream {
        out.push('\n');
        return ndjson(vec![Bytes::from(out)], knobs.pacing());
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    respond::ok(out)
}

/// An NDJSON response sending one body frame per line, paced like the SSE streams.
fn ndjson(lines: Vec<Bytes>, pacing: Pacing) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::events(lines, pacing));
    resp.headers_mut().insert(CONTENT_TYPE, NDJSON);
    resp
}

/// `{"model":..,"created_at":..,`
fn head(out: &mut String, model: &str) {
    out.push_str("{\"model\":");
    json::str(out, model);
    out.push_str(",\"created_at\":\"");
    out.push_str(&created_at());
    out.push_str("\",");
}

/// `"message":{"role":"assistant","content":..[,"thinking":..][,"tool_calls":[..]]},` or
/// `"response":..[,"thinking":..],`.
fn said(
    out: &mut String,
    api: Api,
    content: &str,
    thinking: Option<&str>,
    tool_call: Option<(&str, &str)>,
) {
    match api {
        Api::Chat => {
            out.push_str("\"message\":{\"role\":\"assistant\",\"content\":");
            json::str(out, content);
            if let Some(t) = thinking {
                out.push_str(",\"thinking\":");
                json::str(out, t);
            }
            if let Some((name, arguments)) = tool_call {
                out.push_str(",\"tool_calls\":[{\"function\":{\"name\":");
                json::str(out, name);
                out.push_str(",\"arguments\":");
                out.push_str(arguments);
                out.push_str("}}]");
            }
            out.push_str("},");
        }
        Api::Generate => {
            out.push_str("\"response\":");
            json::str(out, content);
            if let Some(t) = thinking {
                out.push_str(",\"thinking\":");
                json::str(out, t);
            }
            out.push(',');
        }
    }
}

/// `"done_reason":..,"done":true,` and the statistics, closing the object.
fn stats(out: &mut String, api: Api, t: &Turn) {
    out.push_str("\"done_reason\":\"");
    out.push_str(t.done_reason);
    out.push_str("\",\"done\":true,");
    if api == Api::Generate {
        out.push_str("\"context\":[1,2,3],");
    }
    let load = 2_000_000_u64;
    let prompt_eval = t.prompt_tokens * 1_000_000;
    let eval = t.eval_count * 10_000_000;
    out.push_str("\"total_duration\":");
    json::num(out, load + prompt_eval + eval);
    out.push_str(",\"load_duration\":");
    json::num(out, load);
    out.push_str(",\"prompt_eval_count\":");
    json::num(out, t.prompt_tokens);
    out.push_str(",\"prompt_eval_duration\":");
    json::num(out, prompt_eval);
    out.push_str(",\"eval_count\":");
    json::num(out, t.eval_count);
    out.push_str(",\"eval_duration\":");
    json::num(out, eval);
    out.push('}');
}

fn respond_turn(
    api: Api,
    model: &str,
    t: &Turn,
    stream: bool,
    knobs: &Knobs,
) -> Response<MockBody> {
    let tool_call = match &t.said {
        Said::ToolCall { name, arguments } => Some((name.as_str(), arguments.as_str())),
        Said::Text(_) => None,
    };
    let text = match &t.said {
        Said::Text(s) => s.as_str(),
        Said::ToolCall { .. } => "",
    };
    if !stream {
        if knobs.reset_after_chunks.is_some() {
            return respond::aborted_json();
        }
        let mut out = String::with_capacity(512 + text.len());
        head(&mut out, model);
        said(&mut out, api, text, t.thinking, tool_call);
        stats(&mut out, api, t);
        return respond::ok(out);
    }
    let n = knobs.chunks.unwrap_or(3);
    let mut lines = Vec::with_capacity(n + 3);
    let line = |content: &str, thinking: Option<&str>, tool_call: Option<(&str, &str)>| {
        let mut out = String::with_capacity(160 + content.len());
        head(&mut out, model);
        said(&mut out, api, content, thinking, tool_call);
        out.push_str("\"done\":false}\n");
        Bytes::from(out)
    };
    if let Some(thinking) = t.thinking {
        lines.push(line("", Some(thinking), None));
    }
    match tool_call {
        Some(call) => lines.push(line("", None, Some(call))),
        None => {
            for piece in text::split_chunks(text, n) {
                lines.push(line(piece, None, None));
            }
        }
    }
    let mut last = String::with_capacity(400);
    head(&mut last, model);
    said(&mut last, api, "", None, None);
    stats(&mut last, api, t);
    last.push('\n');
    lines.push(Bytes::from(last));
    ndjson(lines, knobs.pacing())
}

/// Now as RFC 3339 with nanoseconds, UTC (`2024-07-22T20:33:28.123648000Z`).
fn created_at() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------------------
// Embeddings and tags
// ---------------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct EmbedRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct LegacyEmbedRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
}

fn dims(knobs: &Knobs, requested: Option<usize>) -> usize {
    knobs
        .dims
        .or(requested.filter(|d| (1..=16_384).contains(d)))
        .unwrap_or(embeddings::DEFAULT_DIMS)
}

fn push_vector(out: &mut String, input: &str, dims: usize, vector: &mut Vec<f32>) {
    embeddings::embed(input, dims, vector);
    out.push('[');
    for (j, v) in vector.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        json::num(out, v);
    }
    out.push(']');
}

async fn embed(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response<MockBody> {
    let req: EmbedRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return model_required();
    }
    let inputs: Vec<&str> = match &req.input {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s.as_str()],
        Some(serde_json::Value::Array(items)) => {
            match items
                .iter()
                .map(serde_json::Value::as_str)
                .collect::<Option<Vec<_>>>()
            {
                Some(v) => v,
                None => return error(StatusCode::BAD_REQUEST, "invalid input type"),
            }
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid input type"),
    };
    let knobs = match knobs_after_faults(shared, headers, Some(&req.model)).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let dims = dims(&knobs, req.dimensions);
    let tokens: u64 = inputs
        .iter()
        .map(|s| text::prompt_tokens(text::chars(s)))
        .sum();
    let mut out = String::with_capacity(128 + inputs.len() * (dims * 12 + 4));
    out.push_str("{\"model\":");
    json::str(&mut out, &req.model);
    out.push_str(",\"embeddings\":[");
    let mut vector = Vec::with_capacity(dims);
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_vector(&mut out, input, dims, &mut vector);
    }
    out.push_str("],\"total_duration\":");
    json::num(&mut out, 3_000_000 + tokens * 100_000);
    out.push_str(",\"load_duration\":1000000,\"prompt_eval_count\":");
    json::num(&mut out, tokens);
    out.push('}');
    respond::ok(out)
}

async fn legacy_embeddings(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<MockBody> {
    let req: LegacyEmbedRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return model_required();
    }
    let knobs = match knobs_after_faults(shared, headers, Some(&req.model)).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let prompt = req.prompt.as_deref().unwrap_or("");
    let mut out = String::from("{\"embedding\":");
    if prompt.is_empty() {
        out.push_str("[]");
    } else {
        let dims = dims(&knobs, None);
        push_vector(&mut out, prompt, dims, &mut Vec::with_capacity(dims));
    }
    out.push('}');
    respond::ok(out)
}

async fn tags(shared: &Shared, headers: &HeaderMap) -> Response<MockBody> {
    if let Err(resp) = knobs_after_faults(shared, headers, None).await {
        return resp;
    }
    let mut out = String::from("{\"models\":[");
    for (i, (name, family, size)) in TAGS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json::str(&mut out, name);
        out.push_str(",\"model\":");
        json::str(&mut out, name);
        out.push_str(",\"modified_at\":\"2025-05-04T17:37:44.706015396-07:00\",\"size\":2019393189,\"digest\":\"");
        // A stable fake digest per model.
        let mut h = 0xcbf2_9ce4_8422_2325_u64;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for k in 0..4u64 {
            json::num(
                &mut out,
                format_args!("{:016x}", h.rotate_left((k * 16) as u32)),
            );
        }
        out.push_str("\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":");
        json::str(&mut out, family);
        out.push_str(",\"families\":[");
        json::str(&mut out, family);
        out.push_str("],\"parameter_size\":");
        json::str(&mut out, size);
        out.push_str(",\"quantization_level\":\"Q4_K_M\"}}");
    }
    out.push_str("]}");
    respond::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        let s = created_at();
        assert_eq!(s.len(), "2024-07-22T20:33:28.123648000Z".len());
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T');
    }

    #[test]
    fn format_and_think_switches() {
        let raw = |s: &str| {
            serde_json::from_str::<&RawValue>(s)
                .ok()
                .map(|r| r.get().to_string())
        };
        let on = |s: &str| {
            let r: Box<RawValue> = serde_json::from_str(s).unwrap();
            (json_mode(Some(&r)), thinking_on(Some(&r)))
        };
        assert_eq!(raw("\"json\"").as_deref(), Some("\"json\""));
        assert_eq!(on("\"json\""), (true, true));
        assert_eq!(on("{\"type\":\"object\"}"), (true, false));
        assert_eq!(on("\"\""), (false, false));
        assert_eq!(on("true"), (false, true));
        assert_eq!(on("false"), (false, false));
        assert!(!json_mode(None) && !thinking_on(None));
    }

    fn knobs(model: &str) -> Knobs {
        Knobs::collect(None, &HeaderMap::new(), Some(model)).unwrap()
    }

    fn ask<'a>(tools: Vec<&'a str>, options: Options) -> Ask<'a> {
        Ask {
            tools,
            last_user: "hello there",
            prompt_chars: 11,
            json: false,
            think: true,
            options,
        }
    }

    #[test]
    fn turns_follow_the_knobs() {
        let t = turn(
            &ask(vec![], Options::default()),
            &knobs("m@echo,reasoning_tokens=5"),
        );
        assert!(matches!(&t.said, Said::Text(s) if s == "hello there"));
        assert_eq!(
            (t.eval_count, t.prompt_tokens, t.thinking.is_some()),
            (7, 3, true)
        );
        let opts = Options {
            stop: None,
            num_predict: Some(2),
        };
        let t = turn(&ask(vec![], opts), &knobs("m"));
        assert!(matches!(&t.said, Said::Text(s) if s == "This is"));
        assert_eq!(t.done_reason, "length");
        let t = turn(
            &ask(vec!["f"], Options::default()),
            &knobs("m@tool_call,content=oops"),
        );
        assert!(
            matches!(&t.said, Said::ToolCall { name, arguments } if name == "f" && arguments == r#"{"value":"oops"}"#)
        );
        let t = turn(
            &ask(vec![], Options::default()),
            &knobs("m@finish=content_filter"),
        );
        assert_eq!(t.done_reason, "content_filter");
    }

    /// Send one request to the module; the status, content type and body lines.
    async fn send(
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, Vec<String>) {
        use http_body_util::BodyExt;
        let shared = Shared::new(None, None, false);
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let body = Bytes::from(body.to_string());
        let resp = route(
            &shared,
            &Req {
                method: &method,
                path,
                query: None,
                authority: None,
                headers: &h,
                body: &body,
            },
        )
        .await;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        (status, ct, text.lines().map(str::to_string).collect())
    }

    fn parse(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap()
    }

    #[tokio::test]
    async fn chat_streams_by_default() {
        let (status, ct, lines) = send(
            Method::POST,
            "/api/chat",
            &[("x-mock-chunks", "4")],
            r#"{"model":"llama3.2","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"why is the sky blue?"}]}"#,
        )
        .await;
        assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
        assert_eq!(lines.len(), 5);
        let objs: Vec<_> = lines.iter().map(|l| parse(l)).collect();
        let text: String = objs[..4]
            .iter()
            .map(|o| {
                assert_eq!(o["done"], false);
                assert_eq!(o["message"]["role"], "assistant");
                o["message"]["content"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(text, DEFAULT_CONTENT);
        let last = &objs[4];
        assert_eq!(
            (last["done"].clone(), last["done_reason"].clone()),
            (true.into(), "stop".into())
        );
        for k in [
            "total_duration",
            "load_duration",
            "prompt_eval_count",
            "prompt_eval_duration",
            "eval_count",
            "eval_duration",
        ] {
            assert!(last[k].is_u64(), "{k}");
        }
        assert_eq!(last["prompt_eval_count"], 7);
        assert_eq!(last["eval_count"], 7);
        assert_eq!(last["model"], "llama3.2");
    }

    #[tokio::test]
    async fn chat_without_streaming_tools_and_options() {
        let (status, ct, lines) = send(
            Method::POST,
            "/api/chat",
            &[],
            r#"{"model":"llama3.2@tool_call,content={\"city\": \"Tokyo\"}","stream":false,"messages":[{"role":"user","content":"weather?"}],
               "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}"#,
        )
        .await;
        assert_eq!(
            (status, ct.as_str(), lines.len()),
            (200, "application/json", 1)
        );
        let o = parse(&lines[0]);
        let call = &o["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["arguments"], serde_json::json!({"city": "Tokyo"}));
        assert_eq!(
            (o["done"].clone(), o["done_reason"].clone()),
            (true.into(), "stop".into())
        );
        // Stop sequences and num_predict cut the answer.
        let (_, _, lines) = send(
            Method::POST,
            "/api/chat",
            &[],
            r#"{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"options":{"stop":["mock"],"temperature":0.1}}"#,
        )
        .await;
        let o = parse(&lines[0]);
        assert_eq!(o["message"]["content"], "This is a ");
        assert_eq!(o["done_reason"], "stop");
        let (_, _, lines) = send(
            Method::POST,
            "/api/chat",
            &[],
            r#"{"model":"m","stream":false,"format":"json","messages":[{"role":"user","content":"x"}],"options":{"num_predict":1}}"#,
        )
        .await;
        let o = parse(&lines[0]);
        assert_eq!(o["message"]["content"], "{\"text\":\"This");
        assert_eq!(
            (o["done_reason"].clone(), o["eval_count"].clone()),
            ("length".into(), 1.into())
        );
        // An empty conversation loads the model.
        let (_, _, lines) = send(
            Method::POST,
            "/api/chat",
            &[],
            r#"{"model":"m","messages":[]}"#,
        )
        .await;
        assert_eq!(parse(&lines[0])["done_reason"], "load");
    }

    #[tokio::test]
    async fn generate_thinks_and_streams() {
        let (status, _, lines) = send(
            Method::POST,
            "/api/generate",
            &[("x-mock-reasoning-tokens", "3")],
            r#"{"model":"qwen3","prompt":"Why is the sky blue?","think":true}"#,
        )
        .await;
        assert_eq!(status, 200);
        let objs: Vec<_> = lines.iter().map(|l| parse(l)).collect();
        assert_eq!(objs[0]["thinking"], THINKING);
        assert_eq!(objs[0]["response"], "");
        let text: String = objs
            .iter()
            .map(|o| o["response"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(text, DEFAULT_CONTENT);
        let last = objs.last().unwrap();
        assert_eq!(
            (
                last["eval_count"].clone(),
                last["prompt_eval_count"].clone()
            ),
            (10.into(), 5.into())
        );
        assert!(last["context"].is_array());
        let (_, _, lines) = send(
            Method::POST,
            "/api/generate",
            &[],
            r#"{"model":"m","prompt":"hello you","stream":false,"options":{"num_predict":2}}"#,
        )
        .await;
        let o = parse(&lines[0]);
        assert_eq!(
            (o["response"].clone(), o["done_reason"].clone()),
            ("This is".into(), "length".into())
        );
        assert!(o.get("thinking").is_none());
    }

    #[tokio::test]
    async fn errors_are_ollama_shaped() {
        let chat = |model: &str| {
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"x"}}]}}"#)
        };
        let (status, _, lines) =
            send(Method::POST, "/api/chat", &[], &chat("llama9@status=404")).await;
        assert_eq!(status, 404);
        assert!(
            parse(&lines[0])["error"]
                .as_str()
                .unwrap()
                .starts_with("model \"llama9\" not found, try pulling it first")
        );
        let (status, _, lines) = send(
            Method::POST,
            "/api/chat",
            &[],
            &chat("m@error_code=context_length_exceeded"),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            parse(&lines[0])["error"],
            "the input length exceeds the context length"
        );
        let (status, _, _) = send(
            Method::POST,
            "/api/embed",
            &[("x-mock-retry-after", "4")],
            r#"{"model":"e","input":"a"}"#,
        )
        .await;
        assert_eq!(status, 429);
        let (status, _, lines) = send(Method::POST, "/api/chat", &[], r#"{"messages":[]}"#).await;
        assert_eq!(
            (status, parse(&lines[0])["error"].clone()),
            (400, "model is required".into())
        );
        let (status, _, lines) = send(Method::POST, "/api/chat", &[], "{").await;
        assert!(status == 400 && parse(&lines[0])["error"].is_string());
        let (status, ct, lines) = send(Method::GET, "/api/nope", &[], "").await;
        assert_eq!(
            (status, ct.as_str(), lines),
            (
                404,
                "text/plain; charset=utf-8",
                vec!["404 page not found".to_string()]
            )
        );
    }

    #[tokio::test]
    async fn embeddings_and_tags() {
        let (status, _, lines) = send(
            Method::POST,
            "/api/embed",
            &[],
            r#"{"model":"all-minilm","input":["Why is the sky blue?","Why is the grass green?"],"dimensions":5}"#,
        )
        .await;
        assert_eq!(status, 200);
        let o = parse(&lines[0]);
        let e = o["embeddings"].as_array().unwrap();
        assert_eq!((e.len(), e[0].as_array().unwrap().len()), (2, 5));
        assert_eq!(o["prompt_eval_count"], 11);
        let (_, _, lines) = send(
            Method::POST,
            "/api/embeddings",
            &[],
            r#"{"model":"all-minilm","prompt":"llamas"}"#,
        )
        .await;
        assert_eq!(
            parse(&lines[0])["embedding"].as_array().unwrap().len(),
            embeddings::DEFAULT_DIMS
        );
        let (_, _, lines) = send(Method::GET, "/api/tags", &[], "").await;
        let o = parse(&lines[0]);
        assert_eq!(o["models"][0]["name"], "llama3.2:latest");
        assert_eq!(o["models"][0]["digest"].as_str().unwrap().len(), 64);
    }
}
