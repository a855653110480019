//! The AWS event stream binary framing (`application/vnd.amazon.eventstream`) that ConverseStream answers
//! with: an incremental decoder that takes any byte split and checks both CRC32s of every message.
//!
//! A message is `[total length u32][headers length u32][prelude CRC32][headers][payload][message CRC32]`
//! (big-endian); the prelude CRC covers the first 8 bytes, the message CRC everything before it. A header
//! is `[name length u8][name][value type u8][value]`.

use bytes::{Buf, Bytes, BytesMut};

/// Prelude (8) + prelude CRC (4) + message CRC (4).
const OVERHEAD: usize = 16;
/// AWS limits a message to 16 MiB of payload and 128 KiB of headers.
const MAX_MESSAGE: usize = 16 * 1024 * 1024 + 128 * 1024 + OVERHEAD;

/// The CRC32 (IEEE 802.3, reflected polynomial 0xEDB88320) lookup table, built at compile time.
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

/// CRC32 (the gzip/zlib one) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// A header value. Bedrock sends strings; the other types are decoded so a message with them still parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Bytes),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

impl Message {
    /// The string value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(k, v)| match v {
            HeaderValue::String(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why the byte stream is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event stream prelude CRC mismatch (computed {computed:#010x}, sent {sent:#010x})")]
    PreludeCrc { computed: u32, sent: u32 },
    #[error("event stream message CRC mismatch (computed {computed:#010x}, sent {sent:#010x})")]
    MessageCrc { computed: u32, sent: u32 },
    #[error("event stream message length {0} is out of range")]
    Length(usize),
    #[error("malformed event stream headers: {0}")]
    Headers(&'static str),
    #[error("the event stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
}

/// Decodes messages from bytes fed in any split.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// The current message's total length, once its prelude was checked.
    pending: Option<usize>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Add bytes from the wire.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `None` when more bytes are needed. After an error the stream is unusable.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let total = match self.pending {
            Some(t) => t,
            None => {
                if self.buf.len() < 12 {
                    return Ok(None);
                }
                let total = be_u32(&self.buf[0..4]) as usize;
                let headers_len = be_u32(&self.buf[4..8]) as usize;
                let sent = be_u32(&self.buf[8..12]);
                let computed = crc32(&self.buf[0..8]);
                if computed != sent {
                    return Err(FrameError::PreludeCrc { computed, sent });
                }
                if !(OVERHEAD..=MAX_MESSAGE).contains(&total) || headers_len > total - OVERHEAD {
                    return Err(FrameError::Length(total));
                }
                self.pending = Some(total);
                total
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        let frame = self.buf.split_to(total).freeze();
        let sent = be_u32(&frame[total - 4..]);
        let computed = crc32(&frame[..total - 4]);
        if computed != sent {
            return Err(FrameError::MessageCrc { computed, sent });
        }
        let headers_len = be_u32(&frame[4..8]) as usize;
        let headers = parse_headers(&frame[12..12 + headers_len])?;
        let payload = frame.slice(12 + headers_len..total - 4);
        Ok(Some(Message { headers, payload }))
    }

    /// The stream ended: an error when a message was cut short.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated(self.buf.len()))
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let short = FrameError::Headers("a header runs past the headers section");
    let mut out = Vec::with_capacity(3);
    while b.has_remaining() {
        let name_len = usize::from(b.get_u8());
        if name_len == 0 || b.remaining() < name_len + 1 {
            return Err(short);
        }
        let name = std::str::from_utf8(&b[..name_len])
            .map_err(|_| FrameError::Headers("a header name is not UTF-8"))?
            .to_string();
        b.advance(name_len);
        let need = |b: &[u8], n: usize| {
            if b.remaining() < n {
                Err(FrameError::Headers(
                    "a header value runs past the headers section",
                ))
            } else {
                Ok(())
            }
        };
        let value = match b.get_u8() {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => {
                need(b, 1)?;
                HeaderValue::Byte(b.get_i8())
            }
            3 => {
                need(b, 2)?;
                HeaderValue::Short(b.get_i16())
            }
            4 => {
                need(b, 4)?;
                HeaderValue::Int(b.get_i32())
            }
            5 => {
                need(b, 8)?;
                HeaderValue::Long(b.get_i64())
            }
            t @ (6 | 7) => {
                need(b, 2)?;
                let len = usize::from(b.get_u16());
                need(b, len)?;
                let raw = &b[..len];
                let v = if t == 6 {
                    HeaderValue::Bytes(Bytes::copy_from_slice(raw))
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(raw)
                            .map_err(|_| FrameError::Headers("a string header is not UTF-8"))?
                            .to_string(),
                    )
                };
                b.advance(len);
                v
            }
            8 => {
                need(b, 8)?;
                HeaderValue::Timestamp(b.get_i64())
            }
            9 => {
                need(b, 16)?;
                let mut u = [0u8; 16];
                b.copy_to_slice(&mut u);
                HeaderValue::Uuid(u)
            }
            _ => return Err(FrameError::Headers("unknown header value type")),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Encode one message with string headers (tests build upstream streams with it).
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = OVERHEAD + h.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An event message as Bedrock sends it.
#[cfg(test)]
pub fn event(event_type: &str, payload: &str) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// Known frames (an encoder's documented examples): no headers, and one `content-type` header.
    #[test]
    fn known_frames_decode() {
        let mut plain = vec![0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138];
        plain.extend_from_slice(br#"{"foo": "bar"}"#);
        plain.extend_from_slice(&[174, 114, 88, 228]);
        assert_eq!(encode(&[], br#"{"foo": "bar"}"#), plain);
        let mut d = Decoder::new();
        d.push(&plain);
        let m = d.next_message().unwrap().unwrap();
        assert!(m.headers.is_empty());
        assert_eq!(&m.payload[..], br#"{"foo": "bar"}"#);

        let with_header = encode(
            &[("content-type", "application/json")],
            br#"{"foo": "bar"}"#,
        );
        assert_eq!(
            &with_header[..12],
            &[0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70]
        );
        assert_eq!(&with_header[58..], &[111, 162, 191, 59]);
        let mut d = Decoder::new();
        d.push(&with_header);
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert!(d.next_message().unwrap().is_none());
        d.finish().unwrap();
    }

    fn sample_stream() -> Vec<u8> {
        let mut wire = Vec::new();
        wire.extend(event("messageStart", r#"{"role":"assistant"}"#));
        for i in 0..5 {
            wire.extend(event(
                "contentBlockDelta",
                &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"piece {i} é"}},"p":"abc"}}"#),
            ));
        }
        wire.extend(event("messageStop", r#"{"stopReason":"end_turn"}"#));
        wire
    }

    fn decode_in(chunks: &[&[u8]]) -> Vec<Message> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(m) = d.next_message().unwrap() {
                out.push(m);
            }
        }
        d.finish().unwrap();
        out
    }

    #[test]
    fn decodes_across_every_two_way_split() {
        let wire = sample_stream();
        let whole = decode_in(&[&wire]);
        assert_eq!(whole.len(), 7);
        assert_eq!(whole[6].header(":event-type"), Some("messageStop"));
        for split in 0..=wire.len() {
            let (a, b) = wire.split_at(split);
            assert_eq!(decode_in(&[a, b]), whole, "split at {split}");
        }
    }

    #[test]
    fn decodes_across_random_splits_and_single_bytes() {
        let wire = sample_stream();
        let whole = decode_in(&[&wire]);
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode_in(&bytes), whole);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let mut chunks = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = rng.usize(1..=rest.len().min(40));
                let (a, b) = rest.split_at(n);
                chunks.push(a);
                rest = b;
            }
            assert_eq!(decode_in(&chunks), whole);
        }
    }

    #[test]
    fn corrupted_crcs_are_errors() {
        let good = event("messageStart", r#"{"role":"assistant"}"#);
        // A flipped payload byte breaks the message CRC.
        let mut bad = good.clone();
        let at = bad.len() - 6;
        bad[at] ^= 0x01;
        let mut d = Decoder::new();
        d.push(&bad);
        assert!(matches!(
            d.next_message(),
            Err(FrameError::MessageCrc { .. })
        ));
        // A flipped length byte breaks the prelude CRC, detected before the rest arrives.
        let mut bad = good.clone();
        bad[3] ^= 0x01;
        let mut d = Decoder::new();
        d.push(&bad[..12]);
        assert!(matches!(
            d.next_message(),
            Err(FrameError::PreludeCrc { .. })
        ));
        // A cut stream is reported at the end.
        let mut d = Decoder::new();
        d.push(&good[..good.len() - 3]);
        assert!(d.next_message().unwrap().is_none());
        assert!(matches!(d.finish(), Err(FrameError::Truncated(_))));
    }

    #[test]
    fn every_header_type_parses() {
        let mut h = Vec::new();
        let mut add = |name: &str, t: u8, v: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(t);
            h.extend_from_slice(v);
        };
        add("t", 0, &[]);
        add("f", 1, &[]);
        add("b", 2, &[0xff]);
        add("s", 3, &[0, 2]);
        add("i", 4, &[0, 0, 0, 3]);
        add("l", 5, &[0, 0, 0, 0, 0, 0, 0, 4]);
        add("y", 6, &[0, 2, 9, 9]);
        add("ts", 8, &[0, 0, 0, 0, 0, 0, 0, 5]);
        add("u", 9, &[1; 16]);
        let parsed = parse_headers(&h).unwrap();
        assert_eq!(parsed.len(), 9);
        assert_eq!(parsed[2].1, HeaderValue::Byte(-1));
        assert_eq!(parsed[6].1, HeaderValue::Bytes(Bytes::from_static(&[9, 9])));
        assert!(parse_headers(&[1, b'x', 42]).is_err());
        assert!(parse_headers(&[1, b'x', 7, 0, 5, b'a']).is_err());
    }
}
