//! The trace store of a durable server (`ServerConfig::data_dir`): spans
//! survive restarts, stay within the byte bound on disk, and expire after
//! the retention on Tokio's clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baton_server::{ServerConfig, TRACE_FILE};
use baton_testkit::otlp::{hex, now_nanos, post_traces, request, span, trace_id};
use baton_testkit::server::{TestServer, loopback, virtual_config};
use baton_testkit::trace_api::get_json;
use prost::Message;

/// A span of `trace` in the service `service`, with a `host.name` in its
/// resource.
fn export(service: &str, trace: &[u8], id: u8) -> Vec<u8> {
    let now = now_nanos();
    let mut request = request(
        service,
        vec![span(trace, id, None, "work", now, now + 1000)],
    );
    request.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(string_kv("host.name", "box-1"));
    request.encode_to_vec()
}

fn string_kv(
    key: &str,
    value: &str,
) -> baton_server::baton_trace_store::opentelemetry_proto::tonic::common::v1::KeyValue {
    use baton_server::baton_trace_store::opentelemetry_proto::tonic::common::v1::{
        AnyValue, KeyValue, any_value,
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_data_dir(dir.path())
            .with_otlp_http(loopback()),
    )
    .await;
    let trace = trace_id(1);
    let otlp = server.server().otlp_http_addr().unwrap();
    let response = post_traces(otlp, "application/x-protobuf", export("svc-a", &trace, 1)).await;
    assert!(response.status().is_success());
    // The server's own spans go to the same store.
    let other = trace_id(2);
    server
        .server()
        .trace_store()
        .ingest(request(
            "svc-b",
            vec![span(&other, 1, None, "x", now_nanos(), now_nanos())],
        ))
        .unwrap();
    let before = get_json(server.addr, &format!("/api/traces/{}", hex(&trace))).await;
    assert_eq!(before.0, 200);

    let server = server.restart().await;
    assert!(dir.path().join(TRACE_FILE).exists());
    let (status, after) = get_json(server.addr, &format!("/api/traces/{}", hex(&trace))).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before.1);
    assert_eq!(after["spans"][0]["resource"]["host.name"], "box-1");
    let (_, list) = get_json(server.addr, "/api/traces").await;
    let ids: Vec<&str> = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceId"].as_str().unwrap())
        .collect();
    // Most recently updated first, as before the restart.
    assert_eq!(ids, [hex(&other), hex(&trace)]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_server_forgets_its_traces() {
    let server = TestServer::start().await;
    let trace = trace_id(3);
    server
        .server()
        .trace_store()
        .ingest(request(
            "svc",
            vec![span(&trace, 1, None, "x", now_nanos(), now_nanos())],
        ))
        .unwrap();
    assert!(server.server().trace_store().path().is_none());
    let server = server.restart().await;
    assert_eq!(server.server().trace_store().span_count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_in_memory_and_on_disk_under_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 1024 * 1024;
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_data_dir(dir.path())
            .with_otlp_http(loopback())
            .with_trace_store_bytes(cap)
            .with_broker_spans(false),
    )
    .await;
    let otlp = server.server().otlp_http_addr().unwrap();
    let store = server.server().trace_store().clone();
    for round in 0..30u8 {
        let trace = trace_id(round);
        let now = now_nanos();
        let mut request = request(
            "flood",
            (1..=200)
                .map(|i| span(&trace, i, None, &"n".repeat(200), now, now + 1))
                .collect(),
        );
        request.resource_spans[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(string_kv("round", &round.to_string()));
        let response = post_traces(otlp, "application/x-protobuf", request.encode_to_vec()).await;
        assert!(response.status().is_success());
        assert!(store.byte_count() <= cap, "{} > {cap}", store.byte_count());
    }
    let held = store.span_count();
    assert!(held < 30 * 200 && held > 0, "{held}");
    let server = server.restart().await;
    let store = server.server().trace_store().clone();
    assert_eq!(store.span_count(), held);
    assert!(store.byte_count() <= cap);
    server.shutdown().await;
    let file = std::fs::metadata(dir.path().join(TRACE_FILE))
        .unwrap()
        .len();
    assert!(
        file <= 3 * cap as u64,
        "trace file {file} B for a {cap} B bound"
    );
}

#[tokio::test(start_paused = true)]
async fn traces_expire_on_virtual_time_and_stay_expired_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        virtual_config()
            .with_data_dir(dir.path())
            .with_trace_retention(Some(Duration::from_secs(3600))),
    )
    .await;
    let store = server.server().trace_store().clone();
    let (old, young) = (trace_id(4), trace_id(5));
    let now = now_nanos();
    store
        .ingest(request(
            "svc",
            vec![span(&old, 1, None, "old", now, now + 1)],
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1800)).await;
    store
        .ingest(request(
            "svc",
            vec![span(&young, 1, None, "young", now, now + 1)],
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1700)).await;
    assert_eq!(store.trace_count(), 2);
    // An hour and a tick (6 min) after its last update, the old trace goes.
    tokio::time::sleep(Duration::from_secs(500)).await;
    assert!(store.trace(&hex(&old)).is_none());
    assert!(store.trace(&hex(&young)).is_some());
    let server = server.restart().await;
    let store = server.server().trace_store().clone();
    assert!(store.trace(&hex(&old)).is_none());
    assert!(store.trace(&hex(&young)).is_some());
    tokio::time::sleep(Duration::from_secs(1900)).await;
    assert_eq!(store.trace_count(), 0);
    server.shutdown().await;
}
