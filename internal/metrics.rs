//! Counters for `/metrics` (Prometheus text format), one set per running app so that tests
//! running several apps in one process read their own.

use std::{
    fmt::Write,
    sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};

#[derive(Debug, Default)]
pub struct Metrics {
    db_queries: AtomicU64,
    snapshot_reads: AtomicU64,
    snapshots_built: AtomicU64,
    changes_received: AtomicU64,
    events_sent: AtomicU64,
    watchers: AtomicI64,
    uploads: AtomicU64,
    upload_rejections: AtomicU64,
    slow_clients_dropped: AtomicU64,
    lean_streams: AtomicI64,
    webhooks: WebhookCounters,
    tus: TusCounts,
}

/// The dispatcher's counters; the outbox gauges are refreshed by it at each poll.
#[derive(Debug, Default)]
struct WebhookCounters {
    deliveries: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    dead: AtomicU64,
    pending: AtomicI64,
    /// Unix milliseconds of the oldest pending event's creation; 0 when none.
    oldest_pending_ms: AtomicI64,
}

/// The life of resumable uploads.
#[derive(Debug, Default)]
struct TusCounts {
    created: AtomicU64,
    finished: AtomicU64,
    terminated: AtomicU64,
    expired: AtomicU64,
}

impl Metrics {
    pub fn db_query(&self) {
        self.db_queries.fetch_add(1, Relaxed);
    }

    /// One consistent read of a session and its images (counted as a database read too).
    pub fn snapshot_read(&self) {
        self.snapshot_reads.fetch_add(1, Relaxed);
        self.db_queries.fetch_add(1, Relaxed);
    }

    pub fn snapshot_built(&self) {
        self.snapshots_built.fetch_add(1, Relaxed);
    }

    pub fn change_received(&self) {
        self.changes_received.fetch_add(1, Relaxed);
    }

    pub fn events_sent(&self, n: u64) {
        self.events_sent.fetch_add(n, Relaxed);
    }

    pub fn watcher_opened(&self) {
        self.watchers.fetch_add(1, Relaxed);
    }

    pub fn watcher_closed(&self) {
        self.watchers.fetch_sub(1, Relaxed);
    }

    pub fn upload(&self, ok: bool) {
        if ok {
            self.uploads.fetch_add(1, Relaxed);
        } else {
            self.upload_rejections.fetch_add(1, Relaxed);
        }
    }

    /// A connection dropped because its client accepted no bytes for `sse.write_timeout`.
    pub fn slow_client_dropped(&self) {
        self.slow_clients_dropped.fetch_add(1, Relaxed);
    }

    /// An SSE stream written by the server's own loop (not through hyper) opened or closed.
    pub fn lean_stream(&self, open: bool) {
        self.lean_streams
            .fetch_add(if open { 1 } else { -1 }, Relaxed);
    }

    /// A webhook answered 2xx.
    pub fn webhook_delivered(&self) {
        self.webhooks.deliveries.fetch_add(1, Relaxed);
    }

    /// A webhook attempt failed; `retry`: it is scheduled again, else it is dead.
    pub fn webhook_failed(&self, retry: bool) {
        self.webhooks.failures.fetch_add(1, Relaxed);
        if retry {
            self.webhooks.retries.fetch_add(1, Relaxed);
        } else {
            self.webhooks.dead.fetch_add(1, Relaxed);
        }
    }

    pub fn webhook_outbox(&self, pending: u64, oldest_pending_ms: Option<i64>) {
        self.webhooks
            .pending
            .store(i64::try_from(pending).unwrap_or(i64::MAX), Relaxed);
        self.webhooks
            .oldest_pending_ms
            .store(oldest_pending_ms.unwrap_or(0), Relaxed);
    }

    pub fn tus_created(&self) {
        self.tus.created.fetch_add(1, Relaxed);
    }

    pub fn tus_finished(&self) {
        self.tus.finished.fetch_add(1, Relaxed);
    }

    pub fn tus_terminated(&self) {
        self.tus.terminated.fetch_add(1, Relaxed);
    }

    /// Unfinished tus uploads swept after their expiry (or their session's end).
    pub fn tus_expired(&self, n: u64) {
        self.tus.expired.fetch_add(n, Relaxed);
    }

    pub fn snapshot_reads(&self) -> u64 {
        self.snapshot_reads.load(Relaxed)
    }

    pub fn watchers(&self) -> i64 {
        self.watchers.load(Relaxed)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, i64); 10] = [
            (
                "qrupload_db_queries_total",
                "counter",
                "Database statements issued by the repositories.",
                self.db_queries.load(Relaxed) as i64,
            ),
            (
                "qrupload_db_snapshot_reads_total",
                "counter",
                "Reads of a session with its images for watchers.",
                self.snapshot_reads.load(Relaxed) as i64,
            ),
            (
                "qrupload_snapshots_built_total",
                "counter",
                "Snapshots serialized for watchers (once per change per instance).",
                self.snapshots_built.load(Relaxed) as i64,
            ),
            (
                "qrupload_bus_changes_received_total",
                "counter",
                "Change notifications received from the event bus.",
                self.changes_received.load(Relaxed) as i64,
            ),
            (
                "qrupload_stream_events_sent_total",
                "counter",
                "Events written to SSE and gRPC watchers.",
                self.events_sent.load(Relaxed) as i64,
            ),
            (
                "qrupload_watchers",
                "gauge",
                "Open SSE and gRPC watch streams.",
                self.watchers.load(Relaxed),
            ),
            (
                "qrupload_uploads_total",
                "counter",
                "Upload requests that stored their images.",
                self.uploads.load(Relaxed) as i64,
            ),
            (
                "qrupload_upload_rejections_total",
                "counter",
                "Upload requests refused.",
                self.upload_rejections.load(Relaxed) as i64,
            ),
            (
                "qrupload_http_slow_clients_dropped_total",
                "counter",
                "Connections dropped because the client accepted no bytes for sse.write_timeout.",
                self.slow_clients_dropped.load(Relaxed) as i64,
            ),
            (
                "qrupload_http_lean_streams",
                "gauge",
                "SSE streams written by the serve loop itself, without hyper's connection buffers.",
                self.lean_streams.load(Relaxed),
            ),
        ];
        let w = &self.webhooks;
        let webhook_rows: [(&str, &str, &str, i64); 5] = [
            (
                "qrupload_webhook_deliveries_total",
                "counter",
                "Webhook attempts answered with a 2xx.",
                w.deliveries.load(Relaxed) as i64,
            ),
            (
                "qrupload_webhook_failures_total",
                "counter",
                "Webhook attempts that failed: network error, timeout or non-2xx.",
                w.failures.load(Relaxed) as i64,
            ),
            (
                "qrupload_webhook_retries_total",
                "counter",
                "Failed webhook events scheduled for another attempt.",
                w.retries.load(Relaxed) as i64,
            ),
            (
                "qrupload_webhook_dead_total",
                "counter",
                "Webhook events given up on after webhooks.max_age.",
                w.dead.load(Relaxed) as i64,
            ),
            (
                "qrupload_webhook_outbox_pending",
                "gauge",
                "Webhook deliveries waiting in the outbox (every instance's).",
                w.pending.load(Relaxed),
            ),
        ];
        let mut out = String::with_capacity(1024);
        for (name, kind, help, value) in rows.into_iter().chain(webhook_rows) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let oldest = w.oldest_pending_ms.load(Relaxed);
        let age = if oldest == 0 {
            0.0
        } else {
            (chrono::Utc::now().timestamp_millis() - oldest).max(0) as f64 / 1000.0
        };
        let name = "qrupload_webhook_oldest_pending_age_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Age of the oldest webhook delivery waiting in the outbox.\n# TYPE {name} gauge\n{name} {age}"
        );
        self.render_tus(&mut out);
        out
    }

    fn render_tus(&self, out: &mut String) {
        let t = &self.tus;
        for (name, help, value) in [
            (
                "qrupload_tus_uploads_created_total",
                "Resumable uploads created.",
                &t.created,
            ),
            (
                "qrupload_tus_uploads_finished_total",
                "Resumable uploads that became an image.",
                &t.finished,
            ),
            (
                "qrupload_tus_uploads_terminated_total",
                "Resumable uploads terminated by the client.",
                &t.terminated,
            ),
            (
                "qrupload_tus_uploads_expired_total",
                "Unfinished resumable uploads swept after they expired.",
                &t.expired,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
    }
}
