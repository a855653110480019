//! Structural limits on a JSON request body, checked in one pass over its bytes before it is parsed: nesting depth and the length of the message list (`messages`, Responses `input`).

use tollgate_core::GatewayError;

/// Why a body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// Objects/arrays nested deeper than the limit.
    TooDeep { limit: usize },
    /// The top-level list `field` has more than `limit` items.
    TooManyItems { field: &'static str, limit: usize },
}

impl From<LimitError> for GatewayError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::TooDeep { limit } => GatewayError::InvalidRequest {
                message: format!(
                    "The request body is nested more than {limit} levels deep (general_settings.tollgate_max_json_depth)"
                ),
                param: None,
                code: Some("json_too_deeply_nested".into()),
            },
            LimitError::TooManyItems { field, limit } => GatewayError::InvalidRequest {
                message: format!(
                    "`{field}` has more than {limit} items (general_settings.tollgate_max_messages)"
                ),
                param: Some(field.into()),
                code: Some("too_many_messages".into()),
            },
        }
    }
}

/// Check `body`: no object/array nested more than `max_depth` deep (the top-level object is depth 1), and
/// the top-level field `counted` (if given, and an array) has at most `max_items` items. Strings are
/// skipped (escapes included) so brackets inside them do not count; a key spelled with escapes
/// (`"messag\u0065s"`) is decoded before it is compared. Invalid JSON is not reported here (the parser
/// does that); the scan just stops making sense of it.
pub fn check(
    body: &[u8],
    max_depth: usize,
    counted: Option<&'static str>,
    max_items: usize,
) -> Result<(), LimitError> {
    let mut depth = 0usize;
    // At depth 1 of a top-level object: whether the next string is a key.
    let mut expect_key = false;
    let mut top_is_object = false;
    // The last key at depth 1 was `counted`, and its value has not started yet.
    let mut pending = false;
    // Inside the `counted` array (at depth 2), and the separators seen there (items = commas + 1).
    let mut counting = false;
    let mut commas = 0usize;
    let mut i = 0;
    let n = body.len();
    while i < n {
        let b = body[i];
        match b {
            b'"' => {
                // An unterminated string: invalid JSON, left to the parser.
                let Some(end) = string_end(body, i + 1) else {
                    return Ok(());
                };
                if depth == 1 && top_is_object {
                    if expect_key {
                        expect_key = false;
                        pending = counted.is_some_and(|c| key_is(&body[i..=end], c));
                    } else {
                        pending = false;
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(LimitError::TooDeep { limit: max_depth });
                }
                if depth == 1 {
                    top_is_object = b == b'{';
                    expect_key = top_is_object;
                } else if depth == 2 {
                    counting = pending && b == b'[';
                    commas = 0;
                    pending = false;
                }
            }
            b'}' | b']' => {
                if depth == 2 {
                    counting = false;
                }
                depth = depth.saturating_sub(1);
            }
            b',' => {
                if depth == 1 {
                    expect_key = top_is_object;
                    pending = false;
                } else if depth == 2 && counting {
                    commas += 1;
                    if commas >= max_items
                        && let Some(field) = counted
                    {
                        return Err(LimitError::TooManyItems {
                            field,
                            limit: max_items,
                        });
                    }
                }
            }
            b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                // A scalar (number, true, false, null) as a top-level value.
                if depth == 1 {
                    pending = false;
                }
            }
        }
        i += 1;
    }
    Ok(())
}

/// The index of the `"` closing a string whose contents start at `from`; `None` if it never closes.
fn string_end(body: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[at] == b'"' {
            return Some(at);
        }
        // A backslash escapes the next byte (`\"`, `\\`; the rest of a `\u` escape is plain text).
        i = at + 2;
    }
}

/// Whether the quoted JSON string `quoted` (quotes included) is `name`.
fn key_is(quoted: &[u8], name: &str) -> bool {
    let inner = quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default();
    if !inner.contains(&b'\\') {
        return inner == name.as_bytes();
    }
    serde_json::from_slice::<String>(quoted).is_ok_and(|k| k == name)
}

/// The top-level list each endpoint limits with `tollgate_max_messages`.
pub fn counted_field(endpoint: tollgate_providers::Endpoint) -> Option<&'static str> {
    use tollgate_providers::Endpoint;
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::CountTokens => Some("messages"),
        Endpoint::Responses => Some("input"),
        Endpoint::Completions | Endpoint::Embeddings | Endpoint::Rerank => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(body: &str, max: usize) -> bool {
        check(body.as_bytes(), max, None, usize::MAX).is_ok()
    }

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert!(depth_ok("{}", 1));
        assert!(!depth_ok("{\"a\":{}}", 1));
        assert!(depth_ok("{\"a\":{\"b\":[1,2,{\"c\":null}]}}", 4));
        assert!(!depth_ok("{\"a\":{\"b\":[1,2,{\"c\":{}}]}}", 4));
        assert!(depth_ok(&nested(64), 64));
        assert!(!depth_ok(&nested(65), 64));
        // Siblings do not add up.
        assert!(depth_ok("{\"a\":[[1]],\"b\":[[2]],\"c\":[[3]]}", 3));
        assert_eq!(
            check(nested(100).as_bytes(), 64, None, 1),
            Err(LimitError::TooDeep { limit: 64 })
        );
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let s = format!("{{\"a\":\"{}\"}}", "[{".repeat(100));
        assert!(depth_ok(&s, 1));
        // Escaped quotes and backslashes do not end the string early.
        assert!(depth_ok(r#"{"a":"x\"[[[[[[\"y"}"#, 1));
        assert!(depth_ok(r#"{"a":"\\\"[[[[[[[[\\"}"#, 1));
        // A string ending in an escaped backslash does end: the bracket after it counts.
        assert!(!depth_ok(r#"{"a":"x\\","b":[[]]}"#, 2));
        assert!(depth_ok(r#"{"a":"x\\","b":[[]]}"#, 3));
        // \u escapes and multi-byte text.
        assert!(depth_ok(r#"{"a":"\u005b\u005b ü [[[ 日本"}"#, 1));
        // Keys can hold brackets too.
        assert!(depth_ok(r#"{"[[[[":1}"#, 1));
        // An unterminated string is not a panic.
        assert!(depth_ok(r#"{"a":"[[[["#, 1));
        assert!(depth_ok(r#"{"a":"\"#, 1));
        assert!(depth_ok("", 1));
    }

    fn messages(n: usize) -> String {
        let items: Vec<String> = (0..n)
            .map(|i| format!("{{\"role\":\"user\",\"content\":\"m{i}, [x]\"}}"))
            .collect();
        format!("{{\"model\":\"m\",\"messages\":[{}]}}", items.join(","))
    }

    #[test]
    fn message_lists_are_counted() {
        let f = Some("messages");
        assert!(check(messages(0).as_bytes(), 64, f, 3).is_ok());
        assert!(check(messages(3).as_bytes(), 64, f, 3).is_ok());
        assert_eq!(
            check(messages(4).as_bytes(), 64, f, 3),
            Err(LimitError::TooManyItems {
                field: "messages",
                limit: 3
            })
        );
        // Commas inside messages (strings, nested objects) are not separators.
        let body = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a,b"},{"type":"text","text":"c"}]}]}"#;
        assert!(check(body.as_bytes(), 64, f, 1).is_ok());
        // Only the named top-level field counts: a nested `messages` or another list does not.
        let body = r#"{"metadata":{"messages":[1,2,3,4]},"tools":[1,2,3,4],"messages":[1]}"#;
        assert!(check(body.as_bytes(), 64, f, 1).is_ok());
        // A value that is the string "messages" is not a key.
        let body = r#"{"a":"messages","b":[1,2,3]}"#;
        assert!(check(body.as_bytes(), 64, f, 1).is_ok());
        // A key spelled with escapes is the same key.
        let body = r#"{"messag\u0065s":[1,2,3]}"#;
        assert!(check(body.as_bytes(), 64, f, 2).is_err());
        // A duplicate key is checked too (parsers keep the last).
        let body = r#"{"messages":[1],"messages":[1,2,3]}"#;
        assert!(check(body.as_bytes(), 64, f, 2).is_err());
        // Not an array: nothing to count.
        assert!(check(br#"{"messages":"a,b,c"}"#, 64, f, 1).is_ok());
        assert!(check(br#"{"input":[1,2,3]}"#, 64, Some("input"), 2).is_err());
        assert!(check(br#"{"input":"a,b,c"}"#, 64, Some("input"), 1).is_ok());
        // Nothing counted without a field.
        assert!(check(messages(10).as_bytes(), 64, None, 1).is_ok());
    }

    #[test]
    fn endpoints_count_their_list() {
        use tollgate_providers::Endpoint;
        assert_eq!(counted_field(Endpoint::ChatCompletions), Some("messages"));
        assert_eq!(counted_field(Endpoint::Messages), Some("messages"));
        assert_eq!(counted_field(Endpoint::Responses), Some("input"));
        assert_eq!(counted_field(Endpoint::Embeddings), None);
    }

    #[test]
    fn errors_are_400s_with_param_and_code() {
        let e: GatewayError = LimitError::TooManyItems {
            field: "messages",
            limit: 3,
        }
        .into();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.param(), Some("messages"));
        assert_eq!(e.code(), Some("too_many_messages"));
        let e: GatewayError = LimitError::TooDeep { limit: 64 }.into();
        assert_eq!(e.code(), Some("json_too_deeply_nested"));
        assert!(e.to_string().contains("64"));
    }
}
