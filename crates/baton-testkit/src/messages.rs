//! Resource names, messages to publish, and what tests read out of received
//! messages.

use std::collections::HashMap;

use baton_proto::pubsub::{PubsubMessage, PullRequest, ReceivedMessage};
use baton_proto::wkt;

/// Project of the resources a [`TestServer`](crate::server::TestServer)'s
/// helpers create.
pub const PROJECT: &str = "baton-tests";

/// `projects/{PROJECT}/topics/{id}`.
pub fn topic_name(id: &str) -> String {
    topic_in(PROJECT, id)
}

/// `projects/{PROJECT}/subscriptions/{id}`.
pub fn subscription_name(id: &str) -> String {
    subscription_in(PROJECT, id)
}

/// `projects/{PROJECT}/snapshots/{id}`.
pub fn snapshot_name(id: &str) -> String {
    format!("projects/{PROJECT}/snapshots/{id}")
}

/// `projects/{PROJECT}`.
pub fn project() -> String {
    format!("projects/{PROJECT}")
}

/// `projects/{project}/topics/{id}`, for suites with a project of their own.
pub fn topic_in(project: &str, id: &str) -> String {
    format!("projects/{project}/topics/{id}")
}

/// `projects/{project}/subscriptions/{id}`, for suites with a project of
/// their own.
pub fn subscription_in(project: &str, id: &str) -> String {
    format!("projects/{project}/subscriptions/{id}")
}

/// A message with `data` (as UTF-8) and nothing else.
pub fn msg(data: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A message with `data` and the ordering key `key`.
pub fn keyed(data: &str, key: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        ordering_key: key.to_string(),
        ..Default::default()
    }
}

/// A message with `data` and `attributes`.
pub fn with_attributes(data: &str, attributes: &[(&str, &str)]) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

/// Size of a message as the service counts it against its limits (see
/// `PubsubMessage::payload_size`), as a function for `map`.
pub fn payload_size(message: &PubsubMessage) -> usize {
    message.payload_size()
}

/// A protobuf duration of whole seconds.
pub fn secs(seconds: i64) -> wkt::Duration {
    wkt::Duration { seconds, nanos: 0 }
}

/// An update mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<wkt::FieldMask> {
    Some(wkt::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// A Pull request (`return_immediately` is deprecated in the API, which is
/// why this builds it in one place).
#[allow(deprecated)]
pub fn pull_request(subscription: &str, max: i32, return_immediately: bool) -> PullRequest {
    PullRequest {
        subscription: subscription.to_string(),
        return_immediately,
        max_messages: max,
    }
}

/// The data of a received message as text.
pub fn data(received: &ReceivedMessage) -> String {
    let message = received.message.as_ref().expect("message present");
    String::from_utf8(message.data.clone()).expect("utf-8 data")
}

/// The data of received messages as text, in order.
pub fn datas(received: &[ReceivedMessage]) -> Vec<String> {
    received.iter().map(data).collect()
}

/// The message id of a received message.
pub fn message_id(received: &ReceivedMessage) -> String {
    received
        .message
        .as_ref()
        .expect("message present")
        .message_id
        .clone()
}

/// The ack ids of received messages, in order.
pub fn ack_ids(received: &[ReceivedMessage]) -> Vec<String> {
    received.iter().map(|m| m.ack_id.clone()).collect()
}

/// Messages grouped by ordering key, each group in the order given.
pub fn by_ordering_key(messages: &[PubsubMessage]) -> HashMap<String, Vec<PubsubMessage>> {
    let mut groups: HashMap<String, Vec<PubsubMessage>> = HashMap::new();
    for message in messages {
        groups
            .entry(message.ordering_key.clone())
            .or_default()
            .push(message.clone());
    }
    groups
}
