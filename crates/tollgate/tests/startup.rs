//! Start-up: failures exit non-zero with a clear message before the listening line (config typo, missing
//! environment variable, port taken, database unreachable, half a TLS config), `--version`, `--help`,
//! `--validate_config`, and the precedence of flags, environment and config file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;

fn minimal_config() -> String {
    format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  master_key: {KEY}\n"
    )
}

#[track_caller]
fn assert_failed_before_listening(out: &Finished, code: Option<i32>) {
    assert!(
        !out.status.success(),
        "expected failure\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
    if code.is_some() {
        assert_eq!(
            out.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
    }
    assert!(
        !out.stdout.contains("listening"),
        "printed the listening line before failing:\n{}",
        out.stdout
    );
    assert!(!out.stderr.trim().is_empty(), "no message on stderr");
}

#[test]
fn config_typo_names_file_line_and_key() {
    let cfg = format!(
        r#"model_list:
  - model_name: m
    litellm_params:
      model: mock/m
general_settings:
  master_kye: {KEY}
"#
    );
    let out = gateway().config(cfg).run();
    assert_failed_before_listening(&out, Some(64));
    // general_settings.master_kye is on line 6.
    assert!(
        out.stderr.contains("config.yaml:6:"),
        "file and line: {}",
        out.stderr
    );
    assert!(out.stderr.contains("master_kye"), "key: {}", out.stderr);
    assert!(
        out.stderr.contains("master_key"),
        "a suggestion: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(KEY),
        "the value of a secret-looking key is not echoed: {}",
        out.stderr
    );

    // A typo in a top-level section name.
    let cfg = "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/x\nrouter_setings:\n  timeout: 3\n";
    let out = gateway().config(cfg).run();
    assert_failed_before_listening(&out, Some(64));
    assert!(
        out.stderr.contains("config.yaml:5:") && out.stderr.contains("router_setings"),
        "{}",
        out.stderr
    );

    // Invalid YAML.
    let out = gateway().config("model_list: [\n  - {").run();
    assert_failed_before_listening(&out, Some(64));
    assert!(out.stderr.contains("config.yaml"), "{}", out.stderr);

    // A config file that does not exist.
    let out = gateway()
        .args(["--config", "/nonexistent/tollgate-it/config.yaml"])
        .run();
    assert_failed_before_listening(&out, Some(64));
    assert!(
        out.stderr.contains("/nonexistent/tollgate-it/config.yaml"),
        "{}",
        out.stderr
    );

    // --validate_config reports the same problem with the same code.
    let out = gateway()
        .config("general_settings:\n  master_kye: x\n")
        .arg("--validate_config")
        .run();
    assert_eq!(out.code(), Some(64), "{}", out.stderr);
}

#[test]
fn unknown_provider_prefix_fails_with_its_suggestion() {
    let cfg = "model_list:\n  - model_name: m\n    litellm_params:\n      model: opnai/gpt-4o\n      api_base: http://127.0.0.1:9/v1\n";
    let out = gateway().config(cfg).run();
    assert_failed_before_listening(&out, Some(64));
    assert!(
        out.stderr.contains("config.yaml:4:") && out.stderr.contains("did you mean `openai`"),
        "the config's hint is shown with the error: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("provider `opnai` is not supported"),
        "{}",
        out.stderr
    );
}

#[test]
fn unresolvable_environment_reference_is_a_config_error() {
    let cfg = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_base: http://127.0.0.1:1/v1\n      api_key: os.environ/TOLLGATE_IT_SURELY_UNSET_VAR\n";
    let out = gateway().config(cfg).run();
    assert_failed_before_listening(&out, Some(64));
    assert!(
        out.stderr.contains("TOLLGATE_IT_SURELY_UNSET_VAR"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("config.yaml:6:"), "{}", out.stderr);

    // Set, it resolves.
    let out = gateway()
        .config(cfg)
        .env("TOLLGATE_IT_SURELY_UNSET_VAR", "sk-from-env")
        .arg("--validate_config")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        !out.stdout.contains("sk-from-env"),
        "the summary shows a secret: {}",
        out.stdout
    );
}

#[test]
fn port_taken_fails_and_never_picks_another_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = gateway()
        .config(minimal_config())
        .no_default_port()
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .run();
    assert_failed_before_listening(&out, Some(71));
    assert!(out.stderr.contains(&port.to_string()), "{}", out.stderr);
    assert!(out.stderr.contains("already in use"), "{}", out.stderr);
    drop(taken);
}

#[test]
fn unreachable_database_fails_start_up() {
    let closed = free_port();
    let mut cfg = minimal_config();
    cfg.push_str(&format!(
        "  database_url: postgres://tguser:tg-db-password@127.0.0.1:{closed}/tollgate\n"
    ));
    let started = Instant::now();
    let out = gateway().config(cfg).run();
    assert_failed_before_listening(&out, Some(69));
    assert!(out.stderr.contains("database"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{closed}")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("tg-db-password"),
        "the password is shown: {}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn unreachable_database_from_the_environment_fails_start_up() {
    let closed = free_port();
    let out = gateway()
        .config(minimal_config())
        .env(
            "DATABASE_URL",
            format!("postgres://tguser:tg-db-password@127.0.0.1:{closed}/tollgate"),
        )
        .run();
    assert_failed_before_listening(&out, Some(69));
}

#[test]
fn half_a_tls_config_is_a_config_error() {
    let b = gateway().config(minimal_config());
    let key = b.dir().join("key.pem");
    std::fs::write(&key, "not really a key").unwrap();
    let out = b.args(["--ssl_keyfile_path", key.to_str().unwrap()]).run();
    assert_failed_before_listening(&out, Some(64));
    assert!(
        out.stderr.contains("ssl_certfile_path") || out.stderr.contains("SSL_CERTFILE_PATH"),
        "{}",
        out.stderr
    );

    let b = gateway().config(minimal_config());
    let cert = b.dir().join("cert.pem");
    std::fs::write(&cert, "x").unwrap();
    let out = b.env("SSL_CERTFILE_PATH", cert.to_str().unwrap()).run();
    assert_failed_before_listening(&out, Some(64));
    assert!(out.stderr.contains("SSL_CERTFILE_PATH"), "{}", out.stderr);

    // Both given but not PEM: still refused before binding, with the config exit code.
    let b = gateway().config(minimal_config());
    let cert = b.dir().join("cert.pem");
    let key = b.dir().join("key.pem");
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "y").unwrap();
    let out = b
        .args([
            "--ssl_certfile_path",
            cert.to_str().unwrap(),
            "--ssl_keyfile_path",
            key.to_str().unwrap(),
        ])
        .run();
    assert_failed_before_listening(&out, Some(64));
    assert!(out.stderr.contains("TLS"), "{}", out.stderr);
}

#[test]
fn version_and_help() {
    let want = format!("tollgate {}", env!("CARGO_PKG_VERSION"));
    for flag in ["--version", "-v"] {
        let out = gateway().no_default_port().arg(flag).run();
        assert_eq!(out.code(), Some(0), "{flag}: {}", out.stderr);
        assert_eq!(out.stdout.trim(), want, "{flag}");
    }
    let out = gateway().no_default_port().arg("--help").run();
    assert_eq!(out.code(), Some(0));
    for flag in [
        "--config",
        "--host",
        "--port",
        "--num_workers",
        "--ssl_keyfile_path",
        "--ssl_certfile_path",
        "--keepalive_timeout",
        "--max_requests_before_restart",
        "--detailed_debug",
        "--health",
        "--test",
        "--validate_config",
        "--version",
    ] {
        assert!(
            out.stdout.contains(flag),
            "--help does not mention {flag}:\n{}",
            out.stdout
        );
    }
    let out = gateway().no_default_port().arg("--no-such-flag").run();
    assert_eq!(out.code(), Some(2), "clap usage error");
    assert!(out.stderr.contains("--no-such-flag"));
}

#[test]
fn validate_config_prints_a_summary_without_serving() {
    let cfg = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_base: http://127.0.0.1:1/v1\n      api_key: sk-it-summary-secret\ngeneral_settings:\n  master_key: {KEY}\n"
    );
    let out = gateway().config(cfg).arg("--validate_config").run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains('m'), "{}", out.stdout);
    assert!(!out.stdout.contains("listening"));
    for secret in ["sk-it-summary-secret", KEY] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "secret in summary: {}",
            out.stdout
        );
    }
}

// -------------------------------------------------------------------------------------------------- precedence

async fn listening_port(g: GatewayBuilder) -> u16 {
    let gw = g.start();
    let port = gw.addr.port();
    let r = gw.anon(Method::GET, "/health/liveliness").send().await;
    r.expect_status(200);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_precedence_flag_over_env() {
    let (env_port, flag_port, prefixed_port) = (free_port(), free_port(), free_port());
    let base = || {
        gateway()
            .config(minimal_config())
            .no_default_port()
            .args(["--host", "127.0.0.1"])
    };

    // PORT alone.
    assert_eq!(
        listening_port(base().env("PORT", env_port.to_string())).await,
        env_port
    );
    // --port beats PORT.
    let g = base()
        .env("PORT", env_port.to_string())
        .args(["--port", &flag_port.to_string()]);
    assert_eq!(listening_port(g).await, flag_port);
    // TOLLGATE_PORT beats PORT.
    let g = base()
        .env("PORT", env_port.to_string())
        .env("TOLLGATE_PORT", prefixed_port.to_string());
    assert_eq!(listening_port(g).await, prefixed_port);
    // A Kubernetes service link in TOLLGATE_PORT (`tcp://...`) is not a port: PORT is used.
    let g = base()
        .env("PORT", env_port.to_string())
        .env("TOLLGATE_PORT", "tcp://10.0.0.1:4000");
    assert_eq!(listening_port(g).await, env_port);
    // A bad PORT is a config error, not a silent default.
    let out = base().env("PORT", "not-a-port").run();
    assert_failed_before_listening(&out, Some(64));
    assert!(out.stderr.contains("PORT"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_precedence_env_over_file() {
    let file_key = "sk-it-file-key";
    let cfg = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  master_key: {file_key}\n"
    );

    // File only.
    let gw = gateway().config(cfg.clone()).start();
    gw.get("/v1/models")
        .bearer(file_key)
        .send()
        .await
        .expect_status(200);
    drop(gw);

    // LITELLM_MASTER_KEY beats the file.
    let gw = gateway()
        .config(cfg.clone())
        .env("LITELLM_MASTER_KEY", "sk-it-env-key")
        .start();
    gw.get("/v1/models")
        .bearer("sk-it-env-key")
        .send()
        .await
        .expect_status(200);
    gw.get("/v1/models")
        .bearer(file_key)
        .send()
        .await
        .expect_error(401);
    drop(gw);

    // TOLLGATE_MASTER_KEY beats LITELLM_MASTER_KEY.
    let gw = gateway()
        .config(cfg.clone())
        .env("LITELLM_MASTER_KEY", "sk-it-env-key")
        .env("TOLLGATE_MASTER_KEY", "sk-it-prefixed-key")
        .start();
    gw.get("/v1/models")
        .bearer("sk-it-prefixed-key")
        .send()
        .await
        .expect_status(200);
    gw.get("/v1/models")
        .bearer("sk-it-env-key")
        .send()
        .await
        .expect_error(401);
    gw.get("/v1/models")
        .bearer(file_key)
        .send()
        .await
        .expect_error(401);
    drop(gw);

    // An empty variable counts as unset.
    let gw = gateway().config(cfg).env("LITELLM_MASTER_KEY", "").start();
    gw.get("/v1/models")
        .bearer(file_key)
        .send()
        .await
        .expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_path_from_the_environment() {
    let dir = TempDir::new();
    let path = dir.write("env-config.yaml", minimal_config());
    let other = dir.write(
        "other.yaml",
        "model_list:\n  - model_name: other\n    litellm_params:\n      model: mock/o\n",
    );

    let gw = gateway()
        .env("CONFIG_FILE_PATH", path.to_str().unwrap())
        .start();
    let ids = gw.get("/v1/models").send().await.json()["data"][0]["id"].clone();
    assert_eq!(ids, "m");
    drop(gw);

    // TOLLGATE_CONFIG_FILE_PATH beats CONFIG_FILE_PATH.
    let gw = gateway()
        .env("CONFIG_FILE_PATH", other.to_str().unwrap())
        .env("TOLLGATE_CONFIG_FILE_PATH", path.to_str().unwrap())
        .start();
    let r = gw.get("/v1/models").send().await;
    assert_eq!(r.json()["data"][0]["id"], "m");
    drop(gw);

    // --config beats both.
    let gw = gateway()
        .env("TOLLGATE_CONFIG_FILE_PATH", path.to_str().unwrap())
        .args(["--config", other.to_str().unwrap()])
        .start();
    let r = gw.anon(Method::GET, "/v1/models").send().await;
    assert_eq!(r.json()["data"][0]["id"], "other", "{}", r.text());
}
