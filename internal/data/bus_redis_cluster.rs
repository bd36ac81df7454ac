//! The subscribing side of [`super::RedisBus`] on a Redis Cluster: sharded pub/sub.
//!
//! `SSUBSCRIBE` keeps a channel on the node that owns its hash slot, and `SPUBLISH` sends a
//! message only there, so a node carries the doorbells of its own slots and an instance hears
//! only the sessions it serves, however many nodes and instances there are. The cluster
//! connection routes each `SSUBSCRIBE` to the slot's node (one command per channel: channels of
//! one command must share a slot), holding one connection per node it needed; its pushes
//! (RESP3) arrive here.
//!
//! The subscription is lost when a node's connection drops (the library pushes
//! `Disconnection`) or when the cluster moves a slot away from its node (the node pushes
//! `sunsubscribe` for channels nobody here unsubscribed). Either way this task drops the
//! connection and makes a new one: it finds the current owners, subscribes every wanted
//! session again and announces [`crate::biz::BusMessage::Resync`], as the single-server engine
//! does after a reconnect. Each attempt has a client of its own, so pushes of a connection
//! already given up cannot reach the next one.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use redis::{
    ConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisResult, Value,
    cluster::ClusterClientBuilder, cluster_async::ClusterConnection,
};
use tokio::sync::mpsc;

use super::{
    bus_interest::{Command, Interests, drain},
    bus_redis::{
        BATCH, CHANNEL_PREFIX, Channels, Engine, Plan, Shared, send_all, subscribe_wanted,
    },
};

/// A cluster client that gives up quickly: a node that is down fails a command within about
/// a second (the subscriber then retries with its backoff, a publish within its timeout).
pub(super) fn builder(nodes: Vec<ConnectionInfo>) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes)
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_secs(1))
        .retries(2)
}

/// The subscriber on a cluster: a cluster connection, with sharded `SSUBSCRIBE`.
pub(super) struct Cluster {
    pub(super) nodes: Vec<ConnectionInfo>,
    pub(super) shared: Arc<Shared>,
    pub(super) interests: Arc<Interests>,
}

impl Engine for Cluster {
    const NAME: &'static str = "redis cluster";

    fn shared(&self) -> &Shared {
        &self.shared
    }

    async fn attempt(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> RedisResult<bool> {
        let (conn, pushes, subscribed) = connect(&self.nodes, &self.interests).await?;
        self.shared.subscribed(Self::NAME, subscribed.len());
        let mut subscription = Subscription {
            conn,
            subscribed,
            unsubscribing: HashMap::new(),
        };
        Ok(subscription
            .follow(pushes, &self.shared, &self.interests, commands)
            .await)
    }
}

type Pushes = mpsc::UnboundedReceiver<PushInfo>;

/// A fresh cluster connection subscribed to every session wanted now.
async fn connect(
    nodes: &[ConnectionInfo],
    interests: &Interests,
) -> RedisResult<(ClusterConnection, Pushes, HashSet<String>)> {
    let (tx, pushes) = mpsc::unbounded_channel();
    let client = builder(nodes.to_vec())
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()?;
    let conn = client.get_async_connection().await?;
    let subscribed = subscribe_wanted(&conn, interests).await?;
    Ok((conn, pushes, subscribed))
}

impl Channels for ClusterConnection {
    async fn join(&mut self, channel: String) -> RedisResult<()> {
        self.ssubscribe(channel).await
    }

    async fn leave(&mut self, channel: String) -> RedisResult<()> {
        self.sunsubscribe(channel).await
    }
}

struct Subscription {
    conn: ClusterConnection,
    subscribed: HashSet<String>,
    /// Channels this task unsubscribed whose `sunsubscribe` push has not come back yet: such a
    /// push is the answer, not a slot moving away.
    unsubscribing: HashMap<String, usize>,
}

impl Subscription {
    /// Delivers doorbells and applies subscription changes until the subscription is lost
    /// (`true`) or the bus is dropped (`false`).
    async fn follow(
        &mut self,
        mut pushes: Pushes,
        shared: &Shared,
        interests: &Interests,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return true };
                    if self.lost_by(&push, shared) {
                        return true;
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return false };
                    let batch = drain(command, commands, BATCH);
                    if self.apply(batch, interests).await.is_err() {
                        return true;
                    }
                }
            }
        }
    }

    /// Handles one push; `true` when it says the subscription is gone.
    fn lost_by(&mut self, push: &PushInfo, shared: &Shared) -> bool {
        match push.kind {
            PushKind::SMessage => {
                if let Some(Value::BulkString(payload)) = push.data.get(1) {
                    shared.deliver(payload);
                }
                false
            }
            PushKind::Disconnection => true,
            PushKind::SUnsubscribe => {
                let Some(Value::BulkString(name)) = push.data.first() else {
                    return false;
                };
                let Some(id) = std::str::from_utf8(name)
                    .ok()
                    .and_then(|c| c.strip_prefix(CHANNEL_PREFIX))
                else {
                    return false;
                };
                match self.unsubscribing.get_mut(id) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    Some(_) => {
                        self.unsubscribing.remove(id);
                        false
                    }
                    // Not asked for: the slot moved to another node.
                    None => self.subscribed.contains(id),
                }
            }
            _ => false,
        }
    }

    /// Brings the subscriptions in line with the interests, then confirms the waiting watchers.
    async fn apply(&mut self, batch: Vec<Command>, interests: &Interests) -> RedisResult<()> {
        let plan = Plan::of(batch, &mut self.subscribed, interests);
        for id in &plan.remove {
            *self.unsubscribing.entry(id.clone()).or_insert(0) += 1;
        }
        send_all(&self.conn, &plan.remove, false).await?;
        send_all(&self.conn, &plan.add, true).await?;
        plan.confirm();
        Ok(())
    }
}
