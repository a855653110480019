//! The router end to end: retries (other deployments first, upstream Retry-After honoured), cooldowns
//! (entry, skip, exit, everything cooling), every kind of fallback, timeouts (deployment, request, stream
//! time to first chunk), failures before and after a stream's first chunk, pre-call context checks,
//! strategies seen from outside, and the `x-litellm-*` attempt headers. The real binary against mock
//! upstreams whose faults are set per deployment (model-name knobs) or at run time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// One deployment: (model group, id, api base, upstream model incl. knobs, extra `litellm_params` lines).
struct Dep<'a> {
    group: &'a str,
    id: &'a str,
    base: &'a str,
    model: &'a str,
    extra: &'a str,
}

fn dep<'a>(group: &'a str, id: &'a str, base: &'a str, model: &'a str) -> Dep<'a> {
    Dep {
        group,
        id,
        base,
        model,
        extra: "",
    }
}

fn config(deps: &[Dep<'_>], router: &str, model_info: &[(&str, &str)]) -> String {
    let mut s = String::from("model_list:\n");
    for d in deps {
        s.push_str(&format!(
            "  - model_name: {}\n    litellm_params:\n      model: \"openai/{}\"\n      api_base: {}\n      api_key: {UPSTREAM_KEY}\n",
            d.group, d.model, d.base
        ));
        for line in d.extra.lines().filter(|l| !l.trim().is_empty()) {
            s.push_str(&format!("      {}\n", line.trim()));
        }
        s.push_str(&format!("    model_info:\n      id: {}\n", d.id));
        for (id, info) in model_info {
            if *id == d.id {
                for line in info.lines().filter(|l| !l.trim().is_empty()) {
                    s.push_str(&format!("      {}\n", line.trim()));
                }
            }
        }
    }
    s.push_str(&format!(
        "general_settings:\n  master_key: {KEY}\nrouter_settings:\n"
    ));
    for line in router.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("  {line}\n"));
    }
    s
}

fn header_u64(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap()
}

async fn send(gw: &Gateway, body: &Value) -> Resp {
    gw.post("/v1/chat/completions", body).send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_is_retried_on_another_and_cooled_down() {
    let bad = mock().await;
    let good = mock().await;
    bad.set_faults(&[("status", "503")]).unwrap();
    let (b1, b2) = (bad.base_url(), good.base_url());
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-bad", &b1, "m"),
                dep("g", "dep-good", &b2, "m"),
            ],
            "allowed_fails: 1\ncooldown_time: 60\nnum_retries: 2",
            &[],
        ))
        .start();
    let mut retried = 0;
    for _ in 0..30 {
        let r = send(&gw, &chat("g")).await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-good"));
        assert_eq!(header_u64(&r, "x-litellm-max-retries"), 2);
        assert_eq!(header_u64(&r, "x-litellm-attempted-fallbacks"), 0);
        retried += header_u64(&r, "x-litellm-attempted-retries");
    }
    // allowed_fails: 1 -> the second failure in a minute starts the cooldown; after that the bad
    // deployment gets no more traffic.
    assert_eq!(bad.requests(), 2, "bad deployment hit after its cooldown");
    assert_eq!(retried, 2);
    assert!(
        gw.stderr().contains("deployment cooling down"),
        "{}",
        gw.stderr()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooled_down_deployment_comes_back_after_cooldown_time() {
    let flaky = mock().await;
    let good = mock().await;
    flaky.set_faults(&[("status", "500")]).unwrap();
    let (b1, b2) = (flaky.base_url(), good.base_url());
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-flaky", &b1, "m"),
                dep("g", "dep-good", &b2, "m"),
            ],
            "allowed_fails: 0\ncooldown_time: 1",
            &[],
        ))
        .start();
    // Send until the flaky one has been tried (and cooled down).
    for _ in 0..50 {
        send(&gw, &chat("g")).await.expect_status(200);
        if flaky.requests() > 0 {
            break;
        }
    }
    assert_eq!(flaky.requests(), 1);
    flaky.clear_faults();
    // During the cooldown it is skipped; once it is over, it serves again.
    let start = Instant::now();
    let mut served_by_flaky = false;
    while start.elapsed() < Duration::from_secs(15) && !served_by_flaky {
        let r = send(&gw, &chat("g")).await;
        r.expect_status(200);
        served_by_flaky = r.header("x-litellm-model-id") == Some("dep-flaky");
        if served_by_flaky {
            assert!(
                start.elapsed() >= Duration::from_millis(800),
                "served during its cooldown"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served_by_flaky, "never came back after its cooldown");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_deployment_cools_down_the_answer_is_429_with_the_wait() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-a", &b, "a@status=503"),
                dep("g", "dep-b", &b, "b@status=502"),
            ],
            "allowed_fails: 0\ncooldown_time: 30\nnum_retries: 3",
            &[],
        ))
        .start();
    let r = send(&gw, &chat("g")).await;
    // Both failed (each once, then cooled down): the last status, every attempt in the message.
    let e = r.expect_error(502);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("dep-a") && msg.contains("dep-b") && msg.contains("attempts"),
        "{msg}"
    );
    assert_eq!(m.requests(), 2);
    let r = send(&gw, &chat("g")).await;
    let e = r.expect_error(429);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("No deployments available"),
        "{e}"
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "retry-after {wait}");
    assert_eq!(m.requests(), 2, "a cooling deployment was called");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_deployment_is_retried_after_the_upstream_retry_after() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[dep("g", "dep-1", &b, "m@fail_first=1,retry_after=1")],
            "num_retries: 2",
            &[],
        ))
        .start();
    let start = Instant::now();
    let r = send(&gw, &chat("g")).await;
    r.expect_status(200);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 1);
    // The upstream asked for one second: the retry waited for it.
    assert!(start.elapsed() >= Duration::from_millis(950));
    assert_eq!(m.requests(), 2);
    // A single deployment is never cooled down.
    let r = send(&gw, &chat("g")).await;
    r.expect_status(200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_num_retries_and_client_errors_are_not_retried() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("down", "dep-down", &b, "x@status=500"),
                dep("bad", "dep-bad", &b, "y@status=422"),
            ],
            "num_retries: 2\nretry_after: 0",
            &[],
        ))
        .start();
    let r = send(&gw, &chat("down")).await;
    r.expect_error(502);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 2);
    assert_eq!(m.requests(), 3);
    // Per request `num_retries` wins.
    let mut body = chat("down");
    body["num_retries"] = json!(0);
    let r = send(&gw, &body).await;
    r.expect_error(502);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 0);
    assert_eq!(header_u64(&r, "x-litellm-max-retries"), 0);
    assert_eq!(m.requests(), 4);
    // A 422 is the request's fault: passed through at once.
    let r = send(&gw, &chat("bad")).await;
    r.expect_error(422);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 0);
    assert_eq!(m.requests(), 5);
    gw.stop().await;
}

/// A deployment whose key the upstream refuses is retried on another deployment (its key may be good), as in
/// LiteLLM; with no other deployment, a 401 is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_is_retried_on_another_deployment() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-badkey", &b, "x@status=401"),
                dep("g", "dep-goodkey", &b, "y"),
                dep("lone", "dep-lone", &b, "z@status=401"),
            ],
            "num_retries: 2",
            &[],
        ))
        .start();
    for _ in 0..10 {
        let r = send(&gw, &chat("g")).await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-goodkey"));
    }
    let r = send(&gw, &chat("lone")).await;
    r.expect_error(401);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_policy_sets_retries_per_error_class() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("auth", "dep-auth", &b, "x@status=401"),
                dep("limited", "dep-limited", &b, "y@status=429"),
            ],
            "num_retries: 5\nretry_policy:\n    AuthenticationErrorRetries: 1\n    RateLimitErrorRetries: 0",
            &[],
        ))
        .start();
    let r = send(&gw, &chat("auth")).await;
    r.expect_error(401);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 1);
    let r = send(&gw, &chat("limited")).await;
    r.expect_error(429);
    assert_eq!(header_u64(&r, "x-litellm-attempted-retries"), 0);
    assert_eq!(m.requests(), 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_of_every_kind() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("primary", "dep-primary", &b, "p@status=503"),
                dep("secondary", "dep-secondary", &b, "s"),
                dep(
                    "small",
                    "dep-small",
                    &b,
                    "small@error_code=context_length_exceeded",
                ),
                dep("large", "dep-large", &b, "large"),
                dep(
                    "strict",
                    "dep-strict",
                    &b,
                    "strict@error_code=content_policy_violation",
                ),
                dep("lenient", "dep-lenient", &b, "lenient"),
                dep("orphan", "dep-orphan", &b, "o@status=500"),
                dep("last-resort", "dep-last", &b, "l"),
                dep("invalid", "dep-invalid", &b, "i@status=400"),
            ],
            r#"num_retries: 0
fallbacks: [{"primary": ["secondary"]}, {"invalid": ["secondary"]}]
context_window_fallbacks: [{"small": ["large"]}]
content_policy_fallbacks: [{"strict": ["lenient"]}]
default_fallbacks: ["last-resort"]"#,
            &[],
        ))
        .start();
    for (group, served_by) in [
        ("primary", "dep-secondary"),
        ("small", "dep-large"),
        ("strict", "dep-lenient"),
        ("orphan", "dep-last"),
    ] {
        let r = send(&gw, &chat(group)).await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some(served_by), "{group}");
        assert_eq!(header_u64(&r, "x-litellm-attempted-fallbacks"), 1);
        // The answer names the model the client asked for.
        assert_eq!(r.json()["model"], group);
    }
    // A plain bad request is not fallen back.
    let r = send(&gw, &chat("invalid")).await;
    r.expect_error(400);
    assert_eq!(header_u64(&r, "x-litellm-attempted-fallbacks"), 0);
    // The request's own fallbacks win, and are not sent upstream.
    m.clear_recorded();
    let mut body = chat("primary");
    body["fallbacks"] = json!(["large"]);
    let r = send(&gw, &body).await;
    r.expect_status(200);
    assert_eq!(r.header("x-litellm-model-id"), Some("dep-large"));
    let recorded = m.recorded();
    assert!(!recorded.is_empty());
    for rec in recorded {
        let body = rec.json().unwrap();
        assert!(body.get("fallbacks").is_none(), "{body}");
    }
    // `disable_fallbacks` turns them off.
    let mut body = chat("primary");
    body["disable_fallbacks"] = json!(true);
    send(&gw, &body).await.expect_error(502);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_must_be_allowed_the_fallback_model() {
    let m = mock().await;
    let b = m.base_url();
    let cfg = config(
        &[
            dep("primary", "dep-primary", &b, "p@status=503"),
            dep("secondary", "dep-secondary", &b, "s"),
        ],
        "num_retries: 0\nfallbacks: [{\"primary\": [\"secondary\"]}]",
        &[],
    );
    let gw = gateway().config(cfg).start();
    let r = gw
        .post("/key/generate", &json!({"models": ["primary"]}))
        .send()
        .await;
    r.expect_status(200);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let r = gw
        .post("/v1/chat/completions", &chat("primary"))
        .bearer(&key)
        .send()
        .await;
    let e = r.expect_error(502);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not allowed to use it"),
        "{e}"
    );
    // The master key may use it.
    send(&gw, &chat("primary")).await.expect_status(200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_per_deployment_per_request_and_by_header() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                Dep {
                    extra: "timeout: 0.3",
                    ..dep("g", "dep-slow", &b, "slow@latency_ms=3000")
                },
                dep("g", "dep-fast", &b, "fast"),
                dep("lone", "dep-lone", &b, "lone@latency_ms=3000"),
            ],
            "num_retries: 1\nallowed_fails: 100",
            &[],
        ))
        .start();
    // The slow one times out at 0.3 s and the retry goes to the fast one.
    for _ in 0..6 {
        let r = send(&gw, &chat("g")).await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-fast"));
    }
    // The request's own timeout, in the body and in the header.
    let mut body = chat("lone");
    body["timeout"] = json!(0.2);
    body["num_retries"] = json!(0);
    let start = Instant::now();
    send(&gw, &body).await.expect_error(504);
    assert!(start.elapsed() < Duration::from_millis(2500));
    let mut body = chat("lone");
    body["num_retries"] = json!(0);
    let start = Instant::now();
    gw.post("/v1/chat/completions", &body)
        .header("x-litellm-timeout", "0.2")
        .send()
        .await
        .expect_error(504);
    assert!(start.elapsed() < Duration::from_millis(2500));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_retried_before_their_first_chunk() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("down", "dep-down", &b, "d@status=503"),
                dep("down", "dep-up", &b, "u"),
                Dep {
                    extra: "stream_timeout: 0.3",
                    ..dep("sluggish", "dep-sluggish", &b, "s@ttfb_ms=3000")
                },
                dep("sluggish", "dep-quick", &b, "q"),
            ],
            "num_retries: 2\nallowed_fails: 100",
            &[],
        ))
        .start();
    for group in ["down", "sluggish"] {
        for _ in 0..4 {
            let resp = gw
                .post("/v1/chat/completions", &chat_stream(group, true))
                .open()
                .await;
            assert_eq!(resp.status(), 200, "{group}");
            let id = resp
                .headers()
                .get("x-litellm-model-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert!(id == "dep-up" || id == "dep-quick", "{group}: {id}");
            let sse = read_sse(resp.into_body()).await;
            assert!(sse.ends_with_done(), "{}", sse.raw());
            assert!(!sse.raw().contains("\"error\""), "{}", sse.raw());
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_failing_after_its_first_chunk_ends_with_an_error_event() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-cut", &b, "c@reset_after_chunks=2,chunks=5"),
                dep("g2", "dep-ok", &b, "ok"),
            ],
            "num_retries: 3\nfallbacks: [{\"g\": [\"g2\"]}]",
            &[],
        ))
        .start();
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("g", false))
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    let raw = sse.raw();
    assert!(raw.contains("\"error\""), "{raw}");
    assert!(raw.contains("chat.completion.chunk"), "{raw}");
    // No second attempt: the client already has part of the answer.
    assert_eq!(m.requests(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_call_checks_skip_deployments_whose_context_is_too_small() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-tiny", &b, "tiny"),
                dep("g", "dep-roomy", &b, "roomy"),
                dep("only-tiny", "dep-only-tiny", &b, "t2"),
                dep("big", "dep-big", &b, "big"),
            ],
            "enable_pre_call_checks: true\ncontext_window_fallbacks: [{\"only-tiny\": [\"big\"]}]",
            &[
                ("dep-tiny", "max_input_tokens: 50"),
                ("dep-roomy", "max_input_tokens: 100000"),
                ("dep-only-tiny", "max_input_tokens: 50"),
            ],
        ))
        .start();
    let long = "word ".repeat(400);
    let body = json!({"model": "g", "messages": [{"role": "user", "content": long}]});
    for _ in 0..20 {
        let r = send(&gw, &body).await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-roomy"));
    }
    // Short prompts may go to either.
    let mut seen_tiny = false;
    for _ in 0..40 {
        let r = send(&gw, &chat("g")).await;
        seen_tiny |= r.header("x-litellm-model-id") == Some("dep-tiny");
    }
    assert!(seen_tiny);
    // Nothing in the group fits: the context window fallback serves it, without calling the small one.
    let before = m.requests();
    let body = json!({"model": "only-tiny", "messages": [{"role": "user", "content": long}]});
    let r = send(&gw, &body).await;
    r.expect_status(200);
    assert_eq!(r.header("x-litellm-model-id"), Some("dep-big"));
    assert_eq!(m.requests(), before + 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_based_routing_prefers_the_fast_deployment() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-slow", &b, "slow@latency_ms=120"),
                dep("g", "dep-fast", &b, "fast"),
            ],
            "routing_strategy: latency-based-routing",
            &[],
        ))
        .start();
    let mut fast = 0;
    for _ in 0..60 {
        let r = send(&gw, &chat("g")).await;
        r.expect_status(200);
        fast += usize::from(r.header("x-litellm-model-id") == Some("dep-fast"));
    }
    // Each is tried once while it has no samples; after that the fast one wins every time.
    assert!(fast >= 57, "fast deployment served {fast} of 60");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_based_routing_prefers_the_cheaper_deployment() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                dep("g", "dep-dear", &b, "dear"),
                dep("g", "dep-cheap", &b, "cheap"),
            ],
            "routing_strategy: cost-based-routing",
            &[
                (
                    "dep-dear",
                    "input_cost_per_token: 0.00001\noutput_cost_per_token: 0.00003",
                ),
                (
                    "dep-cheap",
                    "input_cost_per_token: 0.000001\noutput_cost_per_token: 0.000002",
                ),
            ],
        ))
        .start();
    for _ in 0..20 {
        let r = send(&gw, &chat("g")).await;
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-cheap"));
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_shuffle_follows_weights_and_deployment_rpm_limits() {
    let m = mock().await;
    let b = m.base_url();
    let gw = gateway()
        .config(config(
            &[
                Dep {
                    extra: "weight: 9",
                    ..dep("g", "dep-heavy", &b, "h")
                },
                Dep {
                    extra: "weight: 1",
                    ..dep("g", "dep-light", &b, "l")
                },
                Dep {
                    extra: "rpm: 3",
                    ..dep("limited", "dep-limited", &b, "x")
                },
                dep("limited", "dep-spare", &b, "y"),
            ],
            "",
            &[],
        ))
        .start();
    let mut heavy = 0;
    for _ in 0..200 {
        let r = send(&gw, &chat("g")).await;
        heavy += usize::from(r.header("x-litellm-model-id") == Some("dep-heavy"));
    }
    // Expected 180 of 200 (sd about 4.2): 30 either side is a seven-sigma bound.
    assert!((150..=200).contains(&heavy), "heavy served {heavy} of 200");
    let mut limited = 0;
    for _ in 0..20 {
        let r = send(&gw, &chat("limited")).await;
        r.expect_status(200);
        limited += usize::from(r.header("x-litellm-model-id") == Some("dep-limited"));
    }
    assert!(
        limited <= 3,
        "rpm 3 deployment served {limited} in a minute"
    );
    gw.stop().await;
}
