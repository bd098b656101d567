//! Jaeger's query API (`/jaeger/api/...`): answers parsed with structs that
//! mirror Jaeger's JSON model (jaeger's `model/json` and jaeger-query's
//! envelope), each search filter, references, and error shapes.

use std::collections::HashMap;

use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::duration::parse_duration;
use crate::jaeger::SearchQuery;

// --- Jaeger's model, as a client reads it (unknown fields allowed). ---

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    data: T,
    total: i64,
    limit: i64,
    offset: i64,
    errors: Option<Vec<ApiError>>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: Option<u16>,
    msg: String,
    #[serde(rename = "traceID")]
    trace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JTrace {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<JSpan>,
    processes: HashMap<String, JProcess>,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(default)]
    flags: u32,
    operation_name: String,
    #[serde(default)]
    references: Vec<JReference>,
    start_time: u64,
    duration: u64,
    #[serde(default)]
    tags: Vec<JKeyValue>,
    #[serde(default)]
    logs: Vec<JLog>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JReference {
    ref_type: String,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JProcess {
    service_name: String,
    #[serde(default)]
    tags: Vec<JKeyValue>,
}

#[derive(Debug, Deserialize)]
struct JLog {
    timestamp: u64,
    #[serde(default)]
    fields: Vec<JKeyValue>,
}

#[derive(Debug, Deserialize)]
struct JKeyValue {
    key: String,
    #[serde(rename = "type")]
    value_type: String,
    value: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JOperation {
    name: String,
    span_kind: String,
}

impl JSpan {
    fn tag(&self, key: &str) -> Option<&JKeyValue> {
        self.tags.iter().find(|t| t.key == key)
    }
}

/// Checks what a Jaeger client relies on: ids are hex of the right length,
/// every process id resolves, tag values match their declared type.
fn check_trace(trace: &JTrace) {
    assert_eq!(trace.trace_id.len(), 32);
    assert!(trace.warnings.is_none());
    let check_tags = |tags: &[JKeyValue]| {
        for tag in tags {
            let ok = match tag.value_type.as_str() {
                "string" | "binary" => tag.value.is_string(),
                "bool" => tag.value.is_boolean(),
                "int64" => tag.value.is_i64(),
                "float64" => tag.value.is_number(),
                other => panic!("tag type {other}"),
            };
            assert!(ok, "{tag:?}");
            assert!(!tag.key.is_empty());
        }
    };
    for process in trace.processes.values() {
        assert!(!process.service_name.is_empty());
        check_tags(&process.tags);
    }
    for span in &trace.spans {
        assert_eq!(span.trace_id, trace.trace_id);
        assert_eq!(span.span_id.len(), 16);
        assert!(span.span_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(trace.processes.contains_key(&span.process_id), "{span:?}");
        assert!(span.start_time > 946_684_800_000_000, "microseconds");
        assert_eq!(span.flags, 1);
        assert!(span.warnings.is_none());
        check_tags(&span.tags);
        for log in &span.logs {
            check_tags(&log.fields);
            assert!(log.timestamp >= span.start_time);
        }
        for reference in &span.references {
            assert!(["CHILD_OF", "FOLLOWS_FROM"].contains(&reference.ref_type.as_str()));
            assert_eq!(reference.trace_id.len(), 32);
            assert_eq!(reference.span_id.len(), 16);
        }
    }
}

// --- Fixture. ---

const MS: u64 = 1_000_000;

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn named(mut span: ProtoSpan, name: &str, kind: span::SpanKind) -> ProtoSpan {
    span.name = name.into();
    span.kind = kind as i32;
    span
}

/// Trace 1: `frontend` serves `GET /orders` (100 ms) and publishes; `worker`
/// processes the message and fails. Trace 2: `worker` acks, linking to the
/// process span of trace 1, 5 s later. Trace 3: `frontend` answers a health
/// check (500 µs) a minute later. Updated in that order.
fn fixture() -> TraceStore {
    let store = TraceStore::new(1000);
    let mut root = named(
        span(1, 1, None, T0, T0 + 100 * MS),
        "GET /orders",
        span::SpanKind::Server,
    );
    root.attributes = vec![
        attr("http.method", any_value::Value::StringValue("GET".into())),
        attr("http.status_code", any_value::Value::IntValue(200)),
    ];
    let publish = named(
        span(1, 2, Some(1), T0 + MS, T0 + 11 * MS),
        "orders publish",
        span::SpanKind::Producer,
    );
    store
        .ingest(request("frontend", vec![root, publish]))
        .unwrap();
    let mut process = named(
        span(1, 3, Some(2), T0 + 20 * MS, T0 + 50 * MS),
        "orders process",
        span::SpanKind::Consumer,
    );
    process.attributes = vec![
        attr("ratio", any_value::Value::DoubleValue(0.5)),
        attr("cached", any_value::Value::BoolValue(false)),
        attr(
            "list",
            any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }],
            }),
        ),
    ];
    process.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        code: status::StatusCode::Error as i32,
        message: "boom".into(),
    });
    process.events.push(span::Event {
        name: "retry".into(),
        time_unix_nano: T0 + 30 * MS,
        attributes: vec![attr("attempt", any_value::Value::IntValue(2))],
        ..Default::default()
    });
    store.ingest(request("worker", vec![process])).unwrap();
    let mut ack = named(
        span(2, 5, None, T0 + 5000 * MS, T0 + 5002 * MS),
        "orders ack",
        span::SpanKind::Client,
    );
    ack.links.push(span::Link {
        trace_id: tid(1),
        span_id: sid(3),
        ..Default::default()
    });
    store.ingest(request("worker", vec![ack])).unwrap();
    let health = named(
        span(3, 7, None, T0 + 60_000 * MS, T0 + 60_000 * MS + 500_000),
        "GET /health",
        span::SpanKind::Server,
    );
    store.ingest(request("frontend", vec![health])).unwrap();
    store
}

fn hex_tid(n: u8) -> String {
    convert::hex(&tid(n))
}

fn hex_sid(n: u8) -> String {
    convert::hex(&sid(n))
}

/// Percent-encodes a query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(super) async fn get(store: &TraceStore, uri: &str) -> (u16, Value) {
    let response = crate::router::<()>(store.clone())
        .oneshot(
            http::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

/// The traces a search answers, checked against Jaeger's model.
async fn search(store: &TraceStore, query: &str) -> Vec<JTrace> {
    let (status, body) = get(store, &format!("/jaeger/api/traces?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    let envelope: Envelope<Vec<JTrace>> = serde_json::from_value(body).unwrap();
    assert!(envelope.errors.is_none());
    for trace in &envelope.data {
        check_trace(trace);
    }
    envelope.data
}

/// The trace ids a search answers.
async fn ids(store: &TraceStore, query: &str) -> Vec<String> {
    search(store, query)
        .await
        .into_iter()
        .map(|t| t.trace_id)
        .collect()
}

async fn one_trace(store: &TraceStore, id: &str) -> JTrace {
    let (status, body) = get(store, &format!("/jaeger/api/traces/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let mut envelope: Envelope<Vec<JTrace>> = serde_json::from_value(body).unwrap();
    assert_eq!(envelope.data.len(), 1);
    let trace = envelope.data.remove(0);
    check_trace(&trace);
    trace
}

// --- Tests. ---

#[tokio::test]
async fn services_and_operations() {
    let store = fixture();
    let (status, body) = get(&store, "/jaeger/api/services").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": ["frontend", "worker"], "total": 2, "limit": 0, "offset": 0, "errors": null})
    );
    let (status, body) = get(&store, "/jaeger/api/services/frontend/operations").await;
    assert_eq!(status, 200);
    let names: Envelope<Vec<String>> = serde_json::from_value(body).unwrap();
    assert_eq!(names.data, ["GET /health", "GET /orders", "orders publish"]);
    assert_eq!(names.total, 3);
    let (_, body) = get(
        &store,
        "/jaeger/api/operations?service=frontend&spanKind=server",
    )
    .await;
    let operations: Envelope<Vec<JOperation>> = serde_json::from_value(body).unwrap();
    let listed: Vec<(&str, &str)> = operations
        .data
        .iter()
        .map(|o| (o.name.as_str(), o.span_kind.as_str()))
        .collect();
    assert_eq!(
        listed,
        [("GET /health", "server"), ("GET /orders", "server")]
    );
    let (_, body) = get(&store, "/jaeger/api/operations?service=worker").await;
    let operations: Envelope<Vec<JOperation>> = serde_json::from_value(body).unwrap();
    let listed: Vec<(&str, &str)> = operations
        .data
        .iter()
        .map(|o| (o.name.as_str(), o.span_kind.as_str()))
        .collect();
    assert_eq!(
        listed,
        [("orders ack", "client"), ("orders process", "consumer")]
    );
    let (status, body) = get(&store, "/jaeger/api/operations").await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["msg"], "parameter 'service' is required");
    let (_, body) = get(&store, "/jaeger/api/services/nobody/operations").await;
    assert_eq!(body["data"], json!([]));
    // Empty store.
    let (_, body) = get(&TraceStore::new(10), "/jaeger/api/services").await;
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["total"], 0);
}

#[tokio::test]
async fn a_trace_in_jaegers_model() {
    let store = fixture();
    let trace = one_trace(&store, &hex_tid(1)).await;
    assert_eq!(trace.trace_id, hex_tid(1));
    assert_eq!(trace.spans.len(), 3);
    assert_eq!(trace.processes.len(), 2);
    let service = |span: &JSpan| trace.processes[&span.process_id].service_name.as_str();
    let [root, publish, process] = &trace.spans[..] else {
        panic!("three spans");
    };
    // The root.
    assert_eq!(root.operation_name, "GET /orders");
    assert_eq!(service(root), "frontend");
    assert_eq!(root.span_id, hex_sid(1));
    assert_eq!(root.start_time, T0 / 1000);
    assert_eq!(root.duration, 100_000);
    assert!(root.references.is_empty());
    let status = root.tag("http.status_code").unwrap();
    assert_eq!(
        (status.value_type.as_str(), &status.value),
        ("int64", &json!(200))
    );
    assert_eq!(root.tag("http.method").unwrap().value, "GET");
    assert_eq!(root.tag("span.kind").unwrap().value, "server");
    assert!(root.tag("error").is_none());
    assert!(root.tag("otel.status_code").is_none());
    // The parent is a CHILD_OF reference, across services too.
    assert_eq!(publish.references.len(), 1);
    assert_eq!(publish.references[0].ref_type, "CHILD_OF");
    assert_eq!(publish.references[0].span_id, hex_sid(1));
    assert_eq!(publish.references[0].trace_id, hex_tid(1));
    assert_eq!(publish.tag("span.kind").unwrap().value, "producer");
    assert_eq!(service(process), "worker");
    assert_eq!(process.references[0].span_id, hex_sid(2));
    // Status and kind as Jaeger's OTLP translator makes them.
    let error = process.tag("error").unwrap();
    assert_eq!(
        (error.value_type.as_str(), &error.value),
        ("bool", &json!(true))
    );
    assert_eq!(process.tag("otel.status_code").unwrap().value, "ERROR");
    assert_eq!(
        process.tag("otel.status_description").unwrap().value,
        "boom"
    );
    assert_eq!(process.tag("span.kind").unwrap().value, "consumer");
    let ratio = process.tag("ratio").unwrap();
    assert_eq!(
        (ratio.value_type.as_str(), &ratio.value),
        ("float64", &json!(0.5))
    );
    assert_eq!(process.tag("cached").unwrap().value_type, "bool");
    let list = process.tag("list").unwrap();
    assert_eq!(
        (list.value_type.as_str(), &list.value),
        ("string", &json!("[1]"))
    );
    // Events are logs.
    assert_eq!(process.logs.len(), 1);
    assert_eq!(process.logs[0].timestamp, (T0 + 30 * MS) / 1000);
    let fields: Vec<(&str, &Value)> = process.logs[0]
        .fields
        .iter()
        .map(|f| (f.key.as_str(), &f.value))
        .collect();
    assert_eq!(fields, [("event", &json!("retry")), ("attempt", &json!(2))]);
    // Either case, and the shortened form of ids Jaeger prints.
    one_trace(&store, &hex_tid(1).to_uppercase()).await;
}

#[tokio::test]
async fn links_are_follows_from_references() {
    let store = fixture();
    let trace = one_trace(&store, &hex_tid(2)).await;
    assert_eq!(trace.spans.len(), 1);
    let ack = &trace.spans[0];
    assert_eq!(ack.operation_name, "orders ack");
    assert_eq!(ack.references.len(), 1);
    let reference = &ack.references[0];
    assert_eq!(reference.ref_type, "FOLLOWS_FROM");
    assert_eq!(reference.trace_id, hex_tid(1));
    assert_eq!(reference.span_id, hex_sid(3));
    // The linked trace holds its own spans only.
    let linked = one_trace(&store, &hex_tid(1)).await;
    assert!(linked.spans.iter().all(|s| s.trace_id == hex_tid(1)));
}

#[tokio::test]
async fn each_filter_selects_its_traces() {
    let store = fixture();
    let (t1, t2, t3) = (hex_tid(1), hex_tid(2), hex_tid(3));
    let (t1, t2, t3) = (t1.as_str(), t2.as_str(), t3.as_str());
    // Most recently updated first.
    assert_eq!(ids(&store, "").await, [t3, t2, t1]);
    assert_eq!(ids(&store, "service=frontend").await, [t3, t1]);
    assert_eq!(ids(&store, "service=worker").await, [t2, t1]);
    assert!(ids(&store, "service=nobody").await.is_empty());
    assert_eq!(
        ids(
            &store,
            &format!("service=frontend&operation={}", enc("orders publish"))
        )
        .await,
        [t1]
    );
    // The operation must belong to the service.
    assert!(
        ids(
            &store,
            &format!("service=worker&operation={}", enc("orders publish"))
        )
        .await
        .is_empty()
    );
    // Tags: attributes, the tags made from status and kind, event fields.
    let tags = |json: &str| format!("tags={}", enc(json));
    assert_eq!(
        ids(&store, &tags(r#"{"http.status_code":"200"}"#)).await,
        [t1]
    );
    assert!(
        ids(&store, &tags(r#"{"http.status_code":"404"}"#))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&store, &tags(r#"{"http.status_code":200}"#)).await,
        [t1]
    );
    assert_eq!(
        ids(
            &store,
            &format!("service=worker&{}", tags(r#"{"error":"true"}"#))
        )
        .await,
        [t1]
    );
    assert_eq!(ids(&store, &tags(r#"{"span.kind":"client"}"#)).await, [t2]);
    assert_eq!(
        ids(&store, &tags(r#"{"otel.status_description":"boom"}"#)).await,
        [t1]
    );
    assert_eq!(
        ids(&store, &tags(r#"{"event":"retry","attempt":"2"}"#)).await,
        [t1]
    );
    assert_eq!(
        ids(&store, &tags(r#"{"ratio":"0.5","cached":"false"}"#)).await,
        [t1]
    );
    // All conditions hold on one span: the error is worker's, not frontend's.
    assert!(
        ids(
            &store,
            &format!("service=frontend&{}", tags(r#"{"error":"true"}"#))
        )
        .await
        .is_empty()
    );
    // Jaeger's older `tag=key:value` form (the value may hold colons).
    assert_eq!(
        ids(&store, "tag=http.status_code:200&tag=http.method:GET").await,
        [t1]
    );
    assert!(ids(&store, "tag=http.method:POST").await.is_empty());
    // Durations.
    assert_eq!(ids(&store, "service=frontend&minDuration=50ms").await, [t1]);
    assert_eq!(ids(&store, "service=frontend&maxDuration=1ms").await, [t3]);
    assert_eq!(
        ids(&store, "minDuration=500us&maxDuration=0.6ms").await,
        [t3]
    );
    assert!(ids(&store, "minDuration=1.2s").await.is_empty());
    assert_eq!(ids(&store, "minDuration=2ms&maxDuration=2ms").await, [t2]);
    // Start and end, in microseconds, on span starts.
    let us = |nanos: u64| (nanos / 1000).to_string();
    let window = format!("start={}&end={}", us(T0 + 1000 * MS), us(T0 + 120_000 * MS));
    assert_eq!(ids(&store, &window).await, [t3, t2]);
    assert_eq!(
        ids(&store, &format!("service=frontend&{window}")).await,
        [t3]
    );
    assert_eq!(
        ids(&store, &format!("end={}", us(T0 + 10 * MS))).await,
        [t1]
    );
    assert_eq!(
        ids(&store, &format!("start={}", us(T0 + 10_000 * MS))).await,
        [t3]
    );
    // `lookback` sets the start when `start` is absent.
    assert!(ids(&store, "lookback=1h").await.is_empty());
    assert_eq!(ids(&store, "lookback=custom").await.len(), 3);
    assert_eq!(
        ids(&store, &format!("lookback=1m&end={}", us(T0 + 61_000 * MS))).await,
        [t3, t2]
    );
    assert_eq!(
        ids(&store, &format!("lookback=2d&end={}", us(T0 + 61_000 * MS)))
            .await
            .len(),
        3
    );
    // Limit.
    assert_eq!(ids(&store, "service=frontend&limit=1").await, [t3]);
    assert_eq!(ids(&store, "limit=0").await.len(), 3);
    // Empty values count as absent (Grafana sends `operation=`).
    assert_eq!(
        ids(&store, "service=worker&operation=&tags=&minDuration=").await,
        [t2, t1]
    );
    // Found traces come whole, with their processes.
    let found = search(&store, "service=worker&operation=orders%20process").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].spans.len(), 3);
    assert_eq!(found[0].processes.len(), 2);
}

#[tokio::test]
async fn search_by_trace_ids() {
    let store = fixture();
    let missing = "ef".repeat(16);
    let (status, body) = get(
        &store,
        &format!(
            "/jaeger/api/traces?traceID={}&traceID={missing}",
            hex_tid(2)
        ),
    )
    .await;
    assert_eq!(status, 200);
    let envelope: Envelope<Vec<JTrace>> = serde_json::from_value(body).unwrap();
    assert_eq!(envelope.data.len(), 1);
    assert_eq!(envelope.data[0].trace_id, hex_tid(2));
    let errors = envelope.errors.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].trace_id.as_deref(), Some(missing.as_str()));
    assert_eq!(errors[0].msg, "trace not found");
}

#[tokio::test]
async fn missing_traces_and_unsupported_paths() {
    let store = fixture();
    let not_found = json!({"data": null, "total": 0, "limit": 0, "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found"}]});
    for id in ["ef".repeat(16), "abc".into(), "1".into()] {
        let (status, body) = get(&store, &format!("/jaeger/api/traces/{id}")).await;
        assert_eq!((status, &body), (404, &not_found), "{id}");
    }
    let (status, body) = get(&store, "/jaeger/api/dependencies?endTs=1&lookback=1").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!([]));
    let (status, body) = get(&store, "/jaeger/api/metrics/latencies").await;
    assert_eq!(status, 404);
    let envelope: Envelope<Option<Value>> = serde_json::from_value(body).unwrap();
    assert!(envelope.data.is_none());
    assert_eq!(envelope.errors.unwrap()[0].code, Some(404));
    // Baton's own query API keeps /api.
    let (status, body) = get(&store, &format!("/api/traces/{}", hex_tid(1))).await;
    assert_eq!(status, 200);
    assert_eq!(body["traceId"], hex_tid(1));
    let (_, body) = get(&store, "/api/traces").await;
    assert_eq!(body["traces"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_parameters_get_jaegers_400() {
    let store = fixture();
    for query in [
        "/jaeger/api/traces?minDuration=abc",
        "/jaeger/api/traces?maxDuration=10",
        "/jaeger/api/traces?minDuration=-1s",
        "/jaeger/api/traces?minDuration=1x",
        "/jaeger/api/traces?minDuration=2s&maxDuration=1s",
        "/jaeger/api/traces?tags=%7Bbad",
        "/jaeger/api/traces?tags=%5B%5D",
        "/jaeger/api/traces?tags=%7B%22a%22%3A%7B%22b%22%3A1%7D%7D",
        "/jaeger/api/traces?tag=novalue",
        "/jaeger/api/traces?limit=x",
        "/jaeger/api/traces?limit=-1",
        "/jaeger/api/traces?start=yesterday",
        "/jaeger/api/traces?end=1.5",
        "/jaeger/api/traces?traceID=zz",
        "/jaeger/api/traces/xyz",
        &format!("/jaeger/api/traces/{}", "a".repeat(33)),
        &format!("/jaeger/api/traces/{}?start=abc", hex_tid(1)),
        "/jaeger/api/operations?spanKind=server",
    ] {
        let (status, body) = get(&store, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let envelope: Envelope<Option<Value>> = serde_json::from_value(body.clone()).unwrap();
        assert!(envelope.data.is_none(), "{query}");
        assert_eq!((envelope.total, envelope.limit, envelope.offset), (0, 0, 0));
        let errors = envelope.errors.unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, Some(400), "{query}");
        assert!(!errors[0].msg.is_empty());
    }
    let (_, body) = get(&store, "/jaeger/api/traces?minDuration=abc").await;
    assert_eq!(
        body["errors"][0]["msg"],
        "unable to parse param 'minDuration': invalid duration \"abc\""
    );
}

/// jaeger-query's answer for one OTLP span (its `otlp2jaeger` test
/// fixture: service `telemetrygen`, a SERVER span with a parent and two
/// attributes), reproduced here; Baton's answer must have its shape.
#[tokio::test]
async fn matches_a_recorded_jaeger_query_answer() {
    let recorded = json!({
        "data": [{
            "traceID": "83a9efd15c1c98a977e0711cc93ee28b",
            "spans": [{
                "traceID": "83a9efd15c1c98a977e0711cc93ee28b",
                "spanID": "e127af99e3b3e074",
                "operationName": "okey-dokey-0",
                "references": [{"refType": "CHILD_OF",
                    "traceID": "83a9efd15c1c98a977e0711cc93ee28b", "spanID": "909541b92cf05311"}],
                "startTime": 1_706_678_909_209_712_u64,
                "duration": 123,
                "tags": [
                    {"key": "otel.library.name", "type": "string", "value": "telemetrygen"},
                    {"key": "net.peer.ip", "type": "string", "value": "1.2.3.4"},
                    {"key": "peer.service", "type": "string", "value": "telemetrygen-client"},
                    {"key": "span.kind", "type": "string", "value": "server"}
                ],
                "logs": [],
                "processID": "p1",
                "warnings": null
            }],
            "processes": {"p1": {"serviceName": "telemetrygen", "tags": []}},
            "warnings": null
        }],
        "total": 0, "limit": 0, "offset": 0, "errors": null
    });
    let bytes = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    let store = TraceStore::new(10);
    let span = ProtoSpan {
        trace_id: bytes("83a9efd15c1c98a977e0711cc93ee28b"),
        span_id: bytes("e127af99e3b3e074"),
        parent_span_id: bytes("909541b92cf05311"),
        name: "okey-dokey-0".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_706_678_909_209_712_000,
        end_time_unix_nano: 1_706_678_909_209_835_000,
        attributes: vec![
            attr(
                "net.peer.ip",
                any_value::Value::StringValue("1.2.3.4".into()),
            ),
            attr(
                "peer.service",
                any_value::Value::StringValue("telemetrygen-client".into()),
            ),
        ],
        status: Some(opentelemetry_proto::tonic::trace::v1::Status::default()),
        ..Default::default()
    };
    store.ingest(request("telemetrygen", vec![span])).unwrap();
    for uri in [
        "/jaeger/api/traces/83a9efd15c1c98a977e0711cc93ee28b",
        "/jaeger/api/traces?service=telemetrygen",
    ] {
        let (status, ours) = get(&store, uri).await;
        assert_eq!(status, 200);
        same_shape(&ours, &recorded, "$");
        // Equal but for the tags (no instrumentation scope kept) and `flags`.
        let mut ours_span = ours["data"][0]["spans"][0].clone();
        let mut recorded_span = recorded["data"][0]["spans"][0].clone();
        let tags = |span: &mut Value| {
            let mut tags = span
                .as_object_mut()
                .unwrap()
                .remove("tags")
                .unwrap()
                .as_array()
                .unwrap()
                .clone();
            tags.retain(|t| t["key"] != "otel.library.name");
            tags.sort_by_key(|t| t["key"].as_str().unwrap().to_string());
            tags
        };
        assert_eq!(tags(&mut ours_span), tags(&mut recorded_span));
        ours_span.as_object_mut().unwrap().remove("flags");
        assert_eq!(ours_span, recorded_span);
        assert_eq!(
            ours["data"][0]["processes"],
            recorded["data"][0]["processes"]
        );
        for key in ["total", "limit", "offset", "errors"] {
            assert_eq!(ours[key], recorded[key], "{key}");
        }
    }
}

/// Every field of `recorded` is in `ours`, with the same JSON type.
fn same_shape(ours: &Value, recorded: &Value, path: &str) {
    match (ours, recorded) {
        (Value::Object(ours), Value::Object(recorded)) => {
            for (key, value) in recorded {
                let at = format!("{path}.{key}");
                let theirs = ours.get(key).unwrap_or_else(|| panic!("{at} missing"));
                same_shape(theirs, value, &at);
            }
        }
        (Value::Array(ours), Value::Array(recorded)) => {
            if let Some(first) = recorded.first() {
                assert!(!ours.is_empty(), "{path} empty");
                for item in ours {
                    same_shape(item, first, &format!("{path}[]"));
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        (ours, recorded) => panic!("{path}: {ours} where Jaeger has {recorded}"),
    }
}

#[test]
fn go_durations() {
    for (text, nanos) in [
        ("0", 0),
        ("1.2s", 1_200_000_000),
        ("100ms", 100_000_000),
        ("500us", 500_000),
        ("500µs", 500_000),
        ("500μs", 500_000),
        ("7ns", 7),
        ("1h30m", 5_400_000_000_000),
        ("1m0.5s", 60_500_000_000),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("+2ms", 2_000_000),
        ("0.0000000019s", 1),
    ] {
        assert_eq!(parse_duration(text), Ok(nanos), "{text}");
    }
    for text in [
        "",
        "abc",
        "10",
        "-1s",
        "1x",
        "ms",
        ".s",
        "1..5s",
        "1s2",
        "99999999999h",
    ] {
        assert!(parse_duration(text).is_err(), "{text}");
    }
}

#[test]
fn search_query_parsing() {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    };
    // The first of a repeated parameter wins; limits are capped.
    let a = SearchQuery::parse(&pairs(&[("service", "a"), ("service", "b")]), T0).unwrap();
    let b = SearchQuery::parse(&pairs(&[("service", "a")]), T0).unwrap();
    assert_eq!(a, b);
    let capped = SearchQuery::parse(&pairs(&[("limit", "100000")]), T0).unwrap();
    let max = SearchQuery::parse(&pairs(&[("limit", "1500")]), T0).unwrap();
    assert_eq!(capped, max);
    // `tags` wins over `tag` for the same key, values keep their colons.
    let both = SearchQuery::parse(
        &pairs(&[
            ("tag", "url:http://x"),
            ("tags", r#"{"k":"json"}"#),
            ("tag", "k:old"),
        ]),
        T0,
    )
    .unwrap();
    let expected =
        SearchQuery::parse(&pairs(&[("tags", r#"{"url":"http://x","k":"json"}"#)]), T0).unwrap();
    assert_eq!(both, expected);
}

#[tokio::test]
async fn resources_are_processes_and_scopes_are_tags() {
    let store = TraceStore::new(100);
    let mut sent = request("orders-api", vec![span(7, 1, None, T0, T0 + MS)]);
    let resource_spans = &mut sent.resource_spans[0];
    if let Some(resource) = resource_spans.resource.as_mut() {
        resource.attributes.push(attr(
            "host.name",
            any_value::Value::StringValue("node-7".into()),
        ));
    }
    resource_spans.scope_spans[0].scope = Some(InstrumentationScope {
        name: "google-cloud-pubsub".into(),
        version: "2.44.0".into(),
        ..Default::default()
    });
    store.ingest(sent).unwrap();
    let trace = one_trace(&store, &hex_tid(7)).await;
    let process = &trace.processes[&trace.spans[0].process_id];
    assert_eq!(process.service_name, "orders-api");
    let host = process.tags.iter().find(|t| t.key == "host.name");
    assert_eq!(host.map(|t| t.value.clone()), Some(json!("node-7")));
    assert!(process.tags.iter().all(|t| t.key != "service.name"));
    let tag = |key: &str| {
        trace.spans[0]
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
    };
    assert_eq!(tag("otel.scope.name"), Some(json!("google-cloud-pubsub")));
    assert_eq!(tag("otel.scope.version"), Some(json!("2.44.0")));
}
