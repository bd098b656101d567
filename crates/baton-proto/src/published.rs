//! A message with its trace context held apart from the attribute map.
//!
//! The official clients put `googclient_traceparent` on every message they
//! publish with tracing on, sampled or not. Decoded into prost's attribute
//! map, that one entry costs two strings, a UTF-8 check and a hashed insert
//! per message, then their freeing: on the server, most of what carrying a
//! trace context costs it; on a subscriber, a good part of what tracing
//! costs it when the trace is not sampled. A value of the usual length (the
//! W3C form's 55 ASCII bytes) is therefore kept inline, beside the map, by
//! [`PublishedMessage`]'s [`Message`] impl, which decodes and encodes the
//! standard message's bytes. Whatever reads attributes reads them through
//! [`Attributes`], which shows the value as the attribute it came as. Any
//! other value stays in the map.

use std::collections::HashMap;

use crate::pubsub::PubsubMessage;
use crate::traceparent_entry;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

/// The attribute that carries a message's W3C trace context.
pub const TRACEPARENT_ATTRIBUTE: &str = traceparent_entry::KEY;

/// Attribute maps up to this size are searched by comparing keys.
const SCAN_BELOW: usize = 8;

/// `PubsubMessage.attributes`' field number.
const ATTRIBUTES: u32 = 2;

/// `result`, its error (if any) naming the field it happened in, as
/// prost's generated code names it (`PublishRequest.messages: ...`): the
/// hand-written decoders of this crate's users fail with the same words as
/// prost's for the same bytes.
pub fn in_field<T>(
    result: Result<T, prost::DecodeError>,
    message: &'static str,
    field: &'static str,
) -> Result<T, prost::DecodeError> {
    result.map_err(|mut error| {
        error.push(message, field);
        error
    })
}

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

    /// The value's bytes, as they came.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
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
/// and decodes as the standard message, from a Publish request on the
/// server or a delivery on a subscriber.
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
