//! Several instances behind one URL: a watcher on instance A sees uploads made through
//! instance B, over Redis pub/sub, and converges after Redis goes away and comes back.
//! (`bus.rs` does the same over NATS and counts the doorbells each instance receives.)

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use qrupload::{
    api::image::v1 as pb,
    conf::{BusKind, Secret},
};
use sea_orm::ConnectionTrait;

use crate::helpers::{SseClient, TestApp, config, jpeg};

const TOKEN_KEY: &str = "a shared key for every instance of this test";

/// Redis for these tests: required when `QRUPLOAD_TEST_REDIS_URL` is set, else tried at the
/// local default and skipped when absent.
pub(crate) async fn redis_url() -> Option<String> {
    let required = std::env::var("QRUPLOAD_TEST_REDIS_URL").ok();
    let url = required
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await.is_ok(),
        Err(_) => false,
    };
    match (reachable, required) {
        (true, _) => Some(url),
        (false, None) => {
            eprintln!("skipping: Redis unreachable (set QRUPLOAD_TEST_REDIS_URL to require it)");
            None
        }
        (false, Some(url)) => {
            panic!("QRUPLOAD_TEST_REDIS_URL={url} is set but Redis is unreachable")
        }
    }
}

/// A fresh PostgreSQL database: required when `QRUPLOAD_TEST_POSTGRES_URL` is set.
async fn postgres_database() -> Option<String> {
    let required = std::env::var("QRUPLOAD_TEST_POSTGRES_URL").ok();
    let url = required
        .clone()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = match qrupload::data::connect(&url, 1).await {
        Ok(db) => db,
        Err(e) if required.is_none() => {
            eprintln!("skipping: PostgreSQL unreachable: {e}");
            return None;
        }
        Err(e) => panic!("QRUPLOAD_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}"),
    };
    let name = format!(
        "qrupload_s_{}",
        qrupload::biz::new_id().to_lowercase().replace('-', "_")
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = url
        .rsplit_once('/')
        .map_or(url.as_str(), |(b, _)| b)
        .to_owned();
    Some(format!("{base}/{name}"))
}

async fn instance(database_url: &str, blob_root: &std::path::Path, bus_url: &str) -> TestApp {
    instance_on(database_url, blob_root, "redis", bus_url).await
}

/// An instance on the shared database and blob folder, with the bus of `bus_kind`.
pub(crate) async fn instance_on(
    database_url: &str,
    blob_root: &std::path::Path,
    bus_kind: &str,
    bus_url: &str,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.data.database.url = Secret::new(database_url);
    config.data.blob.root = blob_root.display().to_string();
    config.data.bus.kind =
        serde_json::from_value::<BusKind>(serde_json::json!(bus_kind)).expect("a bus kind");
    config.data.bus.url = Some(Secret::new(bus_url));
    config.auth.upload_token_key = Some(Secret::new(TOKEN_KEY));
    TestApp::spawn_config(config, dir).await
}

pub(crate) async fn wait_ready(app: &TestApp, ready: bool) {
    let expected = if ready { 200 } else { 503 };
    for _ in 0..100 {
        let status = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if status.ok() == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readiness never became {expected}");
}

#[tokio::test]
async fn a_watcher_on_one_instance_sees_uploads_through_another() {
    let (Some(redis), Some(database)) = (redis_url().await, postgres_database().await) else {
        return;
    };
    let blobs = tempfile::tempdir().expect("blob dir");
    // Two instances started at the same moment against an empty database both come up.
    let (a, b) = tokio::join!(
        instance(&database, blobs.path(), &redis),
        instance(&database, blobs.path(), &redis)
    );
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;

    let (session, token) = a.create_session(9).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(&a, id, 9).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;

    // HTTP upload on B.
    let res = b
        .upload(id, &token, vec![("a.jpg", jpeg(40, 30))], None)
        .await;
    assert_eq!(res.status(), 201);
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;

    // gRPC upload on B.
    let mut grpc = b.grpc_client().await;
    let meta = pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Metadata(
            pb::UploadImageMetadata {
                member_id: 9,
                identifier: id.to_owned(),
                filename: "b.jpg".into(),
                idempotency_key: String::new(),
            },
        )),
    };
    let chunk = pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Chunk(jpeg(50, 40))),
    };
    grpc.upload_image(futures::stream::iter([meta, chunk]))
        .await
        .expect("gRPC upload on B");
    let (_, list) = watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert_eq!(list[1]["width"], 50);
    // The image written through B is served by A.
    let res = a
        .client
        .get(a.url(list[1]["url"].as_str().expect("url")))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
}

/// A Redis server of this test's own, on a free port, that the test can stop and restart.
pub(crate) struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub(crate) fn start(port: u16) -> Option<OwnRedis> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(OwnRedis {
            port,
            child: Some(child),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn watchers_converge_after_the_bus_comes_back() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let Some(mut redis) = OwnRedis::start(port) else {
        assert!(
            std::env::var("QRUPLOAD_TEST_REDIS_URL").is_err(),
            "redis-server is required"
        );
        eprintln!("skipping: no redis-server binary");
        return;
    };
    // Two instances share one SQLite file and one blob folder.
    let shared = tempfile::tempdir().expect("shared dir");
    let database = format!("sqlite://{}/shared.db?mode=rwc", shared.path().display());
    let a = instance(&database, &shared.path().join("blobs"), &redis.url()).await;
    let b = instance(&database, &shared.path().join("blobs"), &redis.url()).await;
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;

    let (session, token) = a.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(&a, id, 1).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;

    // Redis goes away: uploads still succeed, readiness says the bus is down.
    redis.stop();
    wait_ready(&a, false).await;
    for n in 0..2 {
        let res = b
            .upload(id, &token, vec![("x.jpg", jpeg(10 + n, 10))], None)
            .await;
        assert_eq!(res.status(), 201, "uploads do not depend on the bus");
    }
    // Redis is back: A resubscribes, re-reads what its watchers follow, and they converge.
    let mut redis = OwnRedis::start(port).expect("restart redis");
    wait_ready(&a, true).await;
    let (event, list) = watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert_eq!(
        event.id.as_deref(),
        Some("3"),
        "the latest version, nothing lost"
    );
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    redis.stop();
}
