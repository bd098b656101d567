//! `baton-bench --server [--quick]`: the server itself, measured against
//! the gcloud Pub/Sub emulator and a bare gRPC echo, in one run (issue 10,
//! item 8).
//!
//! The targets are about the server, not the client: the durable
//! store at nearly in-memory speed, a large backlog in bounded memory, a
//! restart in well under a second, a small idle footprint. This mode puts
//! figures on each, side by side with the emulator (the reference the
//! official clients' users know) and with a ceiling, so a change to the
//! store can be judged by one command.
//!
//! Targets, each a separate process on a free loopback port (`--targets`):
//!
//! - `memory`: `baton serve --in-memory` (the `baton` binary of this
//!   target directory);
//! - `disk`: `baton serve --data-dir` on a fresh temporary directory;
//! - `emulator`: `gcloud beta emulators pubsub start` (a JVM; its RSS is
//!   that of gcloud's process tree: the Python launcher and the JVM);
//! - `echo`: the ceiling, an in-process tonic server that answers Publish
//!   with ids and streams pre-built messages on StreamingPull, storing
//!   nothing ([`echo`]); measured for throughput only.
//!
//! The load generator is the same for all: `baton-client`, in this process
//! ([`workloads`]). Per Baton or emulator target, a first server process:
//!
//! 1. **startup**: spawn to the first answered RPC (ListTopics, polled
//!    every 5 ms on fresh connections); **idle RSS** 1 s later;
//! 2. **throughput** for 64 B, 1 KB and 64 KB messages: publish N and wait
//!    for every id (msg/s and MB/s), then receive and ack them all on a
//!    StreamingPull subscriber (msg/s); a warm-up round first, then the
//!    median of the measured rounds;
//! 3. **latency** publish-to-delivery, p50/p99/p99.9, at a fixed offered
//!    rate (each message stamped at publish, measured at receipt);
//! 4. **fan-out** to 10 subscriptions: deliveries/s;
//! 5. **1,000 streams**: 1,000 subscriptions with one StreamingPull stream
//!    each, spread over 10 connections (`--stream-connections`; Baton's
//!    listener takes at most 200 concurrent streams per HTTP/2 connection):
//!    time to create them, time until every stream is open and delivering,
//!    then deliveries/s with every message checked on every stream.
//!
//! The server's RSS is sampled every 50 ms during 2-5: **peak RSS**. Then a
//! second, fresh server process for the **backlog**: N × 1 KB to one
//! subscription with no subscriber, its **RSS with the backlog held**, and
//! for the disk store only (the others lose the backlog) a **restart** on
//! the same data directory: SIGTERM and the time to exit, then spawn to
//! first RPC and to first message delivered.
//!
//! The report prints each measure with the targets side by side, the
//! ratios (disk/memory, Baton/emulator, Baton/echo) and the issue's
//! targets, met or MISSED.

mod echo;
mod plan;
pub(crate) mod process;
mod report;
mod workloads;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use baton_client::{Client, ClientConfig, Endpoint};

use self::echo::Echo;
pub use self::plan::Target;
use self::plan::{
    Backlog, Cell, KB, PROJECT, Plan, Restart, Results, START_LIMIT, STOP_LIMIT, Summary,
};
use self::process::{PeakSampler, ServerProcess, Store};
use self::workloads::Throughput;

/// Keeps a measure's outcome, telling stderr about a failure.
fn keep<T>(target: Target, what: &str, result: Result<T>) -> Cell<T> {
    match result {
        Ok(value) => Some(Ok(value)),
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("   {}: {what} FAILED: {message}", target.label());
            Some(Err(message))
        }
    }
}

async fn connect(host: &str) -> Result<Client> {
    Client::connect(ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(host.to_owned())))
        .await
        .with_context(|| format!("connecting to {host}"))
}

/// The warm-up round and the measured throughput rounds; medians per size.
async fn throughput_rounds(
    target: Target,
    client: &Client,
    prefix: &str,
    plan: &Plan,
    sizes: &[(usize, usize)],
    echo: Option<&Echo>,
) -> Vec<(usize, Cell<Summary>)> {
    if plan.warmup > 0 {
        eprintln!("== {}: warm-up, {} x 1 KB", target.label(), plan.warmup);
        if let Err(e) =
            workloads::throughput(client, &format!("{prefix}-warm"), KB, plan.warmup, echo).await
        {
            eprintln!("   {}: warm-up failed: {e:#}", target.label());
        }
    }
    let mut series: Vec<(usize, Vec<Throughput>, Option<String>)> = sizes
        .iter()
        .map(|(size, _)| (*size, Vec::new(), None))
        .collect();
    for round in 0..plan.rounds {
        for ((size, n), (_, rounds, failed)) in sizes.iter().zip(series.iter_mut()) {
            if failed.is_some() {
                continue;
            }
            eprintln!(
                "== {}: throughput round {}/{}, {n} x {}",
                target.label(),
                round + 1,
                plan.rounds,
                report::size_label(*size)
            );
            let prefix = format!("{prefix}-tp{round}-{size}");
            match workloads::throughput(client, &prefix, *size, *n, echo).await {
                Ok(t) => {
                    eprintln!(
                        "   publish {} msg/s ({:.1} MB/s), receive+ack {} msg/s",
                        crate::support::thousands(t.publish),
                        t.publish_mb,
                        crate::support::thousands(t.receive)
                    );
                    rounds.push(t);
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    eprintln!("   {}: throughput FAILED: {message}", target.label());
                    *failed = Some(message);
                }
            }
        }
    }
    series
        .into_iter()
        .map(|(size, rounds, failed)| {
            let cell = match (failed, rounds.is_empty()) {
                (Some(e), true) => Some(Err(e)),
                (_, true) => None,
                (_, false) => Some(Ok(Summary::of(&rounds))),
            };
            (size, cell)
        })
        .collect()
}

/// Spawns the server of `target` on `dir` (a data directory: Baton's on
/// disk, the emulator's).
fn spawn(target: Target, bin: Option<&Path>, dir: &Path) -> Result<ServerProcess> {
    let baton = || bin.context("no baton binary");
    match target {
        Target::Memory => ServerProcess::baton(baton()?, &Store::Memory),
        Target::Disk => ServerProcess::baton(baton()?, &Store::Disk(dir.to_path_buf())),
        Target::Emulator => ServerProcess::emulator(dir),
        Target::Echo => anyhow::bail!("the echo is not a process"),
    }
}

/// Stops a server: SIGTERM and a wait for Baton (its orderly stop), a kill
/// for the emulator.
fn stop(target: Target, mut server: ServerProcess) {
    if target == Target::Emulator {
        drop(server);
        return;
    }
    if let Err(e) = server.terminate(STOP_LIMIT) {
        eprintln!("   {}: {e:#}", target.label());
    }
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// All measures of one Baton or emulator target.
async fn bench_server(target: Target, bin: Option<&Path>, plan: &Plan, run_id: &str) -> Results {
    let mut results = Results::new(target);
    let prefix = format!("{run_id}-{}", target.slug());

    // The first process: startup, idle, and everything under load.
    eprintln!("== {}: starting", target.label());
    let dir = match tempfile::Builder::new()
        .prefix("baton-serverbench-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            results.startup = keep(target, "temporary directory", Err(e.into()));
            return results;
        }
    };
    let mut server = match spawn(target, bin, dir.path()) {
        Ok(server) => server,
        Err(e) => {
            results.startup = keep(target, "spawning", Err(e));
            return results;
        }
    };
    results.startup = keep(target, "startup", server.wait_answering(START_LIMIT).await);
    let Some(Ok(startup)) = &results.startup else {
        return results;
    };
    eprintln!(
        "   first RPC answered {:.0} ms after spawn",
        startup.as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = server.rss_probe();
    results.idle_rss_kib = keep(target, "idle RSS", probe.kib().context("no VmRSS"));
    if let Some(Ok(kib)) = &results.idle_rss_kib {
        eprintln!("   idle RSS {:.1} MB", mib(*kib));
        if target == Target::Emulator {
            let parts: Vec<String> = probe
                .breakdown()
                .into_iter()
                .map(|(name, kib)| format!("{name} {:.1} MB", mib(kib)))
                .collect();
            eprintln!("   (the tree: {})", parts.join(", "));
        }
    }
    match connect(server.host()).await {
        Ok(client) => {
            let sampler = PeakSampler::start(probe);
            under_load(target, &client, &prefix, plan, &mut results).await;
            results.peak_rss_kib = keep(target, "peak RSS", sampler.finish().context("no sample"));
        }
        Err(e) => {
            results.throughput = vec![(KB, keep(target, "connecting", Err(e)))];
        }
    }
    eprintln!("== {}: stopping the first server", target.label());
    stop(target, server);
    drop(dir);

    backlog_and_restart(target, bin, plan, &prefix, &mut results).await;
    results
}

/// Throughput, latency, fan-out and many streams, on a running server.
async fn under_load(
    target: Target,
    client: &Client,
    prefix: &str,
    plan: &Plan,
    results: &mut Results,
) {
    results.throughput = throughput_rounds(target, client, prefix, plan, &plan.sizes, None).await;

    eprintln!(
        "== {}: latency at {} msg/s for {:?}",
        target.label(),
        plan.latency_rate,
        plan.latency_duration
    );
    let latency = workloads::latency(
        client,
        &format!("{prefix}-lat"),
        KB,
        plan.latency_rate,
        plan.latency_duration,
    )
    .await;
    if let Ok(l) = &latency {
        eprintln!(
            "   p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            report::ms(l.p50),
            report::ms(l.p99),
            report::ms(l.p999),
            report::ms(l.max)
        );
    }
    results.latency = keep(target, "latency", latency);

    eprintln!(
        "== {}: fan-out, {} x 1 KB to {} subscriptions",
        target.label(),
        plan.fan_messages,
        plan.fan
    );
    let fanout = workloads::fanout(
        client,
        &format!("{prefix}-fan"),
        plan.fan,
        plan.fan_messages,
        KB,
    )
    .await;
    if let Ok(f) = &fanout {
        eprintln!(
            "   {} deliveries in {:.2} s: {} deliveries/s",
            f.deliveries,
            f.elapsed.as_secs_f64(),
            crate::support::thousands(f.rate)
        );
    }
    results.fanout = keep(target, "fan-out", fanout);

    eprintln!(
        "== {}: {} streams over {} connections, then {} x 1 KB to each",
        target.label(),
        plan.streams,
        plan.stream_connections,
        plan.stream_messages
    );
    let streams = async {
        let mut clients = vec![client.clone()];
        for _ in 1..plan.stream_connections {
            clients.push(connect(client_host(client)?).await?);
        }
        workloads::streams(
            &clients,
            &format!("{prefix}-str"),
            plan.streams,
            plan.stream_messages,
            KB,
        )
        .await
    }
    .await;
    if let Ok(s) = &streams {
        eprintln!(
            "   all open and delivering after {:.2} s; {} deliveries in {:.2} s: {} deliveries/s",
            s.open.as_secs_f64(),
            s.delivered.deliveries,
            s.delivered.elapsed.as_secs_f64(),
            crate::support::thousands(s.delivered.rate)
        );
    }
    results.streams = keep(target, "streams", streams);
}

/// The `host:port` a client connects to.
fn client_host(client: &Client) -> Result<&str> {
    match client.endpoint() {
        Endpoint::Emulator(host) => Ok(host),
        other => anyhow::bail!("unexpected endpoint {other:?}"),
    }
}

/// A fresh server holding the backlog; for the disk store, its restart.
async fn backlog_and_restart(
    target: Target,
    bin: Option<&Path>,
    plan: &Plan,
    prefix: &str,
    results: &mut Results,
) {
    eprintln!(
        "== {}: backlog of {} x 1 KB on a fresh server",
        target.label(),
        plan.backlog
    );
    let dir = match tempfile::Builder::new()
        .prefix("baton-serverbench-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            results.backlog = keep(target, "temporary directory", Err(e.into()));
            return;
        }
    };
    let mut server = match spawn(target, bin, dir.path()) {
        Ok(server) => server,
        Err(e) => {
            results.backlog = keep(target, "spawning", Err(e));
            return;
        }
    };
    let (topic, sub) = (format!("{prefix}-backlog"), format!("{prefix}-backlog-sub"));
    let backlog = async {
        server.wait_answering(START_LIMIT).await?;
        let client = connect(server.host()).await?;
        let publish = workloads::publish_backlog(&client, &topic, &sub, plan.backlog, KB).await?;
        eprintln!(
            "   published in {:.1} s ({} msg/s)",
            publish.as_secs_f64(),
            crate::support::thousands(workloads::per_second(plan.backlog, publish))
        );
        // Let the server settle (flushes, compaction) before reading RSS.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_kib = server.rss_probe().kib();
        if let Some(kib) = rss_kib {
            eprintln!("   RSS with the backlog held: {:.1} MB", mib(kib));
        }
        Ok(Backlog {
            publish,
            messages: plan.backlog,
            rss_kib,
        })
    }
    .await;
    results.backlog = keep(target, "backlog", backlog);
    if target != Target::Disk || !matches!(results.backlog, Some(Ok(_))) {
        stop(target, server);
        return;
    }

    eprintln!("== {}: restart with the backlog", target.label());
    let restart = async {
        let stop = server.terminate(STOP_LIMIT)?;
        eprintln!("   stopped {:.2} s after SIGTERM", stop.as_secs_f64());
        drop(server);
        let mut server = spawn(target, bin, dir.path())?;
        let first_rpc = server.wait_answering(START_LIMIT).await?;
        eprintln!("   first RPC {:.3} s after spawn", first_rpc.as_secs_f64());
        let client = connect(server.host()).await?;
        let tally = workloads::Tally::new(plan.backlog);
        let first_delivery =
            workloads::first_delivery(&client, &sub, server.spawned(), START_LIMIT, &tally).await?;
        eprintln!(
            "   first message delivered {:.3} s after spawn",
            first_delivery.as_secs_f64()
        );
        let rss_kib = server.rss_probe().kib();
        // Serving the deep backlog: all of it delivered and acked, with the
        // server's memory sampled all along.
        let sampler = PeakSampler::start(server.rss_probe());
        let (drained, drain) = workloads::receive_all(&client, &sub, &tally, "drain").await?;
        let drain_peak_rss_kib = sampler.finish();
        eprintln!(
            "   drained the other {} in {:.1} s ({} msg/s), RSS peak {} MB",
            crate::support::thousands(drained as f64),
            drain.as_secs_f64(),
            crate::support::thousands(workloads::per_second(drained, drain)),
            drain_peak_rss_kib.map_or("?".to_owned(), |k| format!("{:.1}", mib(k)))
        );
        drop(client);
        let stopped_at = Instant::now();
        if let Err(e) = server.terminate(STOP_LIMIT) {
            eprintln!("   {}: {e:#}", target.label());
        }
        eprintln!(
            "   (stopped again in {:.2} s)",
            stopped_at.elapsed().as_secs_f64()
        );
        Ok(Restart {
            stop,
            first_rpc,
            first_delivery,
            rss_kib,
            drained,
            drain,
            drain_peak_rss_kib,
        })
    }
    .await;
    results.restart = keep(target, "restart", restart);
}

/// The echo ceiling: throughput only.
async fn bench_echo(plan: &Plan, run_id: &str) -> Results {
    let target = Target::Echo;
    let mut results = Results::new(target);
    eprintln!("== {}: starting in-process", target.label());
    let echo = match Echo::start() {
        Ok(echo) => echo,
        Err(e) => {
            results.throughput = vec![(KB, keep(target, "starting", Err(e)))];
            return results;
        }
    };
    let client = match connect(&echo.host()).await {
        Ok(client) => client,
        Err(e) => {
            results.throughput = vec![(KB, keep(target, "connecting", Err(e)))];
            return results;
        }
    };
    results.throughput = throughput_rounds(
        target,
        &client,
        &format!("{run_id}-echo"),
        plan,
        &plan.sizes,
        Some(&echo),
    )
    .await;
    drop(client);
    drop(echo);
    results
}

/// Runs every selected target in turn and prints the report.
pub async fn run(
    quick: bool,
    targets: &[Target],
    backlog: Option<usize>,
    stream_connections: usize,
) -> Result<()> {
    anyhow::ensure!(
        stream_connections > 0,
        "--stream-connections must be positive"
    );
    let plan = Plan::new(quick, backlog, stream_connections);
    let mut selected: Vec<Target> = Vec::new();
    for target in [Target::Memory, Target::Disk, Target::Emulator, Target::Echo] {
        if targets.contains(&target) {
            selected.push(target);
        }
    }
    anyhow::ensure!(!selected.is_empty(), "--targets names no target");
    let bin = if selected
        .iter()
        .any(|t| matches!(t, Target::Memory | Target::Disk))
    {
        Some(process::baton_binary()?)
    } else {
        None
    };
    let run_id = crate::support::unique_prefix("sb");
    let load_before = crate::support::load_average();
    let started = Instant::now();
    let all = async {
        let mut all = Vec::new();
        for target in selected {
            let results = match target {
                Target::Echo => bench_echo(&plan, &run_id).await,
                _ => bench_server(target, bin.as_deref(), &plan, &run_id).await,
            };
            all.push(results);
        }
        all
    };
    // On SIGINT or SIGTERM the run's future is dropped, and with it every
    // server process (each killed on drop) and the echo.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let all = tokio::select! {
        all = all => all,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (SIGINT): the servers were stopped"),
        _ = terminate.recv() => anyhow::bail!("terminated (SIGTERM): the servers were stopped"),
    };
    report::print(
        &plan,
        &all,
        started.elapsed(),
        (&load_before, &crate::support::load_average()),
    );
    Ok(())
}
