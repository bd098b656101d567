#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Leases and their deadlines (`pubsub-api.md` section 4): a leased message
//! comes back exactly when its ack deadline passes (the subscription's
//! `ack_deadline_seconds`, or what ModifyAckDeadline set it to), a nack makes
//! it available at once, and a message that comes back goes behind later
//! ones. A stale lease's ack id cannot move or end the current lease.
//!
//! Everything runs on Tokio's paused clock, which drives the broker's lease
//! timers, so each test states the exact virtual instant a message comes back
//! (and that it has not 1 ms earlier) and runs in no real time at all.

mod support;

use baton_proto::pubsub::Subscription;
use support::*;

#[tokio::test(start_paused = true)]
async fn lease_ends_exactly_at_the_subscriptions_ack_deadline() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        ack_deadline_seconds: 20,
        ..subscription("sub", &topic)
    });
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&first), ["m"]);
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "a leased message is not handed out twice"
    );

    t.sleep_until(ms(19_999)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "still leased 1 ms before the deadline"
    );
    t.sleep_until(secs(20)).await;
    let second = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&second), ["m"], "back at exactly 20 s");
    assert_ne!(
        second[0].ack_id, first[0].ack_id,
        "a new lease, a new ack id"
    );

    // The new lease runs 20 s from its own delivery.
    t.sleep_until(ms(39_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(40)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn default_ack_deadline_is_ten_seconds_from_delivery() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    // ack_deadline_seconds 0 means the default, 10 s.
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["m"]);
    // Counted from the delivery, not from the publish.
    t.sleep_until(secs(3)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
    t.sleep_until(ms(12_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(13)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn modack_extends_the_lease_from_the_time_of_the_call() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;

    t.sleep_until(secs(5)).await;
    t.modack(&sub, &first, 30);
    t.sleep_until(secs(10)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "the original deadline no longer ends the lease"
    );
    t.sleep_until(ms(34_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(35)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"], "5 s + 30 s");
}

#[tokio::test(start_paused = true)]
async fn modack_shortens_the_lease_and_the_old_deadline_ends_nothing() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        ack_deadline_seconds: 60,
        ..subscription("sub", &topic)
    });
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;

    t.sleep_until(secs(1)).await;
    t.modack(&sub, &first, 3);
    t.sleep_until(ms(3_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(4)).await;
    let second = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&second), ["m"], "1 s + 3 s");

    // The first lease's original deadline (60 s) must not end the second
    // lease, which runs until 4 s + 60 s.
    t.sleep_until(secs(60)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(ms(63_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(64)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn modack_beyond_600_seconds_is_capped_at_600() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;
    t.modack(&sub, &first, 3600);
    t.sleep_until(ms(599_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(600)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn a_stale_ack_id_cannot_extend_or_nack_the_current_lease_but_still_acks() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["m"]);
    let stale = t.pull_now(&sub, 10).await;
    t.sleep_until(secs(10)).await;
    let current = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&current), ["m"]);

    // Outside exactly-once, a modack of a stale id is quietly ignored...
    t.sleep_until(secs(11)).await;
    t.modack(&sub, &stale, 60);
    t.nack(&sub, &stale);
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "a stale nack does not end the current lease"
    );
    t.sleep_until(ms(19_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(20)).await;
    assert_eq!(
        datas(&t.pull_now(&sub, 10).await),
        ["m"],
        "a stale modack does not extend the current lease"
    );

    // ...but any ack id the message was given still settles it.
    t.ack(&sub, &stale);
    assert_eq!(t.backlog(&sub), 0);
    t.sleep_until(secs(60)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_expired_message_goes_behind_messages_published_meanwhile() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["a"]);
    let a = t.pull_now(&sub, 10).await;
    t.sleep_until(secs(5)).await;
    t.publish(&topic, &["b", "c"]);
    t.sleep_until(secs(10)).await;
    let after = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&after), ["b", "c", "a"]);
    assert_ne!(after[2].ack_id, a[0].ack_id);
}

#[tokio::test(start_paused = true)]
async fn expired_messages_come_back_in_the_order_their_leases_ended() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["a", "b", "c"]);
    let leased = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&leased), ["a", "b", "c"]);
    t.sleep_until(secs(1)).await;
    t.modack(&sub, &leased[2..], 4); // c until 5 s
    t.modack(&sub, &leased[..1], 7); // a until 8 s; b keeps 10 s
    t.sleep_until(secs(2)).await;
    t.publish(&topic, &["d"]);
    t.sleep_until(secs(10)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["d", "c", "a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_nack_redelivers_at_once_behind_later_messages() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["a", "b", "c"]);
    let a = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&a), ["a"]);
    t.sleep_until(secs(2)).await;
    t.nack(&sub, &a);
    let rest = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&rest), ["b", "c", "a"]);
    assert_ne!(rest[2].ack_id, a[0].ack_id);
    assert_eq!(t.now(), secs(2), "nothing waited");

    // The nacked lease is over: its id no longer nacks the new one.
    t.nack(&sub, &a);
    assert!(t.pull_now(&sub, 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_acked_message_never_comes_back() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["a", "b"]);
    let leased = t.pull_now(&sub, 10).await;
    assert_eq!(t.backlog(&sub), 2, "leased messages are still owed");
    t.sleep_until(secs(5)).await;
    t.ack(&sub, &leased[..1]);
    assert_eq!(t.backlog(&sub), 1);
    t.sleep_until(secs(600)).await;
    let later = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&later), ["b"], "only the unacked one expired");
    t.ack(&sub, &later);
    assert_eq!(t.backlog(&sub), 0);
}
