//! OpenTelemetry for the CLI's own publishing and subscribing: switched on
//! by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), exported over OTLP/gRPC.

use anyhow::Context;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Keeps the tracer provider alive; flushes spans when dropped.
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
}

impl OtelGuard {
    /// Whether spans are being exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing spans failed: {error}");
        }
    }
}

/// Installs a global tracer provider exporting to the configured OTLP
/// endpoint, or nothing when none is configured.
pub fn init(service_name: &str) -> anyhow::Result<OtelGuard> {
    let configured = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|key| std::env::var(key).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return Ok(OtelGuard { provider: None });
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .context("building the OTLP span exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_string()),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(OtelGuard {
        provider: Some(provider),
    })
}
