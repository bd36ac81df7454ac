//! Server-Sent Events framing: one event as the bytes an `EventSource` reads.
//!
//! Every event the service sends, on every path (the hub's shared frames, a watcher's own
//! event name), is written by [`encode_event`], so the framing rules live in one place.
//! Event names reach the stream verbatim and are checked once, when an [`SseEventName`] is
//! made: a name that could end a line or inject a field is refused before anything is written.

use std::{
    borrow::Cow,
    fmt::{self, Write as _},
};

use bytes::{BufMut, BytesMut};

use crate::biz::is_safe_event_name;

/// An event name that is safe to write into a stream: `[A-Za-z0-9_.:-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEventName(Cow<'static, str>);

impl SseEventName {
    /// The event that carries the session's status, sent before every snapshot.
    pub const SESSION: SseEventName = SseEventName(Cow::Borrowed("session"));

    /// The name, or `None` if it is not a safe event name.
    pub fn new(name: &str) -> Option<Self> {
        is_safe_event_name(name).then(|| SseEventName(Cow::Owned(name.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SseEventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends one event: `id`, `event`, `retry` when given, the data, and the blank line that
/// dispatches it.
pub fn encode_event(
    out: &mut BytesMut,
    id: u64,
    event: &SseEventName,
    retry_ms: Option<u64>,
    data: &[u8],
) {
    // BytesMut grows as needed: writing to it cannot fail.
    let _ = writeln!(out, "id: {id}\nevent: {event}");
    if let Some(retry) = retry_ms {
        let _ = writeln!(out, "retry: {retry}");
    }
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}
