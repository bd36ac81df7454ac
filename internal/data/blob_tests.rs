//! One contract, every blob store: the local folder always; S3 against a real S3-compatible
//! server (`moto_server`) that the test starts on a free loopback port — required when
//! `QRUPLOAD_TEST_S3=1`, else skipped if the server binary is absent.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use chrono::Utc;

use super::{FsBlobStore, S3BlobStore};
use crate::{
    biz::BlobStore,
    conf::{S3Conf, Secret},
};

async fn contract(store: &dyn BlobStore, name: &str) {
    store
        .ping()
        .await
        .unwrap_or_else(|e| panic!("{name}: ping: {e:?}"));
    let key = format!("{}/{}", crate::biz::new_id(), crate::biz::new_id());
    let thumb = format!("{key}.thumb");
    assert!(
        store.get(&key).await.expect("get missing").is_none(),
        "{name}"
    );
    store
        .put(&key, Bytes::from_static(b"photo"))
        .await
        .expect("put");
    store
        .put(&thumb, Bytes::from_static(b"thumb"))
        .await
        .expect("put thumb");
    assert_eq!(
        store.get(&key).await.expect("get").as_deref(),
        Some(&b"photo"[..]),
        "{name}"
    );

    let later = Utc::now() + chrono::Duration::seconds(5);
    let listed = store.list_older_than(later).await.expect("list");
    assert!(
        listed.contains(&key) && listed.contains(&thumb),
        "{name}: {listed:?}"
    );
    let earlier = Utc::now() - chrono::Duration::hours(1);
    assert!(
        !store
            .list_older_than(earlier)
            .await
            .expect("list")
            .contains(&key),
        "{name}"
    );

    store.delete(&key).await.expect("delete");
    store.delete(&key).await.expect("deleting twice is fine");
    assert!(
        store.get(&key).await.expect("get deleted").is_none(),
        "{name}"
    );
    store.delete(&thumb).await.expect("delete thumb");
}

#[tokio::test]
async fn fs_store_keeps_the_contract_and_its_root() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsBlobStore::new(dir.path().join("blobs")).expect("store");
    contract(&store, "fs").await;
    for bad in ["../escape", "/abs", "a/../../b", "", "a//b"] {
        assert!(
            store.put(bad, Bytes::new()).await.is_err(),
            "{bad:?} is refused"
        );
    }
}

/// Deleting a session's last blob removes its folder; a write into that session at the same
/// moment (a refused upload cleaning up while the next one stores, or a delete beside an
/// upload) must still land. Found by the `upload_multipart` fuzz target as a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_store_put_survives_the_session_folder_being_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let store = std::sync::Arc::new(FsBlobStore::new(dir.path()).expect("store"));
    let session = crate::biz::new_id();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let key = format!("{session}/{}", crate::biz::new_id());
            tokio::spawn(async move {
                for _ in 0..500 {
                    store.put(&key, Bytes::from_static(b"photo")).await?;
                    store.delete(&key).await?;
                }
                Ok::<(), crate::biz::BizError>(())
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .expect("joins")
            .expect("every put and delete succeeds");
    }
}

struct MotoServer {
    child: Child,
    port: u16,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Option<MotoServer> {
    let required = std::env::var("QRUPLOAD_TEST_S3").is_ok_and(|v| v == "1");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!(
                "skipping S3: moto_server unavailable ({e}); set QRUPLOAD_TEST_S3=1 to require it"
            );
            return None;
        }
        Err(e) => panic!("QRUPLOAD_TEST_S3=1 but moto_server cannot start: {e}"),
    };
    let server = MotoServer { child, port };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        // Creating the bucket doubles as the readiness probe.
        let created = client
            .put(format!("http://127.0.0.1:{port}/qrupload-test"))
            .send()
            .await;
        if created.is_ok_and(|r| r.status().is_success()) {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not come up on port {}", server.port);
}

#[tokio::test]
async fn s3_store_keeps_the_contract() {
    let Some(server) = moto().await else { return };
    let conf = S3Conf {
        endpoint: Some(format!("http://127.0.0.1:{}", server.port)),
        region: Some("us-east-1".into()),
        bucket: Some("qrupload-test".into()),
        path_style: true,
        access_key_id: Some(Secret::new("test")),
        secret_access_key: Some(Secret::new("test")),
        allow_http: true,
    };
    let store = S3BlobStore::new(&conf).expect("store");
    contract(&store, "s3").await;

    // A store that cannot be reached is unavailable, not an internal error.
    drop(server);
    let e = store
        .put("a/b", Bytes::new())
        .await
        .expect_err("server gone");
    assert!(matches!(e, crate::biz::BizError::Unavailable(_)), "{e:?}");
}
