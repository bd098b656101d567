//! Leases: handing messages out (Pull, StreamingPull streams with their
//! flow-control windows) and settling them (Acknowledge, ModifyAckDeadline).

use std::sync::{Arc, Weak};
use std::time::Duration;

use baton_proto::pubsub::ReceivedMessage;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Broker;
use super::delivery::StreamFlow;
use super::delivery::published_at;
use super::state::State;
use crate::error::{AckFailure, BrokerError, BrokerResult, ErrorCode};
use crate::held::HeldMessage;
use crate::leased::LeasedMessage;
use crate::names::{self, Collection};
use crate::observer::{DeliveryKind, LeaseEnd};
use crate::store::StoreOp;
use crate::validate;

/// Most messages one Pull answers with.
const MAX_PULL_MESSAGES: usize = 1000;

/// How long a unary Pull may wait for messages.
#[derive(Debug, Clone, Copy)]
pub enum PullWait {
    /// Answer at once, possibly empty (`return_immediately`).
    Immediate,
    /// Wait for messages until this instant, then answer empty.
    Until(Instant),
}

/// A registered StreamingPull stream: its flow-control window lives in the
/// broker until this is dropped. Leases it took outlive it.
#[derive(Debug)]
pub struct StreamRegistration {
    broker: Weak<Broker>,
    subscription: String,
    sub_uid: u64,
    id: u64,
    deadline: Duration,
    notify: Arc<Notify>,
    /// Whether the subscription delivers exactly once.
    pub exactly_once: bool,
    /// Whether the subscription delivers in ordering-key order.
    pub ordered: bool,
    /// How this stream's leases reach the subscriber, as the delivery
    /// observer reports it.
    kind: DeliveryKind,
}

impl StreamRegistration {
    /// The notifier signalled when this stream may have work.
    pub fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// The subscription's full name.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Marks how this stream's leases reach subscribers (StreamingPull unless
    /// told otherwise; push delivery says [`DeliveryKind::Push`]), so the
    /// delivery observer can tell them apart.
    pub fn set_delivery_kind(&mut self, kind: DeliveryKind) {
        self.kind = kind;
        if let Some(broker) = self.broker.upgrade()
            && let Some(sub) = broker
                .lock()
                .subscription_with_uid(&self.subscription, self.sub_uid)
            && let Some(flow) = sub.streams.get_mut(&self.id)
        {
            flow.push = kind == DeliveryKind::Push;
        }
    }

    /// Changes the deadline given to messages this stream leases from now on.
    pub fn set_deadline(&mut self, seconds: i32) {
        self.deadline = Duration::from_secs(u64::try_from(seconds.clamp(10, 600)).unwrap_or(10));
    }
}

impl Drop for StreamRegistration {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.upgrade() {
            let wall = broker.clock.wall();
            if let Some(sub) = broker
                .lock()
                .subscription_with_uid(&self.subscription, self.sub_uid)
                && let Some(flow) = sub.streams.remove(&self.id)
                && !flow.push
            {
                // The subscriber was active until its stream closed.
                sub.touch(wall);
            }
        }
    }
}

/// Who takes messages: a unary pull, or a registered stream.
#[derive(Debug, Clone, Copy)]
struct Taker {
    /// The stream and the uid of the subscription it registered with.
    stream: Option<(u64, u64)>,
    deadline: Option<Duration>,
    kind: DeliveryKind,
}

/// Parses `owner:N` ack ids for `subscription` (whose ids start with
/// `own_prefix`); `resolve` names the subscription of an `@uid` owner. The
/// error texts are what the service answers.
fn parse_ack_id(
    subscription: &str,
    own_prefix: &str,
    ack_id: &str,
    resolve: impl Fn(u64) -> Option<String>,
) -> BrokerResult<u64> {
    let invalid = || BrokerError::invalid(format!("Invalid ack id (ack_id={ack_id})"));
    let Some((owner, number)) = ack_id.rsplit_once(':') else {
        return Err(invalid());
    };
    let Ok(number) = number.parse::<u64>() else {
        return Err(invalid());
    };
    if owner == subscription || owner == own_prefix {
        return Ok(number);
    }
    let meant_for = if let Some(uid) = owner.strip_prefix('@') {
        u64::from_str_radix(uid, 16).ok().and_then(resolve)
    } else if names::parse(owner, Collection::Subscriptions).is_ok() {
        Some(owner.to_string())
    } else {
        None
    };
    match meant_for {
        Some(other) => Err(BrokerError::invalid(format!(
            "Subscription {subscription} received an invalid ack ID {ack_id}, meant for subscription: {other}"
        ))),
        None => Err(invalid()),
    }
}

/// Parses every ack id of a request for `subscription`: (ack number, index
/// in the request).
fn parse_ack_ids(
    state: &State,
    subscription: &str,
    ack_ids: &[String],
) -> BrokerResult<Vec<(u64, usize)>> {
    let own_prefix = state
        .subscriptions
        .get(subscription)
        .map(|s| s.ack_prefix.as_str())
        .unwrap_or(subscription);
    let resolve = |uid: u64| {
        state
            .subscriptions
            .values()
            .find(|s| s.uid == uid)
            .map(|s| s.config.name.clone())
    };
    ack_ids
        .iter()
        .enumerate()
        .map(|(index, ack_id)| {
            parse_ack_id(subscription, own_prefix, ack_id, resolve).map(|number| (number, index))
        })
        .collect()
}

/// The failure an exactly-once subscription reports for an ack id that is
/// not a current lease.
fn invalid_ack_id(ack_id: &str) -> AckFailure {
    AckFailure {
        ack_id: ack_id.to_string(),
        reason: "PERMANENT_FAILURE_INVALID_ACK_ID",
    }
}

fn settled(failures: Vec<AckFailure>) -> BrokerResult<()> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(BrokerError::ack_failures(failures))
    }
}

impl Broker {
    /// Acknowledge. Unknown or stale ids are ignored, as the service does;
    /// with exactly-once delivery only the current lease settles a message,
    /// and the others make the call fail with their ids listed (the valid
    /// ones are applied all the same).
    pub fn acknowledge(&self, name: &str, ack_ids: &[String]) -> BrokerResult<()> {
        if ack_ids.is_empty() {
            names::parse(name, Collection::Subscriptions)?;
            return Err(BrokerError::invalid("No ack ids specified."));
        }
        let mut txn = self.lock_subscription(name)?;
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let parsed = parse_ack_ids(&txn, name, ack_ids)?;
        let State {
            subscriptions,
            retained,
            fx,
            ..
        } = &mut *txn;
        let Some(sub) = subscriptions.get_mut(name) else {
            return Err(BrokerError::subscription_not_found());
        };
        sub.touch(wall);
        let exactly_once = sub.config.enable_exactly_once_delivery;
        let mut failures = Vec::new();
        let mut kept: Vec<(u64, Arc<HeldMessage>)> = Vec::new();
        for (number, index) in parsed {
            let seq = if exactly_once {
                sub.current_lease(number)
            } else {
                sub.acks.get(&number).copied()
            };
            match seq {
                Some(seq) => {
                    if let Some(message) = sub.acked(seq, now, fx)
                        && sub.config.retain_acked_messages
                    {
                        kept.push((seq, message));
                    }
                }
                None if exactly_once => failures.push(invalid_ack_id(&ack_ids[index])),
                None => {}
            }
        }
        if !kept.is_empty() {
            let uid = sub.uid;
            let store = retained.entry(uid).or_default();
            for (seq, message) in kept {
                let published = published_at(&message);
                store.insert(seq, (message, published));
                sub.arm_retention(published, fx);
                fx.journal(|| StoreOp::Retain {
                    subscription: uid,
                    seq,
                    published,
                });
            }
        }
        settled(failures)
    }

    /// ModifyAckDeadline: extends (or, with 0, ends) current leases. Failures
    /// on exactly-once subscriptions are reported like [`Self::acknowledge`].
    pub fn modify_ack_deadline(
        &self,
        name: &str,
        ack_ids: &[String],
        seconds: i32,
    ) -> BrokerResult<()> {
        names::parse(name, Collection::Subscriptions)?;
        if seconds < 0 {
            return Err(BrokerError::invalid("Ack deadline cannot be negative"));
        }
        if ack_ids.is_empty() {
            return Err(BrokerError::invalid("No ack ids specified"));
        }
        let seconds = seconds.min(validate::MAX_ACK_DEADLINE_SECS);
        let mut txn = self.lock_subscription(name)?;
        let now = self.clock.now();
        let until = now + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        let parsed = parse_ack_ids(&txn, name, ack_ids)?;
        let State {
            subscriptions, fx, ..
        } = &mut *txn;
        let Some(sub) = subscriptions.get_mut(name) else {
            return Err(BrokerError::subscription_not_found());
        };
        // A nack on a push subscription is push delivery's failed push,
        // which the real service does not count as activity.
        let pushed = sub
            .config
            .push_config
            .as_ref()
            .is_some_and(|p| !p.push_endpoint.is_empty());
        if seconds > 0 || !pushed {
            sub.touch(self.clock.wall());
        }
        let exactly_once = sub.config.enable_exactly_once_delivery;
        let mut failures = Vec::new();
        for (number, index) in parsed {
            let Some(seq) = sub.current_lease(number) else {
                if exactly_once {
                    failures.push(invalid_ack_id(&ack_ids[index]));
                }
                continue;
            };
            if seconds == 0 {
                sub.requeue(seq, now, LeaseEnd::Nacked, fx);
            } else {
                sub.extend(number, now, until, fx);
            }
        }
        settled(failures)
    }

    /// Leases up to `max` ready messages of `name` to `taker`; also the
    /// subscription's notifier, for waiting when there were none.
    fn take(
        &self,
        name: &str,
        max: usize,
        taker: Taker,
    ) -> BrokerResult<(Vec<LeasedMessage>, Arc<Notify>)> {
        if self.is_shutting_down() {
            return Err(BrokerError::shutting_down());
        }
        let mut txn = self.lock();
        // Read under the lock, so no message can become available after it.
        let now = self.clock.now();
        let State {
            subscriptions,
            next_ack,
            fx,
            ..
        } = &mut *txn;
        let Some(sub) = subscriptions.get_mut(name) else {
            return Err(BrokerError::subscription_not_found());
        };
        if let Some((_, uid)) = taker.stream
            && sub.uid != uid
        {
            return Err(BrokerError::subscription_not_found());
        }
        if sub.config.detached {
            return Err(BrokerError::new(
                ErrorCode::FailedPrecondition,
                "Subscription is detached.",
            ));
        }
        // Pulling is activity; push delivery's leases are not (its
        // successful pushes are, as acks).
        if taker.kind != DeliveryKind::Push {
            sub.touch(self.clock.wall());
        }
        let deadline = taker.deadline.unwrap_or_else(|| {
            Duration::from_secs(u64::try_from(sub.config.ack_deadline_seconds).unwrap_or(10))
        });
        let mut messages = sub.take(
            max,
            deadline,
            taker.stream.map(|(id, _)| id),
            next_ack,
            now,
            taker.kind,
            fx,
        );
        let notify = sub.notify.clone();
        let journal = txn.journal.clone();
        // The payloads are read outside the lock: a read from the file must
        // not hold up other subscriptions.
        drop(txn);
        if let Some(journal) = journal {
            journal
                .fill_payloads(messages.iter_mut())
                .map_err(super::storage_error)?;
        }
        Ok((messages, notify))
    }

    /// Pull: up to `max_messages`, waiting per `wait` when none is ready.
    pub async fn pull(
        &self,
        name: &str,
        max_messages: i32,
        wait: PullWait,
    ) -> BrokerResult<Vec<ReceivedMessage>> {
        names::parse(name, Collection::Subscriptions)?;
        if max_messages == 0 {
            return Err(BrokerError::invalid("No max_messages specified"));
        }
        drop(self.lock_subscription(name)?);
        // A negative count is answered empty, as the emulator does.
        let Ok(max) = usize::try_from(max_messages) else {
            return Ok(Vec::new());
        };
        let max = max.min(MAX_PULL_MESSAGES);
        let taker = Taker {
            stream: None,
            deadline: None,
            kind: DeliveryKind::Pull,
        };
        let mut shutdown = self.shutdown_signal();
        loop {
            let (messages, notify) = self.take(name, max, taker)?;
            if !messages.is_empty() {
                return Ok(received(messages));
            }
            let PullWait::Until(deadline) = wait else {
                return Ok(Vec::new());
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Re-check after registering so a publish in between is not lost.
            let (messages, _) = self.take(name, max, taker)?;
            if !messages.is_empty() {
                return Ok(received(messages));
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                () = async { let _ = shutdown.wait_for(|down| *down).await; } => return Err(BrokerError::shutting_down()),
            }
        }
    }

    /// Registers a StreamingPull stream with its flow-control window.
    pub fn register_stream(
        self: &Arc<Self>,
        name: &str,
        stream_ack_deadline_seconds: i32,
        max_outstanding_messages: i64,
        max_outstanding_bytes: i64,
    ) -> BrokerResult<StreamRegistration> {
        let id = names::parse(name, Collection::Subscriptions)?
            .id
            .to_string();
        let mut state = self.lock();
        let stream = state.next_stream;
        state.next_stream += 1;
        let Some(sub) = state.subscriptions.get_mut(name) else {
            return Err(BrokerError::not_found(format!(
                "Subscription does not exist (resource={id})"
            )));
        };
        sub.touch(self.clock.wall());
        sub.streams.insert(
            stream,
            StreamFlow {
                max_messages: max_outstanding_messages,
                max_bytes: max_outstanding_bytes,
                ..Default::default()
            },
        );
        let mut registration = StreamRegistration {
            broker: Arc::downgrade(self),
            subscription: name.to_string(),
            sub_uid: sub.uid,
            id: stream,
            deadline: Duration::from_secs(10),
            notify: sub.notify.clone(),
            exactly_once: sub.config.enable_exactly_once_delivery,
            ordered: sub.config.enable_message_ordering,
            kind: DeliveryKind::StreamingPull,
        };
        registration.set_deadline(stream_ack_deadline_seconds);
        Ok(registration)
    }

    /// Leases up to `max` messages to a stream, within its window, in the
    /// standard type.
    pub fn stream_take(
        &self,
        stream: &StreamRegistration,
        max: usize,
    ) -> BrokerResult<Vec<ReceivedMessage>> {
        self.stream_lease(stream, max).map(received)
    }

    /// [`Self::stream_take`], with the messages shared rather than copied:
    /// for a transport that encodes them itself.
    pub fn stream_lease(
        &self,
        stream: &StreamRegistration,
        max: usize,
    ) -> BrokerResult<Vec<LeasedMessage>> {
        let taker = Taker {
            stream: Some((stream.id, stream.sub_uid)),
            deadline: Some(stream.deadline),
            kind: stream.kind,
        };
        self.take(&stream.subscription, max, taker)
            .map(|(messages, _)| messages)
    }
}

/// Leased messages in the standard type.
fn received(messages: Vec<LeasedMessage>) -> Vec<ReceivedMessage> {
    messages
        .into_iter()
        .map(LeasedMessage::into_received)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ack_id_parsing() {
        let sub = "projects/p/subscriptions/sub-a";
        assert_eq!(
            parse_ack_id(sub, sub, "projects/p/subscriptions/sub-a:7", |_| None).unwrap(),
            7
        );
        assert_eq!(
            parse_ack_id(sub, sub, "garbage", |_| None)
                .unwrap_err()
                .message,
            "Invalid ack id (ack_id=garbage)"
        );
        assert!(
            parse_ack_id(sub, sub, "projects/p/subscriptions/other:1", |_| None)
                .unwrap_err()
                .message
                .contains("meant for subscription: projects/p/subscriptions/other")
        );
        assert!(
            parse_ack_id(sub, "@1f", "@2a:3", |uid| (uid == 0x2a)
                .then(|| "projects/p/subscriptions/long".to_string()))
            .unwrap_err()
            .message
            .contains("meant for subscription: projects/p/subscriptions/long")
        );
    }
}
