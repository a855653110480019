//! Cohere's Embed and Rerank APIs (v1 and v2), and the Cohere-shaped `/rerank` of OpenAI-style servers (vLLM).
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/v2/embed` | `{"id","embeddings":{"float":[[..]],..},"texts","meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens"}},"response_type":"embeddings_by_type"}` |
//! | POST | `/v1/embed` | the same with `version: "1"`; without `embedding_types`, `"embeddings":[[..]]` and `response_type: "embeddings_floats"` |
//! | POST | `/v2/rerank`, `/v1/rerank` | `{"id","results":[{"index","relevance_score","document"?}],"meta":{"api_version","billed_units":{"search_units"}}}` |
//! | POST | `/rerank` | as `/v1/rerank` plus `model` and `usage: {prompt_tokens,total_tokens}`; documents returned unless `return_documents: false` |
//!
//! Embed: one deterministic unit vector per text (as `/v1/embeddings`), of `dims` knob, else `output_dimension`,
//! else 8 dimensions; `embedding_types` `float`, `int8`, `uint8`, `binary`, `ubinary` (bits packed 8 per value)
//! and `base64` (the float32 values, little-endian); `input_tokens` = the texts' token estimate. v2 requires
//! `model` and a valid `input_type`; at most 96 texts.
//!
//! Rerank: `relevance_score` = 0.01 + 0.98 × (distinct query words found in the document ÷ distinct query
//! words), rounded to 6 digits; sorted by score, ties by index; `top_n` keeps the first n;
//! `max_tokens_per_doc` cuts each document to that many words first; `return_documents: true` adds
//! `document` (`{"text"}` for string documents, the object itself otherwise). One search unit per 100 documents.
//!
//! Errors are Cohere's shape `{"message": "..."}` (status, `Retry-After` and fault knobs as elsewhere);
//! `error_code=context_length_exceeded` answers Cohere's "too many tokens: ..." 400; `content_policy_violation` /
//! `content_filter` a 400 naming the content policy (Cohere documents no safety error for these endpoints).

use std::collections::HashSet;

use base64::Engine as _;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::body::MockBody;
use crate::embeddings::{DEFAULT_DIMS, embed};
use crate::knobs::Knobs;
use crate::router::Req;
use crate::state::Shared;
use crate::{json, respond, text};

/// Largest `dims` / `output_dimension` answered.
const MAX_DIMS: usize = 16_384;
/// Cohere's limit on texts per embed call.
const MAX_TEXTS: usize = 96;
/// Documents per search unit.
const DOCS_PER_SEARCH_UNIT: usize = 100;

const INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
    "image",
];
const EMBEDDING_TYPES: &[&str] = &["float", "int8", "uint8", "binary", "ubinary", "base64"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
    /// `/rerank` of an OpenAI-style server.
    Bare,
}

impl Version {
    fn number(self) -> &'static str {
        match self {
            Version::V2 => "2",
            Version::V1 | Version::Bare => "1",
        }
    }
}

pub(crate) async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let (version, rerank) = match req.path {
        "/v1/embed" | "/embed" => (Version::V1, false),
        "/v2/embed" | "/v1/v2/embed" => (Version::V2, false),
        "/v1/rerank" => (Version::V1, true),
        "/v2/rerank" | "/v1/v2/rerank" => (Version::V2, true),
        "/rerank" => (Version::Bare, true),
        p => return error(StatusCode::NOT_FOUND, &format!("path {p} not found"), None),
    };
    if req.method != Method::POST {
        return error(
            StatusCode::NOT_FOUND,
            &format!("{} {} not found", req.method, req.path),
            None,
        );
    }
    if rerank {
        rerank_handle(shared, req.headers, req.body, version).await
    } else {
        embed_handle(shared, req.headers, req.body, version).await
    }
}

/// A Cohere error: `{"message": "..."}`.
fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response<MockBody> {
    let mut out = String::with_capacity(16 + message.len());
    out.push('{');
    json::key(&mut out, "message");
    json::str(&mut out, message);
    out.push('}');
    let mut resp = respond::json(status, out);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn bad_request(message: &str) -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, message, None)
}

/// The failure the fault knobs ask for, in Cohere's words.
fn knob_failure(
    status: u16,
    retry_after: Option<u64>,
    error_code: Option<&str>,
    prompt_tokens: u64,
) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match error_code {
        Some("context_length_exceeded") => format!(
            "too many tokens: size limit exceeded by {} tokens. Try using shorter or fewer inputs.",
            prompt_tokens.max(1)
        ),
        Some("content_policy_violation" | "content_filter") => {
            "invalid request: the request was blocked by the content policy (safety filter).".into()
        }
        Some(code) => format!(
            "{} [{code}] (tollgate-mock error_code knob)",
            status_message(status)
        ),
        None => format!("{} (tollgate-mock status knob)", status_message(status)),
    };
    error(status, &message, retry_after)
}

fn status_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid request",
        401 | 498 => "invalid api token",
        402 => "please add a payment method to continue",
        404 => "model not found",
        429 => "too many requests, please slow down",
        499 => "request cancelled",
        503 => "service unavailable",
        500..=599 => "internal server error",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}

/// `hang`, `latency_ms` and the failure knobs (as `router::apply_faults`), with Cohere's error body.
async fn faults(
    shared: &Shared,
    knobs: &Knobs,
    model: Option<&str>,
    prompt_tokens: u64,
) -> Option<Response<MockBody>> {
    let status = crate::router::fault_status(shared, knobs, model).await?;
    Some(knob_failure(
        status,
        knobs.retry_after,
        knobs.error_code.as_deref(),
        prompt_tokens,
    ))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("invalid request: could not parse the JSON body ({e})"))
}

#[derive(Deserialize)]
struct EmbedRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    texts: Option<Vec<String>>,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    inputs: Option<Vec<EmbedInput>>,
    #[serde(default)]
    input_type: Option<String>,
    #[serde(default)]
    embedding_types: Option<Vec<String>>,
    #[serde(default)]
    output_dimension: Option<usize>,
}

#[derive(Deserialize)]
struct EmbedInput {
    #[serde(default)]
    content: Vec<InputPart>,
}

#[derive(Deserialize)]
struct InputPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<Value>,
}

async fn embed_handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    version: Version,
) -> Response<MockBody> {
    let req: EmbedRequest = match parse(body) {
        Ok(r) => r,
        Err(msg) => return bad_request(&msg),
    };
    let model = req.model.as_deref().filter(|m| !m.is_empty());
    if version == Version::V2 && model.is_none() {
        return bad_request("invalid request: model is required");
    }
    let input_type_ok = req
        .input_type
        .as_deref()
        .is_some_and(|t| INPUT_TYPES.contains(&t));
    if (version == Version::V2 || req.input_type.is_some()) && !input_type_ok {
        return bad_request(
            "invalid request: valid input_type must be provided with the provided model",
        );
    }
    // What gets embedded: the texts, else the images (their data URIs), else the inputs' parts.
    let texts: Vec<String> = match (&req.texts, &req.images, &req.inputs) {
        (Some(t), _, _) if !t.is_empty() => t.clone(),
        (_, Some(i), _) if !i.is_empty() => i.clone(),
        (_, _, Some(inputs)) if !inputs.is_empty() => inputs
            .iter()
            .map(|i| {
                i.content
                    .iter()
                    .map(|p| match (&p.text, &p.image_url) {
                        (Some(t), _) => t.clone(),
                        (None, Some(u)) => u.to_string(),
                        (None, None) => String::new(),
                    })
                    .collect::<String>()
            })
            .collect(),
        _ => {
            return bad_request("invalid request: one of texts, images or inputs must be provided");
        }
    };
    if texts.len() > MAX_TEXTS {
        return bad_request(&format!(
            "invalid request: total number of texts must be at most {MAX_TEXTS} - received {}",
            texts.len()
        ));
    }
    let by_type = version == Version::V2 || req.embedding_types.is_some();
    let types: Vec<&str> = match &req.embedding_types {
        Some(t) if !t.is_empty() => t.iter().map(String::as_str).collect(),
        _ => vec!["float"],
    };
    if let Some(bad) = types.iter().find(|t| !EMBEDDING_TYPES.contains(t)) {
        return bad_request(&format!(
            "invalid request: embedding_types must be among {} - received {bad}",
            EMBEDDING_TYPES.join(", ")
        ));
    }
    if let Some(d) = req.output_dimension
        && !(1..=MAX_DIMS).contains(&d)
    {
        return bad_request(&format!(
            "invalid request: output_dimension {d} is not supported"
        ));
    }
    let knobs = match shared.knobs(headers, model) {
        Ok(k) => k,
        Err(msg) => return bad_request(&msg),
    };
    let input_tokens: u64 = texts
        .iter()
        .map(|t| text::prompt_tokens(text::chars(t)))
        .sum();
    if let Some(resp) = faults(shared, &knobs, model, input_tokens).await {
        return resp;
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let dims = knobs.dims.or(req.output_dimension).unwrap_or(DEFAULT_DIMS);
    let vectors: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| {
            let mut v = Vec::with_capacity(dims);
            embed(t, dims, &mut v);
            v
        })
        .collect();

    let mut out = String::with_capacity(128 + texts.len() * (32 + dims * 12 * types.len()));
    out.push_str("{\"id\":");
    json::str(&mut out, &uuid::Uuid::now_v7().to_string());
    out.push_str(",\"embeddings\":");
    if by_type {
        out.push('{');
        for (i, ty) in types.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::key(&mut out, ty);
            out.push('[');
            for (j, v) in vectors.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_vector(&mut out, v, ty);
            }
            out.push(']');
        }
        out.push('}');
    } else {
        out.push('[');
        for (j, v) in vectors.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            write_vector(&mut out, v, "float");
        }
        out.push(']');
    }
    out.push_str(",\"texts\":[");
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::str(&mut out, t);
    }
    out.push_str("],\"meta\":{\"api_version\":{\"version\":\"");
    out.push_str(version.number());
    out.push_str("\"},\"billed_units\":{\"input_tokens\":");
    json::num(&mut out, input_tokens);
    out.push_str("}},\"response_type\":");
    json::str(
        &mut out,
        if by_type {
            "embeddings_by_type"
        } else {
            "embeddings_floats"
        },
    );
    out.push('}');
    respond::ok(out)
}

/// One embedding in the form of `ty`.
fn write_vector(out: &mut String, v: &[f32], ty: &str) {
    let list = |out: &mut String, items: &mut dyn Iterator<Item = i64>| {
        out.push('[');
        for (i, x) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::num(out, x);
        }
        out.push(']');
    };
    // Bits (1 for a positive value) packed 8 per byte, first value in the highest bit.
    let packed = || -> Vec<u8> {
        v.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, x)| if *x > 0.0 { b | (0x80 >> i) } else { b })
            })
            .collect()
    };
    match ty {
        "int8" => list(
            out,
            &mut v
                .iter()
                .map(|x| (x * 127.0).round().clamp(-128.0, 127.0) as i64),
        ),
        "uint8" => list(
            out,
            &mut v
                .iter()
                .map(|x| ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as i64),
        ),
        "ubinary" => list(out, &mut packed().into_iter().map(i64::from)),
        "binary" => list(out, &mut packed().into_iter().map(|b| i64::from(b) - 128)),
        "base64" => {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            out.push('"');
        }
        _ => {
            out.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json::num(out, x);
            }
            out.push(']');
        }
    }
}

#[derive(Deserialize)]
struct RerankRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    documents: Option<Vec<Value>>,
    #[serde(default)]
    top_n: Option<i64>,
    #[serde(default)]
    return_documents: Option<bool>,
    #[serde(default)]
    max_tokens_per_doc: Option<u64>,
    #[serde(default)]
    rank_fields: Option<Vec<String>>,
}

/// The distinct lowercase words of `s`.
fn words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The deterministic relevance of `doc` to the query words `q`.
fn relevance(q: &HashSet<String>, doc: &str, max_words: Option<u64>) -> f64 {
    let cut: String = match max_words {
        Some(n) => doc
            .split_whitespace()
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .collect::<Vec<_>>()
            .join(" "),
        None => doc.to_owned(),
    };
    let d = words(&cut);
    let hits = q.iter().filter(|w| d.contains(*w)).count();
    let share = if q.is_empty() {
        0.0
    } else {
        hits as f64 / q.len() as f64
    };
    ((0.01 + 0.98 * share) * 1e6).round() / 1e6
}

async fn rerank_handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    version: Version,
) -> Response<MockBody> {
    let req: RerankRequest = match parse(body) {
        Ok(r) => r,
        Err(msg) => return bad_request(&msg),
    };
    let model = req.model.as_deref().filter(|m| !m.is_empty());
    if version == Version::V2 && model.is_none() {
        return bad_request("invalid request: model is required");
    }
    let Some(query) = req.query.as_deref().filter(|q| !q.trim().is_empty()) else {
        return bad_request("invalid request: query must not be empty or be only whitespace");
    };
    let Some(documents) = req.documents.as_deref().filter(|d| !d.is_empty()) else {
        return bad_request("invalid request: list of documents must not be empty");
    };
    // The text ranked for each document: a string, or an object's `rank_fields` (default `text`).
    let fields: Vec<&str> = match &req.rank_fields {
        Some(f) if !f.is_empty() => f.iter().map(String::as_str).collect(),
        _ => vec!["text"],
    };
    let mut texts: Vec<String> = Vec::with_capacity(documents.len());
    for (i, d) in documents.iter().enumerate() {
        match d {
            Value::String(s) => texts.push(s.clone()),
            Value::Object(o) => texts.push(
                fields
                    .iter()
                    .filter_map(|f| o.get(*f))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => {
                return bad_request(&format!(
                    "invalid request: documents[{i}] must be a string or an object"
                ));
            }
        }
    }
    if req.top_n.is_some_and(|n| n < 1) {
        return bad_request("invalid request: top_n must be at least 1");
    }
    let knobs = match shared.knobs(headers, model) {
        Ok(k) => k,
        Err(msg) => return bad_request(&msg),
    };
    let chars = text::chars(query) + texts.iter().map(|t| text::chars(t)).sum::<usize>();
    let tokens = text::prompt_tokens(chars);
    if let Some(resp) = faults(shared, &knobs, model, tokens).await {
        return resp;
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }
    let q = words(query);
    let mut scored: Vec<(usize, f64)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i, relevance(&q, t, req.max_tokens_per_doc)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = req.top_n.and_then(|n| usize::try_from(n).ok()) {
        scored.truncate(n);
    }
    let return_documents = req.return_documents.unwrap_or(version == Version::Bare);

    let mut out = String::with_capacity(160 + scored.len() * 64);
    out.push_str("{\"id\":");
    json::str(&mut out, &uuid::Uuid::now_v7().to_string());
    if version == Version::Bare {
        out.push_str(",\"model\":");
        json::opt_str(&mut out, model);
    }
    out.push_str(",\"results\":[");
    for (k, (i, score)) in scored.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str("{\"index\":");
        json::num(&mut out, i);
        out.push_str(",\"relevance_score\":");
        json::num(&mut out, score);
        if return_documents {
            out.push_str(",\"document\":");
            match &documents[*i] {
                Value::Object(o) => out.push_str(&Value::Object(o.clone()).to_string()),
                _ => {
                    out.push_str("{\"text\":");
                    json::str(&mut out, &texts[*i]);
                    out.push('}');
                }
            }
        }
        out.push('}');
    }
    out.push_str("],\"meta\":{\"api_version\":{\"version\":\"");
    out.push_str(version.number());
    out.push_str("\",\"is_experimental\":false},\"billed_units\":{\"search_units\":");
    json::num(&mut out, documents.len().div_ceil(DOCS_PER_SEARCH_UNIT));
    out.push_str("}}");
    if version == Version::Bare {
        out.push_str(",\"usage\":{\"prompt_tokens\":");
        json::num(&mut out, tokens);
        out.push_str(",\"total_tokens\":");
        json::num(&mut out, tokens);
        out.push('}');
    }
    out.push('}');
    respond::ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

    async fn post_with(
        path: &str,
        body: Value,
        headers: &[(&'static str, &'static str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let shared = Shared::new(None, None, false);
        let body = Bytes::from(body.to_string());
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        let resp = route(
            &shared,
            &Req {
                method: &Method::POST,
                path,
                query: None,
                authority: None,
                headers: &h,
                body: &body,
            },
        )
        .await;
        let (parts, b) = resp.into_parts();
        let bytes = b.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    async fn post(path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = post_with(path, body, &[]).await;
        (s, v)
    }

    #[tokio::test]
    async fn v2_embed_by_type() {
        let (s, v) = post(
            "/v2/embed",
            json!({"model": "embed-v4.0", "texts": ["hello", "world!"], "input_type": "search_document",
                   "embedding_types": ["float", "int8", "base64"], "output_dimension": 4}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["response_type"], "embeddings_by_type");
        let floats = v["embeddings"]["float"].as_array().unwrap();
        assert_eq!(floats.len(), 2);
        assert_eq!(floats[0].as_array().unwrap().len(), 4);
        assert_eq!(v["embeddings"]["int8"][1].as_array().unwrap().len(), 4);
        assert!(v["embeddings"]["base64"][0].is_string());
        assert_eq!(v["texts"], json!(["hello", "world!"]));
        // "hello" (5 chars) -> 2 tokens, "world!" (6) -> 2.
        assert_eq!(v["meta"]["billed_units"]["input_tokens"], 4);
        assert_eq!(v["meta"]["api_version"]["version"], "2");
        // Deterministic: the same text gets the same vector.
        let (_, again) = post(
            "/v2/embed",
            json!({"model": "m", "texts": ["hello"], "input_type": "search_query", "output_dimension": 4}),
        )
        .await;
        assert_eq!(again["embeddings"]["float"][0], floats[0]);
    }

    #[tokio::test]
    async fn v1_embed_floats_and_validation() {
        let (s, v) = post("/v1/embed", json!({"texts": ["a"]})).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["response_type"], "embeddings_floats");
        assert_eq!(v["embeddings"][0].as_array().unwrap().len(), DEFAULT_DIMS);
        let (s, v) = post("/v2/embed", json!({"model": "m", "texts": ["a"]})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().unwrap().contains("input_type"), "{v}");
        let (s, _) = post(
            "/v2/embed",
            json!({"texts": ["a"], "input_type": "clustering"}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "v2 needs a model");
        let many: Vec<String> = (0..97).map(|i| i.to_string()).collect();
        let (s, v) = post(
            "/v2/embed",
            json!({"model": "m", "texts": many, "input_type": "clustering"}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().unwrap().contains("at most 96"), "{v}");
        let (s, _) = post(
            "/v2/embed",
            json!({"model": "m", "texts": ["a"], "input_type": "clustering", "embedding_types": ["nope"]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, v) = post("/v1/nothing", json!({})).await;
        assert_eq!((s, v["message"].is_string()), (StatusCode::NOT_FOUND, true));
    }

    #[tokio::test]
    async fn rerank_scores_by_word_overlap() {
        let docs = json!(["The capital of Nevada is Carson City.", "Paris is the capital of France.",
                          "Bananas are yellow.", {"text": "Capital of France: Paris"}]);
        let (s, v) = post(
            "/v2/rerank",
            json!({"model": "rerank-v3.5", "query": "capital of France", "documents": docs, "top_n": 3}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        // Docs 1 and 3 contain all three query words (tie: lower index first), doc 0 two of them.
        let order: Vec<u64> = results
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!(order, [1, 3, 0]);
        assert_eq!(results[0]["relevance_score"], 0.99);
        assert!(results[0].get("document").is_none());
        assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
        assert_eq!(v["meta"]["api_version"]["version"], "2");

        let (_, v) = post(
            "/v1/rerank",
            json!({"query": "yellow", "documents": docs, "return_documents": true, "max_tokens_per_doc": 2}),
        )
        .await;
        // "Bananas are" (cut at 2 words) no longer matches: all tie at the floor, index order.
        let r = &v["results"];
        assert_eq!(r[0]["index"], 0);
        assert_eq!(r[0]["relevance_score"], 0.01);
        assert_eq!(
            r[0]["document"]["text"],
            "The capital of Nevada is Carson City."
        );
        assert_eq!(
            r[3]["document"],
            json!({"text": "Capital of France: Paris"})
        );

        let (_, v) = post(
            "/rerank",
            json!({"model": "bge", "query": "yellow", "documents": ["a yellow b"]}),
        )
        .await;
        assert_eq!(v["model"], "bge");
        assert_eq!(v["results"][0]["document"]["text"], "a yellow b");
        assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn rerank_validation() {
        let (s, v) = post(
            "/v2/rerank",
            json!({"model": "m", "query": " ", "documents": ["a"]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            v["message"],
            "invalid request: query must not be empty or be only whitespace"
        );
        let (s, v) = post(
            "/v2/rerank",
            json!({"model": "m", "query": "q", "documents": []}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            v["message"],
            "invalid request: list of documents must not be empty"
        );
        let (s, _) = post(
            "/v2/rerank",
            json!({"model": "m", "query": "q", "documents": [1]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = post(
            "/v2/rerank",
            json!({"model": "m", "query": "q", "documents": ["a"], "top_n": 0}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn fault_knobs_answer_in_cohere_shape() {
        let body = json!({"model": "m@status=429,retry_after=4", "query": "q", "documents": ["a"]});
        let (s, h, v) = post_with("/v2/rerank", body, &[]).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h[RETRY_AFTER], "4");
        assert!(
            v["message"].as_str().unwrap().contains("too many requests"),
            "{v}"
        );
        assert!(v.get("error").is_none());
        let body = json!({"model": "m", "texts": ["a"], "input_type": "search_query"});
        let (s, _, v) = post_with(
            "/v2/embed",
            body,
            &[("x-mock-error-code", "context_length_exceeded")],
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("too many tokens"),
            "{v}"
        );
        let body = json!({"model": "m@error_code=content_policy_violation", "texts": ["a"], "input_type": "search_query"});
        let (s, _, v) = post_with("/v2/embed", body, &[]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            v["message"].as_str().unwrap().contains("content policy"),
            "{v}"
        );
    }

    #[test]
    fn packed_bits_and_quantization() {
        let mut s = String::new();
        write_vector(
            &mut s,
            &[0.5, -0.5, 1.0, -1.0, 0.0, 0.1, -0.1, 0.2, 0.3],
            "ubinary",
        );
        assert_eq!(s, "[165,128]");
        s.clear();
        write_vector(&mut s, &[1.0, -1.0], "int8");
        assert_eq!(s, "[127,-127]");
        s.clear();
        write_vector(&mut s, &[1.0, -1.0], "uint8");
        assert_eq!(s, "[255,0]");
    }
}
