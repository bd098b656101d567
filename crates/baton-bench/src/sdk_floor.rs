//! `--sdk-floor`: what the OpenTelemetry SDK alone needs for the spans of one
//! traced message, with no Baton code and no network: the same span shape
//! (names, kinds, attributes, events, links), made and ended back to back on
//! one thread through the batch processor of the tracing-on mode.
//!
//! The gap between this and the tracing overhead `baton-bench` measures is
//! what running the spans inside a real client adds: spans that live from
//! arrival to ack, touched from several threads, so their memory is cold.

use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{Link, Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};

/// Messages per batch (one publish, modack and ack RPC span each).
const BATCH: usize = 100;

/// The publish side of one batch: create spans with flow control and
/// batching children, the publish RPC span linked both ways.
fn publish_batch(tracer: &impl Tracer<Span: Send + Sync + 'static>, round: usize) {
    let mut creates = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let span = tracer
            .span_builder("topic create")
            .with_kind(SpanKind::Producer)
            .with_attributes(vec![
                KeyValue::new("messaging.system", "gcp_pubsub"),
                KeyValue::new("messaging.destination.name", "topic"),
                KeyValue::new("gcp.project_id", "project"),
                KeyValue::new("messaging.operation", "create"),
                KeyValue::new("code.function", "publish"),
                KeyValue::new("messaging.message.body.size", 1024_i64),
                KeyValue::new("messaging.gcp_pubsub.message.ordering_key", ""),
            ])
            .start(tracer);
        let cx = Context::new().with_span(span);
        for name in ["publisher flow control", "publisher batching"] {
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .start_with_context(tracer, &cx)
                .end();
        }
        cx.span().add_event("publish start", Vec::new());
        creates.push((cx, format!("{round}-{i}")));
    }
    let links = creates
        .iter()
        .map(|(cx, _)| Link::with_context(cx.span().span_context().clone()))
        .collect();
    let mut rpc = tracer
        .span_builder("topic publish")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("messaging.system", "gcp_pubsub"),
            KeyValue::new("messaging.batch.message_count", 100_i64),
        ])
        .with_links(links)
        .start(tracer);
    for (cx, id) in creates {
        let span = cx.span();
        span.add_link(rpc.span_context().clone(), Vec::new());
        span.add_event("publish end", Vec::new());
        span.set_attribute(KeyValue::new("messaging.message.id", id));
        span.end();
    }
    rpc.end();
}

/// The receive side of one batch: subscribe spans with their children, the
/// process span, and the modack and ack RPC spans linked both ways.
fn receive_batch(tracer: &impl Tracer<Span: Send + Sync + 'static>, round: usize) {
    let mut subscribes = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let span = tracer
            .span_builder("subscription subscribe")
            .with_kind(SpanKind::Consumer)
            .with_attributes(vec![
                KeyValue::new("messaging.system", "gcp_pubsub"),
                KeyValue::new("messaging.destination.name", "subscription"),
                KeyValue::new("gcp.project_id", "project"),
                KeyValue::new("messaging.message.id", format!("{round}-{i}")),
                KeyValue::new("messaging.message.body.size", 1024_i64),
                KeyValue::new("messaging.gcp_pubsub.message.ack_id", "a".repeat(100)),
                KeyValue::new("messaging.gcp_pubsub.message.ordering_key", ""),
                KeyValue::new("messaging.gcp_pubsub.message.exactly_once_delivery", false),
                KeyValue::new("code.function", "_on_response"),
                KeyValue::new("messaging.gcp_pubsub.message.delivery_attempt", 0_i64),
            ])
            .start(tracer);
        subscribes.push(Context::new().with_span(span));
    }
    for operation in ["modack", "ack"] {
        let sent = SystemTime::now();
        let links = subscribes
            .iter()
            .map(|cx| Link::with_context(cx.span().span_context().clone()))
            .collect();
        let mut rpc = tracer
            .span_builder(format!("subscription {operation}"))
            .with_kind(SpanKind::Client)
            .with_start_time(sent)
            .with_attributes(vec![
                KeyValue::new("messaging.system", "gcp_pubsub"),
                KeyValue::new("messaging.batch.message_count", 100_i64),
            ])
            .with_links(links)
            .start(tracer);
        for cx in &subscribes {
            let span = cx.span();
            span.add_event_with_timestamp(format!("{operation} start"), sent, Vec::new());
            span.add_link(
                rpc.span_context().clone(),
                vec![KeyValue::new("messaging.operation.name", operation)],
            );
            span.add_event(format!("{operation} end"), Vec::new());
        }
        rpc.end();
        if operation == "modack" {
            for cx in &subscribes {
                for name in ["subscriber concurrency control", "subscriber scheduler"] {
                    tracer
                        .span_builder(name)
                        .with_kind(SpanKind::Internal)
                        .start_with_context(tracer, cx)
                        .end();
                }
                let mut process = tracer
                    .span_builder("subscription process")
                    .with_kind(SpanKind::Internal)
                    .with_attributes(vec![KeyValue::new("messaging.system", "gcp_pubsub")])
                    .start_with_context(tracer, cx);
                process.add_event("ack called", Vec::new());
                process.end();
            }
        }
    }
    for cx in subscribes {
        let span = cx.span();
        span.set_attribute(KeyValue::new("messaging.gcp_pubsub.result", "acked"));
        span.end();
    }
}

/// Runs `batch` until `messages` messages are done; CPU time of this thread
/// is the wall time here (one thread, nothing to wait for).
fn measure(messages: usize, mut batch: impl FnMut(usize)) -> Duration {
    let started = Instant::now();
    for round in 0..messages.div_ceil(BATCH) {
        batch(round);
    }
    started.elapsed()
}

/// Prints the SDK's cost per message for the publish and the receive side.
#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
pub fn report(provider: &opentelemetry_sdk::trace::SdkTracerProvider, messages: usize) {
    let tracer = provider.tracer("baton-bench-sdk-floor");
    // Warm up the allocator and the processor's queue.
    measure(messages / 10, |round| {
        publish_batch(&tracer, round);
        receive_batch(&tracer, round);
    });
    let publish = measure(messages, |round| publish_batch(&tracer, round));
    let receive = measure(messages, |round| receive_batch(&tracer, round));
    let _ = provider.force_flush();
    let per_message = |d: Duration| d.as_nanos() as f64 / messages as f64 / 1000.0;
    println!(
        "OpenTelemetry SDK alone, one thread, {messages} messages: publish side {:.2} us per message, receive side {:.2} us per message",
        per_message(publish),
        per_message(receive)
    );
}
