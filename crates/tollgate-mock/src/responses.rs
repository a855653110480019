//! `POST /v1/responses`: a minimal Responses API object and its semantic event stream.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::body::MockBody;
use crate::router::{apply_faults, malformed, parse_body};
use crate::state::Shared;
use crate::text::{self, DEFAULT_CONTENT};
use crate::{ids, json, respond};

#[derive(Deserialize)]
struct ResponsesRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Text of one input item's `content` (a string or an array of parts).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Total input characters and the text of the last user input.
fn read_input(input: Option<&Value>) -> (usize, String) {
    match input {
        Some(Value::String(s)) => (text::chars(s), s.clone()),
        Some(Value::Array(items)) => {
            let mut chars = 0;
            let mut last_user = String::new();
            for item in items {
                let Some(content) = item.get("content") else {
                    continue;
                };
                let t = content_text(content);
                chars += text::chars(&t);
                if item.get("role").and_then(Value::as_str) == Some("user") {
                    last_user = t;
                }
            }
            (chars, last_user)
        }
        _ => (0, String::new()),
    }
}

/// What a response object looks like at one point of its life.
struct Snapshot<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    instructions: Option<&'a str>,
    msg_id: &'a str,
    text: &'a str,
    input_tokens: u64,
    output_tokens: u64,
}

impl Snapshot<'_> {
    fn write_message(&self, out: &mut String, done: bool) {
        out.push_str("{\"id\":");
        json::str(out, self.msg_id);
        out.push_str(",\"type\":\"message\",\"status\":");
        out.push_str(if done {
            "\"completed\""
        } else {
            "\"in_progress\""
        });
        out.push_str(",\"role\":\"assistant\",\"content\":[");
        if done {
            self.write_part(out, self.text);
        }
        out.push_str("]}");
    }

    fn write_part(&self, out: &mut String, text: &str) {
        out.push_str("{\"type\":\"output_text\",\"text\":");
        json::str(out, text);
        out.push_str(",\"annotations\":[]}");
    }

    fn write_response(&self, out: &mut String, done: bool) {
        out.push_str("{\"id\":");
        json::str(out, self.id);
        out.push_str(",\"object\":\"response\",\"created_at\":");
        json::num(out, self.created);
        out.push_str(",\"status\":");
        out.push_str(if done {
            "\"completed\""
        } else {
            "\"in_progress\""
        });
        out.push_str(",\"error\":null,\"incomplete_details\":null,\"instructions\":");
        json::opt_str(out, self.instructions);
        out.push_str(",\"model\":");
        json::str(out, self.model);
        out.push_str(",\"output\":[");
        if done {
            self.write_message(out, true);
        }
        out.push_str("],\"parallel_tool_calls\":true,\"previous_response_id\":null,\"usage\":");
        if done {
            out.push_str("{\"input_tokens\":");
            json::num(out, self.input_tokens);
            out.push_str(",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
            json::num(out, self.output_tokens);
            out.push_str(",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
            json::num(out, self.input_tokens + self.output_tokens);
            out.push('}');
        } else {
            out.push_str("null");
        }
        out.push('}');
    }
}

pub(crate) async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<MockBody> {
    let req: ResponsesRequest<'_> = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'model'.",
            Some("missing_required_parameter"),
            Some("model"),
        );
    }
    let knobs = match shared.knobs(headers, Some(&req.model)) {
        Ok(k) => k,
        Err(msg) => return respond::bad_request(&msg),
    };
    if let Some(resp) = apply_faults(shared, &knobs, Some(&req.model), 0).await {
        return resp;
    }

    let (input_chars, last_user) = read_input(req.input.as_ref());
    let instruction_chars = req.instructions.as_deref().map_or(0, text::chars);
    let text: &str = if knobs.echo {
        &last_user
    } else {
        knobs.content.as_deref().unwrap_or(DEFAULT_CONTENT)
    };
    let id = ids::new_id("resp_");
    let msg_id = ids::new_id("msg_");
    let snap = Snapshot {
        id: &id,
        created: ids::unix_now(),
        model: &req.model,
        instructions: req.instructions.as_deref(),
        msg_id: &msg_id,
        text,
        input_tokens: text::prompt_tokens(input_chars + instruction_chars),
        output_tokens: text::word_count(text),
    };

    if req.stream.unwrap_or(false) {
        let events = stream_events(&snap, knobs.chunks.unwrap_or(3));
        return respond::sse(events, knobs.pacing());
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let mut out = String::with_capacity(640 + text.len());
    snap.write_response(&mut out, true);
    respond::ok(out)
}

fn stream_events(snap: &Snapshot<'_>, chunks: usize) -> Vec<Bytes> {
    let mut events = Vec::with_capacity(chunks + 8);
    let mut seq = 0u64;
    let mut push = |kind: &str, body: &dyn Fn(&mut String)| {
        let mut s = String::with_capacity(256);
        s.push_str("event: ");
        s.push_str(kind);
        s.push_str("\ndata: {\"type\":\"");
        s.push_str(kind);
        s.push_str("\",\"sequence_number\":");
        json::num(&mut s, seq);
        seq += 1;
        body(&mut s);
        s.push_str("}\n\n");
        events.push(Bytes::from(s));
    };
    let item_ref = |s: &mut String| {
        s.push_str(",\"item_id\":");
        json::str(s, snap.msg_id);
        s.push_str(",\"output_index\":0,\"content_index\":0");
    };
    push("response.created", &|s| {
        s.push_str(",\"response\":");
        snap.write_response(s, false);
    });
    push("response.in_progress", &|s| {
        s.push_str(",\"response\":");
        snap.write_response(s, false);
    });
    push("response.output_item.added", &|s| {
        s.push_str(",\"output_index\":0,\"item\":");
        snap.write_message(s, false);
    });
    push("response.content_part.added", &|s| {
        item_ref(s);
        s.push_str(",\"part\":");
        snap.write_part(s, "");
    });
    for piece in text::split_chunks(snap.text, chunks) {
        push("response.output_text.delta", &|s| {
            item_ref(s);
            s.push_str(",\"delta\":");
            json::str(s, piece);
            s.push_str(",\"logprobs\":[]");
        });
    }
    push("response.output_text.done", &|s| {
        item_ref(s);
        s.push_str(",\"text\":");
        json::str(s, snap.text);
        s.push_str(",\"logprobs\":[]");
    });
    push("response.content_part.done", &|s| {
        item_ref(s);
        s.push_str(",\"part\":");
        snap.write_part(s, snap.text);
    });
    push("response.output_item.done", &|s| {
        s.push_str(",\"output_index\":0,\"item\":");
        snap.write_message(s, true);
    });
    push("response.completed", &|s| {
        s.push_str(",\"response\":");
        snap.write_response(s, true);
    });
    events
}
