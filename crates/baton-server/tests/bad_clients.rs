#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad clients do not hurt others. While a healthy client publishes, pulls
//! and acks every 10 ms, bad clients send oversized messages, too many
//! attributes, garbage ack ids, malformed JSON, bytes that are not HTTP at
//! all, half a request, and open StreamingPulls they never read while lots
//! of messages are published to them. The healthy client's traffic must keep
//! flowing, every bad request must get its exact error, and the server must
//! neither panic nor hang.
//!
//! It runs on virtual time (`start_paused` and `TestServer::start_virtual`):
//! the healthy client and the flood tick on the same 10 ms virtual ticks, so
//! their requests are in flight together, and a round trip that is not
//! stalled takes no virtual time at all. So instead of bounding latencies,
//! the test asserts that every healthy round trip succeeds and takes zero
//! virtual time, before and during the attack: one held up behind a bad
//! client (a waiting pull that is not answered, a blocked connection) would
//! take virtual time or never finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use baton_proto::pubsub::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, StreamingPullRequest,
};
use baton_testkit::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

/// The healthy client's and the flood's pace.
const TICK: Duration = Duration::from_millis(10);

/// What the healthy client saw: the virtual time each round trip (publish,
/// waiting pull, ack) took, before and during the attack.
#[derive(Debug, Default)]
struct Healthy {
    baseline: Vec<Duration>,
    under_attack: Vec<Duration>,
    errors: Vec<String>,
}

#[tokio::test(start_paused = true)]
async fn bad_clients_do_not_hurt_healthy_ones() {
    count_panics();
    let t = TestServer::start_virtual().await;
    let healthy_topic = t.create_topic("healthy").await;
    let healthy_sub = t.create_subscription("healthy-sub", &healthy_topic).await;
    // A subscription of the healthy topic that only a non-reader consumes.
    let shadow_sub = t.create_subscription("shadow-sub", &healthy_topic).await;
    let busy_topic = t.create_topic("busy").await;
    let slow_sub = t.create_subscription("slow-sub", &busy_topic).await;

    // The healthy client, on its own connection: publish, waiting pull, ack.
    let attack = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = {
        let channel = t.new_channel().await;
        let (attack, stop) = (attack.clone(), stop.clone());
        let (topic, sub) = (healthy_topic.clone(), healthy_sub.clone());
        tokio::spawn(async move {
            let mut publisher = publisher(channel.clone());
            let mut subscriber = subscriber(channel);
            let mut seen = Healthy::default();
            let mut round = 0u64;
            let mut ticks = tokio::time::interval(TICK);
            while !stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                round += 1;
                let during = attack.load(Ordering::SeqCst);
                let started = Instant::now();
                let published = publisher
                    .publish(PublishRequest {
                        topic: topic.clone(),
                        messages: vec![msg(&format!("healthy-{round}"))],
                    })
                    .await;
                if let Err(status) = published {
                    seen.errors.push(format!("publish: {status:?}"));
                    continue;
                }
                let mut request = tonic::Request::new(pull_request(&sub, 10, false));
                request.set_timeout(Duration::from_secs(5));
                let received = match subscriber.pull(request).await {
                    Ok(response) => response.into_inner().received_messages,
                    Err(status) => {
                        seen.errors.push(format!("pull: {status:?}"));
                        continue;
                    }
                };
                if datas(&received) != vec![format!("healthy-{round}")] {
                    seen.errors
                        .push(format!("round {round} got {:?}", datas(&received)));
                }
                if let Err(status) = subscriber
                    .acknowledge(AcknowledgeRequest {
                        subscription: sub.clone(),
                        ack_ids: ack_ids(&received),
                    })
                    .await
                {
                    seen.errors.push(format!("ack: {status:?}"));
                }
                let took = started.elapsed();
                if during {
                    seen.under_attack.push(took);
                } else {
                    seen.baseline.push(took);
                }
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    attack.store(true, Ordering::SeqCst);
    let attack_started = Instant::now();

    // Streams that never read their responses, on their own connection.
    let lazy_channel = t.new_channel().await;
    let mut slow_stream = PullStream::open(lazy_channel.clone(), stream_request(&slow_sub))
        .await
        .unwrap();
    let shadow_stream = PullStream::open(lazy_channel, stream_request(&shadow_sub))
        .await
        .unwrap();

    // A socket that sends half a request and then nothing.
    let mut half_open = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    half_open
        .write_all(b"POST /v1/projects/p/topics/t:publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"mess")
        .await
        .unwrap();

    // Lots of messages for the non-readers: 20 x 500 messages of 2 KB, a
    // batch every tick.
    let flood = {
        let channel = t.new_channel().await;
        let topic = busy_topic.clone();
        tokio::spawn(async move {
            let mut publisher = publisher(channel);
            let batch: Vec<PubsubMessage> = (0..500)
                .map(|i| PubsubMessage {
                    data: vec![b'f'; 2048],
                    attributes: [("i".to_string(), i.to_string())].into(),
                    ..Default::default()
                })
                .collect();
            let mut published = 0;
            let mut ticks = tokio::time::interval(TICK);
            for _ in 0..20 {
                ticks.tick().await;
                let ids = publisher
                    .publish(PublishRequest {
                        topic: topic.clone(),
                        messages: batch.clone(),
                    })
                    .await
                    .expect("flood publish")
                    .into_inner()
                    .message_ids;
                published += ids.len();
            }
            published
        })
    };

    // The bad requests, each several times, each with its exact answer.
    let bad_channel = t.new_channel().await;
    let mut bad_publisher = publisher(bad_channel.clone());
    let mut bad_subscriber = subscriber(bad_channel);
    for _ in 0..3 {
        // Spread over the flood's ticks.
        tokio::time::sleep(3 * TICK).await;
        assert_status(
            bad_publisher
                .publish(PublishRequest {
                    topic: healthy_topic.clone(),
                    messages: vec![PubsubMessage {
                        data: vec![b'x'; 10_000_001],
                        ..Default::default()
                    }],
                })
                .await,
            Code::InvalidArgument,
            "The value for message_size is too large. You passed 10000001 in the request, but the maximum value is 10000000.",
        );
        assert_status(
            bad_publisher
                .publish(PublishRequest {
                    topic: healthy_topic.clone(),
                    messages: vec![PubsubMessage {
                        data: b"x".to_vec(),
                        attributes: (0..101)
                            .map(|i| (format!("k{i}"), "v".to_string()))
                            .collect(),
                        ..Default::default()
                    }],
                })
                .await,
            Code::InvalidArgument,
            "The value for attributes is too large. You passed 101 in the request, but the maximum value is 100.",
        );
        assert_status(
            bad_subscriber
                .acknowledge(AcknowledgeRequest {
                    subscription: healthy_sub.clone(),
                    ack_ids: vec!["garbage".to_string()],
                })
                .await,
            Code::InvalidArgument,
            "Invalid ack id (ack_id=garbage)",
        );
        let (status, body) = t
            .rest_raw(
                reqwest::Method::POST,
                &format!("/v1/{healthy_topic}:publish"),
                "{\"messages\": [{\"data\": ",
            )
            .await;
        assert_eq!(
            (
                status,
                serde_json::from_str::<serde_json::Value>(&body).unwrap()
            ),
            (
                400,
                serde_json::json!({"error": {
                    "code": 400,
                    "message": "Payload isn't valid for request.",
                    "status": "INVALID_ARGUMENT"
                }})
            )
        );
        // Bytes that are not HTTP at all.
        let mut garbage = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        garbage
            .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http \r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the server closes a garbage connection");
        // A stream whose first request is bad.
        let status = stream_failure(
            t.new_channel().await,
            StreamingPullRequest {
                stream_ack_deadline_seconds: 10,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "first message must set subscription")
        );
    }
    let flooded = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flood is published")
        .unwrap();
    assert_eq!(flooded, 10_000);
    // Keep the healthy client going a little longer under the same load.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attack_took = attack_started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let seen = tokio::time::timeout(Duration::from_secs(15), healthy)
        .await
        .expect("the healthy client finishes")
        .unwrap();

    assert!(
        seen.errors.is_empty(),
        "healthy client failed: {:?}",
        seen.errors
    );
    assert!(
        seen.baseline.len() >= 10,
        "the healthy client ran before the attack: {seen:?}"
    );
    // The attack lasted the flood's 20 ticks and the 100 ms after it, and
    // the healthy client kept its pace throughout.
    assert!(attack_took >= 29 * TICK, "attack took {attack_took:?}");
    assert!(
        seen.under_attack.len() >= 28,
        "the healthy client kept going: {} round trips in {attack_took:?}",
        seen.under_attack.len()
    );
    assert!(
        seen.baseline
            .iter()
            .chain(&seen.under_attack)
            .all(|took| took.is_zero()),
        "a healthy round trip was held up: {seen:?}"
    );

    // The non-reading streams were not broken, only held back: reading now
    // yields messages.
    let late = slow_stream.collect(1, Duration::from_secs(5)).await;
    assert!(
        !late.is_empty(),
        "the slow stream gets its messages once it reads"
    );
    drop(slow_stream);
    drop(shadow_stream);
    drop(half_open);

    // The server still answers everyone, and panicked nowhere.
    assert_eq!(
        t.pull_now(&healthy_sub, 10).await.len(),
        0,
        "every healthy message was acked"
    );
    t.create_topic("after-the-storm").await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    t.shutdown().await;
}
