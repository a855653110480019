//! `POST /v1/embeddings`: deterministic unit-length vectors, as float arrays or base64.

use std::borrow::Cow;

use base64::Engine;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;

use crate::body::MockBody;
use crate::router::{apply_faults, malformed, parse_body};
use crate::state::Shared;
use crate::{json, respond, text};

/// Dimension used when neither the `dims` knob nor `dimensions` is given.
pub(crate) const DEFAULT_DIMS: usize = 8;

#[derive(Deserialize)]
struct EmbeddingRequest<'a> {
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    #[serde(default)]
    dimensions: Option<usize>,
}

pub(crate) async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<MockBody> {
    let req: EmbeddingRequest<'_> = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    if req.model.is_empty() {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            None,
            Some("model"),
        );
    }
    let inputs = match req.input.as_ref().map(text::parse_inputs) {
        Some(Ok(inputs)) => inputs,
        Some(Err(msg)) => return respond::error(StatusCode::BAD_REQUEST, msg, None, Some("input")),
        None => {
            return respond::error(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: 'input'.",
                Some("missing_required_parameter"),
                Some("input"),
            );
        }
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return respond::error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Invalid value for 'encoding_format': {other:?}. Expected 'float' or 'base64'."
                ),
                None,
                Some("encoding_format"),
            );
        }
    };
    let knobs = match shared.knobs(headers, Some(&req.model)) {
        Ok(k) => k,
        Err(msg) => return respond::bad_request(&msg),
    };
    if let Some(resp) = apply_faults(shared, &knobs, Some(&req.model), 0).await {
        return resp;
    }
    if knobs.reset_after_chunks.is_some() {
        return respond::aborted_json();
    }

    let dims = knobs
        .dims
        .or(req.dimensions.filter(|d| (1..=16_384).contains(d)))
        .unwrap_or(DEFAULT_DIMS);
    let mut out = String::with_capacity(96 + inputs.len() * (64 + dims * 12));
    out.push_str("{\"object\":\"list\",\"data\":[");
    let mut vector = Vec::with_capacity(dims);
    for (i, (input, _)) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        embed(input, dims, &mut vector);
        out.push_str("{\"object\":\"embedding\",\"index\":");
        json::num(&mut out, i);
        out.push_str(",\"embedding\":");
        if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            out.push('"');
        } else {
            out.push('[');
            for (j, v) in vector.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                json::num(&mut out, v);
            }
            out.push(']');
        }
        out.push('}');
    }
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    out.push_str("],\"model\":");
    json::str(&mut out, &req.model);
    out.push_str(",\"usage\":{\"prompt_tokens\":");
    json::num(&mut out, tokens);
    out.push_str(",\"total_tokens\":");
    json::num(&mut out, tokens);
    out.push_str("}}");
    respond::ok(out)
}

/// Fills `out` with a deterministic unit vector derived from `input`.
pub(crate) fn embed(input: &str, dims: usize, out: &mut Vec<f32>) {
    // FNV-1a seed, then splitmix64 per component.
    let mut state = input.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    out.clear();
    for _ in 0..dims {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Top 24 bits -> [-1, 1).
        let unit = (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        out.push(unit);
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        for v in out.iter_mut() {
            *v /= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_unit_vectors() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        embed("hello", 16, &mut a);
        embed("hello", 16, &mut b);
        assert_eq!(a, b);
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        embed("world", 16, &mut b);
        assert_ne!(a, b);
    }
}
