//! `GatewayError` as an HTTP response: status, OpenAI error body, `Retry-After`, and the error kept in the
//! response extensions for the request log line.

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tollgate_core::GatewayError;

/// A handler error; converts to the OpenAI error response.
#[derive(Debug)]
pub struct ApiError(pub GatewayError);

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.0)
    }
}

/// Build the error response for `err`.
pub fn error_response(err: GatewayError) -> Response {
    let mut resp = (err.status(), err.body_bytes()).into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(ra) = err
        .retry_after()
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        h.insert(RETRY_AFTER, ra);
    }
    if matches!(err, GatewayError::Internal(_)) {
        tracing::error!(error = %err, "internal error");
    }
    resp.extensions_mut().insert(err);
    resp
}
