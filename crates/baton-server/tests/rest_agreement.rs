#![allow(clippy::unwrap_used, clippy::expect_used)]
//! REST and gRPC agree: for the same operation on the same state, the REST
//! JSON answer equals `serde_json::to_value` of the gRPC answer, and errors
//! map to the same message with the matching HTTP status and
//! `{"error":{"code","message","status"}}` body.

use base64::Engine as _;
use baton_proto::pubsub::{
    AcknowledgeRequest, CreateSnapshotRequest, DeadLetterPolicy, DeleteSubscriptionRequest,
    DeleteTopicRequest, DetachSubscriptionRequest, GetSnapshotRequest, GetSubscriptionRequest,
    GetTopicRequest, ListSnapshotsRequest, ListSubscriptionsRequest, ListTopicSnapshotsRequest,
    ListTopicSubscriptionsRequest, ListTopicsRequest, ModifyAckDeadlineRequest,
    ModifyPushConfigRequest, PublishRequest, PublishResponse, PubsubMessage, PushConfig,
    SeekRequest, Subscription, Topic, UpdateSubscriptionRequest, UpdateTopicRequest, seek_request,
};
use baton_testkit::prelude::*;
use prost::Message as _;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use tonic::{Code, Response, Status};

/// HTTP status and canonical name of a gRPC code.
fn http_of(code: Code) -> (u16, &'static str) {
    match code {
        Code::InvalidArgument => (400, "INVALID_ARGUMENT"),
        Code::FailedPrecondition => (400, "FAILED_PRECONDITION"),
        Code::OutOfRange => (400, "OUT_OF_RANGE"),
        Code::NotFound => (404, "NOT_FOUND"),
        Code::AlreadyExists => (409, "ALREADY_EXISTS"),
        Code::Unknown => (500, "UNKNOWN"),
        Code::Internal => (500, "INTERNAL"),
        Code::Unimplemented => (501, "UNIMPLEMENTED"),
        Code::Unavailable => (503, "UNAVAILABLE"),
        other => panic!("no HTTP mapping expected for {other:?}"),
    }
}

/// Asserts the REST answer equals the gRPC answer (or its error).
#[track_caller]
fn agree<T: Serialize + std::fmt::Debug>(rest: (u16, Value), grpc: Result<Response<T>, Status>) {
    let (status, body) = rest;
    match grpc {
        Ok(response) => {
            let expected = serde_json::to_value(response.into_inner()).unwrap();
            assert_eq!(status, 200, "REST failed where gRPC succeeded: {body}");
            assert_eq!(body, expected);
        }
        Err(error) => {
            let (http, name) = http_of(error.code());
            assert_eq!(
                (status, body),
                (
                    http,
                    json!({"error": {"code": http, "message": error.message(), "status": name}})
                ),
                "gRPC said {error:?}"
            );
        }
    }
}

/// Same as [`agree`] for an expected error, checking it is one.
#[track_caller]
fn agree_error<T: Serialize + std::fmt::Debug>(
    rest: (u16, Value),
    grpc: Result<Response<T>, Status>,
    code: Code,
) {
    match &grpc {
        Ok(response) => panic!("expected {code:?}, gRPC answered {response:?}"),
        Err(status) => assert_eq!(status.code(), code, "{status:?}"),
    }
    agree(rest, grpc);
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn rest_path(name: &str) -> String {
    format!("/v1/{name}")
}

#[tokio::test]
async fn topics_agree() {
    let t = TestServer::start().await;
    let mut publisher = t.publisher();
    let a = topic_name("topic-a");
    let b = topic_name("topic-b");

    // Created over gRPC, read over REST.
    let created = publisher
        .create_topic(Topic {
            name: a.clone(),
            labels: [("env".to_string(), "test".to_string())].into(),
            message_retention_duration: Some(secs(600)),
            ..Default::default()
        })
        .await;
    agree(t.rest(Method::GET, &rest_path(&a), None).await, created);

    // Created over REST, read over gRPC.
    let rest_created = t
        .rest(
            Method::PUT,
            &rest_path(&b),
            Some(json!({"labels": {"env": "rest"}, "messageRetentionDuration": "1800s"})),
        )
        .await;
    agree(
        rest_created,
        publisher
            .get_topic(GetTopicRequest { topic: b.clone() })
            .await,
    );
    agree(
        t.rest(Method::GET, &rest_path(&b), None).await,
        publisher
            .get_topic(GetTopicRequest { topic: b.clone() })
            .await,
    );

    // Lists, page by page.
    for i in 0..3 {
        t.create_topic(&format!("more-{i}")).await;
    }
    // Each gRPC page must agree with the REST page of the same token.
    let pages = all_pages(async |page_token| {
        let grpc = publisher
            .list_topics(ListTopicsRequest {
                project: project(),
                page_size: 2,
                page_token: page_token.clone(),
            })
            .await;
        let page = grpc.as_ref().unwrap().get_ref().clone();
        let rest = t
            .rest(
                Method::GET,
                &format!(
                    "/v1/projects/{PROJECT}/topics?pageSize=2&pageToken={}",
                    encode(&page_token)
                ),
                None,
            )
            .await;
        agree(rest, grpc);
        page
    })
    .await;
    assert_eq!(pages.len(), 3);

    // Updates, each checked through the other transport.
    let patched = t
        .rest(
            Method::PATCH,
            &rest_path(&a),
            Some(json!({
                "topic": {"name": a, "messageRetentionDuration": "1200s"},
                "updateMask": "message_retention_duration"
            })),
        )
        .await;
    agree(
        patched,
        publisher
            .get_topic(GetTopicRequest { topic: a.clone() })
            .await,
    );
    let updated = publisher
        .update_topic(UpdateTopicRequest {
            topic: Some(Topic {
                name: b.clone(),
                message_retention_duration: Some(secs(2400)),
                ..Default::default()
            }),
            update_mask: mask(&["message_retention_duration"]),
        })
        .await;
    agree(t.rest(Method::GET, &rest_path(&b), None).await, updated);

    // Errors.
    let missing = topic_name("missing-topic");
    agree_error(
        t.rest(Method::GET, &rest_path(&missing), None).await,
        publisher
            .get_topic(GetTopicRequest {
                topic: missing.clone(),
            })
            .await,
        Code::NotFound,
    );
    agree_error(
        t.rest(Method::PUT, &rest_path(&a), Some(json!({}))).await,
        publisher
            .create_topic(Topic {
                name: a.clone(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
    );
    let short = topic_name("ab");
    agree_error(
        t.rest(Method::PUT, &rest_path(&short), Some(json!({})))
            .await,
        publisher
            .create_topic(Topic {
                name: short.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    agree_error(
        t.rest(
            Method::PUT,
            &rest_path(&topic_name("short-retention")),
            Some(json!({"messageRetentionDuration": "599s"})),
        )
        .await,
        publisher
            .create_topic(Topic {
                name: topic_name("short-retention"),
                message_retention_duration: Some(secs(599)),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    agree_error(
        t.rest(
            Method::PATCH,
            &rest_path(&a),
            Some(json!({"topic": {"name": a, "messageRetentionDuration": "1200s"}})),
        )
        .await,
        publisher
            .update_topic(UpdateTopicRequest {
                topic: Some(Topic {
                    name: a.clone(),
                    message_retention_duration: Some(secs(1200)),
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await,
        Code::InvalidArgument,
    );
    agree_error(
        t.rest(
            Method::PATCH,
            &rest_path(&missing),
            Some(json!({
                "topic": {"name": missing, "messageRetentionDuration": "1200s"},
                "updateMask": "message_retention_duration"
            })),
        )
        .await,
        publisher
            .update_topic(UpdateTopicRequest {
                topic: Some(Topic {
                    name: missing.clone(),
                    message_retention_duration: Some(secs(1200)),
                    ..Default::default()
                }),
                update_mask: mask(&["message_retention_duration"]),
            })
            .await,
        Code::NotFound,
    );
    agree_error(
        t.rest(Method::GET, "/v1/projects/baton-tests/topics/ab", None)
            .await,
        publisher
            .get_topic(GetTopicRequest {
                topic: topic_name("ab"),
            })
            .await,
        Code::InvalidArgument,
    );

    // Deletes answer `{}` on both, then NOT_FOUND on both.
    agree(
        t.rest(Method::DELETE, &rest_path(&a), None).await,
        publisher
            .delete_topic(DeleteTopicRequest { topic: b.clone() })
            .await,
    );
    agree_error(
        t.rest(Method::DELETE, &rest_path(&a), None).await,
        publisher
            .delete_topic(DeleteTopicRequest { topic: b.clone() })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn subscriptions_agree() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("dead-letters").await;
    let mut subscriber = t.subscriber();
    let a = subscription_name("sub-a");
    let b = subscription_name("sub-b");

    let created = subscriber
        .create_subscription(Subscription {
            name: a.clone(),
            topic: topic.clone(),
            ack_deadline_seconds: 20,
            filter: "attributes.kind = \"x\"".to_string(),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead.clone(),
                max_delivery_attempts: 7,
            }),
            labels: [("team".to_string(), "core".to_string())].into(),
            ..Default::default()
        })
        .await;
    agree(t.rest(Method::GET, &rest_path(&a), None).await, created);

    let rest_created = t
        .rest(
            Method::PUT,
            &rest_path(&b),
            Some(json!({
                "topic": topic,
                "ackDeadlineSeconds": 30,
                "messageRetentionDuration": "3600s",
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "2.5s"},
                "enableMessageOrdering": true,
                "enableExactlyOnceDelivery": true
            })),
        )
        .await;
    let reader = subscriber.clone();
    let get_b = || {
        let mut subscriber = reader.clone();
        let b = b.clone();
        async move {
            subscriber
                .get_subscription(GetSubscriptionRequest { subscription: b })
                .await
        }
    };
    agree(rest_created, get_b().await);
    agree(
        t.rest(Method::GET, &rest_path(&b), None).await,
        get_b().await,
    );

    agree(
        t.rest(
            Method::GET,
            &format!("/v1/projects/{PROJECT}/subscriptions"),
            None,
        )
        .await,
        subscriber
            .list_subscriptions(ListSubscriptionsRequest {
                project: project(),
                ..Default::default()
            })
            .await,
    );
    agree(
        t.rest(
            Method::GET,
            &format!("/v1/projects/{PROJECT}/subscriptions?pageSize=1"),
            None,
        )
        .await,
        subscriber
            .list_subscriptions(ListSubscriptionsRequest {
                project: project(),
                page_size: 1,
                ..Default::default()
            })
            .await,
    );
    agree(
        t.rest(
            Method::GET,
            &format!("{}/subscriptions", rest_path(&topic)),
            None,
        )
        .await,
        t.publisher()
            .list_topic_subscriptions(ListTopicSubscriptionsRequest {
                topic: topic.clone(),
                ..Default::default()
            })
            .await,
    );

    // Update over REST (camelCase mask), read over gRPC; and the reverse.
    let patched = t
        .rest(
            Method::PATCH,
            &rest_path(&b),
            Some(json!({
                "subscription": {"name": b, "ackDeadlineSeconds": 40},
                "updateMask": "ackDeadlineSeconds"
            })),
        )
        .await;
    agree(patched, get_b().await);
    let updated = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: a.clone(),
                ack_deadline_seconds: 50,
                ..Default::default()
            }),
            update_mask: mask(&["ack_deadline_seconds"]),
        })
        .await;
    agree(t.rest(Method::GET, &rest_path(&a), None).await, updated);

    // ModifyPushConfig answers `{}` on both.
    let push = |endpoint: &str| PushConfig {
        push_endpoint: endpoint.to_string(),
        ..Default::default()
    };
    agree(
        t.rest(
            Method::POST,
            &format!("{}:modifyPushConfig", rest_path(&a)),
            Some(json!({"pushConfig": {"pushEndpoint": "http://127.0.0.1:9/push"}})),
        )
        .await,
        subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: b.clone(),
                push_config: Some(push("http://127.0.0.1:9/push")),
            })
            .await,
    );
    let a_now = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: a.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        a_now.push_config.unwrap().push_endpoint,
        "http://127.0.0.1:9/push"
    );
    agree(
        t.rest(
            Method::POST,
            &format!("{}:modifyPushConfig", rest_path(&a)),
            Some(json!({"pushConfig": {}})),
        )
        .await,
        subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: b.clone(),
                push_config: Some(push("")),
            })
            .await,
    );

    // Errors.
    let c = subscription_name("sub-c");
    agree_error(
        t.rest(
            Method::PUT,
            &rest_path(&c),
            Some(json!({"topic": topic_name("missing-topic")})),
        )
        .await,
        subscriber
            .create_subscription(Subscription {
                name: c.clone(),
                topic: topic_name("missing-topic"),
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    agree_error(
        t.rest(Method::PUT, &rest_path(&a), Some(json!({"topic": topic})))
            .await,
        subscriber
            .create_subscription(Subscription {
                name: a.clone(),
                topic: topic.clone(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
    );
    agree_error(
        t.rest(
            Method::PUT,
            &rest_path(&c),
            Some(json!({"topic": topic, "ackDeadlineSeconds": 601})),
        )
        .await,
        subscriber
            .create_subscription(Subscription {
                name: c.clone(),
                topic: topic.clone(),
                ack_deadline_seconds: 601,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    agree_error(
        t.rest(
            Method::PUT,
            &rest_path(&c),
            Some(json!({
                "topic": topic,
                "deadLetterPolicy": {"deadLetterTopic": dead, "maxDeliveryAttempts": 2}
            })),
        )
        .await,
        subscriber
            .create_subscription(Subscription {
                name: c.clone(),
                topic: topic.clone(),
                dead_letter_policy: Some(DeadLetterPolicy {
                    dead_letter_topic: dead.clone(),
                    max_delivery_attempts: 2,
                }),
                ..Default::default()
            })
            .await,
        Code::OutOfRange,
    );
    agree_error(
        t.rest(
            Method::PUT,
            &rest_path(&c),
            Some(json!({"topic": topic, "filter": "attributes.kind ="})),
        )
        .await,
        subscriber
            .create_subscription(Subscription {
                // Another name, so a wrongly accepted REST create cannot
                // turn this into ALREADY_EXISTS.
                name: subscription_name("sub-d"),
                topic: topic.clone(),
                filter: "attributes.kind =".to_string(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    agree_error(
        t.rest(
            Method::PATCH,
            &rest_path(&a),
            Some(json!({
                "subscription": {"name": a, "topic": topic},
                "updateMask": "topic"
            })),
        )
        .await,
        subscriber
            .update_subscription(UpdateSubscriptionRequest {
                subscription: Some(Subscription {
                    name: a.clone(),
                    topic: topic.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["topic"]),
            })
            .await,
        Code::InvalidArgument,
    );
    let missing = subscription_name("missing-sub");
    agree_error(
        t.rest(Method::GET, &rest_path(&missing), None).await,
        subscriber
            .get_subscription(GetSubscriptionRequest {
                subscription: missing.clone(),
            })
            .await,
        Code::NotFound,
    );

    // Deletes.
    agree(
        t.rest(Method::DELETE, &rest_path(&a), None).await,
        subscriber
            .delete_subscription(DeleteSubscriptionRequest {
                subscription: b.clone(),
            })
            .await,
    );
    agree_error(
        t.rest(Method::DELETE, &rest_path(&a), None).await,
        subscriber
            .delete_subscription(DeleteSubscriptionRequest {
                subscription: b.clone(),
            })
            .await,
        Code::NotFound,
    );
}

/// A pull answer with its ack ids blanked (they differ per delivery).
fn without_ack_ids(mut value: Value) -> Value {
    if let Some(messages) = value
        .get_mut("receivedMessages")
        .and_then(Value::as_array_mut)
    {
        for message in messages {
            message["ackId"] = json!("");
        }
    }
    value
}

#[tokio::test]
async fn publish_pull_and_acks_agree() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    // Two subscriptions receive the same messages: one read over each transport.
    let r = t.create_subscription("rest-sub", &topic).await;
    let g = t.create_subscription("grpc-sub", &topic).await;
    let mut publisher = t.publisher();
    let mut subscriber = t.subscriber();

    let (status, published) = t
        .rest(
            Method::POST,
            &format!("{}:publish", rest_path(&topic)),
            Some(json!({"messages": [
                {"data": b64(b"hello"), "attributes": {"k": "v"}},
                {"data": b64(&[0, 159, 146, 150, 255])}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{published}");
    let ids: PublishResponse = serde_json::from_value(published.clone()).unwrap();
    assert_eq!(ids.message_ids.len(), 2);
    let grpc_published = publisher
        .publish(PublishRequest {
            topic: topic.clone(),
            messages: vec![PubsubMessage {
                data: b"third".to_vec(),
                ordering_key: "key".to_string(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        published,
        serde_json::to_value(&ids).unwrap(),
        "the REST answer has the gRPC shape"
    );
    assert_eq!(grpc_published.message_ids.len(), 1);

    // The same messages, read over each transport.
    let (status, rest_pulled) = t
        .rest(
            Method::POST,
            &format!("{}:pull", rest_path(&r)),
            Some(json!({"maxMessages": 10, "returnImmediately": true})),
        )
        .await;
    assert_eq!(status, 200, "{rest_pulled}");
    let grpc_pulled = subscriber
        .pull(pull_request(&g, 10, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_pulled.received_messages.len(), 3);
    assert_eq!(
        without_ack_ids(rest_pulled.clone()),
        without_ack_ids(serde_json::to_value(&grpc_pulled).unwrap())
    );
    assert_eq!(
        rest_pulled["receivedMessages"][0]["message"]["data"],
        json!(b64(b"hello"))
    );
    let rest_ack_ids: Vec<String> = rest_pulled["receivedMessages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ackId"].as_str().unwrap().to_string())
        .collect();

    // Nack over REST, redelivered over gRPC: same JSON again.
    agree(
        t.rest(
            Method::POST,
            &format!("{}:modifyAckDeadline", rest_path(&r)),
            Some(json!({"ackIds": rest_ack_ids, "ackDeadlineSeconds": 0})),
        )
        .await,
        subscriber
            .modify_ack_deadline(ModifyAckDeadlineRequest {
                subscription: g.clone(),
                ack_ids: ack_ids(&grpc_pulled.received_messages),
                ack_deadline_seconds: 0,
            })
            .await,
    );
    let again = subscriber
        .pull(pull_request(&r, 10, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        without_ack_ids(serde_json::to_value(&again).unwrap()),
        without_ack_ids(rest_pulled)
    );
    let (_, rest_again) = t
        .rest(
            Method::POST,
            &format!("{}:pull", rest_path(&g)),
            Some(json!({"maxMessages": 10, "returnImmediately": true})),
        )
        .await;

    // Ack ids from one transport are acked over the other; both answer `{}`.
    let g_ids: Vec<String> = rest_again["receivedMessages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ackId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(g_ids.len(), 3);
    agree(
        t.rest(
            Method::POST,
            &format!("{}:acknowledge", rest_path(&r)),
            Some(json!({"ackIds": ack_ids(&again.received_messages)})),
        )
        .await,
        subscriber
            .acknowledge(AcknowledgeRequest {
                subscription: g.clone(),
                ack_ids: g_ids,
            })
            .await,
    );
    assert_eq!(t.backlog(&r), 0);
    assert_eq!(t.backlog(&g), 0);

    // Errors.
    let publish_path = format!("{}:publish", rest_path(&topic));
    agree_error(
        t.rest(Method::POST, &publish_path, Some(json!({"messages": []})))
            .await,
        publisher
            .publish(PublishRequest {
                topic: topic.clone(),
                messages: vec![],
            })
            .await,
        Code::InvalidArgument,
    );
    agree_error(
        t.rest(Method::POST, &publish_path, Some(json!({"messages": [{}]})))
            .await,
        publisher
            .publish(PublishRequest {
                topic: topic.clone(),
                messages: vec![PubsubMessage::default()],
            })
            .await,
        Code::InvalidArgument,
    );
    let attributes: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("k{i}"), json!("v"))).collect();
    agree_error(
        t.rest(
            Method::POST,
            &publish_path,
            Some(json!({"messages": [{"data": b64(b"x"), "attributes": attributes}]})),
        )
        .await,
        publisher
            .publish(PublishRequest {
                topic: topic.clone(),
                messages: vec![PubsubMessage {
                    data: b"x".to_vec(),
                    attributes: (0..101)
                        .map(|i| (format!("k{i}"), "v".to_string()))
                        .collect(),
                    ..Default::default()
                }],
            })
            .await,
        Code::InvalidArgument,
    );
    let missing_topic = topic_name("missing-topic");
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:publish", rest_path(&missing_topic)),
            Some(json!({"messages": [{"data": b64(b"x")}]})),
        )
        .await,
        publisher
            .publish(PublishRequest {
                topic: missing_topic,
                messages: vec![msg("x")],
            })
            .await,
        Code::NotFound,
    );
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:pull", rest_path(&r)),
            Some(json!({"maxMessages": 0})),
        )
        .await,
        subscriber.pull(pull_request(&r, 0, true)).await,
        Code::InvalidArgument,
    );
    let missing_sub = subscription_name("missing-sub");
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:pull", rest_path(&missing_sub)),
            Some(json!({"maxMessages": 1, "returnImmediately": true})),
        )
        .await,
        subscriber.pull(pull_request(&missing_sub, 1, true)).await,
        Code::NotFound,
    );
    for ids in [vec![], vec!["garbage".to_string()]] {
        agree_error(
            t.rest(
                Method::POST,
                &format!("{}:acknowledge", rest_path(&r)),
                Some(json!({ "ackIds": ids })),
            )
            .await,
            subscriber
                .acknowledge(AcknowledgeRequest {
                    subscription: r.clone(),
                    ack_ids: ids.clone(),
                })
                .await,
            Code::InvalidArgument,
        );
    }
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:modifyAckDeadline", rest_path(&r)),
            Some(json!({"ackIds": ["garbage"], "ackDeadlineSeconds": -1})),
        )
        .await,
        subscriber
            .modify_ack_deadline(ModifyAckDeadlineRequest {
                subscription: r.clone(),
                ack_ids: vec!["garbage".to_string()],
                ack_deadline_seconds: -1,
            })
            .await,
        Code::InvalidArgument,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_failures_agree() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            name: subscription_name("exactly-once"),
            topic: topic.clone(),
            enable_exactly_once_delivery: true,
            ..Default::default()
        })
        .await
        .name;
    t.publish(&topic, &["one", "two"]).await;
    let got = t.pull_now(&sub, 10).await;
    t.ack(&sub, &ack_ids(&got)).await.unwrap();
    let (grpc_stale, rest_stale) = (got[0].ack_id.clone(), got[1].ack_id.clone());

    let status = t
        .ack(&sub, std::slice::from_ref(&grpc_stale))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = baton_proto::rpc::Status::decode(status.details()).unwrap();
    let info = baton_proto::rpc::ErrorInfo::decode(details.details[0].value.clone()).unwrap();
    assert_eq!(
        info.metadata[&grpc_stale],
        "PERMANENT_FAILURE_INVALID_ACK_ID"
    );

    let (http, body) = t
        .rest(
            Method::POST,
            &format!("{}:acknowledge", rest_path(&sub)),
            Some(json!({"ackIds": [rest_stale]})),
        )
        .await;
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        rest_stale.clone(),
        json!("PERMANENT_FAILURE_INVALID_ACK_ID"),
    );
    assert_eq!(
        (http, body),
        (
            400,
            json!({"error": {
                "code": 400,
                "message": status.message(),
                "status": "INVALID_ARGUMENT",
                "details": [{
                    "@type": details.details[0].type_url,
                    "reason": info.reason,
                    "domain": info.domain,
                    "metadata": metadata
                }]
            }})
        )
    );
}

#[tokio::test]
async fn snapshots_seek_and_detach_agree() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let other = t.create_subscription("sub-b", &topic).await;
    let mut subscriber = t.subscriber();
    t.publish(&topic, &["one"]).await;

    let a = snapshot_name("snap-a");
    let b = snapshot_name("snap-b");
    let created = subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: a.clone(),
            subscription: sub.clone(),
            labels: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        })
        .await;
    agree(t.rest(Method::GET, &rest_path(&a), None).await, created);
    let rest_created = t
        .rest(
            Method::PUT,
            &rest_path(&b),
            Some(json!({"subscription": sub})),
        )
        .await;
    agree(
        rest_created,
        subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: b.clone(),
            })
            .await,
    );
    agree(
        t.rest(
            Method::GET,
            &format!("/v1/projects/{PROJECT}/snapshots"),
            None,
        )
        .await,
        subscriber
            .list_snapshots(ListSnapshotsRequest {
                project: project(),
                ..Default::default()
            })
            .await,
    );
    agree(
        t.rest(
            Method::GET,
            &format!("{}/snapshots", rest_path(&topic)),
            None,
        )
        .await,
        t.publisher()
            .list_topic_snapshots(ListTopicSnapshotsRequest {
                topic: topic.clone(),
                ..Default::default()
            })
            .await,
    );
    agree_error(
        t.rest(
            Method::PUT,
            &rest_path(&a),
            Some(json!({"subscription": sub})),
        )
        .await,
        subscriber
            .create_snapshot(CreateSnapshotRequest {
                name: a.clone(),
                subscription: sub.clone(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
    );
    let missing = snapshot_name("missing-snap");
    agree_error(
        t.rest(Method::GET, &rest_path(&missing), None).await,
        subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: missing.clone(),
            })
            .await,
        Code::NotFound,
    );

    // Seek answers `{}` on both.
    agree(
        t.rest(
            Method::POST,
            &format!("{}:seek", rest_path(&sub)),
            Some(json!({ "snapshot": a })),
        )
        .await,
        subscriber
            .seek(SeekRequest {
                subscription: other.clone(),
                target: Some(seek_request::Target::Snapshot(a.clone())),
            })
            .await,
    );
    agree(
        t.rest(
            Method::POST,
            &format!("{}:seek", rest_path(&sub)),
            Some(json!({"time": "2020-01-01T00:00:00Z"})),
        )
        .await,
        subscriber
            .seek(SeekRequest {
                subscription: other.clone(),
                target: Some(seek_request::Target::Time(baton_proto::wkt::Timestamp {
                    seconds: 1_577_836_800,
                    nanos: 0,
                })),
            })
            .await,
    );
    assert_eq!(datas(&t.pull_now(&sub, 10).await), vec!["one"]);
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:seek", rest_path(&sub)),
            Some(json!({ "snapshot": missing })),
        )
        .await,
        subscriber
            .seek(SeekRequest {
                subscription: sub.clone(),
                target: Some(seek_request::Target::Snapshot(missing.clone())),
            })
            .await,
        Code::NotFound,
    );
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:seek", rest_path(&sub)),
            Some(json!({})),
        )
        .await,
        subscriber
            .seek(SeekRequest {
                subscription: sub.clone(),
                target: None,
            })
            .await,
        Code::InvalidArgument,
    );

    // Detach answers `{}`; pulls then fail alike.
    agree(
        t.rest(Method::POST, &format!("{}:detach", rest_path(&sub)), None)
            .await,
        t.publisher()
            .detach_subscription(DetachSubscriptionRequest {
                subscription: other.clone(),
            })
            .await,
    );
    agree_error(
        t.rest(
            Method::POST,
            &format!("{}:pull", rest_path(&sub)),
            Some(json!({"maxMessages": 1, "returnImmediately": true})),
        )
        .await,
        subscriber.pull(pull_request(&other, 1, true)).await,
        Code::FailedPrecondition,
    );
    agree(
        t.rest(Method::DELETE, &rest_path(&a), None).await,
        subscriber
            .delete_snapshot(baton_proto::pubsub::DeleteSnapshotRequest {
                snapshot: b.clone(),
            })
            .await,
    );
}

#[tokio::test]
async fn malformed_json_is_invalid_argument() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-a", &topic).await;
    let expected = json!({"error": {
        "code": 400,
        "message": "Payload isn't valid for request.",
        "status": "INVALID_ARGUMENT"
    }});
    let cases: [(Method, String, &'static str); 6] = [
        (Method::PUT, rest_path(&topic_name("broken")), "{not json"),
        (Method::PUT, rest_path(&topic_name("broken")), "[]"),
        (
            Method::PUT,
            rest_path(&topic_name("broken")),
            "{\"bogus\": 1}",
        ),
        (
            Method::POST,
            format!("{}:publish", rest_path(&topic)),
            "{\"messages\": [{\"data\": \"%%%not-base64\"}]}",
        ),
        (
            Method::POST,
            format!("{}:pull", rest_path(&sub)),
            "{\"maxMessages\": \"many\"}",
        ),
        (
            Method::PUT,
            rest_path(&subscription_name("sub-b")),
            "{\"topic\": \"x\", \"messageRetentionDuration\": \"soon\"}",
        ),
    ];
    for (method, path, body) in cases {
        let (status, text) = t.rest_raw(method.clone(), &path, body).await;
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (status, value),
            (400, expected.clone()),
            "{method} {path} {body}"
        );
    }
    // Nothing was created by the bad requests.
    let topics = t
        .publisher()
        .list_topics(ListTopicsRequest {
            project: project(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(topics.topics.len(), 1);
}

/// Paths the REST table must answer as the hand-written mapping did: the IAM
/// mixin's verbs are its own whatever the method, an empty id before a verb
/// is a bad name, and page sizes that are not int32 are ignored.
#[tokio::test]
async fn odd_rest_paths_answer_as_before() {
    let t = TestServer::start().await;
    let topic = t.create_topic("odd-paths").await;
    let id = topic.rsplit('/').next().unwrap().to_string();
    let project = project();
    for (method, path) in [
        (Method::GET, format!("/v1/{topic}:setIamPolicy")),
        (Method::GET, format!("/v1/{topic}:testIamPermissions")),
        (Method::PUT, format!("/v1/{topic}:getIamPolicy")),
        (Method::DELETE, format!("/v1/{topic}:fooIamPolicy")),
    ] {
        let (status, body) = t.rest_raw(method.clone(), &path, "").await;
        assert_eq!(
            (status, body.as_str()),
            (404, "Not Found\n"),
            "{method} {path}"
        );
    }
    let (status, body) = t
        .rest(
            Method::POST,
            &format!("/v1/{project}/topics/:publish"),
            Some(json!({"messages": [{"data": "aGk="}]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        format!("Invalid [topics] name: (name={project}/topics/)")
    );
    let (status, body) = t
        .rest(
            Method::GET,
            &format!("/v1/{project}/topics?pageSize=3000000000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"].as_str().is_some_and(|n| n.ends_with(&id))),
        "{body}"
    );
    t.shutdown().await;
}
