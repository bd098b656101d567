//! The Rust client's admin surface against Baton and the gcloud emulator at
//! once: snapshots, schemas and revisions, seek, modify push config and the
//! typed topic update that pins schema revisions. IAM only as far as the
//! emulator goes: it answers the IAMPolicy methods with UNIMPLEMENTED, so
//! Baton's policies are covered by baton-client's `admin_surface` test.

use anyhow::{Context, ensure};
use baton_client::proto::PushConfig;
use baton_client::{
    Client, ClientConfig, Endpoint, MessageEncoding, SchemaDefinition, SchemaType, SchemaView,
    SnapshotConfig, SubscriptionConfig, TopicUpdate,
};
use baton_testkit::interop::{InteropServer, on_both};
use baton_testkit::python::PROJECT;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
const AVRO_V1: &str =
    r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
const AVRO_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0}]}"#;

async fn admin_surface(server: InteropServer) -> anyhow::Result<()> {
    let client = Client::connect(
        ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(server.host.clone())),
    )
    .await?;
    let topic = server.id("topic");
    let sub = server.id("sub");
    let schema = server.id("schema");
    client.create_topic(&topic).await.context("create topic")?;
    client
        .create_subscription(SubscriptionConfig::new(&sub, &topic))
        .await
        .context("create subscription")?;

    let snapshot = client
        .create_snapshot(SnapshotConfig::new(server.id("snap"), &sub))
        .await
        .context("create snapshot")?;
    ensure!(snapshot.topic == client.topic_name(&topic), "{snapshot:?}");
    ensure!(client.get_snapshot(&snapshot.name).await?.name == snapshot.name);
    ensure!(
        client.list_topic_snapshots(&topic).await? == [snapshot.name.clone()],
        "topic snapshots"
    );
    client
        .seek_to_snapshot(&sub, &snapshot.name)
        .await
        .context("seek to snapshot")?;
    client
        .seek_to_time(&sub, std::time::SystemTime::now())
        .await
        .context("seek to time")?;
    client.delete_snapshot(&snapshot.name).await?;

    client
        .modify_push_config(
            &sub,
            PushConfig {
                push_endpoint: "http://127.0.0.1:9/push".into(),
                ..Default::default()
            },
        )
        .await
        .context("modify push config")?;
    let got = client.get_subscription(&sub).await?;
    ensure!(
        got.push_config.map(|p| p.push_endpoint).as_deref() == Some("http://127.0.0.1:9/push"),
        "push endpoint"
    );

    let first = client
        .create_schema(&schema, SchemaDefinition::new(SchemaType::Avro, AVRO_V1))
        .await
        .context("create schema")?
        .revision_id;
    let last = client
        .commit_schema(&schema, SchemaDefinition::new(SchemaType::Avro, AVRO_V2))
        .await
        .context("commit schema")?
        .revision_id;
    ensure!(
        client
            .list_schema_revisions(&schema, SchemaView::Basic)
            .await?
            .len()
            == 2
    );
    ensure!(
        client
            .get_schema(&schema, SchemaView::Full)
            .await?
            .definition
            == AVRO_V2,
        "newest revision"
    );
    client
        .validate_message(&schema, br#"{"id":"1","qty":2}"#, MessageEncoding::Json)
        .await
        .context("validate message")?;
    let typed = client.create_topic(&server.id("typed")).await?.name;
    client
        .update_topic_with(TopicUpdate::new(&typed).with_schema(&schema, MessageEncoding::Json))
        .await
        .context("set schema")?;
    let pinned = client
        .update_topic_with(TopicUpdate::new(&typed).with_schema_revisions(&first, &last))
        .await
        .context("pin revisions")?;
    let settings = pinned.schema_settings.context("schema settings")?;
    ensure!(
        settings.schema == client.schema_name(&schema),
        "{settings:?}"
    );
    ensure!(settings.encoding == 1, "encoding stays: {settings:?}");
    ensure!(settings.first_revision_id == first && settings.last_revision_id == last);
    // IAM: the emulator answers UNIMPLEMENTED (checked here so a future
    // emulator that serves it gets noticed); Baton serves it.
    let iam = client.get_iam_policy(&client.topic_name(&topic)).await;
    match server.name {
        "Baton" => ensure!(iam.is_ok(), "{iam:?}"),
        _ => ensure!(
            // UNIMPLEMENTED is gRPC code 12.
            iam.as_ref().err().and_then(|e| e.code()).map(i32::from) == Some(12),
            "the emulator's GetIamPolicy: {iam:?}"
        ),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_admin_surface_matches_the_emulator() {
    on_both(TMP, "client-admin", admin_surface).await;
}
