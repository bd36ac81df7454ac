//! The general path: hyper (HTTP/1.1 or HTTP/2) over the rest of the connection, after the
//! bytes the serve loop already read.
//!
//! hyper's own `header_read_timeout` is not used: it starts its clock as soon as a
//! keep-alive connection goes idle, which would make it the idle timeout too. Here
//! [`ReadTimers`] keeps the two apart: an idle connection (no request in flight, no byte of a
//! new head) is closed after `idle_timeout`; a head must arrive whole within
//! `header_read_timeout` of its first byte.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Request, Response},
};
use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::watch,
    time::{Instant, Sleep},
};
use tower::ServiceExt;

use super::{
    HttpTimeouts, Shared,
    head::MAX_HEAD,
    io::{Rewind, WriteStall, after, is_write_stall},
};

/// The first line of HTTP/2's connection preface.
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// hyper's settings, shared by every connection. The serve loop has read the first bytes, so
/// it knows which protocol the client speaks and picks the builder itself.
pub struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

pub fn builders() -> Builders {
    let mut http1 = http1::Builder::new();
    http1
        .keep_alive(true)
        // Later heads are held to the first one's limit (431 beyond it).
        .max_header_size(MAX_HEAD)
        // What hyper may buffer per connection, reading a body or writing an answer.
        .max_buf_size(MAX_BUFFER)
        .header_read_timeout(None);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2.max_header_list_size(MAX_HEAD as u32);
    Builders { http1, http2 }
}

/// hyper's buffer limit per connection (its default is ~400 KiB).
const MAX_BUFFER: usize = 64 * 1024;

/// Serves the connection with hyper until it closes, the client stalls, or shutdown.
pub async fn serve(
    tcp: TcpStream,
    prefix: Bytes,
    remote: SocketAddr,
    shared: &Shared,
    stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    // The serve loop handed over at least the preface's first line.
    let h2 = prefix.starts_with(H2_PREFACE_LINE);
    let io = ReadTimers::new(
        Rewind::new(prefix, tcp),
        activity.clone(),
        &shared.limits,
        !h2,
    );
    let io = TokioIo::new(WriteStall::new(io, shared.limits.write_timeout));
    let service = Dispatch {
        router: shared.router.clone(),
        remote,
        activity,
    };
    let result = if h2 {
        let conn = shared.hyper.http2.serve_connection(io, service);
        drive(conn, stop, |conn| conn.graceful_shutdown()).await
    } else {
        let conn = shared.hyper.http1.serve_connection(io, service);
        drive(conn, stop, |conn| conn.graceful_shutdown()).await
    };
    if let Err(e) = result {
        if is_write_stall(&e) {
            shared.metrics.slow_client_dropped();
        }
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Runs a hyper connection to its end; on shutdown, lets it finish the request in flight.
async fn drive<C>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    graceful: impl FnOnce(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut graceful = Some(graceful);
    loop {
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = stop.wait_for(|stop| *stop), if graceful.is_some() => {
                if let Some(graceful) = graceful.take() {
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// Requests in flight on one connection, and since when there have been none.
struct Activity {
    origin: Instant,
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// Nanoseconds from `origin` to the moment `in_flight` last fell to zero.
    idle_since: AtomicU64,
    /// The connection's reader, woken when the last request in flight ends: hyper does not
    /// read again on its own until the client sends something, and the idle clock must start.
    reader: AtomicWaker,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            reader: AtomicWaker::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        after(
            self.origin,
            Duration::from_nanos(self.idle_since.load(Ordering::Acquire)),
        )
    }
}

/// One request in flight, from hyper handing it over until its answer's body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.started.fetch_add(1, Ordering::AcqRel);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let nanos = u64::try_from(activity.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        activity.idle_since.store(nanos, Ordering::Release);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.reader.wake();
        }
    }
}

/// hyper's service: the router, with the client's address in every request and each request
/// counted in flight until its answer is written.
#[derive(Clone)]
struct Dispatch {
    router: Router,
    remote: SocketAddr,
    activity: Arc<Activity>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Dispatch {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.activity.clone());
        let mut request = request.map(Body::new);
        request
            .extensions_mut()
            .insert(super::connect_info(self.remote));
        let call = self.router.clone().oneshot(request);
        Box::pin(async move {
            let response = match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// An answer's body that keeps its request in flight until hyper drops it.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The read side's clocks: closes an idle keep-alive connection, and cuts a head that
/// trickles in. Only while no request is in flight: a body has its own deadline (the body
/// layer) and a stream in flight is never idle.
struct ReadTimers<T> {
    inner: T,
    activity: Arc<Activity>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// HTTP/1 heads; an HTTP/2 connection gets only the idle clock.
    heads: bool,
    /// When the first byte of the next head arrived.
    head_since: Option<Instant>,
    started_seen: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> ReadTimers<T> {
    fn new(inner: T, activity: Arc<Activity>, limits: &HttpTimeouts, heads: bool) -> Self {
        ReadTimers {
            inner,
            activity,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            heads,
            head_since: None,
            started_seen: 0,
            timer: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadTimers<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let started = this.activity.started.load(Ordering::Acquire);
        if started != this.started_seen {
            // A request began since the last read: the head being timed is complete.
            this.started_seen = started;
            this.head_since = None;
        }
        let busy = this.activity.in_flight.load(Ordering::Acquire) > 0;
        match result {
            Poll::Ready(Ok(())) => {
                if this.heads && !busy && this.head_since.is_none() && buf.filled().len() > before {
                    this.head_since = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if busy => {
                this.activity.reader.register(cx.waker());
                // The request may have ended in between.
                if this.activity.in_flight.load(Ordering::Acquire) > 0 {
                    return Poll::Pending;
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => {
                let deadline = match this.head_since {
                    Some(since) => after(since, this.header_read_timeout),
                    None => after(this.activity.idle_since(), this.idle_timeout),
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.head_since.is_some() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request head arrived too slowly",
                    )))
                } else {
                    // Idle: end the connection as if the client had closed it.
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadTimers<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
