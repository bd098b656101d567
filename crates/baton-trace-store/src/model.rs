//! The query model: what the query API serves as JSON (camelCase names,
//! hex ids, nanosecond timestamps as decimal strings).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

/// Attributes as JSON values, by key.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// One trace in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    /// Lowercase hex, 32 characters.
    pub trace_id: String,
    /// Service of the root span (or of the earliest span when the root has
    /// not arrived).
    pub root_service: String,
    /// Name of the root span (or of the earliest span).
    pub root_name: String,
    /// Earliest span start, nanoseconds since the Unix epoch.
    #[serde(with = "as_string")]
    pub start_unix_nano: u64,
    /// Latest span end minus earliest span start.
    #[serde(with = "as_string")]
    pub duration_nanos: u64,
    /// Spans stored for this trace.
    pub span_count: usize,
    /// Whether any span has status ERROR.
    pub error: bool,
    /// Services taking part, in order of their first span's start.
    pub services: Vec<String>,
    /// A message's flow, a batch RPC trace, or another trace.
    pub kind: TraceKind,
    /// The message ids its spans carry (`messaging.message.id`).
    pub message_ids: Vec<String>,
    /// Topics its spans name (short ids).
    pub topics: Vec<String>,
    /// Subscriptions its spans name (short ids).
    pub subscriptions: Vec<String>,
    /// Its place in the store's order (most recently updated first): a
    /// search with this cursor starts after it.
    pub cursor: String,
}

/// One page of search results (`GET /api/traces?...`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    /// The matching traces on this page, most recently updated first.
    pub traces: Vec<TraceSummary>,
    /// Traces matching in all (every page).
    pub total: usize,
    /// Whether more match after this page.
    pub more: bool,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// What the stored traces name, for a search form's suggestions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchFacets {
    /// Services (`service.name`), sorted.
    pub services: Vec<String>,
    /// Topic short ids, sorted.
    pub topics: Vec<String>,
    /// Subscription short ids, sorted.
    pub subscriptions: Vec<String>,
}

/// One trace with all its spans.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceDetail {
    /// Lowercase hex, 32 characters.
    pub trace_id: String,
    /// The trace's spans, by start time.
    pub spans: Vec<Span>,
    /// Spans of other traces that link to a span of this trace, by start time.
    pub linked_spans: Vec<Span>,
}

/// One span as served by the query API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// Lowercase hex, 32 characters.
    pub trace_id: String,
    /// Lowercase hex, 16 characters.
    pub span_id: String,
    /// Lowercase hex, 16 characters, or empty for a root span.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// `INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER` or `CONSUMER`.
    pub kind: SpanKind,
    /// The resource's `service.name`.
    pub service: String,
    /// Every attribute of the resource that emitted the span (`service.name`
    /// included). Shared by the spans of one resource.
    pub resource: Arc<Attributes>,
    /// The instrumentation scope (library) that recorded the span. Shared by
    /// the spans of one scope.
    pub scope: Arc<Scope>,
    /// Start, nanoseconds since the Unix epoch.
    #[serde(with = "as_string")]
    pub start_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    #[serde(with = "as_string")]
    pub end_unix_nano: u64,
    /// Attributes as JSON values.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Events, in the order recorded.
    pub events: Vec<Event>,
    /// Links to other spans.
    pub links: Vec<Link>,
    /// Status.
    pub status: Status,
}

/// An instrumentation scope: the library that recorded a span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Its name (empty when the SDK sent none).
    pub name: String,
    /// Its version (empty when unknown).
    pub version: String,
    /// Its attributes as JSON values.
    pub attributes: Attributes,
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Event name.
    pub name: String,
    /// When, nanoseconds since the Unix epoch.
    #[serde(with = "as_string")]
    pub time_unix_nano: u64,
    /// Attributes as JSON values.
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// A link from a span to another span.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// Lowercase hex, 32 characters.
    pub trace_id: String,
    /// Lowercase hex, 16 characters.
    pub span_id: String,
    /// Attributes as JSON values.
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// A span's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `UNSET`, `OK` or `ERROR`.
    pub code: StatusCode,
    /// Description (for errors).
    pub message: String,
}

/// Span kind as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SpanKind {
    /// Internal operation (also used for unspecified kinds).
    Internal,
    /// Server side of a request.
    Server,
    /// Client side of a request.
    Client,
    /// Sends a message.
    Producer,
    /// Receives a message.
    Consumer,
}

/// Status code as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusCode {
    /// Not set.
    Unset,
    /// Explicitly OK.
    Ok,
    /// Failed.
    Error,
}

/// What a trace is, for the default view (message flows first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    /// A message's flow: it holds a create, subscribe or process span (or
    /// the broker's spans of a message).
    Message,
    /// A batch RPC trace only: a `<topic> publish` RPC or a `<sub>
    /// ack`/`nack`/`modack` settle RPC, linked into message traces.
    Rpc,
    /// Anything else (a service's own traces without Pub/Sub spans).
    Other,
}

impl TraceKind {
    /// The name used in queries and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Rpc => "rpc",
            Self::Other => "other",
        }
    }
}

/// Serializes `u64` nanoseconds as decimal strings (as OTLP/JSON does), so
/// JavaScript does not lose precision.
mod as_string {
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }
}
