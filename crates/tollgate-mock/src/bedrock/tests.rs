//! Tests of the Bedrock wire format, calling the route directly.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::eventstream::crc32;
use super::*;

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn post_with(shared: &Shared, path: &str, headers: HeaderMap, body: Value) -> Got {
    send(shared, path, None, headers, Bytes::from(body.to_string())).await
}

/// A POST with a raw body and, as h2 has it, the URI's authority.
async fn send(
    shared: &Shared,
    path: &str,
    authority: Option<&str>,
    headers: HeaderMap,
    body: Bytes,
) -> Got {
    let resp = route(
        shared,
        &Req {
            method: &Method::POST,
            path,
            query: None,
            authority,
            headers: &headers,
            body: &body,
        },
    )
    .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body,
    }
}

async fn post(path: &str, body: Value) -> Got {
    post_with(
        &Shared::new(None, None, false),
        path,
        HeaderMap::new(),
        body,
    )
    .await
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": text}]}]})
}

const MODEL: &str = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0";

/// Decode an event stream, checking both CRCs: (event type, payload) per message.
fn frames(mut b: &[u8]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let total = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let hlen = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_be_bytes(b[8..12].try_into().unwrap()),
            crc32(&b[..8])
        );
        assert_eq!(
            u32::from_be_bytes(b[total - 4..total].try_into().unwrap()),
            crc32(&b[..total - 4])
        );
        let mut h = &b[12..12 + hlen];
        let (mut event, mut kind) = (String::new(), String::new());
        while !h.is_empty() {
            let n = h[0] as usize;
            let name = std::str::from_utf8(&h[1..1 + n]).unwrap().to_string();
            assert_eq!(h[1 + n], 7);
            let len = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
            let value = std::str::from_utf8(&h[4 + n..4 + n + len])
                .unwrap()
                .to_string();
            h = &h[4 + n + len..];
            match name.as_str() {
                ":event-type" | ":exception-type" => event = value,
                ":message-type" => kind = value,
                _ => {}
            }
        }
        let payload = serde_json::from_slice(&b[12 + hlen..total - 4]).unwrap();
        out.push((kind, event, payload));
        b = &b[total..];
    }
    out
}

#[tokio::test]
async fn converse_answers_with_usage_and_stop_reason() {
    let r = post(&format!("{MODEL}/converse"), user("hello there")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["output"]["message"]["role"], "assistant");
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        text::DEFAULT_CONTENT
    );
    assert_eq!(v["stopReason"], "end_turn");
    assert_eq!(v["usage"]["inputTokens"], 3);
    assert_eq!(v["usage"]["outputTokens"], 7);
    assert_eq!(v["usage"]["totalTokens"], 10);
    assert!(v["metrics"]["latencyMs"].is_u64());

    let mut body = user("x");
    body["inferenceConfig"] = json!({"maxTokens": 2, "stopSequences": ["never"]});
    body["system"] = json!([{"text": "be brief and kind"}]);
    let v = post(&format!("{MODEL}%40cached_tokens%3D2/converse"), body)
        .await
        .json();
    assert_eq!(v["output"]["message"]["content"][0]["text"], "This is");
    assert_eq!(v["stopReason"], "max_tokens");
    assert_eq!(v["usage"]["cacheReadInputTokens"], 2);
    assert_eq!(
        v["usage"]["inputTokens"], 3,
        "5 prompt tokens, 2 of them cached"
    );

    let mut body = user("x");
    body["inferenceConfig"] = json!({"stopSequences": ["mock"]});
    let v = post(&format!("{MODEL}@content=a%20mock%20b/converse"), body)
        .await
        .json();
    assert_eq!(v["output"]["message"]["content"][0]["text"], "a ");
    assert_eq!(v["stopReason"], "stop_sequence");
    let v = post(
        &format!("{MODEL}@finish=content_filter/converse"),
        user("x"),
    )
    .await
    .json();
    assert_eq!(v["stopReason"], "content_filtered");
    let v = post(&format!("{MODEL}@echo/converse"), user("say this"))
        .await
        .json();
    assert_eq!(v["output"]["message"]["content"][0]["text"], "say this");
}

#[tokio::test]
async fn tool_calls_json_mode_and_thinking() {
    let mut body = user("weather?");
    body["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]});
    let v = post(
        &format!("{MODEL}@tool_call,content=%7B%22city%22%3A%22Paris%22%7D/converse"),
        body.clone(),
    )
    .await
    .json();
    let tu = &v["output"]["message"]["content"][0]["toolUse"];
    assert_eq!(tu["name"], "get_weather");
    assert_eq!(tu["input"], json!({"city": "Paris"}));
    assert!(tu["toolUseId"].as_str().unwrap().starts_with("tooluse_"));
    assert_eq!(v["stopReason"], "tool_use");

    body["toolConfig"]["toolChoice"] = json!({"any": {}});
    let v = post(&format!("{MODEL}/converse"), body).await.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["toolUse"]["input"],
        json!({})
    );

    let mut json_mode = user("hi");
    json_mode["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "json_tool_call", "inputSchema": {"json": {}}}}], "toolChoice": {"tool": {"name": "json_tool_call"}}});
    let v = post(&format!("{MODEL}/converse"), json_mode).await.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["toolUse"]["input"],
        json!({"text": text::DEFAULT_CONTENT})
    );

    let mut thinking = user("hi");
    thinking["additionalModelRequestFields"] =
        json!({"thinking": {"type": "enabled", "budget_tokens": 1024}});
    let v = post(
        &format!("{MODEL}@reasoning_tokens=5/converse"),
        thinking.clone(),
    )
    .await
    .json();
    let content = &v["output"]["message"]["content"];
    assert_eq!(
        content[0]["reasoningContent"]["reasoningText"]["text"],
        REASONING_TEXT
    );
    assert_eq!(content[1]["text"], text::DEFAULT_CONTENT);
    assert_eq!(v["usage"]["outputTokens"], 12);
    let v = post(&format!("{MODEL}@reasoning_tokens=5/converse"), user("hi"))
        .await
        .json();
    assert!(
        v["output"]["message"]["content"][0].get("text").is_some(),
        "no thinking asked for"
    );
    assert_eq!(v["usage"]["outputTokens"], 12);
}

#[tokio::test]
async fn converse_stream_is_an_event_stream_with_valid_crcs() {
    let r = post(&format!("{MODEL}@chunks=2/converse-stream"), user("hello")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[CONTENT_TYPE],
        "application/vnd.amazon.eventstream"
    );
    let f = frames(&r.body);
    let kinds: Vec<&str> = f.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert!(f.iter().all(|(k, _, _)| k == "event"));
    let text: String = f
        .iter()
        .filter_map(|(_, _, p)| p.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, text::DEFAULT_CONTENT);
    assert_eq!(f[4].2["stopReason"], "end_turn");
    assert_eq!(f[5].2["usage"]["outputTokens"], 7);

    let mut body = user("weather?");
    body["toolConfig"] =
        json!({"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {}}}}]});
    body["additionalModelRequestFields"] = json!({"reasoningConfig": {"type": "enabled"}});
    let r = post(
        &format!("{MODEL}@tool_call,reasoning_tokens=3/converse-stream"),
        body,
    )
    .await;
    let f = frames(&r.body);
    assert_eq!(f[1].2["delta"]["reasoningContent"]["text"], REASONING_TEXT);
    let start = f.iter().find(|(_, e, _)| e == "contentBlockStart").unwrap();
    assert_eq!(start.2["start"]["toolUse"]["name"], "w");
    assert_eq!(start.2["contentBlockIndex"], 1);
    let args: String = f
        .iter()
        .filter_map(|(_, _, p)| p.pointer("/delta/toolUse/input").and_then(Value::as_str))
        .collect();
    assert_eq!(args, "{}");
    assert_eq!(f[f.len() - 2].2["stopReason"], "tool_use");
}

#[tokio::test]
async fn errors_are_bedrock_shaped() {
    let r = post(
        &format!("{MODEL}@status=429,retry_after=2/converse"),
        user("x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("ThrottlingException:")
    );
    assert_eq!(r.headers[RETRY_AFTER], "2");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many requests")
    );
    let r = post(
        &format!("{MODEL}@error_code=context_length_exceeded/converse"),
        user("x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        "Input is too long for requested model."
    );
    let r = post(
        &format!("{MODEL}@error_code=content_policy_violation/converse-stream"),
        user("x"),
    )
    .await;
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("content filtering policy")
    );
    let r = post(&format!("{MODEL}@status=503/converse"), user("x")).await;
    assert!(
        r.headers["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("ServiceUnavailableException")
    );

    // Bedrock's own request checks.
    let two_users = json!({"messages": [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "user", "content": [{"text": "b"}]}]});
    let r = post(&format!("{MODEL}/converse"), two_users).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("alternate"));
    let tool_without_config = json!({"messages": [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]}]});
    let r = post(&format!("{MODEL}/converse"), tool_without_config).await;
    assert!(r.json()["message"].as_str().unwrap().contains("toolConfig"));
    let r = post(&format!("{MODEL}/converse"), json!({"messages": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(&format!("{MODEL}/nope"), user("x")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = post(&format!("{MODEL}@bogus=1/converse"), user("x")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn authentication_takes_a_bearer_key_or_sigv4() {
    let shared = Shared::new(Some("AKIDMOCK".into()), None, false);
    let path = format!("{MODEL}/converse");
    let r = post_with(&shared, &path, HeaderMap::new(), user("x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.headers["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("MissingAuthenticationToken")
    );
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Bearer AKIDMOCK"));
    assert_eq!(
        post_with(&shared, &path, h, user("x")).await.status,
        StatusCode::OK
    );
    let date = auth::format_amz_date(unix_now());
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDMOCK/{}/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            &date[..8],
            "0".repeat(64)
        ))
        .unwrap(),
    );
    h.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
    assert_eq!(
        post_with(&shared, &path, h.clone(), user("x")).await.status,
        StatusCode::OK
    );
    let other = Shared::new(Some("SOMEONE".into()), None, false);
    let r = post_with(&other, &path, h, user("x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.headers["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("UnrecognizedClientException")
    );
}

/// Headers of a POST to `path` with `body`, SigV4-signed with `secret` as AWS SDKs sign (`host`,
/// `x-amz-content-sha256`, `x-amz-date`); `host` is sent as a `Host` header when `host_header`.
fn sigv4_headers(secret: &str, path: &str, body: &[u8], host_header: bool) -> HeaderMap {
    let date = auth::format_amz_date(unix_now());
    let payload: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sig = auth::signature(
        secret,
        &auth::Signed {
            method: "POST",
            path,
            query: "",
            headers: &[
                ("host", "127.0.0.1:9"),
                ("x-amz-content-sha256", &payload),
                ("x-amz-date", &date),
            ],
            payload_hash: &payload,
            amz_date: &date,
            region: "us-west-2",
            service: "bedrock",
        },
    );
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDMOCK/{}/us-west-2/bedrock/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}",
            &date[..8]
        ))
        .unwrap(),
    );
    if host_header {
        h.insert("host", HeaderValue::from_static("127.0.0.1:9"));
    }
    h.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
    h.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&payload).unwrap(),
    );
    h
}

fn assert_signature_mismatch(r: &Got) {
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.headers["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("InvalidSignatureException"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.json()["message"],
        "The request signature we calculated does not match the signature you provided. Check your \
         AWS Secret Access Key and signing method. Consult the service documentation for details."
    );
}

#[tokio::test]
async fn sigv4_signatures_are_verified_when_the_secret_is_known() {
    let shared = Shared::new(Some("AKIDMOCK".into()), Some("the-secret".into()), false);
    let path = format!("{MODEL}/converse");
    let body = Bytes::from(user("x").to_string());
    let ok = |r: Got| {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    };
    // The right secret passes, with `host` from the Host header (HTTP/1.1) or the authority (h2).
    let h = sigv4_headers("the-secret", &path, &body, true);
    ok(send(&shared, &path, None, h, body.clone()).await);
    let h = sigv4_headers("the-secret", &path, &body, false);
    ok(send(&shared, &path, Some("127.0.0.1:9"), h, body.clone()).await);
    // A Bearer key still works.
    let mut bearer = HeaderMap::new();
    bearer.insert("authorization", HeaderValue::from_static("Bearer AKIDMOCK"));
    ok(send(&shared, &path, None, bearer, body.clone()).await);

    // A wrong secret.
    let h = sigv4_headers("not-the-secret", &path, &body, true);
    assert_signature_mismatch(&send(&shared, &path, None, h, body.clone()).await);
    // A tampered body (with its hash header updated, else the hash check answers first).
    let mut h = sigv4_headers("the-secret", &path, &body, true);
    let tampered = Bytes::from(user("y").to_string());
    let hash: String = Sha256::digest(&tampered)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    h.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&hash).unwrap(),
    );
    assert_signature_mismatch(&send(&shared, &path, None, h, tampered).await);
    // A tampered path.
    let h = sigv4_headers("the-secret", &path, &body, true);
    let other = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    assert_signature_mismatch(&send(&shared, other, None, h, body.clone()).await);
    // A tampered signed header (the host).
    let mut h = sigv4_headers("the-secret", &path, &body, true);
    h.insert("host", HeaderValue::from_static("127.0.0.1:10"));
    assert_signature_mismatch(&send(&shared, &path, None, h, body.clone()).await);

    // Without the secret the same wrong signature passes the structural check.
    let structural = Shared::new(Some("AKIDMOCK".into()), None, false);
    let h = sigv4_headers("not-the-secret", &path, &body, true);
    ok(send(&structural, &path, None, h, body).await);
}

#[tokio::test]
async fn invoke_embeds_with_titan_and_cohere() {
    let r = post(
        "/model/amazon.titan-embed-text-v2%3A0/invoke",
        json!({"inputText": "hello world", "dimensions": 256}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["embedding"].as_array().unwrap().len(), 256);
    assert_eq!(v["inputTextTokenCount"], 3);
    assert_eq!(r.headers["x-amzn-bedrock-input-token-count"], "3");
    let r = post(
        "/model/amazon.titan-embed-text-v1/invoke",
        json!({"inputText": "a", "dimensions": 256}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(
        "/model/amazon.titan-embed-text-v2%3A0/invoke",
        json!({"texts": ["a"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = post(
        "/model/cohere.embed-english-v3@dims=4/invoke",
        json!({"texts": ["a", "b c"], "input_type": "search_document"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(v["embeddings"][0].as_array().unwrap().len(), 4);
    assert_eq!(v["response_type"], "embeddings_floats");
    let r = post(
        "/model/cohere.embed-english-v3/invoke",
        json!({"texts": ["a"], "input_type": "search_query", "embedding_types": ["float"]}),
    )
    .await;
    assert!(r.json()["embeddings"]["float"].is_array());
    let r = post(
        "/model/cohere.embed-english-v3/invoke",
        json!({"texts": ["a"]}),
    )
    .await;
    assert!(r.json()["message"].as_str().unwrap().contains("input_type"));
    let r = post("/model/cohere.embed-english-v3/converse", user("x")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(&format!("{MODEL}/invoke"), json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn model_ids_are_percent_decoded() {
    assert_eq!(
        percent_decode("arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x").unwrap(),
        "arn:aws:bedrock:us-east-1:1:inference-profile/us.x"
    );
    assert_eq!(percent_decode("a%4").unwrap(), "a%4");
    assert!(percent_decode("%FF").is_none());
}
