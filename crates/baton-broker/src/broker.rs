//! The broker: catalog plus delivery, behind one lock.
//!
//! One mutex guards everything. Every operation is short and never awaits
//! while holding it, and a single lock makes fan-out, acks and seeks atomic
//! without lock-ordering puzzles. Waiting (pull, streams) happens outside the
//! lock on per-subscription `Notify`s that publishes, nacks, expiries and
//! freed flow-control windows signal.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_proto::pubsub::Schema;
use baton_proto::pubsub::{
    PubsubMessage, PushConfig, ReceivedMessage, Snapshot, Subscription, Topic,
};
use baton_proto::wkt;
use tokio::sync::{Notify, watch};

use crate::delivery::{RequeueOutcome, StreamFlow, SubState, Taken};
use crate::error::{AckFailure, BrokerError, BrokerResult, ErrorCode};
use crate::names::{self, Collection};
use crate::observer::{DeadLetter, Delivery, DeliveryKind, DeliveryObserver, LeaseEnd, Redelivery};
use crate::schema::{self, SchemaRegistry, SchemaSource, TopicBinding};
use crate::store::{Catalog, Journal, Recovered, Storage, StoreError, StoreOp};
use crate::validate;

/// The topic a subscription reports once its topic has been deleted.
pub const DELETED_TOPIC: &str = "_deleted-topic_";

/// How long a snapshot lives (the service's maximum: 7 days).
const SNAPSHOT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// One page of a list call.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Token of the next page; empty on the last page.
    pub next_page_token: String,
}

/// How long a unary Pull may wait for messages.
#[derive(Debug, Clone, Copy)]
pub enum PullWait {
    /// Answer at once, possibly empty (`return_immediately`).
    Immediate,
    /// Wait for messages until this instant, then answer empty.
    Until(Instant),
}

#[derive(Debug)]
struct TopicState {
    topic: Topic,
    subscriptions: BTreeSet<String>,
    /// Messages kept for the topic's own retention (seek back in time).
    log: std::collections::VecDeque<LoggedMessage>,
}

impl TopicState {
    /// The topic's own message retention, if it keeps messages.
    fn retention(&self) -> Option<Duration> {
        self.topic
            .message_retention_duration
            .as_ref()
            .and_then(validate::to_std)
    }

    /// Drops logged messages older than the retention (all, if none),
    /// recording each for the disk store.
    fn prune_log(&mut self, now: SystemTime, journal: Option<&Journal>) {
        let retention = self.retention().unwrap_or_default();
        while self
            .log
            .front()
            .is_some_and(|m| now.duration_since(m.published).unwrap_or_default() > retention)
        {
            if let Some(dropped) = self.log.pop_front()
                && let Some(journal) = journal
            {
                journal.push(StoreOp::Unlog {
                    topic: self.topic.name.as_str().into(),
                    seq: dropped.seq,
                });
            }
        }
    }
}

#[derive(Debug, Clone)]
struct LoggedMessage {
    seq: u64,
    message: Arc<PubsubMessage>,
    published: SystemTime,
}

#[derive(Debug)]
struct SnapshotState {
    snapshot: Snapshot,
    /// Unacked messages at creation plus everything published since.
    messages: BTreeMap<u64, Arc<PubsubMessage>>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    LeaseExpiry { ack: u64 },
    BackoffOver { seq: u64 },
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    sub_uid: u64,
    kind: TimerKind,
    sub_name: Arc<str>,
}

#[derive(Debug, Default)]
struct Inner {
    topics: BTreeMap<String, TopicState>,
    subscriptions: BTreeMap<String, SubState>,
    snapshots: BTreeMap<String, SnapshotState>,
    /// Acked messages kept by `retain_acked_messages`, per subscription uid.
    retained: HashMap<u64, BTreeMap<u64, (Arc<PubsubMessage>, SystemTime)>>,
    next_seq: u64,
    next_ack: u64,
    next_uid: u64,
    next_stream: u64,
    timers: BinaryHeap<Reverse<Timer>>,
    /// The SchemaService's catalog; topics' `schema_settings` refer to it.
    schemas: SchemaRegistry,
    /// IAM policies by resource name.
    iam: crate::iam::IamPolicies,
    /// Who hears about publishes, deliveries, nacks, expiries and
    /// dead-lettering (the server's broker spans); `None` costs nothing.
    observer: Option<Arc<dyn DeliveryObserver>>,
    /// The disk store's journal; `None` keeps everything in memory only.
    journal: Option<Journal>,
}

impl Inner {
    /// Records a change for the disk store (nothing in memory mode).
    fn record(&self, op: impl FnOnce() -> StoreOp) {
        if let Some(journal) = &self.journal {
            journal.push(op());
        }
    }

    /// Records the whole catalog after a change to it.
    fn record_catalog(&self) {
        self.record(|| {
            StoreOp::Catalog(Box::new(Catalog {
                topics: self.topics.values().map(|t| t.topic.clone()).collect(),
                subscriptions: self
                    .subscriptions
                    .values()
                    .map(|s| (s.uid, s.config.clone()))
                    .collect(),
                next_uid: self.next_uid,
                snapshots: self
                    .snapshots
                    .values()
                    .map(|s| s.snapshot.clone())
                    .collect(),
                schemas: self.schemas.export(),
                policies: self.iam.export(),
            }))
        });
    }
}

/// The broker's lock. Letting go of it ends the operation: the changes it
/// recorded go to the disk store as one unit, in lock order.
struct Locked<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(journal) = &self.0.journal {
            journal.flush();
        }
    }
}

/// The Pub/Sub engine. Cheap to share: hand out `Arc<Broker>`.
#[derive(Debug)]
pub struct Broker {
    inner: Mutex<Inner>,
    /// Wakes the timer task when an earlier deadline is armed.
    timer_wake: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    /// Catalog version, bumped whenever a subscription is created, updated,
    /// deleted or detached or its push config changes, so push delivery can
    /// follow the catalog without polling it.
    catalog: watch::Sender<u64>,
    /// The disk store, when the broker is durable (see [`Broker::open`]).
    storage: std::sync::OnceLock<Arc<Storage>>,
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
    }

    /// Changes the deadline given to messages this stream leases from now on.
    pub fn set_deadline(&mut self, seconds: i32) {
        self.deadline = Duration::from_secs(u64::try_from(seconds.clamp(10, 600)).unwrap_or(10));
    }
}

impl Drop for StreamRegistration {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.upgrade() {
            let mut inner = broker.lock();
            if let Some(sub) = inner.subscriptions.get_mut(&self.subscription)
                && sub.uid == self.sub_uid
            {
                sub.streams.remove(&self.id);
            }
        }
    }
}

/// A wall-clock time as a protobuf timestamp.
pub(crate) fn timestamp(time: SystemTime) -> wkt::Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    wkt::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// Wall-clock time of the monotonic `at`, given one reading of both clocks
/// (`now`, `wall_now`) taken together. The observer speaks wall-clock time,
/// the broker's timers monotonic.
fn wall(at: Instant, now: Instant, wall_now: SystemTime) -> SystemTime {
    if at <= now {
        wall_now
            .checked_sub(now.saturating_duration_since(at))
            .unwrap_or(wall_now)
    } else {
        wall_now + at.saturating_duration_since(now)
    }
}

/// Tells `observer` about the leases a requeue ended and the messages it
/// dead-lettered.
fn observe_requeue(
    observer: &dyn DeliveryObserver,
    subscription: &str,
    dead_letter_topic: Option<&str>,
    outcome: &RequeueOutcome,
    reason: LeaseEnd,
    now: Instant,
) {
    let wall_now = SystemTime::now();
    for (message, attempt, available_at) in &outcome.requeued {
        observer.redelivery(Redelivery {
            subscription,
            message,
            attempt: *attempt,
            reason,
            at: wall_now,
            available_at: wall(*available_at, now, wall_now),
        });
    }
    if let Some(dead_letter_topic) = dead_letter_topic {
        for (message, attempts) in &outcome.dead_letters {
            observer.dead_lettered(DeadLetter {
                subscription,
                message,
                attempts: *attempts,
                reason,
                dead_letter_topic,
                at: wall_now,
            });
        }
    }
}

/// A protobuf timestamp as wall-clock time (before the epoch: the epoch).
pub(crate) fn system_time(ts: &wkt::Timestamp) -> SystemTime {
    let secs = u64::try_from(ts.seconds).unwrap_or(0);
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// Pages over names in a sorted map, the way the service pages: the token is
/// the name of the first item of the next page; an unknown token restarts.
fn page<'a, V, T>(
    map: &'a BTreeMap<String, V>,
    prefix: &str,
    page_size: i32,
    page_token: &str,
    filter: impl Fn(&'a V) -> bool,
    project: impl Fn(&'a String, &'a V) -> T,
) -> ListPage<T> {
    let start = if page_token.starts_with(prefix) {
        page_token.to_string()
    } else {
        prefix.to_string()
    };
    let limit = usize::try_from(page_size).ok().filter(|n| *n > 0);
    let mut items = Vec::new();
    let mut next_page_token = String::new();
    for (name, value) in map.range(start..) {
        if !name.starts_with(prefix) {
            break;
        }
        if !filter(value) {
            continue;
        }
        if limit.is_some_and(|n| items.len() >= n) {
            next_page_token = name.clone();
            break;
        }
        items.push(project(name, value));
    }
    ListPage {
        items,
        next_page_token,
    }
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

impl Broker {
    /// Creates an empty broker and starts its timer task on the current
    /// tokio runtime. The task ends when the broker is dropped.
    pub fn start() -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let (catalog, _) = watch::channel(0u64);
        let broker = Arc::new(Self {
            inner: Mutex::new(Inner {
                next_seq: 1,
                next_ack: 1,
                next_uid: 1,
                next_stream: 1,
                ..Default::default()
            }),
            timer_wake: Arc::new(Notify::new()),
            shutdown,
            catalog,
            storage: std::sync::OnceLock::new(),
        });
        tokio::spawn(run_timers(Arc::downgrade(&broker)));
        broker
    }

    /// Opens a durable broker on the disk store in `dir` (created if
    /// missing): everything the store holds comes back (catalog, unacked
    /// messages, snapshots, retained messages, failed delivery attempts) and
    /// every later change is written to it. Unacked messages are ready for
    /// delivery again; leases start afresh. Starts the timer task on the
    /// current tokio runtime, like [`Broker::start`].
    pub fn open(dir: &std::path::Path) -> Result<Arc<Self>, StoreError> {
        let (storage, recovered) = Storage::open(dir)?;
        let storage = Arc::new(storage);
        let broker = Self::start();
        {
            let mut inner = broker.lock();
            let inner = &mut *inner;
            restore(inner, recovered);
            let journal = Journal::new(storage.clone());
            for sub in inner.subscriptions.values_mut() {
                sub.journal = Some(journal.clone());
            }
            inner.journal = Some(journal);
        }
        // Freshly started: nobody else can have set it.
        let _ = broker.storage.set(storage);
        Ok(broker)
    }

    /// Resolves once every change made so far is on disk (at once for an
    /// in-memory broker). Requests that promise durability (publish, ack,
    /// catalog changes) await it before answering.
    pub fn durable(&self) -> impl Future<Output = BrokerResult<()>> + Send + 'static {
        let wait = self.storage.get().map(|storage| storage.durable());
        async move {
            match wait {
                None => Ok(()),
                Some(wait) => wait.await.map_err(|error| match error {
                    StoreError::Closed => {
                        BrokerError::new(ErrorCode::Unavailable, "The service is shutting down.")
                    }
                    error => {
                        BrokerError::new(ErrorCode::Internal, format!("storage failure: {error}"))
                    }
                }),
            }
        }
    }

    /// `result`, once the changes made so far are durable (see
    /// [`Broker::durable`]); a storage failure replaces it.
    pub async fn durably<T>(&self, result: BrokerResult<T>) -> BrokerResult<T> {
        if self.storage.get().is_some() {
            self.durable().await?;
        }
        result
    }

    /// The disk store, if the broker is durable.
    pub fn storage(&self) -> Option<&Arc<Storage>> {
        self.storage.get()
    }

    /// Writes what is queued and closes the disk store (so another broker
    /// may open it); later changes stay in memory only. Blocks until the
    /// store's writer is done, so call it from a blocking context.
    pub fn close_storage(&self) {
        {
            let mut inner = self.lock();
            inner.journal = None;
            for sub in inner.subscriptions.values_mut() {
                sub.journal = None;
            }
        }
        if let Some(storage) = self.storage.get() {
            storage.close();
        }
    }

    /// Reports publishes, deliveries, nacks, expiries and dead-lettering to
    /// `observer` from now on (replacing any earlier one). The observer is
    /// called under the broker's lock: see [`DeliveryObserver`].
    pub fn set_observer(&self, observer: Arc<dyn DeliveryObserver>) {
        self.lock().observer = Some(observer);
    }

    /// Stops reporting to the observer.
    pub fn clear_observer(&self) {
        self.lock().observer = None;
    }

    fn lock(&self) -> Locked<'_> {
        // A panic elsewhere must not take every later request down with it.
        Locked(self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Tells every waiting pull and stream that the broker is going away.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        let inner = self.lock();
        for sub in inner.subscriptions.values() {
            sub.notify.notify_waiters();
        }
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// A receiver of the catalog version: it changes whenever a subscription
    /// is created, updated, deleted or detached or its push config changes.
    /// Push delivery watches it to start and stop its pushers promptly.
    pub fn catalog_changes(&self) -> watch::Receiver<u64> {
        self.catalog.subscribe()
    }

    fn catalog_changed(&self) {
        self.catalog
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Every attached subscription with a push endpoint: the ones push
    /// delivery must serve.
    pub fn push_subscriptions(&self) -> Vec<Subscription> {
        let inner = self.lock();
        inner
            .subscriptions
            .values()
            .filter(|s| {
                !s.config.detached
                    && s.config
                        .push_config
                        .as_ref()
                        .is_some_and(|p| !p.push_endpoint.is_empty())
            })
            .map(|s| s.config.clone())
            .collect()
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    // ----- topics -------------------------------------------------------

    /// CreateTopic.
    pub fn create_topic(&self, mut topic: Topic) -> BrokerResult<Topic> {
        names::parse(&topic.name, Collection::Topics)?;
        validate::topic_settings(&topic)?;
        let mut inner = self.lock();
        if let Some(settings) = &topic.schema_settings {
            inner.schemas.check_settings(settings)?;
        }
        if inner.topics.contains_key(&topic.name) {
            return Err(BrokerError::already_exists("Topic already exists"));
        }
        topic.state = 0;
        inner.topics.insert(
            topic.name.clone(),
            TopicState {
                topic: topic.clone(),
                subscriptions: BTreeSet::new(),
                log: Default::default(),
            },
        );
        inner.record_catalog();
        tracing::debug!(topic = %topic.name, "topic created");
        Ok(topic)
    }

    /// GetTopic.
    pub fn get_topic(&self, name: &str) -> BrokerResult<Topic> {
        names::parse(name, Collection::Topics)?;
        let inner = self.lock();
        inner
            .topics
            .get(name)
            .map(|t| t.topic.clone())
            .ok_or_else(BrokerError::topic_not_found)
    }

    /// UpdateTopic: applies the fields named in `paths` (snake_case).
    pub fn update_topic(&self, update: Topic, paths: &[String]) -> BrokerResult<Topic> {
        if paths.is_empty() {
            return Err(BrokerError::invalid(
                "The update_mask in the UpdateTopicRequest must be set, and must contain a non-empty paths list.",
            ));
        }
        names::parse(&update.name, Collection::Topics)?;
        for path in paths {
            match path.as_str() {
                "labels"
                | "message_storage_policy"
                | "kms_key_name"
                | "schema_settings"
                | "message_retention_duration"
                | "ingestion_data_source_settings"
                | "message_transforms" => {}
                other => {
                    return Err(BrokerError::invalid(format!(
                        "Invalid update_mask provided in the UpdateTopicRequest: {other} is not a known Topic field. Note that field paths must be of the form 'schema_settings' rather than 'schemaSetings'."
                    )));
                }
            }
        }
        validate::topic_settings(&update)?;
        let mut inner = self.lock();
        if let Some(settings) = &update.schema_settings
            && paths.iter().any(|p| p == "schema_settings")
        {
            inner.schemas.check_settings(settings)?;
        }
        let state = inner
            .topics
            .get_mut(&update.name)
            .ok_or_else(|| BrokerError::not_found("Topic not found."))?;
        let topic = &mut state.topic;
        for path in paths {
            match path.as_str() {
                "labels" => topic.labels = update.labels.clone(),
                "message_storage_policy" => {
                    topic.message_storage_policy = update.message_storage_policy.clone()
                }
                "kms_key_name" => topic.kms_key_name = update.kms_key_name.clone(),
                "schema_settings" => topic.schema_settings = update.schema_settings.clone(),
                "message_retention_duration" => {
                    topic.message_retention_duration = update.message_retention_duration
                }
                "ingestion_data_source_settings" => {
                    topic.ingestion_data_source_settings =
                        update.ingestion_data_source_settings.clone()
                }
                "message_transforms" => {
                    topic.message_transforms = update.message_transforms.clone()
                }
                _ => {}
            }
        }
        let answer = topic.clone();
        inner.record_catalog();
        Ok(answer)
    }

    /// ListTopics of `project` (`projects/{id}`).
    pub fn list_topics(
        &self,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Topic>> {
        let project = names::parse_project(project)?;
        let prefix = format!("projects/{project}/topics/");
        let inner = self.lock();
        Ok(page(
            &inner.topics,
            &prefix,
            page_size,
            page_token,
            |_| true,
            |_, t| t.topic.clone(),
        ))
    }

    /// ListTopicSubscriptions: names of the topic's attached subscriptions.
    pub fn list_topic_subscriptions(
        &self,
        topic: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<String>> {
        names::parse(topic, Collection::Topics)?;
        let inner = self.lock();
        // The emulator lists nothing (rather than NOT_FOUND) for a missing topic.
        let map: BTreeMap<String, ()> = inner
            .topics
            .get(topic)
            .map(|state| {
                state
                    .subscriptions
                    .iter()
                    .map(|s| (s.clone(), ()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(page(
            &map,
            "projects/",
            page_size,
            page_token,
            |_| true,
            |n, _| n.clone(),
        ))
    }

    /// ListTopicSnapshots: names of the snapshots taken from the topic.
    pub fn list_topic_snapshots(
        &self,
        topic: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<String>> {
        names::parse(topic, Collection::Topics)?;
        let inner = self.lock();
        Ok(page(
            &inner.snapshots,
            "projects/",
            page_size,
            page_token,
            |s| s.snapshot.topic == topic,
            |n, _| n.clone(),
        ))
    }

    /// DeleteTopic: its subscriptions stay, reporting [`DELETED_TOPIC`].
    pub fn delete_topic(&self, name: &str) -> BrokerResult<()> {
        names::parse(name, Collection::Topics)?;
        let mut inner = self.lock();
        let state = inner
            .topics
            .remove(name)
            .ok_or_else(BrokerError::topic_not_found)?;
        inner.iam.remove(name);
        for sub_name in state.subscriptions {
            if let Some(sub) = inner.subscriptions.get_mut(&sub_name) {
                sub.config.topic = DELETED_TOPIC.to_string();
            }
        }
        inner.record(|| StoreOp::LogNone { topic: name.into() });
        inner.record_catalog();
        tracing::debug!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Publish: validates, assigns ids and publish times, fans out to every
    /// attached subscription and wakes their waiters.
    pub fn publish(
        &self,
        topic: &str,
        mut messages: Vec<PubsubMessage>,
    ) -> BrokerResult<Vec<String>> {
        let received = SystemTime::now();
        names::parse(topic, Collection::Topics)?;
        let binding: Option<BrokerResult<TopicBinding>> = {
            let inner = self.lock();
            let state = inner
                .topics
                .get(topic)
                .ok_or_else(BrokerError::topic_not_found)?;
            let settings = state.topic.schema_settings.as_ref();
            settings.map(|settings| inner.schemas.binding(settings))
        };
        validate::publish_messages(&messages)?;
        if let Some(binding) = binding {
            // Decoding happens outside the lock: schemas are compiled once
            // and shared by `Arc`.
            binding?.stamp(&mut messages)?;
        }
        let mut inner = self.lock();
        let ids = publish_locked(&mut inner, topic, messages, received)?;
        Ok(ids)
    }

    // ----- subscriptions --------------------------------------------------

    /// CreateSubscription.
    pub fn create_subscription(&self, mut sub: Subscription) -> BrokerResult<Subscription> {
        names::parse(&sub.name, Collection::Subscriptions)?;
        names::parse(&sub.topic, Collection::Topics)?;
        validate::subscription_settings(&mut sub)?;
        let filter = if sub.filter.is_empty() {
            None
        } else {
            Some(
                crate::filter::Filter::parse(&sub.filter)
                    .map_err(|error| BrokerError::invalid(error.to_string()))?,
            )
        };
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.subscriptions.contains_key(&sub.name) {
            return Err(BrokerError::already_exists("Subscription already exists"));
        }
        if !inner.topics.contains_key(&sub.topic) {
            return Err(BrokerError::not_found("Subscription topic does not exist"));
        }
        if let Some(policy) = &mut sub.dead_letter_policy {
            policy.max_delivery_attempts =
                validate::max_delivery_attempts(policy.max_delivery_attempts)?;
            if !inner.topics.contains_key(&policy.dead_letter_topic) {
                return Err(BrokerError::not_found("Dead letter topic not found"));
            }
        }
        sub.state = 0;
        let uid = inner.next_uid;
        inner.next_uid += 1;
        let mut state = SubState::new(uid, sub.clone());
        state.filter = filter;
        state.journal = inner.journal.clone();
        if let Some(topic) = inner.topics.get_mut(&sub.topic)
            && !sub.detached
        {
            topic.subscriptions.insert(sub.name.clone());
            // A topic that retains messages hands its retained backlog
            // to subscriptions created later.
            topic.prune_log(SystemTime::now(), inner.journal.as_ref());
            let now = Instant::now();
            for logged in &topic.log {
                state.offer(logged.seq, logged.message.clone(), now);
            }
        }
        inner.subscriptions.insert(sub.name.clone(), state);
        inner.record_catalog();
        self.catalog_changed();
        tracing::debug!(subscription = %sub.name, topic = %sub.topic, "subscription created");
        Ok(sub)
    }

    fn with_sub<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Inner) -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        names::parse(name, Collection::Subscriptions)?;
        let mut inner = self.lock();
        if !inner.subscriptions.contains_key(name) {
            return Err(BrokerError::subscription_not_found());
        }
        f(&mut inner)
    }

    /// GetSubscription.
    pub fn get_subscription(&self, name: &str) -> BrokerResult<Subscription> {
        self.with_sub(name, |inner| {
            inner
                .subscriptions
                .get(name)
                .map(|s| s.config.clone())
                .ok_or_else(BrokerError::subscription_not_found)
        })
    }

    /// UpdateSubscription: applies the mutable fields named in `paths`.
    pub fn update_subscription(
        &self,
        update: Subscription,
        paths: &[String],
    ) -> BrokerResult<Subscription> {
        if paths.is_empty() {
            return Err(BrokerError::invalid(
                "The update_mask in the UpdateSubscriptionRequest must be set, and must contain a non-empty paths list.",
            ));
        }
        names::parse(&update.name, Collection::Subscriptions)?;
        for path in paths {
            match path.as_str() {
                "ack_deadline_seconds"
                | "push_config"
                | "bigquery_config"
                | "cloud_storage_config"
                | "retain_acked_messages"
                | "message_retention_duration"
                | "labels"
                | "expiration_policy"
                | "dead_letter_policy"
                | "retry_policy"
                | "enable_exactly_once_delivery"
                | "message_transforms" => {}
                "topic" | "enable_message_ordering" | "detached" | "filter" | "name" => {
                    return Err(BrokerError::invalid(format!(
                        "Invalid update_mask provided in the UpdateSubscriptionRequest: the {path} field in the Subscription is not mutable."
                    )));
                }
                other => {
                    return Err(BrokerError::invalid(format!(
                        "Invalid update_mask provided in the UpdateSubscriptionRequest: {other} is not a known Subscription field. Note that field paths must be of the form 'push_config' rather than 'pushConfig'."
                    )));
                }
            }
        }
        let mut inner = self.lock();
        let Some(current) = inner
            .subscriptions
            .get(&update.name)
            .map(|s| s.config.clone())
        else {
            return Err(BrokerError::not_found("Subscription not found."));
        };
        let mut next = current;
        for path in paths {
            match path.as_str() {
                "ack_deadline_seconds" => {
                    next.ack_deadline_seconds = validate::ack_deadline(update.ack_deadline_seconds)?
                }
                "push_config" => {
                    let push = update.push_config.clone().unwrap_or_default();
                    validate::push_endpoint(&push.push_endpoint)?;
                    next.push_config = Some(push);
                }
                "bigquery_config" => next.bigquery_config = update.bigquery_config.clone(),
                "cloud_storage_config" => {
                    next.cloud_storage_config = update.cloud_storage_config.clone()
                }
                "retain_acked_messages" => {
                    next.retain_acked_messages = update.retain_acked_messages
                }
                "message_retention_duration" => {
                    let retention = update.message_retention_duration.unwrap_or(wkt::Duration {
                        seconds: validate::DEFAULT_RETENTION_SECS,
                        nanos: 0,
                    });
                    let mut probe = next.clone();
                    probe.message_retention_duration = Some(retention);
                    validate::subscription_settings(&mut probe)?;
                    next.message_retention_duration = Some(retention);
                }
                "labels" => next.labels = update.labels.clone(),
                "expiration_policy" => next.expiration_policy = update.expiration_policy,
                "dead_letter_policy" => {
                    let mut policy = update.dead_letter_policy.clone();
                    if let Some(policy) = &mut policy {
                        policy.max_delivery_attempts =
                            validate::max_delivery_attempts(policy.max_delivery_attempts)?;
                        if !inner.topics.contains_key(&policy.dead_letter_topic) {
                            return Err(BrokerError::not_found("Dead letter topic not found"));
                        }
                    }
                    next.dead_letter_policy = policy;
                }
                "retry_policy" => {
                    let mut policy = update.retry_policy;
                    if let Some(policy) = &mut policy {
                        validate::retry_policy(policy)?;
                    }
                    next.retry_policy = policy;
                }
                "enable_exactly_once_delivery" => {
                    next.enable_exactly_once_delivery = update.enable_exactly_once_delivery
                }
                "message_transforms" => next.message_transforms = update.message_transforms.clone(),
                _ => {}
            }
        }
        if let Some(sub) = inner.subscriptions.get_mut(&update.name) {
            sub.config = next.clone();
            sub.notify.notify_waiters();
        }
        inner.record_catalog();
        self.catalog_changed();
        Ok(next)
    }

    /// ListSubscriptions of `project`.
    pub fn list_subscriptions(
        &self,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Subscription>> {
        let project = names::parse_project(project)?;
        let prefix = format!("projects/{project}/subscriptions/");
        let inner = self.lock();
        Ok(page(
            &inner.subscriptions,
            &prefix,
            page_size,
            page_token,
            |_| true,
            |_, s| s.config.clone(),
        ))
    }

    /// DeleteSubscription: its backlog and leases go with it; open streams
    /// end with NOT_FOUND.
    pub fn delete_subscription(&self, name: &str) -> BrokerResult<()> {
        self.with_sub(name, |inner| {
            inner.iam.remove(name);
            if let Some(sub) = inner.subscriptions.remove(name) {
                if let Some(topic) = inner.topics.get_mut(&sub.config.topic) {
                    topic.subscriptions.remove(name);
                }
                inner.retained.remove(&sub.uid);
                sub.notify.notify_waiters();
                inner.record(|| StoreOp::SettleAll {
                    subscription: sub.uid,
                });
                inner.record(|| StoreOp::RetainNone {
                    subscription: sub.uid,
                });
            }
            inner.record_catalog();
            self.catalog_changed();
            Ok(())
        })
    }

    /// ModifyPushConfig.
    pub fn modify_push_config(&self, name: &str, push: Option<PushConfig>) -> BrokerResult<()> {
        let push = push.unwrap_or_default();
        validate::push_endpoint(&push.push_endpoint)?;
        self.with_sub(name, |inner| {
            if let Some(sub) = inner.subscriptions.get_mut(name) {
                sub.config.push_config = Some(push);
            }
            inner.record_catalog();
            self.catalog_changed();
            Ok(())
        })
    }

    // ----- delivery -------------------------------------------------------

    fn parse_ack_ids(
        inner: &Inner,
        subscription: &str,
        ack_ids: &[String],
    ) -> BrokerResult<Vec<(u64, usize)>> {
        let own_prefix = inner
            .subscriptions
            .get(subscription)
            .map(|s| s.ack_prefix.as_str())
            .unwrap_or(subscription);
        let resolve = |uid: u64| {
            inner
                .subscriptions
                .values()
                .find(|s| s.uid == uid)
                .map(|s| s.config.name.clone())
        };
        let mut parsed = Vec::with_capacity(ack_ids.len());
        for (index, ack_id) in ack_ids.iter().enumerate() {
            let number = parse_ack_id(subscription, own_prefix, ack_id, resolve)?;
            parsed.push((number, index));
        }
        Ok(parsed)
    }

    /// Acknowledge. Unknown or stale ids are ignored, as the service does;
    /// with exactly-once delivery only the current lease settles a message,
    /// and the others make the call fail with their ids listed (the valid
    /// ones are applied all the same).
    pub fn acknowledge(&self, name: &str, ack_ids: &[String]) -> BrokerResult<()> {
        if ack_ids.is_empty() {
            names::parse(name, Collection::Subscriptions)?;
            return Err(BrokerError::invalid("No ack ids specified."));
        }
        self.with_sub(name, |inner| {
            let parsed = Self::parse_ack_ids(inner, name, ack_ids)?;
            let Some(sub) = inner.subscriptions.get_mut(name) else {
                return Err(BrokerError::subscription_not_found());
            };
            let exactly_once = sub.config.enable_exactly_once_delivery;
            let mut failures = Vec::new();
            let mut retained = Vec::new();
            for (number, index) in parsed {
                let seq = if exactly_once {
                    sub.current_lease(number)
                } else {
                    sub.acks.get(&number).copied()
                };
                match seq {
                    Some(seq) => {
                        if sub.config.retain_acked_messages
                            && let Some(entry) = sub.messages.get(&seq)
                        {
                            let published = entry
                                .message
                                .publish_time
                                .as_ref()
                                .map(system_time)
                                .unwrap_or(UNIX_EPOCH);
                            retained.push((seq, entry.message.clone(), published));
                        }
                        sub.acknowledge(seq);
                    }
                    None if exactly_once => failures.push(AckFailure {
                        ack_id: ack_ids[index].clone(),
                        reason: "PERMANENT_FAILURE_INVALID_ACK_ID",
                    }),
                    None => {}
                }
            }
            sub.notify.notify_waiters();
            if !retained.is_empty() {
                let uid = sub.uid;
                let store = inner.retained.entry(uid).or_default();
                for (seq, message, published) in retained {
                    store.insert(seq, (message, published));
                    if let Some(journal) = &inner.journal {
                        journal.push(StoreOp::Retain {
                            subscription: uid,
                            seq,
                            published,
                        });
                    }
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(BrokerError::ack_failures(failures))
            }
        })
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
        self.with_sub(name, |inner| {
            let parsed = Self::parse_ack_ids(inner, name, ack_ids)?;
            let now = Instant::now();
            let mut failures = Vec::new();
            let mut dead_letters = Vec::new();
            let mut backoffs = Vec::new();
            let Some(sub) = inner.subscriptions.get_mut(name) else {
                return Err(BrokerError::subscription_not_found());
            };
            let exactly_once = sub.config.enable_exactly_once_delivery;
            let uid = sub.uid;
            let mut timers = Vec::new();
            for (number, index) in parsed {
                let Some(seq) = sub.current_lease(number) else {
                    if exactly_once {
                        failures.push(AckFailure {
                            ack_id: ack_ids[index].clone(),
                            reason: "PERMANENT_FAILURE_INVALID_ACK_ID",
                        });
                    }
                    continue;
                };
                if seconds == 0 {
                    let outcome = sub.requeue(seq, now);
                    if let Some(observer) = &inner.observer {
                        let dead_letter_topic = sub
                            .config
                            .dead_letter_policy
                            .as_ref()
                            .map(|p| p.dead_letter_topic.as_str());
                        observe_requeue(
                            observer.as_ref(),
                            name,
                            dead_letter_topic,
                            &outcome,
                            LeaseEnd::Nacked,
                            now,
                        );
                    }
                    dead_letters.extend(outcome.dead_letters);
                    backoffs.extend(outcome.backoff_timers);
                } else {
                    let until = now + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
                    if sub.extend(number, until).is_some() {
                        timers.push((until, number));
                    }
                }
            }
            sub.notify.notify_waiters();
            let sub_name: Arc<str> = Arc::from(name);
            let dead_letter_topic = sub
                .config
                .dead_letter_policy
                .as_ref()
                .map(|p| p.dead_letter_topic.clone());
            let source_topic = sub.config.topic.clone();
            for (at, ack) in timers {
                inner.timers.push(Reverse(Timer {
                    at,
                    sub_uid: uid,
                    kind: TimerKind::LeaseExpiry { ack },
                    sub_name: sub_name.clone(),
                }));
            }
            for (at, seq) in backoffs {
                inner.timers.push(Reverse(Timer {
                    at,
                    sub_uid: uid,
                    kind: TimerKind::BackoffOver { seq },
                    sub_name: sub_name.clone(),
                }));
            }
            forward_dead_letters(inner, name, &source_topic, dead_letter_topic, dead_letters);
            self.timer_wake.notify_one();
            if failures.is_empty() {
                Ok(())
            } else {
                Err(BrokerError::ack_failures(failures))
            }
        })
    }

    fn take(
        &self,
        name: &str,
        max: usize,
        stream: Option<(u64, u64, Duration)>,
        kind: DeliveryKind,
    ) -> BrokerResult<(Vec<ReceivedMessage>, Arc<Notify>)> {
        if self.is_shutting_down() {
            return Err(BrokerError::shutting_down());
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sub) = inner.subscriptions.get_mut(name) else {
            return Err(BrokerError::subscription_not_found());
        };
        if let Some((_, uid, _)) = stream
            && sub.uid != uid
        {
            return Err(BrokerError::subscription_not_found());
        }
        if sub.config.detached {
            return Err(BrokerError::new(
                crate::ErrorCode::FailedPrecondition,
                "Subscription is detached.",
            ));
        }
        let deadline = match stream {
            Some((_, _, deadline)) => deadline,
            None => {
                Duration::from_secs(u64::try_from(sub.config.ack_deadline_seconds).unwrap_or(10))
            }
        };
        let now = Instant::now();
        let Taken {
            messages,
            timers,
            deliveries,
        } = sub.take(
            max,
            deadline,
            stream.map(|(id, _, _)| id),
            &mut inner.next_ack,
            now,
        );
        if let Some(observer) = &inner.observer
            && !deliveries.is_empty()
        {
            let wall_now = SystemTime::now();
            for (delivery, received) in deliveries.iter().zip(&messages) {
                observer.delivered(Delivery {
                    subscription: name,
                    message: &delivery.message,
                    ack_id: &received.ack_id,
                    attempt: delivery.attempt,
                    available_since: wall(delivery.available_since, now, wall_now),
                    delivered_at: wall_now,
                    kind,
                });
            }
        }
        let notify = sub.notify.clone();
        if !timers.is_empty() {
            let sub_name: Arc<str> = Arc::from(name);
            let uid = sub.uid;
            for (at, ack) in timers {
                inner.timers.push(Reverse(Timer {
                    at,
                    sub_uid: uid,
                    kind: TimerKind::LeaseExpiry { ack },
                    sub_name: sub_name.clone(),
                }));
            }
            self.timer_wake.notify_one();
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
        {
            let inner = self.lock();
            if !inner.subscriptions.contains_key(name) {
                return Err(BrokerError::subscription_not_found());
            }
        }
        // A negative count is answered empty, as the emulator does.
        let Ok(max) = usize::try_from(max_messages) else {
            return Ok(Vec::new());
        };
        let max = max.min(1000);
        let mut shutdown = self.shutdown_signal();
        loop {
            let (messages, notify) = self.take(name, max, None, DeliveryKind::Pull)?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let PullWait::Until(deadline) = wait else {
                return Ok(messages);
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Re-check after registering so a publish in between is not lost.
            let (messages, _) = self.take(name, max, None, DeliveryKind::Pull)?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => return Ok(Vec::new()),
                _ = async { let _ = shutdown.wait_for(|down| *down).await; } => return Err(BrokerError::shutting_down()),
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
        names::parse(name, Collection::Subscriptions)?;
        let mut inner = self.lock();
        let id = inner.next_stream;
        inner.next_stream += 1;
        let Some(sub) = inner.subscriptions.get_mut(name) else {
            let id = names::parse(name, Collection::Subscriptions)
                .map(|n| n.id.to_string())
                .unwrap_or_default();
            return Err(BrokerError::not_found(format!(
                "Subscription does not exist (resource={id})"
            )));
        };
        sub.streams.insert(
            id,
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
            id,
            deadline: Duration::from_secs(10),
            notify: sub.notify.clone(),
            exactly_once: sub.config.enable_exactly_once_delivery,
            ordered: sub.config.enable_message_ordering,
            kind: DeliveryKind::StreamingPull,
        };
        registration.set_deadline(stream_ack_deadline_seconds);
        Ok(registration)
    }

    /// Leases up to `max` messages to a stream, within its window.
    pub fn stream_take(
        &self,
        stream: &StreamRegistration,
        max: usize,
    ) -> BrokerResult<Vec<ReceivedMessage>> {
        self.take(
            &stream.subscription,
            max,
            Some((stream.id, stream.sub_uid, stream.deadline)),
            stream.kind,
        )
        .map(|(messages, _)| messages)
    }

    /// Reads something of a subscription's state (NOT_FOUND when it is gone).
    fn read_sub<T>(&self, name: &str, read: impl FnOnce(&SubState) -> T) -> BrokerResult<T> {
        self.lock()
            .subscriptions
            .get(name)
            .map(read)
            .ok_or_else(BrokerError::subscription_not_found)
    }

    /// Current exactly-once and ordering flags of a subscription.
    pub fn subscription_flags(&self, name: &str) -> BrokerResult<(bool, bool)> {
        self.read_sub(name, |s| {
            (
                s.config.enable_exactly_once_delivery,
                s.config.enable_message_ordering,
            )
        })
    }

    /// StreamingPull streams currently registered on a subscription. A client
    /// that drops its stream is only seen once the server reads the reset, so
    /// callers that need "no stream can lease this" wait for zero.
    pub fn open_streams(&self, name: &str) -> BrokerResult<usize> {
        self.read_sub(name, |s| s.streams.len())
    }

    /// Messages neither acked nor dead-lettered on a subscription.
    pub fn backlog_len(&self, name: &str) -> BrokerResult<usize> {
        self.read_sub(name, SubState::backlog_len)
    }

    // ----- snapshots and seek --------------------------------------------

    /// CreateSnapshot: captures the subscription's unacked messages; the
    /// snapshot also keeps everything the topic receives afterwards.
    pub fn create_snapshot(
        &self,
        name: &str,
        subscription: &str,
        labels: std::collections::HashMap<String, String>,
    ) -> BrokerResult<Snapshot> {
        names::parse(name, Collection::Snapshots)?;
        let mut inner = self.lock();
        if inner.snapshots.contains_key(name) {
            return Err(BrokerError::already_exists("Snapshot already exists"));
        }
        let Some(sub) = inner.subscriptions.get(subscription) else {
            return Err(BrokerError::subscription_not_found());
        };
        if sub.config.topic == DELETED_TOPIC {
            return Err(BrokerError::new(
                crate::ErrorCode::FailedPrecondition,
                "The subscription's topic has been deleted.",
            ));
        }
        let messages: BTreeMap<u64, Arc<PubsubMessage>> = sub
            .messages
            .iter()
            .map(|(seq, entry)| (*seq, entry.message.clone()))
            .collect();
        inner.record(|| StoreOp::SnapshotHold {
            snapshot: name.into(),
            seqs: messages.keys().copied().collect(),
        });
        let snapshot = Snapshot {
            name: name.to_string(),
            topic: sub.config.topic.clone(),
            expire_time: Some(timestamp(SystemTime::now() + SNAPSHOT_LIFETIME)),
            labels,
        };
        inner.snapshots.insert(
            name.to_string(),
            SnapshotState {
                snapshot: snapshot.clone(),
                messages,
            },
        );
        inner.record_catalog();
        Ok(snapshot)
    }

    /// GetSnapshot.
    pub fn get_snapshot(&self, name: &str) -> BrokerResult<Snapshot> {
        names::parse(name, Collection::Snapshots)?;
        let inner = self.lock();
        inner
            .snapshots
            .get(name)
            .map(|s| s.snapshot.clone())
            .ok_or_else(|| BrokerError::not_found("Snapshot does not exist"))
    }

    /// UpdateSnapshot: labels and expire time.
    pub fn update_snapshot(&self, update: Snapshot, paths: &[String]) -> BrokerResult<Snapshot> {
        if paths.is_empty() {
            return Err(BrokerError::invalid(
                "The update_mask in the UpdateSnapshotRequest must be set, and must contain a non-empty paths list.",
            ));
        }
        names::parse(&update.name, Collection::Snapshots)?;
        let mut inner = self.lock();
        let state = inner
            .snapshots
            .get_mut(&update.name)
            .ok_or_else(|| BrokerError::not_found("Snapshot does not exist"))?;
        for path in paths {
            match path.as_str() {
                "labels" => state.snapshot.labels = update.labels.clone(),
                "expire_time" => state.snapshot.expire_time = update.expire_time,
                other => {
                    return Err(BrokerError::invalid(format!(
                        "Invalid update_mask provided in the UpdateSnapshotRequest: {other} is not a known Snapshot field."
                    )));
                }
            }
        }
        let answer = state.snapshot.clone();
        inner.record_catalog();
        Ok(answer)
    }

    /// ListSnapshots of `project`.
    pub fn list_snapshots(
        &self,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Snapshot>> {
        let project = names::parse_project(project)?;
        let prefix = format!("projects/{project}/snapshots/");
        let inner = self.lock();
        Ok(page(
            &inner.snapshots,
            &prefix,
            page_size,
            page_token,
            |_| true,
            |_, s| s.snapshot.clone(),
        ))
    }

    /// DeleteSnapshot.
    pub fn delete_snapshot(&self, name: &str) -> BrokerResult<()> {
        names::parse(name, Collection::Snapshots)?;
        let mut inner = self.lock();
        inner.iam.remove(name);
        inner
            .snapshots
            .remove(name)
            .ok_or_else(|| BrokerError::not_found("Snapshot does not exist"))?;
        inner.record(|| StoreOp::SnapshotDrop {
            snapshot: name.into(),
        });
        inner.record_catalog();
        Ok(())
    }

    /// Seek, to a snapshot or a time (the two targets of a SeekRequest).
    pub fn seek(
        &self,
        subscription: &str,
        target: Option<baton_proto::pubsub::seek_request::Target>,
    ) -> BrokerResult<()> {
        use baton_proto::pubsub::seek_request::Target;
        match target {
            Some(Target::Snapshot(snapshot)) => self.seek_to_snapshot(subscription, &snapshot),
            Some(Target::Time(time)) => self.seek_to_time(subscription, &time),
            None => Err(BrokerError::invalid(
                "No target was specified in the SeekRequest. Must specify either a time or a snapshot",
            )),
        }
    }

    /// Seek to a snapshot: the subscription's backlog becomes the snapshot's.
    pub fn seek_to_snapshot(&self, subscription: &str, snapshot: &str) -> BrokerResult<()> {
        names::parse(subscription, Collection::Subscriptions)?;
        names::parse(snapshot, Collection::Snapshots)?;
        let mut inner = self.lock();
        let Some(snap) = inner.snapshots.get(snapshot) else {
            return Err(BrokerError::not_found("Snapshot does not exist"));
        };
        let messages: Vec<(u64, Arc<PubsubMessage>)> =
            snap.messages.iter().map(|(s, m)| (*s, m.clone())).collect();
        let snap_topic = snap.snapshot.topic.clone();
        let Some(sub) = inner.subscriptions.get_mut(subscription) else {
            return Err(BrokerError::subscription_not_found());
        };
        if sub.config.topic != snap_topic {
            return Err(BrokerError::new(
                crate::ErrorCode::FailedPrecondition,
                format!(
                    "The subscription's topic {} is different from that of the snapshot {snap_topic}; they must match in order for Seek work. Note that if a topic is deleted and then re-created with the same name, it is considered a distinct topic for these purposes.",
                    sub.config.topic
                ),
            ));
        }
        reset_backlog(sub, messages);
        Ok(())
    }

    /// Seek to a time: messages published before it count as acked, later
    /// ones (still held, retained or in the topic's log) as unacked.
    pub fn seek_to_time(&self, subscription: &str, time: &wkt::Timestamp) -> BrokerResult<()> {
        names::parse(subscription, Collection::Subscriptions)?;
        let target = system_time(time);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sub) = inner.subscriptions.get_mut(subscription) else {
            return Err(BrokerError::subscription_not_found());
        };
        let published = |m: &PubsubMessage| {
            m.publish_time
                .as_ref()
                .map(system_time)
                .unwrap_or(UNIX_EPOCH)
        };
        let mut candidates: BTreeMap<u64, Arc<PubsubMessage>> = sub
            .messages
            .iter()
            .map(|(seq, entry)| (*seq, entry.message.clone()))
            .collect();
        let retained = inner.retained.entry(sub.uid).or_default();
        for (seq, (message, _)) in retained.iter() {
            candidates.insert(*seq, message.clone());
        }
        if let Some(topic) = inner.topics.get(&sub.config.topic) {
            for logged in &topic.log {
                candidates.insert(logged.seq, logged.message.clone());
            }
        }
        let keep_acked = sub.config.retain_acked_messages;
        let mut unacked = Vec::new();
        let mut acked = BTreeMap::new();
        for (seq, message) in candidates {
            let when = published(&message);
            if when >= target {
                unacked.push((seq, message));
            } else if keep_acked {
                acked.insert(seq, (message, when));
            }
        }
        if let Some(journal) = &inner.journal {
            journal.push(StoreOp::RetainNone {
                subscription: sub.uid,
            });
            for (seq, (_, published)) in &acked {
                journal.push(StoreOp::Retain {
                    subscription: sub.uid,
                    seq: *seq,
                    published: *published,
                });
            }
        }
        *retained = acked;
        reset_backlog(sub, unacked);
        Ok(())
    }

    /// DetachSubscription: the subscription stops receiving and its backlog
    /// is dropped; pulls answer FAILED_PRECONDITION.
    pub fn detach_subscription(&self, name: &str) -> BrokerResult<()> {
        self.with_sub(name, |inner| {
            let Some(sub) = inner.subscriptions.get_mut(name) else {
                return Err(BrokerError::subscription_not_found());
            };
            sub.config.detached = true;
            reset_backlog(sub, Vec::new());
            let topic = sub.config.topic.clone();
            if let Some(topic) = inner.topics.get_mut(&topic) {
                topic.subscriptions.remove(name);
            }
            inner.record_catalog();
            self.catalog_changed();
            Ok(())
        })
    }

    /// Fires due timers and returns when the next one is due.
    fn fire_timers(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut woken: Vec<Arc<Notify>> = Vec::new();
        let mut dead: Vec<DeadLetterBatch> = Vec::new();
        let mut new_timers = Vec::new();
        while let Some(Reverse(timer)) = inner.timers.peek() {
            if timer.at > now {
                break;
            }
            let Some(Reverse(timer)) = inner.timers.pop() else {
                break;
            };
            let Some(sub) = inner.subscriptions.get_mut(&*timer.sub_name) else {
                continue;
            };
            if sub.uid != timer.sub_uid {
                continue;
            }
            match timer.kind {
                TimerKind::LeaseExpiry { ack } => {
                    if let Some(seq) = sub.lease_expired(ack, now) {
                        let outcome = sub.requeue(seq, now);
                        if let Some(observer) = &inner.observer {
                            let dead_letter_topic = sub
                                .config
                                .dead_letter_policy
                                .as_ref()
                                .map(|p| p.dead_letter_topic.as_str());
                            observe_requeue(
                                observer.as_ref(),
                                &timer.sub_name,
                                dead_letter_topic,
                                &outcome,
                                LeaseEnd::Expired,
                                now,
                            );
                        }
                        for (at, seq) in outcome.backoff_timers {
                            new_timers.push(Timer {
                                at,
                                sub_uid: sub.uid,
                                kind: TimerKind::BackoffOver { seq },
                                sub_name: timer.sub_name.clone(),
                            });
                        }
                        if !outcome.dead_letters.is_empty() {
                            dead.push(DeadLetterBatch {
                                subscription: timer.sub_name.to_string(),
                                source_topic: sub.config.topic.clone(),
                                dead_letter_topic: sub
                                    .config
                                    .dead_letter_policy
                                    .as_ref()
                                    .map(|p| p.dead_letter_topic.clone()),
                                letters: outcome.dead_letters,
                            });
                        }
                        woken.push(sub.notify.clone());
                    }
                }
                TimerKind::BackoffOver { seq } => {
                    if sub.backoff_elapsed(seq, now) {
                        woken.push(sub.notify.clone());
                    }
                }
            }
        }
        for timer in new_timers {
            inner.timers.push(Reverse(timer));
        }
        for batch in dead {
            forward_dead_letters(
                inner,
                &batch.subscription,
                &batch.source_topic,
                batch.dead_letter_topic,
                batch.letters,
            );
        }
        for notify in woken {
            notify.notify_waiters();
        }
        inner.timers.peek().map(|Reverse(t)| t.at)
    }
}

/// Messages of one subscription that ran out of delivery attempts.
struct DeadLetterBatch {
    subscription: String,
    source_topic: String,
    dead_letter_topic: Option<String>,
    letters: Vec<(Arc<PubsubMessage>, i32)>,
}

/// Message ids and ack numbers one opening of a disk store may hand out, as
/// a power of two.
const OPENING_RANGE_BITS: u32 = 40;

/// Rebuilds the broker's state from what the disk store held.
fn restore(inner: &mut Inner, recovered: Recovered) {
    let Recovered {
        catalog,
        messages,
        owed,
        snapshot_messages,
        retained,
        logged,
        next_seq,
        opening,
    } = recovered;
    let messages: HashMap<u64, (Arc<PubsubMessage>, SystemTime)> = messages
        .into_iter()
        .map(|(seq, stored)| (seq, (Arc::new(stored.message), stored.published)))
        .collect();
    // Messages are delivered before their fsync; if the process died in
    // between, ids it handed out are not in the store. Each opening takes
    // ids from its own range of 2^40 (the first from 1), so none repeats.
    inner.next_seq = next_seq.max((opening.saturating_sub(1) << OPENING_RANGE_BITS) | 1);
    // Ack ids of earlier runs must not settle this run's deliveries: each
    // opening numbers its acks from its own range of 2^40 (the first from
    // 1, like an in-memory broker).
    inner.next_ack = (opening.saturating_sub(1) << OPENING_RANGE_BITS) | 1;
    inner.schemas = SchemaRegistry::restore(catalog.schemas);
    inner.iam = crate::iam::IamPolicies::restore(catalog.policies);
    for topic in catalog.topics {
        inner.topics.insert(
            topic.name.clone(),
            TopicState {
                topic,
                subscriptions: BTreeSet::new(),
                log: Default::default(),
            },
        );
    }
    let mut missing = 0usize;
    for (topic, seq) in logged {
        match (inner.topics.get_mut(&topic), messages.get(&seq)) {
            (Some(state), Some((message, published))) => state.log.push_back(LoggedMessage {
                seq,
                message: message.clone(),
                published: *published,
            }),
            _ => missing += 1,
        }
    }
    // Uids as before: long-named subscriptions' ack ids carry them.
    inner.next_uid = catalog
        .subscriptions
        .iter()
        .map(|(uid, _)| uid + 1)
        .fold(catalog.next_uid.max(1), u64::max);
    let mut names = HashMap::new();
    for (uid, config) in catalog.subscriptions {
        let mut state = SubState::new(uid, config.clone());
        if !config.filter.is_empty() {
            match crate::filter::Filter::parse(&config.filter) {
                Ok(filter) => state.filter = Some(filter),
                Err(error) => {
                    tracing::warn!(subscription = %config.name, %error, "stored filter does not parse; delivering everything");
                }
            }
        }
        if !config.detached
            && let Some(topic) = inner.topics.get_mut(&config.topic)
        {
            topic.subscriptions.insert(config.name.clone());
        }
        names.insert(uid, config.name.clone());
        inner.subscriptions.insert(config.name, state);
    }
    let now = Instant::now();
    for (uid, seq, attempts) in owed {
        let sub = names
            .get(&uid)
            .and_then(|name| inner.subscriptions.get_mut(name));
        match (sub, messages.get(&seq)) {
            (Some(sub), Some((message, _))) => sub.restore(seq, message.clone(), attempts, now),
            _ => missing += 1,
        }
    }
    for snapshot in catalog.snapshots {
        inner.snapshots.insert(
            snapshot.name.clone(),
            SnapshotState {
                snapshot,
                messages: BTreeMap::new(),
            },
        );
    }
    for (name, seq) in snapshot_messages {
        match (inner.snapshots.get_mut(&name), messages.get(&seq)) {
            (Some(snapshot), Some((message, _))) => {
                snapshot.messages.insert(seq, message.clone());
            }
            _ => missing += 1,
        }
    }
    for (uid, seq, published) in retained {
        match (names.contains_key(&uid), messages.get(&seq)) {
            (true, Some((message, _))) => {
                inner
                    .retained
                    .entry(uid)
                    .or_default()
                    .insert(seq, (message.clone(), published));
            }
            _ => missing += 1,
        }
    }
    if missing > 0 {
        tracing::warn!(
            missing,
            "store rows refer to messages or resources that are gone; ignored"
        );
    }
    let backlog: usize = inner
        .subscriptions
        .values()
        .map(SubState::backlog_len)
        .sum();
    tracing::info!(
        topics = inner.topics.len(),
        subscriptions = inner.subscriptions.len(),
        snapshots = inner.snapshots.len(),
        unacked = backlog,
        "state recovered from the disk store"
    );
}

/// Replaces a subscription's backlog with `messages`, all unacked and ready,
/// and forgets every outstanding lease.
fn reset_backlog(sub: &mut SubState, messages: Vec<(u64, Arc<PubsubMessage>)>) {
    sub.clear();
    let mut messages = messages;
    messages.sort_by_key(|(seq, _)| *seq);
    let now = Instant::now();
    for (seq, message) in messages {
        sub.enqueue(seq, message, now);
    }
    sub.notify.notify_waiters();
}

/// Appends messages to a topic and fans them out. The caller validated them.
/// `received` is when the request arrived, for the observer.
fn publish_locked(
    inner: &mut Inner,
    topic: &str,
    messages: Vec<PubsubMessage>,
    received: SystemTime,
) -> BrokerResult<Vec<String>> {
    let now = SystemTime::now();
    let available = Instant::now();
    let publish_time = timestamp(now);
    let Some(state) = inner.topics.get_mut(topic) else {
        return Err(BrokerError::topic_not_found());
    };
    let retention = state.retention();
    let journal = inner.journal.as_ref();
    let topic_key: Option<Arc<str>> = journal.map(|_| topic.into());
    let mut ids = Vec::with_capacity(messages.len());
    let mut stored = Vec::with_capacity(messages.len());
    for mut message in messages {
        let seq = inner.next_seq;
        inner.next_seq += 1;
        message.message_id = seq.to_string();
        message.publish_time = Some(publish_time);
        ids.push(message.message_id.clone());
        let message = Arc::new(message);
        if let Some(journal) = journal {
            journal.push(StoreOp::Message {
                seq,
                published: now,
                message: message.clone(),
            });
        }
        stored.push((seq, message));
    }
    if retention.is_some() {
        for (seq, message) in &stored {
            state.log.push_back(LoggedMessage {
                seq: *seq,
                message: message.clone(),
                published: now,
            });
            if let (Some(journal), Some(topic)) = (journal, &topic_key) {
                journal.push(StoreOp::Log {
                    topic: topic.clone(),
                    seq: *seq,
                });
            }
        }
    }
    state.prune_log(now, journal);
    for (name, snapshot) in &mut inner.snapshots {
        if snapshot.snapshot.topic == topic {
            for (seq, message) in &stored {
                snapshot.messages.insert(*seq, message.clone());
            }
            if let Some(journal) = journal {
                journal.push(StoreOp::SnapshotHold {
                    snapshot: name.as_str().into(),
                    seqs: stored.iter().map(|(seq, _)| *seq).collect(),
                });
            }
        }
    }
    for sub_name in &state.subscriptions {
        if let Some(sub) = inner.subscriptions.get_mut(sub_name) {
            if sub.config.detached {
                continue;
            }
            for (seq, message) in &stored {
                sub.offer(*seq, message.clone(), available);
            }
            sub.notify.notify_waiters();
        }
    }
    if let Some(observer) = &inner.observer {
        let messages: Vec<Arc<PubsubMessage>> = stored.into_iter().map(|(_, m)| m).collect();
        observer.published(topic, &messages, received, SystemTime::now());
    }
    Ok(ids)
}

/// Republishes messages whose delivery attempts ran out to the dead-letter
/// topic, with the service's source attributes. A missing topic drops them
/// (the service does the same, logging a permission error).
fn forward_dead_letters(
    inner: &mut Inner,
    subscription: &str,
    source_topic: &str,
    dead_letter_topic: Option<String>,
    letters: Vec<(Arc<PubsubMessage>, i32)>,
) {
    let Some(dead_letter_topic) = dead_letter_topic else {
        return;
    };
    if letters.is_empty() {
        return;
    }
    let (project, short) = names::parse(subscription, Collection::Subscriptions)
        .map(|n| (n.project.to_string(), n.id.to_string()))
        .unwrap_or_default();
    let copies: Vec<PubsubMessage> = letters
        .into_iter()
        .map(|(original, attempts)| {
            let mut copy = (*original).clone();
            let publish_time = copy.publish_time.take();
            copy.message_id.clear();
            copy.attributes.insert(
                "CloudPubSubDeadLetterSourceDeliveryCount".into(),
                attempts.to_string(),
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
        .collect();
    if let Err(error) = publish_locked(inner, &dead_letter_topic, copies, SystemTime::now()) {
        tracing::warn!(%subscription, %source_topic, %dead_letter_topic, %error, "dead-lettering failed");
    }
}

/// RFC 3339 in UTC with millisecond precision, as the service writes
/// publish times into dead-letter attributes.
fn format_rfc3339(ts: &wkt::Timestamp) -> String {
    let secs = ts.seconds;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let millis = ts.nanos / 1_000_000;
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

async fn run_timers(broker: Weak<Broker>) {
    loop {
        let Some(strong) = broker.upgrade() else {
            return;
        };
        let wake_handle = strong.timer_wake.clone();
        let wake = wake_handle.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let next = strong.fire_timers(Instant::now());
        drop(strong);
        // Sleep at most a second so a dropped broker ends this task soon.
        let cap = Instant::now() + Duration::from_secs(1);
        let until = next.map_or(cap, |n| n.min(cap));
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = &mut wake => {}
        }
    }
}

/// The SchemaService's operations. The catalog lives under the broker's lock
/// next to the topics whose `schema_settings` refer to it.
impl Broker {
    /// CreateSchema `parent/schemas/schema_id`.
    pub fn create_schema(
        &self,
        parent: &str,
        schema_id: &str,
        schema: Option<&Schema>,
    ) -> BrokerResult<Schema> {
        self.catalog_change(|inner| inner.schemas.create(parent, schema_id, schema))
    }

    /// Runs a catalog change; when it succeeds, the catalog is recorded.
    fn catalog_change<T>(
        &self,
        change: impl FnOnce(&mut Inner) -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        let mut inner = self.lock();
        let answer = change(&mut inner)?;
        inner.record_catalog();
        Ok(answer)
    }

    /// GetSchema of `name` or `name@revision`.
    pub fn get_schema(&self, name: &str, view: i32) -> BrokerResult<Schema> {
        self.lock().schemas.get(name, view)
    }

    /// ListSchemas of `parent` (`projects/{id}`).
    pub fn list_schemas(
        &self,
        parent: &str,
        view: i32,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Schema>> {
        self.lock()
            .schemas
            .list(parent, view, page_size, page_token)
    }

    /// ListSchemaRevisions of `name`, oldest first.
    pub fn list_schema_revisions(
        &self,
        name: &str,
        view: i32,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Schema>> {
        self.lock()
            .schemas
            .list_revisions(name, view, page_size, page_token)
    }

    /// CommitSchema: a new revision of `name`.
    pub fn commit_schema(&self, name: &str, schema: Option<&Schema>) -> BrokerResult<Schema> {
        self.catalog_change(|inner| inner.schemas.commit(name, schema))
    }

    /// RollbackSchema: a new revision copying `revision_id`.
    pub fn rollback_schema(&self, name: &str, revision_id: &str) -> BrokerResult<Schema> {
        self.catalog_change(|inner| inner.schemas.rollback(name, revision_id))
    }

    /// DeleteSchemaRevision of `name@revision`.
    pub fn delete_schema_revision(&self, name: &str) -> BrokerResult<Schema> {
        self.catalog_change(|inner| inner.schemas.delete_revision(name))
    }

    /// DeleteSchema. Topics bound to it keep their settings but report the
    /// schema as `_deleted-schema_` and refuse publishes from then on.
    pub fn delete_schema(&self, name: &str) -> BrokerResult<()> {
        let mut inner = self.lock();
        inner.schemas.delete(name)?;
        for state in inner.topics.values_mut() {
            if let Some(settings) = &mut state.topic.schema_settings
                && settings.schema == name
            {
                settings.schema = schema::DELETED_SCHEMA.to_owned();
            }
        }
        inner.record_catalog();
        Ok(())
    }

    /// ValidateSchema: whether CreateSchema would accept `schema`.
    pub fn validate_schema(&self, schema: Option<&Schema>) -> BrokerResult<()> {
        schema::validate_definition(schema)
    }

    /// ValidateMessage: decodes `message` with a stored or an inline schema.
    pub fn validate_message(
        &self,
        source: SchemaSource<'_>,
        message: &[u8],
        encoding: i32,
    ) -> BrokerResult<()> {
        let compiled = match source {
            SchemaSource::Name(name) => self.lock().schemas.compiled(name)?,
            SchemaSource::Inline(schema) => Arc::new(schema::CompiledSchema::compile(
                schema.r#type,
                &schema.definition,
            )?),
            SchemaSource::Missing => return Err(schema::SchemaError::InvalidType.into()),
        };
        let encoding = schema::message_encoding(encoding)?;
        compiled.validate(message, encoding)?;
        Ok(())
    }
}

/// IAM: policies are stored per resource (see `iam.rs` for why nothing is
/// enforced).
impl Broker {
    fn check_resource(inner: &Inner, resource: &str) -> BrokerResult<()> {
        let collection = resource.split('/').nth(2).unwrap_or_default();
        let kind = match collection {
            "topics" => Collection::Topics,
            "subscriptions" => Collection::Subscriptions,
            "snapshots" => Collection::Snapshots,
            "schemas" => Collection::Schemas,
            _ => {
                return Err(BrokerError::invalid(format!(
                    "Invalid resource name: {resource}"
                )));
            }
        };
        names::parse(resource, kind)?;
        let exists = match kind {
            Collection::Topics => inner.topics.contains_key(resource),
            Collection::Subscriptions => inner.subscriptions.contains_key(resource),
            Collection::Snapshots => inner.snapshots.contains_key(resource),
            Collection::Schemas => inner.schemas.get(resource, 0).is_ok(),
        };
        if exists {
            Ok(())
        } else {
            Err(BrokerError::not_found(format!(
                "Resource not found (resource={}).",
                resource.rsplit('/').next().unwrap_or(resource)
            )))
        }
    }

    /// GetIamPolicy.
    pub fn get_iam_policy(&self, resource: &str) -> BrokerResult<baton_proto::iam::Policy> {
        let inner = self.lock();
        Self::check_resource(&inner, resource)?;
        Ok(inner.iam.get(resource))
    }

    /// SetIamPolicy; `paths` is the request's update mask (empty: replace).
    pub fn set_iam_policy(
        &self,
        resource: &str,
        policy: baton_proto::iam::Policy,
        paths: &[String],
    ) -> BrokerResult<baton_proto::iam::Policy> {
        self.catalog_change(|inner| {
            Self::check_resource(inner, resource)?;
            inner.iam.set(resource, policy, paths)
        })
    }

    /// TestIamPermissions: every permission asked for is granted.
    pub fn test_iam_permissions(
        &self,
        resource: &str,
        permissions: Vec<String>,
    ) -> BrokerResult<Vec<String>> {
        let inner = self.lock();
        Self::check_resource(&inner, resource)?;
        Ok(permissions)
    }
}

#[cfg(test)]
impl Broker {
    /// Everything the disk store promises to bring back, in a comparable
    /// form: catalog, each subscription's unacked messages and retained
    /// ones, topic logs and snapshot contents.
    pub(crate) fn durable_view(&self) -> String {
        use std::fmt::Write as _;
        let inner = self.lock();
        let mut view = String::new();
        for (name, topic) in &inner.topics {
            let log: Vec<u64> = topic.log.iter().map(|m| m.seq).collect();
            let _ = writeln!(
                view,
                "topic {name} {:?} subs={:?} log={log:?}",
                topic.topic, topic.subscriptions
            );
        }
        for (name, sub) in &inner.subscriptions {
            let backlog: BTreeMap<u64, (i32, &PubsubMessage)> = sub
                .messages
                .iter()
                .map(|(seq, entry)| (*seq, (entry.attempts, &*entry.message)))
                .collect();
            let retained: Vec<u64> = inner
                .retained
                .get(&sub.uid)
                .map(|r| r.keys().copied().collect())
                .unwrap_or_default();
            let _ = writeln!(
                view,
                "sub {name} uid={} {:?} filter={} backlog={backlog:?} retained={retained:?}",
                sub.uid,
                sub.config,
                sub.filter.is_some()
            );
        }
        for (name, snapshot) in &inner.snapshots {
            let seqs: Vec<u64> = snapshot.messages.keys().copied().collect();
            let _ = writeln!(view, "snapshot {name} {:?} {seqs:?}", snapshot.snapshot);
        }
        let _ = writeln!(view, "schemas {:?}", inner.schemas.export());
        let mut policies = inner.iam.export();
        policies.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(view, "policies {policies:?}");
        view
    }

    /// The sequence (message id) the next published message gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_instants_map_to_wall_clock_time() {
        let now = Instant::now();
        let wall_now = UNIX_EPOCH + Duration::from_secs(1_000);
        let second = Duration::from_secs(1);
        assert_eq!(wall(now, now, wall_now), wall_now);
        assert_eq!(wall(now - second, now, wall_now), wall_now - second);
        assert_eq!(wall(now + second, now, wall_now), wall_now + second);
    }

    #[test]
    fn rfc3339_formatting() {
        let ts = wkt::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000_000,
        };
        assert_eq!(format_rfc3339(&ts), "2023-11-14T22:13:20.123Z");
    }

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
    }
}
