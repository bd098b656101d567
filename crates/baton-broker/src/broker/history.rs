//! The message journal: what happened to each recent message, to follow one
//! message through the broker ("why was this delivered three times?").
//!
//! Every published message gets a record: its publish (topic, ordering key,
//! size, attributes, trace context), then each delivery attempt on each
//! subscription (how and to which stream, the lease deadline), deadline
//! changes, the lease's end (nack or expiry), the ack, dead-lettering and the
//! copy's id on the dead-letter topic. The delivery state machine records
//! those moments in the operation's effects (one push on a vector), and
//! [`super::commit`] files them here under the lock.
//!
//! The journal is bounded by a number of messages: when it is full, the
//! oldest message's record goes (a ring of message ids plus a map, O(1) per
//! event). A message's own record keeps at most [`MAX_EVENTS_PER_MESSAGE`]
//! events (a client extending its lease every few seconds could otherwise
//! grow it without end); later ones are counted, not kept. A message the
//! journal never saw published (restored from the disk store) gets a record
//! at its next event, without a publish; events of evicted messages are
//! dropped, so they never push out newer records.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Broker;
#[cfg(doc)]
use super::journal::MAX_EVENTS_PER_MESSAGE;
use super::journal::{Recorded, StoredTraceparent};
use crate::clock::Reading;
use crate::error::{BrokerError, BrokerResult};
use crate::names::{self, Collection};
use crate::observer::{DeliveryKind, LeaseEnd};

/// A message's publish, as the journal saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRecord {
    /// The topic's full name.
    pub topic: String,
    /// When it was stored.
    pub at: SystemTime,
    /// Its ordering key (empty when none).
    pub ordering_key: String,
    /// Payload bytes (data, attributes and ordering key).
    pub size: u64,
    /// How many attributes it carried.
    pub attributes: u64,
    /// Its `googclient_traceparent` attribute, when it carried one.
    pub traceparent: Option<String>,
}

impl PublishRecord {
    /// The 32-hex-digit trace id of [`Self::traceparent`], when it is a
    /// well-formed W3C `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.traceparent.as_deref()?.split('-');
        let _version = parts.next()?;
        let trace_id = parts.next()?;
        (trace_id.len() == 32
            && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
            && trace_id.bytes().any(|b| b != b'0'))
        .then_some(trace_id)
    }
}

/// What happened, in [`MessageEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEventKind {
    /// Handed to a subscriber.
    Delivered {
        /// Which attempt, from 1.
        attempt: i32,
        /// Pull, StreamingPull or push.
        via: DeliveryKind,
        /// The StreamingPull stream (or push worker) it went to.
        stream: Option<u64>,
        /// When its lease was due to end.
        lease_deadline: SystemTime,
    },
    /// The subscriber moved the lease's deadline (ModifyAckDeadline > 0).
    DeadlineModified {
        /// The attempt whose lease it is.
        attempt: i32,
        /// The new deadline.
        deadline: SystemTime,
    },
    /// The lease ended without an ack; the message goes back.
    LeaseEnded {
        /// The attempt whose lease ended.
        attempt: i32,
        /// Nack or expiry.
        reason: LeaseEnd,
        /// When it is ready again (later than the event under a retry
        /// policy's backoff).
        available_at: SystemTime,
    },
    /// Acknowledged: settled for good on this subscription.
    Acked {
        /// The attempt it was acked on.
        attempt: i32,
    },
    /// Out of delivery attempts: forwarded to the dead-letter topic.
    DeadLettered {
        /// Attempts used.
        attempts: i32,
        /// How the last lease ended.
        reason: LeaseEnd,
        /// The dead-letter topic.
        dead_letter_topic: String,
    },
    /// The dead-lettered copy was stored on the dead-letter topic.
    DeadLetterCopy {
        /// The dead-letter topic.
        topic: String,
        /// The copy's message id there.
        message_id: String,
    },
}

/// One event of a message on one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    /// When (the broker's wall clock).
    pub at: SystemTime,
    /// The subscription's full name.
    pub subscription: String,
    /// What happened.
    pub kind: MessageEventKind,
}

/// What the broker remembers of one message: see [`Broker::message_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHistory {
    /// The message id.
    pub message_id: String,
    /// Its publish; `None` when the journal did not see it (published
    /// before the broker started, or its record was evicted and made anew).
    pub published: Option<PublishRecord>,
    /// Everything after the publish, in order.
    pub events: Vec<MessageEvent>,
    /// Events past [`MAX_EVENTS_PER_MESSAGE`], counted but not kept.
    pub events_dropped: u64,
}

impl MessageHistory {
    /// The subscriptions the message reached, in the order it first reached
    /// them.
    pub fn subscriptions(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for event in &self.events {
            if !seen.contains(&event.subscription.as_str()) {
                seen.push(&event.subscription);
            }
        }
        seen
    }

    /// Deliveries on `subscription`.
    pub fn deliveries(&self, subscription: &str) -> usize {
        self.events
            .iter()
            .filter(|e| {
                e.subscription == subscription
                    && matches!(e.kind, MessageEventKind::Delivered { .. })
            })
            .count()
    }

    /// One line per subscription answering "why was it delivered N
    /// times?", e.g. `worker: delivered 3 times: attempt 1 nacked by stream
    /// 3 after 20 ms; attempt 2 lease expired after 10 s; attempt 3 acked
    /// after 5 ms`.
    pub fn explain(&self) -> Vec<String> {
        self.subscriptions()
            .into_iter()
            .map(|sub| self.explain_subscription(sub))
            .collect()
    }

    fn explain_subscription(&self, subscription: &str) -> String {
        let short = subscription.rsplit('/').next().unwrap_or(subscription);
        let deliveries = self.deliveries(subscription);
        let times = if deliveries == 1 { "time" } else { "times" };
        let mut line = format!("{short}: delivered {deliveries} {times}");
        let mut parts: Vec<String> = Vec::new();
        // The current attempt: its number, when it went out and to whom.
        let mut current: Option<(i32, SystemTime, String)> = None;
        let mut settled = false;
        for event in self
            .events
            .iter()
            .filter(|e| e.subscription == subscription)
        {
            match &event.kind {
                MessageEventKind::Delivered {
                    attempt,
                    via,
                    stream,
                    ..
                } => {
                    let to = match (via, stream) {
                        (DeliveryKind::StreamingPull, Some(id)) => format!("stream {id}"),
                        (DeliveryKind::Push, _) => "push".to_string(),
                        _ => "pull".to_string(),
                    };
                    current = Some((*attempt, event.at, to));
                    settled = false;
                }
                MessageEventKind::LeaseEnded {
                    attempt, reason, ..
                } => {
                    let (after, to) = elapsed(current.as_ref(), event.at);
                    parts.push(match reason {
                        LeaseEnd::Nacked => format!("attempt {attempt} nacked by {to}{after}"),
                        LeaseEnd::Expired => {
                            format!("attempt {attempt} lease expired ({to}){after}")
                        }
                    });
                    settled = true;
                }
                MessageEventKind::Acked { attempt } => {
                    let (after, to) = elapsed(current.as_ref(), event.at);
                    parts.push(format!("attempt {attempt} acked by {to}{after}"));
                    settled = true;
                }
                MessageEventKind::DeadLettered {
                    attempts,
                    reason,
                    dead_letter_topic,
                } => {
                    let (after, to) = elapsed(current.as_ref(), event.at);
                    let how = match reason {
                        LeaseEnd::Nacked => format!("nacked by {to}"),
                        LeaseEnd::Expired => format!("lease expired ({to})"),
                    };
                    let topic = dead_letter_topic
                        .rsplit('/')
                        .next()
                        .unwrap_or(dead_letter_topic);
                    parts.push(format!(
                        "attempt {attempts} {how}{after}: max delivery attempts reached, dead-lettered to {topic}"
                    ));
                    settled = true;
                }
                MessageEventKind::DeadlineModified { .. }
                | MessageEventKind::DeadLetterCopy { .. } => {}
            }
        }
        if let Some((attempt, _, to)) = &current
            && !settled
        {
            parts.push(format!("attempt {attempt} outstanding with {to}"));
        }
        if deliveries == 0 {
            line.push_str(" (not delivered yet)");
        } else if !parts.is_empty() {
            let _ = write!(line, ": {}", parts.join("; "));
        }
        line
    }
}

/// " after 20 ms" since the current attempt went out, and to whom.
fn elapsed(current: Option<&(i32, SystemTime, String)>, at: SystemTime) -> (String, String) {
    match current {
        Some((_, since, to)) => (
            format!(
                " after {}",
                format_duration(at.duration_since(*since).unwrap_or_default())
            ),
            to.clone(),
        ),
        None => (String::new(), "a subscriber".to_string()),
    }
}

/// A duration the way a person says it: `20 ms`, `1.5 s`, `2 min 5 s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        let tenths = ms / 100;
        if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
    } else {
        let secs = d.as_secs();
        let (min, s) = (secs / 60, secs % 60);
        if s == 0 {
            format!("{min} min")
        } else {
            format!("{min} min {s} s")
        }
    }
}

fn to_event(recorded: &Recorded, reading: Reading) -> Option<MessageEvent> {
    let wall = |at: Instant| reading.wall_of(at);
    let (subscription, at, kind) = match recorded {
        Recorded::Published { .. } => return None,
        Recorded::Delivered {
            subscription,
            attempt,
            kind,
            stream,
            at,
            lease_deadline,
        } => (
            subscription,
            at,
            MessageEventKind::Delivered {
                attempt: *attempt,
                via: *kind,
                stream: *stream,
                lease_deadline: wall(*lease_deadline),
            },
        ),
        Recorded::DeadlineModified {
            subscription,
            attempt,
            at,
            deadline,
        } => (
            subscription,
            at,
            MessageEventKind::DeadlineModified {
                attempt: *attempt,
                deadline: wall(*deadline),
            },
        ),
        Recorded::LeaseEnded {
            subscription,
            attempt,
            reason,
            at,
            available_at,
        } => (
            subscription,
            at,
            MessageEventKind::LeaseEnded {
                attempt: *attempt,
                reason: *reason,
                available_at: wall(*available_at),
            },
        ),
        Recorded::Acked {
            subscription,
            attempt,
            at,
        } => (
            subscription,
            at,
            MessageEventKind::Acked { attempt: *attempt },
        ),
        Recorded::DeadLettered {
            subscription,
            attempts,
            reason,
            dead_letter_topic,
            at,
        } => (
            subscription,
            at,
            MessageEventKind::DeadLettered {
                attempts: *attempts,
                reason: *reason,
                dead_letter_topic: dead_letter_topic.to_string(),
            },
        ),
        Recorded::DeadLetterCopy {
            subscription,
            topic,
            message_id,
            at,
        } => (
            subscription,
            at,
            MessageEventKind::DeadLetterCopy {
                topic: topic.to_string(),
                message_id: message_id.clone(),
            },
        ),
    };
    Some(MessageEvent {
        at: wall(*at),
        subscription: subscription.to_string(),
        kind,
    })
}

fn history_not_found() -> BrokerError {
    BrokerError::not_found("No history of this message (not published here, or evicted)")
}

impl Broker {
    /// What the broker remembers of message `message_id` of `topic`: its
    /// publish and every delivery attempt, lease end, ack and dead-lettering
    /// on every subscription, in order. NOT_FOUND when the journal has no
    /// record of it (the id is not a message of this broker, it was
    /// published on another topic, or it was evicted), or when the journal is
    /// off.
    pub fn message_history(&self, topic: &str, message_id: &str) -> BrokerResult<MessageHistory> {
        names::parse(topic, Collection::Topics)?;
        let seq: u64 = message_id.parse().map_err(|_| history_not_found())?;
        let state = self.lock();
        let reading = self.clock.read();
        let (events, dropped) = state
            .history
            .as_ref()
            .and_then(|journal| journal.get(seq))
            .ok_or_else(history_not_found)?;
        let published = events.iter().find_map(|event| match event {
            Recorded::Published {
                topic,
                ordering_key,
                size,
                attributes,
                traceparent,
                at,
            } => Some(PublishRecord {
                topic: topic.to_string(),
                at: reading.wall_of(*at),
                ordering_key: ordering_key.clone(),
                size: *size as u64,
                attributes: *attributes as u64,
                traceparent: traceparent.as_ref().map(StoredTraceparent::to_text),
            }),
            _ => None,
        });
        if published.as_ref().is_some_and(|p| p.topic != topic) {
            return Err(history_not_found());
        }
        Ok(MessageHistory {
            message_id: message_id.to_string(),
            published,
            events: events.iter().filter_map(|e| to_event(e, reading)).collect(),
            events_dropped: dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::UNIX_EPOCH;

    use baton_proto::pubsub::{DeadLetterPolicy, PubsubMessage, Subscription, Topic};

    use std::sync::Arc;

    use super::*;
    use crate::Clock;
    use crate::broker::journal::{MAX_EVENTS_PER_MESSAGE, TRACEPARENT_ATTRIBUTE};
    use crate::broker::leases::PullWait;

    fn start_wall() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn broker(history: usize) -> Arc<Broker> {
        Broker::builder()
            .clock(Clock::virtual_time(start_wall()))
            .message_history(history)
            .start()
            .unwrap()
    }

    fn setup(broker: &Broker, dead_letter: bool) -> (String, String) {
        let topic = "projects/p/topics/orders".to_string();
        for name in [&topic, &"projects/p/topics/dlq".to_string()] {
            broker
                .create_topic(Topic {
                    name: name.clone(),
                    ..Default::default()
                })
                .unwrap();
        }
        let sub = broker
            .create_subscription(Subscription {
                name: "projects/p/subscriptions/worker".into(),
                topic: topic.clone(),
                ack_deadline_seconds: 10,
                dead_letter_policy: dead_letter.then(|| DeadLetterPolicy {
                    dead_letter_topic: "projects/p/topics/dlq".into(),
                    max_delivery_attempts: 5,
                }),
                ..Default::default()
            })
            .unwrap()
            .name;
        (topic, sub)
    }

    async fn sleep(d: Duration) {
        tokio::time::sleep(d).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    async fn pull_one(broker: &Broker, sub: &str) -> Vec<String> {
        broker
            .pull(sub, 1, PullWait::Immediate)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.ack_id)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_nacked_expired_then_acked_message_tells_its_story() {
        let broker = broker(100);
        let (topic, sub) = setup(&broker, false);
        let mut message = PubsubMessage {
            data: b"hello".to_vec(),
            ordering_key: "k".into(),
            ..Default::default()
        };
        message.attributes.insert(
            TRACEPARENT_ATTRIBUTE.into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        let id = broker.publish(&topic, vec![message]).unwrap().remove(0);

        let acks = pull_one(&broker, &sub).await;
        sleep(Duration::from_millis(20)).await;
        broker.modify_ack_deadline(&sub, &acks, 0).unwrap();
        let acks = pull_one(&broker, &sub).await;
        broker.modify_ack_deadline(&sub, &acks, 15).unwrap();
        sleep(Duration::from_secs(15)).await;
        let acks = pull_one(&broker, &sub).await;
        sleep(Duration::from_millis(5)).await;
        broker.acknowledge(&sub, &acks).unwrap();

        let history = broker.message_history(&topic, &id).unwrap();
        let published = history.published.clone().unwrap();
        assert_eq!(published.at, start_wall());
        assert_eq!(published.ordering_key, "k");
        assert_eq!(published.attributes, 1);
        assert_eq!(
            published.trace_id(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        let kinds: Vec<&str> = history
            .events
            .iter()
            .map(|e| match e.kind {
                MessageEventKind::Delivered { .. } => "delivered",
                MessageEventKind::DeadlineModified { .. } => "modack",
                MessageEventKind::LeaseEnded {
                    reason: LeaseEnd::Nacked,
                    ..
                } => "nacked",
                MessageEventKind::LeaseEnded { .. } => "expired",
                MessageEventKind::Acked { .. } => "acked",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "delivered",
                "nacked",
                "delivered",
                "modack",
                "expired",
                "delivered",
                "acked"
            ]
        );
        assert_eq!(
            history.events[3].kind,
            MessageEventKind::DeadlineModified {
                attempt: 2,
                deadline: start_wall() + Duration::from_millis(15_020),
            }
        );
        assert_eq!(history.deliveries(&sub), 3);
        assert_eq!(
            history.explain(),
            [
                "worker: delivered 3 times: attempt 1 nacked by pull after 20 ms; \
              attempt 2 lease expired (pull) after 15 s; attempt 3 acked by pull after 5 ms"
            ]
        );
        assert!(
            broker
                .message_history("projects/p/topics/dlq", &id)
                .is_err()
        );
        assert!(broker.message_history(&topic, "999").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn dead_lettering_names_the_copy() {
        let broker = broker(100);
        let (topic, sub) = setup(&broker, true);
        let id = broker
            .publish(
                &topic,
                vec![PubsubMessage {
                    data: b"poison".to_vec(),
                    ..Default::default()
                }],
            )
            .unwrap()
            .remove(0);
        for _ in 0..5 {
            let acks = pull_one(&broker, &sub).await;
            broker.modify_ack_deadline(&sub, &acks, 0).unwrap();
        }
        let history = broker.message_history(&topic, &id).unwrap();
        let copy = history
            .events
            .iter()
            .find_map(|e| match &e.kind {
                MessageEventKind::DeadLetterCopy { topic, message_id } => {
                    Some((topic.clone(), message_id.clone()))
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(copy.0, "projects/p/topics/dlq");
        let copy_history = broker.message_history(&copy.0, &copy.1).unwrap();
        assert_eq!(copy_history.published.unwrap().topic, copy.0);
        let line = &history.explain()[0];
        assert!(
            line.ends_with("attempt 5 nacked by pull after 0 ms: max delivery attempts reached, dead-lettered to dlq"),
            "{line}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_journal_is_bounded_by_messages_and_events() {
        let broker = broker(10);
        let (topic, sub) = setup(&broker, false);
        let ids: Vec<String> = (0..25)
            .flat_map(|i| {
                broker
                    .publish(
                        &topic,
                        vec![PubsubMessage {
                            data: format!("m{i}").into_bytes(),
                            ..Default::default()
                        }],
                    )
                    .unwrap()
            })
            .collect();
        assert_eq!(broker.lock().history.as_ref().unwrap().len(), 10);
        assert!(broker.message_history(&topic, &ids[14]).is_err(), "evicted");
        assert!(broker.message_history(&topic, &ids[15]).is_ok());
        // Extending one lease over and over keeps MAX_EVENTS_PER_MESSAGE.
        let received = broker.pull(&sub, 25, PullWait::Immediate).await.unwrap();
        let last = received
            .iter()
            .find(|r| r.message.as_ref().unwrap().message_id == ids[24])
            .unwrap()
            .ack_id
            .clone();
        for _ in 0..200 {
            broker
                .modify_ack_deadline(&sub, std::slice::from_ref(&last), 30)
                .unwrap();
        }
        let history = broker.message_history(&topic, &ids[24]).unwrap();
        assert_eq!(history.events.len() + 1, MAX_EVENTS_PER_MESSAGE);
        assert_eq!(history.events_dropped, 102);
        assert_eq!(broker.lock().history.as_ref().unwrap().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_without_a_journal_records_nothing() {
        let broker = broker(0);
        let (topic, _) = setup(&broker, false);
        let id = broker
            .publish(
                &topic,
                vec![PubsubMessage {
                    data: b"x".to_vec(),
                    ..Default::default()
                }],
            )
            .unwrap()
            .remove(0);
        assert!(broker.lock().history.is_none());
        assert!(broker.message_history(&topic, &id).is_err());
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        assert_eq!(format_duration(Duration::from_millis(20)), "20 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(format_duration(Duration::from_secs(10)), "10 s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2 min 5 s");
    }
}
