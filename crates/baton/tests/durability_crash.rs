//! The durable store against a real crash: `baton serve --data-dir` killed
//! with SIGKILL while publishes are in flight, then started again on the
//! same directory. Every publish the server answered must come back, and
//! nothing acked before the kill may.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::pubsub::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, ReceivedMessage, Subscription, Topic,
};
use baton_testkit::grpc::{publisher, subscriber};
use baton_testkit::messages::{pull_request, subscription_in, topic_in};
use baton_testkit::process::ServeProcess;
use tonic::transport::Channel;

const PROJECT: &str = "crash-project";

fn topic_name(id: &str) -> String {
    topic_in(PROJECT, id)
}

fn subscription_name(id: &str) -> String {
    subscription_in(PROJECT, id)
}

/// `baton serve` with `args` in `cwd`, logging to `log`.
fn serve(cwd: &Path, args: &[&str], log: &Path) -> ServeProcess {
    ServeProcess::spawn(Path::new(env!("CARGO_BIN_EXE_baton")), cwd, args, log)
}

/// `baton serve --data-dir dir`, logging next to it; its first line must
/// name the store in `dir`.
fn durable(dir: &Path, log_name: &str) -> ServeProcess {
    let parent = dir.parent().expect("data dir has a parent");
    let server = serve(
        parent,
        &["--data-dir", dir.to_str().expect("utf-8 path")],
        &parent.join(log_name),
    );
    assert!(
        server.first_line().contains(&format!(
            "durable store {}",
            dir.join("baton.redb").display()
        )),
        "first line {:?}",
        server.first_line()
    );
    server
}

async fn create_topic_and_subscription(channel: &Channel, topic: &str, sub: &str) {
    publisher(channel.clone())
        .create_topic(Topic {
            name: topic_name(topic),
            ..Default::default()
        })
        .await
        .expect("create topic");
    subscriber(channel.clone())
        .create_subscription(Subscription {
            name: subscription_name(sub),
            topic: topic_name(topic),
            ack_deadline_seconds: 600,
            ..Default::default()
        })
        .await
        .expect("create subscription");
}

async fn publish(
    channel: &Channel,
    topic: &str,
    data: &[String],
) -> Result<Vec<String>, tonic::Status> {
    let mut request = tonic::Request::new(PublishRequest {
        topic: topic_name(topic),
        messages: data
            .iter()
            .map(|d| PubsubMessage {
                data: d.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
    });
    request.set_timeout(Duration::from_secs(10));
    publisher(channel.clone())
        .publish(request)
        .await
        .map(|r| r.into_inner().message_ids)
}

/// A pull that waits up to about `wait` for messages, or (`Duration::ZERO`)
/// answers at once with whatever is ready.
async fn pull(channel: &Channel, sub: &str, max: i32, wait: Duration) -> Vec<ReceivedMessage> {
    let immediately = wait.is_zero();
    let mut request = tonic::Request::new(pull_request(&subscription_name(sub), max, immediately));
    if !immediately {
        request.set_timeout(wait);
    }
    match subscriber(channel.clone()).pull(request).await {
        Ok(response) => response.into_inner().received_messages,
        Err(status) if status.code() == tonic::Code::DeadlineExceeded => Vec::new(),
        Err(status) => panic!("pull failed: {status:?}"),
    }
}

async fn ack(channel: &Channel, sub: &str, received: &[ReceivedMessage]) {
    subscriber(channel.clone())
        .acknowledge(AcknowledgeRequest {
            subscription: subscription_name(sub),
            ack_ids: received.iter().map(|r| r.ack_id.clone()).collect(),
        })
        .await
        .expect("ack");
}

fn id_and_data(received: &ReceivedMessage) -> (String, String) {
    let message = received.message.as_ref().expect("message present");
    (
        message.message_id.clone(),
        String::from_utf8(message.data.clone()).expect("utf-8 data"),
    )
}

/// Pulls and acks until every id of `expected` arrived (then drains what
/// else is ready, without waiting) or `within` passed; answers every
/// delivery, in order. The pulls wait for messages, so nothing polls.
async fn collect(
    channel: &Channel,
    sub: &str,
    expected: &BTreeSet<String>,
    within: Duration,
) -> Vec<(String, String)> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut missing = expected.clone();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(200) {
            break;
        }
        let wait = if missing.is_empty() {
            Duration::ZERO
        } else {
            left.min(Duration::from_secs(2))
        };
        let batch = pull(channel, sub, 1000, wait).await;
        if batch.is_empty() && missing.is_empty() {
            break;
        }
        if !batch.is_empty() {
            ack(channel, sub, &batch).await;
        }
        for received in &batch {
            let (id, data) = id_and_data(received);
            missing.remove(&id);
            got.push((id, data));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_sigkill_mid_storm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = durable(&data, "first.log");
    let channel = server.channel().await;
    create_topic_and_subscription(&channel, "crash-topic", "crash-sub").await;

    // Before the storm: 40 messages, 20 acked (must stay gone) and 20
    // left leased (must come back).
    let pre: Vec<String> = (0..40).map(|i| format!("pre-{i}")).collect();
    let pre_ids = publish(&channel, "crash-topic", &pre).await.unwrap();
    let mut leased = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while leased.len() < 40 {
        assert!(Instant::now() < deadline, "pre messages not delivered");
        leased.extend(pull(&channel, "crash-sub", 40, Duration::from_secs(2)).await);
    }
    leased.sort_by_key(|r| {
        id_and_data(r)
            .1
            .trim_start_matches("pre-")
            .parse::<u32>()
            .unwrap()
    });
    ack(&channel, "crash-sub", &leased[..20]).await;
    let acked_before: BTreeSet<String> = leased[..20].iter().map(|r| id_and_data(r).0).collect();
    let leased_before: BTreeMap<String, String> = leased[20..].iter().map(id_and_data).collect();
    assert_eq!(pre_ids.len(), 40);

    // The storm: 8 publishers, each on its own connection, record every
    // id the server answered.
    let confirmed: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(0));
    // How many publishes were confirmed, for the kill to wait on.
    let (progress, mut confirmed_count) = tokio::sync::watch::channel(0usize);
    let progress = Arc::new(progress);
    let mut publishers = Vec::new();
    for task in 0..8 {
        let channel = server.channel().await;
        let confirmed = confirmed.clone();
        let failures = failures.clone();
        let progress = progress.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0.. {
                // Batches of 1 to 3 messages.
                let batch: Vec<String> =
                    (0..=(n % 3)).map(|k| format!("w{task}-{n}-{k}")).collect();
                match publish(&channel, "crash-topic", &batch).await {
                    Ok(ids) => {
                        assert_eq!(ids.len(), batch.len());
                        let mut confirmed = confirmed.lock().unwrap();
                        for (id, data) in ids.into_iter().zip(batch) {
                            let earlier = confirmed.insert(id.clone(), data);
                            assert!(earlier.is_none(), "id {id} handed out twice");
                        }
                        progress.send_replace(confirmed.len());
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    // Kill once a few hundred messages were confirmed, mid-flight: woken
    // by the confirmation that reaches 300.
    let reached = tokio::time::timeout(
        Duration::from_secs(20),
        confirmed_count.wait_for(|count| *count >= 300),
    )
    .await
    .map(|count| *count.unwrap());
    assert!(
        reached.is_ok(),
        "only {} publishes confirmed within 20 s",
        confirmed.lock().unwrap().len()
    );
    server.kill();
    let killed_at = confirmed.lock().unwrap().len();
    for publisher in publishers {
        tokio::time::timeout(Duration::from_secs(15), publisher)
            .await
            .expect("publishers notice the kill")
            .expect("publisher task");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        8,
        "every publisher was cut off by the kill"
    );
    let confirmed = Arc::into_inner(confirmed).unwrap().into_inner().unwrap();
    assert!(confirmed.len() >= killed_at);
    drop(channel);

    // Restart on the same directory.
    let server = durable(&data, "second.log");
    let channel = server.channel().await;
    let mut expected: BTreeSet<String> = confirmed.keys().cloned().collect();
    expected.extend(leased_before.keys().cloned());
    let got = collect(&channel, "crash-sub", &expected, Duration::from_secs(20)).await;

    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (id, data) in &got {
        let entry = seen.entry(id.clone()).or_insert_with(|| (data.clone(), 0));
        assert_eq!(&entry.0, data, "id {id} came back with other data");
        entry.1 += 1;
    }
    let lost: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} confirmed or leased messages were lost after SIGKILL: {:?}",
        lost.len(),
        expected.len(),
        lost.iter().take(20).collect::<Vec<_>>()
    );
    for (id, data) in &confirmed {
        assert_eq!(&seen[id].0, data, "confirmed id {id} has other data");
    }
    for (id, data) in &leased_before {
        assert_eq!(&seen[id].0, data, "leased id {id} has other data");
    }
    let resurrected: Vec<&String> = acked_before
        .iter()
        .filter(|id| seen.contains_key(*id))
        .collect();
    assert!(
        resurrected.is_empty(),
        "messages acked before the kill came back: {resurrected:?}"
    );
    // Anything else was a publish in flight at the kill (committed, answer
    // lost): allowed, but it must be one of the storm's messages.
    for (id, (data, _)) in &seen {
        if !expected.contains(id) {
            assert!(
                data.starts_with('w'),
                "unexpected message {id} {data:?} after the restart"
            );
        }
    }

    let extras = seen.keys().filter(|id| !expected.contains(*id)).count();
    eprintln!(
        "confirmed {} ({killed_at} when the kill was sent), {} leased before, {extras} in flight and kept, {} deliveries",
        confirmed.len(),
        leased_before.len(),
        got.len()
    );

    // Ids keep increasing after the crash.
    let max_seen = seen
        .keys()
        .chain(acked_before.iter())
        .map(|id| id.parse::<u64>().expect("numeric id"))
        .max()
        .unwrap();
    let after = publish(&channel, "crash-topic", &["after".to_string()])
        .await
        .unwrap();
    let after_id: u64 = after[0].parse().unwrap();
    assert!(
        after_id > max_seen,
        "id {after_id} after the crash is not above {max_seen}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_create_publish_and_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = durable(&data, "first.log");
    let channel = server.channel().await;
    create_topic_and_subscription(&channel, "quick-topic", "quick-sub").await;
    let acked = publish(&channel, "quick-topic", &["acked".to_string()])
        .await
        .unwrap();
    let delivered = pull(&channel, "quick-sub", 10, Duration::from_secs(5)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(id_and_data(&delivered[0]).0, acked[0]);
    ack(&channel, "quick-sub", &delivered).await;
    let kept = publish(&channel, "quick-topic", &["kept".to_string()])
        .await
        .unwrap();
    // No pause: the answers promised all of it is on disk.
    server.kill();
    drop(channel);

    let server = durable(&data, "second.log");
    let channel = server.channel().await;
    let expected: BTreeSet<String> = kept.iter().cloned().collect();
    let got = collect(&channel, "quick-sub", &expected, Duration::from_secs(10)).await;
    assert_eq!(
        got,
        vec![(kept[0].clone(), "kept".to_string())],
        "the acked message stays acked, the published one is there"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_flag_disables_the_store_and_the_default_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let memory = serve(dir.path(), &["--in-memory"], &dir.path().join("memory.log"));
    assert!(
        memory
            .first_line()
            .contains("(gRPC and REST, in-memory store)"),
        "{:?}",
        memory.first_line()
    );
    drop(memory);
    // --in-memory wins over a data directory given too.
    let both = serve(
        dir.path(),
        &["--in-memory", "--data-dir", "elsewhere"],
        &dir.path().join("both.log"),
    );
    assert!(
        both.first_line().contains("in-memory store"),
        "{:?}",
        both.first_line()
    );
    drop(both);
    assert!(
        !dir.path().join("baton-data").exists() && !dir.path().join("elsewhere").exists(),
        "--in-memory writes no store"
    );

    // Without either flag the store is ./baton-data/baton.redb.
    let default = serve(dir.path(), &[], &dir.path().join("default.log"));
    assert!(
        default
            .first_line()
            .contains("durable store baton-data/baton.redb"),
        "{:?}",
        default.first_line()
    );
    assert!(dir.path().join("baton-data").join("baton.redb").is_file());
    drop(default);
}

/// The payload of backlog message `i`: its name, then filler up to 2 KB,
/// so the backlog spans several payload-log segments.
fn backlog_payload(i: usize) -> String {
    let mut data = format!("deep-{i:06}-");
    data.extend(std::iter::repeat_n(
        char::from(b'a' + (i % 26) as u8),
        2048 - data.len(),
    ));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_deep_drain_brings_back_every_unacked_message_once() {
    const BACKLOG: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = durable(&data, "first.log");
    let channel = server.channel().await;
    create_topic_and_subscription(&channel, "deep-topic", "deep-sub").await;
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    for start in (0..BACKLOG).step_by(1000) {
        let batch: Vec<String> = (start..start + 1000).map(backlog_payload).collect();
        let ids = publish(&channel, "deep-topic", &batch).await.unwrap();
        published.extend(ids.into_iter().zip(batch));
    }

    // Drain: pull and ack, recording every ack the server confirmed, and
    // the ids of an ack still in flight when the process dies.
    let confirmed: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let in_flight: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let (progress, mut acked_count) = tokio::sync::watch::channel(0usize);
    let drain = {
        let channel = server.channel().await;
        let (confirmed, in_flight) = (confirmed.clone(), in_flight.clone());
        tokio::spawn(async move {
            loop {
                let mut request =
                    tonic::Request::new(pull_request(&subscription_name("deep-sub"), 500, false));
                request.set_timeout(Duration::from_secs(5));
                let Ok(batch) = subscriber(channel.clone()).pull(request).await else {
                    return;
                };
                let batch = batch.into_inner().received_messages;
                let ids: BTreeSet<String> = batch.iter().map(|r| id_and_data(r).0).collect();
                *in_flight.lock().unwrap() = ids.clone();
                let acked = subscriber(channel.clone())
                    .acknowledge(AcknowledgeRequest {
                        subscription: subscription_name("deep-sub"),
                        ack_ids: batch.iter().map(|r| r.ack_id.clone()).collect(),
                    })
                    .await;
                if acked.is_err() {
                    return;
                }
                let mut confirmed = confirmed.lock().unwrap();
                confirmed.extend(ids);
                in_flight.lock().unwrap().clear();
                progress.send_replace(confirmed.len());
            }
        })
    };
    let reached = tokio::time::timeout(
        Duration::from_secs(60),
        acked_count.wait_for(|count| *count >= BACKLOG / 3),
    )
    .await;
    assert!(reached.is_ok(), "the drain did not get a third of the way");
    server.kill();
    tokio::time::timeout(Duration::from_secs(15), drain)
        .await
        .expect("the drain notices the kill")
        .expect("drain task");
    drop(channel);
    let confirmed = Arc::into_inner(confirmed).unwrap().into_inner().unwrap();
    let in_flight = Arc::into_inner(in_flight).unwrap().into_inner().unwrap();

    // Restart: every message whose ack was not confirmed comes back once
    // (an ack in flight at the kill may or may not have been applied),
    // whole; none whose ack was confirmed does.
    let server = durable(&data, "second.log");
    let channel = server.channel().await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let batch = pull(&channel, "deep-sub", 1000, Duration::ZERO).await;
        if batch.is_empty() {
            break;
        }
        for received in &batch {
            let (id, payload) = id_and_data(received);
            assert_eq!(
                published.get(&id),
                Some(&payload),
                "message {id} came back with other data"
            );
            *seen.entry(id).or_default() += 1;
        }
        ack(&channel, "deep-sub", &batch).await;
    }
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "delivered twice after the restart: {twice:?}"
    );
    let resurrected: Vec<&String> = confirmed
        .iter()
        .filter(|id| seen.contains_key(*id))
        .collect();
    assert!(
        resurrected.is_empty(),
        "acked before the kill: {resurrected:?}"
    );
    let lost: Vec<&String> = published
        .keys()
        .filter(|id| {
            !confirmed.contains(*id) && !in_flight.contains(*id) && !seen.contains_key(*id)
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} unacked messages were lost: {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    eprintln!(
        "{} acked before the kill, {} in flight, {} back after the restart",
        confirmed.len(),
        in_flight.len(),
        seen.len()
    );
    drop(server);
}
