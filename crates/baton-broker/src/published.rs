//! A published message with its trace context held apart from the attribute
//! map.
//!
//! The official clients put `googclient_traceparent` on every message they
//! publish with tracing on, sampled or not. Decoded into prost's attribute
//! map, that one entry costs the server two strings, a UTF-8 check and a
//! hashed insert per message, then their freeing when the message is acked:
//! most of what carrying a trace context costs the server. A value of the
//! usual length (the W3C form's 55 ASCII bytes) is therefore kept inline,
//! beside the map, from the Publish request's decoding
//! ([`PublishedMessage`]'s [`Message`] impl) to the delivery's encoding, and
//! everything that reads attributes reads them through [`Attributes`], which
//! shows it as the attribute it came as. Any other value stays in the map.

use std::collections::HashMap;

use baton_proto::pubsub::{PublishRequest, PubsubMessage};
use baton_proto::traceparent_entry;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

/// The attribute that carries a message's W3C trace context.
pub const TRACEPARENT_ATTRIBUTE: &str = traceparent_entry::KEY;

/// Attribute maps up to this size are searched by comparing keys.
const SCAN_BELOW: usize = 8;

/// `PubsubMessage.attributes`' field number.
const ATTRIBUTES: u32 = 2;

/// A `googclient_traceparent` value of the W3C form's length, 55 ASCII
/// bytes, held inline rather than as a map entry. Only its length and
/// ASCII-ness are checked: the value goes out exactly as it came.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InlineTraceparent([u8; InlineTraceparent::LEN]);

impl InlineTraceparent {
    /// The length of a `traceparent` of version `00`.
    pub const LEN: usize = traceparent_entry::VALUE_LEN;

    /// `value` held inline, if it is 55 ASCII bytes.
    pub fn new(value: &[u8]) -> Option<Self> {
        let bytes: [u8; Self::LEN] = value.try_into().ok()?;
        bytes.is_ascii().then_some(Self(bytes))
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        // ASCII, as checked when it was made, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for InlineTraceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InlineTraceparent")
            .field(&self.as_str())
            .finish()
    }
}

/// A message's attributes as a client sees them: the map, and the trace
/// context held apart from it, if any.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    map: &'a HashMap<String, String>,
    traceparent: Option<&'a InlineTraceparent>,
}

impl<'a> From<&'a HashMap<String, String>> for Attributes<'a> {
    fn from(map: &'a HashMap<String, String>) -> Self {
        Self {
            map,
            traceparent: None,
        }
    }
}

impl<'a> Attributes<'a> {
    /// The value of attribute `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        match self.traceparent {
            Some(value) if key == TRACEPARENT_ATTRIBUTE => Some(value.as_str()),
            // Comparing a few keys is cheaper than hashing the one looked
            // for, and most messages have few attributes.
            _ if self.map.len() <= SCAN_BELOW => self
                .map
                .iter()
                .find(|(candidate, _)| candidate.as_str() == key)
                .map(|(_, value)| value.as_str()),
            _ => self.map.get(key).map(String::as_str),
        }
    }

    /// Whether the message has attribute `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// How many attributes the message has.
    pub fn len(&self) -> usize {
        self.map.len() + usize::from(self.traceparent.is_some())
    }

    /// Whether the message has no attributes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every attribute, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let traceparent = self
            .traceparent
            .map(|value| (TRACEPARENT_ATTRIBUTE, value.as_str()));
        self.map
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .chain(traceparent)
    }

    /// The attributes as the standard map.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = self.map.clone();
        if let Some(value) = self.traceparent {
            map.insert(
                TRACEPARENT_ATTRIBUTE.to_string(),
                value.as_str().to_string(),
            );
        }
        map
    }
}

/// A message as published, with a `googclient_traceparent` of the usual
/// length held apart from its attribute map (see the module docs). Encodes
/// and decodes as the standard message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishedMessage {
    /// The message, without the trace context held apart. Its map never
    /// holds `googclient_traceparent` while `traceparent` is set.
    pub message: PubsubMessage,
    /// The `googclient_traceparent` value, held apart.
    pub traceparent: Option<InlineTraceparent>,
}

impl From<PubsubMessage> for PublishedMessage {
    /// Takes a `googclient_traceparent` of the usual length out of the map.
    fn from(mut message: PubsubMessage) -> Self {
        let traceparent = match message.attributes.get(TRACEPARENT_ATTRIBUTE) {
            Some(value) => InlineTraceparent::new(value.as_bytes()),
            None => None,
        };
        if traceparent.is_some() {
            message.attributes.remove(TRACEPARENT_ATTRIBUTE);
        }
        Self {
            message,
            traceparent,
        }
    }
}

impl PublishedMessage {
    /// The message's attributes, the trace context among them.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            map: &self.message.attributes,
            traceparent: self.traceparent.as_ref(),
        }
    }

    /// The size the service counts against its limits: data, ordering key,
    /// and attribute keys and values.
    pub fn payload_size(&self) -> usize {
        let traceparent = self
            .traceparent
            .map_or(0, |_| TRACEPARENT_ATTRIBUTE.len() + InlineTraceparent::LEN);
        self.message.payload_size() + traceparent
    }

    /// The standard message, with the trace context back in its map.
    pub fn into_message(self) -> PubsubMessage {
        let mut message = self.message;
        if let Some(value) = self.traceparent {
            message.attributes.insert(
                TRACEPARENT_ATTRIBUTE.to_string(),
                value.as_str().to_string(),
            );
        }
        message
    }

    /// A copy of the standard message, with the trace context in its map.
    pub fn to_message(&self) -> PubsubMessage {
        self.clone().into_message()
    }

    /// Takes a `googclient_traceparent` entry written as prost writes it,
    /// with a value of the usual length, off the front of `buf` (which is
    /// just past the entry's tag); anything else is left for prost.
    fn take_inline_entry(&mut self, buf: &mut impl Buf) -> bool {
        let Some(value) =
            traceparent_entry::value_after_tag(buf.chunk()).and_then(|v| InlineTraceparent::new(v))
        else {
            return false;
        };
        buf.advance(traceparent_entry::AFTER_TAG_LEN);
        if !self.message.attributes.is_empty() {
            // A later entry for the same key wins, as in prost's map.
            self.message.attributes.remove(TRACEPARENT_ATTRIBUTE);
        }
        self.traceparent = Some(value);
        true
    }
}

impl Message for PublishedMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.message.encode_raw(buf);
        if let Some(value) = &self.traceparent {
            // One more entry of the attribute map; protobuf readers take a
            // map's entries wherever they are in the message.
            traceparent_entry::encode(&value.0, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag == ATTRIBUTES
            && wire_type == WireType::LengthDelimited
            && self.take_inline_entry(buf)
        {
            return Ok(());
        }
        self.message.merge_field(tag, wire_type, buf, ctx)?;
        if tag == ATTRIBUTES
            && self.traceparent.is_some()
            && self.message.attributes.contains_key(TRACEPARENT_ATTRIBUTE)
        {
            // A later entry of another form for the same key wins.
            self.traceparent = None;
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        let entry = self
            .traceparent
            .map_or(0, |_| traceparent_entry::ENCODED_LEN);
        self.message.encoded_len() + entry
    }

    fn clear(&mut self) {
        self.message.clear();
        self.traceparent = None;
    }
}

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
        result.map_err(|mut error| {
            error.push("PublishRequest", field);
            error
        })
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

    use super::*;
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
