//! The services of `baton demo`, the story of the project in one command:
//!
//! - [`service_a`]: an HTTP API (`POST /orders`) that publishes each order
//!   with `baton-client`, tracing on, inside its server span;
//! - [`service_b`]: the worker that subscribes, calls the inventory service
//!   over HTTP inside the client's `process` span, and acks (or nacks when
//!   the inventory fails), plus that inventory service.
//!
//! [`Demo`] wires them to a Pub/Sub endpoint (the topic, the subscription,
//! both services) the way `baton demo` and the tests run them in-process.
//! Each service also runs on its own (`cargo run -p baton-demo --bin
//! service-a`), exporting its spans over OTLP.

pub mod service_a;
pub mod service_b;
pub mod telemetry;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use baton_client::{Client, ClientConfig, Endpoint, SubscriptionConfig};

pub use service_a::{Accepted, Order};

/// Where the demo runs and what it is called.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The Pub/Sub endpoint (`host:port`).
    pub pubsub_host: String,
    /// OTLP/gRPC endpoint the services export their spans to; `None` uses
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Project of the topic and subscription (`demo`).
    pub project: String,
    /// Topic of the order events (`orders`).
    pub topic: String,
    /// Service B's subscription (`orders-worker`).
    pub subscription: String,
    /// Every n-th order fails once in Service B and is redelivered (3); 0
    /// never fails.
    pub fail_every: u64,
}

impl DemoConfig {
    /// The demo's names on `pubsub_host`, spans to `otlp_endpoint`.
    pub fn new(pubsub_host: impl Into<String>, otlp_endpoint: Option<String>) -> Self {
        Self {
            pubsub_host: pubsub_host.into(),
            otlp_endpoint,
            project: "demo".into(),
            topic: "orders".into(),
            subscription: "orders-worker".into(),
            fail_every: 3,
        }
    }

    /// Makes every `n`-th order fail once.
    pub fn with_fail_every(mut self, n: u64) -> Self {
        self.fail_every = n;
        self
    }
}

/// The demo's services, running.
#[derive(Debug)]
pub struct Demo {
    config: DemoConfig,
    service_a: service_a::ServiceA,
    service_b: service_b::ServiceB,
    http: reqwest::Client,
}

impl Demo {
    /// Creates the topic and Service B's subscription (10 s ack deadline)
    /// and starts Service B, then Service A on a free local port.
    pub async fn start(config: DemoConfig) -> anyhow::Result<Self> {
        let client = Client::connect(
            ClientConfig::new(config.project.clone())
                .with_endpoint(Endpoint::Emulator(config.pubsub_host.clone())),
        )
        .await
        .context("connecting to Pub/Sub")?;
        client
            .create_topic(&config.topic)
            .await
            .context("creating the topic")?;
        client
            .create_subscription(
                SubscriptionConfig::new(&config.subscription, &config.topic)
                    .with_ack_deadline(Duration::from_secs(10)),
            )
            .await
            .context("creating the subscription")?;
        let service_b = service_b::run(service_b::Config {
            pubsub_host: config.pubsub_host.clone(),
            project: config.project.clone(),
            subscription: config.subscription.clone(),
            fail_every: config.fail_every,
            otlp_endpoint: config.otlp_endpoint.clone(),
        })
        .await
        .context("starting Service B")?;
        let service_a = service_a::run(service_a::Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            pubsub_host: config.pubsub_host.clone(),
            project: config.project.clone(),
            topic: config.topic.clone(),
            otlp_endpoint: config.otlp_endpoint.clone(),
        })
        .await
        .context("starting Service A")?;
        Ok(Self {
            config,
            service_a,
            service_b,
            http: reqwest::Client::new(),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &DemoConfig {
        &self.config
    }

    /// Service A's `POST /orders` URL.
    pub fn orders_url(&self) -> String {
        format!("http://{}/orders", self.service_a.local_addr())
    }

    /// Whether order `id` fails once in Service B (and is redelivered).
    pub fn fails_once(&self, id: u64) -> bool {
        self.config.fail_every != 0 && id.is_multiple_of(self.config.fail_every)
    }

    /// Posts order `id` (item `widget-{id}`, quantity `id`) to Service A:
    /// where its event went.
    pub async fn send_order(&self, id: u64) -> anyhow::Result<Accepted> {
        let order = Order {
            id,
            item: format!("widget-{id}"),
            quantity: u32::try_from(id).unwrap_or(u32::MAX),
        };
        let response = self
            .http
            .post(self.orders_url())
            .json(&order)
            .send()
            .await?
            .error_for_status()?;
        anyhow::ensure!(
            response.status() == reqwest::StatusCode::ACCEPTED,
            "Service A answered {} instead of 202 Accepted",
            response.status()
        );
        Ok(response.json().await?)
    }

    /// Exports both services' finished spans now.
    pub async fn flush(&self) -> anyhow::Result<()> {
        self.service_a.flush().await?;
        self.service_b.flush().await
    }

    /// Stops both services, flushing what they still hold.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.service_a.shutdown().await?;
        self.service_b.shutdown().await
    }
}
