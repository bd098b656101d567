//! Mixed-language traces in Baton's own trace store: Google's Python client
//! publishes with tracing on and exports its spans over OTLP/HTTP to Baton's
//! receiver; a Rust subscriber (baton-client, tracing on) exports its spans
//! over OTLP/gRPC to the same server. The stored trace, read through the
//! query API (`GET /api/traces/{id}`), holds both sides connected: Python's
//! `{topic} create` span -> the broker's spans and Rust's `{sub} subscribe`
//! -> `{sub} process`, all in one trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_client::{
    Client, ClientConfig, Endpoint, ReceivedMessage, SubscriberConfig, SubscriptionConfig,
    TracingConfig,
};
use baton_server::ServerConfig;
use baton_testkit::otlp::grpc_exporting_provider;
use baton_testkit::python::{PROJECT, python, run_script, unique_prefix};
use baton_testkit::server::{TestServer, loopback};
use baton_testkit::trace_api::{named, spans};
use serde_json::Value;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
const COUNT: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publisher_and_rust_subscriber_share_a_stored_trace() {
    let python = tokio::task::spawn_blocking(|| python(TMP)).await.unwrap();
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_grpc(loopback())
            .with_otlp_http(loopback()),
    )
    .await;
    let host = server.host();
    let otlp_http = server.otlp_http_endpoint();
    let otlp_grpc = server.otlp_grpc_endpoint();

    let prefix = unique_prefix("otlp-store");
    let (topic, sub) = (format!("{prefix}-topic"), format!("{prefix}-sub"));
    let client =
        Client::connect(ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(host.clone())))
            .await
            .unwrap();
    client.create_topic(&topic).await.unwrap();
    client
        .create_subscription(
            SubscriptionConfig::new(&sub, &topic).with_ack_deadline(Duration::from_secs(30)),
        )
        .await
        .unwrap();

    // Python: publish with tracing on, spans over OTLP/HTTP to Baton.
    let published = run_script(
        &python,
        "trace_otlp_publish.py",
        &host,
        &prefix,
        Duration::from_secs(60),
        &["--count", &COUNT.to_string(), "--otlp", &otlp_http],
    )
    .await
    .unwrap()
    .result;
    assert_eq!(published["exported"], true, "{published}");
    let messages = published["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), COUNT, "{published}");

    // Rust: subscribe with tracing on, spans over OTLP/gRPC to Baton.
    let provider = grpc_exporting_provider(&otlp_grpc, "rust-worker");
    let subscriber = client.subscriber_with(
        &sub,
        SubscriberConfig::default().with_tracing(
            TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone())),
        ),
    );
    let got: Arc<Mutex<HashSet<String>>> = Arc::default();
    let handle = subscriber.subscribe({
        let got = got.clone();
        move |message: ReceivedMessage| {
            let got = got.clone();
            async move {
                got.lock().unwrap().insert(message.message_id().to_owned());
                message.ack();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < COUNT {
        assert!(Instant::now() < deadline, "received only {:?}", got);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let http = reqwest::Client::new();
    for message in &messages {
        let trace_id = message["create"]["trace_id"].as_str().unwrap();
        let create_span_id = message["create"]["span_id"].as_str().unwrap();
        let message_id = message["message_id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let detail = loop {
            let flush = provider.clone();
            tokio::task::spawn_blocking(move || flush.force_flush())
                .await
                .unwrap()
                .unwrap();
            server.server().flush_traces().await;
            let response = http
                .get(format!("http://{host}/api/traces/{trace_id}"))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                let detail: Value = response.json().await.unwrap();
                let subscribes = named(&detail, &format!("{sub} subscribe"));
                let processes = named(&detail, &format!("{sub} process"));
                if !subscribes.is_empty()
                    && !processes.is_empty()
                    && !named(&detail, &format!("{topic} create")).is_empty()
                {
                    break detail;
                }
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} of message {message_id} incomplete: {:#}",
                server
                    .server()
                    .trace_store()
                    .trace(trace_id)
                    .map(|d| serde_json::to_value(d).unwrap())
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        let create = named(&detail, &format!("{topic} create"))
            .into_iter()
            .find(|s| s["spanId"] == create_span_id)
            .unwrap_or_else(|| panic!("no Python create span {create_span_id}: {detail:#}"));
        assert_eq!(create["service"], "python-publisher", "{create:#}");
        assert_eq!(create["kind"], "PRODUCER", "{create:#}");
        assert_eq!(create["attributes"]["messaging.message.id"], message_id);

        let subscribe = named(&detail, &format!("{sub} subscribe"))
            .into_iter()
            .find(|s| s["attributes"]["messaging.message.id"] == message_id)
            .unwrap_or_else(|| panic!("no Rust subscribe span for {message_id}: {detail:#}"));
        assert_eq!(subscribe["service"], "rust-worker");
        assert_eq!(subscribe["kind"], "CONSUMER");
        assert_eq!(subscribe["parentSpanId"], create_span_id, "{detail:#}");
        let process = named(&detail, &format!("{sub} process"))
            .into_iter()
            .find(|s| s["parentSpanId"] == subscribe["spanId"])
            .unwrap_or_else(|| panic!("no process span under subscribe: {detail:#}"));
        assert_eq!(process["service"], "rust-worker");

        // The broker's receive span sits under Python's create span too.
        let receive = named(&detail, &format!("{topic} receive"));
        assert!(
            receive
                .iter()
                .any(|r| r["service"] == "baton" && r["parentSpanId"] == create_span_id),
            "{detail:#}"
        );
        for span in spans(&detail, "spans") {
            assert_eq!(span["traceId"], trace_id);
        }
        let services: HashSet<&str> = spans(&detail, "spans")
            .iter()
            .filter_map(|s| s["service"].as_str())
            .collect();
        assert!(
            ["python-publisher", "baton", "rust-worker"]
                .iter()
                .all(|s| services.contains(s)),
            "services {services:?}"
        );
    }

    handle.shutdown().await.unwrap();
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
    server.shutdown().await;
}
