//! Joined traces for services on other Rust Pub/Sub clients.
//!
//! Google's `google-cloud-pubsub` crate and the community `gcloud-pubsub`
//! crate neither write nor read `googclient_traceparent`, so a Rust service on
//! them breaks the trace its Python, Go, Java or Node neighbours keep whole.
//! This adapter gives them the official clients' spans without switching
//! clients: the message's attribute map, size, ordering key and ids are all it
//! needs, and every Pub/Sub client exposes those.
//!
//! - Publishing: [`PublishTracing::start`] before handing the message to the
//!   client's publisher starts the `{topic} create` span (a child of the
//!   current span) and writes its context into the attributes;
//!   [`PublishSpan::published`] (or [`PublishSpan::record`] around the
//!   client's publish future) ends it with the message id.
//! - Receiving: [`ReceiveTracing::start`] for each received message extracts
//!   the publisher's context and starts the `{subscription} subscribe` span;
//!   [`ReceiveSpan::process`] runs the handler inside the `{subscription}
//!   process` span (OpenTelemetry context and `tracing` span, so the
//!   handler's own spans and logs nest under it); [`ReceiveSpan::acked`] or
//!   [`ReceiveSpan::nacked`] ends the subscribe span with its result.
//!
//! The spans are the ones Baton's own client records, with the same names,
//! kinds and attributes; what the adapter cannot see (the client's batching
//! and its publish, ack and modack RPCs) has no span.
//!
//! ```
//! use std::collections::HashMap;
//! use baton_trace_context::adapter::{PublishTracing, ReceiveTracing, Received};
//!
//! # async fn example() {
//! // Publisher side, around any client's publish call.
//! let tracing = PublishTracing::new("my-project", "orders");
//! let mut attributes: HashMap<String, String> = HashMap::new();
//! let data = b"order 42".to_vec();
//! let span = tracing.start(&mut attributes, data.len(), "");
//! // ... build the client's message with `data` and `attributes`, publish it:
//! let message_id = span
//!     .record(async { Ok::<_, std::io::Error>("1".to_string()) })
//!     .await;
//!
//! // Subscriber side, for each received message.
//! let receiving = ReceiveTracing::new("my-project", "orders-worker");
//! let span = receiving.start(Received {
//!     attributes: &attributes,
//!     message_id: "1",
//!     ack_id: "ack-1",
//!     body_size: data.len(),
//!     ordering_key: "",
//!     delivery_attempt: 1,
//! });
//! let outcome = span.process(async { /* the handler */ true }).await;
//! if outcome { span.acked() } else { span.nacked() }
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use opentelemetry::global::{BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::trace::FutureExt as _;
use tracing::Instrument as _;

use crate::instrument::{
    CreateTrace, DEFAULT_MAX_LINKS_PER_SPAN, DeliveryInfo, Instrument, SubscribeTrace,
};
use crate::{PropagationOptions, RESULT_ACKED, RESULT_NACKED};

/// A tracer with Baton's scope from `provider`, or from the global provider.
fn tracer(provider: Option<&(dyn ObjectSafeTracerProvider + Send + Sync)>) -> BoxedTracer {
    match provider {
        Some(provider) => BoxedTracer::new(provider.boxed_tracer(crate::scope())),
        None => opentelemetry::global::tracer_with_scope(crate::scope()),
    }
}

/// Traces the publishes to one topic made with another client.
#[derive(Debug, Clone)]
pub struct PublishTracing {
    instrument: Arc<Instrument>,
}

impl PublishTracing {
    /// Publishes to `topic` (an id or a full name) of `project`, traced with
    /// the global tracer provider and the `googclient_` keys.
    pub fn new(project: &str, topic: &str) -> Self {
        Self::with_options(project, topic, None, PropagationOptions::default())
    }

    /// Like [`Self::new`], with a tracer provider of its own (`None`: the
    /// global one) and opt-in extra carriers.
    pub fn with_options(
        project: &str,
        topic: &str,
        provider: Option<&(dyn ObjectSafeTracerProvider + Send + Sync)>,
        propagation: PropagationOptions,
    ) -> Self {
        Self {
            instrument: Arc::new(Instrument::new(
                tracer(provider),
                propagation,
                DEFAULT_MAX_LINKS_PER_SPAN,
                project,
                topic,
            )),
        }
    }

    /// Starts the message's `create` span and writes its trace context into
    /// `attributes`: call it before the message goes to the publisher, with
    /// the payload's size and the ordering key (empty for none).
    pub fn start(
        &self,
        attributes: &mut HashMap<String, String>,
        body_size: usize,
        ordering_key: &str,
    ) -> PublishSpan {
        PublishSpan {
            create: self
                .instrument
                .start_create(attributes, body_size, ordering_key),
        }
    }
}

/// The `create` span of one message, ended by its publish's outcome (or
/// when dropped).
#[derive(Debug)]
pub struct PublishSpan {
    create: Option<CreateTrace>,
}

impl PublishSpan {
    /// The publish succeeded: records the message id and ends the span.
    pub fn published(mut self, message_id: &str) {
        if let Some(create) = &mut self.create {
            create.publish_end(Ok(message_id), None);
        }
    }

    /// The publish failed: records the error and ends the span.
    pub fn failed(mut self, error: &dyn std::error::Error) {
        if let Some(create) = &mut self.create {
            create.publish_end(Err(error), None);
        }
    }

    /// Awaits the client's publish (a future of the message id) and ends the
    /// span with its outcome, which it hands back.
    pub async fn record<F, E>(mut self, publish: F) -> Result<String, E>
    where
        F: Future<Output = Result<String, E>>,
        E: std::error::Error,
    {
        if let Some(create) = &mut self.create {
            create.publish_start();
        }
        let outcome = publish.await;
        match &outcome {
            Ok(id) => self.published(id),
            Err(error) => self.failed(error),
        }
        outcome
    }
}

/// What the adapter reads of one received message.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The message's attributes (the trace context travels in them).
    pub attributes: &'a HashMap<String, String>,
    /// The server-assigned message id.
    pub message_id: &'a str,
    /// The ack id of this delivery.
    pub ack_id: &'a str,
    /// The payload's size in bytes.
    pub body_size: usize,
    /// The ordering key; empty for none.
    pub ordering_key: &'a str,
    /// The delivery attempt (0 when the subscription has no dead-letter
    /// policy).
    pub delivery_attempt: i32,
}

/// Traces the messages of one subscription received with another client.
#[derive(Debug, Clone)]
pub struct ReceiveTracing {
    instrument: Arc<Instrument>,
    exactly_once: bool,
}

impl ReceiveTracing {
    /// Receives from `subscription` (an id or a full name) of `project`,
    /// traced with the global tracer provider and the `googclient_` keys.
    pub fn new(project: &str, subscription: &str) -> Self {
        Self::with_options(
            project,
            subscription,
            None,
            PropagationOptions::default(),
            false,
        )
    }

    /// Like [`Self::new`], with a tracer provider of its own (`None`: the
    /// global one), opt-in extra carriers, and whether the subscription has
    /// exactly-once delivery (an attribute of the subscribe span).
    pub fn with_options(
        project: &str,
        subscription: &str,
        provider: Option<&(dyn ObjectSafeTracerProvider + Send + Sync)>,
        propagation: PropagationOptions,
        exactly_once: bool,
    ) -> Self {
        Self {
            instrument: Arc::new(Instrument::new(
                tracer(provider),
                propagation,
                DEFAULT_MAX_LINKS_PER_SPAN,
                project,
                subscription,
            )),
            exactly_once,
        }
    }

    /// Starts the `subscribe` span of one received message, a child of the
    /// publisher's `create` span when the message carries its context.
    pub fn start(&self, received: Received<'_>) -> ReceiveSpan {
        let trace = self.instrument.start_subscribe(&DeliveryInfo {
            attributes: Some(received.attributes),
            traceparent: None,
            message_id: received.message_id,
            ack_id: received.ack_id,
            body_size: received.body_size,
            ordering_key: received.ordering_key,
            delivery_attempt: received.delivery_attempt,
            exactly_once: self.exactly_once,
        });
        ReceiveSpan {
            instrument: self.instrument.clone(),
            trace,
        }
    }
}

/// The `subscribe` span of one received message; ends when acked, nacked
/// or dropped.
#[derive(Debug)]
pub struct ReceiveSpan {
    instrument: Arc<Instrument>,
    trace: SubscribeTrace,
}

impl ReceiveSpan {
    /// Runs `handler` inside the message's `process` span: the span is the
    /// current OpenTelemetry span and the current `tracing` span while the
    /// handler runs, so its own spans nest under it and its log events carry
    /// the trace. In an unsampled trace no span is made, and the handler runs
    /// in the publisher's context, so what it publishes stays in that trace.
    pub async fn process<F: Future>(&self, handler: F) -> F::Output {
        match &self.trace {
            SubscribeTrace::Recording(delivery) => {
                let scope = delivery.start_process(&self.instrument);
                let output = handler
                    .instrument(scope.span.clone())
                    .with_context(scope.context.clone())
                    .await;
                drop(scope);
                output
            }
            SubscribeTrace::Unsampled(context) => handler.with_context(context.clone()).await,
        }
    }

    /// The message was acknowledged: ends the subscribe span (`acked`).
    pub fn acked(self) {
        self.finish(RESULT_ACKED);
    }

    /// The message was nacked: ends the subscribe span (`nacked`).
    pub fn nacked(self) {
        self.finish(RESULT_NACKED);
    }

    fn finish(mut self, result: &'static str) {
        if let SubscribeTrace::Recording(delivery) = &mut self.trace {
            delivery.finish(&self.instrument, result);
        }
    }
}
