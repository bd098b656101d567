//! Delivery state of one subscription: which messages are ready, which are
//! leased to whom until when, and which ordering keys are held. Everything
//! here is synchronous and takes `now` explicitly, so it is easy to test.
//! Every change records its effects (journal, timers, wake-ups, observer
//! events, dead letters) in the [`Effects`] it is handed, which the broker
//! carries out when the operation ends.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::pubsub::Subscription;
use tokio::time::Instant;

use super::counters::{DeadLetterRecord, PushRecord, SubscriptionCounters};
use super::effects::{DeadLetter, Effects, Event, ExpiryKind, Timer, TimerKind};
use super::journal::Recorded;
use crate::clock::system_time;
use crate::held::HeldMessage;
use crate::leased::LeasedMessage;
use crate::observer::{DeliveryKind, LeaseEnd};
use crate::store::{Journal, MAX_READY_WINDOW, StoreError, StoreOp};
use crate::validate;

/// A message as one subscription holds it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub message: Arc<HeldMessage>,
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

/// The ordering key `seq` holds while it is outstanding or backing off (in
/// an ordered subscription): a reference into the message, so the ack path
/// copies no key. A free function so the subscription's other fields stay
/// free to change while it is held.
fn held_key(ordered: bool, messages: &HashMap<u64, Entry>, seq: u64) -> Option<&str> {
    if !ordered {
        return None;
    }
    messages
        .get(&seq)
        .map(|e| e.message.ordering_key())
        .filter(|key| !key.is_empty())
}

/// A message of a backlog that waits on disk, not in memory (see
/// [`SubState::spilled`]): 16 bytes, so ten million of them fit in 160 MB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpilledEntry {
    pub seq: u64,
    /// The size of the whole message, which the backlog's bytes count.
    pub size: u32,
    /// When it became ready, in milliseconds after the subscription's
    /// [`SubState::spill_epoch`].
    pub ready_after_ms: u32,
}

/// The part of a backlog that an earlier run left on disk beyond the
/// subscription's window (see [`SubState::disk_tail`]): the owed rows
/// after `after` and before `below`, read in by range as the window drains,
/// so a restart reads none of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiskTail {
    /// The last sequence read in; the rows after it wait on disk.
    pub after: u64,
    /// The first sequence of this opening: rows from here on are this
    /// run's, in memory.
    pub below: u64,
    /// When they became ready (the restart).
    pub since: Instant,
}

/// How much of a backlog an earlier run left on disk has not been read in
/// yet: added once the background count says how much there was, reduced
/// as it is read in (so it may be negative for a moment before the count
/// arrives).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TailSize {
    pub messages: i64,
    pub bytes: i64,
    /// The background count has been added.
    pub counted: bool,
}

/// Where the backlog beyond a subscription's window waits (the disk store),
/// and how large the window is: one value shared by every subscription,
/// their equal share of one budget ([`crate::store::ready_window`]), kept
/// up to date as subscriptions come and go.
#[derive(Debug, Clone)]
pub(crate) struct BacklogPager {
    pub journal: Journal,
    pub window: Arc<AtomicUsize>,
}

impl BacklogPager {
    pub fn new(journal: Journal, subscriptions: usize) -> Self {
        Self {
            journal,
            window: Arc::new(AtomicUsize::new(crate::store::ready_window(subscriptions))),
        }
    }

    /// Sets the window for `subscriptions` subscriptions.
    pub fn resize(&self, subscriptions: usize) {
        self.window
            .store(crate::store::ready_window(subscriptions), Ordering::Relaxed);
    }

    fn window(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }
}

/// Flow-control window of one StreamingPull stream.
#[derive(Debug, Default)]
pub(crate) struct StreamFlow {
    pub max_messages: i64,
    pub max_bytes: i64,
    pub outstanding_messages: i64,
    pub outstanding_bytes: i64,
    /// The stream is push delivery's, not a subscriber's: being open is no
    /// activity for the expiration policy (only successful pushes are).
    pub push: bool,
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
    DeadLetter(Arc<HeldMessage>, i32),
}

/// When `message` was published (its publish time, which the broker set).
pub(crate) fn published_at(message: &HeldMessage) -> SystemTime {
    message
        .publish_time()
        .map(system_time)
        .unwrap_or(UNIX_EPOCH)
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
    /// The subscription's full name, shared by its timers and events.
    pub name: Arc<str>,
    /// See [`ack_id_prefix`].
    pub ack_prefix: String,
    pub config: Subscription,
    pub messages: HashMap<u64, Entry>,
    pub ready: VecDeque<u64>,
    /// Ack id number -> message sequence, for every live ack id.
    pub acks: HashMap<u64, u64>,
    pub streams: HashMap<u64, StreamFlow>,
    /// Messages holding each ordering key: outstanding, or waiting out a
    /// retry backoff (ordered subscriptions only).
    pub held_keys: HashMap<String, usize>,
    pub notify: Arc<tokio::sync::Notify>,
    /// The parsed `filter`; messages it rejects are acked on arrival.
    pub filter: Option<crate::filter::Filter>,
    /// The sequences of `messages` in order, so the oldest unacked message
    /// is found without a scan (the stats' oldest unacked age).
    pub owed: BTreeSet<u64>,
    /// With the disk store: the rest of the backlog, beyond a window of
    /// ready messages ([`BacklogPager`]), oldest first. Its messages wait on
    /// disk and are read in (in sequence order, so ordering keys keep their
    /// order) as the window drains; all of them are newer than any message
    /// of `messages`. A deep backlog then costs 16 bytes a message here.
    pub spilled: VecDeque<SpilledEntry>,
    /// With the disk store, after a restart: the backlog the earlier run
    /// left beyond the window, still on disk and older than anything in
    /// `spilled`, so it is read in first. `None` once all of it is in.
    pub disk_tail: Option<DiskTail>,
    /// The size of that backlog not read in yet, for the stats.
    pub tail_size: Option<TailSize>,
    /// What `spilled` entries count their ready time from.
    pub spill_epoch: Option<Instant>,
    /// Where spilled messages are read back from; `None` (no disk store)
    /// keeps the whole backlog in memory.
    pub pager: Option<BacklogPager>,
    /// Bytes of the backlog (`messages` and `spilled`: their payload
    /// sizes), kept as they change.
    pub backlog_bytes: u64,
    /// How many of `messages` are leased right now.
    pub leased: usize,
    /// How many of `messages` wait out a retry backoff right now.
    pub backing_off: usize,
    /// What happened to the subscription's messages since it was created
    /// (or since the broker started).
    pub counters: SubscriptionCounters,
    /// Push delivery's results, as the server reports them.
    pub push: PushRecord,
    /// The last messages forwarded to the dead-letter topic, newest last,
    /// at most [`super::counters::RECENT_DEAD_LETTERS`].
    pub recent_dead_letters: VecDeque<DeadLetterRecord>,
    /// The deadline of the retention expiry armed for the oldest owed or
    /// retained message, if one is: a new one is armed only when an
    /// earlier one is needed, so enqueueing costs one comparison.
    pub retention_armed: Option<SystemTime>,
    /// The last activity the expiration policy counts (created, pulled,
    /// acked, modacked, a subscriber's stream closed, updated, sought).
    pub last_activity: SystemTime,
    /// The deadline of the inactivity expiry armed, if one is.
    pub inactivity_armed: Option<SystemTime>,
}

/// Largest batch in one StreamingPull response, in bytes; clients accept
/// 20 MiB and a message can be 10 MB.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

impl SubState {
    pub fn new(uid: u64, config: Subscription) -> Self {
        Self {
            uid,
            name: Arc::from(config.name.as_str()),
            ack_prefix: ack_id_prefix(uid, &config.name),
            config,
            messages: HashMap::new(),
            ready: VecDeque::new(),
            acks: HashMap::new(),
            streams: HashMap::new(),
            held_keys: HashMap::new(),
            notify: Arc::new(tokio::sync::Notify::new()),
            filter: None,
            owed: BTreeSet::new(),
            spilled: VecDeque::new(),
            disk_tail: None,
            tail_size: None,
            spill_epoch: None,
            pager: None,
            backlog_bytes: 0,
            leased: 0,
            backing_off: 0,
            counters: SubscriptionCounters::default(),
            push: PushRecord::default(),
            recent_dead_letters: VecDeque::new(),
            retention_armed: None,
            last_activity: UNIX_EPOCH,
            inactivity_armed: None,
        }
    }

    /// How long the subscription keeps unacked (and retained acked)
    /// messages, by publish time.
    pub fn retention(&self) -> Duration {
        self.config
            .message_retention_duration
            .as_ref()
            .and_then(validate::to_std)
            .unwrap_or(validate::DEFAULT_SUBSCRIPTION_RETENTION)
    }

    /// Arms the retention expiry of a message published at `published`,
    /// unless one as early is armed already.
    pub fn arm_retention(&mut self, published: SystemTime, fx: &mut Effects) {
        let at = published + self.retention();
        if self.retention_armed.is_none_or(|armed| at < armed) {
            self.retention_armed = Some(at);
            fx.expire_at(
                at,
                ExpiryKind::SubscriptionRetention {
                    uid: self.uid,
                    name: self.name.clone(),
                },
            );
        }
    }

    /// The publish time of the oldest message the subscription owes.
    pub fn oldest_owed(&self) -> Option<SystemTime> {
        match self.owed.first() {
            Some(seq) => self.messages.get(seq).map(|e| published_at(&e.message)),
            // The window is refilled whenever it runs low, so this is rare.
            None => {
                let pager = self.pager.as_ref()?;
                let first = match &self.disk_tail {
                    Some(tail) => {
                        // The first whose message the store still has.
                        let rows = pager
                            .journal
                            .load_owed(self.uid, tail.after, tail.below, 16);
                        rows.ok()?.into_iter().find_map(|(_, _, message)| message)
                    }
                    None => {
                        let first = self.spilled.front()?;
                        let loaded = pager.journal.load_messages(&[first.seq]).ok()?;
                        loaded.into_iter().flatten().next()
                    }
                };
                first.map(|m| published_at(&m))
            }
        }
    }

    /// Drops the owed messages whose retention has run out at `wall`
    /// (leased ones too: their leases end), oldest first, stopping at the
    /// first one still within it: the cost is what expires. How many went.
    pub fn drop_expired(&mut self, wall: SystemTime, fx: &mut Effects) -> usize {
        let retention = self.retention();
        let mut dropped = 0;
        loop {
            if self.owed.is_empty() {
                self.page_in();
            }
            let Some(seq) = self.owed.first().copied() else {
                break;
            };
            let expired = self
                .messages
                .get(&seq)
                .is_none_or(|e| published_at(&e.message) + retention <= wall);
            if !expired {
                break;
            }
            if self.acknowledge(seq, fx).is_none() {
                // Not in the backlog: only the index entry was left.
                self.owed.remove(&seq);
            }
            dropped += 1;
        }
        dropped
    }

    /// Something the expiration policy counts as activity happened at `wall`.
    pub fn touch(&mut self, wall: SystemTime) {
        self.last_activity = self.last_activity.max(wall);
    }

    /// Whether a subscriber (not push delivery) has a stream open: the
    /// subscription is active all the while.
    pub fn has_subscriber_stream(&self) -> bool {
        self.streams.values().any(|flow| !flow.push)
    }

    /// Arms the inactivity expiry (last activity + the expiration policy's
    /// ttl), unless the subscription never expires or one as early is armed.
    pub fn arm_inactivity(&mut self, fx: &mut Effects) {
        let Some(ttl) = validate::expiration_ttl(&self.config) else {
            return;
        };
        let at = self.last_activity + ttl;
        if self.inactivity_armed.is_none_or(|armed| at < armed) {
            self.inactivity_armed = Some(at);
            fx.expire_at(
                at,
                ExpiryKind::SubscriptionInactivity {
                    uid: self.uid,
                    name: self.name.clone(),
                },
            );
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

    /// The dead-letter topic, when the subscription forwards messages that
    /// ran out of attempts.
    fn dead_letter_topic(&self) -> Option<&str> {
        self.config
            .dead_letter_policy
            .as_ref()
            .map(|p| p.dead_letter_topic.as_str())
            .filter(|topic| !topic.is_empty())
    }

    fn timer(&self, at: Instant, kind: TimerKind) -> Timer {
        Timer {
            at,
            sub_uid: self.uid,
            sub_name: self.name.clone(),
            kind,
        }
    }

    /// Adds a newly published message to the backlog unless the
    /// subscription's filter rejects it (then it counts as acked at once).
    pub fn offer(&mut self, seq: u64, message: Arc<HeldMessage>, now: Instant, fx: &mut Effects) {
        if self
            .filter
            .as_ref()
            .is_some_and(|f| !f.matches(message.attributes()))
        {
            return;
        }
        self.enqueue(seq, message, now, fx);
    }

    /// Adds a message to the backlog, available from `now`.
    pub fn enqueue(&mut self, seq: u64, message: Arc<HeldMessage>, now: Instant, fx: &mut Effects) {
        let uid = self.uid;
        fx.journal(|| StoreOp::Owe {
            subscription: uid,
            seq,
        });
        fx.wake(&self.notify);
        self.arm_retention(published_at(&message), fx);
        if self.spills() {
            self.spill(seq, message.payload_size(), now);
            return;
        }
        self.hold_ready(seq, message, 0, now);
    }

    /// Whether a message joining the backlog now waits on disk: the window
    /// is full, or older messages wait there already (which must go first).
    fn spills(&self) -> bool {
        self.pager.as_ref().is_some_and(|pager| {
            !self.spilled.is_empty()
                || self.disk_tail.is_some()
                || self.ready_count() >= pager.window()
        })
    }

    /// Ready messages held in memory.
    fn ready_count(&self) -> usize {
        self.messages
            .len()
            .saturating_sub(self.leased + self.backing_off)
    }

    /// Queues `seq` (of `size` bytes, ready since `now`) on disk, behind
    /// the window.
    fn spill(&mut self, seq: u64, size: usize, now: Instant) {
        let epoch = *self.spill_epoch.get_or_insert(now);
        let after = now.saturating_duration_since(epoch).as_millis();
        self.spilled.push_back(SpilledEntry {
            seq,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            ready_after_ms: u32::try_from(after).unwrap_or(u32::MAX),
        });
        self.backlog_bytes += size as u64;
    }

    /// Holds `seq` in memory, ready, after `attempts` deliveries.
    fn hold_ready(&mut self, seq: u64, message: Arc<HeldMessage>, attempts: i32, since: Instant) {
        let size = message.payload_size();
        let replaced = self.messages.insert(
            seq,
            Entry {
                message,
                size,
                state: EntryState::Ready,
                attempts,
                ack_ids: Vec::new(),
                available_since: since,
            },
        );
        if let Some(old) = replaced {
            self.uncount(&old);
        }
        self.owed.insert(seq);
        self.backlog_bytes += size as u64;
        self.ready.push_back(seq);
    }

    /// Refills the window from the messages waiting on disk once it has run
    /// half empty, oldest first. A read that fails leaves them waiting (the
    /// next refill tries again); the store reports the failure to writers.
    fn page_in(&mut self) {
        // Called on every take and ack: the common case costs one check.
        if self.spilled.is_empty() && self.disk_tail.is_none() {
            return;
        }
        if self.disk_tail.is_some() && !self.page_in_tail() {
            return;
        }
        if self.spilled.is_empty() {
            return;
        }
        let ready = self.ready_count();
        let Some(window) = self.pager.as_ref().map(BacklogPager::window) else {
            return;
        };
        if ready >= window / 2 {
            return;
        }
        let Some(pager) = self.pager.clone() else {
            return;
        };
        let take = window.saturating_sub(ready).min(self.spilled.len());
        let entries: Vec<SpilledEntry> = self.spilled.drain(..take).collect();
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let loaded = match pager.journal.load_messages(&seqs) {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(subscription = %self.name, %error, "reading a backlog from the disk store failed");
                for entry in entries.into_iter().rev() {
                    self.spilled.push_front(entry);
                }
                return;
            }
        };
        let epoch = self.spill_epoch.unwrap_or_else(Instant::now);
        for (entry, message) in entries.into_iter().zip(loaded) {
            self.backlog_bytes = self.backlog_bytes.saturating_sub(u64::from(entry.size));
            let Some(message) = message else {
                // Settled for good meanwhile (it cannot be, while owed).
                tracing::warn!(subscription = %self.name, seq = entry.seq, "a message of the backlog is gone from the disk store");
                continue;
            };
            let since = epoch + Duration::from_millis(u64::from(entry.ready_after_ms));
            self.hold_ready(entry.seq, message, 0, since);
        }
    }

    /// Refills the window from the backlog an earlier run left on disk,
    /// once the window has run half empty: the next owed rows by one range
    /// read. Whether that backlog is all in (so `spilled`, which is newer,
    /// may follow).
    fn page_in_tail(&mut self) -> bool {
        let (Some(tail), Some(pager)) = (self.disk_tail, self.pager.clone()) else {
            return true;
        };
        let window = pager.window();
        let ready = self.ready_count();
        if ready >= window / 2 {
            return false;
        }
        let take = window - ready;
        let rows = match pager
            .journal
            .load_owed(self.uid, tail.after, tail.below, take)
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(subscription = %self.name, %error, "reading a backlog from the disk store failed");
                return false;
            }
        };
        let all_in = rows.len() < take;
        let mut after = tail.after;
        for (seq, attempts, message) in rows {
            after = seq;
            if let Some(size) = &mut self.tail_size {
                // The count took a lost message as one of no bytes.
                size.messages -= 1;
                size.bytes -= message
                    .as_ref()
                    .map_or(0, |m| i64::try_from(m.payload_size()).unwrap_or(i64::MAX));
            }
            let Some(message) = message else {
                tracing::warn!(subscription = %self.name, seq, "a message of the backlog is gone from the disk store");
                continue;
            };
            let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
            self.hold_ready(seq, message, attempts, tail.since);
        }
        if all_in {
            self.disk_tail = None;
            self.settle_tail_size();
        } else if let Some(tail) = &mut self.disk_tail {
            tail.after = after;
        }
        all_in
    }

    /// Forgets the size of the backlog left on disk once all of it is read
    /// in and counted (what is left is then zero).
    fn settle_tail_size(&mut self) {
        if self.disk_tail.is_none() && self.tail_size.is_some_and(|size| size.counted) {
            self.tail_size = None;
        }
    }

    /// Adds the background count of the backlog an earlier run left on
    /// disk beyond the window (`messages` of `bytes` in all).
    pub fn count_tail(&mut self, messages: u64, bytes: u64) {
        let Some(size) = &mut self.tail_size else {
            return;
        };
        if size.counted {
            return;
        }
        size.counted = true;
        size.messages += i64::try_from(messages).unwrap_or(i64::MAX);
        size.bytes += i64::try_from(bytes).unwrap_or(i64::MAX);
        self.settle_tail_size();
    }

    /// Bytes of the whole backlog, in memory and on disk.
    pub fn backlog_size(&self) -> u64 {
        let tail = self.tail_size.map_or(0, |size| size.bytes.max(0));
        self.backlog_bytes + u64::try_from(tail).unwrap_or(0)
    }

    /// Every message the subscription owes, in sequence order, with those
    /// waiting on disk read in (a snapshot captures them; a seek sorts
    /// them).
    pub fn unacked(&self) -> Result<Vec<(u64, Arc<HeldMessage>)>, StoreError> {
        let mut unacked: Vec<(u64, Arc<HeldMessage>)> = self
            .owed
            .iter()
            .filter_map(|seq| Some((*seq, self.messages.get(seq)?.message.clone())))
            .collect();
        if let Some(pager) = &self.pager {
            if let Some(tail) = &self.disk_tail {
                let rows = pager
                    .journal
                    .load_owed(self.uid, tail.after, tail.below, usize::MAX)?;
                unacked.extend(rows.into_iter().filter_map(|(seq, _, m)| Some((seq, m?))));
            }
            let seqs: Vec<u64> = self.spilled.iter().map(|e| e.seq).collect();
            for chunk in seqs.chunks(MAX_READY_WINDOW) {
                let loaded = pager.journal.load_messages(chunk)?;
                unacked.extend(
                    chunk
                        .iter()
                        .zip(loaded)
                        .filter_map(|(seq, m)| Some((*seq, m?))),
                );
            }
        }
        Ok(unacked)
    }

    /// The delivery attempts of every owed message, waiting on disk or not.
    #[cfg(test)]
    pub fn attempts(&self) -> Vec<(u64, i32)> {
        let held = self.messages.iter().map(|(seq, e)| (*seq, e.attempts));
        let on_disk = match (&self.disk_tail, &self.pager) {
            (Some(tail), Some(pager)) => pager
                .journal
                .load_owed(self.uid, tail.after, tail.below, usize::MAX)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let tail = on_disk
            .into_iter()
            .map(|(seq, attempts, _)| (seq, i32::try_from(attempts).unwrap_or(i32::MAX)));
        let spilled = self.spilled.iter().map(|e| (e.seq, 0));
        held.chain(tail).chain(spilled).collect()
    }

    /// Leases up to `max` ready messages, honouring ordering keys and the
    /// stream's flow-control window; `kind` says how they reach the
    /// subscriber, for the observer.
    #[allow(clippy::too_many_arguments)]
    pub fn take(
        &mut self,
        max: usize,
        deadline: Duration,
        stream: Option<u64>,
        next_ack: &mut u64,
        now: Instant,
        kind: DeliveryKind,
        fx: &mut Effects,
    ) -> Vec<LeasedMessage> {
        self.page_in();
        let mut out = Vec::new();
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
            let key = entry.message.ordering_key();
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
            self.leased += 1;
            self.counters.delivery_attempts += 1;
            self.acks.insert(ack, seq);
            if ordered && !entry.message.ordering_key().is_empty() {
                let key = entry.message.ordering_key().to_string();
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
            let received = LeasedMessage::new(
                format!("{prefix}:{ack}"),
                entry.message.clone(),
                if report_attempts { entry.attempts } else { 0 },
            );
            fx.observe(|| Event::Delivered {
                subscription: self.name.clone(),
                message: entry.message.clone(),
                ack_id: received.ack_id.clone(),
                attempt: entry.attempts,
                available_since: entry.available_since,
                at: now,
                kind,
            });
            fx.record(seq, || Recorded::Delivered {
                subscription: self.name.clone(),
                attempt: entry.attempts,
                kind,
                stream,
                at: now,
                lease_deadline,
            });
            fx.arm(Timer {
                at: lease_deadline,
                sub_uid: self.uid,
                sub_name: self.name.clone(),
                kind: TimerKind::LeaseExpiry { ack },
            });
            out.push(received);
        }
        for seq in skipped.into_iter().rev() {
            self.ready.push_front(seq);
        }
        out
    }

    /// Ends the lease of `seq` (ack, nack or expiry): frees its stream's
    /// window and its ordering key, so waiting streams may take more. A
    /// message waiting out a backoff holds its key too; acking it frees it.
    fn release(&mut self, seq: u64, fx: &mut Effects) {
        let Some(entry) = self.messages.get(&seq) else {
            return;
        };
        match entry.state {
            EntryState::Leased { stream, .. } => {
                let size = i64::try_from(entry.size).unwrap_or(i64::MAX);
                if let Some(flow) = stream.and_then(|id| self.streams.get_mut(&id)) {
                    flow.outstanding_messages -= 1;
                    flow.outstanding_bytes -= size;
                }
                self.leased = self.leased.saturating_sub(1);
            }
            EntryState::Backoff { .. } => {
                self.backing_off = self.backing_off.saturating_sub(1);
            }
            EntryState::Ready => return,
        }
        fx.wake(&self.notify);
        self.unhold_key(seq);
    }

    /// `seq` holds its ordering key: later messages of the key wait.
    fn hold_key(&mut self, seq: u64) {
        let Some(key) = held_key(self.ordered(), &self.messages, seq) else {
            return;
        };
        match self.held_keys.get_mut(key) {
            Some(count) => *count += 1,
            None => {
                let key = key.to_owned();
                self.held_keys.insert(key, 1);
            }
        }
    }

    /// `seq` no longer holds its ordering key.
    fn unhold_key(&mut self, seq: u64) {
        let Some(key) = held_key(self.ordered(), &self.messages, seq) else {
            return;
        };
        if let Some(count) = self.held_keys.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                let key = key.to_owned();
                self.held_keys.remove(&key);
            }
        }
    }

    /// Settles `seq` for good; the message it was, if it was still owed.
    pub fn acknowledge(&mut self, seq: u64, fx: &mut Effects) -> Option<Arc<HeldMessage>> {
        self.release(seq, fx);
        let entry = self.messages.remove(&seq)?;
        for ack in &entry.ack_ids {
            self.acks.remove(ack);
        }
        self.owed.remove(&seq);
        self.backlog_bytes = self.backlog_bytes.saturating_sub(entry.size as u64);
        let uid = self.uid;
        fx.journal(|| StoreOp::Settle {
            subscription: uid,
            seq,
        });
        self.page_in();
        Some(entry.message)
    }

    /// Settles `seq` because the subscriber acked it (rather than because it
    /// was dead-lettered): counted and recorded in the message's history.
    pub fn acked(&mut self, seq: u64, now: Instant, fx: &mut Effects) -> Option<Arc<HeldMessage>> {
        let attempt = self.messages.get(&seq)?.attempts;
        self.counters.acked += 1;
        fx.record(seq, || Recorded::Acked {
            subscription: self.name.clone(),
            attempt,
            at: now,
        });
        self.acknowledge(seq, fx)
    }

    /// Records a message's delivery attempts for the disk store (they count
    /// towards the dead-letter policy after a restart too).
    fn record_attempts(&self, seq: u64, fx: &mut Effects) {
        if let Some(entry) = self.messages.get(&seq) {
            let (uid, attempts) = (self.uid, entry.attempts);
            fx.journal(|| StoreOp::Attempted {
                subscription: uid,
                seq,
                attempts,
            });
        }
    }

    /// A message of the window restored from the disk store, with the
    /// delivery attempts it had used, ready from `now`.
    pub fn restore(
        &mut self,
        seq: u64,
        message: Arc<HeldMessage>,
        attempts: u32,
        now: Instant,
        fx: &mut Effects,
    ) {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.arm_retention(published_at(&message), fx);
        self.hold_ready(seq, message, attempts, now);
    }

    /// Notes that the backlog goes on on disk after `after` (up to this
    /// opening's first sequence, `below`): read in as the window drains,
    /// counted in the background.
    pub fn restore_tail(&mut self, after: u64, below: u64, now: Instant) {
        self.disk_tail = Some(DiskTail {
            after,
            below,
            since: now,
        });
        self.tail_size = Some(TailSize::default());
    }

    /// Takes a replaced entry out of the backlog's running counts (its
    /// lease or backoff, if any, no longer exists).
    fn uncount(&mut self, old: &Entry) {
        self.backlog_bytes = self.backlog_bytes.saturating_sub(old.size as u64);
        match old.state {
            EntryState::Leased { .. } => self.leased = self.leased.saturating_sub(1),
            EntryState::Backoff { .. } => self.backing_off = self.backing_off.saturating_sub(1),
            EntryState::Ready => {}
        }
    }

    /// Empties the backlog and forgets every lease.
    pub fn clear(&mut self, fx: &mut Effects) {
        self.messages.clear();
        self.owed.clear();
        self.spilled.clear();
        self.disk_tail = None;
        self.tail_size = None;
        self.backlog_bytes = 0;
        self.leased = 0;
        self.backing_off = 0;
        self.ready.clear();
        self.acks.clear();
        self.held_keys.clear();
        for flow in self.streams.values_mut() {
            flow.outstanding_messages = 0;
            flow.outstanding_bytes = 0;
        }
        let uid = self.uid;
        fx.journal(|| StoreOp::SettleAll { subscription: uid });
        fx.wake(&self.notify);
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

    /// Puts a leased message back (nack or expiry, `reason`). In an ordered
    /// subscription the later outstanding messages of its key come back too,
    /// and the key's messages stay in publish order in the queue. A message
    /// whose attempts are used up goes to the dead-letter topic instead, and
    /// one under a retry policy waits out its backoff first.
    pub fn requeue(&mut self, seq: u64, now: Instant, reason: LeaseEnd, fx: &mut Effects) {
        let mut seqs = vec![seq];
        if self.ordered()
            && let Some(entry) = self.messages.get(&seq)
        {
            let key = entry.message.ordering_key().to_string();
            if !key.is_empty() {
                let mut later: Vec<u64> = self
                    .messages
                    .iter()
                    .filter(|(s, e)| {
                        **s > seq
                            && e.message.ordering_key() == key
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
            match reason {
                LeaseEnd::Nacked => self.counters.nacked += 1,
                LeaseEnd::Expired => self.counters.expired += 1,
            }
            let available_at = match decision {
                Requeue::Ready => now,
                Requeue::Later(until) => until,
                Requeue::DeadLetter(message, attempts) => {
                    // Acknowledging ends the lease (releases it once).
                    self.acknowledge(seq, fx);
                    if let Some(topic) = self.dead_letter_topic() {
                        let topic: Arc<str> = Arc::from(topic);
                        self.counters.dead_lettered += 1;
                        fx.record(seq, || Recorded::DeadLettered {
                            subscription: self.name.clone(),
                            attempts,
                            reason,
                            dead_letter_topic: topic.clone(),
                            at: now,
                        });
                        if self.recent_dead_letters.len() >= super::counters::RECENT_DEAD_LETTERS {
                            self.recent_dead_letters.pop_front();
                        }
                        self.recent_dead_letters.push_back(DeadLetterRecord {
                            message: message.clone(),
                            attempts,
                            reason,
                            dead_letter_topic: topic.clone(),
                            at: now,
                        });
                        fx.observe(|| Event::DeadLettered {
                            subscription: self.name.clone(),
                            message: message.clone(),
                            attempts,
                            reason,
                            dead_letter_topic: topic.clone(),
                            at: now,
                        });
                        fx.dead_letter(DeadLetter {
                            subscription: self.name.clone(),
                            dead_letter_topic: topic,
                            message,
                            attempts,
                        });
                    }
                    continue;
                }
            };
            self.release(seq, fx);
            let Some(entry) = self.messages.get_mut(&seq) else {
                continue;
            };
            entry.state = if available_at > now {
                self.backing_off += 1;
                EntryState::Backoff {
                    until: available_at,
                }
            } else {
                entry.available_since = now;
                EntryState::Ready
            };
            fx.record(seq, || Recorded::LeaseEnded {
                subscription: self.name.clone(),
                attempt: entry.attempts,
                reason,
                at: now,
                available_at,
            });
            fx.observe(|| Event::Redelivery {
                subscription: self.name.clone(),
                message: entry.message.clone(),
                attempt: entry.attempts,
                reason,
                at: now,
                available_at,
            });
            self.record_attempts(seq, fx);
            if available_at > now {
                // Later messages of its key must not overtake it meanwhile.
                self.hold_key(seq);
                fx.arm(self.timer(available_at, TimerKind::BackoffOver { seq }));
            } else {
                self.push_ready(seq);
                fx.wake(&self.notify);
            }
        }
    }

    /// Backoff over: the message is ready again (false when it was not
    /// waiting out a backoff that has ended).
    pub fn backoff_elapsed(&mut self, seq: u64, now: Instant, fx: &mut Effects) -> bool {
        match self.messages.get_mut(&seq) {
            Some(entry) if matches!(entry.state, EntryState::Backoff { until } if until <= now) => {
                if let EntryState::Backoff { until } = entry.state {
                    // Available since the backoff ended, not since the timer
                    // task got round to it.
                    entry.available_since = until;
                }
                entry.state = EntryState::Ready;
                self.backing_off = self.backing_off.saturating_sub(1);
                self.unhold_key(seq);
                self.push_ready(seq);
                fx.wake(&self.notify);
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
                .map(|e| e.message.ordering_key().to_string())
                .filter(|k| !k.is_empty())
        {
            let position = self.ready.iter().position(|other| {
                *other > seq
                    && self
                        .messages
                        .get(other)
                        .is_some_and(|e| e.message.ordering_key() == key)
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
    pub fn extend(
        &mut self,
        ack: u64,
        now: Instant,
        until: Instant,
        fx: &mut Effects,
    ) -> Option<()> {
        let seq = *self.acks.get(&ack)?;
        let entry = self.messages.get_mut(&seq)?;
        match &mut entry.state {
            EntryState::Leased {
                ack: current,
                deadline,
                ..
            } if *current == ack => {
                *deadline = until;
                let attempt = entry.attempts;
                fx.record(seq, || Recorded::DeadlineModified {
                    subscription: self.name.clone(),
                    attempt,
                    at: now,
                    deadline: until,
                });
                fx.arm(self.timer(until, TimerKind::LeaseExpiry { ack }));
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
        let tail = self.tail_size.map_or(0, |size| size.messages.max(0));
        self.messages.len() + self.spilled.len() + usize::try_from(tail).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use baton_proto::pubsub::PubsubMessage;

    fn message(data: &str, key: &str) -> Arc<HeldMessage> {
        Arc::new(HeldMessage::new(PubsubMessage {
            data: data.as_bytes().to_vec(),
            ordering_key: key.into(),
            ..Default::default()
        }))
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

    fn take(
        s: &mut SubState,
        max: usize,
        stream: Option<u64>,
        next_ack: &mut u64,
    ) -> Vec<LeasedMessage> {
        let mut fx = Effects::default();
        s.take(
            max,
            Duration::from_secs(10),
            stream,
            next_ack,
            Instant::now(),
            DeliveryKind::Pull,
            &mut fx,
        )
    }

    fn datas(messages: &[LeasedMessage]) -> Vec<Vec<u8>> {
        messages.iter().map(|m| m.data().to_vec()).collect()
    }

    #[test]
    fn nacked_message_goes_behind_later_ones() {
        let mut s = sub(false);
        let mut fx = Effects::default();
        let now = Instant::now();
        let mut next_ack = 1;
        for seq in 1..=3 {
            s.enqueue(seq, message(&seq.to_string(), ""), now, &mut fx);
        }
        assert_eq!(take(&mut s, 1, None, &mut next_ack).len(), 1);
        let seq = s.current_lease(1).unwrap();
        s.requeue(seq, now, LeaseEnd::Nacked, &mut fx);
        let rest = take(&mut s, 10, None, &mut next_ack);
        assert_eq!(
            datas(&rest),
            vec![b"2".to_vec(), b"3".to_vec(), b"1".to_vec()]
        );
    }

    #[test]
    fn ordering_key_is_held_while_outstanding_and_keeps_order_on_nack() {
        let mut s = sub(true);
        let mut fx = Effects::default();
        let now = Instant::now();
        let mut next_ack = 1;
        s.enqueue(1, message("a1", "a"), now, &mut fx);
        s.enqueue(2, message("a2", "a"), now, &mut fx);
        s.enqueue(3, message("b1", "b"), now, &mut fx);
        let first = take(&mut s, 1, None, &mut next_ack);
        assert_eq!(datas(&first), vec![b"a1".to_vec()]);
        // a2 is held behind a1; b1 may go.
        let second = take(&mut s, 10, None, &mut next_ack);
        assert_eq!(datas(&second), vec![b"b1".to_vec()]);
        // nack a1: it must come before a2 again.
        s.requeue(1, now, LeaseEnd::Nacked, &mut fx);
        let third = take(&mut s, 10, None, &mut next_ack);
        assert_eq!(datas(&third), vec![b"a1".to_vec(), b"a2".to_vec()]);
    }

    #[test]
    fn flow_control_limits_outstanding_messages() {
        let mut s = sub(false);
        let mut fx = Effects::default();
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
            s.enqueue(seq, message("x", ""), now, &mut fx);
        }
        assert_eq!(take(&mut s, 100, Some(7), &mut next_ack).len(), 2);
        assert!(take(&mut s, 100, Some(7), &mut next_ack).is_empty());
        s.acknowledge(s.current_lease(1).unwrap(), &mut fx);
        assert_eq!(take(&mut s, 100, Some(7), &mut next_ack).len(), 1);
    }

    #[test]
    fn every_change_records_its_effects() {
        let mut s = sub(false);
        let mut fx = Effects {
            durable: true,
            observing: true,
            ..Effects::default()
        };
        let now = Instant::now();
        let mut next_ack = 1;
        s.enqueue(1, message("x", ""), now, &mut fx);
        assert!(matches!(
            fx.journal.as_slice(),
            [StoreOp::Owe {
                subscription: 1,
                seq: 1
            }]
        ));
        assert_eq!(
            fx.wake.len(),
            1,
            "a ready message wakes the subscription's waiters"
        );
        let leased = s.take(
            10,
            Duration::from_secs(10),
            None,
            &mut next_ack,
            now,
            DeliveryKind::Pull,
            &mut fx,
        );
        assert_eq!(leased.len(), 1);
        assert!(matches!(
            fx.timers.as_slice(),
            [Timer {
                kind: TimerKind::LeaseExpiry { ack: 1 },
                ..
            }]
        ));
        assert!(matches!(
            fx.events.as_slice(),
            [Event::Delivered { attempt: 1, .. }]
        ));
        s.acknowledge(1, &mut fx);
        assert!(matches!(
            fx.journal.last(),
            Some(StoreOp::Settle {
                subscription: 1,
                seq: 1
            })
        ));
    }
}
