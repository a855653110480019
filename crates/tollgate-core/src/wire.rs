//! Zero-copy views of OpenAI JSON bodies: find top-level fields and their byte spans, and splice edits in,
//! so the proxy path rewrites `model` (and adds `stream_options`) without re-serializing the rest.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A top-level JSON object, as (key, raw value) pairs borrowed from the input.
#[derive(Debug)]
pub struct JsonObject<'a> {
    src: &'a str,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Why a body could not be viewed as a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("request body must be valid UTF-8")]
    Utf8,
    #[error("expected a JSON object at the top level")]
    NotObject,
}

struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> JsonObject<'a> {
    /// Parse `body` as a JSON object without building a tree: every value stays a raw slice of `body`.
    pub fn parse(body: &'a [u8]) -> Result<Self, ScanError> {
        let src = std::str::from_utf8(body).map_err(|_| ScanError::Utf8)?;
        Self::parse_str(src)
    }

    pub fn parse_str(src: &'a str) -> Result<Self, ScanError> {
        let trimmed = src.trim_start();
        if !trimmed.starts_with('{') {
            // Give a precise message for valid JSON of the wrong kind, serde's for invalid JSON.
            return match serde_json::from_str::<&RawValue>(src) {
                Ok(_) => Err(ScanError::NotObject),
                Err(e) => Err(ScanError::Json(e)),
            };
        }
        let Fields(fields) = serde_json::from_str(src)?;
        Ok(JsonObject { src, fields })
    }

    /// The raw value of a top-level field (the last one if the key repeats, as JSON parsers do).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Top-level keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_ref())
    }

    /// A top-level string field, decoded. `Err` if present but not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<Cow<'a, str>>, serde_json::Error> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => {
                let s: Cow<'a, str> = match serde_json::from_str::<&'a str>(raw.get()) {
                    Ok(b) => Cow::Borrowed(b),
                    Err(_) => Cow::Owned(serde_json::from_str::<String>(raw.get())?),
                };
                Ok(Some(s))
            }
        }
    }

    /// A top-level boolean field. `Err` if present but not a boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, serde_json::Error> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<Option<bool>>(raw.get()),
        }
    }

    /// Byte range of a raw value (borrowed from this object's source) within the source.
    pub fn span(&self, raw: &RawValue) -> Range<usize> {
        let start = raw.get().as_ptr() as usize - self.src.as_ptr() as usize;
        start..start + raw.get().len()
    }

    /// Byte offset just after the opening `{` of the object.
    pub fn open_brace_end(&self) -> usize {
        self.src.len() - self.src.trim_start().len() + 1
    }

    pub fn source(&self) -> &'a str {
        self.src
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// One edit of a source text: replace `range` with `with`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub range: Range<usize>,
    pub with: Vec<u8>,
}

impl Edit {
    pub fn replace(range: Range<usize>, with: impl Into<Vec<u8>>) -> Self {
        Edit {
            range,
            with: with.into(),
        }
    }
    pub fn insert(at: usize, with: impl Into<Vec<u8>>) -> Self {
        Edit {
            range: at..at,
            with: with.into(),
        }
    }
}

/// Apply non-overlapping edits to `src`, in one pass. Edits may come in any order.
pub fn splice(src: &[u8], edits: &mut [Edit]) -> Vec<u8> {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let extra: usize = edits.iter().map(|e| e.with.len()).sum();
    let mut out = Vec::with_capacity(src.len() + extra);
    let mut pos = 0;
    for e in edits.iter() {
        let start = e.range.start.max(pos);
        out.extend_from_slice(&src[pos..start]);
        out.extend_from_slice(&e.with);
        pos = e.range.end.max(start);
    }
    out.extend_from_slice(&src[pos..]);
    out
}

/// A JSON string literal for `s` (with quotes and escapes).
pub fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    // Writing a &str to a Vec cannot fail.
    if serde_json::to_writer(&mut out, s).is_err() {
        out.clear();
        out.extend_from_slice(b"\"\"");
    }
    out
}

/// Replace the top-level `"model"` value with `model` (a no-op when the body has no model field).
pub fn replace_model(obj: &JsonObject<'_>, model: &str) -> Vec<u8> {
    let src = obj.source().as_bytes();
    match obj.get("model") {
        Some(raw) => splice(src, &mut [Edit::replace(obj.span(raw), json_string(model))]),
        None => src.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_and_spans() {
        let body = br#" {"model": "gpt-4o", "messages":[{"role":"user","content":"hi \"x\""}], "stream":true}"#;
        let o = JsonObject::parse(body).unwrap();
        assert_eq!(o.get_str("model").unwrap().as_deref(), Some("gpt-4o"));
        assert_eq!(o.get_bool("stream").unwrap(), Some(true));
        let span = o.span(o.get("model").unwrap());
        assert_eq!(&body[span], br#""gpt-4o""#);
        assert_eq!(
            o.keys().collect::<Vec<_>>(),
            vec!["model", "messages", "stream"]
        );
    }

    #[test]
    fn replace_model_keeps_everything_else_byte_for_byte() {
        let body =
            br#"{"messages":[ {"role":"user","content":"x"} ],"model":"alias","temperature":0.50}"#;
        let o = JsonObject::parse(body).unwrap();
        let out = replace_model(&o, "real/\"model\"");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"messages":[ {"role":"user","content":"x"} ],"model":"real/\"model\"","temperature":0.50}"#
        );
    }

    #[test]
    fn escaped_strings_and_keys_decode() {
        let o = JsonObject::parse(br#"{"mo\u0064el":"a\u00e9"}"#).unwrap();
        assert_eq!(o.get_str("model").unwrap().as_deref(), Some("aé"));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(matches!(
            JsonObject::parse(b"[1,2]"),
            Err(ScanError::NotObject)
        ));
        assert!(matches!(
            JsonObject::parse(b"{\"a\":"),
            Err(ScanError::Json(_))
        ));
        assert!(matches!(
            JsonObject::parse(b"{} x"),
            Err(ScanError::Json(_))
        ));
        assert!(matches!(
            JsonObject::parse(&[0xff, 0xfe]),
            Err(ScanError::Utf8)
        ));
        let o = JsonObject::parse(br#"{"model":5}"#).unwrap();
        assert!(o.get_str("model").is_err());
        let o = JsonObject::parse(br#"{"stream":"yes"}"#).unwrap();
        assert!(o.get_bool("stream").is_err());
    }

    #[test]
    fn splice_applies_inserts_and_replacements_in_order() {
        let src = b"{\"a\":1,\"b\":2}";
        let out = splice(
            src,
            &mut [
                Edit::replace(11..12, b"\"x\"".to_vec()),
                Edit::insert(1, b"\"z\":0,".to_vec()),
            ],
        );
        assert_eq!(out, b"{\"z\":0,\"a\":1,\"b\":\"x\"}");
    }
}
