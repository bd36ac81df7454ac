//! Stream tickets: how `EventSource` (which sends no headers) opens the SSE stream in jwt
//! mode without a JWT in any URL. One connect attempt per ticket, 60 s, one session.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    helpers::{SseClient, TestApp, jpeg},
    security::{create_with, hs256, jwt_app, ticket_for},
};

fn events(app: &TestApp, id: &str, ticket: &str) -> String {
    app.url(&format!(
        "/v1/api/sse/events?event=upload_by_qr&identifier={id}&ticket={ticket}"
    ))
}

async fn reason(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn a_ticket_opens_one_stream_and_is_then_spent() {
    let app = jwt_app(|_| {}).await;
    let jwt = hs256("5", 600);
    let (id, upload_token) = create_with(&app, &jwt).await;

    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket")))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("ticket");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = res.json().await.expect("json");
    let ticket = body["ticket"].as_str().expect("ticket").to_owned();
    // Opaque (no JWT inside, not JWT-shaped), 256 bits, expiring about a minute from now.
    assert_eq!(ticket.len(), 43);
    assert!(!ticket.contains('.') && !ticket.contains(&jwt));
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("at"))
        .expect("RFC 3339");
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((50..=60).contains(&left), "valid for 60 s, {left} left");

    // Once: the stream opens and follows the session.
    let mut watcher = SseClient::open(app.client.get(events(&app, &id, &ticket))).await;
    assert_eq!(watcher.status, StatusCode::OK);
    watcher.snapshot_where(|_| true).await;
    let res = app
        .upload(&id, &upload_token, vec![("a.jpg", jpeg(30, 20))], None)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    watcher
        .snapshot_where(|images| images.as_array().is_some_and(|a| a.len() == 1))
        .await;

    // Twice: 401, with the error JSON.
    let res = app
        .client
        .get(events(&app, &id, &ticket))
        .send()
        .await
        .expect("again");
    assert_eq!(
        reason(res).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into())
    );
    // A fresh ticket per reconnect works again.
    let again = ticket_for(&app, &id, &jwt).await;
    assert_ne!(again, ticket);
    let watcher = SseClient::open(app.client.get(events(&app, &id, &again))).await;
    assert_eq!(watcher.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_attempt_spends_the_ticket_too_and_tickets_are_bound_to_their_session() {
    let app = jwt_app(|_| {}).await;
    let jwt = hs256("5", 600);
    let (id, _) = create_with(&app, &jwt).await;
    let (other, _) = create_with(&app, &jwt).await;

    // Used on another session of the same member: 401, and spent.
    let ticket = ticket_for(&app, &id, &jwt).await;
    let res = app
        .client
        .get(events(&app, &other, &ticket))
        .send()
        .await
        .expect("wrong session");
    assert_eq!(reason(res).await.0, StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(events(&app, &id, &ticket))
        .send()
        .await
        .expect("right session, too late");
    assert_eq!(reason(res).await.0, StatusCode::UNAUTHORIZED);

    // An attempt refused for a bad event name spends it as well.
    let ticket = ticket_for(&app, &id, &jwt).await;
    let res = app
        .client
        .get(app.url(&format!(
            "/v1/api/sse/events?event=bad%20name&identifier={id}&ticket={ticket}"
        )))
        .send()
        .await
        .expect("bad event");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .client
        .get(events(&app, &id, &ticket))
        .send()
        .await
        .expect("spent");
    assert_eq!(reason(res).await.0, StatusCode::UNAUTHORIZED);

    // A ticket naming another member than `member_id`: the usual 404.
    let ticket = ticket_for(&app, &id, &jwt).await;
    let res = app
        .client
        .get(format!("{}&member_id=6", events(&app, &id, &ticket)))
        .send()
        .await
        .expect("other member");
    assert_eq!(reason(res).await.0, StatusCode::NOT_FOUND);

    // Unknown and empty tickets.
    for ticket in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""] {
        let res = app
            .client
            .get(events(&app, &id, ticket))
            .send()
            .await
            .expect("unknown");
        assert_eq!(reason(res).await.0, StatusCode::UNAUTHORIZED, "{ticket:?}");
    }
}

#[tokio::test]
async fn only_the_owner_gets_a_ticket() {
    let app = jwt_app(|_| {}).await;
    let jwt = hs256("5", 600);
    let (id, upload_token) = create_with(&app, &jwt).await;
    let url = app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket"));

    let cases = [
        ("no token", app.client.post(&url), StatusCode::UNAUTHORIZED),
        (
            "expired token",
            app.client.post(&url).bearer_auth(hs256("5", -60)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "the phone's token",
            app.client.post(&url).bearer_auth(&upload_token),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another member",
            app.client.post(&url).bearer_auth(hs256("6", 600)),
            StatusCode::NOT_FOUND,
        ),
        (
            "an unknown session",
            app.client
                .post(app.url("/v1/api/upload-sessions/AAAAAAAAAAAAAAAAAAAAAA/stream-ticket"))
                .bearer_auth(&jwt),
            StatusCode::NOT_FOUND,
        ),
        (
            "a body that is not an object",
            app.client
                .post(&url)
                .bearer_auth(&jwt)
                .json(&serde_json::json!([1])),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a body that is not JSON",
            app.client.post(&url).bearer_auth(&jwt).body("x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (what, req, status) in cases {
        let res = req.send().await.expect("request");
        let (got, reason) = reason(res).await;
        assert_eq!(got, status, "{what}");
        assert!(!reason.is_empty(), "{what}: error JSON");
    }
    let res = app
        .client
        .post(&url)
        .bearer_auth(&jwt)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("{}");
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let app = jwt_app(|c| c.sse.ticket_ttl = Duration::from_secs(1)).await;
    let jwt = hs256("5", 600);
    let (id, _) = create_with(&app, &jwt).await;
    let ticket = ticket_for(&app, &id, &jwt).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;

    let res = app
        .client
        .get(events(&app, &id, &ticket))
        .send()
        .await
        .expect("expired");
    assert_eq!(
        reason(res).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into())
    );
}

#[tokio::test]
async fn a_ticket_stream_ends_when_the_jwt_behind_it_expires() {
    let app = jwt_app(|_| {}).await;
    let (id, _) = create_with(&app, &hs256("5", 600)).await;
    let ticket = ticket_for(&app, &id, &hs256("5", 2)).await;

    let mut watcher = SseClient::open(app.client.get(events(&app, &id, &ticket))).await;
    assert_eq!(watcher.status, StatusCode::OK);
    watcher.snapshot_where(|_| true).await;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while watcher.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends when the JWT expires");
}

#[tokio::test]
async fn dev_mode_tickets_name_the_member_in_the_query() {
    let app = TestApp::spawn().await;
    let (session, _) = app.create_session(3).await;
    let id = session["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();
    let url = app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket"));

    let res = app.client.post(&url).send().await.expect("no member");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .client
        .post(format!("{url}?member_id=4"))
        .send()
        .await
        .expect("other member");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .client
        .post(format!("{url}?member_id=3"))
        .send()
        .await
        .expect("owner");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let ticket = body["ticket"].as_str().expect("ticket");

    // With a ticket, `member_id` may be left out of the stream's URL.
    let watcher = SseClient::open(app.client.get(events(&app, &id, ticket))).await;
    assert_eq!(watcher.status, StatusCode::OK);
}
