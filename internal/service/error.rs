//! The HTTP edge's one error type: SPEC.md's kratos-shaped JSON with a matching status.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::biz::BizError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
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
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
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
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
    }

    /// A request body that missed its deadline (`server.http.body_timeout`).
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "the request body arrived too slowly",
        )
    }

    /// SPEC's error for a bare status that no handler explained (a rejection made by a layer
    /// or by hyper): the reason SPEC lists for it and the status's own words.
    pub fn for_status(status: StatusCode) -> Self {
        let reason = match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            404 => "NOT_FOUND",
            405 => "METHOD_NOT_ALLOWED",
            408 => "REQUEST_TIMEOUT",
            409 => "SESSION_CLOSED",
            411 => "LENGTH_REQUIRED",
            412 => "TUS_VERSION_UNSUPPORTED",
            413 => "PAYLOAD_TOO_LARGE",
            414 => "URI_TOO_LONG",
            415 => "UNSUPPORTED_MEDIA_TYPE",
            422 => "UNPROCESSABLE_IMAGE",
            429 => "RATE_LIMITED",
            431 => "HEADERS_TOO_LARGE",
            460 => "CHECKSUM_MISMATCH",
            501 => "NOT_IMPLEMENTED",
            503 => "UNAVAILABLE",
            _ if status.is_client_error() => "INVALID_ARGUMENT",
            _ => "INTERNAL",
        };
        let message = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        Self::new(status, reason, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "an Authorization: Bearer upload token is required",
        )
    }
}

impl From<BizError> for ApiError {
    fn from(e: BizError) -> Self {
        let message = e.to_string();
        let (status, reason) = match &e {
            BizError::InvalidArgument { field, .. } => {
                return ApiError::invalid(field, message);
            }
            BizError::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            BizError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            BizError::SessionClosed => (StatusCode::CONFLICT, "SESSION_CLOSED"),
            BizError::OffsetMismatch { .. } => (StatusCode::CONFLICT, "OFFSET_MISMATCH"),
            BizError::ChecksumMismatch => (checksum_mismatch(), "CHECKSUM_MISMATCH"),
            BizError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            BizError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            BizError::UnprocessableImage(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "UNPROCESSABLE_IMAGE")
            }
            BizError::QuotaExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "QUOTA_EXCEEDED"),
            BizError::Unavailable(cause) => {
                tracing::warn!(cause = ?cause, "unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
            }
            BizError::Internal(cause) => {
                tracing::error!(cause = ?cause, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
            }
        };
        ApiError::new(status, reason, message)
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
            reason: self.reason,
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
