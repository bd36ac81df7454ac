//! Resumable uploads (tus 1.0): a file that arrives over several requests, maybe through
//! several instances, and then goes through the same pipeline as a multipart file.
//!
//! The state of an upload (length, offset, the blobs that hold its bytes) lives in the
//! database, its bytes in the blob store as parts of at most [`CHUNK`] bytes, so no instance
//! holds more than one chunk of an unfinished upload in memory and any instance can take the
//! next request. A part is written first and then appended to the row with a compare-and-set
//! on the offset: of two requests racing at one offset, one wins and the other's part is
//! deleted. Bytes that arrived before a connection broke are kept (tus asks servers to store
//! as much as they received), unless the request carried a checksum, which covers its whole
//! body and so cannot be verified for a part of it.

mod write;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use crate::biz::{
    BizError, BlobStore, Caller, ImageUsecase, Result, UploadFile, UploadSession,
    progress::{ProgressReporter, end_progress},
    secret::new_id,
};

pub use write::{Checksum, ChecksumAlgorithm, PatchOutcome, TusWrite};

/// Bytes buffered before they are written as one part.
pub const CHUNK: usize = 1 << 20;
/// Bytes enough to tell an image's format from its first bytes (WebP needs 12).
const SNIFF_BYTES: usize = 12;
/// Longest `Upload-Metadata` kept.
const MAX_METADATA: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusUpload {
    pub id: String,
    pub identifier: String,
    pub length: u64,
    pub offset: u64,
    /// Names of the part blobs, in order; see [`TusUpload::part_key`].
    pub parts: Vec<String>,
    /// The client's `Upload-Metadata`, as sent.
    pub metadata: Option<String>,
    /// The image this upload became, once finished.
    pub image_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl TusUpload {
    /// Beside the session's images, so the orphan sweep and the fs store's folders treat
    /// parts like any other blob of the session.
    pub fn part_key(&self, part: &str) -> String {
        format!("{}/{}.part-{part}", self.identifier, self.id)
    }

    pub fn is_finished(&self) -> bool {
        self.image_id.is_some()
    }

    /// The key for the pipeline's `Idempotency-Key`: a finish that is retried (a crash after
    /// the image's commit) finds the image instead of adding it twice.
    fn idempotency_key(&self) -> String {
        format!("tus-{}", self.id)
    }
}

/// Whether `Upload-Metadata` carries a `client_id` key (the phone page's id for a file).
fn has_client_id(metadata: &str) -> bool {
    metadata
        .split(',')
        .any(|pair| pair.trim().split(' ').next() == Some("client_id"))
}

/// What a part blob's key says about its upload, for the orphan sweep.
pub fn part_of(key: &str) -> Option<(&str, &str)> {
    let name = key.rsplit('/').next()?;
    name.split_once(".part-")
}

/// Persistence of tus uploads.
#[async_trait]
pub trait TusRepo: Send + Sync {
    async fn create(&self, upload: &TusUpload) -> Result<()>;
    async fn get(&self, id: &str) -> Result<Option<TusUpload>>;
    /// Moves the offset from `from` to `to` and appends `parts`, if the offset is still
    /// `from` and the upload unfinished; `false` if another request moved it first.
    async fn append(&self, upload: &TusUpload, to: u64, parts: &[String]) -> Result<bool>;
    /// `false` if another request finished it first.
    async fn mark_finished(&self, id: &str, image_id: &str) -> Result<bool>;
    /// Deletes the row; `false` if there was none.
    async fn delete(&self, id: &str) -> Result<bool>;
    /// An unfinished, unexpired upload of the session created with exactly this
    /// `Upload-Metadata` and length.
    async fn find_unfinished(
        &self,
        identifier: &str,
        metadata: &str,
        length: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<TusUpload>>;
    /// The session's unfinished uploads: how many, and the bytes they declared.
    async fn reserved(&self, identifier: &str) -> Result<(u32, u64)>;
    /// Uploads to sweep at `now`: unfinished ones past their expiry, and every one whose
    /// session no longer takes uploads.
    async fn due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<TusUpload>>;
}

pub struct TusUsecase {
    images: Arc<ImageUsecase>,
    repo: Arc<dyn TusRepo>,
    blobs: Arc<dyn BlobStore>,
    expiry: Duration,
}

impl TusUsecase {
    pub fn new(
        images: Arc<ImageUsecase>,
        repo: Arc<dyn TusRepo>,
        blobs: Arc<dyn BlobStore>,
        expiry: Duration,
    ) -> Self {
        TusUsecase {
            images,
            repo,
            blobs,
            expiry,
        }
    }

    /// `Tus-Max-Size`: the per-image limit.
    pub fn max_size(&self) -> u64 {
        self.images.limits().max_image_bytes
    }

    /// Creation: checks the session's quotas against `length` before any byte arrives. Returns
    /// the upload and whether it is new (see `client_id` below).
    #[tracing::instrument(skip_all, fields(identifier, length))]
    pub async fn create(
        &self,
        token: &str,
        identifier: &str,
        length: u64,
        metadata: Option<String>,
    ) -> Result<(TusUpload, bool)> {
        let session = self.open_session(token, identifier).await?;
        if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA) {
            return Err(BizError::invalid(
                "Upload-Metadata",
                format!("Upload-Metadata is longer than {MAX_METADATA} bytes"),
            ));
        }
        // A creation repeated because its answer was lost (a reload, a cut) names the same
        // `client_id` in its metadata: it gets the upload it already made, at its offset,
        // instead of a second one that would hold a quota slot until it expired.
        if let Some(m) = metadata.as_deref().filter(|m| has_client_id(m))
            && let Some(existing) = self
                .repo
                .find_unfinished(identifier, m, length, Utc::now())
                .await?
        {
            return Ok((existing, false));
        }
        if length > self.max_size() {
            return Err(BizError::PayloadTooLarge(format!(
                "Upload-Length is larger than the limit of {} bytes",
                self.max_size()
            )));
        }
        let (count, bytes) = self.repo.reserved(identifier).await?;
        if u64::from(session.image_count) + u64::from(count) >= u64::from(session.max_images) {
            return Err(BizError::QuotaExceeded(format!(
                "the session already holds or is receiving its limit of {} images",
                session.max_images
            )));
        }
        if session.total_bytes + bytes + length > session.max_bytes {
            return Err(BizError::PayloadTooLarge(
                "Upload-Length is larger than what is left of the session's size limit".into(),
            ));
        }
        let now = Utc::now();
        let expiry = chrono::Duration::from_std(self.expiry).map_err(BizError::internal)?;
        let upload = TusUpload {
            id: new_id(),
            identifier: identifier.to_owned(),
            length,
            offset: 0,
            parts: Vec::new(),
            metadata,
            image_id: None,
            created_at: now,
            expires_at: (now + expiry).min(session.expires_at),
        };
        self.repo.create(&upload).await?;
        let mut reporter = self.reporter(&upload);
        reporter.flush().await;
        tracing::info!(upload_id = %upload.id, "tus upload created");
        Ok((upload, true))
    }

    /// The upload for HEAD: offset and length, and whether this call finished it. A finished
    /// upload answers until its session ends; one whose last byte arrived but whose finish
    /// did not happen (its request was cut during it) is finished now.
    #[tracing::instrument(skip_all, fields(identifier, upload_id))]
    pub async fn head(
        &self,
        token: &str,
        identifier: &str,
        upload_id: &str,
    ) -> Result<(TusUpload, bool)> {
        let session = self.authorized(token, identifier).await?;
        if !session.accepts_uploads(Utc::now()) {
            return Err(BizError::NotFound);
        }
        let upload = self.find(identifier, upload_id).await?;
        if !upload.is_finished() && upload.offset == upload.length {
            // A client that sees Offset = Length takes the file as done: make it so.
            let mut reporter = self.reporter(&upload);
            return match self.finish(token, upload.clone(), &mut reporter).await {
                Ok(done) => Ok(done),
                Err(e) => {
                    self.refused(&upload, &e).await;
                    Err(e)
                }
            };
        }
        Ok((upload, false))
    }

    /// Starts a PATCH at `offset`. The caller feeds the body to [`TusWrite::write`] and ends
    /// with [`TusWrite::complete`] (the body arrived whole) or [`TusWrite::interrupted`].
    #[tracing::instrument(skip_all, fields(identifier, upload_id, offset))]
    pub async fn begin_patch(
        self: &Arc<Self>,
        token: &str,
        identifier: &str,
        upload_id: &str,
        offset: u64,
        checksum: Option<Checksum>,
    ) -> Result<TusWrite> {
        let session = self.authorized(token, identifier).await?;
        let upload = self.find(identifier, upload_id).await?;
        if !session.accepts_uploads(Utc::now()) {
            return Err(BizError::SessionClosed);
        }
        if offset != upload.offset {
            return Err(BizError::OffsetMismatch {
                given: offset,
                current: upload.offset,
            });
        }
        let reporter = self.reporter(&upload);
        Ok(TusWrite::new(
            self.clone(),
            token,
            upload,
            checksum,
            reporter,
        ))
    }

    /// Termination: the upload and its parts are gone; later requests answer 404. A finished
    /// upload's image stays (it is deleted through the images API).
    #[tracing::instrument(skip_all, fields(identifier, upload_id))]
    pub async fn terminate(&self, token: &str, identifier: &str, upload_id: &str) -> Result<()> {
        self.authorized(token, identifier).await?;
        let upload = self.find(identifier, upload_id).await?;
        self.discard(&upload).await?;
        Ok(())
    }

    /// Deletes expired unfinished uploads and the uploads of sessions that ended, with their
    /// parts; returns how many unfinished ones expired.
    pub async fn sweep(&self) -> Result<usize> {
        let now = Utc::now();
        let mut expired = 0;
        for upload in self.repo.due(now, 200).await? {
            if !upload.is_finished() {
                expired += 1;
            }
            self.discard(&upload).await?;
        }
        Ok(expired)
    }

    /// Part blobs older than `grace` that no upload names (a request that lost its race, a
    /// crash between a part and its row): deleted.
    pub async fn sweep_orphan_parts(&self, grace: Duration) -> Result<usize> {
        let grace = chrono::Duration::from_std(grace).map_err(BizError::internal)?;
        let mut swept = 0;
        for key in self.blobs.list_older_than(Utc::now() - grace).await? {
            let Some((upload_id, part)) = part_of(&key) else {
                continue;
            };
            let named = match self.repo.get(upload_id).await? {
                Some(upload) => upload.parts.iter().any(|p| p == part),
                None => false,
            };
            if !named {
                self.blobs.delete(&key).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    async fn authorized(&self, token: &str, identifier: &str) -> Result<UploadSession> {
        self.images
            .get_session(&Caller::UploadToken(token.to_owned()), identifier)
            .await
    }

    async fn open_session(&self, token: &str, identifier: &str) -> Result<UploadSession> {
        let session = self.authorized(token, identifier).await?;
        if !session.accepts_uploads(Utc::now()) {
            return Err(BizError::SessionClosed);
        }
        Ok(session)
    }

    /// The upload, if it belongs to the session and has not expired (an expired one is
    /// already gone for the client, before the sweep deletes it).
    async fn find(&self, identifier: &str, upload_id: &str) -> Result<TusUpload> {
        if !super::is_well_formed_id(upload_id) {
            return Err(BizError::NotFound);
        }
        match self.repo.get(upload_id).await? {
            Some(u)
                if u.identifier == identifier && (u.is_finished() || u.expires_at > Utc::now()) =>
            {
                Ok(u)
            }
            _ => Err(BizError::NotFound),
        }
    }

    fn reporter(&self, upload: &TusUpload) -> ProgressReporter {
        ProgressReporter::for_upload(
            self.images.bus().clone(),
            &upload.identifier,
            &upload.id,
            upload.offset,
            Some(upload.length),
        )
    }

    /// The whole file through the multipart pipeline: one image, or the same refusal.
    async fn finish(
        &self,
        token: &str,
        mut upload: TusUpload,
        reporter: &mut ProgressReporter,
    ) -> Result<(TusUpload, bool)> {
        let key = upload.idempotency_key();
        let image = match self.images.replay(&upload.identifier, &key).await? {
            Some(mut images) if !images.is_empty() => images.remove(0),
            _ => {
                let bytes = self.assemble(&upload).await?;
                let caller = Caller::UploadToken(token.to_owned());
                let mut stored = self
                    .images
                    .begin_upload(&caller, &upload.identifier, Some(key))
                    .await?;
                self.images
                    .store_file(&mut stored, UploadFile { bytes })
                    .await?;
                let mut images = self.images.commit(stored).await?;
                if images.is_empty() {
                    return Err(BizError::internal("the commit returned no image"));
                }
                images.remove(0)
            }
        };
        let first = self.repo.mark_finished(&upload.id, &image.id).await?;
        self.delete_parts(&upload).await;
        upload.image_id = Some(image.id.clone());
        let _ = std::mem::replace(reporter, self.reporter(&upload))
            .end()
            .await;
        if first {
            tracing::info!(upload_id = %upload.id, image_id = %image.id, "tus upload finished");
        }
        Ok((upload, first))
    }

    /// The parts joined: the whole file, held once, as a multipart file is.
    async fn assemble(&self, upload: &TusUpload) -> Result<Bytes> {
        let length = usize::try_from(upload.length).map_err(BizError::internal)?;
        let mut file = BytesMut::with_capacity(length);
        for part in &upload.parts {
            let bytes = self
                .blobs
                .get(&upload.part_key(part))
                .await?
                .ok_or_else(|| BizError::internal(format!("tus part {part} is missing")))?;
            file.extend_from_slice(&bytes);
        }
        if file.len() != length {
            return Err(BizError::internal(format!(
                "tus parts hold {} bytes, the upload {length}",
                file.len()
            )));
        }
        Ok(file.freeze())
    }

    /// A refusal of the file itself terminates the upload: the client must not resume it.
    /// Unavailability keeps it for a retry.
    async fn refused(&self, upload: &TusUpload, e: &BizError) {
        if matches!(
            e,
            BizError::Unavailable(_)
                | BizError::Internal(_)
                | BizError::OffsetMismatch { .. }
                | BizError::ChecksumMismatch
        ) {
            return;
        }
        if let Err(e) = self.discard(upload).await {
            tracing::warn!(upload_id = %upload.id, error = ?e, "terminating a refused tus upload failed; the sweep retries");
        }
    }

    async fn discard(&self, upload: &TusUpload) -> Result<()> {
        if self.repo.delete(&upload.id).await? {
            self.delete_parts(upload).await;
            if !upload.is_finished() {
                end_progress(self.images.bus(), &upload.identifier, &upload.id).await;
            }
        }
        Ok(())
    }

    async fn delete_parts(&self, upload: &TusUpload) {
        for part in &upload.parts {
            let key = upload.part_key(part);
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(key, error = ?e, "part delete failed; the orphan sweep retries");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_keys_name_their_upload() {
        assert_eq!(
            part_of("sess/upl.part-abc"),
            Some(("upl", "abc")),
            "a part names its upload and itself"
        );
        assert_eq!(part_of("sess/image123"), None);
        assert_eq!(part_of("sess/image123.thumb"), None);
    }
}
