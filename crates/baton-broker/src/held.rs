//! A published message as the broker holds it.
//!
//! With the disk store, a message's payload (`data`, nearly all of a
//! message's bytes) stays on disk: backlogs, topic logs, snapshots and
//! retained sets hold the message without it, and the payload is read back
//! (from the store's cache of recent payloads, or the file) only when the
//! message goes out. A deep backlog then costs memory for what the broker
//! decides with (ids, attributes, ordering keys, sizes), not for its bytes.
//! Without a disk store the payload stays with the message.

use baton_proto::pubsub::PubsubMessage;
use baton_proto::wkt::Timestamp;
use prost::Message;
use prost::bytes::BufMut;

use crate::published::{Attributes, PublishedMessage};

/// A published message, with or without its payload; see the module docs.
/// Its trace context may be held apart from its attribute map
/// ([`PublishedMessage`]), so its attributes are read through
/// [`Self::attributes`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMessage {
    message: PublishedMessage,
    /// The size of the whole message (payload included), which flow
    /// control, backlog bytes and the stats count.
    size: usize,
    /// The payload is in the disk store, not in `message`.
    on_disk: bool,
}

impl HeldMessage {
    /// A message with its payload.
    pub fn new(message: impl Into<PublishedMessage>) -> Self {
        let message = message.into();
        Self {
            size: message.payload_size(),
            message,
            on_disk: false,
        }
    }

    /// The message without its payload, and the payload, which the disk
    /// store keeps: nothing is copied.
    pub(crate) fn split(message: impl Into<PublishedMessage>) -> (Self, Vec<u8>) {
        let mut message = message.into();
        let size = message.payload_size();
        let data = std::mem::take(&mut message.message.data);
        let held = Self {
            message,
            size,
            on_disk: !data.is_empty(),
        };
        (held, data)
    }

    /// A message read back from the disk store without its payload; `size`
    /// is that of the whole message as published.
    pub(crate) fn stored(message: PublishedMessage, size: usize) -> Self {
        let on_disk = size > message.payload_size();
        Self {
            message,
            size,
            on_disk,
        }
    }

    /// The size of the whole message, payload included, as the service
    /// counts it (data, attribute keys and values, ordering key).
    pub fn payload_size(&self) -> usize {
        self.size
    }

    /// The size of the payload (`data`) alone, whether it is here or on
    /// disk.
    pub fn data_len(&self) -> usize {
        if !self.on_disk {
            return self.message.message.data.len();
        }
        // Held without its data, the message counts only the rest.
        self.size.saturating_sub(self.message.payload_size())
    }

    /// Whether the payload must be read back from the disk store.
    pub fn payload_on_disk(&self) -> bool {
        self.on_disk
    }

    /// The payload, or nothing when it is on disk.
    pub fn data(&self) -> &[u8] {
        &self.message.message.data
    }

    /// The message's attributes, its trace context among them.
    pub fn attributes(&self) -> Attributes<'_> {
        self.message.attributes()
    }

    /// The id the broker gave the message.
    pub fn message_id(&self) -> &str {
        &self.message.message.message_id
    }

    /// When the message was published.
    pub fn publish_time(&self) -> Option<&Timestamp> {
        self.message.message.publish_time.as_ref()
    }

    /// The message's ordering key, empty for none.
    pub fn ordering_key(&self) -> &str {
        &self.message.message.ordering_key
    }

    /// The message as it goes out: with its payload if it has it here,
    /// otherwise without (the caller fills it in from the disk store).
    pub fn to_message(&self) -> PubsubMessage {
        self.message.to_message()
    }

    /// Writes the message as the standard `PubsubMessage` (without its
    /// payload when the disk store has that), without tag or length.
    pub fn encode_raw(&self, buf: &mut impl BufMut) {
        self.message.encode_raw(buf);
    }

    /// The length [`Self::encode_raw`] writes.
    pub fn encoded_len(&self) -> usize {
        self.message.encoded_len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_split_message_keeps_its_size_and_the_rest() {
        let message = PubsubMessage {
            data: vec![7; 1000],
            attributes: [("k".to_string(), "v".to_string())].into(),
            ordering_key: "key".into(),
            message_id: "12".into(),
            ..Default::default()
        };
        let held = HeldMessage::new(message.clone());
        assert_eq!(held.payload_size(), message.payload_size());
        assert!(!held.payload_on_disk());
        assert_eq!(held.data_len(), 1000);
        let (hollow, data) = HeldMessage::split(message.clone());
        assert_eq!(data, message.data);
        assert!(hollow.data().is_empty());
        assert!(hollow.payload_on_disk());
        assert_eq!(hollow.payload_size(), message.payload_size());
        assert_eq!(hollow.data_len(), 1000);
        assert_eq!(hollow.attributes().to_map(), message.attributes);
        assert_eq!(hollow.ordering_key(), "key");
        // Attributes only: nothing to read back.
        let bare = HeldMessage::new(PubsubMessage {
            attributes: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        });
        assert!(!HeldMessage::split(bare.to_message()).0.payload_on_disk());
        let restored = HeldMessage::stored(hollow.to_message().into(), message.payload_size());
        assert!(restored.payload_on_disk());
        assert_eq!(restored.data_len(), 1000);
    }

    #[test]
    fn a_trace_context_held_apart_counts_reads_and_stores_as_an_attribute() {
        use crate::published::TRACEPARENT_ATTRIBUTE;
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let message = PubsubMessage {
            data: vec![7; 10],
            attributes: [
                (TRACEPARENT_ATTRIBUTE.to_string(), traceparent.to_string()),
                ("k".to_string(), "v".to_string()),
            ]
            .into(),
            message_id: "3".into(),
            ..Default::default()
        };
        let (held, _) = HeldMessage::split(message.clone());
        assert_eq!(held.payload_size(), message.payload_size());
        assert_eq!(held.data_len(), 10);
        assert_eq!(
            held.attributes().get(TRACEPARENT_ATTRIBUTE),
            Some(traceparent)
        );
        assert_eq!(held.attributes().len(), 2);
        let mut without_data = message.clone();
        without_data.data.clear();
        assert_eq!(held.to_message(), without_data);
        // As the disk store writes and reads it.
        let mut encoded = Vec::new();
        held.encode_raw(&mut encoded);
        assert_eq!(encoded.len(), held.encoded_len());
        let read = PublishedMessage::decode(encoded.as_slice()).unwrap();
        assert!(read.traceparent.is_some());
        assert_eq!(HeldMessage::stored(read, held.payload_size()), held);
    }
}
