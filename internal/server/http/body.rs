//! Request body deadlines, as Apache's mod_reqtimeout: a body must arrive within
//! `body_timeout` of its head, plus one second for every `body_min_rate` bytes received. A
//! body past its deadline fails with [`BodyTimedOut`], which the handler sees as a read error
//! (the upload's multipart parser, say); whatever error it answers becomes 408 with
//! `Connection: close`, so the client learns why and the connection is not reused.

use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::service::error::ApiError;

/// The body's deadline rule: `timeout`, extended by a second per `min_rate` bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    timeout: Duration,
    min_rate: u64,
}

impl BodyDeadline {
    pub fn new(timeout: Duration, min_rate: u64) -> Self {
        BodyDeadline { timeout, min_rate }
    }

    fn deadline(&self, start: Instant, received: u64) -> Instant {
        let earned = match self.min_rate {
            0 => Duration::ZERO,
            rate => {
                let nanos = u128::from(received) * 1_000_000_000 / u128::from(rate);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        };
        super::io::after(start, self.timeout.saturating_add(earned))
    }
}

/// The middleware: wraps a request's body in its deadline, and turns the answer of a request
/// whose body timed out into 408.
pub async fn body_deadline(
    State(rule): State<BodyDeadline>,
    request: Request,
    next: Next,
) -> Response {
    if http_body::Body::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let request = request.map(|body| {
        Body::new(Deadline {
            inner: body,
            rule,
            start: Instant::now(),
            received: 0,
            timer: None,
            timed_out: flag,
        })
    });
    let response = next.run(request).await;
    if !timed_out.load(Ordering::Acquire) || response.status().is_success() {
        return response;
    }
    let mut response = ApiError::request_timeout().into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error a body past its deadline fails with.
#[derive(Debug)]
pub struct BodyTimedOut;

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl std::error::Error for BodyTimedOut {}

struct Deadline {
    inner: Body,
    rule: BodyDeadline,
    start: Instant,
    received: u64,
    /// Made the first time the body has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.rule.deadline(this.start, this.received);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timed_out.store(true, Ordering::Release);
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
