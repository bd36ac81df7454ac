//! The general path: hyper (HTTP/1.1 or HTTP/2) over the rest of the connection, after the
//! bytes the serve loop already read, through the [`Gate`] that checks every head first.
//!
//! hyper's own `header_read_timeout` is not used: it starts its clock as soon as a
//! keep-alive connection goes idle, which would make it the idle timeout too, and it answers
//! nothing. The gate keeps the two apart: an idle connection (no request in flight, no byte
//! of a new head) is closed after `idle_timeout`; a head must arrive whole within
//! `header_read_timeout` of its first byte, else 408.

use std::{
    convert::Infallible,
    future::Future,
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
    http::{Request, Response, header},
};
use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpStream, sync::watch, time::Instant};
use tower::ServiceExt;

use crate::service::http::UndeclaredLength;

use super::{
    Shared,
    gate::Gate,
    head::{H2_PREFACE_LINE, MAX_HEAD},
    io::{WriteStall, after, is_write_stall},
};

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
        // The gate hands over no larger head; this is only a second fence.
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
    let io = WriteStall::new(tcp, shared.limits.write_timeout);
    let io = TokioIo::new(Gate::new(io, prefix, activity.clone(), &shared.limits, h2));
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
pub struct Activity {
    origin: Instant,
    pub in_flight: AtomicUsize,
    /// Requests hyper has handed to the service.
    pub started: AtomicU64,
    /// Nanoseconds from `origin` to the moment `in_flight` last fell to zero.
    idle_since: AtomicU64,
    /// The connection's reader, woken when the last request in flight ends: hyper does not
    /// read again on its own until the client sends something, and the idle clock must start.
    pub reader: AtomicWaker,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            reader: AtomicWaker::new(),
        }
    }

    pub fn idle_since(&self) -> Instant {
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
        let undeclared = request.version() < axum::http::Version::HTTP_2
            && !request.headers().contains_key(header::CONTENT_LENGTH)
            && !request.headers().contains_key(header::TRANSFER_ENCODING);
        let extensions = request.extensions_mut();
        extensions.insert(super::connect_info(self.remote));
        if undeclared {
            extensions.insert(UndeclaredLength);
        }
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
