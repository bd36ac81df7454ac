//! Photo order and cover: `PUT …/images/order` and gRPC `ReorderImages`.

use std::time::Duration;

use qrupload::api::image::v1 as pb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{SseClient, TestApp, jpeg};

/// A session of member 1 with three photos; returns its identifier, upload token and ids in
/// upload order.
async fn three_photos(app: &TestApp) -> (String, String, Vec<String>) {
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();
    let res = app
        .upload(
            &id,
            &token,
            vec![
                ("a.jpg", jpeg(30, 20)),
                ("b.jpg", jpeg(31, 20)),
                ("c.jpg", jpeg(32, 20)),
            ],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let ids = ids_of(&body["images"]);
    assert_eq!(ids.len(), 3);
    (id, token, ids)
}

fn ids_of(images: &Value) -> Vec<String> {
    images
        .as_array()
        .expect("an array of images")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

fn positions_of(images: &Value) -> Vec<u64> {
    images
        .as_array()
        .expect("an array of images")
        .iter()
        .map(|i| i["position"].as_u64().expect("position"))
        .collect()
}

async fn put_order(app: &TestApp, id: &str, auth: Auth<'_>, body: Value) -> reqwest::Response {
    let path = match auth {
        Auth::Member(m) => format!("/v1/api/upload-sessions/{id}/images/order?member_id={m}"),
        Auth::Token(_) => format!("/v1/api/upload-sessions/{id}/images/order"),
    };
    let req = app.client.put(app.url(&path)).json(&body);
    let req = match auth {
        Auth::Token(t) => req.bearer_auth(t),
        Auth::Member(_) => req,
    };
    req.send().await.expect("reorder request")
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Member(u32),
    Token(&'a str),
}

async fn listed(app: &TestApp, id: &str) -> Vec<String> {
    let mut client = app.grpc_client().await;
    let images = client
        .get_images_by_identifier(pb::GetImagesByIdentifierRequest {
            member_id: 1,
            identifier: id.to_owned(),
        })
        .await
        .expect("list")
        .into_inner()
        .images;
    images.into_iter().map(|i| i.id).collect()
}

#[tokio::test]
async fn the_owner_reorders_over_http_and_the_cover_moves_to_position_one() {
    let app = TestApp::spawn().await;
    let (id, _, ids) = three_photos(&app).await;
    let wanted = vec![ids[2].clone(), ids[0].clone(), ids[1].clone()];

    let res = put_order(&app, &id, Auth::Member(1), json!({ "image_ids": wanted })).await;

    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(ids_of(&body["images"]), wanted);
    assert_eq!(positions_of(&body["images"]), vec![1, 2, 3]);
    assert_eq!(listed(&app, &id).await, wanted, "the order is stored");
}

#[tokio::test]
async fn the_phone_reorders_with_its_upload_token_and_later_uploads_go_last() {
    let app = TestApp::spawn().await;
    let (id, token, ids) = three_photos(&app).await;
    let wanted = vec![ids[1].clone(), ids[2].clone(), ids[0].clone()];

    let res = put_order(
        &app,
        &id,
        Auth::Token(&token),
        json!({ "image_ids": wanted }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = app
        .upload(&id, &token, vec![("d.jpg", jpeg(33, 20))], None)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let added = ids_of(&body["images"]);
    let mut expected = wanted.clone();
    expected.extend(added);
    assert_eq!(listed(&app, &id).await, expected);
}

#[tokio::test]
async fn reorder_over_grpc_answers_the_new_order() {
    let app = TestApp::spawn().await;
    let (id, _, ids) = three_photos(&app).await;
    let mut client = app.grpc_client().await;
    let wanted = vec![ids[2].clone(), ids[1].clone(), ids[0].clone()];

    let images = client
        .reorder_images(pb::ReorderImagesRequest {
            member_id: 1,
            identifier: id.clone(),
            image_ids: wanted.clone(),
        })
        .await
        .expect("reorder")
        .into_inner()
        .images;

    let got: Vec<(String, u32)> = images.into_iter().map(|i| (i.id, i.position)).collect();
    assert_eq!(
        got,
        vec![
            (wanted[0].clone(), 1),
            (wanted[1].clone(), 2),
            (wanted[2].clone(), 3)
        ]
    );
    assert_eq!(listed(&app, &id).await, wanted);

    // A wrong list and a wrong member, over gRPC too.
    let err = client
        .reorder_images(pb::ReorderImagesRequest {
            member_id: 1,
            identifier: id.clone(),
            image_ids: wanted[..2].to_vec(),
        })
        .await
        .expect_err("a short list is refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .reorder_images(pb::ReorderImagesRequest {
            member_id: 2,
            identifier: id.clone(),
            image_ids: wanted.clone(),
        })
        .await
        .expect_err("another member's session");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_reorder_is_one_change_watchers_see_once() {
    let app = TestApp::spawn().await;
    let (id, _, ids) = three_photos(&app).await;
    let mut watcher = SseClient::watch(&app, &id, 1).await;
    let (first, _) = watcher.snapshot_where(|_| true).await;
    let before: u64 = first
        .id
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("id");
    let wanted = vec![ids[1].clone(), ids[0].clone(), ids[2].clone()];

    let res = put_order(&app, &id, Auth::Member(1), json!({ "image_ids": wanted })).await;
    assert_eq!(res.status(), StatusCode::OK);

    // One `session` event and one snapshot, both at version + 1, in the new order.
    let session = watcher
        .next_within(Duration::from_secs(10))
        .await
        .expect("session event");
    assert_eq!(session.event, "session");
    assert_eq!(session.id, Some((before + 1).to_string()));
    assert_eq!(session.json()["version"], before + 1);
    let snapshot = watcher
        .next_within(Duration::from_secs(10))
        .await
        .expect("snapshot");
    assert_eq!(snapshot.event, "upload_by_qr");
    assert_eq!(snapshot.id, Some((before + 1).to_string()));
    assert_eq!(ids_of(&snapshot.json()), wanted);
    assert_eq!(positions_of(&snapshot.json()), vec![1, 2, 3]);
    // Nothing more: the next event is a later change, not a second copy of this one.
    let res = put_order(&app, &id, Auth::Member(1), json!({ "image_ids": ids })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let next = watcher
        .next_within(Duration::from_secs(10))
        .await
        .expect("next change");
    assert_eq!(next.id, Some((before + 2).to_string()));
}

#[tokio::test]
async fn lists_that_are_not_exactly_the_sessions_ids_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (id, _, ids) = three_photos(&app).await;
    let (other, other_token) = app.create_session(1).await;
    let other_id = other["identifier"].as_str().expect("identifier").to_owned();
    let res = app
        .upload(&other_id, &other_token, vec![("x.jpg", jpeg(20, 20))], None)
        .await;
    let foreign = ids_of(&res.json::<Value>().await.expect("json")["images"]);

    let bad: Vec<(&str, Value)> = vec![
        ("one missing", json!({ "image_ids": ids[..2] })),
        ("none", json!({ "image_ids": [] })),
        (
            "a duplicate",
            json!({ "image_ids": [ids[0], ids[0], ids[1], ids[2]] }),
        ),
        (
            "a duplicate in place of one",
            json!({ "image_ids": [ids[0], ids[0], ids[1]] }),
        ),
        (
            "another session's image",
            json!({ "image_ids": [ids[0], ids[1], foreign[0]] }),
        ),
        (
            "an extra id",
            json!({ "image_ids": [ids[0], ids[1], ids[2], "AAAAAAAAAAAAAAAAAAAAAA"] }),
        ),
        ("not strings", json!({ "image_ids": [1, 2, 3] })),
        ("no list", json!({})),
        ("a string", json!({ "image_ids": ids.join(",") })),
    ];
    for (what, body) in bad {
        let res = put_order(&app, &id, Auth::Member(1), body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        let err: Value = res.json().await.expect("error json");
        assert_eq!(err["reason"], "INVALID_ARGUMENT", "{what}");
        assert_eq!(err["code"], 400, "{what}");
    }
    assert_eq!(listed(&app, &id).await, ids, "nothing changed");

    // Not JSON: 415; a stranger: 404, as for any other route.
    let res = app
        .client
        .put(app.url(&format!(
            "/v1/api/upload-sessions/{id}/images/order?member_id=1"
        )))
        .body(json!({ "image_ids": ids }).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let res = put_order(&app, &id, Auth::Member(2), json!({ "image_ids": ids })).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = put_order(
        &app,
        &id,
        Auth::Token("not-the-token"),
        json!({ "image_ids": ids }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_closed_session_answers_409() {
    let app = TestApp::spawn().await;
    let (id, token, ids) = three_photos(&app).await;
    let res = app.complete(&id, 1).await;
    assert_eq!(res.status(), StatusCode::OK);
    let reversed: Vec<String> = ids.iter().rev().cloned().collect();

    for auth in [Auth::Member(1), Auth::Token(&token)] {
        let res = put_order(&app, &id, auth, json!({ "image_ids": reversed })).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        let err: Value = res.json().await.expect("error json");
        assert_eq!(err["reason"], "SESSION_CLOSED");
    }
    let err = app
        .grpc_client()
        .await
        .reorder_images(pb::ReorderImagesRequest {
            member_id: 1,
            identifier: id.clone(),
            image_ids: reversed,
        })
        .await
        .expect_err("closed");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(listed(&app, &id).await, ids);
}

#[tokio::test]
async fn cross_origin_pages_may_put_the_order() {
    let app =
        TestApp::spawn_with(|c| c.cors.allowed_origins = vec!["https://host.example".into()]).await;
    let (id, _, _) = three_photos(&app).await;

    let res = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("/v1/api/upload-sessions/{id}/images/order")),
        )
        .header("Origin", "https://host.example")
        .header("Access-Control-Request-Method", "PUT")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");

    assert!(res.status().is_success());
    let allowed = res
        .headers()
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(allowed.contains("PUT"), "{allowed}");
}
