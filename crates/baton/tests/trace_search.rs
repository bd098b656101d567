//! `baton trace search` and `baton trace show <message-id>` against a
//! running server: the fixture traces go in over OTLP/HTTP (JSON), the
//! commands search them through the query API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use baton_server::ServerConfig;
use baton_testkit::otlp::post_traces;
use baton_testkit::process::baton_command;
use baton_testkit::server::{TestServer, loopback};

const OTLP: &str = include_str!("fixtures/trace_otlp.json");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Runs the `baton` binary with `args`; returns (success, stdout, stderr).
fn baton(args: Vec<String>) -> (bool, String, String) {
    let out = baton_command(Path::new(env!("CARGO_BIN_EXE_baton")))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run(base: &str, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--server".to_string(), base.to_string()]);
    tokio::task::spawn_blocking(move || baton(all))
        .await
        .unwrap()
}

/// The trace ids of a printed table (its rows start with one).
fn ids(out: &str) -> Vec<&str> {
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_search_prints_the_matching_traces() {
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

    // The default view: the message flow only, not its publish/ack/nack RPC
    // traces.
    let (ok, out, err) = run(&base, &["trace", "search"]).await;
    assert!(ok, "{err}");
    assert_eq!(ids(&out), [TRACE_ID], "{out}");
    assert!(out.starts_with("TRACE "), "{out}");
    let row = out.lines().nth(1).unwrap();
    for needle in [
        "message",
        "service-a: POST /orders",
        "error",
        "msg 1",
        "orders -> orders-sub",
    ] {
        assert!(row.contains(needle), "missing {needle:?} in {row}");
    }
    assert!(
        out.contains("1 of 1 matching trace, most recently updated first (batch RPC traces left out: --all shows them)"),
        "{out}"
    );
    // --all brings the RPC traces (publish, nack, ack); flags and
    // name=value words mix.
    let (ok, out, err) = run(&base, &["trace", "search", "--all"]).await;
    assert!(ok, "{err}");
    assert_eq!(ids(&out).len(), 4, "{out}");
    let (ok, out, err) = run(
        &base,
        &["trace", "search", "--all", "subscription=orders-sub"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(ids(&out), [TRACE_ID], "{out}");
    let (ok, out, _) = run(
        &base,
        &[
            "trace",
            "search",
            "--kind",
            "rpc",
            "--topic",
            "projects/p/topics/orders",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(ids(&out), ["9a1b2c3d4e5f60718293a4b5c6d7e8f9"], "{out}");
    // By message id, attribute, errors, duration; paging.
    let (ok, out, _) = run(
        &base,
        &[
            "trace",
            "search",
            "--message",
            "1",
            "--errors",
            "--min-duration",
            "50ms",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(ids(&out), [TRACE_ID], "{out}");
    let (ok, out, _) = run(
        &base,
        &[
            "trace",
            "search",
            "--attr",
            "db.system=postgresql",
            "--service",
            "service-b",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(ids(&out), [TRACE_ID], "{out}");
    let (ok, out, _) = run(&base, &["trace", "search", "message=2"]).await;
    assert!(ok);
    assert_eq!(out, "No traces match.\n");
    let (ok, out, _) = run(&base, &["trace", "search", "--all", "--limit", "1"]).await;
    assert!(ok);
    assert_eq!(ids(&out).len(), 1, "{out}");
    let cursor = out
        .lines()
        .find_map(|l| l.strip_prefix("more: add --cursor "))
        .unwrap_or_else(|| panic!("no cursor in {out}"))
        .to_string();
    let (ok, next, _) = run(
        &base,
        &[
            "trace", "search", "--all", "--limit", "1", "--cursor", &cursor,
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(ids(&next).len(), 1, "{next}");
    assert_ne!(ids(&next), ids(&out));
    // --json is the API's answer.
    let (ok, out, _) = run(&base, &["trace", "search", "--json", "ordering_key=none"]).await;
    assert!(ok);
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["total"], 0);
    // A bad filter is refused before anything is sent, with the reason.
    let (ok, _, err) = run(&base, &["trace", "search", "--min-duration", "soon"]).await;
    assert!(!ok);
    assert!(err.contains("invalid min_duration"), "{err}");
    let (ok, _, err) = run(&base, &["trace", "search", "colour=red"]).await;
    assert!(!ok);
    assert!(err.contains("unknown search parameter"), "{err}");

    // `trace show` takes a message id too (positional or --message).
    for args in [
        &["trace", "show", "1"][..],
        &["trace", "show", "--message", "1"],
    ] {
        let (ok, out, err) = run(&base, args).await;
        assert!(ok, "{err}");
        assert!(
            out.starts_with(&format!("Trace {TRACE_ID}  service-a: POST /orders")),
            "{out}"
        );
    }
    let (ok, _, err) = run(&base, &["trace", "show", "no-such-message"]).await;
    assert!(!ok);
    assert!(
        err.contains("no stored trace holds message \"no-such-message\""),
        "{err}"
    );
    server.shutdown().await;
}
