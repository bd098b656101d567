//! The web view of a real demo trace in a real browser: the demo pieces run
//! in this process (server with OTLP receiver and trace store, Service A,
//! Service B, as `baton demo` starts them), three orders are posted (the
//! third fails once in Service B: nack, redelivery), and headless Chromium
//! loads `/ui/trace/{id}` of the failed order's trace. The test reads the
//! DOM as a person would see it: the spans in order, the queue gap, linked
//! spans, the error.
//!
//! With `BATON_UPDATE_SCREENSHOT=1` it writes the README's
//! `docs/screenshot-trace.png` (1366x900) from this trace.
//!
//! Chromium is required (Debian package `chromium`); the test fails when it
//! is missing. Set `CHROMIUM` to use another binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_demo::{Demo, DemoConfig};
use baton_server::ServerConfig;
use baton_testkit::chromium::{self, rows, run_chromium};
use baton_testkit::server::{TestServer, loopback};
use baton_testkit::trace_api::named_in;
use serde_json::Value;

/// Every third order fails once, as in `baton demo`.
const FAIL_EVERY: u64 = 3;

/// Complete: both attempts processed and the ack and nack linked in.
fn is_complete(detail: &Value) -> bool {
    named_in(detail, "spans", "POST /orders").len() == 1
        && named_in(detail, "spans", "orders receive").len() == 1
        && named_in(detail, "spans", "orders-worker deliver").len() == 2
        && named_in(detail, "spans", "orders-worker process").len() == 2
        && named_in(detail, "spans", "reserve inventory").len() == 2
        && !named_in(detail, "linkedSpans", "orders-worker ack").is_empty()
        && !named_in(detail, "linkedSpans", "orders-worker nack").is_empty()
}

/// The label (span name) of a rendered row.
fn label(row: &str) -> &str {
    row.split("<span class=\"label\" title=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

/// The row's own classes (each chunk starts inside the row's class value).
fn classes(row: &str) -> &str {
    row.split('"').next().unwrap_or_default()
}

fn attr<'a>(row: &'a str, name: &str) -> &'a str {
    row.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

/// Asserts what a person sees in the waterfall of the failed order's trace.
fn assert_waterfall(dom: &str, trace_id: &str) {
    let rows = rows(dom);
    let shown: Vec<(&str, &str)> = rows.iter().map(|(_, r)| (label(r), r.as_str())).collect();
    let names: Vec<&str> = shown.iter().map(|(n, _)| *n).collect();

    // The story, in order (helper spans such as "publisher batching" and
    // linked spans may sit in between): request, publish, the broker, the
    // failed attempt, the redelivery, the successful attempt.
    let story = [
        ("POST /orders", 0),
        ("orders create", 1),
        ("orders receive", 2),
        ("orders-worker deliver", 2),
        ("orders-worker subscribe", 2),
        ("orders-worker process", 3),
        ("reserve inventory", 4),
        ("orders-worker deliver", 2),
        ("orders-worker subscribe", 2),
        ("orders-worker process", 3),
        ("reserve inventory", 4),
    ];
    let own: Vec<(&str, &str)> = shown
        .iter()
        .filter(|(name, row)| !row.contains("data-linked") && story.iter().any(|(n, _)| n == name))
        .copied()
        .collect();
    let own_names: Vec<&str> = own.iter().map(|(n, _)| *n).collect();
    let story_names: Vec<&str> = story.iter().map(|(n, _)| *n).collect();
    assert_eq!(own_names, story_names, "rows were {names:?}; DOM:\n{dom}");
    for ((name, row), (_, depth)) in own.iter().zip(story) {
        assert_eq!(
            attr(row, "data-depth"),
            depth.to_string(),
            "depth of {name}"
        );
        assert_eq!(attr(row, "data-trace-id"), trace_id, "trace of {name}");
    }
    let service = |row: &str| {
        row.split("<div class=\"cell service\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(service(own[0].1), "service-a");
    assert_eq!(service(own[2].1), "baton");
    assert_eq!(service(own[4].1), "service-b");

    // The queue: the broker's delivery spans show the time in the queue,
    // and the second attempt the gap before it (hatched, labelled).
    assert!(
        classes(own[3].1).contains("queue-span") && own[3].1.contains("in queue "),
        "first delivery: {}",
        own[3].1
    );
    assert!(
        own[7].1.contains("in queue "),
        "second delivery: {}",
        own[7].1
    );
    // The label says "waiting for redelivery" when the failed attempt's
    // span ended before the second began, else "waiting in queue" (measured
    // from the publish): the nack may race the redelivery.
    let second = own[8].1;
    assert!(
        second.contains("class=\"gap\" title=\"waiting in queue ")
            && (second.contains("<span class=\"gap-label\"")
                && (second.contains(">waiting for redelivery ")
                    || second.contains(">waiting in queue "))),
        "no queue gap before the second attempt: {second}"
    );
    assert!(dom.contains("<span>waiting in queue</span>"), "legend");

    // Linked spans (their own traces), marked and placed under the attempt
    // they belong to: the nack under the first, the ack under the second.
    let position = |name: &str| {
        shown
            .iter()
            .position(|(n, row)| *n == name && row.contains("data-linked=\"true\""))
            .unwrap_or_else(|| panic!("no linked {name} row in {names:?}"))
    };
    let index_of = |row: &str| shown.iter().position(|(_, r)| *r == row).unwrap();
    let (nack, ack) = (
        position("orders-worker nack"),
        position("orders-worker ack"),
    );
    for at in [nack, ack] {
        let row = shown[at].1;
        assert!(classes(row).contains("linked"), "{row}");
        assert!(row.contains("↪ linked"), "{row}");
        assert_ne!(attr(row, "data-trace-id"), trace_id, "{row}");
        assert_eq!(attr(row, "data-depth"), "3", "{row}");
    }
    assert!(index_of(own[4].1) < nack && nack < index_of(own[7].1));
    assert!(index_of(own[8].1) < ack);

    // The failed attempt stands out; the successful one does not.
    assert!(classes(own[6].1).contains("error"), "{}", own[6].1);
    assert!(own[6].1.contains("⚠"));
    assert!(!classes(own[10].1).contains("error"), "{}", own[10].1);
    assert!(own[4].1.contains("title=\"nack start\""));
    assert!(dom.contains("<span class=\"k\">errors</span><span class=\"badge err\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_of_a_demo_trace_in_headless_chromium() {
    // Fail now, not after the demo ran, when there is no browser.
    chromium::chromium();

    let server =
        TestServer::start_with(ServerConfig::new(loopback()).with_otlp_grpc(loopback())).await;
    let pubsub = server.host();
    let otlp = server.otlp_grpc_endpoint();
    let demo = Demo::start(DemoConfig::new(pubsub.clone(), Some(otlp)).with_fail_every(FAIL_EVERY))
        .await
        .unwrap();
    let mut failed_trace = None;
    for id in 1..=3u64 {
        let accepted = demo.send_order(id).await.unwrap();
        if demo.fails_once(id) {
            failed_trace = Some(accepted.trace_id);
        }
    }
    let trace_id = failed_trace.unwrap();

    // Wait until the failed order's trace is complete in the store.
    let deadline = Instant::now() + Duration::from_secs(20);
    let detail = loop {
        demo.flush().await.unwrap();
        server.server().flush_traces().await;
        let detail = server
            .server()
            .trace_store()
            .trace(&trace_id)
            .map(|d| serde_json::to_value(d).unwrap());
        if let Some(detail) = detail.as_ref().filter(|d| is_complete(d)) {
            break detail.clone();
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} incomplete: {:#}",
            detail.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let url = format!("http://{pubsub}/ui/trace/{trace_id}");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_chromium(&url, &["--dump-dom".to_string()])
    })
    .await
    .unwrap();
    assert_waterfall(&dom, &trace_id);

    // The screenshot, with the failed inventory call selected (its details
    // under the waterfall); kept for the README on request.
    let failed = named_in(&detail, "spans", "reserve inventory")
        .into_iter()
        .find(|s| s["status"]["code"] == "ERROR")
        .expect("a failed inventory call")["spanId"]
        .as_str()
        .unwrap()
        .to_string();
    let update = std::env::var("BATON_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1");
    let shot: PathBuf = if update {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshot-trace.png")
    } else {
        std::env::temp_dir().join(format!("baton-demo-screenshot-{}.png", std::process::id()))
    };
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1366,900".to_string(),
    ];
    let selected = format!("{url}#span={failed}");
    tokio::task::spawn_blocking(move || run_chromium(&selected, &args))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {}", shot.display());
    assert!(png.len() > 10_000, "screenshot suspiciously small");
    if !update {
        let _ = std::fs::remove_file(&shot);
    }

    demo.shutdown().await.unwrap();
    server.shutdown().await;
}
