//! Spans and their identifiers, W3C Trace Context (`traceparent`), sampling, exporter settings from the
//! `OTEL_*` environment, and the batching [`Tracer`] that ships spans over OTLP/HTTP.

mod exporter;
mod settings;

use std::borrow::Cow;
use std::fmt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use exporter::Tracer;
pub use settings::{ExporterSettings, Protocol, TraceConfigError};

/// A 16-byte trace id; all zeroes is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; all zeroes is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random, never all-zero id.
    pub fn random() -> Self {
        loop {
            let v = fastrand::u128(..);
            if v != 0 {
                return Self(v.to_be_bytes());
            }
        }
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses exactly 32 lowercase hex digits (any id, including the invalid all-zero one).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        unhex_into(s, &mut out)?;
        Some(Self(out))
    }
}

impl SpanId {
    /// A random, never all-zero id.
    pub fn random() -> Self {
        loop {
            let v = fastrand::u64(..);
            if v != 0 {
                return Self(v.to_be_bytes());
            }
        }
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses exactly 16 lowercase hex digits (any id, including the invalid all-zero one).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 8];
        unhex_into(s, &mut out)?;
        Some(Self(out))
    }
}

macro_rules! hex_fmt {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex(&self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($t))
            }
        }
    };
}
hex_fmt!(TraceId);
hex_fmt!(SpanId);

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Lowercase hex digit value; uppercase is rejected as W3C Trace Context requires.
fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn unhex_into(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
    }
    Some(())
}

/// A parsed `traceparent` header (W3C Trace Context level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` when it must be ignored (the caller then starts a new trace).
    pub fn parse(s: &str) -> Option<Self> {
        // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
        const LEN: usize = 55;
        let b = s.as_bytes();
        if b.len() < LEN {
            return None;
        }
        let version = (lower_hex_digit(b[0])? << 4) | lower_hex_digit(b[1])?;
        if version == 0xff {
            return None;
        }
        if version == 0 && b.len() != LEN {
            return None;
        }
        // A later version may append fields, each introduced by '-'.
        if b.len() > LEN && b[LEN] != b'-' {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::from_hex(s.get(3..35)?)?;
        let parent_id = SpanId::from_hex(s.get(36..52)?)?;
        let flags = (lower_hex_digit(b[53])? << 4) | lower_hex_digit(b[54])?;
        if !trace_id.is_valid() || !parent_id.is_valid() {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 0x01 != 0,
        })
    }

    /// The version-00 header value to send downstream: `00-<trace id>-<span id>-01` (or `-00` when not sampled).
    pub fn format(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> String {
        // Built by hand: this runs once per traced upstream attempt.
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &trace_id.0);
        s.push('-');
        push_hex(&mut s, &span_id.0);
        s.push_str(if sampled { "-01" } else { "-00" });
        s
    }
}

/// What a span describes relative to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
}

/// The final status of a span.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Unset,
    Ok,
    Error(String),
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<u64> for Value {
    /// Saturates at `i64::MAX`.
    fn from(v: u64) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// One finished span, ready for [`Tracer::record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(Cow<'static, str>, Value)>,
    pub status: Status,
}

impl Span {
    /// Adds an attribute (keys should be unique; this does not check).
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        self.attributes.push((key.into(), value.into()));
    }
}

/// Nanoseconds since the Unix epoch (0 before it, saturating far in the future).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Maps monotonic [`Instant`]s to Unix nanoseconds through one anchor reading of both clocks, so span
/// durations are monotonic even if the wall clock jumps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_nanos: u64,
}

impl Clock {
    /// Anchors at the current time.
    pub fn now() -> Self {
        Self::anchored(Instant::now(), unix_nanos(SystemTime::now()))
    }

    /// Anchors `instant` at `unix_nanos`.
    pub fn anchored(instant: Instant, unix_nanos: u64) -> Self {
        Self {
            anchor: instant,
            anchor_unix_nanos: unix_nanos,
        }
    }

    /// Unix nanoseconds for `t` (saturating on either side).
    pub fn unix_nanos(&self, t: Instant) -> u64 {
        if t >= self.anchor {
            let d = u64::try_from((t - self.anchor).as_nanos()).unwrap_or(u64::MAX);
            self.anchor_unix_nanos.saturating_add(d)
        } else {
            let d = u64::try_from((self.anchor - t).as_nanos()).unwrap_or(u64::MAX);
            self.anchor_unix_nanos.saturating_sub(d)
        }
    }
}

/// The sampling decision for new spans (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl Sampler {
    /// From the values of `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (unset or empty means default;
    /// the ratio defaults to 1.0 and must lie in `[0, 1]`).
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Self, TraceConfigError> {
        let name = name.map(str::trim).filter(|s| !s.is_empty());
        let ratio = || -> Result<f64, TraceConfigError> {
            let Some(arg) = arg.map(str::trim).filter(|s| !s.is_empty()) else {
                return Ok(1.0);
            };
            match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(TraceConfigError::Invalid {
                    var: "OTEL_TRACES_SAMPLER_ARG",
                    expected: "a ratio between 0 and 1",
                }),
            }
        };
        let Some(name) = name else {
            return Ok(Self::default());
        };
        Ok(match name.to_ascii_lowercase().as_str() {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::TraceIdRatio(ratio()?),
            "parentbased_always_on" => Self::ParentBasedAlwaysOn,
            "parentbased_always_off" => Self::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentBasedTraceIdRatio(ratio()?),
            _ => {
                return Err(TraceConfigError::UnknownSampler {
                    name: name.to_owned(),
                });
            }
        })
    }

    /// Whether a span in `trace_id` (whose remote parent, if any, is `parent`) is recorded and exported.
    pub fn sample(&self, parent: Option<&TraceParent>, trace_id: &TraceId) -> bool {
        match (self, parent) {
            (Self::AlwaysOn, _) => true,
            (Self::AlwaysOff, _) => false,
            (Self::TraceIdRatio(r), _) => ratio_sample(*r, trace_id),
            (
                Self::ParentBasedAlwaysOn
                | Self::ParentBasedAlwaysOff
                | Self::ParentBasedTraceIdRatio(_),
                Some(p),
            ) => p.sampled,
            (Self::ParentBasedAlwaysOn, None) => true,
            (Self::ParentBasedAlwaysOff, None) => false,
            (Self::ParentBasedTraceIdRatio(r), None) => ratio_sample(*r, trace_id),
        }
    }
}

/// The SDKs' TraceIdRatioBased rule: the trace id's last 8 bytes, big-endian, shifted right by one, must be
/// below `ratio * 2^63`. Deterministic, so every service sampling one trace agrees.
fn ratio_sample(ratio: f64, trace_id: &TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id.0[8..]);
    // `as` saturates; ratio < 1 keeps the product below 2^63.
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid() {
        let p = TraceParent::parse(TP).unwrap();
        assert_eq!(p.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled);
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!p.sampled);
        // Other flag bits are ignored; only bit 0 means sampled.
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        assert!(!p.sampled);
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert!(p.sampled);
    }

    #[test]
    fn traceparent_invalid() {
        let cases = [
            // uppercase hex anywhere
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // wrong lengths
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-abc",
            "",
            // version ff
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // bad separators / characters
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // a future version with trailing data not introduced by '-'
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for c in cases {
            assert_eq!(TraceParent::parse(c), None, "{c:?}");
        }
    }

    #[test]
    fn traceparent_future_version() {
        let p =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever")
                .unwrap();
        assert_eq!(p.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_hex(), "00f067aa0ba902b7");
        assert!(p.sampled);
        let p =
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!p.sampled);
    }

    #[test]
    fn traceparent_format_round_trips() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(TraceParent::format(&t, &s, true), TP);
        assert_eq!(
            TraceParent::format(&t, &s, false),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
        assert_eq!(
            TraceParent::parse(TP),
            Some(TraceParent {
                trace_id: t,
                parent_id: s,
                sampled: true
            })
        );
    }

    #[test]
    fn ids_random_and_hex() {
        for _ in 0..100 {
            let t = TraceId::random();
            let s = SpanId::random();
            assert!(t.is_valid() && s.is_valid());
            assert_eq!(TraceId::from_hex(&t.to_hex()), Some(t));
            assert_eq!(SpanId::from_hex(&s.to_hex()), Some(s));
        }
        assert!(!TraceId::default().is_valid());
        assert!(!SpanId([0; 8]).is_valid());
        assert_eq!(
            SpanId([0, 1, 2, 0xab, 0xcd, 0xef, 0x10, 0xff]).to_hex(),
            "000102abcdef10ff"
        );
        assert_eq!(
            format!("{:?}", SpanId([0xff; 8])),
            "SpanId(ffffffffffffffff)"
        );
    }

    #[test]
    fn value_conversions() {
        assert_eq!(Value::from("a"), Value::Str("a".into()));
        assert_eq!(Value::from(String::from("b")), Value::Str("b".into()));
        assert_eq!(Value::from(-3i64), Value::Int(-3));
        assert_eq!(Value::from(7u64), Value::Int(7));
        assert_eq!(Value::from(u64::MAX), Value::Int(i64::MAX));
        assert_eq!(Value::from(1.5), Value::Float(1.5));
        assert_eq!(Value::from(true), Value::Bool(true));
    }

    #[test]
    fn clocks() {
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
        assert_eq!(
            unix_nanos(UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789)),
            1_700_000_000_123_456_789
        );
        let i = Instant::now();
        let c = Clock::anchored(i, 1_000_000_000);
        assert_eq!(c.unix_nanos(i), 1_000_000_000);
        assert_eq!(
            c.unix_nanos(i + std::time::Duration::from_micros(5)),
            1_000_005_000
        );
        if let Some(before) = i.checked_sub(std::time::Duration::from_nanos(7)) {
            assert_eq!(c.unix_nanos(before), 999_999_993);
        }
    }

    fn tid(low: u64) -> TraceId {
        let mut b = [0u8; 16];
        b[0] = 0xaa;
        b[8..].copy_from_slice(&low.to_be_bytes());
        TraceId(b)
    }

    #[test]
    fn sampler_parent_based_honours_parent() {
        let t = TraceId::random();
        let sampled = TraceParent {
            trace_id: t,
            parent_id: SpanId::random(),
            sampled: true,
        };
        let unsampled = TraceParent {
            sampled: false,
            ..sampled
        };
        for s in [
            Sampler::ParentBasedAlwaysOn,
            Sampler::ParentBasedAlwaysOff,
            Sampler::ParentBasedTraceIdRatio(0.0),
            Sampler::ParentBasedTraceIdRatio(1.0),
        ] {
            assert!(s.sample(Some(&sampled), &t), "{s:?}");
            assert!(!s.sample(Some(&unsampled), &t), "{s:?}");
        }
        assert!(Sampler::ParentBasedAlwaysOn.sample(None, &t));
        assert!(!Sampler::ParentBasedAlwaysOff.sample(None, &t));
        assert!(!Sampler::ParentBasedTraceIdRatio(0.0).sample(None, &t));
        assert!(Sampler::ParentBasedTraceIdRatio(1.0).sample(None, &t));
        // Non-parent-based samplers ignore the parent.
        assert!(Sampler::AlwaysOn.sample(Some(&unsampled), &t));
        assert!(!Sampler::AlwaysOff.sample(Some(&sampled), &t));
        assert!(!Sampler::TraceIdRatio(0.0).sample(Some(&sampled), &t));
        assert!(Sampler::TraceIdRatio(1.0).sample(Some(&unsampled), &t));
    }

    #[test]
    fn sampler_ratio_is_deterministic_on_low_bytes() {
        let half = Sampler::TraceIdRatio(0.5);
        // bound = 2^62; decision on (low >> 1) < 2^62, i.e. low < 2^63.
        assert!(half.sample(None, &tid(0)));
        assert!(half.sample(None, &tid((1 << 63) - 1)));
        assert!(!half.sample(None, &tid(1 << 63)));
        assert!(!half.sample(None, &tid(u64::MAX)));
        // The high bytes do not matter.
        let mut t = tid(1 << 63);
        t.0[..8].copy_from_slice(&[0; 8]);
        assert!(!half.sample(None, &t));
        assert!(Sampler::TraceIdRatio(1.0).sample(None, &tid(u64::MAX)));
        assert!(!Sampler::TraceIdRatio(0.0).sample(None, &tid(0)));
        // Same id, same answer; roughly the ratio over many ids.
        let ids: Vec<TraceId> = (0..10_000).map(|_| TraceId::random()).collect();
        let quarter = Sampler::TraceIdRatio(0.25);
        let first: Vec<bool> = ids.iter().map(|t| quarter.sample(None, t)).collect();
        let second: Vec<bool> = ids.iter().map(|t| quarter.sample(None, t)).collect();
        assert_eq!(first, second);
        let n = first.iter().filter(|b| **b).count();
        assert!((2000..3000).contains(&n), "{n}");
    }

    #[test]
    fn sampler_from_env() {
        assert_eq!(
            Sampler::from_env(None, None).unwrap(),
            Sampler::ParentBasedAlwaysOn
        );
        assert_eq!(
            Sampler::from_env(Some(""), None).unwrap(),
            Sampler::ParentBasedAlwaysOn
        );
        assert_eq!(
            Sampler::from_env(Some("always_on"), None).unwrap(),
            Sampler::AlwaysOn
        );
        assert_eq!(
            Sampler::from_env(Some("always_off"), None).unwrap(),
            Sampler::AlwaysOff
        );
        assert_eq!(
            Sampler::from_env(Some("traceidratio"), Some("0.1")).unwrap(),
            Sampler::TraceIdRatio(0.1)
        );
        assert_eq!(
            Sampler::from_env(Some("traceidratio"), None).unwrap(),
            Sampler::TraceIdRatio(1.0)
        );
        assert_eq!(
            Sampler::from_env(Some("parentbased_always_off"), None).unwrap(),
            Sampler::ParentBasedAlwaysOff
        );
        assert_eq!(
            Sampler::from_env(Some("parentbased_always_on"), Some("ignored")).unwrap(),
            Sampler::ParentBasedAlwaysOn
        );
        assert_eq!(
            Sampler::from_env(Some("parentbased_traceidratio"), Some(" 0 ")).unwrap(),
            Sampler::ParentBasedTraceIdRatio(0.0)
        );
        let e = Sampler::from_env(Some("jaeger_remote"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OTEL_TRACES_SAMPLER: unknown sampler \"jaeger_remote\""
        );
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let e = Sampler::from_env(Some("traceidratio"), Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "OTEL_TRACES_SAMPLER_ARG: expected a ratio between 0 and 1",
                "{bad}"
            );
        }
    }
}
