//! OTLP aimed at the server's receivers: export requests built span by span
//! (protobuf types, for exact control of ids and times), sent over
//! OTLP/HTTP or OTLP/gRPC, and SDK tracer providers exporting over OTLP/gRPC
//! the way an instrumented service does.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::transport::Channel;

/// The OTLP span kind SERVER.
const KIND_SERVER: i32 = 2;

/// Now, in nanoseconds since the Unix epoch (OTLP's clock).
pub fn now_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// A fresh 16-byte trace id: the current time, then `seed`, so ids differ
/// between calls and between seeds.
pub fn trace_id(seed: u8) -> Vec<u8> {
    let mut id = now_nanos().to_be_bytes().to_vec();
    id.extend_from_slice(&[seed, 1, 2, 3, 4, 5, 6, 7]);
    id
}

/// The span id numbered `id` (`09090909090909{id}`): small numbers make
/// parent links easy to write.
pub fn span_id(id: u8) -> Vec<u8> {
    vec![9, 9, 9, 9, 9, 9, 9, id]
}

/// A SERVER span of `trace` numbered `id` (see [`span_id`]), child of the
/// span numbered `parent` when given, from `start` to `end` (nanoseconds).
pub fn span(trace: &[u8], id: u8, parent: Option<u8>, name: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: span_id(id),
        parent_span_id: parent.map(span_id).unwrap_or_default(),
        name: name.into(),
        kind: KIND_SERVER,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

/// An export request holding `spans` of the service named `service`.
pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Lower-case hex of `bytes`, as the query API writes ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/traces` to the OTLP/HTTP receiver at `addr` with `body` sent
/// as `content_type` (`application/x-protobuf` or `application/json`);
/// answers the response, whatever its status.
pub async fn post_traces(
    addr: SocketAddr,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("OTLP/HTTP request")
}

/// A TraceService client of the OTLP/gRPC receiver at `addr`.
pub async fn trace_service_client(addr: SocketAddr) -> TraceServiceClient<Channel> {
    TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("OTLP/gRPC connection")
}

/// A tracer provider of the service named `service` exporting in batches
/// over OTLP/gRPC to `endpoint` (`http://host:port`), as an instrumented
/// service does. Flush it (`force_flush`, on a blocking thread) before
/// looking for its spans.
pub fn grpc_exporting_provider(endpoint: &str, service: &str) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("OTLP/gRPC exporter");
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build()
}
