//! Retrying RPCs the way the official clients do: a per-attempt timeout,
//! exponential backoff with jitter on the codes the service documents as
//! transient, and a total deadline.
//!
//! The defaults are the service's published configuration,
//! `google/pubsub/v1/pubsub_grpc_service_config.json` in googleapis (what
//! every generated client starts from), with the publish backoff of the
//! Python client's `publisher_client_config` (multiplier 4, 600 s in
//! total) and the Pull codes of its `subscriber_client_config` (INTERNAL
//! added). See [`CallFamily`] for the table.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tonic::Code;

/// The RPCs that share retry settings: each family has its own defaults
/// ([`RetrySettings::default_for`]) and can be configured with
/// [`crate::ClientConfig::with_retry`].
///
/// | family | RPCs | backoff | total | per attempt | retried on |
/// |---|---|---|---|---|---|
/// | `Publish` | Publish | 100 ms ×4 up to 60 s | 600 s | 60 s | ABORTED, CANCELLED, INTERNAL, RESOURCE_EXHAUSTED, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED |
/// | `AdminRead` | GetTopic, ListTopics, ListTopicSubscriptions, ListTopicSnapshots, CreateSubscription, GetSubscription, ListSubscriptions, Seek, GetSnapshot, ListSnapshots, GetSchema, ListSchemas, ListSchemaRevisions, ValidateSchema, ValidateMessage, GetIamPolicy, TestIamPermissions | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNKNOWN, ABORTED, UNAVAILABLE |
/// | `AdminWrite` | CreateTopic, UpdateTopic, DeleteTopic, UpdateSubscription, DeleteSubscription, ModifyPushConfig, CreateSnapshot, UpdateSnapshot, DeleteSnapshot, CreateSchema, CommitSchema, RollbackSchema, DeleteSchema, DeleteSchemaRevision, SetIamPolicy | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNAVAILABLE |
/// | `Settle` | Acknowledge, ModifyAckDeadline | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNAVAILABLE, DEADLINE_EXCEEDED |
/// | `Pull` | Pull | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNKNOWN, ABORTED, UNAVAILABLE, INTERNAL |
///
/// Sources: googleapis' `pubsub_grpc_service_config.json` (timeouts of
/// 60 s, backoff 100 ms ×1.3 up to 60 s, and the codes of the admin and
/// settle groups, where CreateSubscription and Seek sit with the reads);
/// the Python client's `publisher_client_config` (Publish ×4, 600 s) and
/// `subscriber_client_config` (Pull adds INTERNAL). Settle calls also retry
/// DEADLINE_EXCEEDED, so a hung Acknowledge that hits its per-attempt
/// timeout is sent again (acks are idempotent). StreamingPull is not a
/// family: its stream is reopened after transient errors with its own
/// backoff (100 ms ×1.3 up to 10 s) for as long as they last, as the
/// official subscribers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallFamily {
    /// Publish.
    Publish,
    /// Reads (and the idempotent CreateSubscription and Seek).
    AdminRead,
    /// Creating, updating and deleting topics; updating and deleting
    /// subscriptions.
    AdminWrite,
    /// Acknowledge and ModifyAckDeadline.
    Settle,
    /// Unary Pull.
    Pull,
}

/// When and how long a call is retried: the per-attempt timeout, the
/// backoff between attempts, the total deadline and the retried codes.
/// Start from [`RetrySettings::default_for`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use baton_client::{CallFamily, RetrySettings};
/// let settings = RetrySettings::default_for(CallFamily::Publish)
///     .with_attempt_timeout(Duration::from_secs(10))
///     .with_total_timeout(Duration::from_secs(120));
/// assert_eq!(settings.multiplier(), 4.0);
/// assert!(settings.is_retryable(tonic::Code::Unavailable));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetrySettings {
    initial_backoff: Duration,
    multiplier: f64,
    max_backoff: Duration,
    total_timeout: Duration,
    attempt_timeout: Duration,
    retryable_codes: Vec<Code>,
}

impl RetrySettings {
    /// The official defaults of `family` (see [`CallFamily`] for the table
    /// and its sources).
    pub fn default_for(family: CallFamily) -> Self {
        let admin = Self {
            initial_backoff: Duration::from_millis(100),
            multiplier: 1.3,
            max_backoff: Duration::from_secs(60),
            total_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(60),
            retryable_codes: vec![Code::Unavailable],
        };
        match family {
            CallFamily::Publish => Self {
                multiplier: 4.0,
                total_timeout: Duration::from_secs(600),
                retryable_codes: vec![
                    Code::Aborted,
                    Code::Cancelled,
                    Code::Internal,
                    Code::ResourceExhausted,
                    Code::Unknown,
                    Code::Unavailable,
                    Code::DeadlineExceeded,
                ],
                ..admin
            },
            CallFamily::AdminRead => Self {
                retryable_codes: vec![Code::Unknown, Code::Aborted, Code::Unavailable],
                ..admin
            },
            CallFamily::AdminWrite => admin,
            CallFamily::Settle => Self {
                retryable_codes: vec![Code::Unavailable, Code::DeadlineExceeded],
                ..admin
            },
            CallFamily::Pull => Self {
                retryable_codes: vec![
                    Code::Unknown,
                    Code::Aborted,
                    Code::Unavailable,
                    Code::Internal,
                ],
                ..admin
            },
        }
    }

    /// No retries: one attempt of at most `attempt_timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let once = baton_client::RetrySettings::no_retry(Duration::from_secs(5));
    /// assert!(!once.is_retryable(tonic::Code::Unavailable));
    /// ```
    pub fn no_retry(attempt_timeout: Duration) -> Self {
        Self {
            retryable_codes: Vec::new(),
            attempt_timeout,
            total_timeout: attempt_timeout,
            ..Self::default_for(CallFamily::AdminWrite)
        }
    }

    /// Delay before the first retry.
    #[must_use]
    pub fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// Growth of the delay per attempt (at least 1).
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// Longest delay between attempts.
    #[must_use]
    pub fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// Give up once this long has passed since the first attempt (the
    /// call's deadline: attempts are cut short to end by then).
    #[must_use]
    pub fn with_total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }

    /// Longest one attempt may take; an attempt without an answer by then
    /// fails with DEADLINE_EXCEEDED (retried when that code is retryable).
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The codes retried (others fail the call at once).
    #[must_use]
    pub fn with_retryable_codes(mut self, codes: impl IntoIterator<Item = Code>) -> Self {
        self.retryable_codes = codes.into_iter().collect();
        self
    }

    /// Delay before the first retry.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// Growth of the delay per attempt.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Longest delay between attempts.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The call's total deadline.
    pub fn total_timeout(&self) -> Duration {
        self.total_timeout
    }

    /// Longest one attempt may take.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The codes retried.
    pub fn retryable_codes(&self) -> &[Code] {
        &self.retryable_codes
    }

    /// Whether a failure with `code` is retried.
    pub fn is_retryable(&self, code: Code) -> bool {
        self.retryable_codes.contains(&code)
    }

    /// Backoff of StreamingPull reconnects: retried for as long as the
    /// errors are transient.
    pub(crate) fn stream_reconnect() -> Self {
        Self {
            max_backoff: Duration::from_secs(10),
            total_timeout: Duration::MAX,
            ..Self::default_for(CallFamily::AdminWrite)
        }
    }
}

/// The retry settings of every call family of one client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryTable {
    publish: RetrySettings,
    admin_read: RetrySettings,
    admin_write: RetrySettings,
    settle: RetrySettings,
    pull: RetrySettings,
}

impl Default for RetryTable {
    fn default() -> Self {
        Self {
            publish: RetrySettings::default_for(CallFamily::Publish),
            admin_read: RetrySettings::default_for(CallFamily::AdminRead),
            admin_write: RetrySettings::default_for(CallFamily::AdminWrite),
            settle: RetrySettings::default_for(CallFamily::Settle),
            pull: RetrySettings::default_for(CallFamily::Pull),
        }
    }
}

impl RetryTable {
    pub fn get(&self, family: CallFamily) -> &RetrySettings {
        match family {
            CallFamily::Publish => &self.publish,
            CallFamily::AdminRead => &self.admin_read,
            CallFamily::AdminWrite => &self.admin_write,
            CallFamily::Settle => &self.settle,
            CallFamily::Pull => &self.pull,
        }
    }

    pub fn set(&mut self, family: CallFamily, settings: RetrySettings) {
        let slot = match family {
            CallFamily::Publish => &mut self.publish,
            CallFamily::AdminRead => &mut self.admin_read,
            CallFamily::AdminWrite => &mut self.admin_write,
            CallFamily::Settle => &mut self.settle,
            CallFamily::Pull => &mut self.pull,
        };
        *slot = settings;
    }
}

/// Codes on which a StreamingPull stream is reopened rather than given up.
pub(crate) fn stream_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
    )
}

/// The exponential backoff sequence with jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    settings: RetrySettings,
    next: Duration,
}

impl Backoff {
    /// Starts a new sequence.
    pub fn new(settings: RetrySettings) -> Self {
        let next = settings.initial_backoff;
        Self { settings, next }
    }

    /// The next delay (randomised between half and all of the nominal one).
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = nominal
            .mul_f64(self.settings.multiplier)
            .min(self.settings.max_backoff);
        let low = nominal / 2;
        let spread = nominal.saturating_sub(low);
        low + spread.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.settings.initial_backoff;
    }
}

/// Runs `call` until it succeeds, fails with a code `settings` does not
/// retry, or the total deadline would pass. Each attempt gets the time it
/// may take (the per-attempt timeout, cut to what is left of the total, to
/// send as the gRPC deadline) and is abandoned with DEADLINE_EXCEEDED when
/// it takes longer.
pub(crate) async fn with_retry<T, F, Fut>(
    settings: &RetrySettings,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(settings.clone());
    loop {
        let left = settings.total_timeout.saturating_sub(started.elapsed());
        let limit = settings
            .attempt_timeout
            .min(left)
            .max(Duration::from_millis(1));
        let attempt = tokio::time::Instant::now();
        let timed_out = || {
            tonic::Status::deadline_exceeded(format!(
                "no answer within the per-attempt timeout of {limit:?}"
            ))
        };
        let status = match tokio::time::timeout(limit, call(limit)).await {
            Ok(Ok(value)) => return Ok(value),
            // tonic's own deadline (the request's `grpc-timeout`) may fire
            // first, as CANCELLED: the same timeout.
            Ok(Err(status)) if status.code() == Code::Cancelled && attempt.elapsed() >= limit => {
                timed_out()
            }
            Ok(Err(status)) => status,
            Err(_) => timed_out(),
        };
        if !settings.is_retryable(status.code()) {
            return Err(with_cause(status));
        }
        let delay = backoff.next_delay();
        if started.elapsed() + delay >= settings.total_timeout {
            return Err(with_cause(status));
        }
        tracing::debug!(code = ?status.code(), ?delay, "retrying after a transient error");
        tokio::time::sleep(delay).await;
    }
}

/// The status with the chain of its source errors in its message, so a
/// transport failure says what failed ("transport error: ... invalid peer
/// certificate: UnknownIssuer") rather than only that something did.
pub(crate) fn with_cause(status: tonic::Status) -> tonic::Status {
    let mut cause = std::error::Error::source(&status);
    if cause.is_none() {
        return status;
    }
    let mut message = status.message().to_string();
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    tonic::Status::with_details_and_metadata(
        status.code(),
        message,
        status.details().to_vec().into(),
        status.metadata().clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut backoff = Backoff::new(
            RetrySettings::default_for(CallFamily::AdminRead)
                .with_multiplier(2.0)
                .with_max_backoff(Duration::from_millis(300)),
        );
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let _ = backoff.next_delay();
        for _ in 0..5 {
            assert!(backoff.next_delay() <= Duration::from_millis(300));
        }
    }

    #[test]
    fn defaults_follow_the_service_config() {
        let publish = RetrySettings::default_for(CallFamily::Publish);
        assert_eq!(publish.initial_backoff(), Duration::from_millis(100));
        assert_eq!(publish.multiplier(), 4.0);
        assert_eq!(publish.max_backoff(), Duration::from_secs(60));
        assert_eq!(publish.total_timeout(), Duration::from_secs(600));
        assert_eq!(publish.retryable_codes().len(), 7);
        let write = RetrySettings::default_for(CallFamily::AdminWrite);
        assert_eq!(write.multiplier(), 1.3);
        assert_eq!(write.total_timeout(), Duration::from_secs(60));
        assert_eq!(write.retryable_codes(), [Code::Unavailable]);
        assert!(RetrySettings::default_for(CallFamily::Pull).is_retryable(Code::Internal));
        assert!(!RetrySettings::default_for(CallFamily::AdminRead).is_retryable(Code::Internal));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_codes_only() {
        let settings = RetrySettings::default_for(CallFamily::Publish);
        let mut calls = 0;
        let result: Result<u32, _> = with_retry(&settings, |_| {
            calls += 1;
            let attempt = calls;
            async move {
                if attempt < 3 {
                    Err(tonic::Status::unavailable("later"))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        let mut calls = 0;
        let result: Result<u32, _> = with_retry(&settings, |_| {
            calls += 1;
            async { Err(tonic::Status::not_found("gone")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::NotFound);
        assert_eq!(calls, 1);
    }

    /// A hung attempt ends at its per-attempt timeout and, when
    /// DEADLINE_EXCEEDED is retryable, is tried again; the call gives up at
    /// the total deadline.
    #[tokio::test(start_paused = true)]
    async fn hung_attempts_time_out_and_retry() {
        let settings = RetrySettings::default_for(CallFamily::Publish)
            .with_attempt_timeout(Duration::from_secs(5))
            .with_initial_backoff(Duration::from_secs(1))
            .with_multiplier(1.0)
            .with_max_backoff(Duration::from_secs(1))
            .with_total_timeout(Duration::from_secs(20));
        let started = tokio::time::Instant::now();
        let mut attempts = Vec::new();
        let result: Result<(), _> = with_retry(&settings, |limit| {
            attempts.push((started.elapsed(), limit));
            std::future::pending()
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::DeadlineExceeded);
        let starts: Vec<Duration> = attempts.iter().map(|(at, _)| *at).collect();
        // Jitter: a delay of 0.5-1 s after each 5 s attempt.
        assert_eq!(starts.len(), 4, "{starts:?}");
        assert_eq!(attempts[0].1, Duration::from_secs(5));
        // The last attempt is cut to what is left of the 20 s.
        assert!(attempts[3].1 < Duration::from_secs(5));
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        // Not retryable: one attempt of 5 s.
        let started = tokio::time::Instant::now();
        let once = RetrySettings::default_for(CallFamily::AdminWrite)
            .with_attempt_timeout(Duration::from_secs(5));
        let result: Result<(), _> = with_retry(&once, |_| std::future::pending()).await;
        assert_eq!(result.unwrap_err().code(), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
