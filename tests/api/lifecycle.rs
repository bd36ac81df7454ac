//! Health, pages, tracing, expiry and shutdown.

use std::time::Duration;

use qrupload::api::image::v1 as pb;
use serde_json::Value;

use crate::helpers::{SseClient, TestApp, logs::logs};

#[tokio::test]
async fn health_metrics_pages_and_json_errors() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // OpenMetrics names the family without `_total`; its sample carries it.
    assert!(metrics.contains("# TYPE qrupload_db_snapshot_reads counter"));
    assert!(metrics.contains("\nqrupload_db_snapshot_reads_total "));

    let res = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["reason"], "NOT_FOUND");
    let res = app
        .client
        .delete(app.url("/v1/api/upload-sessions"))
        .send()
        .await
        .expect("405");
    assert_eq!(res.status(), 405);
    assert!(res.json::<Value>().await.is_ok());

    for path in ["/", "/m/AAAAAAAAAAAAAAAAAAAAAA"] {
        let res = app.client.get(app.url(path)).send().await.expect("page");
        assert_eq!(res.status(), 200);
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        let html = res.text().await.expect("html");
        assert!(html.contains("/assets/"));
    }
    for asset in ["desktop.js", "mobile.js", "style.css"] {
        let res = app
            .client
            .get(app.url(&format!("/assets/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), 200);
    }
}

#[tokio::test]
async fn traceparent_becomes_the_server_span_trace_id() {
    let app = TestApp::spawn().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);

    let grpc_trace = "0af7651916cd43dd8448eb211c80319c";
    let mut client = app.grpc_client().await;
    let mut request = tonic::Request::new(pb::CreateUploadSessionRequest {
        member_id: 1,
        ttl_seconds: None,
        max_images: None,
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{grpc_trace}-b7ad6b7169203331-01")
            .parse()
            .expect("metadata"),
    );
    client.create_upload_session(request).await.expect("create");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = logs();
    let http_line = logs
        .lines()
        .find(|l| l.contains(trace_id) && l.contains("/healthz"))
        .unwrap_or_else(|| panic!("a log line with the HTTP trace id"));
    let line: Value = serde_json::from_str(http_line).expect("JSON log line");
    assert_eq!(line["span"]["trace_id"], trace_id);
    assert!(
        line["span"]["span_id"]
            .as_str()
            .is_some_and(|s| s.len() == 16 && s != "00f067aa0ba902b7")
    );
    assert!(
        logs.lines()
            .any(|l| l.contains(grpc_trace) && l.contains("upload session created")),
        "the usecase's log line inside the gRPC request carries the caller's trace id"
    );
}

#[tokio::test]
async fn sessions_expire_on_time_and_watchers_get_the_final_event() {
    let app = TestApp::spawn().await;
    let created = app.grpc_session(5, Some(1)).await;
    let mut sse = SseClient::watch(&app, &created.identifier, 5).await;
    let first = sse.next().await.expect("session");
    assert_eq!(first.json()["status"], "open");
    let last = loop {
        let e = sse
            .next_within(Duration::from_secs(10))
            .await
            .expect("final event arrives");
        if e.event == "session" {
            break e;
        }
    };
    assert_eq!(last.json()["status"], "expired");
    let _final_snapshot = sse.next().await;
    assert!(
        sse.next_within(Duration::from_secs(5)).await.is_none(),
        "stream closed"
    );
    let res = app
        .client
        .get(app.url(&format!(
            "/v1/api/sse/events?event=upload_by_qr&member_id=5&identifier={}",
            created.identifier
        )))
        .send()
        .await
        .expect("reconnect");
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn stops_within_the_drain_time_while_streams_are_open() {
    let mut app = TestApp::spawn_with(|c| c.server.shutdown_grace = Duration::from_secs(2)).await;
    let (id, _) = app.open_session(1).await;
    let mut sse = SseClient::watch(&app, &id, 1).await;
    sse.next().await.expect("session event");
    let mut client = app.grpc_client().await;
    let mut watch = client
        .watch_images(pb::WatchImagesRequest {
            member_id: 1,
            identifier: id.clone(),
            last_version: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("first").expect("event");

    app.stop();
    let task = app.task.take().expect("running");
    // Bounded by the drain time (2 s) with room for a slow machine; hangs would fail here.
    let stopped = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(stopped.is_ok(), "the app stopped within its drain time");
    // Both streams were closed by the server, so clients reconnect elsewhere.
    let _snapshot = sse.next_within(Duration::from_secs(1)).await;
    assert!(sse.next_within(Duration::from_secs(1)).await.is_none());
    assert!(matches!(watch.message().await, Ok(None) | Err(_)));
}

#[tokio::test]
async fn retention_and_orphan_sweeps_remove_what_nobody_points_at() {
    let app = TestApp::spawn_with(|c| c.upload.retention = Duration::ZERO).await;
    let usecase = &app.services.usecase;
    let mut client = app.grpc_client().await;

    // A session that will expire uncompleted, with one image.
    let short = app.grpc_session(1, Some(1)).await;
    let res = app
        .upload(
            &short.identifier,
            &short.upload_token,
            vec![("a.jpg", crate::helpers::jpeg(16, 16))],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    // A completed session, which retention keeps.
    let (kept, token) = app.create_session(1).await;
    let kept_id = kept["identifier"].as_str().expect("id");
    let res = app
        .upload(
            kept_id,
            &token,
            vec![("b.jpg", crate::helpers::jpeg(16, 16))],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    app.complete(kept_id, 1).await;
    assert_eq!(app.blob_count(), 4);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(usecase.sweep_retention().await.expect("retention"), 1);
    assert_eq!(
        app.blob_count(),
        2,
        "the expired session's image and thumbnail are gone"
    );
    let res = client
        .get_upload_session(pb::GetUploadSessionRequest {
            member_id: 1,
            identifier: short.identifier.clone(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(res.code(), tonic::Code::NotFound);

    // A blob with no row (a crash between blob and row) is swept; rows keep theirs.
    let stray = app
        .dir
        .path()
        .join("blobs")
        .join(kept_id)
        .join("AAAAAAAAAAAAAAAAAAAAAA");
    std::fs::write(&stray, b"orphan").expect("write stray blob");
    assert_eq!(
        usecase
            .sweep_orphans(Duration::from_secs(3600))
            .await
            .expect("sweep"),
        0,
        "too young to sweep"
    );
    assert_eq!(
        usecase.sweep_orphans(Duration::ZERO).await.expect("sweep"),
        1
    );
    assert!(!stray.exists());
    assert_eq!(app.blob_count(), 2);
}
