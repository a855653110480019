//! [`ExporterSettings`]: the trace exporter's configuration from the standard `OTEL_*` variables (and LiteLLM's).

use std::fmt;
use std::time::Duration;

use super::{Sampler, Value};

/// Why the trace configuration was rejected. Messages name the variable, never a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceConfigError {
    #[error("{var}: expected {expected}")]
    Invalid {
        var: &'static str,
        expected: &'static str,
    },
    #[error(
        "{var}: malformed list; expected comma-separated key=value pairs with percent-encoded values"
    )]
    MalformedList { var: &'static str },
    #[error("{var}: grpc is not supported; use http/protobuf")]
    Grpc { var: &'static str },
    #[error("{var}: unsupported value {value:?}; use http/protobuf or http/json")]
    Unsupported { var: &'static str, value: String },
    #[error("OTEL_TRACES_SAMPLER: unknown sampler {name:?}")]
    UnknownSampler { name: String },
}

/// The OTLP/HTTP body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    HttpProtobuf,
    HttpJson,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "application/x-protobuf",
            Self::HttpJson => "application/json",
        }
    }
}

/// Everything the [`super::Tracer`] needs. `Debug` redacts header values.
#[derive(Clone, PartialEq)]
pub struct ExporterSettings {
    /// The full URL spans are POSTed to.
    pub endpoint: String,
    /// Extra request headers; values may be secrets.
    pub headers: Vec<(String, String)>,
    pub protocol: Protocol,
    /// One POST, connect to last byte.
    pub timeout: Duration,
    pub service_name: String,
    /// Resource attributes other than `service.name`, in the order given.
    pub resource_attributes: Vec<(String, Value)>,
    pub schedule_delay: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    /// Bound on the final flush at shutdown.
    pub export_timeout: Duration,
    pub sampler: Sampler,
}

pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// A base OTLP endpoint as the traces URL, the way LiteLLM normalises `OTEL_EXPORTER_OTLP_ENDPOINT` and
/// `OTEL_ENDPOINT`: trailing `/` removed, then `/v1/traces` appended unless it is already there (`/traces`
/// after a bare `/v1`).
pub fn traces_url(base: &str) -> String {
    let b = base.trim().trim_end_matches('/');
    if b.ends_with("/v1/traces") {
        b.to_owned()
    } else if b.ends_with("/v1") {
        format!("{b}/traces")
    } else {
        format!("{b}/v1/traces")
    }
}

impl Default for ExporterSettings {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            headers: Vec::new(),
            protocol: Protocol::HttpProtobuf,
            timeout: Duration::from_millis(10_000),
            service_name: "tollgate".to_owned(),
            resource_attributes: Vec::new(),
            schedule_delay: Duration::from_millis(5000),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
            sampler: Sampler::ParentBasedAlwaysOn,
        }
    }
}

impl fmt::Debug for ExporterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExporterSettings")
            .field("endpoint", &self.endpoint)
            .field("headers (values redacted)", &header_names)
            .field("protocol", &self.protocol)
            .field("timeout", &self.timeout)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("schedule_delay", &self.schedule_delay)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_export_batch_size", &self.max_export_batch_size)
            .field("export_timeout", &self.export_timeout)
            .field("sampler", &self.sampler)
            .finish()
    }
}

impl ExporterSettings {
    /// Reads the configuration through `get` (e.g. `|k| std::env::var(k).ok()`); unset and empty are the same.
    /// `Ok(None)` when `OTEL_SDK_DISABLED=true`.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TraceConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let first = |vars: &[&'static str]| vars.iter().find_map(|v| get(v).map(|x| (*v, x)));

        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let mut s = Self::default();

        if let Some(v) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            s.endpoint = v.trim().to_owned();
        } else if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| get("OTEL_ENDPOINT"))
        {
            s.endpoint = traces_url(&v);
        }

        if let Some((var, v)) = first(&[
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_HEADERS",
        ]) {
            s.headers = parse_pairs(&v).ok_or(TraceConfigError::MalformedList { var })?;
        }

        if let Some((var, v)) = first(&[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]) {
            s.protocol = match v.trim() {
                "http/protobuf" => Protocol::HttpProtobuf,
                "http/json" => Protocol::HttpJson,
                "grpc" => return Err(TraceConfigError::Grpc { var }),
                other => {
                    return Err(TraceConfigError::Unsupported {
                        var,
                        value: other.to_owned(),
                    });
                }
            };
        } else if let Some(v) = get("OTEL_EXPORTER") {
            let var = "OTEL_EXPORTER";
            s.protocol = match v.trim() {
                "otlp_http" | "http/protobuf" => Protocol::HttpProtobuf,
                "http/json" => Protocol::HttpJson,
                "otlp_grpc" | "grpc" => return Err(TraceConfigError::Grpc { var }),
                other => {
                    return Err(TraceConfigError::Unsupported {
                        var,
                        value: other.to_owned(),
                    });
                }
            };
        }

        if let Some((var, v)) = first(&[
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]) {
            s.timeout = Duration::from_millis(number(var, &v, 0)?);
        }

        let mut resource = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(v) => parse_pairs(&v).ok_or(TraceConfigError::MalformedList {
                var: "OTEL_RESOURCE_ATTRIBUTES",
            })?,
            None => Vec::new(),
        };
        let from_resource = resource
            .iter()
            .position(|(k, _)| k == "service.name")
            .map(|i| resource.remove(i).1);
        resource.retain(|(k, _)| k != "service.name");
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            s.service_name = v.trim().to_owned();
        } else if let Some(v) = from_resource.filter(|v| !v.is_empty()) {
            s.service_name = v;
        }
        s.resource_attributes = resource
            .into_iter()
            .map(|(k, v)| (k, Value::Str(v)))
            .collect();

        let ms = |var: &'static str, min: u64| -> Result<Option<u64>, TraceConfigError> {
            get(var).map(|v| number(var, &v, min)).transpose()
        };
        if let Some(v) = ms("OTEL_BSP_SCHEDULE_DELAY", 0)? {
            s.schedule_delay = Duration::from_millis(v);
        }
        if let Some(v) = ms("OTEL_BSP_MAX_QUEUE_SIZE", 1)? {
            s.max_queue_size = usize::try_from(v).unwrap_or(usize::MAX);
        }
        if let Some(v) = ms("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1)? {
            s.max_export_batch_size = usize::try_from(v).unwrap_or(usize::MAX);
        }
        // A batch can never be larger than the queue.
        s.max_export_batch_size = s.max_export_batch_size.min(s.max_queue_size);
        if let Some(v) = ms("OTEL_BSP_EXPORT_TIMEOUT", 0)? {
            s.export_timeout = Duration::from_millis(v);
        }

        s.sampler = Sampler::from_env(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        Ok(Some(s))
    }
}

fn number(var: &'static str, v: &str, min: u64) -> Result<u64, TraceConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(TraceConfigError::Invalid {
            var,
            expected: if min == 0 {
                "a non-negative integer"
            } else {
                "a positive integer"
            },
        }),
    }
}

/// `k=v,k2=v2`: entries and both sides trimmed, empty entries skipped, values percent-decoded. `None` when
/// an entry has no `=`, an empty key, or a bad escape.
fn parse_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in s.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (k, v) = entry.split_once('=')?;
        let k = k.trim();
        if k.is_empty() {
            return None;
        }
        out.push((k.to_owned(), percent_decode(v.trim())?));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = char::from(*b.get(i + 1)?).to_digit(16)?;
            let lo = char::from(*b.get(i + 2)?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<ExporterSettings>, TraceConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ExporterSettings::from_env(|k| m.get(k).cloned())
    }

    fn ok(pairs: &[(&str, &str)]) -> ExporterSettings {
        env(pairs).unwrap().unwrap()
    }

    #[test]
    fn defaults() {
        assert_eq!(ok(&[]), ExporterSettings::default());
        let d = ok(&[]);
        assert_eq!(d.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(d.protocol, Protocol::HttpProtobuf);
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(d.service_name, "tollgate");
        assert_eq!(d.schedule_delay, Duration::from_secs(5));
        assert_eq!((d.max_queue_size, d.max_export_batch_size), (2048, 512));
        assert_eq!(d.export_timeout, Duration::from_secs(30));
        assert_eq!(d.sampler, Sampler::ParentBasedAlwaysOn);
    }

    #[test]
    fn disabled() {
        assert_eq!(env(&[("OTEL_SDK_DISABLED", "true")]), Ok(None));
        assert_eq!(env(&[("OTEL_SDK_DISABLED", "TRUE")]), Ok(None));
        assert!(env(&[("OTEL_SDK_DISABLED", "false")]).unwrap().is_some());
    }

    #[test]
    fn endpoint_precedence() {
        let all = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a:1/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2"),
            ("OTEL_ENDPOINT", "http://c:3/x"),
        ];
        assert_eq!(ok(&all).endpoint, "http://a:1/custom");
        assert_eq!(ok(&all[1..]).endpoint, "http://b:2/v1/traces");
        assert_eq!(ok(&all[2..]).endpoint, "http://c:3/x/v1/traces");
        // As LiteLLM does: a base that already names the traces path (or a bare /v1) is completed, not doubled.
        for (base, want) in [
            ("http://b:2/v1/traces", "http://b:2/v1/traces"),
            ("http://b:2/v1/traces/", "http://b:2/v1/traces"),
            ("http://b:2/v1", "http://b:2/v1/traces"),
        ] {
            assert_eq!(ok(&[("OTEL_ENDPOINT", base)]).endpoint, want);
            assert_eq!(ok(&[("OTEL_EXPORTER_OTLP_ENDPOINT", base)]).endpoint, want);
        }
        assert_eq!(
            ok(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2/base/")]).endpoint,
            "http://b:2/base/v1/traces"
        );
        // Empty counts as unset.
        assert_eq!(
            ok(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
                ("OTEL_ENDPOINT", "http://c")
            ])
            .endpoint,
            "http://c/v1/traces"
        );
    }

    #[test]
    fn headers() {
        let s = ok(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            " Authorization = Basic%20dXNlcjpwdw%3D%3D , x-team=a%2Cb,,k=",
        )]);
        assert_eq!(
            s.headers,
            vec![
                ("Authorization".to_owned(), "Basic dXNlcjpwdw==".to_owned()),
                ("x-team".to_owned(), "a,b".to_owned()),
                ("k".to_owned(), String::new()),
            ]
        );
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "b=2"),
            ("OTEL_HEADERS", "c=3"),
        ]);
        assert_eq!(s.headers, vec![("a".to_owned(), "1".to_owned())]);
        let s = ok(&[("OTEL_HEADERS", "c=3")]);
        assert_eq!(s.headers, vec![("c".to_owned(), "3".to_owned())]);
        // Debug shows names, never values.
        let dbg = format!("{:?}", ok(&[("OTEL_HEADERS", "api-key=s3cr3t")]));
        assert!(dbg.contains("api-key") && !dbg.contains("s3cr3t"), "{dbg}");
    }

    #[test]
    fn malformed_headers_name_the_variable_not_the_value() {
        for (var, v) in [
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "secretvalue"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=secret%zz"),
            ("OTEL_HEADERS", "=secret"),
            ("OTEL_HEADERS", "a=secret%4"),
            ("OTEL_HEADERS", "a=%ff%fe"),
        ] {
            let e = env(&[(var, v)]).unwrap_err();
            assert_eq!(e, TraceConfigError::MalformedList { var });
            let msg = e.to_string();
            assert!(msg.starts_with(var) && !msg.contains("secret"), "{msg}");
        }
    }

    #[test]
    fn protocols() {
        let p = |pairs: &[(&str, &str)]| env(pairs).map(|s| s.map(|s| s.protocol));
        assert_eq!(
            p(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            Ok(Some(Protocol::HttpJson))
        );
        assert_eq!(
            p(&[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ]),
            Ok(Some(Protocol::HttpProtobuf))
        );
        let e = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL: grpc is not supported; use http/protobuf"
        );
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift")]),
            Err(TraceConfigError::Unsupported {
                var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                value: "thrift".into()
            })
        );
        // LiteLLM's OTEL_EXPORTER, only when the standard variables are unset.
        assert_eq!(
            p(&[("OTEL_EXPORTER", "otlp_http")]),
            Ok(Some(Protocol::HttpProtobuf))
        );
        assert_eq!(
            p(&[
                ("OTEL_EXPORTER", "otlp_grpc"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            ]),
            Ok(Some(Protocol::HttpJson))
        );
        for v in ["otlp_grpc", "grpc"] {
            assert_eq!(
                env(&[("OTEL_EXPORTER", v)]).unwrap_err().to_string(),
                "OTEL_EXPORTER: grpc is not supported; use http/protobuf"
            );
        }
        assert_eq!(
            env(&[("OTEL_EXPORTER", "console")]),
            Err(TraceConfigError::Unsupported {
                var: "OTEL_EXPORTER",
                value: "console".into()
            })
        );
    }

    #[test]
    fn numbers() {
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "999"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1500"),
        ]);
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.schedule_delay, Duration::from_millis(100));
        assert_eq!(s.max_queue_size, 10);
        assert_eq!(s.max_export_batch_size, 10, "clamped to the queue size");
        assert_eq!(s.export_timeout, Duration::from_millis(1500));
        assert_eq!(
            ok(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "999")]).timeout,
            Duration::from_millis(999)
        );
        for (var, v, expected) in [
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "10s",
                "a non-negative integer",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "-1",
                "a non-negative integer",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "1.5", "a non-negative integer"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "a positive integer"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "x", "a positive integer"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "soon", "a non-negative integer"),
        ] {
            assert_eq!(
                env(&[(var, v)]).unwrap_err().to_string(),
                format!("{var}: expected {expected}")
            );
        }
    }

    #[test]
    fn service_and_resource() {
        let s = ok(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,service.name=from%20attrs,team=a%3Db",
        )]);
        assert_eq!(s.service_name, "from attrs");
        assert_eq!(
            s.resource_attributes,
            vec![
                (
                    "deployment.environment".to_owned(),
                    Value::Str("prod".into())
                ),
                ("team".to_owned(), Value::Str("a=b".into())),
            ]
        );
        let s = ok(&[
            ("OTEL_SERVICE_NAME", "gw"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
        ]);
        assert_eq!(s.service_name, "gw");
        assert!(s.resource_attributes.is_empty());
        assert_eq!(
            env(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")]),
            Err(TraceConfigError::MalformedList {
                var: "OTEL_RESOURCE_ATTRIBUTES"
            })
        );
    }

    #[test]
    fn sampler_from_settings() {
        assert_eq!(
            ok(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5")
            ])
            .sampler,
            Sampler::TraceIdRatio(0.5)
        );
        assert_eq!(
            env(&[("OTEL_TRACES_SAMPLER", "bogus")]),
            Err(TraceConfigError::UnknownSampler {
                name: "bogus".into()
            })
        );
    }
}
