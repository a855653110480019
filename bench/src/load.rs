//! Load generation over keep-alive HTTP/1.1: open-loop fixed rate and closed-loop saturation.
//!
//! Fixed rate: a pacer thread releases one permit per scheduled slot (`t0 + i / rate`), and
//! `connections` workers take slots in order. Latency is measured from the slot's *intended*
//! send time, so a stalled server is charged for the requests it delayed (no coordinated
//! omission); `service_ms` (from the actual write) and `send_lag_ms` are reported beside it.
//!
//! Saturation: every connection sends its next request as soon as the previous one finished.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::LoadArgs;
use crate::stats::{Summary, summary_json};

/// Where and what to send; shared by all workers.
struct Target {
    addr: String,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
    timeout: Duration,
}

impl Target {
    fn new(args: &LoadArgs) -> anyhow::Result<Self> {
        let uri: Uri = args
            .url
            .parse()
            .with_context(|| format!("bad --url {:?}", args.url))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must be http:// (got {:?})", args.url);
        }
        let authority = uri.authority().context("--url has no host")?.clone();
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .context("bad path in --url")?;

        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &args.api_key {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}")).context("bad --api-key")?,
            );
        }
        for raw in &args.headers {
            let (name, value) = raw
                .split_once(':')
                .with_context(|| format!("--header {raw:?} is not `name: value`"))?;
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes())
                    .with_context(|| format!("bad header name in {raw:?}"))?,
                HeaderValue::from_str(value.trim())
                    .with_context(|| format!("bad header value in {raw:?}"))?,
            );
        }

        let body = match &args.body_file {
            Some(path) => Bytes::from(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ),
            None => Bytes::from(serde_json::to_vec(&json!({
                "model": args.model,
                "messages": [{"role": "user", "content": args.prompt}],
                "max_tokens": args.max_tokens,
                "stream": args.stream,
            }))?),
        };

        Ok(Self {
            addr,
            path,
            headers,
            body,
            stream: args.stream,
            timeout: args.timeout,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// One keep-alive connection; its driver task lives in `_driver` and ends when dropped.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    _driver: JoinSet<()>,
}

async fn connect(addr: &str) -> anyhow::Result<Conn> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let mut driver = JoinSet::new();
    driver.spawn(async move {
        // Errors surface on the request side as well; nothing to add here.
        let _ = conn.await;
    });
    Ok(Conn {
        sender,
        _driver: driver,
    })
}

/// What happened to one request.
enum Outcome {
    Done {
        status: u16,
        first_data: Option<Instant>,
        chunks: u32,
        bytes: u64,
        error_body: Option<String>,
    },
    Transport(String),
    Timeout,
}

/// Counts `data:` markers across body frames (a marker may straddle two frames).
#[derive(Default)]
struct DataScan {
    tail: Vec<u8>,
    count: u32,
}

impl DataScan {
    const NEEDLE: &'static [u8] = b"data:";

    fn feed(&mut self, chunk: &[u8]) -> u32 {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(chunk);
        let found = buf
            .windows(Self::NEEDLE.len())
            .filter(|w| *w == Self::NEEDLE)
            .count() as u32;
        let keep = buf.len().min(Self::NEEDLE.len() - 1);
        self.tail = buf[buf.len() - keep..].to_vec();
        self.count += found;
        found
    }
}

async fn exchange(conn: &mut Conn, target: &Target) -> Result<Outcome, String> {
    let resp = conn
        .sender
        .send_request(target.request())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut scan = DataScan::default();
    let mut first_data = None;
    let mut bytes = 0u64;
    let mut error_body: Option<Vec<u8>> = (!status.is_success()).then(Vec::new);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            if target.stream && scan.feed(data) > 0 && first_data.is_none() {
                first_data = Some(Instant::now());
            }
            if let Some(buf) = error_body.as_mut()
                && buf.len() < 300
            {
                buf.extend_from_slice(&data[..data.len().min(300 - buf.len())]);
            }
        }
    }
    Ok(Outcome::Done {
        status: status.as_u16(),
        first_data,
        chunks: scan.count,
        bytes,
        error_body: error_body.map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

/// Sends one request on `slot`, (re)connecting when needed.
async fn send_one(slot: &mut Option<Conn>, target: &Target) -> Outcome {
    if let Some(conn) = slot.as_mut()
        && conn.sender.ready().await.is_err()
    {
        // The server closed the keep-alive connection between requests: not an error.
        *slot = None;
    }
    if slot.is_none() {
        match tokio::time::timeout(target.timeout, connect(&target.addr)).await {
            Ok(Ok(conn)) => *slot = Some(conn),
            Ok(Err(e)) => return Outcome::Transport(format!("{e:#}")),
            Err(_) => return Outcome::Timeout,
        }
    }
    let Some(conn) = slot.as_mut() else {
        return Outcome::Transport("no connection".into());
    };
    match tokio::time::timeout(target.timeout, exchange(conn, target)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            *slot = None;
            Outcome::Transport(e)
        }
        Err(_) => {
            *slot = None;
            Outcome::Timeout
        }
    }
}

/// Per-worker results, merged at the end.
#[derive(Default)]
struct WorkerStats {
    latency: Vec<u64>,
    service: Vec<u64>,
    send_lag: Vec<u64>,
    ttft: Vec<u64>,
    ok: u64,
    status_errors: BTreeMap<u16, u64>,
    transport_errors: u64,
    timeouts: u64,
    started: u64,
    chunks: u64,
    bytes: u64,
    stream_without_data: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

fn nanos(later: Instant, earlier: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_nanos()).unwrap_or(u64::MAX)
}

impl WorkerStats {
    /// `origin` is where latency counts from: the intended time (open loop) or the send time.
    fn record(
        &mut self,
        outcome: &Outcome,
        stream: bool,
        origin: Instant,
        sent: Instant,
        done: Instant,
    ) {
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        match outcome {
            Outcome::Done {
                status,
                first_data,
                chunks,
                bytes,
                error_body,
            } => {
                self.bytes += bytes;
                if (200..300).contains(status) {
                    self.ok += 1;
                    self.latency.push(nanos(done, origin));
                    if origin != sent {
                        self.service.push(nanos(done, sent));
                        self.send_lag.push(nanos(sent, origin));
                    }
                    self.chunks += u64::from(*chunks);
                    if stream {
                        match first_data {
                            Some(t) => self.ttft.push(nanos(*t, origin)),
                            None => self.stream_without_data += 1,
                        }
                    }
                } else {
                    *self.status_errors.entry(*status).or_default() += 1;
                    if self.first_error.is_none() {
                        self.first_error = Some(format!(
                            "HTTP {status}: {}",
                            error_body.as_deref().unwrap_or("")
                        ));
                    }
                }
            }
            Outcome::Transport(e) => {
                self.transport_errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.clone());
                }
            }
            Outcome::Timeout => {
                self.timeouts += 1;
                if self.first_error.is_none() {
                    self.first_error = Some("timeout".into());
                }
            }
        }
    }

    fn merge(&mut self, mut other: Self) {
        self.latency.append(&mut other.latency);
        self.service.append(&mut other.service);
        self.send_lag.append(&mut other.send_lag);
        self.ttft.append(&mut other.ttft);
        self.ok += other.ok;
        for (code, n) in other.status_errors {
            *self.status_errors.entry(code).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.started += other.started;
        self.chunks += other.chunks;
        self.bytes += other.bytes;
        self.stream_without_data += other.stream_without_data;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Timing shared by the workers of one run.
struct Plan {
    target: Target,
    t0: Instant,
    measure_start: Instant,
    end: Instant,
    /// Open loop only: no slot is started after this.
    hard_stop: Instant,
    rate: f64,
    total_slots: u64,
    permits: Semaphore,
    next_slot: AtomicU64,
    /// Open loop only: how long before each slot the pacer stops sleeping and spins.
    spin: Duration,
}

async fn open_loop_worker(plan: Arc<Plan>, mut slot: Option<Conn>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    loop {
        match plan.permits.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => break,
        }
        let i = plan.next_slot.fetch_add(1, Ordering::Relaxed);
        if i >= plan.total_slots {
            break;
        }
        let intended = plan.t0 + Duration::from_secs_f64(i as f64 / plan.rate);
        let sent = Instant::now();
        if sent > plan.hard_stop {
            break;
        }
        stats.started += 1;
        let outcome = send_one(&mut slot, &plan.target).await;
        let done = Instant::now();
        if intended >= plan.measure_start {
            stats.record(&outcome, plan.target.stream, intended, sent, done);
        }
    }
    stats
}

async fn closed_loop_worker(plan: Arc<Plan>, mut slot: Option<Conn>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    loop {
        let sent = Instant::now();
        if sent >= plan.end {
            break;
        }
        stats.started += 1;
        let outcome = send_one(&mut slot, &plan.target).await;
        let done = Instant::now();
        if done >= plan.measure_start && done < plan.end {
            stats.record(&outcome, plan.target.stream, sent, sent, done);
        }
        if slot.is_none() {
            // Connection refused or reset: do not spin on a dead server.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stats
}

/// Releases one permit per slot at `t0 + i / rate`, then one extra per worker so all exit.
fn pace(plan: &Plan, workers: usize) {
    let mut issued = 0u64;
    while issued < plan.total_slots {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(plan.t0).as_secs_f64();
        let due = ((elapsed * plan.rate).floor() as u64 + 1).min(plan.total_slots);
        if due > issued {
            plan.permits
                .add_permits(usize::try_from(due - issued).unwrap_or(usize::MAX));
            issued = due;
        }
        if issued >= plan.total_slots {
            break;
        }
        let next = plan.t0 + Duration::from_secs_f64(issued as f64 / plan.rate);
        // Sleep (which overshoots by the kernel's timer slack) until `spin` before the slot,
        // then spin the rest of the way so slots are released on time.
        let now = Instant::now();
        if next > now + plan.spin {
            std::thread::sleep(next - now - plan.spin);
        }
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    plan.permits.add_permits(workers);
}

async fn run_async(args: &LoadArgs) -> anyhow::Result<Value> {
    let target = Target::new(args)?;
    let connections = args.connections.max(1);
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be > 0");
    }

    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Some(connect(&target.addr).await?));
    }

    let t0 = Instant::now();
    let measure_start = t0 + args.warmup;
    let end = measure_start + args.duration;
    let rate = args.rate.unwrap_or(0.0);
    let total_slots = ((args.warmup + args.duration).as_secs_f64() * rate).floor() as u64;
    let plan = Arc::new(Plan {
        target,
        t0,
        measure_start,
        end,
        hard_stop: end + args.drain,
        rate,
        total_slots,
        permits: Semaphore::new(0),
        next_slot: AtomicU64::new(0),
        // Never spin more than a tenth of the slot interval: the pacer shares a core.
        spin: if rate > 0.0 {
            args.pacer_spin.min(Duration::from_secs_f64(0.1 / rate))
        } else {
            Duration::ZERO
        },
    });

    let mut workers = JoinSet::new();
    for slot in conns {
        let plan = Arc::clone(&plan);
        if args.rate.is_some() {
            workers.spawn(open_loop_worker(plan, slot));
        } else {
            workers.spawn(closed_loop_worker(plan, slot));
        }
    }
    let pacer = if args.rate.is_some() {
        let plan = Arc::clone(&plan);
        Some(
            std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || pace(&plan, connections))?,
        )
    } else {
        None
    };

    let mut stats = WorkerStats::default();
    while let Some(res) = workers.join_next().await {
        stats.merge(res.context("load worker failed")?);
    }
    if let Some(pacer) = pacer
        && pacer.join().is_err()
    {
        bail!("pacer thread panicked");
    }

    Ok(summarize(args, &plan, stats))
}

fn summarize(args: &LoadArgs, plan: &Plan, mut stats: WorkerStats) -> Value {
    let open_loop = args.rate.is_some();
    let window = if open_loop {
        // Slots scheduled in the window, finished whenever they finished.
        stats
            .last_done
            .map_or(plan.end, |d| d.max(plan.end))
            .saturating_duration_since(plan.measure_start)
    } else {
        args.duration
    };
    let unsent = if open_loop {
        plan.total_slots.saturating_sub(stats.started)
    } else {
        0
    };
    let status_total: u64 = stats.status_errors.values().sum();
    let errors = status_total + stats.transport_errors + stats.timeouts + unsent;
    let rps = if window.is_zero() {
        0.0
    } else {
        stats.ok as f64 / window.as_secs_f64()
    };
    let latency = Summary::from_samples(&mut stats.latency);
    let ttft = Summary::from_samples(&mut stats.ttft);
    let status_json: serde_json::Map<String, Value> = stats
        .status_errors
        .iter()
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let chunks_per_response = if stats.ok == 0 {
        0.0
    } else {
        stats.chunks as f64 / stats.ok as f64
    };

    if !args.quiet {
        let lat = latency.map_or_else(
            || "no successful responses".to_string(),
            |s| {
                format!(
                    "p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} ms",
                    s.p50, s.p90, s.p99, s.max
                )
            },
        );
        let ttft_txt = ttft.map_or_else(String::new, |s| {
            format!(" | ttft p50 {:.3} p99 {:.3} ms", s.p50, s.p99)
        });
        let mode = args
            .rate
            .map_or_else(|| "saturation".to_string(), |r| format!("rate {r}/s"));
        let label = if args.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", args.label)
        };
        eprintln!(
            "{label}{mode}{} x {:.1}s, {connections} conns: {ok} ok, {errors} errors, {rps:.1} req/s, {lat}{ttft_txt}",
            if args.stream { " stream" } else { "" },
            args.duration.as_secs_f64(),
            connections = args.connections,
            ok = stats.ok,
        );
        if let Some(e) = &stats.first_error {
            eprintln!("{label}first error: {e}");
        }
    }

    json!({
        "label": args.label,
        "mode": if open_loop { "rate" } else { "saturation" },
        "stream": args.stream,
        "url": args.url,
        "model": args.model,
        "connections": args.connections,
        "target_rate": args.rate,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "window_s": window.as_secs_f64(),
        "ok": stats.ok,
        "rps": (rps * 10.0).round() / 10.0,
        "errors": {
            "total": errors,
            "status": status_json,
            "transport": stats.transport_errors,
            "timeout": stats.timeouts,
            "unsent": unsent,
        },
        "first_error": stats.first_error,
        "latency_ms": latency.map_or(Value::Null, Summary::to_json),
        "service_ms": summary_json(&mut stats.service),
        "send_lag_ms": summary_json(&mut stats.send_lag),
        "ttft_ms": ttft.map_or(Value::Null, Summary::to_json),
        "chunks_per_response": (chunks_per_response * 100.0).round() / 100.0,
        "stream_without_data": if args.stream { stats.stream_without_data } else { 0 },
        "response_bytes": stats.bytes,
    })
}

/// Entry point of `tollgate-bench load`.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(run_async(args))?;
    crate::emit_json(&report, args.out.as_ref())
}

#[cfg(test)]
mod tests {
    use super::DataScan;

    #[test]
    fn data_markers_are_counted_across_frames() {
        let mut scan = DataScan::default();
        assert_eq!(scan.feed(b"data: {\"a\":1}\n\nda"), 1);
        assert_eq!(scan.feed(b"ta: {\"b\":2}\n\n"), 1);
        assert_eq!(scan.feed(b"d"), 0);
        assert_eq!(scan.feed(b"a"), 0);
        assert_eq!(scan.feed(b"ta"), 0);
        assert_eq!(scan.feed(b": [DONE]\n\n"), 1);
        assert_eq!(scan.count, 3);
    }

    #[test]
    fn no_marker_in_plain_json() {
        let mut scan = DataScan::default();
        assert_eq!(scan.feed(br#"{"choices":[]}"#), 0);
    }
}
