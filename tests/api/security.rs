//! Who gets in and how often: jwt auth mode, upload-token scope, abuse limits (429 with
//! `Retry-After`), CORS and the pages' security headers.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use qrupload::conf::{AuthMode, Config, JwtAlgorithm, Secret};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{
    SseClient, TestApp, jpeg,
    jwt::{hs256_jwt, mint_jwt, now},
};

pub(crate) const SECRET: &str = "a test secret that is long enough for HS256";
const PUBLIC_PEM: &str = include_str!("../fixtures/jwt_rs256_public.pem");
const PRIVATE_PEM: &str = include_str!("../fixtures/jwt_rs256_private.pem");

/// An HS256 token for member `sub`, valid for `ttl` seconds (negative: already expired).
pub(crate) fn hs256(sub: &str, ttl: i64) -> String {
    hs256_jwt(SECRET, sub, ttl)
}

/// An app in jwt auth mode with [`SECRET`] and no leeway, then as `edit` changes it.
pub(crate) async fn jwt_app(edit: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.auth.mode = AuthMode::Jwt;
        c.auth.jwt.secret = Some(Secret::new(SECRET));
        c.auth.jwt.leeway = Duration::ZERO;
        edit(c);
    })
    .await
}

/// Creates a session with a bearer JWT; returns the identifier and the phone's upload token.
pub(crate) async fn create_with(app: &TestApp, jwt: &str) -> (String, String) {
    let res = app
        .client
        .post(app.url("/v1/api/upload-sessions"))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let token = body["upload_url"]
        .as_str()
        .and_then(|u| u.split_once("#t="))
        .map(|(_, t)| t.to_owned())
        .expect("token in the fragment");
    (body["identifier"].as_str().expect("id").to_owned(), token)
}

async fn reason(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

fn sse_url(app: &TestApp, id: &str, member: Option<u32>) -> String {
    match member {
        Some(m) => app.url(&format!(
            "/v1/api/sse/events?event=upload_by_qr&member_id={m}&identifier={id}"
        )),
        None => app.url(&format!(
            "/v1/api/sse/events?event=upload_by_qr&identifier={id}"
        )),
    }
}

#[tokio::test]
async fn jwt_mode_refuses_missing_expired_forged_and_foreign_tokens() {
    let app = jwt_app(|_| {}).await;
    let good = hs256("1", 600);
    let (id, _) = create_with(&app, &good).await;

    let expired = hs256("1", -60);
    let forged = mint_jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, also long enough for HS256"),
        "1",
        now() + 600,
    );
    // The unsigned `alg: none` trick, hand-made.
    let unsigned = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(r#"{{"sub":"1","exp":{}}}"#, now() + 600))
        )
    };
    let not_a_member = hs256("alice", 600);
    let unauthenticated: [(&str, Option<&str>); 5] = [
        ("missing", None),
        ("expired", Some(&expired)),
        ("wrongly signed", Some(&forged)),
        ("alg none", Some(&unsigned)),
        ("sub not a member id", Some(&not_a_member)),
    ];
    for (what, token) in unauthenticated {
        let with = |req: reqwest::RequestBuilder| match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let requests = [
            with(app.client.post(app.url("/v1/api/upload-sessions"))),
            with(
                app.client
                    .get(app.url(&format!("/v1/api/upload-sessions/{id}"))),
            ),
            with(
                app.client
                    .get(app.url(&format!("/v1/api/upload-sessions/{id}/qr.svg"))),
            ),
            with(
                app.client
                    .post(app.url(&format!("/v1/api/upload-sessions/{id}/complete"))),
            ),
            with(app.client.get(sse_url(&app, &id, None))),
        ];
        for req in requests {
            let (status, reason) = reason(req.send().await.expect("request")).await;
            assert_eq!(
                (status, reason.as_str()),
                (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
                "{what}"
            );
        }
    }

    // A valid token of another member: the same 404 as an unknown session.
    let other = hs256("2", 600);
    for req in [
        app.client
            .get(app.url(&format!("/v1/api/upload-sessions/{id}")))
            .bearer_auth(&other),
        app.client
            .post(app.url(&format!("/v1/api/upload-sessions/{id}/complete")))
            .bearer_auth(&other),
        app.client.get(sse_url(&app, &id, None)).bearer_auth(&other),
        // The member's own token with someone else's member_id.
        app.client
            .get(app.url(&format!("/v1/api/upload-sessions/{id}?member_id=2")))
            .bearer_auth(&good),
    ] {
        let (status, reason) = reason(req.send().await.expect("request")).await;
        assert_eq!(
            (status, reason.as_str()),
            (StatusCode::NOT_FOUND, "NOT_FOUND")
        );
    }

    // The owner gets in, with or without a matching member_id.
    for path in [
        format!("/v1/api/upload-sessions/{id}"),
        format!("/v1/api/upload-sessions/{id}?member_id=1"),
    ] {
        let res = app
            .client
            .get(app.url(&path))
            .bearer_auth(&good)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// A stream ticket for session `id`, asked for with the member's JWT.
pub(crate) async fn ticket_for(app: &TestApp, id: &str, jwt: &str) -> String {
    let res = app
        .client
        .post(app.url(&format!("/v1/api/upload-sessions/{id}/stream-ticket")))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("ticket");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    body["ticket"].as_str().expect("ticket").to_owned()
}

#[tokio::test]
async fn jwt_sse_takes_a_bearer_or_a_ticket_never_a_cookie_and_ends_when_the_token_expires() {
    let app = jwt_app(|_| {}).await;
    let (id, upload_token) = create_with(&app, &hs256("7", 600)).await;

    // EventSource cannot send headers: a stream ticket stands in for the token.
    let ticket = ticket_for(&app, &id, &hs256("7", 600)).await;
    let mut long = SseClient::open(
        app.client
            .get(format!("{}&ticket={ticket}", sse_url(&app, &id, Some(7)))),
    )
    .await;
    assert_eq!(long.status, StatusCode::OK);
    long.snapshot_where(|_| true).await;

    // The cookie the SSE route once read is not a credential.
    let res = app
        .client
        .get(sse_url(&app, &id, Some(7)))
        .header(
            header::COOKIE,
            format!("theme=dark; qrupload_jwt={}", hs256("7", 600)),
        )
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Never from the query string.
    let res = app
        .client
        .get(format!(
            "{}&access_token={}",
            sse_url(&app, &id, Some(7)),
            hs256("7", 600)
        ))
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A token about to expire: the stream is served, then ends at `exp`.
    let mut short = SseClient::open(
        app.client
            .get(sse_url(&app, &id, None))
            .bearer_auth(hs256("7", 2)),
    )
    .await;
    assert_eq!(short.status, StatusCode::OK);
    short.snapshot_where(|_| true).await;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while short.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends when its token expires");

    // The long-lived stream goes on and sees the next upload.
    let res = app
        .upload(&id, &upload_token, vec![("a.jpg", jpeg(32, 24))], None)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    long.snapshot_where(|images| images.as_array().is_some_and(|a| a.len() == 1))
        .await;
}

#[tokio::test]
async fn jwt_rs256_verifies_with_the_public_key_and_refuses_algorithm_swaps() {
    let app = jwt_app(|c| {
        c.auth.jwt.algorithm = JwtAlgorithm::RS256;
        c.auth.jwt.public_key_pem = Some(PUBLIC_PEM.into());
    })
    .await;
    let private = EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).expect("private key");
    let rs = mint_jwt(Algorithm::RS256, &private, "3", now() + 600);
    let (id, _) = create_with(&app, &rs).await;

    // HS256 signed with the public key as the secret: the classic key-confusion forgery.
    let swapped = mint_jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(PUBLIC_PEM.as_bytes()),
        "3",
        now() + 600,
    );
    let res = app
        .client
        .get(app.url(&format!("/v1/api/upload-sessions/{id}")))
        .bearer_auth(&swapped)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_upload_token_reaches_its_own_session_and_nothing_else() {
    // jwt mode: the phone's token is not a member token.
    let app = jwt_app(|_| {}).await;
    let owner = hs256("5", 600);
    let (a, token_a) = create_with(&app, &owner).await;
    let (b, token_b) = create_with(&app, &owner).await;

    for req in [
        app.client
            .get(sse_url(&app, &a, Some(5)))
            .bearer_auth(&token_a),
        app.client
            .post(app.url(&format!("/v1/api/upload-sessions/{a}/complete")))
            .bearer_auth(&token_a),
        app.client
            .get(app.url(&format!("/v1/api/upload-sessions/{a}")))
            .bearer_auth(&token_a),
        app.client
            .post(app.url("/v1/api/upload-sessions"))
            .bearer_auth(&token_a),
    ] {
        assert_eq!(
            req.send().await.expect("request").status(),
            StatusCode::UNAUTHORIZED,
            "an upload token is no member token"
        );
    }

    // Session A's token on session B: the same 404 as an unknown session.
    let res = app
        .upload(&b, &token_a, vec![("x.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(
        reason(res).await,
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
    let res = app.upload_info(&b, &token_a).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let res = app
        .upload(&b, &token_b, vec![("y.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let image = body["images"][0]["id"]
        .as_str()
        .expect("image id")
        .to_owned();
    let delete = |token: String| {
        app.client
            .delete(app.url(&format!("/v1/api/upload-sessions/{b}/images/{image}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(delete(token_a.clone()).await.expect("delete").status(), 404);
    assert_eq!(delete(hs256("6", 600)).await.expect("delete").status(), 404);
    assert_eq!(
        app.blob_count(),
        2,
        "the image and its thumbnail are still there"
    );
    // The owner's JWT deletes it.
    assert_eq!(delete(owner.clone()).await.expect("delete").status(), 204);
}

#[tokio::test]
async fn upload_and_creation_rates_answer_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.limits.uploads_per_session_per_minute = 2;
        c.limits.uploads_per_ip_per_minute = 4;
        c.limits.sessions_per_member_per_hour = 3;
    })
    .await;
    let (s1, t1) = app.create_session(1).await;
    let s1 = s1["identifier"].as_str().expect("id").to_owned();
    for _ in 0..2 {
        let res = app
            .upload(&s1, &t1, vec![("a.jpg", jpeg(16, 16))], None)
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let blobs = app.blob_count();
    let res = app
        .upload(&s1, &t1, vec![("a.jpg", jpeg(16, 16))], None)
        .await;
    let retry_after: u64 = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        reason(res).await,
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED".into())
    );
    assert_eq!(app.blob_count(), blobs, "a refused upload stores nothing");

    // Another session from the same address: the refused upload counted too, so the
    // per-address allowance (4) has one left.
    let (s2, t2) = app.create_session(1).await;
    let s2 = s2["identifier"].as_str().expect("id").to_owned();
    let res = app
        .upload(&s2, &t2, vec![("b.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .upload(&s2, &t2, vec![("b.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(
        reason(res).await,
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED".into())
    );

    // Session creations per member: two made above, one more allowed, then 429.
    app.create_session(1).await;
    let res = app
        .client
        .post(app.url("/v1/api/upload-sessions"))
        .json(&json!({ "member_id": 1 }))
        .send()
        .await
        .expect("create");
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        reason(res).await,
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED".into())
    );
    app.create_session(2).await;
}

#[tokio::test]
async fn open_streams_are_capped_per_member_and_per_address() {
    let app = TestApp::spawn_with(|c| {
        c.limits.streams_per_member = 2;
        c.limits.streams_per_ip = 3;
    })
    .await;
    let (a, _) = app.create_session(1).await;
    let a = a["identifier"].as_str().expect("id").to_owned();
    let (b, _) = app.create_session(2).await;
    let b = b["identifier"].as_str().expect("id").to_owned();

    let first = SseClient::watch(&app, &a, 1).await;
    let _second = SseClient::watch(&app, &a, 1).await;
    let third = SseClient::connect(
        &app,
        &format!("event=upload_by_qr&member_id=1&identifier={a}"),
        None,
    )
    .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(third.response_headers.contains_key(header::RETRY_AFTER));

    // Member 2 may open one more: the address is then at its 3.
    let _fourth = SseClient::watch(&app, &b, 2).await;
    let fifth = SseClient::connect(
        &app,
        &format!("event=upload_by_qr&member_id=2&identifier={b}"),
        None,
    )
    .await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS);

    // A stream that ends gives its place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = SseClient::connect(
            &app,
            &format!("event=upload_by_qr&member_id=1&identifier={a}"),
            None,
        )
        .await;
        if again.status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place comes back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cors_allows_only_listed_origins_and_pages_forbid_framing() {
    let app = TestApp::spawn_with(|c| {
        c.cors.allowed_origins = vec![
            "https://host.example".into(),
            "https://admin.example".into(),
        ];
    })
    .await;
    let (id, _) = app.open_session(1).await;
    let path = format!("/v1/api/upload-sessions/{id}?member_id=1");

    let res = app
        .client
        .get(app.url(&path))
        .header(header::ORIGIN, "https://host.example")
        .send()
        .await
        .expect("get");
    let h = res.headers();
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://host.example"
    );
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(h.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("origin"))
    }));

    // Preflight for the phone-style upload with its headers.
    let res = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("/v1/api/upload-sessions/{id}/images")),
        )
        .header(header::ORIGIN, "https://admin.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, idempotency-key",
        )
        .send()
        .await
        .expect("preflight");
    assert!(res.status().is_success(), "{}", res.status());
    let allowed = res.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"));

    // Not listed, a prefix trick, and the SSE route: no grant.
    for origin in [
        "https://evil.example",
        "https://host.example.evil.example",
        "null",
    ] {
        let res = app
            .client
            .get(app.url(&path))
            .header(header::ORIGIN, origin)
            .send()
            .await
            .expect("get");
        assert!(
            !res.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{origin}"
        );
    }
    let sse = SseClient::open(
        app.client
            .get(sse_url(&app, &id, Some(1)))
            .header(header::ORIGIN, "https://host.example"),
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    assert_eq!(
        sse.response_headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://host.example"
    );

    // Pages: never framed, no referrer, no sniffing, and no cross-origin grant.
    for page in ["/".to_owned(), format!("/m/{id}")] {
        let res = app
            .client
            .get(app.url(&page))
            .header(header::ORIGIN, "https://host.example")
            .send()
            .await
            .expect("page");
        let h = res.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap_or("");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}

#[tokio::test]
async fn without_an_allowlist_no_origin_is_granted() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(app.url("/v1/api/upload-sessions"))
        .header(header::ORIGIN, "https://host.example")
        .json(&json!({ "member_id": 1 }))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(
        !res.headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
}
