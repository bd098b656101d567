//! The disk store: what the broker must find again after a restart.
//!
//! The broker keeps serving from memory; the store is a write-behind journal
//! of its durable state in one [redb] file. Every change is recorded under
//! the broker's lock (so the store sees changes in the order the broker made
//! them) as a [`StoreOp`] on a queue; one writer applies whatever has queued
//! up in a single transaction and commits it with an fsync (group commit: a
//! burst of concurrent publishes shares one fsync). The writer runs on
//! Tokio's blocking pool while there is work, so a runtime whose time is
//! paused (tests on virtual time) does not move its clock on while the disk
//! is busy: time stands still until the fsync is done. Requests that
//! promise durability (publish, ack, catalog changes) wait on
//! [`Storage::durable`] before answering.
//!
//! What is stored: the catalog (topics, subscriptions, snapshots, schemas
//! with their revisions, IAM policies), each message once, and which
//! subscriptions still owe it, which snapshots hold it, which acked messages
//! a subscription retains, which messages a topic retains, and the delivery
//! attempts that ended without an ack. A message row goes when nothing
//! refers to it any more. Leases and ack ids are not stored: after a restart
//! every unacked message is ready again.
//!
//! Payloads live here, not in the broker's memory (see [`crate::held`]):
//! the broker holds messages without their data, and [`Storage::fill_payloads`]
//! puts it back as messages go out, from a bounded cache of recent payloads
//! (a live subscriber finds its messages there; a payload stays cached at
//! least until it is on disk, since the file cannot answer before that) or
//! from the file. redb's own page cache is bounded too, so memory does not
//! grow with the backlog's bytes.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::iam::Policy;
use baton_proto::pubsub::{PubsubMessage, Schema, Snapshot, Subscription, Topic};

use crate::held::HeldMessage;
use crate::leased::{Payload, PayloadSlot};
use crate::payload_log::{Location, PAYLOAD_DIR, PayloadReader, PayloadWriter};
use crate::published::PublishedMessage;
use crate::ref_counts::{MessageRefs, RefCounts};
use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

/// Catalog rows: (kind, resource name, number) -> protobuf bytes. The
/// number orders a schema's revisions and is a subscription's uid (its ack
/// ids may name it); it is 0 for everything else.
const CATALOG: TableDefinition<(u8, &str, u64), &[u8]> = TableDefinition::new("catalog");
/// Messages: sequence -> (publish time in ns since the epoch, size of the
/// whole message, where its payload is in the payload log (segment, offset,
/// length), protobuf bytes without the payload): what the broker holds in
/// memory, read back as it needs it (the windows when the store is opened,
/// the rest of a backlog as it drains). The payloads themselves are in the
/// [`payload_log`](crate::payload_log).
const MESSAGES: TableDefinition<u64, MessageRow> = TableDefinition::new("message_meta");
/// A row of [`MESSAGES`].
pub(crate) type MessageRow<'a> = (u64, u64, u64, u64, u64, &'a [u8]);
/// The first layout: messages whole in one table. Moved to [`MESSAGES`] and
/// the payload log when such a store is opened.
const WHOLE_MESSAGES: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("messages");
/// (subscription uid, sequence) -> delivery attempts that ended without an
/// ack: the subscription has not acked the message.
const OWED: TableDefinition<(u64, u64), u32> = TableDefinition::new("owed");
/// (snapshot, sequence): the snapshot holds the message.
const SNAPSHOT_MESSAGES: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("snapshot_messages");
/// (subscription uid, sequence) -> publish time (ns): an acked message the
/// subscription retains (`retain_acked_messages`).
const RETAINED: TableDefinition<(u64, u64), u64> = TableDefinition::new("retained");
/// (topic, sequence): a message the topic retains (`message_retention_duration`).
const LOGGED: TableDefinition<(&str, u64), ()> = TableDefinition::new("logged");
/// Counters that must never go back (the next message sequence).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_SEQ: &str = "next_seq";
const NEXT_UID: &str = "next_uid";
/// How many times the store has been opened.
const OPENINGS: &str = "openings";
/// The most changes one transaction takes; more wait for the next one.
const MAX_BATCH: usize = 50_000;
/// Bytes of recent payloads kept in memory once they are on disk.
const PAYLOAD_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// redb's page cache (its default, 1 GiB, grew with the backlog).
const PAGE_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Messages kept in the cache of recent messages once they are on disk,
/// whatever their payloads' size (messages without a payload count too).
const CACHED_MESSAGES: usize = 65_536;
/// The most ready messages a subscription holds in memory with the disk
/// store; what its backlog holds beyond them waits on disk (see
/// [`crate::held`]) and is read in as the window drains. Small in the unit
/// tests, so that their few messages already go to disk.
pub(crate) const MAX_READY_WINDOW: usize = if cfg!(test) { 8 } else { 2_000 };
/// The fewest: enough for a subscriber's batches.
const MIN_READY_WINDOW: usize = if cfg!(test) { 2 } else { 64 };
/// Ready messages all subscriptions together hold in memory; each gets an
/// equal share, within the bounds above, so a thousand deep backlogs cost
/// what a hundred do.
const READY_WINDOW_BUDGET: usize = if cfg!(test) { 64 } else { 200_000 };

/// Each subscription's window when there are `subscriptions`.
pub(crate) fn ready_window(subscriptions: usize) -> usize {
    (READY_WINDOW_BUDGET / subscriptions.max(1)).clamp(MIN_READY_WINDOW, MAX_READY_WINDOW)
}

/// Kinds of catalog rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CatalogKind {
    Topic = 1,
    Subscription = 2,
    Snapshot = 3,
    Schema = 4,
    Policy = 5,
}

/// The whole catalog, as the store hands it back when it is opened.
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalog {
    pub topics: Vec<Topic>,
    /// With their uids.
    pub subscriptions: Vec<(u64, Subscription)>,
    /// The uid the next subscription gets (uids are never reused).
    pub next_uid: u64,
    pub snapshots: Vec<Snapshot>,
    /// Every revision of every schema, oldest first per schema.
    pub schemas: Vec<Schema>,
    pub policies: Vec<(String, Policy)>,
}

/// One change to the durable state, in the order the broker made it.
#[derive(Debug)]
pub(crate) enum StoreOp {
    /// The rows of one catalog entry as they are now, replacing whatever
    /// rows it had (none: the entry is gone). One change writes only the
    /// entries it touched, so its cost does not grow with the catalog.
    CatalogEntry {
        kind: CatalogKind,
        name: String,
        /// (number, protobuf bytes); see [`CATALOG`].
        rows: Vec<(u64, Vec<u8>)>,
    },
    /// The uid the next subscription gets (uids are never reused).
    NextUid(u64),
    /// A newly published message.
    Message {
        seq: u64,
        published: SystemTime,
        /// Its payload, which goes to the payload log.
        data: Arc<Vec<u8>>,
        /// The message without it, as the broker holds it.
        held: Arc<HeldMessage>,
    },
    /// A subscription now owes the message (it is in its backlog).
    Owe { subscription: u64, seq: u64 },
    /// A delivery of an owed message ended without an ack (nack, expiry):
    /// `attempts` deliveries so far, which dead-letter policies count.
    Attempted {
        subscription: u64,
        seq: u64,
        attempts: i32,
    },
    /// A subscription no longer owes the message (acked, dead-lettered or
    /// filtered out).
    Settle { subscription: u64, seq: u64 },
    /// The subscription owes nothing any more (deleted, or reset by a seek).
    SettleAll { subscription: u64 },
    /// A snapshot holds the messages.
    SnapshotHold { snapshot: Arc<str>, seqs: Vec<u64> },
    /// The snapshot is gone.
    SnapshotDrop { snapshot: Arc<str> },
    /// A subscription retains an acked message (with its publish time,
    /// which seeks compare against).
    Retain {
        subscription: u64,
        seq: u64,
        published: SystemTime,
    },
    /// The subscription no longer retains the message (past its retention).
    Unretain { subscription: u64, seq: u64 },
    /// The subscription retains nothing any more (deleted).
    RetainNone { subscription: u64 },
    /// A topic retains the message.
    Log { topic: Arc<str>, seq: u64 },
    /// The topic's retention let the message go.
    Unlog { topic: Arc<str>, seq: u64 },
    /// The topic retains nothing any more (deleted).
    LogNone { topic: Arc<str> },
    /// The counts over what the store held when it was opened, from
    /// [`Storage::count_backlog`].
    AdoptCounts(Box<StoredCounts>),
    /// Those counts will not come (counting failed): the writer stops
    /// keeping changes for them, and deletes none of the messages stored
    /// before this opening until the next one counts again.
    NoCounts,
}

/// How many rows referred to each stored message, and how many payloads
/// each segment of the log held, when the store was opened.
#[derive(Debug)]
pub(crate) struct StoredCounts {
    refs: RefCounts,
    segments: HashMap<u64, u64>,
}

/// A row a subscription owes, read back: (sequence, delivery attempts,
/// message as the broker holds it, `None` if the store lost it).
pub(crate) type OwedRow = (u64, u32, Option<Arc<HeldMessage>>);

/// Failures of the disk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The database file could not be opened (another server may hold it).
    #[error("cannot open the store {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::DatabaseError>,
    },
    /// Reading or writing the database failed.
    #[error("store i/o: {0}")]
    Io(String),
    /// A stored record does not decode.
    #[error("corrupt record in {table}: {detail}")]
    Corrupt {
        /// The table holding it.
        table: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The writer stopped after an earlier failure; nothing is durable now.
    #[error("the store failed earlier and accepts no more writes: {0}")]
    Failed(String),
    /// The store was closed (the server is shutting down).
    #[error("the store is closed")]
    Closed,
}

macro_rules! io_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(error: $ty) -> Self {
                StoreError::Io(error.to_string())
            }
        }
    )*};
}
io_error!(
    crate::payload_log::PayloadLogError,
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Message ids and ack numbers one opening of a disk store may hand out, as
/// a power of two: each opening takes its own range (the first from 1), so
/// ids handed out before a crash that never reached the disk are not handed
/// out again, and the messages an opening stores all come after the earlier
/// ones.
pub(crate) const OPENING_RANGE_BITS: u32 = 40;

/// The first of the numbers that opening `opening` hands out (see
/// [`OPENING_RANGE_BITS`]).
pub(crate) fn opening_base(opening: u64) -> u64 {
    (opening.saturating_sub(1) << OPENING_RANGE_BITS) | 1
}

/// The sequences and sizes of every stored message, in sequence order (as
/// the table holds them): 12 bytes a message for the time the background
/// count runs. The count looks messages up in runs of increasing sequence,
/// which [`Self::size_of`] answers from where the last lookup ended.
#[derive(Debug, Default)]
struct StoredSizes {
    seqs: Vec<u64>,
    sizes: Vec<u32>,
    cursor: usize,
}

impl StoredSizes {
    fn push(&mut self, seq: u64, size: u64) {
        self.seqs.push(seq);
        self.sizes.push(u32::try_from(size).unwrap_or(u32::MAX));
    }

    /// The size of the stored message `seq`, if there is one.
    fn size_of(&mut self, seq: u64) -> Option<u64> {
        let at = self.cursor;
        let found = match self.seqs.get(at) {
            Some(s) if *s == seq => Some(at),
            _ => match self.seqs.get(at + 1) {
                Some(s) if *s == seq => Some(at + 1),
                _ => self.seqs.binary_search(&seq).ok(),
            },
        };
        let index = found?;
        self.cursor = index;
        self.sizes.get(index).map(|size| u64::from(*size))
    }
}

/// The first messages a subscription owes, read back when the store is
/// opened: as many as its ready window holds.
#[derive(Debug)]
pub(crate) struct OwedWindow {
    pub uid: u64,
    /// (sequence, delivery attempts that ended without an ack, message), in
    /// sequence order.
    pub rows: Vec<(u64, u32, Arc<HeldMessage>)>,
    /// More rows follow on disk, after this sequence (the last of `rows`).
    pub more_after: Option<u64>,
}

/// What the broker needs from the store to start serving: the catalog, the
/// first messages of each backlog, and the messages that snapshots,
/// retained sets and topic logs hold. Reading it does not grow with the
/// backlogs: the rest of each backlog is read in as the window drains, and
/// the counts that need every row come from [`BacklogCount`] in the
/// background.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub catalog: Catalog,
    /// Each subscription's window, for those that owe something.
    pub windows: Vec<OwedWindow>,
    /// The messages snapshots, retained sets and topic logs hold (with
    /// their publish times).
    pub held: FxHashMap<u64, (Arc<HeldMessage>, SystemTime)>,
    pub snapshot_messages: Vec<(String, u64)>,
    /// (subscription uid, seq, publish time).
    pub retained: Vec<(u64, u64, SystemTime)>,
    /// (topic, seq), in sequence order per topic.
    pub logged: Vec<(String, u64)>,
    /// The sequence the next message gets: after every stored one, and in
    /// this opening's own range.
    pub next_seq: u64,
    /// How many times the store was opened before, this time included
    /// (ack ids of earlier runs must never match this run's).
    pub opening: u64,
    /// Owed rows whose message the store does not have (ignored).
    pub missing: usize,
}

/// Counts over the whole store as it was when it was opened, made in the
/// background while the server serves: see [`Storage::count_backlog`].
pub(crate) struct BacklogCount {
    /// A read transaction begun when the store was opened, before any
    /// change of this opening.
    txn: redb::ReadTransaction,
    /// Each subscription with more owed rows than its window, and the last
    /// sequence of its window.
    windows: Vec<(u64, u64)>,
}

impl fmt::Debug for BacklogCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BacklogCount")
            .field("windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

/// What a subscription's backlog held beyond its window when the store was
/// opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailCount {
    pub uid: u64,
    pub messages: u64,
    /// Their sizes (payloads included), as the backlog's bytes count them.
    pub bytes: u64,
}

/// Writer progress: operations made durable so far, or why writing stopped.
#[derive(Debug, Clone, Default)]
struct Progress {
    durable: u64,
    failed: Option<String>,
}

/// The durable side of a broker; see the module docs.
pub struct Storage {
    path: PathBuf,
    /// Units of changes waiting for the writer, and whether a writer task
    /// is on its way to them.
    queue: Arc<Mutex<Queue>>,
    /// The writer: only the task draining the queue (or [`Storage::close`])
    /// holds it, so batches are committed one at a time, in order.
    writer: Arc<Mutex<Option<Writer>>>,
    /// Where writer tasks run (the blocking pool of the runtime that opened
    /// the store); without one, changes are written as they are recorded.
    runtime: Option<tokio::runtime::Handle>,
    /// Operations (each a unit of changes) handed to the writer so far.
    recorded: AtomicU64,
    progress: Arc<watch::Sender<Progress>>,
    /// For reads; the writer has its own handle. Both go on close, which
    /// releases the file.
    db: Mutex<Option<Arc<Database>>>,
    /// Set by [`Storage::close`], and when an operation could not be handed
    /// to the writer (it is gone): from then on nothing is reported durable.
    closed: std::sync::atomic::AtomicBool,
    /// Recent payloads; see the module docs.
    payloads: Arc<Mutex<PayloadCache>>,
    /// Reads payloads that are not cached.
    log: Arc<PayloadReader>,
    /// Held while [`Self::count_backlog`] runs: its read transaction keeps
    /// the file open, so [`Self::close`] waits for it to stop.
    counting: Mutex<()>,
}

/// Recent messages (with their payloads) by sequence, oldest first, within
/// a byte and a count budget that only messages already on disk count
/// against: every message stays here until it is on disk, so a backlog read
/// back from the store finds what the file cannot answer yet.
///
/// Messages arrive in sequence order (recorded under the broker's lock), so
/// the cache is a queue searched by bisection, with no hashing; and it is
/// trimmed only when the writer reports a commit, so freeing evicted
/// messages costs the writer's thread, not the broker's lock.
#[derive(Debug, Default)]
struct PayloadCache {
    by_seq: VecDeque<(u64, CachedMessage)>,
    bytes: usize,
    /// Every message up to this sequence is on disk.
    committed: u64,
}

impl PayloadCache {
    fn insert(&mut self, seq: u64, message: CachedMessage) {
        let size = message.data.len();
        match self.by_seq.back() {
            Some((last, _)) if *last >= seq => {
                // Out of order (never expected): kept in order all the same.
                let at = self.by_seq.partition_point(|(s, _)| *s < seq);
                if self.by_seq.get(at).is_some_and(|(s, _)| *s == seq) {
                    return;
                }
                self.by_seq.insert(at, (seq, message));
            }
            _ => self.by_seq.push_back((seq, message)),
        }
        self.bytes += size;
    }

    fn get(&self, seq: u64) -> Option<&CachedMessage> {
        let at = self.by_seq.partition_point(|(s, _)| *s < seq);
        self.by_seq
            .get(at)
            .filter(|(s, _)| *s == seq)
            .map(|(_, message)| message)
    }

    /// Everything up to `seq` is on disk: what is over budget may go. The
    /// messages evicted, for the caller to drop outside the cache's lock.
    fn committed(&mut self, seq: u64) -> Vec<CachedMessage> {
        self.committed = self.committed.max(seq);
        let mut evicted = Vec::new();
        while self.bytes > PAYLOAD_CACHE_BYTES || self.by_seq.len() > CACHED_MESSAGES {
            match self.by_seq.front() {
                Some((seq, _)) if *seq <= self.committed => {
                    if let Some((_, message)) = self.by_seq.pop_front() {
                        self.bytes -= message.data.len();
                        evicted.push(message);
                    }
                }
                _ => break,
            }
        }
        evicted
    }
}

/// A message of the cache: as the broker holds it, and its payload.
#[derive(Debug, Clone)]
struct CachedMessage {
    held: Arc<HeldMessage>,
    data: Arc<Vec<u8>>,
}

/// Units of changes waiting for the writer.
#[derive(Debug, Default)]
struct Queue {
    units: VecDeque<Vec<StoreOp>>,
    /// A writer task has been started and has not yet found the queue empty.
    draining: bool,
    /// No more units are taken.
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.path)
            .field("recorded", &self.recorded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where the broker sends the changes of each operation: one unit per
/// operation, in the order the broker made them, so the writer never commits
/// half an operation.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    storage: Arc<Storage>,
}

impl Journal {
    pub fn new(storage: Arc<Storage>) -> Self {
        Self { storage }
    }

    /// Hands the changes of one operation to the writer.
    pub fn record(&self, ops: Vec<StoreOp>) {
        self.storage.record(ops);
    }

    /// See [`Storage::load_messages`].
    pub fn load_messages(&self, seqs: &[u64]) -> Result<Vec<Option<Arc<HeldMessage>>>, StoreError> {
        self.storage.load_messages(seqs)
    }

    /// See [`Storage::load_owed`].
    pub fn load_owed(
        &self,
        subscription: u64,
        after: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<OwedRow>, StoreError> {
        self.storage.load_owed(subscription, after, below, limit)
    }

    /// See [`Storage::fill_payloads`].
    pub fn fill_payloads<'m, M: PayloadSlot + 'm>(
        &self,
        messages: impl IntoIterator<Item = &'m mut M>,
    ) -> Result<(), StoreError> {
        self.storage.fill_payloads(messages)
    }
}

/// Name of the database file inside the data directory.
pub const STORE_FILE: &str = "baton.redb";

impl Storage {
    /// Opens (or creates) the store in `dir`, reads what the broker needs
    /// to start serving (see [`Recovered`]) and starts the writer. The
    /// counts over the whole store are left to [`Self::count_backlog`],
    /// which the caller runs in the background.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Recovered, BacklogCount), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(STORE_FILE);
        let db = Database::builder()
            .set_cache_size(PAGE_CACHE_BYTES)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source: Box::new(source),
            })?;
        let opening = create_tables(&db)?;
        let log_dir = dir.join(PAYLOAD_DIR);
        let mut log = PayloadWriter::open(&log_dir, last_segment(&db)?)?;
        split_whole_messages(&db, &mut log)?;
        // The start-up read and the background count see the same state:
        // the one before any change of this opening.
        let txn = db.begin_read()?;
        let recovered = read_recovery(&txn, opening)?;
        let count = BacklogCount {
            txn,
            windows: recovered
                .windows
                .iter()
                .filter_map(|w| Some((w.uid, w.more_after?)))
                .collect(),
        };
        let db = Arc::new(db);
        let payloads = Arc::new(Mutex::new(PayloadCache::default()));
        let reader = Arc::new(PayloadReader::new(&log_dir));
        let writer = Writer {
            db: db.clone(),
            refs: MessageRefs::new(recovered.next_seq),
            payloads: payloads.clone(),
            log,
            reader: reader.clone(),
        };
        Ok((
            Self {
                path,
                queue: Arc::default(),
                writer: Arc::new(Mutex::new(Some(writer))),
                runtime: tokio::runtime::Handle::try_current().ok(),
                recorded: AtomicU64::new(0),
                progress: Arc::new(watch::channel(Progress::default()).0),
                db: Mutex::new(Some(db)),
                closed: std::sync::atomic::AtomicBool::new(false),
                payloads,
                log: reader,
                counting: Mutex::new(()),
            },
            recovered,
            count,
        ))
    }

    /// Counts what the store held when it was opened, reading every stored
    /// message and every row that refers to one: how many rows refer to
    /// each message and how many payloads each segment of the log holds
    /// (handed to the writer, which from then on deletes what nothing
    /// refers to), and how much each backlog held beyond its window (the
    /// result, for the broker's stats). It takes about 0.4 s per million
    /// stored messages, so the broker runs it in the background once it
    /// serves; a store closed meanwhile stops it with [`StoreError::Closed`].
    /// If counting fails, the writer is told not to wait for the counts
    /// ([`StoreOp::NoCounts`]).
    pub(crate) fn count_backlog(&self, count: BacklogCount) -> Result<Vec<TailCount>, StoreError> {
        let _counting = lock(&self.counting);
        // Closed before this began: its read transaction may outlive the
        // database handle, so it is not touched.
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        match self.count_rows(count) {
            Ok((counts, tails)) => {
                self.record(vec![StoreOp::AdoptCounts(Box::new(counts))]);
                Ok(tails)
            }
            Err(error) => {
                if !matches!(error, StoreError::Closed) {
                    self.record(vec![StoreOp::NoCounts]);
                }
                Err(error)
            }
        }
    }

    /// The reading of [`Self::count_backlog`].
    fn count_rows(
        &self,
        count: BacklogCount,
    ) -> Result<(StoredCounts, Vec<TailCount>), StoreError> {
        /// Rows read between checks that the store is still open.
        const CHECK_EVERY: usize = 65_536;
        let BacklogCount { txn, windows } = count;
        let mut read = 0usize;
        let mut next_row = || {
            read += 1;
            if read.is_multiple_of(CHECK_EVERY) && self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            Ok(())
        };
        let mut sizes = StoredSizes::default();
        let mut segments: HashMap<u64, u64> = HashMap::new();
        {
            let messages = txn.open_table(MESSAGES)?;
            let stored = usize::try_from(messages.len()?).unwrap_or(0);
            sizes.seqs.reserve_exact(stored);
            sizes.sizes.reserve_exact(stored);
            for row in messages.iter()? {
                next_row()?;
                let (seq, value) = row?;
                let row = value.value();
                sizes.push(seq.value(), row.1);
                let location = location_of(&row);
                if location.segment != 0 {
                    *segments.entry(location.segment).or_default() += 1;
                }
            }
        }
        let mut refs = RefCounts::from_sorted(sizes.seqs.iter().copied());
        let after: FxHashMap<u64, u64> = windows.into_iter().collect();
        let mut tails: Vec<TailCount> = Vec::with_capacity(after.len());
        for row in txn.open_table(OWED)?.iter()? {
            next_row()?;
            let (key, _) = row?;
            let (uid, seq) = key.value();
            refs.hold(seq);
            if after.get(&uid).is_some_and(|last| seq > *last) {
                if tails.last().is_none_or(|tail| tail.uid != uid) {
                    tails.push(TailCount {
                        uid,
                        messages: 0,
                        bytes: 0,
                    });
                }
                if let Some(tail) = tails.last_mut() {
                    tail.messages += 1;
                    tail.bytes += sizes.size_of(seq).unwrap_or(0);
                }
            }
        }
        for row in txn.open_table(SNAPSHOT_MESSAGES)?.iter()? {
            next_row()?;
            refs.hold(row?.0.value().1);
        }
        for row in txn.open_table(RETAINED)?.iter()? {
            next_row()?;
            refs.hold(row?.0.value().1);
        }
        for row in txn.open_table(LOGGED)?.iter()? {
            next_row()?;
            refs.hold(row?.0.value().1);
        }
        Ok((StoredCounts { refs, segments }, tails))
    }

    /// The rows a subscription owes after sequence `after` and before
    /// `below` (the backlog an earlier run left, beyond what is in memory),
    /// at most `limit`, in sequence order: (sequence, delivery attempts,
    /// message as the broker holds it, `None` if the store lost it).
    pub(crate) fn load_owed(
        &self,
        subscription: u64,
        after: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<OwedRow>, StoreError> {
        let mut rows = Vec::new();
        if after.saturating_add(1) >= below || limit == 0 {
            return Ok(rows);
        }
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let owed = txn.open_table(OWED)?;
        let messages = txn.open_table(MESSAGES)?;
        for row in owed.range((subscription, after + 1)..(subscription, below))? {
            let (key, attempts) = row?;
            let seq = key.value().1;
            let message = read_message(&messages, seq)?.map(|(message, _)| message);
            rows.push((seq, attempts.value(), message));
            if rows.len() >= limit {
                break;
            }
        }
        Ok(rows)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues the changes of one broker operation; the writer commits them
    /// in one transaction. Called under the broker's lock, so operations
    /// reach the writer in the order they were made.
    pub(crate) fn record(&self, ops: Vec<StoreOp>) {
        // Acks and catalog changes carry no payloads: no need for the lock.
        if ops.iter().any(|op| matches!(op, StoreOp::Message { .. })) {
            let mut payloads = lock(&self.payloads);
            for op in &ops {
                if let StoreOp::Message {
                    seq, data, held, ..
                } = op
                {
                    let cached = CachedMessage {
                        held: held.clone(),
                        data: data.clone(),
                    };
                    payloads.insert(*seq, cached);
                }
            }
        }
        let start = {
            let mut queue = lock(&self.queue);
            if queue.closed {
                // This change will never be on disk, and no later request
                // may be told otherwise.
                self.closed.store(true, Ordering::Release);
                return;
            }
            queue.units.push_back(ops);
            self.recorded.fetch_add(1, Ordering::Release);
            !std::mem::replace(&mut queue.draining, true)
        };
        if !start {
            return;
        }
        let task = DrainTask {
            queue: self.queue.clone(),
            writer: self.writer.clone(),
            progress: self.progress.clone(),
            ran: false,
        };
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn_blocking(move || task.run())),
            None => task.run(),
        }
    }

    /// Resolves once every change recorded before the call is on disk, or
    /// with the error that stopped the writer.
    pub fn durable(&self) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let target = self.recorded.load(Ordering::Acquire);
        let closed = self.closed.load(Ordering::Acquire);
        let mut progress = self.progress.subscribe();
        async move {
            if closed {
                return Err(StoreError::Closed);
            }
            let reached = progress
                .wait_for(|p| p.durable >= target || p.failed.is_some())
                .await
                .map_err(|_| StoreError::Failed("the store writer is gone".into()))?;
            match &reached.failed {
                Some(error) => Err(StoreError::Failed(error.clone())),
                None => Ok(()),
            }
        }
    }

    /// Puts the payload back into each message that left it here (the
    /// broker holds messages without it): from the cache of recent
    /// payloads, or else from the file, in one read transaction. A message
    /// whose payload is gone (it was settled meanwhile) stays as it is.
    pub(crate) fn fill_payloads<'m, M: PayloadSlot + 'm>(
        &self,
        messages: impl IntoIterator<Item = &'m mut M>,
    ) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        {
            let payloads = lock(&self.payloads);
            for message in messages {
                let Some(seq) = message.wanted() else {
                    continue;
                };
                match payloads.get(seq) {
                    Some(cached) => message.fill(Payload::Cached(cached.data.clone())),
                    None => missing.push((seq, message)),
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        for (seq, message) in missing {
            let location = match table.get(seq)? {
                Some(row) => location_of(&row.value()),
                None => continue,
            };
            if let Some(data) = self.log.read(location)? {
                message.fill(Payload::Read(data));
            }
        }
        Ok(())
    }

    /// The messages `seqs` as the broker holds them (without their
    /// payloads), for a backlog that waited on disk: from the cache of
    /// recent messages (which holds every message not yet on disk), or else
    /// from the database in one read transaction. `None` for a message the
    /// store no longer has.
    pub(crate) fn load_messages(
        &self,
        seqs: &[u64],
    ) -> Result<Vec<Option<Arc<HeldMessage>>>, StoreError> {
        let mut loaded: Vec<Option<Arc<HeldMessage>>> = Vec::with_capacity(seqs.len());
        let mut missing = Vec::new();
        {
            let cache = lock(&self.payloads);
            for (index, seq) in seqs.iter().enumerate() {
                let cached = cache.get(*seq).map(|m| m.held.clone());
                if cached.is_none() {
                    missing.push(index);
                }
                loaded.push(cached);
            }
        }
        if missing.is_empty() {
            return Ok(loaded);
        }
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        for index in missing {
            let Some(seq) = seqs.get(index) else {
                continue;
            };
            if let Some((message, _)) = read_message(&table, *seq)?
                && let Some(slot) = loaded.get_mut(index)
            {
                *slot = Some(message);
            }
        }
        Ok(loaded)
    }

    fn reader(&self) -> Result<Arc<Database>, StoreError> {
        lock(&self.db)
            .clone()
            .ok_or_else(|| StoreError::Failed("the store is closed".into()))
    }

    /// How many messages the store holds (each once, however many
    /// subscriptions owe it).
    pub fn message_rows(&self) -> Result<u64, StoreError> {
        let txn = self.reader()?.begin_read()?;
        Ok(txn.open_table(MESSAGES)?.len()?)
    }

    /// Stops taking changes, writes what is queued and closes the file (so
    /// another broker may open it). Blocks until the writer is done.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.queue).closed = true;
        // Whatever a writer task has not written yet (it may never run, if
        // its runtime is going away) is written here.
        drain(&self.queue, &self.writer, &self.progress);
        drop(lock(&self.writer).take());
        // A background count notices the store is closed and stops.
        drop(lock(&self.counting));
        drop(lock(&self.db).take());
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates missing tables and counts this opening; returns its number.
fn create_tables(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    txn.open_table(CATALOG)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(OWED)?;
    txn.open_table(SNAPSHOT_MESSAGES)?;
    txn.open_table(RETAINED)?;
    txn.open_table(LOGGED)?;
    let opening = {
        let mut meta = txn.open_table(META)?;
        let opening = meta.get(OPENINGS)?.map_or(0, |v| v.value()) + 1;
        meta.insert(OPENINGS, opening)?;
        opening
    };
    txn.commit()?;
    Ok(opening)
}

/// Where the payload of a stored message is, from its row.
fn location_of(row: &MessageRow<'_>) -> Location {
    Location {
        segment: row.2,
        offset: row.3,
        len: row.4,
    }
}

/// Moves the messages of a store in the first layout (whole messages in one
/// table) to the current one, once: payloads to the log, the rest to
/// [`MESSAGES`]. Whether there was anything to move.
fn split_whole_messages(db: &Database, log: &mut PayloadWriter) -> Result<bool, StoreError> {
    // A write transaction would create the table; a read one tells.
    match db.begin_read()?.open_table(WHOLE_MESSAGES) {
        Ok(_) => {}
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    let txn = db.begin_write()?;
    let old = txn.open_table(WHOLE_MESSAGES)?;
    let mut moved = 0u64;
    {
        let mut messages = txn.open_table(MESSAGES)?;
        for row in old.iter()? {
            let (seq, value) = row?;
            let (published, bytes) = value.value();
            let mut message: PubsubMessage = decode("messages", bytes)?;
            let size = message.payload_size() as u64;
            let data = std::mem::take(&mut message.data);
            let at = log.append(&data)?;
            let meta = message.encode_to_vec();
            messages.insert(
                seq.value(),
                (
                    published,
                    size,
                    at.segment,
                    at.offset,
                    at.len,
                    meta.as_slice(),
                ),
            )?;
            moved += 1;
        }
    }
    drop(old);
    txn.delete_table(WHOLE_MESSAGES)?;
    log.sync()?;
    txn.commit()?;
    tracing::info!(
        messages = moved,
        "disk store: payloads moved to the payload log"
    );
    Ok(true)
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn decode<M: prost::Message + Default>(table: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

/// The stored message `seq` as the broker holds it (without its payload),
/// with its publish time.
fn read_message(
    table: &impl ReadableTable<u64, MessageRow<'static>>,
    seq: u64,
) -> Result<Option<(Arc<HeldMessage>, SystemTime)>, StoreError> {
    let Some(row) = table.get(seq)? else {
        return Ok(None);
    };
    let row = row.value();
    let message: PublishedMessage = decode("messages", row.5)?;
    let size = usize::try_from(row.1).unwrap_or(usize::MAX);
    Ok(Some((
        Arc::new(HeldMessage::stored(message, size)),
        from_nanos(row.0),
    )))
}

/// The segment of the payload log that the newest stored message with a
/// payload refers to (0 for none): segments are numbered in the order they
/// are written, as messages are, so none is newer. Found from the end of
/// the table, past at most a few rows of messages without payloads.
fn last_segment(db: &Database) -> Result<u64, StoreError> {
    /// Rows looked at from the end before giving up (all without payloads).
    const LOOK_BACK: usize = 65_536;
    let txn = db.begin_read()?;
    let messages = txn.open_table(MESSAGES)?;
    for row in messages.iter()?.rev().take(LOOK_BACK) {
        let (_, value) = row?;
        let segment = location_of(&value.value()).segment;
        if segment != 0 {
            return Ok(segment);
        }
    }
    Ok(0)
}

/// Reads what the broker needs to start serving (see [`Recovered`]): the
/// catalog, each subscription's window by a range read of its first owed
/// rows, and what snapshots, retained sets and topic logs hold. Nothing
/// here reads a whole backlog.
fn read_recovery(txn: &redb::ReadTransaction, opening: u64) -> Result<Recovered, StoreError> {
    let mut recovered = Recovered {
        opening,
        ..Recovered::default()
    };
    for row in txn.open_table(CATALOG)?.iter()? {
        let (key, value) = row?;
        let (kind, name, number) = key.value();
        let bytes = value.value();
        let catalog = &mut recovered.catalog;
        match kind {
            k if k == CatalogKind::Topic as u8 => catalog.topics.push(decode("catalog", bytes)?),
            k if k == CatalogKind::Subscription as u8 => {
                catalog
                    .subscriptions
                    .push((number, decode("catalog", bytes)?));
            }
            k if k == CatalogKind::Snapshot as u8 => {
                catalog.snapshots.push(decode("catalog", bytes)?);
            }
            k if k == CatalogKind::Schema as u8 => catalog.schemas.push(decode("catalog", bytes)?),
            k if k == CatalogKind::Policy as u8 => {
                catalog
                    .policies
                    .push((name.to_string(), decode("catalog", bytes)?));
            }
            other => {
                return Err(StoreError::Corrupt {
                    table: "catalog",
                    detail: format!("unknown kind {other} for {name}"),
                });
            }
        }
    }
    for row in txn.open_table(SNAPSHOT_MESSAGES)?.iter()? {
        let (key, _) = row?;
        let (name, seq) = key.value();
        recovered.snapshot_messages.push((name.to_string(), seq));
    }
    for row in txn.open_table(RETAINED)?.iter()? {
        let (key, published) = row?;
        let (uid, seq) = key.value();
        recovered
            .retained
            .push((uid, seq, from_nanos(published.value())));
    }
    for row in txn.open_table(LOGGED)?.iter()? {
        let (key, _) = row?;
        let (name, seq) = key.value();
        recovered.logged.push((name.to_string(), seq));
    }
    let messages = txn.open_table(MESSAGES)?;
    let kept = recovered
        .snapshot_messages
        .iter()
        .map(|(_, seq)| *seq)
        .chain(recovered.retained.iter().map(|(_, seq, _)| *seq))
        .chain(recovered.logged.iter().map(|(_, seq)| *seq));
    for seq in kept {
        if let std::collections::hash_map::Entry::Vacant(slot) = recovered.held.entry(seq)
            && let Some(message) = read_message(&messages, seq)?
        {
            slot.insert(message);
        }
    }
    let window = ready_window(recovered.catalog.subscriptions.len());
    let owed = txn.open_table(OWED)?;
    for (uid, _) in &recovered.catalog.subscriptions {
        let mut rows = Vec::new();
        let mut read = 0usize;
        let mut more_after = None;
        let mut last = None;
        for row in owed.range((*uid, 0)..=(*uid, u64::MAX))? {
            let (key, attempts) = row?;
            let seq = key.value().1;
            if read == window {
                more_after = last;
                break;
            }
            read += 1;
            last = Some(seq);
            match read_message(&messages, seq)? {
                Some((message, _)) => rows.push((seq, attempts.value(), message)),
                None => recovered.missing += 1,
            }
        }
        if read > 0 {
            recovered.windows.push(OwedWindow {
                uid: *uid,
                rows,
                more_after,
            });
        }
    }
    let meta = txn.open_table(META)?;
    let stored_next = meta.get(NEXT_SEQ)?.map_or(1, |v| v.value());
    recovered.catalog.next_uid = meta.get(NEXT_UID)?.map_or(1, |v| v.value());
    let after_messages = messages.last()?.map_or(1, |(seq, _)| seq.value() + 1);
    // Messages are delivered before their fsync; if the process died in
    // between, ids it handed out are not in the store: this opening takes
    // its own range, so none repeats.
    recovered.next_seq = stored_next.max(after_messages).max(opening_base(opening));
    Ok(recovered)
}

/// A writer task on its way: it drains the queue when it runs, and if it
/// never runs (its runtime's blocking pool is shutting down and drops it),
/// it drains the queue where it is dropped, so no unit is left behind with
/// `draining` set and its waiters waiting.
struct DrainTask {
    queue: Arc<Mutex<Queue>>,
    writer: Arc<Mutex<Option<Writer>>>,
    progress: Arc<watch::Sender<Progress>>,
    ran: bool,
}

impl DrainTask {
    fn run(mut self) {
        drain(&self.queue, &self.writer, &self.progress);
        self.ran = true;
    }
}

impl Drop for DrainTask {
    fn drop(&mut self) {
        if !self.ran {
            drain(&self.queue, &self.writer, &self.progress);
        }
    }
}

/// Writes queued units in batches, one transaction and one fsync each,
/// until the queue is empty. Only one caller writes at a time (the writer's
/// lock); the others find the queue emptied.
fn drain(queue: &Mutex<Queue>, writer: &Mutex<Option<Writer>>, progress: &watch::Sender<Progress>) {
    let mut writer = lock(writer);
    loop {
        let (batch, count) = {
            let mut queue = lock(queue);
            let mut batch = Vec::new();
            let mut count = 0u64;
            // Operations are never split across transactions.
            while batch.is_empty() || batch.len() < MAX_BATCH {
                let Some(unit) = queue.units.pop_front() else {
                    break;
                };
                batch.extend(unit);
                count += 1;
            }
            if count == 0 {
                queue.draining = false;
                return;
            }
            (batch, count)
        };
        match writer.as_mut() {
            Some(writer) => writer.commit(batch, count, progress),
            // Closed: nothing more reaches the disk.
            None => progress.send_modify(|p| {
                p.failed.get_or_insert_with(|| "the store is closed".into());
            }),
        }
    }
}

/// The writer: applies queued changes in batches, one fsync each.
struct Writer {
    db: Arc<Database>,
    /// References to each stored message; a message row is deleted when
    /// its count drops to zero.
    refs: MessageRefs,
    /// Told which payloads are on disk, so it may let them go.
    payloads: Arc<Mutex<PayloadCache>>,
    log: PayloadWriter,
    /// Told which segments were removed.
    reader: Arc<PayloadReader>,
}

impl Writer {
    /// Commits one batch of `count` units and reports it.
    fn commit(&mut self, mut batch: Vec<StoreOp>, count: u64, progress: &watch::Sender<Progress>) {
        if progress.borrow().failed.is_some() {
            return;
        }
        // A panic in redb must not leave requests waiting, or later ones
        // told their changes are durable: it fails the store like an i/o
        // error.
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply(&mut batch)))
                .unwrap_or_else(|_| Err(StoreError::Io("the store writer panicked".into())));
        match applied {
            Ok(last_message) => {
                if let Some(seq) = last_message {
                    let evicted = lock(&self.payloads).committed(seq);
                    drop(evicted);
                }
                progress.send_modify(|p| p.durable += count);
            }
            Err(error) => {
                tracing::error!(%error, "the disk store failed; publishes and acks now fail");
                progress.send_modify(|p| p.failed = Some(error.to_string()));
            }
        }
    }

    /// Writes one batch; the sequence of the last message it stored.
    ///
    /// Payloads go to the log first, so that its sync runs on a thread of
    /// its own while the database takes the rest of the batch; the database
    /// commits only once both are done, so it never refers to payloads that
    /// are not on disk.
    fn apply(&mut self, batch: &mut Vec<StoreOp>) -> Result<Option<u64>, StoreError> {
        let mut locations = VecDeque::new();
        for op in batch.iter() {
            match op {
                StoreOp::Message { data, .. } => locations.push_back(self.log.append(data)?),
                // Before any payload of an earlier opening is released.
                StoreOp::AdoptCounts(counts) => self.log.adopt_counts(&counts.segments),
                _ => {}
            }
        }
        let Self { db, refs, log, .. } = self;
        let (synced, applied) = if log.needs_sync() {
            std::thread::scope(|scope| {
                let syncing = scope.spawn(|| log.sync());
                let applied = apply_rows(db, refs, batch, locations);
                (syncing.join(), applied)
            })
        } else {
            (Ok(Ok(())), apply_rows(db, refs, batch, locations))
        };
        synced.map_err(|_| StoreError::Io("syncing the payload log panicked".into()))??;
        let (txn, last_message, freed) = applied?;
        txn.commit()?;
        for location in freed {
            self.log.release(location);
        }
        match self.log.remove_empty() {
            Ok(removed) => removed.into_iter().for_each(|s| self.reader.forget(s)),
            // Only space is lost; the next opening's background count
            // removes them.
            Err(error) => tracing::warn!(%error, "removing emptied payload segments failed"),
        }
        Ok(last_message)
    }
}

fn release(refs: &mut MessageRefs, seq: u64, released: &mut Vec<u64>) {
    if refs.release(seq) {
        released.push(seq);
    }
}

/// What [`apply_rows`] leaves to commit: the transaction, the sequence of the
/// last message it stored, and the payloads of the messages it deleted.
type AppliedRows = (redb::WriteTransaction, Option<u64>, Vec<Location>);

/// Applies a batch to the database, not yet committed. `locations` are where
/// the batch's payloads went in the log, in the order of its messages.
fn apply_rows(
    db: &Database,
    refs: &mut MessageRefs,
    batch: &mut Vec<StoreOp>,
    mut locations: VecDeque<Location>,
) -> Result<AppliedRows, StoreError> {
    let txn = db.begin_write()?;
    let txn_next_seq;
    let mut freed = Vec::new();
    {
        let mut catalog = txn.open_table(CATALOG)?;
        let mut messages = txn.open_table(MESSAGES)?;
        let mut owed = txn.open_table(OWED)?;
        let mut held = txn.open_table(SNAPSHOT_MESSAGES)?;
        let mut retained = txn.open_table(RETAINED)?;
        let mut logged = txn.open_table(LOGGED)?;
        let mut meta = txn.open_table(META)?;
        let mut released = Vec::new();
        let mut next_seq = None;
        let mut encoded = Vec::new();
        for op in batch.drain(..) {
            match op {
                StoreOp::CatalogEntry { kind, name, rows } => {
                    let kind = kind as u8;
                    catalog.retain_in(
                        (kind, name.as_str(), 0)..=(kind, name.as_str(), u64::MAX),
                        |_, _| false,
                    )?;
                    for (number, bytes) in rows {
                        catalog.insert((kind, name.as_str(), number), bytes.as_slice())?;
                    }
                }
                StoreOp::NextUid(next) => {
                    meta.insert(NEXT_UID, next)?;
                }
                StoreOp::Message {
                    seq,
                    published,
                    held,
                    ..
                } => {
                    encoded.clear();
                    held.encode_raw(&mut encoded);
                    let size = held.payload_size() as u64;
                    let at = locations.pop_front().ok_or_else(|| {
                        StoreError::Io("a message of the batch has no payload location".into())
                    })?;
                    messages.insert(
                        seq,
                        (
                            nanos(published),
                            size,
                            at.segment,
                            at.offset,
                            at.len,
                            encoded.as_slice(),
                        ),
                    )?;
                    refs.insert(seq);
                    // Unreferenced at the end of the batch: nobody wanted it.
                    released.push(seq);
                    next_seq = Some(seq + 1);
                }
                StoreOp::Owe { subscription, seq } => {
                    if owed.insert((subscription, seq), 0)?.is_none() {
                        refs.hold(seq);
                    }
                }
                StoreOp::Attempted {
                    subscription,
                    seq,
                    attempts,
                } => {
                    let key = (subscription, seq);
                    // Only a message still owed: an ack may have come first.
                    if owed.get(key)?.is_some() {
                        owed.insert(key, u32::try_from(attempts).unwrap_or(0))?;
                    }
                }
                StoreOp::Settle { subscription, seq } => {
                    if owed.remove((subscription, seq))?.is_some() {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::SettleAll { subscription } => {
                    for seq in remove_all(&mut owed, subscription)? {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::SnapshotHold { snapshot, seqs } => {
                    for seq in seqs {
                        if held.insert((&*snapshot, seq), ())?.is_none() {
                            refs.hold(seq);
                        }
                    }
                }
                StoreOp::SnapshotDrop { snapshot } => {
                    for seq in remove_all(&mut held, &*snapshot)? {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::Retain {
                    subscription,
                    seq,
                    published,
                } => {
                    if retained
                        .insert((subscription, seq), nanos(published))?
                        .is_none()
                    {
                        refs.hold(seq);
                    }
                }
                StoreOp::Unretain { subscription, seq } => {
                    if retained.remove((subscription, seq))?.is_some() {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::RetainNone { subscription } => {
                    for seq in remove_all(&mut retained, subscription)? {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::Log { topic, seq } => {
                    if logged.insert((&*topic, seq), ())?.is_none() {
                        refs.hold(seq);
                    }
                }
                StoreOp::Unlog { topic, seq } => {
                    if logged.remove((&*topic, seq))?.is_some() {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::LogNone { topic } => {
                    for seq in remove_all(&mut logged, &*topic)? {
                        release(refs, seq, &mut released);
                    }
                }
                StoreOp::AdoptCounts(counts) => {
                    released.extend(refs.adopt(counts.refs));
                }
                StoreOp::NoCounts => refs.forget_earlier(),
            }
        }
        for seq in released {
            if refs.get(seq) == Some(0) {
                refs.remove(seq);
                if let Some(row) = messages.remove(seq)? {
                    freed.push(location_of(&row.value()));
                }
            }
        }
        if let Some(next) = next_seq {
            meta.insert(NEXT_SEQ, next)?;
        }
        txn_next_seq = next_seq;
    }
    Ok((txn, txn_next_seq.map(|next| next - 1), freed))
}

/// Removes every `(owner, seq)` row of `owner` (a name or a uid); the
/// sequences removed.
fn remove_all<'o, O, V>(
    table: &mut redb::Table<'_, (O, u64), V>,
    owner: O::SelfType<'o>,
) -> Result<Vec<u64>, StoreError>
where
    O: redb::Key + 'static,
    O::SelfType<'o>: Copy,
    V: redb::Value + 'static,
{
    let mut seqs = Vec::new();
    let rows = table.extract_from_if((owner, 0)..=(owner, u64::MAX), |_, _| true)?;
    for row in rows {
        let (key, _) = row?;
        seqs.push(key.value().1);
    }
    Ok(seqs)
}
