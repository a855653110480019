//! `POST /v1/completions`: legacy `text_completion` objects and their streams.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;

use crate::body::MockBody;
use crate::chat::SYSTEM_FINGERPRINT;
use crate::router::{DONE, StreamOptions, apply_faults, malformed, parse_body, sse_data};
use crate::state::Shared;
use crate::text::{self, DEFAULT_CONTENT};
use crate::{ids, json, respond};

#[derive(Deserialize)]
struct CompletionRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    prompt: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

pub(crate) async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<MockBody> {
    let req: CompletionRequest<'_> = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            None,
            Some("model"),
        );
    }
    let prompts = match &req.prompt {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => match text::parse_inputs(v) {
            Ok(p) => p,
            Err(msg) => {
                return respond::error(StatusCode::BAD_REQUEST, msg, None, Some("prompt"));
            }
        },
    };
    let knobs = match shared.knobs(headers, Some(&req.model)) {
        Ok(k) => k,
        Err(msg) => return respond::bad_request(&msg),
    };
    let prompt_tokens = prompts.iter().map(|(_, t)| t).sum::<u64>().max(1);
    if let Some(resp) = apply_faults(shared, &knobs, Some(&req.model), prompt_tokens).await {
        return resp;
    }
    let content: &str = if knobs.echo {
        prompts.last().map_or("", |(p, _)| p)
    } else {
        knobs.content.as_deref().unwrap_or(DEFAULT_CONTENT)
    };
    let completion_tokens = text::word_count(content);
    let id = ids::new_id("cmpl-");
    let created = ids::unix_now();
    let mut head = String::with_capacity(160 + req.model.len());
    head.push_str("{\"id\":");
    json::str(&mut head, &id);
    head.push_str(",\"object\":\"text_completion\",\"created\":");
    json::num(&mut head, created);
    head.push_str(",\"model\":");
    json::str(&mut head, &req.model);
    head.push_str(",\"system_fingerprint\":\"");
    head.push_str(SYSTEM_FINGERPRINT);
    head.push_str("\",\"choices\":[");

    if req.stream.unwrap_or(false) {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let tail = if include_usage {
            "],\"usage\":null}"
        } else {
            "]}"
        };
        let pieces = text::split_chunks(content, knobs.chunks.unwrap_or(3));
        let last = pieces.len().saturating_sub(1);
        let mut events: Vec<Bytes> = Vec::with_capacity(pieces.len() + 2);
        for (i, piece) in pieces.iter().enumerate() {
            let mut s = String::with_capacity(head.len() + piece.len() + 80);
            s.push_str(&head);
            s.push_str("{\"text\":");
            json::str(&mut s, piece);
            s.push_str(",\"index\":0,\"logprobs\":null,\"finish_reason\":");
            s.push_str(if i == last { "\"stop\"}" } else { "null}" });
            s.push_str(tail);
            events.push(sse_data(&s));
        }
        if include_usage {
            let mut s = head.clone();
            s.push_str("],\"usage\":");
            write_usage(&mut s, prompt_tokens, completion_tokens);
            s.push('}');
            events.push(sse_data(&s));
        }
        events.push(Bytes::from_static(DONE));
        return respond::sse(events, knobs.pacing());
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let mut out = head;
    out.push_str("{\"text\":");
    json::str(&mut out, content);
    out.push_str(",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":");
    write_usage(&mut out, prompt_tokens, completion_tokens);
    out.push('}');
    respond::ok(out)
}

fn write_usage(out: &mut String, prompt: u64, completion: u64) {
    out.push_str("{\"prompt_tokens\":");
    json::num(out, prompt);
    out.push_str(",\"completion_tokens\":");
    json::num(out, completion);
    out.push_str(",\"total_tokens\":");
    json::num(out, prompt + completion);
    out.push('}');
}
