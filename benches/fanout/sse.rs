//! The watchers' side of the wire: an HTTP/1.1 + chunked + SSE decoder that finds snapshot
//! image ids without a JSON parse.

use super::*;

/// One watcher's response, decoded as it arrives: status line and headers, the chunked body,
/// then SSE events split on blank lines. A snapshot event's image ids are found by scanning its
/// `data:` line for `"id":"…"`, without a JSON parse.
#[derive(Default)]
pub struct SseParser {
    /// `None` until the head is read; then whether the body is chunked.
    chunked: Option<bool>,
    /// Received bytes not yet consumed: the head, then chunk-size lines and partial chunks.
    pending: Vec<u8>,
    chunk_left: usize,
    crlf_left: usize,
    /// Decoded SSE text not yet split into events.
    text: Vec<u8>,
    /// Hashes of the image ids this watcher has already seen.
    seen: Vec<u64>,
    pub snapshots: u64,
    /// Comment-only events (`: ping`): heartbeats.
    pub heartbeats: u64,
    pub ended: bool,
}

impl SseParser {
    /// Consumes received bytes and calls `new_image` with every image id seen for the first
    /// time in a snapshot after the first one.
    pub fn feed(
        &mut self,
        data: &[u8],
        event: &str,
        new_image: &mut dyn FnMut(&str),
    ) -> Result<(), String> {
        self.pending.extend_from_slice(data);
        let chunked = match self.chunked {
            Some(chunked) => chunked,
            None => {
                let Some(end) = find(&self.pending, b"\r\n\r\n") else {
                    if self.pending.len() > 16 * 1024 {
                        return Err("response head too long".into());
                    }
                    return Ok(());
                };
                let head = String::from_utf8_lossy(&self.pending[..end]).to_ascii_lowercase();
                let status = head.split_whitespace().nth(1).unwrap_or("?");
                if status != "200" {
                    return Err(format!("HTTP status {status}"));
                }
                let chunked = head.contains("transfer-encoding: chunked");
                self.pending.drain(..end + 4);
                self.chunked = Some(chunked);
                chunked
            }
        };
        if chunked {
            self.dechunk()?;
        } else {
            self.text.append(&mut self.pending);
        }
        self.events(event, new_image);
        Ok(())
    }

    fn dechunk(&mut self) -> Result<(), String> {
        let buf = &self.pending;
        let mut at = 0;
        loop {
            if self.crlf_left > 0 {
                let n = self.crlf_left.min(buf.len() - at);
                at += n;
                self.crlf_left -= n;
                if self.crlf_left > 0 {
                    break;
                }
            }
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(buf.len() - at);
                self.text.extend_from_slice(&buf[at..at + n]);
                at += n;
                self.chunk_left -= n;
                if self.chunk_left > 0 {
                    break;
                }
                self.crlf_left = 2;
                continue;
            }
            let Some(eol) = find(&buf[at..], b"\r\n") else {
                break;
            };
            let line = String::from_utf8_lossy(&buf[at..at + eol]);
            let hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            at += eol + 2;
            if size == 0 {
                self.ended = true;
                break;
            }
            self.chunk_left = size;
        }
        self.pending.drain(..at);
        Ok(())
    }

    fn events(&mut self, event: &str, new_image: &mut dyn FnMut(&str)) {
        let mut start = 0;
        while let Some(end) = find(&self.text[start..], b"\n\n") {
            let block = &self.text[start..start + end];
            start += end + 2;
            let (mut name, mut data): (&[u8], &[u8]) = (b"message", b"");
            if !block.is_empty() && block.split(|&b| b == b'\n').all(|l| l.starts_with(b":")) {
                self.heartbeats += 1;
                continue;
            }
            for line in block.split(|&b| b == b'\n') {
                if let Some(v) = line.strip_prefix(b"event: ") {
                    name = v;
                } else if let Some(v) = line.strip_prefix(b"data: ") {
                    data = v;
                }
            }
            if name != event.as_bytes() {
                continue;
            }
            let first = self.snapshots == 0;
            self.snapshots += 1;
            for id in image_ids(data) {
                let mut hasher = DefaultHasher::new();
                id.hash(&mut hasher);
                let hash = hasher.finish();
                if !self.seen.contains(&hash) {
                    self.seen.push(hash);
                    if !first {
                        new_image(id);
                    }
                }
            }
        }
        self.text.drain(..start);
    }
}

/// The `"id":"…"` values of a snapshot's JSON array, in order.
pub fn image_ids(data: &[u8]) -> impl Iterator<Item = &str> {
    const KEY: &[u8] = b"\"id\":\"";
    let mut rest = data;
    std::iter::from_fn(move || {
        let at = find(rest, KEY)?;
        let tail = &rest[at + KEY.len()..];
        let end = tail.iter().position(|&b| b == b'"')?;
        rest = &tail[end..];
        std::str::from_utf8(&tail[..end]).ok()
    })
}
