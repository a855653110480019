//! Health routes (liveness and readiness without auth, `/health` with auth probing every deployment) and the
//! client commands `--health` and `--test` against a running gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Method;
use serde_json::Value;

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
