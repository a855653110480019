//! Response builders: JSON bodies, SSE streams and OpenAI-shaped errors.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::{MockBody, Pacing};
use crate::json;
use crate::knobs::EchoKey;

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
    json(status, error_body(message, Some(kind), param, code, ""))
}

/// `{"error":{"message","type","param","code"<extra>}}`; `extra` is raw
/// JSON members (with a leading comma) appended inside `error`.
fn error_body(
    message: &str,
    kind: Option<&str>,
    param: Option<&str>,
    code: Option<&str>,
    extra: &str,
) -> String {
    let mut out = String::with_capacity(128 + message.len() + extra.len());
    out.push_str("{\"error\":{");
    json::key(&mut out, "message");
    json::str(&mut out, message);
    out.push(',');
    json::key(&mut out, "type");
    json::opt_str(&mut out, kind);
    out.push(',');
    json::key(&mut out, "param");
    json::opt_str(&mut out, param);
    out.push(',');
    json::key(&mut out, "code");
    json::opt_str(&mut out, code);
    out.push_str(extra);
    out.push_str("}}");
    out
}

/// A 400 `invalid_request_error`.
pub(crate) fn bad_request(message: &str) -> Response<MockBody> {
    error(StatusCode::BAD_REQUEST, message, None, None)
}

/// The context window the `context_length_exceeded` error reports.
pub(crate) const CONTEXT_LIMIT: u64 = 8192;

/// Azure's content-filter error message.
const AZURE_CONTENT_FILTER: &str = "The response was filtered due to the prompt triggering Azure \
     OpenAI's content management policy. Please modify your prompt and retry. To learn more about \
     our content filtering policies please read our documentation: \
     https://go.microsoft.com/fwlink/?linkid=2198766";

/// Azure's `innererror` of a content-filter error (raw JSON members).
const AZURE_INNER_ERROR: &str = ",\"status\":400,\"innererror\":{\"code\":\"ResponsibleAIPolicyViolation\",\
     \"content_filter_result\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\
     \"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\
     \"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\
     \"violence\":{\"filtered\":true,\"severity\":\"medium\"}}}";

/// The failure requested by the `status` / `retry_after` / `fail_first` /
/// `fail_rate` / `error_code` knobs. `prompt_tokens` feeds the
/// `context_length_exceeded` message.
pub(crate) fn knob_failure(
    status: u16,
    retry_after: Option<u64>,
    error_code: Option<&str>,
    prompt_tokens: u64,
) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, default_code) = error_kind(status.as_u16());
    let body = match error_code {
        Some(code @ "context_length_exceeded") => error_body(
            &format!(
                "This model's maximum context length is {CONTEXT_LIMIT} tokens. However, your \
                 messages resulted in {} tokens. Please reduce the length of the messages.",
                CONTEXT_LIMIT + prompt_tokens.max(1)
            ),
            Some("invalid_request_error"),
            Some("messages"),
            Some(code),
            "",
        ),
        Some(code @ "content_policy_violation") => error_body(
            "Your request was rejected as a result of our safety system.",
            Some("invalid_request_error"),
            None,
            Some(code),
            "",
        ),
        Some(code @ "content_filter") => error_body(
            AZURE_CONTENT_FILTER,
            None,
            Some("prompt"),
            Some(code),
            AZURE_INNER_ERROR,
        ),
        Some(code) => error_body(
            &format!(
                "{} (tollgate-mock error_code knob).",
                code_message(code, status)
            ),
            Some(kind),
            None,
            Some(code),
            "",
        ),
        None => error_body(
            &format!("{} (tollgate-mock status knob).", status_message(status)),
            Some(kind),
            None,
            default_code,
            "",
        ),
    };
    let mut resp = json(status, body);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// An `echo_key` failure: "Incorrect API key provided: <key>" with the key as presented, in the OpenAI error
/// shape or as a `text/plain` body.
pub(crate) fn echo_key_failure(status: u16, how: EchoKey, key: Option<&str>) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
    let message = format!(
        "Incorrect API key provided: {}. You can find your API key in your account settings.",
        key.unwrap_or("<none>")
    );
    match how {
        EchoKey::Json => error(status, &message, Some("invalid_api_key"), None),
        EchoKey::Text => {
            let mut resp = Response::new(MockBody::full(message));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
    }
}

/// The message of a status-knob failure.
fn status_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "Incorrect API key provided",
        403 => "Forbidden",
        404 => "The model does not exist",
        429 => "Rate limit reached",
        503 => "The server is overloaded",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// The message of an `error_code` failure: OpenAI's wording for the codes
/// it documents, else the status message.
fn code_message(code: &str, status: StatusCode) -> String {
    match code {
        "insufficient_quota" => {
            "You exceeded your current quota, please check your plan and billing details".into()
        }
        "rate_limit_exceeded" => "Rate limit reached".into(),
        "invalid_api_key" => "Incorrect API key provided".into(),
        "model_not_found" => "The model does not exist or you do not have access to it".into(),
        "server_error" => "The server had an error while processing your request".into(),
        _ => format!("{} [{code}]", status_message(status)),
    }
}
