//! The disk store on virtual time: while the store's writer is busy (an
//! fsync takes real time), a paused runtime must not move its clock on,
//! or every durable publish would let lease deadlines and backoffs run out
//! early. These tests would fail if waiting for durability let Tokio
//! auto-advance to the next timer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use baton_broker::{Broker, Clock, PullWait};
use support::{message, secs, start_wall, subscription};
use tokio::time::Instant;

fn durable_broker(dir: &std::path::Path) -> std::sync::Arc<Broker> {
    Broker::builder()
        .clock(Clock::virtual_time(start_wall()))
        .data_dir(dir)
        .start()
        .expect("the disk store opens")
}

#[tokio::test(start_paused = true)]
async fn waiting_for_the_disk_does_not_move_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = durable_broker(dir.path());
    let topic = "projects/disk-time/topics/orders";
    broker
        .create_topic(baton_proto::pubsub::Topic {
            name: topic.into(),
            ..Default::default()
        })
        .unwrap();
    let sub = subscription("worker", topic);
    let sub_name = sub.name.clone();
    broker.create_subscription(sub).unwrap();
    broker.durable().await.unwrap();
    broker.publish(topic, vec![message("leased")]).unwrap();
    broker.durable().await.unwrap();
    let started = Instant::now();
    let leased = broker
        .pull(&sub_name, 1, PullWait::Immediate)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    // Many durable writes, each waiting for its fsync, with a 10 s lease
    // and the broker's timer task pending all along.
    for n in 0..50 {
        broker
            .publish(topic, vec![message(&format!("m{n}"))])
            .unwrap();
        broker.durable().await.unwrap();
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no virtual time passed while the disk was busy"
    );
    let next = broker
        .pull(&sub_name, 100, PullWait::Immediate)
        .await
        .unwrap();
    assert_eq!(next.len(), 50, "the leased message is still leased");
    // The lease still ends exactly at its deadline.
    tokio::time::sleep(secs(10) - Duration::from_millis(1)).await;
    support::settle().await;
    assert!(
        broker
            .pull(&sub_name, 1, PullWait::Immediate)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    support::settle().await;
    let again = broker
        .pull(&sub_name, 1, PullWait::Immediate)
        .await
        .unwrap();
    assert_eq!(support::datas(&again), vec!["leased"]);
    assert_eq!(started.elapsed(), secs(10));
}
