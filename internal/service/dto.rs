//! The JSON shapes of SPEC.md, shared by the REST routes and the SSE stream.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::biz::{Image, UploadSession};

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn image_url(id: &str) -> String {
    format!("/v1/api/images/{id}")
}

pub fn thumbnail_url(id: &str) -> String {
    format!("/v1/api/images/{id}/thumbnail")
}

/// SPEC.md's Image JSON.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Image)]
pub struct ImageJson<'a> {
    pub id: &'a str,
    pub identifier: &'a str,
    pub url: String,
    pub thumbnail_url: String,
    pub content_type: &'a str,
    pub source_content_type: &'a str,
    pub width: u32,
    pub height: u32,
    pub size: u64,
    pub sha256: &'a str,
    /// 1-based display order; position 1 is the cover.
    #[schema(minimum = 1)]
    pub position: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl<'a> From<&'a Image> for ImageJson<'a> {
    fn from(i: &'a Image) -> Self {
        ImageJson {
            id: &i.id,
            identifier: &i.identifier,
            url: image_url(&i.id),
            thumbnail_url: thumbnail_url(&i.id),
            content_type: &i.content_type,
            source_content_type: &i.source_content_type,
            width: i.width,
            height: i.height,
            size: i.size,
            sha256: &i.sha256,
            position: i.position,
            created_at: rfc3339(i.created_at),
        }
    }
}

pub fn images_json(images: &[Image]) -> Vec<ImageJson<'_>> {
    images.iter().map(ImageJson::from).collect()
}

/// A session's status as the JSON spells it (`SessionStatus::as_str`).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // A schema only.
pub enum SessionStatus {
    Open,
    Scanned,
    Completed,
    Expired,
}

/// The SSE `session` event's data.
#[derive(Debug, Serialize)]
pub struct SessionEventJson<'a> {
    pub identifier: &'a str,
    pub status: &'static str,
    pub image_count: u32,
    pub max_images: u32,
    pub expires_at: String,
    pub version: u64,
}

impl<'a> From<&'a UploadSession> for SessionEventJson<'a> {
    fn from(s: &'a UploadSession) -> Self {
        SessionEventJson {
            identifier: &s.identifier,
            status: s.status.as_str(),
            image_count: s.image_count,
            max_images: s.max_images,
            expires_at: rfc3339(s.expires_at),
            version: s.version,
        }
    }
}

/// The session as the REST routes answer it to its owner.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionJson<'a> {
    pub identifier: &'a str,
    #[schema(value_type = u64, maximum = 4294967295_u64)]
    pub member_id: u32,
    #[schema(value_type = SessionStatus)]
    pub status: &'static str,
    pub image_count: u32,
    pub max_images: u32,
    pub total_bytes: u64,
    pub max_session_bytes: u64,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    pub qr_svg_url: String,
    pub events_url: String,
}

impl<'a> SessionJson<'a> {
    /// The session's JSON; `sse_event` is `sse.event`, the event name its `events_url` asks
    /// for. The REST routes and webhook bodies both build it here, so the shapes cannot part.
    pub fn new(s: &'a UploadSession, sse_event: &str, upload_url: Option<String>) -> Self {
        SessionJson {
            identifier: &s.identifier,
            member_id: s.member_id,
            status: s.status.as_str(),
            image_count: s.image_count,
            max_images: s.max_images,
            total_bytes: s.total_bytes,
            max_session_bytes: s.max_bytes,
            expires_at: rfc3339(s.expires_at),
            created_at: rfc3339(s.created_at),
            version: s.version,
            upload_url,
            qr_svg_url: format!(
                "/v1/api/upload-sessions/{}/qr.svg?member_id={}",
                s.identifier, s.member_id
            ),
            events_url: format!(
                "/v1/api/sse/events?event={sse_event}&member_id={}&identifier={}",
                s.member_id, s.identifier
            ),
        }
    }
}
