//! The HTTP edge's one error type: SPEC.md's kratos-shaped JSON with a matching status.
//!
//! Every `reason` the API answers is a [`Reason`]; its status lives beside it, so a reason
//! and its status are written once, here, and not as string literals at each call site.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::biz::BizError;

/// SPEC.md's error reasons, each with the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    InvalidArgument,
    Unauthenticated,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    SessionClosed,
    OffsetMismatch,
    LengthRequired,
    TusVersionUnsupported,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    UnprocessableImage,
    RateLimited,
    QuotaExceeded,
    HeadersTooLarge,
    ChecksumMismatch,
    NotImplemented,
    Unavailable,
    Internal,
}

impl Reason {
    /// The `reason` of the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::NotFound => "NOT_FOUND",
            Reason::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Reason::RequestTimeout => "REQUEST_TIMEOUT",
            Reason::SessionClosed => "SESSION_CLOSED",
            Reason::OffsetMismatch => "OFFSET_MISMATCH",
            Reason::LengthRequired => "LENGTH_REQUIRED",
            Reason::TusVersionUnsupported => "TUS_VERSION_UNSUPPORTED",
            Reason::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Reason::UriTooLong => "URI_TOO_LONG",
            Reason::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Reason::UnprocessableImage => "UNPROCESSABLE_IMAGE",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::QuotaExceeded => "QUOTA_EXCEEDED",
            Reason::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Reason::ChecksumMismatch => "CHECKSUM_MISMATCH",
            Reason::NotImplemented => "NOT_IMPLEMENTED",
            Reason::Unavailable => "UNAVAILABLE",
            Reason::Internal => "INTERNAL",
        }
    }

    /// The status this reason is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::InvalidArgument => StatusCode::BAD_REQUEST,
            Reason::Unauthenticated => StatusCode::UNAUTHORIZED,
            Reason::NotFound => StatusCode::NOT_FOUND,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::SessionClosed | Reason::OffsetMismatch => StatusCode::CONFLICT,
            Reason::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Reason::TusVersionUnsupported => StatusCode::PRECONDITION_FAILED,
            Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::UriTooLong => StatusCode::URI_TOO_LONG,
            Reason::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::UnprocessableImage => StatusCode::UNPROCESSABLE_ENTITY,
            Reason::RateLimited | Reason::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Reason::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reason::ChecksumMismatch => checksum_mismatch(),
            Reason::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Reason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The reason SPEC lists for a bare status that no handler explained.
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Reason::InvalidArgument,
            401 => Reason::Unauthenticated,
            404 => Reason::NotFound,
            405 => Reason::MethodNotAllowed,
            408 => Reason::RequestTimeout,
            409 => Reason::SessionClosed,
            411 => Reason::LengthRequired,
            412 => Reason::TusVersionUnsupported,
            413 => Reason::PayloadTooLarge,
            414 => Reason::UriTooLong,
            415 => Reason::UnsupportedMediaType,
            422 => Reason::UnprocessableImage,
            429 => Reason::RateLimited,
            431 => Reason::HeadersTooLarge,
            460 => Reason::ChecksumMismatch,
            501 => Reason::NotImplemented,
            503 => Reason::Unavailable,
            _ if status.is_client_error() => Reason::InvalidArgument,
            _ => Reason::Internal,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: Reason,
    pub message: String,
    pub field: Option<&'static str>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u16,
    reason: &'a str,
    message: &'a str,
    metadata: Map<String, Value>,
}

impl ApiError {
    /// An answer with `reason` and the status that goes with it.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            status: reason.status(),
            reason,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 429 `RATE_LIMITED`: come back after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        ApiError {
            retry_after: Some(wait),
            ..Self::new(Reason::RateLimited, message)
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..Self::new(Reason::InvalidArgument, message)
        }
    }

    pub fn not_found() -> Self {
        Self::new(Reason::NotFound, "not found")
    }

    /// A request body that missed its deadline (`server.http.body_timeout`).
    pub fn request_timeout() -> Self {
        Self::new(
            Reason::RequestTimeout,
            "the request body arrived too slowly",
        )
    }

    /// SPEC's error for a bare status that no handler explained (a rejection made by a layer
    /// or by hyper): the reason SPEC lists for it and the status's own words.
    pub fn for_status(status: StatusCode) -> Self {
        let message = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        ApiError {
            status,
            ..Self::new(Reason::for_status(status), message)
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            Reason::Unauthenticated,
            "an Authorization: Bearer upload token is required",
        )
    }
}

impl From<BizError> for ApiError {
    fn from(e: BizError) -> Self {
        let message = e.to_string();
        let reason = match &e {
            BizError::InvalidArgument { field, .. } => {
                return ApiError::invalid(field, message);
            }
            BizError::Unauthenticated => Reason::Unauthenticated,
            BizError::NotFound => Reason::NotFound,
            BizError::SessionClosed => Reason::SessionClosed,
            BizError::OffsetMismatch { .. } => Reason::OffsetMismatch,
            BizError::ChecksumMismatch => Reason::ChecksumMismatch,
            BizError::PayloadTooLarge(_) => Reason::PayloadTooLarge,
            BizError::UnsupportedMediaType => Reason::UnsupportedMediaType,
            BizError::UnprocessableImage(_) => Reason::UnprocessableImage,
            BizError::QuotaExceeded(_) => Reason::QuotaExceeded,
            BizError::Unavailable(cause) => {
                tracing::warn!(cause = ?cause, "unavailable");
                Reason::Unavailable
            }
            BizError::Internal(cause) => {
                tracing::error!(cause = ?cause, "internal error");
                Reason::Internal
            }
        };
        ApiError::new(reason, message)
    }
}

impl ApiError {
    fn body(&self) -> Body<'_> {
        let mut metadata = Map::new();
        if let Some(field) = self.field {
            metadata.insert("field".into(), Value::String(field.into()));
        }
        Body {
            code: self.status.as_u16(),
            reason: self.reason.as_str(),
            message: &self.message,
            metadata,
        }
    }

    /// The JSON text, for the serve loop, which writes answers without a router.
    pub fn json_body(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        let retry_after = match self.retry_after {
            // Whole seconds, rounded up: "0" would invite an immediate retry.
            Some(wait) => {
                Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).map(|s| s.max(1))
            }
            None => (self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// tus's `460 Checksum Mismatch`, a status `http` has no name for.
fn checksum_mismatch() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}
