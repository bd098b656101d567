//! The spans of one publisher or subscriber, shaped like the official
//! clients' (`tracing.md` sections 2-4): the per-message `create` span and
//! its publish RPC, the per-delivery `subscribe` span with its `process`
//! child and its settle RPCs.
//!
//! Everything here works on the parts of a message every Pub/Sub client has
//! (its attribute map, size, ordering key, ids), so one implementation serves
//! Baton's own client and the [`adapter`](crate::adapter) that gives users of
//! other Rust Pub/Sub crates the same spans.
//!
//! Two things go beyond the official clients: the handler runs inside the
//! `process` span (OpenTelemetry context and `tracing` span), and settle
//! spans follow the sampling decision of the subscribe spans they settle.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::SystemTime;

use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{
    Link, Span, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, Tracer,
};
use opentelemetry::{Context, KeyValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{PropagationOptions, SettleKind};

/// The OpenTelemetry SDK's default limit of links on one span.
pub const DEFAULT_MAX_LINKS_PER_SPAN: usize = 128;

/// What every span of one publisher (topic) or subscriber (subscription)
/// shares, built once: at some 100,000 messages a second the per-span cost
/// is what tracing costs, so a span start formats no name and copies no
/// string it can share.
pub struct Instrument {
    tracer: BoxedTracer,
    propagation: PropagationOptions,
    max_links: usize,
    names: SpanNames,
    /// `messaging.system`, `messaging.destination.name`, `gcp.project_id`.
    common: [KeyValue; 3],
}

impl std::fmt::Debug for Instrument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrument")
            .field("create", &self.names.create)
            .field("subscribe", &self.names.subscribe)
            .field("propagation", &self.propagation)
            .field("max_links", &self.max_links)
            .finish_non_exhaustive()
    }
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
            create: intern(crate::create_span_name(id)),
            publish: intern(crate::publish_span_name(id)),
            subscribe: intern(crate::subscribe_span_name(id)),
            process: intern(crate::process_span_name(id)),
            ack: intern(crate::settle_span_name(id, SettleKind::Ack)),
            nack: intern(crate::settle_span_name(id, SettleKind::Nack)),
            modack: intern(crate::settle_span_name(id, SettleKind::Modack)),
        }
    }

    fn settle(&self, kind: SettleKind) -> &'static str {
        match kind {
            SettleKind::Ack => self.ack,
            SettleKind::Nack => self.nack,
            SettleKind::Modack => self.modack,
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

/// Where a message's `create` span puts its trace context:
/// [`Instrument::start_create`] hands it the span's context once.
///
/// A message's attribute map carries it as the official clients do
/// ([`crate::inject`]). A publisher that encodes its messages itself can
/// take the value in a compact form instead (see
/// [`crate::compact_traceparent`]).
pub trait ContextCarrier {
    /// Carries `span_context`, the context of the `create` span (or of its
    /// unsampled parent, when no span is made), with `parent` giving the
    /// baggage, as `options` say.
    fn carry(&mut self, parent: &Context, span_context: &SpanContext, options: &PropagationOptions);
}

impl ContextCarrier for HashMap<String, String> {
    fn carry(
        &mut self,
        parent: &Context,
        span_context: &SpanContext,
        options: &PropagationOptions,
    ) {
        crate::propagation::inject_span_context(parent, span_context, self, options);
    }
}

/// What the subscribe span of one delivery records about it. It may gain
/// fields: start from `DeliveryInfo::default()` and set what you know.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct DeliveryInfo<'a> {
    /// The message's attributes (the trace context travels in them).
    pub attributes: Option<&'a HashMap<String, String>>,
    /// The message's `googclient_traceparent`, when the client holds it
    /// apart from `attributes` rather than in them.
    pub traceparent: Option<&'a str>,
    /// The server-assigned message id.
    pub message_id: &'a str,
    /// The ack id of this delivery.
    pub ack_id: &'a str,
    /// The payload's size in bytes.
    pub body_size: usize,
    /// The ordering key; empty for none.
    pub ordering_key: &'a str,
    /// The delivery attempt the server counted (0 without a dead-letter
    /// policy).
    pub delivery_attempt: i32,
    /// Whether the subscription has exactly-once delivery.
    pub exactly_once: bool,
}

/// Deadline details of a modack span.
#[derive(Debug, Clone, Copy)]
pub struct ModackInfo {
    /// The deadline the modack sets, in seconds.
    pub deadline_seconds: i32,
    /// Whether it is the receipt modack sent on delivery.
    pub receipt: bool,
}

impl Instrument {
    /// The spans of the publisher of a topic or the subscriber of a
    /// subscription (`resource` is its id or full name) in `project`, made
    /// with `tracer` (one with [`crate::scope`]), carrying the context as
    /// `propagation` says, with at most `max_links` links per RPC span.
    pub fn new(
        tracer: BoxedTracer,
        propagation: PropagationOptions,
        max_links: usize,
        project: &str,
        resource: &str,
    ) -> Self {
        let id = crate::short_id(resource);
        Self {
            tracer,
            propagation,
            max_links,
            names: SpanNames::new(id),
            common: [
                KeyValue::new(crate::MESSAGING_SYSTEM, crate::MESSAGING_SYSTEM_VALUE),
                KeyValue::new(crate::MESSAGING_DESTINATION_NAME, intern(id.to_string())),
                KeyValue::new(crate::GCP_PROJECT_ID, intern(project.to_string())),
            ],
        }
    }

    /// A builder for a span `name` of `kind` with `attributes` and `links`
    /// (all valid) as given: `SpanBuilder::with_attributes` would collect
    /// them into a vector anew, a copy per span.
    fn builder(
        name: &'static str,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        links: Option<Vec<Link>>,
    ) -> SpanBuilder {
        let mut builder = SpanBuilder::from_name(name);
        builder.span_kind = Some(kind);
        builder.attributes = Some(attributes);
        builder.links = links;
        builder
    }

    /// Ends the child span in `slot`, if one has started, now.
    fn end_child(&self, slot: &mut Option<DeferredChild>, parent: &Context) {
        if let Some(child) = slot.take() {
            self.record_child(child, parent, SystemTime::now(), None);
        }
    }

    /// Records `child`, an attribute-less INTERNAL child span of `parent`,
    /// from its start until `end`, with an error status when `error` says
    /// so.
    fn record_child(
        &self,
        child: DeferredChild,
        parent: &Context,
        end: SystemTime,
        error: Option<&dyn std::error::Error>,
    ) {
        let mut span = self
            .tracer
            .span_builder(child.name)
            .with_kind(SpanKind::Internal)
            .with_start_time(child.start)
            .start_with_context(&self.tracer, parent);
        if let Some(error) = error {
            span.set_status(Status::error(error.to_string()));
        }
        span.end_with_timestamp(end);
    }

    /// The common attributes plus room for `more` (and for the one an
    /// ended span gets later, so adding it does not grow the list).
    fn attributes(&self, more: usize) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(self.common.len() + more + 1);
        attributes.extend_from_slice(&self.common);
        attributes
    }

    /// Starts the per-message `create` span (a child of the current span)
    /// and hands its context to `carrier` (the message's attributes, or a
    /// publisher's compact slot for them). `None` when
    /// the span is not recorded: the trace is not sampled, in which case the
    /// message still carries the trace context (flag `00`), so the trace
    /// stays whole.
    pub fn start_create<C: ContextCarrier + ?Sized>(
        &self,
        carrier: &mut C,
        body_size: usize,
        ordering_key: &str,
    ) -> Option<CreateTrace> {
        let parent = current_parent();
        if is_unsampled(&parent) {
            // The parent-based sampler would not record the span: skip
            // making it, and let the message carry the parent's context.
            let span = parent.span();
            carrier.carry(&parent, span.span_context(), &self.propagation);
            return None;
        }
        let mut span_attributes = self.attributes(4);
        span_attributes.extend([
            KeyValue::new(crate::MESSAGING_OPERATION, crate::OPERATION_CREATE),
            KeyValue::new(crate::CODE_FUNCTION, "publish"),
            KeyValue::new(crate::MESSAGING_MESSAGE_BODY_SIZE, as_i64(body_size)),
            KeyValue::new(
                crate::MESSAGING_GCP_PUBSUB_ORDERING_KEY,
                text_value(ordering_key),
            ),
        ]);
        let span = Self::builder(self.names.create, SpanKind::Producer, span_attributes, None)
            .start_with_context(&self.tracer, &parent);
        carrier.carry(&parent, span.span_context(), &self.propagation);
        if !span.is_recording() {
            return None;
        }
        let cx = parent.with_remote_span_context(span.span_context().clone());
        Some(CreateTrace {
            span,
            cx,
            flow_control: None,
            batching: None,
            ended: false,
        })
    }

    /// Starts the `{topic} publish` RPC span (a root) of a batch of `count`
    /// messages about to be sent, linked to the create spans of its traced
    /// messages, whose batching spans it ends and whose `publish start`
    /// events it records, in one pass over them. The links back, from each
    /// create span to the RPC span, are added when the RPC has answered
    /// ([`CreateTrace::publish_end`]): each create span is touched once
    /// before the RPC and once after.
    pub fn start_publish_rpc(&self, count: usize, creates: &mut [&mut CreateTrace]) -> RpcSpan {
        let mut links: Vec<Link> = Vec::with_capacity(creates.len().min(self.max_links));
        for create in creates.iter_mut() {
            create.end_batching(self);
            create.publish_start();
            let span_context = create.span.span_context();
            if links.len() < self.max_links && span_context.is_sampled() {
                links.push(crate::link_to(span_context, None));
            }
        }
        let mut attributes = self.attributes(3);
        attributes.extend([
            KeyValue::new(crate::MESSAGING_BATCH_MESSAGE_COUNT, as_i64(count)),
            KeyValue::new(crate::MESSAGING_OPERATION, crate::OPERATION_PUBLISH),
            KeyValue::new(crate::CODE_FUNCTION, "_commit"),
        ]);
        let span = Self::builder(
            self.names.publish,
            SpanKind::Client,
            attributes,
            Some(links),
        )
        .start_with_context(&self.tracer, &Context::new());
        RpcSpan { span }
    }

    /// Starts the `subscribe` span of one delivery, a child of the
    /// publisher's `create` span when the message carries its context.
    pub fn start_subscribe(&self, delivery: &DeliveryInfo<'_>) -> SubscribeTrace {
        let no_attributes = HashMap::new();
        let parent = match (delivery.attributes, delivery.traceparent) {
            (None, None) => Context::new(),
            (attributes, traceparent) => crate::propagation::extract_held(
                attributes.unwrap_or(&no_attributes),
                traceparent,
                &self.propagation,
            ),
        };
        if is_unsampled(&parent) {
            return SubscribeTrace::Unsampled(parent);
        }
        let create = parent.span().span_context().clone();
        let mut attributes = self.attributes(7);
        attributes.extend([
            KeyValue::new(crate::MESSAGING_MESSAGE_ID, text_value(delivery.message_id)),
            KeyValue::new(
                crate::MESSAGING_MESSAGE_BODY_SIZE,
                as_i64(delivery.body_size),
            ),
            KeyValue::new(
                crate::MESSAGING_GCP_PUBSUB_ACK_ID,
                delivery.ack_id.to_string(),
            ),
            KeyValue::new(
                crate::MESSAGING_GCP_PUBSUB_ORDERING_KEY,
                text_value(delivery.ordering_key),
            ),
            KeyValue::new(
                crate::MESSAGING_GCP_PUBSUB_EXACTLY_ONCE_DELIVERY,
                delivery.exactly_once,
            ),
            KeyValue::new(crate::CODE_FUNCTION, "_on_response"),
            KeyValue::new(
                crate::MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT,
                i64::from(delivery.delivery_attempt),
            ),
        ]);
        let span = Self::builder(self.names.subscribe, SpanKind::Consumer, attributes, None)
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_remote_span_context(span.span_context().clone());
        if !span.is_recording() {
            return SubscribeTrace::Unsampled(cx);
        }
        SubscribeTrace::Recording(DeliveryTrace {
            span_context: span.span_context().clone(),
            span,
            cx,
            create: create.is_valid().then_some(create),
            deferred_settle: None,
            scheduler: None,
            concurrency: None,
            ended: false,
        })
    }

    /// Records an ack, nack or modack RPC sent at `sent` that has answered
    /// (`failure` says why when it failed): its span (a root) linked both
    /// ways to the subscribe spans it settles, their `{kind} start` and
    /// `{kind} end` events, and, for an ack or nack, their end with `result`.
    /// The settle span follows the sampling decision of the subscribe spans:
    /// when none of them is sampled, no settle span is made at all (the
    /// official clients make a root whose fate the sampler decides at
    /// random).
    ///
    /// The caller records it once the RPC has answered: every subscribe span
    /// is then touched once per RPC, in one pass, and the RPC itself waits
    /// for no tracing work.
    pub fn record_settle(
        &self,
        settle: Settle,
        deliveries: &mut [&mut DeliveryTrace],
        failure: Option<&str>,
    ) {
        let Settle {
            kind,
            modack,
            sent,
            result,
        } = settle;
        let answered = SystemTime::now();
        let mut span = self.start_settle_span(kind, modack, sent, deliveries);
        let link_to = span
            .as_ref()
            .map(|s| s.span.span_context().clone())
            .filter(SpanContext::is_valid);
        for delivery in deliveries.iter_mut() {
            let record = SettleRecord {
                kind,
                sent,
                answered,
                link: link_to.clone(),
            };
            // What an earlier modack left to record goes first: the events
            // keep their order.
            delivery.record_deferred_settle();
            match result {
                Some(result) => {
                    delivery.record(record);
                    delivery.finish_at(self, result, answered);
                }
                // A modack ends nothing: its events wait for the ack or
                // nack, so that the span is touched once for both.
                None => delivery.deferred_settle = Some(record),
            }
        }
        if let Some(span) = &mut span {
            match failure {
                Some(error) => span.fail(error),
                None => span.succeed(),
            }
        }
    }

    /// The settle RPC span, linked to the sampled subscribe spans; `None`
    /// when none is sampled.
    fn start_settle_span(
        &self,
        kind: SettleKind,
        modack: Option<ModackInfo>,
        sent: SystemTime,
        deliveries: &[&mut DeliveryTrace],
    ) -> Option<RpcSpan> {
        let mut sampled = deliveries
            .iter()
            .map(|d| &d.span_context)
            .filter(|sc| sc.is_sampled())
            .peekable();
        sampled.peek()?;
        let links: Vec<Link> = sampled
            .take(self.max_links)
            .map(|sc| crate::link_to(sc, None))
            .collect();
        let mut attributes = self.attributes(4);
        attributes.push(KeyValue::new(
            crate::MESSAGING_BATCH_MESSAGE_COUNT,
            as_i64(deliveries.len()),
        ));
        let code_function = match kind {
            SettleKind::Ack => "ack",
            SettleKind::Nack => "modify_ack_deadline",
            SettleKind::Modack => "_send_lease_modacks",
        };
        attributes.push(KeyValue::new(crate::CODE_FUNCTION, code_function));
        match (kind, modack) {
            (SettleKind::Modack, Some(info)) => attributes.extend([
                // The official clients name the operation of modack spans
                // with this key (the reference captures show it).
                KeyValue::new(crate::LINK_OPERATION_NAME, crate::OPERATION_MODACK),
                KeyValue::new(
                    crate::MESSAGING_GCP_PUBSUB_ACK_DEADLINE,
                    i64::from(info.deadline_seconds),
                ),
                KeyValue::new(crate::MESSAGING_GCP_PUBSUB_IS_RECEIPT_MODACK, info.receipt),
            ]),
            _ => attributes.push(KeyValue::new(crate::MESSAGING_OPERATION, kind.operation())),
        }
        let span = Self::builder(
            self.names.settle(kind),
            SpanKind::Client,
            attributes,
            Some(links),
        )
        .with_start_time(sent)
        .start_with_context(&self.tracer, &Context::new());
        Some(RpcSpan { span })
    }
}

/// One settle RPC, as [`Instrument::record_settle`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// Ack, nack or modack.
    pub kind: SettleKind,
    /// The deadline details of a modack.
    pub modack: Option<ModackInfo>,
    /// When the RPC was sent.
    pub sent: SystemTime,
    /// The result the settled subscribe spans end with (`acked`,
    /// `nacked`); `None` for a modack, which ends none.
    pub result: Option<&'static str>,
}

/// A child span (flow control, batching, concurrency control, scheduler)
/// that has started: the SDK span is made only when it ends, with this
/// start. These spans begin on one task and end on another, often on
/// another thread; made at the end, a span is built, ended and handed to the
/// processor while its memory is still in the cache, instead of being
/// touched again, cold, long after it was made. The exported span is the
/// same.
#[derive(Debug, Clone, Copy)]
struct DeferredChild {
    name: &'static str,
    start: SystemTime,
}

impl DeferredChild {
    fn now(name: &'static str) -> Self {
        Self {
            name,
            start: SystemTime::now(),
        }
    }
}

/// An RPC span (publish or settle); ends when dropped if not before.
pub struct RpcSpan {
    span: BoxedSpan,
}

impl std::fmt::Debug for RpcSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcSpan").finish_non_exhaustive()
    }
}

impl RpcSpan {
    /// The span's context (what the spans of its messages link to).
    pub fn span_context(&self) -> &SpanContext {
        self.span.span_context()
    }

    /// Ends the span: the RPC succeeded.
    pub fn succeed(&mut self) {
        self.span.end();
    }

    /// Ends the span with an error status.
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

/// The recorded `create` span of one message and its child spans; ends
/// when dropped if not before (a child that has started but not ended by
/// then is not recorded: ending it needs the [`Instrument`]).
///
/// The span is held here, not in a [`Context`]: a context would box it once
/// more and put a lock before it, and a span that lives while its message
/// waits is touched from other threads, where every extra hop is a cache
/// miss.
pub struct CreateTrace {
    span: BoxedSpan,
    /// The span's context (for its children and the message's attributes).
    cx: Context,
    flow_control: Option<DeferredChild>,
    batching: Option<DeferredChild>,
    ended: bool,
}

impl std::fmt::Debug for CreateTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateTrace")
            .field("span", self.span.span_context())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl CreateTrace {
    /// A context whose current span is the create span's context: the
    /// parent of its children (the span itself is recorded through this
    /// trace, not through the context).
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Starts the `publisher flow control` child span.
    pub fn start_flow_control(&mut self) {
        self.flow_control = Some(DeferredChild::now(crate::PUBLISHER_FLOW_CONTROL_SPAN));
    }

    /// Ends the `publisher flow control` child span.
    pub fn end_flow_control(&mut self, instrument: &Instrument) {
        instrument.end_child(&mut self.flow_control, &self.cx);
    }

    /// Starts the `publisher batching` child span.
    pub fn start_batching(&mut self) {
        self.batching = Some(DeferredChild::now(crate::PUBLISHER_BATCHING_SPAN));
    }

    /// Ends the `publisher batching` child span.
    pub fn end_batching(&mut self, instrument: &Instrument) {
        instrument.end_child(&mut self.batching, &self.cx);
    }

    /// Records the `publish start` event: the message's RPC is on its way.
    pub fn publish_start(&mut self) {
        self.span.add_event(crate::EVENT_PUBLISH_START, Vec::new());
    }

    /// Ends the create span with the outcome of its publish: the message id,
    /// or the error; linked to the publish RPC span `rpc` when there was
    /// one.
    pub fn publish_end(
        &mut self,
        result: Result<&str, &dyn std::error::Error>,
        rpc: Option<&SpanContext>,
    ) {
        let span = &mut self.span;
        if let Some(rpc) = rpc.filter(|rpc| rpc.is_valid()) {
            span.add_link(rpc.clone(), Vec::new());
        }
        span.add_event(crate::EVENT_PUBLISH_END, Vec::new());
        match result {
            Ok(id) => {
                span.set_attribute(KeyValue::new(crate::MESSAGING_MESSAGE_ID, id.to_string()))
            }
            Err(error) => {
                span.record_error(error);
                span.set_status(Status::error(error.to_string()));
            }
        }
        span.end();
        self.ended = true;
    }

    /// Fails the message before it was sent.
    pub fn fail(&mut self, instrument: &Instrument, error: &dyn std::error::Error) {
        let now = SystemTime::now();
        for child in [self.flow_control.take(), self.batching.take()]
            .into_iter()
            .flatten()
        {
            instrument.record_child(child, &self.cx, now, Some(error));
        }
        let span = &mut self.span;
        span.record_error(error);
        span.set_status(Status::error(error.to_string()));
        span.end();
        self.ended = true;
    }
}

impl Drop for CreateTrace {
    fn drop(&mut self) {
        if !self.ended {
            self.span.end();
        }
    }
}

/// How one delivery is traced.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "moved once, into the delivery's state; a box would cost an allocation per message"
)]
pub enum SubscribeTrace {
    /// Its `subscribe` span is recorded.
    Recording(DeliveryTrace),
    /// Its trace is not sampled: no span is recorded, and the handler runs
    /// in this context, so what it publishes stays in the trace.
    Unsampled(Context),
}

/// The recorded spans of one delivery: `subscribe` and its children; the
/// subscribe span ends when dropped if not before. Like [`CreateTrace`], it
/// holds the span itself, not a context around it.
pub struct DeliveryTrace {
    span: BoxedSpan,
    /// The span's ids, kept here so that settle spans can link to it
    /// without reaching into the span.
    span_context: SpanContext,
    /// The span's context (for its children).
    cx: Context,
    create: Option<SpanContext>,
    scheduler: Option<DeferredChild>,
    concurrency: Option<DeferredChild>,
    /// A modack not yet recorded on the span.
    deferred_settle: Option<SettleRecord>,
    ended: bool,
}

/// One settle RPC as a subscribe span records it: its start and end events
/// and its link to the settle span.
#[derive(Debug, Clone)]
struct SettleRecord {
    kind: SettleKind,
    sent: SystemTime,
    answered: SystemTime,
    link: Option<SpanContext>,
}

impl std::fmt::Debug for DeliveryTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTrace")
            .field("span", self.span.span_context())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
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
    pub fn event(&self, name: &'static str) {
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
    /// A context whose current span is the subscribe span's context: the
    /// parent of its children.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Starts the `subscriber scheduler` child span.
    pub fn start_scheduler(&mut self) {
        self.scheduler = Some(DeferredChild::now(crate::SUBSCRIBER_SCHEDULER_SPAN));
    }

    /// Ends the `subscriber scheduler` child span.
    pub fn end_scheduler(&mut self, instrument: &Instrument) {
        instrument.end_child(&mut self.scheduler, &self.cx);
    }

    /// Starts the `subscriber concurrency control` child span.
    pub fn start_concurrency_control(&mut self) {
        self.concurrency = Some(DeferredChild::now(
            crate::SUBSCRIBER_CONCURRENCY_CONTROL_SPAN,
        ));
    }

    /// Ends the `subscriber concurrency control` child span.
    pub fn end_concurrency_control(&mut self, instrument: &Instrument) {
        instrument.end_child(&mut self.concurrency, &self.cx);
    }

    /// Records a settle RPC's events and link on the subscribe span.
    fn record(&mut self, record: SettleRecord) {
        let span = &mut self.span;
        span.add_event_with_timestamp(record.kind.start_event(), record.sent, Vec::new());
        if let Some(settle) = &record.link {
            let link = crate::settle_link(settle, record.kind);
            span.add_link(link.span_context, link.attributes);
        }
        span.add_event_with_timestamp(record.kind.end_event(), record.answered, Vec::new());
    }

    /// Records the modack that waits, if any.
    fn record_deferred_settle(&mut self) {
        if let Some(record) = self.deferred_settle.take() {
            self.record(record);
        }
    }

    /// Records an event on the subscribe span.
    pub fn event(&mut self, name: &'static str) {
        self.span.add_event(name, Vec::new());
    }

    /// Starts the `process` span the handler runs in: a child of the
    /// subscribe span linked to the create span.
    pub fn start_process(&self, instrument: &Instrument) -> ProcessScope {
        let name = instrument.names.process;
        let span = tracing::info_span!(
            "process",
            otel.name = name,
            otel.kind = "internal",
            messaging.system = crate::MESSAGING_SYSTEM_VALUE,
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
                return ProcessScope {
                    span,
                    context: bridged,
                    own_span: false,
                };
            }
        }
        // No tracing-opentelemetry layer: make the span through the API.
        let links = self
            .create
            .iter()
            .map(|sc| crate::link_to(sc, None))
            .collect();
        let otel = Instrument::builder(
            name,
            SpanKind::Internal,
            vec![instrument.common[0].clone()],
            Some(links),
        )
        .start_with_context(&instrument.tracer, &self.cx);
        ProcessScope {
            span,
            context: self.cx.with_span(otel),
            own_span: true,
        }
    }

    /// Ends the subscribe span with its result (`acked`, `nacked`,
    /// `expired`), and any child still open.
    pub fn finish(&mut self, instrument: &Instrument, result: &'static str) {
        self.finish_at(instrument, result, SystemTime::now());
    }

    /// Ends the subscribe span with its result at `at`.
    fn finish_at(&mut self, instrument: &Instrument, result: &'static str, at: SystemTime) {
        if self.ended {
            return;
        }
        self.record_deferred_settle();
        self.end_scheduler(instrument);
        self.end_concurrency_control(instrument);
        self.span
            .set_attribute(KeyValue::new(crate::MESSAGING_GCP_PUBSUB_RESULT, result));
        self.span.end_with_timestamp(at);
        self.ended = true;
    }
}

impl Drop for DeliveryTrace {
    fn drop(&mut self) {
        self.record_deferred_settle();
        if !self.ended {
            self.span.end();
        }
    }
}
