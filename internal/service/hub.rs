//! `SessionHub`: live fan-out of session changes to SSE and gRPC watchers.
//!
//! Push, never poll. The usecase rings the bus once per change; the hub hears it, reads the
//! snapshot once and serializes it once into the exact bytes every watcher sends. The first
//! watcher of a session on this instance subscribes to its changes and the last one leaving
//! unsubscribes, so an instance hears only the sessions it serves. Each watcher holds a `watch` receiver: a one-slot
//! buffer that always holds the latest snapshot, so a watcher that falls behind skips straight
//! to it and memory never grows with a stalled client. Heartbeats come from one shared ticker,
//! not a timer per watcher, and it rings one of [`HEARTBEAT_SLOTS`] groups of watchers at a
//! time: the heartbeats of different streams are spread over the interval (SPEC), so 10,000
//! watchers never wake, write and syscall in the same millisecond as an upload.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::{OnceCell, watch};

use super::{
    doorbells::Doorbells,
    dto::{SessionEventJson, images_json},
    progress::{FeedProgress, ProgressFrame},
    sse_frame::encode_event,
};
use crate::{
    api::image::v1::ImagesEvent,
    biz::{
        BizError, BusInterest, BusMessage, EventName, Image, ImageUsecase, UploadProgress,
        UploadSession,
    },
    metrics::Metrics,
};

/// One change of a session, read and encoded once, shared by all its watchers.
pub struct Snapshot {
    pub session: UploadSession,
    pub images: Vec<Image>,
    /// `[Image…]`, the snapshot event's data.
    pub images_json: Bytes,
    /// `id`/`event: session`/`data` then `id`/`event: {default}`/`retry`/`data`: what an SSE
    /// watcher of the default event name writes for this change, as one buffer.
    pub sse_frames: Bytes,
    /// The `session` event alone, for watchers of another event name.
    pub sse_session_frame: Bytes,
    /// The same change as an `image.v1.ImagesEvent`, built by the first watcher of the
    /// generated API that needs it and then shared.
    pub api_event: OnceLock<ImagesEvent>,
}

impl Snapshot {
    fn encode(
        session: UploadSession,
        images: Vec<Image>,
        sse: &SseFormat,
    ) -> Result<Self, BizError> {
        let images_json =
            Bytes::from(serde_json::to_vec(&images_json(&images)).map_err(BizError::internal)?);
        let session_json =
            serde_json::to_vec(&SessionEventJson::from(&session)).map_err(BizError::internal)?;
        let version = session.version;
        let mut session_frame = BytesMut::with_capacity(session_json.len() + 48);
        encode_event(
            &mut session_frame,
            version,
            &EventName::SESSION,
            None,
            &session_json,
        );
        let sse_session_frame = session_frame.freeze();
        let mut frames = BytesMut::with_capacity(sse_session_frame.len() + images_json.len() + 96);
        frames.put_slice(&sse_session_frame);
        sse.encode_snapshot(&mut frames, version, &sse.default_event, &images_json);
        Ok(Snapshot {
            session,
            images,
            images_json,
            sse_frames: frames.freeze(),
            sse_session_frame,
            api_event: OnceLock::new(),
        })
    }

    pub fn version(&self) -> u64 {
        self.session.version
    }
}

/// How snapshot events are framed: the configured default event name and `retry:`.
#[derive(Debug, Clone)]
pub struct SseFormat {
    pub default_event: EventName,
    pub retry_ms: u64,
}

impl SseFormat {
    /// Appends the snapshot event: `id: V`, `event: NAME`, `retry: MS`, then `data`.
    pub fn encode_snapshot(
        &self,
        out: &mut BytesMut,
        version: u64,
        event: &EventName,
        data: &[u8],
    ) {
        encode_event(out, version, event, Some(self.retry_ms), data);
    }
}

#[derive(Clone)]
pub struct SessionHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    usecase: Arc<ImageUsecase>,
    metrics: Arc<Metrics>,
    sse: SseFormat,
    feeds: Mutex<HashMap<String, Weak<Feed>>>,
    /// One sender per slot; watcher n listens to slot n mod [`HEARTBEAT_SLOTS`].
    heartbeats: Vec<watch::Sender<()>>,
    next_slot: AtomicUsize,
    /// The slot the ticker rang last.
    rung: AtomicUsize,
    closing: watch::Sender<bool>,
}

/// Groups of watchers whose heartbeats fall due together; the ticker rings one group every
/// `heartbeat / HEARTBEAT_SLOTS`. 64 keeps each group under 2% of the watchers while the
/// ticker wakes only every ~234 ms at the default 15 s.
pub const HEARTBEAT_SLOTS: usize = 64;

/// The watchers of one session on this instance share one feed.
struct Feed {
    identifier: String,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// Set once the first snapshot is read; holds this instance's subscription to the
    /// session's changes, which ends with the feed (the last watcher leaving).
    loaded: OnceCell<BusInterest>,
    /// The highest version announced by the bus.
    wanted: AtomicU64,
    refreshing: AtomicBool,
    hub: Weak<HubInner>,
    /// The session's uploads in flight, as `progress` events.
    progress: FeedProgress,
    /// The changes announced and not yet handed to the watchers, for their delivery time.
    doorbells: Doorbells,
}

/// What a watcher wakes up for.
pub enum WatchEvent {
    Changed(Arc<Snapshot>),
    /// Uploads in flight: not a change, no new version.
    Progress(Arc<ProgressFrame>),
    Heartbeat,
    /// The server is shutting down.
    Closing,
}

/// One watcher's handle on its session's feed.
pub struct Watch {
    /// Keeps the session's feed alive while anyone watches it.
    _feed: Arc<Feed>,
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    progress: watch::Receiver<Option<Arc<ProgressFrame>>>,
    heartbeat: watch::Receiver<()>,
    closing: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl SessionHub {
    /// Starts the hub: one task follows the bus, one ticks heartbeats.
    pub fn start(
        usecase: Arc<ImageUsecase>,
        metrics: Arc<Metrics>,
        sse: SseFormat,
        heartbeat_every: Duration,
    ) -> Self {
        let inner = Arc::new(HubInner {
            usecase,
            metrics,
            sse,
            feeds: Mutex::new(HashMap::new()),
            heartbeats: (0..HEARTBEAT_SLOTS).map(|_| watch::channel(()).0).collect(),
            next_slot: AtomicUsize::new(0),
            rung: AtomicUsize::new(0),
            closing: watch::channel(false).0,
        });
        tokio::spawn(follow_bus(Arc::downgrade(&inner)));
        tokio::spawn(tick(Arc::downgrade(&inner), heartbeat_every));
        SessionHub { inner }
    }

    pub fn sse_format(&self) -> &SseFormat {
        &self.inner.sse
    }

    /// Watches a session: the current snapshot (read once per instance, not per watcher), then
    /// every change. `NotFound` if the session does not exist.
    pub async fn watch(&self, identifier: &str) -> Result<(Watch, Arc<Snapshot>), BizError> {
        if !crate::biz::is_well_formed_id(identifier) {
            return Err(BizError::NotFound);
        }
        let feed = self.feed(identifier);
        feed.loaded
            .get_or_try_init(|| async {
                // Subscribed before the read, so no change falls between the two.
                let interest = self.inner.usecase.follow_changes(identifier).await;
                let snapshot = read(&self.inner, identifier).await?;
                feed.offer(snapshot);
                Ok::<BusInterest, BizError>(interest)
            })
            .await?;
        let mut rx = feed.tx.subscribe();
        let current = rx.borrow_and_update().clone().ok_or(BizError::NotFound)?;
        self.inner.metrics.watcher_opened();
        let watch = Watch {
            progress: feed.progress.subscribe(),
            _feed: feed,
            rx,
            heartbeat: self.inner.heartbeat_slot().subscribe(),
            closing: self.inner.closing.subscribe(),
            metrics: self.inner.metrics.clone(),
        };
        Ok((watch, current))
    }

    /// Ends every open stream (shutdown): clients reconnect, elsewhere or after the restart.
    pub fn close_all(&self) {
        self.inner.closing.send_replace(true);
    }

    pub fn watched_sessions(&self) -> usize {
        self.inner.feeds.lock().map(|f| f.len()).unwrap_or(0)
    }

    fn feed(&self, identifier: &str) -> Arc<Feed> {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = feeds.get(identifier).and_then(Weak::upgrade) {
            return feed;
        }
        let feed = Arc::new(Feed {
            identifier: identifier.to_owned(),
            tx: watch::channel(None).0,
            loaded: OnceCell::new(),
            wanted: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            hub: Arc::downgrade(&self.inner),
            progress: FeedProgress::default(),
            doorbells: Doorbells::default(),
        });
        feeds.insert(identifier.to_owned(), Arc::downgrade(&feed));
        feed
    }
}

impl HubInner {
    /// The next watcher's heartbeat group: round-robin over the half of the groups that ring
    /// between half an interval and a whole one from now, so watchers that connect together
    /// still beat apart, and none hears a heartbeat right after its first events (a stream
    /// stays quiet for at least half an interval when nothing changes).
    fn heartbeat_slot(&self) -> &watch::Sender<()> {
        let slots = self.heartbeats.len();
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let rung = self.rung.load(Ordering::Relaxed);
        &self.heartbeats[(rung + slots / 2 + n % (slots / 2)) % slots]
    }
}

impl Feed {
    fn version(&self) -> u64 {
        self.tx.borrow().as_ref().map_or(0, |s| s.version())
    }

    /// Publishes a snapshot if it is newer than the one watchers have.
    fn offer(&self, snapshot: Option<Arc<Snapshot>>) {
        let Some(new) = snapshot else { return };
        self.tx.send_if_modified(|current| match current {
            Some(cur) if cur.version() >= new.version() => false,
            _ => {
                *current = Some(new);
                true
            }
        });
    }

    /// The bus says the session reached `version`: make sure watchers get it, with at most
    /// one read in flight per feed. Announcements that arrive during a read are folded into
    /// the next read.
    fn announce(self: &Arc<Self>, version: u64) {
        self.wanted.fetch_max(version, Ordering::SeqCst);
        if version <= self.version() {
            return;
        }
        self.doorbells.rang(version);
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let feed = self.clone();
        tokio::spawn(async move { feed.refresh().await });
    }

    /// A file's progress from the bus: emitted now, or folded into the event already due.
    fn progress(self: &Arc<Self>, report: &UploadProgress) {
        let Some(due) = self.progress.record(report) else {
            return;
        };
        if due <= tokio::time::Instant::now() {
            self.progress.emit(&self.identifier, self.version());
            return;
        }
        let feed = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            feed.progress.emit(&feed.identifier, feed.version());
        });
    }

    async fn refresh(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            let target = self.wanted.load(Ordering::SeqCst);
            let Some(hub) = self.hub.upgrade() else {
                return;
            };
            match read(&hub, &self.identifier).await {
                Ok(snapshot) => {
                    // Timed as it is handed over, so the count is there once watchers see it.
                    let published = snapshot.as_ref().map_or(0, |s| s.version());
                    self.doorbells
                        .settled(target, published.max(self.version()), &hub.metrics);
                    self.offer(snapshot);
                }
                Err(e) if failures < 5 => {
                    failures += 1;
                    tracing::warn!(identifier = %self.identifier, error = ?e, "snapshot read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << failures)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(identifier = %self.identifier, error = ?e, "snapshot read failed; giving up until the next change");
                }
            }
            self.refreshing.store(false, Ordering::SeqCst);
            // A read that started after an announcement sees at least its version.
            if self.wanted.load(Ordering::SeqCst) <= target
                || self.refreshing.swap(true, Ordering::SeqCst)
            {
                return;
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut feeds = hub.feeds.lock().unwrap_or_else(|p| p.into_inner());
        // A new feed for the same session may already have replaced this one.
        if feeds
            .get(&self.identifier)
            .is_some_and(|w| w.strong_count() == 0)
        {
            feeds.remove(&self.identifier);
        }
    }
}

impl Watch {
    /// Waits for the next change, heartbeat or shutdown. Cancel-safe.
    pub async fn next(&mut self) -> WatchEvent {
        if *self.closing.borrow() {
            return WatchEvent::Closing;
        }
        tokio::select! {
            biased;
            _ = self.closing.changed() => WatchEvent::Closing,
            changed = self.rx.changed() => match (changed, self.rx.borrow_and_update().clone()) {
                (Ok(()), Some(snapshot)) => WatchEvent::Changed(snapshot),
                _ => WatchEvent::Closing,
            },
            changed = self.progress.changed() => match (changed, self.progress.borrow_and_update().clone()) {
                (Ok(()), Some(frame)) => WatchEvent::Progress(frame),
                _ => WatchEvent::Closing,
            },
            _ = self.heartbeat.changed() => WatchEvent::Heartbeat,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.metrics.watcher_closed();
    }
}

async fn read(hub: &HubInner, identifier: &str) -> Result<Option<Arc<Snapshot>>, BizError> {
    let Some((session, images)) = hub.usecase.snapshot(identifier).await? else {
        return Ok(None);
    };
    let snapshot = Snapshot::encode(session, images, &hub.sse)?;
    hub.metrics.snapshot_built();
    Ok(Some(Arc::new(snapshot)))
}

async fn follow_bus(hub: Weak<HubInner>) {
    let Some(mut messages) = hub.upgrade().map(|h| h.usecase.subscribe_changes()) else {
        return;
    };
    while let Some(message) = messages.next().await {
        let Some(hub) = hub.upgrade() else { return };
        if let BusMessage::Progress(report) = &message {
            // Out of the lock: the last handle on a feed may drop here, and its drop locks.
            let feed = {
                let feeds = hub.feeds.lock().unwrap_or_else(|p| p.into_inner());
                feeds.get(&report.identifier).and_then(Weak::upgrade)
            };
            if let Some(feed) = feed {
                feed.progress(report);
            }
            continue;
        }
        let feeds: Vec<(Arc<Feed>, u64)> = {
            let feeds = hub.feeds.lock().unwrap_or_else(|p| p.into_inner());
            match &message {
                BusMessage::Progress(_) => Vec::new(),
                BusMessage::Change(change) => {
                    hub.metrics.change_received();
                    feeds
                        .get(&change.identifier)
                        .and_then(Weak::upgrade)
                        .map(|f| (f, change.version))
                        .into_iter()
                        .collect()
                }
                // Something may have been missed: every watched session is re-read once.
                BusMessage::Resync => feeds
                    .values()
                    .filter_map(Weak::upgrade)
                    .map(|f| {
                        let next = f.version() + 1;
                        (f, next)
                    })
                    .collect(),
            }
        };
        for (feed, version) in feeds {
            feed.announce(version);
        }
    }
}

/// Rings one heartbeat group per step, so each watcher hears one heartbeat per `every` and
/// the groups' heartbeats are spread evenly over it.
async fn tick(hub: Weak<HubInner>, every: Duration) {
    let step = every / HEARTBEAT_SLOTS as u32;
    let mut interval = tokio::time::interval(step.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut slot = 0usize;
    loop {
        interval.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.heartbeats[slot].send_replace(());
        hub.rung.store(slot, Ordering::Relaxed);
        slot = (slot + 1) % hub.heartbeats.len();
    }
}
