//! The AWS event stream encoder (`application/vnd.amazon.eventstream`) for ConverseStream answers: string
//! headers, JSON payload, prelude and message CRC32s.

use bytes::Bytes;

/// CRC32 (IEEE, reflected polynomial 0xEDB88320) table, built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC32 (gzip's) of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// One message: `[total len][headers len][prelude CRC][headers][payload][message CRC]`, big-endian, every
/// header a string (type 7).
pub(crate) fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(k, v)| 1 + k.len() + 1 + 2 + v.len())
        .sum();
    let total = 16 + headers_len + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers_len as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    for (name, value) in headers {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(7);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// An `event` message of type `event_type` with a JSON payload.
pub(crate) fn event(event_type: &str, payload: &serde_json::Value) -> Bytes {
    let payload = payload.to_string();
    message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// An `exception` message (`:exception-type` e.g. `throttlingException`, payload `{"message": ...}`).
#[cfg(test)]
pub(crate) fn exception(exception_type: &str, message_text: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message_text }).to_string();
    message(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_known_frames() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // An encoder's documented example: no headers, payload `{"foo": "bar"}`.
        let m = message(&[], br#"{"foo": "bar"}"#);
        assert_eq!(&m[..12], &[0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138]);
        assert_eq!(&m[26..], &[174, 114, 88, 228]);
        let m = message(
            &[("content-type", "application/json")],
            br#"{"foo": "bar"}"#,
        );
        assert_eq!(&m[..12], &[0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70]);
        assert_eq!(&m[58..], &[111, 162, 191, 59]);
    }

    #[test]
    fn message_crc_covers_everything_before_it() {
        let m = event(
            "messageStop",
            &serde_json::json!({"stopReason": "end_turn"}),
        );
        let n = m.len();
        assert_eq!(
            u32::from_be_bytes([m[n - 4], m[n - 3], m[n - 2], m[n - 1]]),
            crc32(&m[..n - 4])
        );
        assert_eq!(u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize, n);
        let e = exception("throttlingException", "slow down");
        assert!(e.windows(9).any(|w| w == b"exception"));
    }
}
