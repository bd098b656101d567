#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The client's admin calls against the real server: topics, subscriptions,
//! paging, the subscription builder's settings, error codes, the retries of
//! idempotent calls, and seek.
//!
//! The tests run on virtual time (`start_paused`, the server's wall clock
//! following Tokio's), so retry backoffs take no real time and seeks name
//! exact publish times.

mod client_suite;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_client::SubscriptionConfig;
use baton_proto::pubsub::{PublishRequest, PubsubMessage, Subscription, Topic};
use baton_proto::wkt;
use client_suite::{ClientServer, Proxy, assert_backoff, rpc_code, server_wall};
use tokio::time::Instant;
use tonic::{Code, Status};

fn secs(seconds: i64) -> Option<wkt::Duration> {
    Some(wkt::Duration { seconds, nanos: 0 })
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn topic_lifecycle() {
    let server = ClientServer::start().await;
    let client = &server.client;

    let created = client.create_topic("orders").await.unwrap();
    assert_eq!(created.name, "projects/p/topics/orders");
    assert_eq!(client.get_topic("orders").await.unwrap().name, created.name);
    assert_eq!(
        client.get_topic(&created.name).await.unwrap().name,
        created.name
    );
    assert_eq!(
        rpc_code(client.create_topic("orders").await),
        Code::AlreadyExists
    );
    assert_eq!(
        rpc_code(client.create_topic(&created.name).await),
        Code::AlreadyExists
    );
    for bad in ["ab", "goog-orders", "1orders", "has space"] {
        assert_eq!(
            rpc_code(client.create_topic(bad).await),
            Code::InvalidArgument,
            "topic id {bad:?}"
        );
    }
    assert_eq!(rpc_code(client.get_topic("missing").await), Code::NotFound);
    assert_eq!(
        rpc_code(client.get_topic("x y").await),
        Code::InvalidArgument
    );

    // Every setting of create_topic_with reaches the server.
    let labelled = client
        .create_topic_with(Topic {
            name: "labelled".into(),
            labels: labels(&[("env", "test")]),
            message_retention_duration: secs(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(labelled.name, "projects/p/topics/labelled");
    let got = client.get_topic("labelled").await.unwrap();
    assert_eq!(got.labels, labels(&[("env", "test")]));
    assert_eq!(got.message_retention_duration, secs(3600));

    // Update touches only the masked fields.
    let updated = client
        .update_topic(
            Topic {
                name: "labelled".into(),
                labels: labels(&[("env", "prod"), ("team", "core")]),
                message_retention_duration: secs(7200),
                ..Default::default()
            },
            &["labels"],
        )
        .await
        .unwrap();
    assert_eq!(updated.labels, labels(&[("env", "prod"), ("team", "core")]));
    assert_eq!(updated.message_retention_duration, secs(3600));
    let got = client.get_topic("labelled").await.unwrap();
    assert_eq!(got.labels, updated.labels);
    assert_eq!(got.message_retention_duration, secs(3600));
    let retention = client
        .update_topic(
            Topic {
                name: "labelled".into(),
                message_retention_duration: secs(7200),
                ..Default::default()
            },
            &["message_retention_duration"],
        )
        .await
        .unwrap();
    assert_eq!(retention.message_retention_duration, secs(7200));
    assert_eq!(retention.labels, updated.labels);
    let too_short = Topic {
        name: "labelled".into(),
        message_retention_duration: secs(1),
        ..Default::default()
    };
    assert_eq!(
        rpc_code(
            client
                .update_topic(too_short, &["message_retention_duration"])
                .await
        ),
        Code::InvalidArgument
    );
    let unnamed_field = Topic {
        name: "labelled".into(),
        ..Default::default()
    };
    assert_eq!(
        rpc_code(
            client
                .update_topic(unnamed_field.clone(), &["no_such_field"])
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        rpc_code(client.update_topic(unnamed_field, &[]).await),
        Code::InvalidArgument
    );
    let missing = Topic {
        name: "missing".into(),
        ..Default::default()
    };
    assert_eq!(
        rpc_code(client.update_topic(missing, &["labels"]).await),
        Code::NotFound
    );

    client.delete_topic("orders").await.unwrap();
    assert_eq!(rpc_code(client.get_topic("orders").await), Code::NotFound);
    assert_eq!(
        rpc_code(client.delete_topic("orders").await),
        Code::NotFound
    );
    let names: Vec<String> = client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["projects/p/topics/labelled"]);
}

#[tokio::test(start_paused = true)]
async fn listing_follows_every_page() {
    let server = ClientServer::start().await;
    let mut expected = BTreeSet::new();
    for i in 0..30 {
        expected.insert(
            server
                .client
                .create_topic(&format!("topic-{i:02}"))
                .await
                .unwrap()
                .name,
        );
    }
    // Another project's topics are not listed.
    server
        .client
        .create_topic("projects/other/topics/elsewhere")
        .await
        .unwrap();
    let direct: BTreeSet<String> = server
        .client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(direct, expected);

    // The proxy shrinks pages to 7: the client must follow the tokens.
    let proxy = Proxy::start(server.addr).await;
    proxy.set_list_page_size(7);
    let client = proxy.client().await;
    let topics = client.list_topics().await.unwrap();
    assert_eq!(topics.len(), 30, "no topic listed twice");
    let paged: BTreeSet<String> = topics.into_iter().map(|t| t.name).collect();
    assert_eq!(paged, expected);
    assert!(proxy.list_calls() >= 5, "{} pages", proxy.list_calls());

    let mut subscriptions = BTreeSet::new();
    for i in 0..16 {
        let config = SubscriptionConfig::new(format!("sub-{i:02}"), "topic-00");
        subscriptions.insert(
            server
                .client
                .create_subscription(config)
                .await
                .unwrap()
                .name,
        );
    }
    server
        .client
        .create_subscription(SubscriptionConfig::new("other-sub", "topic-01"))
        .await
        .unwrap();
    let calls = proxy.list_calls();
    let listed = client.list_topic_subscriptions("topic-00").await.unwrap();
    assert_eq!(listed.len(), 16);
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), subscriptions);
    assert!(proxy.list_calls() - calls >= 3, "paged topic subscriptions");
    assert_eq!(
        client.list_topic_subscriptions("topic-01").await.unwrap(),
        ["projects/p/subscriptions/other-sub"]
    );
    assert!(
        client
            .list_topic_subscriptions("topic-02")
            .await
            .unwrap()
            .is_empty()
    );

    let all: BTreeSet<String> = server
        .client
        .list_subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    subscriptions.insert("projects/p/subscriptions/other-sub".into());
    assert_eq!(all, subscriptions);
}

#[tokio::test(start_paused = true)]
async fn subscription_settings_round_trip() {
    let server = ClientServer::start().await;
    let client = &server.client;
    client.create_topic("events").await.unwrap();
    client.create_topic("dead-letters").await.unwrap();

    let config = SubscriptionConfig::new("everything", "events")
        .with_ack_deadline(Duration::from_secs(42))
        .with_message_ordering(true)
        .with_exactly_once(true)
        .with_filter(r#"attributes.kind = "order""#)
        .with_dead_letter("dead-letters", 7)
        .with_retry_policy(Duration::from_secs(5), Duration::from_millis(120_500))
        .with_retention(Duration::from_secs(3600), true)
        .with_expiration(Duration::from_secs(2 * 86_400))
        .with_label("team", "core")
        .with_label("env", "test");
    let created = client.create_subscription(config).await.unwrap();
    let got = client.get_subscription("everything").await.unwrap();
    for sub in [&created, &got] {
        assert_eq!(sub.name, "projects/p/subscriptions/everything");
        assert_eq!(sub.topic, "projects/p/topics/events");
        assert_eq!(sub.ack_deadline_seconds, 42);
        assert!(sub.enable_message_ordering);
        assert!(sub.enable_exactly_once_delivery);
        assert_eq!(sub.filter, r#"attributes.kind = "order""#);
        let dead_letter = sub.dead_letter_policy.as_ref().unwrap();
        assert_eq!(
            dead_letter.dead_letter_topic,
            "projects/p/topics/dead-letters"
        );
        assert_eq!(dead_letter.max_delivery_attempts, 7);
        let retry = sub.retry_policy.as_ref().unwrap();
        assert_eq!(retry.minimum_backoff, secs(5));
        assert_eq!(
            retry.maximum_backoff,
            Some(wkt::Duration {
                seconds: 120,
                nanos: 500_000_000
            })
        );
        assert_eq!(sub.message_retention_duration, secs(3600));
        assert!(sub.retain_acked_messages);
        assert_eq!(
            sub.expiration_policy.as_ref().unwrap().ttl,
            secs(2 * 86_400)
        );
        assert_eq!(sub.labels, labels(&[("team", "core"), ("env", "test")]));
    }

    // Unset fields take the service's defaults.
    let plain = client
        .create_subscription(SubscriptionConfig::new(
            "projects/p/subscriptions/plain",
            "projects/p/topics/events",
        ))
        .await
        .unwrap();
    assert_eq!(plain.ack_deadline_seconds, 10);
    assert_eq!(plain.message_retention_duration, secs(7 * 86_400));
    assert!(!plain.enable_message_ordering && !plain.enable_exactly_once_delivery);
    assert!(plain.dead_letter_policy.is_none() && plain.filter.is_empty());

    client.create_topic("pushed").await.unwrap();
    let push = client
        .create_subscription(
            SubscriptionConfig::new("pushed-sub", "pushed")
                .with_push_endpoint("http://127.0.0.1:9/push"),
        )
        .await
        .unwrap();
    assert_eq!(
        push.push_config.as_ref().unwrap().push_endpoint,
        "http://127.0.0.1:9/push"
    );
    let got = client.get_subscription("pushed-sub").await.unwrap();
    assert_eq!(got.push_config, push.push_config);
}

#[tokio::test(start_paused = true)]
async fn subscription_update_list_and_delete() {
    let server = ClientServer::start().await;
    let client = &server.client;
    client.create_topic("jobs").await.unwrap();
    client.create_topic("jobs-dlq").await.unwrap();
    client
        .create_subscription(SubscriptionConfig::new("worker", "jobs").with_label("a", "1"))
        .await
        .unwrap();
    client
        .create_subscription(SubscriptionConfig::new("auditor", "jobs"))
        .await
        .unwrap();

    let updated = client
        .update_subscription(
            Subscription {
                name: "worker".into(),
                ack_deadline_seconds: 99,
                labels: labels(&[("b", "2")]),
                ..Default::default()
            },
            &["ack_deadline_seconds"],
        )
        .await
        .unwrap();
    assert_eq!(updated.ack_deadline_seconds, 99);
    assert_eq!(
        updated.labels,
        labels(&[("a", "1")]),
        "labels not in the mask"
    );
    assert_eq!(
        client
            .get_subscription("worker")
            .await
            .unwrap()
            .ack_deadline_seconds,
        99
    );

    // A builder's subscription works for updates too, short names included.
    let from_builder = SubscriptionConfig::new("worker", "jobs")
        .with_dead_letter("jobs-dlq", 12)
        .with_retry_policy(Duration::from_secs(1), Duration::from_secs(2))
        .as_proto()
        .clone();
    let updated = client
        .update_subscription(from_builder, &["dead_letter_policy", "retry_policy"])
        .await
        .unwrap();
    let dead_letter = updated.dead_letter_policy.unwrap();
    assert_eq!(dead_letter.dead_letter_topic, "projects/p/topics/jobs-dlq");
    assert_eq!(dead_letter.max_delivery_attempts, 12);
    assert_eq!(updated.retry_policy.unwrap().maximum_backoff, secs(2));

    let immutable = Subscription {
        name: "worker".into(),
        filter: "attributes.x = \"y\"".into(),
        ..Default::default()
    };
    assert_eq!(
        rpc_code(client.update_subscription(immutable, &["filter"]).await),
        Code::InvalidArgument
    );
    let out_of_range = Subscription {
        name: "worker".into(),
        ack_deadline_seconds: 601,
        ..Default::default()
    };
    assert_eq!(
        rpc_code(
            client
                .update_subscription(out_of_range, &["ack_deadline_seconds"])
                .await
        ),
        Code::InvalidArgument
    );
    let missing = Subscription {
        name: "missing".into(),
        ack_deadline_seconds: 20,
        ..Default::default()
    };
    assert_eq!(
        rpc_code(
            client
                .update_subscription(missing, &["ack_deadline_seconds"])
                .await
        ),
        Code::NotFound
    );

    let mut listed: Vec<String> = client
        .list_subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "projects/p/subscriptions/auditor",
            "projects/p/subscriptions/worker"
        ]
    );
    let mut attached = client.list_topic_subscriptions("jobs").await.unwrap();
    attached.sort();
    assert_eq!(attached, listed);

    // Deleting the topic leaves its subscriptions, detached.
    client.delete_topic("jobs").await.unwrap();
    assert_eq!(
        client.get_subscription("worker").await.unwrap().topic,
        "_deleted-topic_"
    );
    client.delete_subscription("worker").await.unwrap();
    assert_eq!(
        rpc_code(client.get_subscription("worker").await),
        Code::NotFound
    );
    assert_eq!(
        rpc_code(client.delete_subscription("worker").await),
        Code::NotFound
    );
    let listed: Vec<String> = client
        .list_subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, ["projects/p/subscriptions/auditor"]);
}

#[tokio::test(start_paused = true)]
async fn subscription_errors_carry_the_right_codes() {
    let server = ClientServer::start().await;
    let client = &server.client;
    client.create_topic("t-errors").await.unwrap();
    let create = |config: SubscriptionConfig| client.create_subscription(config);

    assert_eq!(
        rpc_code(create(SubscriptionConfig::new("orphan", "no-such-topic")).await),
        Code::NotFound
    );
    create(SubscriptionConfig::new("dup", "t-errors"))
        .await
        .unwrap();
    assert_eq!(
        rpc_code(create(SubscriptionConfig::new("dup", "t-errors")).await),
        Code::AlreadyExists
    );
    let invalid = [
        SubscriptionConfig::new("goog-sub", "t-errors"),
        SubscriptionConfig::new("s1", "t-errors"),
        SubscriptionConfig::new("late", "t-errors").with_ack_deadline(Duration::from_secs(601)),
        SubscriptionConfig::new("short", "t-errors").with_retention(Duration::from_secs(1), false),
        SubscriptionConfig::new("long", "t-errors")
            .with_retention(Duration::from_secs(8 * 86_400), false),
        SubscriptionConfig::new("inverted", "t-errors")
            .with_retry_policy(Duration::from_secs(60), Duration::from_secs(10)),
        SubscriptionConfig::new("filtered", "t-errors").with_filter("attributes.kind = "),
        SubscriptionConfig::new("pusher", "t-errors").with_push_endpoint("ftp://example.com"),
    ];
    for config in invalid {
        let name = config.as_proto().name.clone();
        assert_eq!(
            rpc_code(create(config).await),
            Code::InvalidArgument,
            "{name}"
        );
    }
    assert_eq!(
        rpc_code(
            create(
                SubscriptionConfig::new("dead-letterer", "t-errors").with_dead_letter("no-dlq", 5)
            )
            .await
        ),
        Code::NotFound
    );
    assert_eq!(
        rpc_code(client.get_subscription("nope").await),
        Code::NotFound
    );
    assert_eq!(
        rpc_code(client.get_subscription("a b").await),
        Code::InvalidArgument
    );
    assert_eq!(
        rpc_code(client.delete_subscription("nope").await),
        Code::NotFound
    );
    assert_eq!(
        rpc_code(client.seek_to_time("nope", server_wall(&server)).await),
        Code::NotFound
    );
    // Nothing half-created by the failures.
    let names: Vec<String> = client
        .list_subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["projects/p/subscriptions/dup"]);
}

/// GetTopic, an idempotent call, is retried on UNAVAILABLE,
/// DEADLINE_EXCEEDED and ABORTED with the admin backoff (100 ms, x1.3,
/// jittered) until 60 s in total have passed; other codes fail at once.
#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_retried_with_backoff() {
    let server = ClientServer::start().await;
    server.client.create_topic("retried").await.unwrap();
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let attempts = |since: usize| -> Vec<Instant> {
        proxy.calls_of("GetTopic")[since..]
            .iter()
            .map(|c| c.at)
            .collect()
    };
    let backoff = |attempts: &[Instant]| {
        assert_backoff(
            attempts,
            Duration::from_millis(100),
            1.3,
            Duration::from_secs(60),
        )
    };

    // GetTopic's retryable codes in the service config.
    let transient = [Code::Unavailable, Code::Unknown, Code::Aborted];
    proxy.set_call_fault(move |method, n| {
        transient
            .get(n)
            .filter(|_| method == "GetTopic")
            .map(|code| Status::new(*code, "injected"))
    });
    let started = Instant::now();
    let topic = client.get_topic("retried").await.unwrap();
    assert_eq!(topic.name, "projects/p/topics/retried");
    let calls = proxy.calls_of("GetTopic");
    let injected: Vec<Option<Code>> = calls.iter().map(|c| c.injected).collect();
    assert_eq!(
        injected,
        [
            Some(Code::Unavailable),
            Some(Code::Unknown),
            Some(Code::Aborted),
            None
        ]
    );
    let times = attempts(0);
    assert_eq!(times[0], started, "the first attempt at once");
    backoff(&times);
    assert_eq!(Instant::now(), times[3], "answered by the last attempt");

    for code in [
        Code::Internal,
        Code::ResourceExhausted,
        Code::DeadlineExceeded,
        Code::PermissionDenied,
    ] {
        proxy.set_call_fault(move |method, _| {
            (method == "GetTopic").then(|| Status::new(code, "injected"))
        });
        let before = proxy.calls_of("GetTopic").len();
        let started = Instant::now();
        assert_eq!(rpc_code(client.get_topic("retried").await), code);
        assert_eq!(attempts(before).len(), 1, "{code:?} is not retried");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    // Unavailable for good: retried until the next delay would pass the
    // 60 s total.
    let total = Duration::from_secs(60);
    proxy.set_call_fault(|method, _| (method == "GetTopic").then(|| Status::unavailable("down")));
    let before = proxy.calls_of("GetTopic").len();
    assert_eq!(
        rpc_code(client.get_topic("retried").await),
        Code::Unavailable
    );
    let times = attempts(before);
    let next = backoff(&times);
    let (first, last) = (times[0], times[times.len() - 1]);
    assert_eq!(
        Instant::now(),
        last,
        "failed at once, without another sleep"
    );
    assert!(last - first <= total, "retried past the total timeout");
    assert!(
        last - first + next > total,
        "gave up although the next retry (at most {next:?}) fitted"
    );

    proxy.clear_call_fault();
    assert_eq!(client.get_topic("retried").await.unwrap(), topic);
}

/// Seeks to exact (virtual) publish times: what was published at or after
/// the time comes back, what was published before stays acked.
#[tokio::test(start_paused = true)]
async fn seek_to_time_redelivers_what_came_later() {
    let server = ClientServer::start().await;
    let client = &server.client;
    client.create_topic("replay").await.unwrap();
    let sub = client
        .create_subscription(
            SubscriptionConfig::new("replay-sub", "replay")
                .with_retention(Duration::from_secs(600), true),
        )
        .await
        .unwrap()
        .name;
    let publish = |data: &'static str| {
        let mut stub = server.publisher();
        async move {
            stub.publish(PublishRequest {
                topic: "projects/p/topics/replay".into(),
                messages: vec![PubsubMessage {
                    data: data.as_bytes().to_vec(),
                    ..Default::default()
                }],
            })
            .await
            .unwrap();
        }
    };
    let data = |messages: Vec<PubsubMessage>| {
        let mut data: Vec<String> = messages
            .into_iter()
            .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
            .collect();
        data.sort();
        data
    };
    let publish_time = |message: &PubsubMessage| {
        let time = message.publish_time.as_ref().unwrap();
        UNIX_EPOCH
            + Duration::new(
                u64::try_from(time.seconds).unwrap(),
                u32::try_from(time.nanos).unwrap(),
            )
    };

    let start = server_wall(&server);
    publish("early").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let middle = server_wall(&server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = server_wall(&server);
    publish("late-1").await;
    publish("late-2").await;
    let received = server
        .pull_acking_all(&sub, 3, Duration::from_secs(5))
        .await;
    let times: Vec<(String, SystemTime)> = received
        .iter()
        .map(|m| (data(vec![m.clone()]).remove(0), publish_time(m)))
        .collect();
    assert_eq!(
        times,
        [
            ("early".to_string(), start),
            ("late-1".to_string(), late),
            ("late-2".to_string(), late)
        ]
    );
    assert!(server.pull_acking_now(&sub).await.is_empty(), "all acked");

    client.seek_to_time("replay-sub", middle).await.unwrap();
    assert_eq!(
        data(
            server
                .pull_acking_all(&sub, 2, Duration::from_secs(5))
                .await
        ),
        ["late-1", "late-2"]
    );
    client.seek_to_time(&sub, start).await.unwrap();
    assert_eq!(
        data(
            server
                .pull_acking_all(&sub, 3, Duration::from_secs(5))
                .await
        ),
        ["early", "late-1", "late-2"]
    );
    // The time goes to the server to the nanosecond: the exact publish time
    // of the late messages brings them back, a nanosecond later does not.
    client.seek_to_time(&sub, late).await.unwrap();
    assert_eq!(
        data(
            server
                .pull_acking_all(&sub, 2, Duration::from_secs(5))
                .await
        ),
        ["late-1", "late-2"]
    );
    client
        .seek_to_time(&sub, late + Duration::from_nanos(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.pull_acking_now(&sub).await.is_empty());
    // Seeking past everything marks it all acked again.
    client.seek_to_time(&sub, start).await.unwrap();
    client
        .seek_to_time(&sub, server_wall(&server) + Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server.pull_acking_now(&sub).await.is_empty(),
        "nothing after the seek"
    );
}
