//! Validating and converting OTLP protobuf spans into the query model.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, span, status};
use prost::Message as _;

use crate::model::{Attributes, Event, Link, Scope, Span, SpanKind, Status, StatusCode};

/// A trace id as bytes.
pub(crate) type TraceKey = [u8; 16];
/// A span id as bytes.
pub(crate) type SpanKey = [u8; 8];

/// Spans may end at most this far in the future (clock skew allowance).
const MAX_FUTURE_NANOS: u64 = 24 * 3600 * 1_000_000_000;
/// Spans may last at most this long.
const MAX_DURATION_NANOS: u64 = 7 * 24 * 3600 * 1_000_000_000;
/// Spans must start after 2000-01-01T00:00:00Z.
const MIN_START_NANOS: u64 = 946_684_800 * 1_000_000_000;
/// Attribute values nested deeper than this are shown as `null`.
const MAX_VALUE_DEPTH: usize = 16;

/// Bookkeeping per stored span (ids, maps), on top of its content.
const SPAN_OVERHEAD_BYTES: usize = 512;
/// Bookkeeping per stored origin (the shared maps, the store's index).
const ORIGIN_OVERHEAD_BYTES: usize = 256;

/// The service name used when a resource has none.
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// What the spans of one resource and one instrumentation scope share. The
/// store keeps one copy per distinct origin, however many spans and
/// requests refer to it.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The resource and the scope as protobuf (see [`origin_key`]): how the
    /// store recognizes an origin it holds already, and what the disk keeps.
    pub(crate) key: Vec<u8>,
    /// The resource's `service.name`.
    pub(crate) service: String,
    pub(crate) resource: Arc<Attributes>,
    pub(crate) scope: Arc<Scope>,
    /// Approximate memory held (maps, key, bookkeeping).
    pub(crate) size: usize,
}

/// A validated span with its ids in binary form.
#[derive(Debug, Clone)]
pub(crate) struct StoredSpan {
    pub(crate) trace_id: TraceKey,
    pub(crate) span_id: SpanKey,
    /// The store's id of the span's [`Origin`] (set when stored).
    pub(crate) origin: u64,
    /// Targets of this span's links (to index `linkedSpans`).
    pub(crate) link_targets: Vec<(TraceKey, SpanKey)>,
    pub(crate) parent: Option<SpanKey>,
    /// Approximate memory held (the span's protobuf size plus overhead).
    pub(crate) size: usize,
    pub(crate) span: Span,
}

/// A converted span of a request.
#[derive(Debug)]
pub(crate) struct ConvertedSpan {
    /// Index of its origin in [`Converted::origins`].
    pub(crate) origin: usize,
    pub(crate) span: StoredSpan,
    /// The span's protobuf, when asked for (to write it to disk).
    pub(crate) proto: Option<Vec<u8>>,
}

/// The outcome of converting one request.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    pub(crate) origins: Vec<Origin>,
    pub(crate) spans: Vec<ConvertedSpan>,
    pub(crate) rejected: usize,
    pub(crate) first_error: Option<String>,
}

impl Converted {
    fn reject(&mut self, reason: String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(reason);
        }
    }
}

/// Validates and converts every span of `resource_spans`; with
/// `keep_proto`, each converted span also keeps its protobuf.
pub(crate) fn convert(resource_spans: Vec<ResourceSpans>, keep_proto: bool) -> Converted {
    let now = now_nanos();
    let mut out = Converted::default();
    for resource_span in resource_spans {
        let resource = resource_span.resource.unwrap_or_default();
        for scope_span in resource_span.scope_spans {
            if scope_span.spans.is_empty() {
                continue;
            }
            let origin = out.origins.len();
            out.origins.push(Origin::new(
                resource.clone(),
                scope_span.scope.unwrap_or_default(),
            ));
            for proto in scope_span.spans {
                let bytes = keep_proto.then(|| proto.encode_to_vec());
                match convert_span(proto, &out.origins[origin], now) {
                    Ok(span) => out.spans.push(ConvertedSpan {
                        origin,
                        span,
                        proto: bytes,
                    }),
                    Err(reason) => out.reject(reason),
                }
            }
        }
    }
    out
}

impl Origin {
    /// The origin of spans of `resource` recorded by `scope`.
    pub(crate) fn new(resource: Resource, scope: InstrumentationScope) -> Self {
        let key = origin_key(&resource, &scope);
        let service = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        // The maps hold about twice the wire size (as spans do), plus the key.
        let size = key
            .len()
            .saturating_mul(3)
            .saturating_add(ORIGIN_OVERHEAD_BYTES);
        Self {
            key,
            service,
            resource: Arc::new(attributes(resource.attributes)),
            scope: Arc::new(Scope {
                name: scope.name,
                version: scope.version,
                attributes: attributes(scope.attributes),
            }),
            size,
        }
    }

    /// The origin whose [`Origin::key`] is `key` (as read back from disk).
    pub(crate) fn decode(key: &[u8]) -> Result<Self, prost::DecodeError> {
        let mut rest = key;
        let resource = Resource::decode_length_delimited(&mut rest)?;
        let scope = InstrumentationScope::decode(rest)?;
        Ok(Self::new(resource, scope))
    }
}

/// The resource (length-delimited) then the scope, as protobuf.
fn origin_key(resource: &Resource, scope: &InstrumentationScope) -> Vec<u8> {
    let mut key = resource.encode_length_delimited_to_vec();
    key.extend_from_slice(&scope.encode_to_vec());
    key
}

/// Validates and converts one span of `origin`, given the time now (ns
/// since the epoch).
pub(crate) fn convert_span(
    proto: opentelemetry_proto::tonic::trace::v1::Span,
    origin: &Origin,
    now: u64,
) -> Result<StoredSpan, String> {
    // Strings are held as UTF-8 and ids as hex: about twice the wire size.
    let size = proto
        .encoded_len()
        .saturating_mul(2)
        .saturating_add(SPAN_OVERHEAD_BYTES)
        .saturating_add(origin.service.len());
    let trace_id: TraceKey = proto
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("trace id has {} bytes, want 16", proto.trace_id.len()))?;
    if trace_id == [0; 16] {
        return Err("trace id is all zeros".into());
    }
    let span_id: SpanKey = proto
        .span_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("span id has {} bytes, want 8", proto.span_id.len()))?;
    if span_id == [0; 8] {
        return Err("span id is all zeros".into());
    }
    let parent: Option<SpanKey> = match proto.parent_span_id.len() {
        0 => None,
        8 => {
            let mut parent = [0; 8];
            parent.copy_from_slice(&proto.parent_span_id);
            (parent != [0; 8]).then_some(parent)
        }
        n => return Err(format!("parent span id has {n} bytes, want 0 or 8")),
    };
    let start = proto.start_time_unix_nano;
    let end = proto.end_time_unix_nano;
    if start < MIN_START_NANOS {
        return Err(format!(
            "span {} starts before the year 2000",
            hex(&span_id)
        ));
    }
    if end < start {
        return Err(format!("span {} ends before it starts", hex(&span_id)));
    }
    if end > now.saturating_add(MAX_FUTURE_NANOS) {
        return Err(format!("span {} ends in the far future", hex(&span_id)));
    }
    if end - start > MAX_DURATION_NANOS {
        return Err(format!("span {} lasts longer than 7 days", hex(&span_id)));
    }
    let kind = match span::SpanKind::try_from(proto.kind) {
        Ok(span::SpanKind::Server) => SpanKind::Server,
        Ok(span::SpanKind::Client) => SpanKind::Client,
        Ok(span::SpanKind::Producer) => SpanKind::Producer,
        Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
        _ => SpanKind::Internal,
    };
    let status = proto.status.map_or(
        Status {
            code: StatusCode::Unset,
            message: String::new(),
        },
        |s| Status {
            code: match status::StatusCode::try_from(s.code) {
                Ok(status::StatusCode::Ok) => StatusCode::Ok,
                Ok(status::StatusCode::Error) => StatusCode::Error,
                _ => StatusCode::Unset,
            },
            message: s.message,
        },
    );
    let events = proto
        .events
        .into_iter()
        .map(|e| Event {
            name: e.name,
            time_unix_nano: e.time_unix_nano,
            attributes: attributes(e.attributes),
        })
        .collect();
    let mut link_targets = Vec::new();
    let mut links = Vec::new();
    for link in proto.links {
        // Links with malformed ids are dropped, the span is kept.
        let (Ok(link_trace), Ok(link_span)) = (
            TraceKey::try_from(link.trace_id.as_slice()),
            SpanKey::try_from(link.span_id.as_slice()),
        ) else {
            continue;
        };
        link_targets.push((link_trace, link_span));
        links.push(Link {
            trace_id: hex(&link_trace),
            span_id: hex(&link_span),
            attributes: attributes(link.attributes),
        });
    }
    Ok(StoredSpan {
        trace_id,
        span_id,
        origin: 0,
        link_targets,
        parent,
        size,
        span: Span {
            trace_id: hex(&trace_id),
            span_id: hex(&span_id),
            parent_span_id: parent.map(|p| hex(&p)).unwrap_or_default(),
            name: proto.name,
            kind,
            service: origin.service.clone(),
            resource: Arc::clone(&origin.resource),
            scope: Arc::clone(&origin.scope),
            start_unix_nano: start,
            end_unix_nano: end,
            attributes: attributes(proto.attributes),
            events,
            links,
            status,
        },
    })
}

fn attributes(attributes: Vec<KeyValue>) -> Attributes {
    attributes
        .into_iter()
        .map(|kv| (kv.key, value(kv.value, 0)))
        .collect()
}

fn value(any: Option<AnyValue>, depth: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if depth > MAX_VALUE_DEPTH {
        return J::Null;
    }
    match any.and_then(|v| v.value) {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s),
        Some(any_value::Value::BoolValue(b)) => J::Bool(b),
        Some(any_value::Value::IntValue(i)) => J::from(i),
        // NaN and infinities have no JSON number; `from` gives null for them.
        Some(any_value::Value::DoubleValue(d)) => J::from(d),
        Some(any_value::Value::BytesValue(b)) => J::String(hex(&b)),
        Some(any_value::Value::ArrayValue(a)) => J::Array(
            a.values
                .into_iter()
                .map(|v| value(Some(v), depth + 1))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .into_iter()
                .map(|kv| (kv.key, value(kv.value, depth + 1)))
                .collect(),
        ),
        // An index into a profiles string table: meaningless without it.
        Some(any_value::Value::StringValueStrindex(i)) => J::String(format!("strindex:{i}")),
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Parses a 32-digit hex trace id (either case).
pub(crate) fn parse_trace_id(text: &str) -> Option<TraceKey> {
    let text = text.as_bytes();
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        let (hi, lo) = (digit(pair[0])?, digit(pair[1])?);
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// The system's time now, ns since the epoch.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
