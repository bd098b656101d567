//! What a server benchmark run is made of: its targets, its plan (how much
//! of each workload) and the results it collects per target.

use std::time::Duration;

use super::workloads::{Delivered, Latency, Streams, Throughput};

/// The project every target is used with.
pub const PROJECT: &str = "baton-bench";

/// How long a server may take to answer its first RPC: the emulator is a
/// JVM, and a durable store may load a large backlog before it listens.
pub(super) const START_LIMIT: Duration = Duration::from_secs(300);
/// How long a server may take to exit after SIGTERM.
pub(super) const STOP_LIMIT: Duration = Duration::from_secs(300);

/// A target of `--server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `baton serve --in-memory`.
    Memory,
    /// `baton serve --data-dir <fresh temporary directory>`.
    Disk,
    /// The gcloud Pub/Sub emulator.
    Emulator,
    /// The in-process tonic echo (the ceiling).
    Echo,
}

impl Target {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Memory => "Baton memory",
            Self::Disk => "Baton disk",
            Self::Emulator => "emulator",
            Self::Echo => "echo ceiling",
        }
    }

    pub(super) fn slug(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Emulator => "emulator",
            Self::Echo => "echo",
        }
    }
}

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Measured throughput rounds (after one warm-up round).
    pub rounds: usize,
    /// Messages of the warm-up round (1 KB).
    pub warmup: usize,
    /// (payload bytes, messages) of each throughput measure.
    pub sizes: Vec<(usize, usize)>,
    /// Offered rate and duration of the latency measure (1 KB messages).
    pub latency_rate: u32,
    pub latency_duration: Duration,
    /// Fan-out: subscriptions, and messages published (1 KB).
    pub fan: usize,
    pub fan_messages: usize,
    /// Many streams: streams (one subscription each), connections they are
    /// spread over, and messages published (1 KB) once all are open.
    pub streams: usize,
    pub stream_connections: usize,
    pub stream_messages: usize,
    /// Messages (1 KB) of the backlog held and restarted with.
    pub backlog: usize,
}

/// Payload bytes of the latency, fan-out, streams and backlog measures.
pub(super) const KB: usize = 1024;

impl Plan {
    pub fn new(quick: bool, backlog: Option<usize>, stream_connections: usize) -> Self {
        if quick {
            Self {
                quick,
                rounds: 1,
                warmup: 2_000,
                sizes: vec![(64, 10_000), (KB, 10_000), (64 * KB, 200)],
                latency_rate: 2_000,
                latency_duration: Duration::from_secs(3),
                fan: 10,
                fan_messages: 1_000,
                streams: 1_000,
                stream_connections,
                stream_messages: 20,
                backlog: backlog.unwrap_or(50_000),
            }
        } else {
            Self {
                quick,
                rounds: 3,
                warmup: 20_000,
                sizes: vec![(64, 100_000), (KB, 100_000), (64 * KB, 10_000)],
                latency_rate: 2_000,
                latency_duration: Duration::from_secs(10),
                fan: 10,
                fan_messages: 10_000,
                streams: 1_000,
                stream_connections,
                stream_messages: 50,
                backlog: backlog.unwrap_or(1_000_000),
            }
        }
    }
}

/// A measure's outcome: not run, failed (the error), or its value.
pub type Cell<T> = Option<Result<T, String>>;

/// Throughput over the measured rounds: median, lowest and highest of each
/// figure.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: Throughput,
    pub min: Throughput,
    pub max: Throughput,
}

impl Summary {
    pub(super) fn of(rounds: &[Throughput]) -> Self {
        let pick = |f: fn(&Throughput) -> f64, how: fn(Vec<f64>) -> f64| {
            how(rounds.iter().map(f).collect())
        };
        let min = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
        let max = |v: Vec<f64>| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
        let build = |how: fn(Vec<f64>) -> f64| Throughput {
            publish: pick(|t| t.publish, how),
            publish_mb: pick(|t| t.publish_mb, how),
            receive: pick(|t| t.receive, how),
        };
        Self {
            median: build(median),
            min: build(min),
            max: build(max),
        }
    }
}

/// The backlog measure.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    pub publish: Duration,
    pub messages: usize,
    /// RSS with the backlog held, KiB.
    pub rss_kib: Option<u64>,
}

/// The restart measure (disk store).
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// SIGTERM to exit.
    pub stop: Duration,
    /// Spawn to first answered RPC.
    pub first_rpc: Duration,
    /// Spawn to first message delivered.
    pub first_delivery: Duration,
    /// RSS after the first delivery, KiB.
    pub rss_kib: Option<u64>,
    /// Messages received by draining the backlog after the first delivery,
    /// and how long that took.
    pub drained: usize,
    pub drain: Duration,
    /// Peak RSS while draining, KiB.
    pub drain_peak_rss_kib: Option<u64>,
}

/// Everything measured on one target.
#[derive(Debug)]
pub struct Results {
    pub target: Target,
    pub startup: Cell<Duration>,
    pub idle_rss_kib: Cell<u64>,
    pub peak_rss_kib: Cell<u64>,
    /// Per payload size: the rounds' median and range.
    pub throughput: Vec<(usize, Cell<Summary>)>,
    pub latency: Cell<Latency>,
    pub fanout: Cell<Delivered>,
    pub streams: Cell<Streams>,
    pub backlog: Cell<Backlog>,
    pub restart: Cell<Restart>,
}

impl Results {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            startup: None,
            idle_rss_kib: None,
            peak_rss_kib: None,
            throughput: Vec::new(),
            latency: None,
            fanout: None,
            streams: None,
            backlog: None,
            restart: None,
        }
    }
}

/// The median of `values` (NaN when there are none).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}
