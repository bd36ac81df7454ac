//! The gRPC API as an internal service uses it, through the generated tonic client.

use std::time::Duration;

use futures::StreamExt;
use qrupload::{api::image::v1 as pb, conf::ByteSize};
use tonic::Code;

use crate::helpers::{SseClient, TestApp, jpeg};

#[tokio::test]
async fn session_lifecycle_over_grpc() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc_client().await;

    // Create.
    let created = client
        .create_upload_session(pb::CreateUploadSessionRequest {
            member_id: 7,
            ttl_seconds: Some(600),
            max_images: Some(5),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.identifier.len(), 22);
    assert_eq!(created.member_id, 7);
    assert_eq!(created.max_images, 5);
    assert_eq!(created.status, pb::SessionStatus::Open as i32);
    assert!(!created.upload_token.is_empty());
    assert!(created.upload_url.ends_with(&format!(
        "/m/{}#t={}",
        created.identifier, created.upload_token
    )));

    // Read back.
    let got = client
        .get_upload_session(pb::GetUploadSessionRequest {
            member_id: 7,
            identifier: created.identifier.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.identifier, created.identifier);
    assert!(
        got.upload_token.is_empty(),
        "the token is shown once, at creation"
    );

    // List: empty.
    let images = client
        .get_images_by_identifier(pb::GetImagesByIdentifierRequest {
            member_id: 7,
            identifier: created.identifier.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    assert!(images.images.is_empty());

    // Complete, twice: the same session both times.
    for _ in 0..2 {
        let done = client
            .complete_upload_session(pb::CompleteUploadSessionRequest {
                member_id: 7,
                identifier: created.identifier.clone(),
            })
            .await
            .expect("complete")
            .into_inner();
        assert_eq!(done.status, pb::SessionStatus::Completed as i32);
        assert_eq!(done.version, created.version + 1);
    }
}

#[tokio::test]
async fn grpc_errors_do_not_reveal_sessions() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc_client().await;
    let created = app.grpc_session(1, None).await;

    let wrong_member = client
        .get_upload_session(pb::GetUploadSessionRequest {
            member_id: 2,
            identifier: created.identifier.clone(),
        })
        .await
        .expect_err("wrong member");
    assert_eq!(wrong_member.code(), Code::NotFound);
    let unknown = client
        .get_images_by_identifier(pb::GetImagesByIdentifierRequest {
            member_id: 1,
            identifier: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        })
        .await
        .expect_err("unknown identifier");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), wrong_member.message());

    let empty = client
        .get_upload_session(pb::GetUploadSessionRequest {
            member_id: 1,
            identifier: String::new(),
        })
        .await
        .expect_err("empty identifier");
    assert_eq!(empty.code(), Code::InvalidArgument);
    let bad_ttl = client
        .create_upload_session(pb::CreateUploadSessionRequest {
            member_id: 1,
            ttl_seconds: Some(0),
            max_images: None,
        })
        .await
        .expect_err("zero ttl");
    assert_eq!(bad_ttl.code(), Code::InvalidArgument);
    let too_many = client
        .create_upload_session(pb::CreateUploadSessionRequest {
            member_id: 1,
            ttl_seconds: None,
            max_images: Some(10_000),
        })
        .await
        .expect_err("max_images above the limit");
    assert_eq!(too_many.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "image.v1.ImageService".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "image.v1.ImageService")
    );
}

#[tokio::test]
async fn watch_images_sees_an_http_upload_and_upload_image_reaches_sse() {
    let app = TestApp::spawn().await;
    let (identifier, token) = app.open_session(3).await;
    let mut client = app.grpc_client().await;

    // A service watches over gRPC; the desktop watches over SSE.
    let mut watch = client
        .watch_images(pb::WatchImagesRequest {
            member_id: 3,
            identifier: identifier.clone(),
            last_version: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("initial event").expect("ok");
    assert!(first.images.is_empty());
    let mut sse = SseClient::watch(&app, &identifier, 3).await;
    sse.snapshot_where(|list| list.as_array().is_some_and(|a| a.is_empty()))
        .await;

    // HTTP upload → gRPC watcher.
    let res = app
        .upload(&identifier, &token, vec![("a.jpg", jpeg(64, 48))], None)
        .await;
    assert_eq!(res.status(), 201);
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = watch.next().await.expect("event").expect("ok");
            if e.images.len() == 1 {
                return e;
            }
        }
    })
    .await
    .expect("gRPC watcher sees the upload");
    assert_eq!(event.images[0].width, 64);
    assert_eq!(event.session.expect("session").image_count, 1);

    // gRPC UploadImage in chunks → SSE watcher.
    let bytes = jpeg(80, 60);
    let mut messages = vec![pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Metadata(
            pb::UploadImageMetadata {
                member_id: 3,
                identifier: identifier.clone(),
                filename: "../../etc/passwd".into(),
                idempotency_key: String::new(),
            },
        )),
    }];
    for chunk in bytes.chunks(100) {
        messages.push(pb::UploadImageRequest {
            payload: Some(pb::upload_image_request::Payload::Chunk(chunk.to_vec())),
        });
    }
    let image = client
        .upload_image(futures::stream::iter(messages))
        .await
        .expect("upload over gRPC")
        .into_inner();
    assert_eq!((image.width, image.height, image.position), (80, 60, 2));
    let (_, list) = sse
        .snapshot_where(|list| list.as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert_eq!(list[1]["id"], image.id.as_str());

    // DeleteImage over gRPC.
    client
        .delete_image(pb::DeleteImageRequest {
            member_id: 3,
            image_id: image.id.clone(),
        })
        .await
        .expect("delete");
    sse.snapshot_where(|list| list.as_array().is_some_and(|a| a.len() == 1))
        .await;
}

#[tokio::test]
async fn upload_image_stream_must_start_with_metadata_and_respect_limits() {
    let app = TestApp::spawn_with(|c| c.upload.max_image_bytes = ByteSize(64 << 10)).await;
    let mut client = app.grpc_client().await;
    let created = app.grpc_session(1, None).await;

    let no_metadata = client
        .upload_image(futures::stream::iter([pb::UploadImageRequest {
            payload: Some(pb::upload_image_request::Payload::Chunk(vec![0xff, 0xd8])),
        }]))
        .await
        .expect_err("chunk first");
    assert_eq!(no_metadata.code(), Code::InvalidArgument);

    let meta = pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Metadata(
            pb::UploadImageMetadata {
                member_id: 1,
                identifier: created.identifier.clone(),
                filename: String::new(),
                idempotency_key: String::new(),
            },
        )),
    };
    let big = std::iter::once(meta.clone()).chain((0..100).map(|_| pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Chunk(vec![0u8; 1024])),
    }));
    let too_big = client
        .upload_image(futures::stream::iter(big))
        .await
        .expect_err("over the byte limit");
    assert_eq!(too_big.code(), Code::ResourceExhausted);

    let not_image = client
        .upload_image(futures::stream::iter([
            meta,
            pb::UploadImageRequest {
                payload: Some(pb::upload_image_request::Payload::Chunk(b"<html>".to_vec())),
            },
        ]))
        .await
        .expect_err("not an image");
    assert_eq!(not_image.code(), Code::InvalidArgument);
    assert_eq!(app.blob_count(), 0);
}
