//! Retrying RPCs the way the official clients do: a per-attempt timeout,
//! exponential backoff with jitter on the codes the service documents as
//! transient, and a total deadline.
//!
//! The defaults are the service's published configuration,
//! `google/pubsub/v1/pubsub_grpc_service_config.json` in googleapis (what
//! every generated client starts from), with the publish backoff of the
//! Python client's `publisher_client_config` (multiplier 4, 600 s in
//! total), the Pull codes of its `subscriber_client_config` (INTERNAL
//! added) and the schema service's settings of its generated
//! `SchemaService` transport. See [`CallFamily`] for the table.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tonic::Code;

/// The RPCs that share retry settings: each family has its own defaults
/// ([`RetrySettings::default_for`]) and can be configured with
/// [`crate::ClientConfig::with_retry`]. The families are the groups of the
/// service's published configuration, so each RPC's defaults are the
/// official ones.
///
/// | family | RPCs | backoff | total | per attempt | retried on |
/// |---|---|---|---|---|---|
/// | `Publish` | Publish | 100 ms ×4 up to 60 s | 600 s | 60 s | ABORTED, CANCELLED, INTERNAL, RESOURCE_EXHAUSTED, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED |
/// | `AdminRead` | GetTopic, ListTopics, ListTopicSubscriptions, ListTopicSnapshots, CreateSubscription, GetSubscription, ListSubscriptions, Seek, GetSnapshot, ListSnapshots, GetIamPolicy | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNKNOWN, ABORTED, UNAVAILABLE |
/// | `AdminWrite` | CreateTopic, UpdateTopic, DeleteTopic, DetachSubscription, UpdateSubscription, DeleteSubscription, ModifyPushConfig, CreateSnapshot, UpdateSnapshot, DeleteSnapshot, SetIamPolicy, TestIamPermissions | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNAVAILABLE |
/// | `Schema` | every SchemaService RPC: CreateSchema, GetSchema, ListSchemas, ListSchemaRevisions, CommitSchema, RollbackSchema, DeleteSchemaRevision, DeleteSchema, ValidateSchema, ValidateMessage | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNAVAILABLE |
/// | `Settle` | Acknowledge, ModifyAckDeadline | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNAVAILABLE |
/// | `Pull` | Pull | 100 ms ×1.3 up to 60 s | 60 s | 60 s | UNKNOWN, ABORTED, UNAVAILABLE, INTERNAL |
/// | `StreamingPull` | reopening a StreamingPull stream | 100 ms ×1.3 up to 10 s | unlimited | 15 s to open | DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE, UNKNOWN, CANCELLED |
///
/// Sources: googleapis' `pubsub_grpc_service_config.json` (timeouts of
/// 60 s, backoff 100 ms ×1.3 up to 60 s, and the codes of each group);
/// the Python client's `publisher_client_config` (Publish ×4, 600 s),
/// `subscriber_client_config` (Pull adds INTERNAL) and generated
/// `SchemaService` transport (UNAVAILABLE, 60 s, for every schema RPC).
/// IAM calls on schemas use the `AdminRead`/`AdminWrite` settings of their
/// RPC, as on topics and subscriptions.
///
/// `StreamingPull` is how a subscriber's stream is reopened after it ends
/// with a transient error, as the official subscribers do: with backoff,
/// for as long as the errors last (the total), each attempt given its
/// per-attempt timeout to open. A total below unlimited ends the session
/// with the last error once reopening has failed for that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallFamily {
    /// Publish.
    Publish,
    /// Reads (and the idempotent CreateSubscription and Seek).
    AdminRead,
    /// Creating, updating and deleting topics, snapshots and IAM policies;
    /// updating, detaching and deleting subscriptions; TestIamPermissions.
    AdminWrite,
    /// Acknowledge and ModifyAckDeadline.
    Settle,
    /// Unary Pull.
    Pull,
    /// Every SchemaService RPC.
    Schema,
    /// Reopening a subscriber's StreamingPull stream.
    StreamingPull,
}

impl CallFamily {
    /// Every family, for settings that apply to all of them (a command-line
    /// tool's shorter deadlines, say): code that loops over this list
    /// covers the families added later too.
    ///
    /// ```
    /// use baton_client::{CallFamily, ClientConfig, RetrySettings};
    /// use std::time::Duration;
    /// let config = CallFamily::ALL.iter().fold(ClientConfig::new("p"), |config, &family| {
    ///     config.with_retry(family, RetrySettings::default_for(family).with_attempt_timeout(Duration::from_secs(5)))
    /// });
    /// assert_eq!(config.retry(CallFamily::Schema).attempt_timeout(), Duration::from_secs(5));
    /// ```
    pub const ALL: [CallFamily; 7] = [
        CallFamily::Publish,
        CallFamily::AdminRead,
        CallFamily::AdminWrite,
        CallFamily::Settle,
        CallFamily::Pull,
        CallFamily::Schema,
        CallFamily::StreamingPull,
    ];
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
            CallFamily::AdminWrite | CallFamily::Schema | CallFamily::Settle => admin,
            CallFamily::Pull => Self {
                retryable_codes: vec![
                    Code::Unknown,
                    Code::Aborted,
                    Code::Unavailable,
                    Code::Internal,
                ],
                ..admin
            },
            CallFamily::StreamingPull => Self {
                max_backoff: Duration::from_secs(10),
                total_timeout: Duration::MAX,
                attempt_timeout: Duration::from_secs(15),
                retryable_codes: vec![
                    Code::DeadlineExceeded,
                    Code::ResourceExhausted,
                    Code::Aborted,
                    Code::Internal,
                    Code::Unavailable,
                    Code::Unknown,
                    Code::Cancelled,
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
    /// call's deadline: attempts are cut short to end by then). For
    /// [`CallFamily::StreamingPull`], once reopening the stream has failed
    /// for this long since it was last open.
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
}

/// The retry settings of every call family of one client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryTable {
    publish: RetrySettings,
    admin_read: RetrySettings,
    admin_write: RetrySettings,
    settle: RetrySettings,
    pull: RetrySettings,
    schema: RetrySettings,
    streaming_pull: RetrySettings,
}

impl Default for RetryTable {
    fn default() -> Self {
        Self {
            publish: RetrySettings::default_for(CallFamily::Publish),
            admin_read: RetrySettings::default_for(CallFamily::AdminRead),
            admin_write: RetrySettings::default_for(CallFamily::AdminWrite),
            settle: RetrySettings::default_for(CallFamily::Settle),
            pull: RetrySettings::default_for(CallFamily::Pull),
            schema: RetrySettings::default_for(CallFamily::Schema),
            streaming_pull: RetrySettings::default_for(CallFamily::StreamingPull),
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
            CallFamily::Schema => &self.schema,
            CallFamily::StreamingPull => &self.streaming_pull,
        }
    }

    pub fn set(&mut self, family: CallFamily, settings: RetrySettings) {
        let slot = match family {
            CallFamily::Publish => &mut self.publish,
            CallFamily::AdminRead => &mut self.admin_read,
            CallFamily::AdminWrite => &mut self.admin_write,
            CallFamily::Settle => &mut self.settle,
            CallFamily::Pull => &mut self.pull,
            CallFamily::Schema => &mut self.schema,
            CallFamily::StreamingPull => &mut self.streaming_pull,
        };
        *slot = settings;
    }
}

/// The exponential backoff sequence with jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    settings: RetrySettings,
    next: Duration,
    /// When the first delay since the last success was handed out.
    failing_since: Option<tokio::time::Instant>,
}

impl Backoff {
    /// Starts a new sequence.
    pub fn new(settings: RetrySettings) -> Self {
        let next = settings.initial_backoff;
        Self {
            settings,
            next,
            failing_since: None,
        }
    }

    /// The next delay (randomised between half and all of the nominal one).
    pub fn next_delay(&mut self) -> Duration {
        self.failing_since
            .get_or_insert_with(tokio::time::Instant::now);
        let nominal = self.next;
        self.next = nominal
            .mul_f64(self.settings.multiplier)
            .min(self.settings.max_backoff);
        let low = nominal / 2;
        let spread = nominal.saturating_sub(low);
        low + spread.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Whether waiting `delay` more would go past the total timeout,
    /// counted from the first failure since the last success.
    pub fn would_exceed_total(&self, delay: Duration) -> bool {
        let failing = self
            .failing_since
            .map_or(Duration::ZERO, |since| since.elapsed());
        failing.saturating_add(delay) >= self.settings.total_timeout
    }

    /// A success that does not prove the next attempt will go well (a
    /// stream that opened): the total counts again from the next failure,
    /// but the delay keeps growing.
    pub fn mark_healthy(&mut self) {
        self.failing_since = None;
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.settings.initial_backoff;
        self.failing_since = None;
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
            return Err(status);
        }
        let delay = backoff.next_delay();
        if started.elapsed() + delay >= settings.total_timeout {
            return Err(status);
        }
        tracing::debug!(code = ?status.code(), ?delay, "retrying after a transient error");
        tokio::time::sleep(delay).await;
    }
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
        use Code::*;
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        /// (family, initial, multiplier, max backoff, total, attempt, codes)
        type Row = (
            CallFamily,
            Duration,
            f64,
            Duration,
            Duration,
            Duration,
            &'static [Code],
        );
        let table: [Row; 7] = [
            (
                CallFamily::Publish,
                ms(100),
                4.0,
                s(60),
                s(600),
                s(60),
                &[
                    Aborted,
                    Cancelled,
                    Internal,
                    ResourceExhausted,
                    Unknown,
                    Unavailable,
                    DeadlineExceeded,
                ],
            ),
            (
                CallFamily::AdminRead,
                ms(100),
                1.3,
                s(60),
                s(60),
                s(60),
                &[Unknown, Aborted, Unavailable],
            ),
            (
                CallFamily::AdminWrite,
                ms(100),
                1.3,
                s(60),
                s(60),
                s(60),
                &[Unavailable],
            ),
            (
                CallFamily::Schema,
                ms(100),
                1.3,
                s(60),
                s(60),
                s(60),
                &[Unavailable],
            ),
            (
                CallFamily::Settle,
                ms(100),
                1.3,
                s(60),
                s(60),
                s(60),
                &[Unavailable],
            ),
            (
                CallFamily::Pull,
                ms(100),
                1.3,
                s(60),
                s(60),
                s(60),
                &[Unknown, Aborted, Unavailable, Internal],
            ),
            (
                CallFamily::StreamingPull,
                ms(100),
                1.3,
                s(10),
                Duration::MAX,
                s(15),
                &[
                    DeadlineExceeded,
                    ResourceExhausted,
                    Aborted,
                    Internal,
                    Unavailable,
                    Unknown,
                    Cancelled,
                ],
            ),
        ];
        for (family, initial, multiplier, max, total, attempt, codes) in table {
            let settings = RetrySettings::default_for(family);
            assert_eq!(settings.initial_backoff(), initial, "{family:?}");
            assert_eq!(settings.multiplier(), multiplier, "{family:?}");
            assert_eq!(settings.max_backoff(), max, "{family:?}");
            assert_eq!(settings.total_timeout(), total, "{family:?}");
            assert_eq!(settings.attempt_timeout(), attempt, "{family:?}");
            assert_eq!(settings.retryable_codes(), codes, "{family:?}");
        }
    }

    /// `ALL` names every family: the match fails to compile when one is
    /// added, and its arm's index must then be in the list.
    #[test]
    fn all_lists_every_family() {
        for (index, family) in CallFamily::ALL.iter().enumerate() {
            let expected = match family {
                CallFamily::Publish => 0,
                CallFamily::AdminRead => 1,
                CallFamily::AdminWrite => 2,
                CallFamily::Settle => 3,
                CallFamily::Pull => 4,
                CallFamily::Schema => 5,
                CallFamily::StreamingPull => 6,
            };
            assert_eq!(index, expected, "{family:?}");
        }
    }

    /// A sequence gives up once its failures, counted from the first since
    /// the last success, would outlast the total.
    #[tokio::test(start_paused = true)]
    async fn backoff_counts_the_total_from_the_first_failure() {
        let mut backoff = Backoff::new(
            RetrySettings::default_for(CallFamily::StreamingPull)
                .with_total_timeout(Duration::from_secs(2)),
        );
        assert!(!backoff.would_exceed_total(Duration::from_secs(1)));
        let _ = backoff.next_delay();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(!backoff.would_exceed_total(Duration::from_millis(400)));
        assert!(backoff.would_exceed_total(Duration::from_millis(500)));
        backoff.reset();
        assert!(!backoff.would_exceed_total(Duration::from_millis(1_900)));
        // Marked healthy: the count starts again, the delay does not.
        let _ = backoff.next_delay();
        let grown = backoff.next_delay();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(backoff.would_exceed_total(Duration::ZERO));
        backoff.mark_healthy();
        assert!(!backoff.would_exceed_total(Duration::from_millis(1_900)));
        assert!(backoff.next_delay() >= grown / 2);
        let unlimited = Backoff::new(RetrySettings::default_for(CallFamily::StreamingPull));
        assert!(!unlimited.would_exceed_total(Duration::from_secs(3_600)));
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
