//! The disk store against its model, the in-memory broker: after any
//! sequence of operations, a broker reopened on the store holds the same
//! durable state as the one that wrote it.

use std::collections::HashMap;
use std::sync::Arc;

use baton_proto::iam::{Binding, Policy};
use baton_proto::pubsub::{
    PubsubMessage, PushConfig, Schema, Subscription, Topic, schema, seek_request,
};
use baton_proto::wkt;
use proptest::prelude::*;

use crate::{Broker, PullWait};

const PROJECT: &str = "projects/store-test";

fn topic(n: usize) -> String {
    format!("{PROJECT}/topics/topic-{n}")
}

fn sub(n: usize) -> String {
    format!("{PROJECT}/subscriptions/sub-{n}")
}

fn snapshot(n: usize) -> String {
    format!("{PROJECT}/snapshots/snap-{n}")
}

/// Topic 0 keeps nothing; topic 1 retains messages for an hour.
/// Subscriptions 0 and 1 read topic 0 (1 retains acked messages, and is
/// ordered), 2 and 3 read topic 1 (3 filters on an attribute).
fn subscription_config(n: usize) -> Subscription {
    Subscription {
        name: sub(n),
        topic: topic(if n < 2 { 0 } else { 1 }),
        retain_acked_messages: n == 1,
        enable_message_ordering: n == 1,
        filter: if n == 3 {
            "attributes.kind = \"a\"".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        topic: usize,
        kinds: Vec<bool>,
        key: bool,
    },
    Pull {
        sub: usize,
        max: i32,
        ack: Vec<bool>,
    },
    Snapshot {
        sub: usize,
        name: usize,
    },
    DeleteSnapshot {
        name: usize,
    },
    SeekSnapshot {
        sub: usize,
        name: usize,
    },
    SeekBack {
        sub: usize,
        seconds: i64,
    },
    DeleteSubscription {
        sub: usize,
    },
    CreateSubscription {
        sub: usize,
    },
    /// A catalog change other than creating or deleting a subscription or
    /// snapshot: each writes only the entries it touched.
    Catalog(CatalogChange),
    Reopen,
}

#[derive(Debug, Clone)]
enum CatalogChange {
    SubscriptionLabels {
        sub: usize,
        value: u8,
    },
    PushEndpoint {
        sub: usize,
        on: bool,
    },
    Detach {
        sub: usize,
    },
    TopicLabels {
        topic: usize,
        value: u8,
    },
    DeleteTopic {
        topic: usize,
    },
    CreateTopic {
        topic: usize,
    },
    /// On the project, a topic, a subscription or a snapshot.
    Policy {
        resource: usize,
        role: u8,
    },
    CreateSchema,
    CommitSchema {
        field: u8,
    },
    DeleteSchemaRevision,
    DeleteSchema,
}

fn catalog_change() -> impl Strategy<Value = CatalogChange> {
    prop_oneof![
        (0..4usize, any::<u8>())
            .prop_map(|(sub, value)| CatalogChange::SubscriptionLabels { sub, value }),
        (0..4usize, any::<bool>()).prop_map(|(sub, on)| CatalogChange::PushEndpoint { sub, on }),
        (0..4usize).prop_map(|sub| CatalogChange::Detach { sub }),
        (0..2usize, any::<u8>())
            .prop_map(|(topic, value)| CatalogChange::TopicLabels { topic, value }),
        (0..2usize).prop_map(|topic| CatalogChange::DeleteTopic { topic }),
        (0..2usize).prop_map(|topic| CatalogChange::CreateTopic { topic }),
        (0..4usize, 0..3u8).prop_map(|(resource, role)| CatalogChange::Policy { resource, role }),
        Just(CatalogChange::CreateSchema),
        (0..3u8).prop_map(|field| CatalogChange::CommitSchema { field }),
        Just(CatalogChange::DeleteSchemaRevision),
        Just(CatalogChange::DeleteSchema),
    ]
}

fn topic_config(n: usize) -> Topic {
    Topic {
        name: topic(n),
        message_retention_duration: (n == 1).then_some(wkt::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    }
}

const SCHEMA: &str = "projects/store-test/schemas/schema-0";

fn schema_definition(field: u8) -> Schema {
    Schema {
        r#type: schema::Type::Avro as i32,
        definition: format!(
            r#"{{"type":"record","name":"R","fields":[{{"name":"f{field}","type":"string"}}]}}"#
        ),
        ..Default::default()
    }
}

fn change_catalog(broker: &Broker, change: &CatalogChange) {
    match change {
        CatalogChange::SubscriptionLabels { sub: s, value } => {
            let update = Subscription {
                name: sub(*s),
                labels: HashMap::from([("v".to_string(), value.to_string())]),
                ..Default::default()
            };
            let _ = broker.update_subscription(update, &["labels".to_string()]);
        }
        CatalogChange::PushEndpoint { sub: s, on } => {
            let push = on.then(|| PushConfig {
                push_endpoint: "https://example.com/push".into(),
                ..Default::default()
            });
            let _ = broker.modify_push_config(&sub(*s), push);
        }
        CatalogChange::Detach { sub: s } => {
            let _ = broker.detach_subscription(&sub(*s));
        }
        CatalogChange::TopicLabels { topic: t, value } => {
            let update = Topic {
                name: topic(*t),
                labels: HashMap::from([("v".to_string(), value.to_string())]),
                ..Default::default()
            };
            let _ = broker.update_topic(update, &["labels".to_string()]);
        }
        CatalogChange::DeleteTopic { topic: t } => {
            let _ = broker.delete_topic(&topic(*t));
        }
        CatalogChange::CreateTopic { topic: t } => {
            let _ = broker.create_topic(topic_config(*t));
        }
        CatalogChange::Policy { resource, role } => {
            let resource = match resource {
                0 => PROJECT.to_string(),
                1 => topic(0),
                2 => sub(0),
                _ => snapshot(0),
            };
            let policy = Policy {
                bindings: vec![Binding {
                    role: format!("roles/pubsub.role{role}"),
                    members: vec!["user:someone@example.com".into()],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let _ = broker.set_iam_policy(&resource, policy, &[]);
        }
        CatalogChange::CreateSchema => {
            let _ = broker.create_schema(PROJECT, "schema-0", Some(&schema_definition(0)));
        }
        CatalogChange::CommitSchema { field } => {
            let _ = broker.commit_schema(SCHEMA, Some(&schema_definition(*field)));
        }
        CatalogChange::DeleteSchemaRevision => {
            let first = broker
                .list_schema_revisions(SCHEMA, baton_proto::pubsub::SchemaView::Basic as i32, 1, "")
                .ok()
                .and_then(|page| page.items.into_iter().next());
            if let Some(first) = first {
                let _ = broker.delete_schema_revision(&format!("{SCHEMA}@{}", first.revision_id));
            }
        }
        CatalogChange::DeleteSchema => {
            let _ = broker.delete_schema(SCHEMA);
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, prop::collection::vec(any::<bool>(), 1..5), any::<bool>())
            .prop_map(|(topic, kinds, key)| Op::Publish { topic, kinds, key }),
        4 => (0..4usize, 1..6i32, prop::collection::vec(any::<bool>(), 6))
            .prop_map(|(sub, max, ack)| Op::Pull { sub, max, ack }),
        1 => (0..4usize, 0..2usize).prop_map(|(sub, name)| Op::Snapshot { sub, name }),
        1 => (0..2usize).prop_map(|name| Op::DeleteSnapshot { name }),
        1 => (0..4usize, 0..2usize).prop_map(|(sub, name)| Op::SeekSnapshot { sub, name }),
        1 => (0..4usize, 0..3i64).prop_map(|(sub, seconds)| Op::SeekBack { sub, seconds }),
        1 => (0..4usize).prop_map(|sub| Op::DeleteSubscription { sub }),
        1 => (0..4usize).prop_map(|sub| Op::CreateSubscription { sub }),
        2 => catalog_change().prop_map(Op::Catalog),
        1 => Just(Op::Reopen),
    ]
}

fn setup(broker: &Broker) {
    for n in 0..2 {
        broker.create_topic(topic_config(n)).expect("topic");
    }
    for n in 0..4 {
        broker
            .create_subscription(subscription_config(n))
            .expect("subscription");
    }
}

async fn apply(broker: &Arc<Broker>, op: &Op, published: &mut u64) {
    match op {
        Op::Publish {
            topic: t,
            kinds,
            key,
        } => {
            let messages = kinds
                .iter()
                .map(|a| {
                    *published += 1;
                    PubsubMessage {
                        data: format!("m{published}").into_bytes(),
                        attributes: HashMap::from([(
                            "kind".to_string(),
                            if *a { "a" } else { "b" }.to_string(),
                        )]),
                        ordering_key: if *key { "k".into() } else { String::new() },
                        ..Default::default()
                    }
                })
                .collect();
            // The topic may have been deleted (and not created again).
            let _ = broker.publish(&topic(*t), messages);
        }
        Op::Pull { sub: s, max, ack } => {
            if let Ok(got) = broker.pull(&sub(*s), *max, PullWait::Immediate).await {
                let ids: Vec<String> = got
                    .iter()
                    .zip(ack)
                    .filter(|(_, ack)| **ack)
                    .map(|(m, _)| m.ack_id.clone())
                    .collect();
                let nacks: Vec<String> = got
                    .iter()
                    .zip(ack)
                    .filter(|(_, ack)| !**ack)
                    .map(|(m, _)| m.ack_id.clone())
                    .collect();
                if !ids.is_empty() {
                    broker.acknowledge(&sub(*s), &ids).expect("ack");
                }
                if !nacks.is_empty() {
                    broker
                        .modify_ack_deadline(&sub(*s), &nacks, 0)
                        .expect("nack");
                }
            }
        }
        Op::Snapshot { sub: s, name } => {
            let _ = broker.create_snapshot(&snapshot(*name), &sub(*s), HashMap::new());
        }
        Op::DeleteSnapshot { name } => {
            let _ = broker.delete_snapshot(&snapshot(*name));
        }
        Op::SeekSnapshot { sub: s, name } => {
            let _ = broker.seek(
                &sub(*s),
                Some(seek_request::Target::Snapshot(snapshot(*name))),
            );
        }
        Op::SeekBack { sub: s, seconds } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let time = wkt::Timestamp {
                seconds: i64::try_from(now.as_secs()).unwrap_or(0) - seconds,
                nanos: 0,
            };
            let _ = broker.seek(&sub(*s), Some(seek_request::Target::Time(time)));
        }
        Op::DeleteSubscription { sub: s } => {
            let _ = broker.delete_subscription(&sub(*s));
        }
        Op::CreateSubscription { sub: s } => {
            let _ = broker.create_subscription(subscription_config(*s));
        }
        Op::Catalog(change) => change_catalog(broker, change),
        Op::Reopen => {}
    }
}

/// Closes the broker's store and opens a new broker on it.
async fn reopen(broker: Arc<Broker>, dir: &std::path::Path) -> Arc<Broker> {
    close(broker).await;
    Broker::open(dir).expect("reopen")
}

/// Writes what the broker's store has queued and closes it, so the store
/// can be opened again.
async fn close(broker: Arc<Broker>) {
    broker.durable().await.expect("durable");
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close_storage())
        .await
        .expect("close");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_reopened_store_holds_what_the_broker_held(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut broker = open_set_up(dir.path());
            let mut published = 0;
            for op in &ops {
                if matches!(op, Op::Reopen) {
                    let (before, next) = (broker.durable_view(), broker.next_seq());
                    broker = reopen(broker, dir.path()).await;
                    prop_assert_eq!(before, broker.durable_view());
                    prop_assert!(broker.next_seq() >= next, "message ids never repeat");
                } else {
                    apply(&broker, op, &mut published).await;
                }
            }
            let (before, next) = (broker.durable_view(), broker.next_seq());
            let broker = reopen(broker, dir.path()).await;
            prop_assert_eq!(before, broker.durable_view());
            prop_assert!(broker.next_seq() >= next, "message ids never repeat");
            // Once the background count is in, the store holds exactly the
            // messages something refers to: none leaked, none lost.
            broker.backlog_counted().await;
            broker.durable().await.expect("durable");
            let rows = broker.storage().expect("durable").message_rows().expect("rows");
            prop_assert_eq!(rows, referenced_messages(&broker));
            Ok(())
        })?;
    }
}

/// How many messages something refers to: a backlog, a retained set, a
/// topic log or a snapshot.
fn referenced_messages(broker: &Broker) -> u64 {
    let state = broker.lock();
    let mut seqs = std::collections::BTreeSet::new();
    for sub in state.subscriptions.values() {
        seqs.extend(
            sub.unacked()
                .expect("backlog")
                .into_iter()
                .map(|(seq, _)| seq),
        );
    }
    for retained in state.retained.values() {
        seqs.extend(retained.keys().copied());
    }
    for topic in state.topics.values() {
        seqs.extend(topic.log.iter().map(|m| m.seq));
    }
    for snapshot in state.snapshots.values() {
        seqs.extend(snapshot.messages.keys().copied());
    }
    seqs.len() as u64
}

#[tokio::test]
async fn message_rows_go_once_nothing_refers_to_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    let messages = (0..50)
        .map(|n| PubsubMessage {
            data: vec![b'x'; 1000 + n],
            ..Default::default()
        })
        .collect::<Vec<_>>();
    broker.publish(&topic(0), messages).expect("publish");
    for s in [0, 1] {
        loop {
            let got = broker
                .pull(&sub(s), 100, PullWait::Immediate)
                .await
                .expect("pull");
            if got.is_empty() {
                break;
            }
            let ids: Vec<String> = got.into_iter().map(|m| m.ack_id).collect();
            broker.acknowledge(&sub(s), &ids).expect("ack");
        }
    }
    // Subscription 1 retains acked messages; once it is gone nothing holds them.
    broker.delete_subscription(&sub(1)).expect("delete");
    broker.durable().await.expect("durable");
    let storage = broker.storage().expect("durable broker").clone();
    assert_eq!(storage.message_rows().expect("count"), 0);
    drop(storage);
    // Reopened: once the background count is done and its result is
    // written, the payload log keeps only the segment taking appends.
    let broker = reopen(broker, dir.path()).await;
    broker.backlog_counted().await;
    broker.durable().await.expect("durable");
    let segments = std::fs::read_dir(dir.path().join(crate::payload_log::PAYLOAD_DIR))
        .expect("payload log")
        .count();
    assert_eq!(segments, 1);
    drop(broker);
}

#[tokio::test]
async fn nothing_is_reported_durable_once_the_store_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    broker.durable().await.expect("durable while open");
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close_storage())
        .await
        .expect("close");
    broker
        .publish(&topic(0), vec![one_message()])
        .expect("publish");
    let error = broker.durable().await.expect_err("closed store");
    assert_eq!(error.code, crate::ErrorCode::Unavailable);
}

#[tokio::test]
async fn every_opening_takes_message_ids_from_its_own_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    let first = broker
        .publish(&topic(0), vec![one_message()])
        .expect("publish");
    assert_eq!(first, vec!["1".to_string()], "a fresh store starts at 1");
    let broker = reopen(broker, dir.path()).await;
    let second = broker
        .publish(&topic(0), vec![one_message()])
        .expect("publish");
    // Ids the first run may have handed out without storing them (a crash
    // between delivery and fsync) can never come back.
    assert_eq!(second, vec![((1u64 << 40) | 1).to_string()]);
}

fn one_message() -> PubsubMessage {
    PubsubMessage {
        data: b"x".to_vec(),
        ..Default::default()
    }
}

/// A delivery observer that panics on every delivery.
#[derive(Debug)]
struct PanickingObserver;

impl crate::DeliveryObserver for PanickingObserver {
    fn delivered(&self, _: crate::Delivery<'_>) {
        panic!("an observer that fails");
    }
}

#[tokio::test]
async fn a_panicking_observer_does_not_keep_changes_from_the_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = open_set_up(dir.path());
    broker.set_observer(Arc::new(PanickingObserver));
    broker
        .publish(&topic(0), vec![one_message()])
        .expect("publish");
    // The observer panics while the pull's effects are carried out.
    let leased = broker
        .pull(&sub(0), 10, PullWait::Immediate)
        .await
        .expect("pull");
    assert_eq!(leased.len(), 1);
    broker
        .acknowledge(&sub(0), &[leased[0].ack_id.clone()])
        .expect("ack");
    let reopened = reopen(broker, dir.path()).await;
    assert_eq!(
        reopened.backlog_len(&sub(0)).expect("sub 0"),
        0,
        "the ack is stored"
    );
    assert_eq!(
        reopened.backlog_len(&sub(1)).expect("sub 1"),
        1,
        "so is the publish"
    );
}

#[test]
fn a_write_whose_runtime_is_gone_is_still_written() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (storage, _, _) = first
        .block_on(async { crate::store::Storage::open(dir.path()) })
        .expect("open");
    // Its blocking pool takes no more work: the writer task it is handed is
    // dropped without running, and writes where it is dropped.
    first.shutdown_background();
    storage.record(vec![
        crate::store::StoreOp::Message {
            seq: 7,
            published: std::time::SystemTime::now(),
            data: Arc::new(one_message().data),
            held: Arc::new(crate::HeldMessage::split(one_message()).0),
        },
        crate::store::StoreOp::Owe {
            subscription: 1,
            seq: 7,
        },
    ]);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    second
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), storage.durable()).await
        })
        .expect("written, not left waiting")
        .expect("durable");
    assert_eq!(storage.message_rows().expect("rows"), 1);
}

#[tokio::test]
async fn every_kind_of_catalog_change_comes_back_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = open_set_up(dir.path());
    let changes = [
        CatalogChange::SubscriptionLabels { sub: 2, value: 7 },
        CatalogChange::PushEndpoint { sub: 0, on: true },
        CatalogChange::Detach { sub: 3 },
        CatalogChange::TopicLabels { topic: 1, value: 9 },
        CatalogChange::Policy {
            resource: 0,
            role: 1,
        },
        CatalogChange::Policy {
            resource: 2,
            role: 2,
        },
        CatalogChange::CreateSchema,
        CatalogChange::CommitSchema { field: 1 },
        CatalogChange::CommitSchema { field: 2 },
        CatalogChange::DeleteSchemaRevision,
    ];
    for change in &changes {
        change_catalog(&broker, change);
    }
    let before = broker.durable_view();
    for expected in [
        "roles/pubsub.role1",
        "roles/pubsub.role2",
        "\"v\": \"7\"",
        "\"v\": \"9\"",
        "https://example.com/push",
        "detached: true",
        // The field's name as quoted in the definition: a bare `f2` could
        // be part of a random revision id.
        r#"\"f2\""#,
    ] {
        assert!(
            before.contains(expected),
            "{expected} missing from {before}"
        );
    }
    assert!(
        !before.contains(r#"\"f0\""#),
        "the deleted revision is gone"
    );
    broker = reopen(broker, dir.path()).await;
    assert_eq!(before, broker.durable_view());
    assert_eq!(broker.push_subscriptions().len(), 1, "push index rebuilt");

    // Deleting the topic rewrites its subscriptions (they report the
    // deleted topic) and drops the policy of a deleted subscription.
    change_catalog(&broker, &CatalogChange::DeleteTopic { topic: 0 });
    broker.delete_subscription(&sub(0)).expect("delete");
    change_catalog(&broker, &CatalogChange::DeleteSchema);
    let before = broker.durable_view();
    assert!(before.contains("_deleted-topic_"));
    assert!(!before.contains("roles/pubsub.role2"));
    broker = reopen(broker, dir.path()).await;
    assert_eq!(before, broker.durable_view());
    assert!(broker.push_subscriptions().is_empty());
}

/// Payloads of the messages `pull` hands out, by message id.
async fn pull_payloads(broker: &Broker, s: usize) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut payloads = std::collections::BTreeMap::new();
    loop {
        let got = broker
            .pull(&sub(s), 1000, PullWait::Immediate)
            .await
            .expect("pull");
        if got.is_empty() {
            return payloads;
        }
        let ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
        for received in got {
            let message = received.message.expect("message");
            payloads.insert(message.message_id, message.data);
        }
        broker.acknowledge(&sub(s), &ids).expect("ack");
    }
}

#[tokio::test]
async fn payloads_come_back_from_the_cache_and_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = open_set_up(dir.path());
    // 48 MB: more than the cache of recent payloads keeps, so the oldest
    // are read back from the file even without a restart.
    let payload = |n: usize| vec![u8::try_from(n % 251).unwrap_or(0); 1 << 20];
    let mut published = std::collections::BTreeMap::new();
    for n in 0..48 {
        let ids = broker
            .publish(
                &topic(0),
                vec![PubsubMessage {
                    data: payload(n),
                    ..Default::default()
                }],
            )
            .expect("publish");
        published.insert(ids[0].clone(), payload(n));
    }
    // Attributes only: nothing to read back.
    let bare = broker
        .publish(
            &topic(0),
            vec![PubsubMessage {
                attributes: HashMap::from([("k".to_string(), "v".to_string())]),
                ..Default::default()
            }],
        )
        .expect("publish");
    published.insert(bare[0].clone(), Vec::new());
    broker.durable().await.expect("durable");

    let peeked = broker.peek(&sub(0), 3).expect("peek");
    assert_eq!(peeked.len(), 3);
    for p in &peeked {
        assert_eq!(p.message.data, published[&p.message.message_id]);
    }
    assert_eq!(pull_payloads(&broker, 0).await, published);

    // After a restart every payload comes from the file.
    broker = reopen(broker, dir.path()).await;
    assert_eq!(pull_payloads(&broker, 1).await, published);
}

#[tokio::test]
async fn a_dead_lettered_message_keeps_its_payload_on_the_dead_letter_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = open_set_up(dir.path());
    let dlq = format!("{PROJECT}/topics/dead-letters");
    broker
        .create_topic(Topic {
            name: dlq.clone(),
            ..Default::default()
        })
        .expect("topic");
    broker
        .create_subscription(Subscription {
            name: format!("{PROJECT}/subscriptions/dead-letters"),
            topic: dlq.clone(),
            ..Default::default()
        })
        .expect("subscription");
    let source = format!("{PROJECT}/subscriptions/failing");
    broker
        .create_subscription(Subscription {
            name: source.clone(),
            topic: topic(0),
            dead_letter_policy: Some(baton_proto::pubsub::DeadLetterPolicy {
                dead_letter_topic: dlq,
                max_delivery_attempts: 5,
            }),
            ..Default::default()
        })
        .expect("subscription");
    broker
        .publish(
            &topic(0),
            vec![PubsubMessage {
                data: b"poison".to_vec(),
                ..Default::default()
            }],
        )
        .expect("publish");
    broker.durable().await.expect("durable");
    // A restart first, so the payload is only in the file.
    broker = reopen(broker, dir.path()).await;
    for _ in 0..5 {
        let got = broker
            .pull(&source, 10, PullWait::Immediate)
            .await
            .expect("pull");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message.as_ref().expect("message").data, b"poison");
        let ids = vec![got[0].ack_id.clone()];
        broker.modify_ack_deadline(&source, &ids, 0).expect("nack");
    }
    let copies = broker
        .pull(
            &format!("{PROJECT}/subscriptions/dead-letters"),
            10,
            PullWait::Immediate,
        )
        .await
        .expect("pull");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].message.as_ref().expect("message").data, b"poison");
    let letters = broker.recent_dead_letters(&source).expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message.data(), b"poison");
}

#[tokio::test]
async fn a_store_of_the_first_layout_opens_with_its_payloads() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const WHOLE: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("messages");
    const META: TableDefinition<u64, crate::store::MessageRow> =
        TableDefinition::new("message_meta");
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    let data: Vec<Vec<u8>> = (0..3u8).map(|n| vec![n; 2000]).collect();
    let messages = data
        .iter()
        .map(|d| PubsubMessage {
            data: d.clone(),
            ..Default::default()
        })
        .collect();
    broker.publish(&topic(0), messages).expect("publish");
    let broker = reopen(broker, dir.path()).await;
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close_storage())
        .await
        .expect("close");
    drop(broker);
    // Rewrite the messages as the first layout stored them: whole.
    {
        let db = redb::Database::create(dir.path().join(crate::STORE_FILE)).expect("db");
        let log_dir = dir.path().join(crate::payload_log::PAYLOAD_DIR);
        let reader = crate::payload_log::PayloadReader::new(&log_dir);
        let whole: Vec<(u64, u64, Vec<u8>)> = {
            let txn = db.begin_read().expect("read");
            let meta = txn.open_table(META).expect("meta");
            meta.iter()
                .expect("iter")
                .map(|row| {
                    let (seq, value) = row.expect("row");
                    let (published, _, segment, offset, len, bytes) = value.value();
                    let mut message =
                        <PubsubMessage as prost::Message>::decode(bytes).expect("decode");
                    message.data = reader
                        .read(crate::payload_log::Location {
                            segment,
                            offset,
                            len,
                        })
                        .expect("read")
                        .expect("payload");
                    (
                        seq.value(),
                        published,
                        prost::Message::encode_to_vec(&message),
                    )
                })
                .collect()
        };
        std::fs::remove_dir_all(&log_dir).expect("no log in the first layout");
        assert_eq!(whole.len(), 3);
        let txn = db.begin_write().expect("write");
        txn.delete_table(META).expect("drop meta");
        {
            let mut table = txn.open_table(WHOLE).expect("whole");
            for (seq, published, bytes) in &whole {
                table
                    .insert(*seq, (*published, bytes.as_slice()))
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let broker = Broker::open(dir.path()).expect("open the first layout");
    let got = pull_payloads(&broker, 0).await;
    assert_eq!(got.into_values().collect::<Vec<_>>(), data);
    let storage = broker.storage().expect("durable").clone();
    broker.durable().await.expect("durable");
    // Subscription 1 still owes all three.
    assert_eq!(storage.message_rows().expect("rows"), 3);
}

/// Pulls `sub(s)` until it is empty, a few at a time, nacking every
/// third delivery once if `nack`; the message ids in the order they were
/// acked.
async fn drain_in_order(broker: &Broker, s: usize, nack: bool) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut nacked = std::collections::HashSet::new();
    loop {
        let got = broker
            .pull(&sub(s), 3, PullWait::Immediate)
            .await
            .expect("pull");
        if got.is_empty() {
            return acked;
        }
        for received in got {
            let id: u64 = received
                .message
                .as_ref()
                .and_then(|m| m.message_id.parse().ok())
                .expect("id");
            if nack && id.is_multiple_of(3) && nacked.insert(id) {
                broker
                    .modify_ack_deadline(&sub(s), std::slice::from_ref(&received.ack_id), 0)
                    .expect("nack");
            } else {
                broker
                    .acknowledge(&sub(s), std::slice::from_ref(&received.ack_id))
                    .expect("ack");
                acked.push(id);
            }
        }
    }
}

#[tokio::test]
async fn a_deep_backlog_waits_on_disk_and_comes_back_once_in_order() {
    use crate::store::MAX_READY_WINDOW as READY_WINDOW;
    const COUNT: usize = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = open_set_up(dir.path());
    let messages: Vec<PubsubMessage> = (0..COUNT)
        .map(|n| PubsubMessage {
            data: vec![b'x'; 10 + n],
            ordering_key: "k".into(),
            ..Default::default()
        })
        .collect();
    let bytes: u64 = messages.iter().map(|m| m.payload_size() as u64).sum();
    let ids = broker.publish(&topic(0), messages).expect("publish");
    let ids: Vec<u64> = ids.iter().map(|id| id.parse().expect("id")).collect();
    let held = |broker: &Broker, s: usize| {
        let state = broker.lock();
        let sub = &state.subscriptions[&sub(s)];
        (sub.messages.len(), sub.spilled.len())
    };
    // Only the window is in memory; the rest waits on disk, and the stats
    // still count all of it.
    assert_eq!(held(&broker, 0), (READY_WINDOW, COUNT - READY_WINDOW));
    let stats = broker.subscription_stats(&sub(0)).expect("stats");
    assert_eq!(stats.backlog_messages, COUNT as u64);
    assert_eq!(stats.backlog_bytes, bytes);

    // Sub 0 drains in publish order, across refills of its window, each
    // message acked once (nacked ones come back first).
    let first = drain_in_order(&broker, 0, true).await;
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ids);
    let stats = broker.subscription_stats(&sub(0)).expect("stats");
    assert_eq!((stats.backlog_messages, stats.backlog_bytes), (0, 0));

    // Sub 1 (ordered on one key) half drained, then the server restarts:
    // the rest comes back exactly once, in order, from a window again.
    let mut acked = Vec::new();
    while acked.len() < COUNT / 2 {
        let got = broker
            .pull(&sub(1), 4, PullWait::Immediate)
            .await
            .expect("pull");
        let ack_ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
        acked.extend(got.iter().map(|m| {
            m.message
                .as_ref()
                .and_then(|m| m.message_id.parse::<u64>().ok())
                .expect("id")
        }));
        broker.acknowledge(&sub(1), &ack_ids).expect("ack");
    }
    broker = reopen(broker, dir.path()).await;
    let left = COUNT - acked.len();
    // Only the window was read; the rest stays on disk, counted for the
    // stats in the background.
    assert_eq!(held(&broker, 1), (READY_WINDOW, 0));
    assert!(broker.lock().subscriptions[&sub(1)].disk_tail.is_some());
    broker.backlog_counted().await;
    let stats = broker.subscription_stats(&sub(1)).expect("stats");
    assert_eq!(stats.backlog_messages, left as u64);
    let rest = drain_in_order(&broker, 1, false).await;
    acked.extend(rest);
    // One ordering key: strictly in publish order.
    assert_eq!(acked, ids);
    assert_eq!(broker.backlog_len(&sub(1)).expect("backlog"), 0);
}

#[tokio::test]
async fn snapshots_seeks_and_retention_see_the_backlog_on_disk() {
    use crate::store::MAX_READY_WINDOW as READY_WINDOW;
    const COUNT: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    let messages = numbered_messages(COUNT, |n| format!("m{n}").into_bytes());
    broker.publish(&topic(0), messages).expect("publish");
    // A snapshot captures the messages on disk too.
    broker
        .create_snapshot(&snapshot(0), &sub(0), HashMap::new())
        .expect("snapshot");
    let first = drain_in_order(&broker, 0, true).await;
    assert_eq!(first.len(), COUNT);
    broker
        .seek(&sub(0), Some(seek_request::Target::Snapshot(snapshot(0))))
        .expect("seek");
    assert_eq!(broker.backlog_len(&sub(0)).expect("backlog"), COUNT);
    {
        let state = broker.lock();
        assert_eq!(
            state.subscriptions[&sub(0)].spilled.len(),
            COUNT - READY_WINDOW
        );
    }
    // Seeking to a time after every publish acks them all, on disk or not.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let later = later
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let time = wkt::Timestamp {
        seconds: i64::try_from(later.as_secs()).unwrap_or(0),
        nanos: 0,
    };
    broker
        .seek(&sub(0), Some(seek_request::Target::Time(time)))
        .expect("seek");
    assert_eq!(broker.backlog_len(&sub(0)).expect("backlog"), 0);
    // Retention runs out for the whole backlog of sub 1, window and disk.
    assert_eq!(broker.backlog_len(&sub(1)).expect("backlog"), COUNT);
    let dropped = {
        let mut txn = broker.lock();
        let state = &mut *txn;
        let wall = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 86_400);
        let sub = state.subscriptions.get_mut(&sub(1)).expect("sub 1");
        sub.drop_expired(wall, &mut state.fx)
    };
    assert_eq!(dropped, COUNT);
    assert_eq!(broker.backlog_len(&sub(1)).expect("backlog"), 0);
    let broker = reopen(broker, dir.path()).await;
    assert_eq!(broker.backlog_len(&sub(1)).expect("backlog"), 0);
    assert_eq!(broker.backlog_len(&sub(0)).expect("backlog"), 0);
}

#[tokio::test]
async fn subscriptions_share_one_window_budget() {
    use crate::store::{MAX_READY_WINDOW, ready_window};
    assert_eq!(ready_window(1), MAX_READY_WINDOW);
    assert!(ready_window(40) < MAX_READY_WINDOW);
    assert_eq!(ready_window(1_000_000), ready_window(usize::MAX));
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    let extra: Vec<String> = (0..36)
        .map(|n| format!("{PROJECT}/subscriptions/extra-{n}"))
        .collect();
    for name in &extra {
        broker
            .create_subscription(Subscription {
                name: name.clone(),
                topic: topic(1),
                ..Default::default()
            })
            .expect("subscription");
    }
    let small = ready_window(40);
    let messages: Vec<PubsubMessage> = (0..20)
        .map(|n| PubsubMessage {
            data: format!("m{n}").into_bytes(),
            ..Default::default()
        })
        .collect();
    broker.publish(&topic(0), messages).expect("publish");
    let in_memory = |broker: &Broker| broker.lock().subscriptions[&sub(0)].messages.len();
    assert_eq!(in_memory(&broker), small);
    // With the others gone, the window grows back as it refills.
    for name in &extra {
        broker.delete_subscription(name).expect("delete");
    }
    let got = broker
        .pull(&sub(0), 1, PullWait::Immediate)
        .await
        .expect("pull");
    assert_eq!(got.len(), 1);
    assert_eq!(in_memory(&broker), MAX_READY_WINDOW);
    let ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
    broker.acknowledge(&sub(0), &ids).expect("ack");
    assert_eq!(drain_in_order(&broker, 0, false).await.len(), 19);
}

/// What an earlier run left is settled before the background count after
/// a restart arrives: nothing is deleted until then, and everything that
/// nothing refers to any more goes (rows and payload segments) once it is
/// in, as if it had been counted at the start.
#[tokio::test]
async fn settles_before_the_background_count_take_effect_once_it_arrives() {
    use crate::store::{MAX_READY_WINDOW, Storage, StoreOp, TailCount};
    const COUNT: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_set_up(dir.path());
    let messages = numbered_messages(COUNT, |n| vec![b'x'; 100 + n]);
    let bytes: u64 = messages.iter().map(|m| m.payload_size() as u64).sum();
    broker.publish(&topic(0), messages).expect("publish");
    close(broker).await;

    // Opened by hand, to choose when the count arrives.
    let (storage, recovered, count) = Storage::open(dir.path()).expect("reopen");
    let storage = Arc::new(storage);
    let uid = |n: usize| {
        recovered
            .catalog
            .subscriptions
            .iter()
            .find(|(_, s)| s.name == sub(n))
            .map(|(uid, _)| *uid)
            .expect("uid")
    };
    let (uid0, uid1) = (uid(0), uid(1));
    // Both subscriptions owe every message; only the windows were read.
    let windows: Vec<(u64, usize, Option<u64>)> = recovered
        .windows
        .iter()
        .map(|w| (w.uid, w.rows.len(), w.more_after))
        .collect();
    assert!(
        windows
            .iter()
            .all(|(_, rows, more)| *rows == MAX_READY_WINDOW && more.is_some())
    );
    let tail = storage
        .load_owed(
            uid0,
            windows[0].2.expect("more"),
            recovered.next_seq,
            usize::MAX,
        )
        .expect("tail");
    assert_eq!(tail.len(), COUNT - MAX_READY_WINDOW);

    storage.record(vec![
        StoreOp::SettleAll { subscription: uid0 },
        StoreOp::SettleAll { subscription: uid1 },
    ]);
    storage.durable().await.expect("durable");
    assert_eq!(storage.message_rows().expect("rows"), COUNT as u64);

    let counting = storage.clone();
    let tails = tokio::task::spawn_blocking(move || counting.count_backlog(count))
        .await
        .expect("count")
        .expect("counted");
    let mut tails = tails;
    tails.sort_by_key(|t| t.uid);
    // The messages beyond each window: the data of those are their sizes.
    let expected_bytes: u64 = (MAX_READY_WINDOW..COUNT).map(|n| (100 + n) as u64).sum();
    assert!(expected_bytes < bytes);
    assert_eq!(
        tails,
        vec![
            TailCount {
                uid: uid0.min(uid1),
                messages: (COUNT - MAX_READY_WINDOW) as u64,
                bytes: expected_bytes,
            },
            TailCount {
                uid: uid0.max(uid1),
                messages: (COUNT - MAX_READY_WINDOW) as u64,
                bytes: expected_bytes,
            },
        ]
    );
    storage.durable().await.expect("durable");
    assert_eq!(storage.message_rows().expect("rows"), 0);
    let segments = std::fs::read_dir(dir.path().join(crate::payload_log::PAYLOAD_DIR))
        .expect("payload log")
        .count();
    assert_eq!(segments, 1, "only the segment taking appends is left");
}

/// `count` messages whose data message `n` is `data(n)`.
fn numbered_messages(count: usize, data: impl Fn(usize) -> Vec<u8>) -> Vec<PubsubMessage> {
    (0..count)
        .map(|n| PubsubMessage {
            data: data(n),
            ..Default::default()
        })
        .collect()
}

/// A broker on the disk store in `dir`, with the topics and subscriptions of
/// [`setup`].
fn open_set_up(dir: &std::path::Path) -> Arc<Broker> {
    let broker = Broker::open(dir).expect("open");
    setup(&broker);
    broker
}
