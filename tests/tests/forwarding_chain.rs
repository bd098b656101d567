//! Two Batons, one as the upstream (issue 11): the whole trace of a message
//! reaches the upstream Baton through the downstream's forwarding, which is
//! configured only by the standard OTLP exporter variables.
//!
//! Two real `baton serve` processes, in memory, each on free ports with its
//! OTLP receivers on. The downstream gets `OTEL_EXPORTER_OTLP_ENDPOINT` (the
//! upstream's receiver) and `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`; in the
//! second test `http/protobuf` with `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`)
//! and nothing else. Google's Python client publishes to the downstream with
//! OpenTelemetry on, exporting its spans over OTLP/HTTP to the downstream;
//! a Rust subscriber (baton-client, tracing on) receives and acks there,
//! exporting its spans over OTLP/gRPC to the downstream. Then every span the
//! downstream holds for that trace (Python's `create`, the downstream's own
//! `receive` and `deliver`, Rust's `subscribe` and `process`) is in the
//! upstream, identical as the query API serves it: same ids, parents, times,
//! attributes, events, links, status, resource attributes and scope; the
//! upstream holds nothing else for the trace; and `GET /api/forwarding` on
//! the downstream says the traces upstream is `up`, with spans forwarded and
//! none dropped.
//!
//! The `baton` binary is the one cargo built next to this test
//! (`<target>/<profile>/baton`; `cargo test --workspace` builds it, or
//! `cargo build -p baton`), or `BATON_BIN`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use baton_client::{
    Client, ClientConfig, Endpoint, ReceivedMessage, SubscriberConfig, SubscriptionConfig,
    TracingConfig,
};
use baton_testkit::otlp::grpc_exporting_provider;
use baton_testkit::process::ServeProcess;
use baton_testkit::python::{PROJECT, ScriptEnv, python, run_script_with, unique_prefix};
use baton_testkit::trace_api::{get_json, spans};
use serde_json::Value;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
/// How long each stage may take: the subscriber's receipt, the downstream's
/// trace filling up, the upstream catching up.
const STAGE_LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
/// Resource attributes the Python publisher's SDK reads from the standard
/// variable, on top of its `service.name` and the SDK's own attributes.
const PYTHON_RESOURCE: &str = "deployment.environment=forwarding-chain,service.version=2.5.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_baton_gets_the_whole_trace_over_grpc() {
    chain("grpc", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_baton_gets_the_whole_trace_over_http_protobuf_gzip() {
    chain(
        "http/protobuf",
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
    )
    .await;
}

/// The `baton` binary: `BATON_BIN`, else `<target>/<profile>/baton` beside
/// this test's `deps` directory. Panics when it is missing or older than
/// the sources it is built from (a stale binary would test old code).
fn baton_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BATON_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .join(format!("baton{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "no baton binary at {} ({e}): build it with `cargo build -p baton` \
                 (`cargo test --workspace` does), or set BATON_BIN",
                bin.display()
            )
        });
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    if let Some((newest, path)) = newest_source(&crates)
        && newest > built
    {
        panic!(
            "{} is older than {}: rebuild it with `cargo build -p baton`",
            bin.display(),
            path.display()
        );
    }
    bin
}

/// Crates under `crates/` the `baton` binary is not built from.
const NOT_IN_THE_BINARY: &[&str] = &["baton-testkit", "baton-bench"];

/// The most recently modified `src/**` file or `Cargo.toml` of the crates
/// under `crates` the binary is built from.
fn newest_source(crates: &Path) -> Option<(SystemTime, PathBuf)> {
    fn walk(dir: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(t, _)| modified > *t)
            {
                *newest = Some((modified, path));
            }
        }
    }
    let mut newest = None;
    for krate in std::fs::read_dir(crates).ok()?.flatten() {
        if NOT_IN_THE_BINARY
            .iter()
            .any(|name| krate.file_name() == *name)
        {
            continue;
        }
        walk(&krate.path().join("src"), &mut newest);
        let manifest = krate.path().join("Cargo.toml");
        if let Ok(modified) = std::fs::metadata(&manifest).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, manifest));
        }
    }
    newest
}

/// One `baton serve` child with its log file, for failure messages.
struct Baton {
    name: &'static str,
    process: ServeProcess,
    log: PathBuf,
    otlp_grpc: SocketAddr,
    otlp_http: SocketAddr,
}

impl Baton {
    fn spawn(name: &'static str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut all = vec![
            "--in-memory",
            "--otlp-grpc-port",
            "0",
            "--otlp-http-port",
            "0",
        ];
        all.extend_from_slice(args);
        let process = ServeProcess::spawn_with(&baton_bin(), dir, &all, env, &log);
        let (otlp_grpc, otlp_http) = process.otlp_addrs();
        Self {
            name,
            process,
            log,
            otlp_grpc,
            otlp_http,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// Its log (stderr) so far, for a failure message.
    fn log_text(&self) -> String {
        let text = without_colours(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} baton serve log ({})\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Both servers' logs, for failure messages.
fn logs(up: &Baton, down: &Baton) -> String {
    format!("{}\n{}", down.log_text(), up.log_text())
}

/// `GET /api/traces/{trace}` of `baton`: the trace's own spans by span id,
/// empty while the trace is unknown.
async fn trace_spans(baton: &Baton, trace: &str) -> BTreeMap<String, Value> {
    let (status, detail) = get_json(baton.addr(), &format!("/api/traces/{trace}")).await;
    if status != 200 {
        return BTreeMap::new();
    }
    spans(&detail, "spans")
        .into_iter()
        .map(|s| (s["spanId"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// `name (service, span id)` of each span, for messages.
fn describe(spans: &BTreeMap<String, Value>) -> Vec<String> {
    spans
        .values()
        .map(|s| format!("{} ({}, {})", s["name"], s["service"], s["spanId"]))
        .collect()
}

/// The fields in which two spans' JSON differ.
fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![format!("{a} vs {b}")];
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: downstream {} / upstream {}",
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect()
}

async fn chain(protocol: &str, extra_env: &[(&str, &str)]) {
    let started = Instant::now();
    let python = tokio::task::spawn_blocking(|| python(TMP)).await.unwrap();
    let dir = tempfile::Builder::new()
        .prefix("forwarding-chain-")
        .tempdir_in(TMP)
        .unwrap();

    // The upstream: receivers on, forwarding nowhere.
    let up = Baton::spawn("upstream", dir.path(), &["--no-forward"], &[]);
    // The downstream: forwarding only by the standard variables.
    let upstream_endpoint = match protocol {
        "grpc" => format!("http://{}", up.otlp_grpc),
        _ => format!("http://{}", up.otlp_http),
    };
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", upstream_endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ];
    env.extend_from_slice(extra_env);
    let down = Baton::spawn("downstream", dir.path(), &[], &env);
    let forwarding_line = down
        .process
        .line_starting_with("Forwarding traces to ", Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "the downstream does not say it forwards traces ({env:?})\n{}",
                logs(&up, &down)
            )
        });
    assert!(
        forwarding_line.contains(&up.otlp_grpc.to_string())
            || forwarding_line.contains(&up.otlp_http.to_string()),
        "the downstream forwards elsewhere: {forwarding_line}"
    );
    eprintln!(
        "[{protocol}] upstream {} (OTLP gRPC {}, HTTP {}); downstream {}: {}",
        up.addr(),
        up.otlp_grpc,
        up.otlp_http,
        down.addr(),
        forwarding_line.trim()
    );

    let host = down.addr().to_string();
    let prefix = unique_prefix("fwd-chain");
    let (topic, sub) = (format!("{prefix}-topic"), format!("{prefix}-sub"));
    let client =
        Client::connect(ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(host.clone())))
            .await
            .unwrap();
    client.create_topic(&topic).await.unwrap();
    client
        .create_subscription(
            SubscriptionConfig::new(&sub, &topic).with_ack_deadline(Duration::from_secs(30)),
        )
        .await
        .unwrap();

    // Python publishes one message, its spans over OTLP/HTTP to the downstream.
    let otlp_http = format!("http://{}", down.otlp_http);
    let script_env = ScriptEnv::default()
        .set("PUBSUB_EMULATOR_HOST", &host)
        .set("OTEL_RESOURCE_ATTRIBUTES", PYTHON_RESOURCE);
    let published = run_script_with(
        &python,
        "trace_otlp_publish.py",
        &host,
        &prefix,
        Duration::from_secs(60),
        &["--count", "1", "--otlp", &otlp_http],
        &script_env,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&up, &down)))
    .result;
    assert_eq!(published["exported"], true, "{published}");
    let message = &published["messages"][0];
    let message_id = message["message_id"].as_str().unwrap().to_owned();
    let trace = message["create"]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no create span in {published}"))
        .to_owned();

    // Rust receives and acks it, its spans over OTLP/gRPC to the downstream.
    let provider = grpc_exporting_provider(&format!("http://{}", down.otlp_grpc), "rust-worker");
    let subscriber = client.subscriber_with(
        &sub,
        SubscriberConfig::default().with_tracing(
            TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone())),
        ),
    );
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let arrived = Arc::new(tokio::sync::Notify::new());
    let handle = subscriber.subscribe({
        let (got, arrived) = (got.clone(), arrived.clone());
        move |message: ReceivedMessage| {
            let (got, arrived) = (got.clone(), arrived.clone());
            async move {
                got.lock().unwrap().push(message.message_id().to_owned());
                message.ack();
                arrived.notify_one();
            }
        }
    });
    let received = tokio::time::timeout(STAGE_LIMIT, async {
        while !got.lock().unwrap().contains(&message_id) {
            arrived.notified().await;
        }
    })
    .await;
    // Shutting down flushes the ack, which ends the downstream's deliver span.
    handle.shutdown().await.unwrap();
    assert!(
        received.is_ok(),
        "the Rust subscriber did not get {message_id} in {STAGE_LIMIT:?}; got {:?}\n{}",
        got.lock().unwrap(),
        logs(&up, &down)
    );
    let flush = provider.clone();
    tokio::task::spawn_blocking(move || flush.force_flush())
        .await
        .unwrap()
        .unwrap();

    // The downstream holds the whole trace: Python's create span, its own
    // receive and deliver spans, Rust's subscribe and process spans.
    let wanted = [
        (format!("{topic} create"), "python-publisher"),
        (format!("{topic} receive"), "baton"),
        (format!("{sub} deliver"), "baton"),
        (format!("{sub} subscribe"), "rust-worker"),
        (format!("{sub} process"), "rust-worker"),
    ];
    let has_all = |spans: &BTreeMap<String, Value>| {
        wanted.iter().all(|(name, service)| {
            spans
                .values()
                .any(|s| s["name"] == name.as_str() && s["service"] == *service)
        })
    };
    let deadline = Instant::now() + STAGE_LIMIT;
    loop {
        let spans = trace_spans(&down, &trace).await;
        if has_all(&spans) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the downstream's trace {trace} lacks some of {wanted:?} after {STAGE_LIMIT:?}: {:#?}\n{}",
            describe(&spans),
            logs(&up, &down)
        );
        tokio::time::sleep(POLL).await;
    }

    // The upstream catches up: every span the downstream holds (re-read each
    // time, it may still grow), identical.
    let deadline = Instant::now() + STAGE_LIMIT;
    let (downstream, upstream) = loop {
        let upstream = trace_spans(&up, &trace).await;
        let downstream = trace_spans(&down, &trace).await;
        let missing: Vec<&String> = downstream
            .keys()
            .filter(|id| !upstream.contains_key(*id))
            .collect();
        if missing.is_empty() {
            break (downstream, upstream);
        }
        assert!(
            Instant::now() < deadline,
            "after {STAGE_LIMIT:?} the upstream lacks spans {missing:?} of trace {trace}\n\
             downstream: {:#?}\nupstream: {:#?}\nforwarding: {:#}\n{}",
            describe(&downstream),
            describe(&upstream),
            get_json(down.addr(), "/api/forwarding").await.1,
            logs(&up, &down)
        );
        tokio::time::sleep(POLL).await;
    };
    let mut differences = Vec::new();
    for (id, span) in &downstream {
        let fields = differing_fields(span, &upstream[id]);
        if !fields.is_empty() {
            differences.push(format!(
                "span {} {id} ({}):\n    {}",
                span["name"],
                span["service"],
                fields.join("\n    ")
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the upstream's copy of trace {trace} differs from the downstream's:\n{}",
        differences.join("\n")
    );
    let extra: Vec<&String> = upstream
        .keys()
        .filter(|id| !downstream.contains_key(*id))
        .collect();
    assert!(
        extra.is_empty(),
        "the upstream holds spans of trace {trace} the downstream does not: {extra:?}"
    );

    // What the comparison covered: three services, each with its resource
    // and scope as its SDK (or the downstream) made them.
    let by_service = |service: &str| {
        upstream
            .values()
            .filter(|s| s["service"] == service)
            .collect::<Vec<_>>()
    };
    let python_spans = by_service("python-publisher");
    assert!(
        python_spans.iter().all(|s| {
            s["resource"]["deployment.environment"] == "forwarding-chain"
                && s["resource"]["service.version"] == "2.5.0"
                && s["resource"]["telemetry.sdk.language"] == "python"
                && !s["scope"]["name"].as_str().unwrap_or("").is_empty()
        }),
        "Python's spans lost their resource or scope: {python_spans:#?}"
    );
    let baton_spans = by_service("baton");
    assert!(
        baton_spans
            .iter()
            .all(|s| s["scope"]["name"] == "baton-server"),
        "the downstream's spans: {baton_spans:#?}"
    );
    let rust_spans = by_service("rust-worker");
    assert!(
        rust_spans
            .iter()
            .all(|s| !s["scope"]["name"].as_str().unwrap_or("").is_empty()),
        "Rust's spans lost their scope: {rust_spans:#?}"
    );
    let create = upstream
        .values()
        .find(|s| s["name"] == format!("{topic} create"))
        .unwrap();
    assert_eq!(create["spanId"], message["create"]["span_id"], "{create:#}");
    assert_eq!(create["attributes"]["messaging.message.id"], message_id);

    // The downstream's forwarding status: the traces upstream is up, spans
    // went, none were dropped.
    let (status, forwarding) = get_json(down.addr(), "/api/forwarding").await;
    assert_eq!(status, 200, "{forwarding}");
    let traces = &forwarding["traces"];
    assert_eq!(traces["state"], "up", "{forwarding:#}");
    assert_eq!(traces["protocol"], protocol, "{forwarding:#}");
    assert!(
        traces["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with(&upstream_endpoint)),
        "{forwarding:#}"
    );
    let forwarded = traces["forwarded"].as_u64().unwrap();
    assert!(
        forwarded >= downstream.len() as u64,
        "forwarded {forwarded} spans, the trace alone has {}: {forwarding:#}",
        downstream.len()
    );
    assert_eq!(traces["dropped"], 0, "{forwarding:#}");
    assert_eq!(traces["failedAttempts"], 0, "{forwarding:#}");

    eprintln!(
        "[{protocol}] trace {trace}: {} spans ({} Python, {} baton, {} Rust) identical upstream; \
         {forwarded} spans forwarded; {:.1?} in all",
        downstream.len(),
        python_spans.len(),
        baton_spans.len(),
        rust_spans.len(),
        started.elapsed()
    );
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}
