//! Wire-format tests: each OpenAI endpoint's response shape over real HTTP.

mod common;

use base64::Engine as _;
use common::*;
use http::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn chat_completion_shape() {
    let mock = start().await;
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o-mini"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    insta::assert_json_snapshot!("chat_completion", v, {
        ".id" => "[id]",
        ".created" => "[created]",
    });
    // "You are terse." (14) + "Say hello to the gateway." (25) = 39 chars -> 10 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 17);
    mock.shutdown().await;
}

#[tokio::test]
async fn chat_without_v1_prefix_and_model_echoed_exactly() {
    let mock = start().await;
    let r = post(
        &mock,
        "/chat/completions",
        &chat("weird \"model\"@latency_ms=0"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["model"], "weird \"model\"@latency_ms=0");
    mock.shutdown().await;
}

#[tokio::test]
async fn chat_multipart_content_counts_text_parts() {
    let mock = start().await;
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "12345678"},
            {"type": "image_url", "image_url": {"url": "data:,"}},
            {"type": "text", "text": "9"}
        ]}]
    });
    let r = post(
        &mock,
        "/v1/chat/completions",
        &body,
        &[("x-mock-echo", "1")],
    )
    .await;
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "123456789");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn chat_stream_without_usage() {
    let mock = start().await;
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat_stream("gpt-4o", false),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // role chunk + 3 content chunks, no usage chunk.
    assert_eq!(chunks.len(), 4);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "gpt-4o");
        assert!(
            c.get("usage").is_none(),
            "no usage field without include_usage: {c}"
        );
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "This is a mock response from tollgate.");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[1]["choices"][0]["finish_reason"].is_null());
    mock.shutdown().await;
}

#[tokio::test]
async fn chat_stream_with_usage() {
    let mock = start().await;
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat_stream("gpt-4o", true),
        &[],
    )
    .await;
    let data = r.sse_data();
    assert_eq!(data.len(), 6, "role + 3 content + usage + [DONE]: {data:?}");
    assert_eq!(data[5], "[DONE]");
    let usage: Value = serde_json::from_str(&data[4]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 10);
    assert_eq!(usage["usage"]["completion_tokens"], 7);
    assert_eq!(usage["usage"]["total_tokens"], 17);
    let content: Value = serde_json::from_str(&data[1]).unwrap();
    assert!(content["usage"].is_null());
    mock.shutdown().await;
}

#[tokio::test]
async fn completions_plain_and_stream() {
    let mock = start().await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time"});
    let v = post(&mock, "/v1/completions", &body, &[]).await.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(
        v["choices"][0]["text"],
        "This is a mock response from tollgate."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 7);

    let body = json!({"model": "m", "prompt": ["ab", "cd"], "stream": true,
        "stream_options": {"include_usage": true}});
    let r = post(&mock, "/completions", &body, &[("x-mock-chunks", "2")]).await;
    let data = r.sse_data();
    assert_eq!(data.len(), 4, "{data:?}");
    assert_eq!(data[3], "[DONE]");
    let c0: Value = serde_json::from_str(&data[0]).unwrap();
    let c1: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(c0["object"], "text_completion");
    assert!(c0["choices"][0]["finish_reason"].is_null());
    assert_eq!(c1["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&data[2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 2);

    let body = json!({"model": "m", "prompt": "x", "stream": true});
    let data = post(&mock, "/v1/completions", &body, &[]).await.sse_data();
    assert_eq!(data.len(), 4, "3 chunks + [DONE], no usage: {data:?}");
    mock.shutdown().await;
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let mock = start().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["hello", "world", [1, 2, 3]]});
    let v = post(&mock, "/v1/embeddings", &body, &[]).await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert_eq!(d["embedding"].as_array().unwrap().len(), 8);
    }
    // "hello" and "world" are 2 tokens each by the chars/4 rule, the token array 3.
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 7);

    // Deterministic: the same input gives the same vector.
    let single = post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e", "input": "hello"}),
        &[],
    )
    .await
    .json();
    assert_eq!(single["data"][0]["embedding"], data[0]["embedding"]);

    let body = json!({"model": "e", "input": "hello", "encoding_format": "base64"});
    let b64 = post(&mock, "/v1/embeddings", &body, &[]).await.json();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let expected: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats, expected);

    let body = json!({"model": "e", "input": "hello", "dimensions": 4});
    let v = post(&mock, "/v1/embeddings", &body, &[]).await.json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);

    let r = post(&mock, "/v1/embeddings", &json!({"model": "e"}), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["param"], "input");
    mock.shutdown().await;
}

#[tokio::test]
async fn models_list_and_get() {
    let mock = start().await;
    let v = get(&mock, "/v1/models", &[]).await.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt-4o"));
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model")
    );
    let v = get(&mock, "/models/my-fine-tune", &[]).await.json();
    assert_eq!(v["id"], "my-fine-tune");
    assert_eq!(v["object"], "model");
    mock.shutdown().await;
}

#[tokio::test]
async fn responses_plain() {
    let mock = start().await;
    let body = json!({"model": "gpt-4o", "instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "What is a gateway?"}]}
    ]});
    let r = post(&mock, "/v1/responses", &body, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    insta::assert_json_snapshot!("response_object", v, {
        ".id" => "[id]",
        ".created_at" => "[created]",
        ".output[].id" => "[msg_id]",
    });
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    // "Be brief." (9) + "What is a gateway?" (18) = 27 chars -> 7 tokens.
    assert_eq!(v["usage"]["input_tokens"], 7);
    assert_eq!(v["usage"]["output_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 14);
    mock.shutdown().await;
}

#[tokio::test]
async fn responses_stream_events() {
    let mock = start().await;
    let body = json!({"model": "gpt-4o", "input": "hi", "stream": true});
    let r = post(&mock, "/v1/responses", &body, &[("x-mock-chunks", "2")]).await;
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let text = r.text();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap()
                .to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "This is a mock response from tollgate.");
    let done = &events[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], deltas);
    assert_eq!(done["usage"]["output_tokens"], 7);
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    mock.shutdown().await;
}

#[tokio::test]
async fn unknown_route_and_malformed_json() {
    let mock = start().await;
    let r = get(&mock, "/v1/nope", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let e = r.json();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("/v1/nope"));
    assert!(e["error"].get("param").is_some() && e["error"].get("code").is_some());

    let r = post_raw(&mock, "/v1/chat/completions", "{\"model\": ").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("malformed_json_error", r.json(), {
        ".error.message" => "[message]",
    });

    let r = post(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["param"], "messages");

    let r = post(
        &mock,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["param"], "model");
    mock.shutdown().await;
}
