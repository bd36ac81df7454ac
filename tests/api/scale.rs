//! Several instances behind one URL: a watcher on instance A sees uploads made through
//! instance B, over Redis pub/sub, and converges after Redis goes away and comes back.
//! (`bus.rs` does the same over NATS and counts the doorbells each instance receives.)

use qrupload::{
    api::image::v1 as pb,
    conf::{BusKind, Secret},
};

use crate::helpers::{
    Cluster, SseClient,
    backends::{bus, postgres_database, redis_url},
    jpeg,
};

#[tokio::test]
async fn a_watcher_on_one_instance_sees_uploads_through_another() {
    let (Some(redis), Some(database)) = (redis_url().await, postgres_database().await) else {
        return;
    };
    // Two instances started at the same moment against an empty database both come up.
    let cluster = Cluster::start_together(2, |c| {
        c.data.database.url = Secret::new(database.as_str());
        c.data.bus = bus(BusKind::Redis, &redis);
    })
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);

    let (session, token) = a.create_session(9).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(a, id, 9).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;

    // HTTP upload on B.
    let res = b
        .upload(id, &token, vec![("a.jpg", jpeg(40, 30))], None)
        .await;
    assert_eq!(res.status(), 201);
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;

    // gRPC upload on B.
    let mut grpc = b.grpc_client().await;
    let meta = pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Metadata(
            pb::UploadImageMetadata {
                member_id: 9,
                identifier: id.to_owned(),
                filename: "b.jpg".into(),
                idempotency_key: String::new(),
            },
        )),
    };
    let chunk = pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Chunk(jpeg(50, 40))),
    };
    grpc.upload_image(futures::stream::iter([meta, chunk]))
        .await
        .expect("gRPC upload on B");
    let (_, list) = watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert_eq!(list[1]["width"], 50);
    // The image written through B is served by A.
    let res = a
        .client
        .get(a.url(list[1]["url"].as_str().expect("url")))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn watchers_converge_after_the_bus_comes_back() {
    crate::bus::watchers_converge_after_the_broker_comes_back(BusKind::Redis).await;
}
