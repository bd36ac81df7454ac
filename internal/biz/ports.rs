//! The traits biz needs from the outside world; `data` implements them.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use super::{Image, NewImage, NewSession, Result, SessionChange, UploadProgress, UploadSession};

/// What happened to an attempt to add images to a session; decided inside one transaction.
#[derive(Debug)]
pub enum AddImagesOutcome {
    Added {
        session: UploadSession,
        images: Vec<Image>,
    },
    /// Another request with the same `Idempotency-Key` got there first; these are its images.
    Duplicate(Vec<Image>),
    NotFound,
    Closed,
    TooManyImages,
    TooManyBytes,
    /// The COMMIT went out but no answer came back (the connection broke): the rows may or
    /// may not be written, so the blobs must stay for the orphan sweep to decide.
    InDoubt,
}

/// What happened to a reorder; decided inside one transaction, so a concurrent upload or
/// delete cannot slip between the check of the list and the write of the positions.
#[derive(Debug)]
pub enum ReorderOutcome {
    Reordered {
        session: UploadSession,
        images: Vec<Image>,
    },
    NotFound,
    Closed,
    /// The list is not exactly the session's image ids.
    Mismatch,
}

/// Persistence of sessions and images. Every method that changes a session bumps its version
/// in the same statement, so the version is the one truth the event stream follows.
#[async_trait]
pub trait SessionRepo: Send + Sync {
    async fn create_session(&self, new: NewSession) -> Result<UploadSession>;
    async fn get_session(&self, identifier: &str) -> Result<Option<UploadSession>>;
    /// The session and its images, read consistently (one transaction).
    async fn snapshot(&self, identifier: &str) -> Result<Option<(UploadSession, Vec<Image>)>>;
    async fn list_images(&self, identifier: &str) -> Result<Vec<Image>>;
    async fn get_image(&self, image_id: &str) -> Result<Option<Image>>;
    async fn images_by_idempotency_key(&self, identifier: &str, key: &str) -> Result<Vec<Image>>;
    /// `open` → `scanned`; `None` if the session is not open (nothing changes then).
    async fn mark_scanned(&self, identifier: &str) -> Result<Option<UploadSession>>;
    /// Closes an open or scanned session; `None` if it was not open (nothing changes then).
    async fn complete(&self, identifier: &str, now: DateTime<Utc>)
    -> Result<Option<UploadSession>>;
    /// Adds rows for images whose blobs are written, if the session is open and the quota
    /// holds, in one transaction.
    async fn add_images(
        &self,
        identifier: &str,
        images: Vec<NewImage>,
        now: DateTime<Utc>,
    ) -> Result<AddImagesOutcome>;
    /// Deletes one image of an open session; `Ok(None)` if there is no such image.
    async fn delete_image(
        &self,
        identifier: &str,
        image_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UploadSession>>;
    /// Gives the images of an open session the positions 1..n in the order of `image_ids`,
    /// which must be exactly the session's ids; one version bump and one event.
    async fn reorder_images(
        &self,
        identifier: &str,
        image_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<ReorderOutcome>;
    /// Marks open sessions past `expires_at` as expired; returns their changes.
    async fn expire_due(&self, now: DateTime<Utc>) -> Result<Vec<SessionChange>>;
    /// Sessions never completed whose expiry is before `before`, to be deleted with their blobs.
    async fn retention_due(&self, before: DateTime<Utc>, limit: u64) -> Result<Vec<String>>;
    /// Deletes a session and its image rows; returns the deleted images.
    async fn delete_session(&self, identifier: &str) -> Result<Vec<Image>>;
    async fn image_exists(&self, image_id: &str) -> Result<bool>;
    async fn ping(&self) -> Result<()>;
}

/// Where image bytes live. Keys come from [`Image::blob_key`], never from a client, and each
/// names a new blob: a key is written once (a store may refuse a put onto an existing key).
///
/// A put is durable when it returns. A blob's key is known to no reader until a row names it,
/// so a store may write under the final key directly; a crash before the row commits leaves
/// an orphan blob, possibly partial, for the orphan sweep.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()>;
    /// Several blobs at once, all durable when it returns (an image and its thumbnail). On
    /// failure none of them is left. A store may share the syncs between them.
    async fn put_all(&self, blobs: Vec<(String, Bytes)>) -> Result<()> {
        let keys: Vec<String> = blobs.iter().map(|(key, _)| key.clone()).collect();
        let puts = blobs
            .into_iter()
            .map(|(key, bytes)| async move { self.put(&key, bytes).await });
        if let Err(e) = futures::future::try_join_all(puts).await {
            for key in &keys {
                let _ = self.delete(key).await;
            }
            return Err(e);
        }
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Keys last written before `older_than`: candidates for the orphan sweep.
    async fn list_older_than(&self, older_than: DateTime<Utc>) -> Result<Vec<String>>;
    async fn ping(&self) -> Result<()>;
}

/// The doorbell between instances: "session X is now at version V". It carries no data, so a
/// lost message costs only latency; subscribers re-read the database.
///
/// Doorbells are addressed per session: an instance hears only the sessions it holds a
/// [`BusInterest`] in, so the traffic each instance receives grows with what it serves, not
/// with the number of instances.
#[async_trait]
pub trait EventBus: Send + Sync {
    async fn publish(&self, change: SessionChange) -> Result<()>;
    /// The doorbells of every session this instance holds an interest in, and resyncs.
    fn subscribe(&self) -> BusSubscription;
    /// Starts the doorbells of one session; they stop when its last interest is dropped.
    /// Returns once the broker delivers them to this instance (or once the bus is found
    /// disconnected: the [`BusMessage::Resync`] after the reconnect covers the gap), so a
    /// snapshot read after it misses no change.
    async fn interest(&self, identifier: &str) -> BusInterest;
    /// Upload progress, a message kind of its own: never stored, so a lost one is simply
    /// superseded by the next. A bus that cannot carry it keeps progress on one instance.
    async fn publish_progress(&self, progress: UploadProgress) -> Result<()> {
        let _ = progress;
        Ok(())
    }
    /// Whether the bus is delivering now (for readiness).
    fn is_connected(&self) -> bool;
}

/// Held while this instance serves a session; dropping it ends that session's doorbells here.
#[must_use = "the doorbells stop when the interest is dropped"]
pub struct BusInterest {
    _guard: Box<dyn Send + Sync>,
}

impl BusInterest {
    /// `guard` undoes the subscription when dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        BusInterest {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for BusInterest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusInterest")
    }
}

/// What a bus subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    Change(SessionChange),
    /// A file's upload progress (see [`super::progress`]).
    Progress(UploadProgress),
    /// Messages may have been missed (reconnect, lag): every watched session must be re-read.
    Resync,
}

pub type BusSubscription = BoxStream<'static, BusMessage>;
