//! The first request head of a connection, read and parsed by the serve loop itself, to pick
//! the path: the lean SSE writer or hyper.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header},
};
use bytes::{Bytes, BytesMut};
use tokio::{io::AsyncReadExt, net::TcpStream};

/// The largest request head accepted, here and by hyper for later heads; larger → 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most heads fit in the first read; a browser's with cookies may take a second.
const FIRST_READ: usize = 1024;
/// As hyper's default: more headers → hyper answers 431.
const MAX_HEADERS: usize = 100;
/// The only route served on the lean path.
const SSE_PATH: &str = "/v1/api/sse/events";

pub enum FirstHead {
    /// A bodiless `GET` of the SSE route and nothing after it.
    Lean(Box<LeanRequest>),
    /// Anything else (another request, a malformed head, HTTP/2's preface): hyper reads it
    /// again from these bytes.
    Other(Bytes),
    /// A head hyper would refuse with a bare status: the serve loop answers it itself, with
    /// SPEC's JSON error, and closes.
    Refuse(Refusal),
    /// The client went away first.
    Closed,
}

pub struct LeanRequest {
    pub request: Request<Body>,
    /// HTTP/1.1 without `Connection: close`. HTTP/1.0 connections are closed after their answer.
    pub keep_alive: bool,
}

/// A buffer for [`read_first`].
pub fn head_buffer() -> BytesMut {
    BytesMut::with_capacity(FIRST_READ)
}

/// Reads into `buf` until the head is complete. The caller bounds the time.
pub async fn read_first(tcp: &mut TcpStream, buf: &mut BytesMut) -> FirstHead {
    let buf = &mut *buf;
    let mut scanned = 0;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        match tcp.read_buf(buf).await {
            Ok(0) | Err(_) => return FirstHead::Closed,
            Ok(_) => {}
        }
        // Parse only once a blank line is there: parsing after every read would cost a
        // client sending a byte at a time quadratic time.
        match blank_line_end(buf, scanned) {
            Some(end) if end <= MAX_HEAD => {
                if let Some(first) = classify(buf) {
                    return first;
                }
                scanned = end;
            }
            _ if buf.len() >= MAX_HEAD => {
                return FirstHead::Refuse(Refusal {
                    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    message: "the request head is larger than 16 KiB",
                });
            }
            _ => scanned = buf.len(),
        }
    }
}

/// The index just past the first empty line (`\n\n` or `\n\r\n`) at or after `from`.
fn blank_line_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    buf.get(start..)?
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .find_map(|(i, _)| {
            let at = start + i;
            match (buf.get(at + 1), buf.get(at + 2)) {
                (Some(b'\n'), _) => Some(at + 2),
                (Some(b'\r'), Some(b'\n')) => Some(at + 3),
                _ => None,
            }
        })
}

/// Why the serve loop refuses a head, as the status and message of the error it sends.
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

/// The longest request target accepted; longer → 414.
const MAX_TARGET: usize = 8 * 1024;
/// The first line of HTTP/2's connection preface, which is no HTTP/1 head.
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// `None` if the head is not complete yet.
fn classify(buf: &mut BytesMut) -> Option<FirstHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let lean = match parsed.parse(&buf[..]) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(len)) => {
            if let Some(refusal) = refusal(&parsed) {
                return Some(FirstHead::Refuse(refusal));
            }
            if len == buf.len() {
                lean_request(&parsed)
            } else {
                None
            }
        }
        Err(_) if buf.starts_with(H2_PREFACE_LINE) => None,
        Err(e) => return Some(FirstHead::Refuse(parse_refusal(e))),
    };
    Some(match lean {
        Some(lean) => FirstHead::Lean(Box::new(lean)),
        None => FirstHead::Other(std::mem::take(buf).freeze()),
    })
}

fn parse_refusal(e: httparse::Error) -> Refusal {
    let (status, message) = match e {
        httparse::Error::TooManyHeaders => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request has more than 100 header fields",
        ),
        httparse::Error::HeaderName => (
            StatusCode::BAD_REQUEST,
            "a header line has no colon or an invalid name",
        ),
        httparse::Error::HeaderValue => (
            StatusCode::BAD_REQUEST,
            "a header value holds a forbidden byte",
        ),
        _ => (StatusCode::BAD_REQUEST, "the request line is malformed"),
    };
    Refusal { status, message }
}

/// What hyper would refuse in a well-formed head (plus a target too long for any route).
fn refusal(parsed: &httparse::Request<'_, '_>) -> Option<Refusal> {
    let refuse = |status, message| Some(Refusal { status, message });
    if parsed.path.is_some_and(|p| p.len() > MAX_TARGET) {
        return refuse(
            StatusCode::URI_TOO_LONG,
            "the request target is longer than 8 KiB",
        );
    }
    let mut length: Option<&[u8]> = None;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let digits = !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit);
            if !digits || length.is_some_and(|l| l != h.value) {
                return refuse(StatusCode::BAD_REQUEST, "Content-Length is not one number");
            }
            length = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let chunked_only = std::str::from_utf8(h.value).is_ok_and(|v| {
                v.split(',')
                    .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
            });
            if !chunked_only {
                return refuse(
                    StatusCode::NOT_IMPLEMENTED,
                    "only the chunked transfer coding is supported",
                );
            }
            if parsed.version == Some(0) {
                return refuse(StatusCode::BAD_REQUEST, "HTTP/1.0 has no Transfer-Encoding");
            }
        }
    }
    None
}

/// The request, if the lean path can serve it: `GET` of the SSE route over HTTP/1.x with
/// no body, no upgrade and headers `http` accepts. Anything unusual goes to hyper.
fn lean_request(parsed: &httparse::Request<'_, '_>) -> Option<LeanRequest> {
    if parsed.method != Some("GET") {
        return None;
    }
    let target = parsed.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != SSE_PATH {
        return None;
    }
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    let mut keep_alive = version == Version::HTTP_11;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        match name {
            header::CONTENT_LENGTH if value.as_bytes() != b"0" => return None,
            header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => return None,
            header::CONNECTION if has_token(&value, "close") => keep_alive = false,
            _ => {}
        }
        headers.append(name, value);
    }
    let uri: Uri = target.parse().ok()?;
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Some(LeanRequest {
        request,
        keep_alive,
    })
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
