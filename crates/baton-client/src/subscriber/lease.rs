//! Leases: the ack deadline the client asks for (the 99th percentile of
//! observed ack latencies within the configured bounds, as the official
//! clients do) and when an outstanding message's deadline is extended or
//! given up.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::delivery::Delivery;

/// How often outstanding leases are looked at.
pub(crate) const LEASE_TICK: Duration = Duration::from_millis(500);

/// Ack latencies in whole seconds (0-600).
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; 601],
            total: 0,
        }
    }
}

impl Histogram {
    /// Records how long a message took from receipt to ack or nack.
    pub fn record(&mut self, latency: Duration) {
        let seconds = latency.as_secs() + u64::from(latency.subsec_nanos() > 0);
        let index = usize::try_from(seconds.min(600)).unwrap_or(600);
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
            self.total += 1;
        }
    }

    /// The smallest latency (seconds) at or under which `percent` of the
    /// recorded ones are; `None` before the first record.
    pub fn percentile(&self, percent: u64) -> Option<i32> {
        if self.total == 0 {
            return None;
        }
        let wanted = (self.total * percent).div_ceil(100).max(1);
        let mut seen = 0;
        for (seconds, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return i32::try_from(seconds).ok();
            }
        }
        Some(600)
    }

    /// The ack deadline to ask for: the 99th percentile within `bounds`.
    pub fn deadline(&self, (min, max): (i32, i32)) -> i32 {
        self.percentile(99).unwrap_or(min).clamp(min, max)
    }
}

/// The lease of one outstanding message.
pub(crate) struct Lease {
    pub delivery: Arc<Delivery>,
    /// Released by flow control (counts as in flight).
    pub dispatched: bool,
    pub clock: LeaseClock,
}

/// When a lease ends and may be extended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseClock {
    /// When the server's lease ends, as far as the client knows.
    pub expires_at: Instant,
    /// No extension after this (`max_lease_extension` after receipt).
    pub give_up_at: Instant,
    /// A deadline the user set with `modify_ack_deadline`, used for later
    /// extensions instead of the subscriber's.
    pub custom_seconds: Option<i32>,
}

/// What to do with a lease now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseAction {
    /// Nothing yet.
    Keep,
    /// Send a modack with this deadline.
    Extend(i32),
    /// The lease ran out for good: forget the message.
    Expire,
}

/// How long before a deadline its extension is sent: a quarter of it, at
/// least 2 s (ack batching and the RPC must fit), at most half of it.
pub(crate) fn extension_margin(seconds: i32) -> Duration {
    let deadline = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    (deadline / 4).max(Duration::from_secs(2)).min(deadline / 2)
}

impl LeaseClock {
    pub fn action(&self, now: Instant, deadline_seconds: i32) -> LeaseAction {
        if now >= self.give_up_at {
            return if now >= self.expires_at {
                LeaseAction::Expire
            } else {
                LeaseAction::Keep
            };
        }
        let seconds = self.custom_seconds.unwrap_or(deadline_seconds);
        if seconds <= 0 {
            return LeaseAction::Keep;
        }
        if self.expires_at <= now + extension_margin(seconds) {
            LeaseAction::Extend(seconds)
        } else {
            LeaseAction::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_latencies() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(99), None);
        assert_eq!(h.deadline((10, 600)), 10);
        for _ in 0..98 {
            h.record(Duration::from_millis(300));
        }
        h.record(Duration::from_secs(42));
        h.record(Duration::from_secs(5000));
        assert_eq!(h.percentile(50), Some(1));
        assert_eq!(h.percentile(99), Some(42));
        assert_eq!(h.percentile(100), Some(600));
        // Clamped to the bounds.
        assert_eq!(h.deadline((10, 600)), 42);
        assert_eq!(h.deadline((60, 600)), 60);
        assert_eq!(h.deadline((10, 30)), 30);
    }

    #[test]
    fn margins() {
        assert_eq!(extension_margin(10), Duration::from_millis(2500));
        assert_eq!(extension_margin(600), Duration::from_secs(150));
        assert_eq!(extension_margin(3), Duration::from_millis(1500));
        assert_eq!(extension_margin(0), Duration::ZERO);
    }

    #[test]
    fn extend_before_the_deadline_until_the_maximum_then_expire() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut clock = LeaseClock {
            expires_at: at(10_000),
            give_up_at: at(25_000),
            custom_seconds: None,
        };
        assert_eq!(clock.action(at(0), 10), LeaseAction::Keep);
        assert_eq!(clock.action(at(7_000), 10), LeaseAction::Keep);
        assert_eq!(clock.action(at(7_600), 10), LeaseAction::Extend(10));
        clock.expires_at = at(17_600);
        assert_eq!(clock.action(at(15_200), 10), LeaseAction::Extend(10));
        clock.expires_at = at(25_200);
        // Past the maximum extension: no more modacks; expire with the lease.
        assert_eq!(clock.action(at(25_000), 10), LeaseAction::Keep);
        assert_eq!(clock.action(at(25_200), 10), LeaseAction::Expire);
        // A user deadline replaces the subscriber's.
        let clock = LeaseClock {
            expires_at: at(60_000),
            give_up_at: at(3_600_000),
            custom_seconds: Some(60),
        };
        assert_eq!(clock.action(at(40_000), 10), LeaseAction::Keep);
        assert_eq!(clock.action(at(45_000), 10), LeaseAction::Extend(60));
        // A deadline of 0 gave the message back: never extended.
        let clock = LeaseClock {
            expires_at: at(0),
            give_up_at: at(0),
            custom_seconds: Some(0),
        };
        assert_eq!(clock.action(at(0), 10), LeaseAction::Expire);
    }
}
