//! The phone's upload (streaming multipart, all or nothing) and image deletion.

use axum::{
    Json,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::BytesMut;
use futures::StreamExt;
use serde::Serialize;

use super::{
    ClientIp,
    upload_body::{Meter, MeteredBody},
};
use crate::{
    biz::{
        Caller, ImageUsecase, PendingUpload, ProgressReporter, UploadFile, UploadTimings, new_id,
    },
    metrics::UploadKind,
    service::{
        Services,
        auth::upload_token,
        dto::{ImageJson, images_json},
        error::{ApiError, ApiResult},
    },
};

/// Parts that are not files (form fields) are skipped, but only this much of each is read.
const MAX_OTHER_PART_BYTES: u64 = 64 * 1024;

/// The images one upload request stored, in position order.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Uploaded<'a> {
    images: Vec<ImageJson<'a>>,
}

/// `POST /v1/api/upload-sessions/{identifier}/images` with the upload token: one or more
/// parts named `file`. The body is read as it arrives and each file is cut off at its limit,
/// so nothing beyond the per-image limit is ever buffered. If any file is refused, none of the
/// request's files is kept.
pub async fn upload(
    State(services): State<Services>,
    super::extract::PathArgs(identifier): super::extract::PathArgs<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    services.limits.upload_from_ip(ip)?;
    let started = Instant::now();
    let mut stages = Stages::default();
    let result = receive(&services, &identifier, &headers, body, &mut stages).await;
    let took = started.elapsed();
    services.metrics.upload(result.is_ok());
    services
        .metrics
        .upload_took(UploadKind::Multipart, result.is_ok(), took);
    let images = result?;
    let mut response = (
        StatusCode::CREATED,
        Json(Uploaded {
            images: images_json(&images),
        }),
    )
        .into_response();
    if services.server_timing
        && let Ok(value) = header::HeaderValue::try_from(stages.server_timing(took))
    {
        response.headers_mut().insert("server-timing", value);
    }
    Ok(response)
}

/// One upload's stage times: the edge's own (session check, body) and the usecase's.
#[derive(Default)]
struct Stages {
    check: Duration,
    body: Duration,
    usecase: Option<Arc<UploadTimings>>,
}

impl Stages {
    /// `check;dur=0.210, body;dur=0.040, clean;dur=…, blobs;dur=…, db;dur=…, bus;dur=…,
    /// total;dur=…`, in milliseconds (the `Server-Timing` header's unit).
    fn server_timing(&self, total: Duration) -> String {
        let usecase = self.usecase.as_ref().map(|t| t.stages());
        [("check", self.check), ("body", self.body)]
            .into_iter()
            .chain(usecase.into_iter().flatten())
            .chain([("total", total)])
            .map(|(name, d)| format!("{name};dur={:.3}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn receive(
    services: &Services,
    identifier: &str,
    headers: &HeaderMap,
    body: Body,
    stages: &mut Stages,
) -> ApiResult<Vec<crate::biz::Image>> {
    let token = upload_token(headers)?;
    let usecase = &services.usecase;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::invalid("Idempotency-Key", "Idempotency-Key must be visible ASCII")
                })?
                .to_owned(),
        ),
    };
    let caller = Caller::UploadToken(token);
    // Authorize before reading a byte of the body.
    let checking = Instant::now();
    let mut upload = usecase
        .begin_upload(&caller, identifier, key.clone())
        .await?;
    stages.check = checking.elapsed();
    stages.usecase = Some(upload.timings());
    services.limits.upload_to_session(identifier)?;
    if let Some(key) = &key
        && let Some(images) = usecase.replay(identifier, key).await?
    {
        return Ok(images);
    }
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| ApiError::invalid("Content-Type", "the body must be multipart/form-data"))?;
    // The desktop sees this request's bytes arrive as a `progress` event.
    let total = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let arrived = Arc::new(AtomicU64::new(0));
    let mut progress = ProgressReporter::for_request(
        usecase.bus().clone(),
        identifier,
        &format!("request-{}", new_id()),
        total,
    );
    let counted = arrived.clone();
    let stream = body.into_data_stream().inspect(move |piece| {
        if let Ok(bytes) = piece {
            counted.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    let meter = Meter::default();
    let mut body = MeteredBody::new(stream, meter.clone());
    let mut multipart = multer::Multipart::new(&mut body, boundary);
    let max_parts = usecase.limits().max_images as usize + 8;
    let mut parts = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        meter.part_started();
        parts += 1;
        if parts > max_parts {
            return Err(ApiError::invalid(
                "file",
                format!("too many parts in one request (at most {max_parts})"),
            ));
        }
        if field.name() != Some("file") {
            read_bounded(&mut field, &meter, MAX_OTHER_PART_BYTES)
                .await?
                .ok_or_else(|| ApiError::invalid("body", "a form field is too large"))?;
            continue;
        }
        let reading = Instant::now();
        let file = read_file(
            usecase,
            &upload,
            &mut field,
            &meter,
            &mut progress,
            &arrived,
        )
        .await?;
        stages.body += reading.elapsed();
        usecase.store_file(&mut upload, file).await?;
    }
    drop(multipart);
    // Nothing is kept from a body that did not arrive whole.
    body.finish()
        .await
        .map_err(|e| ApiError::invalid("body", format!("incomplete request body: {e}")))?;
    progress.advance(arrived.load(Ordering::Relaxed)).await;
    let images = usecase.commit(upload).await?;
    progress.end().await;
    Ok(images)
}

/// Reads one file part, refusing it as soon as it passes the limit that applies to it.
async fn read_file(
    usecase: &ImageUsecase,
    upload: &PendingUpload,
    field: &mut multer::Field<'_>,
    meter: &Meter,
    progress: &mut ProgressReporter,
    arrived: &AtomicU64,
) -> ApiResult<UploadFile> {
    let limit = usecase.next_file_limit(upload);
    let mut buffer = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        meter.data_received(chunk.len());
        progress.advance(arrived.load(Ordering::Relaxed)).await;
        if (buffer.len() + chunk.len()) as u64 > limit.bytes() {
            return Err(usecase.file_too_large(limit).into());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(UploadFile {
        bytes: buffer.freeze(),
    })
}

/// The part's bytes, or `None` once it exceeds `limit` (the rest is not read).
async fn read_bounded(
    field: &mut multer::Field<'_>,
    meter: &Meter,
    limit: u64,
) -> ApiResult<Option<bytes::Bytes>> {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        meter.data_received(chunk.len());
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Some(buffer.freeze()))
}

fn multipart_error(e: multer::Error) -> ApiError {
    let detail = match &e {
        // The part's name is the client's text; the answer does not repeat it.
        multer::Error::IncompleteFieldData { .. } => "a part's data is incomplete".to_owned(),
        multer::Error::StreamReadFailed(cause) => format!("{e}: {cause}"),
        _ => e.to_string(),
    };
    ApiError::invalid("body", format!("malformed multipart body: {detail}"))
}

/// `DELETE /v1/api/upload-sessions/{identifier}/images/{image_id}`, by the phone (upload
/// token) or by the owner (`member_id` in dev mode, a bearer JWT in jwt mode).
pub async fn delete_image(
    State(services): State<Services>,
    super::extract::PathArgs((identifier, image_id)): super::extract::PathArgs<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let caller = services.auth.caller(&headers, query.as_deref())?;
    services
        .usecase
        .delete_image(&caller, &identifier, &image_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
