//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`, also without `/v1`).
//!
//! Wire format as Anthropic documents it (docs.claude.com/en/api/messages, /en/docs/build-with-claude/streaming,
//! /en/api/errors):
//! - Every request needs an `anthropic-version` header (a 400 without it). `model`, `messages` and (for
//!   `/v1/messages`) `max_tokens` are required; message roles are `user` / `assistant` only (the system prompt is
//!   the top-level `system`, a string or text blocks). Content is a string or blocks; `image` blocks take a
//!   `{"type":"base64","media_type","data"}` or `{"type":"url","url"}` source (anything else is a 400).
//! - The answer is `{"id":"msg_...","type":"message","role":"assistant","model":<request model>,"content":[...],
//!   "stop_reason","stop_sequence","usage":{"input_tokens","output_tokens","cache_creation_input_tokens",
//!   "cache_read_input_tokens"}}`. `stop_reason` is `end_turn`, `stop_sequence` (with `stop_sequence` set),
//!   `max_tokens`, `tool_use` or `refusal` (knob `finish=content_filter`); `stop_sequences` and `max_tokens` cut
//!   the answer (words are the mock's tokens).
//! - Tools: knob `tool_call` (with `tools`), or a forced `tool_choice` (`{"type":"tool","name"}` / `{"type":"any"}`),
//!   answer with one `tool_use` block (`toolu_...` id); its `input` is knob `content` when that is a JSON object,
//!   else `{}` for the knob and `{"text": <answer>}` for a forced choice. `tool_choice: {"type":"none"}` never
//!   calls a tool. `output_format` (structured outputs) answers `{"text": <answer>}` as text.
//! - Knob `cached_tokens=N` reports `cache_read_input_tokens: N` (not part of `input_tokens`, as Anthropic counts
//!   them); knob `reasoning_tokens=N` adds N to `output_tokens` (Anthropic counts thinking there) and, when the
//!   request has `thinking: {"type":"enabled"}`, puts a `thinking` block (with a `signature`) before the answer.
//! - `"stream": true`: named SSE events `message_start` (usage with the input tokens, `output_tokens: 1`),
//!   per block `content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`, `thinking_delta`,
//!   `signature_delta`) / `content_block_stop`, a `ping` after the first block start, `message_delta` (stop
//!   reason and the cumulative usage) and `message_stop`. The answer is split in `chunks` pieces.
//! - `/v1/messages/count_tokens` answers `{"input_tokens": N}`.
//! - Errors are `{"type":"error","error":{"type","message"},"request_id"}` with Anthropic's types per status
//!   (400 `invalid_request_error`, 401 `authentication_error`, 403 `permission_error`, 404 `not_found_error`,
//!   413 `request_too_large`, 429 `rate_limit_error`, 500 `api_error`, 529 `overloaded_error`); `retry-after` is
//!   sent with knob `retry_after`. `error_code=context_length_exceeded` answers 400 "prompt is too long:
//!   N tokens > 200000 maximum"; `error_code=content_policy_violation` (or `content_filter`) answers 400
//!   "Output blocked by content filtering policy".

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::MockBody;
use crate::knobs::Knobs;
use crate::router::Req;
use crate::state::Shared;
use crate::text::{self, DEFAULT_CONTENT, Ending};
use crate::{ids, respond};

/// The context window the "prompt is too long" error reports.
const CONTEXT_LIMIT: u64 = 200_000;

/// The thinking text of a `thinking` block.
const THINKING_TEXT: &str = "Let me think about what is being asked before answering it.";

/// Image media types Anthropic accepts in base64 sources.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
    #[serde(default)]
    thinking: Option<Thinking>,
    #[serde(default)]
    output_format: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize)]
struct Tool {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct ToolChoice {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Thinking {
    #[serde(default, rename = "type")]
    kind: String,
}

/// What the assistant answers with.
enum Answer {
    Text(String),
    Tool { name: String, input: Value },
}

pub(crate) async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let path = crate::router::without_v1(req.path);
    let count_only = match (req.method, path) {
        (&Method::POST, "/messages") => false,
        (&Method::POST, "/messages/count_tokens") => true,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!("Not Found ({} {})", req.method, req.path),
            );
        }
    };
    if req.headers.get("anthropic-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let body: MessagesRequest<'_> = match serde_json::from_slice(req.body) {
        Ok(b) => b,
        Err(e) => {
            return invalid(&format!(
                "There was an error parsing the body of your request: {e}"
            ));
        }
    };
    let Some(model) = body.model.as_deref().filter(|m| !m.is_empty()) else {
        return invalid("model: Field required");
    };
    let Some(messages) = body.messages.as_deref() else {
        return invalid("messages: Field required");
    };
    if messages.is_empty() {
        return invalid("messages: at least one message is required");
    }
    if !count_only && body.max_tokens.is_none() {
        return invalid("max_tokens: Field required");
    }
    let prompt_chars = match prompt_chars(body.system.as_ref(), messages) {
        Ok(n) => n,
        Err(msg) => return invalid(&msg),
    };
    let knobs = match shared.knobs(req.headers, Some(model)) {
        Ok(k) => k,
        Err(msg) => return invalid(&msg),
    };
    let prompt_tokens = text::prompt_tokens(prompt_chars);
    if let Some(resp) = faults(shared, &knobs, model, prompt_tokens).await {
        return resp;
    }
    if count_only {
        return respond::ok(json!({ "input_tokens": prompt_tokens }).to_string());
    }
    let answer = answer(&body, messages, &knobs);
    let (answer, mut stop_reason, stop_sequence) = match answer {
        Answer::Text(t) => {
            let stop = body.stop_sequences.as_deref().unwrap_or_default();
            let (t, ending) = text::shape_answer(&t, stop, body.max_tokens);
            match ending {
                Ending::Done => (Answer::Text(t), "end_turn", None),
                Ending::StopSequence(s) => (Answer::Text(t), "stop_sequence", Some(s)),
                Ending::MaxTokens => (Answer::Text(t), "max_tokens", None),
            }
        }
        tool @ Answer::Tool { .. } => (tool, "tool_use", None),
    };
    if let Some(f) = knobs.finish {
        stop_reason = match f {
            crate::knobs::Finish::ContentFilter => "refusal",
            crate::knobs::Finish::Length => "max_tokens",
            crate::knobs::Finish::Stop => "end_turn",
        };
    }
    let reasoning = knobs.reasoning_tokens.unwrap_or(0);
    let thinking = reasoning > 0 && body.thinking.as_ref().is_some_and(|t| t.kind == "enabled");
    let cached = knobs.cached_tokens.unwrap_or(0);
    let output_tokens = match &answer {
        Answer::Text(t) => text::word_count(t),
        Answer::Tool { input, .. } => text::word_count(&input.to_string()).max(1),
    } + reasoning;
    let usage = Usage {
        input: prompt_tokens.saturating_sub(cached),
        cache_read: cached,
        output: output_tokens,
    };
    let reply = Reply {
        id: ids::new_id("msg_"),
        model,
        answer,
        thinking,
        stop_reason,
        stop_sequence,
        usage,
    };
    if body.stream.unwrap_or(false) {
        return respond::sse(stream_events(&reply, &knobs), knobs.pacing());
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    respond::ok(message_json(&reply).to_string())
}

/// Characters of all prompt text (system, text blocks, tool results), checking the blocks on the way.
fn prompt_chars(system: Option<&Value>, messages: &[Message]) -> Result<usize, String> {
    let mut chars = 0;
    match system {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => chars += text::chars(s),
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                match b.get("text").and_then(Value::as_str) {
                    Some(t) if b.get("type").and_then(Value::as_str) == Some("text") => {
                        chars += text::chars(t);
                    }
                    _ => return Err(format!("system.{j}: Input should be a valid text block")),
                }
            }
        }
        Some(_) => {
            return Err("system: Input should be a valid string or list of text blocks".into());
        }
    }
    for (i, m) in messages.iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Unexpected role \"{}\". The Messages API accepts a top-level `system` \
                 parameter, not \"system\" as an input message role.",
                m.role
            ));
        }
        chars += content_chars(&m.content, &format!("messages.{i}.content"))?;
    }
    Ok(chars)
}

/// Characters of text in one message's (or tool result's) content; `at` names it in errors.
fn content_chars(content: &Value, at: &str) -> Result<usize, String> {
    let blocks = match content {
        Value::String(s) => return Ok(text::chars(s)),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(format!(
                "{at}: Input should be a valid string or list of content blocks"
            ));
        }
    };
    let mut chars = 0;
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}.{j}");
        let kind = b
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}.type: Field required"))?;
        match kind {
            "text" => {
                let t = b
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at}.text.text: Field required"))?;
                chars += text::chars(t);
            }
            "image" => check_image(b.get("source"), &format!("{at}.image.source"))?,
            "tool_result" => {
                if let Some(c) = b.get("content").filter(|c| !c.is_null()) {
                    chars += content_chars(c, &format!("{at}.tool_result.content"))?;
                }
            }
            "tool_use"
                if b.get("id").and_then(Value::as_str).is_none()
                    || b.get("name").and_then(Value::as_str).is_none() =>
            {
                return Err(format!("{at}.tool_use: `id` and `name` are required"));
            }
            _ => {}
        }
    }
    Ok(chars)
}

/// An image block's source: base64 data of a supported media type, or a URL.
fn check_image(source: Option<&Value>, at: &str) -> Result<(), String> {
    let source = source.ok_or_else(|| format!("{at}: Field required"))?;
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !IMAGE_TYPES.contains(&media) {
                return Err(format!(
                    "{at}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                ));
            }
            let data = source.get("data").and_then(Value::as_str).unwrap_or("");
            if data.is_empty()
                || base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .is_err()
            {
                return Err(format!(
                    "{at}.base64.data: The image data is not valid base64"
                ));
            }
            Ok(())
        }
        Some("url") => match source.get("url").and_then(Value::as_str) {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(()),
            _ => Err(format!("{at}.url.url: Input should be a valid URL")),
        },
        _ => Err(format!(
            "{at}: Input tag does not match any of the expected tags: 'base64', 'url'"
        )),
    }
}

fn answer(body: &MessagesRequest<'_>, messages: &[Message], knobs: &Knobs) -> Answer {
    let tools = body.tools.as_deref().unwrap_or_default();
    let choice = body.tool_choice.as_ref();
    let text = || -> String {
        let t = if let Some(c) = &knobs.content {
            c.clone()
        } else if knobs.echo {
            messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| user_text(&m.content))
                .unwrap_or_default()
        } else {
            DEFAULT_CONTENT.to_string()
        };
        if body.output_format.is_some() {
            text::json_answer(&t)
        } else {
            t
        }
    };
    let object_content = || {
        knobs
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .filter(Value::is_object)
    };
    let none = choice.is_some_and(|c| c.kind == "none");
    if !none
        && let Some(want) = knobs.tool_call.as_deref()
        && let Some(first) = tools.first()
    {
        let name = if want.is_empty() {
            first.name.clone()
        } else {
            want.to_string()
        };
        let input = object_content().unwrap_or_else(|| json!({}));
        return Answer::Tool { name, input };
    }
    let forced = match choice {
        Some(c) if c.kind == "tool" => c.name.clone(),
        Some(c) if c.kind == "any" => tools.first().map(|t| t.name.clone()),
        _ => None,
    };
    if let Some(name) = forced {
        let input = object_content().unwrap_or_else(|| json!({ "text": text() }));
        return Answer::Tool { name, input };
    }
    Answer::Text(text())
}

/// The text blocks of a user message, joined.
fn user_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

#[derive(Clone, Copy)]
struct Usage {
    input: u64,
    cache_read: u64,
    output: u64,
}

impl Usage {
    fn json(self, output: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output,
        })
    }
}

struct Reply<'a> {
    id: String,
    model: &'a str,
    answer: Answer,
    thinking: bool,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Usage,
}

fn signature() -> String {
    ids::new_id("EqQBCgIYAhIM")
}

fn message_json(r: &Reply<'_>) -> Value {
    let mut content = Vec::with_capacity(2);
    if r.thinking {
        content
            .push(json!({"type": "thinking", "thinking": THINKING_TEXT, "signature": signature()}));
    }
    match &r.answer {
        Answer::Text(t) if t.is_empty() => {}
        Answer::Text(t) => content.push(json!({"type": "text", "text": t})),
        Answer::Tool { name, input } => content.push(json!({
            "type": "tool_use", "id": ids::new_id("toolu_"), "name": name, "input": input,
        })),
    }
    json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": r.stop_reason,
        "stop_sequence": r.stop_sequence,
        "usage": r.usage.json(r.usage.output),
    })
}

/// `event: <name>\ndata: <json>\n\n`.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn stream_events(r: &Reply<'_>, knobs: &Knobs) -> Vec<Bytes> {
    let n = knobs.chunks.unwrap_or(3);
    let mut events = Vec::with_capacity(n + 10);
    events.push(event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": r.id, "type": "message", "role": "assistant", "model": r.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": r.usage.json(1),
        }}),
    ));
    let mut index = 0u32;
    let mut pinged = false;
    let mut block = |events: &mut Vec<Bytes>, start: Value, deltas: Vec<Value>| {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if !pinged {
            pinged = true;
            events.push(event("ping", &json!({"type": "ping"})));
        }
        for d in deltas {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    };
    if r.thinking {
        let mut deltas: Vec<Value> = text::split_chunks(THINKING_TEXT, 2)
            .into_iter()
            .map(|t| json!({"type": "thinking_delta", "thinking": t}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": signature()}));
        block(
            &mut events,
            json!({"type": "thinking", "thinking": ""}),
            deltas,
        );
    }
    match &r.answer {
        Answer::Text(t) if t.is_empty() => {}
        Answer::Text(t) => {
            let deltas = text::split_chunks(t, n)
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect();
            block(&mut events, json!({"type": "text", "text": ""}), deltas);
        }
        Answer::Tool { name, input } => {
            let args = input.to_string();
            let deltas = text::split_chunks(&args, n)
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            let start =
                json!({"type": "tool_use", "id": ids::new_id("toolu_"), "name": name, "input": {}});
            block(&mut events, start, deltas);
        }
    }
    if !pinged {
        events.push(event("ping", &json!({"type": "ping"})));
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": r.stop_reason, "stop_sequence": r.stop_sequence},
            "usage": r.usage.json(r.usage.output)}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// An Anthropic-shaped error: `{"type":"error","error":{"type","message"},"request_id"}`.
fn error(status: StatusCode, kind: &str, message: &str) -> Response<MockBody> {
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": ids::new_id("req_"),
    });
    respond::json(status, body.to_string())
}

fn invalid(message: &str) -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// Anthropic's error type for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's wording for a status.
fn status_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "invalid x-api-key",
        403 => "Your API key does not have permission to use the specified resource.",
        404 => "The requested resource could not be found.",
        413 => "Request exceeds the maximum allowed number of bytes.",
        429 => "This request would exceed your account's rate limit. Please try again later.",
        500 => "Internal server error",
        529 => "Overloaded",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// `hang`, `latency_ms` and the failure knobs, as `router::apply_faults` does, with Anthropic's error bodies.
async fn faults(
    shared: &Shared,
    knobs: &Knobs,
    model: &str,
    prompt_tokens: u64,
) -> Option<Response<MockBody>> {
    let status = crate::router::fault_status(shared, knobs, Some(model)).await?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match knobs.error_code.as_deref() {
        Some("context_length_exceeded") => format!(
            "prompt is too long: {} tokens > {CONTEXT_LIMIT} maximum",
            CONTEXT_LIMIT + prompt_tokens.max(1)
        ),
        Some("content_policy_violation" | "content_filter") => {
            "Output blocked by content filtering policy".to_string()
        }
        Some(code) => format!(
            "{} [{code}] (tollgate-mock error_code knob)",
            status_message(status)
        ),
        None => format!("{} (tollgate-mock status knob)", status_message(status)),
    };
    let mut resp = error(status, error_type(status.as_u16()), &message);
    if let Some(secs) = knobs.retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: Value) -> Vec<Message> {
        serde_json::from_value::<Vec<Value>>(v)
            .unwrap()
            .into_iter()
            .map(|m| Message {
                role: m["role"].as_str().unwrap_or_default().to_string(),
                content: m["content"].clone(),
            })
            .collect()
    }

    #[test]
    fn prompt_text_is_counted_and_blocks_are_checked() {
        let m = msgs(json!([
            {"role": "user", "content": [
                {"type": "text", "text": "abcd"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "12"}]},
        ]));
        assert_eq!(prompt_chars(Some(&json!("sys")), &m).unwrap(), 9);
        let bad = msgs(json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}}]}]));
        assert!(prompt_chars(None, &bad).unwrap_err().contains("media_type"));
        let bad = msgs(json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!"}}]}]));
        assert!(prompt_chars(None, &bad).unwrap_err().contains("base64"));
        let bad = msgs(
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]),
        );
        assert!(prompt_chars(None, &bad).is_err());
        let system_role = msgs(json!([{"role": "system", "content": "x"}]));
        assert!(
            prompt_chars(None, &system_role)
                .unwrap_err()
                .contains("top-level `system`")
        );
    }

    #[test]
    fn stream_follows_the_documented_event_order() {
        let reply = Reply {
            id: "msg_1".into(),
            model: "claude",
            answer: Answer::Text("one two three".into()),
            thinking: true,
            stop_reason: "end_turn",
            stop_sequence: None,
            usage: Usage {
                input: 3,
                cache_read: 0,
                output: 3,
            },
        };
        let events: Vec<String> = stream_events(&reply, &Knobs::default())
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.lines().next().unwrap().trim_start_matches("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert!(events[5].contains("signature_delta"));
        assert!(events[8].contains("\"index\":1"));
        assert!(events[12].contains("\"output_tokens\":3"));
    }
}
