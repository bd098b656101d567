//! The server's own spans in a message's trace.
//!
//! A publisher that traces puts the context of the message's `create` span
//! into the `googclient_traceparent` attribute. The subscriber's spans hang
//! under it, but on their own they cannot say how long the message sat in the
//! broker or why it came back. So the server records spans of its own as
//! children of that `create` span (tracing.md section 4.3):
//!
//! - `{topic-id} receive` (SERVER): from the moment the publish reached the
//!   broker until the message was stored and fanned out.
//! - `{subscription-id} deliver` (INTERNAL), one per delivery attempt: starts
//!   when the message became available for that attempt (published, put back,
//!   or out of a retry backoff) and ends when it was handed out, so its length
//!   is the time spent waiting in the backlog.
//! - `{subscription-id} redeliver` (INTERNAL): a lease ended without an ack;
//!   a `nack` or `expired` event at its start, and it lasts until the message
//!   is available again (the retry policy's backoff, often zero).
//! - `{subscription-id} dead-letter` (INTERNAL): attempts ran out and the
//!   message went to the dead-letter topic (whose own `receive` span follows,
//!   as the copy carries the same trace attribute).
//!
//! The message's attributes are only read, never changed. Messages without a
//! valid trace context get no spans, and a sampled-out `create` span makes
//! ours sampled out as well (the provider's parent-based sampler decides).
//!
//! The broker reports events under its lock, so [`BrokerSpans`] only copies
//! them (the messages are `Arc`s) onto a bounded queue; a background task
//! extracts the parent and builds the spans with explicit start and end times.
//! When the queue is full, events are dropped rather than slowing delivery.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use baton_broker::{
    DeadLetter, Delivery, DeliveryKind, DeliveryObserver, HeldMessage, LeaseEnd, Redelivery,
};
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use tokio::sync::{mpsc, oneshot};

/// Instrumentation scope name of the server's spans.
pub const SCOPE_NAME: &str = "baton-server";

/// Attribute: milliseconds the message waited in the backlog before a delivery.
pub const BACKLOG_WAIT_MS: &str = "baton.backlog_wait_ms";
/// Attribute: how a delivery reached the subscriber (`pull`, `streaming_pull`, `push`).
pub const DELIVERY: &str = "baton.delivery";
/// Attribute: why a lease ended without an ack (`nack` or `expired`).
pub const REDELIVERY_REASON: &str = "baton.redelivery.reason";
/// Attribute: milliseconds of retry backoff before the message is available again.
pub const BACKOFF_MS: &str = "baton.backoff_ms";
/// Attribute: short id of the dead-letter topic a message was forwarded to.
pub const DEAD_LETTER_TOPIC: &str = "baton.dead_letter_topic";

/// Events waiting for the background task; beyond this they are dropped.
const QUEUE_CAPACITY: usize = 65_536;

/// The instrumentation scope of the server's spans: [`SCOPE_NAME`] and the
/// crate version.
#[must_use]
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// One broker event about one traced message, as queued for the task.
#[derive(Debug)]
enum Event {
    Received {
        topic: Arc<str>,
        message: Arc<HeldMessage>,
        received: SystemTime,
        stored: SystemTime,
    },
    Delivered {
        subscription: String,
        message: Arc<HeldMessage>,
        ack_id: String,
        attempt: i32,
        available_since: SystemTime,
        delivered_at: SystemTime,
        kind: DeliveryKind,
    },
    Redelivery {
        subscription: String,
        message: Arc<HeldMessage>,
        attempt: i32,
        reason: LeaseEnd,
        at: SystemTime,
        available_at: SystemTime,
    },
    DeadLettered {
        subscription: String,
        message: Arc<HeldMessage>,
        attempts: i32,
        reason: LeaseEnd,
        dead_letter_topic: String,
        at: SystemTime,
    },
    /// Answered once every event queued before it has become a span.
    Flush(oneshot::Sender<()>),
}

/// The broker observer that records the server's spans; install it with
/// [`baton_broker::Broker::set_observer`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerSpans {
    queue: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl BrokerSpans {
    /// Starts the background task that turns events into spans with
    /// `tracer` (whose provider supplies the service name and the sampler).
    /// Must be called within a tokio runtime; the task ends when the last
    /// clone of the returned observer is dropped.
    pub fn start<T>(tracer: T) -> Self
    where
        T: Tracer + Send + 'static,
        T::Span: Send + 'static,
    {
        let (queue, events) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(tracer, events));
        Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Waits until every event reported so far has been turned into spans
    /// (handed to the tracer's span processor; exporting may still be
    /// batched). For tests and shutdown.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Event::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn enqueue(&self, event: Event) {
        if self.queue.try_send(event).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::debug!(dropped = before + 1, "broker span queue full; dropping");
            }
        }
    }
}

/// Whether the message carries a trace context we may read: the cheap test
/// done under the broker's lock (the real parse happens in the task).
fn traced(message: &HeldMessage) -> bool {
    let attributes = message.attributes();
    attributes.contains_key(baton_trace_context::TRACEPARENT_ATTRIBUTE)
        || attributes.contains_key(baton_trace_context::LEGACY_SPAN_CONTEXT_ATTRIBUTE)
}

impl DeliveryObserver for BrokerSpans {
    fn published(
        &self,
        topic: &str,
        messages: &[Arc<HeldMessage>],
        received: SystemTime,
        stored: SystemTime,
    ) {
        let mut topic_name: Option<Arc<str>> = None;
        for message in messages.iter().filter(|m| traced(m)) {
            let topic = topic_name.get_or_insert_with(|| Arc::from(topic)).clone();
            self.enqueue(Event::Received {
                topic,
                message: message.clone(),
                received,
                stored,
            });
        }
    }

    fn delivered(&self, delivery: Delivery<'_>) {
        if !traced(delivery.message) {
            return;
        }
        self.enqueue(Event::Delivered {
            subscription: delivery.subscription.to_owned(),
            message: delivery.message.clone(),
            ack_id: delivery.ack_id.to_owned(),
            attempt: delivery.attempt,
            available_since: delivery.available_since,
            delivered_at: delivery.delivered_at,
            kind: delivery.kind,
        });
    }

    fn redelivery(&self, redelivery: Redelivery<'_>) {
        if !traced(redelivery.message) {
            return;
        }
        self.enqueue(Event::Redelivery {
            subscription: redelivery.subscription.to_owned(),
            message: redelivery.message.clone(),
            attempt: redelivery.attempt,
            reason: redelivery.reason,
            at: redelivery.at,
            available_at: redelivery.available_at,
        });
    }

    fn dead_lettered(&self, dead_letter: DeadLetter<'_>) {
        if !traced(dead_letter.message) {
            return;
        }
        self.enqueue(Event::DeadLettered {
            subscription: dead_letter.subscription.to_owned(),
            message: dead_letter.message.clone(),
            attempts: dead_letter.attempts,
            reason: dead_letter.reason,
            dead_letter_topic: dead_letter.dead_letter_topic.to_owned(),
            at: dead_letter.at,
        });
    }
}

/// The background task: one span per event, until every sender is gone.
async fn run<T>(tracer: T, mut events: mpsc::Receiver<Event>)
where
    T: Tracer,
{
    while let Some(event) = events.recv().await {
        record(&tracer, event);
    }
}

/// The parent context of the message's spans: its `create` span, or `None`
/// when the attributes carry no valid trace context.
fn parent(message: &HeldMessage) -> Option<Context> {
    let span_context = baton_trace_context::extract_span_context(
        &message.attributes().to_map(),
        &Default::default(),
    )?;
    Some(Context::new().with_remote_span_context(span_context))
}

/// `gcp.project_id` of a full resource name (`projects/{p}/...`).
fn project(name: &str) -> &str {
    name.strip_prefix("projects/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// Attributes every broker span of a message carries.
fn common(resource: &str, message: &HeldMessage) -> Vec<KeyValue> {
    vec![
        KeyValue::new(
            baton_trace_context::MESSAGING_SYSTEM,
            baton_trace_context::MESSAGING_SYSTEM_VALUE,
        ),
        KeyValue::new(
            baton_trace_context::MESSAGING_DESTINATION_NAME,
            baton_trace_context::short_id(resource).to_owned(),
        ),
        KeyValue::new(
            baton_trace_context::GCP_PROJECT_ID,
            project(resource).to_owned(),
        ),
        KeyValue::new(
            baton_trace_context::MESSAGING_MESSAGE_ID,
            message.message_id().to_owned(),
        ),
    ]
}

fn millis(from: SystemTime, to: SystemTime) -> i64 {
    let elapsed = to.duration_since(from).unwrap_or(Duration::ZERO);
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// Builds and ends one span under `parent` with explicit times.
#[allow(clippy::too_many_arguments)]
fn emit<T: Tracer>(
    tracer: &T,
    parent: &Context,
    name: String,
    kind: SpanKind,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
) {
    let builder = tracer
        .span_builder(Cow::Owned(name))
        .with_kind(kind)
        .with_start_time(start)
        .with_attributes(attributes)
        .with_events(events);
    let mut span = tracer.build_with_context(builder, parent);
    span.end_with_timestamp(end.max(start));
}

/// Turns one event into its span.
fn record<T: Tracer>(tracer: &T, event: Event) {
    match event {
        Event::Flush(done) => {
            let _ = done.send(());
        }
        Event::Received {
            topic,
            message,
            received,
            stored,
        } => {
            let Some(parent) = parent(&message) else {
                return;
            };
            let mut attributes = common(&topic, &message);
            attributes.push(KeyValue::new(
                baton_trace_context::MESSAGING_MESSAGE_BODY_SIZE,
                i64::try_from(message.data_len()).unwrap_or(i64::MAX),
            ));
            emit(
                tracer,
                &parent,
                format!("{} receive", baton_trace_context::short_id(&topic)),
                SpanKind::Server,
                received,
                stored,
                attributes,
                Vec::new(),
            );
        }
        Event::Delivered {
            subscription,
            message,
            ack_id,
            attempt,
            available_since,
            delivered_at,
            kind,
        } => {
            let Some(parent) = parent(&message) else {
                return;
            };
            let mut attributes = common(&subscription, &message);
            attributes.extend([
                KeyValue::new(
                    baton_trace_context::MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT,
                    i64::from(attempt),
                ),
                KeyValue::new(baton_trace_context::MESSAGING_GCP_PUBSUB_ACK_ID, ack_id),
                KeyValue::new(BACKLOG_WAIT_MS, millis(available_since, delivered_at)),
                KeyValue::new(DELIVERY, kind.as_str()),
            ]);
            emit(
                tracer,
                &parent,
                format!("{} deliver", baton_trace_context::short_id(&subscription)),
                SpanKind::Internal,
                available_since,
                delivered_at,
                attributes,
                Vec::new(),
            );
        }
        Event::Redelivery {
            subscription,
            message,
            attempt,
            reason,
            at,
            available_at,
        } => {
            let Some(parent) = parent(&message) else {
                return;
            };
            let mut attributes = common(&subscription, &message);
            attributes.extend([
                KeyValue::new(
                    baton_trace_context::MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT,
                    i64::from(attempt),
                ),
                KeyValue::new(REDELIVERY_REASON, reason.as_str()),
                KeyValue::new(BACKOFF_MS, millis(at, available_at)),
            ]);
            emit(
                tracer,
                &parent,
                format!("{} redeliver", baton_trace_context::short_id(&subscription)),
                SpanKind::Internal,
                at,
                available_at,
                attributes,
                vec![lease_end_event(reason, at)],
            );
        }
        Event::DeadLettered {
            subscription,
            message,
            attempts,
            reason,
            dead_letter_topic,
            at,
        } => {
            let Some(parent) = parent(&message) else {
                return;
            };
            let mut attributes = common(&subscription, &message);
            attributes.extend([
                KeyValue::new(
                    baton_trace_context::MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT,
                    i64::from(attempts),
                ),
                KeyValue::new(REDELIVERY_REASON, reason.as_str()),
                KeyValue::new(
                    DEAD_LETTER_TOPIC,
                    baton_trace_context::short_id(&dead_letter_topic).to_owned(),
                ),
            ]);
            emit(
                tracer,
                &parent,
                format!(
                    "{} dead-letter",
                    baton_trace_context::short_id(&subscription)
                ),
                SpanKind::Internal,
                at,
                at,
                attributes,
                vec![lease_end_event(reason, at)],
            );
        }
    }
}

/// The `nack` or `expired` event marking why a lease ended.
fn lease_end_event(reason: LeaseEnd, at: SystemTime) -> opentelemetry::trace::Event {
    opentelemetry::trace::Event::new(reason.as_str(), at, Vec::new(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::pubsub::PubsubMessage;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn project_of_resource_names() {
        assert_eq!(project("projects/p1/topics/t"), "p1");
        assert_eq!(project("projects/p1/subscriptions/s"), "p1");
        assert_eq!(project("nonsense"), "");
    }

    #[test]
    fn only_messages_with_a_trace_attribute_are_queued() {
        let mut message = PubsubMessage::default();
        assert!(!traced(&HeldMessage::new(message.clone())));
        message.attributes.insert(
            baton_trace_context::TRACEPARENT_ATTRIBUTE.to_owned(),
            "garbage".to_owned(),
        );
        assert!(traced(&HeldMessage::new(message.clone())));
        assert!(parent(&HeldMessage::new(message.clone())).is_none());
        // A value of the usual length is held apart from the map, and read.
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        message.attributes.insert(
            baton_trace_context::TRACEPARENT_ATTRIBUTE.to_owned(),
            traceparent.to_owned(),
        );
        let held = HeldMessage::new(message);
        assert!(traced(&held));
        let parent = parent(&held).expect("a parent");
        assert_eq!(
            parent.span().span_context().span_id().to_string(),
            "b7ad6b7169203331"
        );
    }
}
