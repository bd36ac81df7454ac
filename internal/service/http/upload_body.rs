//! The upload body as multer reads it, with the bounds multer lacks.
//!
//! multer buffers what comes before the first boundary, and each part's header block, until
//! it finds their end, without any limit, and searches its whole buffer again on every read.
//! A part header that never ends would therefore grow memory with the body and cost time
//! quadratic in its length. [`MeteredBody`] hands the body to multer in pieces of at most
//! [`PIECE`] bytes, one per poll, and counts what it handed over; the handler reports the
//! part data it got back through a [`Meter`]. The difference is what multer holds that is
//! not part data (boundaries, part headers, a preamble); once it passes
//! [`HEADER_ALLOWANCE`] per part, the body fails and the request answers 400.
//!
//! multer also stops reading at the closing boundary, so a body that was cut short after it
//! (the client closed before its `Content-Length` was reached) would pass unnoticed;
//! [`MeteredBody::finish`] reads the body to its end before anything is committed.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Largest piece handed to multer at once; small, so that the allowance below is tight.
const PIECE: usize = 16 * 1024;
/// What one part's boundary and header block may take on average: far above any browser's
/// (a 10 KB file name fits), far below what would matter for memory.
const HEADER_ALLOWANCE: u64 = 32 * 1024;
/// Bytes after the closing boundary (an epilogue, which is ignored) read at most.
const MAX_EPILOGUE: u64 = 64 * 1024;

/// The handler's side of the count: parts started and part data received.
#[derive(Clone, Default)]
pub(super) struct Meter(Arc<Counts>);

#[derive(Default)]
struct Counts {
    parts: AtomicU64,
    data: AtomicU64,
}

impl Meter {
    pub(super) fn part_started(&self) {
        self.0.parts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn data_received(&self, bytes: usize) {
        self.0.data.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes multer may hold that are not part data: the allowance of every part started
    /// and the next, and one piece not yet handed on.
    fn allowance(&self) -> u64 {
        let parts = self.0.parts.load(Ordering::Relaxed);
        (parts + 1) * HEADER_ALLOWANCE + PIECE as u64
    }

    fn data(&self) -> u64 {
        self.0.data.load(Ordering::Relaxed)
    }
}

pub(super) struct MeteredBody<S> {
    inner: S,
    meter: Meter,
    pending: Bytes,
    handed: u64,
    /// Return `Pending` once before the next piece, so that multer, which reads until its
    /// source is pending, takes one piece per poll.
    pause: bool,
}

impl<S> MeteredBody<S> {
    pub(super) fn new(inner: S, meter: Meter) -> Self {
        MeteredBody {
            inner,
            meter,
            pending: Bytes::new(),
            handed: 0,
            pause: false,
        }
    }
}

impl<S, E> MeteredBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Reads the rest of the body after multer found the closing boundary: an error if the
    /// body does not end well or goes on for more than [`MAX_EPILOGUE`] bytes.
    pub(super) async fn finish(&mut self) -> io::Result<()> {
        let mut extra = self.pending.len() as u64;
        self.pending = Bytes::new();
        while let Some(piece) = self.inner.next().await {
            extra += piece.map_err(io::Error::other)?.len() as u64;
            if extra > MAX_EPILOGUE {
                return Err(io::Error::other("data goes on after the closing boundary"));
            }
        }
        Ok(())
    }
}

impl<S, E> Stream for MeteredBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pause {
            this.pause = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.pending.is_empty() {
            match ready!(this.inner.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Some(Ok(bytes)) => this.pending = bytes,
            }
        }
        let held = this.handed.saturating_sub(this.meter.data());
        if held > this.meter.allowance() {
            return Poll::Ready(Some(Err(io::Error::other(
                "part headers or preamble too large",
            ))));
        }
        let piece = this.pending.split_to(this.pending.len().min(PIECE));
        this.handed += piece.len() as u64;
        this.pause = true;
        Poll::Ready(Some(Ok(piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pieces: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures::stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    async fn parse(raw: Vec<u8>) -> Result<Vec<(String, usize)>, String> {
        let meter = Meter::default();
        let source = futures::stream::iter(
            raw.chunks(7000)
                .map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let mut metered = MeteredBody::new(source, meter.clone());
        let mut multipart = multer::Multipart::new(&mut metered, "B");
        let mut parts = Vec::new();
        while let Some(mut field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            meter.part_started();
            let name = field.name().unwrap_or_default().to_owned();
            let mut size = 0;
            while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
                meter.data_received(chunk.len());
                size += chunk.len();
            }
            parts.push((name, size));
        }
        drop(multipart);
        metered.finish().await.map_err(|e| e.to_string())?;
        Ok(parts)
    }

    fn part(name: &str, header_pad: usize, data: usize) -> Vec<u8> {
        let mut v = format!(
            "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(header_pad)
        )
        .into_bytes();
        v.extend(std::iter::repeat_n(b'x', data));
        v.extend_from_slice(b"\r\n");
        v
    }

    #[tokio::test]
    async fn large_parts_and_many_small_ones_pass() {
        let mut raw = part("file", 10_000, 3 << 20);
        for _ in 0..40 {
            raw.extend(part("x", 0, 10));
        }
        raw.extend(part("file", 0, 1 << 20));
        raw.extend_from_slice(b"--B--\r\n");
        let Ok(parts) = parse(raw).await else {
            panic!("the body parses")
        };
        assert_eq!(parts.len(), 42);
        assert_eq!(parts[0], ("file".into(), 3 << 20));
        assert_eq!(parts[41], ("file".into(), 1 << 20));
    }

    #[tokio::test]
    async fn an_endless_part_header_or_preamble_fails_early() {
        let mut raw = part("file", 200_000, 10);
        raw.extend_from_slice(b"--B--\r\n");
        assert!(parse(raw).await.is_err());
        let mut raw = vec![b'z'; 300_000];
        raw.extend(part("file", 0, 10));
        raw.extend_from_slice(b"--B--\r\n");
        assert!(parse(raw).await.is_err());
    }

    #[tokio::test]
    async fn a_body_that_fails_after_the_closing_boundary_fails() {
        let meter = Meter::default();
        let broken = body(vec![b"--B--\r\n"]).chain(futures::stream::iter([Err(
            io::Error::other("connection closed early"),
        )]));
        let mut metered = MeteredBody::new(broken, meter);
        let mut multipart = multer::Multipart::new(&mut metered, "B");
        assert!(
            matches!(multipart.next_field().await, Ok(None)),
            "no error yet"
        );
        drop(multipart);
        assert!(metered.finish().await.is_err());
    }
}
