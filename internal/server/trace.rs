//! Request spans, named and shaped by the OpenTelemetry semantic conventions.
//!
//! Each HTTP and gRPC request gets one SERVER span whose parent is the caller's W3C
//! `traceparent`, and whose `trace_id`/`span_id` fields put those ids on every log line written
//! inside it. HTTP spans are named `METHOD /route/template` once the router has matched a route
//! (`http.route` is the template, never the raw path, which carries identifiers); gRPC spans
//! are named `package.Service/Method` with the `rpc.*` attributes. The status is recorded when
//! it is known — for gRPC that is often the trailers, after the last message — and the span is
//! marked as an error for a 5xx, or for the gRPC codes that mean the server failed.

use std::time::Duration;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use http::HeaderMap;
use opentelemetry::trace::TraceContextExt;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The HTTP server span; its name becomes `METHOD /template` in [`record_route`].
pub fn http_span(req: &Request) -> Span {
    let method = req.method().as_str();
    let span = tracing::info_span!(
        "request",
        kind = "http",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = Empty,
        http.response.status_code = Empty,
        network.protocol.version = ?req.version(),
        trace_id = Empty,
        span_id = Empty,
    );
    adopt_parent(&span, req.headers());
    span
}

/// A route layer: names the request span after the route the router matched.
pub async fn record_route(req: Request, next: Next) -> Response {
    if let Some(route) = req.extensions().get::<MatchedPath>() {
        let span = Span::current();
        span.record("http.route", route.as_str());
        // The OpenTelemetry span already exists (its ids went on the log fields), so it is
        // renamed directly; recording `otel.name` now would be ignored.
        span.context()
            .span()
            .update_name(format!("{} {}", req.method(), route.as_str()));
    }
    next.run(req).await
}

/// The HTTP answer's status on the span, and the access-log line.
pub fn http_response(res: &Response, latency: Duration, span: &Span) {
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    if res.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::info!(status, latency_ms = latency.as_millis() as u64, "response");
}

/// The gRPC server span for `POST /package.Service/Method`.
pub fn grpc_span<B>(req: &http::Request<B>) -> Span {
    let path = req.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "request",
        kind = "grpc",
        otel.name = path,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    adopt_parent(&span, req.headers());
    span
}

/// Records the gRPC status from response headers (a trailers-only answer, as tonic sends for
/// an error before any message) or from the trailers; writes the access-log line once.
pub fn grpc_status(headers: Option<&HeaderMap>, latency: Duration, span: &Span) {
    let Some(code) = headers
        .and_then(|h| h.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    span.record("rpc.grpc.status_code", code);
    if is_server_failure(code) {
        span.record("otel.status_code", "ERROR");
    }
    tracing::info!(
        grpc_status = code,
        latency_ms = latency.as_millis() as u64,
        "rpc"
    );
}

/// The codes the conventions count as the server's failure (the others are the caller's).
fn is_server_failure(code: i32) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Parent from `traceparent`; ids recorded as fields for the logs.
fn adopt_parent(span: &Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_side_codes_mark_the_span_as_failed() {
        // OK, CANCELLED, INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED
        for code in [0, 1, 3, 5, 9, 8] {
            assert!(!is_server_failure(code), "{code}");
        }
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(is_server_failure(code), "{code}");
        }
    }
}
