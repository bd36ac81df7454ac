//! The write deadline that drops a client who stopped reading, and a deadline helper.

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// `from + wait`, or a date decades away if that overflows (a configured duration can be
/// anything): a deadline must never panic.
pub fn after(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait)
        .unwrap_or_else(|| from + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// The cause inside the `TimedOut` error of a [`WriteStall`], so the serve loop can tell a
/// stalled client from other failures.
#[derive(Debug)]
pub struct WriteStalled;

impl fmt::Display for WriteStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client accepted no bytes within the write timeout")
    }
}

impl std::error::Error for WriteStalled {}

/// Whether an error (or any error in its chain) is a [`WriteStall`] timeout.
pub fn is_write_stall(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<WriteStalled>())
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Fails a write with `TimedOut` once the socket has accepted no byte for `limit` while data
/// waits: a client that stopped reading (its TCP window full) cannot hold the connection, or
/// the frame it was being sent, for longer. The timer exists only while a write is blocked.
pub struct WriteStall<T> {
    inner: T,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<T> WriteStall<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        WriteStall {
            inner,
            limit,
            timer: None,
            armed: false,
        }
    }

    /// The inner write is blocked: start the clock if it is not running; `TimedOut` once it
    /// has run out.
    fn blocked<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let armed = self.armed;
        let deadline = after(Instant::now(), self.limit);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        let elapsed = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if elapsed {
            Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WriteStalled)))
        } else {
            Poll::Pending
        }
    }

    fn progressed<R>(
        &mut self,
        result: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>>
    where
        R: Written,
    {
        match result {
            Poll::Ready(Ok(r)) => {
                if r.made_progress() {
                    self.armed = false;
                }
                Poll::Ready(Ok(r))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.blocked(cx),
        }
    }
}

/// What counts as progress for the write clock.
trait Written {
    fn made_progress(&self) -> bool;
}

impl Written for usize {
    fn made_progress(&self) -> bool {
        *self > 0
    }
}

impl Written for () {
    fn made_progress(&self) -> bool {
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
