//! `POST /v1/chat/completions`: `chat.completion` objects and `chat.completion.chunk` streams.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde::Deserialize;

use crate::body::MockBody;
use crate::knobs::Knobs;
use crate::router::{DONE, StreamOptions, apply_faults, malformed, parse_body, sse_data};
use crate::state::Shared;
use crate::text::{self, Content, DEFAULT_CONTENT};
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
    let answer = answer(&req, &knobs);
    let completion_tokens = match &answer {
        Answer::Text(t) => text::word_count(t),
        Answer::ToolCall { arguments, .. } => text::word_count(arguments).max(1),
    };
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
    };
    let id = ids::new_id("chatcmpl-");
    let created = ids::unix_now();

    if req.stream.unwrap_or(false) {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let events = stream_events(
            &id,
            created,
            &req.model,
            &answer,
            usage,
            include_usage,
            &knobs,
        );
        return respond::sse(events, knobs.pacing());
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    respond::ok(completion_json(&id, created, &req.model, &answer, usage))
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

#[derive(Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn write_usage(out: &mut String, u: Usage) {
    out.push_str("{\"prompt_tokens\":");
    json::num(out, u.prompt_tokens);
    out.push_str(",\"completion_tokens\":");
    json::num(out, u.completion_tokens);
    out.push_str(",\"total_tokens\":");
    json::num(out, u.prompt_tokens + u.completion_tokens);
    out.push_str(
        ",\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\
         \"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\
         \"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
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

fn completion_json(
    id: &str,
    created: u64,
    model: &str,
    answer: &Answer<'_>,
    usage: Usage,
) -> String {
    let mut out = String::with_capacity(640 + model.len());
    write_head(&mut out, id, "chat.completion", created, model);
    out.push_str("\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    let finish = match answer {
        Answer::Text(t) => {
            json::str(&mut out, t);
            "stop"
        }
        Answer::ToolCall { name, arguments } => {
            out.push_str("null,\"tool_calls\":[{\"id\":");
            json::str(&mut out, &ids::new_id("call_"));
            out.push_str(",\"type\":\"function\",\"function\":{\"name\":");
            json::str(&mut out, name);
            out.push_str(",\"arguments\":");
            json::str(&mut out, arguments);
            out.push_str("}}]");
            "tool_calls"
        }
    };
    out.push_str(",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"");
    out.push_str(finish);
    out.push_str("\"}],\"usage\":");
    write_usage(&mut out, usage);
    out.push('}');
    out
}

fn stream_events(
    id: &str,
    created: u64,
    model: &str,
    answer: &Answer<'_>,
    usage: Usage,
    include_usage: bool,
    knobs: &Knobs,
) -> Vec<Bytes> {
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
    let (pieces, finish) = match answer {
        Answer::Text(t) => {
            events.push(chunk(
                "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\
                 \"logprobs\":null,\"finish_reason\":null}",
            ));
            (text::split_chunks(t, n), "stop")
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
            (text::split_chunks(arguments, n), "tool_calls")
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
        write_usage(&mut s, usage);
        s.push('}');
        events.push(sse_data(&s));
    }
    events.push(Bytes::from_static(DONE));
    events
}
