//! One error shape everywhere: every route, given each malformed input, answers SPEC's JSON
//! error (status, `application/json`, `code` == status, the reason SPEC lists), including the
//! answers made before a handler runs and the serve loop's own.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// Every route template with a made-up identifier and image id where it has them.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/api/sse/events"),
    ("POST", "/v1/api/upload-sessions"),
    ("GET", "/v1/api/upload-sessions/ID"),
    ("GET", "/v1/api/upload-sessions/ID/qr.svg"),
    ("POST", "/v1/api/upload-sessions/ID/complete"),
    ("GET", "/v1/api/upload-sessions/ID/upload-info"),
    ("POST", "/v1/api/upload-sessions/ID/images"),
    ("DELETE", "/v1/api/upload-sessions/ID/images/IMG"),
    ("PUT", "/v1/api/upload-sessions/ID/images/order"),
    ("POST", "/v1/api/upload-sessions/ID/stream-ticket"),
    ("GET", "/v1/widget.js"),
    ("GET", "/v1/widget-view.js"),
    ("GET", "/v1/api/images/IMG"),
    ("GET", "/v1/api/images/IMG/thumbnail"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/m/ID"),
];

/// Sends raw bytes on a fresh connection and reads the whole answer (the server closes or
/// sends Content-Length).
async fn raw(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    let mut tcp = tokio::net::TcpStream::connect(app.http)
        .await
        .expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| buf.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = serde_json::from_slice(&buf[end + 4..]).unwrap_or(Value::Null);
    (status, head, body)
}

fn check(what: &str, status: u16, head: &str, body: &Value, want: u16, reason: &str) {
    assert_eq!(status, want, "{what}: {head} {body}");
    assert!(
        head.contains("content-type: application/json"),
        "{what}: {head}"
    );
    assert_eq!(body["code"], want, "{what}: {body}");
    assert_eq!(body["reason"], reason, "{what}: {body}");
}

#[tokio::test]
async fn every_route_answers_malformed_requests_with_the_error_json() {
    let app = TestApp::spawn().await;
    for (method, route) in ROUTES {
        let host = app.http;
        let with_bad_segment = route.replace("ID", "%FF%FE").replace("IMG", "%C0");
        // A path segment that is not UTF-8 once decoded.
        if with_bad_segment != *route {
            let req = format!(
                "{method} {with_bad_segment} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            );
            let (s, h, b) = raw(&app, req.as_bytes()).await;
            check(
                &format!("{method} {route} bad segment"),
                s,
                &h,
                &b,
                400,
                "INVALID_ARGUMENT",
            );
        }
        // A wrong method: 405 with Allow.
        let wrong = if *method == "PATCH" { "PUT" } else { "PATCH" };
        let req = format!(
            "{wrong} {route} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        );
        let (s, h, b) = raw(&app, req.as_bytes()).await;
        check(
            &format!("{wrong} {route}"),
            s,
            &h,
            &b,
            405,
            "METHOD_NOT_ALLOWED",
        );
        assert!(h.contains("\r\nallow: "), "{route}: {h}");
        // The serve loop's own refusals, the same on every route.
        let serve_loop: [(&str, String, u16, &str); 6] = [
            (
                "no colon",
                format!("{method} {route} HTTP/1.1\r\nhost: {host}\r\nno colon here\r\n\r\n"),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "NUL",
                format!("{method} {route} HTTP/1.1\r\nhost: {host}\r\nx-a: a\0b\r\n\r\n"),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "content-length",
                format!("{method} {route} HTTP/1.1\r\nhost: {host}\r\ncontent-length: ten\r\n\r\n"),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "transfer-encoding",
                format!(
                    "{method} {route} HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: gzip\r\n\r\n"
                ),
                501,
                "NOT_IMPLEMENTED",
            ),
            (
                "long target",
                format!(
                    "{method} {route}?q={} HTTP/1.1\r\nhost: {host}\r\n\r\n",
                    "a".repeat(9 * 1024)
                ),
                414,
                "URI_TOO_LONG",
            ),
            (
                "large head",
                format!(
                    "{method} {route} HTTP/1.1\r\nhost: {host}\r\nx-big: {}\r\n\r\n",
                    "a".repeat(17 * 1024)
                ),
                431,
                "HEADERS_TOO_LARGE",
            ),
        ];
        for (what, req, want, reason) in serve_loop {
            let (s, h, b) = raw(&app, req.as_bytes()).await;
            check(&format!("{method} {route} {what}"), s, &h, &b, want, reason);
        }
    }
    // An unknown route.
    let res = app
        .client
        .get(app.url("/v1/api/nothing-here"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["reason"], "NOT_FOUND");
    // A query parameter given twice, and an undecodable query.
    for query in ["member_id=1&member_id=2", "member_id=%FF"] {
        let res = app
            .client
            .get(app.url(&format!("/v1/api/upload-sessions/abc?{query}")))
            .send()
            .await
            .expect("req");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["reason"], "INVALID_ARGUMENT", "{query}");
    }
    // HEAD answers carry no body, errors included.
    let res = app
        .client
        .head(app.url("/v1/api/images/nope"))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), 404);
    assert!(res.bytes().await.expect("body").is_empty());
}

/// One kept-alive connection, read answer by answer.
struct Conn {
    tcp: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// A complete answer: status, lower-cased head, body as JSON (`Null` if none or not JSON).
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

impl Conn {
    async fn open(app: &TestApp) -> Conn {
        let tcp = tokio::net::TcpStream::connect(app.http)
            .await
            .expect("connect");
        Conn {
            tcp,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("send");
    }

    /// More bytes; false at EOF or reset. Panics if nothing comes within 10 s.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut chunk));
        match read.await.expect("nothing from the server within 10 s") {
            Ok(n) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next answer; `bodiless` for the answer to a HEAD.
    async fn answer_to(&mut self, bodiless: bool) -> Answer {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(self.fill().await, "closed before a head: {:?}", self.text());
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let length = if bodiless {
            0
        } else {
            head.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().expect("length"))
        };
        while self.buf.len() < end + 4 + length {
            assert!(self.fill().await, "closed inside a body");
        }
        let body: Vec<u8> = self.buf.drain(..end + 4 + length).skip(end + 4).collect();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        Answer {
            status,
            head,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        }
    }

    async fn answer(&mut self) -> Answer {
        self.answer_to(false).await
    }

    /// The server closes (EOF or reset) with nothing more to say.
    async fn closes(&mut self) {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.text());
        assert!(
            !self.fill().await,
            "bytes after the last answer: {:?}",
            self.text()
        );
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

fn check_answer(what: &str, a: &Answer, want: u16, reason: &str) {
    check(what, a.status, &a.head, &a.body, want, reason);
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";

/// The serve loop's refusals, each a whole head, with the status and reason they get.
fn malformed_heads() -> Vec<(&'static str, String, u16, &'static str)> {
    let route = "/v1/api/upload-sessions";
    vec![
        (
            "no colon",
            format!("POST {route} HTTP/1.1\r\nhost: t\r\nno colon here\r\n\r\n"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "NUL",
            format!("GET {route} HTTP/1.1\r\nhost: t\r\nx-a: a\0b\r\n\r\n"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "content-length",
            format!("POST {route} HTTP/1.1\r\nhost: t\r\ncontent-length: ten\r\n\r\n"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "two lengths",
            format!(
                "POST {route} HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "length and chunked",
            format!(
                "POST {route} HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "not a URI",
            "GET http://[::1 HTTP/1.1\r\nhost: t\r\n\r\n".to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "request line",
            "GET\r\n\r\n".to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "transfer-encoding",
            format!("POST {route} HTTP/1.1\r\nhost: t\r\ntransfer-encoding: gzip\r\n\r\n"),
            501,
            "NOT_IMPLEMENTED",
        ),
        (
            "chunked on HTTP/1.0",
            format!("POST {route} HTTP/1.0\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"),
            411,
            "LENGTH_REQUIRED",
        ),
        (
            "long target",
            format!(
                "GET {route}?q={} HTTP/1.1\r\nhost: t\r\n\r\n",
                "a".repeat(9 * 1024)
            ),
            414,
            "URI_TOO_LONG",
        ),
        (
            "large head",
            format!(
                "GET {route} HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
                "a".repeat(17 * 1024)
            ),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "many headers",
            format!(
                "GET {route} HTTP/1.1\r\nhost: t\r\n{}\r\n",
                "x-h: 1\r\n".repeat(120)
            ),
            431,
            "HEADERS_TOO_LARGE",
        ),
    ]
}

#[tokio::test]
async fn every_head_of_a_connection_gets_the_error_json() {
    let app = TestApp::spawn().await;
    for (what, bad, want, reason) in malformed_heads() {
        // The first head of a connection.
        let mut conn = Conn::open(&app).await;
        conn.send(bad.as_bytes()).await;
        check_answer(
            &format!("first, {what}"),
            &conn.answer().await,
            want,
            reason,
        );
        conn.closes().await;

        // The second, after an answer on the kept-alive connection.
        let mut conn = Conn::open(&app).await;
        conn.send(HEALTHZ).await;
        assert_eq!(conn.answer().await.status, 200);
        conn.send(bad.as_bytes()).await;
        let second = conn.answer().await;
        check_answer(&format!("second, {what}"), &second, want, reason);
        assert!(
            second.head.contains("\r\nconnection: close"),
            "{what}: {}",
            second.head
        );
        conn.closes().await;

        // A pipelined third: both answers before it come first, in order.
        let mut conn = Conn::open(&app).await;
        let mut pipeline = HEALTHZ.to_vec();
        pipeline.extend_from_slice(b"GET /v1/api/nothing-here HTTP/1.1\r\nhost: test\r\n\r\n");
        pipeline.extend_from_slice(bad.as_bytes());
        conn.send(&pipeline).await;
        assert_eq!(conn.answer().await.status, 200, "{what}");
        check_answer(
            &format!("pipelined 404, {what}"),
            &conn.answer().await,
            404,
            "NOT_FOUND",
        );
        check_answer(
            &format!("third, {what}"),
            &conn.answer().await,
            want,
            reason,
        );
        conn.closes().await;
    }
}

#[tokio::test]
async fn a_slow_head_gets_408_and_a_silent_client_is_closed_silently() {
    let app =
        TestApp::spawn_with(|c| c.server.http.header_read_timeout = Duration::from_secs(1)).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n";
    // The first head of a connection, and a later head on a kept-alive one, a byte at a time:
    // the clock runs from the head's first byte, so it is cut before its end.
    for later in [false, true] {
        let mut conn = Conn::open(&app).await;
        if later {
            conn.send(HEALTHZ).await;
            assert_eq!(conn.answer().await.status, 200);
        }
        let mut sent = 0;
        for byte in head {
            if conn.tcp.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_millis(300), conn.tcp.read(&mut chunk));
            if let Ok(Ok(n)) = read.await {
                conn.buf.extend_from_slice(&chunk[..n]);
                break;
            }
        }
        assert!(
            sent < head.len(),
            "later={later}: cut only after the whole head"
        );
        let answer = conn.answer().await;
        check_answer(&format!("later={later}"), &answer, 408, "REQUEST_TIMEOUT");
        assert_eq!(
            answer.body["message"],
            "the request head arrived too slowly"
        );
        assert!(
            answer.head.contains("\r\nconnection: close"),
            "{}",
            answer.head
        );
        conn.closes().await;
    }
    // A connection that sends no byte at all is closed without an answer.
    let mut conn = Conn::open(&app).await;
    conn.closes().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_without_an_answer() {
    let app = TestApp::spawn_with(|c| {
        c.server.http.idle_timeout = Duration::from_secs(1);
        c.server.http.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    for requests in [1, 3] {
        let mut conn = Conn::open(&app).await;
        for _ in 0..requests {
            conn.send(HEALTHZ).await;
            assert_eq!(conn.answer().await.status, 200);
        }
        // No byte of a next request: no 408 (which a client would take for its next
        // request's answer), only the close.
        conn.closes().await;
    }
}

#[tokio::test]
async fn a_route_that_needs_a_body_answers_411_to_a_head_that_declares_none() {
    let app = TestApp::spawn().await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();
    let auth = format!("authorization: Bearer {token}\r\n");
    let tus = "tus-resumable: 1.0.0\r\nupload-offset: 0\r\ncontent-type: application/offset+octet-stream\r\n";
    for (method, path, headers) in [
        (
            "POST",
            format!("/v1/api/upload-sessions/{id}/images"),
            format!("{auth}content-type: multipart/form-data; boundary=XB\r\n"),
        ),
        (
            "PUT",
            format!("/v1/api/upload-sessions/{id}/images/order?member_id=1"),
            "content-type: application/json\r\n".to_owned(),
        ),
        (
            "PATCH",
            format!("/v1/api/upload-sessions/{id}/tus/nope"),
            format!("{auth}{tus}"),
        ),
        // tus's method override, as a client behind a PATCH-less proxy sends it.
        (
            "POST",
            format!("/v1/api/upload-sessions/{id}/tus/nope"),
            format!("{auth}{tus}x-http-method-override: PATCH\r\n"),
        ),
    ] {
        let what = format!("{method} {path}");
        let mut conn = Conn::open(&app).await;
        conn.send(format!("{method} {path} HTTP/1.1\r\nhost: t\r\n{headers}\r\n").as_bytes())
            .await;
        let answer = conn.answer().await;
        check_answer(&what, &answer, 411, "LENGTH_REQUIRED");
        // A declared empty body is no such case: the handler answers (and the connection,
        // whose framing was never in doubt, goes on).
        conn.send(
            format!("{method} {path} HTTP/1.1\r\nhost: t\r\n{headers}content-length: 0\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let answer = conn.answer().await;
        assert!(
            answer.status != 411 && answer.status >= 400,
            "{what} with content-length: 0: {} {}",
            answer.status,
            answer.body
        );
        conn.send(HEALTHZ).await;
        assert_eq!(conn.answer().await.status, 200, "{what}");
    }
    // Bodiless POSTs need no length; neither do routes whose body is optional.
    let mut conn = Conn::open(&app).await;
    for path in [
        format!("/v1/api/upload-sessions/{id}/stream-ticket?member_id=1"),
        format!("/v1/api/upload-sessions/{id}/complete?member_id=1"),
    ] {
        conn.send(format!("POST {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await;
        let answer = conn.answer().await;
        assert!(
            answer.status < 300,
            "{path}: {} {}",
            answer.status,
            answer.body
        );
    }
}

#[tokio::test]
async fn kept_alive_and_pipelined_requests_answer_in_order() {
    let app = TestApp::spawn().await;
    let json = br#"{"member_id":1}"#;
    let create = format!(
        "POST /v1/api/upload-sessions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        json.len(),
        String::from_utf8_lossy(json)
    );
    // The same body, chunked in two pieces with an extension and a trailer.
    let (a, b) = json.split_at(5);
    let create_chunked = format!(
        "POST /v1/api/upload-sessions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x};x=y\r\n{}\r\n{:x}\r\n{}\r\n0\r\nx-trailer: 1\r\n\r\n",
        a.len(),
        String::from_utf8_lossy(a),
        b.len(),
        String::from_utf8_lossy(b)
    );
    let head = "HEAD /healthz HTTP/1.1\r\nhost: t\r\n\r\n";
    let requests: [(&str, &[u8], u16); 5] = [
        ("GET", HEALTHZ, 200),
        ("POST", create.as_bytes(), 201),
        ("HEAD", head.as_bytes(), 200),
        ("POST chunked", create_chunked.as_bytes(), 201),
        (
            "GET",
            b"GET /v1/api/upload-sessions/nope?member_id=1 HTTP/1.1\r\nhost: t\r\n\r\n",
            404,
        ),
    ];
    // One after another, then all in one write; several rounds on one connection.
    let mut conn = Conn::open(&app).await;
    let mut created = Vec::new();
    for round in 0..2 {
        for (what, request, want) in requests {
            conn.send(request).await;
            let answer = conn.answer_to(what == "HEAD").await;
            assert_eq!(
                answer.status, want,
                "round {round}, {what}: {}",
                answer.body
            );
            if want == 201 {
                created.push(answer.body["identifier"].clone());
            }
        }
    }
    let pipeline: Vec<u8> = requests
        .iter()
        .flat_map(|(_, r, _)| r.iter().copied())
        .collect();
    conn.send(&[&pipeline[..], &pipeline[..]].concat()).await;
    for round in 0..2 {
        for (what, _, want) in requests {
            let answer = conn.answer_to(what == "HEAD").await;
            assert_eq!(
                answer.status, want,
                "pipelined round {round}, {what}: {}",
                answer.body
            );
            if want == 201 {
                created.push(answer.body["identifier"].clone());
            }
        }
    }
    // Every POST made its own session.
    created.sort_by_key(|v| v.to_string());
    created.dedup();
    assert_eq!(created.len(), 8);
    assert!(created.iter().all(Value::is_string));
}
