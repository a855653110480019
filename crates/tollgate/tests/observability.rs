//! Observability end to end: the real binary against the mock upstream and SQLite, with in-test HTTP
//! receivers standing in for an OTLP collector, a webhook logger endpoint and an alert webhook.
//! `/metrics` (LiteLLM's names and labels), OTLP traces (spans, parents, `traceparent` in and out), the
//! generic webhook logger, budget alerts, request log lines and payload logging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

/// One POST a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    body: Bytes,
}

/// An HTTP server recording every request and answering 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    _tasks: tokio::task::JoinSet<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let (url, tasks) = test_server(move |req| {
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            g.lock().unwrap().push(Received {
                path: req.uri().path().to_string(),
                content_type,
                body: req.into_body(),
            });
            http::Response::new(Full::new(Bytes::from_static(b"{}")))
        })
        .await;
        Receiver {
            url,
            got,
            _tasks: tasks,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until `done(received)` holds (at most 15 s), and return what was received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; received {} posts: {:?}",
                got.len(),
                got.iter()
                    .map(|r| String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(300)
                        .collect::<String>())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn config(base: &str, extra_general: &str, litellm_settings: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}
      api_key: {UPSTREAM_KEY}
      rpm: 1000
    model_info:
      id: dep-a
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
  - model_name: broken
    litellm_params:
      model: openai/gpt-4o@status=500
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      id: dep-b
general_settings:
  master_key: {KEY}
  proxy_batch_write_at: 0.1
{extra_general}
litellm_settings:
  num_retries: 0
{litellm_settings}"
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

async fn new_key(gw: &Gateway, body: Value) -> String {
    let r = gw.post("/key/generate", &body).send().await;
    r.expect_status(200);
    r.json()["key"].as_str().unwrap().to_string()
}

/// `name{labels} value` lines of the exposition whose name is `name` and whose labels contain every
/// `k="v"` of `want`.
fn samples(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            want.iter()
                .all(|(k, v)| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .collect()
}

fn one(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let s = samples(text, name, want);
    assert_eq!(s.len(), 1, "{name} {want:?}: {s:?}\n{text}");
    s[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_litellm_names_and_count_what_happened() {
    let mock = mock().await;
    let metrics_port = free_port();
    let gw = gateway()
        .config(config(
            &mock.base_url(),
            "",
            "  callbacks: [\"prometheus\"]",
        ))
        .arg("--prometheus_metrics_port")
        .arg(metrics_port.to_string())
        .start();
    gw.post(
        "/team/new",
        &json!({"team_id": "eng", "team_alias": "Engineering", "max_budget": 10}),
    )
    .send()
    .await
    .expect_status(200);
    let key = new_key(
        &gw,
        json!({"key_alias": "ci-key", "team_id": "eng", "max_budget": 5, "user_id": "alice"}),
    )
    .await;
    let info = gw.get(&format!("/key/info?key={key}")).send().await.json();
    let hash = info["key"].as_str().unwrap().to_string();

    // Two answers, one stream, one upstream failure, one unknown model, one bad key.
    let mut cost = 0.0;
    for _ in 0..2 {
        let r = gw
            .post("/v1/chat/completions", &chat("gpt-4o"))
            .bearer(&key)
            .send()
            .await;
        r.expect_status(200);
        cost += r
            .header("x-litellm-response-cost")
            .unwrap()
            .parse::<f64>()
            .unwrap();
    }
    let mut stream = chat("gpt-4o");
    stream["stream"] = json!(true);
    let r = gw
        .post("/v1/chat/completions", &stream)
        .bearer(&key)
        .send()
        .await;
    r.expect_status(200);
    assert!(r.text().contains("[DONE]"));
    gw.post("/v1/chat/completions", &chat("broken"))
        .bearer(&key)
        .send()
        .await
        .expect_error(502);
    gw.post("/v1/chat/completions", &chat("no-such-model"))
        .bearer(&key)
        .send()
        .await;
    gw.post("/v1/chat/completions", &chat("gpt-4o"))
        .bearer("sk-not-a-key")
        .send()
        .await
        .expect_error(401);

    let ready = gw
        .anon(Method::GET, "/health/readiness")
        .send()
        .await
        .json();
    assert_eq!(ready["success_callbacks"], json!(["prometheus"]));
    // /metrics needs no key by default, and has the exposition content type.
    let m = gw.anon(Method::GET, "/metrics").send().await;
    m.expect_status(200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = m.text();
    let me = [
        ("hashed_api_key", hash.as_str()),
        ("api_key_alias", "ci-key"),
    ];
    let team = [
        ("team", "eng"),
        ("team_alias", "Engineering"),
        ("user", "alice"),
    ];
    let labels: Vec<(&str, &str)> = me.iter().chain(team.iter()).copied().collect();
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        labels
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    // Counters carry the `_total` suffix, as Python's prometheus_client prints them.
    assert!(
        text.contains("# TYPE litellm_proxy_total_requests_metric_total counter"),
        "{text}"
    );
    assert_eq!(
        one(
            &text,
            "litellm_proxy_total_requests_metric_total",
            &with(&[("status_code", "200"), ("requested_model", "gpt-4o")])
        ),
        3.0
    );
    assert_eq!(
        one(
            &text,
            "litellm_proxy_failed_requests_metric_total",
            &with(&[
                ("exception_status", "502"),
                ("exception_class", "Openai.InternalServerError"),
                ("requested_model", "broken")
            ])
        ),
        1.0
    );
    // The unknown model was refused before any upstream: a failure too. The bad key is not counted (as in
    // LiteLLM: anyone could inflate the counters).
    let refused: f64 = samples(&text, "litellm_proxy_failed_requests_metric_total", &[])
        .iter()
        .sum();
    assert_eq!(refused, 2.0, "{text}");
    assert!(
        samples(
            &text,
            "litellm_proxy_failed_requests_metric_total",
            &[("exception_status", "401")]
        )
        .is_empty()
    );
    assert_eq!(
        one(
            &text,
            "litellm_requests_metric_total",
            &with(&[("model", "openai/gpt-4o")])
        ),
        3.0
    );
    // Spend: what the responses said they cost (the stream's cost is not in a header: count it by tokens).
    let spend = one(
        &text,
        "litellm_spend_metric_total",
        &with(&[("model", "openai/gpt-4o")]),
    );
    assert!(spend > cost, "spend {spend} vs the two answers' {cost}");
    let input = one(
        &text,
        "litellm_input_tokens_metric_total",
        &with(&[("requested_model", "gpt-4o")]),
    );
    let output = one(
        &text,
        "litellm_output_tokens_metric_total",
        &with(&[("requested_model", "gpt-4o")]),
    );
    let total = one(
        &text,
        "litellm_total_tokens_metric_total",
        &with(&[("requested_model", "gpt-4o")]),
    );
    assert!(input > 0.0 && output > 0.0);
    assert_eq!(input + output, total);
    assert!(
        ((input * 0.001 + output * 0.002) - spend).abs() < 1e-9,
        "{spend} {input} {output}"
    );
    // Latency histograms: one observation per answered request.
    assert_eq!(
        one(
            &text,
            "litellm_request_total_latency_metric_count",
            &with(&[("requested_model", "gpt-4o")])
        ),
        3.0
    );
    assert_eq!(
        one(
            &text,
            "litellm_llm_api_latency_metric_count",
            &with(&[("requested_model", "gpt-4o")])
        ),
        3.0
    );
    assert_eq!(
        one(
            &text,
            "litellm_llm_api_time_to_first_token_metric_count",
            &me
        ),
        1.0
    );
    assert!(
        text.contains("litellm_request_total_latency_metric_bucket{"),
        "{text}"
    );
    assert!(text.contains("le=\"+Inf\""));
    let dep = [
        ("model_id", "dep-a"),
        ("litellm_model_name", "openai/gpt-4o"),
        ("api_provider", "openai"),
    ];
    let dep_key: Vec<(&str, &str)> = dep.iter().chain(me.iter()).copied().collect();
    assert_eq!(
        one(
            &text,
            "litellm_deployment_success_responses_total",
            &dep_key
        ),
        3.0
    );
    assert_eq!(
        one(&text, "litellm_deployment_total_requests_total", &dep_key),
        3.0
    );
    assert_eq!(one(&text, "litellm_deployment_state", &dep), 0.0);
    let broken = [("model_id", "dep-b"), ("api_provider", "openai")];
    let mut failed: Vec<(&str, &str)> = broken.iter().chain(me.iter()).copied().collect();
    failed.push(("exception_status", "500"));
    failed.push(("exception_class", "Openai.InternalServerError"));
    assert_eq!(
        one(&text, "litellm_deployment_failure_responses_total", &failed),
        1.0
    );
    assert_eq!(
        one(&text, "litellm_deployment_total_requests_total", &broken),
        1.0
    );
    assert!(samples(&text, "litellm_deployment_success_responses_total", &broken).is_empty());
    // Whether one failure cools a lone deployment down is the router's policy; the counter and the state
    // gauge must agree.
    let cooled: f64 = samples(&text, "litellm_deployment_cooled_down_total", &broken)
        .iter()
        .sum();
    let state = one(&text, "litellm_deployment_state", &broken);
    assert_eq!(state, if cooled > 0.0 { 2.0 } else { 0.0 }, "{text}");
    // Budgets: remaining = max - spend, for the key and its team.
    let remaining_key = one(&text, "litellm_remaining_api_key_budget_metric", &me);
    assert!(
        (remaining_key - (5.0 - spend)).abs() < 1e-6,
        "{remaining_key} {spend}"
    );
    assert_eq!(one(&text, "litellm_api_key_max_budget_metric", &me), 5.0);
    let remaining_team = one(
        &text,
        "litellm_remaining_team_budget_metric",
        &[("team", "eng"), ("team_alias", "Engineering")],
    );
    assert!((remaining_team - (10.0 - spend)).abs() < 1e-6);
    // The deployment's rpm left this minute.
    let left = one(
        &text,
        "litellm_remaining_requests_metric",
        &[("model_group", "gpt-4o")],
    );
    assert!((990.0..1000.0).contains(&left), "{left}");
    // No raw request ids in any label.
    assert!(!text.contains("request_id"));

    // The metrics port serves the same text without auth.
    let other = format!("http://127.0.0.1:{metrics_port}");
    let r = Req::new(Method::GET, format!("{other}/metrics"))
        .send()
        .await;
    r.expect_status(200);
    assert!(
        r.text()
            .contains("litellm_proxy_total_requests_metric_total")
    );
    let models = Req::new(Method::GET, format!("{other}/v1/models"))
        .bearer(KEY)
        .send()
        .await;
    assert_eq!(models.status, 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_key() {
    let mock = mock().await;
    let gw = gateway()
        .config(config(
            &mock.base_url(),
            "  require_auth_for_metrics_endpoint: true",
            "  callbacks: [\"prometheus\"]",
        ))
        .start();
    gw.anon(Method::GET, "/metrics")
        .send()
        .await
        .expect_error(401);
    let r = gw.get("/metrics").send().await;
    r.expect_status(200);
    assert!(
        r.text()
            .contains("# TYPE litellm_spend_metric_total counter")
    );
    gw.stop().await;
}

/// The spans of every OTLP/JSON export received, flattened.
fn spans(got: &[Received]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in got.iter().filter(|r| r.path == "/v1/traces") {
        assert_eq!(r.content_type, "application/json");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        for rs in v["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .unwrap()["value"]["stringValue"]
                .clone();
            assert_eq!(service, "tollgate-it");
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

/// LiteLLM's span names: the proxy request, and each LLM call.
const ROOT: &str = "Received Proxy Server Request";
const ATTEMPT: &str = "litellm_request";

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_go_to_the_otlp_endpoint_with_the_callers_context() {
    let mock = mock().await;
    let otlp = Receiver::start().await;
    let gw = gateway()
        .config(config(&mock.base_url(), "", "  callbacks: [\"otel\"]"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_SERVICE_NAME", "tollgate-it")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();
    let key = new_key(&gw, json!({"key_alias": "traced"})).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = gw
        .post("/v1/chat/completions", &chat("gpt-4o"))
        .bearer(&key)
        .header("traceparent", &format!("00-{trace_id}-{parent}-01"))
        .send()
        .await;
    r.expect_status(200);
    // A caller that says "not sampled" is not traced (parent-based sampling).
    gw.post("/v1/chat/completions", &chat("gpt-4o"))
        .bearer(&key)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )
        .send()
        .await
        .expect_status(200);

    let got = otlp
        .wait_for("the request's spans and its db write", |g| {
            let s = spans(g);
            [ROOT, "auth", "router", ATTEMPT, "db_write"]
                .iter()
                .all(|n| {
                    s.iter()
                        .any(|sp| sp["name"] == *n && sp["traceId"] == trace_id)
                })
        })
        .await;
    let all = spans(&got);
    let mine: Vec<&Value> = all.iter().filter(|s| s["traceId"] == trace_id).collect();
    let root = mine.iter().find(|s| s["name"] == ROOT).unwrap();
    assert_eq!(
        root["parentSpanId"], parent,
        "the root continues the caller's span"
    );
    assert_eq!(root["kind"], 2, "server span");
    let root_id = root["spanId"].as_str().unwrap();
    assert_eq!(root_id.len(), 16);
    assert_eq!(
        attr(root, "gen_ai.request.model").unwrap()["stringValue"],
        "gpt-4o"
    );
    assert_eq!(
        attr(root, "metadata.user_api_key_alias").unwrap()["stringValue"],
        "traced"
    );
    assert_eq!(
        attr(root, "llm.request.type").unwrap()["stringValue"],
        "acompletion"
    );
    assert!(
        attr(root, "gen_ai.usage.input_tokens").unwrap()["intValue"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    for name in ["auth", "router", ATTEMPT, "db_write"] {
        let s = mine.iter().find(|s| s["name"] == name).unwrap();
        assert_eq!(
            s["parentSpanId"], root_id,
            "{name} is a child of the request"
        );
        let (a, b): (u64, u64) = (
            s["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
            s["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
        );
        assert!(a > 0 && b >= a, "{name}: {a}..{b}");
    }
    let attempt = mine.iter().find(|s| s["name"] == ATTEMPT).unwrap();
    assert_eq!(attempt["kind"], 3, "client span");
    // The upstream got a traceparent naming the attempt's span in the caller's trace.
    let sent: Vec<String> = mock
        .recorded()
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(
        sent,
        [format!(
            "00-{trace_id}-{}-01",
            attempt["spanId"].as_str().unwrap()
        )],
        "only the sampled request carries a traceparent upstream"
    );
    assert!(
        !all.iter()
            .any(|s| s["traceId"] == "0af7651916cd43dd8448eb211c80319c")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_otel_settings_stop_start_up() {
    let mock = mock().await;
    let out = gateway()
        .config(config(&mock.base_url(), "", "  callbacks: [\"otel\"]"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .run();
    assert_eq!(out.code(), Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("grpc"), "{}", out.stderr);
    // --validate_config finds it too.
    let out = gateway()
        .config(config(&mock.base_url(), "", "  callbacks: [\"otel\"]"))
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .arg("--validate_config")
        .run();
    assert_eq!(out.code(), Some(64), "{}", out.stderr);
    assert!(
        out.stderr.contains("OTEL_TRACES_SAMPLER") || out.stderr.contains("sometimes"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_logger_and_budget_alerts() {
    let mock = mock().await;
    let hooks = Receiver::start().await;
    let gw = gateway()
        .config(config(
            &mock.base_url(),
            "  alerting: [\"webhook\"]",
            "  success_callback: [\"generic_api\"]\n  failure_callback: [\"generic_api\"]\n  callbacks: [\"langfuse\"]",
        ))
        .env("GENERIC_LOGGER_ENDPOINT", format!("{}/log", hooks.url))
        .env("GENERIC_LOGGER_HEADERS", "Authorization=Bearer hook-secret-77,X-Team=obs")
        .env("GENERIC_LOGGER_FLUSH_INTERVAL", "1")
        .env("WEBHOOK_URL", format!("{}/alert", hooks.url))
        .start();
    // What one request costs (the same body always costs the same), then a key whose budgets are a few
    // requests deep: the soft budget is crossed by the 2nd, 85% of the max by the 3rd, the max by the 4th,
    // and the 5th is refused.
    let first = gw
        .post("/v1/chat/completions", &chat("gpt-4o"))
        .send()
        .await;
    first.expect_status(200);
    let c: f64 = first
        .header("x-litellm-response-cost")
        .unwrap()
        .parse()
        .unwrap();
    assert!(c > 0.0);
    let key = new_key(
        &gw,
        json!({"key_alias": "budgeted", "max_budget": 3.5 * c, "soft_budget": 1.5 * c}),
    )
    .await;
    let mut ok = 0;
    for _ in 0..30 {
        let r = gw
            .post("/v1/chat/completions", &chat("gpt-4o"))
            .bearer(&key)
            .send()
            .await;
        if r.status != 200 {
            let e = r.expect_error(429);
            assert_eq!(e["code"], "budget_exceeded");
            break;
        }
        ok += 1;
    }
    assert_eq!(ok, 4);
    gw.post("/v1/chat/completions", &chat("broken"))
        .send()
        .await
        .expect_error(502);

    let got = hooks
        .wait_for("logs and alerts", |g| {
            let logged: usize = g
                .iter()
                .filter(|r| r.path == "/log")
                .map(|r| {
                    serde_json::from_slice::<Value>(&r.body)
                        .unwrap()
                        .as_array()
                        .unwrap()
                        .len()
                })
                .sum();
            logged >= ok + 2 && g.iter().filter(|r| r.path == "/alert").count() >= 3
        })
        .await;
    let logs: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/log")
        .flat_map(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .unwrap()
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(
        logs.len(),
        ok + 2,
        "one record per request (the budget refusal never reached an upstream)"
    );
    let success: Vec<&Value> = logs.iter().filter(|l| l["status"] == "success").collect();
    assert_eq!(success.len(), ok + 1);
    let first = success
        .iter()
        .find(|l| l["metadata"]["user_api_key_alias"] == "budgeted")
        .unwrap();
    assert_eq!(first["model_group"], "gpt-4o");
    assert_eq!(first["model_id"], "dep-a");
    assert_eq!(first["call_type"], "acompletion");
    assert_eq!(first["metadata"]["user_api_key_alias"], "budgeted");
    assert!(first["response_cost"].as_f64().unwrap() > 0.0);
    assert_eq!(first["messages"][0]["content"], "hello there");
    assert!(first["response"]["choices"].is_array());
    let failure = logs.iter().find(|l| l["status"] == "failure").unwrap();
    assert_eq!(failure["error_information"]["error_code"], "502");
    assert_eq!(
        failure["error_information"]["error_class"],
        "InternalServerError"
    );
    assert_eq!(failure["model_group"], "broken");

    let alerts: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/alert")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let events: Vec<&str> = alerts
        .iter()
        .map(|a| a["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["soft_budget_crossed", "threshold_crossed", "budget_crossed"],
        "{alerts:?}"
    );
    for (i, a) in alerts.iter().enumerate() {
        assert_eq!(a["event_group"], "key");
        assert_eq!(a["key_alias"], "budgeted");
        let want = c * (i + 2) as f64;
        assert!((a["spend"].as_f64().unwrap() - want).abs() < 1e-9, "{a}");
        assert!((a["max_budget"].as_f64().unwrap() - 3.5 * c).abs() < 1e-9);
    }
    let stderr = gw.stop().await;
    assert!(
        stderr.contains("langfuse"),
        "unsupported callbacks are reported: {stderr}"
    );
    assert!(
        !stderr.contains("hook-secret-77"),
        "webhook headers are secrets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_request_lines_and_truncated_payloads() {
    let mock = mock().await;
    let gw = gateway()
        .config(config(
            &mock.base_url(),
            "  tollgate_log_payloads: true\n  tollgate_log_payload_max_bytes: 40",
            "  json_logs: true",
        ))
        .start();
    let key = new_key(&gw, json!({"key_alias": "logged"})).await;
    let mut body = chat("gpt-4o");
    body["messages"][0]["content"] = json!("x".repeat(500));
    gw.post("/v1/chat/completions", &body)
        .bearer(&key)
        .send()
        .await
        .expect_status(200);
    let stderr = gw.stop().await;
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let req = lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .unwrap_or_else(|| panic!("{stderr}"));
    let f = req;
    assert_eq!(f["key_alias"], "logged");
    assert_eq!(f["model_group"], "gpt-4o");
    assert_eq!(f["deployment"], "dep-a");
    assert_eq!(f["status"], 200);
    assert!(f["latency_ms"].as_f64().is_some());
    assert!(f["total_tokens"].as_u64().unwrap() > 0);
    assert!(f["cost_usd"].as_str().is_some() || f["cost_usd"].as_f64().is_some());
    assert!(f["request_id"].as_str().is_some());
    let payloads: Vec<&Value> = lines.iter().filter(|l| l["message"] == "payload").collect();
    assert_eq!(payloads.len(), 2, "the request and the response: {stderr}");
    let request = payloads.iter().find(|l| l["what"] == "request").unwrap();
    let logged = request["body"].as_str().unwrap();
    assert!(logged.len() < 120, "cut to the limit: {logged}");
    assert!(logged.contains("bytes in all"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_not_logged_by_default() {
    let mock = mock().await;
    let gw = gateway().config(config(&mock.base_url(), "", "")).start();
    let mut body = chat("gpt-4o");
    body["messages"][0]["content"] = json!("a-very-private-prompt-1234");
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_status(200);
    let stderr = gw.stop().await;
    assert!(stderr.contains("request completed"));
    assert!(!stderr.contains("a-very-private-prompt-1234"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_without_the_prometheus_callback() {
    let mock = mock().await;
    let gw = gateway().config(config(&mock.base_url(), "", "")).start();
    gw.post("/v1/chat/completions", &chat("gpt-4o"))
        .send()
        .await
        .expect_status(200);
    let r = gw.anon(Method::GET, "/metrics").send().await;
    let e = r.expect_error(404);
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("prometheus")),
        "{e}"
    );
    gw.stop().await;
}
