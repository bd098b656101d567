//! Spans captured in memory: a tracer provider whose spans a test reads
//! back as SDK `SpanData` (for clients and servers run in the test process),
//! and what tests read out of them.

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// A tracer provider exporting synchronously (a simple processor) into
/// memory: a span is readable as soon as it ended.
#[derive(Debug, Clone)]
pub struct SpanCapture {
    /// The provider to hand to the code under test.
    pub provider: SdkTracerProvider,
    /// Where its spans land.
    pub exporter: InMemorySpanExporter,
}

impl SpanCapture {
    /// A capture with the SDK's default resource.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A capture whose resource names the service `service`.
    pub fn for_service(service: &str) -> Self {
        Self::build(Some(service))
    }

    fn build(service: Option<&str>) -> Self {
        let exporter = InMemorySpanExporter::default();
        let mut builder = SdkTracerProvider::builder().with_simple_exporter(exporter.clone());
        if let Some(service) = service {
            builder = builder.with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            );
        }
        Self {
            provider: builder.build(),
            exporter,
        }
    }

    /// Every span ended so far, in the order they ended.
    pub fn spans(&self) -> Vec<SpanData> {
        self.exporter
            .get_finished_spans()
            .expect("in-memory exporter")
    }
}

impl Default for SpanCapture {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of attribute `key` of `span`.
pub fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv: &KeyValue| &kv.value)
}

/// The integer attribute `key` of `span`; panics when missing or not one.
pub fn int_attribute(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::I64(n)) => *n,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

/// Attribute `key` of `span` as text; panics when missing.
pub fn string_attribute(span: &SpanData, key: &str) -> String {
    match attribute(span, key) {
        Some(value) => value.as_str().into_owned(),
        None => panic!("{key} missing on {}", span.name),
    }
}

/// The spans called `name`, in order.
pub fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The names of `spans`, in order (for messages).
pub fn span_names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

/// The names of the events of `span`, in order.
pub fn event_names(span: &SpanData) -> Vec<String> {
    span.events.iter().map(|e| e.name.to_string()).collect()
}
