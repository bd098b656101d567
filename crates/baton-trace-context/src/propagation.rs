//! The `googclient_` carrier: trace context inside Pub/Sub message attributes
//! (`tracing.md` section 1 and 4.4).
//!
//! The official Google clients put the W3C Trace Context of the per-message
//! `create` span into the message's attributes, with every key prefixed by
//! `googclient_`. This module writes and reads exactly that format, using the
//! W3C propagator directly (never the process-global propagator, which may
//! carry extra keys such as baggage).

use std::borrow::{Borrow, BorrowMut, Cow};
use std::collections::HashMap;
use std::str::FromStr;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// Prefix the official clients put in front of every key the propagator writes.
pub const ATTRIBUTE_PREFIX: &str = "googclient_";

/// Attribute holding the W3C `traceparent`
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`) of the `create` span.
pub const TRACEPARENT_ATTRIBUTE: &str = "googclient_traceparent";

/// Attribute holding the W3C `tracestate`; only present when non-empty.
pub const TRACESTATE_ATTRIBUTE: &str = "googclient_tracestate";

/// Attribute holding W3C baggage; only written and read when
/// [`PropagationOptions::baggage`] is on.
pub const BAGGAGE_ATTRIBUTE: &str = "googclient_baggage";

/// Legacy attribute written by Node.js clients 2.5–4.x: JSON
/// `{"traceId","spanId","traceFlags"}`. Read only when
/// [`TRACEPARENT_ATTRIBUTE`] is absent; never written.
pub const LEGACY_SPAN_CONTEXT_ATTRIBUTE: &str = "googclient_OpenTelemetrySpanContext";

/// The standard, unprefixed W3C key; written and read only when
/// [`PropagationOptions::with_standard_keys`] is on.
pub const STANDARD_TRACEPARENT_ATTRIBUTE: &str = "traceparent";

/// The standard, unprefixed W3C key; written and read only when
/// [`PropagationOptions::with_standard_keys`] is on.
pub const STANDARD_TRACESTATE_ATTRIBUTE: &str = "tracestate";

/// Unprefixed propagator field name for the tracestate (what the W3C
/// propagator asks a carrier to set).
const TRACESTATE_FIELD: &str = "tracestate";
/// The W3C propagator's field for `traceparent`.
const TRACEPARENT_FIELD: &str = "traceparent";

/// Opt-in extras beyond the official clients' wire format (`tracing.md` 4.4).
///
/// The default (everything off) is exactly the official clients' format: only
/// `googclient_traceparent` and, when non-empty, `googclient_tracestate`.
///
/// ```
/// let options = baton_trace_context::PropagationOptions::default().with_standard_keys(true);
/// assert!(options.standard_keys() && !options.baggage());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PropagationOptions {
    standard_keys: bool,
    baggage: bool,
}

impl PropagationOptions {
    /// Also write the plain `traceparent`/`tracestate` keys, and fall back
    /// to reading them when the `googclient_` keys carry no usable context.
    #[must_use]
    pub fn with_standard_keys(mut self, enabled: bool) -> Self {
        self.standard_keys = enabled;
        self
    }

    /// Also write and read W3C baggage as `googclient_baggage`.
    #[must_use]
    pub fn with_baggage(mut self, enabled: bool) -> Self {
        self.baggage = enabled;
        self
    }

    /// Whether the plain `traceparent`/`tracestate` keys are written and
    /// read as a fallback.
    pub fn standard_keys(&self) -> bool {
        self.standard_keys
    }

    /// Whether W3C baggage travels as `googclient_baggage`.
    pub fn baggage(&self) -> bool {
        self.baggage
    }
}

/// Attribute maps up to this size are searched by comparing keys rather
/// than by hashing the one looked for.
const SCAN_BELOW: usize = 8;

/// An [`Injector`]/[`Extractor`] over a message's attribute map that adds the
/// `googclient_` prefix to every key, for users who handle raw messages and want
/// to drive an OpenTelemetry propagator themselves (the Go client's
/// `NewMessageCarrierFromPB`).
///
/// `A` is any borrow of the attribute map: `&HashMap` (extract only),
/// `&mut HashMap` or an owned `HashMap` (inject and extract).
///
/// Setting an empty `tracestate` removes the attribute instead of writing an
/// empty value, as the other official clients do.
///
/// ```
/// use std::collections::HashMap;
/// use baton_trace_context::MessageCarrier;
/// use opentelemetry::propagation::{Extractor, Injector};
///
/// let mut attributes = HashMap::new();
/// MessageCarrier::new(&mut attributes).set("traceparent", "00-…".to_owned());
/// assert!(attributes.contains_key("googclient_traceparent"));
/// assert_eq!(MessageCarrier::new(&attributes).get("traceparent"), Some("00-…"));
/// ```
#[derive(Debug, Clone)]
pub struct MessageCarrier<A> {
    attributes: A,
    prefix: &'static str,
}

impl<A> MessageCarrier<A> {
    /// Wraps an attribute map; keys are read and written with the `googclient_`
    /// prefix.
    pub fn new(attributes: A) -> Self {
        Self {
            attributes,
            prefix: ATTRIBUTE_PREFIX,
        }
    }

    /// Wraps an attribute map without a prefix (the opt-in standard keys).
    fn unprefixed(attributes: A) -> Self {
        Self {
            attributes,
            prefix: "",
        }
    }

    /// Returns the wrapped attribute map.
    pub fn into_inner(self) -> A {
        self.attributes
    }

    /// The attribute key of a propagator field. The two W3C fields of the
    /// `googclient_` carrier are constants, so reading and writing them (for
    /// every traced message) allocates nothing.
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match (self.prefix, key) {
            ("", _) => Cow::Borrowed(key),
            (ATTRIBUTE_PREFIX, TRACEPARENT_FIELD) => Cow::Borrowed(TRACEPARENT_ATTRIBUTE),
            (ATTRIBUTE_PREFIX, TRACESTATE_FIELD) => Cow::Borrowed(TRACESTATE_ATTRIBUTE),
            (prefix, key) => Cow::Owned(format!("{prefix}{key}")),
        }
    }
}

impl<A: Borrow<HashMap<String, String>>> Extractor for MessageCarrier<A> {
    /// Reads `googclient_{key}`.
    fn get(&self, key: &str) -> Option<&str> {
        let attributes = self.attributes.borrow();
        let key = self.key(key);
        if attributes.len() <= SCAN_BELOW {
            // A message has few attributes: comparing their keys costs
            // less than hashing this one, and this runs for every message
            // a traced subscriber receives.
            return attributes
                .iter()
                .find(|(name, _)| name.as_str() == key.as_ref())
                .map(|(_, value)| value.as_str());
        }
        attributes.get(key.as_ref()).map(String::as_str)
    }

    /// Lists the prefixed attribute keys, without the prefix.
    fn keys(&self) -> Vec<&str> {
        self.attributes
            .borrow()
            .keys()
            .filter_map(|k| k.strip_prefix(self.prefix))
            .collect()
    }
}

impl<A: BorrowMut<HashMap<String, String>>> Injector for MessageCarrier<A> {
    /// Writes `googclient_{key}`, overwriting any existing value; an empty
    /// `tracestate` removes the attribute instead.
    fn set(&mut self, key: &str, value: String) {
        let full_key = self.key(key);
        let attributes = self.attributes.borrow_mut();
        if key == TRACESTATE_FIELD && value.is_empty() {
            attributes.remove(full_key.as_ref());
        } else {
            attributes.insert(full_key.into_owned(), value);
        }
    }

    fn reserve(&mut self, additional: usize) {
        self.attributes.borrow_mut().reserve(additional);
    }
}

/// Writes the trace context of `cx`'s span into a message's attributes.
///
/// Pass the context of the per-message `create` span. Uses the W3C Trace
/// Context propagator directly with every key prefixed `googclient_`:
/// `googclient_traceparent` is written whenever the span context is valid
/// (sampled or not), `googclient_tracestate` only when the tracestate is
/// non-empty. Existing attributes with those keys are overwritten (a stale
/// `googclient_tracestate` is removed). Nothing trace-related is written when the
/// span context is invalid. With [`PropagationOptions::standard_keys`] the plain
/// `traceparent`/`tracestate` keys are written too; with
/// [`PropagationOptions::baggage`] non-empty baggage of `cx` is written as
/// `googclient_baggage`.
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::Context;
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
///
/// let span_context = SpanContext::new(
///     TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
///     SpanId::from(0x00f0_67aa_0ba9_02b7),
///     TraceFlags::SAMPLED,
///     false,
///     TraceState::default(),
/// );
/// let cx = Context::new().with_remote_span_context(span_context);
/// let mut attributes = HashMap::new();
/// baton_trace_context::inject(&cx, &mut attributes, &Default::default());
/// assert_eq!(
///     attributes["googclient_traceparent"],
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
/// );
/// assert!(!attributes.contains_key("googclient_tracestate"));
/// ```
pub fn inject(
    cx: &Context,
    attributes: &mut HashMap<String, String>,
    options: &PropagationOptions,
) {
    inject_span_context(cx, cx.span().span_context(), attributes, options);
}

/// [`inject`] for a span whose context is `span_context`, with `cx` (the
/// span's parent context) giving the baggage: spares a caller that holds
/// the span itself a context made only to be read here.
pub(crate) fn inject_span_context(
    cx: &Context,
    span_context: &SpanContext,
    attributes: &mut HashMap<String, String>,
    options: &PropagationOptions,
) {
    if span_context.is_valid() {
        // What the W3C propagator writes, without its formatting machinery:
        // this runs for every message a traced publisher sends.
        write_w3c(
            span_context,
            attributes,
            TRACEPARENT_ATTRIBUTE,
            TRACESTATE_ATTRIBUTE,
        );
        if options.standard_keys {
            write_w3c(
                span_context,
                attributes,
                STANDARD_TRACEPARENT_ATTRIBUTE,
                STANDARD_TRACESTATE_ATTRIBUTE,
            );
        }
    }
    if options.baggage {
        BaggagePropagator::new().inject_context(cx, &mut MessageCarrier::new(&mut *attributes));
    }
}

/// Writes `span_context` as the W3C propagator does under the keys
/// `parent_key` and `state_key` (an empty trace state removes the latter).
fn write_w3c(
    span_context: &SpanContext,
    attributes: &mut HashMap<String, String>,
    parent_key: &str,
    state_key: &str,
) {
    attributes.insert(parent_key.to_owned(), traceparent(span_context));
    let state = span_context.trace_state().header();
    if state.is_empty() {
        // Usually there is nothing to remove, which comparing a few keys
        // finds out for less than hashing this one.
        if has_key(attributes, state_key) {
            attributes.remove(state_key);
        }
    } else {
        attributes.insert(state_key.to_owned(), state);
    }
}

/// The W3C `traceparent` of `span_context` (version 00; of the flags only
/// the sampled bit, as the W3C propagator writes it).
fn traceparent(span_context: &SpanContext) -> String {
    // Only ASCII is written, so this never fails.
    String::from_utf8(Traceparent::new(span_context).0.to_vec()).unwrap_or_default()
}

/// The value of `googclient_traceparent` for one message, in the canonical
/// W3C form (version 00, 55 lowercase ASCII characters), kept as bytes.
///
/// A publisher that encodes its messages itself can carry the context in
/// this form and write it as one more attribute entry of the encoded
/// message (see [`compact_traceparent`]): the attribute map is spared two
/// strings and an entry for every message, which at some 500,000 messages
/// a second is most of what carrying the context costs.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
/// use baton_trace_context::Traceparent;
///
/// let span_context = SpanContext::new(
///     TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
///     SpanId::from(0x00f0_67aa_0ba9_02b7),
///     TraceFlags::SAMPLED,
///     false,
///     TraceState::default(),
/// );
/// assert_eq!(
///     Traceparent::new(&span_context).to_string(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Traceparent([u8; Traceparent::LEN]);

impl Traceparent {
    /// The length of the value: 55 bytes.
    pub const LEN: usize = 55;

    /// The `traceparent` of `span_context` (of the flags only the sampled
    /// bit, as the W3C propagator writes it).
    #[must_use]
    pub fn new(span_context: &SpanContext) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Written into an array: per character `String::push` costs more,
        // and this runs for every message a traced publisher sends.
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let flags = [(span_context.trace_flags() & TraceFlags::SAMPLED).to_u8()];
        let fields: [(usize, &[u8]); 3] = [
            (3, &span_context.trace_id().to_bytes()),
            (36, &span_context.span_id().to_bytes()),
            (53, &flags),
        ];
        for (start, bytes) in fields {
            for (pair, byte) in text[start..].chunks_exact_mut(2).zip(bytes) {
                pair[0] = HEX[usize::from(byte >> 4)];
                pair[1] = HEX[usize::from(byte & 0x0f)];
            }
        }
        Self(text)
    }

    /// The value as the attribute carries it: 55 ASCII bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl std::fmt::Display for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only ASCII is ever written, so the text is always whole.
        f.write_str(std::str::from_utf8(&self.0).unwrap_or_default())
    }
}

impl std::fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Traceparent({self})")
    }
}

/// What [`inject`] would write for a span whose context is `span_context`,
/// when that is `googclient_traceparent` alone: the context is valid, its
/// trace state is empty, `options` add no carriers, and `attributes` holds
/// neither trace key already (which `inject` would overwrite or remove).
/// `None` otherwise, and then the caller injects into the map as usual.
///
/// For a publisher that encodes its messages itself and writes the value as
/// one more attribute entry; the encoded message is then the one `inject`
/// gives.
#[must_use]
pub fn compact_traceparent(
    span_context: &SpanContext,
    attributes: &HashMap<String, String>,
    options: &PropagationOptions,
) -> Option<Traceparent> {
    let plain = span_context.is_valid()
        && !options.standard_keys
        && !options.baggage
        && span_context.trace_state().header().is_empty()
        && !has_key(attributes, TRACEPARENT_ATTRIBUTE)
        && !has_key(attributes, TRACESTATE_ATTRIBUTE);
    plain.then(|| Traceparent::new(span_context))
}

/// Whether `attributes` has `key`; a small map is searched by comparing
/// keys, which costs less than hashing.
fn has_key(attributes: &HashMap<String, String>, key: &str) -> bool {
    attribute(attributes, key).is_some()
}

/// The value of attribute `key`; a small map is searched by comparing keys,
/// which costs less than hashing.
fn attribute<'a>(attributes: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    if attributes.len() <= SCAN_BELOW {
        attributes
            .iter()
            .find(|(name, _)| name.as_str() == key)
            .map(|(_, value)| value.as_str())
    } else {
        attributes.get(key).map(String::as_str)
    }
}

/// Reads the trace context a publisher put into a message's attributes.
///
/// Returns a fresh [`Context`] (not derived from the current one) holding the
/// remote `create` span context when one could be read, to be used as the
/// parent of the `subscribe` span. Sources, first usable wins:
/// `googclient_traceparent` (+ `googclient_tracestate`); the legacy Node.js
/// `googclient_OpenTelemetrySpanContext` JSON, only when
/// `googclient_traceparent` is absent; with [`PropagationOptions::standard_keys`],
/// the plain `traceparent` (+ `tracestate`). Any flags byte is accepted; only
/// bit 0 (sampled) is kept. Missing or malformed values are never an error:
/// the context simply has no remote span, so the subscribe span starts a new
/// trace. With [`PropagationOptions::baggage`], `googclient_baggage` is read
/// into the context's baggage.
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::trace::TraceContextExt;
///
/// let attributes = HashMap::from([(
///     "googclient_traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03".to_owned(),
/// )]);
/// let cx = baton_trace_context::extract(&attributes, &Default::default());
/// assert!(cx.span().span_context().is_sampled());
/// assert!(cx.span().span_context().is_remote());
///
/// let cx = baton_trace_context::extract(&HashMap::new(), &Default::default());
/// assert!(!cx.has_active_span());
/// ```
#[must_use]
pub fn extract(attributes: &HashMap<String, String>, options: &PropagationOptions) -> Context {
    remote_context(
        extract_span_context(attributes, options),
        attributes,
        options,
    )
}

/// [`extract`] for a message whose `googclient_traceparent` value is held
/// apart from its attribute map (`traceparent`): the context `extract`
/// reads from the map with the entry back in it.
pub(crate) fn extract_held(
    attributes: &HashMap<String, String>,
    traceparent: Option<&str>,
    options: &PropagationOptions,
) -> Context {
    let Some(parent) = traceparent else {
        return extract(attributes, options);
    };
    let state = attribute(attributes, TRACESTATE_ATTRIBUTE);
    match canonical_context(parent, state) {
        Some(span_context) => remote_context(Some(span_context), attributes, options),
        // Not the canonical form: the propagator reads it from a map, as
        // it would have come.
        None => {
            let mut whole = attributes.clone();
            whole.insert(TRACEPARENT_ATTRIBUTE.to_string(), parent.to_string());
            extract(&whole, options)
        }
    }
}

/// A fresh context with the remote `span_context`, if any, and, with
/// [`PropagationOptions::baggage`], the baggage of `attributes`.
fn remote_context(
    span_context: Option<SpanContext>,
    attributes: &HashMap<String, String>,
    options: &PropagationOptions,
) -> Context {
    let mut cx = Context::new();
    if let Some(span_context) = span_context {
        cx = cx.with_remote_span_context(span_context);
    }
    if options.baggage {
        cx = BaggagePropagator::new().extract_with_context(&cx, &MessageCarrier::new(attributes));
    }
    cx
}

/// Like [`extract`], but returns only the remote span context, or `None` when
/// the attributes carry no usable trace context.
///
/// Convenient for the server, which records its own spans as children of the
/// `create` span, and for building links.
#[must_use]
pub fn extract_span_context(
    attributes: &HashMap<String, String>,
    options: &PropagationOptions,
) -> Option<SpanContext> {
    if let Some(span_context) = canonical_span_context(attributes) {
        return Some(span_context);
    }
    if let Some(span_context) = w3c_span_context(&MessageCarrier::new(attributes)) {
        return Some(span_context);
    }
    // Legacy Node.js JSON, only when no googclient_traceparent is present.
    let legacy = attributes
        .get(LEGACY_SPAN_CONTEXT_ATTRIBUTE)
        .filter(|_| !attributes.contains_key(TRACEPARENT_ATTRIBUTE))
        .and_then(|value| legacy_span_context(value));
    if legacy.is_some() {
        return legacy;
    }
    if options.standard_keys {
        return w3c_span_context(&MessageCarrier::unprefixed(attributes));
    }
    None
}

/// The context of a canonical `googclient_traceparent` (and its
/// `googclient_tracestate`), read in one pass over a small map: this runs
/// for every message a traced subscriber receives. `None` for anything
/// else, which [`w3c_span_context`] then reads.
fn canonical_span_context(attributes: &HashMap<String, String>) -> Option<SpanContext> {
    let (parent, state) = if attributes.len() <= SCAN_BELOW {
        let (mut parent, mut state) = (None, None);
        for (key, value) in attributes {
            match key.as_str() {
                TRACEPARENT_ATTRIBUTE => parent = Some(value),
                TRACESTATE_ATTRIBUTE => state = Some(value),
                _ => {}
            }
        }
        (parent?, state)
    } else {
        (
            attributes.get(TRACEPARENT_ATTRIBUTE)?,
            attributes.get(TRACESTATE_ATTRIBUTE),
        )
    };
    canonical_context(parent, state.map(String::as_str))
}

/// The remote context of a canonical `traceparent` and its `tracestate`;
/// `None` when the former is not canonical or the context not valid.
fn canonical_context(parent: &str, state: Option<&str>) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = canonical_traceparent(parent)?;
    let state = state
        .map(|state| TraceState::from_str(state).unwrap_or_default())
        .unwrap_or_default();
    let span_context = SpanContext::new(trace_id, span_id, flags, true, state);
    span_context.is_valid().then_some(span_context)
}

/// Reads the W3C trace context of `extractor` as the W3C propagator does;
/// `Some` only for a valid context.
///
/// A `traceparent` in the canonical form every client writes (version 00,
/// 55 lowercase characters) is read here directly; anything else goes to
/// the propagator. The propagator splits, trims and checks the value
/// through several passes and allocations, which cost more per received
/// message than all of Baton's own bookkeeping; the result is the same (a
/// property test compares the two).
fn w3c_span_context(extractor: &dyn Extractor) -> Option<SpanContext> {
    if let Some(span_context) = extractor
        .get(TRACEPARENT_FIELD)
        .and_then(|parent| canonical_context(parent, extractor.get(TRACESTATE_FIELD)))
    {
        return Some(span_context);
    }
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), extractor);
    let span = cx.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.clone())
}

/// The ids and the sampled flag of a `traceparent` in its canonical form,
/// `00-{32 hex}-{16 hex}-{2 hex}` in lowercase; `None` for any other form
/// (which the W3C propagator then reads, or refuses).
fn canonical_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    /// Each byte's value as a lowercase hex digit; 0xff for any other byte.
    const DIGITS: [u8; 256] = {
        let mut table = [0xff_u8; 256];
        let mut digit = 0;
        while digit < 16 {
            table[b"0123456789abcdef"[digit] as usize] = digit as u8;
            digit += 1;
        }
        table
    };
    fn decode<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
        let mut out = [0_u8; N];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (high, low) = (DIGITS[usize::from(pair[0])], DIGITS[usize::from(pair[1])]);
            if (high | low) > 0x0f {
                return None;
            }
            *byte = high << 4 | low;
        }
        Some(out)
    }
    let bytes = value.as_bytes();
    if bytes.len() != 55 || !bytes.starts_with(b"00-") || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = decode::<16>(&bytes[3..35])?;
    let span_id = decode::<8>(&bytes[36..52])?;
    let [flags] = decode::<1>(&bytes[53..55])?;
    Some((
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// Parses the Node.js 2.5–4.x JSON `{"traceId","spanId","traceFlags"}`.
fn legacy_span_context(value: &str) -> Option<SpanContext> {
    let json: serde_json::Value = serde_json::from_str(value).ok()?;
    let trace_id = TraceId::from_hex(hex_field(&json, "traceId", 32)?).ok()?;
    let span_id = SpanId::from_hex(hex_field(&json, "spanId", 16)?).ok()?;
    let flags = match json.get("traceFlags") {
        None | Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::Number(n)) => u8::try_from(n.as_u64()?).ok()?,
        Some(serde_json::Value::String(s)) => u8::from_str_radix(s, 16).ok()?,
        Some(_) => return None,
    };
    let span_context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    span_context.is_valid().then_some(span_context)
}

/// A string field of exactly `len` hex digits.
fn hex_field<'a>(json: &'a serde_json::Value, name: &str, len: usize) -> Option<&'a str> {
    let value = json.get(name)?.as_str()?;
    (value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit())).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;

    const TRACE_ID: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
    const SPAN_ID: u64 = 0x00f0_67aa_0ba9_02b7;
    const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN_HEX: &str = "00f067aa0ba902b7";

    /// The compact value is what `inject` writes when that is all it
    /// writes, and is refused whenever `inject` would write or remove more.
    #[test]
    fn a_compact_traceparent_only_when_it_is_all_inject_writes() {
        let plain = span_context(TraceFlags::default(), TraceState::default());
        let mut injected = HashMap::new();
        let cx = Context::new().with_remote_span_context(plain.clone());
        inject(&cx, &mut injected, &PropagationOptions::default());
        let compact = compact_traceparent(&plain, &HashMap::new(), &PropagationOptions::default());
        assert_eq!(
            compact.map(|t| t.to_string()).as_ref(),
            injected.get(TRACEPARENT_ATTRIBUTE)
        );
        assert_eq!(injected.len(), 1);

        let stated = span_context(
            TraceFlags::SAMPLED,
            TraceState::from_key_value([("k", "v")]).unwrap(),
        );
        let options = PropagationOptions::default();
        assert!(compact_traceparent(&stated, &HashMap::new(), &options).is_none());
        for key in [TRACEPARENT_ATTRIBUTE, TRACESTATE_ATTRIBUTE] {
            let own: HashMap<String, String> = [(key.to_string(), "x".to_string())].into();
            assert!(
                compact_traceparent(&plain, &own, &options).is_none(),
                "{key}"
            );
        }
        for options in [
            PropagationOptions {
                standard_keys: true,
                ..Default::default()
            },
            PropagationOptions {
                baggage: true,
                ..Default::default()
            },
        ] {
            assert!(compact_traceparent(&plain, &HashMap::new(), &options).is_none());
        }
        assert!(
            compact_traceparent(&SpanContext::empty_context(), &HashMap::new(), &options).is_none()
        );
        // A large map is searched by hash, with the same answer.
        let mut many: HashMap<String, String> =
            (0..20).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(compact_traceparent(&plain, &many, &options).is_some());
        many.insert(TRACESTATE_ATTRIBUTE.into(), "a=b".into());
        assert!(compact_traceparent(&plain, &many, &options).is_none());
    }

    fn span_context(flags: TraceFlags, state: TraceState) -> SpanContext {
        SpanContext::new(
            TraceId::from(TRACE_ID),
            SpanId::from(SPAN_ID),
            flags,
            false,
            state,
        )
    }

    fn cx(flags: TraceFlags, state: TraceState) -> Context {
        Context::new().with_remote_span_context(span_context(flags, state))
    }

    fn traceparent(flags: &str) -> String {
        format!("00-{TRACE_HEX}-{SPAN_HEX}-{flags}")
    }

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn vendor_state() -> TraceState {
        TraceState::from_key_value([("vendor", "opaque")]).unwrap_or_default()
    }

    #[test]
    fn constants_are_prefixed() {
        for key in [
            TRACEPARENT_ATTRIBUTE,
            TRACESTATE_ATTRIBUTE,
            BAGGAGE_ATTRIBUTE,
            LEGACY_SPAN_CONTEXT_ATTRIBUTE,
        ] {
            assert!(key.starts_with(ATTRIBUTE_PREFIX), "{key}");
        }
    }

    #[test]
    fn inject_sampled_without_tracestate() {
        let mut a = HashMap::new();
        inject(
            &cx(TraceFlags::SAMPLED, TraceState::default()),
            &mut a,
            &PropagationOptions::default(),
        );
        assert_eq!(a, attrs(&[(TRACEPARENT_ATTRIBUTE, &traceparent("01"))]));
    }

    #[test]
    fn inject_unsampled_still_writes_traceparent() {
        let mut a = HashMap::new();
        inject(
            &cx(TraceFlags::NOT_SAMPLED, TraceState::default()),
            &mut a,
            &PropagationOptions::default(),
        );
        assert_eq!(a, attrs(&[(TRACEPARENT_ATTRIBUTE, &traceparent("00"))]));
    }

    #[test]
    fn inject_with_tracestate() {
        let mut a = HashMap::new();
        inject(
            &cx(TraceFlags::SAMPLED, vendor_state()),
            &mut a,
            &PropagationOptions::default(),
        );
        assert_eq!(
            a,
            attrs(&[
                (TRACEPARENT_ATTRIBUTE, &traceparent("01")),
                (TRACESTATE_ATTRIBUTE, "vendor=opaque"),
            ])
        );
    }

    #[test]
    fn inject_overwrites_user_attributes_and_keeps_others() {
        let mut a = attrs(&[
            (TRACEPARENT_ATTRIBUTE, "user value"),
            (TRACESTATE_ATTRIBUTE, "stale=1"),
            ("order", "42"),
        ]);
        inject(
            &cx(TraceFlags::SAMPLED, TraceState::default()),
            &mut a,
            &PropagationOptions::default(),
        );
        assert_eq!(
            a,
            attrs(&[(TRACEPARENT_ATTRIBUTE, &traceparent("01")), ("order", "42")])
        );
    }

    #[test]
    fn inject_invalid_context_writes_nothing() {
        let mut a = attrs(&[("order", "42")]);
        inject(&Context::new(), &mut a, &PropagationOptions::default());
        let invalid = Context::new().with_remote_span_context(SpanContext::empty_context());
        inject(
            &invalid,
            &mut a,
            &PropagationOptions {
                standard_keys: true,
                baggage: true,
            },
        );
        assert_eq!(a, attrs(&[("order", "42")]));
    }

    #[test]
    fn inject_standard_keys() {
        let mut a = HashMap::new();
        let options = PropagationOptions {
            standard_keys: true,
            baggage: false,
        };
        inject(&cx(TraceFlags::SAMPLED, vendor_state()), &mut a, &options);
        assert_eq!(a.len(), 4);
        assert_eq!(a[STANDARD_TRACEPARENT_ATTRIBUTE], traceparent("01"));
        assert_eq!(a[STANDARD_TRACESTATE_ATTRIBUTE], "vendor=opaque");
        assert_eq!(a[TRACEPARENT_ATTRIBUTE], traceparent("01"));
    }

    #[test]
    fn round_trip_sampled_unsampled_with_and_without_state() {
        for flags in [TraceFlags::SAMPLED, TraceFlags::NOT_SAMPLED] {
            for state in [TraceState::default(), vendor_state()] {
                let mut a = HashMap::new();
                inject(
                    &cx(flags, state.clone()),
                    &mut a,
                    &PropagationOptions::default(),
                );
                let got = extract_span_context(&a, &PropagationOptions::default());
                let want = SpanContext::new(
                    TraceId::from(TRACE_ID),
                    SpanId::from(SPAN_ID),
                    flags,
                    true,
                    state,
                );
                assert_eq!(got, Some(want));
            }
        }
    }

    #[test]
    fn extract_accepts_any_flags_byte() {
        for (flags, sampled) in [
            ("00", false),
            ("01", true),
            ("03", true),
            ("ff", true),
            ("02", false),
        ] {
            let a = attrs(&[(TRACEPARENT_ATTRIBUTE, &traceparent(flags))]);
            let cx = extract(&a, &PropagationOptions::default());
            let span = cx.span();
            let sc = span.span_context();
            assert!(sc.is_valid(), "{flags}");
            assert!(sc.is_remote(), "{flags}");
            assert_eq!(sc.is_sampled(), sampled, "{flags}");
            assert_eq!(sc.trace_id(), TraceId::from(TRACE_ID));
            assert_eq!(sc.span_id(), SpanId::from(SPAN_ID));
        }
    }

    #[test]
    fn extract_reads_tracestate() {
        let a = attrs(&[
            (TRACEPARENT_ATTRIBUTE, &traceparent("01")),
            (TRACESTATE_ATTRIBUTE, "vendor=opaque"),
        ]);
        let sc = extract_span_context(&a, &PropagationOptions::default());
        assert_eq!(
            sc.map(|sc| sc.trace_state().header()),
            Some("vendor=opaque".to_owned())
        );
    }

    #[test]
    fn extract_missing_or_malformed_gives_no_span() {
        let cases = [
            attrs(&[]),
            attrs(&[("order", "42")]),
            attrs(&[(TRACEPARENT_ATTRIBUTE, "")]),
            attrs(&[(TRACEPARENT_ATTRIBUTE, "garbage")]),
            attrs(&[(
                TRACEPARENT_ATTRIBUTE,
                "00-00000000000000000000000000000000-0000000000000000-01",
            )]),
            attrs(&[(TRACEPARENT_ATTRIBUTE, &format!("00-{TRACE_HEX}-{SPAN_HEX}"))]),
            attrs(&[(
                TRACEPARENT_ATTRIBUTE,
                &format!("ff-{TRACE_HEX}-{SPAN_HEX}-01"),
            )]),
            // Unprefixed keys are ignored by default.
            attrs(&[(STANDARD_TRACEPARENT_ATTRIBUTE, &traceparent("01"))]),
        ];
        for a in cases {
            let cx = extract(&a, &PropagationOptions::default());
            assert!(!cx.has_active_span(), "{a:?}");
            assert!(!cx.span().span_context().is_valid(), "{a:?}");
            assert_eq!(
                extract_span_context(&a, &PropagationOptions::default()),
                None
            );
        }
    }

    #[test]
    fn extract_legacy_node_json() {
        let json = format!(r#"{{"traceId":"{TRACE_HEX}","spanId":"{SPAN_HEX}","traceFlags":1}}"#);
        let a = attrs(&[(LEGACY_SPAN_CONTEXT_ATTRIBUTE, &json)]);
        let sc = extract_span_context(&a, &PropagationOptions::default());
        assert_eq!(
            sc,
            Some(SpanContext::new(
                TraceId::from(TRACE_ID),
                SpanId::from(SPAN_ID),
                TraceFlags::SAMPLED,
                true,
                TraceState::default()
            ))
        );

        let unsampled =
            format!(r#"{{"traceId":"{TRACE_HEX}","spanId":"{SPAN_HEX}","traceFlags":0}}"#);
        let a = attrs(&[(LEGACY_SPAN_CONTEXT_ATTRIBUTE, &unsampled)]);
        let sc = extract_span_context(&a, &PropagationOptions::default());
        assert_eq!(sc.map(|sc| sc.is_sampled()), Some(false));

        for bad in [
            "",
            "{}",
            "[1,2]",
            r#"{"traceId":"zz","spanId":"00f067aa0ba902b7","traceFlags":1}"#,
            r#"{"traceId":"00000000000000000000000000000000","spanId":"00f067aa0ba902b7"}"#,
            r#"{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","traceFlags":999}"#,
        ] {
            let a = attrs(&[(LEGACY_SPAN_CONTEXT_ATTRIBUTE, bad)]);
            assert_eq!(
                extract_span_context(&a, &PropagationOptions::default()),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn legacy_json_only_when_traceparent_absent() {
        let other_trace = "0af7651916cd43dd8448eb211c80319c";
        let json = format!(r#"{{"traceId":"{other_trace}","spanId":"{SPAN_HEX}","traceFlags":1}}"#);
        // A valid traceparent wins.
        let a = attrs(&[
            (TRACEPARENT_ATTRIBUTE, &traceparent("01")),
            (LEGACY_SPAN_CONTEXT_ATTRIBUTE, &json),
        ]);
        let sc = extract_span_context(&a, &PropagationOptions::default());
        assert_eq!(sc.map(|sc| sc.trace_id()), Some(TraceId::from(TRACE_ID)));
        // A present but malformed traceparent does not fall back to legacy.
        let a = attrs(&[
            (TRACEPARENT_ATTRIBUTE, "garbage"),
            (LEGACY_SPAN_CONTEXT_ATTRIBUTE, &json),
        ]);
        assert_eq!(
            extract_span_context(&a, &PropagationOptions::default()),
            None
        );
    }

    #[test]
    fn extract_standard_keys_fallback() {
        let options = PropagationOptions {
            standard_keys: true,
            baggage: false,
        };
        let a = attrs(&[
            (STANDARD_TRACEPARENT_ATTRIBUTE, &traceparent("01")),
            (STANDARD_TRACESTATE_ATTRIBUTE, "vendor=opaque"),
        ]);
        let sc = extract_span_context(&a, &options);
        assert_eq!(
            sc.as_ref().map(SpanContext::trace_id),
            Some(TraceId::from(TRACE_ID))
        );
        assert_eq!(
            sc.map(|sc| sc.trace_state().header()),
            Some("vendor=opaque".to_owned())
        );

        // The prefixed key wins over the plain one.
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let a = attrs(&[
            (STANDARD_TRACEPARENT_ATTRIBUTE, other),
            (TRACEPARENT_ATTRIBUTE, &traceparent("01")),
        ]);
        let sc = extract_span_context(&a, &options);
        assert_eq!(sc.map(|sc| sc.trace_id()), Some(TraceId::from(TRACE_ID)));
    }

    #[test]
    fn baggage_round_trip_only_when_enabled() {
        let base = cx(TraceFlags::SAMPLED, TraceState::default());
        let with_baggage = base.with_baggage([KeyValue::new("tenant", "acme")]);

        let mut a = HashMap::new();
        inject(&with_baggage, &mut a, &PropagationOptions::default());
        assert!(!a.contains_key(BAGGAGE_ATTRIBUTE));
        assert!(!a.contains_key("baggage"));

        let options = PropagationOptions {
            standard_keys: false,
            baggage: true,
        };
        inject(&with_baggage, &mut a, &options);
        assert_eq!(
            a.get(BAGGAGE_ATTRIBUTE).map(String::as_str),
            Some("tenant=acme")
        );

        let cx = extract(&a, &options);
        assert_eq!(
            cx.baggage().get("tenant").map(|v| v.as_str().to_owned()),
            Some("acme".to_owned())
        );
        assert!(cx.span().span_context().is_valid());

        let cx = extract(&a, &PropagationOptions::default());
        assert!(cx.baggage().is_empty());
    }

    #[test]
    fn message_carrier_prefixes_keys() {
        let mut a = attrs(&[("order", "42")]);
        let mut carrier = MessageCarrier::new(&mut a);
        TraceContextPropagator::new().inject_context(
            &cx(TraceFlags::SAMPLED, TraceState::default()),
            &mut carrier,
        );
        assert!(!a.contains_key(TRACESTATE_ATTRIBUTE));
        assert_eq!(a[TRACEPARENT_ATTRIBUTE], traceparent("01"));

        let carrier = MessageCarrier::new(&a);
        assert_eq!(carrier.keys(), vec!["traceparent"]);
        assert_eq!(carrier.get("order"), None);
        let cx = TraceContextPropagator::new().extract(&carrier);
        assert_eq!(cx.span().span_context().trace_id(), TraceId::from(TRACE_ID));
        assert_eq!(carrier.into_inner().len(), 2);
    }

    proptest::proptest! {
        /// The hand-written `traceparent` is byte for byte what the W3C
        /// propagator writes, for any ids, flags and trace state.
        #[test]
        fn traceparent_matches_the_w3c_propagator(
            trace_id in 1_u128..,
            span_id in 1_u64..,
            flags: u8,
            vendor: bool,
        ) {
            let state = if vendor { vendor_state() } else { TraceState::default() };
            let span_context = SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(span_id),
                TraceFlags::new(flags),
                false,
                state,
            );
            let cx = Context::new().with_remote_span_context(span_context);
            let mut ours = HashMap::from([(TRACESTATE_ATTRIBUTE.to_owned(), "stale=1".to_owned())]);
            inject(&cx, &mut ours, &PropagationOptions::default());
            let mut sdk = HashMap::from([(TRACESTATE_ATTRIBUTE.to_owned(), "stale=1".to_owned())]);
            TraceContextPropagator::new().inject_context(&cx, &mut MessageCarrier::new(&mut sdk));
            proptest::prop_assert_eq!(ours, sdk);
        }
    }

    /// What the W3C propagator reads from a carrier holding `traceparent`
    /// (and `tracestate`).
    fn sdk_reads(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        if let Some(state) = tracestate {
            carrier.insert("tracestate".to_owned(), state.to_owned());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        let span = cx.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| span_context.clone())
    }

    fn we_read(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        if let Some(state) = tracestate {
            carrier.insert("tracestate".to_owned(), state.to_owned());
        }
        w3c_span_context(&MessageCarrier::unprefixed(&carrier))
    }

    /// Canonical `traceparent` values with one character changed (to
    /// anything: uppercase, `+`, `-`, a space, a non-hex letter...).
    fn mutated_traceparent() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            any::<u128>(),
            any::<u64>(),
            any::<u8>(),
            0..56_usize,
            any::<char>(),
        )
            .prop_map(|(trace_id, span_id, flags, at, replacement)| {
                let canonical = format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}");
                canonical
                    .chars()
                    .enumerate()
                    .map(|(i, c)| if i == at { replacement } else { c })
                    .collect()
            })
    }

    proptest::proptest! {
        /// The canonical-form reader agrees with the W3C propagator on
        /// canonical values, values with a character changed, and any
        /// string at all, with and without a trace state.
        #[test]
        fn traceparent_reader_agrees_with_the_w3c_propagator(
            trace_id: u128,
            span_id: u64,
            flags: u8,
            mutated in mutated_traceparent(),
            anything in "[0-9a-fA-F+ -]{0,60}",
            state in proptest::option::of("[a-z]{1,5}=[a-z0-9]{1,5}|bad state|"),
        ) {
            let canonical = format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}");
            // The canonical form is read without the propagator.
            proptest::prop_assert!(canonical_traceparent(&canonical).is_some());
            for value in [&canonical, &mutated, &anything] {
                proptest::prop_assert_eq!(
                    we_read(value, state.as_deref()),
                    sdk_reads(value, state.as_deref()),
                    "traceparent {:?}",
                    value
                );
            }
        }
    }

    proptest::proptest! {
        /// A `googclient_traceparent` held apart from the map is read as
        /// the same value in the map is: the span context and the baggage,
        /// whatever the value's form and whatever else the map carries.
        #[test]
        fn a_held_traceparent_reads_as_the_attribute_would(
            trace_id: u128,
            span_id: u64,
            flags: u8,
            mutated in mutated_traceparent(),
            state in proptest::option::of("[a-z]{1,5}=[a-z0-9]{1,5}|bad state|"),
            plain in proptest::option::of("00-[0-9a-f]{32}-[0-9a-f]{16}-01"),
            baggage in proptest::option::of("[a-z]{1,5}=[a-z0-9]{1,5}"),
            options in (proptest::bool::ANY, proptest::bool::ANY),
        ) {
            let options = PropagationOptions { standard_keys: options.0, baggage: options.1 };
            let canonical = format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}");
            let mut rest = HashMap::new();
            for (key, value) in [
                (TRACESTATE_ATTRIBUTE, state),
                (STANDARD_TRACEPARENT_ATTRIBUTE, plain),
                (BAGGAGE_ATTRIBUTE, baggage),
            ] {
                if let Some(value) = value {
                    rest.insert(key.to_string(), value);
                }
            }
            let seen = |cx: &Context| {
                let span = cx.span();
                let baggage: Vec<(String, String)> = cx
                    .baggage()
                    .iter()
                    .map(|(k, (v, _))| (k.to_string(), v.to_string()))
                    .collect();
                (span.span_context().clone(), baggage)
            };
            for value in [&canonical, &mutated] {
                let mut whole = rest.clone();
                whole.insert(TRACEPARENT_ATTRIBUTE.to_string(), value.clone());
                proptest::prop_assert_eq!(
                    seen(&extract_held(&rest, Some(value), &options)),
                    seen(&extract(&whole, &options)),
                    "traceparent {:?}",
                    value
                );
            }
            proptest::prop_assert_eq!(
                seen(&extract_held(&rest, None, &options)),
                seen(&extract(&rest, &options))
            );
        }
    }
}
