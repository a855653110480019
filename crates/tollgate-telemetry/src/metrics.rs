//! A small Prometheus registry (counters, gauges, histograms) with bounded cardinality and text exposition 0.0.4.
//!
//! Families are registered once at start-up and handed out as `Arc`s. Updating an existing series takes a
//! read lock and no allocation: the label values are encoded into a thread-local buffer and looked up in a
//! `HashMap<Box<str>, Arc<_>>`; only a label set seen for the first time takes the write lock. Each family
//! holds at most `max_series_per_family` series; later label sets share one overflow series whose label
//! values are all [`OVERFLOW_VALUE`], and every such redirected update is counted in
//! `tollgate_metrics_series_overflow_total{metric="<family>"}`.
//!
//! [`Registry::render`] prints what Python's `prometheus_client` prints (`generate_latest`), so dashboards
//! built for LiteLLM keep working: counters get a `_total` suffix, labels are printed sorted by name (`le`
//! included), values use Python's float `repr` with Go-style exponents for large numbers (`1.5e+06`).
//! Differences: series are printed sorted by label values (not by first use), and no `_created` samples.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// The label value of every label of the overflow series.
pub const OVERFLOW_VALUE: &str = "__overflow__";

/// The registry-wide counter of updates whose new label set was refused (rendered with `_total`).
pub const OVERFLOW_METRIC: &str = "tollgate_metrics_series_overflow";

/// Histogram sums are kept as integer microseconds (`i64`: ~292,000 years of summed observations).
const SUM_UNITS_PER_SECOND: f64 = 1e6;

// ---------------------------------------------------------------------------------------------------------
// Series
// ---------------------------------------------------------------------------------------------------------

/// One counter series (a label set of a [`CounterFamily`]); cache it to skip the lookup.
#[derive(Debug)]
pub struct Counter {
    values: Box<[Box<str>]>,
    value: AtomicU64,
}

impl Counter {
    fn new(values: Box<[Box<str>]>) -> Counter {
        Counter {
            values,
            value: AtomicU64::new(0),
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n` (wrapping at `u64::MAX`, which no real counter reaches).
    pub fn inc_by(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The raw integer count (before any float-counter scale).
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// One gauge series (a label set of a [`GaugeFamily`]): an `f64` stored as bits.
#[derive(Debug)]
pub struct Gauge {
    values: Box<[Box<str>]>,
    bits: AtomicU64,
}

impl Gauge {
    fn new(values: Box<[Box<str>]>) -> Gauge {
        Gauge {
            values,
            bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds `delta` (may be negative).
    pub fn add(&self, delta: f64) {
        let mut cur = self.bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + delta).to_bits();
            match self
                .bits
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

/// One histogram series (a label set of a [`HistogramFamily`]).
#[derive(Debug)]
pub struct Histogram {
    values: Box<[Box<str>]>,
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last slot is the `+Inf` bucket. The count is their sum, so a
    /// scrape can never see `_count` disagree with the `+Inf` bucket.
    buckets: Box<[AtomicU64]>,
    /// Sum of observations in microseconds.
    sum_micros: AtomicI64,
}

impl Histogram {
    fn new(values: Box<[Box<str>]>, bounds: &'static [f64]) -> Histogram {
        Histogram {
            values,
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicI64::new(0),
        }
    }

    /// Records one observation in seconds (NaN is ignored; the sum is kept to the microsecond).
    pub fn observe(&self, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        let idx = self.bounds.partition_point(|b| *b < seconds);
        if let Some(b) = self.buckets.get(idx) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        // `as` saturates for out-of-range values.
        let micros = (seconds * SUM_UNITS_PER_SECOND).round() as i64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Records a duration (exact to the microsecond).
    pub fn observe_duration(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let idx = self.bounds.partition_point(|b| *b < secs);
        if let Some(b) = self.buckets.get(idx) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Sum of observations in seconds.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / SUM_UNITS_PER_SECOND
    }
}

trait Labelled {
    fn label_values(&self) -> &[Box<str>];
}

impl Labelled for Counter {
    fn label_values(&self) -> &[Box<str>] {
        &self.values
    }
}
impl Labelled for Gauge {
    fn label_values(&self) -> &[Box<str>] {
        &self.values
    }
}
impl Labelled for Histogram {
    fn label_values(&self) -> &[Box<str>] {
        &self.values
    }
}

// ---------------------------------------------------------------------------------------------------------
// The series map shared by the three family kinds
// ---------------------------------------------------------------------------------------------------------

thread_local! {
    static KEY_BUF: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Encodes label values unambiguously: each value is preceded by its byte length and `:`.
fn encode_key(buf: &mut String, values: &[&str]) {
    buf.clear();
    for v in values {
        push_usize(buf, v.len());
        buf.push(':');
        buf.push_str(v);
    }
}

fn push_usize(buf: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        buf.push(char::from(*d));
    }
}

/// Runs `f` with the encoded key, in the thread-local buffer when it is available (no allocation).
fn with_key<R>(values: &[&str], f: impl FnOnce(&str) -> R) -> R {
    let mut f = Some(f);
    let done = KEY_BUF.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        encode_key(&mut buf, values);
        f.take().map(|f| f(&buf))
    });
    match (done, f) {
        (Ok(Some(r)), _) => r,
        (_, Some(f)) => {
            let mut buf = String::new();
            encode_key(&mut buf, values);
            f(&buf)
        }
        // `f` was taken, so the closure ran and returned `Some`.
        (_, None) => unreachable!("key closure consumed without a result"),
    }
}

struct SeriesMap<S> {
    /// Name as exposed (`..._total` for counters): the `metric` label of the overflow counter.
    exposed: Box<str>,
    /// HELP text, escaped for the exposition.
    help: Box<str>,
    label_names: &'static [&'static str],
    /// Indexes into `label_names`, sorted by name (the order prometheus_client prints labels in).
    order: Box<[usize]>,
    max_series: usize,
    map: RwLock<HashMap<Box<str>, Arc<S>, foldhash::fast::RandomState>>,
    overflow: Arc<S>,
    overflow_used: AtomicBool,
    overflow_family: Option<Arc<CounterFamily>>,
    overflow_counter: OnceLock<Arc<Counter>>,
}

impl<S: Labelled> SeriesMap<S> {
    fn new(
        exposed: Box<str>,
        help: &str,
        label_names: &'static [&'static str],
        max_series: usize,
        overflow_family: Option<Arc<CounterFamily>>,
        make: impl Fn(Box<[Box<str>]>) -> S,
    ) -> SeriesMap<S> {
        // foldhash, not SipHash: a lookup per family per request hashes keys of a few hundred bytes; it is
        // seeded per process, and the series cap bounds what a flood of new label sets can do.
        let mut map = HashMap::with_hasher(foldhash::fast::RandomState::default());
        if label_names.is_empty() {
            // Like prometheus_client: a family without labels has its one series from the start.
            map.insert(Box::<str>::from(""), Arc::new(make(Box::new([]))));
        }
        let overflow_values = label_names
            .iter()
            .map(|_| Box::<str>::from(OVERFLOW_VALUE))
            .collect();
        let mut order: Vec<usize> = (0..label_names.len()).collect();
        order.sort_by_key(|i| label_names[*i]);
        SeriesMap {
            exposed,
            help: escape_help(help).into(),
            label_names,
            order: order.into(),
            max_series,
            map: RwLock::new(map),
            overflow: Arc::new(make(overflow_values)),
            overflow_used: AtomicBool::new(false),
            overflow_family,
            overflow_counter: OnceLock::new(),
        }
    }

    fn arity_ok(&self, values: &[&str]) -> bool {
        let ok = values.len() == self.label_names.len();
        debug_assert!(
            ok,
            "metric {}: {} label values for labels {:?}",
            self.exposed,
            values.len(),
            self.label_names
        );
        ok
    }

    fn note_overflow(&self) {
        self.overflow_used.store(true, Ordering::Relaxed);
        if let Some(fam) = &self.overflow_family {
            self.overflow_counter
                .get_or_init(|| fam.series(&[&self.exposed]))
                .inc();
        }
    }

    /// Applies `f` to the series for `values`, creating it (or falling back to the overflow series).
    fn with<R>(
        &self,
        values: &[&str],
        make: impl FnOnce(Box<[Box<str>]>) -> S,
        f: impl FnOnce(&Arc<S>) -> R,
    ) -> Option<R> {
        if !self.arity_ok(values) {
            return None;
        }
        let outcome = with_key(values, |key| {
            {
                let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
                if let Some(s) = map.get(key) {
                    return Ok(f(s));
                }
                if map.len() >= self.max_series {
                    return Err(f);
                }
            }
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = map.get(key) {
                return Ok(f(s));
            }
            if map.len() >= self.max_series {
                return Err(f);
            }
            let s = Arc::new(make(values.iter().map(|v| Box::<str>::from(*v)).collect()));
            let r = f(&s);
            map.insert(Box::from(key), s);
            Ok(r)
        });
        Some(match outcome {
            Ok(r) => r,
            Err(f) => {
                self.note_overflow();
                f(&self.overflow)
            }
        })
    }

    /// A handle on the series for `values`; a mismatched label count yields a detached, never-rendered series.
    fn series(&self, values: &[&str], make: impl Fn(Box<[Box<str>]>) -> S) -> Arc<S> {
        match self.with(values, &make, Arc::clone) {
            Some(s) => s,
            None => Arc::new(make(Box::new([]))),
        }
    }

    /// The series to render, sorted by label values (the overflow series included once it was used).
    fn snapshot(&self) -> Vec<Arc<S>> {
        let mut all: Vec<Arc<S>> = {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            map.values().cloned().collect()
        };
        if self.overflow_used.load(Ordering::Relaxed) {
            all.push(Arc::clone(&self.overflow));
        }
        all.sort_by(|a, b| a.label_values().cmp(b.label_values()));
        all
    }

    fn write_header(&self, out: &mut String, kind: &str) {
        out.push_str("# HELP ");
        out.push_str(&self.exposed);
        out.push(' ');
        out.push_str(&self.help);
        out.push_str("\n# TYPE ");
        out.push_str(&self.exposed);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }

    /// Writes `name{labels} ` (labels sorted by name, `le` in its sorted place when given).
    fn write_sample_start(
        &self,
        out: &mut String,
        suffix: &str,
        values: &[Box<str>],
        le: Option<&str>,
    ) {
        out.push_str(&self.exposed);
        out.push_str(suffix);
        let mut le = le;
        if !self.order.is_empty() || le.is_some() {
            out.push('{');
            let mut first = true;
            let mut label = |out: &mut String, name: &str, value: &str| {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(name);
                out.push_str("=\"");
                escape_label_value(out, value);
                out.push('"');
            };
            for &i in self.order.iter() {
                let name = self.label_names[i];
                if let Some(l) = le.filter(|_| name > "le") {
                    label(out, "le", l);
                    le = None;
                }
                label(out, name, values.get(i).map_or("", |v| v));
            }
            if let Some(l) = le {
                label(out, "le", l);
            }
            out.push('}');
        }
        out.push(' ');
    }
}

// ---------------------------------------------------------------------------------------------------------
// Families
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Scale {
    One,
    Mul(f64),
    /// Dividing by an exact integer (1e9 for nano-units) gives the correctly rounded decimal (`1.5`, not
    /// `1.5000000000000002`).
    Div(f64),
}

impl Scale {
    fn new(scale: f64) -> Scale {
        assert!(
            scale.is_finite() && scale > 0.0,
            "counter scale must be finite and positive, got {scale}"
        );
        if scale == 1.0 {
            return Scale::One;
        }
        let inv = (1.0 / scale).round();
        if inv > 1.0 && inv < 9.007_199_254_740_992e15 && ((inv * scale) - 1.0).abs() < 1e-12 {
            Scale::Div(inv)
        } else {
            Scale::Mul(scale)
        }
    }

    fn apply(self, n: u64) -> f64 {
        match self {
            Scale::One => n as f64,
            Scale::Mul(m) => n as f64 * m,
            Scale::Div(d) => n as f64 / d,
        }
    }
}

/// A counter family: integer counts, rendered as `<name>_total` (times the scale for a float counter).
pub struct CounterFamily {
    map: SeriesMap<Counter>,
    scale: Scale,
}

impl CounterFamily {
    /// Adds one to the series for `values` (label values in registration order).
    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    /// Adds `n` to the series for `values`; no allocation when the series exists.
    pub fn inc_by(&self, values: &[&str], n: u64) {
        self.map.with(values, Counter::new, |c| c.inc_by(n));
    }

    /// A handle on the series for `values` (created if missing, or the overflow series past the cap).
    pub fn series(&self, values: &[&str]) -> Arc<Counter> {
        self.map.series(values, Counter::new)
    }

    /// The exposed name (with `_total`).
    pub fn name(&self) -> &str {
        &self.map.exposed
    }

    fn render(&self, out: &mut String) {
        self.map.write_header(out, "counter");
        for c in self.map.snapshot() {
            self.map.write_sample_start(out, "", &c.values, None);
            write_float(out, self.scale.apply(c.get()));
            out.push('\n');
        }
    }
}

/// A gauge family: `f64` values, set or adjusted; scrape-time gauges are refreshed with [`GaugeFamily::clear`]
/// or [`GaugeFamily::retain`] and then set again.
pub struct GaugeFamily {
    map: SeriesMap<Gauge>,
}

impl GaugeFamily {
    /// Sets the series for `values`.
    pub fn set(&self, values: &[&str], v: f64) {
        self.map.with(values, Gauge::new, |g| g.set(v));
    }

    /// Adds `delta` to the series for `values`.
    pub fn add(&self, values: &[&str], delta: f64) {
        self.map.with(values, Gauge::new, |g| g.add(delta));
    }

    /// A handle on the series for `values` (a handle on a series later removed by `retain`/`clear` keeps
    /// working but is no longer rendered).
    pub fn series(&self, values: &[&str]) -> Arc<Gauge> {
        self.map.series(values, Gauge::new)
    }

    /// Keeps only the series whose label values (in registration order) satisfy `keep`.
    pub fn retain(&self, mut keep: impl FnMut(&[&str]) -> bool) {
        let mut test = |g: &Gauge| {
            let values: Vec<&str> = g.values.iter().map(|v| &**v).collect();
            keep(&values)
        };
        {
            let mut map = self.map.map.write().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, g| test(g));
        }
        if self.map.overflow_used.load(Ordering::Relaxed) && !test(&self.map.overflow) {
            self.reset_overflow();
        }
    }

    /// Removes every series.
    pub fn clear(&self) {
        self.map
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.reset_overflow();
    }

    fn reset_overflow(&self) {
        self.map.overflow_used.store(false, Ordering::Relaxed);
        self.map.overflow.set(0.0);
    }

    /// The exposed name.
    pub fn name(&self) -> &str {
        &self.map.exposed
    }

    fn render(&self, out: &mut String) {
        self.map.write_header(out, "gauge");
        for g in self.map.snapshot() {
            self.map.write_sample_start(out, "", &g.values, None);
            write_float(out, g.get());
            out.push('\n');
        }
    }
}

/// A histogram family: cumulative buckets (upper bounds in seconds, `+Inf` implicit), `_count` and `_sum`.
pub struct HistogramFamily {
    map: SeriesMap<Histogram>,
    bounds: &'static [f64],
    /// `le` values as printed, `+Inf` last.
    le: Box<[Box<str>]>,
}

impl HistogramFamily {
    /// Records `seconds` in the series for `values`; no allocation when the series exists.
    pub fn observe(&self, values: &[&str], seconds: f64) {
        let bounds = self.bounds;
        self.map.with(
            values,
            |v| Histogram::new(v, bounds),
            |h| h.observe(seconds),
        );
    }

    /// Records a duration in the series for `values`.
    pub fn observe_duration(&self, values: &[&str], d: Duration) {
        let bounds = self.bounds;
        self.map.with(
            values,
            |v| Histogram::new(v, bounds),
            |h| h.observe_duration(d),
        );
    }

    /// A handle on the series for `values`.
    pub fn series(&self, values: &[&str]) -> Arc<Histogram> {
        let bounds = self.bounds;
        self.map.series(values, |v| Histogram::new(v, bounds))
    }

    /// The exposed name.
    pub fn name(&self) -> &str {
        &self.map.exposed
    }

    fn render(&self, out: &mut String) {
        self.map.write_header(out, "histogram");
        for h in self.map.snapshot() {
            let mut cumulative = 0u64;
            for (bucket, le) in h.buckets.iter().zip(self.le.iter()) {
                cumulative += bucket.load(Ordering::Relaxed);
                self.map
                    .write_sample_start(out, "_bucket", &h.values, Some(le));
                write_float(out, cumulative as f64);
                out.push('\n');
            }
            self.map.write_sample_start(out, "_count", &h.values, None);
            write_float(out, cumulative as f64);
            out.push('\n');
            self.map.write_sample_start(out, "_sum", &h.values, None);
            write_float(out, h.sum());
            out.push('\n');
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------------------

enum Family {
    Counter(Arc<CounterFamily>),
    Gauge(Arc<GaugeFamily>),
    Histogram(Arc<HistogramFamily>),
}

/// The set of metric families rendered at `GET /metrics`.
pub struct Registry {
    max_series: usize,
    families: Mutex<Vec<Family>>,
    names: Mutex<HashSet<Box<str>>>,
    overflow: Arc<CounterFamily>,
}

impl Registry {
    /// An empty registry whose families each hold at most `max_series_per_family` label sets (plus the
    /// overflow series).
    pub fn new(max_series_per_family: usize) -> Registry {
        let overflow = Arc::new(CounterFamily {
            map: SeriesMap::new(
                counter_name(OVERFLOW_METRIC).into(),
                "Metric updates whose new label set was refused because the family reached its series limit",
                &["metric"],
                usize::MAX,
                None,
                Counter::new,
            ),
            scale: Scale::One,
        });
        let names = HashSet::from([Box::<str>::from(overflow.name())]);
        Registry {
            max_series: max_series_per_family,
            families: Mutex::new(Vec::new()),
            names: Mutex::new(names),
            overflow,
        }
    }

    /// Registers a counter (rendered as `<name>_total`; `name` may already end in `_total`).
    ///
    /// # Panics
    /// On an invalid or duplicate name or label name (these are constants: a start-up bug).
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Arc<CounterFamily> {
        self.float_counter(name, help, labels, 1.0)
    }

    /// Registers a counter kept as an integer and rendered as `count * scale` (spend in nano-dollars with
    /// `scale = 1e-9` renders dollars).
    ///
    /// # Panics
    /// As [`Registry::counter`], and on a scale that is not finite and positive.
    pub fn float_counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        scale: f64,
    ) -> Arc<CounterFamily> {
        let exposed = counter_name(name);
        self.check(name, &exposed, labels, false);
        let fam = Arc::new(CounterFamily {
            map: self.series_map(exposed, help, labels, Counter::new),
            scale: Scale::new(scale),
        });
        self.push(Family::Counter(Arc::clone(&fam)));
        fam
    }

    /// Registers a gauge.
    ///
    /// # Panics
    /// As [`Registry::counter`].
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Arc<GaugeFamily> {
        self.check(name, name, labels, false);
        let fam = Arc::new(GaugeFamily {
            map: self.series_map(name.to_owned(), help, labels, Gauge::new),
        });
        self.push(Family::Gauge(Arc::clone(&fam)));
        fam
    }

    /// Registers a histogram; `buckets` are increasing upper bounds in seconds (`+Inf` is implicit, and
    /// dropped if given last).
    ///
    /// # Panics
    /// As [`Registry::counter`], on a label named `le`, and on buckets that are not strictly increasing.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Arc<HistogramFamily> {
        self.check(name, name, labels, true);
        let bounds = match buckets.split_last() {
            Some((last, rest)) if *last == f64::INFINITY => rest,
            _ => buckets,
        };
        assert!(
            bounds.iter().all(|b| !b.is_nan() && b.is_finite()),
            "histogram {name}: bucket bounds must be finite"
        );
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram {name}: bucket bounds must be strictly increasing"
        );
        let mut le: Vec<Box<str>> = bounds
            .iter()
            .map(|b| {
                let mut s = String::new();
                write_float(&mut s, *b);
                s.into_boxed_str()
            })
            .collect();
        le.push("+Inf".into());
        let fam = Arc::new(HistogramFamily {
            map: self.series_map(name.to_owned(), help, labels, |v| Histogram::new(v, bounds)),
            bounds,
            le: le.into(),
        });
        self.push(Family::Histogram(Arc::clone(&fam)));
        fam
    }

    /// The exposition text (format 0.0.4, `text/plain; version=0.0.4; charset=utf-8`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_into(&mut out);
        out
    }

    /// Appends the exposition text to `out`: families in registration order, then the overflow counter.
    pub fn render_into(&self, out: &mut String) {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for f in families.iter() {
            match f {
                Family::Counter(c) => c.render(out),
                Family::Gauge(g) => g.render(out),
                Family::Histogram(h) => h.render(out),
            }
        }
        self.overflow.render(out);
    }

    fn series_map<S: Labelled>(
        &self,
        exposed: String,
        help: &str,
        labels: &'static [&'static str],
        make: impl Fn(Box<[Box<str>]>) -> S,
    ) -> SeriesMap<S> {
        SeriesMap::new(
            exposed.into(),
            help,
            labels,
            self.max_series,
            Some(Arc::clone(&self.overflow)),
            make,
        )
    }

    fn push(&self, f: Family) {
        self.families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(f);
    }

    fn check(&self, name: &str, exposed: &str, labels: &[&str], histogram: bool) {
        assert!(valid_metric_name(name), "invalid metric name {name:?}");
        let mut seen = HashSet::new();
        for l in labels {
            assert!(
                valid_label_name(l),
                "metric {name}: invalid label name {l:?}"
            );
            assert!(
                !l.starts_with("__"),
                "metric {name}: label names starting with __ are reserved ({l:?})"
            );
            assert!(
                !(histogram && *l == "le"),
                "histogram {name}: the label name le is reserved"
            );
            assert!(seen.insert(*l), "metric {name}: duplicate label name {l:?}");
        }
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            names.insert(exposed.into()),
            "metric {exposed} registered twice"
        );
    }
}

fn counter_name(name: &str) -> String {
    if name.ends_with("_total") {
        name.to_owned()
    } else {
        format!("{name}_total")
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------------------------
// Text formatting
// ---------------------------------------------------------------------------------------------------------

/// HELP text escaping of the 0.0.4 format: backslash and newline.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escaping: backslash, double quote, newline.
fn escape_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes `v` as prometheus_client's `floatToGoString` does: `+Inf`/`-Inf`/`NaN`, otherwise Python's `repr`,
/// except positive numbers with 7 or more integer digits, which get a Go-style exponent (`1.234567e+06`).
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let repr = python_repr(v);
    match repr.find('.') {
        Some(dot) if v > 0.0 && dot > 6 => {
            let digits = format!("{}.{}{}", &repr[..1], &repr[1..dot], &repr[dot + 1..]);
            out.push_str(digits.trim_end_matches(['0', '.']));
            // Python writes `e+0` then the exponent, so 10 and more print as `e+010` (kept for fidelity).
            let _ = write!(out, "e+0{}", dot - 1);
        }
        _ => out.push_str(&repr),
    }
}

/// Python's `repr(float)` for a finite value: the shortest round-tripping digits, fixed notation for
/// decimal exponents -5 < e < 16, otherwise `d.ddde±XX`.
fn python_repr(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the same shortest round-tripping digits: `-1.2345e-5`, `3e0`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if !(-5 < exp && exp < 16) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() > int_len {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    }

    /// Values checked against prometheus_client's `floatToGoString` run under CPython 3.
    #[test]
    fn floats_print_like_prometheus_client() {
        let cases: &[(f64, &str)] = &[
            (3.0, "3.0"),
            (0.25, "0.25"),
            (1e-9, "1e-09"),
            (1_234_567.0, "1.234567e+06"),
            (1e16, "1e+16"),
            (123_456.0, "123456.0"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (-1_234_567.0, "-1234567.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e22, "1e+22"),
            (1.5e300, "1.5e+300"),
            (1e10, "1e+010"),
            (1_000_000.5, "1.0000005e+06"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.005, "0.005"),
            (0.00625, "0.00625"),
            (9_999_999_999_999_998.0, "9.999999999999998e+015"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (18_446_744_073_709_551_616.0, "1.8446744073709552e+19"),
            (123_456_789_012_345_678.0, "1.2345678901234568e+17"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(float(*v), *want, "formatting {v:?}");
        }
    }

    fn small_registry() -> Registry {
        let r = Registry::new(100);
        let req = r.counter("app_requests", "Requests served", &["route", "model"]);
        req.inc_by(&["/chat", "gpt-4"], 3);
        req.inc(&["/chat", "claude"]);
        req.inc(&["/chat", "claude"]);
        let spend = r.float_counter("app_spend_metric", "Spend in dollars", &["team"], 1e-9);
        spend.inc_by(&["t1"], 1_500_000_000);
        spend.inc_by(&["t0"], 250_000_000);
        spend.inc_by(&["t0"], 1);
        let already = r.counter("app_errors_total", "Errors", &[]);
        already.inc(&[]);
        let g = r.gauge("app_state", "State with \\ and\nnewline", &["id"]);
        g.set(&["b"], 2.0);
        g.set(&["a"], 0.5);
        g.set(&["gone"], 7.0);
        g.add(&["a"], -1.75);
        g.retain(|labels| labels[0] != "gone");
        let h = r.histogram(
            "app_latency_seconds",
            "Latency",
            &["model"],
            &[0.005, 0.25, 1.0],
        );
        h.observe(&["m"], 0.005);
        h.observe(&["m"], 0.1);
        h.observe(&["m"], 0.1);
        h.observe(&["m"], 0.1);
        h.observe(&["m"], 2.0);
        let esc = r.counter("app_escaped", "", &["v"]);
        esc.inc(&["a\"b\\c\nd"]);
        r.gauge("app_empty", "Nothing yet", &["x"]);
        r
    }

    #[test]
    fn renders_exact_exposition() {
        let text = small_registry().render();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn targeted_lines() {
        let text = small_registry().render();
        let lines: Vec<&str> = text.lines().collect();
        let has = |l: &str| lines.contains(&l);
        // Labels sorted by name, like prometheus_client.
        assert!(has(
            r#"app_requests_total{model="gpt-4",route="/chat"} 3.0"#
        ));
        assert!(has(
            r#"app_requests_total{model="claude",route="/chat"} 2.0"#
        ));
        // Nano-units scaled exactly.
        assert!(has(r#"app_spend_metric_total{team="t1"} 1.5"#));
        assert!(has(r#"app_spend_metric_total{team="t0"} 0.250000001"#));
        // `_total` not doubled.
        assert!(has("# TYPE app_errors_total counter"));
        assert!(has("app_errors_total 1.0"));
        assert!(!text.contains("_total_total"));
        // Gauge add and retain.
        assert!(has(r#"app_state{id="a"} -1.25"#));
        assert!(!text.contains("gone"));
        assert!(has(r"# HELP app_state State with \\ and\nnewline"));
        // Histogram: cumulative, le formatted, count and exact sum.
        assert!(has(
            r#"app_latency_seconds_bucket{le="0.005",model="m"} 1.0"#
        ));
        assert!(has(
            r#"app_latency_seconds_bucket{le="0.25",model="m"} 4.0"#
        ));
        assert!(has(r#"app_latency_seconds_bucket{le="1.0",model="m"} 4.0"#));
        assert!(has(
            r#"app_latency_seconds_bucket{le="+Inf",model="m"} 5.0"#
        ));
        assert!(has(r#"app_latency_seconds_count{model="m"} 5.0"#));
        assert!(has(r#"app_latency_seconds_sum{model="m"} 2.305"#));
        // Escaping.
        assert!(has(r#"app_escaped_total{v="a\"b\\c\nd"} 1.0"#));
        assert!(has("# HELP app_escaped_total "));
        // Empty family: header only.
        let empty = lines
            .iter()
            .position(|l| *l == "# TYPE app_empty gauge")
            .unwrap();
        assert!(lines[empty + 1].starts_with("# HELP tollgate_metrics_series_overflow_total"));
        assert!(text.ends_with("# TYPE tollgate_metrics_series_overflow_total counter\n"));
    }

    #[test]
    fn series_sorted_by_label_values_and_families_in_registration_order() {
        let r = Registry::new(10);
        let b = r.gauge("b_metric", "b", &["k"]);
        let a = r.gauge("a_metric", "a", &["k"]);
        for v in ["z", "m", "a"] {
            b.set(&[v], 1.0);
            a.set(&[v], 1.0);
        }
        let text = r.render();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"b_metric{k="a"} 1.0"#,
                r#"b_metric{k="m"} 1.0"#,
                r#"b_metric{k="z"} 1.0"#,
                r#"a_metric{k="a"} 1.0"#,
                r#"a_metric{k="m"} 1.0"#,
                r#"a_metric{k="z"} 1.0"#,
            ]
        );
    }

    #[test]
    fn label_sets_that_concatenate_alike_stay_distinct() {
        let r = Registry::new(10);
        let c = r.counter("c", "", &["a", "b"]);
        c.inc(&["x:1", "y"]);
        c.inc(&["x", "1:y"]);
        c.inc(&["1:x", ""]);
        c.inc(&["", "1:x"]);
        assert_eq!(c.series(&["x:1", "y"]).get(), 1);
        assert_eq!(c.series(&["x", "1:y"]).get(), 1);
        assert_eq!(c.series(&["1:x", ""]).get(), 1);
        assert_eq!(c.series(&["", "1:x"]).get(), 1);
        assert_eq!(c.map.map.read().unwrap().len(), 4);
    }

    #[test]
    fn cached_handle_and_family_updates_share_the_series() {
        let r = Registry::new(10);
        let c = r.counter("c", "", &["a"]);
        let handle = c.series(&["x"]);
        handle.inc_by(5);
        c.inc_by(&["x"], 2);
        assert_eq!(handle.get(), 7);
        let h = r.histogram("h", "", &[], &[1.0]);
        h.series(&[])
            .observe_duration(Duration::from_micros(1_500_001));
        h.observe(&[], 0.5);
        assert_eq!(h.series(&[]).count(), 2);
        assert_eq!(h.series(&[]).sum(), 2.000001);
        assert!(r.render().contains(
            "h_bucket{le=\"1.0\"} 1.0\nh_bucket{le=\"+Inf\"} 2.0\nh_count 2.0\nh_sum 2.000001\n"
        ));
    }

    #[test]
    fn concurrent_increments_sum_exactly() {
        let r = Registry::new(1000);
        let c = r.counter("c", "", &["worker", "shared"]);
        let h = r.histogram("h", "", &["shared"], &[0.5]);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (c, h) = (&c, &h);
                s.spawn(move || {
                    let me = t.to_string();
                    for i in 0..10_000u64 {
                        c.inc_by(&["all", "yes"], 1);
                        c.inc_by(&[&me, "no"], i % 3);
                        h.observe(&["yes"], if i % 2 == 0 { 0.25 } else { 1.0 });
                    }
                });
            }
        });
        assert_eq!(c.series(&["all", "yes"]).get(), 80_000);
        // Per worker: sum of i % 3 over 0..10_000 = 3333 * 3 + 0 = 9999.
        for t in 0..8 {
            assert_eq!(c.series(&[&t.to_string(), "no"]).get(), 9_999);
        }
        let hs = h.series(&["yes"]);
        assert_eq!(hs.count(), 80_000);
        assert_eq!(hs.sum(), 50_000.0);
        assert!(
            r.render()
                .contains("h_bucket{le=\"0.5\",shared=\"yes\"} 40000.0\n")
        );
    }

    #[test]
    fn overflow_series_after_the_cap() {
        let r = Registry::new(2);
        let c = r.counter("c", "", &["k", "j"]);
        c.inc(&["a", "1"]);
        c.inc(&["b", "1"]);
        c.inc_by(&["c", "1"], 10);
        c.inc_by(&["d", "1"], 5);
        c.inc(&["a", "1"]);
        assert_eq!(c.series(&["a", "1"]).get(), 2);
        // A handle asked for past the cap is the overflow series.
        let of = c.series(&["e", "1"]);
        assert_eq!(of.get(), 15);
        assert_eq!(c.map.map.read().unwrap().len(), 2);
        let h = r.histogram("h", "", &["k"], &[1.0]);
        h.observe(&["a"], 0.5);
        h.observe(&["b"], 0.5);
        h.observe(&["c"], 0.5);
        let text = r.render();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"c_total{j="__overflow__",k="__overflow__"} 15.0"#,
                r#"c_total{j="1",k="a"} 2.0"#,
                r#"c_total{j="1",k="b"} 1.0"#,
                r#"h_bucket{k="__overflow__",le="1.0"} 1.0"#,
                r#"h_bucket{k="__overflow__",le="+Inf"} 1.0"#,
                r#"h_count{k="__overflow__"} 1.0"#,
                r#"h_sum{k="__overflow__"} 0.5"#,
                r#"h_bucket{k="a",le="1.0"} 1.0"#,
                r#"h_bucket{k="a",le="+Inf"} 1.0"#,
                r#"h_count{k="a"} 1.0"#,
                r#"h_sum{k="a"} 0.5"#,
                r#"h_bucket{k="b",le="1.0"} 1.0"#,
                r#"h_bucket{k="b",le="+Inf"} 1.0"#,
                r#"h_count{k="b"} 1.0"#,
                r#"h_sum{k="b"} 0.5"#,
                r#"tollgate_metrics_series_overflow_total{metric="c_total"} 3.0"#,
                r#"tollgate_metrics_series_overflow_total{metric="h"} 1.0"#,
            ]
        );
    }

    #[test]
    fn gauge_clear_readmits_label_sets() {
        let r = Registry::new(1);
        let g = r.gauge("g", "", &["k"]);
        g.set(&["a"], 1.0);
        g.set(&["b"], 2.0);
        assert!(r.render().contains("g{k=\"__overflow__\"} 2.0\n"));
        g.clear();
        g.set(&["b"], 3.0);
        let text = r.render();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"g{k="b"} 3.0"#,
                r#"tollgate_metrics_series_overflow_total{metric="g"} 1.0"#
            ]
        );
        g.set(&["c"], 1.0);
        g.retain(|l| l[0] != OVERFLOW_VALUE);
        assert!(!r.render().contains("g{k=\"__overflow__\"}"));
    }

    #[test]
    fn label_less_families_start_at_zero() {
        let r = Registry::new(0);
        r.counter("c", "", &[]);
        let g = r.gauge("g", "", &[]);
        r.histogram("h", "", &[], &[0.1, f64::INFINITY]);
        g.set(&[], 4.0);
        let text = r.render();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "c_total 0.0",
                "g 4.0",
                r#"h_bucket{le="0.1"} 0.0"#,
                r#"h_bucket{le="+Inf"} 0.0"#,
                "h_count 0.0",
                "h_sum 0.0",
            ]
        );
    }

    #[test]
    fn nan_observations_are_ignored() {
        let r = Registry::new(10);
        let h = r.histogram("h", "", &[], &[1.0]);
        h.observe(&[], f64::NAN);
        h.observe(&[], f64::INFINITY);
        assert_eq!(h.series(&[]).count(), 1);
        assert!(
            r.render()
                .contains("h_bucket{le=\"1.0\"} 0.0\nh_bucket{le=\"+Inf\"} 1.0\n")
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "label values for labels")]
    fn label_count_mismatch_asserts_in_debug() {
        let r = Registry::new(10);
        r.counter("c", "", &["a", "b"]).inc(&["only-one"]);
    }

    #[test]
    #[should_panic(expected = "invalid label name")]
    fn bad_label_name_panics() {
        Registry::new(10).counter("c", "", &["bad-name"]);
    }

    #[test]
    #[should_panic(expected = "invalid metric name")]
    fn bad_metric_name_panics() {
        Registry::new(10).gauge("1abc", "", &[]);
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn duplicate_family_panics() {
        let r = Registry::new(10);
        r.counter("c", "", &[]);
        r.counter("c_total", "", &[]);
    }

    #[test]
    #[should_panic(expected = "le is reserved")]
    fn histogram_le_label_panics() {
        Registry::new(10).histogram("h", "", &["le"], &[1.0]);
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn unsorted_buckets_panic() {
        Registry::new(10).histogram("h", "", &[], &[1.0, 0.5]);
    }
}
