//! Summaries of measured durations, for tests that bound latencies.

use std::time::Duration;

/// Median of `samples` (the upper one of an even count); panics when empty.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
