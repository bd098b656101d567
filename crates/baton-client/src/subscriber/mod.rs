//! Receiving: StreamingPull with leases, flow control, ordered and
//! exactly-once delivery, batched acknowledgements, and unary Pull.
//!
//! A [`Subscriber`] names a subscription and its settings. Calling
//! [`Subscriber::subscribe`] starts one *session*, made of a few tasks:
//!
//! - the stream task keeps a StreamingPull stream open (reconnecting with
//!   backoff on transient errors, sending a keepalive every 30 s) and turns
//!   every received message into a lease;
//! - the receipt task sends the receipt modack of every response and then
//!   hands the messages to the scheduler (in exactly-once mode only those
//!   whose receipt modack succeeded);
//! - the scheduler applies flow control and ordering keys and starts one
//!   handler task per released message, at most `max_concurrent_handlers`
//!   running at once;
//! - the lease task extends the ack deadline of outstanding messages until
//!   they are settled or `max_lease_extension` has passed;
//! - the acker batches acks, nacks and modacks into unary Acknowledge and
//!   ModifyAckDeadline calls.
//!
//! [`SubscriptionHandle::shutdown`] stops the stream, nacks what was
//! received but not handed to a handler, waits for running handlers (or
//! nacks their messages, per [`ShutdownBehavior`]) and flushes every pending
//! acknowledgement before returning.

mod acker;
mod config;
mod delivery;
mod dispatcher;
mod lease;
mod message;
mod scheduler;
mod session;
mod shared;
mod stream;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use baton_proto::pubsub::{PullRequest, PullResponse};
use futures::stream::{BoxStream, Stream, StreamExt as _};
use tokio::sync::{mpsc, watch};

use crate::client::Client;
use crate::error::SubscribeError;
use crate::retry::{CallFamily, with_retry};

pub use config::{ShutdownBehavior, SubscriberConfig};
pub use message::ReceivedMessage;

use delivery::AckerHandle;
use dispatcher::{Consumer, Handler};
use shared::Shared;

type Result<T, E = SubscribeError> = std::result::Result<T, E>;
/// What a session task reports when it ends.
type Outcome = Option<Result<(), tonic::Status>>;

/// Receives from one subscription, by StreamingPull ([`Subscriber::subscribe`])
/// or unary Pull ([`Subscriber::pull`]). Cheap to clone.
///
/// ```no_run
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
/// let subscriber = client.subscriber("orders-worker");
/// let handle = subscriber.subscribe(|message| async move {
///     println!("got {:?}", message.data());
///     message.ack();
/// });
/// // ... later
/// handle.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Subscriber {
    shared: Arc<Shared>,
    /// Settles messages of unary pulls; started by the first pull.
    pull_acker: Arc<OnceLock<AckerHandle>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("subscription", &self.shared.subscription)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Client {
    /// A subscriber of `subscription` (short id or full name) with the
    /// official defaults.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) {
    /// let subscriber = client.subscriber("orders-worker");
    /// assert_eq!(subscriber.subscription(), "projects/my-project/subscriptions/orders-worker");
    /// # }
    /// ```
    pub fn subscriber(&self, subscription: &str) -> Subscriber {
        self.subscriber_with(subscription, SubscriberConfig::default())
    }

    /// A subscriber of `subscription` with `config`.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) {
    /// use baton_client::SubscriberConfig;
    /// let subscriber = client.subscriber_with(
    ///     "orders-worker",
    ///     SubscriberConfig::default().with_flow_control(10, 0),
    /// );
    /// # }
    /// ```
    pub fn subscriber_with(&self, subscription: &str, config: SubscriberConfig) -> Subscriber {
        Subscriber {
            shared: Arc::new(Shared::new(self, subscription, config)),
            pull_acker: Arc::new(OnceLock::new()),
        }
    }
}

impl Subscriber {
    /// The subscription's full name.
    ///
    /// ```no_run
    /// # fn f(client: baton_client::Client) {
    /// let subscriber = client.subscriber("projects/other/subscriptions/audit");
    /// assert_eq!(subscriber.subscription(), "projects/other/subscriptions/audit");
    /// # }
    /// ```
    pub fn subscription(&self) -> &str {
        &self.shared.subscription
    }

    /// The settings.
    ///
    /// ```no_run
    /// # fn f(client: baton_client::Client) {
    /// let subscriber = client.subscriber("orders-worker");
    /// assert_eq!(subscriber.config().max_outstanding_messages(), 1000);
    /// # }
    /// ```
    pub fn config(&self) -> &SubscriberConfig {
        &self.shared.config
    }

    /// Starts receiving by StreamingPull: every message is passed to
    /// `handler`, which should [`ack`](ReceivedMessage::ack) or
    /// [`nack`](ReceivedMessage::nack) it (dropping it unsettled nacks it).
    /// With tracing on, the handler runs inside the message's `process`
    /// span (both the `tracing` span and the OpenTelemetry context), so work
    /// it does nests under it.
    ///
    /// Must be called within a Tokio runtime. The returned handle stops the
    /// session; dropping it shuts down in the background.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// let handle = client.subscriber("orders-worker").subscribe(|message| async move {
    ///     match std::str::from_utf8(message.data()) {
    ///         Ok(text) => {
    ///             println!("order {text}");
    ///             message.ack();
    ///         }
    ///         Err(_) => message.nack(),
    ///     }
    /// });
    /// // Resolves on a fatal error such as a deleted subscription.
    /// handle.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe<H, F>(&self, handler: H) -> SubscriptionHandle
    where
        H: Fn(ReceivedMessage) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |message| Box::pin(handler(message)));
        let (stop, done) = self.start(Consumer::Handler(handler));
        SubscriptionHandle {
            subscription: self.shared.subscription.clone(),
            stop,
            done,
        }
    }

    /// Starts receiving by StreamingPull and gives the messages as a
    /// [`Stream`], beside the callback API of [`Self::subscribe`]: the same
    /// leases (extended until settled), flow control (at most
    /// `max_outstanding_messages` yielded and not yet settled; the stream
    /// waits for settles beyond), ordering keys (a key's next message is
    /// yielded once the previous one is settled) and tracing. A message's
    /// `process` span starts when the stream yields it and ends when it is
    /// acked or nacked (or dropped); enter it, or instrument work with it,
    /// through [`ReceivedMessage::process_span`].
    ///
    /// The stream ends after a fatal error (yielded as its last item).
    /// Dropping it shuts the session down in the background: messages
    /// yielded and not yet settled are nacked, and their later ack is
    /// ignored. [`MessageStream::shutdown`] does the same and waits.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// use futures::StreamExt;
    /// let mut messages = client.subscriber("orders-worker").stream();
    /// while let Some(message) = messages.next().await {
    ///     let message = message?;
    ///     println!("{:?}", message.data());
    ///     message.ack();
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(&self) -> MessageStream {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (stop, done) = self.start(Consumer::Stream(std::sync::Mutex::new(Some(sender))));
        let shared = self.shared.clone();
        let messages =
            futures::stream::unfold(Some((receiver, done.clone(), shared)), |state| async move {
                let (mut receiver, mut done, shared) = state?;
                loop {
                    match receiver.recv().await {
                        // Settled meanwhile (nacked by a shutdown): skip it.
                        Some(pending) if pending.delivery.is_settled() => {}
                        Some(pending) => {
                            let process = dispatcher::start_process(&shared, &pending);
                            let message = ReceivedMessage::new(pending, process);
                            return Some((Ok(message), Some((receiver, done, shared))));
                        }
                        None => {
                            return match session_outcome(&mut done).await {
                                Ok(()) => None,
                                Err(error) => Some((Err(error), None)),
                            };
                        }
                    }
                }
            })
            .boxed();
        MessageStream {
            subscription: self.shared.subscription.clone(),
            messages,
            stop,
            done,
        }
    }

    /// Starts a session delivering to `consumer`: its stop switch and its
    /// outcome.
    fn start(&self, consumer: Consumer) -> (watch::Sender<bool>, watch::Receiver<Outcome>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(None);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let outcome = session::run(shared, consumer, stop_rx).await;
            done_tx.send_replace(Some(outcome));
        });
        (stop_tx, done_rx)
    }

    /// Pulls up to `max_messages` (1-1000) with a unary Pull, waiting up to
    /// [`SubscriberConfig::pull_timeout`] for the first one; answers with
    /// none when nothing arrived by then. The messages are settled like
    /// streamed ones (batched unary Acknowledge/ModifyAckDeadline) but get no
    /// lease extension: ack them within the subscription's ack deadline or
    /// extend it with [`ReceivedMessage::modify_ack_deadline`].
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// let subscriber = client.subscriber("orders-worker");
    /// for message in subscriber.pull(10).await? {
    ///     println!("{}", message.message_id());
    ///     message.ack();
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pull(&self, max_messages: usize) -> Result<Vec<ReceivedMessage>> {
        let shared = &self.shared;
        let max_messages = i32::try_from(max_messages.clamp(1, 1000)).unwrap_or(1000);
        let timeout = shared.config.pull_timeout.max(Duration::from_millis(100));
        let subscription = shared.subscription.clone();
        // The server answers shortly before the pull's deadline; allow for
        // the trip back, so a waiting pull is not cut by its own attempt
        // timeout.
        let settings = shared.client.retry_settings(CallFamily::Pull);
        let settings = settings.clone().with_attempt_timeout(
            settings
                .attempt_timeout()
                .max(timeout + Duration::from_secs(5)),
        );
        let response = with_retry(&settings, |_| {
            let subscription = subscription.clone();
            async move {
                #[allow(deprecated)]
                let request = PullRequest {
                    subscription: subscription.clone(),
                    return_immediately: false,
                    max_messages,
                };
                let mut request = shared.client.request(request, &subscription).await?;
                request.set_timeout(timeout);
                let limit = timeout + Duration::from_secs(5);
                match tokio::time::timeout(limit, shared.client.subscriber_stub().pull(request))
                    .await
                {
                    Ok(result) => result,
                    // No answer in time: nothing pulled (not retried).
                    Err(_) => Ok(tonic::Response::new(PullResponse::default())),
                }
            }
        })
        .await;
        let received = match response {
            Ok(response) => response.into_inner().received_messages,
            // The caller's deadline passed before the server answered: no
            // messages, as the official clients report it.
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => Vec::new(),
            Err(status) => return Err(SubscribeError::Rpc(status)),
        };
        if received.is_empty() {
            return Ok(Vec::new());
        }
        let acker = self
            .pull_acker
            .get_or_init(|| acker::spawn(shared.clone()))
            .clone();
        Ok(received
            .into_iter()
            .map(|received| {
                let pending =
                    message::Pending::new(shared, received.into(), false, acker.clone(), None);
                ReceivedMessage::new(pending, None)
            })
            .collect())
    }
}

/// A running StreamingPull session of [`Subscriber::subscribe`]. Dropping it
/// shuts the session down in the background (as [`Self::shutdown`] does,
/// without waiting).
///
/// Do not await [`Self::shutdown`] from inside a handler of the same
/// session with [`ShutdownBehavior::WaitForHandlers`]: it would wait for
/// itself.
///
/// ```no_run
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
/// let handle = client.subscriber("orders-worker").subscribe(|m| async move { m.ack() });
/// tokio::signal::ctrl_c().await.ok();
/// handle.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the handle stops the subscription"]
pub struct SubscriptionHandle {
    subscription: String,
    stop: watch::Sender<bool>,
    done: watch::Receiver<Outcome>,
}

impl std::fmt::Debug for SubscriptionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionHandle")
            .field("subscription", &self.subscription)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl SubscriptionHandle {
    /// The subscription's full name.
    ///
    /// ```no_run
    /// # fn f(handle: baton_client::SubscriptionHandle) {
    /// println!("receiving from {}", handle.subscription());
    /// # }
    /// ```
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Whether the session has ended (after a fatal error or a shutdown).
    ///
    /// ```no_run
    /// # fn f(handle: baton_client::SubscriptionHandle) {
    /// if handle.is_finished() {
    ///     eprintln!("the subscription stopped; see handle.wait()");
    /// }
    /// # }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.done.borrow().is_some()
    }

    /// Resolves once the session has ended: with the error when the stream
    /// failed for good (for example NOT_FOUND for a deleted subscription or
    /// PERMISSION_DENIED; transient errors are retried), with `Ok` after a
    /// shutdown. Outstanding messages are nacked or flushed first, as on
    /// shutdown.
    ///
    /// The future does not borrow the handle, so it can race
    /// [`Self::shutdown`] in a `select!`:
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// let handle = client.subscriber("orders-worker").subscribe(|m| async move { m.ack() });
    /// let failed = handle.wait();
    /// tokio::select! {
    ///     result = failed => result?,
    ///     _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => handle.shutdown().await?,
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let mut done = self.done.clone();
        async move { session_outcome(&mut done).await }
    }

    /// Stops the session gracefully and waits until it has: no new messages
    /// are accepted, messages not yet handed to a handler are nacked,
    /// running handlers are awaited or their messages nacked (per
    /// [`SubscriberConfig::shutdown`]), and every pending ack, nack and
    /// modack is sent (with retries) before this returns. Returns the fatal
    /// error if the session had already failed.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// let handle = client.subscriber("orders-worker").subscribe(|m| async move { m.ack() });
    /// handle.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(self) -> Result<()> {
        self.stop.send_replace(true);
        self.wait().await
    }
}

impl Drop for SubscriptionHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Waits for a session's end: `Ok` after a shutdown, its error when it
/// failed for good.
async fn session_outcome(done: &mut watch::Receiver<Outcome>) -> Result<()> {
    let outcome = match done.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        // The session task is gone without a word (it panicked).
        Err(_) => return Err(SubscribeError::Shutdown),
    };
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(status)) => Err(SubscribeError::Rpc(status)),
        None => Err(SubscribeError::Shutdown),
    }
}

/// The messages of a StreamingPull session started by
/// [`Subscriber::stream`]; each item is a message or, last, the error that
/// ended the session. Dropping it shuts the session down in the background.
#[must_use = "streams do nothing unless polled; dropping it stops the subscription"]
pub struct MessageStream {
    subscription: String,
    messages: BoxStream<'static, Result<ReceivedMessage>>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<Outcome>,
}

impl std::fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream")
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl MessageStream {
    /// The subscription's full name.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Stops the session and waits until it has ended: messages yielded and
    /// not yet settled are nacked and every pending ack is sent first.
    /// Returns the fatal error if the session had already failed.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::SubscribeError> {
    /// use futures::StreamExt;
    /// let mut messages = client.subscriber("orders-worker").stream();
    /// if let Some(Ok(message)) = messages.next().await {
    ///     message.ack();
    /// }
    /// messages.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(self) -> Result<()> {
        self.stop.send_replace(true);
        let mut done = self.done.clone();
        session_outcome(&mut done).await
    }
}

impl Stream for MessageStream {
    type Item = Result<ReceivedMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.messages.poll_next_unpin(cx)
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
