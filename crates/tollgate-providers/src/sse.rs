//! Incremental Server-Sent Events decoding (any chunking, `\n`/`\r\n`/`\r` line ends, bounded) and event encoding.

use crate::translate::MAX_UPSTREAM_BODY;

/// Longest SSE line, and largest event `data` (its `data:` lines joined), the decoder takes from an upstream
/// before it fails with [`SseError::TooLong`]. The same bound as a complete upstream body: a stream's last
/// event may carry the whole answer (the Responses API's `response.completed`), so it may be as large as the
/// non-streamed answer would be, and no larger. At most about twice this is buffered per stream (a pending
/// line while an event's data is pending).
pub const MAX_SSE_EVENT: usize = MAX_UPSTREAM_BODY;

/// Why decoding stopped. The decoder is not usable after an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line, or the data of one event, is longer than the limit.
    #[error("an SSE line or event is longer than {limit} bytes")]
    TooLong { limit: usize },
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Decodes a byte stream into events; keeps any incomplete tail for the next push.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` already searched for a line end (none there): each byte is scanned once,
    /// however slowly a long line arrives.
    scanned: usize,
    current: SseEvent,
    has_data: bool,
    limit: usize,
    /// Bytes searched for line ends so far (tests check that each byte is searched once).
    #[cfg(test)]
    examined: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_SSE_EVENT)
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder refusing lines and event data longer than `limit` bytes (tests use small limits).
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder {
            buf: Vec::new(),
            scanned: 0,
            current: SseEvent::default(),
            has_data: false,
            limit,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Feed bytes; complete events are appended to `out`. An `Err` when a line or an event's data would
    /// exceed the limit (events completed before it are in `out`); whatever the chunking, the same input
    /// fails.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        let mut scan = self.scanned;
        let result = loop {
            let found = memchr::memchr2(b'\n', b'\r', &self.buf[scan..]);
            #[cfg(test)]
            {
                self.examined += found.map_or(self.buf.len() - scan, |i| i + 1);
            }
            let Some(i) = found else {
                scan = self.buf.len();
                break Ok(());
            };
            let line_end = scan + i;
            let term_len = if self.buf[line_end] == b'\r' {
                match self.buf.get(line_end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A trailing '\r' may be the first half of "\r\n": wait for more (and look at it again).
                    None => {
                        scan = line_end;
                        break Ok(());
                    }
                }
            } else {
                1
            };
            if line_end - pos > self.limit {
                break Err(self.too_long());
            }
            let line = String::from_utf8_lossy(&self.buf[pos..line_end]).into_owned();
            pos = line_end + term_len;
            scan = pos;
            if let Err(e) = self.line(&line, out) {
                break Err(e);
            }
        };
        self.buf.drain(..pos);
        self.scanned = scan - pos;
        result?;
        // The incomplete line (without a '\r' kept back, which ends it) is already too long.
        if self.scanned > self.limit {
            return Err(self.too_long());
        }
        Ok(())
    }

    /// The stream ended: dispatch a last event that had no blank line after it.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.buf.is_empty() {
            // A '\r' kept back by `push` (it might have been the first half of "\r\n") ends the last line.
            let text = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
            if text.len() > self.limit {
                return Err(self.too_long());
            }
            let line = String::from_utf8_lossy(text).into_owned();
            self.buf.clear();
            self.scanned = 0;
            self.line(&line, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn too_long(&self) -> SseError {
        SseError::TooLong { limit: self.limit }
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                let sep = usize::from(self.has_data);
                if self.current.data.len() + sep + value.len() > self.limit {
                    return Err(self.too_long());
                }
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value.to_string()),
            "id" => self.current.id = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(std::mem::take(&mut self.current));
        } else {
            self.current = SseEvent::default();
        }
        self.has_data = false;
    }
}

/// Append the wire form of an event to `out`.
pub fn encode(event: Option<&str>, data: &[u8], out: &mut Vec<u8>) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = vec![];
        for c in chunks {
            d.push(c, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    /// Decode with `limit`, in the given chunks: the events, and the error if decoding failed.
    fn decode_limited(limit: usize, chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<SseError>) {
        let mut d = SseDecoder::with_limit(limit);
        let mut out = vec![];
        for c in chunks {
            if let Err(e) = d.push(c, &mut out) {
                return (out, Some(e));
            }
        }
        let r = d.finish(&mut out).err();
        (out, r)
    }

    /// `wire` in one piece, byte by byte, and split at every position: the same result.
    fn same_for_every_chunking(limit: usize, wire: &[u8]) -> (Vec<SseEvent>, Option<SseError>) {
        let whole = decode_limited(limit, &[wire]);
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode_limited(limit, &bytes), whole, "byte by byte");
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            assert_eq!(decode_limited(limit, &[a, b]), whole, "split at {split}");
        }
        whole
    }

    #[test]
    fn a_line_or_event_over_the_limit_fails_whatever_the_chunking() {
        let too_long = Some(SseError::TooLong { limit: 10 });
        // Exactly at the limit: a line of 10 bytes; data of 10 bytes (two lines joined by '\n').
        let (ev, err) = same_for_every_chunking(10, b"data:12345\n\ndata:abcd\ndata:efghi\n\n");
        assert_eq!(err, None);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            vec!["12345", "abcd\nefghi"]
        );
        // CRLF and a trailing CR end lines, they are not part of them.
        let (ev, err) = same_for_every_chunking(10, b"data: 1234\r\n\r\ndata: abcd\r");
        assert_eq!((ev.len(), err), (2, None));
        // A line one byte over the limit: with its newline, at the end of the stream, or never ending.
        let (ev, err) = same_for_every_chunking(10, b"data:1\n\ndata:123456\n\n");
        assert_eq!((ev.len(), err), (1, too_long.clone()));
        assert_eq!(same_for_every_chunking(10, b"data:123456").1, too_long);
        assert_eq!(same_for_every_chunking(10, b"data:123456\r").1, too_long);
        assert_eq!(same_for_every_chunking(10, b": a long comment").1, too_long);
        // Data lines each within the limit, over it together.
        let (ev, err) = same_for_every_chunking(10, b"data:1\n\ndata:abcde\ndata:fghij\n\n");
        assert_eq!(ev.len(), 1);
        assert_eq!(err, too_long);
    }

    #[test]
    fn a_line_that_never_ends_is_refused_before_it_is_buffered_whole() {
        let mut d = SseDecoder::with_limit(1024);
        let mut out = vec![];
        let piece = [b'x'; 100];
        let mut fed = 0;
        let err = loop {
            match d.push(&piece, &mut out) {
                Ok(()) => fed += piece.len(),
                Err(e) => break e,
            }
            assert!(fed <= 1024, "still buffering after {fed} bytes");
        };
        assert_eq!(err, SseError::TooLong { limit: 1024 });
        assert!(d.buf.len() <= 1024 + piece.len());
    }

    #[test]
    fn each_byte_is_searched_for_a_line_end_once() {
        // A long line arriving a byte at a time, then a CR kept back until its LF.
        let mut d = SseDecoder::new();
        let mut out = vec![];
        let n = 10_000;
        d.push(b"data: ", &mut out).unwrap();
        for _ in 0..n {
            d.push(b"x", &mut out).unwrap();
        }
        d.push(b"\r", &mut out).unwrap();
        d.push(b"\n\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), n);
        // Every byte once, plus the kept-back CR a second time.
        let total = "data: ".len() + n + 3;
        assert!(
            d.examined <= total + 1,
            "{} bytes searched for {total}",
            d.examined
        );
    }

    #[test]
    fn decodes_across_arbitrary_splits() {
        let wire =
            b"data: {\"a\":1}\n\nevent: ping\ndata: x\ndata: y\n\n: comment\n\ndata: [DONE]\n\n";
        let whole = decode_all(&[wire]);
        assert_eq!(whole.len(), 3);
        assert_eq!(
            whole[1],
            SseEvent {
                event: Some("ping".into()),
                data: "x\ny".into(),
                id: None
            }
        );
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            assert_eq!(decode_all(&[a, b]), whole, "split at {split}");
        }
    }

    #[test]
    fn handles_crlf_and_cr() {
        let ev = decode_all(&[b"data: a\r", b"\n\r\ndata: b\r\rdata:c"]);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
    }

    /// Found by fuzzing (`sse_decode`): a stream ending in "\r" kept the CR in the last event's data.
    #[test]
    fn trailing_cr_at_the_end_is_a_line_end() {
        let ev = decode_all(&[b"data: {\"a\":1}\x8d\r"]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "{\"a\":1}\u{fffd}");
        assert_eq!(
            decode_all(&[b"data: x\r", b""]),
            decode_all(&[b"data: x\n"])
        );
        let ev = decode_all(&[b"event: e\r"]);
        assert!(ev.is_empty());
    }

    #[test]
    fn encode_round_trips() {
        let mut out = vec![];
        encode(Some("response.completed"), b"{\"x\":1}\nsecond", &mut out);
        assert_eq!(
            out,
            b"event: response.completed\ndata: {\"x\":1}\ndata: second\n\n"
        );
        let ev = decode_all(&[&out]);
        assert_eq!(ev[0].data, "{\"x\":1}\nsecond");
    }
}
