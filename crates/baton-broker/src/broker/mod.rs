//! The broker: catalog plus delivery, behind one lock.
//!
//! One mutex guards the whole [`State`]. Every operation is short and never
//! awaits while holding it, and a single lock makes fan-out, acks and seeks
//! atomic without lock-ordering puzzles. Waiting (pull, streams) happens
//! outside the lock on per-subscription `Notify`s that the operations wake.
//!
//! The operations live by area, each an `impl Broker` of its own:
//! [`topics`](self::topics) (and publishing), [`subscriptions`](self::subscriptions),
//! [`leases`](self::leases) (pull, streams, ack, modack), [`snapshots`](self::snapshots)
//! (and seek), [`schemas`](self::schemas) and [`policies`](self::policies). They change
//! the state through the subscription's delivery state machine
//! ([`delivery`]) and the topic fan-out ([`fanout`]), which record what must
//! follow (journal, timers, wake-ups, observer events, dead letters) in
//! [`effects`]; [`commit`] carries it out when the lock is let go.
//! [`timers`], [`dead_letter`] and [`recovery`] are the broker's own work.
//!
//! Time comes from the [`Clock`] the broker is given.

mod commit;
pub(crate) mod counters;
mod dead_letter;
mod delivery;
mod effects;
mod expiry;
mod fanout;
pub(crate) mod history;
pub(crate) mod journal;
pub(crate) mod leases;
mod policies;
mod recovery;
mod schemas;
mod snapshots;
mod state;
pub(crate) mod stats;
mod subscriptions;
mod timers;
mod topics;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use self::delivery::BacklogPager;
use self::state::State;
use crate::clock::Clock;
use crate::error::{BrokerError, BrokerResult, ErrorCode};
use crate::observer::DeliveryObserver;
use crate::store::{Journal, Storage, StoreError};

/// What a request hears when the disk store fails it.
fn storage_error(error: StoreError) -> BrokerError {
    match error {
        StoreError::Closed => {
            BrokerError::new(ErrorCode::Unavailable, "The service is shutting down.")
        }
        error => BrokerError::new(ErrorCode::Internal, format!("storage failure: {error}")),
    }
}

/// The topic a subscription reports once its topic has been deleted.
pub const DELETED_TOPIC: &str = "_deleted-topic_";

/// The Pub/Sub engine. Cheap to share: hand out `Arc<Broker>`.
#[derive(Debug)]
pub struct Broker {
    state: Mutex<State>,
    clock: Clock,
    /// Wakes the timer task when a timer is armed.
    timer_wake: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    /// Catalog version, bumped by every catalog change (a subscription
    /// created, updated, deleted or detached, its push config changed...),
    /// so push delivery can follow the catalog without polling it.
    catalog: watch::Sender<u64>,
    /// The disk store, when the broker is durable.
    storage: OnceLock<Arc<Storage>>,
    /// The IAM policies, readable without the state's lock.
    policies: crate::iam::PolicyView,
    /// Turns `true` once the disk store's background count after opening
    /// is done (at once without a store): until then the stats count only
    /// what each backlog holds in memory.
    backlog_counted: watch::Sender<bool>,
}

impl Drop for Broker {
    /// Wakes the timer task, which then finds the broker gone and ends.
    fn drop(&mut self) {
        self.timer_wake.notify_one();
    }
}

/// How to make a [`Broker`]: its clock and where it keeps its state.
#[derive(Debug, Clone)]
pub struct BrokerBuilder {
    clock: Clock,
    data_dir: Option<std::path::PathBuf>,
    message_history: usize,
}

impl Default for BrokerBuilder {
    fn default() -> Self {
        Self {
            clock: Clock::default(),
            data_dir: None,
            message_history: journal::DEFAULT_MESSAGE_HISTORY,
        }
    }
}

impl BrokerBuilder {
    /// Reads time from `clock` (the system clock by default).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the histories of the last `messages` messages for
    /// [`Broker::message_history`] ([`journal::DEFAULT_MESSAGE_HISTORY`]
    /// unless told; 0 turns the message journal off).
    pub fn message_history(mut self, messages: usize) -> Self {
        self.message_history = messages;
        self
    }

    /// Keeps the state durable in the disk store in `dir` (created if
    /// missing; what it holds comes back). Without it, state is in memory
    /// only.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Makes the broker and starts its timer task on the current Tokio
    /// runtime; the task ends when the broker is dropped. With a data
    /// directory, everything the store holds comes back (catalog, unacked
    /// messages, snapshots, retained messages, failed delivery attempts) and
    /// every later change is written to it; unacked messages are ready for
    /// delivery again and leases start afresh.
    pub fn start(self) -> Result<Arc<Broker>, StoreError> {
        let opened = match &self.data_dir {
            Some(dir) => Some(Storage::open(dir)?),
            None => None,
        };
        Ok(self.assemble(opened))
    }

    /// The broker over what a store held (or nothing), its timer task started.
    fn assemble(
        self,
        opened: Option<(Storage, crate::store::Recovered, crate::store::BacklogCount)>,
    ) -> Arc<Broker> {
        let (shutdown, _) = watch::channel(false);
        let (catalog, _) = watch::channel(0u64);
        let mut state = State {
            history: journal::MessageJournal::new(self.message_history),
            ..State::default()
        };
        let storage = OnceLock::new();
        let mut count = None;
        if let Some((store, recovered, backlog_count)) = opened {
            let store = Arc::new(store);
            let journal = Journal::new(store.clone());
            let pager = BacklogPager::new(journal.clone(), recovered.catalog.subscriptions.len());
            recovery::restore(&mut state, recovered, self.clock.read(), &pager);
            state.journal = Some(journal);
            state.pager = Some(pager);
            count = Some((store.clone(), backlog_count));
            // Freshly made: nobody else can have set it.
            let _ = storage.set(store);
        }
        let policies = state.iam.view();
        let broker = Arc::new(Broker {
            policies,
            state: Mutex::new(state),
            clock: self.clock,
            timer_wake: Arc::new(Notify::new()),
            shutdown,
            catalog,
            storage,
            backlog_counted: watch::channel(count.is_none()).0,
        });
        tokio::spawn(run_timers(Arc::downgrade(&broker)));
        if let Some((store, backlog_count)) = count {
            let broker = Arc::downgrade(&broker);
            // On the blocking pool: a runtime on virtual time counts it as
            // busy, so its clock does not jump ahead while it reads.
            drop(tokio::task::spawn_blocking(move || {
                count_backlog(&store, backlog_count, &broker);
            }));
        }
        broker
    }
}

/// Runs the disk store's count over what it held when it was opened (see
/// [`Storage::count_backlog`]) and gives each backlog its size on disk.
fn count_backlog(store: &Storage, count: crate::store::BacklogCount, broker: &Weak<Broker>) {
    let started = std::time::Instant::now();
    match store.count_backlog(count) {
        Ok(tails) => {
            let Some(broker) = broker.upgrade() else {
                return;
            };
            let (messages, bytes) = recovery::count_tails(&mut broker.lock(), &tails);
            broker.backlog_counted.send_replace(true);
            tracing::info!(
                messages_on_disk = messages,
                bytes_on_disk = bytes,
                took_ms = started.elapsed().as_millis(),
                "disk store counted in the background"
            );
        }
        Err(error) => {
            if !matches!(error, StoreError::Closed) {
                tracing::error!(%error, "counting the disk store failed; settled messages of earlier runs stay on disk until the next start");
            }
            if let Some(broker) = broker.upgrade() {
                broker.backlog_counted.send_replace(true);
            }
        }
    }
}

/// The broker's lock, held for one operation. Letting go of it ends the
/// operation: its effects are carried out ([`commit::commit`]).
pub(crate) struct Txn<'a> {
    guard: MutexGuard<'a, State>,
    broker: &'a Broker,
}

impl std::ops::Deref for Txn<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Txn<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        commit::commit(
            &mut self.guard,
            &self.broker.clock,
            &self.broker.catalog,
            &self.broker.timer_wake,
        );
    }
}

impl Broker {
    /// How to make a broker with a clock or a disk store of its own choosing.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// An in-memory broker on the system clock; see [`BrokerBuilder::start`].
    pub fn start() -> Arc<Self> {
        Self::builder().assemble(None)
    }

    /// A durable broker on the disk store in `dir`, on the system clock; see
    /// [`BrokerBuilder::start`].
    pub fn open(dir: &std::path::Path) -> Result<Arc<Self>, StoreError> {
        Self::builder().data_dir(dir).start()
    }

    /// The clock the broker reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Takes the lock for one operation.
    pub(crate) fn lock(&self) -> Txn<'_> {
        // A panic elsewhere must not take every later request down with it.
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        guard.fx.durable = guard.journal.is_some();
        guard.fx.observing = guard.observer.is_some();
        guard.fx.recording = guard.history.is_some();
        Txn {
            guard,
            broker: self,
        }
    }

    /// Resolves once every change made so far is on disk (at once for an
    /// in-memory broker). Requests that promise durability (publish, ack,
    /// catalog changes) await it before answering.
    pub fn durable(&self) -> impl Future<Output = BrokerResult<()>> + Send + 'static {
        let wait = self.storage.get().map(|storage| storage.durable());
        async move {
            match wait {
                None => Ok(()),
                Some(wait) => wait.await.map_err(storage_error),
            }
        }
    }

    /// Resolves once the disk store's background count after opening is
    /// done (at once without a store, or if the broker goes away): from
    /// then on the stats count the whole of each backlog.
    pub async fn backlog_counted(&self) {
        let mut counted = self.backlog_counted.subscribe();
        let _ = counted.wait_for(|counted| *counted).await;
    }

    /// The disk store, if the broker is durable.
    pub fn storage(&self) -> Option<&Arc<Storage>> {
        self.storage.get()
    }

    /// Writes what is queued and closes the disk store (so another broker
    /// may open it); later changes stay in memory only. Blocks until the
    /// store's writer is done, so call it from a blocking context.
    pub fn close_storage(&self) {
        self.lock().journal = None;
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

    /// Tells every waiting pull and stream that the broker is going away.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        let state = self.lock();
        for sub in state.subscriptions.values() {
            sub.notify.notify_waiters();
        }
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver of the catalog version: it changes whenever the catalog
    /// does (a subscription created, updated, deleted or detached, its push
    /// config changed...). Push delivery watches it to start and stop its
    /// pushers promptly.
    pub fn catalog_changes(&self) -> watch::Receiver<u64> {
        self.catalog.subscribe()
    }

    /// Fires due timers; when the next one is due.
    fn fire_timers(&self) -> Option<tokio::time::Instant> {
        let mut state = self.lock();
        timers::fire_due(&mut state, self.clock.read())
    }
}

/// The timer task: fires timers as they come due, for as long as the broker
/// lives.
async fn run_timers(broker: Weak<Broker>) {
    loop {
        let Some(strong) = broker.upgrade() else {
            return;
        };
        let wake_handle = strong.timer_wake.clone();
        let wake = wake_handle.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let next = strong.fire_timers();
        let now = strong.clock.now();
        drop(strong);
        // Sleep at most ten minutes, so a wall clock that jumped (the
        // system's) is followed within that; a dropped broker wakes the task
        // at once (its `Drop`), and the task ends.
        let cap = now + Duration::from_secs(600);
        let until = next.map_or(cap, |n| n.min(cap));
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = &mut wake => {}
        }
    }
}

#[cfg(test)]
impl Broker {
    /// Everything the disk store promises to bring back, in a comparable
    /// form: catalog, each subscription's unacked messages and retained
    /// ones, topic logs and snapshot contents.
    pub(crate) fn durable_view(&self) -> String {
        use std::collections::BTreeMap;
        use std::fmt::Write as _;

        let state = self.lock();
        let mut view = String::new();
        for (name, topic) in &state.topics {
            let log: Vec<u64> = topic.log.iter().map(|m| m.seq).collect();
            let _ = writeln!(
                view,
                "topic {name} {:?} subs={:?} log={log:?}",
                topic.topic, topic.subscriptions
            );
        }
        for (name, sub) in &state.subscriptions {
            // Spilled messages read in, so the view does not depend on
            // which part of the backlog is in memory.
            let messages: BTreeMap<u64, Arc<crate::HeldMessage>> =
                sub.unacked().unwrap_or_default().into_iter().collect();
            let backlog: BTreeMap<u64, (i32, Option<&crate::HeldMessage>)> = sub
                .attempts()
                .into_iter()
                .map(|(seq, attempts)| (seq, (attempts, messages.get(&seq).map(|m| &**m))))
                .collect();
            let retained: Vec<u64> = state
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
        for (name, snapshot) in &state.snapshots {
            let seqs: Vec<u64> = snapshot.messages.keys().copied().collect();
            let _ = writeln!(view, "snapshot {name} {:?} {seqs:?}", snapshot.snapshot);
        }
        let _ = writeln!(view, "schemas {:?}", state.schemas.export());
        let mut policies = state.iam.export();
        policies.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(view, "policies {policies:?}");
        view
    }

    /// The sequence (message id) the next published message gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }
}
