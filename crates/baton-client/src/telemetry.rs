//! OpenTelemetry spans of the publisher and subscriber, shaped like the
//! official clients' (`tracing.md` sections 2-4), plus two things they lack:
//! the handler runs inside the `process` span (OpenTelemetry context and
//! `tracing` span), and settle spans follow the sampling decision of the
//! subscribe spans they settle.

use std::sync::Arc;

use baton_proto::pubsub::{PubsubMessage, ReceivedMessage};
use baton_trace as bt;
use opentelemetry::global::{BoxedSpan, BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::trace::{Link, Span, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use baton_trace::PropagationOptions;

/// Tracing settings of a publisher or subscriber.
#[derive(Clone, Default)]
pub struct TracingConfig {
    /// Record spans and carry the trace context in `googclient_traceparent`
    /// (off by default, as in the official clients).
    pub enable_open_telemetry_tracing: bool,
    /// Opt-in extra carriers (plain `traceparent`, baggage).
    pub propagation: PropagationOptions,
    /// The provider to create spans with; the global one when `None`.
    pub tracer_provider: Option<Arc<dyn ObjectSafeTracerProvider + Send + Sync>>,
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
}

/// The tracer of one publisher or subscriber, or nothing when tracing is off.
#[derive(Clone)]
pub(crate) struct Telemetry {
    tracer: Option<Arc<BoxedTracer>>,
    propagation: PropagationOptions,
}

/// The context a new `create` span is parented on: the current `tracing`
/// span's OpenTelemetry context when it has one, else the current
/// OpenTelemetry context.
fn current_parent() -> Context {
    let from_tracing = tracing::Span::current().context();
    if from_tracing.span().span_context().is_valid() {
        from_tracing
    } else {
        Context::current()
    }
}

fn common(project: &str, destination: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(bt::MESSAGING_SYSTEM, bt::MESSAGING_SYSTEM_VALUE),
        KeyValue::new(bt::MESSAGING_DESTINATION_NAME, destination.to_string()),
        KeyValue::new(bt::GCP_PROJECT_ID, project.to_string()),
    ]
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Telemetry {
    pub fn new(config: &TracingConfig) -> Self {
        let tracer = config.enable_open_telemetry_tracing.then(|| {
            let tracer = match &config.tracer_provider {
                Some(provider) => BoxedTracer::new(provider.boxed_tracer(bt::scope())),
                None => opentelemetry::global::tracer_with_scope(bt::scope()),
            };
            Arc::new(tracer)
        });
        Self {
            tracer,
            propagation: config.propagation,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tracer.is_some()
    }

    /// Starts the per-message `create` span and writes its context into the
    /// message's attributes.
    pub fn start_create(
        &self,
        topic_id: &str,
        project: &str,
        message: &mut PubsubMessage,
    ) -> Option<CreateTrace> {
        let tracer = self.tracer.as_ref()?;
        let parent = current_parent();
        let mut attributes = common(project, topic_id);
        attributes.extend([
            KeyValue::new(bt::MESSAGING_OPERATION, bt::OPERATION_CREATE),
            KeyValue::new(bt::CODE_FUNCTION, "publish"),
            KeyValue::new(bt::MESSAGING_MESSAGE_BODY_SIZE, as_i64(message.data.len())),
            KeyValue::new(
                bt::MESSAGING_GCP_PUBSUB_ORDERING_KEY,
                message.ordering_key.clone(),
            ),
        ]);
        let span = tracer
            .span_builder(bt::create_span_name(topic_id))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes)
            .start_with_context(tracer.as_ref(), &parent);
        let cx = parent.with_span(span);
        bt::inject(&cx, &mut message.attributes, &self.propagation);
        Some(CreateTrace {
            tracer: tracer.clone(),
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
        topic_id: &str,
        project: &str,
        count: usize,
        creates: &mut [&mut CreateTrace],
    ) -> Option<RpcSpan> {
        let tracer = self.tracer.as_ref()?;
        let links: Vec<Link> = creates
            .iter()
            .map(|c| c.cx.span().span_context().clone())
            .filter(SpanContext::is_sampled)
            .map(|sc| bt::link_to(&sc, None))
            .collect();
        let mut attributes = common(project, topic_id);
        attributes.extend([
            KeyValue::new(bt::MESSAGING_BATCH_MESSAGE_COUNT, as_i64(count)),
            KeyValue::new(bt::MESSAGING_OPERATION, bt::OPERATION_PUBLISH),
            KeyValue::new(bt::CODE_FUNCTION, "_commit"),
        ]);
        let span = tracer
            .span_builder(bt::publish_span_name(topic_id))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(tracer.as_ref(), &Context::new());
        let rpc = span.span_context().clone();
        for create in creates.iter_mut() {
            create.cx.span().add_link(rpc.clone(), Vec::new());
        }
        Some(RpcSpan { span })
    }

    /// Starts the `subscribe` span of one delivery, a child of the publisher's
    /// `create` span when the message carries its context.
    pub fn start_subscribe(
        &self,
        subscription_id: &str,
        project: &str,
        received: &ReceivedMessage,
        exactly_once: bool,
    ) -> Option<DeliveryTrace> {
        let tracer = self.tracer.as_ref()?;
        let message = received.message.as_ref();
        let empty = std::collections::HashMap::new();
        let attributes_map = message.map(|m| &m.attributes).unwrap_or(&empty);
        let parent = bt::extract(attributes_map, &self.propagation);
        let create = parent.span().span_context().clone();
        let mut attributes = common(project, subscription_id);
        attributes.extend([
            KeyValue::new(
                bt::MESSAGING_MESSAGE_ID,
                message.map(|m| m.message_id.clone()).unwrap_or_default(),
            ),
            KeyValue::new(
                bt::MESSAGING_MESSAGE_BODY_SIZE,
                as_i64(message.map_or(0, |m| m.data.len())),
            ),
            KeyValue::new(bt::MESSAGING_GCP_PUBSUB_ACK_ID, received.ack_id.clone()),
            KeyValue::new(
                bt::MESSAGING_GCP_PUBSUB_ORDERING_KEY,
                message.map(|m| m.ordering_key.clone()).unwrap_or_default(),
            ),
            KeyValue::new(bt::MESSAGING_GCP_PUBSUB_EXACTLY_ONCE_DELIVERY, exactly_once),
            KeyValue::new(bt::CODE_FUNCTION, "_on_response"),
            KeyValue::new(
                bt::MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT,
                i64::from(received.delivery_attempt),
            ),
        ]);
        let span = tracer
            .span_builder(bt::subscribe_span_name(subscription_id))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(tracer.as_ref(), &parent);
        Some(DeliveryTrace {
            tracer: tracer.clone(),
            subscription_id: subscription_id.to_string(),
            cx: parent.with_span(span),
            create: create.is_valid().then_some(create),
            scheduler: None,
            concurrency: None,
            ended: false,
        })
    }

    /// Starts an ack, nack or modack RPC span (a root) linked both ways to
    /// the subscribe spans it settles. It follows their sampling decision:
    /// when none of them is sampled, no settle span is made at all (the
    /// official clients make a root whose fate the sampler decides at random).
    pub fn start_settle(
        &self,
        subscription_id: &str,
        project: &str,
        kind: bt::SettleKind,
        modack: Option<ModackInfo>,
        deliveries: &mut [&mut DeliveryTrace],
    ) -> Option<RpcSpan> {
        let tracer = self.tracer.as_ref()?;
        let contexts: Vec<SpanContext> = deliveries
            .iter()
            .map(|d| d.cx.span().span_context().clone())
            .collect();
        if !contexts.iter().any(SpanContext::is_sampled) {
            return None;
        }
        let mut attributes = common(project, subscription_id);
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
            .span_builder(bt::settle_span_name(subscription_id, kind))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .with_links(
                contexts
                    .iter()
                    .filter(|sc| sc.is_sampled())
                    .map(|sc| bt::link_to(sc, None))
                    .collect(),
            )
            .start_with_context(tracer.as_ref(), &Context::new());
        let settle = span.span_context().clone();
        for delivery in deliveries.iter_mut() {
            delivery.cx.span().add_event(kind.start_event(), Vec::new());
            if settle.is_valid() {
                let link = bt::settle_link(&settle, kind);
                delivery
                    .cx
                    .span()
                    .add_link(link.span_context, link.attributes);
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

/// The `create` span of one message and its child spans.
pub(crate) struct CreateTrace {
    tracer: Arc<BoxedTracer>,
    cx: Context,
    flow_control: Option<BoxedSpan>,
    batching: Option<BoxedSpan>,
    ended: bool,
}

impl CreateTrace {
    fn child(&self, name: &'static str) -> BoxedSpan {
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .start_with_context(self.tracer.as_ref(), &self.cx)
    }

    pub fn start_flow_control(&mut self) {
        self.flow_control = Some(self.child(bt::PUBLISHER_FLOW_CONTROL_SPAN));
    }

    pub fn end_flow_control(&mut self) {
        if let Some(mut span) = self.flow_control.take() {
            span.end();
        }
    }

    pub fn start_batching(&mut self) {
        self.batching = Some(self.child(bt::PUBLISHER_BATCHING_SPAN));
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
    pub fn publish_end(&mut self, result: Result<&str, &crate::Error>) {
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
    pub fn fail(&mut self, error: &crate::Error) {
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

/// The spans of one delivery: `subscribe` and its children.
pub(crate) struct DeliveryTrace {
    tracer: Arc<BoxedTracer>,
    subscription_id: String,
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
    fn child(&self, name: &'static str) -> BoxedSpan {
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .start_with_context(self.tracer.as_ref(), &self.cx)
    }

    pub fn start_scheduler(&mut self) {
        self.scheduler = Some(self.child(bt::SUBSCRIBER_SCHEDULER_SPAN));
    }

    pub fn end_scheduler(&mut self) {
        if let Some(mut span) = self.scheduler.take() {
            span.end();
        }
    }

    pub fn start_concurrency_control(&mut self) {
        self.concurrency = Some(self.child(bt::SUBSCRIBER_CONCURRENCY_CONTROL_SPAN));
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

    /// Starts the `process` span the handler runs in.
    pub fn start_process(&self) -> ProcessScope {
        let name = bt::process_span_name(&self.subscription_id);
        let span = tracing::info_span!(
            "process",
            otel.name = %name,
            otel.kind = "internal",
            messaging.system = bt::MESSAGING_SYSTEM_VALUE,
        );
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
        // No tracing-opentelemetry layer: make the span through the API.
        let links = self.create.iter().map(|sc| bt::link_to(sc, None)).collect();
        let otel = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(vec![KeyValue::new(
                bt::MESSAGING_SYSTEM,
                bt::MESSAGING_SYSTEM_VALUE,
            )])
            .with_links(links)
            .start_with_context(self.tracer.as_ref(), &self.cx);
        ProcessScope {
            span,
            context: self.cx.with_span(otel),
            own_span: true,
        }
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
