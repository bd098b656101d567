//! The bounded store itself: spans by trace, evicted least recently
//! updated first, and the summaries and details the query API serves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::convert::{self, Origin, SpanKey, StoredSpan, TraceKey};
use crate::model::{Span, StatusCode, TraceDetail, TraceSummary};

/// Default bound of a store, in spans.
pub const DEFAULT_MAX_SPANS: usize = 100_000;
/// Default bound of a store's approximate memory use, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024 * 1024;
/// Most spans accepted in one [`TraceStore::ingest`] call.
pub const MAX_SPANS_PER_REQUEST: usize = 50_000;

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

/// A bounded, thread-safe in-memory trace store. Clones share the store.
#[derive(Debug, Clone)]
pub struct TraceStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct TraceEntry {
    spans: HashMap<SpanKey, StoredSpan>,
    /// Key of this trace in `Inner::order`.
    touched: u64,
}

#[derive(Debug)]
struct Inner {
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
    /// A store holding at most `max_spans` spans (at least 1) and about
    /// [`DEFAULT_MAX_BYTES`] of span content.
    pub fn new(max_spans: usize) -> Self {
        Self::with_limits(max_spans, DEFAULT_MAX_BYTES)
    }

    /// A store holding at most `max_spans` spans (at least 1) and about
    /// `max_bytes` of span content (names, attributes, events; estimated
    /// from the protobuf size). A span larger than `max_bytes` is rejected.
    pub fn with_limits(max_spans: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
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
            })),
        }
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
        let converted = convert::convert(request.resource_spans);
        let mut summary = IngestSummary {
            accepted: 0,
            rejected: converted.rejected,
            first_error: converted.first_error,
        };
        let mut inner = self.lock();
        for converted_span in converted.spans {
            let origin = &converted.origins[converted_span.origin];
            if inner.insert(converted_span.span, origin) {
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

impl Default for TraceStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SPANS)
    }
}

impl Inner {
    /// Stores `span` of `origin`, evicting old traces to stay in bounds;
    /// false when the span's trace alone fills the store.
    fn insert(&mut self, mut span: StoredSpan, origin: &Origin) -> bool {
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
        let origin_id = self.acquire_origin(origin);
        if let Some(entry) = self.origins.get(&origin_id) {
            // One copy of the maps, whichever request brought them.
            span.span.resource = Arc::clone(&entry.origin.resource);
            span.span.scope = Arc::clone(&entry.origin.scope);
        }
        span.origin = origin_id;
        let touch = self.next_touch;
        self.next_touch += 1;
        let entry = self.traces.entry(trace_id).or_insert_with(|| TraceEntry {
            spans: HashMap::new(),
            touched: touch,
        });
        self.order.remove(&entry.touched);
        entry.touched = touch;
        self.order.insert(touch, trace_id);
        let span_id = span.span_id;
        let new_targets = span.link_targets.clone();
        self.total_bytes += span.size;
        let old = entry.spans.insert(span_id, span);
        if let Some(old) = old {
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
        self.order.remove(&entry.touched);
        self.total_spans -= entry.spans.len();
        for (span_id, span) in &entry.spans {
            self.total_bytes -= span.size;
            self.unlink(*trace_id, *span_id, &span.link_targets);
            self.release_origin(span.origin);
        }
    }

    /// The id of `origin`, stored (and counted in `total_bytes`) when new,
    /// with one more reference.
    fn acquire_origin(&mut self, origin: &Origin) -> u64 {
        if let Some(&id) = self.origin_ids.get(&origin.key)
            && let Some(entry) = self.origins.get_mut(&id)
        {
            entry.refs += 1;
            return id;
        }
        let id = self.next_origin;
        self.next_origin += 1;
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
    let start = spans.first().map_or(0, |s| s.span.start_unix_nano);
    let end = spans
        .iter()
        .map(|s| s.span.end_unix_nano)
        .max()
        .unwrap_or(0);
    let mut services: Vec<String> = Vec::new();
    for span in &spans {
        if !services.contains(&span.span.service) {
            services.push(span.span.service.clone());
        }
    }
    TraceSummary {
        trace_id: convert::hex(key),
        root_service: root.map(|s| s.span.service.clone()).unwrap_or_default(),
        root_name: root.map(|s| s.span.name.clone()).unwrap_or_default(),
        start_unix_nano: start,
        duration_nanos: end.saturating_sub(start),
        span_count: spans.len(),
        error: spans
            .iter()
            .any(|s| s.span.status.code == StatusCode::Error),
        services,
    }
}
