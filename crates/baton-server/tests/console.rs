#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The console's JSON API (`/api/console/...`) against a real server on
//! `127.0.0.1:0`: stats that follow publishes, pulls and acks on virtual
//! time, peek that changes nothing, publish and seek through the request
//! layer, a message's history, paging over many subscriptions, the pages
//! served, and the authentication gate.

use std::time::Duration;

use baton_proto::pubsub::{DeadLetterPolicy, PubsubMessage, Subscription, Topic};
use baton_testkit::auth::{OPERATOR_TOKEN, operator_auth};
use baton_testkit::server::{TestServer, virtual_config};
use reqwest::Method;
use serde_json::{Value, json};

const TOPIC: &str = "projects/console/topics/orders";
const SUB: &str = "projects/console/subscriptions/worker";

fn setup(server: &TestServer) {
    let broker = server.server().broker();
    for name in [TOPIC, "projects/console/topics/dlq"] {
        broker
            .create_topic(Topic {
                name: name.into(),
                ..Default::default()
            })
            .unwrap();
    }
    broker
        .create_subscription(Subscription {
            name: SUB.into(),
            topic: TOPIC.into(),
            ack_deadline_seconds: 10,
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: "projects/console/topics/dlq".into(),
                max_delivery_attempts: 5,
            }),
            ..Default::default()
        })
        .unwrap();
}

async fn get(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.rest(Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn sub_stats(server: &TestServer) -> Value {
    get(server, "/api/console/subscriptions/console/worker").await["subscription"].clone()
}

#[tokio::test(start_paused = true)]
async fn stats_follow_publishes_pulls_and_acks_and_peek_changes_nothing() {
    let server = TestServer::start_virtual().await;
    setup(&server);
    let broker = server.server().broker().clone();
    for data in ["a", "bb", "ccc"] {
        let (status, body) = server
            .rest(
                Method::POST,
                "/api/console/topics/console/orders/publish",
                Some(json!({ "data": data, "attributes": { "k": "v" }, "ordering_key": "" })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = sub_stats(&server).await;
    assert_eq!(stats["backlog_messages"], 3);
    assert_eq!(stats["backlog_bytes"], 6 + 3 * 2);
    assert_eq!(stats["oldest_unacked_age_ms"], 4000);

    let pulled = broker
        .pull(SUB, 2, baton_broker::PullWait::Immediate)
        .await
        .unwrap();
    broker
        .acknowledge(SUB, &[pulled[0].ack_id.clone()])
        .unwrap();
    let before = sub_stats(&server).await;
    assert_eq!(before["backlog_messages"], 2);
    assert_eq!(before["leases_outstanding"], 1);
    assert_eq!(before["counters"]["acked"], 1);

    let peeked = get(
        &server,
        "/api/console/subscriptions/console/worker/peek?max=10",
    )
    .await;
    let messages = peeked["messages"].as_array().unwrap();
    let datas: Vec<&str> = messages
        .iter()
        .map(|m| m["message"]["data_text"].as_str().unwrap())
        .collect();
    assert_eq!(datas, ["bb", "ccc"]);
    assert_eq!(messages[0]["state"]["kind"], "leased");
    assert_eq!(messages[1]["state"]["kind"], "ready");
    assert_eq!(messages[1]["message"]["attributes"]["k"], "v");
    assert_eq!(sub_stats(&server).await, before, "peek changed nothing");

    let topic = get(&server, "/api/console/topics/console/orders").await;
    assert_eq!(topic["topic"]["counters"]["publish_operations"], 3);
    assert_eq!(topic["topic"]["subscriptions"], 1);
    assert_eq!(topic["subscriptions"][0]["name"], SUB);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_messages_history_tells_why_it_was_delivered_twice() {
    let server = TestServer::start_virtual().await;
    setup(&server);
    let broker = server.server().broker().clone();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (_, body) = server
        .rest(
            Method::POST,
            "/api/console/topics/console/orders/publish",
            Some(json!({ "data": "x", "attributes": { "googclient_traceparent": traceparent } })),
        )
        .await;
    let id = body["message_ids"][0].as_str().unwrap().to_string();
    let first = broker
        .pull(SUB, 1, baton_broker::PullWait::Immediate)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    broker
        .modify_ack_deadline(SUB, &[first[0].ack_id.clone()], 0)
        .unwrap();
    let second = broker
        .pull(SUB, 1, baton_broker::PullWait::Immediate)
        .await
        .unwrap();
    broker
        .acknowledge(SUB, &[second[0].ack_id.clone()])
        .unwrap();
    let history = get(
        &server,
        &format!("/api/console/messages/console/orders/{id}"),
    )
    .await;
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["delivered", "nack", "delivered", "ack"]);
    assert_eq!(history["deliveries"][SUB], 2);
    assert_eq!(history["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(
        history["explain"][0],
        "worker: delivered 2 times: attempt 1 nacked by pull after 20 ms; attempt 2 acked by pull after 0 ms"
    );
    let (status, _) = server
        .rest(
            Method::GET,
            &format!("/api/console/messages/console/dlq/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn publish_and_seek_go_through_the_request_layer() {
    let server = TestServer::start_virtual().await;
    setup(&server);
    // Validation applies: an empty message is refused as Publish refuses it.
    let (status, body) = server
        .rest(
            Method::POST,
            "/api/console/topics/console/orders/publish",
            Some(json!({ "data": "" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server
        .rest(
            Method::POST,
            "/api/console/topics/console/missing/publish",
            Some(json!({ "data": "x" })),
        )
        .await;
    assert_eq!(status, 404);
    let topic = get(&server, "/api/console/topics/console/orders").await;
    assert_eq!(topic["topic"]["counters"]["publish_errors"], 1);

    let (status, _) = server
        .rest(
            Method::POST,
            "/api/console/topics/console/orders/publish",
            Some(json!({ "data_base64": "aGVsbG8=", "ordering_key": "k" })),
        )
        .await;
    assert_eq!(status, 200);
    let broker = server.server().broker().clone();
    let pulled = broker
        .pull(SUB, 1, baton_broker::PullWait::Immediate)
        .await
        .unwrap();
    assert_eq!(pulled[0].message.as_ref().unwrap().data, b"hello".to_vec());
    broker
        .acknowledge(SUB, &[pulled[0].ack_id.clone()])
        .unwrap();
    assert_eq!(sub_stats(&server).await["backlog_messages"], 0);
    // Seek to a time before the publish: nothing is retained, so the
    // backlog stays empty, but the call is a real Seek.
    let (status, body) = server
        .rest(
            Method::POST,
            "/api/console/subscriptions/console/worker/seek",
            Some(json!({ "time": "2020-01-01T00:00:00Z" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subscription"]["backlog_messages"], 0);
    let (status, _) = server
        .rest(
            Method::POST,
            "/api/console/subscriptions/console/worker/seek",
            Some(json!({ "snapshot": "nope" })),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .rest(
            Method::POST,
            "/api/console/subscriptions/console/worker/seek",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_subscriptions_are_listed_page_by_page() {
    let server = TestServer::start().await;
    let broker = server.server().broker().clone();
    broker
        .create_topic(Topic {
            name: TOPIC.into(),
            ..Default::default()
        })
        .unwrap();
    for i in 0..10_000 {
        broker
            .create_subscription(Subscription {
                name: format!("projects/console/subscriptions/s{i:05}"),
                topic: TOPIC.into(),
                ..Default::default()
            })
            .unwrap();
    }
    broker
        .publish(
            TOPIC,
            vec![PubsubMessage {
                data: b"x".to_vec(),
                ..Default::default()
            }],
        )
        .unwrap();
    let first = get(&server, "/api/console/subscriptions?page_size=50").await;
    assert_eq!(first["subscriptions"].as_array().unwrap().len(), 50);
    assert_eq!(first["subscriptions"][0]["backlog_messages"], 1);
    let token = first["next_page_token"].as_str().unwrap();
    let second = get(
        &server,
        &format!("/api/console/subscriptions?project=console&page_size=50&page_token={token}"),
    )
    .await;
    assert_eq!(second["subscriptions"][0]["short_name"], "s00050");
    let all = get(&server, "/api/console/subscriptions?page_size=100000").await;
    assert_eq!(
        all["subscriptions"].as_array().unwrap().len(),
        baton_broker::MAX_STATS_PAGE
    );
    let topic = get(&server, "/api/console/topics/console/orders").await;
    assert_eq!(topic["topic"]["subscriptions"], 10_000);
    assert_eq!(topic["subscriptions"].as_array().unwrap().len(), 100);
    assert!(!topic["next_page_token"].as_str().unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn pages_and_assets_are_served() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for path in [
        "/ui/topics",
        "/ui/subscriptions",
        "/ui/topics/p/t",
        "/ui/subscriptions/p/s",
        "/ui/messages/p/t/1",
        "/ui/console/console.js",
        "/ui/console/console.css",
    ] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get("content-security-policy").is_some());
    }
    let missing = http
        .get(server.url("/ui/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn with_auth_the_console_api_needs_a_credential() {
    let server = TestServer::start_with(virtual_config().with_auth(operator_auth())).await;
    setup(&server);
    let http = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/api/console/topics"),
        (Method::GET, "/api/console/subscriptions"),
        (Method::GET, "/api/console/topics/console/orders"),
        (Method::GET, "/api/console/subscriptions/console/worker"),
        (
            Method::GET,
            "/api/console/subscriptions/console/worker/peek",
        ),
        (Method::GET, "/api/console/messages/console/orders/1"),
        (Method::POST, "/api/console/topics/console/orders/publish"),
        (
            Method::POST,
            "/api/console/subscriptions/console/worker/seek",
        ),
    ] {
        let mut request = http.request(method.clone(), server.url(path));
        if method == Method::POST {
            request = request.json(&json!({ "data": "x", "time": "2020-01-01T00:00:00Z" }));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        let bad = http
            .request(method.clone(), server.url(path))
            .bearer_auth("not-a-token")
            .json(&json!({ "data": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401, "{method} {path} with a bad token");
    }
    // The pages carry no data and are served to anyone.
    let page = http.get(server.url("/ui/topics")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // The operator sees everything.
    let listed: Value = http
        .get(server.url("/api/console/subscriptions"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["subscriptions"][0]["name"], SUB);
    let published = http
        .post(server.url("/api/console/topics/console/orders/publish"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({ "data": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    server.shutdown().await;
}
