//! Per-entity counters kept in memory: spend (written, pending, reserved), requests and tokens in the
//! current minute, requests in flight, spend per model. Check-and-acquire is one critical section, so
//! concurrent admissions cannot both take the last unit of a limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tollgate_core::Nanos;

use crate::model::Limits;

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default)]
struct State {
    /// Spend as stored in the database (last read, plus what this instance wrote since).
    spend: i64,
    /// Recorded by this instance, not yet written.
    pending: i64,
    /// Estimates of admitted requests that have not finished.
    reserved: i64,
    in_flight: u64,
    /// Minute index of the rate window.
    window: i64,
    requests: u64,
    tokens: u64,
    /// Spend per model since the last model-budget reset (written + pending).
    model_spend: HashMap<String, i64>,
    model_reserved: HashMap<String, i64>,
}

impl State {
    fn roll(&mut self, now_ms: i64) {
        let w = now_ms.div_euclid(MINUTE_MS);
        if w != self.window {
            self.window = w;
            self.requests = 0;
            self.tokens = 0;
        }
    }
}

/// Why a request is refused by one entity's limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Budget {
        spend: Nanos,
        max: Nanos,
    },
    ModelBudget {
        model: String,
        spend: Nanos,
        max: Nanos,
    },
    Parallel {
        limit: u64,
    },
    Rpm {
        limit: u64,
        retry_after: Duration,
    },
    Tpm {
        limit: u64,
        retry_after: Duration,
    },
}

/// What a request asks of one entity.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub limits: &'a Limits,
    /// `model_max_budget` limit for this request's model, if any.
    pub model_budget: Option<(&'a str, Nanos)>,
    pub model: &'a str,
    pub estimate: Nanos,
    pub now_ms: i64,
}

/// Remaining rate capacity after an admission (for `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Counters(Mutex<State>);

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain integers behind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn until_next_minute(now_ms: i64) -> Duration {
    let next = (now_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
    Duration::from_millis((next - now_ms).max(1) as u64)
}

impl Counters {
    pub fn with_spend(spend: i64) -> Counters {
        Counters(Mutex::new(State {
            spend,
            ..State::default()
        }))
    }

    /// Check every limit and, if all pass, take one request in flight, one request of the minute and the
    /// estimate. Budgets are crossed when spend (written + pending + reserved) reaches `max_budget`: a
    /// request is admitted while the total is below it, as LiteLLM admits while `spend < max_budget`.
    pub fn try_acquire(&self, ask: &Ask<'_>) -> Result<Remaining, Refusal> {
        let mut s = lock(&self.0);
        s.roll(ask.now_ms);
        let l = ask.limits;
        if let Some(max) = l.max_budget {
            let used = s.spend + s.pending + s.reserved;
            if used >= max.0 {
                return Err(Refusal::Budget {
                    spend: Nanos(s.spend + s.pending),
                    max,
                });
            }
        }
        if let Some((model, max)) = ask.model_budget {
            let used = s.model_spend.get(model).copied().unwrap_or(0)
                + s.model_reserved.get(model).copied().unwrap_or(0);
            if used >= max.0 {
                return Err(Refusal::ModelBudget {
                    model: model.to_string(),
                    spend: Nanos(s.model_spend.get(model).copied().unwrap_or(0)),
                    max,
                });
            }
        }
        if let Some(limit) = l.max_parallel_requests
            && s.in_flight >= limit
        {
            return Err(Refusal::Parallel { limit });
        }
        if let Some(limit) = l.rpm_limit
            && s.requests >= limit
        {
            return Err(Refusal::Rpm {
                limit,
                retry_after: until_next_minute(ask.now_ms),
            });
        }
        if let Some(limit) = l.tpm_limit
            && s.tokens >= limit
        {
            return Err(Refusal::Tpm {
                limit,
                retry_after: until_next_minute(ask.now_ms),
            });
        }
        s.in_flight += 1;
        s.requests += 1;
        s.reserved += ask.estimate.0;
        if ask.model_budget.is_some() {
            *s.model_reserved.entry(ask.model.to_string()).or_default() += ask.estimate.0;
        }
        Ok(Remaining {
            requests: l.rpm_limit.map(|lim| (lim, lim.saturating_sub(s.requests))),
            tokens: l.tpm_limit.map(|lim| (lim, lim.saturating_sub(s.tokens))),
        })
    }

    /// Undo an acquisition (a later entity refused, or the request ended before it was settled).
    pub fn release(&self, model: &str, estimate: Nanos, had_model_budget: bool, now_ms: i64) {
        let mut s = lock(&self.0);
        s.in_flight = s.in_flight.saturating_sub(1);
        s.reserved -= estimate.0;
        if had_model_budget && let Some(r) = s.model_reserved.get_mut(model) {
            *r -= estimate.0;
        }
        // The request was never sent: give its slot of the minute back.
        if s.window == now_ms.div_euclid(MINUTE_MS) {
            s.requests = s.requests.saturating_sub(1);
        }
    }

    /// A finished request: replace its estimate by its cost, count its tokens. Returns the spend
    /// (written + pending) just before and just after, taken in the same critical section, so exactly one
    /// request sees a given threshold crossed.
    pub fn settle(
        &self,
        model: &str,
        estimate: Nanos,
        had_model_budget: bool,
        cost: Nanos,
        tokens: u64,
        now_ms: i64,
    ) -> (Nanos, Nanos) {
        let mut s = lock(&self.0);
        let before = Nanos(s.spend + s.pending);
        s.roll(now_ms);
        s.in_flight = s.in_flight.saturating_sub(1);
        s.reserved -= estimate.0;
        s.pending += cost.0;
        s.tokens += tokens;
        if had_model_budget && let Some(r) = s.model_reserved.get_mut(model) {
            *r -= estimate.0;
        }
        *s.model_spend.entry(model.to_string()).or_default() += cost.0;
        (before, Nanos(s.spend + s.pending))
    }

    /// Spend that is not part of any admitted request yet: record it (e.g. a request that was refused by
    /// a deployment limit after admission never costs anything; this is for tests and corrections).
    pub fn add_pending(&self, cost: i64) {
        lock(&self.0).pending += cost;
    }

    /// The spend writer stored `amount` for this entity. It was pending here unless the entity came into
    /// memory after the request was admitted (a customer created meanwhile): pending never goes below 0.
    pub fn written(&self, amount: i64) {
        let mut s = lock(&self.0);
        s.spend += amount;
        s.pending = (s.pending - amount).max(0);
    }

    /// The database says the written spend is `spend` (a refresh: other instances' spend included).
    pub fn set_written(&self, spend: i64) {
        lock(&self.0).spend = spend;
    }

    pub fn set_model_spend(&self, model: &str, spend: i64) {
        lock(&self.0).model_spend.insert(model.to_string(), spend);
    }

    /// A budget reset: written and per-model spend start again from zero.
    pub fn reset(&self) {
        let mut s = lock(&self.0);
        s.spend = 0;
        s.model_spend.clear();
    }

    /// Total spend known here (written + pending).
    pub fn spend(&self) -> Nanos {
        let s = lock(&self.0);
        Nanos(s.spend + s.pending)
    }

    pub fn model_spend(&self, model: &str) -> Nanos {
        Nanos(lock(&self.0).model_spend.get(model).copied().unwrap_or(0))
    }

    pub fn in_flight(&self) -> u64 {
        lock(&self.0).in_flight
    }

    pub fn reserved(&self) -> Nanos {
        Nanos(lock(&self.0).reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(limits: &'a Limits, estimate: i64) -> Ask<'a> {
        Ask {
            limits,
            model_budget: None,
            model: "m",
            estimate: Nanos(estimate),
            now_ms: 1_000,
        }
    }

    #[test]
    fn budget_counts_reservations() {
        let limits = Limits {
            max_budget: Some(Nanos(100)),
            ..Limits::default()
        };
        let c = Counters::default();
        for _ in 0..4 {
            c.try_acquire(&ask(&limits, 30)).unwrap();
        }
        // 4 x 30 reserved = 120 >= 100: the fifth is refused.
        assert!(matches!(
            c.try_acquire(&ask(&limits, 30)),
            Err(Refusal::Budget { .. })
        ));
        for _ in 0..4 {
            c.settle("m", Nanos(30), false, Nanos(10), 5, 1_000);
        }
        assert_eq!(c.spend(), Nanos(40));
        assert_eq!(c.reserved(), Nanos(0));
        c.try_acquire(&ask(&limits, 30)).unwrap();
    }

    #[test]
    fn rpm_tpm_and_parallel() {
        let limits = Limits {
            rpm_limit: Some(2),
            ..Limits::default()
        };
        let c = Counters::default();
        let r = c.try_acquire(&ask(&limits, 0)).unwrap();
        assert_eq!(r.requests, Some((2, 1)));
        c.try_acquire(&ask(&limits, 0)).unwrap();
        match c.try_acquire(&ask(&limits, 0)) {
            Err(Refusal::Rpm {
                limit: 2,
                retry_after,
            }) => assert_eq!(retry_after, Duration::from_secs(59)),
            other => panic!("{other:?}"),
        }
        // A new minute starts a new window.
        let mut next = ask(&limits, 0);
        next.now_ms = 61_000;
        c.try_acquire(&next).unwrap();

        let tpm = Limits {
            tpm_limit: Some(10),
            ..Limits::default()
        };
        let c = Counters::default();
        c.try_acquire(&ask(&tpm, 0)).unwrap();
        c.settle("m", Nanos(0), false, Nanos(0), 10, 1_000);
        assert!(matches!(
            c.try_acquire(&ask(&tpm, 0)),
            Err(Refusal::Tpm { .. })
        ));

        let par = Limits {
            max_parallel_requests: Some(1),
            ..Limits::default()
        };
        let c = Counters::default();
        c.try_acquire(&ask(&par, 0)).unwrap();
        assert!(matches!(
            c.try_acquire(&ask(&par, 0)),
            Err(Refusal::Parallel { limit: 1 })
        ));
        c.release("m", Nanos(0), false, 1_000);
        c.try_acquire(&ask(&par, 0)).unwrap();
    }

    #[test]
    fn written_moves_pending_to_spend() {
        let c = Counters::with_spend(5);
        c.add_pending(7);
        assert_eq!(c.spend(), Nanos(12));
        c.written(7);
        assert_eq!(c.spend(), Nanos(12));
        c.set_written(20);
        assert_eq!(c.spend(), Nanos(20));
    }
}
