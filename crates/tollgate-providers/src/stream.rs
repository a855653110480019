//! The stream type providers hand back: SSE bytes for the client, plus what the gateway learns as they pass.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use tollgate_core::Usage;

/// Filled in by the provider's stream as chunks pass; read by the server when the stream ends or is dropped.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    inner: Mutex<OutcomeInner>,
}

#[derive(Debug, Default, Clone)]
struct OutcomeInner {
    usage: Option<Usage>,
    /// Why the stream failed, if it did (kept whole, so a stream that fails before its first chunk can be
    /// retried on its real cause).
    failure: Option<tollgate_core::GatewayError>,
    completed: bool,
    chunks: u64,
}

impl StreamOutcome {
    fn with<R>(&self, f: impl FnOnce(&mut OutcomeInner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
    pub fn set_usage(&self, usage: Usage) {
        self.with(|i| i.usage = Some(usage));
    }
    /// Record why the stream failed after it started, with the status a non-streamed answer would have had.
    pub fn set_failure(&self, err: &tollgate_core::GatewayError) {
        self.with(|i| i.failure = Some(err.clone()));
    }
    /// The error the stream failed with, if it did.
    pub fn failure(&self) -> Option<tollgate_core::GatewayError> {
        self.with(|i| i.failure.clone())
    }
    pub fn error_status(&self) -> Option<u16> {
        self.with(|i| i.failure.as_ref().map(|e| e.status().as_u16()))
    }
    pub fn set_completed(&self) {
        self.with(|i| i.completed = true);
    }
    pub fn add_chunk(&self) {
        self.with(|i| i.chunks += 1);
    }
    pub fn usage(&self) -> Option<Usage> {
        self.with(|i| i.usage)
    }
    pub fn error(&self) -> Option<String> {
        self.with(|i| i.failure.as_ref().map(ToString::to_string))
    }
    /// True when the upstream stream ended normally.
    pub fn completed(&self) -> bool {
        self.with(|i| i.completed)
    }
    pub fn chunks(&self) -> u64 {
        self.with(|i| i.chunks)
    }
}

/// SSE bytes in the OpenAI format. Upstream failures are already turned into an SSE error event, so the
/// stream itself never fails.
pub struct ChunkStream {
    pub body: Pin<Box<dyn Stream<Item = Bytes> + Send + 'static>>,
    pub outcome: Arc<StreamOutcome>,
}
