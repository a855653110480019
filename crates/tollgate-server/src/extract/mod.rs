//! Request body extraction with OpenAI-shaped rejections: size limit (413) and JSON object check (400);
//! `limits`: nesting depth and message count (400).

pub mod limits;

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tollgate_core::GatewayError;

/// Read the whole body, refusing more than `limit` bytes with 413 (early, from Content-Length, when given).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(e) => Err(GatewayError::InvalidRequest {
            message: format!("could not read the request body: {e}"),
            param: None,
            code: Some("body_read_error".into()),
        }),
    }
}
