//! A hook that lets the server watch what happens to messages.
//!
//! The broker knows nothing of OpenTelemetry, yet the server wants to record
//! its own spans for every message: when it was received and stored, each
//! delivery attempt with the time it waited in the backlog, nacks, lease
//! expiries and dead-lettering. The broker reports those moments to a
//! [`DeliveryObserver`] set with [`crate::Broker::set_observer`]; the observer
//! turns them into whatever it likes.
//!
//! The broker calls the observer while holding its lock, so the calls arrive
//! in the order things happened. Implementations must therefore be cheap and
//! must never block or call back into the broker: copy what is needed (the
//! messages are `Arc`s) onto a queue and do the real work elsewhere.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::held::HeldMessage;

/// How a message was handed to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// Answer to a unary Pull.
    Pull,
    /// Sent on a StreamingPull stream.
    StreamingPull,
    /// Leased by the server's push delivery and POSTed to the endpoint.
    Push,
}

impl DeliveryKind {
    /// A short lowercase name: `pull`, `streaming_pull` or `push`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::StreamingPull => "streaming_pull",
            Self::Push => "push",
        }
    }
}

impl fmt::Display for DeliveryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lease ended without an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseEnd {
    /// The subscriber nacked (ModifyAckDeadline with 0), or an earlier
    /// message of the same ordering key was nacked and this one came back
    /// with it.
    Nacked,
    /// The ack deadline passed.
    Expired,
}

impl LeaseEnd {
    /// A short lowercase name: `nack` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nacked => "nack",
            Self::Expired => "expired",
        }
    }
}

/// One delivery attempt of one message.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// Full name of the subscription.
    pub subscription: &'a str,
    /// The message as stored (attributes exactly as published).
    pub message: &'a Arc<HeldMessage>,
    /// The ack id handed out with this delivery.
    pub ack_id: &'a str,
    /// Which attempt this is, counting from 1, whether or not the
    /// subscription reports attempts to its subscribers.
    pub attempt: i32,
    /// When the message became available for this delivery: published,
    /// put back after a nack or expiry, or out of a retry backoff.
    pub available_since: SystemTime,
    /// When it was handed out.
    pub delivered_at: SystemTime,
    /// Pull, StreamingPull or push.
    pub kind: DeliveryKind,
}

/// A lease that ended without an ack.
#[derive(Debug, Clone)]
pub struct Redelivery<'a> {
    /// Full name of the subscription.
    pub subscription: &'a str,
    /// The message.
    pub message: &'a Arc<HeldMessage>,
    /// The attempt whose lease ended.
    pub attempt: i32,
    /// Nack or expiry.
    pub reason: LeaseEnd,
    /// When the lease ended.
    pub at: SystemTime,
    /// When the message is available again (later than `at` while a retry
    /// policy's backoff runs).
    pub available_at: SystemTime,
}

/// A message that ran out of delivery attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Full name of the subscription it ran out on.
    pub subscription: &'a str,
    /// The original message (the copy on the dead-letter topic carries the
    /// extra `CloudPubSubDeadLetter*` attributes).
    pub message: &'a Arc<HeldMessage>,
    /// Delivery attempts made.
    pub attempts: i32,
    /// Why the last lease ended.
    pub reason: LeaseEnd,
    /// Full name of the dead-letter topic.
    pub dead_letter_topic: &'a str,
    /// When it was forwarded.
    pub at: SystemTime,
}

/// Receives the broker's message events; see the module docs for the rules
/// (cheap, non-blocking, never re-enter the broker). Every method does
/// nothing by default.
pub trait DeliveryObserver: Send + Sync + fmt::Debug {
    /// `messages` were received on `topic` at `received` (before validation
    /// and schema checks) and stored and fanned out at `stored`.
    fn published(
        &self,
        topic: &str,
        messages: &[Arc<HeldMessage>],
        received: SystemTime,
        stored: SystemTime,
    ) {
        let _ = (topic, messages, received, stored);
    }

    /// A message was handed to a subscriber.
    fn delivered(&self, delivery: Delivery<'_>) {
        let _ = delivery;
    }

    /// A lease ended without an ack and the message goes back to the backlog.
    fn redelivery(&self, redelivery: Redelivery<'_>) {
        let _ = redelivery;
    }

    /// A message ran out of attempts and is forwarded to the dead-letter topic.
    fn dead_lettered(&self, dead_letter: DeadLetter<'_>) {
        let _ = dead_letter;
    }
}
