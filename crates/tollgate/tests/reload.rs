//! Hot config reload (SIGHUP and `POST /config/reload`) and rolling restarts on one port (SO_REUSEPORT):
//! a good file is swapped in (new groups routable, removed ones gone), a bad one changes nothing and is
//! reported with file:line, reloads under load fail no request, only admins may reload, and a second gateway
//! bound to the same port keeps serving when the first one is stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// How long anything a test waits for may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// One OpenAI deployment per group on the mock; the upstream model carries a latency knob.
fn config(base: &str, groups: &[&str]) -> String {
    let models: Vec<(String, String)> = groups
        .iter()
        .map(|g| (g.to_string(), format!("{g}-up@latency_ms=20")))
        .collect();
    let refs: Vec<(&str, &str)> = models
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    config_for(base, &refs)
}

fn rewrite(gw: &Gateway, yaml: &str) {
    std::fs::write(gw.dir().join("config.yaml"), yaml).unwrap();
}

fn sighup(gw: &Gateway) {
    let st = Command::new("kill")
        .arg("-HUP")
        .arg(gw.pid().to_string())
        .status()
        .expect("running kill");
    assert!(st.success(), "kill -HUP failed");
}

async fn chat_status(gw: &Gateway, model: &str) -> u16 {
    gw.post("/v1/chat/completions", &chat(model))
        .send()
        .await
        .status
        .as_u16()
}

/// Poll until `model` answers `status` (a reload by signal is asynchronous).
async fn wait_status(gw: &Gateway, model: &str, status: u16) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = chat_status(gw, model).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{model}` still answers {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until stderr has `n` lines containing `needle`.
async fn wait_log(gw: &Gateway, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = gw.stderr();
        if s.lines().filter(|l| l.contains(needle)).count() >= n {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no {n}x `{needle}` in the log:\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_file_is_swapped_in_by_sighup_and_by_post() {
    let mock = mock().await;
    let base = mock.base_url();
    let gw = gateway().config(config(&base, &["alpha", "beta"])).start();
    assert_eq!(chat_status(&gw, "alpha").await, 200);
    assert_eq!(chat_status(&gw, "beta").await, 200);
    assert_eq!(chat_status(&gw, "gamma").await, 400);

    // SIGHUP: gamma appears, beta goes.
    rewrite(&gw, &config(&base, &["alpha", "gamma"]));
    sighup(&gw);
    wait_status(&gw, "gamma", 200).await;
    let e = gw
        .post("/v1/chat/completions", &chat("beta"))
        .send()
        .await
        .expect_error(400);
    assert_eq!(e["code"], "model_not_found", "{e}");
    assert_eq!(chat_status(&gw, "alpha").await, 200);
    let log = wait_log(&gw, "config reloaded", 1).await;
    assert!(log.contains("SIGHUP received"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("config reloaded") && l.contains("deployments=2")),
        "{log}"
    );

    // POST: the swap is done when the answer comes.
    rewrite(&gw, &config(&base, &["alpha", "beta", "delta"]));
    let r = gw.post("/config/reload", &json!({})).send().await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["status"], "reloaded", "{v}");
    assert_eq!(v["deployments"], 3, "{v}");
    assert_eq!(v["model_groups"], json!(["alpha", "beta", "delta"]), "{v}");
    assert_eq!(v["restart_required"], json!([]), "{v}");
    assert_eq!(chat_status(&gw, "delta").await, 200);
    assert_eq!(chat_status(&gw, "beta").await, 200);
    gw.post("/v1/chat/completions", &chat("gamma"))
        .send()
        .await
        .expect_error(400);
    let models = gw.get("/v1/models").send().await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"delta") && !ids.contains(&"gamma"),
        "{models}"
    );

    // A setting that needs a restart is applied to nothing, and said so.
    let mut moved = config(&base, &["alpha"]);
    moved.push_str("  tollgate_spend_batch_size: 7\n");
    rewrite(&gw, &moved);
    let v = gw.post("/config/reload", &json!({})).send().await.json();
    assert_eq!(
        v["restart_required"],
        json!(["general_settings.tollgate_spend_batch_size"]),
        "{v}"
    );
    let log = wait_log(&gw, "only takes effect after a restart", 1).await;
    assert!(log.contains("tollgate_spend_batch_size"), "{log}");
    assert!(!log.contains(KEY), "the master key is logged: {log}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_old_config_and_is_reported_with_file_and_line() {
    let mock = mock().await;
    let base = mock.base_url();
    let good = config(&base, &["alpha"]);
    let gw = gateway().config(good.clone()).start();

    // A typo in a key: `master_kye` is on line 8 (after `model_list`, a 5-line deployment and
    // `general_settings:`).
    let typo = good.replace("  master_key:", "  master_kye:");
    assert!(
        typo.lines()
            .nth(7)
            .unwrap()
            .trim_start()
            .starts_with("master_kye:")
    );
    rewrite(&gw, &typo);
    let e = gw
        .post("/config/reload", &json!({}))
        .send()
        .await
        .expect_error(400);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("config.yaml:8:"), "{msg}");
    assert!(msg.contains("master_kye"), "{msg}");
    assert!(msg.contains("running config is unchanged"), "{msg}");
    assert!(!msg.contains(KEY), "the master key is echoed: {msg}");
    assert_eq!(chat_status(&gw, "alpha").await, 200);

    // A value of the wrong type, on line 6.
    let wrong_type = good.replacen("      api_key:", "      rpm: lots\n      api_key:", 1);
    rewrite(&gw, &wrong_type);
    let e = gw
        .post("/config/reload", &json!({}))
        .send()
        .await
        .expect_error(400);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("config.yaml:6:") && msg.contains("rpm"),
        "{msg}"
    );

    // A file that loads but names a provider this build cannot serve (adapter construction fails).
    let unsupported = good.replace("openai/alpha-up", "vertex_ai/alpha-up");
    rewrite(&gw, &unsupported);
    let e = gw
        .post("/config/reload", &json!({}))
        .send()
        .await
        .expect_error(400);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("alpha") && msg.contains("vertex_ai"), "{msg}");

    // By signal: the same rejection goes to the log, and the process keeps serving.
    rewrite(&gw, &typo);
    sighup(&gw);
    let log = wait_log(&gw, "config reload rejected", 4).await;
    assert!(
        log.lines()
            .filter(|l| l.contains("config reload rejected"))
            .any(|l| l.contains("config.yaml:8:")),
        "{log}"
    );
    assert_eq!(chat_status(&gw, "alpha").await, 200);
    // The old master key still works, no other key does.
    gw.post("/v1/chat/completions", &chat("alpha"))
        .bearer("sk-not-the-key")
        .send()
        .await
        .expect_error(401);
    assert!(!gw.stderr().contains("config reloaded"));

    // Fixed: accepted again.
    rewrite(&gw, &config(&base, &["alpha", "beta"]));
    gw.post("/config/reload", &json!({}))
        .send()
        .await
        .expect_status(200);
    assert_eq!(chat_status(&gw, "beta").await, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_reload_and_the_master_key_can_change() {
    let mock = mock().await;
    let base = mock.base_url();
    let gw = gateway().config(config(&base, &["alpha"])).start();

    let r = gw.post("/key/generate", &json!({})).send().await;
    r.expect_status(200);
    let user_key = r.json()["key"].as_str().unwrap().to_string();
    let e = gw
        .post("/config/reload", &json!({}))
        .bearer(&user_key)
        .send()
        .await
        .expect_error(403);
    assert_eq!(e["type"], "permission_error", "{e}");
    gw.anon(http::Method::POST, "/config/reload")
        .send()
        .await
        .expect_error(401);

    let r = gw
        .post(
            "/user/new",
            &json!({"user_id": "root", "user_role": "proxy_admin"}),
        )
        .send()
        .await;
    r.expect_status(200);
    let admin_key = r.json()["key"].as_str().unwrap().to_string();
    gw.post("/config/reload", &json!({}))
        .bearer(&admin_key)
        .send()
        .await
        .expect_status(200);

    // The master key is read per request from the runtime: a reload changes it.
    let new_master = "sk-it-master-rotated-77";
    rewrite(&gw, &config(&base, &["alpha"]).replace(KEY, new_master));
    let v = gw.post("/config/reload", &json!({})).send().await.json();
    assert_eq!(v["restart_required"], json!([]), "{v}");
    gw.post("/v1/chat/completions", &chat("alpha"))
        .send()
        .await
        .expect_error(401);
    gw.post("/v1/chat/completions", &chat("alpha"))
        .bearer(new_master)
        .send()
        .await
        .expect_status(200);
    // Virtual keys are unaffected.
    gw.post("/v1/chat/completions", &chat("alpha"))
        .bearer(&user_key)
        .send()
        .await
        .expect_status(200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_config_file_there_is_nothing_to_reload() {
    let gw = gateway()
        .args(["--model", "mock/solo"])
        .env("LITELLM_MASTER_KEY", KEY)
        .start();
    let e = gw
        .post("/config/reload", &json!({}))
        .send()
        .await
        .expect_error(400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no config file to reload"),
        "{e}"
    );
    sighup(&gw);
    wait_log(&gw, "no config file to reload", 1).await;
    assert_eq!(chat_status(&gw, "mock/solo").await, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_fail_no_request() {
    let mock = mock().await;
    let base = mock.base_url();
    // Both configs serve `alpha`, from different deployments (different upstream models, so different
    // ids): requests in flight during a swap finish on the runtime they started with.
    let a = format!(
        "{}router_settings:\n  num_retries: 0\n",
        config_for(
            &base,
            &[("alpha", "alpha-a@latency_ms=50"), ("beta", "beta-up")]
        )
    );
    let b = format!(
        "{}router_settings:\n  num_retries: 0\n",
        config_for(
            &base,
            &[("alpha", "alpha-b@latency_ms=50"), ("gamma", "gamma-up")]
        )
    );
    let gw = gateway().config(a.clone()).start();
    let url = gw.url.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (stop, done, failures, url) =
            (stop.clone(), done.clone(), failures.clone(), url.clone());
        tasks.spawn(async move {
            let client = http1_client();
            while !stop.load(Ordering::Relaxed) {
                let r = Req::new(http::Method::POST, format!("{url}/v1/chat/completions"))
                    .bearer(KEY)
                    .json(&chat("alpha"))
                    .client(client.clone())
                    .try_send()
                    .await;
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {}", r.status, r.text())),
                    Err(e) => failures.lock().unwrap().push(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let wait_progress = |n: u64| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::Relaxed) + n;
            let deadline = Instant::now() + DEADLINE;
            while done.load(Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "the load loop made no progress");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_progress(8).await;
    for i in 0..5 {
        let (next, group) = if i % 2 == 0 {
            (&b, "gamma")
        } else {
            (&a, "beta")
        };
        rewrite(&gw, next);
        if i == 2 {
            // One of them by signal, under the same load.
            sighup(&gw);
            wait_log(&gw, "config reloaded", i + 1).await;
        } else {
            let r = gw.post("/config/reload", &json!({})).send().await;
            r.expect_status(200);
            assert_eq!(r.json()["deployments"], 2);
        }
        assert_eq!(chat_status(&gw, group).await, 200, "reload {i}");
        wait_progress(8).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        done.load(Ordering::Relaxed)
    );
    wait_log(&gw, "config reloaded", 5).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_binds_the_same_port_and_takes_over() {
    let mock = mock().await;
    let base = mock.base_url();
    let cfg = config(&base, &["alpha"]);
    let mut first = gateway().config(cfg.clone()).start();
    let port = first.addr.port();
    let second = gateway()
        .config(cfg)
        .no_default_port()
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .start();
    assert_eq!(second.addr, first.addr);

    // Both accept: the kernel spreads new connections over the two sockets.
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A new connection per request (no pool), so each one may land on either gateway.
        assert_eq!(chat_status(&first, "alpha").await, 200);
        let served = |g: &Gateway| !g.request_log().is_empty();
        if served(&first) && served(&second) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not both gateways served requests"
        );
    }
    let health = second
        .anon(http::Method::GET, "/health/readiness")
        .send()
        .await;
    health.expect_status(200);

    // Stop the first one: it stops accepting, drains, exits 0; the second one serves everything.
    first.sigterm();
    let st = first
        .wait_exit_async(DEADLINE)
        .await
        .expect("the first gateway exits after SIGTERM");
    assert!(st.success(), "{st}\n{}", first.stderr());
    let before = second.request_log().len();
    for _ in 0..20 {
        let r = second
            .post("/v1/chat/completions", &chat("alpha"))
            .try_send()
            .await
            .unwrap_or_else(|e| panic!("request after the first gateway stopped: {e}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let after = second.wait_request_log(before + 20).await.len();
    assert!(
        after >= before + 20,
        "the second gateway served {after} - {before}"
    );
    let v: Value = second.get("/v1/models").send().await.json();
    assert!(v["data"].as_array().is_some_and(|d| !d.is_empty()), "{v}");
    second.stop().await;
}
