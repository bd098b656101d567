//! `baton-bench --catalog-scale`: how creating subscriptions scales on the
//! disk store (issue 10, item 4: 100,000 subscriptions in under 60 s, and
//! one catalog change costing the same at any catalog size).
//!
//! An in-process server on a fresh disk store gets one topic, then
//! `--subscriptions` CreateSubscription calls over gRPC from
//! [`CONCURRENT_CALLS`] concurrent callers (each call answers only once its
//! change is on disk). The report gives the total time, and the create rate
//! of each tenth of the run: if a change cost more as the catalog grew, the
//! last tenth would be slower than the first. Then the server is stopped
//! and started again on the same store, and the time until it answers a
//! ListSubscriptions page is the restart cost of that catalog.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{ListSubscriptionsRequest, Subscription, Topic};
use baton_server::ServerConfig;
use tonic::transport::Channel;

/// Callers creating subscriptions at once (the way a provisioning script
/// with a pool of workers would).
const CONCURRENT_CALLS: usize = 64;
const PROJECT: &str = "catalog-bench";
/// The target of the issue for 100,000 subscriptions.
const TARGET: Duration = Duration::from_secs(60);

fn config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.broker_spans = false;
    config.data_dir = Some(dir.to_path_buf());
    config
}

async fn connect(server: &baton_server::RunningServer) -> Result<Channel> {
    crate::trace_load::connect(server.local_addr()).await
}

/// Creates `count` subscriptions; returns when each tenth of them was done.
async fn create_all(channel: Channel, topic: &str, count: usize) -> Result<Vec<Duration>> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tenth = (count / 10).max(1);
    let marks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut callers = Vec::new();
    for _ in 0..CONCURRENT_CALLS {
        let (next, done, marks) = (next.clone(), done.clone(), marks.clone());
        let mut client = SubscriberClient::new(channel.clone());
        let topic = topic.to_string();
        callers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                client
                    .create_subscription(Subscription {
                        name: format!("projects/{PROJECT}/subscriptions/sub-{n:06}"),
                        topic: topic.clone(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("creating subscription {n}"))?;
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % tenth == 0 {
                    let elapsed = start.elapsed();
                    if let Ok(mut marks) = marks.lock() {
                        marks.push(elapsed);
                    }
                    eprintln!(
                        "  {finished} subscriptions after {:.1} s",
                        elapsed.as_secs_f64()
                    );
                }
            }
        }));
    }
    for caller in callers {
        caller.await??;
    }
    let mut marks = marks
        .lock()
        .map_err(|_| anyhow::anyhow!("a caller panicked"))?
        .clone();
    marks.sort();
    Ok(marks)
}

/// Runs the measurement and prints the report.
pub async fn run(subscriptions: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    eprintln!(
        "creating {subscriptions} subscriptions on the disk store ({CONCURRENT_CALLS} concurrent callers)..."
    );
    let server = baton_server::start(config(dir.path())).await?;
    let channel = connect(&server).await?;
    let topic = format!("projects/{PROJECT}/topics/catalog");
    PublisherClient::new(channel.clone())
        .create_topic(Topic {
            name: topic.clone(),
            ..Default::default()
        })
        .await?;
    let start = Instant::now();
    let marks = create_all(channel, &topic, subscriptions).await?;
    let total = start.elapsed();
    server.shutdown().await?;

    eprintln!("restarting on the same store...");
    let restart = Instant::now();
    let server = baton_server::start(config(dir.path())).await?;
    let channel = connect(&server).await?;
    let page = SubscriberClient::new(channel)
        .list_subscriptions(ListSubscriptionsRequest {
            project: format!("projects/{PROJECT}"),
            page_size: 10,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let restarted = restart.elapsed();
    ensure!(
        page.subscriptions.len() == 10.min(subscriptions),
        "the restarted server lists {} subscriptions",
        page.subscriptions.len()
    );
    server.shutdown().await?;

    let rate = |from: Duration, to: Duration, n: usize| {
        let seconds = (to.saturating_sub(from)).as_secs_f64();
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            f64::INFINITY
        }
    };
    let tenth = (subscriptions / 10).max(1);
    println!();
    println!("catalog scale: {subscriptions} subscriptions on one topic, disk store");
    println!(
        "  created in {:.1} s ({:.0}/s overall; target for 100,000: under {} s: {})",
        total.as_secs_f64(),
        rate(Duration::ZERO, total, subscriptions),
        TARGET.as_secs(),
        if subscriptions >= 100_000 {
            crate::support::verdict(total < TARGET)
        } else {
            "n/a (fewer than 100,000)"
        }
    );
    let mut from = Duration::ZERO;
    let mut rates = Vec::new();
    for mark in &marks {
        rates.push(rate(from, *mark, tenth));
        from = *mark;
    }
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "  creates per second, by tenth of the run: {}",
        shown.join(", ")
    );
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!(
            "  last tenth / first tenth: {:.2} (1.00: a change costs the same at any catalog size)",
            last / first
        );
    }
    println!(
        "  restart with that catalog: first ListSubscriptions answered after {:.0} ms",
        restarted.as_secs_f64() * 1000.0
    );
    Ok(())
}
