#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The durable disk store, end to end through the server: what a durable
//! server (`ServerConfig::with_data_dir`) promises to find again after a
//! restart on the same directory, and what it must not bring back.
//!
//! Every test stops the server cleanly (which closes the store file) and
//! starts a new one on the same directory; crashes (SIGKILL of the binary)
//! are tested in `crates/baton/tests/durability_crash.rs`.
//!
//! The servers run on virtual time (`start_paused` and
//! `TestServer::start_durable_virtual`; a restart keeps the clock, and the
//! store's writer holds it still while an fsync runs), so publish times are
//! exact virtual wall-clock times, a message leased for 600 s before a
//! restart is shown to be ready at the very instant the new server starts,
//! and no test waits in real time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use baton_proto::iam::{Binding, GetIamPolicyRequest, Policy, SetIamPolicyRequest};
use baton_proto::pubsub::schema_service_client::SchemaServiceClient;
use baton_proto::pubsub::{
    CommitSchemaRequest, CreateSchemaRequest, CreateSnapshotRequest, DeadLetterPolicy,
    DeleteSchemaRequest, DeleteSchemaRevisionRequest, DeleteSnapshotRequest,
    DeleteSubscriptionRequest, DeleteTopicRequest, DetachSubscriptionRequest, Encoding,
    ExpirationPolicy, GetSchemaRequest, GetSnapshotRequest, GetSubscriptionRequest,
    GetTopicRequest, ListSchemaRevisionsRequest, ListTopicSubscriptionsRequest, PubsubMessage,
    ReceivedMessage, RetryPolicy, Schema, SchemaSettings, SchemaView, SeekRequest, Snapshot,
    StreamingPullRequest, Subscription, Topic, UpdateSnapshotRequest, UpdateSubscriptionRequest,
    UpdateTopicRequest, schema, seek_request,
};
use baton_proto::wkt;
use baton_testkit::prelude::*;
use tonic::Code;
use tonic::transport::Channel;

// ----- helpers -------------------------------------------------------------

fn subscription(id: &str, topic: &str) -> Subscription {
    Subscription {
        name: subscription_name(id),
        topic: topic.to_string(),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn message(received: &ReceivedMessage) -> PubsubMessage {
    received.message.clone().expect("message present")
}

/// Received messages by message id.
fn by_id(received: &[ReceivedMessage]) -> BTreeMap<String, PubsubMessage> {
    received
        .iter()
        .map(|r| (message_id(r), message(r)))
        .collect()
}

fn numeric(id: &str) -> u64 {
    id.parse()
        .unwrap_or_else(|_| panic!("message id {id:?} is not a number"))
}

fn publish_time(received: &ReceivedMessage) -> wkt::Timestamp {
    message(received).publish_time.expect("publish time")
}

/// Pulls and acks everything `subscription` holds (`count` expected), then
/// checks nothing else is ready.
async fn drain_exactly(t: &TestServer, subscription: &str, count: usize) -> Vec<ReceivedMessage> {
    let got = t
        .pull_acking_until(subscription, count, Duration::from_secs(5))
        .await;
    assert_eq!(
        got.len(),
        count,
        "expected {count} messages on {subscription}, got {:?}",
        datas(&got)
    );
    let more = t.pull_now(subscription, 100).await;
    assert!(
        more.is_empty(),
        "unexpected extra messages on {subscription}: {:?}",
        datas(&more)
    );
    got
}

/// A wall-clock time as a protobuf timestamp.
fn timestamp(time: std::time::SystemTime) -> wkt::Timestamp {
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    wkt::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap(),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap(),
    }
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

async fn seek_to_time(t: &TestServer, subscription: &str, time: wkt::Timestamp) {
    t.subscriber()
        .seek(SeekRequest {
            subscription: subscription.to_string(),
            target: Some(seek_request::Target::Time(time)),
        })
        .await
        .expect("seek to a time");
}

/// Waits until `subscription`'s backlog is `expected`, at the same virtual
/// instant (what it waits for, an in-stream ack or a dead-lettering, needs no
/// timer).
async fn wait_backlog(t: &TestServer, subscription: &str, expected: usize) {
    settled(&format!("backlog of {subscription} is {expected}"), || {
        t.backlog(subscription) == expected
    })
    .await;
}

// ----- the store itself ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn in_memory_server_has_no_storage_and_durable_one_uses_the_store_file() {
    let memory = TestServer::start_virtual().await;
    assert!(
        memory.server().broker().storage().is_none(),
        "the default server keeps everything in memory"
    );
    memory.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let t = TestServer::start_durable_virtual(&data).await;
    let storage = t
        .server()
        .broker()
        .storage()
        .expect("a durable server has a store")
        .clone();
    assert_eq!(storage.path(), data.join(baton_broker::STORE_FILE));
    assert!(storage.path().is_file(), "the store file exists");
    t.shutdown().await;
}

// ----- the catalog -----------------------------------------------------------

/// Everything the get and list RPCs answer about the catalog.
#[derive(Debug, PartialEq)]
struct CatalogView {
    topics: Vec<Topic>,
    subscriptions: Vec<Subscription>,
    snapshots: Vec<Snapshot>,
    got_topics: Vec<Topic>,
    got_subscriptions: Vec<Subscription>,
    got_snapshots: Vec<Snapshot>,
    topic_subscriptions: Vec<Vec<String>>,
    topic_snapshots: Vec<Vec<String>>,
}

async fn catalog_view(
    t: &TestServer,
    topics: &[&str],
    subs: &[&str],
    snaps: &[&str],
) -> CatalogView {
    let mut publisher = t.publisher();
    let mut subscriber = t.subscriber();
    let listed_topics = t.list_topics().await;
    let listed_subs = t.list_subscriptions().await;
    let listed_snaps = t.list_snapshots().await;
    let mut got_topics = Vec::new();
    let mut got_subscriptions = Vec::new();
    let mut got_snapshots = Vec::new();
    let mut topic_subscriptions = Vec::new();
    let mut topic_snapshots = Vec::new();
    for topic in topics {
        let answer = publisher
            .get_topic(GetTopicRequest {
                topic: topic.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        got_topics.push(answer);
        let mut subs = t.list_topic_subscriptions(topic).await;
        subs.sort();
        topic_subscriptions.push(subs);
        let mut snaps = t.list_topic_snapshots(topic).await;
        snaps.sort();
        topic_snapshots.push(snaps);
    }
    for sub in subs {
        let answer = subscriber
            .get_subscription(GetSubscriptionRequest {
                subscription: sub.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        got_subscriptions.push(answer);
    }
    for snap in snaps {
        let answer = subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: snap.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        got_snapshots.push(answer);
    }
    let mut listed_topics = listed_topics;
    listed_topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut listed_subs = listed_subs;
    listed_subs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut listed_snaps = listed_snaps;
    listed_snaps.sort_by(|a, b| a.name.cmp(&b.name));
    CatalogView {
        topics: listed_topics,
        subscriptions: listed_subs,
        snapshots: listed_snaps,
        got_topics,
        got_subscriptions,
        got_snapshots,
        topic_subscriptions,
        topic_snapshots,
    }
}

#[tokio::test(start_paused = true)]
async fn catalog_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let mut publisher = t.publisher();
    let mut subscriber = t.subscriber();

    let orders = publisher
        .create_topic(Topic {
            name: topic_name("orders"),
            labels: labels(&[("env", "test"), ("team", "a")]),
            message_retention_duration: Some(secs(3600)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let dead = t.create_topic("dead-letters").await;
    let full = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 42,
            retain_acked_messages: true,
            message_retention_duration: Some(secs(7200)),
            labels: labels(&[("owner", "me")]),
            enable_message_ordering: true,
            expiration_policy: Some(ExpirationPolicy {
                ttl: Some(secs(86_400 * 3)),
            }),
            filter: "attributes.kind = \"keep\"".to_string(),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead.clone(),
                max_delivery_attempts: 7,
            }),
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(secs(1)),
                maximum_backoff: Some(secs(30)),
            }),
            ..subscription("full", &orders)
        })
        .await
        .name;
    let exactly_once = t
        .create_subscription_with(Subscription {
            enable_exactly_once_delivery: true,
            ..subscription("exactly-once", &orders)
        })
        .await
        .name;
    let on_dead = t.create_subscription("on-dead", &dead).await;
    let snap = snapshot_name("snap");
    subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: snap.clone(),
            subscription: exactly_once.clone(),
            labels: labels(&[("purpose", "backup")]),
            ..Default::default()
        })
        .await
        .unwrap();
    // Updates are catalog changes too.
    publisher
        .update_topic(UpdateTopicRequest {
            topic: Some(Topic {
                name: dead.clone(),
                labels: labels(&[("updated", "yes")]),
                ..Default::default()
            }),
            update_mask: mask(&["labels"]),
        })
        .await
        .unwrap();
    subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: on_dead.clone(),
                ack_deadline_seconds: 99,
                ..Default::default()
            }),
            update_mask: mask(&["ack_deadline_seconds"]),
        })
        .await
        .unwrap();
    subscriber
        .update_snapshot(UpdateSnapshotRequest {
            snapshot: Some(Snapshot {
                name: snap.clone(),
                labels: labels(&[("purpose", "updated")]),
                ..Default::default()
            }),
            update_mask: mask(&["labels"]),
        })
        .await
        .unwrap();

    let topics = [orders.as_str(), dead.as_str()];
    let subs = [full.as_str(), exactly_once.as_str(), on_dead.as_str()];
    let snaps = [snap.as_str()];
    let before = catalog_view(&t, &topics, &subs, &snaps).await;
    assert_eq!(before.topics.len(), 2);
    assert_eq!(before.subscriptions.len(), 3);
    assert_eq!(before.snapshots.len(), 1);

    let t = t.restart().await;
    let after = catalog_view(&t, &topics, &subs, &snaps).await;
    assert_eq!(after, before, "the catalog after the restart");

    // And once more: a store recovered from a recovered store.
    let t = t.restart().await;
    let again = catalog_view(&t, &topics, &subs, &snaps).await;
    assert_eq!(again, before, "the catalog after a second restart");

    // Names stay taken.
    let status = t
        .publisher()
        .create_topic(Topic {
            name: orders.clone(),
            ..Default::default()
        })
        .await;
    assert_code(status, Code::AlreadyExists);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn deletions_and_detaching_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let kept = t.create_topic("kept").await;
    let doomed = t.create_topic("doomed").await;
    let orphan = t.create_subscription("orphan", &doomed).await;
    let gone_sub = t.create_subscription("gone-sub", &kept).await;
    let detached = t.create_subscription("detached", &kept).await;
    let live = t.create_subscription("live", &kept).await;
    t.publish(&kept, &["one", "two"]).await;
    t.publish(&doomed, &["lost"]).await;
    let mut subscriber = t.subscriber();
    let gone_snap = snapshot_name("gone-snap");
    subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: gone_snap.clone(),
            subscription: live.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    subscriber
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot: gone_snap.clone(),
        })
        .await
        .unwrap();
    subscriber
        .delete_subscription(DeleteSubscriptionRequest {
            subscription: gone_sub.clone(),
        })
        .await
        .unwrap();
    t.publisher()
        .delete_topic(DeleteTopicRequest {
            topic: doomed.clone(),
        })
        .await
        .unwrap();
    t.publisher()
        .detach_subscription(DetachSubscriptionRequest {
            subscription: detached.clone(),
        })
        .await
        .unwrap();
    assert_eq!(t.backlog(&detached), 0);
    let orphan_backlog = t.backlog(&orphan);
    assert_eq!(
        orphan_backlog, 1,
        "deleting a topic keeps its subscriptions' backlog"
    );

    let t = t.restart().await;
    assert_eq!(
        t.backlog(&detached),
        0,
        "a detached subscription owes nothing"
    );
    assert_eq!(
        t.backlog(&orphan),
        orphan_backlog,
        "the deleted topic's subscription keeps its backlog"
    );
    let mut subscriber = t.subscriber();
    assert_code(
        subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: gone_snap.clone(),
            })
            .await,
        Code::NotFound,
    );
    assert_code(
        subscriber
            .get_subscription(GetSubscriptionRequest {
                subscription: gone_sub.clone(),
            })
            .await,
        Code::NotFound,
    );
    assert_code(
        t.publisher()
            .get_topic(GetTopicRequest {
                topic: doomed.clone(),
            })
            .await,
        Code::NotFound,
    );
    // The deleted topic's subscription stays, reporting the deleted topic.
    let orphaned = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: orphan.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(orphaned.topic, baton_broker::DELETED_TOPIC);
    // The detached one stays detached: it gets nothing.
    let detached_now = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: detached.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(detached_now.detached, "detached after the restart");
    let listed = t
        .publisher()
        .list_topic_subscriptions(ListTopicSubscriptionsRequest {
            topic: kept.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(listed, vec![live.clone()]);
    // A re-created topic of the deleted name is a new, empty topic.
    let doomed_again = t.create_topic("doomed").await;
    let fresh = t.create_subscription("fresh", &doomed_again).await;
    assert!(t.pull_now(&fresh, 10).await.is_empty());
    // The live subscription is unaffected.
    assert_eq!(
        sorted(datas(&drain_exactly(&t, &live, 2).await)),
        vec!["one", "two"]
    );
    // Re-creating the deleted subscription starts empty.
    let gone_again = t.create_subscription("gone-sub", &kept).await;
    assert!(t.pull_now(&gone_again, 10).await.is_empty());
    assert_eq!(t.backlog(&gone_again), 0);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn schema_revisions_and_iam_policies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let mut schemas = t.schema();
    let v1 = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0}]}"#;
    let created = schemas
        .create_schema(CreateSchemaRequest {
            parent: project(),
            schema_id: "order-schema".to_string(),
            schema: Some(Schema {
                r#type: schema::Type::Avro as i32,
                definition: v1.to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let schema_name = created.name.clone();
    let committed = schemas
        .commit_schema(CommitSchemaRequest {
            name: schema_name.clone(),
            schema: Some(Schema {
                name: schema_name.clone(),
                r#type: schema::Type::Avro as i32,
                definition: v2.to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(created.revision_id, committed.revision_id);
    let revisions_before = revisions(schemas.clone(), schema_name.clone()).await;
    assert_eq!(revisions_before.len(), 2);
    let latest_before = schemas
        .get_schema(GetSchemaRequest {
            name: schema_name.clone(),
            view: SchemaView::Full as i32,
        })
        .await
        .unwrap()
        .into_inner();

    let typed = t
        .publisher()
        .create_topic(Topic {
            name: topic_name("typed"),
            schema_settings: Some(SchemaSettings {
                schema: schema_name.clone(),
                encoding: Encoding::Json as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let typed_sub = t.create_subscription("typed-sub", &typed).await;

    let mut iam = t.iam();
    let policy = |member: &str| Policy {
        version: 1,
        bindings: vec![Binding {
            role: "roles/pubsub.subscriber".to_string(),
            members: vec![format!("user:{member}@example.com")],
            condition: None,
        }],
        ..Default::default()
    };
    let topic_policy = iam
        .set_iam_policy(SetIamPolicyRequest {
            resource: typed.clone(),
            policy: Some(policy("alice")),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let sub_policy = iam
        .set_iam_policy(SetIamPolicyRequest {
            resource: typed_sub.clone(),
            policy: Some(policy("bob")),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();

    let t = t.restart().await;
    let mut schemas = t.schema();
    let revisions_after = revisions(schemas.clone(), schema_name.clone()).await;
    assert_eq!(revisions_after, revisions_before, "every schema revision");
    let latest_after = schemas
        .get_schema(GetSchemaRequest {
            name: schema_name.clone(),
            view: SchemaView::Full as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest_after, latest_before);
    let first = schemas
        .get_schema(GetSchemaRequest {
            name: format!("{schema_name}@{}", created.revision_id),
            view: SchemaView::Full as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.definition, v1);

    // The topic still validates against the schema.
    let bad = t
        .publisher()
        .publish(baton_proto::pubsub::PublishRequest {
            topic: typed.clone(),
            messages: vec![msg(r#"{"nope":1}"#)],
        })
        .await;
    assert_code(bad, Code::InvalidArgument);
    let good = t.publish(&typed, &[r#"{"id":"o-1"}"#]).await;
    assert_eq!(good.len(), 1);

    let mut iam = t.iam();
    let get = |resource: String| {
        let mut iam = iam.clone();
        async move {
            iam.get_iam_policy(GetIamPolicyRequest {
                resource,
                options: None,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    assert_eq!(get(typed.clone()).await, topic_policy);
    assert_eq!(get(typed_sub.clone()).await, sub_policy);
    // A policy set after the restart gets an etag never handed out before.
    let newer = iam
        .set_iam_policy(SetIamPolicyRequest {
            resource: typed.clone(),
            policy: Some(policy("carol")),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(newer.etag, topic_policy.etag);
    assert_ne!(newer.etag, sub_policy.etag);

    // A revision committed after the restart is added after the old ones.
    let v3 = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}"#;
    schemas
        .commit_schema(CommitSchemaRequest {
            name: schema_name.clone(),
            schema: Some(Schema {
                name: schema_name.clone(),
                r#type: schema::Type::Avro as i32,
                definition: v3.to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // Deleting a revision, and a whole schema, is durable too.
    let doomed = schemas
        .create_schema(CreateSchemaRequest {
            parent: project(),
            schema_id: "doomed-schema".to_string(),
            schema: Some(Schema {
                r#type: schema::Type::Avro as i32,
                definition: v1.to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    schemas
        .delete_schema(DeleteSchemaRequest {
            name: doomed.name.clone(),
        })
        .await
        .unwrap();
    schemas
        .delete_schema_revision(DeleteSchemaRevisionRequest {
            name: format!("{schema_name}@{}", created.revision_id),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = t.restart().await;
    let mut schemas = t.schema();
    let third = revisions(schemas.clone(), schema_name.clone()).await;
    let ids: Vec<&str> = third.iter().map(|s| s.revision_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        2,
        "v2 and v3 (v1 deleted) after the restart: {third:?}"
    );
    assert!(!ids.contains(&created.revision_id.as_str()), "{ids:?}");
    assert!(ids.contains(&committed.revision_id.as_str()), "{ids:?}");
    assert_code(
        schemas
            .get_schema(GetSchemaRequest {
                name: doomed.name.clone(),
                view: SchemaView::Full as i32,
            })
            .await,
        Code::NotFound,
    );
    let mut iam = t.iam();
    let reread = iam
        .get_iam_policy(GetIamPolicyRequest {
            resource: typed.clone(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reread, newer);
    t.shutdown().await;
}

/// Every revision of `name`, full view, following every page.
async fn revisions(mut client: SchemaServiceClient<Channel>, name: String) -> Vec<Schema> {
    all_pages(async |page_token| {
        client
            .list_schema_revisions(ListSchemaRevisionsRequest {
                name: name.clone(),
                view: SchemaView::Full as i32,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    })
    .await
    .into_iter()
    .flat_map(|page| page.schemas)
    .collect()
}

// ----- messages ----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn unacked_messages_come_back_unchanged_and_acked_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            ..subscription("worker", &topic)
        })
        .await
        .name;
    let mut sent = Vec::new();
    for i in 0..6 {
        let mut m = with_attributes(&format!("m{i}"), &[("n", &i.to_string()), ("kind", "test")]);
        if i % 2 == 0 {
            m.ordering_key = format!("key-{i}");
        }
        sent.push(m);
    }
    // Binary data survives too.
    sent.push(PubsubMessage {
        data: vec![0, 159, 146, 150, 255],
        ..Default::default()
    });
    // One request per message: a request takes one ordering key only.
    let mut ids = Vec::new();
    for m in sent {
        ids.extend(t.publish_messages(&topic, vec![m]).await);
    }
    assert_eq!(ids.len(), 7);
    let received = t.pull_until(&sub, 7, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 7);
    let originals = by_id(&received);
    // Ack three of them.
    let (acked, unacked): (Vec<_>, Vec<_>) = received
        .iter()
        .partition(|r| ["m0", "m3", "m5"].contains(&data_lossy(r).as_str()));
    let acked_ids: Vec<String> = acked.iter().map(|r| r.ack_id.clone()).collect();
    t.ack(&sub, &acked_ids).await.unwrap();
    let expected: BTreeMap<String, PubsubMessage> = unacked
        .iter()
        .map(|r| (message_id(r), message(r)))
        .collect();
    assert_eq!(expected.len(), 4);

    let t = t.restart().await;
    let restarted = tokio::time::Instant::now();
    assert_eq!(t.backlog(&sub), 4, "the unacked messages are owed again");
    // Leased for 600 s before the restart, yet ready at once after it.
    let again = t.pull_until(&sub, 4, Duration::from_secs(5)).await;
    assert_eq!(since(restarted), Duration::ZERO, "ready at the restart");
    assert_eq!(
        by_id(&again),
        expected,
        "same ids, data, attributes, keys, times"
    );
    for r in &again {
        assert_eq!(originals[&message_id(r)], message(r));
    }
    t.ack(&sub, &ack_ids(&again)).await.unwrap();
    assert!(t.pull_now(&sub, 10).await.is_empty());

    // Acked after the restart: gone after the next one too.
    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 0);
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.shutdown().await;
}

fn data_lossy(received: &ReceivedMessage) -> String {
    String::from_utf8_lossy(&message(received).data).into_owned()
}

#[tokio::test(start_paused = true)]
async fn leased_nacked_and_streamed_messages_are_redelivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let pulled = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            ..subscription("pulled", &topic)
        })
        .await
        .name;
    let streamed = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            ..subscription("streamed", &topic)
        })
        .await
        .name;
    let ids = t
        .publish(&topic, &["leased", "nacked", "acked", "ready"])
        .await;

    let got = t.pull_until(&pulled, 3, Duration::from_secs(5)).await;
    assert_eq!(datas(&got), vec!["leased", "nacked", "acked"]);
    t.modack(&pulled, &[got[1].ack_id.clone()], 0)
        .await
        .unwrap();
    t.ack(&pulled, &[got[2].ack_id.clone()]).await.unwrap();

    let mut stream = t
        .open_stream(stream_with_deadline(&streamed, 600))
        .await
        .unwrap();
    let outstanding = stream.collect(4, Duration::from_secs(5)).await;
    assert_eq!(
        datas(&outstanding),
        vec!["leased", "nacked", "acked", "ready"]
    );
    stream
        .send(StreamingPullRequest {
            ack_ids: vec![outstanding[2].ack_id.clone()],
            ..Default::default()
        })
        .await;
    // The ack is applied (and durable) before the restart.
    wait_backlog(&t, &streamed, 3).await;

    // Restart with the stream still open and its messages outstanding.
    let t = t.restart().await;
    let restarted = tokio::time::Instant::now();
    drop(stream);
    let again = t.pull_until(&pulled, 3, Duration::from_secs(5)).await;
    assert_eq!(since(restarted), Duration::ZERO, "ready at the restart");
    assert_eq!(
        sorted(datas(&again)),
        vec!["leased", "nacked", "ready"],
        "leased and nacked come back at once"
    );
    let again_ids: Vec<String> = again.iter().map(message_id).collect();
    for id in &again_ids {
        assert!(ids.contains(id));
    }
    assert!(!again_ids.contains(&ids[2]), "the acked one stays acked");
    let mut stream = t
        .open_stream(stream_with_deadline(&streamed, 600))
        .await
        .unwrap();
    let restreamed = stream.collect(3, Duration::from_secs(5)).await;
    assert_eq!(
        datas(&restreamed),
        vec!["leased", "nacked", "ready"],
        "outstanding stream messages come back in order"
    );
    assert!(
        stream
            .collect(1, Duration::from_millis(300))
            .await
            .is_empty(),
        "the acked one does not"
    );
    drop(stream);
    t.shutdown().await;
}

/// The first request of a stream with a chosen ack deadline.
fn stream_with_deadline(subscription: &str, seconds: i32) -> StreamingPullRequest {
    StreamingPullRequest {
        stream_ack_deadline_seconds: seconds,
        ..stream_request(subscription)
    }
}

#[tokio::test(start_paused = true)]
async fn message_ids_keep_increasing_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let lonely = t.create_topic("lonely").await;
    let sub = t.create_subscription("worker", &topic).await;
    let mut all: Vec<u64> = Vec::new();
    let mut t = t;
    for round in 0..3 {
        let mut round_ids = Vec::new();
        round_ids.extend(t.publish(&topic, &["a", "b"]).await);
        // Published to a topic nobody subscribes to: stored nowhere, but
        // its id must not come back either.
        round_ids.extend(t.publish(&lonely, &["x", "y", "z"]).await);
        round_ids.extend(t.publish(&topic, &["c"]).await);
        let round_ids: Vec<u64> = round_ids.iter().map(|id| numeric(id)).collect();
        let floor = all.iter().max().copied().unwrap_or(0);
        for id in &round_ids {
            assert!(
                *id > floor,
                "round {round}: id {id} is not above every earlier id (max {floor}); all earlier: {all:?}"
            );
        }
        all.extend(round_ids);
        // Ack everything, so no message row is left to remember the ids.
        drain_exactly(&t, &sub, 3).await;
        t = t.restart().await;
    }
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "no id repeats: {all:?}");
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stale_ack_ids_settle_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let plain = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            ..subscription("plain", &topic)
        })
        .await
        .name;
    let exactly = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            enable_exactly_once_delivery: true,
            ..subscription("exactly", &topic)
        })
        .await
        .name;
    t.publish(&topic, &["a", "b"]).await;
    let mut stale = Vec::new();
    for sub in [&plain, &exactly] {
        // a is delivered and acked; b is delivered and left leased.
        let a = t.pull_until(sub, 1, Duration::from_secs(5)).await;
        assert_eq!(datas(&a), vec!["a"]);
        t.ack(sub, &ack_ids(&a)).await.unwrap();
        let b = t.pull_until(sub, 1, Duration::from_secs(5)).await;
        assert_eq!(datas(&b), vec!["b"]);
        stale.push((a[0].ack_id.clone(), b[0].ack_id.clone()));
    }

    let t = t.restart().await;
    t.publish(&topic, &["c"]).await;
    for (sub, (stale_a, stale_b)) in [&plain, &exactly].into_iter().zip(&stale) {
        // Deliver everything again: b and c, under new ack ids.
        let fresh = t.pull_until(sub, 2, Duration::from_secs(5)).await;
        assert_eq!(datas(&fresh), vec!["b", "c"], "{sub}");
        for id in ack_ids(&fresh) {
            assert_ne!(&id, stale_a, "{sub}: an ack id was handed out twice");
            assert_ne!(&id, stale_b, "{sub}: an ack id was handed out twice");
        }
        let old = vec![stale_a.clone(), stale_b.clone()];
        let answer = t.ack(sub, &old).await;
        if sub == &plain {
            assert!(
                answer.is_ok(),
                "{sub}: stale ack ids are ignored silently: {answer:?}"
            );
        } else {
            assert!(answer.is_err(), "{sub}: exactly-once rejects stale ack ids");
        }
        assert_eq!(t.backlog(sub), 2, "{sub}: the stale acks settled nothing");
        // The current ack ids still work.
        t.ack(sub, &ack_ids(&fresh)).await.unwrap();
        assert_eq!(t.backlog(sub), 0, "{sub}");
    }
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stale_ack_ids_of_long_subscription_names_are_ignored_after_restart() {
    // Names too long to fit an ack id use a short `@uid` owner instead;
    // uids must not make an old ack id look like another subscription's.
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let long = |first: char| format!("{first}{}", "x".repeat(200));
    // Created in the opposite order to their names.
    let zed = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            ..subscription(&long('z'), &topic)
        })
        .await
        .name;
    let abe = t
        .create_subscription_with(Subscription {
            ack_deadline_seconds: 600,
            ..subscription(&long('a'), &topic)
        })
        .await
        .name;
    t.publish(&topic, &["a"]).await;
    let zed_old = t.pull_until(&zed, 1, Duration::from_secs(5)).await;
    let abe_old = t.pull_until(&abe, 1, Duration::from_secs(5)).await;
    assert_eq!(zed_old.len(), 1);
    assert_eq!(abe_old.len(), 1);

    let t = t.restart().await;
    for (sub, old) in [(&zed, &zed_old), (&abe, &abe_old)] {
        let answer = t.ack(sub, &ack_ids(old)).await;
        assert!(
            answer.is_ok(),
            "a stale ack id of {}... is ignored silently, got {answer:?}",
            &sub[..60]
        );
        assert_eq!(t.backlog(sub), 1, "the stale ack settled nothing");
    }
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ordering_keys_keep_their_order_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            enable_message_ordering: true,
            ack_deadline_seconds: 600,
            ..subscription("ordered", &topic)
        })
        .await
        .name;
    // Interleaved keys, one request per message (a request takes one key).
    for i in 0..6 {
        for key in ["k1", "k2", "k3"] {
            t.publish_messages(&topic, vec![keyed(&format!("{key}-{i}"), key)])
                .await;
        }
    }
    // k1's head is acked, k2's head stays leased (blocking its key), k3's
    // head is nacked.
    let first = t.pull_until(&sub, 3, Duration::from_secs(5)).await;
    let heads = sorted(datas(&first));
    assert_eq!(heads, vec!["k1-0", "k2-0", "k3-0"], "one message per key");
    let k1_head: Vec<String> = first
        .iter()
        .filter(|r| data(r) == "k1-0")
        .map(|r| r.ack_id.clone())
        .collect();
    t.ack(&sub, &k1_head).await.unwrap();
    let k3_head: Vec<String> = first
        .iter()
        .filter(|r| data(r) == "k3-0")
        .map(|r| r.ack_id.clone())
        .collect();
    t.modack(&sub, &k3_head, 0).await.unwrap();

    let t = t.restart().await;
    let all = drain_exactly(&t, &sub, 17).await;
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &all {
        let m = message(r);
        per_key
            .entry(m.ordering_key.clone())
            .or_default()
            .push(data(r));
    }
    let expect = |key: &str, from: usize| -> Vec<String> {
        (from..6).map(|i| format!("{key}-{i}")).collect()
    };
    assert_eq!(per_key["k1"], expect("k1", 1));
    assert_eq!(per_key["k2"], expect("k2", 0));
    assert_eq!(per_key["k3"], expect("k3", 0));
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn topic_retention_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t
        .publisher()
        .create_topic(Topic {
            name: topic_name("retained"),
            message_retention_duration: Some(secs(3600)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let early = t.create_subscription("early", &topic).await;
    let mut ids = Vec::new();
    let first_time = timestamp(t.server().broker().clock().wall());
    for d in ["a", "b", "c"] {
        ids.extend(t.publish(&topic, &[d]).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let received = drain_exactly(&t, &early, 3).await;
    assert_eq!(datas(&received), vec!["a", "b", "c"]);
    // Published a second apart, on the virtual wall clock.
    assert_eq!(
        received.iter().map(publish_time).collect::<Vec<_>>(),
        (0..3)
            .map(|n| wkt::Timestamp {
                seconds: first_time.seconds + n,
                ..first_time
            })
            .collect::<Vec<_>>()
    );
    let b_time = publish_time(&received[1]);
    let originals = by_id(&received);

    let t = t.restart().await;
    assert_eq!(t.backlog(&early), 0, "acked before the restart");
    // A subscription created after the restart gets the retained messages.
    let late = t.create_subscription("late", &topic).await;
    let late_got = drain_exactly(&t, &late, 3).await;
    assert_eq!(datas(&late_got), vec!["a", "b", "c"]);
    assert_eq!(by_id(&late_got), originals, "same ids and publish times");
    // Seek to a time brings back what was published from then on.
    seek_to_time(&t, &early, b_time).await;
    let sought = drain_exactly(&t, &early, 2).await;
    assert_eq!(datas(&sought), vec!["b", "c"]);
    assert_eq!(
        sought.iter().map(message_id).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );

    // Still there after one more restart.
    let t = t.restart().await;
    let later = t.create_subscription("later", &topic).await;
    assert_eq!(
        datas(&drain_exactly(&t, &later, 3).await),
        vec!["a", "b", "c"]
    );
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn seek_to_a_snapshot_works_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("worker", &topic).await;
    let ids_ab = t.publish(&topic, &["a", "b"]).await;
    let snap = snapshot_name("before-processing");
    let created = t
        .subscriber()
        .create_snapshot(CreateSnapshotRequest {
            name: snap.clone(),
            subscription: sub.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    drain_exactly(&t, &sub, 2).await;
    // Published after the snapshot: the snapshot keeps it too.
    let ids_c = t.publish(&topic, &["c"]).await;
    drain_exactly(&t, &sub, 1).await;

    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 0);
    let reread = t
        .subscriber()
        .get_snapshot(GetSnapshotRequest {
            snapshot: snap.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reread, created);
    t.subscriber()
        .seek(SeekRequest {
            subscription: sub.clone(),
            target: Some(seek_request::Target::Snapshot(snap.clone())),
        })
        .await
        .unwrap();
    let replay = drain_exactly(&t, &sub, 3).await;
    assert_eq!(sorted(datas(&replay)), vec!["a", "b", "c"]);
    let mut expected_ids = ids_ab.clone();
    expected_ids.extend(ids_c);
    assert_eq!(
        sorted(replay.iter().map(message_id).collect()),
        sorted(expected_ids)
    );

    // The seek is durable as well, and the snapshot is still there.
    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 0, "the replay was acked");
    t.subscriber()
        .seek(SeekRequest {
            subscription: sub.clone(),
            target: Some(seek_request::Target::Snapshot(snap.clone())),
        })
        .await
        .unwrap();
    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 3, "a seek before the restart is durable");
    assert_eq!(
        sorted(datas(&drain_exactly(&t, &sub, 3).await)),
        vec!["a", "b", "c"]
    );
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retained_acked_messages_seek_back_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            retain_acked_messages: true,
            ..subscription("retaining", &topic)
        })
        .await
        .name;
    let plain = t.create_subscription("plain", &topic).await;
    for d in ["x", "y", "z"] {
        t.publish(&topic, &[d]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let received = drain_exactly(&t, &sub, 3).await;
    let originals = by_id(&received);
    let x_time = publish_time(&received[0]);
    let y_time = publish_time(&received[1]);
    assert_eq!(y_time.seconds, x_time.seconds + 1, "a second apart");
    drain_exactly(&t, &plain, 3).await;

    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 0);
    seek_to_time(&t, &sub, y_time).await;
    let back = drain_exactly(&t, &sub, 2).await;
    assert_eq!(datas(&back), vec!["y", "z"]);
    for r in &back {
        assert_eq!(originals[&message_id(r)], message(r));
    }
    // Everything is still retained: seeking further back brings x too.
    seek_to_time(&t, &sub, x_time).await;
    assert_eq!(
        datas(&drain_exactly(&t, &sub, 3).await),
        vec!["x", "y", "z"]
    );
    // A subscription without retain_acked_messages gets nothing back.
    seek_to_time(&t, &plain, x_time).await;
    assert!(t.pull_now(&plain, 10).await.is_empty());

    // Retained across a second restart (the seeks and acks rewrote them).
    let t = t.restart().await;
    seek_to_time(&t, &sub, x_time).await;
    assert_eq!(
        datas(&drain_exactly(&t, &sub, 3).await),
        vec!["x", "y", "z"]
    );
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn filter_still_applies_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t
        .create_subscription_with(Subscription {
            filter: "attributes.kind = \"keep\"".to_string(),
            ..subscription("filtered", &topic)
        })
        .await
        .name;
    t.publish_messages(
        &topic,
        vec![
            with_attributes("keep-1", &[("kind", "keep")]),
            with_attributes("drop-1", &[("kind", "drop")]),
            msg("drop-2"),
        ],
    )
    .await;
    assert_eq!(t.backlog(&sub), 1);

    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 1, "filtered-out messages stay settled");
    t.publish_messages(
        &topic,
        vec![
            with_attributes("drop-3", &[("kind", "other")]),
            with_attributes("keep-2", &[("kind", "keep")]),
            msg("drop-4"),
        ],
    )
    .await;
    let got = drain_exactly(&t, &sub, 2).await;
    assert_eq!(datas(&got), vec!["keep-1", "keep-2"]);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dead_letter_policy_applies_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("dead-letters").await;
    let dead_sub = t.create_subscription("dlq-sub", &dead).await;
    let sub = t
        .create_subscription_with(Subscription {
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead.clone(),
                max_delivery_attempts: 5,
            }),
            ..subscription("guarded", &topic)
        })
        .await
        .name;
    let ids = t.publish(&topic, &["poison"]).await;

    let t = t.restart().await;
    // Five deliveries, each nacked: the fifth nack dead-letters it.
    for attempt in 1..=5 {
        let got = t.pull_until(&sub, 1, Duration::from_secs(5)).await;
        assert_eq!(datas(&got), vec!["poison"], "attempt {attempt}");
        assert_eq!(message_id(&got[0]), ids[0]);
        assert_eq!(got[0].delivery_attempt, attempt, "attempt counter");
        t.modack(&sub, &ack_ids(&got), 0).await.unwrap();
    }
    wait_backlog(&t, &sub, 0).await;
    let letters = t.pull_until(&dead_sub, 1, Duration::from_secs(5)).await;
    assert_eq!(datas(&letters), vec!["poison"]);
    let letter_id = message_id(&letters[0]);

    // The dead-lettering itself is durable: gone from the source, kept
    // (unacked) on the dead-letter topic's subscription.
    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 0);
    assert_eq!(t.backlog(&dead_sub), 1);
    let letters = drain_exactly(&t, &dead_sub, 1).await;
    assert_eq!(message_id(&letters[0]), letter_id);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failed_delivery_attempts_still_count_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let dead = t.create_topic("dead-letters").await;
    let dead_sub = t.create_subscription("dlq-sub", &dead).await;
    let sub = t
        .create_subscription_with(Subscription {
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead.clone(),
                max_delivery_attempts: 5,
            }),
            ..subscription("guarded", &topic)
        })
        .await
        .name;
    t.publish(&topic, &["poison"]).await;
    // Three deliveries nacked before the restart...
    for attempt in 1..=3 {
        let got = t.pull_until(&sub, 1, Duration::from_secs(5)).await;
        assert_eq!(got[0].delivery_attempt, attempt);
        t.modack(&sub, &ack_ids(&got), 0).await.unwrap();
    }
    let t = t.restart().await;
    // ...so the next is the fourth, and the fifth nack dead-letters it.
    for attempt in 4..=5 {
        let got = t.pull_until(&sub, 1, Duration::from_secs(5)).await;
        assert_eq!(datas(&got), vec!["poison"]);
        assert_eq!(got[0].delivery_attempt, attempt, "attempts survive");
        t.modack(&sub, &ack_ids(&got), 0).await.unwrap();
    }
    wait_backlog(&t, &sub, 0).await;
    let letters = t.pull_until(&dead_sub, 1, Duration::from_secs(5)).await;
    assert_eq!(datas(&letters), vec!["poison"]);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn two_restarts_in_a_row_keep_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("worker", &topic).await;
    let ids = t.publish(&topic, &["a", "b", "c", "d"]).await;

    // Restart twice without touching anything in between.
    let t = t.restart().await;
    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 4);
    let first = t.pull_until(&sub, 1, Duration::from_secs(5)).await;
    assert_eq!(datas(&first), vec!["a"]);
    t.ack(&sub, &ack_ids(&first)).await.unwrap();
    let e = t.publish(&topic, &["e"]).await;

    let t = t.restart().await;
    let t = t.restart().await;
    let rest = drain_exactly(&t, &sub, 4).await;
    assert_eq!(datas(&rest), vec!["b", "c", "d", "e"]);
    let mut expected = ids[1..].to_vec();
    expected.extend(e);
    assert_eq!(rest.iter().map(message_id).collect::<Vec<_>>(), expected);
    let t = t.restart().await;
    assert_eq!(t.backlog(&sub), 0);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_publishes_and_acks_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("worker", &topic).await;
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let t = t.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..25 {
                ids.extend(t.publish(&topic, &[&format!("t{task}-{n}")]).await);
            }
            ids
        }));
    }
    let mut published = Vec::new();
    for task in tasks {
        published.extend(task.await.unwrap());
    }
    assert_eq!(published.len(), 200);
    // Ack half of them, concurrently with more pulls.
    let got = t.pull_until(&sub, 200, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 200);
    let (acked, kept): (Vec<_>, Vec<_>) = got
        .iter()
        .partition(|r| numeric(&message_id(r)).is_multiple_of(2));
    let mut acks = Vec::new();
    for chunk in acked.chunks(10) {
        let t = t.clone();
        let sub = sub.clone();
        let ids: Vec<String> = chunk.iter().map(|r| r.ack_id.clone()).collect();
        acks.push(tokio::spawn(async move { t.ack(&sub, &ids).await }));
    }
    for ack in acks {
        ack.await.unwrap().unwrap();
    }
    let kept_ids = sorted(kept.iter().map(|r| message_id(r)).collect());
    let t = Arc::into_inner(t).expect("no other handle left");

    let t = t.restart().await;
    let again = drain_exactly(&t, &sub, kept_ids.len()).await;
    assert_eq!(sorted(again.iter().map(message_id).collect()), kept_ids);
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rest_changes_are_durable() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_durable_virtual(dir.path()).await;
    let topic_path = format!("/v1/projects/{PROJECT}/topics/rest-topic");
    let sub_path = format!("/v1/projects/{PROJECT}/subscriptions/rest-sub");
    let (status, _) = t
        .rest(
            reqwest::Method::PUT,
            &topic_path,
            Some(serde_json::json!({"labels": {"via": "rest"}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = t
        .rest(
            reqwest::Method::PUT,
            &sub_path,
            Some(serde_json::json!({"topic": topic_name("rest-topic"), "ackDeadlineSeconds": 600})),
        )
        .await;
    assert_eq!(status, 200);
    let encoded = base64::engine::general_purpose::STANDARD.encode("over-rest");
    let (status, body) = t
        .rest(
            reqwest::Method::POST,
            &format!("{topic_path}:publish"),
            Some(serde_json::json!({"messages": [{"data": encoded, "attributes": {"a": "1"}}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["messageIds"][0].as_str().unwrap().to_string();

    let t = t.restart().await;
    let (status, topic) = t.rest(reqwest::Method::GET, &topic_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(topic["labels"]["via"], "rest");
    let got = t
        .pull_until(&subscription_name("rest-sub"), 1, Duration::from_secs(5))
        .await;
    assert_eq!(datas(&got), vec!["over-rest"]);
    assert_eq!(message_id(&got[0]), id);
    assert_eq!(message(&got[0]).attributes["a"], "1");
    let (status, _) = t
        .rest(
            reqwest::Method::POST,
            &format!("{sub_path}:acknowledge"),
            Some(serde_json::json!({"ackIds": [got[0].ack_id.clone()]})),
        )
        .await;
    assert_eq!(status, 200);

    let t = t.restart().await;
    assert_eq!(
        t.backlog(&subscription_name("rest-sub")),
        0,
        "the REST ack is durable"
    );
    t.shutdown().await;
}
