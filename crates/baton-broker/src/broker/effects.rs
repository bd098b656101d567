//! What an operation leaves to be done once it has changed the broker's
//! state: changes for the disk store, lease and backoff timers to arm,
//! expiry deadlines (retention, inactivity, snapshot lifetimes) to arm,
//! waiters to wake, events for the delivery observer, messages to forward to
//! dead-letter topics, and whether the catalog changed.
//!
//! The state-changing primitives (a subscription's enqueue, take, ack,
//! requeue...) record their own effects here as they go, so an operation
//! built from them cannot forget one. When the operation lets go of the
//! broker's lock, [`super::commit`] carries all of them out in one place,
//! still under the lock so they happen in the order the changes were made.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::journal::Recorded;
use crate::held::HeldMessage;
use crate::observer::{DeliveryKind, LeaseEnd};
use crate::store::StoreOp;

/// What a timer does when it fires.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// The lease with this ack number ends unless it was settled or extended.
    LeaseExpiry { ack: u64 },
    /// The message with this sequence is out of its retry backoff.
    BackoffOver { seq: u64 },
}

/// What comes due at an [`Expiry`]: a rule of the real service that runs
/// on wall-clock time. Each is checked again when it fires (the state may
/// have moved on since it was armed), so a stale one does nothing.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ExpiryKind {
    /// The oldest message a subscription owes or retains reaches the
    /// subscription's `message_retention_duration`.
    SubscriptionRetention { uid: u64, name: Arc<str> },
    /// A subscription may have been inactive for its expiration policy's
    /// `ttl`.
    SubscriptionInactivity { uid: u64, name: Arc<str> },
    /// The oldest message a topic logs reaches the topic's retention.
    TopicRetention { topic: Arc<str> },
    /// A snapshot reaches its `expire_time`.
    Snapshot { name: Arc<str> },
}

/// An expiry deadline, in wall-clock time (the broker's clock): the timer
/// task turns it into a monotonic instant when it sleeps, and fires it once
/// the wall clock has passed `at`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Expiry {
    /// Earliest first: the heap is ordered by this field first.
    pub at: SystemTime,
    pub kind: ExpiryKind,
}

/// A timer of one subscription. Stale timers (a settled lease, a deleted and
/// re-created subscription) are skipped when they fire.
#[derive(Debug)]
pub(crate) struct Timer {
    pub at: Instant,
    /// The uid of the subscription it was armed for.
    pub sub_uid: u64,
    pub sub_name: Arc<str>,
    pub kind: TimerKind,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    /// Earliest first; the rest only makes the order total.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.sub_uid, &self.kind).cmp(&(other.at, other.sub_uid, &other.kind))
    }
}

/// Something the delivery observer hears about, in monotonic time (turned
/// into wall-clock time when it is reported).
#[derive(Debug)]
pub(crate) enum Event {
    Published {
        topic: Arc<str>,
        messages: Vec<Arc<HeldMessage>>,
        received: SystemTime,
        stored: SystemTime,
    },
    Delivered {
        subscription: Arc<str>,
        message: Arc<HeldMessage>,
        ack_id: String,
        attempt: i32,
        available_since: Instant,
        at: Instant,
        kind: DeliveryKind,
    },
    Redelivery {
        subscription: Arc<str>,
        message: Arc<HeldMessage>,
        attempt: i32,
        reason: LeaseEnd,
        at: Instant,
        available_at: Instant,
    },
    DeadLettered {
        subscription: Arc<str>,
        message: Arc<HeldMessage>,
        attempts: i32,
        reason: LeaseEnd,
        dead_letter_topic: Arc<str>,
        at: Instant,
    },
}

/// A message that ran out of delivery attempts, to be republished on its
/// subscription's dead-letter topic.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    pub subscription: Arc<str>,
    pub dead_letter_topic: Arc<str>,
    pub message: Arc<HeldMessage>,
    pub attempts: i32,
}

/// The effects of the operation in progress; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Whether changes are journalled (the broker has a disk store); set
    /// when the operation takes the lock.
    pub(super) durable: bool,
    /// Whether an observer listens; set when the operation takes the lock.
    pub(super) observing: bool,
    /// Whether the message journal records; set when the operation takes
    /// the lock.
    pub(super) recording: bool,
    /// Events for the message journal, by message sequence.
    pub(super) history: Vec<(u64, Recorded)>,
    pub(super) journal: Vec<StoreOp>,
    pub(super) timers: Vec<Timer>,
    pub(super) expiries: Vec<Expiry>,
    pub(super) wake: Vec<Arc<Notify>>,
    pub(super) events: Vec<Event>,
    pub(super) dead_letters: Vec<DeadLetter>,
    /// Catalog entries the operation changed (created, updated or deleted).
    /// A set: deleting a topic touches every subscription of it, and a
    /// list searched on each insert would make that quadratic.
    pub(super) catalog: BTreeSet<CatalogEntry>,
}

/// One entry of the catalog, named: what an operation changed, so that only
/// it is written to the disk store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CatalogEntry {
    Topic(String),
    Subscription(String),
    Snapshot(String),
    /// A schema with all its revisions (by its name without `@revision`).
    Schema(String),
    /// The IAM policy set on a resource (a deleted resource's policy goes
    /// with the resource's own entry).
    Policy(String),
}

impl Effects {
    /// Records a change for the disk store (built only when there is one).
    pub fn journal(&mut self, op: impl FnOnce() -> StoreOp) {
        if self.durable {
            self.journal.push(op());
        }
    }

    /// Arms a timer.
    pub fn arm(&mut self, timer: Timer) {
        self.timers.push(timer);
    }

    /// Arms an expiry deadline.
    pub fn expire_at(&mut self, at: SystemTime, kind: ExpiryKind) {
        self.expiries.push(Expiry { at, kind });
    }

    /// Wakes whoever waits on `notify` (pulls and streams of a subscription).
    pub fn wake(&mut self, notify: &Arc<Notify>) {
        if !self.wake.iter().any(|n| Arc::ptr_eq(n, notify)) {
            self.wake.push(notify.clone());
        }
    }

    /// Reports an event to the observer (built only when there is one).
    pub fn observe(&mut self, event: impl FnOnce() -> Event) {
        if self.observing {
            self.events.push(event());
        }
    }

    /// Records an event of message `seq` in the message journal (built only
    /// when there is one).
    pub fn record(&mut self, seq: u64, event: impl FnOnce() -> Recorded) {
        if self.recording {
            self.history.push((seq, event()));
        }
    }

    /// Forwards a message to a dead-letter topic.
    pub fn dead_letter(&mut self, letter: DeadLetter) {
        self.dead_letters.push(letter);
    }

    /// The catalog entry changed: it is journalled, and whoever follows the
    /// catalog (push delivery) hears of it.
    pub fn catalog_changed(&mut self, entry: CatalogEntry) {
        self.catalog.insert(entry);
    }

    /// Whether anything is left to carry out.
    pub(super) fn is_empty(&self) -> bool {
        self.journal.is_empty()
            && self.timers.is_empty()
            && self.expiries.is_empty()
            && self.wake.is_empty()
            && self.events.is_empty()
            && self.history.is_empty()
            && self.dead_letters.is_empty()
            && self.catalog.is_empty()
    }

    /// An empty set of effects with the same settings.
    pub(super) fn fresh(&self) -> Self {
        Self {
            durable: self.durable,
            observing: self.observing,
            recording: self.recording,
            ..Self::default()
        }
    }
}
