#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The subscriber against the real server, in-process: StreamingPull
//! delivery and acks, receipt modacks and ack batching, nack and
//! redelivery, lease extension and its maximum, flow control, ordering
//! keys, reconnecting across a server restart, shutdown, exactly-once
//! delivery and unary pull.
//!
//! Every test runs on virtual time (`start_paused`): the client's lease
//! ticks, ack flushes and handlers' sleeps, the server's lease deadlines and
//! the proxy's timestamps share Tokio's paused clock, so a handler that runs
//! 25 s takes no real time and the tests assert the exact virtual instants
//! at which modacks, acks and redeliveries reach the server.

mod client_suite;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use baton_client::proto::{Subscription, Topic};
use baton_client::{
    AckError, Client, Message, PublisherConfig, ReceivedMessage, ShutdownBehavior, SubscribeError,
    SubscriberConfig, SubscriptionConfig, TracingConfig,
};
use baton_testkit::server::TestServer;
use baton_testkit::spans::SpanCapture;
use client_suite::{Proxy, SettleKind, client_at, ms_since, server_wall, virtual_server};
use futures::StreamExt;
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A server on virtual time with one topic and one subscription configured
/// by `configure`, and a client whose every call goes through a recording
/// proxy.
struct Setup {
    server: TestServer,
    proxy: Proxy,
    client: Client,
    topic: String,
    subscription: String,
}

async fn setup(configure: impl FnOnce(SubscriptionConfig) -> SubscriptionConfig) -> Setup {
    let server = virtual_server().await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    client.create_topic("events").await.unwrap();
    client
        .create_subscription(configure(SubscriptionConfig::new("worker", "events")))
        .await
        .unwrap();
    Setup {
        server,
        proxy,
        client,
        topic: "events".to_string(),
        subscription: "worker".to_string(),
    }
}

/// The settle calls the server got, as (virtual ms since `since`, kind,
/// number of ack ids).
fn settles_since(proxy: &Proxy, since: Instant) -> Vec<(u64, SettleKind, usize)> {
    proxy
        .settled()
        .iter()
        .filter(|s| s.at >= since)
        .map(|s| (ms_since(since, s.at), s.kind, s.ack_ids.len()))
        .collect()
}

async fn publish(
    client: &Client,
    topic: &str,
    messages: Vec<Message>,
    ordered: bool,
) -> Vec<String> {
    let publisher = client.publisher_with(
        topic,
        PublisherConfig::default().with_message_ordering(ordered),
    );
    let mut handles = Vec::new();
    for message in messages {
        handles.push(publisher.publish(message));
    }
    let mut ids = Vec::new();
    for handle in handles {
        ids.push(handle.await.unwrap());
    }
    publisher.shutdown().await;
    ids
}

/// Receives `n` items from `rx` within `within`.
async fn collect<T>(rx: &mut mpsc::UnboundedReceiver<T>, n: usize, within: Duration) -> Vec<T> {
    let mut items = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while items.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => break,
            Err(_) => panic!("received {} of {n} in {within:?}", items.len()),
        }
    }
    items
}

/// Pulls everything that arrives within `quiet` of the last message, acking
/// (or keeping) nothing: returns the messages.
async fn pull_until_quiet(
    client: &Client,
    subscription: &str,
    quiet: Duration,
) -> Vec<ReceivedMessage> {
    let subscriber = client.subscriber_with(
        subscription,
        SubscriberConfig::default().with_pull_timeout(quiet),
    );
    let mut all = Vec::new();
    loop {
        let batch = subscriber.pull(100).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    id: String,
    data: Vec<u8>,
    attributes: HashMap<String, String>,
    ordering_key: String,
    attempt: Option<u32>,
    publish_time: SystemTime,
}

/// Every message arrives once with what was published; the receipt modack
/// goes out the instant the messages arrive, and the handlers' acks wait
/// the acker's flush interval (100 ms) to go out together in one call.
#[tokio::test(start_paused = true)]
async fn receives_and_acks_everything_exactly_as_published() {
    let s = setup(|c| c).await;
    let published_at = server_wall(&s.server);
    let messages: Vec<Message> = (0..50)
        .map(|i| {
            Message::new(format!("payload {i}"))
                .with_attribute("index", i.to_string())
                .with_attribute("kind", "test")
        })
        .collect();
    let ids = publish(&s.client, &s.topic, messages, false).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscribed = Instant::now();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            let tx = tx.clone();
            async move {
                // Tracing is off: no span at all.
                assert!(message.process_span().is_disabled());
                let seen = Seen {
                    id: message.message_id().to_string(),
                    data: message.data().to_vec(),
                    attributes: message.attributes().clone(),
                    ordering_key: message.ordering_key().to_string(),
                    attempt: message.delivery_attempt(),
                    publish_time: message.publish_time(),
                };
                message.ack();
                tx.send(seen).unwrap();
            }
        });
    let seen = collect(&mut rx, 50, Duration::from_secs(20)).await;
    let by_id: BTreeMap<String, Seen> = seen.into_iter().map(|s| (s.id.clone(), s)).collect();
    assert_eq!(by_id.len(), 50, "every message exactly once");
    for (i, id) in ids.iter().enumerate() {
        let seen = &by_id[id];
        assert_eq!(seen.data, format!("payload {i}").into_bytes());
        assert_eq!(seen.attributes.len(), 2);
        assert_eq!(seen.attributes["index"], i.to_string());
        assert_eq!(seen.attributes["kind"], "test");
        assert_eq!(seen.ordering_key, "");
        assert_eq!(seen.attempt, None);
        // The batch left the publisher after its 10 ms max_delay.
        assert_eq!(
            seen.publish_time,
            published_at + Duration::from_millis(10),
            "publish time of message {i}"
        );
    }
    // Everything was delivered the instant the stream opened, and handled
    // at once.
    let delivered = s.proxy.delivered();
    assert_eq!(delivered.len(), 50);
    assert!(
        delivered.iter().all(|d| d.at == subscribed),
        "{delivered:?}"
    );
    assert_eq!(Instant::now(), subscribed, "handled without waiting");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        settles_since(&s.proxy, subscribed),
        [(0, SettleKind::Modack(10), 50), (100, SettleKind::Ack, 50)],
        "receipt modack at once, then the acks batched for the 100 ms flush interval"
    );
    handle.shutdown().await.unwrap();
    // Acked for good: nothing comes back.
    let again = pull_until_quiet(&s.client, &s.subscription, Duration::from_millis(500)).await;
    assert!(again.is_empty(), "redelivered {again:?}");
    assert!(rx.try_recv().is_err());
    s.server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn nack_and_drop_lead_to_redelivery() {
    let s = setup(|c| c).await;
    let ids = publish(&s.client, &s.topic, vec![Message::new("again")], false).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let counter = deliveries.clone();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            let tx = tx.clone();
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tx.send((
                    message.message_id().to_string(),
                    message.ack_id().to_string(),
                ))
                .unwrap();
                match attempt {
                    0 => message.nack(),
                    1 => drop(message), // unsettled: nacked on drop
                    _ => message.ack(),
                }
            }
        });
    let seen = collect(&mut rx, 3, Duration::from_secs(20)).await;
    assert!(seen.iter().all(|(id, _)| *id == ids[0]));
    let ack_ids: HashSet<&String> = seen.iter().map(|(_, ack)| ack).collect();
    assert_eq!(ack_ids.len(), 3, "each delivery has its own ack id");
    // A nack (explicit or by drop) waits for the acker's 100 ms flush, and
    // the server redelivers the moment it arrives.
    let delivered = s.proxy.delivered();
    let first = delivered[0].at;
    let times: Vec<u64> = delivered.iter().map(|d| ms_since(first, d.at)).collect();
    assert_eq!(times, [0, 100, 200]);
    let nacks: Vec<(u64, SettleKind, usize)> = settles_since(&s.proxy, first)
        .into_iter()
        .filter(|(_, kind, _)| *kind == SettleKind::Modack(0))
        .collect();
    assert_eq!(
        nacks,
        [
            (100, SettleKind::Modack(0), 1),
            (200, SettleKind::Modack(0), 1)
        ]
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        3,
        "acked on the third delivery"
    );
    assert_eq!(s.proxy.delivered().len(), 3);
    handle.shutdown().await.unwrap();
}

/// The subscription's ack deadline is 10 s and the handler takes 25 s: the
/// lease is extended, so the message is not redelivered meanwhile. The
/// lease task looks every 500 ms and extends a lease 2.5 s (a quarter of the
/// 10 s deadline) before it ends; each extension then waits the acker's
/// 100 ms flush. So the server sees, from the receipt at 0: the receipt
/// modack at 0, extensions at 7.6 s, 15.1 s and 22.6 s, the ack at 25.1 s.
#[tokio::test(start_paused = true)]
async fn lease_extension_keeps_a_slow_message() {
    let s = setup(|c| c.with_ack_deadline(Duration::from_secs(10))).await;
    publish(&s.client, &s.topic, vec![Message::new("slow")], false).await;
    let deliveries = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let counter = deliveries.clone();
    let subscribed = Instant::now();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_secs(25)).await;
                let result = message.ack_with_result().await;
                tx.send((started, result)).unwrap();
            }
        });
    let results = collect(&mut rx, 1, Duration::from_secs(40)).await;
    assert_eq!(results, [(subscribed, Ok(()))]);
    assert_eq!(
        ms_since(subscribed, Instant::now()),
        25_100,
        "the ack was confirmed after its flush"
    );
    let extend = SettleKind::Modack(10);
    assert_eq!(
        settles_since(&s.proxy, subscribed),
        [
            (0, extend, 1),
            (7_600, extend, 1),
            (15_100, extend, 1),
            (22_600, extend, 1),
            (25_100, SettleKind::Ack, 1),
        ]
    );
    // Never redelivered, during the handler or after the ack.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        1,
        "redelivered during the handler"
    );
    assert_eq!(s.proxy.delivered().len(), 1);
    handle.shutdown().await.unwrap();
    assert_eq!(s.server.backlog("projects/p/subscriptions/worker"), 0);
}

/// A message taken from `Subscriber::stream` and held 25 s has its lease
/// extended exactly as a handler's is, and is never redelivered meanwhile.
#[tokio::test(start_paused = true)]
async fn the_stream_extends_the_lease_of_a_held_message() {
    let s = setup(|c| c.with_ack_deadline(Duration::from_secs(10))).await;
    publish(&s.client, &s.topic, vec![Message::new("slow")], false).await;
    let subscribed = Instant::now();
    let mut stream = s.client.subscriber(&s.subscription).stream();
    let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("delivered")
        .unwrap()
        .unwrap();
    assert_eq!(ms_since(subscribed, Instant::now()), 0);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(message.ack_with_result().await, Ok(()));
    let extend = SettleKind::Modack(10);
    assert_eq!(
        settles_since(&s.proxy, subscribed),
        [
            (0, extend, 1),
            (7_600, extend, 1),
            (15_100, extend, 1),
            (22_600, extend, 1),
            (25_100, SettleKind::Ack, 1),
        ]
    );
    // Nothing else arrives on the stream: never redelivered.
    let more = tokio::time::timeout(Duration::from_secs(60), stream.next()).await;
    assert!(more.is_err(), "redelivered: {more:?}");
    assert_eq!(s.proxy.delivered().len(), 1);
    drop(stream);
    assert_eq!(s.server.backlog("projects/p/subscriptions/worker"), 0);
}

/// Past `max_lease_extension` the lease is no longer extended: the server
/// redelivers the message after its deadline although the first handler
/// still runs. The first delivery's subscribe span ends as `expired`, and
/// its process span records the `expired` event.
#[tokio::test(start_paused = true)]
async fn leases_stop_after_the_maximum_extension() {
    let s = setup(|c| c.with_ack_deadline(Duration::from_secs(10))).await;
    publish(&s.client, &s.topic, vec![Message::new("held")], false).await;
    let SpanCapture { provider, exporter } = SpanCapture::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let counter = Arc::new(AtomicUsize::new(0));
    let config = SubscriberConfig::default()
        .with_max_lease_extension(Duration::from_secs(1))
        .with_tracing(TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone())));
    let started = Instant::now();
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                tx.send(ms_since(started, Instant::now())).unwrap();
                if attempt == 0 {
                    tokio::time::sleep(Duration::from_secs(12)).await;
                }
                message.ack();
            }
        });
    let times = collect(&mut rx, 2, Duration::from_secs(20)).await;
    // Received at once; never extended past the receipt modack (1 s of
    // extension is over before the first extension is due at 7.5 s); the
    // client lets the lease go when it ends at 10 s, and the server
    // redelivers right then.
    assert_eq!(times, [0, 10_000], "deliveries (ms)");
    let delivered: Vec<u64> = s
        .proxy
        .delivered()
        .iter()
        .map(|d| ms_since(started, d.at))
        .collect();
    assert_eq!(delivered, [0, 10_000]);
    // Waits for the first handler, which acks the expired delivery at 12 s.
    handle.shutdown().await.unwrap();
    assert_eq!(ms_since(started, Instant::now()), 12_000);
    assert_eq!(
        settles_since(&s.proxy, started),
        [
            (0, SettleKind::Modack(10), 1),
            (10_000, SettleKind::Modack(10), 1),
            (10_100, SettleKind::Ack, 1),
            (12_000, SettleKind::Ack, 1),
        ],
        "receipt modacks and acks only: no extension"
    );
    let spans = exporter.get_finished_spans().unwrap();
    let result_of = |span: &SpanData| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "messaging.gcp_pubsub.result")
            .map(|kv| kv.value.to_string())
    };
    let mut results: Vec<String> = spans
        .iter()
        .filter(|span| span.name == "worker subscribe")
        .filter_map(result_of)
        .collect();
    results.sort();
    assert_eq!(results, ["acked", "expired"]);
    let process_events: Vec<Vec<String>> = spans
        .iter()
        .filter(|span| span.name == "worker process")
        .map(|span| span.events.iter().map(|e| e.name.to_string()).collect())
        .collect();
    assert!(
        process_events.contains(&vec!["expired".to_string(), "ack called".to_string()]),
        "{process_events:?}"
    );
    let _ = provider.shutdown();
}

/// Runs 12 messages through a subscriber limited to 2 outstanding messages
/// whose handlers take 100 ms each and ack; answers the handlers' start
/// times (virtual ms since subscribing, sorted) and the most that ran at
/// once.
async fn run_with_flow_control_of_two(s: &Setup) -> (Vec<u64>, usize) {
    publish(
        &s.client,
        &s.topic,
        (0..12).map(|i| Message::new(format!("m{i}"))).collect(),
        false,
    )
    .await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = SubscriberConfig::default()
        .with_flow_control(2, 0)
        .with_max_concurrent_handlers(10);
    let (r, m) = (running.clone(), most.clone());
    let subscribed = Instant::now();
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let (running, most, tx) = (r.clone(), m.clone(), tx.clone());
            async move {
                let started = Instant::now();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                tx.send((message.message_id().to_string(), started))
                    .unwrap();
                message.ack();
            }
        });
    let seen = collect(&mut rx, 12, Duration::from_secs(30)).await;
    let ids: HashSet<&String> = seen.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 12);
    handle.shutdown().await.unwrap();
    let mut starts: Vec<u64> = seen
        .iter()
        .map(|(_, at)| ms_since(subscribed, *at))
        .collect();
    starts.sort_unstable();
    (starts, most.load(Ordering::SeqCst))
}

/// The client tells the server its limit of 2 outstanding messages in the
/// stream's first request, and the server holds the rest until acks reach
/// it: each pair runs 100 ms and its acks wait the 100 ms flush, so a new
/// pair arrives and starts every 200 ms.
#[tokio::test(start_paused = true)]
async fn flow_control_limits_outstanding_messages() {
    let s = setup(|c| c).await;
    let (starts, most) = run_with_flow_control_of_two(&s).await;
    assert_eq!(most, 2, "at most 2 handlers at once");
    assert_eq!(
        starts,
        [0, 0, 200, 200, 400, 400, 600, 600, 800, 800, 1000, 1000]
    );
    let first = &s.proxy.stream_requests()[0];
    assert_eq!(first.max_outstanding_messages, 2);
}

/// The same with the limits taken out of the stream's first request, so the
/// server sends all 12 at once: the client's own flow control runs 2 at a
/// time and lets the next one go the instant a handler acks (not when the
/// ack reaches the server), so a new pair starts every 100 ms.
#[tokio::test(start_paused = true)]
async fn client_flow_control_releases_on_ack() {
    let s = setup(|c| c).await;
    s.proxy.strip_stream_flow_control();
    let (starts, most) = run_with_flow_control_of_two(&s).await;
    assert_eq!(s.proxy.delivered().len(), 12);
    assert!(
        s.proxy
            .delivered()
            .iter()
            .all(|d| d.at == s.proxy.delivered()[0].at),
        "all delivered at once"
    );
    assert_eq!(most, 2, "at most 2 handlers at once");
    assert_eq!(
        starts,
        [0, 0, 100, 100, 200, 200, 300, 300, 400, 400, 500, 500]
    );
}

#[tokio::test(start_paused = true)]
async fn ordering_keys_are_handled_one_at_a_time_in_order() {
    let s = setup(|c| c.with_message_ordering(true)).await;
    let keys = ["a", "b", "c", "d"];
    let mut messages = Vec::new();
    for i in 0..15 {
        for key in keys {
            messages.push(Message::new(format!("{key}{i}")).with_ordering_key(key));
        }
    }
    publish(&s.client, &s.topic, messages, true).await;
    let active: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = SubscriberConfig::default().with_max_concurrent_handlers(8);
    let (act, ovl) = (active.clone(), overlaps.clone());
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let (active, overlaps, tx) = (act.clone(), ovl.clone(), tx.clone());
            async move {
                let key = message.ordering_key().to_string();
                if !active.lock().unwrap().insert(key.clone()) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let jitter = message.data().len() as u64 % 3 + u64::from(message.data()[1] % 4);
                tokio::time::sleep(Duration::from_millis(jitter * 3)).await;
                tx.send((
                    key.clone(),
                    String::from_utf8(message.data().to_vec()).unwrap(),
                ))
                .unwrap();
                active.lock().unwrap().remove(&key);
                message.ack();
            }
        });
    let seen = collect(&mut rx, 60, Duration::from_secs(30)).await;
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two handlers of one key at once"
    );
    for key in keys {
        let got: Vec<&str> = seen
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, data)| data.as_str())
            .collect();
        let expected: Vec<String> = (0..15).map(|i| format!("{key}{i}")).collect();
        assert_eq!(got, expected, "order of key {key}");
    }
    handle.shutdown().await.unwrap();
}

/// The server goes away mid-stream (UNAVAILABLE) and a new one comes up on
/// the same port: the same handle reconnects and keeps receiving. The
/// client talks to the server directly (no proxy) so the stream really
/// breaks. The runtime is single-threaded, so the new server's topic and
/// subscription exist before the subscriber can reach it.
#[tokio::test(start_paused = true)]
async fn reconnects_after_a_server_restart() {
    let s = setup(|c| c).await;
    let addr = s.server.addr;
    let client = client_at(addr).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            let tx = tx.clone();
            async move {
                tx.send(String::from_utf8(message.data().to_vec()).unwrap())
                    .unwrap();
                message.ack();
            }
        });
    publish(&client, &s.topic, vec![Message::new("before")], false).await;
    assert_eq!(
        collect(&mut rx, 1, Duration::from_secs(10)).await,
        ["before"]
    );
    // The ack reaches the first server after the 100 ms flush.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.server.backlog("projects/p/subscriptions/worker"), 0);
    s.server.shutdown().await;
    // A while without a server: the handle keeps trying.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!handle.is_finished());

    let server = TestServer::start_on(addr).await;
    // No await between start and these: the subscriber cannot get in first.
    let broker = server.server().broker();
    broker
        .create_topic(Topic {
            name: "projects/p/topics/events".to_string(),
            ..Default::default()
        })
        .unwrap();
    broker
        .create_subscription(Subscription {
            name: "projects/p/subscriptions/worker".to_string(),
            topic: "projects/p/topics/events".to_string(),
            ..Default::default()
        })
        .unwrap();
    publish(&client, &s.topic, vec![Message::new("after")], false).await;
    assert_eq!(
        collect(&mut rx, 1, Duration::from_secs(20)).await,
        ["after"]
    );
    assert!(!handle.is_finished());
    handle.shutdown().await.unwrap();
    server.shutdown().await;
}

/// Shutdown lets running handlers finish and flushes their acks; what was
/// received but not started is nacked. Nothing is lost: the acked messages
/// never come back and all the others do.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_handlers_and_loses_nothing() {
    let s = setup(|c| c).await;
    let ids: HashSet<String> = publish(
        &s.client,
        &s.topic,
        (0..20).map(|i| Message::new(format!("m{i}"))).collect(),
        false,
    )
    .await
    .into_iter()
    .collect();
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = SubscriberConfig::default().with_max_concurrent_handlers(3);
    let (st, fi, ac) = (started.clone(), finished.clone(), acked.clone());
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let (started, finished, acked, tx) = (st.clone(), fi.clone(), ac.clone(), tx.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
                tokio::time::sleep(Duration::from_millis(400)).await;
                acked
                    .lock()
                    .unwrap()
                    .insert(message.message_id().to_string());
                message.ack();
                finished.fetch_add(1, Ordering::SeqCst);
            }
        });
    collect(&mut rx, 1, Duration::from_secs(10)).await;
    // All 20 arrived at once and 3 handlers started: shut down now.
    let begun = Instant::now();
    handle.shutdown().await.unwrap();
    assert_eq!(
        ms_since(begun, Instant::now()),
        400,
        "shutdown waits for the running handlers, and only for them"
    );
    let (started, finished) = (
        started.load(Ordering::SeqCst),
        finished.load(Ordering::SeqCst),
    );
    assert_eq!(
        started, finished,
        "shutdown returned before handlers finished"
    );
    assert_eq!(finished, 3, "only the handlers running at shutdown ran");
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), finished);
    // The receipt modack of all 20; the 17 that never ran were nacked when
    // shutdown began (sent after the 100 ms flush interval), and the 3 acks
    // flushed as shutdown ended, without waiting for the interval.
    assert_eq!(
        settles_since(&s.proxy, begun),
        [
            (0, SettleKind::Modack(10), 20),
            (100, SettleKind::Modack(0), 17),
            (400, SettleKind::Ack, 3)
        ]
    );

    let rest = pull_until_quiet(&s.client, &s.subscription, Duration::from_millis(800)).await;
    let rest_ids: HashSet<String> = rest.iter().map(|m| m.message_id().to_string()).collect();
    assert_eq!(rest_ids.len(), rest.len(), "no duplicates");
    assert!(rest_ids.is_disjoint(&acked), "an acked message came back");
    let all: HashSet<String> = rest_ids.union(&acked).cloned().collect();
    assert_eq!(all, ids, "messages lost");
    for message in rest {
        message.ack();
    }
}

/// With `NackImmediately`, shutdown does not wait: outstanding messages are
/// nacked at once (and come back), and the handlers' late acks are refused.
#[tokio::test(start_paused = true)]
async fn shutdown_nack_immediately() {
    let s = setup(|c| c).await;
    let ids: HashSet<String> = publish(
        &s.client,
        &s.topic,
        (0..5).map(|i| Message::new(format!("m{i}"))).collect(),
        false,
    )
    .await
    .into_iter()
    .collect();
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let (result_tx, mut result_rx) = mpsc::unbounded_channel();
    let config = SubscriberConfig::default().with_shutdown(ShutdownBehavior::NackImmediately);
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let (started, results) = (started_tx.clone(), result_tx.clone());
            async move {
                started.send(()).unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
                results.send(message.ack_with_result().await).unwrap();
            }
        });
    collect(&mut started_rx, 5, Duration::from_secs(10)).await;
    let begun = Instant::now();
    handle.shutdown().await.unwrap();
    assert_eq!(begun.elapsed(), Duration::ZERO, "shutdown waited");
    // After the receipt modack, every outstanding message was nacked in one
    // call the moment shutdown began.
    assert_eq!(
        settles_since(&s.proxy, begun),
        [
            (0, SettleKind::Modack(10), 5),
            (0, SettleKind::Modack(0), 5)
        ]
    );
    let results = collect(&mut result_rx, 5, Duration::from_secs(5)).await;
    assert_eq!(
        begun.elapsed(),
        Duration::from_secs(1),
        "the handlers ran on"
    );
    assert!(
        results.iter().all(|r| *r == Err(AckError::Shutdown)),
        "{results:?}"
    );
    assert_eq!(s.proxy.settled().len(), 2, "the late acks were not sent");
    let again = pull_until_quiet(&s.client, &s.subscription, Duration::from_millis(800)).await;
    let again_ids: HashSet<String> = again.iter().map(|m| m.message_id().to_string()).collect();
    assert_eq!(again_ids, ids);
    for message in again {
        message.ack();
    }
}

#[tokio::test(start_paused = true)]
async fn exactly_once_acks_report_their_result() {
    let s = setup(|c| c.with_exactly_once(true)).await;
    publish(&s.client, &s.topic, vec![Message::new("once")], false).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            let tx = tx.clone();
            async move {
                let result = message.ack_with_result().await;
                tx.send(result).unwrap();
            }
        });
    let subscribed = Instant::now();
    assert_eq!(collect(&mut rx, 1, Duration::from_secs(10)).await, [Ok(())]);
    // The ack is confirmed once its flush (100 ms) reached the server; the
    // receipt modack asked for exactly-once delivery's 60 s minimum.
    assert_eq!(ms_since(subscribed, Instant::now()), 100);
    assert_eq!(
        settles_since(&s.proxy, subscribed),
        [(0, SettleKind::Modack(60), 1), (100, SettleKind::Ack, 1)]
    );
    // Well past the 60 s deadline: never redelivered.
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert!(rx.try_recv().is_err(), "redelivered after a confirmed ack");
    assert_eq!(s.proxy.delivered().len(), 1);
    handle.shutdown().await.unwrap();

    // A stale ack id: give the message back with a deadline of 0, receive it
    // again, ack the new delivery, then the old one.
    publish(&s.client, &s.topic, vec![Message::new("twice")], false).await;
    let subscriber = s.client.subscriber_with(
        &s.subscription,
        SubscriberConfig::default().with_pull_timeout(Duration::from_secs(5)),
    );
    let first = subscriber.pull(1).await.unwrap().pop().expect("a message");
    let given_back = Instant::now();
    first.modify_ack_deadline(0);
    let second = loop {
        if let Some(message) = subscriber.pull(1).await.unwrap().pop() {
            break message;
        }
    };
    // Back as soon as the modack was flushed.
    assert_eq!(ms_since(given_back, Instant::now()), 100);
    assert_eq!(first.message_id(), second.message_id());
    assert_ne!(first.ack_id(), second.ack_id());
    assert_eq!(second.ack_with_result().await, Ok(()));
    assert_eq!(first.ack_with_result().await, Err(AckError::InvalidAckId));
    assert_eq!(s.server.backlog("projects/p/subscriptions/worker"), 0);
}

#[tokio::test(start_paused = true)]
async fn unary_pull_ack_and_nack() {
    let s = setup(|c| c).await;
    let ids: HashSet<String> = publish(
        &s.client,
        &s.topic,
        (0..3).map(|i| Message::new(format!("m{i}"))).collect(),
        false,
    )
    .await
    .into_iter()
    .collect();
    let subscriber = s.client.subscriber_with(
        &s.subscription,
        SubscriberConfig::default().with_pull_timeout(Duration::from_secs(2)),
    );
    let mut received = Vec::new();
    while received.len() < 3 {
        received.extend(subscriber.pull(10).await.unwrap());
    }
    let got: HashSet<String> = received
        .iter()
        .map(|m| m.message_id().to_string())
        .collect();
    assert_eq!(got, ids);
    // Ack two (one waiting for the answer); nack the third: it comes back.
    let mut received = received.into_iter();
    received.next().unwrap().ack();
    assert_eq!(received.next().unwrap().ack_with_result().await, Ok(()));
    let nacked = received.next().unwrap();
    let nacked_id = nacked.message_id().to_string();
    assert_eq!(nacked.nack_with_result().await, Ok(()));
    let again = subscriber.pull(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id(), nacked_id);
    drop(again); // dropping nacks too
    let again = subscriber.pull(10).await.unwrap();
    assert_eq!(again.len(), 1);
    for message in again {
        message.ack_with_result().await.unwrap();
    }
    let quiet = s.client.subscriber_with(
        &s.subscription,
        SubscriberConfig::default().with_pull_timeout(Duration::from_millis(300)),
    );
    let asked = Instant::now();
    assert!(quiet.pull(10).await.unwrap().is_empty());
    // The pull timeout went to the server as the call's deadline, and the
    // server answers empty-handed 50 ms before it (its margin for the trip
    // back).
    assert_eq!(ms_since(asked, Instant::now()), 250);
}

#[tokio::test(start_paused = true)]
async fn a_missing_subscription_ends_the_session() {
    let s = setup(|c| c).await;
    let handle = s
        .client
        .subscriber("no-such-subscription")
        .subscribe(|message| async move { message.ack() });
    let result = tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("wait() did not resolve");
    match result {
        Err(SubscribeError::Rpc(status)) => assert_eq!(status.code(), tonic::Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    assert!(handle.is_finished());
    assert!(matches!(
        handle.shutdown().await,
        Err(SubscribeError::Rpc(_))
    ));
}

/// A message's `googclient_traceparent` reaches the handler as the
/// attribute it was published as, whatever its form, through StreamingPull
/// and unary pull alike: the subscriber holds a value of the usual form
/// apart from the map, and `attributes()` and `message()` put it back.
#[tokio::test(start_paused = true)]
async fn a_trace_context_reads_back_as_the_attribute_it_was() {
    let s = setup(|c| c).await;
    let canonical = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let forms = [
        vec![("googclient_traceparent", canonical), ("kind", "a")],
        vec![("googclient_traceparent", canonical)],
        // Not the usual 55 characters: it stays in the map.
        vec![("googclient_traceparent", "00-short"), ("kind", "b")],
        vec![("kind", "c")],
    ];
    let expected: Vec<HashMap<String, String>> = forms
        .iter()
        .map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        })
        .collect();
    let messages = expected
        .iter()
        .enumerate()
        .map(|(i, attributes)| {
            attributes
                .iter()
                .fold(Message::new(i.to_string()), |m, (k, v)| {
                    m.with_attribute(k.clone(), v.clone())
                })
        })
        .collect();
    publish(&s.client, &s.topic, messages, false).await;
    let count = expected.len();
    let expected = Arc::new(expected);
    let check = move |message: &ReceivedMessage| {
        let i: usize = String::from_utf8_lossy(message.data()).parse().unwrap();
        assert_eq!(message.attributes(), &expected[i], "message {i}");
        assert_eq!(message.message().attributes, expected[i], "message {i}");
        assert_eq!(message.message().data, i.to_string().into_bytes());
        assert_eq!(message.message().message_id, message.message_id());
        assert!(format!("{message:?}").contains("kind") == expected[i].contains_key("kind"));
    };
    // StreamingPull, then nack so that unary pull sees them again.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let in_handler = check.clone();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            let tx = tx.clone();
            let check = in_handler.clone();
            async move {
                check(&message);
                message.nack();
                tx.send(()).unwrap();
            }
        });
    collect(&mut rx, count, Duration::from_secs(20)).await;
    handle.shutdown().await.unwrap();
    let pulled = pull_until_quiet(&s.client, &s.subscription, Duration::from_millis(500)).await;
    assert_eq!(pulled.len(), count);
    for message in &pulled {
        check(message);
    }
    s.server.shutdown().await;
}
