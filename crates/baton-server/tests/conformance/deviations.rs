//! Steps where Baton deliberately answers differently from the emulator.
//!
//! For these `(program, step)` pairs the runner compares our answer with the answer
//! given here instead of the recorded one. Every entry is listed, with its reason, in
//! `docs/compatibility.md`.

use serde_json::{Value, json};

/// The messages of the real service's limit errors, in ONE place so they can be
/// adjusted. `{n}` is the offending number and `{key}` the attribute key.
pub mod limit_messages {
    /// A Publish request over 10,000,000 bytes whose messages are each within the
    /// message limit (no corpus step sends one).
    #[allow(dead_code)]
    pub const REQUEST_TOO_LARGE: &str = "Request payload size exceeds the limit: 10000000 bytes.";
    /// A Publish request with more than 1,000 messages (no corpus step sends one).
    #[allow(dead_code)]
    pub const TOO_MANY_MESSAGES: &str = "The value for message_count is too large. You passed {n} in the request, but the maximum value is 1000.";
    /// One message over 10 MB (data + attributes + ordering key). Checked before the
    /// request total, so a request holding one such message gets this answer.
    pub const MESSAGE_TOO_LARGE: &str = "The value for message_size is too large. You passed {n} in the request, but the maximum value is 10000000.";
    /// A message with more than 100 attributes.
    pub const TOO_MANY_ATTRIBUTES: &str = "The value for attributes is too large. You passed {n} in the request, but the maximum value is 100.";
    /// An attribute key over 256 bytes.
    pub const ATTRIBUTE_KEY_TOO_LONG: &str = "The attribute \"{key}\" in the request has a key that is too long. The length is {n} characters, but the maximum allowed is 256. Refer to https://cloud.google.com/pubsub/quotas for more information.";
    /// An attribute value over 1024 bytes.
    pub const ATTRIBUTE_VALUE_TOO_LONG: &str = "The attribute \"{key}\" in the request has a value that is too long. The length is {n} characters, but the maximum allowed is 1024. Refer to https://cloud.google.com/pubsub/quotas for more information.";
    /// An ordering key over 1024 bytes.
    pub const ORDERING_KEY_TOO_LONG: &str = "The value for ordering_key_size is too large. You passed {n} in the request, but the maximum value is 1024.";

    /// Fills `{n}` and `{key}`.
    pub fn fill(template: &str, n: usize, key: &str) -> String {
        template
            .replace("{n}", &n.to_string())
            .replace("{key}", key)
    }
}

/// One deviation.
#[derive(Debug)]
pub struct Deviation {
    pub program: &'static str,
    pub step: &'static str,
    /// Why we differ (also in docs/compatibility.md).
    pub reason: &'static str,
    /// Our expected response, in the corpus's normalised shape.
    pub expected: fn() -> Value,
}

fn invalid_argument(message: String) -> Value {
    json!({"error": {"code": 3, "status": "INVALID_ARGUMENT", "message": message}})
}

/// Our answer written as the corpus writes answers (normalised JSON text).
fn ours(text: &str) -> Value {
    serde_json::from_str(text).expect("deviation JSON in the table is valid")
}

const TOPIC_EVENTS_UPDATED: &str = r#"{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k2","labels":{"env":"prod"},"messageRetentionDuration":{"seconds":"1200"},"messageStoragePolicy":{"allowedPersistenceRegions":["europe-west1"]},"name":"projects/fireside-pubsub-oracle/topics/events"}"#;

const LABELS_REASON: &str = "the real service updates a topic's labels, kms_key_name and message_storage_policy through UpdateTopic; the emulator rejects those update_mask paths as unknown fields (later reads then show the updated topic)";

/// The table.
pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        program: "topic-names",
        step: "no-project",
        reason: "a name with an empty project id (`projects//topics/abc`) is not a valid resource name for the real service; the emulator creates it",
        expected: || {
            invalid_argument("Invalid [topics] name: (name=projects//topics/abc)".to_string())
        },
    },
    Deviation {
        program: "topic-crud",
        step: "update-labels",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"labels":{"env":"prod"},"name":"projects/fireside-pubsub-oracle/topics/events"}}"#),
    },
    Deviation {
        program: "topic-crud",
        step: "update-retention",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":{"seconds":"1200"},"name":"projects/fireside-pubsub-oracle/topics/events"}}"#),
    },
    Deviation {
        program: "topic-crud",
        step: "update-kms",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k2","labels":{"env":"prod"},"messageRetentionDuration":{"seconds":"1200"},"name":"projects/fireside-pubsub-oracle/topics/events"}}"#),
    },
    Deviation {
        program: "topic-crud",
        step: "update-policy",
        reason: LABELS_REASON,
        expected: || serde_json::json!({"body": ours(TOPIC_EVENTS_UPDATED)}),
    },
    Deviation {
        program: "topic-crud",
        step: "get-after-update",
        reason: LABELS_REASON,
        expected: || serde_json::json!({"body": ours(TOPIC_EVENTS_UPDATED)}),
    },
    Deviation {
        program: "topic-crud",
        step: "list-after-delete",
        reason: LABELS_REASON,
        expected: || {
            serde_json::json!({"body": {"topics": [
                ours(r#"{"messageRetentionDuration":{"seconds":"600"},"name":"projects/fireside-pubsub-oracle/topics/audit"}"#),
                ours(TOPIC_EVENTS_UPDATED),
                ours(r#"{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k","name":"projects/fireside-pubsub-oracle/topics/kms"}"#),
                ours(r#"{"messageStoragePolicy":{"allowedPersistenceRegions":["us-central1"]},"name":"projects/fireside-pubsub-oracle/topics/policy"}"#),
            ]}})
        },
    },
    Deviation {
        program: "topic-crud-http",
        step: "patch-labels",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":"1200s","name":"projects/fireside-pubsub-oracle/topics/events"},"contentType":"application/json","status":200}"#),
    },
    Deviation {
        program: "topic-crud-http",
        step: "patch-query-mask",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":"1800s","name":"projects/fireside-pubsub-oracle/topics/events"},"contentType":"application/json","status":200}"#),
    },
    Deviation {
        program: "topic-crud-http",
        step: "get-after-patch",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":"1800s","name":"projects/fireside-pubsub-oracle/topics/events"},"contentType":"application/json","status":200}"#),
    },
    Deviation {
        program: "topic-crud-http",
        step: "list-after",
        reason: LABELS_REASON,
        expected: || ours(r#"{"body":{"topics":[{"labels":{"env":"prod"},"messageRetentionDuration":"1800s","name":"projects/fireside-pubsub-oracle/topics/events"},{"name":"projects/fireside-pubsub-oracle/topics/nobody"}]},"contentType":"application/json","status":200}"#),
    },
    Deviation {
        program: "ordering-keys",
        step: "pull-single-after-nack",
        reason: "on an ordered subscription a nacked message is redelivered before the later messages of its key (publish order); the emulator delivers d3 before the nacked d2",
        expected: || ours(r#"{"body":{"receivedMessages":[{"ackId":"{{ackId:pull-single-after-nack}}","message":{"data":"ZDI=","messageId":"{{messageId:publish-single-key#2}}","orderingKey":"d","publishTime":"{{time}}"}},{"ackId":"{{ackId:pull-single-after-nack#2}}","message":{"data":"ZDM=","messageId":"{{messageId:publish-single-key#3}}","orderingKey":"d","publishTime":"{{time}}"}}]}}"#),
    },
    Deviation {
        program: "snapshots",
        step: "pull-sub-b",
        reason: "a snapshot keeps the messages unacked when it was taken; seeking another subscription of the topic to it delivers them, where the emulator delivers nothing",
        expected: || ours(r#"{"body":{"receivedMessages":[{"ackId":"{{ackId:pull-sub-b}}","message":{"data":"b25l","messageId":"{{messageId:publish-1}}","publishTime":"{{time}}"}},{"ackId":"{{ackId:pull-sub-b#2}}","message":{"data":"dHdv","messageId":"{{messageId:publish-2}}","publishTime":"{{time}}"}}]}}"#),
    },
    Deviation {
        program: "publish-validation",
        step: "many-attributes",
        reason: "101 attributes: the real service allows at most 100 attributes per message; the emulator accepts more",
        expected: || {
            invalid_argument(limit_messages::fill(
                limit_messages::TOO_MANY_ATTRIBUTES,
                101,
                "",
            ))
        },
    },
    Deviation {
        program: "publish-validation",
        step: "long-attribute-key",
        reason: "a 257-byte attribute key: the real service allows at most 256 bytes; the emulator accepts it",
        expected: || {
            invalid_argument(limit_messages::fill(
                limit_messages::ATTRIBUTE_KEY_TOO_LONG,
                257,
                &"k".repeat(257),
            ))
        },
    },
    Deviation {
        program: "publish-validation",
        step: "long-attribute-value",
        reason: "a 1025-byte attribute value: the real service allows at most 1024 bytes; the emulator accepts it",
        expected: || {
            invalid_argument(limit_messages::fill(
                limit_messages::ATTRIBUTE_VALUE_TOO_LONG,
                1025,
                "k",
            ))
        },
    },
    Deviation {
        program: "publish-validation",
        step: "long-ordering-key",
        reason: "a 1025-byte ordering key: the real service allows at most 1 KB (1024 bytes); the emulator accepts it",
        expected: || {
            invalid_argument(limit_messages::fill(
                limit_messages::ORDERING_KEY_TOO_LONG,
                1025,
                "",
            ))
        },
    },
    Deviation {
        program: "publish-validation",
        step: "large-data",
        reason: "a message of 10,000,001 bytes: the real service allows at most 10 MB (10,000,000 bytes) per message and per Publish request; the emulator accepts it",
        expected: || {
            invalid_argument(limit_messages::fill(
                limit_messages::MESSAGE_TOO_LARGE,
                10_000_001,
                "",
            ))
        },
    },
];

/// Our expected answer for a step, when it is a deviation.
pub fn find(program: &str, step: &str) -> Option<&'static Deviation> {
    DEVIATIONS
        .iter()
        .find(|d| d.program == program && d.step == step)
}
