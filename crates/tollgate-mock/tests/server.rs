//! Server-level tests: auth, recording, counters, h2c and the binary's start-up line and signal handling.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use http::{StatusCode, Version};
use serde_json::json;
use tollgate_mock::MockOptions;

#[tokio::test]
async fn api_key_is_enforced() {
    let mock = start_with(MockOptions {
        api_key: Some("sk-test".into()),
        ..MockOptions::default()
    })
    .await;
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let e = r.json();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["code"], "invalid_api_key");

    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("authorization", "Bearer sk-wrong")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("authorization", "Bearer sk-test")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("api-key", "sk-test")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&mock, "/v1/models", &[("authorization", "bearer sk-test")]).await;
    assert_eq!(r.status, StatusCode::OK);
    // Control endpoints need no key.
    assert_eq!(get(&mock, "/mock/stats", &[]).await.status, StatusCode::OK);
    mock.shutdown().await;
}

#[tokio::test]
async fn recording_and_counting() {
    let mock = start_with(MockOptions {
        record: true,
        ..MockOptions::default()
    })
    .await;
    post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("x-trace", "one")],
    )
    .await;
    get(&mock, "/v1/models?limit=2", &[]).await;
    post(&mock, "/v1/nope", &json!({}), &[]).await;
    assert_eq!(mock.request_count(), 3);

    let rec = mock.recorded();
    assert_eq!(rec.len(), 3);
    assert_eq!(rec[0].method, "POST");
    assert_eq!(rec[0].path, "/v1/chat/completions");
    assert_eq!(rec[0].header("x-trace"), Some("one"));
    assert_eq!(rec[0].json().unwrap()["model"], "gpt-4o");
    assert_eq!(rec[1].query.as_deref(), Some("limit=2"));
    assert!(rec[1].body.is_empty());
    assert_eq!(rec[2].path, "/v1/nope");

    // Out-of-process view; /mock/* requests are neither recorded nor counted.
    let listed = get(&mock, "/mock/requests", &[]).await.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["path"], "/v1/chat/completions");
    assert_eq!(listed[0]["body_json"]["model"], "gpt-4o");
    assert!(
        listed[0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-trace" && h[1] == "one")
    );
    let stats = get(&mock, "/mock/stats", &[]).await.json();
    assert_eq!(stats["requests"], 3);
    assert_eq!(mock.request_count(), 3);

    let del = send_with(
        &client(),
        request(
            http::Method::DELETE,
            &url(&mock, "/mock/requests"),
            None,
            &[],
        ),
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert!(mock.recorded().is_empty());
    post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e", "input": "x"}),
        &[],
    )
    .await;
    assert_eq!(mock.recorded().len(), 1);
    mock.clear_recorded();
    assert!(mock.recorded().is_empty());
    mock.shutdown().await;
}

#[tokio::test]
async fn recording_keeps_the_newest_256() {
    let mock = start_with(MockOptions {
        record: true,
        ..MockOptions::default()
    })
    .await;
    let client = client();
    for i in 0..260 {
        let path = format!("/v1/models/m{i}");
        send_with(
            &client,
            request(http::Method::GET, &url(&mock, &path), None, &[]),
        )
        .await;
    }
    let rec = mock.recorded();
    assert_eq!(rec.len(), tollgate_mock::RECORD_CAPACITY);
    assert_eq!(rec[0].path, "/v1/models/m4");
    assert_eq!(rec.last().unwrap().path, "/v1/models/m259");
    mock.shutdown().await;
}

#[tokio::test]
async fn no_recording_by_default_but_always_counting() {
    let mock = start().await;
    post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert!(mock.recorded().is_empty());
    assert_eq!(mock.request_count(), 1);
    assert!(
        get(&mock, "/mock/requests", &[])
            .await
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let mock = start().await;
    let client = h2_client();
    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat("gpt-4o")),
        &[],
    );
    let r = send_with(&client, req).await;
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["object"], "chat.completion");

    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat_stream("gpt-4o", true)),
        &[],
    );
    let r = send_with(&client, req).await;
    assert_eq!(r.version, Version::HTTP_2);
    let data = r.sse_data();
    assert_eq!(data.len(), 6);
    assert_eq!(data[5], "[DONE]");

    // Many concurrent streams on one connection.
    let reqs = (0..20).map(|_| {
        let req = request(
            http::Method::POST,
            &url(&mock, "/v1/chat/completions"),
            Some(&chat("gpt-4o")),
            &[],
        );
        send_with(&client, req)
    });
    for r in futures_util::future::join_all(reqs).await {
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(mock.request_count(), 22);
    mock.shutdown().await;
}

#[tokio::test]
async fn http1_keep_alive_reuses_one_connection() {
    let mock = start().await;
    let client = client();
    for _ in 0..50 {
        let req = request(
            http::Method::POST,
            &url(&mock, "/v1/chat/completions"),
            Some(&chat("gpt-4o")),
            &[],
        );
        assert_eq!(send_with(&client, req).await.status, StatusCode::OK);
    }
    assert_eq!(mock.request_count(), 50);
    assert_eq!(mock.in_flight(), 0);
    mock.shutdown().await;
}

async fn put_faults(mock: &tollgate_mock::MockServer, body: &serde_json::Value) -> Reply {
    send_with(
        &client(),
        request(
            http::Method::PUT,
            &url(mock, "/mock/faults"),
            Some(body),
            &[],
        ),
    )
    .await
}

#[tokio::test]
async fn server_wide_faults_over_http() {
    let mock = start().await;
    assert_eq!(get(&mock, "/mock/faults", &[]).await.json(), json!({}));
    let r = put_faults(&mock, &json!({"status": 503, "retry-after": "2"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": 503, "retry_after": "2"}));
    assert_eq!(
        get(&mock, "/mock/faults", &[]).await.json(),
        json!({"status": 503, "retry_after": "2"})
    );
    assert_eq!(get(&mock, "/mock/stats", &[]).await.json()["faults"], true);

    // Every endpoint is down ...
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(
        get(&mock, "/v1/models", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // ... below the request's own knobs.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@status=429"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("x-mock-status", "200")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // Bad knobs are refused and change nothing; PUT replaces the whole set.
    let r = put_faults(&mock, &json!({"latency_ms": "soon"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = put_faults(&mock, &json!({"colour": 1})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = put_faults(&mock, &json!([1, 2])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&mock, "/mock/faults", &[]).await.json()["status"], 503);
    let r = put_faults(&mock, &json!({"latency_ms": 40})).await;
    assert_eq!(r.status, StatusCode::OK);
    let t = std::time::Instant::now();
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "status is gone after the PUT");
    assert!(t.elapsed() >= Duration::from_millis(40));

    // Back up.
    let del = send_with(
        &client(),
        request(http::Method::DELETE, &url(&mock, "/mock/faults"), None, &[]),
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&mock, "/mock/faults", &[]).await.json(), json!({}));
    assert_eq!(get(&mock, "/mock/stats", &[]).await.json()["faults"], false);
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    mock.shutdown().await;
}

#[tokio::test]
async fn server_wide_faults_from_rust() {
    let mock = start().await;
    assert!(mock.faults().is_empty());
    mock.set_faults(&[("status", "503")]).unwrap();
    assert_eq!(mock.faults(), [("status".to_owned(), "503".to_owned())]);
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // A flaky upstream: status is the failure status of fail_rate.
    mock.set_faults(&[("fail_rate", "1"), ("error_code", "content_filter")])
        .unwrap();
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "content_filter");
    assert!(mock.set_faults(&[("fail_rate", "2")]).is_err());
    assert!(mock.set_faults(&[("error_code", "nope")]).is_err());
    assert_eq!(mock.faults().len(), 2, "a refused set changes nothing");
    mock.clear_faults();
    assert!(mock.faults().is_empty());
    let r = post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // An empty set clears too.
    mock.set_faults(&[("hang", "1")]).unwrap();
    mock.set_faults(&[]).unwrap();
    assert_eq!(get(&mock, "/mock/faults", &[]).await.json(), json!({}));
    mock.shutdown().await;
}

#[tokio::test]
async fn requests_are_counted_per_endpoint() {
    use tollgate_mock::Endpoint;
    let mock = start().await;
    for _ in 0..3 {
        post(&mock, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    }
    // Failures and bad bodies count too.
    post(&mock, "/chat/completions", &chat("gpt-4o@status=500"), &[]).await;
    post_raw(&mock, "/v1/chat/completions", "{nope").await;
    post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e", "input": "x"}),
        &[],
    )
    .await;
    get(&mock, "/v1/models/gpt-4o", &[]).await;
    get(&mock, "/v1/chat/completions", &[]).await;
    assert_eq!(mock.requests(), 8);
    assert_eq!(mock.requests_to(Endpoint::ChatCompletions), 5);
    assert_eq!(mock.requests_to(Endpoint::Embeddings), 1);
    assert_eq!(mock.requests_to(Endpoint::Models), 1);
    assert_eq!(mock.requests_to(Endpoint::Other), 1);
    assert_eq!(mock.requests_to(Endpoint::Responses), 0);
    let stats = get(&mock, "/mock/stats", &[]).await.json();
    assert_eq!(stats["requests"], 8);
    assert_eq!(
        stats["endpoints"],
        json!({
            "chat_completions": 5,
            "completions": 0,
            "embeddings": 1,
            "responses": 0,
            "models": 1,
            "messages": 0,
            "gemini": 0,
            "bedrock": 0,
            "ollama": 0,
            "azure": 0,
            "cohere": 0,
            "other": 1
        })
    );
    mock.shutdown().await;
}

#[test]
fn binary_prints_its_address_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
        .args(["--port", "0", "--record"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("tollgate-mock listening on ")
        .unwrap()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let req = request(http::Method::GET, &format!("{url}/v1/models"), None, &[]);
        send_with(&client(), req).await
    });
    assert_eq!(r.status, StatusCode::OK);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
