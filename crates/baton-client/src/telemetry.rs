//! OpenTelemetry spans of the publisher and subscriber, shaped like the
//! official clients' (`tracing.md` sections 2-4), plus two things they lack:
//! the handler runs inside the `process` span (OpenTelemetry context and
//! `tracing` span), and settle spans follow the sampling decision of the
//! subscribe spans they settle.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::SystemTime;

use baton_proto::pubsub::{PubsubMessage, ReceivedMessage};
use baton_trace_context as bt;
use opentelemetry::global::{BoxedSpan, BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::trace::{Link, Span, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use baton_trace_context::PropagationOptions;

/// The OpenTelemetry SDK's default limit of links on one span.
pub const DEFAULT_MAX_LINKS_PER_SPAN: usize = 128;

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

/// The tracer of one publisher or subscriber, or nothing when tracing is off.
#[derive(Clone)]
pub(crate) struct Telemetry {
    instrument: Option<Arc<Instrument>>,
}

/// What every span of one publisher (topic) or subscriber (subscription)
/// shares, built once: at some 100,000 messages a second the per-span cost
/// is what tracing costs, so a span start formats no name and copies no
/// string it can share.
struct Instrument {
    tracer: BoxedTracer,
    propagation: PropagationOptions,
    max_links: usize,
    names: SpanNames,
    /// `messaging.system`, `messaging.destination.name`, `gcp.project_id`.
    common: [KeyValue; 3],
}

/// The span names of one topic or subscription id.
struct SpanNames {
    create: &'static str,
    publish: &'static str,
    subscribe: &'static str,
    process: &'static str,
    ack: &'static str,
    nack: &'static str,
    modack: &'static str,
}

impl SpanNames {
    fn new(id: &str) -> Self {
        Self {
            create: intern(bt::create_span_name(id)),
            publish: intern(bt::publish_span_name(id)),
            subscribe: intern(bt::subscribe_span_name(id)),
            process: intern(bt::process_span_name(id)),
            ack: intern(bt::settle_span_name(id, bt::SettleKind::Ack)),
            nack: intern(bt::settle_span_name(id, bt::SettleKind::Nack)),
            modack: intern(bt::settle_span_name(id, bt::SettleKind::Modack)),
        }
    }

    fn settle(&self, kind: bt::SettleKind) -> &'static str {
        match kind {
            bt::SettleKind::Ack => self.ack,
            bt::SettleKind::Nack => self.nack,
            bt::SettleKind::Modack => self.modack,
        }
    }
}

/// A `'static` copy of `text`, made once per distinct text.
///
/// Span names and attribute values borrowed for `'static` are shared by
/// every span without a copy. The texts are topic, subscription and project
/// ids with fixed suffixes, so the memory kept is bounded by the distinct
/// destinations a process traces.
fn intern(text: String) -> &'static str {
    static TEXTS: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
    let mut texts = TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = texts.get(text.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    texts.insert(leaked);
    leaked
}

/// The context a new `create` span is parented on: the current `tracing`
/// span's OpenTelemetry context when it has one, else the current
/// OpenTelemetry context.
fn current_parent() -> Context {
    let span = tracing::Span::current();
    if !span.is_none() {
        let from_tracing = span.context();
        if from_tracing.span().span_context().is_valid() {
            return from_tracing;
        }
    }
    Context::current()
}

/// A valid parent whose trace is not sampled: with the (default)
/// parent-based sampler, no span under it is recorded, so none is made.
fn is_unsampled(parent: &Context) -> bool {
    let span = parent.span();
    let context = span.span_context();
    context.is_valid() && !context.is_sampled()
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A text attribute value; an empty one (the usual ordering key) allocates
/// nothing.
fn text_value(text: &str) -> Value {
    if text.is_empty() {
        Value::from("")
    } else {
        Value::from(text.to_string())
    }
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
            let id = bt::short_id(resource);
            Arc::new(Instrument {
                tracer,
                propagation: config.propagation,
                max_links: config.max_links_per_span,
                names: SpanNames::new(id),
                common: [
                    KeyValue::new(bt::MESSAGING_SYSTEM, bt::MESSAGING_SYSTEM_VALUE),
                    KeyValue::new(bt::MESSAGING_DESTINATION_NAME, intern(id.to_string())),
                    KeyValue::new(bt::GCP_PROJECT_ID, intern(project.to_string())),
                ],
            })
        });
        Self { instrument }
    }

    pub fn enabled(&self) -> bool {
        self.instrument.is_some()
    }

    /// Starts an attribute-less INTERNAL child span of `parent`.
    fn child(&self, name: &'static str, parent: &Context) -> Option<BoxedSpan> {
        let tracer = &self.instrument.as_ref()?.tracer;
        Some(
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .start_with_context(tracer, parent),
        )
    }

    /// The common attributes plus room for `more` (and for the one an
    /// ended span gets later, so adding it does not grow the list).
    fn attributes(instrument: &Instrument, more: usize) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(instrument.common.len() + more + 1);
        attributes.extend_from_slice(&instrument.common);
        attributes
    }

    /// Starts the per-message `create` span and writes its context into the
    /// message's attributes. `None` when the span is not recorded: tracing
    /// is off, or the trace is not sampled, in which case the message still
    /// carries the trace context (flag `00`), so the trace stays whole.
    pub fn start_create(&self, message: &mut PubsubMessage) -> Option<CreateTrace> {
        let instrument = self.instrument.as_ref()?;
        let tracer = &instrument.tracer;
        let parent = current_parent();
        if is_unsampled(&parent) {
            // The parent-based sampler would not record the span: skip
            // making it, and let the message carry the parent's context.
            bt::inject(&parent, &mut message.attributes, &instrument.propagation);
            return None;
        }
        let mut attributes = Self::attributes(instrument, 4);
        attributes.extend([
            KeyValue::new(bt::MESSAGING_OPERATION, bt::OPERATION_CREATE),
            KeyValue::new(bt::CODE_FUNCTION, "publish"),
            KeyValue::new(bt::MESSAGING_MESSAGE_BODY_SIZE, as_i64(message.data.len())),
            KeyValue::new(
                bt::MESSAGING_GCP_PUBSUB_ORDERING_KEY,
                text_value(&message.ordering_key),
            ),
        ]);
        let span = tracer
            .span_builder(instrument.names.create)
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let recording = span.is_recording();
        let cx = parent.with_span(span);
        bt::inject(&cx, &mut message.attributes, &instrument.propagation);
        if !recording {
            return None;
        }
        Some(CreateTrace {
            cx,
            flow_control: None,
            batching: None,
            ended: false,
        })
    }

    /// Starts the `{topic} publish` RPC span (a root) linked both ways to the
    /// create spans of its batch.
    pub fn start_publish_rpc(
        &self,
        count: usize,
        creates: &mut [&mut CreateTrace],
    ) -> Option<RpcSpan> {
        let instrument = self.instrument.as_ref()?;
        let tracer = &instrument.tracer;
        let links: Vec<Link> = creates
            .iter()
            .map(|c| c.cx.span().span_context().clone())
            .filter(SpanContext::is_sampled)
            .take(instrument.max_links)
            .map(|sc| bt::link_to(&sc, None))
            .collect();
        let mut attributes = Self::attributes(instrument, 3);
        attributes.extend([
            KeyValue::new(bt::MESSAGING_BATCH_MESSAGE_COUNT, as_i64(count)),
            KeyValue::new(bt::MESSAGING_OPERATION, bt::OPERATION_PUBLISH),
            KeyValue::new(bt::CODE_FUNCTION, "_commit"),
        ]);
        let span = tracer
            .span_builder(instrument.names.publish)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(tracer, &Context::new());
        let rpc = span.span_context().clone();
        for create in creates.iter_mut() {
            create.cx.span().add_link(rpc.clone(), Vec::new());
        }
        Some(RpcSpan { span })
    }

    /// Starts the `subscribe` span of one delivery, a child of the publisher's
    /// `create` span when the message carries its context (`None` when
    /// tracing is off).
    pub fn start_subscribe(
        &self,
        received: &ReceivedMessage,
        exactly_once: bool,
    ) -> Option<SubscribeTrace> {
        let instrument = self.instrument.as_ref()?;
        let tracer = &instrument.tracer;
        let message = received.message.as_ref();
        let parent = match message {
            Some(m) => bt::extract(&m.attributes, &instrument.propagation),
            None => Context::new(),
        };
        if is_unsampled(&parent) {
            return Some(SubscribeTrace::Unsampled(parent));
        }
        let create = parent.span().span_context().clone();
        let mut attributes = Self::attributes(instrument, 7);
        attributes.extend([
            KeyValue::new(
                bt::MESSAGING_MESSAGE_ID,
                text_value(message.map_or("", |m| m.message_id.as_str())),
            ),
            KeyValue::new(
                bt::MESSAGING_MESSAGE_BODY_SIZE,
                as_i64(message.map_or(0, |m| m.data.len())),
            ),
            KeyValue::new(bt::MESSAGING_GCP_PUBSUB_ACK_ID, received.ack_id.clone()),
            KeyValue::new(
                bt::MESSAGING_GCP_PUBSUB_ORDERING_KEY,
                text_value(message.map_or("", |m| m.ordering_key.as_str())),
            ),
            KeyValue::new(bt::MESSAGING_GCP_PUBSUB_EXACTLY_ONCE_DELIVERY, exactly_once),
            KeyValue::new(bt::CODE_FUNCTION, "_on_response"),
            KeyValue::new(
                bt::MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT,
                i64::from(received.delivery_attempt),
            ),
        ]);
        let span = tracer
            .span_builder(instrument.names.subscribe)
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        if !span.is_recording() {
            return Some(SubscribeTrace::Unsampled(parent.with_span(span)));
        }
        Some(SubscribeTrace::Recording(DeliveryTrace {
            cx: parent.with_span(span),
            create: create.is_valid().then_some(create),
            scheduler: None,
            concurrency: None,
            ended: false,
        }))
    }

    /// Makes the span of an ack, nack or modack RPC sent at `sent` (a root)
    /// linked both ways to the subscribe spans it settles, with their
    /// `{kind} start` events at `sent`. It follows their sampling decision:
    /// when none of them is sampled, no settle span is made at all (the
    /// official clients make a root whose fate the sampler decides at random).
    ///
    /// The caller makes it once the RPC has answered: every subscribe span is
    /// then touched once per RPC, not once before and once after, and the RPC
    /// itself waits for no tracing work.
    pub fn start_settle(
        &self,
        kind: bt::SettleKind,
        modack: Option<ModackInfo>,
        sent: SystemTime,
        deliveries: &mut [&mut DeliveryTrace],
    ) -> Option<RpcSpan> {
        let instrument = self.instrument.as_ref()?;
        let tracer = &instrument.tracer;
        let mut sampled = deliveries
            .iter()
            .map(|d| d.cx.span().span_context().clone())
            .filter(SpanContext::is_sampled)
            .peekable();
        sampled.peek()?;
        let links: Vec<Link> = sampled
            .take(instrument.max_links)
            .map(|sc| bt::link_to(&sc, None))
            .collect();
        let mut attributes = Self::attributes(instrument, 4);
        attributes.push(KeyValue::new(
            bt::MESSAGING_BATCH_MESSAGE_COUNT,
            as_i64(deliveries.len()),
        ));
        let code_function = match kind {
            bt::SettleKind::Ack => "ack",
            bt::SettleKind::Nack => "modify_ack_deadline",
            bt::SettleKind::Modack => "_send_lease_modacks",
        };
        attributes.push(KeyValue::new(bt::CODE_FUNCTION, code_function));
        match (kind, modack) {
            (bt::SettleKind::Modack, Some(info)) => attributes.extend([
                // The official clients name the operation of modack spans
                // with this key (the reference captures show it).
                KeyValue::new(bt::LINK_OPERATION_NAME, bt::OPERATION_MODACK),
                KeyValue::new(
                    bt::MESSAGING_GCP_PUBSUB_ACK_DEADLINE,
                    i64::from(info.deadline_seconds),
                ),
                KeyValue::new(bt::MESSAGING_GCP_PUBSUB_IS_RECEIPT_MODACK, info.receipt),
            ]),
            _ => attributes.push(KeyValue::new(bt::MESSAGING_OPERATION, kind.operation())),
        }
        let span = tracer
            .span_builder(instrument.names.settle(kind))
            .with_kind(SpanKind::Client)
            .with_start_time(sent)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(tracer, &Context::new());
        let settle = span.span_context().clone();
        for delivery in deliveries.iter_mut() {
            let subscribe = delivery.cx.span();
            subscribe.add_event_with_timestamp(kind.start_event(), sent, Vec::new());
            if settle.is_valid() {
                let link = bt::settle_link(&settle, kind);
                subscribe.add_link(link.span_context, link.attributes);
            }
        }
        Some(RpcSpan { span })
    }
}

/// Deadline details of a modack span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModackInfo {
    pub deadline_seconds: i32,
    pub receipt: bool,
}

/// An RPC span (publish or settle).
pub(crate) struct RpcSpan {
    span: BoxedSpan,
}

impl RpcSpan {
    pub fn succeed(&mut self) {
        self.span.end();
    }

    pub fn fail(&mut self, error: &str) {
        self.span.set_status(Status::error(error.to_string()));
        self.span.end();
    }
}

impl Drop for RpcSpan {
    fn drop(&mut self) {
        self.span.end();
    }
}

/// The recorded `create` span of one message and its child spans.
pub(crate) struct CreateTrace {
    cx: Context,
    flow_control: Option<BoxedSpan>,
    batching: Option<BoxedSpan>,
    ended: bool,
}

impl CreateTrace {
    pub fn start_flow_control(&mut self, telemetry: &Telemetry) {
        self.flow_control = telemetry.child(bt::PUBLISHER_FLOW_CONTROL_SPAN, &self.cx);
    }

    pub fn end_flow_control(&mut self) {
        if let Some(mut span) = self.flow_control.take() {
            span.end();
        }
    }

    pub fn start_batching(&mut self, telemetry: &Telemetry) {
        self.batching = telemetry.child(bt::PUBLISHER_BATCHING_SPAN, &self.cx);
    }

    pub fn end_batching(&mut self) {
        if let Some(mut span) = self.batching.take() {
            span.end();
        }
    }

    pub fn publish_start(&mut self) {
        self.cx
            .span()
            .add_event(bt::EVENT_PUBLISH_START, Vec::new());
    }

    /// Ends the create span with the outcome of its publish.
    pub fn publish_end(&mut self, result: Result<&str, &crate::PublishError>) {
        let span = self.cx.span();
        span.add_event(bt::EVENT_PUBLISH_END, Vec::new());
        match result {
            Ok(id) => span.set_attribute(KeyValue::new(bt::MESSAGING_MESSAGE_ID, id.to_string())),
            Err(error) => {
                span.record_error(error);
                span.set_status(Status::error(error.to_string()));
            }
        }
        span.end();
        self.ended = true;
    }

    /// Fails the message before it was sent.
    pub fn fail(&mut self, error: &crate::PublishError) {
        for child in [self.flow_control.take(), self.batching.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            child.set_status(Status::error(error.to_string()));
            child.end();
        }
        let span = self.cx.span();
        span.record_error(error);
        span.set_status(Status::error(error.to_string()));
        span.end();
        self.ended = true;
    }
}

impl Drop for CreateTrace {
    fn drop(&mut self) {
        self.end_flow_control();
        self.end_batching();
        if !self.ended {
            self.cx.span().end();
        }
    }
}

/// How one delivery is traced.
pub(crate) enum SubscribeTrace {
    /// Its `subscribe` span is recorded.
    Recording(DeliveryTrace),
    /// Its trace is not sampled: no span is recorded, and the handler runs
    /// in this context, so what it publishes stays in the trace.
    Unsampled(Context),
}

/// The recorded spans of one delivery: `subscribe` and its children.
pub(crate) struct DeliveryTrace {
    cx: Context,
    create: Option<SpanContext>,
    scheduler: Option<BoxedSpan>,
    concurrency: Option<BoxedSpan>,
    ended: bool,
}

/// The handler's `process` span: a `tracing` span (whose OpenTelemetry span
/// it is when a tracing-opentelemetry layer is installed) plus the
/// OpenTelemetry context to attach while the handler runs.
pub struct ProcessScope {
    /// Enter (or `.instrument()` with) this span while the handler runs.
    pub span: tracing::Span,
    /// The OpenTelemetry context with the process span as current span.
    pub context: Context,
    /// The process span when it was created through the OpenTelemetry API
    /// (no tracing-opentelemetry layer); ended when the scope drops.
    own_span: bool,
}

impl std::fmt::Debug for ProcessScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessScope")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl ProcessScope {
    /// Records an event (`ack called`, `nack called`, `expired`).
    pub(crate) fn event(&self, name: &'static str) {
        if self.own_span {
            self.context.span().add_event(name, Vec::new());
        } else {
            tracing::info!(parent: &self.span, "{name}");
        }
    }
}

impl Drop for ProcessScope {
    fn drop(&mut self) {
        if self.own_span {
            self.context.span().end();
        }
    }
}

impl DeliveryTrace {
    pub fn start_scheduler(&mut self, telemetry: &Telemetry) {
        self.scheduler = telemetry.child(bt::SUBSCRIBER_SCHEDULER_SPAN, &self.cx);
    }

    pub fn end_scheduler(&mut self) {
        if let Some(mut span) = self.scheduler.take() {
            span.end();
        }
    }

    pub fn start_concurrency_control(&mut self, telemetry: &Telemetry) {
        self.concurrency = telemetry.child(bt::SUBSCRIBER_CONCURRENCY_CONTROL_SPAN, &self.cx);
    }

    pub fn end_concurrency_control(&mut self) {
        if let Some(mut span) = self.concurrency.take() {
            span.end();
        }
    }

    /// Records an event on the subscribe span (`modack end`, `ack end`...).
    pub fn event(&self, name: &'static str) {
        self.cx.span().add_event(name, Vec::new());
    }

    /// Starts the `process` span the handler runs in (`None` when tracing
    /// is off).
    pub fn start_process(&self, telemetry: &Telemetry) -> Option<ProcessScope> {
        let instrument = telemetry.instrument.as_ref()?;
        let name = instrument.names.process;
        let span = tracing::info_span!(
            "process",
            otel.name = name,
            otel.kind = "internal",
            messaging.system = bt::MESSAGING_SYSTEM_VALUE,
        );
        // A disabled span (no subscriber wants it) has no OpenTelemetry
        // side; skip straight to the API span.
        if !span.is_disabled() {
            // Fails only without a tracing-opentelemetry layer; handled below.
            let _ = span.set_parent(self.cx.clone());
            if let Some(create) = &self.create {
                span.add_link(create.clone());
            }
            let bridged = span.context();
            if bridged.span().span_context().is_valid() {
                return Some(ProcessScope {
                    span,
                    context: bridged,
                    own_span: false,
                });
            }
        }
        // No tracing-opentelemetry layer: make the span through the API.
        let links = self.create.iter().map(|sc| bt::link_to(sc, None)).collect();
        let tracer = &instrument.tracer;
        let otel = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(vec![instrument.common[0].clone()])
            .with_links(links)
            .start_with_context(tracer, &self.cx);
        Some(ProcessScope {
            span,
            context: self.cx.with_span(otel),
            own_span: true,
        })
    }

    /// Ends the subscribe span with its result (`acked`, `nacked`, `expired`).
    pub fn finish(&mut self, result: &'static str) {
        if self.ended {
            return;
        }
        self.end_scheduler();
        self.end_concurrency_control();
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(bt::MESSAGING_GCP_PUBSUB_RESULT, result));
        span.end();
        self.ended = true;
    }
}

impl Drop for DeliveryTrace {
    fn drop(&mut self) {
        self.end_scheduler();
        self.end_concurrency_control();
        if !self.ended {
            self.cx.span().end();
        }
    }
}
