//! OpenAI `/embeddings` <-> Gemini `batchEmbedContents`: one `EmbedContentRequest` per input, the vectors
//! passed through as Gemini wrote them (or packed as base64 floats), with an estimated token usage.

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tollgate_core::{GatewayError, Usage};

use crate::translate;

/// The OpenAI embeddings params this provider translates. `task_type` is LiteLLM's Gemini param.
pub const EMBEDDING_PARAMS: &[&str] = &["input", "dimensions", "encoding_format", "task_type"];

#[derive(Deserialize)]
struct EmbeddingRequest {
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    task_type: Option<String>,
}

/// A parsed OpenAI embeddings request.
pub struct Embeddings {
    texts: Vec<String>,
    dimensions: Option<u64>,
    base64: bool,
    task_type: Option<String>,
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

impl Embeddings {
    pub fn parse(body: &[u8]) -> Result<Embeddings, GatewayError> {
        let req: EmbeddingRequest = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid(format!(
                "the request body is not a valid embeddings request: {e}"
            ))
        })?;
        let bad = || {
            GatewayError::invalid_param(
                "input",
                "gemini embeddings take `input` as a string or a list of strings",
            )
        };
        let texts = match req.input {
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad()),
        };
        let base64 = translate::wants_base64(req.encoding_format.as_deref())?;
        Ok(Embeddings {
            texts,
            dimensions: req.dimensions,
            base64,
            task_type: req.task_type,
        })
    }

    /// The `batchEmbedContents` body for `model` (the bare model name).
    pub fn native_body(&self, model: &str) -> Result<Vec<u8>, GatewayError> {
        let name = format!("models/{model}");
        let body = BatchRequest {
            requests: self
                .texts
                .iter()
                .map(|t| EmbedRequest {
                    model: &name,
                    content: EmbedContent {
                        parts: [TextPart { text: t }],
                    },
                    task_type: self.task_type.as_deref(),
                    output_dimensionality: self.dimensions,
                })
                .collect(),
        };
        serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))
    }

    /// The usage reported: Gemini's `batchEmbedContents` returns no token counts, so the prompt tokens are
    /// estimated (about four characters a token, at least one per input), as LiteLLM counts them itself.
    pub fn estimated_usage(&self) -> Usage {
        let tokens: u64 = self
            .texts
            .iter()
            .map(|t| (t.chars().count().div_ceil(4) as u64).max(1))
            .sum();
        Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            ..Usage::default()
        }
    }

    /// Translate the `batchEmbedContents` answer into the OpenAI list, reporting `model`.
    pub fn translate(&self, bytes: &[u8], model: &str) -> Result<(Bytes, Usage), String> {
        #[derive(Deserialize)]
        struct BatchResponse<'a> {
            #[serde(borrow, default)]
            embeddings: Vec<ContentEmbedding<'a>>,
        }
        #[derive(Deserialize)]
        struct ContentEmbedding<'a> {
            #[serde(borrow)]
            values: &'a RawValue,
        }
        #[derive(Serialize)]
        struct Item<'a> {
            object: &'static str,
            index: usize,
            embedding: Embedding<'a>,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Embedding<'a> {
            Floats(&'a RawValue),
            Base64(String),
        }
        #[derive(Serialize)]
        struct List<'a> {
            object: &'static str,
            data: Vec<Item<'a>>,
            model: &'a str,
            usage: Value,
        }
        let resp: BatchResponse<'_> = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a BatchEmbedContentsResponse: {e}"))?;
        if resp.embeddings.len() != self.texts.len() {
            return Err(format!(
                "{} embeddings for {} inputs",
                resp.embeddings.len(),
                self.texts.len()
            ));
        }
        let mut data = Vec::with_capacity(resp.embeddings.len());
        for (index, e) in resp.embeddings.iter().enumerate() {
            let embedding = if self.base64 {
                let floats: Vec<f32> = serde_json::from_str(e.values.get())
                    .map_err(|err| format!("embedding {index} is not a list of numbers: {err}"))?;
                let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
                Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Embedding::Floats(e.values)
            };
            data.push(Item {
                object: "embedding",
                index,
                embedding,
            });
        }
        let usage = self.estimated_usage();
        let list = List {
            object: "list",
            data,
            model,
            usage: serde_json::json!({"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}),
        };
        let out = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
        Ok((Bytes::from(out), usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_and_response_translation() {
        let e = Embeddings::parse(br#"{"model":"m","input":["hello world","abc"],"dimensions":8,"task_type":"RETRIEVAL_QUERY"}"#).unwrap();
        let body: Value =
            serde_json::from_slice(&e.native_body("text-embedding-004").unwrap()).unwrap();
        insta::assert_json_snapshot!("gemini_embeddings_request", body);
        let (out, usage) = e
            .translate(
                br#"{"embeddings":[{"values":[0.0123456789,-1]},{"values":[1e-7,2]}]}"#,
                "alias",
            )
            .unwrap();
        assert_eq!(usage.prompt_tokens, 3 + 1);
        let text = std::str::from_utf8(&out).unwrap();
        // Floats pass through exactly as Gemini wrote them.
        assert!(text.contains("[0.0123456789,-1]"), "{text}");
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "alias");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));
        assert!(e.translate(br#"{"embeddings":[]}"#, "a").is_err());
    }

    #[test]
    fn base64_and_bad_inputs() {
        let e = Embeddings::parse(br#"{"input":"x","encoding_format":"base64"}"#).unwrap();
        let (out, _) = e
            .translate(br#"{"embeddings":[{"values":[1.0,-2.5]}]}"#, "a")
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, vec![1.0, -2.5]);
        for bad in [
            r#"{"input":[1,2]}"#,
            r#"{"input":[]}"#,
            r#"{}"#,
            r#"{"input":"x","encoding_format":"hex"}"#,
        ] {
            assert!(Embeddings::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
