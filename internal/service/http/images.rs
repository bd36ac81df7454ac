//! Image bytes as stored, with headers that make them safe to open directly: detected type,
//! `nosniff`, a sandboxing CSP, a strong ETag and long-lived caching (bytes never change
//! under an id).

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    biz::Image,
    service::{Services, error::ApiResult},
};

pub async fn original(
    State(services): State<Services>,
    super::extract::PathArgs(image_id): super::extract::PathArgs<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&services, &image_id, false, &headers).await
}

pub async fn thumbnail(
    State(services): State<Services>,
    super::extract::PathArgs(image_id): super::extract::PathArgs<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&services, &image_id, true, &headers).await
}

async fn serve(
    services: &Services,
    image_id: &str,
    thumbnail: bool,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let (image, bytes) = services.usecase.open_image(image_id, thumbnail).await?;
    // The thumbnail is a pure function of the original, so the original's hash names it too.
    let etag = if thumbnail {
        format!("\"{}-thumb\"", image.sha256)
    } else {
        format!("\"{}\"", image.sha256)
    };
    let content_type = if thumbnail {
        Image::THUMBNAIL_CONTENT_TYPE
    } else {
        image.content_type.as_str()
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        bytes.into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
