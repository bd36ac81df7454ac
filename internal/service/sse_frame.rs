//! Server-Sent Events framing: one event as the bytes an `EventSource` reads.
//!
//! Every event the service sends, on every path (the hub's shared frames, a watcher's own
//! event name), is written by [`encode_event`], so the framing rules live in one place.
//! Event names reach the stream verbatim; they arrive as an [`EventName`], checked once where
//! the name entered (config or query), so a name that could end a line is never written.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use crate::biz::EventName;

/// Appends one event: `id`, `event`, `retry` when given, the data, and the blank line that
/// dispatches it.
///
/// A line break ends a field in SSE, so data that holds one is written as one `data:` line per
/// line, which a client joins back with LF. CR, LF and CRLF all break lines, and the client
/// sees each as LF: SSE cannot carry a CR in data. Any other byte is sent as it is. JSON data
/// (what the service sends) has no raw line breaks and always takes one line.
pub fn encode_event(
    out: &mut BytesMut,
    id: u64,
    event: &EventName,
    retry_ms: Option<u64>,
    data: &[u8],
) {
    // BytesMut grows as needed: writing to it cannot fail.
    let _ = writeln!(out, "id: {id}\nevent: {event}");
    if let Some(retry) = retry_ms {
        let _ = writeln!(out, "retry: {retry}");
    }
    let mut rest = data;
    loop {
        out.put_slice(b"data: ");
        let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
            out.put_slice(rest);
            out.put_slice(b"\n\n");
            return;
        };
        let (line, tail) = rest.split_at(at);
        out.put_slice(line);
        out.put_u8(b'\n');
        rest = match tail {
            [b'\r', b'\n', after @ ..] => after,
            [_, after @ ..] => after,
            [] => tail,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(retry_ms: Option<u64>, data: &str) -> String {
        let mut out = BytesMut::new();
        let Some(name) = EventName::new("upload_by_qr") else {
            panic!("a safe name is accepted")
        };
        encode_event(&mut out, 7, &name, retry_ms, data.as_bytes());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn one_line_data_is_one_data_field() {
        assert_eq!(
            encoded(Some(2000), "[]"),
            "id: 7\nevent: upload_by_qr\nretry: 2000\ndata: []\n\n"
        );
        assert_eq!(encoded(None, ""), "id: 7\nevent: upload_by_qr\ndata: \n\n");
    }

    #[test]
    fn every_kind_of_line_break_starts_a_new_data_line() {
        assert_eq!(
            encoded(None, "a\r\nb\rc\nd\n"),
            "id: 7\nevent: upload_by_qr\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        // CR then CRLF: two breaks, not three.
        assert_eq!(
            encoded(None, "\r\r\n"),
            "id: 7\nevent: upload_by_qr\ndata: \ndata: \ndata: \n\n"
        );
    }

    #[test]
    fn data_cannot_end_the_event_or_add_fields() {
        // Written verbatim, this would end the event early and start another with id 0.
        let text = encoded(None, "x\n\nid: 0\nevent: evil\rretry: 1");
        assert_eq!(
            text,
            "id: 7\nevent: upload_by_qr\ndata: x\ndata: \ndata: id: 0\ndata: event: evil\ndata: retry: 1\n\n"
        );
        assert_eq!(text.matches("\n\n").count(), 1);
    }

    #[test]
    fn only_safe_names_are_accepted() {
        assert!(EventName::new("upload_by_qr").is_some());
        assert!(EventName::new("a.b:c-d_9").is_some());
        for bad in ["", "a b", "a\nb", "a\rb", "a\0b", "é", &"x".repeat(65)] {
            assert!(EventName::new(bad).is_none(), "{bad:?}");
        }
        assert_eq!(EventName::SESSION.as_str(), "session");
    }
}
