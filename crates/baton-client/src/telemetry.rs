//! OpenTelemetry spans of the publisher and subscriber, shaped like the
//! official clients' (`tracing.md` sections 2-4): the tracing settings, and
//! the client's side of the shared span layer
//! ([`baton_trace_context::instrument`]), which also makes the spans of the
//! adapter for other Rust Pub/Sub crates, so both are made by one piece of
//! code.

use crate::pulled::PulledMessage;
use baton_proto::pubsub::PubsubMessage;
use baton_trace_context as bt;
use baton_trace_context::Traceparent;
use baton_trace_context::instrument::{ContextCarrier, DeliveryInfo, Instrument};
use opentelemetry::Context;
use opentelemetry::global::{BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::trace::SpanContext;
use std::collections::HashMap;
use std::sync::Arc;

pub use baton_trace_context::PropagationOptions;
pub(crate) use baton_trace_context::instrument::{
    CreateTrace, DeliveryTrace, ModackInfo, RpcSpan, Settle, SubscribeTrace,
};
pub use baton_trace_context::instrument::{DEFAULT_MAX_LINKS_PER_SPAN, ProcessScope};

/// Tracing settings of a publisher or subscriber: off by default (as in
/// the official clients), [`TracingConfig::enabled`] switches them on, the
/// `with_*` methods change the rest.
///
/// ```
/// use baton_client::TracingConfig;
/// let tracing = TracingConfig::enabled().with_max_links_per_span(64);
/// assert!(tracing.is_enabled());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct TracingConfig {
    /// Record spans and carry the trace context in `googclient_traceparent`.
    pub(crate) enable_open_telemetry_tracing: bool,
    /// Opt-in extra carriers (plain `traceparent`, baggage).
    pub(crate) propagation: PropagationOptions,
    /// The provider to create spans with; the global one when `None`.
    pub(crate) tracer_provider: Option<Arc<dyn ObjectSafeTracerProvider + Send + Sync>>,
    /// Most links a publish or settle RPC span gets to the message spans of
    /// its batch.
    pub(crate) max_links_per_span: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enable_open_telemetry_tracing: false,
            propagation: PropagationOptions::default(),
            tracer_provider: None,
            max_links_per_span: DEFAULT_MAX_LINKS_PER_SPAN,
        }
    }
}

impl std::fmt::Debug for TracingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingConfig")
            .field(
                "enable_open_telemetry_tracing",
                &self.enable_open_telemetry_tracing,
            )
            .field("propagation", &self.propagation)
            .field("tracer_provider", &self.tracer_provider.is_some())
            .field("max_links_per_span", &self.max_links_per_span)
            .finish()
    }
}

impl TracingConfig {
    /// Tracing on, with the global tracer provider.
    pub fn enabled() -> Self {
        Self {
            enable_open_telemetry_tracing: true,
            ..Self::default()
        }
    }

    /// Records spans and carries the trace context in
    /// `googclient_traceparent` (`true`), or not.
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enable_open_telemetry_tracing = enabled;
        self
    }

    /// Opt-in extra carriers (plain `traceparent`, baggage).
    #[must_use]
    pub fn with_propagation(mut self, propagation: PropagationOptions) -> Self {
        self.propagation = propagation;
        self
    }

    /// The provider to create spans with, instead of the global one.
    #[must_use]
    pub fn with_tracer_provider(
        mut self,
        provider: Arc<dyn ObjectSafeTracerProvider + Send + Sync>,
    ) -> Self {
        self.tracer_provider = Some(provider);
        self
    }

    /// Most links a publish or settle RPC span gets to the message spans of
    /// its batch (a batch can hold thousands). Links beyond the SDK's own
    /// limit (`SpanLimits::max_links_per_span`, 128 by default) would be
    /// made only to be dropped, so keep the two equal.
    #[must_use]
    pub fn with_max_links_per_span(mut self, links: usize) -> Self {
        self.max_links_per_span = links;
        self
    }

    /// Whether spans are recorded.
    pub fn is_enabled(&self) -> bool {
        self.enable_open_telemetry_tracing
    }

    /// The extra carriers.
    pub fn propagation(&self) -> &PropagationOptions {
        &self.propagation
    }

    /// Most links per RPC span.
    pub fn max_links_per_span(&self) -> usize {
        self.max_links_per_span
    }
}

/// Where a published message's context goes: the compact value when it is
/// all there is to carry, else the attributes.
struct OutgoingContext<'a> {
    attributes: &'a mut HashMap<String, String>,
    compact: Option<Traceparent>,
}

impl ContextCarrier for OutgoingContext<'_> {
    fn carry(
        &mut self,
        parent: &Context,
        span_context: &SpanContext,
        options: &PropagationOptions,
    ) {
        self.compact = bt::compact_traceparent(span_context, self.attributes, options);
        if self.compact.is_none() {
            self.attributes.carry(parent, span_context, options);
        }
    }
}

/// The tracer of one publisher or subscriber, or nothing when tracing is off.
#[derive(Clone)]
pub(crate) struct Telemetry {
    instrument: Option<Arc<Instrument>>,
}

impl Telemetry {
    /// The telemetry of the publisher of a topic or the subscriber of a
    /// subscription (`resource` is its id or full name) in `project`.
    pub fn new(config: &TracingConfig, project: &str, resource: &str) -> Self {
        let instrument = config.enable_open_telemetry_tracing.then(|| {
            let tracer = match &config.tracer_provider {
                Some(provider) => BoxedTracer::new(provider.boxed_tracer(bt::scope())),
                None => opentelemetry::global::tracer_with_scope(bt::scope()),
            };
            Arc::new(Instrument::new(
                tracer,
                config.propagation,
                config.max_links_per_span,
                project,
                resource,
            ))
        });
        Self { instrument }
    }

    pub fn enabled(&self) -> bool {
        self.instrument.is_some()
    }

    /// The span layer, when tracing is on: what child spans start with.
    pub fn span_layer(&self) -> Option<&Instrument> {
        self.instrument.as_deref()
    }

    /// Starts the per-message `create` span (see
    /// [`Instrument::start_create`]): its trace, `None` when tracing is off
    /// or the span is not recorded, and the context the message carries.
    /// That is a compact `googclient_traceparent` for the batch's encoder to
    /// write (see `encoded_publish`) when it is all there is to carry;
    /// anything more goes into the message's attributes.
    pub fn start_create(
        &self,
        message: &mut PubsubMessage,
    ) -> (Option<CreateTrace>, Option<Traceparent>) {
        let Some(instrument) = self.instrument.as_ref() else {
            return (None, None);
        };
        let PubsubMessage {
            attributes,
            data,
            ordering_key,
            ..
        } = message;
        let mut carrier = OutgoingContext {
            attributes,
            compact: None,
        };
        let trace = instrument.start_create(&mut carrier, data.len(), ordering_key);
        (trace, carrier.compact)
    }

    /// Fails a message's create span, and the child spans it has open,
    /// before the message was sent (nothing when it has no trace).
    pub fn fail_create(&self, trace: Option<&mut CreateTrace>, error: &dyn std::error::Error) {
        if let (Some(trace), Some(instrument)) = (trace, self.span_layer()) {
            trace.fail(instrument, error);
        }
    }

    /// Starts the `{topic} publish` RPC span linked to its batch's create
    /// spans (`None` when tracing is off).
    pub fn start_publish_rpc(
        &self,
        count: usize,
        creates: &mut [&mut CreateTrace],
    ) -> Option<RpcSpan> {
        Some(self.instrument.as_ref()?.start_publish_rpc(count, creates))
    }

    /// Starts the `subscribe` span of one delivery (`None` when tracing is
    /// off).
    pub fn start_subscribe(
        &self,
        received: &PulledMessage,
        exactly_once: bool,
    ) -> Option<SubscribeTrace> {
        let instrument = self.instrument.as_ref()?;
        let message = received.message.as_ref();
        let standard = message.map(|m| &m.message);
        let mut info = DeliveryInfo::default();
        info.attributes = standard.map(|m| &m.attributes);
        info.traceparent = message
            .and_then(|m| m.traceparent.as_ref())
            .map(|value| value.as_str());
        info.message_id = standard.map_or("", |m| m.message_id.as_str());
        info.ack_id = &received.ack_id;
        info.body_size = standard.map_or(0, |m| m.data.len());
        info.ordering_key = standard.map_or("", |m| m.ordering_key.as_str());
        info.delivery_attempt = received.delivery_attempt;
        info.exactly_once = exactly_once;
        Some(instrument.start_subscribe(&info))
    }

    /// Records a settle RPC that has answered (see
    /// [`Instrument::record_settle`]).
    pub fn record_settle(
        &self,
        settle: Settle,
        deliveries: &mut [&mut DeliveryTrace],
        failure: Option<&str>,
    ) {
        if let Some(instrument) = &self.instrument {
            instrument.record_settle(settle, deliveries, failure);
        }
    }
}
