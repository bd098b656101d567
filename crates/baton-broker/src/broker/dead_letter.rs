//! Dead-lettering: a message that ran out of delivery attempts is
//! republished on its subscription's dead-letter topic, with the attributes
//! the service adds to say where it came from.

use std::sync::Arc;

use baton_proto::pubsub::PubsubMessage;

use super::effects::DeadLetter;
use super::fanout;
use super::journal::Recorded;
use super::state::State;
use crate::clock::{Clock, format_rfc3339};
use crate::held::HeldMessage;
use crate::names::{self, Collection};
use crate::published::PublishedMessage;

/// Republishes `letters`, one publish per run of letters of the same
/// subscription. A missing dead-letter topic drops them (the service does
/// the same, logging a permission error).
pub(crate) fn forward(state: &mut State, letters: Vec<DeadLetter>, clock: &Clock) {
    let mut letters = letters.into_iter().peekable();
    while let Some(first) = letters.next() {
        let subscription = first.subscription.clone();
        let topic = first.dead_letter_topic.clone();
        let mut batch = vec![first];
        while let Some(next) = letters.next_if(|l| {
            Arc::ptr_eq(&l.subscription, &subscription) && l.dead_letter_topic == topic
        }) {
            batch.push(next);
        }
        let originals: Vec<Option<u64>> = batch
            .iter()
            .map(|letter| letter.message.message_id().parse().ok())
            .collect();
        // Under the lock, the payloads are still in the store (the letters'
        // settles are not written yet).
        let mut bodies: Vec<PubsubMessage> = batch.iter().map(|l| l.message.to_message()).collect();
        if let Some(journal) = &state.journal
            && let Err(error) = journal.fill_payloads(bodies.iter_mut())
        {
            tracing::warn!(%subscription, %error, "dead-lettering: reading payloads failed");
        }
        if state.journal.is_some() {
            keep_payloads(state, &subscription, &bodies);
        }
        let copies = source_copies(&subscription, batch, bodies);
        let copies = copies.into_iter().map(PublishedMessage::from).collect();
        match fanout::append(state, &topic, copies, clock.wall(), clock) {
            Ok(ids) => {
                let now = clock.now();
                for (original, id) in originals.into_iter().zip(ids) {
                    if let Some(seq) = original {
                        state.fx.record(seq, || Recorded::DeadLetterCopy {
                            subscription: subscription.clone(),
                            topic: topic.clone(),
                            message_id: id,
                            at: now,
                        });
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%subscription, dead_letter_topic = %topic, %error, "dead-lettering failed");
            }
        }
    }
}

/// The subscription's record of its recent dead letters keeps them whole:
/// once settled, the originals' payloads may leave the disk store.
fn keep_payloads(state: &mut State, subscription: &str, bodies: &[PubsubMessage]) {
    let Some(sub) = state.subscriptions.get_mut(subscription) else {
        return;
    };
    for body in bodies {
        let record = sub
            .recent_dead_letters
            .iter_mut()
            .rev()
            .find(|r| r.message.message_id() == body.message_id);
        if let Some(record) = record
            && record.message.payload_on_disk()
        {
            record.message = Arc::new(HeldMessage::new(body.clone()));
        }
    }
}

/// The copies to publish: new ids and publish times, plus the
/// `CloudPubSubDeadLetterSource*` attributes.
fn source_copies(
    subscription: &str,
    letters: Vec<DeadLetter>,
    bodies: Vec<PubsubMessage>,
) -> Vec<PubsubMessage> {
    let (project, short) = names::parse(subscription, Collection::Subscriptions)
        .map(|n| (n.project.to_string(), n.id.to_string()))
        .unwrap_or_default();
    letters
        .into_iter()
        .zip(bodies)
        .map(|(letter, mut copy)| {
            let publish_time = copy.publish_time.take();
            copy.message_id.clear();
            copy.attributes.insert(
                "CloudPubSubDeadLetterSourceDeliveryCount".into(),
                letter.attempts.to_string(),
            );
            copy.attributes.insert(
                "CloudPubSubDeadLetterSourceSubscription".into(),
                short.clone(),
            );
            copy.attributes.insert(
                "CloudPubSubDeadLetterSourceSubscriptionProject".into(),
                project.clone(),
            );
            if let Some(ts) = publish_time {
                copy.attributes.insert(
                    "CloudPubSubDeadLetterSourceTopicPublishTime".into(),
                    format_rfc3339(&ts),
                );
            }
            copy
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::wkt;

    #[test]
    fn copies_name_their_source() {
        let body = PubsubMessage {
            data: b"x".to_vec(),
            message_id: "7".into(),
            publish_time: Some(wkt::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            ..Default::default()
        };
        let message = Arc::new(HeldMessage::new(body.clone()));
        let copies = source_copies(
            "projects/proj/subscriptions/orders-worker",
            vec![DeadLetter {
                subscription: Arc::from("projects/proj/subscriptions/orders-worker"),
                dead_letter_topic: Arc::from("projects/p/topics/dlq"),
                message,
                attempts: 5,
            }],
            vec![body],
        );
        let copy = &copies[0];
        assert!(copy.message_id.is_empty() && copy.publish_time.is_none());
        assert_eq!(
            copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
            "5"
        );
        assert_eq!(
            copy.attributes["CloudPubSubDeadLetterSourceSubscription"],
            "orders-worker"
        );
        assert_eq!(
            copy.attributes["CloudPubSubDeadLetterSourceSubscriptionProject"],
            "proj"
        );
        assert_eq!(
            copy.attributes["CloudPubSubDeadLetterSourceTopicPublishTime"],
            "2023-11-14T22:13:20.123Z"
        );
    }
}
