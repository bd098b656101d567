//! The trace web view in a real browser: headless Chromium loads
//! `/ui/trace/{id}` from a running server, and the test reads the DOM it
//! rendered, as a person would see it (row order, queue gap, linked spans,
//! errors, escaped data), and checks that a screenshot can be taken. The
//! README's `docs/screenshot-trace.png` comes from a real demo trace:
//! `tests/tests/demo_web_ui.rs` with `BATON_UPDATE_SCREENSHOT=1`.
//!
//! Chromium is required (Debian package `chromium`; `scripts/test` installs
//! it); the test fails when it is missing. Set `CHROMIUM` to use another
//! binary. That the server serves the view's pages at all is checked in the
//! fast tier (`crates/baton-server/tests/web_view.rs`).
//!
//! The trace is the fixture `crates/baton/tests/fixtures/trace_detail.json`
//! (the query API's JSON): once served as-is next to the UI routes (the view
//! alone), once sent over OTLP/HTTP to a real server (receiver, store, linked
//! spans, query API and view together).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use baton_server::ServerConfig;
use baton_testkit::chromium::{rows, run_chromium};
use baton_testkit::otlp::post_traces;
use baton_testkit::server::{TestServer, loopback};

const DETAIL: &str = include_str!("../../crates/baton/tests/fixtures/trace_detail.json");
const LIST: &str = include_str!("../../crates/baton/tests/fixtures/trace_list.json");
/// The same spans as an OTLP/JSON export request.
const OTLP: &str = include_str!("../../crates/baton/tests/fixtures/trace_otlp.json");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Serves the web view plus a query API answering from the fixture.
async fn serve_fixture() -> SocketAddr {
    let detail: serde_json::Value = serde_json::from_str(DETAIL).unwrap();
    let list: serde_json::Value = serde_json::from_str(LIST).unwrap();
    let by_id = detail.clone();
    let app: axum::Router = baton_trace_store::web_view()
        .route("/api/traces", get(move || async move { Json(list) }))
        .route("/api/traces/last", get(move || async move { Json(detail) }))
        .route(
            "/api/traces/{id}",
            get(move |UrlPath(id): UrlPath<String>| async move {
                if id == TRACE_ID {
                    Json(by_id).into_response()
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        Json(serde_json::json!({"error": "unknown trace"})),
                    )
                        .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Asserts what a person sees in the rendered waterfall of the fixture trace.
fn assert_waterfall(dom: &str) {
    let rows = rows(dom);
    let order: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        order,
        [
            "a000000000000001", // POST /orders (service-a)
            "a000000000000002", //   orders create
            "d000000000000001", //     ↪ linked: orders publish
            "b000000000000001", //     orders receive (baton)
            "b000000000000002", //     orders-sub deliver (baton)
            "c000000000000001", //     orders-sub subscribe (service-b, error)
            "e000000000000001", //       ↪ linked: orders-sub nack
            "c000000000000003", //       charge payment (error)
            "b000000000000003", //     orders-sub redeliver (baton)
            "c000000000000002", //     orders-sub subscribe (attempt 2)
            "e000000000000002", //       ↪ linked: orders-sub ack
            "c000000000000004", //       charge payment
            "c000000000000005", //       INSERT orders
        ],
        "waterfall rows in tree order; DOM was:\n{dom}"
    );
    let row = |id: &str| &rows.iter().find(|(r, _)| r == id).unwrap().1;

    // Names and services are visible.
    assert!(row("a000000000000001").contains("POST /orders"));
    assert!(row("b000000000000001").contains(">baton<"));
    assert!(row("c000000000000002").contains(">service-b<"));
    // Linked spans are marked as such, one level under their target.
    for id in ["d000000000000001", "e000000000000001", "e000000000000002"] {
        assert!(row(id).contains("data-linked=\"true\""), "{id} not linked");
        assert!(row(id).contains("↪ linked"), "{id} has no linked marker");
    }
    assert!(row("d000000000000001").contains("data-depth=\"2\""));
    assert!(!row("c000000000000002").contains("data-linked"));
    // The queue time is drawn, with its duration.
    assert!(
        row("c000000000000001").contains("waiting in queue 30.9 ms"),
        "queue gap label missing: {}",
        row("c000000000000001")
    );
    assert!(row("c000000000000001").contains("class=\"gap\""));
    assert!(row("c000000000000002").contains("waiting for redelivery 14.4 ms"));
    assert!(row("b000000000000002").contains("in queue 30.1 ms"));
    // Errors stand out (each chunk starts with the rest of the row's class).
    let classes = |id: &str| row(id).split('"').next().unwrap_or_default().to_string();
    assert!(classes("c000000000000001").contains("error"));
    assert!(classes("c000000000000003").contains("error"));
    assert!(!classes("c000000000000002").contains("error"));
    // Legend with the three services.
    for svc in ["service-a", "baton", "service-b", "waiting in queue"] {
        assert!(
            dom.contains(&format!("<span>{svc}</span>")),
            "legend lacks {svc}"
        );
    }
    // The span picked by the URL shows its details; data is escaped, not markup.
    assert!(classes("c000000000000001").contains("selected"));
    assert!(dom.contains("payment service unavailable"));
    assert!(dom.contains("card declined &lt;b&gt;bold&lt;/b&gt;"));
    assert!(!dom.contains("<b>bold</b>"));
    assert!(dom.contains("messaging.gcp_pubsub.message.delivery_attempt"));
    assert!(dom.contains("linked from"));
    // Where the selected span comes from: its resource and its scope.
    let section = |name: &str| {
        let start = dom
            .find(&format!("data-section=\"{name}\""))
            .unwrap_or_else(|| panic!("no {name} section; DOM was:\n{dom}"));
        let end = dom[start..]
            .find("</table>")
            .map_or(dom.len(), |e| start + e);
        &dom[start..end]
    };
    assert!(dom.contains("<h3>resource</h3>"));
    assert!(dom.contains("<h3>scope</h3>"));
    let resource = section("resource");
    assert!(resource.contains(">host.name<"), "{resource}");
    assert!(resource.contains(">worker-7<"), "{resource}");
    assert!(resource.contains(">service.name<") && resource.contains(">service-b<"));
    let scope = section("scope");
    assert!(
        scope.contains(">fixture<") && scope.contains(">0.4.2<"),
        "{scope}"
    );
    let scope_attributes = section("scope-attributes");
    assert!(
        scope_attributes.contains(">scope.flavor<") && scope_attributes.contains(">consumer<"),
        "{scope_attributes}"
    );
}

/// Loads `/ui/trace/{TRACE_ID}` from `addr` in Chromium, checks the DOM and
/// takes a screenshot.
async fn check_trace_page(addr: SocketAddr) {
    let url = format!("http://{addr}/ui/trace/{TRACE_ID}#span=c000000000000001");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_chromium(&url, &["--dump-dom".to_string()])
    })
    .await
    .unwrap();
    assert_waterfall(&dom);

    // A screenshot a person could look at.
    let shot: PathBuf = std::env::temp_dir().join(format!(
        "baton-screenshot-{}-{}.png",
        std::process::id(),
        addr.port()
    ));
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1366,900".to_string(),
    ];
    tokio::task::spawn_blocking(move || run_chromium(&url, &args))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {}", shot.display());
    assert!(png.len() > 10_000, "screenshot suspiciously small");
    let _ = std::fs::remove_file(&shot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waterfall_renders_in_headless_chromium() {
    let addr = serve_fixture().await;
    check_trace_page(addr).await;
}

/// The whole path: spans sent over OTLP/HTTP (JSON) to `baton serve`'s
/// receiver, stored, stitched (linked spans) by the store, served by the
/// query API and drawn by the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waterfall_of_spans_received_over_otlp() {
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_http(loopback())
            .with_broker_spans(false),
    )
    .await;
    let otlp = server.server().otlp_http_addr().unwrap();
    let response = post_traces(otlp, "application/json", OTLP).await;
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    check_trace_page(server.addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_list_renders_in_headless_chromium() {
    let addr = serve_fixture().await;
    let url = format!("http://{addr}/ui/");
    let dom = tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom".to_string()]))
        .await
        .unwrap();
    assert!(
        dom.contains(&format!("data-trace-id=\"{TRACE_ID}\"")),
        "{dom}"
    );
    assert!(dom.contains("POST /orders"));
    assert!(dom.contains(">service-a<"));
    assert!(dom.contains("102.0 ms"));
    assert!(dom.contains("badge err"));
    assert!(dom.contains("1 trace, newest first"));
}

/// The trace list shows where spans are forwarded, the upstream's state and
/// the counters (`GET /api/forwarding`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_list_shows_forwarding_status() {
    use baton_server::baton_trace_store::forward::{ForwardConfig, Protocol};
    let upstream =
        TestServer::start_with(ServerConfig::new(loopback()).with_otlp_http(loopback())).await;
    let upstream_otlp = upstream.server().otlp_http_addr().unwrap();
    let forward =
        ForwardConfig::to(&format!("http://{upstream_otlp}"), Protocol::HttpProtobuf).unwrap();
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_http(loopback())
            .with_broker_spans(false)
            .with_forwarding(forward),
    )
    .await;
    let otlp = server.server().otlp_http_addr().unwrap();
    let response = post_traces(otlp, "application/json", OTLP).await;
    assert!(response.status().is_success());
    // Forwarding is asynchronous: wait until the upstream took the spans.
    let status_url = format!("http://{}/api/forwarding", server.addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status: serde_json::Value = reqwest::get(&status_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["traces"]["state"] == "up" && status["traces"]["forwarded"].as_u64() > Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forwarding never came up: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = format!("http://{}/ui/", server.addr);
    let dom = tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom".to_string()]))
        .await
        .unwrap();
    assert!(
        dom.contains("data-signal=\"traces\" data-state=\"up\""),
        "{dom}"
    );
    assert!(
        dom.contains(&format!(
            "traces → http://{upstream_otlp}/v1/traces (http/protobuf)"
        )),
        "{dom}"
    );
    assert!(dom.contains(" forwarded, 0 dropped"), "{dom}");
    server.shutdown().await;
    upstream.shutdown().await;
}
