//! `baton-bench --trace-search`: how fast the trace store's search answers
//! with 100,000 traces stored (issue 13's target: a search under 100 ms,
//! the list page rendered under a second).
//!
//! Fills one store (bounds raised out of the way) with `--traces` traces
//! made as Baton's clients and broker make them, spread over the last hour:
//! seven in ten are message flows (`POST /orders` in service-a, `<topic>
//! create` with its batching span, the broker's `receive` and `deliver`,
//! `<sub> subscribe` and `process` in service-b, an inventory call, one in
//! fifty failing), the rest one-span batch RPC traces (`<topic> publish`,
//! `<sub> ack`/`modack`). Then each representative search runs `--rounds`
//! times (the store's [`TraceStore::search`], which the API, the web view
//! and the CLI share) and the report gives p50/p99; then the list API
//! (`GET /api/traces?limit=100` over HTTP on loopback, the request the list
//! page makes), and, when Chromium is installed, the list page itself: the
//! time from navigation until the page has rendered the rows (`list.js`
//! writes it into `data-render-ms`).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use baton_trace_store::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use baton_trace_store::opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use baton_trace_store::opentelemetry_proto::tonic::resource::v1::Resource;
use baton_trace_store::opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use baton_trace_store::otlp_values::unix_nanos;
use baton_trace_store::{SearchRequest, TraceStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Traces per ingest call.
const TRACES_PER_REQUEST: usize = 1000;
/// Topics (and one subscription each) the traces spread over.
const TOPICS: u64 = 20;
const MS: u64 = 1_000_000;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// The ids of trace `n` and of its span `s`.
fn ids(n: u64, s: u64) -> (Vec<u8>, Vec<u8>) {
    let mut trace = vec![0xba; 16];
    trace[8..].copy_from_slice(&n.to_be_bytes());
    let mut span = vec![0; 8];
    span[..4].copy_from_slice(&u32::try_from(n & 0xffff_ffff).unwrap_or(0).to_be_bytes());
    span[4..].copy_from_slice(&u32::try_from(s).unwrap_or(0).to_be_bytes());
    (trace, span)
}

/// A span of trace `n`.
#[allow(clippy::too_many_arguments)]
fn make_span(
    n: u64,
    s: u64,
    parent: Option<u64>,
    name: String,
    kind: span::SpanKind,
    start: u64,
    end: u64,
    attributes: Vec<KeyValue>,
) -> Span {
    let (trace_id, span_id) = ids(n, s);
    Span {
        trace_id,
        span_id,
        parent_span_id: parent.map(|p| ids(n, p).1).unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        ..Default::default()
    }
}

fn pubsub(destination: &str, operation: Option<&str>) -> Vec<KeyValue> {
    let mut kvs = vec![
        text("messaging.system", "gcp_pubsub"),
        text("messaging.destination.name", destination),
        text("gcp.project_id", "bench"),
    ];
    if let Some(op) = operation {
        kvs.push(text("messaging.operation", op));
    }
    kvs
}

/// Spans of one request, by service.
#[derive(Default)]
struct Batch {
    service_a: Vec<Span>,
    baton: Vec<Span>,
    service_b: Vec<Span>,
}

impl Batch {
    fn request(self) -> ExportTraceServiceRequest {
        let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                resource("service-a", self.service_a),
                resource("baton", self.baton),
                resource("service-b", self.service_b),
            ],
        }
    }

    /// Trace `n` starting at `t0`: a message flow, or (3 in 10) a batch RPC.
    fn add(&mut self, n: u64, t0: u64) {
        let topic = format!("orders-{}", n % TOPICS);
        let sub = format!("orders-{}-worker", n % TOPICS);
        let message_id = n.to_string();
        match n % 10 {
            7 => {
                let mut attrs = pubsub(&topic, Some("publish"));
                attrs.push(int("messaging.batch.message_count", 10));
                self.service_a.push(make_span(
                    n,
                    1,
                    None,
                    format!("{topic} publish"),
                    span::SpanKind::Client,
                    t0,
                    t0 + 2 * MS,
                    attrs,
                ));
            }
            8 | 9 => {
                let op = if n % 10 == 8 { "ack" } else { "modack" };
                let mut attrs = pubsub(&sub, Some(op));
                attrs.push(int("messaging.batch.message_count", 10));
                self.service_b.push(make_span(
                    n,
                    1,
                    None,
                    format!("{sub} {op}"),
                    span::SpanKind::Client,
                    t0,
                    t0 + MS,
                    attrs,
                ));
            }
            _ => self.add_flow(n, t0, &topic, &sub, &message_id),
        }
    }

    fn add_flow(&mut self, n: u64, t0: u64, topic: &str, sub: &str, message_id: &str) {
        // Queue time 1-300 ms, handler 5-60 ms: durations vary.
        let queue = (n * 7919 % 300 + 1) * MS;
        let call = (n * 104_729 % 55 + 5) * MS;
        let key = if n.is_multiple_of(4) {
            format!("customer-{}", n % 1000)
        } else {
            String::new()
        };
        let mut create = pubsub(topic, Some("create"));
        create.extend([
            text("messaging.message.id", message_id),
            text("messaging.gcp_pubsub.message.ordering_key", key.clone()),
            int("messaging.message.body.size", 120),
        ]);
        self.service_a.extend([
            make_span(
                n,
                1,
                None,
                "POST /orders".into(),
                span::SpanKind::Server,
                t0,
                t0 + 4 * MS,
                vec![text("http.route", "/orders"), int("http.status_code", 202)],
            ),
            make_span(
                n,
                2,
                Some(1),
                format!("{topic} create"),
                span::SpanKind::Producer,
                t0 + MS,
                t0 + 3 * MS,
                create,
            ),
            make_span(
                n,
                3,
                Some(2),
                "publisher batching".into(),
                span::SpanKind::Internal,
                t0 + MS,
                t0 + 2 * MS,
                Vec::new(),
            ),
        ]);
        let mut receive = pubsub(topic, None);
        receive.push(text("messaging.message.id", message_id));
        let mut deliver = pubsub(sub, None);
        deliver.extend([
            text("messaging.message.id", message_id),
            int("messaging.gcp_pubsub.message.delivery_attempt", 1),
        ]);
        self.baton.extend([
            make_span(
                n,
                4,
                Some(2),
                format!("{topic} receive"),
                span::SpanKind::Server,
                t0 + 2 * MS,
                t0 + 3 * MS,
                receive,
            ),
            make_span(
                n,
                5,
                Some(2),
                format!("{sub} deliver"),
                span::SpanKind::Internal,
                t0 + 3 * MS,
                t0 + 3 * MS + queue,
                deliver,
            ),
        ]);
        let received = t0 + 3 * MS + queue;
        let mut subscribe = pubsub(sub, None);
        subscribe.extend([
            text("messaging.message.id", message_id),
            text("messaging.gcp_pubsub.message.ordering_key", key),
            int("messaging.gcp_pubsub.message.delivery_attempt", 1),
            text("messaging.gcp_pubsub.result", "acked"),
        ]);
        let mut inventory = make_span(
            n,
            8,
            Some(7),
            "reserve inventory".into(),
            span::SpanKind::Client,
            received + 2 * MS,
            received + 2 * MS + call,
            vec![
                text("http.route", "/reserve"),
                text("order.id", format!("order-{n}")),
            ],
        );
        if n.is_multiple_of(50) {
            inventory.status = Some(Status {
                code: status::StatusCode::Error as i32,
                message: "out of stock".into(),
            });
        }
        self.service_b.extend([
            make_span(
                n,
                6,
                Some(2),
                format!("{sub} subscribe"),
                span::SpanKind::Consumer,
                received,
                received + call + 6 * MS,
                subscribe,
            ),
            make_span(
                n,
                7,
                Some(6),
                format!("{sub} process"),
                span::SpanKind::Internal,
                received + MS,
                received + call + 4 * MS,
                vec![text("messaging.system", "gcp_pubsub")],
            ),
            inventory,
        ]);
    }
}

/// p-th percentile (0..=100) of sorted `samples`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = (sorted.len() - 1) * p / 100;
    sorted[at]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// One HTTP/1.1 GET over a fresh loopback connection; the body's length.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<usize> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    ensure!(
        response.starts_with(b"HTTP/1.1 200"),
        "GET {path}: {}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    Ok(response.len())
}

/// Runs the benchmark with `traces` traces and `rounds` runs per query.
pub async fn run(traces: u64, rounds: usize) -> Result<()> {
    let store = TraceStore::builder()
        .max_spans(20_000_000)
        .max_bytes(64 * 1024 * 1024 * 1024)
        .build()
        .context("building the store")?;
    // Traces spread over the last hour, oldest first.
    let now = unix_nanos(SystemTime::now());
    let hour = 3_600_000 * MS;
    let started = Instant::now();
    let mut n = 0;
    while n < traces {
        let mut batch = Batch::default();
        for _ in 0..TRACES_PER_REQUEST {
            if n >= traces {
                break;
            }
            let t0 = now - hour + hour / traces.max(1) * n;
            batch.add(n, t0);
            n += 1;
        }
        let summary = store.ingest(batch.request())?;
        ensure!(
            summary.rejected == 0,
            "spans rejected: {:?}",
            summary.first_error
        );
    }
    let fill = started.elapsed();
    println!(
        "trace search: {} traces, {} spans stored in {:.1} s ({} MiB of span content)",
        store.trace_count(),
        store.span_count(),
        fill.as_secs_f64(),
        store.byte_count() / (1024 * 1024)
    );
    ensure!(
        u64::try_from(store.trace_count()).unwrap_or(0) == traces,
        "the store kept {} of {traces} traces",
        store.trace_count()
    );

    let some_message = (traces / 2 / 10 * 10 + 3).to_string();
    let queries: Vec<(&str, String)> = vec![
        ("default list (message flows, 50 newest)", String::new()),
        ("all kinds, page 2", "kind=all&limit=50".into()),
        ("message id", format!("message={some_message}")),
        (
            "subscription (full name), last 15 min",
            "subscription=projects/bench/subscriptions/orders-3-worker&since=15m".into(),
        ),
        (
            "topic + ordering key",
            "topic=orders-4&ordering_key=customer-4".into(),
        ),
        ("service + errors", "service=service-b&error=true".into()),
        (
            "span name + min duration",
            "span=process&min_duration=250ms".into(),
        ),
        (
            "attribute (not indexed: scans spans)",
            "attr=order.id=order-4242".into(),
        ),
        (
            "attribute message id (indexed)",
            format!("attr=messaging.message.id={some_message}"),
        ),
    ];
    println!("\nsearch (TraceStore::search, {rounds} runs each):");
    println!(
        "  {:<42} {:>8} {:>10} {:>10}",
        "query", "matches", "p50", "p99"
    );
    let mut worst_p99 = Duration::ZERO;
    for (label, query) in &queries {
        let mut request =
            SearchRequest::parse_query(query).with_context(|| format!("parsing {query:?}"))?;
        if label.contains("page 2") {
            let first = store.search(&request);
            request.cursor = first.next_cursor.and_then(|c| c.parse().ok());
        }
        let mut samples = Vec::with_capacity(rounds);
        let mut total = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let page = store.search(&request);
            samples.push(start.elapsed());
            total = page.total;
        }
        samples.sort();
        let p99 = percentile(&samples, 99);
        worst_p99 = worst_p99.max(p99);
        println!(
            "  {:<42} {:>8} {:>10} {:>10}",
            label,
            total,
            ms(percentile(&samples, 50)),
            ms(p99)
        );
    }
    println!("  worst p99 {} (target: under 100 ms)", ms(worst_p99));

    // The list API over HTTP, as the list page calls it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app: axum::Router = baton_trace_store::router(store.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut samples = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        bytes = http_get(addr, "/api/traces?limit=100").await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "\nlist API: GET /api/traces?limit=100 ({} KiB): p50 {}, p99 {}",
        bytes / 1024,
        ms(percentile(&samples, 50)),
        ms(percentile(&samples, 99))
    );

    // The list page in headless Chromium, when there is one.
    let url = format!("http://{addr}/ui/");
    match tokio::task::spawn_blocking(move || page_render_ms(&url)).await? {
        Some((ms, wall)) => println!(
            "list page /ui/ in headless Chromium: rendered {ms} ms after navigation \
             (the Chromium run took {:.1} s, browser start included)",
            wall.as_secs_f64()
        ),
        None => println!("list page: no Chromium found (set CHROMIUM), not measured"),
    }
    server.abort();
    Ok(())
}

/// Runs headless Chromium on `url` and reads the `data-render-ms` the list
/// page writes when it has rendered its rows.
fn page_render_ms(url: &str) -> Option<(String, Duration)> {
    let chromium = std::env::var("CHROMIUM").ok().or_else(|| {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|bin| {
                std::process::Command::new(bin)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(str::to_string)
    })?;
    let profile = tempfile::tempdir().ok()?;
    let start = Instant::now();
    let output = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .ok()?;
    let wall = start.elapsed();
    let dom = String::from_utf8_lossy(&output.stdout);
    let ms = dom
        .split("data-render-ms=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    Some((ms, wall))
}
