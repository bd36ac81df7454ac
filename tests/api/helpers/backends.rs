//! The backends of the production configuration, for tests that need them: the shared
//! PostgreSQL, Redis and NATS of the machine (required when their `QRUPLOAD_TEST_…` variable
//! is set, else tried at the local default and skipped when absent), and brokers of a test's
//! own that it can stop and restart.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
};

use qrupload::conf::{BusConf, BusKind, Secret};
use sea_orm::ConnectionTrait;

/// The bus section for `kind` at `url`, as an instance of a cluster is configured.
pub fn bus(kind: BusKind, url: &str) -> BusConf {
    BusConf {
        kind,
        url: Some(Secret::new(url)),
    }
}

/// A free port on 127.0.0.1 (free when asked; a server of the test's own binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// What is to be done when a backend is absent: skip (with a line saying so), or fail when
/// the variable `required_by` asks for it.
fn absent(what: &str, required_by: &str) {
    match std::env::var(required_by) {
        Ok(value) => panic!("{required_by}={value} is set but {what} is unreachable"),
        Err(_) => eprintln!("skipping: {what} unreachable (set {required_by} to require it)"),
    }
}

/// Redis: `QRUPLOAD_TEST_REDIS_URL`, else `redis://127.0.0.1:6379` if it answers.
pub async fn redis_url() -> Option<String> {
    const REQUIRED_BY: &str = "QRUPLOAD_TEST_REDIS_URL";
    let url = std::env::var(REQUIRED_BY).unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await.is_ok(),
        Err(_) => false,
    };
    if !reachable {
        absent("Redis", REQUIRED_BY);
        return None;
    }
    Some(url)
}

/// NATS: `QRUPLOAD_TEST_NATS_URL`, else `nats://127.0.0.1:4222` if it answers.
pub async fn nats_url() -> Option<String> {
    const REQUIRED_BY: &str = "QRUPLOAD_TEST_NATS_URL";
    let url = std::env::var(REQUIRED_BY).unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let reachable = match async_nats::connect(url.as_str()).await {
        Ok(client) => client.flush().await.is_ok(),
        Err(_) => false,
    };
    if !reachable {
        absent("NATS", REQUIRED_BY);
        return None;
    }
    Some(url)
}

/// The URL of a fresh, empty database on the PostgreSQL server of
/// `QRUPLOAD_TEST_POSTGRES_URL`, else of `postgres://postgres@127.0.0.1:5432/test` if it
/// answers. Each call makes another database, so tests never see each other's rows.
pub async fn postgres_database() -> Option<String> {
    const REQUIRED_BY: &str = "QRUPLOAD_TEST_POSTGRES_URL";
    let url = std::env::var(REQUIRED_BY)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = match qrupload::data::connect(&url, 1).await {
        Ok(admin) => admin,
        Err(e) => {
            absent(&format!("PostgreSQL ({e})"), REQUIRED_BY);
            return None;
        }
    };
    let name = format!(
        "qrupload_t_{}",
        qrupload::biz::new_id().to_lowercase().replace('-', "_")
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let _ = admin.close().await;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

/// A broker of the test's own (`redis-server` or `nats-server`) on a free port, which the
/// test stops and restarts to take the bus away and bring it back.
pub struct OwnBroker {
    kind: BusKind,
    port: u16,
    child: Option<Child>,
}

impl OwnBroker {
    /// Starts the server binary of `kind`; `None` (the test skips) when it is not installed,
    /// unless the variable that requires that bus is set.
    pub fn start(kind: BusKind) -> Option<OwnBroker> {
        let mut broker = OwnBroker {
            kind,
            port: free_port(),
            child: None,
        };
        if broker.spawn().is_err() {
            let required_by = match kind {
                BusKind::Nats => "QRUPLOAD_TEST_NATS_URL",
                _ => "QRUPLOAD_TEST_REDIS_URL",
            };
            assert!(
                std::env::var(required_by).is_err(),
                "the {} binary is required",
                broker.binary()
            );
            eprintln!("skipping: no {} binary", broker.binary());
            return None;
        }
        Some(broker)
    }

    fn binary(&self) -> &'static str {
        match self.kind {
            BusKind::Nats => "nats-server",
            _ => "redis-server",
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let args: Vec<&str> = match self.kind {
            BusKind::Nats => vec!["-a", "127.0.0.1", "-p", &port],
            _ => vec![
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        };
        let child = Command::new(self.binary())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        match self.kind {
            BusKind::Nats => format!("nats://127.0.0.1:{}", self.port),
            _ => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The bus section that points an instance at this broker.
    pub fn bus(&self) -> BusConf {
        bus(self.kind, &self.url())
    }

    /// Kills the server: the bus is gone for every instance.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("the broker restarts");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
