//! The composition root, written by hand: config → data → repositories → usecase → services
//! → servers. This is what `wire_gen.go` is in a kratos service.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    biz::{
        BlobStore, EventBus, ImageUsecase, SessionRepo, StreamTickets, TusRepo, TusUsecase,
        UploadLimits, UploadTokenKey, new_token_key,
    },
    conf::{BlobKind, BusKind, Config},
    data,
    metrics::Metrics,
    server,
    service::{
        Services,
        auth::MemberAuth,
        hub::{SessionHub, SseFormat},
        limits::AbuseLimits,
        webhook::Dispatcher,
    },
};

/// How often open sessions past their expiry are closed.
const EXPIRY_EVERY: Duration = Duration::from_secs(1);

/// A built, bound, not yet running service.
pub struct Application {
    http: TcpListener,
    grpc: TcpListener,
    services: Services,
    router: axum::Router,
    http_limits: server::HttpTimeouts,
    shutdown_grace: Duration,
    sweeps: Sweeps,
    /// Present when `webhooks.endpoints` is not empty.
    webhooks: Option<Dispatcher>,
}

/// When the janitor sweeps: `upload.sweep_interval` and `upload.orphan_min_age`.
#[derive(Clone, Copy)]
struct Sweeps {
    every: Duration,
    orphan_min_age: Duration,
}

impl Application {
    /// Connects to everything, runs migrations if configured, binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());

        let db = data::connect_with(
            config.data.database.url.expose(),
            config.data.database.max_connections,
            config.data.database.acquire_timeout,
        )
        .await
        .context("data.database.url: cannot connect")?;
        if config.data.database.run_migrations {
            data::migrate_up(&db).await.context("running migrations")?;
        }
        let tickets_repo = Arc::new(data::SqlStreamTicketRepo::new(db.clone()));
        let tus_repo: Arc<dyn TusRepo> = Arc::new(data::SqlTusRepo::new(db.clone()));
        // Every change writes its webhook events in its own transaction; the dispatcher
        // delivers them from the same database.
        let outbox_written = Arc::new(tokio::sync::Notify::new());
        let webhooks = if config.webhooks.endpoints.is_empty() {
            None
        } else {
            let outbox = Arc::new(data::SqlWebhookOutbox::new(db.clone()));
            Some(
                Dispatcher::new(
                    outbox,
                    &config.webhooks,
                    config.sse.event.as_str().to_owned(),
                    metrics.clone(),
                    outbox_written.clone(),
                )
                .context("webhooks: cannot build the HTTP client")?,
            )
        };
        let repo: Arc<dyn SessionRepo> = Arc::new(
            data::SqlSessionRepo::new(db, metrics.clone())
                .with_webhooks(config.webhooks.routes())
                .with_outbox_signal(outbox_written),
        );

        let blobs: Arc<dyn BlobStore> = match config.data.blob.kind {
            BlobKind::Fs => Arc::new(data::FsBlobStore::new(&config.data.blob.root).with_context(
                || format!("data.blob.root: cannot use {:?}", config.data.blob.root),
            )?),
            BlobKind::S3 => Arc::new(data::S3BlobStore::new(&config.data.blob.s3)?),
        };

        let bus_url = || {
            config
                .data
                .bus
                .url
                .as_ref()
                .map(|u| u.expose())
                .context("data.bus.url is required")
        };
        let bus: Arc<dyn EventBus> = match config.data.bus.kind {
            BusKind::Memory => Arc::new(data::MemoryBus::new()),
            BusKind::Redis => Arc::new(data::RedisBus::start(bus_url()?)?),
            BusKind::RedisCluster => Arc::new(data::RedisBus::start_cluster(bus_url()?)?),
            BusKind::Nats => Arc::new(data::NatsBus::start(bus_url()?).await?),
        };

        let token_key = match &config.auth.upload_token_key {
            Some(key) => UploadTokenKey::new(Sha256::digest(key.expose().as_bytes()).into()),
            None => {
                tracing::warn!(
                    "auth.upload_token_key is unset: using a random key; QR codes of sessions made before a restart cannot be shown again"
                );
                UploadTokenKey::new(new_token_key())
            }
        };
        let upload = &config.upload;
        let limits = UploadLimits {
            session_ttl: upload.session_ttl,
            max_session_ttl: upload.max_session_ttl.max(upload.session_ttl),
            retention: upload.retention,
            max_images: upload.max_images,
            max_image_bytes: upload.max_image_bytes.0,
            max_session_bytes: upload.max_session_bytes.0,
            max_pixels: upload.max_pixels,
            thumbnail_size: upload.thumbnail_size,
            max_concurrent_decodes: upload.max_concurrent_decodes,
        };
        let usecase = Arc::new(ImageUsecase::new(
            repo,
            blobs.clone(),
            bus,
            limits,
            token_key,
        ));
        let tickets = Arc::new(StreamTickets::new(
            tickets_repo,
            usecase.clone(),
            config.sse.ticket_ttl,
        ));
        let tus = Arc::new(TusUsecase::new(
            usecase.clone(),
            tus_repo,
            blobs,
            upload.tus_expiry,
        ));

        let hub = SessionHub::start(
            usecase.clone(),
            metrics.clone(),
            SseFormat {
                default_event: config.sse.event.clone(),
                retry_ms: config.sse.retry.as_millis() as u64,
            },
            config.sse.heartbeat,
        );

        let http = TcpListener::bind(config.server.http.addr)
            .await
            .with_context(|| {
                format!(
                    "server.http.addr: cannot listen on {}",
                    config.server.http.addr
                )
            })?;
        let grpc = TcpListener::bind(config.server.grpc.addr)
            .await
            .with_context(|| {
                format!(
                    "server.grpc.addr: cannot listen on {}",
                    config.server.grpc.addr
                )
            })?;
        let public_base_url = match &config.server.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => lan_base_url(http.local_addr()?.port()),
        };
        let services = Services {
            usecase,
            tickets,
            tus,
            hub,
            metrics,
            auth: Arc::new(MemberAuth::from_config(&config.auth)?),
            limits: Arc::new(AbuseLimits::new(&config.limits, config.sse.retry)),
            public_base_url: public_base_url.into(),
            stream_idle_timeout: config.upload.stream_idle_timeout,
            client_max_edge: config.upload.client_max_edge,
            server_timing: config.server.http.server_timing,
        };
        let http_limits = server::HttpTimeouts::from_config(&config);
        let router = server::router(services.clone(), &config.cors, &http_limits);
        Ok(Application {
            http,
            grpc,
            services,
            router,
            http_limits,
            shutdown_grace: config.server.shutdown_grace,
            sweeps: Sweeps {
                every: config.upload.sweep_interval,
                orphan_min_age: config.upload.orphan_min_age,
            },
            webhooks,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The wired services, for tests and tools that call the usecase directly.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves HTTP and gRPC until `shutdown` resolves; then closes live streams, stops
    /// accepting and waits at most `server.shutdown_grace` for requests in flight.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Application {
            http,
            grpc,
            services,
            router,
            http_limits,
            shutdown_grace,
            sweeps,
            webhooks,
        } = self;
        tracing::info!(
            http = %http.local_addr()?,
            grpc = %grpc.local_addr()?,
            public_base_url = %services.public_base_url,
            "serving"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut dispatcher = webhooks.map(|d| tokio::spawn(d.run(stop_rx.clone())));
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let janitor = tokio::spawn(janitor(services.clone(), sweeps));
        let mut http_task = tokio::spawn(server::serve_http(
            http,
            router,
            http_limits,
            services.metrics.clone(),
            stopped(),
        ));
        let mut grpc_task = tokio::spawn(server::serve_grpc(grpc, services.clone(), stopped()));

        tokio::select! {
            () = shutdown => tracing::info!("shutting down"),
            r = &mut http_task => tracing::error!(result = ?r, "HTTP server stopped"),
            r = &mut grpc_task => tracing::error!(result = ?r, "gRPC server stopped"),
        }
        // Streams first, so that graceful shutdown has only short requests left to wait for.
        services.hub.close_all();
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(shutdown_grace, async {
            let _ = (&mut http_task).await;
            let _ = (&mut grpc_task).await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(grace = ?shutdown_grace, "drain time over; closing the remaining connections");
            http_task.abort();
            grpc_task.abort();
        }
        janitor.abort();
        // Attempts in flight end within the webhook timeout; what is cut off stays in the
        // outbox and goes after the next start.
        if let Some(task) = dispatcher.as_mut()
            && tokio::time::timeout(shutdown_grace, &mut *task)
                .await
                .is_err()
        {
            task.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Background upkeep: expire sessions on time, sweep retention and orphan blobs at start-up
/// and every `upload.sweep_interval` after, and forget idle rate-limit keys.
async fn janitor(services: Services, sweeps: Sweeps) {
    let (usecase, limits, tus) = (&services.usecase, &services.limits, &services.tus);
    let mut expiry = tokio::time::interval(EXPIRY_EVERY);
    let mut sweep = tokio::time::interval(sweeps.every);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = expiry.tick() => {
                if let Err(e) = usecase.expire_due().await {
                    tracing::warn!(error = ?e, "expiry sweep failed");
                }
                // Expired tus uploads go within a second, as sessions do: their quota is freed.
                match tus.sweep().await {
                    Ok(n) => services.metrics.tus_expired(n as u64),
                    Err(e) => tracing::warn!(error = ?e, "tus sweep failed"),
                }
            }
            _ = sweep.tick() => {
                limits.forget_idle();
                match usecase.sweep_retention().await {
                    Ok(n) if n > 0 => tracing::info!(sessions = n, "retention sweep deleted sessions"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = ?e, "retention sweep failed"),
                }
                match usecase.sweep_orphans(sweeps.orphan_min_age).await {
                    Ok(n) if n > 0 => tracing::info!(blobs = n, "orphan sweep deleted blobs"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = ?e, "orphan sweep failed"),
                }
                match tus.sweep_orphan_parts(sweeps.orphan_min_age).await {
                    Ok(n) if n > 0 => tracing::info!(parts = n, "orphan sweep deleted tus parts"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = ?e, "tus part sweep failed"),
                }
            }
        }
    }
}

/// `http://{LAN address}:{port}`, so a phone on the same network can open the QR's URL.
fn lan_base_url(port: u16) -> String {
    let ip = local_ip_address::local_ip().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    format!("http://{}", SocketAddr::new(ip, port))
}
