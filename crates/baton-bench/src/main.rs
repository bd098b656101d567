//! `baton-bench`: throughput of the Rust client against Google's Python
//! client, with OpenTelemetry tracing off and on, on one Baton server.
//!
//! ```text
//! cargo run --release -p baton-bench -- [--messages 50000] [--size 1024] [--rounds 3]
//!     [--endpoint HOST:PORT | --server-process]
//!     [--modes rust-off,rust-context,rust-on,py-off,py-on]
//!     [--sample-ratio 1.0]
//! cargo run --release -p baton-bench -- --auth-cost [--messages N] [--rounds R]
//! cargo run --release -p baton-bench -- --forwarding-cost [--messages N] [--rounds R]
//! cargo run --release -p baton-bench -- --span-flood [--messages N] [--rounds R]
//!     [--trace-store-bytes B] [--flood-senders S]
//! cargo run --release -p baton-bench -- --trace-search [--traces 100000] [--rounds R]
//! cargo run --release -p baton-bench -- --catalog-scale [--subscriptions 100000]
//! cargo build --release -p baton && cargo run --release -p baton-bench -- --server [--quick]
//!     [--targets memory,disk,emulator,echo] [--backlog 1000000] [--stream-connections 10]
//! ```
//!
//! `--server` measures the server rather than the client: Baton in memory,
//! Baton on disk and the gcloud emulator as separate processes, and a bare
//! tonic echo as the ceiling (see `server_bench`).
//!
//! Against one Baton server (started in-process on its own Tokio runtime, or
//! `--endpoint`), each round runs the same workload with every client mode:
//!
//! - **publish**: N messages of S bytes, each with an attribute `i`, through
//!   the batching publisher (1000 messages or 10 ms per batch), until every
//!   message id has come back;
//! - **receive+ack**: a StreamingPull subscriber (flow control 5000
//!   messages) whose handler acks, from the subscribe call until all N were
//!   received and the session shut down, which flushes the acks.
//!
//! Modes: Rust with tracing off; Rust with tracing off but every message
//! carrying an unsampled `googclient_traceparent` (`rust-context`), as a
//! traced publisher's messages do, which isolates what carrying the trace
//! context costs the client and the server from what the spans cost; Rust
//! with tracing on (an SDK tracer provider
//! with a batch span processor feeding a sink that only counts spans, so the
//! cost of making, ending and queueing every span is measured and the export
//! is free); the Python client (`tests/python/bench_e2e.py` in the interop
//! venv) with tracing off and (`--modes ...,py-on`) on, with the same kind
//! of no-op batch export. The in-process server records no broker spans
//! unless `--broker-spans`, so the overhead measured is the client's. Each
//! round uses fresh resources; rounds interleave the modes, each round
//! starting with the next mode so that none always runs first, and the report
//! gives the median (and the range) per mode, the Rust/Python ratio and the
//! tracing overhead. With both Rust modes and every message sampled, each
//! round also measures the SDK alone for the same spans (`sdk_floor`), and
//! the report compares the CPU tracing adds with it, round by round.

/// mimalloc, as `baton` itself uses: with glibc malloc, memory allocated on a
/// Tokio worker and freed on the span exporter's thread costs several times
/// more (see BENCHMARKS.md for both).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod auth_cost;
mod catalog_scale;
mod forwarding_cost;
mod python;
mod sdk_floor;
mod server_bench;
mod span_flood;
mod support;
mod trace_load;
mod trace_search;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use baton_client::{
    BatchSettings, Client, ClientConfig, Endpoint, Message, PublisherConfig, SubscriberConfig,
    SubscriptionConfig, TracingConfig,
};
use baton_trace_context::TRACEPARENT_ATTRIBUTE;
use clap::Parser;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use support::{load_average, payload, thousands, unique_prefix, verdict};

/// Targets the report checks.
const TARGET_RATIO: f64 = 5.0;
/// Most CPU tracing may add per message, as a multiple of what the SDK
/// alone needs for the same spans (`--sdk-floor`), with every message
/// sampled.
const TARGET_FLOOR_RATIO: f64 = 1.25;
/// Most throughput tracing may cost with a 1% sampler.
const TARGET_SAMPLED_LOSS_PERCENT: f64 = 5.0;
/// The trace contexts `rust-context` messages carry, one per message: valid
/// and unsampled (flags 00), with ids of their own as a traced publisher
/// writes them, written by the client's own writer. Ids that differ from
/// message to message matter: code that reads them (the server's history,
/// for one) must not be measured on a value it has seen a million times.
/// Made before the clock starts, so a round pays only for carrying them.
fn unsampled_traceparents(n: usize) -> Vec<String> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    // splitmix64: well-spread bits from a counter.
    let mix = |n: u64| {
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let options = baton_trace_context::PropagationOptions::default();
    (0..u64::try_from(n).unwrap_or(u64::MAX))
        .map(|i| {
            let trace = u128::from(mix(3 * i)) << 64 | u128::from(mix(3 * i + 1));
            let span_context = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(mix(3 * i + 2)),
                TraceFlags::NOT_SAMPLED,
                true,
                TraceState::default(),
            );
            let cx = opentelemetry::Context::new().with_remote_span_context(span_context);
            let mut attributes = std::collections::HashMap::new();
            baton_trace_context::inject(&cx, &mut attributes, &options);
            attributes.remove(TRACEPARENT_ATTRIBUTE).unwrap_or_default()
        })
        .collect()
}

#[derive(Debug, Parser)]
#[command(
    name = "baton-bench",
    about = "Rust client vs Google's Python client, tracing off and on, on one Baton server"
)]
struct Args {
    /// Use this server (host:port, plaintext) instead of one started in-process.
    #[arg(long)]
    endpoint: Option<String>,
    /// Run Baton as a process of its own (`baton serve --in-memory`, the
    /// `baton` binary next to `baton-bench`) instead of in this one, so
    /// that the CPU figures are the client's alone: what tracing costs the
    /// client, without the server's share of carrying the trace context.
    #[arg(long, conflicts_with_all = ["endpoint", "data_dir"])]
    server_process: bool,
    /// Messages per round and mode.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Measured rounds (every mode once per round); the report gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Messages of the warm-up round of each mode (0: none); default: as
    /// many as a measured round. A smaller warm-up leaves the first measured
    /// round paying for the heap's growth (page faults), which made it up
    /// to three times slower than the next.
    #[arg(long)]
    warmup: Option<usize>,
    /// Most messages per publish batch (both clients).
    #[arg(long, default_value_t = 1000)]
    batch_max_messages: usize,
    /// Subscriber flow control: most outstanding messages (both clients).
    #[arg(long, default_value_t = 5000)]
    max_outstanding: usize,
    /// Client modes to run, in this order within each round. `py-on` (the
    /// Python client with its tracing on) is slow: about a tenth of `py-off`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rust-off,rust-on,py-off"
    )]
    modes: Vec<Mode>,
    /// Let the server (in-process or `--server-process`) record its own broker spans for traced
    /// messages (Baton's default). Off by default here, so that the tracing
    /// overhead is the client's alone.
    #[arg(long)]
    broker_spans: bool,
    /// Run the in-process server on the disk store in this directory
    /// (emptied first) instead of in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Share of traces the Rust client records in `rust-on` mode
    /// (parent-based, trace-id ratio sampler; 1 records every message).
    /// Messages of unsampled traces still carry their trace context.
    #[arg(long, default_value_t = 1.0)]
    sample_ratio: f64,
    /// Only measure what the OpenTelemetry SDK alone needs for the spans of
    /// `--messages` messages (same shape, one thread, no Baton code), then exit.
    #[arg(long)]
    sdk_floor: bool,
    /// Only measure what authentication and IAM enforcement cost the
    /// server: Publish and Pull+Acknowledge throughput against a server
    /// with `--auth` and one without, interleaved, then exit.
    #[arg(long)]
    auth_cost: bool,
    /// Only measure what forwarding spans upstream costs Pub/Sub traffic
    /// (broker spans on, traced messages): no forwarding against a live
    /// upstream against one that dies after the warm-up; then the drop
    /// counter, and whether forwarding resumes when the upstream is back.
    #[arg(long)]
    forwarding_cost: bool,
    /// Only measure whether the trace store's byte bound holds under a
    /// flood of OTLP spans (memory and disk), and what the flood costs
    /// Pub/Sub traffic on a durable server, then exit.
    #[arg(long)]
    span_flood: bool,
    /// Only measure the trace store's search: fill a store with `--traces`
    /// message flows and batch RPC traces, then time representative
    /// searches (p50/p99 over `--rounds` runs, at least 20), the list API
    /// and the list page, then exit.
    #[arg(long)]
    trace_search: bool,
    /// Only measure how creating subscriptions scales on the disk store:
    /// `--subscriptions` creates from concurrent callers, the rate per tenth
    /// of the run, and the restart with that catalog, then exit.
    #[arg(long)]
    catalog_scale: bool,
    /// `--catalog-scale`: subscriptions to create.
    #[arg(long, default_value_t = 100_000)]
    subscriptions: usize,
    /// Only benchmark the server: throughput (64 B, 1 KB, 64 KB), latency
    /// at a fixed rate, fan-out, 1,000 streams, startup, restart with a
    /// backlog and RSS, against `baton serve` in memory and on disk, the
    /// gcloud emulator and a bare gRPC echo, then exit. Needs the `baton`
    /// binary of this target directory (`cargo build --release -p baton`).
    #[arg(long)]
    server: bool,
    /// `--server`: small counts and one round (about a minute).
    #[arg(long, requires = "server")]
    quick: bool,
    /// `--server`: the targets to run (always in the order memory, disk,
    /// emulator, echo).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "memory,disk,emulator,echo",
        requires = "server"
    )]
    targets: Vec<server_bench::Target>,
    /// `--server`: messages (1 KB) of the backlog held and restarted with
    /// (default 1,000,000; 50,000 with `--quick`).
    #[arg(long, requires = "server")]
    backlog: Option<usize>,
    /// `--server`: HTTP/2 connections the 1,000 streams are spread over.
    #[arg(long, default_value_t = 10, requires = "server")]
    stream_connections: usize,
    /// `--trace-search`: traces in the store.
    #[arg(long, default_value_t = 100_000)]
    traces: u64,
    /// `--span-flood`: the trace store's byte bound.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    trace_store_bytes: usize,
    /// `--span-flood`: concurrent tasks sending OTLP export requests.
    #[arg(long, default_value_t = 4)]
    flood_senders: usize,
    /// Cargo target dir holding the Python venv (`<dir>/interop-venv`,
    /// made on first use); default: the target dir of this binary.
    #[arg(long, env = "CARGO_TARGET_DIR")]
    target_dir: Option<PathBuf>,
}

/// One client mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// The Rust client, tracing off.
    RustOff,
    /// The Rust client, tracing off, each message carrying an unsampled
    /// `googclient_traceparent` as a traced publisher's messages do.
    RustContext,
    /// The Rust client, tracing on.
    RustOn,
    /// Google's Python client, tracing off.
    #[value(name = "py-off")]
    PythonOff,
    /// Google's Python client, tracing on.
    #[value(name = "py-on")]
    PythonOn,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::RustOff => "Rust, tracing off",
            Self::RustContext => "Rust, off + context",
            Self::RustOn => "Rust, tracing on",
            Self::PythonOff => "Python, tracing off",
            Self::PythonOn => "Python, tracing on",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::RustOff => "rust-off",
            Self::RustContext => "rust-context",
            Self::RustOn => "rust-on",
            Self::PythonOff => "py-off",
            Self::PythonOn => "py-on",
        }
    }
}

/// Messages/s of one round.
#[derive(Debug, Clone, Copy)]
struct Rates {
    publish: f64,
    receive: f64,
}

/// CPU this process used in a phase, in cores (CPU time / wall time): the
/// Rust client plus, when in-process, the server.
#[derive(Debug, Clone, Copy, Default)]
struct Cores {
    publish: Option<f64>,
    receive: Option<f64>,
    /// The same for the server, when it runs as a process of its own.
    server_publish: Option<f64>,
    server_receive: Option<f64>,
}

/// User + system CPU time so far (all threads) of this process, or of
/// process `pid`, from `/proc/<pid>/stat` (in clock ticks of 10 ms).
fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU time of this process and of the server process `server` (when
/// there is one), read together.
#[derive(Debug, Clone, Copy)]
struct CpuMark {
    client: Option<Duration>,
    server: Option<Duration>,
    server_pid: Option<u32>,
}

impl CpuMark {
    fn now(server_pid: Option<u32>) -> Self {
        Self {
            client: process_cpu(None),
            server: server_pid.and_then(|pid| process_cpu(Some(pid))),
            server_pid,
        }
    }

    /// Cores used since this mark over `wall`: (this process, the server).
    fn cores(self, wall: Duration) -> (Option<f64>, Option<f64>) {
        let used = |before: Option<Duration>, now: Option<Duration>| {
            let used = now?.checked_sub(before?)?;
            Some(used.as_secs_f64() / wall.as_secs_f64())
        };
        let later = Self::now(self.server_pid);
        (
            used(self.client, later.client),
            used(self.server, later.server),
        )
    }
}

/// A span exporter that only counts: the export costs nothing, so what the
/// benchmark sees is the cost of the spans themselves.
#[derive(Debug, Clone, Default)]
struct CountingSink(Arc<AtomicU64>);

impl SpanExporter for CountingSink {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.fetch_add(
            u64::try_from(batch.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

/// The tracer provider of the tracing-on mode.
struct Telemetry {
    provider: SdkTracerProvider,
    exported: Arc<AtomicU64>,
}

impl Telemetry {
    fn new(sample_ratio: f64) -> Self {
        let sink = CountingSink::default();
        let exported = sink.0.clone();
        let processor = BatchSpanProcessor::builder(sink)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(65_536)
                    .with_max_export_batch_size(512)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                sample_ratio,
            ))))
            .build();
        Self { provider, exported }
    }

    fn config(&self) -> TracingConfig {
        TracingConfig::enabled().with_tracer_provider(Arc::new(self.provider.clone()))
    }

    /// Flushes the batch processor; the spans exported so far.
    async fn flushed_count(&self) -> u64 {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        self.exported.load(Ordering::Relaxed)
    }
}

/// Baton on a Tokio runtime of its own (as if another process), stopped on drop.
struct InProcessServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessServer {
    fn start(broker_spans: bool, data_dir: Option<PathBuf>) -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("baton-server".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("baton-server")
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("server runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
                    let mut config = baton_server::ServerConfig::new(addr);
                    config.broker_spans = broker_spans;
                    config.data_dir = data_dir;
                    match baton_server::start(config).await {
                        Ok(server) => {
                            let _ = ready_tx.send(Ok(server.local_addr()));
                            let _ = stop_rx.await;
                            let _ = server.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!("starting Baton: {e:?}")));
                        }
                    }
                });
            })?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("Baton did not start within 30 s")??;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One Rust round: publish `n` messages, then receive and ack them all;
/// `server_pid` is the server's process, whose CPU is read too.
#[allow(clippy::too_many_arguments)]
async fn rust_round(
    client: &Client,
    args: &Args,
    prefix: &str,
    n: usize,
    tracing: TracingConfig,
    spans: Option<&SdkTracerProvider>,
    carry_context: bool,
    server_pid: Option<u32>,
) -> Result<(Rates, Cores)> {
    // The batch processor's thread takes spans after the phase that made
    // them: drain it before reading the CPU, so that a phase pays for all
    // of its spans (the rates are taken before, without the drain).
    let drained = async || {
        if let Some(provider) = spans {
            let provider = provider.clone();
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    };
    let topic = format!("{prefix}-topic");
    let sub = format!("{prefix}-sub");
    client.create_topic(&topic).await?;
    client
        .create_subscription(
            SubscriptionConfig::new(&sub, &topic).with_ack_deadline(Duration::from_secs(60)),
        )
        .await?;
    let data = payload(args.size);

    // Publish.
    let publisher = client.publisher_with(
        &topic,
        PublisherConfig::default()
            .with_batching(
                BatchSettings::default()
                    .with_max_messages(args.batch_max_messages)
                    .with_max_bytes(9_000_000)
                    .with_max_delay(Duration::from_millis(10)),
            )
            .with_tracing(tracing.clone()),
    );
    let contexts = if carry_context {
        unsampled_traceparents(n)
    } else {
        Vec::new()
    };
    let cpu = CpuMark::now(server_pid);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let mut message = Message::new(data.clone()).with_attribute("i", i.to_string());
        if let Some(context) = contexts.get(i) {
            message = message.with_attribute(TRACEPARENT_ATTRIBUTE, context.as_str());
        }
        handles.push(publisher.publish(message));
    }
    let mut ids = Vec::with_capacity(n);
    for handle in handles {
        ids.push(handle.await?);
    }
    let publish_time = started.elapsed();
    drained().await;
    let publish_cores = cpu.cores(publish_time);
    publisher.shutdown().await;
    ensure!(
        ids.iter().collect::<HashSet<_>>().len() == n,
        "publish ids are not distinct"
    );

    // Receive + ack.
    let seen: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let distinct = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(tokio::sync::Notify::new());
    let subscriber = client.subscriber_with(
        &sub,
        SubscriberConfig::default()
            .with_flow_control(args.max_outstanding, 500 * 1024 * 1024)
            .with_tracing(tracing),
    );
    let cpu = CpuMark::now(server_pid);
    let started = Instant::now();
    let handle = subscriber.subscribe({
        let (seen, distinct, all_in) = (seen.clone(), distinct.clone(), all_in.clone());
        move |message| {
            let (seen, distinct, all_in) = (seen.clone(), distinct.clone(), all_in.clone());
            async move {
                let index = message
                    .attributes()
                    .get("i")
                    .and_then(|i| i.parse::<usize>().ok());
                message.ack();
                if let Some(flag) = index.and_then(|i| seen.get(i))
                    && !flag.swap(true, Ordering::AcqRel)
                    && distinct.fetch_add(1, Ordering::AcqRel) + 1 == seen.len()
                {
                    all_in.notify_one();
                }
            }
        }
    });
    let limit = Duration::from_secs(60) + Duration::from_millis(u64::try_from(n).unwrap_or(0));
    let complete = tokio::time::timeout(limit, all_in.notified()).await.is_ok();
    handle.shutdown().await?;
    let receive_time = started.elapsed();
    drained().await;
    let receive_cores = cpu.cores(receive_time);
    ensure!(
        complete,
        "received {} of {n} messages within {limit:?}",
        distinct.load(Ordering::Acquire)
    );
    client.delete_subscription(&sub).await?;
    client.delete_topic(&topic).await?;

    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    Ok((
        Rates {
            publish: n / publish_time.as_secs_f64(),
            receive: n / receive_time.as_secs_f64(),
        },
        Cores {
            publish: publish_cores.0,
            receive: receive_cores.0,
            server_publish: publish_cores.1,
            server_receive: receive_cores.1,
        },
    ))
}

/// One Python round: `bench_e2e.py` against `host`.
async fn python_round(
    python: &std::path::Path,
    host: &str,
    args: &Args,
    prefix: &str,
    n: usize,
    tracing: bool,
) -> Result<Rates> {
    let (n_text, size, batch, outstanding) = (
        n.to_string(),
        args.size.to_string(),
        args.batch_max_messages.to_string(),
        args.max_outstanding.to_string(),
    );
    let mut extra = vec![
        "--messages",
        &n_text,
        "--size",
        &size,
        "--batch-max-messages",
        &batch,
        "--max-outstanding",
        &outstanding,
    ];
    if tracing {
        extra.push("--tracing");
    }
    let timeout = Duration::from_secs(120) + Duration::from_millis(u64::try_from(n).unwrap_or(0));
    let result = python::bench_e2e(python, host, prefix, timeout, &extra).await?;
    let r = &result;
    ensure!(
        r["complete"] == true,
        "the Python client received {} of {n} messages",
        r["received"]
    );
    let rate = |key: &str| {
        r[key]
            .as_f64()
            .with_context(|| format!("no {key} in bench_e2e.py's result {r}"))
    };
    Ok(Rates {
        publish: rate("publish_mps")?,
        receive: rate("receive_ack_mps")?,
    })
}

/// `<target>/tmp`, the form the interop harness locates the venv from.
fn target_tmp(args: &Args) -> Result<PathBuf> {
    let target = match &args.target_dir {
        Some(dir) => dir.clone(),
        None => {
            // <target>/<profile>/baton-bench
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(std::path::Path::parent)
                .map(std::path::Path::to_path_buf)
                .context("cannot find the target dir from the executable's path")?
        }
    };
    Ok(target.join("tmp"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// The medians of `publish` and `receive`; `None` when either is empty.
fn medians_of(publish: &[f64], receive: &[f64]) -> Option<(f64, f64)> {
    if publish.is_empty() || receive.is_empty() {
        return None;
    }
    Some((median(&mut publish.to_vec()), median(&mut receive.to_vec())))
}

/// Rates of one mode over all rounds.
#[derive(Debug, Default)]
struct Series {
    publish: Vec<f64>,
    receive: Vec<f64>,
    publish_cores: Vec<f64>,
    receive_cores: Vec<f64>,
    /// CPU microseconds per message (cores used / messages per second),
    /// per round: steadier than the rates when the machine is busy.
    publish_cpu_us: Vec<f64>,
    receive_cpu_us: Vec<f64>,
    /// The same for the server, when it runs as a process of its own.
    server_publish_cpu_us: Vec<f64>,
    server_receive_cpu_us: Vec<f64>,
}

impl Series {
    fn push(&mut self, rates: Rates, cores: Cores) {
        self.publish.push(rates.publish);
        self.receive.push(rates.receive);
        self.publish_cores.extend(cores.publish);
        self.receive_cores.extend(cores.receive);
        let per_message = |cores: f64, rate: f64| cores / rate * 1e6;
        self.publish_cpu_us
            .extend(cores.publish.map(|c| per_message(c, rates.publish)));
        self.receive_cpu_us
            .extend(cores.receive.map(|c| per_message(c, rates.receive)));
        self.server_publish_cpu_us
            .extend(cores.server_publish.map(|c| per_message(c, rates.publish)));
        self.server_receive_cpu_us
            .extend(cores.server_receive.map(|c| per_message(c, rates.receive)));
    }

    /// Median CPU microseconds per message of the server process:
    /// (publish, receive+ack).
    fn server_cpu_per_message(&self) -> Option<(f64, f64)> {
        medians_of(&self.server_publish_cpu_us, &self.server_receive_cpu_us)
    }

    /// Median CPU microseconds per message: (publish, receive+ack).
    fn cpu_per_message(&self) -> Option<(f64, f64)> {
        medians_of(&self.publish_cpu_us, &self.receive_cpu_us)
    }

    /// The median over rounds of each round's throughput loss against
    /// `base` in the same round (publish, receive+ack), in percent: the
    /// machine's speed drifts between rounds, and pairing the modes of one
    /// round cancels what the drift does to both.
    fn paired_loss(&self, base: &Series) -> Option<(f64, f64)> {
        let losses = |base: &[f64], this: &[f64]| -> Vec<f64> {
            base.iter()
                .zip(this)
                .map(|(base, this)| overhead(*base, *this))
                .collect()
        };
        let publish = losses(&base.publish, &self.publish);
        let receive = losses(&base.receive, &self.receive);
        if publish.is_empty() || receive.is_empty() {
            return None;
        }
        Some((median(&mut publish.clone()), median(&mut receive.clone())))
    }

    fn medians(&self) -> Rates {
        Rates {
            publish: median(&mut self.publish.clone()),
            receive: median(&mut self.receive.clone()),
        }
    }

    fn range(values: &[f64]) -> String {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{}-{}", thousands(min), thousands(max))
    }
}

/// Per round, the CPU per message tracing added (on minus off, the two
/// modes of the same round) as a multiple of that round's SDK floor:
/// (publish, receive).
fn floor_ratios(off: &Series, on: &Series, floors: &[sdk_floor::Floor]) -> Vec<(f64, f64)> {
    floors
        .iter()
        .zip(off.publish_cpu_us.iter().zip(&off.receive_cpu_us))
        .zip(on.publish_cpu_us.iter().zip(&on.receive_cpu_us))
        .map(|((floor, (off_p, off_r)), (on_p, on_r))| {
            (
                (on_p - off_p) / floor.publish,
                (on_r - off_r) / floor.receive,
            )
        })
        .collect()
}

fn overhead(off: f64, on: f64) -> f64 {
    (off - on) / off * 100.0
}

#[allow(clippy::print_stdout)]
fn report(
    args: &Args,
    server: &str,
    modes: &[(Mode, Series)],
    (spans_per_message, floors): (Option<f64>, &[sdk_floor::Floor]),
    load: (&str, &str),
    in_process: bool,
) {
    let find = |mode| {
        modes
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, series)| series.medians())
    };
    println!();
    println!(
        "baton-bench: {} messages x {} B per round, {} round(s), medians (range); server: {server}; {} cores",
        args.messages,
        args.size,
        args.rounds,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "1-minute load average: {} at the start, {} at the end",
        load.0, load.1
    );
    println!(
        "{:<24}{:>16}{:>20}{:>20}{:>24}",
        "client", "publish msg/s", "(range)", "receive+ack msg/s", "(range)"
    );
    for (mode, series) in modes {
        let m = series.medians();
        println!(
            "{:<24}{:>16}{:>20}{:>20}{:>24}",
            mode.label(),
            thousands(m.publish),
            Series::range(&series.publish),
            thousands(m.receive),
            Series::range(&series.receive)
        );
    }
    let cpu: Vec<String> = modes
        .iter()
        .filter(|(_, series)| !series.publish_cores.is_empty())
        .map(|(mode, series)| {
            format!(
                "{}: publish {:.2}, receive+ack {:.2}",
                mode.label(),
                median(&mut series.publish_cores.clone()),
                median(&mut series.receive_cores.clone())
            )
        })
        .collect();
    if !cpu.is_empty() {
        println!(
            "CPU of this process ({}), median cores used: {}",
            if in_process {
                "Rust client + Baton"
            } else {
                "Rust client"
            },
            cpu.join("; ")
        );
    }
    let server_cpu: Vec<String> = modes
        .iter()
        .filter_map(|(mode, series)| {
            let (publish, receive) = series.server_cpu_per_message()?;
            Some(format!(
                "{}: publish {publish:.2}, receive+ack {receive:.2}",
                mode.label()
            ))
        })
        .collect();
    if !server_cpu.is_empty() {
        println!(
            "CPU per message (us) of the server process, median: {}",
            server_cpu.join("; ")
        );
    }
    println!();
    let mut checks = Vec::new();
    if let (Some(off), Some(on)) = (find(Mode::RustOff), find(Mode::RustOn)) {
        let (p, r) = (
            overhead(off.publish, on.publish),
            overhead(off.receive, on.receive),
        );
        println!(
            "Rust tracing overhead:       publish {p:5.1}%   receive+ack {r:5.1}%   (sampling {}%)",
            args.sample_ratio * 100.0
        );
        let series = |mode| modes.iter().find(|(m, _)| *m == mode).map(|(_, s)| s);
        if let Some((p, r)) = series(Mode::RustOff)
            .zip(series(Mode::RustOn))
            .and_then(|(off, on)| on.paired_loss(off))
        {
            println!(
                "  paired by round (median of each round's loss): publish {p:5.1}%   receive+ack {r:5.1}%"
            );
        }
        let cpu = |mode| {
            modes
                .iter()
                .find(|(m, _)| *m == mode)
                .and_then(|(_, series)| series.cpu_per_message())
        };
        if let (Some(off), Some(on)) = (cpu(Mode::RustOff), cpu(Mode::RustOn)) {
            let added = (on.0 - off.0, on.1 - off.1);
            println!(
                "  CPU per message (us): publish {:.2} off, {:.2} on (+{:.2}); receive+ack {:.2} off, {:.2} on (+{:.2})",
                off.0, on.0, added.0, off.1, on.1, added.1
            );
            let ratios = match (series(Mode::RustOff), series(Mode::RustOn)) {
                (Some(off), Some(on)) => floor_ratios(off, on, floors),
                _ => Vec::new(),
            };
            let server = |mode| {
                modes
                    .iter()
                    .find(|(m, _)| *m == mode)
                    .and_then(|(_, series)| series.server_cpu_per_message())
            };
            // Each round's added CPU against the floor taken in the same
            // round, then the median: the machine's load drifts between
            // rounds, and pairing cancels what it does to both.
            let ratio = (
                trace_load::median(&ratios.iter().map(|r| r.0).collect::<Vec<_>>()),
                trace_load::median(&ratios.iter().map(|r| r.1).collect::<Vec<_>>()),
            );
            if args.sample_ratio < 1.0
                && let Some(floor) = sdk_floor::Floor::median(floors)
            {
                // What the SDK alone needs for an unsampled message, against
                // all the CPU a message costs with tracing off (this client,
                // and the server when it runs as a process of its own): the
                // least any instrumentation built on the SDK adds.
                let (server_publish, server_receive) = server(Mode::RustOff).unwrap_or((0.0, 0.0));
                println!(
                    "  the SDK alone at this sampling (--sdk-floor): publish {:.2} us (the create span without the context written: {:.2} us), receive {:.2} us per message; {:.1}% ({:.1}%) and {:.1}% of a message's CPU with tracing off ({})",
                    floor.publish,
                    floor.publish_spans,
                    floor.receive,
                    floor.publish / (off.0 + server_publish) * 100.0,
                    floor.publish_spans / (off.0 + server_publish) * 100.0,
                    floor.receive / (off.1 + server_receive) * 100.0,
                    if server(Mode::RustOff).is_some() {
                        "client and server processes"
                    } else {
                        "client and server in this process"
                    },
                );
                println!(
                    "  tracing adds {:.2}x (publish) and {:.2}x (receive) that floor (median of {} rounds, each against its own floor)",
                    ratio.0,
                    ratio.1,
                    ratios.len()
                );
            } else if let Some(floor) = sdk_floor::Floor::median(floors) {
                println!(
                    "  the SDK alone for the same spans (--sdk-floor): publish {:.2} us, receive {:.2} us; tracing adds {:.2}x and {:.2}x that (median of {} rounds, each against its own floor)",
                    floor.publish,
                    floor.receive,
                    ratio.0,
                    ratio.1,
                    ratios.len()
                );
                checks.push(format!(
                    "tracing CPU <= {TARGET_FLOOR_RATIO}x the SDK floor (100% sampled): publish {}, receive+ack {}",
                    verdict(ratio.0 <= TARGET_FLOOR_RATIO),
                    verdict(ratio.1 <= TARGET_FLOOR_RATIO)
                ));
            }
        }
        if let Some(context) = cpu(Mode::RustContext) {
            println!(
                "  CPU per message (us), {}: publish {:.2}, receive+ack {:.2}",
                Mode::RustContext.slug(),
                context.0,
                context.1
            );
        }
        if let Some(context) = find(Mode::RustContext) {
            // The same loss split in two: carrying the trace context on every
            // message (which a traced publisher does whatever the sampler
            // says), and the spans on top of it.
            let parts = [
                (
                    "of which carrying googclient_traceparent",
                    (Mode::RustOff, &off),
                    (Mode::RustContext, &context),
                ),
                (
                    "and the spans on top",
                    (Mode::RustContext, &context),
                    (Mode::RustOn, &on),
                ),
            ];
            for (label, (base_mode, base), (mode, this)) in parts {
                println!(
                    "  {label} ({} against {}): publish {:5.1}%   receive+ack {:5.1}%",
                    mode.slug(),
                    base_mode.slug(),
                    overhead(base.publish, this.publish),
                    overhead(base.receive, this.receive)
                );
            }
        }
        if let Some(spans) = spans_per_message {
            println!("  ({spans:.1} spans per message exported to the counting sink)");
        }
        if (args.sample_ratio - 0.01).abs() < f64::EPSILON {
            checks.push(format!(
                "throughput loss <= {TARGET_SAMPLED_LOSS_PERCENT}% at 1% sampling: publish {}, receive+ack {}",
                verdict(p <= TARGET_SAMPLED_LOSS_PERCENT),
                verdict(r <= TARGET_SAMPLED_LOSS_PERCENT)
            ));
        }
    }
    if let (Some(off), Some(on)) = (find(Mode::PythonOff), find(Mode::PythonOn)) {
        let (p, r) = (
            overhead(off.publish, on.publish),
            overhead(off.receive, on.receive),
        );
        println!("Python tracing overhead:     publish {p:5.1}%   receive+ack {r:5.1}%");
    }
    for (rust, python, label) in [
        (Mode::RustOff, Mode::PythonOff, "tracing off"),
        (Mode::RustOn, Mode::PythonOn, "tracing on "),
    ] {
        if let (Some(rust), Some(python)) = (find(rust), find(python)) {
            let (p, r) = (rust.publish / python.publish, rust.receive / python.receive);
            println!("Rust/Python, {label}:    publish {p:5.2}x   receive+ack {r:5.2}x");
            checks.push(format!(
                "Rust >= {TARGET_RATIO}x Python ({}): publish {}, receive+ack {}",
                label.trim(),
                verdict(p >= TARGET_RATIO),
                verdict(r >= TARGET_RATIO)
            ));
        }
    }
    println!();
    for check in checks {
        println!("target: {check}");
    }
}

#[allow(clippy::print_stderr)]
async fn run(args: Args) -> Result<()> {
    ensure!(
        args.messages > 0 && args.rounds > 0,
        "--messages and --rounds must be positive"
    );
    let server_process = if args.server_process {
        let spans: &[&str] = if args.broker_spans {
            &[]
        } else {
            &["--no-broker-spans"]
        };
        let mut process = server_bench::process::ServerProcess::baton_with(
            &server_bench::process::baton_binary()?,
            &server_bench::process::Store::Memory,
            spans,
        )?;
        process.wait_answering(Duration::from_secs(30)).await?;
        Some(process)
    } else {
        None
    };
    let server = match (&args.endpoint, &server_process) {
        (Some(_), _) | (_, Some(_)) => None,
        (None, None) => {
            if let Some(dir) = &args.data_dir {
                // Measure an empty store, not whatever an earlier run left.
                let file = dir.join(baton_broker::STORE_FILE);
                if file.exists() {
                    std::fs::remove_file(&file)
                        .with_context(|| format!("removing {}", file.display()))?;
                }
            }
            Some(InProcessServer::start(
                args.broker_spans,
                args.data_dir.clone(),
            )?)
        }
    };
    let host = match (&args.endpoint, &server, &server_process) {
        (Some(endpoint), _, _) => endpoint.clone(),
        (None, Some(server), _) => server.addr.to_string(),
        (None, None, Some(process)) => process.host().to_string(),
        (None, None, None) => unreachable!("a server is started when no endpoint is given"),
    };
    let server_label = if server.is_some() {
        let spans = if args.broker_spans { "on" } else { "off" };
        format!("in-process Baton at {host}, broker spans {spans}")
    } else if server_process.is_some() {
        let spans = if args.broker_spans { "on" } else { "off" };
        format!("baton serve --in-memory at {host}, its own process, broker spans {spans}")
    } else {
        format!("{host} (--endpoint)")
    };
    let client = Client::connect(
        ClientConfig::new(python::PROJECT).with_endpoint(Endpoint::Emulator(host.clone())),
    )
    .await?;
    let mut modes: Vec<Mode> = Vec::new();
    for mode in &args.modes {
        if !modes.contains(mode) {
            modes.push(*mode);
        }
    }
    let python = if modes
        .iter()
        .any(|m| matches!(m, Mode::PythonOff | Mode::PythonOn))
    {
        let tmp = target_tmp(&args)?;
        eprintln!(
            "== Python venv under {}",
            tmp.parent().unwrap_or(&tmp).display()
        );
        Some(tokio::task::spawn_blocking(move || python::venv(&tmp)).await??)
    } else {
        None
    };
    let load_before = load_average();
    let server_pid = server_process
        .as_ref()
        .map(server_bench::process::ServerProcess::pid);
    let telemetry = Telemetry::new(args.sample_ratio);
    let run_id = unique_prefix("bench");
    let mut series: Vec<(Mode, Series)> = modes.iter().map(|m| (*m, Series::default())).collect();
    let mut traced_messages = 0u64;
    let mut spans_before = 0u64;
    let warmup_messages = args.warmup.unwrap_or(args.messages);
    let rounds = usize::from(warmup_messages > 0) + args.rounds;
    let with_floor = modes.contains(&Mode::RustOff) && modes.contains(&Mode::RustOn);
    let mut floors = Vec::new();
    for round in 0..rounds {
        let warmup = warmup_messages > 0 && round == 0;
        let n = if warmup {
            warmup_messages
        } else {
            args.messages
        };
        // Each round starts with the next mode: no mode always runs first,
        // on a server the previous round has just left, or always last.
        let count = series.len();
        for step in 0..count {
            let (mode, results) = &mut series[(round + step) % count];
            let prefix = format!("{run_id}-{round}-{}", mode.slug());
            eprintln!(
                "== {} {}: {n} messages",
                if warmup { "warm-up" } else { "round" },
                mode.label()
            );
            let (rates, cores) = match mode {
                Mode::RustOff | Mode::RustContext => {
                    let carry = *mode == Mode::RustContext;
                    let tracing = TracingConfig::default();
                    rust_round(&client, &args, &prefix, n, tracing, None, carry, server_pid).await?
                }
                Mode::RustOn => {
                    let measured = rust_round(
                        &client,
                        &args,
                        &prefix,
                        n,
                        telemetry.config(),
                        Some(&telemetry.provider),
                        false,
                        server_pid,
                    )
                    .await?;
                    let exported = telemetry.flushed_count().await;
                    if !warmup {
                        traced_messages += u64::try_from(n).unwrap_or(0);
                    } else {
                        spans_before = exported;
                    }
                    measured
                }
                Mode::PythonOff | Mode::PythonOn => {
                    let python = python.as_deref().context("no Python")?;
                    let rates =
                        python_round(python, &host, &args, &prefix, n, *mode == Mode::PythonOn)
                            .await?;
                    (rates, Cores::default())
                }
            };
            eprintln!(
                "   publish {} msg/s, receive+ack {} msg/s",
                thousands(rates.publish),
                thousands(rates.receive)
            );
            if !warmup {
                results.push(rates, cores);
            }
        }
        // The SDK's floor for the same spans, on a provider of its own with
        // the same sampler, in every round (the machine's load drifts; a
        // floor taken once would compare one moment with the median of
        // all), when both Rust modes run.
        if !warmup && with_floor {
            eprintln!("== the OpenTelemetry SDK alone for the same spans");
            let (messages, ratio) = (args.messages, args.sample_ratio);
            let floor = tokio::task::spawn_blocking(move || {
                let telemetry = Telemetry::new(ratio);
                let floor = sdk_floor::measure_floor(&telemetry.provider, messages, ratio);
                let _ = telemetry.provider.shutdown();
                floor
            })
            .await?;
            floors.extend(floor);
        }
    }
    let spans = telemetry.flushed_count().await - spans_before;
    let _ = telemetry.provider.shutdown();
    #[allow(clippy::cast_precision_loss)]
    let spans_per_message = (traced_messages > 0).then(|| spans as f64 / traced_messages as f64);
    let load_after = load_average();
    report(
        &args,
        &server_label,
        &series,
        (spans_per_message, &floors),
        (&load_before, &load_after),
        server.is_some(),
    );
    drop(client);
    drop(server);
    drop(server_process);
    Ok(())
}

/// mimalloc's setting for how long freed memory stays with the process
/// before it goes back to the kernel.
const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// Runs this benchmark again in place of this process with mimalloc's purge
/// off, unless `MIMALLOC_PURGE_DELAY` is set already. With the default
/// (freed memory back to the kernel after a second), every round paid for
/// faulting its heap in again, 2 MiB pages the kernel zeroes: identical runs
/// of the client comparison measured 201,172 page faults and 11.3 s of CPU
/// against 1,085 and 8.4 s with the purge off, and the CPU per message
/// swung by up to 30% between them. The figures are about the client's
/// code, so the allocator keeps what it has. Returns only on failure.
fn without_allocator_purge() -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let error = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY_VAR, "-1")
        .exec();
    Err(anyhow!(
        "running baton-bench again with {PURGE_DELAY_VAR}=-1: {error}"
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let client_modes = !(args.sdk_floor
        || args.auth_cost
        || args.forwarding_cost
        || args.catalog_scale
        || args.server
        || args.trace_search
        || args.span_flood);
    if client_modes && std::env::var_os(PURGE_DELAY_VAR).is_none() {
        return without_allocator_purge();
    }
    if args.sdk_floor {
        let telemetry = Telemetry::new(args.sample_ratio);
        sdk_floor::report(&telemetry.provider, args.messages, args.sample_ratio);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.auth_cost {
        return runtime.block_on(auth_cost::run(args.messages, args.size, args.rounds));
    }
    if args.forwarding_cost {
        return runtime.block_on(forwarding_cost::run(args.messages, args.size, args.rounds));
    }
    if args.catalog_scale {
        return runtime.block_on(catalog_scale::run(args.subscriptions));
    }
    if args.server {
        return runtime.block_on(server_bench::run(
            args.quick,
            &args.targets,
            args.backlog,
            args.stream_connections,
        ));
    }
    if args.trace_search {
        return runtime.block_on(trace_search::run(args.traces, args.rounds.max(20)));
    }
    if args.span_flood {
        return runtime.block_on(span_flood::run(
            args.messages,
            args.size,
            args.rounds,
            args.trace_store_bytes,
            args.flood_senders,
        ));
    }
    runtime.block_on(run(args))
}

#[cfg(test)]
mod tests {
    use super::unsampled_traceparents;

    #[test]
    fn each_message_carries_an_unsampled_context_of_its_own() {
        let values = unsampled_traceparents(1000);
        assert_eq!(values.len(), 1000);
        for value in &values {
            let parts: Vec<&str> = value.split('-').collect();
            assert_eq!(value.len(), 55, "{value}");
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1].len(), 32);
            assert_eq!(parts[2].len(), 16);
            assert_eq!(parts[3], "00", "unsampled");
            assert!(parts[1..3].iter().all(|id| {
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    && id.bytes().any(|b| b != b'0')
            }));
        }
        let distinct: std::collections::HashSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), values.len());
    }
}
