//! The Subscriber service's RPCs, but StreamingPull (see
//! [`super::streaming_pull`]).

use baton_broker::PullWait;
use baton_proto::pubsub::{
    AcknowledgeRequest, CreateSnapshotRequest, DeleteSnapshotRequest, DeleteSubscriptionRequest,
    GetSnapshotRequest, GetSubscriptionRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    ListSubscriptionsRequest, ListSubscriptionsResponse, ModifyAckDeadlineRequest,
    ModifyPushConfigRequest, PullRequest, PullResponse, SeekRequest, SeekResponse, Snapshot,
    Subscription, UpdateSnapshotRequest, UpdateSubscriptionRequest,
};
use baton_proto::wkt;

use super::rpc::{FromPage, list_response, mask_paths, rpcs};

list_response!(ListSubscriptionsResponse, subscriptions, Subscription);
list_response!(ListSnapshotsResponse, snapshots, Snapshot);

rpcs! {
    /// CreateSubscription.
    CreateSubscription("google.pubsub.v1.Subscriber", Durable) Subscription => Subscription,
    |api, _, subscription| api.broker.create_subscription(subscription);

    /// GetSubscription.
    GetSubscription("google.pubsub.v1.Subscriber", Immediate)
        GetSubscriptionRequest => Subscription,
    |api, _, r| api.broker.get_subscription(&r.subscription);

    /// UpdateSubscription: the mutable fields its mask names.
    UpdateSubscription("google.pubsub.v1.Subscriber", Durable)
        UpdateSubscriptionRequest => Subscription,
    |api, _, r| api
        .broker
        .update_subscription(r.subscription.unwrap_or_default(), &mask_paths(r.update_mask));

    /// ListSubscriptions of a project.
    ListSubscriptions("google.pubsub.v1.Subscriber", Immediate)
        ListSubscriptionsRequest => ListSubscriptionsResponse,
    |api, _, r| api
        .broker
        .list_subscriptions(&r.project, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// DeleteSubscription: its backlog and leases go with it.
    DeleteSubscription("google.pubsub.v1.Subscriber", Durable)
        DeleteSubscriptionRequest => wkt::Empty,
    |api, _, r| api.broker.delete_subscription(&r.subscription).map(|()| wkt::Empty {});

    /// ModifyAckDeadline: extends leases, or with 0 nacks them (a nack counts
    /// a delivery attempt and may dead-letter, so it is durable too).
    ModifyAckDeadline("google.pubsub.v1.Subscriber", Durable)
        ModifyAckDeadlineRequest => wkt::Empty,
    |api, _, r| api
        .broker
        .modify_ack_deadline(&r.subscription, &r.ack_ids, r.ack_deadline_seconds)
        .map(|()| wkt::Empty {});

    /// Acknowledge.
    Acknowledge("google.pubsub.v1.Subscriber", Durable) AcknowledgeRequest => wkt::Empty,
    |api, _, r| api
        .broker
        .acknowledge(&r.subscription, &r.ack_ids)
        .map(|()| wkt::Empty {});

    /// Pull: waits for messages until shortly before the caller's deadline
    /// unless `return_immediately`.
    Pull("google.pubsub.v1.Subscriber", Immediate) PullRequest => PullResponse,
    |api, ctx, r| {
        #[allow(deprecated)]
        let wait = if r.return_immediately {
            PullWait::Immediate
        } else {
            PullWait::Until(api.broker.clock().now() + ctx.pull_wait())
        };
        api.broker
            .pull(&r.subscription, r.max_messages, wait)
            .await
            .map(|received_messages| PullResponse { received_messages })
    };

    /// ModifyPushConfig.
    ModifyPushConfig("google.pubsub.v1.Subscriber", Durable)
        ModifyPushConfigRequest => wkt::Empty,
    |api, _, r| api
        .broker
        .modify_push_config(&r.subscription, r.push_config)
        .map(|()| wkt::Empty {});

    /// GetSnapshot.
    GetSnapshot("google.pubsub.v1.Subscriber", Immediate) GetSnapshotRequest => Snapshot,
    |api, _, r| api.broker.get_snapshot(&r.snapshot);

    /// ListSnapshots of a project.
    ListSnapshots("google.pubsub.v1.Subscriber", Immediate)
        ListSnapshotsRequest => ListSnapshotsResponse,
    |api, _, r| api
        .broker
        .list_snapshots(&r.project, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// CreateSnapshot of a subscription's backlog.
    CreateSnapshot("google.pubsub.v1.Subscriber", Durable) CreateSnapshotRequest => Snapshot,
    |api, _, r| api.broker.create_snapshot(&r.name, &r.subscription, r.labels);

    /// UpdateSnapshot: labels and expire time.
    UpdateSnapshot("google.pubsub.v1.Subscriber", Durable) UpdateSnapshotRequest => Snapshot,
    |api, _, r| api
        .broker
        .update_snapshot(r.snapshot.unwrap_or_default(), &mask_paths(r.update_mask));

    /// DeleteSnapshot.
    DeleteSnapshot("google.pubsub.v1.Subscriber", Durable) DeleteSnapshotRequest => wkt::Empty,
    |api, _, r| api.broker.delete_snapshot(&r.snapshot).map(|()| wkt::Empty {});

    /// Seek to a snapshot or a time.
    Seek("google.pubsub.v1.Subscriber", Durable) SeekRequest => SeekResponse,
    |api, _, r| api.broker.seek(&r.subscription, r.target).map(|()| SeekResponse {});
}
