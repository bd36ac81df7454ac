//! A webhook receiver in the test process: a real HTTP server on port 0 that records every
//! request, answers as scripted, and checks signatures the way a host's back end would.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::time::Instant;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Never answers.
    Hang,
    /// 307 to this same URL: followed, it would arrive again at once.
    Redirect,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub reply: Reply,
}

impl Received {
    pub fn id(&self) -> String {
        self.header("qrupload-event-id")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// Checks the headers and signature as SPEC.md says a receiver should (a `t` within
    /// 5 minutes) and returns the body.
    pub fn verified(&self, secret: &str) -> Value {
        assert_eq!(self.header("content-type"), "application/json");
        let signature = self.header("qrupload-signature");
        let (t, v1) = signature
            .split_once(',')
            .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
            .unwrap_or_else(|| panic!("signature header shape: {signature:?}"));
        let t: i64 = t.parse().expect("t is a unix time");
        assert!(
            (chrono::Utc::now().timestamp() - t).abs() <= 300,
            "t within 5 minutes"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected, "v1 is HMAC-SHA256(secret, \"t.body\")");
        let body: Value = serde_json::from_slice(&self.body).expect("JSON body");
        assert_eq!(body["id"], self.id(), "Qrupload-Event-Id is the body's id");
        assert_eq!(
            body["type"],
            self.header("qrupload-event-type"),
            "Qrupload-Event-Type is the body's type"
        );
        body
    }
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Option<Reply>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    /// Answers `script` in order, then `otherwise` (200 unless changed).
    pub async fn start(script: &[Reply]) -> Receiver {
        let inner = Arc::new(Inner::default());
        inner
            .script
            .lock()
            .expect("lock")
            .extend(script.iter().copied());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer_otherwise(&self, reply: Reply) {
        *self.inner.otherwise.lock().expect("lock") = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what arrived (a deadline for the outcome, not a timing
    /// assertion) and returns it.
    pub async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: {what} did not happen within 60 s; got {:#?}",
                received
                    .iter()
                    .map(|r| (r.header("qrupload-event-type"), r.id(), r.reply))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn hook(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let reply = inner
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .or_else(|| inner.otherwise.lock().ok().and_then(|o| *o))
        .unwrap_or(Reply::Status(200));
    if let Ok(mut received) = inner.received.lock() {
        received.push(Received {
            headers,
            body,
            reply,
        });
    }
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Reply::Redirect => (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, "/hook")],
        )
            .into_response(),
    }
}

/// Answered with a 2xx.
pub fn accepted(r: &Received) -> bool {
    matches!(r.reply, Reply::Status(code) if (200..300).contains(&code))
}
