//! The axum server: the service layer's routes plus middleware, served by our own accept loop.
//!
//! Why not `axum::serve`: every connection there is a hyper connection for its whole life, with
//! an 8 KiB read buffer and a write buffer that an SSE stream keeps for hours. Here each
//! connection first reads its request head itself (bounded, with a deadline). A plain `GET` of
//! the SSE route takes the lean path ([`lean`]): the router answers it as usual (every layer
//! applies), and a streaming answer is written by a small loop that keeps no buffer between
//! frames. Everything else, and every later request on a kept-alive connection, goes to hyper
//! over an IO that reads the socket itself and hands hyper one checked message at a time
//! ([`gate`]), so a later or pipelined head gets the first head's checks and JSON answers
//! (400, 408, 411, 414, 431, 501) too ([`hyperconn`]). Both paths drop a
//! client that accepts no bytes for `sse.write_timeout` ([`io::WriteStall`]).

mod body;
mod conn;
mod framing;
mod gate;
mod head;
mod hyperconn;
mod io;
mod lean;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    response::{IntoResponse, Response},
};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};

use crate::{
    conf::{Config, CorsConf},
    metrics::Metrics,
    service::{
        Services,
        error::{ApiError, Reason},
        http::{api_routes, page_routes},
    },
};

/// The limits the serve loop and the body layer enforce: `server.http.*` and
/// `sse.write_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub body_timeout: Duration,
    /// Bytes per second that extend `body_timeout` by one second; 0 extends nothing.
    pub body_min_rate: u64,
}

impl HttpTimeouts {
    pub fn from_config(config: &Config) -> Self {
        let http = &config.server.http;
        HttpTimeouts {
            header_read_timeout: http.header_read_timeout,
            idle_timeout: http.idle_timeout,
            write_timeout: config.sse.write_timeout,
            body_timeout: http.body_timeout,
            body_min_rate: http.body_min_rate.0,
        }
    }
}

/// The whole HTTP app: routes, CORS on the API, JSON 404/405, request body deadlines, panic
/// guard, request spans, and a last net that gives any error answer still without SPEC's
/// JSON shape (a rejection from a layer or an extractor not written here) that shape.
pub fn router(services: Services, cors: &CorsConf, limits: &HttpTimeouts) -> Router {
    // Set on the API before CORS wraps it, so a preflight `OPTIONS` reaches the CORS layer
    // instead of an unwrapped 405.
    let mut api = api_routes(services.clone()).method_not_allowed_fallback(method_not_allowed);
    if let Some(layer) = cors_layer(cors) {
        api = api.layer(layer);
    }
    api.merge(page_routes(services))
        // Route layers see the matched route: the span is renamed after its template.
        .route_layer(axum::middleware::from_fn(super::trace::record_route))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            body::BodyDeadline::new(limits.body_timeout, limits.body_min_rate),
            body::body_deadline,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(Reason::Internal, "internal error").into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(super::trace::http_span)
                .on_response(super::trace::http_response),
        )
}

/// An error answer that is not JSON yet becomes SPEC's error for its status; its headers
/// (`Allow`, `Retry-After`, CORS) are kept. HEAD answers keep no body, as HTTP requires.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let fresh = ApiError::for_status(status).into_response();
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(Reason::MethodNotAllowed, "method not allowed")
}

/// Cross-origin access for the API and the SSE route, or `None` for same-origin only.
/// Exact origins may send credentials (cookies, `Authorization`); `*` may not.
fn cors_layer(conf: &CorsConf) -> Option<CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    if conf.allowed_origins.is_empty() {
        return None;
    }
    use crate::service::http::tus;
    let mut allow = vec![
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("last-event-id"),
    ];
    allow.extend(tus::REQUEST_HEADERS.map(HeaderName::from_static));
    let mut expose = vec![header::RETRY_AFTER];
    expose.extend(tus::RESPONSE_HEADERS.map(HeaderName::from_static));
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers(allow)
        .expose_headers(expose)
        .max_age(Duration::from_secs(600));
    Some(if conf.allowed_origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        // Validated at load time; an entry that is not a header value cannot get here.
        let origins = conf
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok());
        layer
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
    })
}

/// What every connection task shares.
struct Shared {
    router: Router,
    limits: HttpTimeouts,
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
    limits: HttpTimeouts,
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
