#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Inside the server, a message's `googclient_traceparent` of the usual form
//! is held apart from its attribute map (`baton_broker::PublishedMessage`),
//! from the Publish request's decoding to the delivery's encoding. These
//! tests show it is an attribute like any other to everything outside:
//! Pull, StreamingPull, filters, REST, the disk store across a restart, and
//! the limits on a message's size and attribute count.

use std::collections::HashMap;
use std::time::Duration;

use baton_proto::pubsub::{PublishRequest, PubsubMessage, Subscription};
use baton_testkit::prelude::*;
use tonic::Code;

const KEY: &str = "googclient_traceparent";
const CANONICAL: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// 55 ASCII bytes that are not a W3C value: held apart all the same, and
/// sent back unchanged.
const ODD: &str = "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-zz";
/// A value of another length: stays in the map.
const LONG: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra";

/// What is published: each kind of value, beside other attributes or alone.
fn published() -> Vec<PubsubMessage> {
    vec![
        with_attributes("canonical", &[(KEY, CANONICAL), ("kind", "a")]),
        with_attributes("", &[(KEY, CANONICAL)]),
        with_attributes("odd", &[(KEY, ODD)]),
        with_attributes("long", &[(KEY, LONG), ("kind", "b")]),
        with_attributes("none", &[("kind", "c")]),
    ]
}

/// Each message's data and attributes.
fn by_data(messages: &[PubsubMessage]) -> HashMap<Vec<u8>, HashMap<String, String>> {
    messages
        .iter()
        .map(|m| (m.data.clone(), m.attributes.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_trace_context_leaves_the_server_as_it_came_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("traced").await;
    let pulled = t.create_subscription("pulled", &topic).await;
    let streamed = t.create_subscription("streamed", &topic).await;
    let after_restart = t.create_subscription("after-restart", &topic).await;
    let filtered = t
        .create_subscription_with(Subscription {
            name: subscription_name("filtered"),
            topic: topic.clone(),
            filter: format!("attributes.{KEY} = \"{CANONICAL}\""),
            ..Default::default()
        })
        .await;
    let prefixed = t
        .create_subscription_with(Subscription {
            name: subscription_name("prefixed"),
            topic: topic.clone(),
            filter: format!("hasPrefix(attributes.{KEY}, \"00-0AF7\")"),
            ..Default::default()
        })
        .await;
    let sent = published();
    assert_eq!(t.publish_messages(&topic, sent.clone()).await.len(), 5);
    let expected = by_data(&sent);

    let pulled = t
        .pull_acking_all(&pulled, sent.len(), Duration::from_secs(5))
        .await;
    assert_eq!(by_data(&pulled), expected, "Pull");

    let mut stream = t.open_stream(stream_request(&streamed)).await.unwrap();
    let received: Vec<PubsubMessage> = stream
        .collect(sent.len(), Duration::from_secs(5))
        .await
        .into_iter()
        .filter_map(|r| r.message)
        .collect();
    assert_eq!(by_data(&received), expected, "StreamingPull");

    let filtered = t
        .pull_acking_all(&filtered.name, 2, Duration::from_secs(5))
        .await;
    let mut datas: Vec<&[u8]> = filtered.iter().map(|m| m.data.as_slice()).collect();
    datas.sort_unstable();
    assert_eq!(datas, [&b""[..], b"canonical"], "filter on the value");
    let prefixed = t
        .pull_acking_all(&prefixed.name, 1, Duration::from_secs(5))
        .await;
    assert_eq!(prefixed.len(), 1);
    assert_eq!(prefixed[0].data, b"odd", "hasPrefix on the value");

    // Written to the disk store and read back.
    let t = t.restart().await;
    let again = t
        .pull_acking_all(&after_restart, sent.len(), Duration::from_secs(5))
        .await;
    assert_eq!(by_data(&again), expected, "after a restart");
}

#[tokio::test(start_paused = true)]
async fn rest_publishes_and_pulls_a_trace_context_as_an_attribute() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("rest-traced").await;
    let subscription = t.create_subscription("rest-traced", &topic).await;
    let (status, _) = t
        .rest(
            reqwest::Method::POST,
            &format!("/v1/{topic}:publish"),
            Some(serde_json::json!({
                "messages": [{"data": "eA==", "attributes": {KEY: CANONICAL}}]
            })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = t
        .rest(
            reqwest::Method::POST,
            &format!("/v1/{subscription}:pull"),
            Some(serde_json::json!({"maxMessages": 10})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["receivedMessages"][0]["message"]["attributes"][KEY],
        CANONICAL
    );
}

#[tokio::test(start_paused = true)]
async fn a_trace_context_counts_against_the_limits_as_an_attribute() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("limits").await;
    // 99 attributes of our own and the trace context: the most allowed.
    let mut message = with_attributes("x", &[(KEY, CANONICAL)]);
    for i in 0..99 {
        message.attributes.insert(format!("k{i}"), "v".into());
    }
    assert_eq!(
        t.publish_messages(&topic, vec![message.clone()])
            .await
            .len(),
        1
    );
    message.attributes.insert("one-more".into(), "v".into());
    let refused = t
        .publisher()
        .publish(PublishRequest {
            topic: topic.clone(),
            messages: vec![message],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("attributes"), "{refused:?}");

    // The trace context alone makes a message that is not empty.
    let only = with_attributes("", &[(KEY, CANONICAL)]);
    assert_eq!(t.publish_messages(&topic, vec![only]).await.len(), 1);
}
