//! Response normalisation (ids and times become templates) and canonical JSON.
//!
//! Mirrors "Response normalization" in STEP_SEMANTICS.md: our answers are normalised
//! exactly like the recorded ones, then both are compared canonically.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// The three kinds of server-made ids that the corpus templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Message,
    Ack,
    Revision,
}

impl IdKind {
    fn name(self) -> &'static str {
        match self {
            Self::Message => "messageId",
            Self::Ack => "ackId",
            Self::Revision => "revisionId",
        }
    }
}

/// Keys whose values are timestamps (`{{time}}` after normalisation).
const TIME_KEYS: &[&str] = &[
    "publishTime",
    "publish_time",
    "expireTime",
    "revisionCreateTime",
    "createTime",
    "updateTime",
    "CloudPubSubDeadLetterSourceTopicPublishTime",
];

/// Keys of request bodies whose string values are ids (used to find plan literals).
const REQUEST_ID_KEYS: &[&str] = &[
    "messageId",
    "message_id",
    "messageIds",
    "ackId",
    "ackIds",
    "modifyDeadlineAckIds",
    "revisionId",
    "firstRevisionId",
    "lastRevisionId",
    "googclient_schemarevisionid",
];

/// The per-program template registry: live id values and the templates they got.
#[derive(Debug, Default)]
pub struct Registry {
    by_raw: HashMap<(IdKind, String), String>,
    by_template: HashMap<String, String>,
    counts: HashMap<(IdKind, String), usize>,
    /// Id-shaped string literals of the plan: never templated (so a server that
    /// echoes a client-supplied id is caught).
    literals: HashSet<String>,
}

impl Registry {
    /// A fresh registry that knows the program's id literals.
    pub fn new<'a>(requests: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut registry = Self::default();
        for request in requests {
            collect_literals(request, None, &mut registry.literals);
        }
        registry
    }

    /// The live value a template stands for.
    pub fn resolve(&self, template: &str) -> Option<&str> {
        self.by_template.get(template).map(String::as_str)
    }

    /// The template of a raw id seen while normalising step `step`.
    fn template(&mut self, kind: IdKind, raw: &str, step: &str) -> String {
        if self.literals.contains(raw) {
            return raw.to_owned();
        }
        if let Some(template) = self.by_raw.get(&(kind, raw.to_owned())) {
            return template.clone();
        }
        let count = self.counts.entry((kind, step.to_owned())).or_insert(0);
        *count += 1;
        let template = if *count == 1 {
            format!("{{{{{}:{step}}}}}", kind.name())
        } else {
            format!("{{{{{}:{step}#{count}}}}}", kind.name())
        };
        self.by_raw.insert((kind, raw.to_owned()), template.clone());
        self.by_template.insert(template.clone(), raw.to_owned());
        template
    }
}

fn collect_literals(value: &Value, key: Option<&str>, out: &mut HashSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                collect_literals(v, Some(k), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_literals(item, key, out);
            }
        }
        Value::String(s) if !s.contains("{{") => {
            if key.is_some_and(|k| REQUEST_ID_KEYS.contains(&k)) {
                out.insert(s.clone());
            }
            if key == Some("name")
                && let Some((_, revision)) = s.split_once('@')
            {
                out.insert(revision.to_owned());
            }
        }
        _ => {}
    }
}

/// Normalises `value` in place as the response of step `step`: walks object keys in
/// sorted order, templates ids by key and replaces timestamps by `{{time}}`.
pub fn normalize(value: &mut Value, registry: &mut Registry, step: &str) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<String> = map.keys().cloned().collect();
            keys.sort();
            for key in keys {
                if let Some(child) = map.get_mut(&key) {
                    normalize_field(&key, child, registry, step);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                normalize(item, registry, step);
            }
        }
        _ => {}
    }
}

fn normalize_field(key: &str, value: &mut Value, registry: &mut Registry, step: &str) {
    if TIME_KEYS.contains(&key) && is_timestamp(value) {
        *value = Value::String("{{time}}".to_owned());
        return;
    }
    if key == "nextPageToken" && value.as_str().is_some_and(is_rfc3339) {
        *value = Value::String("{{time}}".to_owned());
        return;
    }
    let kind = match key {
        "messageId" | "message_id" => Some(IdKind::Message),
        "ackId" => Some(IdKind::Ack),
        "revisionId" | "firstRevisionId" | "lastRevisionId" | "googclient_schemarevisionid" => {
            Some(IdKind::Revision)
        }
        _ => None,
    };
    if let Some(kind) = kind
        && let Value::String(raw) = value
    {
        *raw = registry.template(kind, raw, step);
        return;
    }
    if key == "messageIds"
        && let Value::Array(items) = value
    {
        for item in items {
            if let Value::String(raw) = item {
                *raw = registry.template(IdKind::Message, raw, step);
            }
        }
        return;
    }
    if key == "name"
        && let Value::String(name) = value
    {
        if let Some((base, revision)) = name.split_once('@') {
            let template = registry.template(IdKind::Revision, revision, step);
            *name = format!("{base}@{template}");
        }
        return;
    }
    normalize(value, registry, step);
}

/// An RFC 3339 string, or an object with only `seconds` / `nanos` keys.
fn is_timestamp(value: &Value) -> bool {
    match value {
        Value::String(s) => is_rfc3339(s),
        Value::Object(map) => map.keys().all(|k| k == "seconds" || k == "nanos"),
        _ => false,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|part| part.len() == range.len() && part.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

/// Replaces every occurrence of `origin` inside any string by `{{pushOrigin}}`.
pub fn replace_origin(value: &mut Value, origin: &str) {
    match value {
        Value::String(s) if s.contains(origin) => {
            *s = s.replace(origin, "{{pushOrigin}}");
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_origin(v, origin)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_origin(v, origin)),
        _ => {}
    }
}

/// Compact JSON with object keys sorted everywhere.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339() {
        assert!(is_rfc3339("2024-01-02T03:04:05Z"));
        assert!(is_rfc3339("2024-01-02T03:04:05.123456789Z"));
        assert!(is_rfc3339("2024-01-02T03:04:05+01:00"));
        assert!(!is_rfc3339("2024-01-02"));
        assert!(!is_rfc3339("projects/p/topics/t"));
    }

    #[test]
    fn templates_by_key_in_sorted_order() {
        let mut registry = Registry::default();
        let mut v = json!({"receivedMessages": [
            {"message": {"messageId": "7", "publishTime": "2024-01-02T03:04:05Z"}, "ackId": "a1"},
            {"message": {"messageId": "8", "publishTime": {"seconds": "1"}}, "ackId": "a2"}
        ]});
        normalize(&mut v, &mut registry, "pull");
        assert_eq!(
            v,
            json!({"receivedMessages": [
                {"message": {"messageId": "{{messageId:pull}}", "publishTime": "{{time}}"}, "ackId": "{{ackId:pull}}"},
                {"message": {"messageId": "{{messageId:pull#2}}", "publishTime": "{{time}}"}, "ackId": "{{ackId:pull#2}}"}
            ]})
        );
        assert_eq!(registry.resolve("{{ackId:pull#2}}"), Some("a2"));
        let mut again = json!({"messageIds": ["8"]});
        normalize(&mut again, &mut registry, "later");
        assert_eq!(again, json!({"messageIds": ["{{messageId:pull#2}}"]}));
    }
}
