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
/// test stops and restarts to take the bus away and bring it back. For
/// [`BusKind::RedisCluster`] it is three `redis-server` nodes made into a cluster (no
/// replicas, the 16,384 slots split between them), stopped and restarted together; each node
/// keeps its cluster configuration in a folder of its own, so the cluster comes back as it was.
pub struct OwnBroker {
    kind: BusKind,
    /// One port per node: the clients' port and, for a cluster, the cluster bus port.
    nodes: Vec<(u16, u16)>,
    children: Vec<Child>,
    folder: tempfile::TempDir,
}

/// Nodes of a test's own Redis Cluster.
const CLUSTER_NODES: usize = 3;

impl OwnBroker {
    /// Starts the server binary of `kind`; `None` (the test skips) when it is not installed,
    /// unless the variable that requires that bus is set.
    pub fn start(kind: BusKind) -> Option<OwnBroker> {
        let count = if kind == BusKind::RedisCluster {
            CLUSTER_NODES
        } else {
            1
        };
        let mut broker = OwnBroker {
            kind,
            nodes: (0..count).map(|_| (free_port(), free_port())).collect(),
            children: Vec::new(),
            folder: tempfile::tempdir().expect("broker folder"),
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
        if kind == BusKind::RedisCluster {
            broker.create_cluster();
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
        for (n, &(port, bus_port)) in self.nodes.iter().enumerate() {
            let port = port.to_string();
            let mut args: Vec<String> = match self.kind {
                BusKind::Nats => vec!["-a".into(), "127.0.0.1".into(), "-p".into(), port],
                _ => [
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]
                .map(String::from)
                .to_vec(),
            };
            if self.kind == BusKind::RedisCluster {
                let dir = self.folder.path().join(format!("node{n}"));
                std::fs::create_dir_all(&dir)?;
                let dir = dir.to_string_lossy().into_owned();
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        &bus_port.to_string(),
                        "--cluster-node-timeout",
                        "2000",
                        "--dir",
                        &dir,
                    ]
                    .map(String::from),
                );
            }
            let child = Command::new(self.binary())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            self.children.push(child);
        }
        Ok(())
    }

    /// Joins the nodes into one cluster and waits until every node serves all slots.
    fn create_cluster(&self) {
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for (port, _) in &self.nodes {
            create.arg(format!("127.0.0.1:{port}"));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        // The nodes may still be starting: a few attempts.
        let created = (0..50).any(|_| {
            let done = create
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !done {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            done
        });
        assert!(created, "redis-cli --cluster create");
        self.wait_cluster_ok();
    }

    fn wait_cluster_ok(&self) {
        for _ in 0..300 {
            let ok = self.nodes.iter().all(|(port, _)| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the redis cluster did not reach cluster_state:ok");
    }

    /// The clients' ports of the nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(port, _)| *port).collect()
    }

    /// The bus URL: the server's, or the cluster's nodes comma-separated.
    pub fn url(&self) -> String {
        let scheme = match self.kind {
            BusKind::Nats => "nats",
            _ => "redis",
        };
        let urls: Vec<String> = self
            .ports()
            .iter()
            .map(|port| format!("{scheme}://127.0.0.1:{port}"))
            .collect();
        urls.join(",")
    }

    /// The bus section that points an instance at this broker.
    pub fn bus(&self) -> BusConf {
        bus(self.kind, &self.url())
    }

    /// Kills the servers: the bus is gone for every instance.
    pub fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the servers again on the same ports: empty, or for a cluster, with the slots
    /// each node had and no subscriptions.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("the broker restarts");
        if self.kind == BusKind::RedisCluster {
            self.wait_cluster_ok();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
