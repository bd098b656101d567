#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Retry-policy backoff (`pubsub-api.md` section 4): a nacked or expired
//! message under a retry policy waits `minimum_backoff * 2^(attempt - 1)`,
//! capped at `maximum_backoff`, before it is ready again; without a policy it
//! is ready at once. The delivery observer reports each lease end with the
//! instant the message is available again, in wall-clock time.
//!
//! The backoffs are asserted to the millisecond on Tokio's paused clock, which
//! drives the broker's backoff timers; the broker's wall clock follows the
//! same virtual time, so the observer's times are exact too.

mod support;

use std::time::Duration;

use baton_broker::{DeliveryKind, LeaseEnd};
use baton_proto::pubsub::{RetryPolicy, Subscription};
use support::*;

fn backoff_subscription(id: &str, topic: &str, min: i64, max: i64) -> Subscription {
    Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(proto_secs(min)),
            maximum_backoff: Some(proto_secs(max)),
        }),
        ..subscription(id, topic)
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 1, 4));
    t.publish(&topic, &["m"]);
    let mut lease = t.pull_now(&sub, 10).await;
    let mut waited = Vec::new();
    for _ in 0..5 {
        // Hold the lease a second, then nack it.
        sleep(secs(1)).await;
        let nacked_at = t.now();
        t.nack(&sub, &lease);
        assert!(
            t.pull_now(&sub, 10).await.is_empty(),
            "a nacked message waits out its backoff"
        );
        lease = t.pull_until(&sub, 10, nacked_at + secs(60)).await;
        assert_eq!(datas(&lease), ["m"]);
        waited.push(t.now() - nacked_at);
    }
    assert_eq!(waited, [secs(1), secs(2), secs(4), secs(4), secs(4)]);
}

#[tokio::test(start_paused = true)]
async fn a_message_in_backoff_is_not_ready_one_millisecond_early() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 3, 600));
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;
    t.nack(&sub, &first);
    t.sleep_until(ms(2_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(3)).await;
    let second = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&second), ["m"]);
    // Second attempt: 6 s.
    t.nack(&sub, &second);
    t.sleep_until(ms(8_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(9)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn expiries_back_off_too() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 5, 600));
    t.publish(&topic, &["m"]);
    t.pull_now(&sub, 10).await;
    // Expires at 10 s, backs off 5 s.
    t.sleep_until(ms(14_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    let second = t.pull_until(&sub, 10, secs(100)).await;
    assert_eq!(datas(&second), ["m"]);
    assert_eq!(t.now(), secs(15));
    // Expires at 25 s, backs off 10 s.
    let third = t.pull_until(&sub, 10, secs(100)).await;
    assert_eq!(datas(&third), ["m"]);
    assert_eq!(t.now(), secs(35));
}

#[tokio::test(start_paused = true)]
async fn a_retry_policy_without_backoffs_means_ten_seconds_up_to_ten_minutes() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        retry_policy: Some(RetryPolicy::default()),
        ..subscription("sub", &topic)
    });
    t.publish(&topic, &["m"]);
    let mut lease = t.pull_now(&sub, 10).await;
    let mut waited = Vec::new();
    for _ in 0..8 {
        let nacked_at = t.now();
        t.nack(&sub, &lease);
        lease = t.pull_until(&sub, 10, nacked_at + secs(3600)).await;
        assert_eq!(datas(&lease), ["m"]);
        waited.push((t.now() - nacked_at).as_secs());
    }
    assert_eq!(waited, [10, 20, 40, 80, 160, 320, 600, 600]);
}

#[tokio::test(start_paused = true)]
async fn zero_backoff_redelivers_at_once() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 0, 0));
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;
    t.nack(&sub, &first);
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn later_messages_go_ahead_of_a_message_in_backoff() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 2, 600));
    t.publish(&topic, &["a", "b"]);
    let a = t.pull_now(&sub, 1).await;
    t.nack(&sub, &a);
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["b"]);
    t.sleep_until(secs(2)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_stale_ack_id_settles_a_message_waiting_out_its_backoff() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 5, 600));
    t.publish(&topic, &["m"]);
    let lease = t.pull_now(&sub, 10).await;
    t.nack(&sub, &lease);
    t.sleep_until(secs(1)).await;
    t.ack(&sub, &lease);
    assert_eq!(t.backlog(&sub), 0);
    assert!(t.pull_until(&sub, 10, secs(60)).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn observer_sees_each_lease_end_with_when_the_message_is_available_again() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(backoff_subscription("sub", &topic, 2, 600));
    let seen = t.record();
    t.sleep_until(secs(1)).await;
    t.publish(&topic, &["m"]);
    t.sleep_until(secs(3)).await;
    let first = t.pull_now(&sub, 10).await;
    // Nacked at 4 s: backoff 2 s, so available at 6 s; pulled at 7 s.
    t.sleep_until(secs(4)).await;
    t.nack(&sub, &first);
    t.sleep_until(secs(7)).await;
    t.pull_now(&sub, 10).await;
    // Expires at 17 s: backoff 4 s, so available at 21 s; pulled then.
    t.pull_until(&sub, 10, secs(100)).await;
    assert_eq!(t.now(), secs(21));

    let delivered = |attempt, available_since: Duration, delivered_at: Duration| Seen::Delivered {
        subscription: sub.clone(),
        data: "m".into(),
        attempt,
        available_since: t.wall(available_since),
        delivered_at: t.wall(delivered_at),
        kind: DeliveryKind::Pull,
    };
    let redelivery = |attempt, reason, at: Duration, available_at: Duration| Seen::Redelivery {
        subscription: sub.clone(),
        data: "m".into(),
        attempt,
        reason,
        at: t.wall(at),
        available_at: t.wall(available_at),
    };
    assert_eq!(
        seen.take(),
        [
            delivered(1, secs(1), secs(3)),
            redelivery(1, LeaseEnd::Nacked, secs(4), secs(6)),
            delivered(2, secs(6), secs(7)),
            redelivery(2, LeaseEnd::Expired, secs(17), secs(21)),
            delivered(3, secs(21), secs(21)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_retry_policy_the_observer_sees_messages_available_at_once() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["m"]);
    let seen = t.record();
    t.pull_now(&sub, 10).await;
    t.sleep_until(secs(12)).await;
    t.pull_now(&sub, 10).await;
    let events = seen.take();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[1],
        Seen::Redelivery {
            subscription: sub.clone(),
            data: "m".into(),
            attempt: 1,
            reason: LeaseEnd::Expired,
            at: t.wall(secs(10)),
            available_at: t.wall(secs(10)),
        }
    );
    let Seen::Delivered {
        attempt,
        available_since,
        delivered_at,
        ..
    } = &events[2]
    else {
        panic!("a delivery, not {:?}", events[2]);
    };
    assert_eq!(*attempt, 2);
    assert_eq!(
        *available_since,
        t.wall(secs(10)),
        "waiting since the expiry"
    );
    assert_eq!(*delivered_at, t.wall(secs(12)));
}
