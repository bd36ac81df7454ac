//! Logs and traces: `tracing` to stdout (text or JSON), each line inside a request carrying
//! its `trace_id`/`span_id`; spans exported over OTLP when `trace.otlp_endpoint` is set, and
//! W3C `traceparent` understood on the way in.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::conf::{LogConf, LogFormat, TraceConf};

/// Flushes exported spans when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber writing to stdout.
pub fn init(log: &LogConf, trace: &TraceConf) -> anyhow::Result<TelemetryGuard> {
    use std::io::IsTerminal;
    install(log, trace, std::io::stdout, std::io::stdout().is_terminal())
}

/// Installs the global subscriber writing to `writer` (tests capture the lines this way).
pub fn init_with_writer<W>(
    log: &LogConf,
    trace: &TraceConf,
    writer: W,
) -> anyhow::Result<TelemetryGuard>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(log, trace, writer, false)
}

fn install<W>(
    log: &LogConf,
    trace: &TraceConf,
    writer: W,
    ansi: bool,
) -> anyhow::Result<TelemetryGuard>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder().with_service_name("qrupload").build();
    // A provider always exists, so spans get W3C ids for the logs even when nothing is
    // exported; the exporter is added only when an endpoint is configured.
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &trace.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .context("trace.otlp_endpoint: building the OTLP exporter")?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("qrupload"));
    let filter = EnvFilter::try_new(&log.level)
        .with_context(|| format!("log.level: invalid filter {:?}", log.level))?;
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match log.format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(writer),
            )
            .try_init(),
    };
    result.context("installing the tracing subscriber")?;
    Ok(TelemetryGuard { provider })
}
