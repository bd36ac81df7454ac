//! `image.v1.ImageService` over tonic: proto ↔ biz, and biz errors → `tonic::Status` once.

use std::{pin::Pin, time::Duration};

use bytes::BytesMut;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    Services,
    dto::{image_url, thumbnail_url},
    hub::{Snapshot, Watch, WatchEvent},
    progress::ProgressFrame,
};
use crate::api::image::v1 as pb;
use crate::biz::{BizError, Caller, Image, SessionStatus, UploadFile, UploadSession};

pub struct ImageGrpc {
    services: Services,
}

impl ImageGrpc {
    pub fn new(services: Services) -> Self {
        ImageGrpc { services }
    }

    pub fn into_server(self) -> pb::image_service_server::ImageServiceServer<Self> {
        pb::image_service_server::ImageServiceServer::new(self)
    }

    fn session(&self, s: &UploadSession, token: Option<String>) -> pb::UploadSession {
        session_message(
            s,
            token.map(|t| (self.services.upload_url(&s.identifier, &t), t)),
        )
    }
}

/// The one mapping of biz errors to gRPC status codes.
pub fn status_from(e: BizError) -> Status {
    let message = e.to_string();
    match e {
        BizError::InvalidArgument { .. }
        | BizError::UnsupportedMediaType
        | BizError::UnprocessableImage(_) => Status::invalid_argument(message),
        BizError::Unauthenticated => Status::unauthenticated(message),
        BizError::NotFound => Status::not_found(message),
        BizError::SessionClosed | BizError::OffsetMismatch { .. } => {
            Status::failed_precondition(message)
        }
        BizError::ChecksumMismatch => Status::invalid_argument(message),
        BizError::PayloadTooLarge(_) | BizError::QuotaExceeded(_) => {
            Status::resource_exhausted(message)
        }
        BizError::Unavailable(cause) => {
            tracing::warn!(cause = ?cause, "unavailable");
            Status::unavailable(message)
        }
        BizError::Internal(cause) => {
            tracing::error!(cause = ?cause, "internal error");
            Status::internal(message)
        }
    }
}

fn required_identifier(identifier: &str) -> Result<(), Status> {
    if identifier.is_empty() {
        return Err(Status::invalid_argument("identifier is required"));
    }
    Ok(())
}

/// The caller of a message about one session. The gRPC API serves other services, which
/// name the member they act for: the caller is that member.
fn member_caller(member_id: u32, identifier: &str) -> Result<Caller, Status> {
    required_identifier(identifier)?;
    Ok(Caller::Member(member_id))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn status_message(s: SessionStatus) -> pb::SessionStatus {
    match s {
        SessionStatus::Open => pb::SessionStatus::Open,
        SessionStatus::Scanned => pb::SessionStatus::Scanned,
        SessionStatus::Completed => pb::SessionStatus::Completed,
        SessionStatus::Expired => pb::SessionStatus::Expired,
    }
}

fn session_message(s: &UploadSession, upload: Option<(String, String)>) -> pb::UploadSession {
    let (upload_url, upload_token) = upload.unwrap_or_default();
    pb::UploadSession {
        identifier: s.identifier.clone(),
        member_id: s.member_id,
        status: status_message(s.status) as i32,
        image_count: s.image_count,
        max_images: s.max_images,
        total_bytes: s.total_bytes,
        max_session_bytes: s.max_bytes,
        expires_at: Some(timestamp(s.expires_at)),
        created_at: Some(timestamp(s.created_at)),
        version: s.version,
        upload_url,
        upload_token,
    }
}

fn image_messages(images: &[Image]) -> Vec<pb::Image> {
    images.iter().map(image_message).collect()
}

fn image_message(i: &Image) -> pb::Image {
    pb::Image {
        id: i.id.clone(),
        identifier: i.identifier.clone(),
        url: image_url(&i.id),
        thumbnail_url: thumbnail_url(&i.id),
        content_type: i.content_type.clone(),
        source_content_type: i.source_content_type.clone(),
        width: i.width,
        height: i.height,
        size: i.size,
        sha256: i.sha256.clone(),
        position: i.position,
        created_at: Some(timestamp(i.created_at)),
    }
}

/// The gRPC form of a snapshot, built once per change and shared by gRPC watchers.
fn event_message(snapshot: &Snapshot) -> pb::ImagesEvent {
    snapshot
        .api_event
        .get_or_init(|| pb::ImagesEvent {
            version: snapshot.version(),
            session: Some(session_message(&snapshot.session, None)),
            images: image_messages(&snapshot.images),
            progress: None,
        })
        .clone()
}

/// A `progress` event as an `ImagesEvent` with only `version` and `progress` set.
fn progress_message(frame: &ProgressFrame) -> pb::ImagesEvent {
    pb::ImagesEvent {
        version: frame.version,
        session: None,
        images: Vec::new(),
        progress: Some(pb::UploadProgress {
            identifier: frame.identifier.clone(),
            files: frame
                .files
                .iter()
                .map(|f| pb::FileProgress {
                    upload_id: f.upload_id.clone(),
                    received: f.received,
                    total: f.total,
                })
                .collect(),
            version: frame.version,
        }),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ImagesEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::image_service_server::ImageService for ImageGrpc {
    async fn create_upload_session(
        &self,
        request: Request<pb::CreateUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let r = request.into_inner();
        let ttl = r.ttl_seconds.map(|s| Duration::from_secs(u64::from(s)));
        let (session, token) = self
            .services
            .usecase
            .create_session(r.member_id, ttl, r.max_images)
            .await
            .map_err(status_from)?;
        Ok(Response::new(self.session(&session, Some(token))))
    }

    async fn get_upload_session(
        &self,
        request: Request<pb::GetUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let r = request.into_inner();
        let caller = member_caller(r.member_id, &r.identifier)?;
        let session = self
            .services
            .usecase
            .get_session(&caller, &r.identifier)
            .await
            .map_err(status_from)?;
        Ok(Response::new(self.session(&session, None)))
    }

    async fn get_images_by_identifier(
        &self,
        request: Request<pb::GetImagesByIdentifierRequest>,
    ) -> Result<Response<pb::GetImagesByIdentifierResponse>, Status> {
        let r = request.into_inner();
        let caller = member_caller(r.member_id, &r.identifier)?;
        let images = self
            .services
            .usecase
            .list_images(&caller, &r.identifier)
            .await
            .map_err(status_from)?;
        Ok(Response::new(pb::GetImagesByIdentifierResponse {
            images: image_messages(&images),
        }))
    }

    type WatchImagesStream = EventStream;

    async fn watch_images(
        &self,
        request: Request<pb::WatchImagesRequest>,
    ) -> Result<Response<Self::WatchImagesStream>, Status> {
        let r = request.into_inner();
        let caller = member_caller(r.member_id, &r.identifier)?;
        let (watch, current) = self
            .services
            .hub
            .watch(&r.identifier)
            .await
            .map_err(status_from)?;
        self.services
            .usecase
            .authorize(&caller, &current.session)
            .map_err(status_from)?;
        let first = (r.last_version != current.version()).then(|| event_message(&current));
        let done = current.session.status.is_finished();
        let state = (watch, current.version(), first, done);
        let stream = futures::stream::unfold(state, next_event);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn upload_image(
        &self,
        request: Request<Streaming<pb::UploadImageRequest>>,
    ) -> Result<Response<pb::Image>, Status> {
        use pb::upload_image_request::Payload;
        let usecase = &self.services.usecase;
        let mut stream = request.into_inner();
        let idle = self.services.stream_idle_timeout;
        let meta = match next_message(&mut stream, idle).await? {
            Some(pb::UploadImageRequest {
                payload: Some(Payload::Metadata(meta)),
            }) => meta,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must carry the metadata",
                ));
            }
        };
        let caller = member_caller(meta.member_id, &meta.identifier)?;
        let key = (!meta.idempotency_key.is_empty()).then(|| meta.idempotency_key.clone());
        let mut upload = usecase
            .begin_upload(&caller, &meta.identifier, key.clone())
            .await
            .map_err(status_from)?;
        if let Some(key) = &key
            && let Some(images) = usecase
                .replay(&meta.identifier, key)
                .await
                .map_err(status_from)?
            && let Some(first) = images.first()
        {
            return Ok(Response::new(image_message(first)));
        }
        let limit = usecase.next_file_limit(&upload);
        let mut buffer = BytesMut::new();
        while let Some(message) = next_message(&mut stream, idle).await? {
            match message.payload {
                Some(Payload::Chunk(chunk)) => {
                    if (buffer.len() + chunk.len()) as u64 > limit.bytes() {
                        return Err(status_from(usecase.file_too_large(limit)));
                    }
                    buffer.extend_from_slice(&chunk);
                }
                _ => return Err(Status::invalid_argument("metadata may only come first")),
            }
        }
        let file = UploadFile {
            bytes: buffer.freeze(),
        };
        usecase
            .store_file(&mut upload, file)
            .await
            .map_err(status_from)?;
        let images = usecase.commit(upload).await.map_err(status_from)?;
        let image = images
            .first()
            .ok_or_else(|| Status::internal("no image stored"))?;
        Ok(Response::new(image_message(image)))
    }

    async fn delete_image(
        &self,
        request: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        if r.image_id.is_empty() {
            return Err(Status::invalid_argument("image_id is required"));
        }
        self.services
            .usecase
            .delete_image_by_id(r.member_id, &r.image_id)
            .await
            .map_err(status_from)?;
        Ok(Response::new(()))
    }

    async fn complete_upload_session(
        &self,
        request: Request<pb::CompleteUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let r = request.into_inner();
        required_identifier(&r.identifier)?;
        let session = self
            .services
            .usecase
            .complete(r.member_id, &r.identifier)
            .await
            .map_err(status_from)?;
        Ok(Response::new(self.session(&session, None)))
    }

    async fn reorder_images(
        &self,
        request: Request<pb::ReorderImagesRequest>,
    ) -> Result<Response<pb::ReorderImagesResponse>, Status> {
        let r = request.into_inner();
        let caller = member_caller(r.member_id, &r.identifier)?;
        let (_, images) = self
            .services
            .usecase
            .reorder(&caller, &r.identifier, &r.image_ids)
            .await
            .map_err(status_from)?;
        Ok(Response::new(pb::ReorderImagesResponse {
            images: image_messages(&images),
        }))
    }
}

/// The next message, or an error once the stream has been silent for `idle`.
async fn next_message(
    stream: &mut Streaming<pb::UploadImageRequest>,
    idle: Duration,
) -> Result<Option<pb::UploadImageRequest>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        // tonic refuses a message over its size limit as OUT_OF_RANGE; to the caller it is
        // a limit like the others.
        Ok(Err(status)) if status.code() == tonic::Code::OutOfRange => {
            Err(Status::resource_exhausted(status.message()))
        }
        Ok(message) => message,
        Err(_) => Err(Status::deadline_exceeded("the upload stream stalled")),
    }
}

/// One step of a `WatchImages` stream: pending first event, then changes until the session
/// finishes or the server closes. Heartbeats are an SSE matter; HTTP/2 keeps gRPC alive.
async fn next_event(
    (mut watch, mut last, mut pending, mut done): (Watch, u64, Option<pb::ImagesEvent>, bool),
) -> Option<(
    Result<pb::ImagesEvent, Status>,
    (Watch, u64, Option<pb::ImagesEvent>, bool),
)> {
    if let Some(event) = pending.take() {
        watch.metrics().events_sent(1);
        return Some((Ok(event), (watch, last, None, done)));
    }
    if done {
        return None;
    }
    loop {
        match watch.next().await {
            WatchEvent::Changed(snapshot) if snapshot.version() > last => {
                last = snapshot.version();
                done = snapshot.session.status.is_finished();
                watch.metrics().events_sent(1);
                let event = event_message(&snapshot);
                return Some((Ok(event), (watch, last, None, done)));
            }
            WatchEvent::Progress(frame) => {
                watch.metrics().events_sent(1);
                let event = progress_message(&frame);
                return Some((Ok(event), (watch, last, None, done)));
            }
            WatchEvent::Changed(_) | WatchEvent::Heartbeat => continue,
            WatchEvent::Closing => return None,
        }
    }
}
