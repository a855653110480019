//! Incremental Server-Sent Events decoding (any chunking, `\n`/`\r\n`/`\r` line ends) and event encoding.

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Decodes a byte stream into events; keeps any incomplete tail for the next push.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
                break;
            };
            let term_len = if rest[i] == b'\r' {
                match rest.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A trailing '\r' may be the first half of "\r\n": wait for more.
                    None => break,
                }
            } else {
                1
            };
            let line_end = pos + i;
            let line = String::from_utf8_lossy(&self.buf[pos..line_end]).into_owned();
            pos = line_end + term_len;
            self.line(&line, out);
        }
        self.buf.drain(..pos);
    }

    /// The stream ended: dispatch a last event that had no blank line after it.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.buf.is_empty() {
            // A '\r' kept back by `push` (it might have been the first half of "\r\n") ends the last line.
            let text = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
            let line = String::from_utf8_lossy(text).into_owned();
            self.buf.clear();
            self.line(&line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
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
            d.push(c, &mut out);
        }
        d.finish(&mut out);
        out
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
