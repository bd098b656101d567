//! A Publish request encoded once and sent as it is by every attempt.
//!
//! A batch must outlive its first attempt, since a retry sends it again, but
//! tonic takes ownership of the request it encodes. Keeping the batch as the
//! bytes of its `PublishRequest` lets every attempt share them: no attempt
//! copies the messages (their payloads, attribute maps and strings) or
//! encodes them again.

use bytes::{BufMut as _, Bytes};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use baton_proto::pubsub::{PublishRequest, PublishResponse};

/// The gRPC method both the generated stub and this codec call.
pub(crate) const PUBLISH_PATH: &str = "/google.pubsub.v1.Publisher/Publish";

/// An encoded `PublishRequest`; cloning it shares the bytes.
#[derive(Debug, Clone)]
pub(crate) struct EncodedPublish(Bytes);

impl EncodedPublish {
    /// Encodes `request` once.
    pub(crate) fn new(request: &PublishRequest) -> Self {
        Self(Bytes::from(request.encode_to_vec()))
    }
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
    use baton_proto::pubsub::PubsubMessage;

    use super::*;

    #[test]
    fn the_bytes_are_the_request_prost_would_send() {
        let request = PublishRequest {
            topic: "projects/p/topics/t".into(),
            messages: vec![PubsubMessage {
                data: b"payload".to_vec(),
                attributes: [("googclient_traceparent".to_string(), "00-x".to_string())].into(),
                ordering_key: "k".into(),
                ..Default::default()
            }],
        };
        let encoded = EncodedPublish::new(&request);
        assert_eq!(encoded.0.as_ref(), request.encode_to_vec().as_slice());
        assert_eq!(
            PublishRequest::decode(encoded.0.clone()).ok(),
            Some(request)
        );
    }
}
