//! Graceful shutdown: SIGTERM lets an in-flight stream finish while new connections are refused, then the
//! process exits 0; idle connections do not hold the drain up; `--max_requests_before_restart` drains and exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;
use http_body_util::BodyExt;

fn slow_config(base: &str) -> String {
    format!(
        r#"model_list:
  - model_name: slow
    litellm_params:
      model: "openai/slow-up@chunks=10,chunk_interval_ms=200"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: slower
    litellm_params:
      model: "openai/slower-up@chunks=20,chunk_interval_ms=200"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: fast
    litellm_params:
      model: mock/fast
general_settings:
  master_key: {KEY}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_stream_and_refuses_new_connections() {
    let mock = mock().await;
    let mut gw = gateway().config(slow_config(&mock.base_url())).start();
    let addr = gw.addr;

    let resp = gw
        .post("/v1/chat/completions", &chat_stream("slow", false))
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Wait for the first bytes so the stream is surely in flight.
    let first = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut text = String::from_utf8_lossy(first.data_ref().unwrap()).to_string();

    gw.sigterm();
    let sent_at = Instant::now();

    let reader = async {
        while let Some(f) = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
            .await
            .expect("stream stalled")
        {
            let f = f.expect("the stream was cut during the drain");
            if let Some(d) = f.data_ref() {
                text.push_str(&String::from_utf8_lossy(d));
            }
        }
        Instant::now()
    };
    let refuser = async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Some(Instant::now());
                }
                _ if Instant::now() > deadline => return None,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    let (stream_end, refused_at) = tokio::join!(reader, refuser);
    let refused_at = refused_at.expect("new connections were still accepted 5 s after SIGTERM");
    assert!(
        refused_at < stream_end,
        "connections were accepted for the whole drain"
    );
    assert!(
        stream_end.duration_since(sent_at) >= Duration::from_millis(500),
        "the stream ended early"
    );

    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    assert_eq!(
        events.last().map(|e| e.trim()),
        Some("data: [DONE]"),
        "stream incomplete:\n{text}"
    );
    let content = events
        .iter()
        .filter(|e| e.contains("\"content\":\"") && !e.contains("\"content\":\"\""))
        .count();
    assert_eq!(content, 10, "every paced chunk arrives:\n{text}");

    let st = gw
        .wait_exit_async(Duration::from_secs(20))
        .await
        .expect("no exit after the drain");
    assert!(st.success(), "exit status {st}\n{}", gw.stderr());
    let log = gw.stderr();
    assert!(log.contains("SIGTERM"), "{log}");
    assert_eq!(gw.request_log().len(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_hold_up_shutdown() {
    let mock = mock().await;
    let mut gw = gateway().config(slow_config(&mock.base_url())).start();

    // An idle HTTP/1.1 keep-alive connection and an idle h2 connection.
    let h1 = http1_client();
    let h2 = h2c_client();
    gw.post("/v1/chat/completions", &chat("fast"))
        .client(h1.clone())
        .send()
        .await
        .expect_status(200);
    gw.post("/v1/chat/completions", &chat("fast"))
        .client(h2.clone())
        .send()
        .await
        .expect_status(200);

    let start = Instant::now();
    gw.sigterm();
    let st = gw
        .wait_exit_async(Duration::from_secs(20))
        .await
        .expect("no exit after SIGTERM");
    assert!(st.success(), "{st}");
    // The grace period is 30 s; idle connections must not use it up.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?} for idle connections",
        start.elapsed()
    );
    drop((h1, h2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_before_restart_drains_and_exits() {
    let mock = mock().await;
    let mut gw = gateway()
        .config(slow_config(&mock.base_url()))
        .args(["--max_requests_before_restart", "3"])
        .start();

    for i in 0..2 {
        gw.post("/v1/chat/completions", &chat("fast"))
            .send()
            .await
            .expect_status(200);
        assert!(
            gw.wait_exit(Duration::ZERO).is_none(),
            "exited after {} requests",
            i + 1
        );
    }
    // The third request is answered in full, then the process drains and exits 0.
    let r = gw.post("/v1/chat/completions", &chat("fast")).send().await;
    r.expect_status(200);
    assert!(r.json()["choices"][0]["message"]["content"].is_string());
    let st = gw
        .wait_exit_async(Duration::from_secs(20))
        .await
        .expect("no exit after max_requests_before_restart");
    assert!(st.success(), "{st}\n{}", gw.stderr());
    assert!(
        gw.stderr().contains("max_requests_before_restart"),
        "{}",
        gw.stderr()
    );
    let after = gw.anon(Method::GET, "/health/liveliness").try_send().await;
    assert!(
        after.is_err(),
        "still answering after the restart drain: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_over_cuts_streams_and_still_records_them() {
    let mock = mock().await;
    let mut gw = gateway()
        .config(slow_config(&mock.base_url()))
        .env("TOLLGATE_GRACEFUL_SHUTDOWN_TIMEOUT", "1")
        .start();
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("slower", false))
        .open()
        .await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut body = resp.into_body();
    tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let start = Instant::now();
    gw.sigterm();
    let mut text = String::new();
    let mut cut = false;
    while let Some(f) = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .expect("stream stalled")
    {
        match f {
            Ok(f) => text.push_str(&String::from_utf8_lossy(
                f.data_ref().map(|b| &b[..]).unwrap_or_default(),
            )),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(
        cut || !text.contains("[DONE]"),
        "the 4 s stream finished inside a 1 s grace period:\n{text}"
    );
    let st = gw
        .wait_exit_async(Duration::from_secs(20))
        .await
        .expect("no exit after the grace period");
    assert!(st.success(), "{st}");
    assert!(
        start.elapsed() < Duration::from_millis(3500),
        "the grace period was not enforced: {:?}",
        start.elapsed()
    );
    let log = gw.stderr();
    assert!(log.contains("grace period over"), "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request completed") && l.contains(&id))
        .collect();
    assert_eq!(lines.len(), 1, "a cut stream is still logged once:\n{log}");
    assert!(
        lines[0].contains("client_disconnected=true"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm_and_a_second_signal_does_not_cut_the_drain() {
    let mock = mock().await;
    let mut gw = gateway().config(slow_config(&mock.base_url())).start();
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("slow", false))
        .open()
        .await;
    let mut body = resp.into_body();
    tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let pid = gw.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    let mut text = String::new();
    while let Some(f) = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .expect("stream stalled")
    {
        let f = f.expect("the stream was cut by the second signal");
        text.push_str(&String::from_utf8_lossy(
            f.data_ref().map(|b| &b[..]).unwrap_or_default(),
        ));
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let st = gw
        .wait_exit_async(Duration::from_secs(20))
        .await
        .expect("no exit");
    assert!(st.success(), "{st}");
    assert!(gw.stderr().contains("SIGINT"), "{}", gw.stderr());
}

#[test]
fn skip_server_startup_checks_and_exits() {
    let out = gateway()
        .config(format!("model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  master_key: {KEY}\n"))
        .arg("--skip_server_startup")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
}
