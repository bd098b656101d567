#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Push delivery end to end: a real server pushes to the testkit's
//! recording endpoint, which answers with scripted statuses.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use baton_broker::{Broker, PullWait};
use baton_proto::pubsub::push_config::{NoWrapper, Wrapper};
use baton_proto::pubsub::{DeadLetterPolicy, PubsubMessage, PushConfig, Subscription, Topic};
use baton_testkit::push::PushRecorder;
use baton_testkit::server::TestServer;
use serde_json::json;
use tokio::time::Instant;

const PROJECT: &str = "projects/push-tests";

fn topic(broker: &Broker, id: &str) -> String {
    let name = format!("{PROJECT}/topics/{id}");
    broker
        .create_topic(Topic {
            name: name.clone(),
            ..Default::default()
        })
        .unwrap();
    name
}

fn push_config(endpoint: String) -> PushConfig {
    PushConfig {
        push_endpoint: endpoint,
        ..Default::default()
    }
}

fn subscription(broker: &Broker, id: &str, topic: &str, push: Option<PushConfig>) -> String {
    subscription_with(
        broker,
        Subscription {
            name: format!("{PROJECT}/subscriptions/{id}"),
            topic: topic.to_owned(),
            push_config: push,
            ..Default::default()
        },
    )
}

fn subscription_with(broker: &Broker, sub: Subscription) -> String {
    broker.create_subscription(sub).unwrap().name
}

fn message(data: &str, attributes: &[(&str, &str)], ordering_key: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        ordering_key: ordering_key.to_owned(),
        ..Default::default()
    }
}

fn publish(broker: &Broker, topic: &str, messages: Vec<PubsubMessage>) -> Vec<String> {
    broker.publish(topic, messages).unwrap()
}

/// Waits until the subscription's backlog is empty (every push acked).
async fn drained(broker: &Broker, sub: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    while broker.backlog_len(sub).unwrap() > 0 {
        assert!(Instant::now() < until, "{sub} still has a backlog");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_envelope_headers_and_trace_context() {
    let server = TestServer::start().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let mut push = push_config(endpoint.url("/hook?x=1"));
    push.attributes
        .insert("x-goog-version".to_owned(), "v1".to_owned());
    let sub = subscription(&broker, "push-sub", &topic, Some(push));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let ids = publish(
        &broker,
        &topic,
        vec![message(
            "hello",
            &[("a", "one"), ("googclient_traceparent", traceparent)],
            "key-1",
        )],
    );

    let pushed = endpoint.expect().await;
    assert_eq!(pushed.method, Method::POST);
    assert_eq!(pushed.path, "/hook?x=1");
    assert_eq!(pushed.header("content-type"), Some("application/json"));
    assert_eq!(pushed.header("traceparent"), Some(traceparent));
    // Push config attributes configure the push; they are not headers.
    assert_eq!(pushed.header("x-goog-version"), None);
    assert!(
        pushed
            .header("user-agent")
            .unwrap()
            .starts_with("APIs-Google")
    );
    let mut body = pushed.json();
    let publish_time = body["message"]["publishTime"].as_str().unwrap().to_owned();
    assert!(publish_time.ends_with('Z'), "{publish_time}");
    assert_eq!(body["message"]["publish_time"], publish_time.as_str());
    body["message"]["publishTime"] = json!("T");
    body["message"]["publish_time"] = json!("T");
    assert_eq!(
        body,
        json!({
            "message": {
                "data": "aGVsbG8=",
                "attributes": {"a": "one", "googclient_traceparent": traceparent},
                "messageId": ids[0],
                "message_id": ids[0],
                "publishTime": "T",
                "publish_time": "T",
            },
            "subscription": sub,
        })
    );
    drained(&broker, &sub).await;
    endpoint.expect_none(Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pushes_are_retried_with_backoff_until_acknowledged() {
    let server = TestServer::start().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let dead_letters = self::topic(&broker, "dead-letters");
    let sub = subscription_with(
        &broker,
        Subscription {
            name: format!("{PROJECT}/subscriptions/retried"),
            topic: topic.clone(),
            push_config: Some(push_config(endpoint.url("/hook"))),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead_letters,
                max_delivery_attempts: 5,
            }),
            ..Default::default()
        },
    );
    endpoint.script(&[500, 404, 302]);
    let ids = publish(&broker, &topic, vec![message("retry-me", &[], "")]);

    let mut pushes = Vec::new();
    for _ in 0..4 {
        pushes.push(endpoint.expect().await);
    }
    for (attempt, push) in pushes.iter().enumerate() {
        let body = push.json();
        assert_eq!(body["message"]["messageId"], ids[0].as_str());
        // The dead-letter policy makes the attempt count visible.
        assert_eq!(body["deliveryAttempt"], attempt + 1);
    }
    // The push backoff doubles from 100 ms: 100, 200, 400 ms between tries.
    let gaps: Vec<Duration> = pushes.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, least) in gaps.iter().zip([90, 190, 390]) {
        assert!(
            *gap >= Duration::from_millis(least),
            "gaps {gaps:?} shorter than the backoff"
        );
    }
    // The fourth answer (200) acknowledged it: no more pushes.
    drained(&broker, &sub).await;
    endpoint.expect_none(Duration::from_millis(800)).await;

    // A success resets the backoff: the next failure is retried after 100 ms.
    endpoint.script(&[503]);
    publish(&broker, &topic, vec![message("again", &[], "")]);
    let first = endpoint.expect().await;
    let second = endpoint.expect().await;
    assert!(second.at - first.at < Duration::from_millis(400));
    drained(&broker, &sub).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wrapper_sends_raw_data_with_metadata_headers() {
    let server = TestServer::start().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let mut with_metadata = push_config(endpoint.url("/metadata"));
    with_metadata.wrapper = Some(Wrapper::NoWrapper(NoWrapper {
        write_metadata: true,
    }));
    let mut raw = push_config(endpoint.url("/raw"));
    raw.wrapper = Some(Wrapper::NoWrapper(NoWrapper {
        write_metadata: false,
    }));
    let metadata_sub = subscription(&broker, "metadata-sub", &topic, Some(with_metadata));
    let raw_sub = subscription(&broker, "raw-sub", &topic, Some(raw));
    let data = r#"{"status":"Hello there"}"#;
    let ids = publish(
        &broker,
        &topic,
        vec![message(
            data,
            &[("content-type", "application/json"), ("tenant", "t1")],
            "some-key",
        )],
    );

    let mut by_path = HashMap::new();
    for _ in 0..2 {
        let pushed = endpoint.expect().await;
        by_path.insert(pushed.path.clone(), pushed);
    }
    let metadata = &by_path["/metadata"];
    assert_eq!(metadata.body, data.as_bytes());
    assert_eq!(
        metadata.header("x-goog-pubsub-subscription-name"),
        Some(metadata_sub.as_str())
    );
    assert_eq!(
        metadata.header("x-goog-pubsub-message-id"),
        Some(ids[0].as_str())
    );
    assert!(
        metadata
            .header("x-goog-pubsub-publish-time")
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(metadata.header("tenant"), Some("t1"));
    assert_eq!(metadata.header("content-type"), Some("application/json"));

    let raw = &by_path["/raw"];
    assert_eq!(raw.body, data.as_bytes());
    assert_eq!(raw.header("x-goog-pubsub-message-id"), None);
    assert_eq!(raw.header("tenant"), None);
    assert_eq!(raw.header("content-type"), None);
    drained(&broker, &metadata_sub).await;
    drained(&broker, &raw_sub).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_push_and_pull_starts_and_stops_the_pusher() {
    let server = TestServer::start().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let sub = subscription(
        &broker,
        "switching",
        &topic,
        Some(push_config(endpoint.url("/hook"))),
    );
    publish(&broker, &topic, vec![message("pushed", &[], "")]);
    assert_eq!(endpoint.expect().await.path, "/hook");
    drained(&broker, &sub).await;

    // Pull mode: nothing is pushed, pull gets the message.
    broker.modify_push_config(&sub, None).unwrap();
    let ids = publish(&broker, &topic, vec![message("pulled", &[], "")]);
    endpoint.expect_none(Duration::from_millis(500)).await;
    let pulled = broker.pull(&sub, 10, PullWait::Immediate).await.unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].message.as_ref().unwrap().message_id, ids[0]);

    // Back to push (UpdateSubscription this time): new messages are pushed
    // to the new endpoint; the one a pull client holds only after its nack.
    let mut update = broker.get_subscription(&sub).unwrap();
    update.push_config = Some(push_config(endpoint.url("/hook2")));
    broker
        .update_subscription(update, &["push_config".to_owned()])
        .unwrap();
    let fresh = publish(&broker, &topic, vec![message("pushed-again", &[], "")]);
    let pushed = endpoint.expect().await;
    assert_eq!(pushed.path, "/hook2");
    assert_eq!(pushed.json()["message"]["messageId"], fresh[0].as_str());
    endpoint.expect_none(Duration::from_millis(300)).await;
    broker
        .modify_ack_deadline(&sub, &[pulled[0].ack_id.clone()], 0)
        .unwrap();
    let pushed = endpoint.expect().await;
    assert_eq!(pushed.json()["message"]["messageId"], ids[0].as_str());
    drained(&broker, &sub).await;

    // Deleted: nothing more is pushed.
    broker.delete_subscription(&sub).unwrap();
    publish(&broker, &topic, vec![message("nobody", &[], "")]);
    endpoint.expect_none(Duration::from_millis(500)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_subscription_pushes_a_key_in_order_with_its_key() {
    let server = TestServer::start().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let sub = subscription_with(
        &broker,
        Subscription {
            name: format!("{PROJECT}/subscriptions/ordered"),
            topic: topic.clone(),
            push_config: Some(push_config(endpoint.url("/hook"))),
            enable_message_ordering: true,
            ..Default::default()
        },
    );
    // The third message fails once: it and the ones after it come again, in order.
    endpoint.script(&[200, 200, 500]);
    let ids = publish(
        &broker,
        &topic,
        (0..5)
            .map(|n| message(&format!("m{n}"), &[], "key"))
            .collect(),
    );
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let body = endpoint.expect().await.json();
        assert_eq!(body["message"]["orderingKey"], "key");
        seen.push(body["message"]["messageId"].as_str().unwrap().to_owned());
    }
    // The first three in order; after the third failed, the key resumes
    // with it and the two held back behind it.
    assert_eq!(seen[..3], ids[..3]);
    assert_eq!(seen[3..], ids[2..]);
    drained(&broker, &sub).await;
    server.shutdown().await;
}
