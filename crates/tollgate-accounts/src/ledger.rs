//! The spend ledger: requests hand their spend row over without waiting; a batch writer stores rows every
//! `proxy_batch_write_at` or when `batch_size` rows are waiting. When the database is down rows stay in
//! memory up to a bound, then spill to an append-only journal file; the journal is replayed once the
//! database answers again and at start-up. Nothing is dropped.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tollgate_store::{SpendRow, Store, StoreError};

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// `general_settings.proxy_batch_write_at` (LiteLLM's default is 10 s; ours 1 s: a write is cheap).
    pub interval: Duration,
    /// Rows that trigger a write before the interval is up.
    pub batch_size: usize,
    /// Rows kept in memory while the database is down before spilling to the journal.
    pub max_buffered: usize,
    /// The journal file.
    pub journal: PathBuf,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            interval: Duration::from_secs(1),
            batch_size: 50,
            max_buffered: 100_000,
            journal: PathBuf::from("tollgate-spend.journal"),
        }
    }
}

/// Counts the ledger exposes (tests, `/health/readiness`, logs).
#[derive(Debug, Default)]
pub struct LedgerStats {
    pub recorded: AtomicU64,
    pub written: AtomicU64,
    pub journaled: AtomicU64,
    pub failed_writes: AtomicU64,
}

/// Rows taken out of the buffer for a write; back into it unless consumed.
struct Taken<'a> {
    ledger: &'a Ledger,
    rows: Option<Vec<SpendRow>>,
}

impl Taken<'_> {
    fn consume(mut self) -> Vec<SpendRow> {
        self.rows.take().unwrap_or_default()
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(rows) = self.rows.take()
            && !rows.is_empty()
        {
            self.ledger.put_back(rows);
        }
    }
}

pub struct Ledger {
    opts: LedgerOptions,
    buf: Mutex<Vec<SpendRow>>,
    wake: Notify,
    /// Serializes writers (the loop, a final flush): rows are written in the order they were taken.
    write_lock: tokio::sync::Mutex<()>,
    pub stats: LedgerStats,
    /// Set while the last write failed (so one line is logged per outage, not per attempt).
    down: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a write applied, for the caller to move pending spend into written spend.
/// Called with rows just committed and the time their write began.
pub type OnWritten<'a> = &'a (dyn Fn(&[SpendRow], std::time::SystemTime) + Send + Sync);

impl Ledger {
    pub fn new(opts: LedgerOptions) -> Ledger {
        Ledger {
            opts,
            buf: Mutex::new(Vec::new()),
            wake: Notify::new(),
            write_lock: tokio::sync::Mutex::new(()),
            stats: LedgerStats::default(),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Hold off writes (while the caller reads stored spend and applies it to memory, so a write that
    /// commits in between is not counted twice).
    pub async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// Hand a row over. Never blocks on the database.
    pub fn record(&self, row: SpendRow) {
        let n = {
            let mut b = lock(&self.buf);
            b.push(row);
            b.len()
        };
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        if n == self.opts.batch_size {
            self.wake.notify_one();
        }
    }

    pub fn buffered(&self) -> usize {
        lock(&self.buf).len()
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Put rows taken for a write back at the front of the buffer; past `max_buffered` the oldest spill
    /// to the journal.
    fn put_back(&self, rows: Vec<SpendRow>) {
        let spill = {
            let mut b = lock(&self.buf);
            let newer = std::mem::replace(&mut *b, rows);
            b.extend(newer);
            if b.len() > self.opts.max_buffered {
                let over = b.len() - self.opts.max_buffered;
                b.drain(..over).collect::<Vec<_>>()
            } else {
                Vec::new()
            }
        };
        if !spill.is_empty() {
            self.append_journal(&spill);
        }
    }

    /// Write what is buffered (and, when the database answers, what the journal holds). On failure — or
    /// if this future is dropped mid-write — the rows go back to the buffer (a write that did commit is
    /// not applied twice: the store skips known request ids).
    pub async fn flush(
        &self,
        store: &Store,
        on_written: OnWritten<'_>,
    ) -> Result<usize, StoreError> {
        let _w = self.write_lock.lock().await;
        let taken = Taken {
            ledger: self,
            rows: Some(std::mem::replace(
                &mut *lock(&self.buf),
                Vec::with_capacity(self.opts.batch_size * 2),
            )),
        };
        let n = taken.rows.as_ref().map_or(0, Vec::len);
        if n == 0 {
            drop(taken);
            if !self.is_down() {
                self.replay_journal(store, on_written).await?;
            }
            return Ok(0);
        }
        let began = std::time::SystemTime::now();
        let res = store
            .write_spend(taken.rows.as_deref().unwrap_or(&[]))
            .await;
        match res {
            Ok(_) => {
                let rows = taken.consume();
                on_written(&rows, began);
                self.stats.written.fetch_add(n as u64, Ordering::Relaxed);
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("database reachable again: spend rows are being written");
                }
                self.replay_journal(store, on_written).await?;
                Ok(n)
            }
            Err(e) => {
                self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, rows = n, "cannot write spend rows; keeping them and retrying (requests go on)");
                }
                drop(taken);
                Err(e)
            }
        }
    }

    /// Append rows to the journal (JSON lines). If even that fails the rows go back to memory.
    fn append_journal(&self, rows: &[SpendRow]) {
        let res = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.opts.journal)?;
            let mut out = Vec::with_capacity(rows.len() * 400);
            for r in rows {
                serde_json::to_writer(&mut out, r).map_err(std::io::Error::other)?;
                out.push(b'\n');
            }
            f.write_all(&out)?;
            f.sync_data()
        })();
        match res {
            Ok(()) => {
                self.stats
                    .journaled
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::warn!(rows = rows.len(), journal = %self.opts.journal.display(), "spend rows spilled to the journal");
            }
            Err(e) => {
                tracing::error!(error = %e, journal = %self.opts.journal.display(), "cannot write the spend journal; keeping rows in memory");
                lock(&self.buf).extend(rows.iter().cloned());
            }
        }
    }

    /// Write the journal's rows to the database, then remove it. Rows already stored are skipped by the
    /// store (request id), so a replay interrupted half-way is safe to repeat.
    async fn replay_journal(
        &self,
        store: &Store,
        on_written: OnWritten<'_>,
    ) -> Result<(), StoreError> {
        let path = &self.opts.journal;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, journal = %path.display(), "cannot read the spend journal");
                return Ok(());
            }
        };
        let mut rows = Vec::new();
        let mut bad = 0usize;
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<SpendRow>(&line) {
                Ok(r) => rows.push(r),
                // A torn last line (crash while appending) is the only expected damage.
                Err(_) => bad += 1,
            }
        }
        for chunk in rows.chunks(self.opts.batch_size.max(1)) {
            let began = std::time::SystemTime::now();
            store.write_spend(chunk).await?;
            on_written(chunk, began);
        }
        if let Err(e) = std::fs::remove_file(path) {
            tracing::error!(error = %e, journal = %path.display(), "cannot remove the replayed spend journal");
        }
        self.stats
            .written
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        tracing::info!(rows = rows.len(), unreadable_lines = bad, journal = %path.display(), "spend journal replayed");
        Ok(())
    }

    /// At start-up, before the in-memory view is loaded: write what a previous run left in the journal.
    pub async fn replay_at_start(&self, store: &Store) -> Result<(), StoreError> {
        let _w = self.write_lock.lock().await;
        self.replay_journal(store, &|_, _| {}).await
    }

    /// The writer loop: until `stop` is cancelled, write every interval or when a batch is full.
    pub async fn run(&self, store: &Store, on_written: OnWritten<'_>, stop: CancellationToken) {
        let mut backoff = self.opts.interval;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
                _ = self.wake.notified() => {}
            }
            backoff = match self.flush(store, on_written).await {
                Ok(_) => self.opts.interval,
                // Retry sooner than never, later than at once.
                Err(_) => (backoff * 2).min(Duration::from_secs(5)),
            };
        }
    }

    /// At shutdown: try to write everything within `limit`; what cannot be written goes to the journal.
    pub async fn close(&self, store: &Store, on_written: OnWritten<'_>, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.buffered() > 0 {
            let attempt = tokio::time::timeout_at(deadline, self.flush(store, on_written)).await;
            match attempt {
                Ok(Ok(_)) => continue,
                Ok(Err(_))
                    if tokio::time::Instant::now() + Duration::from_millis(200) < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => break,
            }
        }
        let rest = std::mem::take(&mut *lock(&self.buf));
        if !rest.is_empty() {
            self.append_journal(&rest);
            tracing::warn!(
                rows = rest.len(),
                "database unavailable at shutdown: spend rows kept in the journal for the next start"
            );
        }
    }
}
