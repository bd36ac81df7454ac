//! Spawning the app and talking to it: the calls every test makes, so a test reads as what
//! it checks. `logs` captures the apps' log lines, `jwt` signs member tokens, `process` runs
//! the real binary, `cluster` starts several instances on shared backends, and `backends`
//! finds PostgreSQL, Redis and NATS or starts a broker of the test's own.

pub mod backends;
pub mod cluster;
pub mod jwt;
pub mod logs;
pub mod process;

pub use cluster::Cluster;

use std::{net::SocketAddr, path::Path, time::Duration};

use futures::StreamExt;
use qrupload::{Application, api::image::v1 as pb, conf::Config};
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestApp {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub client: reqwest::Client,
    pub services: qrupload::service::Services,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Loads `configs/` as the tests run it: both listeners on port 0, SQLite and blobs in `dir`.
pub fn config(dir: &Path) -> Config {
    config_from_env(dir, &[])
}

/// [`config`] with `QRUPLOAD__…` variables on top, read and validated by the loader as the
/// binary reads them: for tests of the loader itself. Apps take typed edits (`spawn_with`).
pub fn config_from_env(dir: &Path, env: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("QRUPLOAD__SERVER__HTTP__ADDR".into(), "127.0.0.1:0".into()),
        ("QRUPLOAD__SERVER__GRPC__ADDR".into(), "127.0.0.1:0".into()),
        ("QRUPLOAD__SERVER__SHUTDOWN_GRACE".into(), "3s".into()),
        (
            "QRUPLOAD__DATA__DATABASE__URL".into(),
            format!("sqlite://{}/qrupload.db?mode=rwc", dir.display()),
        ),
        (
            "QRUPLOAD__DATA__BLOB__ROOT".into(),
            dir.join("blobs").display().to_string(),
        ),
        ("QRUPLOAD__LOG__LEVEL".into(), "warn".into()),
    ];
    for (k, v) in env {
        vars.retain(|(key, _)| key != k);
        vars.push(((*k).into(), (*v).into()));
    }
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    Config::load_with(&configs, None, vars).expect("test config loads")
}

/// Who makes a call that either the phone (its upload token) or the member may make.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    Phone(&'a str),
    Member(u32),
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts an app on [`config`] as `edit` changes it. The binary started with
    /// `QRUPLOAD__…` variables is [`process::Server`].
    pub async fn spawn_with(edit: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(dir.path());
        edit(&mut config);
        Self::spawn_config(config, dir).await
    }

    pub async fn spawn_config(config: Config, dir: tempfile::TempDir) -> TestApp {
        // Client and server sockets share this process's descriptor limit.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        logs::capture_logs();
        let app = Application::build(config).await.expect("app builds");
        let http = app.http_addr();
        let grpc = app.grpc_addr();
        let services = app.services().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        TestApp {
            http,
            grpc,
            client: reqwest::Client::new(),
            services,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `POST …/complete` as member `member`.
    pub async fn complete(&self, identifier: &str, member: u32) -> reqwest::Response {
        self.client
            .post(self.url(&format!(
                "/v1/api/upload-sessions/{identifier}/complete?member_id={member}"
            )))
            .send()
            .await
            .expect("complete")
    }

    /// `GET` the session as member `member`.
    pub async fn get_session(&self, identifier: &str, member: u32) -> reqwest::Response {
        self.client
            .get(self.url(&format!(
                "/v1/api/upload-sessions/{identifier}?member_id={member}"
            )))
            .send()
            .await
            .expect("get session")
    }

    /// `DELETE` one image, as the phone or as the member.
    pub async fn delete_image(
        &self,
        identifier: &str,
        image: &str,
        caller: Caller<'_>,
    ) -> reqwest::Response {
        let path = format!("/v1/api/upload-sessions/{identifier}/images/{image}");
        let req = match caller {
            Caller::Phone(token) => self.client.delete(self.url(&path)).bearer_auth(token),
            Caller::Member(member) => self
                .client
                .delete(self.url(&format!("{path}?member_id={member}"))),
        };
        req.send().await.expect("delete image")
    }

    /// `GET …/upload-info` as the phone: the call that marks a session scanned.
    pub async fn upload_info(&self, identifier: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/api/upload-sessions/{identifier}/upload-info")))
            .bearer_auth(token)
            .send()
            .await
            .expect("upload-info")
    }

    /// Waits until `/readyz` answers 200 (`ready`) or 503 (not ready).
    pub async fn wait_ready(&self, ready: bool) {
        let expected = if ready { 200 } else { 503 };
        for _ in 0..100 {
            let status = self
                .client
                .get(self.url("/readyz"))
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

    /// Asks the app to stop, as SIGTERM would.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn grpc_client(
        &self,
    ) -> pb::image_service_client::ImageServiceClient<tonic::transport::Channel> {
        pb::image_service_client::ImageServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("gRPC connects")
    }

    /// Creates a session over gRPC for `member_id`, with the default image limit.
    pub async fn grpc_session(
        &self,
        member_id: u32,
        ttl_seconds: Option<u32>,
    ) -> pb::UploadSession {
        self.grpc_client()
            .await
            .create_upload_session(pb::CreateUploadSessionRequest {
                member_id,
                ttl_seconds,
                max_images: None,
            })
            .await
            .expect("create")
            .into_inner()
    }

    /// Creates a session over HTTP; returns its JSON and the upload token from the URL fragment.
    pub async fn create_session(&self, member_id: u32) -> (Value, String) {
        let res = self
            .client
            .post(self.url("/v1/api/upload-sessions"))
            .json(&serde_json::json!({ "member_id": member_id }))
            .send()
            .await
            .expect("create session");
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("session json");
        let token = body["upload_url"]
            .as_str()
            .and_then(|u| u.split_once("#t="))
            .map(|(_, t)| t.to_owned())
            .expect("upload_url carries the token in its fragment");
        (body, token)
    }

    /// [`TestApp::create_session`] for a test that needs only the session's identifier and
    /// its upload token.
    pub async fn open_session(&self, member_id: u32) -> (String, String) {
        let (session, token) = self.create_session(member_id).await;
        let identifier = session["identifier"]
            .as_str()
            .expect("identifier")
            .to_owned();
        (identifier, token)
    }

    /// Uploads files as parts named `file`.
    pub async fn upload(
        &self,
        identifier: &str,
        token: &str,
        files: Vec<(&str, Vec<u8>)>,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        }
        let mut req = self
            .client
            .post(self.url(&format!("/v1/api/upload-sessions/{identifier}/images")))
            .bearer_auth(token)
            .multipart(form);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("upload request")
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Files under the blob root, for "nothing left behind" checks.
    pub fn blob_count(&self) -> usize {
        let root = self.dir.path().join("blobs");
        walk(&root)
    }

    /// Rows in the `images` table of the app's SQLite file, for "nothing left behind" checks.
    pub async fn image_rows(&self) -> u64 {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let url = format!("sqlite://{}/qrupload.db", self.dir.path().display());
        let db = qrupload::data::connect(&url, 1)
            .await
            .expect("the test database opens");
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM images",
            ))
            .await
            .expect("count query")
            .expect("one row");
        let n: i64 = row.try_get("", "n").expect("count");
        let _ = db.close().await;
        u64::try_from(n).expect("a count")
    }
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One Server-Sent Event as an `EventSource` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    pub retry: Option<u64>,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// A minimal `EventSource` parser over a streaming response; comments count as heartbeats.
pub struct SseClient {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    pub heartbeats: usize,
    pub response_headers: reqwest::header::HeaderMap,
    pub status: reqwest::StatusCode,
}

impl SseClient {
    pub async fn connect(app: &TestApp, query: &str, last_event_id: Option<&str>) -> SseClient {
        let mut req = app
            .client
            .get(app.url(&format!("/v1/api/sse/events?{query}")));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        Self::open(req).await
    }

    /// Sends a prepared request (extra headers, cookies) and reads its answer as a stream.
    pub async fn open(req: reqwest::RequestBuilder) -> SseClient {
        let res = req.send().await.expect("sse connect");
        SseClient {
            status: res.status(),
            response_headers: res.headers().clone(),
            stream: res.bytes_stream().boxed(),
            buffer: String::new(),
            heartbeats: 0,
        }
    }

    pub async fn watch(app: &TestApp, identifier: &str, member_id: u32) -> SseClient {
        let client = Self::connect(
            app,
            &format!("event=upload_by_qr&member_id={member_id}&identifier={identifier}"),
            None,
        )
        .await;
        assert_eq!(client.status, 200);
        client
    }

    /// The next event, or `None` if the stream ended or nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }

    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                    retry: None,
                };
                let mut has_field = false;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.heartbeats += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    has_field = true;
                    match field {
                        "id" => event.id = Some(value.into()),
                        "event" => event.event = value.into(),
                        "retry" => event.retry = value.parse().ok(),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => {}
                    }
                }
                if has_field {
                    return Some(event);
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Reads until a snapshot event (`upload_by_qr`) satisfying `pred` arrives.
    pub async fn snapshot_where(&mut self, pred: impl Fn(&Value) -> bool) -> (Event, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self
                .next_within(left)
                .await
                .expect("a matching snapshot arrives");
            if event.event == "upload_by_qr" {
                let data = event.json();
                if pred(&data) {
                    return (event, data);
                }
            }
        }
    }
}

/// A small real JPEG.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    qrupload::biz::imaging::testdata::jpeg_with_exif(width, height, 1, false)
}

/// The tags of IFD0 in a JPEG's EXIF segment (tag, first value), or `None` if it has none.
pub fn exif_ifd0(jpeg: &[u8]) -> Option<Vec<(u16, u32)>> {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let body = &jpeg[at + 4..at + 2 + len];
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            let tiff = &body[6..];
            let le = tiff.starts_with(b"II");
            let u16_at = |o: usize| {
                let b = [tiff[o], tiff[o + 1]];
                if le {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }
            };
            let u32_at = |o: usize| {
                let b = [tiff[o], tiff[o + 1], tiff[o + 2], tiff[o + 3]];
                if le {
                    u32::from_le_bytes(b)
                } else {
                    u32::from_be_bytes(b)
                }
            };
            let ifd = u32_at(4) as usize;
            let count = usize::from(u16_at(ifd));
            return Some(
                (0..count)
                    .map(|n| {
                        let entry = ifd + 2 + n * 12;
                        let kind = u16_at(entry + 2);
                        let value = if kind == 3 {
                            u32::from(u16_at(entry + 8))
                        } else {
                            u32_at(entry + 8)
                        };
                        (u16_at(entry), value)
                    })
                    .collect(),
            );
        }
        at += 2 + len;
    }
    None
}

/// Whether any segment before the scan is an APP1 XMP, APP13 (IPTC) or COM segment.
pub fn has_other_metadata(jpeg: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let body = &jpeg[at + 4..at + 2 + len];
        if marker == 0xED || marker == 0xFE || (marker == 0xE1 && !body.starts_with(b"Exif\0\0")) {
            return true;
        }
        at += 2 + len;
    }
    false
}
