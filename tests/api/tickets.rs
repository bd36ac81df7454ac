//! Stream tickets: how `EventSource` (which sends no headers) opens the SSE stream in jwt
//! mode without a JWT in any URL. One connect attempt per ticket, 60 s, one session.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    helpers::{Caller, SseClient, TestApp, jpeg},
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

/// The owner and the session's phone (see `the_phone_trades_its_upload_token_for_a_ticket`);
/// nobody else.
#[tokio::test]
async fn only_the_owner_and_its_phone_get_a_ticket() {
    let app = jwt_app(|_| {}).await;
    let jwt = hs256("5", 600);
    let (id, _) = create_with(&app, &jwt).await;
    let (_, other_token) = create_with(&app, &hs256("6", 600)).await;
    let url = app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket"));

    let cases = [
        ("no token", app.client.post(&url), StatusCode::UNAUTHORIZED),
        (
            "expired token",
            app.client.post(&url).bearer_auth(hs256("5", -60)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a wrong upload token",
            app.client
                .post(&url)
                .bearer_auth("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd"),
            StatusCode::NOT_FOUND,
        ),
        (
            "another session's upload token",
            app.client.post(&url).bearer_auth(&other_token),
            StatusCode::NOT_FOUND,
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

/// A ticket bought with the phone's upload token (in the `Authorization` header: the token
/// never goes into a URL).
async fn phone_ticket(app: &TestApp, id: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket")))
        .bearer_auth(token)
        .send()
        .await
        .expect("phone ticket")
}

async fn phone_ticket_ok(app: &TestApp, id: &str, token: &str) -> String {
    let res = phone_ticket(app, id, token).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    body["ticket"].as_str().expect("ticket").to_owned()
}

fn version_of(event: &crate::helpers::Event) -> u64 {
    event
        .id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .expect("a snapshot carries the version as its id")
}

/// SPEC names the owner only; the phone may buy a ticket too (a deliberate extension), so
/// its page can follow the session live. The ticket is bound to the session exactly as the
/// owner's: one connect, then spent; the stream shows what the member does on the PC.
#[tokio::test]
async fn the_phone_trades_its_upload_token_for_a_ticket() {
    let app = jwt_app(|_| {}).await;
    let jwt = hs256("5", 600);
    let (id, token) = create_with(&app, &jwt).await;

    // Arrange: upload-info names the stream, without any credentials in the URL.
    let res = app.upload_info(&id, &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let info: Value = res.json().await.expect("json");
    let events_url = info["events_url"].as_str().expect("events_url").to_owned();
    assert_eq!(
        events_url,
        format!("/v1/api/sse/events?event=upload_by_qr&identifier={id}")
    );
    let info_version = info["version"].as_u64().expect("upload-info's version");

    // Act: the phone buys a ticket with its token.
    let res = phone_ticket(&app, &id, &token).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = res.json().await.expect("json");
    let ticket = body["ticket"].as_str().expect("ticket").to_owned();
    assert_eq!(ticket.len(), 43);
    assert!(!ticket.contains(&token));
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("at"))
        .expect("RFC 3339");
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((50..=60).contains(&left), "valid for 60 s, {left} left");

    // Assert: the stream opens and follows what the member does on the PC.
    let url = app.url(&format!("{events_url}&ticket={ticket}"));
    let mut phone = SseClient::open(app.client.get(&url)).await;
    assert_eq!(phone.status, StatusCode::OK);
    let (first, _) = phone.snapshot_where(|_| true).await;
    assert_eq!(version_of(&first), info_version);
    let res = app
        .upload(
            &id,
            &token,
            vec![("a.jpg", jpeg(30, 20)), ("b.jpg", jpeg(31, 20))],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (_, images) = phone
        .snapshot_where(|images| images.as_array().is_some_and(|a| a.len() == 2))
        .await;
    let ids: Vec<String> = images
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();

    // The member reorders on the PC (with its JWT): the phone sees the new order, and the
    // reorder's answer names the version its snapshot carries.
    let res = app
        .client
        .put(app.url(&format!("/v1/api/upload-sessions/{id}/images/order")))
        .bearer_auth(&jwt)
        .json(&serde_json::json!({ "image_ids": [ids[1], ids[0]] }))
        .send()
        .await
        .expect("reorder");
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.expect("json");
    let reordered = answer["version"].as_u64().expect("the reorder's version");
    let (event, images) = phone
        .snapshot_where(|images| images[0]["id"] == ids[1].as_str())
        .await;
    assert_eq!(version_of(&event), reordered);
    assert_eq!(images[1]["id"], ids[0].as_str());

    // The member deletes one on the PC: the phone sees it go.
    let path = format!("/v1/api/upload-sessions/{id}/images/{}", ids[0]);
    let res = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    phone
        .snapshot_where(|images| images.as_array().is_some_and(|a| a.len() == 1))
        .await;

    // A ticket is spent by its connect: the same one again is refused.
    let res = app.client.get(&url).send().await.expect("again");
    assert_eq!(
        reason(res).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into())
    );

    // The member completes: the phone's stream says so, then ends.
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/complete")))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("complete");
    assert_eq!(res.status(), StatusCode::OK);
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        let mut completed = false;
        while let Some(event) = phone.next().await {
            if event.event == "session" && event.json()["status"] == "completed" {
                completed = true;
            }
        }
        completed
    })
    .await;
    assert_eq!(done, Ok(true), "a completed event, then the end");

    // A closed session sells the phone no ticket (its token uploads nothing more).
    let res = phone_ticket(&app, &id, &token).await;
    assert_eq!(
        reason(res).await,
        (StatusCode::CONFLICT, "SESSION_CLOSED".into())
    );
}

#[tokio::test]
async fn a_phone_ticket_is_bound_to_its_session_and_a_wrong_token_buys_none() {
    let app = TestApp::spawn().await;
    let (session, token) = app.create_session(3).await;
    let id = session["identifier"].as_str().expect("id").to_owned();
    let (other, other_token) = app.create_session(3).await;
    let other = other["identifier"].as_str().expect("id").to_owned();

    // Named for another session (of the same member): refused, and spent.
    let ticket = phone_ticket_ok(&app, &id, &token).await;
    let res = app
        .client
        .get(events(&app, &other, &ticket))
        .send()
        .await
        .expect("another session");
    assert_eq!(
        reason(res).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into())
    );
    let res = app
        .client
        .get(events(&app, &id, &ticket))
        .send()
        .await
        .expect("its own session, too late");
    assert_eq!(reason(res).await.0, StatusCode::UNAUTHORIZED);

    // A wrong token, another session's token: the same 404 as an unknown session; no
    // credentials at all (dev mode): `member_id` is required.
    let res = phone_ticket(&app, &id, "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd").await;
    assert_eq!(
        reason(res).await,
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
    let res = phone_ticket(&app, &id, &other_token).await;
    assert_eq!(
        reason(res).await,
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket")))
        .send()
        .await
        .expect("no credentials");
    assert_eq!(reason(res).await.0, StatusCode::BAD_REQUEST);

    // The phone's own ticket opens its session's stream; the phone can delete through it
    // and still watch.
    let ticket = phone_ticket_ok(&app, &id, &token).await;
    let mut phone = SseClient::open(app.client.get(events(&app, &id, &ticket))).await;
    assert_eq!(phone.status, StatusCode::OK);
    phone.snapshot_where(|_| true).await;
    let res = app
        .upload(&id, &token, vec![("a.jpg", jpeg(30, 20))], None)
        .await;
    let body: Value = res.json().await.expect("json");
    let image = body["images"][0]["id"].as_str().expect("id").to_owned();
    phone
        .snapshot_where(|images| images.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let res = app.delete_image(&id, &image, Caller::Member(3)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    phone
        .snapshot_where(|images| images.as_array().is_some_and(|a| a.is_empty()))
        .await;
}

#[tokio::test]
async fn a_phone_ticket_needs_a_token_in_jwt_mode_and_expires() {
    // A ticket that expires as it is made: no waiting for the clock.
    let app = jwt_app(|c| c.sse.ticket_ttl = Duration::ZERO).await;
    let (id, token) = create_with(&app, &hs256("5", 600)).await;

    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket")))
        .send()
        .await
        .expect("no token");
    assert_eq!(
        reason(res).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into())
    );

    let ticket = phone_ticket_ok(&app, &id, &token).await;
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
