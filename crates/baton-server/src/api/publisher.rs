//! The Publisher service's RPCs.

use baton_broker::PublishBatch;
use baton_proto::pubsub::{
    DeleteTopicRequest, DetachSubscriptionRequest, DetachSubscriptionResponse, GetTopicRequest,
    ListTopicSnapshotsRequest, ListTopicSnapshotsResponse, ListTopicSubscriptionsRequest,
    ListTopicSubscriptionsResponse, ListTopicsRequest, ListTopicsResponse, PublishRequest,
    PublishResponse, Topic, UpdateTopicRequest,
};
use baton_proto::wkt;
use serde::Deserialize;

use super::rpc::{FromPage, list_response, mask_paths, rpcs};

/// A Publish request with its messages' trace contexts held apart from their
/// attribute maps ([`PublishBatch`]): what the gRPC route decodes straight
/// from the wire, and what the other transports' standard request becomes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "PublishRequest")]
pub struct PublishCall(pub PublishBatch);

impl From<PublishRequest> for PublishCall {
    fn from(request: PublishRequest) -> Self {
        Self(request.into())
    }
}

list_response!(ListTopicsResponse, topics, Topic);
list_response!(ListTopicSubscriptionsResponse, subscriptions, String);
list_response!(ListTopicSnapshotsResponse, snapshots, String);

rpcs! {
    /// CreateTopic.
    CreateTopic("google.pubsub.v1.Publisher", Durable) Topic => Topic,
    |api, _, topic| api.broker.create_topic(topic);

    /// UpdateTopic: the fields its mask names.
    UpdateTopic("google.pubsub.v1.Publisher", Durable) UpdateTopicRequest => Topic,
    |api, _, r| api.broker.update_topic(r.topic.unwrap_or_default(), &mask_paths(r.update_mask));

    /// Publish: the message ids, in order.
    Publish("google.pubsub.v1.Publisher", Durable) PublishCall => PublishResponse,
    |api, _, PublishCall(r)| api
        .broker
        .publish(&r.topic, r.messages)
        .map(|message_ids| PublishResponse { message_ids });

    /// GetTopic.
    GetTopic("google.pubsub.v1.Publisher", Immediate) GetTopicRequest => Topic,
    |api, _, r| api.broker.get_topic(&r.topic);

    /// ListTopics of a project.
    ListTopics("google.pubsub.v1.Publisher", Immediate) ListTopicsRequest => ListTopicsResponse,
    |api, _, r| api
        .broker
        .list_topics(&r.project, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// ListTopicSubscriptions: names of the topic's attached subscriptions.
    ListTopicSubscriptions("google.pubsub.v1.Publisher", Immediate)
        ListTopicSubscriptionsRequest => ListTopicSubscriptionsResponse,
    |api, _, r| api
        .broker
        .list_topic_subscriptions(&r.topic, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// ListTopicSnapshots: names of the snapshots of the topic.
    ListTopicSnapshots("google.pubsub.v1.Publisher", Immediate)
        ListTopicSnapshotsRequest => ListTopicSnapshotsResponse,
    |api, _, r| api
        .broker
        .list_topic_snapshots(&r.topic, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// DeleteTopic: its subscriptions stay, on `_deleted-topic_`.
    DeleteTopic("google.pubsub.v1.Publisher", Durable) DeleteTopicRequest => wkt::Empty,
    |api, _, r| api.broker.delete_topic(&r.topic).map(|()| wkt::Empty {});

    /// DetachSubscription: it stops receiving and its backlog is dropped.
    DetachSubscription("google.pubsub.v1.Publisher", Durable)
        DetachSubscriptionRequest => DetachSubscriptionResponse,
    |api, _, r| api
        .broker
        .detach_subscription(&r.subscription)
        .map(|()| DetachSubscriptionResponse {});
}
