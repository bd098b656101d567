#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Behaviour of the publisher against the real server: what reaches the
//! server (pulled with the generated stubs), how requests are batched (seen
//! by a recording proxy), the retry backoff, ordering under retries and
//! failures, flow control, flush, shutdown and drop.
//!
//! The tests run on virtual time (`start_paused`): the publisher's batching
//! delays and retry backoffs, the proxy's delays and timestamps and the
//! server's clock share Tokio's paused clock, so the tests assert the exact
//! virtual instants at which requests reach the server. One test measures
//! CPU use while waiting and runs on real time.

mod client_suite;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use baton_client::{
    BatchSettings, CallFamily, LimitExceededBehavior, Message, PublishError, PublishHandle,
    Publisher, PublisherConfig, PublisherFlowControl, RetrySettings,
};
use baton_proto::pubsub::PubsubMessage;
use baton_testkit::messages::{by_ordering_key as by_key, payload_size};
use client_suite::{ClientServer, Proxy, assert_backoff, ms_since, rpc_code, server_wall};
use futures::FutureExt;
use tokio::time::{Instant, timeout};
use tonic::{Code, Status};

/// Waits for every handle; the message ids in publish order.
async fn resolve_ids(handles: Vec<PublishHandle>) -> Vec<String> {
    let mut ids = Vec::with_capacity(handles.len());
    for (i, handle) in handles.into_iter().enumerate() {
        match timeout(Duration::from_secs(20), handle).await {
            Ok(Ok(id)) => ids.push(id),
            Ok(Err(error)) => panic!("message {i} failed: {error}"),
            Err(_) => panic!("message {i} never resolved"),
        }
    }
    ids
}

async fn publish_all(publisher: &Publisher, messages: Vec<Message>) -> Vec<PublishHandle> {
    let mut handles = Vec::with_capacity(messages.len());
    for message in messages {
        handles.push(publisher.publish(message));
    }
    handles
}

fn config(batching: BatchSettings) -> PublisherConfig {
    PublisherConfig::default().with_batching(batching)
}

fn ordered() -> PublisherConfig {
    PublisherConfig::default().with_message_ordering(true)
}

fn flow_control(
    messages: Option<usize>,
    bytes: Option<usize>,
    behavior: LimitExceededBehavior,
) -> PublisherConfig {
    let mut flow = PublisherFlowControl::default().with_limit_exceeded_behavior(behavior);
    if let Some(messages) = messages {
        flow = flow.with_max_outstanding_messages(messages);
    }
    if let Some(bytes) = bytes {
        flow = flow.with_max_outstanding_bytes(bytes);
    }
    PublisherConfig::default().with_flow_control(flow)
}

/// `"{key}/{seq}"`: the payload the ordering tests check.
fn seq_message(key: &str, seq: usize) -> Message {
    Message::new(format!("{key}/{seq}")).with_ordering_key(key)
}

fn seq_of(message: &PubsubMessage) -> usize {
    let text = std::str::from_utf8(&message.data).unwrap();
    text.rsplit('/').next().unwrap().parse().unwrap()
}

/// Asserts each key's messages are exactly `0..count` in order (messages
/// without a key are promised no order, only completeness).
fn assert_in_order_without_gaps(messages: &[PubsubMessage], expected: &HashMap<String, usize>) {
    let groups = by_key(messages);
    assert_eq!(
        groups.keys().collect::<HashSet<_>>(),
        expected.keys().collect::<HashSet<_>>(),
        "ordering keys received"
    );
    for (key, count) in expected {
        let mut seqs: Vec<usize> = groups[key].iter().map(seq_of).collect();
        if key.is_empty() {
            seqs.sort_unstable();
        }
        assert_eq!(
            seqs,
            (0..*count).collect::<Vec<_>>(),
            "key {key}: out of order, missing or duplicated"
        );
    }
}

// ----- 1. messages arrive as published ------------------------------------

#[tokio::test(start_paused = true)]
async fn every_message_arrives_exactly_as_published() {
    let server = ClientServer::start().await;
    let (topic, sub) = server.topic_and_subscription("roundtrip", true).await;
    let publisher = server.client.publisher_with("roundtrip", ordered());
    assert_eq!(publisher.topic(), topic);

    let mut published = Vec::new();
    for i in 0..150usize {
        let mut data = format!("message {i} ").into_bytes();
        data.extend_from_slice(&[0, 255, (i % 256) as u8, b'\n']);
        let mut message = Message::new(data).with_attribute("i", i.to_string());
        if i % 5 == 0 {
            message = message
                .with_attribute("kind", "fünf ✓")
                .with_attribute("empty", "");
        }
        if i % 4 != 0 {
            message = message.with_ordering_key(format!("key-{}", i % 3));
        }
        published.push(message);
    }
    // Attributes without data are a valid message.
    published.push(Message::new(Vec::<u8>::new()).with_attribute("only", "attributes"));
    let handles = publish_all(&publisher, published.clone()).await;
    let ids = resolve_ids(handles).await;
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "every handle resolves to a distinct id"
    );

    let received = server
        .pull_acking_all(&sub, published.len(), Duration::from_secs(10))
        .await;
    assert_eq!(
        received.len(),
        published.len(),
        "no message lost or duplicated"
    );
    let by_id: HashMap<&str, &PubsubMessage> = received
        .iter()
        .map(|m| (m.message_id.as_str(), m))
        .collect();
    for (i, (message, id)) in published.iter().zip(&ids).enumerate() {
        let got = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("message {i} (id {id}) not on the server"));
        assert_eq!(got.data, message.data(), "data of message {i}");
        assert_eq!(&got.attributes, message.attributes(), "attributes of {i}");
        let key = if i < 150 && i % 4 != 0 {
            format!("key-{}", i % 3)
        } else {
            String::new()
        };
        assert_eq!(got.ordering_key, key, "ordering key of message {i}");
    }
    publisher.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn publisher_by_full_name_and_clones_share_one_queue() {
    let server = ClientServer::start().await;
    let (topic, sub) = server.topic_and_subscription("clones", false).await;
    let publisher = server.client.publisher(&topic);
    assert_eq!(publisher.topic(), topic);
    let clone = publisher.clone();
    let first = publisher.publish(Message::new("from the original"));
    drop(publisher);
    // Dropping one clone must not close the publisher for the others.
    let second = clone.publish(Message::new("from the clone"));
    let ids = resolve_ids(vec![first, second]).await;
    assert_ne!(ids[0], ids[1]);
    clone.shutdown().await;
    let received = server
        .pull_acking_all(&sub, 2, Duration::from_secs(5))
        .await;
    let mut data: Vec<_> = received.iter().map(|m| m.data.to_vec()).collect();
    data.sort();
    assert_eq!(
        data,
        vec![b"from the clone".to_vec(), b"from the original".to_vec()]
    );
}

// ----- 2. batching ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn max_messages_caps_every_request() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("batch-count", false).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let publisher = client.publisher_with(
        "batch-count",
        config(
            BatchSettings::default()
                .with_max_messages(10)
                .with_max_bytes(1_000_000)
                .with_max_delay(Duration::from_secs(5)),
        ),
    );
    let messages = (0..95).map(|i| Message::new(format!("m{i}"))).collect();
    let started = Instant::now();
    let handles = publish_all(&publisher, messages).await;
    publisher.flush().await;
    let ids = resolve_ids(handles).await;
    assert_eq!(ids.len(), 95);

    let requests = proxy.requests();
    assert!(requests.iter().all(|r| r.count <= 10), "{requests:?}");
    assert!(
        requests.iter().all(|r| r.at == started),
        "a full batch goes at once, the rest on flush: none waits for max_delay"
    );
    let mut counts: Vec<usize> = requests.iter().map(|r| r.count).collect();
    counts.sort_unstable();
    let mut expected = vec![10; 9];
    expected.insert(0, 5);
    assert_eq!(counts, expected, "full batches of 10, the rest on flush");
    assert_eq!(
        server
            .pull_acking_all(&sub, 95, Duration::from_secs(5))
            .await
            .len(),
        95
    );

    // The official default of 100 messages per batch.
    proxy.reset();
    let publisher = client.publisher("batch-count");
    let messages = (0..250).map(|i| Message::new(format!("d{i}"))).collect();
    let handles = publish_all(&publisher, messages).await;
    publisher.shutdown().await;
    assert_eq!(resolve_ids(handles).await.len(), 250);
    let requests = proxy.requests();
    assert!(requests.iter().all(|r| r.count <= 100), "{requests:?}");
    assert_eq!(requests.iter().map(|r| r.count).sum::<usize>(), 250);
}

#[tokio::test(start_paused = true)]
async fn max_bytes_caps_every_request_but_a_single_oversized_message() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("batch-bytes", false).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let publisher = client.publisher_with(
        "batch-bytes",
        config(
            BatchSettings::default()
                .with_max_messages(1000)
                .with_max_bytes(1000)
                .with_max_delay(Duration::from_secs(5)),
        ),
    );
    let mut messages: Vec<Message> = (0..40).map(|_| Message::new(vec![b'x'; 150])).collect();
    messages.insert(17, Message::new(vec![b'B'; 5000]));
    // Attributes count towards the size too: 100 + 2 * 25 = 150 bytes.
    messages.extend(
        (0..10)
            .map(|_| Message::new(vec![b'a'; 100]).with_attribute("k".repeat(25), "v".repeat(25))),
    );
    let total = messages.len();
    let started = Instant::now();
    let handles = publish_all(&publisher, messages).await;
    publisher.flush().await;
    assert_eq!(resolve_ids(handles).await.len(), total);

    let requests = proxy.requests();
    assert!(
        requests.iter().all(|r| r.at == started),
        "none waits for max_delay"
    );
    for request in &requests {
        assert!(
            request.bytes <= 1000 || request.count == 1,
            "request over max_bytes: {request:?}"
        );
    }
    assert!(
        requests.iter().any(|r| r.count == 1 && r.bytes == 5000),
        "the oversized message goes alone"
    );
    // 6 x 150 = 900 fits, 7 x 150 does not: batches are filled, not cut early.
    assert_eq!(requests.iter().map(|r| r.count).max(), Some(6));
    assert_eq!(requests.iter().map(|r| r.count).sum::<usize>(), total);
    assert_eq!(
        server
            .pull_acking_all(&sub, total, Duration::from_secs(5))
            .await
            .len(),
        total
    );
}

/// A message that fills no batch goes out exactly `max_delay` after it was
/// published (300 ms here, the official 10 ms by default).
#[tokio::test(start_paused = true)]
async fn a_lone_message_is_sent_after_max_delay() {
    let server = ClientServer::start().await;
    server.topic_and_subscription("batch-delay", false).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;

    let max_delay = Duration::from_millis(300);
    let publisher = client.publisher_with(
        "batch-delay",
        config(BatchSettings::default().with_max_delay(max_delay)),
    );
    let started = Instant::now();
    let handle = publisher.publish(Message::new("lone"));
    tokio::time::sleep(Duration::from_millis(299)).await;
    assert!(proxy.requests().is_empty(), "sent before max_delay");
    handle.await.unwrap();
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].at - started,
        max_delay,
        "sent when max_delay ran out"
    );
    assert_eq!(started.elapsed(), max_delay, "resolved with the answer");

    // A second message 100 ms after the first joins its batch (the delay
    // counts from the oldest message of the batch).
    proxy.reset();
    let started = Instant::now();
    let first = publisher.publish(Message::new("first"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = publisher.publish(Message::new("second"));
    resolve_ids(vec![first, second]).await;
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].count, 2);
    assert_eq!(requests[0].at - started, max_delay);

    // The official default of 10 ms.
    let publisher = client.publisher("batch-delay");
    proxy.reset();
    let started = Instant::now();
    publisher.publish(Message::new("lone")).await.unwrap();
    assert_eq!(
        proxy.requests()[0].at - started,
        Duration::from_millis(10),
        "default max_delay"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_stay_within_api_limits_whatever_the_settings() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("batch-api", false).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let publisher = client.publisher_with(
        "batch-api",
        config(
            BatchSettings::default()
                .with_max_messages(1_000_000)
                .with_max_bytes(usize::MAX)
                .with_max_delay(Duration::from_secs(5)),
        ),
    );
    let messages = (0..2500)
        .map(|i| Message::new(format!("small {i}")))
        .collect();
    let started = Instant::now();
    let handles = publish_all(&publisher, messages).await;
    publisher.flush().await;
    assert_eq!(resolve_ids(handles).await.len(), 2500);
    assert!(proxy.requests().iter().all(|r| r.at == started));
    let mut counts: Vec<usize> = proxy.requests().iter().map(|r| r.count).collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        vec![500, 1000, 1000],
        "at most 1000 messages a request"
    );
    assert_eq!(
        server
            .pull_acking_all(&sub, 2500, Duration::from_secs(10))
            .await
            .len(),
        2500
    );

    proxy.reset();
    // 12 MB: ten 1 MB messages fill a request exactly to the 10 MB limit.
    let messages = (0..12u8)
        .map(|i| Message::new(vec![i; 1_000_000]))
        .collect();
    let handles = publish_all(&publisher, messages).await;
    publisher.flush().await;
    assert_eq!(
        resolve_ids(handles).await.len(),
        12,
        "the server accepted every request"
    );
    let requests = proxy.requests();
    assert!(
        requests.iter().all(|r| r.bytes <= 10_000_000),
        "request over 10 MB: {:?}",
        requests
            .iter()
            .map(|r| (r.count, r.bytes))
            .collect::<Vec<_>>()
    );
    let mut counts: Vec<usize> = requests.iter().map(|r| r.count).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![2, 10]);
    publisher.shutdown().await;
}

// ----- 3. retries and ordering under retries -------------------------------

#[tokio::test(start_paused = true)]
async fn ordering_survives_retries() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("ordered-retries", true).await;
    let proxy = Proxy::start(server.addr).await;
    // Every third call fails before reaching the server.
    proxy.set_fault(|call, _| (call % 3 == 2).then(|| Status::unavailable("injected")));
    let client = proxy.client().await;
    let publisher = client.publisher_with(
        "ordered-retries",
        ordered().with_batching(BatchSettings::default().with_max_messages(7)),
    );
    let keys = ["alpha", "beta", "gamma"];
    let mut expected: HashMap<String, usize> = HashMap::new();
    let mut handles = Vec::new();
    for i in 0..200usize {
        // An irregular interleaving of the keys.
        let key = keys[(i * i + i / 7) % 3];
        let seq = expected.entry(key.to_string()).or_default();
        handles.push(publisher.publish(seq_message(key, *seq)));
        *seq += 1;
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ids = resolve_ids(handles).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200);

    let requests = proxy.requests();
    let failed = requests.iter().filter(|r| r.injected.is_some()).count();
    assert!(failed >= 3, "only {failed} injected failures: {requests:?}");
    // What reached the server, per key, was in order and each batch once.
    let forwarded: Vec<PubsubMessage> = proxy
        .forwarded()
        .iter()
        .flat_map(|r| {
            r.data
                .iter()
                .zip(&r.ordering_keys)
                .map(|(data, key)| PubsubMessage {
                    data: data.clone(),
                    ordering_key: key.clone(),
                    ..Default::default()
                })
        })
        .collect();
    assert_in_order_without_gaps(&forwarded, &expected);

    let received = server
        .pull_acking_all(&sub, 200, Duration::from_secs(10))
        .await;
    assert_eq!(received.len(), 200);
    assert_in_order_without_gaps(&received, &expected);
    publisher.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retryable_codes_are_retried_with_the_official_backoff() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("retries", false).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let publisher = client.publisher("retries");
    publisher.publish(Message::new("warm-up")).await.unwrap();

    let retryable = [
        Code::Unavailable,
        Code::ResourceExhausted,
        Code::Internal,
        Code::Aborted,
        Code::Unknown,
        Code::DeadlineExceeded,
        Code::Cancelled,
    ];
    proxy.reset();
    let first_call = proxy.calls();
    proxy.set_fault(move |call, _| {
        retryable
            .get(call - first_call)
            .map(|code| Status::new(*code, "injected"))
    });
    let started = Instant::now();
    publisher.publish(Message::new("persistent")).await.unwrap();
    let attempts: Vec<Instant> = proxy.requests().iter().map(|r| r.at).collect();
    assert_eq!(attempts.len(), retryable.len() + 1, "one retry per failure");
    assert_eq!(
        attempts[0] - started,
        Duration::from_millis(10),
        "max_delay"
    );
    // The official backoff: 100 ms, x4 each time (up to 60 s).
    assert_backoff(
        &attempts,
        Duration::from_millis(100),
        4.0,
        Duration::from_secs(60),
    );
    assert_eq!(
        Instant::now(),
        attempts[attempts.len() - 1],
        "resolved by the answer to the last attempt"
    );

    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::PermissionDenied,
        Code::FailedPrecondition,
        Code::Unauthenticated,
    ] {
        proxy.reset();
        proxy.set_fault(move |_, _| Some(Status::new(code, "injected")));
        assert_eq!(
            rpc_code(publisher.publish(Message::new("doomed")).await),
            code
        );
        assert_eq!(proxy.requests().len(), 1, "{code:?} is not retried");
    }

    // Custom settings: 1 s, doubling, at most 3 s. The jitter ranges of
    // the first delays do not overlap, so the multiplier shows.
    let custom = client.publisher_with(
        "retries",
        PublisherConfig::default().with_retry(
            RetrySettings::default_for(CallFamily::Publish)
                .with_initial_backoff(Duration::from_secs(1))
                .with_multiplier(2.0)
                .with_max_backoff(Duration::from_secs(3)),
        ),
    );
    proxy.reset();
    let first_call = proxy.calls();
    proxy
        .set_fault(move |call, _| (call - first_call < 5).then(|| Status::unavailable("injected")));
    custom.publish(Message::new("custom")).await.unwrap();
    let attempts: Vec<Instant> = proxy.requests().iter().map(|r| r.at).collect();
    assert_eq!(attempts.len(), 6);
    // Nominal 1, 2, 3 (capped), 3, 3 s.
    assert_backoff(
        &attempts,
        Duration::from_secs(1),
        2.0,
        Duration::from_secs(3),
    );

    // A publisher gives up once the total timeout would be exceeded.
    let total = Duration::from_millis(400);
    let impatient = client.publisher_with(
        "retries",
        PublisherConfig::default().with_retry(
            RetrySettings::default_for(CallFamily::Publish)
                .with_multiplier(1.3)
                .with_total_timeout(total),
        ),
    );
    proxy.reset();
    proxy.set_fault(|_, _| Some(Status::unavailable("injected")));
    let result = impatient.publish(Message::new("never")).await;
    assert_eq!(rpc_code(result), Code::Unavailable);
    let attempts: Vec<Instant> = proxy.requests().iter().map(|r| r.at).collect();
    let next = assert_backoff(
        &attempts,
        Duration::from_millis(100),
        1.3,
        Duration::from_secs(60),
    );
    let (first, last) = (attempts[0], attempts[attempts.len() - 1]);
    assert_eq!(
        Instant::now(),
        last,
        "failed at once, without another sleep"
    );
    assert!(last - first <= total, "retried past the total timeout");
    assert!(
        last - first + next > total,
        "gave up although the next retry (at most {next:?}) fitted"
    );
    // Three retries take at most 100 + 130 + 169 ms, so they always fit; a
    // fifth would take at least 50 + 65 + 84.5 + 109.9 + 142.8 ms.
    assert!(
        (4..=5).contains(&attempts.len()),
        "{} attempts",
        attempts.len()
    );

    proxy.clear_fault();
    let received = server
        .pull_acking_all(&sub, 3, Duration::from_secs(5))
        .await;
    let mut data: Vec<_> = received.iter().map(|m| m.data.to_vec()).collect();
    data.sort();
    assert_eq!(
        data,
        [
            b"custom".to_vec(),
            b"persistent".to_vec(),
            b"warm-up".to_vec()
        ]
    );
}

// ----- 4. non-retryable failures pause a key --------------------------------

#[tokio::test(start_paused = true)]
async fn a_failed_ordered_publish_pauses_its_key_until_resumed() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("paused", true).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.set_delay(Duration::from_millis(200));
    proxy.set_fault(|_, request| {
        (request.messages[0].ordering_key == "bad").then(|| Status::invalid_argument("injected"))
    });
    let client = proxy.client().await;
    let publisher = client.publisher_with("paused", ordered());

    let started = Instant::now();
    let bad1 = publisher.publish(seq_message("bad", 1));
    // bad/1 is in flight from 10 ms (max_delay) to 210 ms (the proxy's
    // delay); these wait behind it.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let bad2 = publisher.publish(seq_message("bad", 2));
    let bad3 = publisher.publish(seq_message("bad", 3));
    let good1 = publisher.publish(seq_message("good", 0));
    let unordered = publisher.publish(Message::new("no key"));

    assert_eq!(rpc_code(bad1.await), Code::InvalidArgument);
    assert_eq!(ms_since(started, Instant::now()), 210);
    for queued in [bad2, bad3] {
        match tokio::task::unconstrained(queued).now_or_never() {
            Some(Err(PublishError::OrderingKeyPaused(key))) => assert_eq!(key, "bad"),
            other => panic!("queued behind a failure: {other:?}"),
        }
    }
    good1.await.unwrap();
    unordered.await.unwrap();
    // Sent at 70 ms, answered at 270 ms: the failure held up no other key.
    assert_eq!(ms_since(started, Instant::now()), 270);
    let bad_requests: Vec<u64> = proxy
        .requests()
        .iter()
        .filter(|r| r.ordering_keys.iter().any(|k| k == "bad"))
        .map(|r| ms_since(started, r.at))
        .collect();
    assert_eq!(
        bad_requests,
        [10],
        "the queued bad/2 and bad/3 were never sent"
    );

    // The key stays paused, at once and without a round trip.
    let calls = proxy.calls();
    let later = publisher.publish(seq_message("bad", 4));
    match tokio::task::unconstrained(later).now_or_never() {
        Some(Err(PublishError::OrderingKeyPaused(key))) => assert_eq!(key, "bad"),
        other => panic!("publish on a paused key: {other:?}"),
    }
    assert_eq!(proxy.calls(), calls);
    publisher.publish(seq_message("good", 1)).await.unwrap();
    // A paused key does not hold up flush.
    let flushed = Instant::now();
    publisher.flush().await;
    assert_eq!(flushed.elapsed(), Duration::ZERO);

    proxy.clear_fault();
    proxy.set_delay(Duration::ZERO);
    publisher.resume_publish("bad");
    publisher.publish(seq_message("bad", 5)).await.unwrap();
    publisher.publish(seq_message("bad", 6)).await.unwrap();
    publisher.shutdown().await;

    let received = server
        .pull_acking_all(&sub, 5, Duration::from_secs(5))
        .await;
    let mut data: Vec<String> = received
        .iter()
        .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
        .collect();
    data.sort();
    assert_eq!(data, ["bad/5", "bad/6", "good/0", "good/1", "no key"]);
}

#[tokio::test(start_paused = true)]
async fn publishing_to_a_deleted_topic_fails_with_not_found() {
    let server = ClientServer::start().await;
    server.topic_and_subscription("deleted", false).await;
    let publisher = server.client.publisher_with("deleted", ordered());
    publisher.publish(seq_message("k", 0)).await.unwrap();
    server.client.delete_topic("deleted").await.unwrap();

    assert_eq!(
        rpc_code(publisher.publish(seq_message("k", 1)).await),
        Code::NotFound
    );
    assert!(matches!(
        publisher.publish(seq_message("k", 2)).await,
        Err(PublishError::OrderingKeyPaused(_))
    ));
    // Other keys and unordered messages fail on their own, without pausing.
    assert_eq!(
        rpc_code(publisher.publish(seq_message("j", 0)).await),
        Code::NotFound
    );
    assert_eq!(
        rpc_code(publisher.publish(Message::new("x")).await),
        Code::NotFound
    );
    assert_eq!(
        rpc_code(publisher.publish(Message::new("y")).await),
        Code::NotFound
    );

    server.client.create_topic("deleted").await.unwrap();
    assert!(matches!(
        publisher.publish(seq_message("k", 3)).await,
        Err(PublishError::OrderingKeyPaused(_))
    ));
    publisher.resume_publish("k");
    publisher.resume_publish("j");
    publisher.publish(seq_message("k", 4)).await.unwrap();
    publisher.publish(seq_message("j", 1)).await.unwrap();
    publisher.publish(Message::new("z")).await.unwrap();
}

// ----- 5. flow control and validation ----------------------------------------

#[tokio::test(start_paused = true)]
async fn block_limits_outstanding_messages_and_bytes() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("block", false).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.set_delay(Duration::from_millis(100));
    let client = proxy.client().await;

    // Without flow control everything is in flight at once.
    let publisher = client.publisher("block");
    let messages = (0..30).map(|i| Message::new(format!("free {i}"))).collect();
    let handles = publish_all(&publisher, messages).await;
    resolve_ids(handles).await;
    assert!(proxy.max_in_flight_messages() > 5, "the control case");

    proxy.reset();
    let publisher = client.publisher_with(
        "block",
        flow_control(Some(5), None, LimitExceededBehavior::Block),
    );
    let started = Instant::now();
    let messages = (0..30)
        .map(|i| Message::new(format!("blocked {i}")))
        .collect();
    let handles = publish_all(&publisher, messages).await;
    // Publishing returns at once; the messages wait for room in order:
    // five at a time, each five 10 ms (max_delay) and 100 ms (the round
    // trip) before the next five get room.
    assert_eq!(
        ms_since(started, Instant::now()),
        0,
        "publish does not block"
    );
    resolve_ids(handles).await;
    let max = proxy.max_in_flight_messages();
    assert_eq!(max, 5, "messages in flight");
    let rounds: Vec<(u64, usize)> = proxy
        .requests()
        .iter()
        .map(|r| (ms_since(started, r.at), r.count))
        .collect();
    assert_eq!(
        rounds,
        [(10, 5), (120, 5), (230, 5), (340, 5), (450, 5), (560, 5)]
    );

    proxy.reset();
    let publisher = client.publisher_with(
        "block",
        flow_control(None, Some(1000), LimitExceededBehavior::Block),
    );
    let started = Instant::now();
    let messages = (0..12).map(|_| Message::new(vec![b'b'; 300])).collect();
    let handles = publish_all(&publisher, messages).await;
    resolve_ids(handles).await;
    let max = proxy.max_in_flight_bytes();
    assert_eq!(max, 900, "bytes in flight");
    let rounds: Vec<(u64, usize)> = proxy
        .requests()
        .iter()
        .map(|r| (ms_since(started, r.at), r.count))
        .collect();
    assert_eq!(
        rounds,
        [(10, 3), (120, 3), (230, 3), (340, 3)],
        "three at a time"
    );

    assert_eq!(
        server
            .pull_acking_all(&sub, 72, Duration::from_secs(5))
            .await
            .len(),
        72
    );
}

#[tokio::test(start_paused = true)]
async fn error_behavior_fails_publishes_over_the_limit() {
    let server = ClientServer::start().await;
    server.topic_and_subscription("errors", false).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.set_delay(Duration::from_millis(300));
    let client = proxy.client().await;

    let publisher = client.publisher_with(
        "errors",
        flow_control(Some(5), None, LimitExceededBehavior::Error),
    );
    let messages = (0..5).map(|i| Message::new(format!("ok {i}"))).collect();
    let handles = publish_all(&publisher, messages).await;
    let over = publisher.publish(Message::new("one too many"));
    match tokio::task::unconstrained(over).now_or_never() {
        Some(Err(PublishError::FlowControlLimit(_))) => {}
        other => panic!("expected FlowControlLimit at once, got {other:?}"),
    }
    let started = Instant::now();
    resolve_ids(handles).await;
    // Answered after max_delay and the proxy's delay.
    assert_eq!(ms_since(started, Instant::now()), 310);
    // Room again once the earlier ones are published.
    publisher.publish(Message::new("later")).await.unwrap();

    let publisher = client.publisher_with(
        "errors",
        flow_control(None, Some(1000), LimitExceededBehavior::Error),
    );
    let first = publisher.publish(Message::new(vec![b'x'; 600]));
    let second = publisher.publish(Message::new(vec![b'y'; 600]));
    assert!(matches!(
        second.await,
        Err(PublishError::FlowControlLimit(_))
    ));
    first.await.unwrap();
    publisher
        .publish(Message::new(vec![b'z'; 600]))
        .await
        .unwrap();

    // A resolved handle means its room is free again, every time.
    proxy.set_delay(Duration::ZERO);
    let publisher = client.publisher_with(
        "errors",
        flow_control(Some(1), Some(10), LimitExceededBehavior::Error),
    );
    for i in 0..30 {
        let handle = publisher.publish(Message::new(format!("{i:02}")));
        handle
            .await
            .unwrap_or_else(|e| panic!("publish {i} right after the previous resolved: {e}"));
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_publishes_fail_without_a_round_trip() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("invalid", false).await;

    for behavior in [LimitExceededBehavior::Block, LimitExceededBehavior::Error] {
        let publisher = server
            .client
            .publisher_with("invalid", flow_control(None, Some(100), behavior));
        let handle = publisher.publish(Message::new(vec![b'x'; 101]));
        match tokio::task::unconstrained(handle).now_or_never() {
            Some(Err(PublishError::MessageTooLarge { size, limit, .. })) => {
                assert_eq!((size, limit), (101, 100));
            }
            other => panic!("{behavior:?}: expected MessageTooLarge at once, got {other:?}"),
        }
        publisher
            .publish(Message::new(vec![b'x'; 100]))
            .await
            .unwrap();
    }
    // Ignore means no flow control at all.
    let publisher = server.client.publisher_with(
        "invalid",
        flow_control(Some(1), Some(100), LimitExceededBehavior::Ignore),
    );
    let a = publisher.publish(Message::new(vec![b'x'; 101]));
    let b = publisher.publish(Message::new(vec![b'x'; 101]));
    resolve_ids(vec![a, b]).await;

    let unordered = server.client.publisher("invalid");
    assert!(matches!(
        unordered
            .publish(Message::new("x").with_ordering_key("k"))
            .await,
        Err(PublishError::OrderingNotEnabled)
    ));

    // The 10 MB API limit counts data, ordering key and attributes.
    let at_limit = Message::new(vec![b'm'; 9_999_995]).with_attribute("abc", "de");
    let over_limit = Message::new(vec![b'm'; 9_999_996]).with_attribute("abc", "de");
    match unordered.publish(over_limit).await {
        Err(PublishError::MessageTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (10_000_001, 10_000_000));
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    unordered.publish(at_limit).await.unwrap();
    unordered.shutdown().await;
    // 2 x 100 + 2 x 101 bytes and the 10 MB one; nothing of the failures.
    let received = server
        .pull_acking_all(&sub, 5, Duration::from_secs(10))
        .await;
    let mut sizes: Vec<usize> = received.iter().map(payload_size).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![100, 100, 101, 101, 10_000_000]);
}

// ----- 6. flush, shutdown, drop ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn flush_waits_for_everything() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("flush", true).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.set_delay(Duration::from_millis(100));
    let client = proxy.client().await;
    let publisher = client.publisher_with(
        "flush",
        ordered().with_batching(
            BatchSettings::default()
                .with_max_messages(50)
                .with_max_bytes(1_000_000)
                .with_max_delay(Duration::from_secs(30)),
        ),
    );
    // Flushing an idle publisher returns at once.
    let idle = Instant::now();
    publisher.flush().await;
    assert_eq!(idle.elapsed(), Duration::ZERO);

    let mut expected: HashMap<String, usize> = HashMap::new();
    let mut handles = Vec::new();
    for i in 0..300usize {
        let key = ["a", "b", "c", ""][i % 4];
        let seq = expected.entry(key.to_string()).or_default();
        handles.push(publisher.publish(seq_message(key, *seq)));
        *seq += 1;
    }
    let started = Instant::now();
    publisher.flush().await;
    // Each key has 75 messages: a full batch of 50 went out as soon as it
    // filled; flush sends the other 25 at once without a key (answered at
    // 100 ms), and for each ordering key behind its first batch (sent at
    // 100 ms, answered at 200 ms). Not a word of the 30 s max_delay.
    assert_eq!(
        ms_since(started, Instant::now()),
        200,
        "flush returned before every round trip, or waited for max_delay"
    );
    let mut sent: Vec<(u64, usize)> = proxy
        .requests()
        .iter()
        .map(|r| (ms_since(started, r.at), r.count))
        .collect();
    sent.sort_unstable();
    assert_eq!(
        sent,
        [
            (0, 25),
            (0, 50),
            (0, 50),
            (0, 50),
            (0, 50),
            (100, 25),
            (100, 25),
            (100, 25)
        ]
    );
    for (i, handle) in handles.into_iter().enumerate() {
        match tokio::task::unconstrained(handle).now_or_never() {
            Some(Ok(_)) => {}
            other => panic!("message {i} not published when flush returned: {other:?}"),
        }
    }
    let received = server
        .pull_acking_all(&sub, 300, Duration::from_secs(5))
        .await;
    assert_eq!(received.len(), 300);
    assert_in_order_without_gaps(&received, &expected);
}

#[tokio::test(start_paused = true)]
async fn shutdown_loses_nothing() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("shutdown", true).await;
    let publisher = server.client.publisher_with(
        "shutdown",
        ordered().with_batching(BatchSettings::default().with_max_delay(Duration::from_secs(30))),
    );
    let mut expected: HashMap<String, usize> = HashMap::new();
    let mut handles = Vec::new();
    for i in 0..1000usize {
        let key = ["k1", "k2", "k3", "k4", ""][i % 5];
        let seq = expected.entry(key.to_string()).or_default();
        handles.push(publisher.publish(seq_message(key, *seq)));
        *seq += 1;
    }
    let started = Instant::now();
    publisher.shutdown().await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "shutdown does not wait for max_delay"
    );
    for (i, handle) in handles.into_iter().enumerate() {
        assert!(
            matches!(
                tokio::task::unconstrained(handle).now_or_never(),
                Some(Ok(_))
            ),
            "message {i} not published when shutdown returned"
        );
    }
    let received = server
        .pull_acking_all(&sub, 1000, Duration::from_secs(10))
        .await;
    assert_eq!(received.len(), 1000);
    assert_in_order_without_gaps(&received, &expected);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_publisher_still_delivers_what_was_queued() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("dropped", false).await;
    let publisher = server.client.publisher_with(
        "dropped",
        config(BatchSettings::default().with_max_delay(Duration::from_secs(30))),
    );
    let messages = (0..250).map(|i| Message::new(format!("d{i}"))).collect();
    let handles = publish_all(&publisher, messages).await;
    let dropped_at = server_wall(&server);
    drop(publisher);
    let received = server
        .pull_acking_all(&sub, 250, Duration::from_secs(5))
        .await;
    assert_eq!(received.len(), 250);
    // Far from max_delay: the drop sent the partial batch at once.
    for message in &received {
        let published = message.publish_time.as_ref().unwrap();
        let published = std::time::UNIX_EPOCH
            + Duration::new(
                u64::try_from(published.seconds).unwrap(),
                u32::try_from(published.nanos).unwrap(),
            );
        assert_eq!(published, dropped_at, "published later than the drop");
    }
    assert_eq!(
        resolve_ids(handles).await.len(),
        250,
        "handles outlive the publisher"
    );
}

/// While an ordered key waits for its in-flight batch, the dispatcher must
/// sleep rather than spin. Runs on a current-thread runtime so the test
/// thread's CPU time is everything the client, proxy and server used. The
/// one test on real time: on a paused clock a spinning task would stop
/// virtual time and hang the test instead of failing it. It waits 0.6 s.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "current_thread")]
async fn waiting_behind_an_in_flight_batch_does_not_spin() {
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime and stime, fields 14 and 15 of stat(5).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    let server = ClientServer::start().await;
    server.topic_and_subscription("no-spin", true).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let publisher = client.publisher_with("no-spin", ordered());
    publisher.publish(seq_message("k", 0)).await.unwrap();

    proxy.set_delay(Duration::from_millis(600));
    let first = publisher.publish(seq_message("k", 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = publisher.publish(seq_message("k", 2));
    let before = thread_cpu_ticks();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let used = thread_cpu_ticks() - before;
    // Clock ticks are 10 ms; a spinning dispatcher burns about 45 of them,
    // a sleeping one none.
    assert!(used < 15, "{used} ticks of CPU while waiting");
    // The second batch, sent once the first is answered, need not wait.
    proxy.set_delay(Duration::ZERO);
    resolve_ids(vec![first, second]).await;
}
