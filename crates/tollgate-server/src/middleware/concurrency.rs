//! `--limit_concurrency N` (uvicorn's flag): at most N requests in flight, counted from the request's arrival until its response body is sent or dropped (streams included); a request beyond that is answered at once with a 503 (OpenAI body, `Retry-After: 1`). The limit is on requests, not connections: an idle keep-alive connection costs nothing and is never refused. Liveness and readiness probes are exempt, so a busy gateway is not restarted by its orchestrator.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::RETRY_AFTER;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::GatewayError;

use crate::error::ApiError;

/// Routes that are never refused: orchestrator probes.
pub const EXEMPT_ROUTES: &[&str] = &[
    "/health/liveliness",
    "/health/liveness",
    "/health/readiness",
];

/// The in-flight counter.
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    in_flight: AtomicUsize,
    /// Requests refused since the last warning, and when that was (ms since start-up).
    refused: AtomicU64,
    last_warn_ms: AtomicU64,
    start: std::time::Instant,
}

/// A request refused because the limit is reached (answer it with [`rejection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// One admitted request; gives its slot back when dropped.
#[derive(Debug)]
pub struct Permit(Arc<Limiter>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub fn new(max: usize) -> Arc<Limiter> {
        Arc::new(Limiter {
            max,
            in_flight: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            start: std::time::Instant::now(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A slot for a request to `path`: `Ok(None)` for exempt routes, `Err` when full.
    pub fn admit(self: &Arc<Self>, path: &str) -> Result<Option<Permit>, Full> {
        if EXEMPT_ROUTES.contains(&path) {
            return Ok(None);
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.clone());
        if before < self.max {
            return Ok(Some(permit));
        }
        drop(permit);
        self.note_refusal();
        Err(Full)
    }

    /// One warning a second at most, with the number refused since the last one.
    fn note_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        // Milliseconds since start-up, from 1 (0 means "never warned").
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 1_000)
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.refused.swap(0, Ordering::Relaxed);
            tracing::warn!(
                limit_concurrency = self.max,
                refused,
                "requests refused with 503: limit_concurrency reached"
            );
        }
    }
}

/// The answer to a request beyond the limit.
pub fn rejection(max: usize) -> Response {
    let mut resp = ApiError(GatewayError::Unavailable(format!(
        "The gateway is at its concurrency limit ({max} requests in flight, --limit_concurrency); retry shortly"
    )))
    .into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    // Not logged one by one (an overloaded gateway would flood its log): `note_refusal` warns once a
    // second with the count.
    resp.extensions_mut()
        .insert(crate::middleware::context::Recorded);
    resp
}

/// `resp` with `permit` held until its body is done (sent or dropped).
pub fn hold(resp: Response, permit: Permit) -> Response {
    resp.map(|inner| {
        Body::new(PermitBody {
            inner,
            _permit: permit,
        })
    })
}

pin_project! {
    struct PermitBody {
        #[pin]
        inner: Body,
        _permit: Permit,
    }
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn slots_are_taken_and_given_back() {
        let l = Limiter::new(2);
        let a = l.admit("/v1/chat/completions").unwrap().unwrap();
        let b = l.admit("/v1/chat/completions").unwrap().unwrap();
        assert_eq!(l.in_flight(), 2);
        assert_eq!(l.admit("/v1/chat/completions").err(), Some(Full));
        let refused = rejection(l.max());
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()[RETRY_AFTER], "1");
        // A refusal does not keep a slot.
        assert_eq!(l.in_flight(), 2);
        // Probes pass and take nothing.
        assert!(l.admit("/health/readiness").unwrap().is_none());
        drop(a);
        assert_eq!(l.in_flight(), 1);
        let c = l.admit("/v1/models").unwrap().unwrap();
        // A response holds its slot until its body is done.
        let resp = hold(Response::new(Body::from("hello")), c);
        drop(b);
        assert_eq!(l.in_flight(), 1);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        assert_eq!(l.in_flight(), 0);
    }
}
