//! Router state shared by every instance through Redis: cooldowns, deployment usage this minute (rpm/tpm) and latency averages, exchanged in one pipelined round trip per tick off the request path.
//!
//! Requests never wait for Redis: they read and write the local [`DeploymentState`]s; this job pushes what
//! changed locally and pulls what the other instances pushed every [`TICK`]. When Redis does not answer,
//! each instance routes on its own state (one log line per outage) and catches up when it is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::state::StateRegistry;

/// How often state is exchanged.
pub const TICK: Duration = Duration::from_millis(200);
/// How often expired cooldowns and stale in-flight entries are removed from the shared keys.
const CLEANUP_EVERY: u32 = 50;
/// An instance's in-flight entry older than this is ignored (the instance stopped or lost Redis).
const BUSY_FRESH_MS: i64 = 2_000;

/// What one exchange reads back: active cooldowns (id, until ms), this minute's usage counters
/// (`id|r`/`id|t` -> count) and latency averages (id -> `ms:at`).
type Pulled = (
    Vec<(String, f64)>,
    HashMap<String, u64>,
    HashMap<String, String>,
    HashMap<String, String>,
);

/// The shared-state client.
pub struct RouterSync {
    conn: ConnectionManager,
    prefix: String,
    states: Arc<StateRegistry>,
    /// Cooldowns started here and not pushed yet: (deployment id, until ms).
    queued: Mutex<Vec<(String, i64)>>,
    down: AtomicBool,
    /// This instance's name in the shared in-flight hash.
    instance: String,
}

impl std::fmt::Debug for RouterSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterSync")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A random instance name: 128 random bits in hex.
fn instance_name() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RouterSync {
    /// On a (lazy, multiplexed) connection shared with the rate limits.
    pub fn new(conn: ConnectionManager, prefix: &str, states: Arc<StateRegistry>) -> RouterSync {
        RouterSync {
            conn,
            prefix: prefix.to_string(),
            states,
            queued: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            instance: instance_name(),
        }
    }

    /// A deployment started cooling down here: tell the others at the next tick.
    pub fn publish_cooldown(&self, id: &str, until_ms: i64) {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_string(), until_ms));
    }

    /// Whether the last exchange failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Exchange state every tick until `stop`, then push once more.
    pub async fn run(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pushed_latency: HashMap<String, i64> = HashMap::new();
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            n = n.wrapping_add(1);
            let result = self
                .exchange(&mut pushed_latency, n.is_multiple_of(CLEANUP_EVERY))
                .await;
            self.mark(result);
        }
        let result = self.exchange(&mut pushed_latency, false).await;
        self.mark(result);
    }

    fn mark(&self, result: redis::RedisResult<()>) {
        let was_down = self.down.swap(result.is_err(), Ordering::Relaxed);
        match (result, was_down) {
            (Err(e), false) => tracing::error!(
                error = %e,
                "Redis unreachable: cooldowns, deployment usage and latency are no longer shared (each instance routes on its own state; requests go on)"
            ),
            (Ok(()), true) => {
                tracing::info!("Redis reachable again: router state is shared again");
            }
            _ => {}
        }
    }

    fn keys(&self, minute: i64) -> (String, String, String, String) {
        (
            format!("{}router:cooldowns", self.prefix),
            format!("{}router:usage:{minute}", self.prefix),
            format!("{}router:latency", self.prefix),
            format!("{}router:busy", self.prefix),
        )
    }

    /// One round trip: push local changes, pull everyone's.
    async fn exchange(
        &self,
        pushed_latency: &mut HashMap<String, i64>,
        cleanup: bool,
    ) -> redis::RedisResult<()> {
        let now = now_ms();
        let minute = now.div_euclid(60_000);
        let (cooldowns, usage, latency, busy) = self.keys(minute);
        let states = self.states.all();
        let queued = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        let mut pipe = redis::pipe();
        for (id, until) in &queued {
            pipe.cmd("ZADD")
                .arg(&cooldowns)
                .arg("GT")
                .arg(*until)
                .arg(id)
                .ignore();
        }
        let mut pushed_usage = false;
        for (id, st) in &states {
            let (m, requests, tokens) = st.take_unshared(now);
            if m == minute && (requests > 0 || tokens > 0) {
                pushed_usage = true;
                if requests > 0 {
                    pipe.cmd("HINCRBY")
                        .arg(&usage)
                        .arg(format!("{id}|r"))
                        .arg(requests)
                        .ignore();
                }
                if tokens > 0 {
                    pipe.cmd("HINCRBY")
                        .arg(&usage)
                        .arg(format!("{id}|t"))
                        .arg(tokens)
                        .ignore();
                }
            }
            // In flight here: `id|instance` -> `count:ms` (0 is written too, so a drop to idle is seen).
            pipe.cmd("HSET")
                .arg(&busy)
                .arg(format!("{id}|{}", self.instance))
                .arg(format!("{}:{now}", st.in_flight()))
                .ignore();
            if let Some((ms, at)) = st.latency_sample()
                && pushed_latency.get(id).is_none_or(|&p| p < at)
            {
                pipe.cmd("HSET")
                    .arg(&latency)
                    .arg(id)
                    .arg(format!("{ms}:{at}"))
                    .ignore();
                pushed_latency.insert(id.clone(), at);
            }
        }
        if pushed_usage {
            pipe.cmd("EXPIRE").arg(&usage).arg(120).ignore();
        }
        pipe.cmd("EXPIRE").arg(&busy).arg(3600).ignore();
        if cleanup {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&cooldowns)
                .arg("-inf")
                .arg(now)
                .ignore();
            pipe.cmd("EXPIRE").arg(&latency).arg(7200).ignore();
        }
        pipe.cmd("ZRANGEBYSCORE")
            .arg(&cooldowns)
            .arg(now)
            .arg("+inf")
            .arg("WITHSCORES");
        pipe.cmd("HGETALL").arg(&usage);
        pipe.cmd("HGETALL").arg(&latency);
        pipe.cmd("HGETALL").arg(&busy);
        let mut conn = self.conn.clone();
        let pulled: redis::RedisResult<Pulled> = pipe.query_async(&mut conn).await;
        let (cooling, counts, latencies, busy_all) = match pulled {
            Ok(p) => p,
            Err(e) => {
                // Without fresh news, other instances' in-flight counts are forgotten rather than kept stale.
                for (_, st) in &states {
                    st.set_remote_in_flight(0);
                }
                // Put the cooldowns back so they are shared once Redis answers.
                self.queued
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(queued);
                return Err(e);
            }
        };
        for (id, until) in cooling {
            if let Some(st) = self.states.get(&id) {
                st.cool_down_until(until as i64);
            }
        }
        let mut totals: HashMap<&str, (u64, u64)> = HashMap::new();
        for (field, v) in &counts {
            if let Some((id, kind)) = field.rsplit_once('|') {
                let t = totals.entry(id).or_default();
                match kind {
                    "r" => t.0 = *v,
                    "t" => t.1 = *v,
                    _ => {}
                }
            }
        }
        for (id, st) in &states {
            let (r, t) = totals.get(id.as_str()).copied().unwrap_or_default();
            st.set_shared_totals(minute, r, t, now);
        }
        // Other instances' in-flight counts, fresh ones only; stale fields are removed now and then.
        let mut remote: HashMap<&str, u64> = HashMap::new();
        let mut stale: Vec<&str> = Vec::new();
        for (field, v) in &busy_all {
            let Some((id, instance)) = field.rsplit_once('|') else {
                continue;
            };
            let Some((n, at)) = v.split_once(':') else {
                continue;
            };
            let (Ok(n), Ok(at)) = (n.parse::<u64>(), at.parse::<i64>()) else {
                continue;
            };
            if now - at > BUSY_FRESH_MS {
                stale.push(field);
            } else if instance != self.instance {
                *remote.entry(id).or_default() += n;
            }
        }
        for (id, st) in &states {
            st.set_remote_in_flight(remote.get(id.as_str()).copied().unwrap_or(0));
        }
        if cleanup && !stale.is_empty() {
            let mut del = redis::cmd("HDEL");
            del.arg(&busy);
            for f in &stale {
                del.arg(*f);
            }
            let _: redis::RedisResult<()> = del.query_async(&mut conn).await;
        }
        for (id, v) in latencies {
            let Some((ms, at)) = v.split_once(':') else {
                continue;
            };
            if let (Ok(ms), Ok(at), Some(st)) =
                (ms.parse::<f64>(), at.parse::<i64>(), self.states.get(&id))
            {
                st.merge_latency(ms, at);
            }
        }
        Ok(())
    }
}
