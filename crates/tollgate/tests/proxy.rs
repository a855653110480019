//! The proxy path end to end: the real binary in front of the mock upstream. What the upstream receives
//! (body byte for byte except `model`, credentials, extra headers), what the client gets back (model, usage,
//! LiteLLM headers), every OpenAI route form, model listing, wildcards, aliases, and the built-in `mock/`
//! provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Method;
use serde_json::{Value, json};

fn deployment_config(base: &str) -> String {
    format!(
        r#"model_list:
  - model_name: my-gpt
    litellm_params:
      model: openai/gpt-4o-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
      organization: org-it-123
      extra_headers:
        x-it-extra: hello-extra
    model_info:
      id: dep-my-gpt
  - model_name: my-embed
    litellm_params:
      model: openai/text-embedding-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      mode: embedding
router_settings:
  model_group_alias:
    gpt-4: my-gpt
general_settings:
  master_key: {KEY}
"#
    )
}

fn is_uuid_v7(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_is_proxied_with_only_model_rewritten() {
    let mock = mock().await;
    let base = mock.base_url();
    let gw = gateway().config(deployment_config(&base)).start();

    // Unusual but valid JSON: odd spacing, escapes, key order, number forms. Only `model` may change.
    let client_body = "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"h\\u00e9llo \\\"q\\\" \u{1F600}\"} ],\n  \"model\":   \"my-gpt\" , \"temperature\":0.50,\"max_tokens\":7,\"metadata\":{\"k\":[1,2.0e0,null]},\"user\":\"u-1\"}";
    let r = gw
        .req(Method::POST, "/v1/chat/completions")
        .body(client_body.to_string())
        .send()
        .await;
    r.expect_status(200);
    let v = r.json();

    // What the upstream received.
    let rec = mock.recorded();
    assert_eq!(rec.len(), 1, "{rec:?}");
    let up = &rec[0];
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, "/v1/chat/completions");
    let expected = client_body.replace("\"my-gpt\"", "\"gpt-4o-upstream\"");
    assert_eq!(
        String::from_utf8_lossy(&up.body),
        expected,
        "upstream body differs beyond `model`"
    );
    assert_eq!(
        up.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(up.header("openai-organization"), Some("org-it-123"));
    assert_eq!(up.header("x-it-extra"), Some("hello-extra"));
    for (k, val) in &up.headers {
        assert!(
            !val.contains(KEY),
            "the master key leaked upstream in header {k}"
        );
    }

    // What the client got.
    assert_eq!(v["model"], "my-gpt", "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{v}"
    );
    let u = &v["usage"];
    let (p, c, t) = (
        u["prompt_tokens"].as_u64(),
        u["completion_tokens"].as_u64(),
        u["total_tokens"].as_u64(),
    );
    assert!(p.unwrap() > 0 && c.unwrap() > 0, "{v}");
    assert_eq!(t, Some(p.unwrap() + c.unwrap()));

    let rid = r.header("x-request-id").expect("x-request-id").to_string();
    assert!(is_uuid_v7(&rid), "x-request-id is not a UUIDv7: {rid}");
    assert_eq!(r.header("x-litellm-call-id"), Some(rid.as_str()));
    assert_eq!(
        up.header("x-request-id"),
        Some(rid.as_str()),
        "request id is passed upstream"
    );
    assert_eq!(r.header("x-litellm-model-id"), Some("dep-my-gpt"));
    assert_eq!(r.header("x-litellm-model-api-base"), Some(base.as_str()));
    let overhead: f64 = r
        .header("x-litellm-overhead-duration-ms")
        .expect("overhead header")
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );

    // A client-supplied request id is propagated (response and upstream); an unsafe one is replaced.
    let r = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .header("x-request-id", "it-req-42")
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(r.header("x-request-id"), Some("it-req-42"));
    assert_eq!(r.header("x-litellm-call-id"), Some("it-req-42"));
    assert_eq!(
        mock.recorded().last().unwrap().header("x-request-id"),
        Some("it-req-42")
    );
    let r = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .header("x-request-id", "bad id<>")
        .send()
        .await;
    r.expect_status(200);
    assert!(
        is_uuid_v7(r.header("x-request-id").unwrap()),
        "{:?}",
        r.header("x-request-id")
    );

    // Two requests without an id get different ids.
    let a = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .send()
        .await;
    let b = gw
        .post("/v1/chat/completions", &chat("my-gpt"))
        .send()
        .await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_embeddings_and_routes_without_v1() {
    let mock = mock().await;
    let gw = gateway()
        .config(deployment_config(&mock.base_url()))
        .start();

    for prefix in ["/v1", ""] {
        mock.clear_recorded();
        let r = gw
            .post(
                &format!("{prefix}/completions"),
                &json!({"model": "my-gpt", "prompt": "Say hi", "max_tokens": 5}),
            )
            .send()
            .await;
        r.expect_status(200);
        let v = r.json();
        assert_eq!(v["model"], "my-gpt");
        assert_eq!(v["object"], "text_completion", "{v}");
        assert!(
            v["choices"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{v}"
        );
        assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
        let up = mock.recorded().pop().unwrap();
        assert_eq!(up.path, "/v1/completions");
        assert_eq!(up.json().unwrap()["model"], "gpt-4o-upstream");

        let r = gw
            .post(
                &format!("{prefix}/embeddings"),
                &json!({"model": "my-embed", "input": ["one", "two", "three"]}),
            )
            .send()
            .await;
        r.expect_status(200);
        let v = r.json();
        assert_eq!(v["model"], "my-embed");
        assert_eq!(v["object"], "list");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3, "{v}");
        assert!(
            data[0]["embedding"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{v}"
        );
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        let up = mock.recorded().pop().unwrap();
        assert_eq!(up.path, "/v1/embeddings");
        assert_eq!(up.json().unwrap()["model"], "text-embedding-upstream");

        let r = gw
            .post(&format!("{prefix}/chat/completions"), &chat("my-gpt"))
            .send()
            .await;
        r.expect_status(200);
        assert_eq!(r.json()["model"], "my-gpt");

        let r = gw.get(&format!("{prefix}/models")).send().await;
        r.expect_status(200);
        let ids: Vec<String> = r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            ids.contains(&"my-gpt".to_string()) && ids.contains(&"my-embed".to_string()),
            "{ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_passthrough() {
    let mock = mock().await;
    let gw = gateway()
        .config(deployment_config(&mock.base_url()))
        .start();

    let r = gw
        .req(Method::POST, "/v1/responses")
        .body(r#"{"input": "Tell me a joke", "model":"my-gpt"}"#)
        .send()
        .await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["model"], "my-gpt");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0, "{v}");
    let up = mock.recorded().pop().unwrap();
    assert_eq!(up.path, "/v1/responses");
    assert_eq!(
        String::from_utf8_lossy(&up.body),
        r#"{"input": "Tell me a joke", "model":"gpt-4o-upstream"}"#,
        "responses body is forwarded unchanged except model"
    );

    let resp = gw
        .post(
            "/responses",
            &json!({"model": "my-gpt", "input": "Tell me a joke", "stream": true}),
        )
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.error.is_none(), "{:?}", sse.error);
    let names: Vec<&str> = sse
        .events
        .iter()
        .filter_map(|e| e.event.as_deref())
        .collect();
    assert!(
        names.contains(&"response.created"),
        "{names:?}\n{}",
        sse.raw()
    );
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    let up = mock.recorded().pop().unwrap();
    let upv = up.json().unwrap();
    assert_eq!(upv["model"], "gpt-4o-upstream");
    assert!(
        upv.get("stream_options").is_none(),
        "no stream_options injected into a Responses request: {upv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_and_engines_routes_take_the_model_from_the_path() {
    let mock = mock().await;
    let gw = gateway()
        .config(deployment_config(&mock.base_url()))
        .start();

    // Azure SDK style: `api-key` header, model only in the path, query string with the api version.
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let r = gw
        .anon(
            Method::POST,
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-06-01",
        )
        .header("api-key", KEY)
        .json(&body)
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(r.json()["model"], "my-gpt");
    let up = mock.recorded().pop().unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    let upv = up.json().unwrap();
    assert_eq!(upv["model"], "gpt-4o-upstream");
    assert_eq!(upv["messages"], body["messages"]);

    // Without the key it is rejected like any other route.
    let r = gw
        .anon(Method::POST, "/openai/deployments/my-gpt/chat/completions")
        .json(&body)
        .send()
        .await;
    r.expect_error(401);

    let r = gw
        .post(
            "/openai/deployments/my-embed/embeddings",
            &json!({"input": "x"}),
        )
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(r.json()["model"], "my-embed");

    for path in [
        "/engines/my-gpt/chat/completions",
        "/v1/engines/my-gpt/chat/completions",
    ] {
        let r = gw.post(path, &json!({"model": "ignored-in-body", "messages": [{"role": "user", "content": "hi"}]})).send().await;
        r.expect_status(200);
        assert_eq!(r.json()["model"], "my-gpt", "{path}");
        assert_eq!(
            mock.recorded().pop().unwrap().json().unwrap()["model"],
            "gpt-4o-upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_and_retrieve() {
    let mock = mock().await;
    let gw = gateway()
        .config(deployment_config(&mock.base_url()))
        .start();

    let r = gw.get("/v1/models").send().await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let mut ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["gpt-4", "my-embed", "my-gpt"], "{v}");
    for m in data {
        assert_eq!(m["object"], "model");
        assert!(m["created"].as_u64().is_some());
        assert!(m["owned_by"].is_string());
    }
    // The models list is local: the upstream is not asked.
    assert_eq!(mock.request_count(), 0);

    let r = gw.get("/v1/models/my-gpt").send().await;
    r.expect_status(200);
    assert_eq!(r.json()["id"], "my-gpt");
    assert_eq!(r.json()["object"], "model");
    let r = gw.get("/v1/models/gpt-4").send().await;
    r.expect_status(200);

    let e = gw
        .get("/v1/models/no-such-model")
        .send()
        .await
        .expect_error(404);
    assert!(
        e["message"].as_str().unwrap().contains("no-such-model"),
        "{e}"
    );

    // Listing needs the key.
    gw.anon(Method::GET, "/v1/models")
        .send()
        .await
        .expect_error(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_and_aliases_route_to_the_right_deployment() {
    let mock = mock().await;
    let base = mock.base_url();
    let gw = gateway()
        .config(format!(
            r#"model_list:
  - model_name: "*"
    litellm_params:
      model: "openai/*"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      id: dep-star
  - model_name: "openai/*"
    litellm_params:
      model: "openai/*"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      id: dep-openai-star
  - model_name: exact-one
    litellm_params:
      model: openai/exact-upstream
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      id: dep-exact
router_settings:
  model_group_alias:
    friendly: exact-one
    secret-name:
      model: exact-one
      hidden: true
general_settings:
  master_key: {KEY}
"#
        ))
        .start();

    // (requested, deployment id, upstream model)
    let cases = [
        ("some-model-x", "dep-star", "some-model-x"),
        ("openai/gpt-4o-mini", "dep-openai-star", "gpt-4o-mini"),
        ("exact-one", "dep-exact", "exact-upstream"),
        ("friendly", "dep-exact", "exact-upstream"),
        ("secret-name", "dep-exact", "exact-upstream"),
    ];
    for (requested, dep, upstream) in cases {
        let r = gw
            .post("/v1/chat/completions", &chat(requested))
            .send()
            .await;
        r.expect_status(200);
        assert_eq!(
            r.json()["model"],
            requested,
            "the client sees the name it asked for"
        );
        assert_eq!(r.header("x-litellm-model-id"), Some(dep), "{requested}");
        let up = mock.recorded().pop().unwrap();
        assert_eq!(up.json().unwrap()["model"], upstream, "{requested}");
    }

    let r = gw.get("/v1/models").send().await;
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().into())
        .collect();
    for id in ["exact-one", "friendly"] {
        assert!(ids.iter().any(|i| i == id), "{id} not listed: {ids:?}");
    }
    assert!(
        !ids.iter().any(|i| i == "secret-name"),
        "a hidden alias is listed: {ids:?}"
    );
    let r = gw.get("/v1/models/friendly").send().await;
    r.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_mock_provider_answers_locally() {
    let gw = gateway()
        .config(format!(
            r#"model_list:
  - model_name: local-chat
    litellm_params:
      model: mock/local-chat
      mock_response: "Hello from the built in mock"
  - model_name: local-free
    litellm_params:
      model: mock/free
  - model_name: local-embed
    litellm_params:
      model: mock/embed
    model_info:
      mode: embedding
general_settings:
  master_key: {KEY}
"#
        ))
        .start();

    let r = gw
        .post("/v1/chat/completions", &chat("local-chat"))
        .send()
        .await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["model"], "local-chat");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the built in mock"
    );
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.header("x-litellm-model-api-base"), Some("mock://local"));

    // The request's own `mock_response` is used when the deployment has none.
    let mut body = chat("local-free");
    body["mock_response"] = json!("per request text");
    let r = gw.post("/v1/chat/completions", &body).send().await;
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "per request text"
    );

    // Streaming, without and with usage.
    for include_usage in [false, true] {
        let resp = gw
            .post(
                "/v1/chat/completions",
                &chat_stream("local-chat", include_usage),
            )
            .open()
            .await;
        assert_eq!(resp.status(), 200);
        let sse = read_sse(resp.into_body()).await;
        assert!(sse.ends_with_done(), "{}", sse.raw());
        assert_eq!(sse.text(), "Hello from the built in mock");
        let usage_chunks = sse
            .json_events()
            .iter()
            .filter(|e| !e["usage"].is_null())
            .count();
        assert_eq!(usage_chunks, usize::from(include_usage), "{}", sse.raw());
        for e in sse.json_events() {
            assert_eq!(e["model"], "local-chat");
        }
    }

    let r = gw
        .post(
            "/v1/embeddings",
            &json!({"model": "local-embed", "input": ["a", "b"]}),
        )
        .send()
        .await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["model"], "local-embed");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    let r = gw
        .post(
            "/v1/completions",
            &json!({"model": "local-chat", "prompt": "x"}),
        )
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(
        r.json()["choices"][0]["text"],
        "Hello from the built in mock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_config_serves_its_mock_models() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/config.yaml");
    let out = gateway()
        .args(["--config", example, "--validate_config"])
        .run();
    assert_eq!(
        out.code(),
        Some(0),
        "--validate_config failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.is_empty(), "a summary is printed");
    assert!(
        !out.stdout.contains("tollgate listening on"),
        "{}",
        out.stdout
    );

    let gw = gateway().args(["--config", example]).start();
    let r = gw
        .req(Method::POST, "/v1/chat/completions")
        .bearer("sk-tollgate-example")
        .json(&chat("mock-gpt"))
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Hello from tollgate's built-in mock provider."
    );
    // The example's prices: the cost header is usage x price.
    let u = &r.json()["usage"];
    let expected = u["prompt_tokens"].as_f64().unwrap() * 0.0000005
        + u["completion_tokens"].as_f64().unwrap() * 0.0000015;
    let cost: f64 = r
        .header("x-litellm-response-cost")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        expected > 0.0 && (cost - expected).abs() < 1e-12,
        "{cost} vs {expected}"
    );
    let r = gw
        .req(Method::POST, "/v1/embeddings")
        .bearer("sk-tollgate-example")
        .json(&json!({"model": "mock-embedding", "input": "x"}))
        .send()
        .await;
    r.expect_status(200);
    let _: Value = r.json();
    // The example turns metrics on: the chat above is counted.
    let m = gw.anon(Method::GET, "/metrics").send().await;
    m.expect_status(200);
    assert!(
        m.text()
            .contains("litellm_proxy_total_requests_metric_total{api_key_alias=\"None\""),
        "{}",
        m.text()
    );
}
