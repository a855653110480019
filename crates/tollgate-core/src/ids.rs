//! Identifiers: request ids (UUIDv7) and helpers to accept client-supplied ones safely.

/// A new request id: a UUIDv7, so ids sort by creation time.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Accept a client-supplied `x-request-id` only if it is short and made of safe characters, so it can be
/// echoed in headers and logs without injection.
pub fn sanitize_request_id(candidate: &str) -> Option<&str> {
    let ok = !candidate.is_empty()
        && candidate.len() <= 128
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_v7_and_unique() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
    }

    #[test]
    fn client_request_ids_are_sanitized() {
        assert_eq!(sanitize_request_id("abc-123_x.y:z"), Some("abc-123_x.y:z"));
        assert_eq!(sanitize_request_id("bad id"), None);
        assert_eq!(sanitize_request_id("a\r\nx-evil: 1"), None);
        assert_eq!(sanitize_request_id(""), None);
        assert_eq!(sanitize_request_id(&"a".repeat(129)), None);
    }
}
