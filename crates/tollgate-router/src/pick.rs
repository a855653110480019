//! Choosing one deployment of a group: availability (cooldown, health, the caller's filter, deployments this request already tried) and the routing strategies.
//!
//! Cost does not grow with the group: simple shuffle draws from precomputed cumulative weights (binary
//! search) and re-draws a few times when it hits an unavailable deployment; the other strategies compare
//! at most [`SAMPLE`] random deployments of a large group ("power of k choices"). Only when those find
//! nothing does a full scan run.

use std::time::Duration;

use tollgate_config::Strategy;

use crate::state::Health;
use crate::{Candidates, Entry, Route, Router, weight_of};

/// Groups up to this size are compared exhaustively; larger ones by a random sample of this size.
pub const SAMPLE: usize = 32;
/// Weighted draws tried before a full scan.
const DRAWS: usize = 8;
/// `latency-based-routing` default `ttl`.
const DEFAULT_LATENCY_TTL_MS: i64 = 3_600_000;

/// How to pick.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickOptions<'a> {
    pub strategy: Strategy,
    /// Unix ms (cooldowns, usage windows and latency ttl are read at this time).
    pub now_ms: i64,
    /// Entries this request already tried (and failed on): picked only when nothing else is available.
    pub avoid: &'a [usize],
}

/// Why no deployment could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Every deployment the caller would accept is cooling down; the first is back after this long.
    CoolingDown { retry_after: Duration },
    /// The caller's filter refused every deployment (e.g. all at their rpm/tpm limit).
    Refused,
}

/// Relaxation steps: first strict, then deployments already tried, then unhealthy ones (if every
/// deployment failed its probe, routing to one still beats refusing the request).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Strict,
    AllowTried,
    AllowUnhealthy,
}

impl<T> Router<T> {
    /// Pick one deployment among `c` that `ok` accepts, by `o.strategy`.
    pub fn pick<'a>(
        &'a self,
        c: Candidates<'a>,
        o: &PickOptions<'_>,
        ok: impl Fn(&Entry<T>) -> bool,
    ) -> Result<Route<'a, T>, Unavailable> {
        for level in [Level::Strict, Level::AllowTried, Level::AllowUnhealthy] {
            if level == Level::AllowTried && o.avoid.is_empty() {
                continue;
            }
            let eligible = |i: usize| self.eligible(i, o, level, &ok);
            if let Some(i) = self.choose(c, o, eligible) {
                return Ok(self.route_to(c, i));
            }
        }
        // Nothing available: say when the first cooling deployment is back, if that is why.
        let back = c
            .idx
            .iter()
            .filter(|&&i| ok(&self.entries[i]))
            .filter_map(|&i| self.entries[i].state.cooling_until(o.now_ms))
            .min();
        Err(match back {
            Some(until) => Unavailable::CoolingDown {
                retry_after: Duration::from_millis((until - o.now_ms).max(1) as u64),
            },
            None => Unavailable::Refused,
        })
    }

    fn eligible(
        &self,
        i: usize,
        o: &PickOptions<'_>,
        level: Level,
        ok: &impl Fn(&Entry<T>) -> bool,
    ) -> bool {
        let e = &self.entries[i];
        if e.state.cooling_until(o.now_ms).is_some() {
            return false;
        }
        if level < Level::AllowUnhealthy && e.state.health() == Health::Unhealthy {
            return false;
        }
        if level < Level::AllowTried && o.avoid.contains(&i) {
            return false;
        }
        ok(e)
    }

    fn choose(
        &self,
        c: Candidates<'_>,
        o: &PickOptions<'_>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match c.idx {
            [] => None,
            [only] => eligible(*only).then_some(*only),
            _ => match o.strategy {
                Strategy::SimpleShuffle => self.shuffle(c, eligible),
                Strategy::LeastBusy => self.best(c, eligible, |e| e.state.busy() as f64, None),
                Strategy::LatencyBased {
                    ttl,
                    lowest_latency_buffer,
                } => {
                    let ttl_ms = i64::try_from(ttl.as_millis())
                        .ok()
                        .filter(|t| *t > 0)
                        .unwrap_or(DEFAULT_LATENCY_TTL_MS);
                    // A deployment without recent samples counts as fastest, so it gets tried (as LiteLLM).
                    self.best(
                        c,
                        eligible,
                        |e| e.state.latency_ms(o.now_ms, ttl_ms).unwrap_or(0.0),
                        Some(lowest_latency_buffer),
                    )
                }
                Strategy::UsageBased => self.best(
                    c,
                    eligible,
                    |e| {
                        let (requests, tokens) = e.state.usage(o.now_ms);
                        // Tokens first; requests break ties among equal token counts.
                        tokens as f64 + requests as f64 * 1e-6
                    },
                    None,
                ),
                Strategy::CostBased => {
                    self.best(c, eligible, |e| e.cost_per_token.unwrap_or(f64::MAX), None)
                }
            },
        }
    }

    /// Weighted random draw (simple shuffle).
    fn shuffle(&self, c: Candidates<'_>, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let total = c.cumulative.last().copied().unwrap_or(0.0);
        for _ in 0..DRAWS {
            let pos = if total > 0.0 {
                let r = fastrand::f64() * total;
                c.cumulative
                    .partition_point(|&w| w <= r)
                    .min(c.idx.len() - 1)
            } else {
                fastrand::usize(..c.idx.len())
            };
            let i = c.idx[pos];
            if eligible(i) {
                return Some(i);
            }
        }
        let allowed: Vec<usize> = c.idx.iter().copied().filter(|&i| eligible(i)).collect();
        let weight = |i: usize| weight_of(&self.entries[i].deployment);
        let total: f64 = allowed.iter().map(|&i| weight(i)).sum();
        if allowed.is_empty() {
            return None;
        }
        if total <= 0.0 {
            return Some(allowed[fastrand::usize(..allowed.len())]);
        }
        let mut r = fastrand::f64() * total;
        for &i in &allowed {
            r -= weight(i);
            if r < 0.0 {
                return Some(i);
            }
        }
        allowed.last().copied()
    }

    /// The eligible deployment with the lowest `score` (random among ties, or among those within
    /// `(1 + buffer) x` the lowest). Large groups: a random sample first, a full scan if it finds nothing.
    fn best(
        &self,
        c: Candidates<'_>,
        eligible: impl Fn(usize) -> bool,
        score: impl Fn(&Entry<T>) -> f64,
        buffer: Option<f64>,
    ) -> Option<usize> {
        let n = c.idx.len();
        if n > SAMPLE {
            let sample: Vec<usize> = (0..SAMPLE).map(|_| c.idx[fastrand::usize(..n)]).collect();
            if let Some(i) = self.lowest(sample.iter().copied(), &eligible, &score, buffer) {
                return Some(i);
            }
        }
        self.lowest(c.idx.iter().copied(), &eligible, &score, buffer)
    }

    fn lowest(
        &self,
        idx: impl Iterator<Item = usize> + Clone,
        eligible: &impl Fn(usize) -> bool,
        score: &impl Fn(&Entry<T>) -> f64,
        buffer: Option<f64>,
    ) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        let mut ties = 0u32;
        for i in idx.clone().filter(|&i| eligible(i)) {
            let s = score(&self.entries[i]);
            match best {
                Some((_, b)) if s > b => {}
                Some((_, b)) if s == b => {
                    // Reservoir sampling: each of the tied deployments is kept with equal chance.
                    ties += 1;
                    if fastrand::u32(..ties) == 0 {
                        best = Some((i, s));
                    }
                }
                _ => {
                    best = Some((i, s));
                    ties = 1;
                }
            }
        }
        let (i, low) = best?;
        match buffer {
            Some(b) if b > 0.0 => {
                let within: Vec<usize> = idx
                    .filter(|&i| eligible(i) && score(&self.entries[i]) <= low * (1.0 + b))
                    .collect();
                if within.is_empty() {
                    Some(i)
                } else {
                    Some(within[fastrand::usize(..within.len())])
                }
            }
            _ => Some(i),
        }
    }
}
