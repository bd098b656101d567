//! Everything the broker holds, behind its one lock: the catalog (topics,
//! subscriptions with their delivery state, snapshots, schemas, IAM
//! policies), the counters that name messages, acks and streams, and the
//! timer heap.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use baton_proto::pubsub::{Snapshot, Topic};
use prost::Message as _;

use super::counters::TopicCounters;
use super::delivery::{BacklogPager, SubState};
use super::effects::{CatalogEntry, Effects, Expiry, ExpiryKind, Timer};
use super::journal::MessageJournal;
use crate::held::HeldMessage;
use crate::iam::IamPolicies;
use crate::observer::DeliveryObserver;
use crate::schema::SchemaRegistry;
use crate::store::{CatalogKind, Journal, StoreOp};
use crate::validate;

/// A topic and what it keeps.
#[derive(Debug)]
pub(crate) struct TopicState {
    pub topic: Topic,
    /// Names of its attached subscriptions.
    pub subscriptions: BTreeSet<String>,
    /// Messages kept for the topic's own retention (seek back in time, and
    /// the backlog of subscriptions created later).
    pub log: VecDeque<LoggedMessage>,
    /// What was published to it (the stats).
    pub counters: TopicCounters,
    /// When a message was last stored on it.
    pub last_publish: Option<SystemTime>,
    /// The deadline of the retention expiry armed for the log, if one is:
    /// a new one is armed only when an earlier one is needed.
    pub retention_armed: Option<SystemTime>,
}

impl TopicState {
    pub fn new(topic: Topic) -> Self {
        Self {
            topic,
            subscriptions: BTreeSet::new(),
            log: VecDeque::new(),
            counters: TopicCounters::default(),
            last_publish: None,
            retention_armed: None,
        }
    }

    /// Arms the expiry of the oldest logged message (when its retention
    /// runs out), unless one as early is armed already. Cost: one
    /// comparison, so publishing may call it every time.
    pub fn arm_retention(&mut self, fx: &mut Effects) {
        let Some(oldest) = self.log.front() else {
            return;
        };
        let at = oldest.published + self.retention().unwrap_or_default();
        if self.retention_armed.is_none_or(|armed| at < armed) {
            self.retention_armed = Some(at);
            fx.expire_at(
                at,
                ExpiryKind::TopicRetention {
                    topic: Arc::from(self.topic.name.as_str()),
                },
            );
        }
    }

    /// The topic's own message retention, if it keeps messages.
    pub fn retention(&self) -> Option<Duration> {
        self.topic
            .message_retention_duration
            .as_ref()
            .and_then(validate::to_std)
    }

    /// Drops logged messages as old as the retention or older (all, if
    /// none): the same boundary as the expiry armed for them.
    pub fn prune_log(&mut self, now: SystemTime, fx: &mut Effects) {
        let retention = self.retention().unwrap_or_default();
        while self
            .log
            .front()
            .is_some_and(|m| m.published + retention <= now)
        {
            if let Some(dropped) = self.log.pop_front() {
                let topic = &self.topic.name;
                fx.journal(|| StoreOp::Unlog {
                    topic: topic.as_str().into(),
                    seq: dropped.seq,
                });
            }
        }
    }
}

/// A message in a topic's retention log.
#[derive(Debug, Clone)]
pub(crate) struct LoggedMessage {
    pub seq: u64,
    pub message: Arc<HeldMessage>,
    pub published: SystemTime,
}

/// A snapshot and the messages it holds.
#[derive(Debug)]
pub(crate) struct SnapshotState {
    pub snapshot: Snapshot,
    /// Unacked messages at creation plus everything published since.
    pub messages: BTreeMap<u64, Arc<HeldMessage>>,
}

/// The broker's state; see the module docs.
#[derive(Debug)]
pub(crate) struct State {
    pub topics: BTreeMap<String, TopicState>,
    pub subscriptions: BTreeMap<String, SubState>,
    /// Names of the attached subscriptions with a push endpoint: what push
    /// delivery serves, kept apart so following the catalog costs what the
    /// push subscriptions cost, not what all subscriptions do.
    pub push: BTreeSet<String>,
    pub snapshots: BTreeMap<String, SnapshotState>,
    /// Acked messages kept by `retain_acked_messages`, per subscription uid,
    /// with their publish times.
    pub retained: HashMap<u64, BTreeMap<u64, (Arc<HeldMessage>, SystemTime)>>,
    /// The sequence (message id) of the next published message.
    pub next_seq: u64,
    /// The number of the next ack id.
    pub next_ack: u64,
    /// The uid of the next subscription (uids are never reused).
    pub next_uid: u64,
    pub next_stream: u64,
    pub timers: BinaryHeap<Reverse<Timer>>,
    /// Expiry deadlines in wall-clock time (retention, inactivity,
    /// snapshot lifetimes), earliest first.
    pub expiries: BinaryHeap<Reverse<Expiry>>,
    /// The SchemaService's catalog; topics' `schema_settings` refer to it.
    pub schemas: SchemaRegistry,
    /// IAM policies by resource name.
    pub iam: IamPolicies,
    /// Who hears about publishes, deliveries, nacks, expiries and
    /// dead-lettering (the server's broker spans); `None` costs nothing.
    pub observer: Option<Arc<dyn DeliveryObserver>>,
    /// The disk store's journal; `None` keeps everything in memory only.
    pub journal: Option<Journal>,
    /// With the disk store: where subscriptions' deep backlogs wait, and
    /// their windows' size (resized as subscriptions come and go).
    pub pager: Option<BacklogPager>,
    /// The message journal (recent messages' histories); `None` when off.
    pub history: Option<MessageJournal>,
    /// Effects of the operation in progress.
    pub fx: Effects,
}

impl Default for State {
    fn default() -> Self {
        Self {
            topics: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            push: BTreeSet::new(),
            snapshots: BTreeMap::new(),
            retained: HashMap::new(),
            next_seq: 1,
            next_ack: 1,
            next_uid: 1,
            next_stream: 1,
            timers: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            schemas: SchemaRegistry::default(),
            iam: IamPolicies::default(),
            observer: None,
            journal: None,
            pager: None,
            history: None,
            fx: Effects::default(),
        }
    }
}

impl State {
    /// What the disk store must write for a changed catalog entry: its
    /// rows as they are now (none once it is gone), and the policy set on
    /// it, which goes and comes with the resource.
    pub fn catalog_rows(&self, entry: &CatalogEntry) -> Vec<StoreOp> {
        let rows = |kind, name: &str, rows: Vec<(u64, Vec<u8>)>| StoreOp::CatalogEntry {
            kind,
            name: name.to_string(),
            rows,
        };
        let one = |number: u64, bytes: Option<Vec<u8>>| {
            bytes.map_or_else(Vec::new, |bytes| vec![(number, bytes)])
        };
        let (resource, mut ops) = match entry {
            CatalogEntry::Topic(name) => {
                let bytes = self.topics.get(name).map(|t| t.topic.encode_to_vec());
                (name, vec![rows(CatalogKind::Topic, name, one(0, bytes))])
            }
            CatalogEntry::Subscription(name) => {
                let row = self
                    .subscriptions
                    .get(name)
                    .map(|s| (s.uid, s.config.encode_to_vec()));
                (
                    name,
                    vec![
                        rows(CatalogKind::Subscription, name, row.into_iter().collect()),
                        StoreOp::NextUid(self.next_uid),
                    ],
                )
            }
            CatalogEntry::Snapshot(name) => {
                let bytes = self.snapshots.get(name).map(|s| s.snapshot.encode_to_vec());
                (name, vec![rows(CatalogKind::Snapshot, name, one(0, bytes))])
            }
            CatalogEntry::Schema(name) => {
                let revisions = self.schemas.revisions_of(name);
                let numbered = (0u64..).zip(revisions.iter().map(|r| r.encode_to_vec()));
                (
                    name,
                    vec![rows(CatalogKind::Schema, name, numbered.collect())],
                )
            }
            CatalogEntry::Policy(name) => (name, Vec::new()),
        };
        let policy = self.iam.stored(resource).map(|p| p.encode_to_vec());
        ops.push(rows(CatalogKind::Policy, resource, one(0, policy)));
        ops
    }

    /// Gives every subscription its share of the window budget again, after
    /// one came or went.
    pub fn resize_windows(&self) {
        if let Some(pager) = &self.pager {
            pager.resize(self.subscriptions.len());
        }
    }

    /// Keeps [`Self::push`] in step with a changed catalog entry.
    pub fn note_push(&mut self, entry: &CatalogEntry) {
        let CatalogEntry::Subscription(name) = entry else {
            return;
        };
        let pushed = self.subscriptions.get(name).is_some_and(|s| {
            !s.config.detached
                && s.config
                    .push_config
                    .as_ref()
                    .is_some_and(|p| !p.push_endpoint.is_empty())
        });
        if pushed {
            self.push.insert(name.clone());
        } else {
            self.push.remove(name);
        }
    }

    /// Deletes the subscription `name` (DeleteSubscription, or its
    /// expiration policy): its backlog, leases, retained messages and IAM
    /// policy go with it and its waiters wake (open streams end with
    /// NOT_FOUND). The subscription, if there was one.
    pub fn remove_subscription(&mut self, name: &str) -> Option<SubState> {
        let sub = self.subscriptions.remove(name)?;
        self.resize_windows();
        self.iam.remove(name);
        if let Some(topic) = self.topics.get_mut(&sub.config.topic) {
            topic.subscriptions.remove(name);
        }
        self.retained.remove(&sub.uid);
        self.fx.wake(&sub.notify);
        self.fx.journal(|| StoreOp::SettleAll {
            subscription: sub.uid,
        });
        self.fx.journal(|| StoreOp::RetainNone {
            subscription: sub.uid,
        });
        self.fx
            .catalog_changed(CatalogEntry::Subscription(name.to_string()));
        Some(sub)
    }

    /// Deletes the snapshot `name` (DeleteSnapshot, or its expire time):
    /// the messages it held are released. The snapshot, if there was one.
    pub fn remove_snapshot(&mut self, name: &str) -> Option<SnapshotState> {
        let snapshot = self.snapshots.remove(name)?;
        self.iam.remove(name);
        self.fx.journal(|| StoreOp::SnapshotDrop {
            snapshot: name.into(),
        });
        self.fx
            .catalog_changed(CatalogEntry::Snapshot(name.to_string()));
        Some(snapshot)
    }

    /// Arms the retention expiry of subscription `name` afresh, for the
    /// oldest message it owes or retains (after its retention changed, or
    /// after the last armed one fired).
    pub fn rearm_retention(&mut self, name: &str) {
        let State {
            subscriptions,
            retained,
            fx,
            ..
        } = self;
        let Some(sub) = subscriptions.get_mut(name) else {
            return;
        };
        sub.retention_armed = None;
        let oldest_retained = retained
            .get(&sub.uid)
            .and_then(|kept| kept.values().next())
            .map(|(_, published)| *published);
        if let Some(oldest) = sub.oldest_owed().into_iter().chain(oldest_retained).min() {
            sub.arm_retention(oldest, fx);
        }
    }

    /// The subscription named `name` whose uid is `uid`: the same one a
    /// timer or stream was made for, not a later one of the same name.
    pub fn subscription_with_uid(&mut self, name: &str, uid: u64) -> Option<&mut SubState> {
        self.subscriptions.get_mut(name).filter(|s| s.uid == uid)
    }
}
