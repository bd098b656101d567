//! The settings of a subscriber.

use std::time::Duration;

use crate::telemetry::TracingConfig;

/// What [`SubscriptionHandle::shutdown`] does with messages whose handler is
/// already running.
///
/// ```
/// use baton_client::{ShutdownBehavior, SubscriberConfig};
/// assert_eq!(SubscriberConfig::default().shutdown(), ShutdownBehavior::WaitForHandlers);
/// let config = SubscriberConfig::default().with_shutdown(ShutdownBehavior::NackImmediately);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
/// assert_eq!(config.max_outstanding_messages(), 100);
/// assert_eq!(config.ack_deadline_bounds().0, Duration::from_secs(10));
/// ```
///
/// Acknowledge, ModifyAckDeadline and Pull retry with the client's
/// settings of [`crate::CallFamily::Settle`] and [`crate::CallFamily::Pull`],
/// and the stream is reopened with those of
/// [`crate::CallFamily::StreamingPull`]
/// ([`crate::ClientConfig::with_retry`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriberConfig {
    /// Most messages received and not yet acked or nacked (flow control;
    /// official default 1000, 0 means no limit). Also sent to the server in
    /// the first StreamingPull request so it stops sending beyond it.
    pub(crate) max_outstanding_messages: usize,
    /// Most bytes of messages received and not yet acked or nacked
    /// (official default 100 MiB, 0 means no limit).
    pub(crate) max_outstanding_bytes: usize,
    /// How long a message's lease is extended at most while its handler
    /// runs (official default 60 minutes); afterwards the server may
    /// redeliver it.
    pub(crate) max_lease_extension: Duration,
    /// Shortest ack deadline the client asks for (stream deadline, receipt
    /// modacks and lease extensions; official default 10 s; at least 60 s
    /// with exactly-once delivery, as in the official clients).
    pub(crate) min_ack_deadline: Duration,
    /// Longest ack deadline the client asks for (official default 600 s).
    /// Between the two, the deadline follows the 99th percentile of how long
    /// handlers took to ack.
    pub(crate) max_ack_deadline: Duration,
    /// Most handlers running at once (default 32).
    pub(crate) max_concurrent_handlers: usize,
    /// What shutdown does with running handlers.
    pub(crate) shutdown: ShutdownBehavior,
    /// OpenTelemetry tracing (off by default, as in the official clients).
    pub(crate) tracing: TracingConfig,
    /// Longest a [`Subscriber::pull`] waits for messages before answering
    /// with none (default 10 s).
    pub(crate) pull_timeout: Duration,
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
            pull_timeout: Duration::from_secs(10),
        }
    }
}

impl SubscriberConfig {
    /// Sets the flow-control limits (0 means no limit).
    ///
    /// ```
    /// let config = baton_client::SubscriberConfig::default().with_flow_control(2, 0);
    /// assert_eq!((config.max_outstanding_messages(), config.max_outstanding_bytes()), (2, 0));
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
    /// assert_eq!(config.max_lease_extension(), Duration::from_secs(300));
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
    /// assert_eq!(config.ack_deadline_bounds().0, Duration::from_secs(30));
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
    /// assert_eq!(config.max_concurrent_handlers(), 4);
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
    /// assert_eq!(config.shutdown(), ShutdownBehavior::NackImmediately);
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
    /// assert!(config.tracing().is_enabled());
    /// ```
    #[must_use]
    pub fn with_tracing(mut self, tracing: TracingConfig) -> Self {
        self.tracing = tracing;
        self
    }

    /// Sets how long a unary [`Subscriber::pull`] waits for messages.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = baton_client::SubscriberConfig::default()
    ///     .with_pull_timeout(Duration::from_secs(2));
    /// assert_eq!(config.pull_timeout(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn with_pull_timeout(mut self, timeout: Duration) -> Self {
        self.pull_timeout = timeout;
        self
    }

    /// Most messages received and not yet settled (0: no limit).
    pub fn max_outstanding_messages(&self) -> usize {
        self.max_outstanding_messages
    }

    /// Most bytes received and not yet settled (0: no limit).
    pub fn max_outstanding_bytes(&self) -> usize {
        self.max_outstanding_bytes
    }

    /// Longest a lease is extended.
    pub fn max_lease_extension(&self) -> Duration {
        self.max_lease_extension
    }

    /// The bounds (min, max) of the ack deadline the client asks for.
    pub fn ack_deadline_bounds(&self) -> (Duration, Duration) {
        (self.min_ack_deadline, self.max_ack_deadline)
    }

    /// Most handlers running at once.
    pub fn max_concurrent_handlers(&self) -> usize {
        self.max_concurrent_handlers
    }

    /// What shutdown does with running handlers.
    pub fn shutdown(&self) -> ShutdownBehavior {
        self.shutdown
    }

    /// Tracing settings.
    pub fn tracing(&self) -> &TracingConfig {
        &self.tracing
    }

    /// How long a unary pull waits for messages.
    pub fn pull_timeout(&self) -> Duration {
        self.pull_timeout
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
