//! StreamingPull over gRPC with each delivery written straight from the
//! message the broker holds.
//!
//! The generated `Subscriber` service encodes a `StreamingPullResponse`,
//! which owns a copy of every message in it: the whole attribute map and
//! ordering key of each, copied under the broker's lock and dropped right
//! after encoding. This route serves the same method, with the same
//! compression and size limits, through a codec whose responses are
//! [`StreamingPullBatch`]es: they share the messages, and the bytes on the
//! wire are the same.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use baton_proto::pubsub::StreamingPullRequest;
use futures::Stream;
use futures::future::BoxFuture;
use tonic::codec::{Codec, CompressionEncoding, EncodeBuf, Encoder};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstDecoder;

use super::GrpcServices;
use crate::api::streaming_pull::StreamingPullBatch;

/// The method's path, which this route takes over from the generated
/// service.
pub(crate) const PATH: &str = "/google.pubsub.v1.Subscriber/StreamingPull";

/// The StreamingPull route; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct StreamingPullRoute {
    services: GrpcServices,
    max_message_bytes: usize,
}

impl StreamingPullRoute {
    /// Serves StreamingPull for `services`, refusing messages larger than
    /// `max_message_bytes` either way, as the generated services do.
    pub(crate) fn new(services: GrpcServices, max_message_bytes: usize) -> Self {
        Self {
            services,
            max_message_bytes,
        }
    }
}

impl tower::Service<http::Request<axum::body::Body>> for StreamingPullRoute {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let method = Method(self.services.clone());
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(BatchCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
            Ok(grpc.streaming(method, request).await)
        })
    }
}

type Batches = Pin<Box<dyn Stream<Item = Result<StreamingPullBatch, Status>> + Send>>;

/// The method itself: opens the session.
struct Method(GrpcServices);

impl tonic::server::StreamingService<StreamingPullRequest> for Method {
    type Response = StreamingPullBatch;
    type ResponseStream = Batches;
    type Future = BoxFuture<'static, Result<Response<Batches>, Status>>;

    fn call(&mut self, request: Request<Streaming<StreamingPullRequest>>) -> Self::Future {
        let services = self.0.clone();
        Box::pin(async move {
            let batches = services.open_streaming_pull(request).await?;
            Ok(Response::new(Box::pin(batches) as Batches))
        })
    }
}

/// Decodes requests with prost and encodes [`StreamingPullBatch`]es.
#[derive(Debug, Clone, Copy, Default)]
struct BatchCodec;

impl Codec for BatchCodec {
    type Encode = StreamingPullBatch;
    type Decode = StreamingPullRequest;
    type Encoder = BatchEncoder;
    type Decoder = ProstDecoder<StreamingPullRequest>;

    fn encoder(&mut self) -> BatchEncoder {
        BatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BatchEncoder;

impl Encoder for BatchEncoder {
    type Item = StreamingPullBatch;
    type Error = Status;

    fn encode(&mut self, batch: StreamingPullBatch, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        batch.encode(dst);
        Ok(())
    }
}
