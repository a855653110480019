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
    /// Canonical `name=value` list of the header knobs (sorted), kept only
    /// when `fail_first` needs a counter key.
    header_canon: Vec<(String, String)>,
}

impl Knobs {
    /// Collects the knobs of a request: first the model suffix, then headers.
    pub(crate) fn collect(headers: &HeaderMap, model: Option<&str>) -> Result<Knobs, String> {
        let mut knobs = Knobs::default();
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
        Ok(knobs)
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

    /// The HTTP status this request should fail with, before `fail_first`
    /// is taken into account: `status` (if it is an error status), or 429
    /// when only `retry_after` is set, or 500 when only `fail_first` is set.
    pub(crate) fn failure_status(&self) -> Option<u16> {
        match (self.status, self.retry_after, self.fail_first) {
            (Some(s), _, _) if s >= 400 => Some(s),
            (Some(_), _, Some(_)) => Some(500),
            (Some(_), _, None) => None,
            (None, Some(_), _) => Some(429),
            (None, None, Some(_)) => Some(500),
            (None, None, None) => None,
        }
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
];

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
        let k = Knobs::collect(&h, Some("gpt-4o@latency_ms=20,status=503,echo")).unwrap();
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
        let k = Knobs::collect(&HeaderMap::new(), Some("claude-3@20240229")).unwrap();
        assert_eq!(k.failure_status(), None);
    }

    #[test]
    fn bad_knobs_are_errors() {
        assert!(Knobs::collect(&HeaderMap::new(), Some("m@latency_ms=abc")).is_err());
        assert!(Knobs::collect(&HeaderMap::new(), Some("m@nope=1")).is_err());
        assert!(Knobs::collect(&HeaderMap::new(), Some("m@dims=0")).is_err());
    }

    #[test]
    fn failure_defaults() {
        let k = Knobs::collect(&HeaderMap::new(), Some("m@retry_after=3")).unwrap();
        assert_eq!(k.failure_status(), Some(429));
        let k = Knobs::collect(&HeaderMap::new(), Some("m@fail_first=2")).unwrap();
        assert_eq!(k.failure_status(), Some(500));
        let k = Knobs::collect(&HeaderMap::new(), Some("m@fail_first=2,status=503")).unwrap();
        assert_eq!(k.failure_status(), Some(503));
    }
}
