//! OpenAI `/embeddings` on Bedrock's InvokeModel: Amazon Titan text embeddings (one request per input) and
//! Cohere Embed (up to 96 texts a request), answered as an OpenAI embedding list with usage.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::{GatewayError, Usage};

use super::{Family, Inner, model_id, model_path, parse_error};
use crate::translate::{self, Sent, collect, invalid_response, send};
use crate::{Call, Reply};

/// OpenAI embedding params Bedrock takes (`input_type` is Cohere's, accepted as LiteLLM does).
pub const SUPPORTED_PARAMS: &[&str] = &["input", "dimensions", "encoding_format", "input_type"];

/// Cohere Embed on Bedrock takes at most this many texts per call.
const COHERE_BATCH: usize = 96;

#[derive(Deserialize)]
struct EmbeddingRequest {
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    input_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f32>>),
    ByType { float: Vec<Vec<f32>> },
}

/// The texts of `input` (a string or a list of strings).
fn texts(input: Option<Value>) -> Result<Vec<String>, GatewayError> {
    let bad = || {
        GatewayError::invalid_param(
            "input",
            "Bedrock embeddings take text input: a string or a list of strings",
        )
    };
    let texts = match input {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => return Err(GatewayError::invalid_param("input", "`input` is required")),
        Some(_) => return Err(bad()),
    };
    if texts.is_empty() {
        return Err(GatewayError::invalid_param(
            "input",
            "`input` must not be empty",
        ));
    }
    Ok(texts)
}

/// Token estimate when Bedrock reports none: about four characters a token.
fn estimate(text: &str) -> u64 {
    (text.chars().count().div_ceil(4) as u64).max(1)
}

pub(super) async fn call(inner: &Inner, call: Call) -> Result<Reply, GatewayError> {
    let body = inner
        .policy
        .apply(&call.body, SUPPORTED_PARAMS, "bedrock")?;
    let req: EmbeddingRequest = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("not a valid embeddings request: {e}")))?;
    let base64 = translate::wants_base64(req.encoding_format.as_deref())?;
    let inputs = texts(req.input)?;
    let model = model_id(&call.upstream_model);
    let family = Family::of(model);
    let base = super::base_model(model);
    let dimensions = match (req.dimensions, family) {
        (None, _) => None,
        (Some(d), Family::TitanEmbed) if base.starts_with("amazon.titan-embed-text-v2") => Some(d),
        (Some(d), Family::CohereEmbed) if base.starts_with("cohere.embed-v4") => Some(d),
        (Some(_), _) if inner.policy.drop => None,
        (Some(_), _) => {
            return Err(GatewayError::InvalidRequest {
                message: format!(
                    "bedrock does not support `dimensions` for {base} (Titan Text Embeddings V2 and \
                     Cohere Embed v4 take it). To drop it, set `litellm_settings: drop_params: true`"
                ),
                param: Some("dimensions".into()),
                code: Some("unsupported_parameter".into()),
            });
        }
    };
    let work = async {
        match family {
            Family::TitanEmbed => titan(inner, model, &inputs, dimensions, &call).await,
            Family::CohereEmbed => {
                cohere(
                    inner,
                    model,
                    &inputs,
                    dimensions,
                    req.input_type.as_deref(),
                    &call,
                )
                .await
            }
            _ => Err(GatewayError::invalid_param(
                "model",
                format!(
                    "bedrock embeddings support Amazon Titan (`amazon.titan-embed-*`) and Cohere \
                     (`cohere.embed-*`) models, not `{model}`"
                ),
            )),
        }
    };
    let (vectors, tokens) = tokio::time::timeout(call.timeout, work)
        .await
        .map_err(|_| GatewayError::UpstreamTimeout {
            deployment: inner.deployment.clone(),
            after: call.timeout,
        })??;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    let usage = Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Usage::default()
    };
    let out = json!({
        "object": "list",
        "data": data,
        "model": call.requested_model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    });
    let body = serde_json::to_vec(&out).map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok(Reply::Complete {
        body: Bytes::from(body),
        usage: Some(usage),
    })
}

/// One InvokeModel call; the body and the `x-amzn-bedrock-input-token-count` header.
async fn invoke(
    inner: &Inner,
    model: &str,
    body: Vec<u8>,
    call: &Call,
) -> Result<(Bytes, Option<u64>), GatewayError> {
    let req = inner.request(&model_path(model, "invoke"), body, "application/json")?;
    let Sent::Stream(resp, _) = send(
        &inner.client,
        req,
        &inner.deployment,
        call.timeout,
        true,
        parse_error,
    )
    .await?
    else {
        return Err(GatewayError::Internal("expected a response head".into()));
    };
    let tokens = resp
        .headers()
        .get("x-amzn-bedrock-input-token-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = collect(resp.into_body(), &inner.deployment).await?;
    Ok((bytes, tokens))
}

async fn titan(
    inner: &Inner,
    model: &str,
    inputs: &[String],
    dimensions: Option<u64>,
    call: &Call,
) -> Result<(Vec<Vec<f32>>, u64), GatewayError> {
    let calls = inputs.iter().map(|text| async move {
        let mut body = json!({ "inputText": text });
        if let Some(d) = dimensions {
            body["dimensions"] = d.into();
        }
        let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let (bytes, header_tokens) = invoke(inner, model, body, call).await?;
        let r: TitanResponse = serde_json::from_slice(&bytes).map_err(|e| {
            invalid_response(
                &inner.deployment,
                format!("not a Titan embedding response: {e}"),
            )
        })?;
        let tokens = r
            .input_text_token_count
            .or(header_tokens)
            .unwrap_or_else(|| estimate(text));
        Ok::<_, GatewayError>((r.embedding, tokens))
    });
    let results = futures_util::future::try_join_all(calls).await?;
    let tokens = results.iter().map(|(_, t)| t).sum();
    Ok((results.into_iter().map(|(v, _)| v).collect(), tokens))
}

async fn cohere(
    inner: &Inner,
    model: &str,
    inputs: &[String],
    dimensions: Option<u64>,
    input_type: Option<&str>,
    call: &Call,
) -> Result<(Vec<Vec<f32>>, u64), GatewayError> {
    let calls = inputs.chunks(COHERE_BATCH).map(|batch| async move {
        let mut body = json!({
            "texts": batch,
            "input_type": input_type.unwrap_or("search_document"),
        });
        if let Some(d) = dimensions {
            body["output_dimension"] = d.into();
        }
        let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let (bytes, header_tokens) = invoke(inner, model, body, call).await?;
        let r: CohereResponse = serde_json::from_slice(&bytes).map_err(|e| {
            invalid_response(
                &inner.deployment,
                format!("not a Cohere embedding response: {e}"),
            )
        })?;
        let vectors = match r.embeddings {
            CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
        };
        if vectors.len() != batch.len() {
            return Err(invalid_response(
                &inner.deployment,
                format!("{} embeddings for {} texts", vectors.len(), batch.len()),
            ));
        }
        let tokens = header_tokens.unwrap_or_else(|| batch.iter().map(|t| estimate(t)).sum());
        Ok::<_, GatewayError>((vectors, tokens))
    });
    let results = futures_util::future::try_join_all(calls).await?;
    let tokens = results.iter().map(|(_, t)| t).sum();
    Ok((results.into_iter().flat_map(|(v, _)| v).collect(), tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_must_be_text() {
        assert_eq!(texts(Some(json!("a"))).unwrap(), vec!["a"]);
        assert_eq!(texts(Some(json!(["a", "b"]))).unwrap().len(), 2);
        assert_eq!(
            texts(Some(json!([1, 2]))).unwrap_err().param(),
            Some("input")
        );
        assert!(texts(Some(json!([]))).is_err());
        assert!(texts(None).is_err());
    }

    #[test]
    fn cohere_embeddings_come_in_both_shapes() {
        let a: CohereResponse =
            serde_json::from_str(r#"{"embeddings":[[0.5,1.0]],"id":"x","response_type":"embeddings_floats","texts":["a"]}"#)
                .unwrap();
        let b: CohereResponse = serde_json::from_str(
            r#"{"embeddings":{"float":[[0.5,1.0]]},"response_type":"embeddings_by_type"}"#,
        )
        .unwrap();
        for r in [a, b] {
            let (CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v }) =
                r.embeddings;
            assert_eq!(v, vec![vec![0.5, 1.0]]);
        }
    }
}
