//! The [`Tracer`]: a bounded span queue filled without blocking, drained in batches to OTLP/HTTP by `run`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::settings::{ExporterSettings, Protocol};
use super::{Sampler, Span, TraceId, TraceParent, Value};
use crate::otlp;
use crate::transport::{self, Post, PostResult, Transport};

/// Retries after the first failed attempt, with these waits.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// At most one warning line per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);
const SCOPE_NAME: &str = "tollgate";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Collects finished spans and exports them; share it as `Arc<Tracer>`.
pub struct Tracer {
    settings: ExporterSettings,
    url: Arc<str>,
    headers: Arc<[(String, String)]>,
    /// `service.name` first, then the configured resource attributes.
    resource: Vec<(String, Value)>,
    queue: Mutex<VecDeque<Span>>,
    batch_ready: Notify,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_exports: AtomicU64,
    /// Spans of the batch being exported (lost if shutdown times out mid-export).
    in_flight: AtomicU64,
    warn: Mutex<WarnLimiter>,
}

#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("settings", &self.settings)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tracer {
    pub fn new(settings: ExporterSettings) -> Self {
        let mut resource = vec![(
            "service.name".to_owned(),
            Value::Str(settings.service_name.clone()),
        )];
        resource.extend(settings.resource_attributes.iter().cloned());
        Self {
            url: Arc::from(settings.endpoint.as_str()),
            headers: Arc::from(settings.headers.clone()),
            resource,
            queue: Mutex::new(VecDeque::new()),
            batch_ready: Notify::new(),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_exports: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            warn: Mutex::new(WarnLimiter::default()),
            settings,
        }
    }

    pub fn settings(&self) -> &ExporterSettings {
        &self.settings
    }

    pub fn service_name(&self) -> &str {
        &self.settings.service_name
    }

    pub fn sampler(&self) -> Sampler {
        self.settings.sampler
    }

    /// The configured sampler's decision (see [`Sampler::sample`]).
    pub fn sample(&self, parent: Option<&TraceParent>, trace_id: &TraceId) -> bool {
        self.settings.sampler.sample(parent, trace_id)
    }

    /// Queues a finished span; never blocks on I/O. When the queue is full the span is dropped and counted.
    pub fn record(&self, span: Span) {
        let len = {
            let mut q = lock(&self.queue);
            if q.len() >= self.settings.max_queue_size {
                drop(q);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.push_back(span);
            q.len()
        };
        if len >= self.settings.max_export_batch_size {
            self.batch_ready.notify_one();
        }
    }

    /// Spans exported successfully.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans lost: queue full, batch given up after retries, or not flushed in time at shutdown.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Batches given up on.
    pub fn failed_exports(&self) -> u64 {
        self.failed_exports.load(Ordering::Relaxed)
    }

    /// Spans waiting in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    fn take_batch(&self) -> Vec<Span> {
        let mut q = lock(&self.queue);
        let n = q.len().min(self.settings.max_export_batch_size);
        q.drain(..n).collect()
    }

    /// Exports until cancelled: a batch every schedule delay, or as soon as a full batch is queued (then all
    /// full batches). On cancellation, finishes the batch in flight and flushes what is still queued once
    /// (no retries), all bounded by the export timeout, then returns. Run it on the application's task tracker.
    pub async fn run(self: Arc<Self>, transport: Arc<dyn Transport>, token: CancellationToken) {
        let work = self.work(transport.as_ref(), &token);
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => return,
            () = token.cancelled() => {}
        }
        if tokio::time::timeout(self.settings.export_timeout, work)
            .await
            .is_ok()
        {
            return;
        }
        let in_flight = self.in_flight.swap(0, Ordering::Relaxed);
        if in_flight > 0 {
            self.failed_exports.fetch_add(1, Ordering::Relaxed);
        }
        let queued = {
            let mut q = lock(&self.queue);
            let n = q.len() as u64;
            q.clear();
            n
        };
        let lost = in_flight + queued;
        self.dropped.fetch_add(lost, Ordering::Relaxed);
        self.warn_limited(format_args!(
            "trace export at shutdown timed out; {lost} spans dropped"
        ));
    }

    /// The export loop, then (once cancelled) the final flush.
    async fn work(&self, transport: &dyn Transport, token: &CancellationToken) {
        while !token.is_cancelled() {
            // The timer exports a partial batch; a wake-up (possibly a stale permit) only full ones.
            let mut partial_ok = tokio::select! {
                biased;
                () = token.cancelled() => break,
                () = self.batch_ready.notified() => false,
                () = tokio::time::sleep(self.settings.schedule_delay) => true,
            };
            while !token.is_cancelled()
                && (partial_ok || self.queued() >= self.settings.max_export_batch_size)
            {
                partial_ok = false;
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                self.export(transport, batch, token).await;
            }
        }
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                break;
            }
            self.export(transport, batch, token).await;
        }
    }

    fn encode(&self, spans: &[Span]) -> Result<Vec<u8>, serde_json::Error> {
        match self.settings.protocol {
            Protocol::HttpProtobuf => Ok(otlp::encode_protobuf(
                &self.resource,
                SCOPE_NAME,
                SCOPE_VERSION,
                spans,
            )),
            Protocol::HttpJson => {
                otlp::encode_json(&self.resource, SCOPE_NAME, SCOPE_VERSION, spans)
            }
        }
    }

    /// One batch: POST, retrying retryable failures with backoff (stopping early on cancellation).
    async fn export(&self, transport: &dyn Transport, batch: Vec<Span>, token: &CancellationToken) {
        let n = batch.len() as u64;
        self.in_flight.store(n, Ordering::Relaxed);
        self.export_batch(transport, batch, n, token).await;
        self.in_flight.store(0, Ordering::Relaxed);
    }

    async fn export_batch(
        &self,
        transport: &dyn Transport,
        batch: Vec<Span>,
        n: u64,
        token: &CancellationToken,
    ) {
        let body = match self.encode(&batch) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                self.give_up(n);
                self.warn_limited(format_args!("trace batch could not be encoded: {e}"));
                return;
            }
        };
        let post = Post {
            url: self.url.clone(),
            headers: self.headers.clone(),
            content_type: self.settings.protocol.content_type(),
            body,
            timeout: self.settings.timeout,
        };
        let mut attempt = 0;
        loop {
            let result: PostResult =
                match tokio::time::timeout(post.timeout, transport.post(post.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".to_owned()),
                };
            if matches!(result, Ok(200..=299)) {
                self.exported.fetch_add(n, Ordering::Relaxed);
                return;
            }
            let retry = transport::retryable(&result) && attempt < BACKOFF.len();
            if retry {
                let wait = BACKOFF[attempt];
                attempt += 1;
                tokio::select! {
                    biased;
                    () = token.cancelled() => {}
                    () = tokio::time::sleep(wait) => continue,
                }
            }
            self.give_up(n);
            let why = match &result {
                Ok(status) => format!("status {status}"),
                Err(e) => e.clone(),
            };
            self.warn_limited(format_args!(
                "trace export to {} failed after {} attempt(s): {why}; {n} spans dropped",
                self.url,
                attempt + 1
            ));
            return;
        }
    }

    fn give_up(&self, spans: u64) {
        self.failed_exports.fetch_add(1, Ordering::Relaxed);
        self.dropped.fetch_add(spans, Ordering::Relaxed);
    }

    fn warn_limited(&self, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        let mut w = lock(&self.warn);
        if w.last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            w.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut w.suppressed);
        w.last = Some(now);
        drop(w);
        tracing::warn!(suppressed, "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::wire;
    use crate::trace::{SpanId, SpanKind, Status};
    use crate::transport::PostFuture;
    use std::borrow::Cow;
    use tokio_util::task::TaskTracker;

    /// Answers from a script (then 200), records every POST with the (paused) time it arrived.
    #[derive(Default)]
    struct Mem {
        script: Mutex<VecDeque<Option<PostResult>>>,
        posts: Mutex<Vec<(Duration, Post)>>,
        start: Mutex<Option<Instant>>,
    }

    impl Mem {
        fn new(script: Vec<Option<PostResult>>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(script.into()),
                posts: Mutex::default(),
                start: Mutex::new(Some(Instant::now())),
            })
        }
        fn posts(&self) -> Vec<(Duration, Post)> {
            lock(&self.posts).clone()
        }
        /// (ms since start, spans in body) per POST.
        fn summary(&self, json: bool) -> Vec<(u128, usize)> {
            self.posts()
                .iter()
                .map(|(t, p)| (t.as_millis(), count_spans(&p.body, json)))
                .collect()
        }
    }

    impl Transport for Mem {
        fn post(&self, post: Post) -> PostFuture {
            let start = lock(&self.start).unwrap_or_else(Instant::now);
            lock(&self.posts).push((Instant::now() - start, post));
            // `None` in the script: never answer.
            match lock(&self.script).pop_front() {
                Some(Some(r)) => Box::pin(async move { r }),
                Some(None) => Box::pin(std::future::pending()),
                None => Box::pin(async { Ok(200) }),
            }
        }
    }

    fn count_spans(body: &[u8], json: bool) -> usize {
        if json {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .map_or(0, Vec::len)
        } else {
            wire::spans(body).len()
        }
    }

    fn span(i: u8) -> Span {
        Span {
            trace_id: TraceId([i; 16]),
            span_id: SpanId([i; 8]),
            parent: None,
            name: Cow::Borrowed("request"),
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: vec![],
            status: Status::Unset,
        }
    }

    fn settings(batch: usize, queue: usize) -> ExporterSettings {
        ExporterSettings {
            endpoint: "http://collector:4318/v1/traces".into(),
            headers: vec![("authorization".into(), "Bearer x".into())],
            max_export_batch_size: batch,
            max_queue_size: queue,
            ..ExporterSettings::default()
        }
    }

    struct Running {
        tracer: Arc<Tracer>,
        mem: Arc<Mem>,
        token: CancellationToken,
        tracker: TaskTracker,
    }

    fn start(s: ExporterSettings, script: Vec<Option<PostResult>>) -> Running {
        let tracer = Arc::new(Tracer::new(s));
        let mem = Mem::new(script);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(tracer.clone().run(mem.clone(), token.clone()));
        tracker.close();
        Running {
            tracer,
            mem,
            token,
            tracker,
        }
    }

    async fn at(ms: u64, since: Instant) {
        tokio::time::sleep_until(since + Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn batches_on_schedule_delay_with_headers_and_protobuf() {
        let t0 = Instant::now();
        let r = start(settings(10, 100), vec![]);
        for i in 1..=3 {
            r.tracer.record(span(i));
        }
        at(4999, t0).await;
        assert!(r.mem.posts().is_empty());
        at(5001, t0).await;
        assert_eq!(r.mem.summary(false), [(5000, 3)]);
        let (_, p) = &r.mem.posts()[0];
        assert_eq!(&*p.url, "http://collector:4318/v1/traces");
        assert_eq!(p.content_type, "application/x-protobuf");
        assert_eq!(
            &*p.headers,
            [("authorization".to_owned(), "Bearer x".to_owned())]
        );
        assert_eq!(p.timeout, Duration::from_secs(10));
        let spans = wire::spans(&p.body);
        assert_eq!(
            wire::one(&spans[0], 2),
            wire::Field::Bytes(vec![1; 8]),
            "queue order kept"
        );
        assert_eq!(
            (r.tracer.exported(), r.tracer.dropped(), r.tracer.queued()),
            (3, 0, 0)
        );
        // Nothing queued: the next tick posts nothing.
        at(10_001, t0).await;
        assert_eq!(r.mem.posts().len(), 1);
        r.token.cancel();
        r.tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_flushes_early() {
        let t0 = Instant::now();
        let r = start(settings(2, 100), vec![]);
        r.tracer.record(span(1));
        at(1, t0).await;
        assert!(r.mem.posts().is_empty());
        for i in 2..=5 {
            r.tracer.record(span(i));
        }
        at(2, t0).await;
        // Two full batches right away; the odd span waits for the timer.
        assert_eq!(r.mem.summary(false), [(1, 2), (1, 2)]);
        assert_eq!(r.tracer.queued(), 1);
        at(5002, t0).await;
        assert_eq!(r.mem.summary(false), [(1, 2), (1, 2), (5001, 1)]);
        assert_eq!(r.tracer.exported(), 5);
        r.token.cancel();
        r.tracker.wait().await;
    }

    #[test]
    fn drops_and_counts_when_queue_full() {
        let tracer = Tracer::new(settings(10, 3));
        for i in 1..=5 {
            tracer.record(span(i));
        }
        assert_eq!(tracer.queued(), 3);
        assert_eq!(tracer.dropped(), 2);
        assert_eq!(tracer.take_batch(), vec![span(1), span(2), span(3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_503_then_succeeds() {
        let t0 = Instant::now();
        let mut s = settings(10, 100);
        s.protocol = Protocol::HttpJson;
        let r = start(
            s,
            vec![Some(Ok(503)), Some(Err("connection refused".into()))],
        );
        r.tracer.record(span(1));
        at(5500, t0).await;
        assert_eq!(r.mem.summary(true), [(5000, 1)]);
        assert_eq!(r.tracer.exported(), 0);
        at(9000, t0).await;
        // 503, wait 1 s, transport error, wait 2 s, 200.
        assert_eq!(r.mem.summary(true), [(5000, 1), (6000, 1), (8000, 1)]);
        assert_eq!(r.mem.posts()[0].1.content_type, "application/json");
        assert_eq!(
            (
                r.tracer.exported(),
                r.tracer.dropped(),
                r.tracer.failed_exports()
            ),
            (1, 0, 0)
        );
        r.token.cancel();
        r.tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_three_retries() {
        let t0 = Instant::now();
        let r = start(settings(10, 100), vec![Some(Ok(503)); 4]);
        r.tracer.record(span(1));
        r.tracer.record(span(2));
        at(20_000, t0).await;
        let times: Vec<u128> = r.mem.summary(false).iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [5000, 6000, 8000, 12_000]);
        assert_eq!(
            (
                r.tracer.exported(),
                r.tracer.dropped(),
                r.tracer.failed_exports()
            ),
            (0, 2, 1)
        );
        r.token.cancel();
        r.tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_on_400() {
        let t0 = Instant::now();
        let r = start(settings(10, 100), vec![Some(Ok(400))]);
        r.tracer.record(span(1));
        at(20_000, t0).await;
        assert_eq!(r.mem.summary(false), [(5000, 1)]);
        assert_eq!(
            (
                r.tracer.exported(),
                r.tracer.dropped(),
                r.tracer.failed_exports()
            ),
            (0, 1, 1)
        );
        r.token.cancel();
        r.tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn hung_post_times_out_and_is_retried() {
        let t0 = Instant::now();
        let mut s = settings(10, 100);
        s.timeout = Duration::from_millis(300);
        let r = start(s, vec![None]);
        r.tracer.record(span(1));
        at(7000, t0).await;
        // Timed out at 5300, retried 1 s later.
        assert_eq!(r.mem.summary(false), [(5000, 1), (6300, 1)]);
        assert_eq!(r.tracer.exported(), 1);
        r.token.cancel();
        r.tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_backoff_early() {
        let t0 = Instant::now();
        let r = start(settings(10, 100), vec![Some(Ok(503))]);
        r.tracer.record(span(1));
        at(5500, t0).await;
        r.token.cancel();
        r.tracker.wait().await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(5500));
        assert_eq!(r.mem.summary(false), [(5000, 1)]);
        assert_eq!((r.tracer.dropped(), r.tracer.failed_exports()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn final_flush_on_cancel_in_batches() {
        let t0 = Instant::now();
        let tracer = Arc::new(Tracer::new(settings(2, 100)));
        for i in 1..=5 {
            tracer.record(span(i));
        }
        let mem = Mem::new(vec![]);
        let token = CancellationToken::new();
        token.cancel();
        tracer.clone().run(mem.clone(), token).await;
        assert_eq!(mem.summary(false), [(0, 2), (0, 2), (0, 1)]);
        assert_eq!(Instant::now(), t0);
        assert_eq!(
            (tracer.exported(), tracer.dropped(), tracer.queued()),
            (5, 0, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn final_flush_is_bounded_by_export_timeout() {
        let t0 = Instant::now();
        let mut s = settings(2, 100);
        s.timeout = Duration::from_secs(60);
        s.export_timeout = Duration::from_millis(1500);
        let r = start(s, vec![None]);
        for i in 1..=5 {
            r.tracer.record(span(i));
        }
        // The early flush of the first full batch hangs; cancel, and shutdown still ends on time.
        at(100, t0).await;
        r.token.cancel();
        r.tracker.wait().await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(100 + 1500));
        // The hung batch and the three spans behind it are lost, and counted.
        assert_eq!(r.mem.summary(false), [(0, 2)]);
        assert_eq!(
            (
                r.tracer.exported(),
                r.tracer.dropped(),
                r.tracer.failed_exports()
            ),
            (0, 5, 1)
        );
        assert_eq!(r.tracer.queued(), 0);
    }
}
