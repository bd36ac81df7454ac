//! The live hub on its own: one slot per watcher, shared frames, feeds that go with their
//! last watcher.

use std::{sync::Arc, time::Duration};

use qrupload::{
    biz::{Caller, ImageUsecase, UploadFile, UploadLimits, UploadTokenKey, imaging::testdata},
    data::{FsBlobStore, MemoryBus, SqlSessionRepo, connect, migrate_up},
    metrics::Metrics,
    service::hub::{SessionHub, SseFormat, WatchEvent},
};

async fn hub() -> (
    SessionHub,
    Arc<ImageUsecase>,
    Arc<Metrics>,
    tempfile::TempDir,
) {
    let db = connect("sqlite::memory:", 1).await.expect("sqlite");
    migrate_up(&db).await.expect("migrate");
    let metrics = Arc::new(Metrics::default());
    let dir = tempfile::tempdir().expect("dir");
    let usecase = Arc::new(ImageUsecase::new(
        Arc::new(SqlSessionRepo::new(db, metrics.clone())),
        Arc::new(FsBlobStore::new(dir.path()).expect("blobs")),
        Arc::new(MemoryBus::new()),
        UploadLimits {
            session_ttl: Duration::from_secs(600),
            max_session_ttl: Duration::from_secs(600),
            retention: Duration::from_secs(600),
            max_images: 30,
            max_image_bytes: 1 << 20,
            max_session_bytes: 1 << 30,
            max_pixels: 1_000_000,
            thumbnail_size: 32,
            max_concurrent_decodes: 1,
        },
        UploadTokenKey::new([7; 32]),
    ));
    let format = SseFormat {
        default_event: qrupload::biz::EventName::new("upload_by_qr").expect("a safe event name"),
        retry_ms: 2000,
    };
    let hub = SessionHub::start(
        usecase.clone(),
        metrics.clone(),
        format,
        Duration::from_secs(3600),
    );
    (hub, usecase, metrics, dir)
}

#[tokio::test]
async fn a_stalled_watcher_skips_to_the_latest_snapshot() {
    let (hub, usecase, metrics, _dir) = hub().await;
    let (session, token) = usecase.create_session(1, None, None).await.expect("create");
    let (mut watch, first) = hub.watch(&session.identifier).await.expect("watch");
    assert_eq!(first.version(), 1);

    // Four changes land while this watcher reads nothing.
    for n in 0..4u32 {
        let caller = Caller::UploadToken(token.clone());
        let mut upload = usecase
            .begin_upload(&caller, &session.identifier, None)
            .await
            .expect("begin");
        let bytes = testdata::jpeg_with_exif(8 + n, 8, 1, false).into();
        usecase
            .store_file(&mut upload, UploadFile { bytes })
            .await
            .expect("store");
        usecase.commit(upload).await.expect("commit");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // It wakes to the latest snapshot only: one slot, nothing queued behind it.
    let WatchEvent::Changed(latest) = watch.next().await else {
        panic!("expected a change");
    };
    assert_eq!(latest.version(), 5);
    assert_eq!(latest.images.len(), 4);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), watch.next())
            .await
            .is_err(),
        "no older snapshot waits behind the latest"
    );
    assert_eq!(metrics.watchers(), 1);
    drop(watch);
    assert_eq!(metrics.watchers(), 0);
    assert_eq!(
        hub.watched_sessions(),
        0,
        "the feed goes with its last watcher"
    );
}

#[tokio::test]
async fn frames_follow_the_sse_format() {
    let (hub, usecase, _metrics, _dir) = hub().await;
    let (session, _) = usecase.create_session(3, None, None).await.expect("create");
    let (_watch, snapshot) = hub.watch(&session.identifier).await.expect("watch");
    let text = String::from_utf8(snapshot.sse_frames.to_vec()).expect("utf-8");
    let expected_tail = "id: 1\nevent: upload_by_qr\nretry: 2000\ndata: []\n\n";
    assert!(
        text.starts_with("id: 1\nevent: session\ndata: {\"identifier\":"),
        "{text}"
    );
    assert!(text.ends_with(expected_tail), "{text}");
    assert_eq!(text.matches("\n\n").count(), 2, "exactly two events");
}

/// `qrupload_bus_changes_received_total` as `/metrics` shows it.
fn doorbells(metrics: &Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("qrupload_bus_changes_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the doorbell counter")
}

async fn upload_one(usecase: &ImageUsecase, identifier: &str, token: &str, width: u32) {
    let caller = Caller::UploadToken(token.to_owned());
    let mut upload = usecase
        .begin_upload(&caller, identifier, None)
        .await
        .expect("begin");
    let bytes = testdata::jpeg_with_exif(width, 8, 1, false).into();
    usecase
        .store_file(&mut upload, UploadFile { bytes })
        .await
        .expect("store");
    usecase.commit(upload).await.expect("commit");
}

async fn next_change(watch: &mut qrupload::service::hub::Watch) -> u64 {
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a change within the safety timeout");
    match event {
        WatchEvent::Changed(snapshot) => snapshot.version(),
        _ => panic!("expected a change"),
    }
}

#[tokio::test]
async fn a_session_rings_here_only_while_someone_here_watches_it() {
    let (hub, usecase, metrics, _dir) = hub().await;
    let (s, s_token) = usecase.create_session(1, None, None).await.expect("create");
    let (t, t_token) = usecase.create_session(2, None, None).await.expect("create");
    let (mut first, _) = hub.watch(&s.identifier).await.expect("watch");
    let (mut second, _) = hub.watch(&s.identifier).await.expect("watch");
    assert_eq!(doorbells(&metrics), 0, "creating a session rang nobody");

    upload_one(&usecase, &s.identifier, &s_token, 8).await;
    assert_eq!(next_change(&mut first).await, 2);
    assert_eq!(next_change(&mut second).await, 2);
    assert_eq!(doorbells(&metrics), 1);

    // One of two watchers leaving keeps the session's doorbells coming.
    drop(first);
    upload_one(&usecase, &s.identifier, &s_token, 9).await;
    assert_eq!(next_change(&mut second).await, 3);
    assert_eq!(doorbells(&metrics), 2);

    // The last one leaving ends them: s changes, only t (watched now) rings.
    drop(second);
    let (mut other, _) = hub.watch(&t.identifier).await.expect("watch");
    upload_one(&usecase, &s.identifier, &s_token, 10).await;
    upload_one(&usecase, &t.identifier, &t_token, 11).await;
    assert_eq!(next_change(&mut other).await, 2);
    assert_eq!(doorbells(&metrics), 3, "s no longer rings on this instance");
}
