//! Retrying RPCs the way the official clients do: exponential backoff with
//! jitter on the codes the service documents as transient.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tonic::Code;

/// Backoff and give-up settings of retried calls.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Growth of the delay per attempt.
    pub multiplier: f64,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Give up after this long in total.
    pub total_timeout: Duration,
}

impl RetrySettings {
    /// The official publisher defaults (100 ms, ×1.3 up to 60 s, 600 s total).
    pub fn publisher_default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            multiplier: 1.3,
            max_backoff: Duration::from_secs(60),
            total_timeout: Duration::from_secs(600),
        }
    }

    /// Admin and unary subscriber defaults (100 ms, ×1.3 up to 60 s, 60 s total).
    pub fn admin_default() -> Self {
        Self {
            total_timeout: Duration::from_secs(60),
            ..Self::publisher_default()
        }
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self::publisher_default()
    }
}

/// Codes the official publisher retries.
pub fn publish_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Aborted
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Unavailable
            | Code::Unknown
    )
}

/// Codes retried for idempotent admin and settle calls.
pub fn idempotent_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
}

/// Codes on which a StreamingPull stream is reopened rather than given up.
pub fn stream_retryable(code: Code) -> bool {
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

/// The exponential backoff sequence with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
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

/// Runs `call` until it succeeds, fails with a non-retryable code, or the
/// total timeout would be exceeded.
pub async fn with_retry<T, F, Fut>(
    settings: &RetrySettings,
    retryable: fn(Code) -> bool,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(settings.clone());
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) if retryable(status.code()) => {
                let delay = backoff.next_delay();
                if started.elapsed() + delay > settings.total_timeout {
                    return Err(status);
                }
                tracing::debug!(code = ?status.code(), ?delay, "retrying after a transient error");
                tokio::time::sleep(delay).await;
            }
            Err(status) => return Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut backoff = Backoff::new(RetrySettings {
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_millis(300),
            total_timeout: Duration::from_secs(1),
        });
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let _ = backoff.next_delay();
        for _ in 0..5 {
            assert!(backoff.next_delay() <= Duration::from_millis(300));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_codes_only() {
        let settings = RetrySettings::admin_default();
        let mut calls = 0;
        let result: Result<u32, _> = with_retry(&settings, publish_retryable, || {
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
        let result: Result<u32, _> = with_retry(&settings, publish_retryable, || {
            calls += 1;
            async { Err(tonic::Status::not_found("gone")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::NotFound);
        assert_eq!(calls, 1);
    }
}
