//! What every translating provider shares: sending one upstream request within its deadline, turning a native
//! byte stream into the client's SSE stream chunk by chunk, and the `drop_params` policy for OpenAI params a
//! provider cannot take.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::value::RawValue;
use tollgate_config::Deployment;
use tollgate_core::GatewayError;
use tollgate_core::wire::{JsonObject, json_string};

use crate::sse::SseError;
use crate::stream::{ChunkStream, StreamOutcome};
use crate::{HttpClient, openai};

/// Largest upstream body buffered (complete responses and error bodies).
pub const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// Turns an upstream error response into the gateway error (each provider knows its error shape).
pub type ErrorParser = fn(StatusCode, &HeaderMap, &[u8]) -> GatewayError;

/// What [`send`] got back.
pub enum Sent {
    /// A successful, complete body.
    Body(Bytes),
    /// A successful response whose body is read as a stream (`want_stream` was true), with the request's
    /// credentials, to mask them in errors the upstream sends inside the stream.
    Stream(Response<Incoming>, Credentials),
}

/// Send `req` and wait for the answer within `timeout` (for streams: until the response head). A non-2xx
/// answer is read whole and turned into an error by `parse_error`.
pub async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    deployment: &str,
    timeout: Duration,
    want_stream: bool,
    parse_error: ErrorParser,
) -> Result<Sent, GatewayError> {
    let timed_out = || GatewayError::UpstreamTimeout {
        deployment: deployment.to_string(),
        after: timeout,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    // The credentials this request carries (cheap clones), to mask them in an error the upstream answers with.
    let credentials = Credentials::of(req.headers());
    let resp = tokio::time::timeout_at(deadline, client.request(req))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| openai::transport_error(deployment, &e))?;
    let status = resp.status();
    if !status.is_success() {
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout_at(deadline, collect(body, deployment))
            .await
            .map_err(|_| timed_out())??;
        return Err(credentials.mask(parse_error(status, &parts.headers, &bytes)));
    }
    if want_stream {
        return Ok(Sent::Stream(resp, credentials));
    }
    let bytes = tokio::time::timeout_at(deadline, collect(resp.into_body(), deployment))
        .await
        .map_err(|_| timed_out())??;
    Ok(Sent::Body(bytes))
}

/// `err` with every credential of `sensitive` (header values; of `Bearer <token>` the token) replaced by
/// its [`masked`] form wherever upstream text ends up: providers echo keys in error messages ("Incorrect API
/// key provided: sk-..."), and the message goes to the client and the logs.
pub fn mask_credentials(err: GatewayError, sensitive: &[HeaderValue]) -> GatewayError {
    let secrets = secrets(sensitive);
    if secrets.is_empty() {
        return err;
    }
    let scrub = |text: &mut String| scrub(&secrets, text);
    let mut err = err;
    match &mut err {
        GatewayError::UpstreamStatus(f) => {
            scrub(&mut f.message);
            for t in [&mut f.error_type, &mut f.param, &mut f.code]
                .into_iter()
                .flatten()
            {
                scrub(t);
            }
        }
        GatewayError::UpstreamInvalid { cause, .. }
        | GatewayError::UpstreamUnreachable { cause, .. } => scrub(cause),
        _ => {}
    }
    err
}

/// The secrets of `sensitive` header values (of `Bearer <token>` the token), longest first, so a secret
/// containing another is masked whole; those shorter than [`MIN_MASKED_LEN`] left out.
fn secrets(sensitive: &[HeaderValue]) -> Vec<&str> {
    let mut secrets: Vec<&str> = Vec::with_capacity(sensitive.len());
    for v in sensitive.iter().filter_map(|v| v.to_str().ok()) {
        let v = v.trim();
        match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                secrets.push(token.trim())
            }
            _ => secrets.push(v),
        }
    }
    secrets.retain(|s| s.len() >= MIN_MASKED_LEN);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// Replace every one of `secrets` in `text` by its [`masked`] form.
fn scrub(secrets: &[&str], text: &mut String) {
    for s in secrets {
        if text.contains(s) {
            *text = text.replace(s, &masked(s));
        }
    }
}

/// The credentials one upstream request carries (its header values marked sensitive), kept with its stream so
/// that errors arriving inside the stream are masked as [`send`] masks error answers. Cheap clones of the
/// header values; their `Debug` does not show them.
#[derive(Debug, Clone, Default)]
pub struct Credentials(Vec<HeaderValue>);

impl Credentials {
    /// The sensitive values of `headers`.
    pub fn of(headers: &HeaderMap) -> Credentials {
        Credentials(
            headers
                .values()
                .filter(|v| v.is_sensitive())
                .cloned()
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `err` with these credentials masked (see [`mask_credentials`]).
    pub fn mask(&self, err: GatewayError) -> GatewayError {
        if self.0.is_empty() {
            return err;
        }
        mask_credentials(err, &self.0)
    }

    /// `text` with these credentials masked, or `None` when it contains none of them.
    pub fn mask_text(&self, text: &str) -> Option<String> {
        let secrets = secrets(&self.0);
        if !secrets.iter().any(|s| text.contains(s)) {
            return None;
        }
        let mut text = text.to_string();
        scrub(&secrets, &mut text);
        Some(text)
    }
}

/// A stream whose SSE decoding failed (a line or event over [`crate::sse::MAX_SSE_EVENT`]): an invalid answer.
pub fn sse_failure(deployment: &str, e: &SseError) -> GatewayError {
    invalid_response(deployment, format!("reading the event stream: {e}"))
}

/// Credentials shorter than this are not masked (they would garble ordinary words of a message).
const MIN_MASKED_LEN: usize = 4;

/// How a credential is shown when an upstream repeats it: `sk-...9b7e` (its first 3 and last 4 characters)
/// for one of 16 characters or more, else `***`.
pub fn masked(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 16 {
        return "***".to_string();
    }
    let head: String = secret.chars().take(3).collect();
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("{head}...{tail}")
}

/// Read a whole body (at most [`MAX_UPSTREAM_BODY`]).
pub async fn collect(body: Incoming, deployment: &str) -> Result<Bytes, GatewayError> {
    Limited::new(body, MAX_UPSTREAM_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| GatewayError::UpstreamUnreachable {
            deployment: deployment.to_string(),
            cause: format!("reading the response body: {e}"),
        })
}

/// The upstream answer's `Retry-After` header, as given.
pub fn retry_after(headers: &HeaderMap) -> Option<String> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The message of an error body that is not in the provider's error shape: its first 500 characters, trimmed,
/// or `<who> returned <status>` when there are none.
pub fn error_text(body: &[u8], who: &str, status: StatusCode) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(500).collect();
    if text.is_empty() {
        format!("{who} returned {status}")
    } else {
        text
    }
}

/// An upstream answer that is not what the provider's API documents.
pub fn invalid_response(deployment: &str, cause: impl Into<String>) -> GatewayError {
    GatewayError::UpstreamInvalid {
        deployment: deployment.to_string(),
        cause: cause.into(),
    }
}

/// Whether an OpenAI embeddings request's `encoding_format` asks for base64 (absent or `"float"`: no).
pub fn wants_base64(encoding_format: Option<&str>) -> Result<bool, GatewayError> {
    match encoding_format {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(GatewayError::invalid_param(
            "encoding_format",
            format!("`encoding_format` must be \"float\" or \"base64\", not {other:?}"),
        )),
    }
}

/// The OpenAI embeddings list (`{"object":"list","data":[..],"model","usage"}`) with `vectors` copied as the
/// upstream wrote them, or packed as base64 little-endian f32 when `base64`. `Err((i, e))`: vector `i` is not a
/// list of numbers (only read when packing).
pub fn embeddings_list(
    vectors: &[&RawValue],
    base64: bool,
    requested_model: &str,
    tokens: u64,
) -> Result<Vec<u8>, (usize, serde_json::Error)> {
    let mut out =
        Vec::with_capacity(64 + vectors.iter().map(|v| v.get().len() + 48).sum::<usize>());
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, v) in vectors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        out.extend_from_slice(i.to_string().as_bytes());
        out.extend_from_slice(b",\"embedding\":");
        if base64 {
            let floats: Vec<f32> = serde_json::from_str(v.get()).map_err(|e| (i, e))?;
            let le: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
            out.push(b'"');
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(le)
                    .as_bytes(),
            );
            out.push(b'"');
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"model\":");
    out.extend_from_slice(&json_string(requested_model));
    out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    out.extend_from_slice(tokens.to_string().as_bytes());
    out.extend_from_slice(b",\"total_tokens\":");
    out.extend_from_slice(tokens.to_string().as_bytes());
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// A streamed upstream body: hyper's [`Incoming`], or in tests any body of byte frames.
pub trait UpstreamBody:
    hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + 'static
{
}

impl<B> UpstreamBody for B where
    B: hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + 'static
{
}

/// A provider's native stream decoder: bytes from upstream in, the client's SSE bytes out.
pub trait StreamTranslator: Send + 'static {
    /// Take the next bytes from upstream (any split) and append what the client gets to `out`. Usage goes
    /// to `outcome` as soon as it is known. An `Err` ends the stream with an error event.
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError>;

    /// The upstream ended cleanly: write the tail (finish reason, usage chunk, `[DONE]`). An `Err` (e.g. the
    /// stream ended without its final event) ends the stream with an error event instead.
    fn finish(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError>;

    /// The event that tells the client the stream failed (OpenAI's error object by default).
    fn error_event(&self, err: &GatewayError, out: &mut Vec<u8>) {
        out.extend_from_slice(&openai::sse_error_event(err));
    }
}

/// Forward `body` through `t`, one client chunk per upstream read that produced output. `idle` bounds every
/// wait for upstream bytes (LiteLLM's per-read stream timeout). The error a stream fails with (its error
/// event and the recorded failure) has `credentials` (the request's, from [`Sent::Stream`]) masked: an
/// upstream's in-stream error may repeat the key as its error answers do.
pub fn translated_stream<T: StreamTranslator, B: UpstreamBody>(
    body: B,
    t: T,
    idle: Duration,
    deployment: String,
    credentials: Credentials,
) -> ChunkStream {
    let outcome = Arc::new(StreamOutcome::default());
    struct State<T, B> {
        body: B,
        t: T,
        outcome: Arc<StreamOutcome>,
        deployment: String,
        idle: Duration,
        credentials: Credentials,
        done: bool,
    }
    let state = State {
        body,
        t,
        outcome: outcome.clone(),
        deployment,
        idle,
        credentials,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            // Bytes of `out` that are the stream's own content (not the closing error event): a chunk that
            // is only an error does not count, so a stream failing before its first chunk can be retried.
            let mut content_len: Option<usize> = None;
            let mut fail = |st: &mut State<T, B>, err: GatewayError, out: &mut Vec<u8>| {
                st.done = true;
                let err = st.credentials.mask(err);
                st.outcome.set_failure(&err);
                content_len = Some(out.len());
                st.t.error_event(&err, out);
            };
            match tokio::time::timeout(st.idle, st.body.frame()).await {
                Err(_) => {
                    let err = GatewayError::UpstreamTimeout {
                        deployment: st.deployment.clone(),
                        after: st.idle,
                    };
                    fail(&mut st, err, &mut out);
                }
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Err(err) = st.t.feed(&data, &mut out, &st.outcome) {
                        fail(&mut st, err, &mut out);
                    }
                }
                Ok(Some(Err(e))) => {
                    let err = GatewayError::UpstreamUnreachable {
                        deployment: st.deployment.clone(),
                        cause: format!("stream interrupted: {e}"),
                    };
                    fail(&mut st, err, &mut out);
                }
                Ok(None) => {
                    st.done = true;
                    match st.t.finish(&mut out, &st.outcome) {
                        Ok(()) => st.outcome.set_completed(),
                        Err(err) => fail(&mut st, err, &mut out),
                    }
                }
            }
            if !out.is_empty() {
                if content_len.is_none_or(|n| n > 0) {
                    st.outcome.add_chunk();
                }
                return Some((Bytes::from(out), st));
            }
        }
    });
    ChunkStream {
        body: stream.boxed(),
        outcome,
    }
}

/// How a deployment treats OpenAI params its provider does not take: `drop_params` (the deployment's
/// `litellm_params.drop_params`, else `litellm_settings.drop_params`) drops them silently, otherwise they are
/// a 400 naming the param and the provider. `additional_drop_params` are always removed.
#[derive(Debug, Clone, Default)]
pub struct ParamPolicy {
    pub drop: bool,
    pub additional: Vec<String>,
}

/// Body fields every provider accepts: the request itself, and what only the gateway reads.
pub const GATEWAY_PARAMS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "mock_response",
    "mock_testing_fallbacks",
    "tags",
    "litellm_metadata",
    "extra_body",
    "drop_params",
    "additional_drop_params",
];

impl ParamPolicy {
    pub fn for_deployment(d: &Deployment, global_drop: bool) -> ParamPolicy {
        let drop = d
            .extra_params
            .get("drop_params")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(global_drop);
        let additional = d
            .extra_params
            .get("additional_drop_params")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        ParamPolicy { drop, additional }
    }

    /// Whether a request may say `drop_params: true` itself (LiteLLM lets it).
    fn drop_for(&self, obj: &JsonObject<'_>) -> bool {
        self.drop || obj.get("drop_params").is_some_and(|v| v.get() == "true")
    }

    /// Check a request body against what `provider` takes (`supported`, plus [`GATEWAY_PARAMS`]). Returns the
    /// body to translate: unchanged when nothing is dropped, else without the dropped fields. A field whose
    /// value is `null` counts as absent.
    pub fn apply(
        &self,
        body: &Bytes,
        supported: &[&str],
        provider: &str,
    ) -> Result<Bytes, GatewayError> {
        self.filter(
            body,
            |key| !GATEWAY_PARAMS.contains(&key) && !supported.contains(&key),
            &[],
            provider,
        )
    }

    /// For pass-through providers (OpenAI-compatible): `unsupported` params are refused (or dropped),
    /// `renamed` ones get the provider's name, `additional_drop_params` are removed. The body is returned
    /// unchanged (no copy, not even parsed) when none of them is configured or present.
    pub fn apply_blocklist(
        &self,
        body: &Bytes,
        unsupported: &[&str],
        renamed: &[(&str, &str)],
        provider: &str,
    ) -> Result<Bytes, GatewayError> {
        if self.additional.is_empty() && unsupported.is_empty() && renamed.is_empty() {
            return Ok(body.clone());
        }
        self.filter(body, |key| unsupported.contains(&key), renamed, provider)
    }

    /// The one pass behind [`apply`](Self::apply) and [`apply_blocklist`](Self::apply_blocklist): an
    /// `unsupported` key with a value is a 400 unless dropping (then removed, as is a `null` one);
    /// `additional_drop_params` are removed; `renamed` keys get their new name. The body is re-serialized only
    /// when something changes.
    fn filter(
        &self,
        body: &Bytes,
        unsupported: impl Fn(&str) -> bool,
        renamed: &[(&str, &str)],
        provider: &str,
    ) -> Result<Bytes, GatewayError> {
        let obj =
            JsonObject::parse(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        let drop = self.drop_for(&obj);
        let mut remove: Vec<&str> = Vec::new();
        for key in obj.keys() {
            if self.additional.iter().any(|a| a == key) {
                remove.push(key);
            } else if unsupported(key) {
                let present = obj.get(key).is_some_and(|v| v.get() != "null");
                if drop {
                    remove.push(key);
                } else if present {
                    return Err(GatewayError::InvalidRequest {
                        message: format!(
                            "{provider} does not support parameters: ['{key}']. To drop these, set `litellm_settings: drop_params: true` (or `drop_params: true` on the deployment or in the request)"
                        ),
                        param: Some(key.to_string()),
                        code: Some("unsupported_parameter".into()),
                    });
                }
            }
        }
        let renames: Vec<&(&str, &str)> = renamed
            .iter()
            .filter(|(from, _)| obj.contains(from))
            .collect();
        if remove.is_empty() && renames.is_empty() {
            return Ok(body.clone());
        }
        let mut m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        for k in remove {
            m.remove(k);
        }
        for (from, to) in renames {
            if let Some(v) = m.remove(*from)
                && !m.contains_key(*to)
            {
                m.insert((*to).to_string(), v);
            }
        }
        serde_json::to_vec(&m)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(e.to_string()))
    }
}

/// A string param of the deployment's `litellm_params` (e.g. `aws_region_name`).
pub fn param_str<'a>(d: &'a Deployment, key: &str) -> Option<&'a str> {
    d.extra_params
        .get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What the stream tests of the adapters share: an upstream body from byte chunks, a request's credentials, and
/// running a translator as [`translated_stream`] does.
#[cfg(test)]
pub(crate) mod stream_tests {
    use std::convert::Infallible;

    use http_body_util::StreamBody;
    use hyper::body::Frame;

    use super::*;

    /// An upstream body sending `chunks`, one frame each.
    pub fn body(chunks: Vec<Vec<u8>>) -> impl UpstreamBody {
        StreamBody::new(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))),
        ))
    }

    /// The credentials of a request sending `value` (e.g. `Bearer sk-...`) in a sensitive `name` header.
    pub fn credentials(name: &'static str, value: &str) -> Credentials {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(name, crate::upstream::sensitive(value, "key").unwrap());
        Credentials::of(&headers)
    }

    /// Everything a stream sends, concatenated.
    pub async fn text_of(stream: ChunkStream) -> String {
        let chunks: Vec<Bytes> = stream.body.collect().await;
        String::from_utf8(chunks.concat()).unwrap()
    }

    /// `t` over `chunks` through [`translated_stream`]: what the client gets, and the outcome.
    pub async fn translated<T: StreamTranslator>(
        t: T,
        chunks: Vec<Vec<u8>>,
        credentials: Credentials,
    ) -> (String, Arc<StreamOutcome>) {
        let stream = translated_stream(
            body(chunks),
            t,
            Duration::from_secs(5),
            "dep".into(),
            credentials,
        );
        let outcome = stream.outcome.clone();
        (text_of(stream).await, outcome)
    }

    /// Run `t` over `chunks` (which end with an upstream error repeating `key`) with a request that sent
    /// `key` in the sensitive `header` (as `value`): the stream ends with an error event showing the key
    /// only masked, and the recorded failure does not hold it either. Returns what the client got.
    pub async fn key_is_masked<T: StreamTranslator>(
        t: T,
        chunks: Vec<Vec<u8>>,
        header: &'static str,
        value: &str,
        key: &str,
    ) -> String {
        assert!(
            chunks
                .iter()
                .any(|c| String::from_utf8_lossy(c).contains(key)),
            "the upstream stream should repeat the key"
        );
        let (text, outcome) = translated(t, chunks, credentials(header, value)).await;
        assert!(!text.contains(key), "{text}");
        assert!(text.contains(&masked(key)), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
        let failure = outcome.failure().expect("the stream failed");
        assert!(!failure.to_string().contains(key), "{failure}");
        assert!(!outcome.completed());
        text
    }

    /// `total` bytes of `data: xxx...` without a line end, in 1 MiB chunks (an event over the SSE limit).
    pub fn endless_line(total: usize) -> Vec<Vec<u8>> {
        let mut wire = b"data: ".to_vec();
        wire.resize(total, b'x');
        wire.chunks(1 << 20).map(<[u8]>::to_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_credentials_are_masked() {
        let key = "sk-proj-abcdefghijklmnop-9b7e";
        let mut bearer = HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
        bearer.set_sensitive(true);
        let mut short = HeaderValue::from_static("k3y9");
        short.set_sensitive(true);
        let err = GatewayError::UpstreamStatus(Box::new(tollgate_core::UpstreamFailure {
            status: 401,
            message: format!("Incorrect API key provided: {key}. Header was `Bearer {key}`; k3y9."),
            error_type: Some("invalid_request_error".into()),
            param: Some(key.into()),
            code: None,
            retry_after: None,
        }));
        let GatewayError::UpstreamStatus(f) = mask_credentials(err, &[bearer, short]) else {
            panic!("variant changed");
        };
        assert_eq!(
            f.message,
            "Incorrect API key provided: sk-...9b7e. Header was `Bearer sk-...9b7e`; ***."
        );
        assert_eq!(f.param.as_deref(), Some("sk-...9b7e"));
        assert_eq!(f.error_type.as_deref(), Some("invalid_request_error"));
        let invalid = mask_credentials(
            invalid_response("d", format!("bad body: {key}")),
            &[HeaderValue::from_str(key)
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .unwrap()],
        );
        assert!(!invalid.to_string().contains(key), "{invalid}");
        // Headers that are not sensitive are not credentials; nothing else changes.
        let e = mask_credentials(invalid_response("d", "plain"), &[]);
        assert_eq!(e.to_string(), invalid_response("d", "plain").to_string());
        assert_eq!(masked("short"), "***");
    }

    #[test]
    fn unsupported_params_are_a_400_unless_dropped() {
        let body = Bytes::from_static(
            br#"{"model":"m","messages":[],"logit_bias":{"1":2},"temperature":1}"#,
        );
        let strict = ParamPolicy::default();
        let e = strict
            .apply(&body, &["temperature"], "anthropic")
            .unwrap_err();
        assert_eq!(e.param(), Some("logit_bias"));
        assert!(
            e.to_string()
                .contains("anthropic does not support parameters: ['logit_bias']")
        );
        let dropping = ParamPolicy {
            drop: true,
            additional: vec!["temperature".into()],
        };
        let out = dropping
            .apply(&body, &["temperature"], "anthropic")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("logit_bias").is_none() && v.get("temperature").is_none());
        assert_eq!(v["model"], "m");
        // `null` counts as absent; a request may ask for dropping itself.
        let nulls = Bytes::from_static(br#"{"model":"m","logit_bias":null}"#);
        assert!(strict.apply(&nulls, &[], "x").is_ok());
        let asks = Bytes::from_static(br#"{"model":"m","drop_params":true,"logit_bias":{}}"#);
        assert!(strict.apply(&asks, &[], "x").is_ok());
    }

    #[test]
    fn blocklist_refuses_drops_renames_and_strips() {
        let p = ParamPolicy {
            drop: false,
            additional: vec!["seed".into()],
        };
        let body = Bytes::from_static(br#"{"model":"m","seed":1}"#);
        assert_eq!(
            &p.apply_blocklist(&body, &[], &[], "x").unwrap()[..],
            br#"{"model":"m"}"#
        );
        let untouched = Bytes::from_static(br#"{"model":"m"}"#);
        assert_eq!(
            p.apply_blocklist(&untouched, &["n"], &[], "x").unwrap(),
            untouched
        );
        let body =
            Bytes::from_static(br#"{"model":"m","logit_bias":{},"max_completion_tokens":5}"#);
        let e = p
            .apply_blocklist(&body, &["logit_bias"], &[], "groq")
            .unwrap_err();
        assert_eq!(e.param(), Some("logit_bias"));
        let dropping = ParamPolicy {
            drop: true,
            additional: vec![],
        };
        let out = dropping
            .apply_blocklist(
                &body,
                &["logit_bias"],
                &[("max_completion_tokens", "max_tokens")],
                "groq",
            )
            .unwrap();
        assert_eq!(&out[..], br#"{"max_tokens":5,"model":"m"}"#);
    }
}
