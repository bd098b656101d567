//! Trace search: the filter model ([`TraceFilter`]), its query-string form
//! (shared by the HTTP API, the web view's URL and `baton trace search`),
//! and matching a filter against a trace's [`TraceIndex`].
//!
//! The query string (every parameter optional, empty values ignored):
//!
//! | parameter | matches traces |
//! |---|---|
//! | `service=svc` | with a span of resource `service.name` `svc` |
//! | `span=text` | with a span whose name contains `text` (any case) |
//! | `attr=key=value` (repeatable) | with a span whose attribute `key` reads `value` (each `attr` by some span) |
//! | `min_duration=100ms`, `max_duration=2s` | lasting at least / at most that long (first start to last end) |
//! | `error=true` | with a span of status ERROR (`false`: without any) |
//! | `since=15m`, `until=2026-12-04T10:00:00Z` | overlapping the window (a duration means that long ago) |
//! | `topic=orders` or `projects/p/topics/orders` | naming that topic (create, publish, the broker's receive) |
//! | `subscription=orders-sub` or `projects/p/subscriptions/orders-sub` | naming that subscription (subscribe, process, settle, delivery) |
//! | `message=42` | of that message id (`messaging.message.id`) |
//! | `ordering_key=k` | of that ordering key |
//! | `kind=message\|rpc\|other\|all` | of that kind; by default every kind but `rpc` (batch publish and settle RPC traces) |
//!
//! Paging: `limit` (default 50, at most 1000) and `cursor` (from the
//! previous page's `nextCursor`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::duration::parse_duration;
use crate::index::{self, TraceIndex};
use crate::model::Span;
use crate::model::TraceKind;

/// Default `limit` of a search page.
pub const DEFAULT_PAGE_LIMIT: usize = 50;
/// Largest `limit` of a search page.
pub const MAX_PAGE_LIMIT: usize = 1000;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_DAY: u64 = 86_400 * NANOS_PER_SECOND;

/// A malformed search parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The query string itself does not decode.
    #[error("malformed query string: {0}")]
    Query(String),
    /// A parameter this search does not know (a typo, most likely).
    #[error(
        "unknown search parameter {0:?} (known: service, span, attr, min_duration, max_duration, error, since, until, topic, subscription, message, ordering_key, kind, limit, cursor)"
    )]
    Unknown(String),
    /// A parameter whose value does not parse.
    #[error("invalid {param}: {reason}")]
    Invalid {
        /// The parameter.
        param: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

fn invalid(param: &'static str, reason: impl Into<String>) -> FilterError {
    FilterError::Invalid {
        param,
        reason: reason.into(),
    }
}

/// One end of a time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// That long before the search runs, in nanoseconds (`15m`): a
    /// bookmarked search keeps looking at the last 15 minutes.
    Ago(u64),
    /// A fixed time, nanoseconds since the Unix epoch (RFC 3339 in queries).
    At(u64),
}

impl TimeBound {
    /// The bound as nanoseconds since the epoch, at `now`.
    pub fn resolve(self, now: u64) -> u64 {
        match self {
            Self::Ago(ago) => now.saturating_sub(ago),
            Self::At(at) => at,
        }
    }

    fn parse(param: &'static str, text: &str) -> Result<Self, FilterError> {
        let text = text.trim();
        if text.contains('-') && text.len() >= 10 {
            return parse_rfc3339(text)
                .map(Self::At)
                .ok_or_else(|| invalid(param, format!("{text:?} is not an RFC 3339 time")));
        }
        parse_ago(text)
            .map(Self::Ago)
            .map_err(|reason| invalid(param, reason))
    }

    fn format(self) -> String {
        match self {
            Self::Ago(ago) => format_duration(ago),
            Self::At(at) => format_rfc3339(at),
        }
    }
}

/// Which kinds of trace a search shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindFilter {
    /// Message flows and other traces, not the batch RPC traces linked into
    /// message traces (the default view).
    #[default]
    Default,
    /// One kind only.
    Only(TraceKind),
    /// Every trace.
    All,
}

impl KindFilter {
    fn parse(text: &str) -> Result<Self, FilterError> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "default" => Self::Default,
            "all" => Self::All,
            "message" | "messages" | "flow" | "flows" => Self::Only(TraceKind::Message),
            "rpc" | "rpcs" => Self::Only(TraceKind::Rpc),
            "other" => Self::Only(TraceKind::Other),
            other => {
                return Err(invalid(
                    "kind",
                    format!("{other:?} is not one of message, rpc, other, all"),
                ));
            }
        })
    }

    fn format(self) -> Option<&'static str> {
        match self {
            Self::Default => None,
            Self::All => Some("all"),
            Self::Only(kind) => Some(kind.as_str()),
        }
    }

    fn admits(self, kind: TraceKind) -> bool {
        match self {
            Self::Default => kind != TraceKind::Rpc,
            Self::Only(only) => kind == only,
            Self::All => true,
        }
    }
}

/// A topic or subscription as given: a short id, or a full name whose
/// project must match too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceName {
    /// As written (kept for the query string).
    pub text: String,
    project: Option<String>,
    id: String,
}

impl ResourceName {
    /// `orders` or `projects/p/topics/orders`.
    pub fn new(text: &str) -> Self {
        let text = text.trim();
        let (project, id) = match index::split_name(text) {
            Some((project, id)) => (Some(project.to_string()), id.to_string()),
            None => (None, text.to_string()),
        };
        Self {
            text: text.to_string(),
            project,
            id,
        }
    }

    fn matches(&self, destination: &index::Destination) -> bool {
        destination.id == self.id
            && self
                .project
                .as_ref()
                .is_none_or(|p| destination.project.is_empty() || destination.project == *p)
    }
}

/// What a search looks for; every condition set must hold. Parse it from a
/// query string with [`TraceFilter::parse_query`] (see the module
/// documentation), write it back with [`TraceFilter::to_query`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceFilter {
    /// A span of this `service.name`.
    pub service: Option<String>,
    /// A span whose name contains this (any case).
    pub span_name: Option<String>,
    /// For each `(key, value)`, a span whose attribute `key` reads `value`.
    pub attributes: Vec<(String, String)>,
    /// Lasting at least this long (ns).
    pub min_duration: Option<u64>,
    /// Lasting at most this long (ns).
    pub max_duration: Option<u64>,
    /// `Some(true)`: with an error span; `Some(false)`: without any.
    pub error: Option<bool>,
    /// Overlapping the window from here...
    pub since: Option<TimeBound>,
    /// ...to here.
    pub until: Option<TimeBound>,
    /// Naming this topic.
    pub topic: Option<ResourceName>,
    /// Naming this subscription.
    pub subscription: Option<ResourceName>,
    /// Of this message id.
    pub message_id: Option<String>,
    /// Of this ordering key.
    pub ordering_key: Option<String>,
    /// Which kinds of trace.
    pub kind: KindFilter,
}

/// A filter made ready for one search (see [`TraceFilter::prepare`]).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    window: (u64, u64),
    span_name: Option<String>,
}

/// A search: the filter and the page wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// What to look for.
    pub filter: TraceFilter,
    /// Most traces on the page (1 to [`MAX_PAGE_LIMIT`]).
    pub limit: usize,
    /// Where the page starts: the previous page's
    /// [`crate::SearchPage::next_cursor`]; `None` for the first page.
    pub cursor: Option<u64>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        Self {
            filter: TraceFilter::default(),
            limit: DEFAULT_PAGE_LIMIT,
            cursor: None,
        }
    }
}

impl SearchRequest {
    /// Parses a URL query string (without the `?`): the filter's
    /// parameters plus `limit` and `cursor`. Unknown parameters are refused.
    pub fn parse_query(query: &str) -> Result<Self, FilterError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| FilterError::Query(e.to_string()))?;
        Self::from_pairs(&pairs)
    }

    /// Parses decoded `(name, value)` pairs.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, FilterError> {
        let mut request = Self::default();
        let mut filter_pairs = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_str() {
                _ if value.is_empty() => {}
                "limit" => {
                    let limit: usize = value
                        .parse()
                        .map_err(|_| invalid("limit", format!("{value:?} is not a number")))?;
                    request.limit = limit.clamp(1, MAX_PAGE_LIMIT);
                }
                "cursor" => {
                    request.cursor = Some(value.parse().map_err(|_| {
                        invalid("cursor", format!("{value:?} is not a cursor of this store"))
                    })?);
                }
                _ => filter_pairs.push((name.clone(), value.to_string())),
            }
        }
        request.filter = TraceFilter::from_pairs(&filter_pairs)?;
        Ok(request)
    }

    /// The query string of this request (the filter's, then `limit` when
    /// not the default, then `cursor`).
    pub fn to_query(&self) -> String {
        let mut pairs = self.filter.pairs();
        if self.limit != DEFAULT_PAGE_LIMIT {
            pairs.push(("limit", self.limit.to_string()));
        }
        if let Some(cursor) = self.cursor {
            pairs.push(("cursor", cursor.to_string()));
        }
        encode(&pairs)
    }
}

fn encode(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

impl TraceFilter {
    /// Parses a URL query string (without the `?`) holding only filter
    /// parameters.
    pub fn parse_query(query: &str) -> Result<Self, FilterError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| FilterError::Query(e.to_string()))?;
        Self::from_pairs(&pairs)
    }

    /// Parses decoded `(name, value)` pairs; a repeated single-valued
    /// parameter keeps its last value; empty values are ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, FilterError> {
        let mut filter = Self::default();
        for (name, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let text = || Some(value.to_string());
            match name.as_str() {
                "service" => filter.service = text(),
                "span" | "name" => filter.span_name = text(),
                "attr" => {
                    let (key, want) = value
                        .split_once('=')
                        .ok_or_else(|| invalid("attr", format!("{value:?} is not key=value")))?;
                    let key = key.trim();
                    if key.is_empty() {
                        return Err(invalid("attr", format!("{value:?} has an empty key")));
                    }
                    filter
                        .attributes
                        .push((key.to_string(), want.trim().to_string()));
                }
                "min_duration" | "minDuration" => {
                    filter.min_duration =
                        Some(parse_duration(value).map_err(|r| invalid("min_duration", r))?);
                }
                "max_duration" | "maxDuration" => {
                    filter.max_duration =
                        Some(parse_duration(value).map_err(|r| invalid("max_duration", r))?);
                }
                "error" | "errors" => {
                    filter.error = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" | "on" => true,
                        "false" | "0" | "no" | "off" => false,
                        _ => {
                            return Err(invalid(
                                "error",
                                format!("{value:?} is not true or false"),
                            ));
                        }
                    });
                }
                "since" => filter.since = Some(TimeBound::parse("since", value)?),
                "until" => filter.until = Some(TimeBound::parse("until", value)?),
                "topic" => filter.topic = Some(ResourceName::new(value)),
                "subscription" | "sub" => filter.subscription = Some(ResourceName::new(value)),
                "message" | "message_id" => filter.message_id = text(),
                "ordering_key" | "orderingKey" => filter.ordering_key = text(),
                "kind" => filter.kind = KindFilter::parse(value)?,
                _ => return Err(FilterError::Unknown(name.clone())),
            }
        }
        if let (Some(min), Some(max)) = (filter.min_duration, filter.max_duration)
            && max < min
        {
            return Err(invalid(
                "max_duration",
                "the maximum duration is below the minimum",
            ));
        }
        Ok(filter)
    }

    /// The filter's canonical `(name, value)` pairs.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut put = |name: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((name, value));
            }
        };
        put("service", self.service.clone());
        put("span", self.span_name.clone());
        for (key, value) in &self.attributes {
            put("attr", Some(format!("{key}={value}")));
        }
        put("min_duration", self.min_duration.map(format_duration));
        put("max_duration", self.max_duration.map(format_duration));
        put("error", self.error.map(|e| e.to_string()));
        put("since", self.since.map(TimeBound::format));
        put("until", self.until.map(TimeBound::format));
        put("topic", self.topic.as_ref().map(|t| t.text.clone()));
        put(
            "subscription",
            self.subscription.as_ref().map(|s| s.text.clone()),
        );
        put("message", self.message_id.clone());
        put("ordering_key", self.ordering_key.clone());
        put("kind", self.kind.format().map(str::to_string));
        pairs
    }

    /// The query string of this filter (empty for no condition); parsing
    /// it gives this filter back.
    pub fn to_query(&self) -> String {
        encode(&self.pairs())
    }

    /// Whether nothing is asked beyond the kind.
    pub fn is_empty(&self) -> bool {
        *self
            == Self {
                kind: self.kind,
                ..Self::default()
            }
    }

    /// What one search computes once: the window `[since, until]` in ns at
    /// `now` (`0..=u64::MAX` when open) and the span name in lowercase.
    pub(crate) fn prepare(&self, now: u64) -> Prepared {
        Prepared {
            window: (
                self.since.map_or(0, |b| b.resolve(now)),
                self.until.map_or(u64::MAX, |b| b.resolve(now)),
            ),
            // As the index keeps names: lowercase, newlines as spaces (so
            // a match never spans two names).
            span_name: self
                .span_name
                .as_ref()
                .map(|name| name.to_lowercase().replace('\n', " ")),
        }
    }

    /// Whether the trace of record `index` may match: every condition the
    /// index answers holds. Attributes it does not index are left to
    /// [`TraceFilter::needs_spans`] and [`TraceFilter::matches_spans`].
    pub(crate) fn matches_index(&self, index: &TraceIndex, prepared: &Prepared) -> bool {
        let duration = index.duration();
        let window = prepared.window;
        self.kind.admits(index.kind())
            && self.error.is_none_or(|e| e == (index.errors > 0))
            && self.min_duration.is_none_or(|min| duration >= min)
            && self.max_duration.is_none_or(|max| duration <= max)
            && index.start <= window.1
            && index.end >= window.0
            && self
                .service
                .as_ref()
                .is_none_or(|s| index.services.contains(s))
            && prepared
                .span_name
                .as_ref()
                .is_none_or(|want| index.names.contains(want.as_str()))
            && self
                .topic
                .as_ref()
                .is_none_or(|t| index.topics.iter().any(|d| t.matches(d)))
            && self
                .subscription
                .as_ref()
                .is_none_or(|s| index.subscriptions.iter().any(|d| s.matches(d)))
            && self
                .message_id
                .as_ref()
                .is_none_or(|m| index.message_ids.contains(m))
            && self
                .ordering_key
                .as_ref()
                .is_none_or(|k| index.ordering_keys.contains(k))
            && self.attributes.iter().all(|(key, want)| {
                indexed_attribute(index, key, want)
                    .unwrap_or_else(|| may_hold_attribute(index, key, want))
            })
    }

    /// Whether some `attr` condition needs the trace's spans (an attribute
    /// the index does not keep). Call it after `matches_index`, which has
    /// ruled out the traces whose attribute filter cannot hold the pair.
    pub(crate) fn needs_spans(&self, index: &TraceIndex) -> bool {
        self.attributes
            .iter()
            .any(|(key, want)| indexed_attribute(index, key, want).is_none())
    }

    /// Whether each `attr` condition the index cannot answer holds for some
    /// span of `spans` (the others were checked by `matches_index`).
    pub(crate) fn matches_spans<'a, I>(&self, index: &TraceIndex, spans: I) -> bool
    where
        I: Iterator<Item = &'a Span> + Clone,
    {
        self.attributes
            .iter()
            .filter(|(key, want)| indexed_attribute(index, key, want).is_none())
            .all(|(key, want)| {
                spans.clone().any(|span| {
                    span.attributes
                        .get(key)
                        .is_some_and(|value| value_is(value, want))
                })
            })
    }
}

/// The answer of the index for `attr=key=value`, when it keeps `key`.
fn indexed_attribute(index: &TraceIndex, key: &str, want: &str) -> Option<bool> {
    match key {
        index::MESSAGE_ID => Some(index.message_ids.iter().any(|m| m == want)),
        index::ORDERING_KEY if !want.is_empty() => {
            Some(index.ordering_keys.iter().any(|k| k == want))
        }
        index::SERVICE_NAME => Some(index.services.iter().any(|s| s == want)),
        _ => None,
    }
}

/// Whether a span of the trace may have attribute `key` reading `want`
/// (by the trace's Bloom filter of attributes; see `bloom_text`): `want`
/// as a string, as a canonical integer or boolean. A value only a float or
/// an empty value could match is not filtered (true).
fn may_hold_attribute(index: &TraceIndex, key: &str, want: &str) -> bool {
    let bloom = &index.attributes;
    if bloom.may_hold(key, want) {
        return true;
    }
    if let Ok(int) = want.parse::<i64>() {
        return bloom.may_hold(key, &int.to_string());
    }
    if want.eq_ignore_ascii_case("true") || want.eq_ignore_ascii_case("false") {
        return bloom.may_hold(key, &want.to_ascii_lowercase());
    }
    want.is_empty() || want.parse::<f64>().is_ok()
}

/// Whether an attribute value reads as `want` (numbers and booleans as
/// their text, so `messaging.message.id=42` finds an integer 42 too).
pub(crate) fn value_is(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
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

/// A duration before now: a Go-style duration (`15m`, `1h30m`) or days
/// (`2d`).
fn parse_ago(text: &str) -> Result<u64, String> {
    if let Some(days) = text.strip_suffix('d')
        && !days.is_empty()
        && days.bytes().all(|b| b.is_ascii_digit())
    {
        return days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(NANOS_PER_DAY))
            .ok_or_else(|| format!("{text:?} is too long ago"));
    }
    parse_duration(text)
        .map_err(|e| format!("{e} (expected a duration such as 15m, or an RFC 3339 time)"))
}

/// `nanos` in the largest unit that writes it exactly (`1500ms`, `2h`).
pub fn format_duration(nanos: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".to_string();
    }
    for (scale, unit) in UNITS {
        if nanos.is_multiple_of(scale) {
            return format!("{}{unit}", nanos / scale);
        }
    }
    format!("{nanos}ns")
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 time (`2026-12-04T10:00:00Z`,
/// `2026-12-04T10:00:00.250+01:00`; `t`, `z` and a space accepted) into
/// nanoseconds since the epoch; `None` for anything else or a time before
/// the epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = i64::from(num(0..4)?);
    let (month, day) = (num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut fraction: u64 = 0;
    if b[at] == b'.' {
        at += 1;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut scale = NANOS_PER_SECOND;
        for &digit in &b[at..at + digits] {
            scale /= 10;
            fraction += u64::from(digit - b'0') * scale;
        }
        at += digits;
    }
    let offset_seconds: i64 = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    seconds.checked_mul(NANOS_PER_SECOND)?.checked_add(fraction)
}

/// Nanoseconds since the epoch as RFC 3339 in UTC, with as many fraction
/// digits as needed (none for whole seconds).
pub fn format_rfc3339(nanos: u64) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    let fraction = nanos % NANOS_PER_SECOND;
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX);
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}
