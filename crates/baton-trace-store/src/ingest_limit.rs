//! A budget of spans per second for the OTLP trace receivers, so that a
//! flood of spans cannot take the CPU the Pub/Sub traffic needs: exports
//! beyond it are refused the way OTLP expects (gRPC `RESOURCE_EXHAUSTED` with
//! `RetryInfo`, HTTP 429 with `Retry-After`), and OTLP exporters retry them
//! later. A token bucket: the budget refills continuously and holds half a
//! second's worth, so an SDK's batches (512 spans by default) pass whole
//! while a flood cannot bank more than that.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How many seconds of budget a burst may use at once.
const BURST_SECONDS: f64 = 0.5;

/// The shortest retry delay asked of a refused exporter: decoding a refused
/// export costs nearly what storing it would, so exporters over the budget
/// are told to come back no sooner than this.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// The spans-per-second budget of the OTLP trace receivers. Time is Tokio's,
/// so tests drive it on paused time.
#[derive(Debug)]
pub struct IngestLimit {
    per_second: f64,
    capacity: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Spans that may be taken now; negative after a request larger than
    /// the burst (it was let through, and the debt is paid back first).
    tokens: f64,
    refilled: Instant,
}

impl IngestLimit {
    /// A budget of `spans_per_second` (at least 1).
    pub fn new(spans_per_second: u32) -> Self {
        let per_second = f64::from(spans_per_second.max(1));
        let capacity = per_second * BURST_SECONDS;
        Self {
            per_second,
            capacity,
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                refilled: Instant::now(),
            }),
        }
    }

    /// The budget, in spans per second.
    pub fn spans_per_second(&self) -> f64 {
        self.per_second
    }

    /// Takes `spans` from the budget, or says how long to wait before the
    /// request would fit (at least a second). A request larger than the whole burst passes when
    /// the bucket is full (it could never fit otherwise).
    pub fn admit(&self, spans: usize) -> Result<(), Duration> {
        #[allow(clippy::cast_precision_loss)]
        let spans = spans as f64;
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.refilled = now;
        let needed = spans.min(self.capacity);
        if bucket.tokens >= needed {
            bucket.tokens -= spans;
            Ok(())
        } else {
            let wait = (needed - bucket.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait).max(MIN_RETRY))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_and_bursts_pass_whole() {
        let limit = IngestLimit::new(400);
        // Half a second's worth at once.
        assert!(limit.admit(200).is_ok());
        // 50 spans refill in an eighth of a second; the exporter is asked
        // to wait the minimum of a second.
        let wait = limit.admit(50).unwrap_err();
        assert_eq!(wait, MIN_RETRY);
        tokio::time::advance(Duration::from_millis(125)).await;
        assert!(limit.admit(50).is_ok());
        assert!(limit.admit(1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_burst_passes_on_a_full_bucket() {
        let limit = IngestLimit::new(10);
        assert!(limit.admit(500).is_ok());
        // The debt: 495 spans, 49.5 s at 10 per second, plus the 5 needed.
        let wait = limit.admit(500).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(limit.admit(500).is_ok());
    }
}
