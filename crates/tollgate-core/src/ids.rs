//! Identifiers: request ids (UUIDv7) and helpers to accept client-supplied ones safely.

/// A new request id: a UUIDv7, so ids sort by creation time.
///
/// The random bits come from a thread-local fast generator rather than the OS (one `getrandom` syscall per
/// request showed up in profiles); request ids need uniqueness, not unpredictability.
pub fn new_request_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    random[8..].copy_from_slice(&fastrand::u16(..).to_le_bytes());
    uuid::Builder::from_unix_timestamp_millis(ms, &random)
        .into_uuid()
        .to_string()
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
