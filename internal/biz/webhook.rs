//! Webhook events: what happened to a session, written to the outbox in the transaction of
//! the change and delivered later by the dispatcher.
//!
//! biz decides which change makes which event ([`WebhookEvent`]'s constructors); `data`
//! writes them next to the change; the service layer renders the body (the same session and
//! image JSON as the REST API) and signs it at each attempt.

use std::{fmt, str::FromStr};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Image, Result, UploadSession, secret::new_id};

/// The event types of SPEC.md's "Webhooks".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "session.created")]
    SessionCreated,
    #[serde(rename = "session.scanned")]
    SessionScanned,
    #[serde(rename = "image.added")]
    ImageAdded,
    #[serde(rename = "image.deleted")]
    ImageDeleted,
    #[serde(rename = "images.reordered")]
    ImagesReordered,
    #[serde(rename = "session.completed")]
    SessionCompleted,
    #[serde(rename = "session.expired")]
    SessionExpired,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::SessionCreated,
        EventType::SessionScanned,
        EventType::ImageAdded,
        EventType::ImageDeleted,
        EventType::ImagesReordered,
        EventType::SessionCompleted,
        EventType::SessionExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SessionCreated => "session.created",
            EventType::SessionScanned => "session.scanned",
            EventType::ImageAdded => "image.added",
            EventType::ImageDeleted => "image.deleted",
            EventType::ImagesReordered => "images.reordered",
            EventType::SessionCompleted => "session.completed",
            EventType::SessionExpired => "session.expired",
        }
    }
}

impl FromStr for EventType {
    type Err = ();

    fn from_str(text: &str) -> std::result::Result<Self, ()> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or(())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as kept in the outbox: the domain objects as they were right after the change,
/// so a later delivery says what happened then, not what is there now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique; the receiver's idempotency key.
    pub id: String,
    pub kind: EventType,
    pub created_at: DateTime<Utc>,
    pub session: UploadSession,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ids: Option<Vec<String>>,
}

impl WebhookEvent {
    fn new(kind: EventType, session: &UploadSession, now: DateTime<Utc>) -> Self {
        WebhookEvent {
            id: format!("evt_{}", new_id()),
            kind,
            created_at: now,
            session: session.clone(),
            image: None,
            image_ids: None,
        }
    }

    pub fn session_created(session: &UploadSession, now: DateTime<Utc>) -> Self {
        Self::new(EventType::SessionCreated, session, now)
    }

    pub fn session_scanned(session: &UploadSession, now: DateTime<Utc>) -> Self {
        Self::new(EventType::SessionScanned, session, now)
    }

    /// One per file of an upload.
    pub fn images_added(
        session: &UploadSession,
        images: &[Image],
        now: DateTime<Utc>,
    ) -> Vec<Self> {
        images
            .iter()
            .map(|image| WebhookEvent {
                image: Some(image.clone()),
                ..Self::new(EventType::ImageAdded, session, now)
            })
            .collect()
    }

    /// A member or the phone deleted an image; retention sweeps make none.
    pub fn image_deleted(session: &UploadSession, image: &Image, now: DateTime<Utc>) -> Self {
        WebhookEvent {
            image: Some(image.clone()),
            ..Self::new(EventType::ImageDeleted, session, now)
        }
    }

    /// For the reorder change: the ids in their new order.
    pub fn images_reordered(
        session: &UploadSession,
        image_ids: Vec<String>,
        now: DateTime<Utc>,
    ) -> Self {
        WebhookEvent {
            image_ids: Some(image_ids),
            ..Self::new(EventType::ImagesReordered, session, now)
        }
    }

    pub fn session_completed(session: &UploadSession, now: DateTime<Utc>) -> Self {
        Self::new(EventType::SessionCompleted, session, now)
    }

    pub fn session_expired(session: &UploadSession, now: DateTime<Utc>) -> Self {
        Self::new(EventType::SessionExpired, session, now)
    }
}

/// Which endpoints want which events: the repository writes one outbox row per event and
/// interested endpoint, so each endpoint's deliveries and retries are its own.
#[derive(Debug, Clone, Default)]
pub struct WebhookRoutes {
    /// (endpoint key, the events it wants; `None` = all).
    pub endpoints: Vec<(String, Option<Vec<EventType>>)>,
}

impl WebhookRoutes {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoint keys that want `kind`.
    pub fn targets(&self, kind: EventType) -> impl Iterator<Item = &str> {
        self.endpoints
            .iter()
            .filter(move |(_, events)| events.as_ref().is_none_or(|e| e.contains(&kind)))
            .map(|(key, _)| key.as_str())
    }
}

/// An outbox row claimed for delivery to one endpoint.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub row: i64,
    pub endpoint: String,
    pub attempts: u32,
    pub event: WebhookEvent,
}

/// The outbox's depth and the age of its oldest pending row, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The outbox as the dispatcher sees it; `data` implements it.
#[async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// Takes up to `limit` rows due at `now` and leases them until `lease_until`, so that no
    /// other instance takes them meanwhile; oldest first.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<PendingDelivery>>;
    /// Delivered: the row is gone.
    async fn delivered(&self, row: i64) -> Result<()>;
    /// Failed: try again at `next_attempt_at`.
    async fn retry_at(&self, row: i64, attempts: u32, next_attempt_at: DateTime<Utc>)
    -> Result<()>;
    /// Given up on after `webhooks.max_age`: kept, marked dead, never sent again.
    async fn dead(&self, row: i64, attempts: u32) -> Result<()>;
    async fn stats(&self) -> Result<OutboxStats>;
}
