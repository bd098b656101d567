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

use baton_proto::pubsub::{PublishRequest, PubsubMessage};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use crate::client::{Client, project_of};
use crate::error::{Error, Result};
use crate::retry::{RetrySettings, publish_retryable, with_retry};
use crate::telemetry::{CreateTrace, Telemetry, TracingConfig};

/// Most messages in one Publish request (API limit).
const API_MAX_MESSAGES: usize = 1000;
/// Largest Publish request payload (API limit).
const API_MAX_BYTES: usize = 10_000_000;

/// A message to publish.
///
/// ```
/// use baton_client::Message;
/// let message = Message::new("hello")
///     .attribute("kind", "greeting")
///     .ordering_key("customer-42");
/// assert_eq!(message.data(), b"hello");
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
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the ordering key (needs `enable_message_ordering` on the publisher).
    pub fn ordering_key(mut self, key: impl Into<String>) -> Self {
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

/// When a batch is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// Send once this many messages wait (official default 100; at most 1000).
    pub max_messages: usize,
    /// Send once this many bytes wait (official default 1 MB; at most 10 MB).
    pub max_bytes: usize,
    /// Send once the oldest message waited this long (official default 10 ms).
    pub max_delay: Duration,
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

/// What `publish` does when publisher flow control is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitExceededBehavior {
    /// No limit (the official default).
    #[default]
    Ignore,
    /// Wait until earlier messages are sent.
    Block,
    /// Fail the publish with [`Error::FlowControlLimit`].
    Error,
}

/// Limits on messages published but not yet acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublisherFlowControl {
    /// Most outstanding messages.
    pub max_outstanding_messages: Option<usize>,
    /// Most outstanding bytes.
    pub max_outstanding_bytes: Option<usize>,
    /// What happens at the limit.
    pub limit_exceeded_behavior: LimitExceededBehavior,
}

/// Settings of a [`Publisher`].
#[derive(Debug, Clone, Default)]
pub struct PublisherConfig {
    /// Batching thresholds.
    pub batching: BatchSettings,
    /// Publisher flow control.
    pub flow_control: PublisherFlowControl,
    /// Retries of failed Publish calls.
    pub retry: RetrySettings,
    /// Keep messages with one ordering key in order (one batch in flight per
    /// key; a failure pauses the key until [`Publisher::resume_publish`]).
    pub enable_message_ordering: bool,
    /// OpenTelemetry tracing (off by default, as in the official clients).
    pub tracing: TracingConfig,
}

/// Resolves to the server-assigned message id once the message's batch is
/// published (or to the error that stopped it).
#[derive(Debug)]
pub struct PublishHandle {
    result: oneshot::Receiver<Result<String>>,
}

impl Future for PublishHandle {
    type Output = Result<String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(Error::Shutdown)))
    }
}

impl PublishHandle {
    fn failed(error: Error) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(error));
        Self { result: rx }
    }
}

struct Pending {
    message: PubsubMessage,
    size: usize,
    done: oneshot::Sender<Result<String>>,
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
    batches_in_flight: usize,
    flush_requested: bool,
    closing: bool,
}

impl State {
    fn idle(&self) -> bool {
        self.batches_in_flight == 0 && self.queues.values().all(|q| q.pending.is_empty())
    }
}

struct Shared {
    client: Client,
    topic: String,
    config: PublisherConfig,
    state: Mutex<State>,
    /// Wakes the dispatcher: new message, batch done, flush, close.
    wake: Notify,
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
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
/// use baton_client::Message;
/// let publisher = client.publisher("orders");
/// let handle = publisher.publish(Message::new("order 1")).await;
/// let id = handle.await?;
/// println!("published {id}");
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
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            idle: Notify::new(),
        });
        tokio::spawn(dispatch(shared.clone()));
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

    /// Queues `message` for publishing. Waits only when flow control is full
    /// and set to block; the returned handle resolves to the message id.
    pub async fn publish(&self, message: impl Into<Message>) -> PublishHandle {
        // A loop of publishes that never wait would hold its worker thread
        // until it ends, and the connection and batch tasks queued behind
        // it would wait too; yield now and then to let them run.
        tokio::task::consume_budget().await;
        let shared = &self.shared;
        let mut message = message.into().into_proto();
        if !message.ordering_key.is_empty() && !shared.config.enable_message_ordering {
            return PublishHandle::failed(Error::OrderingNotEnabled);
        }
        if message.data.is_empty() && message.attributes.is_empty() {
            // The server would reject the whole batch it travels in.
            return PublishHandle::failed(Error::EmptyMessage);
        }
        let mut trace = shared.telemetry.start_create(&mut message);
        let size = message.payload_size();
        if size > API_MAX_BYTES {
            let error = Error::MessageTooLarge {
                size,
                limit: API_MAX_BYTES,
            };
            if let Some(trace) = trace.as_mut() {
                trace.fail(&error);
            }
            return PublishHandle::failed(error);
        }
        if let Some(trace) = trace.as_mut() {
            trace.start_flow_control(&shared.telemetry);
        }
        let permits = match self.acquire_flow_control(size).await {
            Ok(permits) => permits,
            Err(error) => {
                if let Some(trace) = trace.as_mut() {
                    trace.fail(&error);
                }
                return PublishHandle::failed(error);
            }
        };
        if let Some(trace) = trace.as_mut() {
            trace.end_flow_control();
            trace.start_batching(&shared.telemetry);
        }
        let (done, result) = oneshot::channel();
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
                let error = Error::OrderingKeyPaused(key);
                if let Some(trace) = trace.as_mut() {
                    trace.fail(&error);
                }
                return PublishHandle::failed(error);
            }
            queue.bytes += size;
            queue.oldest.get_or_insert_with(Instant::now);
            queue.pending.push_back(Pending {
                message,
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
        PublishHandle { result }
    }

    async fn acquire_flow_control(&self, size: usize) -> Result<Vec<OwnedSemaphorePermit>> {
        let shared = &self.shared;
        let behavior = shared.config.flow_control.limit_exceeded_behavior;
        let mut permits = Vec::new();
        let windows = [
            (shared.messages_window.as_ref(), 1usize, "messages"),
            (shared.bytes_window.as_ref(), size, "bytes"),
        ];
        for (window, amount, what) in windows {
            let Some(window) = window else { continue };
            let limit = match what {
                "messages" => shared.config.flow_control.max_outstanding_messages,
                _ => shared.config.flow_control.max_outstanding_bytes,
            }
            .unwrap_or(usize::MAX);
            if amount > limit {
                return Err(Error::MessageTooLarge {
                    size: amount,
                    limit,
                });
            }
            let amount = u32::try_from(amount).unwrap_or(u32::MAX);
            let permit = match behavior {
                LimitExceededBehavior::Block => window
                    .clone()
                    .acquire_many_owned(amount)
                    .await
                    .map_err(|_| Error::Shutdown)?,
                LimitExceededBehavior::Error => window
                    .clone()
                    .try_acquire_many_owned(amount)
                    .map_err(|_| Error::FlowControlLimit(format!("outstanding {what}")))?,
                LimitExceededBehavior::Ignore => continue,
            };
            permits.push(permit);
        }
        Ok(permits)
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
        for trace in traces.iter_mut() {
            trace.end_batching();
            trace.publish_start();
        }
        shared.telemetry.start_publish_rpc(count, &mut traces)
    };
    let messages: Vec<PubsubMessage> = batch.iter().map(|p| p.message.clone()).collect();
    let result = with_retry(&shared.config.retry, publish_retryable, || {
        let request = PublishRequest {
            topic: topic.clone(),
            messages: messages.clone(),
        };
        let client = shared.client.clone();
        let topic = topic.clone();
        async move {
            let request = client
                .request(request, &topic)
                .await
                .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
            client.publisher_stub().publish(request).await
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
            for (pending, id) in batch.into_iter().zip(ids) {
                if let Some(mut trace) = pending.trace {
                    trace.publish_end(Ok(&id));
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
            for pending in batch {
                let error = Error::Rpc(status.clone());
                if let Some(mut trace) = pending.trace {
                    trace.publish_end(Err(&error));
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
                let error = Error::OrderingKeyPaused(key.clone());
                if let Some(mut trace) = pending.trace {
                    trace.fail(&error);
                }
                let _ = pending.done.send(Err(error));
            }
        }
    }
    drop(state);
    shared.wake.notify_one();
}
