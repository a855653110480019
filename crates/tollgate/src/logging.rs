//! Log set-up: human-readable or JSON lines on stderr; level from --debug/--detailed_debug, or RUST_LOG.
//! Lines go into an in-memory batch that a flusher thread writes out every few milliseconds, so the request
//! path never makes a syscall or wakes a thread to log (the per-line wake-up of a writer thread cost ~15 us
//! of CPU per request in profiles). Warnings and errors are written at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How long a log line may wait in the batch.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A batch this large is written at once by the logging thread itself.
const MAX_BATCH: usize = 1 << 20;

struct Batch {
    buf: Mutex<Vec<u8>>,
    stop: AtomicBool,
    wake: Condvar,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self) {
        let pending = std::mem::take(&mut *self.lock());
        if !pending.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&pending).and_then(|_| err.flush());
        }
    }
}

/// The `MakeWriter`: every event is formatted into one buffer and handed over in one `write`.
#[derive(Clone)]
struct BatchWriter(Arc<Batch>);

/// Writes one event into the batch; `urgent` events (warnings, errors) flush the batch right away.
struct EventWriter<'a> {
    batch: &'a Batch,
    urgent: bool,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buf = self.batch.lock();
            buf.extend_from_slice(data);
            buf.len() >= MAX_BATCH
        };
        if full || self.urgent {
            self.batch.flush();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            batch: &self.0,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            batch: &self.0,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Flushes the last lines when dropped (at exit); keep it alive for the life of the process.
pub struct LogGuard {
    batch: Arc<Batch>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.batch.stop.store(true, Ordering::Release);
        self.batch.wake.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        self.batch.flush();
    }
}

/// Install the global subscriber. `json` from `litellm_settings.json_logs` or `JSON_LOGS`.
pub fn init(debug: bool, detailed: bool, json: bool, env_filter: Option<String>) -> LogGuard {
    let default = if detailed {
        "debug,tollgate=trace,tollgate_server=trace,tollgate_providers=trace,tollgate_router=trace,tollgate_config=trace,tollgate_store=trace"
    } else if debug {
        "warn,tollgate=debug,tollgate_server=debug,tollgate_providers=debug,tollgate_router=debug,tollgate_config=debug,tollgate_store=debug,tollgate::request=debug"
    } else {
        "warn,tollgate=info,tollgate_server=info,tollgate_providers=info,tollgate_router=info,tollgate_store=info,tollgate::request=info"
    };
    let filter = env_filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let batch = Arc::new(Batch {
        buf: Mutex::new(Vec::with_capacity(64 * 1024)),
        stop: AtomicBool::new(false),
        wake: Condvar::new(),
    });
    let flusher = {
        let batch = batch.clone();
        std::thread::Builder::new()
            .name("tollgate-log".into())
            .spawn(move || {
                while !batch.stop.load(Ordering::Acquire) {
                    let guard = batch.lock();
                    let _ = batch.wake.wait_timeout(guard, FLUSH_INTERVAL);
                    batch.flush();
                }
            })
            .ok()
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchWriter(batch.clone()));
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    if let Err(e) = result {
        eprintln!("tollgate: could not install the logger: {e}");
    }
    LogGuard { batch, flusher }
}
