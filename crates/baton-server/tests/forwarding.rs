//! Traces leave the laptop: OTLP logs and metrics are answered and counted,
//! and a Baton forwarding to another forwards every span it receives
//! (resource and scope exactly as received) and every span it makes, over
//! gRPC and OTLP/HTTP; an upstream that is down costs dropped spans, never
//! a Pub/Sub call, and forwarding resumes when it is back; loops are
//! refused.
//!
//! The capture at the end of a chain is a small OTLP server here (gRPC and
//! HTTP on one port) recording the export requests exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use baton_proto::pubsub::{PublishRequest, PubsubMessage};
use baton_server::broker_spans::SCOPE_NAME;
use baton_server::{ForwardConfig, ServerConfig};
use baton_testkit::otlp::{self, hex, now_nanos, span, trace_id};
use baton_testkit::server::{TestServer, loopback};
use baton_trace_store::forward::{FORWARDED_HEADER, Protocol, UpstreamState};
use baton_trace_store::opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use baton_trace_store::opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use baton_trace_store::opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use baton_trace_store::opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use baton_trace_store::opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use baton_trace_store::opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use baton_trace_store::opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value,
};
use baton_trace_store::opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use baton_trace_store::opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use baton_trace_store::opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tower::ServiceExt;

const LIMIT: Duration = Duration::from_secs(20);

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An export request of one span with a rich resource and scope.
fn rich_request(service: &str, trace: &[u8]) -> ExportTraceServiceRequest {
    let now = now_nanos();
    let mut request = otlp::request(
        service,
        vec![span(trace, 1, None, "work", now - 1_000_000, now)],
    );
    let resource_spans = &mut request.resource_spans[0];
    let resource = resource_spans.resource.as_mut().unwrap();
    resource
        .attributes
        .push(attr("deployment.environment", "laptop"));
    resource.attributes.push(attr("host.name", "dev-1"));
    resource_spans.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
    resource_spans.scope_spans[0].scope = Some(InstrumentationScope {
        name: "orders-lib".into(),
        version: "1.2.3".into(),
        attributes: vec![attr("lib.flavour", "async")],
        dropped_attributes_count: 0,
    });
    resource_spans.scope_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
    request
}

/// What the capture received: each request with its forwarded header.
#[derive(Debug, Clone, Default)]
struct Capture {
    requests: Arc<Mutex<Vec<(ExportTraceServiceRequest, String)>>>,
    addr: Option<SocketAddr>,
}

impl Capture {
    fn resource_spans(&self) -> Vec<(ResourceSpans, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(r, h)| r.resource_spans.iter().map(|rs| (rs.clone(), h.clone())))
            .collect()
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }
}

#[tonic::async_trait]
impl TraceService for Capture {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let header = request
            .metadata()
            .get(FORWARDED_HEADER)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        self.requests
            .lock()
            .unwrap()
            .push((request.into_inner(), header));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A capture serving OTLP/gRPC and `POST /v1/traces` on one port.
async fn start_capture() -> Capture {
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let capture = Capture {
        addr: Some(listener.local_addr().unwrap()),
        ..Default::default()
    };
    let grpc =
        TraceServiceServer::new(capture.clone()).accept_compressed(CompressionEncoding::Gzip);
    let http_capture = capture.clone();
    let app = axum::Router::new()
        .route_service(
            "/opentelemetry.proto.collector.trace.v1.TraceService/{*method}",
            grpc.map_request(|r: http::Request<axum::body::Body>| r.map(tonic::body::Body::new)),
        )
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let capture = http_capture.clone();
                async move {
                    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                        let mut out = Vec::new();
                        std::io::Read::read_to_end(
                            &mut flate2::read::GzDecoder::new(body.as_ref()),
                            &mut out,
                        )
                        .unwrap();
                        out
                    } else {
                        body.to_vec()
                    };
                    let request = if headers["content-type"] == "application/json" {
                        serde_json::from_slice(&body).unwrap()
                    } else {
                        ExportTraceServiceRequest::decode(body.as_slice()).unwrap()
                    };
                    let header = headers
                        .get(FORWARDED_HEADER)
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    capture.requests.lock().unwrap().push((request, header));
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    capture
}

/// Fast retries, so a restarted upstream is found again within moments.
fn forward_to(endpoint: &str, protocol: Protocol, gzip: bool) -> ForwardConfig {
    let mut config = ForwardConfig::to(endpoint, protocol)
        .unwrap()
        .map_targets(|t| t.gzip = gzip);
    config.initial_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    config
}

fn otlp_config(forward: Option<ForwardConfig>) -> ServerConfig {
    let mut config = ServerConfig::new(loopback())
        .with_otlp_grpc(loopback())
        .with_otlp_http(loopback());
    config.forward = forward;
    config
}

/// Publishes one message carrying a trace context on `t`; its trace id.
async fn publish_traced(t: &TestServer, topic: &str) -> String {
    let topic = t.create_topic(topic).await;
    let trace = hex(&trace_id(7));
    let traceparent = format!("00-{trace}-0102030405060708-01");
    let ids = t
        .publisher()
        .publish(PublishRequest {
            topic,
            messages: vec![PubsubMessage {
                data: b"hello".to_vec(),
                attributes: [("googclient_traceparent".to_string(), traceparent)].into(),
                ..Default::default()
            }],
        })
        .await
        .expect("publish works")
        .into_inner()
        .message_ids;
    assert_eq!(ids.len(), 1);
    trace
}

/// Sends the server's spans, then waits until its forwarder has sent them.
async fn flush(t: &TestServer) {
    t.server().flush_traces().await;
    assert!(
        t.server().forwarding().flush(LIMIT).await,
        "forwarding flushed"
    );
}

async fn chain_forwards_exactly(protocol: Protocol, gzip: bool) {
    let capture = start_capture().await;
    let upstream = TestServer::start_with(otlp_config(Some(forward_to(
        &capture.endpoint(),
        protocol,
        gzip,
    ))))
    .await;
    let upstream_endpoint = match protocol {
        Protocol::Grpc => upstream.otlp_grpc_endpoint(),
        _ => upstream.otlp_http_endpoint(),
    };
    let downstream = TestServer::start_with(otlp_config(Some(forward_to(
        &upstream_endpoint,
        protocol,
        gzip,
    ))))
    .await;

    // A span in over OTLP/HTTP, another over OTLP/gRPC.
    let (over_http, over_grpc) = (trace_id(1), trace_id(2));
    let sent_http = rich_request("shop", &over_http);
    let response = otlp::post_traces(
        downstream.server().otlp_http_addr().unwrap(),
        "application/x-protobuf",
        sent_http.encode_to_vec(),
    )
    .await;
    assert!(response.status().is_success());
    let sent_grpc = rich_request("billing", &over_grpc);
    otlp::trace_service_client(downstream.server().otlp_grpc_addr().unwrap())
        .await
        .export(sent_grpc.clone())
        .await
        .unwrap();
    // And the downstream's own broker spans.
    let own_trace = publish_traced(&downstream, "orders").await;

    flush(&downstream).await;
    flush(&upstream).await;

    // In the upstream's store...
    let store = upstream.server().trace_store();
    for (trace, service) in [(&over_http, "shop"), (&over_grpc, "billing")] {
        let detail = store
            .trace(&hex(trace))
            .expect("forwarded trace in the upstream");
        assert_eq!(detail.spans[0].service, service);
    }
    let own = store
        .trace(&own_trace)
        .expect("the downstream's own spans in the upstream");
    assert!(own.spans.iter().all(|s| s.service == "baton"));

    // ...and on to the capture, resource and scope exactly as sent, with
    // both Batons named in the forwarded header.
    let d_id = downstream.server().forwarding().server_id().to_string();
    let u_id = upstream.server().forwarding().server_id().to_string();
    let received = capture.resource_spans();
    for sent in [&sent_http, &sent_grpc] {
        let (got, header) = received
            .iter()
            .find(|(rs, _)| {
                rs.scope_spans.iter().any(|s| {
                    s.spans.iter().any(|sp| {
                        sp.trace_id == sent.resource_spans[0].scope_spans[0].spans[0].trace_id
                    })
                })
            })
            .expect("forwarded twice");
        assert_eq!(got, &sent.resource_spans[0]);
        assert_eq!(header, &format!("{d_id},{u_id}"));
    }
    let own_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&own_trace[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let (own_rs, header) = received
        .iter()
        .find(|(rs, _)| {
            rs.scope_spans
                .iter()
                .any(|s| s.spans.iter().any(|sp| sp.trace_id == own_bytes))
        })
        .expect("the downstream's own spans reach the capture");
    assert_eq!(header, &format!("{d_id},{u_id}"));
    assert!(
        own_rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .contains(&attr("service.name", "baton"))
    );
    assert!(
        own_rs
            .scope_spans
            .iter()
            .any(|s| s.scope.as_ref().is_some_and(|sc| sc.name == SCOPE_NAME))
    );

    let status = downstream.server().forwarding().status();
    let traces = status.traces.unwrap();
    assert_eq!(traces.state, UpstreamState::Up);
    assert!(traces.forwarded >= 3, "{traces:?}");
    assert_eq!(traces.dropped, 0);
    downstream.shutdown().await;
    upstream.shutdown().await;
}

#[tokio::test]
async fn forwards_received_and_own_spans_over_grpc() {
    chain_forwards_exactly(Protocol::Grpc, false).await;
}

#[tokio::test]
async fn forwards_received_and_own_spans_over_http_protobuf_with_gzip() {
    chain_forwards_exactly(Protocol::HttpProtobuf, true).await;
}

#[tokio::test]
async fn forwards_over_http_json() {
    chain_forwards_exactly(Protocol::HttpJson, false).await;
}

#[tokio::test]
async fn upstream_down_drops_and_counts_then_resumes() {
    let upstream = TestServer::start_with(otlp_config(None)).await;
    let upstream_otlp = upstream.server().otlp_grpc_addr().unwrap();
    let mut forward = forward_to(&format!("http://{upstream_otlp}"), Protocol::Grpc, false);
    forward.queue_items = 20;
    let downstream = TestServer::start_with(otlp_config(Some(forward))).await;
    let forwarding = downstream.server().forwarding().clone();
    upstream.shutdown().await;

    // Pub/Sub goes on while the upstream is down.
    publish_traced(&downstream, "orders").await;
    let mut client =
        otlp::trace_service_client(downstream.server().otlp_grpc_addr().unwrap()).await;
    let first = trace_id(3);
    let now = now_nanos();
    let batch = |trace: &[u8]| {
        otlp::request(
            "shop",
            (1..=10)
                .map(|i| span(trace, i, None, "work", now - 1000, now))
                .collect(),
        )
    };
    client.export(batch(&first)).await.unwrap();
    assert!(
        forwarding
            .wait_until(LIMIT, |s| s.traces.as_ref().unwrap().failed_attempts > 0)
            .await
    );
    for seed in 10..15 {
        client.export(batch(&trace_id(seed))).await.unwrap();
    }
    let status = forwarding.status().traces.unwrap();
    assert!(status.dropped >= 30, "{status:?}");
    assert!(
        matches!(
            status.state,
            UpstreamState::BackingOff | UpstreamState::Down
        ),
        "{status:?}"
    );
    assert!(status.last_error.is_some());
    let body: serde_json::Value = downstream
        .http
        .get(downstream.url("/api/forwarding"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["traces"]["dropped"].as_u64().unwrap() >= 30, "{body}");
    assert!(
        body["traces"]["failedAttempts"].as_u64().unwrap() > 0,
        "{body}"
    );
    // The Pub/Sub API still answers.
    publish_traced(&downstream, "more-orders").await;

    // Back on the same port: what stayed queued arrives.
    let back =
        TestServer::start_on_with(ServerConfig::new(loopback()).with_otlp_grpc(upstream_otlp))
            .await;
    assert!(forwarding.flush(LIMIT).await);
    assert!(
        back.server().trace_store().trace(&hex(&first)).is_some(),
        "the queued spans reach the upstream once it is back: {:?}",
        forwarding.status()
    );
    let later = trace_id(20);
    client.export(batch(&later)).await.unwrap();
    assert!(forwarding.flush(LIMIT).await);
    assert!(back.server().trace_store().trace(&hex(&later)).is_some());
    assert_eq!(forwarding.status().traces.unwrap().state, UpstreamState::Up);
    downstream.shutdown().await;
    back.shutdown().await;
}

/// A free loopback port (bound and let go).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn loops_are_refused() {
    // A forwards to B and B to A.
    let a_otlp = free_port();
    let b = TestServer::start_with(otlp_config(Some(forward_to(
        &format!("http://{a_otlp}"),
        Protocol::Grpc,
        false,
    ))))
    .await;
    let mut a_config = otlp_config(Some(forward_to(
        &b.otlp_grpc_endpoint(),
        Protocol::Grpc,
        false,
    )));
    a_config.otlp_grpc_addr = Some(a_otlp);
    let a = TestServer::start_with(a_config).await;
    let trace = trace_id(4);
    otlp::trace_service_client(a_otlp)
        .await
        .export(rich_request("shop", &trace))
        .await
        .unwrap();
    assert!(a.server().forwarding().flush(LIMIT).await);
    assert!(b.server().forwarding().flush(LIMIT).await);
    assert!(b.server().trace_store().trace(&hex(&trace)).is_some());
    assert_eq!(a.server().forwarding().status().loops_refused, 1);
    assert_eq!(
        a.server()
            .trace_store()
            .trace(&hex(&trace))
            .unwrap()
            .spans
            .len(),
        1
    );

    // A server told to forward to its own port does not.
    let own = free_port();
    let mut config = otlp_config(Some(forward_to(
        &format!("http://localhost:{}", own.port()),
        Protocol::Grpc,
        false,
    )));
    config.otlp_grpc_addr = Some(own);
    let selfish = TestServer::start_with(config).await;
    assert!(selfish.server().forwarding().status().traces.is_none());
    for t in [a, b, selfish] {
        t.shutdown().await;
    }
}

fn logs_request(records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: now_nanos(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("hello".into())),
                        }),
                        ..Default::default()
                    };
                    records
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics_request(points: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); points],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn logs_and_metrics_are_answered_and_counted() {
    let t = TestServer::start_with(otlp_config(None)).await;
    let grpc = t.server().otlp_grpc_addr().unwrap();
    let http = t.server().otlp_http_addr().unwrap();
    LogsServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .export(logs_request(2))
        .await
        .unwrap();
    MetricsServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .export(metrics_request(3))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let post = |path: &str, content_type: &str, body: Vec<u8>, gzipped: bool| {
        let mut request = client
            .post(format!("http://{http}{path}"))
            .header("content-type", content_type);
        if gzipped {
            request = request.header("content-encoding", "gzip");
        }
        request.body(body).send()
    };
    let cases = [
        (
            "/v1/logs",
            "application/x-protobuf",
            logs_request(1).encode_to_vec(),
            false,
        ),
        (
            "/v1/logs",
            "application/json",
            serde_json::to_vec(&logs_request(4)).unwrap(),
            false,
        ),
        (
            "/v1/logs",
            "application/x-protobuf",
            gzip(&logs_request(1).encode_to_vec()),
            true,
        ),
        (
            "/v1/metrics",
            "application/x-protobuf",
            metrics_request(2).encode_to_vec(),
            false,
        ),
        (
            "/v1/metrics",
            "application/json",
            serde_json::to_vec(&metrics_request(5)).unwrap(),
            true,
        ),
    ];
    for (path, content_type, body, gzipped) in cases {
        let body = if gzipped && content_type == "application/json" {
            gzip(&body)
        } else {
            body
        };
        let response = post(path, content_type, body, gzipped).await.unwrap();
        assert_eq!(response.status(), 200, "{path} {content_type}");
        if content_type == "application/json" {
            let reply: serde_json::Value = response.json().await.unwrap();
            assert!(reply.is_object());
        }
    }
    let bad = post(
        "/v1/logs",
        "application/x-protobuf",
        vec![0xff, 0xff],
        false,
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let counts = t.server().signal_stats();
    assert_eq!((counts.log_requests, counts.log_records), (4, 8));
    assert_eq!((counts.metric_requests, counts.metric_points), (3, 10));
    let body: serde_json::Value = t
        .http
        .get(t.url("/api/forwarding"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["received"]["logRecords"], 8);
    assert_eq!(body["traces"], serde_json::Value::Null);
    t.shutdown().await;
}

#[tokio::test]
async fn logs_and_metrics_are_forwarded_when_on() {
    // The upstream is a Baton: it counts what arrives.
    let upstream = TestServer::start_with(otlp_config(None)).await;
    let downstream = TestServer::start_with(otlp_config(Some(forward_to(
        &upstream.otlp_http_endpoint(),
        Protocol::HttpProtobuf,
        true,
    ))))
    .await;
    let http = downstream.server().otlp_http_addr().unwrap();
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/v1/logs", logs_request(3).encode_to_vec()),
        ("/v1/metrics", metrics_request(4).encode_to_vec()),
    ] {
        let response = client
            .post(format!("http://{http}{path}"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(downstream.server().forwarding().flush(LIMIT).await);
    let counts = upstream.server().signal_stats();
    assert_eq!((counts.log_records, counts.metric_points), (3, 4));
    let status = downstream.server().forwarding().status();
    assert_eq!(status.logs.unwrap().forwarded, 3);
    assert_eq!(status.metrics.unwrap().forwarded, 4);
    downstream.shutdown().await;
    upstream.shutdown().await;
}

/// Forwarding to an upstream that serves TLS with a development CA, set up
/// only by the standard variables (`OTEL_EXPORTER_OTLP_CERTIFICATE` names
/// the CA to trust), over both protocols.
async fn forwards_over_tls(protocol: Protocol) {
    let upstream = TestServer::start_tls_with(otlp_config(None)).await;
    let ca = upstream.tls_root().expect("the upstream serves TLS");
    let port = match protocol {
        Protocol::Grpc => upstream.server().otlp_grpc_addr(),
        _ => upstream.server().otlp_http_addr(),
    }
    .expect("the upstream receives OTLP")
    .port();
    let vars: std::collections::HashMap<String, String> = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://localhost:{port}"),
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            match protocol {
                Protocol::Grpc => "grpc",
                Protocol::HttpProtobuf => "http/protobuf",
                Protocol::HttpJson => "http/json",
            }
            .to_string(),
        ),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let forward = ForwardConfig::from_vars(&vars, None, None)
        .unwrap()
        .expect("the variables name an endpoint");
    let downstream = TestServer::start_with(otlp_config(Some(forward))).await;
    let trace = publish_traced(&downstream, "tls-forwarded").await;
    flush(&downstream).await;
    let status = downstream.server().forwarding().status();
    let lane = status.traces.expect("spans are forwarded");
    assert_eq!(lane.state, UpstreamState::Up, "{lane:?}");
    assert!(lane.forwarded > 0 && lane.dropped == 0, "{lane:?}");
    let stored = upstream
        .server()
        .trace_store()
        .trace(&trace)
        .expect("the upstream stored the forwarded trace");
    assert!(
        stored.spans.iter().any(|s| s.scope.name == SCOPE_NAME),
        "the downstream's broker spans arrived: {stored:?}"
    );
    downstream.shutdown().await;
    upstream.shutdown().await;
}

#[tokio::test]
async fn forwards_over_tls_grpc_with_the_certificate_variable() {
    forwards_over_tls(Protocol::Grpc).await;
}

#[tokio::test]
async fn forwards_over_tls_http_with_the_certificate_variable() {
    forwards_over_tls(Protocol::HttpProtobuf).await;
}
