//! Exact latency percentiles from a sorted vector of nanosecond samples.

use serde_json::{Value, json};

/// Percentile summary of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn ns_to_ms(ns: u64) -> f64 {
    // Rounded to the microsecond: finer digits are noise at this level.
    (ns as f64 / 1e3).round() / 1e3
}

/// Nearest-rank percentile of an ascending slice (`q` in 0..=1).
fn rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted[idx]
}

impl Summary {
    /// Sorts `samples` in place and summarises them; `None` when empty.
    pub fn from_samples(samples: &mut [u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&v| u128::from(v)).sum();
        let mean_ns = (sum / samples.len() as u128) as u64;
        Some(Self {
            count: samples.len(),
            min: ns_to_ms(samples[0]),
            mean: ns_to_ms(mean_ns),
            p50: ns_to_ms(rank(samples, 0.50)),
            p90: ns_to_ms(rank(samples, 0.90)),
            p99: ns_to_ms(rank(samples, 0.99)),
            p999: ns_to_ms(rank(samples, 0.999)),
            max: ns_to_ms(samples[samples.len() - 1]),
        })
    }

    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "min": self.min,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.max,
        })
    }
}

/// JSON for an optional summary (`null` when there were no samples).
pub fn summary_json(samples: &mut [u64]) -> Value {
    Summary::from_samples(samples).map_or(Value::Null, Summary::to_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().map(|i| i * 1_000_000).collect();
        let s = Summary::from_samples(&mut v).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mean, 50.5);
    }

    #[test]
    fn empty_is_none() {
        assert!(Summary::from_samples(&mut []).is_none());
        assert_eq!(summary_json(&mut []), Value::Null);
    }

    #[test]
    fn single_sample() {
        let s = Summary::from_samples(&mut [1_500]).unwrap();
        assert_eq!(s.p50, 0.002);
        assert_eq!(s.p999, 0.002);
    }
}
