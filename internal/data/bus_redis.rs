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
//! Redis Cluster (`data.bus.kind: redis_cluster`): classic pub/sub there is broadcast to every
//! node, which undoes the point, so the cluster engine uses sharded pub/sub (`SSUBSCRIBE` /
//! `SPUBLISH`, Redis 7): each session's channel lives on the node that owns its hash slot, and
//! the subscriber keeps one connection per node it needs ([`super::bus_redis_cluster`]). The
//! channel names, the doorbells and the resync are the same on both engines.

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
use redis::{
    IntoConnectionInfo, RedisResult,
    aio::{ConnectionManager, PubSubSink, PubSubStream},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinHandle,
};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::{
    bus_interest::{Command, Interests, doorbell, drain, parse_message},
    bus_redis_cluster,
};
use crate::biz::{
    BizError, BusInterest, BusMessage, BusSubscription, EventBus, Result, SessionChange,
    UploadProgress,
};

/// One channel per session carries its doorbells (`ID VERSION`) and its upload progress
/// (a JSON object), so an instance hears both only for the sessions it serves.
pub(super) const CHANNEL_PREFIX: &str = "qrupload:session:";
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// Subscriptions sent together after a reconnect or a burst of first watchers.
pub(super) const BATCH: usize = 512;

/// A session's channel. The identifier is the whole key, so in a cluster its slot follows it.
pub(super) fn channel(identifier: &str) -> String {
    format!("{CHANNEL_PREFIX}{identifier}")
}

pub struct RedisBus {
    publisher: Publisher,
    shared: Arc<Shared>,
    interests: Arc<Interests>,
    task: JoinHandle<()>,
}

/// The publishing side, made on first use and kept: one connection to a server, or a
/// cluster connection that routes each `SPUBLISH` to the node owning the channel's slot.
enum Publisher {
    Server(redis::Client, tokio::sync::Mutex<Option<ConnectionManager>>),
    Cluster(ClusterClient, tokio::sync::Mutex<Option<ClusterConnection>>),
}

pub(super) struct Shared {
    pub(super) tx: broadcast::Sender<BusMessage>,
    pub(super) connected: AtomicBool,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            tx: broadcast::channel(4096).0,
            connected: AtomicBool::new(false),
        })
    }

    /// A (re)connected subscription holds every wanted session: the bus is ready, and
    /// whatever was published while it was away is lost, so the hubs re-read instead.
    pub(super) fn subscribed(&self, engine: &'static str, sessions: usize) {
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(engine, sessions, "event bus subscribed");
        let _ = self.tx.send(BusMessage::Resync);
    }

    /// Hands a message on the wire to the hubs; anything else is dropped.
    pub(super) fn deliver(&self, payload: &[u8]) {
        if let Some(message) = parse_message(payload) {
            let _ = self.tx.send(message);
        }
    }
}

/// `data.bus.url` is not a Redis URL (or, for a cluster, a comma-separated list of them).
#[derive(Debug, thiserror::Error)]
#[error("data.bus.url: not a Redis URL: {0}")]
pub struct RedisUrlError(#[source] redis::RedisError);

impl RedisBus {
    /// Starts the subscription task. Does not wait for Redis: an instance starts (and serves
    /// uploads) while Redis is down, and reports not-ready until the bus connects.
    pub fn start(url: &str) -> std::result::Result<Self, RedisUrlError> {
        let client = redis::Client::open(url).map_err(RedisUrlError)?;
        let shared = Shared::new();
        let (interests, commands) = Interests::new();
        let server = Server {
            client: client.clone(),
            shared: shared.clone(),
            interests: interests.clone(),
        };
        let task = tokio::spawn(reconnect_forever(server, commands));
        Ok(RedisBus {
            publisher: Publisher::Server(client, tokio::sync::Mutex::new(None)),
            shared,
            interests,
            task,
        })
    }

    /// The same bus on a Redis Cluster, over sharded pub/sub. `urls` names one or more of its
    /// nodes, comma-separated; the rest are found from them.
    pub fn start_cluster(urls: &str) -> std::result::Result<Self, RedisUrlError> {
        let nodes = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.into_connection_info().map_err(RedisUrlError))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let client = bus_redis_cluster::builder(nodes.clone())
            .build()
            .map_err(RedisUrlError)?;
        let shared = Shared::new();
        let (interests, commands) = Interests::new();
        let cluster = bus_redis_cluster::Cluster {
            nodes,
            shared: shared.clone(),
            interests: interests.clone(),
        };
        let task = tokio::spawn(reconnect_forever(cluster, commands));
        Ok(RedisBus {
            publisher: Publisher::Cluster(client, tokio::sync::Mutex::new(None)),
            shared,
            interests,
            task,
        })
    }

    async fn publish_inner(&self, channel: String, payload: String) -> Result<()> {
        let unavailable =
            |e: redis::RedisError| BizError::unavailable(format!("redis publish: {e}"));
        match &self.publisher {
            Publisher::Server(client, slot) => {
                let mut slot = slot.lock().await;
                if slot.is_none() {
                    *slot = Some(client.get_connection_manager().await.map_err(unavailable)?);
                }
                let Some(conn) = slot.as_mut() else {
                    return Err(BizError::unavailable("redis: no connection"));
                };
                let command = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
                command
                    .query_async::<i64>(conn)
                    .await
                    .map_err(unavailable)?;
            }
            Publisher::Cluster(client, slot) => {
                // Cloned out of the lock: a cluster connection multiplexes, so publishes of
                // different sessions go to their nodes side by side.
                let mut conn = {
                    let mut slot = slot.lock().await;
                    if slot.is_none() {
                        *slot = Some(client.get_async_connection().await.map_err(unavailable)?);
                    }
                    slot.clone()
                        .ok_or_else(|| BizError::unavailable("redis: no connection"))?
                };
                let command = redis::cmd("SPUBLISH").arg(channel).arg(payload).to_owned();
                command
                    .query_async::<i64>(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
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

/// What a subscription task runs on: one server, or a cluster.
pub(super) trait Engine: Send {
    const NAME: &'static str;

    fn shared(&self) -> &Shared;

    /// Connects, subscribes every wanted session (then calls [`Shared::subscribed`]) and
    /// follows the connection until it is lost (`Ok(true)`) or the bus is dropped (`Ok(false)`).
    fn attempt(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> impl Future<Output = RedisResult<bool>> + Send;
}

/// The life of a subscription task: an attempt that fails, or whose connection is lost, is
/// made again after a backoff.
pub(super) async fn reconnect_forever<E: Engine>(
    mut engine: E,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = engine.attempt(&mut commands).await;
        let was_connected = engine.shared().connected.swap(false, Ordering::Relaxed);
        let name = E::NAME;
        match result {
            Ok(false) => return,
            Ok(true) => tracing::warn!(engine = name, "event bus subscription lost; reconnecting"),
            Err(e) => tracing::warn!(engine = name, error = %e, "event bus subscribe failed"),
        }
        if was_connected {
            backoff = Duration::from_millis(100);
        }
        if !pause(&mut backoff, &mut commands).await {
            return;
        }
    }
}

/// The subscriber on one server: a pub/sub connection, with classic `SUBSCRIBE`.
struct Server {
    client: redis::Client,
    shared: Arc<Shared>,
    interests: Arc<Interests>,
}

impl Engine for Server {
    const NAME: &'static str = "redis";

    fn shared(&self) -> &Shared {
        &self.shared
    }

    async fn attempt(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> RedisResult<bool> {
        let (sink, stream, subscribed) = connect(&self.client, &self.interests).await?;
        self.shared.subscribed(Self::NAME, subscribed.len());
        Ok(follow(
            sink,
            stream,
            subscribed,
            &self.shared,
            &self.interests,
            commands,
        )
        .await)
    }
}

/// Waits `backoff` before the next connection attempt, then doubles it (up to 2 s); `false`
/// when the bus is dropped meanwhile. Watchers arriving meanwhile go on at once (their
/// senders are dropped): the next connection subscribes every wanted session and resyncs.
pub(super) async fn pause(
    backoff: &mut Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> bool {
    let pause = tokio::time::sleep(*backoff);
    tokio::pin!(pause);
    loop {
        tokio::select! {
            _ = &mut pause => break,
            command = commands.recv() => if command.is_none() { return false },
        }
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    true
}

/// A fresh pub/sub connection subscribed to every session wanted now.
async fn connect(
    client: &redis::Client,
    interests: &Interests,
) -> redis::RedisResult<(PubSubSink, PubSubStream, HashSet<String>)> {
    let (sink, stream) = client.get_async_pubsub().await?.split();
    let subscribed = subscribe_wanted(&sink, interests).await?;
    Ok((sink, stream, subscribed))
}

/// What subscribes a channel: a server's pub/sub sink (`SUBSCRIBE`), or a cluster connection
/// (`SSUBSCRIBE`, sent to the node owning the channel's slot). A clone sends over the same
/// connection.
pub(super) trait Channels: Clone + Send + Sync {
    fn join(&mut self, channel: String) -> impl Future<Output = RedisResult<()>> + Send;
    fn leave(&mut self, channel: String) -> impl Future<Output = RedisResult<()>> + Send;
}

impl Channels for PubSubSink {
    async fn join(&mut self, channel: String) -> RedisResult<()> {
        self.subscribe(channel).await
    }

    async fn leave(&mut self, channel: String) -> RedisResult<()> {
        self.unsubscribe(channel).await
    }
}

/// Subscribes every session wanted now, in batches; returns them.
pub(super) async fn subscribe_wanted(
    channels: &impl Channels,
    interests: &Interests,
) -> RedisResult<HashSet<String>> {
    let wanted = interests.all();
    for chunk in wanted.chunks(BATCH) {
        send_all(channels, chunk, true).await?;
    }
    Ok(wanted.into_iter().collect())
}

/// One command per channel, side by side: each gets exactly one reply, so every confirmation
/// belongs to its own command (a multi-channel SUBSCRIBE answers once per channel, and the
/// extra replies would be taken for the next command's; in a cluster, the channels of one
/// command must also share a slot).
pub(super) async fn send_all(
    channels: &impl Channels,
    identifiers: &[String],
    subscribe: bool,
) -> RedisResult<()> {
    let sends = identifiers.iter().map(|id| {
        let mut channels = channels.clone();
        let channel = channel(id);
        async move {
            if subscribe {
                channels.join(channel).await
            } else {
                channels.leave(channel).await
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
                shared.deliver(message.get_payload_bytes());
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
    let plan = Plan::of(batch, subscribed, interests);
    send_all(sink, &plan.remove, false).await?;
    send_all(sink, &plan.add, true).await?;
    plan.confirm();
    Ok(())
}

/// What a batch of commands changes, decided from the interests at the time it runs:
/// sessions to subscribe and to unsubscribe (`subscribed` is updated), and the watchers to
/// confirm once that is done.
pub(super) struct Plan {
    pub(super) add: Vec<String>,
    pub(super) remove: Vec<String>,
    acks: Vec<oneshot::Sender<()>>,
}

impl Plan {
    pub(super) fn of(
        batch: Vec<Command>,
        subscribed: &mut HashSet<String>,
        interests: &Interests,
    ) -> Plan {
        let mut plan = Plan {
            add: Vec::new(),
            remove: Vec::new(),
            acks: Vec::new(),
        };
        for command in batch {
            match command {
                Command::Subscribe(id, ack) => {
                    if interests.wanted(&id) && subscribed.insert(id.clone()) {
                        plan.add.push(id);
                    }
                    plan.acks.push(ack);
                }
                Command::Unsubscribe(id) => {
                    if !interests.wanted(&id) && subscribed.remove(&id) {
                        plan.remove.push(id);
                    }
                }
            }
        }
        plan
    }

    pub(super) fn confirm(self) {
        for ack in self.acks {
            let _ = ack.send(());
        }
    }
}
