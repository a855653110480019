//! Streaming through the gateway: chunks are forwarded as they arrive, the usage chunk the gateway asked for
//! is stripped unless the client asked for it too, `model` is the requested name, `[DONE]` ends the stream, and
//! an upstream reset mid-stream ends in an SSE error event and a clean end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::json;

fn stream_config(base: &str) -> String {
    format!(
        r#"model_list:
  - model_name: paced
    litellm_params:
      model: "openai/paced-up@chunks=5,chunk_interval_ms=150"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: quick
    litellm_params:
      model: "openai/quick-up@chunks=4"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: resets
    litellm_params:
      model: "openai/reset-up@chunks=6,reset_after_chunks=2,chunk_interval_ms=20"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
general_settings:
  master_key: {KEY}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_forwarded_as_they_arrive() {
    let mock = mock().await;
    let gw = gateway().config(stream_config(&mock.base_url())).start();

    let resp = gw
        .post("/v1/chat/completions", &chat_stream("paced", false))
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(resp.headers().contains_key("x-litellm-model-id"));
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.error.is_none(), "{:?}", sse.error);
    assert!(sse.ends_with_done(), "{}", sse.raw());

    let content: Vec<&SseEvent> = sse
        .events
        .iter()
        .filter(|e| {
            e.data != "[DONE]"
                && e.json()["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
        })
        .collect();
    assert_eq!(content.len(), 5, "{}", sse.raw());
    // The upstream paces content chunks 150 ms apart: 600 ms between the first and the last. If the gateway
    // buffered the stream, they would arrive together. Generous margin: at least 300 ms apart.
    let spread = content[4].at.duration_since(content[0].at);
    assert!(
        spread >= Duration::from_millis(300),
        "chunks arrived together ({spread:?}): the stream was buffered"
    );
    // And the content chunks arrived in separate reads (allowing one coalesced pair on a loaded machine).
    let distinct = content.windows(2).filter(|w| w[1].at > w[0].at).count();
    assert!(
        distinct >= 3,
        "content chunks arrived together: {distinct} distinct gaps of 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_chunk_is_stripped_unless_the_client_asked() {
    let mock = mock().await;
    let gw = gateway().config(stream_config(&mock.base_url())).start();

    // 1. The client did not ask: the gateway asks the upstream (for its own accounting) and strips it.
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("quick", false))
        .open()
        .await;
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.error.is_none() && sse.ends_with_done(), "{}", sse.raw());
    assert_eq!(sse.data().iter().filter(|d| **d == "[DONE]").count(), 1);
    let events = sse.json_events();
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(
            e["model"], "quick",
            "chunk model must be the requested name: {e}"
        );
        assert_eq!(e["object"], "chat.completion.chunk");
        assert!(
            e["usage"].is_null(),
            "usage leaked to a client that did not ask: {e}"
        );
        assert!(
            !e["choices"].as_array().unwrap().is_empty(),
            "usage-only chunk not stripped: {e}"
        );
    }
    assert!(!sse.text().is_empty());
    let up = mock.recorded().pop().unwrap().json().unwrap();
    assert_eq!(up["stream_options"]["include_usage"], true, "{up}");
    assert_eq!(up["model"], "quick-up@chunks=4");
    assert_eq!(up["stream"], true);

    // 2. The client asked explicitly not to get usage: same as 1, and the upstream still gets `true`.
    let mut body = chat_stream("quick", false);
    body["stream_options"] = json!({"include_usage": false});
    let resp = gw.post("/v1/chat/completions", &body).open().await;
    let sse = read_sse(resp.into_body()).await;
    assert!(
        sse.json_events().iter().all(|e| e["usage"].is_null()),
        "{}",
        sse.raw()
    );
    let up = mock.recorded().pop().unwrap().json().unwrap();
    assert_eq!(up["stream_options"]["include_usage"], true, "{up}");

    // 3. The client asked: the usage chunk is kept (once, after the content, before [DONE]) and the body goes
    // upstream unchanged apart from `model`.
    let raw = r#"{"model":"quick","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count"}]}"#;
    let resp = gw
        .req(Method::POST, "/v1/chat/completions")
        .body(raw)
        .open()
        .await;
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    let events = sse.json_events();
    let with_usage: Vec<_> = events.iter().filter(|e| !e["usage"].is_null()).collect();
    assert_eq!(with_usage.len(), 1, "{}", sse.raw());
    let u = &with_usage[0]["usage"];
    assert!(
        u["completion_tokens"].as_u64().unwrap() > 0 && u["prompt_tokens"].as_u64().unwrap() > 0,
        "{u}"
    );
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    assert_eq!(with_usage[0]["model"], "quick");
    assert!(
        std::ptr::eq(*with_usage.last().unwrap(), events.last().unwrap()),
        "usage chunk is the last JSON chunk"
    );
    let up = mock.recorded().pop().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&up.body),
        raw.replace("\"quick\"", "\"quick-up@chunks=4\"")
    );

    // Completions stream the same way.
    let resp = gw
        .post(
            "/v1/completions",
            &json!({"model": "quick", "prompt": "hi", "stream": true}),
        )
        .open()
        .await;
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    for e in sse.json_events() {
        assert_eq!(e["model"], "quick");
        assert!(e["usage"].is_null(), "{e}");
        assert_eq!(e["object"], "text_completion");
    }
    assert!(!sse.text().is_empty());
    assert_eq!(
        mock.recorded().pop().unwrap().json().unwrap()["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_mid_stream_gives_an_sse_error_and_a_clean_end() {
    let mock = mock().await;
    let gw = gateway().config(stream_config(&mock.base_url())).start();

    let resp = gw
        .post("/v1/chat/completions", &chat_stream("resets", false))
        .open()
        .await;
    assert_eq!(
        resp.status(),
        200,
        "the head was already sent when the upstream failed"
    );
    let sse = read_sse_limit(resp.into_body(), Duration::from_secs(15)).await;
    assert!(
        sse.error.is_none(),
        "the client stream must end cleanly, got {:?}\n{}",
        sse.error,
        sse.raw()
    );
    assert!(
        sse.trailing.trim().is_empty(),
        "half an event at the end: {:?}",
        sse.trailing
    );
    let last = sse
        .events
        .last()
        .unwrap_or_else(|| panic!("no events: {}", sse.raw()));
    let err = last.json();
    let e = err["error"]
        .as_object()
        .unwrap_or_else(|| panic!("last event is not an error: {}", sse.raw()));
    for k in ["message", "type", "param", "code"] {
        assert!(e.contains_key(k), "{err}");
    }
    // Some content made it before the reset.
    assert!(sse.events.len() >= 2, "{}", sse.raw());
    assert!(
        sse.events[..sse.events.len() - 1]
            .iter()
            .all(|ev| ev.json().get("error").is_none())
    );
    assert!(
        !sse.data().contains(&"[DONE]"),
        "a failed stream must not look complete: {}",
        sse.raw()
    );

    // The gateway is fine afterwards.
    let r = gw.post("/v1/chat/completions", &chat("quick")).send().await;
    r.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_work_over_http2_too() {
    let mock = mock().await;
    let gw = gateway().config(stream_config(&mock.base_url())).start();
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("quick", true))
        .client(h2c_client())
        .open()
        .await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    assert_eq!(
        sse.json_events()
            .iter()
            .filter(|e| !e["usage"].is_null())
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_null_stream_options_still_gets_usage() {
    let mock = mock().await;
    let gw = gateway().config(stream_config(&mock.base_url())).start();

    // Some clients send `"stream_options": null`; the upstream must still get one valid `stream_options`.
    let raw = r#"{"model":"quick","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = gw
        .req(Method::POST, "/v1/chat/completions")
        .body(raw)
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    assert!(
        sse.json_events().iter().all(|e| e["usage"].is_null()),
        "{}",
        sse.raw()
    );
    let up = mock.recorded().pop().unwrap();
    let text = String::from_utf8_lossy(&up.body).to_string();
    assert_eq!(
        text.matches("\"stream_options\"").count(),
        1,
        "duplicate key sent upstream: {text}"
    );
    assert_eq!(
        up.json().unwrap()["stream_options"]["include_usage"],
        true,
        "{text}"
    );
    let lines = gw.wait_request_log(1).await;
    assert!(lines[0].contains("usage_reported=true"), "{lines:?}");

    // Azure-style streaming: no `model` in the body, so it is inserted next to `stream_options`.
    let resp = gw
        .req(Method::POST, "/openai/deployments/quick/chat/completions")
        .body(r#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    let up = mock.recorded().pop().unwrap();
    let v = up.json().unwrap_or_else(|| {
        panic!(
            "invalid JSON upstream: {}",
            String::from_utf8_lossy(&up.body)
        )
    });
    assert_eq!(v["model"], "quick-up@chunks=4");
    assert_eq!(v["stream_options"]["include_usage"], true);
}

/// LiteLLM (httpx) applies `stream_timeout` to every read, so a stream that stalls after its head times out;
/// tollgate bounds every wait for upstream bytes by the stream timeout too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_times_out_with_an_sse_error() {
    let mock = mock().await;
    let base = mock.base_url();
    let gw = gateway()
        .config(format!(
            r#"model_list:
  - model_name: stalls-first
    litellm_params:
      model: "openai/s1@ttfb_ms=20000"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
      stream_timeout: 1
  - model_name: stalls-later
    litellm_params:
      model: "openai/s2@chunks=3,chunk_interval_ms=20000"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
      stream_timeout: 1
general_settings:
  master_key: {KEY}
"#
        ))
        .start();

    for model in ["stalls-first", "stalls-later"] {
        let started = std::time::Instant::now();
        let resp = gw
            .post("/v1/chat/completions", &chat_stream(model, false))
            .open()
            .await;
        let status = resp.status();
        let sse = read_sse_limit(resp.into_body(), Duration::from_secs(15)).await;
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(10),
            "{model}: the 1 s stream timeout did not fire ({waited:?})"
        );
        assert!(
            waited >= Duration::from_millis(900),
            "{model}: fired early ({waited:?})"
        );
        if status == 200 {
            assert!(sse.error.is_none(), "{model}: {:?}", sse.error);
            let last = sse
                .events
                .last()
                .unwrap_or_else(|| panic!("{model}: no events"));
            assert_eq!(
                last.json()["error"]["type"],
                "timeout_error",
                "{model}: {}",
                sse.raw()
            );
        } else {
            assert_eq!(status, 504, "{model}: {}", sse.raw());
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || mock.in_flight() == 0).await,
        "stalled upstream requests not dropped"
    );
}
