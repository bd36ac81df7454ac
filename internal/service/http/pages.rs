//! The desktop and mobile pages, health checks and metrics. Pages are plain files embedded
//! in the binary and served with a strict Content-Security-Policy.

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::service::Services;

const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

pub fn routes() -> Router<Services> {
    Router::new()
        .route("/", get(desktop))
        .route("/m/{identifier}", get(mobile))
        .route("/assets/{name}", get(asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
}

async fn desktop() -> Response {
    page(crate::web::DESKTOP_HTML)
}

async fn mobile(
    super::extract::PathArgs(_identifier): super::extract::PathArgs<String>,
) -> Response {
    page(crate::web::MOBILE_HTML)
}

fn page(html: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn asset(super::extract::PathArgs(name): super::extract::PathArgs<String>) -> Response {
    let Some((body, content_type)) = crate::web::asset(&name) else {
        return crate::service::error::ApiError::not_found().into_response();
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(services): State<Services>) -> Response {
    match services.usecase.ready().await {
        Ok(()) => "ready".into_response(),
        Err(what) => crate::service::error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("not ready: {what}"),
        )
        .into_response(),
    }
}

async fn metrics(State(services): State<Services>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        services.metrics.render(),
    )
        .into_response()
}

async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(super::openapi::document_json).as_str(),
    )
        .into_response()
}
