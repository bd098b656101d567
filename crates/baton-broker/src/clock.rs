//! The broker's sense of time.
//!
//! Two clocks matter. The monotonic one measures lease deadlines, retry
//! backoffs and pull waits; it is always Tokio's clock, so the broker's
//! timers and every `tokio::time::sleep` agree with it, and a test that pauses
//! Tokio's time (`#[tokio::test(start_paused = true)]`) moves all of them
//! together with `tokio::time::advance`. The wall clock stamps publish times
//! and snapshot expiries and answers seeks to a time; it is what [`Clock`]
//! chooses: the system's, or one that follows Tokio's clock from a fixed
//! start, so virtual time moves publish times too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::wkt;
use tokio::time::Instant;

/// The clock a broker is given: monotonic time from Tokio, wall-clock time
/// from the system or from Tokio's (possibly virtual) clock. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: WallClock,
}

#[derive(Debug, Clone, Copy)]
enum WallClock {
    /// `SystemTime::now()`.
    System,
    /// `start` plus the Tokio time elapsed since `origin`.
    FollowsTokio { start: SystemTime, origin: Instant },
}

impl Clock {
    /// The system's wall clock: what a server runs on.
    pub fn system() -> Self {
        Self {
            wall: WallClock::System,
        }
    }

    /// A wall clock that reads `start` now and then moves with Tokio's clock,
    /// so when a test pauses and advances Tokio's time, publish times,
    /// retention and expiry move with it. Call it inside the runtime whose
    /// clock it should follow.
    pub fn virtual_time(start: SystemTime) -> Self {
        Self {
            wall: WallClock::FollowsTokio {
                start,
                origin: Instant::now(),
            },
        }
    }

    /// Monotonic now (Tokio's clock).
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Wall-clock now.
    pub fn wall(&self) -> SystemTime {
        match self.wall {
            WallClock::System => SystemTime::now(),
            WallClock::FollowsTokio { start, origin } => start + origin.elapsed(),
        }
    }

    /// One reading of both clocks, for mapping monotonic instants to wall
    /// time (see [`Reading::wall_of`]).
    pub(crate) fn read(&self) -> Reading {
        Reading {
            now: self.now(),
            wall: self.wall(),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// Both clocks read together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub now: Instant,
    pub wall: SystemTime,
}

impl Reading {
    /// Wall-clock time of the monotonic `at`: observers speak wall-clock
    /// time, the broker's timers monotonic.
    pub fn wall_of(&self, at: Instant) -> SystemTime {
        if at <= self.now {
            self.wall
                .checked_sub(self.now.saturating_duration_since(at))
                .unwrap_or(self.wall)
        } else {
            self.wall + at.saturating_duration_since(self.now)
        }
    }
}

/// A wall-clock time as a protobuf timestamp.
pub(crate) fn timestamp(time: SystemTime) -> wkt::Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    wkt::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf timestamp as wall-clock time (before the epoch: the epoch).
pub(crate) fn system_time(ts: &wkt::Timestamp) -> SystemTime {
    let secs = u64::try_from(ts.seconds).unwrap_or(0);
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// RFC 3339 in UTC with millisecond precision, as the service writes
/// publish times into dead-letter attributes.
pub(crate) fn format_rfc3339(ts: &wkt::Timestamp) -> String {
    let secs = ts.seconds;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let millis = ts.nanos / 1_000_000;
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn monotonic_instants_map_to_wall_clock_time() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let reading = Reading { now, wall };
        let second = Duration::from_secs(1);
        assert_eq!(reading.wall_of(now), wall);
        assert_eq!(reading.wall_of(now - second), wall - second);
        assert_eq!(reading.wall_of(now + second), wall + second);
    }

    #[test]
    fn rfc3339_formatting() {
        let ts = wkt::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000_000,
        };
        assert_eq!(format_rfc3339(&ts), "2023-11-14T22:13:20.123Z");
    }

    #[tokio::test(start_paused = true)]
    async fn virtual_wall_time_moves_with_tokio_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Clock::virtual_time(start);
        assert_eq!(clock.wall(), start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.wall(), start + Duration::from_secs(90));
    }

    #[test]
    fn timestamps_round_trip() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(system_time(&timestamp(time)), time);
    }
}
