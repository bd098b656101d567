//! The bounded store itself: spans by trace, evicted least recently
//! updated first (and once older than the retention), and the summaries and
//! details the query API serves. A durable store mirrors its content into a
//! file ([`crate::disk`]) and reloads it when opened.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use crate::convert::{self, Origin, SpanKey, StoredSpan, TraceKey};
use crate::disk::{self, Journal, Op, TraceFileError};
use crate::index::TraceIndex;
use crate::model::{SearchFacets, SearchPage, Span, TraceDetail, TraceSummary};
use crate::search::SearchRequest;

/// Default bound of a store, in spans.
pub const DEFAULT_MAX_SPANS: usize = 100_000;
/// Default bound of a store's approximate memory use, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024 * 1024;
/// Most spans accepted in one [`TraceStore::ingest`] call.
pub const MAX_SPANS_PER_REQUEST: usize = 50_000;
/// Most span protobuf bytes waiting for a durable store's writer; beyond
/// it spans are kept in memory only (and counted in
/// [`TraceStore::dropped_writes`]).
pub const MAX_QUEUED_WRITE_BYTES: usize = 64 * 1024 * 1024;

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The request holds more spans than [`MAX_SPANS_PER_REQUEST`].
    #[error("request holds {spans} spans, more than the {limit} accepted at once")]
    TooLarge {
        /// Spans in the request.
        spans: usize,
        /// The limit.
        limit: usize,
    },
}

/// What [`TraceStore::ingest`] did with a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Spans stored (or replacing an earlier copy with the same ids).
    pub accepted: usize,
    /// Spans refused: malformed ids, absurd timestamps, or a single trace
    /// larger than the whole store.
    pub rejected: usize,
    /// Why the first rejected span was refused.
    pub first_error: Option<String>,
}

/// A bounded, thread-safe trace store, in memory, optionally mirrored in a
/// file (see [`TraceStoreBuilder::file`]). Clones share the store.
#[derive(Debug, Clone)]
pub struct TraceStore {
    inner: Arc<Mutex<Inner>>,
    settings: Arc<Settings>,
}

/// A source of wall-clock time (the store stamps when traces were updated
/// with it, for the retention).
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What does not change after the store is built.
struct Settings {
    retention: Option<Duration>,
    clock: WallClock,
    path: Option<PathBuf>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("retention", &self.retention)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TraceStore`]: its bounds, its retention, its clock and, for a
/// durable store, its file.
#[derive(Clone)]
pub struct TraceStoreBuilder {
    max_spans: usize,
    max_bytes: usize,
    retention: Option<Duration>,
    clock: WallClock,
    file: Option<PathBuf>,
}

impl fmt::Debug for TraceStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceStoreBuilder")
            .field("max_spans", &self.max_spans)
            .field("max_bytes", &self.max_bytes)
            .field("retention", &self.retention)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Default for TraceStoreBuilder {
    fn default() -> Self {
        Self {
            max_spans: DEFAULT_MAX_SPANS,
            max_bytes: DEFAULT_MAX_BYTES,
            retention: None,
            clock: Arc::new(SystemTime::now),
            file: None,
        }
    }
}

impl TraceStoreBuilder {
    /// At most `spans` spans (at least 1; default [`DEFAULT_MAX_SPANS`]).
    pub fn max_spans(mut self, spans: usize) -> Self {
        self.max_spans = spans;
        self
    }

    /// About `bytes` of memory at most (default [`DEFAULT_MAX_BYTES`]); see
    /// [`TraceStore::with_limits`].
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Traces not updated for `retention` go (by
    /// [`TraceStore::evict_expired`], and when loading); `None` (the
    /// default) keeps them until the bounds push them out.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention.filter(|r| !r.is_zero());
        self
    }

    /// The wall clock stamping updates (default: the system's).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Mirrors the store in the file at `path` (a redb database, created
    /// when missing) and loads what it holds.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The store; for a durable one, opens and loads its file (blocking
    /// work: at most the store's bounds of spans are read and decoded).
    pub fn build(self) -> Result<TraceStore, TraceFileError> {
        let mut inner = Inner::new(self.max_spans, self.max_bytes);
        if let Some(path) = &self.file {
            let (db, loaded) = disk::open(path)?;
            let journal = Arc::new(Journal::start(db, path, MAX_QUEUED_WRITE_BYTES)?);
            inner.journal = Some(journal);
            let cutoff = self
                .retention
                .map(|r| nanos((self.clock)().checked_sub(r).unwrap_or(UNIX_EPOCH)));
            inner.load(loaded, cutoff);
        }
        Ok(TraceStore {
            inner: Arc::new(Mutex::new(inner)),
            settings: Arc::new(Settings {
                retention: self.retention,
                clock: self.clock,
                path: self.file,
            }),
        })
    }
}

/// Nanoseconds since the epoch (0 before it, saturating far after).
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct TraceEntry {
    spans: HashMap<SpanKey, StoredSpan>,
    /// Key of this trace in `Inner::order`.
    touched: u64,
    /// When it was last updated, ns since the epoch (the store's clock).
    updated: u64,
    /// What searches look at, kept up to date with `spans`.
    index: TraceIndex,
}

/// Where a span being stored comes from.
enum Source {
    /// A request, received at `received` (ns); `proto` to write to the file.
    Request {
        received: u64,
        proto: Option<Vec<u8>>,
    },
    /// The file: its touch, reception time and origin id as stored.
    File {
        touch: u64,
        received: u64,
        origin: u64,
    },
}

#[derive(Debug)]
struct Inner {
    /// The file's writer, for a durable store.
    journal: Option<Arc<Journal>>,
    max_spans: usize,
    total_spans: usize,
    max_bytes: usize,
    total_bytes: usize,
    next_touch: u64,
    traces: HashMap<TraceKey, TraceEntry>,
    /// Traces by last update, oldest first.
    order: BTreeMap<u64, TraceKey>,
    /// For each trace, the spans of other traces linking into it.
    linked_from: HashMap<TraceKey, HashSet<(TraceKey, SpanKey)>>,
    /// The origins (resource and scope) of stored spans, one copy each, by id.
    origins: HashMap<u64, OriginEntry>,
    /// Ids of `origins` by [`Origin::key`].
    origin_ids: HashMap<Vec<u8>, u64>,
    next_origin: u64,
}

/// An origin shared by `refs` stored spans.
#[derive(Debug)]
struct OriginEntry {
    origin: Origin,
    refs: usize,
}

impl TraceStore {
    /// An in-memory store holding at most `max_spans` spans (at least 1) and
    /// about [`DEFAULT_MAX_BYTES`] of span content.
    pub fn new(max_spans: usize) -> Self {
        Self::with_limits(max_spans, DEFAULT_MAX_BYTES)
    }

    /// An in-memory store holding at most `max_spans` spans (at least 1)
    /// and about `max_bytes` of span content (names, attributes, events;
    /// estimated from the protobuf size) and of resources and scopes. A span
    /// larger than `max_bytes` is rejected.
    pub fn with_limits(max_spans: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::new(max_spans, max_bytes))),
            settings: Arc::new(Settings {
                retention: None,
                clock: Arc::new(SystemTime::now),
                path: None,
            }),
        }
    }

    /// A builder: bounds, retention, clock, file.
    pub fn builder() -> TraceStoreBuilder {
        TraceStoreBuilder::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The store stays consistent between statements that can panic, so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates and stores the spans of an OTLP export request.
    ///
    /// Spans with malformed ids or absurd timestamps (ending before they
    /// start, before 2000, far in the future, lasting over 7 days) are
    /// counted in [`IngestSummary::rejected`]. A request with more than
    /// [`MAX_SPANS_PER_REQUEST`] spans is refused whole.
    pub fn ingest(&self, request: ExportTraceServiceRequest) -> Result<IngestSummary, IngestError> {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        if spans > MAX_SPANS_PER_REQUEST {
            return Err(IngestError::TooLarge {
                spans,
                limit: MAX_SPANS_PER_REQUEST,
            });
        }
        let durable = self.settings.path.is_some();
        let converted = convert::convert(request.resource_spans, durable);
        let mut summary = IngestSummary {
            accepted: 0,
            rejected: converted.rejected,
            first_error: converted.first_error,
        };
        let received = nanos((self.settings.clock)());
        let mut inner = self.lock();
        for converted_span in converted.spans {
            let origin = &converted.origins[converted_span.origin];
            let source = Source::Request {
                received,
                proto: converted_span.proto,
            };
            if inner.insert(converted_span.span, origin, source) {
                summary.accepted += 1;
            } else {
                summary.rejected += 1;
                summary
                    .first_error
                    .get_or_insert_with(|| "trace larger than the whole store".to_string());
            }
        }
        Ok(summary)
    }

    /// Up to `limit` traces, most recently updated first.
    pub fn list(&self, limit: usize) -> Vec<TraceSummary> {
        let inner = self.lock();
        inner
            .order
            .values()
            .rev()
            .take(limit)
            .filter_map(|key| inner.traces.get(key).map(|entry| summarize(key, entry)))
            .collect()
    }

    /// One page of the traces matching `request`, most recently updated
    /// first, with how many match in all. The conditions are checked on
    /// each trace's search record (kept up to date on ingest); only an
    /// `attr` condition on an attribute the record does not keep looks at
    /// the spans of the traces that pass the others. Relative times are
    /// resolved on the store's clock.
    pub fn search(&self, request: &SearchRequest) -> SearchPage {
        let now = nanos((self.settings.clock)());
        let filter = &request.filter;
        let prepared = filter.prepare(now);
        let limit = request.limit.clamp(1, crate::search::MAX_PAGE_LIMIT);
        let inner = self.lock();
        // One pass over the traces in the map's own order (no lookups):
        // count the matches, keep the `limit` most recently updated below
        // the cursor.
        let mut total = 0;
        let mut below_cursor = 0;
        let mut newest: BinaryHeap<Reverse<(u64, TraceKey)>> = BinaryHeap::with_capacity(limit + 1);
        for (key, entry) in &inner.traces {
            if !filter.matches_index(&entry.index, &prepared) {
                continue;
            }
            if filter.needs_spans(&entry.index)
                && !filter.matches_spans(&entry.index, entry.spans.values().map(|s| &s.span))
            {
                continue;
            }
            total += 1;
            if request.cursor.is_some_and(|cursor| entry.touched >= cursor) {
                continue;
            }
            below_cursor += 1;
            newest.push(Reverse((entry.touched, *key)));
            if newest.len() > limit {
                newest.pop();
            }
        }
        let mut page: Vec<(u64, TraceKey)> = newest.into_iter().map(|Reverse(item)| item).collect();
        page.sort_unstable_by_key(|(touch, _)| Reverse(*touch));
        let more = below_cursor > page.len();
        let next_cursor = more
            .then(|| page.last().map(|(touch, _)| touch.to_string()))
            .flatten();
        let traces = page
            .iter()
            .filter_map(|(_, key)| inner.traces.get(key).map(|entry| summarize(key, entry)))
            .collect();
        SearchPage {
            traces,
            total,
            more,
            next_cursor,
        }
    }

    /// The services, topics and subscriptions of the stored traces, sorted,
    /// for a search form's suggestions.
    pub fn facets(&self) -> SearchFacets {
        let inner = self.lock();
        let mut services = BTreeSet::new();
        let mut topics = BTreeSet::new();
        let mut subscriptions = BTreeSet::new();
        for entry in inner.traces.values() {
            services.extend(entry.index.services.iter().map(String::as_str));
            topics.extend(entry.index.topics.iter().map(|d| d.id.as_str()));
            subscriptions.extend(entry.index.subscriptions.iter().map(|d| d.id.as_str()));
        }
        let owned =
            |set: BTreeSet<&str>| -> Vec<String> { set.into_iter().map(str::to_string).collect() };
        SearchFacets {
            services: owned(services),
            topics: owned(topics),
            subscriptions: owned(subscriptions),
        }
    }

    /// The trace with hex id `trace_id` (either case), if stored.
    pub fn trace(&self, trace_id: &str) -> Option<TraceDetail> {
        let key = convert::parse_trace_id(trace_id.trim())?;
        self.lock().detail(&key)
    }

    /// The most recently updated trace.
    pub fn last(&self) -> Option<TraceDetail> {
        let inner = self.lock();
        let key = *inner.order.values().next_back()?;
        inner.detail(&key)
    }

    /// Visits the stored traces, most recently updated first, with their
    /// spans (in no particular order), until `visit` breaks. The store is
    /// locked meanwhile: `visit` should only look (and keep ids or a few
    /// names), then fetch whole traces with [`TraceStore::trace`].
    pub(crate) fn scan(&self, mut visit: impl FnMut(TraceSpans<'_>) -> ControlFlow<()>) {
        let inner = self.lock();
        for key in inner.order.values().rev() {
            let Some(entry) = inner.traces.get(key) else {
                continue;
            };
            if visit(TraceSpans(entry.spans.values())).is_break() {
                return;
            }
        }
    }

    /// Spans currently stored.
    pub fn span_count(&self) -> usize {
        self.lock().total_spans
    }

    /// Approximate memory held by the stored spans and their resources and
    /// scopes (one copy of each distinct one), in bytes.
    pub fn byte_count(&self) -> usize {
        self.lock().total_bytes
    }

    /// Traces currently stored.
    pub fn trace_count(&self) -> usize {
        self.lock().traces.len()
    }

    /// The bound, in spans.
    pub fn max_spans(&self) -> usize {
        self.lock().max_spans
    }

    /// The bound of memory, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.lock().max_bytes
    }

    /// How long traces are kept after their last update (`None`: until the
    /// bounds push them out).
    pub fn retention(&self) -> Option<Duration> {
        self.settings.retention
    }

    /// The file a durable store mirrors its content in.
    pub fn path(&self) -> Option<&Path> {
        self.settings.path.as_deref()
    }

    /// Evicts the traces not updated for longer than the retention; how many
    /// went. Does nothing without a retention.
    pub fn evict_expired(&self) -> usize {
        let Some(retention) = self.settings.retention else {
            return 0;
        };
        let now = (self.settings.clock)();
        let cutoff = nanos(now.checked_sub(retention).unwrap_or(UNIX_EPOCH));
        self.lock().evict_older_than(cutoff)
    }

    /// Runs [`Self::evict_expired`] on Tokio's clock, every tenth of the
    /// retention (between 1 s and 1 min), forever; returns at once without
    /// a retention. Spawn it; with paused time it follows the test's clock.
    pub async fn expire_periodically(self) {
        let Some(retention) = self.settings.retention else {
            return;
        };
        let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            self.evict_expired();
        }
    }

    /// Spans a durable store could not write to its file because its writer
    /// fell behind (they stay in memory, but will not survive a restart).
    pub fn dropped_writes(&self) -> u64 {
        self.journal().map_or(0, |journal| journal.dropped())
    }

    /// Batches a durable store failed to write to its file (logged).
    pub fn failed_writes(&self) -> u64 {
        self.journal().map_or(0, |journal| journal.failures())
    }

    /// Blocks until the changes made so far are in the file (durable store;
    /// nothing to do otherwise). Call it off the async runtime.
    pub fn flush(&self) {
        if let Some(journal) = self.journal() {
            journal.flush();
        }
    }

    /// Writes what is pending to the file, then lets go of it (blocking;
    /// call it off the async runtime). The store keeps serving from memory;
    /// later changes are not written.
    pub fn close(&self) {
        let journal = self.lock().journal.take();
        if let Some(journal) = journal {
            journal.close();
        }
    }

    fn journal(&self) -> Option<Arc<Journal>> {
        self.lock().journal.clone()
    }

    /// Distinct origins (resource and scope) held. For tests.
    #[cfg(test)]
    pub(crate) fn origin_count(&self) -> usize {
        self.lock().origins.len()
    }

    /// Checks the bookkeeping against the content: byte and span totals,
    /// origin references. For tests.
    #[cfg(test)]
    pub(crate) fn audit(&self) {
        let inner = self.lock();
        let mut refs: HashMap<u64, usize> = HashMap::new();
        let mut bytes = 0;
        let mut spans = 0;
        for entry in inner.traces.values() {
            let rebuilt = TraceIndex::build(entry.spans.values().map(|s| &s.span));
            assert!(
                entry.index.same_as(&rebuilt),
                "search record out of date: {:?} vs {rebuilt:?}",
                entry.index
            );
            for span in entry.spans.values() {
                *refs.entry(span.origin).or_default() += 1;
                bytes += span.size;
                spans += 1;
                let origin = &inner.origins[&span.origin].origin;
                assert!(Arc::ptr_eq(&span.span.resource, &origin.resource));
                assert!(Arc::ptr_eq(&span.span.scope, &origin.scope));
            }
        }
        for (id, entry) in &inner.origins {
            assert_eq!(refs.get(id), Some(&entry.refs), "references of origin {id}");
            assert_eq!(inner.origin_ids.get(&entry.origin.key), Some(id));
            bytes += entry.origin.size;
        }
        assert_eq!(inner.origin_ids.len(), inner.origins.len());
        assert_eq!(spans, inner.total_spans);
        assert_eq!(bytes, inner.total_bytes);
    }
}

/// The spans of one trace during [`TraceStore::scan`], in no particular order.
#[derive(Debug, Clone)]
pub(crate) struct TraceSpans<'a>(std::collections::hash_map::Values<'a, SpanKey, StoredSpan>);

impl<'a> Iterator for TraceSpans<'a> {
    type Item = &'a Span;

    fn next(&mut self) -> Option<&'a Span> {
        self.0.next().map(|s| &s.span)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl Default for TraceStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SPANS)
    }
}

impl Inner {
    fn new(max_spans: usize, max_bytes: usize) -> Self {
        Self {
            journal: None,
            max_spans: max_spans.max(1),
            total_spans: 0,
            max_bytes,
            total_bytes: 0,
            next_touch: 0,
            traces: HashMap::new(),
            order: BTreeMap::new(),
            linked_from: HashMap::new(),
            origins: HashMap::new(),
            origin_ids: HashMap::new(),
            next_origin: 1,
        }
    }

    /// Queues `op` for the file (durable store).
    fn journal(&self, op: Op) {
        if let Some(journal) = &self.journal {
            journal.push(op);
        }
    }

    /// Loads what the file held: spans in the order they were stored (so
    /// the eviction order survives), except traces last updated before
    /// `cutoff` (ns) and spans that no longer decode, which are deleted from
    /// the file. Spans beyond the bounds (lowered since) are evicted as
    /// usual.
    fn load(&mut self, loaded: disk::Loaded, cutoff: Option<u64>) {
        let mut updated: HashMap<TraceKey, u64> = HashMap::new();
        for span in &loaded.spans {
            let trace = trace_of(&span.key);
            let latest = updated.entry(trace).or_default();
            *latest = (*latest).max(span.received);
        }
        let mut expired: HashSet<TraceKey> = HashSet::new();
        if let Some(cutoff) = cutoff {
            for (trace, latest) in &updated {
                if *latest < cutoff {
                    expired.insert(*trace);
                    self.journal(Op::DropTrace(*trace));
                }
            }
        }
        let mut origins: HashMap<u64, Option<Origin>> = loaded
            .origins
            .into_iter()
            .map(|(id, key)| (id, Origin::decode(&key).ok()))
            .collect();
        self.next_origin = origins.keys().max().map_or(1, |max| max + 1);
        let mut spans = loaded.spans;
        spans.sort_by_key(|span| span.touch);
        let now = convert::now_nanos();
        for span in spans {
            if expired.contains(&trace_of(&span.key)) {
                continue;
            }
            let Some(Some(origin)) = origins.get(&span.origin) else {
                self.journal(Op::DropSpan(span.key));
                continue;
            };
            let stored = opentelemetry_proto::tonic::trace::v1::Span::decode(span.proto.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|proto| convert::convert_span(proto, origin, now));
            let stored = match stored {
                Ok(stored) if disk::row_key(&stored.trace_id, &stored.span_id) == span.key => {
                    stored
                }
                _ => {
                    self.journal(Op::DropSpan(span.key));
                    continue;
                }
            };
            let source = Source::File {
                touch: span.touch,
                received: span.received,
                origin: span.origin,
            };
            if !self.insert(stored, origin, source) {
                self.journal(Op::DropSpan(span.key));
            }
        }
        // Origins no loaded span uses.
        origins.retain(|id, _| !self.origins.contains_key(id));
        for id in origins.into_keys() {
            self.journal(Op::DropOrigin(id));
        }
    }

    /// Evicts the traces last updated before `cutoff` (ns); how many.
    fn evict_older_than(&mut self, cutoff: u64) -> usize {
        let expired: Vec<TraceKey> = self
            .order
            .values()
            .filter(|key| self.traces.get(*key).is_some_and(|t| t.updated < cutoff))
            .copied()
            .collect();
        for key in &expired {
            self.evict(key);
        }
        expired.len()
    }

    /// Stores `span` of `origin`, evicting old traces to stay in bounds;
    /// false when the span's trace alone fills the store.
    fn insert(&mut self, mut span: StoredSpan, origin: &Origin, source: Source) -> bool {
        if span.size > self.max_bytes {
            return false;
        }
        let trace_id = span.trace_id;
        let replaced = self
            .traces
            .get(&trace_id)
            .and_then(|entry| entry.spans.get(&span.span_id))
            .map(|old| old.size);
        let (new_spans, freed) = match replaced {
            Some(size) => (0, size),
            None => (1, 0),
        };
        loop {
            // A new origin costs its own memory too (once).
            let origin_size = if self.origin_ids.contains_key(&origin.key) {
                0
            } else {
                origin.size
            };
            if self.total_spans + new_spans <= self.max_spans
                && (self.total_bytes - freed)
                    .saturating_add(span.size)
                    .saturating_add(origin_size)
                    <= self.max_bytes
            {
                break;
            }
            let Some(oldest) = self
                .order
                .values()
                .copied()
                .find(|candidate| *candidate != trace_id)
            else {
                // Only this trace is left and it fills the store.
                return false;
            };
            self.evict(&oldest);
        }
        let (touch, received, known_origin) = match &source {
            Source::Request { received, .. } => {
                let touch = self.next_touch;
                self.next_touch += 1;
                (touch, *received, None)
            }
            Source::File {
                touch,
                received,
                origin,
            } => {
                self.next_touch = self.next_touch.max(touch.saturating_add(1));
                (*touch, *received, Some(*origin))
            }
        };
        let origin_id = self.acquire_origin(origin, known_origin);
        if let Some(entry) = self.origins.get(&origin_id) {
            // One copy of the maps, whichever request brought them.
            span.span.resource = Arc::clone(&entry.origin.resource);
            span.span.scope = Arc::clone(&entry.origin.scope);
        }
        span.origin = origin_id;
        if let (
            Source::Request {
                proto: Some(proto), ..
            },
            Some(journal),
        ) = (source, &self.journal)
        {
            // Dropped (and counted) when the writer is behind.
            journal.push_span(Op::Span {
                key: disk::row_key(&trace_id, &span.span_id),
                touch,
                received,
                origin: origin_id,
                proto,
            });
        }
        let entry = self.traces.entry(trace_id).or_insert_with(|| TraceEntry {
            spans: HashMap::new(),
            touched: touch,
            updated: received,
            index: TraceIndex::new(),
        });
        self.order.remove(&entry.touched);
        entry.touched = touch;
        entry.updated = entry.updated.max(received);
        self.order.insert(touch, trace_id);
        let span_id = span.span_id;
        let new_targets = span.link_targets.clone();
        self.total_bytes += span.size;
        if replaced.is_none() {
            entry.index.add(&span.span);
        }
        let old = entry.spans.insert(span_id, span);
        if let Some(old) = old {
            // A replaced span may take a name, an error or a term away.
            entry.index = TraceIndex::build(entry.spans.values().map(|s| &s.span));
            self.total_bytes -= old.size;
            self.unlink(trace_id, span_id, &old.link_targets);
            self.release_origin(old.origin);
        } else {
            self.total_spans += 1;
        }
        for (target, _) in new_targets {
            if target != trace_id {
                self.linked_from
                    .entry(target)
                    .or_default()
                    .insert((trace_id, span_id));
            }
        }
        true
    }

    fn evict(&mut self, trace_id: &TraceKey) {
        let Some(entry) = self.traces.remove(trace_id) else {
            return;
        };
        self.journal(Op::DropTrace(*trace_id));
        self.order.remove(&entry.touched);
        self.total_spans -= entry.spans.len();
        for (span_id, span) in &entry.spans {
            self.total_bytes -= span.size;
            self.unlink(*trace_id, *span_id, &span.link_targets);
            self.release_origin(span.origin);
        }
    }

    /// The id of `origin`, stored (and counted in `total_bytes`) when new,
    /// with one more reference. `known` is its id in the file, when loading
    /// (nothing to write then).
    fn acquire_origin(&mut self, origin: &Origin, known: Option<u64>) -> u64 {
        if let Some(&id) = self.origin_ids.get(&origin.key)
            && let Some(entry) = self.origins.get_mut(&id)
        {
            entry.refs += 1;
            return id;
        }
        let id = match known {
            Some(id) if !self.origins.contains_key(&id) => id,
            _ => {
                let id = self.next_origin;
                self.next_origin += 1;
                self.journal(Op::Origin {
                    id,
                    key: origin.key.clone(),
                });
                id
            }
        };
        self.total_bytes += origin.size;
        self.origin_ids.insert(origin.key.clone(), id);
        self.origins.insert(
            id,
            OriginEntry {
                origin: origin.clone(),
                refs: 1,
            },
        );
        id
    }

    /// One reference less to origin `id`; dropped with the last one.
    fn release_origin(&mut self, id: u64) {
        let Some(entry) = self.origins.get_mut(&id) else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0
            && let Some(entry) = self.origins.remove(&id)
        {
            self.total_bytes -= entry.origin.size;
            self.origin_ids.remove(&entry.origin.key);
            self.journal(Op::DropOrigin(id));
        }
    }

    fn unlink(&mut self, trace_id: TraceKey, span_id: SpanKey, targets: &[(TraceKey, SpanKey)]) {
        for (target, _) in targets {
            if let Some(sources) = self.linked_from.get_mut(target) {
                sources.remove(&(trace_id, span_id));
                if sources.is_empty() {
                    self.linked_from.remove(target);
                }
            }
        }
    }

    fn detail(&self, key: &TraceKey) -> Option<TraceDetail> {
        let entry = self.traces.get(key)?;
        let mut spans: Vec<Span> = entry.spans.values().map(|s| s.span.clone()).collect();
        sort_spans(&mut spans);
        let mut linked_spans: Vec<Span> = self
            .linked_from
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(trace, span)| self.traces.get(trace)?.spans.get(span))
            .map(|s| s.span.clone())
            .collect();
        sort_spans(&mut linked_spans);
        Some(TraceDetail {
            trace_id: convert::hex(key),
            spans,
            linked_spans,
        })
    }
}

/// The trace id of a file row key.
fn trace_of(key: &disk::RowKey) -> TraceKey {
    let mut trace = [0; 16];
    trace.copy_from_slice(&key[..16]);
    trace
}

fn sort_spans(spans: &mut [Span]) {
    spans.sort_by(|a, b| (a.start_unix_nano, &a.span_id).cmp(&(b.start_unix_nano, &b.span_id)));
}

fn summarize(key: &TraceKey, entry: &TraceEntry) -> TraceSummary {
    let mut spans: Vec<&StoredSpan> = entry.spans.values().collect();
    spans.sort_by(|a, b| {
        (a.span.start_unix_nano, a.span_id).cmp(&(b.span.start_unix_nano, b.span_id))
    });
    // The root: a span without parent, else one whose parent is not stored,
    // else the earliest.
    let root = spans
        .iter()
        .find(|s| s.parent.is_none())
        .or_else(|| {
            spans
                .iter()
                .find(|s| s.parent.is_some_and(|p| !entry.spans.contains_key(&p)))
        })
        .or(spans.first());
    let index = &entry.index;
    TraceSummary {
        trace_id: convert::hex(key),
        root_service: root.map(|s| s.span.service.clone()).unwrap_or_default(),
        root_name: root.map(|s| s.span.name.clone()).unwrap_or_default(),
        start_unix_nano: spans.first().map_or(0, |s| s.span.start_unix_nano),
        duration_nanos: index.duration(),
        span_count: spans.len(),
        error: index.errors > 0,
        services: services_in_order(&spans),
        kind: index.kind(),
        message_ids: index.message_ids.clone(),
        topics: index.topics.iter().map(|d| d.id.clone()).collect(),
        subscriptions: index.subscriptions.iter().map(|d| d.id.clone()).collect(),
        cursor: entry.touched.to_string(),
    }
}

/// The services of `spans` (sorted by start), in order of their first span.
fn services_in_order(spans: &[&StoredSpan]) -> Vec<String> {
    let mut services: Vec<String> = Vec::new();
    for span in spans {
        if !services.contains(&span.span.service) {
            services.push(span.span.service.clone());
        }
    }
    services
}
