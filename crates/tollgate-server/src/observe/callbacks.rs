//! The generic webhook logger's record of a finished request: LiteLLM's `StandardLoggingPayload` shape
//! (the fields its consumers read), serialized once on the request path and queued for batched delivery.

use serde::Serialize;
use serde_json::value::RawValue;

/// Largest `messages` / `response` kept in a record; a larger one is replaced by a note.
pub const MAX_LOGGED_BODY: usize = 64 * 1024;

/// LiteLLM's `StandardLoggingMetadata` (the caller's ids).
#[derive(Debug, Serialize)]
pub struct Metadata<'a> {
    pub user_api_key_hash: Option<&'a str>,
    pub user_api_key_alias: Option<&'a str>,
    pub user_api_key_team_id: Option<&'a str>,
    pub user_api_key_team_alias: Option<&'a str>,
    pub user_api_key_org_id: Option<&'a str>,
    pub user_api_key_user_id: Option<&'a str>,
    pub user_api_key_user_email: Option<&'a str>,
    pub user_api_key_end_user_id: Option<&'a str>,
    /// The request's own `metadata` object, as sent.
    pub requester_metadata: Option<&'a RawValue>,
}

/// `error_information`.
#[derive(Debug, Serialize)]
pub struct ErrorInformation<'a> {
    pub error_code: String,
    pub error_class: &'a str,
    pub llm_provider: &'a str,
    pub error_message: &'a str,
}

/// One finished request, as posted to `GENERIC_LOGGER_ENDPOINT`.
#[derive(Debug, Serialize)]
pub struct LoggingPayload<'a> {
    pub id: &'a str,
    pub trace_id: Option<String>,
    pub call_type: &'a str,
    pub stream: bool,
    /// `"success"` or `"failure"`.
    pub status: &'static str,
    pub response_cost: f64,
    pub custom_llm_provider: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Unix seconds (fractional), as LiteLLM sends them.
    #[serde(rename = "startTime")]
    pub start_time: f64,
    #[serde(rename = "endTime")]
    pub end_time: f64,
    #[serde(rename = "completionStartTime")]
    pub completion_start_time: f64,
    pub response_time: f64,
    pub model: &'a str,
    pub model_id: &'a str,
    pub model_group: &'a str,
    pub requested_model: &'a str,
    pub api_base: &'a str,
    pub metadata: Metadata<'a>,
    pub request_tags: &'a [String],
    pub end_user: &'a str,
    pub cache_hit: bool,
    pub messages: Option<&'a RawValue>,
    pub response: Option<&'a RawValue>,
    pub error_str: Option<&'a str>,
    pub error_information: Option<ErrorInformation<'a>>,
}

/// A request or response body for the record: the raw JSON if it is small enough and valid, else a note;
/// `"redacted-by-litellm"` under `turn_off_message_logging` (LiteLLM's marker).
pub fn body_field(bytes: &[u8], redact: bool) -> Option<Box<RawValue>> {
    if redact {
        return RawValue::from_string("\"redacted-by-litellm\"".into()).ok();
    }
    if bytes.is_empty() {
        return None;
    }
    if bytes.len() > MAX_LOGGED_BODY {
        return RawValue::from_string(format!(
            "\"[{} bytes, larger than the {MAX_LOGGED_BODY}-byte logging limit]\"",
            bytes.len()
        ))
        .ok();
    }
    let s = std::str::from_utf8(bytes).ok()?;
    RawValue::from_string(s.trim().to_string()).ok()
}

/// The `messages` of a request body (raw slice), else the whole body (embeddings, completions).
pub fn messages_of(body: &[u8]) -> &[u8] {
    tollgate_core::wire::JsonObject::parse(body)
        .ok()
        .and_then(|o| {
            o.get("messages")
                .or_else(|| o.get("input"))
                .or_else(|| o.get("prompt"))
        })
        .map_or(body, |r| r.get().as_bytes())
}

/// Serialize once for the queue.
pub fn to_raw(p: &LoggingPayload<'_>) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(p).ok()
}
