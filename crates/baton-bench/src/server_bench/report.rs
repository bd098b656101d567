//! The report of `--server`: one table per measure with the targets side
//! by side, the ratios, and the targets of issue 10.

use std::time::Duration;

use super::plan::{Cell, KB, Plan, Restart, Results, Summary, Target};
use super::workloads::{Latency, Streams, Throughput};

/// Issue 10's targets.
const DURABLE_PUBLISH_RATIO: f64 = 0.70;
const DURABLE_RECEIVE_RATIO: f64 = 0.80;
const BACKLOG_TARGET_MESSAGES: usize = 1_000_000;
const BACKLOG_RSS_MB: f64 = 200.0;
/// The deep backlog that must be served within a bound.
const SERVED_TARGET_MESSAGES: usize = 10_000_000;
const SERVED_RSS_MB: f64 = 1000.0;
const RESTART_SECONDS: f64 = 1.0;
const IDLE_RSS_MB: f64 = 15.0;

const LABEL: usize = 44;
const COLUMN: usize = 16;

/// The note on a backlog target measured with another backlog than its own.
fn indicative_unless(plan: &Plan, target_messages: usize) -> String {
    if plan.backlog == target_messages {
        return String::new();
    }
    format!(
        " [indicative only: backlog {}, the target's is {}]",
        thousands(plan.backlog as f64),
        thousands(target_messages as f64)
    )
}

pub fn size_label(size: usize) -> String {
    if size >= KB && size.is_multiple_of(KB) {
        format!("{} KB", size / KB)
    } else {
        format!("{size} B")
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(clippy::cast_precision_loss)]
fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A cell's text: its value, `error` (the message is on stderr and below),
/// or `-` when not measured.
fn text<T>(cell: &Cell<T>, show: impl Fn(&T) -> String) -> String {
    match cell {
        None => "-".to_owned(),
        Some(Err(_)) => "error".to_owned(),
        Some(Ok(value)) => show(value),
    }
}

fn value<T: Copy>(cell: &Cell<T>) -> Option<T> {
    match cell {
        Some(Ok(value)) => Some(*value),
        _ => None,
    }
}

#[allow(clippy::print_stdout)]
fn row(label: &str, cells: &[String]) {
    let mut line = format!("{label:<LABEL$}");
    for cell in cells {
        line.push_str(&format!("{cell:>COLUMN$}"));
    }
    println!("{}", line.trim_end());
}

#[allow(clippy::print_stdout)]
fn heading(title: &str, results: &[&Results]) {
    println!();
    println!("{title}");
    let names: Vec<String> = results
        .iter()
        .map(|r| r.target.label().to_owned())
        .collect();
    row("", &names);
}

fn find(all: &[Results], target: Target) -> Option<&Results> {
    all.iter().find(|r| r.target == target)
}

fn throughput_of(results: &Results, size: usize) -> Option<Throughput> {
    results
        .throughput
        .iter()
        .find(|(s, _)| *s == size)
        .and_then(|(_, cell)| value(cell))
        .map(|summary| summary.median)
}

/// `min-max` in thousands.
fn range_k(min: f64, max: f64) -> String {
    format!("{:.0}k-{:.0}k", min / 1e3, max / 1e3)
}

fn thousands(value: f64) -> String {
    crate::support::thousands(value)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[allow(clippy::print_stdout, clippy::too_many_lines)]
pub fn print(plan: &Plan, all: &[Results], elapsed: Duration, load: (&str, &str)) {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!(
        "baton-bench --server{}: {} core(s), 1-minute load {} at the start, {} at the end; run took {:.0} s",
        if plan.quick { " --quick" } else { "" },
        cores,
        load.0,
        load.1,
        elapsed.as_secs_f64()
    );
    println!(
        "Load generator: baton-client in this process, for every target; each server a separate process on 127.0.0.1"
    );

    // Servers (everything but the echo) and all targets.
    let every: Vec<&Results> = all.iter().collect();
    let servers: Vec<&Results> = all.iter().filter(|r| r.target != Target::Echo).collect();

    heading(
        &format!(
            "Throughput, median of {} round(s) after a warm-up (publish: batches of up to 1000 messages / 3 MB / 10 ms, \
             32 MB in flight; receive+ack: StreamingPull, flow control 5000 messages)",
            plan.rounds
        ),
        &every,
    );
    for (size, n) in &plan.sizes {
        let label = size_label(*size);
        let cells = |show: &dyn Fn(Summary) -> String| -> Vec<String> {
            every
                .iter()
                .map(|r| match r.throughput.iter().find(|(s, _)| s == size) {
                    Some((_, cell)) => text(cell, |t| show(*t)),
                    None => "-".to_owned(),
                })
                .collect()
        };
        let ranges = plan.rounds > 1;
        row(
            &format!("{label} x {}: publish msg/s", thousands(*n as f64)),
            &cells(&|t| thousands(t.median.publish)),
        );
        if ranges {
            row(
                "  (range over the rounds)",
                &cells(&|t| range_k(t.min.publish, t.max.publish)),
            );
        }
        row(
            &format!("{label}: publish MB/s"),
            &cells(&|t| format!("{:.1}", t.median.publish_mb)),
        );
        row(
            &format!("{label}: receive+ack msg/s"),
            &cells(&|t| thousands(t.median.receive)),
        );
        if ranges {
            row(
                "  (range over the rounds)",
                &cells(&|t| range_k(t.min.receive, t.max.receive)),
            );
        }
    }

    heading(
        &format!(
            "Latency publish -> delivery, 1 KB at {} msg/s offered for {:.0} s (batches flushed after 1 ms)",
            plan.latency_rate,
            plan.latency_duration.as_secs_f64()
        ),
        &servers,
    );
    let latency = |show: &dyn Fn(&Latency) -> String| -> Vec<String> {
        servers
            .iter()
            .map(|r| text(&r.latency, |l| show(l)))
            .collect()
    };
    row("p50 ms", &latency(&|l| format!("{:.2}", ms(l.p50))));
    row("p99 ms", &latency(&|l| format!("{:.2}", ms(l.p99))));
    row("p99.9 ms", &latency(&|l| format!("{:.2}", ms(l.p999))));
    row("max ms", &latency(&|l| format!("{:.2}", ms(l.max))));
    row(
        "samples (offered msg/s)",
        &latency(&|l| format!("{} ({:.0})", l.messages, l.offered)),
    );

    heading(
        &format!(
            "Fan-out: {} x 1 KB to {} subscriptions of one topic, one stream each",
            thousands(plan.fan_messages as f64),
            plan.fan
        ),
        &servers,
    );
    row(
        "delivered msg/s",
        &servers
            .iter()
            .map(|r| text(&r.fanout, |f| thousands(f.rate)))
            .collect::<Vec<_>>(),
    );
    row(
        "all delivered after s",
        &servers
            .iter()
            .map(|r| text(&r.fanout, |f| format!("{:.2}", f.elapsed.as_secs_f64())))
            .collect::<Vec<_>>(),
    );

    heading(
        &format!(
            "{} StreamingPull streams: {} subscriptions of one topic, one stream each, over {} connections; \
             then {} x 1 KB, each to every stream",
            thousands(plan.streams as f64),
            thousands(plan.streams as f64),
            plan.stream_connections,
            plan.stream_messages
        ),
        &servers,
    );
    let streams = |show: &dyn Fn(&Streams) -> String| -> Vec<String> {
        servers
            .iter()
            .map(|r| text(&r.streams, |s| show(s)))
            .collect()
    };
    row(
        &format!("create {} subscriptions s", thousands(plan.streams as f64)),
        &streams(&|s| format!("{:.2}", s.create.as_secs_f64())),
    );
    row(
        "all streams open and delivering s",
        &streams(&|s| format!("{:.2}", s.open.as_secs_f64())),
    );
    row(
        "delivered msg/s",
        &streams(&|s| thousands(s.delivered.rate)),
    );

    heading(
        &format!(
            "Startup and restart (backlog: {} x 1 KB, one subscription, no subscriber)",
            thousands(plan.backlog as f64)
        ),
        &servers,
    );
    row(
        "spawn -> first RPC answered ms",
        &servers
            .iter()
            .map(|r| text(&r.startup, |d| format!("{:.0}", ms(*d))))
            .collect::<Vec<_>>(),
    );
    row(
        "backlog publish msg/s",
        &servers
            .iter()
            .map(|r| {
                text(&r.backlog, |b| {
                    thousands(super::workloads::per_second(b.messages, b.publish))
                })
            })
            .collect::<Vec<_>>(),
    );
    let restart = |show: &dyn Fn(&Restart) -> String| -> Vec<String> {
        servers
            .iter()
            .map(|r| match (r.target, &r.restart) {
                (Target::Disk, cell) => text(cell, |x| show(x)),
                _ => "n/a".to_owned(),
            })
            .collect()
    };
    row(
        "SIGTERM -> exit, backlog held s",
        &restart(&|x| format!("{:.2}", x.stop.as_secs_f64())),
    );
    row(
        "restart: spawn -> first RPC s",
        &restart(&|x| format!("{:.3}", x.first_rpc.as_secs_f64())),
    );
    row(
        "restart: spawn -> first delivery s",
        &restart(&|x| format!("{:.3}", x.first_delivery.as_secs_f64())),
    );
    row(
        "restart: then drain the backlog msg/s",
        &restart(&|x| thousands(super::workloads::per_second(x.drained, x.drain))),
    );

    heading(
        "RSS of the server process, MB (emulator: gcloud's process tree, JVM included)",
        &servers,
    );
    let rss = |cell: &Cell<u64>| text(cell, |kib| format!("{:.1}", mb(*kib)));
    row(
        "idle, 1 s after the first RPC",
        &servers
            .iter()
            .map(|r| rss(&r.idle_rss_kib))
            .collect::<Vec<_>>(),
    );
    row(
        "peak under load (sampled every 50 ms)",
        &servers
            .iter()
            .map(|r| rss(&r.peak_rss_kib))
            .collect::<Vec<_>>(),
    );
    row(
        "backlog held",
        &servers
            .iter()
            .map(|r| {
                text(&r.backlog, |b| {
                    b.rss_kib
                        .map_or("?".to_owned(), |k| format!("{:.1}", mb(k)))
                })
            })
            .collect::<Vec<_>>(),
    );
    row(
        "after restart, first delivery",
        &restart(&|x| {
            x.rss_kib
                .map_or("?".to_owned(), |k| format!("{:.1}", mb(k)))
        }),
    );
    row(
        "peak while draining the backlog",
        &restart(&|x| {
            x.drain_peak_rss_kib
                .map_or("?".to_owned(), |k| format!("{:.1}", mb(k)))
        }),
    );

    ratios(plan, all);
    targets(plan, all);
    errors(all);
}

#[allow(clippy::print_stdout)]
fn ratios(plan: &Plan, all: &[Results]) {
    println!();
    println!("Ratios (throughput medians)");
    let pair = |a: Target, b: Target, size: usize| -> Option<(f64, f64)> {
        let x = throughput_of(find(all, a)?, size)?;
        let y = throughput_of(find(all, b)?, size)?;
        Some((x.publish / y.publish, x.receive / y.receive))
    };
    let mut printed = false;
    for (size, _) in &plan.sizes {
        if let Some((p, r)) = pair(Target::Disk, Target::Memory, *size) {
            println!(
                "  {:<30}publish {:6.1}%    receive+ack {:6.1}%",
                format!("disk/memory, {}:", size_label(*size)),
                p * 100.0,
                r * 100.0
            );
            printed = true;
        }
    }
    for baton in [Target::Memory, Target::Disk] {
        for (size, _) in &plan.sizes {
            if let Some((p, r)) = pair(baton, Target::Emulator, *size) {
                println!(
                    "  {:<30}publish {:6.2}x    receive+ack {:6.2}x",
                    format!("{}/emulator, {}:", baton.slug(), size_label(*size)),
                    p,
                    r
                );
                printed = true;
            }
        }
    }
    for server in [Target::Memory, Target::Disk, Target::Emulator] {
        for (size, _) in &plan.sizes {
            if let Some((p, r)) = pair(server, Target::Echo, *size) {
                println!(
                    "  {:<30}publish {:6.1}%    receive+ack {:6.1}%",
                    format!("{}/echo, {}:", server.slug(), size_label(*size)),
                    p * 100.0,
                    r * 100.0
                );
                printed = true;
            }
        }
    }
    if !printed {
        println!("  (need two targets)");
    }
}

#[allow(clippy::print_stdout)]
fn targets(plan: &Plan, all: &[Results]) {
    println!();
    println!("Targets of issue 10");
    let (memory, disk) = (find(all, Target::Memory), find(all, Target::Disk));
    match (
        memory.and_then(|r| throughput_of(r, KB)),
        disk.and_then(|r| throughput_of(r, KB)),
    ) {
        (Some(m), Some(d)) => {
            let (p, r) = (d.publish / m.publish, d.receive / m.receive);
            println!(
                "  durable publish >= {:.0}% of in-memory (1 KB): {:.1}% ({} vs {} msg/s): {}",
                DURABLE_PUBLISH_RATIO * 100.0,
                p * 100.0,
                thousands(d.publish),
                thousands(m.publish),
                verdict(p >= DURABLE_PUBLISH_RATIO)
            );
            println!(
                "  durable receive+ack >= {:.0}% of in-memory (1 KB): {:.1}% ({} vs {} msg/s): {}",
                DURABLE_RECEIVE_RATIO * 100.0,
                r * 100.0,
                thousands(d.receive),
                thousands(m.receive),
                verdict(r >= DURABLE_RECEIVE_RATIO)
            );
        }
        _ => println!("  durable vs in-memory throughput: not measured (needs memory and disk)"),
    }
    let indicative = indicative_unless(plan, BACKLOG_TARGET_MESSAGES);
    let disk_backlog_rss = disk.and_then(|r| value(&r.backlog)).and_then(|b| b.rss_kib);
    match disk_backlog_rss {
        Some(kib) => println!(
            "  backlog 1,000,000 x 1 KB under {BACKLOG_RSS_MB:.0} MB RSS (disk store): {:.1} MB: {}{indicative}",
            mb(kib),
            verdict(mb(kib) < BACKLOG_RSS_MB)
        ),
        None => println!("  backlog RSS (disk store): not measured"),
    }
    match disk.and_then(|r| value(&r.restart)) {
        Some(x) => {
            println!(
                "  restart, first RPC within {RESTART_SECONDS:.0} s: {:.3} s: {}{indicative}",
                x.first_rpc.as_secs_f64(),
                verdict(x.first_rpc.as_secs_f64() < RESTART_SECONDS)
            );
            println!(
                "  restart, first message delivered within {RESTART_SECONDS:.0} s: {:.3} s: {}{indicative}",
                x.first_delivery.as_secs_f64(),
                verdict(x.first_delivery.as_secs_f64() < RESTART_SECONDS)
            );
        }
        None => println!("  restart (disk store): not measured"),
    }
    let served = disk.and_then(|r| {
        let held = value(&r.backlog)?.rss_kib?;
        let restart = value(&r.restart)?;
        Some(
            [Some(held), restart.rss_kib, restart.drain_peak_rss_kib]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(held),
        )
    });
    let served_indicative = indicative_unless(plan, SERVED_TARGET_MESSAGES);
    match served {
        Some(kib) => println!(
            "  backlog 10,000,000 x 1 KB served within {SERVED_RSS_MB:.0} MB RSS (held, restarted, drained; disk store): peak {:.1} MB: {}{served_indicative}",
            mb(kib),
            verdict(mb(kib) <= SERVED_RSS_MB)
        ),
        None => println!("  backlog served (disk store): not measured"),
    }
    let mut idle_missed = false;
    for results in [disk, memory].into_iter().flatten() {
        match value(&results.idle_rss_kib) {
            Some(kib) => {
                idle_missed |= mb(kib) > IDLE_RSS_MB;
                println!(
                    "  idle RSS <= {IDLE_RSS_MB:.0} MB ({}): {:.1} MB: {}",
                    results.target.label(),
                    mb(kib),
                    verdict(mb(kib) <= IDLE_RSS_MB)
                );
            }
            None => println!("  idle RSS ({}): not measured", results.target.label()),
        }
    }
    if idle_missed {
        // Most of an idle server is the code start-up touched; the usual
        // cause of a rise is a start-up list the build no longer matches.
        println!(
            "    (is crates/baton/startup.order stale for this build? `scripts/startup-order --check` tells)"
        );
    }
}

/// Every failed measure with its message.
#[allow(clippy::print_stdout)]
fn errors(all: &[Results]) {
    let mut lines = Vec::new();
    for r in all {
        let mut add = |what: &str, error: Option<&String>| {
            if let Some(error) = error {
                lines.push(format!("  {} {what}: {error}", r.target.label()));
            }
        };
        add("startup", error_of(&r.startup).as_ref());
        add("idle RSS", error_of(&r.idle_rss_kib).as_ref());
        add("peak RSS", error_of(&r.peak_rss_kib).as_ref());
        for (size, cell) in &r.throughput {
            add(
                &format!("throughput {}", size_label(*size)),
                error_of(cell).as_ref(),
            );
        }
        add("latency", error_of(&r.latency).as_ref());
        add("fan-out", error_of(&r.fanout).as_ref());
        add("streams", error_of(&r.streams).as_ref());
        add("backlog", error_of(&r.backlog).as_ref());
        add("restart", error_of(&r.restart).as_ref());
    }
    if !lines.is_empty() {
        println!();
        println!("Failures");
        for line in lines {
            println!("{line}");
        }
    }
}

fn error_of<T>(cell: &Cell<T>) -> Option<String> {
    match cell {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    }
}
