//! Upload sessions: create, read, QR code, complete, and the phone's upload-info.

use axum::{
    Json,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{
    QueryArgs,
    extract::{OptionalJsonBytes, PathArgs},
};
use crate::{
    biz::{Caller, UploadSession},
    service::{
        Services,
        auth::{Member, upload_token},
        dto::{ImageJson, SessionJson, images_json, rfc3339},
        error::{ApiError, ApiResult, Reason},
    },
};

pub(super) fn session_json<'a>(services: &Services, s: &'a UploadSession) -> SessionJson<'a> {
    let upload_url = services
        .usecase
        .upload_token(s)
        .map(|token| services.upload_url(&s.identifier, &token));
    SessionJson::new(
        s,
        services.hub.sse_format().default_event.as_str(),
        upload_url,
    )
}

/// `POST /v1/api/upload-sessions` with `{"member_id": N}` (dev auth) or a bearer JWT.
pub async fn create(
    State(services): State<Services>,
    headers: HeaderMap,
    OptionalJsonBytes(body): OptionalJsonBytes,
) -> ApiResult<Response> {
    let claimed = match body {
        Some(body) => body_member_id(&body, services.auth.is_jwt())?,
        // Dev auth names the member in the body, so it must be there (and typed as JSON).
        None if !services.auth.is_jwt() => return Err(super::extract::json_required()),
        None => None,
    };
    let member = services.auth.creator(&headers, claimed.as_deref())?;
    services.limits.create_session(member.id)?;
    let (session, _token) = services
        .usecase
        .create_session(member.id, None, None)
        .await?;
    Ok((StatusCode::CREATED, Json(session_json(&services, &session))).into_response())
}

/// The body's `member_id` as text (a number, or a string as the seed's clients sometimes
/// send). In jwt mode the body may be empty.
fn body_member_id(body: &[u8], optional_body: bool) -> ApiResult<Option<String>> {
    if optional_body && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid("body", "the body must be a JSON object"))?;
    if !value.is_object() {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    }
    match value.get("member_id") {
        None | Some(serde_json::Value::Null) => Ok(None),
        // JSON has one number type: `7.0` is the integer 7 (as JSON Schema's `integer` says).
        Some(serde_json::Value::Number(n)) => Ok(Some(match n.as_f64() {
            Some(f)
                if n.is_f64() && f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) =>
            {
                format!("{f:.0}")
            }
            _ => n.to_string(),
        })),
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            "member_id",
            "member_id must be an unsigned 32-bit integer",
        )),
    }
}

/// The member of a member route: `member_id` in the query (dev) or the bearer JWT (jwt).
pub(super) fn member(
    services: &Services,
    headers: &HeaderMap,
    query: Option<&str>,
) -> ApiResult<Member> {
    let args = QueryArgs::parse(query)?;
    Ok(services.auth.member(headers, args.get("member_id"))?)
}

/// `GET /v1/api/upload-sessions/{identifier}?member_id=`
pub async fn get(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let member = member(&services, &headers, query.as_deref())?;
    let session = services
        .usecase
        .get_session(&Caller::Member(member.id), &identifier)
        .await?;
    Ok(Json(session_json(&services, &session)).into_response())
}

/// `GET /v1/api/upload-sessions/{identifier}/qr.svg?member_id=`: the QR code of `upload_url`.
pub async fn qr_svg(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let member = member(&services, &headers, query.as_deref())?;
    let session = services
        .usecase
        .get_session(&Caller::Member(member.id), &identifier)
        .await?;
    let token = services.usecase.upload_token(&session).ok_or_else(|| {
        ApiError::new(
            Reason::SessionClosed,
            "this session's QR code can no longer be shown; create a new session",
        )
    })?;
    let url = services.upload_url(&session.identifier, &token);
    let code = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::from(crate::biz::BizError::internal(e)))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // The image carries the upload token: keep it out of shared caches.
            (header::CACHE_CONTROL, "private, no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        svg,
    )
        .into_response())
}

/// `POST /v1/api/upload-sessions/{identifier}/complete?member_id=`
pub async fn complete(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let member = member(&services, &headers, query.as_deref())?;
    let session = services.usecase.complete(member.id, &identifier).await?;
    Ok(Json(session_json(&services, &session)).into_response())
}

/// What the phone needs to know before it uploads.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UploadInfo<'a> {
    identifier: &'a str,
    #[schema(value_type = crate::service::dto::SessionStatus)]
    status: &'static str,
    max_images: u32,
    image_count: u32,
    remaining_images: u32,
    max_image_bytes: u64,
    remaining_bytes: u64,
    max_session_bytes: u64,
    #[schema(format = DateTime)]
    expires_at: String,
    accepted_types: [&'static str; 4],
    images: Vec<ImageJson<'a>>,
    /// Longest side the phone downscales to before upload (`upload.client_max_edge`).
    client_max_edge: Option<u32>,
    /// Where resumable (tus 1.0) uploads are created.
    tus_url: String,
    /// The live stream, without credentials: the phone adds `ticket=` (from
    /// `POST …/stream-ticket` with its token) for each connect.
    events_url: String,
    /// The session's version when it was read (before its images): a stream snapshot with an
    /// older `id:` shows no more than this answer does.
    version: u64,
}

/// `GET /v1/api/upload-sessions/{identifier}/upload-info` with the upload token. The first
/// call marks the session `scanned`, which the desktop shows as "phone connected".
pub async fn upload_info(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = upload_token(&headers)?;
    let (session, images) = services
        .usecase
        .open_for_upload(&token, &identifier)
        .await?;
    let limits = services.usecase.limits();
    let info = UploadInfo {
        identifier: &session.identifier,
        status: session.status.as_str(),
        max_images: session.max_images,
        image_count: session.image_count,
        remaining_images: session.max_images.saturating_sub(session.image_count),
        max_image_bytes: limits.max_image_bytes,
        remaining_bytes: session.max_bytes.saturating_sub(session.total_bytes),
        max_session_bytes: session.max_bytes,
        expires_at: rfc3339(session.expires_at),
        accepted_types: ["image/jpeg", "image/png", "image/webp", "image/gif"],
        images: images_json(&images),
        client_max_edge: services.client_max_edge,
        tus_url: format!("/v1/api/upload-sessions/{}/tus/", session.identifier),
        events_url: format!(
            "/v1/api/sse/events?event={}&identifier={}",
            services.hub.sse_format().default_event.as_str(),
            session.identifier
        ),
        version: session.version,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(info)).into_response())
}
