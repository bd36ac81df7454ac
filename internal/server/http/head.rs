//! The first request head of a connection, read and parsed by the serve loop itself, to pick
//! the path: the lean SSE writer or hyper.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, header},
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
    /// No complete head within [`MAX_HEAD`] bytes.
    TooLarge,
    /// The client went away first.
    Closed,
}

pub struct LeanRequest {
    pub request: Request<Body>,
    /// HTTP/1.1 without `Connection: close`. HTTP/1.0 connections are closed after their answer.
    pub keep_alive: bool,
}

/// Reads until the head is complete. The caller bounds the time.
pub async fn read_first(tcp: &mut TcpStream) -> FirstHead {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let mut scanned = 0;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        match tcp.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return FirstHead::Closed,
            Ok(_) => {}
        }
        // Parse only once a blank line is there: parsing after every read would cost a
        // client sending a byte at a time quadratic time.
        match blank_line_end(&buf, scanned) {
            Some(end) if end <= MAX_HEAD => {
                if let Some(first) = classify(&mut buf) {
                    return first;
                }
                scanned = end;
            }
            _ if buf.len() >= MAX_HEAD => return FirstHead::TooLarge,
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

/// `None` if the head is not complete yet.
fn classify(buf: &mut BytesMut) -> Option<FirstHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let lean = match parsed.parse(&buf[..]) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(len)) if len == buf.len() => lean_request(&parsed),
        Ok(httparse::Status::Complete(_)) | Err(_) => None,
    };
    Some(match lean {
        Some(lean) => FirstHead::Lean(Box::new(lean)),
        None => FirstHead::Other(std::mem::take(buf).freeze()),
    })
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
