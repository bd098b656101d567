//! gzip on every gRPC service: compressed requests are accepted, responses
//! are compressed for clients that ask, and the message size limits hold
//! for the inflated size (a gzip bomb gets RESOURCE_EXHAUSTED).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_proto::pubsub::{PublishRequest, PubsubMessage};
use baton_server::ServerConfig;
use baton_testkit::otlp::{hex, now_nanos as now, request, span, trace_id, trace_service_client};
use baton_testkit::prelude::*;
use baton_testkit::trace_api::get_json;
use tonic::Code;
use tonic::codec::CompressionEncoding::Gzip;

#[tokio::test]
async fn publish_and_pull_gzip_compressed() {
    let server = TestServer::start().await;
    let topic = server.create_topic("gz-topic").await;
    let subscription = server.create_subscription("gz-sub", &topic).await;
    let mut publisher = publisher(server.channel.clone())
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    // Compressible data, so gzip has something to do.
    let data = "gzip ".repeat(10_000);
    let published = publisher
        .publish(PublishRequest {
            topic: topic.clone(),
            messages: vec![msg(&data)],
        })
        .await
        .unwrap();
    assert_eq!(
        published.metadata().get("grpc-encoding").unwrap(),
        "gzip",
        "the response is compressed for a client that accepts gzip"
    );
    let ids = published.into_inner().message_ids;
    assert_eq!(ids.len(), 1);

    let mut subscriber = subscriber(server.channel.clone())
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let pulled = subscriber
        .pull(pull_request(&subscription, 10, true))
        .await
        .unwrap();
    assert_eq!(pulled.metadata().get("grpc-encoding").unwrap(), "gzip");
    let received = pulled.into_inner().received_messages;
    assert_eq!(datas(&received), [data]);
    assert_eq!(message_id(&received[0]), ids[0]);

    // A client that does not accept gzip gets plain responses.
    let plain = publisher_plain_list(&server).await;
    assert!(plain.is_none(), "no grpc-encoding for a plain client");
}

/// The `grpc-encoding` of a ListTopics answer to a client not asking for
/// compression.
async fn publisher_plain_list(server: &TestServer) -> Option<String> {
    let answer = server
        .publisher()
        .list_topics(baton_proto::pubsub::ListTopicsRequest {
            project: project(),
            ..Default::default()
        })
        .await
        .unwrap();
    answer
        .metadata()
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn gzip_bomb_is_refused_by_the_inflated_size() {
    let server = TestServer::start().await;
    let topic = server.create_topic("bomb").await;
    // 30 MB of zeros: some 30 KB compressed, over the 20 MB limit inflated.
    let bomb = PubsubMessage {
        data: vec![0; 30 * 1024 * 1024],
        ..Default::default()
    };
    let mut publisher = publisher(server.channel.clone()).send_compressed(Gzip);
    let error = publisher
        .publish(PublishRequest {
            topic: topic.clone(),
            messages: vec![bomb],
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    // The server is fine and the connection still serves.
    let ids = server.publish(&topic, &["after the bomb"]).await;
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn otlp_grpc_export_gzip_lands_in_the_store() {
    let server =
        TestServer::start_with(ServerConfig::new(loopback()).with_otlp_grpc(loopback())).await;
    let otlp = server.server().otlp_grpc_addr().unwrap();
    let mut client = trace_service_client(otlp)
        .await
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let trace = trace_id(42);
    let start = now();
    let answer = client
        .export(request(
            "gzip-svc",
            vec![span(
                &trace,
                1,
                None,
                "compressed root",
                start,
                start + 1000,
            )],
        ))
        .await
        .unwrap();
    assert!(answer.into_inner().partial_success.is_none());
    let (status, detail) = get_json(server.addr, &format!("/api/traces/{}", hex(&trace))).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["spans"][0]["name"], "compressed root");

    // A bomb over the receiver's 16 MiB limit, inflated.
    let huge = "a".repeat(20 * 1024 * 1024);
    let error = client
        .max_encoding_message_size(64 * 1024 * 1024)
        .export(request(
            "gzip-svc",
            vec![span(&trace_id(43), 1, None, &huge, start, start + 1000)],
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    let (status, _) = get_json(server.addr, &format!("/api/traces/{}", hex(&trace_id(43)))).await;
    assert_eq!(status, 404);
}
