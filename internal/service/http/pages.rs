//! The desktop and mobile pages, health checks and metrics. Pages are plain files embedded
//! in the binary, filled in the language `Accept-Language` asks for, and served with a strict
//! Content-Security-Policy.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    service::Services,
    web::i18n::{self, Lang},
};

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

async fn desktop(headers: HeaderMap) -> Response {
    let lang = language(&headers);
    page(crate::web::desktop_html(lang), lang)
}

async fn mobile(
    super::extract::PathArgs(_identifier): super::extract::PathArgs<String>,
    headers: HeaderMap,
) -> Response {
    let lang = language(&headers);
    page(crate::web::mobile_html(lang), lang)
}

/// The page language from `Accept-Language` (SPEC: zh-TW/HK/MO/Hant → zh-Hant, zh/CN/SG/Hans
/// → zh-Hans, else English).
fn language(headers: &HeaderMap) -> Lang {
    i18n::negotiate(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

fn page(html: &'static str, lang: Lang) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.tag()),
    );
    // Caches must keep one copy per language.
    h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
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

/// `GET /v1/widget.js`: the `<qrupload-panel>` module. Mounted with the API routes, so it
/// gets the same CORS answer (a cross-origin module script is fetched in CORS mode).
pub(super) async fn widget() -> Response {
    javascript(crate::web::widget_js())
}

/// `GET /v1/widget-view.js`, which `widget.js` imports.
pub(super) async fn widget_view() -> Response {
    javascript(crate::web::widget_view_js())
}

fn javascript(source: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        source,
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
            crate::service::error::Reason::Unavailable,
            format!("not ready: {what}"),
        )
        .into_response(),
    }
}

async fn metrics(State(services): State<Services>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
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
