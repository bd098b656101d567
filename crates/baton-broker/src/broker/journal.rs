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
pub(crate) use crate::published::TRACEPARENT_ATTRIBUTE;

/// Something that happened to one message, as the state machine records it
/// (monotonic time; wall-clock time when read).
#[derive(Debug, Clone)]
pub(crate) enum Recorded {
    Published {
        topic: Arc<str>,
        ordering_key: String,
        size: usize,
        attributes: usize,
        traceparent: Option<StoredTraceparent>,
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

/// The events a delivered message usually adds to its record: the
/// delivery, the client's receipt modack and the ack.
const USUAL_DELIVERY_EVENTS: usize = 3;

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
                // A record starts with room for one event: most are a
                // message waiting in a backlog. Its second event is a
                // delivery, which usually brings two more (the receipt
                // modack and the ack): room for those at once, rather
                // than a reallocation per event.
                let room = match record.events.len() {
                    1 => USUAL_DELIVERY_EVENTS,
                    _ => 1,
                };
                record.events.reserve_exact(room);
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
pub(crate) fn traceparent(message: &crate::HeldMessage) -> Option<StoredTraceparent> {
    message
        .attributes()
        .get(TRACEPARENT_ATTRIBUTE)
        .map(StoredTraceparent::of)
}

/// A `googclient_traceparent` value as the history keeps it. The
/// canonical form every client writes (`00-`, 32, 16 and 2 lowercase hex
/// digits, dash-separated) is kept as its 25 bytes, so recording one
/// allocates nothing: the history records every published message. Any
/// other value is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredTraceparent {
    Canonical([u8; 25]),
    Other(Box<str>),
}

/// Where the three hex fields of a canonical `traceparent` start, and
/// how many bytes each encodes.
const TRACEPARENT_FIELDS: [(usize, usize); 3] = [(3, 16), (36, 8), (53, 1)];
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl StoredTraceparent {
    pub(crate) fn of(value: &str) -> Self {
        Self::canonical(value.as_bytes()).map_or_else(|| Self::Other(value.into()), Self::Canonical)
    }

    fn canonical(text: &[u8]) -> Option<[u8; 25]> {
        /// Each byte's value as a lowercase hex digit; 0xff for any other.
        const DIGITS: [u8; 256] = {
            let mut table = [0xff_u8; 256];
            let mut digit = 0;
            while digit < 16 {
                table[HEX_DIGITS[digit] as usize] = digit as u8;
                digit += 1;
            }
            table
        };
        if text.len() != 55 || !text.starts_with(b"00-") || text[35] != b'-' || text[52] != b'-' {
            return None;
        }
        // No branch per digit: the ids are random, so a branch on each
        // digit's kind would be mispredicted half the time.
        let mut out = [0_u8; 25];
        let mut invalid = 0_u8;
        let mut at = 0;
        for (start, len) in TRACEPARENT_FIELDS {
            for pair in text[start..start + 2 * len].chunks_exact(2) {
                let (high, low) = (DIGITS[usize::from(pair[0])], DIGITS[usize::from(pair[1])]);
                invalid |= high | low;
                out[at] = high << 4 | (low & 0x0f);
                at += 1;
            }
        }
        (invalid <= 0x0f).then_some(out)
    }

    /// The value as the message carried it.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Self::Other(text) => text.to_string(),
            Self::Canonical(bytes) => {
                let mut text = String::with_capacity(55);
                text.push_str("00");
                let mut at = 0;
                for (_, len) in TRACEPARENT_FIELDS {
                    text.push('-');
                    for byte in &bytes[at..at + len] {
                        text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
                        text.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
                    }
                    at += len;
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use std::sync::Arc;

    use tokio::time::Instant;

    use super::{MessageJournal, Recorded, StoredTraceparent, USUAL_DELIVERY_EVENTS};
    use crate::observer::DeliveryKind;

    #[test]
    fn a_waiting_message_holds_room_for_one_event_and_a_delivered_one_for_its_lifecycle() {
        let mut journal = MessageJournal::new(10).unwrap();
        let at = Instant::now();
        let published = || Recorded::Published {
            topic: Arc::from("t"),
            ordering_key: String::new(),
            size: 1,
            attributes: 0,
            traceparent: None,
            at,
        };
        let delivered = || Recorded::Delivered {
            subscription: Arc::from("s"),
            attempt: 1,
            kind: DeliveryKind::StreamingPull,
            stream: None,
            at,
            lease_deadline: at,
        };
        journal.file(vec![(1, published()), (2, published()), (2, delivered())]);
        assert_eq!(journal.records[&1].events.capacity(), 1);
        assert_eq!(
            journal.records[&2].events.capacity(),
            1 + USUAL_DELIVERY_EVENTS
        );
        journal.file(vec![(2, delivered()), (2, delivered())]);
        assert_eq!(journal.get(2).unwrap().0.len(), 4);
        assert_eq!(
            journal.records[&2].events.capacity(),
            1 + USUAL_DELIVERY_EVENTS,
            "the usual lifecycle fits without growing"
        );
    }

    proptest! {
        #[test]
        fn a_stored_traceparent_reads_back_as_it_came(
            value in prop_oneof![
                "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
                "0[0-9a-fA-F]-[0-9a-fA-F]{32}-[0-9a-fA-F]{16}-[0-9a-fA-F]{2}",
                ".{0,60}",
            ],
        ) {
            let stored = StoredTraceparent::of(&value);
            let canonical = value.len() == 55
                && value.starts_with("00-")
                && !value.bytes().any(|b| b.is_ascii_uppercase());
            prop_assert_eq!(matches!(stored, StoredTraceparent::Canonical(_)), canonical);
            prop_assert_eq!(stored.to_text(), value);
        }
    }
}
