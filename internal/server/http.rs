//! The axum server: the service layer's routes plus middleware, served by our own accept loop.
//!
//! Why not `axum::serve`: every connection there is a hyper connection for its whole life, with
//! an 8 KiB read buffer and a write buffer that an SSE stream keeps for hours. Here each
//! connection first reads its request head itself (bounded, with a deadline). A plain `GET` of
//! the SSE route takes the lean path ([`lean`]): the router answers it as usual (every layer
//! applies), and a streaming answer is written by a small loop that keeps no buffer between
//! frames. Everything else, and every later request on a kept-alive connection, goes to hyper
//! over an IO that first replays the bytes already read ([`hyperconn`]). Both paths drop a
//! client that accepts no bytes for `sse.write_timeout` ([`io::WriteStall`]).

mod body;
mod conn;
mod head;
mod hyperconn;
mod io;
mod lean;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use crate::{
    conf::Config,
    metrics::Metrics,
    service::{Services, error::ApiError, http::routes},
};

/// The limits the serve loop and the body layer enforce: `server.http.*` and
/// `sse.write_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub body_timeout: Duration,
    /// Bytes per second that extend `body_timeout` by one second; 0 extends nothing.
    pub body_min_rate: u64,
}

impl HttpLimits {
    pub fn from_config(config: &Config) -> Self {
        let http = &config.server.http;
        HttpLimits {
            header_read_timeout: http.header_read_timeout,
            idle_timeout: http.idle_timeout,
            write_timeout: config.sse.write_timeout,
            body_timeout: http.body_timeout,
            body_min_rate: http.body_min_rate.0,
        }
    }
}

/// The whole HTTP app: routes, JSON 404/405, request body deadlines, panic guard, request
/// spans.
pub fn router(services: Services, limits: &HttpLimits) -> Router {
    routes(services)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            body::BodyDeadline::new(limits.body_timeout, limits.body_min_rate),
            body::body_deadline,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            )
            .into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // The path only: query strings may carry member ids and are not needed here.
                    super::trace::request_span(
                        "http",
                        req.method().as_str(),
                        req.uri().path(),
                        req.headers(),
                    )
                })
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_millis() as u64,
                        "response"
                    );
                }),
        )
}

/// What every connection task shares.
struct Shared {
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    hyper: hyperconn::Builders,
}

/// Serves until `shutdown` resolves, then stops accepting, asks hyper connections to finish
/// their requests and close, and waits for every connection to end. Lean SSE streams end when
/// the hub closes them; the caller bounds the wait, and dropping this future (abort) closes
/// whatever is left.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        router: app,
        limits,
        metrics,
        hyper: hyperconn::builders(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Owning the tasks means aborting this future also closes every connection.
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => log_panic(ended),
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    connections.spawn(conn::serve(tcp, remote, shared.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Most likely out of descriptors: give connections time to close.
                        tracing::error!(error = %e, "accept failed");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            },
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    while let Some(ended) = connections.join_next().await {
        log_panic(ended);
    }
    Ok(())
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// The request extension handlers read the client's address from.
fn connect_info(remote: SocketAddr) -> axum::extract::ConnectInfo<SocketAddr> {
    axum::extract::ConnectInfo(remote)
}
