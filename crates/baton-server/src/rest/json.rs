//! Turning an HTTP request into a request message, the way Google's REST
//! mapping does: the body (proto3 JSON, read leniently where Google's parser
//! is lenient), the query parameters a route accepts, and the field the path
//! binds, merged into one JSON object that the generated serde code reads.

use std::collections::HashSet;
use std::sync::LazyLock;

use baton_broker::BrokerError;
use baton_proto::pubsub::SchemaView;
use serde_json::{Map, Value};

/// How a route reads the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// The body is ignored.
    None,
    /// The body is the whole request message.
    All,
    /// The body is this field of the request message.
    Field(&'static str),
}

/// A query parameter a route accepts, by its camelCase name (its
/// snake_case spelling is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    /// An int32 field (a value that is not one is ignored, like an absent one).
    Int(&'static str),
    /// A string field.
    Text(&'static str),
    /// `view`: a `SchemaView` by name or number.
    SchemaView,
    /// `updateMask` (that spelling only): comma-separated field paths, used
    /// when the body has none.
    UpdateMask,
}

/// The error the service answers for a body it cannot read.
pub(crate) fn invalid_payload() -> BrokerError {
    BrokerError::invalid("Payload isn't valid for request.")
}

/// JSON names (camelCase and snake_case) of every bool field in our protos.
/// Google's JSON parser accepts `"true"`/`"false"` strings for them, and
/// clients rely on it; the generated serde code alone would not.
static BOOL_FIELDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    use prost::Message;
    use prost_types::field_descriptor_proto::Type;
    let mut names = HashSet::new();
    let Ok(set) = prost_types::FileDescriptorSet::decode(baton_proto::FILE_DESCRIPTOR_SET) else {
        return names;
    };
    fn walk(message: &prost_types::DescriptorProto, names: &mut HashSet<String>) {
        for field in &message.field {
            if field.r#type() == Type::Bool {
                names.insert(field.name().to_string());
                names.insert(field.json_name().to_string());
            }
        }
        for nested in &message.nested_type {
            walk(nested, names);
        }
    }
    for file in &set.file {
        for message in &file.message_type {
            walk(message, &mut names);
        }
    }
    names
});

/// Fields whose JSON objects are string maps: their keys are user data.
const MAP_FIELDS: &[&str] = &["labels", "attributes", "tags"];

/// Brings lenient-but-valid proto3 JSON into the shape the generated serde
/// code reads: `null` means "not set", and bool fields may be strings.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (key, v) in map.iter_mut() {
                if let Value::String(text) = v {
                    if BOOL_FIELDS.contains(key.as_str()) {
                        match text.as_str() {
                            "true" => *v = Value::Bool(true),
                            "false" => *v = Value::Bool(false),
                            _ => {}
                        }
                    }
                } else if !MAP_FIELDS.contains(&key.as_str()) {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// The body as a JSON value: empty or `null` is the empty message.
fn parse_body(body: &[u8]) -> Result<Value, BrokerError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(Value::Object(Map::new()));
    }
    let mut value: Value = serde_json::from_slice(trimmed).map_err(|_| invalid_payload())?;
    normalize(&mut value);
    Ok(value)
}

/// `ackDeadlineSeconds` -> `ack_deadline_seconds` (per path segment).
pub(crate) fn camel_to_snake(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A proto3-JSON field mask (`"a,bC"`) in the shape of the generated
/// `FieldMask` type, with snake_case paths.
fn field_mask(text: &str) -> Value {
    let paths: Vec<Value> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Value::String(camel_to_snake(p)))
        .collect();
    serde_json::json!({ "paths": paths })
}

/// The value of query parameter `key` (or its snake_case spelling).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The value of `key`, else of its snake_case spelling.
fn query_param_either(query: Option<&str>, key: &str) -> Option<String> {
    query_param(query, key).or_else(|| query_param(query, &camel_to_snake(key)))
}

/// The `view` query parameter: an enum name (or number) of `SchemaView`.
fn schema_view(text: &str) -> Result<Value, BrokerError> {
    SchemaView::from_str_name(text)
        .or_else(|| {
            text.parse::<i32>()
                .ok()
                .and_then(|n| SchemaView::try_from(n).ok())
        })
        .map(|view| Value::from(view.as_str_name()))
        .ok_or_else(|| {
            BrokerError::invalid(format!(
                "Invalid value at 'view' (type.googleapis.com/google.pubsub.v1.SchemaView), \"{text}\""
            ))
        })
}

/// Sets `path` (`topic.name`) in `object`, making the objects on the way.
fn set_field(object: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), BrokerError> {
    match path.split_once('.') {
        None => {
            object.insert(path.to_string(), value);
            Ok(())
        }
        Some((head, rest)) => {
            let inner = object
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match inner {
                Value::Object(inner) => set_field(inner, rest, value),
                _ => Err(invalid_payload()),
            }
        }
    }
}

/// Everything an HTTP request says, as one request message in JSON.
pub(crate) fn request_json(
    body_rule: Body,
    body: &[u8],
    query: Option<&str>,
    accepted: &[Query],
    binding: Option<(&'static str, String)>,
) -> Result<Value, BrokerError> {
    let mut request = match body_rule {
        Body::None => Map::new(),
        Body::All => match parse_body(body)? {
            Value::Object(map) => map,
            _ => return Err(invalid_payload()),
        },
        Body::Field(field) => {
            let mut map = Map::new();
            map.insert(field.to_string(), parse_body(body)?);
            map
        }
    };
    // A mask in the body is proto3 JSON's string form.
    let body_mask = request
        .remove("updateMask")
        .or_else(|| request.remove("update_mask"));
    match body_mask {
        None => {}
        Some(Value::String(text)) => {
            request.insert("updateMask".into(), field_mask(&text));
        }
        Some(_) => return Err(invalid_payload()),
    }
    for param in accepted {
        match *param {
            // The integer parameters (page sizes) are int32 fields.
            Query::Int(key) => {
                if let Some(n) = query_param_either(query, key).and_then(|v| v.parse::<i32>().ok())
                {
                    request.insert(key.into(), Value::from(n));
                }
            }
            Query::Text(key) => {
                if let Some(text) = query_param_either(query, key) {
                    request.insert(key.into(), Value::from(text));
                }
            }
            Query::SchemaView => {
                if let Some(text) = query_param(query, "view") {
                    request.insert("view".into(), schema_view(&text)?);
                }
            }
            Query::UpdateMask => {
                if !request.contains_key("updateMask")
                    && let Some(text) = query_param(query, "updateMask")
                {
                    request.insert("updateMask".into(), field_mask(&text));
                }
            }
        }
    }
    if let Some((field, value)) = binding {
        set_field(&mut request, field, Value::from(value))?;
    }
    Ok(Value::Object(request))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn masks_become_snake_case() {
        assert_eq!(camel_to_snake("ackDeadlineSeconds"), "ack_deadline_seconds");
        assert_eq!(camel_to_snake("push_config"), "push_config");
        assert_eq!(
            field_mask("ackDeadlineSeconds, labels"),
            serde_json::json!({"paths": ["ack_deadline_seconds", "labels"]})
        );
    }

    #[test]
    fn empty_bodies_are_empty_messages_and_others_must_be_objects() {
        for body in [&b""[..], b" null "] {
            assert_eq!(
                request_json(Body::All, body, None, &[], None).unwrap(),
                serde_json::json!({})
            );
        }
        assert!(request_json(Body::All, b"[]", None, &[], None).is_err());
        assert!(request_json(Body::All, b"{", None, &[], None).is_err());
    }

    #[test]
    fn path_query_and_body_merge_and_the_path_wins() {
        let json = request_json(
            Body::All,
            br#"{"topic": {"name": "other", "labels": {"a": null}}, "updateMask": "labels"}"#,
            Some("updateMask=kmsKeyName&pageSize=x"),
            &[Query::UpdateMask, Query::Int("pageSize")],
            Some(("topic.name", "projects/p/topics/t".into())),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "topic": {"name": "projects/p/topics/t", "labels": {"a": null}},
                "updateMask": {"paths": ["labels"]}
            })
        );
    }

    #[test]
    fn bool_strings_and_query_spellings() {
        let json = request_json(
            Body::All,
            br#"{"returnImmediately": "true", "maxMessages": 3}"#,
            Some("page_size=5&view=FULL"),
            &[Query::Int("pageSize"), Query::SchemaView],
            None,
        )
        .unwrap();
        assert_eq!(json["returnImmediately"], true);
        assert_eq!(json["pageSize"], 5);
        assert_eq!(json["view"], "FULL");
    }

    #[test]
    fn query_spellings_and_ranges_as_before() {
        let page = |query| {
            request_json(
                Body::None,
                b"",
                Some(query),
                &[Query::Int("pageSize")],
                None,
            )
            .unwrap()
        };
        assert_eq!(
            page("pageSize=3000000000"),
            serde_json::json!({}),
            "not an int32"
        );
        assert_eq!(
            page("page_size=5&pageSize=2")["pageSize"],
            2,
            "camelCase first"
        );
        assert_eq!(page("pageSize=x&page_size=5"), serde_json::json!({}));
        let mask = request_json(
            Body::All,
            b"{}",
            Some("update_mask=labels"),
            &[Query::UpdateMask],
            None,
        )
        .unwrap();
        assert_eq!(mask, serde_json::json!({}), "only updateMask names a mask");
    }

    #[test]
    fn views_by_name_or_number() {
        assert_eq!(schema_view("BASIC").unwrap(), "BASIC");
        assert_eq!(schema_view("2").unwrap(), "FULL");
        assert_eq!(
            schema_view("NOPE").unwrap_err().message,
            "Invalid value at 'view' (type.googleapis.com/google.pubsub.v1.SchemaView), \"NOPE\""
        );
    }

    #[test]
    fn a_mask_must_be_a_string() {
        assert!(
            request_json(
                Body::All,
                br#"{"updateMask": {"paths": []}}"#,
                None,
                &[],
                None
            )
            .is_err()
        );
    }
}
