//! SSE event encoding: the service's one encoder, `service::sse_frame::encode_event`, read back
//! by an `EventSource` parser written here from the WHATWG HTML standard (§ 9.2.6, "Interpreting
//! an event stream").
//!
//! Invariants:
//! - an event name is accepted exactly when it matches `[A-Za-z0-9_.:-]{1,64}` (checked
//!   against a copy of that rule written here), so nothing else ever reaches the encoder;
//! - for any accepted name, any id, any `retry` and any data string (line breaks of every
//!   kind, NUL, unicode), the encoded bytes parse as exactly one event with the same id, name
//!   and data, and set the reconnection time when `retry` is given. SSE has one line break in
//!   data, LF: a CR or CRLF in the data arrives as LF, as it would from any conforming server;
//!   every other character arrives as sent;
//! - two events written one after the other parse as those two events, in order.

#![no_main]

mod common;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use qrupload::{biz::EventName, service::sse_frame::encode_event};

#[derive(Arbitrary, Debug)]
struct Input {
    first: Sent,
    second: Option<Sent>,
}

#[derive(Arbitrary, Debug)]
struct Sent {
    id: u64,
    retry_ms: Option<u64>,
    name: String,
    data: String,
}

#[derive(Debug, PartialEq, Eq)]
struct Received {
    last_event_id: String,
    event: String,
    data: String,
}

fuzz_target!(|input: Input| {
    let Some(first) = accepted(&input.first) else {
        common::count("name_refused");
        return;
    };
    if input.first.data.contains(['\r', '\n']) {
        common::count("data_with_line_breaks");
    }
    let mut out = BytesMut::new();
    encode_event(
        &mut out,
        input.first.id,
        &first,
        input.first.retry_ms,
        input.first.data.as_bytes(),
    );
    let text = std::str::from_utf8(&out).expect("a string is encoded as UTF-8");
    let (events, retry) = parse(text);
    assert_eq!(events, vec![expected(&input.first)], "encoded: {text:?}");
    assert_eq!(retry, input.first.retry_ms);

    let Some(second) = input
        .second
        .as_ref()
        .and_then(|s| accepted(s).map(|n| (s, n)))
    else {
        common::count("one_event");
        return;
    };
    common::count("two_events");
    let (sent, name) = second;
    encode_event(
        &mut out,
        sent.id,
        &name,
        sent.retry_ms,
        sent.data.as_bytes(),
    );
    let text = std::str::from_utf8(&out).expect("a string is encoded as UTF-8");
    let (events, retry) = parse(text);
    assert_eq!(
        events,
        vec![expected(&input.first), expected(sent)],
        "encoded: {text:?}"
    );
    assert_eq!(retry, sent.retry_ms.or(input.first.retry_ms));
});

/// The encoder's name type, checked against the rule it must implement.
fn accepted(sent: &Sent) -> Option<EventName> {
    let name = EventName::new(&sent.name);
    let safe = (1..=64).contains(&sent.name.len())
        && sent
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    assert_eq!(name.is_some(), safe, "event name {:?}", sent.name);
    name
}

fn expected(sent: &Sent) -> Received {
    Received {
        last_event_id: sent.id.to_string(),
        event: sent.name.clone(),
        data: sent.data.replace("\r\n", "\n").replace('\r', "\n"),
    }
}

/// The events an `EventSource` dispatches for `stream`, and the last reconnection time set.
fn parse(stream: &str) -> (Vec<Received>, Option<u64>) {
    let mut events = Vec::new();
    let mut retry = None;
    let (mut data, mut event_type, mut last_event_id) =
        (String::new(), String::new(), String::new());
    let mut rest = stream.strip_prefix('\u{FEFF}').unwrap_or(stream);
    // Lines end with CRLF, LF or CR; a last line without an end is never processed.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        rest = &rest[end..];
        rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.get(1..))
            .unwrap_or_default();
        if line.is_empty() {
            // Dispatch.
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            let event = if event_type.is_empty() {
                "message".to_owned()
            } else {
                std::mem::take(&mut event_type)
            };
            events.push(Received {
                last_event_id: last_event_id.clone(),
                event,
                data: std::mem::take(&mut data),
            });
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok();
            }
            _ => {}
        }
    }
    (events, retry)
}
