//! Upload progress: how many bytes of each file in flight have arrived, for the desktop page.
//!
//! Progress is not a change of the session: it is never stored and never bumps the version.
//! It travels over the event bus beside the change doorbells, so a phone uploading to one
//! instance shows on a desktop watching through another. [`ProgressReporter`] rate-limits
//! what one file sends (the hub coalesces again per session), and always sends the end.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::EventBus;

/// At most this often per file on the bus; the hub emits at most 4 events a second per session.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One file's progress. `done` ends the file's entry (finished, refused, terminated, expired).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadProgress {
    pub identifier: String,
    pub upload_id: String,
    pub received: u64,
    pub total: Option<u64>,
    pub done: bool,
}

/// Sends one file's progress: at most one report per [`PROGRESS_EVERY`], and the end.
///
/// A tus upload ([`ProgressReporter::for_upload`]) is in flight from its creation and between
/// its requests, so its reports start at once and only an explicit [`ProgressReporter::end`]
/// ends it. A multipart request ([`ProgressReporter::for_request`]) is in flight while its
/// body arrives: its first report waits one interval, so a body that arrives within it (most
/// photos on a LAN) costs watchers no event at all, and it ends when dropped, whatever
/// happened to the request, if it reported anything.
pub struct ProgressReporter {
    bus: Arc<dyn EventBus>,
    report: UploadProgress,
    last_sent: Option<Instant>,
    /// No report before this instant (multipart).
    quiet_until: Option<Instant>,
    ended: bool,
    end_on_drop: bool,
}

impl ProgressReporter {
    pub fn for_upload(
        bus: Arc<dyn EventBus>,
        identifier: &str,
        upload_id: &str,
        received: u64,
        total: Option<u64>,
    ) -> Self {
        Self::new(bus, identifier, upload_id, received, total, false)
    }

    pub fn for_request(
        bus: Arc<dyn EventBus>,
        identifier: &str,
        upload_id: &str,
        total: Option<u64>,
    ) -> Self {
        let mut reporter = Self::new(bus, identifier, upload_id, 0, total, true);
        reporter.quiet_until = Some(Instant::now() + PROGRESS_EVERY);
        reporter
    }

    fn new(
        bus: Arc<dyn EventBus>,
        identifier: &str,
        upload_id: &str,
        received: u64,
        total: Option<u64>,
        end_on_drop: bool,
    ) -> Self {
        ProgressReporter {
            bus,
            report: UploadProgress {
                identifier: identifier.to_owned(),
                upload_id: upload_id.to_owned(),
                received,
                total,
                done: false,
            },
            last_sent: None,
            quiet_until: None,
            ended: false,
            end_on_drop,
        }
    }

    /// Records `received` bytes so far and sends it if the last report is old enough.
    pub async fn advance(&mut self, received: u64) {
        self.report.received = received;
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self
            .last_sent
            .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY)
        {
            self.send().await;
        }
    }

    /// Sends the current count now (a request's last bytes, or a new upload).
    pub async fn flush(&mut self) {
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.send().await;
    }

    /// The file is no longer in flight.
    pub async fn end(mut self) {
        self.ended = true;
        if self.end_on_drop && self.last_sent.is_none() {
            return;
        }
        self.report.done = true;
        let report = self.report.clone();
        publish(&self.bus, report).await;
    }

    async fn send(&mut self) {
        self.last_sent = Some(Instant::now());
        publish(&self.bus, self.report.clone()).await;
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        if self.ended || !self.end_on_drop || self.last_sent.is_none() {
            return;
        }
        let mut report = self.report.clone();
        report.done = true;
        let bus = self.bus.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { publish(&bus, report).await });
        }
    }
}

/// Sends one file's end without a reporter (termination, expiry).
pub async fn end_progress(bus: &Arc<dyn EventBus>, identifier: &str, upload_id: &str) {
    publish(
        bus,
        UploadProgress {
            identifier: identifier.to_owned(),
            upload_id: upload_id.to_owned(),
            received: 0,
            total: None,
            done: true,
        },
    )
    .await;
}

/// Progress is best effort: a lost report is corrected by the next one.
async fn publish(bus: &Arc<dyn EventBus>, report: UploadProgress) {
    if let Err(e) = bus.publish_progress(report).await {
        tracing::debug!(error = ?e, "progress publish failed");
    }
}
