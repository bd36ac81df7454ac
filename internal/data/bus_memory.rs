//! [`EventBus`] inside one process: a broadcast channel. The embedded default.
//!
//! It keeps the same contract as the brokered buses: only the sessions someone holds an
//! interest in ring, so the hub's count of doorbells means the same thing on every bus.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::bus_interest::Interests;
use crate::biz::{
    BusInterest, BusMessage, BusSubscription, EventBus, Result, SessionChange, UploadProgress,
};

pub struct MemoryBus {
    tx: broadcast::Sender<SessionChange>,
    interests: Arc<Interests>,
    /// Progress apart from changes, so a burst of progress never makes a doorbell lag.
    progress: broadcast::Sender<UploadProgress>,
}

impl MemoryBus {
    pub fn new() -> Self {
        MemoryBus {
            tx: broadcast::channel(4096).0,
            interests: Interests::local(),
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
        if self.interests.wanted(&change.identifier) {
            // No subscriber is not an error: nobody is watching on this instance.
            let _ = self.tx.send(change);
        }
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

    async fn interest(&self, identifier: &str) -> BusInterest {
        self.interests.take(identifier).await
    }

    fn is_connected(&self) -> bool {
        true
    }
}
