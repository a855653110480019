//! The response body type: a single buffer, or a paced stream of SSE events that can be aborted mid-way.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::state::InFlight;

/// The body error type hyper receives.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a body yields to make hyper abort the connection (HTTP/1) or
/// reset the stream (HTTP/2).
#[derive(Debug)]
pub(crate) struct Abort;

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tollgate-mock: connection reset by the reset_after_chunks knob")
    }
}

impl std::error::Error for Abort {}

/// Timing and failure plan of an event stream.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pacing {
    /// Delay before the first event.
    pub(crate) ttfb: Duration,
    /// Delay before each later event.
    pub(crate) interval: Duration,
    /// Abort after this many events instead of ending cleanly.
    pub(crate) reset_after: Option<usize>,
}

/// The body of every response the mock sends.
pub(crate) struct MockBody {
    inner: Inner,
    _in_flight: Option<InFlight>,
}

enum Inner {
    Full(Option<Bytes>),
    Events(Box<Events>),
}

struct Events {
    frames: VecDeque<Bytes>,
    pacing: Pacing,
    sent: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The delay before the next event has elapsed (or was zero).
    waited: bool,
    /// Something was handed to hyper since the last `Pending`; it must get a
    /// chance to flush before an abort, or the abort would swallow it.
    unflushed: bool,
    done: bool,
}

impl MockBody {
    /// A complete body sent in one frame with a `Content-Length`.
    pub(crate) fn full(data: impl Into<Bytes>) -> MockBody {
        MockBody {
            inner: Inner::Full(Some(data.into())),
            _in_flight: None,
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> MockBody {
        MockBody {
            inner: Inner::Full(None),
            _in_flight: None,
        }
    }

    /// A stream sending one frame per event, paced and possibly aborted.
    pub(crate) fn events(frames: Vec<Bytes>, pacing: Pacing) -> MockBody {
        MockBody {
            inner: Inner::Events(Box::new(Events {
                frames: frames.into(),
                pacing,
                sent: 0,
                sleep: None,
                waited: false,
                unflushed: true,
                done: false,
            })),
            _in_flight: None,
        }
    }

    /// Keeps `guard` alive until the body is finished or dropped.
    pub(crate) fn with_in_flight(mut self, guard: InFlight) -> MockBody {
        self._in_flight = Some(guard);
        self
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Events(ev) => ev.poll_next(cx),
        };
        if let Poll::Ready(None | Some(Err(_))) = polled {
            this._in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(data) => data.is_none(),
            Inner::Events(ev) => ev.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Events(_) => SizeHint::default(),
        }
    }
}

impl Events {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    // hyper flushes what it has while we wait.
                    self.unflushed = false;
                    return Poll::Pending;
                }
                self.sleep = None;
                self.waited = true;
            }
            let abort = match self.pacing.reset_after {
                Some(n) => self.sent >= n || self.frames.is_empty(),
                None => false,
            };
            if self.frames.is_empty() && !abort {
                self.done = true;
                return Poll::Ready(None);
            }
            if !self.waited && !self.frames.is_empty() {
                self.waited = true;
                let delay = if self.sent == 0 {
                    self.pacing.ttfb
                } else {
                    self.pacing.interval
                };
                if !delay.is_zero() {
                    self.sleep = Some(Box::pin(tokio::time::sleep(delay)));
                    continue;
                }
            }
            if abort {
                if self.unflushed {
                    self.unflushed = false;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.done = true;
                return Poll::Ready(Some(Err(Box::new(Abort))));
            }
            if let Some(frame) = self.frames.pop_front() {
                self.sent += 1;
                self.waited = false;
                self.unflushed = true;
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
        }
    }
}
