#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every admin verb of the client against a real Baton: snapshots, schemas
//! and their revisions, IAM policies on the four kinds of resource, typed
//! topic/subscription/snapshot updates (masks derived from what was set),
//! seek to a snapshot and modify push config.

use std::time::{Duration, SystemTime};

use baton_client::iam::{Policy, add_binding, remove_binding};
use baton_client::proto::PushConfig;
use baton_client::{
    AdminError, Client, ClientConfig, Endpoint, MessageEncoding, SchemaDefinition, SchemaType,
    SchemaView, SnapshotConfig, SnapshotUpdate, SubscriptionConfig, SubscriptionUpdate,
    TopicUpdate,
};
use baton_testkit::server::TestServer;
use tonic::Code;

const AVRO_V1: &str =
    r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
const AVRO_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0}]}"#;

async fn client(server: &TestServer) -> Client {
    Client::connect(ClientConfig::new("p").with_endpoint(Endpoint::Emulator(server.host())))
        .await
        .unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, AdminError>) -> Code {
    result.expect_err("the call fails").code().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_create_get_list_update_seek_delete() {
    let server = TestServer::start().await;
    let client = client(&server).await;
    client.create_topic("orders").await.unwrap();
    client
        .create_subscription(SubscriptionConfig::new("worker", "orders"))
        .await
        .unwrap();
    server
        .publish("projects/p/topics/orders", &["a", "b"])
        .await;

    let snapshot = client
        .create_snapshot(SnapshotConfig::new("before", "worker").with_label("env", "test"))
        .await
        .unwrap();
    assert_eq!(snapshot.name, "projects/p/snapshots/before");
    assert_eq!(snapshot.topic, "projects/p/topics/orders");
    assert_eq!(snapshot.labels["env"], "test");
    assert_eq!(client.get_snapshot("before").await.unwrap(), snapshot);
    let listed = client.list_snapshots().await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&snapshot));
    assert_eq!(
        client.list_topic_snapshots("orders").await.unwrap(),
        std::slice::from_ref(&snapshot.name)
    );

    let expire = SystemTime::now() + Duration::from_secs(3600);
    let updated = client
        .update_snapshot(
            SnapshotUpdate::new("before")
                .with_label("env", "prod")
                .with_expire_time(expire),
        )
        .await
        .unwrap();
    assert_eq!(updated.labels["env"], "prod");
    let expected = expire.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(
        updated.expire_time.unwrap().seconds,
        i64::try_from(expected.as_secs()).unwrap()
    );

    // Ack everything, then seek back to the snapshot: both come again.
    let acked = server
        .pull_acking_all("projects/p/subscriptions/worker", 2, Duration::from_secs(5))
        .await;
    assert_eq!(acked.len(), 2);
    assert_eq!(server.backlog("projects/p/subscriptions/worker"), 0);
    client.seek_to_snapshot("worker", "before").await.unwrap();
    assert_eq!(server.backlog("projects/p/subscriptions/worker"), 2);
    assert_eq!(
        code(client.seek_to_snapshot("worker", "missing").await),
        Code::NotFound
    );

    client.delete_snapshot("before").await.unwrap();
    assert_eq!(code(client.get_snapshot("before").await), Code::NotFound);
    assert_eq!(code(client.delete_snapshot("before").await), Code::NotFound);
    assert_eq!(
        code(
            client
                .create_snapshot(SnapshotConfig::new("orphan", "missing"))
                .await
        ),
        Code::NotFound
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_and_revisions() {
    let server = TestServer::start().await;
    let client = client(&server).await;
    let avro = |text: &str| SchemaDefinition::new(SchemaType::Avro, text);

    let created = client.create_schema("order", avro(AVRO_V1)).await.unwrap();
    assert_eq!(created.name, "projects/p/schemas/order");
    assert!(!created.revision_id.is_empty());
    let basic = client.get_schema("order", SchemaView::Basic).await.unwrap();
    assert!(
        basic.definition.is_empty(),
        "BASIC leaves the definition out"
    );
    let full = client.get_schema("order", SchemaView::Full).await.unwrap();
    assert_eq!(full.definition, AVRO_V1);
    assert_eq!(
        code(client.create_schema("order", avro(AVRO_V1)).await),
        Code::AlreadyExists
    );
    let proto = SchemaDefinition::new(
        SchemaType::ProtocolBuffer,
        "syntax = \"proto3\"; message Line { string sku = 1; }",
    );
    client.create_schema("line", proto.clone()).await.unwrap();
    let names: Vec<String> = client
        .list_schemas(SchemaView::Basic)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"projects/p/schemas/line".to_string()));

    let second = client.commit_schema("order", avro(AVRO_V2)).await.unwrap();
    assert_ne!(second.revision_id, created.revision_id);
    let revisions = client
        .list_schema_revisions("order", SchemaView::Full)
        .await
        .unwrap();
    let ids: Vec<&str> = revisions.iter().map(|s| s.revision_id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&created.revision_id.as_str()));
    let rolled = client
        .rollback_schema("order", &created.revision_id)
        .await
        .unwrap();
    assert_eq!(rolled.definition, AVRO_V1);
    assert_eq!(
        client
            .list_schema_revisions("order", SchemaView::Basic)
            .await
            .unwrap()
            .len(),
        3
    );
    let deleted = client
        .delete_schema_revision("order", &second.revision_id)
        .await
        .unwrap();
    assert_eq!(deleted.revision_id, second.revision_id);

    // Validation: definitions and messages.
    client.validate_schema(avro(AVRO_V2)).await.unwrap();
    client.validate_schema(proto.clone()).await.unwrap();
    assert_eq!(
        code(client.validate_schema(avro("{not avro")).await),
        Code::InvalidArgument
    );
    client
        .validate_message("order", br#"{"id":"42"}"#, MessageEncoding::Json)
        .await
        .unwrap();
    assert_eq!(
        code(
            client
                .validate_message("order", br#"{"nope":1}"#, MessageEncoding::Json)
                .await
        ),
        Code::InvalidArgument
    );
    client
        .validate_message_with_definition(avro(AVRO_V1), br#"{"id":"7"}"#, MessageEncoding::Json)
        .await
        .unwrap();

    client.delete_schema("line").await.unwrap();
    assert_eq!(
        code(client.get_schema("line", SchemaView::Basic).await),
        Code::NotFound
    );
    server.shutdown().await;
}

/// The issue's example: pinning a topic's schema revisions leaves its schema
/// and encoding as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_topic_update_pins_revisions_and_keeps_the_schema() {
    let server = TestServer::start().await;
    let client = client(&server).await;
    let first = client
        .create_schema("order", SchemaDefinition::new(SchemaType::Avro, AVRO_V1))
        .await
        .unwrap()
        .revision_id;
    let last = client
        .commit_schema("order", SchemaDefinition::new(SchemaType::Avro, AVRO_V2))
        .await
        .unwrap()
        .revision_id;
    client.create_topic("orders").await.unwrap();
    let with_schema = client
        .update_topic_with(
            TopicUpdate::new("orders")
                .with_schema("order", MessageEncoding::Json)
                .with_label("env", "test"),
        )
        .await
        .unwrap();
    let settings = with_schema.schema_settings.unwrap();
    assert_eq!(settings.schema, "projects/p/schemas/order");
    assert_eq!(settings.encoding, 1, "JSON");

    let pinned = client
        .update_topic_with(TopicUpdate::new("orders").with_schema_revisions(&first, &last))
        .await
        .unwrap();
    let settings = pinned.schema_settings.unwrap();
    assert_eq!(settings.schema, "projects/p/schemas/order", "schema stays");
    assert_eq!(settings.encoding, 1, "encoding stays");
    assert_eq!(settings.first_revision_id, first);
    assert_eq!(settings.last_revision_id, last);
    assert_eq!(pinned.labels["env"], "test", "labels not in the mask");

    let retention = client
        .update_topic_with(
            TopicUpdate::new("orders")
                .with_message_retention(Some(Duration::from_secs(3600)))
                .with_message_encoding(MessageEncoding::Binary),
        )
        .await
        .unwrap();
    assert_eq!(retention.message_retention_duration.unwrap().seconds, 3600);
    let settings = retention.schema_settings.unwrap();
    assert_eq!(settings.encoding, 2, "BINARY");
    assert_eq!(settings.first_revision_id, first, "revisions stay");

    let cleared = client
        .update_topic_with(TopicUpdate::new("orders").without_schema())
        .await
        .unwrap();
    assert!(cleared.schema_settings.is_none());
    assert_eq!(
        code(client.update_topic_with(TopicUpdate::new("orders")).await),
        Code::InvalidArgument,
        "an empty update"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_subscription_update_and_push_config() {
    let server = TestServer::start().await;
    let client = client(&server).await;
    client.create_topic("jobs").await.unwrap();
    client.create_topic("jobs-dlq").await.unwrap();
    client
        .create_subscription(SubscriptionConfig::new("worker", "jobs").with_label("a", "1"))
        .await
        .unwrap();
    let updated = client
        .update_subscription_with(
            SubscriptionUpdate::new("worker")
                .with_ack_deadline(Duration::from_secs(60))
                .with_dead_letter("jobs-dlq", 9)
                .with_push_endpoint("http://127.0.0.1:9/push"),
        )
        .await
        .unwrap();
    assert_eq!(updated.ack_deadline_seconds, 60);
    assert_eq!(updated.labels["a"], "1", "labels not in the mask");
    assert_eq!(
        updated.dead_letter_policy.unwrap().dead_letter_topic,
        "projects/p/topics/jobs-dlq"
    );
    assert_eq!(
        updated.push_config.unwrap().push_endpoint,
        "http://127.0.0.1:9/push"
    );

    client
        .modify_push_config("worker", PushConfig::default())
        .await
        .unwrap();
    let got = client.get_subscription("worker").await.unwrap();
    assert!(
        got.push_config
            .is_none_or(|push| push.push_endpoint.is_empty()),
        "pull again"
    );
    client
        .modify_push_config(
            "worker",
            PushConfig {
                push_endpoint: "http://127.0.0.1:9/other".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let got = client.get_subscription("worker").await.unwrap();
    assert_eq!(
        got.push_config.unwrap().push_endpoint,
        "http://127.0.0.1:9/other"
    );
    assert_eq!(
        code(
            client
                .modify_push_config("missing", PushConfig::default())
                .await
        ),
        Code::NotFound
    );
    let cleared = client
        .update_subscription_with(SubscriptionUpdate::new("worker").without_dead_letter())
        .await
        .unwrap();
    assert!(cleared.dead_letter_policy.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policies_on_every_kind_of_resource() {
    let server = TestServer::start().await;
    let client = client(&server).await;
    client.create_topic("orders").await.unwrap();
    client
        .create_subscription(SubscriptionConfig::new("worker", "orders"))
        .await
        .unwrap();
    client
        .create_snapshot(SnapshotConfig::new("snap", "worker"))
        .await
        .unwrap();
    client
        .create_schema("order", SchemaDefinition::new(SchemaType::Avro, AVRO_V1))
        .await
        .unwrap();
    let resources = [
        client.topic_name("orders"),
        client.subscription_name("worker"),
        client.snapshot_name("snap"),
        client.schema_name("order"),
    ];
    for resource in &resources {
        let mut policy = client.get_iam_policy(resource).await.unwrap();
        assert!(policy.bindings.is_empty(), "{resource}");
        assert!(add_binding(
            &mut policy,
            "roles/pubsub.viewer",
            "user:ana@example.com"
        ));
        let set = client.set_iam_policy(resource, policy).await.unwrap();
        assert_eq!(set.bindings.len(), 1, "{resource}");
        let got = client.get_iam_policy(resource).await.unwrap();
        assert_eq!(got.bindings[0].members, ["user:ana@example.com"]);
        let mut emptied = got.clone();
        assert!(remove_binding(
            &mut emptied,
            "roles/pubsub.viewer",
            "user:ana@example.com"
        ));
        client.set_iam_policy(resource, emptied).await.unwrap();
        assert!(
            client
                .get_iam_policy(resource)
                .await
                .unwrap()
                .bindings
                .is_empty()
        );
        // Without --auth every permission asked for is granted.
        let granted = client
            .test_iam_permissions(resource, &["pubsub.topics.get"])
            .await
            .unwrap();
        assert!(granted.len() <= 1, "{granted:?}");
    }
    assert_eq!(
        code(client.get_iam_policy(&client.topic_name("missing")).await),
        Code::NotFound
    );
    // A stale etag loses.
    let topic = client.topic_name("orders");
    let stale = client.get_iam_policy(&topic).await.unwrap();
    let mut fresh = stale.clone();
    add_binding(&mut fresh, "roles/pubsub.publisher", "user:bo@example.com");
    client.set_iam_policy(&topic, fresh).await.unwrap();
    let mut late: Policy = stale;
    add_binding(&mut late, "roles/pubsub.publisher", "user:cy@example.com");
    if !late.etag.is_empty() {
        assert_eq!(
            code(client.set_iam_policy(&topic, late).await),
            Code::Aborted
        );
    }
    server.shutdown().await;
}

/// DetachSubscription: the subscription stays, marked detached, off its
/// topic's list, and refuses pulls; deleting the topic afterwards moves
/// only the still-attached subscriptions to `_deleted-topic_`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_subscription_keeps_it_detached_and_off_its_topic() {
    let server = TestServer::start().await;
    let client = client(&server).await;
    client.create_topic("jobs").await.unwrap();
    for id in ["worker", "auditor"] {
        client
            .create_subscription(SubscriptionConfig::new(id, "jobs"))
            .await
            .unwrap();
    }
    server.publish("projects/p/topics/jobs", &["before"]).await;
    assert_eq!(server.backlog("projects/p/subscriptions/worker"), 1);

    client.detach_subscription("worker").await.unwrap();
    let detached = client.get_subscription("worker").await.unwrap();
    assert!(detached.detached, "{detached:?}");
    assert_eq!(detached.topic, "projects/p/topics/jobs");
    assert!(!client.get_subscription("auditor").await.unwrap().detached);
    assert_eq!(
        client.list_topic_subscriptions("jobs").await.unwrap(),
        ["projects/p/subscriptions/auditor"]
    );
    // Its backlog is gone, nothing new arrives, and pulls are refused.
    assert_eq!(server.backlog("projects/p/subscriptions/worker"), 0);
    server.publish("projects/p/topics/jobs", &["after"]).await;
    assert_eq!(server.backlog("projects/p/subscriptions/worker"), 0);
    assert_eq!(server.backlog("projects/p/subscriptions/auditor"), 2);
    let refused = client
        .subscriber("worker")
        .pull(1)
        .await
        .expect_err("a detached subscription refuses pulls");
    assert_eq!(refused.code(), Some(Code::FailedPrecondition), "{refused}");

    // Deleting the topic: the attached subscription moves to
    // `_deleted-topic_`; the detached one was no longer on the topic and
    // keeps the name it had.
    client.delete_topic("jobs").await.unwrap();
    assert_eq!(
        client.get_subscription("auditor").await.unwrap().topic,
        "_deleted-topic_"
    );
    let after = client.get_subscription("worker").await.unwrap();
    assert!(after.detached);
    assert_eq!(after.topic, "projects/p/topics/jobs");

    assert_eq!(
        code(client.detach_subscription("missing").await),
        Code::NotFound
    );
    client.delete_subscription("worker").await.unwrap();
    assert_eq!(
        code(client.get_subscription("worker").await),
        Code::NotFound
    );
    server.shutdown().await;
}
