//! [`EventBus`] over Redis pub/sub, for several instances behind one URL.
//!
//! One channel per session (`qrupload:session:{id}`): an instance subscribes to a session's
//! channel when its first watcher there arrives and unsubscribes when the last one leaves, so
//! it receives only the doorbells of the sessions it serves. At N instances Redis then sends
//! each change to the instances that watch it, not N times to all. Per session rather than
//! per shard of sessions: a shard would bring back doorbells nobody here watches, and Redis
//! keeps a channel in a hash table, so 10,000 channels cost it a few hundred kilobytes.
//!
//! The subscription runs in a background task that reconnects by itself; after every
//! (re)connect it subscribes every wanted session again and announces
//! [`BusMessage::Resync`], so hubs re-read the sessions they watch and nothing missed while
//! Redis was away stays missed. Publishing is bounded in time: with Redis down, uploads still
//! succeed (the database is the truth) and watchers catch up on the resync.
//!
//! Redis Cluster: classic pub/sub there is broadcast to every node, which undoes the point.
//! Sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7) keeps each channel on the node that owns
//! its hash slot. The seam for it is [`channel`] (one key per session, so its slot follows
//! the session), [`send_all`] (the only place that subscribes) and the `PUBLISH` in
//! `publish_inner`. What it also needs, and this bus does not have, is a subscriber
//! connection per node routed by slot (the `redis` crate's split pub/sub sink sends only the
//! classic commands); with no cluster to test against, only classic pub/sub is wired.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::bus_interest::{Command, Interests, doorbell, drain, parse_doorbell};
use crate::biz::{
    BizError, BusInterest, BusMessage, BusSubscription, EventBus, Result, SessionChange,
    UploadProgress,
};

/// One channel per session carries its doorbells (`ID VERSION`) and its upload progress
/// (a JSON object), so an instance hears both only for the sessions it serves.
const CHANNEL_PREFIX: &str = "qrupload:session:";
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// Subscriptions sent together after a reconnect or a burst of first watchers.
const BATCH: usize = 512;

/// A session's channel. The identifier is the whole key, so in a cluster its slot follows it.
fn channel(identifier: &str) -> String {
    format!("{CHANNEL_PREFIX}{identifier}")
}

pub struct RedisBus {
    client: redis::Client,
    publisher: tokio::sync::Mutex<Option<ConnectionManager>>,
    shared: Arc<Shared>,
    interests: Arc<Interests>,
    task: JoinHandle<()>,
}

struct Shared {
    tx: broadcast::Sender<BusMessage>,
    connected: AtomicBool,
}

/// `data.bus.url` is not a Redis URL.
#[derive(Debug, thiserror::Error)]
#[error("data.bus.url: not a Redis URL: {0}")]
pub struct RedisUrlError(#[source] redis::RedisError);

impl RedisBus {
    /// Starts the subscription task. Does not wait for Redis: an instance starts (and serves
    /// uploads) while Redis is down, and reports not-ready until the bus connects.
    pub fn start(url: &str) -> std::result::Result<Self, RedisUrlError> {
        let client = redis::Client::open(url).map_err(RedisUrlError)?;
        let shared = Arc::new(Shared {
            tx: broadcast::channel(4096).0,
            connected: AtomicBool::new(false),
        });
        let (interests, commands) = Interests::new();
        let task = tokio::spawn(subscribe_forever(
            client.clone(),
            shared.clone(),
            interests.clone(),
            commands,
        ));
        Ok(RedisBus {
            client,
            publisher: tokio::sync::Mutex::new(None),
            shared,
            interests,
            task,
        })
    }

    async fn publish_inner(&self, channel: String, payload: String) -> Result<()> {
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
        let channel = channel(&change.identifier);
        let payload = doorbell(&change);
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_inner(channel, payload)).await {
            Ok(result) => result,
            Err(_) => Err(BizError::unavailable("redis publish timed out")),
        }
    }

    async fn publish_progress(&self, progress: UploadProgress) -> Result<()> {
        let channel = channel(&progress.identifier);
        let payload = serde_json::to_string(&progress).map_err(BizError::internal)?;
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_inner(channel, payload)).await {
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

    async fn interest(&self, identifier: &str) -> BusInterest {
        self.interests.take(identifier).await
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }
}

async fn subscribe_forever(
    client: redis::Client,
    shared: Arc<Shared>,
    interests: Arc<Interests>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&client, &interests).await {
            Ok((sink, stream, subscribed)) => {
                shared.connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                tracing::info!(sessions = subscribed.len(), "event bus subscribed to redis");
                // Whatever was published while we were away is lost: re-read instead.
                let _ = shared.tx.send(BusMessage::Resync);
                let open =
                    follow(sink, stream, subscribed, &shared, &interests, &mut commands).await;
                shared.connected.store(false, Ordering::Relaxed);
                if !open {
                    return;
                }
                tracing::warn!("redis subscription lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
        }
        // Watchers arriving meanwhile go on at once (their senders are dropped): the next
        // connection subscribes every wanted session and resyncs.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                command = commands.recv() => if command.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A fresh pub/sub connection subscribed to every session wanted now.
async fn connect(
    client: &redis::Client,
    interests: &Interests,
) -> redis::RedisResult<(PubSubSink, PubSubStream, HashSet<String>)> {
    let (sink, stream) = client.get_async_pubsub().await?.split();
    let wanted = interests.all();
    for chunk in wanted.chunks(BATCH) {
        send_all(&sink, chunk, true).await?;
    }
    Ok((sink, stream, wanted.into_iter().collect()))
}

/// One command per channel, pipelined: each gets exactly one reply, so every confirmation
/// belongs to its own command (a multi-channel SUBSCRIBE answers once per channel, and the
/// extra replies would be taken for the next command's).
async fn send_all(
    sink: &PubSubSink,
    identifiers: &[String],
    subscribe: bool,
) -> redis::RedisResult<()> {
    let sends = identifiers.iter().map(|id| {
        let mut sink = sink.clone();
        let channel = channel(id);
        async move {
            if subscribe {
                sink.subscribe(channel).await
            } else {
                sink.unsubscribe(channel).await
            }
        }
    });
    futures::future::try_join_all(sends).await.map(|_| ())
}

/// Delivers doorbells and applies subscription changes until the connection drops (`true`)
/// or the bus is dropped (`false`).
async fn follow(
    sink: PubSubSink,
    mut stream: PubSubStream,
    mut subscribed: HashSet<String>,
    shared: &Shared,
    interests: &Interests,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> bool {
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return true };
                let Ok(payload) = message.get_payload::<String>() else { continue };
                if payload.starts_with('{') {
                    if let Ok(progress) = serde_json::from_str(&payload) {
                        let _ = shared.tx.send(BusMessage::Progress(progress));
                    }
                } else if let Some(change) = parse_doorbell(&payload) {
                    let _ = shared.tx.send(BusMessage::Change(change));
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return false };
                let batch = drain(command, commands, BATCH);
                if apply(&sink, batch, &mut subscribed, interests).await.is_err() {
                    return true;
                }
            }
        }
    }
}

/// Brings the subscriptions in line with the interests, then confirms the waiting watchers.
async fn apply(
    sink: &PubSubSink,
    batch: Vec<Command>,
    subscribed: &mut HashSet<String>,
    interests: &Interests,
) -> redis::RedisResult<()> {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    let mut acks = Vec::new();
    for command in batch {
        match command {
            Command::Subscribe(id, ack) => {
                if interests.wanted(&id) && subscribed.insert(id.clone()) {
                    add.push(id);
                }
                acks.push(ack);
            }
            Command::Unsubscribe(id) => {
                if !interests.wanted(&id) && subscribed.remove(&id) {
                    remove.push(id);
                }
            }
        }
    }
    send_all(sink, &remove, false).await?;
    send_all(sink, &add, true).await?;
    for ack in acks {
        let _ = ack.send(());
    }
    Ok(())
}
