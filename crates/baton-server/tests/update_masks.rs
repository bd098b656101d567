//! Update requests with nested field-mask paths, as the real service takes
//! them: Google's own sample pins a topic's schema revisions with the REST
//! mask `schemaSettings.firstRevisionId,schemaSettings.lastRevisionId`, and a
//! subscription's push endpoint changes alone with `push_config.push_endpoint`.
//! Siblings of a nested field stay as they are; a misspelt nested path is
//! refused with the real wording.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_proto::pubsub::{PushConfig, Subscription, UpdateSubscriptionRequest, push_config};
use baton_proto::wkt::FieldMask;
use baton_testkit::messages::PROJECT;
use baton_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;
use tonic::Code;

const AVRO_V1: &str =
    r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
const AVRO_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0}]}"#;

#[tokio::test]
async fn rest_nested_mask_pins_a_topics_schema_revisions() {
    let t = TestServer::start().await;
    let schema = format!("projects/{PROJECT}/schemas/order");
    let (status, first) = t
        .rest(
            Method::POST,
            &format!("/v1/projects/{PROJECT}/schemas?schemaId=order"),
            Some(json!({"type": "AVRO", "definition": AVRO_V1})),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = t
        .rest(
            Method::POST,
            &format!("/v1/{schema}:commit"),
            Some(json!({"schema": {"type": "AVRO", "definition": AVRO_V2}})),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let (first_id, second_id) = (
        first["revisionId"].as_str().unwrap().to_owned(),
        second["revisionId"].as_str().unwrap().to_owned(),
    );
    let topic = format!("/v1/projects/{PROJECT}/topics/orders");
    let (status, created) = t
        .rest(
            Method::PUT,
            &topic,
            Some(json!({"schemaSettings": {"schema": schema, "encoding": "JSON"}})),
        )
        .await;
    assert_eq!(status, 200, "{created}");

    let (status, updated) = t
        .rest(
            Method::PATCH,
            &topic,
            Some(json!({
                "topic": {"schemaSettings": {"firstRevisionId": first_id, "lastRevisionId": second_id}},
                "updateMask": "schemaSettings.firstRevisionId,schemaSettings.lastRevisionId",
            })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let settings = &updated["schemaSettings"];
    assert_eq!(settings["schema"], schema.as_str(), "{updated}");
    assert_eq!(settings["encoding"], "JSON", "{updated}");
    assert_eq!(settings["firstRevisionId"], first_id.as_str());
    assert_eq!(settings["lastRevisionId"], second_id.as_str());
    let (_, got) = t.rest(Method::GET, &topic, None).await;
    assert_eq!(got["schemaSettings"], *settings);

    // A misspelt nested field: the real wording, the path as given.
    let (status, refused) = t
        .rest(
            Method::PATCH,
            &topic,
            Some(json!({
                "topic": {"schemaSettings": {}},
                "updateMask": "schemaSettings.firstRevision",
            })),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["message"],
        "Invalid update_mask provided in the UpdateTopicRequest: schema_settings.first_revision is not a known Topic field. Note that field paths must be of the form 'schema_settings' rather than 'schemaSetings'."
    );

    // The schema deleted: the topic keeps its settings, naming the schema
    // and the revisions it was pinned to as deleted (as the emulator does).
    let (status, _) = t.rest(Method::DELETE, &format!("/v1/{schema}"), None).await;
    assert_eq!(status, 200);
    let (_, got) = t.rest(Method::GET, &topic, None).await;
    assert_eq!(
        got["schemaSettings"],
        json!({
            "schema": "_deleted-schema_",
            "encoding": "JSON",
            "firstRevisionId": "_deleted-schema-revision_",
            "lastRevisionId": "_deleted-schema-revision_",
        })
    );
    t.shutdown().await;
}

#[tokio::test]
async fn grpc_nested_mask_changes_one_push_field() {
    let t = TestServer::start().await;
    let topic = t.create_topic("orders").await;
    let name = format!("projects/{PROJECT}/subscriptions/pushed");
    t.create_subscription_with(Subscription {
        name: name.clone(),
        topic,
        push_config: Some(PushConfig {
            push_endpoint: "https://old.example.com/push".into(),
            attributes: [("x-goog-version".to_owned(), "v1".to_owned())].into(),
            authentication_method: Some(push_config::AuthenticationMethod::OidcToken(
                push_config::OidcToken {
                    service_account_email: "pusher@baton-tests.iam.gserviceaccount.com".into(),
                    audience: "orders".into(),
                },
            )),
            ..Default::default()
        }),
        ack_deadline_seconds: 30,
        ..Default::default()
    })
    .await;
    let update = |paths: &[&str], endpoint: &str| UpdateSubscriptionRequest {
        subscription: Some(Subscription {
            name: name.clone(),
            push_config: Some(PushConfig {
                push_endpoint: endpoint.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    let updated = t
        .subscriber()
        .update_subscription(update(
            &["push_config.push_endpoint"],
            "https://new.example.com/push",
        ))
        .await
        .unwrap()
        .into_inner();
    let push = updated.push_config.unwrap();
    assert_eq!(push.push_endpoint, "https://new.example.com/push");
    assert_eq!(push.attributes["x-goog-version"], "v1");
    assert!(matches!(
        push.authentication_method,
        Some(push_config::AuthenticationMethod::OidcToken(ref token)) if token.audience == "orders"
    ));
    assert_eq!(updated.ack_deadline_seconds, 30);

    // The nested value goes through the top-level field's checks.
    let refused = t
        .subscriber()
        .update_subscription(update(&["push_config.push_endpoint"], "not a url"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    // An immutable field stays immutable through a nested path.
    let refused = t
        .subscriber()
        .update_subscription(update(&["bigquery_config.table", "topic.x"], ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    t.shutdown().await;
}
