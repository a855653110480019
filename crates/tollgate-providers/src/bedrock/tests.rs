//! Tests of the Bedrock adapter: building, signing, error mapping, and calls against the real mock server.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tollgate_config::{Deployment, Env, Secret};
use tollgate_mock::{MockOptions, MockServer};

use super::*;
use crate::http_client;

const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn deployment(
    model: &str,
    api_base: Option<&str>,
    api_key: Option<&str>,
    params: Value,
) -> Deployment {
    Deployment {
        api_base: api_base.map(str::to_string),
        api_key: api_key.map(Secret::new),
        extra_params: params.as_object().cloned().unwrap_or_default(),
        ..crate::test_support::bare_deployment("bedrock", "claude", model)
    }
}

fn build_with(d: &Deployment, env: &[(&str, &str)]) -> Result<BedrockProvider, BuildError> {
    let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let client = http_client();
    BedrockProvider::new(
        d,
        &BuildContext {
            env: &env,
            client: &client,
            drop_params: false,
        },
    )
}

fn build_error(d: &Deployment, env: &[(&str, &str)]) -> String {
    match build_with(d, env) {
        Ok(_) => panic!("expected a build error"),
        Err(e) => e.to_string(),
    }
}

fn keys() -> Value {
    json!({"aws_access_key_id": "AKIDMOCK", "aws_secret_access_key": "very-secret-key", "aws_region_name": "us-west-2"})
}

#[test]
fn credentials_and_region_are_required_with_clear_errors() {
    let e = build_error(&deployment(CLAUDE, None, None, json!({})), &[]);
    assert!(
        e.contains("claude") && e.contains("bedrock needs AWS credentials"),
        "{e}"
    );
    let e = build_error(
        &deployment(CLAUDE, None, None, json!({"aws_access_key_id": "AK"})),
        &[],
    );
    assert!(e.contains("no secret access key"), "{e}");
    let e = build_error(
        &deployment(
            CLAUDE,
            None,
            None,
            json!({"aws_access_key_id": "AK", "aws_secret_access_key": "S"}),
        ),
        &[],
    );
    assert!(
        e.contains("needs an AWS region") && e.contains("aws_region_name"),
        "{e}"
    );
    let e = build_error(
        &deployment(CLAUDE, None, None, json!({"aws_role_name": "r"})),
        &[],
    );
    assert!(e.contains("aws_role_name"), "{e}");
    // A Bedrock API key needs a region only for the default endpoint.
    let e = build_error(&deployment(CLAUDE, None, Some("key"), json!({})), &[]);
    assert!(e.contains("region"), "{e}");
    let p = build_with(
        &deployment(CLAUDE, Some("http://127.0.0.1:9/"), Some("key"), json!({})),
        &[],
    )
    .unwrap();
    assert_eq!(p.api_base(), "http://127.0.0.1:9");
}

#[test]
fn endpoint_and_region_come_from_params_env_base_or_arn() {
    let p = build_with(&deployment(CLAUDE, None, None, keys()), &[]).unwrap();
    assert_eq!(
        p.api_base(),
        "https://bedrock-runtime.us-west-2.amazonaws.com"
    );
    let p = build_with(
        &deployment(CLAUDE, None, None, json!({})),
        &[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ],
    )
    .unwrap();
    assert_eq!(
        p.api_base(),
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    );
    let p = build_with(
        &deployment(CLAUDE, None, None, json!({})),
        &[
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key"),
            ("AWS_REGION", "ap-south-1"),
        ],
    )
    .unwrap();
    assert!(matches!(p.inner.auth, Auth::Bearer(_)));
    let arn = "arn:aws:bedrock:us-east-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
    let p = build_with(
        &deployment(
            arn,
            None,
            None,
            json!({"aws_access_key_id": "AK", "aws_secret_access_key": "S"}),
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        p.api_base(),
        "https://bedrock-runtime.us-east-2.amazonaws.com"
    );
    let p = build_with(
        &deployment(
            CLAUDE,
            None,
            None,
            json!({"aws_access_key_id": "AK", "aws_secret_access_key": "S",
                   "aws_bedrock_runtime_endpoint": "https://bedrock-runtime.ca-central-1.amazonaws.com"}),
        ),
        &[],
    )
    .unwrap();
    match &p.inner.auth {
        Auth::SigV4 { region, .. } => assert_eq!(region, "ca-central-1"),
        Auth::Bearer(_) => panic!("sigv4 expected"),
    }
    assert_eq!(
        region_from(
            Some("https://vpce-1.bedrock-runtime.eu-north-1.vpce.amazonaws.com"),
            CLAUDE
        )
        .as_deref(),
        Some("eu-north-1")
    );
    assert_eq!(region_from(Some("http://127.0.0.1:9"), CLAUDE), None);
    assert_eq!(base_model(arn), "anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(Family::of("us.anthropic.claude-3-haiku"), Family::Anthropic);
    assert_eq!(Family::of("global.amazon.nova-2-lite-v1:0"), Family::Nova2);
    assert_eq!(Family::of("cohere.embed-english-v3"), Family::CohereEmbed);
    assert_eq!(model_id("converse/meta.llama3"), "meta.llama3");
    assert_eq!(
        model_path(CLAUDE, "converse"),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
}

#[test]
fn requests_are_signed_and_secrets_stay_hidden() {
    let mut params = keys();
    params["aws_session_token"] = json!("session-token-value");
    let p = build_with(&deployment(CLAUDE, None, None, params), &[]).unwrap();
    let req = p
        .inner
        .request(
            &model_path(CLAUDE, "converse"),
            b"{}".to_vec(),
            "application/json",
        )
        .unwrap();
    assert_eq!(
        req.uri().to_string(),
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    let h = req.headers();
    assert_eq!(h["host"], "bedrock-runtime.us-west-2.amazonaws.com");
    let auth = h["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCK/"),
        "{auth}"
    );
    assert!(auth.contains("/us-west-2/bedrock/aws4_request, "), "{auth}");
    assert!(
        auth.contains(
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ),
        "{auth}"
    );
    assert!(h["authorization"].is_sensitive() && h["x-amz-security-token"].is_sensitive());
    assert_eq!(h["x-amz-content-sha256"], sigv4::sha256_hex(b"{}").as_str());
    assert_eq!(h["x-amz-date"].len(), 16);
    let shown = format!("{p:?}");
    assert!(
        !shown.contains("very-secret-key") && !shown.contains("session-token-value"),
        "{shown}"
    );
}

#[test]
fn upstream_errors_keep_status_type_and_message() {
    let mut h = HeaderMap::new();
    h.insert(
        "x-amzn-errortype",
        HeaderValue::from_static(
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        ),
    );
    let e = parse_error(
        StatusCode::BAD_REQUEST,
        &h,
        br#"{"message":"Input is too long for requested model."}"#,
    );
    let GatewayError::UpstreamStatus(f) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(f.status, 400);
    assert_eq!(f.error_type.as_deref(), Some("ValidationException"));
    assert_eq!(f.code.as_deref(), Some("context_length_exceeded"));
    assert_eq!(f.message, "Input is too long for requested model.");
    let e = parse_error(
        StatusCode::BAD_REQUEST,
        &h,
        br#"{"message":"Too many input tokens. Max input tokens: 4096"}"#,
    );
    assert_eq!(e.code(), Some("context_length_exceeded"));
    let mut h = HeaderMap::new();
    h.insert(
        "x-amzn-errortype",
        HeaderValue::from_static("ThrottlingException"),
    );
    h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
    let e = parse_error(
        StatusCode::TOO_MANY_REQUESTS,
        &h,
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    );
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.retry_after().as_deref(), Some("3"));
    let e = parse_error(
        StatusCode::FORBIDDEN,
        &HeaderMap::new(),
        br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
    );
    let GatewayError::UpstreamStatus(f) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(f.error_type.as_deref(), Some("UnrecognizedClientException"));
    assert_eq!(f.status, 403);
    assert!(f.message.contains("security token"));
    let e = parse_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        br#"{"message":"The request was blocked by the model's content filtering policy."}"#,
    );
    assert_eq!(e.code(), Some("content_policy_violation"));
    let e = parse_error(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), b"");
    assert_eq!(e.status().as_u16(), 502);
}

// --- Against the real mock server ---------------------------------------------------------------------

struct Mock {
    server: MockServer,
    provider: Arc<dyn Provider>,
}

/// The secret access key of [`keys`], which the mock verifies SigV4 signatures with.
const SECRET: &str = "very-secret-key";

/// A recording mock that requires the access key `AKIDMOCK` and verifies SigV4 signatures made with
/// [`SECRET`].
async fn verifying_mock() -> MockServer {
    MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            api_key: Some("AKIDMOCK".into()),
            aws_secret_access_key: Some(SECRET.into()),
            record: true,
        },
    )
    .await
    .unwrap()
}

/// A mock that requires the access key `AKIDMOCK` and checks signatures in full, and a SigV4-signing
/// provider pointed at it.
async fn mock_with(model: &str, extra: Value, api_key: Option<&str>) -> Mock {
    let server = verifying_mock().await;
    let base = format!("http://{}", server.addr());
    let mut params = keys();
    if let (Value::Object(p), Value::Object(e)) = (&mut params, extra) {
        p.extend(e);
    }
    let provider = build_with(&deployment(model, Some(&base), api_key, params), &[]).unwrap();
    Mock {
        server,
        provider: Arc::new(provider),
    }
}

async fn mock(model: &str) -> Mock {
    mock_with(model, json!({}), None).await
}

fn call(endpoint: Endpoint, upstream_model: &str, body: Value, stream: bool) -> Call {
    Call {
        endpoint,
        body: Bytes::from(body.to_string()),
        requested_model: "alias".into(),
        upstream_model: upstream_model.into(),
        stream,
        client_wants_usage: true,
        request_id: "req-1".into(),
        traceparent: None,
        timeout: Duration::from_secs(10),
    }
}

fn chat(model: &str, body: Value) -> Call {
    call(Endpoint::ChatCompletions, model, body, false)
}

async fn complete(p: &Arc<dyn Provider>, c: Call) -> (Value, tollgate_core::Usage) {
    match crate::call(p, c).await {
        Ok(Reply::Complete { body, usage }) => {
            (serde_json::from_slice(&body).unwrap(), usage.unwrap())
        }
        Ok(other) => panic!("complete reply expected, got {other:?}"),
        Err(e) => panic!("call failed: {e:?}"),
    }
}

async fn stream_text(p: &Arc<dyn Provider>, c: Call) -> (String, Arc<crate::StreamOutcome>) {
    match crate::call(p, c).await {
        Ok(Reply::Stream(s)) => {
            let outcome = s.outcome.clone();
            let chunks: Vec<Bytes> = s.body.collect().await;
            let text = chunks
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            (text, outcome)
        }
        Ok(other) => panic!("stream expected, got {other:?}"),
        Err(e) => panic!("call failed: {e:?}"),
    }
}

fn hello() -> Value {
    json!({"model": "alias", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn chat_against_the_mock() {
    let m = mock(CLAUDE).await;
    let mut body = hello();
    body["max_tokens"] = json!(100);
    body["temperature"] = json!(0.2);
    let (v, usage) = complete(
        &m.provider,
        chat(&format!("{CLAUDE}@cached_tokens=2"), body),
    )
    .await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "alias");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "This is a mock response from tollgate."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "be brief" + "hello there" = 19 characters = 5 prompt tokens, 2 of them from the cache.
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens
        ),
        (5, 2, 7)
    );
    assert_eq!(v["usage"]["total_tokens"], 12);

    let rec = m.server.recorded();
    let r = rec.last().unwrap();
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0%40cached_tokens%3D2/converse"
    );
    let sent = r.json().unwrap();
    assert_eq!(sent["system"], json!([{"text": "be brief"}]));
    assert_eq!(
        sent["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.2})
    );
    assert!(
        r.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCK/")
    );

    // `converse/` routes to the same model; stop sequences and max_tokens shape the answer.
    let mut body = hello();
    body["max_tokens"] = json!(2);
    let (v, _) = complete(&m.provider, chat(&format!("converse/{CLAUDE}"), body)).await;
    assert_eq!(v["choices"][0]["message"]["content"], "This is");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let (v, _) = complete(
        &m.provider,
        chat(&format!("{CLAUDE}@finish=content_filter"), hello()),
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");

    // Thinking: the mock answers a reasoning block when it is requested.
    let mut body = hello();
    body["reasoning_effort"] = json!("low");
    let (v, usage) = complete(
        &m.provider,
        chat(&format!("{CLAUDE}@reasoning_tokens=4"), body),
    )
    .await;
    assert!(
        v["choices"][0]["message"]["reasoning_content"]
            .as_str()
            .unwrap()
            .len()
            > 5
    );
    assert!(v["choices"][0]["message"]["thinking_blocks"][0]["signature"].is_string());
    assert_eq!(usage.completion_tokens, 11);

    // An inference profile ARN goes in the path with `/` encoded.
    let arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
    let (v, _) = complete(&m.provider, chat(arn, hello())).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let rec = m.server.recorded();
    assert!(
        rec.last()
            .unwrap()
            .path
            .contains("inference-profile%2Fus.anthropic")
    );
}

#[tokio::test]
async fn stream_against_the_mock() {
    let m = mock(CLAUDE).await;
    let mut c = chat(&format!("{CLAUDE}@chunks=4,cached_tokens=1"), hello());
    c.stream = true;
    let (text, outcome) = stream_text(&m.provider, c).await;
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "This is a mock response from tollgate.");
    assert!(chunks.iter().all(|c| c["model"] == "alias"));
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 5);
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        1
    );
    assert!(outcome.completed());
    assert_eq!(outcome.usage().unwrap().completion_tokens, 7);
    assert_eq!(
        m.server.recorded().last().unwrap().path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0%40chunks%3D4%2Ccached_tokens%3D1/converse-stream"
    );

    // A stream cut by the upstream ends with an error event.
    let mut c = chat(&format!("{CLAUDE}@reset_after_chunks=2"), hello());
    c.stream = true;
    let (text, outcome) = stream_text(&m.provider, c).await;
    assert!(text.contains("\"error\""), "{text}");
    assert!(outcome.failure().is_some());
}

#[tokio::test]
async fn tool_calls_and_json_mode_against_the_mock() {
    let m = mock(CLAUDE).await;
    let mut body = hello();
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let model = format!("{CLAUDE}@tool_call,content={{\"city\":\"Paris\"}}");
    let (v, _) = complete(&m.provider, chat(&model, body.clone())).await;
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        msg["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_string();

    // Streamed: the tool call start, then its arguments.
    let mut c = chat(&model, body.clone());
    c.stream = true;
    let (text, _) = stream_text(&m.provider, c).await;
    assert!(text.contains(r#""name":"get_weather""#), "{text}");
    assert!(text.contains(r#""finish_reason":"tool_calls""#), "{text}");
    let args: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);

    // The tool result goes back as a toolResult the mock accepts (alternation kept).
    let mut follow = body.clone();
    follow["messages"] = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "sunny"},
        {"role": "user", "content": "thanks"}]);
    let (v, _) = complete(&m.provider, chat(&format!("{CLAUDE}@echo"), follow)).await;
    assert_eq!(v["choices"][0]["message"]["content"], "thanks");
    let sent = m.server.recorded().last().unwrap().json().unwrap();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);
    assert!(sent["messages"][2]["content"][0]["toolResult"].is_object());

    // JSON mode: a forced tool whose input is the content.
    let mut body = hello();
    body["response_format"] = json!({"type": "json_object"});
    let (v, _) = complete(&m.provider, chat(CLAUDE, body.clone())).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        r#"{"text":"This is a mock response from tollgate."}"#
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let mut c = chat(CLAUDE, body);
    c.stream = true;
    let (text, _) = stream_text(&m.provider, c).await;
    assert!(!text.contains("tool_calls"), "{text}");
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
}

#[tokio::test]
async fn errors_against_the_mock() {
    let m = mock(CLAUDE).await;
    let err = |model: String| {
        let p = m.provider.clone();
        async move {
            match crate::call(&p, chat(&model, hello())).await {
                Err(e) => e,
                Ok(r) => panic!("error expected, got {r:?}"),
            }
        }
    };
    let e = err(format!("{CLAUDE}@status=429,retry_after=7")).await;
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.retry_after().as_deref(), Some("7"));
    let GatewayError::UpstreamStatus(f) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(f.error_type.as_deref(), Some("ThrottlingException"));
    let e = err(format!("{CLAUDE}@error_code=context_length_exceeded")).await;
    assert_eq!(
        (e.status().as_u16(), e.code()),
        (400, Some("context_length_exceeded"))
    );
    let e = err(format!("{CLAUDE}@error_code=content_policy_violation")).await;
    assert_eq!(e.code(), Some("content_policy_violation"));
    let e = err(format!("{CLAUDE}@status=503")).await;
    assert_eq!(e.status().as_u16(), 502);

    // A stream that fails before its head is a plain error too.
    let mut c = chat(&format!("{CLAUDE}@status=429"), hello());
    c.stream = true;
    assert_eq!(
        crate::call(&m.provider, c)
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        429
    );

    // Unsupported params are refused, and http images need inlining.
    let mut body = hello();
    body["logit_bias"] = json!({"1": 2});
    let e = crate::call(&m.provider, chat(CLAUDE, body))
        .await
        .unwrap_err();
    assert_eq!(e.param(), Some("logit_bias"));
    let body = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let e = crate::call(&m.provider, chat(CLAUDE, body))
        .await
        .unwrap_err();
    assert!(e.public_message().contains("inline images"), "{e}");

    // A wrong access key is refused by the mock's SigV4 check.
    let server = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            api_key: Some("SOMEONE-ELSE".into()),
            ..MockOptions::default()
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.addr());
    let p: Arc<dyn Provider> =
        Arc::new(build_with(&deployment(CLAUDE, Some(&base), None, keys()), &[]).unwrap());
    let e = crate::call(&p, chat(CLAUDE, hello())).await.unwrap_err();
    assert_eq!(e.status().as_u16(), 403);
}

#[tokio::test]
async fn sigv4_signatures_are_verified_by_the_mock() {
    // Chat, stream and embeddings, each with a `:` in the model id (`%3A` on the wire, `%253A` signed).
    let m = mock(CLAUDE).await;
    let (v, _) = complete(&m.provider, chat(CLAUDE, hello())).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let mut c = chat(CLAUDE, hello());
    c.stream = true;
    let (text, _) = stream_text(&m.provider, c).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let titan = "amazon.titan-embed-text-v2:0";
    let m = mock(titan).await;
    let (v, _) = complete(
        &m.provider,
        call(Endpoint::Embeddings, titan, json!({"input": "hi"}), false),
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let rec = m.server.recorded();
    let last = rec.last().unwrap();
    assert_eq!(last.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert!(
        last.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCK/")
    );

    // A session token is signed too.
    let m = mock_with(
        CLAUDE,
        json!({"aws_session_token": "session-token-value"}),
        None,
    )
    .await;
    let (v, _) = complete(&m.provider, chat(CLAUDE, hello())).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // A wrong secret access key: the mock's signature differs, a 403 `InvalidSignatureException`.
    let server = verifying_mock().await;
    let base = format!("http://{}", server.addr());
    let mut params = keys();
    params["aws_secret_access_key"] = json!("not-the-secret");
    let p: Arc<dyn Provider> =
        Arc::new(build_with(&deployment(CLAUDE, Some(&base), None, params), &[]).unwrap());
    let e = crate::call(&p, chat(CLAUDE, hello())).await.unwrap_err();
    assert_eq!(e.status().as_u16(), 403);
    assert!(
        format!("{e:?}").contains("InvalidSignatureException"),
        "{e:?}"
    );
    assert!(
        e.public_message().contains("does not match the signature"),
        "{e}"
    );
}

#[tokio::test]
async fn bearer_api_key_against_the_mock() {
    let m = mock_with(CLAUDE, json!({}), Some("AKIDMOCK")).await;
    let (v, _) = complete(&m.provider, chat(CLAUDE, hello())).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let rec = m.server.recorded();
    assert_eq!(
        rec.last().unwrap().header("authorization"),
        Some("Bearer AKIDMOCK")
    );
    assert!(rec.last().unwrap().header("x-amz-date").is_none());
}

#[tokio::test]
async fn embeddings_against_the_mock() {
    let m = mock("amazon.titan-embed-text-v2:0").await;
    let body =
        json!({"model": "alias", "input": ["hello world", "second input"], "dimensions": 256});
    let (v, usage) = complete(
        &m.provider,
        call(
            Endpoint::Embeddings,
            "amazon.titan-embed-text-v2:0",
            body,
            false,
        ),
    )
    .await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "alias");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    assert_eq!(usage.prompt_tokens, 3 + 3);
    assert_eq!(v["usage"]["total_tokens"], 6);

    // Titan v1 takes no `dimensions`.
    let body = json!({"input": "x", "dimensions": 256});
    let e = crate::call(
        &m.provider,
        call(
            Endpoint::Embeddings,
            "amazon.titan-embed-text-v1",
            body,
            false,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.param(), Some("dimensions"));

    let body = json!({"input": ["a", "b c", "d"], "encoding_format": "base64"});
    let (v, usage) = complete(
        &m.provider,
        call(
            Endpoint::Embeddings,
            "cohere.embed-english-v3@dims=4",
            body,
            false,
        ),
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .unwrap()
            .len(),
        16
    );
    assert_eq!(usage.prompt_tokens, 3);
    let sent = m.server.recorded().last().unwrap().json().unwrap();
    assert_eq!(sent["input_type"], "search_document");

    let e = crate::call(
        &m.provider,
        call(Endpoint::Embeddings, CLAUDE, json!({"input": "x"}), false),
    )
    .await
    .unwrap_err();
    assert_eq!(e.param(), Some("model"));
    let e = crate::call(
        &m.provider,
        call(
            Endpoint::Embeddings,
            "amazon.titan-embed-text-v2:0@status=429",
            json!({"input": "x"}),
            false,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status().as_u16(), 429);
}
