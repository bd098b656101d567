//! Trace-shape tests: the spans of publish, ack, nack-then-ack and ordering
//! scenarios, taken from an in-memory exporter, must have the shape of the
//! official Python client's captures in `shared/reference/` (names, kinds,
//! parents, trace membership, links and link attributes, events, attribute
//! keys and constant attribute values).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton_client::{
    Client, ClientConfig, Endpoint, Message, PublisherConfig, SubscriberConfig, SubscriptionConfig,
    TracingConfig,
};
use baton_testkit::server::TestServer;
use baton_testkit::spans::SpanCapture;
use futures::StreamExt;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::Value;
use tokio::sync::Mutex;

/// Tests share the global-free setup but run one at a time so each exporter
/// sees only its own scenario.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn reference(scenario: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(format!("python-client-trace-{scenario}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// One span reduced to what the contract fixes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    name: String,
    kind: String,
    parent: Option<String>,
    links: BTreeSet<(String, BTreeMap<String, String>)>,
    events: Vec<String>,
    attribute_keys: BTreeSet<String>,
    constants: BTreeMap<String, String>,
}

/// Attribute values that are the same in every run and every client.
const CONSTANT_KEYS: &[&str] = &[
    "messaging.system",
    "messaging.operation",
    "messaging.operation.name",
    "messaging.gcp_pubsub.result",
    "messaging.gcp_pubsub.message.exactly_once_delivery",
    "messaging.gcp_pubsub.is_receipt_modack",
    "messaging.gcp_pubsub.message.ordering_key",
    "messaging.batch.message_count",
    "code.function",
];

fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
        SpanKind::Internal => "INTERNAL",
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Shapes of the reference spans plus the partition of spans into traces.
fn reference_shapes(reference: &Value) -> (Vec<Shape>, BTreeSet<BTreeSet<String>>) {
    let spans = reference["spans"].as_array().unwrap();
    let name_of: HashMap<String, String> = spans
        .iter()
        .map(|s| (value_text(&s["ref"]), value_text(&s["name"])))
        .collect();
    let mut traces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut shapes = Vec::new();
    for span in spans {
        let attributes = span["attributes"].as_object().unwrap();
        let shape = Shape {
            name: value_text(&span["name"]),
            kind: value_text(&span["kind"]),
            parent: span["parent"].as_str().map(|p| name_of[p].clone()),
            links: span["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let attrs = l["attributes"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), value_text(v)))
                        .collect();
                    (name_of[&value_text(&l["to"])].clone(), attrs)
                })
                .collect(),
            events: span["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(value_text)
                .collect(),
            attribute_keys: attributes.keys().cloned().collect(),
            constants: attributes
                .iter()
                .filter(|(k, _)| CONSTANT_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), value_text(v)))
                .collect(),
        };
        traces
            .entry(value_text(&span["trace"]))
            .or_default()
            .insert(value_text(&span["ref"]));
        shapes.push(shape);
    }
    let partition = traces
        .into_values()
        .map(|refs| refs.into_iter().map(|r| name_of[&r].clone()).collect())
        .collect();
    (shapes, partition)
}

/// Shapes of our spans, with resource ids replaced by the reference's
/// `{topic}` / `{subscription}` placeholders.
fn our_shapes(
    spans: &[SpanData],
    topic: &str,
    subscription: &str,
) -> (Vec<Shape>, BTreeSet<BTreeSet<String>>) {
    let placeholder = |text: &str| {
        text.replace(&format!("{subscription} "), "{subscription} ")
            .replace(&format!("{topic} "), "{topic} ")
    };
    let name_of: HashMap<SpanId, String> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), placeholder(&s.name)))
        .collect();
    let mut traces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut shapes = Vec::new();
    for span in spans {
        let attributes: BTreeMap<String, String> = span
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        shapes.push(Shape {
            name: placeholder(&span.name),
            kind: kind_name(&span.span_kind).to_string(),
            parent: name_of.get(&span.parent_span_id).cloned(),
            links: span
                .links
                .links
                .iter()
                .map(|l| {
                    let attrs = l
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect();
                    let target = name_of
                        .get(&l.span_context.span_id())
                        .cloned()
                        .unwrap_or_else(|| "<outside>".to_string());
                    (target, attrs)
                })
                .collect(),
            events: span
                .events
                .events
                .iter()
                .map(|e| e.name.to_string())
                .collect(),
            attribute_keys: attributes.keys().cloned().collect(),
            constants: attributes
                .iter()
                .filter(|(k, _)| CONSTANT_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        traces
            .entry(span.span_context.trace_id().to_string())
            .or_default()
            .insert(placeholder(&span.name));
    }
    (shapes, traces.into_values().collect())
}

fn assert_same_shape(scenario: &str, ours: Vec<SpanData>, topic: &str, subscription: &str) {
    let (mut expected, expected_traces) = reference_shapes(&reference(scenario));
    let (mut actual, actual_traces) = our_shapes(&ours, topic, subscription);
    expected.sort();
    actual.sort();
    if expected != actual {
        let missing: Vec<_> = expected.iter().filter(|s| !actual.contains(s)).collect();
        let extra: Vec<_> = actual.iter().filter(|s| !expected.contains(s)).collect();
        panic!(
            "{scenario}: span shapes differ\nexpected but missing:\n{missing:#?}\nunexpected:\n{extra:#?}"
        );
    }
    assert_eq!(
        expected_traces, actual_traces,
        "{scenario}: spans are grouped into traces differently"
    );
}

struct Scenario {
    _server: TestServer,
    client: Client,
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    topic: String,
    subscription: String,
}

async fn scenario(ordered: bool) -> Scenario {
    let server = TestServer::start().await;
    let client = Client::connect(
        ClientConfig::new("trace-project").with_endpoint(Endpoint::Emulator(server.host())),
    )
    .await
    .unwrap();
    let topic = "orders-topic".to_string();
    let subscription = "orders-worker".to_string();
    client.create_topic(&topic).await.unwrap();
    client
        .create_subscription(
            SubscriptionConfig::new(&subscription, &topic).with_message_ordering(ordered),
        )
        .await
        .unwrap();
    let SpanCapture { provider, exporter } = SpanCapture::new();
    Scenario {
        _server: server,
        client,
        exporter,
        provider,
        topic,
        subscription,
    }
}

fn tracing_config(provider: &SdkTracerProvider) -> TracingConfig {
    TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone()))
}

/// Publishes one message inside a `POST /orders` span of "service-a", then
/// receives it; `nacks_first` deliveries are nacked before the ack.
async fn run(
    scenario: &Scenario,
    ordering_key: Option<&str>,
    nacks_first: usize,
    through_stream: bool,
) {
    let publisher = scenario.client.publisher_with(
        &scenario.topic,
        PublisherConfig::default()
            .with_message_ordering(ordering_key.is_some())
            .with_tracing(tracing_config(&scenario.provider)),
    );
    let service = scenario.provider.tracer("service-a");
    let request = service.start("POST /orders");
    let cx = opentelemetry::Context::current_with_span(request);
    {
        let _attached = cx.clone().attach();
        let mut message = Message::new(r#"{"order":42,"item":"book","qty":1}     "#);
        if let Some(key) = ordering_key {
            message = message.with_ordering_key(key);
        }
        let handle = publisher.publish(message);
        drop(_attached);
        handle.await.unwrap();
    }
    cx.span().end();
    publisher.shutdown().await;

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let deliveries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = scenario.client.subscriber_with(
        &scenario.subscription,
        SubscriberConfig::default().with_tracing(tracing_config(&scenario.provider)),
    );
    if through_stream {
        // `Subscriber::stream`: the same leases, flow control and spans.
        let mut stream = subscriber.stream();
        for attempt in 0.. {
            let message = tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .expect("the message was not delivered in time")
                .unwrap()
                .unwrap();
            if attempt < nacks_first {
                message.nack();
            } else {
                message.ack_with_result().await.unwrap();
                break;
            }
        }
        drop(stream);
        let _ = scenario.provider.force_flush();
        return;
    }
    let counter = deliveries.clone();
    let handle = subscriber.subscribe(move |message| {
        let done = done_tx.clone();
        let counter = counter.clone();
        async move {
            let attempt = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if attempt < nacks_first {
                message.nack();
            } else {
                message.ack();
                let _ = done.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), done_rx.recv())
        .await
        .expect("the message was not acked in time")
        .unwrap();
    handle.shutdown().await.unwrap();
    let _ = scenario.provider.force_flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_matches_the_python_client() {
    let _serial = SERIAL.lock().await;
    let scenario = scenario(false).await;
    run(&scenario, None, 0, false).await;
    let spans = scenario.exporter.get_finished_spans().unwrap();
    assert_same_shape("ack", spans, &scenario.topic, &scenario.subscription);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_then_ack_matches_the_python_client() {
    let _serial = SERIAL.lock().await;
    let scenario = scenario(false).await;
    run(&scenario, None, 1, false).await;
    let spans = scenario.exporter.get_finished_spans().unwrap();
    assert_same_shape("nack", spans, &scenario.topic, &scenario.subscription);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_key_matches_the_python_client() {
    let _serial = SERIAL.lock().await;
    let scenario = scenario(true).await;
    run(&scenario, Some("customer-1"), 0, false).await;
    let spans = scenario.exporter.get_finished_spans().unwrap();
    assert_same_shape("ordering", spans, &scenario.topic, &scenario.subscription);
}

/// Messages taken from `Subscriber::stream` get the spans of the callback
/// API: the same shape as the Python client's, acked and nacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_api_matches_the_python_client() {
    let _serial = SERIAL.lock().await;
    for (reference, nacks) in [("ack", 0), ("nack", 1)] {
        let scenario = scenario(false).await;
        run(&scenario, None, nacks, true).await;
        let spans = scenario.exporter.get_finished_spans().unwrap();
        assert_same_shape(reference, spans, &scenario.topic, &scenario.subscription);
    }
}

/// The handler runs inside the process span: a span started inside it (via
/// the OpenTelemetry context) is a child of `{subscription} process`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_work_nests_under_the_process_span() {
    let _serial = SERIAL.lock().await;
    let scenario = scenario(false).await;
    let publisher = scenario.client.publisher_with(
        &scenario.topic,
        PublisherConfig::default().with_tracing(tracing_config(&scenario.provider)),
    );
    publisher.publish(Message::new("x")).await.unwrap();
    publisher.shutdown().await;
    let provider = scenario.provider.clone();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let subscriber = scenario.client.subscriber_with(
        &scenario.subscription,
        SubscriberConfig::default().with_tracing(tracing_config(&scenario.provider)),
    );
    let handle = subscriber.subscribe(move |message| {
        let tracer = provider.tracer("service-b");
        let done = done_tx.clone();
        async move {
            let _downstream = tracer.start("GET /inventory");
            drop(_downstream);
            message.ack();
            let _ = done.send(());
        }
    });
    tokio::time::timeout(Duration::from_secs(20), done_rx.recv())
        .await
        .unwrap()
        .unwrap();
    handle.shutdown().await.unwrap();
    let spans = scenario.exporter.get_finished_spans().unwrap();
    let process = spans
        .iter()
        .find(|s| s.name.ends_with(" process"))
        .expect("a process span");
    let downstream = spans
        .iter()
        .find(|s| s.name == "GET /inventory")
        .expect("the handler's span");
    assert_eq!(downstream.parent_span_id, process.span_context.span_id());
    assert_eq!(
        downstream.span_context.trace_id(),
        process.span_context.trace_id()
    );
}

/// A message whose trace is not sampled still carries its trace context
/// (flag 00), and the handler runs inside that trace, but the client records
/// no span, event or link for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_messages_carry_their_context_and_record_nothing() {
    let _serial = SERIAL.lock().await;
    let scenario = scenario(false).await;
    let exporter = InMemorySpanExporter::default();
    let unsampled = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOff,
        )))
        .with_simple_exporter(exporter.clone())
        .build();
    let publisher = scenario.client.publisher_with(
        &scenario.topic,
        PublisherConfig::default().with_tracing(tracing_config(&unsampled)),
    );
    publisher.publish(Message::new("x")).await.unwrap();
    publisher.shutdown().await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let subscriber = scenario.client.subscriber_with(
        &scenario.subscription,
        SubscriberConfig::default().with_tracing(tracing_config(&unsampled)),
    );
    let handle = subscriber.subscribe(move |message| {
        let seen = seen_tx.clone();
        async move {
            let traceparent = message.attributes().get("googclient_traceparent").cloned();
            let current = opentelemetry::Context::current()
                .span()
                .span_context()
                .clone();
            message.ack();
            let _ = seen.send((traceparent, current));
        }
    });
    let (traceparent, current) = tokio::time::timeout(Duration::from_secs(20), seen_rx.recv())
        .await
        .unwrap()
        .unwrap();
    handle.shutdown().await.unwrap();
    let _ = unsampled.force_flush();
    let traceparent = traceparent.expect("the message carries googclient_traceparent");
    assert!(traceparent.ends_with("-00"), "not sampled: {traceparent}");
    assert!(
        current.is_valid(),
        "the handler runs in the message's trace"
    );
    assert!(!current.is_sampled());
    assert_eq!(
        traceparent.split('-').nth(1).unwrap(),
        current.trace_id().to_string()
    );
    assert_eq!(exporter.get_finished_spans().unwrap(), Vec::new());
}

/// A batch larger than `max_links_per_span` links the publish span to the
/// first create spans only, while every create span still links back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_span_links_stop_at_the_configured_limit() {
    let _serial = SERIAL.lock().await;
    let scenario = scenario(false).await;
    let publisher = scenario.client.publisher_with(
        &scenario.topic,
        PublisherConfig::default()
            .with_batching(
                baton_client::BatchSettings::default().with_max_delay(Duration::from_secs(5)),
            )
            .with_tracing(tracing_config(&scenario.provider).with_max_links_per_span(2)),
    );
    let mut handles = Vec::new();
    for i in 0..5 {
        handles.push(publisher.publish(Message::new(format!("m{i}"))));
    }
    publisher.flush().await;
    for handle in handles {
        handle.await.unwrap();
    }
    let _ = scenario.provider.force_flush();
    let spans = scenario.exporter.get_finished_spans().unwrap();
    let publish: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "orders-topic publish")
        .collect();
    assert_eq!(publish.len(), 1, "one batch, one publish span");
    assert_eq!(publish[0].links.links.len(), 2);
    let creates: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "orders-topic create")
        .collect();
    assert_eq!(creates.len(), 5);
    for create in creates {
        assert_eq!(
            create
                .links
                .iter()
                .map(|l| l.span_context.span_id())
                .collect::<Vec<_>>(),
            vec![publish[0].span_context.span_id()]
        );
    }
}
