//! `baton-bench --span-flood`: whether the trace store's size bound holds
//! under a flood of spans, in memory and on disk, and what the flood costs
//! Pub/Sub traffic on the same server (issue 11).
//!
//! One in-process durable server (its data directory in a temporary one)
//! with a small byte bound on the trace store (`--trace-store-bytes`; the
//! span bound is raised out of the way so the byte bound is the one that
//! binds) and its OTLP/gRPC receiver on. Each round runs the Pub/Sub
//! workload of `--auth-cost` (N untraced messages published as unary
//! Publish calls from several callers, then pulled and acknowledged) twice,
//! alone and during a flood (several tasks sending OTLP export requests of
//! 500 spans back to back, as fast as the server answers), the order
//! alternating per round. The warm-up round (not counted) runs alone, then
//! flooded, which fills the store to its bound. The report gives the throughput with and without the
//! flood, the flood's own rate, the store's bytes and spans against the
//! bound, the size of `traces.redb`, and the process's resident memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use baton_server::{RunningServer, ServerConfig, TRACE_FILE};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::trace_load::{
    BATCH, CALLERS, Credential, PULL_MAX, change, connect, loopback, median, mib, proc_mib,
    range_k, round, span_request,
};

/// Traces per export request, and spans per trace: 500 spans a request.
const TRACES_PER_REQUEST: usize = 50;
const SPANS_PER_TRACE: usize = 10;
/// The span bound, high enough that the byte bound is the one that binds.
const MAX_SPANS: usize = 5_000_000;

/// `baton serve`'s default `--otlp-max-spans-per-second`.
const OTLP_SPAN_BUDGET: u32 = 10_000;

/// The delay a `RESOURCE_EXHAUSTED` status's `RetryInfo` asks for (1 s
/// when it names none).
fn retry_delay(status: &tonic::Status) -> std::time::Duration {
    use prost::Message as _;
    baton_proto::rpc::Status::decode(status.details())
        .ok()
        .and_then(|details| {
            details
                .details
                .iter()
                .filter(|any| any.type_url.ends_with("google.rpc.RetryInfo"))
                .find_map(|any| baton_proto::rpc::RetryInfo::decode(any.value.as_ref()).ok())
        })
        .and_then(|info| info.retry_delay)
        .map_or(std::time::Duration::from_secs(1), |delay| {
            std::time::Duration::from_secs(u64::try_from(delay.seconds).unwrap_or(0))
                + std::time::Duration::from_nanos(u64::try_from(delay.nanos).unwrap_or(0))
        })
}

/// A running flood: its tasks and what they got through.
struct Flood {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Result<()>>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    started: Instant,
}

impl Flood {
    fn start(channel: &Channel, senders: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..senders {
            let (mut client, stop, accepted, refused) = (
                TraceServiceClient::new(channel.clone()),
                stop.clone(),
                accepted.clone(),
                refused.clone(),
            );
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = span_request(TRACES_PER_REQUEST, SPANS_PER_TRACE);
                    let spans = (TRACES_PER_REQUEST * SPANS_PER_TRACE) as u64;
                    match client.export(request).await {
                        Ok(response) => {
                            let rejected = response
                                .into_inner()
                                .partial_success
                                .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                            accepted.fetch_add(spans - rejected, Ordering::Relaxed);
                            refused.fetch_add(rejected, Ordering::Relaxed);
                        }
                        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                            refused.fetch_add(spans, Ordering::Relaxed);
                            // As OTLP exporters do: wait as long as the
                            // server's RetryInfo asks before trying again.
                            tokio::time::sleep(retry_delay(&status)).await;
                        }
                        Err(status) => return Err(status.into()),
                    }
                }
                Ok(())
            });
        }
        Self {
            stop,
            tasks,
            accepted,
            refused,
            started: Instant::now(),
        }
    }

    /// Stops the flood; spans accepted per second, and spans refused.
    async fn stop(mut self) -> Result<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        while let Some(done) = self.tasks.join_next().await {
            done??;
        }
        let accepted = usize::try_from(self.accepted.load(Ordering::Relaxed)).unwrap_or(0);
        Ok((
            crate::trace_load::rate(accepted, elapsed),
            self.refused.load(Ordering::Relaxed),
        ))
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// What the store and its file hold now, as one line.
fn store_line(server: &RunningServer, file: &Path, cap: usize) -> String {
    let store = server.trace_store();
    format!(
        "store {:.1} MiB of {:.1} MiB ({} spans, {} traces), {TRACE_FILE} {:.1} MiB, RSS {} MiB (peak {} MiB)",
        mib(store.byte_count() as u64),
        mib(cap as u64),
        store.span_count(),
        store.trace_count(),
        mib(file_size(file)),
        proc_mib("VmRSS"),
        proc_mib("VmHWM"),
    )
}

/// Runs the comparison and prints the report.
#[allow(clippy::print_stdout, clippy::print_stderr, clippy::too_many_lines)]
pub async fn run(
    messages: usize,
    size: usize,
    rounds: usize,
    cap_bytes: usize,
    senders: usize,
) -> Result<()> {
    ensure!(
        messages > 0 && rounds > 0 && senders > 0 && cap_bytes > 0,
        "--messages, --rounds, --flood-senders and --trace-store-bytes must be positive"
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join(TRACE_FILE);
    let rss_start = proc_mib("VmRSS");
    let config = ServerConfig::new(loopback())
        .with_data_dir(dir.path())
        .with_trace_store_bytes(cap_bytes)
        .with_trace_store_spans(MAX_SPANS)
        .with_otlp_grpc(loopback())
        // What `baton serve` takes by default.
        .with_otlp_span_budget(OTLP_SPAN_BUDGET);
    let server = baton_server::start(config).await?;
    let channel = connect(server.local_addr()).await?;
    let otlp = connect(
        server
            .otlp_grpc_addr()
            .context("the server receives no OTLP/gRPC")?,
    )
    .await?;
    eprintln!("== started: {}", store_line(&server, &file, cap_bytes));
    // The largest store and file seen, sampled every 20 ms through the run
    // (not only between phases).
    let peaks = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let sampler = {
        let (store, file, peaks) = (server.trace_store().clone(), file.clone(), peaks.clone());
        tokio::spawn(async move {
            loop {
                peaks
                    .0
                    .fetch_max(store.byte_count() as u64, Ordering::Relaxed);
                peaks.1.fetch_max(file_size(&file), Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };

    let mut alone = (Vec::new(), Vec::new());
    let mut flooded = (Vec::new(), Vec::new());
    let mut flood_rates = Vec::new();
    let mut refused_total = 0;
    let (mut rss_alone, mut rss_flooded) = (String::new(), String::new());
    for round_no in 0..=rounds {
        // The warm-up runs alone first (the memory Pub/Sub alone needs),
        // then flooded, so the store is at its bound before anything is
        // measured.
        let flood_first = round_no % 2 == 1;
        for with_flood in [flood_first, !flood_first] {
            let prefix = format!("r{round_no}-{}", if with_flood { "flood" } else { "alone" });
            let flood = with_flood.then(|| Flood::start(&otlp, senders));
            let (publish, receive) = round(
                &channel,
                &Credential::default(),
                &prefix,
                messages,
                size,
                false,
            )
            .await
            .with_context(|| format!("round {round_no} ({prefix})"))?;
            let flood_rate = match flood {
                Some(flood) => {
                    let (rate, refused) = flood.stop().await?;
                    refused_total += refused;
                    Some(rate)
                }
                None => None,
            };
            eprintln!(
                "== {} {round_no} {}: publish {publish:.0} msg/s, pull+ack {receive:.0} msg/s{}; {}",
                if round_no == 0 { "warm-up" } else { "round" },
                if with_flood { "with flood" } else { "alone" },
                flood_rate.map_or_else(String::new, |r| format!(", flood {r:.0} spans/s")),
                store_line(&server, &file, cap_bytes),
            );
            if round_no == 0 {
                if with_flood {
                    rss_flooded = proc_mib("VmRSS");
                } else {
                    rss_alone = proc_mib("VmRSS");
                }
                continue;
            }
            let series = if with_flood { &mut flooded } else { &mut alone };
            series.0.push(publish);
            series.1.push(receive);
            flood_rates.extend(flood_rate);
        }
    }
    sampler.abort();
    let peak_store = peaks.0.load(Ordering::Relaxed);
    let peak_file = peaks.1.load(Ordering::Relaxed);
    let store = server.trace_store();
    let (dropped_writes, failed_writes) = (store.dropped_writes(), store.failed_writes());
    let end_line = store_line(&server, &file, cap_bytes);

    println!();
    println!(
        "Span flood: {messages} x {size} B messages per round, {rounds} rounds (medians, \
         per-round range), {CALLERS} callers, Publish batches of {BATCH}, Pull of up to \
         {PULL_MAX}; flood: {senders} senders of OTLP/gRPC exports of {} spans; durable server, \
         trace store bound {:.0} MiB",
        TRACES_PER_REQUEST * SPANS_PER_TRACE,
        mib(cap_bytes as u64)
    );
    let (a, f) = (
        (median(&alone.0), median(&alone.1)),
        (median(&flooded.0), median(&flooded.1)),
    );
    println!(
        "  alone       publish {:>8.0} msg/s ({:>11})   pull+ack {:>8.0} msg/s ({:>11})",
        a.0,
        range_k(&alone.0),
        a.1,
        range_k(&alone.1)
    );
    println!(
        "  with flood  publish {:>8.0} msg/s ({:>11})   pull+ack {:>8.0} msg/s ({:>11})",
        f.0,
        range_k(&flooded.0),
        f.1,
        range_k(&flooded.1)
    );
    let (publish, receive) = (change(f.0, a.0), change(f.1, a.1));
    println!("  with flood vs alone: publish {publish:+.1}%   pull+ack {receive:+.1}%");
    println!(
        "  flood: {:.0} spans/s accepted (median; {}), {refused_total} refused",
        median(&flood_rates),
        range_k(&flood_rates)
    );
    println!("  at the end: {end_line}");
    println!(
        "  largest seen (sampled every 20 ms): store {:.1} MiB, {TRACE_FILE} {:.1} MiB; \
         trace file writes dropped {dropped_writes}, failed {failed_writes}",
        mib(peak_store),
        mib(peak_file),
    );
    println!(
        "  RSS: {rss_start} MiB before the server started, {rss_alone} MiB after the warm-up's \
         Pub/Sub alone (no spans yet), {rss_flooded} MiB after its flood (store full), {} MiB \
         at the end, peak {} MiB",
        proc_mib("VmRSS"),
        proc_mib("VmHWM")
    );
    let bounded = peak_store <= cap_bytes as u64 && peak_file <= cap_bytes as u64;
    let within = publish >= -10.0 && receive >= -10.0;
    println!(
        "target: the store and its file within the bound: {}; Pub/Sub during the flood within 10% of alone: {}",
        if bounded { "met" } else { "NOT met" },
        if within { "met" } else { "NOT met" },
    );
    drop(channel);
    drop(otlp);
    server.shutdown().await?;
    println!(
        "  after shutdown: {TRACE_FILE} {:.1} MiB",
        mib(file_size(&file))
    );
    Ok(())
}
