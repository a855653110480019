//! The official OpenAI and Anthropic Python SDKs as clients: starts the mock upstream and the gateway, then runs
//! `scripts/sdk-test.sh` (pytest over `tests/python`). Skips when Python 3 with `venv` is missing, unless
//! `TOLLGATE_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn python_with_venv() -> Result<(), String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import venv, ensurepip, sys; assert sys.version_info >= (3, 9)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 without a usable venv module: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk() {
    let check = python_with_venv();
    if !service_available(
        "Python 3 with venv",
        check.is_ok(),
        check.as_ref().err().map_or("", String::as_str),
    ) {
        return;
    }
    let mock = mock().await;
    let base = mock.base_url();
    let root = base.trim_end_matches("/v1");
    let cfg = format!(
        r#"model_list:
  - model_name: sdk-chat
    litellm_params:
      model: openai/sdk-chat-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: sdk-embed
    litellm_params:
      model: openai/sdk-embed-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      mode: embedding
  - model_name: sdk-rate-limited
    litellm_params:
      model: "openai/limited@retry_after=1"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: sdk-claude
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
      api_base: {root}
      api_key: {UPSTREAM_KEY}
  - model_name: sdk-claude-tools
    litellm_params:
      model: "anthropic/claude-tools@tool_call=1,content={{\"city\":\"Paris\"}}"
      api_base: {root}
      api_key: {UPSTREAM_KEY}
  - model_name: sdk-upstream-500
    litellm_params:
      model: "openai/broken@status=500"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
general_settings:
  master_key: {KEY}
"#
    );
    let gw = gateway().config(cfg).start();

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{root}/scripts/sdk-test.sh"))
        .current_dir(root)
        .env("TOLLGATE_BASE_URL", &gw.url)
        .env("TOLLGATE_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("running scripts/sdk-test.sh");
    // The first run creates the virtualenv and installs the SDK from PyPI.
    let out = tokio::task::spawn_blocking(move || wait_output(child, Duration::from_secs(600)))
        .await
        .unwrap();
    let report = format!(
        "--- sdk-test.sh stdout\n{}\n--- sdk-test.sh stderr\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.status.success(),
        "the OpenAI SDK tests failed ({})\n{report}",
        out.status
    );
    let summary = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary\n{report}"));
    let passed: usize = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find_map(|(n, w)| {
            w.trim_end_matches(',')
                .eq("passed")
                .then(|| n.parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    assert!(
        passed >= 20,
        "expected at least 20 SDK tests to pass: {summary}\n{report}"
    );
    for bad in ["failed", "error", "skipped"] {
        assert!(!summary.contains(bad), "{summary}\n{report}");
    }
    println!("{summary}");
    gw.stop().await;
}
