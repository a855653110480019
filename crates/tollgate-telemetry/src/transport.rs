//! The one way telemetry leaves the process: an HTTP POST through [`Transport`] (the server implements it
//! over the shared client; tests implement it in memory or with a real receiver).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// One POST: the exporter builds it, the transport sends it.
#[derive(Debug, Clone)]
pub struct Post {
    pub url: Arc<str>,
    /// Extra headers (e.g. `Authorization` from `OTEL_EXPORTER_OTLP_HEADERS`); values may be secrets: never log them.
    pub headers: Arc<[(String, String)]>,
    pub content_type: &'static str,
    pub body: Bytes,
    /// The whole exchange, connect to last byte.
    pub timeout: Duration,
}

/// What came back: the status code, or why there was none.
pub type PostResult = Result<u16, String>;

pub type PostFuture = Pin<Box<dyn Future<Output = PostResult> + Send + 'static>>;

/// Sends a [`Post`]. Implementations must honour `timeout` and must not log header values.
pub trait Transport: Send + Sync + 'static {
    fn post(&self, post: Post) -> PostFuture;
}

/// Whether an answer is worth retrying: transport errors, 408, 429 and 5xx.
pub fn retryable(r: &PostResult) -> bool {
    match r {
        Err(_) => true,
        Ok(s) => *s == 408 || *s == 429 || *s >= 500,
    }
}
