//! The OTLP receiver (gRPC and HTTP, protobuf and JSON) and the trace query
//! API, end to end over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use baton_server::ServerConfig;
use baton_server::baton_trace_store::opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use baton_server::baton_trace_store::opentelemetry_proto::tonic::trace::v1::Span;
use baton_testkit::otlp::{
    grpc_exporting_provider, hex, now_nanos as now, post_traces, request, span, trace_id,
    trace_service_client,
};
use baton_testkit::server::{TestServer, loopback};
use baton_testkit::trace_api::{get_json, wait_for_trace};
use prost::Message;
use serde_json::Value;

/// A server receiving OTLP over gRPC and HTTP, on free ports.
async fn start() -> TestServer {
    TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_grpc(loopback())
            .with_otlp_http(loopback()),
    )
    .await
}

/// Where `server` receives OTLP/HTTP.
fn otlp_http(server: &TestServer) -> SocketAddr {
    server.server().otlp_http_addr().unwrap()
}

/// Where `server` receives OTLP/gRPC.
fn otlp_grpc(server: &TestServer) -> SocketAddr {
    server.server().otlp_grpc_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_otlp_exporter_over_grpc() {
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
    let server = start().await;
    let provider = grpc_exporting_provider(&format!("http://{}", otlp_grpc(&server)), "svc-grpc");
    let tracer = provider.tracer("test");
    let trace = tracer.in_span("POST /orders", |cx| {
        tracer.in_span("child", |_| {});
        cx.span().span_context().trace_id().to_string()
    });
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
    let detail = wait_for_trace(server.addr, &trace).await;
    assert_eq!(detail["traceId"], trace);
    let spans = detail["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["name"], "POST /orders");
    // The SDK's resource and the tracer's scope come along.
    assert_eq!(spans[0]["resource"]["service.name"], "svc-grpc");
    assert_eq!(spans[0]["scope"]["name"], "test");
    assert_eq!(spans[0]["service"], "svc-grpc");
    assert_eq!(spans[1]["parentSpanId"], spans[0]["spanId"]);
    let (status, list) = get_json(server.addr, "/api/traces?limit=10").await;
    assert_eq!(status, 200);
    let summary = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["traceId"] == trace)
        .unwrap();
    assert_eq!(summary["rootName"], "POST /orders");
    assert_eq!(summary["spanCount"], 2);
    assert_eq!(summary["services"], serde_json::json!(["svc-grpc"]));
    server.shutdown().await;
}

/// Grafana's Jaeger data source reads `/jaeger/api/...` of `baton serve`:
/// spans exported by the OpenTelemetry SDK come back in Jaeger's model, the
/// parent as `CHILD_OF`, a link as `FOLLOWS_FROM`, the error as tags; Baton's
/// own `/api/traces` is unchanged beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_reads_the_jaeger_api() {
    use opentelemetry::trace::{Link, Span as _, Status, TraceContextExt, Tracer, TracerProvider};
    let server = start().await;
    let provider = grpc_exporting_provider(&format!("http://{}", otlp_grpc(&server)), "svc-jaeger");
    let tracer = provider.tracer("test");
    let (request_trace, request_context) = tracer.in_span("POST /orders", |cx| {
        tracer.in_span("charge", |cx| {
            cx.span().set_status(Status::error("declined"))
        });
        let context = cx.span().span_context().clone();
        (context.trace_id().to_string(), context)
    });
    let mut ack = tracer
        .span_builder("ack")
        .with_links(vec![Link::with_context(request_context.clone())])
        .start(&tracer);
    let ack_trace = ack.span_context().trace_id().to_string();
    ack.end();
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
    wait_for_trace(server.addr, &request_trace).await;
    wait_for_trace(server.addr, &ack_trace).await;

    let (status, services) = get_json(server.addr, "/jaeger/api/services").await;
    assert_eq!(status, 200);
    assert_eq!(services["data"], serde_json::json!(["svc-jaeger"]));
    let (_, operations) = get_json(server.addr, "/jaeger/api/services/svc-jaeger/operations").await;
    assert_eq!(
        operations["data"],
        serde_json::json!(["POST /orders", "ack", "charge"])
    );
    // As Grafana searches: a window in microseconds, a limit, tags as JSON.
    let end = now() / 1000 + 60_000_000;
    let (status, found) = get_json(
        server.addr,
        &format!(
            "/jaeger/api/traces?service=svc-jaeger&tags=%7B%22error%22%3A%22true%22%7D&start={}&end={end}&limit=20",
            end - 3_600_000_000
        ),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let traces = found["data"].as_array().unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["traceID"], request_trace);
    let spans = traces[0]["spans"].as_array().unwrap();
    let charge = spans
        .iter()
        .find(|s| s["operationName"] == "charge")
        .unwrap();
    let root = spans
        .iter()
        .find(|s| s["operationName"] == "POST /orders")
        .unwrap();
    assert_eq!(charge["references"][0]["refType"], "CHILD_OF");
    assert_eq!(charge["references"][0]["spanID"], root["spanID"]);
    assert!(
        charge["tags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(
                {"key": "error", "type": "bool", "value": true}
            ))
    );
    assert_eq!(
        traces[0]["processes"][charge["processID"].as_str().unwrap()]["serviceName"],
        "svc-jaeger"
    );

    let (status, linked) = get_json(server.addr, &format!("/jaeger/api/traces/{ack_trace}")).await;
    assert_eq!(status, 200);
    let reference = &linked["data"][0]["spans"][0]["references"][0];
    assert_eq!(reference["refType"], "FOLLOWS_FROM");
    assert_eq!(reference["traceID"], request_trace);
    assert_eq!(reference["spanID"], request_context.span_id().to_string());

    let (status, missing) = get_json(
        server.addr,
        &format!("/jaeger/api/traces/{}", "ab".repeat(16)),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(missing["errors"][0]["msg"], "trace not found");
    let (status, bad) = get_json(server.addr, "/jaeger/api/traces?minDuration=soon").await;
    assert_eq!(status, 400);
    assert_eq!(bad["errors"][0]["code"], 400);
    // Baton's own query API keeps /api.
    let (status, own) = get_json(server.addr, &format!("/api/traces/{ack_trace}")).await;
    assert_eq!(status, 200);
    assert_eq!(own["traceId"], ack_trace);
    server.shutdown().await;
}

#[tokio::test]
async fn grpc_rejects_bad_spans_and_huge_batches() {
    let server = start().await;
    let mut client = trace_service_client(otlp_grpc(&server)).await;
    let t = trace_id(1);
    let start = now();
    // One good span, one ending before it starts, one far in the future.
    let reply = client
        .export(request(
            "svc",
            vec![
                span(&t, 1, None, "good", start, start + 10),
                span(&t, 2, Some(1), "backwards", start + 10, start),
                span(
                    &t,
                    3,
                    Some(1),
                    "future",
                    start,
                    start + 400 * 24 * 3600 * 1_000_000_000,
                ),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    let partial = reply.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(!partial.error_message.is_empty());
    assert_eq!(
        server
            .server()
            .trace_store()
            .trace(&hex(&t))
            .unwrap()
            .spans
            .len(),
        1
    );
    // Too many spans at once.
    let many = (0..=baton_server::baton_trace_store::MAX_SPANS_PER_REQUEST)
        .map(|_| Span::default())
        .collect();
    let status = client.export(request("svc", many)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    // A message over the size limit.
    let huge = span(&t, 4, None, &"x".repeat(17 * 1024 * 1024), start, start + 1);
    let status = client.export(request("svc", vec![huge])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // Still serving.
    let reply = client
        .export(request(
            "svc",
            vec![span(&t, 5, Some(1), "later", start, start + 1)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.partial_success.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn http_protobuf_round_trip() {
    let server = start().await;
    let t = trace_id(2);
    let start = now();
    let body = request(
        "svc-http",
        vec![
            span(&t, 1, None, "root", start, start + 100),
            span(&t, 2, Some(1), "child", start + 10, start + 50),
        ],
    )
    .encode_to_vec();
    let response = post_traces(otlp_http(&server), "application/x-protobuf", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let reply = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert!(reply.partial_success.is_none());
    let detail = wait_for_trace(server.addr, &hex(&t)).await;
    assert_eq!(detail["spans"].as_array().unwrap().len(), 2);
    assert_eq!(detail["spans"][0]["kind"], "SERVER");
    let (status, last) = get_json(server.addr, "/api/traces/last").await;
    assert_eq!(status, 200);
    assert_eq!(last["traceId"], hex(&t));
    server.shutdown().await;
}

#[tokio::test]
async fn http_json_round_trip() {
    let server = start().await;
    let t = hex(&trace_id(3));
    let start = now();
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "svc-json"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "manual"},
                "spans": [{
                    "traceId": t,
                    "spanId": "0102030405060708",
                    "name": "json span",
                    "kind": 3,
                    "startTimeUnixNano": start.to_string(),
                    "endTimeUnixNano": (start + 1000).to_string(),
                    "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                    "events": [{"name": "hello", "timeUnixNano": (start + 5).to_string()}],
                    "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}],
                    "status": {"code": 2, "message": "bad"}
                }, {
                    "traceId": t,
                    "spanId": "0102030405060709",
                    "name": "ends before it starts",
                    "startTimeUnixNano": (start + 10).to_string(),
                    "endTimeUnixNano": start.to_string()
                }]
            }]
        }]
    });
    let response = post_traces(otlp_http(&server), "application/json", body.to_string()).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["partialSuccess"]["rejectedSpans"], 1);
    let detail = wait_for_trace(server.addr, &t).await;
    let spans = detail["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span["spanId"], "0102030405060708");
    assert_eq!(span["service"], "svc-json");
    assert_eq!(span["kind"], "CLIENT");
    assert_eq!(span["attributes"]["n"], 42);
    assert_eq!(span["events"][0]["name"], "hello");
    assert_eq!(span["links"][0]["spanId"], "b7ad6b7169203331");
    assert_eq!(span["status"]["code"], "ERROR");
    let (_, list) = get_json(server.addr, "/api/traces").await;
    let summary = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["traceId"] == t)
        .unwrap();
    assert_eq!(summary["error"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn links_from_other_traces_show_as_linked_spans() {
    let server = start().await;
    let mut client = trace_service_client(otlp_grpc(&server)).await;
    let publish = trace_id(4);
    let ack = trace_id(5);
    let start = now();
    let mut ack_span = span(&ack, 1, None, "ack", start + 50, start + 60);
    ack_span.links.push(
        baton_server::baton_trace_store::opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: publish.clone(),
            span_id: vec![9, 9, 9, 9, 9, 9, 9, 1],
            ..Default::default()
        },
    );
    client
        .export(request(
            "publisher",
            vec![span(&publish, 1, None, "create", start, start + 10)],
        ))
        .await
        .unwrap();
    client
        .export(request("subscriber", vec![ack_span]))
        .await
        .unwrap();
    let detail = wait_for_trace(server.addr, &hex(&publish)).await;
    assert_eq!(detail["linkedSpans"][0]["name"], "ack");
    assert_eq!(detail["linkedSpans"][0]["traceId"], hex(&ack));
    server.shutdown().await;
}

#[tokio::test]
async fn http_bad_input_gets_clear_errors_and_the_server_stays_up() {
    let server = start().await;
    // Malformed protobuf.
    let response = post_traces(
        otlp_http(&server),
        "application/x-protobuf",
        vec![0xff, 0xff, 0xff, 0x0f],
    )
    .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("protobuf"));
    // Malformed JSON, and JSON of the wrong shape.
    for body in ["{\"resourceSpans\": [", "{\"resourceSpans\": 5}", "[]"] {
        let response = post_traces(otlp_http(&server), "application/json", body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains("JSON"), "{body}");
    }
    // JSON with a bad id is rejected span by span.
    let body = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "abcd", "spanId": "0102030405060708", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    ]}]}]});
    let response = post_traces(otlp_http(&server), "application/json", body.to_string()).await;
    // Either refused as malformed hex or counted as rejected: never stored.
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap();
    assert!(
        status == 400 || reply["partialSuccess"]["rejectedSpans"] == 1,
        "{status} {reply}"
    );
    // Unsupported content type and encoding.
    let response = post_traces(otlp_http(&server), "text/plain", "hi").await;
    assert_eq!(response.status(), 415);
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", otlp_http(&server)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // Malformed gzip, and a gzip bomb inflating past the limit.
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", otlp_http(&server)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let bomb = gzip(&vec![0u8; 20 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", otlp_http(&server)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Too large a body.
    let response = post_traces(
        otlp_http(&server),
        "application/x-protobuf",
        vec![0u8; 17 * 1024 * 1024],
    )
    .await;
    assert_eq!(response.status(), 413);
    // Too many spans at once.
    let many = (0..=baton_server::baton_trace_store::MAX_SPANS_PER_REQUEST)
        .map(|_| Span::default())
        .collect();
    let response = post_traces(
        otlp_http(&server),
        "application/x-protobuf",
        request("svc", many).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 413);
    // Absurd timestamps: accepted request, spans rejected.
    let t = trace_id(6);
    let body = request(
        "svc",
        vec![
            span(&t, 1, None, "zero", 0, 0),
            span(&t, 2, None, "max", u64::MAX - 1, u64::MAX),
        ],
    )
    .encode_to_vec();
    let response = post_traces(otlp_http(&server), "application/x-protobuf", body).await;
    assert_eq!(response.status(), 200);
    let reply = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(reply.partial_success.unwrap().rejected_spans, 2);
    assert!(server.server().trace_store().trace(&hex(&t)).is_none());
    // Wrong path on the OTLP port (`/v1/metrics` and `/v1/logs` are served:
    // tests/forwarding.rs).
    let response = reqwest::get(format!("http://{}/v1/profiles", otlp_http(&server)))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // Still serving, both ports.
    let start = now();
    let response = post_traces(
        otlp_http(&server),
        "application/x-protobuf",
        request("svc", vec![span(&t, 3, None, "fine", start, start + 1)]).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (status, _) = get_json(server.addr, &format!("/api/traces/{}", hex(&t))).await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn query_api_errors() {
    let server = start().await;
    let (status, body) = get_json(server.addr, "/api/traces/last").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, body) = get_json(server.addr, &format!("/api/traces/{}", "ab".repeat(16))).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, _) = get_json(server.addr, "/api/traces/not-hex").await;
    assert_eq!(status, 404);
    let (status, body) = get_json(server.addr, "/api/traces?limit=5").await;
    assert_eq!(status, 200);
    assert_eq!(body["traces"], serde_json::json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn server_spans_land_in_the_store() {
    use opentelemetry::trace::Tracer;
    let server = start().await;
    server
        .server()
        .server_tracer()
        .in_span("server work", |_| {});
    server.server().flush_traces().await;
    let last = server.server().trace_store().last().unwrap();
    assert_eq!(last.spans[0].name, "server work");
    assert_eq!(last.spans[0].service, "baton");
    server.shutdown().await;
}

#[tokio::test]
async fn otlp_is_off_by_default() {
    let server = TestServer::start().await;
    assert!(server.server().otlp_grpc_addr().is_none());
    assert!(server.server().otlp_http_addr().is_none());
    // The query API is there regardless.
    let (status, _) = get_json(server.addr, "/api/traces").await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

/// Sends raw bytes as a gRPC message (to send malformed protobuf).
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

#[tokio::test]
async fn grpc_malformed_protobuf_is_invalid_argument() {
    let server = start().await;
    let channel = baton_testkit::grpc::connect(otlp_grpc(&server)).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let status = grpc
        .unary(
            tonic::Request::new(vec![0xff, 0xff, 0xff, 0x0f]),
            path,
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // The same connection and server still work.
    let mut client = trace_service_client(otlp_grpc(&server)).await;
    let reply = client.export(request("svc", vec![])).await.unwrap();
    assert!(reply.into_inner().partial_success.is_none());
    server.shutdown().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn http_gzip_bodies() {
    let server = start().await;
    let t = trace_id(7);
    let start = now();
    let body = request(
        "svc-gzip",
        vec![span(&t, 1, None, "zipped", start, start + 1)],
    );
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", otlp_http(&server)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&body.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let detail = wait_for_trace(server.addr, &hex(&t)).await;
    assert_eq!(detail["spans"][0]["name"], "zipped");
    server.shutdown().await;
}

/// `n` spans of one trace, as one export request.
fn spans_request(trace: &[u8], n: u8) -> ExportTraceServiceRequest {
    let start = baton_testkit::otlp::now_nanos();
    baton_testkit::otlp::request(
        "flood",
        (1..=n)
            .map(|id| baton_testkit::otlp::span(trace, id, None, "burst", start, start + 1000))
            .collect(),
    )
}

/// Beyond its spans-per-second budget the receiver refuses exports the way
/// OTLP exporters retry (429 + Retry-After, RESOURCE_EXHAUSTED + RetryInfo),
/// and takes them again once the budget has refilled, on virtual time.
#[tokio::test(start_paused = true)]
async fn the_span_budget_refuses_a_flood_in_the_codes_exporters_retry() {
    let server = TestServer::start_with(
        baton_testkit::server::virtual_config()
            .with_otlp_grpc(loopback())
            .with_otlp_http(loopback())
            .with_broker_spans(false)
            .with_otlp_span_budget(400),
    )
    .await;
    let http = server.server().otlp_http_addr().unwrap();
    let traces: Vec<Vec<u8>> = (1..=3).map(baton_testkit::otlp::trace_id).collect();
    // Half a second's worth passes at once.
    let accepted = post_traces(
        http,
        "application/x-protobuf",
        spans_request(&traces[0], 200).encode_to_vec(),
    )
    .await;
    assert_eq!(accepted.status(), 200);
    let refused = post_traces(
        http,
        "application/x-protobuf",
        spans_request(&traces[1], 50).encode_to_vec(),
    )
    .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let grpc = server.server().otlp_grpc_addr().unwrap();
    let mut client = baton_testkit::otlp::trace_service_client(grpc).await;
    let status = client
        .export(spans_request(&traces[2], 50))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(!status.details().is_empty(), "RetryInfo is attached");
    // An eighth of a second refills 50 spans.
    tokio::time::advance(std::time::Duration::from_millis(125)).await;
    let answer = client
        .export(spans_request(&traces[2], 50))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.partial_success.is_none(), "{answer:?}");
    let stored = |seed: usize| {
        let id = baton_testkit::otlp::hex(&traces[seed - 1]);
        server
            .server()
            .trace_store()
            .trace(&id)
            .map(|t| t.spans.len())
    };
    assert_eq!(stored(1), Some(200));
    assert_eq!(stored(2), None, "the refused export was not stored");
    assert_eq!(stored(3), Some(50));
    server.shutdown().await;
}
