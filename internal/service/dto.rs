//! The JSON shapes of SPEC.md, shared by the REST routes and the SSE stream.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

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
#[derive(Debug, Serialize)]
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
    pub position: u32,
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
#[derive(Debug, Serialize)]
pub struct SessionJson<'a> {
    pub identifier: &'a str,
    pub member_id: u32,
    pub status: &'static str,
    pub image_count: u32,
    pub max_images: u32,
    pub total_bytes: u64,
    pub max_session_bytes: u64,
    pub expires_at: String,
    pub created_at: String,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    pub qr_svg_url: String,
    pub events_url: String,
}
