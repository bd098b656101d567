//! The Rust client's admin surface against Baton and the gcloud emulator at
//! once, in one test with one emulator:
//!
//! - [`admin_surface`] runs on each server on its own: snapshots, schemas
//!   and revisions, seek, modify push config and the typed topic update
//!   that pins schema revisions.
//! - [`paired`] sends every other admin call of `baton-client` to both
//!   servers at once and compares the answers (success or gRPC code, and
//!   the result's fields with generated revision ids and times set aside):
//!   get/list/update/delete of topics and subscriptions (both update forms,
//!   nested schema masks included), list/update snapshots, list, validate,
//!   roll back and delete schemas and revisions, detach, and IAM.
//!
//! Where the emulator does not serve a call (IAM, UpdateSnapshot,
//! DetachSubscription, protobuf schemas, label updates of topics and
//! subscriptions, snapshot labels, an update of a subscription's
//! expiration policy), its exact refusal (or omission) is
//! asserted, so that an emulator that starts serving it is noticed, and
//! Baton's own answer is checked on its own. Each such place says why.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use baton_client::iam::{Binding, Policy};
use baton_client::proto::{PushConfig, Schema, SchemaSettings, Snapshot, Subscription, Topic};
use baton_client::{
    AdminError, CallFamily, Client, ClientConfig, Endpoint, MessageEncoding, RetrySettings,
    SchemaDefinition, SchemaType, SchemaView, SnapshotConfig, SnapshotUpdate, SubscriptionConfig,
    SubscriptionUpdate, TopicUpdate,
};
use baton_proto::wkt;
use baton_testkit::emulator::Emulator;
use baton_testkit::interop::{InteropServer, on_both};
use baton_testkit::python::{PROJECT, unique_prefix};
use baton_testkit::server::TestServer;

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
    // The scenario above checks each server on its own; `paired` sends
    // every other admin verb to both at once and compares the answers.
    // Both use the one shared emulator.
    tokio::join!(
        on_both(TMP, "client-admin", admin_surface),
        Box::pin(paired())
    );
}

/// Which server an answer came from: index 0 is Baton, 1 the emulator.
const SIDES: [&str; 2] = ["Baton", "gcloud emulator"];
const BATON: usize = 0;
const EMULATOR: usize = 1;

/// One answer of an admin call.
type Answer<T> = Result<T, AdminError>;

/// A Baton client and an emulator client on the same resource names: each
/// step sends one call to both at once and compares the two answers.
struct Pair {
    clients: [Client; 2],
    prefix: String,
    /// Per side, generated values (revision ids) and the name a comparison
    /// shows instead, so that Baton's ids and the emulator's compare equal.
    aliases: [RefCell<Vec<(String, String)>>; 2],
    /// Every disagreement, reported together at the end.
    mismatches: RefCell<Vec<String>>,
}

impl Pair {
    fn id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Whether a full resource name is one of this run's (the emulator is
    /// shared, so its project also holds the other scenario's resources).
    fn mine(&self, name: &str) -> bool {
        name.rsplit('/')
            .next()
            .is_some_and(|id| id.starts_with(&format!("{}-", self.prefix)))
    }

    /// Sends `call` to Baton and to the emulator at once.
    async fn both<T, F, Fut>(&self, call: F) -> [Answer<T>; 2]
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        self.each(|_, client| call(client)).await
    }

    /// Sends `call(side, client)` to Baton and to the emulator at once (for
    /// requests naming a side's generated ids).
    async fn each<T, F, Fut>(&self, call: F) -> [Answer<T>; 2]
    where
        F: Fn(usize, Client) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let (ours, theirs) = tokio::join!(
            call(BATON, self.clients[BATON].clone()),
            call(EMULATOR, self.clients[EMULATOR].clone())
        );
        [ours, theirs]
    }

    /// Checks `holds` of each side's success (what agreement alone cannot
    /// show, such as both answering the same wrong thing).
    fn expect<T: Debug>(
        &self,
        step: &str,
        answers: &[Answer<T>; 2],
        what: &str,
        holds: impl Fn(&T) -> bool,
    ) {
        for side in [BATON, EMULATOR] {
            let ok = answers[side].as_ref().is_ok_and(&holds);
            self.check(step, ok, || {
                format!("{}: expected {what}, got {:?}", SIDES[side], answers[side])
            });
        }
    }

    /// From now on `generated` reads as `<stands_for>` on `side`.
    fn alias(&self, side: usize, generated: &str, stands_for: &str) {
        assert!(!generated.is_empty(), "{}: empty {stands_for}", SIDES[side]);
        self.aliases[side]
            .borrow_mut()
            .push((generated.to_owned(), format!("<{stands_for}>")));
    }

    /// An answer as compared: the projection of a success, or the gRPC
    /// code of a failure, with the side's aliases applied.
    fn describe<T, P: Debug>(
        &self,
        side: usize,
        answer: &Answer<T>,
        project: impl Fn(&T) -> P,
    ) -> String {
        let mut text = match answer {
            Ok(value) => format!("Ok({:?})", project(value)),
            Err(e) => format!("Err({})", code(e)),
        };
        for (generated, alias) in self.aliases[side].borrow().iter() {
            text = text.replace(generated.as_str(), alias);
        }
        text
    }

    /// Records a disagreement unless `ok`.
    fn check(&self, step: &str, ok: bool, detail: impl FnOnce() -> String) -> bool {
        if !ok {
            self.mismatches
                .borrow_mut()
                .push(format!("{step}: {}", detail()));
        }
        ok
    }

    /// Whether both answers agree: the same projection of a success, or
    /// the same gRPC code.
    fn compare<T, P: Debug>(
        &self,
        step: &str,
        answers: &[Answer<T>; 2],
        project: impl Fn(&T) -> P,
    ) -> bool {
        let [ours, theirs] =
            [BATON, EMULATOR].map(|side| self.describe(side, &answers[side], &project));
        eprintln!(
            "[paired] {step}\n  Baton:    {ours}{}\n  emulator: {theirs}{}",
            message(&answers[BATON]),
            message(&answers[EMULATOR])
        );
        self.check(step, ours == theirs, || {
            format!("Baton answered {ours}, the emulator {theirs}")
        })
    }

    /// [`Pair::both`] then [`Pair::compare`].
    async fn agree<T, P, F, Fut>(
        &self,
        step: &str,
        call: F,
        project: impl Fn(&T) -> P,
    ) -> [Answer<T>; 2]
    where
        P: Debug,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let answers = self.both(call).await;
        self.compare(step, &answers, project);
        answers
    }

    /// [`Pair::agree`] when no step needs the answers.
    async fn same<T, P, F, Fut>(&self, step: &str, call: F, project: impl Fn(&T) -> P)
    where
        P: Debug,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let _ = self.agree(step, call, project).await;
    }

    /// Checks that both answers are `expected` (`Ok` or a gRPC code):
    /// agreement alone would also pass two equally wrong answers.
    fn codes<T: Debug>(&self, step: &str, answers: &[Answer<T>; 2], expected: &str) {
        for side in [BATON, EMULATOR] {
            let got = code_of(&answers[side]);
            self.check(step, got == expected, || {
                format!(
                    "{}: expected {expected}, got {:?}",
                    SIDES[side], answers[side]
                )
            });
        }
    }

    /// [`Pair::agree`] on a call both must refuse with `expected`.
    async fn fail_alike<T, P, F, Fut>(
        &self,
        step: &str,
        call: F,
        project: impl Fn(&T) -> P,
        expected: &str,
    ) where
        T: Debug,
        P: Debug,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let answers = self.agree(step, call, project).await;
        self.codes(step, &answers, expected);
    }

    /// The emulator's answer to a call it does not serve, pinned to the
    /// exact code and message so that an emulator that starts serving it
    /// is noticed (and the call can then be compared).
    fn emulator_refuses<T: Debug>(&self, step: &str, answer: &Answer<T>, code: &str, says: &str) {
        eprintln!(
            "[paired] {step}\n  emulator: {}{}",
            code_of(answer),
            message(answer)
        );
        let got = answer
            .as_ref()
            .err()
            .and_then(AdminError::status)
            .map(|s| (format!("{:?}", s.code()), s.message()));
        self.check(step, got == Some((code.to_owned(), says)), || {
            format!("the emulator answered {answer:?}, not {code} {says:?}")
        });
    }

    /// The emulator's UNIMPLEMENTED for a method it does not have.
    fn emulator_lacks<T: Debug>(&self, step: &str, answer: &Answer<T>, method: &str) {
        self.emulator_refuses(
            step,
            answer,
            "Unimplemented",
            &format!("Method {method} is unimplemented"),
        );
    }

    /// Baton's own answer to a call the emulator does not serve.
    fn baton(&self, step: &str, ok: bool, answer: impl Debug) {
        eprintln!("[paired] {step}\n  Baton:    {answer:?}");
        self.check(step, ok, || format!("Baton answered {answer:?}"));
    }
}

/// The gRPC code of a failure, as tonic names it.
fn code(e: &AdminError) -> String {
    e.code()
        .map_or_else(|| format!("no code: {e}"), |c| format!("{c:?}"))
}

/// `Ok`, or the code of a failure.
fn code_of<T>(answer: &Answer<T>) -> String {
    answer.as_ref().err().map_or_else(|| "Ok".to_owned(), code)
}

/// A failure's message, for the log.
fn message<T>(answer: &Answer<T>) -> String {
    match answer {
        Err(e) => format!(" ({:?})", e.status().map(|s| s.message())),
        Ok(_) => String::new(),
    }
}

/// Both answers' values, or the first failure (for steps the rest depend on).
fn values<T>(step: &str, answers: [Answer<T>; 2]) -> anyhow::Result<[T; 2]> {
    let [ours, theirs] = answers;
    Ok([
        ours.with_context(|| format!("{step} on Baton"))?,
        theirs.with_context(|| format!("{step} on the emulator"))?,
    ])
}

/// Labels in a stable order.
fn sorted(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A topic as compared: every field, labels in order.
fn topic_view(topic: &Topic) -> (Topic, BTreeMap<String, String>) {
    let labels = sorted(&topic.labels);
    let mut topic = topic.clone();
    topic.labels.clear();
    (topic, labels)
}

/// A subscription as compared: every field, labels in order.
fn subscription_view(subscription: &Subscription) -> (Subscription, BTreeMap<String, String>) {
    let labels = sorted(&subscription.labels);
    let mut subscription = subscription.clone();
    subscription.labels.clear();
    (subscription, labels)
}

/// A schema revision as compared: all but its creation time.
fn schema_view(schema: &Schema) -> (String, i32, String, String) {
    (
        schema.name.clone(),
        schema.r#type,
        schema.definition.clone(),
        schema.revision_id.clone(),
    )
}

/// A snapshot as compared: its name and topic (the expiry time follows
/// the clock, and the emulator keeps no labels).
fn snapshot_view(snapshot: &Snapshot) -> (String, String) {
    (snapshot.name.clone(), snapshot.topic.clone())
}

/// A client of `host` whose admin calls are tried once, so each answer is
/// the server's own and a failure costs no backoff.
async fn paired_client(host: &str) -> anyhow::Result<Client> {
    let once = RetrySettings::no_retry(Duration::from_secs(30));
    let config = [
        CallFamily::AdminRead,
        CallFamily::AdminWrite,
        CallFamily::Schema,
    ]
    .into_iter()
    .fold(
        ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(host.to_owned())),
        |config, family| config.with_retry(family, once.clone()),
    );
    Ok(Client::connect(config).await?)
}

/// Every other admin verb of `baton-client`, against a fresh Baton and the
/// shared emulator in one flow.
async fn paired() {
    let emulator = tokio::task::spawn_blocking(|| Emulator::shared(TMP))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let baton = TestServer::start().await;
    let result = async {
        let pair = Pair {
            clients: [
                paired_client(&baton.host()).await?,
                paired_client(emulator.host()).await?,
            ],
            prefix: unique_prefix("paired-admin"),
            aliases: Default::default(),
            mismatches: RefCell::default(),
        };
        // A step the rest depends on stops the flow; what disagreed before
        // it is reported with it.
        let stopped = paired_flow(&pair).await.err();
        let mismatches = pair.mismatches.into_inner();
        ensure!(
            stopped.is_none() && mismatches.is_empty(),
            "{} disagreements:\n{}{}",
            mismatches.len(),
            mismatches.join("\n"),
            stopped
                .map(|e| format!("\nand then {e:#}"))
                .unwrap_or_default()
        );
        anyhow::Ok(())
    }
    .await;
    baton.shutdown().await;
    if let Err(e) = result {
        panic!(
            "paired admin calls: {e:#}\n--- emulator log\n{}",
            emulator.log_tail()
        );
    }
}

/// The sections in order (later ones use what earlier ones made); each is
/// boxed, as the futures of so many calls are too big for a test thread's
/// stack.
async fn paired_flow(pair: &Pair) -> anyhow::Result<()> {
    Box::pin(topics(pair)).await?;
    Box::pin(subscriptions(pair)).await?;
    Box::pin(snapshots(pair)).await?;
    Box::pin(schemas(pair)).await?;
    Box::pin(iam(pair)).await?;
    Box::pin(detach_and_delete(pair)).await?;
    Ok(())
}

/// Labels from pairs.
fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// This run's items of a project-wide list, in name order.
fn mine<T, V: Debug>(
    pair: &Pair,
    items: &[T],
    name: impl Fn(&T) -> &str,
    view: impl Fn(&T) -> V,
) -> Vec<V> {
    let mut items: Vec<&T> = items.iter().filter(|item| pair.mine(name(item))).collect();
    items.sort_by(|a, b| name(a).cmp(name(b)));
    items.into_iter().map(view).collect()
}

fn seconds(seconds: i64) -> wkt::Duration {
    wkt::Duration { seconds, nanos: 0 }
}

/// GetTopic, ListTopics and UpdateTopic (the field-mask form; the nested
/// schema paths are in [`schemas`]).
async fn topics(pair: &Pair) -> anyhow::Result<()> {
    let topic = &pair.id("topic");
    let other = &pair.id("other");
    let missing = &pair.id("missing");
    for id in [topic, other] {
        let step = format!("create topic {id}");
        values(
            &step,
            pair.agree(
                &step,
                |c| async move { c.create_topic(id).await },
                topic_view,
            )
            .await,
        )?;
    }
    pair.same(
        "get topic",
        |c| async move { c.get_topic(topic).await },
        topic_view,
    )
    .await;
    pair.fail_alike(
        "get a missing topic",
        |c| async move { c.get_topic(missing).await },
        topic_view,
        "NotFound",
    )
    .await;
    let listed = pair
        .agree(
            "list topics",
            |c| async move { c.list_topics().await },
            |topics| mine(pair, topics, |t| &t.name, topic_view),
        )
        .await;
    pair.expect("list topics", &listed, "both topics", |topics| {
        mine(pair, topics, |t| &t.name, |t| t.name.clone())
            == [
                pair.clients[0].topic_name(other),
                pair.clients[0].topic_name(topic),
            ]
    });

    // Labels: the emulator knows no `labels` path in UpdateTopic (it keeps
    // no topic labels at all); the real service replaces them, and so does
    // Baton. On a topic of its own, so `topic` stays comparable.
    let labelled = &Topic {
        name: other.clone(),
        labels: labels(&[("env", "test"), ("team", "a")]),
        ..Default::default()
    };
    let step = "update topic labels";
    let [ours, theirs] = pair
        .both(|c| async move { c.update_topic(labelled.clone(), &["labels"]).await })
        .await;
    pair.emulator_refuses(
        step,
        &theirs,
        "InvalidArgument",
        "Invalid update_mask provided in the UpdateTopicRequest: labels is not a known Topic \
         field. Note that field paths must be of the form 'schema_settings' rather than \
         'schemaSetings'.",
    );
    pair.baton(
        step,
        ours.as_ref().is_ok_and(|t| t.labels == labelled.labels),
        &ours,
    );
    let retained = &Topic {
        name: topic.clone(),
        message_retention_duration: Some(seconds(3600)),
        ..Default::default()
    };
    let updated = pair
        .agree(
            "update topic message_retention_duration",
            |c| async move {
                c.update_topic(retained.clone(), &["message_retention_duration"])
                    .await
            },
            topic_view,
        )
        .await;
    pair.expect(
        "update topic message_retention_duration",
        &updated,
        "1 h",
        |t| t.message_retention_duration == Some(seconds(3600)),
    );
    // Over gRPC a mask names proto fields; the JSON spelling is REST's
    // (where the service translates it), so both refuse it here.
    pair.fail_alike(
        "update topic messageRetentionDuration (JSON spelling)",
        |c| async move {
            c.update_topic(retained.clone(), &["messageRetentionDuration"])
                .await
        },
        topic_view,
        "InvalidArgument",
    )
    .await;
    pair.fail_alike(
        "update topic with an empty mask",
        |c| async move { c.update_topic(labelled.clone(), &[]).await },
        topic_view,
        "InvalidArgument",
    )
    .await;
    pair.fail_alike(
        "update topic with an unknown path",
        |c| async move { c.update_topic(labelled.clone(), &["no_such_field"]).await },
        topic_view,
        "InvalidArgument",
    )
    .await;
    let absent = &Topic {
        name: missing.clone(),
        ..retained.clone()
    };
    pair.fail_alike(
        "update a missing topic",
        |c| async move {
            c.update_topic(absent.clone(), &["message_retention_duration"])
                .await
        },
        topic_view,
        "NotFound",
    )
    .await;
    let got = pair
        .agree(
            "get updated topic",
            |c| async move { c.get_topic(topic).await },
            topic_view,
        )
        .await;
    pair.expect("get updated topic", &got, "1 h retention", |t| {
        t.message_retention_duration == Some(seconds(3600))
    });
    Ok(())
}

/// GetSubscription, ListSubscriptions, ListTopicSubscriptions and both
/// forms of UpdateSubscription.
async fn subscriptions(pair: &Pair) -> anyhow::Result<()> {
    let topic = &pair.id("topic");
    let dead = &pair.id("dead");
    let sub = &pair.id("sub");
    let quiet = &pair.id("quiet");
    let extras = &pair.id("extras");
    let missing = &pair.id("missing");
    values(
        "create dead-letter topic",
        pair.agree(
            "create dead-letter topic",
            |c| async move { c.create_topic(dead).await },
            topic_view,
        )
        .await,
    )?;
    for id in [sub, quiet, extras] {
        let step = format!("create subscription {id}");
        values(
            &step,
            pair.agree(
                &step,
                |c| async move {
                    c.create_subscription(SubscriptionConfig::new(id, topic))
                        .await
                },
                subscription_view,
            )
            .await,
        )?;
    }
    pair.same(
        "get subscription",
        |c| async move { c.get_subscription(sub).await },
        subscription_view,
    )
    .await;
    pair.fail_alike(
        "get a missing subscription",
        |c| async move { c.get_subscription(missing).await },
        subscription_view,
        "NotFound",
    )
    .await;
    let listed = pair
        .agree(
            "list subscriptions",
            |c| async move { c.list_subscriptions().await },
            |subs| mine(pair, subs, |s| &s.name, subscription_view),
        )
        .await;
    pair.expect(
        "list subscriptions",
        &listed,
        "the three subscriptions",
        |subs| mine(pair, subs, |s| &s.name, |s| s.name.clone()).len() == 3,
    );
    let attached = pair
        .agree(
            "list topic subscriptions",
            |c| async move { c.list_topic_subscriptions(topic).await },
            |names| mine(pair, names, |n| n, String::clone),
        )
        .await;
    pair.expect(
        "list topic subscriptions",
        &attached,
        "the three subscriptions",
        |names| names.len() == 3,
    );
    pair.same(
        "list the subscriptions of a missing topic",
        |c| async move { c.list_topic_subscriptions(missing).await },
        |names| names.clone(),
    )
    .await;

    // The field-mask form.
    let changed = &Subscription {
        name: sub.clone(),
        ack_deadline_seconds: 42,
        ..Default::default()
    };
    let updated = pair
        .agree(
            "update subscription ack deadline",
            |c| async move {
                c.update_subscription(changed.clone(), &["ack_deadline_seconds"])
                    .await
            },
            subscription_view,
        )
        .await;
    pair.expect("update subscription", &updated, "42 s", |s| {
        s.ack_deadline_seconds == 42
    });
    // Over gRPC a mask names proto fields; the JSON spelling is REST's.
    pair.fail_alike(
        "update subscription ackDeadlineSeconds (JSON spelling)",
        |c| async move {
            c.update_subscription(changed.clone(), &["ackDeadlineSeconds"])
                .await
        },
        subscription_view,
        "InvalidArgument",
    )
    .await;
    // Both take an ack deadline below the documented 10 s minimum.
    pair.same(
        "update subscription with a 5 s ack deadline",
        |c| async move {
            let mut s = changed.clone();
            s.ack_deadline_seconds = 5;
            c.update_subscription(s, &["ack_deadline_seconds"]).await
        },
        subscription_view,
    )
    .await;
    pair.fail_alike(
        "update subscription topic",
        |c| async move {
            let mut s = changed.clone();
            s.topic = dead.clone();
            c.update_subscription(s, &["topic"]).await
        },
        subscription_view,
        "InvalidArgument",
    )
    .await;
    pair.fail_alike(
        "update subscription with an empty mask",
        |c| async move { c.update_subscription(changed.clone(), &[]).await },
        subscription_view,
        "InvalidArgument",
    )
    .await;
    pair.fail_alike(
        "update a missing subscription",
        |c| async move {
            let mut s = changed.clone();
            s.name = missing.clone();
            c.update_subscription(s, &["ack_deadline_seconds"]).await
        },
        subscription_view,
        "NotFound",
    )
    .await;
    // Labels: the emulator knows no `labels` path in UpdateSubscription
    // (it keeps no labels); the real service replaces them, as Baton does.
    // On a subscription of its own, so `sub` stays comparable.
    let labelled = &Subscription {
        name: extras.clone(),
        labels: labels(&[("env", "test"), ("team", "a")]),
        ..Default::default()
    };
    let step = "update subscription labels";
    let [ours, theirs] = pair
        .both(|c| async move { c.update_subscription(labelled.clone(), &["labels"]).await })
        .await;
    pair.emulator_refuses(
        step,
        &theirs,
        "InvalidArgument",
        "Invalid update_mask provided in the UpdateSubscriptionRequest: labels is not a known \
         Subscription field. Note that field paths must be of the form 'push_config' rather \
         than 'pushConfig'.",
    );
    pair.baton(
        step,
        ours.as_ref().is_ok_and(|s| s.labels == labelled.labels),
        &ours,
    );

    // The typed form.
    let many = pair
        .agree(
            "update_subscription_with many fields",
            |c| async move {
                c.update_subscription_with(
                    SubscriptionUpdate::new(sub)
                        .with_ack_deadline(Duration::from_secs(60))
                        .with_retry_policy(Duration::from_secs(10), Duration::from_secs(300))
                        .with_dead_letter(dead, 5)
                        .with_retention(Duration::from_secs(7200), true),
                )
                .await
            },
            subscription_view,
        )
        .await;
    pair.expect(
        "update_subscription_with many fields",
        &many,
        "the new values",
        |s| {
            s.ack_deadline_seconds == 60
                && s.retain_acked_messages
                && s.message_retention_duration == Some(seconds(7200))
                && s.retry_policy.as_ref().and_then(|r| r.maximum_backoff) == Some(seconds(300))
                && s.dead_letter_policy
                    .as_ref()
                    .map(|d| d.max_delivery_attempts)
                    == Some(5)
        },
    );
    let pushed = pair
        .agree(
            "update_subscription_with push endpoint",
            |c| async move {
                c.update_subscription_with(
                    SubscriptionUpdate::new(sub).with_push_endpoint("http://127.0.0.1:9/push"),
                )
                .await
            },
            subscription_view,
        )
        .await;
    pair.expect("update_subscription_with push", &pushed, "push", |s| {
        s.push_config.as_ref().map(|p| p.push_endpoint.as_str()) == Some("http://127.0.0.1:9/push")
    });
    let pulled = pair
        .agree(
            "update_subscription_with pull delivery, no dead letter",
            |c| async move {
                c.update_subscription_with(
                    SubscriptionUpdate::new(sub)
                        .with_pull_delivery()
                        .without_dead_letter(),
                )
                .await
            },
            subscription_view,
        )
        .await;
    pair.expect(
        "update_subscription_with pull",
        &pulled,
        "pull, no dead letter",
        |s| {
            s.push_config
                .as_ref()
                .is_none_or(|p| p.push_endpoint.is_empty())
                && s.dead_letter_policy.is_none()
        },
    );
    let once = pair
        .agree(
            "update_subscription_with exactly once",
            |c| async move {
                c.update_subscription_with(SubscriptionUpdate::new(sub).with_exactly_once(true))
                    .await
            },
            subscription_view,
        )
        .await;
    pair.expect("update_subscription_with exactly once", &once, "on", |s| {
        s.enable_exactly_once_delivery
    });
    pair.fail_alike(
        "update_subscription_with a missing subscription",
        |c| async move {
            c.update_subscription_with(
                SubscriptionUpdate::new(missing).with_ack_deadline(Duration::from_secs(60)),
            )
            .await
        },
        subscription_view,
        "NotFound",
    )
    .await;
    // Labels and the expiration policy, which the emulator refuses to
    // update (each with its own message); Baton updates them.
    let step = "update_subscription_with a label";
    let [ours, theirs] = pair
        .both(|c| async move {
            c.update_subscription_with(SubscriptionUpdate::new(extras).with_label("env", "prod"))
                .await
        })
        .await;
    pair.emulator_refuses(
        step,
        &theirs,
        "InvalidArgument",
        "Invalid update_mask provided in the UpdateSubscriptionRequest: labels is not a known \
         Subscription field. Note that field paths must be of the form 'push_config' rather \
         than 'pushConfig'.",
    );
    pair.baton(
        step,
        ours.as_ref()
            .is_ok_and(|s| s.labels == labels(&[("env", "prod")])),
        &ours,
    );
    let step = "update_subscription_with an expiration policy";
    let ttl = Duration::from_secs(2 * 86_400);
    let [ours, theirs] = pair
        .both(|c| async move {
            c.update_subscription_with(SubscriptionUpdate::new(extras).with_expiration(ttl))
                .await
        })
        .await;
    pair.emulator_refuses(
        step,
        &theirs,
        "InvalidArgument",
        "Updating the expiration_policy field is currently unsupported in the Pub/Sub Emulator.",
    );
    pair.baton(
        step,
        ours.as_ref().is_ok_and(|s| {
            s.expiration_policy.as_ref().and_then(|p| p.ttl) == Some(seconds(2 * 86_400))
        }),
        &ours,
    );
    let got = pair
        .agree(
            "get updated subscription",
            |c| async move { c.get_subscription(sub).await },
            subscription_view,
        )
        .await;
    pair.expect("get updated subscription", &got, "the updates", |s| {
        s.ack_deadline_seconds == 60
            && s.enable_exactly_once_delivery
            && s.dead_letter_policy.is_none()
    });
    Ok(())
}

/// UpdateSnapshot and ListSnapshots (create, get, seek and delete are in
/// [`admin_surface`]). The emulator has no UpdateSnapshot and keeps no
/// snapshot labels, so labels are checked on each side on their own.
async fn snapshots(pair: &Pair) -> anyhow::Result<()> {
    let sub = &pair.id("sub");
    let snap = &pair.id("snap");
    let missing = &pair.id("missing");
    let created = pair
        .agree(
            "create snapshot",
            |c| async move {
                c.create_snapshot(SnapshotConfig::new(snap, sub).with_label("env", "test"))
                    .await
            },
            snapshot_view,
        )
        .await;
    let [ours, theirs] = values("create snapshot", created)?;
    // The emulator drops a new snapshot's labels; the real service keeps
    // them, as Baton does.
    pair.check("create snapshot labels", theirs.labels.is_empty(), || {
        format!("the emulator kept the labels: {theirs:?}")
    });
    pair.baton(
        "create snapshot labels",
        ours.labels == labels(&[("env", "test")]),
        &ours,
    );

    let method = "google.pubsub.v1.Subscriber/UpdateSnapshot";
    let step = "update snapshot labels";
    let [ours, theirs] = pair
        .both(|c| async move {
            c.update_snapshot(SnapshotUpdate::new(snap).with_label("env", "staging"))
                .await
        })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(
        step,
        ours.as_ref().is_ok_and(|s| {
            s.name == pair.clients[BATON].snapshot_name(snap)
                && s.topic == pair.clients[BATON].topic_name(&pair.id("topic"))
                && s.labels == labels(&[("env", "staging")])
        }),
        &ours,
    );
    let expire = SystemTime::now() + Duration::from_secs(86_400);
    let since = expire.duration_since(UNIX_EPOCH)?;
    let requested = wkt::Timestamp {
        seconds: i64::try_from(since.as_secs())?,
        nanos: i32::try_from(since.subsec_nanos())?,
    };
    let step = "update snapshot expire time";
    let [ours, theirs] = pair
        .both(|c| async move {
            c.update_snapshot(SnapshotUpdate::new(snap).with_expire_time(expire))
                .await
        })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(
        step,
        ours.as_ref().is_ok_and(|s| {
            s.expire_time == Some(requested) && s.labels == labels(&[("env", "staging")])
        }),
        &ours,
    );
    let step = "update snapshot with an empty mask";
    let [ours, theirs] = pair
        .both(|c| async move { c.update_snapshot(SnapshotUpdate::new(snap)).await })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(step, code_of(&ours) == "InvalidArgument", &ours);
    let step = "update a missing snapshot";
    let [ours, theirs] = pair
        .both(|c| async move {
            c.update_snapshot(SnapshotUpdate::new(missing).with_label("env", "x"))
                .await
        })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(step, code_of(&ours) == "NotFound", &ours);

    let listed = pair
        .agree(
            "list snapshots",
            |c| async move { c.list_snapshots().await },
            |snaps| mine(pair, snaps, |s| &s.name, snapshot_view),
        )
        .await;
    pair.expect("list snapshots", &listed, "the snapshot", |snaps| {
        mine(pair, snaps, |s| &s.name, |s| s.name.clone()) == [pair.clients[0].snapshot_name(snap)]
    });
    pair.baton(
        "list snapshots: labels",
        listed[BATON].as_ref().is_ok_and(|snaps| {
            mine(pair, snaps, |s| &s.name, |s| sorted(&s.labels))
                == [sorted(&labels(&[("env", "staging")]))]
        }),
        &listed[BATON],
    );
    values(
        "delete snapshot",
        pair.agree(
            "delete snapshot",
            |c| async move { c.delete_snapshot(snap).await },
            |()| (),
        )
        .await,
    )?;
    let listed = pair
        .agree(
            "list snapshots after delete",
            |c| async move { c.list_snapshots().await },
            |snaps| mine(pair, snaps, |s| &s.name, snapshot_view),
        )
        .await;
    pair.expect(
        "list snapshots after delete",
        &listed,
        "none of this run's",
        |snaps| mine(pair, snaps, |s| &s.name, |s| s.name.clone()).is_empty(),
    );
    Ok(())
}

/// ListSchemas, ValidateSchema, RollbackSchema, DeleteSchemaRevision,
/// DeleteSchema, and UpdateTopic with the nested schema paths.
async fn schemas(pair: &Pair) -> anyhow::Result<()> {
    let schema = &pair.id("schema");
    let single = &pair.id("single");
    let typed = &pair.id("typed");
    let missing = &pair.id("missing");
    let avro = |text: &str| SchemaDefinition::new(SchemaType::Avro, text);

    // Revision ids are generated: each side's read as <rev1>, <rev2>...
    let created = pair
        .both(|c| async move { c.create_schema(schema, avro(AVRO_V1)).await })
        .await;
    let [first_b, first_e] = values("create schema", created.clone())?;
    pair.alias(BATON, &first_b.revision_id, "rev1");
    pair.alias(EMULATOR, &first_e.revision_id, "rev1");
    pair.compare("create schema", &created, schema_view);
    let first = &[first_b.revision_id, first_e.revision_id];
    let committed = pair
        .both(|c| async move { c.commit_schema(schema, avro(AVRO_V2)).await })
        .await;
    let [last_b, last_e] = values("commit schema", committed.clone())?;
    pair.alias(BATON, &last_b.revision_id, "rev2");
    pair.alias(EMULATOR, &last_e.revision_id, "rev2");
    pair.compare("commit schema", &committed, schema_view);
    let last = &[last_b.revision_id, last_e.revision_id];
    let made = pair
        .both(|c| async move { c.create_schema(single, avro(AVRO_V1)).await })
        .await;
    let [only_b, only_e] = values("create a second schema", made.clone())?;
    pair.alias(BATON, &only_b.revision_id, "only");
    pair.alias(EMULATOR, &only_e.revision_id, "only");
    pair.compare("create a second schema", &made, schema_view);
    let only = &[only_b.revision_id, only_e.revision_id];

    for view in [SchemaView::Basic, SchemaView::Full] {
        let step = format!("list schemas {view:?}");
        let listed = pair
            .agree(
                &step,
                |c| async move { c.list_schemas(view).await },
                |schemas| mine(pair, schemas, |s| &s.name, schema_view),
            )
            .await;
        pair.expect(&step, &listed, "both schemas", |schemas| {
            mine(pair, schemas, |s| &s.name, |s| s.name.clone()).len() == 2
        });
    }

    // ValidateSchema: Avro on both; the emulator has no protobuf schemas
    // at all, so those are Baton's alone.
    let avro_definitions = [
        ("a valid Avro schema", AVRO_V2, "Ok"),
        (
            "an Avro record without fields",
            r#"{"type":"record","name":"R"}"#,
            "InvalidArgument",
        ),
        ("text that is not Avro", "not json", "InvalidArgument"),
    ];
    for (what, text, expected) in avro_definitions {
        let step = format!("validate {what}");
        let answers = pair
            .agree(
                &step,
                |c| async move { c.validate_schema(avro(text)).await },
                |()| (),
            )
            .await;
        pair.codes(&step, &answers, expected);
    }
    let protobuf_definitions = [
        (
            "a valid protobuf schema",
            "syntax = \"proto3\"; message M { string id = 1; }",
            "Ok",
        ),
        (
            "a broken protobuf schema",
            "message M { string id = }",
            "InvalidArgument",
        ),
    ];
    for (what, text, expected) in protobuf_definitions {
        let step = format!("validate {what}");
        let [ours, theirs] = pair
            .both(|c| async move {
                c.validate_schema(SchemaDefinition::new(SchemaType::ProtocolBuffer, text))
                    .await
            })
            .await;
        pair.emulator_refuses(
            &step,
            &theirs,
            "Unimplemented",
            "Protocol buffer support not implemented in emulator",
        );
        pair.baton(&step, code_of(&ours) == expected, &ours);
    }

    // UpdateTopic with nested schema paths, which change the pinned
    // revisions and leave the schema and encoding as they are.
    values(
        "create typed topic",
        pair.agree(
            "create typed topic",
            |c| async move { c.create_topic(typed).await },
            topic_view,
        )
        .await,
    )?;
    values(
        "set topic schema",
        pair.agree(
            "set topic schema",
            |c| async move {
                c.update_topic_with(
                    TopicUpdate::new(typed).with_schema(schema, MessageEncoding::Json),
                )
                .await
            },
            topic_view,
        )
        .await,
    )?;
    let pin = |first: &str, last: &str| Topic {
        name: typed.clone(),
        schema_settings: Some(SchemaSettings {
            first_revision_id: first.to_owned(),
            last_revision_id: last.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pinned = |answers: &[Answer<Topic>; 2], step: &str, revisions: [&[String; 2]; 2]| {
        for side in [BATON, EMULATOR] {
            let settings = answers[side]
                .as_ref()
                .ok()
                .and_then(|t| t.schema_settings.clone());
            let ok = settings.as_ref().is_some_and(|s| {
                s.schema == pair.clients[side].schema_name(schema)
                    && s.encoding == baton_client::proto::Encoding::Json as i32
                    && s.first_revision_id == revisions[0][side]
                    && s.last_revision_id == revisions[1][side]
            });
            pair.check(step, ok, || {
                format!(
                    "{}: pinned settings expected, got {:?}",
                    SIDES[side], answers[side]
                )
            });
        }
    };
    // Google's sample pins revisions with the mask
    // "schemaSettings.firstRevisionId,schemaSettings.lastRevisionId", the
    // JSON form of a FieldMask: its client turns that into the proto paths
    // below before sending, which is what both servers are sent here.
    let step = "update topic schema_settings.first_revision_id,schema_settings.last_revision_id";
    let answers = pair
        .each(|side, c| {
            let topic = pin(&first[side], &last[side]);
            async move {
                c.update_topic(
                    topic,
                    &[
                        "schema_settings.first_revision_id",
                        "schema_settings.last_revision_id",
                    ],
                )
                .await
            }
        })
        .await;
    pair.compare(step, &answers, topic_view);
    pinned(&answers, step, [first, last]);
    // Sent verbatim over gRPC, the JSON spelling is no field path: both
    // refuse it and the topic stays as it was.
    let step = "update topic schemaSettings.firstRevisionId,schemaSettings.lastRevisionId";
    let answers = pair
        .each(|side, c| {
            let topic = pin(&last[side], &last[side]);
            async move {
                c.update_topic(
                    topic,
                    &[
                        "schemaSettings.firstRevisionId",
                        "schemaSettings.lastRevisionId",
                    ],
                )
                .await
            }
        })
        .await;
    pair.compare(step, &answers, topic_view);
    pair.codes(step, &answers, "InvalidArgument");
    let answers = pair.both(|c| async move { c.get_topic(typed).await }).await;
    pair.compare("get pinned topic", &answers, topic_view);
    pinned(&answers, "get pinned topic", [first, last]);
    pair.fail_alike(
        "pin an unknown revision",
        |c| async move {
            c.update_topic(
                pin("0badc0de", "0badc0de"),
                &["schema_settings.first_revision_id"],
            )
            .await
        },
        topic_view,
        "NotFound",
    )
    .await;

    // Rollback makes a copy of revision 1 the newest: <rev3>.
    let rolled = pair
        .each(|side, c| async move { c.rollback_schema(schema, &first[side]).await })
        .await;
    let [third_b, third_e] = values("rollback schema", rolled.clone())?;
    pair.alias(BATON, &third_b.revision_id, "rev3");
    pair.alias(EMULATOR, &third_e.revision_id, "rev3");
    pair.compare("rollback schema", &rolled, schema_view);
    pair.expect("rollback schema", &rolled, "revision 1's definition", |s| {
        s.definition == AVRO_V1
    });
    pair.fail_alike(
        "rollback to an unknown revision",
        |c| async move { c.rollback_schema(schema, "0badc0de").await },
        schema_view,
        "NotFound",
    )
    .await;
    let revisions = pair
        .agree(
            "list revisions after rollback",
            |c| async move { c.list_schema_revisions(schema, SchemaView::Full).await },
            |revisions| revisions.iter().map(schema_view).collect::<Vec<_>>(),
        )
        .await;
    pair.expect("list revisions after rollback", &revisions, "three", |r| {
        r.len() == 3
    });
    let third = &[third_b.revision_id, third_e.revision_id];
    let deleted = pair
        .each(|side, c| async move { c.delete_schema_revision(schema, &third[side]).await })
        .await;
    pair.compare("delete schema revision", &deleted, schema_view);
    pair.fail_alike(
        "delete an unknown schema revision",
        |c| async move { c.delete_schema_revision(schema, "0badc0de").await },
        schema_view,
        "NotFound",
    )
    .await;
    let revisions = pair
        .agree(
            "list revisions after deleting one",
            |c| async move { c.list_schema_revisions(schema, SchemaView::Basic).await },
            |revisions| revisions.iter().map(schema_view).collect::<Vec<_>>(),
        )
        .await;
    pair.expect(
        "list revisions after deleting one",
        &revisions,
        "two",
        |r| r.len() == 2,
    );
    let answers = pair
        .each(|side, c| async move { c.delete_schema_revision(single, &only[side]).await })
        .await;
    pair.compare("delete a schema's only revision", &answers, schema_view);
    pair.codes(
        "delete a schema's only revision",
        &answers,
        "InvalidArgument",
    );

    pair.same(
        "delete schema",
        |c| async move { c.delete_schema(single).await },
        |()| (),
    )
    .await;
    pair.fail_alike(
        "get a deleted schema",
        |c| async move { c.get_schema(single, SchemaView::Basic).await },
        schema_view,
        "NotFound",
    )
    .await;
    pair.fail_alike(
        "delete a deleted schema",
        |c| async move { c.delete_schema(single).await },
        |()| (),
        "NotFound",
    )
    .await;
    pair.fail_alike(
        "delete a missing schema",
        |c| async move { c.delete_schema(missing).await },
        |()| (),
        "NotFound",
    )
    .await;
    pair.same(
        "delete a schema a topic uses",
        |c| async move { c.delete_schema(schema).await },
        |()| (),
    )
    .await;
    // Once its schema is deleted, a topic shows the revisions it was pinned
    // to as `_deleted-schema-revision_`, on both.
    let step = "get the topic of a deleted schema";
    let answers = pair.both(|c| async move { c.get_topic(typed).await }).await;
    pair.compare(step, &answers, topic_view);
    let gone = "_deleted-schema-revision_";
    for side in [EMULATOR, BATON] {
        let deleted = answers[side].as_ref().is_ok_and(|t| {
            t.schema_settings.as_ref().is_some_and(|s| {
                s.schema == "_deleted-schema_"
                    && s.first_revision_id == gone
                    && s.last_revision_id == gone
            })
        });
        pair.check(step, deleted, || format!("answered {:?}", answers[side]));
    }
    pair.same(
        "list schemas after deletes",
        |c| async move { c.list_schemas(SchemaView::Basic).await },
        |schemas| mine(pair, schemas, |s| &s.name, schema_view),
    )
    .await;
    Ok(())
}

/// SetIamPolicy and TestIamPermissions (GetIamPolicy is in
/// [`admin_surface`]). The emulator does not serve the IAMPolicy service
/// at all (it logs "IAM integration is disabled. IAM policy methods and ACL
/// checks are not supported" and answers UNIMPLEMENTED with no message),
/// so there is nothing to compare: its answer is pinned, and Baton's is
/// checked against what the real service does.
async fn iam(pair: &Pair) -> anyhow::Result<()> {
    let topic = &pair.clients[BATON].topic_name(&pair.id("topic"));
    let subscription = &pair.clients[BATON].subscription_name(&pair.id("sub"));
    let missing = &pair.clients[BATON].topic_name(&pair.id("missing"));
    let policy = &Policy {
        bindings: vec![Binding {
            role: "roles/pubsub.publisher".into(),
            members: vec!["user:ana@example.com".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    for resource in [topic, subscription] {
        let step = format!("set IAM policy of {resource}");
        let [ours, theirs] = pair
            .both(|c| async move { c.set_iam_policy(resource, policy.clone()).await })
            .await;
        pair.emulator_refuses(&step, &theirs, "Unimplemented", "");
        pair.baton(
            &step,
            ours.as_ref()
                .is_ok_and(|p| p.bindings == policy.bindings && !p.etag.is_empty()),
            &ours,
        );
        let read = pair.clients[BATON].get_iam_policy(resource).await;
        pair.baton(
            &format!("get IAM policy of {resource} after set"),
            read.as_ref().is_ok_and(|p| p.bindings == policy.bindings),
            &read,
        );
    }
    let step = "set IAM policy of a missing topic";
    let [ours, theirs] = pair
        .both(|c| async move { c.set_iam_policy(missing, policy.clone()).await })
        .await;
    pair.emulator_refuses(step, &theirs, "Unimplemented", "");
    pair.baton(step, code_of(&ours) == "NotFound", &ours);

    let asked = ["pubsub.topics.publish", "pubsub.topics.get"];
    let step = "test IAM permissions of a topic";
    let [ours, theirs] = pair
        .both(|c| async move { c.test_iam_permissions(topic, &asked).await })
        .await;
    pair.emulator_refuses(step, &theirs, "Unimplemented", "");
    // Without authentication Baton grants everything asked for.
    pair.baton(step, ours.as_ref().is_ok_and(|p| *p == asked), &ours);
    let step = "test IAM permissions of a missing topic";
    let [ours, theirs] = pair
        .both(|c| async move { c.test_iam_permissions(missing, &asked).await })
        .await;
    pair.emulator_refuses(step, &theirs, "Unimplemented", "");
    pair.baton(step, code_of(&ours) == "NotFound", &ours);
    Ok(())
}

/// DetachSubscription, DeleteSubscription and DeleteTopic, and what the
/// other calls answer afterwards.
async fn detach_and_delete(pair: &Pair) -> anyhow::Result<()> {
    let topic = &pair.id("topic");
    let sub = &pair.id("sub");
    let quiet = &pair.id("quiet");
    let extras = &pair.id("extras");
    let gone = &pair.id("gone");
    let orphan = &pair.id("orphan");
    let missing = &pair.id("missing");

    // DetachSubscription: the emulator has no such method, so Baton's
    // answers are checked on their own against the real service's
    // documented behaviour: the subscription stays, marked detached, and
    // is no longer one of the topic's. A second detach is OK on Baton.
    let method = "google.pubsub.v1.Publisher/DetachSubscription";
    let step = "detach subscription";
    let [ours, theirs] = pair
        .both(|c| async move { c.detach_subscription(quiet).await })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(step, ours.is_ok(), &ours);
    let baton = &pair.clients[BATON];
    let got = baton.get_subscription(quiet).await;
    pair.baton(
        "get a detached subscription",
        got.as_ref().is_ok_and(|s| s.detached),
        &got,
    );
    let listed = baton.list_topic_subscriptions(topic).await;
    pair.baton(
        "list topic subscriptions after detach",
        listed.as_ref().is_ok_and(|names| {
            mine(pair, names, |n| n, String::clone)
                == [
                    baton.subscription_name(extras),
                    baton.subscription_name(sub),
                ]
        }),
        &listed,
    );
    let step = "detach a detached subscription";
    let [ours, theirs] = pair
        .both(|c| async move { c.detach_subscription(quiet).await })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(step, ours.is_ok(), &ours);
    let step = "detach a missing subscription";
    let [ours, theirs] = pair
        .both(|c| async move { c.detach_subscription(missing).await })
        .await;
    pair.emulator_lacks(step, &theirs, method);
    pair.baton(step, code_of(&ours) == "NotFound", &ours);

    for id in [sub, quiet, extras] {
        let step = format!("delete subscription {id}");
        values(
            &step,
            pair.agree(
                &step,
                |c| async move { c.delete_subscription(id).await },
                |()| (),
            )
            .await,
        )?;
    }
    pair.fail_alike(
        "get a deleted subscription",
        |c| async move { c.get_subscription(sub).await },
        subscription_view,
        "NotFound",
    )
    .await;
    pair.fail_alike(
        "delete a deleted subscription",
        |c| async move { c.delete_subscription(sub).await },
        |()| (),
        "NotFound",
    )
    .await;

    values(
        "create topic to delete",
        pair.agree(
            "create topic to delete",
            |c| async move { c.create_topic(gone).await },
            topic_view,
        )
        .await,
    )?;
    values(
        "create its subscription",
        pair.agree(
            "create its subscription",
            |c| async move {
                c.create_subscription(SubscriptionConfig::new(orphan, gone))
                    .await
            },
            subscription_view,
        )
        .await,
    )?;
    values(
        "delete topic",
        pair.agree(
            "delete topic",
            |c| async move { c.delete_topic(gone).await },
            |()| (),
        )
        .await,
    )?;
    pair.fail_alike(
        "get a deleted topic",
        |c| async move { c.get_topic(gone).await },
        topic_view,
        "NotFound",
    )
    .await;
    pair.fail_alike(
        "delete a deleted topic",
        |c| async move { c.delete_topic(gone).await },
        |()| (),
        "NotFound",
    )
    .await;
    pair.same(
        "list the subscriptions of a deleted topic",
        |c| async move { c.list_topic_subscriptions(gone).await },
        |names| names.clone(),
    )
    .await;
    let orphaned = pair
        .agree(
            "get the subscription of a deleted topic",
            |c| async move { c.get_subscription(orphan).await },
            subscription_view,
        )
        .await;
    pair.expect(
        "get the subscription of a deleted topic",
        &orphaned,
        "_deleted-topic_",
        |s| s.topic == "_deleted-topic_",
    );
    pair.same(
        "list topics after deletes",
        |c| async move { c.list_topics().await },
        |topics| mine(pair, topics, |t| &t.name, |t| t.name.clone()),
    )
    .await;
    pair.same(
        "list subscriptions after deletes",
        |c| async move { c.list_subscriptions().await },
        |subs| mine(pair, subs, |s| &s.name, subscription_view),
    )
    .await;
    Ok(())
}
