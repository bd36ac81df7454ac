//! The webhook dispatcher: a background task that delivers the outbox.
//!
//! Each round claims the due rows (leased, so another instance skips them; PostgreSQL's
//! `FOR UPDATE SKIP LOCKED`), posts each to its endpoint, and then deletes it (delivered),
//! schedules it again with backoff, or marks it dead after `webhooks.max_age`. A crash at any
//! point leaves the row in the outbox, so it is delivered after a restart: at least once, the
//! event id being the receiver's idempotency key.
//!
//! Rows of one session and endpoint go one after another, oldest first; when one fails, the
//! later ones of the same session wait for its retry instead of overtaking it. Sessions and
//! endpoints are delivered side by side, a few at a time.

mod send;

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{Notify, watch};

pub use send::{render_body, signature};

use crate::{
    biz::{AfterFailure, PendingDelivery, RetryPolicy, WebhookOutbox},
    conf::{Secret, WebhooksConf},
    metrics::Metrics,
};
use send::{AttemptError, Sender};

/// How often the outbox is looked at for rows this instance was not told about (written by
/// another instance, or due for a retry).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a round waits after the bell, to take the changes that follow with it.
const COALESCE: Duration = Duration::from_millis(25);
/// How often the outbox gauges of `/metrics` are read again.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Rows claimed per round; a full batch starts the next round at once.
const BATCH: u64 = 32;
/// Sessions (or endpoints) delivered at once.
const CONCURRENT: usize = 8;

pub struct Dispatcher {
    outbox: Arc<dyn WebhookOutbox>,
    /// Endpoint URL (the outbox's key) → its signing secret.
    endpoints: HashMap<String, Secret>,
    sender: Sender,
    policy: RetryPolicy,
    timeout: Duration,
    /// `sse.event`, for the session JSON's `events_url`.
    sse_event: String,
    metrics: Arc<Metrics>,
    /// Rung by this instance's repository after a commit that wrote events.
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        outbox: Arc<dyn WebhookOutbox>,
        conf: &WebhooksConf,
        sse_event: String,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> reqwest::Result<Self> {
        Ok(Dispatcher {
            outbox,
            endpoints: conf
                .endpoints
                .iter()
                .map(|e| (e.url.clone(), e.secret.clone()))
                .collect(),
            sender: Sender::new(conf.timeout, conf.allow_insecure)?,
            policy: conf.retry_policy(),
            timeout: conf.timeout,
            sse_event,
            metrics,
            wake,
        })
    }

    /// Delivers until `stop` turns true. A round in flight finishes its attempts first
    /// (each bounded by the timeout); the caller bounds the wait with the shutdown grace.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats_read: Option<tokio::time::Instant> = None;
        let mut outage = false;
        loop {
            // Polling finds what other instances wrote; the bell, what this one wrote.
            let rung = tokio::select! {
                _ = tick.tick() => false,
                () = self.wake.notified() => true,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            if rung {
                // A burst of changes is claimed in one round, not one round each.
                tokio::time::sleep(COALESCE).await;
            }
            loop {
                match self.round().await {
                    Ok(full) => {
                        if outage {
                            outage = false;
                            tracing::info!("webhook outbox reachable again");
                        }
                        if !full || *stop.borrow() {
                            break;
                        }
                    }
                    // Once per outage, not at every poll.
                    Err(e) if !outage => {
                        outage = true;
                        tracing::warn!(error = ?e, "webhook outbox unavailable; trying again");
                        break;
                    }
                    Err(_) => break,
                }
            }
            if stats_read.is_some_and(|at| at.elapsed() < STATS_EVERY) {
                continue;
            }
            stats_read = Some(tokio::time::Instant::now());
            match self.outbox.stats().await {
                Ok(stats) => self.metrics.webhook_outbox(
                    stats.pending,
                    stats.oldest_pending.map(|t| t.timestamp_millis()),
                ),
                Err(e) => tracing::debug!(error = ?e, "webhook outbox stats unavailable"),
            }
        }
    }

    /// One claim and its deliveries; true when the batch was full (more may be due).
    async fn round(&self) -> crate::biz::Result<bool> {
        let now = Utc::now();
        // Long enough for one attempt and its bookkeeping; a group stops before it runs out.
        let lease = chrono::Duration::from_std(self.timeout * 2 + Duration::from_secs(5))
            .unwrap_or(chrono::Duration::MAX);
        let lease_until = now.checked_add_signed(lease).unwrap_or(now);
        let claimed = self.outbox.claim(now, lease_until, BATCH).await?;
        let full = claimed.len() as u64 == BATCH;
        let mut groups: Vec<Vec<PendingDelivery>> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for delivery in claimed {
            let key = (
                delivery.endpoint.clone(),
                delivery.event.session.identifier.clone(),
            );
            let n = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[n].push(delivery);
        }
        futures::stream::iter(groups)
            .for_each_concurrent(CONCURRENT, |group| self.deliver_group(group, lease_until))
            .await;
        Ok(full)
    }

    /// One session's rows for one endpoint, in order; the rest wait when one fails.
    async fn deliver_group(&self, group: Vec<PendingDelivery>, lease_until: DateTime<Utc>) {
        let mut rows = group.into_iter();
        while let Some(delivery) = rows.next() {
            let now = Utc::now();
            let timeout = chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::MAX);
            if now.checked_add_signed(timeout).unwrap_or(now) >= lease_until {
                // Another instance may take the row once the lease ends: give it back now.
                self.hold(std::iter::once(delivery).chain(rows), now).await;
                return;
            }
            match self.attempt(&delivery).await {
                Ok(()) => {
                    self.metrics.webhook_delivered();
                    if let Err(e) = self.outbox.delivered(delivery.row).await {
                        // Sent but still in the outbox: it goes again after the lease.
                        tracing::warn!(error = ?e, event_id = %delivery.event.id, "delivered webhook not cleared");
                    }
                }
                Err(e) => {
                    let next = self.failed(&delivery, &e).await;
                    self.hold(rows, next).await;
                    return;
                }
            }
        }
    }

    async fn attempt(&self, delivery: &PendingDelivery) -> Result<(), AttemptError> {
        let Some(secret) = self.endpoints.get(&delivery.endpoint) else {
            return Err(AttemptError::Network(
                "endpoint is no longer in webhooks.endpoints".into(),
            ));
        };
        let body = render_body(&delivery.event, &self.sse_event)
            .map_err(|e| AttemptError::Network(format!("body: {e}")))?;
        self.sender
            .send(&delivery.endpoint, secret, &delivery.event, body)
            .await
    }

    /// Schedules a failed row again or marks it dead; returns when the session's later
    /// rows may go.
    async fn failed(&self, delivery: &PendingDelivery, error: &AttemptError) -> DateTime<Utc> {
        let failures = delivery.attempts.saturating_add(1);
        let now = Utc::now();
        let event = &delivery.event;
        let endpoint = host_of(&delivery.endpoint);
        match self
            .policy
            .after_failure(failures, event.created_at, now, rand::random::<f64>())
        {
            AfterFailure::RetryAt(next) => {
                self.metrics.webhook_failed(true);
                tracing::warn!(
                    event_id = %event.id, event_type = %event.kind, endpoint, attempt = failures,
                    error = %error, retry_at = %next, "webhook attempt failed"
                );
                if let Err(e) = self.outbox.retry_at(delivery.row, failures, next).await {
                    tracing::warn!(error = ?e, event_id = %event.id, "webhook retry not recorded");
                }
                next
            }
            AfterFailure::Dead => {
                self.metrics.webhook_failed(false);
                tracing::error!(
                    event_id = %event.id, event_type = %event.kind, endpoint, attempts = failures,
                    error = %error, "webhook event dead: still failing after webhooks.max_age"
                );
                if let Err(e) = self.outbox.dead(delivery.row, failures).await {
                    tracing::warn!(error = ?e, event_id = %event.id, "dead webhook not recorded");
                }
                now
            }
        }
    }

    /// Puts rows back for `at` without counting an attempt.
    async fn hold(&self, rows: impl Iterator<Item = PendingDelivery>, at: DateTime<Utc>) {
        for delivery in rows {
            if let Err(e) = self
                .outbox
                .retry_at(delivery.row, delivery.attempts, at)
                .await
            {
                tracing::warn!(error = ?e, event_id = %delivery.event.id, "held webhook not recorded");
            }
        }
    }
}

/// The endpoint's host, for logs: a URL's path or query may hold a receiver's own token.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}
