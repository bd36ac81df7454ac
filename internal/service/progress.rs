//! The `progress` event of one session's feed: the files in flight, coalesced to at most one
//! event per [`EVERY`] whatever the chunk rate, and one last event with no files when the
//! last one ends.
//!
//! Reports come from the bus (any instance); the latest event sits in a `watch` channel, so a
//! watcher that falls behind skips to the newest progress, as it does for snapshots. Nothing
//! here is stored or versioned: `version` is the session's current one, for the client's
//! bookkeeping only.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio::{sync::watch, time::Instant};

use crate::biz::UploadProgress;

/// At most 4 events a second per session (SPEC).
pub const EVERY: Duration = Duration::from_millis(250);

/// One `progress` event, encoded once for every watcher.
#[derive(Debug)]
pub struct ProgressFrame {
    pub identifier: String,
    pub files: Vec<FileProgress>,
    pub version: u64,
    /// `event: progress` / `data: {…}`: no `id:` line, since it is not a change.
    pub sse: Bytes,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileProgress {
    pub upload_id: String,
    pub received: u64,
    pub total: Option<u64>,
}

#[derive(Serialize)]
struct ProgressJson<'a> {
    identifier: &'a str,
    files: &'a [FileProgress],
    version: u64,
}

pub struct FeedProgress {
    state: Mutex<State>,
    tx: watch::Sender<Option<Arc<ProgressFrame>>>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, (u64, Option<u64>)>,
    last_emit: Option<Instant>,
    /// An emit is already due at a later instant.
    scheduled: bool,
    /// Reports arrived since the last emit.
    dirty: bool,
    /// The last event emitted listed files (so an empty one is owed when they end).
    active: bool,
}

impl Default for FeedProgress {
    fn default() -> Self {
        FeedProgress {
            state: Mutex::new(State::default()),
            tx: watch::channel(None).0,
        }
    }
}

impl FeedProgress {
    /// A watcher's receiver: it hears the current files in flight (if any) at once.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<ProgressFrame>>> {
        let mut rx = self.tx.subscribe();
        let idle = rx.borrow().as_ref().is_none_or(|f| f.files.is_empty());
        if idle {
            rx.mark_unchanged();
        } else {
            rx.mark_changed();
        }
        rx
    }

    /// Records a report. Returns when the next event is due, or `None` if one is already
    /// scheduled (this report will be in it).
    pub fn record(&self, report: &UploadProgress) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if report.done {
            state.files.remove(&report.upload_id);
        } else {
            state
                .files
                .insert(report.upload_id.clone(), (report.received, report.total));
        }
        state.dirty = true;
        if state.scheduled {
            return None;
        }
        let now = Instant::now();
        let due = state.last_emit.map_or(now, |at| (at + EVERY).max(now));
        if due > now {
            state.scheduled = true;
        }
        Some(due)
    }

    /// Emits the event for what was recorded, if anything changed since the last one.
    pub fn emit(&self, identifier: &str, version: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.scheduled = false;
        if !state.dirty {
            return;
        }
        state.dirty = false;
        if state.files.is_empty() && !state.active {
            return;
        }
        state.active = !state.files.is_empty();
        state.last_emit = Some(Instant::now());
        let files: Vec<FileProgress> = state
            .files
            .iter()
            .map(|(id, &(received, total))| FileProgress {
                upload_id: id.clone(),
                received,
                total,
            })
            .collect();
        drop(state);
        let json = serde_json::to_vec(&ProgressJson {
            identifier,
            files: &files,
            version,
        })
        .unwrap_or_default();
        let mut sse = BytesMut::with_capacity(json.len() + 32);
        sse.put_slice(b"event: progress\ndata: ");
        sse.put_slice(&json);
        sse.put_slice(b"\n\n");
        self.tx.send_replace(Some(Arc::new(ProgressFrame {
            identifier: identifier.to_owned(),
            files,
            version,
            sse: sse.freeze(),
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, received: u64, done: bool) -> UploadProgress {
        UploadProgress {
            identifier: "s".into(),
            upload_id: id.into(),
            received,
            total: Some(10),
            done,
        }
    }

    #[tokio::test]
    async fn reports_coalesce_and_the_end_is_announced_once() {
        let feed = FeedProgress::default();
        let mut rx = feed.subscribe();
        assert!(feed.record(&report("a", 1, false)).is_some());
        feed.emit("s", 3);
        assert!(rx.has_changed().unwrap_or(false));
        let first = rx.borrow_and_update().clone().expect("an event");
        assert_eq!(first.files.len(), 1);
        assert!(first.sse.starts_with(b"event: progress\ndata: {"));
        // Within the interval: scheduled once, later reports folded in.
        let due = feed.record(&report("a", 5, false)).expect("a due time");
        assert!(due > Instant::now());
        assert!(feed.record(&report("a", 7, false)).is_none());
        feed.emit("s", 3);
        assert_eq!(
            rx.borrow_and_update().as_ref().map(|f| f.files[0].received),
            Some(7)
        );
        tokio::time::sleep(EVERY).await;
        feed.record(&report("a", 10, true));
        feed.emit("s", 4);
        let last = rx.borrow_and_update().clone().expect("the end");
        assert!(last.files.is_empty());
        // A done for a file never seen owes no event.
        tokio::time::sleep(EVERY).await;
        feed.record(&report("b", 0, true));
        feed.emit("s", 4);
        assert!(!rx.has_changed().unwrap_or(true));
    }
}
