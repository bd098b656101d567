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

use std::pin::Pin;

use baton_proto::pubsub::StreamingPullRequest;
use futures::Stream;
use futures::future::BoxFuture;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstDecoder;

use super::{GrpcServices, OwnRoute};
use crate::api::streaming_pull::StreamingPullBatch;

/// StreamingPull, served by a route of its own; see the module docs.
pub(crate) struct StreamingPull;

impl OwnRoute for StreamingPull {
    const PATH: &'static str = "/google.pubsub.v1.Subscriber/StreamingPull";

    fn serve(
        services: GrpcServices,
        max_message_bytes: usize,
        request: http::Request<axum::body::Body>,
    ) -> BoxFuture<'static, http::Response<tonic::body::Body>> {
        Box::pin(async move {
            super::grpc_route(BatchCodec, max_message_bytes)
                .streaming(Method(services), request)
                .await
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
