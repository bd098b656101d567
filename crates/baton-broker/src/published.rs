//! A Publish request decoded with each message's trace context held apart
//! from its attribute map ([`PublishBatch`]): see
//! [`baton_proto::published`], which holds the messages so.

use baton_proto::pubsub::PublishRequest;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

use baton_proto::published::in_field;
pub use baton_proto::published::{
    Attributes, InlineTraceparent, PublishedMessage, TRACEPARENT_ATTRIBUTE,
};

/// A Publish request, its messages with their trace contexts held apart.
/// Decodes from the bytes of a standard `PublishRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishBatch {
    /// The topic published to.
    pub topic: String,
    /// The messages, in order.
    pub messages: Vec<PublishedMessage>,
}

/// `PublishRequest`'s field numbers.
const TOPIC: u32 = 1;
const MESSAGES: u32 = 2;

impl From<PublishRequest> for PublishBatch {
    fn from(request: PublishRequest) -> Self {
        Self {
            topic: request.topic,
            messages: request.messages.into_iter().map(Into::into).collect(),
        }
    }
}

impl Message for PublishBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.topic.is_empty() {
            encoding::string::encode(TOPIC, &self.topic, buf);
        }
        encoding::message::encode_repeated(MESSAGES, &self.messages, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Errors name where they happened as prost's generated code names
        // them, so a bad request is refused with the same words.
        let (result, field) = match tag {
            TOPIC => (
                encoding::string::merge(wire_type, &mut self.topic, buf, ctx),
                "topic",
            ),
            MESSAGES => (
                encoding::message::merge_repeated(wire_type, &mut self.messages, buf, ctx),
                "messages",
            ),
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        in_field(result, "PublishRequest", field)
    }

    fn encoded_len(&self) -> usize {
        let topic = if self.topic.is_empty() {
            0
        } else {
            encoding::string::encoded_len(TOPIC, &self.topic)
        };
        topic + encoding::message::encoded_len_repeated(MESSAGES, &self.messages)
    }

    fn clear(&mut self) {
        self.topic.clear();
        self.messages.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;
    use baton_proto::pubsub::PubsubMessage;
    use proptest::prelude::*;

    fn traceparent() -> impl Strategy<Value = String> {
        prop_oneof![
            "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]",
            "[ -~]{55}",
            "[ -~]{0,80}",
            "\\PC{50,56}",
        ]
    }

    /// A standard message, sometimes with a trace context among its
    /// attributes.
    fn message() -> impl Strategy<Value = PubsubMessage> {
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::hash_map("[a-z_]{1,24}", "[ -~]{0,60}", 0..4),
            proptest::option::of(traceparent()),
            "[a-z]{0,8}",
        )
            .prop_map(|(data, mut attributes, traceparent, ordering_key)| {
                if let Some(value) = traceparent {
                    attributes.insert(TRACEPARENT_ATTRIBUTE.to_string(), value);
                }
                PubsubMessage {
                    data,
                    attributes,
                    ordering_key,
                    ..Default::default()
                }
            })
    }

    /// What `PublishedMessage` holds for `message`: the map without an
    /// inline trace context, and that context.
    fn expected(message: &PubsubMessage) -> (HashMap<String, String>, Option<String>) {
        let mut map = message.attributes.clone();
        let inline = map
            .get(TRACEPARENT_ATTRIBUTE)
            .filter(|value| value.len() == InlineTraceparent::LEN && value.is_ascii())
            .cloned();
        if inline.is_some() {
            map.remove(TRACEPARENT_ATTRIBUTE);
        }
        (map, inline)
    }

    proptest! {
        #[test]
        fn a_publish_request_decodes_with_its_trace_context_apart_and_encodes_back(
            messages in proptest::collection::vec(message(), 1..5),
            topic in "[a-z/]{0,20}",
        ) {
            let request = PublishRequest { topic: topic.clone(), messages: messages.clone() };
            let bytes = request.encode_to_vec();
            let batch = PublishBatch::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(&batch, &PublishBatch::from(request.clone()));
            prop_assert_eq!(&batch.topic, &topic);
            for (published, message) in batch.messages.iter().zip(&messages) {
                let (map, inline) = expected(message);
                prop_assert_eq!(&published.message.attributes, &map);
                prop_assert_eq!(published.traceparent.map(|v| v.as_str().to_string()), inline);
                prop_assert_eq!(published.payload_size(), message.payload_size());
                prop_assert_eq!(published.attributes().len(), message.attributes.len());
                prop_assert_eq!(published.attributes().to_map(), message.attributes.clone());
                for (key, value) in &message.attributes {
                    prop_assert_eq!(published.attributes().get(key), Some(value.as_str()));
                }
                prop_assert_eq!(&published.to_message(), message);
                prop_assert_eq!(published.encoded_len(), message.encoded_len());
                let back = PubsubMessage::decode(published.encode_to_vec().as_slice()).unwrap();
                prop_assert_eq!(&back, message);
            }
            let encoded = batch.encode_to_vec();
            prop_assert_eq!(encoded.len(), batch.encoded_len());
            prop_assert_eq!(PublishRequest::decode(encoded.as_slice()).unwrap(), request);
        }
    }

    proptest! {
        #[test]
        fn damaged_requests_fail_as_prost_fails_them(
            messages in proptest::collection::vec(message(), 1..4),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = PublishRequest { topic: "t".into(), messages }.encode_to_vec();
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            match (PublishBatch::decode(bytes.as_slice()), PublishRequest::decode(bytes.as_slice())) {
                (Ok(batch), Ok(request)) => {
                    prop_assert_eq!(&batch.topic, &request.topic);
                    let standard: Vec<PubsubMessage> =
                        batch.messages.iter().map(PublishedMessage::to_message).collect();
                    prop_assert_eq!(standard, request.messages);
                }
                (Err(ours), Err(prost)) => prop_assert_eq!(ours.to_string(), prost.to_string()),
                (ours, prost) => prop_assert!(false, "{:?} against {:?}", ours, prost),
            }
        }
    }

    /// Entries for the same key, in the order written.
    fn with_entries(values: &[&str]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for value in values {
            let entry = PubsubMessage {
                attributes: [(TRACEPARENT_ATTRIBUTE.to_string(), value.to_string())].into(),
                ..Default::default()
            };
            entry.encode(&mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn the_last_entry_for_the_trace_key_wins_whatever_its_form() {
        let inline = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x";
        for values in [[inline, other], [other, inline], [inline, inline]] {
            let bytes = with_entries(&values);
            let published = PublishedMessage::decode(bytes.as_slice()).unwrap();
            let standard = PubsubMessage::decode(bytes.as_slice()).unwrap();
            assert_eq!(published.to_message(), standard, "{values:?}");
            assert_eq!(published.attributes().len(), 1);
            assert_eq!(
                published.traceparent.is_some(),
                values[1] == inline,
                "{values:?}"
            );
        }
    }

    #[test]
    fn bad_utf8_in_an_attribute_fails_as_prost_fails() {
        let mut bytes = with_entries(&["x"]);
        let at = bytes.iter().position(|&b| b == b'x').unwrap();
        bytes[at] = 0xff;
        let ours = PublishedMessage::decode(bytes.as_slice()).unwrap_err();
        let standard = PubsubMessage::decode(bytes.as_slice()).unwrap_err();
        assert_eq!(ours.to_string(), standard.to_string());
    }
}
