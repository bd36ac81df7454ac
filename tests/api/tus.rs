//! tus 1.0 over raw HTTP: creation, creation-with-upload, HEAD, PATCH in pieces, a connection
//! cut mid-PATCH, wrong offsets, termination, expiry, checksums, refusals, quotas, and a resume
//! through a second instance.

use std::{sync::OnceLock, time::Duration};

use base64::Engine;
use qrupload::conf::ByteSize;
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{SseClient, TestApp, jpeg};

/// A photo of a few MiB, so that its upload spans several server-side parts.
pub fn big_photo() -> &'static [u8] {
    static PHOTO: OnceLock<Vec<u8>> = OnceLock::new();
    PHOTO.get_or_init(|| jpeg(3200, 2400))
}

/// The little tus client these tests speak through.
pub struct Tus<'a> {
    pub app: &'a TestApp,
    pub identifier: String,
    pub token: String,
}

impl<'a> Tus<'a> {
    pub async fn new(app: &'a TestApp) -> Tus<'a> {
        let (session, token) = app.create_session(1).await;
        Tus {
            app,
            identifier: session["identifier"].as_str().expect("identifier").into(),
            token,
        }
    }

    pub fn endpoint(&self) -> String {
        self.app
            .url(&format!("/v1/api/upload-sessions/{}/tus/", self.identifier))
    }

    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
    }

    /// Creates an upload; returns its absolute URL.
    pub async fn create(&self, length: usize) -> String {
        let res = self
            .request(reqwest::Method::POST, &self.endpoint())
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata("photo.jpg"))
            .send()
            .await
            .expect("creation");
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
        self.location(&res)
    }

    pub fn location(&self, res: &reqwest::Response) -> String {
        let location = header(res, "location");
        assert!(
            location.starts_with("/v1/api/upload-sessions/"),
            "{location}"
        );
        self.app.url(&location)
    }

    pub async fn head(&self, url: &str) -> reqwest::Response {
        self.request(reqwest::Method::HEAD, url)
            .send()
            .await
            .expect("HEAD")
    }

    pub async fn offset(&self, url: &str) -> u64 {
        let res = self.head(url).await;
        assert_eq!(res.status(), 200);
        header(&res, "upload-offset").parse().expect("a number")
    }

    pub async fn patch(&self, url: &str, offset: usize, bytes: &[u8]) -> reqwest::Response {
        self.request(reqwest::Method::PATCH, url)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn images(&self) -> Vec<Value> {
        let res = self.app.upload_info(&self.identifier, &self.token).await;
        let body: Value = res.json().await.expect("json");
        body["images"].as_array().cloned().unwrap_or_default()
    }
}

pub fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{name} header missing"))
        .to_owned()
}

fn metadata(filename: &str) -> String {
    format!(
        "filename {},filetype {}",
        base64::engine::general_purpose::STANDARD.encode(filename),
        base64::engine::general_purpose::STANDARD.encode("image/jpeg")
    )
}

async fn error_reason(res: reqwest::Response) -> String {
    let body: Value = res.json().await.expect("error JSON");
    body["reason"].as_str().unwrap_or_default().to_owned()
}

/// The sha256 the service stores for these bytes when they come as one multipart file.
pub async fn multipart_sha(app: &TestApp, bytes: &[u8]) -> String {
    let (session, token) = app.create_session(2).await;
    let id = session["identifier"].as_str().expect("identifier");
    let res = app
        .upload(id, &token, vec![("p.jpg", bytes.to_vec())], None)
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    body["images"][0]["sha256"].as_str().expect("sha").into()
}

#[tokio::test]
async fn options_advertises_the_protocol_without_a_token() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, tus.endpoint())
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    assert_eq!(header(&res, "tus-version"), "1.0.0");
    assert_eq!(
        header(&res, "tus-extension"),
        "creation,creation-with-upload,termination,expiration,checksum"
    );
    assert_eq!(header(&res, "tus-checksum-algorithm"), "sha1,sha256");
    assert_eq!(header(&res, "tus-max-size"), (15u64 << 20).to_string());
}

#[tokio::test]
async fn a_request_without_tus_resumable_is_412_with_the_versions() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let res = app
        .client
        .post(tus.endpoint())
        .bearer_auth(&tus.token)
        .header("Upload-Length", "10")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 412);
    assert_eq!(header(&res, "tus-version"), "1.0.0");
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    assert_eq!(error_reason(res).await, "TUS_VERSION_UNSUPPORTED");
}

#[tokio::test]
async fn patches_in_pieces_make_the_same_image_as_multipart() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = big_photo();
    assert!(
        photo.len() > 2 << 20,
        "the photo spans parts: {}",
        photo.len()
    );

    let url = tus.create(photo.len()).await;
    let res = tus.head(&url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "upload-offset"), "0");
    assert_eq!(header(&res, "upload-length"), photo.len().to_string());
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert!(header(&res, "upload-metadata").starts_with("filename "));
    let expires = header(&res, "upload-expires");
    assert!(
        chrono::DateTime::parse_from_rfc2822(&expires).is_ok(),
        "{expires} is an HTTP date"
    );

    let cuts = [0, 1000, photo.len() / 2, photo.len()];
    for w in cuts.windows(2) {
        let res = tus.patch(&url, w[0], &photo[w[0]..w[1]]).await;
        assert_eq!(res.status(), 204, "{:?}", res.text().await);
        assert_eq!(header(&res, "upload-offset"), w[1].to_string());
        assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    }
    let images = tus.images().await;
    assert_eq!(images.len(), 1, "one image: {images:?}");
    assert_eq!(
        images[0]["sha256"].as_str(),
        Some(multipart_sha(&app, photo).await.as_str()),
        "the stored copy is what the multipart route stores for these bytes"
    );
    // HEAD after the finish keeps answering Offset = Length.
    assert_eq!(tus.offset(&url).await, photo.len() as u64);
    assert_eq!(app.metric("qrupload_tus_uploads_finished_total").await, 1.0);
}

#[tokio::test]
async fn a_post_with_a_method_override_is_a_patch() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    let res = tus
        .request(reqwest::Method::POST, &url)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(photo.clone())
        .send()
        .await
        .expect("POST as PATCH");
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset"), photo.len().to_string());
}

#[tokio::test]
async fn a_repeated_creation_with_the_same_client_id_gets_the_same_upload() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let metadata = format!(
        "{},client_id {}",
        metadata("p.jpg"),
        base64::engine::general_purpose::STANDARD.encode("file-1")
    );
    let create = || {
        tus.request(reqwest::Method::POST, &tus.endpoint())
            .header("Upload-Length", photo.len().to_string())
            .header("Upload-Metadata", metadata.clone())
            .send()
    };
    let first = create().await.expect("POST");
    assert_eq!(first.status(), 201);
    let url = tus.location(&first);
    assert_eq!(tus.patch(&url, 0, &photo[..200]).await.status(), 204);
    let again = create().await.expect("POST again");
    assert_eq!(again.status(), 201);
    assert_eq!(tus.location(&again), url, "the same upload");
    assert_eq!(header(&again, "upload-offset"), "200", "at its offset");
    assert_eq!(app.metric("qrupload_tus_uploads_created_total").await, 1.0);
    // Without a client_id every creation is a new upload.
    assert_ne!(tus.create(photo.len()).await, tus.create(photo.len()).await);
}

#[tokio::test]
async fn creation_with_upload_takes_the_whole_file_at_once() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let res = tus
        .request(reqwest::Method::POST, &tus.endpoint())
        .header("Upload-Length", photo.len().to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(photo.clone())
        .send()
        .await
        .expect("creation-with-upload");
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "upload-offset"), photo.len().to_string());
    assert_eq!(tus.images().await.len(), 1);
}

#[tokio::test]
async fn a_wrong_offset_is_409_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    assert_eq!(tus.patch(&url, 0, &photo[..100]).await.status(), 204);
    let res = tus.patch(&url, 50, &photo[50..]).await;
    assert_eq!(res.status(), 409);
    assert_eq!(error_reason(res).await, "OFFSET_MISMATCH");
    assert_eq!(tus.offset(&url).await, 100);
    let res = tus.patch(&url, 100, &photo[100..]).await;
    assert_eq!(res.status(), 204);
    assert_eq!(tus.images().await.len(), 1);
}

#[tokio::test]
async fn termination_forgets_the_upload() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    assert_eq!(tus.patch(&url, 0, &photo[..200]).await.status(), 204);
    let res = tus
        .request(reqwest::Method::DELETE, &url)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 204);
    assert_eq!(tus.head(&url).await.status(), 404);
    let res = tus.patch(&url, 200, &photo[200..]).await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_reason(res).await, "NOT_FOUND");
    assert_eq!(app.blob_count(), 0, "its parts are gone");
}

#[tokio::test]
async fn a_checksum_mismatch_is_460_and_keeps_no_byte() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    let piece = &photo[..300];
    let wrong = base64::engine::general_purpose::STANDARD.encode(sha1_of(b"something else"));
    let res = tus
        .request(reqwest::Method::PATCH, &url)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", format!("sha1 {wrong}"))
        .body(piece.to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(res.status().as_u16(), 460);
    assert_eq!(error_reason(res).await, "CHECKSUM_MISMATCH");
    assert_eq!(tus.offset(&url).await, 0);

    let right = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&photo));
    let res = tus
        .request(reqwest::Method::PATCH, &url)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", format!("sha256 {right}"))
        .body(photo.clone())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(res.status(), 204);
    assert_eq!(tus.images().await.len(), 1);

    let url = tus.create(10).await;
    let res = tus
        .request(reqwest::Method::PATCH, &url)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", "md5 AAAA")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(res.status(), 400, "an algorithm not offered");
}

fn sha1_of(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

/// A PDF is refused on its first bytes, before the rest of the body is even sent.
#[tokio::test]
async fn a_pdf_is_refused_on_the_first_patch() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(100_000).await;
    let path = url.trim_start_matches(&format!("http://{}", app.http));
    let mut tcp = tokio::net::TcpStream::connect(app.http)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 100000\r\n\r\n",
        tus.token
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")
        .await
        .expect("first bytes");
    // The answer comes while 99,970 bytes are still unsent.
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
        .await
        .expect("answered before the body ended")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 415"), "{text}");
    assert!(text.contains("UNSUPPORTED_MEDIA_TYPE"), "{text}");
    assert_eq!(
        tus.head(&url).await.status(),
        404,
        "the upload is terminated"
    );
}

/// A file that only its last bytes show to be broken is refused at the last byte with what a
/// multipart upload of the same bytes gets, and the upload is terminated.
#[tokio::test]
async fn a_broken_image_is_refused_at_the_last_byte_as_multipart_refuses_it() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let mut broken = jpeg(64, 48);
    let keep = broken.len() / 3;
    broken.truncate(keep);
    broken.extend(std::iter::repeat_n(0u8, 500));
    let (session, token) = app.create_session(3).await;
    let multipart = app
        .upload(
            session["identifier"].as_str().expect("id"),
            &token,
            vec![("b.jpg", broken.clone())],
            None,
        )
        .await;
    let (status, reason) = (multipart.status(), error_reason(multipart).await);
    assert!(status.is_client_error(), "{status}");

    let url = tus.create(broken.len()).await;
    assert_eq!(
        tus.patch(&url, 0, &broken[..100]).await.status(),
        204,
        "a JPEG start"
    );
    let res = tus.patch(&url, 100, &broken[100..]).await;
    assert_eq!(res.status(), status);
    assert_eq!(error_reason(res).await, reason);
    assert_eq!(tus.head(&url).await.status(), 404, "terminated");
    assert!(tus.images().await.is_empty());
}

#[tokio::test]
async fn a_finished_upload_answers_head_until_its_session_ends() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    assert_eq!(tus.patch(&url, 0, &photo).await.status(), 204);
    let res = tus.head(&url).await;
    assert_eq!(header(&res, "upload-offset"), photo.len().to_string());
    assert_eq!(header(&res, "upload-length"), photo.len().to_string());
    let res = app.complete(&tus.identifier, 1).await;
    assert_eq!(res.status(), 200);
    assert_eq!(tus.head(&url).await.status(), 404, "the session ended");
}

#[tokio::test]
async fn quotas_are_checked_on_upload_length_at_creation() {
    let app = TestApp::spawn_with(|c| {
        c.upload.max_images = 2;
        c.upload.max_session_bytes = ByteSize(3 << 20);
        c.upload.max_image_bytes = ByteSize(2 << 20);
    })
    .await;
    let tus = Tus::new(&app).await;
    let create = |length: u64| {
        tus.request(reqwest::Method::POST, &tus.endpoint())
            .header("Upload-Length", length.to_string())
            .send()
    };
    let res = create((2 << 20) + 1).await.expect("POST");
    assert_eq!(res.status(), 413, "above the per-image limit");
    assert_eq!(error_reason(res).await, "PAYLOAD_TOO_LARGE");
    assert_eq!(create(2 << 20).await.expect("POST").status(), 201);
    let res = create(2 << 20).await.expect("POST");
    assert_eq!(res.status(), 413, "above what is left of the session");
    assert_eq!(create(1000).await.expect("POST").status(), 201);
    let res = create(10).await.expect("POST");
    assert_eq!(
        res.status(),
        429,
        "two uploads in flight fill the image count"
    );
    assert_eq!(error_reason(res).await, "QUOTA_EXCEEDED");
}

#[tokio::test]
async fn a_patch_into_a_closed_session_is_409() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(1000).await;
    let res = app.complete(&tus.identifier, 1).await;
    assert_eq!(res.status(), 200);
    let res = tus.patch(&url, 0, &jpeg(8, 8)[..100]).await;
    assert_eq!(res.status(), 409);
    assert_eq!(error_reason(res).await, "SESSION_CLOSED");
}

#[tokio::test]
async fn an_unfinished_upload_expires_and_is_swept() {
    let app = TestApp::spawn_with(|c| c.upload.tus_expiry = Duration::from_secs(1)).await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(64, 48);
    let res = tus
        .request(reqwest::Method::POST, &tus.endpoint())
        .header("Upload-Length", photo.len().to_string())
        .send()
        .await
        .expect("POST");
    let expires = chrono::DateTime::parse_from_rfc2822(&header(&res, "upload-expires"))
        .expect("an HTTP date");
    assert!(expires <= chrono::Utc::now() + chrono::Duration::seconds(2));
    let url = tus.location(&res);
    assert_eq!(tus.patch(&url, 0, &photo[..100]).await.status(), 204);
    for _ in 0..100 {
        if app.metric("qrupload_tus_uploads_expired_total").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.metric("qrupload_tus_uploads_expired_total").await, 1.0);
    assert_eq!(tus.head(&url).await.status(), 404);
    assert_eq!(tus.patch(&url, 100, &photo[100..]).await.status(), 404);
    assert_eq!(app.blob_count(), 0, "its part is swept");
}

/// Sends a PATCH head and `sent` bytes of a body declared longer, then cuts the connection.
pub async fn cut_patch(
    app: &TestApp,
    token: &str,
    url: &str,
    offset: usize,
    body: &[u8],
    sent: usize,
) {
    let path = url.trim_start_matches(&format!("http://{}", app.http));
    let mut tcp = tokio::net::TcpStream::connect(app.http)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&body[..sent]).await.expect("some bytes");
    tcp.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
}

/// Polls HEAD until the offset reaches `at_least` (the server saves what it got once the cut
/// reaches it).
pub async fn offset_at_least(tus: &Tus<'_>, url: &str, at_least: u64) -> u64 {
    for _ in 0..100 {
        let offset = tus.offset(url).await;
        if offset >= at_least {
            return offset;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the offset never reached {at_least}");
}

#[tokio::test]
async fn bytes_received_before_a_cut_are_kept_and_the_upload_resumes() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = big_photo();
    let url = tus.create(photo.len()).await;
    let sent = photo.len() * 2 / 3;
    cut_patch(&app, &tus.token, &url, 0, photo, sent).await;
    let offset = offset_at_least(&tus, &url, sent as u64).await as usize;
    assert_eq!(offset, sent, "every byte that arrived is kept, no more");
    let res = tus.patch(&url, offset, &photo[offset..]).await;
    assert_eq!(res.status(), 204);
    let images = tus.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0]["sha256"].as_str(),
        Some(multipart_sha(&app, photo).await.as_str())
    );
}

#[tokio::test]
async fn the_desktop_sees_progress_and_then_one_image() {
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let mut watcher = SseClient::watch(&app, &tus.identifier, 1).await;
    let (_, _) = watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    let photo = jpeg(64, 48);
    let url = tus.create(photo.len()).await;
    assert_eq!(tus.patch(&url, 0, &photo[..500]).await.status(), 204);
    let upload_id = url.rsplit('/').next().expect("id").to_owned();
    let mut version = None;
    loop {
        let event = watcher
            .next_within(Duration::from_secs(10))
            .await
            .expect("events");
        if event.event != "progress" {
            continue;
        }
        assert_eq!(event.id, None, "progress carries no id");
        let data = event.json();
        assert_eq!(data["identifier"], tus.identifier.as_str());
        version = version.or(data["version"].as_u64());
        let files = data["files"].as_array().cloned().unwrap_or_default();
        if files.iter().any(|f| {
            f["upload_id"] == upload_id.as_str()
                && f["received"] == 500
                && f["total"] == photo.len() as u64
        }) {
            break;
        }
    }
    assert_eq!(tus.patch(&url, 500, &photo[500..]).await.status(), 204);
    // The image's change, and one last progress event with no files; progress never bumped
    // the version.
    let (ev, list) = watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert_eq!(
        ev.id.as_deref().and_then(|v| v.parse().ok()),
        version.map(|v| v + 1)
    );
    assert!(!list.as_array().is_some_and(|a| a.is_empty()));
    loop {
        let event = watcher
            .next_within(Duration::from_secs(10))
            .await
            .expect("the final progress event");
        if event.event == "progress"
            && event.json()["files"]
                .as_array()
                .is_some_and(|f| f.is_empty())
        {
            break;
        }
    }
}
