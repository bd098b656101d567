//! For `tracing` users: a handler's `tracing::info_span!` nests under the
//! message's `process` span, and its log events carry the message's trace
//! (what a log layer reads for the trace id), with a `tracing-opentelemetry`
//! layer installed as the process-wide subscriber. In a file of its own:
//! the subscriber is global for the test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_client::{
    Client, ClientConfig, Endpoint, Message, PublisherConfig, SubscriberConfig, SubscriptionConfig,
    TracingConfig,
};
use baton_testkit::server::TestServer;
use baton_testkit::spans::SpanCapture;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Records, for every log event, its message and the trace id of the span
/// it was logged in: what a log layer that stamps trace ids reads.
#[derive(Clone, Default)]
struct TraceIdsOfEvents(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TraceIdsOfEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let trace_id = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string();
        self.0.lock().unwrap().push((message.0, trace_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_spans_nest_under_process_and_logs_carry_the_trace() {
    let SpanCapture { provider, exporter } = SpanCapture::new();
    let events = TraceIdsOfEvents::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("service-b")))
            .with(events.clone()),
    )
    .unwrap();

    let server = TestServer::start().await;
    let client = Client::connect(
        ClientConfig::new("trace-project").with_endpoint(Endpoint::Emulator(server.host())),
    )
    .await
    .unwrap();
    client.create_topic("orders").await.unwrap();
    client
        .create_subscription(SubscriptionConfig::new("orders-worker", "orders"))
        .await
        .unwrap();
    let tracing_config = TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone()));
    let publisher = client.publisher_with(
        "orders",
        PublisherConfig::default().with_tracing(tracing_config.clone()),
    );
    publisher.publish(Message::new("order 7")).await.unwrap();
    publisher.shutdown().await;

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = client
        .subscriber_with(
            "orders-worker",
            SubscriberConfig::default().with_tracing(tracing_config),
        )
        .subscribe(move |message| {
            let done = done_tx.clone();
            async move {
                async {
                    tracing::info!("reserving inventory");
                }
                .instrument(tracing::info_span!("reserve inventory"))
                .await;
                tracing::info!("handled");
                message.ack();
                let _ = done.send(());
            }
        });
    tokio::time::timeout(Duration::from_secs(20), done_rx.recv())
        .await
        .unwrap()
        .unwrap();
    handle.shutdown().await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let named = |suffix: &str| {
        spans
            .iter()
            .find(|s| s.name.ends_with(suffix))
            .unwrap_or_else(|| {
                panic!(
                    "no {suffix} span among {:?}",
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    };
    let create = named("orders create");
    let process = named("orders-worker process");
    let inventory = named("reserve inventory");
    assert_eq!(inventory.parent_span_id, process.span_context.span_id());
    assert_eq!(
        inventory.span_context.trace_id(),
        create.span_context.trace_id()
    );
    let trace = create.span_context.trace_id().to_string();
    let logged = events.0.lock().unwrap().clone();
    for expected in ["reserving inventory", "handled"] {
        let (_, trace_id) = logged
            .iter()
            .find(|(message, _)| message == expected)
            .unwrap_or_else(|| panic!("no {expected:?} event in {logged:?}"));
        assert_eq!(trace_id, &trace, "{expected:?} carries the message's trace");
    }
    server.shutdown().await;
}
