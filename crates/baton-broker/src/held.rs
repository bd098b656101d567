//! A published message as the broker holds it.
//!
//! With the disk store, a message's payload (`data`, nearly all of a
//! message's bytes) stays on disk: backlogs, topic logs, snapshots and
//! retained sets hold the message without it, and the payload is read back
//! (from the store's cache of recent payloads, or the file) only when the
//! message goes out. A deep backlog then costs memory for what the broker
//! decides with (ids, attributes, ordering keys, sizes), not for its bytes.
//! Without a disk store the payload stays with the message.

use std::ops::Deref;

use baton_proto::pubsub::PubsubMessage;

/// A published message, with or without its payload; see the module docs.
/// Reads as the [`PubsubMessage`] it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMessage {
    message: PubsubMessage,
    /// The size of the whole message (payload included), which flow
    /// control, backlog bytes and the stats count.
    size: usize,
    /// The payload is in the disk store, not in `message`.
    on_disk: bool,
}

impl HeldMessage {
    /// A message with its payload.
    pub fn new(message: PubsubMessage) -> Self {
        Self {
            size: message.payload_size(),
            message,
            on_disk: false,
        }
    }

    /// The message without its payload, and the payload, which the disk
    /// store keeps: nothing is copied.
    pub(crate) fn split(mut message: PubsubMessage) -> (Self, Vec<u8>) {
        let size = message.payload_size();
        let data = std::mem::take(&mut message.data);
        let held = Self {
            message,
            size,
            on_disk: !data.is_empty(),
        };
        (held, data)
    }

    /// A message read back from the disk store without its payload; `size`
    /// is that of the whole message as published.
    pub(crate) fn stored(message: PubsubMessage, size: usize) -> Self {
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
            return self.message.data.len();
        }
        // Held without its data, the message counts only the rest.
        self.size.saturating_sub(self.message.payload_size())
    }

    /// Whether the payload must be read back from the disk store.
    pub fn payload_on_disk(&self) -> bool {
        self.on_disk
    }

    /// The message as it goes out: with its payload if it has it here,
    /// otherwise without (the caller fills it in from the disk store).
    pub fn to_message(&self) -> PubsubMessage {
        self.message.clone()
    }
}

impl Deref for HeldMessage {
    type Target = PubsubMessage;

    fn deref(&self) -> &PubsubMessage {
        &self.message
    }
}

#[cfg(test)]
mod tests {
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
        assert!(hollow.data.is_empty());
        assert!(hollow.payload_on_disk());
        assert_eq!(hollow.payload_size(), message.payload_size());
        assert_eq!(hollow.data_len(), 1000);
        assert_eq!(hollow.attributes, message.attributes);
        assert_eq!(hollow.ordering_key, "key");
        // Attributes only: nothing to read back.
        let bare = HeldMessage::new(PubsubMessage {
            attributes: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        });
        assert!(!HeldMessage::split(bare.to_message()).0.payload_on_disk());
        let restored = HeldMessage::stored(hollow.to_message(), message.payload_size());
        assert!(restored.payload_on_disk());
        assert_eq!(restored.data_len(), 1000);
    }
}
