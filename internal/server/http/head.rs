//! Request heads, read and checked by the serve loop itself before hyper sees them: the first
//! of a connection here, to pick the path (the lean SSE writer or hyper), every later one by
//! [`super::gate`] with the same [`parse`]. A head the checks refuse is answered with SPEC's
//! JSON error and the connection closed, whichever head of the connection it is.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header},
};
use bytes::{Bytes, BytesMut};
use tokio::{io::AsyncReadExt, net::TcpStream};

pub use super::framing::Framing;
use crate::service::error::ApiError;

/// The largest request head accepted; larger → 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most heads fit in the first read; a browser's with cookies may take a second.
const FIRST_READ: usize = 1024;
/// As hyper's default; more headers → 431.
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

/// Reads into `buf` until the head is complete. The caller bounds the time (and answers 408
/// if `buf` holds a part of a head by then).
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
            _ if buf.len() >= MAX_HEAD => return FirstHead::Refuse(TOO_LARGE),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

impl Refusal {
    /// A head that did not arrive whole within `header_read_timeout` of its first byte.
    pub const TOO_SLOW: Refusal = Refusal {
        status: StatusCode::REQUEST_TIMEOUT,
        message: "the request head arrived too slowly",
    };

    /// The whole answer: SPEC's JSON error, closing the connection.
    pub fn answer(&self) -> Vec<u8> {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        let error = ApiError {
            message: self.message.into(),
            ..ApiError::for_status(self.status)
        };
        let body = error.json_body();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ndate: {now}\r\n\r\n{body}",
            self.status.as_str(),
            self.status.canonical_reason().unwrap_or(""),
            body.len(),
        )
        .into_bytes()
    }
}

/// The longest request target accepted; longer → 414.
const MAX_TARGET: usize = 8 * 1024;
/// The first line of HTTP/2's connection preface, which is no HTTP/1 head.
pub const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// `None` if the head is not complete yet.
fn classify(buf: &mut BytesMut) -> Option<FirstHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let lean = match parsed.parse(&buf[..]) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(len)) => {
            if let Err(refusal) = inspect(&parsed) {
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

/// A request head checked as every head of a connection is (see [`parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not complete yet.
    Partial,
    /// A head hyper may read: its length, and how its body is delimited.
    Head { len: usize, framing: Framing },
    /// A head the serve loop answers itself, and closes.
    Refuse(Refusal),
}

/// Parses and checks a request head at the start of `buf`, as the first head of a connection
/// is checked: a later head gets the same answers as a first one.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Parsed::Refuse(TOO_LARGE),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Parsed::Refuse(TOO_LARGE),
        Ok(httparse::Status::Complete(len)) => match inspect(&parsed) {
            Ok(framing) => Parsed::Head { len, framing },
            Err(refusal) => Parsed::Refuse(refusal),
        },
        Err(e) => Parsed::Refuse(parse_refusal(e)),
    }
}

/// The index just past a head's blank line, looked for from `from` on: heads are parsed only
/// once it is there, so that a head sent a byte at a time costs linear time, not quadratic.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    blank_line_end(buf, from)
}

const TOO_LARGE: Refusal = Refusal {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    message: "the request head is larger than 16 KiB",
};

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

/// What hyper would refuse in a well-formed head (plus a target too long for any route and
/// framings that HTTP allows a server to refuse), else how the body is delimited.
///
/// The length rule: a body must be delimited by `Content-Length` or, on HTTP/1.1,
/// `Transfer-Encoding: chunked`. Chunked on HTTP/1.0 has no defined length there: 411
/// `LENGTH_REQUIRED` (send `Content-Length`). Both headers at once are a smuggling vector
/// (RFC 9112 §6.1 lets a server refuse them): 400. Routes that need a body refuse a head with
/// neither (see `service::http::extract::require_length`).
fn inspect(parsed: &httparse::Request<'_, '_>) -> Result<Framing, Refusal> {
    let refuse = |status, message| Err(Refusal { status, message });
    let Some(target) = parsed.path else {
        return refuse(StatusCode::BAD_REQUEST, "the request line is malformed");
    };
    if target.len() > MAX_TARGET {
        return refuse(
            StatusCode::URI_TOO_LONG,
            "the request target is longer than 8 KiB",
        );
    }
    if target.parse::<Uri>().is_err() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request target is not a valid URI",
        );
    }
    let mut length: Option<&[u8]> = None;
    let mut chunked = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let digits = !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit);
            if !digits || length.is_some_and(|l| l != h.value) {
                return refuse(StatusCode::BAD_REQUEST, "Content-Length is not one number");
            }
            length = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let Ok(codings) = std::str::from_utf8(h.value) else {
                return refuse(
                    StatusCode::NOT_IMPLEMENTED,
                    "only the chunked transfer coding is supported",
                );
            };
            for coding in codings.split(',') {
                if !coding.trim().eq_ignore_ascii_case("chunked") {
                    return refuse(
                        StatusCode::NOT_IMPLEMENTED,
                        "only the chunked transfer coding is supported",
                    );
                }
                if chunked {
                    return refuse(StatusCode::BAD_REQUEST, "chunked is applied more than once");
                }
                chunked = true;
            }
        }
    }
    if chunked && parsed.version == Some(0) {
        return refuse(
            StatusCode::LENGTH_REQUIRED,
            "HTTP/1.0 has no Transfer-Encoding: send Content-Length",
        );
    }
    match (length, chunked) {
        (Some(_), true) => refuse(
            StatusCode::BAD_REQUEST,
            "Content-Length and Transfer-Encoding together",
        ),
        (None, true) => Ok(Framing::Chunked),
        (Some(digits), false) => std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .map(Framing::Length)
            .map_or_else(
                || refuse(StatusCode::BAD_REQUEST, "Content-Length is not one number"),
                Ok,
            ),
        (None, false) => Ok(Framing::Empty),
    }
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
