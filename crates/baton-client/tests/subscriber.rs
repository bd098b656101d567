//! The subscriber against the real server, in-process: StreamingPull
//! delivery and acks, nack and redelivery, lease extension, flow control,
//! ordering keys, reconnecting across a server restart, shutdown, exactly-
//! once delivery and unary pull.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_suite;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use baton_client::proto::{Subscription, Topic};
use baton_client::{
    AckError, Client, Error, Message, PublisherConfig, ReceivedMessage, ShutdownBehavior,
    SubscriberConfig, SubscriptionConfig, TracingConfig,
};
use baton_testkit::server::TestServer;
use baton_testkit::spans::SpanCapture;
use client_suite::client_at;
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::mpsc;

/// A server with one topic and one subscription configured by `configure`.
struct Setup {
    server: TestServer,
    client: Client,
    topic: String,
    subscription: String,
}

async fn setup(configure: impl FnOnce(SubscriptionConfig) -> SubscriptionConfig) -> Setup {
    let server = TestServer::start().await;
    let client = client_at(server.addr).await;
    client.create_topic("events").await.unwrap();
    client
        .create_subscription(configure(SubscriptionConfig::new("worker", "events")))
        .await
        .unwrap();
    Setup {
        server,
        client,
        topic: "events".to_string(),
        subscription: "worker".to_string(),
    }
}

async fn publish(
    client: &Client,
    topic: &str,
    messages: Vec<Message>,
    ordered: bool,
) -> Vec<String> {
    let publisher = client.publisher_with(
        topic,
        PublisherConfig {
            enable_message_ordering: ordered,
            ..Default::default()
        },
    );
    let mut handles = Vec::new();
    for message in messages {
        handles.push(publisher.publish(message).await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_and_acks_everything_exactly_as_published() {
    let s = setup(|c| c).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let messages: Vec<Message> = (0..50)
        .map(|i| {
            Message::new(format!("payload {i}"))
                .attribute("index", i.to_string())
                .attribute("kind", "test")
        })
        .collect();
    let ids = publish(&s.client, &s.topic, messages, false).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
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
        assert!(seen.publish_time >= before && seen.publish_time <= SystemTime::now());
    }
    handle.shutdown().await.unwrap();
    // Acked for good: nothing comes back.
    let again = pull_until_quiet(&s.client, &s.subscription, Duration::from_millis(500)).await;
    assert!(again.is_empty(), "redelivered {again:?}");
    assert!(rx.try_recv().is_err());
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        3,
        "acked on the third delivery"
    );
    handle.shutdown().await.unwrap();
}

/// The subscription's ack deadline is 10 s and the handler takes 13 s: the
/// lease is extended, so the message is not redelivered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_extension_keeps_a_slow_message() {
    let s = setup(|c| c.ack_deadline(Duration::from_secs(10))).await;
    publish(&s.client, &s.topic, vec![Message::new("slow")], false).await;
    let deliveries = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let counter = deliveries.clone();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(13)).await;
                let result = message.ack_with_result().await;
                tx.send(result).unwrap();
            }
        });
    let results = collect(&mut rx, 1, Duration::from_secs(25)).await;
    assert_eq!(results, [Ok(())]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        1,
        "redelivered during the handler"
    );
    handle.shutdown().await.unwrap();
    assert_eq!(s.server.backlog("projects/p/subscriptions/worker"), 0);
}

/// Past `max_lease_extension` the lease is no longer extended: the server
/// redelivers the message after its deadline although the first handler
/// still runs. The first delivery's subscribe span ends as `expired`, and
/// its process span records the `expired` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_stop_after_the_maximum_extension() {
    let s = setup(|c| c.ack_deadline(Duration::from_secs(10))).await;
    publish(&s.client, &s.topic, vec![Message::new("held")], false).await;
    let SpanCapture { provider, exporter } = SpanCapture::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let counter = Arc::new(AtomicUsize::new(0));
    let config = SubscriberConfig::default()
        .with_max_lease_extension(Duration::from_secs(1))
        .with_tracing(TracingConfig {
            enable_open_telemetry_tracing: true,
            tracer_provider: Some(Arc::new(provider.clone())),
            ..Default::default()
        });
    let started = Instant::now();
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                tx.send(started.elapsed()).unwrap();
                if attempt == 0 {
                    tokio::time::sleep(Duration::from_secs(12)).await;
                }
                message.ack();
            }
        });
    let times = collect(&mut rx, 2, Duration::from_secs(20)).await;
    assert!(times[0] < Duration::from_secs(3));
    assert!(
        times[1] >= Duration::from_secs(9) && times[1] < Duration::from_secs(12),
        "redelivered after {:?}",
        times[1]
    );
    // Waits for the first handler, which acks the expired delivery.
    handle.shutdown().await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_limits_outstanding_messages() {
    let s = setup(|c| c).await;
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
    let handle = s
        .client
        .subscriber_with(&s.subscription, config)
        .subscribe(move |message| {
            let (running, most, tx) = (r.clone(), m.clone(), tx.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                tx.send(message.message_id().to_string()).unwrap();
                message.ack();
            }
        });
    let ids: HashSet<String> = collect(&mut rx, 12, Duration::from_secs(30))
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(most.load(Ordering::SeqCst), 2, "at most 2 handlers at once");
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_keys_are_handled_one_at_a_time_in_order() {
    let s = setup(|c| c.message_ordering(true)).await;
    let keys = ["a", "b", "c", "d"];
    let mut messages = Vec::new();
    for i in 0..15 {
        for key in keys {
            messages.push(Message::new(format!("{key}{i}")).ordering_key(key));
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
/// the same port: the same handle reconnects and keeps receiving.
/// Single-threaded so the new server's topic and subscription exist before
/// the subscriber can reach it.
#[tokio::test(flavor = "current_thread")]
async fn reconnects_after_a_server_restart() {
    let s = setup(|c| c).await;
    let addr = s.server.addr;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = s
        .client
        .subscriber(&s.subscription)
        .subscribe(move |message| {
            let tx = tx.clone();
            async move {
                tx.send(String::from_utf8(message.data().to_vec()).unwrap())
                    .unwrap();
                message.ack();
            }
        });
    publish(&s.client, &s.topic, vec![Message::new("before")], false).await;
    assert_eq!(
        collect(&mut rx, 1, Duration::from_secs(10)).await,
        ["before"]
    );
    // Let the ack reach the first server.
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    publish(&s.client, &s.topic, vec![Message::new("after")], false).await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    handle.shutdown().await.unwrap();
    let (started, finished) = (
        started.load(Ordering::SeqCst),
        finished.load(Ordering::SeqCst),
    );
    assert_eq!(
        started, finished,
        "shutdown returned before handlers finished"
    );
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), finished);
    assert!(
        finished < 20,
        "all handled before shutdown; the test proves nothing"
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    assert!(
        begun.elapsed() < Duration::from_millis(900),
        "shutdown waited for handlers"
    );
    let results = collect(&mut result_rx, 5, Duration::from_secs(5)).await;
    assert!(
        results.iter().all(|r| *r == Err(AckError::Shutdown)),
        "{results:?}"
    );
    let again = pull_until_quiet(&s.client, &s.subscription, Duration::from_millis(800)).await;
    let again_ids: HashSet<String> = again.iter().map(|m| m.message_id().to_string()).collect();
    assert_eq!(again_ids, ids);
    for message in again {
        message.ack();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_acks_report_their_result() {
    let s = setup(|c| c.exactly_once(true)).await;
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
    assert_eq!(collect(&mut rx, 1, Duration::from_secs(10)).await, [Ok(())]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "redelivered after a confirmed ack");
    handle.shutdown().await.unwrap();

    // A stale ack id: give the message back with a deadline of 0, receive it
    // again, ack the new delivery, then the old one.
    publish(&s.client, &s.topic, vec![Message::new("twice")], false).await;
    let subscriber = s.client.subscriber_with(
        &s.subscription,
        SubscriberConfig::default().with_pull_timeout(Duration::from_secs(5)),
    );
    let first = subscriber.pull(1).await.unwrap().pop().expect("a message");
    first.modify_ack_deadline(0);
    let second = loop {
        if let Some(message) = subscriber.pull(1).await.unwrap().pop() {
            break message;
        }
    };
    assert_eq!(first.message_id(), second.message_id());
    assert_ne!(first.ack_id(), second.ack_id());
    assert_eq!(second.ack_with_result().await, Ok(()));
    assert_eq!(first.ack_with_result().await, Err(AckError::InvalidAckId));
    assert_eq!(s.server.backlog("projects/p/subscriptions/worker"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    assert!(quiet.pull(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        Err(Error::Rpc(status)) => assert_eq!(status.code(), tonic::Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    assert!(handle.is_finished());
    assert!(matches!(handle.shutdown().await, Err(Error::Rpc(_))));
}
