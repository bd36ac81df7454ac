//! The IO under hyper's HTTP/1 connection: it reads the socket itself and hands hyper one
//! checked message at a time, so that every head of a connection gets the serve loop's checks
//! and answers, not just the first.
//!
//! A head is held back until it is complete and [`head::parse`] accepts it; then hyper gets the
//! head and, as it arrives, exactly its body (delimited as hyper delimits it, [`framing`]), and
//! nothing of the next message until that one is accepted too. So hyper's parser never sees a
//! head the serve loop would refuse, and never answers one with its own bare status.
//!
//! A refused head (400, 414, 431, 501, 411) and a head that misses `header_read_timeout` (408)
//! are answered here, once hyper has finished and flushed every answer before: the gate writes
//! SPEC's JSON error, gives hyper EOF (an idle connection whose client left: it closes without
//! a word), and lingers in the shutdown so the client reads the answer instead of a reset.
//! A kept-alive connection that sends no byte of a next request is closed silently after
//! `idle_timeout`, as clients expect.
//!
//! The clocks run only while no request is in flight: a body has its own deadline (the body
//! layer), and a stream in flight is never idle. HTTP/2 passes through whole, with the idle
//! clock only.

use std::{
    io,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use super::{
    HttpTimeouts,
    framing::{Body, End},
    head::{self, MAX_HEAD, Parsed, Refusal},
    hyperconn::Activity,
    io::after,
};

/// What the socket is read by, when the gate reads for itself.
const READ_CHUNK: usize = 8 * 1024;
/// The most a lingering close reads and drops, and for how long.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

pub struct Gate<T> {
    inner: T,
    activity: Arc<Activity>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Read from the socket, not handed to hyper yet.
    buf: BytesMut,
    state: State,
    /// Heads handed to hyper: hyper is idle when it has called the service for each and no
    /// answer is in flight.
    heads: u64,
    /// Where [`head::head_end`] goes on looking for the end of the head in `buf`.
    scanned: usize,
    /// When the first byte of the head in `buf` was seen.
    head_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// hyper wrote since it last flushed: its buffer may hold the end of an answer.
    unflushed: bool,
    linger: Option<Linger>,
}

enum State {
    /// Between messages: the next head, or a part of it, is in `buf`.
    Head,
    /// Handing hyper an accepted head (`head_left` bytes of it still), then its body.
    Message {
        head_left: usize,
        body: Option<Body>,
    },
    /// Answering `answer` once hyper is idle; `written` bytes of it are out.
    Refuse { answer: Vec<u8>, written: usize },
    /// EOF to hyper from now on.
    Ended,
    /// HTTP/2: every byte passes.
    Pass,
}

impl<T> Gate<T> {
    /// `prefix`: what the serve loop read already (a first head, or HTTP/2's preface).
    pub fn new(
        inner: T,
        prefix: Bytes,
        activity: Arc<Activity>,
        limits: &HttpTimeouts,
        http2: bool,
    ) -> Self {
        Gate {
            inner,
            activity,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            buf: BytesMut::from(&prefix[..]),
            state: if http2 { State::Pass } else { State::Head },
            heads: 0,
            scanned: 0,
            head_since: None,
            timer: None,
            unflushed: false,
            linger: None,
        }
    }

    /// No request in flight, and none handed over that hyper has not started.
    fn busy(&self) -> bool {
        self.activity.in_flight.load(Ordering::Acquire) > 0
            || self.activity.started.load(Ordering::Acquire) < self.heads
    }

    /// Pending until the last request in flight ends (then the task is woken).
    fn wait_idle(&self, cx: &mut Context<'_>) {
        self.activity.reader.register(cx.waker());
        // The request may have ended in between.
        if !self.busy() {
            cx.waker().wake_by_ref();
        }
    }

    /// Pending until `deadline`; ready once it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Gate<T> {
    /// Reads what the socket has into `buf`; the number of bytes, 0 at EOF.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.inner), cx, &mut self.buf)
    }

    /// The next head: parsed once its blank line is there, refused or accepted.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Empty lines between messages are skipped, as hyper skips them.
            let mut blank = 0;
            loop {
                match &self.buf[blank..] {
                    [b'\r', b'\n', ..] => blank += 2,
                    [b'\n', ..] => blank += 1,
                    _ => break,
                }
            }
            if blank > 0 {
                self.buf.advance(blank);
                self.scanned = 0;
            }
            if !self.buf.is_empty() {
                self.head_since.get_or_insert_with(Instant::now);
                let parsed = match head::head_end(&self.buf, self.scanned) {
                    Some(_) => head::parse(&self.buf),
                    None if self.buf.len() >= MAX_HEAD => head::parse(&self.buf),
                    None => Parsed::Partial,
                };
                match parsed {
                    Parsed::Head { len, framing } => {
                        self.heads += 1;
                        self.head_since = None;
                        self.scanned = 0;
                        self.state = State::Message {
                            head_left: len,
                            body: Body::after(framing),
                        };
                        return Poll::Ready(Ok(()));
                    }
                    Parsed::Refuse(refusal) => {
                        self.refuse(refusal);
                        return Poll::Ready(Ok(()));
                    }
                    Parsed::Partial => self.scanned = self.buf.len(),
                }
            }
            match self.fill(cx) {
                Poll::Ready(Ok(0)) => {
                    self.state = State::Ended;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            if self.busy() {
                self.wait_idle(cx);
                return Poll::Pending;
            }
            let idle_since = self.activity.idle_since();
            let deadline = match self.head_since {
                None => after(idle_since, self.idle_timeout),
                Some(since) => after(since.max(idle_since), self.header_read_timeout),
            };
            ready!(self.poll_deadline(cx, deadline));
            if self.buf.is_empty() {
                // Idle: end the connection as if the client had closed it.
                self.state = State::Ended;
            } else {
                self.refuse(Refusal::TOO_SLOW);
            }
            return Poll::Ready(Ok(()));
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        tracing::debug!(status = %refusal.status, reason = refusal.message, "request head refused");
        self.buf.clear();
        self.state = State::Refuse {
            answer: refusal.answer(),
            written: 0,
        };
    }

    /// Writes the refusal once every answer before it is out; then EOF, and a lingering close.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.busy() {
            self.wait_idle(cx);
            return Poll::Pending;
        }
        if self.unflushed {
            // hyper's flush wakes the task (`poll_flush`).
            return Poll::Pending;
        }
        let State::Refuse { answer, written } = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.state = State::Ended;
        self.linger = Some(Linger {
            shut: false,
            left: LINGER_BYTES,
            until: Box::pin(tokio::time::sleep(LINGER_TIME)),
        });
        Poll::Ready(Ok(()))
    }

    /// The message's bytes that are in `buf`, or else read for it.
    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let State::Message { head_left, body } = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        if *head_left == 0 && body.is_none() {
            self.state = State::Head;
            return Poll::Ready(Ok(()));
        }
        if self.buf.is_empty() {
            // A long body straight into hyper's buffer: nothing of the next message fits.
            if let Some(Body::Length(left)) = body
                && out.remaining() as u64 <= *left
            {
                let before = out.filled().len();
                ready!(Pin::new(&mut self.inner).poll_read(cx, out))?;
                let n = out.filled().len() - before;
                if n == 0 {
                    self.state = State::Ended;
                } else {
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if ready!(self.fill(cx))? == 0 {
                // hyper sees the body cut short.
                self.state = State::Ended;
                return Poll::Ready(Ok(()));
            }
            return self.poll_message(cx, out);
        }
        let avail = self.buf.len().min(out.remaining());
        // The head (or what is left of it), then as much of the body as is here.
        let head = (*head_left).min(avail);
        *head_left -= head;
        let mut end = End::More;
        let mut n = head;
        if *head_left == 0 {
            match body {
                None => end = End::Done,
                Some(b) => {
                    let taken = b.take(&self.buf[head..avail]);
                    n += taken.len;
                    end = taken.end;
                }
            }
        }
        out.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        match end {
            End::More => {}
            End::Done => self.state = State::Head,
            End::Broken => {
                // hyper fails the body at the byte just handed over, and closes.
                self.buf.clear();
                self.state = State::Ended;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// HTTP/2: what the serve loop read, then the socket, with the idle clock.
    fn poll_pass(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.buf.is_empty() {
            let n = self.buf.len().min(out.remaining());
            out.put_slice(&self.buf[..n]);
            self.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        if let Poll::Ready(read) = Pin::new(&mut self.inner).poll_read(cx, out) {
            return Poll::Ready(read);
        }
        if self.activity.in_flight.load(Ordering::Acquire) > 0 {
            self.activity.reader.register(cx.waker());
            if self.activity.in_flight.load(Ordering::Acquire) == 0 {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let deadline = after(self.activity.idle_since(), self.idle_timeout);
        ready!(self.poll_deadline(cx, deadline));
        self.state = State::Ended;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Gate<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let before = out.filled().len();
            match this.state {
                State::Ended => return Poll::Ready(Ok(())),
                State::Pass => return this.poll_pass(cx, out),
                State::Head => ready!(this.poll_head(cx))?,
                State::Refuse { .. } => ready!(this.poll_refuse(cx))?,
                State::Message { .. } => {
                    ready!(this.poll_message(cx, out))?;
                    if out.filled().len() > before || matches!(this.state, State::Ended) {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Gate<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.unflushed = false;
        if matches!(self.state, State::Refuse { .. }) {
            // A refusal waits for this flush; hyper reads again only when woken.
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match &mut this.linger {
            Some(linger) => linger.poll(cx, &mut this.inner),
            None => Pin::new(&mut this.inner).poll_shutdown(cx),
        }
    }
}

/// After a refusal: the write side shut, then what the client still sends (the rest of the
/// refused head, a body) read and dropped for a moment, so its socket gets the answer and
/// not a reset.
struct Linger {
    shut: bool,
    left: usize,
    until: Pin<Box<Sleep>>,
}

impl Linger {
    fn poll<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
    ) -> Poll<io::Result<()>> {
        if !self.shut {
            if ready!(Pin::new(&mut *io).poll_shutdown(cx)).is_err() {
                return Poll::Ready(Ok(()));
            }
            self.shut = true;
        }
        let mut sink = [0u8; 1024];
        while self.left > 0 {
            let mut read = ReadBuf::new(&mut sink);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    self.left = self.left.saturating_sub(read.filled().len());
                }
                Poll::Ready(_) => break,
                Poll::Pending => {
                    ready!(self.until.as_mut().poll(cx));
                    break;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    //! The gate against a scripted socket (tokio's test IO): what hyper would read.
    use super::*;
    use tokio::io::AsyncReadExt;

    fn limits() -> HttpTimeouts {
        HttpTimeouts {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            body_min_rate: 0,
        }
    }

    /// One read, as hyper makes it: what the gate hands over, or `None` if it would wait.
    async fn handed(gate: &mut Gate<tokio::io::DuplexStream>) -> Option<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_millis(50), gate.read(&mut chunk));
        match read.await {
            Ok(Ok(n)) => Some(chunk[..n].to_vec()),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn a_read_hands_over_at_most_one_message() {
        let (_client, server) = tokio::io::duplex(64 * 1024);
        let activity = Arc::new(Activity::new());
        let first = b"POST /a HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc";
        let second = b"GET /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";
        let third = b"GET /c HTTP/1.1\r\n\r\n";
        let mut prefix = first.to_vec();
        prefix.extend_from_slice(b"\r\n");
        prefix.extend_from_slice(second);
        prefix.extend_from_slice(third);
        let mut gate = Gate::new(server, Bytes::from(prefix), activity, &limits(), false);
        assert_eq!(handed(&mut gate).await.as_deref(), Some(&first[..]));
        let mut got = Vec::new();
        while got.len() < second.len() {
            got.extend(handed(&mut gate).await.expect("the second message"));
        }
        assert_eq!(got, second, "the body ends where its last chunk does");
        assert_eq!(handed(&mut gate).await.as_deref(), Some(&third[..]));
        assert_eq!(
            handed(&mut gate).await,
            None,
            "then it waits for the client"
        );
    }

    #[tokio::test]
    async fn a_refused_head_is_answered_once_hyper_is_idle() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let activity = Arc::new(Activity::new());
        let first = b"GET /a HTTP/1.1\r\n\r\n";
        let mut prefix = first.to_vec();
        prefix.extend_from_slice(b"GET /b HTTP/1.1\r\nno colon\r\n\r\n");
        let mut gate = Gate::new(
            server,
            Bytes::from(prefix),
            activity.clone(),
            &limits(),
            false,
        );
        assert_eq!(handed(&mut gate).await.as_deref(), Some(&first[..]));
        // hyper has not started the first request, then it is in flight: nothing is written.
        assert_eq!(handed(&mut gate).await, None);
        activity.started.store(1, Ordering::Release);
        activity.in_flight.store(1, Ordering::Release);
        assert_eq!(handed(&mut gate).await, None);
        let mut answer = [0u8; 16];
        let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut answer));
        assert!(
            early.await.is_err(),
            "no answer while a request is in flight"
        );
        // Idle: the JSON error, then EOF to hyper.
        activity.in_flight.store(0, Ordering::Release);
        assert_eq!(handed(&mut gate).await.as_deref(), Some(&b""[..]));
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"}") {
            let n = client.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the whole answer");
            answer.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\"reason\":\"INVALID_ARGUMENT\""), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert_eq!(handed(&mut gate).await.as_deref(), Some(&b""[..]));
    }
}
