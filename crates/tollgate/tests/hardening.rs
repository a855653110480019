//! Request hardening against the real binary: client-side credentials (refused, or honoured when allowed), JSON depth and message-count limits, the request head size (431), `--limit_concurrency` (503 with `Retry-After`), and CORS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_mock::MockOptions;

/// Every proxied route with a body for it.
fn routes(model: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("/v1/chat/completions", chat(model)),
        ("/chat/completions", chat(model)),
        ("/v1/completions", json!({"model": model, "prompt": "hi"})),
        ("/v1/embeddings", json!({"model": model, "input": "hi"})),
        ("/v1/responses", json!({"model": model, "input": "hi"})),
        (
            "/v1/messages",
            json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/messages/count_tokens",
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/rerank",
            json!({"model": model, "query": "q", "documents": ["a"]}),
        ),
        (
            "/openai/deployments/up/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ),
    ]
}

/// The error object of a refusal, whatever the route's error shape (OpenAI, or Anthropic's on `/v1/messages`).
fn error_of(r: &Resp) -> Value {
    let v = r.json();
    assert!(v["error"].is_object(), "no error object: {v}");
    v["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_credentials_are_refused_for_everyone() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(&mock.base_url(), &[("up", "up-model")]))
        .start();
    for field in [
        "api_base",
        "base_url",
        "api_key",
        "aws_access_key_id",
        "vertex_credentials",
    ] {
        for (path, mut body) in routes("up") {
            body[field] = json!("http://169.254.169.254/latest");
            // The master key is no exemption.
            let r = gw
                .post(path, &body)
                .header("anthropic-version", "2023-06-01")
                .send()
                .await;
            r.expect_status(400);
            let e = error_of(&r);
            if !path.starts_with("/v1/messages") {
                r.expect_error(400);
                assert_eq!(e["param"], field, "{path}: {e}");
                assert_eq!(
                    e["code"], "client_side_credentials_not_allowed",
                    "{path}: {e}"
                );
            }
            assert_eq!(
                e["message"],
                format!(
                    "Rejected Request: {field} is not allowed in request body. Enable with general_settings::allow_client_side_credentials on proxy config.yaml"
                ),
                "{path}"
            );
        }
    }
    // A null value is refused too, and nested fields of the same name are not credentials.
    let mut body = chat("up");
    body["api_base"] = Value::Null;
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(400);
    assert_eq!(
        mock.request_count(),
        0,
        "a refused request reached the upstream"
    );
    let mut body = chat("up");
    body["metadata"] = json!({"api_key": "not-a-credential"});
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_status(200);
    assert_eq!(mock.request_count(), 1);
}

/// A second upstream, the client's own, with its own key.
const CLIENT_KEY: &str = "sk-client-own-7c21";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_client_side_credentials_replace_the_deployments() {
    let configured = mock().await;
    let own = mock_with(MockOptions {
        api_key: Some(CLIENT_KEY.into()),
        record: true,
        ..MockOptions::default()
    })
    .await;
    let cfg = config_for(&configured.base_url(), &[("up", "up-model")])
        + "  allow_client_side_credentials: true\n";
    let gw = gateway().config(cfg).start();

    for field in ["api_base", "base_url"] {
        own.clear_recorded();
        let mut body = chat("up");
        body[field] = json!(own.base_url());
        body["api_key"] = json!(CLIENT_KEY);
        let r = gw.post("/v1/chat/completions", &body).send().await;
        r.expect_status(200);
        assert_eq!(r.json()["model"], "up");
        let rec = own.recorded();
        assert_eq!(
            rec.len(),
            1,
            "{field}: the client's upstream got no request"
        );
        assert_eq!(rec[0].path, "/v1/chat/completions");
        assert_eq!(
            rec[0].header("authorization"),
            Some(format!("Bearer {CLIENT_KEY}").as_str())
        );
        let sent = rec[0].json().unwrap();
        for f in ["api_key", "api_base", "base_url"] {
            assert!(
                sent.get(f).is_none(),
                "{f} went upstream in the body: {sent}"
            );
        }
        assert_eq!(sent["model"], "up-model");
        // The answer names the upstream it came from, not the configured one.
        assert_eq!(
            r.header("x-litellm-model-api-base"),
            Some(own.base_url().as_str())
        );
    }
    // Streams too.
    let mut body = chat_stream("up", false);
    body["api_base"] = json!(own.base_url());
    body["api_key"] = json!(CLIENT_KEY);
    own.clear_recorded();
    let resp = gw.post("/v1/chat/completions", &body).open().await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    assert_eq!(own.recorded().len(), 1);
    assert_eq!(
        configured.request_count(),
        0,
        "the configured upstream was called"
    );

    // The client's upstream failing does not cool the configured deployment down.
    for _ in 0..4 {
        let mut body = chat("up");
        body["api_base"] = json!(closed_base_url());
        let r = gw.post("/v1/chat/completions", &body).send().await;
        assert!(r.status.as_u16() >= 500, "{}", r.text());
    }
    gw.post("/v1/chat/completions", &chat("up"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(configured.request_count(), 1);
    // A base that is not an http(s) URL is a 400.
    let mut body = chat("up");
    body["api_base"] = json!("file:///etc/passwd");
    let e = gw
        .post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "api_base");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_deployment_configurable_clientside_auth_params() {
    let configured = mock().await;
    // The client's base, expecting the deployment's key (the client only changes the base).
    let own = mock().await;
    let cfg = format!(
        "model_list:\n  - model_name: open\n    litellm_params:\n      model: openai/o\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\n      configurable_clientside_auth_params: [\"api_base\"]\n  - model_name: closed\n    litellm_params:\n      model: openai/c\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\ngeneral_settings:\n  master_key: {KEY}\n",
        base = configured.base_url()
    );
    let gw = gateway().config(cfg).start();
    let mut body = chat("open");
    body["api_base"] = json!(own.base_url());
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_status(200);
    assert_eq!(own.request_count(), 1);
    assert_eq!(
        own.recorded()[0].header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    // Only the listed field.
    body["api_key"] = json!("sk-x");
    let e = gw
        .post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "api_key");
    let mut body = chat("closed");
    body["api_base"] = json!(own.base_url());
    let e = gw
        .post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "api_base");
    assert_eq!(own.request_count(), 1);
    assert_eq!(configured.request_count(), 0);
}

fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_depth_and_message_count_limits() {
    let mock = mock().await;
    let cfg = config_for(&mock.base_url(), &[("up", "up-model")])
        + "  tollgate_max_json_depth: 8\n  tollgate_max_messages: 3\n";
    let gw = gateway().config(cfg).start();
    // Depth: the top-level object is level 1; 8 levels in all are fine, 9 are not (brackets inside the
    // content string do not count).
    for (levels, ok) in [(8, true), (9, false)] {
        let body = format!(
            "{{\"model\":\"up\",\"messages\":[{{\"role\":\"user\",\"content\":\"[[[[[[[[[[\"}}],\"x\":{}}}",
            nested(levels - 1)
        );
        let r = gw
            .req(Method::POST, "/v1/chat/completions")
            .body(body)
            .send()
            .await;
        if ok {
            r.expect_status(200);
        } else {
            let e = r.expect_error(400);
            assert_eq!(e["code"], "json_too_deeply_nested");
            assert!(e["message"].as_str().unwrap().contains("8"), "{e}");
        }
    }
    let msgs = |n: usize| -> Value {
        (0..n)
            .map(|i| json!({"role": "user", "content": format!("m{i}, [x]")}))
            .collect()
    };
    let mut body = chat("up");
    body["messages"] = msgs(3);
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_status(200);
    body["messages"] = msgs(4);
    let e = gw
        .post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "messages");
    assert_eq!(e["code"], "too_many_messages");
    // The Responses API's `input` list and Anthropic's `messages` are limited too.
    let e = gw
        .post("/v1/responses", &json!({"model": "up", "input": msgs(4)}))
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["param"], "input");
    let r = gw
        .post(
            "/v1/messages",
            &json!({"model": "up", "max_tokens": 5, "messages": msgs(4)}),
        )
        .header("anthropic-version", "2023-06-01")
        .send()
        .await;
    r.expect_status(400);
    assert!(r.text().contains("tollgate_max_messages"), "{}", r.text());
    assert_eq!(
        mock.request_count(),
        2,
        "a refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_depth_limit_is_64() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(&mock.base_url(), &[("up", "up-model")]))
        .start();
    for (levels, ok) in [(63, true), (64, false)] {
        let body = format!(
            "{{\"model\":\"up\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"x\":{}}}",
            nested(levels)
        );
        let r = gw
            .req(Method::POST, "/v1/chat/completions")
            .body(body)
            .send()
            .await;
        if ok {
            r.expect_status(200);
        } else {
            assert_eq!(r.expect_error(400)["code"], "json_too_deeply_nested");
        }
    }
}

/// Send one raw HTTP/1.1 request with a header of `size` bytes; the response's status line.
async fn status_with_header(addr: std::net::SocketAddr, size: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /health/liveliness HTTP/1.1\r\nHost: x\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(size)
    );
    // The server may answer and close before it has read everything.
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(&mock.base_url(), &[("up", "up-model")]))
        .start();
    // Default: 64 KiB.
    let ok = status_with_header(gw.addr, 40 * 1024).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let big = status_with_header(gw.addr, 80 * 1024).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // HTTP/2: the header list is refused (431, or the client refuses to send what the server announced
    // it would not take).
    let r = gw
        .get("/health/liveliness")
        .header("x-big", &"a".repeat(80 * 1024))
        .client(h2c_client())
        .try_send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status, 431, "{}", r.text()),
        Err(e) => assert!(!e.is_empty()),
    }
    // The gateway is fine afterwards.
    gw.get("/health/liveliness")
        .client(h2c_client())
        .send()
        .await
        .expect_status(200);

    let cfg = config_for(&mock.base_url(), &[("up", "up-model")])
        + "  tollgate_max_header_bytes: 16384\n";
    let gw = gateway().config(cfg).start();
    let ok = status_with_header(gw.addr, 8 * 1024).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let big = status_with_header(gw.addr, 20 * 1024).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_concurrency_refuses_beyond_n_in_flight() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(
            &mock.base_url(),
            &[
                ("slow", "slow@latency_ms=1500"),
                ("streamy", "s@chunk_interval_ms=400"),
                ("up", "up-model"),
            ],
        ))
        .args(["--limit_concurrency", "2"])
        .start();
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..2 {
        slow.spawn(gw.post("/v1/chat/completions", &chat("slow")).send());
    }
    assert!(
        eventually(Duration::from_secs(10), || mock.in_flight() == 2).await,
        "the two slow requests did not reach the upstream"
    );
    let r = gw.post("/v1/chat/completions", &chat("up")).send().await;
    let e = r.expect_error(503);
    assert_eq!(e["type"], "service_unavailable_error");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.header("x-request-id").is_some());
    // Probes are exempt; other routes are not.
    gw.anon(Method::GET, "/health/liveliness")
        .send()
        .await
        .expect_status(200);
    gw.anon(Method::GET, "/health/readiness")
        .send()
        .await
        .expect_status(200);
    gw.get("/v1/models").send().await.expect_error(503);
    while let Some(r) = slow.join_next().await {
        r.unwrap().expect_status(200);
    }
    gw.post("/v1/chat/completions", &chat("up"))
        .send()
        .await
        .expect_status(200);

    // A stream holds its slot until its body is done, not just until its head.
    let mut held = Vec::new();
    for _ in 0..2 {
        let resp = gw
            .post("/v1/chat/completions", &chat_stream("streamy", false))
            .open()
            .await;
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    gw.post("/v1/chat/completions", &chat("up"))
        .send()
        .await
        .expect_error(503);
    for resp in held {
        let sse = read_sse(resp.into_body()).await;
        assert!(sse.ends_with_done(), "{}", sse.raw());
    }
    // The slots come back once the bodies are done (the server drops them just after the last frame).
    let mut status = 0;
    for _ in 0..50 {
        status = gw
            .post("/v1/chat/completions", &chat("up"))
            .send()
            .await
            .status
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    let log = gw.stderr();
    assert!(
        log.contains("limit_concurrency reached"),
        "no warning about refusals:\n{log}"
    );
}

fn cors_headers(r: &Resp) -> Vec<String> {
    r.headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn preflight(gw: &Gateway, origin: &str) -> Req {
    gw.anon(Method::OPTIONS, "/v1/chat/completions")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "Authorization, Content-Type",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(&mock.base_url(), &[("up", "up-model")]))
        .start();
    let r = preflight(&gw, "https://app.example.com").send().await;
    assert_ne!(r.status, 204);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
    let r = gw
        .post("/v1/chat/completions", &chat("up"))
        .header("origin", "https://app.example.com")
        .send()
        .await;
    r.expect_status(200);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_with_allowed_origins() {
    let mock = mock().await;
    let cfg = config_for(&mock.base_url(), &[("up", "up-model")])
        + "  allowed_origins: [\"https://app.example.com\", \"http://localhost:3000\"]\n";
    let gw = gateway().config(cfg).start();

    // Preflight: answered before auth.
    let r = preflight(&gw, "https://APP.example.com").send().await;
    r.expect_status(204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://APP.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").unwrap().contains("Origin"));

    // A normal response to an allowed origin, and an error (the browser can read both).
    let r = gw
        .post("/v1/chat/completions", &chat("up"))
        .header("origin", "http://localhost:3000")
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let exposed = r.header("access-control-expose-headers").unwrap();
    for h in [
        "x-request-id",
        "x-litellm-call-id",
        "retry-after",
        "x-ratelimit-remaining-requests",
    ] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    assert!(
        r.headers.get_all("vary").iter().any(|v| v == "Origin"),
        "{:?}",
        r.headers
    );
    let r = gw
        .anon(Method::POST, "/v1/chat/completions")
        .json(&chat("up"))
        .header("origin", "http://localhost:3000")
        .send()
        .await;
    r.expect_error(401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    // Other origins: no CORS headers; their preflight is a 403.
    for other in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "http://localhost:3001",
    ] {
        let r = preflight(&gw, other).send().await;
        r.expect_error(403);
        assert!(cors_headers(&r).is_empty(), "{other}: {:?}", r.headers);
        let r = gw
            .post("/v1/chat/completions", &chat("up"))
            .header("origin", other)
            .send()
            .await;
        r.expect_status(200);
        assert!(cors_headers(&r).is_empty(), "{other}: {:?}", r.headers);
    }
    // An OPTIONS that is not a preflight is routed as usual (and authenticated).
    let r = gw
        .anon(Method::OPTIONS, "/v1/chat/completions")
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert_ne!(r.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_any_origin_from_the_environment() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(&mock.base_url(), &[("up", "up-model")]))
        .env("TOLLGATE_ALLOWED_ORIGINS", "*")
        .start();
    let r = preflight(&gw, "https://anything.test").send().await;
    r.expect_status(204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-credentials").is_none());
    let r = gw
        .get("/v1/models")
        .header("origin", "https://anything.test")
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-credentials").is_none());
}
