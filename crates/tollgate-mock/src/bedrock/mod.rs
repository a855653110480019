//! The AWS Bedrock runtime wire format: Converse, ConverseStream (a binary event stream) and InvokeModel
//! for Titan and Cohere embeddings, with Bedrock's errors and authentication.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/model/{modelId}/converse` | a Converse response: `output.message.content` blocks, `stopReason`, `usage`, `metrics` |
//! | POST | `/model/{modelId}/converse-stream` | `application/vnd.amazon.eventstream`: `messageStart`, `contentBlockStart` (tool use), `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata` |
//! | POST | `/model/{modelId}/invoke` | `amazon.titan-embed-*`: `{"embedding","inputTextTokenCount"}`; `cohere.embed-*`: `{"embeddings","id","response_type","texts"}` |
//!
//! The model id is the percent-decoded path segment (an ARN's `%2F` included); knobs come from its
//! `@k=v` suffix and `x-mock-*` headers. With [`crate::MockOptions::api_key`] set, a request needs
//! `Authorization: Bearer <key>` (a Bedrock API key) or a SigV4 `Authorization` whose access key id is the
//! key (checked structurally, see `auth`; with [`crate::MockOptions::aws_secret_access_key`] the signature
//! is recomputed and a mismatch answered with a 403 `InvalidSignatureException`). Errors are `{"message": ...}` with `x-amzn-errortype`
//! (`ValidationException`, `ThrottlingException`, `AccessDeniedException`, ...); `error_code=
//! context_length_exceeded` answers "Input is too long for requested model.", `content_policy_violation`
//! a content-filtering refusal. Usage: `inputTokens` excludes the `cached_tokens` knob's
//! `cacheReadInputTokens`; `reasoning_tokens` adds to `outputTokens` and, when the request turns thinking on
//! (`additionalModelRequestFields.thinking` / `reasoningConfig`), answers a `reasoningContent` block first.
//! JSON mode is the forced `json_tool_call` tool: its input is `text::json_answer(answer)`.

mod auth;
mod eventstream;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::body::MockBody;
use crate::knobs::{Finish, Knobs, split_model};
use crate::router::Req;
use crate::state::Shared;
use crate::text::{self, Ending};
use crate::{embeddings, ids, respond};

/// The tool LiteLLM (and tollgate) force for JSON mode.
const JSON_TOOL: &str = "json_tool_call";
/// Cohere Embed on Bedrock takes at most this many texts per call.
const COHERE_MAX_TEXTS: usize = 96;

/// A Bedrock error: `{"message"}` with `x-amzn-errortype` and a request id.
fn error(status: StatusCode, error_type: &str, message: &str) -> Response<MockBody> {
    let mut resp = respond::json(status, json!({ "message": message }).to_string());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        h.insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn validation(message: &str) -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// The Bedrock error type and message a status knob answers with.
fn status_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => (
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        ),
        401 => (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            "ResourceNotFoundException",
            "The provided model identifier is invalid.",
        ),
        408 => (
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.",
        ),
        424 => (
            "ModelErrorException",
            "The model returned an error while processing the request.",
        ),
        429 => (
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        503 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        500..=599 => (
            "InternalServerException",
            "The server encountered an internal error while processing the request.",
        ),
        _ => ("ValidationException", "The request failed."),
    }
}

/// The failure the `status` / `retry_after` / `fail_*` / `error_code` knobs ask for, in Bedrock's shape.
fn knob_failure(
    status: u16,
    retry_after: Option<u64>,
    error_code: Option<&str>,
) -> Response<MockBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, message) = status_error(status);
    let mut resp = match error_code {
        Some("context_length_exceeded") => error(
            code,
            "ValidationException",
            "Input is too long for requested model.",
        ),
        Some("content_policy_violation" | "content_filter") => error(
            code,
            "ValidationException",
            "The request was blocked by the model's content filtering policy.",
        ),
        Some(other) => error(
            code,
            kind,
            &format!("{message} [{other}] (tollgate-mock error_code knob)"),
        ),
        None => error(
            code,
            kind,
            &format!("{message} (tollgate-mock status knob)"),
        ),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// `hang`, `latency_ms` and the failure knobs (as `router::apply_faults`, with Bedrock's errors).
async fn apply_faults(shared: &Shared, knobs: &Knobs, model: &str) -> Option<Response<MockBody>> {
    let status = crate::router::fault_status(shared, knobs, Some(model)).await?;
    Some(knob_failure(
        status,
        knobs.retry_after,
        knobs.error_code.as_deref(),
    ))
}

/// Percent-decode a path segment (`%3A` -> `:`); `None` when it is not valid UTF-8 afterwards.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let path = crate::router::without_v1(req.path);
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("Unknown operation ({} {})", req.method, req.path),
        )
    };
    let Some((raw_id, operation)) = path
        .strip_prefix("/model/")
        .and_then(|r| r.rsplit_once('/'))
    else {
        return unknown();
    };
    if req.method != Method::POST || raw_id.is_empty() {
        return unknown();
    }
    let Some(model) = percent_decode(raw_id) else {
        return validation("The model identifier is not valid UTF-8.");
    };
    if let Some(key) = shared.api_key.as_deref()
        && let Err(d) = auth::check_request(key, shared.aws_secret.as_deref(), req, unix_now())
    {
        return error(d.status, d.error_type, &d.message);
    }
    let knobs = match shared.knobs(req.headers, Some(&model)) {
        Ok(k) => k,
        Err(msg) => return validation(&msg),
    };
    let Ok(body) = serde_json::from_slice::<Value>(req.body) else {
        return validation("Malformed input request, please reformat your input and try again.");
    };
    if !body.is_object() {
        return validation("Malformed input request: the body must be a JSON object.");
    }
    let base = split_model(&model).0;
    match operation {
        "converse" | "converse-stream" => {
            if base.contains("embed") {
                return validation(
                    "This action doesn't support the model that you provided. Try again with a \
                     supported text or chat model.",
                );
            }
            converse(
                shared,
                &knobs,
                &model,
                &body,
                operation == "converse-stream",
            )
            .await
        }
        "invoke" => invoke(shared, &knobs, &model, base, &body).await,
        _ => unknown(),
    }
}

/// The text of a message's `text` blocks (and of its tool results when it has no text).
fn message_text(m: &Value) -> String {
    let blocks = m.get("content").and_then(Value::as_array);
    let texts: Vec<&str> = blocks
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    if !texts.is_empty() {
        return texts.concat();
    }
    blocks
        .into_iter()
        .flatten()
        .filter_map(|b| b.pointer("/toolResult/content"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect()
}

/// Characters of prompt text: system blocks, text blocks and tool results.
fn prompt_chars(body: &Value) -> usize {
    let system: usize = body
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(text::chars)
        .sum();
    let messages: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| text::chars(&message_text(m)))
        .sum();
    system + messages
}

/// Bedrock's own checks of a Converse request; the error message when it fails them.
fn validate(body: &Value) -> Result<(), String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("A conversation must start with a user message. Try again with a conversation that starts with a user message.")?;
    let mut previous = "";
    let mut tool_blocks = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !matches!(role, "user" | "assistant") {
            return Err(format!(
                "messages.{i}.role: `{role}` is not `user` or `assistant`."
            ));
        }
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if role == previous {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        previous = role;
        let content = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."))?;
        for b in content {
            let Some(obj) = b.as_object().filter(|o| o.len() == 1) else {
                return Err(format!(
                    "messages.{i}: a content block must have exactly one member."
                ));
            };
            let kind = obj.keys().next().map(String::as_str).unwrap_or_default();
            match kind {
                "text" if obj["text"].as_str().is_some_and(|t| t.trim().is_empty()) => {
                    return Err(format!(
                        "messages.{i}: text content blocks must be non-empty."
                    ));
                }
                "toolUse" if role != "assistant" => {
                    return Err(format!(
                        "messages.{i}: toolUse blocks belong to assistant messages."
                    ));
                }
                "toolResult" if role != "user" => {
                    return Err(format!(
                        "messages.{i}: toolResult blocks belong to user messages."
                    ));
                }
                "toolUse" | "toolResult" => tool_blocks = true,
                "text" | "image" | "document" | "video" | "reasoningContent" | "cachePoint"
                | "guardContent" => {}
                other => return Err(format!("messages.{i}: unknown content block `{other}`.")),
            }
        }
    }
    if tool_blocks && body.get("toolConfig").is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    Ok(())
}

/// What the assistant answers.
enum Answer {
    Text(String, Ending),
    Tool { name: String, input: Value },
}

/// `content` knob as a tool input object (non-JSON text is wrapped as `{"text": ...}`).
fn tool_input(content: Option<&str>) -> Value {
    match content.map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(v @ Value::Object(_))) => v,
        Some(_) => json!({ "text": content.unwrap_or_default() }),
    }
}

fn answer(body: &Value, knobs: &Knobs) -> Answer {
    let tools: Vec<&str> = body
        .pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str))
        .collect();
    let base = knobs.content.clone().unwrap_or_else(|| {
        if knobs.echo {
            body.get("messages")
                .and_then(Value::as_array)
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .map(message_text)
                .unwrap_or_default()
        } else {
            text::DEFAULT_CONTENT.to_string()
        }
    });
    if let (Some(want), Some(first)) = (knobs.tool_call.as_deref(), tools.first()) {
        let name = if want.is_empty() { *first } else { want };
        return Answer::Tool {
            name: name.to_string(),
            input: tool_input(knobs.content.as_deref()),
        };
    }
    let forced = match body.pointer("/toolConfig/toolChoice") {
        Some(c) if c.get("any").is_some() => tools.first().copied(),
        Some(c) => c.pointer("/tool/name").and_then(Value::as_str),
        None => None,
    };
    if let Some(name) = forced {
        let input = if name == JSON_TOOL {
            serde_json::from_str(&text::json_answer(&base)).unwrap_or_else(|_| json!({}))
        } else {
            tool_input(knobs.content.as_deref())
        };
        return Answer::Tool {
            name: name.to_string(),
            input,
        };
    }
    let stop: Vec<String> = body
        .pointer("/inferenceConfig/stopSequences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let max_tokens = body
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64);
    let (t, ending) = text::shape_answer(&base, &stop, max_tokens);
    Answer::Text(t, ending)
}

/// Whether the request turns extended thinking on (Anthropic `thinking`, Nova `reasoningConfig`).
fn thinking_requested(body: &Value) -> bool {
    let fields = body.get("additionalModelRequestFields");
    let thinking = fields
        .and_then(|f| f.pointer("/thinking/type"))
        .and_then(Value::as_str)
        .is_some_and(|t| matches!(t, "enabled" | "adaptive"));
    let reasoning = fields
        .and_then(|f| f.pointer("/reasoningConfig/type"))
        .and_then(Value::as_str)
        == Some("enabled");
    thinking || reasoning
}

/// The reasoning text the mock shows when thinking is on.
const REASONING_TEXT: &str = "The user wants an answer; I will give a short one.";
const REASONING_SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

async fn converse(
    shared: &Shared,
    knobs: &Knobs,
    model: &str,
    body: &Value,
    stream: bool,
) -> Response<MockBody> {
    if let Err(msg) = validate(body) {
        return validation(&msg);
    }
    if let Some(resp) = apply_faults(shared, knobs, model).await {
        return resp;
    }
    let prompt = text::prompt_tokens(prompt_chars(body));
    let answer = answer(body, knobs);
    let reasoning = knobs.reasoning_tokens.is_some() && thinking_requested(body);
    let (completion, mut stop) = match &answer {
        Answer::Text(t, Ending::Done) => (text::word_count(t), "end_turn"),
        Answer::Text(t, Ending::StopSequence(_)) => (text::word_count(t), "stop_sequence"),
        Answer::Text(t, Ending::MaxTokens) => (text::word_count(t), "max_tokens"),
        Answer::Tool { input, .. } => (text::word_count(&input.to_string()).max(1), "tool_use"),
    };
    match knobs.finish {
        Some(Finish::ContentFilter) => stop = "content_filtered",
        Some(Finish::Length) => stop = "max_tokens",
        Some(Finish::Stop) => stop = "end_turn",
        None => {}
    }
    let cached = knobs.cached_tokens.unwrap_or(0);
    let input_tokens = prompt.saturating_sub(cached);
    let output_tokens = completion + knobs.reasoning_tokens.unwrap_or(0);
    let mut usage = json!({
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + cached,
    });
    if knobs.cached_tokens.is_some() {
        usage["cacheReadInputTokens"] = cached.into();
        usage["cacheWriteInputTokens"] = 0.into();
    }
    let latency_ms = knobs.latency.map_or(0, |d| d.as_millis() as u64);
    let tool_use_id = ids::new_id("tooluse_");
    if stream {
        let frames = stream_frames(
            &answer,
            reasoning,
            stop,
            &usage,
            latency_ms,
            &tool_use_id,
            knobs,
        );
        let mut resp = Response::new(MockBody::events(frames, knobs.pacing()));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        return resp;
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let mut content = Vec::new();
    if reasoning {
        content.push(json!({ "reasoningContent": { "reasoningText": {
            "text": REASONING_TEXT, "signature": REASONING_SIGNATURE } } }));
    }
    match &answer {
        Answer::Text(t, _) => content.push(json!({ "text": t })),
        Answer::Tool { name, input } => content.push(json!({ "toolUse": {
            "toolUseId": tool_use_id, "name": name, "input": input } })),
    }
    let out = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": stop,
        "usage": usage,
        "metrics": { "latencyMs": latency_ms },
    });
    respond::ok(out.to_string())
}

/// The ConverseStream events of an answer, as event-stream messages.
fn stream_frames(
    answer: &Answer,
    reasoning: bool,
    stop: &str,
    usage: &Value,
    latency_ms: u64,
    tool_use_id: &str,
    knobs: &Knobs,
) -> Vec<Bytes> {
    use eventstream::event;
    let n = knobs.chunks.unwrap_or(3);
    let mut frames = vec![event("messageStart", &json!({ "role": "assistant" }))];
    let mut index = 0u64;
    if reasoning {
        frames.push(event(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "reasoningContent": { "text": REASONING_TEXT } } }),
        ));
        frames.push(event(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "reasoningContent": { "signature": REASONING_SIGNATURE } } }),
        ));
        frames.push(event(
            "contentBlockStop",
            &json!({ "contentBlockIndex": 0 }),
        ));
        index = 1;
    }
    match answer {
        Answer::Text(t, _) => {
            for piece in text::split_chunks(t, n)
                .into_iter()
                .filter(|p| !p.is_empty())
            {
                frames.push(event(
                    "contentBlockDelta",
                    &json!({ "contentBlockIndex": index, "delta": { "text": piece }, "p": "abcdefgh" }),
                ));
            }
        }
        Answer::Tool { name, input } => {
            frames.push(event(
                "contentBlockStart",
                &json!({ "contentBlockIndex": index, "start": { "toolUse": {
                    "toolUseId": tool_use_id, "name": name } } }),
            ));
            let args = input.to_string();
            for piece in text::split_chunks(&args, n)
                .into_iter()
                .filter(|p| !p.is_empty())
            {
                frames.push(event(
                    "contentBlockDelta",
                    &json!({ "contentBlockIndex": index, "delta": { "toolUse": { "input": piece } } }),
                ));
            }
        }
    }
    frames.push(event(
        "contentBlockStop",
        &json!({ "contentBlockIndex": index }),
    ));
    frames.push(event("messageStop", &json!({ "stopReason": stop })));
    frames.push(event(
        "metadata",
        &json!({ "usage": usage, "metrics": { "latencyMs": latency_ms } }),
    ));
    frames
}

/// InvokeModel for the embedding models (Titan text embeddings, Cohere Embed).
async fn invoke(
    shared: &Shared,
    knobs: &Knobs,
    model: &str,
    base: &str,
    body: &Value,
) -> Response<MockBody> {
    let titan = base.starts_with("amazon.titan-embed");
    let cohere = base.starts_with("cohere.embed");
    if !titan && !cohere {
        return validation(
            "tollgate-mock answers InvokeModel only for amazon.titan-embed-* and cohere.embed-* models.",
        );
    }
    let mut vector = Vec::new();
    let dims_of =
        |requested: Option<usize>| knobs.dims.or(requested).unwrap_or(embeddings::DEFAULT_DIMS);
    let (out, tokens) = if titan {
        let Some(input) = body.get("inputText").and_then(Value::as_str) else {
            return validation(
                "Malformed input request: #: required key [inputText] not found, please reformat your input and try again.",
            );
        };
        let v2 = base.starts_with("amazon.titan-embed-text-v2");
        let requested = match body.get("dimensions") {
            None => None,
            Some(_) if !v2 => {
                return validation(
                    "Malformed input request: #: extraneous key [dimensions] is not permitted, please reformat your input and try again.",
                );
            }
            Some(d) => match d.as_u64() {
                Some(d @ (256 | 512 | 1024)) => Some(d as usize),
                _ => {
                    return validation(&format!(
                        "Malformed input request: #/dimensions: {d} is not a valid enum value, please reformat your input and try again."
                    ));
                }
            },
        };
        if let Some(resp) = apply_faults(shared, knobs, model).await {
            return resp;
        }
        embeddings::embed(input, dims_of(requested), &mut vector);
        let tokens = text::prompt_tokens(text::chars(input));
        (
            json!({ "embedding": vector, "inputTextTokenCount": tokens }),
            tokens,
        )
    } else {
        let Some(texts) = body.get("texts").and_then(Value::as_array) else {
            return validation(
                "Malformed input request: #: required key [texts] not found, please reformat your input and try again.",
            );
        };
        let texts: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
        if texts.len() > COHERE_MAX_TEXTS {
            return validation(&format!(
                "Malformed input request: #/texts: expected maximum item count: {COHERE_MAX_TEXTS}, found: {}, please reformat your input and try again.",
                texts.len()
            ));
        }
        if body.get("input_type").and_then(Value::as_str).is_none() {
            return validation(
                "Malformed input request: #: required key [input_type] not found, please reformat your input and try again.",
            );
        }
        if let Some(resp) = apply_faults(shared, knobs, model).await {
            return resp;
        }
        let dims = dims_of(
            body.get("output_dimension")
                .and_then(Value::as_u64)
                .map(|d| d as usize),
        );
        let vectors: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| {
                embeddings::embed(t, dims, &mut vector);
                vector.clone()
            })
            .collect();
        let tokens: u64 = texts
            .iter()
            .map(|t| text::prompt_tokens(text::chars(t)))
            .sum();
        let by_type = body
            .get("embedding_types")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        let out = if by_type {
            json!({ "embeddings": { "float": vectors }, "id": ids::new_id(""), "response_type": "embeddings_by_type", "texts": texts })
        } else {
            json!({ "embeddings": vectors, "id": ids::new_id(""), "response_type": "embeddings_floats", "texts": texts })
        };
        (out, tokens)
    };
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let mut resp = respond::ok(out.to_string());
    resp.headers_mut().insert(
        "x-amzn-bedrock-input-token-count",
        HeaderValue::from(tokens),
    );
    resp
}

#[cfg(test)]
mod tests;
