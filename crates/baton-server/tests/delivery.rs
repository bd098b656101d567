#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Delivery semantics (`pubsub-api.md` section 4) through real round trips
//! of the gRPC API: redelivery, nacks, fan-out, blocking pulls, dead letters,
//! ordering keys, exactly-once (its ErrorInfo details), retry backoff and
//! filters, and ack ids used across streams and unary calls.
//!
//! The rules themselves are pinned down exactly at the broker level
//! (`crates/baton-broker/tests/`); here each behaviour is checked once end
//! to end through the real server. Time-dependent tests run on virtual time
//! (`start_paused` and a server on `TestServer::start_virtual`): a lease
//! shortened to 1 s comes back exactly 1 s later, a backoff ends at its exact
//! instant, and a waiting pull is answered at the very instant of the publish
//! that wakes it, all in no real time.

use std::collections::HashSet;
use std::time::Duration;

use baton_proto::pubsub::{
    DeadLetterPolicy, RetryPolicy, StreamingPullRequest, Subscription, Topic,
};
use baton_testkit::prelude::*;
use prost::Message as _;
use tonic::Code;

fn subscription(id: &str, topic: &str) -> Subscription {
    Subscription {
        name: subscription_name(id),
        topic: topic.to_string(),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn expired_lease_is_redelivered() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let ids = t.publish(&topic, &["m"]).await;
    let first = t.pull_now(&sub, 10).await;
    assert_eq!(first.len(), 1);
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "a leased message is not handed out twice"
    );
    let shortened = tokio::time::Instant::now();
    t.modack(&sub, &ack_ids(&first), 1).await.unwrap();
    let again = t.pull_wait(&sub, 10, Duration::from_secs(5)).await.unwrap();
    let waited = since(shortened);
    assert_eq!(again.len(), 1, "redelivered after the deadline");
    assert_eq!(message_id(&again[0]), ids[0]);
    assert_ne!(
        again[0].ack_id, first[0].ack_id,
        "a new delivery, a new ack id"
    );
    assert_eq!(
        waited,
        Duration::from_secs(1),
        "the waiting pull gets it the instant the 1 s deadline passes"
    );
    t.ack(&sub, &ack_ids(&again)).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test(start_paused = true)]
async fn nacked_and_expired_messages_go_behind_later_ones() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    t.publish(&topic, &["a", "b", "c"]).await;
    let first = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&first), vec!["a"]);
    t.modack(&sub, &ack_ids(&first), 0).await.unwrap();
    let rest = t.pull_now(&sub, 10).await;
    assert_eq!(
        datas(&rest),
        vec!["b", "c", "a"],
        "a nack redelivers at once, last"
    );
    t.ack(&sub, &ack_ids(&rest)).await.unwrap();

    // An expired message also goes behind messages published meanwhile.
    t.publish(&topic, &["p"]).await;
    let p = t.pull_now(&sub, 1).await;
    t.modack(&sub, &ack_ids(&p), 1).await.unwrap();
    t.publish(&topic, &["q", "r"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = t.pull_now(&sub, 10).await;
    assert_eq!(
        datas(&after),
        vec!["q", "r", "p"],
        "back at its 1 s deadline, behind q and r"
    );
}

#[tokio::test]
async fn fan_out_gives_every_subscription_its_own_copy() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let subs = [
        t.create_subscription("sub-a", &topic).await,
        t.create_subscription("sub-b", &topic).await,
        t.create_subscription("sub-c", &topic).await,
    ];
    let ids = t.publish(&topic, &["1", "2", "3", "4", "5"]).await;
    let late = t.create_subscription("late", &topic).await;
    for sub in &subs {
        let got = t.pull_now(sub, 100).await;
        assert_eq!(got.iter().map(message_id).collect::<Vec<_>>(), ids, "{sub}");
        // Acking on one subscription does not touch the others.
        if sub == &subs[0] {
            t.ack(sub, &ack_ids(&got)).await.unwrap();
        }
    }
    assert_eq!(t.backlog(&subs[0]), 0);
    assert_eq!(t.backlog(&subs[1]), 5);
    assert_eq!(t.backlog(&subs[2]), 5);
    assert!(
        t.pull_now(&late, 100).await.is_empty(),
        "a subscription created after a publish does not see it"
    );

    // ...unless the topic retains messages.
    let retained = t
        .publisher()
        .create_topic(Topic {
            name: topic_name("retained"),
            message_retention_duration: Some(secs(600)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let ids = t.publish(&retained, &["kept"]).await;
    let late = t.create_subscription("late-retained", &retained).await;
    let got = t.pull_now(&late, 10).await;
    assert_eq!(got.iter().map(message_id).collect::<Vec<_>>(), ids);
}

#[tokio::test(start_paused = true)]
async fn ack_ids_work_across_streams_and_unary_calls() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut first = t.open_stream(stream_request(&sub)).await.unwrap();
    t.publish(&topic, &["one", "two", "three"]).await;
    let got = first.collect(3, Duration::from_secs(5)).await;
    assert_eq!(datas(&got), vec!["one", "two", "three"]);

    // Unary ack and nack of stream-delivered ids.
    t.ack(&sub, &[got[0].ack_id.clone()]).await.unwrap();
    t.modack(&sub, &[got[1].ack_id.clone()], 0).await.unwrap();
    let again = first.collect(1, Duration::from_secs(5)).await;
    assert_eq!(datas(&again), vec!["two"]);
    assert_eq!(t.backlog(&sub), 2);

    // Leases outlive the stream; another stream settles them.
    drop(first);
    let second = t
        .open_stream(StreamingPullRequest {
            ack_ids: vec![got[2].ack_id.clone(), again[0].ack_id.clone()],
            ..stream_request(&sub)
        })
        .await
        .unwrap();
    settled("acks on another stream settle the messages", || {
        t.backlog(&sub) == 0
    })
    .await;
    drop(second);
    // Until the server reads the reset, the dropped stream could still lease
    // the next message (to nobody, until its deadline).
    settled("the server notices the dropped stream", || {
        t.server().broker().open_streams(&sub).unwrap() == 0
    })
    .await;

    // A unary pull's ack id nacked from a stream comes back on that stream.
    t.publish(&topic, &["four"]).await;
    let pulled = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&pulled), vec!["four"]);
    let mut third = t
        .open_stream(StreamingPullRequest {
            modify_deadline_ack_ids: vec![pulled[0].ack_id.clone()],
            modify_deadline_seconds: vec![0],
            ..stream_request(&sub)
        })
        .await
        .unwrap();
    let back = third.collect(1, Duration::from_secs(5)).await;
    assert_eq!(datas(&back), vec!["four"]);
    t.ack(&sub, &ack_ids(&back)).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_pull_is_answered_by_the_publish_itself() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    for round in 0..5 {
        let waiter = {
            let mut subscriber = t.subscriber();
            let sub = sub.clone();
            tokio::spawn(async move {
                let mut request = tonic::Request::new(pull_request(&sub, 10, false));
                request.set_timeout(Duration::from_secs(10));
                let answer = subscriber.pull(request).await;
                (tokio::time::Instant::now(), answer)
            })
        };
        // The pull reaches the server and waits (virtual time only moves
        // once it does): a second goes by without an answer.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "the pull waits for a message");
        let published = tokio::time::Instant::now();
        t.publish(&topic, &[&format!("m{round}")]).await;
        let (answered, answer) = waiter.await.unwrap();
        let received = answer.unwrap().into_inner().received_messages;
        assert_eq!(datas(&received), vec![format!("m{round}")]);
        // Woken by the publish, not by a polling tick: no virtual time
        // passes between the publish and the answer.
        assert_eq!(answered, published, "round {round}");
        t.ack(&sub, &ack_ids(&received)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn blocking_pull_answers_empty_before_the_deadline() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    // The server answers a tenth of the gRPC timeout early (at least 50 ms,
    // at most 1 s), so the empty answer beats the client's deadline.
    for (timeout, answered_after) in [
        (Duration::from_secs(2), Duration::from_millis(1800)),
        (Duration::from_millis(600), Duration::from_millis(540)),
        (Duration::from_secs(30), Duration::from_secs(29)),
    ] {
        let started = tokio::time::Instant::now();
        let answer = t.pull_wait(&sub, 10, timeout).await;
        let took = since(started);
        let messages = answer.unwrap_or_else(|status| {
            panic!("an empty OK answer is due before a {timeout:?} deadline, got {status:?}")
        });
        assert!(messages.is_empty());
        assert_eq!(took, answered_after, "with a {timeout:?} deadline");
    }
}

fn is_rfc3339_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && text.ends_with('Z')
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|r| bytes[r].iter().all(u8::is_ascii_digit))
}

#[tokio::test(start_paused = true)]
async fn delivery_attempts_count_and_dead_letters_after_the_last() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("dead-letters").await;
    let dead_sub = t.create_subscription("dlq-sub", &dead).await;
    let plain = t.create_subscription("plain", &topic).await;
    let sub = t
        .create_subscription_with(Subscription {
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead.clone(),
                max_delivery_attempts: 5,
            }),
            ..subscription("sub-a", &topic)
        })
        .await
        .name;
    let ids = t
        .publish_messages(
            &topic,
            vec![with_attributes("poison", &[("origin", "test")])],
        )
        .await;

    let plain_got = t.pull_now(&plain, 10).await;
    assert_eq!(
        plain_got[0].delivery_attempt, 0,
        "no dead-letter policy, no count"
    );

    // 1 + nacks + expiries.
    let mut attempts = Vec::new();
    let mut current = t.pull_now(&sub, 10).await;
    for attempt in 1..=5 {
        assert_eq!(current.len(), 1, "attempt {attempt}");
        attempts.push(current[0].delivery_attempt);
        if attempt == 5 {
            break;
        }
        if attempt == 2 {
            // This one expires instead of being nacked.
            let shortened = tokio::time::Instant::now();
            t.modack(&sub, &ack_ids(&current), 1).await.unwrap();
            current = t.pull_wait(&sub, 10, Duration::from_secs(5)).await.unwrap();
            assert_eq!(since(shortened), Duration::from_secs(1));
        } else {
            t.modack(&sub, &ack_ids(&current), 0).await.unwrap();
            current = t.pull_now(&sub, 10).await;
        }
    }
    assert_eq!(attempts, vec![1, 2, 3, 4, 5]);
    let original = current[0].message.clone().unwrap();

    // The fifth failure dead-letters it, at once.
    let fifth = tokio::time::Instant::now();
    t.modack(&sub, &ack_ids(&current), 0).await.unwrap();
    assert!(t.pull_now(&sub, 10).await.is_empty());
    assert_eq!(
        t.backlog(&sub),
        0,
        "dead-lettered messages are acked on the source"
    );
    let letters = t.pull_until(&dead_sub, 1, Duration::from_secs(3)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(since(fifth), Duration::ZERO, "dead-lettered at the nack");
    let letter = letters[0].message.clone().unwrap();
    assert_eq!(letter.data, b"poison".to_vec());
    assert_ne!(letter.message_id, ids[0], "republished with a new id");
    let attributes = &letter.attributes;
    assert_eq!(attributes["origin"], "test");
    assert_eq!(attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "5");
    assert_eq!(
        attributes["CloudPubSubDeadLetterSourceSubscription"],
        "sub-a"
    );
    assert_eq!(
        attributes["CloudPubSubDeadLetterSourceSubscriptionProject"],
        PROJECT
    );
    let published = &attributes["CloudPubSubDeadLetterSourceTopicPublishTime"];
    assert!(is_rfc3339_utc(published), "{published:?}");
    assert!(original.publish_time.is_some());
    assert_eq!(attributes.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn ordering_keys_are_held_while_outstanding_and_keep_their_order() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            enable_message_ordering: true,
            ..subscription("ordered", &topic)
        })
        .await
        .name;
    t.publish_messages(
        &topic,
        vec![
            keyed("k1-1", "k1"),
            keyed("k1-2", "k1"),
            keyed("k1-3", "k1"),
        ],
    )
    .await;
    t.publish_messages(&topic, vec![keyed("k2-1", "k2"), keyed("k2-2", "k2")])
        .await;
    t.publish(&topic, &["free"]).await;

    let head = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&head), vec!["k1-1"]);
    let others = t.pull_now(&sub, 10).await;
    assert_eq!(
        datas(&others),
        vec!["k2-1", "k2-2", "free"],
        "k1 is held while k1-1 is outstanding"
    );
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.ack(&sub, &ack_ids(&others)).await.unwrap();

    t.ack(&sub, &ack_ids(&head)).await.unwrap();
    let next = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&next), vec!["k1-2", "k1-3"]);

    // A nack brings the later messages of the key back behind it, in order.
    t.modack(&sub, &[next[0].ack_id.clone()], 0).await.unwrap();
    let again = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&again), vec!["k1-2", "k1-3"]);

    // So does an expiry, the instant the head's 1 s deadline passes (k1-3,
    // still leased for 10 s, comes back with it).
    let shortened = tokio::time::Instant::now();
    t.modack(&sub, &[again[0].ack_id.clone()], 1).await.unwrap();
    let expired = t.pull_wait(&sub, 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(since(shortened), Duration::from_secs(1));
    assert_eq!(datas(&expired), vec!["k1-2", "k1-3"]);
    t.ack(&sub, &ack_ids(&expired)).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);
}

/// The ErrorInfo of an exactly-once ack failure, decoded from
/// `grpc-status-details-bin`.
fn ack_failure_info(status: &tonic::Status) -> baton_proto::rpc::ErrorInfo {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = baton_proto::rpc::Status::decode(status.details())
        .expect("grpc-status-details-bin is a google.rpc.Status");
    assert_eq!(details.code, Code::InvalidArgument as i32);
    let first = details.details.first().expect("a status detail");
    assert_eq!(first.type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    baton_proto::rpc::ErrorInfo::decode(first.value.clone()).expect("an ErrorInfo")
}

#[tokio::test(start_paused = true)]
async fn exactly_once_rejects_stale_ack_ids_with_error_info() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            enable_exactly_once_delivery: true,
            ..subscription("exactly-once", &topic)
        })
        .await
        .name;
    t.publish(&topic, &["one", "two", "three"]).await;
    let got = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&got), vec!["one", "two", "three"]);
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "no redelivery while outstanding"
    );

    // An id that was acked already.
    t.ack(&sub, &[got[0].ack_id.clone()]).await.unwrap();
    let status = t.ack(&sub, &[got[0].ack_id.clone()]).await.unwrap_err();
    let info = ack_failure_info(&status);
    assert_eq!(info.reason, "EXACTLY_ONCE_ACKID_FAILURE");
    assert_eq!(info.domain, "pubsub.googleapis.com");
    assert_eq!(
        info.metadata,
        [(
            got[0].ack_id.clone(),
            "PERMANENT_FAILURE_INVALID_ACK_ID".to_string()
        )]
        .into()
    );

    // An id whose lease expired: only the newest id settles the message.
    let shortened = tokio::time::Instant::now();
    t.modack(&sub, &[got[1].ack_id.clone()], 1).await.unwrap();
    let redelivered = t.pull_wait(&sub, 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(since(shortened), Duration::from_secs(1));
    assert_eq!(datas(&redelivered), vec!["two"]);
    let stale = got[1].ack_id.clone();
    let valid = got[2].ack_id.clone();
    let status = t.ack(&sub, &[stale.clone(), valid]).await.unwrap_err();
    let info = ack_failure_info(&status);
    assert_eq!(info.reason, "EXACTLY_ONCE_ACKID_FAILURE");
    assert_eq!(info.domain, "pubsub.googleapis.com");
    assert_eq!(
        info.metadata,
        [(
            stale.clone(),
            "PERMANENT_FAILURE_INVALID_ACK_ID".to_string()
        )]
        .into(),
        "only the stale id fails"
    );
    assert_eq!(
        t.backlog(&sub),
        1,
        "the valid id in the same request was applied"
    );
    let status = t
        .modack(&sub, std::slice::from_ref(&stale), 30)
        .await
        .unwrap_err();
    let info = ack_failure_info(&status);
    assert_eq!(info.reason, "EXACTLY_ONCE_ACKID_FAILURE");
    assert_eq!(
        info.metadata,
        [(stale, "PERMANENT_FAILURE_INVALID_ACK_ID".to_string())].into()
    );
    t.ack(&sub, &ack_ids(&redelivered)).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);
    // And nothing comes back once acked.
    assert!(t.pull_now(&sub, 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_policy_delays_redelivery() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(secs(1)),
                maximum_backoff: Some(secs(2)),
            }),
            ..subscription("backoff", &topic)
        })
        .await
        .name;
    t.publish(&topic, &["m"]).await;
    let mut got = t.pull_now(&sub, 10).await;
    // 1 s after the first nack, then doubled to 2 s, then capped at 2 s.
    for backoff in [1, 2, 2] {
        let nacked = tokio::time::Instant::now();
        t.modack(&sub, &ack_ids(&got), 0).await.unwrap();
        assert!(
            t.pull_now(&sub, 10).await.is_empty(),
            "a nacked message waits out the backoff"
        );
        got = t.pull_wait(&sub, 10, Duration::from_secs(5)).await.unwrap();
        assert_eq!(datas(&got), vec!["m"]);
        assert_eq!(
            since(nacked),
            Duration::from_secs(backoff),
            "redelivered when the backoff ends"
        );
    }
    t.ack(&sub, &ack_ids(&got)).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test]
async fn filters_deliver_matching_messages_and_ack_the_rest() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let keep = t
        .create_subscription_with(Subscription {
            filter: "attributes.kind = \"keep\"".to_string(),
            ..subscription("keep", &topic)
        })
        .await
        .name;
    let not_drop = t
        .create_subscription_with(Subscription {
            filter: "attributes.kind != \"drop\" AND NOT attributes:secret".to_string(),
            ..subscription("not-drop", &topic)
        })
        .await
        .name;
    let prefixed = t
        .create_subscription_with(Subscription {
            filter: "hasPrefix(attributes.kind, \"ke\") OR attributes:urgent".to_string(),
            ..subscription("prefixed", &topic)
        })
        .await
        .name;
    t.publish_messages(
        &topic,
        vec![
            with_attributes("keep", &[("kind", "keep")]),
            with_attributes("drop", &[("kind", "drop")]),
            with_attributes("none", &[("other", "x")]),
            with_attributes("secret", &[("secret", "1")]),
            with_attributes("urgent", &[("urgent", "yes")]),
        ],
    )
    .await;
    let got = t.pull_now(&keep, 10).await;
    assert_eq!(datas(&got), vec!["keep"]);
    t.ack(&keep, &ack_ids(&got)).await.unwrap();
    assert_eq!(t.backlog(&keep), 0, "non-matching messages are acked");
    assert_eq!(
        datas(&t.pull_now(&not_drop, 10).await),
        vec!["keep", "none", "urgent"]
    );
    assert_eq!(
        datas(&t.pull_now(&prefixed, 10).await),
        vec!["keep", "urgent"]
    );
    let seen: HashSet<String> = t.pull_now(&keep, 10).await.iter().map(data).collect();
    assert!(seen.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_ids_fit_client_batches_and_big_ack_requests_are_accepted() {
    // Clients batch acks assuming ack ids of at most 164 bytes in requests of
    // at most 512 KiB (pubsub-api.md section 3; python-pubsub's dispatcher
    // sends 2500 ids per request on that basis). Longest names: a 30-char
    // project and a 255-char subscription id.
    let t = TestServer::start().await;
    let project = format!("p{}", "r".repeat(29));
    let topic = format!("projects/{project}/topics/{}", "t".repeat(255));
    t.publisher()
        .create_topic(Topic {
            name: topic.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sub = t
        .create_subscription_with(Subscription {
            name: format!("projects/{project}/subscriptions/{}", "s".repeat(255)),
            topic: topic.clone(),
            ..Default::default()
        })
        .await
        .name;
    let messages = (0..1000).map(|i| msg(&format!("m{i}"))).collect();
    t.publish_messages(&topic, messages).await;
    let mut got = Vec::new();
    while got.len() < 1000 {
        let batch = t.pull_now(&sub, 1000).await;
        assert!(!batch.is_empty(), "all 1000 messages are pullable");
        got.extend(batch);
    }
    let longest = got.iter().map(|m| m.ack_id.len()).max().unwrap();

    // A modack and an ack request of more than 512 KiB of ack ids.
    let ids = ack_ids(&got);
    let mut big = Vec::new();
    let mut bytes = 0;
    while bytes < 520 * 1024 {
        for id in &ids {
            bytes += id.len();
            big.push(id.clone());
        }
    }
    t.modack(&sub, &big, 60).await.unwrap();
    t.ack(&sub, &big).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);
    assert!(
        longest <= 164,
        "ack ids must be at most 164 bytes, got {longest}: {:?}",
        got[0].ack_id
    );
}
