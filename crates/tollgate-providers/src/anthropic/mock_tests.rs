//! The provider against the real mock server's Messages API: chat (complete and streamed), tools, JSON mode,
//! thinking, caching, errors, and the native Messages / count_tokens pass-through.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tollgate_config::{Env, Overrides, load_str};
use tollgate_core::GatewayError;
use tollgate_mock::MockServer;

use super::AnthropicProvider;
use super::response::tests::chunks;
use crate::{BuildContext, Call, Endpoint, Provider, Reply, StreamOutcome, http_client};

const KEY: &str = "sk-ant-test";

async fn mock() -> MockServer {
    crate::test_support::recording_mock(KEY).await
}

fn provider(mock: &MockServer, extra: &str) -> AnthropicProvider {
    let yaml = format!(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-up\n      api_base: {}\n      api_key: {KEY}\n{extra}",
        mock.base_url()
    );
    let cfg = load_str(
        &yaml,
        Path::new("test.yaml"),
        &Env::from_map([]),
        &Overrides::default(),
    )
    .unwrap();
    let client = http_client();
    let env = Env::from_map([]);
    let ctx = BuildContext {
        env: &env,
        client: &client,
        drop_params: false,
    };
    AnthropicProvider::new(&cfg.deployments[0], &ctx).unwrap()
}

fn call(endpoint: Endpoint, upstream_model: &str, body: Value) -> Call {
    Call {
        endpoint,
        stream: body["stream"].as_bool().unwrap_or(false),
        client_wants_usage: body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
        body: Bytes::from(body.to_string()),
        requested_model: "claude".into(),
        upstream_model: upstream_model.into(),
        request_id: "req-1".into(),
        traceparent: None,
        timeout: Duration::from_secs(10),
    }
}

fn chat(upstream_model: &str, extra: Value) -> Call {
    let mut body = json!({"model": "claude", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    call(Endpoint::ChatCompletions, upstream_model, body)
}

async fn complete(
    p: &AnthropicProvider,
    c: Call,
) -> Result<(Value, Option<tollgate_core::Usage>), GatewayError> {
    match p.call(c).await? {
        Reply::Complete { body, usage } => Ok((serde_json::from_slice(&body).unwrap(), usage)),
        Reply::Stream(_) => panic!("a complete answer expected"),
    }
}

async fn streamed(p: &AnthropicProvider, c: Call) -> (String, std::sync::Arc<StreamOutcome>) {
    match p.call(c).await.unwrap() {
        Reply::Stream(s) => {
            let parts: Vec<Bytes> = s.body.collect().await;
            (String::from_utf8(parts.concat()).unwrap(), s.outcome)
        }
        Reply::Complete { .. } => panic!("a stream expected"),
    }
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn chat_completion_through_the_messages_api() {
    let mock = mock().await;
    let p = provider(&mock, "");
    let (v, usage) = complete(&p, chat("claude-up", json!({"max_tokens": 100})))
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "This is a mock response from tollgate."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = usage.unwrap();
    // "Be brief." + "Say hello" = 18 characters = 5 tokens; 7 words.
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (5, 7, 12)
    );

    let rec = mock.recorded().pop().unwrap();
    assert_eq!(rec.path, "/v1/messages");
    assert_eq!(rec.header("x-api-key"), Some(KEY));
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rec.header("content-type"), Some("application/json"));
    assert!(rec.header("anthropic-beta").is_none());
    let sent = rec.json().unwrap();
    assert_eq!(sent["model"], "claude-up");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 100);

    // Stop sequences and max_tokens are the upstream's to apply.
    let (v, _) = complete(&p, chat("claude-up", json!({"stop": ["mock"]})))
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "This is a ");
    let (v, _) = complete(&p, chat("claude-up", json!({"max_tokens": 2})))
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let (v, _) = complete(&p, chat("claude-up@finish=content_filter", json!({})))
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");

    // Images go as base64 and URL sources; a bad one is the upstream's 400.
    let img = |url: &str| {
        chat(
            "claude-up",
            json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": url}},
            ]}]}),
        )
    };
    complete(&p, img("data:image/png;base64,iVBORw0KGgo="))
        .await
        .unwrap();
    complete(&p, img("https://example.com/a.png"))
        .await
        .unwrap();
    let e = complete(&p, img("data:image/png;base64,!!notbase64"))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 400);
    mock.shutdown().await;
}

#[tokio::test]
async fn streamed_chat_completion() {
    let mock = mock().await;
    let p = provider(&mock, "");
    let (text, outcome) = streamed(
        &p,
        chat(
            "claude-up@chunks=4",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    let c = chunks(text.as_bytes());
    assert_eq!(content_of(&c), "This is a mock response from tollgate.");
    assert_eq!(c.last().unwrap(), "[DONE]");
    let usage = &c[c.len() - 2];
    assert_eq!(usage["usage"]["total_tokens"], 12);
    assert!(c.iter().any(|x| x["choices"][0]["finish_reason"] == "stop"));
    assert!(outcome.completed());
    assert_eq!(outcome.usage().unwrap().completion_tokens, 7);
    assert_eq!(
        mock.recorded().pop().unwrap().json().unwrap()["stream"],
        true
    );

    // Without include_usage there is no usage chunk, but the outcome still has it.
    let (text, outcome) = streamed(&p, chat("claude-up", json!({"stream": true}))).await;
    assert!(!text.contains("\"usage\""));
    assert_eq!(outcome.usage().unwrap().total_tokens, 12);

    // A connection reset mid-stream ends it with an error event.
    let (text, outcome) = streamed(
        &p,
        chat("claude-up@reset_after_chunks=3", json!({"stream": true})),
    )
    .await;
    assert!(text.contains("\"error\""), "{text}");
    assert!(!outcome.completed());
    assert!(outcome.failure().is_some());
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_calls_complete_and_streamed() {
    let mock = mock().await;
    let p = provider(
        &mock,
        "      extra_headers: { x-mock-content: '{\"city\": \"Paris\"}' }\n",
    );
    let tools = json!({"tools": [{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let (v, _) = complete(&p, chat("claude-up@tool_call=1", tools.clone()))
        .await
        .unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
    assert!(
        msg["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_")
    );
    let args: Value = serde_json::from_str(
        msg["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let sent = mock.recorded().pop().unwrap().json().unwrap();
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );

    let mut stream_req = tools.clone();
    stream_req["stream"] = json!(true);
    let (text, _) = streamed(&p, chat("claude-up@tool_call=1", stream_req)).await;
    let c = chunks(text.as_bytes());
    let args: String = c
        .iter()
        .filter_map(|x| x["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert!(
        c.iter()
            .any(|x| x["choices"][0]["finish_reason"] == "tool_calls")
    );

    // The tool result goes back as a user tool_result block; a forced tool_choice is honoured.
    let mut follow = tools;
    follow["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]);
    follow["tool_choice"] = json!("required");
    let (v, _) = complete(&p, chat("claude-up", follow)).await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let sent = mock.recorded().pop().unwrap().json().unwrap();
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    mock.shutdown().await;
}

#[tokio::test]
async fn json_mode_answers_in_content() {
    let mock = mock().await;
    let p = provider(&mock, "");
    let rf = json!({"response_format": {"type": "json_object"}});
    let (v, _) = complete(&p, chat("claude-up", rf.clone())).await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        content,
        json!({"text": "This is a mock response from tollgate."})
    );
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());

    let mut s = rf;
    s["stream"] = json!(true);
    let (text, _) = streamed(&p, chat("claude-up", s)).await;
    let c = chunks(text.as_bytes());
    let content: Value = serde_json::from_str(&content_of(&c)).unwrap();
    assert_eq!(
        content,
        json!({"text": "This is a mock response from tollgate."})
    );
    assert!(!text.contains("tool_calls"));
    mock.shutdown().await;
}

#[tokio::test]
async fn thinking_and_cached_tokens() {
    let mock = mock().await;
    let p = provider(&mock, "");
    let (v, usage) = complete(
        &p,
        chat(
            "claude-up@reasoning_tokens=5,cached_tokens=2",
            json!({"reasoning_effort": "low"}),
        ),
    )
    .await
    .unwrap();
    let msg = &v["choices"][0]["message"];
    assert!(!msg["reasoning_content"].as_str().unwrap().is_empty());
    assert!(msg["thinking_blocks"][0]["signature"].as_str().is_some());
    let usage = usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens
        ),
        (5, 2, 12)
    );
    let sent = mock.recorded().pop().unwrap().json().unwrap();
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );

    let (text, outcome) = streamed(
        &p,
        chat(
            "claude-up@reasoning_tokens=5",
            json!({"reasoning_effort": "low", "stream": true}),
        ),
    )
    .await;
    let c = chunks(text.as_bytes());
    let reasoning: String = c
        .iter()
        .filter_map(|x| x["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(!reasoning.is_empty());
    assert!(text.contains("\"signature\""));
    assert_eq!(outcome.usage().unwrap().completion_tokens, 12);
    mock.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_are_mapped() {
    let mock = mock().await;
    let p = provider(&mock, "");
    let e = complete(&p, chat("claude-up@status=429,retry_after=3", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.retry_after().as_deref(), Some("3"));
    assert_eq!(e.error_type(), "rate_limit_error");
    let e = complete(
        &p,
        chat("claude-up@error_code=context_length_exceeded", json!({})),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.status().as_u16(), e.code()),
        (400, Some("context_length_exceeded"))
    );
    assert!(e.public_message().starts_with("prompt is too long"));
    let e = complete(
        &p,
        chat("claude-up@error_code=content_policy_violation", json!({})),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some("content_policy_violation"));
    let e = complete(&p, chat("claude-up@status=529", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 502);
    let GatewayError::UpstreamStatus(f) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (f.status, f.error_type.as_deref()),
        (529, Some("overloaded_error"))
    );
    // A stream that fails before it starts is an error, not a stream.
    let r = p
        .call(chat("claude-up@status=529", json!({"stream": true})))
        .await;
    assert!(r.is_err());
    // Params Anthropic has no equivalent for are refused.
    let e = complete(&p, chat("claude-up", json!({"logit_bias": {"1": 1}})))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("logit_bias"));
    let e = complete(&p, chat("claude-up", json!({"n": 2})))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("n"));
    // A wrong key is the upstream's 401.
    let bad = {
        let yaml = format!(
            "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-up\n      api_base: {}\n      api_key: wrong\n      drop_params: true\n",
            mock.base_url()
        );
        let cfg = load_str(
            &yaml,
            Path::new("t.yaml"),
            &Env::from_map([]),
            &Overrides::default(),
        )
        .unwrap();
        let client = http_client();
        let env = Env::from_map([]);
        AnthropicProvider::new(
            &cfg.deployments[0],
            &BuildContext {
                env: &env,
                client: &client,
                drop_params: false,
            },
        )
        .unwrap()
    };
    let e = complete(&bad, chat("claude-up", json!({"logit_bias": {"1": 1}})))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 401);
    mock.shutdown().await;
}

#[tokio::test]
async fn native_messages_pass_through() {
    let mock = mock().await;
    let p = provider(&mock, "");
    let body = json!({"model": "claude", "max_tokens": 50, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}]});
    let (v, usage) = complete(
        &p,
        call(
            Endpoint::Messages,
            "claude-up@cached_tokens=1",
            body.clone(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude");
    assert_eq!(
        v["content"][0]["text"],
        "This is a mock response from tollgate."
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 1);
    let usage = usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens
        ),
        (5, 1, 7)
    );
    let rec = mock.recorded().pop().unwrap();
    assert_eq!(rec.json().unwrap(), {
        let mut b = body.clone();
        b["model"] = json!("claude-up@cached_tokens=1");
        b
    });

    let mut s = body.clone();
    s["stream"] = json!(true);
    let (text, outcome) = streamed(&p, call(Endpoint::Messages, "claude-up", s)).await;
    assert!(text.starts_with("event: message_start\ndata: "), "{text}");
    assert!(text.contains("\"model\":\"claude\""), "{text}");
    assert!(!text.contains("claude-up"), "{text}");
    assert!(text.contains("event: ping\n"));
    assert!(
        text.trim_end()
            .ends_with("data: {\"type\":\"message_stop\"}"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"));
    assert!(outcome.completed());
    assert_eq!(outcome.usage().unwrap().total_tokens, 12);

    // Upstream errors of a pass-through keep Anthropic's type and message.
    let e = complete(
        &p,
        call(Endpoint::Messages, "claude-up@status=429", body.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.status().as_u16(), e.error_type()),
        (429, "rate_limit_error")
    );
    // A reset mid-stream ends with Anthropic's error event.
    let mut s = body.clone();
    s["stream"] = json!(true);
    let (text, outcome) = streamed(
        &p,
        call(Endpoint::Messages, "claude-up@reset_after_chunks=2", s),
    )
    .await;
    assert!(text.contains("event: error\ndata: {"), "{text}");
    assert!(text.contains("\"type\":\"error\""), "{text}");
    assert!(outcome.failure().is_some());

    let (v, usage) = complete(
        &p,
        call(
            Endpoint::CountTokens,
            "claude-up",
            json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(v, json!({"input_tokens": 3}));
    assert!(usage.is_none());
    assert_eq!(
        mock.recorded().pop().unwrap().path,
        "/v1/messages/count_tokens"
    );
    mock.shutdown().await;
}
