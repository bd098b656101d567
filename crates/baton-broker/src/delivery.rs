//! Delivery state of one subscription: which messages are ready, which are
//! leased to whom until when, and which ordering keys are held. Everything
//! here is synchronous and takes `now` explicitly, so it is easy to test; the
//! broker wraps it with locking, timers and wake-ups.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::pubsub::{PubsubMessage, ReceivedMessage, Subscription};

use crate::store::{Journal, StoreOp};
use crate::validate;

/// A message as one subscription holds it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub message: Arc<PubsubMessage>,
    pub size: usize,
    pub state: EntryState,
    /// Deliveries so far (1 after the first).
    pub attempts: i32,
    /// Every ack id number handed out for this message, so a stale id can
    /// still be recognised (and, outside exactly-once, still settle it).
    pub ack_ids: Vec<u64>,
    /// When the message last became ready (stored, put back, or out of a
    /// backoff): the start of its wait in the backlog, which the broker's
    /// delivery observer reports.
    pub available_since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryState {
    /// In the ready queue.
    Ready,
    /// Outstanding with a subscriber.
    Leased {
        ack: u64,
        deadline: Instant,
        stream: Option<u64>,
    },
    /// Waiting out a retry-policy backoff before it becomes ready again.
    Backoff { until: Instant },
}

/// Flow-control window of one StreamingPull stream.
#[derive(Debug, Default)]
pub(crate) struct StreamFlow {
    pub max_messages: i64,
    pub max_bytes: i64,
    pub outstanding_messages: i64,
    pub outstanding_bytes: i64,
}

impl StreamFlow {
    fn has_room(&self, next_size: usize) -> bool {
        let messages_ok = self.max_messages <= 0 || self.outstanding_messages < self.max_messages;
        // A message bigger than the whole byte window still goes out when
        // nothing is outstanding, otherwise it could never be delivered.
        let bytes_ok = self.max_bytes <= 0
            || self.outstanding_messages == 0
            || self.outstanding_bytes + i64::try_from(next_size).unwrap_or(i64::MAX)
                <= self.max_bytes;
        messages_ok && bytes_ok
    }
}

/// What a timer, nack or expiry asks the broker to do next with a message.
#[derive(Debug)]
pub(crate) enum Requeue {
    /// Ready again now.
    Ready,
    /// Ready at this time (retry backoff).
    Later(Instant),
    /// Delivery attempts are used up: forward to the dead-letter topic.
    DeadLetter(Arc<PubsubMessage>, i32),
}

/// One message leased by [`SubState::take`], for the delivery observer.
#[derive(Debug)]
pub(crate) struct Delivered {
    pub message: Arc<PubsubMessage>,
    /// Attempt number, counting from 1 (also without a dead-letter policy).
    pub attempt: i32,
    /// Start of the wait in the backlog.
    pub available_since: Instant,
}

/// What [`SubState::take`] leased.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The messages to hand out.
    pub messages: Vec<ReceivedMessage>,
    /// (deadline, ack) pairs the broker must arm lease timers for.
    pub timers: Vec<(Instant, u64)>,
    /// The same deliveries as `messages`, in the same order, for the observer.
    pub deliveries: Vec<Delivered>,
}

/// Longest ack id the official clients plan their request sizes for.
pub const MAX_ACK_ID_BYTES: usize = 164;

/// What goes before `:n` in the subscription's ack ids: its name when that
/// fits the ack-id budget (so a misrouted id names its subscription, as the
/// service's errors do), else a short `@uid` form.
pub(crate) fn ack_id_prefix(uid: u64, name: &str) -> String {
    // ':' plus up to 20 digits of a u64.
    if name.len() + 21 <= MAX_ACK_ID_BYTES {
        name.to_string()
    } else {
        format!("@{uid:x}")
    }
}

/// Delivery state of a subscription.
#[derive(Debug)]
pub(crate) struct SubState {
    pub uid: u64,
    /// See [`ack_id_prefix`].
    pub ack_prefix: String,
    pub config: Subscription,
    pub messages: HashMap<u64, Entry>,
    pub ready: VecDeque<u64>,
    /// Ack id number -> message sequence, for every live ack id.
    pub acks: HashMap<u64, u64>,
    pub streams: HashMap<u64, StreamFlow>,
    /// Outstanding messages per ordering key (ordered subscriptions only).
    pub held_keys: HashMap<String, usize>,
    pub notify: Arc<tokio::sync::Notify>,
    /// The parsed `filter`; messages it rejects are acked on arrival.
    pub filter: Option<crate::filter::Filter>,
    /// Where backlog changes are recorded when the broker is durable.
    pub journal: Option<Journal>,
}

/// Largest batch in one StreamingPull response, in bytes; clients accept
/// 20 MiB and a message can be 10 MB.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

impl SubState {
    pub fn new(uid: u64, config: Subscription) -> Self {
        Self {
            uid,
            ack_prefix: ack_id_prefix(uid, &config.name),
            config,
            messages: HashMap::new(),
            ready: VecDeque::new(),
            acks: HashMap::new(),
            streams: HashMap::new(),
            held_keys: HashMap::new(),
            notify: Arc::new(tokio::sync::Notify::new()),
            filter: None,
            journal: None,
        }
    }

    fn ordered(&self) -> bool {
        self.config.enable_message_ordering
    }

    pub fn dead_letter_attempts(&self) -> Option<i32> {
        self.config
            .dead_letter_policy
            .as_ref()
            .filter(|p| !p.dead_letter_topic.is_empty())
            .map(|p| p.max_delivery_attempts)
    }

    /// Adds a newly published message to the backlog unless the
    /// subscription's filter rejects it (then it counts as acked at once).
    pub fn offer(&mut self, seq: u64, message: Arc<PubsubMessage>, now: Instant) {
        if self
            .filter
            .as_ref()
            .is_some_and(|f| !f.matches(&message.attributes))
        {
            return;
        }
        self.enqueue(seq, message, now);
    }

    /// Adds a message to the backlog, available from `now`.
    pub fn enqueue(&mut self, seq: u64, message: Arc<PubsubMessage>, now: Instant) {
        if let Some(journal) = &self.journal {
            journal.push(StoreOp::Owe {
                subscription: self.uid,
                seq,
            });
        }
        let size = validate::message_size(&message);
        self.messages.insert(
            seq,
            Entry {
                message,
                size,
                state: EntryState::Ready,
                attempts: 0,
                ack_ids: Vec::new(),
                available_since: now,
            },
        );
        self.ready.push_back(seq);
    }

    /// Leases up to `max` ready messages, honouring ordering keys and the
    /// stream's flow-control window.
    pub fn take(
        &mut self,
        max: usize,
        deadline: Duration,
        stream: Option<u64>,
        next_ack: &mut u64,
        now: Instant,
    ) -> Taken {
        let mut out = Vec::new();
        let mut timers = Vec::new();
        let mut deliveries = Vec::new();
        let mut skipped = Vec::new();
        let mut batch_bytes = 0usize;
        let mut batch_keys: Vec<String> = Vec::new();
        let ordered = self.ordered();
        let report_attempts = self.dead_letter_attempts().is_some();
        let prefix = self.ack_prefix.clone();
        while out.len() < max {
            let Some(seq) = self.ready.pop_front() else {
                break;
            };
            let Some(entry) = self.messages.get(&seq) else {
                continue;
            };
            if entry.state != EntryState::Ready {
                continue;
            }
            let key = &entry.message.ordering_key;
            if ordered
                && !key.is_empty()
                && self.held_keys.get(key).is_some_and(|n| *n > 0)
                && !batch_keys.iter().any(|k| k == key)
            {
                skipped.push(seq);
                continue;
            }
            let size = entry.size;
            let flow_ok = stream
                .and_then(|id| self.streams.get(&id))
                .is_none_or(|flow| flow.has_room(size));
            if !flow_ok || (!out.is_empty() && batch_bytes + size > MAX_RESPONSE_BYTES) {
                self.ready.push_front(seq);
                break;
            }
            let ack = *next_ack;
            *next_ack += 1;
            let lease_deadline = now + deadline;
            let Some(entry) = self.messages.get_mut(&seq) else {
                continue;
            };
            entry.state = EntryState::Leased {
                ack,
                deadline: lease_deadline,
                stream,
            };
            entry.attempts += 1;
            entry.ack_ids.push(ack);
            self.acks.insert(ack, seq);
            if ordered && !entry.message.ordering_key.is_empty() {
                let key = entry.message.ordering_key.clone();
                *self.held_keys.entry(key.clone()).or_default() += 1;
                if !batch_keys.contains(&key) {
                    batch_keys.push(key);
                }
            }
            if let Some(flow) = stream.and_then(|id| self.streams.get_mut(&id)) {
                flow.outstanding_messages += 1;
                flow.outstanding_bytes += i64::try_from(size).unwrap_or(i64::MAX);
            }
            batch_bytes += size;
            timers.push((lease_deadline, ack));
            deliveries.push(Delivered {
                message: entry.message.clone(),
                attempt: entry.attempts,
                available_since: entry.available_since,
            });
            out.push(ReceivedMessage {
                ack_id: format!("{prefix}:{ack}"),
                message: Some((*entry.message).clone()),
                delivery_attempt: if report_attempts { entry.attempts } else { 0 },
            });
        }
        for seq in skipped.into_iter().rev() {
            self.ready.push_front(seq);
        }
        Taken {
            messages: out,
            timers,
            deliveries,
        }
    }

    /// Ends the lease of `seq` (ack, nack or expiry): frees its stream's
    /// window and its ordering key.
    fn release(&mut self, seq: u64) {
        let Some(entry) = self.messages.get(&seq) else {
            return;
        };
        if let EntryState::Leased { stream, .. } = entry.state {
            let size = i64::try_from(entry.size).unwrap_or(i64::MAX);
            if let Some(flow) = stream.and_then(|id| self.streams.get_mut(&id)) {
                flow.outstanding_messages -= 1;
                flow.outstanding_bytes -= size;
            }
            let key = &entry.message.ordering_key;
            if self.config.enable_message_ordering
                && !key.is_empty()
                && let Some(count) = self.held_keys.get_mut(key)
            {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.held_keys.remove(key);
                }
            }
        }
    }

    /// Settles `seq` for good.
    pub fn acknowledge(&mut self, seq: u64) {
        self.release(seq);
        if let Some(entry) = self.messages.remove(&seq) {
            for ack in entry.ack_ids {
                self.acks.remove(&ack);
            }
            if let Some(journal) = &self.journal {
                journal.push(StoreOp::Settle {
                    subscription: self.uid,
                    seq,
                });
            }
        }
    }

    /// Records a message's delivery attempts for the disk store (they count
    /// towards the dead-letter policy after a restart too).
    fn record_attempts(&self, seq: u64) {
        if let (Some(journal), Some(entry)) = (&self.journal, self.messages.get(&seq)) {
            journal.push(StoreOp::Attempted {
                subscription: self.uid,
                seq,
                attempts: entry.attempts,
            });
        }
    }

    /// A message restored from the disk store with the delivery attempts it
    /// had used.
    pub fn restore(&mut self, seq: u64, message: Arc<PubsubMessage>, attempts: u32, now: Instant) {
        self.enqueue(seq, message, now);
        if let Some(entry) = self.messages.get_mut(&seq) {
            entry.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        }
    }

    /// Empties the backlog and forgets every lease.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.ready.clear();
        self.acks.clear();
        self.held_keys.clear();
        for flow in self.streams.values_mut() {
            flow.outstanding_messages = 0;
            flow.outstanding_bytes = 0;
        }
        if let Some(journal) = &self.journal {
            journal.push(StoreOp::SettleAll {
                subscription: self.uid,
            });
        }
    }

    /// Decides what happens to a message whose lease ended without an ack.
    fn requeue_decision(&self, seq: u64, now: Instant) -> Option<Requeue> {
        let entry = self.messages.get(&seq)?;
        if let Some(max) = self.dead_letter_attempts()
            && entry.attempts >= max
        {
            return Some(Requeue::DeadLetter(entry.message.clone(), entry.attempts));
        }
        match &self.config.retry_policy {
            Some(policy) => {
                let min = policy
                    .minimum_backoff
                    .as_ref()
                    .and_then(validate::to_std)
                    .unwrap_or(Duration::from_secs(10));
                let max = policy
                    .maximum_backoff
                    .as_ref()
                    .and_then(validate::to_std)
                    .unwrap_or(Duration::from_secs(600));
                let exponent =
                    u32::try_from(entry.attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
                let backoff = min.saturating_mul(1u32 << exponent).min(max);
                if backoff.is_zero() {
                    Some(Requeue::Ready)
                } else {
                    Some(Requeue::Later(now + backoff))
                }
            }
            None => Some(Requeue::Ready),
        }
    }

    /// Puts a leased message back (nack or expiry). In an ordered
    /// subscription the later outstanding messages of its key come back too,
    /// and the key's messages stay in publish order in the queue.
    /// Returns a dead-letter request when attempts are used up, and the
    /// backoff timers to arm.
    pub fn requeue(&mut self, seq: u64, now: Instant) -> RequeueOutcome {
        let mut outcome = RequeueOutcome::default();
        let mut seqs = vec![seq];
        if self.ordered()
            && let Some(entry) = self.messages.get(&seq)
        {
            let key = entry.message.ordering_key.clone();
            if !key.is_empty() {
                let mut later: Vec<u64> = self
                    .messages
                    .iter()
                    .filter(|(s, e)| {
                        **s > seq
                            && e.message.ordering_key == key
                            && matches!(e.state, EntryState::Leased { .. })
                    })
                    .map(|(s, _)| *s)
                    .collect();
                later.sort_unstable();
                seqs.extend(later);
            }
        }
        for seq in seqs {
            let Some(decision) = self.requeue_decision(seq, now) else {
                continue;
            };
            self.release(seq);
            match decision {
                Requeue::Ready => {
                    if let Some(entry) = self.messages.get_mut(&seq) {
                        entry.state = EntryState::Ready;
                        entry.available_since = now;
                        outcome
                            .requeued
                            .push((entry.message.clone(), entry.attempts, now));
                    }
                    self.record_attempts(seq);
                    self.push_ready(seq);
                }
                Requeue::Later(until) => {
                    if let Some(entry) = self.messages.get_mut(&seq) {
                        entry.state = EntryState::Backoff { until };
                        outcome
                            .requeued
                            .push((entry.message.clone(), entry.attempts, until));
                    }
                    self.record_attempts(seq);
                    outcome.backoff_timers.push((until, seq));
                }
                Requeue::DeadLetter(message, attempts) => {
                    self.acknowledge(seq);
                    outcome.dead_letters.push((message, attempts));
                }
            }
        }
        outcome
    }

    /// Backoff over: the message is ready again.
    pub fn backoff_elapsed(&mut self, seq: u64, now: Instant) -> bool {
        match self.messages.get_mut(&seq) {
            Some(entry) if matches!(entry.state, EntryState::Backoff { until } if until <= now) => {
                if let EntryState::Backoff { until } = entry.state {
                    // Available since the backoff ended, not since the timer
                    // task got round to it.
                    entry.available_since = until;
                }
                entry.state = EntryState::Ready;
                self.push_ready(seq);
                true
            }
            _ => false,
        }
    }

    /// Queues `seq` at the back; in an ordered subscription a keyed message
    /// goes before any later message of the same key.
    fn push_ready(&mut self, seq: u64) {
        if self.ordered()
            && let Some(key) = self
                .messages
                .get(&seq)
                .map(|e| e.message.ordering_key.clone())
                .filter(|k| !k.is_empty())
        {
            let position = self.ready.iter().position(|other| {
                *other > seq
                    && self
                        .messages
                        .get(other)
                        .is_some_and(|e| e.message.ordering_key == key)
            });
            if let Some(position) = position {
                self.ready.insert(position, seq);
                return;
            }
        }
        self.ready.push_back(seq);
    }

    /// Sets a new deadline on the current lease `ack`; `None` when `ack` is
    /// not the current lease of an outstanding message.
    pub fn extend(&mut self, ack: u64, until: Instant) -> Option<()> {
        let seq = *self.acks.get(&ack)?;
        let entry = self.messages.get_mut(&seq)?;
        match &mut entry.state {
            EntryState::Leased {
                ack: current,
                deadline,
                ..
            } if *current == ack => {
                *deadline = until;
                Some(())
            }
            _ => None,
        }
    }

    /// The sequence of the message whose *current* lease is `ack`.
    pub fn current_lease(&self, ack: u64) -> Option<u64> {
        let seq = *self.acks.get(&ack)?;
        match self.messages.get(&seq)?.state {
            EntryState::Leased { ack: current, .. } if current == ack => Some(seq),
            _ => None,
        }
    }

    /// True when the lease `ack` is current and its deadline has passed.
    pub fn lease_expired(&self, ack: u64, now: Instant) -> Option<u64> {
        let seq = self.current_lease(ack)?;
        match self.messages.get(&seq)?.state {
            EntryState::Leased { deadline, .. } if deadline <= now => Some(seq),
            _ => None,
        }
    }

    /// Number of messages neither acked nor dead-lettered.
    pub fn backlog_len(&self) -> usize {
        self.messages.len()
    }
}

/// Side effects of a requeue the broker must carry out.
#[derive(Debug, Default)]
pub(crate) struct RequeueOutcome {
    pub dead_letters: Vec<(Arc<PubsubMessage>, i32)>,
    /// Messages put back: (message, attempt whose lease ended, available again at).
    pub requeued: Vec<(Arc<PubsubMessage>, i32, Instant)>,
    pub backoff_timers: Vec<(Instant, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &str, key: &str) -> Arc<PubsubMessage> {
        Arc::new(PubsubMessage {
            data: data.as_bytes().to_vec(),
            ordering_key: key.into(),
            ..Default::default()
        })
    }

    fn sub(ordered: bool) -> SubState {
        SubState::new(
            1,
            Subscription {
                name: "projects/p/subscriptions/s".into(),
                enable_message_ordering: ordered,
                ..Default::default()
            },
        )
    }

    #[test]
    fn nacked_message_goes_behind_later_ones() {
        let mut s = sub(false);
        let now = Instant::now();
        let mut next_ack = 1;
        for seq in 1..=3 {
            s.enqueue(seq, message(&seq.to_string(), ""), now);
        }
        let got = s
            .take(1, Duration::from_secs(10), None, &mut next_ack, now)
            .messages;
        assert_eq!(got.len(), 1);
        let seq = s.current_lease(1).unwrap();
        s.requeue(seq, now);
        let rest = s
            .take(10, Duration::from_secs(10), None, &mut next_ack, now)
            .messages;
        let data: Vec<_> = rest
            .iter()
            .map(|m| m.message.as_ref().unwrap().data.clone())
            .collect();
        assert_eq!(data, vec![b"2".to_vec(), b"3".to_vec(), b"1".to_vec()]);
    }

    #[test]
    fn ordering_key_is_held_while_outstanding_and_keeps_order_on_nack() {
        let mut s = sub(true);
        let now = Instant::now();
        let mut next_ack = 1;
        s.enqueue(1, message("a1", "a"), now);
        s.enqueue(2, message("a2", "a"), now);
        s.enqueue(3, message("b1", "b"), now);
        let first = s
            .take(1, Duration::from_secs(10), None, &mut next_ack, now)
            .messages;
        assert_eq!(first[0].message.as_ref().unwrap().data, b"a1".to_vec());
        // a2 is held behind a1; b1 may go.
        let second = s
            .take(10, Duration::from_secs(10), None, &mut next_ack, now)
            .messages;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].message.as_ref().unwrap().data, b"b1".to_vec());
        // nack a1: it must come before a2 again.
        s.requeue(1, now);
        let third = s
            .take(10, Duration::from_secs(10), None, &mut next_ack, now)
            .messages;
        let data: Vec<_> = third
            .iter()
            .map(|m| m.message.as_ref().unwrap().data.clone())
            .collect();
        assert_eq!(data, vec![b"a1".to_vec(), b"a2".to_vec()]);
    }

    #[test]
    fn flow_control_limits_outstanding_messages() {
        let mut s = sub(false);
        let now = Instant::now();
        let mut next_ack = 1;
        s.streams.insert(
            7,
            StreamFlow {
                max_messages: 2,
                ..Default::default()
            },
        );
        for seq in 1..=5 {
            s.enqueue(seq, message("x", ""), now);
        }
        let got = s
            .take(100, Duration::from_secs(10), Some(7), &mut next_ack, now)
            .messages;
        assert_eq!(got.len(), 2);
        let none = s
            .take(100, Duration::from_secs(10), Some(7), &mut next_ack, now)
            .messages;
        assert!(none.is_empty());
        s.acknowledge(s.current_lease(1).unwrap());
        let one = s
            .take(100, Duration::from_secs(10), Some(7), &mut next_ack, now)
            .messages;
        assert_eq!(one.len(), 1);
    }
}
