//! Domain types: an upload session and its images.

use std::{borrow::Cow, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created; the QR code has not been opened yet.
    Open,
    /// The phone opened the upload page.
    Scanned,
    /// The member finished; no more uploads.
    Completed,
    /// Never completed and past `expires_at`.
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Scanned => "scanned",
            SessionStatus::Completed => "completed",
            SessionStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => SessionStatus::Open,
            "scanned" => SessionStatus::Scanned,
            "completed" => SessionStatus::Completed,
            "expired" => SessionStatus::Expired,
            _ => return None,
        })
    }

    /// Completed and expired sessions take no uploads and end their streams.
    pub fn is_finished(self) -> bool {
        matches!(self, SessionStatus::Completed | SessionStatus::Expired)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    pub identifier: String,
    pub member_id: u32,
    pub token_hash: String,
    pub status: SessionStatus,
    pub image_count: u32,
    pub max_images: u32,
    pub total_bytes: u64,
    pub max_bytes: u64,
    /// Change counter: bumped by one in the same write as every change; the SSE event id.
    pub version: u64,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl UploadSession {
    /// The status as of `now`: an open session past its expiry is expired even before the
    /// background sweep has written it.
    pub fn status_at(&self, now: DateTime<Utc>) -> SessionStatus {
        match self.status {
            SessionStatus::Open | SessionStatus::Scanned if now >= self.expires_at => {
                SessionStatus::Expired
            }
            status => status,
        }
    }

    pub fn accepts_uploads(&self, now: DateTime<Utc>) -> bool {
        !self.status_at(now).is_finished()
    }
}

/// What the usecase asks the repository to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub identifier: String,
    pub member_id: u32,
    pub token_hash: String,
    pub max_images: u32,
    pub max_bytes: u64,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub identifier: String,
    /// Of the stored copy.
    pub content_type: String,
    /// Of the upload as it came: `image/heic` for a HEIC stored as a JPEG rendition, else
    /// the same as `content_type`.
    pub source_content_type: String,
    /// As displayed, i.e. after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// Size and SHA-256 (hex) of the stored copy.
    pub size: u64,
    pub sha256: String,
    /// 1-based upload order within the session.
    pub position: u32,
    pub created_at: DateTime<Utc>,
}

impl Image {
    /// Blob keys derive from ids we minted, never from a client's filename.
    pub fn blob_key(identifier: &str, id: &str) -> String {
        format!("{identifier}/{id}")
    }

    pub fn thumbnail_key(identifier: &str, id: &str) -> String {
        format!("{identifier}/{id}.thumb")
    }

    pub const THUMBNAIL_CONTENT_TYPE: &'static str = "image/jpeg";
}

/// An image whose blobs are already written, waiting for its row.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: String,
    pub content_type: String,
    pub source_content_type: String,
    pub width: u32,
    pub height: u32,
    pub size: u64,
    pub sha256: String,
    /// The request's `Idempotency-Key` and this file's index in the request.
    pub idempotency: Option<(String, u32)>,
}

/// The doorbell rung after every change: which session, and its version after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    pub identifier: String,
    pub version: u64,
}

/// The name of an SSE event, checked once where it enters (the `sse.event` setting, a
/// watcher's `event` parameter) and trusted everywhere after: names go into the stream
/// verbatim, so one that could end a line or inject a field is refused when it is made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct EventName(Cow<'static, str>);

/// A name outside `[A-Za-z0-9_.:-]{1,64}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must match [A-Za-z0-9_.:-]{{1,64}}")]
pub struct UnsafeEventName;

impl EventName {
    /// The event that carries the session's status, sent before every snapshot.
    pub const SESSION: EventName = EventName(Cow::Borrowed("session"));

    /// The name, or `None` if it is not a safe event name.
    pub fn new(name: &str) -> Option<Self> {
        is_safe_event_name(name).then(|| EventName(Cow::Owned(name.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventName {
    type Error = UnsafeEventName;

    fn try_from(name: String) -> std::result::Result<Self, Self::Error> {
        if is_safe_event_name(&name) {
            Ok(EventName(Cow::Owned(name)))
        } else {
            Err(UnsafeEventName)
        }
    }
}

impl std::fmt::Display for EventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The seed's `[A-Za-z0-9_.:-]{1,64}`: no line break, no space, nothing a field could hide in.
fn is_safe_event_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Ids we mint are base64url; anything else cannot name one of ours.
pub fn is_well_formed_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert!(is_safe_event_name("upload_by_qr"));
        assert!(is_safe_event_name("a.b:c-d_9"));
        assert!(!is_safe_event_name(""));
        assert!(!is_safe_event_name("bad\nname"));
        assert!(!is_safe_event_name("bad name"));
        assert!(!is_safe_event_name(&"x".repeat(65)));
    }

    #[test]
    fn open_session_past_expiry_reads_expired() {
        let now = Utc::now();
        let session = UploadSession {
            identifier: "x".into(),
            member_id: 1,
            token_hash: String::new(),
            status: SessionStatus::Scanned,
            image_count: 0,
            max_images: 1,
            total_bytes: 0,
            max_bytes: 1,
            version: 1,
            expires_at: now,
            created_at: now,
        };
        assert_eq!(session.status_at(now), SessionStatus::Expired);
        assert!(!session.accepts_uploads(now));
    }
}
