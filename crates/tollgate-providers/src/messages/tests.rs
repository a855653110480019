//! Tests of the Messages API bridge: request translation, complete and streamed answers (any byte split),
//! count_tokens, and the whole bridge against the OpenAI provider and the mock upstream.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tollgate_core::{GatewayError, Usage};

use super::request::{self, Kind, Target};
use super::response;
use super::stream::{self, Translator};
use super::*;
use crate::sse::SseDecoder;
use crate::stream::{ChunkStream, StreamOutcome};

fn translate(body: &Value, provider: &str, model: &str, stream: bool) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let req = request::parse(&bytes, Kind::Messages).unwrap();
    let target = Target {
        model,
        anthropic_extras: request::takes_anthropic_extras(provider, model),
        stream,
    };
    serde_json::to_value(request::to_chat(req, target).unwrap()).unwrap()
}

fn parse_err(body: &Value, kind: Kind) -> GatewayError {
    request::parse(&serde_json::to_vec(body).unwrap(), kind).unwrap_err()
}

/// A request with every translated feature.
fn rich_request() -> Value {
    json!({
        "model": "claude-alias",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a careful assistant."},
            {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "The user wants two things.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "A cat. Let me check the weather."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 21C"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true, "content": [
                    {"type": "text", "text": "clock unavailable"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}
                ]},
                {"type": "text", "text": "Thanks. Summarize."}
            ]},
            {"role": "assistant", "content": "Summary:"}
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather of a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
             "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "stop_sequences": ["END", "STOP"],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "user-42"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stream": true
    })
}

#[test]
fn rich_request_becomes_an_openai_chat_body() {
    let body = translate(&rich_request(), "openai", "gpt-4o", true);
    insta::assert_json_snapshot!("chat_body_openai", body);
}

#[test]
fn anthropic_extras_are_kept_for_providers_that_take_them() {
    let body = translate(
        &rich_request(),
        "bedrock",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        false,
    );
    insta::assert_json_snapshot!("chat_body_bedrock", body);
    // A Claude model behind an OpenAI-style endpoint keeps them too (LiteLLM's rule).
    let body = translate(
        &rich_request(),
        "openrouter",
        "anthropic/claude-sonnet-4",
        false,
    );
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert!(body.get("reasoning_effort").is_none());
}

#[test]
fn simple_request_and_tool_choices() {
    let body = translate(
        &json!({"model": "m", "max_tokens": 5, "system": "Be terse.",
                "messages": [{"role": "user", "content": "hi"}]}),
        "openai",
        "gpt-4o-mini",
        false,
    );
    assert_eq!(
        body,
        json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hi"}
        ]})
    );
    let body = translate(
        &json!({"model": "m", "max_tokens": 5, "system": "",
                "messages": [{"role": "user", "content": "hi"}]}),
        "openai",
        "gpt-4o-mini",
        false,
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "hi"}]),
        "no empty system message"
    );
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    for (choice, want) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ] {
        let body = translate(
            &json!({"model": "m", "max_tokens": 5, "tools": tools, "tool_choice": choice,
                    "messages": [{"role": "user", "content": "hi"}]}),
            "openai",
            "gpt-4o",
            false,
        );
        assert_eq!(body["tool_choice"], want);
        assert!(body.get("parallel_tool_calls").is_none());
    }
    // Without tools there is no tool_choice to send.
    let body = translate(
        &json!({"model": "m", "max_tokens": 5, "tool_choice": {"type": "any"},
                "messages": [{"role": "user", "content": "hi"}]}),
        "openai",
        "gpt-4o",
        false,
    );
    assert!(body.get("tool_choice").is_none());
    // Thinking budgets become reasoning efforts for OpenAI models; disabled thinking is nothing.
    for (budget, effort) in [(1024, "low"), (3000, "medium"), (10000, "high")] {
        let body = translate(
            &json!({"model": "m", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": budget},
                    "messages": [{"role": "user", "content": "hi"}]}),
            "openai",
            "o3",
            false,
        );
        assert_eq!(body["reasoning_effort"], effort);
    }
    let body = translate(
        &json!({"model": "m", "max_tokens": 5, "thinking": {"type": "disabled"},
                "messages": [{"role": "user", "content": "hi"}]}),
        "openai",
        "o3",
        false,
    );
    assert!(body.get("reasoning_effort").is_none() && body.get("thinking").is_none());
    // Structured outputs.
    let body = translate(
        &json!({"model": "m", "max_tokens": 5,
                "output_format": {"type": "json_schema", "schema": {"type": "object"}},
                "messages": [{"role": "user", "content": "hi"}]}),
        "openai",
        "gpt-4o",
        false,
    );
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "structured_output", "schema": {"type": "object"}}})
    );
}

#[test]
fn required_and_unknown_fields_are_400s_naming_the_field() {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let e = parse_err(&json!({"model": "m", "messages": msgs}), Kind::Messages);
    assert_eq!(e.status().as_u16(), 400);
    assert_eq!(e.param(), Some("max_tokens"));
    assert_eq!(e.to_string(), "max_tokens: Field required");
    let e = parse_err(&json!({"max_tokens": 1, "messages": msgs}), Kind::Messages);
    assert_eq!(e.to_string(), "model: Field required");
    let e = parse_err(&json!({"model": "m", "max_tokens": 1}), Kind::Messages);
    assert_eq!(e.to_string(), "messages: Field required");
    let e = parse_err(
        &json!({"model": "m", "max_tokens": 1, "messages": []}),
        Kind::Messages,
    );
    assert_eq!(e.param(), Some("messages"));
    let e = parse_err(
        &json!({"model": "m", "max_tokens": 1, "messages": msgs, "frequency_penalty": 1}),
        Kind::Messages,
    );
    assert_eq!(e.param(), Some("frequency_penalty"));
    assert_eq!(
        e.to_string(),
        "frequency_penalty: Extra inputs are not permitted"
    );
    let e = parse_err(
        &json!({"model": "m", "max_tokens": 1, "messages": msgs, "mcp_servers": []}),
        Kind::Messages,
    );
    assert_eq!(e.param(), Some("mcp_servers"));
    // Type errors name the field.
    let e = parse_err(
        &json!({"model": "m", "max_tokens": "ten", "messages": msgs}),
        Kind::Messages,
    );
    assert_eq!(e.param(), Some("max_tokens"));
    assert!(e.to_string().starts_with("max_tokens: invalid type"), "{e}");
    let e = parse_err(
        &json!({"model": "m", "max_tokens": 1,
                "messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "x"}]}]}),
        Kind::Messages,
    );
    assert_eq!(e.param(), Some("messages"));
    assert!(
        e.to_string().contains("unknown variant `server_tool_use`"),
        "{e}"
    );
    let e = parse_err(
        &json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
        Kind::Messages,
    );
    assert_eq!(e.param(), Some("messages"));
    // Gateway fields are accepted; count_tokens needs no max_tokens.
    assert!(
        request::parse(
            &serde_json::to_vec(&json!({"model": "m", "max_tokens": 1, "messages": msgs,
                "tags": ["a"], "mock_response": "x", "stream": false, "service_tier": "auto"}))
            .unwrap(),
            Kind::Messages
        )
        .is_ok()
    );
    assert!(
        request::parse(
            &serde_json::to_vec(&json!({"model": "m", "messages": msgs})).unwrap(),
            Kind::CountTokens
        )
        .is_ok()
    );
    assert!(matches!(
        request::parse(b"[1]", Kind::Messages).unwrap_err(),
        GatewayError::MalformedJson(_)
    ));
}

#[test]
fn blocks_the_provider_cannot_take_are_400s() {
    let bytes = serde_json::to_vec(&json!({"model": "m", "max_tokens": 1,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "hi"}]}))
    .unwrap();
    let req = request::parse(&bytes, Kind::Messages).unwrap();
    let target = Target {
        model: "gpt-4o",
        anthropic_extras: false,
        stream: false,
    };
    let e = request::to_chat(req, target).unwrap_err();
    assert_eq!(e.param(), Some("tools"));
    assert!(e.to_string().contains("web_search_20250305"), "{e}");
    let bytes = serde_json::to_vec(&json!({"model": "m", "max_tokens": 1,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]}))
    .unwrap();
    let req = request::parse(&bytes, Kind::Messages).unwrap();
    let e = request::to_chat(req, target).unwrap_err();
    assert!(e.to_string().starts_with("messages.0.content.0:"), "{e}");
}

fn usage(prompt: u64, completion: u64, cached: u64, creation: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cached_tokens: cached,
        reasoning_tokens: 0,
        cache_creation_tokens: creation,
    }
}

#[test]
fn complete_answer_becomes_a_message() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant",
            "reasoning_content": "Let me think.",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call.2", "type": "function", "function": {"name": "broken", "arguments": "{not json"}}
            ]
        }}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 30}, "cache_creation_input_tokens": 10}
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    let (msg, u) = response::to_message(&bytes, None, "claude-alias").unwrap();
    assert_eq!(u, Some(usage(100, 20, 30, 10)));
    let mut v = serde_json::to_value(&msg).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    v["id"] = json!("msg_test");
    assert_eq!(
        v,
        json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-alias",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "broken", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 60, "output_tokens": 20,
                      "cache_creation_input_tokens": 10, "cache_read_input_tokens": 30}
        })
    );
}

#[test]
fn complete_answer_stop_reasons_thinking_blocks_and_given_usage() {
    let answer = |finish: &str| {
        let body = json!({"id": "x", "choices": [{"finish_reason": finish, "message": {
            "role": "assistant", "content": "hi",
            "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                {"type": "redacted_thinking", "data": "d"}],
            "reasoning_content": "hmm"}}]});
        let given = usage(5, 1, 0, 0);
        let (msg, u) =
            response::to_message(&serde_json::to_vec(&body).unwrap(), Some(given), "a").unwrap();
        assert_eq!(u, Some(given));
        serde_json::to_value(&msg).unwrap()
    };
    for (finish, reason) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
    ] {
        let v = answer(finish);
        assert_eq!(v["stop_reason"], reason);
        assert_eq!(
            v["content"],
            json!([{"type": "thinking", "thinking": "hmm", "signature": "s"},
                   {"type": "redacted_thinking", "data": "d"},
                   {"type": "text", "text": "hi"}])
        );
        assert_eq!(v["usage"]["input_tokens"], 5);
    }
    // An empty answer still has one (empty) text block; garbage is an error.
    let (msg, _) = response::to_message(br#"{"choices":[]}"#, None, "a").unwrap();
    assert_eq!(
        serde_json::to_value(&msg).unwrap()["content"],
        json!([{"type": "text", "text": ""}])
    );
    assert!(response::to_message(b"nope", None, "a").is_err());
}

/// An OpenAI chunk stream with reasoning, text, two tool calls, the finish reason and the usage chunk.
fn chat_chunks() -> String {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "alias",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut s = String::new();
    s += &chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    s += &chunk(json!({"reasoning_content": "Think"}), Value::Null);
    s += &chunk(json!({"reasoning_content": "ing…"}), Value::Null);
    s += &chunk(
        json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig"}]}),
        Value::Null,
    );
    s += &chunk(json!({"content": "Hel"}), Value::Null);
    s += &chunk(json!({"content": "lo ✓"}), Value::Null);
    s += &chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        Value::Null,
    );
    s += &chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        Value::Null,
    );
    s += &chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
        Value::Null,
    );
    s += &chunk(
        json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        Value::Null,
    );
    s += &chunk(json!({}), json!("tool_calls"));
    s += &format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62,
                         "prompt_tokens_details": {"cached_tokens": 8}}})
    );
    s += "data: [DONE]\n\n";
    s
}

/// The Anthropic events for [`chat_chunks`], in order.
fn expected_events() -> Vec<(String, Value)> {
    let start = |i: u32, block: Value| {
        (
            "content_block_start".to_string(),
            json!({"type": "content_block_start", "index": i, "content_block": block}),
        )
    };
    let delta = |i: u32, d: Value| {
        (
            "content_block_delta".to_string(),
            json!({"type": "content_block_delta", "index": i, "delta": d}),
        )
    };
    let stop = |i: u32| {
        (
            "content_block_stop".to_string(),
            json!({"type": "content_block_stop", "index": i}),
        )
    };
    vec![
        (
            "message_start".into(),
            json!({"type": "message_start", "message": {"id": "msg_test", "type": "message",
                "role": "assistant", "model": "claude-alias", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ),
        ("ping".into(), json!({"type": "ping"})),
        start(
            0,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ),
        delta(0, json!({"type": "thinking_delta", "thinking": "Think"})),
        delta(0, json!({"type": "thinking_delta", "thinking": "ing…"})),
        delta(0, json!({"type": "signature_delta", "signature": "sig"})),
        stop(0),
        start(1, json!({"type": "text", "text": ""})),
        delta(1, json!({"type": "text_delta", "text": "Hel"})),
        delta(1, json!({"type": "text_delta", "text": "lo ✓"})),
        stop(1),
        start(
            2,
            json!({"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}),
        ),
        delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "{\"city\":"}),
        ),
        delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "\"Paris\"}"}),
        ),
        stop(2),
        start(
            3,
            json!({"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}),
        ),
        delta(3, json!({"type": "input_json_delta", "partial_json": "{}"})),
        stop(3),
        (
            "message_delta".into(),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 42, "output_tokens": 12,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 8}}),
        ),
        ("message_stop".into(), json!({"type": "message_stop"})),
    ]
}

/// The (event name, data) pairs of an SSE text, with the message id replaced by `msg_test`.
fn events_of(sse: &[u8]) -> Vec<(String, Value)> {
    let mut d = SseDecoder::new();
    let mut evs = Vec::new();
    d.push(sse, &mut evs).unwrap();
    d.finish(&mut evs).unwrap();
    evs.into_iter()
        .map(|e| {
            let mut v: Value = serde_json::from_str(&e.data).unwrap();
            if v["type"] == "message_start" {
                assert!(v["message"]["id"].as_str().unwrap().starts_with("msg_"));
                v["message"]["id"] = json!("msg_test");
            }
            let name = e.event.unwrap_or_default();
            assert_eq!(v["type"], name.as_str(), "event name and type agree");
            (name, v)
        })
        .collect()
}

#[test]
fn stream_translation_gives_anthropic_events_across_any_split() {
    let wire = chat_chunks();
    let wire = wire.as_bytes();
    let whole = {
        let mut t = Translator::new("claude-alias");
        let mut out = Vec::new();
        let outcome = StreamOutcome::default();
        t.feed(wire, &mut out, &outcome);
        assert!(t.done, "message_stop at [DONE]");
        t.end(&mut out, &outcome);
        out
    };
    assert_eq!(events_of(&whole), expected_events());
    for split in 1..wire.len() {
        let mut t = Translator::new("claude-alias");
        let mut out = Vec::new();
        let outcome = StreamOutcome::default();
        t.feed(&wire[..split], &mut out, &outcome);
        t.feed(&wire[split..], &mut out, &outcome);
        t.end(&mut out, &outcome);
        assert_eq!(events_of(&out), expected_events(), "split at {split}");
    }
    // Three-way splits inside multi-byte characters and around event boundaries.
    for (a, b) in [(3, 7), (100, 101), (wire.len() / 3, 2 * wire.len() / 3)] {
        let mut t = Translator::new("claude-alias");
        let mut out = Vec::new();
        let outcome = StreamOutcome::default();
        for part in [&wire[..a], &wire[a..b], &wire[b..]] {
            t.feed(part, &mut out, &outcome);
        }
        t.end(&mut out, &outcome);
        assert_eq!(events_of(&out), expected_events(), "splits at {a}, {b}");
    }
}

fn chunk_stream(pieces: Vec<&'static str>, outcome: Arc<StreamOutcome>) -> ChunkStream {
    ChunkStream {
        body: futures_util::stream::iter(
            pieces.into_iter().map(|s| Bytes::from_static(s.as_bytes())),
        )
        .boxed(),
        outcome,
    }
}

async fn collect(s: ChunkStream) -> (Vec<Bytes>, Arc<StreamOutcome>) {
    let outcome = s.outcome.clone();
    let chunks: Vec<Bytes> = s.body.collect().await;
    (chunks, outcome)
}

#[tokio::test]
async fn translated_stream_forwards_chunk_by_chunk_and_shares_the_outcome() {
    let inner_outcome = Arc::new(StreamOutcome::default());
    inner_outcome.set_usage(usage(3, 2, 0, 0));
    inner_outcome.set_completed();
    let inner = chunk_stream(
        vec![
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"del",
            "ta\":{},\"finish_reason\":\"length\"}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n",
        ],
        inner_outcome.clone(),
    );
    let (chunks, outcome) = collect(stream::translate_stream(inner, "alias")).await;
    assert!(Arc::ptr_eq(&outcome, &inner_outcome));
    let texts: Vec<Vec<String>> = chunks
        .iter()
        .map(|c| events_of(c).into_iter().map(|(n, _)| n).collect())
        .collect();
    assert_eq!(
        texts,
        vec![
            vec!["message_start", "ping"],
            vec!["content_block_start", "content_block_delta"],
            vec!["content_block_stop"],
            vec!["message_delta", "message_stop"],
        ]
    );
    let all: Vec<u8> = chunks.concat();
    let evs = events_of(&all);
    let (_, delta) = &evs[evs.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 2);
    assert_eq!(delta["usage"]["input_tokens"], 3);
    assert!(outcome.completed() && outcome.failure().is_none());
}

#[tokio::test]
async fn stream_errors_become_anthropic_error_events_and_end_the_stream() {
    // An upstream's in-band error: recorded as the stream's failure.
    let outcome = Arc::new(StreamOutcome::default());
    let inner = chunk_stream(
        vec![
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"never\"}}]}\n\n",
        ],
        outcome.clone(),
    );
    let (chunks, outcome) = collect(stream::translate_stream(inner, "alias")).await;
    let evs = events_of(&chunks.concat());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        evs[4].1,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
    );
    assert_eq!(outcome.error_status(), Some(429));

    // The gateway's own failure (here an idle timeout) gives the error's type and message.
    let outcome = Arc::new(StreamOutcome::default());
    let err = GatewayError::UpstreamTimeout {
        deployment: "d".into(),
        after: Duration::from_secs(5),
    };
    outcome.set_failure(&err);
    let error_event = String::from_utf8(crate::openai::sse_error_event(&err)).unwrap();
    let inner = ChunkStream {
        body: futures_util::stream::iter([Bytes::from(error_event)]).boxed(),
        outcome: outcome.clone(),
    };
    let (chunks, _) = collect(stream::translate_stream(inner, "alias")).await;
    let evs = events_of(&chunks.concat());
    assert_eq!(
        evs.len(),
        1,
        "an error before anything else is the only event"
    );
    assert_eq!(evs[0].1["error"]["type"], "api_error");
    assert_eq!(evs[0].1["error"]["message"], err.public_message());
}

#[tokio::test]
async fn a_stream_that_ends_early_still_ends_with_message_stop() {
    let outcome = Arc::new(StreamOutcome::default());
    let inner = chunk_stream(
        vec!["data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}"],
        outcome,
    );
    let (chunks, _) = collect(stream::translate_stream(inner, "alias")).await;
    let names: Vec<String> = events_of(&chunks.concat())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn a_complete_message_streams_as_the_same_events() {
    let body = json!({"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant",
        "reasoning_content": "hmm", "content": "ok",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]});
    let (msg, _) = response::to_message(
        &serde_json::to_vec(&body).unwrap(),
        Some(usage(4, 3, 0, 0)),
        "alias",
    )
    .unwrap();
    let mut out = Vec::new();
    stream::message_events(&msg, &mut out);
    let evs = events_of(&out);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 4);
    assert_eq!(
        evs[9].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"})
    );
    assert_eq!(evs[11].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn count_tokens_is_a_documented_estimate() {
    let body = json!({
        "model": "m",
        "system": "12345678",                                  // 8 chars
        "messages": [
            {"role": "user", "content": "abcd"},               // 4
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]}, // 1 + 7
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "ok"},     // 2
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]} // 0
        ],
        "tools": [{"name": "f", "description": "dd", "input_schema": {"type": "object"}}] // 1 + 2 + 17
    });
    let Reply::Complete { body, usage } =
        count_tokens(&serde_json::to_vec(&body).unwrap()).unwrap()
    else {
        panic!("complete expected")
    };
    assert!(usage.is_none());
    // 42 characters -> ceil(42 / 4) = 11.
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"input_tokens": 11})
    );
    let Reply::Complete { body, .. } =
        count_tokens(br#"{"model":"m","messages":[{"role":"user","content":""}]}"#).unwrap()
    else {
        panic!("complete expected")
    };
    assert_eq!(&body[..], br#"{"input_tokens":1}"#);
    assert_eq!(
        count_tokens(br#"{"model":"m"}"#).unwrap_err().param(),
        Some("messages")
    );
}

// ---- The bridge against the OpenAI provider and the real mock upstream. ----

struct Upstream {
    mock: tollgate_mock::MockServer,
    provider: Arc<dyn Provider>,
}

async fn upstream() -> Upstream {
    let mock = crate::test_support::recording_mock("sk-upstream").await;
    let text = format!(
        "model_list:\n  - model_name: bridge\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: {}\n      api_key: sk-upstream\n",
        mock.base_url()
    );
    let env = tollgate_config::Env::from_map(Vec::new());
    let config = tollgate_config::load_str(
        &text,
        Path::new("config.yaml"),
        &env,
        &tollgate_config::Overrides::default(),
    )
    .unwrap();
    let client = crate::http_client();
    let ctx = crate::BuildContext {
        env: &env,
        client: &client,
        drop_params: false,
    };
    let provider: Arc<dyn Provider> =
        Arc::new(crate::openai::OpenAiProvider::new(&config.deployments[0], &ctx).unwrap());
    Upstream { mock, provider }
}

fn messages_call(body: Value, upstream_model: &str) -> Call {
    Call {
        endpoint: Endpoint::Messages,
        stream: body["stream"].as_bool().unwrap_or(false),
        body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        requested_model: "claude-alias".into(),
        upstream_model: upstream_model.into(),
        client_wants_usage: false,
        request_id: "req-1".into(),
        traceparent: None,
        timeout: Duration::from_secs(10),
    }
}

fn hello(stream: bool) -> Value {
    json!({"model": "claude-alias", "max_tokens": 64, "system": "Be terse.", "stream": stream,
           "messages": [{"role": "user", "content": "Say hello"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_complete_stream_tool_call_and_errors_against_the_mock() {
    let up = upstream().await;

    // Complete.
    let reply = crate::call(&up.provider, messages_call(hello(false), "gpt-4o"))
        .await
        .unwrap();
    let Reply::Complete { body, usage } = reply else {
        panic!("complete expected")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["model"], "claude-alias");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "This is a mock response from tollgate."}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"]["output_tokens"], 7);
    let u = usage.unwrap();
    assert_eq!(u.completion_tokens, 7);
    assert_eq!(v["usage"]["input_tokens"], u.prompt_tokens);
    let rec = up.mock.recorded();
    let sent = rec.last().unwrap();
    assert!(sent.path.ends_with("/chat/completions"), "{}", sent.path);
    assert_eq!(
        sent.json().unwrap(),
        json!({"model": "gpt-4o", "max_tokens": 64, "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Say hello"}]})
    );

    // Streamed.
    let reply = crate::call(
        &up.provider,
        messages_call(hello(true), "gpt-4o@chunks=4,chunk_interval_ms=5"),
    )
    .await
    .unwrap();
    let Reply::Stream(s) = reply else {
        panic!("stream expected")
    };
    let (chunks, outcome) = collect(s).await;
    assert!(chunks.len() > 1, "forwarded in pieces");
    let evs = events_of(&chunks.concat());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = evs
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "This is a mock response from tollgate.");
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 7);
    assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(outcome.completed(), "the inner stream was read to its end");
    assert_eq!(outcome.usage().unwrap().completion_tokens, 7);
    let sent = up.mock.recorded().last().unwrap().json().unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));

    // A tool call, complete and streamed.
    let tools = json!([{"name": "get_weather", "description": "weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let mut body = hello(false);
    body["tools"] = tools.clone();
    let model = "gpt-4o@tool_call=1,content={\"city\":\"Paris\"}";
    let Reply::Complete { body: answer, .. } =
        crate::call(&up.provider, messages_call(body.clone(), model))
            .await
            .unwrap()
    else {
        panic!("complete expected")
    };
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["name"], "get_weather");
    assert_eq!(v["content"][0]["input"], json!({"city": "Paris"}));
    assert!(v["content"][0]["id"].as_str().unwrap().starts_with("call_"));
    let sent = up.mock.recorded().last().unwrap().json().unwrap();
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    body["stream"] = json!(true);
    let Reply::Stream(s) = crate::call(&up.provider, messages_call(body, model))
        .await
        .unwrap()
    else {
        panic!("stream expected")
    };
    let (chunks, _) = collect(s).await;
    let evs = events_of(&chunks.concat());
    let start = evs
        .iter()
        .find(|(n, _)| n == "content_block_start")
        .unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let json_text: String = evs
        .iter()
        .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "tool_use");

    // The tool result goes back as a tool message right after the assistant's tool call.
    let body = json!({"model": "claude-alias", "max_tokens": 64, "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]});
    let reply = crate::call(&up.provider, messages_call(body, "gpt-4o")).await;
    assert!(matches!(reply, Ok(Reply::Complete { .. })));
    let sent = up.mock.recorded().last().unwrap().json().unwrap();
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"}
        ])
    );

    // Cached prompt tokens are reported apart from input_tokens; a length stop is max_tokens.
    let Reply::Complete { body, usage } = crate::call(
        &up.provider,
        messages_call(hello(false), "gpt-4o@cached_tokens=2,finish=length"),
    )
    .await
    .unwrap() else {
        panic!("complete expected")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    let u = usage.unwrap();
    assert_eq!(u.cached_tokens, 2);
    assert_eq!(v["stop_reason"], "max_tokens", "{v}");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 2);
    assert_eq!(v["usage"]["input_tokens"], u.prompt_tokens - 2);

    // Upstream errors keep their status; bad requests never reach the upstream.
    let e = crate::call(
        &up.provider,
        messages_call(hello(false), "gpt-4o@status=429"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.anthropic_error_type(), "rate_limit_error");
    let before = up.mock.recorded().len();
    let mut bad = hello(false);
    bad.as_object_mut().unwrap().remove("max_tokens");
    let e = crate::call(&up.provider, messages_call(bad, "gpt-4o"))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("max_tokens"));
    assert_eq!(up.mock.recorded().len(), before);

    // count_tokens never asks the upstream.
    let call = Call {
        endpoint: Endpoint::CountTokens,
        ..messages_call(
            json!({"model": "m", "messages": [{"role": "user", "content": "abcdefgh"}]}),
            "gpt-4o",
        )
    };
    let Reply::Complete { body, .. } = crate::call(&up.provider, call).await.unwrap() else {
        panic!("complete expected")
    };
    assert_eq!(&body[..], br#"{"input_tokens":2}"#);
    assert_eq!(up.mock.recorded().len(), before);
    up.mock.shutdown().await;
}
