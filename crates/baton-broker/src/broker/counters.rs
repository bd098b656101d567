//! What the broker counts and remembers for its stats, kept in the
//! delivery state and topic state as things happen: per-subscription
//! counters, push delivery's results, recent dead letters, per-topic
//! counters. Plain data; [`super::stats`] reads it into the public views.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::held::HeldMessage;
use crate::observer::LeaseEnd;

/// How many dead-lettered messages each subscription remembers for
/// [`crate::Broker::recent_dead_letters`].
pub const RECENT_DEAD_LETTERS: usize = 50;

/// What happened to one subscription's messages since it was created (or
/// the broker started). Every count only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionCounters {
    /// Messages handed out (each delivery attempt of each message, by Pull,
    /// StreamingPull or push).
    pub delivery_attempts: u64,
    /// Messages settled by an Acknowledge (`subscription/ack_message_count`);
    /// push deliveries the endpoint acknowledged count too. Messages a filter
    /// rejects or that are dead-lettered do not.
    pub acked: u64,
    /// Leases ended by a nack (ModifyAckDeadline 0, or an ordered message
    /// that came back with a nacked earlier one of its key).
    pub nacked: u64,
    /// Leases ended by their ack deadline passing.
    pub expired: u64,
    /// Messages forwarded to the dead-letter topic
    /// (`subscription/dead_letter_message_count`).
    pub dead_lettered: u64,
}

/// How a push endpoint answered one push request, in the classes of Cloud
/// Monitoring's `subscription/push_request_count` `response_class` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushResponseClass {
    /// The endpoint acknowledged (102, 200, 201, 202 or 204).
    Ack,
    /// A 4xx status.
    RemoteServer4xx,
    /// A 5xx status.
    RemoteServer5xx,
    /// No answer within the ack deadline.
    DeadlineExceeded,
    /// No answer at all: connection refused, DNS, TLS, a bad URL.
    Unreachable,
    /// Any other status that does not acknowledge (1xx, 3xx...).
    Invalid,
}

impl PushResponseClass {
    /// Cloud Monitoring's label value: `ack`, `remote_server_4xx`,
    /// `remote_server_5xx`, `deadline_exceeded`, `unreachable` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::RemoteServer4xx => "remote_server_4xx",
            Self::RemoteServer5xx => "remote_server_5xx",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Unreachable => "unreachable",
            Self::Invalid => "invalid",
        }
    }

    /// Every class, in the order of [`PushCounts::get`]'s fields.
    pub const ALL: [Self; 6] = [
        Self::Ack,
        Self::RemoteServer4xx,
        Self::RemoteServer5xx,
        Self::DeadlineExceeded,
        Self::Unreachable,
        Self::Invalid,
    ];

    /// The class of an HTTP status the endpoint answered with, given the
    /// statuses that acknowledge.
    pub fn of_status(status: u16, acknowledges: bool) -> Self {
        match status {
            _ if acknowledges => Self::Ack,
            400..=499 => Self::RemoteServer4xx,
            500..=599 => Self::RemoteServer5xx,
            _ => Self::Invalid,
        }
    }
}

/// Push requests of one subscription by how the endpoint answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    /// Acknowledged.
    pub ack: u64,
    /// Answered 4xx.
    pub remote_server_4xx: u64,
    /// Answered 5xx.
    pub remote_server_5xx: u64,
    /// Timed out.
    pub deadline_exceeded: u64,
    /// Could not be sent or got no answer.
    pub unreachable: u64,
    /// Answered with another status.
    pub invalid: u64,
}

impl PushCounts {
    /// The count of one class.
    pub fn get(&self, class: PushResponseClass) -> u64 {
        match class {
            PushResponseClass::Ack => self.ack,
            PushResponseClass::RemoteServer4xx => self.remote_server_4xx,
            PushResponseClass::RemoteServer5xx => self.remote_server_5xx,
            PushResponseClass::DeadlineExceeded => self.deadline_exceeded,
            PushResponseClass::Unreachable => self.unreachable,
            PushResponseClass::Invalid => self.invalid,
        }
    }

    pub(crate) fn bump(&mut self, class: PushResponseClass) {
        let count = match class {
            PushResponseClass::Ack => &mut self.ack,
            PushResponseClass::RemoteServer4xx => &mut self.remote_server_4xx,
            PushResponseClass::RemoteServer5xx => &mut self.remote_server_5xx,
            PushResponseClass::DeadlineExceeded => &mut self.deadline_exceeded,
            PushResponseClass::Unreachable => &mut self.unreachable,
            PushResponseClass::Invalid => &mut self.invalid,
        };
        *count += 1;
    }

    /// Every push request counted.
    pub fn total(&self) -> u64 {
        PushResponseClass::ALL.iter().map(|c| self.get(*c)).sum()
    }
}

/// The result of one push request, as push delivery reports it with
/// [`crate::Broker::record_push_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// How the endpoint answered.
    pub class: PushResponseClass,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, in a few words (empty on success).
    pub detail: String,
}

/// The last push request's result and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// What the endpoint did.
    pub result: PushResult,
    /// When it was recorded (the broker's wall clock).
    pub at: SystemTime,
}

/// Push delivery's record of one subscription, kept in its delivery state.
#[derive(Debug, Clone, Default)]
pub(crate) struct PushRecord {
    pub counts: PushCounts,
    pub last: Option<PushOutcome>,
    pub last_ack: Option<SystemTime>,
    pub consecutive_failures: u64,
}

/// What happened on one topic since it was created (or the broker started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounters {
    /// Publish requests that stored their messages
    /// (`topic/send_message_operation_count` with an OK response).
    pub publish_operations: u64,
    /// Publish requests to the topic that were refused (invalid messages,
    /// schema mismatch).
    pub publish_errors: u64,
    /// Messages stored on the topic, including copies dead-lettered to it.
    pub messages_published: u64,
    /// Their payload bytes (`topic/byte_cost`-like).
    pub bytes_published: u64,
}

/// A dead-lettered message as a subscription remembers it.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterRecord {
    pub message: Arc<HeldMessage>,
    pub attempts: i32,
    pub reason: LeaseEnd,
    pub dead_letter_topic: Arc<str>,
    pub at: Instant,
}
