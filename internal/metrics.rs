//! What `/metrics` shows, in the OpenMetrics text format through `prometheus-client`: one
//! registry per running app, so that tests running several apps in one process read their own.
//!
//! Counters are registered without `_total`: the encoder appends it. Latencies are histograms
//! in seconds with buckets from 1 ms to 16 s, fine enough for a p99 of a few milliseconds.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
type Latency<L> = Family<L, Histogram, fn() -> Histogram>;

/// How an upload reached the service: the `kind` label of the upload histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadKind {
    /// `POST …/images`, one multipart request.
    Multipart,
    /// The tus request whose bytes finished the upload.
    Tus,
}

/// `kind` (`multipart`, `tus`) and `outcome` (`stored`, `rejected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    repo_calls: Counter,
    snapshot_reads: Counter,
    snapshots_built: Counter,
    changes_received: Counter,
    events_sent: Counter,
    watchers: Gauge,
    uploads: Counter,
    upload_rejections: Counter,
    slow_clients_dropped: Counter,
    lean_streams: Gauge,
    latency: Latencies,
    webhooks: WebhookCounters,
    tus: TusCounts,
}

/// The histograms.
#[derive(Debug)]
struct Latencies {
    upload: Latency<UploadLabels>,
    change_delivery: Histogram,
    sse_connect: Histogram,
}

/// The dispatcher's counters; the outbox gauges are refreshed by it at each poll.
#[derive(Debug, Default)]
struct WebhookCounters {
    deliveries: Counter,
    failures: Counter,
    retries: Counter,
    dead: Counter,
    pending: Gauge,
    /// Unix milliseconds of the oldest pending event's creation; 0 when none.
    oldest_pending_ms: Gauge,
    /// Set from `oldest_pending_ms` at each render.
    oldest_pending_age: FloatGauge,
}

/// The life of resumable uploads.
#[derive(Debug, Default)]
struct TusCounts {
    created: Counter,
    finished: Counter,
    terminated: Counter,
    expired: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            upload: Family::new_with_constructor(latency_histogram),
            change_delivery: latency_histogram(),
            sse_connect: latency_histogram(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            repo_calls: Counter::default(),
            snapshot_reads: Counter::default(),
            snapshots_built: Counter::default(),
            changes_received: Counter::default(),
            events_sent: Counter::default(),
            watchers: Gauge::default(),
            uploads: Counter::default(),
            upload_rejections: Counter::default(),
            slow_clients_dropped: Counter::default(),
            lean_streams: Gauge::default(),
            latency: Latencies::default(),
            webhooks: WebhookCounters::default(),
            tus: TusCounts::default(),
        };
        m.register();
        m
    }
}

impl Metrics {
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "qrupload_repo_calls",
            "Repository calls (one may issue several statements).",
            self.repo_calls.clone(),
        );
        r.register(
            "qrupload_db_snapshot_reads",
            "Reads of a session with its images for watchers.",
            self.snapshot_reads.clone(),
        );
        r.register(
            "qrupload_snapshots_built",
            "Snapshots serialized for watchers (once per change per instance).",
            self.snapshots_built.clone(),
        );
        r.register(
            "qrupload_bus_changes_received",
            "Change notifications received from the event bus.",
            self.changes_received.clone(),
        );
        r.register(
            "qrupload_stream_events_sent",
            "Events written to SSE and gRPC watchers.",
            self.events_sent.clone(),
        );
        r.register(
            "qrupload_watchers",
            "Open SSE and gRPC watch streams.",
            self.watchers.clone(),
        );
        r.register(
            "qrupload_uploads",
            "Upload requests that stored their images.",
            self.uploads.clone(),
        );
        r.register(
            "qrupload_upload_rejections",
            "Upload requests refused.",
            self.upload_rejections.clone(),
        );
        r.register(
            "qrupload_http_slow_clients_dropped",
            "Connections dropped because the client accepted no bytes for sse.write_timeout.",
            self.slow_clients_dropped.clone(),
        );
        r.register(
            "qrupload_http_lean_streams",
            "SSE streams written by the serve loop itself, without hyper's connection buffers.",
            self.lean_streams.clone(),
        );
        let l = &self.latency;
        r.register_with_unit(
            "qrupload_upload_duration",
            "Time to handle an upload: a multipart request, or the tus request that finished one.",
            Unit::Seconds,
            l.upload.clone(),
        );
        r.register_with_unit(
            "qrupload_change_delivery",
            "From a change's doorbell reaching the hub to its snapshot handed to every local watcher.",
            Unit::Seconds,
            l.change_delivery.clone(),
        );
        r.register_with_unit(
            "qrupload_sse_connect",
            "From an SSE request reaching its handler to its first frames handed to the connection.",
            Unit::Seconds,
            l.sse_connect.clone(),
        );
        let w = &self.webhooks;
        r.register(
            "qrupload_webhook_deliveries",
            "Webhook attempts answered with a 2xx.",
            w.deliveries.clone(),
        );
        r.register(
            "qrupload_webhook_failures",
            "Webhook attempts that failed: network error, timeout or non-2xx.",
            w.failures.clone(),
        );
        r.register(
            "qrupload_webhook_retries",
            "Failed webhook events scheduled for another attempt.",
            w.retries.clone(),
        );
        r.register(
            "qrupload_webhook_dead",
            "Webhook events given up on after webhooks.max_age.",
            w.dead.clone(),
        );
        r.register(
            "qrupload_webhook_outbox_pending",
            "Webhook deliveries waiting in the outbox (every instance's).",
            w.pending.clone(),
        );
        r.register_with_unit(
            "qrupload_webhook_oldest_pending_age",
            "Age of the oldest webhook delivery waiting in the outbox.",
            Unit::Seconds,
            w.oldest_pending_age.clone(),
        );
        let t = &self.tus;
        for (name, help, counter) in [
            (
                "qrupload_tus_uploads_created",
                "Resumable uploads created.",
                &t.created,
            ),
            (
                "qrupload_tus_uploads_finished",
                "Resumable uploads that became an image.",
                &t.finished,
            ),
            (
                "qrupload_tus_uploads_terminated",
                "Resumable uploads terminated by the client.",
                &t.terminated,
            ),
            (
                "qrupload_tus_uploads_expired",
                "Unfinished resumable uploads swept after they expired.",
                &t.expired,
            ),
        ] {
            r.register(name, help, counter.clone());
        }
    }

    /// A repository call (`qrupload_repo_calls_total`), however many statements it issues.
    pub fn db_query(&self) {
        self.repo_calls.inc();
    }

    /// One consistent read of a session and its images (counted as a repository call too).
    pub fn snapshot_read(&self) {
        self.snapshot_reads.inc();
        self.repo_calls.inc();
    }

    pub fn snapshot_built(&self) {
        self.snapshots_built.inc();
    }

    pub fn change_received(&self) {
        self.changes_received.inc();
    }

    pub fn events_sent(&self, n: u64) {
        self.events_sent.inc_by(n);
    }

    pub fn watcher_opened(&self) {
        self.watchers.inc();
    }

    pub fn watcher_closed(&self) {
        self.watchers.dec();
    }

    pub fn upload(&self, ok: bool) {
        if ok {
            self.uploads.inc();
        } else {
            self.upload_rejections.inc();
        }
    }

    /// How long an upload took to handle; `ok`: its images were stored.
    pub fn upload_took(&self, kind: UploadKind, ok: bool, took: Duration) {
        let kind = match kind {
            UploadKind::Multipart => "multipart",
            UploadKind::Tus => "tus",
        };
        let outcome = if ok { "stored" } else { "rejected" };
        self.latency
            .upload
            .get_or_create(&UploadLabels { kind, outcome })
            .observe(took.as_secs_f64());
    }

    /// A change's snapshot reached the local watchers this long after its doorbell.
    pub fn change_delivered(&self, took: Duration) {
        self.latency.change_delivery.observe(took.as_secs_f64());
    }

    /// An SSE stream's first frames were handed to its connection this long after the request.
    pub fn sse_connected(&self, took: Duration) {
        self.latency.sse_connect.observe(took.as_secs_f64());
    }

    /// A connection dropped because its client accepted no bytes for `sse.write_timeout`.
    pub fn slow_client_dropped(&self) {
        self.slow_clients_dropped.inc();
    }

    /// An SSE stream written by the server's own loop (not through hyper) opened or closed.
    pub fn lean_stream(&self, open: bool) {
        if open {
            self.lean_streams.inc();
        } else {
            self.lean_streams.dec();
        }
    }

    /// A webhook answered 2xx.
    pub fn webhook_delivered(&self) {
        self.webhooks.deliveries.inc();
    }

    /// A webhook attempt failed; `retry`: it is scheduled again, else it is dead.
    pub fn webhook_failed(&self, retry: bool) {
        self.webhooks.failures.inc();
        if retry {
            self.webhooks.retries.inc();
        } else {
            self.webhooks.dead.inc();
        }
    }

    pub fn webhook_outbox(&self, pending: u64, oldest_pending_ms: Option<i64>) {
        self.webhooks
            .pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.webhooks
            .oldest_pending_ms
            .set(oldest_pending_ms.unwrap_or(0));
    }

    pub fn tus_created(&self) {
        self.tus.created.inc();
    }

    pub fn tus_finished(&self) {
        self.tus.finished.inc();
    }

    pub fn tus_terminated(&self) {
        self.tus.terminated.inc();
    }

    /// Unfinished tus uploads swept after their expiry (or their session's end).
    pub fn tus_expired(&self, n: u64) {
        self.tus.expired.inc_by(n);
    }

    pub fn snapshot_reads(&self) -> u64 {
        self.snapshot_reads.get()
    }

    pub fn watchers(&self) -> i64 {
        self.watchers.get()
    }

    /// The OpenMetrics text exposition of every metric, ending with `# EOF`.
    pub fn render(&self) -> String {
        let oldest = self.webhooks.oldest_pending_ms.get();
        let age = if oldest == 0 {
            0.0
        } else {
            (chrono::Utc::now().timestamp_millis() - oldest).max(0) as f64 / 1000.0
        };
        self.webhooks.oldest_pending_age.set(age);
        let mut out = String::with_capacity(4096);
        // Writing to a `String` cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_buckets_sum_and_count() {
        let m = Metrics::default();
        m.upload_took(UploadKind::Multipart, true, Duration::from_millis(3));
        m.change_delivered(Duration::from_micros(500));
        m.sse_connected(Duration::from_secs(20));
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE qrupload_upload_duration_seconds histogram"));
        assert!(text.contains(
            "qrupload_upload_duration_seconds_bucket{le=\"0.004\",kind=\"multipart\",outcome=\"stored\"} 1"
        ), "{text}");
        assert!(text.contains(
            "qrupload_upload_duration_seconds_bucket{le=\"0.002\",kind=\"multipart\",outcome=\"stored\"} 0"
        ));
        assert!(text.contains("qrupload_change_delivery_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("qrupload_change_delivery_seconds_count 1"));
        // Beyond the last bucket: only `+Inf` holds it.
        assert!(text.contains("qrupload_sse_connect_seconds_bucket{le=\"16.384\"} 0"));
        assert!(text.contains("qrupload_sse_connect_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(text.contains("qrupload_sse_connect_seconds_sum 20.0"));
    }

    #[test]
    fn counters_gain_total_and_apps_count_apart() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.db_query();
        a.snapshot_read();
        let text = a.render();
        assert!(text.contains("# TYPE qrupload_repo_calls counter"));
        assert!(text.contains("\nqrupload_repo_calls_total 2\n"), "{text}");
        assert!(b.render().contains("\nqrupload_repo_calls_total 0\n"));
    }
}
