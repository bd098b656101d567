#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Push delivery end to end: a real server pushes to the testkit's
//! recording endpoint, which answers with scripted statuses: the envelope and
//! headers, retries under the push backoff (100 ms doubling up to 60 s,
//! cleared by a success), switching between push and pull, and ordered
//! pushes.
//!
//! Everything runs on virtual time (`start_paused` and
//! `TestServer::start_virtual`; the server's push worker and the recorder
//! both use Tokio's clock), so each push's arrival is an exact virtual
//! instant: the first push of a publish comes the 50 ms dispatch delay after
//! it, a retry exactly when the backoff ends, and minutes of backoff take no
//! real time.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use baton_broker::{Broker, PullWait};
use baton_proto::pubsub::push_config::{NoWrapper, Wrapper};
use baton_proto::pubsub::{DeadLetterPolicy, PubsubMessage, PushConfig, Subscription, Topic};
use baton_testkit::push::PushRecorder;
use baton_testkit::server::TestServer;
use baton_testkit::virtual_time::settled;
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

/// The delay between the signal that there is work and the lease of a
/// push worker (`PushSettings::dispatch_delay`'s default).
const DISPATCH_DELAY: Duration = Duration::from_millis(50);

/// Waits until the subscription's backlog is empty (every push acked), at
/// the virtual instant of the last push: the ack of a push needs no timer.
async fn drained(broker: &Broker, sub: &str) {
    settled(&format!("every push to {sub} acked"), || {
        broker.backlog_len(sub).unwrap() == 0
    })
    .await;
}

/// Lets the push manager start the workers of new push subscriptions
/// (virtual time only moves on once everything waits, so after a second of
/// it every worker is up and idle). A message published before its worker
/// runs is pushed as soon as the worker starts, without the dispatch delay.
async fn workers_started() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Gaps between consecutive pushes, in milliseconds.
fn gaps_ms(pushes: &[baton_testkit::push::Push]) -> Vec<u128> {
    pushes
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn wrapped_envelope_headers_and_trace_context() {
    let server = TestServer::start_virtual().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let mut push = push_config(endpoint.url("/hook?x=1"));
    push.attributes
        .insert("x-goog-version".to_owned(), "v1".to_owned());
    let sub = subscription(&broker, "push-sub", &topic, Some(push));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    workers_started().await;
    let published = Instant::now();
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
    assert_eq!(pushed.at - published, DISPATCH_DELAY);
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

#[tokio::test(start_paused = true)]
async fn failed_pushes_are_retried_with_backoff_until_acknowledged() {
    let server = TestServer::start_virtual().await;
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
    workers_started().await;
    let published = Instant::now();
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
    // The first push after the dispatch delay, then each retry the instant
    // the push backoff ends: 100, 200, 400 ms.
    assert_eq!(pushes[0].at - published, DISPATCH_DELAY);
    assert_eq!(gaps_ms(&pushes), [100, 200, 400]);
    // The fourth answer (200) acknowledged it: no more pushes.
    drained(&broker, &sub).await;
    endpoint.expect_none(Duration::from_secs(120)).await;
    // The broker's stats count each push by Cloud Monitoring's response class.
    let stats = broker.subscription_stats(&sub).unwrap().push.unwrap();
    assert_eq!(stats.endpoint, endpoint.url("/hook"));
    assert_eq!(
        (
            stats.counts.remote_server_5xx,
            stats.counts.remote_server_4xx,
            stats.counts.invalid,
            stats.counts.ack
        ),
        (1, 1, 1, 1)
    );
    assert!(stats.healthy(), "the last push was acknowledged");
    assert_eq!(stats.last.unwrap().result.status, Some(200));

    // A success resets the backoff: the next failure is retried after
    // 100 ms again, not 800 ms.
    endpoint.script(&[503]);
    let published = Instant::now();
    publish(&broker, &topic, vec![message("again", &[], "")]);
    let first = endpoint.expect().await;
    let second = endpoint.expect().await;
    assert_eq!(first.at - published, DISPATCH_DELAY);
    assert_eq!(second.at - first.at, Duration::from_millis(100));
    drained(&broker, &sub).await;
    let stats = broker.subscription_stats(&sub).unwrap();
    let push = stats.push.unwrap();
    assert_eq!((push.counts.remote_server_5xx, push.counts.ack), (2, 2));
    assert_eq!(stats.counters.acked, 2);
    assert_eq!(stats.counters.nacked, 4);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_push_backoff_doubles_up_to_sixty_seconds() {
    let server = TestServer::start_virtual().await;
    let broker = server.server().broker().clone();
    let endpoint = PushRecorder::start().await;
    let topic = topic(&broker, "orders");
    let sub = subscription(
        &broker,
        "failing",
        &topic,
        Some(push_config(endpoint.url("/hook"))),
    );
    // Twelve failures, then a success.
    endpoint.set_status(503);
    publish(&broker, &topic, vec![message("stubborn", &[], "")]);
    let mut pushes = vec![endpoint.expect().await];
    for _ in 0..12 {
        if pushes.len() == 12 {
            endpoint.set_status(200);
        }
        let push = endpoint
            .next(Duration::from_secs(61))
            .await
            .expect("a retry when the backoff ends");
        pushes.push(push);
    }
    assert_eq!(
        gaps_ms(&pushes),
        [
            100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 60_000, 60_000
        ],
        "doubling from 100 ms, capped at 60 s"
    );
    drained(&broker, &sub).await;
    // Acked by the thirteenth: nothing more, however long we wait.
    endpoint.expect_none(Duration::from_secs(600)).await;

    // A new message after the success is pushed without any backoff.
    let published = Instant::now();
    publish(&broker, &topic, vec![message("welcome", &[], "")]);
    assert_eq!(endpoint.expect().await.at - published, DISPATCH_DELAY);
    drained(&broker, &sub).await;
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_wrapper_sends_raw_data_with_metadata_headers() {
    let server = TestServer::start_virtual().await;
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

#[tokio::test(start_paused = true)]
async fn switching_between_push_and_pull_starts_and_stops_the_pusher() {
    let server = TestServer::start_virtual().await;
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

#[tokio::test(start_paused = true)]
async fn ordered_subscription_pushes_a_key_in_order_with_its_key() {
    let server = TestServer::start_virtual().await;
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
