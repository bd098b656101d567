//! Span names, attribute keys, attribute values and event names of the trace
//! contract (`tracing.md` sections 2 and 3).
//!
//! These strings are what makes a Baton trace line up with the traces of
//! Google's official Pub/Sub clients, so they are spelled exactly as the
//! official clients spell them. Use the constants instead of literals so a typo
//! cannot silently split a trace view.

use std::fmt;

// ---------------------------------------------------------------------------
// Fixed span names
// ---------------------------------------------------------------------------

/// Name of the INTERNAL child of a `create` span that covers the time spent
/// waiting for publisher flow control.
pub const PUBLISHER_FLOW_CONTROL_SPAN: &str = "publisher flow control";

/// Name of the INTERNAL child of a `create` span that covers the time the
/// message waits in its publish batch.
pub const PUBLISHER_BATCHING_SPAN: &str = "publisher batching";

/// Name of the INTERNAL child of a `subscribe` span that covers the time spent
/// waiting for subscriber flow control.
pub const SUBSCRIBER_CONCURRENCY_CONTROL_SPAN: &str = "subscriber concurrency control";

/// Name of the INTERNAL child of a `subscribe` span that covers the time the
/// message is held by the scheduler (ordering keys).
pub const SUBSCRIBER_SCHEDULER_SPAN: &str = "subscriber scheduler";

// ---------------------------------------------------------------------------
// Operations (span name suffixes and `messaging.operation` values)
// ---------------------------------------------------------------------------

/// Operation of the per-message PRODUCER span: suffix of `"{topic-id} create"`
/// and value of [`MESSAGING_OPERATION`] on it.
pub const OPERATION_CREATE: &str = "create";

/// Operation of the per-RPC publish span: suffix of `"{topic-id} publish"` and
/// value of [`MESSAGING_OPERATION`] on it.
pub const OPERATION_PUBLISH: &str = "publish";

/// Operation of the per-delivery CONSUMER span: suffix of
/// `"{subscription-id} subscribe"`.
pub const OPERATION_SUBSCRIBE: &str = "subscribe";

/// Operation of the user's handler span: suffix of `"{subscription-id} process"`.
pub const OPERATION_PROCESS: &str = "process";

/// Operation of an Acknowledge RPC span: suffix of `"{subscription-id} ack"`,
/// value of [`MESSAGING_OPERATION`] and of the link attribute
/// [`LINK_OPERATION_NAME`].
pub const OPERATION_ACK: &str = "ack";

/// Operation of a nack (ModifyAckDeadline with deadline 0) RPC span: suffix of
/// `"{subscription-id} nack"`, value of [`MESSAGING_OPERATION`] and of the link
/// attribute [`LINK_OPERATION_NAME`].
pub const OPERATION_NACK: &str = "nack";

/// Operation of a ModifyAckDeadline RPC span (receipt or lease extension):
/// suffix of `"{subscription-id} modack"`, value of the operation attribute
/// and of the link attribute [`LINK_OPERATION_NAME`].
pub const OPERATION_MODACK: &str = "modack";

// ---------------------------------------------------------------------------
// Attribute keys and fixed values
// ---------------------------------------------------------------------------

/// Attribute key naming the messaging system; always [`MESSAGING_SYSTEM_VALUE`].
pub const MESSAGING_SYSTEM: &str = "messaging.system";

/// Value of [`MESSAGING_SYSTEM`] for Pub/Sub.
pub const MESSAGING_SYSTEM_VALUE: &str = "gcp_pubsub";

/// Attribute key for the short topic id (publisher spans) or short
/// subscription id (subscriber spans); see [`short_id`].
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";

/// Attribute key for the Google Cloud project id of the topic/subscription.
pub const GCP_PROJECT_ID: &str = "gcp.project_id";

/// Attribute key for the operation (`create`, `publish`, `ack`, `nack`,
/// `modack`); see the `OPERATION_*` constants.
pub const MESSAGING_OPERATION: &str = "messaging.operation";

/// Attribute key for the function that produced the span (informational).
pub const CODE_FUNCTION: &str = "code.function";

/// Attribute key for the message payload size in bytes (the real data length).
pub const MESSAGING_MESSAGE_BODY_SIZE: &str = "messaging.message.body.size";

/// Attribute key for the server-assigned message id (set on `create` once the
/// publish succeeds, and on `subscribe`).
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";

/// Attribute key for the ordering key; always set on `create` and `subscribe`,
/// possibly to the empty string.
pub const MESSAGING_GCP_PUBSUB_ORDERING_KEY: &str = "messaging.gcp_pubsub.message.ordering_key";

/// Attribute key for the number of messages in a publish/ack/nack/modack RPC.
pub const MESSAGING_BATCH_MESSAGE_COUNT: &str = "messaging.batch.message_count";

/// Attribute key for the ack id of a delivery (on `subscribe`).
pub const MESSAGING_GCP_PUBSUB_ACK_ID: &str = "messaging.gcp_pubsub.message.ack_id";

/// Attribute key (bool) telling whether the subscription has exactly-once
/// delivery enabled (on `subscribe`).
pub const MESSAGING_GCP_PUBSUB_EXACTLY_ONCE_DELIVERY: &str =
    "messaging.gcp_pubsub.message.exactly_once_delivery";

/// Attribute key for the delivery attempt counter (on `subscribe`; 0 when the
/// subscription has no dead-letter policy, as the official clients report).
pub const MESSAGING_GCP_PUBSUB_DELIVERY_ATTEMPT: &str =
    "messaging.gcp_pubsub.message.delivery_attempt";

/// Attribute key set on `subscribe` when it ends: [`RESULT_ACKED`],
/// [`RESULT_NACKED`] or [`RESULT_EXPIRED`].
pub const MESSAGING_GCP_PUBSUB_RESULT: &str = "messaging.gcp_pubsub.result";

/// Value of [`MESSAGING_GCP_PUBSUB_RESULT`] when the message was acked.
pub const RESULT_ACKED: &str = "acked";

/// Value of [`MESSAGING_GCP_PUBSUB_RESULT`] when the message was nacked.
pub const RESULT_NACKED: &str = "nacked";

/// Value of [`MESSAGING_GCP_PUBSUB_RESULT`] when the lease expired.
pub const RESULT_EXPIRED: &str = "expired";

/// Attribute key on `modack` spans: the new ack deadline in seconds.
pub const MESSAGING_GCP_PUBSUB_ACK_DEADLINE: &str = "messaging.gcp_pubsub.message.ack_deadline";

/// Attribute key (bool) on `modack` spans: `true` for the modack sent on
/// receipt, `false` for lease extensions.
pub const MESSAGING_GCP_PUBSUB_IS_RECEIPT_MODACK: &str = "messaging.gcp_pubsub.is_receipt_modack";

/// Attribute key on the links from a `subscribe` span to the settle RPC spans
/// (`modack` | `ack` | `nack`). The official Python client also puts this key
/// (instead of [`MESSAGING_OPERATION`]) on its `modack` spans.
pub const LINK_OPERATION_NAME: &str = "messaging.operation.name";

// ---------------------------------------------------------------------------
// Event names
// ---------------------------------------------------------------------------

/// Event on `create` when the message is handed to the publish RPC.
pub const EVENT_PUBLISH_START: &str = "publish start";
/// Event on `create` when the publish RPC returned.
pub const EVENT_PUBLISH_END: &str = "publish end";
/// Event on `subscribe` when a modack RPC covering it starts.
pub const EVENT_MODACK_START: &str = "modack start";
/// Event on `subscribe` when a modack RPC covering it ends.
pub const EVENT_MODACK_END: &str = "modack end";
/// Event on `subscribe` when the ack RPC covering it starts.
pub const EVENT_ACK_START: &str = "ack start";
/// Event on `subscribe` when the ack RPC covering it ends.
pub const EVENT_ACK_END: &str = "ack end";
/// Event on `subscribe` when the nack RPC covering it starts.
pub const EVENT_NACK_START: &str = "nack start";
/// Event on `subscribe` when the nack RPC covering it ends.
pub const EVENT_NACK_END: &str = "nack end";
/// Event on `process` when the handler acked the message.
pub const EVENT_ACK_CALLED: &str = "ack called";
/// Event on `process` when the handler nacked the message.
pub const EVENT_NACK_CALLED: &str = "nack called";
/// Event on `process` when the lease expired before the handler settled.
pub const EVENT_EXPIRED: &str = "expired";

// ---------------------------------------------------------------------------
// Per-resource span names
// ---------------------------------------------------------------------------

/// Returns the short id of a resource: the last `/`-separated segment.
///
/// Span names and [`MESSAGING_DESTINATION_NAME`] use the short id, never the
/// full resource name. A string without `/` is returned unchanged.
///
/// ```
/// assert_eq!(baton_trace_context::short_id("projects/p/topics/orders"), "orders");
/// assert_eq!(baton_trace_context::short_id("orders"), "orders");
/// ```
#[must_use]
pub fn short_id(name: &str) -> &str {
    name.rsplit_once('/').map_or(name, |(_, id)| id)
}

fn span_name(resource: &str, operation: &str) -> String {
    format!("{} {operation}", short_id(resource))
}

/// Name of the per-message PRODUCER span: `"{topic-id} create"`.
///
/// Accepts a short topic id or a full topic name (shortened with [`short_id`]).
///
/// ```
/// assert_eq!(baton_trace_context::create_span_name("projects/p/topics/orders"), "orders create");
/// ```
#[must_use]
pub fn create_span_name(topic: &str) -> String {
    span_name(topic, OPERATION_CREATE)
}

/// Name of the per-Publish-RPC CLIENT span: `"{topic-id} publish"`.
///
/// Accepts a short topic id or a full topic name.
///
/// ```
/// assert_eq!(baton_trace_context::publish_span_name("orders"), "orders publish");
/// ```
#[must_use]
pub fn publish_span_name(topic: &str) -> String {
    span_name(topic, OPERATION_PUBLISH)
}

/// Name of the per-delivery CONSUMER span: `"{subscription-id} subscribe"`.
///
/// Accepts a short subscription id or a full subscription name.
///
/// ```
/// assert_eq!(
///     baton_trace_context::subscribe_span_name("projects/p/subscriptions/worker"),
///     "worker subscribe"
/// );
/// ```
#[must_use]
pub fn subscribe_span_name(subscription: &str) -> String {
    span_name(subscription, OPERATION_SUBSCRIBE)
}

/// Name of the INTERNAL span around the user's handler:
/// `"{subscription-id} process"`.
///
/// Accepts a short subscription id or a full subscription name.
#[must_use]
pub fn process_span_name(subscription: &str) -> String {
    span_name(subscription, OPERATION_PROCESS)
}

/// Name of a settle RPC CLIENT span: `"{subscription-id} ack"`, `"... nack"`
/// or `"... modack"`.
///
/// Accepts a short subscription id or a full subscription name.
///
/// ```
/// use baton_trace_context::{settle_span_name, SettleKind};
/// assert_eq!(settle_span_name("worker", SettleKind::Modack), "worker modack");
/// ```
#[must_use]
pub fn settle_span_name(subscription: &str, kind: SettleKind) -> String {
    span_name(subscription, kind.operation())
}

/// The three kinds of settle RPC a subscriber sends, each traced as a root
/// CLIENT span linked to the `subscribe` spans it settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettleKind {
    /// Acknowledge RPC.
    Ack,
    /// ModifyAckDeadline with a zero deadline (negative acknowledgement).
    Nack,
    /// ModifyAckDeadline with a positive deadline (receipt or lease extension).
    Modack,
}

impl SettleKind {
    /// The operation string: `"ack"`, `"nack"` or `"modack"`; used as span name
    /// suffix, operation attribute value and [`LINK_OPERATION_NAME`] value.
    #[must_use]
    pub const fn operation(self) -> &'static str {
        match self {
            Self::Ack => OPERATION_ACK,
            Self::Nack => OPERATION_NACK,
            Self::Modack => OPERATION_MODACK,
        }
    }

    /// The event added to each settled `subscribe` span when the RPC starts
    /// (`"ack start"`, `"nack start"`, `"modack start"`).
    #[must_use]
    pub const fn start_event(self) -> &'static str {
        match self {
            Self::Ack => EVENT_ACK_START,
            Self::Nack => EVENT_NACK_START,
            Self::Modack => EVENT_MODACK_START,
        }
    }

    /// The event added to each settled `subscribe` span when the RPC ends
    /// (`"ack end"`, `"nack end"`, `"modack end"`).
    #[must_use]
    pub const fn end_event(self) -> &'static str {
        match self {
            Self::Ack => EVENT_ACK_END,
            Self::Nack => EVENT_NACK_END,
            Self::Modack => EVENT_MODACK_END,
        }
    }
}

impl fmt::Display for SettleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids() {
        assert_eq!(short_id("projects/p/topics/t"), "t");
        assert_eq!(short_id("projects/p/subscriptions/s-1"), "s-1");
        assert_eq!(short_id("t"), "t");
        assert_eq!(short_id(""), "");
    }

    #[test]
    fn span_names_match_reference_shape() {
        assert_eq!(create_span_name("t"), "t create");
        assert_eq!(create_span_name("projects/p/topics/t"), "t create");
        assert_eq!(publish_span_name("projects/p/topics/t"), "t publish");
        assert_eq!(subscribe_span_name("s"), "s subscribe");
        assert_eq!(process_span_name("projects/p/subscriptions/s"), "s process");
        assert_eq!(settle_span_name("s", SettleKind::Ack), "s ack");
        assert_eq!(settle_span_name("s", SettleKind::Nack), "s nack");
        assert_eq!(settle_span_name("s", SettleKind::Modack), "s modack");
    }

    #[test]
    fn settle_kind_strings() {
        assert_eq!(SettleKind::Ack.to_string(), "ack");
        assert_eq!(SettleKind::Nack.start_event(), "nack start");
        assert_eq!(SettleKind::Modack.end_event(), "modack end");
    }
}
