//! Service B of the demo: a worker that subscribes to the order events with
//! tracing on. For each order it calls the inventory service over HTTP
//! ("reserve inventory", a CLIENT span inside the client's `process` span,
//! with the W3C `traceparent` header) and acks. The inventory is a small HTTP
//! service of its own (service name `inventory`), started next to the worker.
//! Every `fail_every`-th order meets an inventory outage (HTTP 503) on its
//! first delivery and is nacked, so its redelivery shows up in the trace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde::Deserialize;

use crate::telemetry::tracer_provider;

/// The service name in the traces.
pub const SERVICE_NAME: &str = "service-b";
/// The service name of the inventory Service B calls.
pub const INVENTORY_SERVICE_NAME: &str = "inventory";

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

/// What the handler shares across messages.
struct Worker {
    tracer: SdkTracer,
    http: reqwest::Client,
    inventory_url: String,
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

    /// The downstream call: `GET /inventory/{item}` on the inventory service,
    /// in a CLIENT span that is a child of the current context (the `process`
    /// span) and whose context travels in the `traceparent` header. `outage`
    /// asks the inventory to answer 503, as an outage would.
    async fn reserve_inventory(&self, order: &Order, outage: bool) -> Result<(), ()> {
        use opentelemetry::propagation::TextMapPropagator as _;
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
        let mut headers = std::collections::HashMap::new();
        opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .inject_context(&cx, &mut headers);
        let mut request = self
            .http
            .get(format!("{}/inventory/{}", self.inventory_url, order.item))
            .query(&[("quantity", order.quantity.to_string())]);
        if outage {
            request = request.query(&[("outage", "true")]);
        }
        for (key, value) in headers {
            request = request.header(key, value);
        }
        let response = request.send().with_context(cx.clone()).await;
        let span = cx.span();
        let result = match response {
            Ok(response) if response.status().is_success() => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                ));
                Ok(())
            }
            Ok(response) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                ));
                span.set_status(Status::error("inventory service unavailable"));
                Err(())
            }
            Err(error) => {
                span.set_status(Status::error(format!("inventory call failed: {error}")));
                Err(())
            }
        };
        span.end();
        result
    }
}

/// The inventory service Service B calls: `GET /inventory/{item}?quantity=n`
/// answers 200 with the reservation, or 503 when asked to simulate an outage.
/// Each request is a SERVER span, a child of the caller's `traceparent`.
mod inventory {
    use std::collections::HashMap;

    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use opentelemetry::KeyValue;
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
    use opentelemetry_sdk::trace::SdkTracer;

    async fn reserve(
        State(tracer): State<SdkTracer>,
        Path(item): Path<String>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
    ) -> impl IntoResponse {
        let carrier: HashMap<String, String> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let parent =
            opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
        let quantity: u32 = query
            .get("quantity")
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        let span = tracer
            .span_builder("GET /inventory/{item}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("inventory.item", item.clone()),
            ])
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        let outage = query.get("outage").is_some_and(|v| v == "true");
        let answer = if outage {
            cx.span()
                .set_status(Status::error("inventory database unreachable"));
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": "inventory database unreachable" })),
            )
        } else {
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "item": item, "reserved": quantity })),
            )
        };
        cx.span().set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(answer.0.as_u16()),
        ));
        cx.span().end();
        answer
    }

    /// Serves the inventory on a free local port; returns its base URL.
    pub async fn start(
        tracer: SdkTracer,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/inventory/{item}", axum::routing::get(reserve))
            .with_state(tracer);
        let task = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((url, task))
    }
}

/// Service B running in the background.
#[derive(Debug)]
pub struct ServiceB {
    handle: SubscriptionHandle,
    provider: SdkTracerProvider,
    inventory_provider: SdkTracerProvider,
    inventory: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServiceB {
    /// Sends the spans recorded so far (waiting on a blocking thread, as
    /// the exporter needs the async runtime to make progress).
    pub async fn flush(&self) -> anyhow::Result<()> {
        let providers = [self.provider.clone(), self.inventory_provider.clone()];
        tokio::task::spawn_blocking(move || {
            providers
                .iter()
                .try_for_each(SdkTracerProvider::force_flush)
        })
        .await??;
        Ok(())
    }

    /// Stops the subscriber (waiting for running handlers) and flushes the spans.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.handle.shutdown().await?;
        self.inventory.abort();
        let providers = [self.provider, self.inventory_provider];
        tokio::task::spawn_blocking(move || {
            providers.iter().try_for_each(SdkTracerProvider::shutdown)
        })
        .await??;
        Ok(())
    }
}

/// Starts Service B: subscribes with tracing on and processes orders until
/// [`ServiceB::shutdown`].
pub async fn run(config: Config) -> anyhow::Result<ServiceB> {
    let provider = tracer_provider(SERVICE_NAME, config.otlp_endpoint.as_deref())?;
    let inventory_provider =
        tracer_provider(INVENTORY_SERVICE_NAME, config.otlp_endpoint.as_deref())?;
    let (inventory_url, inventory) =
        inventory::start(inventory_provider.tracer(INVENTORY_SERVICE_NAME)).await?;
    let client = Client::connect(
        ClientConfig::new(config.project).with_endpoint(Endpoint::Emulator(config.pubsub_host)),
    )
    .await?;
    let subscriber = client.subscriber_with(
        &config.subscription,
        SubscriberConfig::default().with_tracing(
            TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone())),
        ),
    );
    let worker = Arc::new(Worker {
        tracer: provider.tracer(SERVICE_NAME),
        http: reqwest::Client::new(),
        inventory_url,
        fail_every: config.fail_every,
        failed: Mutex::new(HashSet::new()),
    });
    let handle = subscriber.subscribe(move |message| {
        let worker = worker.clone();
        async move { worker.handle(message).await }
    });
    Ok(ServiceB {
        handle,
        provider,
        inventory_provider,
        inventory,
    })
}
