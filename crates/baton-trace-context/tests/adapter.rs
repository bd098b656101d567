//! The adapter for other Rust Pub/Sub clients makes the official clients'
//! spans: a publisher's `create` span whose context travels in
//! `googclient_traceparent`, and a subscriber's `subscribe` span (its child)
//! with the handler inside a `process` span, where `tracing` spans nest and
//! log events carry the trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use baton_trace_context::adapter::{PublishTracing, ReceiveTracing, Received};
use baton_trace_context::{PropagationOptions, TRACEPARENT_ATTRIBUTE};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn provider() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} in {:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

#[tokio::test]
async fn publish_then_receive_make_one_trace_of_the_official_shape() {
    let (provider, exporter) = provider();
    let publishing = PublishTracing::with_options(
        "shop",
        "projects/shop/topics/orders",
        Some(&provider),
        PropagationOptions::default(),
    );
    let receiving = ReceiveTracing::with_options(
        "shop",
        "orders-worker",
        Some(&provider),
        PropagationOptions::default(),
        true,
    );

    // The publisher's request span is the parent of the create span.
    let request_tracer = provider.tracer("service-a");
    let request = request_tracer.start("POST /orders");
    let request_cx = Context::current_with_span(request);
    let mut attributes = HashMap::from([("kind".to_owned(), "order".to_owned())]);
    let id = {
        let _attached = request_cx.clone().attach();
        let span = publishing.start(&mut attributes, 8, "customer-7");
        span.record(async { Ok::<_, std::io::Error>("42".to_owned()) })
            .await
            .unwrap()
    };
    request_cx.span().end();
    assert_eq!(id, "42");
    let traceparent = attributes[TRACEPARENT_ATTRIBUTE].clone();
    assert_eq!(attributes["kind"], "order");

    let span = receiving.start(Received {
        attributes: &attributes,
        message_id: &id,
        ack_id: "ack-1",
        body_size: 8,
        ordering_key: "customer-7",
        delivery_attempt: 2,
    });
    let handled = span
        .process(async {
            // The handler runs with the process span current.
            Context::current().span().span_context().trace_id()
        })
        .await;
    span.acked();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let request = named(&spans, "POST /orders");
    let create = named(&spans, "orders create");
    assert_eq!(create.span_kind, SpanKind::Producer);
    assert_eq!(create.parent_span_id, request.span_context.span_id());
    assert_eq!(
        attribute(create, "messaging.system"),
        Some("gcp_pubsub".into())
    );
    assert_eq!(
        attribute(create, "messaging.destination.name"),
        Some("orders".into())
    );
    assert_eq!(attribute(create, "gcp.project_id"), Some("shop".into()));
    assert_eq!(
        attribute(create, "messaging.operation"),
        Some("create".into())
    );
    assert_eq!(
        attribute(create, "messaging.message.body.size"),
        Some(8_i64.into())
    );
    assert_eq!(
        attribute(create, "messaging.gcp_pubsub.message.ordering_key"),
        Some("customer-7".into())
    );
    assert_eq!(attribute(create, "messaging.message.id"), Some("42".into()));
    let events: Vec<&str> = create.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(events, ["publish start", "publish end"]);
    // The attribute carries the create span's context, as the official
    // clients write it.
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            create.span_context.trace_id(),
            create.span_context.span_id()
        )
    );

    let subscribe = named(&spans, "orders-worker subscribe");
    assert_eq!(subscribe.span_kind, SpanKind::Consumer);
    assert_eq!(subscribe.parent_span_id, create.span_context.span_id());
    assert_eq!(
        subscribe.span_context.trace_id(),
        create.span_context.trace_id()
    );
    assert_eq!(
        attribute(subscribe, "messaging.message.id"),
        Some("42".into())
    );
    assert_eq!(
        attribute(subscribe, "messaging.gcp_pubsub.message.ack_id"),
        Some("ack-1".into())
    );
    assert_eq!(
        attribute(subscribe, "messaging.gcp_pubsub.message.delivery_attempt"),
        Some(2_i64.into())
    );
    assert_eq!(
        attribute(
            subscribe,
            "messaging.gcp_pubsub.message.exactly_once_delivery"
        ),
        Some(true.into())
    );
    assert_eq!(
        attribute(subscribe, "messaging.gcp_pubsub.result"),
        Some("acked".into())
    );
    let process = named(&spans, "orders-worker process");
    assert_eq!(process.span_kind, SpanKind::Internal);
    assert_eq!(process.parent_span_id, subscribe.span_context.span_id());
    assert_eq!(
        process.links.links[0].span_context.span_id(),
        create.span_context.span_id()
    );
    assert_eq!(handled, create.span_context.trace_id());
}

#[tokio::test]
async fn a_failed_publish_ends_the_create_span_with_its_error() {
    let (provider, exporter) = provider();
    let publishing = PublishTracing::with_options(
        "shop",
        "orders",
        Some(&provider),
        PropagationOptions::default(),
    );
    let mut attributes = HashMap::new();
    let outcome = publishing
        .start(&mut attributes, 3, "")
        .record(async { Err::<String, _>(std::io::Error::other("NOT_FOUND: Topic not found")) })
        .await;
    assert!(outcome.is_err());
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let create = named(&spans, "orders create");
    assert_eq!(create.status, Status::error("NOT_FOUND: Topic not found"));
    assert_eq!(attribute(create, "messaging.message.id"), None);
    // A root create span: no parent, still carried by the message.
    assert!(attributes.contains_key(TRACEPARENT_ATTRIBUTE));
}

#[tokio::test]
async fn tracing_spans_in_the_handler_nest_under_process_and_logs_carry_the_trace() {
    let (provider, exporter) = provider();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("handler")));
    let _default = tracing::subscriber::set_default(subscriber);
    let receiving = ReceiveTracing::with_options(
        "shop",
        "orders-worker",
        Some(&provider),
        PropagationOptions::default(),
        false,
    );
    let publisher_trace = "0af7651916cd43dd8448eb211c80319c";
    let attributes = HashMap::from([(
        TRACEPARENT_ATTRIBUTE.to_owned(),
        format!("00-{publisher_trace}-b7ad6b7169203331-01"),
    )]);
    let span = receiving.start(Received {
        attributes: &attributes,
        message_id: "7",
        ack_id: "a",
        body_size: 1,
        ordering_key: "",
        delivery_attempt: 0,
    });
    let logged_trace = span
        .process(async {
            let query = tracing::info_span!("reserve inventory");
            let _entered = query.enter();
            // What a log layer reads for the trace id of an event here.
            tracing::Span::current()
                .context()
                .span()
                .span_context()
                .trace_id()
                .to_string()
        })
        .await;
    span.nacked();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let subscribe = named(&spans, "orders-worker subscribe");
    assert_eq!(
        subscribe.span_context.trace_id().to_string(),
        publisher_trace
    );
    assert_eq!(
        attribute(subscribe, "messaging.gcp_pubsub.result"),
        Some("nacked".into())
    );
    let process = named(&spans, "orders-worker process");
    assert_eq!(process.parent_span_id, subscribe.span_context.span_id());
    let inventory = named(&spans, "reserve inventory");
    assert_eq!(inventory.parent_span_id, process.span_context.span_id());
    assert_eq!(logged_trace, publisher_trace);
}

#[tokio::test]
async fn an_unsampled_publisher_trace_records_nothing_and_keeps_the_context() {
    let (provider, exporter) = provider();
    let receiving = ReceiveTracing::with_options(
        "shop",
        "orders-worker",
        Some(&provider),
        PropagationOptions::default(),
        false,
    );
    let attributes = HashMap::from([(
        TRACEPARENT_ATTRIBUTE.to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".to_owned(),
    )]);
    let span = receiving.start(Received {
        attributes: &attributes,
        message_id: "7",
        ack_id: "a",
        body_size: 1,
        ordering_key: "",
        delivery_attempt: 0,
    });
    let inside = span
        .process(async { Context::current().span().span_context().clone() })
        .await;
    span.acked();
    provider.force_flush().unwrap();
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    assert_eq!(
        inside.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert!(!inside.is_sampled());
}
