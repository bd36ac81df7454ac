//! The lean path: the SSE route's answer written by the serve loop itself.
//!
//! The router answers the request exactly as it would through hyper. A stream
//! (`text/event-stream` with no length) is then written frame by frame, chunked on HTTP/1.1
//! and delimited by the close on HTTP/1.0, with nothing kept between frames but the socket,
//! the body and a few bytes of state: no read or write buffer. Meanwhile the socket is watched
//! for the client's EOF or reset, so a closed tab frees its watcher at once. Any other answer
//! (400, 404, 204, …) is written with its length, and the connection goes on through hyper.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, Version, header, response::Parts},
};
use bytes::Buf;
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::ServiceExt;

use super::{Shared, head::LeanRequest, io::WriteStall};
use crate::metrics::Metrics;

/// The router's answer, ready to write.
pub enum Answer {
    /// A stream: its head, then its frames as they come.
    Stream {
        head: Vec<u8>,
        body: Body,
        chunked: bool,
    },
    /// Any other answer, whole; `keep_alive` if the connection may carry another request.
    Whole { bytes: Vec<u8>, keep_alive: bool },
    /// The answer's body failed.
    Failed,
}

/// Asks the router, as hyper would. The caller boxes this: the router's future is large and
/// lives only until the answer is there.
pub async fn answer(
    lean: Box<LeanRequest>,
    remote: std::net::SocketAddr,
    shared: &Shared,
) -> Answer {
    let LeanRequest {
        mut request,
        keep_alive,
    } = *lean;
    let version = request.version();
    request.extensions_mut().insert(super::connect_info(remote));
    let response = match shared.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    if is_stream(&parts) {
        let chunked = version == Version::HTTP_11;
        return Answer::Stream {
            head: encode_head(&parts, version, Framing::Stream { chunked }, true),
            body,
            chunked,
        };
    }
    let Ok(collected) = body.collect().await else {
        return Answer::Failed;
    };
    let body = collected.to_bytes();
    let keep_alive = keep_alive && version == Version::HTTP_11 && !says_close(&parts);
    let mut bytes = encode_head(&parts, version, Framing::Length(body.len()), keep_alive);
    if may_have_body(parts.status) {
        bytes.extend_from_slice(&body);
    }
    Answer::Whole { bytes, keep_alive }
}

/// Writes a whole answer; false if the connection is done (closed, failed or not kept alive).
pub async fn write_whole(
    tcp: &mut TcpStream,
    bytes: Vec<u8>,
    keep_alive: bool,
    shared: &Shared,
) -> bool {
    let mut w = WriteStall::new(&mut *tcp, shared.limits.write_timeout);
    if let Err(e) = w.write_all(&bytes).await {
        if super::io::is_write_stall(&e) {
            shared.metrics.slow_client_dropped();
        }
        return false;
    }
    if !keep_alive {
        let _ = w.shutdown().await;
    }
    keep_alive
}

/// Writes a stream's head; false if the client is gone or stalled already.
pub async fn write_stream_head(tcp: &mut TcpStream, head: Vec<u8>, shared: &Shared) -> bool {
    let mut w = WriteStall::new(&mut *tcp, shared.limits.write_timeout);
    match w.write_all(&head).await {
        Ok(()) => true,
        Err(e) => {
            if super::io::is_write_stall(&e) {
                shared.metrics.slow_client_dropped();
            }
            false
        }
    }
}

/// Writes a stream's frames as they come, until the body ends, the client goes or stops
/// reading; the connection is closed after it. Holds at most one frame (a `Bytes` shared
/// with every watcher) while a write is blocked; the hub's one-slot `watch` keeps only the
/// latest snapshot behind it. This future lives as long as the watcher: keep it small.
pub async fn stream(tcp: &mut TcpStream, body: &mut Body, chunked: bool, shared: &Shared) {
    let _open = LeanStream::open(&shared.metrics);
    let (mut rd, wr) = tcp.split();
    let mut wr = WriteStall::new(wr, shared.limits.write_timeout);
    let mut scratch = [0u8; 16];
    let ended = loop {
        let data = tokio::select! {
            biased;
            () = client_gone(&mut rd, &mut scratch) => return,
            frame = body.frame() => match frame {
                None => break Ok(()),
                Some(Err(_)) => return,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    _ => continue,
                },
            },
        };
        // `SIZE\r\n DATA \r\n` on HTTP/1.1, the bare bytes on HTTP/1.0: one vectored write
        // when the socket takes it all.
        let mut size = [0u8; 18];
        let n = if chunked {
            chunk_size_line(data.len(), &mut size)
        } else {
            0
        };
        let tail: &[u8] = if chunked { b"\r\n" } else { b"" };
        let mut frame = Buf::chain(&size[..n], data).chain(tail);
        tokio::select! {
            biased;
            () = client_gone(&mut rd, &mut scratch) => return,
            written = wr.write_all_buf(&mut frame) => if let Err(e) = written {
                break Err(e);
            },
        }
    };
    let ended = match ended {
        Ok(()) if chunked => wr.write_all(b"0\r\n\r\n").await,
        other => other,
    };
    match ended {
        Ok(()) => {
            let _ = wr.shutdown().await;
        }
        Err(e) if super::io::is_write_stall(&e) => shared.metrics.slow_client_dropped(),
        Err(_) => {}
    }
}

/// Counts the stream in `qrupload_http_lean_streams` while it is open, however it ends.
struct LeanStream<'a>(&'a Metrics);

impl<'a> LeanStream<'a> {
    fn open(metrics: &'a Metrics) -> Self {
        metrics.lean_stream(true);
        LeanStream(metrics)
    }
}

impl Drop for LeanStream<'_> {
    fn drop(&mut self) {
        self.0.lean_stream(false);
    }
}

fn is_stream(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"))
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
        && may_have_body(parts.status)
}

fn says_close(parts: &Parts) -> bool {
    parts.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
    })
}

/// 1xx, 204 and 304 answers carry no body and no length.
fn may_have_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

enum Framing {
    Stream { chunked: bool },
    Length(usize),
}

/// The status line and headers as hyper writes them: every header the router set, then the
/// framing header, `connection: close` when closing, and `date` if the router set none.
fn encode_head(parts: &Parts, version: Version, framing: Framing, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("<none>")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut has_connection = false;
    for (name, value) in &parts.headers {
        match *name {
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING => continue,
            header::CONNECTION => has_connection = true,
            _ => {}
        }
        put_header(&mut out, name.as_str(), value);
    }
    match framing {
        Framing::Stream { chunked: true } => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n")
        }
        Framing::Stream { chunked: false } => {}
        Framing::Length(len) => {
            if may_have_body(parts.status) {
                out.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
            }
        }
    }
    if !keep_alive && version == Version::HTTP_11 && !has_connection {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        out.extend_from_slice(format!("date: {now}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Resolves when the client closes or resets the connection; anything it sends meanwhile is
/// discarded.
async fn client_gone<R: AsyncRead + Unpin>(rd: &mut R, scratch: &mut [u8]) {
    loop {
        match rd.read(scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// `{len:X}\r\n` into `out`, as hyper writes it; returns its length.
fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 16];
    let mut n = 0;
    let mut rest = len;
    loop {
        digits[n] = HEX[rest & 0xF];
        n += 1;
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    for (i, d) in digits[..n].iter().rev().enumerate() {
        out[i] = *d;
    }
    out[n] = b'\r';
    out[n + 1] = b'\n';
    n + 2
}
