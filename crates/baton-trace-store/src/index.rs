//! The per-trace search index: what a search needs to know about a trace
//! (time span, error flag, services, span names, the Pub/Sub terms of the
//! trace contract, what kind of trace it is), kept up to date as spans
//! arrive, so a search over the whole store looks at one small record per
//! trace instead of every span.

use serde_json::Value;

use crate::model::{Span, StatusCode, TraceKind};

/// `messaging.system` of Pub/Sub spans.
const MESSAGING_SYSTEM: &str = "messaging.system";
/// The topic or subscription short id of a Pub/Sub span.
pub(crate) const DESTINATION_NAME: &str = "messaging.destination.name";
/// The message id of create, subscribe and broker spans.
pub(crate) const MESSAGE_ID: &str = "messaging.message.id";
/// The ordering key of create and subscribe spans.
pub(crate) const ORDERING_KEY: &str = "messaging.gcp_pubsub.message.ordering_key";
/// The project of a Pub/Sub span's topic or subscription.
const PROJECT_ID: &str = "gcp.project_id";
/// The operation of a Pub/Sub span (`create`, `publish`, `ack`, ...).
const OPERATION: &str = "messaging.operation";
/// The operation as Python's modack spans name it.
const OPERATION_NAME: &str = "messaging.operation.name";
/// The operation type of newer semantic conventions (`create`, `send`,
/// `process`, `settle`).
const OPERATION_TYPE: &str = "messaging.operation.type";
/// `service.name` of the resource.
pub(crate) const SERVICE_NAME: &str = "service.name";

/// A topic or subscription a trace's spans name: its short id and, when
/// the span said, its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) project: String,
    pub(crate) id: String,
}

/// The search record of one trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TraceIndex {
    /// Earliest span start, ns (`u64::MAX` while empty).
    pub(crate) start: u64,
    /// Latest span end, ns.
    pub(crate) end: u64,
    /// Spans with status ERROR.
    pub(crate) errors: usize,
    /// Distinct `service.name`s.
    pub(crate) services: Vec<String>,
    /// Distinct span names, lowercase (newlines in them as spaces), each
    /// followed by a newline: the span name filter (contained, any case) is
    /// one substring search.
    pub(crate) names: String,
    /// Topics named by create, publish and the broker's receive spans.
    pub(crate) topics: Vec<Destination>,
    /// Subscriptions named by subscribe, process, settle and delivery spans.
    pub(crate) subscriptions: Vec<Destination>,
    /// Distinct `messaging.message.id`s.
    pub(crate) message_ids: Vec<String>,
    /// Distinct non-empty ordering keys.
    pub(crate) ordering_keys: Vec<String>,
    /// Spans of a message's flow (create, subscribe, process, broker).
    pub(crate) message_spans: usize,
    /// Batch RPC spans (publish, ack, nack, modack).
    pub(crate) rpc_spans: usize,
    /// Which `(key, value)` attribute pairs the trace's spans may hold: a
    /// Bloom filter, so a search on an attribute the record does not keep
    /// reads the spans of the few traces that may match, not of all.
    pub(crate) attributes: AttributeBloom,
}

/// Bits of an [`AttributeBloom`] (about 2 % false positives at 60 pairs).
const BLOOM_WORDS: usize = 8;
const BLOOM_BITS: u64 = (BLOOM_WORDS * 64) as u64;

/// A Bloom filter of attribute `(key, value text)` pairs: `may_hold` is
/// never false for a pair that was added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AttributeBloom([u64; BLOOM_WORDS]);

impl AttributeBloom {
    /// Three bit positions of a pair (FNV-1a, split in two halves, double
    /// hashing).
    fn positions(key: &str, value: &str) -> [u64; 3] {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.bytes().chain([0xff]).chain(value.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        [0, 1, 2].map(|i| h1.wrapping_add(i * h2) % BLOOM_BITS)
    }

    fn add(&mut self, key: &str, value: &str) {
        for bit in Self::positions(key, value) {
            self.0[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether `(key, value)` may have been added.
    pub(crate) fn may_hold(&self, key: &str, value: &str) -> bool {
        Self::positions(key, value)
            .iter()
            .all(|bit| self.0[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// The text an attribute value is filed under in the [`AttributeBloom`]:
/// strings as they are, integers (and floats with an integer value, which
/// `attr=k=1` finds too) in decimal, booleans as `true`/`false`, anything
/// else as its JSON.
fn bloom_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(u)) => u.to_string(),
            _ => match n.as_f64() {
                #[allow(clippy::cast_possible_truncation)]
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
                _ => n.to_string(),
            },
        },
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// What a Pub/Sub span does, as far as the index cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A message's own span, naming its topic.
    MessageOnTopic,
    /// A message's own span, naming its subscription.
    MessageOnSubscription,
    /// A publish RPC (names a topic).
    RpcOnTopic,
    /// A settle RPC (names a subscription).
    RpcOnSubscription,
}

/// The role of a span with Pub/Sub operation `operation`.
fn role(operation: &str) -> Option<Role> {
    Some(match operation {
        // `receive` is the broker's span of a stored publish.
        "create" | "receive" => Role::MessageOnTopic,
        "subscribe" | "process" | "deliver" | "redeliver" | "dead-letter" => {
            Role::MessageOnSubscription
        }
        "publish" | "send" => Role::RpcOnTopic,
        "ack" | "nack" | "modack" | "extend" | "settle" => Role::RpcOnSubscription,
        _ => return None,
    })
}

/// The role of `span` in Pub/Sub: from its operation attributes
/// (`messaging.operation`, Python's `messaging.operation.name`, newer
/// conventions' `messaging.operation.type`), else, for a span of the
/// `gcp_pubsub` messaging system, from the last word of its name
/// (`orders-sub subscribe`; the broker's spans carry no operation
/// attribute).
fn role_of(span: &Span) -> Option<Role> {
    for key in [OPERATION, OPERATION_NAME, OPERATION_TYPE] {
        if let Some(Value::String(op)) = span.attributes.get(key)
            && let Some(role) = role(op)
        {
            return Some(role);
        }
    }
    match span.attributes.get(MESSAGING_SYSTEM) {
        Some(Value::String(system)) if system == "gcp_pubsub" => {
            span.name.rsplit(' ').next().and_then(role)
        }
        _ => None,
    }
}

/// A scalar attribute value as text (numbers and booleans too).
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl TraceIndex {
    /// The record of an empty trace.
    pub(crate) fn new() -> Self {
        Self {
            start: u64::MAX,
            ..Self::default()
        }
    }

    /// The record of `spans`, built from scratch (after a span was
    /// replaced; and to audit the incremental one).
    pub(crate) fn build<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Self {
        let mut index = Self::new();
        for span in spans {
            index.add(span);
        }
        index
    }

    /// Takes `span` into account.
    pub(crate) fn add(&mut self, span: &Span) {
        self.start = self.start.min(span.start_unix_nano);
        self.end = self.end.max(span.end_unix_nano);
        if span.status.code == StatusCode::Error {
            self.errors += 1;
        }
        if !self.services.contains(&span.service) {
            self.services.push(span.service.clone());
        }
        let name = span.name.to_lowercase().replace('\n', " ");
        if !self.names.split('\n').any(|known| known == name) {
            self.names.push_str(&name);
            self.names.push('\n');
        }
        for (key, value) in &span.attributes {
            self.attributes.add(key, &bloom_text(value));
        }
        if let Some(id) = span.attributes.get(MESSAGE_ID).and_then(text_of)
            && !id.is_empty()
        {
            push_unique(&mut self.message_ids, id);
        }
        if let Some(key) = span.attributes.get(ORDERING_KEY).and_then(text_of)
            && !key.is_empty()
        {
            push_unique(&mut self.ordering_keys, key);
        }
        let Some(role) = role_of(span) else {
            return;
        };
        match role {
            Role::MessageOnTopic | Role::MessageOnSubscription => self.message_spans += 1,
            Role::RpcOnTopic | Role::RpcOnSubscription => self.rpc_spans += 1,
        }
        let Some(Value::String(name)) = span.attributes.get(DESTINATION_NAME) else {
            return;
        };
        let project = match span.attributes.get(PROJECT_ID) {
            Some(Value::String(p)) => p.clone(),
            _ => String::new(),
        };
        // Spans carry the short id; a full name is taken apart all the same.
        let (project, id) = match split_name(name) {
            Some((p, id)) => (p.to_string(), id.to_string()),
            None => (project, name.clone()),
        };
        let destination = Destination { project, id };
        match role {
            Role::MessageOnTopic | Role::RpcOnTopic => push_unique(&mut self.topics, destination),
            Role::MessageOnSubscription | Role::RpcOnSubscription => {
                push_unique(&mut self.subscriptions, destination);
            }
        }
    }

    /// What kind of trace this is.
    pub(crate) fn kind(&self) -> TraceKind {
        if self.message_spans > 0 {
            TraceKind::Message
        } else if self.rpc_spans > 0 {
            TraceKind::Rpc
        } else {
            TraceKind::Other
        }
    }

    /// Latest end minus earliest start.
    pub(crate) fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// `(project, id)` of a full resource name `projects/{p}/{collection}/{id}`.
pub(crate) fn split_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("projects/")?;
    let (project, rest) = rest.split_once('/')?;
    let (_, id) = rest.rsplit_once('/')?;
    (!project.is_empty() && !id.is_empty()).then_some((project, id))
}

#[cfg(test)]
impl TraceIndex {
    /// Equal up to the order of its lists (an incremental record lists
    /// terms in arrival order, a rebuilt one in the spans' map order).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        fn sorted<T: Clone + Ord>(list: &[T]) -> Vec<T> {
            let mut list = list.to_vec();
            list.sort();
            list
        }
        let pairs = |list: &[Destination]| {
            sorted(
                &list
                    .iter()
                    .map(|d| (d.project.clone(), d.id.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        (
            self.start,
            self.end,
            self.errors,
            self.message_spans,
            self.rpc_spans,
        ) == (
            other.start,
            other.end,
            other.errors,
            other.message_spans,
            other.rpc_spans,
        ) && sorted(&self.services) == sorted(&other.services)
            && sorted(&self.names.split('\n').collect::<Vec<_>>())
                == sorted(&other.names.split('\n').collect::<Vec<_>>())
            && sorted(&self.message_ids) == sorted(&other.message_ids)
            && sorted(&self.ordering_keys) == sorted(&other.ordering_keys)
            && pairs(&self.topics) == pairs(&other.topics)
            && pairs(&self.subscriptions) == pairs(&other.subscriptions)
            && self.attributes == other.attributes
    }
}
