//! Limits shared by every instance through Redis: rpm, tpm and in-flight (max_parallel_requests) counters of
//! keys, users, teams, organizations and end users, checked and taken in one atomic script per request. When
//! Redis does not answer, admission falls back to this instance's own counters (one log line per outage).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One entity's rate limits, for the script.
#[derive(Debug, Clone)]
pub struct SharedAsk {
    /// `key:<hash>`, `user:<id>`, ...
    pub entity: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

/// Which limit Redis refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedRefusal {
    Rpm(usize),
    Tpm(usize),
    Parallel(usize),
}

/// Work done after a request: its tokens, and its in-flight slots given back.
#[derive(Debug)]
struct Settle {
    minute: i64,
    tokens: u64,
    asks: Vec<SharedAsk>,
    release_only: bool,
}

/// Check every limit first, then take: all or nothing. ARGV: prefix, minute, n, then per entity
/// (id, rpm, tpm, parallel) with 0 = no limit. Returns {0, 0} or {entity index (1-based), kind (1 rpm,
/// 2 tpm, 3 parallel)}.
const ACQUIRE: &str = r"
local prefix, minute, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 0, n - 1 do
  local id = ARGV[4 + i * 4]
  local rpm, tpm, par = tonumber(ARGV[5 + i * 4]), tonumber(ARGV[6 + i * 4]), tonumber(ARGV[7 + i * 4])
  if rpm > 0 and tonumber(redis.call('GET', prefix .. 'rpm:' .. id .. ':' .. minute) or '0') >= rpm then return {i + 1, 1} end
  if tpm > 0 and tonumber(redis.call('GET', prefix .. 'tpm:' .. id .. ':' .. minute) or '0') >= tpm then return {i + 1, 2} end
  if par > 0 and tonumber(redis.call('GET', prefix .. 'par:' .. id) or '0') >= par then return {i + 1, 3} end
end
for i = 0, n - 1 do
  local id = ARGV[4 + i * 4]
  if tonumber(ARGV[5 + i * 4]) > 0 then
    local k = prefix .. 'rpm:' .. id .. ':' .. minute
    redis.call('INCR', k)
    redis.call('EXPIRE', k, 120)
  end
  if tonumber(ARGV[7 + i * 4]) > 0 then
    local k = prefix .. 'par:' .. id
    redis.call('INCR', k)
    redis.call('EXPIRE', k, 600)
  end
end
return {0, 0}
";

/// A multiplexed Redis connection, made lazily (Redis may be down at start-up), with short timeouts: callers
/// fall back to local state rather than wait. Cloned, it is shared (the router's state exchange uses it too).
pub fn lazy_connection(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(250)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("cannot set up the Redis client: {e}"))
}

/// While Redis is down, how often a request tries it again.
const RETRY_DOWN_MS: i64 = 1000;

/// Redis-backed shared limits.
pub struct SharedLimits {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
    down: AtomicBool,
    /// When the last call failed (ms): while Redis is down, requests try it again at most once a second
    /// instead of each waiting for a timeout.
    failed_at: AtomicI64,
    settle_tx: mpsc::UnboundedSender<Settle>,
    settle_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Settle>>>,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl SharedLimits {
    /// Set up the client; the connection is made lazily (Redis may be down at start-up: requests then use
    /// local limits until it answers).
    pub fn new(url: &str, prefix: &str) -> Result<SharedLimits, String> {
        let conn = lazy_connection(url)?;
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        Ok(SharedLimits {
            conn,
            prefix: prefix.to_string(),
            script: redis::Script::new(ACQUIRE),
            down: AtomicBool::new(false),
            failed_at: AtomicI64::new(0),
            settle_tx,
            settle_rx: std::sync::Mutex::new(Some(settle_rx)),
        })
    }

    fn mark(&self, ok: bool, err: Option<&redis::RedisError>) {
        if !ok {
            self.failed_at
                .store(tollgate_store::now_ms(), Ordering::Relaxed);
        }
        let was_down = self.down.swap(!ok, Ordering::Relaxed);
        match (ok, was_down) {
            (false, false) => tracing::error!(
                error = %err.map(|e| e.to_string()).unwrap_or_default(),
                "Redis unreachable: rate limits fall back to this instance's own counters (requests go on)"
            ),
            (true, true) => tracing::info!("Redis reachable again: rate limits are shared again"),
            _ => {}
        }
    }

    /// The connection (shared with the router's state exchange).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Whether the last call failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Check and take every shared limit. `Err(())`: Redis did not answer (use local limits).
    pub async fn acquire(
        &self,
        asks: &[SharedAsk],
        minute: i64,
    ) -> Result<Option<SharedRefusal>, ()> {
        if self.is_down()
            && tollgate_store::now_ms() - self.failed_at.load(Ordering::Relaxed) < RETRY_DOWN_MS
        {
            return Err(());
        }
        let mut inv = self.script.prepare_invoke();
        inv.arg(&self.prefix).arg(minute).arg(asks.len());
        for a in asks {
            inv.arg(&a.entity)
                .arg(a.rpm.unwrap_or(0))
                .arg(a.tpm.unwrap_or(0))
                .arg(a.parallel.unwrap_or(0));
        }
        let mut conn = self.conn.clone();
        match inv.invoke_async::<(usize, u8)>(&mut conn).await {
            Ok((i, kind)) => {
                self.mark(true, None);
                Ok(match (i, kind) {
                    (0, _) => None,
                    (i, 1) => Some(SharedRefusal::Rpm(i - 1)),
                    (i, 2) => Some(SharedRefusal::Tpm(i - 1)),
                    (i, _) => Some(SharedRefusal::Parallel(i - 1)),
                })
            }
            Err(e) => {
                self.mark(false, Some(&e));
                Err(())
            }
        }
    }

    /// After the request: add its tokens to the minute's tpm counters and give its in-flight slots back.
    /// Never waits: the work is queued for [`SharedLimits::run`].
    pub fn settle(&self, asks: Vec<SharedAsk>, minute: i64, tokens: u64) {
        let _ = self.settle_tx.send(Settle {
            minute,
            tokens,
            asks,
            release_only: false,
        });
    }

    /// The request was not sent after all: give its in-flight slots back.
    pub fn release(&self, asks: Vec<SharedAsk>, minute: i64) {
        let _ = self.settle_tx.send(Settle {
            minute,
            tokens: 0,
            asks,
            release_only: true,
        });
    }

    /// Apply queued settlements in pipelines until `stop` (then drain what is queued).
    pub async fn run(&self, stop: CancellationToken) {
        let Some(mut rx) = self
            .settle_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => None,
                m = rx.recv() => m,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while let Ok(m) = rx.try_recv() {
                batch.push(m);
                if batch.len() >= 256 {
                    break;
                }
            }
            self.apply(&batch).await;
        }
        let mut rest = Vec::new();
        while let Ok(m) = rx.try_recv() {
            rest.push(m);
        }
        if !rest.is_empty() {
            self.apply(&rest).await;
        }
    }

    async fn apply(&self, batch: &[Settle]) {
        let mut pipe = redis::pipe();
        for s in batch {
            for a in &s.asks {
                if a.parallel.is_some() {
                    pipe.cmd("DECR")
                        .arg(format!("{}par:{}", self.prefix, a.entity))
                        .ignore();
                }
                if !s.release_only && a.tpm.is_some() && s.tokens > 0 {
                    let k = format!("{}tpm:{}:{}", self.prefix, a.entity, s.minute);
                    pipe.cmd("INCRBY").arg(&k).arg(s.tokens).ignore();
                    pipe.cmd("EXPIRE").arg(&k).arg(120).ignore();
                }
                if s.release_only && a.rpm.is_some() {
                    pipe.cmd("DECR")
                        .arg(format!("{}rpm:{}:{}", self.prefix, a.entity, s.minute))
                        .ignore();
                }
            }
        }
        let mut conn = self.conn.clone();
        let res: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        match res {
            Ok(()) => self.mark(true, None),
            // Lost settlements only make limits stricter until the minute (or the 10-minute in-flight
            // expiry) passes; logged once per outage.
            Err(e) => self.mark(false, Some(&e)),
        }
    }
}
