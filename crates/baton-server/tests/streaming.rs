#![allow(clippy::unwrap_used, clippy::expect_used)]
//! StreamingPull as the client libraries use it (`pubsub-api.md` section 5):
//! event-driven delivery, flow control, keepalives, subscription properties
//! on every response, shared backlogs, in-stream acks and modacks, invalid
//! first requests, and how streams end.
//!
//! Flow control windows, lease expiry and the sharing of a backlog are
//! pinned down exactly at the broker level (`crates/baton-broker/tests/
//! flow_control.rs`, `leases.rs`); here they are checked end to end through
//! the stream's requests and responses. The tests run on virtual time
//! (`start_paused` and `TestServer::start_virtual`): "nothing arrives within
//! 400 ms" costs no real time, a message published to a waiting stream is on
//! it at the same virtual instant, and a keepalive is answered at the instant
//! it is sent.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use baton_proto::pubsub::{
    DeleteSubscriptionRequest, PubsubMessage, ReceivedMessage, StreamingPullRequest,
    StreamingPullResponse, Subscription,
};
use baton_testkit::prelude::*;
use tonic::Code;

const SOON: Duration = Duration::from_secs(5);

fn subscription(id: &str, topic: &str) -> Subscription {
    Subscription {
        name: subscription_name(id),
        topic: topic.to_string(),
        ..Default::default()
    }
}

/// Makes sure the stream's server side is running (its keepalive answer
/// came back), so what follows happens while it waits.
async fn settle(stream: &mut PullStream) {
    let response = stream.keepalive(SOON).await;
    assert!(response.received_messages.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_stream_gets_new_messages_at_once() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
    settle(&mut stream).await;
    for round in 0..7 {
        // The stream idles (nothing is sent on it) for a while first.
        tokio::time::sleep(Duration::from_secs(round + 1)).await;
        let published = Instant::now();
        t.publish(&topic, &[&format!("m{round}")]).await;
        let got = stream.collect(1, SOON).await;
        assert_eq!(datas(&got), vec![format!("m{round}")]);
        // Woken by the publish itself, not a polling tick: no virtual time
        // passes between the publish and the response.
        assert_eq!(since(published), Duration::ZERO, "round {round}");
        t.ack(&sub, &ack_ids(&got)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn ready_messages_are_batched() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let ids = t
        .publish_messages(
            &topic,
            (0..50)
                .map(|i| msg(&format!("m{i}")))
                .collect::<Vec<PubsubMessage>>(),
        )
        .await;
    let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
    let mut responses = 0;
    let mut got = Vec::new();
    while got.len() < 50 {
        let response = stream.expect_response(SOON).await;
        responses += 1;
        got.extend(response.received_messages);
    }
    assert_eq!(got.iter().map(message_id).collect::<Vec<_>>(), ids);
    assert!(
        responses < 50,
        "50 ready messages came in {responses} responses: batch them"
    );
}

fn assert_properties(response: &StreamingPullResponse, exactly_once: bool, ordered: bool) {
    let properties = response
        .subscription_properties
        .as_ref()
        .unwrap_or_else(|| panic!("response without subscription_properties: {response:?}"));
    assert_eq!(
        (
            properties.exactly_once_delivery_enabled,
            properties.message_ordering_enabled
        ),
        (exactly_once, ordered)
    );
}

#[tokio::test(start_paused = true)]
async fn responses_stay_within_what_clients_accept() {
    // Clients accept StreamingPull responses of up to 20 MiB; three ready
    // 9 MB messages must not travel in one response.
    const CLIENT_LIMIT: usize = 20 * 1024 * 1024;
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    for c in [b'a', b'b', b'c'] {
        t.publish_messages(
            &topic,
            vec![PubsubMessage {
                data: vec![c; 9_000_000],
                ..Default::default()
            }],
        )
        .await;
    }
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    requests.send(stream_request(&sub)).await.unwrap();
    let mut responses =
        baton_proto::pubsub::subscriber_client::SubscriberClient::new(t.channel.clone())
            .max_decoding_message_size(CLIENT_LIMIT)
            .streaming_pull(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
    let mut received = 0;
    while received < 3 {
        let response = tokio::time::timeout(SOON, responses.message())
            .await
            .expect("a response in time")
            .expect("responses within the client's 20 MiB limit")
            .expect("the stream stays open");
        assert!(prost::Message::encoded_len(&response) <= CLIENT_LIMIT);
        received += response.received_messages.len();
    }
    assert_eq!(received, 3);
    drop(requests);
}

#[tokio::test(start_paused = true)]
async fn every_response_carries_subscription_properties() {
    let t = TestServer::start_virtual().await;
    let plain_topic = t.create_topic("plain").await;
    let flagged_topic = t.create_topic("flagged").await;
    let plain = t.create_subscription("plain", &plain_topic).await;
    let flagged = t
        .create_subscription_with(Subscription {
            enable_exactly_once_delivery: true,
            enable_message_ordering: true,
            ..subscription("flagged", &flagged_topic)
        })
        .await
        .name;
    for (topic, sub, exactly_once, ordered) in [
        (plain_topic, plain, false, false),
        (flagged_topic, flagged, true, true),
    ] {
        let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
        // A keepalive answer...
        let keepalive = stream.keepalive(SOON).await;
        assert_properties(&keepalive, exactly_once, ordered);
        // ...and message deliveries, in several responses, and (on an
        // exactly-once stream) the confirmations of in-stream acks.
        let mut received = 0;
        let mut confirmed = Vec::new();
        for round in 0..3 {
            t.publish(&topic, &[&format!("m{round}")]).await;
            let mut delivered = Vec::new();
            while delivered.is_empty() {
                let response = stream.expect_response(SOON).await;
                assert_properties(&response, exactly_once, ordered);
                if let Some(confirmation) = &response.acknowledge_confirmation {
                    confirmed.extend(confirmation.ack_ids.clone());
                }
                delivered = response.received_messages;
            }
            received += delivered.len();
            stream
                .send(StreamingPullRequest {
                    ack_ids: ack_ids(&delivered),
                    ..Default::default()
                })
                .await;
        }
        while let Some(Ok(Some(response))) = stream.next_within(Duration::from_millis(300)).await {
            assert_properties(&response, exactly_once, ordered);
            if let Some(confirmation) = &response.acknowledge_confirmation {
                confirmed.extend(confirmation.ack_ids.clone());
            }
        }
        assert_eq!(received, 3);
        assert_eq!(t.backlog(&sub), 0);
        if exactly_once {
            assert_eq!(confirmed.len(), 3, "each in-stream ack is confirmed");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn keepalives_are_answered() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
    // Clients send a keepalive every 30 s on an idle stream and give up
    // when none is answered within 15 s: each is answered at once, and the
    // idle stream stays open between them.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let sent = Instant::now();
        let response = stream.keepalive(SOON).await;
        assert_eq!(since(sent), Duration::ZERO, "keepalive {round}");
        assert!(response.received_messages.is_empty());
        assert!(response.subscription_properties.is_some());
    }
    // Still a working stream after 90 s of keepalives only.
    t.publish(&topic, &["after"]).await;
    assert_eq!(datas(&stream.collect(1, SOON).await), vec!["after"]);
}

/// Reads whatever arrives within `within` without failing on silence.
async fn drain(stream: &mut PullStream, within: Duration) -> Vec<ReceivedMessage> {
    stream.collect(usize::MAX, within).await
}

#[tokio::test(start_paused = true)]
async fn flow_control_limits_outstanding_messages() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut stream = t
        .open_stream(StreamingPullRequest {
            max_outstanding_messages: 2,
            ..stream_request(&sub)
        })
        .await
        .unwrap();
    t.publish(&topic, &["1", "2", "3", "4", "5"]).await;
    let first = stream.collect(2, SOON).await;
    assert_eq!(datas(&first), vec!["1", "2"]);
    assert!(
        drain(&mut stream, Duration::from_millis(400))
            .await
            .is_empty(),
        "no third message while two are outstanding"
    );
    // A full window does not stop keepalive answers.
    let keepalive = stream.keepalive(SOON).await;
    assert!(keepalive.received_messages.is_empty());
    assert!(keepalive.subscription_properties.is_some());

    // A unary ack frees one slot...
    t.ack(&sub, &[first[0].ack_id.clone()]).await.unwrap();
    let third = stream.collect(1, SOON).await;
    assert_eq!(datas(&third), vec!["3"]);
    assert!(
        drain(&mut stream, Duration::from_millis(300))
            .await
            .is_empty()
    );

    // ...and so does an in-stream ack, or a nack.
    stream
        .send(StreamingPullRequest {
            ack_ids: vec![first[1].ack_id.clone()],
            ..Default::default()
        })
        .await;
    let fourth = stream.collect(1, SOON).await;
    assert_eq!(datas(&fourth), vec!["4"]);
    assert!(
        drain(&mut stream, Duration::from_millis(300))
            .await
            .is_empty()
    );
    t.modack(&sub, &ack_ids(&third), 0).await.unwrap();
    let fifth = stream.collect(1, SOON).await;
    assert_eq!(datas(&fifth), vec!["5"]);
}

#[tokio::test(start_paused = true)]
async fn flow_control_limits_outstanding_bytes() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut stream = t
        .open_stream(StreamingPullRequest {
            max_outstanding_bytes: 250,
            ..stream_request(&sub)
        })
        .await
        .unwrap();
    let hundred = |c: char| msg(&c.to_string().repeat(100));
    t.publish_messages(
        &topic,
        vec![hundred('a'), hundred('b'), hundred('c'), hundred('d')],
    )
    .await;
    let first = stream.collect(2, SOON).await;
    assert_eq!(first.len(), 2);
    assert!(
        drain(&mut stream, Duration::from_millis(400))
            .await
            .is_empty(),
        "a third 100-byte message would exceed 250 outstanding bytes"
    );
    t.ack(&sub, &[first[0].ack_id.clone()]).await.unwrap();
    let third = stream.collect(1, SOON).await;
    assert_eq!(datas(&third), vec!["c".repeat(100)]);
    assert!(
        drain(&mut stream, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn two_streams_share_one_backlog() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let open = || {
        t.open_stream(StreamingPullRequest {
            max_outstanding_messages: 5,
            ..stream_request(&sub)
        })
    };
    let mut a = open().await.unwrap();
    let mut b = open().await.unwrap();
    settle(&mut a).await;
    settle(&mut b).await;
    let ids: Vec<String> = t
        .publish_messages(&topic, (0..20).map(|i| msg(&format!("m{i}"))).collect())
        .await;

    // Each stream fills its window from the one backlog, none twice.
    let from_a = a.collect(5, SOON).await;
    let from_b = b.collect(5, SOON).await;
    assert_eq!((from_a.len(), from_b.len()), (5, 5));
    let mut seen: HashSet<String> = HashSet::new();
    for m in from_a.iter().chain(&from_b) {
        assert!(
            seen.insert(message_id(m)),
            "delivered to both streams: {m:?}"
        );
    }

    // Ack as they come until the backlog is drained.
    let (mut total_a, mut total_b) = (from_a.len(), from_b.len());
    t.ack(&sub, &ack_ids(&from_a)).await.unwrap();
    t.ack(&sub, &ack_ids(&from_b)).await.unwrap();
    let deadline = Instant::now() + SOON;
    while seen.len() < 20 && Instant::now() < deadline {
        for (stream, total) in [(&mut a, &mut total_a), (&mut b, &mut total_b)] {
            if let Some(Ok(Some(response))) = stream.next_within(Duration::from_millis(50)).await {
                for m in &response.received_messages {
                    assert!(seen.insert(message_id(m)), "delivered twice: {m:?}");
                }
                *total += response.received_messages.len();
                if !response.received_messages.is_empty() {
                    t.ack(&sub, &ack_ids(&response.received_messages))
                        .await
                        .unwrap();
                }
            }
        }
    }
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>());
    assert_eq!(total_a + total_b, 20);
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test(start_paused = true)]
async fn in_stream_acks_and_modacks() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
    t.publish(&topic, &["one", "two", "three"]).await;
    let got = stream.collect(3, SOON).await;
    assert_eq!(datas(&got), vec!["one", "two", "three"]);
    // Ack one, nack two, extend three, in one request.
    stream
        .send(StreamingPullRequest {
            ack_ids: vec![got[0].ack_id.clone()],
            modify_deadline_ack_ids: vec![got[1].ack_id.clone(), got[2].ack_id.clone()],
            modify_deadline_seconds: vec![0, 60],
            ..Default::default()
        })
        .await;
    let again = stream.collect(1, SOON).await;
    assert_eq!(datas(&again), vec!["two"]);
    assert_ne!(again[0].ack_id, got[1].ack_id);
    assert_eq!(t.backlog(&sub), 2);
    // Shorten three to 1 s: it comes back on the stream 1 s later.
    let shortened = Instant::now();
    stream
        .send(StreamingPullRequest {
            modify_deadline_ack_ids: vec![got[2].ack_id.clone()],
            modify_deadline_seconds: vec![1],
            ..Default::default()
        })
        .await;
    let expired = stream.collect(1, SOON).await;
    assert_eq!(datas(&expired), vec!["three"]);
    assert_eq!(since(shortened), Duration::from_secs(1));
    stream
        .send(StreamingPullRequest {
            ack_ids: vec![again[0].ack_id.clone(), expired[0].ack_id.clone()],
            ..Default::default()
        })
        .await;
    settled("the in-stream acks settle both", || t.backlog(&sub) == 0).await;
    // The stream keeps working.
    settle(&mut stream).await;
}

#[tokio::test(start_paused = true)]
async fn bad_later_requests_end_the_stream_with_invalid_argument() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    t.publish(&topic, &["m"]).await;
    let bad_requests = [
        // Lengths of the modify_deadline lists differ.
        StreamingPullRequest {
            modify_deadline_ack_ids: vec!["a".to_string(), "b".to_string()],
            modify_deadline_seconds: vec![10],
            ..Default::default()
        },
        // A negative deadline.
        StreamingPullRequest {
            modify_deadline_ack_ids: vec!["LEASED".to_string()],
            modify_deadline_seconds: vec![-1],
            ..Default::default()
        },
        // First-request-only fields.
        StreamingPullRequest {
            subscription: sub.clone(),
            ..Default::default()
        },
        StreamingPullRequest {
            max_outstanding_messages: 7,
            ..Default::default()
        },
        StreamingPullRequest {
            client_id: "again".to_string(),
            ..Default::default()
        },
        // A later deadline out of bounds.
        StreamingPullRequest {
            stream_ack_deadline_seconds: 5,
            ..Default::default()
        },
    ];
    for mut bad in bad_requests {
        let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
        let leased = stream.collect(1, SOON).await;
        for id in &mut bad.modify_deadline_ack_ids {
            if id == "LEASED" {
                *id = leased[0].ack_id.clone();
            }
        }
        stream.send(bad.clone()).await;
        let status = stream.expect_error(SOON).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        drop(stream);
        t.modack(&sub, &ack_ids(&leased), 0).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_first_requests_are_refused() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let cases = [
        (
            StreamingPullRequest {
                stream_ack_deadline_seconds: 10,
                ..Default::default()
            },
            Code::InvalidArgument,
            "first message must set subscription".to_string(),
        ),
        (
            StreamingPullRequest {
                stream_ack_deadline_seconds: 5,
                ..stream_request(&sub)
            },
            Code::InvalidArgument,
            "stream_ack_deadline_seconds must be between 10 and 600 seconds".to_string(),
        ),
        (
            StreamingPullRequest {
                stream_ack_deadline_seconds: 0,
                ..stream_request(&sub)
            },
            Code::InvalidArgument,
            "stream_ack_deadline_seconds must be between 10 and 600 seconds".to_string(),
        ),
        (
            StreamingPullRequest {
                stream_ack_deadline_seconds: 601,
                ..stream_request(&sub)
            },
            Code::InvalidArgument,
            "stream_ack_deadline_seconds must be between 10 and 600 seconds".to_string(),
        ),
        (
            stream_request("sub-a"),
            Code::InvalidArgument,
            "Invalid [subscriptions] name: (name=sub-a)".to_string(),
        ),
        (
            stream_request(&subscription_name("missing-sub")),
            Code::NotFound,
            "Subscription does not exist (resource=missing-sub)".to_string(),
        ),
    ];
    for (first, code, message) in cases {
        let status = stream_failure(t.channel.clone(), first.clone()).await;
        assert_eq!(
            (status.code(), status.message()),
            (code, message.as_str()),
            "{first:?}"
        );
    }
    // The edges are fine.
    for seconds in [10, 600] {
        let mut stream = t
            .open_stream(StreamingPullRequest {
                stream_ack_deadline_seconds: seconds,
                ..stream_request(&sub)
            })
            .await
            .unwrap();
        settle(&mut stream).await;
    }
}

#[tokio::test(start_paused = true)]
async fn deleting_the_subscription_ends_its_streams_with_not_found() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
    settle(&mut stream).await;
    t.subscriber()
        .delete_subscription(DeleteSubscriptionRequest {
            subscription: sub.clone(),
        })
        .await
        .unwrap();
    let status = stream.expect_error(Duration::from_secs(2)).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // New streams on it are refused.
    let mut old = t.open_stream(stream_request(&sub)).await;
    assert_eq!(
        old.as_mut().err().map(|s| s.code()),
        Some(Code::NotFound),
        "the subscription is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_streams_and_waiting_pulls_with_unavailable() {
    let mut t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let other = t.create_subscription("sub-b", &topic).await;
    let mut stream = t.open_stream(stream_request(&sub)).await.unwrap();
    settle(&mut stream).await;
    let waiting_pull = {
        let mut subscriber = t.subscriber();
        tokio::spawn(async move {
            let mut request = tonic::Request::new(pull_request(&other, 10, false));
            request.set_timeout(Duration::from_secs(20));
            subscriber.pull(request).await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting_pull.is_finished(), "the pull waits for a message");

    let server = t.take_server();
    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    let status = stream.expect_error(SOON).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let pulled = tokio::time::timeout(SOON, waiting_pull)
        .await
        .expect("the waiting pull is answered")
        .unwrap();
    assert_eq!(
        pulled.map(|r| r.into_inner()).unwrap_err().code(),
        Code::Unavailable
    );
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown completes")
        .unwrap()
        .expect("clean shutdown");
    // Nothing waits out a timer: the stream and the 20 s pull end the
    // instant shutdown begins, and so does the server.
    assert_eq!(since(started), Duration::ZERO, "shutdown waited");
}
