//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): each runs the production parsers and translators on arbitrary bytes and panics when an invariant breaks.
//!
//! The first bytes of an input choose how the rest is split into chunks (see [`chunked`]), so every decoder
//! is checked against the same bytes fed in one piece: both must give the same result. Random ids and
//! timestamps in the translators' output are removed before comparing (see [`normalized`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tollgate_config::{Env, Overrides};
use tollgate_core::GatewayError;
use tollgate_core::wire::{JsonObject, replace_model};

use crate::bedrock::eventstream::{self, FrameError, HeaderValue};
use crate::chat::ChatRequest;
use crate::ollama::OllamaProvider;
use crate::sse::{SseDecoder, SseEvent, encode};
use crate::stream::StreamOutcome;
use crate::translate::{ParamPolicy, StreamTranslator};
use crate::{BuildContext, Call, Endpoint, anthropic, bedrock, gemini, messages, ollama, openai};

/// A model name that needs escaping in JSON, so splicing it in checks the escaping too.
const UPSTREAM_MODEL: &str = "up/model \"q\" \\ é";

/// Split `data` into control bytes and payload, and the payload into chunks: `data[0] % 8` control bytes
/// follow, each one chunk length (0 means 1), used in turn until the payload is used up. Without control
/// bytes the payload is one chunk.
pub fn chunked(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((&first, rest)) = data.split_first() else {
        return (&[], Vec::new());
    };
    let n = usize::from(first % 8).min(rest.len());
    let (sizes, payload) = rest.split_at(n);
    if sizes.is_empty() {
        return (payload, vec![payload]);
    }
    let mut chunks = Vec::new();
    let mut left = payload;
    let mut i = 0;
    while !left.is_empty() {
        let size = usize::from(sizes[i % sizes.len()]).max(1).min(left.len());
        let (a, b) = left.split_at(size);
        chunks.push(a);
        left = b;
        i += 1;
    }
    (payload, chunks)
}

fn call(endpoint: Endpoint, body: &[u8], stream: bool, client_wants_usage: bool) -> Call {
    Call {
        endpoint,
        body: Bytes::copy_from_slice(body),
        requested_model: "fuzz-model".into(),
        upstream_model: UPSTREAM_MODEL.into(),
        stream,
        client_wants_usage,
        request_id: "fuzz-request".into(),
        traceparent: None,
        timeout: Duration::from_secs(10),
    }
}

fn assert_json_object(bytes: &[u8], what: &str) {
    let v: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "{what} is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    assert!(v.is_object(), "{what} is not a JSON object: {v}");
}

/// The two Ollama adapters (`/api/chat` and `/api/generate`), built once from a config as at start-up.
static OLLAMA: LazyLock<Vec<OllamaProvider>> = LazyLock::new(|| {
    let yaml = concat!(
        "model_list:\n",
        "  - model_name: a\n",
        "    litellm_params: {model: ollama_chat/llama3, options: {num_ctx: 8}, keep_alive: 5m}\n",
        "  - model_name: b\n",
        "    litellm_params: {model: ollama/llama3}\n",
    );
    let env = Env::from_map([]);
    let cfg = tollgate_config::load_str(yaml, Path::new("fuzz.yaml"), &env, &Overrides::default())
        .expect("the fuzz config loads");
    let client = crate::http_client();
    let ctx = BuildContext {
        env: &env,
        client: &client,
        drop_params: false,
    };
    cfg.deployments
        .iter()
        .map(|d| OllamaProvider::new(d, &ctx).expect("the fuzz Ollama deployment builds"))
        .collect()
});

/// An incoming chat/completions (or Messages API) body, handled as the proxy does: the zero-copy view and
/// `model` rewriting of the pass-through path, the typed parse, every translating provider's native request
/// (with and without `drop_params`), and the Messages API → chat bridge (whose output is translated again).
pub fn request_parse(data: &[u8]) {
    let Ok(obj) = JsonObject::parse(data) else {
        // Everything below starts with this parse; a body that fails it is a 400 before any of them.
        return;
    };
    // What the server reads to route: `stream` must be a boolean (else 400).
    let Ok(stream) = obj.get_bool("stream").map(|s| s.unwrap_or(false)) else {
        return;
    };

    // `model` rewriting keeps the object and every key, and sets `model` exactly.
    let rewritten = replace_model(&obj, UPSTREAM_MODEL);
    let again = JsonObject::parse(&rewritten).expect("replace_model keeps a JSON object");
    assert!(
        obj.keys().eq(again.keys()),
        "replace_model changed the keys"
    );
    if obj.contains("model") {
        assert_eq!(
            again
                .get_str("model")
                .expect("model is a string")
                .as_deref(),
            Some(UPSTREAM_MODEL)
        );
    }
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Responses,
    ] {
        for wants_usage in [false, true] {
            let c = call(endpoint, data, stream, wants_usage);
            let Ok(out) = openai::rewrite_request(&c) else {
                continue;
            };
            let o = JsonObject::parse(&out).unwrap_or_else(|e| {
                panic!(
                    "rewrite_request output is not an object ({e}): {}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(
                o.get_str("model").expect("model is a string").as_deref(),
                Some(UPSTREAM_MODEL)
            );
            if stream && !wants_usage && endpoint != Endpoint::Responses {
                let opts = o.get("stream_options").expect("stream_options is set");
                let opts = JsonObject::parse_str(opts.get()).expect("stream_options is an object");
                assert_eq!(opts.get_bool("include_usage").ok().flatten(), Some(true));
            }
        }
    }

    translate_chat(data, stream);

    // The Messages API bridge, for a provider that takes Anthropic's extras and one that does not.
    let _ = messages::count_tokens(data);
    for provider in ["anthropic", "openai"] {
        let c = call(Endpoint::Messages, data, stream, false);
        if let Ok(chat) = messages::fuzz::chat_body(provider, &c) {
            assert_json_object(&chat, "the bridge's chat body");
            translate_chat(&chat, stream);
        }
    }
}

/// Translate a chat/completions body for every translating provider, as their adapters do before sending.
fn translate_chat(body: &[u8], stream: bool) {
    let policies = [
        ParamPolicy::default(),
        ParamPolicy {
            drop: true,
            additional: vec!["user".into()],
        },
    ];
    let _ = ChatRequest::parse(body);
    let c = call(Endpoint::ChatCompletions, body, stream, false);
    for policy in &policies {
        if let Ok((native, _json_mode)) = anthropic::fuzz::chat_body(policy, &c, 4096) {
            assert_json_object(&native, "the Anthropic body");
        }
        if let Ok(native) = gemini::fuzz::chat_body(policy, &c) {
            assert_json_object(&native, "the Gemini body");
        }
        for model in [
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "us.amazon.nova-pro-v1:0",
            "amazon.nova-2-lite-v1:0",
            "converse/meta.llama3-70b-instruct-v1:0",
        ] {
            let mut bc = c.clone();
            bc.upstream_model = model.into();
            if let Ok(t) = bedrock::chat_request(policy, &bc, &bedrock::converse::Fixed::default())
            {
                assert_json_object(&t.body, "the Bedrock Converse body");
            }
        }
    }
    for p in OLLAMA.iter() {
        for endpoint in [
            Endpoint::ChatCompletions,
            Endpoint::Completions,
            Endpoint::Embeddings,
        ] {
            let oc = call(endpoint, body, stream, false);
            if let Ok(native) = ollama::fuzz::prepared_body(p, &oc) {
                assert_json_object(&native, "the Ollama body");
            }
        }
    }
    let _ = anthropic::fuzz::native_body(body, UPSTREAM_MODEL);
}

fn decode_sse(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        // Fuzz inputs are far below the decoder's limit.
        d.push(c, &mut out).expect("within the SSE limit");
    }
    d.finish(&mut out).expect("within the SSE limit");
    out
}

/// The SSE decoder on arbitrary bytes in arbitrary chunks: the same events as in one piece, no line-end
/// characters left in any field, and re-encoding the events decodes to the same events. Then every SSE
/// stream translator (OpenAI pass-through rewriting, Anthropic → chat, Anthropic pass-through,
/// Gemini → chat, chat → Anthropic Messages) gets the same bytes, whole and chunked.
pub fn sse_decode(data: &[u8]) {
    let (payload, chunks) = chunked(data);
    let whole = decode_sse(&[payload]);
    assert_eq!(
        decode_sse(&chunks),
        whole,
        "SSE events depend on the chunking"
    );
    let mut wire = Vec::new();
    for ev in &whole {
        for field in [Some(&ev.data), ev.event.as_ref(), ev.id.as_ref()]
            .into_iter()
            .flatten()
        {
            assert!(
                !field.contains('\r'),
                "a decoded SSE field keeps a CR: {ev:?}"
            );
        }
        assert!(
            ev.event.as_ref().is_none_or(|e| !e.contains('\n')),
            "an event name has a LF: {ev:?}"
        );
        encode(ev.event.as_deref(), ev.data.as_bytes(), &mut wire);
    }
    let round: Vec<SseEvent> = whole
        .iter()
        .map(|e| SseEvent {
            id: None,
            ..e.clone()
        })
        .collect();
    assert_eq!(decode_sse(&[&wire]), round, "SSE encode/decode round trip");

    // The OpenAI-compatible pass-through: each event rewritten (model, usage) and re-encoded.
    for strip_usage in [false, true] {
        let rw = openai::EventRewriter {
            requested_model: "fuzz-model".into(),
            strip_usage,
            endpoint: Endpoint::ChatCompletions,
            credentials: Default::default(),
        };
        let outcome = StreamOutcome::default();
        let mut out = Vec::new();
        for ev in &whole {
            rw.rewrite(ev, &outcome, &mut out);
        }
        // The rewritten stream decodes to as many events or fewer (usage-only chunks dropped).
        assert!(decode_sse(&[&out]).len() <= whole.len());
    }

    for include_usage in [false, true] {
        for json_mode in [false, true] {
            same_translation(
                || anthropic::fuzz::chat_stream(include_usage, json_mode),
                payload,
                &chunks,
                true,
            );
        }
        same_translation(
            || gemini::fuzz::chat_stream(include_usage),
            payload,
            &chunks,
            true,
        );
    }
    same_translation(anthropic::fuzz::native_stream, payload, &chunks, false);
    same_translation(|| Bridge(messages::fuzz::stream()), payload, &chunks, true);
}

/// The chat → Messages stream translator, which never fails, as a [`StreamTranslator`].
struct Bridge(messages::fuzz::Translator);

impl StreamTranslator for Bridge {
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        self.0.feed(bytes, out, outcome);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        self.0.end(out, outcome);
        Ok(())
    }
}

/// What a translator made of a stream: its output (normalized), its usage and its error, if any.
#[derive(Debug, PartialEq)]
struct Translation {
    events: Vec<(Option<String>, Value)>,
    usage: Option<String>,
    error: Option<String>,
}

/// Run `t` over `chunks` as [`crate::translate::translated_stream`] does: feed until an error, then finish
/// (or the error event).
fn translate<T: StreamTranslator>(mut t: T, chunks: &[&[u8]], json_only: bool) -> Translation {
    let outcome = StreamOutcome::default();
    let mut out = Vec::new();
    let mut error = None;
    for c in chunks {
        if let Err(e) = t.feed(c, &mut out, &outcome) {
            error = Some(e);
            break;
        }
    }
    if error.is_none()
        && let Err(e) = t.finish(&mut out, &outcome)
    {
        error = Some(e);
    }
    if let Some(e) = &error {
        t.error_event(e, &mut out);
    }
    Translation {
        events: normalized(&out, json_only),
        usage: outcome.usage().map(|u| format!("{u:?}")),
        error: error.map(|e| e.to_string()),
    }
}

/// The events of an SSE output, data parsed as JSON without the fields that are random per stream (`id`,
/// `created`); `[DONE]` and (unless `json_only`) other non-JSON data kept as strings.
fn normalized(out: &[u8], json_only: bool) -> Vec<(Option<String>, Value)> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("id");
                m.remove("created");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    decode_sse(&[out])
        .into_iter()
        .map(|ev| {
            let data = match serde_json::from_str::<Value>(&ev.data) {
                Ok(mut v) => {
                    strip(&mut v);
                    v
                }
                Err(e) => {
                    assert!(
                        !json_only || ev.data == "[DONE]",
                        "a translator wrote non-JSON data ({e}): {:?}",
                        ev.data
                    );
                    Value::String(ev.data)
                }
            };
            (ev.event, data)
        })
        .collect()
}

fn same_translation<T: StreamTranslator>(
    make: impl Fn() -> T,
    payload: &[u8],
    chunks: &[&[u8]],
    json_only: bool,
) {
    let whole = translate(make(), &[payload], json_only);
    let split = translate(make(), chunks, json_only);
    assert_eq!(
        split,
        whole,
        "{} output depends on the chunking",
        std::any::type_name::<T>()
    );
}

/// Encode one message with any header values (the inverse of the decoder).
fn encode_message(m: &eventstream::Message) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in &m.headers {
        h.push(u8::try_from(name.len()).expect("header names are at most 255 bytes"));
        h.extend_from_slice(name.as_bytes());
        match value {
            HeaderValue::Bool(true) => h.push(0),
            HeaderValue::Bool(false) => h.push(1),
            HeaderValue::Byte(b) => {
                h.push(2);
                h.extend_from_slice(&b.to_be_bytes());
            }
            HeaderValue::Short(s) => {
                h.push(3);
                h.extend_from_slice(&s.to_be_bytes());
            }
            HeaderValue::Int(i) => {
                h.push(4);
                h.extend_from_slice(&i.to_be_bytes());
            }
            HeaderValue::Long(l) => {
                h.push(5);
                h.extend_from_slice(&l.to_be_bytes());
            }
            HeaderValue::Bytes(b) => {
                h.push(6);
                h.extend_from_slice(&u16::try_from(b.len()).expect("short value").to_be_bytes());
                h.extend_from_slice(b);
            }
            HeaderValue::String(s) => {
                h.push(7);
                h.extend_from_slice(&u16::try_from(s.len()).expect("short value").to_be_bytes());
                h.extend_from_slice(s.as_bytes());
            }
            HeaderValue::Timestamp(t) => {
                h.push(8);
                h.extend_from_slice(&t.to_be_bytes());
            }
            HeaderValue::Uuid(u) => {
                h.push(9);
                h.extend_from_slice(u);
            }
        }
    }
    let total = 16 + h.len() + m.payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).expect("small message").to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).expect("small headers").to_be_bytes());
    let prelude_crc = eventstream::crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&m.payload);
    let crc = eventstream::crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Messages decoded from `chunks`, and the error that stopped the decoder (or the end-of-stream check's).
fn decode_frames(chunks: &[&[u8]]) -> (Vec<eventstream::Message>, Option<FrameError>) {
    let mut d = eventstream::Decoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, d.finish().err())
}

/// The AWS event-stream decoder on arbitrary bytes in arbitrary chunks: the same messages and error as in one
/// piece, and every decoded message re-encodes to exactly the bytes it came from. Then Bedrock's ConverseStream
/// translator gets the same bytes, whole and chunked.
///
/// Random bytes almost never carry valid CRCs, so when `data[0]` is odd the payload is first read as a list
/// of messages to frame (`[headers len u8][headers][payload len u8][payload]`, repeated) with correct CRCs,
/// letting the fuzzer reach the header parser and the translator.
pub fn eventstream_decode(data: &[u8]) {
    let (payload, chunks) = chunked(data);
    let framed;
    let (payload, chunks): (&[u8], Vec<&[u8]>) = if data.first().is_some_and(|b| b & 1 == 1) {
        framed = frame_all(payload);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        (&framed, resplit(&framed, &sizes))
    } else {
        (payload, chunks)
    };
    let (whole, whole_err) = decode_frames(&[payload]);
    let (split, split_err) = decode_frames(&chunks);
    assert_eq!(split, whole, "event-stream messages depend on the chunking");
    // A cut stream reports how many bytes were left over, which is the same in both.
    assert_eq!(
        split_err, whole_err,
        "event-stream errors depend on the chunking"
    );
    let mut reencoded = Vec::new();
    for m in &whole {
        reencoded.extend(encode_message(m));
    }
    if whole_err.is_none() {
        assert_eq!(
            reencoded, payload,
            "decoded messages do not re-encode to the input"
        );
    } else {
        assert!(
            payload.starts_with(&reencoded),
            "decoded messages are not a prefix of the input"
        );
    }

    for include_usage in [false, true] {
        for json_mode in [false, true] {
            same_translation(
                || {
                    bedrock::converse::StreamState::new(
                        "fuzz-model",
                        include_usage,
                        json_mode,
                        "fuzz",
                    )
                },
                payload,
                &chunks,
                true,
            );
        }
    }
}

/// Frame `spec` as event-stream messages with valid CRCs (see [`eventstream_decode`]).
fn frame_all(mut spec: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some((&hlen, rest)) = spec.split_first() {
        let hlen = usize::from(hlen).min(rest.len());
        let (headers, rest) = rest.split_at(hlen);
        let (plen, rest) = match rest.split_first() {
            Some((&p, r)) => (usize::from(p).min(r.len()), r),
            None => (0, rest),
        };
        let (body, rest) = rest.split_at(plen);
        let total = 16 + headers.len() + body.len();
        let start = out.len();
        out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(headers.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        let prelude_crc = eventstream::crc32(&out[start..]);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(body);
        let crc = eventstream::crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
        spec = rest;
    }
    out
}

/// `bytes` cut into pieces of the given sizes, in turn (one piece when there are none).
fn resplit<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![bytes];
    }
    let mut out = Vec::new();
    let mut left = bytes;
    let mut i = 0;
    while !left.is_empty() {
        let n = sizes[i % sizes.len()].max(1).min(left.len());
        let (a, b) = left.split_at(n);
        out.push(a);
        left = b;
        i += 1;
    }
    out
}

/// Ollama's NDJSON stream translator (chat and text completion) on arbitrary bytes, whole and chunked.
pub fn ndjson_decode(data: &[u8]) {
    let (payload, chunks) = chunked(data);
    for chat in [false, true] {
        for wants_usage in [false, true] {
            let c = call(Endpoint::ChatCompletions, b"{}", true, wants_usage);
            same_translation(
                || ollama::fuzz::ndjson_stream(chat, &c),
                payload,
                &chunks,
                true,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed inputs of `fuzz/seeds/<target>` pass their target (the fuzz set-up itself works).
    #[test]
    fn seeds_pass() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 4] = [
            ("request_parse", request_parse),
            ("sse_decode", sse_decode),
            ("eventstream_decode", eventstream_decode),
            ("ndjson_decode", ndjson_decode),
        ];
        for (name, run) in targets {
            let files = std::fs::read_dir(seeds.join(name)).unwrap();
            let mut n = 0;
            for f in files {
                run(&std::fs::read(f.unwrap().path()).unwrap());
                n += 1;
            }
            assert!(n > 0, "no seeds for {name}");
        }
    }

    #[test]
    fn chunked_splits_by_the_control_bytes() {
        assert_eq!(chunked(b""), (&b""[..], vec![]));
        assert_eq!(chunked(b"\x00abc"), (&b"abc"[..], vec![&b"abc"[..]]));
        assert_eq!(
            chunked(b"\x02\x01\x00abcd"),
            (&b"abcd"[..], vec![&b"a"[..], b"b", b"c", b"d"])
        );
        assert_eq!(
            chunked(b"\x01\x02abcde"),
            (&b"abcde"[..], vec![&b"ab"[..], b"cd", b"e"])
        );
    }

    #[test]
    fn framing_gives_valid_messages() {
        let framed = frame_all(b"\x00\x02{}\x00\x00");
        let (msgs, err) = decode_frames(&[&framed]);
        assert_eq!(err, None);
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].payload[..], b"{}");
    }
}
