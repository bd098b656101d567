//! Received messages, the per-delivery state behind them, and settling.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::published::{PublishedMessage, TRACEPARENT_ATTRIBUTE};
use baton_proto::pubsub::PubsubMessage;
use prost::Message as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::delivery::{AckerHandle, Delivery, Kind, Reply, SessionBooks, SettleRequest, Traced};
use super::shared::Shared;
use crate::error::AckError;
use crate::pulled::PulledMessage;
use crate::telemetry::{ProcessScope, SubscribeTrace};

/// The span of messages that have none (tracing off, unary pulls).
static NO_SPAN: tracing::Span = tracing::Span::none();

/// Acks or nacks a delivery once: updates the session's books (lease, flow
/// control, ordering key) and queues the RPC.
pub(crate) fn settle(delivery: &Arc<Delivery>, kind: Kind, reply: Option<Reply>) {
    if !delivery.claim_settlement() {
        if let Some(reply) = reply {
            let _ = reply.send(Err(AckError::Shutdown));
        }
        return;
    }
    if let Some(core) = delivery.session() {
        core.on_settled(delivery, kind == Kind::Ack);
    }
    let request = SettleRequest {
        kind,
        delivery: delivery.clone(),
        reply,
    };
    if let Err(request) = delivery.acker.send(request)
        && let Some(reply) = request.reply
    {
        let _ = reply.send(Err(AckError::Shutdown));
    }
}

/// A received message before it reaches the user.
pub(crate) struct Pending {
    pub message: PublishedMessage,
    pub delivery_attempt: i32,
    pub delivery: Arc<Delivery>,
}

impl Pending {
    /// Wraps a received message, starting its subscribe span.
    pub fn new(
        shared: &Shared,
        received: PulledMessage,
        exactly_once: bool,
        acker: AckerHandle,
        session: Option<Weak<dyn SessionBooks>>,
    ) -> Self {
        let telemetry = &shared.telemetry;
        // Tracing off: one branch, nothing else.
        let (trace, unsampled) = match telemetry
            .enabled()
            .then(|| telemetry.start_subscribe(&received, exactly_once))
            .flatten()
        {
            Some(SubscribeTrace::Recording(trace)) => (
                Some(Mutex::new(Traced {
                    trace,
                    process: None,
                })),
                None,
            ),
            Some(SubscribeTrace::Unsampled(context)) => (None, Some(context)),
            None => (None, None),
        };
        let message = received.message.unwrap_or_default();
        let delivery = Delivery {
            ack_id: received.ack_id,
            size: message.encoded_len(),
            ordering_key: message.message.ordering_key.clone(),
            received_at: Instant::now(),
            trace,
            unsampled,
            settled: AtomicBool::new(false),
            acker,
            session,
        };
        Self {
            message,
            delivery_attempt: received.delivery_attempt,
            delivery: Arc::new(delivery),
        }
    }

    /// Nacks a message that never reached the user (shutdown).
    pub fn nack(self) {
        settle(&self.delivery, Kind::Nack, None);
    }
}

/// A message received from a subscription.
///
/// Settle it with [`ack`](Self::ack) or [`nack`](Self::nack) (or their
/// `_with_result` forms, which wait for the server's answer, as exactly-once
/// delivery needs). Dropping it unsettled nacks it, so it is redelivered.
///
/// ```no_run
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
/// for message in client.subscriber("orders-worker").pull(10).await? {
///     if message.attributes().get("kind").map(String::as_str) == Some("order") {
///         message.ack();
///     } else {
///         message.nack();
///     }
/// }
/// # Ok(()) }
/// ```
pub struct ReceivedMessage {
    /// The message, its trace context (if any) held apart from the map.
    /// While the context is held, the map is in `held_map`.
    message: PublishedMessage,
    /// The attribute map of a message whose trace context is held apart,
    /// until [`Self::attributes`] first moves it into `attributes`.
    held_map: Mutex<HashMap<String, String>>,
    /// The attributes with the held trace context put back among them,
    /// made when first asked for: a handler that never reads them never
    /// builds the entry, and one that does pays what decoding it into the
    /// map would have cost.
    attributes: OnceLock<HashMap<String, String>>,
    /// The standard message, made when first asked for.
    standard: OnceLock<Box<PubsubMessage>>,
    delivery_attempt: i32,
    delivery: Arc<Delivery>,
    process: Option<Arc<ProcessScope>>,
    /// Settled through this handle; dropping it does nothing more.
    done: bool,
}

impl std::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("message_id", &self.message.message.message_id)
            .field("ack_id", &self.delivery.ack_id)
            .field("data_len", &self.message.message.data.len())
            .field("attributes", self.attributes())
            .field("ordering_key", &self.message.message.ordering_key)
            .field("delivery_attempt", &self.delivery_attempt())
            .finish_non_exhaustive()
    }
}

impl ReceivedMessage {
    pub(crate) fn new(pending: Pending, process: Option<Arc<ProcessScope>>) -> Self {
        let mut message = pending.message;
        let held_map = if message.traceparent.is_some() {
            std::mem::take(&mut message.message.attributes)
        } else {
            HashMap::new()
        };
        Self {
            message,
            held_map: Mutex::new(held_map),
            attributes: OnceLock::new(),
            standard: OnceLock::new(),
            delivery_attempt: pending.delivery_attempt,
            delivery: pending.delivery,
            process,
            done: false,
        }
    }

    /// The payload.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// let text = String::from_utf8_lossy(message.data());
    /// # }
    /// ```
    pub fn data(&self) -> &[u8] {
        &self.message.message.data
    }

    /// The attributes (including `googclient_traceparent` when the publisher
    /// traced the message).
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// let kind = message.attributes().get("kind").cloned().unwrap_or_default();
    /// # }
    /// ```
    pub fn attributes(&self) -> &HashMap<String, String> {
        if self.message.traceparent.is_none() {
            return &self.message.message.attributes;
        }
        self.attributes.get_or_init(|| {
            let mut map = std::mem::take(
                &mut *self
                    .held_map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            let value = self.message.traceparent.map(|v| v.as_str().to_string());
            map.extend(value.map(|v| (TRACEPARENT_ATTRIBUTE.to_string(), v)));
            map
        })
    }

    /// The server-assigned message id.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// println!("processing {}", message.message_id());
    /// # }
    /// ```
    pub fn message_id(&self) -> &str {
        &self.message.message.message_id
    }

    /// When the server received the message.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// let age = message.publish_time().elapsed().unwrap_or_default();
    /// # }
    /// ```
    pub fn publish_time(&self) -> SystemTime {
        self.message
            .message
            .publish_time
            .as_ref()
            .and_then(|t| {
                let seconds = u64::try_from(t.seconds).ok()?;
                let nanos = u32::try_from(t.nanos).ok()?;
                UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
            })
            .unwrap_or(UNIX_EPOCH)
    }

    /// The ordering key (empty when none).
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// if !message.ordering_key().is_empty() { /* part of an ordered stream */ }
    /// # }
    /// ```
    pub fn ordering_key(&self) -> &str {
        &self.message.message.ordering_key
    }

    /// How many times the message was delivered, counting this one; only
    /// reported when the subscription has a dead-letter policy.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// if message.delivery_attempt().is_some_and(|n| n > 3) { /* a poison message? */ }
    /// # }
    /// ```
    pub fn delivery_attempt(&self) -> Option<u32> {
        u32::try_from(self.delivery_attempt).ok().filter(|n| *n > 0)
    }

    /// The ack id of this delivery.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// tracing::debug!(ack_id = message.ack_id(), "received");
    /// # }
    /// ```
    pub fn ack_id(&self) -> &str {
        &self.delivery.ack_id
    }

    /// The message as received on the wire, e.g. for
    /// [`baton_trace_context::extract`]-style helpers. For a message whose
    /// `googclient_traceparent` the subscriber holds apart, the first call
    /// builds it, copying the payload: prefer [`Self::data`] and
    /// [`Self::attributes`] for large messages.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// let raw: &baton_client::proto::PubsubMessage = message.message();
    /// # }
    /// ```
    pub fn message(&self) -> &PubsubMessage {
        if self.message.traceparent.is_none() {
            return &self.message.message;
        }
        self.standard.get_or_init(|| {
            Box::new(PubsubMessage {
                attributes: self.attributes().clone(),
                ..self.message.message.clone()
            })
        })
    }

    /// The `process` span the handler runs in (a disabled span when tracing
    /// is off, the message's trace is not sampled, or the message came from
    /// a unary pull).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) {
    /// let handle = client.subscriber("orders-worker").subscribe(|message| async move {
    ///     // Work started on another task can still nest under the message.
    ///     let span = message.process_span().clone();
    ///     tokio::spawn(async move { let _entered = span.enter(); /* ... */ });
    ///     message.ack();
    /// });
    /// # }
    /// ```
    pub fn process_span(&self) -> &tracing::Span {
        self.process.as_ref().map_or(&NO_SPAN, |scope| &scope.span)
    }

    /// Acknowledges the message: it will not be redelivered (unless the ack
    /// is lost; use [`Self::ack_with_result`] to know). Acks are batched and
    /// sent within about 100 ms.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// message.ack();
    /// # }
    /// ```
    pub fn ack(self) {
        self.settle(Kind::Ack, None);
    }

    /// Gives the message back for redelivery as soon as possible.
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// message.nack(); // e.g. a dependency is down
    /// # }
    /// ```
    pub fn nack(self) {
        self.settle(Kind::Nack, None);
    }

    /// Lets go of the message without settling it: no nack is sent and its
    /// lease is no longer extended, so the server redelivers it once its ack
    /// deadline passes (what `gcloud pubsub subscriptions pull` does without
    /// `--auto-ack`).
    ///
    /// ```no_run
    /// # fn f(message: baton_client::ReceivedMessage) {
    /// println!("{:?}", message.data());
    /// message.release();
    /// # }
    /// ```
    pub fn release(mut self) {
        if self.delivery.claim_settlement()
            && let Some(core) = self.delivery.session()
        {
            core.on_settled(&self.delivery, false);
        }
        self.done = true;
    }

    /// Acknowledges the message and waits for the server's answer. With
    /// exactly-once delivery, `Ok` means the message will not be delivered
    /// again; [`AckError::InvalidAckId`] means the ack id had expired (the
    /// message may come back); transient failures are retried with backoff
    /// before [`AckError::Transient`] is returned.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) {
    /// use baton_client::AckError;
    /// let handle = client.subscriber("payments").subscribe(|message| async move {
    ///     match message.ack_with_result().await {
    ///         Ok(()) => { /* committed exactly once */ }
    ///         Err(AckError::InvalidAckId) => { /* will be redelivered; undo the work */ }
    ///         Err(error) => eprintln!("ack failed: {error}"),
    ///     }
    /// });
    /// # }
    /// ```
    pub async fn ack_with_result(self) -> Result<(), AckError> {
        let (reply, result) = oneshot::channel();
        self.settle(Kind::Ack, Some(reply));
        result.await.unwrap_or(Err(AckError::Shutdown))
    }

    /// Nacks the message and waits for the server's answer (see
    /// [`Self::ack_with_result`]).
    ///
    /// ```no_run
    /// # async fn f(message: baton_client::ReceivedMessage) {
    /// if let Err(error) = message.nack_with_result().await {
    ///     eprintln!("nack failed: {error}");
    /// }
    /// # }
    /// ```
    pub async fn nack_with_result(self) -> Result<(), AckError> {
        let (reply, result) = oneshot::channel();
        self.settle(Kind::Nack, Some(reply));
        result.await.unwrap_or(Err(AckError::Shutdown))
    }

    /// Sets the message's ack deadline to `seconds` from now (at most 600).
    /// For streamed messages the lease keeps being extended by this amount
    /// afterwards; 0 gives the message back to the server at once while you
    /// keep the handle (a later ack may then fail with
    /// [`AckError::InvalidAckId`] under exactly-once delivery).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// let subscriber = client.subscriber("orders-worker");
    /// for message in subscriber.pull(1).await? {
    ///     message.modify_ack_deadline(120); // a slow job ahead
    ///     // ...
    ///     message.ack();
    /// }
    /// # Ok(()) }
    /// ```
    pub fn modify_ack_deadline(&self, seconds: u32) {
        if self.delivery.is_settled() {
            return;
        }
        let seconds = i32::try_from(seconds.min(600)).unwrap_or(600);
        if let Some(core) = self.delivery.session() {
            core.on_modify(&self.delivery.ack_id, seconds);
        }
        // A deadline of 0 is a modack on the wire too, but it does not
        // settle the message: the handle can still ack or nack it.
        let _ = self.delivery.acker.send(SettleRequest {
            kind: Kind::Modack {
                seconds,
                receipt: false,
            },
            delivery: self.delivery.clone(),
            reply: None,
        });
    }

    fn settle(mut self, kind: Kind, reply: Option<Reply>) {
        self.done = true;
        if let Some(scope) = &self.process {
            scope.event(match kind {
                Kind::Ack => baton_trace_context::EVENT_ACK_CALLED,
                _ => baton_trace_context::EVENT_NACK_CALLED,
            });
        }
        settle(&self.delivery, kind, reply);
    }
}

impl Drop for ReceivedMessage {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            settle(&self.delivery, Kind::Nack, None);
        }
    }
}
