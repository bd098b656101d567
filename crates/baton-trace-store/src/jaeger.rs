//! Jaeger's query API over the [`TraceStore`]: the JSON that jaeger-query
//! serves under `/api` and that Grafana's Jaeger data source and the Jaeger UI
//! read, served here under `/jaeger` (Baton's own query API holds `/api`):
//!
//! - `GET /jaeger/api/services` -> `{"data": ["svc", ...], "total": n, ...}`
//! - `GET /jaeger/api/services/{service}/operations` -> operation names
//! - `GET /jaeger/api/operations?service=&spanKind=` -> `[{name, spanKind}]`
//! - `GET /jaeger/api/traces?service=&operation=&tags=&tag=&minDuration=&maxDuration=&start=&end=&limit=&lookback=&traceID=`
//!   -> `{"data": [Trace]}`, most recently updated first
//! - `GET /jaeger/api/traces/{traceID}` -> `{"data": [Trace]}`, 404 when unknown
//! - `GET /jaeger/api/dependencies` -> always empty
//!
//! Spans become Jaeger spans as Jaeger's OTLP translator makes them: the
//! parent is a `CHILD_OF` reference, links are `FOLLOWS_FROM` references,
//! events are logs (the name in the field `event`), and the kind and status
//! become the tags `span.kind`, `otel.status_code`,
//! `otel.status_description` and `error`. Errors use Jaeger's envelope:
//! `{"data": null, ..., "errors": [{"code": 400, "msg": "..."}]}`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;

use crate::convert;
use crate::duration::parse_duration;
use crate::model::{Attributes, Span, SpanKind, StatusCode as SpanStatus, TraceDetail};
use crate::store::TraceStore;

/// Traces answered when the request gives no `limit` (as jaeger-query).
const DEFAULT_LIMIT: usize = 100;
/// Most traces answered by one search.
const MAX_LIMIT: usize = 1500;

/// The routes, for merging into the server's router; they carry their own
/// state, so they fit any router state `S`.
pub(crate) fn routes<S>(store: TraceStore) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/jaeger/api/services", get(services))
        .route(
            "/jaeger/api/services/{service}/operations",
            get(operations_legacy),
        )
        .route("/jaeger/api/operations", get(operations))
        .route("/jaeger/api/traces", get(search))
        .route("/jaeger/api/traces/{trace_id}", get(trace))
        .route("/jaeger/api/dependencies", get(dependencies))
        .route("/jaeger/api/{*rest}", get(unsupported))
        .with_state(store)
}

// ---------------------------------------------------------------------------
// Jaeger's JSON model (jaeger's `model/json`).

/// jaeger-query's envelope around every answer.
#[derive(Debug, Serialize)]
struct Envelope<T> {
    data: T,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<Vec<ApiError>>,
}

/// One entry of [`Envelope::errors`].
#[derive(Debug, Serialize)]
struct ApiError {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    msg: String,
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

/// A trace.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Trace {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<JaegerSpan>,
    /// Processes by id (`p1`, `p2`, ...), one per service.
    processes: BTreeMap<String, Process>,
    warnings: Option<Vec<String>>,
}

/// A span.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JaegerSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    /// 1: sampled (only sampled spans reach the store).
    flags: u32,
    operation_name: String,
    references: Vec<Reference>,
    /// Microseconds since the Unix epoch.
    start_time: u64,
    /// Microseconds.
    duration: u64,
    tags: Vec<KeyValue>,
    logs: Vec<Log>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

/// A reference from a span to another span.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: RefType,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum RefType {
    /// The parent.
    ChildOf,
    /// A link.
    FollowsFrom,
}

/// The process that emitted spans: one per distinct resource.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: String,
    /// The resource's other attributes, as Jaeger's OTLP translator keeps
    /// them.
    tags: Vec<KeyValue>,
}

/// A span event.
#[derive(Debug, Serialize)]
struct Log {
    /// Microseconds since the Unix epoch.
    timestamp: u64,
    fields: Vec<KeyValue>,
}

/// A typed tag.
#[derive(Debug, Serialize)]
struct KeyValue {
    key: String,
    #[serde(rename = "type")]
    value_type: ValueType,
    value: Value,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum ValueType {
    String,
    Bool,
    Int64,
    Float64,
}

/// An operation of `/api/operations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: &'static str,
}

// ---------------------------------------------------------------------------
// Conversion.

/// `detail` in Jaeger's model. Spans of other traces linking into it
/// (`linked_spans`) are left out: a Jaeger trace holds its own spans only,
/// and the linking spans carry the `FOLLOWS_FROM` reference in their trace.
pub(crate) fn to_jaeger(detail: TraceDetail) -> Trace {
    // One process per distinct resource (spans of one SDK share theirs).
    let mut resources: Vec<(String, Arc<Attributes>)> = Vec::new();
    let spans = detail
        .spans
        .into_iter()
        .map(|span| {
            let found = resources.iter().position(|(service, resource)| {
                *service == span.service
                    && (Arc::ptr_eq(resource, &span.resource) || **resource == *span.resource)
            });
            let index = found.unwrap_or_else(|| {
                resources.push((span.service.clone(), span.resource.clone()));
                resources.len() - 1
            });
            to_jaeger_span(span, format!("p{}", index + 1))
        })
        .collect();
    let processes = resources
        .into_iter()
        .enumerate()
        .map(|(index, (service_name, resource))| {
            let tags = resource
                .iter()
                .filter(|(key, _)| key.as_str() != "service.name")
                .map(|(key, value)| tag((key.clone(), value.clone())))
                .collect();
            (format!("p{}", index + 1), Process { service_name, tags })
        })
        .collect();
    Trace {
        trace_id: detail.trace_id,
        spans,
        processes,
        warnings: None,
    }
}

fn to_jaeger_span(span: Span, process_id: String) -> JaegerSpan {
    let mut references = Vec::with_capacity(span.links.len() + 1);
    if !span.parent_span_id.is_empty() {
        references.push(Reference {
            ref_type: RefType::ChildOf,
            trace_id: span.trace_id.clone(),
            span_id: span.parent_span_id,
        });
    }
    references.extend(span.links.into_iter().map(|link| Reference {
        ref_type: RefType::FollowsFrom,
        trace_id: link.trace_id,
        span_id: link.span_id,
    }));
    let mut tags: Vec<KeyValue> = span.attributes.into_iter().map(tag).collect();
    tags.push(string_tag("span.kind", kind_name(span.kind)));
    // The instrumentation scope, as Jaeger's OTLP translator names it.
    if !span.scope.name.is_empty() {
        tags.push(string_tag("otel.scope.name", &span.scope.name));
    }
    if !span.scope.version.is_empty() {
        tags.push(string_tag("otel.scope.version", &span.scope.version));
    }
    if let Some(code) = status_name(span.status.code) {
        tags.push(string_tag("otel.status_code", code));
    }
    if !span.status.message.is_empty() {
        tags.push(string_tag("otel.status_description", &span.status.message));
    }
    if span.status.code == SpanStatus::Error {
        tags.push(KeyValue {
            key: "error".into(),
            value_type: ValueType::Bool,
            value: Value::Bool(true),
        });
    }
    let logs = span
        .events
        .into_iter()
        .map(|event| {
            let mut fields = Vec::with_capacity(event.attributes.len() + 1);
            if !event.name.is_empty() && !event.attributes.contains_key("event") {
                fields.push(string_tag("event", &event.name));
            }
            fields.extend(event.attributes.into_iter().map(tag));
            Log {
                timestamp: event.time_unix_nano / 1000,
                fields,
            }
        })
        .collect();
    JaegerSpan {
        trace_id: span.trace_id,
        span_id: span.span_id,
        flags: 1,
        operation_name: span.name,
        references,
        start_time: span.start_unix_nano / 1000,
        duration: span.end_unix_nano.saturating_sub(span.start_unix_nano) / 1000,
        tags,
        logs,
        process_id,
        warnings: None,
    }
}

/// An attribute as a typed tag; arrays and maps become their JSON text, as
/// Jaeger's translator does.
fn tag((key, value): (String, Value)) -> KeyValue {
    let (value_type, value) = match value {
        Value::Bool(b) => (ValueType::Bool, Value::Bool(b)),
        Value::Number(n) if n.is_i64() => (ValueType::Int64, Value::Number(n)),
        Value::Number(n) => (ValueType::Float64, Value::Number(n)),
        Value::String(s) => (ValueType::String, Value::String(s)),
        Value::Null => (ValueType::String, Value::String(String::new())),
        other @ (Value::Array(_) | Value::Object(_)) => {
            (ValueType::String, Value::String(other.to_string()))
        }
    };
    KeyValue {
        key,
        value_type,
        value,
    }
}

fn string_tag(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value_type: ValueType::String,
        value: Value::String(value.into()),
    }
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn status_name(code: SpanStatus) -> Option<&'static str> {
    match code {
        SpanStatus::Unset => None,
        SpanStatus::Ok => Some("OK"),
        SpanStatus::Error => Some("ERROR"),
    }
}

// ---------------------------------------------------------------------------
// Query parameters.

/// A malformed query parameter (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamError {
    /// A number, time or duration that does not parse.
    #[error("unable to parse param '{param}': {reason}")]
    Parse {
        /// The parameter.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A `tag` without `:`.
    #[error("malformed 'tag' parameter, expecting key:value, received: {0}")]
    Tag(String),
    /// A `tags` that is not a JSON object of scalars.
    #[error("malformed 'tags' parameter, cannot unmarshal JSON: {0}")]
    Tags(String),
    /// `maxDuration` below `minDuration`.
    #[error("'maxDuration' should be greater than 'minDuration'")]
    DurationOrder,
    /// A required `service` missing.
    #[error("parameter 'service' is required")]
    ServiceRequired,
    /// A trace id that is not 1 to 32 hex digits.
    #[error("cannot parse traceID param: {0:?} is not 1 to 32 hex digits")]
    TraceId(String),
    /// The query string or path itself is malformed.
    #[error("malformed request: {0}")]
    Query(String),
}

/// A parsed `GET /api/traces` query. Times and durations in nanoseconds.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SearchQuery {
    service: Option<String>,
    operation: Option<String>,
    tags: BTreeMap<String, String>,
    min_duration: Option<u64>,
    max_duration: Option<u64>,
    start: Option<u64>,
    end: Option<u64>,
    limit: usize,
    /// `traceID=` parameters (lowercase, 32 digits): fetch these instead.
    trace_ids: Vec<String>,
}

impl SearchQuery {
    /// Parses the query's `(name, value)` pairs; the first of a repeated
    /// single-valued parameter wins, as in jaeger-query. Empty values count
    /// as absent. `lookback` (`1h`, `2d`) sets the start when `start` is
    /// absent; other `lookback` values (`custom`) are ignored.
    pub(crate) fn parse(pairs: &[(String, String)], now_nanos: u64) -> Result<Self, ParamError> {
        let first = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        let all = |name: &'static str| {
            pairs
                .iter()
                .filter(move |(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        let micros = |param: &'static str| -> Result<Option<u64>, ParamError> {
            first(param)
                .map(|v| {
                    v.parse::<u64>()
                        .map(|us| us.saturating_mul(1000))
                        .map_err(|e| ParamError::Parse {
                            param,
                            reason: e.to_string(),
                        })
                })
                .transpose()
        };
        let duration = |param: &'static str| -> Result<Option<u64>, ParamError> {
            first(param)
                .map(|v| parse_duration(v).map_err(|reason| ParamError::Parse { param, reason }))
                .transpose()
        };
        let mut tags = BTreeMap::new();
        for tag in all("tag") {
            let (key, value) = tag.split_once(':').ok_or(ParamError::Tag(tag.into()))?;
            tags.insert(key.to_string(), value.to_string());
        }
        for json in all("tags") {
            let map: BTreeMap<String, Value> =
                serde_json::from_str(json).map_err(|e| ParamError::Tags(e.to_string()))?;
            for (key, value) in map {
                let value = match value {
                    Value::String(s) => s,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(ParamError::Tags(format!(
                            "the value of {key:?} is {other}, not a string"
                        )));
                    }
                };
                tags.insert(key, value);
            }
        }
        let limit = match first("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(0) => DEFAULT_LIMIT,
                Ok(n) => n.min(MAX_LIMIT),
                Err(e) => {
                    return Err(ParamError::Parse {
                        param: "limit",
                        reason: e.to_string(),
                    });
                }
            },
        };
        let end = micros("end")?;
        let start = match micros("start")? {
            Some(start) => Some(start),
            None => first("lookback")
                .and_then(parse_lookback)
                .map(|back| end.unwrap_or(now_nanos).saturating_sub(back)),
        };
        let min_duration = duration("minDuration")?;
        let max_duration = duration("maxDuration")?;
        if let (Some(min), Some(max)) = (min_duration, max_duration)
            && max < min
        {
            return Err(ParamError::DurationOrder);
        }
        let trace_ids = all("traceID")
            .map(|id| parse_trace_id(id).ok_or(ParamError::TraceId(id.into())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            service: first("service").map(str::to_string),
            operation: first("operation").map(str::to_string),
            tags,
            min_duration,
            max_duration,
            start,
            end,
            limit,
            trace_ids,
        })
    }

    /// Whether `span` meets every condition (a trace matches when one of
    /// its spans does, as in Jaeger's stores).
    fn matches(&self, span: &Span) -> bool {
        let duration = span.end_unix_nano.saturating_sub(span.start_unix_nano);
        self.service.as_ref().is_none_or(|s| *s == span.service)
            && self.operation.as_ref().is_none_or(|o| *o == span.name)
            && self.min_duration.is_none_or(|min| duration >= min)
            && self.max_duration.is_none_or(|max| duration <= max)
            && self.start.is_none_or(|start| span.start_unix_nano >= start)
            && self.end.is_none_or(|end| span.start_unix_nano <= end)
            && self.tags.iter().all(|(k, v)| has_tag(span, k, v))
    }
}

/// Whether `span` has the tag `key` with the text `want` among its
/// attributes, the tags made from its kind and status, or its events'
/// fields (as Jaeger's stores also look at log fields).
fn has_tag(span: &Span, key: &str, want: &str) -> bool {
    if span.attributes.get(key).is_some_and(|v| value_is(v, want)) {
        return true;
    }
    let derived = match key {
        "span.kind" => kind_name(span.kind) == want,
        "otel.status_code" => status_name(span.status.code) == Some(want),
        "otel.status_description" => !span.status.message.is_empty() && span.status.message == want,
        "error" => span.status.code == SpanStatus::Error && want == "true",
        _ => false,
    };
    derived
        || span.events.iter().any(|event| {
            (key == "event" && event.name == want)
                || event.attributes.get(key).is_some_and(|v| value_is(v, want))
        })
}

/// Whether the attribute value reads as `want` (Jaeger compares tag values
/// as strings).
fn value_is(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Number(n) => match (n.as_i64(), want.parse::<i64>()) {
            (Some(have), Ok(want)) => have == want,
            _ => n
                .as_f64()
                .is_some_and(|have| want.parse::<f64>() == Ok(have)),
        },
        Value::Null => want.is_empty(),
        other => serde_json::to_string(other).is_ok_and(|text| text == want),
    }
}

/// Parses the Jaeger UI's `lookback` (`1h`, `2d`; any Go duration), in
/// nanoseconds; `None` for others (`custom`).
fn parse_lookback(text: &str) -> Option<u64> {
    match text.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()?
            .checked_mul(24 * 3_600_000_000_000),
        None => parse_duration(text).ok(),
    }
}

/// A Jaeger trace id (1 to 32 hex digits; Jaeger drops leading zeros) as
/// the store's 32 lowercase digits.
fn parse_trace_id(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{text:0>32}").to_ascii_lowercase())
}

// ---------------------------------------------------------------------------
// Handlers.

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn ok<T: Serialize>(data: T, total: usize) -> Response {
    axum::Json(Envelope {
        data,
        total,
        limit: 0,
        offset: 0,
        errors: None,
    })
    .into_response()
}

fn error(status: StatusCode, msg: String) -> Response {
    (
        status,
        axum::Json(Envelope::<Option<()>> {
            data: None,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![ApiError {
                code: Some(status.as_u16()),
                msg,
                trace_id: None,
            }]),
        }),
    )
        .into_response()
}

fn bad_request(error_: &ParamError) -> Response {
    error(StatusCode::BAD_REQUEST, error_.to_string())
}

fn pairs(query: Pairs) -> Result<Vec<(String, String)>, ParamError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| ParamError::Query(e.body_text()))
}

async fn services(State(store): State<TraceStore>) -> Response {
    let mut services = BTreeSet::new();
    store.scan(|spans| {
        for span in spans {
            if !services.contains(span.service.as_str()) {
                services.insert(span.service.clone());
            }
        }
        ControlFlow::Continue(())
    });
    let total = services.len();
    ok(services, total)
}

/// The kinds of `service`'s spans, by span name.
fn operations_of(store: &TraceStore, service: &str) -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut operations: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    store.scan(|spans| {
        for span in spans.filter(|s| s.service == service) {
            let kind = kind_name(span.kind);
            match operations.get_mut(span.name.as_str()) {
                Some(kinds) => {
                    kinds.insert(kind);
                }
                None => {
                    operations.insert(span.name.clone(), BTreeSet::from([kind]));
                }
            }
        }
        ControlFlow::Continue(())
    });
    operations
}

async fn operations_legacy(
    State(store): State<TraceStore>,
    service: Result<Path<String>, PathRejection>,
) -> Response {
    let service = match service {
        Ok(Path(service)) => service,
        Err(e) => return bad_request(&ParamError::Query(e.body_text())),
    };
    let names: Vec<String> = operations_of(&store, &service).into_keys().collect();
    let total = names.len();
    ok(names, total)
}

async fn operations(State(store): State<TraceStore>, query: Pairs) -> Response {
    let pairs = match pairs(query) {
        Ok(pairs) => pairs,
        Err(e) => return bad_request(&e),
    };
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let Some(service) = param("service") else {
        return bad_request(&ParamError::ServiceRequired);
    };
    let kind = param("spanKind");
    let data: Vec<Operation> = operations_of(&store, service)
        .into_iter()
        .flat_map(|(name, kinds)| {
            kinds
                .into_iter()
                .filter(|k| kind.is_none_or(|want| want == *k))
                .map(move |span_kind| Operation {
                    name: name.clone(),
                    span_kind,
                })
        })
        .collect();
    let total = data.len();
    ok(data, total)
}

async fn search(State(store): State<TraceStore>, query: Pairs) -> Response {
    let query = match pairs(query).and_then(|p| SearchQuery::parse(&p, convert::now_nanos())) {
        Ok(query) => query,
        Err(e) => return bad_request(&e),
    };
    let mut errors = Vec::new();
    let ids: Vec<String> = if query.trace_ids.is_empty() {
        // Ids only under the lock; the traces are fetched one at a time.
        let mut ids = Vec::new();
        store.scan(|mut spans| {
            if let Some(span) = spans.find(|s| query.matches(s)) {
                ids.push(span.trace_id.clone());
            }
            if ids.len() >= query.limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        ids
    } else {
        query.trace_ids.clone()
    };
    let mut traces = Vec::with_capacity(ids.len());
    for id in ids {
        match store.trace(&id) {
            Some(detail) => traces.push(to_jaeger(detail)),
            // Evicted since the scan: left out.
            None if query.trace_ids.is_empty() => {}
            None => errors.push(ApiError {
                code: None,
                msg: "trace not found".into(),
                trace_id: Some(id),
            }),
        }
    }
    axum::Json(Envelope {
        data: traces,
        total: 0,
        limit: 0,
        offset: 0,
        errors: (!errors.is_empty()).then_some(errors),
    })
    .into_response()
}

async fn trace(
    State(store): State<TraceStore>,
    trace_id: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Response {
    let trace_id = match trace_id {
        Ok(Path(trace_id)) => trace_id,
        Err(e) => return bad_request(&ParamError::Query(e.body_text())),
    };
    // `start` and `end` are hints jaeger-query passes to its storage; they
    // are checked, not needed.
    let checked = pairs(query).and_then(|pairs| {
        for param in ["start", "end"] {
            if let Some((_, v)) = pairs.iter().find(|(k, v)| k == param && !v.is_empty()) {
                v.parse::<u64>().map_err(|e| ParamError::Parse {
                    param,
                    reason: e.to_string(),
                })?;
            }
        }
        parse_trace_id(&trace_id).ok_or(ParamError::TraceId(trace_id))
    });
    let id = match checked {
        Ok(id) => id,
        Err(e) => return bad_request(&e),
    };
    match store.trace(&id) {
        Some(detail) => ok(vec![to_jaeger(detail)], 0),
        None => error(StatusCode::NOT_FOUND, "trace not found".into()),
    }
}

/// Service dependencies are not computed: always an empty list.
async fn dependencies() -> Response {
    ok(Vec::<()>::new(), 0)
}

async fn unsupported(Path(rest): Path<String>) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("Baton does not serve Jaeger's /api/{rest}"),
    )
}
