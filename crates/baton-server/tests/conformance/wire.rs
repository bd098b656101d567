//! The two JSON shapes of a gRPC message, and gRPC status names.
//!
//! The corpus records gRPC bodies the way the recording client (grpc-js with
//! proto-loader) renders them: `Duration` and `Timestamp` as `{seconds, nanos}` objects
//! (seconds as a decimal string, zero fields left out) and the name of the set member of
//! a oneof next to it (`"authenticationMethod": "oidcToken"`). `baton_proto`'s serde
//! impls follow the proto3 JSON mapping instead (`"600s"`, RFC 3339). These functions
//! translate between the two; everything else (camelCase names, base64 bytes, int64 as
//! strings, enums by name, default values left out) is the same in both.

use serde_json::{Map, Value};

/// `google.protobuf.Duration` fields of the pubsub protos (JSON names).
const DURATION_KEYS: &[&str] = &[
    "messageRetentionDuration",
    "topicMessageRetentionDuration",
    "minimumBackoff",
    "maximumBackoff",
    "ttl",
    "maxDuration",
];

/// `google.protobuf.Timestamp` fields of the pubsub protos (JSON names).
const TIMESTAMP_KEYS: &[&str] = &[
    "publishTime",
    "time",
    "expireTime",
    "revisionCreateTime",
    "minimumObjectCreateTime",
];

/// Map-typed fields: their keys are user data, never field names.
const MAP_KEYS: &[&str] = &["attributes", "labels"];

/// Oneof members that can appear in responses, and their oneof's JSON name
/// (proto-loader's `oneofs: true` adds `"<oneof>": "<member>"`).
const ONEOF_MEMBERS: &[(&str, &str)] = &[
    ("oidcToken", "authenticationMethod"),
    ("pubsubWrapper", "wrapper"),
    ("noWrapper", "wrapper"),
    ("textConfig", "outputFormat"),
    ("avroConfig", "outputFormat"),
    ("textFormat", "inputFormat"),
    ("avroFormat", "inputFormat"),
    ("pubsubAvroFormat", "inputFormat"),
    ("awsKinesis", "source"),
    ("cloudStorage", "source"),
    ("azureEventHubs", "source"),
    ("awsMsk", "source"),
    ("confluentCloud", "source"),
    ("javascriptUdf", "transform"),
];

/// Members of request oneofs, in field-number order. grpc-js encodes every member the
/// body sets and the server keeps the last one on the wire; pbjson refuses two members,
/// so all but the last are dropped here (SeekRequest `time` = 2, `snapshot` = 3).
const REQUEST_ONEOFS: &[&[&str]] = &[&["time", "snapshot"]];

/// Recorded (grpc-js) shape -> proto3 JSON shape, for request bodies.
pub fn to_proto_json(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for members in REQUEST_ONEOFS {
                let set: Vec<&str> = members
                    .iter()
                    .copied()
                    .filter(|m| map.contains_key(*m))
                    .collect();
                if let Some((_last, earlier)) = set.split_last() {
                    for member in earlier {
                        map.remove(*member);
                    }
                }
            }
            for (key, child) in map.iter_mut() {
                if MAP_KEYS.contains(&key.as_str()) {
                    continue;
                }
                if DURATION_KEYS.contains(&key.as_str()) && child.is_object() {
                    let (seconds, nanos) = seconds_nanos(child)?;
                    *child = serde_json::to_value(pbjson_types::Duration { seconds, nanos })
                        .map_err(|e| format!("{key}: {e}"))?;
                } else if TIMESTAMP_KEYS.contains(&key.as_str()) && child.is_object() {
                    let (seconds, nanos) = seconds_nanos(child)?;
                    *child = serde_json::to_value(pbjson_types::Timestamp { seconds, nanos })
                        .map_err(|e| format!("{key}: {e}"))?;
                } else {
                    to_proto_json(child)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                to_proto_json(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Proto3 JSON shape -> recorded (grpc-js) shape, for response bodies.
pub fn to_recorded_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if MAP_KEYS.contains(&key.as_str()) {
                    continue;
                }
                if DURATION_KEYS.contains(&key.as_str()) && child.is_string() {
                    if let Ok(d) = serde_json::from_value::<pbjson_types::Duration>(child.clone()) {
                        *child = seconds_nanos_object(d.seconds, d.nanos);
                    }
                } else if TIMESTAMP_KEYS.contains(&key.as_str()) && child.is_string() {
                    if let Ok(t) = serde_json::from_value::<pbjson_types::Timestamp>(child.clone())
                    {
                        *child = seconds_nanos_object(t.seconds, t.nanos);
                    }
                } else {
                    to_recorded_json(child);
                }
            }
            add_oneof_names(map);
        }
        Value::Array(items) => items.iter_mut().for_each(to_recorded_json),
        _ => {}
    }
}

fn add_oneof_names(map: &mut Map<String, Value>) {
    for (member, oneof) in ONEOF_MEMBERS {
        if map.contains_key(*member) && !map.contains_key(*oneof) {
            map.insert((*oneof).to_owned(), Value::String((*member).to_owned()));
        }
    }
}

fn seconds_nanos(value: &Value) -> Result<(i64, i32), String> {
    let seconds = match value.get("seconds") {
        None => 0,
        Some(Value::String(s)) => s.parse().map_err(|e| format!("seconds {s:?}: {e}"))?,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("seconds {n}"))?,
        Some(other) => return Err(format!("seconds {other}")),
    };
    let nanos = match value.get("nanos") {
        None => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("nanos {n}"))?,
        Some(Value::String(s)) => s.parse().map_err(|e| format!("nanos {s:?}: {e}"))?,
        Some(other) => return Err(format!("nanos {other}")),
    };
    Ok((seconds, nanos))
}

fn seconds_nanos_object(seconds: i64, nanos: i32) -> Value {
    let mut map = Map::new();
    if seconds != 0 {
        map.insert("seconds".to_owned(), Value::String(seconds.to_string()));
    }
    if nanos != 0 {
        map.insert("nanos".to_owned(), Value::from(nanos));
    }
    Value::Object(map)
}

/// The recorded shape of a proto Timestamp for a time in milliseconds since the epoch.
pub fn timestamp_from_millis(millis: i64) -> Value {
    let seconds = millis.div_euclid(1000);
    let nanos = i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    let mut map = Map::new();
    map.insert("seconds".to_owned(), Value::String(seconds.to_string()));
    map.insert("nanos".to_owned(), Value::from(nanos));
    Value::Object(map)
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `{code, status, message}` of a gRPC status.
pub fn status_json(status: &tonic::Status) -> Value {
    let mut map = Map::new();
    map.insert("code".to_owned(), Value::from(status.code() as i32));
    map.insert(
        "status".to_owned(),
        Value::String(code_name(status.code()).to_owned()),
    );
    map.insert(
        "message".to_owned(),
        Value::String(status.message().to_owned()),
    );
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_durations_and_timestamps() {
        let mut request = json!({"subscription": {"messageRetentionDuration": {"seconds": "600"},
            "retryPolicy": {"minimumBackoff": {"seconds": "1"}, "maximumBackoff": {}}},
            "time": {"seconds": "0"}});
        to_proto_json(&mut request).unwrap();
        let time = request["time"].take();
        assert!(
            time.as_str()
                .is_some_and(|t| t.starts_with("1970-01-01T00:00:00")),
            "{time}"
        );
        assert_eq!(
            request,
            json!({"subscription": {"messageRetentionDuration": "600s",
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "0s"}},
                "time": null})
        );
        let mut response = json!({"messageRetentionDuration": "600.500s",
            "pushConfig": {"oidcToken": {"audience": "a"}},
            "attributes": {"ttl": "1s"}});
        to_recorded_json(&mut response);
        assert_eq!(
            response,
            json!({"messageRetentionDuration": {"seconds": "600", "nanos": 500_000_000},
                "pushConfig": {"oidcToken": {"audience": "a"}, "authenticationMethod": "oidcToken"},
                "attributes": {"ttl": "1s"}})
        );
    }
}
