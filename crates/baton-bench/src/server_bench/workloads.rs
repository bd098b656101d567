//! The workloads of `--server`, all through `baton-client` (the same load
//! generator for every target): throughput, latency at a fixed rate,
//! fan-out, many streams, and the backlog of the restart measure.
//!
//! Every message carries its index in the attribute `i`; a [`Tally`]
//! counts distinct indexes, so "all delivered" means every message at
//! least once (redeliveries are not counted twice).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use baton_client::{
    BatchSettings, Client, Message, PublishHandle, Publisher, PublisherConfig, ReceivedMessage,
    SubscriberConfig, SubscriptionConfig, SubscriptionHandle,
};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::echo::Echo;

/// Most bytes per Publish request: under the 4 MiB a gRPC-Java server (the
/// emulator) takes by default, for every target alike.
const BATCH_BYTES: usize = 3_000_000;
/// Most messages per Publish request (the API's limit).
const BATCH_MESSAGES: usize = 1000;
/// Subscriber flow control of the throughput rounds: most outstanding
/// messages (as the client benchmark's default).
const MAX_OUTSTANDING: usize = 5000;
/// Bytes a publisher may have queued and unanswered: keeps the client's
/// memory bounded for large messages and long backlogs.
const WINDOW_BYTES: usize = 32 * 1024 * 1024;
/// Concurrent CreateSubscription calls when making many.
const CREATE_CALLERS: usize = 8;

/// Counts distinct deliveries of a known set of `len` messages; wakes the
/// waiter when all have arrived.
#[derive(Debug, Clone)]
pub struct Tally {
    seen: Arc<Vec<AtomicBool>>,
    distinct: Arc<AtomicUsize>,
    all_in: Arc<Notify>,
}

impl Tally {
    pub fn new(len: usize) -> Self {
        Self {
            seen: Arc::new((0..len).map(|_| AtomicBool::new(false)).collect()),
            distinct: Arc::new(AtomicUsize::new(0)),
            all_in: Arc::new(Notify::new()),
        }
    }

    fn mark(&self, index: usize) {
        if let Some(flag) = self.seen.get(index)
            && !flag.swap(true, Ordering::AcqRel)
            && self.distinct.fetch_add(1, Ordering::AcqRel) + 1 == self.seen.len()
        {
            self.all_in.notify_one();
        }
    }

    fn count(&self) -> usize {
        self.distinct.load(Ordering::Acquire)
    }

    /// Waits until every message was delivered, or fails after `limit`.
    async fn wait(&self, limit: Duration, what: &str) -> Result<()> {
        if self.count() == self.seen.len() {
            return Ok(());
        }
        if tokio::time::timeout(limit, self.all_in.notified())
            .await
            .is_err()
        {
            bail!(
                "{what}: {} of {} delivered within {limit:?}",
                self.count(),
                self.seen.len()
            );
        }
        Ok(())
    }
}

/// A handler that acks every message and marks `offset + i` in `main`, or,
/// for a probe (attribute `p`), `probe_index` in `probe`.
fn counting_handler(
    main: Tally,
    offset: usize,
    probe: Option<(Tally, usize)>,
) -> impl Fn(ReceivedMessage) -> std::future::Ready<()> + Send + Sync + 'static {
    move |message| {
        let attributes = message.attributes();
        if attributes.contains_key("p") {
            if let Some((probe, index)) = &probe {
                probe.mark(*index);
            }
        } else if let Some(i) = attributes.get("i").and_then(|i| i.parse::<usize>().ok()) {
            main.mark(offset + i);
        }
        message.ack();
        std::future::ready(())
    }
}

fn publisher_config(max_delay: Duration, max_messages: usize) -> PublisherConfig {
    PublisherConfig::default().with_batching(
        BatchSettings::default()
            .with_max_messages(max_messages)
            .with_max_bytes(BATCH_BYTES)
            .with_max_delay(max_delay),
    )
}

fn subscriber_config(max_outstanding: usize) -> SubscriberConfig {
    SubscriberConfig::default().with_flow_control(max_outstanding, 500 * 1024 * 1024)
}

/// Messages a publisher may have queued and unanswered.
fn window(size: usize) -> usize {
    (WINDOW_BYTES / size.max(1)).clamp(100, 20_000)
}

/// Publishes `n` messages made by `make`, at most `window` unanswered at a
/// time; fails on the first failed publish. `progress` is told the count
/// of answered publishes every tenth of `n`.
async fn publish_n(
    publisher: &Publisher,
    n: usize,
    window: usize,
    mut make: impl FnMut(usize) -> Message,
    progress: Option<&dyn Fn(usize)>,
) -> Result<()> {
    let every = (n / 10).max(1);
    let mut answered = 0;
    let mut pending: VecDeque<PublishHandle> = VecDeque::with_capacity(window);
    for i in 0..n {
        pending.push_back(publisher.publish(make(i)));
        if pending.len() >= window
            && let Some(handle) = pending.pop_front()
        {
            handle.await.context("publish")?;
            answered += 1;
            if let Some(progress) = progress
                && answered % every == 0
            {
                progress(answered);
            }
        }
    }
    for handle in pending {
        handle.await.context("publish")?;
    }
    Ok(())
}

async fn create(client: &Client, topic: &str, subscriptions: &[String]) -> Result<()> {
    client
        .create_topic(topic)
        .await
        .with_context(|| format!("creating topic {topic}"))?;
    for sub in subscriptions {
        client
            .create_subscription(
                SubscriptionConfig::new(sub, topic).with_ack_deadline(Duration::from_secs(60)),
            )
            .await
            .with_context(|| format!("creating subscription {sub}"))?;
    }
    Ok(())
}

/// How long to wait for `n` deliveries.
fn delivery_limit(n: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(u64::try_from(n).unwrap_or(u64::MAX))
}

#[allow(clippy::cast_precision_loss)]
pub fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// Throughput of one round.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Messages/s from the first publish until every publish was answered.
    pub publish: f64,
    /// Payload MB/s (10^6 bytes) of the same.
    pub publish_mb: f64,
    /// Messages/s from the subscribe call until all were received and the
    /// session shut down (which flushes the acks).
    pub receive: f64,
}

/// Publishes `n` messages of `size` bytes to a fresh topic with one
/// subscription, then receives and acks them all with a StreamingPull
/// subscriber. Against the echo, its StreamingPull is loaded with `n`
/// messages before subscribing.
pub async fn throughput(
    client: &Client,
    prefix: &str,
    size: usize,
    n: usize,
    echo: Option<&Echo>,
) -> Result<Throughput> {
    let topic = format!("{prefix}-topic");
    let sub = format!("{prefix}-sub");
    create(client, &topic, std::slice::from_ref(&sub)).await?;
    let data = crate::support::payload(size);
    let publisher = client.publisher_with(
        &topic,
        publisher_config(Duration::from_millis(10), BATCH_MESSAGES),
    );
    let started = Instant::now();
    publish_n(
        &publisher,
        n,
        window(size),
        |i| Message::new(data.clone()).with_attribute("i", i.to_string()),
        None,
    )
    .await?;
    let publish_time = started.elapsed();
    publisher.shutdown().await;
    if let Some(echo) = echo {
        echo.prepare(n, size)?;
    }

    let (_, receive_time) = receive_all(client, &sub, &Tally::new(n), "receive+ack").await?;
    client.delete_subscription(&sub).await?;
    client.delete_topic(&topic).await?;
    #[allow(clippy::cast_precision_loss)]
    let bytes = (n * size) as f64;
    Ok(Throughput {
        publish: per_second(n, publish_time),
        publish_mb: bytes / publish_time.as_secs_f64() / 1e6,
        receive: per_second(n, receive_time),
    })
}

/// Publish-to-delivery latency at a fixed offered rate.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub messages: usize,
    /// The rate actually offered (messages published / publishing time).
    pub offered: f64,
}

/// The `q` quantile of sorted nanoseconds.
fn quantile(sorted: &[u64], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len().saturating_sub(1));
    Duration::from_nanos(sorted.get(index).copied().unwrap_or(0))
}

/// Publishes `rate` messages/s of `size` bytes for `duration`, each stamped
/// with its publish time (nanoseconds since a shared `Instant`, attribute
/// `t`), to a subscription a StreamingPull subscriber already streams from
/// (a probe message went through first). The subscriber records receipt
/// minus stamp for every message. Publish batches are flushed after 1 ms,
/// so batching adds at most that.
pub async fn latency(
    client: &Client,
    prefix: &str,
    size: usize,
    rate: u32,
    duration: Duration,
) -> Result<Latency> {
    let topic = format!("{prefix}-topic");
    let sub = format!("{prefix}-sub");
    create(client, &topic, std::slice::from_ref(&sub)).await?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    ensure!(total > 0, "no messages at {rate} msg/s for {duration:?}");
    let base = Instant::now();
    let samples: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let tally = Tally::new(total);
    let probe = Tally::new(1);
    let subscriber = client.subscriber_with(&sub, subscriber_config(MAX_OUTSTANDING));
    let handle = subscriber.subscribe({
        let (samples, tally, probe) = (samples.clone(), tally.clone(), probe.clone());
        move |message: ReceivedMessage| {
            let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let attributes = message.attributes();
            if attributes.contains_key("p") {
                probe.mark(0);
            } else {
                let stamp = attributes.get("t").and_then(|t| t.parse::<u64>().ok());
                let index = attributes.get("i").and_then(|i| i.parse::<usize>().ok());
                if let (Some(stamp), Some(index)) = (stamp, index)
                    && let Ok(mut samples) = samples.lock()
                    && !tally
                        .seen
                        .get(index)
                        .is_some_and(|f| f.load(Ordering::Acquire))
                {
                    samples.push(now.saturating_sub(stamp));
                }
                if let Some(index) = index {
                    tally.mark(index);
                }
            }
            message.ack();
            std::future::ready(())
        }
    });
    let publisher = client.publisher_with(&topic, publisher_config(Duration::from_millis(1), 100));
    let data = crate::support::payload(size);
    let result = async {
        publisher
            .publish(Message::new(data.clone()).with_attribute("p", "0"))
            .await
            .context("publishing the probe")?;
        probe
            .wait(Duration::from_secs(60), "the probe message")
            .await?;
        let mut handles = Vec::with_capacity(total);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let started = Instant::now();
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let due = ((started.elapsed().as_secs_f64() * f64::from(rate)) as usize).min(total);
            while sent < due {
                let stamp = base.elapsed().as_nanos().to_string();
                handles.push(
                    publisher.publish(
                        Message::new(data.clone())
                            .with_attribute("i", sent.to_string())
                            .with_attribute("t", stamp),
                    ),
                );
                sent += 1;
            }
        }
        let offered = per_second(total, started.elapsed());
        for handle in handles {
            handle.await.context("publish")?;
        }
        tally.wait(delivery_limit(total), "latency").await?;
        Ok::<_, anyhow::Error>(offered)
    }
    .await;
    publisher.shutdown().await;
    handle.shutdown().await.context("subscriber shutdown")?;
    let offered = result?;
    let mut sorted = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("latency samples poisoned"))?
        .clone();
    sorted.sort_unstable();
    client.delete_subscription(&sub).await?;
    client.delete_topic(&topic).await?;
    Ok(Latency {
        p50: quantile(&sorted, 0.50),
        p99: quantile(&sorted, 0.99),
        p999: quantile(&sorted, 0.999),
        max: quantile(&sorted, 1.0),
        messages: sorted.len(),
        offered,
    })
}

/// Deliveries of a fan-out or many-stream round.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// Deliveries (subscriptions × messages) per second, from the first
    /// publish until every subscription had every message.
    pub rate: f64,
    pub deliveries: usize,
    pub elapsed: Duration,
}

/// Starts one subscriber per subscription, spread over `clients` (one
/// HTTP/2 connection each), counting into `main` at `index * n` and the
/// probe of subscription `index` into `probe`.
fn subscribe_all(
    clients: &[Client],
    subscriptions: &[String],
    main: &Tally,
    n: usize,
    probe: &Tally,
) -> Vec<SubscriptionHandle> {
    subscriptions
        .iter()
        .enumerate()
        .filter_map(|(index, sub)| {
            let client = clients.get(index % clients.len().max(1))?;
            Some(
                client
                    .subscriber_with(sub, subscriber_config(1000))
                    .subscribe(counting_handler(
                        main.clone(),
                        index * n,
                        Some((probe.clone(), index)),
                    )),
            )
        })
        .collect()
}

/// Shuts every subscriber down, concurrently; the first error.
async fn shutdown_all(handles: Vec<SubscriptionHandle>) -> Result<()> {
    let mut tasks = JoinSet::new();
    for handle in handles {
        tasks.spawn(handle.shutdown());
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.map_err(anyhow::Error::from).and_then(|r| Ok(r?))
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Publishes a probe, then `n` messages, and waits until each of the
/// `subscriptions` received all of them; the probe shows when every
/// stream is open and delivering (its time, from `opened_since`).
async fn deliver_to_all(
    publisher: &Publisher,
    main: &Tally,
    probe: &Tally,
    subscriptions: usize,
    n: usize,
    size: usize,
    opened_since: Instant,
) -> Result<(Duration, Delivered)> {
    let data = crate::support::payload(size);
    publisher
        .publish(Message::new(data.clone()).with_attribute("p", "0"))
        .await
        .context("publishing the probe")?;
    probe
        .wait(Duration::from_secs(300), "probe to every subscription")
        .await?;
    let open = opened_since.elapsed();
    let started = Instant::now();
    publish_n(
        publisher,
        n,
        window(size),
        |i| Message::new(data.clone()).with_attribute("i", i.to_string()),
        None,
    )
    .await?;
    let deliveries = subscriptions * n;
    main.wait(delivery_limit(deliveries), "deliveries").await?;
    let elapsed = started.elapsed();
    Ok((
        open,
        Delivered {
            rate: per_second(deliveries, elapsed),
            deliveries,
            elapsed,
        },
    ))
}

/// One topic, `fan` subscriptions with a StreamingPull subscriber each
/// (open and delivering before timing starts), `n` messages of `size`
/// bytes published: every subscription receives every message.
pub async fn fanout(
    client: &Client,
    prefix: &str,
    fan: usize,
    n: usize,
    size: usize,
) -> Result<Delivered> {
    let topic = format!("{prefix}-topic");
    let subscriptions: Vec<String> = (0..fan).map(|k| format!("{prefix}-sub-{k}")).collect();
    create(client, &topic, &subscriptions).await?;
    let (main, probe) = (Tally::new(fan * n), Tally::new(fan));
    let handles = subscribe_all(
        std::slice::from_ref(client),
        &subscriptions,
        &main,
        n,
        &probe,
    );
    let publisher = client.publisher_with(
        &topic,
        publisher_config(Duration::from_millis(10), BATCH_MESSAGES),
    );
    let result = deliver_to_all(&publisher, &main, &probe, fan, n, size, Instant::now()).await;
    publisher.shutdown().await;
    shutdown_all(handles).await?;
    let (_, delivered) = result?;
    for sub in &subscriptions {
        client.delete_subscription(sub).await?;
    }
    client.delete_topic(&topic).await?;
    Ok(delivered)
}

/// The many-streams measure.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    /// Creating the subscriptions (concurrent CreateSubscription calls).
    pub create: Duration,
    /// From the first subscribe call until every stream had delivered the
    /// probe published right after the last subscribe call.
    pub open: Duration,
    pub delivered: Delivered,
}

/// `streams` subscriptions of one topic with one StreamingPull subscriber
/// each, spread over `clients` (one HTTP/2 connection each); then `n`
/// messages published, each delivered on every stream.
pub async fn streams(
    clients: &[Client],
    prefix: &str,
    streams: usize,
    n: usize,
    size: usize,
) -> Result<Streams> {
    let admin = clients.first().context("no client")?;
    let topic = format!("{prefix}-topic");
    create(admin, &topic, &[]).await?;
    let subscriptions: Vec<String> = (0..streams).map(|k| format!("{prefix}-sub-{k}")).collect();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for caller in 0..CREATE_CALLERS {
        let (client, topic) = (admin.clone(), topic.clone());
        let mine: Vec<String> = subscriptions
            .iter()
            .skip(caller)
            .step_by(CREATE_CALLERS)
            .cloned()
            .collect();
        tasks.spawn(async move {
            for sub in mine {
                client
                    .create_subscription(
                        SubscriptionConfig::new(&sub, &topic)
                            .with_ack_deadline(Duration::from_secs(60)),
                    )
                    .await
                    .with_context(|| format!("creating subscription {sub}"))?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let create = started.elapsed();
    eprintln!(
        "   created {streams} subscriptions in {:.2} s",
        create.as_secs_f64()
    );
    let (main, probe) = (Tally::new(streams * n), Tally::new(streams));
    let opened_since = Instant::now();
    let handles = subscribe_all(clients, &subscriptions, &main, n, &probe);
    let publisher = admin.publisher_with(
        &topic,
        publisher_config(Duration::from_millis(10), BATCH_MESSAGES),
    );
    let result = deliver_to_all(&publisher, &main, &probe, streams, n, size, opened_since).await;
    publisher.shutdown().await;
    let shutdown = shutdown_all(handles).await;
    let (open, delivered) = result?;
    shutdown?;
    Ok(Streams {
        create,
        open,
        delivered,
    })
}

/// Publishes `n` messages of `size` bytes to a fresh topic with one
/// subscription and no subscriber; the time until all were answered.
pub async fn publish_backlog(
    client: &Client,
    topic: &str,
    sub: &str,
    n: usize,
    size: usize,
) -> Result<Duration> {
    create(client, topic, &[sub.to_owned()]).await?;
    let data = crate::support::payload(size);
    let publisher = client.publisher_with(
        topic,
        publisher_config(Duration::from_millis(10), BATCH_MESSAGES),
    );
    let started = Instant::now();
    let progress = |answered: usize| {
        eprintln!(
            "   backlog: {answered} published ({} msg/s)",
            crate::support::thousands(per_second(answered, started.elapsed()))
        );
    };
    let result = publish_n(
        &publisher,
        n,
        window(size),
        |i| Message::new(data.clone()).with_attribute("i", i.to_string()),
        Some(&progress),
    )
    .await;
    let elapsed = started.elapsed();
    publisher.shutdown().await;
    result?;
    Ok(elapsed)
}

/// Subscribes to `sub` and waits for its first message; the time from
/// `since` to its receipt. Every message it receives is acked and marked in
/// `tally`.
pub async fn first_delivery(
    client: &Client,
    sub: &str,
    since: Instant,
    limit: Duration,
    tally: &Tally,
) -> Result<Duration> {
    let first: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let arrived = Arc::new(Notify::new());
    let counting = counting_handler(tally.clone(), 0, None);
    let handle = client
        .subscriber_with(sub, subscriber_config(100))
        .subscribe({
            let (first, arrived) = (first.clone(), arrived.clone());
            move |message: ReceivedMessage| {
                if first.set(Instant::now()).is_ok() {
                    arrived.notify_one();
                }
                counting(message)
            }
        });
    let waited = tokio::time::timeout(limit, arrived.notified()).await;
    handle.shutdown().await.context("subscriber shutdown")?;
    if waited.is_err() {
        bail!("no message delivered within {limit:?}");
    }
    let at = first.get().context("no first message")?;
    Ok(at.saturating_duration_since(since))
}

/// Receives and acks `sub`'s messages until every message of `tally` was
/// delivered (`what` names the phase in errors and progress); how many this
/// call received, and how long it took, its subscriber's shutdown included.
pub async fn receive_all(
    client: &Client,
    sub: &str,
    tally: &Tally,
    what: &str,
) -> Result<(usize, Duration)> {
    let before = tally.count();
    let left = tally.seen.len().saturating_sub(before);
    let started = Instant::now();
    let handle = client
        .subscriber_with(sub, subscriber_config(MAX_OUTSTANDING))
        .subscribe(counting_handler(tally.clone(), 0, None));
    let progress = async {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            eprintln!(
                "   {what}: {} of {left} received",
                tally.count().saturating_sub(before)
            );
        }
    };
    let received = tokio::select! {
        received = tally.wait(delivery_limit(left), what) => received,
        () = progress => Ok(()),
    };
    handle.shutdown().await.context("subscriber shutdown")?;
    let elapsed = started.elapsed();
    received?;
    Ok((tally.count().saturating_sub(before), elapsed))
}
