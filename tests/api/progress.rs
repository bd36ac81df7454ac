//! The `progress` event: uploads in flight, live on the desktop (SSE) and for services (gRPC),
//! for tus and multipart uploads alike; coalesced, never stored, never a new version.

use std::time::{Duration, Instant};

use futures::StreamExt;
use qrupload::api::image::v1 as pb;

use crate::{
    helpers::{Event, SseClient, TestApp, jpeg},
    tus::Tus,
};

async fn next_progress(watcher: &mut SseClient) -> Event {
    loop {
        let event = watcher
            .next_within(Duration::from_secs(10))
            .await
            .expect("a progress event");
        if event.event == "progress" {
            return event;
        }
    }
}

#[tokio::test]
async fn a_multipart_upload_reports_progress_named_for_its_request() {
    let app = TestApp::spawn().await;
    let (session, token) = app.create_session(4).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(&app, id, 4).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    // A body that takes a while: progress shows while it arrives.
    let mut body =
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
            .to_vec();
    body.extend(jpeg(64, 48));
    body.extend_from_slice(b"\r\n--B--\r\n");
    let length = body.len();
    let pieces: Vec<Vec<u8>> = body
        .chunks(length.div_ceil(8))
        .map(<[u8]>::to_vec)
        .collect();
    let slow = futures::stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(piece)
    });
    let upload = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/images")))
        .bearer_auth(&token)
        .header("Content-Type", "multipart/form-data; boundary=B")
        .header("Content-Length", length.to_string())
        .body(reqwest::Body::wrap_stream(slow))
        .send();
    let (res, first) = tokio::join!(upload, next_progress(&mut watcher));
    assert_eq!(res.expect("upload").status(), 201);
    assert_eq!(first.id, None);
    let data = first.json();
    assert_eq!(data["identifier"], id);
    let files = data["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 1, "{data}");
    assert!(
        files[0]["upload_id"]
            .as_str()
            .is_some_and(|u| u.starts_with("request-"))
    );
    assert_eq!(
        files[0]["total"], length as u64,
        "total from Content-Length"
    );
    // The request ends: one event with no files.
    loop {
        let event = next_progress(&mut watcher).await;
        if event.json()["files"]
            .as_array()
            .is_some_and(|f| f.is_empty())
        {
            break;
        }
    }
}

#[tokio::test]
async fn many_small_patches_are_coalesced() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let mut watcher = SseClient::watch(&app, &tus.identifier, 1).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    let photo = jpeg(120, 90);
    let url = tus.create(photo.len()).await;
    let pieces = 40;
    let step = photo.len().div_ceil(pieces);
    let started = Instant::now();
    for at in (0..photo.len()).step_by(step) {
        let end = (at + step).min(photo.len());
        assert_eq!(tus.patch(&url, at, &photo[at..end]).await.status(), 204);
    }
    let mut events = 0u32;
    loop {
        let event = next_progress(&mut watcher).await;
        events += 1;
        if event.json()["files"]
            .as_array()
            .is_some_and(|f| f.is_empty())
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    // At most one event per 250 ms, plus the first one and the final one.
    let allowed = (elapsed.as_millis() / 250) as u32 + 2;
    assert!(
        events <= allowed && events < pieces as u32,
        "{events} events for {pieces} PATCHes over {elapsed:?}"
    );
}

#[tokio::test]
async fn watch_images_carries_progress() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let mut client = app.grpc_client().await;
    let mut watch = client
        .watch_images(pb::WatchImagesRequest {
            member_id: 1,
            identifier: tus.identifier.clone(),
            last_version: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("initial event").expect("ok");
    let version = first.version;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    assert_eq!(tus.patch(&url, 0, &photo[..300]).await.status(), 204);
    let upload_id = url.rsplit('/').next().expect("id").to_owned();
    let progress = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = watch.next().await.expect("event").expect("ok");
            if let Some(p) = e.progress
                && p.files.iter().any(|f| f.received == 300)
            {
                assert_eq!(e.version, version, "progress is not a change");
                assert!(e.session.is_none() && e.images.is_empty());
                return p;
            }
        }
    })
    .await
    .expect("a progress event");
    assert_eq!(progress.identifier, tus.identifier);
    assert_eq!(progress.files[0].upload_id, upload_id);
    assert_eq!(progress.files[0].total, Some(photo.len() as u64));
}
