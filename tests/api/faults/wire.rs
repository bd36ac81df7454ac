//! Clients that can stop halfway, and the "nothing lost, nothing left over" check.

use std::{collections::BTreeSet, future::Future, net::SocketAddr, path::Path, time::Duration};

use futures::{StreamExt, stream::BoxStream};
use qrupload::data::entity::{image, upload_session};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::helpers::Event;

/// How long a test waits for an outcome before it calls it a hang.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `fut`'s output, or a failure naming `what` if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no outcome within {PATIENCE:?}"))
}

/// Waits until `check` holds, failing after [`PATIENCE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The keys (`identifier/file`) of every file under a blob root, temporary files included.
pub fn blob_files(root: &Path) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let session = dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            keys.insert(format!("{session}/{}", file.file_name().to_string_lossy()));
        }
    }
    keys
}

/// Completed blobs: files under the root that are not a write in progress.
pub fn stored_blobs(root: &Path) -> usize {
    blob_files(root)
        .iter()
        .filter(|k| !k.contains(".tmp-"))
        .count()
}

/// Nothing lost and nothing half-written: every image row has its blob and thumbnail, every
/// file under the blob root belongs to a row, and each session's counters match its rows.
pub async fn assert_consistent(db: &DatabaseConnection, blob_root: &Path) {
    let images = image::Entity::find().all(db).await.expect("image rows");
    let sessions = upload_session::Entity::find()
        .all(db)
        .await
        .expect("session rows");
    let expected: BTreeSet<String> = images
        .iter()
        .flat_map(|i| {
            [
                format!("{}/{}", i.identifier, i.id),
                format!("{}/{}.thumb", i.identifier, i.id),
            ]
        })
        .collect();
    let on_disk = blob_files(blob_root);
    let missing: Vec<_> = expected.difference(&on_disk).collect();
    let orphans: Vec<_> = on_disk.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "image rows without their blobs: {missing:?}"
    );
    assert!(
        orphans.is_empty(),
        "blobs without an image row: {orphans:?}"
    );
    for s in &sessions {
        let rows: Vec<_> = images
            .iter()
            .filter(|i| i.identifier == s.identifier)
            .collect();
        assert_eq!(
            s.image_count as usize,
            rows.len(),
            "session {}: image_count matches its rows",
            s.identifier
        );
        assert_eq!(
            s.total_bytes,
            rows.iter().map(|i| i.size).sum::<i64>(),
            "session {}: total_bytes matches its rows",
            s.identifier
        );
    }
}

const BOUNDARY: &str = "qrupload-fault-test-boundary";

/// A multipart upload written by hand over TCP, so that a test can act between its files.
pub struct RawUpload {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl RawUpload {
    /// Sends the request up to the middle of its last file: every earlier file is complete,
    /// its end visible to the server, so the server stores it and waits for the rest.
    pub async fn start(
        addr: SocketAddr,
        identifier: &str,
        token: &str,
        files: &[Vec<u8>],
    ) -> RawUpload {
        let mut body = Vec::new();
        let mut split = 0;
        for (n, file) in files.iter().enumerate() {
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"{n}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
                )
                .as_bytes(),
            );
            split = body.len() + file.len() / 2;
            body.extend_from_slice(file);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let head = format!(
            "POST /v1/api/upload-sessions/{identifier}/images HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\n\
             Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream
            .write_all(&body[..split])
            .await
            .expect("send the first part");
        RawUpload {
            stream,
            rest: body[split..].to_vec(),
        }
    }

    /// Sends the rest and reads the answer: its status and JSON body.
    pub async fn finish(mut self) -> (u16, Value) {
        self.send_rest().await;
        self.answer().await
    }

    /// Sends the rest of the request, without waiting for the answer.
    pub async fn send_rest(&mut self) {
        let rest = std::mem::take(&mut self.rest);
        self.stream.write_all(&rest).await.expect("send the rest");
    }

    /// The answer's status and JSON body.
    pub async fn answer(mut self) -> (u16, Value) {
        let mut response = Vec::new();
        within(
            "the upload's answer",
            self.stream.read_to_end(&mut response),
        )
        .await
        .expect("read the answer");
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("an HTTP answer: {text}"));
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

/// Uploads files as parts named `file`, with reqwest.
pub async fn upload(
    client: &reqwest::Client,
    base: &str,
    identifier: &str,
    token: &str,
    files: Vec<Vec<u8>>,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (n, bytes) in files.into_iter().enumerate() {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(format!("{n}.jpg")),
        );
    }
    within(
        "upload",
        client
            .post(format!("{base}/v1/api/upload-sessions/{identifier}/images"))
            .bearer_auth(token)
            .multipart(form)
            .send(),
    )
    .await
    .expect("upload request")
}

/// The token in a session's `upload_url` fragment.
pub fn token_of(session: &Value) -> String {
    session["upload_url"]
        .as_str()
        .and_then(|u| u.split_once("#t="))
        .map(|(_, t)| t.to_owned())
        .expect("upload_url carries the token in its fragment")
}

/// How a stream ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// The server finished the response properly.
    Closed,
    /// The connection broke mid-response.
    Broken(String),
}

/// An `EventSource`-like reader that remembers what a client needs to resume: the last event
/// id, and every image id any snapshot showed.
pub struct Watcher {
    stream: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    pub last_event_id: Option<String>,
    pub seen: BTreeSet<String>,
    /// The image ids of the latest snapshot.
    pub latest: BTreeSet<String>,
}

impl Watcher {
    pub async fn connect(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> Watcher {
        Self::connect_with(client.get(url), last_event_id).await
    }

    /// As [`Watcher::connect`], for a prepared request (a cookie, a bearer token).
    pub async fn connect_with(
        mut req: reqwest::RequestBuilder,
        last_event_id: Option<&str>,
    ) -> Watcher {
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = within("SSE connect", req.send())
            .await
            .expect("SSE connect");
        assert_eq!(res.status(), 200, "SSE connect");
        Watcher {
            stream: res.bytes_stream().boxed(),
            buffer: String::new(),
            last_event_id: last_event_id.map(str::to_owned),
            seen: BTreeSet::new(),
            latest: BTreeSet::new(),
        }
    }

    /// The next event, or how the stream ended.
    pub async fn next(&mut self) -> Result<Event, End> {
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Ok(event);
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(e)) => return Err(End::Broken(e.to_string())),
                None => return Err(End::Closed),
            }
        }
    }

    /// Reads until a snapshot holds every id of `want`.
    pub async fn until_latest_holds(&mut self, want: &BTreeSet<String>) {
        while !self.latest.is_superset(want) {
            if let Err(end) = self.next().await {
                panic!("the stream ended ({end:?}) before a snapshot with every image");
            }
        }
    }

    /// Reads until the stream ends; returns how.
    pub async fn until_end(&mut self) -> End {
        loop {
            if let Err(end) = self.next().await {
                return end;
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<Event> {
        let mut event = Event {
            id: None,
            event: "message".into(),
            data: String::new(),
            retry: None,
        };
        let mut any = false;
        for line in block
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(':'))
        {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            any = true;
            match field {
                "id" => event.id = Some(value.into()),
                "event" => event.event = value.into(),
                "retry" => event.retry = value.parse().ok(),
                "data" => event.data.push_str(value),
                _ => {}
            }
        }
        if !any {
            return None;
        }
        if let Some(id) = &event.id {
            self.last_event_id = Some(id.clone());
        }
        if event.event == "upload_by_qr" {
            let ids: BTreeSet<String> = event
                .json()
                .as_array()
                .expect("a snapshot is an array")
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect();
            self.seen.extend(ids.iter().cloned());
            self.latest = ids;
        }
        Some(event)
    }
}
