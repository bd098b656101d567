//! The broker's metrics under Cloud Monitoring's names: `GET /metrics` in the
//! Prometheus text format follows publishes, acks, nacks, dead-lettering and
//! the age of the oldest unacked message (on virtual time); with metrics
//! forwarded, the same sample goes upstream as an OTLP export named by the
//! metric types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use baton_proto::pubsub::{DeadLetterPolicy, Subscription};
use baton_testkit::messages::{PROJECT, ack_ids};
use baton_testkit::server::{TestServer, loopback, virtual_config};
use baton_trace_store::forward::{ForwardConfig, Protocol};
use baton_trace_store::opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use baton_trace_store::opentelemetry_proto::tonic::common::v1::any_value;
use baton_trace_store::opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;

/// Samples of one scrape: `name{labels}` (labels in their order) -> value.
async fn scrape(t: &TestServer) -> HashMap<String, u64> {
    let response = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn subscription_series(metric: &str, id: &str, extra: &str) -> String {
    format!(
        "pubsub_googleapis_com:{metric}{{monitored_resource=\"pubsub_subscription\",project_id=\"{PROJECT}\",subscription_id=\"{id}\"{extra}}}"
    )
}

fn topic_series(metric: &str, id: &str, extra: &str) -> String {
    format!(
        "pubsub_googleapis_com:{metric}{{monitored_resource=\"pubsub_topic\",project_id=\"{PROJECT}\",topic_id=\"{id}\"{extra}}}"
    )
}

#[tokio::test(start_paused = true)]
async fn scrape_follows_publishes_acks_and_the_oldest_unacked_age() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("workers", &topic).await;
    let samples = scrape(&t).await;
    assert_eq!(
        samples[&subscription_series("subscription_num_undelivered_messages", "workers", "")],
        0
    );

    t.publish(&topic, &["a", "bb", "ccc"]).await;
    t.publish(&topic, &["dddd"]).await;
    tokio::time::sleep(Duration::from_secs(90)).await;
    let samples = scrape(&t).await;
    let undelivered = subscription_series("subscription_num_undelivered_messages", "workers", "");
    assert_eq!(samples[&undelivered], 4);
    assert_eq!(
        samples[&subscription_series("subscription_backlog_bytes", "workers", "")],
        10
    );
    assert_eq!(
        samples[&subscription_series("subscription_oldest_unacked_message_age", "workers", "")],
        90
    );
    assert_eq!(
        samples[&topic_series(
            "topic_send_request_count",
            "orders",
            ",response_code=\"success\""
        )],
        2
    );
    assert_eq!(
        samples[&topic_series(
            "topic_send_message_operation_count",
            "orders",
            ",response_code=\"success\""
        )],
        4
    );

    // Two acked: the backlog and the counters follow.
    let received = t.pull_now(&sub, 2).await;
    assert_eq!(received.len(), 2);
    let samples = scrape(&t).await;
    assert_eq!(
        samples[&subscription_series("subscription_num_outstanding_messages", "workers", "")],
        2
    );
    assert_eq!(
        samples[&subscription_series("subscription_sent_message_count", "workers", "")],
        2
    );
    t.ack(&sub, &ack_ids(&received)).await.unwrap();
    let samples = scrape(&t).await;
    assert_eq!(samples[&undelivered], 2);
    assert_eq!(
        samples[&subscription_series("subscription_ack_message_count", "workers", "")],
        2
    );
    assert_eq!(
        samples[&subscription_series("subscription_num_outstanding_messages", "workers", "")],
        0
    );
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dead_lettered_messages_are_counted() {
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("orders-dead").await;
    let sub = t
        .create_subscription_with(Subscription {
            name: format!("projects/{PROJECT}/subscriptions/fragile"),
            topic: topic.clone(),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead,
                max_delivery_attempts: 5,
            }),
            ..Default::default()
        })
        .await
        .name;
    t.publish(&topic, &["poison"]).await;
    // Five attempts, each nacked: the fifth nack dead-letters it.
    for _ in 0..5 {
        let received = t.pull_now(&sub, 1).await;
        assert_eq!(received.len(), 1);
        t.modack(&sub, &ack_ids(&received), 0).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let samples = scrape(&t).await;
    assert_eq!(
        samples[&subscription_series("subscription_dead_letter_message_count", "fragile", "")],
        1
    );
    assert_eq!(
        samples[&subscription_series("subscription_num_undelivered_messages", "fragile", "")],
        0
    );
    assert_eq!(
        samples[&subscription_series("subscription_sent_message_count", "fragile", "")],
        5
    );
    t.shutdown().await;
}

/// A capture of OTLP/HTTP metrics exports.
#[derive(Clone, Default)]
struct MetricsCapture {
    requests: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

async fn start_capture() -> (MetricsCapture, SocketAddr) {
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let capture = MetricsCapture::default();
    let recorded = capture.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: Bytes| {
            let recorded = recorded.clone();
            async move {
                let request = ExportMetricsServiceRequest::decode(body).unwrap();
                recorded.requests.lock().unwrap().push(request);
                (
                    [("content-type", "application/x-protobuf")],
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (capture, addr)
}

/// The int value of the newest point of `name` whose attributes include
/// `subscription_id`/`topic_id` = `id`, across every captured export.
fn latest_value(capture: &MetricsCapture, name: &str, id: &str) -> Option<(i64, bool)> {
    let requests = capture.requests.lock().unwrap();
    let mut found = None;
    for request in requests.iter() {
        for resource in &request.resource_metrics {
            for scope in &resource.scope_metrics {
                for metric in scope.metrics.iter().filter(|m| m.name == name) {
                    let (points, is_sum) = match metric.data.as_ref().unwrap() {
                        metric::Data::Gauge(g) => (&g.data_points, false),
                        metric::Data::Sum(s) => {
                            assert!(s.is_monotonic, "{name} is a monotonic sum");
                            (&s.data_points, true)
                        }
                        other => panic!("{name}: unexpected {other:?}"),
                    };
                    for point in points {
                        let names_id = point.attributes.iter().any(|a| {
                            (a.key == "subscription_id" || a.key == "topic_id")
                                && matches!(
                                    a.value.as_ref().and_then(|v| v.value.as_ref()),
                                    Some(any_value::Value::StringValue(v)) if v == id
                                )
                        });
                        if names_id && let Some(number_data_point::Value::AsInt(v)) = point.value {
                            found = Some((v, is_sum));
                        }
                    }
                }
            }
        }
    }
    found
}

#[tokio::test(start_paused = true)]
async fn forwarded_metrics_carry_the_metric_types() {
    let (capture, addr) = start_capture().await;
    let forward = ForwardConfig::to(&format!("http://{addr}"), Protocol::HttpProtobuf).unwrap();
    let config = virtual_config()
        .with_forwarding(forward)
        .with_metrics_export_interval(Duration::from_millis(100));
    let t = TestServer::start_with(config).await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("workers", &topic).await;
    t.publish(&topic, &["a", "b", "c"]).await;
    t.pull_acking_now(&sub).await;
    // Exports run every 100 ms of virtual time from the start; 150 ms on,
    // one has sampled the acks, and flushing hands it to the capture.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        t.server().forwarding().flush(Duration::from_secs(5)).await,
        "forwarding flushed"
    );
    assert_eq!(
        latest_value(
            &capture,
            "pubsub.googleapis.com/subscription/ack_message_count",
            "workers"
        ),
        Some((3, true))
    );
    assert_eq!(
        latest_value(
            &capture,
            "pubsub.googleapis.com/subscription/num_undelivered_messages",
            "workers"
        ),
        Some((0, false))
    );
    assert_eq!(
        latest_value(
            &capture,
            "pubsub.googleapis.com/topic/send_message_operation_count",
            "orders"
        ),
        Some((3, true))
    );
    let requests = capture.requests.lock().unwrap().clone();
    let resource = requests[0].resource_metrics[0].resource.as_ref().unwrap();
    assert!(
        resource.attributes.iter().any(|a| a.key == "service.name"),
        "{resource:?}"
    );
    t.shutdown().await;
}
