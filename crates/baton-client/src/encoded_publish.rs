//! A Publish request encoded once and sent as it is by every attempt.
//!
//! A batch must outlive its first attempt, since a retry sends it again, but
//! tonic takes ownership of the request it encodes. Keeping the batch as the
//! bytes of its `PublishRequest` lets every attempt share them: no attempt
//! copies the messages (their payloads, attribute maps and strings) or
//! encodes them again.

use baton_proto::traceparent_entry;
use baton_trace_context::Traceparent;
use bytes::{BufMut as _, Bytes};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use baton_proto::pubsub::{PublishResponse, PubsubMessage};

/// Field numbers of the request and message fields written here.
const REQUEST_TOPIC: u32 = 1;
const REQUEST_MESSAGES: u32 = 2;

// The compact value is what the entry carries.
const _: () = assert!(Traceparent::LEN == traceparent_entry::VALUE_LEN);

/// The gRPC method both the generated stub and this codec call.
pub(crate) const PUBLISH_PATH: &str = "/google.pubsub.v1.Publisher/Publish";

/// An encoded `PublishRequest`; cloning it shares the bytes.
#[derive(Debug, Clone)]
pub(crate) struct EncodedPublish(Bytes);

impl EncodedPublish {
    /// Encodes the `PublishRequest` of `messages` to `topic` once. A
    /// message's compact `traceparent`, when it has one, is written as one
    /// more entry of its attribute map (see
    /// [`baton_trace_context::compact_traceparent`]): the request decodes as
    /// the one whose maps hold the attribute.
    pub(crate) fn new<'a>(
        topic: &str,
        messages: impl IntoIterator<Item = (&'a PubsubMessage, Option<&'a Traceparent>)>,
    ) -> Self {
        // Each message's length is needed twice (the buffer's size, then its
        // length prefix) and walks its attribute map: take it once.
        let messages: Vec<_> = messages
            .into_iter()
            .map(|(message, traceparent)| {
                let extra = traceparent.map_or(0, |_| traceparent_entry::ENCODED_LEN);
                (message, traceparent, message.encoded_len() + extra)
            })
            .collect();
        let capacity = field_len(REQUEST_TOPIC, topic.len())
            + messages
                .iter()
                .map(|(_, _, len)| field_len(REQUEST_MESSAGES, *len))
                .sum::<usize>();
        let mut buf = Vec::with_capacity(capacity);
        // As prost writes it: an empty string field is left out.
        if !topic.is_empty() {
            encode_key(REQUEST_TOPIC, WireType::LengthDelimited, &mut buf);
            encode_varint(topic.len() as u64, &mut buf);
            buf.put_slice(topic.as_bytes());
        }
        for (message, traceparent, len) in messages {
            encode_key(REQUEST_MESSAGES, WireType::LengthDelimited, &mut buf);
            encode_varint(len as u64, &mut buf);
            message.encode_raw(&mut buf);
            if let Some(traceparent) = traceparent {
                traceparent_entry::encode(traceparent.as_bytes(), &mut buf);
            }
        }
        Self(Bytes::from(buf))
    }
}

/// The encoded length of length-delimited field `tag` with a body of `len`
/// bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Writes an [`EncodedPublish`] as it is and reads the `PublishResponse`
/// as the generated stub's codec does.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EncodedPublishCodec;

impl Codec for EncodedPublishCodec {
    type Encode = EncodedPublish;
    type Decode = PublishResponse;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        *self
    }

    fn decoder(&mut self) -> Self {
        *self
    }
}

impl Encoder for EncodedPublishCodec {
    type Item = EncodedPublish;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: EncodedPublish,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item.0);
        Ok(())
    }
}

impl Decoder for EncodedPublishCodec {
    type Item = PublishResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<PublishResponse>, tonic::Status> {
        // The wording of tonic's prost codec for an undecodable message.
        PublishResponse::decode(src)
            .map(Some)
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use baton_proto::pubsub::PublishRequest;
    use baton_trace_context::TRACEPARENT_ATTRIBUTE;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use proptest::prelude::*;

    use super::*;

    fn message(data: &[u8], attributes: &[(&str, &str)], ordering_key: &str) -> PubsubMessage {
        PubsubMessage {
            data: data.to_vec(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ordering_key: ordering_key.into(),
            ..Default::default()
        }
    }

    fn decoded(encoded: &EncodedPublish) -> PublishRequest {
        PublishRequest::decode(encoded.0.clone()).expect("the request decodes")
    }

    #[test]
    fn the_bytes_are_the_request_prost_would_send() {
        let request = PublishRequest {
            topic: "projects/p/topics/t".into(),
            messages: vec![
                message(b"payload", &[("k", "v")], "key"),
                message(b"", &[("a", "b")], ""),
            ],
        };
        let encoded =
            EncodedPublish::new(&request.topic, request.messages.iter().map(|m| (m, None)));
        assert_eq!(encoded.0.as_ref(), request.encode_to_vec().as_slice());
        assert_eq!(decoded(&encoded), request);
    }

    proptest! {
        /// A compact `traceparent` decodes as the attribute `inject` would
        /// have put into the map, and adds the bytes the sizes count.
        #[test]
        fn a_compact_traceparent_decodes_as_the_attribute(
            messages in prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..64),
                    prop::collection::hash_map("[a-z]{1,8}", "[ -~]{0,16}", 0..4),
                    "[a-z]{0,4}",
                    prop::option::of((1..=u128::MAX, 1..=u64::MAX, any::<bool>())),
                ),
                0..6,
            ),
            topic in "[a-z/]{0,24}",
        ) {
            let outgoing: Vec<(PubsubMessage, Option<Traceparent>)> = messages
                .into_iter()
                .map(|(data, attributes, key, ids)| {
                    let message = PubsubMessage { data, attributes, ordering_key: key, ..Default::default() };
                    let traceparent = ids.map(|(trace, span, sampled)| {
                        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
                        Traceparent::new(&SpanContext::new(
                            TraceId::from(trace),
                            SpanId::from(span),
                            flags,
                            false,
                            TraceState::default(),
                        ))
                    });
                    (message, traceparent)
                })
                .collect();
            let encoded = EncodedPublish::new(&topic, outgoing.iter().map(|(m, t)| (m, t.as_ref())));
            let expected = PublishRequest {
                topic: topic.clone(),
                messages: outgoing
                    .iter()
                    .map(|(message, traceparent)| {
                        let mut message = message.clone();
                        if let Some(traceparent) = traceparent {
                            message.attributes.insert(TRACEPARENT_ATTRIBUTE.into(), traceparent.to_string());
                        }
                        message
                    })
                    .collect(),
            };
            prop_assert_eq!(encoded.0.len(), expected.encoded_len());
            prop_assert_eq!(decoded(&encoded), expected);
        }
    }
}
