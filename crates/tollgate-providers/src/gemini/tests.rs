//! Tests of the Gemini provider: configuration, error mapping, param refusal, and calls against the real mock
//! upstream (chat, stream, tool calls, knobs, errors, embeddings).

use std::time::Duration;

use futures_util::StreamExt;
use http::Method;
use serde_json::{Value, json};
use tollgate_config::{Deployment, Env, Secret};
use tollgate_mock::{MockOptions, MockServer};

use super::response::tests::summarize;
use super::*;
use crate::{ChunkStream, http_client};

fn deployment(api_base: Option<&str>, key: Option<&str>) -> Deployment {
    Deployment {
        api_base: api_base.map(str::to_string),
        api_key: key.map(Secret::from),
        ..crate::test_support::bare_deployment("gemini", "gem", "gemini-2.0-flash")
    }
}

fn build(
    d: &Deployment,
    env: &[(&str, &str)],
    drop_params: bool,
) -> Result<GeminiProvider, BuildError> {
    let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let client = http_client();
    GeminiProvider::new(
        d,
        &BuildContext {
            env: &env,
            client: &client,
            drop_params,
        },
    )
}

fn call(endpoint: Endpoint, body: Value, model: &str, stream: bool) -> Call {
    Call {
        endpoint,
        body: Bytes::from(body.to_string()),
        requested_model: "alias".into(),
        upstream_model: model.into(),
        stream,
        client_wants_usage: true,
        request_id: "req-1".into(),
        traceparent: None,
        timeout: Duration::from_secs(10),
    }
}

fn chat_body(extra: Value) -> Value {
    let mut body =
        json!({"model": "alias", "messages": [{"role": "user", "content": "Hello there"}]});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body
}

async fn complete(
    p: &GeminiProvider,
    c: Call,
) -> Result<(Value, tollgate_core::Usage), GatewayError> {
    match p.call(c).await? {
        Reply::Complete { body, usage } => {
            Ok((serde_json::from_slice(&body).unwrap(), usage.unwrap()))
        }
        Reply::Stream(_) => panic!("expected a complete answer"),
    }
}

/// The whole client-side SSE text of a stream.
async fn collect(s: ChunkStream) -> (String, std::sync::Arc<crate::StreamOutcome>) {
    let outcome = s.outcome.clone();
    let parts: Vec<Bytes> = s.body.collect().await;
    let text = parts
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    (text, outcome)
}

async fn stream(p: &GeminiProvider, c: Call) -> (String, std::sync::Arc<crate::StreamOutcome>) {
    match p.call(c).await.unwrap() {
        Reply::Stream(s) => collect(s).await,
        Reply::Complete { .. } => panic!("expected a stream"),
    }
}

#[test]
fn base_url_key_and_version() {
    let p = build(&deployment(None, Some("k")), &[], false)
        .ok()
        .unwrap();
    assert_eq!(
        p.api_base(),
        "https://generativelanguage.googleapis.com/v1beta"
    );
    assert!(p.supports(Endpoint::ChatCompletions) && p.supports(Endpoint::Embeddings));
    assert!(!p.supports(Endpoint::Completions) && !p.supports(Endpoint::Responses));
    let uri = p
        .inner
        .uri(
            "gemini-2.0-flash@status=429,content=a b:c/d",
            "generateContent",
        )
        .unwrap();
    assert_eq!(
        uri.to_string(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash@status=429,content=a%20b%3Ac%2Fd:generateContent"
    );
    assert_eq!(
        p.inner.headers.get("x-goog-api-key").map(|v| v.as_bytes()),
        Some(&b"k"[..])
    );
    // Env fallbacks; a base ending in a version is used as is; api_version picks the version.
    let p = build(
        &deployment(None, None),
        &[
            ("GOOGLE_API_KEY", "g"),
            ("GEMINI_API_BASE", "http://proxy:1/v1/"),
        ],
        false,
    )
    .ok()
    .unwrap();
    assert_eq!(p.api_base(), "http://proxy:1/v1");
    assert_eq!(
        p.inner.headers.get("x-goog-api-key").map(|v| v.as_bytes()),
        Some(&b"g"[..])
    );
    let mut d = deployment(Some("http://user:pw@host:2"), None);
    d.api_version = Some("v1alpha".into());
    let p = build(&d, &[], false).ok().unwrap();
    assert_eq!(p.api_base(), "http://host:2/v1alpha");
    assert!(p.inner.headers.get("x-goog-api-key").is_none());
    // No key and no base: a config error; a bad base too.
    let e = build(&deployment(None, None), &[], false).err().unwrap();
    assert!(e.to_string().contains("GEMINI_API_KEY"), "{e}");
    assert!(build(&deployment(Some("ftp://x"), Some("k")), &[], false).is_err());
}

#[test]
fn google_errors_are_mapped() {
    let e = upstream_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        br#"{"error":{"code":400,"message":"The input token count (1048999) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(e.status().as_u16(), 400);
    assert_eq!(e.code(), Some("context_length_exceeded"));
    assert_eq!(e.error_type(), "INVALID_ARGUMENT");
    assert!(e.public_message().starts_with("The input token count"));

    let e = upstream_error(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},
                       {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
    );
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.retry_after().as_deref(), Some("37"));
    assert_eq!(e.error_type(), "RESOURCE_EXHAUSTED");

    let e = upstream_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        br#"[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}]"#,
    );
    assert_eq!(e.status().as_u16(), 401);
    assert_eq!(e.code(), Some("invalid_api_key"));

    let e = upstream_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        br#"{"error":{"code":400,"message":"The request was blocked: the prompt was flagged for safety reasons.","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(e.code(), Some("content_policy_violation"));

    let e = upstream_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &HeaderMap::new(),
        b"<html>oops</html>",
    );
    assert_eq!(e.status().as_u16(), 502);
    assert!(e.public_message().contains("oops"));
}

#[tokio::test]
async fn unsupported_params_are_refused_unless_dropped() {
    let d = deployment(Some("http://127.0.0.1:9"), None);
    let p = build(&d, &[], false).ok().unwrap();
    let e = p
        .call(call(
            Endpoint::ChatCompletions,
            chat_body(json!({"logprobs": true})),
            "m",
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("logprobs"));
    assert_eq!(e.code(), Some("unsupported_parameter"));
    let e = p
        .call(call(
            Endpoint::ChatCompletions,
            chat_body(json!({"n": 2})),
            "m",
            true,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("n"));
    let e = p
        .call(call(
            Endpoint::Embeddings,
            json!({"input": "x", "user_vector": 1}),
            "m",
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("user_vector"));
    let e = p
        .call(call(Endpoint::Completions, json!({}), "m", false))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 400);
}

async fn mock_and_provider(opts: MockOptions, key: Option<&str>) -> (MockServer, GeminiProvider) {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap();
    let base = format!("http://{}", mock.addr());
    let p = build(&deployment(Some(&base), key), &[], false)
        .ok()
        .unwrap();
    (mock, p)
}

#[tokio::test]
async fn chat_against_the_mock() {
    let (mock, p) = mock_and_provider(
        MockOptions {
            record: true,
            api_key: Some("sekret".into()),
            ..MockOptions::default()
        },
        Some("sekret"),
    )
    .await;
    let (v, usage) = complete(
        &p,
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({"temperature": 0.5})),
            "gemini-2.0-flash",
            false,
        ),
    )
    .await
    .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "alias");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "This is a mock response from tollgate."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "Hello there" is 11 characters: 3 prompt tokens; the answer is 7 words.
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (3, 7, 10)
    );
    let rec = mock.recorded();
    let last = rec.last().unwrap();
    assert_eq!(last.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(last.header("x-goog-api-key"), Some("sekret"));
    assert!(last.query.is_none(), "the key never goes in the URL");
    assert_eq!(
        last.json().unwrap()["generationConfig"],
        json!({"temperature": 0.5})
    );

    // Wrong key: the mock's 401 stays a 401.
    let bad = build(
        &deployment(Some(&format!("http://{}", mock.addr())), Some("wrong")),
        &[],
        false,
    )
    .ok()
    .unwrap();
    let e = bad
        .call(call(
            Endpoint::ChatCompletions,
            chat_body(json!({})),
            "gemini-2.0-flash",
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 401);

    // n = 2 answers two choices; an api_base ending in /v1 is used as is.
    let v1 = build(
        &deployment(Some(&mock.base_url()), Some("sekret")),
        &[],
        false,
    )
    .ok()
    .unwrap();
    let (v, _) = complete(
        &v1,
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({"n": 2})),
            "gemini-2.0-flash",
            false,
        ),
    )
    .await
    .unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(
        mock.recorded().last().unwrap().path,
        "/v1/models/gemini-2.0-flash:generateContent"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_full_translated_request_passes_the_mocks_checks() {
    let (mock, p) = mock_and_provider(MockOptions::default(), Some("k")).await;
    let body = json!({
        "model": "alias",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b__thought__c2ln", "type": "function", "function": {"name": "noargs", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b__thought__c2ln", "content": "{\"ok\":true}"},
            {"role": "user", "content": "and tomorrow?"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "strict": true, "parameters": {
                "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
                "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "noargs", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": "auto",
        "stop": ["\n\n"], "max_tokens": 50, "top_k": 3, "seed": 1, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
            "type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": false}}},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    });
    let (v, usage) = complete(
        &p,
        call(
            Endpoint::ChatCompletions,
            body,
            "gemini-2.5-flash@echo",
            false,
        ),
    )
    .await
    .unwrap();
    // JSON mode answers {"text": <echo of the last user turn>}.
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "{\"text\":\"and tomorrow?\"}"
    );
    assert!(usage.prompt_tokens > 5);
    mock.shutdown().await;
}

#[tokio::test]
async fn stream_against_the_mock() {
    let (mock, p) = mock_and_provider(MockOptions::default(), Some("k")).await;
    let (sse, outcome) = stream(
        &p,
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({"stream": true})),
            "gemini-2.0-flash@chunks=4",
            true,
        ),
    )
    .await;
    let s = summarize(&sse);
    let (text, finishes, usage) = (s.text, s.finishes, s.usage);
    assert_eq!(text, "This is a mock response from tollgate.");
    assert_eq!(finishes, vec!["stop"]);
    assert_eq!(usage.unwrap()["total_tokens"], 10);
    assert!(sse.ends_with("data: [DONE]\n\n"));
    assert!(outcome.completed());
    assert_eq!(outcome.usage().unwrap().completion_tokens, 7);

    // Thinking: reasoning deltas and reasoning tokens.
    let (sse, outcome) = stream(
        &p,
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({"stream": true, "reasoning_effort": "high", "max_tokens": 3})),
            "gemini-2.5-flash@reasoning_tokens=12,cached_tokens=2",
            true,
        ),
    )
    .await;
    let s = summarize(&sse);
    let (text, reasoning, finishes) = (s.text, s.reasoning, s.finishes);
    assert_eq!(text, "This is a");
    assert!(!reasoning.is_empty());
    assert_eq!(finishes, vec!["length"]);
    let u = outcome.usage().unwrap();
    assert_eq!(
        (
            u.reasoning_tokens,
            u.completion_tokens,
            u.cached_tokens,
            u.prompt_tokens
        ),
        (12, 15, 2, 3)
    );

    // A connection cut before the finish reason ends in an error event, not a clean end.
    let (sse, outcome) = stream(
        &p,
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({"stream": true})),
            "gemini-2.0-flash@reset_after_chunks=1",
            true,
        ),
    )
    .await;
    assert!(sse.contains("\"error\""), "{sse}");
    assert!(!outcome.completed());
    assert!(outcome.failure().is_some());
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_calls_against_the_mock() {
    let (mock, p) = mock_and_provider(MockOptions::default(), Some("k")).await;
    let tools = json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]});
    let (v, _) = complete(
        &p,
        call(
            Endpoint::ChatCompletions,
            chat_body(tools.clone()),
            "gemini-2.0-flash@tool_call=1",
            false,
        ),
    )
    .await
    .unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );
    assert!(
        choice["message"]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("call_")
    );

    // A forced choice calls the named function, with the content knob as arguments; also streamed.
    let mut body = chat_body(tools);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    body["stream"] = json!(true);
    let (sse, _) = stream(
        &p,
        call(Endpoint::ChatCompletions, body, "gemini-2.0-flash", true),
    )
    .await;
    let s = summarize(&sse);
    let (calls, finishes) = (s.calls, s.finishes);
    assert_eq!(calls, vec![("get_weather".to_string(), "{}".to_string())]);
    assert_eq!(finishes, vec!["tool_calls"]);
    mock.shutdown().await;
}

#[tokio::test]
async fn errors_and_safety_against_the_mock() {
    let (mock, p) = mock_and_provider(MockOptions::default(), Some("k")).await;
    let chat = |model: &str| {
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({})),
            model,
            false,
        )
    };
    let e = complete(&p, chat("gemini-2.0-flash@retry_after=3"))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.retry_after().as_deref(), Some("3"));
    assert_eq!(e.error_type(), "RESOURCE_EXHAUSTED");
    let e = complete(
        &p,
        chat("gemini-2.0-flash@error_code=context_length_exceeded"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status().as_u16(), 400);
    assert_eq!(e.code(), Some("context_length_exceeded"));
    let e = complete(&p, chat("gemini-2.0-flash@status=503"))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 502);
    let e = complete(
        &p,
        chat("gemini-2.0-flash@error_code=content_policy_violation,status=400"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some("content_policy_violation"));
    // Stream errors before the first chunk are errors of the call (so they can be retried).
    let e = p
        .call(call(
            Endpoint::ChatCompletions,
            chat_body(json!({"stream": true})),
            "gemini-2.0-flash@status=429",
            true,
        ))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status().as_u16(), 429);

    // Gemini's own safety outcomes are answers with finish_reason content_filter.
    let (v, _) = complete(
        &p,
        chat("gemini-2.0-flash@error_code=content_policy_violation"),
    )
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let (v, usage) = complete(&p, chat("gemini-2.0-flash@finish=content_filter"))
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(usage.completion_tokens, 0);
    let (sse, _) = stream(
        &p,
        call(
            Endpoint::ChatCompletions,
            chat_body(json!({"stream": true})),
            "gemini-2.0-flash@error_code=content_policy_violation",
            true,
        ),
    )
    .await;
    assert_eq!(summarize(&sse).finishes, vec!["content_filter"]);
    mock.shutdown().await;
}

#[tokio::test]
async fn embeddings_against_the_mock() {
    let (mock, p) = mock_and_provider(MockOptions::default(), Some("k")).await;
    let (v, usage) = complete(
        &p,
        call(
            Endpoint::Embeddings,
            json!({"model": "alias", "input": ["hello", "world wide"], "dimensions": 4}),
            "text-embedding-004",
            false,
        ),
    )
    .await
    .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "alias");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!((usage.prompt_tokens, usage.total_tokens), (2 + 3, 5));
    let (v, _) = complete(
        &p,
        call(
            Endpoint::Embeddings,
            json!({"input": "x", "encoding_format": "base64"}),
            "text-embedding-004@dims=3",
            false,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        v["data"][0]["embedding"].as_str().unwrap().len(),
        16,
        "3 floats in base64"
    );
    let e = complete(
        &p,
        call(
            Endpoint::Embeddings,
            json!({"input": "x"}),
            "text-embedding-004@status=429",
            false,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status().as_u16(), 429);
    mock.shutdown().await;
}

/// POST `body` to the mock's `path`; the status and the JSON answer.
async fn post(mock: &MockServer, path: &str, body: &'static str) -> (u16, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}{path}", mock.addr()))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let resp = http_client().request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = crate::translate::collect(resp.into_body(), "d")
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_mocks_other_gemini_methods() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let hi = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    // Without alt=sse a stream is one JSON array of responses.
    let (status, v) = post(&mock, "/v1beta/models/g@chunks=2:streamGenerateContent", hi).await;
    assert_eq!(status, 200);
    let events = v.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["candidates"][0]["finishReason"], "STOP");
    let (_, v) = post(&mock, "/models/g:countTokens", hi).await;
    assert_eq!(v["totalTokens"], 1);
    let (_, v) = post(
        &mock,
        "/v1/models/e:embedContent",
        r#"{"content":{"parts":[{"text":"hi"}]},"outputDimensionality":5}"#,
    )
    .await;
    assert_eq!(v["embedding"]["values"].as_array().unwrap().len(), 5);
    let (status, v) = post(
        &mock,
        "/v1beta/models/e:batchEmbedContents",
        r#"{"requests":[{"model":"models/other","content":{"parts":[{"text":"hi"}]}}]}"#,
    )
    .await;
    assert_eq!(
        (status, v["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, v) = post(
        &mock,
        "/v1beta/models/g:generateContent",
        r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxTokens":3}}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maxTokens")
    );
    let (status, v) = post(&mock, "/v1beta/models/g:unknownMethod", "{}").await;
    assert_eq!(
        (status, v["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, v) = post(&mock, "/v1beta/models/g@status=503:generateContent", hi).await;
    assert_eq!(
        (status, v["error"]["status"].as_str()),
        (503, Some("UNAVAILABLE"))
    );
    mock.shutdown().await;
}
