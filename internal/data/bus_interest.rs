//! Which sessions this instance wants doorbells for, and the doorbell's wire form: what the
//! buses share.
//!
//! The hub holds one [`BusInterest`] per watched session, but a feed being dropped and a new
//! one for the same session can briefly overlap, so interests are counted: the first one of a
//! session asks the bus task to subscribe, the last one leaving asks it to unsubscribe. The
//! task owns the broker connection and applies the commands in order; it decides from the
//! counts at the time it runs (not from the command alone), so a subscribe that arrives after
//! its interest is already gone subscribes nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use crate::biz::{BusInterest, BusMessage, SessionChange};

/// How long a first watcher waits for the broker to confirm a subscription. Past it the
/// watcher goes on: the bus is then as good as disconnected, and its reconnect resyncs.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) enum Command {
    /// Subscribe if still wanted, then answer once the broker delivers the session's doorbells.
    Subscribe(String, oneshot::Sender<()>),
    /// Unsubscribe if no longer wanted.
    Unsubscribe(String),
}

pub(super) struct Interests {
    counts: Mutex<HashMap<String, usize>>,
    /// `None` in process, where there is no broker to tell.
    commands: Option<mpsc::UnboundedSender<Command>>,
}

impl Interests {
    pub(super) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let interests = Arc::new(Interests {
            counts: Mutex::new(HashMap::new()),
            commands: Some(commands),
        });
        (interests, rx)
    }

    /// Counts only: for the in-process bus, whose publisher filters by them.
    pub(super) fn local() -> Arc<Self> {
        Arc::new(Interests {
            counts: Mutex::new(HashMap::new()),
            commands: None,
        })
    }

    /// Takes one interest in `identifier` and waits until the bus task confirms it.
    pub(super) async fn take(self: &Arc<Self>, identifier: &str) -> BusInterest {
        *self.lock().entry(identifier.to_owned()).or_insert(0) += 1;
        let guard = Guard {
            interests: self.clone(),
            identifier: identifier.to_owned(),
        };
        // Every taker waits for its own confirmation, even when the session is already
        // subscribed: commands run in order, so it is answered after the first one's.
        let (tx, rx) = oneshot::channel();
        if let Some(commands) = &self.commands
            && commands
                .send(Command::Subscribe(identifier.to_owned(), tx))
                .is_ok()
        {
            let _ = tokio::time::timeout(CONFIRM_TIMEOUT, rx).await;
        }
        BusInterest::new(guard)
    }

    pub(super) fn wanted(&self, identifier: &str) -> bool {
        self.lock().contains_key(identifier)
    }

    /// Every session wanted now: what a fresh connection subscribes to.
    pub(super) fn all(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Guard {
    interests: Arc<Interests>,
    identifier: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let last = {
            let mut counts = self.interests.lock();
            match counts.get_mut(&self.identifier) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    counts.remove(&self.identifier);
                    true
                }
            }
        };
        if last && let Some(commands) = &self.interests.commands {
            let _ = commands.send(Command::Unsubscribe(std::mem::take(&mut self.identifier)));
        }
    }
}

/// Takes every command waiting now, up to `max`, after `first`: one broker round trip then
/// serves many watchers that arrived together.
pub(super) fn drain(
    first: Command,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    max: usize,
) -> Vec<Command> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
    batch
}

/// A doorbell on the wire: `{identifier} {version}`, the same on every broker.
pub(super) fn doorbell(change: &SessionChange) -> String {
    format!("{} {}", change.identifier, change.version)
}

/// A message on a session's channel or subject: its upload progress (a JSON object) or its
/// doorbell; `None` for anything else.
pub(super) fn parse_message(payload: &[u8]) -> Option<BusMessage> {
    if payload.first() == Some(&b'{') {
        return serde_json::from_slice(payload)
            .ok()
            .map(BusMessage::Progress);
    }
    let change = parse_doorbell(std::str::from_utf8(payload).ok()?)?;
    Some(BusMessage::Change(change))
}

fn parse_doorbell(payload: &str) -> Option<SessionChange> {
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
        let change = SessionChange {
            identifier: "abc".into(),
            version: 7,
        };
        assert_eq!(parse_doorbell(&doorbell(&change)), Some(change.clone()));
        assert_eq!(parse_doorbell("abc"), None);
        assert_eq!(parse_doorbell("abc x"), None);
        assert!(matches!(
            parse_message(b"abc 7"),
            Some(BusMessage::Change(c)) if c == change
        ));
        assert!(parse_message(b"{not json").is_none());
    }

    #[tokio::test]
    async fn the_last_interest_leaving_unsubscribes_once() {
        let (interests, mut rx) = Interests::new();
        // A task that confirms every subscription at once, as a connected bus does.
        let confirmer = tokio::spawn(async move {
            let mut log = Vec::new();
            while let Some(command) = rx.recv().await {
                match command {
                    Command::Subscribe(id, ack) => {
                        log.push(format!("+{id}"));
                        let _ = ack.send(());
                    }
                    Command::Unsubscribe(id) => log.push(format!("-{id}")),
                }
            }
            log
        });
        let a = interests.take("s1").await;
        let b = interests.take("s1").await;
        assert!(interests.wanted("s1"));
        drop(a);
        assert!(interests.wanted("s1"), "one interest is still held");
        drop(b);
        assert!(!interests.wanted("s1"));
        assert!(interests.all().is_empty());
        drop(interests);
        let log = confirmer.await.expect("confirmer");
        assert_eq!(log, ["+s1", "+s1", "-s1"]);
    }
}
