#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ordering keys (`pubsub-api.md` section 4, `enable_message_ordering`):
//! messages of one key are delivered in publish order, the key is held while
//! one of its messages is outstanding, and when one comes back (nack, expiry)
//! the later outstanding messages of its key come back with it, in order,
//! ahead of the key's newer messages. Other keys and unkeyed messages are
//! never held up.
//!
//! Expiries and backoffs run on Tokio's paused clock, so the instant a held
//! key is released is exact and the tests take no real time.

mod support;

use baton_broker::LeaseEnd;
use baton_proto::pubsub::{DeadLetterPolicy, RetryPolicy, Subscription};
use support::*;

fn ordered(id: &str, topic: &str) -> Subscription {
    Subscription {
        enable_message_ordering: true,
        ..subscription(id, topic)
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_is_held_while_one_of_its_messages_is_outstanding() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(ordered("sub", &topic));
    t.publish_keyed(&topic, "k1", &["k1-1", "k1-2", "k1-3"]);
    t.publish_keyed(&topic, "k2", &["k2-1", "k2-2"]);
    t.publish(&topic, &["free"]);

    let head = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&head), ["k1-1"]);
    let others = t.pull_now(&sub, 10).await;
    assert_eq!(
        datas(&others),
        ["k2-1", "k2-2", "free"],
        "k1 is held while k1-1 is outstanding; one answer may carry several of a key"
    );
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.ack(&sub, &others);

    t.sleep_until(secs(3)).await;
    t.ack(&sub, &head);
    let next = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&next), ["k1-2", "k1-3"], "released by the ack");
    t.ack(&sub, &next);
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expiry_releases_a_held_key_exactly_at_the_deadline() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(ordered("sub", &topic));
    t.publish_keyed(&topic, "k1", &["k1-1"]);
    let head = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&head), ["k1-1"]);
    t.sleep_until(secs(4)).await;
    t.publish_keyed(&topic, "k1", &["k1-2"]);
    t.sleep_until(ms(9_999)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "k1-2 waits while k1-1 is outstanding"
    );
    t.sleep_until(secs(10)).await;
    assert_eq!(
        datas(&t.pull_now(&sub, 10).await),
        ["k1-1", "k1-2"],
        "the expired head first, then the rest of its key"
    );
}

#[tokio::test(start_paused = true)]
async fn a_nacked_message_comes_back_ahead_of_later_messages_of_its_key() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(ordered("sub", &topic));
    let seen = t.record();
    t.publish_keyed(&topic, "k1", &["k1-1", "k1-2", "k1-3", "k1-4"]);
    t.publish_keyed(&topic, "k2", &["k2-1"]);
    let leased = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&leased), ["k1-1", "k1-2", "k1-3", "k1-4", "k2-1"]);
    t.publish_keyed(&topic, "k1", &["k1-5"]);
    t.publish(&topic, &["free"]);
    let free = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&free), ["free"], "k1-5 is held");
    t.ack(&sub, &free);
    seen.take();

    // k1-1 is acked; nacking k1-2 brings k1-3 and k1-4 back with it, ahead
    // of k1-5. k2 is not touched.
    t.sleep_until(secs(2)).await;
    t.ack(&sub, &leased[..1]);
    t.nack(&sub, &leased[1..2]);
    let again = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&again), ["k1-2", "k1-3", "k1-4", "k1-5"]);

    let came_back: Vec<(String, LeaseEnd)> = seen
        .take()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Redelivery { data, reason, .. } => Some((data, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        came_back,
        [
            ("k1-2".to_string(), LeaseEnd::Nacked),
            ("k1-3".to_string(), LeaseEnd::Nacked),
            ("k1-4".to_string(), LeaseEnd::Nacked),
        ]
    );

    // k2-1 is still leased: it expires at 10 s like any lease.
    t.sleep_until(ms(9_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(10)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["k2-1"]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_message_brings_later_messages_of_its_key_back_with_it() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(ordered("sub", &topic));
    t.publish_keyed(&topic, "k1", &["k1-1", "k1-2"]);
    let leased = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&leased), ["k1-1", "k1-2"]);
    // k1-2's lease runs to 61 s, but k1-1's ends at 10 s.
    t.sleep_until(secs(1)).await;
    t.modack(&sub, &leased[1..], 60);
    t.sleep_until(secs(10)).await;
    let again = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&again), ["k1-1", "k1-2"]);
    // The old lease of k1-2 ended then: its 61 s deadline ends nothing.
    t.ack(&sub, &again[..1]);
    t.modack(&sub, &again[1..], 60);
    t.sleep_until(secs(61)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "k1-2's current lease runs to 70 s"
    );
    t.sleep_until(secs(70)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["k1-2"]);
}

#[tokio::test(start_paused = true)]
async fn unkeyed_messages_and_other_keys_are_never_held() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(ordered("sub", &topic));
    t.publish(&topic, &["u1", "u2"]);
    let first = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&first), ["u1"]);
    assert_eq!(datas(&t.pull_now(&sub, 1).await), ["u2"], "no key, no hold");
    t.publish_keyed(&topic, "a", &["a1", "a2"]);
    t.publish_keyed(&topic, "b", &["b1"]);
    assert_eq!(datas(&t.pull_now(&sub, 1).await), ["a1"]);
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["b1"]);
}

#[tokio::test(start_paused = true)]
async fn a_key_stays_held_while_its_message_waits_out_a_retry_backoff() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(proto_secs(5)),
            maximum_backoff: Some(proto_secs(60)),
        }),
        ..ordered("sub", &topic)
    });
    t.publish_keyed(&topic, "k1", &["k1-1", "k1-2"]);
    let head = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&head), ["k1-1"]);
    t.nack(&sub, &head);
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "k1-2 must not overtake k1-1 while k1-1 backs off"
    );
    t.sleep_until(ms(4_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(5)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["k1-1", "k1-2"]);
}

#[tokio::test(start_paused = true)]
async fn later_messages_of_a_key_do_not_leave_their_backoff_ahead_of_the_head() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(proto_secs(1)),
            maximum_backoff: Some(proto_secs(60)),
        }),
        ..ordered("sub", &topic)
    });
    t.publish_keyed(&topic, "k1", &["k1-1"]);
    // k1-1 fails once on its own: its next backoff is 2 s.
    let head = t.pull_now(&sub, 10).await;
    t.nack(&sub, &head);
    t.publish_keyed(&topic, "k1", &["k1-2"]);
    t.sleep_until(secs(1)).await;
    let both = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&both), ["k1-1", "k1-2"]);
    // Nacking k1-1 puts k1-1 (attempt 2: 2 s) and k1-2 (attempt 1: 1 s)
    // into backoff; k1-2 must still wait for k1-1.
    t.nack(&sub, &both[..1]);
    t.sleep_until(secs(2)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "k1-2 is out of its backoff, but k1-1 is not"
    );
    t.sleep_until(secs(3)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["k1-1", "k1-2"]);
}

#[tokio::test(start_paused = true)]
async fn dead_lettering_a_later_message_leaves_the_key_held_by_an_earlier_one() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let sub = t.create_subscription(Subscription {
        dead_letter_policy: Some(DeadLetterPolicy {
            dead_letter_topic: dead.clone(),
            max_delivery_attempts: 5,
        }),
        ..ordered("sub", &topic)
    });
    t.publish_keyed(&topic, "k1", &["k1-1", "k1-2"]);
    // Four rounds: both leased, k1-1 nacked, both come back.
    for _ in 0..4 {
        let both = t.pull_now(&sub, 10).await;
        assert_eq!(datas(&both), ["k1-1", "k1-2"]);
        t.nack(&sub, &both[..1]);
    }
    let both = t.pull_now(&sub, 10).await;
    assert_eq!(attempts(&both), [5, 5]);
    // k1-2's fifth lease ends: dead-lettered. k1-1 is still outstanding.
    t.nack(&sub, &both[1..]);
    assert_eq!(t.backlog(&sub), 1);
    t.publish_keyed(&topic, "k1", &["k1-3"]);
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "k1-3 must wait for k1-1"
    );
    t.ack(&sub, &both[..1]);
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["k1-3"]);
}

#[tokio::test(start_paused = true)]
async fn acking_a_message_in_backoff_lets_go_of_its_key() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(proto_secs(30)),
            maximum_backoff: Some(proto_secs(60)),
        }),
        ..ordered("sub", &topic)
    });
    t.publish_keyed(&topic, "k1", &["k1-1", "k1-2"]);
    let head = t.pull_now(&sub, 1).await;
    t.nack(&sub, &head);
    t.sleep_until(secs(1)).await;
    // Outside exactly-once the nacked lease's id still settles the message.
    t.ack(&sub, &head);
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["k1-2"]);
    t.sleep_until(secs(30)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "k1-1 is gone for good"
    );
}
