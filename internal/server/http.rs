//! The axum server: the service layer's routes plus middleware, served on a bound listener.

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tokio::net::TcpListener;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};

use crate::{
    conf::CorsConf,
    service::{
        Services,
        error::ApiError,
        http::{api_routes, page_routes},
    },
};

/// The whole HTTP app: routes, CORS on the API, JSON 404/405, panic guard, request spans.
pub fn router(services: Services, cors: &CorsConf) -> Router {
    // Set on the API before CORS wraps it, so a preflight `OPTIONS` reaches the CORS layer
    // instead of an unwrapped 405.
    let mut api = api_routes(services.clone()).method_not_allowed_fallback(method_not_allowed);
    if let Some(layer) = cors_layer(cors) {
        api = api.layer(layer);
    }
    api.merge(page_routes(services))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(method_not_allowed)
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

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed",
    )
}

/// Cross-origin access for the API and the SSE route, or `None` for same-origin only.
/// Exact origins may send credentials (cookies, `Authorization`); `*` may not.
fn cors_layer(conf: &CorsConf) -> Option<CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    if conf.allowed_origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER])
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

/// Serves until `shutdown` resolves, then stops accepting and waits for open requests. Long
/// streams end on their own when the hub closes them; the caller bounds the wait.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
