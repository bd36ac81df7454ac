//! The SSE stream as the seed's `EventSource` clients and the desktop page use it.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{SseClient, TestApp, exif_ifd0, has_other_metadata, jpeg};

#[tokio::test]
async fn seed_validation_answers_400_naming_the_field_and_404_for_strangers() {
    let app = TestApp::spawn().await;
    let (session, _) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("event=upload_by_qr&identifier=x", 400, Some("member_id")),
        (
            "event=upload_by_qr&member_id=&identifier=x",
            400,
            Some("member_id"),
        ),
        (
            "event=upload_by_qr&member_id=-1&identifier=x",
            400,
            Some("member_id"),
        ),
        (
            "event=upload_by_qr&member_id=4294967296&identifier=x",
            400,
            Some("member_id"),
        ),
        (
            "event=upload_by_qr&member_id=1%27%20OR%201=1&identifier=x",
            400,
            Some("member_id"),
        ),
        ("event=upload_by_qr&member_id=1", 400, Some("identifier")),
        ("member_id=1&identifier=x", 400, Some("event")),
        (
            "event=a%0D%0Adata:%20x&member_id=1&identifier=x",
            400,
            Some("event"),
        ),
        (
            "event=has%20space&member_id=1&identifier=x",
            400,
            Some("event"),
        ),
        (
            "event=upload_by_qr&member_id=1&identifier=AAAAAAAAAAAAAAAAAAAAAA",
            404,
            None,
        ),
        (
            "event=upload_by_qr&member_id=1&identifier=%27%3B%20DROP%20TABLE%20images",
            404,
            None,
        ),
    ];
    for (query, status, field) in cases {
        let res = app
            .client
            .get(app.url(&format!("/v1/api/sse/events?{query}")))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), *status, "{query}");
        let body: Value = res.json().await.expect("error JSON");
        assert_eq!(body["code"], *status, "{query}");
        if let Some(field) = field {
            assert_eq!(body["reason"], "INVALID_ARGUMENT");
            assert_eq!(body["metadata"]["field"], *field, "{query}");
        } else {
            assert_eq!(body["reason"], "NOT_FOUND");
        }
    }
    // Wrong member: the same 404 as an unknown identifier.
    let res = app
        .client
        .get(app.url(&format!(
            "/v1/api/sse/events?event=upload_by_qr&member_id=2&identifier={id}"
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 404);
    // member_id 0 is valid, as in the seed.
    let (zero, _) = app.create_session(0).await;
    let sse = SseClient::watch(&app, zero["identifier"].as_str().expect("id"), 0).await;
    assert_eq!(sse.status, 200);
}

#[tokio::test]
async fn upload_by_qr_flow_as_an_event_source_sees_it() {
    let app = TestApp::spawn().await;
    let (id, token) = app.open_session(1).await;

    // Connect: headers, then the session event and the snapshot, both with id = version.
    let mut sse = SseClient::watch(&app, &id, 1).await;
    let h = &sse.response_headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-encoding").is_none());
    let first = sse.next().await.expect("session event");
    assert_eq!(first.event, "session");
    assert_eq!(first.id.as_deref(), Some("1"));
    assert_eq!(first.json()["status"], "open");
    assert_eq!(first.json()["max_images"], 30);
    let snapshot = sse.next().await.expect("snapshot event");
    assert_eq!(snapshot.event, "upload_by_qr");
    assert_eq!(snapshot.id.as_deref(), Some("1"));
    assert_eq!(snapshot.retry, Some(2000));
    assert_eq!(snapshot.data, "[]");

    // The phone opens the page: "scanned" reaches the desktop.
    assert_eq!(app.upload_info(&id, &token).await.status(), 200);
    let scanned = sse.next().await.expect("status change");
    assert_eq!(
        (scanned.event.as_str(), scanned.id.as_deref()),
        ("session", Some("2"))
    );
    assert_eq!(scanned.json()["status"], "scanned");
    sse.next().await.expect("snapshot after status change");

    // Upload a 640×480 photo tagged orientation 6 with a GPS block.
    let photo = qrupload::biz::imaging::testdata::jpeg_with_exif(640, 480, 6, true);
    let res = app
        .upload(&id, &token, vec![("IMG_0001.jpg", photo)], None)
        .await;
    assert_eq!(res.status(), 201);
    let uploaded: Value = res.json().await.expect("upload JSON");
    let image = &uploaded["images"][0];
    let (event, list) = sse
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert_eq!(event.id.as_deref(), Some("3"));
    assert_eq!(list[0], *image);
    for key in [
        "id",
        "identifier",
        "url",
        "thumbnail_url",
        "content_type",
        "width",
        "height",
        "size",
        "sha256",
        "position",
        "created_at",
    ] {
        assert!(image.get(key).is_some(), "image JSON has {key}");
    }
    assert_eq!(image["position"], 1);
    assert_eq!(image["content_type"], "image/jpeg");
    // Displayed upright: orientation 6 turns 640×480 into 480×640.
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(480), Some(640))
    );

    // The stored copy: no GPS, no EXIF beyond the orientation, same dimensions as reported.
    let res = app
        .client
        .get(app.url(image["url"].as_str().expect("url")))
        .send()
        .await
        .expect("image");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        res.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("max-age=")
    );
    let etag = res.headers()["etag"].clone();
    let stored = res.bytes().await.expect("bytes");
    assert_eq!(stored.len() as u64, image["size"].as_u64().expect("size"));
    let tags = exif_ifd0(&stored).unwrap_or_default();
    assert!(
        tags.iter().all(|(tag, _)| *tag == 0x0112),
        "only the orientation may remain: {tags:?}"
    );
    assert!(!tags.iter().any(|(tag, _)| *tag == 0x8825), "no GPS IFD");
    assert!(!has_other_metadata(&stored));
    let decoded = image::load_from_memory(&stored).expect("decodes");
    let orientation = tags
        .iter()
        .find(|(t, _)| *t == 0x0112)
        .map_or(1, |(_, v)| *v);
    let (w, h) = if (5..=8).contains(&orientation) {
        (decoded.height(), decoded.width())
    } else {
        (decoded.width(), decoded.height())
    };
    assert_eq!((w, h), (480, 640), "displays upright");
    // Conditional GET.
    let res = app
        .client
        .get(app.url(image["url"].as_str().expect("url")))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(res.status(), 304);

    // Thumbnail: longest side 320, upright.
    let thumb = app
        .client
        .get(app.url(image["thumbnail_url"].as_str().expect("thumbnail_url")))
        .send()
        .await
        .expect("thumbnail")
        .bytes()
        .await
        .expect("bytes");
    let thumb = image::load_from_memory(&thumb).expect("thumbnail decodes");
    assert_eq!((thumb.width(), thumb.height()), (240, 320));

    // Reconnect with Last-Event-ID = current version: nothing until the next change.
    drop(sse);
    let query = format!("event=upload_by_qr&member_id=1&identifier={id}");
    let mut resumed = SseClient::connect(&app, &query, Some("3")).await;
    assert_eq!(resumed.status, 200);
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "no duplicate on resume"
    );
    // A stale id (or the query form on first connect) gets the current state at once.
    let mut stale = SseClient::connect(&app, &format!("{query}&last_event_id=2"), None).await;
    assert_eq!(
        stale.next().await.expect("session").id.as_deref(),
        Some("3")
    );

    // Complete: the final session event, the final snapshot, then the stream ends.
    let res = app.complete(&id, 1).await;
    assert_eq!(res.status(), 200);
    let last = resumed.next().await.expect("final session event");
    assert_eq!(
        (last.event.as_str(), last.id.as_deref()),
        ("session", Some("4"))
    );
    assert_eq!(last.json()["status"], "completed");
    let final_list = resumed.next().await.expect("final snapshot");
    assert_eq!(final_list.json().as_array().map(Vec::len), Some(1));
    assert!(
        resumed.next_within(Duration::from_secs(5)).await.is_none(),
        "stream closed"
    );

    // A reconnect to a finished session: 204, which stops EventSource.
    let res = app
        .client
        .get(app.url(&format!("/v1/api/sse/events?{query}")))
        .send()
        .await
        .expect("reconnect");
    assert_eq!(res.status(), 204);
    // Completing again answers the session again.
    let again = app.complete(&id, 1).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["version"], 4);
}

#[tokio::test]
async fn heartbeat_and_custom_event_names() {
    let app = TestApp::spawn_with(|c| {
        c.sse.heartbeat = Duration::from_millis(100);
        c.sse.retry = Duration::from_secs(5);
    })
    .await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut sse = SseClient::connect(
        &app,
        &format!("event=photos.v2:list&member_id=1&identifier={id}"),
        None,
    )
    .await;
    let _session = sse.next().await.expect("session");
    let snapshot = sse.next().await.expect("snapshot");
    assert_eq!(snapshot.event, "photos.v2:list");
    assert_eq!(snapshot.retry, Some(5000));
    let res = app
        .upload(id, &token, vec![("a.jpg", jpeg(32, 32))], None)
        .await;
    assert_eq!(res.status(), 201);
    loop {
        let e = sse
            .next_within(Duration::from_secs(5))
            .await
            .expect("event");
        if e.event == "photos.v2:list" && e.json().as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
    }
    // Idle: only heartbeats. Waits for two more of them (every 100 ms, so a loaded machine gets
    // up to 10 s) and fails on any event in between.
    let before = sse.heartbeats;
    for _ in 0..50 {
        if sse.heartbeats >= before + 2 {
            break;
        }
        let idle = sse.next_within(Duration::from_millis(200)).await;
        assert!(idle.is_none(), "unexpected event while idle: {idle:?}");
    }
    assert!(
        sse.heartbeats >= before + 2,
        "heartbeats: {}",
        sse.heartbeats - before
    );
}

#[tokio::test]
async fn a_thousand_watchers_cost_one_read_per_change() {
    // One member on one address: the abuse limits on streams are not what is measured here.
    let app = TestApp::spawn_with(|c| {
        c.limits.streams_per_member = 0;
        c.limits.streams_per_ip = 0;
    })
    .await;
    let (id, token) = app.open_session(1).await;

    let mut watchers = Vec::new();
    for _ in 0..1000 {
        watchers.push(SseClient::watch(&app, &id, 1).await);
    }
    for w in &mut watchers {
        w.snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
            .await;
    }
    let reads_before = app.metric("qrupload_db_snapshot_reads_total").await;
    let built_before = app.metric("qrupload_snapshots_built_total").await;
    assert_eq!(app.metric("qrupload_watchers").await, 1000.0);

    let res = app
        .upload(&id, &token, vec![("a.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), 201);
    let uploaded: Value = res.json().await.expect("json");
    let image_id = uploaded["images"][0]["id"].clone();
    let all = watchers.iter_mut().map(|w| {
        let image_id = image_id.clone();
        async move {
            w.snapshot_where(|l| {
                l.as_array()
                    .is_some_and(|a| a.len() == 1 && a[0]["id"] == image_id)
            })
            .await;
        }
    });
    futures::future::join_all(all).await;

    assert_eq!(
        app.metric("qrupload_db_snapshot_reads_total").await - reads_before,
        1.0
    );
    assert_eq!(
        app.metric("qrupload_snapshots_built_total").await - built_before,
        1.0
    );
}
