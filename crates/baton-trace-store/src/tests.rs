#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, span, status};
use proptest::prelude::*;
use prost::Message;

use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

mod jaeger;
mod search;

pub(super) type ProtoSpan = opentelemetry_proto::tonic::trace::v1::Span;

pub(super) const T0: u64 = 1_700_000_000_000_000_000;

pub(super) fn tid(n: u8) -> Vec<u8> {
    let mut id = vec![0; 16];
    id[15] = n;
    id[0] = 0xab;
    id
}

fn sid(n: u8) -> Vec<u8> {
    let mut id = vec![0; 8];
    id[7] = n;
    id[0] = 0xcd;
    id
}

pub(super) fn span(trace: u8, id: u8, parent: Option<u8>, start: u64, end: u64) -> ProtoSpan {
    ProtoSpan {
        trace_id: tid(trace),
        span_id: sid(id),
        parent_span_id: parent.map(sid).unwrap_or_default(),
        name: format!("span-{id}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

pub(super) fn request(service: &str, spans: Vec<ProtoSpan>) -> ExportTraceServiceRequest {
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

#[test]
fn stores_and_queries_a_trace() {
    let store = TraceStore::new(100);
    let mut child = span(1, 2, Some(1), T0 + 10, T0 + 20);
    child.attributes.push(KeyValue {
        key: "n".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(7)),
        }),
        ..Default::default()
    });
    child.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        code: status::StatusCode::Error as i32,
        message: "boom".into(),
    });
    let summary = store
        .ingest(request(
            "svc-a",
            vec![child, span(1, 1, None, T0, T0 + 100)],
        ))
        .unwrap();
    assert_eq!(summary.accepted, 2);
    assert_eq!(summary.rejected, 0);
    let list = store.list(10);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].root_name, "span-1");
    assert_eq!(list[0].root_service, "svc-a");
    assert_eq!(list[0].duration_nanos, 100);
    assert!(list[0].error);
    let id = list[0].trace_id.clone();
    assert_eq!(id.len(), 32);
    let detail = store.trace(&id.to_uppercase()).unwrap();
    assert_eq!(detail.spans.len(), 2);
    assert_eq!(detail.spans[0].parent_span_id, "");
    assert_eq!(detail.spans[1].parent_span_id, detail.spans[0].span_id);
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["spans"][1]["attributes"]["n"], 7);
    assert_eq!(json["spans"][1]["status"]["code"], "ERROR");
    assert_eq!(json["spans"][1]["kind"], "SERVER");
    assert_eq!(json["spans"][0]["startUnixNano"], T0.to_string());
    assert!(json["linkedSpans"].as_array().unwrap().is_empty());
    let summary_json = serde_json::to_value(&list[0]).unwrap();
    for key in [
        "traceId",
        "rootService",
        "rootName",
        "startUnixNano",
        "durationNanos",
        "spanCount",
        "error",
        "services",
    ] {
        assert!(summary_json.get(key).is_some(), "{key}");
    }
    assert_eq!(store.last().unwrap().trace_id, id);
    assert!(store.trace("nothex").is_none());
    assert!(store.trace(&"0".repeat(32)).is_none());
}

#[test]
fn rejects_bad_spans_without_failing_the_request() {
    let store = TraceStore::new(100);
    let mut short_trace = span(1, 1, None, T0, T0 + 1);
    short_trace.trace_id.truncate(3);
    let mut long_span = span(1, 2, None, T0, T0 + 1);
    long_span.span_id.push(1);
    let mut bad_parent = span(1, 3, None, T0, T0 + 1);
    bad_parent.parent_span_id = vec![1, 2, 3];
    let backwards = span(1, 4, None, T0 + 10, T0);
    let future = span(1, 5, None, T0, u64::MAX);
    let ancient = span(1, 6, None, 5, 10);
    let mut zero = span(1, 7, None, T0, T0 + 1);
    zero.trace_id = vec![0; 16];
    let good = span(1, 8, None, T0, T0 + 1);
    let summary = store
        .ingest(request(
            "s",
            vec![
                short_trace,
                long_span,
                bad_parent,
                backwards,
                future,
                ancient,
                zero,
                good,
            ],
        ))
        .unwrap();
    assert_eq!(summary.accepted, 1);
    assert_eq!(summary.rejected, 7);
    assert!(summary.first_error.unwrap().contains("trace id"));
    assert_eq!(store.span_count(), 1);
}

#[test]
fn refuses_huge_batches() {
    let store = TraceStore::new(10);
    let spans = (0..=MAX_SPANS_PER_REQUEST)
        .map(|_| ProtoSpan::default())
        .collect();
    let error = store.ingest(request("s", spans)).unwrap_err();
    assert!(matches!(error, IngestError::TooLarge { .. }));
    assert_eq!(store.span_count(), 0);
}

#[test]
fn evicts_oldest_traces_first() {
    let store = TraceStore::new(4);
    for trace in 1..=3 {
        store
            .ingest(request(
                "s",
                vec![
                    span(trace, 1, None, T0, T0 + 1),
                    span(trace, 2, Some(1), T0, T0 + 1),
                ],
            ))
            .unwrap();
    }
    assert_eq!(store.span_count(), 4);
    assert_eq!(store.trace_count(), 2);
    let ids: Vec<String> = store.list(10).into_iter().map(|t| t.trace_id).collect();
    assert_eq!(ids, vec![convert::hex(&tid(3)), convert::hex(&tid(2))]);
    // A trace larger than the store keeps what fits.
    let big: Vec<ProtoSpan> = (1..=6).map(|i| span(9, i, None, T0, T0 + 1)).collect();
    let summary = store.ingest(request("s", big)).unwrap();
    assert_eq!(summary.accepted, 4);
    assert_eq!(summary.rejected, 2);
    assert_eq!(store.span_count(), 4);
    // Re-sending a span replaces it.
    let summary = store
        .ingest(request("s", vec![span(9, 1, None, T0, T0 + 5)]))
        .unwrap();
    assert_eq!(summary.accepted, 1);
    assert_eq!(store.span_count(), 4);
}

#[test]
fn bounds_memory_too() {
    let store = TraceStore::with_limits(1000, 64 * 1024);
    let mut huge = span(1, 1, None, T0, T0 + 1);
    huge.name = "x".repeat(100 * 1024);
    let summary = store.ingest(request("s", vec![huge])).unwrap();
    assert_eq!(summary.rejected, 1);
    for trace in 1..=50 {
        let mut big = span(trace, 1, None, T0, T0 + 1);
        big.name = "y".repeat(4 * 1024);
        store.ingest(request("s", vec![big])).unwrap();
        assert!(store.byte_count() <= 64 * 1024);
    }
    assert!(store.trace_count() < 50);
    assert!(store.trace(&convert::hex(&tid(50))).is_some());
}

pub(super) fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A request from a resource with `service.name`, `host.name` = `host`, and
/// a scope `orders-lib` 1.2.3 with attribute `lib.flavor` = `fast`.
fn request_with_origin(host: &str, spans: Vec<ProtoSpan>) -> ExportTraceServiceRequest {
    let mut request = request("svc-r", spans);
    let resource_spans = &mut request.resource_spans[0];
    if let Some(resource) = resource_spans.resource.as_mut() {
        resource.attributes.push(string_kv("host.name", host));
        resource
            .attributes
            .push(string_kv("deployment.environment", "test"));
    }
    resource_spans.scope_spans[0].scope = Some(InstrumentationScope {
        name: "orders-lib".into(),
        version: "1.2.3".into(),
        attributes: vec![string_kv("lib.flavor", "fast")],
        dropped_attributes_count: 0,
    });
    request
}

#[test]
fn keeps_the_resource_and_the_scope_of_each_span() {
    let store = TraceStore::new(100);
    store
        .ingest(request_with_origin(
            "host-1",
            vec![span(1, 1, None, T0, T0 + 10)],
        ))
        .unwrap();
    let detail = store.trace(&convert::hex(&tid(1))).unwrap();
    let stored = &detail.spans[0];
    assert_eq!(stored.service, "svc-r");
    assert_eq!(stored.resource["service.name"], "svc-r");
    assert_eq!(stored.resource["host.name"], "host-1");
    assert_eq!(stored.resource["deployment.environment"], "test");
    assert_eq!(stored.scope.name, "orders-lib");
    assert_eq!(stored.scope.version, "1.2.3");
    assert_eq!(stored.scope.attributes["lib.flavor"], "fast");
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["spans"][0]["resource"]["host.name"], "host-1");
    assert_eq!(json["spans"][0]["resource"]["service.name"], "svc-r");
    assert_eq!(
        json["spans"][0]["scope"],
        serde_json::json!({"name": "orders-lib", "version": "1.2.3", "attributes": {"lib.flavor": "fast"}})
    );
    // Without a scope: empty name and version, no attributes.
    store
        .ingest(request("plain", vec![span(2, 1, None, T0, T0 + 10)]))
        .unwrap();
    let json = serde_json::to_value(store.trace(&convert::hex(&tid(2))).unwrap()).unwrap();
    assert_eq!(
        json["spans"][0]["scope"],
        serde_json::json!({"name": "", "version": "", "attributes": {}})
    );
    assert_eq!(
        json["spans"][0]["resource"],
        serde_json::json!({"service.name": "plain"})
    );
    store.audit();
}

#[test]
fn spans_of_one_origin_share_one_copy_across_requests() {
    let store = TraceStore::new(100);
    store
        .ingest(request_with_origin(
            "host-1",
            vec![span(1, 1, None, T0, T0 + 10)],
        ))
        .unwrap();
    store
        .ingest(request_with_origin(
            "host-1",
            vec![
                span(2, 1, None, T0, T0 + 10),
                span(2, 2, Some(1), T0, T0 + 5),
            ],
        ))
        .unwrap();
    let first = store.trace(&convert::hex(&tid(1))).unwrap();
    let second = store.trace(&convert::hex(&tid(2))).unwrap();
    assert!(Arc::ptr_eq(
        &first.spans[0].resource,
        &second.spans[0].resource
    ));
    assert!(Arc::ptr_eq(&first.spans[0].scope, &second.spans[1].scope));
    // One copy, counted once in the bytes (the audit recounts them).
    assert_eq!(store.origin_count(), 1);
    store.audit();
    // Another host is another origin.
    store
        .ingest(request_with_origin(
            "host-2",
            vec![span(3, 1, None, T0, T0 + 10)],
        ))
        .unwrap();
    let third = store.trace(&convert::hex(&tid(3))).unwrap();
    assert!(!Arc::ptr_eq(
        &first.spans[0].resource,
        &third.spans[0].resource
    ));
    assert_eq!(third.spans[0].resource["host.name"], "host-2");
    assert_eq!(store.origin_count(), 2);
    store.audit();
}

#[test]
fn origins_go_with_their_last_span() {
    // Room for one trace at a time: each new trace evicts the previous one,
    // and with it its origin.
    let store = TraceStore::new(1);
    for host in 0..20 {
        store
            .ingest(request_with_origin(
                &format!("host-{host}"),
                vec![span(host, 1, None, T0, T0 + 10)],
            ))
            .unwrap();
        store.audit();
    }
    assert_eq!(store.trace_count(), 1);
    assert_eq!(store.origin_count(), 1);
    let alone = store.byte_count();
    // Replacing the span (same ids) from another origin swaps the origin.
    store
        .ingest(request_with_origin(
            "host-xx",
            vec![span(19, 1, None, T0, T0 + 10)],
        ))
        .unwrap();
    store.audit();
    assert_eq!(store.byte_count(), alone);
    let detail = store.last().unwrap();
    assert_eq!(detail.spans[0].resource["host.name"], "host-xx");
}

#[test]
fn linked_spans_come_from_other_traces() {
    let store = TraceStore::new(100);
    store
        .ingest(request("producer", vec![span(1, 1, None, T0, T0 + 10)]))
        .unwrap();
    let mut ack = span(2, 5, None, T0 + 20, T0 + 30);
    ack.links.push(span::Link {
        trace_id: tid(1),
        span_id: sid(1),
        ..Default::default()
    });
    ack.links.push(span::Link {
        trace_id: vec![1, 2],
        span_id: sid(1),
        ..Default::default()
    });
    store.ingest(request("consumer", vec![ack])).unwrap();
    let detail = store.trace(&convert::hex(&tid(1))).unwrap();
    assert_eq!(detail.linked_spans.len(), 1);
    assert_eq!(detail.linked_spans[0].service, "consumer");
    assert_eq!(detail.linked_spans[0].links.len(), 1);
    let other = store.trace(&convert::hex(&tid(2))).unwrap();
    assert!(other.linked_spans.is_empty());
}

#[test]
fn exporter_writes_sdk_spans_into_the_store() {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    let store = TraceStore::new(100);
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(StoreExporter::new(store.clone()))
        .build();
    let tracer = provider.tracer("test");
    let mut span = tracer.start("work");
    span.set_attribute(opentelemetry::KeyValue::new("k", "v"));
    span.end();
    provider.force_flush().unwrap();
    let detail = store.last().unwrap();
    assert_eq!(detail.spans.len(), 1);
    assert_eq!(detail.spans[0].name, "work");
    assert_eq!(detail.spans[0].service, "baton");
    assert_eq!(detail.spans[0].attributes["k"], "v");
    assert_eq!(detail.spans[0].resource["service.name"], "baton");
    assert_eq!(detail.spans[0].scope.name, "test");
    provider.shutdown().unwrap();
}

#[test]
fn exporter_keeps_a_named_service() {
    use opentelemetry::trace::TracerProvider as _;
    let store = TraceStore::new(100);
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(StoreExporter::new(store.clone()))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("named")
                .build(),
        )
        .build();
    tracer_span(&provider.tracer("t"));
    assert_eq!(store.last().unwrap().spans[0].service, "named");
}

fn tracer_span(tracer: &opentelemetry_sdk::trace::SdkTracer) {
    use opentelemetry::trace::Tracer as _;
    tracer.in_span("x", |_| {});
}

fn arb_id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), len),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn arb_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => T0..T0 + 1_000_000_000,
        1 => any::<u64>(),
    ]
}

fn arb_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        any::<String>().prop_map(any_value::Value::StringValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        any::<f64>().prop_map(any_value::Value::DoubleValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
    ]
    .prop_map(|v| AnyValue { value: Some(v) });
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(|values| AnyValue {
            value: Some(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue { values },
            )),
        })
    })
}

prop_compose! {
    fn arb_span()(
        trace in prop_oneof![3 => (0u8..6).prop_map(tid), 1 => arb_id(16)],
        id in arb_id(8),
        parent in prop_oneof![Just(Vec::new()), arb_id(8)],
        start in arb_time(),
        end in arb_time(),
        kind in any::<i32>(),
        code in any::<i32>(),
        attr in arb_value(),
        link_trace in prop_oneof![(0u8..6).prop_map(tid), arb_id(16)],
        link_span in arb_id(8),
    ) -> ProtoSpan {
        ProtoSpan {
            trace_id: trace,
            span_id: id,
            parent_span_id: parent,
            name: "p".into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![KeyValue { key: "a".into(), value: Some(attr), ..Default::default() }],
            links: vec![span::Link { trace_id: link_trace, span_id: link_span, ..Default::default() }],
            status: Some(opentelemetry_proto::tonic::trace::v1::Status { code, message: String::new() }),
            ..Default::default()
        }
    }
}

proptest! {
    #[test]
    fn ingest_never_panics_and_keeps_the_bound(
        max in 1usize..20,
        batches in prop::collection::vec(prop::collection::vec(arb_span(), 0..12), 1..6),
    ) {
        let max_bytes = 4096;
        let store = TraceStore::with_limits(max, max_bytes);
        for batch in batches {
            let n = batch.len();
            let summary = store.ingest(request("svc", batch)).unwrap();
            prop_assert_eq!(summary.accepted + summary.rejected, n);
            prop_assert!(store.span_count() <= max);
            prop_assert!(store.byte_count() <= max_bytes);
            // The search records follow replacements and evictions (audit
            // rebuilds each from the spans); every trace is found once.
            store.audit();
            let everything = SearchRequest::parse_query("kind=all&limit=1000").unwrap();
            let page = store.search(&everything);
            prop_assert_eq!(page.total, store.trace_count());
            prop_assert_eq!(page.traces.len(), store.trace_count());
            for trace in store.list(100) {
                let detail = store.trace(&trace.trace_id).unwrap();
                prop_assert_eq!(detail.spans.len(), trace.span_count);
                serde_json::to_string(&detail).unwrap();
                for linked in &detail.linked_spans {
                    prop_assert!(linked.trace_id != detail.trace_id);
                }
            }
        }
        let counted: usize = store.list(usize::MAX).iter().map(|t| t.span_count).sum();
        prop_assert_eq!(counted, store.span_count());
    }
}

#[test]
fn random_protobuf_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let store = TraceStore::new(1000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    // Valid requests mutated byte by byte, plus pure noise.
    let seed = request(
        "fuzz",
        (1..20)
            .map(|i| span(i % 4, i, Some(1), T0, T0 + 9))
            .collect(),
    )
    .encode_to_vec();
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let mut bytes = seed.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            bytes.truncate(rng.random_range(0..=bytes.len()));
            bytes
        } else {
            (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect()
        };
        if let Ok(request) = ExportTraceServiceRequest::decode(bytes.as_slice()) {
            let _ = store.ingest(request);
        }
        assert!(store.span_count() <= 1000);
    }
    for trace in store.list(usize::MAX) {
        serde_json::to_string(&store.trace(&trace.trace_id).unwrap()).unwrap();
    }
}
