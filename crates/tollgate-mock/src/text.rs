//! Text helpers shared by the endpoints: request content parsing, token estimates and chunk splitting.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The answer given when neither `content` nor `echo` is set.
pub(crate) const DEFAULT_CONTENT: &str = "This is a mock response from tollgate.";

/// Deterministic prompt-token estimate: `ceil(chars / 4)`, at least 1.
pub(crate) fn prompt_tokens(chars: usize) -> u64 {
    (chars.div_ceil(4) as u64).max(1)
}

/// Completion-token estimate: the number of whitespace-separated words.
pub(crate) fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Why an answer ended, before each provider names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The answer ended by itself.
    Done,
    /// It was cut before this stop sequence.
    StopSequence(String),
    /// It was cut at the `max_tokens` words.
    MaxTokens,
}

/// The answer as a provider would give it under `stop` sequences and a `max_tokens` limit: cut before the
/// first stop sequence found, then to at most `max_tokens` words (words are the mock's tokens).
pub(crate) fn shape_answer(
    text: &str,
    stop: &[String],
    max_tokens: Option<u64>,
) -> (String, Ending) {
    let mut out = text.to_string();
    let mut ending = Ending::Done;
    if let Some((at, seq)) = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| out.find(s.as_str()).map(|i| (i, s)))
        .min_by_key(|(i, _)| *i)
    {
        out.truncate(at);
        ending = Ending::StopSequence(seq.clone());
    }
    if let Some(max) = max_tokens
        && word_count(&out) > max
    {
        let mut end = 0;
        for (n, (i, w)) in out
            .split_whitespace()
            .map(|w| (w.as_ptr() as usize - out.as_ptr() as usize, w))
            .enumerate()
        {
            if n as u64 == max {
                break;
            }
            end = i + w.len();
        }
        out.truncate(end);
        ending = Ending::MaxTokens;
    }
    (out, ending)
}

/// The JSON-mode answer: the text wrapped as `{"text": ...}`.
pub(crate) fn json_answer(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

/// Number of Unicode scalar values in `s`.
pub(crate) fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Splits `s` into exactly `n` (at least 1) pieces whose concatenation is `s`.
///
/// Pieces follow word boundaries when there are at least `n` words, else
/// character boundaries; when `s` has fewer than `n` characters the trailing
/// pieces are empty.
pub(crate) fn split_chunks(s: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let mut starts = vec![0usize];
    let mut prev_ws = false;
    for (i, c) in s.char_indices() {
        let ws = c.is_whitespace();
        if i > 0 && !ws && prev_ws {
            starts.push(i);
        }
        prev_ws = ws;
    }
    if starts.len() < n {
        starts = s.char_indices().map(|(i, _)| i).collect();
        if starts.is_empty() {
            starts.push(0);
        }
    }
    let t = starts.len();
    let mut out = Vec::with_capacity(n);
    if t >= n {
        for k in 0..n {
            let a = starts[k * t / n];
            let b = if k + 1 == n {
                s.len()
            } else {
                starts[(k + 1) * t / n]
            };
            out.push(&s[a..b]);
        }
    } else {
        for k in 0..t {
            let b = if k + 1 == t { s.len() } else { starts[k + 1] };
            out.push(&s[starts[k]..b]);
        }
        out.resize(n, "");
    }
    out
}

/// One part of a multi-part message content (`[{"type":"text","text":".."}]`).
#[derive(Deserialize)]
pub(crate) struct Part<'a> {
    #[serde(borrow, default)]
    text: Cow<'a, str>,
}

/// Message content as sent by clients: a string, an array of parts, or null.
#[derive(Default)]
pub(crate) enum Content<'a> {
    #[default]
    Null,
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

impl Content<'_> {
    /// Total characters of text in this content.
    pub(crate) fn char_len(&self) -> usize {
        match self {
            Content::Null => 0,
            Content::Text(t) => chars(t),
            Content::Parts(p) => p.iter().map(|p| chars(&p.text)).sum(),
        }
    }

    /// The text of this content (parts concatenated).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Null => Cow::Borrowed(""),
            Content::Text(t) => Cow::Borrowed(t),
            Content::Parts(p) if p.len() == 1 => Cow::Borrowed(&p[0].text),
            Content::Parts(p) => Cow::Owned(p.iter().map(|p| &*p.text).collect()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ContentVisitor)
    }
}

struct ContentVisitor;

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of content parts, or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(p) = seq.next_element::<Part<'de>>()? {
            parts.push(p);
        }
        Ok(Content::Parts(parts))
    }
}

/// Parses the `input`/`prompt` value of the legacy completions and embeddings
/// endpoints: a string, an array of strings, a token array, or an array of
/// token arrays. Each entry comes back as text (token arrays keep their JSON
/// form) together with its token estimate.
pub(crate) fn parse_inputs(v: &serde_json::Value) -> Result<Vec<(String, u64)>, &'static str> {
    use serde_json::Value;
    let tokens_of = |a: &[Value]| -> Result<(String, u64), &'static str> {
        if a.iter().all(Value::is_i64) {
            Ok((Value::Array(a.to_vec()).to_string(), a.len() as u64))
        } else {
            Err("token arrays must contain integers")
        }
    };
    match v {
        Value::String(s) => Ok(vec![(s.clone(), prompt_tokens(chars(s)))]),
        Value::Array(items) if items.is_empty() => Err("input must not be empty"),
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(vec![tokens_of(items)?]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok((s.clone(), prompt_tokens(chars(s)))),
                Value::Array(a) => tokens_of(a),
                _ => Err("input items must be strings or token arrays"),
            })
            .collect(),
        _ => Err("input must be a string or an array"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cut_at_stop_sequences_and_max_tokens() {
        let t = "one two three END four";
        assert_eq!(
            shape_answer(t, &["END".into()], None),
            (
                "one two three ".to_string(),
                Ending::StopSequence("END".into())
            )
        );
        assert_eq!(
            shape_answer(t, &[], Some(2)),
            ("one two".to_string(), Ending::MaxTokens)
        );
        assert_eq!(
            shape_answer(t, &[], Some(10)),
            (t.to_string(), Ending::Done)
        );
        assert_eq!(json_answer("a\"b"), r#"{"text":"a\"b"}"#);
    }

    #[test]
    fn split_is_exact_and_lossless() {
        let s = "This is a mock response from tollgate.";
        for n in 1..=12 {
            let parts = split_chunks(s, n);
            assert_eq!(parts.len(), n);
            assert_eq!(parts.concat(), s);
        }
        assert_eq!(split_chunks("a b c", 3), vec!["a ", "b ", "c"]);
        assert_eq!(split_chunks("ab", 3), vec!["a", "b", ""]);
        assert_eq!(split_chunks("", 2), vec!["", ""]);
        assert_eq!(split_chunks("héllo", 2).concat(), "héllo");
    }

    #[test]
    fn token_estimates() {
        assert_eq!(prompt_tokens(0), 1);
        assert_eq!(prompt_tokens(4), 1);
        assert_eq!(prompt_tokens(5), 2);
        assert_eq!(word_count(DEFAULT_CONTENT), 7);
    }

    #[test]
    fn content_forms() {
        let c: Content<'_> = serde_json::from_str(r#""hi there""#).unwrap();
        assert!(matches!(c, Content::Text(Cow::Borrowed(_))));
        let c: Content<'_> = serde_json::from_str(
            r#"[{"type":"text","text":"ab"},{"type":"image_url"},{"type":"text","text":"cd"}]"#,
        )
        .unwrap();
        assert_eq!(c.text(), "abcd");
        assert_eq!(c.char_len(), 4);
        let c: Content<'_> = serde_json::from_str("null").unwrap();
        assert_eq!(c.char_len(), 0);
    }
}
