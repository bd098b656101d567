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

/// The table.
pub const DEVIATIONS: &[Deviation] = &[
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
