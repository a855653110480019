//! The request log on stderr: exactly one `request completed` line per LLM request, with usage fields, also for
//! a stream the client abandoned; and no secret (master key, provider keys) anywhere in stderr, even with
//! `--detailed_debug`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};

const ENV_UPSTREAM_KEY_VAR: &str = "TOLLGATE_IT_UPSTREAM_KEY";

fn log_config(base: &str) -> String {
    format!(
        r#"model_list:
  - model_name: chat
    litellm_params:
      model: openai/chat-up
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: slow
    litellm_params:
      model: "openai/slow-up@chunks=20,chunk_interval_ms=100"
      api_base: {base}
      api_key: os.environ/{ENV_UPSTREAM_KEY_VAR}
  - model_name: embed
    litellm_params:
      model: openai/embed-up
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: failing
    litellm_params:
      model: "openai/f@status=500"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
general_settings:
  master_key: {KEY}
"#
    )
}

/// `key=value` fields of a text log line (values may be quoted).
fn fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = next;
    }
    out
}

fn line_for<'a>(lines: &'a [String], request_id: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| l.contains(&format!("request_id={request_id}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_completed_line_per_llm_request() {
    let mock = mock().await;
    let gw = gateway()
        .config(log_config(&mock.base_url()))
        .env(ENV_UPSTREAM_KEY_VAR, UPSTREAM_KEY)
        .start();

    let mut ids = Vec::new();
    let r = gw.post("/v1/chat/completions", &chat("chat")).send().await;
    r.expect_status(200);
    ids.push((
        "chat",
        r.header("x-request-id").unwrap().to_string(),
        200,
        false,
    ));
    let r = gw
        .post("/v1/embeddings", &json!({"model": "embed", "input": "abc"}))
        .send()
        .await;
    r.expect_status(200);
    ids.push((
        "embed",
        r.header("x-request-id").unwrap().to_string(),
        200,
        false,
    ));
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("chat", false))
        .open()
        .await;
    let sid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done());
    ids.push(("chat", sid, 200, true));
    let r = gw
        .post("/v1/chat/completions", &chat("failing"))
        .send()
        .await;
    r.expect_error(502);
    ids.push((
        "failing",
        r.header("x-request-id").unwrap().to_string(),
        502,
        false,
    ));
    // Not LLM requests: no `request completed` line.
    gw.get("/v1/models").send().await.expect_status(200);
    gw.post("/v1/chat/completions", &chat("chat"))
        .bearer("sk-wrong")
        .send()
        .await
        .expect_error(401);
    gw.post("/v1/chat/completions", &chat("unknown-model"))
        .send()
        .await
        .expect_error(400);

    let lines = gw.wait_request_log(ids.len()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = if gw.request_log().len() > lines.len() {
        gw.request_log()
    } else {
        lines
    };
    assert_eq!(
        lines.len(),
        ids.len(),
        "one line per LLM request:\n{}",
        lines.join("\n")
    );
    for (model, id, status, stream) in &ids {
        let found = line_for(&lines, id);
        assert_eq!(found.len(), 1, "request {id}: {found:?}");
        let f = fields(found[0]);
        assert_eq!(f["model"], *model, "{f:?}");
        assert_eq!(f["status"], status.to_string(), "{f:?}");
        assert_eq!(f["stream"], stream.to_string(), "{f:?}");
        for k in [
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "latency_ms",
            "deployment",
            "route",
        ] {
            assert!(f.contains_key(k), "missing {k}: {f:?}");
        }
        if *status == 200 {
            assert_eq!(f["usage_reported"], "true", "{f:?}");
            let total: u64 = f["total_tokens"].parse().unwrap();
            assert!(total > 0, "{f:?}");
            assert_eq!(f["client_disconnected"], "false");
        } else {
            assert!(!f["error"].is_empty(), "{f:?}");
        }
    }
    // The stream's usage was recorded although the client did not ask for it.
    let stream_line = fields(line_for(&lines, &ids[2].1)[0]);
    assert!(
        stream_line["completion_tokens"].parse::<u64>().unwrap() > 0,
        "{stream_line:?}"
    );

    let stderr = gw.stop().await;
    for secret in [KEY, UPSTREAM_KEY] {
        assert!(!stderr.contains(secret), "a secret is in stderr:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_stream_is_recorded_once() {
    let mock = mock().await;
    let gw = gateway()
        .config(log_config(&mock.base_url()))
        .env(ENV_UPSTREAM_KEY_VAR, UPSTREAM_KEY)
        .start();

    let resp = gw
        .post("/v1/chat/completions", &chat_stream("slow", false))
        .open()
        .await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut body = resp.into_body();
    for _ in 0..3 {
        tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    // The client goes away mid-stream (the body and its connection are dropped).
    drop(body);

    let lines = gw.wait_request_log(1).await;
    let found = line_for(&lines, &id);
    assert_eq!(
        found.len(),
        1,
        "abandoned stream not recorded: {lines:?}\n{}",
        gw.stderr()
    );
    let f = fields(found[0]);
    assert_eq!(f["client_disconnected"], "true", "{f:?}");
    assert_eq!(f["stream"], "true");
    for k in [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "usage_reported",
    ] {
        assert!(f.contains_key(k), "missing {k}: {f:?}");
    }
    // The upstream request is cancelled too (the mock had 20 chunks * 100 ms to go).
    assert!(
        eventually(Duration::from_secs(5), || mock.in_flight() == 0).await,
        "upstream stream still running"
    );
    // Recorded exactly once, also after a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(line_for(&gw.request_log(), &id).len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_detailed_debug_logs() {
    let mock = mock().await;
    let gw = gateway()
        .config(log_config(&mock.base_url()))
        .env(ENV_UPSTREAM_KEY_VAR, UPSTREAM_KEY)
        .arg("--detailed_debug")
        .start();
    gw.post("/v1/chat/completions", &chat("chat"))
        .send()
        .await
        .expect_status(200);
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("chat", true))
        .open()
        .await;
    read_sse(resp.into_body()).await;
    gw.post("/v1/chat/completions", &chat("chat"))
        .bearer("sk-it-wrong-key-xyz")
        .send()
        .await
        .expect_error(401);
    gw.get("/health").send().await.expect_status(200);
    // The upstream did receive the key, so its absence from the logs means something.
    assert!(
        mock.recorded()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {UPSTREAM_KEY}")))
    );

    let stderr = gw.stop().await;
    assert!(
        stderr.lines().count() > 5,
        "detailed debug logs expected:\n{stderr}"
    );
    for secret in [KEY, UPSTREAM_KEY, "sk-it-wrong-key-xyz"] {
        let hit = stderr.lines().find(|l| l.contains(secret));
        assert!(hit.is_none(), "secret {secret} in stderr: {hit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_json_lines() {
    let mock = mock().await;
    let gw = gateway()
        .config(log_config(&mock.base_url()))
        .env(ENV_UPSTREAM_KEY_VAR, UPSTREAM_KEY)
        .env("JSON_LOGS", "true")
        .start();
    let r = gw.post("/v1/chat/completions", &chat("chat")).send().await;
    let id = r.header("x-request-id").unwrap().to_string();
    gw.wait_request_log(1).await;
    let stderr = gw.stop().await;
    let mut found = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["message"] == "request completed" {
            found += 1;
            assert_eq!(v["request_id"], id.as_str(), "{v}");
            assert!(v["total_tokens"].as_u64().unwrap() > 0, "{v}");
            assert_eq!(v["status"], 200);
        }
    }
    assert_eq!(found, 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_non_streaming_request_is_recorded_once() {
    let mock = mock().await;
    let base = mock.base_url();
    let gw = gateway()
        .config(format!(
            "model_list:\n  - model_name: slowpoke\n    litellm_params:\n      model: \"openai/sp@latency_ms=3000\"\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\ngeneral_settings:\n  master_key: {KEY}\n"
        ))
        .start();
    for (client, id) in [
        (http1_client(), "it-abandoned-h1"),
        (h2c_client(), "it-abandoned-h2"),
    ] {
        let req = gw
            .post("/v1/chat/completions", &chat("slowpoke"))
            .header("x-request-id", id)
            .client(client);
        // The client gives up while the upstream is still thinking.
        let r = tokio::time::timeout(Duration::from_millis(400), req.send()).await;
        assert!(r.is_err(), "answered before the upstream latency");
    }
    assert!(
        eventually(Duration::from_secs(5), || mock.in_flight() == 0).await,
        "upstream requests not cancelled"
    );
    for id in ["it-abandoned-h1", "it-abandoned-h2"] {
        let ok = eventually(Duration::from_secs(5), || {
            line_for(&gw.request_log(), id).len() == 1
        })
        .await;
        assert!(ok, "abandoned request {id} not recorded:\n{}", gw.stderr());
        let f = fields(line_for(&gw.request_log(), id)[0]);
        assert_eq!(f["client_disconnected"], "true", "{f:?}");
    }
}
