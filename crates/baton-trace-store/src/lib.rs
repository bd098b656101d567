//! Baton's trace store.
//!
//! [`TraceStore`] keeps spans received over OTLP (and the server's own spans,
//! through [`StoreExporter`]) in memory, bounded by a number of spans, an
//! estimate of bytes and optionally an age: the least recently updated
//! traces are evicted first. Input is validated on [`TraceStore::ingest`]:
//! spans with malformed ids or absurd timestamps are rejected and counted,
//! never stored, and never panic. A durable store
//! ([`TraceStoreBuilder::file`]) mirrors its content in a redb file written
//! by a background thread, and reloads it when opened.
//!
//! The query model ([`TraceSummary`], [`TraceDetail`], [`Span`]) serializes
//! to the JSON of the query API (see `docs/trace-view-design.md`).
//!
//! Besides the store, this crate holds everything that feeds and shows it, as
//! axum routers the server mounts: the OTLP receivers ([`otlp`]), the JSON
//! query API, Jaeger's query API under `/jaeger` and the web view
//! ([`router`]). The server decides on which ports they are served. OTLP
//! logs and metrics are answered and counted ([`signals`]); every signal can
//! be sent on upstream ([`forward`]).

mod convert;
mod disk;
mod duration;
mod exporter;
pub mod forward;
mod index;
pub mod ingest_limit;
mod jaeger;
mod model;
pub mod otlp;
pub mod otlp_values;
mod query_api;
pub mod search;
pub mod signals;
mod store;
pub mod web_ui;

pub use disk::TraceFileError;
pub use exporter::StoreExporter;
pub use ingest_limit::IngestLimit;
pub use model::{
    Attributes, Event, Link, Scope, SearchFacets, SearchPage, Span, SpanKind, Status, StatusCode,
    TraceDetail, TraceKind, TraceSummary,
};
pub use opentelemetry_proto;
pub use search::{FilterError, SearchRequest, TraceFilter};
pub use store::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_SPANS, IngestError, IngestSummary, MAX_QUEUED_WRITE_BYTES,
    MAX_SPANS_PER_REQUEST, TraceStore, TraceStoreBuilder, WallClock,
};

/// The query API (`/api/traces...`) over `store`, Jaeger's query API over it
/// (`/jaeger/api/...`, for Grafana's Jaeger data source and the Jaeger UI)
/// and the web view (`/ui/`), for merging into a server's router. They carry
/// their own state, so they fit any router state `S`.
pub fn router<S>(store: TraceStore) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    web_view()
        .merge(query_api::routes(store.clone()))
        .merge(jaeger::routes(store))
}

/// The web view alone (`/ui/`), which reads the query API of its own origin;
/// for serving it over another source of that API.
pub fn web_view<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    web_ui::routes()
}

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod tests;
