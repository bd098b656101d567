//! Keeping the store's spans in a file, so traces survive restarts.
//!
//! The store keeps serving from memory; the file is a write-behind mirror of
//! what memory holds, in one [redb] database (`traces.redb` in the server's
//! data directory): each stored span as its OTLP protobuf, each distinct
//! resource-and-scope pair once. The store records every change as an
//! [`Op`] under its lock (so the file sees changes in the order memory made
//! them) on a queue; one writer thread applies whatever has queued up in a
//! single transaction. Because the file mirrors memory, it is bounded by the
//! same limits (spans, bytes, age), and loading it on start is bounded work
//! too: at most the spans the store holds.
//!
//! The queue is bounded: when the spans waiting for the writer reach
//! [`Journal::new`]'s limit, new spans are dropped from the file (kept in
//! memory) and counted, rather than blocking ingest. Deletions and origins
//! are never dropped, so the file never outgrows memory's bounds.
//!
//! Commits are durable (fsync) but ingest does not wait for them: a crash
//! loses the spans of the last batch or so, which traces can afford.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::convert::TraceKey;

/// Spans: trace id (16 bytes) then span id (8 bytes) -> (touch, received
/// in ns since the epoch, origin id, the span's protobuf). `touch` orders
/// updates: a trace's last update is its largest.
const SPANS: TableDefinition<&[u8], (u64, u64, u64, &[u8])> = TableDefinition::new("spans");
/// Origins: id -> the resource and scope as protobuf (`Origin::key`).
const ORIGINS: TableDefinition<u64, &[u8]> = TableDefinition::new("origins");

/// A span's key in [`SPANS`]: trace id then span id.
pub(crate) type RowKey = [u8; 24];

/// The row key of span `span_id` of trace `trace_id`.
pub(crate) fn row_key(trace_id: &TraceKey, span_id: &[u8; 8]) -> RowKey {
    let mut key = [0; 24];
    key[..16].copy_from_slice(trace_id);
    key[16..].copy_from_slice(span_id);
    key
}

/// Why the trace file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceFileError {
    /// Its directory cannot be created.
    #[error("creating the directory of {path}: {source}")]
    Directory {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database cannot be opened or read.
    #[error("trace store {path}: {source}")]
    Database {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
    /// The writer thread cannot be started.
    #[error("starting the writer of {path}: {source}")]
    Thread {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One change to the file, in the order memory made it.
#[derive(Debug)]
pub(crate) enum Op {
    /// A new origin.
    Origin { id: u64, key: Vec<u8> },
    /// An origin no span refers to any more.
    DropOrigin(u64),
    /// A span stored (or replaced).
    Span {
        key: RowKey,
        touch: u64,
        received: u64,
        origin: u64,
        proto: Vec<u8>,
    },
    /// A span that must go (it did not load).
    DropSpan(RowKey),
    /// A whole trace evicted.
    DropTrace(TraceKey),
}

/// A span as read back from the file.
#[derive(Debug)]
pub(crate) struct LoadedSpan {
    pub(crate) key: RowKey,
    pub(crate) touch: u64,
    pub(crate) received: u64,
    pub(crate) origin: u64,
    pub(crate) proto: Vec<u8>,
}

/// What the file held when opened.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Origin keys by id.
    pub(crate) origins: HashMap<u64, Vec<u8>>,
    /// Spans, in no particular order.
    pub(crate) spans: Vec<LoadedSpan>,
}

/// Opens (or creates) the file at `path` and reads everything it holds.
pub(crate) fn open(path: &Path) -> Result<(Database, Loaded), TraceFileError> {
    let database = |source: redb::Error| TraceFileError::Database {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TraceFileError::Directory {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let db = Database::create(path).map_err(|e| database(e.into()))?;
    // Make the tables, so reading finds them.
    let txn = db.begin_write().map_err(|e| database(e.into()))?;
    txn.open_table(SPANS).map_err(|e| database(e.into()))?;
    txn.open_table(ORIGINS).map_err(|e| database(e.into()))?;
    txn.commit().map_err(|e| database(e.into()))?;
    let mut loaded = Loaded::default();
    let txn = db.begin_read().map_err(|e| database(e.into()))?;
    let origins = txn.open_table(ORIGINS).map_err(|e| database(e.into()))?;
    for row in origins.iter().map_err(|e| database(e.into()))? {
        let (id, key) = row.map_err(|e| database(e.into()))?;
        loaded.origins.insert(id.value(), key.value().to_vec());
    }
    let spans = txn.open_table(SPANS).map_err(|e| database(e.into()))?;
    for row in spans.iter().map_err(|e| database(e.into()))? {
        let (key, value) = row.map_err(|e| database(e.into()))?;
        let Ok(key) = RowKey::try_from(key.value()) else {
            continue;
        };
        let (touch, received, origin, proto) = value.value();
        loaded.spans.push(LoadedSpan {
            key,
            touch,
            received,
            origin,
            proto: proto.to_vec(),
        });
    }
    drop(spans);
    drop(origins);
    drop(txn);
    Ok((db, loaded))
}

/// The store's side of the writer: where it queues [`Op`]s.
#[derive(Debug)]
pub(crate) struct Journal {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when ops are queued or the journal closes.
    work: Condvar,
    /// Signalled when a batch is written.
    written: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Queue {
    ops: Vec<Op>,
    /// Protobuf bytes of the queued spans.
    span_bytes: usize,
    /// Most protobuf bytes of spans that may wait.
    max_span_bytes: usize,
    /// Spans not written because the queue was full.
    dropped: u64,
    /// Ops queued so far / written so far (counts).
    queued: u64,
    written: u64,
    /// Batches that failed to commit.
    failures: u64,
    closed: bool,
    /// The writer has stopped.
    stopped: bool,
}

impl Journal {
    /// Starts the writer of `db`; at most `max_span_bytes` of span protobuf
    /// wait for it.
    pub(crate) fn start(
        db: Database,
        path: &Path,
        max_span_bytes: usize,
    ) -> Result<Self, TraceFileError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                max_span_bytes,
                ..Queue::default()
            }),
            work: Condvar::new(),
            written: Condvar::new(),
            writer: Mutex::new(None),
        });
        let writer = std::thread::Builder::new()
            .name("baton-trace-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let path = path.to_path_buf();
                move || write_loop(&db, &path, &shared)
            })
            .map_err(|source| TraceFileError::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        *lock(&shared.writer) = Some(writer);
        Ok(Self { shared })
    }

    /// Queues an op that must reach the file (deletions, origins).
    pub(crate) fn push(&self, op: Op) {
        let mut queue = lock(&self.shared.queue);
        if queue.stopped {
            return;
        }
        queue.ops.push(op);
        queue.queued += 1;
        drop(queue);
        self.shared.work.notify_one();
    }

    /// Queues a span, unless the queue is full: then it is dropped (and
    /// counted), and false.
    pub(crate) fn push_span(&self, op: Op) -> bool {
        let size = match &op {
            Op::Span { proto, .. } => proto.len(),
            _ => 0,
        };
        let mut queue = lock(&self.shared.queue);
        if queue.stopped {
            return false;
        }
        if queue.span_bytes.saturating_add(size) > queue.max_span_bytes {
            queue.dropped += 1;
            return false;
        }
        queue.span_bytes += size;
        queue.ops.push(op);
        queue.queued += 1;
        drop(queue);
        self.shared.work.notify_one();
        true
    }

    /// Spans dropped because the writer fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        lock(&self.shared.queue).dropped
    }

    /// Batches that failed to commit.
    pub(crate) fn failures(&self) -> u64 {
        lock(&self.shared.queue).failures
    }

    /// Blocks until everything queued so far is written (or the writer
    /// stopped).
    pub(crate) fn flush(&self) {
        let mut queue = lock(&self.shared.queue);
        let target = queue.queued;
        while queue.written < target && !queue.stopped {
            queue = self
                .shared
                .written
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes what is queued, stops the writer and lets go of the file.
    /// Later ops are ignored.
    pub(crate) fn close(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_one();
        let writer = lock(&self.shared.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The writer finishes the queue and stops on its own.
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: one transaction per wake-up, with whatever queued.
fn write_loop(db: &Database, path: &Path, shared: &Shared) {
    let mut reported_drops = 0;
    loop {
        let (ops, upto, closed, dropped) = {
            let mut queue = lock(&shared.queue);
            while queue.ops.is_empty() && !queue.closed {
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.span_bytes = 0;
            (
                std::mem::take(&mut queue.ops),
                queue.queued,
                queue.closed,
                queue.dropped,
            )
        };
        if dropped > reported_drops {
            tracing::warn!(
                file = %path.display(),
                dropped = dropped - reported_drops,
                "trace store file fell behind: spans kept in memory only"
            );
            reported_drops = dropped;
        }
        let failed = if ops.is_empty() {
            false
        } else if let Err(error) = apply(db, ops) {
            tracing::error!(file = %path.display(), %error, "writing spans failed");
            true
        } else {
            false
        };
        let mut queue = lock(&shared.queue);
        queue.written = upto;
        if failed {
            queue.failures += 1;
        }
        if closed && queue.ops.is_empty() {
            queue.stopped = true;
            drop(queue);
            shared.written.notify_all();
            return;
        }
        drop(queue);
        shared.written.notify_all();
    }
}

/// Applies `ops` in one durable transaction.
fn apply(db: &Database, ops: Vec<Op>) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut spans = txn.open_table(SPANS)?;
        let mut origins = txn.open_table(ORIGINS)?;
        for op in ops {
            match op {
                Op::Origin { id, key } => {
                    origins.insert(id, key.as_slice())?;
                }
                Op::DropOrigin(id) => {
                    origins.remove(id)?;
                }
                Op::Span {
                    key,
                    touch,
                    received,
                    origin,
                    proto,
                } => {
                    spans.insert(key.as_slice(), (touch, received, origin, proto.as_slice()))?;
                }
                Op::DropSpan(key) => {
                    spans.remove(key.as_slice())?;
                }
                Op::DropTrace(trace) => {
                    let low = row_key(&trace, &[0; 8]);
                    let high = row_key(&trace, &[0xff; 8]);
                    spans.retain_in(low.as_slice()..=high.as_slice(), |_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}
