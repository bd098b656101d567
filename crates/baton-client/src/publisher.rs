//! Publishing: batching by count, bytes and delay; flow control; ordering
//! keys; retries; flush and shutdown that lose nothing.
//!
//! A publisher is a handle on shared state plus one dispatcher task. Messages
//! wait in one queue per ordering key (the empty key is the unordered queue);
//! the dispatcher cuts a batch when a queue reaches its count or byte limit
//! or its oldest message has waited `max_delay`, and sends each batch on its
//! own task. An ordered key has at most one batch in flight, so its messages
//! reach the server in order even across retries.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use baton_proto::pubsub::PubsubMessage;
use baton_trace_context::{TRACEPARENT_ATTRIBUTE, Traceparent};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use crate::client::{Client, project_of};
use crate::encoded_publish::EncodedPublish;
use crate::error::PublishError;
use crate::retry::{CallFamily, RetrySettings, with_retry};
use crate::telemetry::{CreateTrace, RpcSpan, Telemetry, TracingConfig};

/// Most messages in one Publish request (API limit).
const API_MAX_MESSAGES: usize = 1000;
/// Largest Publish request payload (API limit).
const API_MAX_BYTES: usize = 10_000_000;

/// A message to publish.
///
/// ```
/// use baton_client::Message;
/// let message = Message::new("hello")
///     .with_attribute("kind", "greeting")
///     .with_ordering_key("customer-42");
/// assert_eq!(message.data(), b"hello");
/// assert_eq!(message.ordering_key(), "customer-42");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    data: Vec<u8>,
    attributes: HashMap<String, String>,
    ordering_key: String,
}

impl Message {
    /// A message with this payload.
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        Self {
            data: data.into(),
            ..Default::default()
        }
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the ordering key (needs message ordering on the publisher,
    /// [`PublisherConfig::with_message_ordering`]).
    #[must_use]
    pub fn with_ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = key.into();
        self
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The attributes.
    pub fn attributes(&self) -> &HashMap<String, String> {
        &self.attributes
    }

    /// The ordering key (empty when none).
    pub fn ordering_key(&self) -> &str {
        &self.ordering_key
    }

    fn into_proto(self) -> PubsubMessage {
        PubsubMessage {
            data: self.data,
            attributes: self.attributes,
            ordering_key: self.ordering_key,
            ..Default::default()
        }
    }
}

impl From<PubsubMessage> for Message {
    fn from(message: PubsubMessage) -> Self {
        Self {
            data: message.data.to_vec(),
            attributes: message.attributes,
            ordering_key: message.ordering_key,
        }
    }
}

/// When a batch is sent: `BatchSettings::default()` gives the official
/// defaults (100 messages, 1 MB, 10 ms), the `with_*` methods change them.
///
/// ```
/// use std::time::Duration;
/// let batching = baton_client::BatchSettings::default()
///     .with_max_messages(500)
///     .with_max_delay(Duration::from_millis(50));
/// assert_eq!(batching.max_bytes(), 1_000_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BatchSettings {
    max_messages: usize,
    max_bytes: usize,
    max_delay: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_messages: 100,
            max_bytes: 1_000_000,
            max_delay: Duration::from_millis(10),
        }
    }
}

impl BatchSettings {
    /// Send once this many messages wait (at most the API's 1000).
    #[must_use]
    pub fn with_max_messages(mut self, messages: usize) -> Self {
        self.max_messages = messages;
        self
    }

    /// Send once this many bytes wait (at most the API's 10 MB).
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Send once the oldest message waited this long.
    #[must_use]
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Messages that make a batch.
    pub fn max_messages(&self) -> usize {
        self.max_messages
    }

    /// Bytes that make a batch.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Longest a message waits for its batch.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
}

/// What `publish` does when publisher flow control is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LimitExceededBehavior {
    /// No limit (the official default).
    #[default]
    Ignore,
    /// Hold the message until earlier messages are sent (its handle
    /// resolves later; messages keep their order).
    Block,
    /// Fail the publish with [`PublishError::FlowControlLimit`].
    Error,
}

/// Limits on messages published but not yet acknowledged by the server.
///
/// ```
/// use baton_client::{LimitExceededBehavior, PublisherFlowControl};
/// let flow = PublisherFlowControl::default()
///     .with_max_outstanding_messages(1000)
///     .with_max_outstanding_bytes(10 << 20)
///     .with_limit_exceeded_behavior(LimitExceededBehavior::Block);
/// assert_eq!(flow.max_outstanding_messages(), Some(1000));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct PublisherFlowControl {
    max_outstanding_messages: Option<usize>,
    max_outstanding_bytes: Option<usize>,
    limit_exceeded_behavior: LimitExceededBehavior,
}

impl PublisherFlowControl {
    /// Most outstanding messages.
    #[must_use]
    pub fn with_max_outstanding_messages(mut self, messages: usize) -> Self {
        self.max_outstanding_messages = Some(messages);
        self
    }

    /// Most outstanding bytes.
    #[must_use]
    pub fn with_max_outstanding_bytes(mut self, bytes: usize) -> Self {
        self.max_outstanding_bytes = Some(bytes);
        self
    }

    /// What happens at the limit (no limit applies with
    /// [`LimitExceededBehavior::Ignore`], the default).
    #[must_use]
    pub fn with_limit_exceeded_behavior(mut self, behavior: LimitExceededBehavior) -> Self {
        self.limit_exceeded_behavior = behavior;
        self
    }

    /// Most outstanding messages.
    pub fn max_outstanding_messages(&self) -> Option<usize> {
        self.max_outstanding_messages
    }

    /// Most outstanding bytes.
    pub fn max_outstanding_bytes(&self) -> Option<usize> {
        self.max_outstanding_bytes
    }

    /// What happens at the limit.
    pub fn limit_exceeded_behavior(&self) -> LimitExceededBehavior {
        self.limit_exceeded_behavior
    }
}

/// Settings of a [`Publisher`]: `PublisherConfig::default()` gives the
/// official defaults, the `with_*` methods change them.
///
/// ```
/// use baton_client::{BatchSettings, PublisherConfig, TracingConfig};
/// let config = PublisherConfig::default()
///     .with_batching(BatchSettings::default().with_max_messages(1000))
///     .with_message_ordering(true)
///     .with_compression_threshold(1024)
///     .with_tracing(TracingConfig::enabled());
/// assert!(config.message_ordering());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PublisherConfig {
    batching: BatchSettings,
    flow_control: PublisherFlowControl,
    retry: Option<RetrySettings>,
    enable_message_ordering: bool,
    tracing: TracingConfig,
    compression_threshold: Option<usize>,
}

impl PublisherConfig {
    /// Batching thresholds.
    #[must_use]
    pub fn with_batching(mut self, batching: BatchSettings) -> Self {
        self.batching = batching;
        self
    }

    /// Publisher flow control.
    #[must_use]
    pub fn with_flow_control(mut self, flow_control: PublisherFlowControl) -> Self {
        self.flow_control = flow_control;
        self
    }

    /// Retries of this publisher's Publish calls, instead of the client's
    /// ([`crate::ClientConfig::with_retry`] for [`CallFamily::Publish`]).
    #[must_use]
    pub fn with_retry(mut self, retry: RetrySettings) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Keeps messages with one ordering key in order (one batch in flight
    /// per key; a failure pauses the key until [`Publisher::resume_publish`]).
    #[must_use]
    pub fn with_message_ordering(mut self, enabled: bool) -> Self {
        self.enable_message_ordering = enabled;
        self
    }

    /// OpenTelemetry tracing (off by default, as in the official clients).
    #[must_use]
    pub fn with_tracing(mut self, tracing: TracingConfig) -> Self {
        self.tracing = tracing;
        self
    }

    /// Compresses Publish requests of at least `bytes` of messages with
    /// gzip, as the Go and Java clients offer (off by default: it costs CPU
    /// and pays off for large, compressible batches on slow links).
    #[must_use]
    pub fn with_compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = Some(bytes);
        self
    }

    /// Batching thresholds.
    pub fn batching(&self) -> &BatchSettings {
        &self.batching
    }

    /// Publisher flow control.
    pub fn flow_control(&self) -> &PublisherFlowControl {
        &self.flow_control
    }

    /// The Publish retries of this publisher, when set.
    pub fn retry(&self) -> Option<&RetrySettings> {
        self.retry.as_ref()
    }

    /// Whether ordering keys keep their order.
    pub fn message_ordering(&self) -> bool {
        self.enable_message_ordering
    }

    /// Tracing settings.
    pub fn tracing(&self) -> &TracingConfig {
        &self.tracing
    }

    /// The size from which requests are compressed, when compression is on.
    pub fn compression_threshold(&self) -> Option<usize> {
        self.compression_threshold
    }
}

/// The outcome of one publish: a future resolving to the server-assigned
/// message id once the message's batch is published (or to the error that
/// stopped it). Publishing does not wait for it: awaiting it is how the
/// caller learns the outcome, and dropping it does not cancel the publish.
#[derive(Debug)]
#[must_use = "the handle says whether the message was published"]
pub struct PublishHandle {
    result: oneshot::Receiver<Result<String, PublishError>>,
}

impl Future for PublishHandle {
    type Output = Result<String, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(PublishError::Shutdown)))
    }
}

impl PublishHandle {
    fn failed(error: PublishError) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(error));
        Self { result: rx }
    }
}

/// A message held by flow control ([`LimitExceededBehavior::Block`]) until
/// there is room, in publish order.
struct Blocked {
    message: PubsubMessage,
    /// The context the message carries, when its encoder writes it (see
    /// `Telemetry::start_create`).
    traceparent: Option<Traceparent>,
    size: usize,
    done: oneshot::Sender<Result<String, PublishError>>,
    trace: Option<CreateTrace>,
}

struct Pending {
    message: PubsubMessage,
    /// The context the message carries, when its encoder writes it (see
    /// `Telemetry::start_create`).
    traceparent: Option<Traceparent>,
    size: usize,
    done: oneshot::Sender<Result<String, PublishError>>,
    /// Flow-control permits, released before `done` resolves so a caller
    /// that awaited its handle finds the room free.
    permits: Vec<OwnedSemaphorePermit>,
    trace: Option<CreateTrace>,
}

#[derive(Default)]
struct KeyQueue {
    pending: VecDeque<Pending>,
    bytes: usize,
    oldest: Option<Instant>,
    in_flight: bool,
    paused: bool,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, KeyQueue>,
    /// Messages waiting for flow control, oldest first.
    blocked: VecDeque<Blocked>,
    batches_in_flight: usize,
    flush_requested: bool,
    closing: bool,
}

impl State {
    fn idle(&self) -> bool {
        self.batches_in_flight == 0
            && self.blocked.is_empty()
            && self.queues.values().all(|q| q.pending.is_empty())
    }
}

struct Shared {
    client: Client,
    topic: String,
    config: PublisherConfig,
    /// The Publish retries (the publisher's own or the client's).
    retry: RetrySettings,
    state: Mutex<State>,
    /// Wakes the dispatcher: new message, batch done, flush, close.
    wake: Notify,
    /// Wakes the admission task: a message blocked, or closing.
    admit: Notify,
    /// Signals waiters of `flush` when the publisher becomes idle.
    idle: Notify,
    messages_window: Option<Arc<Semaphore>>,
    bytes_window: Option<Arc<Semaphore>>,
    telemetry: Telemetry,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes to one topic. Cheap to clone; the last clone dropped sends what
/// is still queued (call [`Publisher::shutdown`] to wait for it).
///
/// ```no_run
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::PublishError> {
/// use baton_client::Message;
/// let publisher = client.publisher("orders");
/// // One await: the message id, once its batch is published.
/// let id = publisher.publish(Message::new("order 1")).await?;
/// println!("published {id}");
/// // Or publish many without waiting, and collect the outcomes later.
/// let handles: Vec<_> = (0..10).map(|i| publisher.publish(Message::new(format!("order {i}")))).collect();
/// for handle in handles {
///     handle.await?;
/// }
/// publisher.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.shared.topic)
            .finish_non_exhaustive()
    }
}

/// Tells the dispatcher to finish up once no publisher handle is left.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.lock().closing = true;
        self.0.wake.notify_one();
        self.0.admit.notify_one();
    }
}

impl Client {
    /// A publisher for `topic` (short id or full name) with the official
    /// defaults.
    pub fn publisher(&self, topic: &str) -> Publisher {
        self.publisher_with(topic, PublisherConfig::default())
    }

    /// A publisher for `topic` with `config`.
    pub fn publisher_with(&self, topic: &str, config: PublisherConfig) -> Publisher {
        let retry = config
            .retry
            .clone()
            .unwrap_or_else(|| self.retry_settings(CallFamily::Publish).clone());
        let semaphore = |limit: Option<usize>| {
            limit
                .filter(|_| {
                    config.flow_control.limit_exceeded_behavior != LimitExceededBehavior::Ignore
                })
                .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))))
        };
        let topic_name = self.topic_name(topic);
        // The project of the topic, which may be another than the client's.
        let telemetry = Telemetry::new(
            &config.tracing,
            project_of(&topic_name, self.project_id()),
            &topic_name,
        );
        let shared = Arc::new(Shared {
            client: self.clone(),
            topic: topic_name,
            messages_window: semaphore(config.flow_control.max_outstanding_messages),
            bytes_window: semaphore(config.flow_control.max_outstanding_bytes),
            telemetry,
            config,
            retry,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            admit: Notify::new(),
            idle: Notify::new(),
        });
        tokio::spawn(dispatch(shared.clone()));
        if shared.config.flow_control.limit_exceeded_behavior == LimitExceededBehavior::Block {
            tokio::spawn(admit(shared.clone()));
        }
        Publisher {
            _guard: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        }
    }
}

impl Publisher {
    /// The topic's full name.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Queues `message` for publishing and returns at once; the handle
    /// resolves to the message id once its batch is published. When flow
    /// control is full and set to [`LimitExceededBehavior::Block`], the
    /// message waits (in order) for room before it joins a batch; with
    /// [`LimitExceededBehavior::Error`] the handle fails at once.
    ///
    /// Must be called within a Tokio runtime.
    pub fn publish(&self, message: impl Into<Message>) -> PublishHandle {
        let shared = &self.shared;
        let mut message = message.into().into_proto();
        if !message.ordering_key.is_empty() && !shared.config.enable_message_ordering {
            return PublishHandle::failed(PublishError::OrderingNotEnabled);
        }
        if message.data.is_empty() && message.attributes.is_empty() {
            // The server would reject the whole batch it travels in.
            return PublishHandle::failed(PublishError::EmptyMessage);
        }
        let (mut trace, traceparent) = shared.telemetry.start_create(&mut message);
        let fail = |mut trace: Option<CreateTrace>, error: PublishError| {
            shared.telemetry.fail_create(trace.as_mut(), &error);
            PublishHandle::failed(error)
        };
        // The service counts the attribute's key and value.
        let size = message.payload_size()
            + traceparent.map_or(0, |_| TRACEPARENT_ATTRIBUTE.len() + Traceparent::LEN);
        if size > API_MAX_BYTES {
            let error = PublishError::MessageTooLarge {
                size,
                limit: API_MAX_BYTES,
            };
            return fail(trace, error);
        }
        if let Some(trace) = trace.as_mut() {
            trace.start_flow_control();
        }
        let (done, result) = oneshot::channel();
        match self.try_flow_control(size) {
            Ok(Some(permits)) => {
                enqueue(shared, (message, traceparent), size, permits, trace, done)
            }
            Ok(None) => {
                shared.lock().blocked.push_back(Blocked {
                    message,
                    traceparent,
                    size,
                    done,
                    trace,
                });
                shared.admit.notify_one();
            }
            Err(error) => return fail(trace, error),
        }
        PublishHandle { result }
    }

    /// The flow-control permits of a message of `size` bytes when there is
    /// room now; `None` when it must wait (blocking behaviour, or earlier
    /// messages waiting already, which it must not overtake).
    fn try_flow_control(
        &self,
        size: usize,
    ) -> Result<Option<Vec<OwnedSemaphorePermit>>, PublishError> {
        let shared = &self.shared;
        let flow = &shared.config.flow_control;
        let behavior = flow.limit_exceeded_behavior;
        if behavior == LimitExceededBehavior::Ignore {
            return Ok(Some(Vec::new()));
        }
        let windows = [
            (
                shared.messages_window.as_ref(),
                1usize,
                flow.max_outstanding_messages,
                "messages",
            ),
            (
                shared.bytes_window.as_ref(),
                size,
                flow.max_outstanding_bytes,
                "bytes",
            ),
        ];
        for (window, amount, limit, _) in windows {
            if let (Some(_), Some(limit)) = (window, limit)
                && amount > limit
            {
                return Err(PublishError::MessageTooLarge {
                    size: amount,
                    limit,
                });
            }
        }
        if behavior == LimitExceededBehavior::Block && !shared.lock().blocked.is_empty() {
            return Ok(None);
        }
        let mut permits = Vec::new();
        for (window, amount, _, what) in windows {
            let Some(window) = window else { continue };
            let amount = u32::try_from(amount).unwrap_or(u32::MAX);
            match window.clone().try_acquire_many_owned(amount) {
                Ok(permit) => permits.push(permit),
                Err(_) if behavior == LimitExceededBehavior::Block => return Ok(None),
                Err(_) => return Err(PublishError::FlowControlLimit(what)),
            }
        }
        Ok(Some(permits))
    }

    /// Sends everything queued now and waits until it is published.
    pub async fn flush(&self) {
        let shared = &self.shared;
        {
            let mut state = shared.lock();
            // Nothing to send: a request left behind would make the
            // dispatcher send the next messages at once, unbatched.
            if state.idle() {
                return;
            }
            state.flush_requested = true;
        }
        shared.wake.notify_one();
        loop {
            let notified = shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.lock().idle() {
                return;
            }
            notified.await;
        }
    }

    /// Lets an ordering key that failed be published again.
    pub fn resume_publish(&self, ordering_key: &str) {
        if let Some(queue) = self.shared.lock().queues.get_mut(ordering_key) {
            queue.paused = false;
        }
    }

    /// Flushes and stops: every queued message is sent (or failed) first.
    pub async fn shutdown(self) {
        self.flush().await;
    }
}

/// Adds a message that has its flow-control permits to its key's queue,
/// waking the dispatcher when it has something new to decide.
fn enqueue(
    shared: &Shared,
    (message, traceparent): (PubsubMessage, Option<Traceparent>),
    size: usize,
    permits: Vec<OwnedSemaphorePermit>,
    mut trace: Option<CreateTrace>,
    done: oneshot::Sender<Result<String, PublishError>>,
) {
    if let (Some(trace), Some(instrument)) = (trace.as_mut(), shared.telemetry.span_layer()) {
        trace.end_flow_control(instrument);
        trace.start_batching();
    }
    let wake = {
        let mut state = shared.lock();
        let key = if shared.config.enable_message_ordering {
            message.ordering_key.clone()
        } else {
            String::new()
        };
        let queue = state.queues.entry(key.clone()).or_default();
        if queue.paused {
            drop(state);
            let error = PublishError::OrderingKeyPaused(key);
            shared.telemetry.fail_create(trace.as_mut(), &error);
            let _ = done.send(Err(error));
            return;
        }
        queue.bytes += size;
        queue.oldest.get_or_insert_with(Instant::now);
        queue.pending.push_back(Pending {
            message,
            traceparent,
            size,
            done,
            permits,
            trace,
        });
        // Wake the dispatcher only when it has something new to decide:
        // a first message (it arms the delay timer) or a full batch.
        // Waking it for every message made it rescan all queues and
        // fight the publishing task for this lock.
        let settings = &shared.config.batching;
        queue.pending.len() == 1
            || queue.pending.len() >= settings.max_messages.clamp(1, API_MAX_MESSAGES)
            || queue.bytes >= settings.max_bytes.clamp(1, API_MAX_BYTES)
    };
    if wake {
        shared.wake.notify_one();
    }
}

/// Lets messages held by blocking flow control into their queues, oldest
/// first, as room frees up; ends once the publisher is closing and none
/// is left.
async fn admit(shared: Arc<Shared>) {
    loop {
        let notified = shared.admit.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let state = shared.lock();
            match state.blocked.front() {
                Some(blocked) => Some(blocked.size),
                None if state.closing => return,
                None => None,
            }
        };
        let Some(size) = next else {
            notified.await;
            continue;
        };
        let mut permits = Vec::new();
        for (window, amount) in [
            (shared.messages_window.as_ref(), 1usize),
            (shared.bytes_window.as_ref(), size),
        ] {
            let Some(window) = window else { continue };
            let amount = u32::try_from(amount).unwrap_or(u32::MAX);
            // Semaphores are never closed; FIFO, so order is kept.
            if let Ok(permit) = window.clone().acquire_many_owned(amount).await {
                permits.push(permit);
            }
        }
        let blocked = shared.lock().blocked.pop_front();
        if let Some(blocked) = blocked {
            enqueue(
                &shared,
                (blocked.message, blocked.traceparent),
                blocked.size,
                permits,
                blocked.trace,
                blocked.done,
            );
        }
    }
}

/// Takes the next batch of a queue: within the configured and API limits,
/// at least one message.
fn cut_batch(queue: &mut KeyQueue, settings: &BatchSettings) -> Vec<Pending> {
    let max_messages = settings.max_messages.clamp(1, API_MAX_MESSAGES);
    let max_bytes = settings.max_bytes.clamp(1, API_MAX_BYTES);
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(next) = queue.pending.front() {
        if !batch.is_empty() && (batch.len() >= max_messages || bytes + next.size > max_bytes) {
            break;
        }
        let Some(next) = queue.pending.pop_front() else {
            break;
        };
        bytes += next.size;
        batch.push(next);
    }
    queue.bytes -= bytes;
    queue.oldest = if queue.pending.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
    batch
}

fn queue_ready(queue: &KeyQueue, settings: &BatchSettings, now: Instant, flushing: bool) -> bool {
    !queue.pending.is_empty()
        && (flushing
            || queue.pending.len() >= settings.max_messages.clamp(1, API_MAX_MESSAGES)
            || queue.bytes >= settings.max_bytes.clamp(1, API_MAX_BYTES)
            || queue.oldest.is_some_and(|t| now >= t + settings.max_delay))
}

async fn dispatch(shared: Arc<Shared>) {
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let mut next_deadline: Option<Instant> = None;
        let mut batches = Vec::new();
        let finished = {
            let mut state = shared.lock();
            let flushing = state.flush_requested || state.closing;
            let settings = &shared.config.batching;
            for (key, queue) in state.queues.iter_mut() {
                let ordered = !key.is_empty();
                while queue_ready(queue, settings, now, flushing) && !(ordered && queue.in_flight) {
                    let batch = cut_batch(queue, settings);
                    queue.in_flight |= ordered;
                    batches.push((key.clone(), batch));
                }
                // A key waiting for its in-flight batch is woken when that
                // batch finishes; a deadline for it would already have
                // passed and make this loop spin until then.
                let waiting = ordered && queue.in_flight;
                if let Some(oldest) = queue
                    .oldest
                    .filter(|_| !queue.pending.is_empty() && !waiting)
                {
                    let due = oldest + settings.max_delay;
                    next_deadline = Some(next_deadline.map_or(due, |d: Instant| d.min(due)));
                }
            }
            state.batches_in_flight += batches.len();
            // Forget keys with nothing to remember, so a stream of distinct
            // ordering keys does not grow the map forever.
            state
                .queues
                .retain(|_, q| !q.pending.is_empty() || q.in_flight || q.paused);
            if state.idle() {
                state.flush_requested = false;
                shared.idle.notify_waiters();
            }
            state.closing && state.idle()
        };
        for (key, batch) in batches {
            tokio::spawn(send_batch(shared.clone(), key, batch));
        }
        if finished {
            return;
        }
        match next_deadline {
            Some(deadline) => {
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => notified.await,
        }
    }
}

async fn send_batch(shared: Arc<Shared>, key: String, mut batch: Vec<Pending>) {
    let topic = shared.topic.clone();
    let count = batch.len();
    let mut rpc_span = {
        let mut traces: Vec<&mut CreateTrace> =
            batch.iter_mut().filter_map(|p| p.trace.as_mut()).collect();
        shared.telemetry.start_publish_rpc(count, &mut traces)
    };
    // The batch's messages are encoded once: every attempt sends the same
    // bytes (see `encoded_publish`).
    let bytes: usize = batch.iter().map(|p| p.size).sum();
    let encoded = EncodedPublish::new(
        &topic,
        batch.iter().map(|p| (&p.message, p.traceparent.as_ref())),
    );
    // The bytes are all the attempts need: free the messages now, not when
    // the RPC has answered.
    for pending in &mut batch {
        pending.message = PubsubMessage::default();
    }
    let compress = shared
        .config
        .compression_threshold
        .is_some_and(|threshold| bytes >= threshold);
    let result = with_retry(&shared.retry, |attempt_timeout| {
        let encoded = encoded.clone();
        let client = shared.client.clone();
        let topic = topic.clone();
        async move {
            let mut request = client.request(encoded, &topic).await?;
            request.set_timeout(attempt_timeout);
            client.publish_encoded(request, compress).await
        }
    })
    .await;
    for pending in &mut batch {
        pending.permits.clear();
    }
    let failed = match result {
        Ok(response) => {
            let ids = response.into_inner().message_ids;
            if let Some(span) = rpc_span.as_mut() {
                span.succeed();
            }
            let rpc = rpc_span.as_ref().map(RpcSpan::span_context);
            for (pending, id) in batch.into_iter().zip(ids) {
                if let Some(mut trace) = pending.trace {
                    trace.publish_end(Ok(&id), rpc);
                }
                let _ = pending.done.send(Ok(id));
            }
            false
        }
        Err(status) => {
            tracing::warn!(topic = %topic, code = ?status.code(), message = status.message(), "publish failed");
            if let Some(span) = rpc_span.as_mut() {
                span.fail(&status.to_string());
            }
            let rpc = rpc_span.as_ref().map(RpcSpan::span_context);
            for pending in batch {
                let error = PublishError::Rpc(status.clone());
                if let Some(mut trace) = pending.trace {
                    trace.publish_end(Err(&error), rpc);
                }
                let _ = pending.done.send(Err(error));
            }
            true
        }
    };
    drop(rpc_span);
    let mut state = shared.lock();
    state.batches_in_flight = state.batches_in_flight.saturating_sub(1);
    if !key.is_empty()
        && let Some(queue) = state.queues.get_mut(&key)
    {
        queue.in_flight = false;
        if failed {
            // An ordered key stops at its first failure so later messages
            // cannot overtake the failed ones.
            queue.paused = true;
            queue.bytes = 0;
            queue.oldest = None;
            for mut pending in queue.pending.drain(..) {
                pending.permits.clear();
                let error = PublishError::OrderingKeyPaused(key.clone());
                shared.telemetry.fail_create(pending.trace.as_mut(), &error);
                let _ = pending.done.send(Err(error));
            }
        }
    }
    drop(state);
    shared.wake.notify_one();
}
