#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Flow control of StreamingPull streams (`pubsub-api.md` section 5): a
//! stream holds at most `max_outstanding_messages` messages and
//! `max_outstanding_bytes` bytes at a time (<= 0: no limit); an ack, a nack,
//! an expiry or dead-lettering frees its room, and a message bigger than the
//! whole byte window still goes when nothing is outstanding. Streams on one
//! subscription share its backlog but not their windows; a stream's leases
//! last its own ack deadline and outlive the stream.
//!
//! Expiries run on Tokio's paused clock, so the instant a window frees is
//! exact (and not 1 ms earlier) and the tests take no real time.

mod support;

use baton_proto::pubsub::{DeadLetterPolicy, PubsubMessage, Subscription};
use support::*;

#[tokio::test(start_paused = true)]
async fn max_outstanding_messages_is_freed_by_ack_nack_and_expiry() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let stream = t.broker.register_stream(&sub, 10, 2, 0).unwrap();
    t.publish(&topic, &["a", "b", "c", "d", "e"]);

    let first = t.broker.stream_take(&stream, 100).unwrap();
    assert_eq!(datas(&first), ["a", "b"]);
    assert!(
        t.broker.stream_take(&stream, 100).unwrap().is_empty(),
        "full"
    );

    t.ack(&sub, &first[..1]);
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["c"],
        "an ack frees one"
    );
    t.nack(&sub, &first[1..]);
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["d"],
        "a nack frees one; b went behind e"
    );
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());

    // c and d were leased at 0 s with the stream's 10 s deadline.
    t.sleep_until(ms(9_999)).await;
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());
    t.sleep_until(secs(10)).await;
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["e", "b"],
        "the expiries free both"
    );
}

#[tokio::test(start_paused = true)]
async fn max_outstanding_bytes_counts_message_sizes() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    // Each message is 4 bytes of data (no attributes or key): two fit in 10.
    let stream = t.broker.register_stream(&sub, 10, 0, 10).unwrap();
    t.publish(&topic, &["aaaa", "bbbb", "cccc", "dddd"]);
    let first = t.broker.stream_take(&stream, 100).unwrap();
    assert_eq!(datas(&first), ["aaaa", "bbbb"]);
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());
    t.ack(&sub, &first[..1]);
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["cccc"]
    );
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());

    // Attributes and the ordering key count as well as the data.
    t.ack(&sub, &first[1..]);
    let mut heavy = message("x");
    heavy.attributes.insert("key".into(), "value".into()); // 1 + 3 + 5 = 9 bytes
    t.publish_messages(&topic, vec![heavy]);
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["dddd"],
        "4 + 4 fit, 4 + 4 + 9 do not"
    );
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_message_bigger_than_the_byte_window_goes_when_nothing_is_outstanding() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let stream = t.broker.register_stream(&sub, 10, 0, 10).unwrap();
    let big = "B".repeat(50);
    t.publish(&topic, &["small", &big, "tiny"]);

    let small = t.broker.stream_take(&stream, 100).unwrap();
    assert_eq!(
        datas(&small),
        ["small"],
        "the big one does not fit beside it"
    );
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());
    t.ack(&sub, &small);

    let alone = t.broker.stream_take(&stream, 100).unwrap();
    assert_eq!(datas(&alone), [big], "alone, it goes");
    assert!(
        t.broker.stream_take(&stream, 100).unwrap().is_empty(),
        "and nothing goes beside it"
    );
    // It expires at 10 s; the window frees and it goes again (behind tiny,
    // which then fills the window).
    t.sleep_until(secs(10)).await;
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["tiny"]
    );
}

#[tokio::test(start_paused = true)]
async fn streams_have_their_own_windows_over_a_shared_backlog() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let one = t.broker.register_stream(&sub, 10, 1, 0).unwrap();
    let two = t.broker.register_stream(&sub, 10, 1, 0).unwrap();
    assert_eq!(t.broker.open_streams(&sub).unwrap(), 2);
    t.publish(&topic, &["a", "b", "c"]);

    let a = t.broker.stream_take(&one, 100).unwrap();
    assert_eq!(datas(&a), ["a"]);
    assert!(t.broker.stream_take(&one, 100).unwrap().is_empty());
    assert_eq!(datas(&t.broker.stream_take(&two, 100).unwrap()), ["b"]);
    assert!(t.broker.stream_take(&two, 100).unwrap().is_empty());
    // A unary pull has no window.
    assert_eq!(datas(&t.pull_now(&sub, 100).await), ["c"]);

    // A unary ack frees the stream that holds the message.
    t.ack(&sub, &a);
    t.publish(&topic, &["d"]);
    assert!(t.broker.stream_take(&two, 100).unwrap().is_empty());
    assert_eq!(datas(&t.broker.stream_take(&one, 100).unwrap()), ["d"]);
}

#[tokio::test(start_paused = true)]
async fn a_full_stream_is_woken_when_an_expiry_frees_its_window() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let stream = t.broker.register_stream(&sub, 10, 1, 0).unwrap();
    t.publish(&topic, &["a", "b"]);
    assert_eq!(datas(&t.broker.stream_take(&stream, 100).unwrap()), ["a"]);
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());

    let notify = stream.notify();
    tokio::time::timeout_at(t.instant(secs(60)), notify.notified())
        .await
        .expect("woken before 60 s");
    assert_eq!(t.now(), secs(10), "woken as a's lease ended");
    assert_eq!(datas(&t.broker.stream_take(&stream, 100).unwrap()), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn a_streams_leases_last_its_own_deadline_and_outlive_the_stream() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let long = t.broker.register_stream(&sub, 30, 0, 0).unwrap();
    // Below the 10 s minimum: 10 s.
    let short = t.broker.register_stream(&sub, 3, 0, 0).unwrap();
    t.publish(&topic, &["long", "short"]);
    assert_eq!(datas(&t.broker.stream_take(&long, 1).unwrap()), ["long"]);
    assert_eq!(datas(&t.broker.stream_take(&short, 1).unwrap()), ["short"]);
    drop(long);
    drop(short);
    assert_eq!(t.broker.open_streams(&sub).unwrap(), 0);

    t.sleep_until(ms(9_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(10)).await;
    let short = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&short), ["short"]);
    t.ack(&sub, &short);
    t.sleep_until(ms(29_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(30)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["long"]);
}

#[tokio::test(start_paused = true)]
async fn dead_lettering_frees_the_window_once() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let sub = t.create_subscription(Subscription {
        dead_letter_policy: Some(DeadLetterPolicy {
            dead_letter_topic: dead.clone(),
            max_delivery_attempts: 5,
        }),
        ..subscription("sub", &topic)
    });
    let stream = t.broker.register_stream(&sub, 10, 1, 0).unwrap();
    t.publish(&topic, &["poison"]);
    for attempt in 1..=5 {
        let lease = t.broker.stream_take(&stream, 100).unwrap();
        assert_eq!(attempts(&lease), [attempt]);
        t.nack(&sub, &lease);
    }
    assert_eq!(t.backlog(&sub), 0, "dead-lettered");

    t.publish(&topic, &["a", "b"]);
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["a"],
        "the window still holds one message"
    );
    assert!(t.broker.stream_take(&stream, 100).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn ordered_keys_and_windows_together() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        enable_message_ordering: true,
        ..subscription("sub", &topic)
    });
    let stream = t.broker.register_stream(&sub, 10, 2, 0).unwrap();
    t.publish_messages(
        &topic,
        ["k1-1", "k1-2", "k1-3"]
            .iter()
            .map(|d| keyed(d, "k1"))
            .collect::<Vec<PubsubMessage>>(),
    );
    let first = t.broker.stream_take(&stream, 100).unwrap();
    assert_eq!(datas(&first), ["k1-1", "k1-2"], "the window stops the key");
    t.ack(&sub, &first[..1]);
    assert!(
        t.broker.stream_take(&stream, 100).unwrap().is_empty(),
        "room for one, but k1 is held by k1-2"
    );
    t.ack(&sub, &first[1..]);
    assert_eq!(
        datas(&t.broker.stream_take(&stream, 100).unwrap()),
        ["k1-3"]
    );
}
