//! The gRPC transport: the Publisher, Subscriber, SchemaService and
//! IAMPolicy services, each method a call of its RPC in the request layer
//! ([`crate::api`]), with errors mapped through the one status table.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use baton_proto::iam::iam_policy_server::IamPolicy;
use baton_proto::iam::{
    GetIamPolicyRequest, Policy, SetIamPolicyRequest, TestIamPermissionsRequest,
    TestIamPermissionsResponse,
};
use baton_proto::pubsub::publisher_server::Publisher;
use baton_proto::pubsub::schema_service_server::SchemaService;
use baton_proto::pubsub::subscriber_server::Subscriber;
use baton_proto::pubsub::{
    AcknowledgeRequest, CommitSchemaRequest, CreateSchemaRequest, CreateSnapshotRequest,
    DeleteSchemaRequest, DeleteSchemaRevisionRequest, DeleteSnapshotRequest,
    DeleteSubscriptionRequest, DeleteTopicRequest, DetachSubscriptionRequest,
    DetachSubscriptionResponse, GetSchemaRequest, GetSnapshotRequest, GetSubscriptionRequest,
    GetTopicRequest, ListSchemaRevisionsRequest, ListSchemaRevisionsResponse, ListSchemasRequest,
    ListSchemasResponse, ListSnapshotsRequest, ListSnapshotsResponse, ListSubscriptionsRequest,
    ListSubscriptionsResponse, ListTopicSnapshotsRequest, ListTopicSnapshotsResponse,
    ListTopicSubscriptionsRequest, ListTopicSubscriptionsResponse, ListTopicsRequest,
    ListTopicsResponse, ModifyAckDeadlineRequest, ModifyPushConfigRequest, PublishRequest,
    PublishResponse, PullRequest, PullResponse, RollbackSchemaRequest, Schema, SeekRequest,
    SeekResponse, Snapshot, StreamingPullRequest, StreamingPullResponse, Subscription, Topic,
    UpdateSnapshotRequest, UpdateSubscriptionRequest, UpdateTopicRequest, ValidateMessageRequest,
    ValidateMessageResponse, ValidateSchemaRequest, ValidateSchemaResponse,
};
use baton_proto::wkt;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api::streaming_pull::StreamingPullBatch;
use crate::api::{self, Guarded, PubSubApi, RequestContext, Transport};
use crate::status::to_status;

pub(crate) mod publish;
pub(crate) mod streaming_pull;

/// A method a route of its own serves instead of the generated service
/// (with a codec of its own), and the path it takes over.
pub(crate) trait OwnRoute: Send + 'static {
    /// The method's path.
    const PATH: &'static str;

    /// Serves one call of the method for `services`, through a server made
    /// by [`grpc_route`], so with the generated services' compression and
    /// message size limits (`max_message_bytes` either way).
    fn serve(
        services: GrpcServices,
        max_message_bytes: usize,
        request: http::Request<axum::body::Body>,
    ) -> BoxFuture<'static, http::Response<tonic::body::Body>>;
}

/// The route of one [`OwnRoute`] method.
#[derive(Debug)]
pub(crate) struct MethodRoute<M> {
    services: GrpcServices,
    max_message_bytes: usize,
    method: PhantomData<fn() -> M>,
}

impl<M> Clone for MethodRoute<M> {
    fn clone(&self) -> Self {
        Self {
            services: self.services.clone(),
            max_message_bytes: self.max_message_bytes,
            method: PhantomData,
        }
    }
}

impl<M: OwnRoute> MethodRoute<M> {
    /// Serves `M` for `services`, refusing messages larger than
    /// `max_message_bytes` either way, as the generated services do.
    pub(crate) fn new(services: GrpcServices, max_message_bytes: usize) -> Self {
        Self {
            services,
            max_message_bytes,
            method: PhantomData,
        }
    }
}

impl<M: OwnRoute> tower::Service<http::Request<axum::body::Body>> for MethodRoute<M> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let response = M::serve(self.services.clone(), self.max_message_bytes, request);
        Box::pin(async move { Ok(response.await) })
    }
}

/// The gRPC server of an [`OwnRoute`]: the same compression and message
/// size limits as the generated services'.
fn grpc_route<C: tonic::codec::Codec>(
    codec: C,
    max_message_bytes: usize,
) -> tonic::server::Grpc<C> {
    tonic::server::Grpc::new(codec)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

type Reply<T> = Result<Response<T>, Status>;

/// Parses the `grpc-timeout` header (`<digits><unit>`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A gRPC request's message, and what it carries besides: its deadline and
/// its credential. The request is taken apart rather than read, so the
/// credential (a 1 KB token on every call with authentication on) is shared,
/// not copied.
fn context<T>(request: Request<T>) -> (RequestContext, T) {
    let (metadata, _, message) = request.into_parts();
    let headers = metadata.into_headers();
    let timeout = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    let ctx = RequestContext::new(Transport::Grpc)
        .with_timeout(timeout)
        .with_authorization(headers.get(http::header::AUTHORIZATION).cloned());
    (ctx, message)
}

/// The four gRPC services over one request layer.
#[derive(Debug, Clone)]
pub struct GrpcServices {
    api: PubSubApi,
}

impl GrpcServices {
    /// Serves `api` over gRPC.
    pub fn new(api: PubSubApi) -> Self {
        Self { api }
    }

    /// Opens a StreamingPull session for `request`: its responses, each
    /// with its messages shared with the broker.
    async fn open_streaming_pull(
        &self,
        request: Request<Streaming<StreamingPullRequest>>,
    ) -> Result<impl Stream<Item = Result<StreamingPullBatch, Status>> + Send + 'static, Status>
    {
        let (ctx, mut inbound) = context(request);
        let first = inbound.message().await?;
        let batches = self
            .api
            .streaming_pull(&ctx, first, inbound)
            .await
            .map_err(to_status)?;
        Ok(tokio_stream::wrappers::ReceiverStream::new(batches)
            .map(|batch| batch.map_err(to_status)))
    }

    /// Serves one unary call of `R`.
    async fn unary<R: Guarded>(&self, request: Request<R::Request>) -> Reply<R::Response> {
        let (ctx, message) = context(request);
        self.api
            .call::<R>(&ctx, message)
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}

#[tonic::async_trait]
impl Publisher for GrpcServices {
    async fn create_topic(&self, request: Request<Topic>) -> Reply<Topic> {
        self.unary::<api::CreateTopic>(request).await
    }

    async fn update_topic(&self, request: Request<UpdateTopicRequest>) -> Reply<Topic> {
        self.unary::<api::UpdateTopic>(request).await
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Reply<PublishResponse> {
        // Served by the `Publish` route, which decodes the request itself; this
        // is the standard-typed form, for callers of the generated service.
        self.unary::<api::Publish>(request.map(api::PublishCall::from))
            .await
    }

    async fn get_topic(&self, request: Request<GetTopicRequest>) -> Reply<Topic> {
        self.unary::<api::GetTopic>(request).await
    }

    async fn list_topics(&self, request: Request<ListTopicsRequest>) -> Reply<ListTopicsResponse> {
        self.unary::<api::ListTopics>(request).await
    }

    async fn list_topic_subscriptions(
        &self,
        request: Request<ListTopicSubscriptionsRequest>,
    ) -> Reply<ListTopicSubscriptionsResponse> {
        self.unary::<api::ListTopicSubscriptions>(request).await
    }

    async fn list_topic_snapshots(
        &self,
        request: Request<ListTopicSnapshotsRequest>,
    ) -> Reply<ListTopicSnapshotsResponse> {
        self.unary::<api::ListTopicSnapshots>(request).await
    }

    async fn delete_topic(&self, request: Request<DeleteTopicRequest>) -> Reply<wkt::Empty> {
        self.unary::<api::DeleteTopic>(request).await
    }

    async fn detach_subscription(
        &self,
        request: Request<DetachSubscriptionRequest>,
    ) -> Reply<DetachSubscriptionResponse> {
        self.unary::<api::DetachSubscription>(request).await
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<StreamingPullResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Subscriber for GrpcServices {
    async fn create_subscription(&self, request: Request<Subscription>) -> Reply<Subscription> {
        self.unary::<api::CreateSubscription>(request).await
    }

    async fn get_subscription(
        &self,
        request: Request<GetSubscriptionRequest>,
    ) -> Reply<Subscription> {
        self.unary::<api::GetSubscription>(request).await
    }

    async fn update_subscription(
        &self,
        request: Request<UpdateSubscriptionRequest>,
    ) -> Reply<Subscription> {
        self.unary::<api::UpdateSubscription>(request).await
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Reply<ListSubscriptionsResponse> {
        self.unary::<api::ListSubscriptions>(request).await
    }

    async fn delete_subscription(
        &self,
        request: Request<DeleteSubscriptionRequest>,
    ) -> Reply<wkt::Empty> {
        self.unary::<api::DeleteSubscription>(request).await
    }

    async fn modify_ack_deadline(
        &self,
        request: Request<ModifyAckDeadlineRequest>,
    ) -> Reply<wkt::Empty> {
        self.unary::<api::ModifyAckDeadline>(request).await
    }

    async fn acknowledge(&self, request: Request<AcknowledgeRequest>) -> Reply<wkt::Empty> {
        self.unary::<api::Acknowledge>(request).await
    }

    async fn pull(&self, request: Request<PullRequest>) -> Reply<PullResponse> {
        self.unary::<api::Pull>(request).await
    }

    type StreamingPullStream = ResponseStream;

    /// The standard-typed form of `streaming_pull::StreamingPull`,
    /// which the server routes StreamingPull to instead; this serves users
    /// of [`GrpcServices`] as a generated service.
    async fn streaming_pull(
        &self,
        request: Request<Streaming<StreamingPullRequest>>,
    ) -> Reply<Self::StreamingPullStream> {
        let batches = self.open_streaming_pull(request).await?;
        let responses = batches.map(|batch| batch.map(StreamingPullBatch::into_response));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn modify_push_config(
        &self,
        request: Request<ModifyPushConfigRequest>,
    ) -> Reply<wkt::Empty> {
        self.unary::<api::ModifyPushConfig>(request).await
    }

    async fn get_snapshot(&self, request: Request<GetSnapshotRequest>) -> Reply<Snapshot> {
        self.unary::<api::GetSnapshot>(request).await
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Reply<ListSnapshotsResponse> {
        self.unary::<api::ListSnapshots>(request).await
    }

    async fn create_snapshot(&self, request: Request<CreateSnapshotRequest>) -> Reply<Snapshot> {
        self.unary::<api::CreateSnapshot>(request).await
    }

    async fn update_snapshot(&self, request: Request<UpdateSnapshotRequest>) -> Reply<Snapshot> {
        self.unary::<api::UpdateSnapshot>(request).await
    }

    async fn delete_snapshot(&self, request: Request<DeleteSnapshotRequest>) -> Reply<wkt::Empty> {
        self.unary::<api::DeleteSnapshot>(request).await
    }

    async fn seek(&self, request: Request<SeekRequest>) -> Reply<SeekResponse> {
        self.unary::<api::Seek>(request).await
    }
}

#[tonic::async_trait]
impl SchemaService for GrpcServices {
    async fn create_schema(&self, request: Request<CreateSchemaRequest>) -> Reply<Schema> {
        self.unary::<api::CreateSchema>(request).await
    }

    async fn get_schema(&self, request: Request<GetSchemaRequest>) -> Reply<Schema> {
        self.unary::<api::GetSchema>(request).await
    }

    async fn list_schemas(
        &self,
        request: Request<ListSchemasRequest>,
    ) -> Reply<ListSchemasResponse> {
        self.unary::<api::ListSchemas>(request).await
    }

    async fn list_schema_revisions(
        &self,
        request: Request<ListSchemaRevisionsRequest>,
    ) -> Reply<ListSchemaRevisionsResponse> {
        self.unary::<api::ListSchemaRevisions>(request).await
    }

    async fn commit_schema(&self, request: Request<CommitSchemaRequest>) -> Reply<Schema> {
        self.unary::<api::CommitSchema>(request).await
    }

    async fn rollback_schema(&self, request: Request<RollbackSchemaRequest>) -> Reply<Schema> {
        self.unary::<api::RollbackSchema>(request).await
    }

    async fn delete_schema_revision(
        &self,
        request: Request<DeleteSchemaRevisionRequest>,
    ) -> Reply<Schema> {
        self.unary::<api::DeleteSchemaRevision>(request).await
    }

    async fn delete_schema(&self, request: Request<DeleteSchemaRequest>) -> Reply<wkt::Empty> {
        self.unary::<api::DeleteSchema>(request).await
    }

    async fn validate_schema(
        &self,
        request: Request<ValidateSchemaRequest>,
    ) -> Reply<ValidateSchemaResponse> {
        self.unary::<api::ValidateSchema>(request).await
    }

    async fn validate_message(
        &self,
        request: Request<ValidateMessageRequest>,
    ) -> Reply<ValidateMessageResponse> {
        self.unary::<api::ValidateMessage>(request).await
    }
}

#[tonic::async_trait]
impl IamPolicy for GrpcServices {
    async fn set_iam_policy(&self, request: Request<SetIamPolicyRequest>) -> Reply<Policy> {
        self.unary::<api::SetIamPolicy>(request).await
    }

    async fn get_iam_policy(&self, request: Request<GetIamPolicyRequest>) -> Reply<Policy> {
        self.unary::<api::GetIamPolicy>(request).await
    }

    async fn test_iam_permissions(
        &self,
        request: Request<TestIamPermissionsRequest>,
    ) -> Reply<TestIamPermissionsResponse> {
        self.unary::<api::TestIamPermissions>(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("12Q"), None);
    }
}
