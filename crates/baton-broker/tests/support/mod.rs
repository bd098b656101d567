//! Shared harness of the broker's delivery tests: a broker on virtual time
//! (Tokio's paused clock drives lease deadlines, backoffs and pull waits, and
//! the broker's wall clock follows it from a fixed start), helpers for the
//! calls every test repeats, and an observer that records what the broker
//! reports.
//!
//! Times are given as virtual time since the broker started, so a test reads
//! `t.sleep_until(secs(10)).await; assert_eq!(t.now(), secs(10))`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_broker::{
    Broker, Clock, DeadLetter, Delivery, DeliveryKind, DeliveryObserver, HeldMessage, LeaseEnd,
    PullWait, Redelivery,
};
use baton_proto::pubsub::{PubsubMessage, ReceivedMessage, Subscription, Topic};
use baton_proto::wkt;
use tokio::time::Instant;

/// Project of every resource the tests create.
pub const PROJECT: &str = "broker-tests";

/// Wall-clock time at which every test broker starts (2023-11-14T22:13:20Z).
pub fn start_wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A protobuf duration of `n` seconds (retry policies, retention).
pub fn proto_secs(n: i64) -> wkt::Duration {
    wkt::Duration {
        seconds: n,
        nanos: 0,
    }
}

/// Lets the broker's timer task run what came due at the current virtual
/// instant. When a sleep ends at the very instant a lease or backoff ends,
/// Tokio polls the test before the timer task; yielding hands it the turn
/// without moving the clock.
pub async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Sleeps `d` of virtual time, then lets due timers fire.
pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

/// A broker on virtual time and the instant its clock started. Call inside a
/// paused runtime (`#[tokio::test(start_paused = true)]`).
#[derive(Debug)]
pub struct VirtualBroker {
    pub broker: Arc<Broker>,
    pub started: Instant,
}

impl VirtualBroker {
    pub fn start() -> Self {
        let broker = Broker::builder()
            .clock(Clock::virtual_time(start_wall()))
            .start()
            .expect("an in-memory broker starts");
        Self {
            broker,
            started: Instant::now(),
        }
    }

    /// Virtual time since the broker started.
    pub fn now(&self) -> Duration {
        Instant::now() - self.started
    }

    /// The monotonic instant `offset` after the start.
    pub fn instant(&self, offset: Duration) -> Instant {
        self.started + offset
    }

    /// The broker's wall-clock time `offset` after the start.
    pub fn wall(&self, offset: Duration) -> SystemTime {
        start_wall() + offset
    }

    /// Sleeps until `offset` after the start (which must not have passed),
    /// then lets due timers fire.
    pub async fn sleep_until(&self, offset: Duration) {
        assert!(
            self.now() <= offset,
            "already at {:?}, past {offset:?}",
            self.now()
        );
        tokio::time::sleep_until(self.instant(offset)).await;
        settle().await;
    }

    pub fn create_topic(&self, id: &str) -> String {
        let name = format!("projects/{PROJECT}/topics/{id}");
        self.broker
            .create_topic(Topic {
                name: name.clone(),
                ..Default::default()
            })
            .expect("topic created");
        name
    }

    /// Creates `subscription` (see [`subscription`] for the defaults); its name.
    pub fn create_subscription(&self, subscription: Subscription) -> String {
        self.broker
            .create_subscription(subscription)
            .expect("subscription created")
            .name
    }

    /// Publishes one message per `datas` entry; their ids.
    pub fn publish(&self, topic: &str, datas: &[&str]) -> Vec<String> {
        self.publish_messages(topic, datas.iter().map(|d| message(d)).collect())
    }

    /// Publishes messages with `ordering_key`; their ids.
    pub fn publish_keyed(&self, topic: &str, ordering_key: &str, datas: &[&str]) -> Vec<String> {
        self.publish_messages(
            topic,
            datas.iter().map(|d| keyed(d, ordering_key)).collect(),
        )
    }

    pub fn publish_messages(&self, topic: &str, messages: Vec<PubsubMessage>) -> Vec<String> {
        self.broker.publish(topic, messages).expect("published")
    }

    /// Pull that answers at once, possibly empty.
    pub async fn pull_now(&self, subscription: &str, max: i32) -> Vec<ReceivedMessage> {
        self.broker
            .pull(subscription, max, PullWait::Immediate)
            .await
            .expect("pull")
    }

    /// Pull that waits for messages until `deadline` after the start.
    pub async fn pull_until(
        &self,
        subscription: &str,
        max: i32,
        deadline: Duration,
    ) -> Vec<ReceivedMessage> {
        self.broker
            .pull(subscription, max, PullWait::Until(self.instant(deadline)))
            .await
            .expect("pull")
    }

    pub fn ack(&self, subscription: &str, received: &[ReceivedMessage]) {
        self.broker
            .acknowledge(subscription, &ack_ids(received))
            .expect("ack");
    }

    /// ModifyAckDeadline 0 on `received`.
    pub fn nack(&self, subscription: &str, received: &[ReceivedMessage]) {
        self.modack(subscription, received, 0);
    }

    pub fn modack(&self, subscription: &str, received: &[ReceivedMessage], seconds: i32) {
        self.broker
            .modify_ack_deadline(subscription, &ack_ids(received), seconds)
            .expect("modack");
    }

    pub fn backlog(&self, subscription: &str) -> usize {
        self.broker.backlog_len(subscription).expect("backlog")
    }

    /// Records what the broker reports from now on.
    pub fn record(&self) -> Arc<Recorder> {
        let recorder = Arc::new(Recorder::default());
        self.broker.set_observer(recorder.clone());
        recorder
    }
}

/// A subscription `id` of `topic` with default settings (10 s ack deadline,
/// no ordering, no retry or dead-letter policy).
pub fn subscription(id: &str, topic: &str) -> Subscription {
    Subscription {
        name: format!("projects/{PROJECT}/subscriptions/{id}"),
        topic: topic.to_string(),
        ..Default::default()
    }
}

pub fn message(data: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn keyed(data: &str, ordering_key: &str) -> PubsubMessage {
    PubsubMessage {
        ordering_key: ordering_key.to_string(),
        ..message(data)
    }
}

/// The data of each received message, as text.
pub fn datas(received: &[ReceivedMessage]) -> Vec<String> {
    received.iter().map(data).collect()
}

pub fn data(received: &ReceivedMessage) -> String {
    String::from_utf8(received.message.as_ref().expect("a message").data.clone())
        .expect("UTF-8 data")
}

pub fn ack_ids(received: &[ReceivedMessage]) -> Vec<String> {
    received.iter().map(|m| m.ack_id.clone()).collect()
}

pub fn attempts(received: &[ReceivedMessage]) -> Vec<i32> {
    received.iter().map(|m| m.delivery_attempt).collect()
}

/// One thing the broker reported to its observer, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Delivered {
        subscription: String,
        data: String,
        attempt: i32,
        available_since: SystemTime,
        delivered_at: SystemTime,
        kind: DeliveryKind,
    },
    Redelivery {
        subscription: String,
        data: String,
        attempt: i32,
        reason: LeaseEnd,
        at: SystemTime,
        available_at: SystemTime,
    },
    DeadLettered {
        subscription: String,
        data: String,
        attempts: i32,
        reason: LeaseEnd,
        dead_letter_topic: String,
        at: SystemTime,
    },
}

/// A [`DeliveryObserver`] that keeps every delivery, redelivery and
/// dead-lettering it hears of, in order.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    /// Everything seen since the last call.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
    }
}

fn text(message: &HeldMessage) -> String {
    String::from_utf8_lossy(message.data()).into_owned()
}

impl DeliveryObserver for Recorder {
    fn delivered(&self, delivery: Delivery<'_>) {
        self.push(Seen::Delivered {
            subscription: delivery.subscription.to_string(),
            data: text(delivery.message),
            attempt: delivery.attempt,
            available_since: delivery.available_since,
            delivered_at: delivery.delivered_at,
            kind: delivery.kind,
        });
    }

    fn redelivery(&self, redelivery: Redelivery<'_>) {
        self.push(Seen::Redelivery {
            subscription: redelivery.subscription.to_string(),
            data: text(redelivery.message),
            attempt: redelivery.attempt,
            reason: redelivery.reason,
            at: redelivery.at,
            available_at: redelivery.available_at,
        });
    }

    fn dead_lettered(&self, dead_letter: DeadLetter<'_>) {
        self.push(Seen::DeadLettered {
            subscription: dead_letter.subscription.to_string(),
            data: text(dead_letter.message),
            attempts: dead_letter.attempts,
            reason: dead_letter.reason,
            dead_letter_topic: dead_letter.dead_letter_topic.to_string(),
            at: dead_letter.at,
        });
    }
}
