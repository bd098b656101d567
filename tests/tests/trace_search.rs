//! Trace search and the live trace page in a real browser, on real data:
//! the demo pieces run in this process (server with OTLP receivers and
//! trace store, Service A, Service B, as `baton demo` starts them), orders
//! are posted (every third fails once in Service B: nack, redelivery), and
//! headless Chromium loads the list page with a search in its URL, and the
//! trace page of an order. The test reads the DOM as a person would see it.
//!
//! - searching by message id and by subscription (short or full name)
//!   finds the order's trace, the batch RPC traces only with `kind=all`;
//! - the search in the URL reproduces the result (each load is a fresh
//!   browser: nothing but the URL carries the search);
//! - a collapsed subtree (`#collapse=<span id>`, what the row toggle
//!   writes) hides its rows; the critical path is highlighted and summed up;
//! - the trace page picks up a span that arrives after its first render;
//! - driven like a person would (DevTools protocol): typing a search and
//!   submitting it, back and forward, a link that adds a condition, and
//!   clicking row toggles to collapse and expand subtrees.
//!
//! With `BATON_UPDATE_SCREENSHOT=1` it writes `docs/screenshot-search.png`.
//! Chromium is required (Debian package `chromium`); the test fails when it
//! is missing. Set `CHROMIUM` to use another binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_demo::{Demo, DemoConfig};
use baton_server::ServerConfig;
use baton_testkit::chromium::{self, rows, run_chromium};
use baton_testkit::otlp::{now_nanos, post_traces};
use baton_testkit::server::{TestServer, loopback};
use baton_testkit::trace_api::named_in;
use serde_json::Value;

/// Every third order fails once, as in `baton demo`.
const FAIL_EVERY: u64 = 3;

/// One posted order: its message and trace.
struct Order {
    message_id: String,
    trace_id: String,
}

/// Complete: every attempt processed and acked or nacked.
fn is_complete(detail: &Value, fails: bool) -> bool {
    let attempts = if fails { 2 } else { 1 };
    named_in(detail, "spans", "orders-worker process").len() == attempts
        && named_in(detail, "spans", "reserve inventory").len() == attempts
        && !named_in(detail, "linkedSpans", "orders-worker ack").is_empty()
}

/// A server with both OTLP receivers, the demo, and `count` orders whose
/// traces are complete in the store.
async fn demo_with_orders(count: u64) -> (TestServer, Demo, Vec<Order>) {
    // Fail now, not after the demo ran, when there is no browser.
    chromium::chromium();
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_grpc(loopback())
            .with_otlp_http(loopback()),
    )
    .await;
    let demo = Demo::start(
        DemoConfig::new(server.host(), Some(server.otlp_grpc_endpoint()))
            .with_fail_every(FAIL_EVERY),
    )
    .await
    .unwrap();
    let mut orders = Vec::new();
    for id in 1..=count {
        let accepted = demo.send_order(id).await.unwrap();
        orders.push((
            Order {
                message_id: accepted.message_id,
                trace_id: accepted.trace_id,
            },
            demo.fails_once(id),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (order, fails) in &orders {
        loop {
            demo.flush().await.unwrap();
            server.server().flush_traces().await;
            let detail = server
                .server()
                .trace_store()
                .trace(&order.trace_id)
                .map(|d| serde_json::to_value(d).unwrap());
            if detail.as_ref().is_some_and(|d| is_complete(d, *fails)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "trace {} incomplete: {:#}",
                order.trace_id,
                detail.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (server, demo, orders.into_iter().map(|(o, _)| o).collect())
}

async fn dump(url: String) -> String {
    tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom".to_string()]))
        .await
        .unwrap()
}

/// The list rows of a dumped page: (trace id, kind).
fn list_rows(dom: &str) -> Vec<(String, String)> {
    dom.split("<tr class=\"trace-row")
        .skip(1)
        .map(|chunk| (attr(chunk, "data-trace-id"), attr(chunk, "data-kind")))
        .collect()
}

fn attr(chunk: &str, name: &str) -> String {
    chunk
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// The text of the element with id `id` (tags stripped).
fn text_of(dom: &str, id: &str) -> String {
    let Some(rest) = dom.split(&format!("id=\"{id}\"")).nth(1) else {
        return String::new();
    };
    let body = rest.split_once('>').map_or("", |(_, b)| b);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
        if out.len() > 600 {
            break;
        }
    }
    out.split("\n").next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_page_finds_real_traces_by_message_and_subscription() {
    let (server, demo, orders) = demo_with_orders(3).await;
    let base = format!("http://{}", server.host());

    // By message id: exactly that order's trace, and the status says what
    // was searched (the form is filled from the URL).
    let order = &orders[1];
    let dom = dump(format!("{base}/ui/?message={}", order.message_id)).await;
    let found = list_rows(&dom);
    assert_eq!(
        found,
        [(order.trace_id.clone(), "message".to_string())],
        "DOM:\n{dom}"
    );
    let status = text_of(&dom, "status");
    assert!(
        status.contains(&format!(
            "1 message flow matching message {}",
            order.message_id
        )) || status.contains(&format!("1 trace matching message {}", order.message_id)),
        "{status}"
    );
    assert!(dom.contains(&format!("msg {}", order.message_id)), "{dom}");

    // By subscription, short and full name: the three message flows, not
    // the batch RPC traces (publish, ack, modack) linked into them.
    for subscription in ["orders-worker", "projects/demo/subscriptions/orders-worker"] {
        let url = format!("{base}/ui/?subscription={subscription}");
        let dom = dump(url.clone()).await;
        let mut found: Vec<String> = list_rows(&dom)
            .into_iter()
            .map(|(id, kind)| {
                assert_eq!(kind, "message", "{url}");
                id
            })
            .collect();
        found.sort();
        let mut want: Vec<String> = orders.iter().map(|o| o.trace_id.clone()).collect();
        want.sort();
        assert_eq!(found, want, "{url}; DOM:\n{dom}");
        assert!(text_of(&dom, "status").contains("batch RPC traces hidden"));
        // The same URL in a fresh browser gives the same rows.
        let again = dump(url.clone()).await;
        let mut again: Vec<String> = list_rows(&again).into_iter().map(|(id, _)| id).collect();
        again.sort();
        assert_eq!(again, want, "{url} again");
    }
    // kind=all: the settle RPC traces of that subscription show too.
    let dom = dump(format!("{base}/ui/?subscription=orders-worker&kind=all")).await;
    let rows = list_rows(&dom);
    assert!(rows.iter().any(|(_, kind)| kind == "rpc"), "DOM:\n{dom}");
    assert_eq!(
        rows.iter().filter(|(_, kind)| kind == "message").count(),
        3,
        "{rows:?}"
    );
    // A search that matches nothing says so; a malformed one says why.
    let dom = dump(format!(
        "{base}/ui/?subscription=projects/other/subscriptions/orders-worker"
    ))
    .await;
    assert!(list_rows(&dom).is_empty());
    assert!(
        text_of(&dom, "status").starts_with("No traces match subscription projects/other/"),
        "{}",
        text_of(&dom, "status")
    );
    let dom = dump(format!("{base}/ui/?min_duration=soon")).await;
    assert!(
        text_of(&dom, "status").contains("Search failed: invalid min_duration"),
        "{}",
        text_of(&dom, "status")
    );

    // The search page's screenshot, kept for the docs on request.
    let update = std::env::var("BATON_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1");
    let shot: PathBuf = if update {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshot-search.png")
    } else {
        std::env::temp_dir().join(format!(
            "baton-search-screenshot-{}.png",
            std::process::id()
        ))
    };
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1366,720".to_string(),
    ];
    let url = format!("{base}/ui/?subscription=orders-worker&kind=all");
    tokio::task::spawn_blocking(move || run_chromium(&url, &args))
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

/// The label (span name) of a rendered waterfall row.
fn label(row: &str) -> String {
    row.split("<span class=\"label\" title=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// Whether the row's element carries the `hidden` attribute.
fn is_hidden(row: &str) -> bool {
    row.split('>')
        .next()
        .unwrap_or_default()
        .contains(" hidden=\"\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_page_collapses_shows_the_critical_path_and_updates_live() {
    let (server, demo, orders) = demo_with_orders(3).await;
    // The order that failed once: two attempts.
    let order = &orders[2];
    let base = format!("http://{}", server.host());
    let detail =
        serde_json::to_value(server.server().trace_store().trace(&order.trace_id)).unwrap();
    let span_id = |name: &str| -> String {
        named_in(&detail, "spans", name)[0]["spanId"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // The critical path: request, create, then (the last attempt's)
    // subscribe, process and inventory call; summed up in the strip.
    let dom = dump(format!("{base}/ui/trace/{}", order.trace_id)).await;
    let shown = rows(&dom);
    let critical: Vec<String> = shown
        .iter()
        .filter(|(_, row)| row.contains("data-critical=\"true\""))
        .map(|(_, row)| label(row))
        .collect();
    for name in [
        "POST /orders",
        "orders create",
        "orders-worker subscribe",
        "orders-worker process",
        "reserve inventory",
    ] {
        assert!(
            critical.iter().any(|c| c == name),
            "{name} not on the critical path {critical:?}"
        );
    }
    assert!(
        !shown
            .iter()
            .any(|(_, row)| row.contains("data-linked=\"true\"") && row.contains("data-critical")),
        "linked spans are not on the path"
    );
    let strip = dom
        .split("id=\"critical\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no critical path strip in {dom}"));
    let strip_open = strip.split('>').next().unwrap();
    for part in ["queue", "handler", "downstream"] {
        let ns: u64 = attr(strip_open, &format!("data-{part}-ns"))
            .parse()
            .unwrap_or(0);
        assert!(ns > 0, "{part} time missing: {strip_open}");
    }
    let strip_text = text_of(&dom, "critical");
    for needle in ["critical path", "queue ", "handler ", "downstream "] {
        assert!(
            strip_text.contains(needle),
            "{needle:?} not in {strip_text:?}"
        );
    }
    assert!(dom.contains("<span>critical path</span>"), "legend");
    // The batch RPC traces are one click away.
    assert!(
        dom.contains("class=\"linked-trace\""),
        "no links to the RPC traces"
    );

    // Collapsing the create span's subtree hides every row under it (what
    // its toggle does, from the URL); the rows before it stay.
    let create = span_id("orders create");
    let dom = dump(format!(
        "{base}/ui/trace/{}#collapse={create}",
        order.trace_id
    ))
    .await;
    let shown = rows(&dom);
    let at = shown.iter().position(|(id, _)| *id == create).unwrap();
    let create_row = &shown[at].1;
    assert!(
        create_row.split('"').next().unwrap().contains("collapsed"),
        "{create_row}"
    );
    assert!(
        create_row.contains("aria-expanded=\"false\""),
        "{create_row}"
    );
    let under = &shown[at + 1..];
    assert!(under.len() >= 8, "the subtree: {}", under.len());
    for (id, row) in under {
        assert!(is_hidden(row), "row {id} ({}) still shown", label(row));
    }
    for (id, row) in &shown[..=at] {
        assert!(!is_hidden(row), "row {id} ({}) hidden", label(row));
    }
    // Without the collapse, they show.
    let dom = dump(format!("{base}/ui/trace/{}", order.trace_id)).await;
    assert!(rows(&dom).iter().all(|(_, row)| !is_hidden(row)));

    // Live: the page is served here with the server's own store, routes
    // and pages; right after it answered the page's first request for the
    // trace, a span of a new service arrives over OTLP/HTTP. The polling
    // page shows it without a reload.
    let late_span = "1a7e5a1e00000001";
    let process = span_id("orders-worker process");
    let now = now_nanos();
    let late = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "audit-service"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": order.trace_id,
                "spanId": late_span,
                "parentSpanId": process,
                "name": "late audit write",
                "kind": 3,
                "startTimeUnixNano": now.to_string(),
                "endTimeUnixNano": (now + 5_000_000).to_string()
            }]}]
        }]
    })
    .to_string();
    let otlp = server.server().otlp_http_addr().unwrap();
    let first_request = Arc::new(AtomicBool::new(false));
    let trace_path = format!("/api/traces/{}", order.trace_id);
    let app: axum::Router = baton_trace_store::router(server.server().trace_store().clone()).layer(
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let first = request.uri().path() == trace_path
                    && !first_request.swap(true, Ordering::SeqCst);
                let late = late.clone();
                async move {
                    let response = next.run(request).await;
                    if first {
                        let sent = post_traces(otlp, "application/json", late).await;
                        assert!(sent.status().is_success());
                    }
                    response
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dom = dump(format!("http://{addr}/ui/trace/{}", order.trace_id)).await;
    let shown = rows(&dom);
    let late_row = shown
        .iter()
        .find(|(id, _)| id == late_span)
        .unwrap_or_else(|| panic!("the late span never showed; DOM:\n{dom}"));
    assert!(late_row.1.contains(">audit-service<"), "{}", late_row.1);
    let renders: u32 = attr(&dom, "data-renders").parse().unwrap();
    assert!(renders >= 2, "rendered {renders} times");
    assert!(dom.contains("data-state=\"live\""), "live indicator");
    // It sits under the process span it belongs to.
    let process_at = shown.iter().position(|(id, _)| *id == process).unwrap();
    let late_at = shown.iter().position(|(id, _)| id == late_span).unwrap();
    assert!(late_at > process_at);

    demo.shutdown().await.unwrap();
    server.shutdown().await;
}

/// `'text'` as a JavaScript string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_form_history_and_toggles_in_a_driven_browser() {
    use baton_testkit::devtools::Browser;
    let (server, demo, orders) = demo_with_orders(3).await;
    let base = format!("http://{}", server.host());
    let browser = Browser::launch(&format!("{base}/ui/"));
    let mut page = browser.page().await;
    let limit = Duration::from_secs(15);
    let rows = "[...document.querySelectorAll('tr.trace-row')].map(r => r.dataset.kind + ':' + r.dataset.traceId)";
    let debug = format!("[location.href, document.getElementById('status').textContent, {rows}]");
    page.wait_for(
        "document.querySelectorAll('tr.trace-row[data-kind=message]').length === 3",
        limit,
        &debug,
    )
    .await;

    // No auto-refresh: what the list shows comes from the search alone.
    page.eval("document.getElementById('auto-refresh').checked = false; true")
        .await;

    // Typing a message id and submitting: the URL carries the search, the
    // list shows that message's trace.
    let order = &orders[0];
    page.eval(&format!(
        "document.querySelector('input[name=message]').value = {}; \
         document.getElementById('search').requestSubmit(); true",
        js(&order.message_id)
    ))
    .await;
    let by_message = format!(
        "location.search === {} && {rows}.join() === {}",
        js(&format!("?message={}", order.message_id)),
        js(&format!("message:{}", order.trace_id))
    );
    page.wait_for(&by_message, limit, &debug).await;

    // A second search (subscription, all kinds) from the form.
    page.eval(
        "document.querySelector('input[name=message]').value = ''; \
         document.querySelector('input[name=subscription]').value = 'orders-worker'; \
         document.querySelector('select[name=kind]').value = 'all'; \
         document.getElementById('search').requestSubmit(); true",
    )
    .await;
    let by_subscription = format!(
        "location.search === '?subscription=orders-worker&kind=all' \
         && {rows}.some(r => r.startsWith('rpc:')) \
         && {rows}.filter(r => r.startsWith('message:')).length === 3"
    );
    page.wait_for(&by_subscription, limit, &debug).await;

    // Back: the message search again, its form filled from the URL.
    page.eval("history.back(); true").await;
    page.wait_for(&by_message, limit, &debug).await;
    let typed = page
        .eval("document.querySelector('input[name=message]').value + '|' + document.querySelector('input[name=subscription]').value")
        .await;
    assert_eq!(typed, format!("{}|", order.message_id));
    // Back again: no search, message flows only; forward twice: both again.
    page.eval("history.back(); true").await;
    page.wait_for(
        &format!(
            "location.search === '' && {rows}.length === 3 && {rows}.every(r => r.startsWith('message:'))"
        ),
        limit,
        &debug,
    )
    .await;
    page.eval("history.forward(); true").await;
    page.wait_for(&by_message, limit, &debug).await;
    page.eval("history.forward(); true").await;
    page.wait_for(&by_subscription, limit, &debug).await;

    // A subscription link in a row adds that condition.
    page.eval("history.back(); true").await;
    page.wait_for(&by_message, limit, &debug).await;
    page.eval("document.querySelector('tr.trace-row a.term.sub').click(); true")
        .await;
    page.wait_for(
        &format!(
            "location.search === {} && {rows}.length === 1",
            js(&format!(
                "?message={}&subscription=orders-worker",
                order.message_id
            ))
        ),
        limit,
        &debug,
    )
    .await;

    // The trace page: clicking the create span's toggle hides its subtree
    // and puts it in the URL; clicking again shows it.
    let detail =
        serde_json::to_value(server.server().trace_store().trace(&order.trace_id)).unwrap();
    let create = named_in(&detail, "spans", "orders create")[0]["spanId"]
        .as_str()
        .unwrap()
        .to_string();
    let process = named_in(&detail, "spans", "orders-worker process")[0]["spanId"]
        .as_str()
        .unwrap()
        .to_string();
    page.eval(&format!(
        "location.href = {}; true",
        js(&format!("{base}/ui/trace/{}", order.trace_id))
    ))
    .await;
    let trace_rows = "[...document.querySelectorAll('#rows .span-row')].map(r => (r.hidden ? 'hidden:' : 'shown:') + r.dataset.spanId)";
    let trace_debug = format!("[location.href, {trace_rows}]");
    page.wait_for(
        &format!("document.querySelector('[data-span-id=\"{process}\"]') !== null"),
        limit,
        &trace_debug,
    )
    .await;
    let hidden_after = |id: &str| {
        format!(
            "(() => {{ const rows = [...document.querySelectorAll('#rows .span-row')]; \
               const at = rows.findIndex(r => r.dataset.spanId === '{id}'); \
               const depth = Number(rows[at].dataset.depth); \
               let n = 0; for (const r of rows.slice(at + 1)) {{ \
                 if (Number(r.dataset.depth) <= depth) break; \
                 if (!r.hidden) return -1; n++; }} \
               return rows.slice(0, at + 1).some(r => r.hidden) ? -2 : n; }})()"
        )
    };
    let click = |id: &str| {
        format!("document.querySelector('[data-span-id=\"{id}\"] button.toggle').click(); true")
    };
    page.eval(&click(&process)).await;
    let under_process = page
        .wait_for(
            &format!("{} > 0", hidden_after(&process)),
            limit,
            &trace_debug,
        )
        .await;
    assert_eq!(under_process, true);
    let hidden = page.eval(&hidden_after(&process)).await;
    assert!(hidden.as_u64().unwrap() >= 1, "{hidden}");
    page.eval(&click(&create)).await;
    page.wait_for(
        &format!("{} >= 8", hidden_after(&create)),
        limit,
        &trace_debug,
    )
    .await;
    let hash = page.eval("location.hash").await;
    assert!(
        hash.as_str()
            .unwrap()
            .contains(&format!("collapse={process},{create}"))
            || hash
                .as_str()
                .unwrap()
                .contains(&format!("collapse={create},{process}")),
        "{hash}"
    );
    // Expanding the create span again: its rows show, except those under
    // the still collapsed process span.
    page.eval(&click(&create)).await;
    page.wait_for(
        &format!(
            "(() => {{ const rows = [...document.querySelectorAll('#rows .span-row')]; \
               const hidden = rows.filter(r => r.hidden).length; \
               return hidden > 0 && hidden === {} ; }})()",
            hidden_after(&process)
        ),
        limit,
        &trace_debug,
    )
    .await;
    page.eval(&click(&process)).await;
    page.wait_for(
        "[...document.querySelectorAll('#rows .span-row')].every(r => !r.hidden)",
        limit,
        &trace_debug,
    )
    .await;

    drop(page);
    drop(browser);
    demo.shutdown().await.unwrap();
    server.shutdown().await;
}

/// An old trace (the fixture's spans are from 2025) is not polled: the
/// page says it is not updating and renders once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_trace_page_does_not_poll() {
    const OTLP: &str = include_str!("../../crates/baton/tests/fixtures/trace_otlp.json");
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_http(loopback())
            .with_broker_spans(false),
    )
    .await;
    let response = post_traces(
        server.server().otlp_http_addr().unwrap(),
        "application/json",
        OTLP,
    )
    .await;
    assert!(response.status().is_success());
    let dom = dump(format!(
        "http://{}/ui/trace/4bf92f3577b34da6a3ce929d0e0e4736",
        server.host()
    ))
    .await;
    assert!(dom.contains("data-state=\"idle\""), "{dom}");
    assert!(text_of(&dom, "live").contains("not updating"), "{dom}");
    assert_eq!(attr(&dom, "data-renders"), "1");
    server.shutdown().await;
}
