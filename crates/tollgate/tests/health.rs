//! Health routes (liveness and readiness without auth, `/health` with auth probing every deployment), the
//! background health checks (`/health` from their cache, routing around unhealthy deployments, recovery,
//! `?model=` probing fresh) and the client commands `--health` and `--test` against a running gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;
use serde_json::Value;
use tollgate_mock::MockServer;

fn health_config(base: &str, with_broken: bool) -> String {
    let mut s = format!(
        r#"model_list:
  - model_name: good-chat
    litellm_params:
      model: openai/good-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: good-embed
    litellm_params:
      model: openai/embed-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      mode: embedding
"#
    );
    if with_broken {
        s.push_str(&format!(
            r#"  - model_name: broken
    litellm_params:
      model: openai/nobody-home
      api_base: {}
      api_key: sk-it-broken-secret-77
"#,
            closed_base_url()
        ));
    }
    s.push_str(&format!("general_settings:\n  master_key: {KEY}\n"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness_need_no_auth() {
    let mock = mock().await;
    let gw = gateway()
        .config(health_config(&mock.base_url(), false))
        .start();

    for path in ["/health/liveliness", "/health/liveness"] {
        let r = gw.anon(Method::GET, path).send().await;
        r.expect_status(200);
        assert_eq!(r.json(), Value::String("I'm alive!".into()), "{path}");
    }
    let r = gw.anon(Method::GET, "/health/readiness").send().await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["status"], "healthy", "{v}");
    // The embedded SQLite database is always there.
    assert_eq!(v["db"], "connected", "{v}");
    assert_eq!(v["db_kind"], "sqlite", "{v}");
    assert!(v["tollgate_version"].is_string());

    // None of them probes the upstream.
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_connected_postgres() {
    if !postgres_available() {
        return;
    }
    let mock = mock().await;
    let mut cfg = health_config(&mock.base_url(), false);
    cfg.push_str(&format!("  database_url: {POSTGRES_URL}\n"));
    let gw = gateway().config(cfg).start();
    let r = gw.anon(Method::GET, "/health/readiness").send().await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["db"], "connected", "{v}");
    assert_eq!(v["status"], "healthy");
    assert!(
        !r.text().contains("postgres://"),
        "the database URL is not shown: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_every_deployment_and_hides_keys() {
    let mock = mock().await;
    let gw = gateway()
        .config(health_config(&mock.base_url(), true))
        .start();

    gw.anon(Method::GET, "/health")
        .send()
        .await
        .expect_error(401);

    let r = gw.get("/health").send().await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["healthy_count"], 2, "{v}");
    assert_eq!(v["unhealthy_count"], 1, "{v}");
    let names = |k: &str| -> Vec<String> {
        let mut n: Vec<String> = v[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["model_name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("healthy_endpoints"), ["good-chat", "good-embed"]);
    assert_eq!(names("unhealthy_endpoints"), ["broken"]);
    let broken = &v["unhealthy_endpoints"][0];
    assert!(
        broken["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{broken}"
    );
    let text = r.text();
    for secret in [UPSTREAM_KEY, "sk-it-broken-secret-77", KEY] {
        assert!(!text.contains(secret), "/health shows a key: {text}");
    }

    // The probes went to the upstream with the mode's endpoint.
    let paths: Vec<String> = mock.recorded().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/v1/chat/completions".to_string()),
        "{paths:?}"
    );
    assert!(paths.contains(&"/v1/embeddings".to_string()), "{paths:?}");

    // One model only.
    let r = gw.get("/health?model=good-chat").send().await;
    let v = r.json();
    assert_eq!(
        (v["healthy_count"].as_u64(), v["unhealthy_count"].as_u64()),
        (Some(1), Some(0)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_command_exit_code_follows_the_deployments() {
    let mock = mock().await;
    let healthy_cfg = health_config(&mock.base_url(), false);
    let gw = gateway().config(healthy_cfg.clone()).start();
    let port = gw.addr.port().to_string();
    let out = gateway()
        .config(healthy_cfg)
        .no_default_port()
        .args(["--health", "--host", "127.0.0.1", "--port", &port])
        .run_async()
        .await;
    assert_eq!(
        out.code(),
        Some(0),
        "--health on a healthy gateway\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("healthy_count"), "{}", out.stdout);

    let broken_cfg = health_config(&mock.base_url(), true);
    let gw2 = gateway().config(broken_cfg.clone()).start();
    let port = gw2.addr.port().to_string();
    let out = gateway()
        .config(broken_cfg)
        .no_default_port()
        .args(["--health", "--host", "127.0.0.1", "--port", &port])
        .run_async()
        .await;
    assert_eq!(
        out.code(),
        Some(1),
        "--health with an unhealthy deployment\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("broken"), "{}", out.stdout);
    assert!(!out.stdout.contains("sk-it-broken-secret-77"));

    // Key from the environment instead of the config; a wrong key is a failure.
    let port = gw.addr.port().to_string();
    let out = gateway()
        .no_default_port()
        .env("LITELLM_MASTER_KEY", KEY)
        .args(["--health", "--port", &port])
        .run_async()
        .await;
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let out = gateway()
        .no_default_port()
        .env("LITELLM_MASTER_KEY", "sk-wrong")
        .args(["--health", "--port", &port])
        .run_async()
        .await;
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);

    // Nothing listening: failure with a message.
    let out = gateway()
        .no_default_port()
        .args(["--health", "--port", &free_port().to_string()])
        .run_async()
        .await;
    assert_eq!(out.code(), Some(1));
    assert!(!out.stderr.trim().is_empty());
    drop(gw2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_runs_three_checks() {
    let mock = mock().await;
    let cfg = format!(
        r#"model_list:
  - model_name: test-target
    litellm_params:
      model: openai/test-upstream
      api_base: {}
      api_key: {UPSTREAM_KEY}
general_settings:
  master_key: {KEY}
"#,
        mock.base_url()
    );
    let gw = gateway().config(cfg.clone()).start();
    let port = gw.addr.port().to_string();
    let out = gateway()
        .config(cfg)
        .no_default_port()
        .args(["--test", "--host", "127.0.0.1", "--port", &port])
        .run_async()
        .await;
    assert_eq!(
        out.code(),
        Some(0),
        "--test\n{}\n{}",
        out.stdout,
        out.stderr
    );
    for check in [
        "ok    chat completion",
        "ok    streaming chat completion",
        "ok    completion",
    ] {
        assert!(
            out.stdout.contains(check),
            "missing `{check}` in:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("test-target"), "{}", out.stdout);
    let paths: Vec<String> = mock.recorded().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/completions"
        ]
    );

    // Against a failing model it reports and exits 1.
    let out = gateway()
        .no_default_port()
        .env("LITELLM_MASTER_KEY", KEY)
        .args(["--test", "--port", &port, "--model", "no-such-model"])
        .run_async()
        .await;
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_api_base_are_never_shown() {
    let mock = mock().await;
    let base = mock
        .base_url()
        .replace("http://", "http://svcuser:sk-it-url-password@");
    let cfg = format!(
        "model_list:\n  - model_name: creds\n    litellm_params:\n      model: openai/creds-up\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\ngeneral_settings:\n  master_key: {KEY}\n"
    );
    let gw = gateway().config(cfg).start();
    let r = gw
        .post("/v1/chat/completions", &common::chat("creds"))
        .send()
        .await;
    r.expect_status(200);
    let shown = r
        .header("x-litellm-model-api-base")
        .unwrap_or_default()
        .to_string();
    assert!(
        !shown.contains("sk-it-url-password"),
        "x-litellm-model-api-base shows a password: {shown}"
    );
    assert!(shown.contains(&mock.addr().to_string()), "{shown}");
    let h = gw.get("/health").send().await;
    assert_eq!(h.json()["healthy_count"], 1, "{}", h.text());
    assert!(
        !h.text().contains("sk-it-url-password"),
        "/health shows a password: {}",
        h.text()
    );
    let stderr = gw.stop().await;
    assert!(!stderr.contains("sk-it-url-password"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------------------
// Health state: background checks, the cache, routing around unhealthy deployments

/// One model group `hc` with deployment `dep-a` on `a` and `dep-b` on `b`; `general` is appended to
/// `general_settings`.
fn pair_config(a: &MockServer, b: &MockServer, general: &str) -> String {
    format!(
        r#"model_list:
  - model_name: hc
    litellm_params:
      model: openai/hc-up
      api_base: {}
      api_key: {UPSTREAM_KEY}
    model_info:
      id: dep-a
  - model_name: hc
    litellm_params:
      model: openai/hc-up
      api_base: {}
      api_key: {UPSTREAM_KEY}
    model_info:
      id: dep-b
general_settings:
  master_key: {KEY}
{general}"#,
        a.base_url(),
        b.base_url()
    )
}

const BACKGROUND_FAST: &str = "  background_health_checks: true\n  health_check_interval: 1\n";
const BACKGROUND_SLOW: &str = "  background_health_checks: true\n  health_check_interval: 3600\n";

/// Requests the test itself sent to a mock (the health probes say "ping", `chat()` does not).
fn client_requests(mock: &MockServer) -> usize {
    mock.recorded()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("Say hello to the gateway"))
        .count()
}

/// The `model_id`s listed under `key` (`healthy_endpoints` / `unhealthy_endpoints`), sorted.
fn ids(v: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {v}"))
        .iter()
        .map(|e| e["model_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn health_json(gw: &Gateway, path: &str) -> Value {
    let r = gw.get(path).send().await;
    r.expect_status(200);
    r.json()
}

/// Poll `GET path` until `f` holds on its body (or panic with the last body after 20 s).
async fn health_until(gw: &Gateway, path: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = health_json(gw, path).await;
        if f(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; last /health: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn both_healthy(v: &Value) -> bool {
    ids(v, "healthy_endpoints") == ["dep-a", "dep-b"] && v["unhealthy_count"] == 0
}

fn b_unhealthy(v: &Value) -> bool {
    ids(v, "healthy_endpoints") == ["dep-a"] && ids(v, "unhealthy_endpoints") == ["dep-b"]
}

/// `n` chat requests to `hc`: every one answered by `dep-a`, none reaching mock `b`.
async fn traffic_avoids_b(gw: &Gateway, b: &MockServer, n: usize) {
    let before = client_requests(b);
    for _ in 0..n {
        let r = gw.post("/v1/chat/completions", &chat("hc")).send().await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-a"));
    }
    assert_eq!(
        client_requests(b),
        before,
        "a request went to the unhealthy deployment"
    );
}

/// Chat requests to `hc` until one is answered by `dep-b` (simple-shuffle: 1/2 each; 2^-60 to miss).
async fn traffic_reaches_b(gw: &Gateway, b: &MockServer) {
    let before = client_requests(b);
    for _ in 0..60 {
        let r = gw.post("/v1/chat/completions", &chat("hc")).send().await;
        r.expect_status(200);
        if r.header("x-litellm-model-id") == Some("dep-b") {
            assert!(client_requests(b) > before);
            return;
        }
    }
    panic!("the recovered deployment got no traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_checks_route_around_a_failing_deployment_until_it_recovers() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway()
        .config(pair_config(&a, &b, BACKGROUND_FAST))
        .start();

    // The first round runs at start-up.
    let v = health_until(&gw, "/health", "both healthy", both_healthy).await;
    assert!(
        v["healthy_endpoints"][0]["last_checked_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );

    b.set_faults(&[("status", "503")]).unwrap();
    let v = health_until(&gw, "/health", "dep-b unhealthy", b_unhealthy).await;
    let err = v["unhealthy_endpoints"][0]["error"].as_str().unwrap();
    assert!(err.contains("503"), "{v}");
    traffic_avoids_b(&gw, &b, 10).await;

    b.clear_faults();
    health_until(&gw, "/health", "dep-b recovered", both_healthy).await;
    traffic_reaches_b(&gw, &b).await;

    let stderr = gw.stop().await;
    assert!(
        stderr.contains("failed its health check") && stderr.contains("dep-b"),
        "{stderr}"
    );
    assert!(stderr.contains("passed its health check again"), "{stderr}");
    assert!(!stderr.contains(UPSTREAM_KEY), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_from_the_cache_between_rounds() {
    let (a, b, stuck) = (mock().await, mock().await, mock().await);
    // A deployment whose probe never answers: not checked yet, so in neither list.
    stuck.set_faults(&[("hang", "1")]).unwrap();
    let mut cfg = pair_config(&a, &b, BACKGROUND_SLOW);
    cfg = cfg.replace(
        "general_settings:",
        &format!(
            "  - model_name: hc-stuck\n    litellm_params:\n      model: openai/stuck\n      api_base: {}\n      api_key: {UPSTREAM_KEY}\n      health_check_timeout: 600\n    model_info:\n      id: dep-stuck\ngeneral_settings:",
            stuck.base_url()
        ),
    );
    let gw = gateway().config(cfg).start();

    let first = health_until(&gw, "/health", "both healthy", both_healthy).await;
    assert!(
        eventually(Duration::from_secs(10), || stuck.in_flight() == 1).await,
        "the stuck probe never arrived"
    );
    let counts = || (a.request_count(), b.request_count(), stuck.request_count());
    let before = counts();
    assert_eq!(before, (1, 1, 1), "one probe each");
    for _ in 0..5 {
        let v = health_json(&gw, "/health").await;
        assert_eq!(v, first, "the cache changed without a round");
        assert!(!v.to_string().contains("dep-stuck"), "{v}");
    }
    assert_eq!(counts(), before, "GET /health probed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_for_one_model_probes_fresh_and_updates_the_cache() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway()
        .config(pair_config(&a, &b, BACKGROUND_SLOW))
        .start();
    health_until(&gw, "/health", "both healthy", both_healthy).await;

    b.set_faults(&[("status", "503")]).unwrap();
    // The cache does not know yet (the next round is an hour away)...
    assert!(both_healthy(&health_json(&gw, "/health").await));
    // ... `?model=` probes now ...
    let before = (a.request_count(), b.request_count());
    let v = health_json(&gw, "/health?model=hc").await;
    assert!(b_unhealthy(&v), "{v}");
    assert_eq!(
        (a.request_count(), b.request_count()),
        (before.0 + 1, before.1 + 1)
    );
    // ... and records what it saw: the cache and the router know.
    assert!(b_unhealthy(&health_json(&gw, "/health").await));
    traffic_avoids_b(&gw, &b, 6).await;

    b.clear_faults();
    assert!(both_healthy(&health_json(&gw, "/health?model=hc").await));
    traffic_reaches_b(&gw, &b).await;

    let v = health_json(&gw, "/health?model=no-such-model").await;
    assert_eq!(
        (v["healthy_count"].as_u64(), v["unhealthy_count"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_background_checks_health_probes_and_routing_learns_from_it() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway().config(pair_config(&a, &b, "")).start();

    b.set_faults(&[("status", "503")]).unwrap();
    let before = b.request_count();
    let v = health_json(&gw, "/health").await;
    assert!(b_unhealthy(&v), "{v}");
    assert_eq!(b.request_count(), before + 1, "probed on request");
    traffic_avoids_b(&gw, &b, 6).await;

    b.clear_faults();
    assert!(both_healthy(&health_json(&gw, "/health").await));
    traffic_reaches_b(&gw, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translated_providers_are_probed_in_their_own_wire_format() {
    let mock = mock().await;
    let root = mock.base_url().trim_end_matches("/v1").to_string();
    let cfg = format!(
        r#"model_list:
  - model_name: claude
    litellm_params: {{ model: anthropic/claude-sonnet-4-5, api_base: "{root}", api_key: {UPSTREAM_KEY} }}
  - model_name: gemini
    litellm_params: {{ model: gemini/gemini-2.0-flash, api_base: "{root}", api_key: {UPSTREAM_KEY} }}
  - model_name: titan
    litellm_params: {{ model: bedrock/amazon.titan-embed-text-v2:0, api_base: "{root}", aws_access_key_id: {UPSTREAM_KEY}, aws_secret_access_key: {UPSTREAM_AWS_SECRET}, aws_region_name: us-east-1 }}
    model_info: {{ mode: embedding }}
  - model_name: rerank
    litellm_params: {{ model: cohere/rerank-v3.5, api_base: "{root}", api_key: {UPSTREAM_KEY} }}
    model_info: {{ mode: rerank }}
  - model_name: cohere-embed
    litellm_params: {{ model: cohere/embed-english-v3.0, api_base: "{root}", api_key: {UPSTREAM_KEY} }}
general_settings:
  master_key: {KEY}
"#
    );
    let gw = gateway().config(cfg).start();
    let v = gw.get("/health").send().await.json();
    assert_eq!(v["unhealthy_count"], 0, "{v}");
    assert_eq!(v["healthy_count"], 5, "{v}");
    let paths: Vec<String> = mock.recorded().iter().map(|r| r.path.clone()).collect();
    for want in [
        "/v1/messages",
        ":generateContent",
        "/invoke",
        "/v2/rerank",
        "/v2/embed",
    ] {
        assert!(paths.iter().any(|p| p.contains(want)), "{want}: {paths:?}");
    }
    gw.stop().await;
}
