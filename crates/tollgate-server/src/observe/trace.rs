//! One request's trace: its ids (continuing an incoming `traceparent`), the child spans finished so far
//! (auth, routing, upstream attempts), and the root span, handed to the OTLP exporter exactly once.

use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use http::HeaderValue;
use tollgate_telemetry::trace::{Span, SpanId, SpanKind, Status, TraceId, TraceParent, Value};

/// Unix nanoseconds of a wall-clock time.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

pub fn now_nanos() -> u64 {
    unix_nanos(SystemTime::now())
}

/// A sampled request's trace.
pub struct RequestTrace {
    pub trace_id: TraceId,
    /// The root (server) span.
    pub root: SpanId,
    /// The caller's span, from its `traceparent`.
    pub parent: Option<SpanId>,
    pub start_nanos: u64,
    /// Finished child spans, exported with the root.
    children: Mutex<Vec<Span>>,
    finished: AtomicBool,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace")
            .field("trace_id", &self.trace_id.to_hex())
            .field("root", &self.root.to_hex())
            .finish_non_exhaustive()
    }
}

impl RequestTrace {
    /// A trace for a request: `trace_id` is the incoming `traceparent`'s (with its span as `parent`), or new.
    pub fn start(trace_id: TraceId, parent: Option<SpanId>, start_nanos: u64) -> RequestTrace {
        RequestTrace {
            trace_id,
            root: SpanId::random(),
            parent,
            start_nanos,
            children: Mutex::new(Vec::new()),
            finished: AtomicBool::new(false),
        }
    }

    /// A finished child of the root span.
    pub fn child(
        &self,
        name: &'static str,
        kind: SpanKind,
        start_nanos: u64,
        end_nanos: u64,
        attributes: Vec<(Cow<'static, str>, Value)>,
        status: Status,
    ) -> SpanId {
        let id = SpanId::random();
        self.push(Span {
            trace_id: self.trace_id,
            span_id: id,
            parent: Some(self.root),
            name: Cow::Borrowed(name),
            kind,
            start_unix_nanos: start_nanos,
            end_unix_nanos: end_nanos.max(start_nanos),
            attributes,
            status,
        });
        id
    }

    /// Add an already built span (e.g. an attempt whose id was sent upstream before it finished).
    pub fn push(&self, span: Span) {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(span);
    }

    /// The `traceparent` to send upstream for a span of this trace.
    pub fn traceparent(&self, span: SpanId) -> Option<HeaderValue> {
        HeaderValue::from_str(&TraceParent::format(&self.trace_id, &span, true)).ok()
    }

    /// The root span and its children, once (`None` after the first call).
    pub fn finish(
        &self,
        name: Cow<'static, str>,
        end_nanos: u64,
        attributes: Vec<(Cow<'static, str>, Value)>,
        status: Status,
    ) -> Option<Vec<Span>> {
        if self.finished.swap(true, Ordering::AcqRel) {
            return None;
        }
        let mut spans = std::mem::take(
            &mut *self
                .children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        spans.push(Span {
            trace_id: self.trace_id,
            span_id: self.root,
            parent: self.parent,
            name,
            kind: SpanKind::Server,
            start_unix_nanos: self.start_nanos,
            end_unix_nanos: end_nanos.max(self.start_nanos),
            attributes,
            status,
        });
        Some(spans)
    }

    /// The 24 bytes a spend row carries to name this trace's root span (for the database write span).
    pub fn row_ref(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(&self.trace_id.0);
        out[16..].copy_from_slice(&self.root.0);
        out
    }
}

/// The trace and parent span named by a spend row's `trace` bytes.
pub fn from_row_ref(r: &[u8; 24]) -> (TraceId, SpanId) {
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    t.copy_from_slice(&r[..16]);
    s.copy_from_slice(&r[16..]);
    (TraceId(t), SpanId(s))
}

/// A string attribute.
pub fn attr(key: &'static str, v: impl Into<Value>) -> (Cow<'static, str>, Value) {
    (Cow::Borrowed(key), v.into())
}
