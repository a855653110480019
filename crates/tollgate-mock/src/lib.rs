//! A mock LLM upstream speaking the OpenAI wire format over real HTTP, with per-request fault knobs.
//!
//! `tollgate-mock` stands in for real providers in tollgate's integration
//! tests and benchmark. It is a plain hyper server (HTTP/1.1 and h2c prior
//! knowledge on the same port) built to be cheap per request: no per-request
//! logging, no locks on the hot path (unless recording is on or server-wide
//! faults are set), response JSON built by hand.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tollgate_mock::{MockOptions, MockServer};
//! let mock = MockServer::start("127.0.0.1:0".parse()?, MockOptions::default()).await?;
//! let base = mock.base_url(); // "http://127.0.0.1:PORT/v1"
//! // ... point a client at `base` ...
//! mock.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! Every endpoint answers with and without the `/v1` prefix.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/v1/chat/completions` | `chat.completion`, or a `chat.completion.chunk` SSE stream with `"stream": true` |
//! | POST | `/v1/completions` | `text_completion`, or its SSE stream |
//! | POST | `/v1/embeddings` | one deterministic unit vector per input (`encoding_format: "base64"` supported) |
//! | GET | `/v1/models`, `/v1/models/{id}` | a small fixed list; any id is answered |
//! | POST | `/v1/responses` | a minimal Responses API object, or its semantic event stream |
//! | POST | `/openai/deployments/{deployment}/{chat/completions,completions,embeddings}?api-version=V` | Azure OpenAI: as the OpenAI endpoint, `model` = the deployment (knobs may follow it after `@`); no `api-version` → 404 `{"error":{"code":"404","message":"Resource not found"}}` |
//! | POST | `/openai/v1/{chat/completions,completions,embeddings,responses}`, `/openai/responses?api-version=V` | Azure OpenAI v1 / Responses API: as the OpenAI endpoint, `model` from the body |
//! | POST | `/v2/embed`, `/v1/embed` | Cohere embed: `embeddings` by type (`float`, `int8`, `uint8`, `binary`, `ubinary`, `base64`) or, v1 without `embedding_types`, float lists; `meta.billed_units.input_tokens` |
//! | POST | `/v2/rerank`, `/v1/rerank`, `/rerank` | Cohere rerank: `results` scored by query-word overlap (ties by index), `top_n`, `return_documents`, `meta.billed_units.search_units`; `/rerank` adds `model` and `usage` |
//! | POST | `/v1/messages` | Anthropic Messages API `message` object, or its named-event SSE stream (`message_start` … `message_stop`) with `"stream": true`; needs `anthropic-version`; errors in Anthropic's shape (`{"type":"error","error":{...}}`) |
//! | POST | `/v1/messages/count_tokens` | `{"input_tokens": N}` |
//! | POST | `/api/chat` | Ollama chat: NDJSON stream (`application/x-ndjson`) unless `"stream": false`; `message.content` / `thinking` / `tool_calls`, final `done: true` object with `done_reason` and counts |
//! | POST | `/api/generate` | Ollama generate: `response` (+ `thinking`), streamed as NDJSON unless `"stream": false` |
//! | POST | `/api/embed` | Ollama embeddings: `{"model","embeddings":[[...]],"prompt_eval_count"}` (`dimensions` and `dims` knob honoured) |
//! | POST | `/api/embeddings` | legacy Ollama embedding of one `prompt`: `{"embedding":[...]}` |
//! | GET | `/api/tags` | a small fixed Ollama model list |
//! | POST | `/v1beta/models/{model}:generateContent` (also `/v1/models/...`, `/models/...`) | Gemini `GenerateContentResponse` (Google-shaped errors; see `gemini.rs`) |
//! | POST | `/v1beta/models/{model}:streamGenerateContent?alt=sse` | SSE of `GenerateContentResponse`s, the last with `finishReason` and `usageMetadata`; without `alt=sse` one streamed JSON array |
//! | POST | `/v1beta/models/{model}:countTokens` | `{"totalTokens": N}` |
//! | POST | `/v1beta/models/{model}:embedContent`, `:batchEmbedContents` | `{"embedding":{"values":[..]}}` / `{"embeddings":[{"values":[..]}]}` |
//! | POST | `/model/{modelId}/converse` | Bedrock Converse: `output.message.content`, `stopReason`, `usage`, `metrics` (model id percent-decoded; knobs in its `@` suffix) |
//! | POST | `/model/{modelId}/converse-stream` | Bedrock ConverseStream as an `application/vnd.amazon.eventstream` binary event stream (CRC-checked frames) |
//! | POST | `/model/{modelId}/invoke` | Bedrock InvokeModel embeddings: `amazon.titan-embed-*` (`inputText`) and `cohere.embed-*` (`texts`, `input_type`) |
//! | GET | `/mock/requests` | the recorded requests as JSON (needs [`MockOptions::record`]) |
//! | DELETE | `/mock/requests` | clears the recording (204) |
//! | GET | `/mock/stats` | `{"requests":N,"in_flight":N,"recording":bool,"faults":bool,"endpoints":{"chat_completions":N,"completions":N,"embeddings":N,"responses":N,"models":N,"messages":N,"gemini":N,"bedrock":N,"ollama":N,"azure":N,"cohere":N,"other":N}}` |
//! | PUT | `/mock/faults` | sets the server-wide knobs (see below) from a JSON object; answers with the new set |
//! | GET | `/mock/faults` | the server-wide knobs as set (`{}` when none) |
//! | DELETE | `/mock/faults` | clears the server-wide knobs (204) |
//!
//! Unknown routes get a 404 and malformed JSON a 400, both OpenAI-shaped
//! (`{"error":{"message","type","param","code"}}`) on the OpenAI routes; each
//! provider's own routes answer in that provider's error shape (Ollama's
//! unknown `/api/*` paths get its plain-text `404 page not found`). `/mock/*` requests are
//! never authenticated, recorded or counted. `requests` (also
//! [`MockServer::requests`]) counts every other request, rejected ones
//! included; `endpoints` (also [`MockServer::requests_to`]) splits it by
//! [`Endpoint`].
//!
//! The response `model` is the request's `model` string exactly (knob suffix
//! included). Token usage is deterministic: prompt tokens are
//! `ceil(characters of all message text / 4)` (at least 1), completion
//! tokens are the number of whitespace-separated words of the answer.
//! The default answer is `"This is a mock response from tollgate."`.
//!
//! # Fault knobs
//!
//! Knobs are set per request, either with a header `x-mock-<knob>` (`-` and
//! `_` are interchangeable in the name) or with a suffix on the model name
//! after the last `@`, comma separated: `"gpt-4o@latency_ms=20,status=503"`.
//! A suffix counts as knobs only if it contains `=` or is made of bare knob
//! names (so `claude-3@20240229` stays a plain model name); a bare knob name
//! means `=1`. Knob values in the suffix cannot contain `,`.
//! When both set a knob, the header wins. Unknown knobs and bad values are
//! answered with a 400.
//!
//! | knob | value | effect |
//! |---|---|---|
//! | `latency_ms` | ms | delay before the response head |
//! | `ttfb_ms` | ms | streams: delay between the head and the first event |
//! | `chunks` | n ≥ 1 (default 3) | streams: number of content chunks |
//! | `chunk_interval_ms` | ms | streams: delay before each event after the first |
//! | `status` | 400–599 | answer with this status and an OpenAI-shaped error; with `fail_first` / `fail_rate`, the status of the failures only |
//! | `retry_after` | seconds | send `Retry-After`; implies status 429 when `status` is absent |
//! | `reset_after_chunks` | n | streams: abort the connection after n events (no clean end); non-streaming: abort right after the head |
//! | `hang` | 1 | never answer; the request is dropped when the client disconnects |
//! | `content` | text | the answer text (tool-call arguments with `tool_call`) |
//! | `echo` | 1 | answer with the text of the last user message / prompt / input |
//! | `tool_call` | 1 or a name | chat with `tools`: call the first tool (or the named function); `finish_reason: "tool_calls"` |
//! | `dims` | n ≥ 1 | embedding dimension (default 8, or the request's `dimensions`) |
//! | `fail_first` | n | the first n requests with this exact model string and knob headers fail with `status` (default 500, or 429 with `retry_after`), later ones succeed |
//! | `fail_rate` | p in [0, 1] | each request fails with probability p, with `status` (default 500, or 429 with `retry_after`, or the `error_code` default); `Retry-After` is sent when `retry_after` is set |
//! | `error_code` | code | the failure's OpenAI error `code`, with a matching message; alone it makes the request fail. Special codes below carry their own status default; any other code needs `status` (or `retry_after`) |
//! | `echo_key` | 1 / `json` / `text` | fail (401 unless `status` is set) with "Incorrect API key provided: <the presented key>", as real providers echo keys; `text` sends it as a `text/plain` body. The key is echoed on the OpenAI routes (other providers fail with their own message) |
//!
//! `status`, `retry_after` and `error_code` alone make every request fail.
//! With a gate (`fail_first` and/or `fail_rate`) they only say *how* a
//! request fails; the gate says *whether* (with both gates, either one
//! failing the request is enough). So `fail_rate=0.2,status=503` fails 20%
//! of requests with a 503, and `fail_rate=0,status=503` never fails.
//!
//! Special `error_code` values (the `status` knob still overrides the status):
//!
//! | `error_code` | default status | error |
//! |---|---|---|
//! | `context_length_exceeded` | 400 | `type: invalid_request_error`, `param: messages`, message "This model's maximum context length is 8192 tokens. However, your messages resulted in N tokens. Please reduce the length of the messages." with N = 8192 + the request's prompt tokens (0 where not computed: embeddings, responses, models) |
//! | `content_policy_violation` | 400 | `type: invalid_request_error`, `param: null`, message "Your request was rejected as a result of our safety system." |
//! | `content_filter` | 400 | Azure's shape: `type: null`, `param: prompt`, Azure's content-management-policy message, plus `status: 400` and `innererror` (`ResponsibleAIPolicyViolation`, `content_filter_result`) |
//!
//! Other codes keep the status's `type`, and get OpenAI's wording for
//! `insufficient_quota`, `rate_limit_exceeded`, `invalid_api_key`,
//! `model_not_found` and `server_error`, else the status message.
//!
//! # Server-wide faults
//!
//! `PUT /mock/faults` with a JSON object of knob name -> value (string,
//! number or bool, e.g. `{"status": 503}` or `{"latency_ms": 50}`), or
//! [`MockServer::set_faults`], sets knobs applied to every later request on
//! every endpoint, *below* the request's own knobs: the model suffix and
//! `x-mock-*` headers win (e.g. `x-mock-status: 200` gets through a
//! server-wide `status=503`). A PUT replaces the whole set; an empty object
//! clears it, as does `DELETE /mock/faults` / [`MockServer::clear_faults`].
//! A set with an unknown knob or a bad value is refused with a 400 and
//! changes nothing. A server-wide `fail_first` counts per model string and
//! knob headers, as a request's does. When no server-wide knobs are set,
//! requests only pay one atomic load for the feature.
//!
//! Error `type`/`code` per status: 400 `invalid_request_error`; 401
//! `invalid_request_error`/`invalid_api_key`; 403 `request_forbidden`; 404
//! `invalid_request_error`/`model_not_found`; 429 `requests`/
//! `rate_limit_exceeded`; 5xx `server_error`; other 4xx
//! `invalid_request_error`.

mod anthropic;
mod azure;
mod bedrock;
mod body;
mod chat;
mod cohere;
mod completions;
mod embeddings;
mod gemini;
mod ids;
mod json;
mod knobs;
mod models;
mod ollama;
mod respond;
mod responses;
mod router;
mod server;
mod state;
mod text;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use state::RECORD_CAPACITY;

use state::Shared;

/// How a [`MockServer`] behaves.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// When set, every non-`/mock/*` request must carry
    /// `Authorization: Bearer <key>` or `api-key: <key>`, else it gets an
    /// OpenAI-shaped 401.
    pub api_key: Option<String>,
    /// With [`MockOptions::api_key`] as the access key id, Bedrock requests signed with SigV4 must carry a
    /// signature made with this secret access key (the mock recomputes it from the request), else they get
    /// a 403 `InvalidSignatureException` in Bedrock's error shape. A Bedrock API key (`Authorization: Bearer
    /// <api_key>`) still works. Unset, SigV4 is checked structurally only.
    pub aws_secret_access_key: Option<String>,
    /// Keep the last [`RECORD_CAPACITY`] requests for inspection.
    pub record: bool,
}

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URI path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order (names lowercase; values lossily UTF-8).
    pub headers: Vec<(String, String)>,
    /// The full request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The endpoint groups [`MockServer::requests_to`] and `GET /mock/stats`
/// (`endpoints`) count requests for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/responses`
    Responses,
    /// `GET /v1/models` and `GET /v1/models/{id}`
    Models,
    /// Anthropic `POST /v1/messages` (and `/v1/messages/count_tokens`)
    Messages,
    /// Gemini `POST /v1beta/models/{model}:{generateContent,streamGenerateContent,embedContent,batchEmbedContents}`
    Gemini,
    /// Bedrock `POST /model/{id}/{converse,converse-stream,invoke}`
    Bedrock,
    /// Ollama `POST /api/{chat,generate,embed,embeddings}`, `GET /api/tags`
    Ollama,
    /// Azure OpenAI `POST /openai/deployments/{deployment}/...`, `/openai/v1/...`, `/openai/responses`
    Azure,
    /// Cohere `POST /v1/embed`, `/v2/embed`, `/v1/rerank`, `/v2/rerank` (and `/rerank` of OpenAI-style servers)
    Cohere,
    /// Anything else (answered with a 404).
    Other,
}

impl Endpoint {
    /// Number of variants.
    pub(crate) const COUNT: usize = 12;
    /// Every variant, in `/mock/stats` order.
    pub const ALL: [Endpoint; Endpoint::COUNT] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Models,
        Endpoint::Messages,
        Endpoint::Gemini,
        Endpoint::Bedrock,
        Endpoint::Ollama,
        Endpoint::Azure,
        Endpoint::Cohere,
        Endpoint::Other,
    ];

    /// The key under `endpoints` in `GET /mock/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
            Endpoint::Gemini => "gemini",
            Endpoint::Bedrock => "bedrock",
            Endpoint::Ollama => "ollama",
            Endpoint::Azure => "azure",
            Endpoint::Cohere => "cohere",
            Endpoint::Other => "other",
        }
    }

    /// The endpoint of a request; `path` is without the `/v1` prefix.
    pub(crate) fn of(method: &http::Method, path: &str) -> Endpoint {
        use http::Method;
        if path.starts_with("/messages") {
            return Endpoint::Messages;
        }
        if path.starts_with("/v1beta/") || path.starts_with("/models/") && path.contains(':') {
            return Endpoint::Gemini;
        }
        if path.starts_with("/model/") {
            return Endpoint::Bedrock;
        }
        if path.starts_with("/api/") {
            return Endpoint::Ollama;
        }
        if path.starts_with("/openai/") {
            return Endpoint::Azure;
        }
        if matches!(path, "/embed" | "/rerank" | "/v2/embed" | "/v2/rerank") {
            return Endpoint::Cohere;
        }
        match (method, path) {
            (&Method::POST, "/chat/completions") => Endpoint::ChatCompletions,
            (&Method::POST, "/completions") => Endpoint::Completions,
            (&Method::POST, "/embeddings") => Endpoint::Embeddings,
            (&Method::POST, "/responses") => Endpoint::Responses,
            (&Method::GET, "/models") => Endpoint::Models,
            (&Method::GET, p) if p.starts_with("/models/") && p.len() > "/models/".len() => {
                Endpoint::Models
            }
            _ => Endpoint::Other,
        }
    }
}

/// A running mock server. Dropping it stops accepting connections;
/// [`MockServer::shutdown`] also waits for open connections to finish.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl MockServer {
    /// Binds `addr` (port 0 picks a free port) and serves in the background
    /// on the current tokio runtime.
    pub async fn start(addr: SocketAddr, opts: MockOptions) -> anyhow::Result<MockServer> {
        let listener = server::bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shared = Arc::new(Shared::new(
            opts.api_key,
            opts.aws_secret_access_key,
            opts.record,
        ));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(server::accept_loop(
            listener,
            Arc::clone(&shared),
            cancel.clone(),
            tracker.clone(),
        ));
        Ok(MockServer {
            addr,
            shared,
            cancel,
            tracker,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/v1`, with an unspecified bind address replaced by loopback.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", connectable(self.addr))
    }

    /// The recorded requests, newest last (empty unless [`MockOptions::record`]).
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.recorded()
    }

    /// Forgets the recorded requests.
    pub fn clear_recorded(&self) {
        self.shared.clear_recorded();
    }

    /// All requests received so far (any route except `/mock/*`, including
    /// rejected ones); the `requests` of `GET /mock/stats`.
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
    }

    /// Same as [`MockServer::request_count`].
    pub fn requests(&self) -> u64 {
        self.shared.request_count()
    }

    /// Requests received by one endpoint (including ones rejected by auth,
    /// bad bodies or fault knobs), e.g.
    /// `mock.requests_to(Endpoint::ChatCompletions)`.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.shared.endpoint_count(endpoint)
    }

    /// Replaces the server-wide fault knobs: they apply to every later
    /// request, below the request's own knobs (model suffix and `x-mock-*`
    /// headers win). Same as `PUT /mock/faults`. An empty list clears them.
    /// On an unknown knob or a bad value nothing changes.
    ///
    /// ```no_run
    /// # fn demo(mock: &tollgate_mock::MockServer) -> anyhow::Result<()> {
    /// mock.set_faults(&[("status", "503"), ("retry_after", "1")])?; // upstream down
    /// mock.clear_faults(); // back up
    /// # Ok(()) }
    /// ```
    pub fn set_faults(&self, knobs: &[(&str, &str)]) -> anyhow::Result<()> {
        let given = knobs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        self.shared.set_faults(given).map_err(anyhow::Error::msg)
    }

    /// Removes the server-wide fault knobs (same as `DELETE /mock/faults`).
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// The server-wide fault knobs as set (name, value), empty when none.
    pub fn faults(&self) -> Vec<(String, String)> {
        self.shared.faults().map_or_else(Vec::new, |f| {
            f.given
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
    }

    /// Requests whose response is still being produced (waiting, hanging or
    /// streaming). Drops back when clients go away.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Stops accepting, lets open connections finish (up to a short grace
    /// period, after which they are dropped) and waits for every task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.tracker.close();
    }
}

/// `addr` with an unspecified IP replaced by the matching loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}
