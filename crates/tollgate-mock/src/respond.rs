//! Response builders: JSON bodies, SSE streams and OpenAI-shaped errors.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::{MockBody, Pacing};
use crate::json;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// A JSON response with the given status.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    resp
}

/// A 200 JSON response.
pub(crate) fn ok(body: impl Into<Bytes>) -> Response<MockBody> {
    json(StatusCode::OK, body)
}

/// A `text/event-stream` response sending one body frame per event.
pub(crate) fn sse(events: Vec<Bytes>, pacing: Pacing) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::events(events, pacing));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, EVENT_STREAM);
    h.insert(CACHE_CONTROL, NO_CACHE);
    resp
}

/// A 200 response whose body is aborted right after the head was sent.
pub(crate) fn aborted_json() -> Response<MockBody> {
    let pacing = Pacing {
        reset_after: Some(0),
        ..Pacing::default()
    };
    let mut resp = Response::new(MockBody::events(Vec::new(), pacing));
    resp.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    resp
}

/// The OpenAI error `type` and the `code` the status knob uses for an HTTP status.
pub(crate) fn error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("request_forbidden", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// An OpenAI-shaped error: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Response<MockBody> {
    let (kind, _) = error_kind(status.as_u16());
    let mut out = String::with_capacity(128 + message.len());
    out.push_str("{\"error\":{");
    json::key(&mut out, "message");
    json::str(&mut out, message);
    out.push(',');
    json::key(&mut out, "type");
    json::str(&mut out, kind);
    out.push(',');
    json::key(&mut out, "param");
    json::opt_str(&mut out, param);
    out.push(',');
    json::key(&mut out, "code");
    json::opt_str(&mut out, code);
    out.push_str("}}");
    json(status, out)
}

/// A 400 `invalid_request_error`.
pub(crate) fn bad_request(message: &str) -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, message, None, None)
}

/// The failure requested by the `status` / `retry_after` / `fail_first` knobs.
pub(crate) fn knob_failure(status: u16, retry_after: Option<u64>) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status.as_u16() {
        401 => "Incorrect API key provided (tollgate-mock status knob).".to_owned(),
        403 => "Forbidden (tollgate-mock status knob).".to_owned(),
        404 => "The model does not exist (tollgate-mock status knob).".to_owned(),
        429 => "Rate limit reached (tollgate-mock status knob).".to_owned(),
        503 => "The server is overloaded (tollgate-mock status knob).".to_owned(),
        s => format!(
            "{} (tollgate-mock status knob).",
            StatusCode::from_u16(s)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error")
        ),
    };
    let mut resp = error(status, &message, error_kind(status.as_u16()).1, None);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
