//! A message as a lease hands it out: the message the broker holds, shared
//! rather than copied, with its ack id and, for the disk store, its payload
//! read back.
//!
//! A delivery used to be a [`ReceivedMessage`] holding a copy of the whole
//! message, attribute map and all, made under the broker's lock and dropped
//! once encoded. The StreamingPull transport encodes a [`LeasedMessage`]
//! straight from the shared parts instead ([`LeasedMessage::encode`]); the
//! other transports, which need the standard type, convert at their edge.

use std::sync::Arc;

use baton_proto::pubsub::{PubsubMessage, ReceivedMessage};
use prost::bytes::BufMut;
use prost::encoding::{self, WireType};

use crate::HeldMessage;

/// One leased message; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedMessage {
    /// The ack id the subscriber acks it with.
    pub ack_id: String,
    /// The message as the broker holds it (without its payload when the
    /// disk store keeps that).
    pub message: Arc<HeldMessage>,
    /// The delivery attempt to report, or 0 when the subscription does not
    /// report attempts.
    pub delivery_attempt: i32,
    /// The payload read back from the disk store, for a message held
    /// without it.
    payload: Option<Payload>,
}

/// A payload read back for a delivery: shared with the store's cache of
/// recent payloads, or read from the file for this delivery alone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    Cached(Arc<Vec<u8>>),
    Read(Vec<u8>),
}

impl Payload {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Cached(data) => data,
            Self::Read(data) => data,
        }
    }

    /// The payload as `data` of a standard message: moved when it was read
    /// for this delivery, copied when the cache shares it.
    fn into_data(self, data: &mut Vec<u8>) {
        match self {
            Self::Cached(shared) => data.clone_from(&shared),
            Self::Read(read) => *data = read,
        }
    }
}

/// A message whose payload the disk store may have to read back.
pub(crate) trait PayloadSlot {
    /// The message's sequence number, when its payload is to be read back.
    fn wanted(&self) -> Option<u64>;
    /// Puts the payload read back in place.
    fn fill(&mut self, payload: Payload);
}

/// A standard message held without its payload has empty `data`.
impl PayloadSlot for PubsubMessage {
    fn wanted(&self) -> Option<u64> {
        if self.data.is_empty() {
            self.message_id.parse().ok()
        } else {
            None
        }
    }

    fn fill(&mut self, payload: Payload) {
        payload.into_data(&mut self.data);
    }
}

impl PayloadSlot for LeasedMessage {
    fn wanted(&self) -> Option<u64> {
        if self.message.payload_on_disk() && self.payload.is_none() {
            self.message.message_id().parse().ok()
        } else {
            None
        }
    }

    fn fill(&mut self, payload: Payload) {
        self.payload = Some(payload);
    }
}

/// `ReceivedMessage`'s field numbers.
const ACK_ID: u32 = 1;
const MESSAGE: u32 = 2;
const DELIVERY_ATTEMPT: u32 = 3;
/// `PubsubMessage.data`'s field number.
const DATA: u32 = 1;

impl LeasedMessage {
    /// A delivery of `message` under `ack_id`.
    pub fn new(ack_id: String, message: Arc<HeldMessage>, delivery_attempt: i32) -> Self {
        Self {
            ack_id,
            message,
            delivery_attempt,
            payload: None,
        }
    }

    /// The message's payload.
    pub fn data(&self) -> &[u8] {
        match &self.payload {
            Some(payload) => payload.as_slice(),
            None => self.message.data(),
        }
    }

    /// The delivery in the standard type, for transports that need it.
    pub fn into_received(self) -> ReceivedMessage {
        let mut message = self.message.to_message();
        if let Some(payload) = self.payload {
            payload.into_data(&mut message.data);
        }
        ReceivedMessage {
            message: Some(message),
            ack_id: self.ack_id,
            delivery_attempt: self.delivery_attempt,
        }
    }

    /// The length of the payload field a read-back payload adds to the
    /// held message's own encoding (which has no `data`).
    fn payload_field_len(&self) -> usize {
        match self.payload.as_ref().map(Payload::as_slice) {
            Some(data) if !data.is_empty() => {
                encoding::key_len(DATA)
                    + encoding::encoded_len_varint(data.len() as u64)
                    + data.len()
            }
            _ => 0,
        }
    }

    /// The length of the encoded `PubsubMessage`.
    fn message_len(&self) -> usize {
        self.message.encoded_len() + self.payload_field_len()
    }

    /// The length of the encoded `ReceivedMessage`, without the tag and
    /// length that put it in a response.
    fn body_len(&self, message_len: usize) -> usize {
        let mut len = encoding::key_len(MESSAGE)
            + encoding::encoded_len_varint(message_len as u64)
            + message_len;
        if !self.ack_id.is_empty() {
            len += encoding::string::encoded_len(ACK_ID, &self.ack_id);
        }
        if self.delivery_attempt != 0 {
            len += encoding::int32::encoded_len(DELIVERY_ATTEMPT, &self.delivery_attempt);
        }
        len
    }

    /// Writes the delivery as field `tag` (a `ReceivedMessage`) of the
    /// message being encoded into `buf`: the same bytes prost writes for
    /// [`Self::into_received`]'s result, read from the shared message.
    pub fn encode(&self, tag: u32, buf: &mut impl BufMut) {
        let message_len = self.message_len();
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.body_len(message_len) as u64, buf);
        if !self.ack_id.is_empty() {
            encoding::string::encode(ACK_ID, &self.ack_id, buf);
        }
        encoding::encode_key(MESSAGE, WireType::LengthDelimited, buf);
        encoding::encode_varint(message_len as u64, buf);
        if let Some(data) = self.payload.as_ref().map(Payload::as_slice)
            && !data.is_empty()
        {
            // `data` is field 1, so it comes first, as prost writes it.
            encoding::encode_key(DATA, WireType::LengthDelimited, buf);
            encoding::encode_varint(data.len() as u64, buf);
            buf.put_slice(data);
        }
        self.message.encode_raw(buf);
        if self.delivery_attempt != 0 {
            encoding::int32::encode(DELIVERY_ATTEMPT, &self.delivery_attempt, buf);
        }
    }

    /// The length [`Self::encode`] writes.
    pub fn encoded_len(&self, tag: u32) -> usize {
        let body = self.body_len(self.message_len());
        encoding::key_len(tag) + encoding::encoded_len_varint(body as u64) + body
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    /// A `PubsubMessage` as the broker holds one after a publish.
    fn message() -> impl Strategy<Value = PubsubMessage> {
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::hash_map("[a-z_]{1,24}", "[ -~]{0,60}", 0..4),
            1_u64..u64::MAX,
            "[a-z]{0,8}",
            proptest::option::of((0_i64..4_000_000_000, 0_i32..1_000_000_000)),
            proptest::option::of("00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]"),
        )
            .prop_map(
                |(data, mut attributes, id, ordering_key, time, traceparent)| {
                    if let Some(value) = traceparent {
                        // Held apart from the map once the broker has it.
                        attributes.insert(crate::TRACEPARENT_ATTRIBUTE.to_string(), value);
                    }
                    PubsubMessage {
                        data,
                        attributes,
                        message_id: id.to_string(),
                        publish_time: time
                            .map(|(seconds, nanos)| baton_proto::wkt::Timestamp { seconds, nanos }),
                        ordering_key,
                    }
                },
            )
    }

    /// `leased` written as field `tag` of an otherwise empty message, and
    /// what prost writes for the standard type in the same place.
    fn both(leased: &LeasedMessage, tag: u32) -> (Vec<u8>, Vec<u8>) {
        let mut ours = Vec::new();
        leased.encode(tag, &mut ours);
        assert_eq!(ours.len(), leased.encoded_len(tag));
        let mut standard = Vec::new();
        encoding::message::encode(tag, &leased.clone().into_received(), &mut standard);
        (ours, standard)
    }

    proptest! {
        #[test]
        fn a_shared_delivery_encodes_as_its_standard_copy(
            message in message(),
            ack_id in "[a-z0-9:/]{0,40}",
            attempt in prop_oneof![Just(0), 1_i32..100],
            tag in 1_u32..20,
            on_disk in any::<bool>(),
            cached in any::<bool>(),
        ) {
            let held = if on_disk {
                let (held, data) = HeldMessage::split(message.clone());
                let mut leased = LeasedMessage::new(ack_id.clone(), Arc::new(held), attempt);
                if leased.wanted().is_some() {
                    leased.fill(if cached { Payload::Cached(Arc::new(data)) } else { Payload::Read(data) });
                }
                leased
            } else {
                LeasedMessage::new(ack_id.clone(), Arc::new(HeldMessage::new(message.clone())), attempt)
            };
            prop_assert_eq!(held.data(), message.data.as_slice());
            prop_assert_eq!(held.wanted(), None);
            let (ours, standard) = both(&held, tag);
            if message.attributes.contains_key(crate::TRACEPARENT_ATTRIBUTE) {
                // The trace context held apart is written after the other
                // fields, so the bytes differ in order only.
                prop_assert_eq!(ours.len(), standard.len());
                let decoded = |bytes: &[u8]| {
                    let mut body = bytes;
                    let (_, _) = encoding::decode_key(&mut body).unwrap();
                    let len = encoding::decode_varint(&mut body).unwrap();
                    prop_assert_eq!(len as usize, body.len());
                    Ok(ReceivedMessage::decode(body).unwrap())
                };
                prop_assert_eq!(decoded(&ours)?, decoded(&standard)?);
            } else {
                prop_assert_eq!(ours, standard);
            }
            let received = held.into_received();
            prop_assert_eq!(received.message.unwrap(), message);
            prop_assert_eq!(received.ack_id, ack_id);
            prop_assert_eq!(received.delivery_attempt, attempt);
        }
    }

    #[test]
    fn a_payload_gone_from_the_store_goes_out_without_data() {
        let message = PubsubMessage {
            data: b"payload".to_vec(),
            message_id: "7".into(),
            ..Default::default()
        };
        let (held, _) = HeldMessage::split(message);
        let leased = LeasedMessage::new("s:1".into(), Arc::new(held), 0);
        assert_eq!(leased.wanted(), Some(7));
        assert!(leased.data().is_empty());
        let (ours, standard) = both(&leased, 1);
        assert_eq!(ours, standard);
    }
}
