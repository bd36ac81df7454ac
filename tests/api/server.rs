//! The HTTP serve loop seen from a raw socket: body and idle timeouts (the head timeout's 408
//! is in `errors.rs`), the 431 for a large head, SSE on the lean path and through hyper, and a watcher that stops reading.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use qrupload::conf::ByteSize;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout},
};

use crate::helpers::{SseClient, TestApp, jpeg};

/// A hand-driven HTTP/1.x client: what a browser, a proxy or a misbehaving client sends.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(app: &TestApp) -> Raw {
        Raw::from(TcpStream::connect(app.http).await.expect("connect"))
    }

    fn from(tcp: TcpStream) -> Raw {
        Raw {
            tcp,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("send");
    }

    /// Reads more bytes into the buffer; false on EOF or error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match timeout(Duration::from_secs(10), self.tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => false,
            Err(_) => panic!("nothing from the server within 10 s"),
        }
    }

    /// The status line and headers of the next answer, lower-cased names.
    async fn head(&mut self) -> Head {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Head::parse(&text);
            }
            assert!(self.fill().await, "connection closed before a head");
        }
    }

    async fn exactly(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            assert!(self.fill().await, "connection closed inside a chunk");
        }
    }

    /// The next chunk of a chunked body; `None` for the last (empty) one.
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        let size = usize::from_str_radix(self.line().await.trim(), 16).expect("chunk size");
        let data = self.exactly(size).await;
        assert_eq!(self.exactly(2).await, b"\r\n");
        (size > 0).then_some(data)
    }

    /// A whole answer with a `content-length`.
    async fn answer(&mut self) -> (Head, Vec<u8>) {
        let head = self.head().await;
        let len = head
            .get("content-length")
            .map_or(0, |v| v.parse().expect("length"));
        let body = self.exactly(len).await;
        (head, body)
    }

    /// Whether the server closes the connection (EOF or reset) within `wait`, without
    /// sending anything more.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        match timeout(wait, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => false,
        }
    }
}

#[derive(Debug)]
struct Head {
    status_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(text: &str) -> Head {
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Head {
            status_line,
            headers,
        }
    }

    fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn sse_get(id: &str, version: &str) -> Vec<u8> {
    format!(
        "GET /v1/api/sse/events?event=upload_by_qr&member_id=1&identifier={id} {version}\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"
    )
    .into_bytes()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

/// Polls a metric until it has `value`; the last value read otherwise.
async fn metric_becomes(app: &TestApp, name: &str, value: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = app.metric(name).await;
        if now == value || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn session(app: &TestApp) -> (String, String) {
    let (id, token) = app.open_session(1).await;
    (id, token)
}

#[test]
fn http_limits_have_defaults_and_refuse_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::helpers::config(dir.path());
    let http = &config.server.http;
    assert_eq!(http.header_read_timeout, Duration::from_secs(10));
    assert_eq!(http.idle_timeout, Duration::from_secs(60));
    assert_eq!(http.body_timeout, Duration::from_secs(20));
    assert_eq!(http.body_min_rate.0, 500);
    assert_eq!(config.sse.write_timeout, Duration::from_secs(30));

    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for key in [
        "QRUPLOAD__SERVER__HTTP__HEADER_READ_TIMEOUT",
        "QRUPLOAD__SERVER__HTTP__IDLE_TIMEOUT",
        "QRUPLOAD__SERVER__HTTP__BODY_TIMEOUT",
        "QRUPLOAD__SSE__WRITE_TIMEOUT",
    ] {
        let err = qrupload::conf::Config::load_with(&configs, None, [(key.into(), "0s".into())])
            .expect_err("zero is refused");
        assert!(
            err.to_string().contains("must be above zero"),
            "{key}: {err}"
        );
    }
    let err = qrupload::conf::Config::load_with(
        &configs,
        None,
        [(
            "QRUPLOAD__SERVER__HTTP__BODY_MIN_RATE".into(),
            "fast".into(),
        )],
    )
    .expect_err("not a size");
    assert!(err.to_string().contains("body_min_rate"), "{err}");
}

#[tokio::test]
async fn an_upload_trickling_in_gets_408_and_leaves_nothing() {
    let app = TestApp::spawn_with(|c| c.server.http.body_timeout = Duration::from_secs(1)).await;
    let (id, token) = session(&app).await;

    // One whole file, then a second one at a byte per second.
    let photo = jpeg(16, 16);
    let mut first = Vec::new();
    first.extend_from_slice(
        b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
    );
    first.extend_from_slice(&photo);
    first.extend_from_slice(
        b"\r\n--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
    );
    let length = first.len() + photo.len() + b"\r\n--XB--\r\n".len();
    let mut raw = Raw::connect(&app).await;
    raw.send(
        format!(
            "POST /v1/api/upload-sessions/{id}/images HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=XB\r\nContent-Length: {length}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    raw.send(&first).await;
    let (mut rd, mut wr) = raw.tcp.into_split();
    let trickle = tokio::spawn(async move {
        for byte in photo {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut answer = Vec::new();
    let read = timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(read.is_ok(), "the connection was closed after the answer");
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer");
    let head = Head::parse(head);
    assert_eq!(head.status(), 408, "{text}");
    assert_eq!(head.get("connection"), Some("close"));
    let body: Value = serde_json::from_str(body).expect("error JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "code": 408,
            "reason": "REQUEST_TIMEOUT",
            "message": "the request body arrived too slowly",
            "metadata": {}
        })
    );

    // All or nothing: the first file's blob is gone too, and no row was written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.blob_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.blob_count(), 0);
    let res = app.get_session(&id, 1).await;
    let session: Value = res.json().await.expect("json");
    assert_eq!(session["image_count"], 0);
}

#[tokio::test]
async fn idle_keep_alive_connections_close_but_streams_are_never_idle() {
    let app = TestApp::spawn_with(|c| {
        c.server.http.idle_timeout = Duration::from_secs(1);
        c.server.http.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let (id, token) = session(&app).await;

    // A stream on the lean path, and one through hyper on a reused connection.
    let mut lean = Raw::connect(&app).await;
    lean.send(&sse_get(&id, "HTTP/1.1")).await;
    assert_eq!(lean.head().await.status(), 200);
    lean.chunk().await.expect("first events");
    let mut reused = Raw::connect(&app).await;
    reused.send(HEALTHZ).await;
    assert_eq!(reused.answer().await.0.status(), 200);
    reused.send(&sse_get(&id, "HTTP/1.1")).await;
    assert_eq!(reused.head().await.status(), 200);
    reused.chunk().await.expect("first events");

    // A kept-alive connection that asks nothing more is closed (60 s would be the header
    // timeout, far beyond this wait).
    let mut idle = Raw::connect(&app).await;
    idle.send(HEALTHZ).await;
    assert_eq!(idle.answer().await.0.status(), 200);
    assert!(idle.closed_within(Duration::from_secs(10)).await);

    // Both streams outlived several idle timeouts and still deliver.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = app
        .upload(&id, &token, vec![("a.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), 201);
    for stream in [&mut lean, &mut reused] {
        let events = String::from_utf8(stream.chunk().await.expect("the change")).expect("utf-8");
        assert!(events.contains("id: 2\nevent: session\n"), "{events}");
    }
}

#[tokio::test]
async fn a_head_over_16_kib_gets_431() {
    let app = TestApp::spawn().await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    // As the first head, read by the serve loop, and as a later one, read by hyper.
    for later in [false, true] {
        let mut raw = Raw::connect(&app).await;
        if later {
            raw.send(HEALTHZ).await;
            assert_eq!(raw.answer().await.0.status(), 200);
        }
        raw.send(big.as_bytes()).await;
        let head = raw.head().await;
        assert_eq!(head.status(), 431, "later={later}: {head:?}");
    }
    // A head just under the limit is fine.
    let fits = app
        .client
        .get(app.url("/healthz"))
        .header("x-filler", "a".repeat(15 * 1024))
        .send()
        .await
        .expect("request");
    assert_eq!(fits.status(), 200);
}

#[tokio::test]
async fn sse_is_the_same_on_the_lean_path_and_through_hyper() {
    let app = TestApp::spawn().await;
    let (id, token) = session(&app).await;

    // A fresh connection's SSE request takes the lean path; after another request on the
    // same connection it goes through hyper.
    let mut lean = Raw::connect(&app).await;
    lean.send(&sse_get(&id, "HTTP/1.1")).await;
    let lean_head = lean.head().await;
    assert_eq!(
        metric_becomes(&app, "qrupload_http_lean_streams", 1.0).await,
        1.0
    );
    let mut hyper = Raw::connect(&app).await;
    hyper.send(HEALTHZ).await;
    assert_eq!(hyper.answer().await.0.status(), 200);
    hyper.send(&sse_get(&id, "HTTP/1.1")).await;
    let hyper_head = hyper.head().await;
    assert_eq!(app.metric("qrupload_http_lean_streams").await, 1.0);

    for head in [&lean_head, &hyper_head] {
        assert_eq!(head.status_line, "HTTP/1.1 200 OK");
        assert_eq!(head.get("content-type"), Some("text/event-stream"));
        assert_eq!(head.get("cache-control"), Some("no-cache"));
        assert_eq!(head.get("x-accel-buffering"), Some("no"));
        assert_eq!(head.get("connection"), Some("keep-alive"));
        assert_eq!(head.get("transfer-encoding"), Some("chunked"));
        assert!(head.get("date").is_some());
        assert!(head.get("content-length").is_none());
    }
    let names = |h: &Head| {
        let mut n: Vec<String> = h.headers.iter().map(|(k, _)| k.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&lean_head), names(&hyper_head));

    // The same bytes, on connect and after a change.
    let first = lean.chunk().await.expect("events");
    assert_eq!(hyper.chunk().await.expect("events"), first);
    assert!(String::from_utf8_lossy(&first).starts_with("id: 1\nevent: session\ndata: {"));
    let res = app
        .upload(&id, &token, vec![("a.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), 201);
    let change = lean.chunk().await.expect("change");
    assert_eq!(hyper.chunk().await.expect("change"), change);

    // A client that goes away frees its watcher at once.
    assert_eq!(app.metric("qrupload_watchers").await, 2.0);
    drop(lean);
    assert_eq!(metric_becomes(&app, "qrupload_watchers", 1.0).await, 1.0);
    assert_eq!(app.metric("qrupload_http_lean_streams").await, 0.0);

    // The end of the session ends both kinds of stream with the last chunk.
    let mut lean = Raw::connect(&app).await;
    lean.send(&sse_get(&id, "HTTP/1.1")).await;
    assert_eq!(lean.head().await.status(), 200);
    lean.chunk().await.expect("events");
    let res = app.complete(&id, 1).await;
    assert_eq!(res.status(), 200);
    for stream in [&mut lean, &mut hyper] {
        let last = String::from_utf8(stream.chunk().await.expect("final events")).expect("utf-8");
        assert!(last.contains("\"status\":\"completed\""), "{last}");
        assert!(
            stream.chunk().await.is_none(),
            "the last chunk ends the body"
        );
    }
    // The lean path closes after its stream.
    assert!(lean.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn lean_path_answers_errors_http_1_0_heartbeats_and_keeps_the_connection() {
    let app = TestApp::spawn_with(|c| c.sse.heartbeat = Duration::from_millis(100)).await;
    let (id, _token) = session(&app).await;

    // A refused SSE request answers with a length, then the connection serves more requests.
    let mut raw = Raw::connect(&app).await;
    raw.send(
        b"GET /v1/api/sse/events?event=upload_by_qr&identifier=x HTTP/1.1\r\nHost: test\r\n\r\n",
    )
    .await;
    let (head, body) = raw.answer().await;
    assert_eq!(head.status(), 400);
    assert_eq!(head.get("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&body).expect("error JSON");
    assert_eq!(body["metadata"]["field"], "member_id");
    raw.send(HEALTHZ).await;
    assert_eq!(raw.answer().await.0.status(), 200);

    // `Connection: close` is honoured.
    let mut raw = Raw::connect(&app).await;
    raw.send(
        b"GET /v1/api/sse/events?event=upload_by_qr&member_id=1&identifier=AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, _) = raw.answer().await;
    assert_eq!(head.status(), 404);
    assert_eq!(head.get("connection"), Some("close"));
    assert!(raw.closed_within(Duration::from_secs(5)).await);

    // HTTP/1.0 has no chunks: the stream is the bare events, delimited by the close.
    let mut raw = Raw::connect(&app).await;
    raw.send(&sse_get(&id, "HTTP/1.0")).await;
    let head = raw.head().await;
    assert_eq!(head.status_line, "HTTP/1.0 200 OK");
    assert!(head.get("transfer-encoding").is_none());
    while find(&raw.buf, b"event: upload_by_qr").is_none() {
        assert!(raw.fill().await);
    }
    assert!(String::from_utf8_lossy(&raw.buf).starts_with("id: 1\nevent: session\n"));

    // Heartbeats, each its own chunk.
    let mut raw = Raw::connect(&app).await;
    raw.send(&sse_get(&id, "HTTP/1.1")).await;
    assert_eq!(raw.head().await.status(), 200);
    raw.chunk().await.expect("first events");
    assert_eq!(raw.chunk().await.expect("heartbeat"), b": ping\n\n");
    assert_eq!(raw.chunk().await.expect("heartbeat"), b": ping\n\n");
}

#[tokio::test]
async fn a_stalled_watcher_is_dropped_while_the_others_get_every_snapshot() {
    let app = TestApp::spawn_with(|c| {
        c.sse.write_timeout = Duration::from_secs(1);
        c.upload.max_images = 5000;
        c.upload.max_session_bytes = ByteSize(1 << 30);
    })
    .await;
    let (id, token) = session(&app).await;

    // Two watchers that never read, with a small receive window (and segment size, so the
    // server's send buffer stays small too): one on the lean path, one through hyper.
    let mut stalled = Vec::new();
    for through_hyper in [false, true] {
        let mut raw = Raw::from(small_window_socket(&app).await);
        if through_hyper {
            raw.send(HEALTHZ).await;
            assert_eq!(raw.answer().await.0.status(), 200);
        }
        raw.send(&sse_get(&id, "HTTP/1.1")).await;
        stalled.push(raw);
    }
    let mut reader = SseClient::watch(&app, &id, 1).await;
    assert_eq!(metric_becomes(&app, "qrupload_watchers", 3.0).await, 3.0);
    let (first, _) = reader.snapshot_where(|_| true).await;
    assert_eq!(first.id.as_deref(), Some("1"));

    // Changes with ever larger snapshots until both are dropped; the reader gets each one
    // before the next is made, so it must see every version.
    let mut version = 1;
    while app.metric("qrupload_http_slow_clients_dropped_total").await < 2.0 {
        assert!(version < 400, "the stalled watchers were never dropped");
        let files = (0..20).map(|_| ("a.jpg", jpeg(16, 16))).collect();
        assert_eq!(app.upload(&id, &token, files, None).await.status(), 201);
        version += 1;
        let (event, list) = reader.snapshot_where(|_| true).await;
        assert_eq!(
            event.id,
            Some(version.to_string()),
            "the reader missed none"
        );
        assert_eq!(list.as_array().map(Vec::len), Some(20 * (version - 1)));
    }
    assert_eq!(metric_becomes(&app, "qrupload_watchers", 1.0).await, 1.0);
    assert_eq!(app.metric("qrupload_http_lean_streams").await, 0.0);
    for mut raw in stalled {
        // What was in flight, then the end.
        let drained = timeout(Duration::from_secs(10), async {
            let mut sink = vec![0u8; 64 * 1024];
            loop {
                match raw.tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the server closed the stalled connection");
    }

    // The reader goes on.
    let res = app
        .upload(&id, &token, vec![("b.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), 201);
    let (event, _) = reader.snapshot_where(|_| true).await;
    assert_eq!(event.id, Some((version + 1).to_string()));
}

/// A client socket with a 4 KiB receive buffer and 536-byte segments: few bytes in flight
/// fill it.
async fn small_window_socket(app: &TestApp) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    // Not every platform has it; without it more changes are needed to fill the window.
    let _ = socket.set_tcp_mss(536);
    socket.connect(&app.http.into()).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    TcpStream::from_std(socket.into()).expect("tokio socket")
}

#[tokio::test]
async fn every_request_carries_the_client_address() {
    // A router of our own behind the same serve loop: the SSE route answers on the lean path,
    // the other through hyper.
    async fn whoami(
        axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<SocketAddr>,
    ) -> String {
        addr.to_string()
    }
    let app = axum::Router::new()
        .route("/v1/api/sse/events", axum::routing::get(whoami))
        .route("/whoami", axum::routing::get(whoami));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = qrupload::server::HttpTimeouts::from_config(&crate::helpers::config(dir.path()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(qrupload::server::serve_http(
        listener,
        app,
        limits,
        Arc::new(qrupload::metrics::Metrics::default()),
        async {
            let _ = stopped.await;
        },
    ));

    let mut raw = Raw::from(TcpStream::connect(addr).await.expect("connect"));
    let local = raw.tcp.local_addr().expect("local").to_string();
    for path in ["/v1/api/sse/events", "/whoami"] {
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await;
        let (head, body) = raw.answer().await;
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(String::from_utf8_lossy(&body), local, "{path}");
    }
    let _ = stop.send(());
    let stopped = timeout(Duration::from_secs(10), server).await;
    assert!(stopped.is_ok(), "the server stopped");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let app = TestApp::spawn().await;
    let tcp = TcpStream::connect(app.http).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = axum::http::Request::get(app.url("/healthz"))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), axum::http::Version::HTTP_2);
}

#[tokio::test]
async fn shutdown_ends_lean_streams_with_their_last_chunk() {
    let mut app = TestApp::spawn_with(|c| c.server.shutdown_grace = Duration::from_secs(5)).await;
    let (id, _token) = session(&app).await;
    let mut lean = Raw::connect(&app).await;
    lean.send(&sse_get(&id, "HTTP/1.1")).await;
    assert_eq!(lean.head().await.status(), 200);
    lean.chunk().await.expect("first events");

    app.stop();
    let task = app.task.take().expect("running");
    let stopped = timeout(Duration::from_secs(10), task).await;
    assert!(stopped.is_ok(), "the app stopped within its drain time");
    assert!(lean.chunk().await.is_none(), "the stream ended properly");
    assert!(lean.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn huge_timeouts_mean_no_timeout_not_a_panic() {
    // 500,000,000 years of 365.25 days, as `500000000years` reads.
    let huge = Duration::from_secs(500_000_000 * 31_557_600);
    let app = TestApp::spawn_with(|c| {
        c.server.http.header_read_timeout = huge;
        c.server.http.idle_timeout = huge;
        c.server.http.body_timeout = huge;
        c.sse.write_timeout = huge;
    })
    .await;
    let (id, token) = session(&app).await;
    let mut sse = SseClient::watch(&app, &id, 1).await;
    sse.next().await.expect("session event");
    let res = app
        .upload(&id, &token, vec![("a.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), 201);
    sse.snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let mut raw = Raw::connect(&app).await;
    raw.send(HEALTHZ).await;
    assert_eq!(raw.answer().await.0.status(), 200);
    assert!(!raw.closed_within(Duration::from_millis(200)).await);
}
