//! Publish over gRPC with each message's trace context held apart from its
//! attribute map.
//!
//! The generated `Publisher` service decodes a `PublishRequest`, which puts
//! every message's `googclient_traceparent` into its attribute map: two
//! strings and a hashed entry per message, the largest part of what
//! carrying a trace context costs the server. This route serves the same
//! method, with the same compression and size limits, through a codec that
//! decodes the request as a [`PublishBatch`] instead, so a trace context of
//! the usual form stays 55 inline bytes from here to its delivery.

use baton_broker::PublishBatch;
use baton_proto::pubsub::PublishResponse;
use futures::future::BoxFuture;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Request, Response, Status};
use tonic_prost::ProstEncoder;

use super::{GrpcServices, OwnRoute};
use crate::api::{self, PublishCall};

/// Publish, served by a route of its own; see the module docs.
pub(crate) struct Publish;

impl OwnRoute for Publish {
    const PATH: &'static str = "/google.pubsub.v1.Publisher/Publish";

    fn serve(
        services: GrpcServices,
        max_message_bytes: usize,
        request: http::Request<axum::body::Body>,
    ) -> BoxFuture<'static, http::Response<tonic::body::Body>> {
        Box::pin(async move {
            super::grpc_route(PublishCodec, max_message_bytes)
                .unary(Method(services), request)
                .await
        })
    }
}

/// The method itself: one Publish call.
struct Method(GrpcServices);

impl tonic::server::UnaryService<PublishCall> for Method {
    type Response = PublishResponse;
    type Future = BoxFuture<'static, Result<Response<PublishResponse>, Status>>;

    fn call(&mut self, request: Request<PublishCall>) -> Self::Future {
        let services = self.0.clone();
        Box::pin(async move { services.unary::<api::Publish>(request).await })
    }
}

/// Decodes requests as [`PublishBatch`]es and encodes responses with prost.
#[derive(Debug, Clone, Copy, Default)]
struct PublishCodec;

impl Codec for PublishCodec {
    type Encode = PublishResponse;
    type Decode = PublishCall;
    type Encoder = ProstEncoder<PublishResponse>;
    type Decoder = BatchDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> BatchDecoder {
        BatchDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BatchDecoder;

impl Decoder for BatchDecoder {
    type Item = PublishCall;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<PublishCall>, Status> {
        PublishBatch::decode(buf)
            .map(|batch| Some(PublishCall(batch)))
            // As the generated service answers a request it cannot decode.
            .map_err(|error| Status::internal(error.to_string()))
    }
}
