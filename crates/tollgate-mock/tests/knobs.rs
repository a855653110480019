//! Fault-knob tests: each `x-mock-*` / `model@knob=..` knob observed over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn latency_delays_the_head() {
    let mock = start().await;
    let t = Instant::now();
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@latency_ms=60"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let r = get(&mock, "/v1/models", &[("x-mock-latency-ms", "40")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(40));
    mock.shutdown().await;
}

#[tokio::test]
async fn ttfb_and_chunk_interval_pace_the_stream() {
    let mock = start().await;
    let mut resp = open(
        &mock,
        "/v1/chat/completions",
        &chat_stream("gpt-4o@ttfb_ms=80,chunks=4,chunk_interval_ms=25", false),
        &[],
    )
    .await;
    let head_at = Instant::now();
    let (frames, err) = frames(resp.body_mut()).await;
    assert!(err.is_none());
    assert!(
        frames[0].0 - head_at >= Duration::from_millis(80),
        "first event waits ttfb"
    );
    // role + 4 content + [DONE] = 6 events, 5 intervals between them.
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(sse_data(&text).len(), 6);
    assert!(frames.len() >= 2, "paced events arrive separately");
    let spread = frames.last().unwrap().0 - frames[0].0;
    assert!(spread >= Duration::from_millis(5 * 25), "{spread:?}");
    mock.shutdown().await;
}

#[tokio::test]
async fn chunks_sets_the_number_of_content_chunks() {
    let mock = start().await;
    for n in [1usize, 2, 7, 20] {
        let model = format!("gpt-4o@chunks={n}");
        let data = post(
            &mock,
            "/v1/chat/completions",
            &chat_stream(&model, false),
            &[],
        )
        .await
        .sse_data();
        assert_eq!(data.len(), n + 2, "role + {n} content + [DONE]");
        let text: String = data[1..=n]
            .iter()
            .map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(text, "This is a mock response from tollgate.");
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn status_knob_gives_openai_errors() {
    let mock = start().await;
    let cases = [
        (400, "invalid_request_error"),
        (401, "invalid_request_error"),
        (403, "request_forbidden"),
        (404, "invalid_request_error"),
        (429, "requests"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
    ];
    for (status, kind) in cases {
        let model = format!("gpt-4o@status={status}");
        let r = post(&mock, "/v1/chat/completions", &chat(&model), &[]).await;
        assert_eq!(r.status.as_u16(), status);
        let e = r.json();
        assert_eq!(e["error"]["type"], kind, "status {status}");
        assert!(e["error"]["message"].is_string());
        assert!(e["error"].get("param").is_some());
        assert!(e["error"].get("code").is_some());
        assert!(r.headers.get("retry-after").is_none());
    }
    // The header wins over the model suffix.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@status=500"),
        &[("x-mock-status", "503")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // Streaming requests fail with a plain JSON error too.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat_stream("gpt-4o@status=429", true),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    mock.shutdown().await;
}

#[tokio::test]
async fn retry_after_implies_429() {
    let mock = start().await;
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@retry_after=7"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "7");
    let r = post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e", "input": "x"}),
        &[("x-mock-status", "503"), ("x-mock-retry-after", "2")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["retry-after"], "2");
    mock.shutdown().await;
}

#[tokio::test]
async fn fail_first_then_succeed() {
    let mock = start().await;
    let statuses = |model: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let mock = &mock;
        async move {
            let mut out = Vec::new();
            for _ in 0..4 {
                out.push(
                    post(mock, "/v1/chat/completions", &chat(model), headers)
                        .await
                        .status
                        .as_u16(),
                );
            }
            out
        }
    };
    assert_eq!(statuses("a@fail_first=2", &[]).await, [500, 500, 200, 200]);
    assert_eq!(
        statuses("b@fail_first=1,status=503", &[]).await,
        [503, 200, 200, 200]
    );
    assert_eq!(
        statuses(
            "c",
            &[("x-mock-fail-first", "3"), ("x-mock-retry-after", "1")]
        )
        .await,
        [429, 429, 429, 200]
    );
    // Another knob set has its own counter.
    assert_eq!(
        statuses("c", &[("x-mock-fail-first", "1")]).await,
        [500, 200, 200, 200]
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn fail_rate_fails_some_requests_with_the_status() {
    let mock = start().await;
    let client = client();
    let mut failed = 0;
    for _ in 0..60 {
        let req = request(
            http::Method::POST,
            &url(&mock, "/v1/chat/completions"),
            Some(&chat("gpt-4o@fail_rate=0.5,status=503")),
            &[("x-mock-retry-after", "4")],
        );
        let r = send_with(&client, req).await;
        match r.status.as_u16() {
            200 => assert!(r.headers.get("retry-after").is_none()),
            503 => {
                failed += 1;
                assert_eq!(r.headers["retry-after"], "4");
                assert_eq!(r.json()["error"]["type"], "server_error");
            }
            s => panic!("unexpected status {s}"),
        }
    }
    // P(outside 5..=55 at p=0.5 over 60) is below 1e-10.
    assert!((5..=55).contains(&failed), "{failed} of 60 failed");
    // 0 never fails, even with a status; 1 always fails (default 500).
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@fail_rate=0,status=503"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e", "input": "x"}),
        &[("x-mock-fail-rate", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@fail_rate=2"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    mock.shutdown().await;
}

#[tokio::test]
async fn error_code_shapes_the_error() {
    let mock = start().await;
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@error_code=context_length_exceeded"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = &r.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "messages");
    assert_eq!(e["code"], "context_length_exceeded");
    // Prompt tokens of `chat()`: ceil(39 chars / 4) = 10, reported on top of the limit.
    assert_eq!(
        e["message"],
        "This model's maximum context length is 8192 tokens. However, your messages \
         resulted in 8202 tokens. Please reduce the length of the messages."
    );

    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("x-mock-error-code", "content_policy_violation")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = &r.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "content_policy_violation");
    assert!(e["param"].is_null());
    assert_eq!(
        e["message"],
        "Your request was rejected as a result of our safety system."
    );

    // Azure's content filter, on a stream request too.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat_stream("gpt-4o@error_code=content_filter", false),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "content_filter");
    assert_eq!(e["param"], "prompt");
    assert_eq!(e["status"], 400);
    assert_eq!(e["innererror"]["code"], "ResponsibleAIPolicyViolation");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("content management policy")
    );

    // Any other code with an explicit status.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@error_code=insufficient_quota,status=429"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "insufficient_quota");
    assert_eq!(e["type"], "requests");
    assert!(e["message"].as_str().unwrap().contains("quota"));
    // ... but not without one.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@error_code=insufficient_quota"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a `status`")
    );
    // The status knob can change a special code's status.
    let r = post(
        &mock,
        "/v1/completions",
        &json!({"model": "m@error_code=context_length_exceeded,status=413", "prompt": "hi"}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    mock.shutdown().await;
}

#[tokio::test]
async fn content_echo_and_tool_call() {
    let mock = start().await;
    let v = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("x-mock-content", "one two three")],
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["message"]["content"], "one two three");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let v = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@content=via suffix"),
        &[],
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["message"]["content"], "via suffix");

    let v = post(&mock, "/v1/chat/completions", &chat("gpt-4o@echo=1"), &[])
        .await
        .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Say hello to the gateway."
    );
    assert_eq!(v["usage"]["completion_tokens"], 5);

    let v = post(
        &mock,
        "/v1/completions",
        &json!({"model": "m@echo", "prompt": "echo me"}),
        &[],
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "echo me");
    let v = post(
        &mock,
        "/v1/responses",
        &json!({"model": "m", "input": "echo me too"}),
        &[("x-mock-echo", "true")],
    )
    .await
    .json();
    assert_eq!(v["output"][0]["content"][0]["text"], "echo me too");

    let mut body = chat("gpt-4o@tool_call=1");
    body["tools"] = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time"}}
    ]);
    let v = post(
        &mock,
        "/v1/chat/completions",
        &body,
        &[("x-mock-content", "{\"city\":\"Paris\"}")],
    )
    .await
    .json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");

    let v = post(
        &mock,
        "/v1/chat/completions",
        &body,
        &[("x-mock-tool-call", "get_time")],
    )
    .await
    .json();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_time"
    );
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );

    // Streaming tool call: arguments spread over the chunks.
    body["stream"] = json!(true);
    let data = post(
        &mock,
        "/v1/chat/completions",
        &body,
        &[
            ("x-mock-content", "{\"a\": 1, \"b\": 2}"),
            ("x-mock-chunks", "2"),
        ],
    )
    .await
    .sse_data();
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let args: String = chunks[1..]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(args, "{\"a\": 1, \"b\": 2}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // Without tools the knob is ignored.
    let v = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@tool_call=1"),
        &[],
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    mock.shutdown().await;
}

#[tokio::test]
async fn dims_sets_embedding_size() {
    let mock = start().await;
    let v = post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e@dims=3", "input": "x"}),
        &[],
    )
    .await
    .json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 3);
    let body = json!({"model": "e", "input": "x", "dimensions": 5});
    let v = post(&mock, "/v1/embeddings", &body, &[("x-mock-dims", "12")])
        .await
        .json();
    assert_eq!(
        v["data"][0]["embedding"].as_array().unwrap().len(),
        12,
        "knob beats `dimensions`"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_or_unknown_knobs_are_400() {
    let mock = start().await;
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@latency_ms=soon"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("latency_ms")
    );
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[("x-mock-colour", "blue")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // An `@` suffix without `=` is part of the model name, not knobs.
    let r = post(
        &mock,
        "/v1/chat/completions",
        &chat("claude-3-5-sonnet@20240620"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["model"], "claude-3-5-sonnet@20240620");
    mock.shutdown().await;
}

#[tokio::test]
async fn reset_mid_stream_is_a_body_error() {
    let mock = start().await;
    let mut resp = open(
        &mock,
        "/v1/chat/completions",
        &chat_stream("gpt-4o@reset_after_chunks=2,chunks=5", true),
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (frames, err) = frames(resp.body_mut()).await;
    let err = err.expect("the body must fail, not end cleanly");
    // hyper reports the missing terminating chunk as a body error.
    assert!(!err.is_user(), "{err:?}");
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let data = sse_data(&text);
    assert_eq!(
        data.len(),
        2,
        "exactly the first two events arrive: {data:?}"
    );
    assert!(!text.contains("[DONE]"));
    mock.shutdown().await;
}

#[tokio::test]
async fn reset_on_non_streaming_request_aborts_after_head() {
    let mock = start().await;
    let mut resp = open(
        &mock,
        "/v1/chat/completions",
        &chat("gpt-4o@reset_after_chunks=0"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (frames, err) = frames(resp.body_mut()).await;
    assert!(err.is_some());
    assert!(frames.is_empty());
    mock.shutdown().await;
}

#[tokio::test]
async fn hang_is_released_when_the_client_disconnects() {
    use tokio::io::AsyncWriteExt;
    let mock = start().await;
    let body = serde_json::to_vec(&chat("gpt-4o@hang=1")).unwrap();
    let mut stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || mock.in_flight() == 1).await);
    // Still hanging a while later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mock.in_flight(), 1);
    drop(stream);
    assert!(
        eventually(Duration::from_secs(2), || mock.in_flight() == 0).await,
        "hang leaked"
    );

    // Same over the pooled client, with a timeout dropping the request.
    let client = client();
    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat("gpt-4o")),
        &[("x-mock-hang", "1")],
    );
    let timed_out = tokio::time::timeout(Duration::from_millis(150), client.request(req)).await;
    assert!(timed_out.is_err());
    drop(client);
    assert!(
        eventually(Duration::from_secs(2), || mock.in_flight() == 0).await,
        "hang leaked"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn hang_over_h2_is_released_when_the_stream_is_dropped() {
    let mock = start().await;
    let client = h2_client();
    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat("gpt-4o")),
        &[("x-mock-hang", "1")],
    );
    let timed_out = tokio::time::timeout(Duration::from_millis(150), client.request(req)).await;
    assert!(timed_out.is_err());
    assert!(
        eventually(Duration::from_secs(2), || mock.in_flight() == 0).await,
        "h2 hang leaked"
    );
    // The connection itself is still usable.
    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat("gpt-4o")),
        &[],
    );
    assert_eq!(send_with(&client, req).await.status, StatusCode::OK);
    mock.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_hanging_requests() {
    let mock = start().await;
    let client = client();
    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat("gpt-4o@hang")),
        &[],
    );
    let t = Instant::now();
    let (res, ()) = tokio::join!(client.request(req), async {
        assert!(eventually(Duration::from_secs(2), || mock.in_flight() == 1).await);
        mock.shutdown().await;
    });
    assert!(
        res.is_err(),
        "the hanging request ends with a closed connection"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn reset_over_h2_is_a_stream_error() {
    let mock = start().await;
    let client = h2_client();
    let req = request(
        http::Method::POST,
        &url(&mock, "/v1/chat/completions"),
        Some(&chat_stream("gpt-4o@reset_after_chunks=1", false)),
        &[],
    );
    let mut resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let (_, err) = frames(resp.body_mut()).await;
    assert!(err.is_some(), "the stream must be reset, not end cleanly");
    mock.shutdown().await;
}
