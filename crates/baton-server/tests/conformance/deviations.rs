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

const REASON_FILTER: &str = "a malformed filter is INVALID_ARGUMENT with a message that says what is wrong, as the real service answers; the emulator answers UNKNOWN `Application error processing RPC`";
const REASON_FILTER_UPDATE: &str = "a subscription's filter is immutable after creation (pubsub-api.md); the real service rejects the update mask path as not mutable, the emulator says updating it is unsupported in the emulator";
const REASON_SNAP_DELETED: &str = "a subscription whose topic was deleted has no topic to snapshot; Baton answers FAILED_PRECONDITION where the emulator snapshots the old topic";
const REASON_TOPIC_LABELS: &str = "the real service updates a topic's labels through UpdateTopic; the emulator rejects the `labels` mask path (later reads then show the updated topic)";
const REASON_EXPIRATION: &str = "the real service updates a subscription's expiration_policy; the emulator says updating it is unsupported in the emulator (later reads show the update)";
const REASON_TTL_MINIMUM: &str = "an expiration policy ttl under 1 day is INVALID_ARGUMENT, the real service's minimum (Baton enforces expiration policies, so a 1 s ttl would delete the subscription mid-program); the emulator accepts it, so later reads do not show the subscription";
fn ttl_too_small(passed: &str) -> Value {
    invalid_argument(format!(
        "The value for expiration_policy.ttl is too small. You passed {passed} in the request, but the minimum value is 86400s."
    ))
}
const REASON_DETACH: &str = "DetachSubscription is implemented (the emulator answers UNIMPLEMENTED); a detached subscription leaves its topic's subscription list";
const REASON_SUB_LABELS: &str = "the real service updates a subscription's labels and expiration_policy, and rejects a filter update as not mutable; the emulator rejects labels as an unknown field and says the other two are unsupported (later answers then carry the labels and expiration policy)";
const REASON_SNAP_LABELS: &str = "a snapshot keeps the labels it was created with, as in the real service; the emulator drops them";
const REASON_UPDATE_SNAPSHOT: &str =
    "UpdateSnapshot is implemented (the emulator answers UNIMPLEMENTED)";
const REASON_PROTOBUF: &str = "Protocol Buffer schemas are implemented (the emulator answers UNIMPLEMENTED `Protocol buffer support not implemented in emulator`); later schema lists include the proto schema";
const REASON_IAM: &str = "IAM policies are stored and answered like the real service (the emulator answers UNIMPLEMENTED); a missing resource is NOT_FOUND and a malformed one INVALID_ARGUMENT with the resource name without the `:verb`";

const REASON_PUSH_ONE_KEY: &str = "a Publish request whose messages carry different ordering keys (here one keyed message and unkeyed ones) is FAILED_PRECONDITION, as in the real service; the emulator accepts it, so nothing is published and nothing is pushed (the push envelope of every message shape is covered by tests/push.rs)";

/// Our answer to a Publish mixing ordering keys (gRPC FAILED_PRECONDITION).
fn one_ordering_key_error() -> Value {
    json!({"error": {"code": 9, "status": "FAILED_PRECONDITION", "message": "In a single publish request, all messages must have no ordering key or they must all have the same ordering key."}})
}

const REASON_MIXED_KEYS: &str = "a Publish request whose messages carry different ordering keys is FAILED_PRECONDITION in the real service (pubsub-api.md section 3: one ordering key per request); the emulator accepts it";

fn mixed_keys_error() -> Value {
    ours(
        r#"{"error":{"code":9,"message":"In a single publish request, all messages must have no ordering key or they must all have the same ordering key.","status":"FAILED_PRECONDITION"}}"#,
    )
}

/// subscription-create-validation / list as recorded, without the
/// subscription whose 60 s ttl Baton refuses.
const SUBSCRIPTIONS_WITHOUT_EXPIRATION_SHORT: &str = r#"{"body":{"subscriptions":[{"ackDeadlineSeconds":10,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":5},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/dead-letter","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":5},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/dead-letter-default","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/orders","maxDeliveryAttempts":5},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/dead-letter-same","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":600,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/deadline-max","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":9,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/deadline-nine","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/deadline-ten","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/deadline-zero","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/defaults","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"detached":true,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/detached","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":30,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":7},"enableExactlyOnceDelivery":true,"enableMessageOrdering":true,"expirationPolicy":{"ttl":{"seconds":"86400"}},"filter":"attributes.kind = \"ping\"","labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/everything","pushConfig":{},"retainAckedMessages":true,"retryPolicy":{"maximumBackoff":{"seconds":"30"},"minimumBackoff":{"seconds":"2"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"enableExactlyOnceDelivery":true,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/exactly-once","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"expirationPolicy":{},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/expiration-never","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"expirationPolicy":{"ttl":{"seconds":"86400"}},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/expiration-ttl","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"filter":"attributes.kind = \"ping\"","messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/filtered","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"labels":{"env":"test"},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/labelled","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"enableMessageOrdering":true,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/ordering","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/push","pushConfig":{"pushEndpoint":"{{pushOrigin}}/hook"},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/push-attributes","pushConfig":{"attributes":{"x-goog-version":"v1"},"pushEndpoint":"{{pushOrigin}}/hook"},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/push-attributes-only","pushConfig":{"attributes":{"x-goog-version":"v1"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/push-oidc","pushConfig":{"authenticationMethod":"oidcToken","oidcToken":{"audience":"aud","serviceAccountEmail":"svc@example.test"},"pushEndpoint":"{{pushOrigin}}/hook"},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/retain-acked","pushConfig":{},"retainAckedMessages":true,"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"600"},"name":"projects/fireside-pubsub-oracle/subscriptions/retention-min","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/retry-empty","pushConfig":{},"retryPolicy":{"maximumBackoff":{"seconds":"600"},"minimumBackoff":{"seconds":"10"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/retry-policy","pushConfig":{},"retryPolicy":{"maximumBackoff":{"seconds":"60"},"minimumBackoff":{"seconds":"1"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}]}}"#;

/// The table.
pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        program: "subscription-create-validation",
        step: "expiration-short",
        reason: REASON_TTL_MINIMUM,
        expected: || ttl_too_small("60s"),
    },
    Deviation {
        program: "subscription-create-validation",
        step: "list",
        reason: REASON_TTL_MINIMUM,
        expected: || ours(SUBSCRIPTIONS_WITHOUT_EXPIRATION_SHORT),
    },
    Deviation {
        program: "detached-and-expiration",
        step: "expiring-short",
        reason: REASON_TTL_MINIMUM,
        expected: || ttl_too_small("1s"),
    },
    Deviation {
        program: "detached-and-expiration",
        step: "pull-expiring-short",
        reason: REASON_TTL_MINIMUM,
        expected: || {
            ours(
                r#"{"error":{"code":5,"message":"Subscription does not exist","status":"NOT_FOUND"}}"#,
            )
        },
    },
    Deviation {
        program: "detached-and-expiration",
        step: "topic-subscriptions",
        reason: REASON_TTL_MINIMUM,
        expected: || {
            ours(
                r#"{"body":{"subscriptions":["projects/fireside-pubsub-oracle/subscriptions/attached","projects/fireside-pubsub-oracle/subscriptions/expiring","projects/fireside-pubsub-oracle/subscriptions/expiring-zero","projects/fireside-pubsub-oracle/subscriptions/never"]}}"#,
            )
        },
    },
    Deviation {
        program: "publish-validation",
        step: "batch",
        reason: REASON_MIXED_KEYS,
        expected: mixed_keys_error,
    },
    Deviation {
        program: "publish-http",
        step: "publish-batch",
        reason: REASON_MIXED_KEYS,
        expected: || {
            ours(
                r#"{"body":{"error":{"code":400,"message":"In a single publish request, all messages must have no ordering key or they must all have the same ordering key.","status":"FAILED_PRECONDITION"}},"contentType":"application/json","status":400}"#,
            )
        },
    },
    Deviation {
        program: "ordering-keys",
        step: "publish",
        reason: REASON_MIXED_KEYS,
        expected: mixed_keys_error,
    },
    Deviation {
        program: "ordering-keys",
        step: "publish-more",
        reason: REASON_MIXED_KEYS,
        expected: mixed_keys_error,
    },
    Deviation {
        program: "filters",
        step: "invalid",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid filter: expected a string in double quotes at position 17, found end of filter","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "filters",
        step: "unknown-function",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid filter: unknown function `nope` at position 0; the only function is `hasPrefix`","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "filters",
        step: "data-filter",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid filter: unknown field `data` at position 0; only `attributes` can be filtered on","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "filters",
        step: "ordering-key-filter",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid filter: unknown field `orderingKey` at position 0; only `attributes` can be filtered on","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "filters",
        step: "update-filter",
        reason: REASON_FILTER_UPDATE,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid update_mask provided in the UpdateSubscriptionRequest: the filter field in the Subscription is not mutable.","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-create-validation",
        step: "filter-invalid",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid filter: expected a string in double quotes at position 17, found end of filter","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-create-validation",
        step: "filter-unknown-function",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid filter: unknown function `nope` at position 0; the only function is `hasPrefix`","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "dead-letter-and-filter-http",
        step: "sub-bad-filter",
        reason: REASON_FILTER,
        expected: || {
            ours(
                r#"{"body":{"error":{"code":400,"message":"Invalid filter: expected a string in double quotes at position 17, found end of filter","status":"INVALID_ARGUMENT"}},"contentType":"application/json","status":400}"#,
            )
        },
    },
    Deviation {
        program: "dead-letter-and-filter-http",
        step: "snapshot-of-deleted-topic-sub",
        reason: REASON_SNAP_DELETED,
        expected: || {
            ours(
                r#"{"body":{"error":{"code":400,"message":"The subscription's topic has been deleted.","status":"FAILED_PRECONDITION"}},"contentType":"application/json","status":400}"#,
            )
        },
    },
    Deviation {
        program: "topic-fields-http",
        step: "patch-mask-in-body-and-query",
        reason: REASON_TOPIC_LABELS,
        expected: || {
            ours(
                r#"{"body":{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k","messageRetentionDuration":"1800s","messageStoragePolicy":{"allowedPersistenceRegions":["us-central1","europe-west1"]},"name":"projects/fireside-pubsub-oracle/topics/full"},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "topic-fields-http",
        step: "patch-schema",
        reason: REASON_TOPIC_LABELS,
        expected: || {
            ours(
                r#"{"body":{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k","messageRetentionDuration":"1800s","messageStoragePolicy":{"allowedPersistenceRegions":["us-central1","europe-west1"]},"name":"projects/fireside-pubsub-oracle/topics/full","schemaSettings":{"encoding":"BINARY","schema":"projects/fireside-pubsub-oracle/schemas/readings"}},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "topic-fields-http",
        step: "get-after-patch",
        reason: REASON_TOPIC_LABELS,
        expected: || {
            ours(
                r#"{"body":{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k","messageRetentionDuration":"1800s","messageStoragePolicy":{"allowedPersistenceRegions":["us-central1","europe-west1"]},"name":"projects/fireside-pubsub-oracle/topics/full","schemaSettings":{"encoding":"BINARY","schema":"projects/fireside-pubsub-oracle/schemas/readings"}},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "detached-and-expiration",
        step: "update-expiration-never",
        reason: REASON_EXPIRATION,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":10,"expirationPolicy":{},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/expiring","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "detached-and-expiration",
        step: "update-expiration-ttl",
        reason: REASON_EXPIRATION,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":10,"expirationPolicy":{"ttl":{"seconds":"172800"}},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/never","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "detached-and-expiration",
        step: "list",
        reason: REASON_EXPIRATION,
        expected: || {
            ours(
                r#"{"body":{"subscriptions":[{"ackDeadlineSeconds":10,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/attached","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"detached":true,"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/detached","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"expirationPolicy":{},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/expiring","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"expirationPolicy":{"ttl":{}},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/expiring-zero","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"},{"ackDeadlineSeconds":10,"expirationPolicy":{"ttl":{"seconds":"172800"}},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/never","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"}]}}"#,
            )
        },
    },
    Deviation {
        program: "topic-children",
        step: "detach",
        reason: REASON_DETACH,
        expected: || ours(r#"{"body":{}}"#),
    },
    Deviation {
        program: "topic-children",
        step: "detach-missing",
        reason: REASON_DETACH,
        expected: || {
            ours(
                r#"{"error":{"code":5,"message":"Subscription does not exist","status":"NOT_FOUND"}}"#,
            )
        },
    },
    Deviation {
        program: "topic-children",
        step: "subscriptions-http",
        reason: REASON_DETACH,
        expected: || {
            ours(
                r#"{"body":{"subscriptions":["projects/fireside-pubsub-oracle/subscriptions/sub-b","projects/fireside-pubsub-oracle/subscriptions/sub-c"]},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "topic-children",
        step: "detach-http",
        reason: REASON_DETACH,
        expected: || ours(r#"{"body":{},"contentType":"application/json","status":200}"#),
    },
    Deviation {
        program: "topic-children",
        step: "subscriptions-after-delete",
        reason: REASON_DETACH,
        expected: || {
            ours(
                r#"{"body":{"subscriptions":["projects/fireside-pubsub-oracle/subscriptions/sub-c"]}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "labels",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "push-config",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{"attributes":{"x-goog-version":"v1"},"pushEndpoint":"{{pushOrigin}}/hook"},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "push-config-clear",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "retain-acked",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"604800"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retainAckedMessages":true,"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "retention",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retainAckedMessages":true,"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "filter",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"Invalid update_mask provided in the UpdateSubscriptionRequest: the filter field in the Subscription is not mutable.","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "expiration",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retainAckedMessages":true,"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "dead-letter",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retainAckedMessages":true,"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "retry",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retainAckedMessages":true,"retryPolicy":{"maximumBackoff":{"seconds":"9"},"minimumBackoff":{"seconds":"3"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "exactly-once",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":20,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"enableExactlyOnceDelivery":true,"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retainAckedMessages":true,"retryPolicy":{"maximumBackoff":{"seconds":"9"},"minimumBackoff":{"seconds":"3"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "multiple",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":45,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"enableExactlyOnceDelivery":true,"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retryPolicy":{"maximumBackoff":{"seconds":"9"},"minimumBackoff":{"seconds":"3"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "get",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":45,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"enableExactlyOnceDelivery":true,"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retryPolicy":{"maximumBackoff":{"seconds":"9"},"minimumBackoff":{"seconds":"3"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "get-after-modify",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":45,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"enableExactlyOnceDelivery":true,"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{"authenticationMethod":"oidcToken","oidcToken":{"audience":"aud","serviceAccountEmail":"svc@example.test"},"pushEndpoint":"{{pushOrigin}}/hook3"},"retryPolicy":{"maximumBackoff":{"seconds":"9"},"minimumBackoff":{"seconds":"3"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "subscription-update",
        step: "get-final",
        reason: REASON_SUB_LABELS,
        expected: || {
            ours(
                r#"{"body":{"ackDeadlineSeconds":45,"deadLetterPolicy":{"deadLetterTopic":"projects/fireside-pubsub-oracle/topics/dead-letters","maxDeliveryAttempts":6},"enableExactlyOnceDelivery":true,"expirationPolicy":{"ttl":{"seconds":"86400"}},"labels":{"a":"b"},"messageRetentionDuration":{"seconds":"3600"},"name":"projects/fireside-pubsub-oracle/subscriptions/sub-a","pushConfig":{},"retryPolicy":{"maximumBackoff":{"seconds":"9"},"minimumBackoff":{"seconds":"3"}},"topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "create",
        reason: REASON_SNAP_LABELS,
        expected: || {
            ours(
                r#"{"body":{"expireTime":"{{time}}","labels":{"k":"v"},"name":"projects/fireside-pubsub-oracle/snapshots/snap-a","topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "get",
        reason: REASON_SNAP_LABELS,
        expected: || {
            ours(
                r#"{"body":{"expireTime":"{{time}}","labels":{"k":"v"},"name":"projects/fireside-pubsub-oracle/snapshots/snap-a","topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "list",
        reason: REASON_SNAP_LABELS,
        expected: || {
            ours(
                r#"{"body":{"snapshots":[{"expireTime":"{{time}}","labels":{"k":"v"},"name":"projects/fireside-pubsub-oracle/snapshots/snap-a","topic":"projects/fireside-pubsub-oracle/topics/orders"}]}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "list-page-1",
        reason: REASON_SNAP_LABELS,
        expected: || {
            ours(
                r#"{"body":{"nextPageToken":"projects/fireside-pubsub-oracle/snapshots/snap-b","snapshots":[{"expireTime":"{{time}}","labels":{"k":"v"},"name":"projects/fireside-pubsub-oracle/snapshots/snap-a","topic":"projects/fireside-pubsub-oracle/topics/orders"}]}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "update",
        reason: REASON_UPDATE_SNAPSHOT,
        expected: || {
            ours(
                r#"{"body":{"expireTime":"{{time}}","labels":{"k":"w"},"name":"projects/fireside-pubsub-oracle/snapshots/snap-a","topic":"projects/fireside-pubsub-oracle/topics/orders"}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "patch-http",
        reason: REASON_UPDATE_SNAPSHOT,
        expected: || {
            ours(
                r#"{"body":{"expireTime":"{{time}}","labels":{"a":"b"},"name":"projects/fireside-pubsub-oracle/snapshots/snap-http","topic":"projects/fireside-pubsub-oracle/topics/orders"},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "schemas-avro",
        step: "create-protobuf",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"body":{"definition":"syntax = \"proto3\"; message M { string a = 1; }","name":"projects/fireside-pubsub-oracle/schemas/proto","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-protobuf}}","type":"PROTOCOL_BUFFER"}}"#,
            )
        },
    },
    Deviation {
        program: "schemas-avro",
        step: "list",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"body":{"schemas":[{"definition":"\"string\"","name":"projects/fireside-pubsub-oracle/schemas/primitive","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-primitive}}","type":"AVRO"},{"definition":"syntax = \"proto3\"; message M { string a = 1; }","name":"projects/fireside-pubsub-oracle/schemas/proto","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-protobuf}}","type":"PROTOCOL_BUFFER"},{"definition":"{\"type\":\"record\",\"name\":\"Reading\",\"fields\":[{\"name\":\"sensor\",\"type\":\"string\"},{\"name\":\"value\",\"type\":\"double\"}]}","name":"projects/fireside-pubsub-oracle/schemas/readings","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create}}","type":"AVRO"}]}}"#,
            )
        },
    },
    Deviation {
        program: "schemas-avro",
        step: "list-full",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"body":{"schemas":[{"definition":"\"string\"","name":"projects/fireside-pubsub-oracle/schemas/primitive","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-primitive}}","type":"AVRO"},{"definition":"syntax = \"proto3\"; message M { string a = 1; }","name":"projects/fireside-pubsub-oracle/schemas/proto","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-protobuf}}","type":"PROTOCOL_BUFFER"},{"definition":"{\"type\":\"record\",\"name\":\"Reading\",\"fields\":[{\"name\":\"sensor\",\"type\":\"string\"},{\"name\":\"value\",\"type\":\"double\"}]}","name":"projects/fireside-pubsub-oracle/schemas/readings","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create}}","type":"AVRO"}]}}"#,
            )
        },
    },
    Deviation {
        program: "schemas-avro",
        step: "list-page-1",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"body":{"nextPageToken":"projects/fireside-pubsub-oracle/schemas/proto","schemas":[{"definition":"\"string\"","name":"projects/fireside-pubsub-oracle/schemas/primitive","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-primitive}}","type":"AVRO"}]}}"#,
            )
        },
    },
    Deviation {
        program: "schemas-avro",
        step: "validate-protobuf",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"error":{"code":3,"message":"The schema definition must contain exactly one top-level message type, but it contains 0.","status":"INVALID_ARGUMENT"}}"#,
            )
        },
    },
    Deviation {
        program: "schemas-avro",
        step: "list-after-delete",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"body":{"schemas":[{"definition":"\"string\"","name":"projects/fireside-pubsub-oracle/schemas/primitive","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-primitive}}","type":"AVRO"},{"definition":"syntax = \"proto3\"; message M { string a = 1; }","name":"projects/fireside-pubsub-oracle/schemas/proto","revisionCreateTime":"{{time}}","revisionId":"{{revisionId:create-protobuf}}","type":"PROTOCOL_BUFFER"}]}}"#,
            )
        },
    },
    Deviation {
        program: "schemas-http",
        step: "create-protobuf",
        reason: REASON_PROTOBUF,
        expected: || {
            ours(
                r#"{"body":{"error":{"code":400,"message":"The schema definition must contain exactly one top-level message type, but it contains 0.","status":"INVALID_ARGUMENT"}},"contentType":"application/json","status":400}"#,
            )
        },
    },
    Deviation {
        program: "iam",
        step: "get-topic",
        reason: REASON_IAM,
        expected: || ours(r#"{"body":{"etag":"ACAB"}}"#),
    },
    Deviation {
        program: "iam",
        step: "set-topic",
        reason: REASON_IAM,
        expected: || {
            ours(
                r#"{"body":{"bindings":[{"members":["user:a@example.test"],"role":"roles/pubsub.publisher"}],"etag":"AAAAAAAAAAE=","version":1}}"#,
            )
        },
    },
    Deviation {
        program: "iam",
        step: "test-topic",
        reason: REASON_IAM,
        expected: || ours(r#"{"body":{"permissions":["pubsub.topics.publish"]}}"#),
    },
    Deviation {
        program: "iam",
        step: "get-subscription",
        reason: REASON_IAM,
        expected: || ours(r#"{"body":{"etag":"ACAB"}}"#),
    },
    Deviation {
        program: "iam",
        step: "get-missing",
        reason: REASON_IAM,
        expected: || {
            ours(
                r#"{"error":{"code":5,"message":"Resource not found (resource=missing-topic).","status":"NOT_FOUND"}}"#,
            )
        },
    },
    Deviation {
        program: "iam",
        step: "get-topic-http",
        reason: REASON_IAM,
        expected: || {
            ours(
                r#"{"body":{"bindings":[{"members":["user:a@example.test"],"role":"roles/pubsub.publisher"}],"etag":"AAAAAAAAAAE=","version":1},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "iam",
        step: "set-topic-http",
        reason: REASON_IAM,
        expected: || {
            ours(
                r#"{"body":{"etag":"AAAAAAAAAAI="},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "iam",
        step: "test-topic-http",
        reason: REASON_IAM,
        expected: || {
            ours(
                r#"{"body":{"permissions":["pubsub.topics.publish"]},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "iam",
        step: "get-subscription-http",
        reason: REASON_IAM,
        expected: || {
            ours(r#"{"body":{"etag":"ACAB"},"contentType":"application/json","status":200}"#)
        },
    },
    Deviation {
        program: "iam",
        step: "get-schema-http",
        reason: REASON_IAM,
        expected: || {
            ours(
                r#"{"body":{"error":{"code":400,"message":"Invalid [schemas] name: (name=projects/fireside-pubsub-oracle/schemas/x)","status":"INVALID_ARGUMENT"}},"contentType":"application/json","status":400}"#,
            )
        },
    },
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
        expected: || {
            ours(
                r#"{"body":{"labels":{"env":"prod"},"name":"projects/fireside-pubsub-oracle/topics/events"}}"#,
            )
        },
    },
    Deviation {
        program: "topic-crud",
        step: "update-retention",
        reason: LABELS_REASON,
        expected: || {
            ours(
                r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":{"seconds":"1200"},"name":"projects/fireside-pubsub-oracle/topics/events"}}"#,
            )
        },
    },
    Deviation {
        program: "topic-crud",
        step: "update-kms",
        reason: LABELS_REASON,
        expected: || {
            ours(
                r#"{"body":{"kmsKeyName":"projects/p/locations/l/keyRings/r/cryptoKeys/k2","labels":{"env":"prod"},"messageRetentionDuration":{"seconds":"1200"},"name":"projects/fireside-pubsub-oracle/topics/events"}}"#,
            )
        },
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
        expected: || {
            ours(
                r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":"1200s","name":"projects/fireside-pubsub-oracle/topics/events"},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "topic-crud-http",
        step: "patch-query-mask",
        reason: LABELS_REASON,
        expected: || {
            ours(
                r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":"1800s","name":"projects/fireside-pubsub-oracle/topics/events"},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "topic-crud-http",
        step: "get-after-patch",
        reason: LABELS_REASON,
        expected: || {
            ours(
                r#"{"body":{"labels":{"env":"prod"},"messageRetentionDuration":"1800s","name":"projects/fireside-pubsub-oracle/topics/events"},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "topic-crud-http",
        step: "list-after",
        reason: LABELS_REASON,
        expected: || {
            ours(
                r#"{"body":{"topics":[{"labels":{"env":"prod"},"messageRetentionDuration":"1800s","name":"projects/fireside-pubsub-oracle/topics/events"},{"name":"projects/fireside-pubsub-oracle/topics/nobody"}]},"contentType":"application/json","status":200}"#,
            )
        },
    },
    Deviation {
        program: "ordering-keys",
        step: "pull-single-after-nack",
        reason: "on an ordered subscription a nacked message is redelivered before the later messages of its key (publish order); the emulator delivers d3 before the nacked d2",
        expected: || {
            ours(
                r#"{"body":{"receivedMessages":[{"ackId":"{{ackId:pull-single-after-nack}}","message":{"data":"ZDI=","messageId":"{{messageId:publish-single-key#2}}","orderingKey":"d","publishTime":"{{time}}"}},{"ackId":"{{ackId:pull-single-after-nack#2}}","message":{"data":"ZDM=","messageId":"{{messageId:publish-single-key#3}}","orderingKey":"d","publishTime":"{{time}}"}}]}}"#,
            )
        },
    },
    Deviation {
        program: "snapshots",
        step: "pull-sub-b",
        reason: "a snapshot keeps the messages unacked when it was taken; seeking another subscription of the topic to it delivers them, where the emulator delivers nothing",
        expected: || {
            ours(
                r#"{"body":{"receivedMessages":[{"ackId":"{{ackId:pull-sub-b}}","message":{"data":"b25l","messageId":"{{messageId:publish-1}}","publishTime":"{{time}}"}},{"ackId":"{{ackId:pull-sub-b#2}}","message":{"data":"dHdv","messageId":"{{messageId:publish-2}}","publishTime":"{{time}}"}}]}}"#,
            )
        },
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
    Deviation {
        program: "push-delivery",
        step: "publish",
        reason: REASON_PUSH_ONE_KEY,
        expected: one_ordering_key_error,
    },
    Deviation {
        program: "push-delivery",
        step: "pushed",
        reason: REASON_PUSH_ONE_KEY,
        expected: || ours(r#"{"atLeastSatisfied":false,"distinct":[]}"#),
    },
    Deviation {
        program: "push-envelope",
        step: "publish-shapes",
        reason: REASON_PUSH_ONE_KEY,
        expected: one_ordering_key_error,
    },
    Deviation {
        program: "push-envelope",
        step: "pushed-shapes",
        reason: REASON_PUSH_ONE_KEY,
        expected: || ours(r#"{"atLeastSatisfied":false,"distinct":[]}"#),
    },
];

/// gRPC Publish steps whose messages mix ordering keys. The real service
/// rejects such a request (pubsub-api.md section 3: a Publish request carries
/// one ordering key); the runner checks that answer (the step's deviation
/// entry) and then publishes the same messages one key per request so the
/// rest of the program still tests delivery.
const SPLIT_PUBLISH_STEPS: &[(&str, &str)] = &[
    ("ordering-keys", "publish"),
    ("ordering-keys", "publish-more"),
];

/// Whether `program`/`step` is one of [`SPLIT_PUBLISH_STEPS`].
pub fn publishes_split_by_ordering_key(program: &str, step: &str) -> bool {
    SPLIT_PUBLISH_STEPS.contains(&(program, step))
}

/// Our expected answer for a step, when it is a deviation.
pub fn find(program: &str, step: &str) -> Option<&'static Deviation> {
    DEVIATIONS
        .iter()
        .find(|d| d.program == program && d.step == step)
}
