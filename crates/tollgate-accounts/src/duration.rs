//! `budget_duration` / `duration` strings ("30s", "15m", "1h", "1d", "7d", "30d", "1mo", "1y") and when a
//! budget next resets; RFC 3339 time formatting for API answers.

use tollgate_store::spend::{civil_from_days, days_from_civil};

const SEC: i64 = 1000;
const DAY: i64 = 86_400 * SEC;

/// A parsed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A fixed length in ms (seconds, minutes, hours).
    Fixed(i64),
    /// Whole days: resets at midnight UTC.
    Days(i64),
    /// Calendar months: resets on the 1st, midnight UTC.
    Months(i64),
}

/// Parse LiteLLM's duration syntax: a positive integer and a unit `s`, `m`, `h`, `d`, `w`, `mo`, `y`.
pub fn parse(s: &str) -> Option<Period> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: i64 = s[..digits].parse().ok().filter(|n| *n > 0)?;
    Some(match &s[digits..] {
        "s" => Period::Fixed(n.checked_mul(SEC)?),
        "m" | "min" => Period::Fixed(n.checked_mul(60 * SEC)?),
        "h" => Period::Fixed(n.checked_mul(3600 * SEC)?),
        "d" => Period::Days(n),
        "w" => Period::Days(n.checked_mul(7)?),
        "mo" => Period::Months(n),
        "y" => Period::Months(n.checked_mul(12)?),
        _ => return None,
    })
}

impl Period {
    /// When a budget with this period, counted from `now` (ms), next resets. Day periods end at midnight
    /// UTC (so "1d" budgets reset together at 00:00), month periods on the first of a month.
    pub fn next_after(self, now: i64) -> i64 {
        match self {
            Period::Fixed(ms) => now.saturating_add(ms),
            Period::Days(n) => (now.div_euclid(DAY) + n) * DAY,
            Period::Months(n) => {
                let (y, m, _) = civil_from_days(now.div_euclid(DAY));
                let total = y * 12 + (m as i64 - 1) + n;
                days_from_civil(total.div_euclid(12), (total.rem_euclid(12) + 1) as u32, 1) * DAY
            }
        }
    }

    /// The length counted from `now` (an expiry: `duration` of a key).
    pub fn add_to(self, now: i64) -> i64 {
        match self {
            Period::Fixed(ms) => now.saturating_add(ms),
            Period::Days(n) => now.saturating_add(n.saturating_mul(DAY)),
            Period::Months(_) => {
                let day_of = now.div_euclid(DAY);
                let in_day = now.rem_euclid(DAY);
                let (y, m, d) = civil_from_days(day_of);
                let Period::Months(n) = self else { return now };
                let total = y * 12 + (m as i64 - 1) + n;
                let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
                // Clamp the day to the target month's length.
                let mut dd = d;
                while dd > 28 && civil_from_days(days_from_civil(ny, nm, dd)).1 != nm {
                    dd -= 1;
                }
                days_from_civil(ny, nm, dd) * DAY + in_day
            }
        }
    }
}

/// RFC 3339 UTC with milliseconds: `2026-12-01T20:30:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY));
    let t = ms.rem_euclid(DAY);
    let (h, mi, s, milli) = (t / 3_600_000, t / 60_000 % 60, t / 1000 % 60, t % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parse an RFC 3339 / ISO 8601 date or date-time (`2026-12-01`, `2026-12-01T20:30:00Z`,
/// `2026-12-01 20:30:00.5+00:00`) to ms. Offsets are applied.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * DAY;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    if rest.len() < 5 {
        return None;
    }
    let h: i64 = rest.get(0..2)?.parse().ok()?;
    let mi: i64 = rest.get(3..5)?.parse().ok()?;
    ms += h * 3_600_000 + mi * 60_000;
    let mut tail = &rest[5..];
    if let Some(t) = tail.strip_prefix(':') {
        let sec: i64 = t.get(0..2)?.parse().ok()?;
        ms += sec * 1000;
        tail = &t[2..];
        if let Some(frac) = tail.strip_prefix('.') {
            let n = frac
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(frac.len());
            let digits = &frac[..n];
            let mut milli = 0i64;
            for (i, c) in digits.chars().take(3).enumerate() {
                milli += (c as i64 - '0' as i64) * 10i64.pow(2 - i as u32);
            }
            ms += milli;
            tail = &frac[n..];
        }
    }
    match tail {
        "" | "Z" | "z" => Some(ms),
        off => {
            let sign = match off.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = off.get(1..3)?.parse().ok()?;
            let om: i64 = off.get(off.len() - 2..)?.parse().ok()?;
            Some(ms - sign * (oh * 3_600_000 + om * 60_000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_litellm_durations() {
        assert_eq!(parse("30s"), Some(Period::Fixed(30_000)));
        assert_eq!(parse("1h"), Some(Period::Fixed(3_600_000)));
        assert_eq!(parse("1d"), Some(Period::Days(1)));
        assert_eq!(parse("7d"), Some(Period::Days(7)));
        assert_eq!(parse("30d"), Some(Period::Days(30)));
        assert_eq!(parse("1mo"), Some(Period::Months(1)));
        for bad in ["", "d", "0d", "1x", "-1d", "1.5h"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn resets_align_to_days_and_months() {
        let now = parse_time("2026-12-01T20:30:00Z").unwrap();
        assert_eq!(
            rfc3339(Period::Days(1).next_after(now)),
            "2026-12-02T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Period::Months(1).next_after(now)),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(Period::Fixed(30_000).next_after(now), now + 30_000);
        let jan31 = parse_time("2027-01-31T10:00:00Z").unwrap();
        assert_eq!(
            rfc3339(Period::Months(1).add_to(jan31)),
            "2027-02-28T10:00:00.000Z"
        );
    }

    #[test]
    fn times_round_trip() {
        for s in [
            "2026-12-01T20:30:00.123Z",
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
        ] {
            assert_eq!(rfc3339(parse_time(s).unwrap()), s);
        }
        assert_eq!(
            parse_time("2026-12-01T21:30:00+01:00"),
            parse_time("2026-12-01T20:30:00Z")
        );
        assert_eq!(parse_time("2026-12-01"), parse_time("2026-12-01T00:00:00Z"));
        assert_eq!(parse_time("yesterday"), None);
    }
}
