//! `ImageUsecase`: every operation on upload sessions and images, for both transports.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{
    AddImagesOutcome, BizError, BlobStore, BusInterest, BusSubscription, EventBus, Image, NewImage,
    NewSession, ReorderOutcome, Result, SessionChange, SessionRepo, SessionStatus, UploadSession,
    imaging,
    secret::{UploadTokenKey, hash_token, hex, new_id, same_hash},
};

/// The limits of SPEC.md's "Images" section, from `upload.*` in the configuration.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    pub session_ttl: Duration,
    pub max_session_ttl: Duration,
    pub retention: Duration,
    pub max_images: u32,
    pub max_image_bytes: u64,
    pub max_session_bytes: u64,
    pub max_pixels: u64,
    pub thumbnail_size: u32,
    pub max_concurrent_decodes: usize,
}

/// The most bytes the next file of an upload may have. Which limit binds decides the answer
/// to a file past it: the per-image limit is 413, the session's remaining quota 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLimit {
    /// `upload.max_image_bytes`.
    PerImage(u64),
    /// What is left of the session's `max_bytes`, smaller than the per-image limit.
    SessionQuota(u64),
}

impl FileLimit {
    pub fn bytes(self) -> u64 {
        match self {
            FileLimit::PerImage(bytes) | FileLimit::SessionQuota(bytes) => bytes,
        }
    }
}

/// Who is asking. The member proves itself at the edge (dev auth or JWT); the phone with its
/// upload token; internal services by network position.
#[derive(Clone)]
pub enum Caller {
    Member(u32),
    UploadToken(String),
}

/// The token is a secret: it never reaches a log line through `{:?}`.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Member(id) => f.debug_tuple("Member").field(id).finish(),
            Caller::UploadToken(_) => f.write_str("UploadToken(***)"),
        }
    }
}

/// One file of an upload request, already bounded in size by the edge.
pub struct UploadFile {
    pub bytes: Bytes,
}

/// Where an upload's time went, stage by stage, for `Server-Timing` and the benchmarks:
/// cheap enough to keep on every upload (a clock read per stage).
#[derive(Debug, Default)]
pub struct UploadTimings {
    /// Decoding, cleaning and thumbnailing, waiting for a decode slot included.
    clean_ns: AtomicU64,
    /// Writing and syncing the blobs.
    blobs_ns: AtomicU64,
    /// The database transaction, its commit (and fsync) included.
    db_ns: AtomicU64,
    /// Ringing the bus.
    bus_ns: AtomicU64,
}

impl UploadTimings {
    fn add(counter: &AtomicU64, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(ns, Ordering::Relaxed);
    }

    /// `(stage, duration)` for each stage, in the order they run.
    pub fn stages(&self) -> [(&'static str, Duration); 4] {
        let get = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed));
        [
            ("clean", get(&self.clean_ns)),
            ("blobs", get(&self.blobs_ns)),
            ("db", get(&self.db_ns)),
            ("bus", get(&self.bus_ns)),
        ]
    }
}

pub struct ImageUsecase {
    repo: Arc<dyn SessionRepo>,
    blobs: Arc<dyn BlobStore>,
    bus: Arc<dyn EventBus>,
    limits: UploadLimits,
    token_key: UploadTokenKey,
    /// Decoding holds a whole frame in memory; this bounds how many run at once.
    decodes: Arc<Semaphore>,
}

impl ImageUsecase {
    pub fn new(
        repo: Arc<dyn SessionRepo>,
        blobs: Arc<dyn BlobStore>,
        bus: Arc<dyn EventBus>,
        limits: UploadLimits,
        token_key: UploadTokenKey,
    ) -> Self {
        let decodes = Arc::new(Semaphore::new(limits.max_concurrent_decodes.max(1)));
        ImageUsecase {
            repo,
            blobs,
            bus,
            limits,
            token_key,
            decodes,
        }
    }

    pub fn limits(&self) -> &UploadLimits {
        &self.limits
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// The changes of the sessions this instance follows (see [`Self::follow_changes`]).
    pub fn subscribe_changes(&self) -> BusSubscription {
        self.bus.subscribe()
    }

    /// Starts hearing one session's changes on this instance, for as long as the interest is
    /// held. Take it before reading the snapshot it keeps fresh.
    pub async fn follow_changes(&self, identifier: &str) -> BusInterest {
        self.bus.interest(identifier).await
    }

    /// Creates a session; returns it with its upload token, which is never stored in clear.
    #[tracing::instrument(skip(self))]
    pub async fn create_session(
        &self,
        member_id: u32,
        ttl: Option<Duration>,
        max_images: Option<u32>,
    ) -> Result<(UploadSession, String)> {
        let ttl = ttl.unwrap_or(self.limits.session_ttl);
        if ttl.is_zero() || ttl > self.limits.max_session_ttl {
            return Err(BizError::invalid(
                "ttl_seconds",
                format!(
                    "ttl_seconds must be between 1 and {}",
                    self.limits.max_session_ttl.as_secs()
                ),
            ));
        }
        let max_images = max_images.unwrap_or(self.limits.max_images);
        if max_images == 0 || max_images > self.limits.max_images {
            return Err(BizError::invalid(
                "max_images",
                format!(
                    "max_images must be between 1 and {}",
                    self.limits.max_images
                ),
            ));
        }
        let identifier = new_id();
        let token = self.token_key.token_for(&identifier);
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).map_err(BizError::internal)?;
        let session = self
            .repo
            .create_session(NewSession {
                identifier,
                member_id,
                token_hash: hash_token(&token),
                max_images,
                max_bytes: self.limits.max_session_bytes,
                expires_at: now + ttl,
                created_at: now,
            })
            .await?;
        tracing::info!(identifier = %session.identifier, "upload session created");
        Ok((session, token))
    }

    /// The session, if `caller` may see it. Unknown, wrong member and wrong token are one answer.
    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn get_session(&self, caller: &Caller, identifier: &str) -> Result<UploadSession> {
        let session = self.find(identifier).await?;
        authorize(caller, &session)?;
        Ok(session)
    }

    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn list_images(&self, caller: &Caller, identifier: &str) -> Result<Vec<Image>> {
        self.get_session(caller, identifier).await?;
        self.repo.list_images(identifier).await
    }

    /// The session's upload token, for its owner's QR code; `None` if the token key changed
    /// since the session was made (the token cannot be recovered from its hash).
    pub fn upload_token(&self, session: &UploadSession) -> Option<String> {
        let token = self.token_key.token_for(&session.identifier);
        same_hash(&hash_token(&token), &session.token_hash).then_some(token)
    }

    /// Checks an already-read session against a caller, for edges that hold a snapshot.
    pub fn authorize(&self, caller: &Caller, session: &UploadSession) -> Result<()> {
        authorize(caller, session)
    }

    /// The phone's first look: limits and quota. The first call marks the session `scanned`.
    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn open_for_upload(
        &self,
        token: &str,
        identifier: &str,
    ) -> Result<(UploadSession, Vec<Image>)> {
        let mut session = self
            .get_session(&Caller::UploadToken(token.to_owned()), identifier)
            .await?;
        if !session.accepts_uploads(Utc::now()) {
            return Err(BizError::SessionClosed);
        }
        if session.status == SessionStatus::Open
            && let Some(scanned) = self.repo.mark_scanned(identifier).await?
        {
            self.publish(&scanned).await;
            session = scanned;
        }
        let images = self.repo.list_images(identifier).await?;
        Ok((session, images))
    }

    /// Closes the session for uploads. Completing twice answers the session again.
    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn complete(&self, member_id: u32, identifier: &str) -> Result<UploadSession> {
        let session = self
            .get_session(&Caller::Member(member_id), identifier)
            .await?;
        if session.status.is_finished() {
            return Ok(session);
        }
        match self.repo.complete(identifier, Utc::now()).await? {
            Some(done) => {
                self.publish(&done).await;
                Ok(done)
            }
            // Raced with expiry or another completion: answer what is there now.
            None => self.find(identifier).await,
        }
    }

    /// The session and its images, as watchers see them.
    pub async fn snapshot(&self, identifier: &str) -> Result<Option<(UploadSession, Vec<Image>)>> {
        self.repo.snapshot(identifier).await
    }

    /// Images of an earlier request with the same `Idempotency-Key`, if there was one.
    pub async fn replay(&self, identifier: &str, key: &str) -> Result<Option<Vec<Image>>> {
        let images = self.repo.images_by_idempotency_key(identifier, key).await?;
        Ok((!images.is_empty()).then_some(images))
    }

    /// Starts an upload request for a session the caller may upload to. Files are then added
    /// one by one with [`ImageUsecase::store_file`] and the request ends with
    /// [`ImageUsecase::commit`]; dropping the [`PendingUpload`] before that deletes its blobs.
    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn begin_upload(
        &self,
        caller: &Caller,
        identifier: &str,
        idempotency_key: Option<String>,
    ) -> Result<PendingUpload> {
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(BizError::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 128 visible ASCII characters",
            ));
        }
        let session = self.get_session(caller, identifier).await?;
        if !session.accepts_uploads(Utc::now()) {
            return Err(BizError::SessionClosed);
        }
        if session.image_count >= session.max_images {
            return Err(quota_images(&session));
        }
        Ok(PendingUpload {
            timings: Arc::default(),
            blobs: self.blobs.clone(),
            written: Vec::new(),
            committing: false,
            images: Vec::new(),
            bytes: 0,
            session,
            idempotency_key,
        })
    }

    /// The most bytes the next file of this upload may have, and which limit that is.
    pub fn next_file_limit(&self, upload: &PendingUpload) -> FileLimit {
        let remaining = upload
            .session
            .max_bytes
            .saturating_sub(upload.session.total_bytes + upload.bytes);
        if remaining < self.limits.max_image_bytes {
            FileLimit::SessionQuota(remaining)
        } else {
            FileLimit::PerImage(self.limits.max_image_bytes)
        }
    }

    /// The error for a file that went past `limit` (see [`ImageUsecase::next_file_limit`]).
    pub fn file_too_large(&self, limit: FileLimit) -> BizError {
        match limit {
            FileLimit::PerImage(bytes) => BizError::PayloadTooLarge(format!(
                "the image is larger than the limit of {bytes} bytes"
            )),
            FileLimit::SessionQuota(_) => {
                BizError::QuotaExceeded("the session's total size limit is reached".into())
            }
        }
    }

    /// Validates, cleans and thumbnails one file, then writes its blobs.
    #[tracing::instrument(skip_all, fields(identifier = %upload.session.identifier, size = file.bytes.len()))]
    pub async fn store_file(&self, upload: &mut PendingUpload, file: UploadFile) -> Result<Image> {
        let session = &upload.session;
        if session.image_count as usize + upload.images.len() >= session.max_images as usize {
            return Err(quota_images(session));
        }
        let limit = self.next_file_limit(upload);
        if file.bytes.len() as u64 > limit.bytes() {
            return Err(self.file_too_large(limit));
        }
        let started = Instant::now();
        let clean = self.clean(file.bytes).await;
        UploadTimings::add(&upload.timings.clean_ns, started);
        let clean = clean?;
        let id = new_id();
        let identifier = session.identifier.clone();
        let stored = Bytes::from(clean.bytes);
        let size = stored.len() as u64;
        let sha256 = hex(&Sha256::digest(&stored));
        // Blobs first, row last: a crash in between leaves an orphan blob for the sweep, never
        // a row without its bytes. Image and thumbnail go in one put, so the store overlaps
        // their syncs; both keys are recorded first, so a failure cleans up both (deleting a
        // blob that was never written is fine).
        let key = Image::blob_key(&identifier, &id);
        let thumb_key = Image::thumbnail_key(&identifier, &id);
        upload.written.push(key.clone());
        upload.written.push(thumb_key.clone());
        let started = Instant::now();
        let stored = self
            .blobs
            .put_all(vec![
                (key, stored),
                (thumb_key, Bytes::from(clean.thumbnail)),
            ])
            .await;
        UploadTimings::add(&upload.timings.blobs_ns, started);
        stored?;

        let index = upload.images.len() as u32;
        let new = NewImage {
            id,
            content_type: clean.format.mime().to_owned(),
            source_content_type: clean.source.mime().to_owned(),
            width: clean.width,
            height: clean.height,
            size,
            sha256,
            idempotency: upload.idempotency_key.clone().map(|k| (k, index)),
        };
        upload.bytes += size;
        let preview = Image {
            id: new.id.clone(),
            identifier,
            content_type: new.content_type.clone(),
            source_content_type: new.source_content_type.clone(),
            width: new.width,
            height: new.height,
            size,
            sha256: new.sha256.clone(),
            position: 0,
            created_at: Utc::now(),
        };
        upload.images.push(new);
        Ok(preview)
    }

    /// Writes the rows of every stored file in one transaction and tells the watchers.
    /// All or nothing: on any refusal the blobs are deleted and nothing is kept.
    #[tracing::instrument(skip_all, fields(identifier = %upload.session.identifier, files = upload.images.len()))]
    pub async fn commit(&self, mut upload: PendingUpload) -> Result<Vec<Image>> {
        if upload.images.is_empty() {
            return Err(BizError::invalid(
                "file",
                "the request has no part named \"file\"",
            ));
        }
        let identifier = upload.session.identifier.clone();
        let images = std::mem::take(&mut upload.images);
        // Until the repository answers, the rows may land even if this request stops here (a
        // client that leaves, a shutdown past its drain time): the COMMIT may be on its way.
        // Meanwhile a drop leaves the blobs to the orphan sweep, which deletes only blobs no
        // row names, instead of deleting blobs a committed row points at.
        upload.committing = true;
        let started = Instant::now();
        let outcome = self.repo.add_images(&identifier, images, Utc::now()).await;
        UploadTimings::add(&upload.timings.db_ns, started);
        upload.committing = matches!(outcome, Ok(AddImagesOutcome::InDoubt));
        match outcome? {
            AddImagesOutcome::Added { session, images } => {
                upload.written.clear();
                let started = Instant::now();
                self.publish(&session).await;
                UploadTimings::add(&upload.timings.bus_ns, started);
                tracing::info!(count = images.len(), "images added");
                Ok(images)
            }
            AddImagesOutcome::Duplicate(images) => {
                upload.discard().await;
                Ok(images)
            }
            AddImagesOutcome::NotFound => Err(BizError::NotFound),
            AddImagesOutcome::Closed => Err(BizError::SessionClosed),
            AddImagesOutcome::TooManyImages => Err(quota_images(&upload.session)),
            AddImagesOutcome::TooManyBytes => Err(self.file_too_large(FileLimit::SessionQuota(0))),
            AddImagesOutcome::InDoubt => Err(BizError::unavailable(
                "database: no answer to the COMMIT; the blobs are left to the orphan sweep",
            )),
        }
    }

    /// Deletes one image. The phone may delete images of its own open session; the member may
    /// delete images of its sessions.
    #[tracing::instrument(skip_all, fields(identifier, image_id))]
    pub async fn delete_image(
        &self,
        caller: &Caller,
        identifier: &str,
        image_id: &str,
    ) -> Result<()> {
        let session = self.get_session(caller, identifier).await?;
        if matches!(caller, Caller::UploadToken(_)) && !session.accepts_uploads(Utc::now()) {
            return Err(BizError::SessionClosed);
        }
        let Some(changed) = self
            .repo
            .delete_image(identifier, image_id, Utc::now())
            .await?
        else {
            return Err(BizError::NotFound);
        };
        self.publish(&changed).await;
        // Row first, blobs after: a failure here leaves an orphan for the sweep, which is safe.
        self.delete_blobs(identifier, image_id).await;
        Ok(())
    }

    /// Puts the session's images in the order of `image_ids` (position 1 is the cover). The
    /// list must be exactly the session's ids, each once; the owner and the phone may reorder
    /// while the session is open. Returns the session as changed (its version is the one the
    /// change's snapshot carries) and the images in their new order.
    #[tracing::instrument(skip_all, fields(identifier, count = image_ids.len()))]
    pub async fn reorder(
        &self,
        caller: &Caller,
        identifier: &str,
        image_ids: &[String],
    ) -> Result<(UploadSession, Vec<Image>)> {
        let session = self.get_session(caller, identifier).await?;
        if !session.accepts_uploads(Utc::now()) {
            return Err(BizError::SessionClosed);
        }
        let mut seen = std::collections::HashSet::with_capacity(image_ids.len());
        if let Some(dup) = image_ids.iter().find(|id| !seen.insert(id.as_str())) {
            return Err(BizError::invalid(
                "image_ids",
                format!("image_ids names {dup:?} more than once"),
            ));
        }
        match self
            .repo
            .reorder_images(identifier, image_ids, Utc::now())
            .await?
        {
            ReorderOutcome::Reordered { session, images } => {
                self.publish(&session).await;
                tracing::info!("images reordered");
                Ok((session, images))
            }
            ReorderOutcome::NotFound => Err(BizError::NotFound),
            ReorderOutcome::Closed => Err(BizError::SessionClosed),
            ReorderOutcome::Mismatch => Err(BizError::invalid(
                "image_ids",
                "image_ids must list exactly the session's images, each once",
            )),
        }
    }

    /// Deletes an image by id alone, for internal services that name the member.
    pub async fn delete_image_by_id(&self, member_id: u32, image_id: &str) -> Result<()> {
        let image = self
            .repo
            .get_image(image_id)
            .await?
            .ok_or(BizError::NotFound)?;
        self.delete_image(&Caller::Member(member_id), &image.identifier, image_id)
            .await
    }

    /// An image's metadata and bytes (or its thumbnail's), for serving.
    pub async fn open_image(&self, image_id: &str, thumbnail: bool) -> Result<(Image, Bytes)> {
        if !super::is_well_formed_id(image_id) {
            return Err(BizError::NotFound);
        }
        let image = self
            .repo
            .get_image(image_id)
            .await?
            .ok_or(BizError::NotFound)?;
        let key = if thumbnail {
            Image::thumbnail_key(&image.identifier, &image.id)
        } else {
            Image::blob_key(&image.identifier, &image.id)
        };
        let bytes = self.blobs.get(&key).await?.ok_or(BizError::NotFound)?;
        Ok((image, bytes))
    }

    /// Expires sessions past `expires_at` and tells their watchers.
    pub async fn expire_due(&self) -> Result<usize> {
        let changes = self.repo.expire_due(Utc::now()).await?;
        for change in &changes {
            self.ring(change.clone()).await;
        }
        Ok(changes.len())
    }

    /// Deletes sessions never completed once `retention` has passed since they expired, with
    /// their blobs.
    pub async fn sweep_retention(&self) -> Result<usize> {
        let retention =
            chrono::Duration::from_std(self.limits.retention).map_err(BizError::internal)?;
        let due = self.repo.retention_due(Utc::now() - retention, 100).await?;
        for identifier in &due {
            for image in self.repo.delete_session(identifier).await? {
                self.delete_blobs(identifier, &image.id).await;
            }
        }
        Ok(due.len())
    }

    /// Deletes blobs with no row that are older than `grace` (a request still in flight
    /// has rows within seconds; `grace` is far longer).
    pub async fn sweep_orphans(&self, grace: Duration) -> Result<usize> {
        let grace = chrono::Duration::from_std(grace).map_err(BizError::internal)?;
        let mut swept = 0;
        for key in self.blobs.list_older_than(Utc::now() - grace).await? {
            // Parts of resumable uploads belong to their upload's sweep.
            if super::tus::part_of(&key).is_some() {
                continue;
            }
            let image_id = key
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".thumb");
            if !self.repo.image_exists(image_id).await? {
                self.blobs.delete(&key).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Database and blob store reachable, bus connected.
    pub async fn ready(&self) -> std::result::Result<(), &'static str> {
        self.repo.ping().await.map_err(|_| "database")?;
        self.blobs.ping().await.map_err(|_| "blob store")?;
        if !self.bus.is_connected() {
            return Err("event bus");
        }
        Ok(())
    }

    async fn find(&self, identifier: &str) -> Result<UploadSession> {
        if !super::is_well_formed_id(identifier) {
            return Err(BizError::NotFound);
        }
        let mut session = self
            .repo
            .get_session(identifier)
            .await?
            .ok_or(BizError::NotFound)?;
        session.status = session.status_at(Utc::now());
        Ok(session)
    }

    async fn clean(&self, bytes: Bytes) -> Result<imaging::CleanImage> {
        let limits = imaging::PixelLimits {
            max_pixels: self.limits.max_pixels,
            thumbnail_size: self.limits.thumbnail_size,
        };
        let _permit = self
            .decodes
            .acquire()
            .await
            .map_err(|_| BizError::unavailable("decoder pool closed"))?;
        // Decoding is CPU-bound: off the async workers, bounded by the semaphore above.
        let result = tokio::task::spawn_blocking(move || imaging::process(&bytes, &limits))
            .await
            .map_err(|e| BizError::internal(format!("image task failed: {e}")))?;
        result.map_err(|e| match e {
            imaging::ImagingError::Unsupported => BizError::UnsupportedMediaType,
            e @ imaging::ImagingError::TooManyPixels { .. } => {
                BizError::PayloadTooLarge(e.to_string())
            }
            e @ imaging::ImagingError::Corrupt(_) => BizError::UnprocessableImage(e.to_string()),
        })
    }

    async fn delete_blobs(&self, identifier: &str, image_id: &str) {
        for key in [
            Image::blob_key(identifier, image_id),
            Image::thumbnail_key(identifier, image_id),
        ] {
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(key, error = ?e, "blob delete failed; the orphan sweep will retry");
            }
        }
    }

    async fn publish(&self, session: &UploadSession) {
        self.ring(SessionChange {
            identifier: session.identifier.clone(),
            version: session.version,
        })
        .await;
    }

    /// The change is committed; a bus failure only delays watchers (they resync on reconnect),
    /// so it is logged, not returned.
    async fn ring(&self, change: SessionChange) {
        if let Err(e) = self.bus.publish(change).await {
            tracing::warn!(error = ?e, "event bus publish failed; watchers catch up on resync");
        }
    }
}

/// An upload request in progress: the blobs written so far and the rows still to write.
/// Dropped before [`ImageUsecase::commit`] succeeds, it deletes its blobs, unless its rows
/// were being committed: then they may exist, and the orphan sweep decides.
pub struct PendingUpload {
    timings: Arc<UploadTimings>,
    blobs: Arc<dyn BlobStore>,
    written: Vec<String>,
    committing: bool,
    images: Vec<NewImage>,
    bytes: u64,
    session: UploadSession,
    idempotency_key: Option<String>,
}

impl PendingUpload {
    pub fn session(&self) -> &UploadSession {
        &self.session
    }

    pub fn file_count(&self) -> usize {
        self.images.len()
    }

    /// This upload's stage times, filled in as it goes (by [`ImageUsecase::commit`] too).
    pub fn timings(&self) -> Arc<UploadTimings> {
        self.timings.clone()
    }

    /// Deletes what was written, now.
    pub async fn discard(&mut self) {
        for key in std::mem::take(&mut self.written) {
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(key, error = ?e, "blob delete failed; the orphan sweep will retry");
            }
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if self.written.is_empty() {
            return;
        }
        if self.committing {
            tracing::warn!(
                identifier = %self.session.identifier,
                blobs = self.written.len(),
                "upload stopped during its commit; its blobs are left to the orphan sweep"
            );
            return;
        }
        let keys = std::mem::take(&mut self.written);
        let blobs = self.blobs.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                for key in keys {
                    let _ = blobs.delete(&key).await;
                }
            });
        }
    }
}

fn authorize(caller: &Caller, session: &UploadSession) -> Result<()> {
    let allowed = match caller {
        Caller::Member(member_id) => *member_id == session.member_id,
        Caller::UploadToken(token) => same_hash(&hash_token(token), &session.token_hash),
    };
    if allowed {
        Ok(())
    } else {
        Err(BizError::NotFound)
    }
}

fn quota_images(session: &UploadSession) -> BizError {
    BizError::QuotaExceeded(format!(
        "the session already holds its limit of {} images",
        session.max_images
    ))
}
