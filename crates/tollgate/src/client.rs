//! Client commands against a running gateway: `--health` (GET /health) and `--test` (a chat completion, a
//! streaming chat completion and a completion).

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate_config::{Config, Env};

use crate::cli::Cli;
use crate::startup::exit;

struct Target {
    base: String,
    key: Option<String>,
}

fn target(cli: &Cli, config: Option<&Config>, env: &Env) -> Target {
    let host = config
        .map(|c| c.server.host.clone())
        .or_else(|| cli.host.clone())
        .unwrap_or_else(|| "0.0.0.0".into());
    let host = if host == "0.0.0.0" || host == "::" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let port = config.map(|c| c.server.port).or(cli.port).unwrap_or(4000);
    let scheme = if config.is_some_and(|c| c.server.tls.is_some()) {
        "https"
    } else {
        "http"
    };
    let key = config
        .and_then(|c| c.master_key.as_ref().map(|k| k.expose().to_string()))
        .or_else(|| env.get("TOLLGATE_MASTER_KEY"))
        .or_else(|| env.get("LITELLM_MASTER_KEY"));
    Target {
        base: format!("{scheme}://{host}:{port}"),
        key,
    }
}

async fn send(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Bytes), String> {
    let client = tollgate_providers::http_client();
    let mut b = Request::builder()
        .method(method)
        .uri(format!("{}{}", t.base, path));
    if let Some(k) = &t.key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let payload = body.map(|v| v.to_string()).unwrap_or_default();
    let req = b
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| e.to_string())?;
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", t.base))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .map_err(|_| "timed out after 120 s".to_string())?
}

pub fn run(cli: &Cli, config: Option<Config>, env: &Env) -> ExitCode {
    let t = target(cli, config.as_ref(), env);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let ok = rt.block_on(async {
        if cli.health {
            health(&t).await
        } else {
            test(
                &t,
                cli.model.clone().or_else(|| chat_model(config.as_ref())),
            )
            .await
        }
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    }
}

async fn health(t: &Target) -> bool {
    match send(t, Method::GET, "/health", None).await {
        Ok((status, body)) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            println!(
                "{}",
                serde_json::to_string_pretty(&v)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).into())
            );
            status.is_success() && v.get("unhealthy_count").and_then(Value::as_u64) == Some(0)
        }
        Err(e) => {
            eprintln!("tollgate --health: {e}");
            false
        }
    }
}

/// A chat model group from the config (mode unset or `chat`, not a wildcard), for `--test`.
fn chat_model(config: Option<&Config>) -> Option<String> {
    config?
        .deployments
        .iter()
        .find(|d| {
            !d.model_name.contains('*')
                && matches!(d.model_info.mode, None | Some(tollgate_config::Mode::Chat))
        })
        .map(|d| d.model_name.clone())
}

async fn test(t: &Target, model: Option<String>) -> bool {
    let model = match model {
        Some(m) => m,
        None => match send(t, Method::GET, "/v1/models", None).await {
            Ok((s, body)) if s.is_success() => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                match v["data"].as_array().and_then(|d| {
                    d.iter()
                        .find_map(|m| m["id"].as_str().filter(|id| !id.contains('*')))
                }) {
                    Some(id) => id.to_string(),
                    None => {
                        eprintln!(
                            "tollgate --test: the gateway lists no model; pass one with --model"
                        );
                        return false;
                    }
                }
            }
            Ok((s, body)) => {
                eprintln!(
                    "tollgate --test: GET /v1/models returned {s}: {}",
                    String::from_utf8_lossy(&body)
                );
                return false;
            }
            Err(e) => {
                eprintln!("tollgate --test: {e}");
                return false;
            }
        },
    };
    println!("testing {} with model `{model}`", t.base);
    let messages =
        json!([{"role": "user", "content": "this is a test request, write a short poem"}]);
    let cases = [
        (
            "chat completion",
            "/v1/chat/completions",
            json!({"model": model, "messages": messages}),
        ),
        (
            "streaming chat completion",
            "/v1/chat/completions",
            json!({"model": model, "messages": messages, "stream": true}),
        ),
        (
            "completion",
            "/v1/completions",
            json!({"model": model, "prompt": "this is a test request, write a short poem"}),
        ),
    ];
    let mut all_ok = true;
    for (name, path, body) in cases {
        let started = std::time::Instant::now();
        match send(t, Method::POST, path, Some(body)).await {
            Ok((s, body)) if s.is_success() => {
                let text = String::from_utf8_lossy(&body);
                let preview: String = text.chars().take(200).collect();
                println!(
                    "ok    {name}: {s} in {:.0} ms: {preview}",
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
            Ok((s, body)) => {
                all_ok = false;
                println!("FAIL  {name}: {s}: {}", String::from_utf8_lossy(&body));
            }
            Err(e) => {
                all_ok = false;
                println!("FAIL  {name}: {e}");
            }
        }
    }
    all_ok
}
