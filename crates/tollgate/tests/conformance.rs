//! The provider conformance suite: every provider, through the real gateway binary and the mock upstream
//! speaking that provider's wire format, must pass the same OpenAI-level checks — chat, streaming, tool
//! calls (complete and streamed), images, JSON mode, stop sequences, max tokens, usage incl. cached and
//! reasoning tokens, finish reasons, error mapping and timeouts. One gateway serves one deployment per
//! provider; the mock's server-wide knobs set each scenario's upstream behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

/// What a provider's API reports, so a check is only made where the provider has the feature.
#[derive(Clone, Copy)]
struct Caps {
    /// Reports reasoning tokens separately (Anthropic and Bedrock count them inside output tokens).
    reasoning_tokens: bool,
    /// Reports prompt-cache reads.
    cached_tokens: bool,
    /// Has a safety stop.
    content_filter: bool,
}

const ALL: Caps = Caps {
    reasoning_tokens: true,
    cached_tokens: true,
    content_filter: true,
};

struct Case {
    /// The provider under test (also the model group name).
    name: &'static str,
    /// `litellm_params` lines; `{root}` is the mock's address (`http://127.0.0.1:PORT`), `{key}` the upstream key,
    /// `{aws_secret}` the upstream AWS secret access key.
    params: &'static str,
    caps: Caps,
}

const CASES: &[Case] = &[
    Case {
        name: "openai",
        params: "model: openai/gpt-4o-mini\napi_base: {root}/v1\napi_key: {key}",
        caps: ALL,
    },
    Case {
        name: "azure",
        params: "model: azure/my-gpt4o\napi_base: {root}\napi_version: \"2024-10-21\"\napi_key: {key}",
        caps: ALL,
    },
    Case {
        name: "azure-v1",
        params: "model: azure/my-gpt4o\napi_base: {root}\napi_version: v1\napi_key: {key}",
        caps: ALL,
    },
    Case {
        name: "anthropic",
        params: "model: anthropic/claude-3-5-sonnet-20241022\napi_base: {root}\napi_key: {key}",
        caps: Caps {
            reasoning_tokens: false,
            ..ALL
        },
    },
    Case {
        name: "gemini",
        params: "model: gemini/gemini-2.0-flash\napi_base: {root}\napi_key: {key}",
        caps: ALL,
    },
    Case {
        name: "bedrock",
        params: "model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0\napi_base: {root}\naws_access_key_id: {key}\naws_secret_access_key: {aws_secret}\naws_region_name: us-east-1",
        caps: Caps {
            reasoning_tokens: false,
            ..ALL
        },
    },
    Case {
        name: "ollama_chat",
        params: "model: ollama_chat/llama3.1\napi_base: {root}\napi_key: {key}",
        caps: Caps {
            reasoning_tokens: false,
            cached_tokens: false,
            content_filter: false,
        },
    },
    Case {
        name: "groq",
        params: "model: groq/llama-3.1-8b-instant\napi_base: {root}/v1\napi_key: {key}",
        caps: ALL,
    },
    Case {
        name: "mistral",
        params: "model: mistral/mistral-small-latest\napi_base: {root}/v1\napi_key: {key}",
        caps: ALL,
    },
];

fn config(root: &str) -> String {
    let mut s = String::from("model_list:\n");
    for c in CASES {
        s.push_str(&format!(
            "  - model_name: {}\n    litellm_params:\n",
            c.name
        ));
        for line in c.params.lines() {
            let line = line
                .replace("{root}", root)
                .replace("{key}", UPSTREAM_KEY)
                .replace("{aws_secret}", UPSTREAM_AWS_SECRET);
            s.push_str(&format!("      {line}\n"));
        }
    }
    s.push_str(&format!(
        "general_settings:\n  master_key: {KEY}\nrouter_settings:\n  num_retries: 0\n"
    ));
    s
}

/// A 1x1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

const WEATHER_TOOL: &str = r#"[{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]"#;

type Check = Result<(), String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(what()) }
}

struct Ctx<'a> {
    gw: &'a Gateway,
    mock: &'a tollgate_mock::MockServer,
}

impl Ctx<'_> {
    /// Set the mock's server-wide knobs for the next request (`[]` clears them).
    fn knobs(&self, k: &[(&str, &str)]) {
        self.mock.clear_faults();
        if !k.is_empty() {
            self.mock.set_faults(k).unwrap();
        }
    }

    async fn chat(&self, body: Value) -> Resp {
        self.gw.post("/v1/chat/completions", &body).send().await
    }

    async fn ok(&self, body: Value) -> Result<Value, String> {
        let r = self.chat(body).await;
        if r.status != 200 {
            return Err(format!("status {}: {}", r.status, r.text()));
        }
        Ok(r.json())
    }

    async fn stream(&self, body: Value) -> Result<Sse, String> {
        let resp = self.gw.post("/v1/chat/completions", &body).open().await;
        if resp.status() != 200 {
            let (_, b) = resp.into_parts();
            return Err(format!("stream status: {}", read_sse(b).await.raw()));
        }
        Ok(read_sse(resp.into_body()).await)
    }
}

fn user(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn choice(v: &Value) -> &Value {
    &v["choices"][0]
}

async fn chat(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("content", "Hello from the mock")]);
    let v = c
        .ok(json!({"model": m, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"}]}))
        .await?;
    ensure(v["object"] == "chat.completion", || format!("object: {v}"))?;
    ensure(v["model"] == m, || {
        format!("model should be the requested name: {v}")
    })?;
    ensure(
        choice(&v)["message"]["content"] == "Hello from the mock",
        || format!("content: {v}"),
    )?;
    ensure(choice(&v)["message"]["role"] == "assistant", || {
        format!("role: {v}")
    })?;
    ensure(choice(&v)["finish_reason"] == "stop", || {
        format!("finish: {v}")
    })?;
    let u = &v["usage"];
    ensure(
        u["prompt_tokens"].as_u64() > Some(0) && u["completion_tokens"].as_u64() == Some(4),
        || format!("usage: {u}"),
    )?;
    ensure(
        u["total_tokens"].as_u64()
            == Some(
                u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap(),
            ),
        || format!("total: {u}"),
    )
}

async fn streaming(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("content", "one two three four five six"), ("chunks", "3")]);
    let mut body = user(m, "count");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let sse = c.stream(body).await?;
    ensure(sse.text() == "one two three four five six", || {
        format!("streamed text {:?}: {}", sse.text(), sse.raw())
    })?;
    let events = sse.json_events();
    let content_chunks = events
        .iter()
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    ensure(content_chunks >= 2, || {
        format!("expected several content chunks: {}", sse.raw())
    })?;
    ensure(
        events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk" && e["model"] == m),
        || format!("chunk object/model: {}", sse.raw()),
    )?;
    ensure(
        events
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "stop"),
        || format!("no finish_reason stop: {}", sse.raw()),
    )?;
    let usage = events.iter().rev().find(|e| e["usage"].is_object());
    ensure(
        usage.is_some_and(|u| u["usage"]["completion_tokens"].as_u64() == Some(6)),
        || format!("usage chunk: {}", sse.raw()),
    )?;
    ensure(sse.ends_with_done(), || format!("no [DONE]: {}", sse.raw()))?;
    // Without include_usage there is no usage chunk.
    let mut body = user(m, "count");
    body["stream"] = json!(true);
    let sse = c.stream(body).await?;
    ensure(
        !sse.json_events().iter().any(|e| e["usage"].is_object()),
        || format!("usage chunk not asked for: {}", sse.raw()),
    )
}

async fn tools(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("tool_call", "1"), ("content", r#"{"city":"Paris"}"#)]);
    let mut body = user(m, "Weather in Paris?");
    body["tools"] = serde_json::from_str(WEATHER_TOOL).unwrap();
    let v = c.ok(body.clone()).await?;
    let call = &choice(&v)["message"]["tool_calls"][0];
    ensure(call["function"]["name"] == "get_weather", || {
        format!("tool call: {v}")
    })?;
    ensure(
        call["type"] == "function" && call["id"].as_str().is_some_and(|s| !s.is_empty()),
        || format!("tool call id/type: {v}"),
    )?;
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("x"))
        .map_err(|e| format!("arguments are not JSON ({e}): {v}"))?;
    ensure(args == json!({"city": "Paris"}), || {
        format!("arguments: {v}")
    })?;
    ensure(choice(&v)["finish_reason"] == "tool_calls", || {
        format!("finish: {v}")
    })?;
    // The tool result goes back, and the model answers in text.
    c.knobs(&[("content", "It is sunny")]);
    let id = call["id"].as_str().unwrap().to_string();
    let mut back = body.clone();
    back["messages"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": id, "content": "{\"sky\":\"sunny\"}"}
    ]);
    let v = c.ok(back).await?;
    ensure(choice(&v)["message"]["content"] == "It is sunny", || {
        format!("after tool: {v}")
    })?;
    // Streamed tool call: the argument pieces add up.
    c.knobs(&[("tool_call", "1"), ("content", r#"{"city":"Paris"}"#)]);
    body["stream"] = json!(true);
    let sse = c.stream(body).await?;
    let mut name = String::new();
    let mut args = String::new();
    for e in sse.json_events() {
        if let Some(tc) = e["choices"][0]["delta"]["tool_calls"].as_array() {
            for t in tc {
                name.push_str(t["function"]["name"].as_str().unwrap_or(""));
                args.push_str(t["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
    }
    ensure(name == "get_weather", || {
        format!("streamed tool name {name:?}: {}", sse.raw())
    })?;
    let parsed: Value =
        serde_json::from_str(&args).map_err(|e| format!("streamed arguments {args:?}: {e}"))?;
    ensure(parsed == json!({"city": "Paris"}), || {
        format!("streamed args: {args}")
    })?;
    ensure(
        sse.json_events()
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"),
        || format!("streamed finish: {}", sse.raw()),
    )
}

async fn images(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[]);
    c.mock.clear_recorded();
    let body = json!({"model": m, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}}
    ]}]});
    c.ok(body).await?;
    let rec = c.mock.recorded();
    let sent = rec
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains(PNG_B64));
    ensure(sent, || "the image data did not reach the upstream".into())
}

async fn json_mode(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("content", "forty two")]);
    let mut body = user(m, "Answer in JSON");
    body["response_format"] = json!({"type": "json_object"});
    let v = c.ok(body).await?;
    let text = choice(&v)["message"]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let parsed: Value =
        serde_json::from_str(&text).map_err(|e| format!("content is not JSON ({e}): {v}"))?;
    ensure(parsed.is_object(), || format!("JSON object expected: {v}"))?;
    ensure(choice(&v)["finish_reason"] == "stop", || {
        format!("finish: {v}")
    })?;
    let mut body = user(m, "Answer in JSON");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer",
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}});
    let v = c.ok(body).await?;
    let text = choice(&v)["message"]["content"].as_str().unwrap_or("");
    ensure(
        serde_json::from_str::<Value>(text).is_ok_and(|p| p.is_object()),
        || format!("json_schema answer: {v}"),
    )
}

async fn stop_and_length(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("content", "alpha beta STOP gamma delta")]);
    let mut body = user(m, "go");
    body["stop"] = json!(["STOP"]);
    let v = c.ok(body).await?;
    let text = choice(&v)["message"]["content"].as_str().unwrap_or("");
    ensure(text.trim() == "alpha beta", || format!("cut at stop: {v}"))?;
    ensure(choice(&v)["finish_reason"] == "stop", || {
        format!("stop finish: {v}")
    })?;
    let mut body = user(m, "go");
    body["max_tokens"] = json!(2);
    let v = c.ok(body).await?;
    let text = choice(&v)["message"]["content"].as_str().unwrap_or("");
    ensure(text.trim() == "alpha beta", || {
        format!("cut at max_tokens: {v}")
    })?;
    ensure(choice(&v)["finish_reason"] == "length", || {
        format!("length finish: {v}")
    })
}

async fn usage_details(c: &Ctx<'_>, m: &str, caps: Caps) -> Check {
    c.knobs(&[("cached_tokens", "3"), ("reasoning_tokens", "5")]);
    let long = "cache me ".repeat(20);
    let mut body = user(m, &long);
    body["reasoning_effort"] = json!("low");
    body["drop_params"] = json!(true);
    let v = c.ok(body).await?;
    let u = &v["usage"];
    if caps.cached_tokens {
        ensure(u["prompt_tokens_details"]["cached_tokens"] == 3, || {
            format!("cached: {u}")
        })?;
    }
    if caps.reasoning_tokens {
        ensure(
            u["completion_tokens_details"]["reasoning_tokens"] == 5,
            || format!("reasoning: {u}"),
        )?;
    }
    ensure(
        u["prompt_tokens"].as_u64() >= Some(if caps.cached_tokens { 3 } else { 1 }),
        || format!("prompt tokens include cached ones: {u}"),
    )
}

async fn content_filter(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("finish", "content_filter")]);
    let v = c.ok(user(m, "something unsafe")).await?;
    ensure(choice(&v)["finish_reason"] == "content_filter", || {
        format!("content filter finish: {v}")
    })
}

async fn errors(c: &Ctx<'_>, m: &str) -> Check {
    for (status, want) in [
        ("429", 429),
        ("400", 400),
        ("401", 401),
        ("500", 502),
        ("503", 502),
    ] {
        c.knobs(&[("status", status)]);
        let r = c.chat(user(m, "hi")).await;
        ensure(r.status.as_u16() == want, || {
            format!(
                "upstream {status} -> want {want}, got {}: {}",
                r.status,
                r.text()
            )
        })?;
        let e = r.json();
        ensure(
            e["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
                && e["error"]["type"].is_string(),
            || format!("error body for {status}: {e}"),
        )?;
    }
    c.knobs(&[("status", "429"), ("retry_after", "7")]);
    let r = c.chat(user(m, "hi")).await;
    ensure(
        r.status == 429 && r.header("retry-after") == Some("7"),
        || format!("429 keeps Retry-After: {} {:?}", r.status, r.headers),
    )?;
    c.knobs(&[("error_code", "context_length_exceeded")]);
    let r = c.chat(user(m, "hi")).await;
    let e = r.json();
    ensure(
        r.status == 400 && e["error"]["code"] == "context_length_exceeded",
        || format!("context window error: {} {e}", r.status),
    )
}

async fn timeouts(c: &Ctx<'_>, m: &str) -> Check {
    c.knobs(&[("latency_ms", "3000")]);
    let mut body = user(m, "slow");
    body["timeout"] = json!(0.3);
    let r = c.chat(body.clone()).await;
    ensure(r.status == 504, || {
        format!("timeout -> 504, got {}: {}", r.status, r.text())
    })?;
    body["stream"] = json!(true);
    let r = c.chat(body).await;
    ensure(r.status == 504, || {
        format!("stream timeout -> 504, got {}: {}", r.status, r.text())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_passes_the_same_checks() {
    let mock = mock().await;
    let root = mock.base_url().trim_end_matches("/v1").to_string();
    let gw = gateway().config(config(&root)).start();
    let c = Ctx {
        gw: &gw,
        mock: &mock,
    };
    let mut failures: Vec<String> = Vec::new();
    for case in CASES {
        let m = case.name;
        let mut results: Vec<(&str, Check)> = vec![
            ("chat", chat(&c, m).await),
            ("streaming", streaming(&c, m).await),
            ("tools", tools(&c, m).await),
            ("images", images(&c, m).await),
            ("json_mode", json_mode(&c, m).await),
            ("stop_and_length", stop_and_length(&c, m).await),
            ("usage_details", usage_details(&c, m, case.caps).await),
            ("errors", errors(&c, m).await),
            ("timeouts", timeouts(&c, m).await),
        ];
        if case.caps.content_filter {
            results.push(("content_filter", content_filter(&c, m).await));
        }
        for (check, r) in results {
            if let Err(e) = r {
                failures.push(format!("{m} / {check}: {e}"));
            }
        }
    }
    c.knobs(&[]);
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}\n--- gateway stderr (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        gw.stderr()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
