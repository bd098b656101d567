//! `--sdk-floor`: what the OpenTelemetry SDK alone needs for the tracing of
//! one message, with no Baton code and no network: the same span shape
//! (names, kinds, attributes, events, links), made and ended back to back on
//! one thread through the batch processor of the tracing-on mode, and the
//! W3C trace context written into the message's attributes and read back
//! with the SDK's own propagator, as the official clients do.
//!
//! The floor is the CPU of every thread of the process (the batch
//! processor's thread takes and drops every span), from the first span until
//! a flush has drained the processor: the tracing-on mode pays for that
//! thread too, so a floor of the making thread alone would be too low.
//!
//! The gap between this and the tracing cost `baton-bench` measures is what
//! running the spans inside a real client adds: spans that live from arrival
//! to ack, touched from several threads, so their memory is cold.
//!
//! With a ratio sampler the floor is the least an instrumentation built on
//! the SDK must do for a message whose trace is not sampled: the `create`
//! span (a root, so the sampler decides) and the context written into the
//! message's attributes when publishing, the context read back and the
//! `subscribe` span (the parent-based sampler decides) when receiving. The
//! other spans are made only under a recording one, as Baton's client does.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::trace_load::median;

/// Messages per batch (one publish, modack and ack RPC span each).
const BATCH: usize = 100;

/// The publish side of one batch: create spans with flow control and
/// batching children, the publish RPC span linked both ways.
/// Without `carry`, the trace context is not written into the attributes:
/// what the spans alone cost.
fn publish_batch(tracer: &impl Tracer<Span: Send + Sync + 'static>, round: usize, carry: bool) {
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
        let recording = span.is_recording();
        let cx = Context::new().with_span(span);
        // The message's attributes, and its trace context in them.
        if carry {
            let mut attributes = HashMap::with_capacity(2);
            TraceContextPropagator::new().inject_context(&cx, &mut attributes);
            std::hint::black_box(&attributes);
        }
        if !recording {
            continue;
        }
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
fn receive_batch(
    tracer: &impl Tracer<Span: Send + Sync + 'static>,
    carriers: &[HashMap<String, String>],
    round: usize,
) {
    let mut subscribes = Vec::with_capacity(BATCH);
    for (i, carrier) in carriers.iter().enumerate() {
        // The publisher's context, read from the message's attributes.
        let parent = TraceContextPropagator::new().extract(carrier);
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
            .start_with_context(tracer, &parent);
        if span.is_recording() {
            subscribes.push(Context::new().with_span(span));
        }
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

/// CPU time of every live thread of this process, in nanoseconds
/// (`/proc/self/task/*/schedstat`: finer than the 10 ms ticks of
/// `/proc/self/stat`).
fn threads_cpu() -> Option<Duration> {
    let mut total = 0_u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing has no file any more.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// What the SDK needs per message, in microseconds of CPU.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub publish: f64,
    pub receive: f64,
    /// The publish side's spans alone, without writing the context into
    /// the message's attributes.
    pub publish_spans: f64,
}

impl Floor {
    /// The median of each side over several measurements.
    pub fn median(floors: &[Floor]) -> Option<Floor> {
        if floors.is_empty() {
            return None;
        }
        let side = |f: fn(&Floor) -> f64| median(&floors.iter().map(f).collect::<Vec<_>>());
        Some(Floor {
            publish: side(|f| f.publish),
            receive: side(|f| f.receive),
            publish_spans: side(|f| f.publish_spans),
        })
    }
}

/// Runs `batch` until `messages` messages are done and the batch processor
/// has taken every span; the CPU all threads used meanwhile.
fn measure(
    provider: &SdkTracerProvider,
    messages: usize,
    mut batch: impl FnMut(usize),
) -> Option<Duration> {
    let before = threads_cpu()?;
    for round in 0..messages.div_ceil(BATCH) {
        batch(round);
    }
    let _ = provider.force_flush();
    threads_cpu()?.checked_sub(before)
}

/// The trace contexts the receive side reads, one per message of a batch
/// (made once: the bytes on the wire are not the SDK's work), the share
/// `ratio` of them sampled.
#[allow(clippy::cast_precision_loss)]
fn carriers(ratio: f64) -> Vec<HashMap<String, String>> {
    (0..BATCH)
        .map(|i| {
            let flags = if (i as f64) < ratio * BATCH as f64 {
                "01"
            } else {
                "00"
            };
            HashMap::from([(
                "traceparent".to_string(),
                format!("00-4bf92f3577b34da6a3ce929d0e0e{i:04x}-00f067aa0ba9{i:04x}-{flags}"),
            )])
        })
        .collect()
}

/// Measures the SDK's CPU per message for the publish and the receive side
/// over `messages` messages (at least 200,000, so that the figure is
/// steady), with `provider`, whose sampler keeps the share `ratio` of the
/// traces.
#[allow(clippy::cast_precision_loss)]
pub fn measure_floor(provider: &SdkTracerProvider, messages: usize, ratio: f64) -> Option<Floor> {
    let messages = messages.max(200_000);
    let tracer = provider.tracer("baton-bench-sdk-floor");
    let carriers = carriers(ratio);
    // Warm up the allocator and the processor's queue.
    measure(provider, messages / 10, |round| {
        publish_batch(&tracer, round, true);
        receive_batch(&tracer, &carriers, round);
    })?;
    let publish = measure(provider, messages, |round| {
        publish_batch(&tracer, round, true);
    })?;
    let publish_spans = measure(provider, messages, |round| {
        publish_batch(&tracer, round, false);
    })?;
    let receive = measure(provider, messages, |round| {
        receive_batch(&tracer, &carriers, round);
    })?;
    let per_message = |d: Duration| d.as_nanos() as f64 / messages as f64 / 1000.0;
    Some(Floor {
        publish: per_message(publish),
        receive: per_message(receive),
        publish_spans: per_message(publish_spans),
    })
}

/// Prints the SDK's cost per message for the publish and the receive side.
#[allow(clippy::print_stdout)]
pub fn report(provider: &SdkTracerProvider, messages: usize, ratio: f64) {
    match measure_floor(provider, messages, ratio) {
        Some(floor) => println!(
            "OpenTelemetry SDK alone (all threads, propagation included), {} messages, sampling {}%: publish side {:.2} us per message ({:.2} us without writing the context), receive side {:.2} us per message",
            messages.max(200_000),
            ratio * 100.0,
            floor.publish,
            floor.publish_spans,
            floor.receive
        ),
        None => println!("OpenTelemetry SDK alone: no per-thread CPU times in /proc/self/task"),
    }
}
