//! The tonic server: `image.v1.ImageService`, `grpc.health.v1.Health` and reflection.

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    api::image::v1 as pb,
    service::{Services, grpc::ImageGrpc},
};

pub async fn serve_grpc(
    listener: TcpListener,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::image_service_server::ImageServiceServer<ImageGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    let trace = tower_http::trace::TraceLayer::new_for_grpc()
        .make_span_with(super::trace::grpc_span)
        .on_response(|res: &http::Response<_>, latency, span: &tracing::Span| {
            super::trace::grpc_status(Some(res.headers()), latency, span)
        })
        .on_eos(
            |trailers: Option<&http::HeaderMap>, latency, span: &tracing::Span| {
                super::trace::grpc_status(trailers, latency, span)
            },
        )
        .on_failure(());
    let router = tonic::transport::Server::builder()
        .layer(trace)
        .add_service(health)
        .add_service(ImageGrpc::new(services).into_server())
        .add_optional_service(reflection);
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
