//! Request spans: each HTTP and gRPC request gets a span whose parent is the caller's W3C
//! `traceparent`, and whose `trace_id`/`span_id` fields put those ids on every log line
//! written inside it.

use http::HeaderMap;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the request span: parent from `traceparent`, ids recorded as fields for the logs.
pub fn request_span(kind: &'static str, method: &str, path: &str, headers: &HeaderMap) -> Span {
    let span = tracing::info_span!(
        "request",
        kind,
        method = %method,
        path = %path,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
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
    span
}
