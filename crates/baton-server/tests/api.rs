#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every Publisher and Subscriber RPC over gRPC, with the error cases of
//! `pubsub-api.md` sections 2 and 3: names, existence, limits and bounds.
//! Messages are the recorded emulator's (the conformance corpus) where it
//! records one, and the real service's where the spec says to follow it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::pubsub::{
    CreateSnapshotRequest, DeadLetterPolicy, DeleteSnapshotRequest, DeleteSubscriptionRequest,
    DeleteTopicRequest, DetachSubscriptionRequest, GetSnapshotRequest, GetSubscriptionRequest,
    GetTopicRequest, ListSnapshotsRequest, ListSubscriptionsRequest, ListTopicSnapshotsRequest,
    ListTopicSubscriptionsRequest, ListTopicsRequest, ModifyPushConfigRequest, PublishRequest,
    PubsubMessage, PushConfig, RetryPolicy, SeekRequest, Snapshot, Subscription, Topic,
    UpdateSnapshotRequest, UpdateSubscriptionRequest, UpdateTopicRequest, seek_request,
};
use baton_proto::wkt;
use baton_testkit::prelude::*;
use baton_testkit::virtual_time;
use tonic::Code;

/// A wall-clock time as a protobuf timestamp.
fn timestamp(time: SystemTime) -> wkt::Timestamp {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap();
    wkt::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap(),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap(),
    }
}

fn invalid_topic(name: &str) -> String {
    format!("Invalid [topics] name: (name={name})")
}

fn invalid_subscription(name: &str) -> String {
    format!("Invalid [subscriptions] name: (name={name})")
}

fn invalid_snapshot(name: &str) -> String {
    format!("Invalid [snapshots] name: (name={name})")
}

fn topic(name: &str) -> Topic {
    Topic {
        name: name.to_string(),
        ..Default::default()
    }
}

fn subscription(id: &str, topic: &str) -> Subscription {
    Subscription {
        name: subscription_name(id),
        topic: topic.to_string(),
        ..Default::default()
    }
}

/// Ids that break one rule each: length 3-255, starts with a letter, only
/// `[A-Za-z0-9-_.~+%]`, no `goog` prefix.
fn invalid_ids() -> Vec<String> {
    vec![
        "ab".to_string(),
        format!("t{}", "x".repeat(255)),
        "1abc".to_string(),
        "-abc".to_string(),
        "_abc".to_string(),
        "~abc".to_string(),
        "topic with space".to_string(),
        "topic/extra".to_string(),
        "topic*star".to_string(),
        "topic#hash".to_string(),
        "topic:colon".to_string(),
        "tópico".to_string(),
        "goog-topic".to_string(),
        "googTopic".to_string(),
        "goog".to_string(),
    ]
}

fn valid_ids() -> Vec<String> {
    vec![
        "abc".to_string(),
        format!("t{}", "x".repeat(254)),
        "Topic_1.two~three+four%five-six".to_string(),
        "GoogTopic".to_string(),
        "my-goog-topic".to_string(),
        "Z9z".to_string(),
    ]
}

#[tokio::test]
async fn topic_names_follow_every_rule() {
    let t = TestServer::start().await;
    let mut publisher = t.publisher();
    let mut names: Vec<String> = invalid_ids().iter().map(|id| topic_name(id)).collect();
    names.extend([
        String::new(),
        "just-a-name".to_string(),
        format!("projects/{PROJECT}/subscriptions/not-a-topic"),
        "projects//topics/abc".to_string(),
        format!("projects/{PROJECT}/topics/"),
        format!("projects/{PROJECT}/topics"),
    ]);
    for name in &names {
        assert_status(
            publisher.create_topic(topic(name)).await,
            Code::InvalidArgument,
            &invalid_topic(name),
        );
        // Checked before existence: none of these exists.
        assert_status(
            publisher
                .get_topic(GetTopicRequest {
                    topic: name.clone(),
                })
                .await,
            Code::InvalidArgument,
            &invalid_topic(name),
        );
        assert_status(
            publisher
                .delete_topic(DeleteTopicRequest {
                    topic: name.clone(),
                })
                .await,
            Code::InvalidArgument,
            &invalid_topic(name),
        );
        assert_status(
            publisher
                .publish(PublishRequest {
                    topic: name.clone(),
                    messages: vec![msg("x")],
                })
                .await,
            Code::InvalidArgument,
            &invalid_topic(name),
        );
    }
    for id in valid_ids() {
        let name = topic_name(&id);
        let created = publisher.create_topic(topic(&name)).await.unwrap();
        assert_eq!(created.into_inner().name, name);
        let got = publisher
            .get_topic(GetTopicRequest {
                topic: name.clone(),
            })
            .await
            .unwrap();
        assert_eq!(got.into_inner().name, name);
    }
    let missing = topic_name("missing-topic");
    assert_status(
        publisher
            .get_topic(GetTopicRequest {
                topic: missing.clone(),
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
    assert_status(
        publisher
            .delete_topic(DeleteTopicRequest {
                topic: missing.clone(),
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
    assert_status(
        publisher
            .publish(PublishRequest {
                topic: missing,
                messages: vec![msg("x")],
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
}

#[tokio::test]
async fn subscription_and_snapshot_names_follow_every_rule() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut subscriber = t.subscriber();
    let mut bad_subs: Vec<String> = invalid_ids()
        .iter()
        .map(|id| subscription_name(id))
        .collect();
    bad_subs.extend([
        "bare".to_string(),
        String::new(),
        topic_name("a-topic-name"),
    ]);
    for name in &bad_subs {
        let expected = invalid_subscription(name);
        assert_status(
            subscriber
                .create_subscription(Subscription {
                    name: name.clone(),
                    topic: topic.clone(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &expected,
        );
        assert_status(
            subscriber
                .get_subscription(GetSubscriptionRequest {
                    subscription: name.clone(),
                })
                .await,
            Code::InvalidArgument,
            &expected,
        );
        assert_status(
            subscriber
                .delete_subscription(DeleteSubscriptionRequest {
                    subscription: name.clone(),
                })
                .await,
            Code::InvalidArgument,
            &expected,
        );
        assert_status(
            subscriber.pull(pull_request(name, 1, true)).await,
            Code::InvalidArgument,
            &expected,
        );
    }
    for id in valid_ids() {
        let name = subscription_name(&id);
        let created = t
            .create_subscription_with(Subscription {
                name: name.clone(),
                topic: topic.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(created.name, name);
    }

    let mut bad_snapshots: Vec<String> = invalid_ids().iter().map(|id| snapshot_name(id)).collect();
    bad_snapshots.push("snap".to_string());
    for name in &bad_snapshots {
        let expected = invalid_snapshot(name);
        assert_status(
            subscriber
                .create_snapshot(CreateSnapshotRequest {
                    name: name.clone(),
                    subscription: sub.clone(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &expected,
        );
        assert_status(
            subscriber
                .get_snapshot(GetSnapshotRequest {
                    snapshot: name.clone(),
                })
                .await,
            Code::InvalidArgument,
            &expected,
        );
        assert_status(
            subscriber
                .delete_snapshot(DeleteSnapshotRequest {
                    snapshot: name.clone(),
                })
                .await,
            Code::InvalidArgument,
            &expected,
        );
    }
    let snapshot = subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: snapshot_name("Snap_1.two~three+four%five-six"),
            subscription: sub.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        snapshot.name,
        snapshot_name("Snap_1.two~three+four%five-six")
    );
}

#[tokio::test]
async fn topic_create_get_update_delete() {
    let t = TestServer::start().await;
    let mut publisher = t.publisher();
    let name = topic_name("events");
    let wanted = Topic {
        name: name.clone(),
        labels: [("env".to_string(), "test".to_string())].into(),
        message_retention_duration: Some(secs(600)),
        ..Default::default()
    };
    let created = publisher
        .create_topic(wanted.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created, wanted);
    let got = publisher
        .get_topic(GetTopicRequest {
            topic: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, wanted);
    assert_status(
        publisher.create_topic(topic(&name)).await,
        Code::AlreadyExists,
        "Topic already exists",
    );

    // Retention bounds: 10 minutes to 31 days.
    for seconds in [599_i64, 31 * 24 * 3600 + 1, -1] {
        assert_status(
            publisher
                .create_topic(Topic {
                    name: topic_name(&format!("retention-{}", seconds.abs())),
                    message_retention_duration: Some(secs(seconds)),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "message_retention_duration out of bounds",
        );
    }
    let longest = publisher
        .create_topic(Topic {
            name: topic_name("retention-max"),
            message_retention_duration: Some(secs(31 * 24 * 3600)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(longest.message_retention_duration, Some(secs(2_678_400)));

    // UpdateTopic applies only the masked fields.
    let updated = publisher
        .update_topic(UpdateTopicRequest {
            topic: Some(Topic {
                name: name.clone(),
                message_retention_duration: Some(secs(1200)),
                ..Default::default()
            }),
            update_mask: mask(&["message_retention_duration"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.message_retention_duration, Some(secs(1200)));
    assert_eq!(updated.labels, wanted.labels, "unmasked labels kept");
    let got = publisher
        .get_topic(GetTopicRequest {
            topic: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, updated);

    let retention_update =
        |mask_paths: Option<wkt::FieldMask>, name: &str, seconds: i64| UpdateTopicRequest {
            topic: Some(Topic {
                name: name.to_string(),
                message_retention_duration: Some(secs(seconds)),
                ..Default::default()
            }),
            update_mask: mask_paths,
        };
    let no_mask = "The update_mask in the UpdateTopicRequest must be set, and must contain a non-empty paths list.";
    assert_status(
        publisher
            .update_topic(retention_update(None, &name, 1200))
            .await,
        Code::InvalidArgument,
        no_mask,
    );
    assert_status(
        publisher
            .update_topic(retention_update(mask(&[]), &name, 1200))
            .await,
        Code::InvalidArgument,
        no_mask,
    );
    assert_status(
        publisher
            .update_topic(retention_update(
                mask(&["messageRetentionDuration"]),
                &name,
                1200,
            ))
            .await,
        Code::InvalidArgument,
        "Invalid update_mask provided in the UpdateTopicRequest: messageRetentionDuration is not a known Topic field. Note that field paths must be of the form 'schema_settings' rather than 'schemaSetings'.",
    );
    assert_status(
        publisher
            .update_topic(retention_update(
                mask(&["message_retention_duration"]),
                &name,
                599,
            ))
            .await,
        Code::InvalidArgument,
        "message_retention_duration out of bounds",
    );
    assert_status(
        publisher
            .update_topic(retention_update(
                mask(&["message_retention_duration"]),
                &topic_name("missing-topic"),
                1200,
            ))
            .await,
        Code::NotFound,
        "Topic not found.",
    );
    assert_status(
        publisher
            .update_topic(retention_update(
                mask(&["message_retention_duration"]),
                "ab",
                1200,
            ))
            .await,
        Code::InvalidArgument,
        &invalid_topic("ab"),
    );

    publisher
        .delete_topic(DeleteTopicRequest {
            topic: name.clone(),
        })
        .await
        .unwrap();
    assert_status(
        publisher
            .get_topic(GetTopicRequest {
                topic: name.clone(),
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
    assert_status(
        publisher
            .delete_topic(DeleteTopicRequest { topic: name })
            .await,
        Code::NotFound,
        "Topic not found",
    );
}

#[tokio::test]
async fn list_topics_subscriptions_and_snapshots_page() {
    let t = TestServer::start().await;
    let mut publisher = t.publisher();
    let mut subscriber = t.subscriber();
    let mut expected_topics = Vec::new();
    for i in 0..7 {
        expected_topics.push(t.create_topic(&format!("page-{i}")).await);
    }
    for i in 0..2 {
        publisher
            .create_topic(topic(&format!("projects/other-project/topics/else-{i}")))
            .await
            .unwrap();
    }
    expected_topics.sort();

    // Pages of 3: 3 + 3 + 1, tokens on all but the last page.
    let pages = all_pages(async |page_token| {
        publisher
            .list_topics(ListTopicsRequest {
                project: project(),
                page_size: 3,
                page_token,
            })
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.topics.len()).collect();
    let seen: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.topics)
        .map(|t| t.name)
        .collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(seen, expected_topics);
    let all = publisher
        .list_topics(ListTopicsRequest {
            project: project(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.topics.into_iter().map(|t| t.name).collect::<Vec<_>>(),
        expected_topics
    );
    assert!(all.next_page_token.is_empty());
    let other = publisher
        .list_topics(ListTopicsRequest {
            project: "projects/other-project".to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.topics.len(), 2);
    assert_status(
        publisher
            .list_topics(ListTopicsRequest {
                project: "not-a-project".to_string(),
                ..Default::default()
            })
            .await,
        Code::Unknown,
        "Application error processing RPC",
    );

    // Subscriptions of the project, and of one topic.
    let main = expected_topics[0].clone();
    let side = expected_topics[1].clone();
    let mut main_subs = Vec::new();
    for i in 0..5 {
        main_subs.push(t.create_subscription(&format!("main-{i}"), &main).await);
    }
    let side_sub = t.create_subscription("side-0", &side).await;
    main_subs.sort();
    let mut all_subs = main_subs.clone();
    all_subs.push(side_sub.clone());
    all_subs.sort();

    let pages = all_pages(async |page_token| {
        subscriber
            .list_subscriptions(ListSubscriptionsRequest {
                project: project(),
                page_size: 4,
                page_token,
            })
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    for page in &pages {
        assert!(page.subscriptions.len() <= 4);
    }
    assert_eq!(pages.len(), 2);
    let seen: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.subscriptions)
        .map(|s| s.name)
        .collect();
    assert_eq!(seen, all_subs);
    assert_status(
        subscriber
            .list_subscriptions(ListSubscriptionsRequest {
                project: "not-a-project".to_string(),
                ..Default::default()
            })
            .await,
        Code::Unknown,
        "Application error processing RPC",
    );

    let pages = all_pages(async |page_token| {
        publisher
            .list_topic_subscriptions(ListTopicSubscriptionsRequest {
                topic: main.clone(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.subscriptions.len()).collect();
    let seen: Vec<String> = pages.into_iter().flat_map(|p| p.subscriptions).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, main_subs);
    assert_status(
        publisher
            .list_topic_subscriptions(ListTopicSubscriptionsRequest {
                topic: "orders".to_string(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &invalid_topic("orders"),
    );

    // Snapshots of the project, and of one topic.
    let mut main_snapshots = Vec::new();
    for (i, sub) in main_subs.iter().take(3).enumerate() {
        let name = snapshot_name(&format!("snap-{i}"));
        subscriber
            .create_snapshot(CreateSnapshotRequest {
                name: name.clone(),
                subscription: sub.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        main_snapshots.push(name);
    }
    let side_snapshot = snapshot_name("snap-side");
    subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: side_snapshot.clone(),
            subscription: side_sub,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut all_snapshots = main_snapshots.clone();
    all_snapshots.push(side_snapshot);
    all_snapshots.sort();

    let pages = all_pages(async |page_token| {
        subscriber
            .list_snapshots(ListSnapshotsRequest {
                project: project(),
                page_size: 3,
                page_token,
            })
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.snapshots.len()).collect();
    let seen: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.snapshots)
        .map(|s| s.name)
        .collect();
    assert_eq!(sizes, vec![3, 1]);
    assert_eq!(seen, all_snapshots);

    let pages = all_pages(async |page_token| {
        publisher
            .list_topic_snapshots(ListTopicSnapshotsRequest {
                topic: main.clone(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.snapshots.len()).collect();
    let seen: Vec<String> = pages.into_iter().flat_map(|p| p.snapshots).collect();
    assert_eq!(sizes, vec![2, 1]);
    assert_eq!(seen, main_snapshots);
    assert_status(
        publisher
            .list_topic_snapshots(ListTopicSnapshotsRequest {
                topic: topic_name("ab"),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &invalid_topic(&topic_name("ab")),
    );
}

fn publish(topic: &str, messages: Vec<PubsubMessage>) -> PublishRequest {
    PublishRequest {
        topic: topic.to_string(),
        messages,
    }
}

#[tokio::test]
async fn publish_rejects_empty_requests_and_messages() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut publisher = t.publisher();
    assert_status(
        publisher.publish(publish(&topic, vec![])).await,
        Code::InvalidArgument,
        "No messages to publish",
    );
    let empty_cases = vec![
        vec![PubsubMessage::default()],
        vec![keyed("", "some-key")],
        vec![msg("fine"), PubsubMessage::default()],
    ];
    for messages in empty_cases {
        assert_status(
            publisher.publish(publish(&topic, messages)).await,
            Code::InvalidArgument,
            "Some messages are empty",
        );
    }
    assert_eq!(t.backlog(&sub), 0, "a rejected request publishes nothing");
    // Attributes alone make a message.
    let ids = t
        .publish_messages(&topic, vec![with_attributes("", &[("kind", "ping")])])
        .await;
    assert_eq!(ids.len(), 1);
    let got = t.pull_now(&sub, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.as_ref().unwrap().attributes["kind"], "ping");
}

#[tokio::test]
async fn publish_enforces_count_and_size_limits() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut publisher = t.publisher();

    let thousand: Vec<PubsubMessage> = (0..1000).map(|i| msg(&format!("m{i}"))).collect();
    let ids = publisher
        .publish(publish(&topic, thousand))
        .await
        .unwrap()
        .into_inner()
        .message_ids;
    assert_eq!(ids.len(), 1000);
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 1000, "message ids are unique");
    assert!(
        ids.iter()
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    );
    let too_many: Vec<PubsubMessage> = (0..1001).map(|i| msg(&format!("m{i}"))).collect();
    assert_status(
        publisher.publish(publish(&topic, too_many)).await,
        Code::InvalidArgument,
        "The value for message_count is too large. You passed 1001 in the request, but the maximum value is 1000.",
    );

    // One message of exactly 10 MB goes through; one byte more does not,
    // whether the byte is data, attribute or ordering key.
    let ten_mb = PubsubMessage {
        data: vec![b'd'; 10_000_000],
        ..Default::default()
    };
    publisher
        .publish(publish(&topic, vec![ten_mb]))
        .await
        .unwrap();
    let too_big = "The value for message_size is too large. You passed 10000001 in the request, but the maximum value is 10000000.";
    assert_status(
        publisher
            .publish(publish(
                &topic,
                vec![PubsubMessage {
                    data: vec![b'd'; 10_000_001],
                    ..Default::default()
                }],
            ))
            .await,
        Code::InvalidArgument,
        too_big,
    );
    assert_status(
        publisher
            .publish(publish(
                &topic,
                vec![PubsubMessage {
                    data: vec![b'd'; 9_999_990],
                    attributes: [("k".to_string(), "0123456789".to_string())].into(),
                    ..Default::default()
                }],
            ))
            .await,
        Code::InvalidArgument,
        too_big,
    );
    assert_status(
        publisher
            .publish(publish(
                &topic,
                vec![PubsubMessage {
                    data: vec![b'd'; 9_999_991],
                    ordering_key: "0123456789".to_string(),
                    ..Default::default()
                }],
            ))
            .await,
        Code::InvalidArgument,
        too_big,
    );
    // Two messages within the message limit, together over the request limit.
    let half = || PubsubMessage {
        data: vec![b'h'; 5_000_001],
        ..Default::default()
    };
    assert_status(
        publisher
            .publish(publish(&topic, vec![half(), half()]))
            .await,
        Code::InvalidArgument,
        "Request payload size exceeds the limit: 10000000 bytes.",
    );
    assert_eq!(t.backlog(&sub), 1001, "only the accepted requests count");
}

#[tokio::test]
async fn publish_enforces_attribute_and_ordering_key_limits() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut publisher = t.publisher();
    let with_n_attributes = |n: usize| PubsubMessage {
        data: b"x".to_vec(),
        attributes: (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect(),
        ..Default::default()
    };
    publisher
        .publish(publish(&topic, vec![with_n_attributes(100)]))
        .await
        .unwrap();
    assert_status(
        publisher
            .publish(publish(&topic, vec![with_n_attributes(101)]))
            .await,
        Code::InvalidArgument,
        "The value for attributes is too large. You passed 101 in the request, but the maximum value is 100.",
    );

    let key_256 = "k".repeat(256);
    publisher
        .publish(publish(
            &topic,
            vec![with_attributes("x", &[(&key_256, "v")])],
        ))
        .await
        .unwrap();
    let key_257 = "k".repeat(257);
    assert_status(
        publisher
            .publish(publish(
                &topic,
                vec![with_attributes("x", &[(&key_257, "v")])],
            ))
            .await,
        Code::InvalidArgument,
        &format!(
            "The attribute \"{key_257}\" in the request has a key that is too long. The length is 257 characters, but the maximum allowed is 256. Refer to https://cloud.google.com/pubsub/quotas for more information."
        ),
    );
    let value_1024 = "v".repeat(1024);
    publisher
        .publish(publish(
            &topic,
            vec![with_attributes("x", &[("k", &value_1024)])],
        ))
        .await
        .unwrap();
    let value_1025 = "v".repeat(1025);
    assert_status(
        publisher
            .publish(publish(
                &topic,
                vec![with_attributes("x", &[("k", &value_1025)])],
            ))
            .await,
        Code::InvalidArgument,
        "The attribute \"k\" in the request has a value that is too long. The length is 1025 characters, but the maximum allowed is 1024. Refer to https://cloud.google.com/pubsub/quotas for more information.",
    );

    publisher
        .publish(publish(&topic, vec![keyed("x", &"o".repeat(1024))]))
        .await
        .unwrap();
    assert_status(
        publisher
            .publish(publish(&topic, vec![keyed("x", &"o".repeat(1025))]))
            .await,
        Code::InvalidArgument,
        "The value for ordering_key_size is too large. You passed 1025 in the request, but the maximum value is 1024.",
    );
    assert_eq!(
        t.backlog(&sub),
        4,
        "only the accepted messages were published"
    );
}

#[tokio::test]
async fn publish_request_carries_one_ordering_key() {
    // pubsub-api.md section 3: a Publish request's messages all have one
    // ordering key. The real service answers FAILED_PRECONDITION "In a single
    // publish request, all messages must have no ordering key or they must
    // all have the same ordering key."
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let mut publisher = t.publisher();
    publisher
        .publish(publish(&topic, vec![keyed("1", "a"), keyed("2", "a")]))
        .await
        .unwrap();
    for messages in [
        vec![keyed("1", "a"), keyed("2", "b")],
        vec![keyed("1", "a"), msg("2")],
    ] {
        let status = assert_code(
            publisher.publish(publish(&topic, messages)).await,
            Code::FailedPrecondition,
        );
        assert!(
            status.message().contains(
                "all messages must have no ordering key or they must all have the same ordering key"
            ),
            "{status:?}"
        );
    }
}

/// On virtual time, so the publish time is exactly the server's clock.
#[tokio::test(start_paused = true)]
async fn publish_replaces_client_ids_and_times() {
    let t = TestServer::start_virtual().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let client_time = wkt::Timestamp {
        seconds: 946_684_800,
        nanos: 0,
    };
    let ids = t
        .publish_messages(
            &topic,
            vec![PubsubMessage {
                data: b"x".to_vec(),
                message_id: "client-chosen".to_string(),
                publish_time: Some(client_time),
                ..Default::default()
            }],
        )
        .await;
    assert_ne!(ids[0], "client-chosen");
    assert!(ids[0].bytes().all(|b| b.is_ascii_digit()), "{ids:?}");
    let more = t.publish(&topic, &["y", "z"]).await;
    let mut all = ids.clone();
    all.extend(more);
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 3);

    let got = t.pull_now(&sub, 10).await;
    let first = got
        .iter()
        .find(|m| data(m) == "x")
        .expect("x delivered")
        .message
        .clone()
        .unwrap();
    assert_eq!(first.message_id, ids[0]);
    let published = first.publish_time.expect("publish time set");
    assert_eq!(
        published,
        timestamp(virtual_time::start_wall() + Duration::from_secs(5)),
        "the publish time is the server's clock at the publish"
    );
}

#[tokio::test]
async fn subscription_create_defaults_and_bounds() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let mut subscriber = t.subscriber();
    let created = t
        .create_subscription_with(subscription("plain", &topic))
        .await;
    assert_eq!(
        created,
        Subscription {
            name: subscription_name("plain"),
            topic: topic.clone(),
            ack_deadline_seconds: 10,
            message_retention_duration: Some(secs(604_800)),
            push_config: Some(PushConfig::default()),
            ..Default::default()
        }
    );
    assert_status(
        subscriber
            .create_subscription(subscription("plain", &topic))
            .await,
        Code::AlreadyExists,
        "Subscription already exists",
    );
    assert_status(
        subscriber
            .create_subscription(subscription("orphan", &topic_name("missing-topic")))
            .await,
        Code::NotFound,
        "Subscription topic does not exist",
    );
    assert_status(
        subscriber
            .create_subscription(subscription("bad-topic", "orders"))
            .await,
        Code::InvalidArgument,
        &invalid_topic("orders"),
    );
    assert_status(
        subscriber
            .create_subscription(subscription("no-topic", ""))
            .await,
        Code::InvalidArgument,
        &invalid_topic(""),
    );

    // Ack deadline: 0 means 10, up to 600.
    for (seconds, expected) in [(0, 10), (10, 10), (600, 600)] {
        let created = t
            .create_subscription_with(Subscription {
                ack_deadline_seconds: seconds,
                ..subscription(&format!("deadline-{seconds}"), &topic)
            })
            .await;
        assert_eq!(created.ack_deadline_seconds, expected);
    }
    for seconds in [601, -1] {
        assert_status(
            subscriber
                .create_subscription(Subscription {
                    ack_deadline_seconds: seconds,
                    ..subscription("deadline-bad", &topic)
                })
                .await,
            Code::InvalidArgument,
            "ack_deadline_secs out of bounds",
        );
    }

    // Retention: 10 minutes at least, 31 days at most.
    for seconds in [599, 31 * 24 * 3600 + 1, -600] {
        assert_status(
            subscriber
                .create_subscription(Subscription {
                    message_retention_duration: Some(secs(seconds)),
                    ..subscription("retention-bad", &topic)
                })
                .await,
            Code::InvalidArgument,
            "message_retention_duration out of bounds",
        );
    }
    let shortest = t
        .create_subscription_with(Subscription {
            message_retention_duration: Some(secs(600)),
            ..subscription("retention-min", &topic)
        })
        .await;
    assert_eq!(shortest.message_retention_duration, Some(secs(600)));

    // Push endpoints must be URLs.
    assert_status(
        subscriber
            .create_subscription(Subscription {
                push_config: Some(PushConfig {
                    push_endpoint: "not a url".to_string(),
                    ..Default::default()
                }),
                ..subscription("push-bad", &topic)
            })
            .await,
        Code::InvalidArgument,
        "Unsupported push_endpoint",
    );
}

#[tokio::test]
async fn subscription_dead_letter_retry_and_filter_bounds() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("dead-letters").await;
    let mut subscriber = t.subscriber();
    let with_attempts = |id: &str, attempts: i32| Subscription {
        dead_letter_policy: Some(DeadLetterPolicy {
            dead_letter_topic: dead.clone(),
            max_delivery_attempts: attempts,
        }),
        ..subscription(id, &topic)
    };
    assert_status(
        subscriber
            .create_subscription(with_attempts("dl-4", 4))
            .await,
        Code::OutOfRange,
        "The value for max_delivery_attempts is too small. You passed 4 in the request, but the minimum value is 5.",
    );
    assert_status(
        subscriber
            .create_subscription(with_attempts("dl-101", 101))
            .await,
        Code::OutOfRange,
        "The value for max_delivery_attempts is too large. You passed 101 in the request, but the maximum value is 100.",
    );
    for (attempts, expected) in [(0, 5), (5, 5), (100, 100)] {
        let created = t
            .create_subscription_with(with_attempts(&format!("dl-ok-{attempts}"), attempts))
            .await;
        assert_eq!(
            created.dead_letter_policy.unwrap().max_delivery_attempts,
            expected
        );
    }
    assert_status(
        subscriber
            .create_subscription(Subscription {
                dead_letter_policy: Some(DeadLetterPolicy {
                    dead_letter_topic: topic_name("missing-dlq"),
                    max_delivery_attempts: 5,
                }),
                ..subscription("dl-missing", &topic)
            })
            .await,
        Code::NotFound,
        "Dead letter topic not found",
    );

    // Retry policy: each backoff 0-600 s, max >= min, defaults 10 s / 600 s.
    let with_retry = |id: &str, min: Option<i64>, max: Option<i64>| Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: min.map(secs),
            maximum_backoff: max.map(secs),
        }),
        ..subscription(id, &topic)
    };
    let created = t
        .create_subscription_with(with_retry("retry-ok", Some(1), Some(60)))
        .await;
    assert_eq!(
        created.retry_policy,
        Some(RetryPolicy {
            minimum_backoff: Some(secs(1)),
            maximum_backoff: Some(secs(60)),
        })
    );
    let created = t
        .create_subscription_with(with_retry("retry-defaults", None, None))
        .await;
    assert_eq!(
        created.retry_policy,
        Some(RetryPolicy {
            minimum_backoff: Some(secs(10)),
            maximum_backoff: Some(secs(600)),
        })
    );
    let created = t
        .create_subscription_with(with_retry("retry-edges", Some(0), Some(600)))
        .await;
    assert_eq!(
        created.retry_policy.unwrap().maximum_backoff,
        Some(secs(600))
    );
    assert_status(
        subscriber
            .create_subscription(with_retry("retry-inverted", Some(60), Some(1)))
            .await,
        Code::InvalidArgument,
        "The value for maximum_backoff is too small. You passed 1s in the request, but the minimum value is 60s.",
    );
    let status = assert_code(
        subscriber
            .create_subscription(with_retry("retry-min-big", Some(601), Some(601)))
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("minimum_backoff"), "{status:?}");
    let status = assert_code(
        subscriber
            .create_subscription(with_retry("retry-max-big", Some(1), Some(601)))
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("maximum_backoff"), "{status:?}");
    assert_code(
        subscriber
            .create_subscription(with_retry("retry-negative", Some(-1), Some(10)))
            .await,
        Code::InvalidArgument,
    );

    // Filters: at most 256 bytes; a bad one is INVALID_ARGUMENT (the real
    // service's answer; the emulator says UNKNOWN).
    let prefix = "attributes.kind = \"";
    let filter_256 = format!("{prefix}{}\"", "v".repeat(256 - prefix.len() - 1));
    assert_eq!(filter_256.len(), 256);
    let created = t
        .create_subscription_with(Subscription {
            filter: filter_256.clone(),
            ..subscription("filter-256", &topic)
        })
        .await;
    assert_eq!(created.filter, filter_256);
    let filter_257 = format!("{prefix}{}\"", "v".repeat(257 - prefix.len() - 1));
    assert_code(
        subscriber
            .create_subscription(Subscription {
                filter: filter_257,
                ..subscription("filter-257", &topic)
            })
            .await,
        Code::InvalidArgument,
    );
    for bad in ["attributes.kind =", "nope(attributes.kind, \"x\")"] {
        assert_code(
            subscriber
                .create_subscription(Subscription {
                    filter: bad.to_string(),
                    ..subscription("filter-bad", &topic)
                })
                .await,
            Code::InvalidArgument,
        );
    }
}

#[tokio::test]
async fn subscription_get_update_list_delete() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("dead-letters").await;
    let name = subscription_name("sub-a");
    let created = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 20,
            labels: [("a".to_string(), "b".to_string())].into(),
            filter: "attributes:kind".to_string(),
            ..subscription("sub-a", &topic)
        })
        .await;
    let mut subscriber = t.subscriber();
    let got = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);
    assert_status(
        subscriber
            .get_subscription(GetSubscriptionRequest {
                subscription: subscription_name("missing-sub"),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );

    let update = |sub: Subscription, paths: Option<wkt::FieldMask>| UpdateSubscriptionRequest {
        subscription: Some(sub),
        update_mask: paths,
    };
    let updated = subscriber
        .update_subscription(update(
            Subscription {
                name: name.clone(),
                ack_deadline_seconds: 45,
                retry_policy: Some(RetryPolicy {
                    minimum_backoff: Some(secs(3)),
                    maximum_backoff: Some(secs(9)),
                }),
                dead_letter_policy: Some(DeadLetterPolicy {
                    dead_letter_topic: dead.clone(),
                    max_delivery_attempts: 6,
                }),
                // Not in the mask: must stay as it was.
                labels: Default::default(),
                ..Default::default()
            },
            mask(&["ack_deadline_seconds", "retry_policy", "dead_letter_policy"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.ack_deadline_seconds, 45);
    assert_eq!(
        updated.retry_policy,
        Some(RetryPolicy {
            minimum_backoff: Some(secs(3)),
            maximum_backoff: Some(secs(9)),
        })
    );
    assert_eq!(
        updated
            .dead_letter_policy
            .as_ref()
            .unwrap()
            .max_delivery_attempts,
        6
    );
    assert_eq!(updated.labels, created.labels);
    assert_eq!(updated.filter, created.filter);
    assert_eq!(updated.topic, topic);
    let got = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, updated);

    let with_deadline = |seconds: i32| Subscription {
        name: name.clone(),
        ack_deadline_seconds: seconds,
        ..Default::default()
    };
    let no_mask = "The update_mask in the UpdateSubscriptionRequest must be set, and must contain a non-empty paths list.";
    assert_status(
        subscriber
            .update_subscription(update(with_deadline(20), None))
            .await,
        Code::InvalidArgument,
        no_mask,
    );
    assert_status(
        subscriber
            .update_subscription(update(with_deadline(20), mask(&[])))
            .await,
        Code::InvalidArgument,
        no_mask,
    );
    assert_status(
        subscriber
            .update_subscription(update(with_deadline(601), mask(&["ack_deadline_seconds"])))
            .await,
        Code::InvalidArgument,
        "ack_deadline_secs out of bounds",
    );
    assert_status(
        subscriber
            .update_subscription(update(with_deadline(25), mask(&["ackDeadlineSeconds"])))
            .await,
        Code::InvalidArgument,
        "Invalid update_mask provided in the UpdateSubscriptionRequest: ackDeadlineSeconds is not a known Subscription field. Note that field paths must be of the form 'push_config' rather than 'pushConfig'.",
    );
    assert_status(
        subscriber
            .update_subscription(update(with_deadline(25), mask(&["bogus"])))
            .await,
        Code::InvalidArgument,
        "Invalid update_mask provided in the UpdateSubscriptionRequest: bogus is not a known Subscription field. Note that field paths must be of the form 'push_config' rather than 'pushConfig'.",
    );
    for field in ["topic", "enable_message_ordering", "detached"] {
        assert_status(
            subscriber
                .update_subscription(update(with_deadline(25), mask(&[field])))
                .await,
            Code::InvalidArgument,
            &format!(
                "Invalid update_mask provided in the UpdateSubscriptionRequest: the {field} field in the Subscription is not mutable."
            ),
        );
    }
    // The filter is immutable after creation.
    assert_code(
        subscriber
            .update_subscription(update(
                Subscription {
                    name: name.clone(),
                    filter: "attributes:other".to_string(),
                    ..Default::default()
                },
                mask(&["filter"]),
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_status(
        subscriber
            .update_subscription(update(
                Subscription {
                    name: name.clone(),
                    message_retention_duration: Some(secs(1)),
                    ..Default::default()
                },
                mask(&["message_retention_duration"]),
            ))
            .await,
        Code::InvalidArgument,
        "message_retention_duration out of bounds",
    );
    assert_status(
        subscriber
            .update_subscription(update(
                Subscription {
                    name: subscription_name("missing-sub"),
                    ack_deadline_seconds: 45,
                    ..Default::default()
                },
                mask(&["ack_deadline_seconds"]),
            ))
            .await,
        Code::NotFound,
        "Subscription not found.",
    );
    let unchanged = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, updated, "failed updates change nothing");

    let listed = subscriber
        .list_subscriptions(ListSubscriptionsRequest {
            project: project(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.subscriptions, vec![updated]);

    subscriber
        .delete_subscription(DeleteSubscriptionRequest {
            subscription: name.clone(),
        })
        .await
        .unwrap();
    assert_status(
        subscriber
            .get_subscription(GetSubscriptionRequest {
                subscription: name.clone(),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        subscriber
            .delete_subscription(DeleteSubscriptionRequest {
                subscription: name.clone(),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        subscriber
            .delete_subscription(DeleteSubscriptionRequest {
                subscription: "sub-a".to_string(),
            })
            .await,
        Code::InvalidArgument,
        &invalid_subscription("sub-a"),
    );
    let attached = t
        .publisher()
        .list_topic_subscriptions(ListTopicSubscriptionsRequest {
            topic: topic.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(attached.subscriptions.is_empty());
}

#[tokio::test]
async fn modify_push_config() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let mut subscriber = t.subscriber();
    let get = |subscriber: &mut baton_proto::pubsub::subscriber_client::SubscriberClient<_>| {
        let mut subscriber = subscriber.clone();
        let sub = sub.clone();
        async move {
            subscriber
                .get_subscription(GetSubscriptionRequest { subscription: sub })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let endpoint = "http://127.0.0.1:9/push".to_string();
    subscriber
        .modify_push_config(ModifyPushConfigRequest {
            subscription: sub.clone(),
            push_config: Some(PushConfig {
                push_endpoint: endpoint.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&mut subscriber)
            .await
            .push_config
            .unwrap()
            .push_endpoint,
        endpoint
    );
    subscriber
        .modify_push_config(ModifyPushConfigRequest {
            subscription: sub.clone(),
            push_config: Some(PushConfig::default()),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&mut subscriber)
            .await
            .push_config
            .unwrap()
            .push_endpoint,
        ""
    );
    assert_status(
        subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: sub.clone(),
                push_config: Some(PushConfig {
                    push_endpoint: "not a url".to_string(),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
        "Unsupported push_endpoint",
    );
    assert_status(
        subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: subscription_name("missing-sub"),
                push_config: Some(PushConfig::default()),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: "sub-a".to_string(),
                push_config: Some(PushConfig::default()),
            })
            .await,
        Code::InvalidArgument,
        &invalid_subscription("sub-a"),
    );
}

#[tokio::test]
async fn deleting_a_topic_keeps_its_subscriptions_and_backlog() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let ids = t.publish(&topic, &["one", "two"]).await;
    t.publisher()
        .delete_topic(DeleteTopicRequest {
            topic: topic.clone(),
        })
        .await
        .unwrap();

    let got = t
        .subscriber()
        .get_subscription(GetSubscriptionRequest {
            subscription: sub.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.topic, "_deleted-topic_");
    let listed = t
        .subscriber()
        .list_subscriptions(ListSubscriptionsRequest {
            project: project(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.subscriptions[0].topic, "_deleted-topic_");

    // The backlog stays pullable and ackable.
    let received = t.pull_now(&sub, 10).await;
    let mut received_ids: Vec<String> = received.iter().map(message_id).collect();
    received_ids.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(received_ids, expected);
    t.ack(&sub, &ack_ids(&received)).await.unwrap();
    assert_eq!(t.backlog(&sub), 0);

    // A re-created topic is a new topic: the old subscription is not attached.
    t.create_topic("orders").await;
    t.publish(&topic, &["three"]).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    let attached = t
        .publisher()
        .list_topic_subscriptions(ListTopicSubscriptionsRequest {
            topic: topic.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(attached.subscriptions.is_empty());
    assert_status(
        t.publisher()
            .publish(PublishRequest {
                topic: topic_name("never-created"),
                messages: vec![msg("x")],
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
}

#[tokio::test]
async fn detach_subscription() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let other = t.create_subscription("sub-b", &topic).await;
    t.publish(&topic, &["before"]).await;
    let mut publisher = t.publisher();
    publisher
        .detach_subscription(DetachSubscriptionRequest {
            subscription: sub.clone(),
        })
        .await
        .unwrap();
    assert_status(
        t.subscriber().pull(pull_request(&sub, 10, true)).await,
        Code::FailedPrecondition,
        "Subscription is detached.",
    );
    let got = t
        .subscriber()
        .get_subscription(GetSubscriptionRequest {
            subscription: sub.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.detached);
    let attached = publisher
        .list_topic_subscriptions(ListTopicSubscriptionsRequest {
            topic: topic.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attached.subscriptions, vec![other.clone()]);
    // The other subscription is untouched.
    t.publish(&topic, &["after"]).await;
    assert_eq!(
        datas(&t.pull_now(&other, 10).await),
        vec!["before", "after"]
    );
    assert_status(
        publisher
            .detach_subscription(DetachSubscriptionRequest {
                subscription: subscription_name("missing-sub"),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        publisher
            .detach_subscription(DetachSubscriptionRequest {
                subscription: "sub-a".to_string(),
            })
            .await,
        Code::InvalidArgument,
        &invalid_subscription("sub-a"),
    );
}

#[tokio::test]
async fn pull_ack_and_modack_errors() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let other = t.create_subscription("other-sub", &topic).await;
    let missing = subscription_name("missing-sub");
    let mut subscriber = t.subscriber();
    t.publish(&topic, &["one", "two", "three"]).await;

    assert_status(
        subscriber.pull(pull_request(&sub, 0, true)).await,
        Code::InvalidArgument,
        "No max_messages specified",
    );
    assert_status(
        subscriber.pull(pull_request(&missing, 1, true)).await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        subscriber.pull(pull_request("sub-a", 1, true)).await,
        Code::InvalidArgument,
        &invalid_subscription("sub-a"),
    );

    let got = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&got), vec!["one"]);
    let valid = got[0].ack_id.clone();
    let foreign = t.pull_now(&other, 1).await[0].ack_id.clone();

    assert_status(
        t.ack(&sub, &[]).await,
        Code::InvalidArgument,
        "No ack ids specified.",
    );
    assert_status(
        t.ack(&sub, &["garbage".to_string()]).await,
        Code::InvalidArgument,
        "Invalid ack id (ack_id=garbage)",
    );
    assert_status(
        t.ack(&missing, std::slice::from_ref(&valid)).await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        t.ack(&sub, std::slice::from_ref(&foreign)).await,
        Code::InvalidArgument,
        &format!(
            "Subscription {sub} received an invalid ack ID {foreign}, meant for subscription: {other}"
        ),
    );
    assert_status(
        t.modack(&sub, std::slice::from_ref(&valid), -1).await,
        Code::InvalidArgument,
        "Ack deadline cannot be negative",
    );
    assert_status(
        t.modack(&sub, &[], 10).await,
        Code::InvalidArgument,
        "No ack ids specified",
    );
    assert_status(
        t.modack(&sub, &["garbage".to_string()], 10).await,
        Code::InvalidArgument,
        "Invalid ack id (ack_id=garbage)",
    );
    assert_status(
        t.modack(&sub, &[valid.clone(), "garbage".to_string()], 10)
            .await,
        Code::InvalidArgument,
        "Invalid ack id (ack_id=garbage)",
    );
    assert_status(
        t.modack(&missing, &["x".to_string()], 10).await,
        Code::NotFound,
        "Subscription does not exist",
    );
    // 0 to 600 s are fine, and more is capped rather than refused.
    t.modack(&sub, std::slice::from_ref(&valid), 600)
        .await
        .unwrap();
    t.modack(&sub, std::slice::from_ref(&valid), 601)
        .await
        .unwrap();
    t.ack(&sub, std::slice::from_ref(&valid)).await.unwrap();
    // Acking again (not exactly-once) is accepted and changes nothing.
    t.ack(&sub, &[valid]).await.unwrap();
    assert_eq!(t.backlog(&sub), 2);
}

/// On virtual time, so the snapshot's expiry is exact.
#[tokio::test(start_paused = true)]
async fn snapshots_crud_and_seek_to_snapshot() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let other_topic = t.create_topic("other").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let foreign_sub = t.create_subscription("sub-other", &other_topic).await;
    let mut subscriber = t.subscriber();
    t.publish(&topic, &["a", "b"]).await;
    let first = t.pull_now(&sub, 1).await;
    assert_eq!(datas(&first), vec!["a"]);
    t.ack(&sub, &ack_ids(&first)).await.unwrap();

    let snap = snapshot_name("snap-a");
    let labels: std::collections::HashMap<String, String> =
        [("team".to_string(), "core".to_string())].into();
    let created = subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: snap.clone(),
            subscription: sub.clone(),
            labels: labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, snap);
    assert_eq!(created.topic, topic);
    assert_eq!(created.labels, labels);
    assert_eq!(
        created.expire_time,
        Some(timestamp(
            virtual_time::start_wall() + Duration::from_secs(7 * 86_400)
        )),
        "a snapshot lives 7 days from its creation"
    );
    let got = subscriber
        .get_snapshot(GetSnapshotRequest {
            snapshot: snap.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    assert_status(
        subscriber
            .create_snapshot(CreateSnapshotRequest {
                name: snap.clone(),
                subscription: sub.clone(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "Snapshot already exists",
    );
    assert_status(
        subscriber
            .create_snapshot(CreateSnapshotRequest {
                name: snapshot_name("snap-b"),
                subscription: subscription_name("missing-sub"),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: snapshot_name("missing-snap"),
            })
            .await,
        Code::NotFound,
        "Snapshot does not exist",
    );

    // UpdateSnapshot: labels, with a mask.
    let new_labels: std::collections::HashMap<String, String> =
        [("team".to_string(), "edge".to_string())].into();
    let updated = subscriber
        .update_snapshot(UpdateSnapshotRequest {
            snapshot: Some(Snapshot {
                name: snap.clone(),
                labels: new_labels.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["labels"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.labels, new_labels);
    assert_eq!(updated.topic, topic);
    assert_status(
        subscriber
            .update_snapshot(UpdateSnapshotRequest {
                snapshot: Some(Snapshot {
                    name: snap.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await,
        Code::InvalidArgument,
        "The update_mask in the UpdateSnapshotRequest must be set, and must contain a non-empty paths list.",
    );
    assert_code(
        subscriber
            .update_snapshot(UpdateSnapshotRequest {
                snapshot: Some(Snapshot {
                    name: snapshot_name("missing-snap"),
                    ..Default::default()
                }),
                update_mask: mask(&["labels"]),
            })
            .await,
        Code::NotFound,
    );

    // The snapshot holds b (unacked) plus c (published after it).
    t.publish(&topic, &["c"]).await;
    let rest = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&rest), vec!["b", "c"]);
    t.ack(&sub, &ack_ids(&rest)).await.unwrap();
    assert!(t.pull_now(&sub, 10).await.is_empty());
    subscriber
        .seek(SeekRequest {
            subscription: sub.clone(),
            target: Some(seek_request::Target::Snapshot(snap.clone())),
        })
        .await
        .unwrap();
    let mut again = datas(&t.pull_now(&sub, 10).await);
    again.sort();
    assert_eq!(again, vec!["b", "c"]);

    assert_status(
        subscriber
            .seek(SeekRequest {
                subscription: sub.clone(),
                target: None,
            })
            .await,
        Code::InvalidArgument,
        "No target was specified in the SeekRequest. Must specify either a time or a snapshot",
    );
    assert_status(
        subscriber
            .seek(SeekRequest {
                subscription: subscription_name("missing-sub"),
                target: Some(seek_request::Target::Snapshot(snap.clone())),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        subscriber
            .seek(SeekRequest {
                subscription: foreign_sub.clone(),
                target: Some(seek_request::Target::Snapshot(snap.clone())),
            })
            .await,
        Code::FailedPrecondition,
        &format!(
            "The subscription's topic {other_topic} is different from that of the snapshot {topic}; they must match in order for Seek work. Note that if a topic is deleted and then re-created with the same name, it is considered a distinct topic for these purposes."
        ),
    );

    subscriber
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot: snap.clone(),
        })
        .await
        .unwrap();
    assert_status(
        subscriber
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot: snap.clone(),
            })
            .await,
        Code::NotFound,
        "Snapshot does not exist",
    );
    assert_status(
        subscriber
            .seek(SeekRequest {
                subscription: sub.clone(),
                target: Some(seek_request::Target::Snapshot(snap)),
            })
            .await,
        Code::NotFound,
        "Snapshot does not exist",
    );
}

/// On virtual time, so the two publish times are exactly a second apart.
#[tokio::test(start_paused = true)]
async fn seek_to_a_time() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let plain = t.create_subscription("plain", &topic).await;
    let retaining = t
        .create_subscription_with(Subscription {
            retain_acked_messages: true,
            ..subscription("retaining", &topic)
        })
        .await
        .name;
    let mut subscriber = t.subscriber();
    t.publish(&topic, &["x"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.publish(&topic, &["y"]).await;

    // Unacked messages published before the time become acked.
    let leased = t.pull_now(&plain, 10).await;
    assert_eq!(datas(&leased), vec!["x", "y"]);
    let y_time = leased[1].message.as_ref().unwrap().publish_time.unwrap();
    let x_time = leased[0].message.as_ref().unwrap().publish_time.unwrap();
    assert_eq!(
        (y_time.seconds - x_time.seconds, y_time.nanos),
        (1, x_time.nanos),
        "published a virtual second apart"
    );
    subscriber
        .seek(SeekRequest {
            subscription: plain.clone(),
            target: Some(seek_request::Target::Time(y_time)),
        })
        .await
        .unwrap();
    assert_eq!(datas(&t.pull_now(&plain, 10).await), vec!["y"]);

    // With retain_acked_messages, acked messages after the time come back.
    let received = t.pull_now(&retaining, 10).await;
    assert_eq!(datas(&received), vec!["x", "y"]);
    assert_eq!(
        received[0].message.as_ref().unwrap().publish_time,
        Some(x_time)
    );
    t.ack(&retaining, &ack_ids(&received)).await.unwrap();
    assert!(t.pull_now(&retaining, 10).await.is_empty());
    subscriber
        .seek(SeekRequest {
            subscription: retaining.clone(),
            target: Some(seek_request::Target::Time(x_time)),
        })
        .await
        .unwrap();
    let mut back = datas(&t.pull_now(&retaining, 10).await);
    back.sort();
    assert_eq!(back, vec!["x", "y"]);
    // A time in the future acks everything.
    subscriber
        .seek(SeekRequest {
            subscription: retaining.clone(),
            target: Some(seek_request::Target::Time(wkt::Timestamp {
                seconds: x_time.seconds + 3600,
                nanos: 0,
            })),
        })
        .await
        .unwrap();
    assert!(t.pull_now(&retaining, 10).await.is_empty());
    assert_eq!(t.backlog(&retaining), 0);
}
