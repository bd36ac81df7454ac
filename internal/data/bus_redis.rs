//! [`EventBus`] over Redis pub/sub, for several instances behind one URL.
//!
//! A change published on any instance reaches every instance's hub. The subscription runs in
//! a background task that reconnects by itself; after every (re)subscribe it announces
//! [`BusMessage::Resync`], so hubs re-read the sessions they watch and nothing missed while
//! Redis was away stays missed. Publishing is bounded in time: with Redis down, uploads still
//! succeed (the database is the truth) and watchers catch up on the resync.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::{sync::broadcast, task::JoinHandle};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::biz::{
    BizError, BusMessage, BusSubscription, EventBus, Result, SessionChange, UploadProgress,
};

const CHANNEL: &str = "qrupload:session-changes";
/// Upload progress, JSON; a channel of its own so doorbell parsing stays as it was.
const PROGRESS_CHANNEL: &str = "qrupload:upload-progress";
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

pub struct RedisBus {
    client: redis::Client,
    publisher: tokio::sync::Mutex<Option<ConnectionManager>>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    tx: broadcast::Sender<BusMessage>,
    connected: AtomicBool,
}

impl RedisBus {
    /// Starts the subscription task. Does not wait for Redis: an instance starts (and serves
    /// uploads) while Redis is down, and reports not-ready until the bus connects.
    pub fn start(url: &str) -> Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| BizError::internal(format!("redis url: {e}")))?;
        let shared = Arc::new(Shared {
            tx: broadcast::channel(4096).0,
            connected: AtomicBool::new(false),
        });
        let task = tokio::spawn(subscribe_forever(client.clone(), shared.clone()));
        Ok(RedisBus {
            client,
            publisher: tokio::sync::Mutex::new(None),
            shared,
            task,
        })
    }

    async fn publish_inner(&self, channel: &str, payload: String) -> Result<()> {
        let mut slot = self.publisher.lock().await;
        if slot.is_none() {
            let manager = self
                .client
                .get_connection_manager()
                .await
                .map_err(|e| BizError::unavailable(format!("redis: {e}")))?;
            *slot = Some(manager);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(BizError::unavailable("redis: no connection"));
        };
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(conn)
            .await
            .map(|_| ())
            .map_err(|e| BizError::unavailable(format!("redis publish: {e}")))
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, change: SessionChange) -> Result<()> {
        let payload = format!("{} {}", change.identifier, change.version);
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_inner(CHANNEL, payload)).await {
            Ok(result) => result,
            Err(_) => Err(BizError::unavailable("redis publish timed out")),
        }
    }

    async fn publish_progress(&self, progress: UploadProgress) -> Result<()> {
        let payload = serde_json::to_string(&progress).map_err(BizError::internal)?;
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.publish_inner(PROGRESS_CHANNEL, payload),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(BizError::unavailable("redis publish timed out")),
        }
    }

    fn subscribe(&self) -> BusSubscription {
        BroadcastStream::new(self.shared.tx.subscribe())
            .map(|item| match item {
                Ok(message) => message,
                Err(BroadcastStreamRecvError::Lagged(_)) => BusMessage::Resync,
            })
            .boxed()
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }
}

async fn subscribe_forever(client: redis::Client, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&[CHANNEL, PROGRESS_CHANNEL]).await {
                Ok(()) => {
                    shared.connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    tracing::info!("event bus subscribed to redis");
                    // Whatever was published while we were away is lost: re-read instead.
                    let _ = shared.tx.send(BusMessage::Resync);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if msg.get_channel_name() == PROGRESS_CHANNEL {
                            if let Ok(progress) = serde_json::from_str(&payload) {
                                let _ = shared.tx.send(BusMessage::Progress(progress));
                            }
                            continue;
                        }
                        if let Some(change) = parse(&payload) {
                            let _ = shared.tx.send(BusMessage::Change(change));
                        }
                    }
                    shared.connected.store(false, Ordering::Relaxed);
                    tracing::warn!("redis subscription lost; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
            },
            Err(e) => tracing::warn!(error = %e, "redis connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn parse(payload: &str) -> Option<SessionChange> {
    let (identifier, version) = payload.split_once(' ')?;
    Some(SessionChange {
        identifier: identifier.to_owned(),
        version: version.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_doorbells() {
        assert_eq!(
            parse("abc 7"),
            Some(SessionChange {
                identifier: "abc".into(),
                version: 7
            })
        );
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("abc x"), None);
    }
}
