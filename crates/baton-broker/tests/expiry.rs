#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real service's expiry rules on the broker's clock (virtual time):
//! subscription and topic retention, expiration policies and snapshot
//! lifetimes. Each test advances the clock to just before and just past the
//! boundary and asserts exactly what is gone and what stays.

mod support;

use baton_broker::{Broker, Clock, PullWait};
use baton_proto::pubsub::seek_request::Target;
use baton_proto::pubsub::{ExpirationPolicy, Subscription, Topic};
use support::*;

const DAY: u64 = 24 * 3600;

fn retaining(id: &str, topic: &str, retention_secs: i64, keep_acked: bool) -> Subscription {
    Subscription {
        message_retention_duration: Some(proto_secs(retention_secs)),
        retain_acked_messages: keep_acked,
        ..subscription(id, topic)
    }
}

#[tokio::test(start_paused = true)]
async fn unacked_messages_older_than_the_subscription_retention_are_dropped() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(retaining("worker", &topic, 600, false));
    t.publish(&topic, &["old"]);
    t.sleep_until(secs(300)).await;
    t.publish(&topic, &["young"]);
    // "old" is leased when its retention runs out: the lease ends with it.
    let leased = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&leased), ["old"]);

    t.sleep_until(secs(600) - ms(1)).await;
    assert_eq!(t.backlog(&sub), 2, "both still within 10 minutes");
    t.sleep_until(secs(600)).await;
    assert_eq!(t.backlog(&sub), 1, "\"old\" is 10 minutes old: gone");
    // Its lease is gone too: acking it settles nothing, and it never comes back.
    t.ack(&sub, &leased);
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["young"]);

    t.sleep_until(secs(900)).await;
    assert_eq!(t.backlog(&sub), 0, "\"young\" is gone at its own boundary");
}

#[tokio::test(start_paused = true)]
async fn retained_acked_messages_are_pruned_to_the_subscription_retention() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(retaining("audit", &topic, 600, true));
    t.publish(&topic, &["first"]);
    t.sleep_until(secs(60)).await;
    t.publish(&topic, &["second"]);
    let got = t.pull_now(&sub, 10).await;
    t.ack(&sub, &got);
    assert_eq!(t.backlog(&sub), 0);

    let back_to_start = |t: &VirtualBroker| {
        t.broker.seek(
            &sub,
            Some(Target::Time(baton_proto::wkt::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            })),
        )
    };
    t.sleep_until(secs(600) - ms(1)).await;
    back_to_start(&t).unwrap();
    assert_eq!(t.backlog(&sub), 2, "both retained before the boundary");
    let got = t.pull_now(&sub, 10).await;
    t.ack(&sub, &got);

    t.sleep_until(secs(600)).await;
    back_to_start(&t).unwrap();
    assert_eq!(
        datas(&t.pull_now(&sub, 10).await),
        ["second"],
        "\"first\" was pruned from the retained messages"
    );
}

#[tokio::test(start_paused = true)]
async fn a_topic_log_is_pruned_to_the_topic_retention() {
    let t = VirtualBroker::start();
    let topic = format!("projects/{PROJECT}/topics/kept");
    t.broker
        .create_topic(Topic {
            name: topic.clone(),
            message_retention_duration: Some(proto_secs(600)),
            ..Default::default()
        })
        .unwrap();
    t.publish(&topic, &["early"]);
    t.sleep_until(secs(120)).await;
    t.publish(&topic, &["late"]);

    t.sleep_until(secs(600) - ms(1)).await;
    let before = t.create_subscription(subscription("before", &topic));
    assert_eq!(
        t.backlog(&before),
        2,
        "a new subscription gets the whole log"
    );
    t.sleep_until(secs(600)).await;
    // No publish since: the timer, not a later publish, pruned the log.
    let after = t.create_subscription(subscription("after", &topic));
    assert_eq!(datas(&t.pull_now(&after, 10).await), ["late"]);
    t.sleep_until(secs(720)).await;
    let last = t.create_subscription(subscription("last", &topic));
    assert_eq!(t.backlog(&last), 0);
}

#[tokio::test(start_paused = true)]
async fn an_inactive_subscription_is_deleted_after_its_ttl_and_activity_postpones_it() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let ttl = |seconds| {
        Some(ExpirationPolicy {
            ttl: Some(proto_secs(seconds)),
        })
    };
    let idle = t.create_subscription(Subscription {
        expiration_policy: ttl(DAY as i64),
        ..subscription("idle", &topic)
    });
    let pulled = t.create_subscription(Subscription {
        expiration_policy: ttl(DAY as i64),
        ..subscription("pulled", &topic)
    });
    let never = t.create_subscription(Subscription {
        expiration_policy: Some(ExpirationPolicy { ttl: None }),
        ..subscription("never", &topic)
    });
    let default = t.create_subscription(subscription("default", &topic));

    t.sleep_until(secs(DAY / 2)).await;
    assert!(
        t.pull_now(&pulled, 1).await.is_empty(),
        "a pull is activity"
    );
    t.sleep_until(secs(DAY) - ms(1)).await;
    assert!(t.broker.get_subscription(&idle).is_ok());
    t.sleep_until(secs(DAY)).await;
    assert!(
        t.broker.get_subscription(&idle).is_err(),
        "idle for its ttl: deleted"
    );
    assert!(
        t.broker
            .list_topic_subscriptions(&topic, 0, "")
            .unwrap()
            .items
            .iter()
            .all(|s| *s != idle)
    );
    t.sleep_until(secs(DAY + DAY / 2) - ms(1)).await;
    assert!(t.broker.get_subscription(&pulled).is_ok());
    t.sleep_until(secs(DAY + DAY / 2)).await;
    assert!(
        t.broker.get_subscription(&pulled).is_err(),
        "a ttl after its pull"
    );

    // Without a policy: the real default of 31 days; an open stream keeps a
    // subscription alive all the while.
    let stream = t.broker.register_stream(&default, 10, 0, 0).unwrap();
    t.sleep_until(secs(40 * DAY)).await;
    assert!(
        t.broker.get_subscription(&default).is_ok(),
        "open stream: active"
    );
    drop(stream);
    t.sleep_until(secs(71 * DAY) - ms(1)).await;
    assert!(t.broker.get_subscription(&default).is_ok());
    t.sleep_until(secs(71 * DAY)).await;
    assert!(
        t.broker.get_subscription(&default).is_err(),
        "31 days after its stream closed"
    );
    assert!(t.broker.get_subscription(&never).is_ok(), "no ttl: never");
}

#[tokio::test(start_paused = true)]
async fn a_ttl_under_a_day_is_refused_and_zero_means_never() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let short = t.broker.create_subscription(Subscription {
        expiration_policy: Some(ExpirationPolicy {
            ttl: Some(proto_secs(60)),
        }),
        ..subscription("short", &topic)
    });
    assert_eq!(
        short.unwrap_err().message,
        "The value for expiration_policy.ttl is too small. You passed 60s in the request, but the minimum value is 86400s."
    );
    let zero = t.create_subscription(Subscription {
        expiration_policy: Some(ExpirationPolicy {
            ttl: Some(proto_secs(0)),
        }),
        ..subscription("zero", &topic)
    });
    t.sleep_until(secs(40 * DAY)).await;
    assert!(t.broker.get_subscription(&zero).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_expires_seven_days_after_its_oldest_unacked_message() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("worker", &topic));
    let snap = |id: &str| format!("projects/{PROJECT}/snapshots/{id}");
    let fresh = t
        .broker
        .create_snapshot(&snap("fresh"), &sub, Default::default())
        .unwrap();
    assert_eq!(
        fresh.expire_time.unwrap().seconds,
        1_700_000_000 + 7 * DAY as i64,
        "empty backlog: 7 days from creation"
    );
    t.publish(&topic, &["m"]);
    t.sleep_until(secs(2 * DAY)).await;
    let backlogged = t
        .broker
        .create_snapshot(&snap("backlogged"), &sub, Default::default())
        .unwrap();
    assert_eq!(
        backlogged.expire_time.unwrap().seconds,
        1_700_000_000 + 7 * DAY as i64,
        "7 days after the oldest unacked message, not after creation"
    );
    t.sleep_until(secs(7 * DAY - 3600) + ms(1)).await;
    assert!(
        t.broker
            .create_snapshot(&snap("too-late"), &sub, Default::default())
            .is_err(),
        "it would expire in less than an hour"
    );

    t.sleep_until(secs(7 * DAY) - ms(1)).await;
    assert_eq!(
        t.broker
            .list_snapshots(&format!("projects/{PROJECT}"), 0, "")
            .unwrap()
            .items
            .len(),
        2
    );
    t.sleep_until(secs(7 * DAY)).await;
    assert!(
        t.broker
            .list_snapshots(&format!("projects/{PROJECT}"), 0, "")
            .unwrap()
            .items
            .is_empty()
    );
    assert!(t.broker.get_snapshot(&snap("fresh")).is_err());
    assert!(
        t.broker
            .seek(&sub, Some(Target::Snapshot(snap("backlogged"))))
            .is_err(),
        "no longer seekable"
    );
}

#[tokio::test(start_paused = true)]
async fn expiry_survives_a_restart_on_the_disk_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = |since_start| {
        Broker::builder()
            .clock(Clock::virtual_time(start_wall() + since_start))
            .data_dir(dir.path())
            .start()
            .unwrap()
    };
    let broker = open(secs(0));
    let topic = format!("projects/{PROJECT}/topics/orders");
    broker
        .create_topic(Topic {
            name: topic.clone(),
            ..Default::default()
        })
        .unwrap();
    let sub = broker
        .create_subscription(retaining("worker", &topic, 600, false))
        .unwrap()
        .name;
    broker.publish(&topic, vec![message("old")]).unwrap();
    tokio::time::sleep(secs(300)).await;
    broker.publish(&topic, vec![message("young")]).unwrap();
    tokio::time::sleep(secs(301)).await;
    settle().await;
    assert_eq!(broker.backlog_len(&sub).unwrap(), 1, "\"old\" expired");
    broker.durable().await.unwrap();
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close_storage())
        .await
        .unwrap();
    drop(broker);

    // Restarted at the same wall time (601 s): the expired message stays
    // gone, and the other one's expiry is armed again, 10 minutes after its
    // publish time (900 s).
    let broker = open(secs(601));
    settle().await;
    let got = broker.pull(&sub, 10, PullWait::Immediate).await.unwrap();
    assert_eq!(datas(&got), ["young"]);
    tokio::time::sleep(secs(298)).await;
    settle().await;
    assert_eq!(broker.backlog_len(&sub).unwrap(), 1);
    tokio::time::sleep(secs(1)).await;
    settle().await;
    assert_eq!(
        broker.backlog_len(&sub).unwrap(),
        0,
        "re-armed after the restart"
    );
}
