//! Live per-deployment state (requests in flight, latency, this minute's usage, failures, cooldown, health), kept by deployment id so it survives config reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Health as the background checks last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not probed yet (or probes are off): routable.
    Unknown,
    Healthy,
    Unhealthy,
}

/// What one deployment's traffic looks like right now. All methods take `now_ms` (Unix ms) so tests and
/// callers control time; nothing here blocks for more than a short critical section.
#[derive(Debug, Default)]
pub struct DeploymentState {
    in_flight: AtomicU64,
    /// Requests in flight on other instances (from the shared store; 0 without one).
    remote_in_flight: AtomicU64,
    /// Unix ms until which the deployment is skipped; 0 = not cooling down.
    cooldown_until: AtomicI64,
    health: AtomicU8,
    health_error: Mutex<Option<String>>,
    health_checked_ms: AtomicI64,
    inner: Mutex<Window>,
}

/// This minute's counts and the latency average.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: i64,
    requests: u64,
    tokens: u64,
    fails: u32,
    /// Exponentially weighted mean latency (ms) and when it was last updated.
    latency_ms: f64,
    latency_at: i64,
    latency_samples: u64,
    /// Other instances' counts this minute (from the shared store), and how much of ours was shared.
    remote_requests: u64,
    remote_tokens: u64,
    pushed_requests: u64,
    pushed_tokens: u64,
}

/// Weight of a new latency sample in the moving average.
const LATENCY_ALPHA: f64 = 0.3;

impl Window {
    fn roll(&mut self, now_ms: i64) {
        let minute = now_ms.div_euclid(60_000);
        if minute != self.minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
            self.fails = 0;
            self.remote_requests = 0;
            self.remote_tokens = 0;
            self.pushed_requests = 0;
            self.pushed_tokens = 0;
        }
    }

    fn total(&self) -> (u64, u64) {
        (
            self.requests + self.remote_requests,
            self.tokens + self.remote_tokens,
        )
    }
}

/// A deployment's own `rpm`/`tpm` limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl RateLimits {
    pub fn is_none(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }

    fn allows(&self, (requests, tokens): (u64, u64)) -> bool {
        self.rpm.is_none_or(|l| requests < l) && self.tpm.is_none_or(|l| tokens < l)
    }
}

impl DeploymentState {
    fn window<R>(&self, f: impl FnOnce(&mut Window) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Requests in flight here.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests in flight on every instance, as far as known (what `least-busy` compares).
    pub fn busy(&self) -> u64 {
        self.in_flight() + self.remote_in_flight.load(Ordering::Relaxed)
    }

    /// The other instances' in-flight count, as last shared.
    pub fn set_remote_in_flight(&self, n: u64) {
        self.remote_in_flight.store(n, Ordering::Relaxed);
    }

    /// A request without limits was sent (tests): [`Self::try_start`] with no limits.
    #[cfg(test)]
    pub(crate) fn start(&self, now_ms: i64) {
        let started = self.try_start(&RateLimits::default(), now_ms);
        debug_assert!(started);
    }

    /// Whether this minute's use (this instance's plus the others' last shared counts) is under `limits`.
    pub fn has_capacity(&self, limits: &RateLimits, now_ms: i64) -> bool {
        limits.is_none()
            || self.window(|w| {
                w.roll(now_ms);
                limits.allows(w.total())
            })
    }

    /// A request was sent, if the deployment is under its limits (checked and counted at once): in flight
    /// and in this minute's requests (undo the in-flight count with [`Self::finish`]); `false` if full.
    pub fn try_start(&self, limits: &RateLimits, now_ms: i64) -> bool {
        let ok = self.window(|w| {
            w.roll(now_ms);
            if !limits.allows(w.total()) {
                return false;
            }
            w.requests += 1;
            true
        });
        if ok {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// This minute's counts not yet shared (requests, tokens), marked as shared.
    pub fn take_unshared(&self, now_ms: i64) -> (i64, u64, u64) {
        self.window(|w| {
            w.roll(now_ms);
            let d = (w.requests - w.pushed_requests, w.tokens - w.pushed_tokens);
            w.pushed_requests = w.requests;
            w.pushed_tokens = w.tokens;
            (w.minute, d.0, d.1)
        })
    }

    /// The shared totals of `minute` (every instance, ours included): what is not ours is the others'.
    pub fn set_shared_totals(&self, minute: i64, requests: u64, tokens: u64, now_ms: i64) {
        self.window(|w| {
            w.roll(now_ms);
            if w.minute == minute {
                w.remote_requests = requests.saturating_sub(w.pushed_requests);
                w.remote_tokens = tokens.saturating_sub(w.pushed_tokens);
            }
        });
    }

    /// The request ended (whatever the outcome).
    pub fn finish(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A success: its latency (time to first token for streams) and its tokens.
    pub fn record_success(&self, latency_ms: f64, tokens: u64, now_ms: i64) {
        self.window(|w| {
            w.roll(now_ms);
            w.tokens += tokens;
            w.latency_ms = if w.latency_samples == 0 {
                latency_ms
            } else {
                w.latency_ms + LATENCY_ALPHA * (latency_ms - w.latency_ms)
            };
            w.latency_samples += 1;
            w.latency_at = now_ms;
        });
    }

    /// Tokens reported later (a stream's usage arrives at its end).
    pub fn add_tokens(&self, tokens: u64, now_ms: i64) {
        self.window(|w| {
            w.roll(now_ms);
            w.tokens += tokens;
        });
    }

    /// A failure that counts against the deployment; returns this minute's failure count.
    pub fn record_failure(&self, now_ms: i64) -> u32 {
        self.window(|w| {
            w.roll(now_ms);
            w.fails += 1;
            w.fails
        })
    }

    /// A timeout also teaches the latency average (LiteLLM's lowest-latency strategy penalises timeouts).
    pub fn record_slow(&self, latency_ms: f64, now_ms: i64) {
        self.record_success(latency_ms, 0, now_ms);
    }

    /// Mean latency if a sample is younger than `ttl_ms`.
    pub fn latency_ms(&self, now_ms: i64, ttl_ms: i64) -> Option<f64> {
        self.window(|w| {
            (w.latency_samples > 0 && now_ms - w.latency_at <= ttl_ms).then_some(w.latency_ms)
        })
    }

    /// Adopt a latency average seen by another instance (if newer than ours).
    pub fn merge_latency(&self, latency_ms: f64, at_ms: i64) {
        self.window(|w| {
            if at_ms > w.latency_at {
                w.latency_ms = if w.latency_samples == 0 {
                    latency_ms
                } else {
                    (w.latency_ms + latency_ms) / 2.0
                };
                w.latency_samples = w.latency_samples.max(1);
                w.latency_at = at_ms;
            }
        });
    }

    /// The latency average and when it was last updated (for sharing).
    pub fn latency_sample(&self) -> Option<(f64, i64)> {
        self.window(|w| (w.latency_samples > 0).then_some((w.latency_ms, w.latency_at)))
    }

    /// This minute's (requests, tokens), every instance's as far as known.
    pub fn usage(&self, now_ms: i64) -> (u64, u64) {
        self.window(|w| {
            w.roll(now_ms);
            w.total()
        })
    }

    /// Skip this deployment until `until_ms` (keeps a later cooldown already set).
    pub fn cool_down_until(&self, until_ms: i64) {
        self.cooldown_until.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// End a cooldown early (a health probe succeeded, or an admin reset it).
    pub fn clear_cooldown(&self) {
        self.cooldown_until.store(0, Ordering::Relaxed);
        self.window(|w| w.fails = 0);
    }

    /// The cooldown's end if it is still running.
    pub fn cooling_until(&self, now_ms: i64) -> Option<i64> {
        let until = self.cooldown_until.load(Ordering::Relaxed);
        (until > now_ms).then_some(until)
    }

    /// Record a probe's result; returns the health before it (swapped atomically, so of two probes finishing
    /// together only one sees the change).
    pub fn set_health(&self, health: Health, error: Option<String>, now_ms: i64) -> Health {
        *self.health_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
        self.health_checked_ms.store(now_ms, Ordering::Relaxed);
        let before = self.health.swap(
            match health {
                Health::Unknown => 0,
                Health::Healthy => 1,
                Health::Unhealthy => 2,
            },
            Ordering::Relaxed,
        );
        match before {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    /// The last probe's error and when the last probe ran (0 = never).
    pub fn health_detail(&self) -> (Option<String>, i64) {
        (
            self.health_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            self.health_checked_ms.load(Ordering::Relaxed),
        )
    }
}

/// Every deployment's state by id. A reload asks for the ids of the new config: existing states are kept,
/// states of removed deployments are dropped.
#[derive(Debug, Default)]
pub struct StateRegistry {
    map: Mutex<HashMap<String, Arc<DeploymentState>>>,
}

impl StateRegistry {
    pub fn get_or_insert(&self, id: &str) -> Arc<DeploymentState> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<DeploymentState>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Forget deployments not in `ids` (after a reload).
    pub fn retain(&self, ids: &std::collections::HashSet<&str>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| ids.contains(id.as_str()));
    }

    /// Every (id, state), for sharing and health reports.
    pub fn all(&self) -> Vec<(String, Arc<DeploymentState>)> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_roll_per_minute_and_cooldowns_expire() {
        let s = DeploymentState::default();
        s.start(60_000);
        s.record_success(100.0, 10, 60_001);
        s.record_success(200.0, 5, 60_002);
        assert_eq!(s.usage(60_500), (1, 15));
        assert_eq!(s.usage(120_000), (0, 0));
        let l = s.latency_ms(60_003, 1000).unwrap();
        assert!((l - 130.0).abs() < 1e-9, "{l}");
        assert_eq!(s.latency_ms(70_000, 1000), None);
        assert_eq!(s.record_failure(120_001), 1);
        assert_eq!(s.record_failure(120_002), 2);
        assert_eq!(s.record_failure(180_000), 1);
        s.cool_down_until(5_000);
        s.cool_down_until(4_000);
        assert_eq!(s.cooling_until(4_500), Some(5_000));
        assert_eq!(s.cooling_until(5_000), None);
        s.start(0);
        s.finish();
        s.finish();
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn limits_count_other_instances_shared_usage() {
        let s = DeploymentState::default();
        let l = RateLimits {
            rpm: Some(3),
            tpm: None,
        };
        let now = 600_000;
        assert!(s.try_start(&l, now));
        assert_eq!(s.take_unshared(now), (10, 1, 0));
        // The shared total says 2 more came through another instance.
        s.set_shared_totals(10, 3, 0, now);
        assert_eq!(s.usage(now), (3, 0));
        assert!(!s.has_capacity(&l, now));
        assert!(!s.try_start(&l, now));
        assert!(s.has_capacity(&l, now + 60_000));
        assert_eq!(s.in_flight(), 1);
    }
}
