//! The message journal's storage: what the delivery state machine records
//! about each message (in the operation's effects, filed under the lock by
//! [`super::commit`]), in a ring bounded by a number of messages. See
//! [`super::history`] for what it answers and why it is bounded the way it
//! is.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::observer::{DeliveryKind, LeaseEnd};

/// How many messages' histories a broker keeps unless told otherwise
/// ([`crate::BrokerBuilder::message_history`]).
pub const DEFAULT_MESSAGE_HISTORY: usize = 100_000;
/// Most events kept for one message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 100;
/// The attribute carrying a message's W3C trace context (the official
/// clients' `googclient_` carrier).
pub(crate) const TRACEPARENT_ATTRIBUTE: &str = "googclient_traceparent";

/// Something that happened to one message, as the state machine records it
/// (monotonic time; wall-clock time when read).
#[derive(Debug, Clone)]
pub(crate) enum Recorded {
    Published {
        topic: Arc<str>,
        ordering_key: String,
        size: usize,
        attributes: usize,
        traceparent: Option<String>,
        at: Instant,
    },
    Delivered {
        subscription: Arc<str>,
        attempt: i32,
        kind: DeliveryKind,
        stream: Option<u64>,
        at: Instant,
        lease_deadline: Instant,
    },
    DeadlineModified {
        subscription: Arc<str>,
        attempt: i32,
        at: Instant,
        deadline: Instant,
    },
    LeaseEnded {
        subscription: Arc<str>,
        attempt: i32,
        reason: LeaseEnd,
        at: Instant,
        available_at: Instant,
    },
    Acked {
        subscription: Arc<str>,
        attempt: i32,
        at: Instant,
    },
    DeadLettered {
        subscription: Arc<str>,
        attempts: i32,
        reason: LeaseEnd,
        dead_letter_topic: Arc<str>,
        at: Instant,
    },
    DeadLetterCopy {
        subscription: Arc<str>,
        topic: Arc<str>,
        message_id: String,
        at: Instant,
    },
}

/// One message's record.
#[derive(Debug, Default)]
struct Record {
    events: Vec<Recorded>,
    dropped: u64,
}

/// The journal; see the module docs.
#[derive(Debug)]
pub(crate) struct MessageJournal {
    capacity: usize,
    /// Keyed by sequence with a fast hasher: filing is under the
    /// broker's lock, once per event.
    records: FxHashMap<u64, Record>,
    /// Message sequences in the order their records were made: the oldest
    /// is evicted first.
    order: VecDeque<u64>,
    /// The highest sequence evicted so far: later events of messages at or
    /// below it are dropped rather than evicting newer records.
    evicted_up_to: u64,
}

impl MessageJournal {
    /// A journal keeping `capacity` messages' histories; `None` for 0.
    pub fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            capacity,
            records: FxHashMap::default(),
            order: VecDeque::new(),
            evicted_up_to: 0,
        })
    }

    /// Files events, in the order they happened.
    pub fn file(&mut self, events: Vec<(u64, Recorded)>) {
        for (seq, event) in events {
            let record = match self.records.get_mut(&seq) {
                Some(record) => record,
                None if seq <= self.evicted_up_to => continue,
                None => {
                    if self.order.len() >= self.capacity
                        && let Some(oldest) = self.order.pop_front()
                    {
                        self.records.remove(&oldest);
                        self.evicted_up_to = self.evicted_up_to.max(oldest);
                    }
                    self.order.push_back(seq);
                    self.records.entry(seq).or_default()
                }
            };
            if record.events.len() < MAX_EVENTS_PER_MESSAGE {
                // Grown one event at a time: most records are a message
                // waiting in a backlog (one event), and the default growth
                // would make room for four.
                record.events.reserve_exact(1);
                record.events.push(event);
            } else {
                record.dropped += 1;
            }
        }
    }

    /// The events recorded for message `seq` and how many more were
    /// dropped.
    pub fn get(&self, seq: u64) -> Option<(&[Recorded], u64)> {
        self.records
            .get(&seq)
            .map(|record| (record.events.as_slice(), record.dropped))
    }

    /// How many messages have a record.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

/// The trace context found on a message's `googclient_traceparent`.
pub(crate) fn traceparent(message: &baton_proto::pubsub::PubsubMessage) -> Option<String> {
    message.attributes.get(TRACEPARENT_ATTRIBUTE).cloned()
}
