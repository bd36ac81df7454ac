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

/// A put creates each blob under its own name and never replaces one: a second put onto a
/// taken key fails and the first blob stays whole. Nothing but the blobs is left in the folder.
#[tokio::test]
async fn fs_put_writes_each_blob_once_under_its_own_name() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsBlobStore::new(dir.path()).expect("store");
    let photo = vec![7u8; 256 * 1024];
    store
        .put_all(vec![
            ("session/image".to_owned(), Bytes::from(photo.clone())),
            (
                "session/image.thumb".to_owned(),
                Bytes::from_static(b"thumb"),
            ),
        ])
        .await
        .expect("put both");
    let folder = dir.path().join("session");
    assert_eq!(std::fs::read(folder.join("image")).expect("image"), photo);
    assert_eq!(
        std::fs::read(folder.join("image.thumb")).expect("thumbnail"),
        b"thumb"
    );
    assert!(
        store
            .put("session/image", Bytes::from_static(b"other"))
            .await
            .is_err(),
        "a taken key is refused"
    );
    assert_eq!(
        std::fs::read(folder.join("image")).expect("image"),
        photo,
        "the first blob is untouched"
    );
    assert_eq!(
        folder_entries(&folder),
        vec!["image".to_owned(), "image.thumb".to_owned()]
    );
}

/// The syncs a put runs at once: every file, its folder, and when the put made the folder,
/// the folders above it up to the root (their entries changed too); an image and its
/// thumbnail share their folder's sync.
#[test]
fn fs_put_syncs_every_file_and_every_folder_it_changed() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().to_owned();
    let folder = root.join("session");
    let blobs = |names: &[&str]| -> Vec<(std::path::PathBuf, Bytes)> {
        names
            .iter()
            .map(|n| (folder.join(n), Bytes::from_static(b"x")))
            .collect()
    };
    let first = super::blob_fs::create_all(&root, &blobs(&["a", "a.thumb"])).expect("create");
    assert_eq!(first.files.len(), 2);
    assert_eq!(
        first.folders,
        vec![folder.clone(), root.clone()],
        "the new folder and the root"
    );
    let second = super::blob_fs::create_all(&root, &blobs(&["b", "b.thumb"])).expect("create");
    assert_eq!(second.files.len(), 2);
    assert_eq!(
        second.folders,
        vec![folder.clone()],
        "the folder was already there"
    );
}

/// A put of several blobs that fails on one of them (its name is taken by a folder) leaves
/// none of the files it created.
#[tokio::test]
async fn fs_put_all_that_fails_leaves_none_of_its_blobs() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsBlobStore::new(dir.path()).expect("store");
    let folder = dir.path().join("session");
    std::fs::create_dir_all(folder.join("image.thumb")).expect("folder in the way");
    assert!(
        store
            .put_all(vec![
                ("session/image".to_owned(), Bytes::from_static(b"photo")),
                (
                    "session/image.thumb".to_owned(),
                    Bytes::from_static(b"thumb")
                ),
            ])
            .await
            .is_err(),
        "the thumbnail's name is taken"
    );
    assert_eq!(
        folder_entries(&folder),
        vec!["image.thumb".to_owned()],
        "the image written before the failure is gone"
    );
}

/// A put that fails (here its name is taken by a folder) leaves nothing behind, and nothing
/// under the blob's name that a reader would take for it.
#[tokio::test]
async fn fs_put_that_fails_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsBlobStore::new(dir.path()).expect("store");
    let blocker = dir.path().join("session").join("image");
    std::fs::create_dir_all(&blocker).expect("folder in the way");
    std::fs::write(blocker.join("x"), b"x").expect("not empty");
    assert!(
        store
            .put("session/image", Bytes::from_static(b"photo"))
            .await
            .is_err(),
        "a folder in the way fails the put"
    );
    assert_eq!(
        folder_entries(&dir.path().join("session")),
        vec!["image".to_owned()],
        "only the folder that was in the way"
    );
    assert!(blocker.is_dir());
}

fn folder_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
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
