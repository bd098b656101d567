//! `baton demo`: the whole story in one command. Starts the embedded server
//! with its OTLP receiver, trace store and web view; runs Service A (HTTP ->
//! publish) and Service B (subscribe -> process -> inventory call) in this
//! process, both exporting their spans to the embedded receiver; sends a few
//! orders; waits until every order's trace is complete; prints the
//! waterfalls and the links of the console: each order's trace and message
//! page, the subscription's page and the trace list. Ctrl-C or SIGTERM stops
//! it cleanly at any point: the services and the server shut down in order.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use baton_demo::{Demo, DemoConfig};
use baton_server::RunningServer;
use serde_json::Value;

/// Every third order fails once in Service B and is redelivered.
const FAIL_EVERY: u64 = 3;
/// How long to wait for the traces to be complete.
const TRACE_TIMEOUT: Duration = Duration::from_secs(45);

/// Options of `baton demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Pub/Sub port (the web view is served on it too); a free one when taken.
    #[arg(long, default_value_t = 8085)]
    port: u16,
    /// OTLP/gRPC receiver port; a free one when taken.
    #[arg(long, default_value_t = 4317)]
    otlp_grpc_port: u16,
    /// OTLP/HTTP receiver port; a free one when taken.
    #[arg(long, default_value_t = 4318)]
    otlp_http_port: u16,
    /// How many orders to send.
    #[arg(long, default_value_t = 3)]
    orders: u64,
    /// Exit after printing the traces instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
}

/// `port` when it can be bound on localhost, else 0 (a free one).
fn port_or_free(port: u16) -> u16 {
    if port != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
        port
    } else {
        0
    }
}

/// One order sent to Service A and what came back.
#[derive(Debug)]
struct SentOrder {
    id: u64,
    message_id: String,
    trace_id: String,
}

/// Runs the demo until it is done (`--once`) or stopped by Ctrl-C or
/// SIGTERM. A signal that arrives while the demo is still starting or waiting
/// for its traces stops it as cleanly as one that arrives later: whatever has
/// started is shut down.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let stop = crate::signals::shutdown_signal();
    tokio::pin!(stop);
    let mut running = Running::default();
    let outcome = tokio::select! {
        outcome = show(&args, &mut running) => outcome,
        () = &mut stop => {
            println!("Stopping.");
            Ok(Stopped::BySignal)
        }
    };
    let wait_for_signal = matches!(outcome, Ok(Stopped::Shown)) && !args.once;
    if wait_for_signal {
        stop.await;
        println!("Stopping.");
    }
    let shutdown = running.shutdown().await;
    outcome.and(shutdown)
}

/// How the demo's main phase ended.
enum Stopped {
    /// The traces are printed; the demo serves until a signal unless `--once`.
    Shown,
    /// A signal arrived first.
    BySignal,
}

/// What the demo has started so far, to stop in order whenever it stops.
#[derive(Default)]
struct Running {
    demo: Option<Demo>,
    server: Option<Embedded>,
}

impl Running {
    /// Stops the services first (they flush their spans into the server),
    /// then the server.
    async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(demo) = self.demo {
            demo.shutdown().await?;
        }
        if let Some(server) = self.server {
            server.shutdown().await?;
        }
        Ok(())
    }
}

/// Starts the server and the services into `running`, sends the orders and
/// prints their traces and the console's links.
async fn show(args: &DemoArgs, running: &mut Running) -> anyhow::Result<Stopped> {
    let server = Embedded::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port_or_free(args.port))),
        port_or_free(args.otlp_grpc_port),
        port_or_free(args.otlp_http_port),
    )
    .await?;
    let server = running.server.insert(server);
    let pubsub = server.pubsub_addr();
    let web = format!("http://{pubsub}");
    println!("Baton is listening on {pubsub} (Pub/Sub gRPC and REST, web view)");
    let (otlp_grpc, otlp_http) = server.otlp_addrs()?;
    println!("OTLP receiver: gRPC {otlp_grpc}, HTTP {otlp_http}");

    let otlp = Some(format!("http://{otlp_grpc}"));
    let demo =
        Demo::start(DemoConfig::new(pubsub.to_string(), otlp).with_fail_every(FAIL_EVERY)).await?;
    let demo = running.demo.insert(demo);
    let orders_url = demo.orders_url();
    println!(
        "Service A: POST {orders_url}; Service B: subscribed to {}",
        demo.config().subscription
    );

    let mut sent = Vec::new();
    for id in 1..=args.orders {
        let accepted = demo.send_order(id).await?;
        println!(
            "order {id} -> message {} (trace {})",
            accepted.message_id, accepted.trace_id
        );
        sent.push(SentOrder {
            id,
            message_id: accepted.message_id,
            trace_id: accepted.trace_id,
        });
    }

    // Flush both services until every trace holds its ack.
    let deadline = Instant::now() + TRACE_TIMEOUT;
    let mut traces = Vec::new();
    for order in &sent {
        let attempts = if demo.fails_once(order.id) { 2 } else { 1 };
        loop {
            demo.flush().await?;
            let detail = server.trace(&order.trace_id).await;
            if let Some(detail) = detail.as_ref().filter(|d| is_complete(d, attempts)) {
                traces.push((order, detail.clone()));
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: the trace of order {} is still incomplete after {} s",
                    order.id,
                    TRACE_TIMEOUT.as_secs()
                );
                if let Some(detail) = detail {
                    traces.push((order, detail));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    for (order, detail) in &traces {
        println!();
        let note = if demo.fails_once(order.id) {
            " (failed once, nacked, redelivered)"
        } else {
            ""
        };
        println!(
            "Order {} / message {}{note}: {web}/ui/trace/{}",
            order.id, order.message_id, order.trace_id
        );
        println!(
            "  message page: {}",
            message_page(&web, demo.config(), &order.message_id)
        );
        print!("{}", crate::trace_cmd::render_waterfall(detail, width));
    }
    println!();
    let config = demo.config();
    println!("Trace list: {web}/ui/");
    println!(
        "Subscription {}: {web}/ui/subscriptions/{}/{}",
        config.subscription, config.project, config.subscription
    );
    println!(
        "Topic {}: {web}/ui/topics/{}/{}",
        config.topic, config.project, config.topic
    );

    if !args.once {
        println!("Send more orders with:");
        println!(
            "  curl -X POST {orders_url} -H 'content-type: application/json' -d '{{\"id\":7,\"item\":\"widget\",\"quantity\":1}}'"
        );
        println!("Press Ctrl-C to stop.");
    }
    Ok(Stopped::Shown)
}

/// The console's page of one message of the demo's topic.
fn message_page(web: &str, config: &DemoConfig, message_id: &str) -> String {
    format!(
        "{web}/ui/messages/{}/{}/{message_id}",
        config.project, config.topic
    )
}

fn spans<'a>(detail: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    detail[key].as_array().into_iter().flatten()
}

fn name_ends(span: &Value, suffix: &str) -> bool {
    span["name"].as_str().is_some_and(|n| n.ends_with(suffix))
}

/// Complete: the HTTP span, `attempts` process spans with their inventory
/// calls, and the ack (a linked span) have arrived.
fn is_complete(detail: &Value, attempts: usize) -> bool {
    let count = |suffix: &str| {
        spans(detail, "spans")
            .filter(|s| name_ends(s, suffix))
            .count()
    };
    count("POST /orders") == 1
        && count(" process") >= attempts
        && count("reserve inventory") >= attempts
        && count("GET /inventory/{item}") >= attempts
        && spans(detail, "linkedSpans").any(|s| name_ends(s, " ack"))
}

/// The embedded server with its OTLP receiver, trace store and web view.
struct Embedded {
    server: RunningServer,
}

impl Embedded {
    async fn start(
        addr: SocketAddr,
        otlp_grpc_port: u16,
        otlp_http_port: u16,
    ) -> anyhow::Result<Self> {
        let config = baton_server::ServerConfig::new(addr)
            .with_otlp_grpc(SocketAddr::from((Ipv4Addr::LOCALHOST, otlp_grpc_port)))
            .with_otlp_http(SocketAddr::from((Ipv4Addr::LOCALHOST, otlp_http_port)));
        let server = baton_server::start(config)
            .await
            .with_context(|| format!("starting the server on {addr}"))?;
        Ok(Self { server })
    }

    fn pubsub_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `host:port` of the OTLP/gRPC and OTLP/HTTP receivers.
    fn otlp_addrs(&self) -> anyhow::Result<(SocketAddr, SocketAddr)> {
        let grpc = self
            .server
            .otlp_grpc_addr()
            .context("no OTLP/gRPC receiver")?;
        let http = self
            .server
            .otlp_http_addr()
            .context("no OTLP/HTTP receiver")?;
        Ok((grpc, http))
    }

    /// A trace as the query API serves it (`GET /api/traces/{id}`).
    async fn trace(&self, trace_id: &str) -> Option<Value> {
        self.server.flush_traces().await;
        serde_json::to_value(self.server.trace_store().trace(trace_id)?).ok()
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        Ok(self.server.shutdown().await?)
    }
}
