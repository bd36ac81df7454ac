//! [`EventBus`] over core NATS, the second brokered engine beside Redis.
//!
//! One subject per session (`qrupload.session.{id}`), subscribed while this instance has
//! watchers of it, so NATS sends each doorbell only to the instances that serve the session.
//! Core NATS, not JetStream: a doorbell carries no data and a lost one costs only latency, so
//! storing them would buy nothing; the resync covers what a disconnect loses.
//!
//! The client reconnects by itself and re-sends its subscriptions; this bus follows its
//! connection events and, after every (re)connect, subscribes the sessions first watched while
//! it was away, makes sure the server has every subscription (a round trip through a private
//! subject: NATS applies one connection's commands in order) and then announces
//! [`BusMessage::Resync`]. The same round trip confirms a new session's subscription before
//! its first watcher reads the snapshot, so a change committed after that read always rings.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{Client, ConnectOptions, Event, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::bus_interest::{Command, Interests, doorbell, drain, parse_message};
use crate::biz::{
    BizError, BusInterest, BusMessage, BusSubscription, EventBus, Result, SessionChange,
    UploadProgress, new_id,
};

const SUBJECT_PREFIX: &str = "qrupload.session.";
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the round trip that confirms subscriptions may take before watchers go on.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
const BATCH: usize = 512;

fn subject(identifier: &str) -> String {
    format!("{SUBJECT_PREFIX}{identifier}")
}

pub struct NatsBus {
    client: Client,
    shared: Arc<Shared>,
    interests: Arc<Interests>,
    task: JoinHandle<()>,
}

struct Shared {
    tx: broadcast::Sender<BusMessage>,
    connected: AtomicBool,
}

/// `data.bus.url` cannot be used to reach NATS (a malformed URL or address).
#[derive(Debug, thiserror::Error)]
#[error("data.bus.url: cannot use it for NATS: {0}")]
pub struct NatsUrlError(#[source] async_nats::ConnectError);

impl NatsBus {
    /// Starts the client and the subscription task. Does not wait for NATS: an instance
    /// starts (and serves uploads) while NATS is down, and reports not-ready until it connects.
    pub async fn start(url: &str) -> std::result::Result<Self, NatsUrlError> {
        let shared = Arc::new(Shared {
            tx: broadcast::channel(4096).0,
            connected: AtomicBool::new(false),
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let client = ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100u64 << attempts.min(5)).min(Duration::from_secs(2))
            })
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(event);
                }
            })
            .connect(url)
            .await
            .map_err(NatsUrlError)?;
        let (interests, commands) = Interests::new();
        let task = tokio::spawn(follow(
            client.clone(),
            shared.clone(),
            interests.clone(),
            commands,
            events,
        ));
        Ok(NatsBus {
            client,
            shared,
            interests,
            task,
        })
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, change: SessionChange) -> Result<()> {
        let payload = Bytes::from(doorbell(&change));
        let publish = self.client.publish(subject(&change.identifier), payload);
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BizError::unavailable(format!("nats publish: {e}"))),
            Err(_) => Err(BizError::unavailable("nats publish timed out")),
        }
    }

    /// On the session's own subject, as a JSON object (a doorbell is `ID VERSION`).
    async fn publish_progress(&self, progress: UploadProgress) -> Result<()> {
        let payload = serde_json::to_vec(&progress).map_err(BizError::internal)?;
        let publish = self
            .client
            .publish(subject(&progress.identifier), Bytes::from(payload));
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BizError::unavailable(format!("nats publish: {e}"))),
            Err(_) => Err(BizError::unavailable("nats publish timed out")),
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

/// A private subject this instance publishes to itself: when the echo comes back, the server
/// has applied every subscription sent before it.
struct Confirm {
    client: Client,
    subject: String,
    echoes: Option<Subscriber>,
    next: u64,
}

impl Confirm {
    async fn round_trip(&mut self) -> bool {
        if self.echoes.is_none() {
            self.echoes = self.client.subscribe(self.subject.clone()).await.ok();
        }
        let Some(echoes) = self.echoes.as_mut() else {
            return false;
        };
        self.next += 1;
        let nonce = self.next.to_string();
        if self
            .client
            .publish(self.subject.clone(), Bytes::from(nonce.clone()))
            .await
            .is_err()
        {
            return false;
        }
        let _ = self.client.flush().await;
        // Echoes of earlier round trips that timed out may come first.
        let wait = async {
            while let Some(echo) = echoes.next().await {
                if echo.payload == nonce.as_bytes() {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, wait)
            .await
            .unwrap_or(false)
    }
}

async fn follow(
    client: Client,
    shared: Arc<Shared>,
    interests: Arc<Interests>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let mut confirm = Confirm {
        client: client.clone(),
        subject: format!("qrupload.bus.{}", new_id()),
        echoes: None,
        next: 0,
    };
    let mut forwarders = Forwarders::default();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Connected) => {
                    shared.connected.store(true, Ordering::Relaxed);
                    // Sessions first watched while disconnected were left for now.
                    for id in interests.all() {
                        forwarders.subscribe(&client, &shared, id).await;
                    }
                    if !confirm.round_trip().await {
                        tracing::warn!("nats did not confirm the subscriptions; resyncing anyway");
                    }
                    tracing::info!(sessions = forwarders.0.len(), "event bus connected to nats");
                    // Whatever was published while we were away is lost: re-read instead.
                    let _ = shared.tx.send(BusMessage::Resync);
                }
                Some(Event::Disconnected) | Some(Event::Closed) => {
                    shared.connected.store(false, Ordering::Relaxed);
                    tracing::warn!("nats connection lost; reconnecting");
                }
                Some(other) => tracing::debug!(event = %other, "nats event"),
                None => return,
            },
            command = commands.recv() => {
                let Some(command) = command else { return };
                let batch = drain(command, &mut commands, BATCH);
                apply(&client, &shared, &interests, &mut forwarders, &mut confirm, batch).await;
            }
        }
    }
}

/// Brings the subscriptions in line with the interests, then confirms the waiting watchers.
async fn apply(
    client: &Client,
    shared: &Arc<Shared>,
    interests: &Interests,
    forwarders: &mut Forwarders,
    confirm: &mut Confirm,
    batch: Vec<Command>,
) {
    let mut acks = Vec::new();
    for command in batch {
        match command {
            Command::Subscribe(id, ack) => {
                // Disconnected, the client would only queue the subscription (and block once
                // its queue is full): it is made on the next connect, before the resync.
                if interests.wanted(&id) && shared.connected.load(Ordering::Relaxed) {
                    forwarders.subscribe(client, shared, id).await;
                }
                acks.push(ack);
            }
            Command::Unsubscribe(id) => {
                if !interests.wanted(&id)
                    && let Some(task) = forwarders.0.remove(&id)
                {
                    task.abort();
                }
            }
        }
    }
    // Disconnected, the next connect subscribes and the resync that follows covers the gap,
    // so watchers need not wait.
    if !acks.is_empty() && shared.connected.load(Ordering::Relaxed) {
        confirm.round_trip().await;
    }
    for ack in acks {
        let _ = ack.send(());
    }
}

/// Each subscribed session's messages are forwarded by a task of its own; aborting it drops
/// the subscriber, which unsubscribes. All go with the bus.
#[derive(Default)]
struct Forwarders(HashMap<String, JoinHandle<()>>);

impl Forwarders {
    /// Subscribes to a session's subject unless already subscribed.
    async fn subscribe(&mut self, client: &Client, shared: &Arc<Shared>, id: String) {
        if self.0.contains_key(&id) {
            return;
        }
        match client.subscribe(subject(&id)).await {
            Ok(subscriber) => {
                let task = tokio::spawn(forward(subscriber, shared.clone()));
                self.0.insert(id, task);
            }
            Err(e) => tracing::warn!(error = %e, "nats subscribe failed"),
        }
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

async fn forward(mut subscriber: Subscriber, shared: Arc<Shared>) {
    while let Some(message) = subscriber.next().await {
        if let Some(message) = parse_message(&message.payload) {
            let _ = shared.tx.send(message);
        }
    }
}
