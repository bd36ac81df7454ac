//! Stream tickets: how a browser in jwt mode opens the SSE stream without putting its JWT in
//! a URL. `EventSource` sends no headers, so the page first asks for a ticket with the JWT in
//! `Authorization` and then connects with `ticket=` in the query string.
//!
//! A ticket is 256 random bits, stored only as its SHA-256 (in the database, so any instance
//! accepts it), bound to one session and one member, valid for a short time (60 s) and for one
//! connect attempt: it is taken (deleted) before anything else is checked, so a failed attempt
//! spends it too and a ticket read from a log is already useless. In jwt mode it carries the
//! JWT's expiry, and the stream it opens ends then, as one opened with the JWT itself would.
//!
//! The phone asks for one with its upload token (an extension of SPEC.md, which names the
//! owner only): its page has no other way to watch the session without the token in a URL.
//! Such a ticket is bound to its session exactly as the owner's is and grants the stream the
//! owner would get (which shows nothing the token does not already read through upload-info).
//! It carries no expiry of its own: the token is good until the session closes, and the stream
//! ends then anyway; a session already closed gets no phone ticket, as it takes no upload.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    BizError, Caller, ImageUsecase, Result,
    secret::{hash_token, new_ticket},
};

/// A ticket as stored: its hash and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStreamTicket {
    pub ticket_hash: String,
    pub identifier: String,
    pub member_id: u32,
    pub member_expires_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// What a redeemed ticket lets its bearer watch, and until when (jwt mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamGrant {
    pub member_id: u32,
    pub member_expires_at: Option<DateTime<Utc>>,
}

/// Where tickets live; `data` implements it.
#[async_trait]
pub trait StreamTicketRepo: Send + Sync {
    /// Stores a ticket and drops the ones that expired before `now`.
    async fn insert(&self, ticket: NewStreamTicket, now: DateTime<Utc>) -> Result<()>;
    /// Deletes the ticket with this hash and returns it, or `None` if there is none (never
    /// issued, or already taken by another attempt on any instance).
    async fn take(&self, ticket_hash: &str) -> Result<Option<NewStreamTicket>>;
}

pub struct StreamTickets {
    repo: Arc<dyn StreamTicketRepo>,
    sessions: Arc<ImageUsecase>,
    ttl: Duration,
}

impl StreamTickets {
    pub fn new(
        repo: Arc<dyn StreamTicketRepo>,
        sessions: Arc<ImageUsecase>,
        ttl: Duration,
    ) -> Self {
        StreamTickets {
            repo,
            sessions,
            ttl,
        }
    }

    /// A ticket for the owner of a session (`Caller::Member`, with its JWT's expiry in jwt
    /// mode) or for its phone (`Caller::UploadToken`): an unknown session, another member's or
    /// a wrong token → 404, as everywhere; the phone's for a closed session → 409. Returns the
    /// ticket (shown once) and when it expires.
    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn issue(
        &self,
        caller: &Caller,
        member_expires_at: Option<DateTime<Utc>>,
        identifier: &str,
    ) -> Result<(String, DateTime<Utc>)> {
        let session = self.sessions.get_session(caller, identifier).await?;
        let now = Utc::now();
        let member_expires_at = match caller {
            Caller::Member(_) => member_expires_at,
            Caller::UploadToken(_) if !session.accepts_uploads(now) => {
                return Err(BizError::SessionClosed);
            }
            Caller::UploadToken(_) => None,
        };
        let ttl = chrono::Duration::from_std(self.ttl).map_err(BizError::internal)?;
        let ticket = new_ticket();
        let expires_at = now + ttl;
        self.repo
            .insert(
                NewStreamTicket {
                    ticket_hash: hash_token(&ticket),
                    identifier: session.identifier,
                    // The owner's stream, whoever asked: the session is the grant.
                    member_id: session.member_id,
                    member_expires_at,
                    expires_at,
                    created_at: now,
                },
                now,
            )
            .await?;
        Ok((ticket, expires_at))
    }

    /// Spends a ticket for a connect attempt to `identifier`. Unknown, spent, expired or
    /// issued for another session: 401, and the ticket is gone in every case.
    #[tracing::instrument(skip_all, fields(identifier))]
    pub async fn redeem(&self, ticket: &str, identifier: &str) -> Result<StreamGrant> {
        if ticket.is_empty() || ticket.len() > 128 {
            return Err(BizError::Unauthenticated);
        }
        let stored = self
            .repo
            .take(&hash_token(ticket))
            .await?
            .ok_or(BizError::Unauthenticated)?;
        let now = Utc::now();
        if stored.expires_at <= now
            || stored.identifier != identifier
            || stored.member_expires_at.is_some_and(|at| at <= now)
        {
            return Err(BizError::Unauthenticated);
        }
        Ok(StreamGrant {
            member_id: stored.member_id,
            member_expires_at: stored.member_expires_at,
        })
    }
}
