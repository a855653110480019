//! Bounded, batched, retried delivery of pre-serialized JSON items to an HTTP webhook (log records, budget alerts).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::transport::{self, Post, PostResult, Transport};

/// Items per POST (Array shape) or per drain (Single shape) unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// How often queued items are sent even when fewer than a batch are waiting.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Items that may wait; a push beyond this is dropped.
pub const DEFAULT_MAX_QUEUE: usize = 10_000;
/// Extra attempts after a retryable failure.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Bound on one POST, and on the whole final flush at shutdown.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const WARN_EVERY: Duration = Duration::from_secs(10);
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
const CONTENT_TYPE: &str = "application/json";

/// How queued items become request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyShape {
    /// One POST per batch whose body is `[item,item,...]` (generic API logger).
    #[default]
    Array,
    /// One POST per item whose body is the item itself (alerting webhook).
    Single,
}

/// Where and how a [`Webhook`] delivers. `Debug` shows header names only.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: Arc<str>,
    /// Sent with every POST; values may be secrets and are never logged.
    pub headers: Arc<[(String, String)]>,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_queue: usize,
    pub max_retries: u32,
    pub timeout: Duration,
    pub body: BodyShape,
}

impl WebhookSettings {
    /// Settings for `url` with no headers, the `DEFAULT_*` limits and [`BodyShape::Array`].
    pub fn new(url: impl Into<Arc<str>>) -> Self {
        Self {
            url: url.into(),
            headers: Arc::from(Vec::new()),
            batch_size: DEFAULT_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_queue: DEFAULT_MAX_QUEUE,
            max_retries: DEFAULT_MAX_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            body: BodyShape::Array,
        }
    }
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("WebhookSettings")
            .field("endpoint", &endpoint(&self.url))
            .field("header_names", &header_names)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("max_queue", &self.max_queue)
            .field("max_retries", &self.max_retries)
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

/// A queue of JSON items in front of one webhook. Producers [`push`](Self::push); one [`run`](Self::run) sends.
pub struct Webhook {
    name: &'static str,
    settings: WebhookSettings,
    /// Scheme and host of the URL: the only part that is logged.
    endpoint: Box<str>,
    queue: Mutex<Queue>,
    wake: Notify,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    warn_gate: Mutex<WarnGate>,
}

struct Queue {
    items: VecDeque<Box<RawValue>>,
    /// Set when `run` has finished: later pushes are dropped instead of waiting forever.
    closed: bool,
}

#[derive(Default)]
struct WarnGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnGate {
    /// `Some(lines held back since the last one)` if a line may be logged at `now`, else counts it held back.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Why items were given up on (for the log line).
enum Failure {
    QueueFull,
    Closed,
    Status(u16),
    Transport(String),
    Deadline,
    Unsent,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::QueueFull => f.write_str("queue full"),
            Failure::Closed => f.write_str("webhook stopped"),
            Failure::Status(s) => write!(f, "HTTP status {s}"),
            Failure::Transport(e) => write!(f, "transport error: {e}"),
            Failure::Deadline => f.write_str("shutdown flush deadline passed"),
            Failure::Unsent => f.write_str("still queued when the shutdown flush ended"),
        }
    }
}

impl Webhook {
    /// A webhook named `name` (for logs and metrics labels). A `batch_size` of 0 is treated as 1.
    pub fn new(name: &'static str, settings: WebhookSettings) -> Arc<Self> {
        Arc::new(Self {
            name,
            endpoint: endpoint(&settings.url).into(),
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(settings.max_queue.min(1024)),
                closed: false,
            }),
            settings,
            wake: Notify::new(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            warn_gate: Mutex::new(WarnGate::default()),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Items delivered with a 2xx answer.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Items refused by [`push`](Self::push) (queue full, or the sender has stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Items given up on: rejected (non-retryable answer), retries exhausted, or unsent at shutdown.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Items waiting to be sent (not counting a batch in flight).
    pub fn queued(&self) -> usize {
        self.lock_queue().items.len()
    }

    /// Queues `item` without awaiting. Returns `false` (and counts it dropped) when `max_queue` items are
    /// already waiting or the sender has stopped. Wakes the sender once a full batch is waiting.
    pub fn push(&self, item: Box<RawValue>) -> bool {
        let mut queue = self.lock_queue();
        let refused = if queue.closed {
            Some(Failure::Closed)
        } else if queue.items.len() >= self.settings.max_queue {
            Some(Failure::QueueFull)
        } else {
            None
        };
        if let Some(why) = refused {
            drop(queue);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.warn(&why, 1);
            return false;
        }
        queue.items.push_back(item);
        let full_batch = queue.items.len() >= self.batch_size();
        drop(queue);
        if full_batch {
            self.wake.notify_one();
        }
        true
    }

    /// Sends until `token` is cancelled: a drain every `flush_interval`, and full batches as soon as they are
    /// queued. On cancellation everything still queued gets one attempt, the whole flush bounded by `timeout`;
    /// what is left is counted failed and later pushes are refused.
    pub async fn run(self: Arc<Self>, transport: Arc<dyn Transport>, token: CancellationToken) {
        let period = self.settings.flush_interval.max(MIN_FLUSH_INTERVAL);
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // `Some` once shutdown has begun: the instant the final flush must end by.
        let mut deadline: Option<Instant> = None;
        while deadline.is_none() {
            let full_only = tokio::select! {
                biased;
                () = token.cancelled() => {
                    deadline = Some(Instant::now() + self.settings.timeout);
                    false
                }
                _ = ticker.tick() => false,
                () = self.wake.notified() => true,
            };
            self.drain(transport.as_ref(), &token, full_only, &mut deadline)
                .await;
        }
        // Cancellation may have arrived mid-drain; make sure everything queued has had its attempt.
        self.drain(transport.as_ref(), &token, false, &mut deadline)
            .await;
        let rest = {
            let mut queue = self.lock_queue();
            queue.closed = true;
            std::mem::take(&mut queue.items)
        };
        if !rest.is_empty() {
            self.give_up(rest.len(), &Failure::Unsent);
        }
    }

    /// Sends batches in push order. With `full_only` (woken by `push`) only full batches go, the rest waits
    /// for the next tick; once `deadline` is set everything goes, until the deadline passes.
    async fn drain(
        &self,
        transport: &dyn Transport,
        token: &CancellationToken,
        full_only: bool,
        deadline: &mut Option<Instant>,
    ) {
        let batch_size = self.batch_size();
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            let batch: Vec<Box<RawValue>> = {
                let mut queue = self.lock_queue();
                let waiting = queue.items.len();
                if waiting == 0 || (full_only && deadline.is_none() && waiting < batch_size) {
                    return;
                }
                queue.items.drain(..waiting.min(batch_size)).collect()
            };
            match self.settings.body {
                BodyShape::Array => {
                    let count = batch.len();
                    self.deliver(transport, array_body(&batch), count, token, deadline)
                        .await;
                }
                BodyShape::Single => {
                    for item in batch {
                        let text: Box<str> = item.into();
                        let body = Bytes::from(text.into_boxed_bytes());
                        self.deliver(transport, body, 1, token, deadline).await;
                    }
                }
            }
        }
    }

    /// Posts one body holding `count` items, retrying retryable failures with backoff until shutdown begins;
    /// after that (`deadline` set) a body gets exactly one attempt, cut off at the deadline.
    async fn deliver(
        &self,
        transport: &dyn Transport,
        body: Bytes,
        count: usize,
        token: &CancellationToken,
        deadline: &mut Option<Instant>,
    ) {
        let timeout = self.settings.timeout;
        let mut retries = 0u32;
        loop {
            let result: PostResult = match *deadline {
                None => {
                    let mut answer = transport.post(self.post(body.clone(), timeout));
                    tokio::select! {
                        biased;
                        r = &mut answer => r,
                        () = token.cancelled() => {
                            // This attempt becomes the body's final one.
                            let d = Instant::now() + timeout;
                            *deadline = Some(d);
                            match tokio::time::timeout_at(d, answer).await {
                                Ok(r) => r,
                                Err(_) => {
                                    self.give_up(count, &Failure::Deadline);
                                    return;
                                }
                            }
                        }
                    }
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.give_up(count, &Failure::Deadline);
                        return;
                    }
                    let answer = transport.post(self.post(body.clone(), (d - now).min(timeout)));
                    match tokio::time::timeout_at(d, answer).await {
                        Ok(r) => r,
                        Err(_) => {
                            self.give_up(count, &Failure::Deadline);
                            return;
                        }
                    }
                }
            };
            match result {
                Ok(status) if (200..300).contains(&status) => {
                    self.sent.fetch_add(count as u64, Ordering::Relaxed);
                    return;
                }
                r if deadline.is_none()
                    && transport::retryable(&r)
                    && retries < self.settings.max_retries =>
                {
                    let wait = backoff(retries);
                    retries += 1;
                    tokio::select! {
                        biased;
                        () = token.cancelled() => *deadline = Some(Instant::now() + timeout),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Ok(status) => {
                    self.give_up(count, &Failure::Status(status));
                    return;
                }
                Err(e) => {
                    self.give_up(count, &Failure::Transport(e));
                    return;
                }
            }
        }
    }

    fn post(&self, body: Bytes, timeout: Duration) -> Post {
        Post {
            url: Arc::clone(&self.settings.url),
            headers: Arc::clone(&self.settings.headers),
            content_type: CONTENT_TYPE,
            body,
            timeout,
        }
    }

    fn give_up(&self, count: usize, why: &Failure) {
        self.failed.fetch_add(count as u64, Ordering::Relaxed);
        self.warn(why, count);
    }

    /// At most one line per [`WARN_EVERY`]; the next line reports how many were held back.
    fn warn(&self, why: &Failure, items: usize) {
        let now = Instant::now();
        let admitted = self
            .warn_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now);
        let Some(suppressed) = admitted else {
            return;
        };
        tracing::warn!(
            webhook = self.name,
            endpoint = %self.endpoint,
            items,
            suppressed_warnings = suppressed,
            reason = %why,
            "webhook items dropped"
        );
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size.max(1)
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `[a,b,...]` from already-serialized items, without re-serializing.
fn array_body(items: &[Box<RawValue>]) -> Bytes {
    let len = 2 + items.iter().map(|i| i.get().len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.get().as_bytes());
    }
    out.push(b']');
    Bytes::from(out)
}

/// Wait before retry number `retry + 1`: 1 s, 2 s, 4 s, ... capped at 30 s.
fn backoff(retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// `scheme://host[:port]` of `url`, without user info, path, query or fragment (those may hold tokens).
fn endpoint(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::PostFuture;
    use tokio_util::task::TaskTracker;

    #[derive(Clone, Copy, Debug)]
    enum Answer {
        Status(u16),
        Error,
        Hang,
        /// Answers `status` after this many milliseconds.
        After(u64, u16),
    }

    /// Records each post (with its time since `t0`) and answers from a script, then `fallback`.
    struct Fake {
        t0: Instant,
        script: Mutex<VecDeque<Answer>>,
        fallback: Answer,
        posts: Mutex<Vec<(Duration, Post)>>,
    }

    impl Fake {
        fn new(script: &[Answer], fallback: Answer) -> Arc<Self> {
            Arc::new(Self {
                t0: Instant::now(),
                script: Mutex::new(script.iter().copied().collect()),
                fallback,
                posts: Mutex::new(Vec::new()),
            })
        }

        /// (milliseconds since start, body as text) per post.
        fn log(&self) -> Vec<(u128, String)> {
            self.posts
                .lock()
                .unwrap()
                .iter()
                .map(|(t, p)| (t.as_millis(), String::from_utf8(p.body.to_vec()).unwrap()))
                .collect()
        }

        fn posts(&self) -> Vec<Post> {
            self.posts
                .lock()
                .unwrap()
                .iter()
                .map(|(_, p)| p.clone())
                .collect()
        }
    }

    impl Transport for Fake {
        fn post(&self, post: Post) -> PostFuture {
            self.posts.lock().unwrap().push((self.t0.elapsed(), post));
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(self.fallback);
            match answer {
                Answer::Status(s) => Box::pin(async move { Ok(s) }),
                Answer::Error => Box::pin(async { Err("connection refused".to_owned()) }),
                Answer::Hang => Box::pin(std::future::pending()),
                Answer::After(ms, s) => Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(s)
                }),
            }
        }
    }

    fn item(n: u32) -> Box<RawValue> {
        RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap()
    }

    fn settings() -> WebhookSettings {
        let mut s = WebhookSettings::new("https://hooks.example.com/in/secret-path?token=abc");
        s.headers = Arc::from(vec![(
            "Authorization".to_owned(),
            "Bearer s3cr3t".to_owned(),
        )]);
        s
    }

    struct Running {
        hook: Arc<Webhook>,
        fake: Arc<Fake>,
        token: CancellationToken,
        tracker: TaskTracker,
        t0: Instant,
    }

    impl Running {
        fn start(settings: WebhookSettings, script: &[Answer], fallback: Answer) -> Self {
            let hook = Webhook::new("test", settings);
            let fake = Fake::new(script, fallback);
            let token = CancellationToken::new();
            let tracker = TaskTracker::new();
            let transport: Arc<dyn Transport> = fake.clone();
            tracker.spawn(hook.clone().run(transport, token.clone()));
            tracker.close();
            Self {
                hook,
                t0: fake.t0,
                fake,
                token,
                tracker,
            }
        }

        async fn at_ms(&self, ms: u64) {
            tokio::time::sleep_until(self.t0 + Duration::from_millis(ms)).await;
        }

        /// Cancels and returns the milliseconds since start at which `run` returned.
        async fn stop(&self) -> u128 {
            self.token.cancel();
            self.tracker.wait().await;
            self.t0.elapsed().as_millis()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batch_sent_after_flush_interval_as_array_in_order() {
        let r = Running::start(settings(), &[], Answer::Status(200));
        for n in 1..=3 {
            assert!(r.hook.push(item(n)));
        }
        assert_eq!(r.hook.queued(), 3);
        r.at_ms(4_999).await;
        assert!(r.fake.log().is_empty());
        r.at_ms(5_001).await;
        assert_eq!(
            r.fake.log(),
            vec![(5_000, r#"[{"n":1},{"n":2},{"n":3}]"#.to_owned())]
        );
        let post = &r.fake.posts()[0];
        assert_eq!(
            &*post.url,
            "https://hooks.example.com/in/secret-path?token=abc"
        );
        assert_eq!(post.content_type, "application/json");
        assert_eq!(post.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            &post.headers[..],
            &[("Authorization".to_owned(), "Bearer s3cr3t".to_owned())]
        );
        assert_eq!((r.hook.sent(), r.hook.failed(), r.hook.queued()), (3, 0, 0));
        assert_eq!(r.stop().await, 5_001);
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_is_sent_early_and_remainder_waits_for_the_tick() {
        let mut s = settings();
        s.batch_size = 2;
        let r = Running::start(s, &[], Answer::Status(200));
        for n in 1..=5 {
            assert!(r.hook.push(item(n)));
        }
        r.at_ms(1).await;
        assert_eq!(
            r.fake.log(),
            vec![
                (0, r#"[{"n":1},{"n":2}]"#.to_owned()),
                (0, r#"[{"n":3},{"n":4}]"#.to_owned()),
            ]
        );
        assert_eq!(r.hook.queued(), 1);
        r.at_ms(5_001).await;
        assert_eq!(r.fake.log()[2], (5_000, r#"[{"n":5}]"#.to_owned()));
        assert_eq!(r.fake.log().len(), 3);
        assert_eq!(r.hook.sent(), 5);
        r.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn single_shape_posts_each_item_alone() {
        let mut s = settings();
        s.body = BodyShape::Single;
        let r = Running::start(s, &[], Answer::Status(204));
        assert!(r.hook.push(item(1)));
        assert!(r.hook.push(item(2)));
        r.at_ms(5_001).await;
        assert_eq!(
            r.fake.log(),
            vec![
                (5_000, r#"{"n":1}"#.to_owned()),
                (5_000, r#"{"n":2}"#.to_owned())
            ]
        );
        assert_eq!(r.hook.sent(), 2);
        r.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn pushes_past_max_queue_are_refused_and_counted() {
        let mut s = settings();
        s.max_queue = 3;
        let r = Running::start(s, &[], Answer::Status(200));
        let accepted: Vec<bool> = (1..=5).map(|n| r.hook.push(item(n))).collect();
        assert_eq!(accepted, vec![true, true, true, false, false]);
        assert_eq!((r.hook.dropped(), r.hook.queued()), (2, 3));
        r.at_ms(5_001).await;
        assert_eq!(
            r.fake.log(),
            vec![(5_000, r#"[{"n":1},{"n":2},{"n":3}]"#.to_owned())]
        );
        // Room again once the queue has drained.
        assert!(r.hook.push(item(6)));
        assert_eq!(
            (r.hook.sent(), r.hook.dropped(), r.hook.failed()),
            (3, 2, 0)
        );
        r.stop().await;
        assert_eq!(r.hook.sent(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_status_then_success_delivers_once() {
        let r = Running::start(settings(), &[Answer::Status(503)], Answer::Status(200));
        assert!(r.hook.push(item(1)));
        r.at_ms(10_000).await;
        let body = r#"[{"n":1}]"#.to_owned();
        assert_eq!(r.fake.log(), vec![(5_000, body.clone()), (6_000, body)]);
        assert_eq!((r.hook.sent(), r.hook.failed()), (1, 0));
        r.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn transport_error_is_retried() {
        let r = Running::start(
            settings(),
            &[Answer::Error, Answer::Error],
            Answer::Status(200),
        );
        assert!(r.hook.push(item(1)));
        r.at_ms(10_000).await;
        let times: Vec<u128> = r.fake.log().into_iter().map(|(t, _)| t).collect();
        assert_eq!(times, vec![5_000, 6_000, 8_000]);
        assert_eq!((r.hook.sent(), r.hook.failed()), (1, 0));
        r.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn client_error_is_not_retried() {
        let r = Running::start(settings(), &[Answer::Status(400)], Answer::Status(200));
        assert!(r.hook.push(item(1)));
        assert!(r.hook.push(item(2)));
        r.at_ms(20_000).await;
        assert_eq!(r.fake.log().len(), 1);
        assert_eq!((r.hook.sent(), r.hook.failed()), (0, 2));
        r.stop().await;
        assert_eq!(r.fake.log().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_give_up_after_max_retries() {
        let r = Running::start(settings(), &[], Answer::Status(500));
        assert!(r.hook.push(item(1)));
        assert!(r.hook.push(item(2)));
        r.at_ms(60_000).await;
        let times: Vec<u128> = r.fake.log().into_iter().map(|(t, _)| t).collect();
        // First attempt, then backoffs of 1 s, 2 s, 4 s.
        assert_eq!(times, vec![5_000, 6_000, 8_000, 12_000]);
        assert_eq!((r.hook.sent(), r.hook.failed(), r.hook.queued()), (0, 2, 0));
        r.stop().await;
    }

    #[test]
    fn backoff_doubles_and_caps_at_30s() {
        let waits: Vec<u64> = [0, 1, 2, 3, 4, 5, 6, 31, 32, 1000]
            .map(|n| backoff(n).as_secs())
            .to_vec();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30, 30, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_flushes_queued_items_before_run_returns() {
        let mut s = settings();
        s.batch_size = 2;
        let r = Running::start(s, &[], Answer::Status(200));
        r.at_ms(1_000).await;
        for n in 1..=3 {
            assert!(r.hook.push(item(n)));
        }
        assert_eq!(r.stop().await, 1_000);
        assert_eq!(
            r.fake.log(),
            vec![
                (1_000, r#"[{"n":1},{"n":2}]"#.to_owned()),
                (1_000, r#"[{"n":3}]"#.to_owned()),
            ]
        );
        assert_eq!((r.hook.sent(), r.hook.queued()), (3, 0));
        // After run has returned nothing is queued where no one would send it.
        assert!(!r.hook.push(item(4)));
        assert_eq!((r.hook.dropped(), r.hook.queued()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_during_backoff_returns_promptly_after_one_final_attempt() {
        let r = Running::start(settings(), &[Answer::Status(503)], Answer::Status(200));
        assert!(r.hook.push(item(1)));
        r.at_ms(5_500).await;
        assert_eq!(r.fake.log().len(), 1);
        assert!(r.hook.push(item(2)));
        assert_eq!(r.stop().await, 5_500);
        assert_eq!(
            r.fake.log(),
            vec![
                (5_000, r#"[{"n":1}]"#.to_owned()),
                (5_500, r#"[{"n":1}]"#.to_owned()),
                (5_500, r#"[{"n":2}]"#.to_owned()),
            ]
        );
        assert_eq!((r.hook.sent(), r.hook.failed()), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn final_flush_gets_no_retries() {
        let r = Running::start(settings(), &[], Answer::Status(503));
        assert!(r.hook.push(item(1)));
        assert_eq!(r.stop().await, 0);
        assert_eq!(r.fake.log().len(), 1);
        assert_eq!((r.hook.sent(), r.hook.failed()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn final_flush_is_bounded_by_timeout() {
        let mut s = settings();
        s.batch_size = 1;
        s.timeout = Duration::from_secs(3);
        s.flush_interval = Duration::from_secs(60);
        let r = Running::start(s, &[], Answer::Hang);
        r.at_ms(1_000).await;
        // The first batch is in flight (hanging) when shutdown begins; two more wait behind it.
        for n in 1..=3 {
            assert!(r.hook.push(item(n)));
        }
        r.at_ms(2_000).await;
        assert_eq!(r.fake.log().len(), 1);
        assert_eq!(r.stop().await, 5_000);
        assert_eq!(r.fake.log().len(), 1);
        assert_eq!((r.hook.sent(), r.hook.failed(), r.hook.queued()), (0, 3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn final_flush_posts_carry_the_remaining_budget() {
        let mut s = settings();
        s.batch_size = 1;
        s.timeout = Duration::from_secs(3);
        let script = [Answer::Status(503), Answer::After(1_000, 200)];
        let r = Running::start(s, &script, Answer::Status(200));
        for n in 1..=2 {
            assert!(r.hook.push(item(n)));
        }
        // Item 1 fails at t=0 and backs off; cancelling at 0.5 s sets the flush deadline to 3.5 s.
        r.at_ms(500).await;
        assert_eq!(r.stop().await, 1_500);
        let log: Vec<(u128, Duration)> = r
            .fake
            .posts
            .lock()
            .unwrap()
            .iter()
            .map(|(t, p)| (t.as_millis(), p.timeout))
            .collect();
        let secs = Duration::from_secs;
        assert_eq!(log, vec![(0, secs(3)), (500, secs(3)), (1_500, secs(2))]);
        assert_eq!((r.hook.sent(), r.hook.failed()), (2, 0));
    }

    #[test]
    fn warnings_are_limited_to_one_per_ten_seconds() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut gate = WarnGate::default();
        let got: Vec<Option<u64>> = [0, 1, 9_999, 10_000, 15_000, 19_999, 20_000, 40_000]
            .map(|n| gate.admit(ms(n)))
            .to_vec();
        assert_eq!(
            got,
            vec![Some(0), None, None, Some(2), None, None, Some(2), Some(0)]
        );
    }

    #[test]
    fn endpoint_keeps_scheme_and_host_only() {
        assert_eq!(
            endpoint("https://hooks.example.com/in/secret?token=abc"),
            "https://hooks.example.com"
        );
        assert_eq!(
            endpoint("http://user:pw@10.0.0.1:8080?k=v"),
            "http://10.0.0.1:8080"
        );
        assert_eq!(endpoint("https://h.example#frag"), "https://h.example");
        assert_eq!(endpoint("host.example/path"), "host.example");
    }

    #[test]
    fn settings_debug_hides_header_values_and_url_path() {
        let text = format!("{:?}", settings());
        assert!(text.contains("Authorization"));
        assert!(!text.contains("s3cr3t"));
        assert!(!text.contains("secret-path"));
        assert!(!text.contains("token=abc"));
    }

    #[test]
    fn defaults() {
        let s = WebhookSettings::new("https://x.example");
        assert_eq!(
            (
                s.batch_size,
                s.flush_interval,
                s.max_queue,
                s.max_retries,
                s.timeout,
                s.body
            ),
            (
                100,
                Duration::from_secs(5),
                10_000,
                3,
                Duration::from_secs(10),
                BodyShape::Array
            )
        );
        assert!(s.headers.is_empty());
    }
}
