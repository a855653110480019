//! `POST /v1/chat/completions`: `chat.completion` objects and `chat.completion.chunk` streams.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde::Deserialize;

use crate::body::MockBody;
use crate::knobs::{Finish, Knobs};
use crate::router::{DONE, StreamOptions, apply_faults, malformed, parse_body, sse_data};
use crate::state::Shared;
use crate::text::{self, Content, DEFAULT_CONTENT, Ending};
use crate::{ids, json, respond};

/// Fingerprint stamped on chat and completion responses.
pub(crate) const SYSTEM_FINGERPRINT: &str = "fp_tollgate_mock";

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    messages: Vec<Message<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(borrow, default)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(borrow, default)]
    response_format: Option<ResponseFormat<'a>>,
}

/// `stop`: one sequence or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Content<'a>,
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

/// What the assistant answers with.
enum Answer<'a> {
    Text(Cow<'a, str>),
    ToolCall {
        name: Cow<'a, str>,
        arguments: Cow<'a, str>,
    },
}

pub(crate) async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<MockBody> {
    let req: ChatRequest<'_> = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return respond::error(
            http::StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            None,
            Some("model"),
        );
    }
    if req.messages.is_empty() {
        return respond::error(
            http::StatusCode::BAD_REQUEST,
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            Some("empty_array"),
            Some("messages"),
        );
    }
    let knobs = match shared.knobs(headers, Some(&req.model)) {
        Ok(k) => k,
        Err(msg) => return respond::bad_request(&msg),
    };
    let prompt_chars: usize = req.messages.iter().map(|m| m.content.char_len()).sum();
    let prompt_tokens = text::prompt_tokens(prompt_chars);
    if let Some(resp) = apply_faults(shared, &knobs, Some(&req.model), prompt_tokens).await {
        return resp;
    }
    let (answer, ending) = shape(answer(&req, &knobs), &req);
    let finish = finish_reason(&answer, &ending, knobs.finish);
    let completion_tokens = match &answer {
        Answer::Text(t) => text::word_count(t),
        Answer::ToolCall { arguments, .. } => text::word_count(arguments).max(1),
    };
    let cached_tokens = knobs.cached_tokens.unwrap_or(0);
    let reasoning_tokens = knobs.reasoning_tokens.unwrap_or(0);
    let usage = Usage {
        // Cached tokens are part of the prompt tokens (OpenAI's `prompt_tokens_details`).
        prompt_tokens: prompt_tokens.max(cached_tokens),
        completion_tokens: completion_tokens + reasoning_tokens,
        cached_tokens,
        reasoning_tokens,
    };
    let id = ids::new_id("chatcmpl-");
    let created = ids::unix_now();
    let outcome = Outcome {
        answer,
        usage,
        finish,
    };

    if req.stream.unwrap_or(false) {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let events = stream_events(&id, created, &req.model, &outcome, include_usage, &knobs);
        return respond::sse(events, knobs.pacing());
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    respond::ok(completion_json(&id, created, &req.model, &outcome))
}

/// The text answer under the request's `stop` and `max_tokens` / `max_completion_tokens` (words are the mock's
/// tokens), as JSON when `response_format` asks for it. Tool calls are not shaped.
fn shape<'a>(answer: Answer<'a>, req: &ChatRequest<'_>) -> (Answer<'a>, Ending) {
    let Answer::Text(t) = answer else {
        return (answer, Ending::Done);
    };
    let stops: &[String] = match &req.stop {
        None => &[],
        Some(Stop::One(s)) => std::slice::from_ref(s),
        Some(Stop::Many(v)) => v,
    };
    let max = req.max_completion_tokens.or(req.max_tokens);
    let json = req
        .response_format
        .as_ref()
        .is_some_and(|f| f.kind == "json_object" || f.kind == "json_schema");
    if stops.is_empty() && max.is_none() && !json {
        return (Answer::Text(t), Ending::Done);
    }
    let (mut out, ending) = text::shape_answer(&t, stops, max);
    if json {
        out = text::json_answer(&out);
    }
    (Answer::Text(Cow::Owned(out)), ending)
}

/// The `finish_reason`: the `finish` knob, else `tool_calls` / `length` / `stop`.
fn finish_reason(answer: &Answer<'_>, ending: &Ending, forced: Option<Finish>) -> &'static str {
    match (forced, answer, ending) {
        (Some(Finish::ContentFilter), ..) => "content_filter",
        (Some(Finish::Length), ..) => "length",
        (Some(Finish::Stop), ..) => "stop",
        (None, Answer::ToolCall { .. }, _) => "tool_calls",
        (None, Answer::Text(_), Ending::MaxTokens) => "length",
        (None, Answer::Text(_), _) => "stop",
    }
}

fn answer<'a>(req: &'a ChatRequest<'a>, knobs: &'a Knobs) -> Answer<'a> {
    if let Some(want) = knobs.tool_call.as_deref() {
        let first = req
            .tools
            .as_deref()
            .and_then(|tools| tools.iter().find_map(|t| t.function.as_ref()))
            .map(|f| &f.name);
        if let Some(first) = first {
            let name = if want.is_empty() {
                Cow::Borrowed(&**first)
            } else {
                Cow::Borrowed(want)
            };
            let arguments = Cow::Borrowed(knobs.content.as_deref().unwrap_or("{}"));
            return Answer::ToolCall { name, arguments };
        }
    }
    if knobs.echo {
        let last_user = req.messages.iter().rev().find(|m| m.role == "user");
        return Answer::Text(last_user.map(|m| m.content.text()).unwrap_or_default());
    }
    Answer::Text(Cow::Borrowed(
        knobs.content.as_deref().unwrap_or(DEFAULT_CONTENT),
    ))
}

/// The answer with its usage and finish reason.
struct Outcome<'a> {
    answer: Answer<'a>,
    usage: Usage,
    finish: &'static str,
}

#[derive(Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    /// Includes `reasoning_tokens`.
    completion_tokens: u64,
    cached_tokens: u64,
    reasoning_tokens: u64,
}

fn write_usage(out: &mut String, u: Usage) {
    out.push_str("{\"prompt_tokens\":");
    json::num(out, u.prompt_tokens);
    out.push_str(",\"completion_tokens\":");
    json::num(out, u.completion_tokens);
    out.push_str(",\"total_tokens\":");
    json::num(out, u.prompt_tokens + u.completion_tokens);
    out.push_str(",\"prompt_tokens_details\":{\"cached_tokens\":");
    json::num(out, u.cached_tokens);
    out.push_str(",\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":");
    json::num(out, u.reasoning_tokens);
    out.push_str(
        ",\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
    );
}

/// `{"id":..,"object":..,"created":..,"model":..,` shared by both shapes.
fn write_head(out: &mut String, id: &str, object: &str, created: u64, model: &str) {
    out.push_str("{\"id\":");
    json::str(out, id);
    out.push_str(",\"object\":\"");
    out.push_str(object);
    out.push_str("\",\"created\":");
    json::num(out, created);
    out.push_str(",\"model\":");
    json::str(out, model);
    out.push_str(",\"service_tier\":\"default\",\"system_fingerprint\":\"");
    out.push_str(SYSTEM_FINGERPRINT);
    out.push_str("\",");
}

fn completion_json(id: &str, created: u64, model: &str, outcome: &Outcome<'_>) -> String {
    let Outcome {
        answer,
        usage,
        finish,
    } = outcome;
    let mut out = String::with_capacity(640 + model.len());
    write_head(&mut out, id, "chat.completion", created, model);
    out.push_str("\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    match answer {
        Answer::Text(t) => json::str(&mut out, t),
        Answer::ToolCall { name, arguments } => {
            out.push_str("null,\"tool_calls\":[{\"id\":");
            json::str(&mut out, &ids::new_id("call_"));
            out.push_str(",\"type\":\"function\",\"function\":{\"name\":");
            json::str(&mut out, name);
            out.push_str(",\"arguments\":");
            json::str(&mut out, arguments);
            out.push_str("}}]");
        }
    }
    out.push_str(",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"");
    out.push_str(finish);
    out.push_str("\"}],\"usage\":");
    write_usage(&mut out, *usage);
    out.push('}');
    out
}

fn stream_events(
    id: &str,
    created: u64,
    model: &str,
    outcome: &Outcome<'_>,
    include_usage: bool,
    knobs: &Knobs,
) -> Vec<Bytes> {
    let Outcome {
        answer,
        usage,
        finish,
    } = outcome;
    let mut head = String::with_capacity(200 + model.len());
    write_head(&mut head, id, "chat.completion.chunk", created, model);
    head.push_str("\"choices\":[");
    let tail = if include_usage {
        "],\"usage\":null}"
    } else {
        "]}"
    };
    let chunk = |choice: &str| {
        let mut s = String::with_capacity(head.len() + choice.len() + tail.len());
        s.push_str(&head);
        s.push_str(choice);
        s.push_str(tail);
        sse_data(&s)
    };
    let n = knobs.chunks.unwrap_or(3);
    let mut events = Vec::with_capacity(n + 3);
    let pieces = match answer {
        Answer::Text(t) => {
            events.push(chunk(
                "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\
                 \"logprobs\":null,\"finish_reason\":null}",
            ));
            text::split_chunks(t, n)
        }
        Answer::ToolCall { name, arguments } => {
            let mut c = String::from(
                "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":\
                 [{\"index\":0,\"id\":",
            );
            json::str(&mut c, &ids::new_id("call_"));
            c.push_str(",\"type\":\"function\",\"function\":{\"name\":");
            json::str(&mut c, name);
            c.push_str(",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}");
            events.push(chunk(&c));
            text::split_chunks(arguments, n)
        }
    };
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.iter().enumerate() {
        let mut c = String::with_capacity(96 + piece.len());
        c.push_str("{\"index\":0,\"delta\":{");
        if matches!(answer, Answer::ToolCall { .. }) {
            c.push_str("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
            json::str(&mut c, piece);
            c.push_str("}}]");
        } else {
            c.push_str("\"content\":");
            json::str(&mut c, piece);
        }
        c.push_str("},\"logprobs\":null,\"finish_reason\":");
        if i == last {
            c.push('"');
            c.push_str(finish);
            c.push('"');
        } else {
            c.push_str("null");
        }
        c.push('}');
        events.push(chunk(&c));
    }
    if include_usage {
        let mut s = String::with_capacity(head.len() + 400);
        s.push_str(&head);
        s.push_str("],\"usage\":");
        write_usage(&mut s, *usage);
        s.push('}');
        events.push(sse_data(&s));
    }
    events.push(Bytes::from_static(DONE));
    events
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;

    async fn call(body: Value) -> Value {
        let shared = Shared::new(None, None, false);
        let resp = handle(&shared, &HeaderMap::new(), body.to_string().as_bytes()).await;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn stream(body: Value) -> Vec<Value> {
        let shared = Shared::new(None, None, false);
        let resp = handle(&shared, &HeaderMap::new(), body.to_string().as_bytes()).await;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn req(model: &str) -> Value {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    }

    #[tokio::test]
    async fn stop_sequences_and_max_tokens() {
        let mut body = req("m@content=alpha beta STOP gamma delta");
        body["stop"] = json!("STOP");
        let v = call(body.clone()).await;
        assert_eq!(v["choices"][0]["message"]["content"], "alpha beta ");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 2);
        body["stop"] = json!(["nope", "gamma"]);
        let v = call(body.clone()).await;
        assert_eq!(v["choices"][0]["message"]["content"], "alpha beta STOP ");
        body.as_object_mut().unwrap().remove("stop");
        body["max_tokens"] = json!(2);
        let v = call(body.clone()).await;
        assert_eq!(v["choices"][0]["message"]["content"], "alpha beta");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        body["max_completion_tokens"] = json!(3);
        let v = call(body.clone()).await;
        assert_eq!(v["choices"][0]["message"]["content"], "alpha beta STOP");
        // Streams end the same way.
        body["stream"] = json!(true);
        let chunks = stream(body).await;
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "alpha beta STOP");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "length"
        );
    }

    #[tokio::test]
    async fn json_mode_answers_json() {
        for format in [
            json!({"type": "json_object"}),
            json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}),
        ] {
            let mut body = req("m@content=forty two");
            body["response_format"] = format;
            let v = call(body).await;
            let content = v["choices"][0]["message"]["content"].as_str().unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(content).unwrap(),
                json!({"text": "forty two"})
            );
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
        }
        let mut body = req("m");
        body["response_format"] = json!({"type": "text"});
        let v = call(body).await;
        assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_CONTENT);
    }

    #[tokio::test]
    async fn usage_detail_knobs() {
        let v = call(req("m@cached_tokens=3,reasoning_tokens=5")).await;
        let u = &v["usage"];
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 3);
        assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 5);
        // "hi" is 1 prompt token, raised to the 3 cached; 7 answer words + 5 reasoning.
        assert_eq!(
            (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
            (Some(3), Some(12))
        );
        assert_eq!(u["total_tokens"], 15);
        let mut body = req("m@reasoning_tokens=2");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let chunks = stream(body).await;
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 2);
        assert_eq!(usage["completion_tokens"], 9);
    }

    #[tokio::test]
    async fn finish_knob_forces_the_reason() {
        for (knob, want) in [
            ("content_filter", "content_filter"),
            ("length", "length"),
            ("stop", "stop"),
        ] {
            let v = call(req(&format!("m@finish={knob}"))).await;
            assert_eq!(v["choices"][0]["finish_reason"], want);
        }
        let mut body = req("m@finish=content_filter");
        body["stream"] = json!(true);
        let chunks = stream(body).await;
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "content_filter"
        );
        let mut body = req("m@tool_call=1,finish=stop");
        body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        let v = call(body).await;
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
    }
}
