//! Every error of the upload routes: each answers its documented status and leaves no image
//! row and no blob behind.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use qrupload::{api::image::v1 as pb, biz::imaging::testdata, conf::ByteSize};
use serde_json::Value;

use crate::helpers::{Caller, TestApp, jpeg};

async fn image_count(app: &TestApp, id: &str) -> usize {
    let res = app.get_session(id, 1).await;
    let body: Value = res.json().await.expect("json");
    body["image_count"].as_u64().expect("count") as usize
}

async fn assert_error(res: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(res.status().as_u16(), status);
    let body: Value = res.json().await.expect("error JSON");
    assert_eq!(body["code"], status);
    assert_eq!(body["reason"], reason, "{body}");
}

#[tokio::test]
async fn tokens_guard_the_upload_routes() {
    let app = TestApp::spawn().await;
    let (a, token_a) = app.create_session(1).await;
    let (b, _) = app.create_session(1).await;
    let id_a = a["identifier"].as_str().expect("id");
    let id_b = b["identifier"].as_str().expect("id");

    // No token: 401.
    let res = app
        .client
        .get(app.url(&format!("/v1/api/upload-sessions/{id_a}/upload-info")))
        .send()
        .await
        .expect("req");
    assert_error(res, 401, "UNAUTHENTICATED").await;
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id_a}/images")))
        .body("x")
        .send()
        .await
        .expect("req");
    assert_error(res, 401, "UNAUTHENTICATED").await;
    // Wrong token, another session's token, unknown identifier: the same 404.
    for (id, token) in [
        (id_a, "wrong"),
        (id_b, token_a.as_str()),
        ("AAAAAAAAAAAAAAAAAAAAAA", token_a.as_str()),
    ] {
        let res = app
            .upload(id, token, vec![("a.jpg", jpeg(8, 8))], None)
            .await;
        assert_error(res, 404, "NOT_FOUND").await;
    }
    // The phone's token cannot watch or complete: those take the member.
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id_a}/complete")))
        .bearer_auth(&token_a)
        .send()
        .await
        .expect("req");
    assert_error(res, 400, "INVALID_ARGUMENT").await;
    assert_eq!(app.blob_count(), 0);
}

#[tokio::test]
async fn bad_files_are_refused_and_leave_nothing() {
    let app = TestApp::spawn_with(|c| c.upload.max_image_bytes = ByteSize(1 << 20)).await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("id");

    // Not an image, whatever the name says.
    let res = app
        .upload(
            id,
            &token,
            vec![("photo.jpg", b"<html><script>alert(1)</script>".to_vec())],
            None,
        )
        .await;
    assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let res = app
        .upload(id, &token, vec![("x.jpg", b"%PDF-1.7\n".to_vec())], None)
        .await;
    assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let res = app
        .upload(id, &token, vec![("empty.jpg", Vec::new())], None)
        .await;
    assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    // A header that claims 30000×30000: refused before decoding.
    let res = app
        .upload(
            id,
            &token,
            vec![("huge.png", testdata::png_header_claiming(30_000, 30_000))],
            None,
        )
        .await;
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    // A truncated JPEG.
    let mut truncated = jpeg(64, 64);
    truncated.truncate(truncated.len() / 2);
    let res = app
        .upload(id, &token, vec![("cut.jpg", truncated)], None)
        .await;
    assert_error(res, 422, "UNPROCESSABLE_IMAGE").await;
    // All or nothing: a good file next to a bad one keeps neither.
    let res = app
        .upload(
            id,
            &token,
            vec![
                ("good.jpg", jpeg(32, 32)),
                ("bad.jpg", b"MZ\x90\x00".to_vec()),
            ],
            None,
        )
        .await;
    assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    // Not multipart at all.
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/images")))
        .bearer_auth(&token)
        .body(jpeg(8, 8))
        .send()
        .await
        .expect("req");
    assert_error(res, 400, "INVALID_ARGUMENT").await;

    assert_eq!(image_count(&app, id).await, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.blob_count(), 0, "no blob left behind");
}

#[tokio::test]
async fn an_oversized_file_is_cut_off_not_read_to_the_end() {
    let app = TestApp::spawn_with(|c| c.upload.max_image_bytes = ByteSize(1 << 20)).await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("id");

    // A 64 MiB part, produced lazily; count how much the server pulled before answering.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let boundary = "qruploadboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    );
    let chunks = std::iter::once(head.into_bytes()).chain((0..1024).map(|_| vec![0xAB; 64 * 1024]));
    let body = futures::stream::iter(chunks).then(move |chunk| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(chunk)
        }
    });
    use futures::StreamExt;
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/images")))
        .bearer_auth(&token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    // The server answers 413 and closes; the client may see the answer or a reset.
    if let Ok(res) = res {
        assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    }
    let pulled = sent.load(Ordering::SeqCst);
    assert!(
        pulled < 16 * 1024 * 1024,
        "the server stopped reading early ({pulled} bytes pulled of 64 MiB)"
    );
    assert_eq!(image_count(&app, id).await, 0);
}

#[tokio::test]
async fn quota_completion_idempotency_and_deletes() {
    let app = TestApp::spawn().await;
    let mut grpc = app.grpc_client().await;
    let created = grpc
        .create_upload_session(pb::CreateUploadSessionRequest {
            member_id: 1,
            ttl_seconds: None,
            max_images: Some(2),
        })
        .await
        .expect("create")
        .into_inner();
    let id = created.identifier.as_str();
    let token = created.upload_token.as_str();

    // A retried upload with the same Idempotency-Key: one image, the same answer.
    let first = app
        .upload(id, token, vec![("a.jpg", jpeg(20, 20))], Some("retry-1"))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = app
        .upload(id, token, vec![("a.jpg", jpeg(20, 20))], Some("retry-1"))
        .await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["images"][0]["id"], again["images"][0]["id"]);
    assert_eq!(image_count(&app, id).await, 1);

    // Quota: two images at most; a request of two when one is left keeps neither.
    let res = app
        .upload(
            id,
            token,
            vec![("b.jpg", jpeg(8, 8)), ("c.jpg", jpeg(8, 8))],
            None,
        )
        .await;
    assert_error(res, 429, "QUOTA_EXCEEDED").await;
    let res = app
        .upload(id, token, vec![("b.jpg", jpeg(8, 8))], None)
        .await;
    assert_eq!(res.status(), 201);
    let second: Value = res.json().await.expect("json");
    assert_eq!(second["images"][0]["position"], 2);
    let res = app
        .upload(id, token, vec![("c.jpg", jpeg(8, 8))], None)
        .await;
    assert_error(res, 429, "QUOTA_EXCEEDED").await;

    // The phone deletes one; the owner deletes the other; unknown ids are 404.
    let image_a = first["images"][0]["id"].as_str().expect("id");
    let image_b = second["images"][0]["id"].as_str().expect("id");
    let res = app.delete_image(id, image_a, Caller::Phone(token)).await;
    assert_eq!(res.status(), 204);
    let res = app.delete_image(id, image_b, Caller::Member(2)).await;
    assert_error(res, 404, "NOT_FOUND").await;
    let res = app.delete_image(id, image_b, Caller::Member(1)).await;
    assert_eq!(res.status(), 204);
    let res = app.delete_image(id, image_b, Caller::Member(1)).await;
    assert_error(res, 404, "NOT_FOUND").await;
    let gone = app
        .client
        .get(app.url(&format!("/v1/api/images/{image_a}")))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    assert_eq!(image_count(&app, id).await, 0);
    assert_eq!(app.blob_count(), 0);

    // After completion: 409 for the phone.
    let res = app.complete(id, 1).await;
    assert_eq!(res.status(), 200);
    let res = app
        .upload(id, token, vec![("d.jpg", jpeg(8, 8))], None)
        .await;
    assert_error(res, 409, "SESSION_CLOSED").await;
    let res = app.upload_info(id, token).await;
    assert_error(res, 409, "SESSION_CLOSED").await;
}

#[tokio::test]
async fn session_bytes_quota() {
    let app = TestApp::spawn_with(|c| c.upload.max_session_bytes = ByteSize(3000)).await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("id");
    let big = jpeg(256, 256);
    assert!(big.len() > 3000);
    let res = app.upload(id, &token, vec![("a.jpg", big)], None).await;
    assert_error(res, 429, "QUOTA_EXCEEDED").await;
    assert_eq!(image_count(&app, id).await, 0);
}

#[tokio::test]
async fn create_session_validates_member_id() {
    let app = TestApp::spawn().await;
    for body in [
        serde_json::json!({}),
        serde_json::json!({ "member_id": -1 }),
        serde_json::json!({ "member_id": 4_294_967_296u64 }),
        serde_json::json!({ "member_id": "x" }),
        serde_json::json!({ "member_id": 1.5 }),
    ] {
        let res = app
            .client
            .post(app.url("/v1/api/upload-sessions"))
            .json(&body)
            .send()
            .await
            .expect("req");
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.expect("json");
        assert_eq!(err["metadata"]["field"], "member_id");
    }
    let res = app
        .client
        .post(app.url("/v1/api/upload-sessions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("req");
    assert_error(res, 400, "INVALID_ARGUMENT").await;
    // The same body without the JSON type is refused before it is read (SPEC: 415), so a
    // cross-site `<form enctype="text/plain">` cannot create a session.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/json; boundary=x"),
    ] {
        let mut req = app
            .client
            .post(app.url("/v1/api/upload-sessions"))
            .body(r#"{"member_id":1}"#);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let res = req.send().await.expect("req");
        assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    }
    let res = app
        .client
        .post(app.url("/v1/api/upload-sessions"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"member_id":1,"pad":"{}"}}"#,
            "x".repeat(70 * 1024)
        ))
        .send()
        .await
        .expect("req");
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
}

/// `server.http.server_timing` on: a stored upload answers with each stage's time, in the
/// order the stages run, each within the total. Off (the default): no such header.
#[tokio::test]
async fn uploads_tell_their_stage_times_only_when_asked() {
    let app = TestApp::spawn_with(|c| c.server.http.server_timing = true).await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("id");
    let res = app
        .upload(id, &token, vec![("a.jpg", jpeg(40, 30))], None)
        .await;
    assert_eq!(res.status(), 201);
    let header = res
        .headers()
        .get("server-timing")
        .expect("a Server-Timing header")
        .to_str()
        .expect("ASCII")
        .to_owned();
    let stages: Vec<(String, f64)> = header
        .split(", ")
        .map(|entry| {
            let (name, dur) = entry.split_once(";dur=").expect("name;dur=MS");
            (name.to_owned(), dur.parse().expect("milliseconds"))
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["check", "body", "clean", "blobs", "db", "bus", "total"],
        "{header}"
    );
    let total = stages.last().expect("total").1;
    assert!(
        stages.iter().all(|(_, ms)| *ms >= 0.0 && *ms <= total),
        "every stage is within the total: {header}"
    );
    // A refused upload has no stages to tell.
    let res = app
        .upload(id, &token, vec![("a.txt", b"not an image".to_vec())], None)
        .await;
    assert_eq!(res.status(), 415);
    assert!(res.headers().get("server-timing").is_none());

    let app = TestApp::spawn().await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("id");
    let res = app
        .upload(id, &token, vec![("a.jpg", jpeg(40, 30))], None)
        .await;
    assert_eq!(res.status(), 201);
    assert!(
        res.headers().get("server-timing").is_none(),
        "off by default"
    );
}
