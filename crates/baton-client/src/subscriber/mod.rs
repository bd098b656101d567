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
mod dispatcher;
mod lease;
mod message;
mod scheduler;
mod session;
mod stream;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use baton_proto::pubsub::{PullRequest, PullResponse};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::client::{Client, project_of};
use crate::error::{Error, Result};
use crate::retry::{RetrySettings, idempotent_retryable, with_retry};
use crate::telemetry::{Telemetry, TracingConfig};

pub use message::ReceivedMessage;

use acker::AckerHandle;

/// What [`SubscriptionHandle::shutdown`] does with messages whose handler is
/// already running.
///
/// ```
/// use baton_client::{ShutdownBehavior, SubscriberConfig};
/// assert_eq!(SubscriberConfig::default().shutdown, ShutdownBehavior::WaitForHandlers);
/// let config = SubscriberConfig::default().with_shutdown(ShutdownBehavior::NackImmediately);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownBehavior {
    /// Let running handlers finish (their messages' leases keep being
    /// extended meanwhile), then flush their acks and nacks. Messages that
    /// were received but not yet handed to a handler are nacked. This is the
    /// default, like `await_callbacks_on_shutdown=True` in the Python client.
    #[default]
    WaitForHandlers,
    /// Nack every outstanding message at once, including those whose handler
    /// is still running (their later ack or nack is ignored and
    /// [`ReceivedMessage::ack_with_result`] reports [`crate::AckError::Shutdown`]),
    /// and return without waiting for handlers.
    NackImmediately,
}

/// Settings of a [`Subscriber`]. `Default` gives the official clients'
/// defaults; the `with_*` methods change one setting at a time.
///
/// ```
/// use std::time::Duration;
/// use baton_client::{ShutdownBehavior, SubscriberConfig, TracingConfig};
///
/// let config = SubscriberConfig::default()
///     .with_flow_control(100, 10 * 1024 * 1024)
///     .with_max_concurrent_handlers(8)
///     .with_max_lease_extension(Duration::from_secs(600))
///     .with_shutdown(ShutdownBehavior::NackImmediately)
///     .with_tracing(TracingConfig::enabled());
/// assert_eq!(config.max_outstanding_messages, 100);
/// assert_eq!(config.min_ack_deadline, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// Most messages received and not yet acked or nacked (flow control;
    /// official default 1000, 0 means no limit). Also sent to the server in
    /// the first StreamingPull request so it stops sending beyond it.
    pub max_outstanding_messages: usize,
    /// Most bytes of messages received and not yet acked or nacked
    /// (official default 100 MiB, 0 means no limit).
    pub max_outstanding_bytes: usize,
    /// How long a message's lease is extended at most while its handler
    /// runs (official default 60 minutes); afterwards the server may
    /// redeliver it.
    pub max_lease_extension: Duration,
    /// Shortest ack deadline the client asks for (stream deadline, receipt
    /// modacks and lease extensions; official default 10 s; at least 60 s
    /// with exactly-once delivery, as in the official clients).
    pub min_ack_deadline: Duration,
    /// Longest ack deadline the client asks for (official default 600 s).
    /// Between the two, the deadline follows the 99th percentile of how long
    /// handlers took to ack.
    pub max_ack_deadline: Duration,
    /// Most handlers running at once (default 32).
    pub max_concurrent_handlers: usize,
    /// What shutdown does with running handlers.
    pub shutdown: ShutdownBehavior,
    /// OpenTelemetry tracing (off by default, as in the official clients).
    pub tracing: TracingConfig,
    /// Retries of the unary Acknowledge, ModifyAckDeadline and Pull calls.
    pub retry: RetrySettings,
    /// Longest a [`Subscriber::pull`] waits for messages before answering
    /// with none (default 10 s).
    pub pull_timeout: Duration,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            max_outstanding_messages: 1000,
            max_outstanding_bytes: 100 * 1024 * 1024,
            max_lease_extension: Duration::from_secs(60 * 60),
            min_ack_deadline: Duration::from_secs(10),
            max_ack_deadline: Duration::from_secs(600),
            max_concurrent_handlers: 32,
            shutdown: ShutdownBehavior::default(),
            tracing: TracingConfig::default(),
            retry: RetrySettings::admin_default(),
            pull_timeout: Duration::from_secs(10),
        }
    }
}

impl SubscriberConfig {
    /// Sets the flow-control limits (0 means no limit).
    ///
    /// ```
    /// let config = baton_client::SubscriberConfig::default().with_flow_control(2, 0);
    /// assert_eq!((config.max_outstanding_messages, config.max_outstanding_bytes), (2, 0));
    /// ```
    #[must_use]
    pub fn with_flow_control(mut self, max_messages: usize, max_bytes: usize) -> Self {
        self.max_outstanding_messages = max_messages;
        self.max_outstanding_bytes = max_bytes;
        self
    }

    /// Sets how long a lease is extended at most.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = baton_client::SubscriberConfig::default()
    ///     .with_max_lease_extension(Duration::from_secs(300));
    /// assert_eq!(config.max_lease_extension, Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn with_max_lease_extension(mut self, max: Duration) -> Self {
        self.max_lease_extension = max;
        self
    }

    /// Sets the bounds of the ack deadline the client asks for (each is
    /// clamped to the API's 10-600 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = baton_client::SubscriberConfig::default()
    ///     .with_ack_deadline_bounds(Duration::from_secs(30), Duration::from_secs(120));
    /// assert_eq!(config.min_ack_deadline, Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn with_ack_deadline_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ack_deadline = min;
        self.max_ack_deadline = max;
        self
    }

    /// Sets how many handlers may run at once (at least 1).
    ///
    /// ```
    /// let config = baton_client::SubscriberConfig::default().with_max_concurrent_handlers(4);
    /// assert_eq!(config.max_concurrent_handlers, 4);
    /// ```
    #[must_use]
    pub fn with_max_concurrent_handlers(mut self, handlers: usize) -> Self {
        self.max_concurrent_handlers = handlers;
        self
    }

    /// Sets what shutdown does with running handlers.
    ///
    /// ```
    /// use baton_client::{ShutdownBehavior, SubscriberConfig};
    /// let config = SubscriberConfig::default().with_shutdown(ShutdownBehavior::NackImmediately);
    /// assert_eq!(config.shutdown, ShutdownBehavior::NackImmediately);
    /// ```
    #[must_use]
    pub fn with_shutdown(mut self, behavior: ShutdownBehavior) -> Self {
        self.shutdown = behavior;
        self
    }

    /// Sets the tracing settings.
    ///
    /// ```
    /// use baton_client::{SubscriberConfig, TracingConfig};
    /// let config = SubscriberConfig::default().with_tracing(TracingConfig::enabled());
    /// assert!(config.tracing.enable_open_telemetry_tracing);
    /// ```
    #[must_use]
    pub fn with_tracing(mut self, tracing: TracingConfig) -> Self {
        self.tracing = tracing;
        self
    }

    /// Sets the retries of unary calls.
    ///
    /// ```
    /// use baton_client::{SubscriberConfig, retry::RetrySettings};
    /// let config = SubscriberConfig::default().with_retry(RetrySettings::publisher_default());
    /// assert_eq!(config.retry, RetrySettings::publisher_default());
    /// ```
    #[must_use]
    pub fn with_retry(mut self, retry: RetrySettings) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how long a unary [`Subscriber::pull`] waits for messages.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = baton_client::SubscriberConfig::default()
    ///     .with_pull_timeout(Duration::from_secs(2));
    /// assert_eq!(config.pull_timeout, Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn with_pull_timeout(mut self, timeout: Duration) -> Self {
        self.pull_timeout = timeout;
        self
    }

    /// The ack deadline bounds in whole seconds, clamped to the API's range
    /// (`exactly_once` raises the minimum to 60 s).
    pub(crate) fn deadline_bounds(&self, exactly_once: bool) -> (i32, i32) {
        let seconds = |d: Duration| i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
        let mut min = seconds(self.min_ack_deadline).clamp(10, 600);
        if exactly_once {
            min = min.max(60);
        }
        let max = seconds(self.max_ack_deadline).clamp(min, 600);
        (min, max)
    }
}

/// What every part of a subscriber shares: where to call and how.
pub(crate) struct Shared {
    pub client: Client,
    /// Full subscription name.
    pub subscription: String,
    pub config: SubscriberConfig,
    pub telemetry: Telemetry,
}

impl Shared {
    fn new(client: &Client, subscription: &str, config: SubscriberConfig) -> Self {
        let subscription = client.subscription_name(subscription);
        let project = project_of(&subscription, client.project_id());
        let telemetry = Telemetry::new(&config.tracing, project, &subscription);
        Self {
            client: client.clone(),
            subscription,
            telemetry,
            config,
        }
    }
}

/// Receives from one subscription, by StreamingPull ([`Subscriber::subscribe`])
/// or unary Pull ([`Subscriber::pull`]). Cheap to clone.
///
/// ```no_run
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
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

/// The handler as the session stores it.
pub(crate) type Handler = Arc<dyn Fn(ReceivedMessage) -> BoxFuture<'static, ()> + Send + Sync>;

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
    /// assert_eq!(subscriber.config().max_outstanding_messages, 1000);
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
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(None);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let outcome = session::run(shared, handler, stop_rx).await;
            done_tx.send_replace(Some(outcome));
        });
        SubscriptionHandle {
            subscription: self.shared.subscription.clone(),
            stop: stop_tx,
            done: done_rx,
        }
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
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
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
        let response = with_retry(&shared.config.retry, idempotent_retryable, || {
            let subscription = subscription.clone();
            async move {
                #[allow(deprecated)]
                let request = PullRequest {
                    subscription: subscription.clone(),
                    return_immediately: false,
                    max_messages,
                };
                let mut request = shared
                    .client
                    .request(request, &subscription)
                    .await
                    .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
                request.set_timeout(timeout);
                // The server answers shortly before the deadline; allow for
                // the trip back.
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
            Err(status) => return Err(Error::Rpc(status)),
        };
        if received.is_empty() {
            return Ok(Vec::new());
        }
        let acker = self
            .pull_acker
            .get_or_init(|| AckerHandle::spawn(shared.clone()))
            .clone();
        Ok(received
            .into_iter()
            .map(|received| {
                let pending = message::Pending::new(shared, received, false, acker.clone(), None);
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
/// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
/// let handle = client.subscriber("orders-worker").subscribe(|m| async move { m.ack() });
/// tokio::signal::ctrl_c().await.ok();
/// handle.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the handle stops the subscription"]
pub struct SubscriptionHandle {
    subscription: String,
    stop: watch::Sender<bool>,
    done: watch::Receiver<Option<Result<(), tonic::Status>>>,
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
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
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
        async move {
            let outcome = match done.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone(),
                // The session task is gone without a word (it panicked).
                Err(_) => return Err(Error::Shutdown),
            };
            match outcome {
                Some(Ok(())) => Ok(()),
                Some(Err(status)) => Err(Error::Rpc(status)),
                None => Err(Error::Shutdown),
            }
        }
    }

    /// Stops the session gracefully and waits until it has: no new messages
    /// are accepted, messages not yet handed to a handler are nacked,
    /// running handlers are awaited or their messages nacked (per
    /// [`SubscriberConfig::shutdown`]), and every pending ack, nack and
    /// modack is sent (with retries) before this returns. Returns the fatal
    /// error if the session had already failed.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::Error> {
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
