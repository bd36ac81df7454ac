//! Traces as an operator's backend receives them: the real binary exports over OTLP/gRPC to a
//! receiver in this test, and the spans are checked for the OpenTelemetry conventions (names,
//! kinds, attributes, error status) and for the caller's `traceparent` as their parent.

use std::{collections::HashMap, time::Duration};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, any_value::Value as Any},
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use qrupload::api::image::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;

use crate::helpers::process::Server;

struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                _ => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn request_spans_follow_the_conventions_and_continue_the_callers_trace() {
    // Arrange: an OTLP receiver, and the binary exporting to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{otlp}");
    let mut server = Server::start(
        dir.path(),
        &[
            ("QRUPLOAD__TRACE__OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent_id}-01");

    // Act: an HTTP call with a traceparent, a gRPC call that succeeds and one that fails.
    let created: serde_json::Value = http
        .post(server.url("/v1/api/upload-sessions"))
        .json(&serde_json::json!({ "member_id": 3 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let identifier = created["identifier"].as_str().unwrap().to_owned();
    let res = http
        .get(server.url(&format!("/v1/api/upload-sessions/{identifier}?member_id=3")))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut grpc =
        pb::image_service_client::ImageServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .unwrap();
    let mut request = tonic::Request::new(pb::GetUploadSessionRequest {
        member_id: 3,
        identifier: identifier.clone(),
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    grpc.get_upload_session(request).await.unwrap();
    let missing = grpc
        .get_upload_session(pb::GetUploadSessionRequest {
            member_id: 3,
            identifier: "no-such-session".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Quiet seconds: the janitor ticks every second and, finding nothing to do, traces nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.terminate();
    server.wait_exit(Duration::from_secs(20)).await;

    let mut spans = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        for resource in batch.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }

    // Assert: the HTTP span.
    let route = "/v1/api/upload-sessions/{identifier}";
    let get = spans
        .iter()
        .find(|s| s.name == format!("GET {route}"))
        .unwrap_or_else(|| {
            let get = spans.iter().find(|s| s.name == "GET").map(attributes);
            panic!(
                "no span named after the route in {:?}: {get:?}",
                names(&spans)
            )
        });
    let a = attributes(get);
    assert_eq!(get.kind, SpanKind::Server as i32);
    assert_eq!(a["http.route"], route);
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(hex(&get.trace_id), trace_id, "the caller's trace continues");
    assert_eq!(hex(&get.parent_span_id), parent_id);
    // Request spans are named and routed by template, never by the path with its identifier.
    for span in spans.iter().filter(|s| s.kind == SpanKind::Server as i32) {
        let route = attributes(span)
            .get("http.route")
            .cloned()
            .unwrap_or_default();
        assert!(
            !span.name.contains(&identifier) && !route.contains(&identifier),
            "{} / {route}",
            span.name
        );
    }

    // The gRPC spans.
    let rpc: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "image.v1.ImageService/GetUploadSession")
        .collect();
    assert_eq!(rpc.len(), 2, "{:?}", names(&spans));
    for span in &rpc {
        let a = attributes(span);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(a["rpc.system"], "grpc");
        assert_eq!(a["rpc.service"], "image.v1.ImageService");
        assert_eq!(a["rpc.method"], "GetUploadSession");
    }
    let ok = rpc
        .iter()
        .find(|s| attributes(s)["rpc.grpc.status_code"] == "0")
        .expect("the successful call has status 0");
    assert_eq!(hex(&ok.trace_id), trace_id);
    assert_eq!(hex(&ok.parent_span_id), parent_id);
    let not_found = rpc
        .iter()
        .find(|s| attributes(s)["rpc.grpc.status_code"] == "5")
        .expect("the failed call has status 5 (NOT_FOUND)");
    // NOT_FOUND is the caller's error, not the server's: the span is not marked as failed.
    assert_ne!(
        not_found.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    // No root span from the idle janitor.
    assert!(
        spans.iter().all(|s| s.name != "expire_due"),
        "{:?}",
        names(&spans)
    );
    // And the gRPC calls have an access-log line, as HTTP requests do.
    let log = server.output();
    assert!(
        log.lines()
            .any(|l| l.contains("\"rpc\"") && l.contains("\"grpc_status\":5")),
        "{log}"
    );
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}
