//! `baton trace show` against a running server: the fixture trace goes in
//! over OTLP/HTTP (JSON), the command fetches it from the query API and
//! draws the waterfall.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use baton_server::ServerConfig;
use baton_testkit::otlp::post_traces;
use baton_testkit::process::baton_command;
use baton_testkit::server::{TestServer, loopback};

const OTLP: &str = include_str!("fixtures/trace_otlp.json");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Runs the `baton` binary with `args` (110 columns wide); returns
/// (success, stdout, stderr).
fn baton(args: &[&str]) -> (bool, String, String) {
    let out = baton_command(Path::new(env!("CARGO_BIN_EXE_baton")))
        .args(args)
        .env("COLUMNS", "110")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_show_draws_a_stored_trace() {
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_http(loopback())
            .with_broker_spans(false),
    )
    .await;
    let otlp = server.server().otlp_http_addr().unwrap();
    let response = post_traces(otlp, "application/json", OTLP).await;
    assert!(response.status().is_success());
    let base = server.url("");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || baton(&["trace", "show", "--server", &base, TRACE_ID])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("Trace {TRACE_ID}  service-a: POST /orders")),
        "{out}"
    );
    assert!(out.contains("10 spans · 3 linked · 2 errors"), "{out}");
    for needle in [
        "   ├─ ↪ linked orders publish",
        "   │  ├─ ↪ linked orders-sub nack",
        "      ├─ ↪ linked orders-sub ack",
        "✗ orders-sub subscribe",
        "queued 30.9 ms",
        "in queue 30.1 ms",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // COLUMNS sets the width.
    let widest = out.lines().map(|l| l.chars().count()).max().unwrap();
    assert!((105..=110).contains(&widest), "{widest}\n{out}");

    // --last is the most recent trace; an unknown id is a clear error.
    let (ok, out, err) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || baton(&["trace", "show", "--last", "--server", &base])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.starts_with("Trace "), "{out}");
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        baton(&[
            "trace",
            "show",
            "--server",
            &base,
            "0123456789abcdef0123456789abcdef",
        ])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    server.shutdown().await;
}
