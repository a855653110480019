//! Encoding of `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`: hand-written protobuf
//! and the OTLP/JSON mapping, for one resource and one instrumentation scope.

use serde::Serialize;

use crate::trace::{Span, SpanKind, Status, Value};

// Field numbers, from opentelemetry-proto (trace_service.proto, trace.proto, resource.proto, common.proto).
mod field {
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_SPANS_SCOPE: u32 = 1;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_STATUS: u32 = 15;
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    pub const KV_KEY: u32 = 1;
    pub const KV_VALUE: u32 = 2;
    pub const ANY_STRING: u32 = 1;
    pub const ANY_BOOL: u32 = 2;
    pub const ANY_INT: u32 = 3;
    pub const ANY_DOUBLE: u32 = 4;
}

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;

fn kind_code(k: SpanKind) -> u8 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    }
}

/// `(code, message)`; `None` for unset (the field is then omitted).
fn status_parts(s: &Status) -> Option<(u8, &str)> {
    match s {
        Status::Unset => None,
        Status::Ok => Some((1, "")),
        Status::Error(m) => Some((2, m.as_str())),
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from((field << 3) | wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(buf, field, WIRE_LEN);
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A proto3 string outside a oneof: omitted when empty.
fn put_str_opt(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, field, s.as_bytes());
    }
}

fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, WIRE_FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// An embedded message, written in place after a one-byte length slot; a length of 128 or more widens the
/// slot (one shift of the message's bytes), so there is no scratch buffer per message (this runs for every
/// attribute of every span).
fn put_message(buf: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    put_tag(buf, field, WIRE_LEN);
    let at = buf.len();
    buf.push(0);
    f(buf);
    let mut v = buf.len() - at - 1;
    if v < 0x80 {
        buf[at] = v as u8;
        return;
    }
    let (mut varint, mut n) = ([0u8; 10], 0);
    while v >= 0x80 {
        varint[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    varint[n] = v as u8;
    buf[at] = varint[0];
    buf.splice(at + 1..at + 1, varint[1..=n].iter().copied());
}

fn put_key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    put_message(buf, field, |kv| {
        put_str_opt(kv, field::KV_KEY, key);
        // AnyValue is a oneof: the set member is written even when it holds the default value.
        put_message(kv, field::KV_VALUE, |any| match value {
            Value::Str(s) => put_bytes(any, field::ANY_STRING, s.as_bytes()),
            Value::Bool(b) => {
                put_tag(any, field::ANY_BOOL, WIRE_VARINT);
                put_varint(any, u64::from(*b));
            }
            Value::Int(i) => {
                put_tag(any, field::ANY_INT, WIRE_VARINT);
                // int64: negative values are sign-extended to ten bytes.
                put_varint(any, *i as u64);
            }
            Value::Float(f) => put_fixed64(any, field::ANY_DOUBLE, f.to_bits()),
        });
    });
}

fn put_span(buf: &mut Vec<u8>, span: &Span) {
    put_message(buf, field::SCOPE_SPANS_SPANS, |s| {
        put_bytes(s, field::SPAN_TRACE_ID, &span.trace_id.0);
        put_bytes(s, field::SPAN_SPAN_ID, &span.span_id.0);
        if let Some(p) = &span.parent {
            put_bytes(s, field::SPAN_PARENT_SPAN_ID, &p.0);
        }
        put_str_opt(s, field::SPAN_NAME, &span.name);
        put_tag(s, field::SPAN_KIND, WIRE_VARINT);
        put_varint(s, u64::from(kind_code(span.kind)));
        if span.start_unix_nanos != 0 {
            put_fixed64(s, field::SPAN_START, span.start_unix_nanos);
        }
        if span.end_unix_nanos != 0 {
            put_fixed64(s, field::SPAN_END, span.end_unix_nanos);
        }
        for (k, v) in &span.attributes {
            put_key_value(s, field::SPAN_ATTRIBUTES, k, v);
        }
        if let Some((code, message)) = status_parts(&span.status) {
            put_message(s, field::SPAN_STATUS, |st| {
                put_str_opt(st, field::STATUS_MESSAGE, message);
                put_tag(st, field::STATUS_CODE, WIRE_VARINT);
                put_varint(st, u64::from(code));
            });
        }
    });
}

/// The protobuf body for `POST /v1/traces` (`application/x-protobuf`).
pub fn encode_protobuf(
    resource: &[(String, Value)],
    scope_name: &str,
    scope_version: &str,
    spans: &[Span],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 256);
    put_message(&mut out, field::REQUEST_RESOURCE_SPANS, |rs| {
        put_message(rs, field::RESOURCE_SPANS_RESOURCE, |r| {
            for (k, v) in resource {
                put_key_value(r, field::RESOURCE_ATTRIBUTES, k, v);
            }
        });
        put_message(rs, field::RESOURCE_SPANS_SCOPE_SPANS, |ss| {
            put_message(ss, field::SCOPE_SPANS_SCOPE, |sc| {
                put_str_opt(sc, field::SCOPE_NAME, scope_name);
                put_str_opt(sc, field::SCOPE_VERSION, scope_version);
            });
            for span in spans {
                put_span(ss, span);
            }
        });
    });
    out
}

// The OTLP/JSON mapping: lowerCamelCase names, hex ids, integer enums, 64-bit integers as decimal strings.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest<'a> {
    resource_spans: [JsonResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResourceSpans<'a> {
    resource: JsonResource<'a>,
    scope_spans: [JsonScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct JsonResource<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<JsonKeyValue<'a>>,
}

#[derive(Serialize)]
struct JsonScopeSpans<'a> {
    scope: JsonScope<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    spans: Vec<JsonSpan<'a>>,
}

#[derive(Serialize)]
struct JsonScope<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time_unix_nano: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time_unix_nano: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<JsonKeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<JsonStatus<'a>>,
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    code: u8,
}

#[derive(Serialize)]
struct JsonKeyValue<'a> {
    key: &'a str,
    value: JsonAnyValue<'a>,
}

#[derive(Serialize)]
enum JsonAnyValue<'a> {
    #[serde(rename = "stringValue")]
    Str(&'a str),
    #[serde(rename = "boolValue")]
    Bool(bool),
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "doubleValue")]
    Double(JsonDouble),
}

/// proto3 JSON writes non-finite doubles as the strings `NaN`, `Infinity`, `-Infinity`.
struct JsonDouble(f64);

impl Serialize for JsonDouble {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("Infinity")
        } else {
            s.serialize_str("-Infinity")
        }
    }
}

fn json_kv<'a>(key: &'a str, value: &'a Value) -> JsonKeyValue<'a> {
    JsonKeyValue {
        key,
        value: match value {
            Value::Str(s) => JsonAnyValue::Str(s),
            Value::Bool(b) => JsonAnyValue::Bool(*b),
            Value::Int(i) => JsonAnyValue::Int(i.to_string()),
            Value::Float(f) => JsonAnyValue::Double(JsonDouble(*f)),
        },
    }
}

fn nanos(n: u64) -> Option<String> {
    (n != 0).then(|| n.to_string())
}

/// The OTLP/JSON body for `POST /v1/traces` (`application/json`).
pub fn encode_json(
    resource: &[(String, Value)],
    scope_name: &str,
    scope_version: &str,
    spans: &[Span],
) -> Result<Vec<u8>, serde_json::Error> {
    let request = JsonRequest {
        resource_spans: [JsonResourceSpans {
            resource: JsonResource {
                attributes: resource.iter().map(|(k, v)| json_kv(k, v)).collect(),
            },
            scope_spans: [JsonScopeSpans {
                scope: JsonScope {
                    name: scope_name,
                    version: scope_version,
                },
                spans: spans
                    .iter()
                    .map(|s| JsonSpan {
                        trace_id: s.trace_id.to_hex(),
                        span_id: s.span_id.to_hex(),
                        parent_span_id: s.parent.map(|p| p.to_hex()),
                        name: &s.name,
                        kind: kind_code(s.kind),
                        start_time_unix_nano: nanos(s.start_unix_nanos),
                        end_time_unix_nano: nanos(s.end_unix_nanos),
                        attributes: s.attributes.iter().map(|(k, v)| json_kv(k, v)).collect(),
                        status: status_parts(&s.status)
                            .map(|(code, message)| JsonStatus { message, code }),
                    })
                    .collect(),
            }],
        }],
    };
    serde_json::to_vec(&request)
}

/// A minimal protobuf wire-format reader for tests (here and in the exporter's).
#[cfg(test)]
pub(crate) mod wire {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Field {
        Varint(u64),
        Fixed64(u64),
        Bytes(Vec<u8>),
        Fixed32(u32),
    }

    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
            assert!(shift < 70, "varint too long");
        }
    }

    /// Every `(field number, value)` of one message, in order; panics on malformed input.
    pub fn parse(b: &[u8]) -> Vec<(u32, Field)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let tag = varint(b, &mut i);
            let field = u32::try_from(tag >> 3).unwrap();
            let v = match tag & 7 {
                0 => Field::Varint(varint(b, &mut i)),
                1 => {
                    let v = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
                    i += 8;
                    Field::Fixed64(v)
                }
                2 => {
                    let n = usize::try_from(varint(b, &mut i)).unwrap();
                    let v = b[i..i + n].to_vec();
                    i += n;
                    Field::Bytes(v)
                }
                5 => {
                    let v = u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
                    i += 4;
                    Field::Fixed32(v)
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((field, v));
        }
        out
    }

    /// The length-delimited payloads of `field`.
    pub fn messages(fields: &[(u32, Field)], field: u32) -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| match v {
                Field::Bytes(b) => b.clone(),
                other => panic!("field {field}: expected bytes, got {other:?}"),
            })
            .collect()
    }

    /// The only occurrence of `field`.
    pub fn one(fields: &[(u32, Field)], field: u32) -> Field {
        let all: Vec<&Field> = fields
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(all.len(), 1, "field {field} in {fields:?}");
        all[0].clone()
    }

    /// The spans (each a parsed `Span` message) of an `ExportTraceServiceRequest`.
    pub fn spans(body: &[u8]) -> Vec<Vec<(u32, Field)>> {
        let req = parse(body);
        let rs = messages(&req, 1);
        assert_eq!(rs.len(), 1);
        let ss = messages(&parse(&rs[0]), 2);
        assert_eq!(ss.len(), 1);
        messages(&parse(&ss[0]), 2)
            .iter()
            .map(|s| parse(s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::wire::{Field, messages, one, parse};
    use super::*;
    use crate::trace::{SpanId, TraceId};
    use std::borrow::Cow;

    fn sample_span() -> Span {
        Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent: Some(SpanId::from_hex("1122334455667788").unwrap()),
            name: Cow::Borrowed("POST /v1/chat/completions"),
            kind: SpanKind::Server,
            start_unix_nanos: 1_700_000_000_000_000_001,
            end_unix_nanos: 1_700_000_000_250_000_002,
            attributes: vec![
                ("http.route".into(), Value::from("/v1/chat/completions")),
                ("http.response.status_code".into(), Value::from(200i64)),
                ("delta".into(), Value::Int(-5)),
                ("zero".into(), Value::Int(0)),
                ("cost".into(), Value::Float(0.125)),
                ("stream".into(), Value::Bool(false)),
                ("empty".into(), Value::from("")),
            ],
            status: Status::Error("upstream 503".into()),
        }
    }

    fn root_span() -> Span {
        Span {
            trace_id: TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            span_id: SpanId::from_hex("b7ad6b7169203331").unwrap(),
            parent: None,
            name: Cow::Borrowed("auth"),
            kind: SpanKind::Internal,
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            attributes: vec![],
            status: Status::Unset,
        }
    }

    fn client_ok_span() -> Span {
        Span {
            name: Cow::Borrowed("upstream"),
            kind: SpanKind::Client,
            status: Status::Ok,
            attributes: vec![("ratio".into(), Value::Float(f64::NAN))],
            ..root_span()
        }
    }

    fn resource() -> Vec<(String, Value)> {
        vec![
            ("service.name".to_owned(), Value::from("tollgate")),
            ("host.cores".to_owned(), Value::Int(2)),
        ]
    }

    fn bytes(f: Field) -> Vec<u8> {
        match f {
            Field::Bytes(b) => b,
            other => panic!("expected bytes, got {other:?}"),
        }
    }

    fn string(f: Field) -> String {
        String::from_utf8(bytes(f)).unwrap()
    }

    /// `(key, AnyValue fields)` of a KeyValue.
    fn kv(b: &[u8]) -> (String, Vec<(u32, Field)>) {
        let f = parse(b);
        assert_eq!(f.len(), 2, "{f:?}");
        (string(one(&f, 1)), parse(&bytes(one(&f, 2))))
    }

    #[test]
    fn varints() {
        let mut b = Vec::new();
        put_varint(&mut b, 0);
        put_varint(&mut b, 1);
        put_varint(&mut b, 300);
        put_varint(&mut b, u64::MAX);
        assert_eq!(
            b,
            [
                0x00, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
    }

    #[test]
    fn protobuf_every_field() {
        let body = encode_protobuf(
            &resource(),
            "tollgate",
            "0.1.0",
            &[sample_span(), root_span(), client_ok_span()],
        );
        let req = parse(&body);
        assert_eq!(req.len(), 1);
        let rs = parse(&bytes(one(&req, 1)));
        assert_eq!(rs.len(), 2, "resource and one scope_spans");

        // Resource.attributes = 1
        let res = parse(&bytes(one(&rs, 1)));
        let attrs: Vec<_> = messages(&res, 1).iter().map(|b| kv(b)).collect();
        assert_eq!(
            attrs,
            vec![
                (
                    "service.name".to_owned(),
                    vec![(1, Field::Bytes(b"tollgate".to_vec()))]
                ),
                ("host.cores".to_owned(), vec![(3, Field::Varint(2))]),
            ]
        );

        let ss = parse(&bytes(one(&rs, 2)));
        let scope = parse(&bytes(one(&ss, 1)));
        assert_eq!(
            scope,
            vec![
                (1, Field::Bytes(b"tollgate".to_vec())),
                (2, Field::Bytes(b"0.1.0".to_vec()))
            ]
        );
        let spans: Vec<_> = messages(&ss, 2).iter().map(|b| parse(b)).collect();
        assert_eq!(spans.len(), 3);

        let s = &spans[0];
        assert_eq!(
            bytes(one(s, 1)),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")
                .unwrap()
                .0
        );
        assert_eq!(
            bytes(one(s, 2)),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(s.iter().all(|(f, _)| *f != 3), "no trace_state");
        assert_eq!(
            bytes(one(s, 4)),
            [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(string(one(s, 5)), "POST /v1/chat/completions");
        assert_eq!(one(s, 6), Field::Varint(2));
        assert_eq!(one(s, 7), Field::Fixed64(1_700_000_000_000_000_001));
        assert_eq!(one(s, 8), Field::Fixed64(1_700_000_000_250_000_002));
        let attrs: Vec<_> = messages(s, 9).iter().map(|b| kv(b)).collect();
        assert_eq!(
            attrs,
            vec![
                (
                    "http.route".to_owned(),
                    vec![(1, Field::Bytes(b"/v1/chat/completions".to_vec()))]
                ),
                (
                    "http.response.status_code".to_owned(),
                    vec![(3, Field::Varint(200))]
                ),
                ("delta".to_owned(), vec![(3, Field::Varint((-5i64) as u64))]),
                ("zero".to_owned(), vec![(3, Field::Varint(0))]),
                (
                    "cost".to_owned(),
                    vec![(4, Field::Fixed64(0.125f64.to_bits()))]
                ),
                ("stream".to_owned(), vec![(2, Field::Varint(0))]),
                ("empty".to_owned(), vec![(1, Field::Bytes(vec![]))]),
            ]
        );
        let status = parse(&bytes(one(s, 15)));
        assert_eq!(
            status,
            vec![
                (2, Field::Bytes(b"upstream 503".to_vec())),
                (3, Field::Varint(2))
            ]
        );
        let mut numbers: Vec<u32> = s.iter().map(|(f, _)| *f).collect();
        numbers.dedup();
        assert_eq!(numbers, [1, 2, 4, 5, 6, 7, 8, 9, 15]);

        // Root span: no parent, internal kind, unset status omitted.
        let r = &spans[1];
        let numbers: Vec<u32> = r.iter().map(|(f, _)| *f).collect();
        assert_eq!(numbers, [1, 2, 5, 6, 7, 8]);
        assert_eq!(one(r, 6), Field::Varint(1));
        assert_eq!(one(r, 7), Field::Fixed64(10));
        assert_eq!(one(r, 8), Field::Fixed64(20));

        // Client span, status OK has only the code.
        let c = &spans[2];
        assert_eq!(one(c, 6), Field::Varint(3));
        assert_eq!(parse(&bytes(one(c, 15))), vec![(3, Field::Varint(1))]);
        let (_, any) = kv(&messages(c, 9)[0]);
        match &any[..] {
            [(4, Field::Fixed64(bits))] => assert!(f64::from_bits(*bits).is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn protobuf_empty_batch() {
        let body = encode_protobuf(&[], "", "", &[]);
        // resource_spans { resource {} scope_spans { scope {} } }
        assert_eq!(body, [0x0a, 0x06, 0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00]);
    }

    #[test]
    fn json_snapshot() {
        let body = encode_json(
            &resource(),
            "tollgate",
            "0.1.0",
            &[sample_span(), root_span(), client_ok_span()],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());
    }

    #[test]
    fn json_exact_shapes() {
        let body = encode_json(&[], "s", "", &[root_span()]).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            concat!(
                r#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{"name":"s"},"spans":[{"#,
                r#""traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","#,
                r#""name":"auth","kind":1,"startTimeUnixNano":"10","endTimeUnixNano":"20"}]}]}]}"#
            )
        );
        let mut s = root_span();
        s.attributes = vec![
            ("i".into(), Value::Int(i64::MIN)),
            ("inf".into(), Value::Float(f64::NEG_INFINITY)),
            ("t".into(), Value::Bool(true)),
        ];
        s.status = Status::Error(String::new());
        let v: serde_json::Value =
            serde_json::from_slice(&encode_json(&[], "", "", &[s]).unwrap()).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(
            span["attributes"],
            serde_json::json!([
                {"key": "i", "value": {"intValue": "-9223372036854775808"}},
                {"key": "inf", "value": {"doubleValue": "-Infinity"}},
                {"key": "t", "value": {"boolValue": true}},
            ])
        );
        assert_eq!(span["status"], serde_json::json!({"code": 2}));
        assert_eq!(
            v["resourceSpans"][0]["scopeSpans"][0]["scope"],
            serde_json::json!({})
        );
    }
}
