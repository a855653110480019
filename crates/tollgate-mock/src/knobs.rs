//! Per-request fault knobs, read from `x-mock-<knob>` headers and from a `model@k=v,..` suffix.

use std::time::Duration;

use http::HeaderMap;

use crate::body::Pacing;

/// Header prefix of knob headers.
const HEADER_PREFIX: &str = "x-mock-";

/// Upper bound on `chunks`, to keep a typo from allocating millions of events.
const MAX_CHUNKS: usize = 10_000;
/// Upper bound on `dims`.
const MAX_DIMS: usize = 16_384;

/// A finish reason forced with the `finish` knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    ContentFilter,
    Length,
    Stop,
}

/// How an `echo_key` failure shows the credential the request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EchoKey {
    /// In the message of the OpenAI-shaped JSON error.
    Json,
    /// In a `text/plain` body (an upstream that does not answer in its API's error shape).
    Text,
}

/// The knobs one request carries. Header knobs override model-suffix knobs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Knobs {
    pub(crate) latency: Option<Duration>,
    pub(crate) ttfb: Option<Duration>,
    pub(crate) chunks: Option<usize>,
    pub(crate) chunk_interval: Option<Duration>,
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) reset_after_chunks: Option<usize>,
    pub(crate) hang: bool,
    pub(crate) content: Option<String>,
    pub(crate) echo: bool,
    /// `Some("")` means "the first tool"; otherwise the function name to call.
    pub(crate) tool_call: Option<String>,
    pub(crate) dims: Option<usize>,
    pub(crate) fail_first: Option<u64>,
    /// Probability in [0, 1] that a request fails.
    pub(crate) fail_rate: Option<f64>,
    /// The OpenAI error `code` of a failure answer.
    pub(crate) error_code: Option<String>,
    /// Prompt tokens reported as served from the provider's cache (part of the prompt tokens).
    pub(crate) cached_tokens: Option<u64>,
    /// Completion tokens reported as reasoning (added to the completion tokens); providers that show
    /// thinking also answer with a thinking block when the request enables it.
    pub(crate) reasoning_tokens: Option<u64>,
    /// Forces the finish reason: `content_filter` (each provider's safety stop), `length` or `stop`.
    pub(crate) finish: Option<Finish>,
    /// Fail (401 unless `status` says otherwise) with a message that repeats the presented credential, as
    /// providers do ("Incorrect API key provided: sk-..."): for testing that a gateway does not relay it.
    pub(crate) echo_key: Option<EchoKey>,
    /// The credential the request presented (Bearer token, `api-key`, `x-api-key` or `x-goog-api-key`),
    /// kept only with `echo_key`.
    pub(crate) presented_key: Option<String>,
    /// Canonical `name=value` list of the header knobs (sorted), kept only
    /// when `fail_first` needs a counter key.
    header_canon: Vec<(String, String)>,
}

impl Knobs {
    /// Collects the knobs of a request on top of `base` (the server-wide
    /// defaults): first the model suffix, then headers.
    pub(crate) fn collect(
        base: Option<&Knobs>,
        headers: &HeaderMap,
        model: Option<&str>,
    ) -> Result<Knobs, String> {
        let mut knobs = base.cloned().unwrap_or_default();
        if let Some(suffix) = model.and_then(|m| split_model(m).1) {
            for pair in suffix.split(',').filter(|p| !p.trim().is_empty()) {
                let (name, value) = pair.split_once('=').unwrap_or((pair, "1"));
                knobs.set(name.trim(), value.trim())?;
            }
        }
        for (name, value) in headers {
            let Some(knob) = name.as_str().strip_prefix(HEADER_PREFIX) else {
                continue;
            };
            let knob = knob.replace('-', "_");
            let value = String::from_utf8_lossy(value.as_bytes());
            knobs.set(&knob, value.trim())?;
            knobs.header_canon.push((knob, value.into_owned()));
        }
        if knobs.echo_key.is_some() {
            knobs.presented_key = presented_key(headers);
        }
        knobs.check()?;
        Ok(knobs)
    }

    /// Builds a knob set from `name=value` pairs (the server-wide defaults).
    /// Names may use `-` for `_`.
    pub(crate) fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Knobs, String> {
        let mut knobs = Knobs::default();
        for (name, value) in pairs {
            knobs.set(&name.trim().replace('-', "_"), value.trim())?;
        }
        knobs.check()?;
        Ok(knobs)
    }

    /// Checks the knobs that only make sense together.
    fn check(&self) -> Result<(), String> {
        if let Some(code) = self.error_code.as_deref()
            && special_error(code).is_none()
            && self.status.is_none()
            && self.retry_after.is_none()
        {
            return Err(format!(
                "mock knob `error_code` = {code:?} needs a `status` knob (only \
                 context_length_exceeded, content_policy_violation and content_filter have a default)"
            ));
        }
        Ok(())
    }

    /// The key under which `fail_first` counts requests: the model string
    /// plus the header knobs, so identical requests share one counter.
    pub(crate) fn fail_key(&self, model: Option<&str>) -> String {
        let mut canon = self.header_canon.clone();
        canon.sort();
        let mut key = model.unwrap_or_default().to_owned();
        for (k, v) in canon {
            key.push('\n');
            key.push_str(&k);
            key.push('=');
            key.push_str(&v);
        }
        key
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let invalid = || format!("invalid value {value:?} for mock knob `{name}`");
        let int = || value.parse::<u64>().map_err(|_| invalid());
        let ms = || int().map(Duration::from_millis);
        let flag = || match value {
            "1" | "true" | "yes" | "on" | "" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(invalid()),
        };
        let count = |max: usize| {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(invalid)
        };
        match name {
            "latency_ms" => self.latency = Some(ms()?),
            "ttfb_ms" => self.ttfb = Some(ms()?),
            "chunks" => self.chunks = Some(count(MAX_CHUNKS)?.max(1)),
            "chunk_interval_ms" => self.chunk_interval = Some(ms()?),
            "status" => {
                let s = value
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..=599).contains(s));
                self.status = Some(s.ok_or_else(invalid)?);
            }
            "retry_after" => self.retry_after = Some(int()?),
            "reset_after_chunks" => self.reset_after_chunks = Some(count(usize::MAX)?),
            "hang" => self.hang = flag()?,
            "content" => self.content = Some(value.to_owned()),
            "echo" => self.echo = flag()?,
            "tool_call" => {
                self.tool_call = match value {
                    "0" | "false" | "no" | "off" => None,
                    "1" | "true" | "yes" | "on" | "" => Some(String::new()),
                    name => Some(name.to_owned()),
                }
            }
            "dims" => {
                let d = count(MAX_DIMS)?;
                if d == 0 {
                    return Err(invalid());
                }
                self.dims = Some(d);
            }
            "fail_first" => self.fail_first = Some(int()?),
            "fail_rate" => {
                let p = value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p));
                self.fail_rate = Some(p.ok_or_else(invalid)?);
            }
            "cached_tokens" => self.cached_tokens = Some(int()?),
            "reasoning_tokens" => self.reasoning_tokens = Some(int()?),
            "finish" => {
                self.finish = Some(match value {
                    "content_filter" | "safety" => Finish::ContentFilter,
                    "length" => Finish::Length,
                    "stop" => Finish::Stop,
                    _ => return Err(invalid()),
                })
            }
            "error_code" => {
                self.error_code = match value {
                    "" | "0" | "none" | "null" => None,
                    code => Some(code.to_owned()),
                }
            }
            "echo_key" => {
                self.echo_key = match value {
                    "0" | "false" | "no" | "off" => None,
                    "1" | "true" | "yes" | "on" | "" | "json" => Some(EchoKey::Json),
                    "text" => Some(EchoKey::Text),
                    _ => return Err(invalid()),
                }
            }
            _ => return Err(format!("unknown mock knob `{name}`")),
        }
        Ok(())
    }

    /// Stream pacing from `ttfb_ms`, `chunk_interval_ms` and `reset_after_chunks`.
    pub(crate) fn pacing(&self) -> Pacing {
        Pacing {
            ttfb: self.ttfb.unwrap_or_default(),
            interval: self.chunk_interval.unwrap_or_default(),
            reset_after: self.reset_after_chunks,
        }
    }

    /// The HTTP status this request fails with if it fails: `status` (if
    /// it is an error status), else the default of a special `error_code`
    /// (400), else 429 when `retry_after` is set, else 500 when a gate
    /// (`fail_first` / `fail_rate`) is set. `None` when nothing asks for a
    /// failure (or `status` is a success status without a gate).
    pub(crate) fn failure_status(&self) -> Option<u16> {
        let gated = self.fail_first.is_some() || self.fail_rate.is_some();
        if !gated && self.status.is_some_and(|s| s < 400) {
            return None;
        }
        self.status
            .filter(|s| *s >= 400)
            .or_else(|| {
                self.error_code
                    .as_deref()
                    .and_then(special_error)
                    .map(|e| e.status)
            })
            .or(self.retry_after.map(|_| 429))
            .or(self.echo_key.map(|_| 401))
            .or(gated.then_some(500))
    }

    /// Whether this request fails, and with which status. Without a gate,
    /// [`Knobs::failure_status`] alone decides. With `fail_first` the
    /// request fails while `first_n(n)` (which counts it) is true; with
    /// `fail_rate` p it fails when `draw()` (uniform in [0, 1)) is below p.
    /// With both, either makes it fail.
    pub(crate) fn decide(
        &self,
        first_n: impl FnOnce(u64) -> bool,
        draw: impl FnOnce() -> f64,
    ) -> Option<u16> {
        let status = self.failure_status()?;
        let mut fail = match self.fail_first {
            Some(n) => first_n(n),
            None => self.fail_rate.is_none(),
        };
        if !fail && let Some(p) = self.fail_rate {
            fail = draw() < p;
        }
        fail.then_some(status)
    }
}

/// What a special `error_code` value implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpecialError {
    /// Status used when no `status` knob is given.
    pub(crate) status: u16,
}

/// The `error_code` values that carry a default status (and their own message).
pub(crate) fn special_error(code: &str) -> Option<SpecialError> {
    match code {
        "context_length_exceeded" | "content_policy_violation" | "content_filter" => {
            Some(SpecialError { status: 400 })
        }
        _ => None,
    }
}

/// Every knob name.
const KNOWN: &[&str] = &[
    "latency_ms",
    "ttfb_ms",
    "chunks",
    "chunk_interval_ms",
    "status",
    "retry_after",
    "reset_after_chunks",
    "hang",
    "content",
    "echo",
    "tool_call",
    "dims",
    "fail_first",
    "fail_rate",
    "error_code",
    "echo_key",
];

/// The credential a request presents: the Bearer token, else `api-key`, `x-api-key` or `x-goog-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| match v.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => v[7..].trim(),
            _ => v.trim(),
        });
    bearer
        .or_else(|| {
            ["api-key", "x-api-key", "x-goog-api-key"]
                .iter()
                .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
                .map(str::trim)
        })
        .map(str::to_owned)
}

/// Splits `model@knobs` into the base model and the knob suffix (after the
/// last `@`). The suffix counts only when it contains `=` or consists of
/// bare knob names, so `claude-3@20240229` stays a plain model name.
pub(crate) fn split_model(model: &str) -> (&str, Option<&str>) {
    match model.rsplit_once('@') {
        Some((base, suffix))
            if suffix.contains('=') || suffix.split(',').all(|k| KNOWN.contains(&k.trim())) =>
        {
            (base, Some(suffix))
        }
        _ => (model, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn model_suffix_and_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-mock-status", HeaderValue::from_static("429"));
        h.insert("x-mock-chunk-interval-ms", HeaderValue::from_static("7"));
        let k = Knobs::collect(None, &h, Some("gpt-4o@latency_ms=20,status=503,echo")).unwrap();
        assert_eq!(k.latency, Some(Duration::from_millis(20)));
        assert_eq!(k.status, Some(429));
        assert_eq!(k.chunk_interval, Some(Duration::from_millis(7)));
        assert!(k.echo);
        assert_eq!(k.failure_status(), Some(429));
    }

    #[test]
    fn plain_at_sign_is_not_knobs() {
        assert_eq!(
            split_model("claude-3@20240229"),
            ("claude-3@20240229", None)
        );
        assert_eq!(split_model("m@a=1"), ("m", Some("a=1")));
        assert_eq!(split_model("m@echo,hang"), ("m", Some("echo,hang")));
        assert_eq!(split_model("a@b@echo"), ("a@b", Some("echo")));
        let k = Knobs::collect(None, &HeaderMap::new(), Some("claude-3@20240229")).unwrap();
        assert_eq!(k.failure_status(), None);
    }

    #[test]
    fn bad_knobs_are_errors() {
        assert!(Knobs::collect(None, &HeaderMap::new(), Some("m@latency_ms=abc")).is_err());
        assert!(Knobs::collect(None, &HeaderMap::new(), Some("m@nope=1")).is_err());
        assert!(Knobs::collect(None, &HeaderMap::new(), Some("m@dims=0")).is_err());
    }

    #[test]
    fn failure_defaults() {
        let k = Knobs::collect(None, &HeaderMap::new(), Some("m@retry_after=3")).unwrap();
        assert_eq!(k.failure_status(), Some(429));
        let k = Knobs::collect(None, &HeaderMap::new(), Some("m@fail_first=2")).unwrap();
        assert_eq!(k.failure_status(), Some(500));
        let k = Knobs::collect(None, &HeaderMap::new(), Some("m@fail_first=2,status=503")).unwrap();
        assert_eq!(k.failure_status(), Some(503));
    }

    fn knobs(model: &str) -> Knobs {
        Knobs::collect(None, &HeaderMap::new(), Some(model)).unwrap()
    }

    /// Runs `decide` `n` times with a seeded RNG and no `fail_first` hit;
    /// returns the statuses of the failures.
    fn failures(k: &Knobs, n: usize, seed: u64) -> Vec<u16> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .filter_map(|_| k.decide(|_| false, || rng.f64()))
            .collect()
    }

    #[test]
    fn fail_rate_fails_about_that_fraction() {
        let k = knobs("m@fail_rate=0.2");
        for seed in [1, 2, 3, 42] {
            let fails = failures(&k, 2000, seed);
            assert!(
                (300..=500).contains(&fails.len()),
                "seed {seed}: {} failures of 2000 at 0.2",
                fails.len()
            );
            assert!(fails.iter().all(|s| *s == 500));
        }
        // The real RNG the server uses, too.
        let real = (0..2000)
            .filter(|_| k.decide(|_| false, fastrand::f64).is_some())
            .count();
        assert!(
            (300..=500).contains(&real),
            "{real} failures of 2000 at 0.2"
        );
    }

    #[test]
    fn fail_rate_bounds_and_statuses() {
        assert!(failures(&knobs("m@fail_rate=0"), 500, 7).is_empty());
        assert_eq!(failures(&knobs("m@fail_rate=1"), 500, 7).len(), 500);
        // A bare `fail_rate` means 1.
        assert_eq!(failures(&knobs("m@fail_rate"), 10, 7).len(), 10);
        // `status` is the failure status, not a forced failure.
        let k = knobs("m@fail_rate=0,status=503");
        assert_eq!(k.failure_status(), Some(503));
        assert!(failures(&k, 200, 7).is_empty());
        assert_eq!(failures(&knobs("m@fail_rate=1,status=503"), 3, 7), [503; 3]);
        assert_eq!(
            failures(&knobs("m@fail_rate=1,retry_after=2"), 3, 7),
            [429; 3]
        );
        // With fail_first, a fail_first hit fails even at rate 0.
        let k = knobs("m@fail_rate=0,fail_first=1");
        assert_eq!(k.decide(|_| true, || 0.5), Some(500));
        assert_eq!(k.decide(|_| false, || 0.0), None);
        for bad in ["-0.1", "1.5", "NaN", "lots", "inf"] {
            let model = format!("m@fail_rate={bad}");
            assert!(
                Knobs::collect(None, &HeaderMap::new(), Some(&model)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_code_defaults_and_validation() {
        for code in [
            "context_length_exceeded",
            "content_policy_violation",
            "content_filter",
        ] {
            let k = knobs(&format!("m@error_code={code}"));
            assert_eq!(k.failure_status(), Some(400), "{code}");
            assert_eq!(k.decide(|_| false, || 0.0), Some(400), "{code} forces");
            let k = knobs(&format!("m@error_code={code},status=413"));
            assert_eq!(k.failure_status(), Some(413), "{code}: status wins");
        }
        // Other codes need a status (or retry_after, which implies 429).
        let err = Knobs::collect(
            None,
            &HeaderMap::new(),
            Some("m@error_code=insufficient_quota"),
        )
        .unwrap_err();
        assert!(err.contains("status"), "{err}");
        let k = knobs("m@error_code=insufficient_quota,status=429");
        assert_eq!(k.failure_status(), Some(429));
        assert_eq!(
            knobs("m@error_code=x,retry_after=1").failure_status(),
            Some(429)
        );
        // With a gate the code is only attached to the failures.
        let k = knobs("m@error_code=content_filter,fail_rate=0");
        assert_eq!(k.failure_status(), Some(400));
        assert_eq!(k.decide(|_| false, || 0.3), None);
    }

    #[test]
    fn echo_key_fails_with_the_presented_key() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-presented-1"),
        );
        let k = Knobs::collect(None, &h, Some("m@echo_key")).unwrap();
        assert_eq!(k.echo_key, Some(EchoKey::Json));
        assert_eq!(k.presented_key.as_deref(), Some("sk-presented-1"));
        assert_eq!(k.failure_status(), Some(401));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("sk-ant-2"));
        let k = Knobs::collect(None, &h, Some("m@echo_key=text,status=500")).unwrap();
        assert_eq!(k.echo_key, Some(EchoKey::Text));
        assert_eq!(k.presented_key.as_deref(), Some("sk-ant-2"));
        assert_eq!(k.failure_status(), Some(500));
        // Without the knob nothing is kept.
        let k = Knobs::collect(None, &h, Some("m")).unwrap();
        assert_eq!(k.presented_key, None);
        assert_eq!(k.failure_status(), None);
        assert!(Knobs::collect(None, &h, Some("m@echo_key=loud")).is_err());
    }

    #[test]
    fn base_knobs_are_overridden_by_the_request() {
        let base = Knobs::from_pairs([("status", "503"), ("latency-ms", "5")]).unwrap();
        let k = Knobs::collect(Some(&base), &HeaderMap::new(), Some("m")).unwrap();
        assert_eq!(k.failure_status(), Some(503));
        assert_eq!(k.latency, Some(Duration::from_millis(5)));
        let k = Knobs::collect(Some(&base), &HeaderMap::new(), Some("m@status=429")).unwrap();
        assert_eq!(k.failure_status(), Some(429));
        let mut h = HeaderMap::new();
        h.insert("x-mock-status", HeaderValue::from_static("200"));
        let k = Knobs::collect(Some(&base), &h, Some("m@status=429")).unwrap();
        assert_eq!(
            k.failure_status(),
            None,
            "a success status turns the default off"
        );
        assert!(Knobs::from_pairs([("nope", "1")]).is_err());
        assert!(Knobs::from_pairs([("error_code", "weird")]).is_err());
    }
}
