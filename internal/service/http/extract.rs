//! Extractors whose rejections are SPEC's JSON error, so an answer made before a handler runs
//! has the same shape as one made inside it.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use crate::service::error::{ApiError, Reason};

/// The most a JSON request body may hold (SPEC: 64 KiB).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Path parameters; a segment that is not UTF-8 once percent-decoded is 400, not axum's
/// `text/plain` rejection.
pub(crate) struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathArgs(v))
            .map_err(|_| ApiError::invalid("path", "a path segment is not valid UTF-8"))
    }
}

/// A JSON request body, still as bytes (handlers pick the fields they name): only as
/// `application/json` (an optional `charset` parameter only), at most [`MAX_JSON_BODY`].
/// Requiring the type keeps a cross-site `<form enctype="text/plain">` from posting here.
pub(crate) struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_json_type) {
            return Err(json_required());
        }
        let too_large = || {
            ApiError::new(
                Reason::PayloadTooLarge,
                format!("a JSON body may hold at most {MAX_JSON_BODY} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_JSON_BODY as u64) {
            return Err(too_large());
        }
        axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map(JsonBytes)
            .map_err(|e| {
                if is_length_limit(&e) {
                    too_large()
                } else {
                    ApiError::invalid("body", "the request body could not be read")
                }
            })
    }
}

/// A JSON body that may also be absent: `None` for a request with no body and no
/// Content-Type (a bare `POST` with a bearer JWT); any body is held to [`JsonBytes`]' rules.
pub(crate) struct OptionalJsonBytes(pub Option<Bytes>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let h = req.headers();
        let no_body = !h.contains_key(header::CONTENT_TYPE)
            && !h.contains_key(header::TRANSFER_ENCODING)
            && h.get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if no_body {
            return Ok(OptionalJsonBytes(None));
        }
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        Ok(OptionalJsonBytes(Some(bytes)))
    }
}

/// Set by the serve loop on an HTTP/1 request whose head has neither `Content-Length` nor
/// `Transfer-Encoding`: by HTTP/1.1's framing its body is empty, whatever the client meant.
/// (HTTP/2 frames delimit every body, so it never carries this.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct UndeclaredLength;

/// The length rule, for the routes that cannot do without a body (the image upload, the new
/// order, the tus PATCH): a `POST`, `PUT` or `PATCH` whose head declares no body is 411
/// `LENGTH_REQUIRED`, before anything else is looked at, rather than an error about an empty
/// body the client may never have meant to send. `Content-Length: 0` is a declared (empty)
/// body and goes on to the handler; so does `Transfer-Encoding: chunked` (tusd takes chunked
/// PATCH bodies too). Routes whose body is optional (session creation with a JWT, tus
/// creation without upload) and bodiless `POST`s (`complete`, `stream-ticket`) are not held
/// to it. Chunked on HTTP/1.0 is refused by the serve loop with the same 411.
pub(crate) async fn require_length(request: Request, next: Next) -> Response {
    let carries_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    if carries_body && request.extensions().get::<UndeclaredLength>().is_some() {
        return ApiError::new(
            Reason::LengthRequired,
            "this request needs a body: send Content-Length (or Transfer-Encoding: chunked)",
        )
        .into_response();
    }
    next.run(request).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// 415: a JSON body sent without `Content-Type: application/json`.
pub(crate) fn json_required() -> ApiError {
    ApiError::new(
        Reason::UnsupportedMediaType,
        "the body must be sent as Content-Type: application/json",
    )
}

/// `application/json`, any case, with at most a `charset` parameter.
pub(crate) fn is_json_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        p.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("charset") && !value.trim().is_empty()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::is_json_type;

    #[test]
    fn json_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/jsonx",
            "application/json; boundary=x",
            "application/json; charset",
            "multipart/form-data",
        ] {
            assert!(!is_json_type(bad), "{bad}");
        }
    }
}
