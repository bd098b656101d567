//! `baton-bench --forwarding-cost`: what forwarding spans upstream costs
//! Pub/Sub traffic, and what happens when the upstream dies and comes back
//! (issue 11).
//!
//! Three in-process downstream servers, all recording broker spans for the
//! traced messages of the workload (a `receive` and a `deliver` span per
//! message, into each one's own trace store): one that forwards nothing;
//! one forwarding over OTLP/gRPC to a live upstream Baton; one forwarding to
//! an upstream Baton that is shut down after the warm-up round, so its spans
//! pile up in the forwarding queue until it is full and then are dropped.
//! Against each, interleaved per round with the order alternating: publish N
//! traced messages as unary Publish calls from several callers, then pull
//! and acknowledge them all. Then the report gives the forwarding status of
//! the two (forwarded, dropped, state), starts a new upstream on the dead
//! one's port and times how long forwarding takes to resume.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use baton_server::baton_trace_store::forward::{LaneStatus, Protocol, UpstreamState};
use baton_server::{ForwardConfig, RunningServer, ServerConfig};
use tonic::transport::Channel;

use crate::trace_load::{
    BATCH, CALLERS, Credential, PULL_MAX, change, connect, loopback, measured_round, median,
    range_k,
};

/// How long to wait for forwarding to resume once the upstream is back
/// (the default retry backoff grows to 30 s while it is down).
const RESUME_LIMIT: Duration = Duration::from_secs(90);

/// One downstream server under test and a channel to it.
struct Target {
    label: &'static str,
    server: RunningServer,
    channel: Channel,
}

/// An upstream Baton receiving OTLP/gRPC on `otlp` (port 0: any).
async fn upstream(otlp: std::net::SocketAddr) -> Result<RunningServer> {
    let config = ServerConfig::new(loopback())
        .with_broker_spans(false)
        .with_otlp_grpc(otlp);
    Ok(baton_server::start(config).await?)
}

/// A downstream server with broker spans, forwarding spans to the
/// OTLP/gRPC receiver of `upstream` when given.
async fn downstream(label: &'static str, upstream: Option<&RunningServer>) -> Result<Target> {
    let mut config = ServerConfig::new(loopback()).with_broker_spans(true);
    if let Some(upstream) = upstream {
        let otlp = upstream
            .otlp_grpc_addr()
            .context("the upstream receives no OTLP/gRPC")?;
        config = config.with_forwarding(ForwardConfig::to(
            &format!("http://{otlp}"),
            Protocol::Grpc,
        )?);
    }
    let server = baton_server::start(config).await?;
    let channel = connect(server.local_addr()).await?;
    Ok(Target {
        label,
        server,
        channel,
    })
}

fn traces_lane(target: &Target) -> Result<LaneStatus> {
    target
        .server
        .forwarding()
        .status()
        .traces
        .context("span forwarding is off")
}

fn describe(lane: &LaneStatus) -> String {
    format!(
        "state {:?}, forwarded {}, dropped {}, queued {}, failed attempts {}",
        lane.state, lane.forwarded, lane.dropped, lane.queued, lane.failed_attempts
    )
}

/// Runs the comparison and prints the report.
#[allow(clippy::print_stdout, clippy::print_stderr, clippy::too_many_lines)]
pub async fn run(messages: usize, size: usize, rounds: usize) -> Result<()> {
    ensure!(
        messages > 0 && rounds > 0,
        "--messages and --rounds must be positive"
    );
    let live = upstream(loopback()).await?;
    let doomed = upstream(loopback()).await?;
    let dead_addr = doomed
        .otlp_grpc_addr()
        .context("the upstream receives no OTLP/gRPC")?;
    let targets = [
        downstream("no forwarding", None).await?,
        downstream("forwarding, upstream up", Some(&live)).await?,
        downstream("forwarding, upstream dead", Some(&doomed)).await?,
    ];
    let mut doomed = Some(doomed);
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
    // Round 0 warms the servers up and is not counted; the third server's
    // upstream dies after it.
    for round_no in 0..=rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round_no % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (target, result) = (&targets[index], &mut results[index]);
            let prefix = format!("r{round_no}-t{index}");
            measured_round(
                target.label,
                round_no,
                &target.channel,
                &Credential::default(),
                &prefix,
                messages,
                size,
                true,
                result,
            )
            .await?;
        }
        if let Some(upstream) = doomed.take() {
            let before = traces_lane(&targets[2])?;
            upstream.shutdown().await?;
            eprintln!(
                "== the third server's upstream ({dead_addr}) is shut down; its forwarding: {}",
                describe(&before)
            );
        }
    }
    // Let the broker spans of the last round reach the forwarding queues.
    for target in &targets {
        target.server.flush_traces().await;
    }
    targets[1]
        .server
        .forwarding()
        .flush(Duration::from_secs(30))
        .await;
    let live_lane = traces_lane(&targets[1])?;
    let dead_lane = traces_lane(&targets[2])?;

    println!();
    println!(
        "Forwarding cost: {messages} traced messages x {size} B per round (2 broker spans each), \
         {rounds} rounds (medians, per-round range), {CALLERS} callers, Publish batches of \
         {BATCH}, Pull of up to {PULL_MAX}; forwarding over OTLP/gRPC to an in-process upstream Baton"
    );
    let medians: Vec<(f64, f64)> = results
        .iter()
        .map(|(p, r)| (median(p), median(r)))
        .collect();
    for ((target, (publish, receive)), (p, r)) in targets.iter().zip(&medians).zip(&results) {
        println!(
            "  {:<26} publish {publish:>8.0} msg/s ({:>11})   pull+ack {receive:>8.0} msg/s ({:>11})",
            target.label,
            range_k(p),
            range_k(r),
        );
    }
    let (off, up, dead) = (medians[0], medians[1], medians[2]);
    let (up_publish, up_receive) = (change(up.0, off.0), change(up.1, off.1));
    let (dead_publish, dead_receive) = (change(dead.0, off.0), change(dead.1, off.1));
    println!(
        "  upstream up vs no forwarding:   publish {up_publish:+.1}%   pull+ack {up_receive:+.1}%"
    );
    println!(
        "  upstream dead vs no forwarding: publish {dead_publish:+.1}%   pull+ack {dead_receive:+.1}%"
    );
    let spans = |target: &Target| target.server.trace_store().span_count();
    println!(
        "  spans in each downstream's own store: {} / {} / {}",
        spans(&targets[0]),
        spans(&targets[1]),
        spans(&targets[2])
    );
    println!("  forwarding, upstream up:   {}", describe(&live_lane));
    println!(
        "  forwarding, upstream dead: {} (last error: {})",
        describe(&dead_lane),
        dead_lane.last_error.as_deref().unwrap_or("none")
    );

    // The upstream comes back on the same port.
    let started = Instant::now();
    let revived = upstream(dead_addr)
        .await
        .with_context(|| format!("restarting the upstream on {dead_addr}"))?;
    let forwarded_before = dead_lane.forwarded;
    let resumed = targets[2]
        .server
        .forwarding()
        .wait_until(RESUME_LIMIT, |status| {
            status.traces.as_ref().is_some_and(|lane| {
                lane.state == UpstreamState::Up && lane.forwarded > forwarded_before
            })
        })
        .await;
    let resumed_after = started.elapsed();
    let drained = targets[2]
        .server
        .forwarding()
        .flush(Duration::from_secs(60))
        .await;
    let after = traces_lane(&targets[2])?;
    if resumed {
        println!(
            "  upstream back on {dead_addr}: forwarding resumed after {:.1} s; queue {} after {:.1} s: {}",
            resumed_after.as_secs_f64(),
            if drained { "drained" } else { "NOT drained" },
            started.elapsed().as_secs_f64(),
            describe(&after)
        );
        println!(
            "  the new upstream's store holds {} spans",
            revived.trace_store().span_count()
        );
    } else {
        println!(
            "  upstream back on {dead_addr}: forwarding did NOT resume within {} s: {}",
            RESUME_LIMIT.as_secs(),
            describe(&after)
        );
    }
    let within = dead_publish >= -10.0 && dead_receive >= -10.0;
    println!(
        "target: Pub/Sub with the upstream dead within 10% of no forwarding: {}; \
         drops counted: {}; forwarding resumed: {}",
        if within { "met" } else { "NOT met" },
        if dead_lane.dropped > 0 {
            "yes"
        } else {
            "none dropped"
        },
        if resumed { "yes" } else { "NO" },
    );
    for target in targets {
        drop(target.channel);
        target.server.shutdown().await?;
    }
    revived.shutdown().await?;
    live.shutdown().await?;
    if !resumed {
        bail!("forwarding did not resume");
    }
    Ok(())
}
