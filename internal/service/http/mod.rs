//! The HTTP API of SPEC.md: REST routes, the upload handler, the SSE stream and the pages.
//! Middleware, limits and listeners are the server layer's; this module only maps requests
//! to usecase calls.

mod extract;
mod images;
pub mod openapi;
mod order;
mod pages;
mod sessions;
mod sse;
mod tickets;
pub mod tus;
mod upload;
mod upload_body;

use std::net::{IpAddr, SocketAddr};

use axum::{
    Router,
    extract::{ConnectInfo, FromRequestParts},
    http::Method,
    http::request::Parts,
    middleware::from_fn,
    routing::{delete, get, head, options, post, put},
};

use super::{Services, auth::parse_member_id, error::ApiError};
pub(crate) use extract::UndeclaredLength;

/// The API under `/v1/api` (REST, upload, SSE), with `Services` as state.
pub fn api_routes(services: Services) -> Router {
    Router::new()
        .route("/v1/api/sse/events", get(sse::events))
        .route("/v1/api/upload-sessions", post(sessions::create))
        .route("/v1/api/upload-sessions/{identifier}", get(sessions::get))
        .route(
            "/v1/api/upload-sessions/{identifier}/qr.svg",
            get(sessions::qr_svg),
        )
        .route(
            "/v1/api/upload-sessions/{identifier}/complete",
            post(sessions::complete),
        )
        .route(
            "/v1/api/upload-sessions/{identifier}/stream-ticket",
            post(tickets::create),
        )
        .route(
            "/v1/api/upload-sessions/{identifier}/upload-info",
            get(sessions::upload_info),
        )
        .route(
            "/v1/api/upload-sessions/{identifier}/images",
            post(upload::upload).route_layer(from_fn(extract::require_length)),
        )
        .route(
            "/v1/api/upload-sessions/{identifier}/images/order",
            put(order::reorder).route_layer(from_fn(extract::require_length)),
        )
        .route(
            "/v1/api/upload-sessions/{identifier}/images/{image_id}",
            delete(upload::delete_image),
        )
        .route("/v1/widget.js", get(pages::widget))
        .route("/v1/widget-view.js", get(pages::widget_view))
        .route("/v1/api/images/{image_id}", get(images::original))
        .route(
            "/v1/api/images/{image_id}/thumbnail",
            get(images::thumbnail),
        )
        .with_state(services.clone())
        .merge(tus_routes(services))
}

/// The tus routes, each answer with `Tus-Resumable` (see [`tus::tus_protocol`]).
fn tus_routes(services: Services) -> Router {
    const UPLOAD: &str = "/v1/api/upload-sessions/{identifier}/tus/{upload_id}";
    let creation = options(tus::options).post(tus::create);
    let upload: axum::routing::MethodRouter<()> = head(tus::head)
        .patch(tus::patch)
        .delete(tus::terminate)
        .route_layer(from_fn(extract::require_length))
        .with_state(services.clone());
    // As a service with its layers outside: the method override acts before method routing,
    // and `Tus-Resumable` reaches even a 405.
    let upload = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            &[Method::HEAD, Method::PATCH, Method::DELETE][..],
            tus::tus_protocol,
        ))
        .layer(axum::middleware::from_fn(tus::method_override))
        .service(upload);
    Router::new()
        .route(
            "/v1/api/upload-sessions/{identifier}/tus/",
            creation.clone(),
        )
        .route("/v1/api/upload-sessions/{identifier}/tus", creation)
        .layer(axum::middleware::from_fn_with_state(
            &[Method::POST][..],
            tus::tus_protocol,
        ))
        .with_state(services)
        .route_service(UPLOAD, upload)
}

/// The pages, their assets and the operational endpoints (`/healthz`, `/readyz`, `/metrics`).
pub fn page_routes(services: Services) -> Router {
    pages::routes().with_state(services)
}

/// The client's address as the server layer recorded it; `None` for a request that did not
/// come over a socket.
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// A query string as ordered pairs, so each handler can name the field that is wrong.
pub(crate) struct QueryArgs(Vec<(String, String)>);

impl QueryArgs {
    /// A parameter given twice is refused: which one counts would be a guess, and a proxy
    /// and this service might guess differently.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|_| ApiError::invalid("query", "the query string is malformed"))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::invalid(
                    "query",
                    format!("the query parameter {name:?} is given more than once"),
                ));
            }
        }
        Ok(QueryArgs(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A present, non-empty value, or the seed's "X is required".
    pub fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::invalid(name, format!("{name} is required"))),
        }
    }

    /// `member_id`: an unsigned 32-bit integer; 0 is valid, as in the seed.
    pub fn member_id(&self) -> Result<u32, ApiError> {
        Ok(parse_member_id(self.required("member_id")?)?)
    }
}
