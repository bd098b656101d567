//! Appending messages to a topic: ids and publish times, the topic's
//! retention log, snapshots that follow the topic, and the backlog of every
//! attached subscription.

use std::sync::Arc;
use std::time::SystemTime;

use crate::held::HeldMessage;
use crate::published::PublishedMessage;

use super::effects::Event;
use super::journal::{self, Recorded};
use super::state::{LoggedMessage, State};
use crate::clock::{Clock, timestamp};
use crate::error::{BrokerError, BrokerResult};
use crate::store::StoreOp;

/// Appends `messages` (already validated) to `topic` and fans them out;
/// their ids, in order. `received` is when the request arrived, for the
/// observer.
pub(crate) fn append(
    state: &mut State,
    topic: &str,
    messages: Vec<PublishedMessage>,
    received: SystemTime,
    clock: &Clock,
) -> BrokerResult<Vec<String>> {
    let reading = clock.read();
    let publish_time = timestamp(reading.wall);
    let State {
        topics,
        subscriptions,
        snapshots,
        next_seq,
        fx,
        ..
    } = state;
    let Some(topic_state) = topics.get_mut(topic) else {
        return Err(BrokerError::topic_not_found());
    };
    let mut ids = Vec::with_capacity(messages.len());
    let mut stored = Vec::with_capacity(messages.len());
    // With the disk store, the payloads go there and the broker keeps the
    // messages without them (moved apart, not copied).
    for mut message in messages {
        let seq = *next_seq;
        *next_seq += 1;
        message.message.message_id = seq.to_string();
        message.message.publish_time = Some(publish_time);
        ids.push(message.message.message_id.clone());
        let held = if fx.durable {
            let (held, data) = HeldMessage::split(message);
            let held = Arc::new(held);
            fx.journal(|| StoreOp::Message {
                seq,
                published: reading.wall,
                data: Arc::new(data),
                held: held.clone(),
            });
            held
        } else {
            Arc::new(HeldMessage::new(message))
        };
        stored.push((seq, held));
    }
    if topic_state.retention().is_some() {
        let key: Arc<str> = Arc::from(topic);
        for (seq, message) in &stored {
            topic_state.log.push_back(LoggedMessage {
                seq: *seq,
                message: message.clone(),
                published: reading.wall,
            });
            fx.journal(|| StoreOp::Log {
                topic: key.clone(),
                seq: *seq,
            });
        }
    }
    if fx.recording {
        let key: Arc<str> = Arc::from(topic);
        for (seq, message) in &stored {
            fx.record(*seq, || Recorded::Published {
                topic: key.clone(),
                ordering_key: message.ordering_key().to_string(),
                size: message.payload_size(),
                attributes: message.attributes().len(),
                traceparent: journal::traceparent(message),
                at: reading.now,
            });
        }
    }
    topic_state.prune_log(reading.wall, fx);
    topic_state.arm_retention(fx);
    topic_state.counters.messages_published += stored.len() as u64;
    topic_state.counters.bytes_published += stored
        .iter()
        .map(|(_, m)| m.payload_size() as u64)
        .sum::<u64>();
    topic_state.last_publish = Some(reading.wall);
    for (name, snapshot) in snapshots.iter_mut() {
        if snapshot.snapshot.topic == topic {
            for (seq, message) in &stored {
                snapshot.messages.insert(*seq, message.clone());
            }
            fx.journal(|| StoreOp::SnapshotHold {
                snapshot: name.as_str().into(),
                seqs: stored.iter().map(|(seq, _)| *seq).collect(),
            });
        }
    }
    for sub_name in &topic_state.subscriptions {
        if let Some(sub) = subscriptions.get_mut(sub_name) {
            if sub.config.detached {
                continue;
            }
            for (seq, message) in &stored {
                sub.offer(*seq, message.clone(), reading.now, fx);
            }
        }
    }
    fx.observe(|| Event::Published {
        topic: Arc::from(topic),
        messages: stored.into_iter().map(|(_, m)| m).collect(),
        received,
        stored: reading.wall,
    });
    Ok(ids)
}
