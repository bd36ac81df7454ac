//! [`EventBus`] inside one process: a broadcast channel. The embedded default.

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::biz::{BusMessage, BusSubscription, EventBus, Result, SessionChange, UploadProgress};

pub struct MemoryBus {
    tx: broadcast::Sender<SessionChange>,
    /// Progress apart from changes, so a burst of progress never makes a doorbell lag.
    progress: broadcast::Sender<UploadProgress>,
}

impl MemoryBus {
    pub fn new() -> Self {
        MemoryBus {
            tx: broadcast::channel(4096).0,
            progress: broadcast::channel(1024).0,
        }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, change: SessionChange) -> Result<()> {
        // No subscriber is not an error: nobody is watching on this instance.
        let _ = self.tx.send(change);
        Ok(())
    }

    fn subscribe(&self) -> BusSubscription {
        let changes = BroadcastStream::new(self.tx.subscribe()).map(|item| match item {
            Ok(change) => BusMessage::Change(change),
            // Fell behind: some doorbells are gone, so re-read everything watched.
            Err(BroadcastStreamRecvError::Lagged(_)) => BusMessage::Resync,
        });
        // A lost progress report is superseded by the next one: no resync for those.
        let progress = BroadcastStream::new(self.progress.subscribe())
            .filter_map(|item| futures::future::ready(item.ok().map(BusMessage::Progress)));
        futures::stream::select(changes, progress).boxed()
    }

    async fn publish_progress(&self, progress: UploadProgress) -> Result<()> {
        let _ = self.progress.send(progress);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }
}
