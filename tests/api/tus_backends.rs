//! tus on the production backends: an upload begun on one instance and finished on another
//! (PostgreSQL + Redis, shared blob folder), and parts in S3 (moto_server).

use std::time::Duration;

use qrupload::conf::{BlobKind, BusKind, S3Conf, Secret};

use crate::{
    helpers::{
        Cluster, TestApp,
        backends::{bus, free_port, postgres_database, redis_url},
    },
    tus::{Tus, big_photo, cut_patch, multipart_sha, offset_at_least},
};

/// PostgreSQL + Redis: an upload begun on one instance is continued on another.
#[tokio::test]
async fn an_upload_begun_on_one_instance_finishes_on_another() {
    let (Some(database), Some(redis)) = (postgres_database().await, redis_url().await) else {
        return;
    };
    let cluster = Cluster::start(2, |c| {
        c.data.database.url = Secret::new(database.as_str());
        c.data.bus = bus(BusKind::Redis, &redis);
    })
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let tus_a = Tus::new(a).await;
    let tus_b = Tus {
        app: b,
        identifier: tus_a.identifier.clone(),
        token: tus_a.token.clone(),
    };
    let photo = big_photo();
    let url_a = tus_a.create(photo.len()).await;
    let sent = photo.len() / 3;
    cut_patch(a, &tus_a.token, &url_a, 0, photo, sent).await;
    let offset = offset_at_least(&tus_a, &url_a, sent as u64).await as usize;
    let url_b = b.url(url_a.trim_start_matches(&format!("http://{}", a.http)));
    assert_eq!(
        tus_b.offset(&url_b).await as usize,
        offset,
        "B sees what A received"
    );
    let res = tus_b.patch(&url_b, offset, &photo[offset..]).await;
    assert_eq!(res.status(), 204, "{:?}", res.text().await);
    let images = tus_a.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0]["sha256"].as_str(),
        Some(multipart_sha(a, photo).await.as_str())
    );
}

/// moto_server, an S3-compatible server, on a free port: required when `QRUPLOAD_TEST_S3=1`.
struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn moto() -> Option<Moto> {
    let required = std::env::var("QRUPLOAD_TEST_S3").is_ok_and(|v| v == "1");
    let port = free_port();
    let child = match std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("skipping S3: moto_server unavailable ({e})");
            return None;
        }
        Err(e) => panic!("QRUPLOAD_TEST_S3=1 but moto_server cannot start: {e}"),
    };
    let server = Moto(child, port);
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let created = client
            .put(format!("http://127.0.0.1:{port}/qrupload-tus"))
            .send()
            .await;
        if created.is_ok_and(|r| r.status().is_success()) {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not come up");
}

#[tokio::test]
async fn parts_live_in_s3_and_a_cut_upload_resumes_there() {
    let Some(server) = moto().await else { return };
    let endpoint = format!("http://127.0.0.1:{}", server.1);
    let app = TestApp::spawn_with(|c| {
        c.data.blob.kind = BlobKind::S3;
        c.data.blob.s3 = S3Conf {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            bucket: Some("qrupload-tus".into()),
            path_style: true,
            access_key_id: Some(Secret::new("test")),
            secret_access_key: Some(Secret::new("test")),
            allow_http: true,
        };
    })
    .await;
    let tus = Tus::new(&app).await;
    let photo = big_photo();
    let url = tus.create(photo.len()).await;
    let sent = photo.len() / 2;
    cut_patch(&app, &tus.token, &url, 0, photo, sent).await;
    let offset = offset_at_least(&tus, &url, sent as u64).await as usize;
    assert_eq!(
        tus.patch(&url, offset, &photo[offset..]).await.status(),
        204
    );
    let images = tus.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0]["sha256"].as_str(),
        Some(multipart_sha(&app, photo).await.as_str())
    );
}
