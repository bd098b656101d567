//! gRPC steps: unary calls through the generated tonic clients, and scripted
//! StreamingPull sessions.

use std::time::Duration;

use baton_proto::iam::iam_policy_client::IamPolicyClient;
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::schema_service_client::SchemaServiceClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{StreamingPullRequest, StreamingPullResponse};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Large enough for every answer in the corpus (the biggest is a 1 MB message).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The outcome of a unary call: the response as proto3 JSON, or the status.
pub type UnaryOutcome = Result<Value, tonic::Status>;

macro_rules! unary {
    ($client:expr, $method:ident, $request:ty, $body:expr, $deadline:expr) => {{
        let message: $request = serde_json::from_value($body)
            .map_err(|e| format!("request body does not fit {}: {e}", stringify!($request)))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout($deadline);
        let mut client = $client
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(usize::MAX);
        // The client's deadline, enforced on our side as grpc-js does.
        match tokio::time::timeout($deadline, client.$method(request)).await {
            Err(_) => Ok(Err(tonic::Status::deadline_exceeded("Deadline exceeded"))),
            Ok(Ok(response)) => serde_json::to_value(response.into_inner())
                .map(Ok)
                .map_err(|e| format!("serialising the response: {e}")),
            Ok(Err(status)) => Ok(Err(status)),
        }
    }};
}

/// Makes the unary call `service.method` (lowerCamel, as in the corpus) with a
/// proto3-JSON body. `Err` is a runner error (unknown method, body that does not fit).
pub async fn call_unary(
    channel: &Channel,
    service: &str,
    method: &str,
    body: Value,
    deadline: Duration,
) -> Result<UnaryOutcome, String> {
    use baton_proto::iam;
    use baton_proto::pubsub as ps;
    let channel = channel.clone();
    match (service, method) {
        ("Publisher", "createTopic") => {
            unary!(
                PublisherClient::new(channel),
                create_topic,
                ps::Topic,
                body,
                deadline
            )
        }
        ("Publisher", "updateTopic") => unary!(
            PublisherClient::new(channel),
            update_topic,
            ps::UpdateTopicRequest,
            body,
            deadline
        ),
        ("Publisher", "publish") => unary!(
            PublisherClient::new(channel),
            publish,
            ps::PublishRequest,
            body,
            deadline
        ),
        ("Publisher", "getTopic") => unary!(
            PublisherClient::new(channel),
            get_topic,
            ps::GetTopicRequest,
            body,
            deadline
        ),
        ("Publisher", "listTopics") => unary!(
            PublisherClient::new(channel),
            list_topics,
            ps::ListTopicsRequest,
            body,
            deadline
        ),
        ("Publisher", "listTopicSubscriptions") => unary!(
            PublisherClient::new(channel),
            list_topic_subscriptions,
            ps::ListTopicSubscriptionsRequest,
            body,
            deadline
        ),
        ("Publisher", "listTopicSnapshots") => unary!(
            PublisherClient::new(channel),
            list_topic_snapshots,
            ps::ListTopicSnapshotsRequest,
            body,
            deadline
        ),
        ("Publisher", "deleteTopic") => unary!(
            PublisherClient::new(channel),
            delete_topic,
            ps::DeleteTopicRequest,
            body,
            deadline
        ),
        ("Publisher", "detachSubscription") => unary!(
            PublisherClient::new(channel),
            detach_subscription,
            ps::DetachSubscriptionRequest,
            body,
            deadline
        ),
        ("Subscriber", "createSubscription") => unary!(
            SubscriberClient::new(channel),
            create_subscription,
            ps::Subscription,
            body,
            deadline
        ),
        ("Subscriber", "getSubscription") => unary!(
            SubscriberClient::new(channel),
            get_subscription,
            ps::GetSubscriptionRequest,
            body,
            deadline
        ),
        ("Subscriber", "updateSubscription") => unary!(
            SubscriberClient::new(channel),
            update_subscription,
            ps::UpdateSubscriptionRequest,
            body,
            deadline
        ),
        ("Subscriber", "listSubscriptions") => unary!(
            SubscriberClient::new(channel),
            list_subscriptions,
            ps::ListSubscriptionsRequest,
            body,
            deadline
        ),
        ("Subscriber", "deleteSubscription") => unary!(
            SubscriberClient::new(channel),
            delete_subscription,
            ps::DeleteSubscriptionRequest,
            body,
            deadline
        ),
        ("Subscriber", "modifyAckDeadline") => unary!(
            SubscriberClient::new(channel),
            modify_ack_deadline,
            ps::ModifyAckDeadlineRequest,
            body,
            deadline
        ),
        ("Subscriber", "acknowledge") => unary!(
            SubscriberClient::new(channel),
            acknowledge,
            ps::AcknowledgeRequest,
            body,
            deadline
        ),
        ("Subscriber", "pull") => unary!(
            SubscriberClient::new(channel),
            pull,
            ps::PullRequest,
            body,
            deadline
        ),
        ("Subscriber", "modifyPushConfig") => unary!(
            SubscriberClient::new(channel),
            modify_push_config,
            ps::ModifyPushConfigRequest,
            body,
            deadline
        ),
        ("Subscriber", "getSnapshot") => unary!(
            SubscriberClient::new(channel),
            get_snapshot,
            ps::GetSnapshotRequest,
            body,
            deadline
        ),
        ("Subscriber", "listSnapshots") => unary!(
            SubscriberClient::new(channel),
            list_snapshots,
            ps::ListSnapshotsRequest,
            body,
            deadline
        ),
        ("Subscriber", "createSnapshot") => unary!(
            SubscriberClient::new(channel),
            create_snapshot,
            ps::CreateSnapshotRequest,
            body,
            deadline
        ),
        ("Subscriber", "updateSnapshot") => unary!(
            SubscriberClient::new(channel),
            update_snapshot,
            ps::UpdateSnapshotRequest,
            body,
            deadline
        ),
        ("Subscriber", "deleteSnapshot") => unary!(
            SubscriberClient::new(channel),
            delete_snapshot,
            ps::DeleteSnapshotRequest,
            body,
            deadline
        ),
        ("Subscriber", "seek") => unary!(
            SubscriberClient::new(channel),
            seek,
            ps::SeekRequest,
            body,
            deadline
        ),
        ("SchemaService", "createSchema") => unary!(
            SchemaServiceClient::new(channel),
            create_schema,
            ps::CreateSchemaRequest,
            body,
            deadline
        ),
        ("SchemaService", "getSchema") => unary!(
            SchemaServiceClient::new(channel),
            get_schema,
            ps::GetSchemaRequest,
            body,
            deadline
        ),
        ("SchemaService", "listSchemas") => unary!(
            SchemaServiceClient::new(channel),
            list_schemas,
            ps::ListSchemasRequest,
            body,
            deadline
        ),
        ("SchemaService", "listSchemaRevisions") => unary!(
            SchemaServiceClient::new(channel),
            list_schema_revisions,
            ps::ListSchemaRevisionsRequest,
            body,
            deadline
        ),
        ("SchemaService", "commitSchema") => unary!(
            SchemaServiceClient::new(channel),
            commit_schema,
            ps::CommitSchemaRequest,
            body,
            deadline
        ),
        ("SchemaService", "rollbackSchema") => unary!(
            SchemaServiceClient::new(channel),
            rollback_schema,
            ps::RollbackSchemaRequest,
            body,
            deadline
        ),
        ("SchemaService", "deleteSchemaRevision") => unary!(
            SchemaServiceClient::new(channel),
            delete_schema_revision,
            ps::DeleteSchemaRevisionRequest,
            body,
            deadline
        ),
        ("SchemaService", "deleteSchema") => unary!(
            SchemaServiceClient::new(channel),
            delete_schema,
            ps::DeleteSchemaRequest,
            body,
            deadline
        ),
        ("SchemaService", "validateSchema") => unary!(
            SchemaServiceClient::new(channel),
            validate_schema,
            ps::ValidateSchemaRequest,
            body,
            deadline
        ),
        ("SchemaService", "validateMessage") => unary!(
            SchemaServiceClient::new(channel),
            validate_message,
            ps::ValidateMessageRequest,
            body,
            deadline
        ),
        ("IAMPolicy", "setIamPolicy") => unary!(
            IamPolicyClient::new(channel),
            set_iam_policy,
            iam::SetIamPolicyRequest,
            body,
            deadline
        ),
        ("IAMPolicy", "getIamPolicy") => unary!(
            IamPolicyClient::new(channel),
            get_iam_policy,
            iam::GetIamPolicyRequest,
            body,
            deadline
        ),
        ("IAMPolicy", "testIamPermissions") => unary!(
            IamPolicyClient::new(channel),
            test_iam_permissions,
            iam::TestIamPermissionsRequest,
            body,
            deadline
        ),
        _ => Err(format!("unknown gRPC method {service}.{method}")),
    }
}

/// What the reading side of a StreamingPull session reports.
#[derive(Debug)]
pub enum StreamEvent {
    Response(Box<StreamingPullResponse>),
    /// The call ended: `OK` or the error status.
    Status(tonic::Status),
}

/// A live StreamingPull call driven by a script.
#[derive(Debug)]
pub struct StreamSession {
    requests: Option<mpsc::Sender<StreamingPullRequest>>,
    pub events: mpsc::UnboundedReceiver<StreamEvent>,
    reader: tokio::task::JoinHandle<()>,
}

impl StreamSession {
    /// Opens the call. Requests are sent as `write` actions arrive.
    pub fn open(channel: &Channel) -> Self {
        let (requests, request_rx) = mpsc::channel::<StreamingPullRequest>(64);
        let (event_tx, events) = mpsc::unbounded_channel();
        let mut client = SubscriberClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(usize::MAX);
        let reader = tokio::spawn(async move {
            match client.streaming_pull(ReceiverStream::new(request_rx)).await {
                Err(status) => {
                    let _ = event_tx.send(StreamEvent::Status(status));
                }
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(message)) => {
                                let _ = event_tx.send(StreamEvent::Response(Box::new(message)));
                            }
                            Ok(None) => {
                                let _ = event_tx.send(StreamEvent::Status(tonic::Status::new(
                                    tonic::Code::Ok,
                                    "",
                                )));
                                break;
                            }
                            Err(status) => {
                                let _ = event_tx.send(StreamEvent::Status(status));
                                break;
                            }
                        }
                    }
                }
            }
        });
        Self {
            requests: Some(requests),
            events,
            reader,
        }
    }

    /// Sends one request (a `write` action). Writes after the call ended are dropped,
    /// as grpc-js does.
    pub async fn write(&mut self, request: StreamingPullRequest) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(request).await;
        }
    }

    /// Half-closes the request side (`end`).
    pub fn end(&mut self) {
        self.requests = None;
    }

    /// Cancels the call (`cancel`): the HTTP/2 stream is reset.
    pub fn cancel(&mut self) {
        self.requests = None;
        self.reader.abort();
    }
}

impl Drop for StreamSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
