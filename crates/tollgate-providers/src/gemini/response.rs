//! Gemini `GenerateContentResponse` -> OpenAI: the complete `chat.completion` (one choice per candidate) and
//! the `streamGenerateContent?alt=sse` event stream as `chat.completion.chunk`s.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::{GatewayError, Usage};

use crate::chat::{ChatResponse, ChunkWriter, FinishReason, FunctionCall, ToolCall};
use crate::sse::{SseDecoder, SseEvent};
use crate::stream::StreamOutcome;
use crate::translate::{StreamTranslator, invalid_response, sse_failure};

use super::request::THOUGHT_SIGNATURE_SEPARATOR;

/// One `GenerateContentResponse` (a whole answer, or one stream event).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    pub candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate<'a> {
    #[serde(borrow, default)]
    pub content: Option<CandidateContent<'a>>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct CandidateContent<'a> {
    #[serde(borrow, default)]
    pub parts: Vec<ResponsePart<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponsePart<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default)]
    pub function_call: Option<ResponseFunctionCall>,
    #[serde(borrow, default)]
    pub thought_signature: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseFunctionCall {
    pub name: String,
    #[serde(default)]
    pub args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// `usageMetadata` (absent counts are zero).
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
    #[serde(default)]
    pub cached_content_token_count: u64,
    #[serde(default)]
    pub tool_use_prompt_token_count: u64,
    #[serde(default)]
    pub total_token_count: u64,
}

impl UsageMetadata {
    /// In OpenAI terms: the prompt includes the cached content (Gemini's `promptTokenCount` already does) and
    /// the tool-use prompt; the completion includes the thoughts.
    pub fn to_usage(self) -> Usage {
        let prompt = self.prompt_token_count + self.tool_use_prompt_token_count;
        let completion = self.candidates_token_count + self.thoughts_token_count;
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: if self.total_token_count > 0 {
                self.total_token_count
            } else {
                prompt + completion
            },
            cached_tokens: self.cached_content_token_count,
            reasoning_tokens: self.thoughts_token_count,
            cache_creation_tokens: 0,
        }
    }
}

/// Gemini's `finishReason` in OpenAI's words (LiteLLM's mapping); `STOP` with a function call is `tool_calls`.
pub fn finish_reason(reason: &str, has_tool_calls: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => FinishReason::ContentFilter,
        _ if has_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// A new OpenAI tool call id, carrying Gemini's thought signature when the part had one.
fn tool_call_id(signature: Option<&str>) -> String {
    let uuid = tollgate_core::ids::new_request_id().replace('-', "");
    match signature {
        Some(sig) if !sig.is_empty() => format!("call_{uuid}{THOUGHT_SIGNATURE_SEPARATOR}{sig}"),
        _ => format!("call_{uuid}"),
    }
}

/// The JSON text of a function call's `args` (`{}` when absent).
fn args_text(args: Option<&Value>) -> String {
    match args {
        Some(v) if !v.is_null() => serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
        _ => "{}".into(),
    }
}

/// One candidate as the OpenAI message parts.
fn candidate_response(c: &Candidate<'_>, model: &str, usage: Usage) -> ChatResponse {
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for p in c.content.iter().flat_map(|c| &c.parts) {
        if let Some(call) = &p.function_call {
            tool_calls.push(ToolCall {
                id: tool_call_id(p.thought_signature.as_deref()),
                kind: Some("function".into()),
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: args_text(call.args.as_ref()),
                },
            });
        } else if let Some(t) = &p.text {
            let into = if p.thought == Some(true) {
                &mut reasoning
            } else {
                &mut text
            };
            into.get_or_insert_with(String::new).push_str(t);
        }
    }
    let finish = c
        .finish_reason
        .as_deref()
        .map(|r| finish_reason(r, !tool_calls.is_empty()));
    ChatResponse {
        model: model.to_string(),
        content: text,
        reasoning,
        tool_calls,
        finish_reason: finish,
        usage,
        ..ChatResponse::default()
    }
}

/// Translate a complete `generateContent` answer into the OpenAI body, reporting `model`. A prompt Gemini
/// blocked (`promptFeedback.blockReason`, no candidates) is an empty answer with `finish_reason:
/// content_filter`, as LiteLLM returns it.
pub fn translate(bytes: &[u8], model: &str) -> Result<(Bytes, Usage), String> {
    let resp: GenerateContentResponse<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a GenerateContentResponse: {e}"))?;
    let usage = resp
        .usage_metadata
        .map(UsageMetadata::to_usage)
        .unwrap_or_default();
    if resp.candidates.is_empty() {
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_ref())
            .is_some();
        let r = ChatResponse {
            model: model.to_string(),
            finish_reason: Some(if blocked {
                FinishReason::ContentFilter
            } else {
                FinishReason::Stop
            }),
            usage,
            ..ChatResponse::default()
        };
        return Ok((Bytes::from(r.to_json()), usage));
    }
    let first = candidate_response(&resp.candidates[0], model, usage);
    if resp.candidates.len() == 1 {
        return Ok((Bytes::from(first.to_json()), usage));
    }
    // n > 1: one choice per candidate, in the shape of the first.
    let mut body: Value =
        serde_json::from_slice(&first.to_json()).map_err(|e| format!("building choices: {e}"))?;
    let mut choices = Vec::with_capacity(resp.candidates.len());
    for (i, c) in resp.candidates.iter().enumerate() {
        let one: Value = serde_json::from_slice(&candidate_response(c, model, usage).to_json())
            .map_err(|e| format!("building choices: {e}"))?;
        if let Some(mut choice) = one.get("choices").and_then(|c| c.get(0)).cloned() {
            choice["index"] = Value::from(c.index.unwrap_or(i as u32));
            choices.push(choice);
        }
    }
    body["choices"] = Value::Array(choices);
    let out = serde_json::to_vec(&body).map_err(|e| format!("building choices: {e}"))?;
    Ok((Bytes::from(out), usage))
}

/// `streamGenerateContent?alt=sse` -> OpenAI chunks: text and thought deltas as they come, each function call
/// as one complete tool call, the finish reason, then the usage chunk and `[DONE]` when the stream ends.
pub struct GeminiStream {
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    writer: ChunkWriter,
    usage: Option<Usage>,
    deployment: String,
}

impl GeminiStream {
    pub fn new(model: &str, include_usage: bool, deployment: String) -> GeminiStream {
        GeminiStream {
            decoder: SseDecoder::new(),
            events: Vec::new(),
            writer: ChunkWriter::new(model, include_usage),
            usage: None,
            deployment,
        }
    }

    fn events(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            self.event(ev.data.as_bytes(), out, outcome)?;
        }
        self.events = events;
        self.events.clear();
        Ok(())
    }

    fn event(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        if let Some(err) = stream_error(data) {
            return Err(err);
        }
        let resp: GenerateContentResponse<'_> = serde_json::from_slice(data).map_err(|e| {
            invalid_response(
                &self.deployment,
                format!("a stream event is not a GenerateContentResponse: {e}"),
            )
        })?;
        if let Some(u) = resp.usage_metadata {
            let usage = u.to_usage();
            self.usage = Some(usage);
            outcome.set_usage(usage);
        }
        if resp.candidates.is_empty()
            && resp
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_ref())
                .is_some()
        {
            self.writer.finish(FinishReason::ContentFilter, out);
            return Ok(());
        }
        // n > 1 is refused for streams, so only candidate 0 is read.
        let Some(c) = resp.candidates.iter().find(|c| c.index.unwrap_or(0) == 0) else {
            return Ok(());
        };
        for p in c.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &p.function_call {
                let id = tool_call_id(p.thought_signature.as_deref());
                let index = self.writer.tool_call_start(&id, &call.name, out);
                self.writer
                    .tool_call_args(index, &args_text(call.args.as_ref()), out);
            } else if let Some(t) = &p.text {
                if p.thought == Some(true) {
                    self.writer.reasoning(t, out);
                } else {
                    self.writer.text(t, out);
                }
            }
        }
        if let Some(r) = c.finish_reason.as_deref() {
            let reason = finish_reason(r, self.writer.saw_tool_calls());
            self.writer.finish(reason, out);
        }
        Ok(())
    }
}

/// A stream event that is Google's error object instead of a response.
fn stream_error(data: &[u8]) -> Option<GatewayError> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    let probe: Probe<'_> = serde_json::from_slice(data).ok()?;
    let raw = probe.error?;
    let code = serde_json::from_str::<Value>(raw.get())
        .ok()
        .and_then(|e| e.get("code").and_then(Value::as_u64))
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    Some(super::upstream_error(code, &http::HeaderMap::new(), data))
}

impl StreamTranslator for GeminiStream {
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        let decoded = self.decoder.push(bytes, &mut self.events);
        self.events(out, outcome)?;
        decoded.map_err(|e| sse_failure(&self.deployment, &e))
    }

    fn finish(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        let decoded = self.decoder.finish(&mut self.events);
        self.events(out, outcome)?;
        decoded.map_err(|e| sse_failure(&self.deployment, &e))?;
        if !self.writer.finished() {
            return Err(invalid_response(
                &self.deployment,
                "the stream ended without a finishReason",
            ));
        }
        if let Some(u) = self.usage {
            self.writer.usage(&u, out);
        }
        self.writer.done(out);
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Value {
        let (b, _) = translate(v.to_string().as_bytes(), "alias").unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn text_thoughts_tool_calls_and_usage() {
        let (b, usage) = translate(
            json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "Let me think.", "thought": true},
                    {"text": "Hello "}, {"text": "there."},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}
                ]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
                                  "cachedContentTokenCount": 4, "totalTokenCount": 18},
                "modelVersion": "gemini-2.5-flash", "responseId": "abc"
            })
            .to_string()
            .as_bytes(),
            "alias",
        )
        .unwrap();
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 8,
                total_tokens: 18,
                cached_tokens: 4,
                reasoning_tokens: 3,
                cache_creation_tokens: 0
            }
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(v["model"], "alias");
        assert_eq!(m["content"], "Hello there.");
        assert_eq!(m["reasoning_content"], "Let me think.");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        let id = m["tool_calls"][0]["id"].as_str().unwrap();
        assert!(
            id.starts_with("call_") && id.ends_with("__thought__c2ln"),
            "{id}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    }

    #[test]
    fn finish_reasons_blocks_and_candidates() {
        for (r, want) in [
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("IMAGE_SAFETY", "content_filter"),
            ("STOP", "stop"),
            ("OTHER", "stop"),
        ] {
            let v = body(json!({"candidates": [{"finishReason": r, "index": 0}]}));
            assert_eq!(v["choices"][0]["finish_reason"], want, "{r}");
            assert!(v["choices"][0]["message"]["content"].is_null());
        }
        let v = body(
            json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}),
        );
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        let v = body(json!({"candidates": [
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}]}));
        assert_eq!(v["choices"].as_array().unwrap().len(), 2);
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][1]["message"]["content"], "b");
        assert_eq!(v["choices"][1]["finish_reason"], "length");
        assert!(translate(b"[1]", "m").is_err());
    }

    /// Google's in-stream error repeating the key: masked in the error event and the recorded failure.
    #[tokio::test]
    async fn in_stream_errors_do_not_repeat_the_key() {
        let key = "AIzaSyD-0123456789abcdefghij";
        let text = crate::translate::stream_tests::key_is_masked(
            GeminiStream::new("alias", false, "dep".into()),
            vec![
                br#"data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"index":0}]}"#.to_vec(),
                b"\n\n".to_vec(),
                format!(r#"data: {{"error":{{"code":400,"message":"API key not valid: {key}","status":"INVALID_ARGUMENT"}}}}"#).into_bytes(),
                b"\n\n".to_vec(),
            ],
            "x-goog-api-key",
            key,
            key,
        )
        .await;
        assert!(text.contains(r#""content":"Hi""#), "{text}");
    }

    /// A line that never ends fails the stream once it passes the SSE limit, with an error event.
    #[tokio::test]
    async fn an_event_over_the_limit_ends_the_stream_with_an_error() {
        use crate::translate::stream_tests::{endless_line, translated};
        let mut chunks = vec![
            br#"data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"index":0}]}"#.to_vec(),
            b"\n\n".to_vec(),
        ];
        chunks.extend(endless_line(crate::sse::MAX_SSE_EVENT + 1));
        let (text, outcome) = translated(
            GeminiStream::new("alias", false, "dep".into()),
            chunks,
            Default::default(),
        )
        .await;
        assert!(text.contains(r#""content":"Hi""#), "{text}");
        assert!(
            !text.contains("[DONE]") && text.contains("upstream_invalid_response"),
            "{text}"
        );
        assert!(matches!(
            outcome.failure(),
            Some(GatewayError::UpstreamInvalid { .. })
        ));
    }

    fn run_stream(
        wire: &[u8],
        splits: &[usize],
        include_usage: bool,
    ) -> (String, Result<(), GatewayError>, StreamOutcome) {
        let mut s = GeminiStream::new("alias", include_usage, "dep".into());
        let outcome = StreamOutcome::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &at in splits.iter().chain(std::iter::once(&wire.len())) {
            if let Err(e) = s.feed(&wire[last..at], &mut out, &outcome) {
                return (String::from_utf8(out).unwrap(), Err(e), outcome);
            }
            last = at;
        }
        let r = s.finish(&mut out, &outcome);
        (String::from_utf8(out).unwrap(), r, outcome)
    }

    /// What a client saw in an OpenAI chunk stream.
    #[derive(Debug, Default)]
    pub(in crate::gemini) struct Summary {
        pub text: String,
        pub reasoning: String,
        /// Tool call names and their arguments, in order.
        pub calls: Vec<(String, String)>,
        pub finishes: Vec<String>,
        /// The last `usage` chunk.
        pub usage: Option<Value>,
    }

    pub(in crate::gemini) fn summarize(sse: &str) -> Summary {
        let mut s = Summary::default();
        for line in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                s.usage = Some(u.clone());
            }
            for c in v["choices"].as_array().into_iter().flatten() {
                let d = &c["delta"];
                s.text.push_str(d["content"].as_str().unwrap_or(""));
                s.reasoning
                    .push_str(d["reasoning_content"].as_str().unwrap_or(""));
                for t in d["tool_calls"].as_array().into_iter().flatten() {
                    if let Some(name) = t["function"]["name"].as_str() {
                        s.calls.push((name.to_string(), String::new()));
                    }
                    if let (Some(a), Some(last)) =
                        (t["function"]["arguments"].as_str(), s.calls.last_mut())
                    {
                        last.1.push_str(a);
                    }
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    s.finishes.push(f.to_string());
                }
            }
        }
        s
    }

    const STREAM: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hmm\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 7,\"totalTokenCount\": 7}}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 7,\"totalTokenCount\": 7}}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo \\u00e9\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 7,\"candidatesTokenCount\": 2,\"thoughtsTokenCount\": 4,\"totalTokenCount\": 13}}\r\n\r\n",
    );

    #[test]
    fn stream_translation_across_every_split() {
        let wire = STREAM.as_bytes();
        let (whole, r, outcome) = run_stream(wire, &[], true);
        r.unwrap();
        let summary = summarize(&whole);
        assert_eq!(summary.text, "Hello é");
        assert_eq!(summary.reasoning, "Hmm");
        assert_eq!(summary.finishes, vec!["stop"]);
        let usage = summary.usage.unwrap();
        assert_eq!(usage["prompt_tokens"], 7);
        assert_eq!(usage["completion_tokens"], 6);
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 4);
        assert_eq!(outcome.usage().unwrap().total_tokens, 13);
        assert!(whole.ends_with("data: [DONE]\n\n"));
        for a in 0..wire.len() {
            for b in [a, (a + 17).min(wire.len()), (a + 101).min(wire.len())] {
                let (out, r, _) = run_stream(wire, &[a, b.max(a)], true);
                r.unwrap();
                let s = summarize(&out);
                assert_eq!(
                    (s.text.as_str(), s.reasoning.as_str(), &s.finishes),
                    ("Hello é", "Hmm", &summary.finishes),
                    "split {a}/{b}"
                );
            }
        }
        // Without include_usage there is no usage chunk, but the outcome still has it.
        let (out, r, outcome) = run_stream(wire, &[], false);
        r.unwrap();
        assert!(summarize(&out).usage.is_none());
        assert_eq!(outcome.usage().unwrap().prompt_tokens, 7);
    }

    #[test]
    fn stream_tool_calls_blocks_and_failures() {
        let wire = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\",\"args\": {\"a\": 1}}}]},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 1,\"totalTokenCount\": 4}}\n\n";
        let (out, r, _) = run_stream(wire.as_bytes(), &[40], true);
        r.unwrap();
        let s = summarize(&out);
        assert_eq!(s.calls, vec![("f".to_string(), "{\"a\":1}".to_string())]);
        assert_eq!(s.finishes, vec!["tool_calls"]);

        let blocked = "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"},\"usageMetadata\": {\"promptTokenCount\": 3,\"totalTokenCount\": 3}}\r\n\r\n";
        let (out, r, _) = run_stream(blocked.as_bytes(), &[], false);
        r.unwrap();
        assert_eq!(summarize(&out).finishes, vec!["content_filter"]);

        // Cut before the finish reason: an error, not a silent end.
        let cut = &STREAM[..STREAM.rfind("data:").unwrap()];
        let (_, r, _) = run_stream(cut.as_bytes(), &[], true);
        assert!(r.unwrap_err().to_string().contains("finishReason"));

        let err = "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n";
        let (_, r, _) = run_stream(err.as_bytes(), &[], true);
        let e = r.unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
        assert!(
            e.public_message().ends_with("The model is overloaded."),
            "{}",
            e.public_message()
        );

        let (_, r, _) = run_stream(b"data: not json\n\n", &[], true);
        assert!(r.is_err());
    }
}
