use std::fmt;

/// Every way a usecase can fail. Messages are safe to show to a client; internal causes are
/// logged where they happen and never carried into [`BizError::Internal`]'s display.
#[derive(Debug, thiserror::Error)]
pub enum BizError {
    #[error("{message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("authentication is required")]
    Unauthenticated,
    /// Unknown session, wrong member or wrong token: one answer, so nothing can be enumerated.
    #[error("not found")]
    NotFound,
    #[error("the upload session is closed")]
    SessionClosed,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("unsupported media type: only JPEG, PNG, WebP and GIF images are accepted")]
    UnsupportedMediaType,
    #[error("{0}")]
    UnprocessableImage(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// tus: the request's `Upload-Offset` is not where the upload is.
    #[error("Upload-Offset is {given}, but the upload is at {current}")]
    OffsetMismatch { given: u64, current: u64 },
    /// tus: the bytes of a request do not match its `Upload-Checksum`; none of them is kept.
    #[error("the request's bytes do not match its Upload-Checksum")]
    ChecksumMismatch,
    #[error("service unavailable, try again")]
    Unavailable(Cause),
    #[error("internal error")]
    Internal(Cause),
}

/// An internal cause, kept for logs. Its `Display` is what operators read, never clients.
pub struct Cause(pub String);

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BizError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        BizError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn internal(cause: impl fmt::Display) -> Self {
        BizError::Internal(Cause(cause.to_string()))
    }

    pub fn unavailable(cause: impl fmt::Display) -> Self {
        BizError::Unavailable(Cause(cause.to_string()))
    }

    /// The internal cause, for the log line written at the edge.
    pub fn cause(&self) -> Option<&str> {
        match self {
            BizError::Internal(c) | BizError::Unavailable(c) => Some(&c.0),
            _ => None,
        }
    }
}

pub type Result<T, E = BizError> = std::result::Result<T, E>;
