//! Hand-rolled JSON output helpers, so hot response bodies are built with `push_str`/`write!` instead of serde.

use std::fmt::{Display, Write};

/// Appends `s` as a quoted, escaped JSON string.
pub(crate) fn str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` and `i + 1` are char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `s` as a JSON string, or `null` when absent.
pub(crate) fn opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => str(out, s),
        None => out.push_str("null"),
    }
}

/// Appends a number (or anything whose `Display` is valid JSON).
pub(crate) fn num(out: &mut String, n: impl Display) {
    let _ = write!(out, "{n}");
}

/// Appends `"key":` (the key must not need escaping).
pub(crate) fn key(out: &mut String, k: &str) {
    out.push('"');
    out.push_str(k);
    out.push_str("\":");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let samples = [
            "plain",
            "quote \" back \\ slash",
            "ctl \u{1}\n\t\r",
            "ünïcødé ✓",
            "",
        ];
        for s in samples {
            let mut out = String::new();
            str(&mut out, s);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
