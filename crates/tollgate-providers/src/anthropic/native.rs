//! The native Messages API pass-through (`/v1/messages`, `/v1/messages/count_tokens`): the client's body goes
//! upstream with only `model` replaced, and the answer comes back in Anthropic's format with the requested
//! model name; usage is read on the way (from the message, or from `message_start` + `message_delta`).

use bytes::Bytes;
use serde_json::json;
use tollgate_core::wire::{Edit, JsonObject, json_string, replace_model, splice};
use tollgate_core::{GatewayError, Usage};

use super::response::{AnthropicUsage, ErrorBody};
use super::stream_failure;
use crate::chat::push_event;
use crate::sse::{SseDecoder, SseEvent, encode};
use crate::stream::StreamOutcome;
use crate::translate::{StreamTranslator, invalid_response, sse_failure};

/// The client's Messages API body with `model` set to `upstream_model` (added when missing).
pub(crate) fn rewrite_request(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
    let obj = JsonObject::parse(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    if obj.contains("model") {
        return Ok(replace_model(&obj, upstream_model));
    }
    let mut field = b"\"model\":".to_vec();
    field.extend_from_slice(&json_string(upstream_model));
    if !obj.is_empty() {
        field.push(b',');
    }
    Ok(splice(
        obj.source().as_bytes(),
        &mut [Edit::insert(obj.open_brace_end(), field)],
    ))
}

/// Parse a raw `usage` object.
fn parse_usage(raw: &str) -> Option<AnthropicUsage> {
    serde_json::from_str(raw).ok()
}

/// A complete Messages API answer with `model` set to `requested_model`, and its usage.
pub(crate) fn message_response(
    bytes: &[u8],
    requested_model: &str,
) -> Result<(Bytes, Option<Usage>), String> {
    let obj =
        JsonObject::parse(bytes).map_err(|e| format!("the response is not a JSON object: {e}"))?;
    let usage = obj
        .get("usage")
        .and_then(|u| parse_usage(u.get()))
        .map(AnthropicUsage::to_usage);
    let body = if obj.contains("model") {
        Bytes::from(replace_model(&obj, requested_model))
    } else {
        Bytes::copy_from_slice(bytes)
    };
    Ok((body, usage))
}

/// Forwards a Messages API stream event by event, with the model of `message_start` rewritten.
pub(crate) struct PassThroughStream {
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    requested_model: String,
    usage: AnthropicUsage,
    stopped: bool,
    deployment: String,
}

impl PassThroughStream {
    pub fn new(requested_model: String, deployment: String) -> Self {
        PassThroughStream {
            decoder: SseDecoder::new(),
            events: Vec::new(),
            requested_model,
            usage: AnthropicUsage::default(),
            stopped: false,
            deployment,
        }
    }

    fn drain(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        let mut events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        for ev in events.drain(..) {
            if let Err(e) = self.event(&ev, out, outcome) {
                result = Err(e);
                break;
            }
        }
        events.clear();
        self.events = events;
        result
    }

    fn event(
        &mut self,
        ev: &SseEvent,
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        let data = ev.data.as_str();
        let Ok(obj) = JsonObject::parse_str(data) else {
            encode(ev.event.as_deref(), data.as_bytes(), out);
            return Ok(());
        };
        let kind = obj.get_str("type").ok().flatten();
        let mut edits = Vec::new();
        match kind.as_deref() {
            Some("message_start") => {
                if let Some(msg) = obj.get("message")
                    && let Ok(inner) = JsonObject::parse_str(msg.get())
                {
                    if let Some(u) = inner.get("usage").and_then(|u| parse_usage(u.get())) {
                        self.usage.update(&u);
                        outcome.set_usage(self.usage.to_usage());
                    }
                    if let Some(model) = inner.get("model") {
                        let offset = obj.span(msg).start;
                        let span = inner.span(model);
                        edits.push(Edit::replace(
                            offset + span.start..offset + span.end,
                            json_string(&self.requested_model),
                        ));
                    }
                }
            }
            Some("message_delta") => {
                if let Some(u) = obj.get("usage").and_then(|u| parse_usage(u.get())) {
                    self.usage.update(&u);
                    outcome.set_usage(self.usage.to_usage());
                }
            }
            Some("message_stop") => self.stopped = true,
            Some("error") => {
                let error: ErrorBody = obj
                    .get("error")
                    .and_then(|e| serde_json::from_str(e.get()).ok())
                    .unwrap_or_default();
                // Re-sent by `error_event`, in the same shape.
                return Err(stream_failure(&error.kind, &error.message));
            }
            _ => {}
        }
        if edits.is_empty() {
            encode(ev.event.as_deref(), data.as_bytes(), out);
        } else {
            encode(
                ev.event.as_deref(),
                &splice(data.as_bytes(), &mut edits),
                out,
            );
        }
        Ok(())
    }
}

impl StreamTranslator for PassThroughStream {
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        let decoded = self.decoder.push(bytes, &mut self.events);
        self.drain(out, outcome)?;
        decoded.map_err(|e| sse_failure(&self.deployment, &e))
    }

    fn finish(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        let decoded = self.decoder.finish(&mut self.events);
        self.drain(out, outcome)?;
        decoded.map_err(|e| sse_failure(&self.deployment, &e))?;
        if !self.stopped {
            return Err(invalid_response(
                &self.deployment,
                "the stream ended before its message_stop event",
            ));
        }
        Ok(())
    }

    /// Anthropic's stream error event: `event: error` with `{"type":"error","error":{"type","message"}}`.
    fn error_event(&self, err: &GatewayError, out: &mut Vec<u8>) {
        push_event("error", &anthropic_error(err), out);
    }
}

/// `{"type":"error","error":{"type","message"}}` for `err`, keeping an upstream's own type and message.
pub(crate) fn anthropic_error(err: &GatewayError) -> serde_json::Value {
    let (kind, message) = match err {
        GatewayError::UpstreamStatus(f) => (
            f.error_type
                .clone()
                .unwrap_or_else(|| type_for_status(err.status().as_u16()).to_string()),
            f.message.clone(),
        ),
        other => (
            type_for_status(other.status().as_u16()).to_string(),
            other.public_message(),
        ),
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// Anthropic's error type for a status the client sees (docs.claude.com/en/api/errors).
fn type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::response::tests::STREAM;

    fn run(pieces: &[&[u8]]) -> (Result<(), GatewayError>, String, StreamOutcome) {
        let mut t = PassThroughStream::new("alias".into(), "d".into());
        let outcome = StreamOutcome::default();
        let mut out = Vec::new();
        for p in pieces {
            if let Err(e) = t.feed(p, &mut out, &outcome) {
                t.error_event(&e, &mut out);
                return (Err(e), String::from_utf8(out).unwrap(), outcome);
            }
        }
        let r = t.finish(&mut out, &outcome);
        if let Err(e) = &r {
            t.error_event(e, &mut out);
        }
        (r, String::from_utf8(out).unwrap(), outcome)
    }

    /// The pass-through re-sends an upstream `event: error` in Anthropic's shape, with the key masked.
    #[tokio::test]
    async fn stream_error_events_do_not_repeat_the_key() {
        let key = "sk-ant-api03-0123456789abcdef";
        let start = STREAM.split("event: content_block_start").next().unwrap();
        let error = format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key {key}\"}}}}\n\n"
        );
        let text = crate::translate::stream_tests::key_is_masked(
            PassThroughStream::new("alias".into(), "dep".into()),
            vec![start.as_bytes().to_vec(), error.into_bytes()],
            "x-api-key",
            key,
            key,
        )
        .await;
        let e = last_error(&text);
        assert_eq!(e["error"]["type"], "authentication_error");
        assert_eq!(e["error"]["message"], "invalid x-api-key sk-...cdef");
    }

    /// The data of the last `event: error` in `out`.
    fn last_error(out: &str) -> serde_json::Value {
        let at = out.rfind("event: error\ndata: ").unwrap() + "event: error\ndata: ".len();
        serde_json::from_str(out[at..].trim_end()).unwrap()
    }

    #[test]
    fn request_and_response_only_change_the_model() {
        let out = rewrite_request(
            br#"{"model":"alias","max_tokens":5,"messages":[]}"#,
            "claude-up",
        )
        .unwrap();
        assert_eq!(
            out,
            br#"{"model":"claude-up","max_tokens":5,"messages":[]}"#
        );
        let out = rewrite_request(br#"{"max_tokens":5}"#, "claude-up").unwrap();
        assert_eq!(out, br#"{"model":"claude-up","max_tokens":5}"#);
        assert!(rewrite_request(b"[1]", "m").is_err());
        let body = br#"{"id":"msg_1","type":"message","model":"claude-up","content":[],"usage":{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":1}}"#;
        let (b, u) = message_response(body, "alias").unwrap();
        assert_eq!(
            &b[..],
            br#"{"id":"msg_1","type":"message","model":"alias","content":[],"usage":{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":1}}"#
        );
        let u = u.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (4, 2, 1)
        );
        let (b, u) = message_response(br#"{"input_tokens":12}"#, "alias").unwrap();
        assert_eq!(&b[..], br#"{"input_tokens":12}"#);
        assert!(u.is_none());
    }

    #[test]
    fn stream_is_forwarded_with_the_requested_model_across_any_split() {
        let wire = STREAM.as_bytes();
        let (r, whole, outcome) = run(&[wire]);
        r.unwrap();
        assert_eq!(
            whole,
            STREAM.replace("\"model\":\"claude-up\"", "\"model\":\"alias\"")
        );
        for split in 1..wire.len() {
            let (a, b) = wire.split_at(split);
            let (r, out, _) = run(&[a, b]);
            r.unwrap();
            assert_eq!(out, whole, "split at {split}");
        }
        let u = outcome.usage().unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens,
                u.cache_creation_tokens
            ),
            (18, 42, 5, 3)
        );
    }

    #[test]
    fn errors_end_the_stream_in_anthropic_shape() {
        let head = &STREAM[..STREAM.find("event: content_block_start").unwrap()];
        let wire = format!(
            "{head}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n"
        );
        let (r, out, _) = run(&[wire.as_bytes()]);
        assert_eq!(r.unwrap_err().status().as_u16(), 502);
        assert_eq!(out.matches("event: error").count(), 1);
        assert_eq!(
            last_error(&out),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        );
        // Cut short: an error too, in the same shape.
        let (r, out, _) = run(&[head.as_bytes()]);
        assert!(matches!(r, Err(GatewayError::UpstreamInvalid { .. })));
        let e = last_error(&out);
        assert_eq!(e["error"]["type"], "api_error");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("message_stop"),
            "{e}"
        );
    }
}
