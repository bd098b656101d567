#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Dead-lettering (`pubsub-api.md` section 4): every lease that ends without
//! an ack, by nack or by expiry, counts as a delivery attempt; subscribers
//! see `delivery_attempt` = 1 + nacks + expiries when a dead-letter policy is
//! set (0 otherwise); when the lease of attempt `max_delivery_attempts` ends,
//! the message is acked on its subscription and a copy is published on the
//! dead-letter topic with the `CloudPubSubDeadLetterSource*` attributes.
//!
//! Expiries are driven by Tokio's paused clock, so a message that is never
//! acked is dead-lettered at an exact virtual instant (five 10 s leases: 50 s)
//! and the copy's publish-time attribute is an exact virtual wall-clock time.

mod support;

use baton_broker::LeaseEnd;
use baton_proto::pubsub::{DeadLetterPolicy, RetryPolicy, Subscription};
use baton_proto::wkt;
use support::*;

/// A subscription of `topic` that dead-letters to `dead_letter_topic` after
/// `max_delivery_attempts` (0 means 5).
fn dead_lettering(
    id: &str,
    topic: &str,
    dead_letter_topic: &str,
    max_delivery_attempts: i32,
) -> Subscription {
    Subscription {
        dead_letter_policy: Some(DeadLetterPolicy {
            dead_letter_topic: dead_letter_topic.to_string(),
            max_delivery_attempts,
        }),
        ..subscription(id, topic)
    }
}

#[tokio::test(start_paused = true)]
async fn nacked_up_to_max_delivery_attempts_the_message_goes_to_the_dead_letter_topic() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let dead_sub = t.create_subscription(subscription("dead-sub", &dead));
    let sub = t.create_subscription(dead_lettering("worker", &topic, &dead, 5));
    t.sleep_until(ms(1_500)).await;
    let mut poison = message("poison");
    poison.attributes.insert("origin".into(), "test".into());
    let ids = t.publish_messages(&topic, vec![poison]);

    let mut attempts_seen = Vec::new();
    for _ in 0..5 {
        let lease = t.pull_now(&sub, 1).await;
        assert_eq!(datas(&lease), ["poison"]);
        attempts_seen.extend(attempts(&lease));
        sleep(secs(2)).await;
        t.nack(&sub, &lease);
    }
    assert_eq!(attempts_seen, [1, 2, 3, 4, 5], "1 + nacks");
    assert_eq!(t.now(), ms(11_500));

    // The fifth nack dead-lettered it: acked on the source...
    assert_eq!(t.backlog(&sub), 0);
    t.publish(&topic, &["fine"]);
    let rest = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&rest), ["fine"], "only a later message is left");
    assert_eq!(attempts(&rest), [1]);

    // ...and republished on the dead-letter topic.
    let letters = t.pull_now(&dead_sub, 10).await;
    assert_eq!(datas(&letters), ["poison"]);
    assert_eq!(
        letters[0].delivery_attempt, 0,
        "its own subscription counts anew"
    );
    let copy = letters[0].message.clone().unwrap();
    assert!(!copy.message_id.is_empty());
    assert_ne!(copy.message_id, ids[0], "a new message id");
    assert_eq!(
        copy.publish_time,
        Some(wkt::Timestamp {
            seconds: 1_700_000_011,
            nanos: 500_000_000,
        }),
        "published when it was dead-lettered"
    );
    let expected: [(&str, &str); 5] = [
        ("origin", "test"),
        ("CloudPubSubDeadLetterSourceDeliveryCount", "5"),
        ("CloudPubSubDeadLetterSourceSubscription", "worker"),
        ("CloudPubSubDeadLetterSourceSubscriptionProject", PROJECT),
        (
            "CloudPubSubDeadLetterSourceTopicPublishTime",
            "2023-11-14T22:13:21.500Z",
        ),
    ];
    let mut attributes: Vec<(&str, &str)> = copy
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    attributes.sort_unstable();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(attributes, expected);
}

#[tokio::test(start_paused = true)]
async fn expiries_count_as_delivery_attempts() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let dead_sub = t.create_subscription(subscription("dead-sub", &dead));
    // 0 means the default, 5 attempts.
    let sub = t.create_subscription(dead_lettering("worker", &topic, &dead, 0));
    let seen = t.record();
    t.publish(&topic, &["m"]);

    let mut deliveries = Vec::new();
    for _ in 0..5 {
        let lease = t.pull_until(&sub, 10, secs(100)).await;
        deliveries.push((lease[0].delivery_attempt, t.now().as_secs()));
    }
    assert_eq!(
        deliveries,
        [(1, 0), (2, 10), (3, 20), (4, 30), (5, 40)],
        "each 10 s lease expires and counts"
    );
    let letters = t.pull_until(&dead_sub, 10, secs(100)).await;
    assert_eq!(t.now(), secs(50), "dead-lettered as the fifth lease ended");
    let copy = letters[0].message.clone().unwrap();
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
    assert_eq!(t.backlog(&sub), 0);
    assert!(t.pull_until(&sub, 10, secs(100)).await.is_empty());

    let dead_lettered: Vec<Seen> = seen
        .take()
        .into_iter()
        .filter(|s| matches!(s, Seen::DeadLettered { .. }))
        .collect();
    assert_eq!(
        dead_lettered,
        [Seen::DeadLettered {
            subscription: sub.clone(),
            data: "m".into(),
            attempts: 5,
            reason: LeaseEnd::Expired,
            dead_letter_topic: dead.clone(),
            at: t.wall(secs(50)),
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn nacks_and_expiries_count_together() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let dead_sub = t.create_subscription(subscription("dead-sub", &dead));
    let sub = t.create_subscription(dead_lettering("worker", &topic, &dead, 5));
    let seen = t.record();
    t.publish(&topic, &["m"]);

    let mut attempts_seen = Vec::new();
    for attempt in 1..=5 {
        let lease = t.pull_until(&sub, 10, secs(1000)).await;
        attempts_seen.extend(attempts(&lease));
        if attempt % 2 == 0 {
            sleep(secs(1)).await;
            t.nack(&sub, &lease);
        }
        // Odd attempts expire 10 s after delivery.
    }
    // Leases: 0-10 expired, 10-11 nacked, 11-21 expired, 21-22 nacked,
    // 22-32 expired: the fifth attempt ends at 32 s.
    assert_eq!(attempts_seen, [1, 2, 3, 4, 5]);
    let letters = t.pull_until(&dead_sub, 10, secs(1000)).await;
    assert_eq!(t.now(), secs(32));
    assert_eq!(datas(&letters), ["m"]);

    let lease_ends: Vec<(i32, LeaseEnd)> = seen
        .take()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Redelivery {
                attempt, reason, ..
            } => Some((attempt, reason)),
            Seen::DeadLettered {
                attempts, reason, ..
            } => Some((attempts, reason)),
            Seen::Delivered { .. } => None,
        })
        .collect();
    assert_eq!(
        lease_ends,
        [
            (1, LeaseEnd::Expired),
            (2, LeaseEnd::Nacked),
            (3, LeaseEnd::Expired),
            (4, LeaseEnd::Nacked),
            (5, LeaseEnd::Expired),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_count_through_retry_backoffs_and_the_last_one_is_not_delayed() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let dead_sub = t.create_subscription(subscription("dead-sub", &dead));
    let sub = t.create_subscription(Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(proto_secs(1)),
            maximum_backoff: Some(proto_secs(4)),
        }),
        ..dead_lettering("worker", &topic, &dead, 5)
    });
    t.publish(&topic, &["m"]);
    let mut delivered_at = Vec::new();
    for _ in 0..5 {
        let lease = t.pull_until(&sub, 10, secs(100)).await;
        delivered_at.push((lease[0].delivery_attempt, t.now().as_secs()));
        t.nack(&sub, &lease);
    }
    // Backoffs 1, 2, 4, 4 s between the five attempts.
    assert_eq!(delivered_at, [(1, 0), (2, 1), (3, 3), (4, 7), (5, 11)]);
    // The fifth nack forwards it at once rather than backing off.
    let letters = t.pull_now(&dead_sub, 10).await;
    assert_eq!(datas(&letters), ["m"]);
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_dead_letter_policy_subscribers_see_attempt_zero() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("plain", &topic));
    let seen = t.record();
    t.publish(&topic, &["m"]);
    let mut reported = Vec::new();
    for _ in 0..7 {
        let lease = t.pull_now(&sub, 10).await;
        reported.extend(attempts(&lease));
        t.nack(&sub, &lease);
    }
    assert_eq!(reported, [0; 7], "no dead-letter policy, no count");
    assert_eq!(t.backlog(&sub), 1, "and nothing is ever dead-lettered");
    let observed: Vec<i32> = seen
        .take()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Delivered { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(
        observed,
        [1, 2, 3, 4, 5, 6, 7],
        "the observer counts all the same"
    );
}

#[tokio::test(start_paused = true)]
async fn each_subscription_counts_its_own_attempts() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let dead = t.create_topic("dead-letters");
    let dead_sub = t.create_subscription(subscription("dead-sub", &dead));
    let eager = t.create_subscription(dead_lettering("eager", &topic, &dead, 5));
    let patient = t.create_subscription(dead_lettering("patient", &topic, &dead, 10));
    t.publish(&topic, &["m"]);
    for _ in 0..5 {
        let lease = t.pull_now(&eager, 10).await;
        t.nack(&eager, &lease);
    }
    let lease = t.pull_now(&patient, 10).await;
    assert_eq!(
        attempts(&lease),
        [1],
        "the other subscription's nacks do not count"
    );
    let letters = t.pull_now(&dead_sub, 10).await;
    assert_eq!(
        letters[0].message.as_ref().unwrap().attributes["CloudPubSubDeadLetterSourceSubscription"],
        "eager"
    );
    assert_eq!(t.backlog(&eager), 0);
    assert_eq!(t.backlog(&patient), 1);
}
