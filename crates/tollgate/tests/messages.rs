//! Anthropic's Messages API on the gateway (`/v1/messages`, `/v1/messages/count_tokens`): native pass-through to
//! an Anthropic deployment, translation to an OpenAI deployment and back (complete, streamed, tool use),
//! `x-api-key` authentication, Anthropic-shaped errors, spend recorded like any other request, and
//! `/model/info` / `/v1/models` reporting each deployment's provider, mode, context window and prices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{Value, json};

fn config(root: &str) -> String {
    format!(
        r#"model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {root}
      api_key: {UPSTREAM_KEY}
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {root}/v1
      api_key: {UPSTREAM_KEY}
    model_info:
      max_input_tokens: 128000
      input_cost_per_token: 0.00000015
      output_cost_per_token: 0.0000006
general_settings:
  master_key: {KEY}
"#
    )
}

fn msg(model: &str) -> Value {
    json!({"model": model, "max_tokens": 64, "system": "Be terse.",
           "messages": [{"role": "user", "content": "Say hello"}]})
}

fn anthropic_req(gw: &Gateway, path: &str, body: &Value) -> Req {
    gw.anon(Method::POST, path)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

async fn setup() -> (tollgate_mock::MockServer, Gateway) {
    let mock = mock().await;
    let root = mock.base_url().trim_end_matches("/v1").to_string();
    let gw = gateway().config(config(&root)).start();
    (mock, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_pass_through_to_anthropic() {
    let (mock, gw) = setup().await;
    let r = anthropic_req(&gw, "/v1/messages", &msg("claude"))
        .send()
        .await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["model"], "claude", "the requested name is reported: {v}");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(v["content"][0]["text"].as_str().unwrap().contains("mock"));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    // Upstream got the Messages API body with the upstream model name and its own key.
    let rec = mock.recorded();
    let last = rec.last().unwrap();
    assert!(last.path.ends_with("/v1/messages"), "{}", last.path);
    let sent: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(sent["system"], "Be terse.");
    let has = |name: &str, value: &str| {
        last.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && v == value)
    };
    assert!(has("x-api-key", UPSTREAM_KEY), "{:?}", last.headers);
    assert!(
        !last.headers.iter().any(|(_, v)| v.contains(KEY)),
        "the gateway key never goes upstream"
    );

    // Streamed: Anthropic's events, in order, with the requested name.
    let mut body = msg("claude");
    body["stream"] = json!(true);
    let resp = anthropic_req(&gw, "/v1/messages", &body).open().await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    let names: Vec<String> = sse.events.iter().filter_map(|e| e.event.clone()).collect();
    assert_eq!(
        names.first().map(String::as_str),
        Some("message_start"),
        "{}",
        sse.raw()
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("message_stop"),
        "{}",
        sse.raw()
    );
    assert!(names.iter().any(|n| n == "content_block_delta"));
    assert!(names.iter().any(|n| n == "message_delta"));
    let start = sse
        .events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_start"))
        .unwrap();
    assert_eq!(start.json()["message"]["model"], "claude", "{}", sse.raw());

    // Spend: both requests are recorded with their tokens.
    let logs = eventually_logs(&gw, 2).await;
    assert!(
        logs.iter().all(|l| l["total_tokens"].as_u64() > Some(0)),
        "{logs:?}"
    );
    gw.stop().await;
}

async fn eventually_logs(gw: &Gateway, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..50 {
        let r = gw.get("/spend/logs").send().await;
        if r.status == 200
            && let Some(rows) = r.json().as_array()
        {
            out = rows.clone();
            if out.len() >= n {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_an_openai_deployment_are_translated_both_ways() {
    let (mock, gw) = setup().await;
    let r = anthropic_req(&gw, "/v1/messages", &msg("gpt")).send().await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "gpt");
    assert_eq!(
        v["content"][0]["text"],
        "This is a mock response from tollgate."
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 7);
    // The upstream got an OpenAI chat request: the system prompt first.
    let rec = mock.recorded();
    let last = rec.last().unwrap();
    assert!(last.path.ends_with("/chat/completions"), "{}", last.path);
    let sent: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(sent["model"], "gpt-4o-mini");

    // Streamed and translated.
    let mut body = msg("gpt");
    body["stream"] = json!(true);
    let resp = anthropic_req(&gw, "/v1/messages", &body).open().await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    let text: String = sse
        .events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .filter_map(|e| e.json()["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        text,
        "This is a mock response from tollgate.",
        "{}",
        sse.raw()
    );
    let delta = sse
        .events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap()
        .json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64() > Some(0),
        "{delta}"
    );

    // Tool use: Anthropic tools in, a tool_use block out.
    mock.set_faults(&[("tool_call", "1"), ("content", r#"{"city":"Paris"}"#)])
        .unwrap();
    let mut body = msg("gpt");
    body["tools"] = json!([{"name": "get_weather", "description": "weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let v = anthropic_req(&gw, "/v1/messages", &body)
        .send()
        .await
        .json();
    mock.clear_faults();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "Paris"}));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_natively_or_estimated() {
    let (mock, gw) = setup().await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "Count these few words please"}]});
    let r = anthropic_req(&gw, "/v1/messages/count_tokens", &body)
        .send()
        .await;
    r.expect_status(200);
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    assert!(
        mock.recorded()
            .iter()
            .any(|r| r.path.ends_with("/v1/messages/count_tokens")),
        "an Anthropic deployment counts natively"
    );
    let before = mock.recorded().len();
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Count these few words please"}]});
    let r = anthropic_req(&gw, "/v1/messages/count_tokens", &body)
        .send()
        .await;
    r.expect_status(200);
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        mock.recorded().len(),
        before,
        "other providers are estimated locally"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_the_messages_routes_are_anthropic_shaped() {
    let (_mock, gw) = setup().await;
    // A bad key.
    let r = gw
        .anon(Method::POST, "/v1/messages")
        .header("x-api-key", "sk-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&msg("claude"))
        .send()
        .await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    // An unknown model.
    let r = anthropic_req(&gw, "/v1/messages", &msg("nope"))
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // Malformed JSON.
    let r = gw
        .anon(Method::POST, "/v1/messages")
        .header("x-api-key", KEY)
        .body("{not json")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    // Translated requests check Anthropic's required fields.
    let r = anthropic_req(
        &gw,
        "/v1/messages",
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .send()
    .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );
    // The OpenAI routes keep OpenAI's shape.
    let r = gw.post("/v1/chat/completions", &chat("nope")).send().await;
    assert!(r.json()["error"]["message"].is_string());
    assert!(r.json().get("type").is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_info_reports_provider_mode_context_and_prices() {
    let (_mock, gw) = setup().await;
    let v = gw.get("/model/info").send().await.json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{v}");
    let gpt = data.iter().find(|d| d["model_name"] == "gpt").unwrap();
    assert_eq!(gpt["model_info"]["litellm_provider"], "openai");
    assert_eq!(gpt["model_info"]["mode"], "chat");
    assert_eq!(gpt["model_info"]["max_input_tokens"], 128000);
    assert_eq!(gpt["model_info"]["input_cost_per_token"], json!(0.00000015));
    assert_eq!(gpt["litellm_params"]["model"], "openai/gpt-4o-mini");
    let claude = data.iter().find(|d| d["model_name"] == "claude").unwrap();
    assert_eq!(claude["model_info"]["litellm_provider"], "anthropic");
    // Prices and the context window of a known model come from the price table.
    assert!(
        claude["model_info"]["max_input_tokens"].as_u64().unwrap() >= 200_000,
        "{claude}"
    );
    assert!(
        claude["model_info"]["input_cost_per_token"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // No secret anywhere.
    let text = v.to_string();
    assert!(
        !text.contains(UPSTREAM_KEY) && !text.contains(KEY),
        "{text}"
    );

    let models = gw.get("/v1/models").send().await.json();
    let owners: Vec<(&str, &str)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap()))
        .collect();
    assert!(owners.contains(&("claude", "anthropic")), "{owners:?}");
    assert!(owners.contains(&("gpt", "openai")), "{owners:?}");

    let g = gw.get("/model_group/info").send().await.json();
    let gpt = g["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_group"] == "gpt")
        .unwrap()
        .clone();
    assert_eq!(gpt["providers"], json!(["openai"]));
    assert_eq!(gpt["max_input_tokens"], 128000);
    gw.stop().await;
}
