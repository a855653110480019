//! A mock LLM upstream speaking the OpenAI wire format over real HTTP, with per-request fault knobs.
//!
//! `tollgate-mock` stands in for real providers in tollgate's integration
//! tests and benchmark. It is a plain hyper server (HTTP/1.1 and h2c prior
//! knowledge on the same port) built to be cheap per request: no per-request
//! logging, no locks on the hot path, response JSON built by hand.
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
//! | GET | `/mock/requests` | the recorded requests as JSON (needs [`MockOptions::record`]) |
//! | DELETE | `/mock/requests` | clears the recording (204) |
//! | GET | `/mock/stats` | `{"requests":N,"in_flight":N,"recording":bool}` |
//!
//! Unknown routes get a 404 and malformed JSON a 400, both OpenAI-shaped
//! (`{"error":{"message","type","param","code"}}`). `/mock/*` requests are
//! never authenticated, recorded or counted.
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
//! | `status` | 400–599 | answer with this status and an OpenAI-shaped error |
//! | `retry_after` | seconds | send `Retry-After`; implies status 429 when `status` is absent |
//! | `reset_after_chunks` | n | streams: abort the connection after n events (no clean end); non-streaming: abort right after the head |
//! | `hang` | 1 | never answer; the request is dropped when the client disconnects |
//! | `content` | text | the answer text (tool-call arguments with `tool_call`) |
//! | `echo` | 1 | answer with the text of the last user message / prompt / input |
//! | `tool_call` | 1 or a name | chat with `tools`: call the first tool (or the named function); `finish_reason: "tool_calls"` |
//! | `dims` | n ≥ 1 | embedding dimension (default 8, or the request's `dimensions`) |
//! | `fail_first` | n | the first n requests with this exact model string and knob headers fail with `status` (default 500, or 429 with `retry_after`), later ones succeed |
//!
//! Error `type`/`code` per status: 400 `invalid_request_error`; 401
//! `invalid_request_error`/`invalid_api_key`; 403 `request_forbidden`; 404
//! `invalid_request_error`/`model_not_found`; 429 `requests`/
//! `rate_limit_exceeded`; 5xx `server_error`; other 4xx
//! `invalid_request_error`.

mod body;
mod chat;
mod completions;
mod embeddings;
mod ids;
mod json;
mod knobs;
mod models;
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
        let shared = Arc::new(Shared::new(opts.api_key, opts.record));
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
    /// rejected ones).
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
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
