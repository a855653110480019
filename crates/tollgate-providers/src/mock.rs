//! The built-in `mock/...` provider: answers locally without any upstream, like LiteLLM's `mock_response`.
//! For trying tollgate out and for users' own CI. The reply text is `litellm_params.mock_response`, else the
//! request's `mock_response` field, else a fixed sentence.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tollgate_config::Deployment;
use tollgate_core::wire::JsonObject;
use tollgate_core::{GatewayError, Usage};

use crate::sse::encode;
use crate::stream::{ChunkStream, StreamOutcome};
use crate::{BoxFuture, Call, Endpoint, Provider, Reply};

pub const DEFAULT_REPLY: &str = "This is a mock response from tollgate.";
const EMBEDDING_DIMS: usize = 8;

pub struct MockProvider {
    reply: Option<String>,
}

impl MockProvider {
    pub fn new(d: &Deployment) -> Self {
        MockProvider {
            reply: d.mock_response.clone(),
        }
    }
}

impl Provider for MockProvider {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn api_base(&self) -> &str {
        "mock://local"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::Responses
        )
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let result = respond(self.reply.as_deref(), &call);
        Box::pin(async move { result })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Rough token estimate (about four characters a token), never zero.
fn estimate_tokens(chars: usize) -> u64 {
    (chars.div_ceil(4)).max(1) as u64
}

fn respond(configured: Option<&str>, call: &Call) -> Result<Reply, GatewayError> {
    let obj =
        JsonObject::parse(&call.body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let from_request = obj.get_str("mock_response").map_err(|_| {
        GatewayError::invalid_param("mock_response", "mock_response must be a string")
    })?;
    let text = configured
        .map(str::to_string)
        .or_else(|| from_request.map(|c| c.into_owned()))
        .unwrap_or_else(|| DEFAULT_REPLY.to_string());
    let prompt_chars: usize = ["messages", "prompt", "input"]
        .iter()
        .filter_map(|k| obj.get(k))
        .map(|r| r.get().len())
        .sum();
    let prompt_tokens = estimate_tokens(prompt_chars);
    let completion_tokens = text.split_whitespace().count().max(1) as u64;
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        ..Usage::default()
    };
    let id = format!("chatcmpl-mock-{}", call.request_id);
    let model = call.requested_model.as_str();
    let created = now();
    let usage_json = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    });
    let to_bytes = |v: Value| {
        serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(e.to_string()))
    };
    match call.endpoint {
        Endpoint::Embeddings => {
            let inputs = match obj
                .get("input")
                .map(|r| serde_json::from_str::<Value>(r.get()))
            {
                Some(Ok(Value::Array(items))) => items.len().max(1),
                Some(Ok(_)) => 1,
                Some(Err(_)) | None => {
                    return Err(GatewayError::invalid_param("input", "input is required"));
                }
            };
            let data: Vec<Value> = (0..inputs)
                .map(|i| {
                    let v: Vec<f64> = (0..EMBEDDING_DIMS)
                        .map(|d| ((i * 31 + d * 7) % 100) as f64 / 100.0)
                        .collect();
                    json!({"object": "embedding", "index": i, "embedding": v})
                })
                .collect();
            let body = json!({
                "object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
            });
            let usage = Usage {
                completion_tokens: 0,
                total_tokens: usage.prompt_tokens,
                ..usage
            };
            Ok(Reply::Complete {
                body: to_bytes(body)?,
                usage: Some(usage),
            })
        }
        Endpoint::Responses => {
            let usage_r = json!({"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens});
            let body = json!({
                "id": format!("resp_mock_{}", call.request_id), "object": "response", "created_at": created,
                "status": "completed", "model": model,
                "output": [{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                "usage": usage_r,
            });
            if call.stream {
                let mut events = Vec::new();
                encode(Some("response.created"), &serde_json::to_vec(&json!({"type": "response.created", "response": {"id": body["id"], "object": "response", "status": "in_progress", "model": model}})).unwrap_or_default(), &mut events);
                encode(Some("response.output_text.delta"), &serde_json::to_vec(&json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": text})).unwrap_or_default(), &mut events);
                encode(
                    Some("response.completed"),
                    &serde_json::to_vec(&json!({"type": "response.completed", "response": body}))
                        .unwrap_or_default(),
                    &mut events,
                );
                return Ok(Reply::Stream(single_stream(
                    vec![Bytes::from(events)],
                    usage,
                )));
            }
            Ok(Reply::Complete {
                body: to_bytes(body)?,
                usage: Some(usage),
            })
        }
        Endpoint::Messages | Endpoint::CountTokens | Endpoint::Rerank => {
            Err(GatewayError::invalid(format!(
                "the mock provider does not serve {}",
                call.endpoint.path()
            )))
        }
        Endpoint::ChatCompletions | Endpoint::Completions => {
            let chat = call.endpoint == Endpoint::ChatCompletions;
            if !call.stream {
                let choice = if chat {
                    json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": null})
                } else {
                    json!({"index": 0, "text": text, "finish_reason": "stop", "logprobs": null})
                };
                let body = json!({
                    "id": id, "object": if chat { "chat.completion" } else { "text_completion" },
                    "created": created, "model": model, "choices": [choice], "usage": usage_json,
                });
                return Ok(Reply::Complete {
                    body: to_bytes(body)?,
                    usage: Some(usage),
                });
            }
            let object = if chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let mut chunks = Vec::new();
            let words: Vec<&str> = text.split_inclusive(' ').collect();
            let push = |choice: Value, usage: Option<&Value>, chunks: &mut Vec<Bytes>| {
                let mut v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
                if let Some(u) = usage {
                    v["choices"] = json!([]);
                    v["usage"] = u.clone();
                }
                let mut out = Vec::new();
                encode(None, &serde_json::to_vec(&v).unwrap_or_default(), &mut out);
                chunks.push(Bytes::from(out));
            };
            if chat {
                push(
                    json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
                    None,
                    &mut chunks,
                );
            }
            for (i, w) in words.iter().enumerate() {
                let last = i + 1 == words.len();
                let finish = if last { json!("stop") } else { Value::Null };
                let choice = if chat {
                    json!({"index": 0, "delta": {"content": w}, "finish_reason": finish})
                } else {
                    json!({"index": 0, "text": w, "finish_reason": finish})
                };
                push(choice, None, &mut chunks);
            }
            if call.client_wants_usage {
                push(Value::Null, Some(&usage_json), &mut chunks);
            }
            chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
            Ok(Reply::Stream(single_stream(chunks, usage)))
        }
    }
}

fn single_stream(chunks: Vec<Bytes>, usage: Usage) -> ChunkStream {
    let outcome = Arc::new(StreamOutcome::default());
    outcome.set_usage(usage);
    let o = outcome.clone();
    let n = chunks.len();
    let body = futures_util::stream::iter(chunks.into_iter().enumerate().map(move |(i, c)| {
        o.add_chunk();
        if i + 1 == n {
            o.set_completed();
        }
        c
    }))
    .boxed();
    ChunkStream { body, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn call(endpoint: Endpoint, body: &str, stream: bool) -> Call {
        Call {
            endpoint,
            body: Bytes::copy_from_slice(body.as_bytes()),
            requested_model: "my-mock".into(),
            upstream_model: "anything".into(),
            stream,
            client_wants_usage: false,
            request_id: "r1".into(),
            traceparent: None,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn chat_reply_uses_request_mock_response() {
        let r = respond(
            None,
            &call(
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[],"mock_response":"hi there"}"#,
                false,
            ),
        )
        .unwrap();
        let Reply::Complete { body, usage } = r else {
            panic!("expected complete")
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi there");
        assert_eq!(v["model"], "my-mock");
        assert_eq!(usage.unwrap().completion_tokens, 2);
    }

    #[tokio::test]
    async fn stream_has_chunks_and_done() {
        let Reply::Stream(s) = respond(
            Some("a b c"),
            &call(Endpoint::ChatCompletions, r#"{"messages":[]}"#, true),
        )
        .unwrap() else {
            panic!("expected stream")
        };
        let parts: Vec<Bytes> = s.body.collect().await;
        let mut d = SseDecoder::new();
        let mut evs = vec![];
        for p in &parts {
            d.push(p, &mut evs).unwrap();
        }
        assert_eq!(evs.last().unwrap().data, "[DONE]");
        let text: String = evs[..evs.len() - 1]
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(&e.data).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(text, "a b c");
        assert!(s.outcome.completed());
    }

    #[test]
    fn embeddings_one_per_input() {
        let Reply::Complete { body, .. } = respond(
            None,
            &call(Endpoint::Embeddings, r#"{"input":["a","b"]}"#, false),
        )
        .unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
    }
}
