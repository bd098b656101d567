//! Service B of the demo: a worker that subscribes to the order events with
//! tracing on. For each order it calls the inventory ("reserve inventory", a
//! CLIENT span inside the client's `process` span) and acks. Every
//! `fail_every`-th order fails once (the inventory is "unavailable") and is
//! nacked, so its redelivery shows up in the trace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use baton_client::{
    Client, ClientConfig, Endpoint, ReceivedMessage, SubscriberConfig, SubscriptionHandle,
    TracingConfig,
};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{
    SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use serde::Deserialize;

/// The service name in the traces.
pub const SERVICE_NAME: &str = "service-b";

/// Settings of Service B.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Pub/Sub endpoint (`host:port` of Baton or an emulator).
    pub pubsub_host: String,
    /// Project of the subscription.
    pub project: String,
    /// Subscription to the order events.
    pub subscription: String,
    /// Every n-th order (by id) fails on its first delivery; 0 never fails.
    pub fail_every: u64,
    /// OTLP/gRPC endpoint for the spans; `None` uses `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (default `http://localhost:4317`).
    pub otlp_endpoint: Option<String>,
}

impl Config {
    /// Settings from `PUBSUB_EMULATOR_HOST`, `PUBSUB_PROJECT_ID`,
    /// `ORDERS_SUBSCRIPTION` and `FAIL_EVERY`, with demo defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
        Ok(Self {
            pubsub_host: var("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
            project: var("PUBSUB_PROJECT_ID", "demo"),
            subscription: var("ORDERS_SUBSCRIPTION", "orders-worker"),
            fail_every: var("FAIL_EVERY", "3").parse().context("FAIL_EVERY")?,
            otlp_endpoint: None,
        })
    }
}

/// The part of an order event Service B reads.
#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
}

/// Builds a tracer provider exporting over OTLP/gRPC as `service_name`.
pub fn tracer_provider(
    service_name: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<SdkTracerProvider> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build().context("building the OTLP exporter")?;
    // Export every 500 ms (the SDK default is 5 s) so the web view keeps up.
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build())
}

/// What the handler shares across messages.
struct Worker {
    tracer: SdkTracer,
    fail_every: u64,
    /// Messages that already failed once (their redelivery succeeds).
    failed: Mutex<HashSet<String>>,
}

impl Worker {
    /// Processes one delivery; runs inside the client's `process` span.
    async fn handle(&self, message: ReceivedMessage) {
        let Ok(order) = serde_json::from_slice::<Order>(message.data()) else {
            // Not an order: nothing will ever make it one.
            message.ack();
            return;
        };
        let fail = self.fail_every > 0
            && order.id % self.fail_every == 0
            && self
                .failed
                .lock()
                .is_ok_and(|mut failed| failed.insert(message.message_id().to_string()));
        match self.reserve_inventory(&order, fail).await {
            Ok(()) => message.ack(),
            Err(()) => message.nack(),
        }
    }

    /// The "downstream call": a CLIENT span child of the current context
    /// (the `process` span).
    async fn reserve_inventory(&self, order: &Order, fail: bool) -> Result<(), ()> {
        let span = self
            .tracer
            .span_builder("reserve inventory")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("order.id", order.id.to_string()),
                KeyValue::new("inventory.item", order.item.clone()),
                KeyValue::new("inventory.quantity", i64::from(order.quantity)),
            ])
            .start_with_context(&self.tracer, &Context::current());
        let cx = Context::current_with_span(span);
        // Stands in for an HTTP call to the inventory service.
        tokio::time::sleep(Duration::from_millis(15))
            .with_context(cx.clone())
            .await;
        let span = cx.span();
        if fail {
            span.set_status(Status::error("inventory service unavailable"));
            span.end();
            return Err(());
        }
        span.end();
        Ok(())
    }
}

/// Service B running in the background.
#[derive(Debug)]
pub struct ServiceB {
    handle: SubscriptionHandle,
    provider: SdkTracerProvider,
}

impl ServiceB {
    /// Sends the spans recorded so far (waiting on a blocking thread, as
    /// the exporter needs the async runtime to make progress).
    pub async fn flush(&self) -> anyhow::Result<()> {
        let provider = self.provider.clone();
        Ok(tokio::task::spawn_blocking(move || provider.force_flush()).await??)
    }

    /// Stops the subscriber (waiting for running handlers) and flushes the spans.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.handle.shutdown().await?;
        let provider = self.provider;
        tokio::task::spawn_blocking(move || provider.shutdown()).await??;
        Ok(())
    }
}

/// Starts Service B: subscribes with tracing on and processes orders until
/// [`ServiceB::shutdown`].
pub async fn run(config: Config) -> anyhow::Result<ServiceB> {
    let provider = tracer_provider(SERVICE_NAME, config.otlp_endpoint.as_deref())?;
    let client = Client::connect(
        ClientConfig::new(config.project).with_endpoint(Endpoint::Emulator(config.pubsub_host)),
    )
    .await?;
    let subscriber = client.subscriber_with(
        &config.subscription,
        SubscriberConfig {
            tracing: TracingConfig {
                tracer_provider: Some(Arc::new(provider.clone())),
                ..TracingConfig::enabled()
            },
            ..Default::default()
        },
    );
    let worker = Arc::new(Worker {
        tracer: provider.tracer(SERVICE_NAME),
        fail_every: config.fail_every,
        failed: Mutex::new(HashSet::new()),
    });
    let handle = subscriber.subscribe(move |message| {
        let worker = worker.clone();
        async move { worker.handle(message).await }
    });
    Ok(ServiceB { handle, provider })
}
