//! A real Prometheus (Debian's package, started on a free port) scrapes
//! Baton's `/metrics`: its query API answers the backlog gauge the Pub/Sub
//! API shows, under Cloud Monitoring's PromQL names, and the counters move
//! with the publishes and acks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baton_testkit::messages::ack_ids;
use baton_testkit::prometheus::Prometheus;
use baton_testkit::server::TestServer;

/// Scrapes run every second; this bounds a wait that should take a few.
const SCRAPES: Duration = Duration::from_secs(60);

fn series(metric: &str, label: &str, id: &str) -> String {
    format!("pubsub_googleapis_com:{metric}{{{label}=\"{id}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_the_backlog_and_counters_the_api_shows() {
    let t = TestServer::start().await;
    let prometheus = Prometheus::start(t.addr).await.unwrap();
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("workers", &topic).await;
    let backlog = series(
        "subscription_num_undelivered_messages",
        "subscription_id",
        "workers",
    );
    prometheus
        .wait_for_value(&backlog, 0.0, SCRAPES)
        .await
        .unwrap();

    t.publish(&topic, &["a", "b", "c", "d", "e"]).await;
    t.publish(&topic, &["f"]).await;
    // The Pub/Sub API's view of the backlog: everything one pull can get.
    let received = t.pull_now(&sub, 100).await;
    assert_eq!(received.len(), 6);
    prometheus
        .wait_for_value(&backlog, 6.0, SCRAPES)
        .await
        .unwrap();
    prometheus
        .wait_for_value(
            &series("topic_send_message_operation_count", "topic_id", "orders"),
            6.0,
            SCRAPES,
        )
        .await
        .unwrap();
    prometheus
        .wait_for_value(
            "pubsub_googleapis_com:topic_send_request_count{topic_id=\"orders\",response_code=\"success\"}",
            2.0,
            SCRAPES,
        )
        .await
        .unwrap();

    // Ack four; nack the other two, which the API then hands out again.
    t.ack(&sub, &ack_ids(&received[..4])).await.unwrap();
    t.modack(&sub, &ack_ids(&received[4..]), 0).await.unwrap();
    let again = t.pull_now(&sub, 100).await;
    assert_eq!(again.len(), 2);
    prometheus
        .wait_for_value(&backlog, 2.0, SCRAPES)
        .await
        .unwrap();
    prometheus
        .wait_for_value(
            &series(
                "subscription_ack_message_count",
                "subscription_id",
                "workers",
            ),
            4.0,
            SCRAPES,
        )
        .await
        .unwrap();
    // Each series carries the monitored resource and project labels.
    let answer = prometheus.query(&backlog).await.unwrap();
    assert_eq!(answer.len(), 1, "{answer:?}");
    let labels = &answer[0].0;
    assert_eq!(labels["monitored_resource"], "pubsub_subscription");
    assert_eq!(labels["project_id"], baton_testkit::messages::PROJECT);
    assert_eq!(labels["job"], "baton");
    t.shutdown().await;
}
