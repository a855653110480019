//! Every error a client can meet, each as the OpenAI body `{"error":{"message","type","param","code"}}` with its
//! status: bad requests, auth, size limit, upstream failures (passed through or mapped), timeouts, routing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use serde_json::json;

fn errors_config(base: &str) -> String {
    let closed = closed_base_url();
    format!(
        r#"model_list:
  - model_name: my-gpt
    litellm_params:
      model: openai/gpt-4o-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: other-model
    litellm_params:
      model: openai/other-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: rate-limited
    litellm_params:
      model: "openai/rl@retry_after=7"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: upstream-400
    litellm_params:
      model: "openai/bad@status=400"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: upstream-500
    litellm_params:
      model: "openai/boom@status=500"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: hangs
    litellm_params:
      model: "openai/slow@hang=1"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
      timeout: 1
  - model_name: unreachable
    litellm_params:
      model: openai/nobody-home
      api_base: {closed}
      api_key: {UPSTREAM_KEY}
  - model_name: wrong-upstream-key
    litellm_params:
      model: openai/gpt-4o-upstream
      api_base: {base}
      api_key: sk-not-the-upstream-key
general_settings:
  master_key: {KEY}
  max_request_size_mb: 0.01
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_with_openai_bodies() {
    let mock = mock().await;
    let gw = gateway().config(errors_config(&mock.base_url())).start();

    // Malformed JSON.
    let r = gw
        .req(Method::POST, "/v1/chat/completions")
        .body(r#"{"model": "my-gpt", "messages": ["#)
        .send()
        .await;
    let e = r.expect_error(400);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "invalid_json");
    assert!(
        r.header("x-request-id").is_some(),
        "errors carry the request id too"
    );

    // Not an object.
    let e = gw
        .req(Method::POST, "/v1/chat/completions")
        .body("[1,2]")
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["type"], "invalid_request_error");

    // `model` of the wrong type.
    let e = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": 42, "messages": []}),
        )
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "model");
    assert_eq!(e["type"], "invalid_request_error");

    // Missing model: the message lists what is available.
    let e = gw
        .post("/v1/chat/completions", &json!({"messages": []}))
        .send()
        .await
        .expect_error(400);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("my-gpt") && msg.contains("other-model"),
        "{msg}"
    );
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");

    // Unknown model: named, with the list.
    let e = gw
        .post("/v1/chat/completions", &chat("gpt-9000"))
        .send()
        .await
        .expect_error(400);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("gpt-9000") && msg.contains("my-gpt") && msg.contains("other-model"),
        "{msg}"
    );
    assert_eq!(e["code"], "model_not_found");

    // `stream` of the wrong type; streaming embeddings.
    let e = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "my-gpt", "stream": "yes"}),
        )
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "stream");
    let e = gw
        .post(
            "/v1/embeddings",
            &json!({"model": "my-gpt", "input": "x", "stream": true}),
        )
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "stream");

    // None of these reached the upstream.
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_key_is_401() {
    let mock = mock().await;
    let gw = gateway().config(errors_config(&mock.base_url())).start();

    let e = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .no_auth()
        .send()
        .await
        .expect_error(401);
    assert_eq!(e["type"], "authentication_error");
    let e = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .bearer("sk-wrong")
        .send()
        .await
        .expect_error(401);
    assert_eq!(e["type"], "authentication_error");
    assert!(!e["message"].as_str().unwrap().contains(KEY));
    // A key one character longer/shorter is not accepted either.
    gw.post("/v1/chat/completions", &chat("my-gpt"))
        .bearer(&format!("{KEY}x"))
        .send()
        .await
        .expect_error(401);
    gw.post("/v1/chat/completions", &chat("my-gpt"))
        .bearer(&KEY[..KEY.len() - 1])
        .send()
        .await
        .expect_error(401);
    for path in [
        "/v1/models",
        "/health",
        "/v1/embeddings",
        "/v1/no-such-route",
    ] {
        gw.anon(Method::GET, path).send().await.expect_error(401);
    }
    assert_eq!(
        mock.request_count(),
        0,
        "rejected requests must not reach the upstream"
    );

    // An empty `Bearer` does not hide an `api-key` header (Azure-style clients); the scheme is case-insensitive.
    let r = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .no_auth()
        .header("authorization", "Bearer ")
        .header("api-key", KEY)
        .send()
        .await;
    r.expect_status(200);
    let r = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .no_auth()
        .header("authorization", &format!("BEARER {KEY}"))
        .send()
        .await;
    r.expect_status(200);
    gw.post("/v1/chat/completions", &chat("my-gpt"))
        .no_auth()
        .header("authorization", "Bearer ")
        .send()
        .await
        .expect_error(401);

    // The other accepted credential headers.
    for header in ["x-litellm-api-key", "api-key"] {
        let r = gw
            .post("/v1/chat/completions", &chat("my-gpt"))
            .no_auth()
            .header(header, KEY)
            .send()
            .await;
        r.expect_status(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    let mock = mock().await;
    let gw = gateway().config(errors_config(&mock.base_url())).start();
    // 0.01 MiB = 10486 bytes.
    let mut big = chat("my-gpt");
    big["messages"][1]["content"] = json!("x".repeat(20_000));
    let e = gw
        .post("/v1/chat/completions", &big)
        .send()
        .await
        .expect_error(413);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "request_too_large");

    // Without Content-Length (chunked), the limit is enforced while reading. The server answers and closes
    // before the client has sent everything, so the client may see a reset instead of the answer; the request
    // log tells the status in that case.
    let addr = gw.addr;
    let status_line = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nx-request-id: it-chunked-413\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = format!("{{\"model\":\"my-gpt\",\"messages\":[],\"pad\":\"{}\"}}", "y".repeat(4000));
        for _ in 0..5 {
            // Writes may fail once the server has answered and closed; that is fine.
            if s.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).is_err() {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_string()
    })
    .await
    .unwrap();
    assert!(
        status_line.is_empty() || status_line.contains(" 413 "),
        "chunked oversize body: {status_line:?}"
    );
    let logged = eventually(Duration::from_secs(5), || {
        gw.stderr()
            .lines()
            .any(|l| l.contains("it-chunked-413") && l.contains("status=413"))
    })
    .await;
    assert!(
        logged,
        "the chunked oversize request was not rejected with 413:\n{}",
        gw.stderr()
    );

    // Just under the limit is fine.
    let mut ok = chat("my-gpt");
    ok["messages"][1]["content"] = json!("x".repeat(8_000));
    gw.post("/v1/chat/completions", &ok)
        .send()
        .await
        .expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_passed_through_or_mapped() {
    let mock = mock().await;
    let gw = gateway().config(errors_config(&mock.base_url())).start();

    // 429 with Retry-After: status, header and message pass through.
    let r = gw
        .post("/v1/chat/completions", &chat("rate-limited"))
        .send()
        .await;
    let e = r.expect_error(429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached"),
        "{e}"
    );

    // 400 from the upstream: status and its message pass through.
    let e = gw
        .post("/v1/chat/completions", &chat("upstream-400"))
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["message"], "Bad Request (tollgate-mock status knob).");
    assert_eq!(e["type"], "invalid_request_error");

    // 500 from the upstream is a 502 for the client.
    let e = gw
        .post("/v1/chat/completions", &chat("upstream-500"))
        .send()
        .await
        .expect_error(502);
    assert_eq!(e["type"], "api_error");
    assert!(e["message"].as_str().unwrap().contains("500"), "{e}");

    // The upstream rejects the deployment's key: the client sees a 401 (the upstream's), never the key.
    let r = gw
        .post("/v1/chat/completions", &chat("wrong-upstream-key"))
        .send()
        .await;
    let e = r.expect_error(401);
    assert!(!r.text().contains("sk-not-the-upstream-key"), "{e}");

    // Streams fail the same way before the first byte.
    let e = gw
        .post("/v1/chat/completions", &chat_stream("rate-limited", false))
        .send()
        .await
        .expect_error(429);
    assert_eq!(e["code"], "rate_limit_exceeded");
    gw.post("/v1/chat/completions", &chat_stream("upstream-500", false))
        .send()
        .await
        .expect_error(502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504_and_unreachable_is_502() {
    let mock = mock().await;
    let gw = gateway().config(errors_config(&mock.base_url())).start();

    let started = Instant::now();
    let e = gw
        .post("/v1/chat/completions", &chat("hangs"))
        .send()
        .await
        .expect_error(504);
    assert_eq!(e["type"], "timeout_error");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the 1 s timeout fired early: {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the 1 s timeout did not fire: {:?}",
        started.elapsed()
    );
    // The streaming variant times out waiting for the head.
    gw.post("/v1/chat/completions", &chat_stream("hangs", false))
        .send()
        .await
        .expect_error(504);
    // The mock sees the hung request go away once the gateway gave up.
    assert!(
        eventually(Duration::from_secs(5), || mock.in_flight() == 0).await,
        "hung upstream request not dropped"
    );

    let e = gw
        .post("/v1/chat/completions", &chat("unreachable"))
        .send()
        .await
        .expect_error(502);
    assert_eq!(e["code"], "upstream_unreachable");
    gw.post(
        "/v1/embeddings",
        &json!({"model": "unreachable", "input": "x"}),
    )
    .send()
    .await
    .expect_error(502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_404_and_wrong_method_405() {
    let mock = mock().await;
    let gw = gateway().config(errors_config(&mock.base_url())).start();

    let e = gw.get("/v1/no-such-route").send().await.expect_error(404);
    assert!(
        e["message"].as_str().unwrap().contains("/v1/no-such-route"),
        "{e}"
    );
    gw.post("/v2/chat/completions", &chat("my-gpt"))
        .send()
        .await
        .expect_error(404);

    let e = gw
        .get("/v1/chat/completions")
        .send()
        .await
        .expect_error(405);
    assert_eq!(e["code"], "method_not_allowed");
    gw.req(Method::DELETE, "/v1/models")
        .send()
        .await
        .expect_error(405);
    gw.req(Method::POST, "/health/liveliness")
        .send()
        .await
        .expect_error(405);
}
