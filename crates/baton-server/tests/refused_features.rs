//! No silent no-ops: the features of the API that Baton cannot carry out
//! (BigQuery and Cloud Storage subscriptions, message transforms, topic
//! ingestion) are refused with UNIMPLEMENTED naming the field, on create
//! and on update, over gRPC and REST alike, instead of being stored and left
//! inert (docs/compatibility.md, "Features Baton refuses"). Empty configs
//! and disabled transforms ask for nothing and pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_proto::pubsub::{
    BigQueryConfig, CloudStorageConfig, IngestionDataSourceSettings, JavaScriptUdf,
    MessageTransform, Subscription, Topic, UpdateSubscriptionRequest, UpdateTopicRequest,
    ingestion_data_source_settings, message_transform,
};
use baton_proto::wkt::FieldMask;
use baton_testkit::messages::PROJECT;
use baton_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;
use tonic::Code;

fn transform(disabled: bool) -> MessageTransform {
    MessageTransform {
        transform: Some(message_transform::Transform::JavascriptUdf(JavaScriptUdf {
            function_name: "redact".into(),
            code: "function redact(message, metadata) { return message; }".into(),
        })),
        disabled,
        ..Default::default()
    }
}

fn mask(path: &str) -> Option<FieldMask> {
    Some(FieldMask {
        paths: vec![path.to_owned()],
    })
}

#[track_caller]
fn assert_refused(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(
        status.message().contains(field) && status.message().contains("docs/compatibility.md"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn grpc_refuses_subscription_features_baton_cannot_carry_out() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let name = |id: &str| format!("projects/{PROJECT}/subscriptions/{id}");
    let refused: [(&str, Subscription); 3] = [
        (
            "bigquery_config",
            Subscription {
                bigquery_config: Some(BigQueryConfig {
                    table: "p.dataset.table".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "cloud_storage_config",
            Subscription {
                cloud_storage_config: Some(CloudStorageConfig {
                    bucket: "bucket".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "message_transforms",
            Subscription {
                message_transforms: vec![transform(false)],
                ..Default::default()
            },
        ),
    ];
    for (field, features) in refused.iter().cloned() {
        let status = t
            .subscriber()
            .create_subscription(Subscription {
                name: name("refused"),
                topic: topic.clone(),
                ..features.clone()
            })
            .await
            .unwrap_err();
        assert_refused(&status, field);

        // On update too, whatever the subscription was created with.
        let plain = name(&format!("plain-{}", field.replace('_', "-")));
        t.create_subscription_with(Subscription {
            name: plain.clone(),
            topic: topic.clone(),
            ..Default::default()
        })
        .await;
        let status = t
            .subscriber()
            .update_subscription(UpdateSubscriptionRequest {
                subscription: Some(Subscription {
                    name: plain.clone(),
                    ..features
                }),
                update_mask: mask(field),
            })
            .await
            .unwrap_err();
        assert_refused(&status, field);
    }
    assert!(
        t.list_subscriptions()
            .await
            .iter()
            .all(|s| s.name != name("refused")),
        "nothing refused was created"
    );

    // What asks for nothing passes: empty configs, disabled transforms.
    let created = t
        .subscriber()
        .create_subscription(Subscription {
            name: name("inert"),
            topic: topic.clone(),
            bigquery_config: Some(BigQueryConfig::default()),
            cloud_storage_config: Some(CloudStorageConfig::default()),
            message_transforms: vec![transform(true)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.message_transforms[0].disabled);
    t.shutdown().await;
}

#[tokio::test]
async fn grpc_refuses_topic_features_baton_cannot_carry_out() {
    let t = TestServer::start().await;
    let name = format!("projects/{PROJECT}/topics/imported");
    let ingestion = IngestionDataSourceSettings {
        source: Some(ingestion_data_source_settings::Source::AwsKinesis(
            ingestion_data_source_settings::AwsKinesis {
                stream_arn: "arn:aws:kinesis:us-east-1:1:stream/s".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let refused: [(&str, Topic); 2] = [
        (
            "ingestion_data_source_settings",
            Topic {
                ingestion_data_source_settings: Some(ingestion),
                ..Default::default()
            },
        ),
        (
            "message_transforms",
            Topic {
                message_transforms: vec![transform(false)],
                ..Default::default()
            },
        ),
    ];
    for (field, features) in refused.iter().cloned() {
        let status = t
            .publisher()
            .create_topic(Topic {
                name: name.clone(),
                ..features.clone()
            })
            .await
            .unwrap_err();
        assert_refused(&status, field);
        let plain = t.create_topic("plain").await;
        let status = t
            .publisher()
            .update_topic(UpdateTopicRequest {
                topic: Some(Topic {
                    name: plain,
                    ..features
                }),
                update_mask: mask(field),
            })
            .await
            .unwrap_err();
        assert_refused(&status, field);
        t.publisher()
            .delete_topic(baton_proto::pubsub::DeleteTopicRequest {
                topic: format!("projects/{PROJECT}/topics/plain"),
            })
            .await
            .unwrap();
    }
    t.shutdown().await;
}

#[tokio::test]
async fn rest_refuses_the_same_features_with_http_501() {
    let t = TestServer::start().await;
    let topic = format!("/v1/projects/{PROJECT}/topics/orders");
    let (status, body) = t
        .rest(
            Method::PUT,
            &topic,
            Some(json!({"messageTransforms": [{"javascriptUdf": {"functionName": "f", "code": "function f(m) { return m; }"}}]})),
        )
        .await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(body["error"]["status"], "UNIMPLEMENTED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("message_transforms")
    );
    let (status, body) = t.rest(Method::PUT, &topic, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");

    let sub = format!("/v1/projects/{PROJECT}/subscriptions/to-bigquery");
    let topic_name = format!("projects/{PROJECT}/topics/orders");
    let (status, body) = t
        .rest(
            Method::PUT,
            &sub,
            Some(json!({"topic": topic_name, "bigqueryConfig": {"table": "p.d.t"}})),
        )
        .await;
    assert_eq!(status, 501, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bigquery_config")
    );
    let (status, body) = t
        .rest(Method::PUT, &sub, Some(json!({"topic": topic_name})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .rest(
            Method::PATCH,
            &sub,
            Some(json!({
                "subscription": {"cloudStorageConfig": {"bucket": "b"}},
                "updateMask": "cloudStorageConfig"
            })),
        )
        .await;
    assert_eq!(status, 501, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cloud_storage_config")
    );
    t.shutdown().await;
}
