//! One error shape everywhere: every route, given each malformed input, answers SPEC's JSON
//! error (status, `application/json`, `code` == status, the reason SPEC lists), including the
//! answers made before a handler runs and the serve loop's own.

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
