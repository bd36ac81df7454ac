//! The published OpenAPI document against the running app: it is served as committed, and
//! every operation it lists reaches a handler and answers one of the statuses it documents.

use serde_json::Value;

use crate::helpers::{TestApp, jpeg};

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let served: Value = res.json().await.unwrap();
    let committed: Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).expect("docs/openapi.json");
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_documented_operation_answers_a_documented_status() {
    // Arrange: a session with one image, so each route has something real to act on.
    let app = TestApp::spawn().await;
    let (identifier, token) = app.open_session(7).await;
    let uploaded: Value = app
        .upload(&identifier, &token, vec![("a.jpg", jpeg(16, 12))], None)
        .await
        .json()
        .await
        .unwrap();
    let image_id = uploaded["images"][0]["id"].as_str().unwrap().to_owned();
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Operations that close or delete go last, so the others see an open session.
    let mut operations: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.push((method.clone(), path.clone(), op.clone()));
        }
    }
    operations.sort_by_key(|(method, path, _)| (path.ends_with("/complete"), method == "delete"));
    assert!(operations.len() >= 23, "{} operations", operations.len());

    for (method, path, op) in operations {
        // Act: fill the path with real ids and send what a client of this route sends.
        let url = app.url(
            &path
                .replace("{identifier}", &identifier)
                .replace("{image_id}", &image_id),
        );
        let photo = jpeg(8, 8);
        let url = if path.ends_with("/tus/{upload_id}") {
            // A fresh upload for each tus operation, so each can succeed.
            let created = app
                .client
                .post(app.url(&format!("/v1/api/upload-sessions/{identifier}/tus/")))
                .bearer_auth(&token)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Length", photo.len().to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            let location = created.headers()["location"].to_str().unwrap().to_owned();
            let upload_id = location.rsplit('/').next().unwrap().to_owned();
            url.replace("{upload_id}", &upload_id)
        } else {
            url
        };
        let mut req = app
            .client
            .request(method.to_uppercase().parse().unwrap(), &url)
            .bearer_auth(&token);
        if path.contains("/tus/") {
            req = req.header("Tus-Resumable", "1.0.0");
        }
        if path.ends_with("/tus/") && method == "post" {
            req = req.header("Upload-Length", photo.len().to_string());
        }
        if path.ends_with("/tus/{upload_id}") && method == "patch" {
            req = req
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
                .body(photo.clone());
        }
        if path.starts_with("/v1/api/upload-sessions") && !path.ends_with("/images") {
            req = req.query(&[("member_id", "7")]);
        }
        if path == "/v1/api/upload-sessions" {
            req = req.json(&serde_json::json!({ "member_id": 7 }));
        }
        if path.ends_with("/images") && method == "post" {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(jpeg(8, 8)).file_name("b.jpg"),
            );
            req = req.multipart(form);
        }
        if path.ends_with("/images/order") {
            // Every image the session has by now, last first.
            let info: Value = app
                .upload_info(&identifier, &token)
                .await
                .json()
                .await
                .unwrap();
            let mut ids: Vec<&str> = info["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap())
                .collect();
            ids.reverse();
            req = req.json(&serde_json::json!({ "image_ids": ids }));
        }
        if path == "/v1/api/sse/events" {
            req = req.query(&[
                ("event", "upload_by_qr"),
                ("member_id", "7"),
                ("identifier", identifier.as_str()),
            ]);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        // The stream never ends by itself: its status is all this test needs.
        let body = if path == "/v1/api/sse/events" {
            String::new()
        } else {
            res.text().await.unwrap_or_default()
        };

        // Assert: the status is one the document lists for this operation.
        let code = status.as_u16().to_string();
        assert!(
            op["responses"].get(&code).is_some(),
            "{method} {path} answered {code}, which it does not document: {body}"
        );
        assert!(
            status.is_success(),
            "{method} {path} answered {code} to a well-formed request: {body}"
        );
    }
}
