//! The Pub/Sub console in a real browser, on real data: headless Chromium
//! loads the console's pages from a running server, and the tests read what
//! it rendered, or drive it over the DevTools protocol
//! (`baton_testkit::devtools`) where a person would click: the publish form
//! and the Peek button.
//!
//! - a message Google's Python client nacked once then acked shows both
//!   attempts on its message page;
//! - the subscription page's backlog matches what the Pub/Sub API hands
//!   out after publishes and acks, and Peek changes nothing;
//! - a message published from the topic page reaches a Python subscriber;
//! - with 10,000 subscriptions the list page answers one page at a time.
//!
//! Chromium is required (`scripts/test` installs it); the tests fail when it
//! is missing. `BATON_UPDATE_SCREENSHOT=1` rewrites
//! `docs/screenshot-topics.png`, `docs/screenshot-topic.png`,
//! `docs/screenshot-subscriptions.png`, `docs/screenshot-subscription.png`
//! and `docs/screenshot-message.png` from these runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use baton_broker::PullWait;
use baton_proto::pubsub::{PubsubMessage, Subscription, Topic};
use baton_testkit::chromium::run_chromium;
use baton_testkit::devtools::Browser;
use baton_testkit::python::{PROJECT, python, run_script, unique_prefix};
use baton_testkit::server::TestServer;
use serde_json::Value;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

fn repo_path(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The DOM Chromium rendered for `url`.
async fn dump(url: String) -> String {
    tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom".to_string()]))
        .await
        .unwrap()
}

/// Where a screenshot goes: `docs/<name>` when updating them, else a
/// temporary file.
fn screenshot_path(name: &str) -> PathBuf {
    if std::env::var_os("BATON_UPDATE_SCREENSHOT").is_some() {
        repo_path("docs").join(name)
    } else {
        std::env::temp_dir().join(format!("baton-console-{}-{name}", std::process::id()))
    }
}

/// Opens `url` in Chromium driven over the DevTools protocol, runs `script`
/// (the body of an async function) in the page, saves a screenshot as
/// `shot` and answers the script's JSON result.
async fn drive(url: String, script: &'static str, shot: Option<&str>) -> Value {
    let browser = Browser::launch(&url);
    let mut page = browser.page().await;
    // The console's page itself, loaded (not the blank page before it).
    page.wait_for(
        "location.protocol.startsWith('http') && document.readyState === 'complete'",
        Duration::from_secs(30),
        "location.href + ' ' + document.readyState",
    )
    .await;
    let result = page.eval(&format!("(async () => {{ {script} }})()")).await;
    if let Some(shot) = shot {
        let png = page.screenshot().await;
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "a real screenshot"
        );
        std::fs::write(screenshot_path(shot), png).unwrap();
    }
    result
}

/// The text of the element with `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let after = dom
        .split(&marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let inner = after.split_once('>').unwrap().1;
    inner.split('<').next().unwrap().to_string()
}

fn topic(server: &TestServer, name: &str) {
    server
        .server()
        .broker()
        .create_topic(Topic {
            name: name.into(),
            ..Default::default()
        })
        .unwrap();
}

fn subscription(server: &TestServer, name: &str, topic: &str) {
    server
        .server()
        .broker()
        .create_subscription(Subscription {
            name: name.into(),
            topic: topic.into(),
            ack_deadline_seconds: 30,
            ..Default::default()
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_page_of_a_nacked_then_acked_message_shows_both_attempts() {
    let server = TestServer::start().await;
    let prefix = unique_prefix("console-nack");
    let run = run_script(
        &python(TMP),
        "nack_redelivery.py",
        &server.host(),
        &prefix,
        Duration::from_secs(120),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(run.result["complete"], true, "{}", run.stderr);
    let plain = run.result["_raw"]["plain"].as_object().unwrap();
    let id = plain.keys().min().unwrap().clone();
    let url = server.url(&format!("/ui/messages/{PROJECT}/{prefix}-topic/{id}"));
    let dom = dump(url.clone()).await;
    let line = format!("{prefix}-plain: delivered 2 times: attempt 1 nacked by stream ");
    assert!(dom.contains(&line), "no explanation {line:?} in {dom}");
    assert!(dom.contains("attempt 2 acked by stream "), "{dom}");
    // The timeline: both attempts on the plain subscription, the nack
    // between them, the ack after.
    let plain_name = format!("projects/{PROJECT}/subscriptions/{prefix}-plain");
    let kinds: Vec<&str> = dom
        .split("<li class=\"msg-event ")
        .skip(1)
        .filter(|item| item.contains(&format!("title=\"{plain_name}\"")))
        .map(|item| item.split('"').next().unwrap())
        // The client's lease management extends each lease (modacks).
        .filter(|kind| *kind != "modack")
        .collect();
    assert_eq!(kinds, ["delivered", "nack", "delivered", "ack"], "{dom}");
    drive(
        url,
        "while (document.getElementById('content').hidden) await new Promise(r => setTimeout(r, 50)); return true;",
        Some("screenshot-message.png"),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_backlog_matches_the_api_and_peek_changes_nothing() {
    let server = TestServer::start().await;
    let topic_name = "projects/console-web/topics/orders";
    let sub = "projects/console-web/subscriptions/orders-worker";
    topic(&server, topic_name);
    subscription(&server, sub, topic_name);
    let broker = server.server().broker().clone();
    for i in 0..5 {
        let mut message = PubsubMessage {
            data: format!("order {i}").into_bytes(),
            ..Default::default()
        };
        message.attributes.insert("kind".into(), "order".into());
        broker.publish(topic_name, vec![message]).unwrap();
    }
    let pulled = broker.pull(sub, 2, PullWait::Immediate).await.unwrap();
    let acks: Vec<String> = pulled.iter().map(|m| m.ack_id.clone()).collect();
    broker.acknowledge(sub, &acks).unwrap();

    let url = server.url("/ui/subscriptions/console-web/orders-worker");
    let dom = dump(url.clone()).await;
    assert_eq!(text_of(&dom, "backlog"), "3");
    assert_eq!(text_of(&dom, "acked"), "2");
    assert_eq!(text_of(&dom, "leases"), "0");

    // Click Peek: three messages shown, nothing leased or counted.
    let peeked = drive(
        url.clone(),
        r#"
        const wait = async (f) => { for (let i = 0; i < 200; i++) { const v = f(); if (v) return v; await new Promise(r => setTimeout(r, 50)); } throw new Error('timed out'); };
        await wait(() => !document.getElementById('content').hidden);
        document.getElementById('peek').click();
        await wait(() => !document.getElementById('peeked').hidden);
        return [...document.querySelectorAll('#peek-rows tr')].map(tr => tr.querySelector('td.data').textContent);
        "#,
        Some("screenshot-subscription.png"),
    )
    .await;
    assert_eq!(peeked, serde_json::json!(["order 2", "order 3", "order 4"]));
    let dom = dump(url).await;
    assert_eq!(text_of(&dom, "backlog"), "3", "peek left the backlog alone");
    assert_eq!(text_of(&dom, "delivery-attempts"), "2");

    // The Pub/Sub API hands out exactly the backlog the page showed, each
    // message on its first attempt.
    let rest = broker.pull(sub, 10, PullWait::Immediate).await.unwrap();
    let datas: Vec<String> = rest
        .iter()
        .map(|m| String::from_utf8(m.message.as_ref().unwrap().data.to_vec()).unwrap())
        .collect();
    assert_eq!(datas, ["order 2", "order 3", "order 4"]);
    assert_eq!(
        broker
            .subscription_stats(sub)
            .unwrap()
            .counters
            .delivery_attempts,
        5
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_from_the_topic_page_reaches_a_python_subscriber() {
    let server = TestServer::start().await;
    let prefix = unique_prefix("console-publish");
    let topic_name = format!("projects/{PROJECT}/topics/{prefix}-topic");
    let sub = format!("projects/{PROJECT}/subscriptions/{prefix}-sub");
    topic(&server, &topic_name);
    subscription(&server, &sub, &topic_name);
    let receiver = tokio::spawn({
        let host = server.host();
        let prefix = prefix.clone();
        async move {
            run_script(
                &python(TMP),
                "console_receive.py",
                &host,
                &prefix,
                Duration::from_secs(90),
                &[],
            )
            .await
        }
    });
    let broker = server.server().broker().clone();
    for _ in 0..600 {
        if broker.open_streams(&sub).unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        broker.open_streams(&sub).unwrap() > 0,
        "the Python subscriber never connected"
    );

    let published = drive(
        server.url(&format!("/ui/topics/{PROJECT}/{prefix}-topic")),
        r#"
        const wait = async (f) => { for (let i = 0; i < 200; i++) { const v = f(); if (v) return v; await new Promise(r => setTimeout(r, 50)); } throw new Error('timed out'); };
        await wait(() => !document.getElementById('content').hidden);
        document.getElementById('publish-data').value = 'hello from the console';
        document.getElementById('add-attribute').click();
        document.querySelector('#attributes .attr-key').value = 'origin';
        document.querySelector('#attributes .attr-value').value = 'console';
        document.getElementById('publish-ordering-key').value = 'key-1';
        document.getElementById('publish-submit').click();
        const link = await wait(() => document.getElementById('published-id'));
        return link.textContent;
        "#,
        Some("screenshot-topic.png"),
    )
    .await;
    let id = published.as_str().unwrap().to_string();
    let run = receiver.await.unwrap().unwrap();
    assert_eq!(run.result["complete"], true, "{}", run.stderr);
    let received = &run.result["received"][0];
    assert_eq!(received["data"], "hello from the console");
    assert_eq!(received["attributes"]["origin"], "console");
    assert_eq!(received["ordering_key"], "key-1");
    assert_eq!(received["message_id"], id.as_str());

    // The topics list counts it.
    let topics = dump(server.url(&format!("/ui/topics?project={PROJECT}"))).await;
    assert!(
        topics.contains(&format!("title=\"{topic_name}\"")),
        "{topics}"
    );
    drive(
        server.url("/ui/topics"),
        "while (document.getElementById('content').hidden) await new Promise(r => setTimeout(r, 50)); return true;",
        Some("screenshot-topics.png"),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscriptions_are_listed_page_by_page() {
    let server = TestServer::start().await;
    let topic_name = "projects/console-many/topics/fan";
    topic(&server, topic_name);
    for i in 0..10_000 {
        subscription(
            &server,
            &format!("projects/console-many/subscriptions/s{i:05}"),
            topic_name,
        );
    }
    let dom = dump(server.url("/ui/subscriptions?project=console-many")).await;
    let rows = dom.matches("class=\"subscription-row\"").count();
    assert_eq!(rows, 50, "one page of 50");
    let next = dom
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .expect("a next page link")
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(next.contains("page_token="), "{next}");
    let second = dump(server.url(&format!("/ui/subscriptions{next}"))).await;
    assert_eq!(second.matches("class=\"subscription-row\"").count(), 50);
    let first_row = second
        .split("class=\"subscription-row\" data-name=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(first_row, "projects/console-many/subscriptions/s00050");
    drive(
        server.url("/ui/subscriptions?project=console-many"),
        "while (document.getElementById('content').hidden) await new Promise(r => setTimeout(r, 50)); return true;",
        Some("screenshot-subscriptions.png"),
    )
    .await;
    let topic_page = dump(server.url("/ui/topics/console-many/fan")).await;
    assert_eq!(text_of(&topic_page, "subscription-count"), "10,000");
    server.shutdown().await;
}
