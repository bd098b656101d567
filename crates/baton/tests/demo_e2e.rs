//! The demo end to end: Service A and Service B against a Baton server,
//! their spans exported over OTLP/gRPC to the server's receiver, and the
//! traces read back through the query API checked for one connected trace
//! per order (with the broker's spans); plus `baton demo --once` run as a
//! process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use baton_demo::{Demo, DemoConfig};
use baton_server::ServerConfig;
use baton_testkit::process::{baton_command, output_within};
use baton_testkit::server::{TestServer, loopback};
use baton_testkit::trace_api::{named, spans};
use serde_json::Value;

const DELIVERY_ATTEMPT: &str = "messaging.gcp_pubsub.message.delivery_attempt";

fn one<'a>(detail: &'a Value, name: &str) -> &'a Value {
    let found = named(detail, name);
    assert_eq!(found.len(), 1, "{name} in {detail:#}");
    found[0]
}

/// Asserts `child`'s parent is `parent`.
fn child_of(child: &Value, parent: &Value) {
    assert_eq!(
        child["parentSpanId"], parent["spanId"],
        "{} should be a child of {}",
        child["name"], parent["name"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_traffic_makes_one_connected_trace_per_order() {
    let server =
        TestServer::start_with(ServerConfig::new(loopback()).with_otlp_grpc(loopback())).await;
    let pubsub = server.host();
    let otlp = server.otlp_grpc_endpoint();
    let demo = Demo::start(DemoConfig::new(pubsub.clone(), Some(otlp)).with_fail_every(2))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut orders = HashMap::new();
    for id in 1..=2u64 {
        orders.insert(id, demo.send_order(id).await.unwrap());
    }

    // Order 2 fails once (fail_every = 2): two deliveries; order 1 one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut details = HashMap::new();
    for (id, accepted) in &orders {
        let attempts = if demo.fails_once(*id) { 2 } else { 1 };
        let trace_id = accepted.trace_id.as_str();
        loop {
            demo.flush().await.unwrap();
            server.server().flush_traces().await;
            // The query API, as the web view and `baton trace show` read it.
            let response = http
                .get(format!("http://{pubsub}/api/traces/{trace_id}"))
                .send()
                .await
                .unwrap();
            let detail = if response.status().is_success() {
                Some(response.json::<Value>().await.unwrap())
            } else {
                None
            };
            if let Some(detail) = detail.filter(|d| {
                named(d, "reserve inventory").len() == attempts
                    && named(d, "GET /inventory/{item}").len() == attempts
                    && named(d, "orders-worker process").len() == attempts
                    && named(d, "orders-worker deliver").len() == attempts
                    && spans(d, "linkedSpans")
                        .iter()
                        .any(|s| s["name"] == "orders-worker ack")
            }) {
                details.insert(*id, detail);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "trace of order {id} incomplete: {:#}",
                server
                    .server()
                    .trace_store()
                    .trace(trace_id)
                    .map(|d| serde_json::to_value(d).unwrap())
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for (id, detail) in &details {
        let http_span = one(detail, "POST /orders");
        assert_eq!(http_span["service"], "service-a");
        assert_eq!(http_span["kind"], "SERVER");
        assert_eq!(http_span["parentSpanId"], "");
        let create = one(detail, "orders create");
        assert_eq!(create["service"], "service-a");
        assert_eq!(create["kind"], "PRODUCER");
        child_of(create, http_span);
        assert_eq!(
            create["attributes"]["messaging.message.id"],
            orders[id].message_id.as_str()
        );

        let subscribes = named(detail, "orders-worker subscribe");
        let processes = named(detail, "orders-worker process");
        let inventory = named(detail, "reserve inventory");
        let attempts = if id % 2 == 0 { 2 } else { 1 };
        assert_eq!(subscribes.len(), attempts, "order {id}: {detail:#}");
        for subscribe in &subscribes {
            assert_eq!(subscribe["service"], "service-b");
            assert_eq!(subscribe["kind"], "CONSUMER");
            child_of(subscribe, create);
        }
        for process in &processes {
            assert!(
                subscribes
                    .iter()
                    .any(|s| s["spanId"] == process["parentSpanId"]),
                "process span's parent is not a subscribe span: {detail:#}"
            );
        }
        for call in &inventory {
            assert_eq!(call["service"], "service-b");
            assert_eq!(call["kind"], "CLIENT");
            assert!(
                processes
                    .iter()
                    .any(|p| p["spanId"] == call["parentSpanId"]),
                "reserve inventory's parent is not a process span: {detail:#}"
            );
        }
        // The downstream service answered each call, as a child of the call
        // (the traceparent crossed the HTTP hop).
        let served = named(detail, "GET /inventory/{item}");
        assert_eq!(served.len(), attempts, "order {id}: {detail:#}");
        for span in &served {
            assert_eq!(span["service"], "inventory");
            assert_eq!(span["kind"], "SERVER");
            assert!(
                inventory
                    .iter()
                    .any(|c| c["spanId"] == span["parentSpanId"]),
                "the inventory's span is not a child of the call: {detail:#}"
            );
        }
        // The broker's spans: receive, then one deliver per attempt.
        let receive = one(detail, "orders receive");
        assert_eq!(receive["service"], "baton");
        child_of(receive, create);
        let delivers = named(detail, "orders-worker deliver");
        assert_eq!(delivers.len(), attempts, "order {id}: {detail:#}");
        let mut numbers: Vec<i64> = delivers
            .iter()
            .map(|d| {
                child_of(d, create);
                d["attributes"][DELIVERY_ATTEMPT].as_i64().unwrap()
            })
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=attempts as i64).collect::<Vec<_>>());
        if attempts == 2 {
            let redeliver = one(detail, "orders-worker redeliver");
            assert!(
                redeliver["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["name"] == "nack"),
                "{redeliver:#}"
            );
        }
        for span in spans(detail, "spans") {
            assert_eq!(span["traceId"], detail["traceId"]);
        }
        if attempts == 2 {
            assert!(
                inventory.iter().any(|c| c["status"]["code"] == "ERROR"),
                "the failed attempt's inventory call is not an error: {detail:#}"
            );
            assert!(
                spans(detail, "linkedSpans")
                    .iter()
                    .any(|s| s["name"] == "orders-worker nack"),
                "no nack linked to the trace: {detail:#}"
            );
        }
    }

    // The console follows each order's message: the one that failed once
    // was delivered twice (nacked, then acked), the other once; the
    // subscription's backlog is empty.
    for (id, accepted) in &orders {
        let history: Value = http
            .get(format!(
                "http://{pubsub}/api/console/messages/demo/orders/{}",
                accepted.message_id
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kinds: Vec<&str> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .filter(|k| ["delivered", "nack", "ack"].contains(k))
            .collect();
        let expected: &[&str] = if demo.fails_once(*id) {
            &["delivered", "nack", "delivered", "ack"]
        } else {
            &["delivered", "ack"]
        };
        assert_eq!(kinds, expected, "order {id}: {history:#}");
    }
    let subscription: Value = http
        .get(format!(
            "http://{pubsub}/api/console/subscriptions/demo/orders-worker"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        subscription["subscription"]["backlog_messages"], 0,
        "{subscription:#}"
    );

    demo.shutdown().await.unwrap();
    server.shutdown().await;
}

#[test]
fn baton_demo_once_prints_waterfalls_and_the_web_view_url() {
    let output = output_within(
        baton_command(Path::new(env!("CARGO_BIN_EXE_baton"))).args([
            "demo",
            "--once",
            "--port",
            "0",
            "--otlp-grpc-port",
            "0",
            "--otlp-http-port",
            "0",
        ]),
        Duration::from_secs(60),
    );
    let status = output.status;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    for expected in [
        "POST /orders",
        "orders create",
        "orders-worker subscribe",
        "orders-worker process",
        "reserve inventory",
        "Trace list: http://127.0.0.1:",
        "/ui/",
        "message page: http://127.0.0.1:",
        "/ui/messages/demo/orders/",
        "Subscription orders-worker: http://127.0.0.1:",
        "/ui/subscriptions/demo/orders-worker",
        "Topic orders: http://127.0.0.1:",
        "/ui/topics/demo/orders",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing:\n{stdout}\n{stderr}"
        );
    }
    // Order 3 fails once: two subscribe spans in its waterfall.
    let third = stdout
        .split("Order 3 ")
        .nth(1)
        .unwrap_or_else(|| panic!("no third order:\n{stdout}"));
    assert_eq!(
        third.matches("orders-worker subscribe").count(),
        2,
        "{stdout}"
    );
    assert!(!stderr.contains("incomplete"), "{stderr}");
}

/// `baton demo` (serving, not `--once`) as a child with its stdout piped.
fn spawn_demo(orders: &str) -> tokio::process::Child {
    let mut command = baton_command(Path::new(env!("CARGO_BIN_EXE_baton")));
    command.args([
        "demo",
        "--orders",
        orders,
        "--port",
        "0",
        "--otlp-grpc-port",
        "0",
        "--otlp-http-port",
        "0",
    ]);
    tokio::process::Command::from(command)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads `child`'s stdout until a line starting with `prefix`.
async fn read_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> String {
    let wait = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("stdout ended before a line starting with {prefix:?}");
    };
    tokio::time::timeout(Duration::from_secs(90), wait)
        .await
        .unwrap_or_else(|_| panic!("no line starting with {prefix:?} within 90 s"))
}

/// Sends SIGTERM to `child` and returns its exit status, within 20 s.
async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("baton demo stops within 20 s of SIGTERM")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_demo_stops_cleanly_on_sigterm_while_serving() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = spawn_demo("3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = read_until(&mut lines, "Baton is listening on ").await;
    read_until(&mut lines, "Press Ctrl-C to stop.").await;
    let status = terminate(&mut child).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        read_until(&mut lines, "Stopping.").await,
        "Stopping.",
        "after {listening}"
    );
    // The server is gone: its port refuses connections.
    let addr = listening
        .trim_start_matches("Baton is listening on ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "{addr} still accepts connections after the demo stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_demo_stops_cleanly_on_sigterm_while_starting() {
    use tokio::io::AsyncBufReadExt as _;
    // Many orders, so that the signal most likely lands while they are sent
    // or their traces awaited; before this handled signals in every phase,
    // SIGTERM there killed the process (a non-zero status).
    let mut child = spawn_demo("40");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, "order 1 -> message ").await;
    let status = terminate(&mut child).await;
    assert!(status.success(), "exit status {status}");
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l == "Stopping."), "{rest:#?}");
}
